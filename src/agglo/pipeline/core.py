"""Types of the pipeline table: a stage, and what one stage produced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.results import StageResult

__all__ = ["Stage", "StageOutput"]


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline table.

    ``function(config, options, **needs)`` gets the results of the stages named in ``needs``
    (``"name?"``: optional, ``None`` when that stage produced nothing) and returns a
    :class:`~agglo.results.StageResult` (the runner wraps it with :meth:`StageOutput.of`), a
    :class:`StageOutput`, or ``None`` when its input is absent (logged). ``options`` turns the
    stage's config ``section`` (default: its name; several are passed in order) into validated
    options; it is called for every stage before the first one runs.
    """

    name: str
    function: Callable[..., StageResult | StageOutput | None]
    needs: tuple[str, ...] = ()
    options: Callable[..., Any] | None = None
    section: str | tuple[str, ...] | None = None
    progress: bool = False  # the function takes ``progress=`` (progress bars)
    skip_on_input_error: bool = False  # in a full run, bad input skips it with a warning
    #: modules the function imports when it runs; the runner imports them once in the parent
    #: while other stages run, so stages forked later share them instead of each importing
    #: them again (absent optional ones are left to the stage to report)
    preload: tuple[str, ...] = ()


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
        cls, result: StageResult, *, synthetic: set[str] | None = None, **provenance: str
    ) -> StageOutput:
        """The output of a :class:`~agglo.results.StageResult` (plus ``synthetic`` inputs and
        ``provenance`` entries the result cannot know, e.g. how the caller chose its input)."""
        return cls(
            result=result,
            tables=dict(result.tables()),
            layers=dict(result.layers()),
            layer_metadata=dict(result.layer_metadata()),
            city_columns=dict(result.city_columns()),
            city_units=dict(result.city_units()),
            summary=list(result.summary_lines()),
            notes=list(result.notes()),
            synthetic=result.synthetic_sources() | set(synthetic or ()),
            provenance=result.provenance() | provenance,
        )
