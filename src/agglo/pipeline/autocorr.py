"""Pipeline stage ``autocorr``: spatial autocorrelation of the index's city scores.

Reads ``ctx.results["index"].city_scores`` (``adcode, agglomeration_id, year, lag_score, ...``)
and the member cities of ``ctx.cities``; options come from the ``[autocorr]`` section (see
:data:`OPTIONS`). Per year it computes global Moran's I / Geary's C for all members of the
five agglomerations together (scope ``all``) and for each agglomeration with at least
``min_units`` cities, and LISA + G* over all members. Records:

- tables ``autocorr_global`` (scope, year, weights, n, moran_i, moran_p, geary_c, ...),
  ``lisa`` (one row per member city and year), ``autocorr_islands`` (islands and what they
  were joined to), ``lisa_transitions`` (quadrant transition counts/probabilities, >= 2 years);
- layer ``lisa`` (member polygons x year, long format) and the latest year's ``lisa_cluster``,
  ``lisa_p`` columns on the ``cities`` layer (None/NaN for non-members);
- ``ctx.results["autocorr"]``: a dict with those tables and the :class:`LisaTransitions`;
- one summary line per year (Moran's I and p), labelled when the run used synthetic data.
"""

from __future__ import annotations

import logging
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.autocorr import (
    CORRECTIONS,
    ISLAND_POLICIES,
    WEIGHT_KINDS,
    AutocorrOptions,
    autocorrelation,
)
from agglo.config import unknown_option_problems
from agglo.errors import AggloInputError
from agglo.options import RUN_SEED

log = logging.getLogger(__name__)

#: options of the ``[autocorr]`` section and their defaults
OPTIONS: dict[str, Any] = {
    "weights": "queen",
    "column": "lag_score",
    "permutations": 999,
    "alpha": 0.05,
    "correction": "fdr",
    "islands": "nearest",
    "k": 4,
    "threshold": None,
    "tolerance_m": 0.0,
    "min_units": 4,
    "transitions": True,
}


def stage_options(section: dict[str, Any]) -> dict[str, Any]:
    """Validate the ``[autocorr]`` section and fill in defaults.

    Examples
    --------
    >>> stage_options({"weights": "knn", "k": 6})["k"]
    6
    >>> stage_options({"weight": "knn"})
    Traceback (most recent call last):
    ...
    agglo.errors.AggloInputError: [autocorr] 'weight' is not an option (did you mean 'weights'?)
    """
    problems = unknown_option_problems(section, OPTIONS)
    opts = {**OPTIONS, **section}
    for key, allowed in (
        ("weights", WEIGHT_KINDS),
        ("correction", CORRECTIONS),
        ("islands", ISLAND_POLICIES),
    ):
        if opts[key] not in allowed:
            problems.append(f"{key} must be one of {', '.join(allowed)}; got {opts[key]!r}")
    if problems:
        raise AggloInputError("[autocorr] " + "; ".join(problems))
    return opts


def analyse(
    cities: gpd.GeoDataFrame,
    scores: pd.DataFrame,
    *,
    options: dict[str, Any] | None = None,
    seed: int | None = RUN_SEED,
) -> dict[str, Any]:
    """Global and local autocorrelation of member cities' scores, per year.

    Parameters
    ----------
    cities
        City polygons with ``adcode``, ``name_zh`` and ``agglomeration_id`` (members: not null).
    scores
        ``adcode, year, <column>`` (``agglomeration_id`` is taken from ``cities``).
    options
        ``[autocorr]`` options (see :data:`OPTIONS`).
    seed
        Seed of every permutation test.

    Returns
    -------
    dict
        ``global`` (DataFrame), ``lisa`` (DataFrame), ``lisa_layer`` (GeoDataFrame),
        ``islands`` (DataFrame), ``transitions`` (:class:`~agglo.analysis.autocorr.LisaTransitions` or
        None), ``options``.
    """
    opts = stage_options(options or {})
    res = autocorrelation(scores, cities, AutocorrOptions.from_dict(opts), seed=seed)
    return {
        "global": res.global_table,
        "lisa": res.lisa,
        "lisa_layer": res.lisa_layer,
        "islands": res.islands,
        "transitions": res.transitions,
        "options": opts,
        "result": res,
    }
