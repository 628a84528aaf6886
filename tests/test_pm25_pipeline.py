"""PM2.5 in the run pipeline and on the command line (bundled synthetic demo rasters)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agglo.cli import main
from agglo.config import RunConfig
from agglo.pipeline import run

DEMO = Path(__file__).resolve().parents[1] / "data" / "rasters"


def test_demo_rasters_are_synthetic_and_acag_layout():
    import netCDF4

    files = sorted(DEMO.glob("*.nc"))
    assert [f.name[-7:-3] for f in files] == ["2010", "2015", "2020"]
    for f in files:
        assert "synthetic" in f.name
        with netCDF4.Dataset(f) as ds:
            assert ds.synthetic == 1 and "SYNTHETIC" in ds.title
            assert ds["PM25"].dimensions == ("lat", "lon")
            assert ds["PM25"].dtype == np.float32
            assert np.all(np.diff(ds["lat"][:]) > 0)  # ascending, as ACAG files
            v = ds["PM25"][:]
            assert float(v.min()) >= 3 and float(v.max()) < 150  # plausible µg/m³
            assert np.ma.count_masked(v) > 0  # open sea is fill value


def test_demo_generator_is_seeded(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_demo_rasters",
        Path(__file__).resolve().parents[1] / "scripts" / "demo" / "make_demo_rasters.py",
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a = mod.make(tmp_path / "a")
    b = mod.make(tmp_path / "b")
    c = mod.make(tmp_path / "c", seed=1)
    import netCDF4

    def values(p):
        with netCDF4.Dataset(p) as ds:
            return np.ma.filled(ds["PM25"][:], np.nan)

    np.testing.assert_array_equal(values(a[0]), values(b[0]))
    np.testing.assert_array_equal(values(a[0]), values(sorted(DEMO.glob("*2010.nc"))[0]))
    assert not np.array_equal(values(a[0]), values(c[0]), equal_nan=True)


def test_pipeline_stage_puts_pm25_in_the_panel(tmp_path):
    ctx = run(RunConfig(), tmp_path / "out", stages=("panel",))
    pm = ctx.panel[ctx.panel["indicator"] == "pm25"]
    assert len(pm) == len(ctx.cities) * len(ctx.years)
    assert pm["value"].notna().all()
    table = ctx.tables["pm25"]
    assert set(table["data_status"]) == {"synthetic"}
    assert any("synthetic_CNNPM25" in s for s in ctx.synthetic)
    assert "synthetic" in ctx.provenance["pm25"]
    assert any("PM2.5" in s and "SYNTHETIC" in s for s in ctx.summary)
    # the synthetic field has a hotspot over the Sichuan basin: Chengdu above Kunming
    v = table.set_index(["adcode", "year"])["pm25_mean"]
    assert v[("510100", 2010)] > v[("530100", 2010)]


def test_pipeline_stage_skips_without_rasters(tmp_path, caplog):
    empty = tmp_path / "none"
    empty.mkdir()
    cfg = RunConfig(rasters=empty)
    with caplog.at_level(logging.INFO, logger="agglo"):
        ctx = run(cfg, tmp_path / "out", stages=("panel",))
    assert "pm25" not in ctx.tables
    assert any("no PM2.5 rasters" in r.getMessage() for r in caplog.records)


def test_cli_pm25_writes_csv(tmp_path, capsys):
    out = tmp_path / "pm.csv"
    code = main(["pm25", "--rasters", str(DEMO), "--years", "2010,2020", "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out, dtype={"adcode": str})
    assert sorted(df["year"].unique()) == [2010, 2020]
    assert set(df["data_status"]) == {"synthetic"}
    assert list(df.columns[:6]) == [
        "adcode",
        "year",
        "pm25_mean",
        "pm25_popw",
        "valid_fraction",
        "n_cells",
    ]
    assert "[SYNTHETIC]" in capsys.readouterr().out
    # an existing output needs --force
    assert main(["pm25", "--rasters", str(DEMO), "--out", str(out)]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--years", "2011"], "no data for year"),
        (["--weights", "mean"], "weights must be one of"),
        (["--polygons", "provinces"], "--polygons must be"),
        (["--years", "twenty"], "--years must be"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path, capsys, args, message):
    code = main(["pm25", "--rasters", str(DEMO), "--out", str(tmp_path / "x.csv"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_coverage_cache_flag_writes_the_cache(tmp_path):
    out, cov = tmp_path / "pm.csv", tmp_path / "cov"
    args = ["pm25", "--rasters", str(DEMO), "--years", "2020", "--coverage-cache", str(cov)]
    assert main([*args, "--out", str(out)]) == 0
    assert len(list(cov.glob("coverage-*.plan"))) == 1
    assert main([*args, "--out", str(tmp_path / "pm2.csv")]) == 0  # read from the cache
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp_path / "pm2.csv"))


def test_cli_scheduler_processes_equals_synchronous(tmp_path, monkeypatch):
    from agglo._forked import fork_available
    from agglo.measures import pm25

    if not fork_available():
        pytest.skip("forked processes need Linux")
    monkeypatch.setattr(pm25, "usable_cores", lambda: 2)  # fork even on a 1-core affinity
    forked = []
    real = pm25._run_processes
    monkeypatch.setattr(pm25, "_run_processes", lambda *a: forked.append(a[-1]) or real(*a))
    out = {}
    for sched in ("synchronous", "processes"):
        out[sched] = tmp_path / f"{sched}.csv"
        args = ["pm25", "--rasters", str(DEMO), "--scheduler", sched, "--out", str(out[sched])]
        assert main(args) == 0
    assert forked == [2]  # the 3 demo years: 2 in this process, 1 in a child
    a, b = (pd.read_csv(p, dtype={"adcode": str}) for p in out.values())
    pd.testing.assert_frame_equal(b, a, check_exact=True)
