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
