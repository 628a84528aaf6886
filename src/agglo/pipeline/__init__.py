"""``agglo run``: the stages as a table (name, function, needs, options), composed in order.

Every stage's options are built from its config section before the first stage runs, so a
bad option anywhere fails the run at once. Each stage gets the results of the stages it
needs and returns a :class:`~agglo.pipeline.core.StageOutput`; the outputs are collected in
:class:`~agglo.pipeline.core.RunOutputs`, from which the maps, the files and the report are
written (:func:`agglo.outputs.maps.draw_maps`, :func:`agglo.outputs.writers.write_run`,
:func:`agglo.outputs.report.build_report`).

``agglo <stage>`` runs the same table up to that stage (:func:`run_stages`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agglo.analysis.autocorr import AutocorrOptions
from agglo.analysis.coreperiphery import CorePeripheryOptions
from agglo.analysis.index import IndexOptions
from agglo.analysis.metro.options import MetroOptions
from agglo.config import RunConfig
from agglo.errors import AggloInputError, OutputExistsError, ValidationError
from agglo.measures.hsr import HSROptions
from agglo.measures.pm25 import PM25Options
from agglo.measures.roads import RoadsOptions
from agglo.outputs.report import ReportOptions
from agglo.pipeline import stages as s
from agglo.pipeline.core import RunOutputs, Stage, StageOutput

__all__ = ["OUTPUT_STEPS", "STAGES", "RunOutputs", "Stage", "StageOutput", "run", "run_stages"]

log = logging.getLogger(__name__)


def _disparity_options(
    coordination: Mapping[str, Any],
    disparity: Mapping[str, Any],
    convergence: Mapping[str, Any],
    autocorr: Mapping[str, Any],
) -> tuple[Any, Any, Any, str]:
    """The options of the three analyses and the spatial weights kind (``[autocorr] weights``)."""
    from agglo.analysis.autocorr import AutocorrOptions
    from agglo.analysis.convergence import ConvergenceOptions
    from agglo.analysis.coordination import CoordinationOptions
    from agglo.analysis.disparity import DisparityOptions

    return (
        CoordinationOptions.from_dict(coordination),
        DisparityOptions.from_dict(disparity),
        ConvergenceOptions.from_dict(convergence),
        str(autocorr.get("weights", AutocorrOptions().weights)),
    )


def _plot_options(section: Mapping[str, Any]) -> Any:
    from agglo.outputs.maps import PlotOptions

    return PlotOptions.from_dict(section)


#: the stages in data-flow order (DESIGN.md architecture)
STAGES: tuple[Stage, ...] = (
    Stage("inputs", s.load_inputs),
    Stage("pm25", s.pm25_stage, ("inputs",), PM25Options.from_dict),
    Stage("roads", s.roads_stage, ("inputs",), RoadsOptions.from_dict),
    Stage("hsr", s.hsr_stage, ("inputs",), HSROptions.from_dict),
    Stage("panel", s.panel_stage, ("inputs", "pm25?", "roads?", "hsr?")),
    Stage("index", s.index_stage, ("inputs", "panel"), IndexOptions.from_dict),
    Stage("autocorr", s.autocorr_stage, ("inputs", "index"), AutocorrOptions.from_dict),
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
        _disparity_options,
        section=("coordination", "disparity", "convergence", "autocorr"),
    ),
)
#: steps after the stages, on the collected outputs: (name, config section, options parser)
OUTPUT_STEPS = (
    ("maps", "plot", _plot_options),
    ("write", None, None),
    ("report", "report", ReportOptions.from_dict),
)


def stage_options(config: RunConfig) -> dict[str, Any]:
    """Every stage's options from its config section, all problems raised together."""
    problems: list[str] = []
    options: dict[str, Any] = {}
    parsers = [(st.name, st.config_section, st.options) for st in STAGES] + list(OUTPUT_STEPS)
    for name, section, parse in parsers:
        if parse is None or section is None:
            continue
        names = (section,) if isinstance(section, str) else section
        try:
            options[name] = parse(*(config.section(n) for n in names))
        except ValidationError as exc:
            problems += exc.problems
        except AggloInputError as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError(problems, source="run configuration")
    return options


def _closure(targets: Iterable[str], given: Iterable[str] = ()) -> list[str]:
    """The stages needed for ``targets`` (with every optional need), in table order.

    The needs of ``given`` stages (supplied by the caller) are not followed.
    """
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
) -> RunOutputs:
    """Run the stages ``targets`` need (default: all) and collect their outputs.

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
        Show progress bars in the stages that have them.
    strict
        Stages whose input errors are raised even where a full run skips them.
    """
    opts = dict(options) if options is not None else stage_options(config)
    outputs = RunOutputs(config=config, out_dir=Path(out_dir), force=force)
    done: dict[str, StageOutput | None] = dict(given or {})
    by_name = {st.name: st for st in STAGES}
    order = _closure(targets or by_name, done)
    for step, name in enumerate(order, 1):
        st = by_name[name]
        if name in done:
            if done[name] is not None:
                outputs.add(name, done[name])
            continue
        missing = [n for n in st.needs if not n.endswith("?") and done.get(n) is None]
        if missing:
            log.info("stage %s skipped: no %s", name, ", ".join(missing))
            done[name] = None
            continue
        kwargs = {n.rstrip("?"): getattr(done.get(n.rstrip("?")), "result", None) for n in st.needs}
        if st.progress:
            kwargs["progress"] = progress
        start = time.perf_counter()
        log.info("[%d/%d] stage %s ...", step, len(order), name)
        try:
            done[name] = out = st.function(config, opts.get(name), **kwargs)
        except AggloInputError as exc:
            if not st.skip_on_input_error or name in strict:
                raise
            log.warning("stage %s skipped: %s", name, exc)
            done[name] = out = None
        log.info(
            "[%d/%d] stage %s done in %.1f s", step, len(order), name, time.perf_counter() - start
        )
        if out is not None:
            outputs.add(name, out)
            if name == "inputs":
                outputs.cities, outputs.counties = out.result.cities, out.result.counties
    return outputs


def run(
    config: RunConfig | None = None,
    out_dir: str | Path = "outputs",
    *,
    force: bool = False,
    stages: tuple[str, ...] | None = None,
    progress: bool = False,
) -> RunOutputs:
    """Run the whole job and return its outputs (layers, tables, results, figures).

    Parameters
    ----------
    config
        Paths and options; defaults use the bundled (partly synthetic) demo data.
    out_dir
        Output folder. If it already holds agglo outputs, ``force`` is required. A run that
        writes is staged in a sibling folder and swapped in whole at the end, with a
        ``run.json`` manifest (see :func:`agglo.outputs.writers.run_folder`); an interrupted
        run leaves the previous output as it was.
    force
        Replace an existing run folder (as a whole).
    stages
        Subset of the stage and output-step names to run (with the stages they need).
    progress
        Show progress bars inside the long stages (the stage counter is logged at INFO).
    """
    from agglo._validate import check_run_config
    from agglo.outputs.provenance import portable
    from agglo.outputs.writers import run_folder

    config = config or RunConfig()
    out = Path(out_dir)
    options = check_run_config(config)  # the whole config is checked before any work
    steps = [n for n, _, _ in OUTPUT_STEPS]
    targets = [t for t in (stages or [st.name for st in STAGES]) if t not in steps]
    if stages is not None and not set(stages) & set(steps):  # nothing is written
        if out.exists() and any(out.iterdir()) and not force:
            raise OutputExistsError(
                f"output folder {out} is not empty; pass --force to replace its files "
                "or choose another --out."
            )
        return run_stages(
            config, targets, out_dir=out, force=force, options=options, progress=progress
        )
    recorded = {k: portable(v) if isinstance(v, str) else v for k, v in config.to_dict().items()}
    # the run folder is written beside `out` and swapped in whole, manifest (run.json) last
    with run_folder(out, force=force, config=recorded) as staging:
        outputs = run_stages(
            config, targets, out_dir=staging, force=force, options=options, progress=progress
        )
        _write_outputs(outputs, stages)
    outputs.out_dir = out
    outputs.summary = [line.replace(str(staging), str(out)) for line in outputs.summary]
    outputs.figures = [out / Path(f).relative_to(staging) for f in outputs.figures]
    return outputs


def _write_outputs(outputs: RunOutputs, stages: tuple[str, ...] | None) -> None:
    steps = {"maps": draw_maps, "write": write_outputs, "report": write_run_report}
    for name, step in steps.items():
        if stages is not None and name not in stages:
            continue
        if name == "write" and outputs.synthetic:
            outputs.summary.append(
                "[SYNTHETIC] marks results computed from synthetic inputs: "
                f"{', '.join(sorted(outputs.synthetic))}. They illustrate the method; they are "
                "not findings about the agglomerations."
            )
        step(outputs)


def draw_maps(outputs: RunOutputs, options: Any = None) -> None:
    """The ``maps`` step: figures into ``out_dir/maps`` and a QGIS style per layer."""
    from agglo.outputs.maps import draw_maps as draw

    result = draw(
        outputs.layers,
        outputs.out_dir / "maps",
        counties=outputs.layers.get("counties", outputs.counties),
        index=outputs.results.get("index"),
        regional=outputs.results.get("disparity"),
        units={k: m.get("units", {}) for k, m in outputs.layer_metadata.items()},
        synthetic=outputs.synthetic,
        options=options or _plot_options(outputs.config.section("plot")),
        force=outputs.force,
    )
    outputs.styles.update(result.styles)
    outputs.figures.extend(result.figures)
    outputs.results["maps"] = {
        "captions": result.captions,
        "failed": result.failed,
        "options": result.options,
    }
    outputs.summary += [outputs.label(line) for line in result.summary_lines()]


def write_outputs(outputs: RunOutputs) -> None:
    """The ``write`` step: every layer and table of the run, atomically."""
    from agglo.outputs.writers import write_run

    files = write_run(
        outputs.out_dir,
        outputs.layers,
        outputs.tables,
        data_status=outputs.data_status,
        metadata={
            "synthetic_inputs": sorted(outputs.synthetic),
            "config": outputs.config.to_dict(),
            "provenance": outputs.provenance,
        },
        layer_metadata=outputs.layer_metadata,
        styles=outputs.styles,
        force=outputs.force,
    )
    outputs.summary += [outputs.label(line) for line in files.summary_lines()]


def write_run_report(outputs: RunOutputs) -> None:
    """The ``report`` step: :func:`agglo.outputs.report.build_report` on the run's outputs."""
    from agglo.outputs.report import build_report, bundled_census, describe_layers

    result = build_report(
        outputs.out_dir / "report.html",
        outputs.tables,
        ReportOptions.from_dict(outputs.config.section("report")),
        cities=outputs.layers.get("cities", outputs.cities),
        census=bundled_census(),
        figures=[f for f in outputs.figures if f.is_file()],
        captions=outputs.results.get("maps", {}).get("captions", {}),
        config=outputs.config.to_dict(),
        provenance=outputs.provenance,
        synthetic=outputs.synthetic,
        summary=[*outputs.summary],
        layers=describe_layers(outputs.layers),
        force=outputs.force,
    )
    outputs.summary += [outputs.label(line) for line in result.summary_lines()]
