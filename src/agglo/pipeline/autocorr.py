"""Pipeline stage ``autocorr``: spatial autocorrelation of the index's city scores.

Reads ``ctx.results["index"].city_scores`` (``adcode, agglomeration_id, year, lag_score, ...``)
and the member cities of ``ctx.cities``; options come from the ``[autocorr]`` section (see
:class:`~agglo.analysis.autocorr.AutocorrOptions`; the method is
:func:`agglo.analysis.autocorr.autocorrelation`). Per year it computes global Moran's I / Geary's C for all members of the
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
from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.autocorr import AutocorrOptions, autocorrelation
from agglo.options import RUN_SEED

__all__ = ["AutocorrOptions", "analyse", "stage_options"]

log = logging.getLogger(__name__)


def stage_options(section: Mapping[str, Any] | AutocorrOptions) -> dict[str, Any]:
    """The ``[autocorr]`` options as a dict (validated by :class:`AutocorrOptions`).

    Examples
    --------
    >>> stage_options({"weights": "knn", "k": 6})["k"]
    6
    >>> stage_options({"weight": "knn"})
    Traceback (most recent call last):
    ...
    agglo.errors.ValidationError: [autocorr] options: 1 problem(s)
      - autocorr.weight is not an option (did you mean 'weights'?); valid: weights, column, permutations, lisa_min_permutations, alpha, correction, islands, k, threshold, tolerance_m, min_units, transitions, min_transition_units
    """
    if isinstance(section, AutocorrOptions):
        return section.to_dict()
    return AutocorrOptions.from_dict(section).to_dict()


def analyse(
    cities: gpd.GeoDataFrame,
    scores: pd.DataFrame,
    *,
    options: Mapping[str, Any] | AutocorrOptions | None = None,
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
        ``[autocorr]`` options (:class:`AutocorrOptions` or its fields as a mapping).
    seed
        Seed of every permutation test.

    Returns
    -------
    dict
        ``global`` (DataFrame), ``lisa`` (DataFrame), ``lisa_layer`` (GeoDataFrame),
        ``islands``, ``components`` (DataFrames), ``transitions`` (:class:`~agglo.analysis.autocorr.LisaTransitions` or
        None), ``options`` and ``result`` (the :class:`~agglo.analysis.autocorr.AutocorrResult`).
    """
    opts = stage_options(options or {})
    res = autocorrelation(scores, cities, AutocorrOptions.from_dict(opts), seed=seed)
    return {
        "global": res.global_table,
        "lisa": res.lisa,
        "lisa_layer": res.lisa_layer,
        "islands": res.islands,
        "components": res.components,
        "transitions": res.transitions,
        "options": opts,
        "result": res,
    }
