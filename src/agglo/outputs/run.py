"""The outputs a run collects from its stages, and the steps that write them.

:class:`RunOutputs` gathers every stage's tables, layers, metadata and summary lines;
:func:`draw_maps` (figures and QGIS styles), :func:`write_outputs` (GeoPackage, shapefiles,
CSV) and :func:`write_run_report` (``report.html``) turn it into files. ``agglo run`` calls
them in that order (:func:`write_steps`); ``agglo report`` rebuilds the report alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from agglo.config import RunConfig
from agglo.outputs.maps import PlotOptions
from agglo.outputs.report import ReportOptions

if TYPE_CHECKING:
    from agglo.pipeline.core import StageOutput

__all__ = [
    "OUTPUT_STEPS",
    "RunOutputs",
    "draw_maps",
    "write_outputs",
    "write_run_folder",
    "write_run_report",
    "write_steps",
]


@dataclass
class RunOutputs:
    """Everything a run writes, collected from the stage outputs (read by maps, write, report).

    Analysis stages never read this: they get the results they need from the pipeline table.
    """

    config: RunConfig
    out_dir: Path
    force: bool = False
    cities: gpd.GeoDataFrame | None = None
    counties: gpd.GeoDataFrame | None = None
    results: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageOutput] = field(default_factory=dict)
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    layer_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    styles: dict[str, str] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    synthetic: set[str] = field(default_factory=set)
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def panel(self) -> pd.DataFrame | None:
        """The analysis panel (with computed indicators), else the panel as read."""
        return self.results.get("panel", getattr(self.results.get("inputs"), "panel", None))

    @property
    def years(self) -> list[int]:
        """The years of the run."""
        return list(getattr(self.results.get("inputs"), "years", []))

    @property
    def data_status(self) -> str:
        """``"synthetic"`` if any synthetic input was used, else ``"real"``."""
        return "synthetic" if self.synthetic else "real"

    def label(self, text: str) -> str:
        """Prefix ``text`` with a SYNTHETIC marker when the run used synthetic data."""
        return f"[SYNTHETIC] {text}" if self.synthetic else text

    def add(self, name: str, out: StageOutput) -> None:
        """Collect one stage's output (the cities layer gains its ``city_columns``)."""
        self.results[name] = out.result
        self.stages[name] = out
        if name == "inputs":  # the run's boundaries, for the output steps
            self.cities = getattr(out.result, "cities", None)
            self.counties = getattr(out.result, "counties", None)
        self.synthetic |= out.synthetic
        self.provenance.update(out.provenance)
        self.tables.update(out.tables)
        self.layers.update(out.layers)
        for key, meta in out.layer_metadata.items():
            self.layer_metadata[key] = {**self.layer_metadata.get(key, {}), **meta}
        if out.city_columns and "cities" in self.layers:
            cities = self.layers["cities"]
            cols = {k: cities["adcode"].map(v) for k, v in out.city_columns.items()}
            self.layers["cities"] = cities.assign(**cols)
            md = self.layer_metadata.setdefault("cities", {})
            md["units"] = {**md.get("units", {}), **out.city_units}
        self.summary += [self.label(s) for s in out.summary] + out.notes


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
        options=options or PlotOptions.from_dict(outputs.config.section("plot")),
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


#: the output steps of a run, in order: name -> (step, config section, options parser); the
#: options are validated with every stage's before the run starts
OUTPUT_STEPS: dict[str, tuple[Callable[[RunOutputs], None], str | None, Callable | None]] = {
    "maps": (draw_maps, "plot", PlotOptions.from_dict),
    "write": (write_outputs, None, None),
    "report": (write_run_report, "report", ReportOptions.from_dict),
}


def write_steps(outputs: RunOutputs, steps: Iterable[str] | None = None) -> None:
    """Run the output steps (all, or those named in ``steps``) on the collected outputs."""
    for name, (step, _, _) in OUTPUT_STEPS.items():
        if steps is not None and name not in steps:
            continue
        if name == "write" and outputs.synthetic:
            outputs.summary.append(
                "[SYNTHETIC] marks results computed from synthetic inputs: "
                f"{', '.join(sorted(outputs.synthetic))}. They illustrate the method; they are "
                "not findings about the agglomerations."
            )
        step(outputs)


def write_run_folder(
    collect: Callable[[Path], RunOutputs],
    out: str | Path,
    *,
    config: RunConfig,
    force: bool = False,
    steps: Iterable[str] | None = None,
) -> RunOutputs:
    """Collect a run's outputs into a staging folder, write them, and swap the folder into ``out``.

    ``collect(staging)`` runs the stages; then the output steps write into the staging folder,
    which :func:`agglo.outputs.writers.run_folder` swaps in whole with its ``run.json`` manifest
    (an interrupted run leaves the previous ``out`` as it was). Paths in the summary and the
    figure list are those of ``out``.
    """
    from agglo.outputs.provenance import portable
    from agglo.outputs.writers import run_folder

    out = Path(out)
    recorded = {k: portable(v) if isinstance(v, str) else v for k, v in config.to_dict().items()}
    # the manifest says whether the run is real or made from synthetic inputs, and which
    annotations: dict[str, Any] = {}
    with run_folder(out, force=force, config=recorded, annotations=annotations) as staging:
        outputs = collect(staging)
        annotations.update(
            data_status=outputs.data_status, synthetic_inputs=sorted(outputs.synthetic)
        )
        write_steps(outputs, steps)
    outputs.out_dir = out
    outputs.summary = [line.replace(str(staging), str(out)) for line in outputs.summary]
    outputs.figures = [out / Path(f).relative_to(staging) for f in outputs.figures]
    return outputs
