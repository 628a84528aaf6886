"""agglo.analysis.markov against giddy (the reference): LISA and spatial Markov chains.

The numpy port must give giddy's numbers on the same input, bit for bit where the arithmetic
is the same (counts, quadrants, probabilities) and to 1e-12 for the tests' statistics.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

giddy_markov = pytest.importorskip("giddy.markov")
mapclassify = pytest.importorskip("mapclassify")
from libpysal.weights import lat2W  # noqa: E402

from agglo.analysis import markov  # noqa: E402


def _w(side: int):
    w = lat2W(side, side, rook=False)
    w.transform = "r"
    return w


def _panels():
    rng = np.random.default_rng(11)
    n = 36
    grad = np.add.outer(np.arange(6.0), np.arange(6.0)).ravel()
    yield "smooth", grad[:, None] + rng.normal(0, 1.5, (n, 5)), 4
    yield "noise", rng.normal(0, 1, (n, 4)), 3
    yield "ties", rng.integers(0, 3, (n, 6)).astype(float) + 1.0, 4  # merged quantiles
    yield "trend", grad[:, None] * np.linspace(1, 2, 3) + rng.normal(0, 0.1, (n, 3)), 5
    yield "negative", rng.normal(-1, 1, (n, 4)), 4


@pytest.mark.parametrize(("name", "y", "k"), list(_panels()), ids=[p[0] for p in _panels()])
def test_lisa_markov_equals_giddy(name, y, k):
    w_ref, w_new = _w(6), _w(6)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = giddy_markov.LISA_Markov(y, w_ref, permutations=0)
    new = markov.lisa_markov(y, w_new)
    np.testing.assert_array_equal(new.q, ref.q)
    np.testing.assert_array_equal(new.transitions, ref.transitions)
    np.testing.assert_array_equal(new.expected, ref.expected_t)
    assert new.chi_2[2] == ref.chi_2[2]
    np.testing.assert_allclose(new.chi_2[:2], np.asarray(ref.chi_2[:2], float), rtol=1e-12)


@pytest.mark.parametrize(("name", "y", "k"), list(_panels()), ids=[p[0] for p in _panels()])
def test_spatial_markov_equals_giddy(name, y, k):
    w_ref, w_new = _w(6), _w(6)
    with warnings.catch_warnings(record=True) as caught_ref:
        warnings.simplefilter("always")
        ref = giddy_markov.Spatial_Markov(y, w_ref, k=k, m=k, fixed=True, fill_empty_classes=True)
        ref_tests = (ref.Q, ref.Q_p_value, ref.LR, ref.LR_p_value, ref.dof_hom)
    with warnings.catch_warnings(record=True) as caught_new:
        warnings.simplefilter("always")
        new = markov.spatial_markov(y, w_new, k=k, m=k)
    assert (new.k, new.m) == (ref.k, ref.m)
    np.testing.assert_array_equal(new.T, ref.T)
    np.testing.assert_array_equal(new.P, ref.P)
    np.testing.assert_array_equal(new.transitions, ref.transitions)
    assert new.dof_hom == ref_tests[4]
    got = [new.Q, new.Q_p_value, new.LR, new.LR_p_value]
    np.testing.assert_allclose(got, np.asarray(ref_tests[:4], float), rtol=1e-12, atol=1e-15)
    # mapclassify's warning about merged quantiles is given by the port too
    msg = "Not enough unique values"
    assert any(msg in str(c.message) for c in caught_new) == any(
        msg in str(c.message) for c in caught_ref
    )
    if name == "ties":
        assert new.k < k


def test_quantile_classes_equal_mapclassify():
    rng = np.random.default_rng(3)
    for y, k in [
        (rng.normal(size=101), 4),
        (rng.integers(0, 4, 50).astype(float), 5),
        (np.arange(10.0), 3),
        (rng.normal(size=(7, 3)), 4),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = mapclassify.Quantiles(y.flatten(), k=k)
            yb, bins = markov.quantile_classes(y, k)
        np.testing.assert_array_equal(bins, ref.bins)
        np.testing.assert_array_equal(yb.ravel(), ref.yb)
        assert yb.shape == y.shape


def test_chi2_and_homogeneity_equal_giddy():
    rng = np.random.default_rng(5)
    t = rng.integers(0, 20, (3, 4, 4)).astype(float)
    t[1, 2] = 0  # an empty row in one regime
    ht = giddy_markov.homogeneity(t)
    got = markov.homogeneity(t)
    np.testing.assert_allclose(got[:4], [ht.Q, ht.Q_p_value, ht.LR, ht.LR_p_value], rtol=1e-12)
    assert got[4] == ht.dof
    ref = giddy_markov.chi2(t[0], t.sum(axis=0))
    new = markov.chi2_test(t[0], t.sum(axis=0))
    np.testing.assert_allclose(new[:2], np.asarray(ref[:2], float), rtol=1e-12)
    assert new[2] == ref[2]


def test_markov_counts_by_hand():
    ids = np.array([[1, 1, 2], [2, 1, 1], [1, 2, 2]])
    # moves: 1->1, 1->2 | 2->1, 1->1 | 1->2, 2->2
    np.testing.assert_array_equal(markov.markov_counts(ids), [[2.0, 2.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="not among classes"):
        markov.markov_counts(ids, np.array([1, 3]))


def test_lisa_markov_single_class_is_nan_with_warning():
    # each unit constant over the years: every value equals its unit's mean (never below it),
    # so giddy's two-class chains have one class (giddy itself fails with a shape error)
    y = np.repeat(np.arange(1.0, 10.0)[:, None], 3, axis=1)
    with pytest.warns(RuntimeWarning, match="single class"):
        out = markov.lisa_markov(y, _w(3))
    assert np.isnan(out.chi_2[0])
    assert out.transitions.sum() == 9 * 2
