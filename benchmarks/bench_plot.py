"""Benchmark: agglo's choropleth (classes, legend, scale bar, north arrow, CJK labels, PNG+SVG)
versus geopandas' ``GeoDataFrame.plot(column, scheme=..., legend=True)`` saved the same way.

Same polygons (the bundled 1,068 counties, or the 130 cities with ``--quick``), same seeded
values, same mapclassify scheme and k, same DPI and formats. The class bounds of both are
compared (agglo's legend must show mapclassify's Fisher-Jenks bins). agglo does more per map
(reprojection to a fitted Albers CRS, outlines, labels with ``--labels``), so it is expected to be
somewhat slower; the point is to show the cost of the extras.

Usage: ``python benchmarks/bench_plot.py [--quick] [--repeat 3] [--labels]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="130 cities (< 1 min)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--labels", action="store_true", help="also label every unit (name_zh)")
    args = ap.parse_args()

    import mapclassify
    from matplotlib.figure import Figure

    from agglo import plot
    from agglo.reference.boundaries import load_cities, load_counties

    gdf = load_cities() if args.quick else load_counties()
    rng = np.random.default_rng(20101115)
    gdf = gdf.assign(v=rng.gamma(2.0, 10.0, len(gdf)))
    out = Path(tempfile.mkdtemp())
    labels = "name_zh" if args.labels else None

    def run_agglo(i: int) -> None:
        fig = plot.choropleth(gdf, "v", scheme="fisher_jenks", k=5, labels=labels)
        plot.save_figure(fig, out / f"agglo_{i}", dpi=150, force=True)

    def run_geopandas(i: int) -> None:
        fig = Figure(figsize=(8.0, 6.5))
        ax = fig.add_subplot()
        gdf.plot(column="v", scheme="fisher_jenks", k=5, legend=True, ax=ax, cmap="YlGnBu")
        for fmt in ("png", "svg"):
            fig.savefig(out / f"gpd_{i}.{fmt}", dpi=150, bbox_inches="tight")

    run_agglo(-1)  # warm-up: font registration, imports
    run_geopandas(-1)
    t_agglo, t_gpd = [], []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        run_agglo(i)
        t_agglo.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_geopandas(i)
        t_gpd.append(time.perf_counter() - t0)
    a, g = min(t_agglo), min(t_gpd)

    fig = plot.choropleth(gdf, "v", scheme="fisher_jenks", k=5)
    uppers = [
        float(t.get_text().split("–")[1].split()[0]) for t in fig.axes[0].get_legend().get_texts()
    ]
    ref = mapclassify.FisherJenks(gdf["v"].to_numpy(), k=5).bins
    err = float(np.max(np.abs(np.array(uppers) - ref)))
    print(f"units={len(gdf)} repeat={args.repeat} labels={bool(labels)}")
    print(f"agglo choropleth+png+svg: {a:.2f} s; geopandas plot+png+svg: {g:.2f} s")
    print(f"max |legend upper bound - mapclassify bin| = {err:.3g} (rounding of the labels)")
    print(f"peak RSS {peak_mb():.0f} MB")
    print(f"BENCH plot agglo_s={a:.3f} geopandas_s={g:.3f} speedup_vs_geopandas={g / a:.2f}")


if __name__ == "__main__":
    main()
