"""Benchmark: road graph build and travel times, agglo against its peers, in one run.

1. **Graph build** from ``--lines`` (default 2.5 M) two-vertex road lines (a ~200 m street grid
   cut at every crossing, as OSM ways are cut at junctions): :func:`agglo.road_graph` against
   networkx building a ``DiGraph`` from the same edges (node pairs already known, so networkx
   does less than agglo: no snapping, no geodesic lengths). Each build runs in its own
   process; peak memory is that process's peak RSS minus its RSS with the lines loaded.
2. **Travel times** on an ``--n`` x ``--n`` grid graph (default 1,000: 1 M nodes) from 1 and
   from ``--sources`` (20) sources with the 60-minute cut-off: :func:`agglo.travel_times`
   (snapping included) against ``scipy.sparse.csgraph.dijkstra(min_only=True, limit=60)`` on
   the same CSR from the snapped nodes, timed ABAB interleaved (medians of ``--repeat``) in
   CPU seconds (robust on a loaded machine); networkx ``multi_source_dijkstra_path_length`` on
   the ``--nx-n`` grid (default 300). Results are cross-checked (equal reached sets, max
   difference in minutes).
3. **Catchment polygons** on the bundled (SYNTHETIC) demo road network: the metro stage
   (:func:`agglo.analysis.metro.metropolitan_areas`, default cores, 60-minute areas and
   15/30/45-minute bands) timed whole, then every catchment polygon built again by agglo's
   pruned union against ``shapely.union_all`` of all the same pieces (the exact construction),
   ABAB in CPU seconds, with the largest relative area difference; then the stage's own path
   (nodes projected once per core, all 44 catchments built in a thread pool) on 1 and on all
   cores, checked vertex for vertex against the one-by-one polygons. ``--quick``: two cores.

Usage: ``python benchmarks/bench_metro.py [--quick] [--catchments-only]``; prints one ``BENCH``
line per peer.

Results (2026-12-03, session 8, inner cells joined after the sweeps' union; A/B against the
previous commit 57b5ae2 in the same period, load average 1.1-2.1, CPU seconds)::

    catchment polygons (44): pruned union 3.21 CPU s (before 3.42), union_all of every piece
      10.66 (11.09), max relative area difference 9.9e-15; stage path 1 thread 3.14 CPU s
      (3.44), 2 threads 3.57 CPU s / 1.84 wall s (3.89 / 2.01), identical polygons
    BENCH metro_catchments_44polygons agglo_s=3.212 union_all_s=10.658 speedup_vs_union_all=3.32
    (the unions alone, 44 catchments ABAB x6 in one process: 2.87 vs 2.97 CPU s, median)

Results (2026-12-02, session 6, 2-core VM shared with other jobs, load average 5.4-6.5, so wall
times are not comparable; CPU seconds)::

    metro stage: 4.63 CPU s (13.1 wall s at load 5.4); before this session's changes 4.91-5.14
      CPU s, after 4.65-4.74 (3 ABAB pairs, same period, load 6.3-6.8)
    catchment polygons (44): pruned union 3.55 CPU s, union_all of every piece 11.47 CPU s, max
      relative area difference 7.8e-15 (no repair warning any more: partial-edge sweeps end in
      r1 = 0 exactly); stage path 1 thread 3.75 CPU s / 5.71 wall s, 2 threads 3.40 CPU s /
      5.24 wall s, identical polygons
    BENCH metro_catchments_44polygons agglo_s=3.551 union_all_s=11.474 speedup_vs_union_all=3.23

Per-thread CPU of a stage run (load 5.5, final code with the warnings lock): 1.15 s on the
calling thread outside the catchments (graph build 0.55, seats, shares, Dijkstra), 1.55 + 1.68 s
in the two catchment workers, so on a quiet 2-core machine the stage should take ~1.15 + 3.2 / 2
= 2.8 s wall at this load's CPU rates (~2.3 s at quiet rates, CPU being ~1.25x higher under this
load), a little more for the serialised ``is_valid`` / polygonize calls; not measured quiet.

Results (2026-12-02, end of session 5, quiet machine, CPU seconds)::

    BENCH metro_graph_build_2500000lines agglo_s=2.682 networkx_s=9.271 speedup_vs_networkx=3.5
    BENCH metro_travel_times_1000000nodes_1src agglo_s=0.0606 scipy_s=0.0602 speedup_vs_scipy=0.99
    BENCH metro_travel_times_1000000nodes_20src agglo_s=0.3339 scipy_s=0.3109 speedup_vs_scipy=0.93
    BENCH metro_travel_times_90000nodes_20src agglo_s=0.0270 networkx_s=0.3334
          speedup_vs_networkx=12.4
    BENCH metro_catchments_44polygons agglo_s=2.825 union_all_s=8.995 speedup_vs_union_all=3.18

graph build peak +327 MB beyond the lines; 20 sources 50 m off their nodes 1.17x the on-node
scipy search; ``tt.frame()`` of 1 M points 0.90 s; metro stage 4.16 CPU s. The reference
``union_all`` of every piece hit a GEOS TopologyException on one self-intersecting sweep and went
through :func:`agglo.analysis.metro.catchment._union_all`'s repair (warned).

Earlier (2026-12-02, 2-core VM shared with other jobs, load average 5-9, so noisy; CPU seconds)
-----------------------------------------------------------------------------------------------
Full size, one run::

    graph build, 2,500,000 lines -> 1,254,400 nodes, 4,000,000 edges: agglo 3.35 CPU s,
      peak +328 MB beyond the lines; networkx 11.37 CPU s, +1500 MB
    travel times, 1 M nodes: 1 source agglo 0.084 / scipy 0.084 s; 20 sources agglo 0.439 /
      scipy 0.432 s (same reached sets, max |diff| 0); 90,000 nodes, 20 sources: agglo 0.032 s,
      networkx 0.527 s
    BENCH metro_graph_build_2500000lines agglo_s=3.350 networkx_s=11.368 speedup_vs_networkx=3.4
    BENCH metro_travel_times_1000000nodes_1src agglo_s=0.0844 scipy_s=0.0836 speedup_vs_scipy=0.99
    BENCH metro_travel_times_1000000nodes_20src agglo_s=0.4391 scipy_s=0.4323 speedup_vs_scipy=0.98
    BENCH metro_travel_times_90000nodes_20src agglo_s=0.0323 networkx_s=0.5272 speedup_vs_networkx=16.3
    BENCH metro_catchments_44polygons agglo_s=4.759 union_all_s=9.086 speedup_vs_union_all=1.91

Graph build before this session's changes, same machine, interleaved A/B of ``road_graph`` alone:
4.5-7.0 CPU s (median 4.9), +640-675 MB; after: 3.4-3.9 CPU s (median 3.7), +307 MB. On this VM
first-touched memory costs CPU time, so the smaller peak is part of the gain. Separate A/B runs of
20 sources on the 1 M grid put agglo at 1.00-1.25x scipy with sources on nodes and 1.07-1.28x
with sources 50 m off their nodes (virtual-node search), varying with the load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import geopandas as gpd
import numpy as np
import shapely


def grid_roads(n: int, *, lon0: float = 103.0, lat0: float = 30.0) -> gpd.GeoDataFrame:
    """n x n grid of long roads (~200 m spacing): every 50th line motorway, every 10th primary."""
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


def segment_roads(n_lines: int, *, lon0: float = 100.0, lat0: float = 25.0) -> gpd.GeoDataFrame:
    """About ``n_lines`` two-vertex lines: a grid cut at every crossing, ~40 % one-way."""
    m = int(np.ceil(np.sqrt(n_lines / 2))) + 1
    dlon, dlat = 0.002, 0.0018
    i, j = np.meshgrid(np.arange(m), np.arange(m - 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    # horizontal segments (j, i) -> (j + 1, i) and vertical ones (i, j) -> (i, j + 1)
    x0 = np.concatenate([lon0 + dlon * j, lon0 + dlon * i])
    y0 = np.concatenate([lat0 + dlat * i, lat0 + dlat * j])
    x1 = np.concatenate([lon0 + dlon * (j + 1), lon0 + dlon * i])
    y1 = np.concatenate([lat0 + dlat * i, lat0 + dlat * (j + 1)])
    k = min(n_lines, len(x0))
    coords = np.stack([np.column_stack([x0, y0])[:k], np.column_stack([x1, y1])[:k]], axis=1)
    row = np.concatenate([i, i])[:k]
    cls = np.where(row % 50 == 0, "motorway", np.where(row % 10 == 0, "primary", "residential"))
    oneway = np.where(np.arange(k) % 5 < 2, "yes", "no")
    return gpd.GeoDataFrame(
        {"highway": cls, "oneway": oneway}, geometry=shapely.linestrings(coords), crs=4326
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(job: tuple[str, int], queue: mp.Queue) -> None:
    method, n_lines = job
    roads = segment_roads(n_lines)
    base = rss_mb()
    t0 = time.process_time()
    if method == "agglo":
        from agglo.analysis.metro import road_graph

        g = road_graph(roads)
        size = (g.n_nodes, g.n_edges)
    else:
        import networkx as nx

        xy = shapely.get_coordinates(roads.geometry.to_numpy()).reshape(-1, 2, 2)
        _, node = np.unique(xy.reshape(-1, 2), axis=0, return_inverse=True)
        t0 = time.process_time()  # networkx gets the node ids for free
        node = node.reshape(-1, 2)
        two_way = roads["oneway"].to_numpy() != "yes"
        G = nx.DiGraph()
        G.add_edges_from(node.tolist())
        G.add_edges_from(node[two_way][:, ::-1].tolist())
        size = (G.number_of_nodes(), G.number_of_edges())
    cpu = time.process_time() - t0
    queue.put((cpu, peak_mb() - base, size))


def build_in_process(method: str, n_lines: int) -> tuple[float, float, tuple[int, int]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_build, args=((method, n_lines), queue))
    p.start()
    out = queue.get()
    p.join()
    return out


def catchments(args: argparse.Namespace) -> str:
    """Metro stage on the bundled data; pruned union against ``shapely.union_all``."""
    import warnings

    import agglo
    from agglo.analysis.metro import MetroOptions, metropolitan_areas
    from agglo.analysis.metro.catchment import (
        _frame,
        _network_polygon,
        _network_polygons,
        _union_threads,
    )
    from agglo.reference import seats as seat_rule
    from agglo.reference.paths import data_path

    cities, counties = agglo.load_cities(), agglo.load_counties()
    roads = str(data_path("roads", "demo_roads_synthetic.gpkg"))
    opts = MetroOptions(cores=("成都", "重庆") if args.quick else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, w0 = time.process_time(), time.perf_counter()
        res = metropolitan_areas(cities, counties, [roads], opts)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    cat = res.catchment
    limits = sorted({*opts.used_bands, float(opts.minutes)})
    print(
        f"metro stage (bundled SYNTHETIC roads, {len(cat.polygons)} cores x {len(limits)} "
        f"limits): {cpu:.2f} CPU s, {wall:.2f} wall s"
    )
    mpm = float(opts.access_speed_kmh) * 1000 / 60
    jobs = []
    seats = seat_rule.city_seats(cities, counties).set_index("adcode")
    for k, core in enumerate(res.areas["core_adcode"].astype(str)):
        seat = seats.geometry.loc[core]
        for b in limits:
            dist = np.where(cat.times[k] <= b, cat.times[k], np.inf)
            jobs.append((dist, b, float(seat.x), float(seat.y)))
    t_a, t_u, worst = [], [], 0.0
    for _ in range(max(1, args.repeat // 2)):
        ta = tu = 0.0
        for dist, b, lon, lat in jobs:
            call = (cat.graph, dist, b, mpm, np.array([lon]), np.array([lat]), 8)
            t0 = time.process_time()
            fast = _network_polygon(*call)
            ta += time.process_time() - t0
            t0 = time.process_time()
            ref = _network_polygon(*call, prune=False)
            tu += time.process_time() - t0
            worst = max(worst, abs(fast.area / ref.area - 1) if ref.area else 0.0)
        t_a.append(ta)
        t_u.append(tu)
    a, u = statistics.median(t_a), statistics.median(t_u)
    print(
        f"catchment polygons ({len(jobs)}): agglo pruned union {a:.2f} CPU s, shapely.union_all "
        f"of every piece {u:.2f} CPU s (medians of {len(t_a)}, ABAB); max relative area "
        f"difference {worst:.1e}"
    )
    # the stage's path: frames projected once per core, all catchments built in a thread pool
    frames = [
        _frame(cat.graph, cat.times[k], max(limits), np.array([lon]), np.array([lat]))
        for k, (_, _, lon, lat) in enumerate(jobs[:: len(limits)])
    ]
    batch = [(frames[i // len(limits)], d, b) for i, (d, b, _, _) in enumerate(jobs)]
    one = [
        _network_polygon(cat.graph, d, b, mpm, np.array([lon]), np.array([lat]), 8)
        for d, b, lon, lat in jobs
    ]
    n_threads = _union_threads([int(np.count_nonzero(d < lim)) for _, d, lim in batch])
    for threads in (1, n_threads):
        t0, w0 = time.process_time(), time.perf_counter()
        got = _network_polygons(batch, mpm, 8, threads=threads)
        cpu_t, wall_t = time.process_time() - t0, time.perf_counter() - w0
        same = all(
            shapely.normalize(p).equals_exact(shapely.normalize(q), 0.0)
            for p, q in zip(got, one, strict=True)
        )
        print(
            f"  stage path ({threads} thread(s)): {cpu_t:.2f} CPU s, {wall_t:.2f} wall s; "
            f"identical to the one-by-one polygons: {same}"
        )
    return (
        f"BENCH metro_catchments_{len(jobs)}polygons agglo_s={a:.3f} union_all_s={u:.3f} "
        f"speedup_vs_union_all={u / a:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    ap.add_argument("--lines", type=int, default=2_500_000)
    ap.add_argument("--n", type=int, default=1000, help="travel-time grid side (n*n nodes)")
    ap.add_argument("--nx-n", type=int, default=300, help="grid side of the networkx check")
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--catchments-only", action="store_true", help="only section 3")
    args = ap.parse_args()
    if args.quick:
        args.lines, args.n, args.nx_n, args.repeat = 200_000, 300, 100, 3
    if args.catchments_only:
        line = catchments(args)
        print(f"peak memory of this process: {peak_mb():.0f} MB (ru_maxrss)")
        print(line)
        return

    from scipy.sparse.csgraph import dijkstra

    from agglo.analysis.metro import road_graph, travel_times

    bench: list[str] = []
    # ---------------------------------------------------------------- graph build
    cpu_a, mem_a, size_a = build_in_process("agglo", args.lines)
    print(
        f"graph build, {args.lines:,} lines -> {size_a[0]:,} nodes, {size_a[1]:,} edges: "
        f"agglo {cpu_a:.2f} CPU s, peak +{mem_a:.0f} MB beyond the lines"
    )
    cpu_n, mem_n, size_n = build_in_process("networkx", args.lines)
    print(f"  networkx Graph from known node pairs: {cpu_n:.2f} CPU s, peak +{mem_n:.0f} MB")
    assert size_n == size_a, (size_n, size_a)
    bench.append(
        f"BENCH metro_graph_build_{args.lines}lines agglo_s={cpu_a:.3f} networkx_s={cpu_n:.3f} "
        f"speedup_vs_networkx={cpu_n / cpu_a:.1f}"
    )

    # ---------------------------------------------------------------- travel times
    g = road_graph(grid_roads(args.n))
    print(f"travel-time graph: {g.n_nodes:,} nodes, {g.n_edges:,} directed edges")
    rng = np.random.default_rng(20)
    for n_src in (1, args.sources):
        src_nodes = rng.choice(g.n_nodes, n_src, replace=False)
        sources = list(zip(g.lon[src_nodes], g.lat[src_nodes], strict=True))
        travel_times(g, sources, minutes=args.minutes)  # warm up (spatial index, caches)
        t_a, t_s = [], []
        for _ in range(args.repeat):
            t0 = time.process_time()
            tt = travel_times(g, sources, minutes=args.minutes)
            t_a.append(time.process_time() - t0)
            t0 = time.process_time()
            ref = dijkstra(g.csr, indices=src_nodes, min_only=True, limit=args.minutes)
            t_s.append(time.process_time() - t0)
        a, s = statistics.median(t_a), statistics.median(t_s)
        reached = np.isfinite(ref)
        same = np.array_equal(np.isfinite(tt.minutes), reached)
        diff = float(np.max(np.abs(tt.minutes[reached] - ref[reached])))
        print(
            f"travel times, {n_src} source(s): agglo {a:.3f} CPU s, scipy dijkstra {s:.3f} "
            f"CPU s (medians of {args.repeat}, ABAB); {int(reached.sum()):,} nodes reached; "
            f"same reached set {same}; max |diff| {diff:.1e} min"
        )
        bench.append(
            f"BENCH metro_travel_times_{g.n_nodes}nodes_{n_src}src agglo_s={a:.4f} "
            f"scipy_s={s:.4f} speedup_vs_scipy={s / a:.2f}"
        )
    # the same sources 50 m north of their nodes: access legs, so the virtual-node search
    off = [(x, y + 0.00045) for x, y in sources]
    t_off = []
    for _ in range(args.repeat):
        t0 = time.process_time()
        travel_times(g, off, minutes=args.minutes)
        t_off.append(time.process_time() - t0)
    print(
        f"  {args.sources} sources 50 m off their nodes (access legs): agglo "
        f"{statistics.median(t_off):.3f} CPU s = {statistics.median(t_off) / s:.2f}x the "
        "on-node scipy search"
    )
    t0 = time.process_time()
    frame = tt.frame()
    print(
        f"  geometry on demand (tt.frame(), {len(frame):,} points): {time.process_time() - t0:.3f} s"
    )
    del g, tt, frame

    import networkx as nx

    g = road_graph(grid_roads(args.nx_n))
    src_nodes = rng.choice(g.n_nodes, args.sources, replace=False)
    sources = list(zip(g.lon[src_nodes], g.lat[src_nodes], strict=True))
    u, v, w = g.edges()
    G = nx.DiGraph()
    G.add_weighted_edges_from(zip(u.tolist(), v.tolist(), w.tolist(), strict=True))
    t_a, t_n = [], []
    for _ in range(max(1, args.repeat // 2)):
        t0 = time.process_time()
        tt = travel_times(g, sources, minutes=args.minutes)
        t_a.append(time.process_time() - t0)
        t0 = time.process_time()
        ref = nx.multi_source_dijkstra_path_length(G, set(src_nodes.tolist()), cutoff=args.minutes)
        t_n.append(time.process_time() - t0)
    a, s = statistics.median(t_a), statistics.median(t_n)
    got = dict(zip(tt.reached().tolist(), tt.minutes[tt.reached()].tolist(), strict=True))
    diff = max(abs(got[k] - ref[k]) for k in ref)
    print(
        f"travel times, {g.n_nodes:,} nodes, {args.sources} sources: agglo {a:.3f} CPU s, "
        f"networkx {s:.3f} CPU s; same reached set {set(got) == set(ref)}; max |diff| {diff:.1e}"
    )
    bench.append(
        f"BENCH metro_travel_times_{g.n_nodes}nodes_{args.sources}src agglo_s={a:.4f} "
        f"networkx_s={s:.4f} speedup_vs_networkx={s / a:.1f}"
    )
    bench.append(catchments(args))
    print(f"peak memory of this process: {peak_mb():.0f} MB (ru_maxrss)")
    for line in bench:
        print(line)


if __name__ == "__main__":
    main()
