"""Routing on a :class:`~agglo.analysis.metro.graph.RoadGraph`: snapping sources to nodes and
multi-source Dijkstra (:func:`travel_times`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import dijkstra

from agglo.analysis.metro.graph import RoadGraph
from agglo.analysis.metro.options import MetroOptions
from agglo.errors import AggloInputError
from agglo.measures.geodesy import WGS84, ensure_wgs84

log = logging.getLogger(__name__)

#: off-network access speed, km/h (unmapped local roads / e-bike)
DEFAULT_ACCESS_SPEED_KMH = MetroOptions.access_speed_kmh


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
    minutes: float = MetroOptions.minutes,
    access_speed_kmh: float = MetroOptions.access_speed_kmh,
    max_access_km: float = MetroOptions.max_access_km,
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
    >>> from agglo.analysis.metro import road_graph
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
