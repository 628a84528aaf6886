"""Run a function in a forked child process, with its warnings, log records and errors.

Used by the pipeline (stages side by side) and by stages that split their own work across
processes; it lives at the package root so that any stage may import it.

The pipeline runs stages that do not need each other (after ``index``: ``autocorr``,
``coreperiphery``, ``metro``, ``disparity``) at the same time, one forked process each. A
fork inherits the parent's data (no pickling of the inputs); only the stage's output travels
back, pickled through a pipe. Everything the stage would have shown in the parent is shown
there, in order, when it finishes:

- Python warnings are recorded in the child (under the filters inherited from the parent, so
  ``error`` and ``ignore`` filters act as they would) and issued again in the parent with
  their category, message, file and line;
- log records are collected in the child and handled by the parent's loggers;
- an exception is raised again in the parent (with the child's traceback as its cause when it
  pickles, else as a :class:`ForkedError` holding the traceback text);
- Ctrl-C is handled by the parent alone (the children ignore SIGINT), which stops the children
  still running.

Forking is used only where it is safe and available: Linux (macOS's system libraries are not
fork-safe), the ``fork`` start method present. :func:`fork_available` says so.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import pickle
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = [
    "FORK_SAFE_THREADS",
    "ForkedCall",
    "ForkedError",
    "fork_available",
    "fork_obstacle",
    "wait_any",
]


class ForkedError(RuntimeError):
    """An exception in a forked child that could not be sent back as itself."""


def fork_available() -> bool:
    """Whether functions can run in forked children here (Linux with the ``fork`` start method).

    Examples
    --------
    >>> isinstance(fork_available(), bool)
    True
    """
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


#: name prefixes of the threads that may run beside a fork: they hold no lock a forked child
#: needs. zonal_pm25's validity check (GEOS only), the core-periphery eigh helper (idle
#: between calls, never used by a child), tqdm's monitor (tqdm's own lock only) and
#: dask.distributed's offload pool (idle but for a Client's serialisation, never used by a
#: child; it outlives every Client, so one Client once in a session would otherwise stop
#: every later split). Threads reading rasters (HDF5 holds a lock) are never among them.
FORK_SAFE_THREADS = ("agglo-valid", "agglo-eigh", "tqdm_monitor", "Dask-Offload")


def fork_obstacle(*, children: bool = True) -> str | None:
    """Why this process should not fork a helper child now, or None when it may.

    The rule every stage that splits its own work across processes follows: Linux with the
    ``fork`` start method (:func:`fork_available`); not from a daemonic process (the
    pipeline runs stages side by side in daemonic children, which may not have children and
    whose sibling takes the other core); from the main thread, with no other thread running
    but those of :data:`FORK_SAFE_THREADS` (a child inherits the locks other threads hold and
    could hang on them); with ``children=False``, also not while this process has children
    at work (its cores are taken). Whether the split pays (cores, load, size) is the
    caller's to decide.

    Examples
    --------
    >>> fork_obstacle() is None or isinstance(fork_obstacle(), str)
    True
    """
    if not fork_available():
        return "no fork start method on this platform"
    if multiprocessing.current_process().daemon:
        return "already in a daemonic worker process"
    if threading.current_thread() is not threading.main_thread():
        return "not called from the main thread"
    others = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread()
        and t.is_alive()
        and not t.name.startswith(FORK_SAFE_THREADS)
    ]
    if others:
        return f"other thread(s) running: {', '.join(others)}"
    if not children and multiprocessing.active_children():
        return "this process has children at work"
    return None


class _Collect(logging.Handler):
    """Keeps each record reaching a handler of the child once, made picklable."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []
        # the records seen, kept alive: the id of a record freed could be reused by the next
        self._seen: dict[int, logging.LogRecord] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) not in self._seen:  # a record reaches every handler up the hierarchy
            self._seen[id(record)] = record
            self.records.append(logging.handlers.QueueHandler.prepare(self, record))  # type: ignore[arg-type]

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def _collect_records() -> _Collect:
    """Put one collector in place of every handler of the child's loggers.

    The handlers (a console, a file) stay the parent's: the parent handles the records again
    through the same loggers, so they go where they would have gone, filtered as they would
    have been.
    """
    collect = _Collect()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger) and logger.handlers:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.addHandler(collect)
    return collect


def _child(fn: Callable[..., Any], args: tuple, kwargs: dict, conn: Connection) -> None:
    # Ctrl-C is the parent's to handle: it stops the children (SIGINT was blocked at the fork)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    collect = _collect_records()
    with warnings.catch_warnings(record=True) as caught:
        try:
            outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # sent to the parent, raised there
            outcome = ("error", (exc, traceback.format_exc()))
    shown = [(w.message, w.category, w.filename, w.lineno) for w in caught]
    try:
        payload = pickle.dumps((outcome, shown, collect.records), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # e.g. an unpicklable result or warning
        tb = outcome[1][1] if outcome[0] == "error" else ""
        text = f"the child's result could not be sent back ({type(exc).__name__}: {exc}){tb}"
        texts = [(str(m), UserWarning, f, n) for m, _c, f, n in shown]
        payload = pickle.dumps((("unsent", text), texts, collect.records))
    conn.send_bytes(payload)
    conn.close()


@dataclass
class ForkedCall:
    """``fn(*args, **kwargs)`` running in a forked child; :meth:`result` collects it.

    Examples
    --------
    >>> if fork_available():
    ...     call = ForkedCall.start(sum, [1, 2, 3])
    ...     call.result()
    ... else:
    ...     6
    6
    """

    process: Any
    conn: Connection
    name: str = ""

    @classmethod
    def start(cls, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> ForkedCall:
        """Fork a child running ``fn(*args, **kwargs)``."""
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(fn, args, kwargs, send), daemon=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        send.close()
        return cls(proc, recv, name)

    def result(self) -> Any:
        """Wait for the child; replay its log records and warnings; return or raise its outcome.

        Raises
        ------
        Exception
            The child's own exception (or :class:`ForkedError` when it could not be sent,
            or when the child died without answering, e.g. killed for lack of memory).
        """
        try:
            data = self.conn.recv_bytes()
        except EOFError:
            self.process.join()
            raise ForkedError(
                f"the worker process of stage {self.name} died without a result "
                f"(exit code {self.process.exitcode}); run with --workers 1 to see why"
            ) from None
        finally:
            self.conn.close()
        self.process.join()
        (kind, value), shown, records = pickle.loads(data)
        for record in records:
            logging.getLogger(record.name).handle(record)
        for message, category, filename, lineno in shown:
            warnings.warn_explicit(message, category, filename, lineno)
        if kind == "ok":
            return value
        if kind == "unsent":
            raise ForkedError(value)
        exc, tb = value
        raise exc from ForkedError(f"in the worker process of stage {self.name}:\n{tb}")

    def kill(self) -> None:
        """Stop the child (e.g. when another stage failed)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def wait_any(calls: list[ForkedCall]) -> ForkedCall:
    """The first of ``calls`` whose child has sent its result (blocks until one has)."""
    ready = wait([c.conn for c in calls])
    return next(c for c in calls if c.conn in ready)
