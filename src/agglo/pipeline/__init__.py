"""``agglo run``: the stages as a table (name, function, needs, options), composed in order.

Every stage's options are built before the first stage runs, so a bad option anywhere fails
the run at once. Each stage gets the results of the stages it needs; its result is collected in
:class:`~agglo.outputs.run.RunOutputs` and written by the :data:`OUTPUT_STEPS` (maps, files,
report). ``agglo <stage>`` runs the same table up to that stage (:func:`run_stages`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from agglo._cores import usable_cores
from agglo._forked import ForkedCall, fork_available, wait_any
from agglo._validate import check_run_config, stage_options
from agglo.analysis.autocorr import AutocorrOptions
from agglo.analysis.coreperiphery import CorePeripheryOptions
from agglo.analysis.index import IndexOptions
from agglo.analysis.metro.options import MetroOptions
from agglo.analysis.regional import RegionalOptions
from agglo.config import RunConfig
from agglo.errors import AggloInputError, OutputExistsError
from agglo.measures.hsr import HSROptions
from agglo.measures.pm25 import PM25Options
from agglo.measures.roads import RoadsOptions
from agglo.outputs.run import OUTPUT_STEPS, RunOutputs, write_run_folder
from agglo.pipeline import stages as s
from agglo.pipeline.core import Stage, StageOutput
from agglo.results import StageResult

__all__ = ["OUTPUT_STEPS", "STAGES", "RunOutputs", "Stage", "StageOutput", "run", "run_stages"]

log = logging.getLogger(__name__)


#: the stages in data-flow order (DESIGN.md architecture)
STAGES: tuple[Stage, ...] = (
    Stage("inputs", s.inputs_stage),
    Stage("pm25", s.pm25_stage, ("inputs",), PM25Options.from_dict),
    Stage("roads", s.roads_stage, ("inputs",), RoadsOptions.from_dict),
    Stage("hsr", s.hsr_stage, ("inputs",), HSROptions.from_dict),
    Stage("panel", s.panel_stage, ("inputs", "pm25?", "roads?", "hsr?")),
    Stage("index", s.index_stage, ("inputs", "panel"), IndexOptions.from_dict),
    Stage(
        "autocorr",
        s.autocorr_stage,
        ("inputs", "index"),
        AutocorrOptions.from_dict,
        preload=("libpysal", "esda"),
    ),
    Stage(
        "coreperiphery",
        s.coreperiphery_stage,
        ("inputs", "panel"),
        CorePeripheryOptions.from_dict,
        progress=True,
        skip_on_input_error=True,
    ),
    Stage("metro", s.metro_stage, ("inputs", "panel?"), MetroOptions.from_dict, progress=True),
    Stage(
        "disparity",
        s.disparity_stage,
        ("inputs", "panel", "index?"),
        RegionalOptions.from_sections,
        section=("coordination", "disparity", "convergence", "autocorr"),
        preload=("libpysal", "spreg"),
    ),
)


def _closure(targets: Iterable[str], given: Iterable[str] = ()) -> list[str]:
    """The stages ``targets`` need (optional needs too; not those of ``given``), in table order."""
    by_name = {st.name: st for st in STAGES}
    unknown = [t for t in targets if t not in by_name]
    if unknown:
        raise AggloInputError(f"unknown stage(s) {unknown}; valid: {', '.join(by_name)}.")
    wanted: set[str] = set()
    todo = list(targets)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            if name not in given:
                todo += [n.rstrip("?") for n in by_name[name].needs]
    return [st.name for st in STAGES if st.name in wanted]


def _preload(stage: Stage) -> None:
    """Import the :attr:`Stage.preload` modules of ``stage`` that are not imported yet."""
    for module in stage.preload:
        if module not in sys.modules:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)


def run_stages(
    config: RunConfig,
    targets: Iterable[str] | None = None,
    *,
    out_dir: str | Path = "outputs",
    force: bool = False,
    given: Mapping[str, StageOutput] | None = None,
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
    strict: Iterable[str] = (),
    workers: int | None = None,
) -> RunOutputs:
    """Run the stages ``targets`` need (default: all) and collect their outputs.

    Stages that do not need each other (after ``index``: ``autocorr``, ``coreperiphery``,
    ``metro`` and ``disparity``) run at the same time, each in a forked process
    (:mod:`agglo._forked`), when ``workers`` allows more than one; their warnings and
    log lines are shown when each finishes, and their outputs are collected in table order,
    so the results are those of a run one stage after the other.

    Parameters
    ----------
    config
        Paths and options of the run.
    targets
        Stage names (see :data:`STAGES`); the stages they need run first.
    given
        Stage outputs supplied by the caller instead of running those stages (e.g. city scores
        read from a file for ``index``).
    options
        Already validated options per stage (default: built from ``config``).
    progress
        Show progress bars in the stages that have them (stages running side by side show
        none: their bars would overwrite each other; the stage lines are logged).
    strict
        Stages whose input errors are raised even where a full run skips them.
    workers
        Stages run at the same time at most (default: the cores this process may use; 1: one
        after the other). Without ``fork`` (not Linux) stages run one after the other.
    """
    opts = dict(options) if options is not None else stage_options(config)
    outputs = RunOutputs(config=config, out_dir=Path(out_dir), force=force)
    done: dict[str, StageOutput | None] = dict(given or {})
    by_name = {st.name: st for st in STAGES}
    order = _closure(targets or by_name, done)
    if workers is not None and workers < 1:
        raise AggloInputError(f"workers must be >= 1; got {workers}.")
    slots = (workers or usable_cores()) if fork_available() else 1
    strict = set(strict)
    step = {name: i for i, name in enumerate(order, 1)}
    started: dict[str, float] = {}
    running: list[ForkedCall] = []

    def ready() -> list[str]:
        return [
            n
            for n in order
            if n not in done
            and n not in started
            and all(m.rstrip("?") in done for m in by_name[n].needs)
        ]

    def call(name: str, *, side_by_side: bool):
        st = by_name[name]
        missing = [n for n in st.needs if not n.endswith("?") and done.get(n) is None]
        if missing:
            log.info("stage %s skipped: no %s", name, ", ".join(missing))
            return None
        kwargs = {n.rstrip("?"): getattr(done.get(n.rstrip("?")), "result", None) for n in st.needs}
        if st.progress:
            kwargs["progress"] = progress and not side_by_side
        started[name] = time.perf_counter()
        log.info("[%d/%d] stage %s ...", step[name], len(order), name)
        return st.function, (config, opts.get(name)), kwargs

    def finish(name: str, run_it: Callable[[], Any]) -> None:
        try:
            out = run_it()
            out = StageOutput.of(out) if isinstance(out, StageResult) else out
        except AggloInputError as exc:
            if not by_name[name].skip_on_input_error or name in strict:
                raise
            log.warning("stage %s skipped: %s", name, exc)
            out = None
        done[name] = out
        log.info(
            "[%d/%d] stage %s done in %.1f s",
            step[name],
            len(order),
            name,
            time.perf_counter() - started[name],
        )

    try:
        while any(n not in done for n in order):
            waiting = ready()
            side_by_side = slots > 1 and len(waiting) + len(running) > 1
            for name in waiting[: slots - len(running) if side_by_side else 1]:
                job = call(name, side_by_side=side_by_side)
                if job is None:
                    done[name] = None
                    continue
                fn, args, kwargs = job
                if side_by_side:  # imported here, the modules serve stages forked later too
                    _preload(by_name[name])
                    running.append(ForkedCall.start(fn, *args, name=name, **kwargs))
                else:
                    finish(name, functools.partial(fn, *args, **kwargs))
            if running:
                first = wait_any(running)
                running.remove(first)
                finish(first.name, first.result)
    finally:
        for other in running:  # an error stops the stages still running beside it
            other.kill()
    for name in order:  # collected in table order, whatever order they finished in
        if done.get(name) is not None:
            outputs.add(name, done[name])
    return outputs


def run(
    config: RunConfig | None = None,
    out_dir: str | Path = "outputs",
    *,
    force: bool = False,
    stages: tuple[str, ...] | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> RunOutputs:
    """Run the whole job and return its outputs (layers, tables, results, figures).

    Parameters
    ----------
    config
        Paths and options; defaults use the bundled (partly synthetic) demo data.
    out_dir
        Output folder, written atomically: staged beside it and swapped in whole with a
        ``run.json`` manifest (:func:`agglo.outputs.writers.run_folder`).
    force
        Replace an existing run folder (required when ``out_dir`` holds outputs).
    stages
        Subset of the stage and output-step names to run (with the stages they need).
    progress
        Show progress bars inside the long stages (the stage counter is logged at INFO).
    workers
        Stages run side by side at most (default: the usable cores; 1: one after the other);
        see :func:`run_stages`.
    """
    config = config or RunConfig()
    out = Path(out_dir)
    options = check_run_config(config)  # the whole config is checked before any work
    steps = list(OUTPUT_STEPS)
    targets = [t for t in (stages or [st.name for st in STAGES]) if t not in steps]
    kwargs = {"force": force, "options": options, "progress": progress, "workers": workers}
    if stages is not None and not set(stages) & set(steps):  # nothing is written
        if out.exists() and any(out.iterdir()) and not force:
            raise OutputExistsError(
                f"output folder {out} is not empty; pass --force to replace its files "
                "or choose another --out."
            )
        return run_stages(config, targets, out_dir=out, **kwargs)
    return write_run_folder(
        lambda staging: run_stages(config, targets, out_dir=staging, **kwargs),
        out,
        config=config,
        force=force,
        steps=stages,
    )
