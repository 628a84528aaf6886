"""``agglo index``: the integration index of a yearbook panel, written as CSV + GeoPackage."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``index`` command to ``app``."""

    @app.command("index")
    def index_cmd(
        panel: Path = typer.Option(..., "--panel", "-p", help="Yearbook panel (CSV/XLSX)."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration; its [index] section is used."
        ),
        out: Path = typer.Option(Path("outputs/index"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        sensitivity: bool = typer.Option(
            False, "--sensitivity", help="Also write index_sensitivity.csv (rank changes)."
        ),
    ) -> None:
        """Integration index (seed 004): indicator, dimension and composite scores, city gaps.

        Writes CSV tables, index_config.json and agglomerations.gpkg (one polygon per
        agglomeration with its scores) to --out, and prints the composite ranking.
        """
        import logging

        from agglo.analysis.index import (
            IndexWarning,
            agglomeration_layer,
            integration_index,
        )
        from agglo.analysis.sensitivity import index_sensitivity
        from agglo.config import load_config
        from agglo.io.panel import read_panel
        from agglo.outputs.writers import check_writable, export, write_csv
        from agglo.pipeline.index import ranking_text, stage_options
        from agglo.reference.boundaries import load_cities, load_institutions, load_membership

        log = logging.getLogger("agglo.cli.index")
        cfg, _ = stage_options(load_config(config).section("index"))
        read = read_panel(panel)
        synthetic = bool(getattr(read, "synthetic", False)) or "synthetic" in panel.name
        status = "synthetic" if synthetic else "real"
        membership = load_membership()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IndexWarning)
            result = integration_index(
                read.panel,
                membership,
                config=cfg,
                employment=getattr(read, "employment", None),
                institutions=load_institutions(),
            )
            tables = dict(result.tables())
            if sensitivity:
                tables["index_sensitivity"] = index_sensitivity(
                    read.panel,
                    membership,
                    config=cfg,
                    employment=getattr(read, "employment", None),
                )
        for w in caught:
            log.warning("%s", w.message)
        targets = [out / f"{n}.csv" for n in tables]
        targets += [out / "index_config.json", out / "agglomerations.gpkg"]
        for t in targets:  # refuse before writing anything
            check_writable(t, force=force)
        for name, table in tables.items():
            write_csv(table.assign(data_status=status), out / f"{name}.csv", force=force)
        meta = {
            "data_status": status,
            "panel": str(panel),
            "index_config": result.config.to_dict(),
            "report": result.report,
        }
        (out / "index_config.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        layer = agglomeration_layer(load_cities(), result).assign(data_status=status)
        export(
            layer, out / "agglomerations.gpkg", layer="agglomerations", force=force, metadata=meta
        )
        head = "Integration index, composite score (rank; 1 = most integrated)"
        if synthetic:
            head = f"[SYNTHETIC DATA: {panel.name}] {head}"
        typer.echo(head)
        for line in ranking_text(result):
            typer.echo(line)
        for line in result.report:
            typer.echo(f"note: {line}")
        typer.echo(
            f"wrote {len(tables)} table(s), index_config.json and agglomerations.gpkg to {out}"
        )
