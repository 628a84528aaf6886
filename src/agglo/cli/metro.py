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
            help=ROADS_HELP + " Default: the bundled SYNTHETIC demo network (outputs labelled "
            "synthetic).",
        ),
        classes: str | None = typer.Option(
            None,
            "--classes",
            help="Road classes to read: all, default, major or comma-separated values "
            "(default: every class with a default speed).",
        ),
        class_col: str = typer.Option(
            "highway", "--class-col", help="Class column of a line layer (Geofabrik: fclass)."
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
        minutes: float = typer.Option(60.0, "--minutes", help="Commute limit, minutes."),
        access_speed: float = typer.Option(
            15.0, "--access-speed", help="Off-network access speed, km/h."
        ),
        method: str = typer.Option("network", "--method", help="network or friction."),
        bands: str | None = typer.Option(
            None,
            "--bands",
            help="Isochrone band limits, minutes (comma-separated; default 15,30,45,60 up to "
            "--minutes).",
        ),
        cell_m: float = typer.Option(500.0, "--cell-m", help="Friction method cell size, m."),
        out: Path = typer.Option(Path("metro_out"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
    ) -> None:
        """Catchments, isochrone bands and member counties of core cities.

        Writes OUT/metro.gpkg (layers metro_areas, isochrones) and OUT/metro_members.csv,
        OUT/metro_cities.csv.
        """
        from agglo._validate import metro_option_problems
        from agglo.analysis.metro import DEFAULT_SPEEDS_KMH, metro_areas, road_graph
        from agglo.errors import AggloInputError, ValidationError
        from agglo.measures.roads import parse_road_source, read_roads
        from agglo.outputs.writers import check_writable, export_layers, write_csv
        from agglo.reference.boundaries import load_cities, load_counties
        from agglo.reference.paths import data_path
        from agglo.reference.provenance import is_synthetic_file

        try:
            band_list = (
                tuple(float(b) for b in bands.split(",") if b.strip())
                if bands is not None
                else tuple(b for b in (15.0, 30.0, 45.0, 60.0) if b <= minutes) or (minutes,)
            )
        except ValueError:
            raise AggloInputError(
                f"--bands must be numbers separated by commas, got {bands!r}."
            ) from None
        problems = metro_option_problems(
            minutes=minutes,
            bands=band_list,
            access_speed_kmh=access_speed,
            cell_m=cell_m,
            method=method,
        )
        if problems:
            raise ValidationError(
                [p.replace("metro.", "--").replace("_kmh", "").replace("_", "-") for p in problems],
                source="agglo metro",
            )
        sources = roads or [str(data_path("roads", "demo_roads_synthetic.gpkg"))]
        synthetic = any(is_synthetic_file(parse_road_source(r)[0]) for r in sources)
        status = "synthetic" if synthetic else "real"
        gpkg = out / "metro.gpkg"
        for p in (gpkg, out / "metro_members.csv", out / "metro_cities.csv"):
            check_writable(p, force=force)
        cities, counties = load_cities(), load_counties()
        bbox = tuple(float(v) for v in cities.total_bounds)
        speed_table = parse_speeds(speeds)
        lines = read_roads(
            sources,
            bbox=bbox,
            classes=_parse_classes(classes) if classes else tuple(DEFAULT_SPEEDS_KMH),
            class_col=class_col,
            speed_col=speed_col,
            speeds=speed_table,
        )
        graph = road_graph(lines)
        core_list = [c for c in cores.split(",") if c.strip()] if cores else None
        res = metro_areas(
            cities,
            counties,
            graph,
            core_list,
            minutes=minutes,
            access_speed_kmh=access_speed,
            method=method,
            bands=band_list,
            cell_m=cell_m,
            progress=True,
        )
        meta = {
            "data_status": status,
            "roads": ", ".join(sources),
            "method": f"{method}, {minutes:g} min, access {access_speed:g} km/h",
        }
        export_layers(
            {
                "metro_areas": res.areas.assign(data_status=status),
                "isochrones": res.isochrones.assign(data_status=status),
            },
            gpkg,
            force=force,
            metadata={"metro_areas": meta, "isochrones": meta},
        )
        write_csv(res.members.assign(data_status=status), out / "metro_members.csv", force=force)
        write_csv(res.cities.assign(data_status=status), out / "metro_cities.csv", force=force)
        tag = "[SYNTHETIC roads] " if synthetic else ""
        for row in res.areas.itertuples(index=False):
            typer.echo(
                f"{tag}{row.core_name} ({row.core_adcode}): {row.area_km2:,.0f} km² within "
                f"{minutes:g} min, {row.n_member_counties} county seats reached"
            )
        typer.echo(f"wrote {gpkg}, {out / 'metro_members.csv'}, {out / 'metro_cities.csv'}")
