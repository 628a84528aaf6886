"""Benchmark: road density of ~2 million synthetic segments over the 84 member cities.

agglo.road_density (STRtree + prepared contains_properly fast path, exact intersection only
for boundary segments, vectorised geodesic lengths) against the GeoPandas approach
(``geopandas.overlay(how="intersection")`` + the same geodesic length, summed per city), on
the same input, one run each. Prints both times, the speedup and the largest difference of
the per-city totals, and ends with a ``BENCH`` line and the peak memory.

Usage::

    .venv/bin/python benchmarks/bench_roads.py            # 2,000,000 segments
    .venv/bin/python benchmarks/bench_roads.py --quick    # 100,000 segments (< 1 min)
"""

from __future__ import annotations

import argparse
import resource
import time

import geopandas as gpd
import numpy as np
import shapely

import agglo
from agglo.measures.geodesy import geodesic_length_km


def synthetic_segments(polygons: gpd.GeoDataFrame, n: int, *, seed: int) -> gpd.GeoDataFrame:
    """``n`` straight segments (0.2-3 km) starting inside the union of ``polygons``."""
    rng = np.random.default_rng(seed)
    union = shapely.union_all(polygons.geometry.to_numpy())
    shapely.prepare(union)
    x0, y0, x1, y1 = union.bounds
    starts = np.empty((0, 2))
    while len(starts) < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(2 * n, 2))
        starts = np.vstack([starts, xy[shapely.contains_xy(union, xy[:, 0], xy[:, 1])]])
    starts = starts[:n]
    length_deg = rng.uniform(0.2, 3.0, n) / 111.0
    angle = rng.uniform(0, 2 * np.pi, n)
    ends = (
        starts
        + np.c_[np.cos(angle) / np.cos(np.radians(starts[:, 1])), np.sin(angle)]
        * (length_deg[:, None])
    )
    coords = np.stack([starts, ends], axis=1)
    lines = shapely.linestrings(coords)
    classes = np.array(["primary", "secondary", "tertiary", "unclassified"])
    return gpd.GeoDataFrame(
        {"highway": classes[rng.integers(0, 4, n)]}, geometry=lines, crs="EPSG:4326"
    )


def overlay_density(roads: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame) -> np.ndarray:
    """GeoPandas reference: overlay intersection, geodesic length, sum per polygon."""
    pieces = gpd.overlay(roads, polygons[["adcode", "geometry"]], how="intersection")
    pieces["length_km"] = geodesic_length_km(pieces).to_numpy()
    per_city = pieces.groupby("adcode")["length_km"].sum()
    return per_city.reindex(polygons["adcode"]).fillna(0.0).to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 segments")
    parser.add_argument("--n", type=int, default=None, help="number of segments")
    parser.add_argument("--seed", type=int, default=20101115)
    args = parser.parse_args()
    n = args.n or (100_000 if args.quick else 2_000_000)

    cities = agglo.load_cities()
    members = cities[cities["agglomeration_id"].notna()].reset_index(drop=True)
    t = time.perf_counter()
    roads = synthetic_segments(members, n, seed=args.seed)
    print(
        f"{len(members)} member cities, {len(roads):,} segments (built in "
        f"{time.perf_counter() - t:.1f} s)"
    )

    t = time.perf_counter()
    ours = agglo.road_density(roads, members, classes="all")
    agglo_s = time.perf_counter() - t
    print(f"agglo.road_density: {agglo_s:.2f} s, total {ours['length_km'].sum():,.3f} km")

    t = time.perf_counter()
    ref = overlay_density(roads, members)
    peer_s = time.perf_counter() - t
    print(f"geopandas overlay + geodesic length: {peer_s:.2f} s, total {ref.sum():,.3f} km")

    diff = np.abs(ours["length_km"].to_numpy() - ref)
    rel = diff.max() / max(ref.max(), 1e-12)
    print(
        f"largest per-city difference: {diff.max():.6f} km (relative {rel:.2e}); "
        f"total difference {abs(ours['length_km'].sum() - ref.sum()):.6f} km"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak_mb:,.0f} MB")
    print(
        f"BENCH roads agglo_s={agglo_s:.3f} geopandas_overlay_s={peer_s:.3f} "
        f"speedup_vs_geopandas_overlay={peer_s / agglo_s:.2f}"
    )


if __name__ == "__main__":
    main()
