"""Write the bundled SYNTHETIC demo road network ``data/roads/demo_roads_synthetic.gpkg``.

Usage: ``python scripts/demo/make_demo_roads.py [--seed 8] [--out PATH]``. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthetic_roads import DEMO_ROADS_FILE, write_demo_roads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "data" / "roads" / DEMO_ROADS_FILE,
    )
    args = ap.parse_args()
    path = write_demo_roads(args.out, seed=args.seed, force=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, SYNTHETIC, seed {args.seed})")


if __name__ == "__main__":
    main()
