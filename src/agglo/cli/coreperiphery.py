"""``agglo coreperiphery``: gravity network, Borgatti-Everett coreness, city system, gaps."""

from __future__ import annotations

from pathlib import Path

import typer

#: result key -> table file written by the command
TABLES = {
    "coreness": "coreness",
    "fit": "coreness_fit",
    "city_system": "city_system",
    "structure_type": "structure_type",
    "gaps": "core_periphery_gaps",
}


def register(app: typer.Typer) -> None:
    """Add the ``coreperiphery`` command to ``app``."""

    @app.command("coreperiphery")
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
        method: list[str] | None = typer.Option(
            None, "--method", "-m", help="continuous and/or discrete (repeat; default both)."
        ),
        beta: float | None = typer.Option(None, "--beta", help="Distance decay (default 2)."),
        n_perm: int | None = typer.Option(
            None, "--n-perm", help="Permutations of the significance test (default 49)."
        ),
        transform: str | None = typer.Option(
            None, "--transform", help="Weights before fitting: none (default) or log."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed of starts and permutations."),
        seats: Path | None = typer.Option(
            None, "--seats", help="CSV of city seats: adcode, lon, lat (default: district seats)."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration ([coreperiphery] section)."
        ),
        out: Path = typer.Option(
            Path("outputs/coreperiphery"), "--out", "-o", help="Output folder."
        ),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        progress: bool = typer.Option(False, "--progress", help="Show progress bars."),
    ) -> None:
        """Coreness and core sets per agglomeration and year, city-size system, structure type.

        Writes coreness.csv, coreness_fit.csv, city_system.csv, structure_type.csv,
        core_periphery_gaps.csv and core_periphery.gpkg to --out.
        """
        from agglo.config import load_config
        from agglo.io.panel import DEMO_PANEL, read_panel
        from agglo.outputs.writers import check_writable, export, write_csv
        from agglo.pipeline.coreperiphery import analyse, stage_options
        from agglo.reference.boundaries import load_cities, load_counties

        cfg = load_config(config)
        section = cfg.section("coreperiphery")
        given = {
            "beta": beta,
            "n_perm": n_perm,
            "transform": transform,
            "methods": method,
            "seats_file": str(seats) if seats else None,
        }
        section.update({k: v for k, v in given.items() if v is not None and v != []})
        opts = stage_options(section)  # refuse bad options before any work
        seed_value = cfg.seed if seed is None else seed
        targets = [out / f"{t}.csv" for t in TABLES.values()] + [out / "core_periphery.gpkg"]
        for t in targets:
            check_writable(t, force=force)
        panel_path = panel or cfg.panel or DEMO_PANEL
        result = read_panel(panel_path)
        status = "synthetic" if result.synthetic else "real"
        res = analyse(
            load_cities(cfg.boundaries),
            result.panel,
            counties=load_counties(cfg.boundaries),
            years=year or cfg.years or None,
            agglomerations=agglomeration or None,
            options=opts,
            seed=seed_value,
            progress=progress,
        )
        out.mkdir(parents=True, exist_ok=True)
        for key, name in TABLES.items():
            write_csv(res[key].assign(data_status=status), out / f"{name}.csv", force=force)
        export(
            res["layer"].assign(data_status=status),
            out / "core_periphery.gpkg",
            layer="core_periphery",
            force=force,
            metadata={"data_status": status, "panel": str(panel_path), "seed": seed_value},
        )
        label = "[SYNTHETIC] " if result.synthetic else ""
        fit = res["fit"]
        struct = res["structure_type"].set_index(["agglomeration_id", "year"])
        for row in fit.itertuples():
            kind = struct.loc[(row.agglomeration_id, row.year), "structure_type"]
            typer.echo(
                f"{label}{row.agglomeration_id} {row.year} {row.method}: core {row.core_cities} "
                f"(fit {row.fit:.2f}, p {row.p_value:.3f}); {kind}"
            )
        typer.echo(f"wrote {len(TABLES)} tables and core_periphery.gpkg to {out}")
