"""Routing on a :class:`~agglo.analysis.metro.graph.RoadGraph`: snapping sources to nodes and
multi-source Dijkstra (:func:`travel_times`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
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

    scipy's compiled Dijkstra, one search per group. A group whose sources all sit on nodes
    (no access leg) is searched from those nodes on the graph itself (one ``min_only`` search,
    whose origins give the nearest source; of sources on one node the first is named). Otherwise each source becomes a virtual node
    joined to its node by its access time, and one ``min_only`` search from the virtual nodes
    also returns the nearest source of every node.
    """
    n, g = graph.n_nodes, len(groups)
    dist = np.empty((g, n))
    nearest = np.empty((g, n), dtype=np.int64)
    for k, members in enumerate(groups):
        dist[k], nearest[k] = _search(graph, members, snapped, limit)
    return dist, nearest


def _search(
    graph: RoadGraph, members: np.ndarray, snapped: _Snapped, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minutes to every node from the nearest of ``members`` and the position of that source."""
    n, csr = graph.n_nodes, graph.csr
    nodes = snapped.node[members]
    access = snapped.access_min[members]
    if (nodes == nodes[0]).all() and access.min() == 0:
        best = members[np.argmin(access)]  # the source on the node
        d = dijkstra(csr, directed=True, indices=int(nodes[0]), limit=limit)
        return d, np.where(np.isfinite(d), best, -1)
    if not access.any():  # every source on a node: search from the nodes themselves
        on_node, first = np.unique(nodes, return_index=True)
        d, _, origin = dijkstra(
            csr,
            directed=True,
            indices=on_node,
            limit=limit,
            min_only=True,
            return_predecessors=True,
        )
        reached = origin >= 0
        near = np.full(n, -1, dtype=np.int64)
        near[reached] = members[first[np.searchsorted(on_node, origin[reached])]]
        return d, near
    m = len(members)
    index = csr.indices.dtype  # the graph's index dtype: scipy would copy a wider one
    aug = sp.csr_array(
        (
            np.concatenate([csr.data, access]),
            np.concatenate([csr.indices, nodes.astype(index)]),
            np.concatenate([csr.indptr, csr.indptr[-1] + np.arange(1, m + 1, dtype=index)]),
        ),
        shape=(n + m, n + m),
    )
    d, _, origin = dijkstra(
        aug,
        directed=True,
        indices=np.arange(n, n + m),
        limit=limit,
        min_only=True,
        return_predecessors=True,
    )
    return d[:n], np.where(origin[:n] >= n, members[np.maximum(origin[:n] - n, 0)], -1)


@dataclass
class TravelTimes:
    """Result of :func:`travel_times`: arrays over the graph's nodes, geometry on demand.

    Attributes
    ----------
    minutes
        Minutes from the nearest source to every node (``inf``: not reached in time).
    source
        Position of that source in the sources given (``-1``: not reached).
    labels
        Label of each source (the sources' index, or positions for plain points).
    graph
        The graph routed on.
    """

    minutes: np.ndarray
    source: np.ndarray
    labels: pd.Index
    graph: RoadGraph = field(repr=False)

    def reached(self) -> np.ndarray:
        """Node ids reached within the limit (ascending)."""
        return np.flatnonzero(np.isfinite(self.minutes))

    def frame(self, geometry: bool = True) -> gpd.GeoDataFrame | pd.DataFrame:
        """Reached nodes sorted by minutes: ``node``, ``minutes``, ``source`` (its label),
        ``component`` and, with ``geometry``, Points (EPSG:4326) at the nodes' coordinates."""
        out = _nodes_frame(self.graph, self.minutes, self.source, self.labels)
        return out if geometry else pd.DataFrame(out.drop(columns="geometry"))


def travel_times(
    graph: RoadGraph,
    sources: Any,
    *,
    minutes: float = MetroOptions.minutes,
    access_speed_kmh: float = MetroOptions.access_speed_kmh,
    max_access_km: float = MetroOptions.max_access_km,
) -> TravelTimes:
    """Travel time from the nearest source to every graph node reached within ``minutes``.

    Parameters
    ----------
    graph
        From :func:`road_graph`.
    sources
        Points: a GeoDataFrame/GeoSeries (any CRS), shapely Points or ``(lon, lat)`` pairs.
    minutes
        Cut-off, minutes (>= 0). With 0 only nodes at zero time (a source exactly on a node)
        are reached.
    access_speed_kmh
        Speed of the off-network leg from each source to its nearest node, km/h.
    max_access_km
        Sources farther than this from every node raise :class:`~agglo.errors.AggloInputError`.

    Returns
    -------
    TravelTimes
        ``minutes`` (access leg included) and ``source`` per node as arrays;
        ``.frame()`` gives the reached nodes as points (sorted by minutes).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> from agglo.analysis.metro import road_graph
    >>> roads = gpd.GeoDataFrame({"highway": ["primary"]}, crs=4326,
    ...     geometry=[shapely.LineString([(0, 0), (0.1, 0)])])
    >>> tt = travel_times(road_graph(roads), [(0, 0), (0.1, 0)], minutes=5)
    >>> tt.source.tolist(), tt.minutes.round(2).tolist()
    ([0, 1], [0.0, 0.0])
    >>> tt.frame()[["node", "minutes", "source"]].to_dict("list")
    {'node': [0, 1], 'minutes': [0.0, 0.0], 'source': [0, 1]}
    """
    minutes = _check_minutes(minutes)
    access_speed_kmh = _check_speed(access_speed_kmh)
    snapped = _snap(graph, sources, access_speed_kmh, max_access_km)
    dist, nearest = _search(graph, np.arange(len(snapped.node)), snapped, minutes)
    return TravelTimes(dist, nearest, snapped.labels, graph)


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
