"""Integration index: a toy panel worked out by hand, edge cases, Krugman, institutions.

Toy panel: agglomerations A (3 cities), B (4), C (3) -> Σn = 10, R = 0.3, 0.4, 0.3;
years 2010, 2020; indicators gdp_per_capita (+) and income_ratio (−) in ``development``,
road_density (+) and gas_coverage (+) in ``infrastructure``. Default config: ddof 0,
extremes pooled per indicator over both years, level floor 0.01, f = sqrt(f⁺ f⁻) for
negative indicators, equal weights.
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest

from agglo.analysis.index import (
    IndexConfig,
    IndexWarning,
    entropy_weights,
    integration_index,
)
from agglo.analysis.institutions import institutions_by_year
from agglo.analysis.sensitivity import index_sensitivity
from agglo.errors import AggloDataWarning, AggloInputError, ValidationError
from agglo.measures.krugman import krugman_specialisation

CITIES = {
    "A": ["100001", "100002", "100003"],
    "B": ["200001", "200002", "200003", "200004"],
    "C": ["300001", "300002", "300003"],
}
VALUES = {  # indicator -> year -> agglomeration -> city values
    "gdp_per_capita": {
        2010: {"A": [1, 2, 3], "B": [2, 2, 2, 2], "C": [1, 1, 4]},
        2020: {"A": [2, 4, 6], "B": [3, 3, 5, 5], "C": [2, 2, 2]},
    },
    "income_ratio": {
        2010: {"A": [2, 2, 2], "B": [2, 2, 4, 4], "C": [2.5, 2.5, 2.5]},
        2020: {"A": [1, 2, 3], "B": [2, 2, 2, 2], "C": [2, 2, 2]},
    },
    "road_density": {
        2010: {"A": [10, 20, 30], "B": [10, 10, 10, 30], "C": [5, 5, 5]},
        2020: {"A": [20, 20, 20], "B": [20, 20, 20, 20], "C": [10, 10, 40]},
    },
    "gas_coverage": {
        2010: {"A": [90, 90, 90], "B": [80, 80, 100, 100], "C": [60, 60, 60]},
        2020: {"A": [100, 100, 100], "B": [100, 100, 100, 100], "C": [90, 90, 90]},
    },
}
NO_INST = pd.DataFrame()


def toy_panel() -> pd.DataFrame:
    rows = []
    for ind, by_year in VALUES.items():
        for year, by_g in by_year.items():
            for g, vals in by_g.items():
                for code, v in zip(CITIES[g], vals, strict=True):
                    rows.append((code, year, ind, float(v)))
    return pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])


def toy_membership() -> pd.DataFrame:
    return pd.DataFrame(
        [(g, c) for g, codes in CITIES.items() for c in codes],
        columns=["agglomeration_id", "adcode"],
    )


def cell(res, table, g, year, col, **keys):
    t = getattr(res, table)
    sel = (t["agglomeration_id"] == g) & (t["year"] == year)
    for k, v in keys.items():
        sel &= t[k] == v
    assert sel.sum() == 1, (g, year, keys)
    return float(t.loc[sel, col].iloc[0])


# ---- hand computation -------------------------------------------------------------------
S23 = math.sqrt(2 / 3)  # pop. sd of (1,2,3) and (10,20,30)/10
# gdp_per_capita: cv A2010 = sd(1,2,3)/2 = 0.8165/2 = 0.40825; B2010 (2,2,2,2) = 0;
#   C2010 (1,1,4): μ=2, σ=sqrt((1+1+4)/3)=sqrt(2) -> cv 0.70711; A2020 (2,4,6) = 0.40825;
#   B2020 (3,3,5,5): μ=4, σ=1 -> 0.25; C2020 (2,2,2) = 0. cv_max 0.70711, cv_min 0.
CV_GDP = {
    ("A", 2010): S23 / 2,
    ("B", 2010): 0.0,
    ("C", 2010): math.sqrt(2) / 2,
    ("A", 2020): 2 * S23 / 4,
    ("B", 2020): 0.25,
    ("C", 2020): 0.0,
}
# k = 100 (cvmax - cv)/(cvmax - cvmin): A 100(1 - 0.40825/0.70711) = 42.265, B2010 100, C2010 0,
#   B2020 100(1 - 0.25/0.70711) = 64.645, C2020 100.
K_GDP = {key: 100 * (math.sqrt(2) / 2 - cv) / (math.sqrt(2) / 2) for key, cv in CV_GDP.items()}
# levels μ: 2, 2, 2, 4, 4, 2 -> f⁺ = 0.01 + 0.99 (μ-2)/2 = 0.01 (2010, C2020) or 1 (A2020, B2020)
F_GDP = {k: (1.0 if k in {("A", 2020), ("B", 2020)} else 0.01) for k in CV_GDP}
R = {"A": 0.3, "B": 0.4, "C": 0.3}  # 3/10, 4/10, 3/10
# income_ratio (negative): cv A2010 0; B2010 (2,2,4,4): μ 3, σ 1 -> 1/3; C2010 0;
#   A2020 (1,2,3): 0.40825 = cv_max; B2020 0; C2020 0.
CV_INC = {
    ("A", 2010): 0.0,
    ("B", 2010): 1 / 3,
    ("C", 2010): 0.0,
    ("A", 2020): S23 / 2,
    ("B", 2020): 0.0,
    ("C", 2020): 0.0,
}
K_INC = {key: 100 * (S23 / 2 - cv) / (S23 / 2) for key, cv in CV_INC.items()}  # B2010 18.350
# levels μ: A2010 2, B2010 3, C2010 2.5, 2020 all 2 -> L_min 2, L_max 3
# f⁺ = 0.01 + 0.99 (μ-2): 0.01, 1, 0.505, 0.01...; f⁻ = 1.01 - f⁺; f = sqrt(f⁺ f⁻)
#   μ=2: sqrt(0.01·1) = 0.1; μ=3: sqrt(1·0.01) = 0.1; μ=2.5: sqrt(0.505·0.505) = 0.505
F_INC = {k: 0.1 for k in CV_INC} | {("C", 2010): 0.505}
# road_density: A2010 (10,20,30) 0.40825; B2010 (10,10,10,30): μ 15, σ sqrt((3·25+225)/4)
#   = sqrt(75) -> 0.57735; C2010 0; A2020 0; B2020 0; C2020 (10,10,40): μ 20, σ sqrt(200) -> 0.70711
CV_ROAD = {
    ("A", 2010): S23 * 10 / 20,
    ("B", 2010): math.sqrt(75) / 15,
    ("C", 2010): 0.0,
    ("A", 2020): 0.0,
    ("B", 2020): 0.0,
    ("C", 2020): math.sqrt(200) / 20,
}
K_ROAD = {key: 100 * (math.sqrt(2) / 2 - cv) / (math.sqrt(2) / 2) for key, cv in CV_ROAD.items()}
# levels 20, 15, 5, 20, 20, 20 -> f⁺ = 0.01 + 0.99 (μ-5)/15: 1, 0.67, 0.01, 1, 1, 1
F_ROAD = {k: 1.0 for k in CV_ROAD} | {("B", 2010): 0.67, ("C", 2010): 0.01}
# gas_coverage: only B2010 (80,80,100,100) varies: μ 90, σ 10 -> 1/9 = cv_max -> k 0; others k 100
CV_GAS = {k: 0.0 for k in CV_ROAD} | {("B", 2010): 1 / 9}
K_GAS = {k: (0.0 if k == ("B", 2010) else 100.0) for k in CV_GAS}
# levels 90, 90, 60, 100, 100, 90 -> f⁺ = 0.01 + 0.99 (μ-60)/40: 0.7525, 0.7525, 0.01, 1, 1, 0.7525
F_GAS = {
    ("A", 2010): 0.7525,
    ("B", 2010): 0.7525,
    ("C", 2010): 0.01,
    ("A", 2020): 1.0,
    ("B", 2020): 1.0,
    ("C", 2020): 0.7525,
}
KK = {
    "gdp_per_capita": {k: K_GDP[k] * R[k[0]] * F_GDP[k] for k in K_GDP},
    "income_ratio": {k: K_INC[k] * R[k[0]] * F_INC[k] for k in K_INC},
    "road_density": {k: K_ROAD[k] * R[k[0]] * F_ROAD[k] for k in K_ROAD},
    "gas_coverage": {k: K_GAS[k] * R[k[0]] * F_GAS[k] for k in K_GAS},
}
# e.g. K gdp A2010 = 42.265 · 0.3 · 0.01 = 0.1268; K income C2010 = 100 · 0.3 · 0.505 = 15.15;
# K road B2010 = 18.350 · 0.4 · 0.67 = 4.918; K gas A2010 = 100 · 0.3 · 0.7525 = 22.575
DEV = {k: (KK["gdp_per_capita"][k] + KK["income_ratio"][k]) / 2 for k in K_GDP}
INF = {k: (KK["road_density"][k] + KK["gas_coverage"][k]) / 2 for k in K_GDP}
COMP = {k: (DEV[k] + INF[k]) / 2 for k in K_GDP}
# composites: A2010 9.5953, B2010 1.5130, C2010 3.9375, A2020 18.1699, B2020 27.4645, C2020 6.4688


@pytest.fixture(scope="module")
def toy():
    return integration_index(toy_panel(), toy_membership(), institutions=NO_INST)


def test_hand_numbers_spot_values():
    # guard the hand arithmetic itself against typos
    assert KK["gdp_per_capita"][("A", 2010)] == pytest.approx(0.126795, abs=1e-5)
    assert KK["income_ratio"][("C", 2010)] == pytest.approx(15.15)
    assert KK["road_density"][("B", 2010)] == pytest.approx(4.917892, abs=1e-5)
    assert COMP[("B", 2020)] == pytest.approx(27.4645, abs=1e-4)


@pytest.mark.parametrize(
    ("indicator", "cv", "k", "f"),
    [
        ("gdp_per_capita", CV_GDP, K_GDP, F_GDP),
        ("income_ratio", CV_INC, K_INC, F_INC),
        ("road_density", CV_ROAD, K_ROAD, F_ROAD),
        ("gas_coverage", CV_GAS, K_GAS, F_GAS),
    ],
)
def test_toy_indicator_values(toy, indicator, cv, k, f):
    for (g, y), want in cv.items():
        assert cell(toy, "indicators", g, y, "cv", indicator=indicator) == pytest.approx(want)
        assert cell(toy, "indicators", g, y, "k", indicator=indicator) == pytest.approx(k[(g, y)])
        assert cell(toy, "indicators", g, y, "f", indicator=indicator) == pytest.approx(f[(g, y)])
        assert cell(toy, "indicators", g, y, "R", indicator=indicator) == pytest.approx(R[g])
        assert cell(toy, "indicators", g, y, "K", indicator=indicator) == pytest.approx(
            KK[indicator][(g, y)]
        )


def test_toy_dimensions_composite_rank(toy):
    for (g, y), want in DEV.items():
        assert cell(toy, "dimensions", g, y, "score", dimension="development") == pytest.approx(
            want
        )
        assert cell(toy, "dimensions", g, y, "score", dimension="infrastructure") == pytest.approx(
            INF[(g, y)]
        )
        assert cell(toy, "composite", g, y, "score") == pytest.approx(COMP[(g, y)])
    # ranks: 2010 A 9.60 > C 3.94 > B 1.51; 2020 B 27.46 > A 18.17 > C 6.47
    ranks = toy.composite.set_index(["year", "agglomeration_id"])["rank"].to_dict()
    assert ranks == {
        (2010, "A"): 1,
        (2010, "C"): 2,
        (2010, "B"): 3,
        (2020, "B"): 1,
        (2020, "A"): 2,
        (2020, "C"): 3,
    }
    # 0-100: min-max over the six composites, min B2010, max B2020
    lo, hi = COMP[("B", 2010)], COMP[("B", 2020)]
    assert cell(toy, "composite", "A", 2010, "score_0_100") == pytest.approx(
        100 * (COMP[("A", 2010)] - lo) / (hi - lo)
    )
    # nothing dropped or imputed; only the absent registry indicators are reported
    assert len(toy.report) == 1 and "have no values in the panel" in toy.report[0]


def test_toy_between_groups(toy):
    bg = toy.between_groups.set_index(["year", "dimension"])["cv"]
    dev10 = [DEV[(g, 2010)] for g in "ABC"]
    assert bg[(2010, "development")] == pytest.approx(
        statistics.pstdev(dev10) / statistics.mean(dev10)
    )
    comp20 = [COMP[(g, 2020)] for g in "ABC"]
    assert bg[(2020, "composite")] == pytest.approx(
        statistics.pstdev(comp20) / statistics.mean(comp20)
    )


def test_toy_city_gaps_and_scores(toy):
    gaps = toy.city_gaps.set_index(["adcode", "year", "indicator"])
    # a1 gdp 2010: (1 - 2)/2 = -0.5, positive indicator -> lag -0.5
    assert gaps.loc[("100001", 2010, "gdp_per_capita"), "gap"] == pytest.approx(-0.5)
    assert gaps.loc[("100001", 2010, "gdp_per_capita"), "lag"] == pytest.approx(-0.5)
    # b4 income 2010: (4 - 3)/3 = 1/3; negative indicator -> lag -1/3
    assert gaps.loc[("200004", 2010, "income_ratio"), "lag"] == pytest.approx(-1 / 3)
    sc = toy.city_scores.set_index(["adcode", "year"])
    # b4 2010: gaps gdp 0, income 1/3, road (30-15)/15 = 1, gas (100-90)/90 = 1/9
    assert sc.loc[("200004", 2010), "dispersion_gap"] == pytest.approx((0 + 1 / 9 + 1 + 1 / 81) / 4)
    assert sc.loc[("200004", 2010), "lag_score"] == pytest.approx((0 - 1 / 3 + 1 + 1 / 9) / 4)
    # c3 2010: gdp (4-2)/2 = 1, the rest 0
    assert sc.loc[("300003", 2010), "lag_score"] == pytest.approx(0.25)
    # mean over an agglomeration's cities of gap² is cv² (ddof 0)
    a = toy.city_gaps.query(
        "agglomeration_id == 'C' and year == 2020 and indicator == 'road_density'"
    )
    assert float((a["gap"] ** 2).mean()) == pytest.approx(CV_ROAD[("C", 2020)] ** 2)


def test_toy_explanations(toy):
    e = toy.explanations.query("agglomeration_id == 'A' and year == 2010").set_index("rank")
    # weight per indicator 0.5/2 = 0.25; shortfall = 0.25 (100 R - K) with 100 R = 30:
    # gdp 0.25 (30 - 0.127) = 7.47 > income 0.25 (30 - 3) = 6.75 > road 4.33 > gas 1.86
    assert e.loc[1, "indicator"] == "gdp_per_capita"
    assert e.loc[2, "indicator"] == "income_ratio"
    assert e.loc[1, "shortfall"] == pytest.approx(0.25 * (30 - KK["gdp_per_capita"][("A", 2010)]))
    # gdp A2010: 1 - k/100 = 0.577 < 1 - f = 0.99 -> the level costs more
    assert e.loc[1, "cause"] == "level"
    assert len(e) == 3


def test_config_recorded(toy):
    assert toy.config == IndexConfig()
    assert toy.composite.attrs["config"]["ddof"] == 0
    assert toy.city_gaps.attrs["config"]["negative_rule"] == "sqrt"


# ---- options ------------------------------------------------------------------------------


def test_ddof1_changes_cv_by_closed_form():
    res = integration_index(toy_panel(), toy_membership(), config={"ddof": 1}, institutions=NO_INST)
    # (1,2,3): sample sd 1 -> cv 0.5
    assert cell(res, "indicators", "A", 2010, "cv", indicator="gdp_per_capita") == pytest.approx(
        0.5
    )


def test_negative_rules():
    for rule, want in (("reverse", 0.01), ("ignore", 1.0)):
        res = integration_index(
            toy_panel(), toy_membership(), config={"negative_rule": rule}, institutions=NO_INST
        )
        # income B2010: f⁺ = 1 -> reverse f⁻ = 1.01 - 1 = 0.01; ignore -> f⁺ = 1
        assert cell(res, "indicators", "B", 2010, "f", indicator="income_ratio") == pytest.approx(
            want
        )


def test_k_pool_year():
    res = integration_index(
        toy_panel(), toy_membership(), config={"k_pool": "indicator_year"}, institutions=NO_INST
    )
    # gdp 2020: cv_max 0.40825 (A), cv_min 0 (C) -> k(B) = 100 (1 - 0.25/0.40825) = 38.76
    assert cell(res, "indicators", "B", 2020, "k", indicator="gdp_per_capita") == pytest.approx(
        100 * (1 - 0.25 / (S23 / 2))
    )


def test_dimension_weights_mapping_and_entropy():
    res = integration_index(
        toy_panel(),
        toy_membership(),
        config={"dimension_weights": {"development": 3, "infrastructure": 1}},
        institutions=NO_INST,
    )
    assert cell(res, "composite", "A", 2010, "score") == pytest.approx(
        0.75 * DEV[("A", 2010)] + 0.25 * INF[("A", 2010)]
    )
    res = integration_index(
        toy_panel(), toy_membership(), config={"dimension_weights": "entropy"}, institutions=NO_INST
    )
    w = entropy_weights(pd.DataFrame({"development": DEV, "infrastructure": INF}))
    assert res.weights == pytest.approx(w)
    assert any("dimension weights" in r for r in res.report)


def test_entropy_weights_closed_form():
    # column b = (1, 3): p = (1/4, 3/4), e = -(p ln p summed)/ln 2 = 0.81128; a constant -> e 1
    w = entropy_weights(pd.DataFrame({"a": [2.0, 2.0], "b": [1.0, 3.0]}))
    assert w == pytest.approx({"a": 0.0, "b": 1.0})
    w = entropy_weights(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 3.0]}))
    e_a = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)) / math.log(2)
    e_b = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    assert w["a"] == pytest.approx((1 - e_a) / ((1 - e_a) + (1 - e_b)))


def test_config_errors():
    with pytest.raises(
        AggloInputError, match=r"index.dof is not an option \(did you mean 'ddof'\?\)"
    ):
        IndexConfig.from_dict({"dof": 1})
    with pytest.raises(
        AggloInputError,
        match=r"index.missing must be one of drop, interpolate, group_mean; got 'zero'",
    ):
        IndexConfig(missing="zero")
    with pytest.raises(AggloInputError, match=r"index.ddof must be one of 0, 1; got 2"):
        IndexConfig(ddof=2)
    with pytest.raises(AggloInputError, match=r"index.level_floor must be < 1; got 1.0"):
        IndexConfig(level_floor=1.0)
    with pytest.raises(AggloInputError, match="dimension_weights must map"):
        IndexConfig(dimension_weights={"economy": 1.0})
    with pytest.raises(AggloInputError, match="unknown indicator id"):
        IndexConfig(indicators=("gdp",))


# ---- missing data -------------------------------------------------------------------------


def _with_missing() -> pd.DataFrame:
    p = toy_panel()
    # a2's gdp in 2010 missing: A keeps 2 reporting cities (< 3) -> dropped under 'drop'
    return p[
        ~((p["adcode"] == "100002") & (p["year"] == 2010) & (p["indicator"] == "gdp_per_capita"))
    ]


def test_missing_drop_warns_and_drops_cell():
    with pytest.warns(IndexWarning) as caught:
        res = integration_index(_with_missing(), toy_membership(), institutions=NO_INST)
    messages = [str(w.message) for w in caught]
    assert any("fewer than 3 reporting cities" in m for m in messages)
    # the dimension built from fewer indicators than the run uses names what it lacks
    assert any(
        "dimension score(s) built from fewer indicators" in m
        and "A 2010 development lacks gdp_per_capita" in m
        for m in messages
    )
    assert all(issubclass(w.category, AggloDataWarning) for w in caught)
    ind = res.indicators
    assert not (
        (ind["agglomeration_id"] == "A")
        & (ind["year"] == 2010)
        & (ind["indicator"] == "gdp_per_capita")
    ).any()
    # development A2010 now = K income alone; the gdp extremes are unchanged (C2010 still max)
    assert cell(res, "dimensions", "A", 2010, "score", dimension="development") == pytest.approx(
        KK["income_ratio"][("A", 2010)]
    )
    assert any("1 missing city value" in r for r in res.report)


def test_missing_interpolate_needs_bracketing_years():
    p = toy_panel()
    p2015 = p[p["year"] == 2010].assign(year=2015)
    p2015.loc[:, "value"] = p2015["value"] * 1.0
    panel = pd.concat([p, p2015])
    # remove a2 gdp 2015: between 2010 (2) and 2020 (4) -> 3 by linear interpolation
    sel = (
        (panel["adcode"] == "100002")
        & (panel["year"] == 2015)
        & (panel["indicator"] == "gdp_per_capita")
    )
    with pytest.warns(
        IndexWarning, match=r"imputed 1 of 1 missing city value\(s\) by missing='interpolate'"
    ):
        res = integration_index(
            panel[~sel], toy_membership(), config={"missing": "interpolate"}, institutions=NO_INST
        )
    g = res.city_gaps.set_index(["adcode", "year", "indicator"])
    assert g.loc[("100002", 2015, "gdp_per_capita"), "value"] == pytest.approx(3.0)
    assert bool(g.loc[("100002", 2015, "gdp_per_capita"), "imputed"])
    # A 2015 gdp = (1, 3, 3): μ 7/3
    assert cell(res, "indicators", "A", 2015, "mean", indicator="gdp_per_capita") == pytest.approx(
        7 / 3
    )


def test_missing_group_mean():
    p = toy_panel()
    # b1 road 2010 missing: B reporters (10, 10, 30) μ 50/3 -> filled with 50/3
    sel = (p["adcode"] == "200001") & (p["year"] == 2010) & (p["indicator"] == "road_density")
    with pytest.warns(IndexWarning, match="group_mean"):
        res = integration_index(
            p[~sel], toy_membership(), config={"missing": "group_mean"}, institutions=NO_INST
        )
    vals = [50 / 3, 10, 10, 30]
    assert cell(res, "indicators", "B", 2010, "cv", indicator="road_density") == pytest.approx(
        statistics.pstdev(vals) / statistics.mean(vals)
    )
    assert cell(res, "indicators", "B", 2010, "n_cities", indicator="road_density") == 4


# ---- edge cases ----------------------------------------------------------------------------


def test_negative_values_are_an_error():
    p = toy_panel()
    p.loc[0, "value"] = -1.0
    with pytest.raises(ValidationError, match="negative value"):
        integration_index(p, toy_membership(), institutions=NO_INST)


def test_unknown_indicator_ids():
    p = toy_panel()
    p.loc[0, "indicator"] = "gdp_percapita"
    with pytest.raises(
        AggloInputError,
        match=r"unknown indicator id\(s\) 'gdp_percapita' \(did you mean 'gdp_per_capita'",
    ):
        integration_index(p, toy_membership(), institutions=NO_INST)


def test_all_zero_indicator_documented_result():
    p = toy_panel()
    p.loc[p["indicator"] == "road_density", "value"] = 0.0
    with pytest.warns(IndexWarning, match=r"\['road_density'\] take one value in every city"):
        res = integration_index(p, toy_membership(), institutions=NO_INST)
    r = res.indicators[res.indicators["indicator"] == "road_density"]
    # μ = σ = 0 -> cv 0; equal extremes -> k 100, f⁺ 1 -> K = 100 R
    assert (r["cv"] == 0).all() and (r["k"] == 100).all() and (r["f"] == 1).all()
    assert np.allclose(r["K"], 100 * r["agglomeration_id"].map(R))
    res = integration_index(
        p, toy_membership(), config={"constant_indicator": "drop"}, institutions=NO_INST
    )
    assert any("constant indicator(s) ['road_density'] dropped" in r for r in res.report)
    assert "road_density" not in set(res.indicators["indicator"])


def test_zero_cell_among_nonzero_cells():
    p = toy_panel()
    sel = (
        (p["indicator"] == "gdp_per_capita") & p["adcode"].str.startswith("3") & (p["year"] == 2020)
    )
    p.loc[sel, "value"] = 0.0
    res = integration_index(p, toy_membership(), institutions=NO_INST)
    # C2020 all 0: cv 0 -> k 100; level 0 is the minimum -> f⁺ = floor 0.01
    assert cell(res, "indicators", "C", 2020, "k", indicator="gdp_per_capita") == 100
    assert cell(res, "indicators", "C", 2020, "f", indicator="gdp_per_capita") == pytest.approx(
        0.01
    )
    assert (
        res.city_gaps.query(
            "agglomeration_id == 'C' and year == 2020 and indicator == 'gdp_per_capita'"
        )["gap"]
        == 0
    ).all()


def test_hsr_zero_everywhere():
    p = toy_panel()
    hsr = p[p["indicator"] == "gas_coverage"].assign(indicator="hsr", value=0.0)
    with pytest.warns(IndexWarning, match=r"\['hsr'\] take one value"):
        res = integration_index(pd.concat([p, hsr]), toy_membership(), institutions=NO_INST)
    h = res.indicators[res.indicators["indicator"] == "hsr"]
    assert np.allclose(h["K"], 100 * h["agglomeration_id"].map(R))
    # infrastructure is now the mean of three indicators
    assert cell(res, "dimensions", "B", 2010, "n_indicators", dimension="infrastructure") == 3


def test_hsr_must_be_binary():
    p = toy_panel()
    hsr = p[p["indicator"] == "gas_coverage"].assign(indicator="hsr", value=2.0)
    with pytest.raises(ValidationError, match="0/1 indicator are not 0 or 1"):
        integration_index(pd.concat([p, hsr]), toy_membership(), institutions=NO_INST)


def test_agglomeration_with_one_city():
    m = pd.concat(
        [toy_membership(), pd.DataFrame({"agglomeration_id": ["D"], "adcode": ["400001"]})]
    )
    p = toy_panel()
    d = p[p["adcode"] == "100001"].assign(adcode="400001")
    with pytest.warns(IndexWarning, match=r"fewer than 3 reporting cities, e\.g\. D 2010"):
        res = integration_index(pd.concat([p, d]), m, institutions=NO_INST)
    assert "D" not in set(res.composite["agglomeration_id"])
    # R still counts D's member: Σn = 11
    assert cell(res, "indicators", "A", 2010, "R", indicator="gdp_per_capita") == pytest.approx(
        3 / 11
    )


def test_indicator_missing_everywhere():
    # not requested: silently absent from the run but reported
    res = integration_index(toy_panel(), toy_membership(), institutions=NO_INST)
    assert "pm25" not in set(res.indicators["indicator"])
    # explicitly requested: a warning
    with pytest.warns(IndexWarning, match=r"\['pm25'\] have no values"):
        integration_index(
            toy_panel(),
            toy_membership(),
            config={"indicators": ["gdp_per_capita", "pm25"]},
            institutions=NO_INST,
        )
    p = toy_panel()
    p["value"] = np.nan
    with pytest.raises(AggloInputError, match="has a value in the panel; nothing to score"):
        integration_index(p, toy_membership(), institutions=NO_INST)


def test_missing_columns_and_duplicates():
    with pytest.raises(AggloInputError, match=r"panel lacks column\(s\) \['value'\]"):
        integration_index(toy_panel().drop(columns="value"), toy_membership())
    p = toy_panel()
    with pytest.raises(ValidationError, match="duplicated"):
        integration_index(pd.concat([p, p.head(1)]), toy_membership(), institutions=NO_INST)


def test_panel_cities_outside_membership_ignored():
    p = toy_panel()
    extra = p[p["adcode"] == "100001"].assign(adcode="999999", value=1e6)
    res = integration_index(pd.concat([p, extra]), toy_membership(), institutions=NO_INST)
    assert cell(res, "composite", "A", 2010, "score") == pytest.approx(COMP[("A", 2010)])
    assert any("outside the membership" in r for r in res.report)


def test_inputs_not_mutated():
    p, m = toy_panel(), toy_membership()
    p0, m0 = p.copy(), m.copy()
    integration_index(p, m, institutions=NO_INST)
    pd.testing.assert_frame_equal(p, p0)
    pd.testing.assert_frame_equal(m, m0)


# ---- Krugman, institutions, sensitivity ---------------------------------------------------


def test_krugman_hand_values():
    emp = pd.DataFrame(
        {
            "adcode": ["100001"] * 2 + ["100002"] * 2 + ["100003"] * 2,
            "year": 2020,
            "sector": ["manu", "serv"] * 3,
            "employment": [30, 10, 10, 30, 20, 20],
        }
    )
    m = toy_membership()
    out = krugman_specialisation(emp, membership=m).set_index("adcode")["value"]
    # city 1: s = (0.75, 0.25); others (10+20, 30+20) = (30, 50)/80 = (0.375, 0.625)
    #   SP = |0.75-0.375| + |0.25-0.625| = 0.75
    assert out["100001"] == pytest.approx(0.75)
    # city 3: s = (0.5, 0.5); others (40, 40) -> (0.5, 0.5) -> 0
    assert out["100003"] == pytest.approx(0.0)
    assert len(out) == 3  # B and C have no employment rows


def test_krugman_fills_panel_when_absent():
    emp_rows = []
    for codes in CITIES.values():
        for i, c in enumerate(codes):
            for y in (2010, 2020):
                emp_rows += [(c, y, "manu", 10 + 5 * i), (c, y, "serv", 20 - 3 * i)]
    emp = pd.DataFrame(emp_rows, columns=["adcode", "year", "sector", "employment"])
    res = integration_index(toy_panel(), toy_membership(), employment=emp, institutions=NO_INST)
    assert "krugman_index" in set(res.indicators["indicator"])
    assert any("krugman_index computed" in r for r in res.report)


def test_institutions_bundled():
    from agglo.reference.boundaries import load_institutions

    t = institutions_by_year(load_institutions(), [2010, 2015, 2020]).set_index(
        ["agglomeration_id", "year"]
    )
    # yrd 2010: plan 2010 national (2) + mechanisms 2001, 2009, 2009 provincial (3) = 5
    assert t.loc[("yrd", 2010), "score"] == 5.0
    # yrd 2020: plans 2010/2016/2019 national (6) + 3 provincial (3) + 2019 municipal (0.5)
    assert t.loc[("yrd", 2020), "score"] == 9.5
    assert t.loc[("dz", 2015), "score"] == 0.0 and t.loc[("dz", 2020), "score"] == 2.0
    assert t.loc[("qz", 2020), "latest_plan"] == "黔中城市群发展规划"


def test_sensitivity_no_R_closed_form():
    t = index_sensitivity(toy_panel(), toy_membership(), scenarios=["no_R"], leave_one_out=False)
    # without R every K is divided by R_g, so the composite is too
    for r in t.itertuples():
        assert r.score == pytest.approx(COMP[(r.agglomeration_id, r.year)] / R[r.agglomeration_id])
    # 2010 without R: A 31.98, C 13.13, B 3.78; 2020: B 68.66, A 60.57, C 21.56
    # -> the same order as with R both years
    assert (t["rank_change"] == 0).all()
    assert t.set_index(["agglomeration_id", "year"]).loc[("B", 2020), "rank"] == (
        1 if COMP[("B", 2020)] / 0.4 > COMP[("A", 2020)] / 0.3 else 2
    )


def test_sensitivity_leave_one_out():
    t = index_sensitivity(toy_panel(), toy_membership(), scenarios=[])
    loo = t[t["scenario"] == "leave_one_out"]
    # removing an A or C city leaves 2 reporters (< 3): that agglomeration drops out;
    # removing a B city keeps 3 -> rows for B exist
    assert set(loo.loc[loo["left_out"] == "200001", "agglomeration_id"]) == {"A", "B", "C"}
    assert "A" not in set(loo.loc[loo["left_out"] == "100001", "agglomeration_id"])
    with pytest.raises(AggloInputError, match="index scenario must be one of weights_entropy"):
        index_sensitivity(toy_panel(), toy_membership(), scenarios=["nope"])


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"k_pool": "all", "level_pool": "indicator_year", "rescale": "max"},
        {"k_pool": "indicator_year", "ddof": 1, "negative_rule": "reverse"},
    ],
)
def test_sensitivity_leave_one_out_equals_scoring_each_panel_alone(opts):
    """The leave-one-city-out variants are scored in one batch; each must equal
    integration_index on the panel without that city (same membership, so the same R)."""
    panel, m = toy_panel(), toy_membership()
    t = index_sensitivity(panel, m, opts, scenarios=[])
    seen = 0
    for adcode in m["adcode"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone = integration_index(
                panel[panel["adcode"] != adcode],
                m,
                {**opts, "sensitivity": False},
                institutions=NO_INST,
            ).composite.set_index(["agglomeration_id", "year"])
        got = t[t["left_out"] == adcode].set_index(["agglomeration_id", "year"])
        assert sorted(got.index) == sorted(alone.index)
        np.testing.assert_array_equal(got["score"], alone.loc[got.index, "score"])
        np.testing.assert_array_equal(got["rank"], alone.loc[got.index, "rank"])
        seen += len(got)
    assert seen == len(t) > 0


def test_index_report_names_the_missing_cities_of_each_cell():
    # B has 4 members; drop 200002's gdp in 2020: B 2020 gdp keeps 3 reporters (kept)
    p = toy_panel()
    p = p[~((p["adcode"] == "200002") & (p["year"] == 2020) & (p["indicator"] == "gdp_per_capita"))]
    m = toy_membership().assign(name_zh=lambda d: "城" + d["adcode"].str[-1])
    res = integration_index(p, m, {"sensitivity": False}, institutions=NO_INST)
    cov = res.coverage
    assert cov[
        ["agglomeration_id", "year", "indicator", "n_members", "n_cities"]
    ].values.tolist() == [["B", 2020, "gdp_per_capita", 4, 3]]
    assert cov["missing_cities"].tolist() == ["200002 城2"]
    report = res.tables()["index_report"]
    row = report[report["agglomeration_id"] == "B"].iloc[0]
    assert "3 of 4 member cities report; missing 200002 城2" in row["message"]
    # every cell keeps its counts: n_cities in indicators, n_indicators / n_dimensions above
    assert cell(res, "indicators", "B", 2020, "n_cities", indicator="gdp_per_capita") == 3
    assert {"n_indicators"} <= set(res.dimensions) and {"n_dimensions"} <= set(res.composite)


def test_composite_from_fewer_dimensions_warns_naming_them():
    from agglo.reference.registry import INDICATORS

    p = toy_panel()
    infra = [i for i in INDICATORS if INDICATORS[i].dimension == "infrastructure"]
    # C 2010 loses every infrastructure indicator -> its composite lacks that dimension
    p = p[~(p["adcode"].str.startswith("3") & (p["year"] == 2010) & p["indicator"].isin(infra))]
    with pytest.warns(IndexWarning) as caught:
        res = integration_index(p, toy_membership(), {"sensitivity": False}, institutions=NO_INST)
    text = " | ".join(str(w.message) for w in caught)
    assert "agglomeration-year(s) lack one or more dimensions" in text
    assert "C 2010 lacks infrastructure" in text
    assert (
        cell(res, "composite", "C", 2010, "n_dimensions") == res.composite["n_dimensions"].max() - 1
    )


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"k_pool": "all", "level_pool": "indicator_year", "rescale": "max"},
        {"ddof": 1, "negative_rule": "reverse", "dimension_weights": "entropy"},
        {"dimension_weights": {"development": 2.0, "ecology": 1.0}, "use_f": False},
    ],
)
def test_sensitivity_scenarios_batch_equals_each_scenario_alone(opts):
    """The scenarios are scored in one batch from shared cell statistics; each must equal
    the index scored under its options alone (the same numbers, bit for bit)."""
    from dataclasses import replace

    from agglo.analysis.index import _core, _prepare, index_options
    from agglo.analysis.sensitivity import SCENARIOS

    panel, m = toy_panel(), toy_membership()
    cfg = index_options(opts)
    names = ["no_f", *SCENARIOS]  # repeated and out of registry order: kept as asked
    t = index_sensitivity(panel, m, cfg, scenarios=names, leave_one_out=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = _prepare(panel, m, cfg, [], None)
    _, _, base, _ = _core(prep, cfg, [], warn=False)
    base = base.set_index(["agglomeration_id", "year"])
    rows_of = t.groupby("scenario").size() // pd.Series(names).value_counts()
    assert t["scenario"].tolist() == [n for n in names for _ in range(rows_of[n])]
    for name in dict.fromkeys(names):
        _, _, alone, _ = _core(prep, replace(cfg, **SCENARIOS[name][0]), [], warn=False)
        got = t[t["scenario"] == name]
        want = alone.set_index(["agglomeration_id", "year"]).loc[
            base.index.intersection(alone.set_index(["agglomeration_id", "year"]).index, sort=False)
        ]
        n = len(want)
        assert len(got) == n * names.count(name)
        for k in range(names.count(name)):
            part = got.iloc[k * n : (k + 1) * n]
            np.testing.assert_array_equal(part["score"], want["score"])
            np.testing.assert_array_equal(part["rank"], want["rank"])
            np.testing.assert_array_equal(
                part[["agglomeration_id", "year"]].to_numpy(), want.index.to_frame().to_numpy()
            )


def test_result_sensitivity_from_its_own_preparation_equals_index_sensitivity():
    panel, m = toy_panel(), toy_membership()
    opts = {"k_pool": "indicator_year"}
    res = integration_index(panel, m, opts, institutions=NO_INST)
    pd.testing.assert_frame_equal(res.sensitivity_table(), index_sensitivity(panel, m, opts))


@pytest.mark.parametrize("opts", [{}, {"k_pool": "all", "ddof": 1, "min_cities": 4}])
def test_leave_one_out_batch_equals_the_full_stack(opts):
    """The batch recomputes only the left-out city's agglomeration: the composite equals
    scoring the full stack of every variant (the former method) exactly."""
    from dataclasses import replace

    from agglo.analysis.index import _RUN, _core, _prepare, index_options
    from agglo.analysis.sensitivity import _leave_one_out_batch

    rng = np.random.default_rng(5)
    members = pd.DataFrame(
        {
            "agglomeration_id": np.repeat(["g1", "g2", "g3", "g4"], [6, 5, 4, 3]),
            "adcode": [f"{i:06d}" for i in range(18)],
        }
    )
    inds = ["gdp_per_capita", "pm25", "hsr", "avg_wage", "patents_per_10k"]
    rows = [
        (a, y, i, float(rng.integers(0, 2)) if i == "hsr" else float(rng.uniform(1, 9)))
        for a in members["adcode"]
        for y in (2010, 2015, 2020)
        for i in inds
    ]
    panel = pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])
    panel.loc[rng.random(len(panel)) < 0.1, "value"] = np.nan
    cfg = index_options(opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = _prepare(panel, members, cfg, [], None)
    cities = prep.values["adcode"].drop_duplicates()
    got = _leave_one_out_batch(prep, cfg, cities)
    codes = prep.values["adcode"].to_numpy()
    parts = [np.flatnonzero(codes != a) for a in cities]
    stacked = prep.values.iloc[np.concatenate(parts)].reset_index(drop=True)
    stacked.insert(0, _RUN, np.repeat(np.arange(len(parts)), [len(p) for p in parts]))
    _, _, want, _ = _core(replace(prep, values=stacked), cfg, [], warn=False)
    pd.testing.assert_frame_equal(got, want)


def _coverage_cell_by_cell(prep, cells):
    """index_report's missing cities as first written: one set of reporters per cell."""
    m = prep.members
    names = m.set_index("adcode")["name_zh"] if "name_zh" in m else None
    have = prep.values.groupby(["agglomeration_id", "year", "indicator"])["adcode"].agg(set)
    members = m.groupby("agglomeration_id")["adcode"].agg(list)
    rows = []
    for r in cells[["agglomeration_id", "year", "indicator", "n_cities"]].itertuples(index=False):
        everyone = members[r.agglomeration_id]
        got = have.get((r.agglomeration_id, r.year, r.indicator), set())
        lack = [a for a in everyone if a not in got]
        if lack:
            text = "; ".join(f"{a} {names[a]}" if names is not None else a for a in lack)
            rows.append((*r[:3], len(everyone), int(r.n_cities), text))
    cols = ["agglomeration_id", "year", "indicator", "n_members", "n_cities", "missing_cities"]
    return pd.DataFrame(rows, columns=cols)


@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("share", [0.0, 0.15])
def test_coverage_equals_checking_cell_by_cell(named, share):
    from agglo.analysis.index import _cells, _coverage, _prepare, index_options

    rng = np.random.default_rng(11)
    members = pd.DataFrame(
        {
            "agglomeration_id": np.repeat(["g2", "g1", "g3"], [6, 5, 4]),
            "adcode": [f"{i:06d}" for i in rng.permutation(15)],
        }
    )
    if named:
        members["name_zh"] = [f"城{i}" for i in range(15)]
    rows = [
        (a, y, i, float(rng.uniform(1, 9)))
        for a in members["adcode"]
        for y in (2010, 2020)
        for i in ["gdp_per_capita", "pm25", "avg_wage"]
    ]
    panel = pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])
    panel.loc[rng.random(len(panel)) < share, "value"] = np.nan
    cfg = index_options({"min_cities": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = _prepare(panel, members, cfg, [], None)
        cells = _cells(prep, cfg, [], warn=False)
    want = _coverage_cell_by_cell(prep, cells)
    assert (len(want) > 0) == (share > 0)
    pd.testing.assert_frame_equal(_coverage(prep, cells), want)


def test_short_dimensions_message_equals_the_groupby_loop():
    from agglo.analysis.index import (
        DIMENSIONS,
        INDICATORS,
        _cells,
        _prepare,
        _short_dimensions,
        index_options,
    )

    rng = np.random.default_rng(4)
    members = pd.DataFrame(
        {
            "agglomeration_id": np.repeat(["b", "a", "c"], 5),
            "adcode": [f"{i:06d}" for i in range(15)],
        }
    )
    inds = ["gdp_per_capita", "avg_wage", "pm25", "solid_waste_utilization", "patents_per_10k",
            "st_spending_share", "hospital_beds_per_10k", "education_spending_per_capita"]  # fmt: skip
    rows = [(a, y, i, float(rng.uniform(1, 9)))
            for a in members["adcode"] for y in (2010, 2015, 2020) for i in inds]  # fmt: skip
    panel = pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])
    panel.loc[rng.random(len(panel)) < 0.45, "value"] = np.nan
    cfg = index_options({"min_cities": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = _prepare(panel, members, cfg, [], None)
        cells = _cells(prep, cfg, [], warn=False)
    got: list[str] = []
    _short_dimensions(cells, got, warn=False)
    in_use = [i for i in INDICATORS if i in set(cells["indicator"])]
    expected = {d: [i for i in in_use if INDICATORS[i].dimension == d] for d in DIMENSIONS}
    short = []
    for (g, y, d), part in cells.groupby(["agglomeration_id", "year", "dimension"], sort=True):
        lack = [i for i in expected.get(d, []) if i not in set(part["indicator"])]
        if lack:
            short.append(f"{g} {y} {d} lacks {', '.join(lack)}")
    assert len(short) > 10 and len(got) == 1
    assert got[0].endswith("; ".join(short[:10]) + f"; and {len(short) - 10} more (index_report)")
    assert got[0].startswith(f"{len(short)} dimension score(s)")
