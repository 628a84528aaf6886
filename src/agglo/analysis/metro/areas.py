"""Metropolitan areas: one-hour commute catchments of core cities and their member counties
(:func:`metro_areas`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from agglo.analysis.metro.catchment import (
    Catchment,
    _check_method,
    _frame,
    _network_polygons,
    commute_catchment,
)
from agglo.analysis.metro.friction import _friction_group
from agglo.analysis.metro.graph import _GEOD, RoadGraph, _wgs84_pipelines
from agglo.analysis.metro.options import MetroOptions
from agglo.analysis.metro.routing import _check_minutes, _check_speed
from agglo.errors import AggloInputError
from agglo.measures.geodesy import WGS84, ensure_wgs84, geodesic_area_km2
from agglo.reference import seats as seat_rule
from agglo.results import StageResult

log = logging.getLogger(__name__)

#: default core cities (adcode) of the five agglomerations
DEFAULT_CORES: dict[str, tuple[str, ...]] = {
    "yrd": ("310100", "320100", "330100", "340100"),
    "myr": ("420100", "430100", "360100"),
    "cy": ("510100", "500000"),
    "qz": ("520100",),
    "dz": ("530100",),
}


def resolve_cores(cities: pd.DataFrame, cores: Iterable[str] | None) -> list[str]:
    """Core city adcodes from adcodes or Chinese names (``"成都"`` or ``"成都市"``).

    ``None`` gives :data:`DEFAULT_CORES` (the core cities of the five agglomerations) that
    are present in ``cities``.

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"adcode": ["510100", "500000"], "name_zh": ["成都市", "重庆市"]})
    >>> resolve_cores(c, ["成都", "500000"])
    ['510100', '500000']
    """
    ad = cities["adcode"].astype(str)
    if cores is None:
        wanted = [a for group in DEFAULT_CORES.values() for a in group]
        return [a for a in wanted if a in set(ad)]
    by_name = {}
    for a, nm in zip(ad, cities["name_zh"].astype(str), strict=True):
        by_name[nm] = a
        by_name[re.sub(r"(市|地区|自治州)$", "", nm)] = a
    out, bad = [], []
    for c in cores:
        c = str(c).strip()
        if c in set(ad):
            out.append(c)
        elif c in by_name:
            out.append(by_name[c])
        else:
            bad.append(c)
    if bad:
        raise AggloInputError(
            f"unknown core city/cities {bad}: give 6-digit adcodes or Chinese names of the "
            f"cities layer (e.g. 510100 or 成都)."
        )
    if not out:
        raise AggloInputError("no core cities given.")
    return list(dict.fromkeys(out))


#: seed 003 check: Chengdu's one-hour area should reach these cities' seats
CHENGDU_CHECK = (
    "510100",
    {"510600": "Deyang 德阳", "511400": "Meishan 眉山", "512000": "Ziyang 资阳"},
)


@dataclass
class MetroResult(StageResult):
    """Result of :func:`metro_areas` and :func:`~agglo.analysis.metro.metropolitan_areas`.

    Attributes
    ----------
    areas
        One row per core (EPSG:4326): ``core_adcode``, ``core_name``, ``minutes``,
        ``access_speed_kmh``, ``method``, ``area_km2``, ``n_member_counties``,
        ``population_inside`` (when population is given), geometry (the catchment), and
        ``agglomeration_id`` when the cities have one.
    members
        Counties with their seat reachable within the limit or any area inside, per core:
        ``core_adcode``, ``core_name``, ``adcode``, ``name_zh``, ``city_adcode``,
        ``seat_minutes`` (NaN = not reached), ``member`` (seat reached), ``area_share``
        (0-1 of the county's geodesic area inside), ``area_inside_km2``, and with population
        ``population_inside`` (uniform density within the county assumed).
    cities
        The same per city: ``adcode``, ``name_zh``, ``seat_minutes``, ``area_share``, ...
    isochrones
        Bands (e.g. 0-15, 15-30, ... minutes) per core: ``core_adcode``, ``band_min``,
        ``band_max``, ``area_km2``, geometry (and ``agglomeration_id``).
    catchment
        The :class:`~agglo.analysis.metro.Catchment` of the cores (``nodes``: travel time to
        every reached node, per core, ``group`` = core adcode).
    method_note
        How the areas were made (method, limit, access speed, roads and their status).
    road_report
        :attr:`RoadGraph.report` of the graph routed on.
    options
        The options used (``None`` when :func:`metro_areas` was called directly).
    """

    areas: gpd.GeoDataFrame
    members: pd.DataFrame
    cities: pd.DataFrame
    isochrones: gpd.GeoDataFrame
    catchment: Catchment = field(repr=False)
    method_note: str = ""
    road_report: dict[str, Any] = field(default_factory=dict)
    options: Any = None
    #: provenance label of the road network (e.g. ``synthetic:roads demo_roads_synthetic.gpkg``)
    road_label: str | None = None
    #: city adcode -> provenance label of the population behind ``population_inside``
    population_labels: pd.Series | None = None

    @property
    def nodes(self) -> gpd.GeoDataFrame:
        """Travel time to every reached node, per core (built on demand)."""
        return self.catchment.nodes

    def tables(self) -> dict[str, pd.DataFrame]:
        """``metro_members`` and ``metro_cities``."""
        return {
            "metro_members": self._labelled(self.members, "city_adcode"),
            "metro_cities": self._labelled(self.cities, "adcode"),
        }

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """``metro_areas`` (one catchment per core) and ``isochrones`` (bands)."""
        return {
            "metro_areas": self._labelled(self.areas, None),
            "isochrones": self._labelled(self.isochrones, None),
        }

    def _labelled(self, table: pd.DataFrame, city: str | None) -> pd.DataFrame:
        """``table`` with ``provenance`` (and ``provenance_inputs``) per row (issue 17).

        Every row is routed on the road network (:attr:`road_label`); a row with
        ``population_inside`` also used the population of its city (``city``), an area
        row that of every city with a county inside it (a city outside the panel, without
        ``population_inside``, only the roads). Unchanged without a road label.
        """
        from agglo.io.indicators import provenance_by

        if self.road_label is None or "provenance" in table:
            return table
        uses_pop = self.population_labels is not None and "population_inside" in table
        rows = pd.DataFrame({"_row": range(len(table))})
        labels = rows.assign(input="roads", provenance=self.road_label)
        if uses_pop:
            pop = self.population_labels
            if city is not None:
                codes = table[city].astype(str).to_numpy()
                p = rows.assign(_city=codes)
            else:  # a catchment: the cities of the counties inside it
                inside = self.members[self.members["area_share"] > 0]
                by_core = inside.groupby(inside["core_adcode"].astype(str))["city_adcode"]
                cities = by_core.agg(lambda s: sorted(set(map(str, s))))
                p = rows.assign(_city=table["core_adcode"].astype(str).map(cities).to_numpy())
                p = p.explode("_city")
            p = p[table["population_inside"].notna().to_numpy()[p["_row"].to_numpy()]]
            p = p.assign(input="population", provenance=p["_city"].map(pop).to_numpy())
            labels = pd.concat([labels, p.drop(columns="_city")], ignore_index=True)
        prov = provenance_by(labels, ["_row"], inputs=uses_pop).sort_values("_row")
        out = table.copy()
        for col in [c for c in prov.columns if c != "_row"]:
            out[col] = prov[col].fillna("unknown").to_numpy()
        if isinstance(table, gpd.GeoDataFrame):
            geo = table.geometry.name
            out = out[[*(c for c in out.columns if c != geo), geo]]
        return out

    def metadata(self) -> dict[str, Any]:
        """Options and method."""
        opts = self.options.to_dict() if hasattr(self.options, "to_dict") else {}
        return {"options": opts, "method": self.method_note}

    def layer_metadata(self) -> dict[str, dict[str, Any]]:
        """Descriptions and method of the two layers (and the road graph's build facts)."""
        graph = {k: v for k, v in self.road_report.items() if k != "dropped_classes"}
        return {
            "metro_areas": {
                "description": "one-hour commute catchments (都市圈) of core cities",
                "method": self.method_note,
                "road_graph": graph,
            },
            "isochrones": {
                "description": "isochrone bands (minutes from the core city seat)",
                "method": self.method_note,
            },
        }

    def summary_lines(self) -> list[str]:
        """One line per core and the seed-003 check (Chengdu reaches Deyang, Meishan, Ziyang)."""
        lines = [
            f"Metro area of {row.core_name}: {row.area_km2:,.0f} km² within "
            f"{row.minutes:g} min, {row.n_member_counties} county seats reached"
            for row in self.areas.itertuples(index=False)
        ]
        core, targets = CHENGDU_CHECK
        if core not in set(self.areas["core_adcode"]):
            return lines
        limit = float(self.areas.loc[self.areas["core_adcode"] == core, "minutes"].iloc[0])
        c = self.cities[self.cities["core_adcode"] == core].set_index("adcode")["seat_minutes"]
        parts = []
        for ad, label in targets.items():
            t = float(c.get(ad, np.nan))
            parts.append(f"{label} " + (f"{t:.0f} min" if np.isfinite(t) else "not reached"))
        ok = all(np.isfinite(float(c.get(ad, np.nan))) for ad in targets)
        lines.append(
            f"Seed-003 check: Chengdu's {limit:g}-min area "
            f"{'reaches' if ok else 'does NOT reach all of'} the seats of " + ", ".join(parts)
        )
        return lines


def _seat_minutes(
    graph: RoadGraph,
    dist: np.ndarray,
    seat_lon: np.ndarray,
    seat_lat: np.ndarray,
    access_mpm: float,
    k: int = 8,
    near: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Minutes to each seat: best of its ``k`` nearest nodes plus the off-network leg
    (``near``: ``graph.nearest_nodes(seat_lon, seat_lat, k=k)`` when already known)."""
    idx, d = graph.nearest_nodes(seat_lon, seat_lat, k=k) if near is None else near
    t = dist[idx] + d / access_mpm
    return np.min(t, axis=1)


@functools.lru_cache(maxsize=64)
def _laea_transformer(lat: str, lon: str) -> Transformer:
    """WGS84 -> Lambert azimuthal equal-area centred on (lon, lat), made once per centre (the
    counties' and the cities' shares of one area share it; the pipeline ``from_crs`` resolves
    to, see :func:`~agglo.analysis.metro.graph._wgs84_pipelines`)."""
    return _wgs84_pipelines(f"laea lat_0={lat} lon_0={lon}")[0]


def _shares(units: gpd.GeoDataFrame, geom: shapely.Geometry, pop_col: str | None) -> pd.DataFrame:
    """Share of each unit's area inside ``geom``: areas in a Lambert azimuthal equal-area
    projection centred on ``geom`` (equal-area, so ratios and km² are exact up to vertex
    densification)."""
    inter = np.zeros(len(units))
    share = np.zeros(len(units))
    if not geom.is_empty:
        hit = units.sindex.query(geom, predicate="intersects")
        if len(hit):
            c = geom.centroid
            to_laea = _laea_transformer(f"{c.y:.6f}", f"{c.x:.6f}")

            def project(xy: np.ndarray) -> np.ndarray:
                return np.column_stack(to_laea.transform(xy[:, 0], xy[:, 1]))

            sub = shapely.transform(units.geometry.to_numpy()[hit], project)
            g = shapely.transform(geom, project)
            a_unit = shapely.area(sub)
            a_in = shapely.area(shapely.intersection(sub, g))
            inter[hit] = a_in / 1e6
            share[hit] = np.where(
                a_unit > 0, np.minimum(a_in / np.where(a_unit > 0, a_unit, 1), 1), 0
            )
    out = pd.DataFrame({"area_share": share, "area_inside_km2": inter}, index=units.index)
    if pop_col is not None:
        out["population_inside"] = share * units[pop_col].to_numpy(dtype=float)
    return out


def metro_areas(
    cities: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    graph: RoadGraph,
    cores: Iterable[str] | None = None,
    *,
    minutes: float = MetroOptions.minutes,
    access_speed_kmh: float = MetroOptions.access_speed_kmh,
    method: str = "network",
    bands: Sequence[float] = MetroOptions.bands,
    population: str | None = "population",
    city_seats: gpd.GeoDataFrame | None = None,
    county_seats: gpd.GeoDataFrame | None = None,
    max_access_km: float = MetroOptions.max_access_km,
    cell_m: float = MetroOptions.cell_m,
    progress: bool = False,
) -> MetroResult:
    """Metropolitan areas: one-hour commute catchments of core cities and their members.

    Parameters
    ----------
    cities, counties
        Boundaries (:func:`agglo.load_cities`, :func:`agglo.load_counties`); counties need
        ``adcode``, ``name_zh``, ``city_adcode``.
    graph
        Road graph (:func:`road_graph`).
    cores
        Core cities as adcodes or Chinese names; default :data:`DEFAULT_CORES`.
    minutes
        Commute limit, minutes.
    access_speed_kmh, method, max_access_km, cell_m
        As in :func:`commute_catchment`.
    bands
        Isochrone band limits in minutes (each ≤ ``minutes``); ``()`` for none.
    population
        Column of population in ``cities``/``counties``; used when present (shares of
        population inside assume uniform density within each unit).
    city_seats, county_seats
        Given seats (``adcode, lon, lat`` or points with ``adcode``); they win, the other
        seats follow :func:`agglo.reference.seats.city_seats` /
        :func:`~agglo.reference.seats.county_seats` (the one seat rule).
    progress
        Progress bar over cores.

    Returns
    -------
    MetroResult

    Examples
    --------
    >>> import agglo
    >>> g = agglo.road_graph("data/roads/demo_roads_synthetic.gpkg")  # doctest: +SKIP
    >>> res = agglo.metro_areas(agglo.load_cities(), agglo.load_counties(), g, ["成都"])  # doctest: +SKIP
    >>> res.members.query("member")[["name_zh", "seat_minutes"]]  # doctest: +SKIP
    """
    minutes = _check_minutes(minutes)
    access_speed_kmh = _check_speed(access_speed_kmh)
    method = _check_method(method)
    bands = sorted(float(b) for b in bands)
    if any(b <= 0 or b > minutes for b in bands):
        raise AggloInputError(f"bands must lie in (0, minutes={minutes}], got {bands}.")
    for name, df, cols in (
        ("cities", cities, ("adcode", "name_zh")),
        ("counties", counties, ("adcode", "name_zh", "city_adcode")),
    ):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise AggloInputError(f"{name} lacks column(s) {miss}; use agglo.load_{name}().")
    cities = ensure_wgs84(cities, what="cities")
    counties = ensure_wgs84(counties, what="counties")
    core_ids = resolve_cores(cities, cores)
    cs = seat_rule.city_seats(cities, counties, seats=city_seats)
    ks = seat_rule.county_seats(counties, seats=county_seats)
    cs_by = cs.set_index(cs["adcode"].astype(str))
    src = cs_by.loc[core_ids]
    name_of = dict(zip(cities["adcode"].astype(str), cities["name_zh"], strict=True))
    cat = commute_catchment(
        graph,
        gpd.GeoDataFrame(geometry=src.geometry.to_numpy(), crs=WGS84),
        minutes=minutes,
        access_speed_kmh=access_speed_kmh,
        groups=core_ids,
        method=method,
        max_access_km=max_access_km,
        cell_m=cell_m,
        progress=progress,
    )
    access_mpm = access_speed_kmh * 1000 / 60
    band_args = (
        graph,
        cat,
        core_ids,
        np.column_stack([src.geometry.x.to_numpy(), src.geometry.y.to_numpy()]),
        bands,
        access_speed_kmh,
        method,
        max_access_km,
        cell_m,
        list(cat.polygons.geometry),
        float(minutes),
    )
    kpop = population if population and population in counties.columns else None
    cpop = population if population and population in cities.columns else None
    area_rows, member_frames, city_frames, band_rows = [], [], [], []
    near_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, core in enumerate(core_ids):
        geom = cat.polygons.geometry.iloc[k]
        dist = cat.times[k]
        core_pt = src.geometry.iloc[k]

        def seat_time(pts: gpd.GeoSeries, key: str, dist=dist, core_pt=core_pt) -> np.ndarray:
            lon, lat = pts.x.to_numpy(), pts.y.to_numpy()
            if key not in near_of:  # the seats' nearest nodes do not depend on the core
                near_of[key] = graph.nearest_nodes(lon, lat, k=8)
            t = _seat_minutes(graph, dist, lon, lat, access_mpm, near=near_of[key])
            _, _, d = _GEOD.inv(
                np.full(len(lon), core_pt.x), np.full(len(lon), core_pt.y), lon, lat
            )
            t = np.minimum(t, np.asarray(d) / access_mpm)
            return np.where(t <= minutes, t, np.nan)

        kt = pd.Series(seat_time(ks.geometry, "county"), index=ks["adcode"].astype(str).to_numpy())
        ksh = _shares(counties, geom, kpop)
        kdf = pd.DataFrame(
            {
                "core_adcode": core,
                "core_name": name_of.get(core),
                "adcode": counties["adcode"].astype(str).to_numpy(),
                "name_zh": counties["name_zh"].to_numpy(),
                "city_adcode": counties["city_adcode"].astype(str).to_numpy(),
            }
        )
        kdf["seat_minutes"] = kt.reindex(kdf["adcode"]).to_numpy()
        kdf["member"] = kdf["seat_minutes"].notna()
        for c in ksh.columns:
            kdf[c] = ksh[c].to_numpy()
        kdf = kdf[kdf["member"] | (kdf["area_share"] > 0)]
        member_frames.append(
            kdf.sort_values(["seat_minutes", "area_share"], ascending=[True, False])
        )
        ct = pd.Series(seat_time(cs.geometry, "city"), index=cs["adcode"].astype(str).to_numpy())
        csh = _shares(cities, geom, cpop)
        cdf = pd.DataFrame(
            {
                "core_adcode": core,
                "core_name": name_of.get(core),
                "adcode": cities["adcode"].astype(str).to_numpy(),
                "name_zh": cities["name_zh"].to_numpy(),
            }
        )
        cdf["seat_minutes"] = ct.reindex(cdf["adcode"]).to_numpy()
        for c in csh.columns:
            cdf[c] = csh[c].to_numpy()
        cdf = cdf[cdf["seat_minutes"].notna() | (cdf["area_share"] > 0)]
        city_frames.append(cdf.sort_values("area_share", ascending=False))
        row = {
            "core_adcode": core,
            "core_name": name_of.get(core),
            "minutes": minutes,
            "access_speed_kmh": access_speed_kmh,
            "method": method,
            "area_km2": float(cat.polygons["area_km2"].iloc[k]),
            "n_member_counties": int(kdf["member"].sum()),
        }
        if kpop:
            row["population_inside"] = float(kdf["population_inside"].sum())
        area_rows.append({**row, "geometry": geom})
    areas = gpd.GeoDataFrame(area_rows, geometry="geometry", crs=WGS84)
    # isochrone bands: catchments at each band limit from the same travel times
    if bands:
        # not in the background of the loop above: the catchment threads must not overlap
        # this thread's warnings.catch_warnings (process-global state in Python < 3.14)
        band_polys = _band_catchments(*band_args)
        lo = 0.0
        prev: dict[str, shapely.Geometry] = {}
        for b in bands:
            for core in core_ids:
                g_b = band_polys[(core, b)]
                ring = _polygonal(shapely.difference(g_b, prev[core])) if core in prev else g_b
                prev[core] = g_b
                band_rows.append(
                    {
                        "core_adcode": core,
                        "core_name": name_of.get(core),
                        "band_min": lo,
                        "band_max": b,
                        "geometry": ring,
                    }
                )
            lo = b
    iso = gpd.GeoDataFrame(
        band_rows,
        columns=["core_adcode", "core_name", "band_min", "band_max", "geometry"],
        geometry="geometry",
        crs=WGS84,
    )
    iso.insert(4, "area_km2", geodesic_area_km2(iso).to_numpy() if len(iso) else [])
    if "agglomeration_id" in cities.columns:
        agg = dict(zip(cities["adcode"].astype(str), cities["agglomeration_id"], strict=True))
        areas = areas.assign(agglomeration_id=areas["core_adcode"].map(agg))
        iso = iso.assign(agglomeration_id=iso["core_adcode"].map(agg))
    return MetroResult(
        areas=areas,
        members=pd.concat(member_frames, ignore_index=True),
        cities=pd.concat(city_frames, ignore_index=True),
        isochrones=iso,
        catchment=cat,
    )


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygonal part of ``geom``: a band difference can leave zero-area line slivers
    (a GeometryCollection) that polygon layers (shapefile, GeoPackage) cannot store."""
    if shapely.get_type_id(geom) != 7:  # not a GeometryCollection
        return geom
    parts = [p for p in shapely.get_parts(geom) if shapely.get_type_id(p) in (3, 6)]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _band_catchments(
    graph: RoadGraph,
    cat: Catchment,
    core_ids: list[str],
    src_xy: np.ndarray,
    bands: list[float],
    access_speed_kmh: float,
    method: str,
    max_access_km: float,
    cell_m: float,
    top_geoms: Sequence[shapely.Geometry],
    top: float,
) -> dict[tuple[str, float], shapely.Geometry]:
    """Catchment of each core at each band limit (network: from the same travel times, on the
    nodes and edges the hour's catchment projected, all bands united in one thread pool).

    ``src_xy``: the cores' seats (lon, lat), ``top_geoms``: the hour's polygons, ``top``: its
    limit.
    """
    out: dict[tuple[str, float], shapely.Geometry] = {}
    access_mpm = access_speed_kmh * 1000 / 60
    jobs, keys = [], []
    for k, core in enumerate(core_ids):
        dist = cat.times[k]
        lon, lat = src_xy[k : k + 1, 0], src_xy[k : k + 1, 1]
        for b in bands:
            if b == top:
                out[(core, b)] = top_geoms[k]
            elif method == "network":
                # travel times do not depend on the cut-off: only nodes within b count
                frame = cat._frames[k] if cat._frames else _frame(graph, dist, top, lon, lat)
                jobs.append((frame, np.where(dist <= b, dist, np.inf), b))
                keys.append((core, b))
            else:
                out[(core, b)], _ = _friction_group(graph, lon, lat, b, access_speed_kmh, cell_m)
    out.update(zip(keys, _network_polygons(jobs, access_mpm, 8), strict=True))
    return out
