"""Permutation inference of esda's statistics, run so that nothing compiles twice.

esda runs the conditional randomisation of Local Moran and G* in ``esda.crand.compute_chunk``,
a numba kernel that takes the statistic as a function argument. numba types that argument by
the dispatcher's address, so the kernel cannot be cached on disk and compiles again in every
process (about 8 CPU-seconds for both statistics). :func:`conditional_p` runs the same loop
with the statistic fixed: the loop below is ``compute_chunk``'s, and the statistic
(``esda.moran._moran_local_crand`` / ``esda.getisord._g_local_star_crand``), the permutations
(``esda.crand.vec_permutations``) and the p-value (``esda.significance._permutation_significance``)
are esda's own kernels, so the numbers are esda's (``tests/test_autocorr_crand.py`` checks them
against ``esda.Moran_Local`` / ``esda.G_Local`` on the same seed, and against a numpy count).
The kernels are cached on disk under :func:`agglo.analysis.compile_cache.compile_cache_dir`,
in a folder per esda version.

Two choices differ from a plain esda call, both deliberate:

- the p-value is esda's ``"directed"`` one (esda 2.8's default; the count of simulated
  statistics at least as extreme as the observed one, in the observed tail), named here so an
  esda upgrade that changes the default, or recomputes ``p_sim`` from kept simulations with
  another formula, does not change agglo's results;
- p-values are kept in float64 (esda's loop stores them in float32, e.g. 0.00999999977
  for 10/1000); simulations are not kept (no ``n x permutations`` array).

:func:`permutation_statistics` does the same for global Moran's I and Geary's C: the
permutations are drawn exactly as ``esda.Moran`` / ``esda.Geary`` draw them (one
``np.random.permutation`` per simulation from the global generator), and the statistics of
all of them are computed in one sparse product instead of one Python call each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["conditional_p", "permutation_statistics"]

# esda's own kernels (esda 2.8), inlined by the loops below
from esda.crand import vec_permutations
from esda.getisord import _g_local_star_crand
from esda.moran import _moran_local_crand
from esda.significance import _permutation_significance


def _moran_local_loop(
    z, observed, cardinalities, self_weights, other_weights, permuted_ids, scaling, island_weight
):  # pragma: no cover - compiled by numba
    # esda.crand.compute_chunk (chunk = all units, keep=False) with the statistic fixed
    n = z.shape[0]
    p_sims = np.zeros((n,), dtype=np.float64)
    wloc = 0
    for i in range(n):
        cardinality = cardinalities[i]
        if cardinality == 0:
            weights_i = np.zeros(2, dtype=other_weights.dtype)
            weights_i[1] = island_weight
        else:
            weights_i = np.zeros(cardinality + 1, dtype=other_weights.dtype)
            weights_i[0] = self_weights[i]
            weights_i[1:] = other_weights[wloc : (wloc + cardinality)]
        wloc += cardinality
        rstats = _moran_local_crand(i, z, permuted_ids, weights_i, scaling)
        p_sims[i] = _permutation_significance(observed[i], rstats, alternative="directed").item()
    return p_sims


def _g_local_star_loop(
    z, observed, cardinalities, self_weights, other_weights, permuted_ids, scaling, island_weight
):  # pragma: no cover - compiled by numba
    n = z.shape[0]
    p_sims = np.zeros((n,), dtype=np.float64)
    wloc = 0
    for i in range(n):
        cardinality = cardinalities[i]
        if cardinality == 0:
            weights_i = np.zeros(2, dtype=other_weights.dtype)
            weights_i[1] = island_weight
        else:
            weights_i = np.zeros(cardinality + 1, dtype=other_weights.dtype)
            weights_i[0] = self_weights[i]
            weights_i[1:] = other_weights[wloc : (wloc + cardinality)]
        wloc += cardinality
        rstats = _g_local_star_crand(i, z, permuted_ids, weights_i, scaling)
        p_sims[i] = _permutation_significance(observed[i], rstats, alternative="directed").item()
    return p_sims


_LOOPS = {"moran": _moran_local_loop, "gstar": _g_local_star_loop}
_COMPILED: dict[str, Any] = {}


def _loop(statistic: str):
    if statistic not in _COMPILED:
        import esda

        from agglo.analysis.compile_cache import cached_njit

        # compute_chunk's flags; the statistic keeps its own (fastmath) when inlined
        _COMPILED[statistic] = cached_njit(
            _LOOPS[statistic], tag=f"esda-{esda.__version__}", fastmath=True
        )
    return _COMPILED[statistic]


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
        As given to esda.
    scaling
        Statistic scaling: ``(n - 1) / sum(z**2)`` for Moran (default), ``sum(y)`` for G*.
    island_weight
        esda's weight of an island's fake neighbour.

    Returns
    -------
    numpy.ndarray
        ``(k + 1) / (permutations + 1)`` per unit, ``k`` the number of simulated statistics
        at least as extreme as the observed one in its tail (esda's ``"directed"``).

    Examples
    --------
    >>> import esda, libpysal
    >>> w = libpysal.graph.Graph.build_contiguity(
    ...     __import__("geopandas").GeoSeries([__import__("shapely").box(i % 5, i // 5, i % 5 + 1,
    ...     i // 5 + 1) for i in range(25)]), rook=True).transform("r")
    >>> y = np.arange(25.0) % 7
    >>> lm = esda.Moran_Local(y, w, permutations=0)
    >>> p = conditional_p("moran", lm.z, lm.w, lm.Is, 99, 1)
    >>> p.shape, bool(((p * 100).round() >= 1).all())
    ((25,), True)
    """
    import warnings

    from agglo.analysis.compile_cache import enable_esda_compile_cache

    enable_esda_compile_cache()  # vec_permutations
    z = np.asarray(z, dtype=float)
    n = len(z)
    if scaling is None:
        scaling = (n - 1) / (z * z).sum()
    adj = w.sparse.copy()  # esda zeroes the diagonal of the weights' own matrix in place
    self_weights = adj.diagonal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SparseEfficiencyWarning of setdiag
        adj.setdiag(0)
        adj.eliminate_zeros()
    other_weights = adj.data.astype(z.dtype)
    cardinalities = np.array((adj != 0).sum(1)).flatten()
    if seed is None:
        seed = np.random.randint(12345, 12345000)  # noqa: NPY002 (esda's own draw)
    permuted_ids = vec_permutations(cardinalities.max(), n, permutations, seed)
    return _loop(statistic)(
        z,
        np.asarray(observed, dtype=float),
        cardinalities,
        self_weights,
        other_weights,
        permuted_ids,
        float(scaling),
        float(island_weight),
    )


def permutation_statistics(moran: Any, geary: Any, permutations: int) -> dict[str, float]:
    """Permutation p-values of global Moran's I and Geary's C, as esda computes them.

    ``moran`` and ``geary`` are ``esda.Moran`` / ``esda.Geary`` objects made with
    ``permutations=0``; the simulations use numpy's global generator in esda's order (all of
    Moran's, then all of Geary's), so seed it as for esda.

    Returns
    -------
    dict
        ``moran_p_sim``, ``moran_z_sim``, ``geary_p_sim``: esda's ``p_sim`` / ``z_sim``.
    """
    from libpysal.weights import W

    rng = np.random  # esda draws from the global generator
    y_m = moran.y - moran.y.mean()  # Moran permutes z = y - mean (before its rescaling)
    zp = np.array([rng.permutation(y_m) for _ in range(permutations)])
    lag = np.asarray(moran.w.sparse @ zp.T).T
    s0 = moran.w.s0 if isinstance(moran.w, W) else moran.summary.s0
    inum = np.array([row.sum() for row in zp * lag])  # 1-d sums: esda's rounding
    sim_i = moran.n / s0 * inum / moran.z2ss
    m_p, _ = _directed(sim_i, moran.I, permutations)
    with np.errstate(divide="ignore"):
        z_sim = (moran.I - sim_i.sum() / permutations) / sim_i.std()

    yp = np.array([rng.permutation(geary.y) for _ in range(permutations)])
    diff = yp[:, geary._focal_ix] - yp[:, geary._neighbor_ix]
    num = np.array([row.sum() for row in geary._weights * diff**2])
    sim_c = (geary.n - 1) * num / geary.den
    g_p, _ = _directed(sim_c, geary.C, permutations)
    return {"moran_p_sim": m_p, "moran_z_sim": float(z_sim), "geary_p_sim": g_p}


def _directed(sim: np.ndarray, observed: float, permutations: int) -> tuple[float, int]:
    larger = int((sim >= observed).sum())
    if (permutations - larger) < larger:
        larger = permutations - larger
    return (larger + 1.0) / (permutations + 1.0), larger
