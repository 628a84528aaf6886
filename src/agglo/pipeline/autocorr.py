"""Pipeline stage ``autocorr``: spatial autocorrelation of the index's city scores.

Reads ``ctx.results["index"].city_scores`` (``adcode, agglomeration_id, year, lag_score, ...``)
and the member cities of ``ctx.cities``; options come from the ``[autocorr]`` section (see
:class:`AutocorrOptions`). Per year it computes global Moran's I / Geary's C for all members of the
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
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.autocorr import (
    CORRECTIONS,
    ISLAND_POLICIES,
    WEIGHT_KINDS,
    global_autocorrelation,
    island_links,
    lisa_transitions,
    local_autocorrelation,
    spatial_weights,
)
from agglo.errors import AggloInputError
from agglo.options import RUN_SEED, Options, option

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutocorrOptions(Options):
    """Options of the ``autocorr`` stage (``[autocorr]`` section, ``agglo autocorr`` flags)."""

    section = "autocorr"
    weights: str = option("queen", help="Spatial weights.", choices=WEIGHT_KINDS)
    column: str = option("lag_score", help="City score to analyse.")
    permutations: int = option(999, help="Permutations of the tests.", minimum=0)
    alpha: float = option(
        0.05, help="LISA significance level.", minimum=0, exclusive_minimum=True, maximum=1
    )
    correction: str = option("fdr", help="LISA multiple testing.", choices=CORRECTIONS)
    islands: str = option("nearest", help="Units without neighbours.", choices=ISLAND_POLICIES)
    k: int = option(4, help="Neighbours of knn/kernel weights.", minimum=1)
    threshold: float | None = option(
        None,
        help="Distance band of distance weights (default: the smallest connecting one).",
        unit="km",
    )
    tolerance_m: float = option(
        0.0, help="Snapping tolerance of contiguity weights.", unit="m", minimum=0
    )
    min_units: int = option(
        4, help="Smallest number of cities of a scope (agglomeration) analysed.", minimum=3
    )
    transitions: bool = option(True, help="Also LISA transitions (needs >= 2 years).")


GLOBAL_COLUMNS = [
    "scope",
    "year",
    "weights",
    "n",
    "moran_i",
    "moran_ei",
    "moran_z",
    "moran_p",
    "moran_p_rand",
    "geary_c",
    "geary_z",
    "geary_p",
    "permutations",
    "seed",
]
LISA_COLUMNS = [
    "adcode",
    "name_zh",
    "agglomeration_id",
    "year",
    "value",
    "z",
    "lag_z",
    "lisa_i",
    "lisa_p",
    "lisa_q",
    "quadrant",
    "significant",
    "cluster",
    "gstar_z",
    "gstar_p",
]


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
      - autocorr.weight is not an option (did you mean 'weights'?); valid: weights, column, permutations, alpha, correction, islands, k, threshold, tolerance_m, min_units, transitions
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
        ``islands`` (DataFrame), ``transitions`` (:class:`~agglo.analysis.autocorr.LisaTransitions` or
        None), ``options``.
    """
    opts = stage_options(options or {})
    column = opts["column"]
    kind = opts["weights"]
    if column not in scores.columns:
        raise AggloInputError(
            f"[autocorr] column {column!r} is not in the city scores ({list(scores.columns)})."
        )
    members = cities[cities["agglomeration_id"].notna()]
    members = members[["adcode", "name_zh", "agglomeration_id", "geometry"]]
    data = scores[["adcode", "year", column]].dropna(subset=[column])
    data = data[data["adcode"].isin(members["adcode"])]
    wkw = {
        "k": int(opts["k"]),
        "threshold": opts["threshold"],
        "tolerance_m": float(opts["tolerance_m"]),
    }
    scopes = {"all": members}
    for agg, sub in members.groupby("agglomeration_id", sort=True):
        scopes[str(agg)] = sub
    cache: dict[frozenset[str], Any] = {}
    island_rows: list[pd.DataFrame] = []
    component_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    lisa_frames: list[pd.DataFrame] = []
    for year in sorted(data["year"].unique()):
        yd = data[data["year"] == year]
        for scope, units in scopes.items():
            units = units[units["adcode"].isin(yd["adcode"])]
            if len(units) < int(opts["min_units"]):
                log.info(
                    "autocorr: %s %s skipped: %d cities with %s (< min_units=%s)",
                    scope,
                    year,
                    len(units),
                    column,
                    opts["min_units"],
                )
                continue
            key = frozenset(units["adcode"])
            try:
                if key not in cache:
                    cache[key] = spatial_weights(units, kind, islands=opts["islands"], **wkw)
                    component_rows.append(_components(cache[key], units, scope, year))
                    isl = island_links(units, kind, **wkw)
                    if not isl.empty:
                        island_rows.append(isl.assign(scope=scope, year=year))
                w = cache[key]
                if (w.cardinalities == len(units) - 1).all():
                    log.info(
                        "autocorr: %s %s skipped: every city neighbours every other under %s "
                        "weights (I = -1/(n-1) by construction)",
                        scope,
                        year,
                        kind,
                    )
                    continue
                vals = yd[yd["adcode"].isin(key)]
                g = global_autocorrelation(
                    vals, column, w, permutations=int(opts["permutations"]), seed=seed
                )
            except AggloInputError as exc:
                log.warning("autocorr: %s %s skipped: %s", scope, year, exc)
                continue
            rows.append({"scope": scope, "year": int(year), "weights": kind, **g.to_dict()})
            if scope == "all":
                lisa = local_autocorrelation(
                    vals,
                    column,
                    w,
                    permutations=max(int(opts["permutations"]), 99),
                    seed=seed,
                    alpha=float(opts["alpha"]),
                    correction=opts["correction"],
                )
                lisa_frames.append(pd.concat([vals, lisa], axis=1))
    glob = pd.DataFrame(rows, columns=GLOBAL_COLUMNS)
    lisa = _lisa_table(lisa_frames, members, column)
    layer = gpd.GeoDataFrame(
        lisa.merge(members[["adcode", "geometry"]], on="adcode", how="left"),
        geometry="geometry",
        crs=members.crs,
    )
    transitions = None
    if opts["transitions"] and lisa["year"].nunique() >= 2:
        transitions = _transitions(data, members, column, kind, wkw, opts["islands"], cache)
    islands = (
        pd.concat(island_rows, ignore_index=True)
        if island_rows
        else pd.DataFrame(
            columns=["island", "island_name", "neighbor", "neighbor_name", "distance_km"]
        )
    )
    return {
        "global": glob,
        "lisa": lisa,
        "lisa_layer": layer,
        "islands": islands,
        "components": pd.DataFrame(
            component_rows, columns=["scope", "year", "n_units", "n_components", "smaller"]
        ),
        "transitions": transitions,
        "options": opts,
    }


def _components(w: Any, units: pd.DataFrame, scope: str, year: Any) -> dict[str, Any]:
    """Connected components of the weights (after island handling), smaller ones named."""
    n = int(w.n_components)
    smaller = ""
    if n > 1:
        labels = w.component_labels
        names = units.set_index("adcode")["name_zh"]
        sizes = labels.value_counts()
        smaller = "; ".join(
            ", ".join(str(names.get(a, a)) for a in labels.index[labels == c])
            for c in sizes.index[1:]
        )
    return {
        "scope": scope,
        "year": year,
        "n_units": len(units),
        "n_components": n,
        "smaller": smaller,
    }


def _lisa_table(frames: list[pd.DataFrame], members: pd.DataFrame, column: str) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=LISA_COLUMNS)
    lisa = pd.concat(frames, ignore_index=True).rename(columns={column: "value"})
    lisa = lisa.merge(members[["adcode", "name_zh", "agglomeration_id"]], on="adcode")
    return lisa[LISA_COLUMNS].sort_values(["year", "adcode"], ignore_index=True)


def _transitions(data, members, column, kind, wkw, islands, cache):
    years = sorted(data["year"].unique())
    counts = data.groupby("adcode")["year"].nunique()
    balanced = counts.index[counts == len(years)]
    units = members[members["adcode"].isin(balanced)]
    if len(units) < 8:
        log.info("autocorr: LISA transitions skipped: %d cities in every year", len(units))
        return None
    try:
        key = frozenset(units["adcode"])
        w = cache[key] if key in cache else spatial_weights(units, kind, islands=islands, **wkw)
        return lisa_transitions(data[data["adcode"].isin(balanced)], w, column=column)
    except AggloInputError as exc:
        log.warning("autocorr: LISA transitions skipped: %s", exc)
        return None
