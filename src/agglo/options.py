"""Stage options defined once: type, default, allowed values, unit and help text in one place.

Every stage's options are a frozen dataclass whose fields are made with :func:`option` and
which inherits :class:`Options`. The TOML section, the CLI flags and their ``--help`` are
derived from :meth:`Options.specs`; validation (types, choices, ranges) happens once, in
``__post_init__``, with one message format for every problem:

``<section>.<name> must be one of a, b, c; got 'x' (did you mean 'b'?)``

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class DemoOptions(Options):
...     section = "demo"
...     weights: str = option("queen", help="Spatial weights.", choices=("queen", "rook"))
...     k: int = option(6, help="Neighbours of the KNN weights.", minimum=1)
>>> DemoOptions.from_dict({"k": 4}).k
4
>>> DemoOptions(weights="qeen")
Traceback (most recent call last):
...
agglo.errors.ValidationError: [demo] options: 1 problem(s)
  - demo.weights must be one of queen, rook; got 'qeen' (did you mean 'queen'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, ClassVar

from agglo.errors import ValidationError

__all__ = ["RUN_SEED", "OptionSpec", "Options", "choice_problem", "did_you_mean", "option"]

#: seed of every random procedure of a run (permutation tests, restarts); ``[inputs] seed``
RUN_SEED = 20101115


def option(
    default: Any = MISSING,
    *,
    help: str,
    unit: str | None = None,
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    default_factory: Any = MISSING,
    cli: bool = True,
) -> Any:
    """A dataclass field carrying its help text, unit, allowed values and range.

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field` (use ``default_factory`` for mutable defaults).
    help
        One sentence for ``--help``, the TOML reference and the docs.
    unit
        Unit of the value (``"min"``, ``"km/h"``, ...), shown in the help.
    choices
        Allowed values; anything else is refused with the closest valid value.
    minimum, maximum
        Allowed range (inclusive; ``exclusive_minimum`` makes the lower bound strict).
    cli
        ``False`` keeps the option out of the derived CLI flags (TOML / API only).
    """
    meta = {
        "help": help,
        "unit": unit,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "cli": cli,
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """What one option is: everything the CLI, the TOML reader and the docs need."""

    name: str
    type: Any
    default: Any
    help: str
    unit: str | None
    choices: tuple[Any, ...] | None
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    cli: bool

    @property
    def flag(self) -> str:
        """The CLI flag, e.g. ``--access-speed-kmh``."""
        return "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """Help text with unit, allowed values and default."""
        parts = [self.help]
        if self.unit:
            parts.append(f"Unit: {self.unit}.")
        if self.choices:
            parts.append("One of: " + ", ".join(map(str, self.choices)) + ".")
        parts.append(f"Default: {self.default!r}.")
        return " ".join(parts)


def did_you_mean(word: Any, candidates: Iterable[Any]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``.

    Examples
    --------
    >>> did_you_mean("qeen", ["queen", "rook"])
    " (did you mean 'queen'?)"
    """
    words = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(word), words, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice_problem(name: str, value: Any, allowed: Sequence[Any]) -> str | None:
    """The one message for a value outside ``allowed`` (``None`` if it is allowed).

    Examples
    --------
    >>> choice_problem("autocorr.weights", "knn", ["queen", "knn"]) is None
    True
    >>> choice_problem("autocorr.weights", "quen", ["queen", "knn"])
    "autocorr.weights must be one of queen, knn; got 'quen' (did you mean 'queen'?)"
    """
    if value in allowed:
        return None
    return (
        f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}"
        f"{did_you_mean(value, allowed)}"
    )


def _type_problem(name: str, value: Any, hint: Any) -> str | None:
    """A message if ``value`` does not fit the (simple) annotation ``hint``; else ``None``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        probs = [_type_problem(name, value, a) for a in args if a is not type(None)]
        return None if any(p is None for p in probs) else probs[0]
    if hint is Any or hint is object:
        return None
    expected: tuple[type, ...]
    if hint is bool:
        ok = isinstance(value, bool)
        expected_name = "true or false"
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected_name = "an integer"
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected_name = "a number"
    elif hint is str:
        ok = isinstance(value, str)
        expected_name = "a string"
    elif origin in (tuple, list, Sequence) or hint in (tuple, list):
        ok = isinstance(value, list | tuple)
        expected_name = "a list"
    elif origin in (dict, Mapping) or hint in (dict,):
        ok = isinstance(value, Mapping)
        expected_name = "a table (mapping)"
    elif isinstance(hint, type):
        expected = (hint,)
        ok = isinstance(value, expected)
        expected_name = hint.__name__
    else:
        return None
    return None if ok else f"{name} must be {expected_name}; got {value!r}"


class Options:
    """Mixin for a stage's frozen options dataclass (see the module docstring).

    Subclasses set ``section`` (the TOML section and message prefix) and define their fields
    with :func:`option`. ``__post_init__`` validates every field and raises one
    :class:`~agglo.errors.ValidationError` listing all problems; subclasses add cross-field
    checks by overriding :meth:`extra_problems`.
    """

    section: ClassVar[str] = "options"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValidationError(problems, source=f"[{self.section}] options")

    def problems(self) -> list[str]:
        """Every problem of this set of options (empty when valid)."""
        hints = typing.get_type_hints(type(self))
        out: list[str] = []
        for spec in self.specs():
            value = getattr(self, spec.name)
            label = f"{self.section}.{spec.name}"
            problem = _type_problem(label, value, hints.get(spec.name, Any))
            if problem is None and spec.choices is not None and value is not None:
                problem = choice_problem(label, value, spec.choices)
            if problem is None and value is not None and not isinstance(value, bool):
                problem = _range_problem(label, value, spec)
            if problem:
                out.append(problem)
        if not out:
            out += self.extra_problems()
        return out

    def extra_problems(self) -> list[str]:
        """Cross-field checks of a subclass (default: none)."""
        return []

    @classmethod
    def specs(cls) -> list[OptionSpec]:
        """One :class:`OptionSpec` per field, in definition order."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            meta = f.metadata
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = None
            out.append(
                OptionSpec(
                    name=f.name,
                    type=hints.get(f.name, Any),
                    default=default,
                    help=meta.get("help", ""),
                    unit=meta.get("unit"),
                    choices=meta.get("choices"),
                    minimum=meta.get("minimum"),
                    maximum=meta.get("maximum"),
                    exclusive_minimum=bool(meta.get("exclusive_minimum", False)),
                    cli=bool(meta.get("cli", True)),
                )
            )
        return out

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None = None) -> Any:
        """Build from a mapping (a TOML section); unknown keys are refused with the closest name.

        Lists are turned into tuples where the field is a tuple.
        """
        options = dict(options or {})
        valid = [s.name for s in cls.specs()]
        problems = [
            f"{cls.section}.{k} is not an option{did_you_mean(k, valid)}; valid: {', '.join(valid)}"
            for k in options
            if k not in valid
        ]
        if problems:
            raise ValidationError(problems, source=f"[{cls.section}] options")
        hints = typing.get_type_hints(cls)
        for k, v in list(options.items()):
            if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
                options[k] = tuple(v)
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (recorded in every output's metadata)."""
        out = {}
        for spec in self.specs():
            v = getattr(self, spec.name)
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Mapping):
                v = dict(v)
            out[spec.name] = v
        return out

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _range_problem(label: str, value: Any, spec: OptionSpec) -> str | None:
    if not isinstance(value, int | float):
        return None
    lo, hi = spec.minimum, spec.maximum
    if lo is not None and (value <= lo if spec.exclusive_minimum else value < lo):
        op = ">" if spec.exclusive_minimum else ">="
        return f"{label} must be {op} {lo}; got {value!r}"
    if hi is not None and value > hi:
        return f"{label} must be <= {hi}; got {value!r}"
    return None
