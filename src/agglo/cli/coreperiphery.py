"""``agglo coreperiphery``: gravity network, Borgatti-Everett coreness, city system, gaps."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.analysis.coreperiphery import CorePeripheryOptions
from agglo.cli._flags import option_flags


def register(app: typer.Typer) -> None:
    """Add the ``coreperiphery`` command to ``app``."""

    @app.command("coreperiphery")
    @option_flags(CorePeripheryOptions)
    def coreperiphery_cmd(
        panel: Path | None = typer.Option(
            None, "--panel", "-p", help="Yearbook panel with population and gdp (default: demo)."
        ),
        agglomeration: list[str] | None = typer.Option(
            None, "--agglomeration", "-a", help="yrd, myr, cy, qz or dz (repeat; default all)."
        ),
        year: list[int] | None = typer.Option(
            None, "--year", "-y", help="Year(s) to analyse (repeat; default every panel year)."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed of starts and permutations."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration ([coreperiphery] section)."
        ),
        out: Path = typer.Option(
            Path("outputs/coreperiphery"), "--out", "-o", help="Output folder."
        ),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        progress: bool = typer.Option(False, "--progress", help="Show progress bars."),
        *,
        given: dict,
    ) -> None:
        """Coreness and core sets per agglomeration and year, city-size system, structure type.

        Runs the stages `agglo run` runs before (inputs, measures) with the same options.
        Writes coreness.csv, coreness_fit.csv, city_system.csv, structure_type.csv,
        core_periphery_gaps.csv and core_periphery.gpkg to --out.
        """
        from agglo.cli._stage import config_with, run_stage

        cfg = config_with(
            config,
            given,
            panel=panel,
            seed=seed,
            years=year or None,
            agglomerations=agglomeration or None,
        )
        outputs = run_stage(
            cfg, "coreperiphery", out, force=force, gpkg="core_periphery.gpkg", progress=progress
        )
        res = outputs.results["coreperiphery"]
        struct = res.structure.set_index(["agglomeration_id", "year"])
        for row in res.fit.itertuples():
            kind = struct.loc[(row.agglomeration_id, row.year), "structure_type"]
            typer.echo(
                outputs.label(
                    f"{row.agglomeration_id} {row.year} {row.method}: core {row.core_cities} "
                    f"(fit {row.fit:.2f}, p {row.p_value:.3f}); {kind}"
                )
            )
        typer.echo(
            f"wrote {len(outputs.stages['coreperiphery'].tables)} tables and "
            f"core_periphery.gpkg to {out}"
        )
