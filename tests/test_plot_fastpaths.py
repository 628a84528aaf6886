"""The fast paths of drawing and saving the maps, each against its reference: the same bytes."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from test_plot import toy_cities, toy_context

from agglo import plot


def _maps_files(ctx, options) -> dict[str, bytes]:
    from agglo.outputs.run import draw_maps

    draw_maps(ctx, options)
    assert ctx.results["maps"]["failed"] == []
    return {p.name: p.read_bytes() for p in sorted(ctx.figures)}


@pytest.mark.parametrize("workers", [1, 2])
def test_maps_stage_files_equal_those_of_the_reference_paths(tmp_path, monkeypatch, workers):
    # every figure of the maps stage, PNG and SVG: drawn with the fast paths (polygons and
    # outlines as collections; shared projections, paths, outlines and text sizes; a
    # layout-only pass; no ticks on hidden axes) and with
    # the reference of each, byte for byte; with workers=2 the figures are drawn by forked
    # processes, each with its own caches
    from agglo.outputs import maps
    from agglo.outputs.maps import PlotOptions

    options = PlotOptions(workers=workers)
    if workers > 1 and maps._n_workers(options, 2) < 2:
        pytest.skip("no fork start method on this platform")
    fast = _maps_files(toy_context(tmp_path / "fast"), options)
    for flag in ("_FAST_POLYGONS", "_NO_HIDDEN_TICKS", "_LAYOUT_ONLY", "_SHARE_TEXT_METRICS"):
        monkeypatch.setattr(plot, flag, False)
    monkeypatch.setattr(plot, "shared_geometries", contextlib.nullcontext)
    reference = _maps_files(toy_context(tmp_path / "reference"), options)
    assert len(fast) == 16 and list(fast) == list(reference)  # 8 figures, PNG and SVG
    for name, data in fast.items():
        assert data == reference[name], name


def test_each_fast_path_alone_keeps_the_bytes(tmp_path, monkeypatch):
    # each fast path switched off on its own (the others on): a choropleth with labels, halos,
    # context units, outlines and a caption, and small multiples, saved as PNG and SVG
    g = toy_cities().assign(v=np.arange(6.0))
    members, rest = g[g["agglomeration_id"].notna()], g[g["agglomeration_id"].isna()]
    first = members[["adcode"]].assign(year=2010, value=members["v"])
    values = pd.concat([first, first.assign(year=2020, value=first["value"] * 2)])

    def saved(name: str) -> list[bytes]:
        with plot.shared_geometries():
            figs = [
                plot.choropleth(
                    members, "v", k=3, labels="name_zh", others=rest, outlines=members,
                    caption="城市 caption " * 12, synthetic=True,
                ),
                plot.small_multiples(members, values, k=2, others=rest, title="年份"),
            ]  # fmt: skip
            return [
                p.read_bytes()
                for i, fig in enumerate(figs)
                for p in plot.save_figure(fig, tmp_path / f"{name}_{i}", dpi=70)
            ]

    fast = saved("fast")
    for flag in ("_FAST_POLYGONS", "_NO_HIDDEN_TICKS", "_LAYOUT_ONLY", "_SHARE_TEXT_METRICS"):
        with monkeypatch.context() as m:
            m.setattr(plot, flag, False)
            assert saved(flag) == fast, flag
    with monkeypatch.context() as m:
        m.setattr(plot, "shared_geometries", contextlib.nullcontext)
        assert saved("unshared") == fast


def test_shared_projection_equals_to_crs():
    # _to_crs inside shared_geometries against GeoDataFrame.to_crs: the same coordinates,
    # index, columns and CRS; a geometry seen again is the same projected object
    g = toy_cities().set_index("adcode")
    g.loc[g.index[1], "geometry"] = None
    crs = plot.map_crs(g)
    with plot.shared_geometries():
        ours = plot._to_crs(g, crs)
        again = plot._to_crs(g.iloc[::-1], crs)
        series = plot._to_crs(g.geometry, crs)
    ref = g.to_crs(crs)
    assert list(ours.columns) == list(ref.columns) and ours.index.equals(ref.index)
    assert ours.crs == ref.crs and ours.geometry.name == ref.geometry.name
    assert ours.drop(columns="geometry").equals(ref.drop(columns="geometry"))
    ours_xy, ref_xy = shapely.get_coordinates(ours.geometry), shapely.get_coordinates(ref.geometry)
    assert (ours_xy == ref_xy).all()  # exactly: projections are pointwise
    assert ours.geometry.isna().tolist() == ref.geometry.isna().tolist()
    assert again.geometry.iloc[0] is ours.geometry.iloc[-1]
    assert series.equals(ours.geometry)
    assert plot._to_crs(g, crs).geometry.iloc[0] is not ours.geometry.iloc[0]  # context ended


def test_shared_text_sizes_are_the_renderers_own():
    # the memo of _SharedMetricsCanvasAgg against the renderer's own measurement, for CJK,
    # Latin, several sizes and DPIs; a second renderer (another DPI) does not take them
    from matplotlib.font_manager import FontProperties

    memo: dict = {}
    texts = ["成都市", "Made from SYNTHETIC data", "0", "200 km", "不是 member 非成员"]
    with plot._style():
        for dpi in (72, 150):
            fig = Figure(dpi=dpi)
            ours = plot._SharedMetricsCanvasAgg(fig, memo).get_renderer()
            theirs = FigureCanvasAgg(Figure(dpi=dpi)).get_renderer()
            for size in (6, 7.5, 12):
                prop = FontProperties(family=plot.font_family(), size=size)
                for s in texts:
                    expected = theirs.get_text_width_height_descent(s, prop, False)
                    assert ours.get_text_width_height_descent(s, prop, False) == expected
                    assert ours.get_text_width_height_descent(s, prop, False) == expected
    assert len(memo) == 2 * 3 * len(texts)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_figure_workers_use_one_blas_thread():
    # the workers' initializer: one BLAS thread in the worker, this process left as it was
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from agglo.outputs import maps

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    before = _blas_threads()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(1, mp_context=context, initializer=maps._one_blas_thread) as pool:
        inside = pool.submit(_blas_threads).result()
    assert inside and set(inside) == {1}
    assert _blas_threads() == before
