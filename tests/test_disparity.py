"""Dagum Gini decomposition, Theil T/L and CV of logs: hand-worked values and library checks.

Two-group example worked by hand (module :mod:`agglo.analysis.disparity` formulas):
a = {1, 3}, b = {2, 6}; n = 4, μ = 3, μ_a = 2, μ_b = 4.
- pooled Σ_i Σ_r |y_i − y_r| = 2 (2 + 1 + 5 + 1 + 3 + 4) = 32 -> G = 32 / (2·16·3) = 1/3;
- G_aa = 2·2 / (2·4·2) = 1/4, G_bb = 2·4 / (2·4·4) = 1/4; p = 1/2, 1/2; s_a = 4/12 = 1/3,
  s_b = 2/3 -> G_w = 1/4·1/2·1/3 + 1/4·1/2·2/3 = 1/8;
- b − a differences: 1, −1, 5, 3 -> mean |·| = 10/4, G_ba = 2.5 / (4 + 2) = 5/12;
  d = (1 + 5 + 3)/4 = 9/4, p = 1/4, D = (9/4 − 1/4)/(10/4) = 0.8;
  weight p_b s_a + p_a s_b = 1/2 -> G_nb = 5/12·1/2·0.8 = 1/6, G_t = 5/12·1/2·0.2 = 1/24;
- 1/8 + 1/6 + 1/24 = 1/3 = G.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from agglo.analysis.disparity import (
    DisparityOptions,
    cv_log,
    dagum_gini,
    disparity,
    gini,
    theil,
)
from agglo.errors import AggloDataWarning, AggloInputError


def brute_gini(y):
    y = np.asarray(y, float)
    return np.abs(y[:, None] - y[None, :]).sum() / (2 * y.size**2 * y.mean())


def brute_dagum(y, g):
    """Dagum (1997) by double loops over the definitions (independent of the sorted sums)."""
    y, g = np.asarray(y, float), np.asarray(g)
    n = y.size
    labs = sorted(set(g))
    part = {k: y[g == k] for k in labs}
    p = {k: part[k].size / n for k in labs}
    s = {k: part[k].sum() / y.sum() for k in labs}
    gw = 0.0
    for k in labs:
        v = part[k]
        gjj = sum(abs(a - b) for a in v for b in v) / (2 * v.size**2 * v.mean())
        gw += gjj * p[k] * s[k]
    gnb = gt = 0.0
    for j, h in itertools.combinations(labs, 2):
        if part[j].mean() < part[h].mean():
            j, h = h, j
        a, b = part[j], part[h]
        pairs = [(x, z) for x in a for z in b]
        gjh = sum(abs(x - z) for x, z in pairs) / (a.size * b.size * (a.mean() + b.mean()))
        d = sum(max(x - z, 0) for x, z in pairs) / len(pairs)
        pp = sum(max(z - x, 0) for x, z in pairs) / len(pairs)
        big_d = (d - pp) / (d + pp)
        w = p[j] * s[h] + p[h] * s[j]
        gnb += gjh * w * big_d
        gt += gjh * w * (1 - big_d)
    return brute_gini(y), gw, gnb, gt


def test_two_groups_by_hand():
    r = dagum_gini([1.0, 3.0, 2.0, 6.0], ["a", "a", "b", "b"])
    assert r.total == pytest.approx(1 / 3, abs=1e-15)
    assert r.within == pytest.approx(1 / 8, abs=1e-15)
    assert r.net_between == pytest.approx(1 / 6, abs=1e-15)
    assert r.transvariation == pytest.approx(1 / 24, abs=1e-15)
    pair = r.pairs.iloc[0]
    assert (pair["group_high"], pair["group_low"]) == ("b", "a")
    assert pair["gini_between"] == pytest.approx(5 / 12)
    assert pair["d"] == pytest.approx(9 / 4) and pair["p"] == pytest.approx(1 / 4)
    assert pair["D"] == pytest.approx(0.8)
    grp = r.groups.set_index("group")
    assert grp.loc["a", "gini"] == pytest.approx(0.25) and grp.loc["b", "gini"] == pytest.approx(
        0.25
    )
    assert grp.loc["a", "s"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decomposition_adds_up_and_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.lognormal(0, 0.6, 60)
    g = rng.choice(list("pqrst"), 60)
    r = dagum_gini(y, g)
    assert abs(r.within + r.net_between + r.transvariation - r.total) < 1e-12
    total, gw, gnb, gt = brute_dagum(y, g)
    assert r.total == pytest.approx(total, rel=1e-12)
    assert (r.within, r.net_between, r.transvariation) == pytest.approx((gw, gnb, gt), rel=1e-10)
    assert (r.pairs["D"].between(0, 1)).all()


def test_gini_is_the_mean_difference_gini_and_matches_inequality():
    from inequality.gini import Gini

    rng = np.random.default_rng(7)
    y = rng.gamma(2.0, 3.0, 101)
    assert gini(y) == pytest.approx(brute_gini(y), rel=1e-12)
    assert gini(y) == pytest.approx(Gini(y).g, rel=1e-12)
    assert dagum_gini(y, rng.choice(["a", "b"], y.size)).total == pytest.approx(gini(y), rel=1e-12)


def test_one_group_is_all_within():
    r = dagum_gini([1.0, 2.0, 4.0], ["x"] * 3)
    assert r.within == pytest.approx(r.total) and r.pairs.empty


def test_theil_matches_inequality_package():
    from inequality.theil import Theil, TheilD

    rng = np.random.default_rng(3)
    y = rng.lognormal(1, 0.5, 80)
    g = rng.choice(["a", "b", "c"], 80)
    r = theil(y, g)
    assert r.theil_t == pytest.approx(float(Theil(y).T), rel=1e-12)
    td = TheilD(y, g)
    assert r.t_between == pytest.approx(float(np.ravel(td.bg)[0]), rel=1e-10)
    assert r.t_within == pytest.approx(float(np.ravel(td.wg)[0]), rel=1e-10)


def test_theil_l_and_cv_log_by_hand():
    # y = 1, e²: μ = (1 + e²)/2; L = mean ln(μ/y) = ln μ − 1; ln y = 0, 2 -> σ 1, mean 1
    y = [1.0, np.e**2]
    mu = (1 + np.e**2) / 2
    r = theil(y)
    assert r.theil_l == pytest.approx(np.log(mu) - 1.0)
    assert r.sd_log == pytest.approx(1.0) and r.cv_log == pytest.approx(1.0)
    assert cv_log(y) == pytest.approx(1.0)
    r2 = theil([1.0, 1.0, 4.0, 8.0], ["a", "a", "b", "b"])
    assert r2.l_within + r2.l_between == pytest.approx(r2.theil_l)
    assert r2.t_within + r2.t_between == pytest.approx(r2.theil_t)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1.0, -1.0], "non-negative"),
        ([1.0, np.nan], "missing"),
        ([], "empty"),
        ([0.0, 0.0], "zero"),
    ],
)
def test_bad_values_are_refused(values, match):
    with pytest.raises(AggloInputError, match=match):
        dagum_gini(values, ["a"] * len(values))


def test_theil_needs_positive_values():
    with pytest.raises(AggloInputError, match="positive"):
        theil([0.0, 1.0])


def test_groups_must_align():
    with pytest.raises(AggloInputError, match="one per value"):
        dagum_gini([1.0, 2.0], ["a"])


def _table():
    rows = []
    vals = {2010: [1, 3, 2, 6, 5], 2020: [2, 3, 3, 5, 4]}
    groups = ["a", "a", "b", "b", "c"]
    for year, vs in vals.items():
        for i, (v, g) in enumerate(zip(vs, groups, strict=True)):
            rows.append((f"{i}", g, year, "composite", float(v)))
    return pd.DataFrame(rows, columns=["adcode", "agglomeration_id", "year", "variable", "value"])


def test_disparity_stage_by_year_and_small_groups_warned():
    with pytest.warns(AggloDataWarning, match=r"\['c'\]"):
        r = disparity(_table(), DisparityOptions(min_group_cities=2))
    d = r.dagum.set_index("year")
    assert d.loc[2010, "gini"] == pytest.approx(1 / 3)  # the hand example, c left out
    assert d.loc[2010, "n_groups"] == 2
    parts = d[["within", "net_between", "transvariation"]].sum(axis=1)
    assert np.allclose(parts, d["gini"], atol=1e-12)
    assert set(r.tables()) >= {"disparity_dagum", "disparity_theil", "disparity_dagum_pairs"}
    assert set(r.theil["year"]) == {2010, 2020}


def test_disparity_refuses_unknown_variable_and_duplicates():
    with pytest.raises(AggloInputError, match="not in the values"):
        disparity(_table(), DisparityOptions(variables=("nope",)))
    t = _table()
    with pytest.raises(AggloInputError, match="duplicated"):
        disparity(pd.concat([t, t.head(1)]))


def test_kde_bandwidth_rules_by_hand():
    from agglo.outputs.charts_disparity import kde_bandwidths, kernel_density_chart

    v = pd.DataFrame(
        {
            "agglomeration_id": ["a"] * 5 + ["b"] * 2,
            "year": 2020,
            "value": [1.0, 2.0, 4.0, 8.0, 16.0, 1.0, 2.0],
        }
    )
    s = np.std([1.0, 2.0, 4.0, 8.0, 16.0], ddof=1)
    scott = kde_bandwidths(v, "scott").set_index("agglomeration_id")
    silver = kde_bandwidths(v, "silverman").set_index("agglomeration_id")
    assert scott.loc["a", "bandwidth"] == pytest.approx(5 ** (-1 / 5) * s)
    assert silver.loc["a", "bandwidth"] == pytest.approx((5 * 3 / 4) ** (-1 / 5) * s)
    assert np.isnan(scott.loc["b", "bandwidth"])  # 2 cities: no density
    fig = kernel_density_chart(v, "a", bandwidth="silverman", synthetic=True)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [f"2020 (h = {silver.loc['a', 'bandwidth']:.3g})"]
    assert any("SYNTHETIC" in t.get_text() for t in fig.texts)
    with pytest.raises(AggloInputError, match="scott, silverman"):
        kde_bandwidths(v, "sheather")
