"""Types of a run: a stage, what it produced, and the outputs collected for writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.config import RunConfig
from agglo.results import StageResult

__all__ = ["Indicator", "RunOutputs", "Stage", "StageOutput"]


@dataclass(frozen=True)
class Indicator:
    """A panel indicator computed by a measure stage (result of ``pm25``, ``roads``, ``hsr``)."""

    name: str
    values: pd.DataFrame  # adcode, year, value
    source: str  # provenance text
    data: pd.DataFrame  # the measure's own table


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline table.

    ``function(config, options, **needs)`` gets the results of the stages named in ``needs``
    (``"name?"``: optional, ``None`` when that stage produced nothing) and returns a
    :class:`StageOutput`, or ``None`` when its input is absent (logged). ``options`` turns the
    stage's config section into its validated options; it is called for every stage before
    the first one runs.
    """

    name: str
    function: Callable[..., StageOutput | None]
    needs: tuple[str, ...] = ()
    options: Callable[..., Any] | None = None
    section: str | tuple[str, ...] | None = None
    progress: bool = False  # the function takes ``progress=`` (progress bars)
    skip_on_input_error: bool = False  # in a full run, bad input skips it with a warning

    @property
    def config_section(self) -> str | tuple[str, ...]:
        """The TOML section(s) holding this stage's options (passed to ``options`` in order)."""
        return self.section or self.name


@dataclass
class StageOutput:
    """What one stage produced: its library result and what goes into the run's outputs.

    Attributes
    ----------
    result
        The stage's library result (e.g. :class:`agglo.analysis.index.IndexResult`), handed to
        the stages that need it.
    tables, layers, layer_metadata
        Outputs to write (name -> DataFrame / GeoDataFrame / metadata dict).
    city_columns, city_units
        Columns this stage adds to the ``cities`` layer (aligned with ``adcode``) and their units.
    summary, notes
        Summary lines; ``summary`` lines are labelled ``[SYNTHETIC]`` when the run used
        synthetic inputs, ``notes`` are not.
    synthetic, provenance
        Names of synthetic inputs used; variable or input -> where it came from.
    """

    result: Any = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    layer_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    city_columns: dict[str, Any] = field(default_factory=dict)
    city_units: dict[str, str] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    synthetic: set[str] = field(default_factory=set)
    provenance: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        result: StageResult,
        *,
        synthetic: set[str] | None = None,
        provenance: dict[str, str] | None = None,
    ) -> StageOutput:
        """The output of a stage whose library result is a :class:`~agglo.results.StageResult`."""
        return cls(
            result=result,
            tables=dict(result.tables()),
            layers=dict(result.layers()),
            layer_metadata=dict(result.layer_metadata()),
            city_columns=dict(result.city_columns()),
            city_units=dict(result.city_units()),
            summary=list(result.summary_lines()),
            notes=list(result.notes()),
            synthetic=set(synthetic or ()),
            provenance=dict(provenance or {}),
        )


@dataclass
class RunOutputs:
    """Everything a run writes, collected from the stage outputs (read by maps, write, report).

    Analysis stages never read this: they get the results they need from the pipeline table.
    """

    config: RunConfig
    out_dir: Path
    force: bool = False
    cities: gpd.GeoDataFrame | None = None
    counties: gpd.GeoDataFrame | None = None
    results: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageOutput] = field(default_factory=dict)
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    layer_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    styles: dict[str, str] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    synthetic: set[str] = field(default_factory=set)
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def panel(self) -> pd.DataFrame | None:
        """The analysis panel (with computed indicators), else the panel as read."""
        return self.results.get("panel", getattr(self.results.get("inputs"), "panel", None))

    @property
    def years(self) -> list[int]:
        """The years of the run."""
        return list(getattr(self.results.get("inputs"), "years", []))

    @property
    def data_status(self) -> str:
        """``"synthetic"`` if any synthetic input was used, else ``"real"``."""
        return "synthetic" if self.synthetic else "real"

    def label(self, text: str) -> str:
        """Prefix ``text`` with a SYNTHETIC marker when the run used synthetic data."""
        return f"[SYNTHETIC] {text}" if self.synthetic else text

    def add(self, name: str, out: StageOutput) -> None:
        """Collect one stage's output (the cities layer gains its ``city_columns``)."""
        self.results[name] = out.result
        self.stages[name] = out
        self.synthetic |= out.synthetic
        self.provenance.update(out.provenance)
        self.tables.update(out.tables)
        self.layers.update(out.layers)
        for key, meta in out.layer_metadata.items():
            self.layer_metadata[key] = {**self.layer_metadata.get(key, {}), **meta}
        if out.city_columns and "cities" in self.layers:
            cities = self.layers["cities"]
            cols = {k: cities["adcode"].map(v) for k, v in out.city_columns.items()}
            self.layers["cities"] = cities.assign(**cols)
            md = self.layer_metadata.setdefault("cities", {})
            md["units"] = {**md.get("units", {}), **out.city_units}
        self.summary += [self.label(s) for s in out.summary] + out.notes
