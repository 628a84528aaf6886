"""``agglo hsr``: high-speed-rail flag per city and year from stations or rail lines."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``hsr`` command to ``app``."""

    @app.command("hsr")
    def hsr_cmd(
        stations: Path = typer.Option(
            ...,
            "--stations",
            "-s",
            help="Stations table (opened + lon/lat, adcode or city) or a rail-line table "
            "(线路, 现设计时速, 建成年份, 途径站点), CSV in UTF-8 or GBK, or a point/line layer.",
        ),
        station_to_city: Path | None = typer.Option(
            None, "--station-to-city", help="JSON station -> city name (rail-line tables)."
        ),
        years: str = typer.Option("2010,2015,2020", "--years", help="Comma-separated years."),
        min_speed: float = typer.Option(
            250, "--min-speed", help="Design speed (km/h) from which a line is high-speed."
        ),
        rule: str = typer.Option("speed", "--rule", help="speed, type or either."),
        encoding: str | None = typer.Option(None, "--encoding", help="CSV encoding (auto)."),
        out: Path = typer.Option(Path("hsr.csv"), "--out", "-o", help="Output CSV."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    ) -> None:
        """HSR flag (0/1) per city and year, and each city's first opening year."""
        from agglo.errors import AggloInputError
        from agglo.measures.hsr import hsr_access, read_stations
        from agglo.outputs.writers import check_writable, write_csv
        from agglo.reference.boundaries import load_cities, load_counties

        check_writable(out, force=force)
        try:
            year_list = [int(y) for y in years.split(",") if y.strip()]
        except ValueError as exc:
            raise AggloInputError(f"--years must be comma-separated years; got {years!r}.") from exc
        table = read_stations(
            stations,
            encoding=encoding,
            station_to_city=station_to_city,
            min_speed_kmh=min_speed,
            rule=rule,
        )
        cities = load_cities()
        result = hsr_access(
            table, cities, year_list, counties=load_counties(), min_speed_kmh=min_speed
        )
        result.insert(1, "name_zh", result["adcode"].map(cities.set_index("adcode")["name_zh"]))
        write_csv(result, out, force=force)
        last = result[result["year"] == max(year_list)]
        typer.echo(
            f"{int(last['hsr'].sum())} of {len(last)} cities have HSR by {max(year_list)}; "
            f"{len(result.attrs.get('unmatched', []))} station/city name(s) outside the cities; "
            f"wrote {out}"
        )
