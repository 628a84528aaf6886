"""Benchmark: agglo's map drawing versus ``GeoDataFrame.plot`` per map, saved the same way.

A set of maps like the one ``agglo run`` draws, on the same polygons (the bundled 130 cities,
or the 1,068 counties without ``--quick``) with seeded values:

- a choropleth (Fisher-Jenks, k=5) with legend, and Chinese labels with ``--labels``;
- a categorical map (the agglomerations);
- small multiples (three panels, classes pooled).

agglo: :func:`agglo.plot.choropleth`, :func:`agglo.plot.category_map`,
:func:`agglo.plot.small_multiples` and :func:`agglo.plot.save_figure` (PNG + SVG). The peer: the
straightforward way, ``GeoDataFrame.plot(column, scheme="fisher_jenks", k=5, legend=True)`` (or
``categorical=True``) into a constrained-layout figure per map, saved with
``savefig(bbox_inches="tight")`` as PNG and SVG, with the same CJK font, DPI and formats.
agglo does more per map (reprojection to a fitted Albers CRS, outlines, scale bar, north arrow,
caption, class counts in the legend). Runs alternate (agglo, peer, agglo, peer, ...) after a
warm-up of both (imports, font registration, mapclassify's numba compile for the peer); the
best of ``--repeat`` runs is reported. The class bounds agglo's legend shows are checked
against mapclassify's Fisher-Jenks bins.

Results (2026-12-02, this 2-core shared machine, ``--quick --repeat 2``, best-of CPU, ABAB
against main before issue 14's output work): ``BENCH plot agglo_s=1.013 geopandas_s=1.408
speedup_vs_geopandas=1.39`` (before: agglo 1.17-1.43 s, speedup 1.02-1.28). The layout pass
of :func:`agglo.plot.save_figure` now measures with drawing switched off (same pixels).

Later the same day (``--quick --repeat 3``, ABAB against the code before, load average 5-6
from other jobs: the wall times are up to twice the CPU times, so compare CPU): polygons drawn
as one path collection per class with the paths built once per figure (the same PNG and SVG
bytes as ``GeoDataFrame.plot``), reproducible files and PNG zlib level 3. ``BENCH plot
agglo_s=1.151 geopandas_s=2.134 speedup_vs_geopandas=1.85`` (quietest run); CPU agglo
1.14-1.17 s vs geopandas 2.10-2.18 s, i.e. 1.84-1.86x. The code before, interleaved: agglo
1.43-1.49 CPU-s vs geopandas 2.13-2.28 (1.49-1.53x; ``BENCH ... speedup_vs_geopandas=1.19-1.51``
by wall time).

``--maps-step``: the maps step of ``agglo run`` on the bundled data instead (14 figures, PNG +
SVG, drawn by forked workers): the stages run once, their layers and results are kept in
``--state`` (a pickle, reused by later calls), then :func:`agglo.outputs.maps.draw_maps` is
called as the step calls it, ``--repeat`` times; CPU-s are this process's and its workers'
(the figure workers are waited for, so their time is counted). ``--workers 1`` draws every
figure in this process (the steadiest CPU on a busy machine).

Results (2026-12-03, this 2-core machine shared with other jobs, load 3-7, ABAB against
425d246; ``--maps-step --workers 1``): 7.10-7.22 -> 5.98-6.36 CPU-s, per phase (one process)
build 1.38 -> 1.12-1.20, layout 1.85 -> 1.16, PNG 2.47 -> 2.06-2.18, SVG 2.14 -> 2.04-2.12;
with the default two workers 7.65-9.08 -> 6.89-7.27 CPU-s. All 28 files are the same bytes
(the layout pass only lays out, text sizes are measured once per figure, hidden axes have
no tick locators, geometries are projected and their paths built once per process). The
figure workers then got one BLAS thread each: the kernel-density charts' small LAPACK calls
had woken OpenBLAS's threads, which spun (15 charts built in a forked worker: 1.32-1.44 ->
0.41-0.44 CPU-s, i.e. about 0.3 CPU-s per run; the same bytes).

Usage: ``python benchmarks/bench_plot.py [--quick] [--repeat 3] [--labels]``, or
``python benchmarks/bench_plot.py --maps-step [--state /tmp/maps_state.pkl] [--workers N]``.
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


def cpu_s() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def maps_step(state: Path, repeat: int, workers: int | None) -> None:
    """Time the maps step of ``agglo run`` (bundled data) on the layers of one run."""
    import dataclasses
    import pickle

    if state.is_file():
        with state.open("rb") as f:
            inputs = pickle.load(f)
    else:
        from agglo.config import RunConfig
        from agglo.pipeline import run_stages

        outputs = run_stages(RunConfig(), out_dir=Path(tempfile.mkdtemp()))
        inputs = {
            "layers": outputs.layers,
            "counties": outputs.layers.get("counties", outputs.counties),
            "index": outputs.results.get("index"),
            "regional": outputs.results.get("disparity"),
            "units": {k: m.get("units", {}) for k, m in outputs.layer_metadata.items()},
            "synthetic": outputs.synthetic,
            "plot": outputs.config.section("plot"),
        }
        with state.open("wb") as f:
            pickle.dump(inputs, f)
    import matplotlib.backends.backend_agg  # noqa: F401  (loaded before the maps step in a run)
    import scipy.stats  # noqa: F401

    from agglo.outputs.maps import PlotOptions, draw_maps

    options = PlotOptions.from_dict(inputs["plot"])
    if workers is not None:
        options = dataclasses.replace(options, workers=workers)
    out = Path(tempfile.mkdtemp())
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = cpu_s(), time.perf_counter()
        result = draw_maps(
            inputs["layers"],
            out,
            counties=inputs["counties"],
            index=inputs["index"],
            regional=inputs["regional"],
            units=inputs["units"],
            synthetic=inputs["synthetic"],
            options=options,
            force=True,
        )
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_s() - c0)
    print(f"figures={len(result.figures)} failed={result.failed} workers={options.workers}")
    print(f"maps step: CPU {', '.join(f'{c:.2f}' for c in cpus)} s; wall {min(walls):.2f} s best")
    print(f"BENCH plot_maps_step cpu_s={min(cpus):.3f} wall_s={min(walls):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="130 cities, 2 repeats (< 1 min)")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each (default 3, quick 2)")
    ap.add_argument("--labels", action="store_true", help="also label every unit (name_zh)")
    ap.add_argument("--maps-step", action="store_true", help="time the maps step of agglo run")
    ap.add_argument(
        "--state",
        type=Path,
        default=Path(tempfile.gettempdir()) / "agglo_bench_maps_state.pkl",
        help="pickle of a run's layers for --maps-step (written the first time)",
    )
    ap.add_argument("--workers", type=int, default=None, help="figure workers for --maps-step")
    args = ap.parse_args()
    repeat = args.repeat or (2 if args.quick else 3)
    if args.maps_step:
        maps_step(args.state, repeat, args.workers)
        return

    import mapclassify
    import matplotlib
    import pandas as pd
    from matplotlib.figure import Figure

    from agglo import plot
    from agglo.outputs.fonts import font_family
    from agglo.reference.boundaries import load_cities, load_counties

    gdf = load_cities() if args.quick else load_counties()
    rng = np.random.default_rng(20101115)
    gdf = gdf.assign(v=rng.gamma(2.0, 10.0, len(gdf)))
    years = pd.concat(
        [
            pd.DataFrame(
                {"adcode": gdf["adcode"], "year": y, "value": rng.gamma(2.0, 10.0, len(gdf))}
            )
            for y in (2010, 2015, 2020)
        ],
        ignore_index=True,
    )
    cats = gdf["agglomeration_id"].fillna("none")
    colours = plot.agglomeration_colours(cats)
    out = Path(tempfile.mkdtemp())
    labels = "name_zh" if args.labels else None

    def run_agglo(i: int) -> None:
        figs = {
            "choropleth": plot.choropleth(gdf, "v", scheme="fisher_jenks", k=5, labels=labels),
            "category": plot.category_map(gdf.assign(c=cats), "c", colours),
            "multiples": plot.small_multiples(gdf, years, scheme="fisher_jenks", k=5),
        }
        for name, fig in figs.items():
            plot.save_figure(fig, out / f"agglo_{name}_{i}", dpi=150, force=True)

    def run_geopandas(i: int) -> None:
        rc = {"font.family": font_family(), "svg.fonttype": "path"}
        with matplotlib.rc_context(rc):
            figs = {}
            fig = Figure(figsize=(8.0, 6.5), layout="constrained")
            ax = fig.add_subplot()
            gdf.plot(column="v", scheme="fisher_jenks", k=5, legend=True, ax=ax, cmap="YlGnBu")
            if labels:
                for p, t in zip(gdf.representative_point(), gdf[labels], strict=True):
                    ax.annotate(t, (p.x, p.y), fontsize=6, ha="center")
            figs["choropleth"] = fig
            fig = Figure(figsize=(8.0, 6.5), layout="constrained")
            gdf.assign(c=cats).plot(column="c", categorical=True, legend=True, ax=fig.add_subplot())
            figs["category"] = fig
            fig = Figure(figsize=(12.6, 4.4), layout="constrained")
            for ax, (year, part) in zip(fig.subplots(1, 3), years.groupby("year"), strict=True):
                gdf[["adcode", "geometry"]].merge(part, on="adcode").plot(
                    column="value", scheme="fisher_jenks", k=5, legend=True, ax=ax
                )
                ax.set_title(str(year))
            figs["multiples"] = fig
            for name, fig in figs.items():
                for fmt in ("png", "svg"):
                    fig.savefig(out / f"gpd_{name}_{i}.{fmt}", dpi=150, bbox_inches="tight")

    run_agglo(-1)  # warm-up: font registration, imports
    run_geopandas(-1)  # warm-up: mapclassify (its numba kernel compiles at import)
    t_agglo, t_gpd, c_agglo, c_gpd = [], [], [], []
    for i in range(repeat):
        for fn, wall, cpu in ((run_agglo, t_agglo, c_agglo), (run_geopandas, t_gpd, c_gpd)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(i)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    a, g = min(t_agglo), min(t_gpd)

    fig = plot.choropleth(gdf, "v", scheme="fisher_jenks", k=5)
    uppers = [
        float(t.get_text().split("–")[1].split()[0].replace(",", ""))
        for t in fig.axes[0].get_legend().get_texts()
    ]
    ref = mapclassify.FisherJenks(gdf["v"].to_numpy(), k=5).bins
    err = float(np.max(np.abs(np.array(uppers) - ref)))
    print(f"units={len(gdf)} maps=3 (PNG+SVG each) repeat={repeat} labels={bool(labels)}")
    print(f"agglo: best {a:.2f} s wall, {min(c_agglo):.2f} s CPU")
    print(f"geopandas GeoDataFrame.plot: best {g:.2f} s wall, {min(c_gpd):.2f} s CPU")
    print(f"max |legend upper bound - mapclassify bin| = {err:.3g} (rounding of the labels)")
    print(f"peak RSS {peak_mb():.0f} MB")
    print(f"BENCH plot agglo_s={a:.3f} geopandas_s={g:.3f} speedup_vs_geopandas={g / a:.2f}")


if __name__ == "__main__":
    main()
