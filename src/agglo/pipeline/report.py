"""Pipeline stage ``report``: one self-contained ``out_dir/report.html`` (after ``write``).

Shows the run summary, every figure of the ``maps`` stage with its caption, the index tables
(with the composite ranking and the latest dimension scores first), the autocorrelation,
core-periphery and metro tables, the layers written, the configuration and the provenance.
Options (``[report]`` section): ``title``, ``max_rows`` (rows shown per table, default 40).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from agglo.errors import AggloInputError
from agglo.outputs.report import write_report
from agglo.pipeline.core import RunOutputs

log = logging.getLogger(__name__)

#: options of the ``[report]`` section and their defaults
OPTIONS: dict[str, Any] = {
    "title": "agglo: integration of China's urban agglomerations 城市群一体化",
    "max_rows": 40,
}


def report_options(section: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with the ``[report]`` section; unknown keys are an error.

    Examples
    --------
    >>> report_options({"max_rows": 10})["max_rows"]
    10
    """
    unknown = sorted(set(section) - set(OPTIONS))
    if unknown:
        raise AggloInputError(
            f"[report] section: unknown option(s) {unknown}; valid: {', '.join(OPTIONS)}."
        )
    return {**OPTIONS, **section}


def highlights(ctx: RunOutputs) -> dict[str, pd.DataFrame]:
    """Small summary tables shown first in their report sections."""
    out: dict[str, pd.DataFrame] = {}
    res = ctx.results.get("index")
    comp = getattr(res, "composite", None)
    if comp is not None and len(comp) and {"score", "rank"} <= set(comp.columns):
        cell = comp.assign(
            cell=comp["score"].map(lambda v: f"{v:.2f}")
            + " (#"
            + comp["rank"].map(lambda r: "–" if pd.isna(r) else str(int(r)))
            + ")"
        )
        wide = cell.pivot(index="agglomeration_id", columns="year", values="cell")
        wide.columns = [f"score {c} (rank)" for c in wide.columns]
        out["index:Composite score by year (rank 1 = most integrated)"] = wide.reset_index()
    dims = getattr(res, "dimensions", None)
    if dims is not None and len(dims) and "score_0_100" in dims:
        latest = dims["year"].max()
        wide = dims[dims["year"] == latest].pivot_table(
            index="agglomeration_id", columns="dimension", values="score_0_100"
        )
        out[f"index:Dimension scores {latest} (0-100)"] = wide.round(1).reset_index()
    return out


def run(ctx: RunOutputs) -> None:
    """Write ``report.html`` from everything on the context."""
    opts = report_options(ctx.config.section("report"))
    captions = ctx.results.get("maps", {}).get("captions", {})
    layers = {
        name: f"{len(gdf):,} features; fields: {', '.join(c for c in gdf.columns if c != gdf.geometry.name)}"
        for name, gdf in ctx.layers.items()
    }
    path = write_report(
        ctx.out_dir / "report.html",
        title=str(opts["title"]),
        tables=ctx.tables,
        highlights=highlights(ctx),
        figures=[f for f in ctx.figures if f.is_file()],
        captions=captions,
        config=ctx.config.to_dict(),
        provenance=ctx.provenance,
        synthetic=ctx.synthetic,
        summary=ctx.summary,
        layers=layers,
        max_rows=int(opts["max_rows"]),
        force=ctx.force,
    )
    ctx.summary.append(ctx.label(f"Report: {path}"))
