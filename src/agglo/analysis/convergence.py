"""σ- and β-convergence of city values, per agglomeration and pooled.

**σ-convergence**: the dispersion of the values across the cities of a group falls over the
years. Reported per group and year: CV (population σ / μ), σ of ln y, CV of ln y and Gini;
``sigma_trend`` compares the first and the last year.

**β-convergence** (Barro and Sala-i-Martin 1992) on one cross-section from ``t0`` to ``T``
(τ = T − t0 years): annual growth ``g_i = ln(y_iT / y_it0) / τ`` regressed on the initial level,

- absolute: ``g = α + β ln y_0 + ε`` (OLS);
- conditional: ``+ Σ γ_k x_k0`` (the ``controls`` at t0) and, for the pooled group, one dummy
  per agglomeration (``group_effects``);
- spatial lag: ``g = ρ W g + α + β ln y_0 + ε``; spatial error: ``g = α + β ln y_0 + u``,
  ``u = λ W u + ε`` (maximum likelihood, spreg ``ML_Lag`` / ``ML_Error``) on the run's
  weights restricted to the group's cities and row-standardised again.

β < 0 means convergence; its speed is ``θ = −ln(1 + τ β) / τ`` (per year) and the half-life
``ln 2 / θ`` (years). Standard errors are spreg's (OLS: classical with n − k degrees of
freedom; ML: from the information matrix), p-values two-sided (t for OLS, z for ML).
The regressions need spreg: ``pip install "agglo[convergence]"``.

Examples
--------
>>> r = beta_speed(-0.02, 10)
>>> round(r[0], 5), round(r[1], 2)
(0.02231, 31.06)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agglo.analysis.autocorr import _as_graph
from agglo.analysis.disparity import _check_table, gini
from agglo.errors import AggloDataWarning, AggloInputError, require
from agglo.options import Options, option

__all__ = ["ConvergenceOptions", "ConvergenceResult", "beta_speed", "convergence"]

POOLED = "all"
BETA_COLUMNS = [
    "group",
    "model",
    "n_cities",
    "start_year",
    "end_year",
    "alpha",
    "beta",
    "se",
    "stat",
    "p_value",
    "spatial_coef",
    "spatial_se",
    "r2",
    "speed",
    "half_life",
    "converging",
]


@dataclass(frozen=True)
class ConvergenceOptions(Options):
    """Options of σ- and β-convergence."""

    section = "convergence"
    variable: str = option(
        "composite", help="Variable whose convergence is tested (a city score or indicator id)."
    )
    start_year: int | None = option(None, help="Initial year t0 (default: the first year).")
    end_year: int | None = option(None, help="Final year T (default: the last year).")
    controls: tuple[str, ...] = option(
        (), help="Variables at t0 added in conditional β-convergence."
    )
    group_effects: bool = option(
        True, help="Conditional β of the pooled cities includes one dummy per agglomeration."
    )
    spatial: bool = option(True, help="Fit spatial lag and spatial error β models (spreg).")
    min_cities: int = option(5, help="Fewest cities for a group's β regression.", minimum=3)
    min_cities_spatial: int = option(
        20, help="Fewest cities for a group's spatial β models.", minimum=5
    )

    def extra_problems(self) -> list[str]:
        s, e = self.start_year, self.end_year
        if s is not None and e is not None and e <= s:
            return [f"convergence.end_year must be after start_year; got {s} -> {e}"]
        return []


@dataclass(frozen=True)
class ConvergenceResult:
    """σ and β convergence tables.

    Attributes
    ----------
    sigma
        ``group, year, n_cities, mean, cv, sd_log, cv_log, gini`` (group ``all`` = pooled).
    sigma_trend
        ``group, first_year, last_year`` and the change of ``cv`` and ``sd_log``;
        ``converging`` when σ of ln y fell.
    beta
        ``group, model, n_cities, start_year, end_year, alpha, beta, se, stat, p_value,
        spatial_coef, spatial_se, r2, speed, half_life, converging`` (``r2``: R² for OLS,
        pseudo-R² for the ML models).
    notes
        Models not fitted and why.
    """

    sigma: pd.DataFrame
    sigma_trend: pd.DataFrame
    beta: pd.DataFrame
    notes: list[str]
    options: ConvergenceOptions

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables by file name."""
        return {
            "convergence_sigma": self.sigma,
            "convergence_sigma_trend": self.sigma_trend,
            "convergence_beta": self.beta,
        }

    def metadata(self) -> dict[str, Any]:
        """Options and notes."""
        return {"options": self.options.to_dict(), "notes": list(self.notes)}


def beta_speed(beta: float, span_years: float) -> tuple[float, float]:
    """Convergence speed θ = −ln(1 + τβ)/τ (per year) and half-life ln 2/θ (years).

    NaN when β ≥ 0 (no convergence) or 1 + τβ ≤ 0 (undefined).

    Examples
    --------
    >>> beta_speed(0.01, 10)
    (nan, nan)
    """
    arg = 1.0 + span_years * beta
    if not beta < 0 or not arg > 0:
        return float("nan"), float("nan")
    theta = -math.log(arg) / span_years
    return theta, math.log(2.0) / theta


def _wide(values: pd.DataFrame, variable: str, year: int) -> pd.Series:
    v = values[(values["variable"] == variable) & (values["year"] == year)]
    return v.set_index("adcode")["value"]


def _sigma(v: pd.DataFrame) -> pd.DataFrame:
    rows = []
    groups = [(POOLED, v), *v.groupby("agglomeration_id", sort=True)]
    for grp, gdf in groups:
        for year, cell in gdf.groupby("year", sort=True):
            y = cell["value"].to_numpy(float)
            pos = (y > 0).all()
            ly = np.log(y) if pos else None
            rows.append(
                {
                    "group": grp,
                    "year": int(year),
                    "n_cities": y.size,
                    "mean": y.mean(),
                    "cv": y.std() / y.mean() if y.mean() > 0 else np.nan,
                    "sd_log": ly.std() if pos else np.nan,
                    "cv_log": ly.std() / abs(ly.mean()) if pos and ly.mean() != 0 else np.nan,
                    "gini": gini(y) if (y >= 0).all() and y.sum() > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _trend(sig: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for grp, g in sig.groupby("group", sort=False):
        g = g.sort_values("year")
        if len(g) < 2:
            continue
        a, b = g.iloc[0], g.iloc[-1]
        rows.append(
            {
                "group": grp,
                "first_year": int(a["year"]),
                "last_year": int(b["year"]),
                "cv_first": a["cv"],
                "cv_last": b["cv"],
                "cv_change": b["cv"] - a["cv"],
                "sd_log_first": a["sd_log"],
                "sd_log_last": b["sd_log"],
                "sd_log_change": b["sd_log"] - a["sd_log"],
                "converging": bool(b["sd_log"] < a["sd_log"]),
            }
        )
    return pd.DataFrame(rows)


def _row(grp: str, model: str, n: int, span: tuple[int, int], **kw: Any) -> dict[str, Any]:
    t0, t1 = span
    speed, half = beta_speed(kw["beta"], t1 - t0)
    return {
        "group": grp,
        "model": model,
        "n_cities": n,
        "start_year": t0,
        "end_year": t1,
        "alpha": kw["alpha"],
        "beta": kw["beta"],
        "se": kw["se"],
        "stat": kw["stat"],
        "p_value": kw["p"],
        "spatial_coef": kw.get("spatial_coef", np.nan),
        "spatial_se": kw.get("spatial_se", np.nan),
        "r2": kw["r2"],
        "speed": speed,
        "half_life": half,
        "converging": bool(kw["beta"] < 0 and kw["p"] < 0.05),
    }


def _spreg() -> Any:
    return require("spreg", "convergence", "β-convergence regressions")


#: Belsley-Kuh-Welsch: a condition index above 30 signals harmful collinearity
CONDITION_INDEX_LIMIT = 30.0


def condition_index(x: np.ndarray) -> float:
    """Condition index of the design ``[1, x]``: sqrt(λ_max / λ_min) of X'X scaled to unit diagonal.

    The symmetric scaling ``D^-1/2 X'X D^-1/2`` has real eigenvalues (``eigvalsh``). spreg's own
    ``condition_index`` takes the general ``eigvals`` of ``X'X / diag``: with agglomeration
    dummies the eigenvalue 1 is repeated, the non-symmetric solver splits it into a pair
    ``1 ± 3e-16 i``, and numpy warns ``ComplexWarning`` when casting it; that is why agglo asks
    spreg for no non-spatial diagnostics (none of which it reports) and computes this itself.

    Examples
    --------
    >>> x = np.array([[1.0], [2.0], [3.0], [4.0]])
    >>> round(condition_index(x), 3)
    4.686
    """
    design = np.column_stack([np.ones(len(x)), x])
    xtx = design.T @ design
    d = np.sqrt(np.diagonal(xtx))
    eig = np.linalg.eigvalsh(xtx / np.outer(d, d))
    return float(np.sqrt(eig.max() / eig.min())) if eig.min() > 0 else float("inf")


def _fit(model: str, y: np.ndarray, x: np.ndarray, w: Any = None) -> Any:
    """spreg's estimate of ``model`` (``ols``, ``spatial_lag``, ``spatial_error``), unprinted.

    The inputs go through the checks of ``spreg.OLS`` / ``ML_Lag`` / ``ML_Error`` (a constant
    column first; constant regressors removed), the estimate is their base class's
    (``BaseOLS``, ``BaseML_Lag``, ``BaseML_Error``, method ``full``) and the statistics agglo
    reports come from the functions the wrappers call (``se_betas``, ``t_stat``, ``r2``,
    ``pr2_aspatial``): the same numbers bit for bit (``tests/test_convergence.py`` compares
    them with the wrappers). Only the wrappers' text summary, built with pandas on every fit
    and never read, is left out.

    Returns
    -------
    object
        The base model with ``std_err`` and ``t_stat`` (OLS) / ``z_stat`` (ML) set, and
        ``r2`` (OLS) or ``pr2`` (ML).
    """
    _spreg()
    from spreg import diagnostics, diagnostics_tsls, user_output
    from spreg.ml_error import BaseML_Error
    from spreg.ml_lag import BaseML_Lag
    from spreg.ols import BaseOLS

    n = user_output.check_arrays(y.reshape(-1, 1), x)
    y, _ = user_output.check_y(y.reshape(-1, 1), n)
    if model != "ols":
        w = user_output.check_weights(w, y, w_required=True)
    design, _, _ = user_output.check_constant(x)
    if model == "ols":
        m = BaseOLS(y=y, x=design, sig2n_k=True)
        m.std_err = diagnostics.se_betas(m)
        m.t_stat = diagnostics.t_stat(m)
        m.r2 = diagnostics.r2(m)
        return m
    # spreg 1.9 warns that method 'bounded' ignores the initial guess spreg passes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Method 'bounded' does not support", RuntimeWarning)
        if model == "spatial_lag":
            m = BaseML_Lag(y=y, x=design, w=w, method="FULL", epsilon=1e-7)
            m.k += 1  # as ML_Lag: rho counts as a coefficient
        else:
            m = BaseML_Error(y=y, x=design, w=w, method="FULL", epsilon=1e-7)
    m.std_err = diagnostics.se_betas(m)
    m.z_stat = diagnostics.t_stat(m, z_stat=True)
    m.pr2 = diagnostics_tsls.pr2_aspatial(m)
    return m


def _ols(y: np.ndarray, x: np.ndarray, names: list[str]) -> dict[str, Any]:
    ci = condition_index(x)
    if ci > CONDITION_INDEX_LIMIT:
        warnings.warn(
            f"convergence: the β regressors {names} are nearly collinear (condition index "
            f"{ci:.1f} > {CONDITION_INDEX_LIMIT:.0f}); β and its standard error are unstable. "
            "Drop a control or set [convergence] group_effects = false.",
            AggloDataWarning,
            stacklevel=3,
        )
    m = _fit("ols", y, x)
    se = np.asarray(m.std_err).ravel()
    t, p = zip(*m.t_stat, strict=True)
    b = np.asarray(m.betas).ravel()
    return {"alpha": b[0], "beta": b[1], "se": se[1], "stat": t[1], "p": p[1], "r2": m.r2}


def _spatial(model: str, y: np.ndarray, x: np.ndarray, w: Any) -> dict[str, Any]:
    m = _fit(model, y, x, w)
    b = np.asarray(m.betas).ravel()
    se = np.asarray(m.std_err).ravel()
    z, p = zip(*m.z_stat, strict=True)
    return {
        "alpha": b[0],
        "beta": b[1],
        "se": se[1],
        "stat": z[1],
        "p": p[1],
        "spatial_coef": b[-1],
        "spatial_se": se[-1],
        "r2": m.pr2,
    }


def convergence(
    values: pd.DataFrame,
    weights: Any | None = None,
    options: ConvergenceOptions | None = None,
) -> ConvergenceResult:
    """σ- and β-convergence of a city variable, per agglomeration and pooled (``all``).

    Parameters
    ----------
    values
        Tidy ``adcode, agglomeration_id, year, variable, value`` (the ``options.variable`` and
        the ``controls``). β needs positive values of ``variable`` at t0 and T.
    weights
        libpysal ``Graph`` or ``W`` keyed by adcode (the run's spatial weights); needed for
        the spatial models (``None`` skips them with a note).
    options
        :class:`ConvergenceOptions`.

    Returns
    -------
    ConvergenceResult

    Examples
    --------
    >>> t = pd.DataFrame({"adcode": [f"{i}" for i in range(6)] * 2,
    ...                   "agglomeration_id": "x", "year": [2010] * 6 + [2020] * 6,
    ...                   "variable": "composite",
    ...                   "value": [1, 2, 3, 4, 5, 6, 2.0, 3.0, 3.9, 4.7, 5.6, 6.3]})
    >>> r = convergence(t, options=ConvergenceOptions(spatial=False))
    >>> bool(r.beta.loc[0, "beta"] < 0), bool(r.sigma_trend.loc[0, "converging"])
    (True, True)
    """
    options = options or ConvergenceOptions()
    v = _check_table(values, ["adcode", "agglomeration_id", "year", "variable", "value"])
    var = options.variable
    present = set(v["variable"].unique())
    missing = [x for x in (var, *options.controls) if x not in present]
    if missing:
        raise AggloInputError(
            f"convergence: variable(s) {missing} not in the values table; available: "
            f"{sorted(set(v['variable']))}."
        )
    notes: list[str] = []
    main = v[v["variable"] == var]
    nan = main["value"].isna()
    if nan.any():
        msg = f"convergence: {int(nan.sum())} missing {var} value(s) left out: " + ", ".join(
            f"{r.adcode}/{r.year}" for r in main[nan].head(10).itertuples()
        )
        warnings.warn(msg, AggloDataWarning, stacklevel=2)
        notes.append(msg)
        main = main[~nan]
    years = sorted(main["year"].unique())
    t0 = options.start_year if options.start_year is not None else years[0]
    t1 = options.end_year if options.end_year is not None else years[-1]
    if t0 not in years or t1 not in years or t1 <= t0:
        raise AggloInputError(
            f"convergence: start/end years {t0}/{t1} must be two of the data's years {years}."
        )
    sigma = _sigma(main[main["year"].between(t0, t1)])
    trend = _trend(sigma)

    y0, y1 = _wide(main, var, t0), _wide(main, var, t1)
    cs = pd.DataFrame({"y0": y0, "y1": y1}).dropna()
    groups_of = main.drop_duplicates("adcode").set_index("adcode")["agglomeration_id"]
    cs["agglomeration_id"] = groups_of.reindex(cs.index)
    for c in options.controls:
        cs[c] = _wide(v, c, t0).reindex(cs.index)
    bad = cs[(cs["y0"] <= 0) | (cs["y1"] <= 0)]
    if len(bad):
        msg = (
            f"convergence: {len(bad)} city(ies) with non-positive {var} left out of β: "
            + ", ".join(bad.index[:10])
        )
        warnings.warn(msg, AggloDataWarning, stacklevel=2)
        notes.append(msg)
        cs = cs.drop(bad.index)
    lack = cs[list(options.controls)].isna().any(axis=1) if options.controls else None
    if lack is not None and lack.any():
        msg = f"convergence: {int(lack.sum())} city(ies) lack a control at {t0}; left out of β"
        warnings.warn(msg, AggloDataWarning, stacklevel=2)
        notes.append(msg)
        cs = cs[~lack]
    tau = t1 - t0
    cs["growth"] = np.log(cs["y1"] / cs["y0"]) / tau
    cs["log_y0"] = np.log(cs["y0"])
    cs = cs.sort_index()

    graph = _as_graph(weights) if weights is not None else None
    if graph is None and options.spatial:
        notes.append("convergence: no spatial weights given; spatial β models skipped")
    in_weights = set(graph.unique_ids) if graph is not None else set()
    rows = []
    for grp, gdf in [(POOLED, cs), *cs.groupby("agglomeration_id", sort=True)]:
        n = len(gdf)
        if n < options.min_cities:
            notes.append(f"convergence {grp}: {n} cities < min_cities {options.min_cities}; no β")
            continue
        y = gdf["growth"].to_numpy(float)
        x_abs = gdf[["log_y0"]].to_numpy(float)
        rows.append(_row(grp, "absolute", n, (t0, t1), **_ols(y, x_abs, ["log_y0"])))
        cond = gdf[["log_y0", *options.controls]]
        if grp == POOLED and options.group_effects and gdf["agglomeration_id"].nunique() > 1:
            dummies = pd.get_dummies(gdf["agglomeration_id"], drop_first=True, dtype=float)
            cond = pd.concat([cond, dummies], axis=1)
        if cond.shape[1] > 1 and n > cond.shape[1] + 1:
            rows.append(
                _row(grp, "conditional", n, (t0, t1), **_ols(y, cond.to_numpy(float), list(cond)))
            )
        if graph is None or not options.spatial:
            continue
        if n < options.min_cities_spatial:
            notes.append(
                f"convergence {grp}: {n} cities < min_cities_spatial "
                f"{options.min_cities_spatial}; no spatial β"
            )
            continue
        ids = [i for i in gdf.index if i in in_weights]
        if len(ids) < n:
            notes.append(f"convergence {grp}: {n - len(ids)} city(ies) not in the weights")
            gdf = gdf.loc[ids]
        sub = graph.subgraph(ids)
        if len(sub.isolates):
            notes.append(
                f"convergence {grp}: spatial β skipped, cities without a neighbour in the "
                f"group: {', '.join(map(str, sub.isolates[:10]))}"
            )
            continue
        w = sub.transform("r").to_W()
        order = list(w.id_order)
        gdf = gdf.loc[order]
        for model in ("spatial_lag", "spatial_error"):
            fit = _spatial(model, gdf["growth"].to_numpy(float), gdf[["log_y0"]].to_numpy(float), w)
            rows.append(_row(grp, model, len(gdf), (t0, t1), **fit))
    beta = pd.DataFrame(rows, columns=BETA_COLUMNS)
    if beta.empty:
        msg = (
            f"convergence: no group has {options.min_cities} cities with {var} at {t0} and "
            f"{t1}; only σ-convergence is reported"
        )
        warnings.warn(msg, AggloDataWarning, stacklevel=2)
        notes.append(msg)
    return ConvergenceResult(
        sigma=sigma, sigma_trend=trend, beta=beta, notes=notes, options=options
    )
