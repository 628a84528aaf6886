"""QGIS styles (QML) for agglo's layers, stored where QGIS looks for them.

- :func:`graduated_qml` (choropleths: the cities' lag score, coreness, composite scores),
  :func:`categorized_qml` (:func:`lisa_qml` with the conventional LISA colours, membership),
  :func:`single_symbol_qml` (semi-transparent metro catchments, isochrones, outlines).
- :func:`write_layer_styles` stores styles in a GeoPackage's ``layer_styles`` table (schema as
  QGIS creates it, registered in ``gpkg_contents`` as an attributes table), so the layer opens
  in QGIS already styled; :func:`agglo.outputs.writers.export` writes the same QML as ``<name>.qml``
  beside a shapefile (field names remapped to the 10-byte names).
- :func:`validate_qml` parses a style back (well-formed XML, renderer type, class count, field
  names present in the layer); :func:`read_layer_styles` reads the table back.

Classification (:func:`classify`) is shared with :mod:`agglo.plot`, so a PNG map and the
QGIS layer show the same classes.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from agglo._version import __version__
from agglo.errors import AggloInputError, ValidationError
from agglo.outputs.fonts import CJK_FAMILY

__all__ = [
    "LISA_COLOURS",
    "LISA_LABELS",
    "SCHEMES",
    "QmlInfo",
    "categorized_qml",
    "classify",
    "fisher_jenks_bins",
    "graduated_qml",
    "lisa_qml",
    "read_layer_styles",
    "single_symbol_qml",
    "validate_qml",
    "write_layer_styles",
]

log = logging.getLogger(__name__)

#: conventional LISA cluster colours (as in GeoDa): HH red, LL blue, LH light blue, HL pink
LISA_COLOURS: dict[str, str] = {
    "HH": "#d7191c",
    "LL": "#2c7bb6",
    "LH": "#abd9e9",
    "HL": "#f4a5ae",
    "ns": "#d3d3d3",
}
#: legend labels of the LISA clusters
LISA_LABELS: dict[str, str] = {
    "HH": "High-High 高-高",
    "LL": "Low-Low 低-低",
    "LH": "Low-High 低-高",
    "HL": "High-Low 高-低",
    "ns": "not significant 不显著",
}

#: classification schemes (mapclassify classes); ``k`` is ignored by the last four
SCHEMES: tuple[str, ...] = (
    "fisher_jenks",
    "quantiles",
    "equal_interval",
    "jenks_caspall",
    "maximum_breaks",
    "headtail_breaks",
    "std_mean",
    "box_plot",
    "user_defined",
)

_QGIS_VERSION = "3.34.0-Prizren"
_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
_GEOM = {"polygon": ("fill", 2), "line": ("line", 1), "point": ("marker", 0)}
_RENDERERS = ("graduatedSymbol", "categorizedSymbol", "singleSymbol")


# --------------------------------------------------------------------------- classification
def classify(
    values: Iterable[float],
    *,
    scheme: str = "fisher_jenks",
    k: int = 5,
    bins: Sequence[float] | None = None,
    centre: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class bounds of ``values`` (NaN ignored) with a mapclassify scheme.

    Parameters
    ----------
    values
        Numbers to classify; NaN/None are skipped.
    scheme
        One of :data:`SCHEMES`.
    k
        Number of classes (reduced to the number of distinct values when fewer).
    bins
        Upper bounds for ``scheme="user_defined"``.
    centre
        For diverging data (e.g. lag scores around 0): a class bound is put at ``centre`` when
        it lies inside the data range, so no class straddles it (see :func:`class_colours`).

    Returns
    -------
    (lower, upper) : tuple of numpy.ndarray
        Lower and upper bound of each class; ``lower[0]`` is the minimum value.

    Examples
    --------
    >>> lower, upper = classify([1, 2, 3, 10, 11, 12], scheme="equal_interval", k=2)
    >>> [float(v) for v in lower], [float(v) for v in upper]
    ([1.0, 6.5], [6.5, 12.0])
    """
    if scheme not in SCHEMES:
        raise AggloInputError(f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}.")
    y = pd.to_numeric(pd.Series(list(values), dtype="float64"), errors="coerce").dropna()
    y = y.to_numpy()
    if y.size == 0:
        raise AggloInputError("cannot classify: no finite values.")
    n_unique = np.unique(y).size
    if scheme == "user_defined":
        if bins is None:
            raise AggloInputError("scheme='user_defined' needs bins=[upper bounds].")
        upper = np.asarray(sorted(bins), dtype=float)
        if upper[-1] < y.max():
            upper = np.append(upper, y.max())
    elif n_unique == 1:
        upper = np.array([y.max()])
    else:
        if not isinstance(k, int | np.integer) or k < 1:
            raise AggloInputError(f"k must be a positive integer; got {k!r}.")
        k_eff = min(int(k), n_unique)
        # mapclassify warns when ties leave fewer classes than asked; _data_bounds handles it
        # and the map caption states the number of classes drawn
        if scheme == "fisher_jenks" and y.size <= 5000 and "mapclassify" not in sys.modules:
            # the same bins as mapclassify; importing it compiles its numba kernel (seconds),
            # which pays off only for many values
            bins = fisher_jenks_bins(y, k_eff)
            return _with_centre(y, _data_bounds(y, bins, k_eff), centre)
        import mapclassify

        makers = {
            "fisher_jenks": lambda: mapclassify.FisherJenks(y, k=k_eff),
            "quantiles": lambda: mapclassify.Quantiles(y, k=k_eff),
            "equal_interval": lambda: mapclassify.EqualInterval(y, k=k_eff),
            "jenks_caspall": lambda: mapclassify.JenksCaspall(y, k=k_eff),
            "maximum_breaks": lambda: mapclassify.MaximumBreaks(y, k=k_eff),
            "headtail_breaks": lambda: mapclassify.HeadTailBreaks(y),
            "std_mean": lambda: mapclassify.StdMean(y),
            "box_plot": lambda: mapclassify.BoxPlot(y),
        }
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Not enough unique values", UserWarning)
            cls = makers[scheme]()
        upper = _data_bounds(y, np.asarray(cls.bins, dtype=float), k_eff)
    return _with_centre(y, upper, centre)


def _with_centre(
    y: np.ndarray, upper: np.ndarray, centre: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) with a bound at ``centre`` inside the data range and no empty class.

    A class left empty by the added centre bound is merged into its neighbour on the same side
    of the centre (its bound is dropped; the centre bound stays, so no class straddles it).
    """
    upper = upper[upper >= y.min()] if (upper >= y.min()).any() else upper[-1:]
    if centre is not None and y.min() < centre < y.max() and centre not in upper:
        upper = np.sort(np.append(upper, float(centre)))
        while upper.size > 1:
            idx = np.clip(np.searchsorted(upper, y, side="left"), 0, upper.size - 1)
            empty = np.flatnonzero(np.bincount(idx, minlength=upper.size) == 0)
            if not empty.size:
                break
            i = int(empty[0])  # never the first class (it holds the minimum) nor the last
            upper = np.delete(upper, i - 1 if upper[i] == centre else i)
    lower = np.concatenate([[min(y.min(), upper[0])], upper[:-1]])
    return lower, upper


def fisher_jenks_bins(values: Iterable[float], k: int) -> np.ndarray:
    """Upper bounds of the Fisher-Jenks optimal classes (mapclassify's ``FisherJenks.bins``).

    The same dynamic programme as mapclassify (the same float32 sums, the same tie rule, so the
    same bins to the last bit: ``tests/test_styles.py`` checks it against mapclassify), written
    with numpy: importing mapclassify compiles its numba kernel, which costs seconds per run.

    Parameters
    ----------
    values
        Finite numbers (at least ``k`` distinct ones).
    k
        Number of classes (>= 1).

    Returns
    -------
    numpy.ndarray
        ``k`` upper bounds, ascending; the last is the maximum.

    Examples
    --------
    >>> [float(b) for b in fisher_jenks_bins([1, 2, 3, 10, 11, 12, 30], 3)]
    [3.0, 12.0, 30.0]
    """
    x = np.sort(np.asarray(list(values) if not hasattr(values, "__len__") else values, float))
    n, k = x.size, int(k)
    if k < 1 or np.unique(x).size < k:
        raise AggloInputError(f"fisher_jenks_bins: need at least k={k} distinct values.")
    x32 = x.astype(np.float32)
    mat1 = np.zeros((n + 1, k + 1), dtype=np.int32)  # start (1-based) of the last class
    mat2 = np.zeros((n + 1, k + 1), dtype=np.float32)  # least within-class sum of squares
    mat1[1, 1:] = 1
    mat2[2:, 1:] = np.inf
    for last in range(2, n + 1):
        rev = x32[last - 1 :: -1]  # the values from `last` back to the first
        s1 = np.cumsum(rev, dtype=np.float32)
        s2 = np.cumsum(rev * rev, dtype=np.float32)
        w = np.arange(1, last + 1, dtype=np.float32)
        v = s2 - (s1 * s1) / w  # variance of the last m values, m = 1..last (float32)
        if k > 1:
            # m = 1..last-1: classes 1..j-1 cover the first last-m values
            cand = v[:-1, None] + mat2[last - 1 : 0 : -1, 1:k]
            # mapclassify keeps the last m reaching the minimum (it updates on >=)
            pick = cand.shape[0] - 1 - np.argmin(cand[::-1], axis=0)
            mat1[last, 2:] = last - pick  # i3 = last - m + 1, m = pick + 1
            mat2[last, 2:] = cand[pick, np.arange(k - 1)]
        mat1[last, 1] = 1
        mat2[last, 1] = v[-1]
    kclass = np.zeros(k + 1)
    kclass[k], kclass[0] = x[n - 1], x[0]
    row = n
    for count in range(k, 1, -1):
        pivot = int(mat1[row, count])
        kclass[count - 1] = x[pivot - 2]
        row = pivot - 1
    return kclass[1:]


def class_colours(
    lower: Sequence[float],
    upper: Sequence[float],
    cmap: str,
    *,
    centre: float | None = None,
) -> list[tuple[float, ...]]:
    """One colour per class, shared by the QGIS style and the PNG map.

    Without ``centre`` the colormap is sampled evenly. With ``centre`` (a diverging map) each
    class takes the colour of its midpoint's distance from the centre, scaled by the largest
    distance on either side, so classes below the centre use one half of the colormap, classes
    above it the other half, and equal distances get equally strong colours.

    Examples
    --------
    >>> c = class_colours([-2, -1, 0], [-1, 0, 4], "RdBu", centre=0)
    >>> import matplotlib; cm = matplotlib.colormaps["RdBu"]
    >>> c[1] == cm(0.5 - 0.5 * 0.5 / 4), c[2] == cm(0.5 + 0.5 * 2 / 4)
    (True, True)
    """
    if centre is None:
        return _ramp(cmap, len(upper))
    _ramp(cmap, 1)  # checks the name
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    extent = float(np.max(np.abs(np.concatenate([lo, hi]) - centre))) or 1.0
    mid = (lo + hi) / 2 - centre
    return [cm(float(np.clip(0.5 + 0.5 * m / extent, 0.0, 1.0))) for m in mid]


def _data_bounds(y: np.ndarray, bins: np.ndarray, k: int) -> np.ndarray:
    """mapclassify's upper bounds without empty classes, repeated ties or a lone-minimum class.

    Tied bounds (quantiles of zero-inflated data) collapse into one and a bound whose class
    holds no value is dropped, so every class holds at least one value. A first class holding
    only the minimum (``lower == upper``) is kept when the minimum is a tie mass (at least half
    a class of the values, e.g. the zeros of coreness) and otherwise merged into the next class,
    so no degenerate "1.4 – 1.4" class is left for one outlier.
    """
    upper = np.unique(bins)
    if upper[-1] < y.max():
        upper = np.append(upper, y.max())
    counts = np.bincount(
        np.clip(np.searchsorted(upper, y, side="left"), 0, upper.size - 1), minlength=upper.size
    )
    keep = counts > 0
    keep[-1] = True  # the last bound is the maximum; an empty last class merges downwards
    if counts[-1] == 0 and upper.size > 1:
        keep[np.flatnonzero(counts[:-1])[-1:]] = False
    upper = upper[keep]
    n_min = int(np.sum(y == y.min()))
    if upper.size > 1 and upper[0] <= y.min() and n_min < max(2, y.size / (2 * k)):
        upper = upper[1:]
    return upper


def class_labels(lower: Sequence[float], upper: Sequence[float], *, unit: str = "") -> list[str]:
    """Legend labels ``"a – b unit"`` with enough decimals to tell the bounds apart.

    Decimals follow the magnitude of the range (none from 100 up, with thousands separators);
    a class holding a single value (``lower == upper``, e.g. the zeros of zero-inflated data)
    is labelled with that value alone.

    Examples
    --------
    >>> class_labels([0.0, 0.25], [0.25, 1.0], unit="km/km²")
    ['0.00 – 0.25 km/km²', '0.25 – 1.00 km/km²']
    >>> class_labels([0.0, 0.0004, 0.003], [0.0004, 0.003, 1.0])
    ['0.0000 – 0.0004', '0.0004 – 0.0030', '0.0030 – 1.0000']
    >>> class_labels([0.0, 0.0], [0.0, 0.8])
    ['0.00', '0.00 – 0.80']
    >>> class_labels([20512.3, 32940.0], [32940.0, 141000.5], unit="yuan")
    ['20,512 – 32,940 yuan', '32,940 – 141,000 yuan']
    """
    bounds = np.concatenate([np.asarray(lower, float), np.asarray(upper, float)])
    span = float(np.nanmax(bounds) - np.nanmin(bounds)) if bounds.size else 0.0
    decimals = 0 if span >= 100 else 1 if span >= 10 else 2 if span >= 0.5 else 3
    distinct = len(np.unique(np.round(bounds[np.isfinite(bounds)], 12)))
    while decimals < 8 and len({f"{b:,.{decimals}f}" for b in bounds}) < distinct:
        decimals += 1  # enough decimals to tell every bound apart (e.g. coreness 0.0004)
    suffix = f" {unit}" if unit else ""
    return [
        f"{hi:,.{decimals}f}{suffix}"
        if lo == hi
        else f"{lo:,.{decimals}f} – {hi:,.{decimals}f}{suffix}"
        for lo, hi in zip(lower, upper, strict=True)
    ]


# --------------------------------------------------------------------------- QML building
def _rgba(colour: str | Sequence[float], alpha: float = 1.0) -> str:
    from matplotlib.colors import to_rgba

    r, g, b, a = to_rgba(colour)
    return f"{round(r * 255)},{round(g * 255)},{round(b * 255)},{round(a * alpha * 255)}"


def _option(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, "Option", type="QString", name=name, value=value)


def _symbol(
    name: str,
    colour: str | Sequence[float],
    *,
    geometry: str,
    opacity: float = 1.0,
    outline: str = "#5a5a5a",
    outline_width: float = 0.26,
) -> ET.Element:
    kind = _GEOM[geometry][0]
    sym = ET.Element(
        "symbol",
        type=kind,
        name=name,
        alpha="1",
        clip_to_extent="1",
        force_rhr="0",
        is_animated="0",
        frame_rate="10",
    )
    ddp = ET.SubElement(sym, "data_defined_properties")
    opt = ET.SubElement(ddp, "Option", type="Map")
    _option(opt, "name", "")
    ET.SubElement(opt, "Option", name="properties")
    _option(opt, "type", "collection")
    cls = {"fill": "SimpleFill", "line": "SimpleLine", "marker": "SimpleMarker"}[kind]
    layer = ET.SubElement(sym, "layer", {"class": cls, "enabled": "1", "locked": "0", "pass": "0"})
    props = ET.SubElement(layer, "Option", type="Map")
    if kind == "fill":
        _option(props, "color", _rgba(colour, opacity))
        _option(props, "style", "solid")
        _option(props, "outline_color", _rgba(outline))
        _option(props, "outline_style", "solid")
        _option(props, "outline_width", str(outline_width))
        _option(props, "outline_width_unit", "MM")
        _option(props, "joinstyle", "bevel")
    elif kind == "line":
        _option(props, "line_color", _rgba(colour, opacity))
        _option(props, "line_style", "solid")
        _option(props, "line_width", str(max(outline_width, 0.5)))
        _option(props, "line_width_unit", "MM")
    else:
        _option(props, "color", _rgba(colour, opacity))
        _option(props, "name", "circle")
        _option(props, "outline_color", _rgba(outline))
        _option(props, "size", "2.6")
        _option(props, "size_unit", "MM")
    return sym


def _root(*, labels: str | None, aliases: Mapping[str, str] | None, geometry: str) -> ET.Element:
    root = ET.Element(
        "qgis",
        version=_QGIS_VERSION,
        styleCategories="Symbology|Labeling|Fields|Rendering",
        labelsEnabled="1" if labels else "0",
    )
    flags = ET.SubElement(root, "flags")
    ET.SubElement(flags, "Identifiable").text = "1"
    return root


def _finish(
    root: ET.Element,
    renderer: ET.Element,
    *,
    labels: str | None,
    aliases: Mapping[str, str] | None,
    geometry: str,
    opacity: float = 1.0,
) -> str:
    root.append(renderer)
    if labels:
        lab = ET.SubElement(root, "labeling", type="simple")
        settings = ET.SubElement(lab, "settings", calloutType="simple")
        ET.SubElement(
            settings,
            "text-style",
            fieldName=labels,
            isExpression="0",
            fontFamily=CJK_FAMILY,  # Qt falls back to any installed CJK font
            fontSize="8",
            fontSizeUnit="Point",
            textColor="30,30,30,255",
            textOpacity="1",
            namedStyle="Regular",
        )
        ET.SubElement(
            settings,
            "text-buffer",
            bufferDraw="1",
            bufferSize="0.8",
            bufferColor="255,255,255,255",
            bufferOpacity="0.8",
            bufferSizeUnits="MM",
        )
        ET.SubElement(settings, "placement", placement="1" if geometry == "polygon" else "0")
        ET.SubElement(settings, "rendering", obstacle="1", displayAll="0", drawLabels="1")
    ET.SubElement(root, "layerOpacity").text = f"{opacity:g}"
    if aliases:
        al = ET.SubElement(root, "aliases")
        for i, (fld, alias) in enumerate(aliases.items()):
            ET.SubElement(al, "alias", field=fld, index=str(i), name=alias)
    ET.SubElement(root, "layerGeometryType").text = str(_GEOM[geometry][1])
    ET.indent(root)
    return _DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


def _renderer(kind: str, **attrs: str) -> ET.Element:
    return ET.Element(
        "renderer-v2",
        type=kind,
        symbollevels="0",
        forceraster="0",
        enableorderby="0",
        referencescale="-1",
        **attrs,
    )


def _check_geometry(geometry: str) -> None:
    if geometry not in _GEOM:
        raise AggloInputError(f"geometry must be one of {', '.join(_GEOM)}; got {geometry!r}.")


def graduated_qml(
    column: str,
    lower: Sequence[float],
    upper: Sequence[float],
    *,
    cmap: str = "YlGnBu",
    unit: str = "",
    labels: str | None = None,
    aliases: Mapping[str, str] | None = None,
    geometry: str = "polygon",
    method: str = "",
    centre: float | None = None,
    missing: tuple[str, str] | None = None,
) -> str:
    """A QGIS graduated (choropleth) style on ``column`` with the given class bounds.

    Parameters
    ----------
    column
        Numeric field to classify.
    lower, upper
        Class bounds, e.g. from :func:`classify`.
    cmap
        Matplotlib colormap name sampled evenly for the classes.
    unit
        Unit shown in the legend labels.
    labels
        Field to label features with (e.g. ``"name_zh"``), or None.
    aliases
        Field -> display name (with units) shown in QGIS' attribute table.
    geometry
        ``"polygon"``, ``"line"`` or ``"point"``.
    method
        Name of the classification (recorded in the style).
    centre
        Centre of a diverging colormap (see :func:`class_colours`).
    missing
        ``(label, colour)`` for features whose value is NULL (e.g. non-member cities), which a
        graduated renderer would otherwise not draw at all: the style classifies
        ``coalesce("column", s)`` with ``s`` below every class and draws ``s`` in this colour.

    Returns
    -------
    str
        QML (QGIS 3 style XML).

    Examples
    --------
    >>> qml = graduated_qml("lag_score", [-1, 0], [0, 1], unit="")
    >>> info = validate_qml(qml, fields=["lag_score"])
    >>> info.renderer, info.attribute, info.n_classes
    ('graduatedSymbol', 'lag_score', 2)
    """
    import matplotlib

    _check_geometry(geometry)
    if len(lower) != len(upper) or not len(upper):
        raise AggloInputError("graduated_qml: lower and upper must be non-empty and equally long.")
    colours = class_colours(lower, upper, cmap, centre=centre)
    texts = class_labels(lower, upper, unit=unit)
    root = _root(labels=labels, aliases=aliases, geometry=geometry)
    attr = column
    if missing is not None:
        span = float(max(upper) - min(lower)) or 1.0
        sentinel = float(np.floor(min(lower) - span - 1))
        attr = f'coalesce("{column}", {sentinel!r})'
        lower, upper = [sentinel, *lower], [sentinel, *upper]
        colours, texts = [missing[1], *colours], [missing[0], *texts]
    rend = _renderer("graduatedSymbol", attr=attr, graduatedMethod="GraduatedColor")
    ranges = ET.SubElement(rend, "ranges")
    symbols = ET.SubElement(rend, "symbols")
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        ET.SubElement(
            ranges,
            "range",
            lower=repr(float(lo)),
            upper=repr(float(hi)),
            label=texts[i],
            symbol=str(i),
            render="true",
        )
        symbols.append(_symbol(str(i), colours[i], geometry=geometry))
    src = ET.SubElement(rend, "source-symbol")
    src.append(_symbol("0", colours[0], geometry=geometry))
    ramp = ET.SubElement(rend, "colorramp", type="gradient", name="[source]")
    ropt = ET.SubElement(ramp, "Option", type="Map")
    cm = matplotlib.colormaps[cmap]
    _option(ropt, "color1", _rgba(cm(0.0)))
    _option(ropt, "color2", _rgba(cm(1.0)))
    _option(ropt, "discrete", "0")
    _option(ropt, "rampType", "gradient")
    ET.SubElement(rend, "classificationMethod", id=method or "Custom")
    ET.SubElement(rend, "rotation")
    ET.SubElement(rend, "sizescale")
    return _finish(root, rend, labels=labels, aliases=aliases, geometry=geometry)


def _ramp(cmap: str, n: int) -> list[tuple[float, ...]]:
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise AggloInputError(f"unknown colormap {cmap!r} (any matplotlib colormap name).") from exc
    if n == 1:
        return [cm(0.6)]
    return [cm(0.1 + 0.85 * i / (n - 1)) for i in range(n)]


def categorized_qml(
    column: str,
    categories: Mapping[str, str],
    *,
    category_labels: Mapping[str, str] | None = None,
    labels: str | None = None,
    aliases: Mapping[str, str] | None = None,
    geometry: str = "polygon",
    opacity: float = 1.0,
) -> str:
    """A QGIS categorized style: one colour per value of ``column``.

    Parameters
    ----------
    column
        Field holding the category values.
    categories
        Value -> colour (any matplotlib colour). Values are matched as strings.
    category_labels
        Value -> legend label (default: the value).

    Examples
    --------
    >>> qml = categorized_qml("agglomeration_id", {"yrd": "red", "cy": "blue"})
    >>> validate_qml(qml).n_classes
    2
    """
    _check_geometry(geometry)
    if not categories:
        raise AggloInputError("categorized_qml: no categories given.")
    category_labels = category_labels or {}
    root = _root(labels=labels, aliases=aliases, geometry=geometry)
    rend = _renderer("categorizedSymbol", attr=column)
    cats = ET.SubElement(rend, "categories")
    symbols = ET.SubElement(rend, "symbols")
    for i, (value, colour) in enumerate(categories.items()):
        ET.SubElement(
            cats,
            "category",
            value=str(value),
            label=str(category_labels.get(value, value)),
            symbol=str(i),
            render="true",
            type="string",
        )
        symbols.append(_symbol(str(i), colour, geometry=geometry, opacity=opacity))
    ET.SubElement(rend, "rotation")
    ET.SubElement(rend, "sizescale")
    return _finish(root, rend, labels=labels, aliases=aliases, geometry=geometry)


def lisa_qml(column: str = "cluster", **kwargs: object) -> str:
    """Categorized style of LISA clusters with the conventional colours (:data:`LISA_COLOURS`).

    Examples
    --------
    >>> info = validate_qml(lisa_qml("lisa_cluster"))
    >>> info.renderer, info.n_classes
    ('categorizedSymbol', 5)
    """
    return categorized_qml(
        column,
        LISA_COLOURS,
        category_labels=LISA_LABELS,
        **kwargs,  # type: ignore[arg-type]
    )


def single_symbol_qml(
    colour: str = "#fdae61",
    *,
    opacity: float = 0.45,
    outline: str = "#b35806",
    outline_width: float = 0.5,
    labels: str | None = None,
    aliases: Mapping[str, str] | None = None,
    geometry: str = "polygon",
) -> str:
    """A single-symbol style; the fill is semi-transparent (``opacity``) so layers below show.

    Examples
    --------
    >>> info = validate_qml(single_symbol_qml(opacity=0.4))
    >>> info.renderer, info.n_classes, round(info.fill_alpha, 2)
    ('singleSymbol', 1, 0.4)
    """
    _check_geometry(geometry)
    if not 0 <= opacity <= 1:
        raise AggloInputError(f"opacity must be in [0, 1]; got {opacity!r}.")
    root = _root(labels=labels, aliases=aliases, geometry=geometry)
    rend = _renderer("singleSymbol")
    symbols = ET.SubElement(rend, "symbols")
    symbols.append(
        _symbol(
            "0",
            colour,
            geometry=geometry,
            opacity=opacity,
            outline=outline,
            outline_width=outline_width,
        )
    )
    ET.SubElement(rend, "rotation")
    ET.SubElement(rend, "sizescale")
    return _finish(root, rend, labels=labels, aliases=aliases, geometry=geometry)


# --------------------------------------------------------------------------- validation
@dataclass(frozen=True)
class QmlInfo:
    """What :func:`validate_qml` found in a style."""

    renderer: str
    attribute: str | None
    n_classes: int
    fields_used: tuple[str, ...]
    fill_alpha: float


def validate_qml(qml: str, *, fields: Iterable[str] | None = None) -> QmlInfo:
    """Parse a QML style back and check it; raise :class:`~agglo.errors.ValidationError`.

    Checks: well-formed XML with a ``qgis`` root, a known ``renderer-v2`` type, one symbol per
    class, and (when ``fields`` is given) that every field the style uses exists in the layer.

    Examples
    --------
    >>> validate_qml("<qgis><renderer-v2 type='singleSymbol'>")
    Traceback (most recent call last):
    ...
    agglo.errors.ValidationError: QML style: 1 problem(s)
      - not well-formed XML: ...
    """
    try:
        root = ET.fromstring(qml.split("\n", 1)[1] if qml.startswith("<!DOCTYPE") else qml)
    except ET.ParseError as exc:
        raise ValidationError([f"not well-formed XML: {exc}"], "QML style") from exc
    problems = []
    if root.tag != "qgis":
        problems.append(f"root element is <{root.tag}>, not <qgis>")
    rend = root.find("renderer-v2")
    if rend is None:
        raise ValidationError(["no <renderer-v2> element"], "QML style")
    kind = rend.get("type", "")
    if kind not in _RENDERERS:
        problems.append(f"renderer type {kind!r} is not one of {_RENDERERS}")
    attr = rend.get("attr")
    if kind == "graduatedSymbol":
        n = len(rend.findall("ranges/range"))
    elif kind == "categorizedSymbol":
        n = len(rend.findall("categories/category"))
    else:
        n = 1
    n_symbols = len(rend.findall("symbols/symbol"))
    if n_symbols != n:
        problems.append(f"{n} classes but {n_symbols} symbols")
    if kind != "singleSymbol" and not attr:
        problems.append(f"{kind} renderer without attr")
    # an expression (e.g. coalesce("lag_score", -9)) uses the fields it quotes
    used = (re.findall(r'"([^"]+)"', attr) if '"' in attr else [attr]) if attr else []
    used += [
        e.get("fieldName", "") for e in root.iter("text-style") if e.get("isExpression") != "1"
    ]
    used = tuple(u for u in used if u)
    if fields is not None:
        have = set(fields)
        missing = [u for u in used if u not in have]
        if missing:
            problems.append(f"field(s) {missing} used by the style are not in the layer")
    fill = rend.find("symbols/symbol/layer/Option/Option[@name='color']")
    if fill is None:
        fill = rend.find("symbols/symbol/layer/Option/Option[@name='line_color']")
    alpha = int(fill.get("value", "0,0,0,255").split(",")[3]) / 255 if fill is not None else 1.0
    if problems:
        raise ValidationError(problems, "QML style")
    return QmlInfo(kind, attr, n, used, alpha)


# --------------------------------------------------------------------------- GeoPackage storage
_CREATE_LAYER_STYLES = """
CREATE TABLE IF NOT EXISTS layer_styles (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  f_table_catalog TEXT(256),
  f_table_schema TEXT(256),
  f_table_name TEXT(256),
  f_geometry_column TEXT(256),
  styleName TEXT(30),
  styleQML TEXT,
  styleSLD TEXT,
  useAsDefault BOOLEAN,
  description TEXT,
  owner TEXT(30),
  ui TEXT(30),
  update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)
"""


def write_layer_styles(
    gpkg_path: str | Path,
    styles: Mapping[str, str],
    *,
    style_name: str | None = None,
    description: str | None = None,
) -> None:
    """Store QML styles as the default styles of layers in a GeoPackage.

    Creates the ``layer_styles`` table as QGIS does (and registers it in ``gpkg_contents``
    as an attributes table) and replaces earlier styles of the same name for those layers.

    Parameters
    ----------
    gpkg_path
        An existing GeoPackage holding the layers.
    styles
        Layer name -> QML. Each style is validated against the layer's fields.
    style_name
        Name shown in QGIS' style manager (default: the layer name).
    description
        Stored with each style (default names the agglo version).

    Examples
    --------
    >>> import tempfile, pathlib, shapely, geopandas as gpd
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.gpkg"
    >>> gpd.GeoDataFrame({"v": [1.0]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326).to_file(p, layer="cities")
    >>> write_layer_styles(p, {"cities": single_symbol_qml()})
    >>> read_layer_styles(p)[["f_table_name", "f_geometry_column", "useAsDefault"]].values.tolist()
    [['cities', 'geom', 1]]
    """
    path = Path(gpkg_path)
    if not path.is_file():
        raise AggloInputError(f"cannot store styles: {path} does not exist.")
    con = sqlite3.connect(path)
    try:
        with con:
            tables = dict(con.execute("SELECT table_name, data_type FROM gpkg_contents").fetchall())
            geoms = dict(
                con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns").fetchall()
            )
            problems = []
            for layer, qml in styles.items():
                if layer not in tables:
                    problems.append(f"layer {layer!r} is not in {path.name} (has {sorted(tables)})")
                    continue
                cols = [r[1] for r in con.execute(f'PRAGMA table_info("{layer}")')]
                try:
                    validate_qml(qml, fields=cols)
                except ValidationError as exc:
                    problems += [f"style of {layer!r}: {p}" for p in exc.problems]
            if problems:
                raise ValidationError(problems, f"styles for {path.name}")
            con.execute(_CREATE_LAYER_STYLES)
            if "layer_styles" not in tables:
                now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
                con.execute(
                    "INSERT INTO gpkg_contents (table_name, data_type, identifier, description,"
                    " last_change, srs_id) VALUES ('layer_styles', 'attributes', 'layer_styles',"
                    " 'QGIS layer styles', ?, 0)",
                    (now,),
                )
            for layer, qml in styles.items():
                name = style_name or layer
                con.execute(
                    "DELETE FROM layer_styles WHERE f_table_name = ? AND styleName = ?",
                    (layer, name),
                )
                con.execute(
                    "UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (layer,)
                )
                con.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name,"
                    " f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description,"
                    " owner, ui) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, 'agglo', '')",
                    (
                        layer,
                        geoms.get(layer, ""),
                        name,
                        qml,
                        description or f"agglo {__version__} default style",
                    ),
                )
    finally:
        con.close()
    log.info("stored %d QGIS style(s) in %s", len(styles), path)


def read_layer_styles(gpkg_path: str | Path) -> pd.DataFrame:
    """The ``layer_styles`` table of a GeoPackage (empty frame if it has none).

    Examples
    --------
    >>> read_layer_styles("missing.gpkg")  # doctest: +SKIP
    """
    con = sqlite3.connect(f"file:{Path(gpkg_path)}?mode=ro", uri=True)
    try:
        has = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='layer_styles'"
        ).fetchone()
        if not has:
            return pd.DataFrame(columns=["f_table_name", "styleName", "styleQML", "useAsDefault"])
        return pd.read_sql_query("SELECT * FROM layer_styles ORDER BY id", con)
    finally:
        con.close()
