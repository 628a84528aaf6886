"""The CLI: help on every command, exit codes, data info."""

from __future__ import annotations

from agglo.cli import app, main


def _commands(group) -> list[list[str]]:
    import typer.main

    click_group = typer.main.get_command(group)
    out = [[]]
    for name, cmd in click_group.commands.items():
        out.append([name])
        if hasattr(cmd, "commands"):
            out += [[name, sub] for sub in cmd.commands]
    return out


def test_help_on_every_command(capsys):
    for cmd in _commands(app):
        assert main([*cmd, "--help"]) == 0, cmd
        assert "Usage" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "agglo" in capsys.readouterr().out


def test_data_info_labels_real_and_synthetic(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "[real" in out and "yangtze.gpkg" in out


def test_bad_input_exit_code_2_with_one_line_reason(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense]\nx = 1\n")
    assert main(["run", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nonsense" in err


def test_unknown_option_is_a_usage_error():
    assert main(["run", "--no-such-option"]) == 2


def test_lazy_public_names_resolve_to_functions():
    import types

    import agglo

    for name in agglo.__all__:
        value = getattr(agglo, name)
        if name in agglo._MODULES:  # modules on purpose (agglo.plot, agglo.styles)
            assert isinstance(value, types.ModuleType)
        elif name != "__version__":
            assert not isinstance(value, types.ModuleType), name
    assert callable(agglo.export)
