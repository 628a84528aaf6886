"""Sensitivity of the integration index ranking to its choices and to each member city."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from agglo.analysis.index import (
    _RUN,
    IndexOptions,
    IndexWarning,
    _cell_factors,
    _cell_stats,
    _core,
    _prepare,
    _Prepared,
    _scores,
    index_options,
)
from agglo.errors import AggloInputError, ValidationError
from agglo.options import choice_problem

__all__ = ["SCENARIOS", "index_sensitivity", "prepared_sensitivity"]

#: alternative settings compared with the base run: name -> (option overrides, description)
SCENARIOS: dict[str, tuple[dict[str, Any], str]] = {
    "weights_entropy": ({"dimension_weights": "entropy"}, "entropy dimension weights"),
    "sample_sd": ({"ddof": 1}, "sample standard deviation (ddof=1)"),
    "k_pool_year": ({"k_pool": "indicator_year"}, "cv extremes pooled per year"),
    "k_pool_all": ({"k_pool": "all"}, "cv extremes pooled over all indicators"),
    "level_pool_year": ({"level_pool": "indicator_year"}, "level extremes pooled per year"),
    "level_floor_0": ({"level_floor": 0.0}, "level normalisation floor 0"),
    "negative_reverse": ({"negative_rule": "reverse"}, "negative indicators use f⁻ only"),
    "negative_ignore": ({"negative_rule": "ignore"}, "negative indicators use f⁺"),
    "no_R": ({"use_R": False}, "no city-count adjustment (R = 1)"),
    "no_f": ({"use_f": False}, "no level adjustment (f = 1)"),
}


def index_sensitivity(
    panel: pd.DataFrame,
    membership: pd.DataFrame,
    options: IndexOptions | Mapping[str, Any] | None = None,
    *,
    config: IndexOptions | Mapping[str, Any] | None = None,
    scenarios: Sequence[str] | None = None,
    leave_one_out: bool = True,
    employment: pd.DataFrame | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """How the composite ranking changes under alternative choices and without each city.

    Scenarios (:data:`SCENARIOS`): alternative dimension weights (entropy), σ with ddof = 1,
    other poolings of the extremes, level floor 0, other negative-indicator rules, and no R or
    f adjustment. Leave-one-city-out removes one member city's panel rows (R keeps the
    membership counts) and records how much that city moves its agglomeration's score.

    Returns
    -------
    pandas.DataFrame
        ``scenario, description, left_out (adcode or ""), agglomeration_id, year, base_score,
        score, score_change, base_rank, rank, rank_change`` (rank_change > 0 = moves up).

    Examples
    --------
    >>> panel = pd.DataFrame({"adcode": [f"{i:06d}" for i in range(6)], "year": 2020,
    ...     "indicator": "gdp_per_capita", "value": [1.0, 2.0, 3.0, 2.0, 2.0, 2.5]})
    >>> m = pd.DataFrame({"agglomeration_id": ["a"] * 3 + ["b"] * 3, "adcode": panel["adcode"]})
    >>> t = index_sensitivity(panel, m, scenarios=["no_R"], leave_one_out=False)
    >>> t[["agglomeration_id", "rank_change"]].values.tolist()
    [['b', 0], ['a', 0]]
    """
    cfg = index_options(options if options is not None else config)
    names = list(SCENARIOS) if scenarios is None else list(scenarios)
    problems = [p for s in names if (p := choice_problem("index scenario", s, list(SCENARIOS)))]
    if problems:
        raise ValidationError(problems, source="index_sensitivity")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexWarning)
        prep = _prepare(panel, membership, cfg, [], employment)
    return prepared_sensitivity(
        prep, cfg, scenarios=names, leave_one_out=leave_one_out, progress=progress
    )


def prepared_sensitivity(
    prep: _Prepared,
    options: IndexOptions,
    *,
    scenarios: Sequence[str] | None = None,
    leave_one_out: bool = True,
    progress: bool = False,
    base: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`index_sensitivity` of an already prepared panel (the index's own preparation).

    The scenarios' cells share the group statistics of their ``ddof`` (computed once), take
    their own pooling, level and adjustment factors, and are scored together as variants
    (column :data:`agglo.analysis.index._RUN`) in one pass, every group, pool and rank taken
    per variant: each scenario's numbers are those of scoring it alone
    (``tests/test_index.py`` checks it). Entropy-weighted scenarios, and any changing the
    dimension weights, rescaling or directions, are scored one by one.

    Parameters
    ----------
    prep
        The prepared panel (``agglo.analysis.index._prepare``).
    options
        The index options the scenarios depart from.
    scenarios, leave_one_out, progress
        As in :func:`index_sensitivity` (``scenarios`` already checked).
    base
        The composite under ``options`` when already computed (``integration_index``'s).
    """
    cfg = options
    names = list(SCENARIOS) if scenarios is None else list(scenarios)
    if base is None:
        _, _, base, _ = _core(prep, cfg, [], warn=False)
    keys = ["agglomeration_id", "year"]
    base = base[[*keys, "score", "rank"]].assign(_pos=np.arange(len(base)))
    out = []

    def compare(comp: pd.DataFrame, scenario: Any, desc: Any, left_out: Any) -> np.ndarray:
        """Rows of the variants of ``comp`` (one, or one per ``_RUN`` with labels per run),
        each in the base table's row order (agglomeration-years of both only); returns the
        variant of each row."""
        c = comp[[*([_RUN] if _RUN in comp else []), *keys, "score", "rank"]]
        j = base.merge(c, on=keys, suffixes=("", "_s"))
        j = j.sort_values([_RUN, "_pos"] if _RUN in j else "_pos", kind="stable")
        run = j[_RUN].to_numpy() if _RUN in j else np.zeros(len(j), dtype=int)
        t = pd.DataFrame(
            {
                "scenario": np.asarray(scenario, dtype=object)[run],
                "description": np.asarray(desc, dtype=object)[run],
                "left_out": np.asarray(left_out, dtype=object)[run],
                "agglomeration_id": j["agglomeration_id"].to_numpy(),
                "year": j["year"].to_numpy(),
                "base_score": j["score"].to_numpy(),
                "score": j["score_s"].to_numpy(),
                "score_change": (j["score_s"] - j["score"]).to_numpy(),
                "base_rank": j["rank"].astype(int).to_numpy(),
                "rank": j["rank_s"].astype(int).to_numpy(),
                "rank_change": (j["rank"] - j["rank_s"]).astype(int).to_numpy(),
            }
        )
        out.append(t)
        return run

    if names:
        place = []  # of each scenario row: its scenario's position in ``names``
        for comp, at in _scenario_composites(prep, cfg, names):
            run_names = [names[i] for i in at]
            run = compare(comp, run_names, [SCENARIOS[n][1] for n in run_names], [""] * len(at))
            place.append(np.asarray(at)[run])
        if len(out) > 1:  # scenarios scored apart: back into the requested order
            rows = pd.concat(out, ignore_index=True)
            out = [rows.iloc[np.argsort(np.concatenate(place), kind="stable")]]
    if leave_one_out:
        cities = prep.values[["adcode", "agglomeration_id"]].drop_duplicates()
        labels = [f"without city {a} ({g})" for a, g in cities.itertuples(index=False)]
        if cfg.dimension_weights != "entropy" and cfg.constant_indicator != "drop":
            comp = _leave_one_out_batch(prep, cfg, cities["adcode"])
            if comp is not None:
                compare(comp, ["leave_one_out"] * len(cities), labels, cities["adcode"])
        else:  # entropy weights and dropped constants are taken per variant: one by one
            it = list(enumerate(cities["adcode"]))
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(it, desc="leave-one-city-out")
            for k, adcode in it:
                sub = replace(prep, values=prep.values[prep.values["adcode"] != adcode])
                try:
                    _, _, comp, _ = _core(sub, cfg, [], warn=False)
                except AggloInputError:
                    continue
                compare(comp, ["leave_one_out"], [labels[k]], [adcode])
    cols = [
        "scenario",
        "description",
        "left_out",
        "agglomeration_id",
        "year",
        "base_score",
        "score",
        "score_change",
        "base_rank",
        "rank",
        "rank_change",
    ]
    res = pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)
    res.attrs["config"] = cfg.to_dict()
    return res


def _scenario_composites(
    prep: _Prepared, cfg: IndexOptions, names: list[str]
) -> list[tuple[pd.DataFrame, list[int]]]:
    """The composite of each scenario in ``names``: ``(composite, positions in names)`` pairs.

    One pair holds every scenario with fixed dimension weights, scored as ``_RUN`` variants
    in one :func:`agglo.analysis.index._cell_factors` (each under its own options) and one
    :func:`agglo.analysis.index._scores` call (run ``i`` is the ``i``-th of its positions);
    an entropy-weighted scenario (weights from its own scores) is a pair of its own.
    """
    stats: dict[tuple[Any, ...], pd.DataFrame] = {}

    def stats_of(alt: IndexOptions) -> pd.DataFrame:
        key = (alt.ddof, alt.min_cities, alt.constant_indicator)
        if key not in stats:
            stats[key] = _cell_stats(prep, alt, [], warn=False)
        return stats[key]

    pairs: list[tuple[pd.DataFrame, list[int]]] = []
    batch, batch_at, batch_cfg = [], [], []
    for i, name in enumerate(names):
        alt = replace(cfg, **SCENARIOS[name][0])
        # the batch is scored under one set of the options _scores and the directions take
        # (the base's): a scenario changing them, or with entropy weights (from its own
        # scores), is scored alone
        alone = alt.dimension_weights == "entropy" or any(
            getattr(alt, o) != getattr(cfg, o)
            for o in ("dimension_weights", "rescale", "directions")
        )
        if alone:
            cells = _cell_factors(stats_of(alt), prep, alt)
            _, comp, _ = _scores(cells, alt, [], warn=False)
            pairs.append((comp, [i]))
            continue
        batch.append(stats_of(alt).assign(**{_RUN: len(batch)}))
        batch_at.append(i)
        batch_cfg.append(alt)
    if batch:
        stacked = pd.concat(batch, ignore_index=True)
        stacked = stacked[[_RUN, *(c for c in stacked.columns if c != _RUN)]]
        # each variant's factors under its own options (dimension_weights and rescale, for
        # the scores, are the base's in the batch)
        cells = _cell_factors(stacked, prep, batch_cfg)
        _, comp, _ = _scores(cells, batch_cfg[0], [], warn=False)
        pairs.append((comp, batch_at))
    return pairs


def _leave_one_out_batch(
    prep: _Prepared, cfg: IndexOptions, left_out: pd.Series
) -> pd.DataFrame | None:
    """Composite of every leave-one-city-out variant, all scored in one pass.

    Variant ``k`` (column :data:`agglo.analysis.index._RUN`) holds the panel rows of every
    city but ``left_out.iloc[k]``, in their order; every group, pool and rank of the index is
    taken per variant, so each variant's numbers are those of scoring it alone (the same
    values in the same order in each group; ``tests/test_index.py`` checks it). A variant
    with no cell left has no rows; ``None`` when no variant has any.

    Only the cells of the left-out city's agglomeration change: their statistics are
    computed from the stacked rows of that agglomeration without the city, the other
    agglomerations' cells are the base cells (statistics of the same values in the same
    order), so the stack holds ``Σ n_g (n_g − 1)`` cities' rows instead of ``n²``.
    """
    values = prep.values
    try:
        base = _cell_stats(prep, cfg, [], warn=False)
    except AggloInputError:  # no cell has min_cities reporters even with every city
        return None
    # integer codes of cities and agglomerations: the masks below compare numbers, not text
    city, cities = pd.factorize(values["adcode"])
    group, groups = pd.factorize(values["agglomeration_id"])
    group_of = dict(zip(city.tolist(), group.tolist(), strict=True))
    base_group = groups.get_indexer(base["agglomeration_id"])
    rows, kept = [], []
    for k in cities.get_indexer(left_out):
        g = group_of[k]
        rows.append(np.flatnonzero((group == g) & (city != k)))
        kept.append(np.flatnonzero(base_group != g))
    runs = np.arange(len(rows))
    stacked = values.iloc[np.concatenate(rows)].reset_index(drop=True)
    stacked.insert(0, _RUN, np.repeat(runs, [len(r) for r in rows]))
    try:
        changed = _cell_stats(replace(prep, values=stacked), cfg, [], warn=False)
    except AggloInputError:  # no variant keeps a cell of its city's agglomeration
        changed = None
    same = base.iloc[np.concatenate(kept)].reset_index(drop=True)
    same.insert(0, _RUN, np.repeat(runs, [len(k) for k in kept]))
    keys = [_RUN, "agglomeration_id", "year", "indicator"]
    stats = pd.concat([same, changed], ignore_index=True) if changed is not None else same
    if stats.empty:
        return None
    # the order of a groupby over the whole stack (the scores' means depend on it)
    stats = stats.sort_values(keys, kind="stable").reset_index(drop=True)
    cells = _cell_factors(stats, prep, cfg)
    _, comp, _ = _scores(cells, cfg, [], warn=False)
    return comp
