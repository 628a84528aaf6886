"""σ- and β-convergence: OLS against numpy least squares, speed and half-life in closed form,
spatial models against spreg fitted directly on correctly ordered arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from libpysal.graph import Graph
from libpysal.weights import lat2W

from agglo.analysis.convergence import ConvergenceOptions, beta_speed, convergence
from agglo.errors import AggloDataWarning, AggloInputError, ValidationError

SIDE = 6  # 6 x 6 lattice of cities, two agglomerations (left and right halves)


def _panel(seed: int = 0, shuffle: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = SIDE * SIDE
    ids = [f"{i:06d}" for i in range(n)]
    y0 = rng.lognormal(0.0, 0.5, n)
    growth = 0.05 - 0.02 * np.log(y0) + rng.normal(0, 0.005, n)
    y1 = y0 * np.exp(10 * growth)
    ctrl = rng.normal(0, 1, n)
    grp = ["L" if (i % SIDE) < SIDE // 2 else "R" for i in range(n)]
    rows = []
    for i in range(n):
        rows += [
            (ids[i], grp[i], 2010, "composite", y0[i]),
            (ids[i], grp[i], 2020, "composite", y1[i]),
            (ids[i], grp[i], 2010, "ctrl", ctrl[i]),
            (ids[i], grp[i], 2020, "ctrl", ctrl[i]),
        ]
    t = pd.DataFrame(rows, columns=["adcode", "agglomeration_id", "year", "variable", "value"])
    return t.sample(frac=1.0, random_state=seed).reset_index(drop=True) if shuffle else t


def _graph() -> Graph:
    from libpysal.weights import W

    w = lat2W(SIDE, SIDE, rook=True)
    ids = [f"{i:06d}" for i in range(SIDE * SIDE)]
    neigh = {ids[k]: [ids[j] for j in v] for k, v in w.neighbors.items()}
    return Graph.from_W(W(neigh, id_order=ids))


def _arrays(t: pd.DataFrame, group: str | None = None):
    c = t[t["variable"] == "composite"].pivot(index="adcode", columns="year", values="value")
    g = t.drop_duplicates("adcode").set_index("adcode")["agglomeration_id"].reindex(c.index)
    if group is not None:
        c = c[g == group]
    y = np.log(c[2020] / c[2010]).to_numpy() / 10
    x = np.log(c[2010]).to_numpy()
    return c.index, y, x, g.reindex(c.index)


def _lstsq(y, X):
    X = np.column_stack([np.ones(len(y)), X])
    b, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ b
    s2 = resid @ resid / (len(y) - X.shape[1])
    se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
    return b, se


def test_absolute_beta_matches_numpy_lstsq():
    t = _panel()
    r = convergence(t, options=ConvergenceOptions(spatial=False))
    _, y, x, _ = _arrays(t)
    b, se = _lstsq(y, x)
    row = r.beta[(r.beta["group"] == "all") & (r.beta["model"] == "absolute")].iloc[0]
    assert row["beta"] == pytest.approx(b[1], rel=1e-10)
    assert row["alpha"] == pytest.approx(b[0], rel=1e-10)
    assert row["se"] == pytest.approx(se[1], rel=1e-8)
    assert row["beta"] < 0 and row["converging"]
    theta = -math.log(1 + 10 * b[1]) / 10
    assert row["speed"] == pytest.approx(theta) and row["half_life"] == pytest.approx(
        math.log(2) / theta
    )
    # per-agglomeration regression on its own cities
    _, yl, xl, _ = _arrays(t, "L")
    bl, _ = _lstsq(yl, xl)
    rl = r.beta[(r.beta["group"] == "L") & (r.beta["model"] == "absolute")].iloc[0]
    assert rl["beta"] == pytest.approx(bl[1], rel=1e-10) and rl["n_cities"] == len(yl)


def test_conditional_beta_with_controls_and_group_effects_matches_lstsq():
    t = _panel()
    r = convergence(t, options=ConvergenceOptions(spatial=False, controls=("ctrl",)))
    idx, y, x, g = _arrays(t)
    ctrl = t[(t["variable"] == "ctrl") & (t["year"] == 2010)].set_index("adcode")["value"]
    X = np.column_stack([x, ctrl.reindex(idx).to_numpy(), (g == "R").to_numpy(float)])
    b, se = _lstsq(y, X)
    row = r.beta[(r.beta["group"] == "all") & (r.beta["model"] == "conditional")].iloc[0]
    assert row["beta"] == pytest.approx(b[1], rel=1e-10)
    assert row["se"] == pytest.approx(se[1], rel=1e-8)


def test_spatial_models_match_spreg_on_ordered_arrays():
    import spreg

    t = _panel()
    g = _graph()
    r = convergence(t, g, ConvergenceOptions(min_cities_spatial=20))
    idx, y, x, _ = _arrays(t)
    w = g.transform("r").to_W()
    order = list(w.id_order)
    pos = [list(idx).index(i) for i in order]
    with warnings.catch_warnings():  # scipy's bounded-minimiser tolerance notice inside spreg
        warnings.filterwarnings("ignore", "Method 'bounded' does not support", RuntimeWarning)
        lag = spreg.ML_Lag(y[pos].reshape(-1, 1), x[pos].reshape(-1, 1), w, method="full")
        err = spreg.ML_Error(y[pos].reshape(-1, 1), x[pos].reshape(-1, 1), w, method="full")
    rows = r.beta[r.beta["group"] == "all"].set_index("model")
    assert rows.loc["spatial_lag", "beta"] == pytest.approx(float(lag.betas[1][0]), rel=1e-8)
    assert rows.loc["spatial_lag", "spatial_coef"] == pytest.approx(float(lag.rho), rel=1e-8)
    assert rows.loc["spatial_error", "beta"] == pytest.approx(float(err.betas[1][0]), rel=1e-8)
    assert rows.loc["spatial_error", "spatial_coef"] == pytest.approx(float(err.lam), rel=1e-8)
    # the halves (18 cities) are below min_cities_spatial: noted, not fitted
    assert not ((r.beta["group"] == "L") & (r.beta["model"] == "spatial_lag")).any()
    assert any("min_cities_spatial" in n for n in r.notes)


def test_sigma_by_hand():
    t = pd.DataFrame(
        {
            "adcode": ["a", "b", "a", "b"],
            "agglomeration_id": "x",
            "year": [2010, 2010, 2020, 2020],
            "variable": "composite",
            "value": [1.0, np.e**2, 1.0, np.e],
        }
    )
    with pytest.warns(AggloDataWarning, match="only σ"):
        r = convergence(t, options=ConvergenceOptions(spatial=False, min_cities=3))
    assert r.beta.empty
    s = r.sigma[r.sigma["group"] == "x"].set_index("year")
    assert s.loc[2010, "sd_log"] == pytest.approx(1.0) and s.loc[2020, "sd_log"] == pytest.approx(
        0.5
    )
    assert s.loc[2010, "cv"] == pytest.approx((np.e**2 - 1) / 2 / ((1 + np.e**2) / 2))
    assert bool(r.sigma_trend.set_index("group").loc["x", "converging"])


def test_speed_closed_form_and_no_convergence():
    assert beta_speed(-0.02, 10)[0] == pytest.approx(-math.log(0.8) / 10)
    assert all(math.isnan(v) for v in beta_speed(0.01, 10))
    assert all(math.isnan(v) for v in beta_speed(-0.2, 10))  # 1 + τβ <= 0


def test_bad_inputs():
    t = _panel()
    with pytest.raises(AggloInputError, match="not in the values"):
        convergence(t, options=ConvergenceOptions(variable="nope"))
    with pytest.raises(AggloInputError, match="start/end"):
        convergence(t, options=ConvergenceOptions(start_year=2011))
    with pytest.raises(ValidationError, match="end_year must be after"):
        ConvergenceOptions(start_year=2020, end_year=2010)
    with pytest.raises(AggloInputError, match="Graph or W"):
        convergence(t, weights={"a": 1})


#: 23 cities in 5 agglomerations whose pooled conditional design (constant, ln y0, 4 dummies)
#: made spreg's condition_index (general eigvals of X'X / diag) return a pair 1 ± 3e-16 i and
#: numpy raise ComplexWarning (OpenBLAS, spreg 1.9); agglo computes the index itself
Y0 = [0.59, 0.7, 0.72, 0.33, 0.65, 0.84, 0.51, 0.8, 0.76, 0.29, 0.76, 0.12, 0.27, 0.35,
      0.19, 0.45, 0.61, 0.45, 0.77, 0.61, 0.78, 0.36, 0.59]  # fmt: skip
SIZES = {"a": 6, "b": 5, "c": 5, "d": 4, "e": 3}


def test_conditional_beta_with_dummies_warns_nothing_and_matches_lstsq():
    groups = [g for g, n in SIZES.items() for _ in range(n)]
    y0 = np.array(Y0)
    y1 = y0 * np.exp(10 * (0.01 - 0.02 * np.log(y0) + 0.001 * np.arange(len(y0)) % 3))
    rows = [
        (f"{i:06d}", g, year, "composite", v)
        for i, (g, a, b) in enumerate(zip(groups, y0, y1, strict=True))
        for year, v in ((2010, a), (2020, b))
    ]
    t = pd.DataFrame(rows, columns=["adcode", "agglomeration_id", "year", "variable", "value"])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=np.exceptions.ComplexWarning)
        warnings.filterwarnings("error", category=AggloDataWarning)
        res = convergence(t, None, ConvergenceOptions(spatial=False, min_cities=3))
    row = res.beta[(res.beta["group"] == "all") & (res.beta["model"] == "conditional")].iloc[0]
    d = pd.get_dummies(pd.Series(groups), drop_first=True, dtype=float).to_numpy()
    x = np.column_stack([np.ones(len(y0)), np.log(y0), d])
    coef, *_ = np.linalg.lstsq(x, np.log(y1 / y0) / 10, rcond=None)
    assert row["beta"] == pytest.approx(coef[1], rel=1e-10)
    assert row["alpha"] == pytest.approx(coef[0], rel=1e-10)


def test_condition_index_matches_spreg_and_warns_on_collinear_controls():
    import spreg

    from agglo.analysis.convergence import condition_index

    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2))
    y = rng.normal(size=(30, 1))
    assert condition_index(x) == pytest.approx(spreg.diagnostics.condition_index(spreg.OLS(y, x)))
    t = _panel()
    wide = t[(t["variable"] == "composite") & (t["year"] == 2010)].set_index("adcode")["value"]
    twin = t[t["variable"] == "composite"].assign(variable="twin")
    twin["value"] = twin["adcode"].map(np.log(wide) * 2.0 + 1e-9)  # ln y0 doubled: collinear
    opts = ConvergenceOptions(spatial=False, controls=("twin",), group_effects=False)
    with pytest.warns(AggloDataWarning, match="nearly collinear"):
        convergence(pd.concat([t, twin], ignore_index=True), None, opts)


@pytest.mark.parametrize("n_controls", [0, 2])
def test_fit_without_summary_equals_spreg_wrappers_bit_for_bit(n_controls):
    """``_fit`` (spreg's base classes and statistics, no text summary) gives exactly the
    numbers of ``spreg.OLS`` / ``ML_Lag`` / ``ML_Error``."""
    import contextlib
    import io

    import spreg

    from agglo.analysis.convergence import _fit

    rng = np.random.default_rng(7)
    n = SIDE * SIDE
    x = np.column_stack([rng.lognormal(0, 0.5, n), *rng.normal(size=(n_controls, n))])
    y = 0.05 - 0.02 * np.log(x[:, 0]) + rng.normal(0, 0.005, n)
    w = _graph().transform("r").to_W()
    ols = spreg.OLS(y.reshape(-1, 1), x, nonspat_diag=False)
    mine = _fit("ols", y, x)
    np.testing.assert_array_equal(mine.betas, ols.betas)
    np.testing.assert_array_equal(mine.std_err, ols.std_err)
    np.testing.assert_array_equal(np.asarray(mine.t_stat), np.asarray(ols.t_stat))
    assert mine.r2 == ols.r2
    for model, cls in (("spatial_lag", spreg.ML_Lag), ("spatial_error", spreg.ML_Error)):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", "Method 'bounded' does not support", RuntimeWarning)
            kw = {"spat_impacts": None} if model == "spatial_lag" else {}
            ref = cls(y.reshape(-1, 1), x, w, method="full", **kw)
        mine = _fit(model, y, x, w)
        np.testing.assert_array_equal(mine.betas, ref.betas)
        np.testing.assert_array_equal(mine.std_err, ref.std_err)
        np.testing.assert_array_equal(np.asarray(mine.z_stat), np.asarray(ref.z_stat))
        assert mine.pr2 == ref.pr2
