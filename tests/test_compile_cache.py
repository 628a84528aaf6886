"""The on-disk numba cache of kernels compiled at import (agglo.analysis.compile_cache)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("numba")

from agglo.analysis import compile_cache


def test_cache_dir_follows_numba_then_agglo_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nb"))
    assert compile_cache.compile_cache_dir() == tmp_path / "nb"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(tmp_path / "agglo"))
    assert compile_cache.compile_cache_dir() == tmp_path / "agglo" / "numba"


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
