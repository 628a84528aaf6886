"""Pipeline stage ``index``: the integration index on the run's panel and membership.

Reads ``ctx.panel``, ``ctx.membership``, ``ctx.institutions`` (and sector employment when the
panel reader exposes it and the panel lacks ``krugman_index``); options come from the
``[index]`` section of the run configuration (the fields of :class:`agglo.analysis.index.IndexConfig`
plus ``sensitivity = true/false``). Puts the :class:`~agglo.analysis.index.IndexResult` in
``ctx.results["index"]``, its tables in ``ctx.tables``, an ``agglomerations`` layer in
``ctx.layers``, the latest year's ``lag_score`` and ``dispersion_gap`` on the cities layer,
and the composite ranking in ``ctx.summary``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pandas as pd

from agglo.analysis.index import (
    IndexConfig,
    IndexResult,
    IndexWarning,
    agglomeration_layer,
    integration_index,
)
from agglo.analysis.sensitivity import index_sensitivity
from agglo.errors import AggloInputError
from agglo.pipeline import RunContext
from agglo.reference.boundaries import AGGLOMERATIONS

log = logging.getLogger(__name__)

#: options of the ``[index]`` section that belong to the stage, not to IndexConfig
STAGE_OPTIONS = {"sensitivity": True}


def stage_options(section: dict[str, Any]) -> tuple[IndexConfig, dict[str, Any]]:
    """Split the ``[index]`` section into an :class:`IndexConfig` and stage options.

    Examples
    --------
    >>> cfg, opts = stage_options({"ddof": 1, "sensitivity": False})
    >>> cfg.ddof, opts["sensitivity"]
    (1, False)
    """
    section = dict(section)
    opts = {k: section.pop(k, v) for k, v in STAGE_OPTIONS.items()}
    try:
        cfg = IndexConfig.from_dict(section)
    except AggloInputError as exc:
        raise AggloInputError(
            f"[index] section: {exc} Stage options: {', '.join(STAGE_OPTIONS)}."
        ) from exc
    return cfg, opts


def _employment(ctx: RunContext) -> pd.DataFrame | None:
    if ctx.panel is not None and "krugman_index" in set(ctx.panel["indicator"]):
        return None
    if ctx.employment is None:
        log.info("no sector employment with the panel; krugman_index not computed")
    return ctx.employment


def ranking_text(result: IndexResult) -> list[str]:
    """The composite ranking as aligned text lines (one row per agglomeration)."""
    comp = result.composite
    years = sorted(comp["year"].unique())
    lines = [
        f"{'agglomeration':<28}" + "".join(f"{y:>16}" for y in years),
    ]
    order = comp[comp["year"] == years[-1]].sort_values("rank")["agglomeration_id"].tolist()
    order += [g for g in comp["agglomeration_id"].unique() if g not in order]
    for g in order:
        zh = AGGLOMERATIONS.get(g, (g, g))[0]
        cells = []
        for y in years:
            r = comp[(comp["agglomeration_id"] == g) & (comp["year"] == y)]
            cells.append(
                f"{r['score'].iloc[0]:>9.2f} (#{int(r['rank'].iloc[0])})"
                if len(r)
                else f"{'-':>14}"
            )
        label = f"{g} {zh}"
        pad = 28 - sum(2 if ord(ch) > 0x2E80 else 1 for ch in label)
        lines.append(label + " " * max(pad, 1) + "".join(f"{c:>16}" for c in cells))
    return lines


def run(ctx: RunContext) -> None:
    """Compute the integration index and register its tables, layer and summary."""
    if ctx.panel is None or ctx.membership is None:
        log.warning("stage index: no panel or membership loaded; skipped")
        return
    cfg, opts = stage_options(ctx.config.section("index"))
    employment = _employment(ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IndexWarning)
        result = integration_index(
            ctx.panel,
            ctx.membership,
            config=cfg,
            employment=employment,
            institutions=ctx.institutions,
        )
        sens = None
        if opts["sensitivity"]:
            sens = index_sensitivity(ctx.panel, ctx.membership, config=cfg, employment=employment)
    for w in caught:
        if issubclass(w.category, IndexWarning):
            log.warning("index: %s", w.message)
        else:  # pragma: no cover - re-emit anything else unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ctx.results["index"] = result
    ctx.tables.update(result.tables())
    if sens is not None:
        ctx.tables["index_sensitivity"] = sens
    meta = {
        "description": "integration index of the agglomerations (seed 004 method)",
        "index_config": result.config.to_dict(),
        "units": {"score_*": "unitless, 0..100·R", "score_0_100_*": "0-100 rescaled"},
    }
    if ctx.cities is not None:
        layer = agglomeration_layer(ctx.cities, result)
        ctx.layers["agglomerations"] = layer
        ctx.layer_metadata["agglomerations"] = meta
        latest = max(result.city_scores["year"]) if len(result.city_scores) else None
        if latest is not None and "cities" in ctx.layers:
            cs = result.city_scores[result.city_scores["year"] == latest].set_index("adcode")
            cities = ctx.layers["cities"].copy()
            cities["lag_score"] = cities["adcode"].map(cs["lag_score"])
            cities["dispersion_gap"] = cities["adcode"].map(cs["dispersion_gap"])
            ctx.layers["cities"] = cities
            md = dict(ctx.layer_metadata.get("cities", {}))
            units = dict(md.get("units", {}))
            units.update(
                {
                    "lag_score": f"mean direction-adjusted gap (x-μ)/μ, {latest}; <0 lagging",
                    "dispersion_gap": f"mean squared gap ((x-μ)/μ)², {latest}",
                }
            )
            md["units"] = units
            ctx.layer_metadata["cities"] = md
    ctx.provenance["index"] = "agglo.integration_index " + str(result.config.to_dict())
    ctx.summary.append(ctx.label("Integration index, composite score (rank; 1 = most integrated):"))
    ctx.summary.extend(ranking_text(result))
    for line in result.report:
        log.info("index: %s", line)
