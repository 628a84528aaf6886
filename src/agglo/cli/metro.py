"""``agglo metro``: one-hour commute catchments (都市圈) of core cities on a road network."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.cli.roads import ROADS_HELP, _parse_classes, parse_speeds


def register(app: typer.Typer) -> None:
    """Add the ``metro`` command to ``app``."""

    @app.command("metro")
    def metro_cmd(
        roads: list[str] | None = typer.Option(
            None,
            "--roads",
            metavar="FILE[=CLASS]",
            help=ROADS_HELP + " Default: [inputs] roads, else the bundled SYNTHETIC demo "
            "network (outputs labelled synthetic).",
        ),
        classes: str | None = typer.Option(
            None,
            "--classes",
            help="Road classes to read: all, default, major or comma-separated values "
            "(default: every class with a default speed).",
        ),
        class_col: str | None = typer.Option(
            None, "--class-col", help="Class column of a line layer (default highway)."
        ),
        speed_col: str | None = typer.Option(
            None, "--speed-col", help="Column of the line layer holding speeds, km/h."
        ),
        speeds: str | None = typer.Option(
            None, "--speeds", help="Speeds by class: motorway=100,primary=60 or a JSON file."
        ),
        cores: str | None = typer.Option(
            None,
            "--cores",
            help="Comma-separated core cities (adcodes or Chinese names, e.g. 成都,500000). "
            "Default: the core cities of the five agglomerations.",
        ),
        minutes: float | None = typer.Option(
            None, "--minutes", help="Commute limit, minutes (default 60)."
        ),
        access_speed: float | None = typer.Option(
            None, "--access-speed", help="Off-network access speed, km/h (default 15)."
        ),
        method: str | None = typer.Option(None, "--method", help="network (default) or friction."),
        bands: str | None = typer.Option(
            None,
            "--bands",
            help="Isochrone band limits, minutes (comma-separated; default 15,30,45,60).",
        ),
        cell_m: float | None = typer.Option(
            None, "--cell-m", help="Friction method cell size, m (default 500)."
        ),
        panel: Path | None = typer.Option(
            None, "--panel", "-p", help="Yearbook panel (population shares; default: demo)."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration ([metro] section)."
        ),
        out: Path = typer.Option(Path("metro_out"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
    ) -> None:
        """Catchments, isochrone bands and member counties of core cities.

        Runs the stages `agglo run` runs before (inputs, measures: the panel gives the
        population) with the same options. Writes OUT/metro.gpkg (layers metro_areas,
        isochrones) and OUT/metro_members.csv, OUT/metro_cities.csv.
        """
        from agglo.cli._stage import config_with, run_stage
        from agglo.errors import AggloInputError

        band_list = None
        if bands is not None:
            try:
                band_list = [float(b) for b in bands.split(",") if b.strip()]
            except ValueError:
                raise AggloInputError(
                    f"--bands must be numbers separated by commas, got {bands!r}."
                ) from None
        flags = {
            "classes": _parse_classes(classes) if classes else None,
            "class_col": class_col,
            "speed_col": speed_col,
            "speeds": parse_speeds(speeds),
            "cores": [c for c in cores.split(",") if c.strip()] if cores else None,
            "minutes": minutes,
            "access_speed_kmh": access_speed,
            "method": method,
            "bands": band_list,
            "cell_m": cell_m,
        }
        given = {"metro": {k: v for k, v in flags.items() if v is not None}}
        cfg = config_with(config, given, panel=panel, roads=roads or None)
        outputs = run_stage(cfg, "metro", out, force=force, gpkg="metro.gpkg", progress=True)
        tag = "[SYNTHETIC roads] " if outputs.synthetic else ""
        res = outputs.results["metro"]
        for row in res.areas.itertuples(index=False):
            typer.echo(
                f"{tag}{row.core_name} ({row.core_adcode}): {row.area_km2:,.0f} km² within "
                f"{row.minutes:g} min, {row.n_member_counties} county seats reached"
            )
        typer.echo(f"wrote {out / 'metro.gpkg'}, metro_members.csv, metro_cities.csv to {out}")
