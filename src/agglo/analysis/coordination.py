"""City dimension scores, coupling coordination, obstacle degree and entropy-weight TOPSIS.

The integration index of :mod:`agglo.analysis.index` scores agglomerations. Regional-science
papers also score each city-year on the same indicators and ask how well its five dimensions
are coordinated. Formulas (README, "Disparity, convergence and coordination"):

**Normalisation** (pooled over every city and year of the run, so years are comparable):
``x' = f + (1 − f) (x − min) / (max − min)`` for a positive indicator and
``x' = f + (1 − f) (max − x) / (max − min)`` for a negative one, ``f = normalize_floor``
(0.01: the usual shift that keeps logs and products away from 0); a constant indicator gets
``x' = 1``.

**Entropy weights** of the indicators on x' (:func:`agglo.analysis.index.entropy_weights`):
``p_ij = x'_ij / Σ_i x'_ij``, ``e_j = −Σ_i p_ij ln p_ij / ln m``, ``w_j = (1 − e_j) / Σ(1 − e_k)``.
A dimension score is ``U_d = Σ_{j∈d} w_j x'_j / Σ_{j∈d} w_j`` (in [f, 1]) and the city
composite ``Σ_j w_j x'_j``.

**Coupling degree** of the n dimension scores U_1..U_n:

- ``standard``: ``C = n (Π U_i)^{1/n} / Σ U_i`` (= [Π U_i / ((Σ U_i / n)^n)]^{1/n}, geometric over
  arithmetic mean);
- ``corrected`` (Wang, Kong, Ren, Zhi and Dai 2021, 国内耦合协调度模型的误区及修正,
  自然资源学报 36(3): 793-810, doi:10.31497/zrzyxb.20210319):
  ``C = sqrt{[1 − Σ_{i<j} |U_i − U_j| / Σ_{m=1}^{n−1} m] · [Π_i (U_i / max U)]^{1/(n−1)}}``.
  The standard form stays near 1 for almost any scores in (0, 1]; the corrected one spreads
  over [0, 1] and is 1 only when all U_i are equal.

``T = Σ a_i U_i`` (a_i equal, or the dimensions' entropy weights) and ``D = sqrt(C · T)``.
D is classed into ten levels of width 0.1, intervals closed on the right (0 belongs to the
first): (0, 0.1] 极度失调 … (0.9, 1] 优质协调 (:data:`COORDINATION_LEVELS`).

**Obstacle degree** (障碍度) of indicator j for a city-year: factor contribution
``F_j = w_j`` (its composite weight), deviation ``I_j = 1 − x'_j``,
``O_j = F_j I_j / Σ_k F_k I_k``; a dimension's obstacle degree is the sum over its
indicators. This is the same share as ``share_of_shortfall`` in the index's
``index_explanations`` with F = the indicator's composite weight and I = 100 R − K.

**Entropy-weight TOPSIS**: ``v_ij = w_j x'_ij``, ideal ``v⁺_j = max_i v_ij``, anti-ideal
``v⁻_j = min_i v_ij`` (pooled over the run), ``S⁺_i = ||v_i − v⁺||``, ``S⁻_i = ||v_i − v⁻||``,
closeness ``c_i = S⁻_i / (S⁺_i + S⁻_i)``; compared with agglo's city scores by Spearman and
Kendall rank correlation per year.

Examples
--------
>>> round(float(coupling_degree([[0.5, 0.5]])[0]), 6)
1.0
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agglo.analysis.index import entropy_weights
from agglo.errors import AggloDataWarning, AggloInputError
from agglo.options import Options, option
from agglo.reference.registry import DIMENSIONS, INDICATORS

__all__ = [
    "COORDINATION_LEVELS",
    "CityScores",
    "CoordinationOptions",
    "CoordinationResult",
    "city_scores",
    "coordination",
    "coordination_level",
    "coupling_coordination",
    "coupling_degree",
    "entropy_topsis",
    "obstacle_degree",
]

FORMS = ("standard", "corrected")

#: (upper bound of D, Chinese name, English name): the usual ten classes, right-closed
COORDINATION_LEVELS: tuple[tuple[float, str, str], ...] = (
    (0.1, "极度失调", "extreme imbalance"),
    (0.2, "严重失调", "serious imbalance"),
    (0.3, "中度失调", "moderate imbalance"),
    (0.4, "轻度失调", "mild imbalance"),
    (0.5, "濒临失调", "on the verge of imbalance"),
    (0.6, "勉强协调", "barely coordinated"),
    (0.7, "初级协调", "primary coordination"),
    (0.8, "中级协调", "intermediate coordination"),
    (0.9, "良好协调", "good coordination"),
    (1.0, "优质协调", "high-quality coordination"),
)


@dataclass(frozen=True)
class CoordinationOptions(Options):
    """Options of city scores, coupling coordination, obstacle degree and TOPSIS."""

    section = "coordination"
    normalize_floor: float = option(
        0.01,
        help="Lower end f of the min-max normalisation x' in [f, 1].",
        minimum=0.0,
        maximum=0.5,
    )
    coordination_weights: str = option(
        "equal",
        help="Weights a_i of the dimension scores in T = Σ a_i U_i.",
        choices=("equal", "entropy"),
    )
    obstacle_top: int = option(3, help="Main obstacle indicators listed per city-year.", minimum=1)


def coupling_degree(scores: Any, form: str = "corrected") -> np.ndarray:
    """Coupling degree C of each row of subsystem scores (see the module docstring).

    Parameters
    ----------
    scores
        Array (rows = city-years, columns = the n ≥ 2 subsystems) of scores in [0, 1].
    form
        ``"standard"`` or ``"corrected"`` (Wang et al. 2021).

    Returns
    -------
    numpy.ndarray
        C in [0, 1] per row.

    Examples
    --------
    >>> u = [[0.2, 0.8]]
    >>> round(float(coupling_degree(u, "standard")[0]), 6), round(float(coupling_degree(u)[0]), 6)
    (0.8, 0.316228)
    """
    if form not in FORMS:
        raise AggloInputError(f"form must be one of {', '.join(FORMS)}; got {form!r}.")
    u = np.atleast_2d(np.asarray(scores, dtype=float))
    n = u.shape[1]
    if n < 2:
        raise AggloInputError(f"coupling needs at least 2 subsystems; got {n}.")
    if np.isnan(u).any() or (u < 0).any() or (u > 1).any():
        raise AggloInputError(
            "coupling scores must lie in [0, 1] without missing values (normalise them first)."
        )
    if form == "standard":
        s = u.sum(axis=1)
        geo = np.exp(np.log(np.where(u > 0, u, 1.0)).mean(axis=1)) * (u > 0).all(axis=1)
        return np.where(s > 0, n * geo / np.where(s > 0, s, 1.0), 0.0)
    i, j = np.triu_indices(n, k=1)
    spread = np.abs(u[:, i] - u[:, j]).sum(axis=1) / (n * (n - 1) / 2)
    top = u.max(axis=1)
    ratio = np.prod(u / np.where(top > 0, top, 1.0)[:, None], axis=1) ** (1.0 / (n - 1))
    return np.sqrt(np.clip(1.0 - spread, 0.0, None) * np.where(top > 0, ratio, 0.0))


def coordination_level(d: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level number (1-10), Chinese and English names of coupling coordination degrees D.

    Examples
    --------
    >>> rank, zh, en = coordination_level([0.0, 0.1, 0.55, 1.0])
    >>> rank.tolist(), zh.tolist()
    ([1, 1, 6, 10], ['极度失调', '极度失调', '勉强协调', '优质协调'])
    """
    d = np.asarray(d, dtype=float)
    edges = np.array([b for b, _, _ in COORDINATION_LEVELS])
    # right-closed classes: the first edge >= D (small tolerance for D = 0.1 etc. in floats)
    idx = np.clip(np.searchsorted(edges, d - 1e-12, side="left"), 0, len(edges) - 1)
    zh = np.array([COORDINATION_LEVELS[k][1] for k in idx], dtype=object)
    en = np.array([COORDINATION_LEVELS[k][2] for k in idx], dtype=object)
    return idx + 1, zh, en


def coupling_coordination(
    scores: pd.DataFrame,
    form: str = "corrected",
    weights: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Coupling degree C, development index T, coordination degree D and its level per row.

    Parameters
    ----------
    scores
        One column per subsystem (e.g. the five dimension scores), values in [0, 1]; other
        columns of identifiers are passed through if listed in ``scores.attrs["id_columns"]``.
    form
        ``"standard"`` or ``"corrected"`` (Wang et al. 2021).
    weights
        Subsystem -> weight of T (normalised to sum 1); default equal.

    Returns
    -------
    pandas.DataFrame
        The id columns, ``form, C, T, D, level, level_zh, level_en``.

    Examples
    --------
    >>> s = pd.DataFrame({"a": [0.2], "b": [0.8]})
    >>> r = coupling_coordination(s, "standard")
    >>> float(round(r.loc[0, "D"], 6)), r.loc[0, "level_zh"]
    (0.632456, '初级协调')
    """
    ids = [c for c in scores.attrs.get("id_columns", []) if c in scores.columns]
    sub = [c for c in scores.columns if c not in ids]
    u = scores[sub].to_numpy(float)
    if weights is None:
        a = np.full(len(sub), 1.0 / len(sub))
    else:
        unknown = sorted(set(weights) - set(sub))
        if unknown:
            raise AggloInputError(f"weights name unknown subsystem(s) {unknown}; have {sub}.")
        a = np.array([float(weights.get(c, 0.0)) for c in sub])
        if not a.sum() > 0 or (a < 0).any():
            raise AggloInputError("weights must be non-negative with a positive sum.")
        a = a / a.sum()
    c = coupling_degree(u, form)
    t = u @ a
    d = np.sqrt(c * t)
    rank, zh, en = coordination_level(d)
    out = scores[ids].reset_index(drop=True).copy()
    out["form"] = form
    out["C"], out["T"], out["D"] = c, t, d
    out["level"], out["level_zh"], out["level_en"] = rank, zh, en
    return out


def obstacle_degree(deviation: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Obstacle degree ``O_j = F_j I_j / Σ_k F_k I_k`` of each column, row by row.

    Parameters
    ----------
    deviation
        I: rows = city-years, columns = indicators, values ``1 − x'`` (≥ 0).
    weights
        F: indicator -> factor contribution (its weight in the composite).

    Returns
    -------
    pandas.DataFrame
        Same shape, rows summing to 1 (a row without any deviation is all 0).

    Examples
    --------
    >>> o = obstacle_degree(pd.DataFrame({"a": [0.5], "b": [0.5]}), {"a": 0.75, "b": 0.25})
    >>> o.round(6).to_dict("records")
    [{'a': 0.75, 'b': 0.25}]
    """
    missing = [c for c in deviation.columns if c not in weights]
    if missing:
        raise AggloInputError(f"obstacle_degree: no weight for column(s) {missing}.")
    if (deviation.to_numpy(float) < 0).any():
        raise AggloInputError("obstacle_degree: deviations must be non-negative.")
    fi = deviation.mul(pd.Series(weights)[deviation.columns], axis=1)
    tot = fi.sum(axis=1)
    return fi.div(tot.where(tot > 0), axis=0).fillna(0.0)


@dataclass(frozen=True)
class CityScores:
    """Normalised indicators, entropy weights and dimension scores of every city-year.

    Attributes
    ----------
    normalized
        ``adcode, agglomeration_id, year`` and one x' column per indicator.
    weights
        ``indicator, dimension, entropy, weight, dimension_weight`` (weight within the
        composite; dimension_weight within the dimension).
    scores
        ``adcode, agglomeration_id, year``, one U column per dimension and ``composite``.
    """

    normalized: pd.DataFrame
    weights: pd.DataFrame
    scores: pd.DataFrame

    def tidy(self) -> pd.DataFrame:
        """Scores as ``adcode, agglomeration_id, year, variable, value`` (for disparity)."""
        return self.scores.melt(
            id_vars=["adcode", "agglomeration_id", "year"], var_name="variable", value_name="value"
        )


def city_scores(panel: pd.DataFrame, options: CoordinationOptions | None = None) -> CityScores:
    """Entropy-weighted dimension scores and composite of every city-year.

    Parameters
    ----------
    panel
        Tidy ``adcode, agglomeration_id, year, indicator, value``; registry indicators with a
        dimension are used, others ignored. City-years lacking an indicator are left out
        (warned and named).
    options
        :class:`CoordinationOptions` (``normalize_floor``).

    Returns
    -------
    CityScores

    Examples
    --------
    >>> p = pd.DataFrame({"adcode": ["1", "2"] * 2, "agglomeration_id": "x", "year": 2020,
    ...                   "indicator": ["gdp_per_capita"] * 2 + ["pm25"] * 2,
    ...                   "value": [1.0, 3.0, 30.0, 50.0]})
    >>> city_scores(p).scores[["development", "ecology"]].round(2).to_dict("list")
    {'development': [0.01, 1.0], 'ecology': [1.0, 0.01]}
    """
    options = options or CoordinationOptions()
    need = ["adcode", "agglomeration_id", "year", "indicator", "value"]
    if not isinstance(panel, pd.DataFrame) or any(c not in panel.columns for c in need):
        raise AggloInputError(f"panel must be a DataFrame with columns {need}.")
    present = set(panel["indicator"].unique())
    use = [i for i in INDICATORS if INDICATORS[i].dimension and i in present]
    if not use:
        raise AggloInputError("panel holds no registry indicator with a dimension.")
    keys = ["adcode", "agglomeration_id", "year"]
    p = panel[panel["indicator"].isin(use)]
    dup = p.duplicated([*keys, "indicator"])
    if dup.any():
        raise AggloInputError(f"panel has {int(dup.sum())} duplicated city-year-indicator row(s).")
    wide = p.pivot(index=keys, columns="indicator", values="value")[use]
    incomplete = wide.isna().any(axis=1)
    if incomplete.any():
        names = [f"{a}/{y}" for a, _, y in wide.index[incomplete][:10]]
        warnings.warn(
            f"city scores: {int(incomplete.sum())} city-year(s) lack an indicator and are left "
            f"out: {', '.join(names)}",
            AggloDataWarning,
            stacklevel=2,
        )
        wide = wide[~incomplete]
    if wide.empty:
        raise AggloInputError("city scores: no city-year has every indicator.")
    f = options.normalize_floor
    norm = pd.DataFrame(index=wide.index)
    for ind in use:
        x = wide[ind].astype(float)
        lo, hi = x.min(), x.max()
        if not hi > lo:
            norm[ind] = 1.0
            continue
        r = (x - lo) / (hi - lo) if INDICATORS[ind].direction >= 0 else (hi - x) / (hi - lo)
        norm[ind] = f + (1.0 - f) * r
    w = entropy_weights(norm)
    dim_of = {i: INDICATORS[i].dimension for i in use}
    wt = pd.DataFrame({"indicator": use, "dimension": [dim_of[i] for i in use]})
    wt["weight"] = wt["indicator"].map(w)
    dsum = wt.groupby("dimension")["weight"].transform("sum")
    n_dim = wt.groupby("dimension")["indicator"].transform("size")
    wt["dimension_weight"] = np.where(dsum > 0, wt["weight"] / dsum.where(dsum > 0, 1), 1 / n_dim)
    scores = pd.DataFrame(index=norm.index)
    used = set(wt["dimension"])
    for dim in [d for d in DIMENSIONS if d in used]:
        rows = wt[wt["dimension"] == dim]
        scores[dim] = norm[list(rows["indicator"])].to_numpy(float) @ rows[
            "dimension_weight"
        ].to_numpy(float)
    scores["composite"] = norm[use].to_numpy(float) @ wt["weight"].to_numpy(float)
    return CityScores(
        normalized=norm.reset_index(),
        weights=wt,
        scores=scores.reset_index(),
    )


def entropy_topsis(
    cities: CityScores, reference: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Entropy-weight TOPSIS closeness of every city-year and its rank correlation.

    Parameters
    ----------
    cities
        From :func:`city_scores` (normalised indicators and entropy weights).
    reference
        ``adcode, year, value``: agglo's city scores (e.g. ``city_scores.lag_score``) to
        rank-correlate with, per year and over all years.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        ``adcode, agglomeration_id, year, s_plus, s_minus, closeness, rank`` (rank 1 = best
        in its year) and ``year, n_cities, spearman, spearman_p, kendall, kendall_p``
        (empty without ``reference``).

    Examples
    --------
    >>> p = pd.DataFrame({"adcode": ["1", "2", "3"], "agglomeration_id": "x", "year": 2020,
    ...                   "indicator": "gdp_per_capita", "value": [1.0, 2.0, 3.0]})
    >>> entropy_topsis(city_scores(p))[0]["closeness"].round(3).tolist()
    [0.0, 0.5, 1.0]
    """
    from scipy import stats

    keys = ["adcode", "agglomeration_id", "year"]
    w = cities.weights.set_index("indicator")["weight"]
    v = cities.normalized[list(w.index)].to_numpy(float) * w.to_numpy(float)
    s_plus = np.sqrt(((v - v.max(axis=0)) ** 2).sum(axis=1))
    s_minus = np.sqrt(((v - v.min(axis=0)) ** 2).sum(axis=1))
    tot = s_plus + s_minus
    out = cities.normalized[keys].copy()
    out["s_plus"], out["s_minus"] = s_plus, s_minus
    out["closeness"] = np.where(tot > 0, s_minus / np.where(tot > 0, tot, 1.0), 0.5)
    out["rank"] = out.groupby("year")["closeness"].rank(ascending=False, method="min").astype(int)
    cols = ["year", "n_cities", "spearman", "spearman_p", "kendall", "kendall_p"]
    if reference is None:
        return out, pd.DataFrame(columns=cols)
    ref = reference[["adcode", "year", "value"]].rename(columns={"value": "reference"})
    m = out.merge(ref, on=["adcode", "year"]).dropna(subset=["reference"])
    rows = []
    for year, g in [*m.groupby("year", sort=True), ("all", m)]:
        if len(g) < 3:
            continue
        sp = stats.spearmanr(g["closeness"], g["reference"])
        kt = stats.kendalltau(g["closeness"], g["reference"])
        rows.append(
            {
                "year": str(year),
                "n_cities": len(g),
                "spearman": float(sp.statistic),
                "spearman_p": float(sp.pvalue),
                "kendall": float(kt.statistic),
                "kendall_p": float(kt.pvalue),
            }
        )
    return out, pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class CoordinationResult:
    """Tables of :func:`coordination`.

    Attributes
    ----------
    cities
        The :class:`CityScores` used.
    coupling
        Both forms: ``adcode, agglomeration_id, year, form, C, T, D, level, level_zh,
        level_en``.
    obstacles
        ``adcode, agglomeration_id, year, indicator, dimension, weight, deviation, obstacle``.
    obstacle_dimensions
        Dimension obstacle degrees per city-year.
    main_obstacles
        The ``obstacle_top`` indicators with the largest obstacle per city-year.
    topsis, topsis_correlation
        See :func:`entropy_topsis`.
    """

    cities: CityScores
    coupling: pd.DataFrame
    obstacles: pd.DataFrame
    obstacle_dimensions: pd.DataFrame
    main_obstacles: pd.DataFrame
    topsis: pd.DataFrame
    topsis_correlation: pd.DataFrame
    options: CoordinationOptions

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables by file name."""
        return {
            "city_dimension_scores": self.cities.scores,
            "city_indicator_weights": self.cities.weights,
            "coupling_coordination": self.coupling,
            "obstacle_degree": self.obstacles,
            "obstacle_dimensions": self.obstacle_dimensions,
            "main_obstacles": self.main_obstacles,
            "topsis_scores": self.topsis,
            "topsis_rank_correlation": self.topsis_correlation,
        }

    def metadata(self) -> dict[str, Any]:
        """Options and the ten coordination levels."""
        return {
            "options": self.options.to_dict(),
            "levels": [{"upper": b, "zh": zh, "en": en} for b, zh, en in COORDINATION_LEVELS],
        }


def coordination(
    panel: pd.DataFrame,
    options: CoordinationOptions | None = None,
    reference: pd.DataFrame | None = None,
) -> CoordinationResult:
    """City scores, coupling coordination (both forms), obstacle degree and TOPSIS.

    Parameters
    ----------
    panel
        Tidy ``adcode, agglomeration_id, year, indicator, value``.
    options
        :class:`CoordinationOptions`.
    reference
        ``adcode, year, value``: agglo's city scores for the TOPSIS rank correlation.

    Returns
    -------
    CoordinationResult
    """
    options = options or CoordinationOptions()
    cs = city_scores(panel, options)
    keys = ["adcode", "agglomeration_id", "year"]
    dims = [d for d in DIMENSIONS if d in cs.scores.columns]
    u = cs.scores[keys + dims].copy()
    u.attrs["id_columns"] = keys
    dw = None
    if options.coordination_weights == "entropy":
        dw = cs.weights.groupby("dimension")["weight"].sum().to_dict()
    coupling = pd.concat([coupling_coordination(u, form, dw) for form in FORMS], ignore_index=True)
    w = cs.weights.set_index("indicator")["weight"].to_dict()
    ind = list(w)
    dev = 1.0 - cs.normalized[ind]
    obst = obstacle_degree(dev, w)
    long = (
        pd.concat([cs.normalized[keys], obst], axis=1)
        .melt(id_vars=keys, var_name="indicator", value_name="obstacle")
        .merge(cs.weights[["indicator", "dimension", "weight"]], on="indicator")
    )
    dev_long = pd.concat([cs.normalized[keys], dev], axis=1).melt(
        id_vars=keys, var_name="indicator", value_name="deviation"
    )
    long = long.merge(dev_long, on=[*keys, "indicator"])
    long = long[[*keys, "indicator", "dimension", "weight", "deviation", "obstacle"]]
    long = long.sort_values([*keys, "obstacle"], ascending=[True, True, True, False])
    dim_obst = long.groupby([*keys, "dimension"], as_index=False)["obstacle"].sum()
    top = long.groupby(keys, group_keys=False).head(options.obstacle_top).copy()
    top["rank"] = top.groupby(keys).cumcount() + 1
    topsis, corr = entropy_topsis(cs, reference)
    return CoordinationResult(
        cities=cs,
        coupling=coupling,
        obstacles=long.reset_index(drop=True),
        obstacle_dimensions=dim_obst,
        main_obstacles=top.reset_index(drop=True),
        topsis=topsis,
        topsis_correlation=corr,
        options=options,
    )
