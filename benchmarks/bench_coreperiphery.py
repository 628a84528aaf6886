"""Benchmark: Borgatti-Everett discrete core-periphery, agglo versus cpnet, on the same graphs.

Planted core-periphery graphs (binary: cpnet's ``BE`` is unweighted), sizes of the five
agglomerations (5, 6, 16, 26, 31 cities) and a larger one. agglo's ``coreness(...,
method="discrete")`` (exhaustive for n <= 16, seeded local search above) against
``cpnet.BE(num_runs=10)`` (numba Kernighan-Lin; compiled once before timing). Both fit
qualities are reported: they are the same correlation (cpnet's ``_score_`` is used to score
agglo's core set), so agglo's should never be lower. The continuous fit is timed too (no peer).
No permutation test (``n_perm=0``) in the timed calls.

Usage: ``python benchmarks/bench_coreperiphery.py [--quick] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from agglo.analysis.coreperiphery import coreness


def planted(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    core = np.zeros(n, dtype=bool)
    core[rng.choice(n, k, replace=False)] = True
    prob = np.where(np.logical_or.outer(core, core), 0.8, 0.1)
    a = np.triu((rng.random((n, n)) < prob).astype(float), 1)
    return a + a.T


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="agglomeration sizes only (< 1 min)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [5, 6, 16, 26, 31] if args.quick else [5, 6, 16, 26, 31, 60, 120]

    import networkx as nx
    import scipy.sparse as sp

    try:
        import cpnet
        from cpnet.BE import _score_
    except ImportError:  # pragma: no cover
        cpnet = None
        print("cpnet is not installed (pip install cpnet): timing agglo only")
    if cpnet is not None:  # compile the numba kernels outside the timing
        cpnet.BE(num_runs=1).detect(nx.from_numpy_array(planted(8, 2, 0)))

    t_agglo = t_cpnet = t_cont = 0.0
    rows = []
    for n in sizes:
        for rep in range(args.repeat):
            a = planted(n, max(1, n // 6), seed=rep)
            df = pd.DataFrame(a)
            t0 = time.perf_counter()
            ours = coreness(df, method="discrete", seed=rep, n_perm=0)
            t1 = time.perf_counter()
            coreness(df, method="continuous", seed=rep, n_perm=0)
            t2 = time.perf_counter()
            t_agglo += t1 - t0
            t_cont += t2 - t1
            row = {"n": n, "rep": rep, "agglo_s": t1 - t0, "agglo_fit": ours.attrs["fit"]}
            if cpnet is not None:
                g = nx.from_numpy_array(a)
                t3 = time.perf_counter()
                be = cpnet.BE(num_runs=10)
                be.detect(g)
                t4 = time.perf_counter()
                t_cpnet += t4 - t3
                s = sp.csr_matrix(a)
                x = ours["core"].to_numpy() * 1.0
                q_ours = _score_(s.indptr, s.indices, s.data, np.zeros(n, dtype=np.int64), x, n)[0]
                row.update(
                    cpnet_s=t4 - t3,
                    cpnet_q=be.Q_,
                    score_diff=abs(q_ours - ours.attrs["fit"]),
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.precision", 4):
        print(table.groupby("n").mean(numeric_only=True).drop(columns="rep"))
    if cpnet is not None:
        worse = int((table["agglo_fit"] < table["cpnet_q"] - 1e-12).sum())
        print(
            f"agglo fit >= cpnet Q in {len(table) - worse}/{len(table)} graphs; "
            f"max |cpnet score of agglo's core - agglo fit| = {table['score_diff'].max():.2e}"
        )
    print(f"continuous coreness (no peer): {t_cont:.3f} s in total")
    print(f"peak memory: {peak_mb():.0f} MB")
    if cpnet is not None:
        print(
            f"BENCH coreperiphery_discrete agglo_s={t_agglo:.4f} cpnet_s={t_cpnet:.4f} "
            f"speedup_vs_cpnet={t_cpnet / t_agglo:.2f}"
        )
    else:
        print(f"BENCH coreperiphery_discrete agglo_s={t_agglo:.4f}")


if __name__ == "__main__":
    main()
