"""On-disk cache of esda's numba kernels, so they compile once per machine, not once per run.

esda declares its kernels with ``@njit`` without ``cache=True``: every new process compiles
them again (about 15 CPU-seconds for Local Moran and G*). :func:`enable_esda_compile_cache`
turns numba's own on-disk cache on for those dispatchers. The cache lives in
``$NUMBA_CACHE_DIR`` when the user set it, else in ``<agglo cache>/numba``
(:func:`agglo.io.fetch.default_cache_dir`, i.e. ``$AGGLO_CACHE_DIR`` or ``~/.cache/agglo``).
numba keys each entry by the function's source file and its timestamp, so upgrading esda
recompiles.

esda's ``crand.compute_chunk`` takes the statistic as a numba function argument; numba types
such an argument by the dispatcher's address, so that kernel cannot be cached (trying to makes
numba fail while saving the index, ``ReferenceError: underlying object has vanished``) and is
left alone. agglo does not call it: :mod:`agglo.analysis.crand` runs the same loop with the
statistic fixed, compiled by :func:`cached_njit`.

mapclassify (imported by giddy for the LISA transitions) compiles ``_fisher_jenks_means``
with an explicit signature *at import*, without a cache (about 3 CPU-seconds per process):
:func:`import_with_compile_cache` imports it with numba's cache switched on for its own
kernels.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "cached_njit",
    "compile_cache_dir",
    "enable_esda_compile_cache",
    "import_with_compile_cache",
]

log = logging.getLogger(__name__)

#: esda kernels numba cannot cache (a function-typed argument)
_UNCACHEABLE = frozenset({"compute_chunk"})
#: esda modules already scanned by :func:`enable_esda_compile_cache`
_SCANNED: set[str] = set()


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


def enable_esda_compile_cache() -> int:
    """Cache every numba kernel of the imported esda modules on disk (idempotent).

    Returns
    -------
    int
        Number of kernels whose cache was switched on by this call (0 when numba is missing,
        disabled with ``NUMBA_DISABLE_JIT=1``, the cache folder is not writable, or it was
        already on).

    Examples
    --------
    >>> import esda
    >>> n = enable_esda_compile_cache()
    >>> enable_esda_compile_cache()  # already on
    0
    """
    try:
        import esda  # noqa: F401  (imports the kernels' modules)
        from numba.core import config
        from numba.core.caching import FunctionCache
        from numba.core.registry import CPUDispatcher
    except ImportError:
        return 0
    if config.DISABLE_JIT:
        return 0
    modules = {
        name: module
        for name, module in list(sys.modules.items())
        if module is not None and (name == "esda" or name.startswith("esda."))
    }
    if set(modules) <= _SCANNED:
        return 0
    count = 0
    with _cache_dir(compile_cache_dir()) as ok:
        if not ok:
            return 0
        for name, module in modules.items():
            for key, obj in list(vars(module).items()):
                if (
                    isinstance(obj, CPUDispatcher)
                    and key not in _UNCACHEABLE
                    and not isinstance(obj._cache, FunctionCache)
                ):
                    obj.enable_caching()
                    count += 1
            _SCANNED.add(name)
    if count:
        log.debug("numba compile cache for %d esda kernels in %s", count, compile_cache_dir())
    return count


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


def cached_njit(py_func: Callable[..., Any], *, tag: str, **flags: Any) -> Any:
    """``numba.njit(**flags)(py_func)`` cached on disk in ``compile_cache_dir() / tag``.

    ``tag`` names what the compiled code depends on besides ``py_func``'s own file (numba
    checks only that file's time stamp), e.g. ``"esda-2.8.2"`` for a loop inlining esda's
    kernels: another esda version compiles into another folder.

    Examples
    --------
    >>> def twice(x):
    ...     return 2 * x
    >>> cached_njit(twice, tag="doc")(21)
    42
    """
    try:
        from numba import njit
        from numba.core import config
    except ImportError:  # numba is optional (esda runs without it): plain Python, same numbers
        log.info("numba is not installed: %s runs as plain Python (slower)", py_func.__name__)
        return py_func

    dispatcher = njit(**flags)(py_func)
    if config.DISABLE_JIT:
        return dispatcher
    with _cache_dir(compile_cache_dir() / tag) as ok:
        if ok:
            try:
                dispatcher.enable_caching()
            except Exception as exc:
                log.info("numba compile cache off for %s: %s", py_func.__name__, exc)
    return dispatcher


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
