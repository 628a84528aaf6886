"""On-disk cache of esda's numba kernels, so they compile once per machine, not once per run.

esda declares its kernels with ``@njit`` without ``cache=True``: every new process compiles
them again (about 15 CPU-seconds for Local Moran and G*). :func:`enable_esda_compile_cache`
turns numba's own on-disk cache on for those dispatchers. The cache lives in
``$NUMBA_CACHE_DIR`` when the user set it, else in ``<agglo cache>/numba``
(:func:`agglo.io.fetch.default_cache_dir`, i.e. ``$AGGLO_CACHE_DIR`` or ``~/.cache/agglo``).
numba keys each entry by the function's source file and its timestamp, so upgrading esda
recompiles.

Known limit: esda's ``crand.compute_chunk`` takes the statistic as a numba function argument;
numba types such an argument by the dispatcher's address, so that one kernel cannot be cached
and still compiles in every process (about 4 CPU-seconds).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["compile_cache_dir", "enable_esda_compile_cache"]

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
    folder = compile_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("numba compile cache off: cannot create %s (%s)", folder, exc)
        return 0
    # numba reads NUMBA_CACHE_DIR at import, but each cache's locator reads config.CACHE_DIR when
    # the cache is made: set it for these kernels only, other numba users keep their setting
    previous = config.CACHE_DIR
    config.CACHE_DIR = str(folder)
    count = 0
    try:
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "esda" or name.startswith("esda.")):
                continue
            for obj in list(vars(module).values()):
                if isinstance(obj, CPUDispatcher) and not isinstance(obj._cache, FunctionCache):
                    obj.enable_caching()
                    count += 1
    finally:
        config.CACHE_DIR = previous
    if count:
        log.debug("numba compile cache for %d esda kernels in %s", count, folder)
    return count
