"""Benchmark: agglo.integration_index vs a per-cell reference loop built on scipy.stats.variation.

The reference computes the same K (cv by scipy, k and f by plain Python loops) cell by cell,
so the run also cross-checks agglo's vectorised numbers (max |ΔK| printed).

The sensitivity (``index_sensitivity``, part of ``agglo run``'s index stage): agglo scores
the leave-one-city-out variants in one stacked pass; the peer scores them one by one (the
index computation once per left-out city, as before the batching). Both tables must be
equal; the ``index_sensitivity`` BENCH line times them A B A B (CPU seconds).

    python benchmarks/bench_index.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd
from scipy.stats import variation

from agglo.analysis.index import IndexWarning, integration_index
from agglo.reference.boundaries import load_membership
from agglo.reference.registry import INDICATORS


def make_panel(membership: pd.DataFrame, years: list[int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    codes = membership["adcode"].to_numpy()
    inds = list(INDICATORS.values())
    idx = pd.MultiIndex.from_product([codes, years, [i.id for i in inds]])
    kinds = np.tile([i.kind for i in inds], len(codes) * len(years))
    vals = np.where(kinds == "binary", rng.integers(0, 2, len(idx)), rng.uniform(1, 99, len(idx)))
    df = idx.to_frame(index=False, name=["adcode", "year", "indicator"])
    df["value"] = vals.astype(float)
    return df


def reference(panel: pd.DataFrame, membership: pd.DataFrame) -> dict[tuple, float]:
    m = dict(zip(membership["adcode"], membership["agglomeration_id"], strict=True))
    n = membership.groupby("agglomeration_id").size()
    R = (n / n.sum()).to_dict()
    cells: dict[tuple, list[float]] = {}
    for a, y, i, v in panel.itertuples(index=False):
        cells.setdefault((m[a], y, i), []).append(v)
    cv, level = {}, {}
    for key, vals in cells.items():
        x = np.asarray(vals)
        level[key] = float(x.mean())
        cv[key] = 0.0 if x.mean() == 0 else float(variation(x))
    out = {}
    for key in cells:
        ind = key[2]
        same = [k for k in cells if k[2] == ind]
        cmax, cmin = max(cv[k] for k in same), min(cv[k] for k in same)
        lmax, lmin = max(level[k] for k in same), min(level[k] for k in same)
        k = 100.0 if cmax == cmin else 100 * (cmax - cv[key]) / (cmax - cmin)
        fp = 1.0 if lmax == lmin else 0.01 + 0.99 * (level[key] - lmin) / (lmax - lmin)
        f = fp if INDICATORS[ind].direction > 0 else math.sqrt(fp * (1.01 - fp))
        out[key] = k * R[key[0]] * f
    return out


def _loop_sensitivity(panel: pd.DataFrame, m: pd.DataFrame) -> pd.DataFrame:
    from dataclasses import replace

    from agglo.analysis import sensitivity as sens
    from agglo.analysis.index import _core, _prepare, index_options

    cfg = index_options(None)
    base = sens.index_sensitivity(panel, m, leave_one_out=False)
    prep = _prepare(panel, m, cfg, [], None)
    _, _, b, _ = _core(prep, cfg, [], warn=False)
    b = b.set_index(["agglomeration_id", "year"])
    rows = []
    cities = prep.values[["adcode", "agglomeration_id"]].drop_duplicates()
    for adcode, g in cities.itertuples(index=False):
        sub = replace(prep, values=prep.values[prep.values["adcode"] != adcode])
        _, _, comp, _ = _core(sub, cfg, [], warn=False)
        j = b[["score", "rank"]].merge(
            comp.set_index(["agglomeration_id", "year"])[["score", "rank"]],
            left_index=True,
            right_index=True,
            suffixes=("", "_s"),
        )
        rows.append(
            pd.DataFrame(
                {
                    "scenario": "leave_one_out",
                    "description": f"without city {adcode} ({g})",
                    "left_out": adcode,
                    "base_score": j["score"],
                    "score": j["score_s"],
                    "score_change": j["score_s"] - j["score"],
                    "base_rank": j["rank"].astype(int),
                    "rank": j["rank_s"].astype(int),
                    "rank_change": (j["rank"] - j["rank_s"]).astype(int),
                }
            ).reset_index()
        )
    return pd.concat([base, *rows], ignore_index=True)[list(base.columns)]


def sensitivity_rows(panel: pd.DataFrame, m: pd.DataFrame, repeat: int = 2) -> None:
    from agglo.analysis.sensitivity import index_sensitivity

    cpu: dict[str, list[float]] = {"agglo": [], "loop": []}
    out = {}
    for _ in range(repeat):  # A B A B
        for name, fn in (
            ("agglo", lambda: index_sensitivity(panel, m)),
            ("loop", lambda: _loop_sensitivity(panel, m)),
        ):
            c0 = time.process_time()
            out[name] = fn()
            cpu[name].append(time.process_time() - c0)
    a, b = out["agglo"], out["loop"]
    same = a.reset_index(drop=True).equals(b.reset_index(drop=True))
    print(f"sensitivity: {len(a)} rows; agglo table equals the one-by-one loop: {same}")
    print(f"sensitivity CPU s (A B A B): {cpu}")
    med = {k: float(np.median(v)) for k, v in cpu.items()}
    print(
        f"BENCH index_sensitivity agglo_s={med['agglo']:.3f} one_by_one_s={med['loop']:.3f} "
        f"speedup_vs_one_by_one={med['loop'] / med['agglo']:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 years instead of 21")
    args = ap.parse_args()
    years = [2010, 2015, 2020] if args.quick else list(range(2000, 2021))
    m = load_membership()
    panel = make_panel(m, years)
    print(f"panel: {len(panel)} rows ({m['adcode'].nunique()} cities x {len(years)} years x 19)")
    warnings.simplefilter("ignore", IndexWarning)
    integration_index(panel.head(2000), m, institutions=pd.DataFrame())  # warm-up (imports)
    t0 = time.perf_counter()
    res = integration_index(panel, m, institutions=pd.DataFrame())
    t_agglo = time.perf_counter() - t0
    tracemalloc.start()  # a separate call: tracemalloc slows the timed one down
    integration_index(panel, m, institutions=pd.DataFrame())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t0 = time.perf_counter()
    ref = reference(panel, m)
    t_ref = time.perf_counter() - t0
    got = res.indicators.set_index(["agglomeration_id", "year", "indicator"])["K"]
    err = max(abs(got[k] - v) for k, v in ref.items())
    print(f"cells: {len(ref)}; max |K_agglo - K_reference| = {err:.3e}")
    print(f"peak memory (tracemalloc, agglo): {peak / 1e6:.1f} MB")
    sensitivity_rows(panel[panel["year"].isin(years[-3:])], m)
    print(
        f"BENCH index agglo_s={t_agglo:.3f} scipy_loop_s={t_ref:.3f} "
        f"speedup_vs_scipy_loop={t_ref / t_agglo:.2f}"
    )


if __name__ == "__main__":
    main()
