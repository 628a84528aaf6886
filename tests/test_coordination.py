"""Coupling coordination (both forms) worked by hand, levels, obstacle degree, entropy TOPSIS.

Three subsystems U = (0.2, 0.4, 0.8), equal weights, T = 1.4/3 = 0.466667:
- standard: C = 3 (0.2·0.4·0.8)^{1/3} / 1.4 = 3·0.4/1.4 = 0.857143, D = sqrt(C T) = sqrt(0.4);
- corrected (Wang et al. 2021): Σ|U_i − U_j| = 0.2 + 0.6 + 0.4 = 1.2 over Σ_{m=1}^{2} m = 3
  -> 1 − 0.4 = 0.6; Π(U_i / max U) = 0.25·0.5·1 = 0.125, ^(1/2) = 0.353553;
  C = sqrt(0.6·0.353553) = 0.460578, D = sqrt(0.460578·0.466667) = 0.463613.
Two subsystems (0.2, 0.8): standard C = 2·0.4/1 = 0.8; corrected sqrt((1 − 0.6)·0.25) = 0.316228.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from agglo.analysis.coordination import (
    COORDINATION_LEVELS,
    CoordinationOptions,
    city_scores,
    coordination,
    coordination_level,
    coupling_coordination,
    coupling_degree,
    entropy_topsis,
    obstacle_degree,
)
from agglo.errors import AggloDataWarning, AggloInputError


def test_three_subsystems_by_hand():
    u = pd.DataFrame({"a": [0.2], "b": [0.4], "c": [0.8]})
    std = coupling_coordination(u, "standard").iloc[0]
    cor = coupling_coordination(u, "corrected").iloc[0]
    assert std["C"] == pytest.approx(3 * 0.4 / 1.4)
    assert std["T"] == pytest.approx(1.4 / 3)
    assert std["D"] == pytest.approx(math.sqrt(0.4))
    assert cor["C"] == pytest.approx(math.sqrt(0.6 * math.sqrt(0.125)))
    assert cor["D"] == pytest.approx(math.sqrt(math.sqrt(0.6 * math.sqrt(0.125)) * 1.4 / 3))
    assert (std["level"], std["level_zh"]) == (7, "初级协调")  # 0.632 in (0.6, 0.7]
    assert (cor["level"], cor["level_zh"]) == (5, "濒临失调")  # 0.464 in (0.4, 0.5]


def test_two_subsystems_and_equal_scores():
    assert coupling_degree([[0.2, 0.8]], "standard")[0] == pytest.approx(0.8)
    assert coupling_degree([[0.2, 0.8]], "corrected")[0] == pytest.approx(math.sqrt(0.1))
    for form in ("standard", "corrected"):
        assert coupling_degree([[0.3] * 5], form)[0] == pytest.approx(1.0)
        assert coupling_degree([[0.0, 0.5]], form)[0] == pytest.approx(0.0)


def test_corrected_form_spreads_where_standard_saturates():
    rng = np.random.default_rng(0)
    u = rng.uniform(0.2, 1.0, (500, 5))
    std, cor = coupling_degree(u, "standard"), coupling_degree(u, "corrected")
    assert std.min() > 0.8  # the misuse Wang et al. (2021) point out: C ≈ 1 regardless
    assert cor.std() > 2 * std.std() and (cor <= std + 1e-12).all()


def test_weighted_t():
    u = pd.DataFrame({"a": [0.2], "b": [0.8]})
    r = coupling_coordination(u, "standard", weights={"a": 3, "b": 1}).iloc[0]
    assert r["T"] == pytest.approx(0.75 * 0.2 + 0.25 * 0.8)


def test_ten_levels_thresholds():
    assert len(COORDINATION_LEVELS) == 10
    rank, zh, en = coordination_level([0.0, 0.1, 0.1000001, 0.5, 0.5000001, 0.9, 0.95, 1.0])
    assert rank.tolist() == [1, 1, 2, 5, 6, 9, 10, 10]
    assert zh[0] == "极度失调" and zh[-1] == "优质协调" and en[5] == "good coordination"


@pytest.mark.parametrize("bad", [[[0.2, 1.2]], [[-0.1, 0.5]], [[np.nan, 0.5]], [[0.5]]])
def test_bad_scores_refused(bad):
    with pytest.raises(AggloInputError):
        coupling_degree(bad)


def test_unknown_form_refused():
    with pytest.raises(AggloInputError, match="standard, corrected"):
        coupling_degree([[0.1, 0.2]], "common")


def test_obstacle_degree_by_hand():
    dev = pd.DataFrame({"a": [0.5, 0.0], "b": [0.25, 0.0]})
    o = obstacle_degree(dev, {"a": 0.5, "b": 0.5})
    # row 0: F I = 0.25, 0.125 -> 2/3, 1/3; row 1 has no deviation -> 0
    assert o.iloc[0].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert o.iloc[1].tolist() == [0.0, 0.0]


def test_obstacle_degree_reproduces_index_explanations():
    from test_index import NO_INST, toy_membership, toy_panel

    from agglo.analysis.index import integration_index

    res = integration_index(toy_panel(), toy_membership(), institutions=NO_INST)
    cells = res.indicators
    # equal dimension weights; 2 dimensions with 2 indicators each -> weight 1/4 per indicator
    n_dim = cells.groupby(["agglomeration_id", "year"])["dimension"].transform("nunique")
    n_ind = cells.groupby(["agglomeration_id", "year", "dimension"])["indicator"].transform("size")
    cells = cells.assign(weight=1 / n_dim / n_ind, deviation=100 * cells["R"] - cells["K"])
    checked = 0
    for (g, y), c in cells.groupby(["agglomeration_id", "year"]):
        dev = c.set_index("indicator")[["deviation"]].T
        o = obstacle_degree(dev, c.set_index("indicator")["weight"].to_dict()).iloc[0]
        ex = res.explanations[
            (res.explanations["agglomeration_id"] == g) & (res.explanations["year"] == y)
        ]
        for r in ex.itertuples():
            assert o[r.indicator] == pytest.approx(r.share_of_shortfall, abs=1e-12)
            checked += 1
    assert checked >= 6


def _panel():
    # 4 cities x 2 years; gdp_per_capita (+, development) and pm25 (−, ecology)
    rows = []
    gdp = {2010: [1.0, 2.0, 3.0, 4.0], 2020: [2.0, 3.0, 5.0, 6.0]}
    pm = {2010: [60.0, 50.0, 40.0, 70.0], 2020: [40.0, 35.0, 30.0, 45.0]}
    for year in (2010, 2020):
        for i in range(4):
            g = "A" if i < 2 else "B"
            rows.append((f"{i}", g, year, "gdp_per_capita", gdp[year][i]))
            rows.append((f"{i}", g, year, "pm25", pm[year][i]))
    return pd.DataFrame(rows, columns=["adcode", "agglomeration_id", "year", "indicator", "value"])


def test_city_scores_normalisation_and_entropy_weights_by_hand():
    cs = city_scores(_panel(), CoordinationOptions(normalize_floor=0.0))
    n = cs.normalized.set_index(["adcode", "year"])
    # gdp min 1, max 6; pm25 (negative) min 30, max 70
    assert n.loc[("2", 2020), "gdp_per_capita"] == pytest.approx((5 - 1) / 5)
    assert n.loc[("3", 2010), "pm25"] == pytest.approx(0.0)
    assert n.loc[("2", 2020), "pm25"] == pytest.approx(1.0)
    x = cs.normalized[["gdp_per_capita", "pm25"]].to_numpy()
    p = x / x.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=0) / np.log(len(x))
    w = (1 - e) / (1 - e).sum()
    got = cs.weights.set_index("indicator")["weight"]
    assert got.tolist() == pytest.approx(w.tolist())
    s = cs.scores.set_index(["adcode", "year"])
    assert s.loc[("2", 2020), "development"] == pytest.approx(0.8)  # one indicator per dimension
    comp = x @ w
    assert cs.scores["composite"].tolist() == pytest.approx(comp.tolist())


def test_city_scores_warn_on_incomplete_city_years():
    p = _panel()
    p = p[~((p["adcode"] == "0") & (p["year"] == 2010) & (p["indicator"] == "pm25"))]
    with pytest.warns(AggloDataWarning, match="0/2010"):
        cs = city_scores(p)
    assert len(cs.scores) == 7


def test_topsis_by_hand_and_rank_correlation():
    cs = city_scores(_panel())
    top, corr = entropy_topsis(cs)
    w = cs.weights.set_index("indicator")["weight"]
    v = cs.normalized[list(w.index)].to_numpy() * w.to_numpy()
    sp = np.sqrt(((v - v.max(0)) ** 2).sum(1))
    sm = np.sqrt(((v - v.min(0)) ** 2).sum(1))
    assert top["closeness"].tolist() == pytest.approx((sm / (sp + sm)).tolist())
    assert corr.empty
    ref = top[["adcode", "year"]].assign(value=top["closeness"] * 10 + 1)  # same order
    _, corr = entropy_topsis(cs, ref)
    assert corr["spearman"].tolist() == pytest.approx([1.0] * len(corr))
    ref2 = top[["adcode", "year"]].assign(value=np.arange(len(top), dtype=float) ** 2)
    _, corr2 = entropy_topsis(cs, ref2)
    allrow = corr2.set_index("year").loc["all"]
    expect = stats.spearmanr(top["closeness"], ref2["value"]).statistic
    assert allrow["spearman"] == pytest.approx(expect)


def test_coordination_stage_tables():
    r = coordination(_panel())
    t = r.tables()
    assert set(t["coupling_coordination"]["form"]) == {"standard", "corrected"}
    assert len(t["coupling_coordination"]) == 2 * 8
    sums = r.obstacle_dimensions.groupby(["adcode", "year"])["obstacle"].sum()
    assert np.allclose(sums[sums > 0], 1.0)
    assert r.main_obstacles.groupby(["adcode", "year"]).size().max() <= 3
    assert len(r.metadata()["levels"]) == 10
