"""``agglo hsr``: high-speed-rail flag per city and year from stations or rail lines."""

from __future__ import annotations

from pathlib import Path

import typer

from agglo.cli._flags import option_flags, stage_options
from agglo.measures.hsr import HSROptions


def register(app: typer.Typer) -> None:
    """Add the ``hsr`` command to ``app``."""

    @app.command("hsr")
    @option_flags(HSROptions)
    def hsr_cmd(
        stations: Path = typer.Option(
            ...,
            "--stations",
            "-s",
            help="Stations table (opened + lon/lat, adcode or city) or a rail-line table "
            "(线路, 现设计时速, 建成年份, 途径站点), CSV in UTF-8 or GBK, or a point/line layer.",
        ),
        years: str = typer.Option("2010,2015,2020", "--years", help="Comma-separated years."),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML run configuration; its [hsr] section is used."
        ),
        out: Path = typer.Option(Path("outputs/hsr.csv"), "--out", "-o", help="Output CSV."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output."),
        *,
        given: dict,
    ) -> None:
        """HSR flag (0/1) per city and year, and each city's first opening year."""
        from agglo.config import load_config
        from agglo.errors import AggloInputError
        from agglo.measures.hsr import city_hsr, read_stations
        from agglo.outputs.writers import check_writable, write_csv
        from agglo.reference.boundaries import load_cities, load_counties

        opts = stage_options(HSROptions, load_config(config).section("hsr"), given)
        check_writable(out, force=force)
        try:
            year_list = [int(y) for y in years.split(",") if y.strip()]
        except ValueError as exc:
            raise AggloInputError(f"--years must be comma-separated years; got {years!r}.") from exc
        table = read_stations(stations, **opts.to_dict())
        result = city_hsr(table, load_cities(), opts, years=year_list, counties=load_counties())
        write_csv(result.tables()["hsr"], out, force=force)
        access = result.access
        last = access[access["year"] == max(year_list)]
        typer.echo(
            f"{int(last['hsr'].sum())} of {len(last)} cities have HSR by {max(year_list)}; "
            f"{len(access.attrs.get('unmatched', []))} station/city name(s) outside the cities; "
            f"wrote {out}"
        )
