"""Commute catchments (isochrone polygons) of sources on a road graph (:func:`commute_catchment`)."""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from agglo._cores import usable_cores
from agglo.analysis.metro.friction import _friction_group
from agglo.analysis.metro.graph import RoadGraph, _aeqd_transformers
from agglo.analysis.metro.options import MetroOptions
from agglo.analysis.metro.routing import (
    _check_minutes,
    _check_speed,
    _multi_dijkstra,
    _nodes_frame,
    _snap,
)
from agglo.errors import AggloDataWarning, AggloInputError
from agglo.measures.geodesy import WGS84, geodesic_area_km2
from agglo.options import choice_problem

log = logging.getLogger(__name__)

#: catchment methods
METHODS = ("network", "friction")


def _check_method(method: str) -> str:
    problem = choice_problem("method", method, METHODS)
    if problem:
        raise AggloInputError(problem)
    return method


# --------------------------------------------------------------------------- catchments


@dataclass
class Catchment:
    """Result of :func:`commute_catchment` (unpacks as ``polygons, nodes``).

    Attributes
    ----------
    polygons
        One row per group of sources: ``group``, ``minutes``, ``access_speed_kmh``, ``method``,
        ``area_km2`` (geodesic), ``n_nodes`` (reached), geometry (EPSG:4326, may be empty).
    times
        Minutes from each group (rows, in the order of ``polygons``) to every node
        (``inf``: not reached).
    nearest
        Position of the nearest source of each node per group (``-1``: not reached);
        ``None`` for the friction method.
    labels, graph
        Labels of the sources and the graph routed on.
    """

    polygons: gpd.GeoDataFrame
    times: np.ndarray
    nearest: np.ndarray | None
    labels: pd.Index
    graph: RoadGraph = field(repr=False)
    #: network method: the projected nodes and edges of each group (the bands reuse them)
    _frames: list[_Frame] = field(default_factory=list, repr=False)

    @cached_property
    def nodes(self) -> gpd.GeoDataFrame:
        """Travel time to every reached node (built on demand): ``group``, ``node``,
        ``minutes``, ``source``, ``component``, Point geometry."""
        frames = []
        for k, group in enumerate(self.polygons["group"]):
            if self.nearest is None:
                near = np.zeros(self.graph.n_nodes, dtype=np.int64)
                frame = _nodes_frame(self.graph, self.times[k], near, pd.Index([None]))
            else:
                frame = _nodes_frame(self.graph, self.times[k], self.nearest[k], self.labels)
            frames.append(frame.assign(group=group))
        nodes = gpd.GeoDataFrame(
            pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84
        )
        return nodes[["group", *[c for c in nodes.columns if c != "group"]]]

    def __iter__(self):
        return iter((self.polygons, self.nodes))


def _tapered_hulls(
    p0: np.ndarray, r0: np.ndarray, p1: np.ndarray, r1: np.ndarray, n_arc: int
) -> np.ndarray:
    """Convex hulls of disc pairs (r0 >= r1) as polygons with inscribed arcs, vectorised
    (the polygons of :func:`_tapered_rings`)."""
    return shapely.polygons(_tapered_rings(p0, r0, p1, r1, n_arc))


def _tapered_rings(
    p0: np.ndarray, r0: np.ndarray, p1: np.ndarray, r1: np.ndarray, n_arc: int
) -> np.ndarray:
    """Closed rings ``(n, 2 n_arc + 1, 2)`` of the convex hulls of disc pairs (r0 >= r1).

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
    return np.concatenate([ring, ring[:, :1]], axis=1)


def _certified_cells(
    bounds: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, quad_segs: int
) -> tuple[np.ndarray, float, float, float] | None:
    """Grid cells lying inside at least one disc polygon, as a boolean mask.

    A disc polygon of radius ``r`` made by ``shapely.buffer(point, r, quad_segs)`` is the
    regular ``4 quad_segs``-gon inscribed in the circle, so it contains the disc of radius
    ``r cos(pi / (4 quad_segs))`` (shrunk by a further 1e-9 against rounding). A cell (convex)
    lies in that inner disc when its farther corners in each row do. Returns
    ``(mask, x0, y0, cell)`` (cell ``(j, i)`` spans ``x0 + i cell .. x0 + (i + 1) cell``) or
    ``None`` when no cell qualifies.
    """
    inner = r * math.cos(math.pi / (4 * quad_segs)) * (1.0 - 1e-9)
    if not (inner > 0).any():
        return None
    x0, y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
    extent = max(float(bounds[:, 2].max()) - x0, float(bounds[:, 3].max()) - y0)
    # cells of 1/20 of the largest disc (a few per fringe piece), at most 2048 per side
    cell = max(float(inner.max()) / 20.0, extent / 2048.0)
    nx = math.ceil((float(bounds[:, 2].max()) - x0) / cell) + 1
    ny = math.ceil((float(bounds[:, 3].max()) - y0) / cell) + 1
    big = inner > 0.75 * cell  # smaller discs hold no whole cell
    cx, cy, inner = cx[big], cy[big], inner[big]
    if len(cx) == 0:
        return None
    j_lo = np.floor((cy - inner - y0) / cell).astype(np.int64)
    n_rows = np.floor((cy + inner - y0) / cell).astype(np.int64) - j_lo + 1
    k = np.repeat(np.arange(len(cx)), n_rows)
    j = np.arange(int(n_rows.sum())) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows) + j_lo[k]
    # the row's corner farthest from the centre in y bounds the chord inside the disc
    dy = np.maximum(np.abs(y0 + j * cell - cy[k]), np.abs(y0 + (j + 1) * cell - cy[k]))
    ok = dy < inner[k]
    k, j, dy = k[ok], j[ok], dy[ok]
    half = np.sqrt(inner[k] ** 2 - dy**2)
    i_lo = np.ceil((cx[k] - half - x0) / cell).astype(np.int64)
    i_hi = np.floor((cx[k] + half - x0) / cell).astype(np.int64)  # exclusive
    ok = i_hi > i_lo
    j, i_lo, i_hi = j[ok], i_lo[ok], i_hi[ok]
    if len(j) == 0:
        return None
    size = ny * (nx + 1)
    runs = np.bincount(j * (nx + 1) + i_lo, minlength=size) - np.bincount(
        j * (nx + 1) + i_hi, minlength=size
    )
    return np.cumsum(runs.reshape(ny, nx + 1), axis=1)[:, :nx] > 0, x0, y0, cell


#: Held around every call in the catchment threads that enters ``warnings.catch_warnings``
#: (rasterio's MemoryDataset, ``shapely.is_valid``): that context saves and restores the
#: process-global filter list (Python < 3.14), so two threads inside it at once can drop a
#: filter (a NotGeoreferencedWarning escaped) or leave "ignore" behind, silencing every later
#: warning. The calling thread waits on the pool meanwhile (:func:`_network_polygons`).
_WARNINGS_LOCK = threading.RLock()


def _cells_polygon(mask: np.ndarray, x0: float, y0: float, cell: float) -> shapely.Geometry:
    """The union of the cells of ``mask`` (corners at ``x0 + i cell, y0 + j cell``).

    The polygonized regions do not overlap and meet only along shared cell edges, so a
    coverage union (no overlay) unites them; it gives the same polygon as ``union_all``
    (tests/test_metro.py). Regions that are not valid polygons fall back to ``union_all``.
    """
    # under the warnings lock (catchments are built in threads) and inside an explicit GDAL
    # environment (``shapes`` is a generator whose ``ensure_env`` leaves before it runs)
    with _WARNINGS_LOCK:
        import rasterio
        import rasterio.features
        from affine import Affine

        with rasterio.Env():
            shapes = rasterio.features.shapes(
                mask.astype(np.uint8), mask=mask, transform=Affine(cell, 0.0, x0, 0.0, cell, y0)
            )
            # the GeoJSON rings as one coordinate array (shapely.geometry.shape converts point
            # by point in Python): the same coordinates, built in C
            rings = [shape["coordinates"] for shape, _ in shapes]
    if not rings:
        return shapely.Polygon()
    coords = [np.asarray(ring, dtype=float) for poly in rings for ring in poly]
    ring_ends = np.cumsum([0, *map(len, coords)])
    poly_ends = np.cumsum([0, *map(len, rings)])
    parts = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, np.concatenate(coords), (ring_ends, poly_ends)
    )
    if _is_valid(parts).all():
        return shapely.coverage_union_all(parts)
    return shapely.union_all(parts)


def _union_pieces(
    rings: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    r: np.ndarray,
    quad_segs: int,
    prune: bool = True,
) -> shapely.Geometry:
    """Union of the polygons of ``rings`` and of the discs ``shapely.buffer(point(cx, cy), r,
    quad_segs)``, in that order -- the same point set as ``shapely.union_all`` of them all,
    without building or unioning the pieces deep inside.

    The grid cells inside some disc (:func:`_certified_cells`) form a polygon ``inner`` inside
    the union. A piece whose bounding box lies in such cells, or that ``inner`` contains, adds
    nothing and is dropped (disc boxes are ``c +- r`` widened by 1e-9 r + 1e-6 m against
    rounding); the rest is unioned with ``inner``. ``inner``'s boundary lies strictly inside
    the union, so none of its vertices survive. The rest is united in three batches (every
    other sweep, the other sweeps, the discs), each without the pieces the union so far covers
    (:func:`_covering_union`: about half the second batch and nine in ten discs go, which
    halves the overlay work); ``inner`` joins after the sweeps, before the discs, in one
    binary overlay (joining it to the first batch's cascaded union cost ~10 % more). Only the rounding of computed crossing points may differ from
    ``union_all`` (areas to ~1e-14 relative, checked in tests/test_metro.py).
    ``prune=False``: plain ``union_all`` of every piece (the reference).
    """
    pad = 1e-9 * r + 1e-6
    bounds = np.concatenate(
        [
            np.column_stack([rings[..., 0].min(1), rings[..., 1].min(1)])
            if len(rings)
            else np.empty((0, 2)),
            np.column_stack([cx - r - pad, cy - r - pad]),
        ]
    )
    bounds = np.column_stack(
        [
            bounds,
            np.concatenate(
                [
                    np.column_stack([rings[..., 0].max(1), rings[..., 1].max(1)])
                    if len(rings)
                    else np.empty((0, 2)),
                    np.column_stack([cx + r + pad, cy + r + pad]),
                ]
            ),
        ]
    )
    n_h = len(rings)
    cells = _certified_cells(bounds, cx, cy, r, quad_segs) if prune and len(bounds) else None
    if cells is None:
        keep = np.ones(len(bounds), dtype=bool)
        inner = None
    else:
        mask, x0, y0, cell = cells
        ny, nx = mask.shape
        out = np.zeros((ny + 1, nx + 1), dtype=np.int32)  # summed-area table, uncertified
        out[1:, 1:] = (~mask).astype(np.int32).cumsum(axis=0).cumsum(axis=1)
        i0 = np.floor((bounds[:, 0] - x0) / cell).astype(np.int64)
        j0 = np.floor((bounds[:, 1] - y0) / cell).astype(np.int64)
        i1 = np.minimum(np.floor((bounds[:, 2] - x0) / cell).astype(np.int64) + 1, nx)
        j1 = np.minimum(np.floor((bounds[:, 3] - y0) / cell).astype(np.int64) + 1, ny)
        i0, j0 = np.maximum(i0, 0), np.maximum(j0, 0)
        keep = (out[j1, i1] - out[j0, i1] - out[j1, i0] + out[j0, i0]) > 0
        inner = _cells_polygon(mask, x0, y0, cell)
    kd = keep[n_h:]
    pieces = np.concatenate(
        [
            _valid_sweeps(shapely.polygons(rings[keep[:n_h]]))
            if n_h
            else np.empty(0, dtype=object),
            shapely.buffer(shapely.points(cx[kd], cy[kd]), r[kd], quad_segs=quad_segs),
        ]
    )
    is_ring = np.arange(len(pieces)) < int(keep[:n_h].sum())
    real = ~shapely.is_empty(pieces)
    pieces, is_ring = pieces[real], is_ring[real]
    if not prune:
        return _union_all(pieces) if len(pieces) else shapely.Polygon()
    if inner is not None:
        shapely.prepare(inner)
        out = ~shapely.contains_properly(inner, pieces)
        pieces, is_ring = pieces[out], is_ring[out]
    rings_kept = pieces[is_ring]
    # half the sweeps, then the other half: about half of the second half is already covered
    # by the first and is dropped before the expensive overlay. ``inner`` (a staircase of
    # many vertices, all of which lie inside the union and vanish) is joined to the sweeps'
    # union in one binary overlay instead of riding through every merge of the cascaded union
    # of the first batch (~10 % less union CPU on the bundled roads); then the discs, nine in
    # ten of which the union so far covers.
    union = _covering_union(None, [rings_kept[0::2], rings_kept[1::2]])
    if inner is not None:
        union = inner if union is None else _union_all(np.array([inner, union], dtype=object))
    union = _covering_union(union, [pieces[~is_ring]])
    return shapely.Polygon() if union is None else union


def _is_valid(geoms: np.ndarray) -> np.ndarray:
    """``shapely.is_valid`` under :data:`_WARNINGS_LOCK` (it enters ``catch_warnings``)."""
    with _WARNINGS_LOCK:
        return shapely.is_valid(geoms)


def _valid_sweeps(sweeps: np.ndarray) -> np.ndarray:
    """``sweeps`` with every invalid polygon repaired (``make_valid(method="structure")``: the
    area its ring encloses), with a warning.

    The sweeps are convex hulls built valid (:func:`_edge_sweeps`); this check keeps one that
    rounding still folds (a front arc whose vertices lie closer than the coordinates' rounding)
    from reaching the overlay, where it may fail or, worse, be united silently as GEOS reads it.
    Costs ~1.5 us per sweep (``is_valid`` of the sweeps left after pruning).
    """
    bad = ~_is_valid(sweeps)
    if not bad.any():
        return sweeps
    fixed = sweeps.copy()
    fixed[bad] = shapely.make_valid(sweeps[bad], method="structure")
    warnings.warn(
        f"{int(bad.sum())} of {len(sweeps)} edge sweeps of a travel-time catchment are not valid "
        "polygons (self-intersecting rings from rounding); repaired to the area they enclose "
        "before the union.",
        AggloDataWarning,
        stacklevel=3,
    )
    return fixed


def _covering_union(
    union: shapely.Geometry | None, batches: Sequence[np.ndarray]
) -> shapely.Geometry | None:
    """``union`` united with the polygons of each batch in turn, leaving out the polygons the
    union so far covers (``shapely.covers``, an exact predicate: the point set equals
    ``shapely.union_all`` of everything; only rounding of computed crossing points may differ).
    ``None`` when there is nothing to unite."""
    for batch in batches:
        if union is not None and len(batch):
            shapely.prepare(union)
            batch = batch[~shapely.covers(union, batch)]
        if len(batch):
            union = _union_all(batch if union is None else np.concatenate([[union], batch]))
    return union


#: grid (m, in the catchment's equidistant projection) of the snap-rounding retry of a union
_SNAP_GRID_M = 1e-3


def _union_all(pieces: np.ndarray) -> shapely.Geometry:
    """``shapely.union_all(pieces)``, and if GEOS's overlay fails, a repaired union with a warning.

    A TopologyException ("unable to assign free hole to a shell") comes from pieces that are not
    valid polygons (a tapered edge sweep folding over itself) or from nearly coincident edges.
    The retry repairs the invalid pieces (``make_valid(method="structure")``: the polygonal area
    they enclose) and unites again, on a 1 mm snap-rounding grid if the floating overlay still
    fails (vertices move < 1 mm: the area changes by less than perimeter x 1 mm).
    """
    try:
        return shapely.union_all(pieces)
    except shapely.errors.GEOSException as exc:
        invalid = ~_is_valid(pieces)
        fixed = pieces.copy()
        fixed[invalid] = shapely.make_valid(pieces[invalid], method="structure")
        try:
            union, how = shapely.union_all(fixed), "exactly"
        except shapely.errors.GEOSException:
            union = shapely.union_all(fixed, grid_size=_SNAP_GRID_M)
            how = f"with snap rounding on a {_SNAP_GRID_M * 1000:g} mm grid"
        warnings.warn(
            f"GEOS could not unite the {len(pieces)} pieces of a travel-time catchment ({exc}); "
            f"repaired {int(invalid.sum())} invalid piece(s) (self-intersecting edge sweeps) and "
            f"united them {how}.",
            AggloDataWarning,
            stacklevel=2,
        )
        return union


@dataclass
class _Frame:
    """The projected nodes and the candidate edges of one group of sources, shared by its
    catchments at every limit up to ``limit`` (the bands reuse the hour's projection)."""

    inv: Any  # azimuthal equidistant metres -> WGS84 (a pyproj Transformer)
    limit: float
    x: np.ndarray  # projected node coordinates, m (NaN: not needed)
    y: np.ndarray
    u: np.ndarray  # directed edges whose start is reached within ``limit``, in CSR order
    v: np.ndarray
    w: np.ndarray
    sx: np.ndarray  # projected sources, m
    sy: np.ndarray


def _frame(
    graph: RoadGraph, dist: np.ndarray, limit: float, src_lon: np.ndarray, src_lat: np.ndarray
) -> _Frame:
    """Project the nodes reached within ``limit`` and the ends of their out-edges, once.

    The azimuthal equidistant projection is centred on the sources, so disc radii are true
    distances near the centre (scale error < 0.1 % within 300 km). The out-edges of the reached
    nodes are gathered from their CSR rows (the order of ``graph.edges()`` filtered by start).
    """
    to_m, inv = _aeqd_transformers(float(np.mean(src_lon)), float(np.mean(src_lat)))
    reached = np.isfinite(dist) & (dist < limit)
    idx = np.flatnonzero(reached)
    x = np.full(graph.n_nodes, np.nan)
    y = np.full(graph.n_nodes, np.nan)
    indptr = graph.csr.indptr
    counts = indptr[idx + 1] - indptr[idx]
    pos = np.arange(int(counts.sum())) + np.repeat(
        indptr[idx] - (np.cumsum(counts) - counts), counts
    )
    u = np.repeat(idx, counts)
    v = graph.csr.indices[pos].astype(np.int64)
    w = graph.csr.data[pos]
    if len(idx):
        x[idx], y[idx] = to_m.transform(graph.lon[idx], graph.lat[idx])
        need_v = np.unique(v[~reached[v]])
        x[need_v], y[need_v] = to_m.transform(graph.lon[need_v], graph.lat[need_v])
    sx, sy = to_m.transform(src_lon, src_lat)
    sx, sy = np.atleast_1d(np.asarray(sx, dtype=float)), np.atleast_1d(np.asarray(sy, float))
    return _Frame(inv, float(limit), x, y, u, v, w, sx, sy)


def _edge_sweeps(
    left: np.ndarray, w: np.ndarray, p0: np.ndarray, pv: np.ndarray, access_mpm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The discs ``(p0, r0, p1, r1)`` whose hull an edge sweeps: ``left`` minutes at its start
    ``p0``, ``w`` minutes to drive to its end ``pv`` (m).

    The edge is driven for the fraction ``f = min(1, left / w)``; ``r = minutes left x
    access_mpm``. Where the time runs out on the edge (``w > left``) the end radius is exactly 0
    (``left - f w`` would leave a rounding residue of ~1e-14 m whose 17 arc vertices fold over
    each other: a self-intersecting sweep).
    """
    f = np.minimum(1.0, left / np.where(w > 0, w, np.inf))
    r0 = left * access_mpm
    r1 = np.where(w > left, 0.0, left - f * w) * access_mpm
    p1 = p0 + f[:, None] * (pv - p0)
    return p0, r0, p1, r1


def _network_pieces(
    frame: _Frame, dist: np.ndarray, limit: float, access_mpm: float, quad_segs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pieces of the catchment within ``limit`` (<= ``frame.limit``), in the frame's metres:
    the rings of the tapered edge sweeps and the discs ``(cx, cy, r)`` of the reached nodes and
    of the sources' walk."""
    if limit > frame.limit:
        raise ValueError(f"limit {limit} beyond the frame's {frame.limit}")
    reached = np.isfinite(dist) & (dist < limit)
    n_arc = 2 * quad_segs + 1
    discs = []
    if reached.any():
        x, y = frame.x, frame.y
        sel = reached[frame.u]
        u, v, w = frame.u[sel], frame.v[sel], frame.w[sel]
        idx = np.flatnonzero(reached)
        left = limit - dist[u]
        p0, r0, p1, r1 = _edge_sweeps(
            left, w, np.column_stack([x[u], y[u]]), np.column_stack([x[v], y[v]]), access_mpm
        )
        seg = np.hypot(*(p1 - p0).T)
        sweep = seg + r1 > r0  # the edge reaches beyond the disc of its start node
        # Interior edges: the hull of D(u, r0) and D(v, r1) exceeds the union of the two
        # node discs (both drawn below) by at most L^2 / (2 r1); skip it when that is no more
        # than the chord error r1 (1 - cos(pi / (4 quad_segs))) of the disc polygons.
        chord = 1.0 - math.cos(math.pi / (4 * quad_segs))
        full = (w <= left) & (r1 > 0)
        sweep &= ~(full & (seg * seg <= 2.0 * chord * r1 * r1))
        rings = _tapered_rings(p0[sweep], r0[sweep], p1[sweep], r1[sweep], n_arc)
        # one disc per reached node (covers every edge that does not sweep beyond it)
        discs.append((x[idx], y[idx], (limit - dist[idx]) * access_mpm))
    else:
        rings = np.empty((0, 2 * n_arc + 1, 2))
    walk = limit * access_mpm
    if walk > 0:
        discs.append((frame.sx, frame.sy, np.full(len(frame.sx), walk)))
    if not discs:
        return rings, np.empty(0), np.empty(0), np.empty(0)
    cx, cy, cr = (np.concatenate(v) for v in zip(*discs, strict=True))
    return rings, cx, cy, cr


def _to_wgs84(poly: shapely.Geometry, frame: _Frame) -> shapely.Geometry:
    """A catchment polygon from the frame's metres back to EPSG:4326."""
    if poly.is_empty:
        return shapely.Polygon()
    inv = frame.inv
    return shapely.transform(poly, lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1])))


def _network_polygon(
    graph: RoadGraph,
    dist: np.ndarray,
    limit: float,
    access_mpm: float,
    src_lon: np.ndarray,
    src_lat: np.ndarray,
    quad_segs: int,
    prune: bool = True,
) -> shapely.Geometry:
    """Union of the reachable tapered edge sweeps and discs, in EPSG:4326 (one catchment; see
    :func:`_network_polygons` for many)."""
    frame = _frame(graph, dist, limit, src_lon, src_lat)
    pieces = _network_pieces(frame, dist, limit, access_mpm, quad_segs)
    return _to_wgs84(_union_pieces(*pieces, quad_segs, prune), frame)


#: fewest reached nodes (in all) of a set of catchments for which building them in threads pays
#: (a catchment of ~1,000 nodes takes ~30 ms; starting a thread ~0.1 ms)
_MIN_NODES_THREADED = 1000


def _union_threads(sizes: Sequence[int]) -> int:
    """Threads to build catchments of ``sizes`` reached nodes: one per core available to the
    process (``os.sched_getaffinity``), at most one per catchment, and 1 below
    :data:`_MIN_NODES_THREADED` nodes in all, where starting threads costs more than it saves.

    GEOS releases the GIL in ``union_all`` and the predicates (shapely 2), numpy in its array
    arithmetic and PROJ in ``transform`` (pyproj >= 3.1 transformers are thread-safe), so the
    catchments -- pieces, union (~70 % of the CPU time), back-projection -- are built in
    parallel. Only the per-group projection (:func:`_frame`) stays on the calling thread.
    """
    cores = usable_cores()
    if cores < 2 or len(sizes) < 2 or sum(sizes) < _MIN_NODES_THREADED:
        return 1
    return min(cores, len(sizes))


def _network_polygons(
    jobs: Sequence[tuple[_Frame, np.ndarray, float]],
    access_mpm: float,
    quad_segs: int,
    threads: int | None = None,
    progress: bool = False,
) -> list[shapely.Geometry]:
    """Catchment polygons (EPSG:4326) of ``jobs`` = ``(frame, dist, limit)``, built in a thread
    pool (:func:`_union_threads` unless ``threads`` is given), largest first, in job order.
    Each polygon is the one :func:`_network_polygon` builds alone (tests/test_metro.py).
    ``progress``: a progress bar over the catchments."""
    sizes = [int(np.count_nonzero(d < lim)) for _, d, lim in jobs]
    n = _union_threads(sizes) if threads is None else max(1, int(threads))
    order = sorted(range(len(jobs)), key=lambda k: -sizes[k])

    def build(k: int) -> shapely.Geometry:
        frame, dist, limit = jobs[k]
        rings, cx, cy, cr = _network_pieces(frame, dist, limit, access_mpm, quad_segs)
        return _to_wgs84(_union_pieces(rings, cx, cy, cr, quad_segs), frame)

    if progress:  # imported before the threads start (tqdm.auto enters catch_warnings)
        from tqdm.auto import tqdm
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="agglo-catchment") as pool:
        built: Iterable[shapely.Geometry] = pool.map(build, order) if n > 1 else map(build, order)
        if progress:
            built = tqdm(built, total=len(order), desc="catchments", unit="polygon")
        done = dict(zip(order, built, strict=True))
    return [done[k] for k in range(len(jobs))]


def commute_catchment(
    graph: RoadGraph,
    sources: Any,
    *,
    minutes: float = MetroOptions.minutes,
    access_speed_kmh: float = MetroOptions.access_speed_kmh,
    groups: Sequence[Any] | None = None,
    method: str = "network",
    max_access_km: float = MetroOptions.max_access_km,
    background_kmh: float | None = None,
    cell_m: float = MetroOptions.cell_m,
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
    >>> from agglo.analysis.metro import road_graph
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
    else:
        dist = np.full((len(names), graph.n_nodes), np.inf)
        nearest = np.full((len(names), graph.n_nodes), -1, dtype=np.int64)
    access_mpm = access_speed_kmh * 1000 / 60
    rows = []
    it: Iterable[int] = range(len(names))
    if progress and method != "network":
        from tqdm.auto import tqdm

        it = tqdm(it, desc="catchments", unit="group")
    frames: list[_Frame] = []
    if method == "network":
        frames = [
            _frame(graph, dist[k], minutes, snapped.lon[m], snapped.lat[m])
            for k, m in enumerate(members)
        ]
        geoms = _network_polygons(
            [(frames[k], dist[k], minutes) for k in range(len(names))],
            access_mpm,
            quad_segs,
            progress=progress,
        )
    for k in it:
        m = members[k]
        if method == "network":
            geom = geoms[k]
        else:
            geom, dist[k] = _friction_group(
                graph, snapped.lon[m], snapped.lat[m], minutes, background, cell_m
            )
        rows.append(
            {
                "group": names[k],
                "minutes": minutes,
                "access_speed_kmh": access_speed_kmh,
                "method": method,
                "n_nodes": int(np.isfinite(dist[k]).sum()),
                "geometry": geom,
            }
        )
    polys = gpd.GeoDataFrame(rows, geometry="geometry", crs=WGS84)
    polys.insert(len(polys.columns) - 1, "area_km2", geodesic_area_km2(polys).to_numpy())
    out = Catchment(polys, dist, None if method != "network" else nearest, snapped.labels, graph)
    out._frames = frames
    return out
