"""``agglo metro``: one-hour commute catchments (都市圈) of core cities on a road network."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.analysis.metro.options import MetroOptions
from agglo.cli._flags import option_flags
from agglo.cli.roads import ROADS_HELP, parse_speeds


def register(app: typer.Typer) -> None:
    """Add the ``metro`` command to ``app``."""

    @app.command("metro")
    @option_flags(MetroOptions)
    def metro_cmd(
        roads: list[str] | None = typer.Option(
            None,
            "--roads",
            metavar="FILE[=CLASS]",
            help=ROADS_HELP + " Default: [inputs] roads, else the bundled SYNTHETIC demo "
            "network (outputs labelled synthetic).",
        ),
        speeds: str | None = typer.Option(
            None, "--speeds", help="Speeds by class: motorway=100,primary=60 or a JSON file."
        ),
        panel: Path | None = typer.Option(
            None, "--panel", "-p", help="Yearbook panel (population shares; default: demo)."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration ([metro] section)."
        ),
        out: Path = typer.Option(Path("outputs/metro"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
        *,
        given: dict,
    ) -> None:
        """Catchments, isochrone bands and member counties of core cities.

        Runs the stages `agglo run` runs before (inputs, measures: the panel gives the
        population) with the same options. Writes OUT/metro.gpkg (layers metro_areas,
        isochrones) and OUT/metro_members.csv, OUT/metro_cities.csv.
        """
        from agglo.cli._stage import config_with, run_stage

        if speeds is not None:
            given = {"metro": {**given["metro"], "speeds": parse_speeds(speeds)}}
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
