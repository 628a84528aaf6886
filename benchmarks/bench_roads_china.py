"""Benchmark: road density of all 2,875 counties of China from a China-scale ``.osm.pbf``, streaming.

Input (generated, SYNTHETIC): an OSM extract in the OSM layout (nodes sorted by id, then ways
with ``highway`` tags and node references; written with pyosmium) holding ``--ways`` road ways
(default 8,000,000) of 2-4 nodes and 0.2-3 km over China's counties; a fifth are
``residential``/``service`` streets that the default 公路 classes exclude. The 2,875 county
polygons are the bundled national boundaries (``load_counties(region="china")``).

agglo reads the extract with :func:`agglo.measures.roads.iter_osm_roads` (pyosmium, ``--chunk``
ways at a time, class filter while reading) and sums :func:`agglo.road_density` over the
chunks, so the network is never held at once. Reported: wall and CPU seconds of the whole read
+ density, ways kept, total km, and the peak resident memory of the process (VmHWM). The goal
(issue 14) is <= 10 minutes and <= 8 GB; OSMnx, which loads the whole graph, is the peer that
runs out of memory at this scale, so no peer is run here (the BENCH line gives agglo only).

Usage::

    python benchmarks/bench_roads_china.py                 # 8 M ways (long)
    python benchmarks/bench_roads_china.py --quick         # 200,000 ways, a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

import agglo
from agglo.measures.roads import iter_osm_roads

#: the last two are not 公路 and are dropped while reading
CLASSES = np.array(
    [
        "motorway",
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "unclassified",
        "residential",
        "service",
    ]
)
CLASS_P = np.array([0.03, 0.05, 0.1, 0.12, 0.2, 0.3, 0.15, 0.05])


def write_pbf(path: Path, polygons: np.ndarray, n_ways: int, *, seed: int) -> None:
    """``n_ways`` synthetic road ways in the OSM layout (nodes first, then ways)."""
    import osmium

    rng = np.random.default_rng(seed)
    union = shapely.union_all(shapely.simplify(polygons, 0.05))
    shapely.prepare(union)
    x0, y0, x1, y1 = union.bounds
    chunks, got = [], 0
    while got < n_ways:
        xy = rng.uniform((x0, y0), (x1, y1), size=(n_ways, 2))
        xy = xy[shapely.contains_xy(union, xy[:, 0], xy[:, 1])]
        chunks.append(xy)
        got += len(xy)
    start = np.vstack(chunks)[:n_ways]
    n_nodes = rng.integers(2, 5, n_ways)
    step = rng.uniform(0.2, 3.0, n_ways) / 111.0 / (n_nodes - 1)
    classes = CLASSES[rng.choice(len(CLASSES), n_ways, p=CLASS_P)]
    first = np.r_[0, np.cumsum(n_nodes)[:-1]] + 1
    with osmium.SimpleWriter(str(path)) as writer:
        node_id = 1
        for k in range(0, n_ways, 200_000):
            sl = slice(k, min(k + 200_000, n_ways))
            for sx, sy, m, st in zip(
                start[sl, 0], start[sl, 1], n_nodes[sl], step[sl], strict=True
            ):
                angle = rng.uniform(0, 2 * np.pi)
                dx, dy = np.cos(angle) * st / np.cos(np.radians(sy)), np.sin(angle) * st
                for i in range(m):
                    writer.add_node(
                        osmium.osm.mutable.Node(id=node_id, location=(sx + i * dx, sy + i * dy))
                    )
                    node_id += 1
        for w in range(n_ways):
            refs = list(range(int(first[w]), int(first[w] + n_nodes[w])))
            writer.add_way(
                osmium.osm.mutable.Way(id=w + 1, nodes=refs, tags={"highway": str(classes[w])})
            )


def _peak_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ways", type=int, default=8_000_000)
    ap.add_argument("--chunk", type=int, default=500_000, help="ways per streamed chunk")
    ap.add_argument("--seed", type=int, default=20101115)
    ap.add_argument("--quick", action="store_true", help="200,000 ways (what `make bench` runs)")
    args = ap.parse_args()
    if args.quick:
        args.ways = 200_000

    counties = agglo.load_counties(region="china")[["adcode", "geometry"]]
    with tempfile.TemporaryDirectory(prefix="bench_roads_china_") as tmp:
        pbf = Path(tmp) / "synthetic_china_roads.osm.pbf"
        t = time.perf_counter()
        write_pbf(pbf, counties.geometry.to_numpy(), args.ways, seed=args.seed)
        print(
            f"SYNTHETIC {pbf.name}: {args.ways:,} ways, {pbf.stat().st_size / 1e6:,.0f} MB "
            f"(written in {time.perf_counter() - t:.0f} s); {len(counties):,} counties"
        )
        with contextlib.suppress(OSError):  # the peak below covers the measured work only
            Path("/proc/self/clear_refs").write_text("5")
        wall, cpu = time.perf_counter(), time.process_time()
        length = np.zeros(len(counties))
        count = np.zeros(len(counties), dtype=np.int64)
        kept = 0
        for chunk in iter_osm_roads(pbf, chunk_size=args.chunk):
            kept += len(chunk)
            if len(chunk) == 0:
                continue
            part = agglo.road_density(chunk, counties)
            length += part["length_km"].to_numpy()
            count += part["n_roads"].to_numpy()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"agglo streaming: {wall:,.1f} s wall, {cpu:,.1f} CPU-s; {kept:,} ways kept (公路 "
        f"classes), {length.sum():,.0f} km in {int((count > 0).sum()):,} counties"
    )
    print(f"peak memory (VmHWM, read + density): {_peak_mb():,.0f} MB")
    print(f"BENCH roads_china agglo_s={wall:.1f} agglo_cpu_s={cpu:.1f} peak_mb={_peak_mb():.0f}")


if __name__ == "__main__":
    main()
