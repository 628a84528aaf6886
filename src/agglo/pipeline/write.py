"""Pipeline stage ``write``: write every layer and table atomically.

Outputs under ``out_dir``: ``agglo.gpkg`` (all layers, QGIS styles in ``layer_styles``),
``shp/<layer>.shp`` (+ ``.cpg``, ``.prj``, ``.qml``, ``.fields.csv``), ``tables/<name>.csv``.
Every layer and table carries a ``data_status`` column (``real`` or ``synthetic``) and the
metadata records the run's config and provenance.
"""

from __future__ import annotations

import logging

from agglo._version import __version__
from agglo.outputs.writers import export, export_layers, write_csv
from agglo.pipeline.core import RunOutputs

log = logging.getLogger(__name__)

#: layers that also get a shapefile copy (counties are large; GeoPackage only)
SHAPEFILE_LAYERS = ("cities", "agglomerations", "core_periphery", "metro_areas", "isochrones")


def run(ctx: RunOutputs) -> None:
    """Write layers to one GeoPackage (+ shapefiles) and tables to CSV."""
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    common = {
        "data_status": ctx.data_status,
        "synthetic_inputs": sorted(ctx.synthetic),
        "agglo_version": __version__,
        "config": ctx.config.to_dict(),
        "provenance": ctx.provenance,
    }
    layers = {name: gdf.assign(data_status=ctx.data_status) for name, gdf in ctx.layers.items()}
    metadata = {name: {**common, **ctx.layer_metadata.get(name, {})} for name in layers}
    export_layers(layers, out / "agglo.gpkg", force=ctx.force, metadata=metadata, styles=ctx.styles)
    for name in SHAPEFILE_LAYERS:
        if name in layers:
            export(
                layers[name],
                out / "shp" / f"{name}.shp",
                force=ctx.force,
                metadata=metadata[name],
                style_qml=ctx.styles.get(name),
            )
    for name, table in ctx.tables.items():
        write_csv(
            table.assign(data_status=ctx.data_status),
            out / "tables" / f"{name}.csv",
            force=ctx.force,
        )
    ctx.summary.append(
        ctx.label(
            f"Wrote {len(layers)} layer(s) to {out / 'agglo.gpkg'} and {len(ctx.tables)} table(s)"
        )
    )
