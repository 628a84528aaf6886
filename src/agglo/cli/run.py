"""``agglo run``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        config: Path | None = typer.Option(None, "--config", "-c", help="TOML run configuration."),
        out: Path = typer.Option(Path("outputs"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
    ) -> None:
        """Run every stage on the bundled data (or the inputs named in --config)."""
        from agglo.cli import progress_wanted
        from agglo.config import load_config
        from agglo.pipeline import run

        ctx = run(load_config(config), out, force=force, progress=progress_wanted())
        for line in ctx.summary:
            typer.echo(line)
