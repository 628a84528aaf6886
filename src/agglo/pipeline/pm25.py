"""Pipeline stage ``pm25``: city mean PM2.5 (area-weighted) into the panel.

Rasters come from ``[inputs] rasters`` of the run configuration, else the bundled SYNTHETIC
demo grids in ``data/rasters/``. Options in the ``[pm25]`` section: ``weights`` (default
``"area"``), ``population`` (raster path), ``variable``, ``raster_crs``, ``scheduler``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agglo.measures.pm25 import PM25Options
from agglo.pipeline import RunContext
from agglo.reference.paths import data_path

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    """Compute city PM2.5 means for ``ctx.years`` and replace the ``pm25`` indicator."""
    from agglo.io.rasters import NETCDF_SUFFIXES, TIFF_SUFFIXES, discover_layers
    from agglo.measures.pm25 import zonal_pm25

    opts = PM25Options.from_dict(ctx.config.section("pm25"))
    source = Path(ctx.config.rasters) if ctx.config.rasters is not None else data_path("rasters")
    if not source.exists() or (
        source.is_dir()
        and not any(p.suffix.lower() in NETCDF_SUFFIXES + TIFF_SUFFIXES for p in source.iterdir())
    ):
        log.info("stage pm25: no PM2.5 rasters at %s; skipped (panel pm25 kept as given)", source)
        return
    if ctx.cities is None or not ctx.years:
        log.info("stage pm25: no cities or years; skipped")
        return
    available = {layer.year for layer in discover_layers(source, variable=opts.variable)}
    years = [y for y in ctx.years if y in available]
    missing = sorted(set(ctx.years) - available)
    if missing:
        log.warning(
            "stage pm25: no raster for year(s) %s in %s; pm25 kept as given", missing, source
        )
    if not years:
        log.info("stage pm25: rasters cover none of the run years %s; skipped", ctx.years)
        return
    df = zonal_pm25(
        source,
        ctx.cities,
        id_col="adcode",
        years=years,
        **opts.to_dict(),
    )
    synthetic = bool(df.attrs.get("synthetic"))
    files = [s.split("#")[0] for s in df.attrs.get("source", "").split(", ") if s]
    if synthetic:
        ctx.synthetic.update(files)
    status = "synthetic" if synthetic else "real"
    src = f"zonal_pm25({source}, weights={df.attrs['weights']}) [{status}]"
    ctx.replace_indicator(df.rename(columns={"pm25_mean": "value"}), "pm25", src)
    ctx.provenance["pm25_rasters"] = f"{', '.join(files)} ({status}; {df.attrs.get('crs', '')})"
    ctx.tables["pm25"] = df.assign(data_status=status)
    ctx.results["pm25"] = df
    low = df[df["valid_fraction"] < 0.5]
    ctx.summary.append(
        ctx.label(
            f"PM2.5: {df['adcode'].nunique()} cities x {df['year'].nunique()} years from "
            f"{len(files)} raster file(s) ({df.attrs['weights']}-weighted); mean "
            f"{df['pm25_mean'].mean():.1f} µg/m³; {len(low)} city-years with < 50 % valid cells"
        )
    )
