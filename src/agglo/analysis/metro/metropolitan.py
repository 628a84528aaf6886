"""The metro stage as one library call: :func:`metropolitan_areas` (what ``agglo run`` and
``agglo metro`` call).

It picks the population year (the latest year of the panel with population), reads the road
sources (or takes a graph or lines), builds the graph, computes the areas with
:func:`~agglo.analysis.metro.metro_areas` and returns a :class:`MetroResult` whose tables,
layers, layer metadata and summary (with the seed-003 check) are what the run writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.metro.areas import MetroResult, metro_areas
from agglo.analysis.metro.graph import DEFAULT_SPEEDS_KMH, RoadGraph, road_graph
from agglo.analysis.metro.options import MetroOptions
from agglo.errors import AggloInputError

log = logging.getLogger(__name__)

__all__ = ["latest_population", "metropolitan_areas"]


def latest_population(panel: pd.DataFrame | None) -> pd.Series | None:
    """Resident population per city in the latest panel year that has it (10k persons).

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"adcode": ["510100", "510100"], "year": [2015, 2020],
    ...                   "indicator": "population", "value": [1466.0, 2094.0]})
    >>> latest_population(p).to_dict()
    {'510100': 2094.0}
    """
    if panel is None or "population" not in set(panel["indicator"]):
        return None
    pop = panel[(panel["indicator"] == "population") & panel["value"].notna()]
    if pop.empty:
        return None
    latest = pop[pop["year"] == pop["year"].max()]
    return latest.groupby(latest["adcode"].astype(str))["value"].first()


def _graph(
    roads: RoadGraph | gpd.GeoDataFrame | str | Path | Sequence[str | Path],
    cities: gpd.GeoDataFrame,
    o: MetroOptions,
) -> tuple[RoadGraph, str]:
    """The road graph to route on and a description of where it came from."""
    from agglo.measures.roads import parse_road_source, read_roads
    from agglo.reference.provenance import is_synthetic_file

    if isinstance(roads, RoadGraph):
        return roads, "a given road graph"
    if isinstance(roads, gpd.GeoDataFrame):
        synthetic = str(roads.attrs.get("data_status", "")).lower() == "synthetic"
        graph = road_graph(roads, speeds=o.speeds, class_col=o.class_col)
        return graph, f"a given line layer ({'SYNTHETIC' if synthetic else 'real'})"
    sources = [str(roads)] if isinstance(roads, str | Path) else [str(r) for r in roads]
    if not sources:
        raise AggloInputError("no road sources given; pass files, lines or a road graph.")
    files = [parse_road_source(s)[0] for s in sources]
    bbox = tuple(float(v) for v in cities.to_crs(4326).total_bounds)
    lines = read_roads(
        sources,
        bbox=bbox,
        classes=o.classes or tuple(DEFAULT_SPEEDS_KMH),
        class_col=o.class_col,
        speed_col=o.speed_col,
        speeds=o.speeds,
    )
    status = "SYNTHETIC" if any(map(is_synthetic_file, files)) else "real"
    return road_graph(lines), f"{', '.join(f.name for f in files)} ({status})"


def metropolitan_areas(
    cities: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    roads: RoadGraph | gpd.GeoDataFrame | str | Path | Sequence[str | Path],
    options: MetroOptions | None = None,
    *,
    panel: pd.DataFrame | None = None,
    seats: Any = None,
    county_seats: Any = None,
    progress: bool = False,
) -> MetroResult:
    """Metropolitan areas (都市圈): commute catchments of the core cities on a road network.

    Parameters
    ----------
    cities, counties
        Boundaries (:func:`agglo.load_cities`, :func:`agglo.load_counties`); an
        ``agglomeration_id`` column of ``cities`` is carried to the layers.
    roads
        Road sources (``.osm.pbf`` or line layers, ``FILE[=CLASS]`` as in
        :func:`agglo.measures.roads.read_roads`; read within the cities' bounding box with
        ``options.classes``, ``class_col``, ``speed_col`` and ``speeds``), a line layer or a
        :class:`~agglo.analysis.metro.RoadGraph`.
    options
        :class:`MetroOptions` (limit, access speed, cores, method, bands, ...).
    panel
        Long panel (``adcode, year, indicator, value``); the latest year with ``population``
        gives the population shares inside each area.
    seats, county_seats
        Given city / county seats (they win over :mod:`agglo.reference.seats`'s rule).
    progress
        Progress bar over cores.

    Returns
    -------
    MetroResult
        ``tables()`` = ``metro_members``, ``metro_cities``; ``layers()`` = ``metro_areas``,
        ``isochrones``; ``summary_lines()`` with the seed-003 check.

    Examples
    --------
    >>> import agglo
    >>> from agglo.reference.paths import data_path
    >>> roads = data_path("roads", "demo_roads_synthetic.gpkg")
    >>> res = metropolitan_areas(agglo.load_cities(), agglo.load_counties(), roads,
    ...                          MetroOptions(cores=("成都",)))  # doctest: +SKIP
    >>> res.summary_lines()[0]  # doctest: +SKIP
    """
    o = options if options is not None else MetroOptions()
    if not isinstance(o, MetroOptions):
        raise AggloInputError(
            f"options must be MetroOptions (MetroOptions.from_dict({{...}})), got "
            f"{type(o).__name__}."
        )
    pop = latest_population(panel)
    if pop is not None:
        cities = cities.assign(population=cities["adcode"].astype(str).map(pop).to_numpy())
    graph, where = _graph(roads, cities, o)
    log.info("metro: road graph %s", graph.report)
    res = metro_areas(
        cities,
        counties,
        graph,
        o.cores,
        minutes=float(o.minutes),
        access_speed_kmh=float(o.access_speed_kmh),
        method=str(o.method),
        bands=o.used_bands,
        population="population" if pop is not None else None,
        city_seats=seats,
        county_seats=county_seats,
        max_access_km=float(o.max_access_km),
        cell_m=float(o.cell_m),
        progress=progress,
    )
    res.method_note = (
        f"{o.method} travel time, {o.minutes} min, off-network access "
        f"{o.access_speed_kmh} km/h; roads {where}; agglo.metro_areas"
    )
    res.road_report = dict(graph.report)
    res.options = o
    status = "synthetic" if "SYNTHETIC" in where else "real" if "(real)" in where else "unknown"
    res.road_label = f"{status}:roads {where.replace(' (SYNTHETIC)', '').replace(' (real)', '')}"
    res.population_labels = population_labels(panel) if pop is not None else None
    return res


def population_labels(panel: pd.DataFrame) -> pd.Series | None:
    """City adcode -> ``provenance`` of the population :func:`latest_population` takes.

    ``None`` when the panel carries no provenance.
    """
    if "provenance" not in panel:
        return None
    pop = panel[(panel["indicator"] == "population") & panel["value"].notna()]
    latest = pop[pop["year"] == pop["year"].max()]
    return latest.groupby(latest["adcode"].astype(str))["provenance"].first()
