"""``agglo autocorr``: spatial autocorrelation of city scores (Moran's I, Geary's C, LISA, G*)."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.analysis.autocorr import AutocorrOptions
from agglo.cli._flags import option_flags


def register(app: typer.Typer) -> None:
    """Add the ``autocorr`` command to ``app``."""

    @app.command("autocorr")
    @option_flags(AutocorrOptions)
    def autocorr_cmd(
        seed: int | None = typer.Option(None, "--seed", help="Seed of the permutation tests."),
        scores: Path | None = typer.Option(
            None,
            "--scores",
            help="CSV with adcode, year and the column (default: the index of --panel).",
        ),
        panel: Path | None = typer.Option(
            None, "--panel", "-p", help="Yearbook panel for the index (default: bundled demo)."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration ([autocorr], [index] sections)."
        ),
        out: Path = typer.Option(Path("outputs/autocorr"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        *,
        given: dict,
    ) -> None:
        """Moran's I / Geary's C per year (all members and each agglomeration), LISA clusters.

        Runs the stages `agglo run` runs before (inputs, measures, index) unless --scores is
        given. Writes autocorr_global.csv, lisa.csv, autocorr_islands.csv,
        lisa_transitions.csv and lisa.gpkg (member cities x year with LISA cluster labels).
        """
        from agglo.cli._stage import config_with, run_stage

        cfg = config_with(config, given, panel=panel, seed=seed)
        outputs = run_stage(
            cfg,
            "autocorr",
            out,
            force=force,
            gpkg="lisa.gpkg",
            given=_given_scores(scores, cfg.section("autocorr").get("column")),
        )
        for line in outputs.stages["autocorr"].summary:
            typer.echo(outputs.label(line))
        glob = outputs.tables["autocorr_global"]
        if glob.empty or glob["moran_i"].isna().all():
            from agglo.errors import AggloInputError

            raise AggloInputError(
                "no year has enough member cities with a score to test (see [autocorr] "
                "min_units): check the scores' adcodes (6 digits, e.g. 510100), years and values."
            )
        cols = ["scope", "year", "n", "moran_i", "moran_p", "geary_c", "geary_p"]
        typer.echo(glob[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        typer.echo(f"wrote autocorrelation tables and lisa.gpkg to {out}")


def _given_scores(scores: Path | None, column: str | None = None):
    """The ``index`` stage replaced by a CSV of city scores (``adcode, year, <column>``)."""
    if scores is None:
        return None
    from types import SimpleNamespace

    import pandas as pd

    from agglo.errors import AggloInputError
    from agglo.pipeline.core import StageOutput

    if not scores.is_file():
        raise AggloInputError(f"--scores {scores} does not exist.")
    table = pd.read_csv(scores, dtype={"adcode": str})
    missing = {"adcode", "year"} - set(table.columns)
    if missing:
        raise AggloInputError(f"--scores {scores.name} lacks columns {sorted(missing)}.")
    column = column or "lag_score"
    if column not in table.columns:
        raise AggloInputError(
            f"--scores {scores.name} has no column {column!r} (columns: {list(table.columns)}); "
            "pass --column."
        )
    values = pd.to_numeric(table[column], errors="coerce")
    junk = values.isna() & table[column].notna()
    if junk.any() or values.notna().sum() == 0:
        lines = (junk[junk].index + 2).tolist()[:10]  # +2: the header line, 1-based
        raise AggloInputError(
            f"--scores {scores.name}: {int(junk.sum())} value(s) of {column!r} are not numbers "
            f"(lines {lines}); give numeric scores."
            if junk.any()
            else f"--scores {scores.name}: column {column!r} has no values."
        )
    status = table.get("data_status", pd.Series(dtype=str)).astype(str)
    synthetic = "synthetic" in scores.name.lower() or status.str.contains("synthetic").any()
    return {
        "index": StageOutput(
            result=SimpleNamespace(city_scores=table),
            synthetic={scores.name} if synthetic else set(),
        )
    }
