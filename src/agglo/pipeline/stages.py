"""The stages of ``agglo run``: each resolves its inputs, calls its library function, wraps it.

Shape: ``stage(config, options, **needs) -> StageOutput | None`` (``None``: input absent,
logged). The method and everything a stage writes live in the library result
(:class:`agglo.results.StageResult`); the inputs a run reads are chosen in :mod:`agglo.io.inputs`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from agglo.config import RunConfig
from agglo.errors import AggloInputError
from agglo.io.inputs import RunInputs, raster_source, read_inputs, road_sources
from agglo.pipeline.core import StageOutput

log = logging.getLogger("agglo.pipeline")


def inputs_stage(config: RunConfig, options: Any = None) -> StageOutput:
    """Boundaries, membership, institutions and the panel (:func:`agglo.io.inputs.read_inputs`)."""
    inputs = read_inputs(config)
    return StageOutput.of(inputs, provenance=inputs.provenance())


def pm25_stage(config: RunConfig, options: Any, inputs: RunInputs) -> StageOutput | None:
    """City mean PM2.5 for the run's years covered by rasters (``city_pm25``)."""
    from agglo.measures.pm25 import city_pm25

    found = raster_source(config, inputs.years, options.variable)
    if found is None:
        return None
    result = city_pm25(found[0], inputs.cities, options, years=found[1])
    synthetic = set(result.files) if result.synthetic else set()
    return StageOutput.of(result, synthetic=synthetic, provenance=result.provenance())


def roads_stage(config: RunConfig, options: Any, inputs: RunInputs) -> StageOutput | None:
    """Road density per city, one network snapshot for every year (``city_road_density``)."""
    from agglo.measures.roads import city_road_density, read_roads

    if (found := road_sources(config, "roads")) is None:
        return None
    sources, name, synthetic = found
    bbox = tuple(float(v) for v in inputs.cities.to_crs(4326).total_bounds)
    lines = read_roads(sources, bbox=bbox, **options.to_dict())
    result = city_road_density(lines, inputs.cities, options, years=inputs.years)
    return StageOutput.of(result, synthetic={name} if synthetic else set())


def hsr_stage(config: RunConfig, options: Any, inputs: RunInputs) -> StageOutput | None:
    """HSR flag per city and year from ``[inputs] stations`` (``city_hsr``)."""
    from agglo.measures.hsr import city_hsr, read_stations

    if config.stations is None:
        log.info("no stations input configured: the panel's hsr values are kept; stage hsr skipped")
        return None
    if not (path := Path(config.stations)).exists():
        raise AggloInputError(f"[inputs] stations = {path} does not exist.")
    table = read_stations(path, **options.to_dict())
    result = city_hsr(table, inputs.cities, options, years=inputs.years, counties=inputs.counties)
    return StageOutput.of(result, synthetic={path.name} if result.synthetic else set())


def panel_stage(config: RunConfig, options: Any, inputs: RunInputs, **measures: Any) -> StageOutput:
    """The analysis panel: the read panel with the measured indicators put in (provenance kept)."""
    from agglo.io.indicators import analysis_panel

    res = analysis_panel(inputs.panel, inputs.panel_name, measures.values())
    out = StageOutput.of(res, synthetic=res.synthetic_inputs, provenance=res.measured)
    out.result = res.panel  # later stages take the panel itself
    return out


def index_stage(
    config: RunConfig, options: Any, inputs: RunInputs, panel: pd.DataFrame
) -> StageOutput:
    """Integration index (+ sensitivity), ``agglomerations`` layer, city lag scores."""
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
    config: RunConfig, options: Any, inputs: RunInputs, index: Any
) -> StageOutput | None:
    """Moran's I / Geary's C per year and scope, LISA + G*, transitions of the city scores."""
    from agglo.analysis.autocorr import autocorrelation

    if (scores := getattr(index, "city_scores", None)) is None or scores.empty:
        log.info("stage autocorr skipped: the index produced no city scores")
        return None
    return StageOutput.of(autocorrelation(scores, inputs.cities, options, seed=config.seed))


def coreperiphery_stage(
    config: RunConfig, options: Any, inputs: RunInputs, panel: pd.DataFrame, progress: bool = False
) -> StageOutput:
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
    inputs: RunInputs,
    panel: pd.DataFrame | None = None,
    progress: bool = False,
) -> StageOutput | None:
    """One-hour commute catchments of the core cities on ``[inputs] roads`` (or the demo)."""
    from agglo.analysis.metro import metropolitan_areas

    if (found := road_sources(config, "metro")) is None:
        return None
    sources, name, synthetic = found
    res = metropolitan_areas(
        inputs.cities, inputs.counties, sources, options, panel=panel, progress=progress
    )
    synthetic_inputs = {name} if synthetic else set()
    return StageOutput.of(res, synthetic=synthetic_inputs, provenance={"metro": res.method_note})


def disparity_stage(
    config: RunConfig, options: Any, inputs: RunInputs, panel: pd.DataFrame, index: Any = None
) -> StageOutput:
    """Coordination, disparity and convergence of the member cities (``regional_disparity``)."""
    from agglo.analysis.regional import regional_disparity

    result = regional_disparity(
        panel,
        inputs.membership,
        cities=inputs.cities,
        city_scores=getattr(index, "city_scores", None),
        coordination_options=options.coordination,
        disparity_options=options.disparity,
        convergence_options=options.convergence,
        weights=options.weights,
    )
    return StageOutput.of(result)
