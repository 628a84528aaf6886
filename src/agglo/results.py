"""The shape every stage result shares: what it writes, and what the run reports about it.

A stage's library function (``integration_index``, ``autocorrelation``, ``core_periphery``,
``metropolitan_areas``, ...) returns a dataclass that inherits :class:`StageResult`. The
pipeline and the CLI write whatever these methods return and add nothing of their own, so
``agglo <stage>``, ``agglo run`` and a notebook get the same tables from the same inputs.

Examples
--------
>>> from dataclasses import dataclass
>>> import pandas as pd
>>> @dataclass(frozen=True)
... class MeanResult(StageResult):
...     values: pd.DataFrame
...     def tables(self):
...         return {"means": self.values}
...     def summary_lines(self):
...         return [f"mean of {len(self.values)} values: {self.values['x'].mean():.1f}"]
>>> r = MeanResult(pd.DataFrame({"x": [1.0, 2.0]}))
>>> list(r.tables()), r.summary_lines(), r.layers()
(['means'], ['mean of 2 values: 1.5'], {})
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import pandas as pd

__all__ = ["StageResult"]


class StageResult:
    """Mixin of stage results; override what the stage produces (every default is empty)."""

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables, name -> DataFrame (written as ``<name>.csv``)."""
        return {}

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """Output layers, name -> GeoDataFrame (GeoPackage layer and shapefile)."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """Options, seed and method of the result (JSON-serialisable)."""
        return {}

    def layer_metadata(self) -> dict[str, dict[str, Any]]:
        """Per layer: description, units, method (stored with the layer)."""
        return {}

    def city_columns(self) -> dict[str, pd.Series]:
        """Columns added to the run's ``cities`` layer: name -> Series indexed by ``adcode``."""
        return {}

    def city_units(self) -> dict[str, str]:
        """Units of :meth:`city_columns`."""
        return {}

    def summary_lines(self) -> list[str]:
        """Findings for the run summary (marked ``[SYNTHETIC]`` when inputs are synthetic)."""
        return []

    def notes(self) -> list[str]:
        """Remarks about the method or the data for the summary (never marked)."""
        return []

    def synthetic_sources(self) -> set[str]:
        """Names of the synthetic inputs the result was computed from (the run labels them)."""
        return set()

    def provenance(self) -> dict[str, str]:
        """Input or variable -> where it came from (``run.json``, the report)."""
        return {}
