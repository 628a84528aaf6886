"""Maps and charts (matplotlib; saved as PNG and SVG) for GIS analysts.

Maps are drawn in an Albers equal-area projection fitted to the layer's extent (standard
parallels at 1/6 and 5/6 of its latitude span), so areas are true and the scale bar is
correct to well under 1 % across the Yangtze belt. Every map has a legend (class bounds with
units and counts), a scale bar and a north arrow; Chinese labels use the bundled Noto Sans
CJK font (:mod:`agglo.outputs.fonts`). Colours and class bounds come from :func:`agglo.outputs.styles.classify`
and :func:`agglo.outputs.styles.graduated_qml` uses the same ramp, so the PNG and the QGIS layer agree.

Polygons are drawn as one path collection per class, the paths built once per figure (shared
by the panels of :func:`small_multiples`): the pixels and SVG of ``GeoDataFrame.plot``, without
its patch artist per polygon (drawing the bundled maps takes about a third less time).

Functions return a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes it atomically
and reproducibly (the same figure gives the same bytes).
Pass ``synthetic=`` (True or the names of synthetic inputs) and the caption says the figure was
made from synthetic data.

- :func:`choropleth` (any numeric column, mapclassify scheme), :func:`category_map`,
  :func:`lisa_map` (HH red, LL blue, LH light blue, HL pink, not significant grey),
  :func:`coreness_map`, :func:`catchment_map` (metro catchments over counties),
  :func:`small_multiples` (one panel per year, classes pooled over years),
  :func:`radar_chart` (five dimension scores per agglomeration), :func:`score_bars`
  (composite score by agglomeration and year, as in seed 004 figure 2).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from pyproj import CRS

from agglo.errors import AggloInputError, CRSError
from agglo.outputs.fonts import font_family
from agglo.outputs.styles import LISA_COLOURS, LISA_LABELS, class_colours, class_labels, classify
from agglo.outputs.writers import atomic_path

__all__ = [
    "AGGLOMERATION_COLOURS",
    "AGGLOMERATION_NAMES",
    "NON_MEMBER_COLOUR",
    "NON_MEMBER_LABEL",
    "agglomeration_colours",
    "catchment_map",
    "category_map",
    "choropleth",
    "coreness_map",
    "lisa_map",
    "map_crs",
    "qualitative_colours",
    "radar_chart",
    "save_figure",
    "score_bars",
    "small_multiples",
]

log = logging.getLogger(__name__)

#: agglomeration id -> short bilingual name (seed 004)
AGGLOMERATION_NAMES: dict[str, str] = {
    "yrd": "长三角 Yangtze River Delta",
    "myr": "长江中游 Middle Yangtze",
    "cy": "成渝 Chengdu-Chongqing",
    "qz": "黔中 Central Guizhou",
    "dz": "滇中 Central Yunnan",
}
#: agglomeration id -> colour (qualitative, colour-blind safe)
AGGLOMERATION_COLOURS: dict[str, str] = {
    "yrd": "#1b9e77",
    "myr": "#d95f02",
    "cy": "#7570b3",
    "qz": "#e7298a",
    "dz": "#66a61e",
}
_MISSING = "#ffffff"
#: neutral fill of the cities outside the agglomerations (PNG maps and the QGIS style); lighter
#: than the LISA "not significant" grey (#d3d3d3) so the two are told apart
NON_MEMBER_COLOUR = "#f0f0f0"
#: legend label of those cities
NON_MEMBER_LABEL = "not a member 非成员"


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _style() -> Iterator[None]:
    """rc settings for agglo figures: the CJK font first, white background."""
    with matplotlib.rc_context(
        {
            "font.family": font_family(),
            "axes.unicode_minus": True,
            "svg.fonttype": "path",
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
        }
    ):
        yield


def _map_figsize(data: gpd.GeoDataFrame, width: float = 8.0) -> tuple[float, float]:
    """Figure size that fits the layer's shape (no wide blank bands around the map)."""
    minx, miny, maxx, maxy = data.total_bounds
    aspect = (maxy - miny) / (maxx - minx) if maxx > minx else 1.0
    return width, float(np.clip(width * aspect + 0.8, 3.5, 11.0))


def _new_axes(ax, figsize: tuple[float, float] | None, data: gpd.GeoDataFrame | None = None):
    if ax is not None:
        return ax.figure, ax
    if figsize is None:
        figsize = _map_figsize(data) if data is not None else (8.0, 6.5)
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _caption_text(caption: str | None, synthetic: bool | str | Collection[str]) -> str:
    text = caption or ""
    if synthetic:
        listed = (
            [synthetic]
            if isinstance(synthetic, str)
            else sorted(synthetic)
            if isinstance(synthetic, Collection)
            else []
        )
        # each input by its name alone: the details in parentheses (e.g. the panel's list of
        # synthetic indicators) are in run.json, the report and indicator_provenance.csv;
        # repeated in every caption they were most of the glyphs drawn in a run's figures
        listed = [str(name).split(" (", 1)[0] for name in listed]
        names = ", ".join(listed[:2]) + (f" and {len(listed) - 2} more" if len(listed) > 2 else "")
        what = f" ({names})" if names else ""
        text = f"Made from SYNTHETIC data{what}: not real statistics. {text}".strip()
    return text


_CAPTION_SIZE = 7.5


def _add_caption(fig: Figure, caption: str | None, synthetic) -> None:
    text = _caption_text(caption, synthetic)
    if text:
        # below the figure: saving with bbox_inches="tight" takes it in, and it never
        # overlaps tick labels or the legend. Wrapped here once, to the figure's width
        # (matplotlib's wrap=True measures the text word by word at every draw)
        width = fig.get_figwidth() * 72 * 0.95  # hinted glyphs are a little wider
        fig.text(
            0.01,
            -0.01,
            _wrap(text, width, _CAPTION_SIZE),
            fontsize=_CAPTION_SIZE,
            ha="left",
            va="top",
            gid="caption",
        )


def _wrap(text: str, width_pt: float, size_pt: float) -> str:
    """``text`` broken at spaces into lines at most ``width_pt`` wide in the figure font.

    Widths are the glyph advances of the font agglo draws with (:func:`font_family`), as
    matplotlib's own ``wrap=True`` measures them.

    Examples
    --------
    >>> _wrap("aaa bbb ccc", 1000, 10), _wrap("aaa bbb ccc", 30, 10).count(chr(10))
    ('aaa bbb ccc', 2)
    """
    advance = _advances(size_pt)
    lines: list[str] = []
    for para in text.split("\n"):
        line, used = "", 0.0
        for word in para.split(" "):
            w = sum(advance(c) for c in word)
            gap = advance(" ") if line else 0.0
            if line and used + gap + w > width_pt:
                lines.append(line)
                line, used = word, w
            else:
                line, used = (f"{line} {word}" if line else word), used + gap + w
        lines.append(line)
    return "\n".join(lines)


@functools.cache
def _advances(size_pt: float):
    """Advance width (points) of one character at ``size_pt`` in the figure fonts (cached)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import LoadFlags

    fonts = []
    for family in font_family():
        path = font_manager.findfont(font_manager.FontProperties(family=family))
        font = font_manager.get_font(path)
        fonts.append(font)

    @functools.cache
    def advance(ch: str) -> float:
        for font in fonts:
            if font.get_char_index(ord(ch)):
                font.set_size(size_pt, 72)
                glyph = font.load_char(ord(ch), flags=LoadFlags.NO_HINTING)
                return glyph.linearHoriAdvance / 65536
        return size_pt  # no glyph: a box about one em wide

    return advance


class _SharedCaches:
    """What the figures drawn inside :func:`shared_geometries` share (one set per process)."""

    def __init__(self) -> None:
        #: (source CRS WKT, target CRS WKT) -> id(geometry) -> (geometry, projected geometry)
        self.projected: dict[tuple[str, str], dict[int, tuple[Any, Any]]] = {}
        #: id(projected geometry) -> (geometry, its matplotlib path), as in _plot_polygons
        self.paths: dict[int, tuple[Any, Any]] = {}
        #: id(projected polygon) -> (polygon, its boundary's lines), as in _plot_boundaries
        self.rings: dict[int, tuple[Any, list]] = {}
        #: text metrics of the Agg renderers (see _SharedMetricsCanvasAgg)
        self.metrics: dict[tuple, tuple[float, float, float]] = {}


_SHARED: _SharedCaches | None = None


@contextlib.contextmanager
def shared_geometries() -> Iterator[None]:
    """Let the figures drawn inside share reprojected geometries, polygon paths and text metrics.

    The maps of one run draw the same cities again and again: inside this context each
    geometry is projected to a map CRS once (then looked up by identity), its path is built
    once, and the text sizes measured for one figure's PNG serve the next. Projections are
    pointwise, so a geometry projected alone has the coordinates it gets in a whole layer:
    the files are the same bytes. Forked processes inherit the (then separate) caches; they
    are dropped when the context ends.

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.box(100, 30, 101, 31)], crs=4326)
    >>> with shared_geometries():
    ...     a, b = _to_crs(g, 3857), _to_crs(g.copy(), 3857)
    >>> a.geometry.iloc[0] is b.geometry.iloc[0], a.geom_equals(g.to_crs(3857)).all()
    (True, np.True_)
    """
    global _SHARED
    outer = _SHARED
    if outer is None:
        _SHARED = _SharedCaches()
    try:
        yield
    finally:
        _SHARED = outer


def _to_crs(data, crs):
    """``data.to_crs(crs)`` (GeoDataFrame or GeoSeries), from the shared projections if any.

    Inside :func:`shared_geometries` each geometry object is projected once per CRS pair and
    the projected object reused (so the polygon paths built from it are found again too).
    """
    shared = _SHARED
    if shared is None or data.crs is None:
        return data.to_crs(crs)
    target = CRS.from_user_input(crs)
    if data.crs.is_exact_same(target):
        return data.to_crs(target)
    cache = shared.projected.setdefault((data.crs.to_wkt(), target.to_wkt()), {})
    series = data.geometry if isinstance(data, gpd.GeoDataFrame) else data
    geoms = series.to_numpy()
    new = {
        id(g): g
        for g in geoms
        if g is not None and ((hit := cache.get(id(g))) is None or hit[0] is not g)
    }
    if new:
        todo = np.fromiter(new.values(), dtype=object, count=len(new))
        done = gpd.GeoSeries(todo, crs=data.crs).to_crs(target).to_numpy()
        for g, p in zip(todo, done, strict=True):
            cache[id(g)] = (g, p)
    projected = np.empty(len(geoms), dtype=object)
    projected[:] = [None if g is None else cache[id(g)][1] for g in geoms]
    out = gpd.GeoSeries(projected, index=series.index, name=series.name, crs=target)
    if not isinstance(data, gpd.GeoDataFrame):
        return out
    frame = data.copy()
    frame.geometry = out
    return frame


def map_crs(gdf: gpd.GeoDataFrame) -> CRS:
    """Albers equal-area CRS fitted to the layer's extent (used to draw every map).

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.box(100, 24, 122, 36)], crs=4326)
    >>> params = {p.name: p.value for p in map_crs(g).coordinate_operation.params}
    >>> params["Latitude of 1st standard parallel"], params["Longitude of false origin"]
    (26.0, 111.0)
    """
    if gdf.crs is None:
        raise CRSError("the layer has no CRS; set it (e.g. gdf.set_crs(4326)) before mapping.")
    minx, miny, maxx, maxy = _to_crs(gdf, 4326).total_bounds
    if not np.isfinite([minx, miny, maxx, maxy]).all():
        raise AggloInputError("the layer has no geometries to map.")
    h = maxy - miny
    lat1, lat2 = miny + h / 6, maxy - h / 6
    if abs(lat2 - lat1) < 1e-6:
        lat1, lat2 = miny - 1, maxy + 1
    lon0 = (minx + maxx) / 2
    return CRS.from_proj4(
        f"+proj=aea +lat_1={lat1:.4f} +lat_2={lat2:.4f} +lat_0={(miny + maxy) / 2:.4f} "
        f"+lon_0={lon0:.4f} +datum=WGS84 +units=m +no_defs"
    )


def _nice_length(target_m: float) -> float:
    exp = 10 ** math.floor(math.log10(target_m))
    for m in (1, 2, 5, 10):
        if m * exp >= target_m * 0.75:
            return m * exp
    return 10 * exp


def add_scale_bar(ax, *, fraction: float = 0.22) -> float:
    """Draw a two-segment scale bar (km) at the lower left of a map in projected metres.

    Returns the bar length in metres. Artists carry ``gid="scale_bar"``.
    """
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    length = _nice_length((x1 - x0) * fraction)
    h = (y1 - y0) * 0.012
    bx, by = x0 + (x1 - x0) * 0.04, y0 + (y1 - y0) * 0.05
    from matplotlib.patches import Rectangle

    for i, colour in enumerate(("black", "white")):
        ax.add_patch(
            Rectangle(
                (bx + i * length / 2, by),
                length / 2,
                h,
                facecolor=colour,
                edgecolor="black",
                linewidth=0.6,
                zorder=10,
                gid="scale_bar",
            )
        )
    km = length / 1000
    label = f"{km:g} km"
    for x, t in ((bx, "0"), (bx + length, label)):
        ax.text(
            x, by + h * 1.6, t, ha="center", va="bottom", fontsize=7, zorder=10, gid="scale_bar"
        )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return length


def add_north_arrow(ax) -> None:
    """Draw a north arrow (up = north on the central meridian) at the upper right."""
    ax.annotate(
        "N",
        xy=(0.95, 0.95),
        xytext=(0.95, 0.85),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=10,
        family="DejaVu Sans",
        fontweight="bold",
        arrowprops={"facecolor": "black", "width": 3, "headwidth": 9, "headlength": 8},
        zorder=10,
        gid="north_arrow",
    )


def _check_column(gdf: pd.DataFrame, column: str) -> None:
    if column not in gdf.columns:
        raise AggloInputError(
            f"column {column!r} is not in the layer; available: {', '.join(map(str, gdf.columns))}."
        )


def _extent(gdf: gpd.GeoDataFrame, others: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    """The layer, or the layer and ``others`` together (for the map CRS and figure size)."""
    if others is None or not len(others):
        return gdf
    if gdf.crs is None:
        raise CRSError("the layer has no CRS; set it (e.g. gdf.set_crs(4326)) before mapping.")
    geoms = [_to_crs(gdf.geometry, 4326), _to_crs(others.geometry, 4326)]
    return gpd.GeoDataFrame(geometry=pd.concat(geoms, ignore_index=True), crs=4326)


#: draw polygons as one path collection per call (False: GeoDataFrame.plot, the reference)
_FAST_POLYGONS = True


def _fast_polygons(geoms: np.ndarray) -> bool:
    """Whether ``geoms`` (non-empty, only non-empty Polygons and MultiPolygons) can take the
    polygon fast paths (with ``_FAST_POLYGONS`` on)."""
    kinds = {getattr(g, "geom_type", None) for g in geoms}
    return (
        _FAST_POLYGONS
        and len(geoms) > 0
        and kinds <= {"Polygon", "MultiPolygon"}
        and not any(g.is_empty for g in geoms)
    )


def _polygon_path(geom):
    """The path of one (Multi)Polygon as ``GeoDataFrame.plot`` builds it (of the normalised
    geometry): every ring closed, exterior then interiors per part, one compound path."""
    from matplotlib.path import Path

    paths = []
    for part in getattr(geom, "geoms", [geom]):
        paths.append(Path(np.asarray(part.exterior.coords)[:, :2], closed=True))
        paths.extend(Path(np.asarray(r.coords)[:, :2], closed=True) for r in part.interiors)
    return Path.make_compound_path(*paths)


def _plot_polygons(ax, gdf: gpd.GeoDataFrame, *, paths: dict | None = None, **style) -> None:
    """``gdf.plot(ax=ax, **style)`` for polygon layers: the same collection, the same pixels.

    GeoDataFrame.plot makes a matplotlib patch artist per polygon only to take its path; here
    the paths go into the collection directly, and ``paths`` (geometry id -> path) lets the
    panels of one figure share them. Anything but non-empty (Multi)Polygons goes through
    GeoDataFrame.plot as before.
    """
    geoms = gdf.geometry.to_numpy()
    if not _fast_polygons(geoms):
        gdf.plot(ax=ax, **style)
        return
    import shapely

    cache = paths if paths is not None else _SHARED.paths if _SHARED is not None else {}
    new = [g for g in geoms if (hit := cache.get(id(g))) is None or hit[0] is not g]
    # normalised (ring orientation, part order, first vertex) as GeoDataFrame.plot draws them
    for g, norm in zip(new, shapely.normalize(np.asarray(new, dtype=object)), strict=True):
        cache[id(g)] = (g, _polygon_path(norm))
    drawn = [cache[id(g)][1] for g in geoms]
    if "color" in style:  # geopandas passes color as the face colour (edgecolor stays usable)
        style["facecolor"] = style.pop("color")
    coll = _GeoPandasPolyCollection(drawn, **style)
    ax.set_aspect("equal")  # as GeoDataFrame.plot does for a projected CRS
    ax.add_collection(coll, autolim=True)
    ax.autoscale_view()


class _GeoPandasPolyCollection(PatchCollection):
    """A PatchCollection made from paths rather than patches (what it keeps of them).

    Named as geopandas' own class, so the SVG group ids stay those of ``GeoDataFrame.plot``.
    """

    def set_paths(self, paths) -> None:
        self._paths = list(paths)
        self.stale = True


def _draw_others(ax, others: gpd.GeoDataFrame | None, crs, label: str, paths=None) -> list:
    """Context units (non-member cities) in the neutral grey, under everything else."""
    if others is None or not len(others):
        return []
    from matplotlib.patches import Patch

    _plot_polygons(
        ax,
        others if others.crs == crs else _to_crs(others, crs),
        paths=paths,
        color=NON_MEMBER_COLOUR,
        edgecolor="white",
        linewidth=0.3,
        gid="others",
    )
    return [
        Patch(facecolor=NON_MEMBER_COLOUR, edgecolor="#aaaaaa", label=f"{label}  ({len(others)})")
    ]


#: the fast paths of drawing and saving a figure, each the same bytes as its reference (False):
#: hidden axes without tick locators, a layout pass that only lays out, text sizes measured
#: once per figure (and shared inside shared_geometries)
_NO_HIDDEN_TICKS = True
_LAYOUT_ONLY = True
_SHARE_TEXT_METRICS = True


def _hide_axis(ax) -> None:
    """Switch the axes' axis off, with no ticks: a title's placement would still compute them."""
    from matplotlib.ticker import NullLocator

    ax.set_axis_off()
    if not _NO_HIDDEN_TICKS:
        return
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(NullLocator())
        axis.set_minor_locator(NullLocator())


def _finish_map(ax, *, title: str | None, scale_bar: bool, north_arrow: bool) -> None:
    ax.set_aspect("equal")
    _hide_axis(ax)
    if title:
        ax.set_title(title, fontsize=12)
    if scale_bar:
        add_scale_bar(ax)
    if north_arrow:
        add_north_arrow(ax)


def _draw_outlines(ax, outlines, crs, label: str) -> list:
    if outlines is None or len(outlines) == 0:
        return []
    from matplotlib.lines import Line2D

    _plot_boundaries(ax, _to_crs(outlines, crs), color="#222222", linewidth=1.2, zorder=5)
    return [Line2D([], [], color="#222222", linewidth=1.2, label=label)]


def _plot_boundaries(ax, gdf: gpd.GeoDataFrame, **style) -> None:
    """``gdf.boundary.plot(ax=ax, **style)`` for polygon layers: the same line collection.

    The rings' coordinates are taken once per polygon inside :func:`shared_geometries` (the
    agglomeration outlines are drawn on most maps, and in every panel of the small
    multiples). Anything but non-empty (Multi)Polygons goes through GeoSeries.plot as before.
    """
    geoms = gdf.geometry.to_numpy()
    if not _fast_polygons(geoms):
        gdf.boundary.plot(ax=ax, **style)
        return
    import shapely
    from matplotlib.collections import LineCollection

    cache = _SHARED.rings if _SHARED is not None else {}
    segments = []
    for g in geoms:
        hit = cache.get(id(g))
        if hit is None or hit[0] is not g:
            # as GeoSeries.plot draws a boundary: normalised, its parts, each line's x, y
            lines = shapely.get_parts(shapely.normalize(g.boundary))
            rings = [np.array(r.coords)[:, :2] for r in lines]
            hit = cache[id(g)] = (g, rings)
        segments.extend(hit[1])
    ax.set_aspect("equal")  # as GeoSeries.plot does for a projected CRS
    ax.add_collection(LineCollection(segments, **style), autolim=True)
    ax.autoscale_view()


def _draw_labels(ax, data: gpd.GeoDataFrame, labels: str | None, size: float = 6) -> int:
    """Labels with a white halo; a label that would overlap one already placed is left out.

    Larger polygons are labelled first, so where two labels collide (潜江/仙桃) the bigger
    unit keeps its name. Returns the number of labels left out.
    """
    if not labels:
        return 0
    import matplotlib.patheffects as pe

    _check_column(data, labels)
    ax.autoscale_view()
    pts = data.geometry.representative_point()
    order = np.argsort(-data.geometry.area.to_numpy(), kind="stable")
    scale = ax.figure.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    skipped = 0
    for i in order:
        p, text = pts.iloc[i], data[labels].iloc[i]
        if text is None or (isinstance(text, float) and np.isnan(text)) or p.is_empty:
            continue
        x, y = ax.transData.transform((p.x, p.y))
        w = len(str(text)) * size * scale * (1.0 if str(text).isascii() else 1.05) / 2 + 1
        h = size * scale * 0.65
        box = (x - w, y - h, x + w, y + h)
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
            skipped += 1
            continue
        placed.append(box)
        ax.text(
            p.x,
            p.y,
            str(text),
            fontsize=size,
            ha="center",
            va="center",
            zorder=6,
            color="#111111",
            gid="label",
            path_effects=[pe.withStroke(linewidth=2.2, foreground="white")],
        )
    return skipped


def qualitative_colours(n: int) -> list[str]:
    """``n`` distinct colours for categories (metro cores, years, agglomerations).

    tab10 up to 10 categories, tab20 up to 20 (dark shades first, then their light partners);
    beyond 20, tab20 followed by the colours of an HSV grid farthest (CIELAB ΔE, greedy
    max-min) from every colour already chosen, so no two colours are closer than tab20's
    closest pair.

    Examples
    --------
    >>> len(set(qualitative_colours(12))), len(set(qualitative_colours(40)))
    (12, 40)
    """
    from matplotlib.colors import to_hex

    if n <= 10:
        return [to_hex(c) for c in matplotlib.colormaps["tab10"].colors[:n]]
    cm = matplotlib.colormaps["tab20"].colors
    out = [to_hex(c) for c in [*cm[0::2], *cm[1::2]][:n]]
    if n > 20:
        import colorsys

        grid = [
            to_hex(colorsys.hsv_to_rgb(h / 36, sat, val))
            for h in range(36)
            for sat in (0.45, 0.75, 1.0)
            for val in (0.45, 0.7, 0.95)
        ]
        lab, chosen = _lab(grid), _lab(out)
        nearest = np.min(np.linalg.norm(lab[:, None] - chosen[None], axis=2), axis=1)
        while len(out) < n:
            i = int(np.argmax(nearest))
            out.append(grid[i])
            nearest = np.minimum(nearest, np.linalg.norm(lab - lab[i], axis=1))
    return out


def _lab(colours: Sequence[str]) -> np.ndarray:
    """CIELAB (D65) of sRGB colours, one row per colour."""
    from matplotlib.colors import to_rgb

    rgb = np.array([to_rgb(c) for c in colours])
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1
    )


def agglomeration_colours(ids: Iterable[Any] = ()) -> dict[str, str]:
    """Colour of each agglomeration: the five of the Yangtze belt fixed, any other id added.

    Ids beyond the five (a national membership table) get colours of
    :func:`qualitative_colours` that are not close (ΔE < 20) to the fixed five, in sorted order.

    Examples
    --------
    >>> list(agglomeration_colours(["cy", "yrd"])) == list(AGGLOMERATION_COLOURS)
    True
    >>> c = agglomeration_colours(["jjj", "prd", "cy"])
    >>> len(set(c.values())), list(c)[-2:]
    (7, ['jjj', 'prd'])
    """
    out = dict(AGGLOMERATION_COLOURS)
    extra = sorted({str(i) for i in ids if not pd.isna(i)} - set(out))
    if extra:
        fixed = _lab(list(out.values()))
        m = len(extra)
        while True:
            pool = qualitative_colours(m + len(out))
            far = np.min(np.linalg.norm(_lab(pool)[:, None] - fixed[None], axis=2), axis=1) >= 20
            pool = [c for c, ok in zip(pool, far, strict=True) if ok]
            if len(pool) >= len(extra):
                break
            m += 5
        out.update(zip(extra, pool, strict=False))
    return out


def _class_index(values: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Class of each value (value <= upper bound, mapclassify's rule); -1 for NaN."""
    idx = np.searchsorted(upper, values, side="left")
    idx = np.clip(idx, 0, len(upper) - 1)
    return np.where(np.isnan(values), -1, idx)


def _draw_classes(ax, data, values, lower, upper, colours, unit, edge="white", paths=None) -> list:
    from matplotlib.patches import Patch

    idx = _class_index(values, upper)
    texts = class_labels(lower, upper, unit=unit)
    handles = []
    for i, colour in enumerate(colours):
        part = data[idx == i]
        if len(part):
            _plot_polygons(ax, part, paths=paths, color=colour, edgecolor=edge, linewidth=0.3)
        handles.append(
            Patch(facecolor=colour, edgecolor="#888888", label=f"{texts[i]}  ({len(part)})")
        )
    missing = data[idx == -1]
    if len(missing):
        _plot_polygons(
            ax,
            missing,
            paths=paths,
            color=_MISSING,
            edgecolor="#999999",
            linewidth=0.3,
            hatch="///",
        )
        handles.append(
            Patch(
                facecolor=_MISSING,
                edgecolor="#999999",
                hatch="///",
                label=f"no data  ({len(missing)})",
            )
        )
    return handles


def _draw_categories(ax, data, cats, colours, category_labels, other_label, paths=None) -> list:
    from matplotlib.patches import Patch

    handles = []
    for value, colour in colours.items():
        part = data[cats == value]
        if len(part):
            _plot_polygons(ax, part, paths=paths, color=colour, edgecolor="white", linewidth=0.3)
        handles.append(
            Patch(
                facecolor=colour,
                edgecolor="#888888",
                label=f"{category_labels.get(value, value)}  ({len(part)})",
            )
        )
    rest = data[~cats.isin(list(colours))]
    if len(rest):
        _plot_polygons(ax, rest, paths=paths, color=_MISSING, edgecolor="#aaaaaa", linewidth=0.3)
        handles.append(
            Patch(facecolor=_MISSING, edgecolor="#aaaaaa", label=f"{other_label}  ({len(rest)})")
        )
    return handles


# --------------------------------------------------------------------------- maps
def choropleth(
    gdf: gpd.GeoDataFrame,
    column: str,
    *,
    scheme: str = "fisher_jenks",
    k: int = 5,
    bins: Sequence[float] | None = None,
    classes: tuple[Sequence[float], Sequence[float]] | None = None,
    centre: float | None = None,
    cmap: str = "YlGnBu",
    unit: str = "",
    title: str | None = None,
    legend_title: str | None = None,
    outlines: gpd.GeoDataFrame | None = None,
    outline_label: str = "agglomeration 城市群",
    others: gpd.GeoDataFrame | None = None,
    others_label: str = NON_MEMBER_LABEL,
    labels: str | None = None,
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    scale_bar: bool = True,
    north_arrow: bool = True,
    ax=None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Choropleth map of a numeric column, classed with mapclassify.

    Parameters
    ----------
    gdf
        Polygons with a CRS (any; drawn in :func:`map_crs`). Not modified.
    column
        Numeric column to map; NaN is drawn hatched as "no data".
    scheme, k, bins
        Classification (see :func:`agglo.outputs.styles.classify`): ``"fisher_jenks"`` (default),
        ``"quantiles"``, ``"equal_interval"``, ...; ``k`` classes.
    classes
        ``(lower, upper)`` class bounds already computed (e.g. shared with the layer's QGIS
        style, :func:`agglo.outputs.maps.graduated_classes`); ``scheme`` then only names them.
    centre
        For a diverging ``cmap``: a class bound at this value and colours centred on it
        (:func:`agglo.outputs.styles.class_colours`), e.g. 0 for lag scores.
    cmap
        Matplotlib colormap.
    unit
        Unit shown after the class bounds in the legend (e.g. ``"μg/m³"``).
    title, legend_title
        Map title; legend title (default: the column name).
    outlines
        Polygons drawn as bold outlines on top (e.g. agglomerations).
    others, others_label
        Context polygons drawn underneath in a neutral grey (:data:`NON_MEMBER_COLOUR`) with
        one legend entry, e.g. the cities outside the agglomerations.
    labels
        Column with feature labels (e.g. ``"name_zh"``).
    caption
        Text under the map; a synthetic-data notice is prepended when ``synthetic``.
    synthetic
        True, or the names of synthetic inputs the values came from.
    ax
        Draw into this axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"v": [1.0, 2.0, 3.0, 4.0], "name_zh": ["甲", "乙", "丙", "丁"]},
    ...     geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(4)], crs=4326)
    >>> fig = choropleth(g, "v", scheme="quantiles", k=2, unit="km", labels="name_zh")
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['1.0 – 2.5 km  (2)', '2.5 – 4.0 km  (2)']
    """
    _check_column(gdf, column)
    values = pd.to_numeric(gdf[column], errors="coerce").to_numpy(dtype=float)
    if classes is None:
        lower, upper = classify(values, scheme=scheme, k=k, bins=bins, centre=centre)
    else:
        lower, upper = (np.asarray(b, dtype=float) for b in classes)
    colours = class_colours(lower, upper, cmap, centre=centre)
    crs = map_crs(_extent(gdf, others))
    data = _to_crs(gdf, crs)
    with _style():
        fig, ax = _new_axes(ax, figsize, _to_crs(_extent(data, others), crs))
        neutral = _draw_others(ax, others, crs, others_label)
        handles = _draw_classes(ax, data, values, lower, upper, colours, unit) + neutral
        handles += _draw_outlines(ax, outlines, crs, outline_label)
        _draw_labels(ax, data, labels)
        ax.legend(
            handles=handles,
            title=legend_title or column,
            loc="lower right",
            fontsize=7,
            title_fontsize=8,
            frameon=True,
        )
        _finish_map(ax, title=title, scale_bar=scale_bar, north_arrow=north_arrow)
        method = scheme.replace("_", " ")
        _add_caption(fig, f"{caption or ''} Classes: {method}, k={len(upper)}.".strip(), synthetic)
    return fig


def category_map(
    gdf: gpd.GeoDataFrame,
    column: str,
    colours: Mapping[str, str],
    *,
    category_labels: Mapping[str, str] | None = None,
    title: str | None = None,
    legend_title: str | None = None,
    outlines: gpd.GeoDataFrame | None = None,
    outline_label: str = "agglomeration 城市群",
    others: gpd.GeoDataFrame | None = None,
    others_label: str = NON_MEMBER_LABEL,
    labels: str | None = None,
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    other_label: str = "other / no data",
    ax=None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Map of a categorical column with fixed colours (value -> colour).

    Values not in ``colours`` (and missing values) are drawn white and counted as
    ``other_label``; ``others`` are context polygons in the neutral grey (as in
    :func:`choropleth`).

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"c": ["a", "b", None]},
    ...     geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(3)], crs=4326)
    >>> fig = category_map(g, "c", {"a": "red", "b": "blue"})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['a  (1)', 'b  (1)', 'other / no data  (1)']
    """
    _check_column(gdf, column)
    category_labels = category_labels or {}
    crs = map_crs(_extent(gdf, others))
    data = _to_crs(gdf, crs)
    cats = data[column].astype(object).where(data[column].notna(), None)
    with _style():
        fig, ax = _new_axes(ax, figsize, _to_crs(_extent(data, others), crs))
        neutral = _draw_others(ax, others, crs, others_label)
        handles = _draw_categories(ax, data, cats, colours, category_labels, other_label)
        handles += neutral + _draw_outlines(ax, outlines, crs, outline_label)
        _draw_labels(ax, data, labels)
        ax.legend(
            handles=handles,
            title=legend_title or column,
            loc="lower right",
            fontsize=7,
            title_fontsize=8,
        )
        _finish_map(ax, title=title, scale_bar=True, north_arrow=True)
        _add_caption(fig, caption, synthetic)
    return fig


def lisa_map(
    gdf: gpd.GeoDataFrame,
    column: str = "lisa_cluster",
    *,
    title: str | None = "LISA clusters 局部空间自相关",
    **kwargs,
) -> Figure:
    """LISA cluster map with the conventional colours (:data:`agglo.outputs.styles.LISA_COLOURS`).

    ``column`` holds ``HH``, ``LL``, ``LH``, ``HL`` or ``ns`` (not significant); other
    keywords as in :func:`category_map`.

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"lisa_cluster": ["HH", "ns"]},
    ...     geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(2)], crs=4326)
    >>> fig = lisa_map(g)
    >>> [p.get_facecolor()[:3] for p in fig.axes[0].get_legend().get_patches()][0]
    (0.8431372549019608, 0.09803921568627451, 0.10980392156862745)
    """
    kwargs.setdefault("legend_title", "cluster (FDR-significant)")
    return category_map(
        gdf, column, LISA_COLOURS, category_labels=LISA_LABELS, title=title, **kwargs
    )


def coreness_map(
    gdf: gpd.GeoDataFrame,
    column: str,
    *,
    core_column: str | None = None,
    title: str | None = "Coreness 核心度",
    **kwargs,
) -> Figure:
    """Choropleth of continuous coreness with the core cities outlined.

    ``core_column`` (0/1 or bool) marks the discrete core; other keywords as in
    :func:`choropleth` (default ``cmap="OrRd"``, ``scheme="quantiles"``).

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"coreness_2020": [0.9, 0.1, 0.2], "core_2020": [1, 0, 0]},
    ...     geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(3)], crs=4326)
    >>> fig = coreness_map(g, "coreness_2020", core_column="core_2020", k=3)
    >>> fig.axes[0].get_legend().get_texts()[-1].get_text()
    'core city 核心城市'
    """
    outlines = None
    if core_column is not None:
        _check_column(gdf, core_column)
        outlines = gdf[gdf[core_column].fillna(0).astype(bool)]
    kwargs.setdefault("cmap", "OrRd")
    kwargs.setdefault("scheme", "quantiles")
    kwargs.setdefault("legend_title", f"{column} (0–1)")
    return choropleth(
        gdf, column, outlines=outlines, outline_label="core city 核心城市", title=title, **kwargs
    )


def catchment_map(
    metro_areas: gpd.GeoDataFrame,
    *,
    counties: gpd.GeoDataFrame | None = None,
    isochrones: gpd.GeoDataFrame | None = None,
    label_column: str | None = None,
    title: str | None = "One-hour metropolitan areas 一小时都市圈",
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    opacity: float = 0.45,
    ax=None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Metropolitan catchments (semi-transparent) over county boundaries.

    Parameters
    ----------
    metro_areas
        One polygon per metropolitan area (member counties dissolved or the catchment).
    counties
        County polygons drawn underneath (light grey); the map extent follows them.
    isochrones
        Isochrone polygons drawn as dashed outlines.
    label_column
        Column of ``metro_areas`` labelling each area (default: the first of ``name_zh``,
        ``core_name``, ``core_name_zh``, ``metro_id`` present).

    Examples
    --------
    >>> import shapely
    >>> m = gpd.GeoDataFrame({"name_zh": ["成都都市圈"]}, geometry=[shapely.box(103, 30, 105, 31)], crs=4326)
    >>> fig = catchment_map(m)
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "label"]
    ['成都都市圈']
    """
    from matplotlib.patches import Patch

    base = counties if counties is not None and len(counties) else metro_areas
    crs = map_crs(base)
    if label_column is None:
        label_column = next(
            (c for c in ("name_zh", "core_name_zh", "core_name", "metro_id") if c in metro_areas),
            None,
        )
    palette = qualitative_colours(len(metro_areas))
    with _style():
        fig, ax = _new_axes(ax, figsize, base.to_crs(crs))
        handles = []
        if counties is not None and len(counties):
            _plot_polygons(
                ax, counties.to_crs(crs), color="#f2f2f2", edgecolor="#b0b0b0", linewidth=0.2
            )
            handles.append(Patch(facecolor="#f2f2f2", edgecolor="#b0b0b0", label="county 县级单元"))
        data = metro_areas.to_crs(crs).reset_index(drop=True)
        for i, row in data.iterrows():
            colour = palette[i % len(palette)]
            _plot_polygons(
                ax,
                gpd.GeoSeries([row.geometry], crs=crs),
                color=colour,
                alpha=opacity,
                edgecolor=colour,
                linewidth=1.0,
            )
            name = row[label_column] if label_column else f"area {i + 1}"
            handles.append(
                Patch(facecolor=colour, alpha=opacity, edgecolor=colour, label=str(name))
            )
        if isochrones is not None and len(isochrones):
            # bands as light fills: their many vertices drawn as edges made a black scribble
            _plot_polygons(
                ax, isochrones.to_crs(crs), color="#2171b5", alpha=0.10, edgecolor="none"
            )
            handles.append(
                Patch(facecolor="#2171b5", alpha=0.10, edgecolor="none", label="isochrone 等时圈")
            )
        _draw_labels(ax, data, label_column, size=8)
        ax.legend(handles=handles, loc="lower right", fontsize=7)
        _finish_map(ax, title=title, scale_bar=True, north_arrow=True)
        _add_caption(fig, caption, synthetic)
    return fig


def small_multiples(
    gdf: gpd.GeoDataFrame,
    values: pd.DataFrame,
    *,
    value: str = "value",
    by: str = "year",
    key: str = "adcode",
    scheme: str = "fisher_jenks",
    k: int = 5,
    centre: float | None = None,
    cmap: str = "YlGnBu",
    unit: str = "",
    legend_title: str | None = None,
    outlines: gpd.GeoDataFrame | None = None,
    others: gpd.GeoDataFrame | None = None,
    others_label: str = NON_MEMBER_LABEL,
    title: str | None = None,
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    ncols: int = 3,
    panel_size: float = 4.2,
    colours: Mapping[str, str] | None = None,
    category_labels: Mapping[str, str] | None = None,
) -> Figure:
    """One choropleth panel per year (or other ``by`` value), classes pooled over all panels.

    Parameters
    ----------
    gdf
        Polygons with the join ``key`` column.
    values
        Long table with ``key``, ``by`` and ``value`` columns.
    centre
        Centre of a diverging ``cmap`` (as in :func:`choropleth`).
    colours, category_labels
        For a categorical ``value`` (e.g. LISA clusters): value -> colour and legend label;
        ``scheme``, ``k`` and ``cmap`` are then ignored. Units absent from a panel are white.
    others, others_label
        Context polygons in the neutral grey in every panel (as in :func:`choropleth`).

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"adcode": ["1", "2"]},
    ...     geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(2)], crs=4326)
    >>> v = pd.DataFrame({"adcode": ["1", "2", "1", "2"], "year": [2010, 2010, 2020, 2020],
    ...     "value": [1.0, 2.0, 3.0, 4.0]})
    >>> fig = small_multiples(g, v, k=2)
    >>> [a.get_title() for a in fig.axes if a.get_title()]
    ['2010', '2020']
    """
    for col in (key, by, value):
        _check_column(values, col)
    _check_column(gdf, key)
    panels = sorted(values[by].dropna().unique().tolist())
    if not panels:
        raise AggloInputError(f"small_multiples: no {by!r} values to draw.")
    categorical = colours is not None
    if categorical:
        ramp = list(colours.values())
    else:
        all_values = pd.to_numeric(values[value], errors="coerce").to_numpy(dtype=float)
        lower, upper = classify(all_values, scheme=scheme, k=k, centre=centre)
        ramp = class_colours(lower, upper, cmap, centre=centre)
    crs = map_crs(_extent(gdf, others))
    base = _to_crs(gdf, crs)
    context = _to_crs(others, crs) if others is not None else None
    # the polygons' paths, built once for all panels (and for all figures, if shared)
    paths: dict = _SHARED.paths if _SHARED is not None else {}
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    with _style():
        fig = Figure(
            figsize=(
                panel_size * ncols,
                _map_figsize(_to_crs(_extent(base, others), crs), panel_size)[1] * nrows + 0.4,
            ),
            layout="constrained",
        )
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for i, (ax, panel) in enumerate(zip(axes, panels, strict=False)):
            sub = values[values[by] == panel].drop_duplicates(key).set_index(key)[value]
            _draw_others(ax, context, crs, others_label, paths=paths)
            if categorical:
                cats = base[key].map(sub).astype(object)
                cats = cats.where(cats.notna(), None)
                _draw_categories(ax, base, cats, colours, category_labels or {}, "", paths=paths)
            else:
                v = pd.to_numeric(base[key].map(sub), errors="coerce").to_numpy(dtype=float)
                _draw_classes(ax, base, v, lower, upper, ramp, unit, paths=paths)
            if outlines is not None:
                _draw_outlines(ax, outlines, crs, "")
            _finish_map(ax, title=str(panel), scale_bar=i == 0, north_arrow=i == 0)
        for ax in axes[n:]:
            _hide_axis(ax)
        if categorical:
            texts = [str((category_labels or {}).get(c, c)) for c in colours]
        else:
            texts = class_labels(lower, upper, unit=unit)
        from matplotlib.patches import Patch

        legend_handles = [
            Patch(facecolor=c, edgecolor="#888888", label=t)
            for c, t in zip(ramp, texts, strict=True)
        ]
        if others is not None and len(others):
            legend_handles += [
                Patch(facecolor=NON_MEMBER_COLOUR, edgecolor="#aaaaaa", label=others_label)
            ]
        fig.legend(
            handles=legend_handles,
            title=legend_title or value,
            loc="outside right center",
            fontsize=7,
            title_fontsize=8,
        )
        if title:
            fig.suptitle(title)
        if categorical:
            text = caption or ""
        else:
            method = scheme.replace("_", " ")
            text = f"{caption or ''} Classes pooled over {by}s: {method}, k={len(upper)}.".strip()
        _add_caption(fig, text, synthetic)
    return fig


# --------------------------------------------------------------------------- charts
def _agglo_label(aid: str) -> str:
    return AGGLOMERATION_NAMES.get(str(aid), str(aid))


def radar_chart(
    dimensions: pd.DataFrame,
    *,
    year: int | None = None,
    value: str = "score_0_100",
    title: str | None = None,
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    ax=None,
    figsize: tuple[float, float] = (7.5, 6.5),
) -> Figure:
    """Radar chart of the five dimension scores of each agglomeration in one year.

    The first dimension is at the top, the others clockwise. Dimension names sit outside the
    outer ring, aligned away from the centre, and are pushed further out until no two overlap;
    the legend is outside the chart (right), the title above it.

    Parameters
    ----------
    dimensions
        Long table ``agglomeration_id, year, dimension, <value>`` (``IndexResult.dimensions``).
    year
        Year to draw (default: the latest).
    value
        Score column (default the 0-100 rescaled score).

    Examples
    --------
    >>> d = pd.DataFrame({"agglomeration_id": ["cy"] * 5, "year": 2020,
    ...     "dimension": ["development", "innovation", "infrastructure", "ecology", "public_services"],
    ...     "score_0_100": [10.0, 20.0, 30.0, 40.0, 50.0]})
    >>> fig = radar_chart(d)
    >>> len(fig.axes[0].lines)
    1
    """
    from agglo.reference.registry import DIMENSIONS

    for col in ("agglomeration_id", "year", "dimension", value):
        _check_column(dimensions, col)
    years = sorted(dimensions["year"].unique().tolist())
    if not years:
        raise AggloInputError("radar_chart: the dimensions table is empty.")
    year = years[-1] if year is None else year
    if year not in years:
        raise AggloInputError(f"year {year} is not in the table; years: {years}.")
    sub = dimensions[dimensions["year"] == year]
    dims = [d for d in DIMENSIONS if d in set(sub["dimension"])] or sorted(
        sub["dimension"].unique()
    )
    wide = sub.pivot_table(index="agglomeration_id", columns="dimension", values=value).reindex(
        columns=dims
    )
    wide = wide.reindex(
        [a for a in AGGLOMERATION_NAMES if a in wide.index]
        + [a for a in wide.index if a not in AGGLOMERATION_NAMES]
    )
    angles = np.linspace(0, 2 * np.pi, len(dims), endpoint=False)
    colours = agglomeration_colours(wide.index)
    with _style():
        own = ax is None
        if own:
            fig = Figure(figsize=figsize, layout="constrained")
            ax = fig.add_subplot(projection="polar")
        else:
            fig = ax.figure
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        for aid, row in wide.iterrows():
            vals = row.to_numpy(dtype=float)
            colour = colours[str(aid)]
            ax.plot(
                np.append(angles, angles[0]),
                np.append(vals, vals[0]),
                color=colour,
                linewidth=1.6,
                label=_agglo_label(aid),
            )
            ax.fill(angles, vals, color=colour, alpha=0.12)
        ax.set_xticks(angles)
        ax.set_xticklabels([])  # the spokes stay; the names are placed outside the ring below
        ax.tick_params(axis="y", labelsize=7)
        if value.endswith("0_100"):
            ax.set_ylim(0, 100)
        names = [f"{DIMENSIONS[d][0]}\n{DIMENSIONS[d][1]}" if d in DIMENSIONS else d for d in dims]
        heading = title or f"Dimension scores 维度得分, {year} ({value})"
        if own:
            fig.legend(loc="outside right upper", fontsize=8)
            fig.suptitle(heading, fontsize=11)
        else:
            ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8)
            ax.set_title(heading, fontsize=11)
        _ring_labels(ax, angles, names, fontsize=8)
        _add_caption(fig, caption, synthetic)
    return fig


def _ring_labels(ax, angles: np.ndarray, names: Sequence[str], *, fontsize: float) -> None:
    """Names at ``angles`` outside a polar axes' outer ring, moved outwards until none overlap.

    Each name is anchored on its spoke just outside the ring and aligned away from the centre
    (left on the right half, right on the left half, bottom at the top, top at the bottom), so
    its whole box lies outside the ring. Overlapping names are pushed out step by step.
    """
    rmax = ax.get_ylim()[1]
    offset, direction = ax.get_theta_offset(), ax.get_theta_direction()
    texts = []
    for theta, name in zip(angles, names, strict=True):
        phi = offset + direction * theta  # angle on screen, counter-clockwise from east
        cos, sin = np.cos(phi), np.sin(phi)
        texts.append(
            ax.text(
                theta,
                rmax * 1.08,
                name,
                fontsize=fontsize,
                ha="left" if cos > 0.2 else "right" if cos < -0.2 else "center",
                va="bottom" if sin > 0.2 else "top" if sin < -0.2 else "center",
                clip_on=False,
                gid="dimension_label",
            )
        )
    for _ in range(12):
        ax.figure.draw_without_rendering()
        boxes = [t.get_window_extent() for t in texts]
        crowded = {
            j
            for i in range(len(texts))
            for j in range(i + 1, len(texts))
            if boxes[i].overlaps(boxes[j])
        }
        if not crowded:
            return
        for j in crowded:
            theta, r = texts[j].get_position()
            texts[j].set_position((theta, r + rmax * 0.06))


def score_bars(
    composite: pd.DataFrame,
    *,
    value: str = "score",
    unit: str = "",
    title: str | None = "Composite integration score 一体化综合得分",
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    ax=None,
    figsize: tuple[float, float] = (8.0, 4.8),
) -> Figure:
    """Grouped bar chart of composite scores: agglomerations × years (seed 004, figure 2).

    Examples
    --------
    >>> c = pd.DataFrame({"agglomeration_id": ["yrd", "yrd", "cy", "cy"], "year": [2010, 2020] * 2,
    ...     "score": [1.0, 2.0, 0.5, 1.5]})
    >>> fig = score_bars(c)
    >>> sorted(round(float(p.get_height()), 1) for p in fig.axes[0].patches)
    [0.5, 1.0, 1.5, 2.0]
    """
    for col in ("agglomeration_id", "year", value):
        _check_column(composite, col)
    wide = composite.pivot_table(index="agglomeration_id", columns="year", values=value)
    order = [a for a in AGGLOMERATION_NAMES if a in wide.index] + [
        a for a in wide.index if a not in AGGLOMERATION_NAMES
    ]
    wide = wide.reindex(order)
    years = list(wide.columns)
    x = np.arange(len(wide))
    width = 0.8 / max(len(years), 1)
    greys = matplotlib.colormaps["Blues"](np.linspace(0.35, 0.9, max(len(years), 1)))
    with _style():
        fig, ax = _new_axes(ax, figsize)
        for j, yr in enumerate(years):
            bars = ax.bar(
                x + (j - (len(years) - 1) / 2) * width,
                wide[yr].to_numpy(dtype=float),
                width,
                label=str(yr),
                color=greys[j],
                edgecolor="#333333",
                linewidth=0.4,
            )
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_xticks(x)
        ax.set_xticklabels([_agglo_label(a).replace(" ", "\n", 1) for a in wide.index], fontsize=8)
        ax.set_ylabel(f"{value}{f' ({unit})' if unit else ''}")
        ax.legend(title="year 年份", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        if title:
            ax.set_title(title, fontsize=11)
        _add_caption(fig, caption, synthetic)
    return fig


# --------------------------------------------------------------------------- saving
_FORMATS = ("png", "svg")


def save_figure(
    fig: Figure,
    path: str | Path,
    *,
    formats: Sequence[str] = _FORMATS,
    dpi: int = 150,
    caption: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Save ``fig`` atomically as ``<path>.png`` and ``<path>.svg`` (suffix of ``path`` ignored).

    ``caption`` is also stored in the files' metadata (PNG ``Description`` text chunk, SVG
    ``dc:description``), so a report rebuilt from the files can show it. The files are
    reproducible: the same figure saved again gives the same bytes (no time stamp, fixed SVG
    ids). Returns the paths.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> fig = Figure(); _ = fig.add_subplot().plot([0, 1])
    >>> [p.name for p in save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "line")]
    ['line.png', 'line.svg']
    """
    bad = [f for f in formats if f not in _FORMATS]
    if bad:
        raise AggloInputError(f"formats must be among {_FORMATS}; got {list(formats)!r}.")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in {".png", ".svg"} else path
    written = []
    # svg.hashsalt fixes the clip-path and glyph ids (else random per save) and Date=None
    # leaves out the time stamp, so one figure saved twice gives the same bytes (PNG already)
    metrics = _SHARED.metrics if _SHARED is not None else {}
    with _style(), matplotlib.rc_context({"svg.hashsalt": "agglo"}):
        bbox = _fix_layout(fig, dpi, metrics)
        for fmt in formats:
            target = stem.with_name(f"{stem.name}.{fmt}")
            canvas = fig.canvas
            with atomic_path(target, force=force) as tmp:
                meta: dict[str, str | None] = {"Description": caption} if caption else {}
                extra: dict[str, Any] = {}
                if fmt == "png":
                    extra["pil_kwargs"] = {"compress_level": _PNG_COMPRESS_LEVEL}
                    # savefig draws the PNG on the figure's canvas: ours, with the text sizes
                    # the layout pass measured
                    _SharedMetricsCanvasAgg(fig, metrics)
                else:
                    meta["Date"] = None
                try:
                    fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches=bbox, metadata=meta, **extra)
                finally:
                    fig.set_canvas(canvas)
            written.append(target)
    return written


#: zlib level of the PNG files: the same pixels as the default level 6, written in about half
#: the time, and the files of agglo's flat-coloured maps are a few per cent smaller, not larger
_PNG_COMPRESS_LEVEL = 3


def _fix_layout(fig: Figure, dpi: float, metrics: dict | None = None):
    """Lay ``fig`` out once and return its tight bounding box (inches, padded as savefig does).

    The layout engine is then switched off (the axes keep their places), so each format is
    drawn once: ``savefig`` with ``bbox_inches="tight"`` and a layout engine draws the figure
    twice per format, and the text layout (CJK font) dominates the cost of a map. The layout
    pass runs only the layout engine and measures the artists; nothing is drawn (the text
    sizes it measures go into ``metrics``, for the PNG: :class:`_SharedMetricsCanvasAgg`).
    """
    canvas, old_dpi = fig.canvas, fig.dpi
    try:
        fig.dpi = dpi
        renderer = _SharedMetricsCanvasAgg(fig, metrics).get_renderer()
        engine = fig.get_layout_engine()
        if not _LAYOUT_ONLY:  # the reference: a whole draw, as savefig's own layout pass
            with renderer._draw_disabled():
                fig.draw(renderer)
        elif engine is not None and fig.axes:
            with contextlib.suppress(ValueError):  # as Figure.draw: a layout that cannot fit
                engine.execute(fig)
        bbox = fig.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
    finally:
        fig.dpi = old_dpi
        fig.set_canvas(canvas)
    with matplotlib.rc_context(
        {"figure.autolayout": False, "figure.constrained_layout.use": False}
    ):
        fig.set_layout_engine(None)
    return bbox


class _SharedMetricsCanvasAgg(FigureCanvasAgg):
    """An Agg canvas whose renderers measure each text once per ``metrics`` memo.

    Matplotlib keeps text sizes per renderer, and the layout pass and the PNG each have
    their own (the PNG's is the size of the cropped figure), so every text of a figure was
    laid out with FreeType twice. The renderers of this canvas look sizes up in ``metrics``
    first (shared by the layout pass and the PNG of a figure, and by the figures drawn inside
    :func:`shared_geometries`); a size depends only on the string, font properties, DPI and
    the font rc settings, which are the key. The drawing itself is matplotlib's. Math text
    is measured as before. Should a matplotlib version draw without calling
    :meth:`get_renderer`, the text is measured again, as it was: the same pixels.
    """

    def __init__(self, figure: Figure, metrics: dict | None = None) -> None:
        super().__init__(figure)
        self.text_metrics: dict = {} if metrics is None else metrics

    def get_renderer(self):
        renderer = super().get_renderer()
        if _SHARE_TEXT_METRICS and getattr(renderer, "_agglo_text_metrics", None) is not (
            self.text_metrics
        ):
            _measure_once(renderer, self.text_metrics)
        return renderer


def _measure_once(renderer, metrics: dict) -> None:
    """Make ``renderer.get_text_width_height_descent`` look sizes up in ``metrics`` first."""
    measure = renderer.get_text_width_height_descent  # the renderer's own (bound) method
    rc = matplotlib.rcParams

    def get_text_width_height_descent(s, prop, ismath):
        if ismath:
            return measure(s, prop, ismath)
        settings = (rc["text.hinting"], rc["text.hinting_factor"], rc["text.kerning_factor"])
        key = (s, prop, renderer.dpi, settings)
        size = metrics.get(key)
        if size is None:
            size = metrics[(s, prop.copy(), renderer.dpi, settings)] = measure(s, prop, ismath)
        return size

    renderer.get_text_width_height_descent = get_text_width_height_descent
    renderer._agglo_text_metrics = metrics
