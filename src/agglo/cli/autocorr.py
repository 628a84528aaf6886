"""``agglo autocorr``: spatial autocorrelation of city scores (Moran's I, Geary's C, LISA, G*)."""

from __future__ import annotations

from pathlib import Path

import typer

#: tables of the autocorr stage written by the command
TABLES = ("autocorr_global", "lisa", "autocorr_islands", "lisa_transitions", "spatial_markov")


def register(app: typer.Typer) -> None:
    """Add the ``autocorr`` command to ``app``."""

    @app.command("autocorr")
    def autocorr_cmd(
        weights: str | None = typer.Option(
            None, "--weights", "-w", help="queen (default), rook, knn, distance or kernel."
        ),
        column: str | None = typer.Option(
            None, "--column", help="City score to analyse (default lag_score)."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed of the permutation tests."),
        permutations: int | None = typer.Option(
            None, "--permutations", help="Permutations (default 999)."
        ),
        islands: str | None = typer.Option(
            None, "--islands", help="Units without neighbours: nearest (default), keep, error."
        ),
        k: int | None = typer.Option(None, "--k", help="Neighbours for knn/kernel weights."),
        alpha: float | None = typer.Option(None, "--alpha", help="LISA significance level."),
        correction: str | None = typer.Option(
            None, "--correction", help="LISA multiple testing: fdr (default) or none."
        ),
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
    ) -> None:
        """Moran's I / Geary's C per year (all members and each agglomeration), LISA clusters.

        Writes autocorr_global.csv, lisa.csv, autocorr_islands.csv, lisa_transitions.csv and
        lisa.gpkg (member cities x year with LISA cluster labels) to --out.
        """
        import importlib

        import pandas as pd

        from agglo.config import load_config
        from agglo.errors import AggloInputError
        from agglo.outputs.writers import check_writable, export, write_csv
        from agglo.pipeline import RunContext
        from agglo.pipeline.autocorr import stage_options

        cfg = load_config(config)
        if panel is not None:
            cfg.panel = panel
        if seed is not None:
            cfg.seed = seed
        section = cfg.section("autocorr")
        given = {
            "weights": weights,
            "column": column,
            "permutations": permutations,
            "islands": islands,
            "k": k,
            "alpha": alpha,
            "correction": correction,
        }
        section.update({key: v for key, v in given.items() if v is not None})
        stage_options(section)  # refuse bad options before any work
        cfg.sections = {**cfg.sections, "autocorr": section}
        targets = [out / f"{t}.csv" for t in TABLES] + [out / "lisa.gpkg"]
        for t in targets:
            check_writable(t, force=force)
        ctx = RunContext(config=cfg, out_dir=out, force=force)
        importlib.import_module("agglo.pipeline.foundation").run(ctx)
        if scores is None:
            importlib.import_module("agglo.pipeline.index").run(ctx)
        else:
            if not scores.is_file():
                raise AggloInputError(f"--scores {scores} does not exist.")
            table = pd.read_csv(scores, dtype={"adcode": str})
            missing = {"adcode", "year"} - set(table.columns)
            if missing:
                raise AggloInputError(f"--scores {scores.name} lacks columns {sorted(missing)}.")
            _check_scores(table, section.get("column", "lag_score"), ctx.cities, scores.name)
            ctx.synthetic.clear()
            status = table.get("data_status", pd.Series(dtype=str)).astype(str)
            if "synthetic" in scores.name.lower() or status.str.contains("synthetic").any():
                ctx.synthetic.add(scores.name)
            ctx.results["index"] = _Scores(table)
        ctx.summary.clear()
        importlib.import_module("agglo.pipeline.autocorr").run(ctx)
        if (
            "autocorr" not in ctx.results
            or ctx.tables.get("autocorr_global") is None
            or (ctx.tables["autocorr_global"].empty)
        ):
            raise AggloInputError(
                "no city scores to analyse: no year has enough member cities with a value "
                "(see min_units); check the scores' adcodes, years and values."
            )
        for name in TABLES:
            if name in ctx.tables:
                write_csv(
                    ctx.tables[name].assign(data_status=ctx.data_status),
                    out / f"{name}.csv",
                    force=force,
                )
        if "lisa" in ctx.layers:
            export(
                ctx.layers["lisa"].assign(data_status=ctx.data_status),
                out / "lisa.gpkg",
                layer="lisa",
                force=force,
                metadata={**ctx.layer_metadata.get("lisa", {}), "data_status": ctx.data_status},
            )
        for line in ctx.summary:
            typer.echo(line)
        glob = ctx.tables["autocorr_global"]
        cols = ["scope", "year", "n", "moran_i", "moran_p", "geary_c", "geary_p"]
        typer.echo(glob[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        typer.echo(f"wrote autocorrelation tables and lisa.gpkg to {out}")


def _check_scores(table, column: str, cities, name: str) -> None:
    """--scores must hold numbers in ``column`` for cities of the boundary layer."""
    import pandas as pd

    from agglo.errors import AggloInputError

    if column not in table.columns:
        raise AggloInputError(
            f"--scores {name} has no column {column!r} (columns: {list(table.columns)}); "
            "pass --column."
        )
    values = pd.to_numeric(table[column], errors="coerce")
    junk = values.isna() & table[column].notna()
    if junk.any():
        rows = (junk[junk].index + 2).tolist()[:10]  # +2: header line, 1-based
        raise AggloInputError(
            f"--scores {name}: {int(junk.sum())} value(s) of {column!r} are not numbers "
            f"(lines {rows}, e.g. {table[column][junk].iloc[0]!r})."
        )
    if values.notna().sum() == 0:
        raise AggloInputError(f"--scores {name}: column {column!r} has no values.")
    known = set(cities["adcode"].astype(str))
    given = set(table["adcode"].astype(str))
    if not given & known:
        raise AggloInputError(
            f"--scores {name}: none of its {len(given)} adcodes is a city of the boundaries "
            f"(e.g. {sorted(given)[:3]}); adcodes are 6 digits such as 510100."
        )


class _Scores:
    """Stand-in for the index result when scores come from a CSV (``city_scores`` only)."""

    def __init__(self, table):
        self.city_scores = table
