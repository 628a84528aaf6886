"""agglo: integration of China's urban agglomerations.

Public functions are imported lazily, so ``import agglo`` stays fast and a stage's heavy
dependencies (rasterio, esda, ...) load only when that stage is used.

Examples
--------
>>> import agglo
>>> cities = agglo.load_cities()  # doctest: +SKIP
>>> result = agglo.integration_index(agglo.read_panel("panel.csv").panel, agglo.load_membership())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from agglo import _logging  # noqa: F401  (installs the NullHandler)
from agglo._version import __version__

# public name -> module that defines it (one module per stage, see DESIGN.md)
_LAZY: dict[str, str] = {
    # foundation
    "AggloDataWarning": "agglo.errors",
    "AggloInputError": "agglo.errors",
    "load_cities": "agglo.reference.boundaries",
    "load_counties": "agglo.reference.boundaries",
    "load_membership": "agglo.reference.boundaries",
    "load_institutions": "agglo.reference.boundaries",
    "build_boundaries": "agglo.reference.boundaries",
    "city_seats": "agglo.reference.seats",
    "county_seats": "agglo.reference.seats",
    "read_seats": "agglo.reference.seats",
    "read_panel": "agglo.io.panel",
    "with_indicators": "agglo.io.indicators",
    "data_path": "agglo.reference.paths",
    "PanelResult": "agglo.io.panel",
    "INDICATORS": "agglo.reference.registry",
    "DIMENSIONS": "agglo.reference.registry",
    "export": "agglo.outputs.writers",
    "export_layers": "agglo.outputs.writers",
    "RunConfig": "agglo.config",
    "load_config": "agglo.config",
    # integration index (issue 3)
    "integration_index": "agglo.analysis.index",
    "IndexConfig": "agglo.analysis.index",
    "IndexOptions": "agglo.analysis.index",
    "IndexResult": "agglo.analysis.index",
    "krugman_specialisation": "agglo.measures.krugman",
    "institutions_by_year": "agglo.analysis.institutions",
    "index_sensitivity": "agglo.analysis.sensitivity",
    # spatial measures (issues 4, 5)
    "zonal_pm25": "agglo.measures.pm25",
    "road_density": "agglo.measures.roads",
    "read_roads": "agglo.measures.roads",
    "hsr_access": "agglo.measures.hsr",
    "read_railways": "agglo.measures.hsr",
    # spatial autocorrelation (issue 6)
    "spatial_weights": "agglo.analysis.autocorr",
    "autocorrelation": "agglo.analysis.autocorr",
    "AutocorrOptions": "agglo.analysis.autocorr",
    "AutocorrResult": "agglo.analysis.autocorr",
    "global_autocorrelation": "agglo.analysis.autocorr",
    "local_autocorrelation": "agglo.analysis.autocorr",
    "lisa_transitions": "agglo.analysis.autocorr",
    # core-periphery (issue 7)
    "core_periphery": "agglo.analysis.coreperiphery",
    "CorePeripheryOptions": "agglo.analysis.coreperiphery",
    "CorePeripheryResult": "agglo.analysis.coreperiphery",
    "gravity_interactions": "agglo.analysis.coreperiphery",
    "coreness": "agglo.analysis.coreperiphery",
    "city_system": "agglo.analysis.coreperiphery",
    "core_periphery_gaps": "agglo.analysis.coreperiphery",
    "structure_type": "agglo.analysis.coreperiphery",
    # metropolitan areas (issue 8)
    "road_graph": "agglo.analysis.metro",
    "travel_times": "agglo.analysis.metro",
    "commute_catchment": "agglo.analysis.metro",
    "metro_areas": "agglo.analysis.metro",
    "metropolitan_areas": "agglo.analysis.metro",
    "MetroOptions": "agglo.analysis.metro",
    # disparity, convergence and coordination (issue 15)
    "dagum_gini": "agglo.analysis.disparity",
    "theil": "agglo.analysis.disparity",
    "gini": "agglo.analysis.disparity",
    "cv_log": "agglo.analysis.disparity",
    "disparity": "agglo.analysis.disparity",
    "DisparityOptions": "agglo.analysis.disparity",
    "convergence": "agglo.analysis.convergence",
    "ConvergenceOptions": "agglo.analysis.convergence",
    "beta_speed": "agglo.analysis.convergence",
    "coupling_coordination": "agglo.analysis.coordination",
    "coupling_degree": "agglo.analysis.coordination",
    "coordination_level": "agglo.analysis.coordination",
    "obstacle_degree": "agglo.analysis.coordination",
    "entropy_topsis": "agglo.analysis.coordination",
    "city_scores": "agglo.analysis.coordination",
    "coordination": "agglo.analysis.coordination",
    "CoordinationOptions": "agglo.analysis.coordination",
    "regional_disparity": "agglo.analysis.regional",
    "RegionalDisparityResult": "agglo.analysis.regional",
    # outputs (issue 9)
    "plot": "agglo.outputs.plot",
    "PlotOptions": "agglo.outputs.maps",
    "draw_maps": "agglo.outputs.maps",
    "write_run": "agglo.outputs.writers",
    "styles": "agglo.outputs.styles",
    "write_report": "agglo.outputs.report",
    "build_report": "agglo.outputs.report",
    "report_from_outputs": "agglo.outputs.report",
    "ReportOptions": "agglo.outputs.report",
    "install_cjk_font": "agglo.outputs.fonts",
}

#: public names that are modules themselves (``agglo.plot.choropleth``)
_MODULES = {"plot", "styles"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agglo' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name in _MODULES else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
