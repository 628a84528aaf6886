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
#: long layers (one row per city and year) written as one layer per year, ``lisa_2020`` ..., so
#: the years do not stack on top of each other in QGIS; the CSV table keeps every year
PER_YEAR_LAYERS = ("lisa",)


def split_years(
    layers: dict, metadata: dict, styles: dict, names: tuple[str, ...] = PER_YEAR_LAYERS
) -> tuple[dict, dict, dict]:
    """Layers, metadata and styles with each multi-year layer of ``names`` split by ``year``.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame({"year": [2010, 2020]}, geometry=[shapely.Point(0, 0)] * 2)
    >>> lay, meta, sty = split_years({"lisa": g}, {"lisa": {}}, {"lisa": "<qgis/>"})
    >>> sorted(lay), meta["lisa_2020"]["year"], sty["lisa_2010"]
    (['lisa_2010', 'lisa_2020'], 2020, '<qgis/>')
    """
    layers, metadata, styles = dict(layers), dict(metadata), dict(styles)
    for name in names:
        gdf = layers.get(name)
        if gdf is None or "year" not in gdf or gdf["year"].nunique() < 2:
            continue
        del layers[name]
        meta, style = metadata.pop(name, {}), styles.pop(name, None)
        for year, part in gdf.groupby("year", sort=True):
            key = f"{name}_{int(year)}"
            layers[key] = part.reset_index(drop=True)
            metadata[key] = {**meta, "year": int(year)}
            if style is not None:
                styles[key] = style
    return layers, metadata, styles


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
    layers, metadata, layer_styles = split_years(layers, metadata, ctx.styles)
    export_layers(
        layers, out / "agglo.gpkg", force=ctx.force, metadata=metadata, styles=layer_styles
    )
    for name in SHAPEFILE_LAYERS:
        if name in layers:
            export(
                layers[name],
                out / "shp" / f"{name}.shp",
                force=ctx.force,
                metadata=metadata[name],
                style_qml=layer_styles.get(name),
            )
    for name, table in ctx.tables.items():
        write_csv(  # a table's own data_status (e.g. per indicator) is kept
            table if "data_status" in table else table.assign(data_status=ctx.data_status),
            out / "tables" / f"{name}.csv",
            force=ctx.force,
        )
    ctx.summary.append(
        ctx.label(
            f"Wrote {len(layers)} layer(s) to {out / 'agglo.gpkg'} and {len(ctx.tables)} table(s)"
        )
    )
