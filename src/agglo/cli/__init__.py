"""The ``agglo`` command line: a thin layer that parses options and calls library functions.

Exit codes: 0 success, 1 unexpected error (a bug: please report it), 2 bad input (one-line
reason on stderr; ``--verbose`` shows the full message), 130 interrupted (Ctrl-C).

The console script (:func:`console`) ends the process without tearing the interpreter down
(:func:`quick_exit`), and the long commands call :func:`freeze_imported` before their work: a
command runs once, so the objects alive then are never freed anyway.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import logging
import os
import sys
import threading
from typing import NoReturn

import typer

from agglo._version import __version__
from agglo.errors import AggloInputError

__all__ = ["app", "console", "freeze_imported", "main", "quick_exit"]

#: sub-command modules of this package; each defines ``register(app)``
COMMAND_MODULES = (
    "run",
    "data",
    "index",
    "panel",
    "pm25",
    "roads",
    "hsr",
    "autocorr",
    "coreperiphery",
    "metro",
    "report",
)

app = typer.Typer(
    name="agglo",
    help="Measure the integration of China's urban agglomerations (城市群).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain literal [section] names, not markup
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agglo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug messages."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show warnings and errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    configure_logging(level)


class _OncePerRun(logging.Filter):
    """Pass each distinct message once: stages that re-read an input do not repeat its notes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def progress_wanted() -> bool:
    """Progress bars unless ``--quiet`` (the CLI's log level is above INFO)."""
    return logging.getLogger("agglo").getEffectiveLevel() <= logging.INFO


def configure_logging(level: int) -> None:
    """Send agglo's log records to stderr through rich (the CLI's choice, not the library's)."""
    from rich.logging import RichHandler

    root = logging.getLogger("agglo")
    for h in list(root.handlers):
        if isinstance(h, RichHandler):
            root.removeHandler(h)
    from rich.console import Console

    handler = RichHandler(
        console=Console(stderr=True), show_path=False, show_time=False, markup=False
    )
    handler.setLevel(level)
    handler.addFilter(_OncePerRun())
    root.addHandler(handler)
    root.setLevel(level)


for _name in COMMAND_MODULES:
    importlib.import_module(f"agglo.cli.{_name}").register(app)


def one_line(exc: AggloInputError) -> str:
    """The first problem of an input error on one line, then how many more there are."""
    problems = getattr(exc, "problems", None)
    if problems:
        more = len(problems) - 1
        tail = f"; and {more} more; --verbose lists them" if more else ""
        return f"{getattr(exc, 'source', 'input')}: {problems[0]}{tail}"
    lines = str(exc).splitlines() or [type(exc).__name__]
    return lines[0] + ("; --verbose shows the details" if len(lines) > 1 else "")


def _as_input_error(exc: BaseException) -> AggloInputError | None:
    """Errors from libraries or the file system that are the user's to fix, as input errors."""
    from pyproj.exceptions import CRSError as ProjCRSError

    if isinstance(exc, ProjCRSError):
        return AggloInputError(f"not a valid CRS ({exc}); give e.g. EPSG:4326 or EPSG:4490.")
    if isinstance(exc, PermissionError | IsADirectoryError | NotADirectoryError):
        where = f" {exc.filename}" if exc.filename else ""
        return AggloInputError(
            f"cannot use{where}: {exc.strerror or exc}; check the path and its permissions, "
            "or choose another --out."
        )
    if isinstance(exc, UnicodeDecodeError):
        return AggloInputError(
            f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``agglo`` console script; returns the exit code."""
    verbose = any(a in ("-v", "--verbose") for a in (argv or sys.argv[1:]))
    try:
        try:
            code = app(args=argv, standalone_mode=False)
        except (OSError, ValueError, RuntimeError) as exc:  # user errors raised by libraries
            converted = None if isinstance(exc, AggloInputError) else _as_input_error(exc)
            if converted is None:
                raise
            raise converted from exc
    except AggloInputError as exc:
        typer.echo(f"error: {exc if verbose else one_line(exc)}", err=True)
        return 2
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except typer.Abort:
        return 1
    except typer.TyperException as exc:  # usage errors: click prints them, exit code 2
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        return int(getattr(exc, "exit_code", 2))
    if code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit code 130
        typer.echo("interrupted: no output was replaced (outputs are written atomically)", err=True)
        return 130
    return 0


def freeze_imported() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``).

    For a command's process only, once its modules are imported: those objects live until the
    process ends, yet every full collection would walk them again, in this process and in every
    forked worker (where walking them also copies their memory pages; the Python docs recommend
    ``gc.freeze()`` before ``fork()`` for this reason). In a bundled ``agglo run`` this saves
    about 0.3 CPU-s of collections in the main process. Only in the console script's process
    (:func:`console`): where :func:`main` is called from Python (tests, notebooks), the
    caller's objects are left to the collector.
    """
    if _in_console:
        gc.freeze()


def quick_exit(code: int) -> NoReturn:
    """End the process with ``code`` after the exit handlers, without tearing the interpreter down.

    The exit handlers (:mod:`atexit`: logging's flush, multiprocessing's joins, temporary
    files) run and the standard streams are flushed; then :func:`os._exit` skips the
    interpreter's teardown, which after ``agglo run`` spends ~0.85 s freeing objects one by one
    and collecting garbage. Every output is written, closed and renamed into place before
    :func:`main` returns. While a non-daemon thread other than this one is running, the normal
    exit (which waits for it) is used instead.
    """
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if any(not t.daemon for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


#: True in the process of the console script (set by :func:`console`)
_in_console = False


def console() -> NoReturn:
    """The ``agglo`` console script and ``python -m agglo``: :func:`main`, then :func:`quick_exit`."""
    global _in_console
    _in_console = True
    quick_exit(main())


if __name__ == "__main__":  # pragma: no cover
    console()
