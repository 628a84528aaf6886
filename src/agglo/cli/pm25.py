"""``agglo pm25``: mean annual PM2.5 per city or county from ACAG-style rasters."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.cli._flags import option_flags, stage_options
from agglo.measures.pm25 import PM25Options


def _parse_years(text: str | None) -> list[int] | None:
    from agglo.errors import AggloInputError

    if text is None:
        return None
    years: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                years.extend(range(a, b + 1))
            else:
                years.append(int(part))
        except ValueError as exc:
            raise AggloInputError(
                f"--years must be comma-separated years or ranges (2010,2015 or 2000-2020); "
                f"got {text!r}."
            ) from exc
    return years


def _load_polygons(polygons: str, layer: str | None):
    import pyogrio

    from agglo.errors import AggloInputError
    from agglo.reference.boundaries import load_cities, load_counties

    if polygons == "cities":
        return load_cities()
    if polygons == "counties":
        return load_counties()
    path = Path(polygons)
    if not path.exists():
        raise AggloInputError(
            f"--polygons must be 'cities', 'counties' or an existing file; got {polygons!r}."
        )
    try:
        return pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:
        raise AggloInputError(f"cannot read polygons from {path}: {exc}") from exc


def register(app: typer.Typer) -> None:
    """Add the ``pm25`` command to ``app``."""

    @app.command("pm25")
    @option_flags(PM25Options)
    def pm25_cmd(
        rasters: Path = typer.Option(
            ..., "--rasters", "-r", help="ACAG NetCDF/GeoTIFF file, or a folder of yearly files."
        ),
        years: str | None = typer.Option(
            None, "--years", help="Years to compute, e.g. 2010,2015,2020 or 2000-2020."
        ),
        polygons: str = typer.Option(
            "cities", "--polygons", help="cities, counties (bundled) or a polygon file."
        ),
        polygons_layer: str | None = typer.Option(
            None, "--polygons-layer", help="Layer of a --polygons file."
        ),
        id_col: str = typer.Option("adcode", "--id-col", help="Identifier column of the polygons."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration; its [pm25] section is used."
        ),
        out: Path = typer.Option(Path("outputs/pm25.csv"), "--out", "-o", help="Output CSV."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output."),
        *,
        given: dict,
    ) -> None:
        """Mean annual PM2.5 (µg/m³) per polygon and year, weighted by exact cell coverage."""
        from agglo.config import load_config
        from agglo.measures.pm25 import city_pm25
        from agglo.outputs.writers import check_writable, write_csv

        opts = stage_options(PM25Options, load_config(config).section("pm25"), given)
        check_writable(out, force=force)
        polys = _load_polygons(polygons, polygons_layer)
        result = city_pm25(rasters, polys, opts, years=_parse_years(years), id_col=id_col)
        df = result.means
        write_csv(result.tables()["pm25"], out, force=force)
        label = "[SYNTHETIC] " if result.synthetic else ""
        typer.echo(
            f"{label}wrote {out}: {df[id_col].nunique()} polygons x {df['year'].nunique()} years "
            f"({df.attrs['weights']}-weighted; {df.attrs['crs']}); mean "
            f"{df['pm25_mean'].mean():.1f} µg/m³, {int(df['pm25_mean'].isna().sum())} NaN"
        )
