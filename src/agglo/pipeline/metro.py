"""Pipeline stage ``metro``: one-hour commute catchments (都市圈) of the core cities.

Input: ``[inputs] roads`` of the run config (OSM extract or any line layer) or, when absent,
the bundled SYNTHETIC demo network ``data/roads/demo_roads_synthetic.gpkg`` (then every
output is labelled synthetic). Options in the ``[metro]`` section (defaults in
:data:`OPTIONS`): ``minutes``, ``access_speed_kmh``, ``cores`` (adcodes or Chinese names;
default: the core cities of the five agglomerations), ``method`` (``network``/``friction``),
``bands`` (isochrone band limits, minutes), ``cell_m`` (friction cell size), ``classes``
(road classes read; default: every class with a speed in ``agglo.analysis.metro.DEFAULT_SPEEDS_KMH``),
``max_access_km``.

Outputs: layers ``metro_areas`` (one catchment per core) and ``isochrones`` (bands), tables
``metro_members`` (counties whose seat is reached, with minutes and area share) and
``metro_cities`` (per city: seat minutes, share of area and of population inside).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from agglo.pipeline import RunContext, check_options, road_network

log = logging.getLogger(__name__)

#: options of the ``[metro]`` section and their defaults
OPTIONS: dict[str, Any] = {
    "minutes": 60,
    "access_speed_kmh": 15.0,
    "cores": None,
    "method": "network",
    "bands": [15, 30, 45, 60],
    "cell_m": 500.0,
    "classes": None,
    "max_access_km": 10.0,
}
#: seed 003 check: Chengdu's one-hour area should reach these cities' seats
CHENGDU_CHECK = (
    "510100",
    {"510600": "Deyang 德阳", "511400": "Meishan 眉山", "512000": "Ziyang 资阳"},
)


def _population(ctx: RunContext) -> pd.Series | None:
    """Latest resident population per city from the panel (10k persons), if present."""
    p = ctx.panel
    if p is None or "population" not in set(p["indicator"]):
        return None
    pop = p[(p["indicator"] == "population") & p["value"].notna()]
    if pop.empty:
        return None
    latest = pop[pop["year"] == pop["year"].max()]
    return latest.groupby(latest["adcode"].astype(str))["value"].first()


def run(ctx: RunContext) -> None:
    """Compute metro areas for the configured (or default) core cities."""
    from agglo.analysis.metro import DEFAULT_SPEEDS_KMH, metro_areas, road_graph
    from agglo.measures.roads import read_roads

    opts = ctx.config.section("metro")
    check_options("metro", opts, OPTIONS)
    o = {**OPTIONS, **opts}
    found = road_network(ctx, "metro")
    if found is None:
        return
    path, synthetic = found
    if synthetic:
        ctx.synthetic.add(path.name)
    cities, counties = ctx.cities, ctx.counties
    if cities is None or counties is None:
        log.info("stage metro needs cities and counties; skipped")
        return
    pop = _population(ctx)
    if pop is not None:
        cities = cities.assign(population=cities["adcode"].astype(str).map(pop).to_numpy())
    bbox = tuple(float(v) for v in cities.to_crs(4326).total_bounds)
    lines = read_roads(path, bbox=bbox, classes=o["classes"] or tuple(DEFAULT_SPEEDS_KMH))
    graph = road_graph(lines)
    log.info("metro: road graph %s", graph.report)
    res = metro_areas(
        cities,
        counties,
        graph,
        o["cores"],
        minutes=float(o["minutes"]),
        access_speed_kmh=float(o["access_speed_kmh"]),
        method=str(o["method"]),
        bands=tuple(b for b in o["bands"] if b <= float(o["minutes"])),
        population="population" if pop is not None else None,
        max_access_km=float(o["max_access_km"]),
        cell_m=float(o["cell_m"]),
        progress=False,
    )
    ctx.results["metro"] = res
    agg = dict(zip(cities["adcode"].astype(str), cities["agglomeration_id"], strict=True))
    areas = res.areas.assign(agglomeration_id=res.areas["core_adcode"].map(agg))
    iso = res.isochrones.assign(agglomeration_id=res.isochrones["core_adcode"].map(agg))
    ctx.layers["metro_areas"] = areas
    ctx.layers["isochrones"] = iso
    status = "SYNTHETIC" if synthetic else "real"
    method_note = (
        f"{o['method']} travel time, {o['minutes']} min, off-network access "
        f"{o['access_speed_kmh']} km/h; roads {path.name} ({status}); agglo.metro_areas"
    )
    ctx.layer_metadata["metro_areas"] = {
        "description": "one-hour commute catchments (都市圈) of core cities",
        "method": method_note,
        "road_graph": {k: v for k, v in graph.report.items() if k != "dropped_classes"},
    }
    ctx.layer_metadata["isochrones"] = {
        "description": "isochrone bands (minutes from the core city seat)",
        "method": method_note,
    }
    ctx.tables["metro_members"] = res.members
    ctx.tables["metro_cities"] = res.cities
    ctx.provenance["metro"] = method_note
    for row in areas.itertuples(index=False):
        ctx.summary.append(
            ctx.label(
                f"Metro area of {row.core_name}: {row.area_km2:,.0f} km² within "
                f"{row.minutes:g} min, {row.n_member_counties} county seats reached"
            )
        )
    core, targets = CHENGDU_CHECK
    if core in set(areas["core_adcode"]):
        c = res.cities[res.cities["core_adcode"] == core].set_index("adcode")
        parts = []
        for ad, label in targets.items():
            t = c["seat_minutes"].get(ad, np.nan) if ad in c.index else np.nan
            parts.append(f"{label} " + (f"{t:.0f} min" if np.isfinite(t) else "not reached"))
        ok = all(ad in c.index and np.isfinite(c.loc[ad, "seat_minutes"]) for ad in targets)
        ctx.summary.append(
            ctx.label(
                f"Seed-003 check: Chengdu's {o['minutes']:g}-min area "
                f"{'reaches' if ok else 'does NOT reach all of'} the seats of " + ", ".join(parts)
            )
        )
