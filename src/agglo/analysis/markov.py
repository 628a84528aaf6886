"""LISA Markov and spatial Markov chains in numpy: giddy's estimators without importing giddy.

:func:`agglo.analysis.autocorr.lisa_transitions` needs three things from giddy
(``giddy.markov.LISA_Markov`` and ``Spatial_Markov``): quadrant transition counts, the
chi-square test of independence of a unit's and its neighbours' moves, and the spatial Markov
chain with its homogeneity tests (Bickenbach & Bode Q and LR). Importing giddy imports
mapclassify (whose numba kernel compiles at import, or loads from the compile cache) and
quantecon (numba ufuncs): about 0.5 CPU-s per process, more than the computations themselves
(a few milliseconds). This module is the same arithmetic, written out: the same expressions
in the same order as giddy 2.3.8 (and mapclassify's ``Quantiles``, with scipy's
``scoreatpercentile``), so the numbers are giddy's to the last bit on the same input;
``tests/test_autocorr_markov.py`` checks that against giddy on random, tied and degenerate
panels, and ``benchmarks/bench_autocorr.py`` times both.

Kept as giddy has it (so that results do not change), though it looks odd:

- LISA_Markov's independence null classifies each value by whether it is below its *unit's*
  mean over the years (``y / y.mean(axis=0)`` on the years-by-units array) and estimates the
  two-class chains of own and lag moves from that years-by-units array read as units-by-years
  (:func:`lisa_markov`).

One departure: when those two-class chains have a single class (every value on one side of
its mean), giddy fails with a shape error; here the chi-square test is NaN with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LisaMarkov",
    "SpatialMarkov",
    "chi2_test",
    "homogeneity",
    "lisa_markov",
    "markov_counts",
    "quantile_classes",
    "spatial_markov",
]

#: giddy's permutation of the Kronecker product of the own and lag chains to quadrant order
_KRON_TO_QUADRANTS = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]])


def _lag(w: Any, y: np.ndarray) -> np.ndarray:
    from libpysal.weights import lag_spatial

    return lag_spatial(w, y)


def markov_counts(class_ids: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Transition counts between consecutive columns of ``class_ids`` (giddy's ``Markov``).

    Parameters
    ----------
    class_ids
        ``(n, t)`` class of each unit (row) in each period (column).
    classes
        The classes, in the order of the matrix (default: the sorted distinct values).

    Returns
    -------
    numpy.ndarray
        ``(k, k)`` float counts: row = class in period ``s``, column = class in ``s + 1``.

    Examples
    --------
    >>> markov_counts(np.array([[0, 1, 1], [1, 1, 0]]))
    array([[0., 1.],
           [1., 2.]])
    """
    class_ids = np.asarray(class_ids)
    classes = np.unique(class_ids) if classes is None else np.asarray(classes)
    k = len(classes)
    pos = np.searchsorted(classes, class_ids)
    if not (pos < k).all() or not (classes[np.minimum(pos, k - 1)] == class_ids).all():
        raise ValueError("class_ids holds values that are not among classes")
    counts = np.zeros((k, k))
    np.add.at(counts, (pos[:, :-1].ravel(), pos[:, 1:].ravel()), 1.0)
    return counts


def _row_probabilities(counts: np.ndarray) -> np.ndarray:
    """giddy's ``diag(1 / (row_sum + (row_sum == 0))) @ counts`` (an empty row stays 0)."""
    row_sum = counts.sum(axis=1)
    return np.dot(np.diag(1 / (row_sum + (row_sum == 0))), counts)


def chi2_test(t1: np.ndarray, t2: np.ndarray) -> tuple[float, float, int]:
    """Chi-square test of transition counts ``t1`` against the probabilities of ``t2``.

    ``giddy.markov.chi2``: expected counts are ``t1``'s row totals spread by ``t2``'s row
    probabilities; degrees of freedom ``(rows of t1 with transitions - 1) x (rows of t2 with
    transitions - 1)``.

    Returns
    -------
    tuple
        ``(chi2, p_value, dof)``; ``p_value = 1 - chi2.cdf(chi2, dof)`` as giddy computes it.

    Examples
    --------
    >>> t = np.array([[8.0, 2.0], [3.0, 7.0]])
    >>> round(chi2_test(t, t)[0], 12), chi2_test(t, t)[2]
    (0.0, 1)
    """
    from scipy import stats

    rs2 = t2.sum(axis=1)
    rs1 = t1.sum(axis=1)
    dof = (int((rs1 > 0).sum()) - 1) * (int((rs2 > 0).sum()) - 1)
    rs2 = rs2 + (rs2 == 0)
    p = np.diag(1 / rs2).dot(np.array(t2))
    expected = np.diag(rs1).dot(np.array(p))
    num = t1 - expected
    num = np.multiply(num, num)
    expected = expected + (expected == 0)
    chi2 = (num / expected).sum()
    return float(chi2), float(1 - stats.chi2.cdf(chi2, dof)), dof


@dataclass
class LisaMarkov:
    """Result of :func:`lisa_markov`.

    Attributes
    ----------
    q
        ``(n, t)`` quadrant (1 HH, 2 LH, 3 LL, 4 HL; ``esda.Moran_Local.q``) per unit and year.
    transitions
        ``(4, 4)`` counts of quadrant moves between consecutive years.
    chi_2
        ``(chi2, p_value, dof)`` of the independence of own and neighbours' moves (NaN when
        the two-class chains are degenerate).
    expected
        ``(4, 4)`` expected counts under that null.
    """

    q: np.ndarray
    transitions: np.ndarray
    chi_2: tuple[float, float, float]
    expected: np.ndarray | None


def _quadrants(y: np.ndarray, w: Any) -> np.ndarray:
    """``esda.Moran_Local(y, w).q`` (``geoda_quads=False``) of one period."""
    y = np.asarray(y).flatten()
    z = y - y.mean()
    with np.errstate(all="ignore"):
        z /= y.std()
    zl = _lag(w, z)
    zp = z > 0
    lp = zl > 0
    return (
        (1 * (zp * lp))
        + (2 * ((1 - zp) * lp))
        + (3 * ((1 - zp) * (1 - lp)))
        + (4 * (zp * (1 - lp)))
    )


def lisa_markov(y: np.ndarray, w: Any) -> LisaMarkov:
    """LISA-quadrant Markov chain of a panel: ``giddy.markov.LISA_Markov(y, w)``.

    Parameters
    ----------
    y
        ``(n, t)`` values of ``n`` units (rows, in the order of ``w``) in ``t`` periods.
    w
        ``libpysal.weights.W`` over the units; row-standardised here as giddy does (its
        ``transform`` is set to ``"r"``).

    Returns
    -------
    LisaMarkov

    Notes
    -----
    The chi-square null is giddy's: each value is classed by ``value / mean < 1`` where the
    mean is the unit's over the periods (``ybar = y.T.mean(axis=0)``), and the own and lag
    chains are giddy's ``Markov`` of those ``(t, n)`` arrays, i.e. with periods as rows and
    units as columns (see the module notes).

    Examples
    --------
    >>> from libpysal.weights import lat2W
    >>> y = np.array([[1.0, 2], [2, 1], [3, 4], [4, 3]])
    >>> lisa_markov(y, lat2W(2, 2, rook=True)).transitions.sum()
    np.float64(4.0)
    """
    y = np.asarray(y, dtype=float)
    w.transform = "r"
    yt = y.transpose()
    q = np.array([_quadrants(yi, w) for yi in yt]).transpose()
    transitions = markov_counts(q, np.arange(1, 5))
    with np.errstate(divide="ignore", invalid="ignore"):
        ybar = yt.mean(axis=0)
        r = yt / ybar
        ylag = np.array([_lag(w, v) for v in yt])
        rlag = ylag / ybar
    p_own = _row_probabilities(markov_counts(r < 1.0))
    p_lag = _row_probabilities(markov_counts(rlag < 1.0))
    if p_own.shape != (2, 2) or p_lag.shape != (2, 2):
        warnings.warn(
            "LISA transitions: the chi-square test of independence of own and neighbours' "
            "moves is NaN: every value lies on one side of its unit's mean over the years "
            "(giddy's null has a single class)",
            RuntimeWarning,
            stacklevel=2,
        )
        return LisaMarkov(q, transitions, (np.nan, np.nan, np.nan), None)
    a = _KRON_TO_QUADRANTS
    kp = a.dot(np.kron(p_own, p_lag)).dot(a.T)
    expected = np.diag(transitions.sum(axis=1)).dot(kp)
    return LisaMarkov(q, transitions, chi2_test(transitions, expected), expected)


def quantile_classes(y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile classes of ``y``: ``mapclassify.Quantiles(y, k)``'s ``yb`` and ``bins``.

    Upper bounds are scipy's ``scoreatpercentile`` at ``100/k, 200/k, ..., 100``, repeated
    bounds merged (with a ``UserWarning``, as mapclassify warns: fewer than ``k`` classes);
    a value is in the first class whose upper bound it does not exceed.

    Returns
    -------
    yb, bins
        Class of each value (shape of ``y``) and the upper bounds.

    Examples
    --------
    >>> quantile_classes(np.arange(8.0), 4)
    (array([0, 0, 1, 1, 2, 2, 3, 3]), array([1.75, 3.5 , 5.25, 7.  ]))
    """
    from scipy import stats

    y = np.asarray(y)
    flat = y.flatten()
    step = 100.0 / k
    pct = np.arange(step, 100 + step, step)
    if pct[-1] > 100.0:
        pct[-1] = 100.0
    bins = np.unique(np.array([stats.scoreatpercentile(flat, p) for p in pct]))
    if len(bins) < k:
        warnings.warn(
            f"Not enough unique values in array to form {k} classes. Setting k to {len(bins)}.",
            UserWarning,
            stacklevel=2,
        )
    # mapclassify's bin1d: class c holds bins[c - 1] < x <= bins[c] (x above every bound: 0)
    left = [-float("inf"), *bins[:-1]]
    yb = np.zeros(flat.shape, dtype="int")
    for c in range(len(bins) - 1, -1, -1):
        yb += (flat > left[c]) * (flat <= bins[c]) * c
    return yb.reshape(y.shape), bins


@dataclass
class SpatialMarkov:
    """Result of :func:`spatial_markov`.

    Attributes
    ----------
    k, m
        Classes of the values and of their spatial lags (fewer than asked when ties merge
        quantiles).
    T, P
        ``(m, k, k)`` counts and row probabilities of the chains conditioned on the lag class
        at the start of each move (an empty row has probability 1 of staying, giddy's
        ``fill_empty_classes=True``).
    transitions
        Counts of the unconditioned chain.
    Q, Q_p_value, LR, LR_p_value, dof_hom
        Homogeneity tests across lag classes (:func:`homogeneity`).
    """

    k: int
    m: int
    T: np.ndarray
    P: np.ndarray
    transitions: np.ndarray
    Q: float
    Q_p_value: float
    LR: float
    LR_p_value: float
    dof_hom: int


def homogeneity(matrices: np.ndarray) -> tuple[float, float, float, float, int]:
    """Bickenbach & Bode tests that ``matrices`` (``(m, k, k)`` counts) share one chain.

    ``giddy.markov.homogeneity``: Pearson ``Q`` and likelihood-ratio ``LR`` statistics of the
    regime chains against the pooled one, degrees of freedom ``sum_i (b_i - 1)(A_i - 1)``
    (``b_i`` regimes with moves from class ``i``, ``A_i`` non-zero pooled moves from it).

    Returns
    -------
    tuple
        ``(Q, Q_p_value, LR, LR_p_value, dof)``.

    Examples
    --------
    >>> t = np.array([[[5.0, 1], [1, 5]], [[5, 1], [1, 5]]])
    >>> homogeneity(t)[0], homogeneity(t)[4]
    (0.0, 2)
    """
    from scipy import stats

    mats = np.array(matrices)
    pooled = mats.sum(axis=0)
    n_i = pooled.sum(axis=1)
    a_i = (pooled > 0).sum(axis=1)
    p_ij = np.dot(np.diag(1.0 / (n_i + (n_i == 0) * 1.0)), pooled)
    den = p_ij + 1.0 * (p_ij == 0)
    b_i = np.zeros_like(a_i)
    q_stat = 0.0
    lr = 0.0
    for nijm in mats:
        nim = nijm.sum(axis=1)
        b_i = b_i + 1.0 * (nim > 0)
        p_ijm = np.dot(np.diag(1.0 / (nim + (nim == 0) * 1.0)), nijm)
        ratio = (p_ijm - p_ij) ** 2 / den
        q_stat = q_stat + np.dot(np.diag(nim), ratio).sum()
        mask = (nijm > 0) * (p_ij > 0)
        unmask = 1.0 * (mask == 0)
        lr = lr + (nijm * np.log((mask * p_ijm + unmask) / (mask * p_ij + unmask))).sum()
    dof = int(((b_i - 1) * (a_i - 1)).sum())
    lr = lr * 2.0
    return (
        float(q_stat),
        float(1 - stats.chi2.cdf(q_stat, dof)),
        float(lr),
        float(1 - stats.chi2.cdf(lr, dof)),
        dof,
    )


def spatial_markov(y: np.ndarray, w: Any, k: int = 4, m: int = 4) -> SpatialMarkov:
    """Spatial Markov chain of a panel: ``giddy.markov.Spatial_Markov(y, w, k, m,
    fixed=True, fill_empty_classes=True)``.

    Parameters
    ----------
    y
        ``(n, t)`` values (rows in the order of ``w``).
    w
        ``libpysal.weights.W`` (used as it is transformed; giddy's caller row-standardises).
    k, m
        Quantile classes of the values and of their spatial lags, over all periods pooled.

    Returns
    -------
    SpatialMarkov

    Examples
    --------
    >>> from libpysal.weights import lat2W
    >>> w = lat2W(3, 3, rook=True); w.transform = "r"
    >>> y = np.add.outer(np.arange(9.0), np.array([0.0, 0.5, 1.0]))
    >>> int(spatial_markov(y, w, k=3, m=3).T.sum())  # 9 units x 2 moves
    18
    """
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y must be (units, periods); got shape {y.shape}")
    class_ids, bins = quantile_classes(y, k)
    k = len(bins)
    transitions = markov_counts(class_ids)
    ly = _lag(w, y)
    lclass_ids, lag_bins = quantile_classes(ly, m)
    m = len(lag_bins)
    counts = np.zeros((m, k, k))
    np.add.at(
        counts,
        (lclass_ids[:, :-1].ravel(), class_ids[:, :-1].ravel(), class_ids[:, 1:].ravel()),
        1,
    )
    probs = np.zeros_like(counts)
    for i, mat in enumerate(counts):
        row_sum = mat.sum(axis=1)
        row_sum = row_sum + (row_sum == 0)
        probs[i] = np.array(np.diag(1.0 / row_sum)).dot(np.array(mat))
    empty = np.argwhere(probs.sum(axis=2) == 0)
    probs[empty[:, 0], empty[:, 1], empty[:, 1]] = 1
    q_stat, q_p, lr, lr_p, dof = homogeneity(counts)
    return SpatialMarkov(k, m, counts, probs, transitions, q_stat, q_p, lr, lr_p, dof)
