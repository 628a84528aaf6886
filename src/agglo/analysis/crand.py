"""Permutation inference of esda's statistics in vectorised numpy: nothing is compiled.

esda runs the conditional randomisation of Local Moran and G* in numba kernels
(``esda.crand``) that compile again in every process: about 20 CPU-seconds on the first run
after an install, about 2 on later runs even with numba's on-disk cache, and without numba (the
core install) they run as plain Python. :func:`conditional_p` computes the same statistics with
numpy, a block of units at a time (the neighbour sets are small: gather ``z`` at the permuted
ids, one batched product per block), and :func:`permutation_statistics` does the same for
global Moran's I and Geary's C (one sparse product for all simulations).
:func:`global_statistics` computes the observed Moran's I and Geary's C with their
randomisation z and p by esda's own expressions, with the weight sums taken once instead of a
``graph.summary()`` per statistic (esda's Moran and Geary each build the whole summary).

**Same draws as esda.** :func:`permuted_ids` equals ``esda.crand.vec_permutations`` for a
seed: numba's ``np.random.seed`` / ``np.random.choice(n - 1, size, replace=False)`` are
numpy's legacy Mersenne Twister seeding and the first ``size`` entries of
``np.random.permutation(n - 1)`` (numba implements them so that they match numpy), so a
``numpy.random.RandomState(seed)`` draws the same ids without numba. The simulated statistic
of unit ``i`` is esda's: the other units' values at the permuted ids (``z`` without unit
``i``), weighted by ``i``'s weights in the weights' order, plus the self-weight term
(``esda.moran._moran_local_crand``, ``esda.getisord._g_local_star_crand``); an island gets
esda's one fake neighbour of weight ``island_weight``. The global tests draw one
``np.random.permutation`` per simulation from numpy's global generator, all of Moran's then all
of Geary's, as ``esda.Moran`` / ``esda.Geary`` do. ``tests/test_autocorr_crand.py`` checks the
ids against esda's kernel and the p-values against ``esda.Moran_Local`` / ``esda.G_Local`` /
``esda.Moran`` / ``esda.Geary`` on the same seed, and against a plain numpy count.

**The p-value** is esda's ``"directed"`` one (esda 2.8's default), named here so that an esda
upgrade that changes its default does not change agglo's results: with ``P`` simulations,
``p = (min(upper, lower) + 1) / (P + 1)``, ``upper`` the number of simulated statistics at
least as large as the observed one and ``lower`` the number at least as small (the observed
statistic's own tail). p-values are float64 (esda's loop stores G*'s in float32, e.g.
0.00999999977 for 10/1000); simulations are not kept.

Two deliberate departures from esda (DESIGN.md says "esda ... with permutation inference";
these make that inference reproducible):

- **ties** — a simulated statistic within ``TIE_RTOL`` (relative to the largest absolute
  statistic of that test) of the observed one counts in *both* tails. esda counts
  ``sim >= observed`` in floating point, and its lower tail is the complement (``sim <
  observed``), so a simulation that equals the observed statistic mathematically — the same
  neighbour values drawn again, or an arrangement of a 5-city scope mapped onto itself —
  counts or not depending on the last bit of a sum: p-values of small scopes flipped with
  1e-15 changes of the inputs. Without ties (continuous data, no simulation within the
  tolerance) the p-value is esda's exactly; with them it is larger (more conservative), e.g.
  an island, whose simulations all equal its observed 0, gets p = 1 instead of esda's
  ``1 / (P + 1)``;
- **exact enumeration** — when the distinct arrangements are no more than the requested
  permutations (``n! <= P`` for a global test, i.e. n <= 6 for 999; for a local test the
  ``(n-1)! / (n-1-k)!`` ordered draws of a unit's ``k`` neighbours), every arrangement is
  evaluated once instead of drawing ``P`` random ones, and ``p = min(upper, lower) / N`` over
  the ``N`` arrangements (the observed one among them): the exact permutation p-value, with no
  Monte Carlo error and no dependence on the seed. With 999 permutations this applies to the
  global tests of scopes of up to 6 units and to the local tests of units with a single
  neighbour among up to 1,000 units. Islands keep esda's random draws of their fake neighbour
  (the observed statistic is not one of its arrangements).
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "TIE_RTOL",
    "GearyStatistics",
    "MoranStatistics",
    "conditional_p",
    "global_statistics",
    "permutation_statistics",
    "permuted_ids",
]

#: relative tolerance under which a simulated statistic ties with the observed one
TIE_RTOL = 1e-9
#: elements of the gathered ``units x permutations x neighbours`` block (~32 MB of float64)
_BLOCK = 1 << 22


def permuted_ids(max_card: int, n: int, permutations: int, seed: int) -> np.ndarray:
    """``esda.crand.vec_permutations(max_card, n, permutations, seed)`` without numba.

    Parameters
    ----------
    max_card
        Ids per draw (the largest number of neighbours).
    n
        Number of units; ids are drawn from ``0 .. n - 2`` (the units other than the focal one).
    permutations
        Number of draws.
    seed
        Seed (numba takes it modulo 2**32).

    Returns
    -------
    numpy.ndarray
        ``(permutations, max_card)`` int64 ids, each row without repeats.

    Examples
    --------
    >>> permuted_ids(3, 10, 2, 1).shape
    (2, 3)
    """
    rs = np.random.RandomState(int(seed) % 2**32)  # numba's legacy MT19937 stream
    out = np.empty((permutations, max_card), dtype=np.int64)
    for k in range(permutations):
        out[k] = rs.permutation(n - 1)[:max_card]
    return out


def _p_values(sims: np.ndarray, observed: np.ndarray, exact: bool) -> np.ndarray:
    """Directed p-values of each row of ``sims`` (simulations) against ``observed``, with ties.

    ``exact``: the rows are every arrangement (the observed one among them), not a sample.
    """
    scale = np.maximum(np.abs(observed), np.abs(sims).max(axis=1, initial=0.0))
    tol = (TIE_RTOL * scale)[:, None]
    obs = observed[:, None]
    upper = (sims >= obs - tol).sum(axis=1)
    lower = (sims <= obs + tol).sum(axis=1)
    k = np.minimum(upper, lower).astype(float)
    count = sims.shape[1]
    return k / count if exact else (k + 1.0) / (count + 1.0)


def _arrangements(n_others: int, k: int, permutations: int) -> np.ndarray | None:
    """Every ordered draw of ``k`` of ``n_others`` ids when there are at most ``permutations``."""
    if math.perm(n_others, k) > permutations:
        return None
    return np.array(list(itertools.permutations(range(n_others), k)), dtype=np.int64).reshape(-1, k)


def conditional_p(
    statistic: str,
    z: np.ndarray,
    w: Any,
    observed: np.ndarray,
    permutations: int,
    seed: int | None,
    *,
    scaling: float | None = None,
    island_weight: float = 0.0,
) -> np.ndarray:
    """Conditional-permutation pseudo p-values of Local Moran or G* (esda's ``crand``).

    Parameters
    ----------
    statistic
        ``"moran"`` (``esda.Moran_Local``) or ``"gstar"`` (``esda.G_Local(star=True)``).
    z
        The values esda randomises: ``Moran_Local.z`` (standardised) or ``G_Local.y``.
    w
        The weights esda used (``Moran_Local.w`` / ``G_Local.w``, with G*'s self-weights).
    observed
        The observed statistics (``Moran_Local.Is`` / ``G_Local.Gs``).
    permutations, seed
        As given to esda (``seed=None``: drawn from numpy's global generator, as esda does).
    scaling
        Statistic scaling: ``(n - 1) / sum(z**2)`` for Moran (default), ``sum(y)`` for G*.
    island_weight
        esda's weight of an island's fake neighbour.

    Returns
    -------
    numpy.ndarray
        Directed pseudo p-value per unit (see the module notes on ties and exact enumeration).

    Examples
    --------
    >>> import esda, geopandas, libpysal, shapely
    >>> boxes = [shapely.box(i % 5, i // 5, i % 5 + 1, i // 5 + 1) for i in range(25)]
    >>> w = libpysal.graph.Graph.build_contiguity(geopandas.GeoSeries(boxes), rook=True)
    >>> w = w.transform("r")
    >>> y = np.arange(25.0) % 7
    >>> lm = esda.Moran_Local(y, w, permutations=0)
    >>> p = conditional_p("moran", lm.z, lm.w, lm.Is, 99, 1)
    >>> p.shape, bool(((p * 100).round() >= 1).all())
    ((25,), True)
    """
    if statistic not in ("moran", "gstar"):
        raise ValueError(f"statistic must be 'moran' or 'gstar'; got {statistic!r}")
    z = np.asarray(z, dtype=float)
    observed = np.asarray(observed, dtype=float)
    n = len(z)
    if scaling is None:
        scaling = (n - 1) / (z * z).sum()
    adj = w.sparse.tocsr(copy=True).astype(float)  # esda zeroes the diagonal in place
    self_weights = adj.diagonal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SparseEfficiencyWarning of setdiag
        adj.setdiag(0)
    adj.eliminate_zeros()  # each unit's weights in storage order, as esda takes them
    card = np.diff(adj.indptr)
    if seed is None:
        seed = np.random.randint(12345, 12345000)  # noqa: NPY002 (esda's own draw)
    # an island draws one fake neighbour of weight island_weight and no self-weight (esda)
    slots = np.maximum(card, 1)
    ids = _drawn_ids(int(slots.max()), n, permutations, int(seed))
    p = np.empty(n)
    for key in np.unique(card):  # units with the same number of neighbours (0: islands)
        units = np.flatnonzero(card == key)
        c = int(slots[units[0]])
        if key == 0:  # esda's null of an island: its fake neighbour, drawn at random
            weights = np.full((len(units), 1), float(island_weight))
            selfw = np.zeros(len(units))
            drawn = None
        else:
            weights = adj.data[adj.indptr[units][:, None] + np.arange(c)]
            selfw = self_weights[units]
            drawn = _arrangements(n - 1, c, permutations)
        exact = drawn is not None
        draws = drawn if exact else ids[:, :c]
        step = max(1, _BLOCK // (len(draws) * c))
        for lo in range(0, len(units), step):
            u = units[lo : lo + step]
            # id k among the units other than u is unit k, or k + 1 from u on
            others = draws[None, :, :] + (draws[None, :, :] >= u[:, None, None])
            lag = np.matmul(z[others], weights[lo : lo + step, :, None])[..., 0]
            lag += (selfw[lo : lo + step] * z[u])[:, None]
            sims = z[u][:, None] * lag * scaling if statistic == "moran" else lag / scaling
            p[u] = _p_values(sims, observed[u], exact)
    return p


@dataclass
class _Sums:
    """libpysal's ``GraphSummary`` weight sums (``s0``, ``s1``, ``s2``), nothing else."""

    s0: float
    s1: float
    s2: float


def _weight_sums(graph: Any) -> _Sums:
    """``graph.summary()``'s ``s0, s1, s2``, by libpysal's own expressions (same rounding).

    ``Graph.summary()`` also builds component labels, cardinality statistics (a pandas
    ``describe``) and more: ~4 ms per call, and esda's Moran and Geary each call it.
    """
    sp = graph.sparse
    t = sp.transpose()
    t = t + sp
    s1 = (t * t).sum() / 2.0
    s2 = (np.array(sp.sum(1) + sp.sum(0).transpose()) ** 2).sum()
    return _Sums(graph._adjacency.sum(), s1, s2)


@dataclass
class MoranStatistics:
    """Global Moran's I of :func:`global_statistics`: ``esda.Moran(permutations=0)``'s
    attributes (those agglo reads and :func:`permutation_statistics` needs)."""

    n: int
    y: np.ndarray
    w: Any
    summary: Any
    z2ss: float
    I: float  # noqa: E741 (esda's name)
    EI: float
    z_rand: float
    p_rand: float


@dataclass
class GearyStatistics:
    """Global Geary's C of :func:`global_statistics`: ``esda.Geary(permutations=0)``'s
    attributes (those agglo reads and :func:`permutation_statistics` needs)."""

    n: int
    y: np.ndarray
    C: float
    z_rand: float
    p_rand: float
    den: float
    _focal_ix: np.ndarray
    _neighbor_ix: np.ndarray
    _weights: np.ndarray


def global_statistics(y: np.ndarray, graph: Any) -> tuple[MoranStatistics, GearyStatistics]:
    """Moran's I and Geary's C with their randomisation z and p: esda's, without esda's objects.

    The arithmetic of ``esda.Moran(y, graph, transformation=graph.transformation,
    permutations=0)`` and ``esda.Geary(...)`` (esda 2.8), expression by expression, so the
    numbers are esda's to the last bit (``tests/test_autocorr_crand.py`` checks them against
    esda), with the weight sums computed once instead of one ``graph.summary()`` per
    statistic (the summary's other statistics are not needed: 8 of the 12 ms of a pair of
    esda calls on the 84 member cities).

    Parameters
    ----------
    y
        Values, in the order of ``graph``'s ids.
    graph
        ``libpysal.graph.Graph``, already transformed as wanted. A graph with isolates is
        refused: esda's Geary mis-sizes their placeholder rows on a Graph (agglo uses esda's
        ``W`` path for those).

    Returns
    -------
    MoranStatistics, GearyStatistics

    Examples
    --------
    >>> import libpysal
    >>> w = libpysal.graph.Graph.from_arrays([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2], [1.0] * 6)
    >>> mi, gc = global_statistics(np.array([1.0, 2.0, 4.0, 8.0]), w.transform("r"))
    >>> round(float(mi.I), 6), round(float(gc.C), 6)
    (0.291304, 0.384783)
    """
    from scipy import stats

    if len(graph.isolates):
        raise ValueError("global_statistics needs a graph without isolates")
    y = np.asarray(y).flatten()
    sums = _weight_sums(graph)
    s0, s1, s2 = sums.s0, sums.s1, sums.s2
    n = len(y)
    n2 = n * n
    s02 = s0 * s0
    # Moran (esda.moran.Moran.__moments, __calc, __init__)
    z = y - y.mean()
    z2ss = (z * z).sum()
    ei = -1.0 / (n - 1)
    v_num = n2 * s1 - n * s2 + 3 * s02
    v_den = (n - 1) * (n + 1) * s02
    se_norm = (v_num / v_den - (1.0 / (n - 1)) ** 2) ** (1 / 2.0)
    k = ((z**4).sum() / n) / (((z**2).sum() / n) ** 2)
    a = n * ((n2 - 3 * n + 3) * s1 - n * s2 + 3 * s02)
    b = k * ((n2 - n) * s1 - 2 * n * s2 + 6 * s02)
    se_rand = ((a - b) / ((n - 1) * (n - 2) * (n - 3) * s02) - ei * ei) ** (1 / 2.0)
    moran_i = n / s0 * (z * (graph.sparse @ z)).sum() / z2ss
    z_norm = (moran_i - ei) / se_norm
    z_rand = (moran_i - ei) / se_rand
    p_rand = 2.0 * (stats.norm.sf(z_rand) if z_norm > 0 else stats.norm.cdf(z_rand))
    moran = MoranStatistics(n, y, graph, sums, z2ss, moran_i, ei, z_rand, p_rand)
    # Geary (esda.geary.Geary.__init__, __moments, __calc)
    sp = graph.sparse
    focal, neighbor = sp.nonzero()
    weights = sp.data
    yd = y - y.mean()
    yss = sum(yd * yd)  # esda's builtin sum (sequential rounding)
    den = yss * s0 * 2.0
    c = (n - 1) * (weights * ((y[focal] - y[neighbor]) ** 2)).sum() / den
    yd4 = yd**4
    yd2 = yd**2
    k = (yd4.sum() / n) / ((yd2.sum() / n) ** 2)
    a = (n - 1) * s1 * (n2 - 3 * n + 3 - (n - 1) * k)
    b = (1.0 / 4) * ((n - 1) * s2 * (n2 + 3 * n - 6 - (n2 - n + 2) * k))
    cc = s02 * (n2 - 3 - (n - 1) ** 2 * k)
    se_rand_c = ((a - b + cc) / (n * (n - 2) * (n - 3) * s02)) ** (0.5)
    de = c - 1.0
    z_rand_c = de / se_rand_c
    p_rand_c = stats.norm.sf(z_rand_c) if de > 0 else stats.norm.cdf(z_rand_c)
    geary = GearyStatistics(n, y, c, z_rand_c, p_rand_c, den, focal, neighbor, weights)
    return moran, geary


@functools.lru_cache(maxsize=8)
def _drawn_ids(max_card: int, n: int, permutations: int, seed: int) -> np.ndarray:
    """:func:`permuted_ids`, drawn once per arguments (the same draws every year of a run)."""
    ids = permuted_ids(max_card, n, permutations, seed)
    ids.flags.writeable = False
    return ids


@functools.lru_cache(maxsize=4)
def _global_orders(n: int, permutations: int, seed: int) -> np.ndarray:
    """The ``2 * permutations`` arrangements esda's Moran then Geary draw after
    ``np.random.seed(seed)``: ``np.random.permutation(values)`` is ``values[order]`` with
    ``order = np.random.permutation(n)`` (the same shuffle of the same draws)."""
    rs = np.random.RandomState(seed)  # what np.random.seed(seed) makes of the global one
    orders = np.array([rs.permutation(n) for _ in range(2 * permutations)], dtype=np.int64)
    orders.flags.writeable = False
    return orders


def permutation_statistics(
    moran: Any, geary: Any, permutations: int, *, seed: int | None = None
) -> dict[str, float]:
    """Permutation p-values of global Moran's I and Geary's C, as esda computes them.

    ``moran`` and ``geary`` are ``esda.Moran`` / ``esda.Geary`` objects made with
    ``permutations=0``, or :func:`global_statistics`' results; the simulations use numpy's global generator in esda's order (all of
    Moran's, then all of Geary's), so seed it as for esda. With ``n! <= permutations`` every
    arrangement of the values is evaluated instead (nothing is drawn; see the module notes).
    ``seed``: the seed the global generator was just given; its draws are then made once per
    ``(n, permutations, seed)`` (they only depend on those) and reused, and the global
    generator is left where the seeding put it (callers that restore it see no difference).

    Returns
    -------
    dict
        ``moran_p_sim``, ``moran_z_sim``, ``geary_p_sim``: esda's ``p_sim`` / ``z_sim``, and
        ``arrangements``: the number of arrangements enumerated (0 when drawn at random).

    Examples
    --------
    >>> import esda, libpysal
    >>> w = libpysal.graph.Graph.from_arrays([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2], [1.0] * 6)
    >>> y = np.array([1.0, 2.0, 4.0, 8.0])  # a path of 4 units, values rising along it
    >>> s = permutation_statistics(esda.Moran(y, w, permutations=0),
    ...     esda.Geary(y, w, permutations=0), 99)
    >>> s["arrangements"], s["moran_p_sim"]  # all 4! = 24; the observed and its mirror image
    (24, 0.08333333333333333)
    """
    from libpysal.weights import W

    n = moran.n
    exact = math.factorial(n) <= permutations
    orders = geary_orders = None
    if exact:
        orders = geary_orders = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    elif seed is not None:
        drawn = _global_orders(n, permutations, int(seed))
        orders, geary_orders = drawn[:permutations], drawn[permutations:]
    rng = np.random  # esda draws from the global generator
    y_m = moran.y - moran.y.mean()  # Moran permutes z = y - mean (before its rescaling)
    if orders is not None:
        zp = y_m[orders]
    else:
        zp = np.array([rng.permutation(y_m) for _ in range(permutations)])
    lag = np.asarray(moran.w.sparse @ zp.T).T
    s0 = moran.w.s0 if isinstance(moran.w, W) else moran.summary.s0
    # row sums of a C-ordered array (rows contiguous) round as esda's 1-d sums do
    inum = np.ascontiguousarray(zp * lag).sum(axis=1)
    sim_i = moran.n / s0 * inum / moran.z2ss
    m_p = float(_p_values(sim_i[None, :], np.array([moran.I]), exact)[0])
    with np.errstate(divide="ignore"):
        z_sim = (moran.I - sim_i.sum() / len(sim_i)) / sim_i.std()

    if geary_orders is not None:
        yp = geary.y[geary_orders]
    else:
        yp = np.array([rng.permutation(geary.y) for _ in range(permutations)])
    diff = yp[:, geary._focal_ix] - yp[:, geary._neighbor_ix]
    num = np.ascontiguousarray(geary._weights * diff**2).sum(axis=1)
    sim_c = (geary.n - 1) * num / geary.den
    g_p = float(_p_values(sim_c[None, :], np.array([geary.C]), exact)[0])
    return {
        "moran_p_sim": m_p,
        "moran_z_sim": float(z_sim),
        "geary_p_sim": g_p,
        "arrangements": len(orders) if exact else 0,
    }
