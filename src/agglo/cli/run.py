"""``agglo run``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.cli._flags import option_flags
from agglo.io.panel import PanelOptions


def register(app: typer.Typer) -> None:
    @app.command("run")
    @option_flags(PanelOptions)
    def run_cmd(
        config: Path | None = typer.Option(None, "--config", "-c", help="TOML run configuration."),
        panel: Path | None = typer.Option(
            None,
            "--panel",
            "-p",
            help="Yearbook panel (CSV/XLSX) instead of [inputs] panel or the bundled demo.",
        ),
        out: Path = typer.Option(Path("outputs"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        workers: int | None = typer.Option(
            None,
            "--workers",
            min=1,
            help="Stages run side by side at most, in forked processes (default: the cores; "
            "1: one after the other).",
        ),
        *,
        given: dict,
    ) -> None:
        """Run every stage on the bundled data (or the inputs named in --config / --panel).

        The [panel] flags (header rows, columns file, units, ...) are laid over the config's
        [panel] section, as in `agglo index`; the other stages take their options from the
        config file.
        """
        from agglo.cli import freeze_imported, progress_wanted
        from agglo.cli._stage import config_with
        from agglo.pipeline import run

        cfg = config_with(config, given, panel=panel)
        freeze_imported()
        ctx = run(cfg, out, force=force, progress=progress_wanted(), workers=workers)
        for line in ctx.summary:
            typer.echo(line)
