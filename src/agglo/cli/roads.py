"""``agglo roads``: road-network density per city from an OSM extract or any line layer."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agglo.cli._flags import option_flags, stage_options
from agglo.measures.roads import RoadsOptions


def _parse_bbox(text: str | None) -> tuple[float, ...] | None:
    from agglo.errors import AggloInputError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise AggloInputError(
            f"--bbox must be min_lon,min_lat,max_lon,max_lat; got {text!r}."
        ) from exc
    if len(values) != 4:
        raise AggloInputError(f"--bbox must be min_lon,min_lat,max_lon,max_lat; got {text!r}.")
    return values


def _parse_classes(text: str) -> str | list[str]:
    from agglo.measures.roads import CLASS_PRESETS

    if text in CLASS_PRESETS:
        return text
    return [c.strip() for c in text.split(",") if c.strip()]


def parse_speeds(text: str | None) -> dict[str, float] | None:
    """``--speeds``: ``class=km/h,...`` or a JSON file of the same mapping."""
    from agglo.errors import AggloInputError

    if text is None:
        return None
    if Path(text).is_file():
        try:
            table = json.loads(Path(text).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AggloInputError(f"--speeds {text}: cannot read JSON ({exc}).") from exc
    else:
        table = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        if not table:
            raise AggloInputError(
                f"--speeds must be class=km/h pairs (motorway=100,primary=60) or a JSON file; "
                f"got {text!r}."
            )
    try:
        out = {str(k).strip(): float(v) for k, v in dict(table).items()}
    except (TypeError, ValueError) as exc:
        raise AggloInputError(f"--speeds: speeds must be numbers in km/h; got {table!r}.") from exc
    bad = {k: v for k, v in out.items() if not 0 < v <= 200}
    if bad:
        raise AggloInputError(f"--speeds: km/h must be in (0, 200]; got {bad}.")
    return out


ROADS_HELP = (
    "OSM .osm.pbf extract or any line layer (gpkg, shp, gdb); repeat for several files. "
    "FILE=CLASS gives every line of FILE one class (OSM value or 高速公路/国道/省道/县道/乡道)."
)


def register(app: typer.Typer) -> None:
    """Add the ``roads`` command to ``app``."""

    @app.command("roads")
    @option_flags(RoadsOptions)
    def roads_cmd(
        roads: list[str] = typer.Option(
            ..., "--roads", "-r", help=ROADS_HELP, metavar="FILE[=CLASS]"
        ),
        polygons: Path | None = typer.Option(
            None, "--polygons", help="Polygon layer (default: the bundled Yangtze-belt cities)."
        ),
        polygons_layer: str | None = typer.Option(
            None, "--polygons-layer", help="Layer of --polygons."
        ),
        id_col: str = typer.Option("adcode", "--id-col", help="Identifier column of the polygons."),
        mapping_file: Path | None = typer.Option(
            None, "--mapping", help="JSON file: source class value -> OSM highway value."
        ),
        bbox: str | None = typer.Option(
            None,
            "--bbox",
            help="min_lon,min_lat,max_lon,max_lat to read (default: the polygons' extent).",
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration; its [roads] section is used."
        ),
        out: Path = typer.Option(
            Path("outputs/road_density.csv"), "--out", "-o", help="Output CSV."
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing output."),
        *,
        given: dict,
    ) -> None:
        """Road length (geodesic km) and density (km/km², km/100 km²) per polygon."""
        from agglo.config import load_config
        from agglo.errors import AggloInputError
        from agglo.measures.geodesy import ensure_wgs84
        from agglo.measures.roads import city_road_density, read_roads
        from agglo.outputs.writers import check_writable, write_csv
        from agglo.reference.boundaries import load_cities

        given = {"roads": dict(given["roads"])}
        if mapping_file is not None:
            try:
                given["roads"]["mapping"] = json.loads(mapping_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise AggloInputError(
                    f"--mapping {mapping_file}: cannot read JSON ({exc})."
                ) from exc
        opts = stage_options(RoadsOptions, load_config(config).section("roads"), given)
        check_writable(out, force=force)
        if polygons is None:
            polys = load_cities()
        else:
            import pyogrio

            try:
                polys = pyogrio.read_dataframe(polygons, layer=polygons_layer)
            except Exception as exc:
                raise AggloInputError(f"cannot read polygons from {polygons}: {exc}") from exc
        box = _parse_bbox(bbox) or tuple(ensure_wgs84(polys, what="polygons").total_bounds)
        lines = read_roads(roads, bbox=box, **opts.to_dict())
        result = city_road_density(lines, polys, opts, id_col=id_col)
        table = result.tables()["road_density"]
        write_csv(table, out, force=force)
        typer.echo(
            f"{'[SYNTHETIC] ' if result.synthetic else ''}{len(lines):,} road lines, "
            f"{table['length_km'].sum():,.1f} km in {len(table)} polygons; median density "
            f"{table['density_km_per_100km2'].median():.2f} km/100 km²; wrote {out}"
        )
