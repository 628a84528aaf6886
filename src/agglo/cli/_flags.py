"""CLI flags derived from a stage's options dataclass: one definition of every option.

:func:`option_flags` adds one typer option per field of an :class:`agglo.options.Options`
class (flag ``--field-name``, help text, unit, choices and default taken from the field). The
command then receives ``given``: the options typed on the command line, per section, to be laid
over the ``[section]`` of ``--config`` and validated by the dataclass itself. Flags that were
not typed are not in ``given``, so the config file (or the dataclass default) applies.

Sequences are typed as comma-separated text (``--bands 15,30,60``); booleans as
``--flag/--no-flag``. Mappings have no flag (TOML only).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer

from agglo.errors import AggloInputError
from agglo.options import Options, OptionSpec

__all__ = ["FLAGS_ATTR", "flag_default", "option_flags", "parse_flag", "stage_options"]

#: attribute of a decorated command: parameter name -> (options class, spec)
FLAGS_ATTR = "agglo_option_flags"

_SCALARS = (bool, int, float, str)
_CONTEXT = "agglo_click_context"


def _parts(hint: Any) -> tuple[type | None, bool]:
    """``(scalar, is_sequence)`` of an option's annotation, or ``(None, False)`` (no flag)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_parts(a) for a in typing.get_args(hint) if a is not type(None)]
        seqs = [p for p in parts if p[1]]
        return seqs[0] if seqs else parts[0]
    if origin in (tuple, list, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return (args[0] if args and args[0] in _SCALARS else str), True
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return None, False
    return (hint if hint in _SCALARS else str), False


def parse_flag(spec: OptionSpec, value: Any) -> Any:
    """The option value for what was typed after ``spec.flag`` (text for sequences).

    Examples
    --------
    >>> from agglo.measures.hsr import HSROptions
    >>> spec = {s.name: s for s in HSROptions.specs()}["min_speed_kmh"]
    >>> parse_flag(spec, 300.0)
    300.0
    """
    scalar, sequence = _parts(spec.type)
    if not sequence or value is None or not isinstance(value, str):
        return value
    items = [v.strip() for v in value.split(",") if v.strip()]
    single_text_ok = str in typing.get_args(spec.type) and len(items) == 1 and "," not in value
    if single_text_ok:
        return items[0]
    try:
        return tuple(scalar(v) for v in items)  # type: ignore[misc]
    except ValueError:
        raise AggloInputError(
            f"{spec.flag} must be comma-separated {scalar.__name__} values; got {value!r}"  # type: ignore[union-attr]
        ) from None


def flag_default(spec: OptionSpec) -> Any:
    """The default shown and used by the flag: the dataclass default (sequences as text)."""
    _, sequence = _parts(spec.type)
    d = spec.default
    if sequence and isinstance(d, list | tuple):
        return ",".join(map(str, d))
    return d


def _parameter(spec: OptionSpec) -> inspect.Parameter | None:
    scalar, sequence = _parts(spec.type)
    if scalar is None:
        return None
    if scalar is bool and not sequence:
        decls = [f"{spec.flag}/--no-{spec.flag[2:]}"]
    else:
        decls = [spec.flag]
    annotation: Any = str if sequence else scalar
    if spec.default is None:
        annotation = annotation | None
    info = typer.Option(flag_default(spec), *decls, help=spec.describe(), show_default=False)
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation
    )


def option_flags(*classes: type[Options]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding the fields of ``classes`` as flags of a typer command.

    The command takes a keyword ``given: dict[str, dict[str, Any]]`` (section -> options typed
    on the command line); its own parameters come first in ``--help``.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "given"
        ]
        taken = {p.name for p in own}
        flags: dict[str, tuple[type[Options], OptionSpec]] = {}
        extra = []
        for cls in classes:
            for spec in cls.specs():
                param = _parameter(spec) if spec.cli else None
                if param is None:
                    continue
                if spec.name in taken or spec.name in flags:
                    raise TypeError(f"{fn.__name__}: flag {spec.flag} defined twice")
                flags[spec.name] = (cls, spec)
                extra.append(param)

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            ctx = kwargs.pop(_CONTEXT)
            given: dict[str, dict[str, Any]] = {cls.section: {} for cls in classes}
            for name, (cls, spec) in flags.items():
                value = kwargs.pop(name)
                source = ctx.get_parameter_source(name)
                if getattr(source, "name", "") in ("COMMANDLINE", "ENVIRONMENT"):
                    given[cls.section][spec.name] = parse_flag(spec, value)
            return fn(**kwargs, given=given)

        context = inspect.Parameter(
            _CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
        )
        params = [*own, *extra, context]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        setattr(command, FLAGS_ATTR, flags)
        return command

    return decorate


def stage_options(cls: type[Options], section: Mapping[str, Any], given: Mapping[str, Any]) -> Any:
    """``cls`` built from a config ``section`` with the typed flags laid over it (validated).

    Examples
    --------
    >>> from agglo.measures.hsr import HSROptions
    >>> stage_options(HSROptions, {"rule": "type"}, {"hsr": {"min_speed_kmh": 300.0}})
    HSROptions(station_to_city=None, min_speed_kmh=300.0, rule='type', encoding=None)
    """
    return cls.from_dict({**section, **given.get(cls.section, {})})
