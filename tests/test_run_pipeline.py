"""``agglo run`` and ``agglo <stage>``: the same stage functions, options and tables."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings

import pandas as pd
import pytest

from agglo._forked import fork_available
from agglo.cli import main
from agglo.config import RunConfig, load_config
from agglo.errors import AggloDataWarning, AggloInputError
from agglo.pipeline import STAGES, StageOutput, run, run_stages, stage_options

#: a small but complete run of the bundled data (few permutations, one metro core)
CONFIG = """
[inputs]
years = [2015, 2020]
[autocorr]
permutations = 99
[coreperiphery]
n_perm = 4
restarts = 1
beta = 1.5
[metro]
cores = ["成都"]
bands = [30, 60]
"""

#: stage command -> tables it writes (also written by `agglo run`)
COMMANDS = {
    "index": ["index_composite", "index_dimensions", "city_scores", "city_gaps"],
    "autocorr": ["autocorr_global", "lisa", "autocorr_islands"],
    "coreperiphery": ["coreness", "coreness_fit", "city_system", "core_periphery_gaps"],
    "metro": ["metro_members", "metro_cities"],
}


@pytest.fixture(scope="module")
def toml(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_tables(toml, tmp_path_factory):
    """The tables of a run with independent stages side by side (forked, where possible)."""
    out = tmp_path_factory.mktemp("run") / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(load_config(toml), out, stages=(*COMMANDS, "write"), workers=2)
    return out / "tables", caught


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_stage_command_writes_the_tables_of_agglo_run(command, toml, run_tables, tmp_path):
    out = tmp_path / command
    assert main([command, "--config", str(toml), "--out", str(out)]) == 0
    for table in COMMANDS[command]:
        expected = pd.read_csv(run_tables[0] / f"{table}.csv", dtype={"adcode": str})
        got = pd.read_csv(out / f"{table}.csv", dtype={"adcode": str})
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=f"{command}:{table}")


@pytest.mark.slow
@pytest.mark.skipif(not fork_available(), reason="stages run side by side only with fork")
def test_stages_side_by_side_give_the_tables_and_warnings_of_one_after_the_other(
    toml, run_tables, tmp_path
):
    tables, side_by_side = run_tables
    with warnings.catch_warnings(record=True) as one_by_one:
        warnings.simplefilter("always")
        run(load_config(toml), tmp_path / "seq", stages=(*COMMANDS, "write"), workers=1)
    names = sorted(p.name for p in tables.glob("*.csv"))
    assert names == sorted(p.name for p in (tmp_path / "seq" / "tables").glob("*.csv"))
    assert len(names) > 10
    for name in names:
        expected = pd.read_csv(tmp_path / "seq" / "tables" / name, dtype={"adcode": str})
        got = pd.read_csv(tables / name, dtype={"adcode": str})
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=name)

    def shown(caught):
        return sorted((w.category.__name__, str(w.message)) for w in caught)

    assert shown(side_by_side) == shown(one_by_one)


@pytest.mark.skipif(not fork_available(), reason="stages run side by side only with fork")
def test_a_stage_beside_others_warns_in_the_parent_and_its_error_fails_the_run(monkeypatch):
    import agglo.pipeline as pipeline

    def noisy(config, options, **needs):
        warnings.warn(f"city 510100 repaired in {os.getpid()}", AggloDataWarning, stacklevel=1)

    def broken(config, options, **needs):
        time.sleep(0.5)  # fails after the noisy one has finished
        raise ValueError("disparity broke")

    fake = {"metro": noisy, "disparity": broken}
    table = tuple(dataclasses.replace(st, function=fake.get(st.name, st.function)) for st in STAGES)
    monkeypatch.setattr(pipeline, "STAGES", table)
    with (
        pytest.warns(AggloDataWarning, match="510100") as caught,
        pytest.raises(ValueError, match="broke"),
    ):
        run_stages(RunConfig(), ["metro", "disparity"], workers=2)
    assert str(os.getpid()) not in str(caught[0].message)  # it ran in a forked child


@pytest.mark.skipif(not fork_available(), reason="stages run side by side only with fork")
def test_preload_modules_are_imported_in_the_parent_before_the_fork(monkeypatch):
    import sys

    import agglo.pipeline as pipeline

    def imported(config, options, **needs):  # in the child: there from the fork
        warnings.warn(
            f"tabnanny imported: {'tabnanny' in sys.modules}", AggloDataWarning, stacklevel=1
        )

    monkeypatch.delitem(sys.modules, "tabnanny", raising=False)
    preload = ("tabnanny", "agglo_no_such_module")  # an absent one is the stage's to report
    table = tuple(
        dataclasses.replace(st, function=imported, preload=preload)
        if st.name in ("metro", "disparity")
        else st
        for st in STAGES
    )
    monkeypatch.setattr(pipeline, "STAGES", table)
    with pytest.warns(AggloDataWarning, match="tabnanny imported") as caught:
        run_stages(RunConfig(), ["metro", "disparity"], workers=2)
    assert "tabnanny" in sys.modules
    assert {str(w.message) for w in caught} == {"tabnanny imported: True"}


def test_workers_must_be_positive():
    with pytest.raises(AggloInputError, match="workers must be >= 1"):
        run_stages(RunConfig(), ["inputs"], workers=0)


def test_options_of_every_section_are_checked_before_any_stage(tmp_path, caplog):
    cfg = RunConfig(
        sections={"metro": {"minuts": 30}, "autocorr": {"weights": "hexagon"}, "pm25": {"w": 1}}
    )
    with caplog.at_level(logging.INFO, logger="agglo"), pytest.raises(AggloInputError) as err:
        run(cfg, tmp_path / "o")
    text = str(err.value)
    # every bad section in one error, and no stage started
    assert "pm25.w is not an option" in text
    assert "weights must be one of queen" in text
    assert "metro.minuts is not an option" in text
    assert not any("stage inputs" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "o").exists()


def test_every_stage_section_is_a_config_section():
    from agglo.config import SECTIONS
    from agglo.outputs.run import OUTPUT_STEPS

    sections = {section for _, section, parse in OUTPUT_STEPS.values() if parse is not None}
    for st in STAGES:
        if st.options is not None:
            names = st.section or st.name
            sections |= {names} if isinstance(names, str) else set(names)
    assert sections <= set(SECTIONS)
    assert {"metro", "coordination", "autocorr", "plot", "report"} <= sections
    assert set(stage_options(RunConfig())) >= {"pm25", "roads", "hsr", "index", "metro"}


def test_needs_are_earlier_stages():
    seen: set[str] = set()
    for st in STAGES:
        assert {n.rstrip("?") for n in st.needs} <= seen, st.name
        seen.add(st.name)


def test_given_results_replace_stages_and_their_needs(cities):
    """A stage supplied by the caller is not run, nor is anything only it needs."""
    from types import SimpleNamespace

    given = {
        "inputs": StageOutput(result=SimpleNamespace(cities=cities, counties=None)),
        "index": StageOutput(result=SimpleNamespace(city_scores=pd.DataFrame())),
    }
    outputs = run_stages(RunConfig(), ["autocorr"], given=given)
    assert "panel" not in outputs.results and "pm25" not in outputs.results
    assert "autocorr" not in outputs.results  # empty scores: skipped (logged)


def test_unknown_stage_is_refused():
    with pytest.raises(AggloInputError, match=r"unknown stage\(s\) \['indx'\]"):
        run_stages(RunConfig(), ["indx"])
