"""On-disk cache of numba kernels that mapclassify compiles at import.

agglo's own permutation tests compile nothing (:mod:`agglo.analysis.crand` is numpy), and the
LISA transitions no longer import giddy (:mod:`agglo.analysis.markov` computes giddy's chains
in numpy), so ``agglo run`` does not use this module any more; it serves code that imports
mapclassify or giddy itself (the transitions benchmark's giddy side). Before, the LISA
transitions imported giddy, which imports mapclassify: mapclassify compiles
``_fisher_jenks_means`` with an explicit signature *at import*, without a cache, in every
process (about 2 CPU-seconds). :func:`import_with_compile_cache` imports it with numba's
on-disk cache on for its kernels: the first process compiles and saves them, later ones load
them (the maps use mapclassify's Fisher-Jenks once it is imported). giddy also imports
quantecon, whose generalised ufuncs compile at import with quantecon's own ``cache=True``
(about 3 CPU-seconds on the first import after an install, 0.2 s later); they cannot be made
lazy (quantecon calls some of them without output arrays), so they are left alone.

The cache lives in ``$NUMBA_CACHE_DIR`` when the user set it, else in ``<agglo cache>/numba``
(:func:`agglo.io.fetch.default_cache_dir`, i.e. ``$AGGLO_CACHE_DIR`` or ``~/.cache/agglo``).
numba keys each entry by the function's source file and its timestamp, so upgrading the
package recompiles. Without numba these are plain imports.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["compile_cache_dir", "import_with_compile_cache"]

log = logging.getLogger(__name__)


def compile_cache_dir() -> Path:
    """Folder of numba's on-disk cache used by agglo.

    Returns
    -------
    pathlib.Path
        ``$NUMBA_CACHE_DIR`` if set, else ``<agglo cache dir>/numba``.

    Examples
    --------
    >>> compile_cache_dir().name in {"numba", Path(os.environ.get("NUMBA_CACHE_DIR", "x")).name}
    True
    """
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    from agglo.io.fetch import default_cache_dir

    return default_cache_dir() / "numba"


@contextlib.contextmanager
def _cache_dir(folder: Path) -> Iterator[bool]:
    """numba's cache folder set to ``folder`` while caches are made (``False``: not writable).

    numba reads ``NUMBA_CACHE_DIR`` at import, but each cache's locator reads
    ``config.CACHE_DIR`` when the cache is made: it is set for agglo's kernels only, other
    numba users keep their setting.
    """
    from numba.core import config

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("numba compile cache off: cannot create %s (%s)", folder, exc)
        yield False
        return
    previous = config.CACHE_DIR
    config.CACHE_DIR = str(folder)
    try:
        yield True
    finally:
        config.CACHE_DIR = previous


#: packages whose kernels compile at import; :func:`import_with_compile_cache` caches them
_EAGER_PACKAGES = ("mapclassify",)


def import_with_compile_cache(module: str) -> Any:
    """Import ``module`` with numba's on-disk cache on for kernels compiled at import.

    While the import runs, ``numba.njit`` adds ``cache=True`` for functions of the packages in
    ``_EAGER_PACKAGES`` (mapclassify's ``_fisher_jenks_means`` is compiled with an explicit
    signature when ``mapclassify`` is imported): the first process compiles and saves them
    under :func:`compile_cache_dir`, later ones load them. numba keys each entry by the
    source file and its time stamp, so upgrading the package recompiles. Other numba users
    and an already imported module are left as they are; without numba this is a plain
    import.

    Returns
    -------
    module
        The imported module.

    Examples
    --------
    >>> import_with_compile_cache("mapclassify").__name__
    'mapclassify'
    """
    if module in sys.modules:
        return sys.modules[module]
    try:
        import numba
        from numba.core import config
    except ImportError:
        return importlib.import_module(module)
    if config.DISABLE_JIT:
        return importlib.import_module(module)
    with _cache_dir(compile_cache_dir()) as ok:
        if not ok:
            return importlib.import_module(module)
        original = numba.njit

        def cached(func: Any) -> bool:
            name = getattr(func, "__module__", None) or ""
            return name.split(".")[0] in _EAGER_PACKAGES

        def njit(*args: Any, **flags: Any) -> Any:
            if args and callable(args[0]):  # @njit / njit(func, ...)
                if cached(args[0]):
                    flags.setdefault("cache", True)
                return original(*args, **flags)

            def decorate(func: Any) -> Any:  # @njit(signature, ...)
                extra = {"cache": True} if cached(func) else {}
                return original(*args, **{**extra, **flags})(func)

            return decorate

        numba.njit = njit
        try:
            return importlib.import_module(module)
        finally:
            numba.njit = original
