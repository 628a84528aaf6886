"""agglo.analysis.crand: esda's permutation inference, cached, checked against esda and numpy."""

from __future__ import annotations

import numpy as np
import pytest

esda = pytest.importorskip("esda")
pytest.importorskip("numba")

from libpysal.graph import Graph  # noqa: E402

from agglo.analysis.crand import conditional_p, permutation_statistics  # noqa: E402

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


@pytest.mark.parametrize("island", [False, True])
def test_local_moran_p_equals_esda(island):
    w = grid(island=island).transform("r")
    y = values(w.n)
    with np.errstate(all="ignore"):  # an island's simulations have no spread
        full = esda.Moran_Local(y, w, permutations=PERMS, seed=11)
    bare = esda.Moran_Local(y, w, permutations=0)
    p = conditional_p("moran", bare.z, bare.w, bare.Is, PERMS, 11)
    np.testing.assert_array_equal(p, full.p_sim)  # esda 2.8 recomputes p_sim in float64


@pytest.mark.parametrize("island", [False, True])
def test_gstar_p_equals_esda(island):
    w = grid(island=island).transform("B")
    y = values(w.n) + 10.0
    with np.errstate(all="ignore"):
        full = esda.G_Local(y, w, transform="B", star=True, permutations=PERMS, seed=5, n_jobs=1)
    bare = esda.G_Local(y, w, transform="B", star=True, permutations=0)
    p = conditional_p("gstar", bare.y, bare.w, bare.Gs, PERMS, 5, scaling=bare.y.sum())
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


def test_seed_none_draws_from_the_global_generator():
    w = grid(4).transform("r")
    y = values(w.n)
    bare = esda.Moran_Local(y, w, permutations=0)
    np.random.seed(1)  # noqa: NPY002
    a = conditional_p("moran", bare.z, bare.w, bare.Is, 49, None)
    np.random.seed(1)  # noqa: NPY002
    b = conditional_p("moran", bare.z, bare.w, bare.Is, 49, None)
    np.testing.assert_array_equal(a, b)


def test_without_numba_the_loop_runs_as_python_with_the_same_p():
    """The core install has no numba (it comes with the markov extra): same p, plain Python.

    A fresh interpreter where ``import numba`` fails before esda is imported, as in a core
    install: esda's kernels fall back to plain functions, and so does agglo's loop. (Blocking
    numba in this process is not the same: esda's kernels stay dispatchers that read numba's
    disk cache.)
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
        from agglo.analysis.compile_cache import cached_njit
        def twice(x):
            return 2 * x
        plain = sys.argv[1] == "without"
        assert (cached_njit(twice, tag="t") is twice) == plain
        assert (type(crand._moran_local_crand).__name__ == "function") == plain
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
    np.testing.assert_allclose(p["without"], p["with"], rtol=0, atol=1e-12)
