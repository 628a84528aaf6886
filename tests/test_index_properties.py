"""Properties of the integration index (hypothesis)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agglo.analysis.index import IndexWarning, integration_index

IND = ["gdp_per_capita", "income_ratio", "road_density"]
NO_INST = pd.DataFrame()


@st.composite
def panels(draw):
    """3 agglomerations of 3-5 cities, 2 years, 3 indicators, positive values."""
    sizes = draw(st.lists(st.integers(3, 5), min_size=3, max_size=3))
    members = [
        (g, f"{i + 1}{j:05d}")
        for i, (g, n) in enumerate(zip("ABC", sizes, strict=True))
        for j in range(n)
    ]
    values = st.floats(0.1, 1000.0, allow_nan=False, allow_infinity=False)
    rows = [
        (code, year, ind, draw(values))
        for _, code in members
        for year in (2010, 2020)
        for ind in IND
    ]
    panel = pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])
    membership = pd.DataFrame(members, columns=["agglomeration_id", "adcode"])
    return panel, membership


def run(panel, membership, **cfg):
    # generated panels may hold constant indicators (a documented IndexWarning); the
    # properties are about the numbers, so the warning is silenced here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexWarning)
        return integration_index(panel, membership, config=cfg or None, institutions=NO_INST)


def keyed(df, keys, cols):
    return df.sort_values(keys).reset_index(drop=True)[keys + cols]


SETTINGS = settings(max_examples=20, deadline=None)


@SETTINGS
@given(panels(), st.sampled_from(IND), st.floats(0.01, 1e4))
def test_scaling_an_indicator_leaves_cv_and_scores_unchanged(data, ind, c):
    panel, m = data
    base = run(panel, m)
    scaled = panel.assign(
        value=np.where(panel["indicator"] == ind, panel["value"] * c, panel["value"])
    )
    res = run(scaled, m)
    keys = ["agglomeration_id", "year", "indicator"]
    a, b = (
        keyed(base.indicators, keys, ["cv", "k", "f", "K"]),
        keyed(res.indicators, keys, ["cv", "k", "f", "K"]),
    )
    np.testing.assert_allclose(
        a[["cv", "k", "f", "K"]], b[["cv", "k", "f", "K"]], rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        keyed(base.composite, ["agglomeration_id", "year"], ["score"])["score"],
        keyed(res.composite, ["agglomeration_id", "year"], ["score"])["score"],
        rtol=1e-9,
    )


@SETTINGS
@given(panels(), st.randoms(use_true_random=False))
def test_permuting_rows_changes_nothing(data, rnd):
    panel, m = data
    base = run(panel, m)
    idx = list(panel.index)
    rnd.shuffle(idx)
    midx = list(m.index)
    rnd.shuffle(midx)
    res = run(panel.loc[idx], m.loc[midx])
    keys = ["agglomeration_id", "year"]
    pd.testing.assert_frame_equal(
        keyed(base.composite, keys, ["score", "rank"]),
        keyed(res.composite, keys, ["score", "rank"]),
    )
    k3 = ["adcode", "year"]
    pd.testing.assert_frame_equal(
        keyed(base.city_scores, k3, ["dispersion_gap", "lag_score"]),
        keyed(res.city_scores, k3, ["dispersion_gap", "lag_score"]),
    )


@SETTINGS
@given(panels())
def test_identical_cities_give_cv_0_and_k_100(data):
    panel, m = data
    # every city of an agglomeration-year takes its first city's value
    first = (
        panel.merge(m, on="adcode")
        .groupby(["agglomeration_id", "year", "indicator"])["value"]
        .transform("first")
    )
    res = run(panel.assign(value=first.to_numpy()), m)
    assert (res.indicators["cv"] == 0).all()
    assert (res.indicators["k"] == 100).all()
    assert (res.city_scores["dispersion_gap"] == 0).all()


@SETTINGS
@given(panels(), st.sampled_from(list("ABC")), st.sampled_from([0, 1]))
def test_adding_a_mean_city_never_raises_cv(data, g, ddof):
    panel, m = data
    base = run(panel, m, ddof=ddof)
    means = (
        panel.merge(m, on="adcode")
        .query("agglomeration_id == @g")
        .groupby(["year", "indicator"])["value"]
        .mean()
    )
    new = means.rename("value").reset_index().assign(adcode="900000")
    res = run(
        pd.concat([panel, new]),
        pd.concat([m, pd.DataFrame({"agglomeration_id": [g], "adcode": ["900000"]})]),
        ddof=ddof,
    )
    a = base.indicators.query("agglomeration_id == @g").set_index(["year", "indicator"])["cv"]
    b = res.indicators.query("agglomeration_id == @g").set_index(["year", "indicator"])["cv"]
    assert (b.reindex(a.index) <= a + 1e-12).all()


@SETTINGS
@given(panels())
def test_R_sums_to_one_and_gap_identity(data):
    panel, m = data
    res = run(panel, m)
    r = res.indicators.drop_duplicates("agglomeration_id").set_index("agglomeration_id")["R"]
    assert float(r.sum()) == pytest.approx(1.0)
    # mean over an agglomeration's cities of gap² equals cv² (ddof 0)
    g2 = (
        res.city_gaps.assign(g2=res.city_gaps["gap"] ** 2)
        .groupby(["agglomeration_id", "year", "indicator"])["g2"]
        .mean()
    )
    cv2 = res.indicators.set_index(["agglomeration_id", "year", "indicator"])["cv"] ** 2
    np.testing.assert_allclose(g2.reindex(cv2.index), cv2, rtol=1e-9, atol=1e-12)
    # k in [0, 100], f in [floor, 1], K <= 100 R
    ind = res.indicators
    assert ind["k"].between(0, 100).all() and ind["f"].between(0.01 - 1e-12, 1 + 1e-12).all()
    assert (ind["K"] <= 100 * ind["R"] + 1e-9).all()
