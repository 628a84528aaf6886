"""Disparity of city values within and between agglomerations: Dagum Gini, Theil T and L, CV.

All measures take city values (an indicator, a dimension score or a city score) and the group
(agglomeration) of each city, for one year; :func:`disparity` runs them for every variable and
year of a tidy table. Formulas (README, "Disparity, convergence and coordination"):

**Gini (mean difference)** of n values with mean μ: ``G = Σ_i Σ_r |y_i − y_r| / (2 n² μ)``.

**Dagum (1997) decomposition** (Dagum, C., "A new approach to the decomposition of the Gini
income inequality ratio", *Empirical Economics* 22: 515-531). Groups j = 1..k with n_j values,
mean μ_j, population share ``p_j = n_j / n`` and value share ``s_j = n_j μ_j / (n μ)``:

- within group j: ``G_jj = Σ_i Σ_r |y_ji − y_jr| / (2 n_j² μ_j)``;
- between groups j, h: ``G_jh = Σ_i Σ_r |y_ji − y_hr| / (n_j n_h (μ_j + μ_h))``;
- ``G_w = Σ_j G_jj p_j s_j``;
- with μ_j ≥ μ_h, ``d_jh = mean over pairs of max(y_ji − y_hr, 0)`` (the gross economic
  affluence), ``p_jh = mean of max(y_hr − y_ji, 0)`` (the first-order moment of
  transvariation) and ``D_jh = (d_jh − p_jh) / (d_jh + p_jh)``:
  ``G_nb = Σ_{j>h} G_jh (p_j s_h + p_h s_j) D_jh`` (net between) and
  ``G_t = Σ_{j>h} G_jh (p_j s_h + p_h s_j) (1 − D_jh)`` (transvariation / overlap);
- ``G = G_w + G_nb + G_t`` exactly.

**Theil T** ``= (1/n) Σ (y/μ) ln(y/μ)``, within ``Σ_g s_g T_g``, between ``Σ_g s_g ln(μ_g/μ)``;
**Theil L** (mean log deviation) ``= (1/n) Σ ln(μ/y)``, within ``Σ_g p_g L_g``, between
``Σ_g p_g ln(μ/μ_g)``. Both splits are exact. **CV** ``= σ/μ`` (population σ) and **CV of
logs** ``= σ(ln y) / |mean(ln y)|``, beside the plain ``σ(ln y)``.

Examples
--------
>>> r = dagum_gini([1.0, 2.0, 3.0, 4.0], ["a", "a", "b", "b"])
>>> round(r.total, 6), round(r.within + r.net_between + r.transvariation, 6)
(0.25, 0.25)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agglo.errors import AggloDataWarning, AggloInputError
from agglo.options import Options, option

__all__ = [
    "BANDWIDTH_RULES",
    "DagumResult",
    "DisparityOptions",
    "DisparityResult",
    "TheilResult",
    "cv_log",
    "dagum_gini",
    "disparity",
    "gini",
    "kde_bandwidths",
    "theil",
]


#: bandwidth rules of the kernel densities (:func:`kde_bandwidths`)
BANDWIDTH_RULES = ("scott", "silverman")


def _as_values(values: Any, name: str = "values", *, positive: bool = False) -> np.ndarray:
    y = np.asarray(values, dtype=float).ravel()
    if y.size == 0:
        raise AggloInputError(f"{name} is empty; pass at least two city values.")
    if np.isnan(y).any():
        raise AggloInputError(
            f"{name} has {int(np.isnan(y).sum())} missing value(s); drop or impute them first."
        )
    if positive and not (y > 0).all():
        raise AggloInputError(
            f"{name} must be positive for logarithmic measures; got minimum {y.min():g}."
        )
    if (y < 0).any():
        raise AggloInputError(
            f"{name} must be non-negative for Gini and Theil measures; got minimum {y.min():g} "
            "(shift or rescale the variable, e.g. use a 0-100 score)."
        )
    if not y.sum() > 0:
        raise AggloInputError(f"{name} are all zero; inequality is undefined.")
    return y


def _as_groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups, dtype=object).ravel()
    if g.size != n:
        raise AggloInputError(f"groups has {g.size} entries for {n} values; give one per value.")
    if pd.isna(pd.Series(g)).any():
        raise AggloInputError("groups has missing entries; every value needs a group.")
    return g.astype(str)


def _abs_diff_sum(a: np.ndarray, b: np.ndarray) -> float:
    """Σ_i Σ_r |a_i − b_r| in O((n + m) log(n + m)) via sorting."""
    b_sorted = np.sort(b)
    csum = np.concatenate([[0.0], np.cumsum(b_sorted)])
    pos = np.searchsorted(b_sorted, a, side="right")  # number of b <= a_i
    below = a * pos - csum[pos]
    above = (csum[-1] - csum[pos]) - a * (b_sorted.size - pos)
    return float(below.sum() + above.sum())


def _pos_diff_sum(a: np.ndarray, b: np.ndarray) -> float:
    """Σ_i Σ_r max(a_i − b_r, 0)."""
    b_sorted = np.sort(b)
    csum = np.concatenate([[0.0], np.cumsum(b_sorted)])
    pos = np.searchsorted(b_sorted, a, side="right")
    return float((a * pos - csum[pos]).sum())


def gini(values: Any) -> float:
    """Gini coefficient by the mean difference, ``Σ_i Σ_r |y_i − y_r| / (2 n² μ)``.

    Parameters
    ----------
    values
        Non-negative values (not all zero).

    Returns
    -------
    float
        Gini in [0, 1 − 1/n].

    Examples
    --------
    >>> gini([1.0, 1.0, 1.0]), round(gini([0.0, 0.0, 1.0]), 6)
    (0.0, 0.666667)
    """
    y = _as_values(values)
    return float(_abs_diff_sum(y, y) / (2.0 * y.size**2 * y.mean()))


@dataclass(frozen=True)
class DagumResult:
    """One Dagum decomposition (see the module docstring for the formulas).

    Attributes
    ----------
    total, within, net_between, transvariation
        G, G_w, G_nb, G_t (``within + net_between + transvariation == total``).
    groups
        ``group, n, mean, p, s, gini, contribution`` (contribution = G_jj p_j s_j to G_w).
    pairs
        ``group_high, group_low, gini_between, d, p, D, weight, net_between, transvariation``
        for every pair, the higher-mean group first.
    """

    total: float
    within: float
    net_between: float
    transvariation: float
    groups: pd.DataFrame
    pairs: pd.DataFrame

    def summary(self) -> dict[str, float]:
        """Totals and each part's share of G (``*_share``, in [0, 1])."""
        out = {
            "gini": self.total,
            "within": self.within,
            "net_between": self.net_between,
            "transvariation": self.transvariation,
        }
        for k in ("within", "net_between", "transvariation"):
            out[f"{k}_share"] = out[k] / self.total if self.total > 0 else float("nan")
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        """``dagum`` (one row), ``dagum_groups`` and ``dagum_pairs``."""
        return {
            "dagum": pd.DataFrame([self.summary()]),
            "dagum_groups": self.groups,
            "dagum_pairs": self.pairs,
        }

    def metadata(self) -> dict[str, Any]:
        """Method and source."""
        return {"method": "Dagum (1997) Gini decomposition", "n_groups": len(self.groups)}


def dagum_gini(values: Any, groups: Any) -> DagumResult:
    """Dagum (1997) decomposition of the Gini coefficient by groups.

    Parameters
    ----------
    values
        Non-negative city values (one year), e.g. a dimension score.
    groups
        The group (agglomeration id) of each value.

    Returns
    -------
    DagumResult
        G = G_w + G_nb + G_t, each group's own Gini and the between-group Gini of every pair.

    Examples
    --------
    >>> r = dagum_gini([1.0, 3.0, 2.0, 6.0], ["a", "a", "b", "b"])
    >>> round(r.total, 6), round(r.within, 6), round(r.net_between, 6)
    (0.333333, 0.125, 0.166667)
    """
    y = _as_values(values)
    g = _as_groups(groups, y.size)
    n, mu = y.size, y.mean()
    labels = sorted(set(g))
    parts = {lab: y[g == lab] for lab in labels}
    rows = []
    for lab in labels:
        v = parts[lab]
        mj = v.mean()
        gjj = _abs_diff_sum(v, v) / (2.0 * v.size**2 * mj) if mj > 0 else 0.0
        p, s = v.size / n, v.size * mj / (n * mu)
        rows.append(
            {
                "group": lab,
                "n": v.size,
                "mean": mj,
                "p": p,
                "s": s,
                "gini": gjj,
                "contribution": gjj * p * s,
            }
        )
    grp = pd.DataFrame(rows)
    info = grp.set_index("group")
    order = sorted(labels, key=lambda lab: (-info.at[lab, "mean"], lab))
    pair_rows = []
    for a_i, hi in enumerate(order):
        for lo in order[a_i + 1 :]:
            a, b = parts[hi], parts[lo]
            m = a.size * b.size
            mean_abs = _abs_diff_sum(a, b) / m
            msum = info.at[hi, "mean"] + info.at[lo, "mean"]
            gjh = mean_abs / msum if msum > 0 else 0.0
            d = _pos_diff_sum(a, b) / m
            pt = _pos_diff_sum(b, a) / m
            D = (d - pt) / (d + pt) if d + pt > 0 else 0.0
            w = info.at[hi, "p"] * info.at[lo, "s"] + info.at[lo, "p"] * info.at[hi, "s"]
            pair_rows.append(
                {
                    "group_high": hi,
                    "group_low": lo,
                    "gini_between": gjh,
                    "d": d,
                    "p": pt,
                    "D": D,
                    "weight": w,
                    "net_between": gjh * w * D,
                    "transvariation": gjh * w * (1.0 - D),
                }
            )
    cols = [
        "group_high",
        "group_low",
        "gini_between",
        "d",
        "p",
        "D",
        "weight",
        "net_between",
        "transvariation",
    ]
    pairs = pd.DataFrame(pair_rows, columns=cols)
    total = float(_abs_diff_sum(y, y) / (2.0 * n**2 * mu))
    return DagumResult(
        total=total,
        within=float(grp["contribution"].sum()),
        net_between=float(pairs["net_between"].sum()),
        transvariation=float(pairs["transvariation"].sum()),
        groups=grp,
        pairs=pairs,
    )


@dataclass(frozen=True)
class TheilResult:
    """Theil T and L with their within/between split, and the CV of logs.

    Attributes
    ----------
    theil_t, t_within, t_between, theil_l, l_within, l_between
        Theil T and L and their exact splits (see the module docstring).
    cv, sd_log, cv_log
        Pooled CV (population σ), σ of ln y and σ(ln y) / |mean ln y|.
    groups
        ``group, n, mean, theil_t, theil_l`` of each group.
    """

    theil_t: float
    t_within: float
    t_between: float
    theil_l: float
    l_within: float
    l_between: float
    cv: float
    sd_log: float
    cv_log: float
    groups: pd.DataFrame

    def summary(self) -> dict[str, float]:
        """Scalars of this result."""
        keys = ("theil_t", "t_within", "t_between", "theil_l", "l_within", "l_between")
        return {k: getattr(self, k) for k in (*keys, "cv", "sd_log", "cv_log")}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``theil`` (one row) and ``theil_groups``."""
        return {"theil": pd.DataFrame([self.summary()]), "theil_groups": self.groups}

    def metadata(self) -> dict[str, Any]:
        """Method."""
        return {"method": "Theil T (GE(1)) and L (GE(0), mean log deviation)"}


def _theil_t(y: np.ndarray) -> float:
    r = y / y.mean()
    return float(np.mean(r * np.log(r)))


def _theil_l(y: np.ndarray) -> float:
    return float(np.mean(np.log(y.mean() / y)))


def cv_log(values: Any) -> float:
    """CV of the natural logs, ``σ(ln y) / |mean(ln y)|`` (population σ).

    Examples
    --------
    >>> round(cv_log([1.0, np.e**2]), 6)
    1.0
    """
    ly = np.log(_as_values(values, positive=True))
    m = abs(ly.mean())
    return float(ly.std() / m) if m > 0 else float("nan")


def theil(values: Any, groups: Any | None = None) -> TheilResult:
    """Theil T and L indices, split into within and between groups.

    Parameters
    ----------
    values
        Positive city values.
    groups
        The group of each value (``None``: one group, between = 0).

    Returns
    -------
    TheilResult

    Examples
    --------
    >>> r = theil([1.0, 1.0, 4.0, 4.0], ["a", "a", "b", "b"])
    >>> round(r.theil_t, 6) == round(r.t_between, 6), r.t_within
    (True, 0.0)
    """
    y = _as_values(values, positive=True)
    g = _as_groups(groups if groups is not None else ["all"] * y.size, y.size)
    n, mu = y.size, y.mean()
    rows = []
    tw = tb = lw = lb = 0.0
    for lab in sorted(set(g)):
        v = y[g == lab]
        p, s, mg = v.size / n, v.sum() / y.sum(), v.mean()
        tg, lg = _theil_t(v), _theil_l(v)
        tw += s * tg
        tb += s * np.log(mg / mu)
        lw += p * lg
        lb += p * np.log(mu / mg)
        rows.append({"group": lab, "n": v.size, "mean": mg, "theil_t": tg, "theil_l": lg})
    ly = np.log(y)
    return TheilResult(
        theil_t=_theil_t(y),
        t_within=float(tw),
        t_between=float(tb),
        theil_l=_theil_l(y),
        l_within=float(lw),
        l_between=float(lb),
        cv=float(y.std() / mu),
        sd_log=float(ly.std()),
        cv_log=float(ly.std() / abs(ly.mean())) if abs(ly.mean()) > 0 else float("nan"),
        groups=pd.DataFrame(rows),
    )


@dataclass(frozen=True)
class DisparityOptions(Options):
    """Options of the disparity stage (Dagum Gini and Theil by agglomeration and year)."""

    section = "disparity"
    variables: tuple[str, ...] = option(
        ("composite",),
        help="Variables to decompose: 'composite', dimension ids (city scores) or indicator ids; "
        "the first is also drawn as kernel densities.",
    )
    min_group_cities: int = option(
        2,
        help="Agglomerations with fewer cities in a year are left out of that year (warned).",
        minimum=1,
    )
    kde_bandwidth: str = option(
        "scott",
        help="Bandwidth rule of the kernel densities of city scores by year.",
        choices=BANDWIDTH_RULES,
    )


@dataclass(frozen=True)
class DisparityResult:
    """Disparity tables by variable and year.

    Attributes
    ----------
    dagum
        ``variable, year, n_cities, n_groups, gini, within, net_between, transvariation`` and
        the ``*_share`` of each part.
    dagum_groups, dagum_pairs
        Each agglomeration's own Gini and the between Gini of every pair, by variable and year.
    theil
        ``variable, year, theil_t, t_within, t_between, theil_l, l_within, l_between, cv,
        sd_log, cv_log``.
    theil_groups
        Each agglomeration's T and L.
    notes
        What was left out and why.
    """

    dagum: pd.DataFrame
    dagum_groups: pd.DataFrame
    dagum_pairs: pd.DataFrame
    theil: pd.DataFrame
    theil_groups: pd.DataFrame
    notes: list[str]
    options: DisparityOptions

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables by file name."""
        return {
            "disparity_dagum": self.dagum,
            "disparity_dagum_groups": self.dagum_groups,
            "disparity_dagum_pairs": self.dagum_pairs,
            "disparity_theil": self.theil,
            "disparity_theil_groups": self.theil_groups,
        }

    def metadata(self) -> dict[str, Any]:
        """Options and notes."""
        return {"options": self.options.to_dict(), "notes": list(self.notes)}


def _check_kde(values: pd.DataFrame, bandwidth: str) -> None:
    need = ["agglomeration_id", "year", "value"]
    missing = [c for c in need if c not in values.columns]
    if missing:
        raise AggloInputError(f"kernel densities: values lack column(s) {missing}; need {need}.")
    if bandwidth not in BANDWIDTH_RULES:
        raise AggloInputError(
            f"bandwidth must be one of {', '.join(BANDWIDTH_RULES)}; got {bandwidth!r}."
        )


def _kde(v: np.ndarray, bandwidth: str):
    from scipy.stats import gaussian_kde

    if v.size < 3 or not np.ptp(v) > 0:
        return None
    return gaussian_kde(v, bw_method=bandwidth)


def kde_bandwidths(values: pd.DataFrame, bandwidth: str = "scott") -> pd.DataFrame:
    """The bandwidth of the kernel density of every agglomeration-year.

    A Gaussian kernel density (:class:`scipy.stats.gaussian_kde`) of the city values of one
    agglomeration and year, bandwidth by a named rule: ``scott`` ``h = n^(−1/5) · s`` or
    ``silverman`` ``h = (3n/4)^(−1/5) · s`` (s the sample standard deviation, ddof = 1). The
    densities are drawn by :func:`agglo.outputs.charts_disparity.kernel_density_chart`.

    Parameters
    ----------
    values
        ``agglomeration_id, year, value`` (one variable).
    bandwidth
        ``"scott"`` or ``"silverman"``.

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id, year, n_cities, rule, factor, bandwidth`` (bandwidth in the
        value's unit; NaN where fewer than 3 cities or all values equal: no density drawn).

    Examples
    --------
    >>> v = pd.DataFrame({"agglomeration_id": "cy", "year": 2020, "value": [1.0, 2.0, 3.0, 4.0]})
    >>> round(float(kde_bandwidths(v).loc[0, "bandwidth"]), 6)  # 4^(-1/5) * 1.290994
    0.978391
    """
    _check_kde(values, bandwidth)
    rows = []
    for (aid, year), g in values.dropna(subset=["value"]).groupby(
        ["agglomeration_id", "year"], sort=True
    ):
        v = g["value"].to_numpy(float)
        k = _kde(v, bandwidth)
        rows.append(
            {
                "agglomeration_id": aid,
                "year": year,
                "n_cities": v.size,
                "rule": bandwidth,
                "factor": float(k.factor) if k is not None else np.nan,
                "bandwidth": float(np.sqrt(k.covariance[0, 0])) if k is not None else np.nan,
            }
        )
    return pd.DataFrame(
        rows, columns=["agglomeration_id", "year", "n_cities", "rule", "factor", "bandwidth"]
    )


def _check_table(values: pd.DataFrame, need: Sequence[str]) -> pd.DataFrame:
    if not isinstance(values, pd.DataFrame):
        raise AggloInputError(f"values must be a DataFrame; got {type(values).__name__}.")
    missing = [c for c in need if c not in values.columns]
    if missing:
        raise AggloInputError(f"values lacks column(s) {missing}; expected {list(need)}.")
    dup = values.duplicated([c for c in need if c != "value"])
    if dup.any():
        raise AggloInputError(
            f"values has {int(dup.sum())} duplicated row(s), e.g. "
            f"{values.loc[dup, list(need)].head(3).to_dict('records')}; keep one value per key."
        )
    return values


def disparity(values: pd.DataFrame, options: DisparityOptions | None = None) -> DisparityResult:
    """Dagum Gini decomposition and Theil indices of city values by agglomeration, per year.

    Parameters
    ----------
    values
        Tidy table ``adcode, agglomeration_id, year, variable, value`` (non-negative values;
        Theil also needs positive ones). Rows with a missing value are left out (warned).
    options
        :class:`DisparityOptions`; ``variables`` selects the rows of ``values`` to analyse.

    Returns
    -------
    DisparityResult

    Examples
    --------
    >>> t = pd.DataFrame({"adcode": list("abcd"), "agglomeration_id": ["x", "x", "y", "y"],
    ...                   "year": 2020, "variable": "composite", "value": [1.0, 2.0, 3.0, 4.0]})
    >>> float(round(disparity(t).dagum.loc[0, "gini"], 6))
    0.25
    """
    options = options or DisparityOptions()
    need = ["adcode", "agglomeration_id", "year", "variable", "value"]
    v = _check_table(values, need)
    v = v[v["variable"].isin(options.variables)]
    present = set(v["variable"].unique())
    absent = [x for x in options.variables if x not in present]
    if absent:
        raise AggloInputError(
            f"disparity.variables {absent} are not in the values table; available: "
            f"{sorted(set(values['variable']))}."
        )
    notes: list[str] = []
    nan = v["value"].isna()
    if nan.any():
        msg = f"disparity: {int(nan.sum())} missing value(s) left out: " + ", ".join(
            f"{r.adcode}/{r.year}/{r.variable}" for r in v[nan].head(10).itertuples()
        )
        warnings.warn(msg, AggloDataWarning, stacklevel=2)
        notes.append(msg)
        v = v[~nan]
    out: dict[str, list[pd.DataFrame]] = {k: [] for k in ("d", "dg", "dp", "t", "tg")}
    for (var, year), cell in v.groupby(["variable", "year"], sort=True):
        size = cell.groupby("agglomeration_id")["value"].transform("size")
        small = cell[size < options.min_group_cities]
        if len(small):
            msg = (
                f"disparity {var} {year}: agglomeration(s) {sorted(set(small['agglomeration_id']))} "
                f"have fewer than {options.min_group_cities} cities and are left out"
            )
            warnings.warn(msg, AggloDataWarning, stacklevel=2)
            notes.append(msg)
            cell = cell[size >= options.min_group_cities]
        if cell.empty:
            continue
        key = {"variable": var, "year": year}
        dg = dagum_gini(cell["value"], cell["agglomeration_id"])
        out["d"].append(
            pd.DataFrame(
                [{**key, "n_cities": len(cell), "n_groups": len(dg.groups), **dg.summary()}]
            )
        )
        out["dg"].append(dg.groups.rename(columns={"group": "agglomeration_id"}).assign(**key))
        out["dp"].append(dg.pairs.assign(**key))
        if (cell["value"] > 0).all():
            th = theil(cell["value"], cell["agglomeration_id"])
            out["t"].append(pd.DataFrame([{**key, **th.summary()}]))
            out["tg"].append(th.groups.rename(columns={"group": "agglomeration_id"}).assign(**key))
        else:
            msg = f"disparity {var} {year}: values not all positive, Theil and log CV not computed"
            warnings.warn(msg, AggloDataWarning, stacklevel=2)
            notes.append(msg)
    if not out["d"]:
        raise AggloInputError("disparity: no variable-year had enough cities to decompose.")

    def cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        front = ["variable", "year"]
        return df[front + [c for c in df.columns if c not in front]]

    return DisparityResult(
        dagum=cat(out["d"]),
        dagum_groups=cat(out["dg"]),
        dagum_pairs=cat(out["dp"]),
        theil=cat(out["t"]),
        theil_groups=cat(out["tg"]),
        notes=notes,
        options=options,
    )
