"""Pipeline stage ``metro``: one-hour commute catchments (都市圈) of the core cities.

Input: ``[inputs] roads`` of the run config (OSM extract or any line layer) or, when absent,
the bundled SYNTHETIC demo network ``data/roads/demo_roads_synthetic.gpkg`` (then every
output is labelled synthetic). Options in the ``[metro]`` section (defaults in
:class:`MetroOptions`): ``minutes``, ``access_speed_kmh``, ``cores`` (adcodes or Chinese names;
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from agglo.options import Options, option
from agglo.pipeline.core import StageOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetroOptions(Options):
    """Options of the ``metro`` stage (``[metro]`` section, ``agglo metro`` flags)."""

    section = "metro"
    minutes: float = option(
        60.0, help="Commute limit.", unit="min", minimum=0, exclusive_minimum=True
    )
    access_speed_kmh: float = option(
        15.0, help="Off-network access speed.", unit="km/h", minimum=0, exclusive_minimum=True
    )
    cores: tuple[str, ...] | None = option(
        None,
        help="Core cities (adcodes or Chinese names, e.g. 成都,500000); default: the core "
        "cities of the five agglomerations.",
    )
    method: str = option("network", help="Travel-time method.", choices=("network", "friction"))
    bands: tuple[float, ...] = option(
        (15.0, 30.0, 45.0, 60.0), help="Isochrone band limits.", unit="min"
    )
    cell_m: float = option(
        500.0,
        help="Cell size of the friction method.",
        unit="m",
        minimum=0,
        exclusive_minimum=True,
    )
    classes: str | tuple[str, ...] | None = option(
        None,
        help="Road classes read: all, default, major or a list (default: every class with a "
        "default speed).",
    )
    class_col: str = option("highway", help="Class column of a line layer (Geofabrik: fclass).")
    speed_col: str | None = option(None, help="Column of the line layer holding speeds, km/h.")
    speeds: Mapping[str, float] | None = option(None, help="Speeds by road class, km/h.", cli=False)
    max_access_km: float = option(
        10.0, help="Longest off-network access to the road graph.", unit="km", minimum=0
    )

    def extra_problems(self) -> list[str]:
        from agglo._validate import metro_option_problems

        given = None if self.bands == MetroOptions.bands else self.bands  # defaults are cut
        found = metro_option_problems(minutes=self.minutes, bands=given)
        return [p for p in found if p.startswith("metro.bands")]


#: seed 003 check: Chengdu's one-hour area should reach these cities' seats
CHENGDU_CHECK = (
    "510100",
    {"510600": "Deyang 德阳", "511400": "Meishan 眉山", "512000": "Ziyang 资阳"},
)


def metro_options(section: Mapping[str, Any] | MetroOptions) -> dict[str, Any]:
    """The ``[metro]`` options as a dict (validated by :class:`MetroOptions`).

    Examples
    --------
    >>> metro_options({"minutes": 45})["minutes"], metro_options({})["method"]
    (45, 'network')
    """
    if not isinstance(section, MetroOptions):
        section = MetroOptions.from_dict(section)
    return section.to_dict()


def latest_population(panel: pd.DataFrame | None) -> pd.Series | None:
    """Latest resident population per city from the panel (10k persons), if present."""
    if panel is None or "population" not in set(panel["indicator"]):
        return None
    pop = panel[(panel["indicator"] == "population") & panel["value"].notna()]
    if pop.empty:
        return None
    latest = pop[pop["year"] == pop["year"].max()]
    return latest.groupby(latest["adcode"].astype(str))["value"].first()


def metro_run(
    cities: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    panel: pd.DataFrame | None,
    roads: list[str],
    synthetic: bool,
    options: Mapping[str, Any] | MetroOptions,
    progress: bool = False,
) -> StageOutput:
    """Metro areas of the configured (or default) core cities on the road sources ``roads``."""
    from agglo.analysis.metro import DEFAULT_SPEEDS_KMH, metro_areas, road_graph
    from agglo.measures.roads import read_roads

    o = metro_options(options)
    pop = latest_population(panel)
    if pop is not None:
        cities = cities.assign(population=cities["adcode"].astype(str).map(pop).to_numpy())
    bbox = tuple(float(v) for v in cities.to_crs(4326).total_bounds)
    lines = read_roads(
        roads,
        bbox=bbox,
        classes=o["classes"] or tuple(DEFAULT_SPEEDS_KMH),
        class_col=o["class_col"],
        speed_col=o["speed_col"],
        speeds=o["speeds"],
    )
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
        progress=progress,
    )
    agg = dict(zip(cities["adcode"].astype(str), cities["agglomeration_id"], strict=True))
    areas = res.areas.assign(agglomeration_id=res.areas["core_adcode"].map(agg))
    iso = res.isochrones.assign(agglomeration_id=res.isochrones["core_adcode"].map(agg))
    status = "SYNTHETIC" if synthetic else "real"
    method_note = (
        f"{o['method']} travel time, {o['minutes']} min, off-network access "
        f"{o['access_speed_kmh']} km/h; roads {', '.join(Path(r).name for r in roads)} "
        f"({status}); agglo.metro_areas"
    )
    summary = [
        f"Metro area of {row.core_name}: {row.area_km2:,.0f} km² within "
        f"{row.minutes:g} min, {row.n_member_counties} county seats reached"
        for row in areas.itertuples(index=False)
    ]
    core, targets = CHENGDU_CHECK
    if core in set(areas["core_adcode"]):
        c = res.cities[res.cities["core_adcode"] == core].set_index("adcode")
        parts = []
        for ad, label in targets.items():
            t = c["seat_minutes"].get(ad, np.nan) if ad in c.index else np.nan
            parts.append(f"{label} " + (f"{t:.0f} min" if np.isfinite(t) else "not reached"))
        ok = all(ad in c.index and np.isfinite(c.loc[ad, "seat_minutes"]) for ad in targets)
        summary.append(
            f"Seed-003 check: Chengdu's {o['minutes']:g}-min area "
            f"{'reaches' if ok else 'does NOT reach all of'} the seats of " + ", ".join(parts)
        )
    return StageOutput(
        result=res,
        tables={"metro_members": res.members, "metro_cities": res.cities},
        layers={"metro_areas": areas, "isochrones": iso},
        layer_metadata={
            "metro_areas": {
                "description": "one-hour commute catchments (都市圈) of core cities",
                "method": method_note,
                "road_graph": {k: v for k, v in graph.report.items() if k != "dropped_classes"},
            },
            "isochrones": {
                "description": "isochrone bands (minutes from the core city seat)",
                "method": method_note,
            },
        },
        provenance={"metro": method_note},
        summary=summary,
    )
