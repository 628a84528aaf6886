"""``agglo <stage>``: run one stage of the pipeline table, exactly as ``agglo run`` does.

The command's flags are laid over the config sections, every option is validated, the stages
the requested one needs run first (same functions, same options, same inputs as ``agglo
run``), and the stage's tables (CSV) and layers (one GeoPackage) are written to ``--out``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agglo.config import RunConfig, load_config
from agglo.errors import AggloInputError

__all__ = ["config_with", "run_stage"]


def config_with(
    config: Path | None, given: Mapping[str, Mapping[str, Any]], **inputs: Any
) -> RunConfig:
    """The run configuration of ``--config`` with typed flags (per section) and inputs set."""
    cfg = load_config(config)
    cfg.sections = {
        **cfg.sections,
        **{k: {**cfg.sections.get(k, {}), **v} for k, v in given.items() if v},
    }
    for key, value in inputs.items():
        if value is not None:
            setattr(cfg, key, value)
    return cfg


def run_stage(
    cfg: RunConfig,
    stage: str,
    out: Path,
    *,
    force: bool,
    gpkg: str,
    extra: Sequence[str] = (),
    given: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Any:
    """Run ``stage`` as ``agglo run`` does; write its tables and layers; return the outputs.

    Nothing is written when any output (``<table>.csv``, ``gpkg``, the ``extra`` files the
    command adds) exists and ``force`` is not given.
    """
    from agglo._validate import check_run_config
    from agglo.outputs.writers import check_writable, export_layers, with_data_status, write_csv
    from agglo.pipeline import run_stages

    options = check_run_config(cfg)  # every option and input path checked before any work
    if out.exists() and not force:
        check_writable(out / gpkg, force=force)  # refuse early when the main file exists
    outputs = run_stages(
        cfg,
        [stage],
        out_dir=out,
        force=force,
        given=given,
        options=options,
        progress=progress,
        strict=[stage],
    )
    result = outputs.stages.get(stage)
    if result is None:
        raise AggloInputError(f"stage {stage} produced no result from these inputs (see the log).")
    for path in [out / f"{t}.csv" for t in result.tables] + [out / gpkg, *map(out.joinpath, extra)]:
        check_writable(path, force=force)
    status = outputs.data_status
    out.mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        own = "data_status" in table  # a table's own data_status (e.g. per indicator) is kept
        write_csv(
            table if own else with_data_status(table, status), out / f"{name}.csv", force=force
        )
    if result.layers:
        meta = {"data_status": status, "config": cfg.to_dict(), "provenance": outputs.provenance}
        export_layers(
            {k: with_data_status(v, status) for k, v in result.layers.items()},
            out / gpkg,
            force=force,
            metadata={k: {**meta, **result.layer_metadata.get(k, {})} for k in result.layers},
        )
    return outputs
