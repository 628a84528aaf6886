"""``agglo index``: the integration index of a yearbook panel, written as CSV + GeoPackage."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agglo.analysis.index import IndexOptions
from agglo.cli._flags import option_flags
from agglo.io.panel import PanelOptions


def register(app: typer.Typer) -> None:
    """Add the ``index`` command to ``app``."""

    @app.command("index")
    @option_flags(IndexOptions, PanelOptions)
    def index_cmd(
        panel: Path | None = typer.Option(
            None, "--panel", "-p", help="Yearbook panel (CSV/XLSX); default: the bundled demo."
        ),
        config: Path | None = typer.Option(
            None,
            "--config",
            "-c",
            help="TOML run configuration; its [index] and [panel] sections are used.",
        ),
        out: Path = typer.Option(Path("outputs/index"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        *,
        given: dict,
    ) -> None:
        """Integration index (seed 004): indicator, dimension and composite scores, city gaps.

        Runs the stages `agglo run` runs before the index (inputs, pm25, roads, hsr) with the
        same options. Writes CSV tables, index_config.json and agglomerations.gpkg (one polygon
        per agglomeration with its scores) to --out, and prints the composite ranking.
        """
        from agglo.cli._stage import config_with, run_stage

        cfg = config_with(config, given, panel=panel)
        outputs = run_stage(
            cfg, "index", out, force=force, gpkg="agglomerations.gpkg", extra=["index_config.json"]
        )
        result = outputs.results["index"]
        meta = {
            "data_status": outputs.data_status,
            "synthetic_inputs": sorted(outputs.synthetic),
            "panel": str(cfg.panel or "bundled demo panel"),
            **result.metadata(),
        }
        (out / "index_config.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        for line in outputs.summary:
            typer.echo(line)
        for line in result.report:
            typer.echo(f"note: {line}")
        typer.echo(f"wrote the index tables, index_config.json and agglomerations.gpkg to {out}")
