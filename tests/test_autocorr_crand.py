"""agglo.analysis.crand: esda's permutation inference in numpy, checked against esda and numpy."""

from __future__ import annotations

import numpy as np
import pytest

esda = pytest.importorskip("esda")

from libpysal.graph import Graph  # noqa: E402

from agglo.analysis.crand import (  # noqa: E402
    TIE_RTOL,
    conditional_p,
    global_statistics,
    permutation_statistics,
    permuted_ids,
)

PERMS = 199
# esda 2.8 announces a change of its default alternative on every permutation test
pytestmark = pytest.mark.filterwarnings("ignore:The alternative hypothesis:DeprecationWarning")


def grid(k: int = 8, island: bool = False) -> Graph:
    """Queen contiguity of a k x k grid (+ one unit with no neighbour), ids 0..n-1."""
    focal, neighbor = [], []
    for i in range(k * k):
        r, c = divmod(i, k)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < k and 0 <= cc < k:
                    focal.append(i)
                    neighbor.append(rr * k + cc)
    if island:
        focal.append(k * k)
        neighbor.append(k * k)
    weights = np.ones(len(focal))
    if island:
        weights[-1] = 0.0
    return Graph.from_arrays(np.array(focal), np.array(neighbor), weights)


def values(n: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    return np.arange(n) % 8 + rng.normal(0, 1.5, n)


def _tie_free(full, observed, units):
    """No simulation of esda within the tie tolerance of the observed statistic (so esda's
    floating-point count and agglo's tie rule must agree)."""
    sims = np.asarray(full.sim).T[units]
    scale = np.maximum(np.abs(observed[units]), np.abs(sims).max(axis=1))
    gap = np.abs(sims - observed[units, None]).min(axis=1) / scale
    return bool((gap > TIE_RTOL).all())


def test_permuted_ids_equal_esda_vec_permutations():
    from esda.crand import vec_permutations

    for args in [(3, 10, 5, 1), (8, 84, 999, 20101115), (12, 1068, 50, 7), (1, 3, 10, 2**33 + 5)]:
        np.testing.assert_array_equal(permuted_ids(*args), vec_permutations(*args))


@pytest.mark.parametrize("island", [False, True])
def test_local_moran_p_equals_esda(island):
    w = grid(island=island).transform("r")
    y = values(w.n)
    with np.errstate(all="ignore"):  # an island's simulations have no spread
        full = esda.Moran_Local(y, w, permutations=PERMS, seed=11)
    bare = esda.Moran_Local(y, w, permutations=0)
    p = conditional_p("moran", bare.z, bare.w, bare.Is, PERMS, 11)
    units = np.arange(64)  # the grid; the island is unit 64
    assert _tie_free(full, bare.Is, units)
    np.testing.assert_array_equal(p[units], full.p_sim[units])  # esda 2.8: p_sim in float64
    if island:
        # its simulations all equal its observed 0: a tie in both tails, p = 1 (esda: 1/200)
        assert full.p_sim[64] == 1 / (PERMS + 1) and p[64] == 1.0


@pytest.mark.parametrize("island", [False, True])
def test_gstar_p_equals_esda(island):
    w = grid(island=island).transform("B")
    y = values(w.n) + 10.0
    with np.errstate(all="ignore"):
        full = esda.G_Local(y, w, transform="B", star=True, permutations=PERMS, seed=5, n_jobs=1)
    bare = esda.G_Local(y, w, transform="B", star=True, permutations=0)
    p = conditional_p("gstar", bare.y, bare.w, bare.Gs, PERMS, 5, scaling=bare.y.sum())
    assert _tie_free(full, bare.Gs, np.arange(w.n))
    # esda keeps G*'s p in float32; the counts are the same, agglo keeps float64
    np.testing.assert_array_equal(p.astype(np.float32), full.p_sim)
    counts = p * (PERMS + 1) - 1
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_local_moran_p_equals_a_numpy_count():
    """Independent of esda's loop: the same permuted neighbours, statistics by numpy."""
    from esda.crand import vec_permutations

    w = grid().transform("r")
    y = values(w.n)
    n = len(y)
    z = (y - y.mean()) / y.std()
    sp = w.sparse.tocsr()
    lag = sp @ z
    observed = (n - 1) * z * lag / (z * z).sum()
    card = np.diff(sp.indptr)
    ids = vec_permutations(card.max(), n, PERMS, 3)
    expected = np.empty(n)
    for i in range(n):
        others = np.delete(z, i)  # the other units, in order: what esda permutes
        wi = sp.data[sp.indptr[i] : sp.indptr[i + 1]]
        sims = z[i] * (others[ids[:, : card[i]]] @ wi) * (n - 1) / (z * z).sum()
        larger = int((sims >= observed[i]).sum())
        larger = min(larger, PERMS - larger)  # esda's "directed": the observed tail
        expected[i] = (larger + 1) / (PERMS + 1)
    np.testing.assert_allclose(conditional_p("moran", z, w, observed, PERMS, 3), expected)


def test_global_permutations_equal_esda():
    w = grid(9).transform("r")
    y = values(w.n)
    np.random.seed(8)  # noqa: NPY002 - esda draws from the global generator
    mi, gc = esda.Moran(y, w, permutations=PERMS), esda.Geary(y, w, permutations=PERMS)
    np.random.seed(8)  # noqa: NPY002
    mi0, gc0 = esda.Moran(y, w, permutations=0), esda.Geary(y, w, permutations=0)
    got = permutation_statistics(mi0, gc0, PERMS)
    assert got["moran_p_sim"] == mi.p_sim
    assert got["moran_z_sim"] == mi.z_sim
    assert got["geary_p_sim"] == gc.p_sim


def _knn_graph(n: int, k: int) -> Graph:
    """Asymmetric k-nearest-neighbour weights of random points, distance-decayed."""
    rng = np.random.default_rng(9)
    pts = rng.uniform(0, 10, (n, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(d, np.inf)
    nb = np.argsort(d, axis=1)[:, :k]
    focal = np.repeat(np.arange(n), k)
    return Graph.from_arrays(focal, nb.ravel(), 1.0 / d[focal, nb.ravel()])


@pytest.mark.parametrize(
    ("graph", "transform"),
    [(grid(7), "r"), (grid(9), "b"), (grid(6), "v"), (_knn_graph(40, 4), "r")],
    ids=["grid-r", "grid-b", "grid-v", "knn-r"],
)
def test_global_statistics_equal_esda(graph, transform):
    w = graph.transform(transform)
    y = values(w.n)
    mi, gc = global_statistics(y, w)
    ref_m = esda.Moran(y, w, transformation=w.transformation, permutations=0)
    ref_g = esda.Geary(y, w, transformation=w.transformation, permutations=0)
    summary = w.summary()
    assert (mi.summary.s0, mi.summary.s1, mi.summary.s2) == (summary.s0, summary.s1, summary.s2)
    got = [mi.I, mi.EI, mi.z_rand, mi.p_rand, mi.z2ss, gc.C, gc.z_rand, gc.p_rand, gc.den]
    ref = [ref_m.I, ref_m.EI, ref_m.z_rand, ref_m.p_rand, ref_m.z2ss]
    ref += [ref_g.C, ref_g.z_rand, ref_g.p_rand, ref_g.den]
    assert got == ref  # the same arithmetic: equal to the last bit
    # and the permutation statistics built on them are those built on esda's objects
    np.random.seed(3)  # noqa: NPY002
    ours = permutation_statistics(mi, gc, PERMS)
    np.random.seed(3)  # noqa: NPY002
    assert ours == permutation_statistics(ref_m, ref_g, PERMS)
    with pytest.raises(ValueError, match="without isolates"):
        global_statistics(values(50), grid(7, island=True).transform("r"))


def test_global_permutations_with_seed_reuse_esda_draws():
    """``seed=``: the arrangements are drawn once per (n, permutations, seed) and are esda's
    (esda.Moran / esda.Geary seeded the same way), call after call."""
    w = grid(8).transform("r")
    for k, y in enumerate([values(w.n), values(w.n) ** 2, -values(w.n)]):
        np.random.seed(21)  # noqa: NPY002
        mi, gc = esda.Moran(y, w, permutations=PERMS), esda.Geary(y, w, permutations=PERMS)
        m0, g0 = global_statistics(y, w)
        got = permutation_statistics(m0, g0, PERMS, seed=21)
        assert got["moran_p_sim"] == mi.p_sim, k
        assert got["moran_z_sim"] == mi.z_sim, k
        assert got["geary_p_sim"] == gc.p_sim, k
    other = permutation_statistics(m0, g0, PERMS, seed=22)
    assert other["moran_z_sim"] != got["moran_z_sim"]


def _path(n: int) -> Graph:
    focal = [i for i in range(n) for j in (i - 1, i + 1) if 0 <= j < n]
    neighbor = [j for i in range(n) for j in (i - 1, i + 1) if 0 <= j < n]
    return Graph.from_arrays(np.array(focal), np.array(neighbor), np.ones(len(focal)))


def _directed(sims, observed, exact):
    """Plain count: at least as large / as small as observed up to the tolerance."""
    tol = TIE_RTOL * max(abs(observed), np.abs(sims).max())
    k = min(int((sims >= observed - tol).sum()), int((sims <= observed + tol).sum()))
    return k / len(sims) if exact else (k + 1) / (len(sims) + 1)


@pytest.mark.parametrize("n", [5, 6])
def test_tiny_global_tests_enumerate_every_arrangement(n):
    """n! <= permutations: the exact permutation p-value over all n! arrangements, counted
    here with esda's own Moran/Geary on each arrangement; no draw, same p for any seed and
    for inputs that differ by 1e-15 (the arrangements mapped onto themselves tie)."""
    import itertools

    w = _path(n).transform("r")
    y = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0][:n])
    orders = np.array(list(itertools.permutations(range(n))))
    # Moran's I and Geary's C of every arrangement in closed form (dense weights)
    dense, yp = w.sparse.toarray(), y[orders]
    zp = yp - y.mean()
    s0 = dense.sum()
    sim_i = n / s0 * np.einsum("ai,ij,aj->a", zp, dense, zp) / (zp[0] ** 2).sum()
    sq = (yp[:, :, None] - yp[:, None, :]) ** 2
    sim_c = (n - 1) * np.einsum("aij,ij->a", sq, dense) / (2 * s0 * (zp[0] ** 2).sum())
    mi, gc = esda.Moran(y, w, permutations=0), esda.Geary(y, w, permutations=0)
    np.testing.assert_allclose([sim_i[0], sim_c[0]], [mi.I, gc.C], rtol=1e-12)  # identity
    got = permutation_statistics(mi, gc, 999)
    assert got["arrangements"] == len(orders)
    np.testing.assert_allclose(got["moran_p_sim"], _directed(sim_i, mi.I, True), rtol=1e-12)
    np.testing.assert_allclose(got["geary_p_sim"], _directed(sim_c, gc.C, True), rtol=1e-12)
    # the path reversed is the same graph: each statistic has at least one exact tie
    assert (np.abs(sim_i - mi.I) < 1e-12).sum() >= 2
    state = np.random.get_state()  # noqa: NPY002
    nudged = y + np.array([1e-15, -2e-15, 0, 3e-15, 0, 1e-15][:n]) * y
    again = permutation_statistics(
        esda.Moran(nudged, w, permutations=0), esda.Geary(nudged, w, permutations=0), 999
    )
    assert again["moran_p_sim"] == got["moran_p_sim"]
    assert again["geary_p_sim"] == got["geary_p_sim"]
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002 - nothing drawn


def test_local_ties_count_in_both_tails_and_small_sets_are_enumerated():
    """A unit with one neighbour among 6 units: its 5 possible neighbours are enumerated;
    repeated values give exact ties, counted as at least as large and as small."""
    w = _path(6).transform("r")
    y = np.array([1.0, 2.0, 2.0, 5.0, 2.0, 7.0])  # repeated values: ties
    lm = esda.Moran_Local(y, w, permutations=0)
    p = conditional_p("moran", lm.z, lm.w, lm.Is, 99, 3)
    z, n = lm.z, len(y)
    scaling = (n - 1) / (z * z).sum()
    for i in (0, n - 1):  # the ends have one neighbour: every other unit, once
        j = 1 if i == 0 else n - 2
        sims = z[i] * np.delete(z, i) * scaling
        assert p[i] == _directed(sims, lm.Is[i], True)
        assert (np.abs(sims - lm.Is[i]) < 1e-12).sum() == int((y == y[j]).sum() - (y[i] == y[j]))
    # nudging the inputs by 1e-15 does not move any p-value
    lm2 = esda.Moran_Local(y * (1 + 1e-15 * np.arange(n)), w, permutations=0)
    np.testing.assert_array_equal(conditional_p("moran", lm2.z, lm2.w, lm2.Is, 99, 3), p)


def test_seed_none_draws_from_the_global_generator():
    w = grid(4).transform("r")
    y = values(w.n)
    bare = esda.Moran_Local(y, w, permutations=0)
    np.random.seed(1)  # noqa: NPY002
    a = conditional_p("moran", bare.z, bare.w, bare.Is, 49, None)
    np.random.seed(1)  # noqa: NPY002
    b = conditional_p("moran", bare.z, bare.w, bare.Is, 49, None)
    np.testing.assert_array_equal(a, b)


def test_without_numba_the_same_p():
    """The core install has no numba (it comes with the markov extra): same p-values.

    A fresh interpreter where ``import numba`` fails before esda is imported, as in a core
    install, against one with numba: agglo's permutations never use numba.
    """
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        if sys.argv[1] == "without":
            sys.modules["numba"] = None  # import numba -> ImportError
        import json
        import esda, geopandas, libpysal, numpy as np, shapely
        from agglo.analysis import crand
        boxes = [shapely.box(i % 5, i // 5, i % 5 + 1, i // 5 + 1) for i in range(25)]
        graph = libpysal.graph.Graph.build_contiguity(geopandas.GeoSeries(boxes), rook=False)
        w = graph.transform("r")
        y = (np.arange(25.0) * 7.3) % 11
        lm = esda.Moran_Local(y, w, permutations=0)
        print(json.dumps(crand.conditional_p("moran", lm.z, lm.w, lm.Is, 49, 7).tolist()))
        """
    )
    p = {}
    for mode in ("with", "without"):
        done = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        p[mode] = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    assert p["with"].shape == (25,) and (p["with"] > 0).all()
    np.testing.assert_array_equal(p["without"], p["with"])
