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


def register(app: typer.Typer) -> None:
    """Add the ``roads`` command to ``app``."""

    @app.command("roads")
    @option_flags(RoadsOptions)
    def roads_cmd(
        roads: Path = typer.Option(
            ..., "--roads", "-r", help="OSM .osm.pbf extract or any line layer (gpkg, shp, ...)."
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
        out: Path = typer.Option(Path("road_density.csv"), "--out", "-o", help="Output CSV."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output."),
        *,
        given: dict,
    ) -> None:
        """Road length (geodesic km) and density (km/km², km/100 km²) per polygon."""
        from agglo.config import load_config
        from agglo.errors import AggloInputError
        from agglo.measures.geodesy import ensure_wgs84
        from agglo.measures.roads import read_roads, road_density
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
        result = road_density(lines, polys, id_col=id_col, classes=opts.classes)
        if "name_zh" in polys.columns:
            result.insert(1, "name_zh", polys["name_zh"].to_numpy())
        write_csv(result, out, force=force)
        typer.echo(
            f"{len(lines):,} road lines, {result['length_km'].sum():,.1f} km in "
            f"{len(result)} polygons; median density "
            f"{result['density_km_per_100km2'].median():.2f} km/100 km²; wrote {out}"
        )
