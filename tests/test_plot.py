"""Maps and charts: CJK text, classes, legend, scale bar, north arrow, captions, maps stage."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import mapclassify
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib import font_manager
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from pyproj import Geod, Transformer

from agglo import plot
from agglo.errors import AggloInputError, CRSError, OutputExistsError
from agglo.outputs.styles import LISA_COLOURS


# --------------------------------------------------------------------------- toy data
def toy_cities() -> gpd.GeoDataFrame:
    """2×3 grid of 0.5° squares near Chengdu; two agglomerations and two non-members."""
    rows = []
    for i in range(6):
        x, y = 103.0 + 0.5 * (i % 3), 30.0 + 0.5 * (i // 3)
        rows.append(
            {
                "adcode": f"51{i:04d}",
                "name_zh": ["成都市", "德阳市", "眉山市", "资阳市", "重庆市", "乐山市"][i],
                "agglomeration_id": ["cy", "cy", "cy", "qz", "qz", None][i],
                "geometry": shapely.box(x, y, x + 0.5, y + 0.5),
            }
        )
    return gpd.GeoDataFrame(rows, crs=4326)


def toy_context(tmp_path: Path, *, full: bool = True, synthetic: bool = True):
    """A hand-built RunOutputs with what the earlier stages would leave (toy values)."""
    from agglo.config import RunConfig
    from agglo.pipeline import RunOutputs

    ctx = RunOutputs(config=RunConfig(), out_dir=tmp_path / "out", force=False)
    if synthetic:
        ctx.synthetic.add("demo_panel_synthetic.csv")
    cities = toy_cities()
    ctx.cities = cities
    ctx.layers["cities"] = cities
    if not full:
        return ctx
    years = [2010, 2020]
    members = cities[cities["agglomeration_id"].notna()]
    scores = pd.DataFrame(
        [
            (a, g, y, 0.1 * k, (-1) ** k * 0.1 * (k + 1) + 0.01 * (y - 2010))
            for k, (a, g) in enumerate(
                zip(members["adcode"], members["agglomeration_id"], strict=True)
            )
            for y in years
        ],
        columns=["adcode", "agglomeration_id", "year", "dispersion_gap", "lag_score"],
    )
    comp = pd.DataFrame(
        {
            "agglomeration_id": ["cy", "cy", "qz", "qz"],
            "year": [2010, 2020, 2010, 2020],
            "score": [12.0, 15.5, 8.0, 9.25],
            "score_0_100": [40.0, 100.0, 0.0, 16.7],
            "rank": [1, 1, 2, 2],
        }
    )
    dims = pd.DataFrame(
        [
            (g, y, d, 5.0 + j, 20.0 * j)
            for g in ("cy", "qz")
            for y in years
            for j, d in enumerate(
                ["development", "innovation", "infrastructure", "ecology", "public_services"]
            )
        ],
        columns=["agglomeration_id", "year", "dimension", "score", "score_0_100"],
    )
    ctx.results["index"] = SimpleNamespace(composite=comp, dimensions=dims, city_scores=scores)
    latest = scores[scores["year"] == 2020].set_index("adcode")
    c = cities.copy()
    c["lag_score"] = c["adcode"].map(latest["lag_score"])
    c["lisa_cluster"] = ["HH", "LL", "ns", "HL", "LH", None]
    ctx.layers["cities"] = c
    ctx.layer_metadata["cities"] = {"units": {"lag_score": "unitless, (x-μ)/μ"}}
    agg = members.dissolve("agglomeration_id").reset_index()[["agglomeration_id", "geometry"]]
    agg["name_zh"] = ["成渝城市群", "黔中城市群"]
    agg["score_2010"] = [12.0, 8.0]
    agg["score_2020"] = [15.5, 9.25]
    ctx.layers["agglomerations"] = agg
    cp = members[["adcode", "name_zh", "geometry"]].copy()
    cp["coreness_2020"] = [0.9, 0.3, 0.2, 0.6, 0.1]
    cp["core_2020"] = [1, 0, 0, 1, 0]
    ctx.layers["core_periphery"] = cp
    seat = shapely.Point(103.25, 30.25)
    ctx.layers["metro_areas"] = gpd.GeoDataFrame(
        {"name_zh": ["成都都市圈"], "core_adcode": ["510000"]},
        geometry=[seat.buffer(0.6)],
        crs=4326,
    )
    ctx.layers["isochrones"] = gpd.GeoDataFrame(
        {"minutes": [60]}, geometry=[seat.buffer(0.5)], crs=4326
    )
    ctx.counties = cities.rename(columns={"adcode": "county_adcode"})
    ctx.tables["index_composite"] = comp
    ctx.tables["moran_global"] = pd.DataFrame(
        {"year": years, "I": [0.31, 0.12], "p_sim": [0.01, 0.2]}
    )
    ctx.provenance["panel"] = "demo_panel_synthetic.csv (synthetic)"
    return ctx


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


# --------------------------------------------------------------------------- CJK font
def _font_covers(found, text: str) -> bool:
    """Independent glyph check with fontTools (not agglo.outputs.fonts.font_has_glyphs)."""
    from fontTools.ttLib import TTCollection, TTFont

    path = str(found)
    if path.lower().endswith((".ttc", ".otc")):
        font = TTCollection(path, lazy=True).fonts[getattr(found, "face_index", 0)]
    else:
        font = TTFont(path, lazy=True)
    cmap = font.getBestCmap()
    return all(ord(ch) in cmap for ch in text)


def test_chinese_labels_use_a_font_with_the_glyphs(tmp_path):
    fig = plot.choropleth(toy_cities().assign(v=[1.0, 2, 3, 4, 5, 6]), "v", labels="name_zh", k=2)
    labels = [t for t in fig.axes[0].texts if t.get_gid() == "label"]
    assert {"成都市", "德阳市"} <= {t.get_text() for t in labels}
    found = font_manager.findfont(labels[0].get_fontproperties(), fallback_to_default=False)
    assert _font_covers(found, "成都市德阳市眉山市")
    # filterwarnings=error: a missing glyph ("Glyph ... missing from font") would raise here
    fig.savefig(tmp_path / "cjk.png")
    fig.savefig(tmp_path / "cjk.svg")


def test_default_font_lacks_cjk_so_the_check_can_fail():
    found = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    assert not _font_covers(found, "成都市")


# --------------------------------------------------------------------------- choropleth
def test_choropleth_classes_match_mapclassify_and_colour_the_polygons():
    values = [1.0, 2.0, 3.0, 10.0, 11.0, 30.0]
    g = toy_cities().assign(v=values)
    fig = plot.choropleth(g, "v", scheme="quantiles", k=3, unit="km")
    q = mapclassify.Quantiles(np.array(values), k=3)  # reference library, same input
    texts = _legend_texts(fig)
    assert len(texts) == 3  # k classes, no outline entry, no missing values
    uppers = [float(t.split("–")[1].split("km")[0]) for t in texts[:3]]
    np.testing.assert_allclose(uppers, np.round(q.bins, 1), atol=0.05)
    counts = [int(t.split("(")[1].rstrip(")")) for t in texts[:3]]
    assert counts == q.counts.tolist()


def test_choropleth_colours_follow_classes():
    g = toy_cities().assign(v=[1.0, 1.0, 1.0, 9.0, 9.0, 9.0])
    fig = plot.choropleth(g, "v", scheme="equal_interval", k=2, scale_bar=False)
    ax = fig.axes[0]
    handles = ax.get_legend().legend_handles
    low, high = handles[0].get_facecolor(), handles[1].get_facecolor()
    polys = [c for c in ax.collections if len(c.get_paths())]
    colours = [tuple(c.get_facecolor()[0]) for c in polys]
    assert colours == [tuple(low), tuple(high)]  # one collection per class, in class order
    assert len(polys[0].get_paths()) == 3 and len(polys[1].get_paths()) == 3


def test_missing_values_are_a_separate_no_data_class():
    g = toy_cities().assign(v=[1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    texts = _legend_texts(plot.choropleth(g, "v", k=2))
    assert texts[-1] == "no data  (1)"


def test_legend_has_outline_entry_and_title_with_units():
    g = toy_cities().assign(v=np.arange(6.0))
    agg = g[g["agglomeration_id"].notna()].dissolve("agglomeration_id")
    fig = plot.choropleth(g, "v", k=2, outlines=agg, legend_title="density (km/km²)")
    leg = fig.axes[0].get_legend()
    assert leg.get_title().get_text() == "density (km/km²)"
    assert _legend_texts(fig)[-1] == "agglomeration 城市群"


def test_scale_bar_length_is_true_on_the_ground():
    g = toy_cities().assign(v=np.arange(6.0))
    fig = plot.choropleth(g, "v", k=2)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == "scale_bar"]
    assert len(bars) == 2
    x0 = min(b.get_x() for b in bars)
    x1 = max(b.get_x() + b.get_width() for b in bars)
    y = bars[0].get_y()
    label = [t.get_text() for t in ax.texts if t.get_gid() == "scale_bar"][-1]
    km = float(label.split()[0])
    crs = plot.map_crs(g)
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform([x0, x1], [y, y])
    _, _, metres = Geod(ellps="WGS84").inv(lon[0], lat[0], lon[1], lat[1])
    assert metres / 1000 == pytest.approx(km, rel=0.01)  # Albers fitted to the extent


def test_north_arrow_points_up():
    fig = plot.choropleth(toy_cities().assign(v=np.arange(6.0)), "v", k=2)
    arrows = [t for t in fig.axes[0].texts if t.get_gid() == "north_arrow"]
    assert len(arrows) == 1 and arrows[0].get_text() == "N"
    (hx, hy), (tx, ty) = arrows[0].xy, arrows[0].xyann
    assert hx == tx and hy > ty  # head above the tail: north is up


def test_caption_says_synthetic_only_when_it_is():
    g = toy_cities().assign(v=np.arange(6.0))
    cap = [t for t in plot.choropleth(g, "v", k=2, synthetic={"x_synthetic.csv"}).texts]
    assert "SYNTHETIC" in cap[0].get_text() and "x_synthetic.csv" in cap[0].get_text()
    real = [t.get_text() for t in plot.choropleth(g, "v", k=2).texts]
    assert not any("SYNTHETIC" in t for t in real)


def test_input_not_modified():
    g = toy_cities().assign(v=np.arange(6.0))
    before = g.copy()
    plot.choropleth(g, "v", k=2, labels="name_zh")
    pd.testing.assert_frame_equal(g, before)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"column": "nope"}, AggloInputError, "column 'nope' is not in the layer"),
        ({"column": "v", "scheme": "jenks"}, AggloInputError, "scheme must be one of"),
        ({"column": "v", "k": 0}, AggloInputError, "k must be a positive integer"),
    ],
)
def test_choropleth_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot.choropleth(toy_cities().assign(v=np.arange(6.0)), **kwargs)


def test_map_without_crs_is_refused():
    g = toy_cities().assign(v=np.arange(6.0)).set_crs(None, allow_override=True)
    with pytest.raises(CRSError, match="has no CRS"):
        plot.choropleth(g, "v")


# --------------------------------------------------------------------------- other maps
def _rgb(colour) -> tuple[float, float, float]:
    return tuple(float(v) for v in to_rgba(colour)[:3])


def test_lisa_map_uses_conventional_colours():
    g = toy_cities().assign(lisa_cluster=["HH", "LL", "LH", "HL", "ns", None])
    fig = plot.lisa_map(g)
    ax = fig.axes[0]
    polys = [c for c in ax.collections if len(c.get_paths())]
    drawn = [_rgb(c.get_facecolor()[0]) for c in polys]
    hh, ll, lh, hl, ns, other = drawn
    assert hh[0] > 0.8 and hh[1] < 0.3 and hh[2] < 0.3  # red
    assert ll[2] > 0.6 and ll[0] < 0.3  # blue
    assert lh[2] > 0.8 and lh[0] > ll[0]  # light blue: blue, lighter than LL
    assert hl[0] > 0.9 and hl[1] > hh[1]  # pink: red, lighter than HH
    assert max(ns) - min(ns) < 0.02 and 0.6 < ns[0] < 0.95  # grey
    assert other == (1.0, 1.0, 1.0)  # missing: white
    assert hh == _rgb(LISA_COLOURS["HH"])
    assert _legend_texts(fig)[:2] == ["High-High 高-高  (1)", "Low-Low 低-低  (1)"]


def test_coreness_map_outlines_core_cities():
    g = toy_cities().assign(
        coreness_2020=[0.9, 0.1, 0.2, 0.8, 0.3, 0.0], core_2020=[1, 0, 0, 1, 0, 0]
    )
    fig = plot.coreness_map(g, "coreness_2020", core_column="core_2020", k=3)
    assert _legend_texts(fig)[-1] == "core city 核心城市"
    outline = [c for c in fig.axes[0].collections if c.get_linewidth()[0] == pytest.approx(1.2)]
    assert len(outline[0].get_paths()) == 2  # two core cities outlined


def test_catchment_map_draws_areas_semi_transparent_over_counties():
    counties = toy_cities()
    metro = gpd.GeoDataFrame(
        {"name_zh": ["成都都市圈"]}, geometry=[shapely.Point(103.3, 30.3).buffer(0.4)], crs=4326
    )
    fig = plot.catchment_map(metro, counties=counties, opacity=0.4)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts if t.get_gid() == "label"] == ["成都都市圈"]
    alphas = [c.get_alpha() for c in ax.collections]
    assert 0.4 in alphas
    assert _legend_texts(fig) == ["county 县级单元", "成都都市圈"]


def test_small_multiples_pool_classes_over_years():
    g = toy_cities()
    v = pd.DataFrame(
        {
            "adcode": list(g["adcode"]) * 2,
            "year": [2010] * 6 + [2020] * 6,
            "value": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0, 9.0, 1.0],
        }
    )
    fig = plot.small_multiples(g, v, k=2, scheme="equal_interval")
    maps = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in maps] == ["2010", "2020"]
    first = [c for c in maps[0].collections if len(c.get_paths())]
    second = [c for c in maps[1].collections if len(c.get_paths())]
    # 2010: all six in the low class; 2020: one low (same colour as 2010), five high
    assert len(first) == 1 and len(first[0].get_paths()) == 6
    assert tuple(second[0].get_facecolor()[0]) == tuple(first[0].get_facecolor()[0])
    assert len(second[1].get_paths()) == 5


def test_small_multiples_of_categories():
    g = toy_cities()
    v = pd.DataFrame(
        {
            "adcode": ["510000", "510001", "510000"],
            "year": [2010, 2010, 2020],
            "cluster": ["HH", "ns", "LL"],
        }
    )
    fig = plot.small_multiples(g, v, value="cluster", colours=LISA_COLOURS)
    maps = [a for a in fig.axes if a.get_title()]
    drawn = [
        [_rgb(c.get_facecolor()[0]) for c in a.collections if len(c.get_paths())] for a in maps
    ]
    white = (1.0, 1.0, 1.0)
    assert drawn[0] == [_rgb(LISA_COLOURS["HH"]), _rgb(LISA_COLOURS["ns"]), white]
    assert drawn[1] == [_rgb(LISA_COLOURS["LL"]), white]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(LISA_COLOURS)


def test_radar_chart_plots_the_scores():
    d = toy_context(Path("/nonexistent"), synthetic=False).results["index"].dimensions
    fig = plot.radar_chart(d, year=2020)
    lines = fig.axes[0].lines
    assert len(lines) == 2
    radii = lines[0].get_ydata()
    np.testing.assert_allclose(radii, [0, 20, 40, 60, 80, 0])  # closed polygon
    labels = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "dimension_label"]
    assert labels[0] == "区域发展\nregional development"


def _ring_geometry(ax):
    """Centre and outer-ring radius of a polar axes in pixels (from its transforms)."""
    centre = ax.transData.transform((0.0, 0.0))
    edge = ax.transData.transform((0.3, ax.get_ylim()[1]))
    return centre, float(np.hypot(*(edge - centre)))


def _nearest_distance(box, centre) -> float:
    """Distance from ``centre`` to the nearest point of an axis-aligned box."""
    dx = max(box.x0 - centre[0], 0.0, centre[0] - box.x1)
    dy = max(box.y0 - centre[1], 0.0, centre[1] - box.y1)
    return float(np.hypot(dx, dy))


@pytest.mark.parametrize("n_dims", [5, 12])
def test_radar_labels_sit_outside_the_ring_without_collisions(n_dims):
    names = (
        ["development", "innovation", "infrastructure", "ecology", "public_services"]
        if n_dims == 5
        else [f"a fairly long dimension name {i}" for i in range(n_dims)]
    )
    d = pd.DataFrame(
        [(g, 2020, n, 10.0 + 7 * i) for g in ("cy", "qz") for i, n in enumerate(names)],
        columns=["agglomeration_id", "year", "dimension", "score_0_100"],
    )
    fig = plot.radar_chart(d, title="a title that is long enough to reach over the chart")
    fig.draw_without_rendering()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() == "dimension_label"]
    assert len(labels) == n_dims
    centre, ring = _ring_geometry(ax)
    boxes = [t.get_window_extent() for t in labels]
    # every label box lies wholly outside the outer ring (not only its anchor)
    assert min(_nearest_distance(b, centre) for b in boxes) > ring
    assert all(t.get_position()[1] > ax.get_ylim()[1] for t in labels)
    # no two labels overlap, and none overlaps the legend or the title
    pairs = [(i, j) for i in range(n_dims) for j in range(i + 1, n_dims)]
    assert not [p for p in pairs if boxes[p[0]].overlaps(boxes[p[1]])]
    legend = fig.legends[0].get_window_extent()
    title = fig._suptitle.get_window_extent()
    assert not any(b.overlaps(legend) or b.overlaps(title) for b in boxes)
    # the first dimension is at the top, the next clockwise (to its right)
    first, second = (b.x0 + b.width / 2 for b in boxes[:2])
    assert abs(first - centre[0]) < 2 and second > centre[0]


def test_score_bars_heights_are_the_scores():
    comp = toy_context(Path("/nonexistent")).results["index"].composite
    fig = plot.score_bars(comp, synthetic=True)
    heights = sorted(float(p.get_height()) for p in fig.axes[0].patches)
    assert heights == sorted(comp["score"].tolist())
    assert "SYNTHETIC" in fig.texts[0].get_text()


@pytest.mark.parametrize("kind", ["choropleth", "multiples", "categories", "catchment"])
def test_polygons_drawn_as_geodataframe_plot_draws_them(tmp_path, monkeypatch, kind):
    # the path collections of _plot_polygons (and the outlines' lines of _plot_boundaries)
    # against GeoDataFrame.plot (the reference): the same PNG pixels and SVG bytes, with
    # holes, multi-part units, no-data and context units
    g = toy_cities().assign(v=[1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    holed = shapely.box(103.0, 30.0, 103.5, 30.5).difference(shapely.box(103.2, 30.2, 103.3, 30.3))
    two = shapely.MultiPolygon(
        [shapely.box(103.5, 30.0, 103.7, 30.5), shapely.box(103.8, 30.0, 104.0, 30.5)]
    )
    g.loc[0, "geometry"], g.loc[1, "geometry"] = holed, two
    members, rest = g[g["agglomeration_id"].notna()], g[g["agglomeration_id"].isna()]
    values = pd.DataFrame(
        {
            "adcode": list(g["adcode"]) * 2,
            "year": [2010] * 6 + [2020] * 6,
            "value": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0] * 2,
            "cluster": ["HH", "LL", "ns", "HL", "LH", None] * 2,
        }
    )

    def draw():
        if kind == "choropleth":
            return plot.choropleth(
                members, "v", k=2, others=rest, labels="name_zh", outlines=members
            )
        if kind == "multiples":
            return plot.small_multiples(members, values, k=2, others=rest)
        if kind == "categories":
            return plot.small_multiples(
                members, values, value="cluster", colours=LISA_COLOURS, others=rest
            )
        metro = gpd.GeoDataFrame(
            {"name_zh": ["成都"]}, geometry=[shapely.box(103.2, 30.1, 103.9, 30.8)], crs=4326
        )
        return plot.catchment_map(metro, counties=g)

    def saved(name):
        png, svg = plot.save_figure(draw(), tmp_path / name, dpi=60)
        return png.read_bytes(), svg.read_bytes()

    fast = saved("fast")
    monkeypatch.setattr(plot, "_FAST_POLYGONS", False)
    assert saved("reference") == fast


# --------------------------------------------------------------------------- saving
def test_save_figure_writes_png_and_svg_atomically(tmp_path):
    import xml.etree.ElementTree as ET

    from PIL import Image

    fig = plot.score_bars(toy_context(tmp_path).results["index"].composite)
    paths = plot.save_figure(fig, tmp_path / "bars.png", caption="scores 得分")
    assert [p.name for p in paths] == ["bars.png", "bars.svg"]
    with Image.open(paths[0]) as im:
        assert im.text["Description"] == "scores 得分"
        px = np.asarray(im.convert("L"))
    assert px.std() > 5  # not blank
    assert ET.parse(paths[1]).getroot().tag.endswith("svg")
    with pytest.raises(OutputExistsError, match="already exists"):
        plot.save_figure(fig, tmp_path / "bars")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_saved_figures_are_reproducible_byte_for_byte(tmp_path):
    # two drawings of the same figure, saved twice: identical PNG and SVG bytes (no time stamp,
    # no random clip-path ids); the check can fail: matplotlib's own SVG differs between saves
    g = toy_cities().assign(v=np.arange(6.0))

    def save(name: str) -> list[bytes]:
        fig = plot.choropleth(g, "v", k=3, labels="name_zh", caption="城市 caption")
        return [p.read_bytes() for p in plot.save_figure(fig, tmp_path / name, dpi=60)]

    assert save("a") == save("b")
    with plot._style():
        for name in ("c", "d"):
            plot.choropleth(g, "v", k=3).savefig(tmp_path / f"{name}.svg")
    assert (tmp_path / "c.svg").read_bytes() != (tmp_path / "d.svg").read_bytes()


def test_png_compression_keeps_the_pixels_of_matplotlibs_default(tmp_path):
    # the faster zlib level: the same image as matplotlib's default PNG of the same layout
    from PIL import Image

    g = toy_cities().assign(v=np.arange(6.0))
    fig = plot.choropleth(g, "v", k=3, labels="name_zh")
    png, _svg = plot.save_figure(fig, tmp_path / "ours", dpi=80)
    with plot._style():  # the layout is fixed now; the same bounding box, matplotlib's defaults
        fig.savefig(tmp_path / "ref.png", dpi=80, bbox_inches=plot._fix_layout(fig, 80))
    with Image.open(png) as ours, Image.open(tmp_path / "ref.png") as ref:
        assert (np.asarray(ours) == np.asarray(ref)).all()
    assert png.read_bytes() != (tmp_path / "ref.png").read_bytes()  # another zlib level


def test_save_figure_matches_savefig_tight(tmp_path):
    # one layout pass for both formats: the same picture as matplotlib's bbox_inches="tight"
    from PIL import Image

    g = toy_cities().assign(v=np.arange(6.0))
    caption = "Lag score of the cities, a caption long enough to be wrapped. " * 6
    ref = plot.choropleth(g, "v", k=3, labels="name_zh", caption=caption)
    with plot._style():
        ref.savefig(tmp_path / "ref.png", dpi=100, bbox_inches="tight")
    fig = plot.choropleth(g, "v", k=3, labels="name_zh", caption=caption)
    png, _svg = plot.save_figure(fig, tmp_path / "ours", dpi=100)
    with Image.open(tmp_path / "ref.png") as a, Image.open(png) as b:
        assert abs(a.size[0] - b.size[0]) <= 3 and abs(a.size[1] - b.size[1]) <= 3
        diff = np.abs(
            np.asarray(a.convert("L").resize(b.size), float) - np.asarray(b.convert("L"), float)
        )
    assert np.mean(diff > 64) < 0.03  # the same map; text may sit a pixel or two apart
    # the caption was wrapped to the figure's width, every line inside it
    (cap,) = [t for t in fig.texts if t.get_gid() == "caption"]
    assert cap.get_text().count("\n") >= 2
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else None
    if renderer is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
    for line in cap.get_text().split("\n"):
        t = fig.text(0.01, 0, line, fontsize=cap.get_fontsize())
        assert t.get_window_extent(renderer).x1 <= fig.bbox.width  # inside the figure
        t.remove()


def test_layout_pass_without_rendering_equals_a_rendered_one(tmp_path, monkeypatch):
    # _fix_layout only runs the layout engine and measures; a fully rasterised layout pass
    # (the reference) must give the same bounding box and the same pixels
    import contextlib

    from matplotlib.backends.backend_agg import RendererAgg
    from PIL import Image

    g = toy_cities().assign(v=np.arange(6.0))
    caption = "Lag score of the cities 城市滞后得分, wrapped. " * 5

    def saved(name: str):
        fig = plot.choropleth(g, "v", k=3, labels="name_zh", caption=caption)
        png, _svg = plot.save_figure(fig, tmp_path / name, dpi=100)
        with Image.open(png) as im:
            return np.asarray(im).copy(), fig.get_size_inches()

    fast, fast_size = saved("fast")
    monkeypatch.setattr(plot, "_LAYOUT_ONLY", False)
    monkeypatch.setattr(RendererAgg, "_draw_disabled", lambda self: contextlib.nullcontext())
    full, full_size = saved("full")
    assert fast.shape == full.shape and (fast == full).all()
    assert (fast_size == full_size).all()


# --------------------------------------------------------------------------- maps stage
def test_maps_stage_draws_every_figure_and_styles_every_layer(tmp_path):
    from agglo.outputs.run import draw_maps

    ctx = toy_context(tmp_path)
    draw_maps(ctx)
    stems = sorted({p.stem for p in ctx.figures})
    assert stems == sorted(
        [
            "membership",
            "lag_score",
            "lag_score_by_year",
            "composite_scores",
            "dimensions_radar",
            "lisa_clusters",
            "coreness",
            "metro_areas",
        ]
    )
    assert all(p.is_file() and p.parent == ctx.out_dir / "maps" for p in ctx.figures)
    assert {p.suffix for p in ctx.figures} == {".png", ".svg"}
    assert set(ctx.styles) == {
        "cities",
        "agglomerations",
        "core_periphery",
        "metro_areas",
        "isochrones",
    }
    caps = ctx.results["maps"]["captions"]
    assert "SYNTHETIC" in caps[str(ctx.out_dir / "maps" / "lag_score.png")]
    assert "SYNTHETIC" not in caps[str(ctx.out_dir / "maps" / "membership.png")]  # real data only
    assert ctx.results["maps"]["failed"] == []
    assert ctx.summary[-1].startswith("[SYNTHETIC]")


def test_figures_drawn_in_worker_processes_are_the_same_files(tmp_path, monkeypatch):
    from agglo.outputs import maps
    from agglo.outputs.maps import PlotOptions
    from agglo.outputs.run import draw_maps

    if maps._n_workers(PlotOptions(workers=2), 2) < 2:
        pytest.skip("no fork start method on this platform")
    here, forked = toy_context(tmp_path / "a"), toy_context(tmp_path / "b")
    draw_maps(here, PlotOptions(workers=1, formats=("png",)))
    # a figure that raises inside a worker is reported as failed; the others are written
    real = maps.plot.score_bars
    monkeypatch.setattr(maps.plot, "score_bars", lambda *a, **k: 1 / 0)
    draw_maps(forked, PlotOptions(workers=2, formats=("png",)))
    monkeypatch.setattr(maps.plot, "score_bars", real)
    assert forked.results["maps"]["failed"] == ["composite_scores"]
    names = sorted(p.name for p in here.figures if p.stem != "composite_scores")
    assert sorted(p.name for p in forked.figures) == names
    for name in names:  # byte for byte: the same drawing, only elsewhere
        assert (here.out_dir / "maps" / name).read_bytes() == (
            forked.out_dir / "maps" / name
        ).read_bytes()
    assert not [p for p in (forked.out_dir / "maps").iterdir() if p.name.startswith(".")]


def _maps_of(ctx, **kwargs):
    from agglo.outputs import maps

    return maps.draw_maps(
        ctx.layers,
        ctx.out_dir / "maps",
        counties=ctx.layers.get("counties", ctx.counties),
        index=ctx.results.get("index"),
        synthetic=ctx.synthetic,
        options=maps.PlotOptions(workers=1),
        **kwargs,
    )


def _spy_figure_jobs(monkeypatch, maps) -> list[str]:
    """The stems of the figures the maps step draws itself (filled as it draws them)."""
    drawn: list[str] = []
    real = maps._run_jobs
    monkeypatch.setattr(
        maps, "_run_jobs", lambda jobs, *a: drawn.extend(j[0].stem for j in jobs) or real(jobs, *a)
    )
    return drawn


def test_figures_drawn_early_are_taken_as_they_are(tmp_path, monkeypatch):
    # figures drawn before the maps step (as after the index stage) are not drawn again, and
    # the run's files are byte for byte those of drawing everything in the maps step
    from agglo.outputs import maps

    whole, parts = toy_context(tmp_path / "a"), toy_context(tmp_path / "b")
    reference = _maps_of(whole)
    so_far = {k: parts.layers[k] for k in ("cities", "agglomerations") if k in parts.layers}
    early = maps.draw_figures(
        so_far,
        parts.out_dir / "maps",
        index=parts.results["index"],
        synthetic=parts.synthetic,
        options=maps.PlotOptions(workers=1),
    )
    assert {"membership", "lag_score", "composite_scores"} <= set(early)
    assert "coreness" not in early and "metro_areas" not in early  # their layers come later
    drawn_late = _spy_figure_jobs(monkeypatch, maps)
    result = _maps_of(parts, drawn=early)
    assert not set(drawn_late) & set(early)
    assert {"coreness", "metro_areas"} <= set(drawn_late)
    assert [p.name for p in result.figures] == [p.name for p in reference.figures]
    assert result.captions == {
        k.replace(str(whole.out_dir), str(parts.out_dir)): v for k, v in reference.captions.items()
    }
    for p in reference.figures:
        assert p.read_bytes() == (parts.out_dir / "maps" / p.name).read_bytes(), p.name


def test_figures_drawn_early_with_another_caption_are_drawn_again(tmp_path, monkeypatch):
    from agglo.outputs import maps

    ctx = toy_context(tmp_path)
    early = maps.draw_figures(  # before the run knew its synthetic inputs
        {"cities": ctx.layers["cities"]},
        ctx.out_dir / "maps",
        index=ctx.results["index"],
        options=maps.PlotOptions(workers=1),
    )
    failed = maps.DrawnFigure("x", early["composite_scores"].paths, "ZeroDivisionError: boom")
    early["composite_scores"] = failed
    drawn_late = _spy_figure_jobs(monkeypatch, maps)
    result = _maps_of(ctx, drawn=early)
    assert "membership" not in drawn_late  # real data only: the same caption
    assert {"lag_score", "composite_scores"} <= set(drawn_late)  # synthetic notice; failed
    cap = result.captions[str(ctx.out_dir / "maps" / "lag_score.png")]
    assert "SYNTHETIC" in cap and result.failed == []


def test_maps_stage_skips_missing_parts(tmp_path):
    from agglo.outputs.run import draw_maps

    ctx = toy_context(tmp_path, full=False, synthetic=False)
    draw_maps(ctx)
    assert sorted(p.name for p in ctx.figures) == ["membership.png", "membership.svg"]
    assert set(ctx.styles) == {"cities"}


def test_maps_stage_rejects_unknown_options(tmp_path):
    from agglo.errors import ValidationError
    from agglo.outputs.maps import PlotOptions
    from agglo.outputs.run import draw_maps

    ctx = toy_context(tmp_path, full=False)
    ctx.config.sections["plot"] = {"shceme": "quantiles"}
    with pytest.raises(ValidationError, match=r"plot.shceme is not an option \(did you mean"):
        draw_maps(ctx)
    with pytest.raises(ValidationError, match=r"plot.formats must be one of png, svg; got 'pdf'"):
        PlotOptions(formats=("png", "pdf"))
    with pytest.raises(ValidationError, match=r"plot.cmap must be a matplotlib colormap.*'Blues'"):
        PlotOptions(cmap="Bluess")


def test_maps_stage_lisa_from_long_layer(tmp_path):
    from agglo.outputs.run import draw_maps

    ctx = toy_context(tmp_path, full=False)
    lisa = pd.DataFrame(
        {
            "adcode": ["510000", "510001", "510000"],
            "year": [2010, 2020, 2020],
            "cluster": ["LL", "HH", "HL"],
        }
    )
    ctx.layers["lisa"] = gpd.GeoDataFrame(
        lisa.merge(toy_cities()[["adcode", "geometry"]]), crs=4326
    )
    draw_maps(ctx)
    assert {"lisa_clusters", "lisa_clusters_by_year"} <= {p.stem for p in ctx.figures}
    assert (
        "(2020)" in ctx.results["maps"]["captions"][str(ctx.out_dir / "maps" / "lisa_clusters.png")]
    )
    assert "categorizedSymbol" in ctx.styles["lisa"]


def test_labels_have_halos_and_overlaps_are_dropped():
    import shapely

    # two big neighbours far apart, and one small unit right beside the first: its label would
    # sit on top of the big one's and is left out
    g = gpd.GeoDataFrame(
        {"name_zh": ["潜江市", "仙桃市", "天门市"]},
        geometry=[
            shapely.box(100, 30, 104, 34),
            shapely.box(102.05, 32, 102.1, 32.05),
            shapely.box(110, 30, 114, 34),
        ],
        crs=4326,
    )
    g.loc[1, "geometry"] = shapely.box(101.9, 31.9, 102.2, 32.2)  # inside the first box
    fig = plot.choropleth(g.assign(v=[1.0, 2.0, 3.0]), "v", k=2, labels="name_zh")
    texts = [t for t in fig.axes[0].texts if t.get_gid() == "label"]
    assert sorted(t.get_text() for t in texts) == ["天门市", "潜江市"]
    assert all(t.get_path_effects() for t in texts)  # a white halo under every label


def _cielab(colours) -> np.ndarray:
    """CIELAB of sRGB colours by Little CMS (Pillow's ImageCms), independent of agglo's own."""
    from PIL import Image, ImageCms

    rgb = np.array([[round(255 * v) for v in to_rgba(c)[:3]] for c in colours], np.uint8)
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    raw = np.asarray(ImageCms.applyTransform(Image.fromarray(rgb[None]), to_lab))[0]
    # Pillow's LAB: L scaled to 0-255, a and b signed bytes
    ab = raw[:, 1:].astype(np.uint8).view(np.int8).astype(float)
    return np.column_stack([raw[:, 0].astype(float) * 100 / 255, ab])


@pytest.mark.parametrize("n", [5, 11, 12, 20, 25, 40])
def test_qualitative_palette_has_a_distinct_colour_per_category(n):
    colours = plot.qualitative_colours(n)
    assert len(colours) == n and len(set(colours)) == n
    lab = _cielab(colours)
    gaps = np.linalg.norm(lab[:, None] - lab[None], axis=2)[np.triu_indices(n, 1)]
    # ΔE76 > 10: told apart at a glance (tab20's closest pair, a dark/light partner, is ~17)
    assert gaps.min() > 10, gaps.min()


def test_metro_map_and_kde_chart_size_their_palettes_to_the_categories():
    from agglo.outputs.charts_disparity import kernel_density_chart

    metro = gpd.GeoDataFrame(
        {"name_zh": [f"都市圈{i}" for i in range(12)]},
        geometry=[shapely.Point(100 + 2 * i, 30).buffer(0.5) for i in range(12)],
        crs=4326,
    )
    fig = plot.catchment_map(metro)
    fills = {to_rgba(c.get_facecolor()[0])[:3] for c in fig.axes[0].collections}
    assert len(fills) == 12
    years = list(range(2000, 2012))
    v = pd.DataFrame(
        [("cy", y, float(x + i)) for i, y in enumerate(years) for x in range(4)],
        columns=["agglomeration_id", "year", "value"],
    )
    lines = kernel_density_chart(v, "cy").axes[0].lines
    assert len({tuple(to_rgba(line.get_color())) for line in lines}) == 12


def test_agglomerations_beyond_the_five_get_their_own_colours():
    colours = plot.agglomeration_colours(["jjj", "prd", "cy", None])
    assert {k: colours[k] for k in plot.AGGLOMERATION_COLOURS} == plot.AGGLOMERATION_COLOURS
    assert list(colours)[-2:] == ["jjj", "prd"] and len(set(colours.values())) == 7
    lab = _cielab(list(colours.values()))
    assert np.linalg.norm(lab[5:, None] - lab[None, :5], axis=2).min() > 15  # not like the five
    g = toy_cities().assign(agglomeration_id=["cy", "cy", "jjj", "jjj", "prd", None])
    fig = plot.category_map(g, "agglomeration_id", colours)
    texts = _legend_texts(fig)
    assert "jjj  (2)" in texts and "prd  (1)" in texts  # drawn, not lumped with the rest


# --------------------------------------------------------------------------- non-members
def _others(ax):
    return [c for c in ax.collections if c.get_gid() == "others"]


def test_non_member_cities_drawn_grey_and_labelled_in_the_png_maps(tmp_path):
    from agglo.outputs.maps import figure_specs

    ctx = toy_context(tmp_path)
    ctx.layers["lisa"] = gpd.GeoDataFrame(
        pd.DataFrame({"adcode": ["510000", "510001"] * 2, "year": [2010, 2010, 2020, 2020]})
        .assign(cluster=["HH", "ns", "LL", "HL"])
        .merge(toy_cities()[["adcode", "geometry"]]),
        crs=4326,
    )
    specs = {f.stem: f for f in figure_specs(ctx.layers, index=ctx.results["index"])}
    grey = to_rgba(plot.NON_MEMBER_COLOUR)
    stems = [
        "membership",
        "lag_score",
        "lag_score_by_year",
        "lisa_clusters",
        "lisa_clusters_by_year",
        "coreness",
    ]
    for stem in stems:
        fig = specs[stem].draw()
        maps = [a for a in fig.axes if a.collections]
        for ax in maps:
            (patches,) = _others(ax)  # one collection of the one non-member city, 乐山市
            assert len(patches.get_paths()) == 1, stem
            assert tuple(patches.get_facecolor()[0]) == grey, stem
        legend = fig.legends[0] if fig.legends else maps[0].get_legend()
        entries = dict(
            zip([t.get_text() for t in legend.get_texts()], legend.legend_handles, strict=True)
        )
        label = next(t for t in entries if t.startswith("not a member 非成员"))
        assert tuple(entries[label].get_facecolor()) == grey, stem
    # the QGIS style of the cities layer uses the same colour and label
    from agglo.outputs.maps import layer_styles

    qml = layer_styles(ctx.layers)["cities"]
    assert 'label="not a member 非成员"' in qml
    r, g, b = (round(255 * v) for v in grey[:3])
    assert f'value="{r},{g},{b},255"' in qml


def test_non_member_grey_is_told_apart_from_every_class_colour():
    import matplotlib

    from agglo.outputs.styles import class_colours

    lows, highs = [-1, -0.5, -0.01, 0], [-0.5, -0.01, 0, 1]
    drawn = [*LISA_COLOURS.values(), *plot.AGGLOMERATION_COLOURS.values()]
    drawn += class_colours(lows, highs, "RdYlBu", centre=0)  # with a class hugging 0
    for cmap in ("OrRd", "YlGnBu"):  # coreness and score styles, 2 to 7 classes
        for k in range(2, 8):
            drawn += class_colours(np.arange(k), np.arange(1, k + 1), cmap)
    lab = _cielab([plot.NON_MEMBER_COLOUR, *[matplotlib.colors.to_hex(c) for c in drawn]])
    gaps = np.linalg.norm(lab[1:] - lab[0], axis=1)
    assert gaps.min() > 8, (gaps.min(), drawn[int(gaps.argmin())])  # e.g. LISA "ns" grey


def test_choropleth_extent_includes_the_context_units():
    g = toy_cities().assign(v=np.arange(6.0))
    members, rest = g.iloc[:3], g.iloc[3:]
    fig = plot.choropleth(members, "v", k=2, others=rest, others_label="context")
    ax = fig.axes[0]
    (patches,) = _others(ax)
    assert len(patches.get_paths()) == 3
    # the map CRS is fitted to both: members and context units are inside the axes limits
    crs = plot.map_crs(g)
    minx, miny, maxx, maxy = g.to_crs(crs).total_bounds
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= minx and maxx <= x1 and y0 <= miny and maxy <= y1
    assert _legend_texts(fig)[-1] == "context  (3)"


# --------------------------------------------------------------------------- diverging classes
def test_lag_score_classes_are_centred_on_zero(tmp_path):
    import matplotlib

    from agglo.outputs.maps import PlotOptions, figure_specs, graduated_classes

    ctx = toy_context(tmp_path)
    c = ctx.layers["cities"]
    c = c.assign(
        lag_score=c["lag_score"].where(
            c["agglomeration_id"].isna(), [-0.5, -0.1, 0.05, 0.3, 0.9, np.nan]
        )
    )
    ctx.layers["cities"] = c
    opts = PlotOptions(scheme="equal_interval", k=2)  # equal interval alone breaks at 0.2
    cls = graduated_classes(ctx.layers, opts)["cities"]
    assert 0.0 in cls.upper and cls.centre == 0.0
    lower, upper = np.asarray(cls.lower), np.asarray(cls.upper)
    assert ((upper <= 0) | (lower >= 0)).all()  # no class straddles 0
    fig = {f.stem: f for f in figure_specs(ctx.layers, options=opts)}["lag_score"].draw()
    handles = fig.axes[0].get_legend().legend_handles[: len(upper)]
    cm = matplotlib.colormaps["RdYlBu"]
    extent = max(abs(lower.min()), abs(upper.max()))
    for lo, hi, h in zip(lower, upper, handles, strict=True):
        # colour = colormap at the class midpoint's distance from 0 (worked out here)
        expected = cm(0.5 + 0.5 * ((lo + hi) / 2) / extent)
        np.testing.assert_allclose(h.get_facecolor(), expected, atol=1e-9)
    (r0, _, b0, _), (r1, _, b1, _) = handles[0].get_facecolor(), handles[-1].get_facecolor()
    assert r0 > b0 and b1 > r1  # the most lagging class red, the most leading blue
