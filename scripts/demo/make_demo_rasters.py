"""Write the bundled SYNTHETIC PM2.5 demo rasters (``data/rasters/``).

Three annual grids (2010, 2015, 2020) at 0.1° over the Yangtze River Economic Belt
(97-123.5°E, 21-35.5°N), in the layout of the ACAG annual NetCDF files (``PM25`` on ascending
``lat`` x ``lon``, float32, ``_FillValue`` -999), so the demo exercises the same reader as real
files. The field comes from :func:`synthetic_rasters.synthetic_pm25_field` (seeded; see
``data/rasters/README.md``); sea cells east of the coast are written as fill values. Every file
name contains ``synthetic`` and every file says so in its metadata.

Usage::

    python scripts/demo/make_demo_rasters.py [--out data/rasters] [--seed 20101115]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from synthetic_rasters import synthetic_pm25_field

from agglo.io.rasters import write_acag_netcdf

YEARS = (2010, 2015, 2020)
RES = 0.1
WEST, EAST, SOUTH, NORTH = 97.0, 123.5, 21.0, 35.5
SEED = 20101115


def sea_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Open sea: more than ~1.2° east of a rough coast line (122°E at 31°N, 118.5°E at 22°N).

    Coastal waters and islands such as Zhoushan keep values, as in the ACAG grids.
    """
    coast = 118.5 + (np.clip(lat, 22.0, 35.5) - 22.0) * (122.0 - 118.5) / 9.0
    coast = np.where(lat > 31.0, 122.2 - (lat - 31.0) * 0.8, coast)
    return lon[None, :] > coast[:, None] + 1.2


def make(out: Path, *, seed: int = SEED) -> list[Path]:
    """Write the three demo files into ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    lat = np.round(np.arange(SOUTH + RES / 2, NORTH, RES), 6)
    lon = np.round(np.arange(WEST + RES / 2, EAST, RES), 6)
    sea = sea_mask(lat, lon)
    paths = []
    for year in YEARS:
        field = synthetic_pm25_field(lat, lon, year=year, seed=seed).astype(np.float64)
        field = np.round(field, 1)
        field[sea] = np.nan
        path = out / f"synthetic_CNNPM25.0p10.YangtzeBelt.{year}.nc"
        write_acag_netcdf(
            path,
            field,
            lat,
            lon,
            year=year,
            synthetic=True,
            title=f"annual mean PM2.5 {year}, Yangtze belt, 0.1 deg (agglo demo, seed {seed})",
        )
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[2] / "data" / "rasters"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for p in make(args.out, seed=args.seed):
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
