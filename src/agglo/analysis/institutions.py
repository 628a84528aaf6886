"""Plans and coordination mechanisms in force per agglomeration-year (seed 004 tables 2-3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from agglo.errors import AggloInputError, ValidationError
from agglo.options import choice_problem

__all__ = ["DEFAULT_LEVEL_WEIGHTS", "INSTITUTION_COLUMNS", "institutions_by_year"]

#: columns of :func:`institutions_by_year`
INSTITUTION_COLUMNS = [
    "agglomeration_id",
    "year",
    "n_plans",
    "n_mechanisms",
    "n_national",
    "n_provincial",
    "n_municipal",
    "score",
    "latest_plan",
    "in_force",
]

#: weight of a plan or mechanism by level (national above provincial above municipal)
DEFAULT_LEVEL_WEIGHTS: dict[str, float] = {"national": 2.0, "provincial": 1.0, "municipal": 0.5}


def institutions_by_year(
    institutions: pd.DataFrame,
    years: Iterable[int],
    *,
    agglomerations: Sequence[str] | None = None,
    level_weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Plans and coordination mechanisms in force per agglomeration-year (seed 004 tables 2-3).

    A plan or mechanism counts from its year on. ``score`` weights them by level
    (default national 2, provincial 1, municipal 0.5: national above provincial). It is
    reported beside the index, never inside it (DESIGN.md).

    Parameters
    ----------
    institutions
        ``agglomeration_id, year, kind (plan/mechanism), level, name_zh`` (e.g.
        :func:`agglo.load_institutions`).
    years
        Years to report.
    agglomerations
        Agglomeration ids to report (default: those in ``institutions``).
    level_weights
        Level -> weight.

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id, year, n_plans, n_mechanisms, n_national, n_provincial,
        n_municipal, score, latest_plan, in_force`` (names joined by "; ").

    Examples
    --------
    >>> inst = pd.DataFrame({"agglomeration_id": ["a", "a"], "year": [2012, 2016],
    ...     "kind": ["plan", "mechanism"], "level": ["national", "provincial"],
    ...     "name_zh": ["P", "M"]})
    >>> institutions_by_year(inst, [2010, 2015, 2020])["score"].tolist()
    [0.0, 2.0, 3.0]
    """
    weights = dict(DEFAULT_LEVEL_WEIGHTS if level_weights is None else level_weights)
    years = sorted(int(y) for y in years)
    inst = (
        institutions.copy()
        if len(institutions.columns)
        else pd.DataFrame(columns=["agglomeration_id", "year", "kind", "level", "name_zh"])
    )
    need = ["agglomeration_id", "year", "kind", "level", "name_zh"]
    miss = [c for c in need if c not in inst.columns]
    if miss:
        raise AggloInputError(f"institutions lack column(s) {miss}; expected {need}.")
    problems = [
        p
        for lv in sorted(set(inst["level"]))
        if (p := choice_problem("institutions.level", lv, list(weights)))
    ]
    if problems:
        raise ValidationError(problems, source="institutions")
    groups = (
        list(agglomerations)
        if agglomerations is not None
        else sorted(inst["agglomeration_id"].unique())
    )
    records = sorted(
        zip(
            inst["agglomeration_id"],
            inst["year"].astype(int),
            inst["kind"],
            inst["level"],
            inst["name_zh"].astype(str),
            strict=True,
        ),
        key=lambda r: r[1],
    )
    rows = []
    for g in groups:
        gi = [r for r in records if r[0] == g]
        for y in years:
            f = [r for r in gi if r[1] <= y]
            plans = [r for r in f if r[2] == "plan"]
            rows.append(
                {
                    "agglomeration_id": g,
                    "year": y,
                    "n_plans": len(plans),
                    "n_mechanisms": sum(r[2] == "mechanism" for r in f),
                    "n_national": sum(r[3] == "national" for r in f),
                    "n_provincial": sum(r[3] == "provincial" for r in f),
                    "n_municipal": sum(r[3] == "municipal" for r in f),
                    "score": float(sum(weights[r[3]] for r in f)),
                    "latest_plan": plans[-1][4] if plans else "",
                    "in_force": "; ".join(r[4] for r in f),
                }
            )
    return pd.DataFrame(rows, columns=INSTITUTION_COLUMNS)
