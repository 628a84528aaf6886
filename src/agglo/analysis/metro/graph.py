"""Road graph: OSM speeds (:func:`parse_maxspeed`, :data:`DEFAULT_SPEEDS_KMH`) and the routable
:class:`RoadGraph` built by :func:`road_graph`.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from pyproj import CRS, Geod, Transformer
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from agglo._cores import usable_cores
from agglo.errors import AggloInputError
from agglo.measures.geodesy import WGS84, ensure_wgs84, geodesic_segments_m

log = logging.getLogger(__name__)

_GEOD = Geod(ellps="WGS84")

#: default speed by OSM ``highway`` class, km/h (urban-China free-flow averages, rounded;
#: used when ``maxspeed`` is missing or invalid). Override with ``road_graph(speeds=...)``.
DEFAULT_SPEEDS_KMH: dict[str, float] = {
    "motorway": 100.0,
    "motorway_link": 50.0,
    "trunk": 80.0,
    "trunk_link": 40.0,
    "primary": 60.0,
    "primary_link": 35.0,
    "secondary": 50.0,
    "secondary_link": 30.0,
    "tertiary": 40.0,
    "tertiary_link": 25.0,
    "unclassified": 30.0,
    "road": 30.0,
    "residential": 25.0,
    "living_street": 10.0,
    "service": 15.0,
}
_MPH = 1.609344
_KNOT = 1.852
_NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mph|knots?|km/h|kmh|kph)?\s*$", re.IGNORECASE)
_ONEWAY_FWD = {"yes", "true", "1"}
_ONEWAY_REV = {"-1", "reverse"}


# --------------------------------------------------------------------------- speeds


def parse_maxspeed(value: Any) -> float:
    """Parse an OSM ``maxspeed`` value to km/h; NaN when missing or invalid.

    Rules: a number is km/h; ``"mph"`` and ``"knots"`` units are converted; several values
    separated by ``;`` (per lane or time) give the **lowest** (conservative: a catchment must
    not claim what cannot be reached); zone codes (``"CN:urban"``), ``"none"``, ``"walk"``,
    ``"signals"`` and values outside (0, 200] km/h are invalid, so the class speed is used.

    Examples
    --------
    >>> parse_maxspeed("60"), parse_maxspeed("50;60"), round(parse_maxspeed("60 mph"), 2)
    (60.0, 50.0, 96.56)
    >>> import math; math.isnan(parse_maxspeed("CN:urban")), math.isnan(parse_maxspeed(None))
    (True, True)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, int | float):
        v = float(value)
        return v if 0 < v <= 200 else math.nan
    out = []
    for part in str(value).split(";"):
        m = _NUM.match(part)
        if not m:
            return math.nan
        v = float(m.group(1))
        unit = (m.group(2) or "").lower()
        if unit == "mph":
            v *= _MPH
        elif unit.startswith("knot"):
            v *= _KNOT
        if not 0 < v <= 200:
            return math.nan
        out.append(v)
    return min(out) if out else math.nan


# --------------------------------------------------------------------------- graph


@dataclass
class RoadGraph:
    """A routable directed road graph (build with :func:`road_graph`).

    Attributes
    ----------
    csr
        ``scipy.sparse.csr_array`` (n x n): entry (u, v) = minutes to drive u -> v.
    lon, lat
        Node coordinates, degrees (EPSG:4326), the first input vertex of each snapped node.
    length_m, speed_kmh
        Geodesic length (m) and speed (km/h) of each edge, aligned with ``csr.data``.
    component
        Weakly connected component label of each node (0 = largest).
    report
        Build facts: nodes, edges, components, largest component share, dropped classes,
        number of edges whose speed came from ``maxspeed``.
    """

    csr: sp.csr_array
    lon: np.ndarray
    lat: np.ndarray
    length_m: np.ndarray
    speed_kmh: np.ndarray
    component: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)
    _tree: Any = field(default=None, repr=False)

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.csr.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of directed edges."""
        return int(self.csr.nnz)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Directed edges as arrays ``(u, v, minutes)`` aligned with ``csr.data``."""
        u = np.repeat(np.arange(self.n_nodes), np.diff(self.csr.indptr))
        return u, self.csr.indices.astype(np.int64), self.csr.data

    def nearest_nodes(
        self, lon: np.ndarray, lat: np.ndarray, k: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest ``k`` nodes of each point and their geodesic distance in metres."""
        if self._tree is None:
            self._tree = cKDTree(_unit_xyz(self.lon, self.lat))
        k = min(k, self.n_nodes)
        _, idx = self._tree.query(_unit_xyz(np.asarray(lon), np.asarray(lat)), k=k)
        idx = np.asarray(idx).reshape(len(lon), k)
        _, _, d = _GEOD.inv(
            np.repeat(lon, k), np.repeat(lat, k), self.lon[idx.ravel()], self.lat[idx.ravel()]
        )
        return idx, np.asarray(d).reshape(len(lon), k)

    def nodes(self) -> gpd.GeoDataFrame:
        """All nodes as points (EPSG:4326) with ``node`` and ``component``."""
        return gpd.GeoDataFrame(
            {"node": np.arange(self.n_nodes), "component": self.component},
            geometry=gpd.points_from_xy(self.lon, self.lat),
            crs=WGS84,
        )


def _unit_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _aeqd(lon: float, lat: float) -> CRS:
    return CRS.from_proj4(
        f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"
    )


def _aeqd_transformers(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    """WGS84 -> azimuthal equidistant centred on (lon, lat) and back (made once per centre:
    building a transformer costs more than projecting a catchment's nodes)."""
    return _transformers_at(f"{lon:.6f}", f"{lat:.6f}")


@functools.lru_cache(maxsize=64)
def _transformers_at(lon: str, lat: str) -> tuple[Transformer, Transformer]:
    return _wgs84_pipelines(f"aeqd lat_0={lat} lon_0={lon}")


def _wgs84_pipelines(proj: str) -> tuple[Transformer, Transformer]:
    """WGS84 (lon, lat) -> the projection ``proj`` (PROJ parameters without ``+``, on the
    WGS84 ellipsoid, metres) and back, as the pipelines ``Transformer.from_crs(WGS84, crs,
    always_xy=True)`` resolves to (its ``definition``): the same operations, so the same
    coordinates bit for bit (tests/test_metro.py), made in ~0.3 ms instead of ~10-40 ms (no
    search of the PROJ database for candidate operations)."""
    step = f"proj={proj} x_0=0 y_0=0 ellps=WGS84"
    deg = "proj=unitconvert xy_in=deg xy_out=rad"
    rad = "proj=unitconvert xy_in=rad xy_out=deg"
    return (
        Transformer.from_pipeline(f"proj=pipeline step {deg} step {step}"),
        Transformer.from_pipeline(f"proj=pipeline step inv {step} step {rad}"),
    )


def _take(values: np.ndarray, codes: np.ndarray, missing: Any) -> np.ndarray:
    """``values[codes]`` with ``missing`` where ``codes == -1`` (``pd.factorize``'s NA)."""
    filled = np.append(values, np.array([missing], dtype=values.dtype))
    return filled[codes]


def _distinct_points(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code of every vertex among the distinct coordinates (numbered by first appearance) and
    the position of each distinct coordinate's first vertex.

    One int64 hash of the two float64 bit patterns is sorted (a third of the memory of a hash
    table over all vertices and faster than hashing complex pairs); every vertex is then
    compared with its representative, and if any hash is shared by different coordinates the
    exact pairwise factorization is used instead.
    """
    lon_bits, lat_bits = lon.view(np.int64), lat.view(np.int64)
    key = lon_bits * np.int64(-7046029254386353131)  # odd 64-bit multiplier, wraps
    key += lat_bits
    order, new = _stable_groups(key)
    del key
    first_by_key = order[new]  # stable sort: the first vertex of each distinct hash
    by_first = np.argsort(first_by_key)
    first = first_by_key[by_first]
    del first_by_key
    index = _index_dtype(len(order))
    rank = np.empty(len(first), dtype=index)
    rank[by_first] = np.arange(len(first), dtype=index)
    del by_first
    group = np.cumsum(new, dtype=index)
    group -= 1
    del new
    code = np.empty(len(order), dtype=index)
    code[order] = rank[group]
    del order, group, rank
    rep = first[code]
    if not (np.array_equal(lon_bits[rep], lon_bits) and np.array_equal(lat_bits[rep], lat_bits)):
        code, _ = pd.factorize(lon + 1j * lat)  # a 64-bit hash collision
        first = _first_positions(code)
    return code, first


def _stable_groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort order of ``key`` and, in that order, where each run of equal keys starts."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    new = np.empty(len(order), dtype=bool)
    new[0] = True
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new[1:])
    return order, new


def _snap_nodes(lon: np.ndarray, lat: np.ndarray, snap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Node of every vertex and the first vertex of every node.

    Vertices in the same ``snap_m`` cell of an azimuthal equidistant projection centred on
    the data are one node; nodes are numbered by cell (x, then y). Each distinct coordinate
    is projected once (road lines share their end vertices), and the cells are one int64 key
    per distinct coordinate, grouped by one stable sort.
    """
    xy_code, first_xy = _distinct_points(lon, lat)
    c_lon = float((lon.min() + lon.max()) / 2)
    c_lat = float((lat.min() + lat.max()) / 2)
    # projected in place into the gathered copies (no further buffers)
    x, y = _transform_inplace(_aeqd_transformers(c_lon, c_lat)[0], lon[first_xy], lat[first_xy])
    kx = np.round(np.asarray(x) / snap_m).astype(np.int64)
    ky = np.round(np.asarray(y) / snap_m).astype(np.int64)
    del x, y
    kx -= kx.min()
    ky -= ky.min()
    cell = kx * (int(ky.max()) + 1) + ky  # ordered as (kx, ky)
    del kx, ky
    order, new_node = _stable_groups(cell)
    del cell
    node_of_xy = np.empty(len(order), dtype=_index_dtype(len(order)))
    node_of_xy[order] = np.cumsum(new_node) - 1
    # distinct coordinates are numbered by first appearance and the sort is stable, so the
    # first of each cell in sorted order is the cell's first vertex
    return node_of_xy[xy_code], first_xy[order[new_node]]


#: fewest points per thread for which projecting in threads pays (~0.2 s of PROJ work)
_MIN_POINTS_PER_THREAD = 250_000


def _transform_inplace(
    transformer: Transformer, x: np.ndarray, y: np.ndarray, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``transformer.transform(x, y, inplace=True)`` on contiguous float64 arrays, in chunks on
    one thread per available core for large inputs (PROJ releases the GIL; pyproj >= 3.1
    transformers are thread-safe). Each point is transformed alone, so the result is the same
    bit for bit (tests/test_metro.py); only the wall time changes (the graph build projects
    every distinct vertex: ~0.4 s per million on one core)."""
    if threads is None:
        threads = max(1, min(usable_cores(), len(x) // _MIN_POINTS_PER_THREAD))
    if threads <= 1:
        return transformer.transform(x, y, inplace=True)
    cut = np.linspace(0, len(x), threads + 1).astype(np.int64)

    def chunk(i: int) -> None:
        transformer.transform(x[cut[i] : cut[i + 1]], y[cut[i] : cut[i + 1]], inplace=True)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="agglo-project") as pool:
        list(pool.map(chunk, range(threads)))
    return x, y


def _first_positions(code: np.ndarray) -> np.ndarray:
    """Position of the first occurrence of each code of ``pd.factorize`` (codes 0, 1, ...)."""
    # factorize numbers values by first appearance: the first occurrence of value c is where
    # the running maximum of the codes steps up to c
    return np.flatnonzero(np.diff(np.maximum.accumulate(code), prepend=-1) > 0)


def _geodesic_lengths(
    lon: np.ndarray, lat: np.ndarray, start: slice | np.ndarray, chunk: int = 1 << 18
) -> np.ndarray:
    """Geodesic length (m) of the segments from vertex ``start`` to the next vertex.

    By :func:`agglo.measures.geodesy.geodesic_segments_m` (within 1e-8 m of pyproj's Karney
    inverse), in chunks of gathered end coordinates, so the temporaries stay a few MB however
    many segments there are.
    """
    if isinstance(start, slice):
        start = np.arange(len(lon))[start]
    out = np.empty(len(start))
    for i in range(0, len(start), chunk):
        a = start[i : i + chunk]
        b = a + 1
        out[i : i + chunk] = geodesic_segments_m(lon[a], lat[a], lon[b], lat[b])
    return out


def _next(start: slice | np.ndarray) -> slice | np.ndarray:
    """The vertices after ``start`` (positions or a slice)."""
    if isinstance(start, slice):
        return slice(start.start + 1, start.stop, start.step)
    return start + 1


def _index_dtype(n: int) -> type:
    """int32 for ids below 2**31 (half the memory of int64), else int64."""
    return np.int32 if n < 2**31 else np.int64


def _fastest_per_pair(
    key: np.ndarray, minutes: np.ndarray, of: np.ndarray | None = None
) -> np.ndarray:
    """Positions of the edges kept, ordered by ``key`` (= u * n + v): of parallel edges the
    fastest (the first one given on ties). Edge i takes ``minutes[i]``, or ``minutes[of[i]]``
    when ``of`` is given (looked up only if there are parallel edges)."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    start = np.ones(len(ks), dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    if start.all():
        return order
    group = np.cumsum(start) - 1
    m = minutes[order] if of is None else minutes[of[order]]
    best = np.minimum.reduceat(m, np.flatnonzero(start))
    cand = np.flatnonzero(m == best[group])
    cand = cand[np.r_[True, group[cand][1:] != group[cand][:-1]]]
    return order[cand]


def _read_lines(path: Path, **kwargs: Any) -> gpd.GeoDataFrame:
    if not path.exists():
        raise AggloInputError(f"road file {path} not found; give an OSM .osm.pbf or a line layer.")
    try:
        from agglo.measures.roads import read_roads
    except ImportError:  # pragma: no cover - roads stage not installed
        if path.name.endswith((".pbf", ".osm")):
            raise AggloInputError(
                f"reading OSM extracts needs agglo.measures.roads.read_roads, which is unavailable: {path}"
            ) from None
        import pyogrio

        return pyogrio.read_dataframe(path)
    return read_roads(path, classes=kwargs.get("classes", "all"))


def _line_attributes(
    roads: gpd.GeoDataFrame,
    types: np.ndarray,
    not_empty: np.ndarray,
    class_col: str,
    table: Mapping[str, float],
    maxspeed: bool,
    oneway: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Series, int]:
    """Rows of the drivable lines, their speed (km/h) and direction (0 both ways, 1 as
    digitised, -1 against), the dropped classes and the number of valid ``maxspeed`` tags."""
    keep = np.isin(types, [1, 2, 5]) & not_empty
    # per-line string work on the distinct values only (a country has millions of lines)
    cls_code, cls_values = pd.factorize(roads[class_col])
    cls_names = pd.Series(cls_values, dtype=object).astype("string")
    class_speed = _take(cls_names.map(table).to_numpy(dtype=float), cls_code, table.get(""))
    no_speed = np.isnan(class_speed)
    if (keep & no_speed).any():
        names = _take(cls_names.fillna("").to_numpy(dtype=object), cls_code, "")
        dropped = pd.Series(names[keep & no_speed], dtype="string").value_counts()
    else:
        dropped = pd.Series([], dtype="int64")
    keep &= ~no_speed
    if not keep.any():
        found = sorted(_take(cls_names.fillna("").to_numpy(dtype=object), cls_code, "").tolist())
        raise AggloInputError(
            f"no drivable road lines: classes found {sorted(set(found))[:10]}, "
            f"speeds known for {sorted(table)}. Pass speeds={{class: km/h}}."
        )
    speed = class_speed.copy()
    n_tag = 0
    if maxspeed and "maxspeed" in roads.columns:
        ms_code, ms_values = pd.factorize(roads["maxspeed"])
        parsed = _take(np.array([parse_maxspeed(v) for v in ms_values]), ms_code, math.nan)
        use = keep & np.isfinite(parsed)
        speed[use] = parsed[use]
        n_tag = int(use.sum())
    direction = np.zeros(len(roads), dtype=np.int8)  # 0 both, 1 forward, -1 backward
    if oneway and "oneway" in roads.columns:
        ow_code, ow_values = pd.factorize(roads["oneway"])
        ow = pd.Series(ow_values, dtype=object).astype("string").str.strip().str.lower()
        ow_dir = np.where(ow.isin(_ONEWAY_FWD), 1, np.where(ow.isin(_ONEWAY_REV), -1, 0))
        direction = _take(ow_dir.astype(np.int8), ow_code, 0)

    rows = np.flatnonzero(keep)
    return rows, speed[rows], direction[rows], dropped, n_tag


def road_graph(
    roads: gpd.GeoDataFrame | str | Path,
    *,
    speeds: Mapping[str, float] | None = None,
    maxspeed: bool = True,
    oneway: bool = True,
    class_col: str = "highway",
    snap_m: float = 1.0,
) -> RoadGraph:
    """Build a routable graph from a road line layer or an OSM extract.

    Parameters
    ----------
    roads
        Lines (any CRS) with a ``class_col`` column and optional ``maxspeed`` and ``oneway``
        columns (OSM tag values), or a path read by :func:`agglo.measures.roads.read_roads`
        (``.osm.pbf`` or any OGR line layer).
    speeds
        Class -> km/h, merged over :data:`DEFAULT_SPEEDS_KMH`. Lines of classes with no speed
        are dropped (reported in ``graph.report["dropped_classes"]``).
    maxspeed
        Use a valid ``maxspeed`` tag in preference to the class speed.
    oneway
        Respect ``oneway`` tags (``yes/true/1`` = digitised direction only, ``-1/reverse`` =
        against it; anything else, e.g. ``reversible``, = both ways).
    class_col
        Road class column.
    snap_m
        Vertices closer than about this (same cell of a ``snap_m`` grid in an azimuthal
        equidistant projection centred on the data) become one node, metres.

    Returns
    -------
    RoadGraph
        Edge weights in minutes. Disconnected fragments are reported in ``graph.report`` and the
        log, and labelled in ``graph.component`` (0 = largest).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> roads = gpd.GeoDataFrame(
    ...     {"highway": ["residential", "motorway"], "maxspeed": [None, "60 mph"],
    ...      "oneway": ["no", "yes"]},
    ...     geometry=[shapely.LineString([(0, 0), (0.01, 0)]),
    ...               shapely.LineString([(0.01, 0), (0.02, 0)])], crs=4326)
    >>> g = road_graph(roads)
    >>> g.n_nodes, g.n_edges, sorted(g.speed_kmh.round(1).tolist())
    (3, 3, [25.0, 25.0, 96.6])
    """
    if isinstance(roads, str | Path):
        roads = _read_lines(Path(roads))
    if not isinstance(roads, gpd.GeoDataFrame):
        raise AggloInputError(
            f"roads must be a GeoDataFrame or a file path, got {type(roads).__name__}."
        )
    if not (snap_m > 0 and math.isfinite(snap_m)):
        raise AggloInputError(f"snap_m must be a positive number of metres, got {snap_m!r}.")
    if class_col not in roads.columns:
        raise AggloInputError(
            f"road layer has no {class_col!r} column (columns: {list(roads.columns)}); "
            "pass class_col= or map your classes to OSM highway values first."
        )
    table = {**DEFAULT_SPEEDS_KMH, **dict(speeds or {})}
    bad = {k: v for k, v in table.items() if not (isinstance(v, int | float) and 0 < v <= 300)}
    if bad:
        raise AggloInputError(f"speeds must be km/h in (0, 300]; invalid: {bad}.")
    roads = ensure_wgs84(roads, what="roads")
    geom = roads.geometry.to_numpy()
    types = shapely.get_type_id(geom)
    rows, speed, direction, dropped, n_tag = _line_attributes(
        roads, types, ~shapely.is_empty(geom), class_col, table, maxspeed, oneway
    )
    if np.isin(types[rows], [1, 2]).all():  # single-part lines: no get_parts copy
        parts = geom if len(rows) == len(geom) else geom[rows]
    else:
        parts, part_of = shapely.get_parts(geom[rows], return_index=True)
        speed, direction = speed[part_of], direction[part_of]
        del part_of
    del types, geom
    n_coords = shapely.get_num_coordinates(parts)
    coords = shapely.get_coordinates(parts)
    del parts
    if len(coords) < 2:
        raise AggloInputError("road layer has no line with two vertices.")
    lon, lat = coords[:, 0], coords[:, 1]
    node_of, first = _snap_nodes(lon, lat, snap_m)
    n = len(first)
    # segments: every vertex but the last of its line starts one
    if (n_coords == 2).all():  # two-vertex lines (ways cut at junctions): strided views
        start: slice | np.ndarray = slice(0, None, 2)
        seg_speed, seg_dir = speed, direction
    else:
        is_start = np.ones(len(coords), dtype=bool)
        is_start[np.cumsum(n_coords)[n_coords > 0] - 1] = False
        start = np.flatnonzero(is_start)
        del is_start
        per_part = np.maximum(n_coords - 1, 0)
        seg_speed, seg_dir = np.repeat(speed, per_part), np.repeat(direction, per_part)
    del speed, direction, n_coords
    u, v = node_of[start], node_of[_next(start)]
    ok = u != v  # both ends in one cell: no edge
    if not ok.all():
        start = np.arange(len(coords))[start][ok]
        u, v, seg_speed, seg_dir = u[ok], v[ok], seg_speed[ok], seg_dir[ok]
    del node_of, ok
    node_lon, node_lat = lon[first], lat[first]
    dist = _geodesic_lengths(lon, lat, start)
    del coords, lon, lat, start
    seg_min = dist * 0.06 / seg_speed
    fwd, bwd = np.flatnonzero(seg_dir >= 0), np.flatnonzero(seg_dir <= 0)
    del seg_dir
    seg = np.concatenate([fwd, bwd])  # segment of each directed edge
    eu = np.concatenate([u[fwd], v[bwd]])
    ev = np.concatenate([v[fwd], u[bwd]])
    del u, v, fwd, bwd
    key = eu.astype(np.int64) * n
    key += ev
    pick = _fastest_per_pair(key, seg_min, of=seg)  # parallel edges: keep the fastest
    del key
    counts = np.bincount(eu if len(pick) == len(eu) else eu[pick], minlength=n)
    del eu
    seg, ev = seg[pick], ev[pick]
    del pick
    elen, espd, emin = dist[seg], seg_speed[seg], seg_min[seg]
    del seg, dist, seg_speed, seg_min
    index = _index_dtype(max(n, len(ev)))
    indptr = np.zeros(n + 1, dtype=index)
    np.cumsum(counts, out=indptr[1:])
    csr = sp.csr_array((emin, ev.astype(index, copy=False), indptr), shape=(n, n))
    ncomp, labels = connected_components(csr, directed=True, connection="weak")
    sizes = np.bincount(labels)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    comp = rank[labels]
    report = {
        "nodes": n,
        "edges": len(ev),
        "lines": len(rows),
        "components": int(ncomp),
        "largest_component_share": float(sizes.max() / n),
        "dropped_classes": {str(k): int(c) for k, c in dropped.items()},
        "lines_with_valid_maxspeed": n_tag,
        "snap_m": snap_m,
    }
    if ncomp > 1:
        log.warning(
            "road graph has %d disconnected fragments; the largest holds %.1f%% of %d nodes "
            "(graph.component labels them, 0 = largest)",
            ncomp,
            100 * sizes.max() / n,
            n,
        )
    if len(dropped):
        log.info("dropped road lines of classes without a speed: %s", report["dropped_classes"])
    return RoadGraph(
        csr=csr,
        lon=node_lon,
        lat=node_lat,
        length_m=elen,
        speed_kmh=espd,
        component=comp,
        report=report,
    )
