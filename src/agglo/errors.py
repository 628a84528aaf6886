"""Exceptions raised by agglo.

Every error a user can cause by giving bad input is an :class:`AggloInputError`
(a ``ValueError``): the CLI turns it into exit code 2 and a one-line reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

__all__ = [
    "AggloDataWarning",
    "AggloInputError",
    "CRSError",
    "MissingDependencyError",
    "OutputExistsError",
    "ValidationError",
]


class AggloInputError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class CRSError(AggloInputError):
    """A missing, wrong or geographic CRS where another one is needed."""


class MissingDependencyError(AggloInputError, ImportError):
    """An optional part of agglo is used but its extra is not installed.

    The message names the extra to install, e.g. ``pip install 'agglo[markov]'``.
    """


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``agglo[extra]``.

    Examples
    --------
    >>> require("json", "none", "parsing").__name__
    'json'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {module.split('.')[0]!r}: "
            f"pip install 'agglo[{extra}]'"
        ) from exc


class OutputExistsError(AggloInputError, FileExistsError):
    """An output exists and ``force`` was not given."""


class ValidationError(AggloInputError):
    """Several problems found while validating one input, reported together.

    Parameters
    ----------
    problems
        One message per problem; each names the file, row and column where known.
    source
        What was being validated (a file name or a description).
    """

    def __init__(self, problems: Iterable[str], source: str = "input") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: {len(self.problems)} problem(s)"
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        lines = [head, *(f"  - {p}" for p in shown)]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class AggloDataWarning(UserWarning):
    """Something in the data was dropped, imputed, rescaled, repaired or looks implausible.

    The message names the cities, rows or values concerned; the same items are listed in the
    outputs (e.g. ``panel_validation.csv``). The CLI prints every such warning.
    """
