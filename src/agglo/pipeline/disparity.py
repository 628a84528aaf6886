"""Pipeline stage ``disparity``: disparity, convergence and coordination of the city scores.

Reads the run's panel and membership (member cities only), the index's ``city_scores``
(``lag_score``, for the TOPSIS rank correlation) and the member polygons (spatial weights of
the spatial β models, the ``[autocorr] weights`` kind, islands joined to their nearest city).
Options: ``[coordination]`` (:class:`~agglo.analysis.coordination.CoordinationOptions`),
``[disparity]`` (:class:`~agglo.analysis.disparity.DisparityOptions`) and ``[convergence]``
(:class:`~agglo.analysis.convergence.ConvergenceOptions`). Records:

- tables ``coordination_*`` (city subsystem scores, indicator weights, coupling coordination in
  both forms, obstacle degrees, TOPSIS and its rank correlation), ``disparity_*`` (Dagum and
  Theil by variable and year, kernel-density bandwidths) and ``convergence_*`` (σ, σ trend, β);
- result: the three library results and the density values, from which the ``maps`` stage
  draws one kernel-density chart per agglomeration;
- summary lines: the Dagum shares of the latest year and the pooled absolute β.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from agglo.analysis.convergence import ConvergenceOptions, convergence
from agglo.analysis.coordination import CoordinationOptions, coordination
from agglo.analysis.disparity import DisparityOptions, disparity
from agglo.errors import MissingDependencyError
from agglo.pipeline.core import StageOutput

log = logging.getLogger(__name__)

SECTIONS = ("coordination", "disparity", "convergence")


def city_values(panel: pd.DataFrame, membership: pd.DataFrame) -> pd.DataFrame:
    """The panel of member cities with their ``agglomeration_id`` (non-members left out)."""
    groups = membership.drop_duplicates("adcode")[["adcode", "agglomeration_id"]]
    return panel.merge(groups, on="adcode", how="inner")


def analyse(
    panel: pd.DataFrame,
    reference: pd.DataFrame | None,
    weights: Any,
    options: tuple[CoordinationOptions, DisparityOptions, ConvergenceOptions],
) -> dict[str, Any]:
    """Coordination, disparity and convergence results of one run (no method logic here)."""
    copts, dopts, vopts = options
    coord = coordination(panel, copts, reference=reference)
    indicators = panel.rename(columns={"indicator": "variable"})[
        ["adcode", "agglomeration_id", "year", "variable", "value"]
    ]
    values = pd.concat([coord.cities.tidy(), indicators], ignore_index=True)
    disp = disparity(values, dopts)
    try:
        conv = convergence(values, weights, vopts)
    except MissingDependencyError as exc:
        log.warning("stage disparity: β-convergence skipped: %s", exc)
        conv = None
    return {"coordination": coord, "disparity": disp, "convergence": conv, "values": values}


def disparity_options(
    coordination: Mapping[str, Any],
    disparity: Mapping[str, Any],
    convergence: Mapping[str, Any],
    autocorr: Mapping[str, Any],
) -> tuple[CoordinationOptions, DisparityOptions, ConvergenceOptions, str]:
    """The options of the three analyses and the spatial weights kind (``[autocorr] weights``)."""
    return (
        CoordinationOptions.from_dict(coordination),
        DisparityOptions.from_dict(disparity),
        ConvergenceOptions.from_dict(convergence),
        str(autocorr.get("weights", "queen")),
    )


def disparity_stage(
    config: Any, options: tuple, inputs: Any, panel: pd.DataFrame, index: Any = None
) -> StageOutput:
    """Compute the three analyses; their tables and summary lines."""
    from agglo.analysis.autocorr import spatial_weights

    *opts, kind = options
    values = city_values(panel, inputs.membership)
    scores = getattr(index, "city_scores", None)
    reference = (
        scores[["adcode", "year", "lag_score"]].rename(columns={"lag_score": "value"})
        if scores is not None
        else None
    )
    weights = None
    if opts[2].spatial and inputs.cities is not None:
        members = inputs.cities[inputs.cities["adcode"].isin(set(values["adcode"]))]
        weights = spatial_weights(members, kind, islands="nearest")
    res = analyse(values, reference, weights, tuple(opts))
    coord, disp, conv = res["coordination"], res["disparity"], res["convergence"]
    renamed = {
        "city_dimension_scores": "coordination_subsystem_scores",
        "city_indicator_weights": "coordination_entropy",
        "coupling_coordination": "coordination_coupling",
        "obstacle_degree": "coordination_obstacles",
        "obstacle_dimensions": "coordination_subsystem_obstacles",
        "main_obstacles": "coordination_main_obstacles",
        "topsis_scores": "coordination_topsis",
        "topsis_rank_correlation": "coordination_topsis_rank_correlation",
    }
    out = StageOutput(result=res)
    out.tables.update({renamed.get(k, k): v for k, v in coord.tables().items()})
    out.tables.update(disp.tables())
    from agglo.outputs.charts_disparity import kde_bandwidths

    kde_var = disp.options.variables[0]
    kde_values = res["values"][res["values"]["variable"] == kde_var]
    out.tables["disparity_kde_bandwidths"] = kde_bandwidths(
        kde_values, disp.options.kde_bandwidth
    ).assign(variable=kde_var)
    if conv is not None:
        out.tables.update(conv.tables())
    for note in [*disp.notes, *(conv.notes if conv is not None else [])]:
        log.info("%s", note)
    d = disp.dagum
    latest = d[(d["variable"] == kde_var) & (d["year"] == d["year"].max())]
    if len(latest):
        r = latest.iloc[0]
        out.summary.append(
            f"Dagum Gini of {kde_var} {int(r['year'])}: G = {r['gini']:.3f} (within "
            f"{100 * r['within_share']:.0f} %, net between {100 * r['net_between_share']:.0f} "
            f"%, transvariation {100 * r['transvariation_share']:.0f} %)"
        )
    if conv is not None and len(conv.beta):
        b = conv.beta[(conv.beta["group"] == "all") & (conv.beta["model"] == "absolute")]
        if len(b):
            r = b.iloc[0]
            out.summary.append(
                f"β-convergence of {conv.options.variable} {int(r['start_year'])}-"
                f"{int(r['end_year'])} (all cities): β = {r['beta']:.4f} (p {r['p_value']:.3g}),"
                f" half-life {r['half_life']:.1f} years"
            )
    return out
