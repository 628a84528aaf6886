"""``agglo run``: compose the stages on the bundled or configured data.

Each stage is a module of this package with ``run(ctx: RunContext) -> None``; it calls the
library functions of its stage and records what it produced on the context (panel columns,
layers, tables, figures). The stages hold no method logic. Layers and tables are written once,
atomically, by :mod:`agglo.pipeline.write`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.config import RunConfig
from agglo.errors import AggloInputError, OutputExistsError
from agglo.reference.provenance import is_synthetic_file

__all__ = ["STAGES", "RunContext", "is_synthetic_file", "run"]

log = logging.getLogger(__name__)

#: stage modules in data-flow order (DESIGN.md architecture)
STAGES: tuple[str, ...] = (
    "foundation",
    "pm25",
    "roads",
    "hsr",
    "index",
    "autocorr",
    "coreperiphery",
    "metro",
    "disparity",
    "maps",
    "write",
    "report",
)


@dataclass
class RunContext:
    """State shared by the stages of one run.

    Attributes
    ----------
    panel
        Tidy ``adcode, year, indicator, value`` table; spatial stages replace their indicator.
    employment
        Sector employment (``adcode, year, sector, employment``) if the panel came with it.
    provenance
        Variable or input name -> where it came from and whether it is real or synthetic.
    synthetic
        Names of synthetic inputs that went into this run (non-empty -> every output says so).
    layers, tables
        Outputs to write: layer name -> GeoDataFrame, table name -> DataFrame.
    layer_metadata, styles
        Per layer: metadata dict and QGIS style (QML) written with it.
    figures
        Paths of maps and charts written by the ``maps`` stage.
    results
        Stage name -> its library result object (e.g. ``IndexResult``), for later stages.
    """

    config: RunConfig
    out_dir: Path
    force: bool = False
    cities: gpd.GeoDataFrame | None = None
    counties: gpd.GeoDataFrame | None = None
    membership: pd.DataFrame | None = None
    institutions: pd.DataFrame | None = None
    panel: pd.DataFrame | None = None
    employment: pd.DataFrame | None = None
    years: list[int] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    synthetic: set[str] = field(default_factory=set)
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    layer_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    styles: dict[str, str] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)

    @property
    def data_status(self) -> str:
        """``"synthetic"`` if any synthetic input was used, else ``"real"``."""
        return "synthetic" if self.synthetic else "real"

    def label(self, text: str) -> str:
        """Prefix ``text`` with a SYNTHETIC marker when the run used synthetic data."""
        return f"[SYNTHETIC] {text}" if self.synthetic else text

    def replace_indicator(self, values: pd.DataFrame, indicator: str, source: str) -> None:
        """Put a computed indicator (``adcode, year, value``) into the panel, replacing rows."""
        new = values.loc[:, ["adcode", "year", "value"]].assign(indicator=indicator)
        keep = self.panel[self.panel["indicator"] != indicator] if self.panel is not None else None
        self.panel = pd.concat(
            [keep, new[["adcode", "year", "indicator", "value"]]], ignore_index=True
        )
        self.provenance[indicator] = source


def run(
    config: RunConfig | None = None,
    out_dir: str | Path = "outputs",
    *,
    force: bool = False,
    stages: tuple[str, ...] | None = None,
) -> RunContext:
    """Run the whole job and return its context (layers, tables, results, figures).

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
        Subset of :data:`STAGES` to run (``foundation`` is always run first).
    """
    from agglo._validate import check_run_config
    from agglo.outputs.provenance import portable
    from agglo.outputs.writers import run_folder

    config = config or RunConfig()
    check_run_config(config)  # the whole config, before the first stage
    out = Path(out_dir)
    selected = stages or STAGES
    if "foundation" not in selected:
        selected = ("foundation", *selected)
    if not set(selected) & WRITING_STAGES:
        if out.exists() and any(out.iterdir()) and not force:
            raise OutputExistsError(
                f"output folder {out} is not empty; pass --force to replace its files "
                "or choose another --out."
            )
        ctx = RunContext(config=config, out_dir=out, force=force)
        _run_stages(ctx, selected)
        return ctx
    recorded = {k: portable(v) if isinstance(v, str) else v for k, v in config.to_dict().items()}
    # the run folder is written beside `out` and swapped in whole, manifest (run.json) last
    with run_folder(out, force=force, config=recorded) as staging:
        ctx = RunContext(config=config, out_dir=staging, force=force)
        _run_stages(ctx, selected)
    ctx.out_dir = out
    ctx.summary = [line.replace(str(staging), str(out)) for line in ctx.summary]
    ctx.figures = [out / Path(f).relative_to(staging) for f in ctx.figures]
    return ctx


def _run_stages(ctx: RunContext, selected: tuple[str, ...]) -> None:
    for name in STAGES:
        if name not in selected:
            continue
        if name == "write" and ctx.synthetic:
            ctx.summary.append(
                "[SYNTHETIC] marks results computed from synthetic inputs: "
                f"{', '.join(sorted(ctx.synthetic))}. They illustrate the method; they are not "
                "findings about the agglomerations."
            )
        start = time.perf_counter()
        module = importlib.import_module(f"agglo.pipeline.{name}")
        log.info("stage %s ...", name)
        module.run(ctx)
        log.info("stage %s done in %.1f s", name, time.perf_counter() - start)


#: stages that write into the run folder (a run with any of them is staged and swapped in)
WRITING_STAGES = frozenset({"write", "maps", "report"})

#: the bundled synthetic road network (roads and metro stages)
DEMO_ROADS = ("roads", "demo_roads_synthetic.gpkg")


def check_options(stage: str, options: dict[str, Any], valid: Iterable[str]) -> None:
    """Refuse unknown keys in a stage's config section, naming the valid ones."""
    valid = list(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise AggloInputError(f"[{stage}] option(s) {unknown} unknown; valid options: {valid}.")


def road_network(ctx: RunContext, stage: str) -> tuple[Path, bool] | None:
    """The road file for a stage: ``[inputs] roads`` or the bundled synthetic network.

    Returns ``(path, synthetic)``, or ``None`` (logged) when nothing is configured and the
    bundled file is absent; a configured file that does not exist is an input error.
    """
    from agglo.reference.paths import data_path

    if ctx.config.roads is not None:
        path = Path(ctx.config.roads)
        if not path.exists():
            raise AggloInputError(f"[inputs] roads = {path} does not exist.")
    else:
        path = data_path(*DEMO_ROADS)
        if not path.exists():
            log.info("no road network configured and %s is absent; stage %s skipped", path, stage)
            return None
    return path, is_synthetic_file(path)
