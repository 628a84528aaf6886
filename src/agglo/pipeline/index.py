"""Options of the ``[index]`` section and the ranking text of the ``index`` stage.

The section holds the fields of :class:`agglo.analysis.index.IndexConfig` plus
``sensitivity = true/false`` (also write ``index_sensitivity``).
"""

from __future__ import annotations

from typing import Any

from agglo.analysis.index import IndexConfig, IndexResult
from agglo.errors import AggloInputError
from agglo.reference.boundaries import AGGLOMERATIONS

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
