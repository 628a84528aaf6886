"""The on-disk numba cache of esda's kernels (agglo.analysis.compile_cache)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("numba")
esda = pytest.importorskip("esda")

from agglo.analysis import compile_cache  # noqa: E402


def test_cache_dir_follows_numba_then_agglo_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nb"))
    assert compile_cache.compile_cache_dir() == tmp_path / "nb"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(tmp_path / "agglo"))
    assert compile_cache.compile_cache_dir() == tmp_path / "agglo" / "numba"


@pytest.mark.slow
def test_kernels_write_to_the_cache_and_reload(monkeypatch, tmp_path):
    """A kernel made cacheable writes an index in the folder; a fresh dispatcher loads it."""
    from esda import crand
    from numba import njit
    from numba.core.caching import FunctionCache, NullCache
    from numba.core.registry import CPUDispatcher

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    # as a fresh process sees them: not compiled, no cache (restored afterwards)
    py_func = crand.vec_permutations.py_func
    monkeypatch.setattr(crand, "vec_permutations", njit(fastmath=True)(py_func))
    kernels = [v for v in vars(crand).values() if isinstance(v, CPUDispatcher)]
    every = {
        id(v): v
        for name, mod in list(sys.modules.items())
        if mod is not None and name.split(".")[0] == "esda"
        for v in vars(mod).values()
        if isinstance(v, CPUDispatcher)
    }
    for k in every.values():  # every esda kernel gets its own cache back after the test
        monkeypatch.setattr(k, "_cache", NullCache())
    monkeypatch.setattr(compile_cache, "_SCANNED", set())
    assert compile_cache.enable_esda_compile_cache() >= len(kernels) - 1
    # compute_chunk takes the statistic as a function argument: numba cannot cache it
    assert isinstance(crand.compute_chunk._cache, NullCache)
    assert all(isinstance(k._cache, FunctionCache) for k in kernels if k is not crand.compute_chunk)
    assert compile_cache.enable_esda_compile_cache() == 0  # idempotent
    got = crand.vec_permutations(3, 10, 4, 1)
    # numba caches in a per-module subfolder of the cache dir: an index and a data file
    assert list(tmp_path.rglob("crand.vec_permutations-*.nbi"))
    fresh = njit(fastmath=True)(py_func)
    fresh.enable_caching()
    np.testing.assert_array_equal(fresh(3, 10, 4, 1), got)
    assert sum(fresh.stats.cache_hits.values()) == 1, "a new dispatcher should load from disk"


def test_import_with_compile_cache_caches_only_the_listed_packages(monkeypatch, tmp_path):
    """Kernels compiled at import by a listed package are cached on disk; numba.njit is
    restored afterwards and an unlisted package's kernels are not cached."""
    import numba
    from numba.core.caching import FunctionCache

    src = tmp_path / "src"
    for pkg in ("agglofake_eager", "agglofake_other"):
        (src / pkg).mkdir(parents=True)
        (src / pkg / "__init__.py").write_text(
            'from numba import njit\n\n\n@njit("f8(f8)")\ndef twice(x):\n    return 2.0 * x\n'
        )
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compile_cache, "_EAGER_PACKAGES", ("agglofake_eager",))
    original = numba.njit
    eager = compile_cache.import_with_compile_cache("agglofake_eager")
    other = compile_cache.import_with_compile_cache("agglofake_other")
    try:
        assert numba.njit is original
        assert eager.twice(21.0) == 42.0 and other.twice(1.5) == 3.0
        assert isinstance(eager.twice._cache, FunctionCache)
        assert not isinstance(other.twice._cache, FunctionCache)
        assert list((tmp_path / "cache").rglob("*twice*.nbi"))
        assert compile_cache.import_with_compile_cache("agglofake_eager") is eager
    finally:
        for pkg in ("agglofake_eager", "agglofake_other"):
            sys.modules.pop(pkg, None)


@pytest.mark.slow
def test_mapclassify_kernel_loads_from_the_cache_in_a_new_process(tmp_path):
    """Two fresh processes: the first compiles mapclassify's Fisher-Jenks kernel into the
    cache, the second loads it (a cache hit) and both give the plain-Python result."""
    import os
    import subprocess

    pytest.importorskip("mapclassify")
    code = (
        "import numpy as np\n"
        "from agglo.analysis.compile_cache import import_with_compile_cache\n"
        "mc = import_with_compile_cache('mapclassify')\n"
        "k = mc.classifiers._fisher_jenks_means\n"
        "y = np.array([1.0, 2, 3, 10, 11, 12, 20, 21])\n"
        "assert (k(y, 3) == k.py_func(y, 3)).all(), (k(y, 3), k.py_func(y, 3))\n"
        "print(sum(k.stats.cache_hits.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    hits = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert hits == ["0", "1"]
