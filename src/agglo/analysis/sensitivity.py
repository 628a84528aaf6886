"""Sensitivity of the integration index ranking to its choices and to each member city."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from agglo.analysis.index import IndexOptions, IndexWarning, _core, _prepare, index_options
from agglo.errors import AggloInputError, ValidationError
from agglo.options import choice_problem

__all__ = ["SCENARIOS", "index_sensitivity"]

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
    report: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexWarning)
        prep = _prepare(panel, membership, cfg, report, employment)
        _, _, base, _ = _core(prep, cfg, report, warn=False)
    base = base.set_index(["agglomeration_id", "year"])
    out = []

    def compare(comp: pd.DataFrame, scenario: str, desc: str, left_out: str) -> None:
        c = comp.set_index(["agglomeration_id", "year"])
        j = base[["score", "rank"]].merge(
            c[["score", "rank"]], left_index=True, right_index=True, suffixes=("", "_s")
        )
        t = pd.DataFrame(
            {
                "scenario": scenario,
                "description": desc,
                "left_out": left_out,
                "base_score": j["score"],
                "score": j["score_s"],
                "score_change": j["score_s"] - j["score"],
                "base_rank": j["rank"].astype(int),
                "rank": j["rank_s"].astype(int),
                "rank_change": (j["rank"] - j["rank_s"]).astype(int),
            }
        ).reset_index()
        out.append(t)

    for name in names:
        overrides, desc = SCENARIOS[name]
        alt = replace(cfg, **overrides)
        _, _, comp, _ = _core(prep, alt, [], warn=False)
        compare(comp, name, desc, "")
    if leave_one_out:
        cities = prep.values[["adcode", "agglomeration_id"]].drop_duplicates()
        it = cities.itertuples(index=False)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(list(it), desc="leave-one-city-out")
        for adcode, g in it:
            sub = replace(prep, values=prep.values[prep.values["adcode"] != adcode])
            try:
                _, _, comp, _ = _core(sub, cfg, [], warn=False)
            except AggloInputError:
                continue
            compare(comp, "leave_one_out", f"without city {adcode} ({g})", adcode)
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
