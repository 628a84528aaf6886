"""Every output records the library versions and no paths of the machine that made it."""

from __future__ import annotations

import json
from importlib import metadata

import geopandas as gpd
import pyogrio
import shapely

from agglo.outputs.provenance import library_versions, portable
from agglo.outputs.writers import export, export_layers
from agglo.reference.paths import data_dir


def _layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"adcode": ["1"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)


def test_versions_are_the_installed_ones():
    v = library_versions()
    for name in ("esda", "libpysal", "exactextract"):
        assert v[name] == metadata.version(name)


def test_layer_metadata_has_versions_and_no_machine_paths(tmp_path):
    meta = {
        "provenance": {"panel": f"{tmp_path}/in/yearbook.xlsx (real)"},
        "note": f"read {data_dir()}/panel/demo_panel_synthetic.csv",
    }
    gpkg = tmp_path / "out.gpkg"
    export_layers({"cities": _layer()}, gpkg, metadata={"cities": meta})
    stored = pyogrio.read_info(gpkg, layer="cities")["layer_metadata"]
    assert json.loads(stored["library_versions"])["esda"] == metadata.version("esda")
    assert "yearbook.xlsx" in stored["provenance"] and str(tmp_path) not in stored["provenance"]
    assert stored["note"] == "read <agglo data>/panel/demo_panel_synthetic.csv"
    shp = tmp_path / "shp" / "cities.shp"
    export(_layer(), shp, metadata=meta)
    side = json.loads((tmp_path / "shp" / "cities.metadata.json").read_text())
    assert str(tmp_path) not in json.dumps(side)
    assert json.loads(side["library_versions"])["libpysal"] == metadata.version("libpysal")


def test_portable_keeps_units_urls_and_relative_paths():
    for text in ("km/100 km²", "tables/city_scores.csv", "https://example.org/a/b.nc", "1/2"):
        assert portable(text) == text
    assert portable(r"D:\data\acag\2020.nc") == "2020.nc"


# --- per-value provenance of the panel (issue 17 item 2) -----------------------------------

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from agglo.io.panel import DEMO_PANEL, read_panel  # noqa: E402


@pytest.fixture(scope="module")
def demo_read():
    return read_panel(DEMO_PANEL)


def _source_labels() -> pd.DataFrame:
    """The sidecar, read independently of read_panel."""
    src = pd.read_csv(DEMO_PANEL.parent / "demo_panel_provenance.csv", dtype={"adcode": str})
    return src.rename(columns={"variable": "indicator"})


def test_read_panel_keeps_every_value_label(demo_read):
    src = _source_labels()
    got = demo_read.labelled()
    merged = got.merge(src, on=["adcode", "year", "indicator"], suffixes=("", "_src"))
    assert len(merged) == len(got) == len(src)
    assert (merged["provenance"] == merged["provenance_src"]).all()
    assert demo_read.data_status == "partly synthetic"
    table = demo_read.indicator_provenance().set_index("indicator")
    assert table.loc["hsr", "data_status"] == "real"
    assert table.loc["population", "data_status"] == "real+interpolated"
    n_syn = (src[src["indicator"] == "urbanization_rate"]["provenance"] == "synthetic").sum()
    assert table.loc["urbanization_rate", "n_synthetic"] == n_syn > 0
    assert table.loc["gdp_per_capita", "data_status"] == "synthetic"
    assert "hsr" not in demo_read.synthetic_indicators
    assert "gdp_per_capita" in demo_read.synthetic_indicators


def test_index_tables_and_layer_carry_the_labels(demo_read):
    from agglo.analysis.index import integration_index
    from agglo.reference.boundaries import load_cities, load_membership

    src = _source_labels()
    res = integration_index(
        demo_read.labelled(),
        load_membership(),
        {"sensitivity": False},
        institutions=pd.DataFrame(),
        cities=load_cities(),
    )
    gaps = res.city_gaps.merge(src, on=["adcode", "year", "indicator"], suffixes=("", "_src"))
    assert len(gaps) == len(res.city_gaps)
    assert (gaps["provenance"] == gaps["provenance_src"]).all()
    cells = res.indicators.set_index(["agglomeration_id", "year", "indicator"])
    assert cells.loc[("yrd", 2010, "hsr"), "provenance"] == "real:railways"
    assert cells.loc[("yrd", 2010, "avg_wage"), "provenance"] == "synthetic"
    meta = res.layer_metadata()["agglomerations"]
    assert meta["indicator_provenance"]["hsr"] == "real"
    assert "hsr" in meta["real_indicators"] and "avg_wage" in meta["synthetic_indicators"]
    assert "urbanization_rate" in meta["synthetic_indicators"]  # 6 synthetic values


def test_run_outputs_name_the_synthetic_indicators(tmp_path):
    from agglo.config import RunConfig
    from agglo.pipeline import run_stages

    outputs = run_stages(RunConfig(), ["index"], out_dir=tmp_path)
    (entry,) = [s for s in outputs.synthetic if s.startswith(DEMO_PANEL.name)]
    assert "avg_wage" in entry and "hsr" not in entry and "population" not in entry
    table = outputs.tables["indicator_provenance"].set_index("indicator")
    # pm25 and road density are recomputed by the stages from the bundled synthetic files
    assert table.loc["pm25", "data_status"] == "synthetic"
    assert table.loc["hsr", "data_status"] == "real"
    assert "provenance" in outputs.tables["city_gaps"]
    assert "provenance" in outputs.tables["index_indicators"]
    assert "indicator_provenance" in outputs.layer_metadata["agglomerations"]
