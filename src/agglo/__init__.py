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
    "load_cities": "agglo.boundaries",
    "load_counties": "agglo.boundaries",
    "load_membership": "agglo.boundaries",
    "load_institutions": "agglo.boundaries",
    "build_boundaries": "agglo.boundaries",
    "read_panel": "agglo.panel",
    "PanelResult": "agglo.panel",
    "INDICATORS": "agglo.registry",
    "DIMENSIONS": "agglo.registry",
    "export": "agglo.writers",
    "export_layers": "agglo.writers",
    "RunConfig": "agglo.config",
    "load_config": "agglo.config",
    # integration index (issue 3)
    "integration_index": "agglo.index",
    "IndexConfig": "agglo.index",
    "IndexResult": "agglo.index",
    "krugman_specialisation": "agglo.index",
    "institutions_by_year": "agglo.index",
    "index_sensitivity": "agglo.index",
    # spatial measures (issues 4, 5)
    "zonal_pm25": "agglo.pm25",
    "road_density": "agglo.roads",
    "read_roads": "agglo.roads",
    "hsr_access": "agglo.hsr",
    "read_railways": "agglo.hsr",
    # spatial autocorrelation (issue 6)
    "spatial_weights": "agglo.autocorr",
    "global_autocorrelation": "agglo.autocorr",
    "local_autocorrelation": "agglo.autocorr",
    "lisa_transitions": "agglo.autocorr",
    # core-periphery (issue 7)
    "gravity_interactions": "agglo.coreperiphery",
    "coreness": "agglo.coreperiphery",
    "city_system": "agglo.coreperiphery",
    "core_periphery_gaps": "agglo.coreperiphery",
    "structure_type": "agglo.coreperiphery",
    # metropolitan areas (issue 8)
    "road_graph": "agglo.metro",
    "travel_times": "agglo.metro",
    "commute_catchment": "agglo.metro",
    "metro_areas": "agglo.metro",
    # outputs (issue 9)
    "plot": "agglo.plot",
    "write_report": "agglo.report",
}

#: public names that are modules themselves (``agglo.plot.choropleth``)
_MODULES = {"plot"}

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
