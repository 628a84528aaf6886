"""The stages of ``agglo run``: each resolves its inputs and calls its library function.

Shape: ``stage(config, options, **needs) -> StageResult | None`` (``None``: input absent,
logged). The method, everything a stage writes and the synthetic inputs it used live in the
library result (:class:`agglo.results.StageResult`); the runner wraps it. The inputs a run reads
are chosen in :mod:`agglo.io.inputs`.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from agglo.analysis.autocorr import autocorrelation
from agglo.analysis.coreperiphery import core_periphery
from agglo.analysis.index import integration_index
from agglo.analysis.metro import metropolitan_areas
from agglo.analysis.regional import regional_disparity
from agglo.config import RunConfig
from agglo.io.indicators import analysis_panel
from agglo.io.inputs import RunInputs, raster_source, read_inputs, road_sources, stations_source
from agglo.measures.hsr import city_hsr, read_stations
from agglo.measures.pm25 import city_pm25
from agglo.measures.roads import city_road_density, read_roads
from agglo.pipeline.core import StageOutput
from agglo.results import StageResult

log = logging.getLogger("agglo.pipeline")


def inputs_stage(config: RunConfig, options: Any = None) -> RunInputs:
    """Boundaries, membership, institutions and the panel (:func:`agglo.io.inputs.read_inputs`)."""
    return read_inputs(config)


def pm25_stage(config: RunConfig, options: Any, inputs: RunInputs) -> StageResult | None:
    """City mean PM2.5 for the run's years covered by rasters (``city_pm25``)."""
    if (found := raster_source(config, inputs.years, options.variable)) is None:
        return None
    return city_pm25(found[0], inputs.cities, options, years=found[1])


def roads_stage(config: RunConfig, options: Any, inputs: RunInputs) -> StageResult | None:
    """Road density per city, one network snapshot for every year (``city_road_density``)."""
    if (found := road_sources(config, "roads")) is None:
        return None
    bbox = tuple(float(v) for v in inputs.cities.to_crs(4326).total_bounds)
    lines = read_roads(found[0], bbox=bbox, **options.to_dict())
    return city_road_density(lines, inputs.cities, options, years=inputs.years)


def hsr_stage(config: RunConfig, options: Any, inputs: RunInputs) -> StageResult | None:
    """HSR flag per city and year from ``[inputs] stations`` (``city_hsr``)."""
    if (path := stations_source(config)) is None:
        return None
    table = read_stations(path, **options.to_dict())
    return city_hsr(table, inputs.cities, options, years=inputs.years, counties=inputs.counties)


def panel_stage(config: RunConfig, options: Any, inputs: RunInputs, **measures: Any) -> StageOutput:
    """The analysis panel: the read panel with the measured indicators put in (provenance kept)."""
    out = StageOutput.of(analysis_panel(inputs.panel, inputs.panel_name, measures.values()))
    out.result = out.result.panel  # later stages take the panel itself
    return out


def index_stage(config: RunConfig, options: Any, inputs: RunInputs, panel: Any) -> StageOutput:
    """Integration index (+ sensitivity), ``agglomerations`` layer, city lag scores."""
    kw = {"institutions": inputs.institutions, "cities": inputs.cities}
    res = integration_index(panel, inputs.membership, options, employment=inputs.employment, **kw)
    return StageOutput.of(res, index=f"agglo.integration_index {res.config.to_dict()}")


def autocorr_stage(
    config: RunConfig, options: Any, inputs: RunInputs, index: Any
) -> StageResult | None:
    """Moran's I / Geary's C per year and scope, LISA + G*, transitions of the city scores."""
    if (scores := getattr(index, "city_scores", None)) is None or scores.empty:
        log.info("stage autocorr skipped: the index produced no city scores")
        return None
    return autocorrelation(scores, inputs.cities, options, seed=config.seed)


def coreperiphery_stage(
    config: RunConfig, options: Any, inputs: RunInputs, panel: pd.DataFrame, progress: bool = False
) -> StageResult:
    """Coreness, city system, structure type and core-periphery gaps per agglomeration-year."""
    kw = {"counties": inputs.counties, "years": inputs.years or None, "seed": config.seed}
    return core_periphery(
        inputs.cities, panel, options, agglomerations=config.agglomerations, progress=progress, **kw
    )


def metro_stage(
    config: RunConfig, options: Any, inputs: RunInputs, panel: Any = None, progress: bool = False
) -> StageOutput | None:
    """One-hour commute catchments of the core cities on ``[inputs] roads`` (or the demo)."""
    if (found := road_sources(config, "metro")) is None:
        return None
    sources, name, synthetic = found
    res = metropolitan_areas(
        inputs.cities, inputs.counties, sources, options, panel=panel, progress=progress
    )
    return StageOutput.of(res, synthetic={name} if synthetic else set(), metro=res.method_note)


def disparity_stage(
    config: RunConfig, options: Any, inputs: RunInputs, panel: pd.DataFrame, index: Any = None
) -> StageResult:
    """Coordination, disparity and convergence of the member cities (``regional_disparity``)."""
    return regional_disparity(
        panel,
        inputs.membership,
        cities=inputs.cities,
        city_scores=getattr(index, "city_scores", None),
        coordination_options=options.coordination,
        disparity_options=options.disparity,
        convergence_options=options.convergence,
        weights=options.weights,
    )
