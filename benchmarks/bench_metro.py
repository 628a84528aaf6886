"""Benchmark: one-hour travel times from 20 sources on a >= 1M-node road graph.

agglo (scipy.sparse.csgraph Dijkstra, all sources in one call with the 60-minute cut-off)
versus networkx ``multi_source_dijkstra_path_length(cutoff=60)`` and igraph (a virtual
super-source joined to the 20 sources by zero-weight edges; igraph's ``distances`` has no
cut-off, so it explores the whole graph) on the same graph, in one run. The results are
cross-checked (max absolute difference in minutes). Graph building is timed separately and
not part of the comparison.

Usage: ``python benchmarks/bench_metro.py [--quick] [--n 1000] [--sources 20]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import geopandas as gpd
import numpy as np
import shapely


def grid_roads(n: int, *, lon0: float = 103.0, lat0: float = 30.0) -> gpd.GeoDataFrame:
    """n x n grid of roads (~200 m spacing): every 50th line motorway, every 10th primary."""
    dlon, dlat = 0.002, 0.0018
    lons = lon0 + dlon * np.arange(n)
    lats = lat0 + dlat * np.arange(n)
    geoms, hw = [], []
    for i in range(n):
        cls = "motorway" if i % 50 == 0 else "primary" if i % 10 == 0 else "residential"
        geoms.append(shapely.LineString(np.column_stack([lons, np.full(n, lats[i])])))
        geoms.append(shapely.LineString(np.column_stack([np.full(n, lons[i]), lats])))
        hw += [cls, cls]
    return gpd.GeoDataFrame({"highway": hw}, geometry=geoms, crs=4326)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="300 x 300 grid (< 1 min)")
    ap.add_argument("--n", type=int, default=1000, help="grid side (n*n nodes)")
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--no-igraph", action="store_true")
    args = ap.parse_args()
    n = 300 if args.quick else args.n

    from agglo.analysis.metro import commute_catchment, road_graph, travel_times

    t0 = time.perf_counter()
    roads = grid_roads(n)
    g = road_graph(roads)
    t_build = time.perf_counter() - t0
    print(f"graph: {g.n_nodes:,} nodes, {g.n_edges:,} directed edges, built in {t_build:.1f} s")
    rng = np.random.default_rng(20)
    src_nodes = rng.choice(g.n_nodes, args.sources, replace=False)
    sources = list(zip(g.lon[src_nodes], g.lat[src_nodes], strict=True))

    t0 = time.perf_counter()
    tt = travel_times(g, sources, minutes=args.minutes)
    t_agglo = time.perf_counter() - t0
    print(
        f"agglo travel_times: {t_agglo:.2f} s, {len(tt):,} nodes reached; peak {peak_mb():.0f} MB"
    )
    from agglo.analysis.metro.routing import _multi_dijkstra, _snap

    snapped = _snap(g, sources, 15.0, 10.0)
    t0 = time.perf_counter()
    _multi_dijkstra(g, [np.arange(len(sources))], snapped, args.minutes)
    t_engine = time.perf_counter() - t0
    print(f"  of which the compiled multi-source Dijkstra (+ nearest source): {t_engine:.2f} s")
    t0 = time.perf_counter()
    cat = commute_catchment(g, sources, minutes=args.minutes)
    t_poly = time.perf_counter() - t0
    print(
        f"agglo commute_catchment (times + polygon): {t_poly:.2f} s, "
        f"{float(cat.polygons['area_km2'].iloc[0]):,.0f} km2"
    )
    agglo_t = dict(zip(tt["node"].to_numpy(), tt["minutes"].to_numpy(), strict=True))

    import networkx as nx

    u, v, w = g.edges()
    G = nx.DiGraph()
    G.add_weighted_edges_from(zip(u.tolist(), v.tolist(), w.tolist(), strict=True))
    t0 = time.perf_counter()
    ref = nx.multi_source_dijkstra_path_length(
        G, set(src_nodes.tolist()), cutoff=args.minutes, weight="weight"
    )
    t_nx = time.perf_counter() - t0
    del G
    diff = max(abs(agglo_t[k] - ref[k]) for k in ref)
    same = set(ref) == set(agglo_t)
    print(f"networkx: {t_nx:.2f} s; same reached set: {same}; max |diff| = {diff:.2e} min")
    print(f"  engine only: speedup vs networkx {t_nx / t_engine:.1f}")
    print(f"peak memory after networkx: {peak_mb():.0f} MB (ru_maxrss)")

    t_ig = None
    if not args.no_igraph:
        try:
            import igraph as ig
        except ImportError:
            print("igraph not installed: skipped")
        else:
            s = g.n_nodes
            eu = np.concatenate([u, np.full(len(src_nodes), s)])
            ev = np.concatenate([v, src_nodes])
            ew = np.concatenate([w, np.zeros(len(src_nodes))])
            H = ig.Graph(n=s + 1, edges=np.column_stack([eu, ev]).tolist(), directed=True)
            t0 = time.perf_counter()
            d = np.asarray(H.distances(source=[s], weights=ew.tolist(), mode="out")[0][:s])
            t_ig = time.perf_counter() - t0
            within = np.flatnonzero(d <= args.minutes)
            ig_diff = float(np.max(np.abs(d[within] - np.array([agglo_t[k] for k in within]))))
            print(
                f"igraph (no cut-off, whole graph): {t_ig:.2f} s; same reached set: "
                f"{set(within.tolist()) == set(agglo_t)}; max |diff| = {ig_diff:.2e} min"
            )

    line = (
        f"BENCH metro_travel_times_{g.n_nodes}nodes_{args.sources}src agglo_s={t_agglo:.3f} "
        f"networkx_s={t_nx:.3f} speedup_vs_networkx={t_nx / t_agglo:.1f}"
    )
    if t_ig is not None:
        line += f" igraph_s={t_ig:.3f} speedup_vs_igraph={t_ig / t_agglo:.1f}"
    print(f"peak memory: {peak_mb():.0f} MB (ru_maxrss)")
    print(line)


if __name__ == "__main__":
    main()
