"""``agglo report``: rebuild the self-contained HTML report from an output folder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    def report_cmd(
        out: Path = typer.Option(
            Path("outputs"), "--out", "-o", help="Output folder written by `agglo run`."
        ),
        html: Path | None = typer.Option(
            None, "--html", help="Report file (default: <out>/report.html)."
        ),
        max_rows: int = typer.Option(40, "--max-rows", help="Rows shown per table."),
        force: bool = typer.Option(False, "--force", help="Replace an existing report."),
    ) -> None:
        """Write one self-contained HTML report (maps, tables, config, provenance; no network).

        Reads agglo.gpkg, tables/*.csv and maps/*.png from --out. `agglo run` writes the same
        report at the end of a run.
        """
        from agglo.outputs.report import report_from_outputs

        path = report_from_outputs(out, path=html, max_rows=max_rows, force=force)
        typer.echo(f"wrote {path}")
