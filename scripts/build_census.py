"""Derive data/census/census_real.csv: real census population, urbanisation and HSR flags.

Usage::

    python scripts/build_census.py [--shared ../shared/data] [--out data/census] [--force]

Sources (both openly licensed, copied beside the table with their attribution):

- ``census/census_city_2010-2020_v1.csv`` (github leiii/census, MIT): total and urban resident
  population of every prefecture-level unit from the 6th (2010) and 7th (2020) censuses, 2010
  re-cut to 2020 boundaries.
- ``railways/railways.csv`` + ``station2city.json`` (github thaddywu/RailwayVIS, Apache-2.0):
  rail lines with opening dates, turned into HSR flags by :func:`agglo.hsr_access` (main
  stations only, so a flag of 0 may be a missed station: a lower bound).

The table is long: ``adcode, name_zh, year, variable, value, unit, provenance, source``, one
row per unit, year and variable, for the 370 units of the national boundaries. ``population``
(10k persons) = ``popu_<year>`` / 10,000 and ``urbanization_rate`` (%) = 100 ·
``popu_urban_<year>`` / ``popu_<year>`` for 2010 and 2020 (``real:census-2010``,
``real:census-2020``); ``hsr`` (0/1) for 2010, 2015 and 2020 (``real:railways``). Units or
values the census does not give (Taiwan; the urban split of e.g. 仙桃 2020, Hong Kong, Macau;
the Xinjiang corps cities) have no row: nothing is invented. The census codes are matched to
the boundary adcodes by :class:`agglo.reference.names.CityMatcher` (重庆 500100 -> 500000).
Deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import pandas as pd

from agglo.measures.hsr import hsr_access, read_railways
from agglo.reference.boundaries import load_cities, load_counties
from agglo.reference.names import CityMatcher
from agglo.reference.paths import data_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CENSUS_FILE = "census/census_city_2010-2020_v1.csv"
CENSUS_YEARS = (2010, 2020)
HSR_YEARS = (2010, 2015, 2020)
COLUMNS = ["adcode", "name_zh", "year", "variable", "value", "unit", "provenance", "source"]
CENSUS_SOURCE = "leiii/census census_city_2010-2020_v1.csv (MIT)"
RAIL_SOURCE = "thaddywu/RailwayVIS railways.csv + station2city.json (Apache-2.0), main stations"


def census_rows(census_csv: Path, cities: pd.DataFrame) -> pd.DataFrame:
    """Population (10k) and urbanisation rate (%) per unit and census year."""
    raw = pd.read_csv(census_csv, encoding="utf-8-sig", dtype={"city_code": str})
    raw = raw.drop(columns="coord")
    matcher = CityMatcher(pd.DataFrame(cities[["adcode", "name_zh", "province_zh"]]))
    codes = []
    for code, name in zip(raw["city_code"], raw["city"], strict=True):
        hit = matcher.match_adcode(code)
        if hit.adcode is None:
            hit = matcher.match_name(name)
        if hit.adcode is None:
            raise SystemExit(f"census unit {code} {name} matches no boundary unit: {hit.error}")
        codes.append(hit.adcode)
    raw["adcode"] = codes
    names = cities.set_index("adcode")["name_zh"]
    rows = []
    for year in CENSUS_YEARS:
        total = raw[f"popu_{year}"]
        urban = raw[f"popu_urban_{year}"]
        label = f"real:census-{year}"
        for i in raw.index:
            if pd.isna(total[i]) or total[i] <= 0:
                continue
            base = {"adcode": raw.at[i, "adcode"], "name_zh": names[raw.at[i, "adcode"]]}
            src = f"{CENSUS_SOURCE}, city_code {raw.at[i, 'city_code']}"
            rows.append(
                base
                | {
                    "year": year,
                    "variable": "population",
                    "value": round(float(total[i]) / 1e4, 4),
                    "unit": "10k persons",
                    "provenance": label,
                    "source": f"{src}, popu_{year} / 10000",
                }
            )
            if pd.notna(urban[i]):
                rows.append(
                    base
                    | {
                        "year": year,
                        "variable": "urbanization_rate",
                        "value": round(100 * float(urban[i]) / float(total[i]), 4),
                        "unit": "%",
                        "provenance": label,
                        "source": f"{src}, 100 * popu_urban_{year} / popu_{year}",
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def hsr_rows(railways_dir: Path, cities: pd.DataFrame, counties: pd.DataFrame) -> pd.DataFrame:
    """HSR flag (0/1) per unit for :data:`HSR_YEARS` from the RailwayVIS line table."""
    lines = read_railways(
        railways_dir / "railways.csv", station_to_city=railways_dir / "station2city.json"
    )
    flags = hsr_access(lines, cities, HSR_YEARS, counties=counties)
    names = cities.set_index("adcode")["name_zh"]
    first = flags["first_station"].fillna("-")
    return pd.DataFrame(
        {
            "adcode": flags["adcode"],
            "name_zh": flags["adcode"].map(names),
            "year": flags["year"],
            "variable": "hsr",
            "value": flags["hsr"].astype(float),
            "unit": "0/1",
            "provenance": "real:railways",
            "source": RAIL_SOURCE + "; first station " + first,
        },
        columns=COLUMNS,
    )


def build_table(shared: Path = SHARED) -> pd.DataFrame:
    """The whole derived table, sorted by variable, adcode and year."""
    cities = load_cities(region="china")
    counties = load_counties(region="china")
    table = pd.concat(
        [
            census_rows(shared / CENSUS_FILE, cities),
            hsr_rows(shared / "railways", cities, counties),
        ],
        ignore_index=True,
    )
    return table.sort_values(["variable", "adcode", "year"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared real data folder")
    ap.add_argument("--out", type=Path, default=data_path("census"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out / "census_real.csv"
    if out.exists() and not args.force:
        print(f"{out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    table = build_table(args.shared)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    table.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    tmp.replace(out)
    shutil.copyfile(args.shared / "census" / "LICENSE", args.out / "LICENSE-census.txt")
    shutil.copyfile(args.shared / "railways" / "LICENSE", args.out / "LICENSE-railways.txt")
    counts = table.groupby(["variable", "year"]).size().to_dict()
    print(f"wrote {out}: {len(table)} rows {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
