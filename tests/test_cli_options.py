"""CLI flags derived from the stage options dataclasses: defaults, help, config precedence."""

from __future__ import annotations

import logging

import pytest
import typer
import typer.main

from agglo.cli import app, main
from agglo.cli._flags import FLAGS_ATTR, parse_flag


def _derived_commands(group: typer.Typer, prefix: tuple[str, ...] = ()):
    """(command path, click command, flags) of every command built by ``option_flags``."""
    click_group = typer.main.get_command(group)
    for info in group.registered_commands:
        flags = getattr(info.callback, FLAGS_ATTR, None)
        if flags:
            name = info.name or info.callback.__name__
            yield (*prefix, name), click_group.commands[name], flags
    for sub in group.registered_groups:
        yield from _derived_commands(sub.typer_instance, (*prefix, sub.name))


def test_every_derived_flag_default_equals_the_dataclass_default():
    seen = set()
    for path, command, flags in _derived_commands(app):
        params = {p.name: p for p in command.params}
        for name, (cls, spec) in flags.items():
            param = params[name]
            assert parse_flag(spec, param.default) == spec.default, (path, name)
            assert spec.flag in param.opts, (path, name, param.opts)
            assert spec.help in param.help and f"Default: {spec.default!r}" in param.help
            seen.add(cls.section)
    # the stages whose options are dataclasses all have derived flags
    assert {"pm25", "roads", "hsr", "autocorr", "coreperiphery", "metro"} <= seen


def test_every_cli_field_of_the_options_has_a_flag():
    for path, _, flags in _derived_commands(app):
        classes = {cls for cls, _ in flags.values()}
        for cls in classes:
            expected = {s.name for s in cls.specs() if s.cli and "Mapping" not in str(s.type)}
            got = {n for n, (c, _) in flags.items() if c is cls}
            assert got == expected, path


def test_flags_override_the_config_section_which_overrides_the_default(tmp_path, monkeypatch):
    import agglo.measures.hsr as hsr

    seen = {}

    def fake_read_stations(path, **options):
        seen.update(options)
        raise typer.Exit(0)

    monkeypatch.setattr(hsr, "read_stations", fake_read_stations)
    stations = tmp_path / "s.csv"
    stations.write_text("adcode,opened\n")
    toml = tmp_path / "a.toml"
    toml.write_text('[hsr]\nrule = "type"\nmin_speed_kmh = 300\n')
    args = ["hsr", "--stations", str(stations), "--config", str(toml), "-o", str(tmp_path / "h")]
    assert main([*args, "--min-speed-kmh", "200"]) == 0
    assert seen["rule"] == "type"  # from the config
    assert seen["min_speed_kmh"] == 200.0  # the flag wins
    assert seen["encoding"] is None  # the dataclass default
    assert main([*args, "--min-speed-kmh", "0"]) == 2  # validated by the dataclass


def test_sequence_flags_are_comma_separated():
    from agglo.measures.roads import RoadsOptions

    spec = {s.name: s for s in RoadsOptions.specs()}["classes"]
    assert parse_flag(spec, "major") == "major"
    assert parse_flag(spec, "motorway,trunk") == ("motorway", "trunk")


def test_zero_is_not_dropped(tmp_path, monkeypatch):
    """``--beta 0`` reaches the stage as 0 (it used to become the default 2)."""
    import agglo.pipeline.stages as stages

    seen = {}

    def fake_core_periphery(cities, panel, options=None, **kwargs):
        seen["beta"] = options.beta
        raise typer.Exit(0)

    monkeypatch.setattr(stages, "core_periphery", fake_core_periphery)
    assert main(["coreperiphery", "--beta", "0", "-o", str(tmp_path / "o")]) == 0
    assert seen["beta"] == 0


@pytest.mark.parametrize(
    ("flags", "level"),
    [([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.DEBUG)],
)
def test_verbosity_sets_the_log_level(flags, level, capsys):
    assert main([*flags, "data", "info"]) == 0
    logger = logging.getLogger("agglo")
    assert logger.getEffectiveLevel() == level
    assert [h.level for h in logger.handlers if type(h).__name__ == "RichHandler"] == [level]


def test_each_log_message_is_shown_once(capsys):
    """A note logged twice in one run (e.g. by two stages reading one raster) prints once."""
    assert main(["data", "info"]) == 0
    capsys.readouterr()
    logger = logging.getLogger("agglo.test")
    for _ in range(3):
        logger.info("grid of raster.nc taken as EPSG:4326")
    logger.warning("grid of raster.nc taken as EPSG:4326")  # another level is another message
    err = capsys.readouterr().err
    assert err.count("grid of raster.nc taken as EPSG:4326") == 2


@pytest.mark.parametrize(("flags", "wanted"), [([], True), (["-q"], False)])
def test_progress_bars_follow_quiet(flags, wanted, monkeypatch, tmp_path):
    """``agglo run`` asks the pipeline for progress bars unless ``--quiet``."""
    import agglo.pipeline

    seen = {}

    def fake_run(config, out, *, force=False, progress=False, workers=None):
        seen["progress"], seen["workers"] = progress, workers
        raise typer.Exit(0)

    monkeypatch.setattr(agglo.pipeline, "run", fake_run)
    assert main([*flags, "run", "--out", str(tmp_path / "o")]) == 0
    assert seen == {"progress": wanted, "workers": None}
    assert main([*flags, "run", "--workers", "1", "--out", str(tmp_path / "o")]) == 0
    assert seen["workers"] == 1
    assert main(["run", "--workers", "0", "--out", str(tmp_path / "o")]) == 2  # at least 1


def test_run_takes_panel_flags(tmp_path, monkeypatch):
    """``agglo run --panel F --header 2 --area urban_districts`` reaches the run's config."""
    import agglo.pipeline

    seen = {}

    def fake_run(config, out, **kwargs):
        seen["config"] = config
        raise typer.Exit(0)

    monkeypatch.setattr(agglo.pipeline, "run", fake_run)
    panel = tmp_path / "panel.csv"
    panel.write_text("adcode,year\n", encoding="utf-8")
    argv = ["run", "--panel", str(panel), "--header", "2", "--area", "urban_districts"]
    assert main([*argv, "-o", str(tmp_path / "o")]) == 0
    cfg = seen["config"]
    assert cfg.panel == panel
    assert cfg.section("panel")["header"] == 2
    assert cfg.section("panel")["area"] == "urban_districts"
    monkeypatch.undo()
    assert main(["run", "--area", "both", "-o", str(tmp_path / "bad")]) == 2  # input error
    assert not (tmp_path / "bad").exists()
