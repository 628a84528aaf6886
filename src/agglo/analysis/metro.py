"""Metropolitan areas (都市圈) as one-hour commute catchments on a road graph (seed 001).

Model (DESIGN.md "Metropolitan areas"):

- **Graph** (:func:`road_graph`): nodes at road vertices, merged when they fall in the same
  ``snap_m`` (1 m) cell of an azimuthal equidistant projection centred on the data; one edge per
  pair of consecutive vertices, both ways unless the line is one-way. Edge time (minutes) =
  geodesic length on the WGS84 ellipsoid / speed. Speed = the ``maxspeed`` tag when present and
  valid (see :func:`parse_maxspeed`), else :data:`DEFAULT_SPEEDS_KMH` by ``highway`` class
  (overridable with ``speeds=``). Lines of classes without a speed are dropped and reported.
- **Sources** are joined to their nearest graph node (of any component) by an off-network
  *access* leg: geodesic distance at ``access_speed_kmh`` (default 15 km/h: unmapped local roads,
  e-bike). Sources farther than ``max_access_km`` from every node are an error.
- **Travel times**: one multi-source Dijkstra (``scipy.sparse.csgraph``, compiled) from a virtual
  super-source joined to every source's node by its access time, with the cut-off as ``limit``.
- **Catchment**: the set of points reachable in time when one may leave the network anywhere and
  continue off-network at ``access_speed_kmh``: for each reached directed edge u->v, the part of
  the edge reachable from u (fraction ``min(1, (T - t_u) / w)``) swept by a disc whose radius is
  the time left times the access speed -- the convex hull of the two end discs, exact because the
  radius shrinks linearly along the edge -- united over edges, plus the discs of reached nodes and
  the source's own walking disc. Nothing unreachable is claimed (discs are inscribed polygons):
  hosted isochrone tools that buffer whole edges or wrap a concave hull around the reached nodes
  claim area that cannot be reached in time. Entering the network part-way along an edge is not
  modelled (vehicles join at nodes). For speed, the sweep of an edge deep inside the area is
  left out when it adds less than the disc polygons' own chord error (see
  ``_network_polygon``), so the polygon may miss a sliver of that width -- never more.
- **Friction** alternative (``method="friction"``, for sparse networks): the road speeds are
  burnt into a raster of ``cell_m`` cells over a background speed (default: the access speed);
  cost-distance by Dijkstra on the 8-neighbour cell graph (step cost = step length x mean of the
  two cells' minutes per metre). It ignores one-way tags and lets traffic join a road anywhere.

Examples
--------
>>> import geopandas as gpd, shapely
>>> roads = gpd.GeoDataFrame(
...     {"highway": ["primary"], "maxspeed": ["60"]},
...     geometry=[shapely.LineString([(104.0, 30.0), (104.0, 30.1)])], crs=4326)
>>> g = road_graph(roads)
>>> tt = travel_times(g, [(104.0, 30.0)], minutes=60)
>>> round(float(tt["minutes"].max()), 2)  # 11.09 km at 60 km/h
11.09
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from pyproj import CRS, Geod, Transformer
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from agglo.errors import AggloInputError
from agglo.measures.geodesy import WGS84, ensure_wgs84, geodesic_area_km2

__all__ = [
    "DEFAULT_ACCESS_SPEED_KMH",
    "DEFAULT_CORES",
    "DEFAULT_SPEEDS_KMH",
    "METHODS",
    "Catchment",
    "MetroResult",
    "RoadGraph",
    "commute_catchment",
    "metro_areas",
    "parse_maxspeed",
    "road_graph",
    "seats",
    "travel_times",
]

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
#: off-network access speed, km/h (unmapped local roads / e-bike)
DEFAULT_ACCESS_SPEED_KMH = 15.0
#: catchment methods
METHODS = ("network", "friction")
#: default core cities (adcode) of the five agglomerations
DEFAULT_CORES: dict[str, tuple[str, ...]] = {
    "yrd": ("310100", "320100", "330100", "340100"),
    "myr": ("420100", "430100", "360100"),
    "cy": ("510100", "500000"),
    "qz": ("520100",),
    "dz": ("530100",),
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
    keep = np.isin(types, [1, 2, 5]) & ~shapely.is_empty(geom)
    cls = roads[class_col].astype("string").fillna("")
    class_speed = cls.map(table).to_numpy(dtype=float)
    dropped = cls[keep & np.isnan(class_speed)].value_counts()
    keep &= ~np.isnan(class_speed)
    if not keep.any():
        raise AggloInputError(
            f"no drivable road lines: classes found {sorted(cls.unique())[:10]}, "
            f"speeds known for {sorted(table)}. Pass speeds={{class: km/h}}."
        )
    speed = class_speed.copy()
    n_tag = 0
    if maxspeed and "maxspeed" in roads.columns:
        ms = roads["maxspeed"]
        uniq = pd.unique(ms.dropna())
        parsed = ms.map({u: parse_maxspeed(u) for u in uniq}).to_numpy(dtype=float)
        use = keep & np.isfinite(parsed)
        speed[use] = parsed[use]
        n_tag = int(use.sum())
    direction = np.zeros(len(roads), dtype=np.int8)  # 0 both, 1 forward, -1 backward
    if oneway and "oneway" in roads.columns:
        ow = roads["oneway"].astype("string").str.strip().str.lower()
        direction[ow.isin(_ONEWAY_FWD).to_numpy(dtype=bool)] = 1
        direction[ow.isin(_ONEWAY_REV).to_numpy(dtype=bool)] = -1

    rows = np.flatnonzero(keep)
    parts, owner = shapely.get_parts(geom[rows], return_index=True)
    owner = rows[owner]
    coords, part_idx = shapely.get_coordinates(parts, return_index=True)
    if len(coords) < 2:
        raise AggloInputError("road layer has no line with two vertices.")
    lon, lat = coords[:, 0], coords[:, 1]
    c_lon = float((lon.min() + lon.max()) / 2)
    c_lat = float((lat.min() + lat.max()) / 2)
    x, y = Transformer.from_crs(WGS84, _aeqd(c_lon, c_lat), always_xy=True).transform(lon, lat)
    keys = np.column_stack([np.round(x / snap_m), np.round(y / snap_m)]).astype(np.int64)
    _, first, node_of = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    node_of = node_of.ravel()
    n = len(first)
    same = part_idx[1:] == part_idx[:-1]
    a, b = np.flatnonzero(same), np.flatnonzero(same) + 1
    u, v = node_of[a], node_of[b]
    ok = u != v
    a, b, u, v = a[ok], b[ok], u[ok], v[ok]
    _, _, dist = _GEOD.inv(lon[a], lat[a], lon[b], lat[b])
    seg_owner = owner[part_idx[a]]
    seg_speed = speed[seg_owner]
    seg_dir = direction[seg_owner]
    fwd, bwd = seg_dir >= 0, seg_dir <= 0
    eu = np.concatenate([u[fwd], v[bwd]])
    ev = np.concatenate([v[fwd], u[bwd]])
    elen = np.concatenate([dist[fwd], dist[bwd]])
    espd = np.concatenate([seg_speed[fwd], seg_speed[bwd]])
    emin = elen * 0.06 / espd
    # parallel edges: keep the fastest
    order = np.lexsort((emin, ev, eu))
    eu, ev, elen, espd, emin = eu[order], ev[order], elen[order], espd[order], emin[order]
    first_uv = np.ones(len(eu), dtype=bool)
    first_uv[1:] = (eu[1:] != eu[:-1]) | (ev[1:] != ev[:-1])
    eu, ev, elen, espd, emin = (arr[first_uv] for arr in (eu, ev, elen, espd, emin))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(eu, minlength=n))])
    csr = sp.csr_array((emin, ev.astype(np.int32), indptr), shape=(n, n))
    ncomp, labels = connected_components(csr, directed=True, connection="weak")
    sizes = np.bincount(labels)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    comp = rank[labels]
    report = {
        "nodes": n,
        "edges": len(eu),
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
        lon=lon[first],
        lat=lat[first],
        length_m=elen,
        speed_kmh=espd,
        component=comp,
        report=report,
    )


# --------------------------------------------------------------------------- sources


def _source_points(sources: Any) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Normalise sources to lon/lat arrays (EPSG:4326) and their labels."""
    if isinstance(sources, gpd.GeoDataFrame | gpd.GeoSeries):
        if len(sources) == 0:
            raise AggloInputError("no sources given.")
        gs = ensure_wgs84(
            sources if isinstance(sources, gpd.GeoDataFrame) else sources.to_frame("geometry"),
            what="sources",
        ).geometry
        if not (shapely.get_type_id(gs.to_numpy()) == 0).all():
            raise AggloInputError("sources must be Point geometries (e.g. city seats).")
        return gs.x.to_numpy(), gs.y.to_numpy(), gs.index
    pts = list(sources) if isinstance(sources, Iterable) else [sources]
    if not pts:
        raise AggloInputError("no sources given.")
    xy = np.array(
        [(p.x, p.y) if isinstance(p, shapely.Point) else tuple(p) for p in pts], dtype=float
    )
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise AggloInputError("sources must be points or (lon, lat) pairs in degrees.")
    if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise AggloInputError(
            "source coordinates are not lon/lat degrees; pass a GeoDataFrame with its CRS."
        )
    return xy[:, 0], xy[:, 1], pd.RangeIndex(len(xy))


def _check_minutes(minutes: float) -> float:
    if not isinstance(minutes, int | float) or not math.isfinite(minutes) or minutes < 0:
        raise AggloInputError(f"minutes must be a finite number >= 0, got {minutes!r}.")
    return float(minutes)


def _check_speed(access_speed_kmh: float) -> float:
    if not isinstance(access_speed_kmh, int | float) or not 0 < access_speed_kmh <= 200:
        raise AggloInputError(
            f"access_speed_kmh must be a speed in (0, 200] km/h, got {access_speed_kmh!r}."
        )
    return float(access_speed_kmh)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise AggloInputError(f"method must be one of {METHODS}, got {method!r}.")
    return method


@dataclass
class _Snapped:
    lon: np.ndarray
    lat: np.ndarray
    labels: pd.Index
    node: np.ndarray
    access_min: np.ndarray


def _snap(
    graph: RoadGraph, sources: Any, access_speed_kmh: float, max_access_km: float
) -> _Snapped:
    lon, lat, labels = _source_points(sources)
    idx, dist = graph.nearest_nodes(lon, lat, k=1)
    far = dist[:, 0] > max_access_km * 1000
    if far.any():
        bad = [f"{labels[i]} ({dist[i, 0] / 1000:.1f} km)" for i in np.flatnonzero(far)]
        raise AggloInputError(
            f"{len(bad)} source(s) lie more than max_access_km={max_access_km} km from the road "
            f"network: {', '.join(bad[:10])}. Check the CRS / coordinates, use a network "
            "that covers them, or raise max_access_km."
        )
    node = idx[:, 0]
    small = graph.component[node] != 0
    if small.any():
        log.warning(
            "%d source(s) join a disconnected fragment of the road graph (not the largest "
            "component): %s",
            int(small.sum()),
            list(labels[small])[:10],
        )
    return _Snapped(lon, lat, labels, node, dist[:, 0] * 0.06 / access_speed_kmh)


def _multi_dijkstra(
    graph: RoadGraph, groups: list[np.ndarray], snapped: _Snapped, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Travel times (g x n) from each group of sources and the nearest source per node.

    One call of scipy's compiled Dijkstra: a virtual super-source per group is joined to its
    sources' nodes by their access times.
    """
    n, g = graph.n_nodes, len(groups)
    csr = graph.csr
    rows_u, rows_v, rows_w = [], [], []
    for k, members in enumerate(groups):
        # several sources on one node: keep the shortest access
        order = np.lexsort((snapped.access_min[members], snapped.node[members]))
        m = members[order]
        first = np.ones(len(m), dtype=bool)
        first[1:] = snapped.node[m][1:] != snapped.node[m][:-1]
        m = m[first]
        rows_u.append(np.full(len(m), n + k))
        rows_v.append(snapped.node[m])
        rows_w.append(snapped.access_min[m])
    counts = np.array([len(r) for r in rows_v])
    indptr = np.concatenate([csr.indptr, csr.indptr[-1] + np.cumsum(counts)])
    indices = np.concatenate([csr.indices, *[r.astype(np.int32) for r in rows_v]])
    data = np.concatenate([csr.data, *rows_w])
    aug = sp.csr_array((data, indices, indptr), shape=(n + g, n + g))
    dist, pred = dijkstra(
        aug, directed=True, indices=np.arange(n, n + g), limit=limit, return_predecessors=True
    )
    dist = np.atleast_2d(dist)[:, :n]
    pred = np.atleast_2d(pred)[:, :n]
    # nearest source: climb predecessors to the node joined to the super-source (pointer jumping)
    nearest = np.full((g, n), -1, dtype=np.int64)
    for k, members in enumerate(groups):
        p = pred[k].astype(np.int64)
        reached = np.isfinite(dist[k])
        parent = np.where(reached & (p >= 0) & (p < n), p, np.arange(n))
        for _ in range(64):
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
        src_of_node = np.full(n, -1, dtype=np.int64)
        # among sources on the same node, the one with the smallest access wins
        order = members[np.argsort(-snapped.access_min[members], kind="stable")]
        src_of_node[snapped.node[order]] = order
        nearest[k] = np.where(reached, src_of_node[parent], -1)
    return dist, nearest


def travel_times(
    graph: RoadGraph,
    sources: Any,
    *,
    minutes: float = 60,
    access_speed_kmh: float = DEFAULT_ACCESS_SPEED_KMH,
    max_access_km: float = 10.0,
) -> gpd.GeoDataFrame:
    """Travel time from the nearest source to every graph node reached within ``minutes``.

    Parameters
    ----------
    graph
        From :func:`road_graph`.
    sources
        Points: a GeoDataFrame/GeoSeries (any CRS), shapely Points or ``(lon, lat)`` pairs.
    minutes
        Cut-off, minutes (>= 0). With 0 only nodes at zero time (a source exactly on a node)
        are returned.
    access_speed_kmh
        Speed of the off-network leg from each source to its nearest node, km/h.
    max_access_km
        Sources farther than this from every node raise :class:`~agglo.errors.AggloInputError`.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 points at the nodes' own coordinates: ``node``, ``minutes`` (from the
        nearest source, access leg included), ``source`` (label of that source: the sources'
        index, or position for plain points), ``component``; sorted by ``minutes``.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> roads = gpd.GeoDataFrame({"highway": ["primary"]}, crs=4326,
    ...     geometry=[shapely.LineString([(0, 0), (0.1, 0)])])
    >>> tt = travel_times(road_graph(roads), [(0, 0), (0.1, 0)], minutes=5)
    >>> tt["source"].tolist(), [round(float(m), 2) for m in tt["minutes"]]
    ([0, 1], [0.0, 0.0])
    """
    minutes = _check_minutes(minutes)
    access_speed_kmh = _check_speed(access_speed_kmh)
    snapped = _snap(graph, sources, access_speed_kmh, max_access_km)
    dist, nearest = _multi_dijkstra(graph, [np.arange(len(snapped.node))], snapped, minutes)
    return _nodes_frame(graph, dist[0], nearest[0], snapped.labels)


def _nodes_frame(
    graph: RoadGraph, dist: np.ndarray, nearest: np.ndarray, labels: pd.Index
) -> gpd.GeoDataFrame:
    reached = np.flatnonzero(np.isfinite(dist))
    reached = reached[np.argsort(dist[reached], kind="stable")]
    return gpd.GeoDataFrame(
        {
            "node": reached,
            "minutes": dist[reached],
            "source": np.asarray(labels)[nearest[reached]] if len(reached) else [],
            "component": graph.component[reached],
        },
        geometry=gpd.points_from_xy(graph.lon[reached], graph.lat[reached]),
        crs=WGS84,
    )


# --------------------------------------------------------------------------- catchments


@dataclass
class Catchment:
    """Result of :func:`commute_catchment` (unpacks as ``polygons, nodes``).

    Attributes
    ----------
    polygons
        One row per group of sources: ``group``, ``minutes``, ``access_speed_kmh``, ``method``,
        ``area_km2`` (geodesic), ``n_nodes`` (reached), geometry (EPSG:4326, may be empty).
    nodes
        Travel time to every reached node: ``group``, ``node``, ``minutes``, ``source``,
        ``component``, Point geometry.
    """

    polygons: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame

    def __iter__(self):
        return iter((self.polygons, self.nodes))


def _tapered_hulls(
    p0: np.ndarray, r0: np.ndarray, p1: np.ndarray, r1: np.ndarray, n_arc: int
) -> np.ndarray:
    """Convex hulls of disc pairs (r0 >= r1) as polygons with inscribed arcs, vectorised.

    The hull is bounded by the arc of the small disc facing away from the big one, the two
    outer tangents and the far arc of the big disc. Where the small disc lies inside the big one
    the hull is the big disc.
    """
    d = p1 - p0
    length = np.hypot(d[:, 0], d[:, 1])
    beta = np.arctan2(d[:, 1], d[:, 0])
    inside = length + r1 <= r0
    cos_t = np.where(inside, 1.0, (r0 - r1) / np.where(length > 0, length, 1.0))
    theta = np.arccos(np.clip(cos_t, -1.0, 1.0))
    s = np.linspace(0.0, 1.0, n_arc)
    front = (beta - theta)[:, None] + (2 * theta)[:, None] * s  # on the small disc
    back = (beta + theta)[:, None] + (2 * np.pi - 2 * theta)[:, None] * s  # on the big disc
    fx = np.where(
        inside[:, None],
        p0[:, :1] + r0[:, None] * np.cos(beta)[:, None],
        p1[:, :1] + r1[:, None] * np.cos(front),
    )
    fy = np.where(
        inside[:, None],
        p0[:, 1:] + r0[:, None] * np.sin(beta)[:, None],
        p1[:, 1:] + r1[:, None] * np.sin(front),
    )
    bx = p0[:, :1] + r0[:, None] * np.cos(back)
    by = p0[:, 1:] + r0[:, None] * np.sin(back)
    ring = np.stack([np.concatenate([fx, bx], axis=1), np.concatenate([fy, by], axis=1)], axis=2)
    return shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))


def _network_polygon(
    graph: RoadGraph,
    dist: np.ndarray,
    limit: float,
    access_mpm: float,
    src_lon: np.ndarray,
    src_lat: np.ndarray,
    quad_segs: int,
) -> shapely.Geometry:
    """Union of the reachable tapered edge sweeps and discs, in EPSG:4326.

    Built in an azimuthal equidistant projection centred on the sources, so disc radii are
    true distances near the centre (scale error < 0.1 % within 300 km).
    """
    to_m = Transformer.from_crs(
        WGS84, _aeqd(float(np.mean(src_lon)), float(np.mean(src_lat))), always_xy=True
    )
    reached = np.isfinite(dist) & (dist < limit)
    n_arc = 2 * quad_segs + 1
    geoms: list[np.ndarray] = []
    if reached.any():
        idx = np.flatnonzero(reached)
        x = np.full(graph.n_nodes, np.nan)
        y = np.full(graph.n_nodes, np.nan)
        x[idx], y[idx] = to_m.transform(graph.lon[idx], graph.lat[idx])
        u, v, w = graph.edges()
        sel = reached[u]
        u, v, w = u[sel], v[sel], w[sel]
        need_v = np.unique(v[~reached[v]])
        x[need_v], y[need_v] = to_m.transform(graph.lon[need_v], graph.lat[need_v])
        left = limit - dist[u]
        f = np.minimum(1.0, left / np.where(w > 0, w, np.inf))
        r0 = left * access_mpm
        r1 = np.maximum(left - f * w, 0.0) * access_mpm
        p0 = np.column_stack([x[u], y[u]])
        p1 = p0 + f[:, None] * (np.column_stack([x[v], y[v]]) - p0)
        seg = np.hypot(*(p1 - p0).T)
        sweep = seg + r1 > r0  # the edge reaches beyond the disc of its start node
        # Interior edges: the hull of D(u, r0) and D(v, r1) exceeds the union of the two
        # node discs (both drawn below) by at most L^2 / (2 r1); skip it when that is no more
        # than the chord error r1 (1 - cos(pi / (4 quad_segs))) of the disc polygons.
        chord = 1.0 - math.cos(math.pi / (4 * quad_segs))
        full = (f >= 1.0) & (r1 > 0)
        sweep &= ~(full & (seg * seg <= 2.0 * chord * r1 * r1))
        geoms.append(_tapered_hulls(p0[sweep], r0[sweep], p1[sweep], r1[sweep], n_arc))
        # one disc per reached node (covers every edge that does not sweep beyond it)
        geoms.append(
            shapely.buffer(
                shapely.points(x[idx], y[idx]),
                (limit - dist[idx]) * access_mpm,
                quad_segs=quad_segs,
            )
        )
    walk = limit * access_mpm
    if walk > 0:
        sx, sy = to_m.transform(src_lon, src_lat)
        geoms.append(shapely.buffer(shapely.points(sx, sy), walk, quad_segs=quad_segs))
    if not geoms:
        return shapely.Polygon()
    allg = np.concatenate(geoms)
    allg = allg[~shapely.is_empty(allg)]
    if len(allg) == 0:
        return shapely.Polygon()
    poly = shapely.union_all(allg)
    inv = Transformer.from_crs(to_m.target_crs, WGS84, always_xy=True)
    return shapely.transform(poly, lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1])))


def _friction_group(
    graph: RoadGraph,
    src_lon: np.ndarray,
    src_lat: np.ndarray,
    limit: float,
    background_kmh: float,
    cell_m: float,
) -> tuple[shapely.Geometry, np.ndarray]:
    """Cost-distance on a friction raster; returns (polygon in EPSG:4326, node minutes)."""
    from rasterio import features
    from rasterio.transform import from_origin

    to_m = Transformer.from_crs(
        WGS84, _aeqd(float(np.mean(src_lon)), float(np.mean(src_lat))), always_xy=True
    )

    sx, sy = to_m.transform(src_lon, src_lat)
    vmax = max(float(graph.speed_kmh.max(initial=0)), background_kmh)
    reach = limit * vmax / 0.06 + 2 * cell_m  # metres
    x0, x1 = float(np.min(sx)) - reach, float(np.max(sx)) + reach
    y0, y1 = float(np.min(sy)) - reach, float(np.max(sy)) + reach
    w = max(int(np.ceil((x1 - x0) / cell_m)), 1)
    h = max(int(np.ceil((y1 - y0) / cell_m)), 1)
    if w * h > 40_000_000:
        raise AggloInputError(
            f"friction raster of {w} x {h} cells is too large; raise cell_m (now {cell_m} m)."
        )
    transform = from_origin(x0, y1, cell_m, cell_m)
    # nodes inside the window
    near = np.abs(graph.lon - np.mean(src_lon)) < 30  # cheap prefilter (degrees) before projecting
    nid = np.flatnonzero(near)
    nx_, ny_ = to_m.transform(graph.lon[nid], graph.lat[nid])
    inside = (nx_ >= x0) & (nx_ < x1) & (ny_ >= y0) & (ny_ < y1)
    nid, nx_, ny_ = nid[inside], nx_[inside], ny_[inside]
    xs = np.full(graph.n_nodes, np.nan)
    ys = np.full(graph.n_nodes, np.nan)
    xs[nid], ys[nid] = nx_, ny_
    u, v, _ = graph.edges()
    e = np.isfinite(xs[u]) & np.isfinite(xs[v])
    speed = np.full((h, w), background_kmh, dtype=np.float64)
    if e.any():
        order = np.argsort(graph.speed_kmh[e], kind="stable")  # fastest burnt last
        segs = shapely.linestrings(
            np.stack(
                [
                    np.column_stack([xs[u[e]], ys[u[e]]]),
                    np.column_stack([xs[v[e]], ys[v[e]]]),
                ],
                axis=1,
            )
        )[order]
        vals = graph.speed_kmh[e][order]
        burnt = features.rasterize(
            zip(segs, vals, strict=True),
            out_shape=(h, w),
            transform=transform,
            fill=0.0,
            dtype="float64",
            all_touched=False,
        )
        speed = np.maximum(speed, burnt)
    cost = 0.06 / speed  # minutes per metre
    ids = np.arange(h * w).reshape(h, w)
    su, sv, sw = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r0, r1 = 0, h - dr
        c0, c1 = max(0, -dc), w - max(0, dc)
        a = ids[r0:r1, c0:c1]
        b = ids[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        step = cell_m * math.hypot(dr, dc)
        su.append(a.ravel())
        sv.append(b.ravel())
        sw.append(step * (cost.ravel()[a.ravel()] + cost.ravel()[b.ravel()]) / 2)
    grid = sp.csr_array(
        (np.concatenate(sw), (np.concatenate(su), np.concatenate(sv))), shape=(h * w, h * w)
    )
    col = np.clip(((sx - x0) // cell_m).astype(int), 0, w - 1)
    row = np.clip(((y1 - sy) // cell_m).astype(int), 0, h - 1)
    t = dijkstra(grid, directed=False, indices=np.unique(ids[row, col]), limit=limit, min_only=True)
    t = t.reshape(h, w)
    mask = np.isfinite(t) & (t <= limit)
    polys = [
        shapely.geometry.shape(geom)
        for geom, val in features.shapes(mask.astype(np.uint8), mask=mask, transform=transform)
        if val == 1
    ]
    poly = shapely.union_all(np.array(polys, dtype=object)) if polys else shapely.Polygon()
    if not poly.is_empty:
        inv = Transformer.from_crs(to_m.target_crs, WGS84, always_xy=True)
        poly = shapely.transform(
            poly, lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1]))
        )
    node_t = np.full(graph.n_nodes, np.inf)
    ncol = ((nx_ - x0) // cell_m).astype(int)
    nrow = ((y1 - ny_) // cell_m).astype(int)
    ok = (ncol >= 0) & (ncol < w) & (nrow >= 0) & (nrow < h)
    node_t[nid[ok]] = t[nrow[ok], ncol[ok]]
    node_t[node_t > limit] = np.inf
    return poly, node_t


def commute_catchment(
    graph: RoadGraph,
    sources: Any,
    *,
    minutes: float = 60,
    access_speed_kmh: float = DEFAULT_ACCESS_SPEED_KMH,
    groups: Sequence[Any] | None = None,
    method: str = "network",
    max_access_km: float = 10.0,
    background_kmh: float | None = None,
    cell_m: float = 500.0,
    quad_segs: int = 8,
    progress: bool = False,
) -> Catchment:
    """Commute catchment (isochrone) polygon(s) of sources within ``minutes``.

    Parameters
    ----------
    graph
        From :func:`road_graph`.
    sources
        Points (GeoDataFrame/GeoSeries in any CRS, shapely Points or ``(lon, lat)`` pairs).
    minutes
        Time budget, minutes (>= 0; 0 gives empty polygons).
    access_speed_kmh
        Off-network speed for the leg from a source to the network and from the network to
        the destination, km/h.
    groups
        Optional label per source: one catchment per label (e.g. per core city), all computed
        in one Dijkstra call. Default: one catchment of all sources.
    method
        ``"network"`` (default) or ``"friction"`` (raster cost-distance, see the module
        docstring).
    max_access_km
        Sources farther than this from every node are an error.
    background_kmh
        Friction method: speed off the roads (default ``access_speed_kmh``).
    cell_m
        Friction method: cell size in metres.
    quad_segs
        Segments per quarter circle of the disc polygons (inscribed: never over-claims).
    progress
        Show a progress bar over groups.

    Returns
    -------
    Catchment
        ``polygons`` (one row per group, EPSG:4326) and ``nodes`` (travel time to every
        reached node, per group).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> roads = gpd.GeoDataFrame({"highway": ["primary"]}, crs=4326,
    ...     geometry=[shapely.LineString([(104, 30), (104.2, 30)])])
    >>> polys, nodes = commute_catchment(road_graph(roads), [(104, 30)], minutes=10)
    >>> # 10 km driven at 60 km/h, 2.5 km walked at 15 km/h: hull of a 2.5 km disc and a point
    >>> # 10 km away = r*sqrt(L^2-r^2) + r^2*(pi - acos(r/L)) = 35.6 km2 (polygon inscribed)
    >>> round(float(polys["area_km2"].iloc[0]), 1)
    35.5
    """
    minutes = _check_minutes(minutes)
    access_speed_kmh = _check_speed(access_speed_kmh)
    method = _check_method(method)
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise AggloInputError(f"cell_m must be a positive number of metres, got {cell_m!r}.")
    background = _check_speed(background_kmh if background_kmh is not None else access_speed_kmh)
    snapped = _snap(graph, sources, access_speed_kmh, max_access_km)
    labels = (
        np.zeros(len(snapped.node), dtype=object)
        if groups is None
        else np.asarray(groups, dtype=object)
    )
    if len(labels) != len(snapped.node):
        raise AggloInputError(
            f"groups has {len(labels)} labels for {len(snapped.node)} sources; give one per source."
        )
    names = list(pd.unique(labels))
    members = [np.flatnonzero(labels == g) for g in names]
    if method == "network":
        dist, nearest = _multi_dijkstra(graph, members, snapped, minutes)
    access_mpm = access_speed_kmh * 1000 / 60
    rows, frames = [], []
    it: Iterable[int] = range(len(names))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="catchments", unit="group")
    for k in it:
        m = members[k]
        if method == "network":
            geom = _network_polygon(
                graph, dist[k], minutes, access_mpm, snapped.lon[m], snapped.lat[m], quad_segs
            )
            node_frame = _nodes_frame(graph, dist[k], nearest[k], snapped.labels)
        else:
            geom, t = _friction_group(
                graph, snapped.lon[m], snapped.lat[m], minutes, background, cell_m
            )
            near = np.zeros(graph.n_nodes, dtype=np.int64)
            node_frame = _nodes_frame(graph, t, near, pd.Index([snapped.labels[m[0]]]))
            node_frame["source"] = None
        rows.append(
            {
                "group": names[k],
                "minutes": minutes,
                "access_speed_kmh": access_speed_kmh,
                "method": method,
                "n_nodes": len(node_frame),
                "geometry": geom,
            }
        )
        frames.append(node_frame.assign(group=names[k]))
    polys = gpd.GeoDataFrame(rows, geometry="geometry", crs=WGS84)
    polys.insert(len(polys.columns) - 1, "area_km2", geodesic_area_km2(polys).to_numpy())
    nodes = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84)
    nodes = nodes[["group", *[c for c in nodes.columns if c != "group"]]]
    return Catchment(polys, nodes)


# --------------------------------------------------------------------------- metro areas


def seats(
    cities: gpd.GeoDataFrame, counties: gpd.GeoDataFrame
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Seat points of cities and counties (an approximation from the boundaries alone).

    County seat = the county's representative point (inside it). City seat = the seat of the
    city's first district (区) by adcode -- conventionally its core, e.g. Chengdu 锦江区, Deyang
    旌阳区 -- except in Chongqing, a province-level municipality, where it is the smallest district
    (渝中区); without districts the first county-level unit, without counties the city's
    representative point. Pass real seat points to :func:`metro_areas` where known.

    Returns
    -------
    (city_seats, county_seats)
        GeoDataFrames in EPSG:4326 on the inputs' index, with ``adcode``, ``name_zh``; city
        seats carry ``seat_county`` (adcode), county seats ``city_adcode``.

    Examples
    --------
    >>> import agglo
    >>> cs, ks = seats(agglo.load_cities(), agglo.load_counties())
    >>> str(cs.set_index("adcode").loc["510100", "seat_county"])  # Chengdu -> 锦江区
    '510104'
    """
    cities = ensure_wgs84(cities, what="cities")
    counties = ensure_wgs84(counties, what="counties")
    kseats = gpd.GeoDataFrame(
        counties[["adcode", "name_zh", "city_adcode"]].copy(),
        geometry=counties.geometry.representative_point(),
        crs=WGS84,
    )
    area = geodesic_area_km2(counties)
    is_district = counties["name_zh"].astype(str).str.endswith("区")
    city = counties["city_adcode"].astype(str)
    municipality = city.str.endswith("0000")
    order = pd.DataFrame(
        {
            "city": city,
            "nd": ~is_district,
            # lowest district adcode (the traditional first/core district), except in the
            # province-level municipalities whose districts span the whole province: smallest
            "key": np.where(municipality, area, counties["adcode"].astype(str).astype(float)),
            "adcode": counties["adcode"],
        }
    ).sort_values(["city", "nd", "key"])
    first = order.drop_duplicates("city").set_index("city")["adcode"]
    geom_by_county = kseats.set_index("adcode").geometry
    pts, seat_cty = [], []
    for adcode, geom in zip(cities["adcode"], cities.geometry, strict=True):
        if adcode in first.index:
            seat_cty.append(first[adcode])
            pts.append(geom_by_county[first[adcode]])
        else:
            seat_cty.append(None)
            pts.append(geom.representative_point())
    cseats = gpd.GeoDataFrame(
        {"adcode": cities["adcode"], "name_zh": cities["name_zh"], "seat_county": seat_cty},
        geometry=pts,
        index=cities.index,
        crs=WGS84,
    )
    return cseats, kseats


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


@dataclass
class MetroResult:
    """Result of :func:`metro_areas`.

    Attributes
    ----------
    areas
        One row per core (EPSG:4326): ``core_adcode``, ``core_name``, ``minutes``,
        ``access_speed_kmh``, ``method``, ``area_km2``, ``n_member_counties``,
        ``population_inside`` (when population is given), geometry (the catchment).
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
        ``band_max``, ``area_km2``, geometry.
    nodes
        Travel time to every reached node, per core (``group`` = core adcode).
    """

    areas: gpd.GeoDataFrame
    members: pd.DataFrame
    cities: pd.DataFrame
    isochrones: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame


def _seat_minutes(
    graph: RoadGraph,
    dist: np.ndarray,
    seat_lon: np.ndarray,
    seat_lat: np.ndarray,
    access_mpm: float,
    k: int = 8,
) -> np.ndarray:
    """Minutes to each seat: best of its ``k`` nearest nodes plus the off-network leg."""
    idx, d = graph.nearest_nodes(seat_lon, seat_lat, k=k)
    t = dist[idx] + d / access_mpm
    return np.min(t, axis=1)


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
            laea = CRS.from_proj4(
                f"+proj=laea +lat_0={c.y:.6f} +lon_0={c.x:.6f} +datum=WGS84 +units=m +no_defs"
            )
            sub = gpd.GeoSeries(units.geometry.to_numpy()[hit], crs=WGS84).to_crs(laea)
            g = gpd.GeoSeries([geom], crs=WGS84).to_crs(laea).iloc[0]
            a_unit = sub.area.to_numpy()
            a_in = shapely.area(shapely.intersection(sub.to_numpy(), g))
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
    minutes: float = 60,
    access_speed_kmh: float = DEFAULT_ACCESS_SPEED_KMH,
    method: str = "network",
    bands: Sequence[float] = (15, 30, 45, 60),
    population: str | None = "population",
    city_seats: gpd.GeoDataFrame | None = None,
    county_seats: gpd.GeoDataFrame | None = None,
    max_access_km: float = 10.0,
    cell_m: float = 500.0,
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
        Seat points with ``adcode`` (default: :func:`seats`).
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
    cs, ks = seats(cities, counties)
    if city_seats is not None:
        cs = ensure_wgs84(city_seats, what="city_seats")
    if county_seats is not None:
        ks = ensure_wgs84(county_seats, what="county_seats")
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
    kpop = population if population and population in counties.columns else None
    cpop = population if population and population in cities.columns else None
    area_rows, member_frames, city_frames, band_rows = [], [], [], []
    for k, core in enumerate(core_ids):
        geom = cat.polygons.geometry.iloc[k]
        nodes_k = cat.nodes[cat.nodes["group"] == core]
        dist = np.full(graph.n_nodes, np.inf)
        dist[nodes_k["node"].to_numpy()] = nodes_k["minutes"].to_numpy()
        core_pt = src.geometry.iloc[k]

        def seat_time(pts: gpd.GeoSeries, dist=dist, core_pt=core_pt) -> np.ndarray:
            lon, lat = pts.x.to_numpy(), pts.y.to_numpy()
            t = _seat_minutes(graph, dist, lon, lat, access_mpm)
            _, _, d = _GEOD.inv(
                np.full(len(lon), core_pt.x), np.full(len(lon), core_pt.y), lon, lat
            )
            t = np.minimum(t, np.asarray(d) / access_mpm)
            return np.where(t <= minutes, t, np.nan)

        kt = pd.Series(seat_time(ks.geometry), index=ks["adcode"].astype(str).to_numpy())
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
        ct = pd.Series(seat_time(cs.geometry), index=cs["adcode"].astype(str).to_numpy())
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
        band_polys = _band_catchments(
            graph, cat, core_ids, src, bands, access_speed_kmh, method, max_access_km, cell_m
        )
        lo = 0.0
        prev: dict[str, shapely.Geometry] = {}
        for b in bands:
            for core in core_ids:
                g_b = band_polys[(core, b)]
                ring = shapely.difference(g_b, prev[core]) if core in prev else g_b
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
    return MetroResult(
        areas=areas,
        members=pd.concat(member_frames, ignore_index=True),
        cities=pd.concat(city_frames, ignore_index=True),
        isochrones=iso,
        nodes=cat.nodes,
    )


def _band_catchments(
    graph: RoadGraph,
    cat: Catchment,
    core_ids: list[str],
    src: gpd.GeoDataFrame,
    bands: list[float],
    access_speed_kmh: float,
    method: str,
    max_access_km: float,
    cell_m: float,
) -> dict[tuple[str, float], shapely.Geometry]:
    """Catchment of each core at each band limit (network: from the same travel times)."""
    out: dict[tuple[str, float], shapely.Geometry] = {}
    top = float(cat.polygons["minutes"].iloc[0]) if len(cat.polygons) else 0.0
    access_mpm = access_speed_kmh * 1000 / 60
    for k, core in enumerate(core_ids):
        nodes = cat.nodes[cat.nodes["group"] == core]
        dist = np.full(graph.n_nodes, np.inf)
        dist[nodes["node"].to_numpy()] = nodes["minutes"].to_numpy()
        pt = src.geometry.iloc[k]
        for b in bands:
            if b == top:
                out[(core, b)] = cat.polygons.geometry.iloc[k]
            elif method == "network":
                # travel times do not depend on the cut-off: only nodes within b count
                out[(core, b)] = _network_polygon(
                    graph,
                    np.where(dist <= b, dist, np.inf),
                    b,
                    access_mpm,
                    np.array([pt.x]),
                    np.array([pt.y]),
                    8,
                )
            else:
                out[(core, b)], _ = _friction_group(
                    graph, np.array([pt.x]), np.array([pt.y]), b, access_speed_kmh, cell_m
                )
    return out
