"""Friction alternative: road speeds burnt into a raster, cost-distance by Dijkstra on the
8-neighbour cell graph (``method="friction"`` of :func:`~agglo.analysis.metro.commute_catchment`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import dijkstra

from agglo.analysis.metro.graph import RoadGraph, _aeqd_transformers
from agglo.errors import AggloInputError

log = logging.getLogger(__name__)


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
    from rasterio.transform import Affine

    to_m, inv = _aeqd_transformers(float(np.mean(src_lon)), float(np.mean(src_lat)))

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
    # = rasterio.transform.from_origin(x0, y1, cell_m, cell_m), without its
    # PendingDeprecationWarning (it multiplies Affines with `*`)
    transform = Affine(cell_m, 0.0, x0, 0.0, -cell_m, y1)
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
