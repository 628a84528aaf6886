"""``agglo report``: rebuild the self-contained HTML report from an output folder."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.cli._flags import option_flags, stage_options
from agglo.outputs.report import ReportOptions


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    @option_flags(ReportOptions)
    def report_cmd(
        out: Path = typer.Option(
            Path("outputs"), "--out", "-o", help="Output folder written by `agglo run`."
        ),
        html: Path | None = typer.Option(
            None, "--html", help="Report file (default: <out>/report.html)."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration; its [report] section is used."
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing report."),
        *,
        given: dict,
    ) -> None:
        """Write one self-contained HTML report (summary, maps, tables, config, provenance).

        Reads agglo.gpkg, tables/*.csv and maps/*.png from --out and builds the same summary
        as `agglo run` (with the real census population change of the member cities). No
        network requests.
        """
        from agglo.config import load_config
        from agglo.outputs.report import bundled_census, report_from_outputs

        opts = stage_options(ReportOptions, load_config(config).section("report"), given)
        path = report_from_outputs(out, opts, path=html, census=bundled_census(), force=force)
        typer.echo(f"wrote {path}")
