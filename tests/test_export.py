"""GeoPackage and shapefile exports: round trips, field names, atomicity, --force."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from agglo.errors import AggloInputError, OutputExistsError
from agglo.outputs.writers import atomic_path, export, export_layers, shapefile_field_names


@pytest.fixture
def layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "adcode": ["510100", "420100"],
            "name_zh": ["成都市", "武汉市"],
            "agglomeration_id": ["cy", None],
            "density_km_per_km2": [1.25, 0.5],
            "density_km_per_100km2": [125.0, 50.0],
            "population_persons": np.array([20_937_757, 3_000_000_000], dtype="int64"),
            "core": [True, False],
        },
        geometry=[shapely.box(103, 30, 104, 31), shapely.box(114, 30, 115, 31)],
        crs=4326,
    )


def test_gpkg_round_trip_keeps_names_values_dtypes(layer, tmp_path):
    path = export(layer, tmp_path / "out.gpkg", layer="cities", metadata={"units": "km"})
    back = pyogrio.read_dataframe(path, layer="cities")
    assert back["name_zh"].tolist() == ["成都市", "武汉市"]
    assert back["adcode"].tolist() == ["510100", "420100"]
    assert back["population_persons"].dtype == np.int64
    assert back["population_persons"].iloc[1] == 3_000_000_000  # > 2**31, not clipped
    assert back["density_km_per_100km2"].tolist() == [125.0, 50.0]
    assert back["core"].tolist() == [1, 0]
    assert back.crs.to_epsg() == 4326
    meta = pyogrio.read_info(path, layer="cities")["layer_metadata"]
    assert meta["units"] == "km"
    assert "agglo_version" in meta


def test_shapefile_round_trip_with_short_names_and_sidecars(layer, tmp_path):
    path = export(layer, tmp_path / "cities.shp", metadata={"data_status": "synthetic"})
    for suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        assert path.with_suffix(suffix).exists(), suffix
    assert path.with_suffix(".cpg").read_text() == "UTF-8"
    mapping = pd.read_csv(tmp_path / "cities.fields.csv", dtype=str)
    assert mapping["short_name"].map(lambda s: len(s.encode())).max() <= 10
    assert mapping["short_name"].is_unique
    back = pyogrio.read_dataframe(path)
    full = dict(zip(mapping["short_name"], mapping["full_name"], strict=True))
    back = back.rename(columns=full)
    assert back["name_zh"].tolist() == ["成都市", "武汉市"]
    assert back["density_km_per_km2"].tolist() == [1.25, 0.5]
    assert back["density_km_per_100km2"].tolist() == [125.0, 50.0]
    assert back["population_persons"].tolist() == [20_937_757, 3_000_000_000]
    assert back.crs.to_epsg() == 4326


def test_field_names_unique_and_at_most_ten_bytes():
    cols = ["a" * 12, "a" * 11, "a" * 10, "城市群名称代码", "城市群名称简称"]
    names = shapefile_field_names(cols)
    assert len(set(v.lower() for v in names.values())) == len(cols)
    assert all(len(v.encode("utf-8")) <= 10 for v in names.values())
    # multi-byte characters are never split: 3 whole characters = 9 bytes
    assert names["城市群名称代码"] == "城市群"


def test_long_text_in_shapefile_is_an_error_not_clipped(layer, tmp_path):
    layer = layer.assign(note=["x" * 300, "short"])
    with pytest.raises(AggloInputError, match="254-byte"):
        export(layer, tmp_path / "c.shp")
    assert not (tmp_path / "c.shp").exists()


def test_existing_outputs_need_force(layer, tmp_path):
    export(layer, tmp_path / "a.gpkg")
    with pytest.raises(OutputExistsError, match="force"):
        export(layer, tmp_path / "a.gpkg")
    export(layer.iloc[:1], tmp_path / "a.gpkg", force=True)
    assert len(pyogrio.read_dataframe(tmp_path / "a.gpkg")) == 1
    export(layer, tmp_path / "b.shp")
    with pytest.raises(OutputExistsError, match="force"):
        export(layer, tmp_path / "b.shp")


def test_failed_write_leaves_previous_output_intact(layer, tmp_path):
    target = tmp_path / "keep.gpkg"
    export(layer, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target, force=True) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.gpkg"]


def test_export_layers_writes_all_layers(layer, tmp_path):
    pts = layer.assign(geometry=layer.representative_point())
    path = export_layers({"cities": layer, "seats": pts}, tmp_path / "run.gpkg")
    assert [n for n, _ in pyogrio.list_layers(path)] == ["cities", "seats"]


def test_bad_extension_and_missing_crs(layer, tmp_path):
    with pytest.raises(AggloInputError, match=r"\.gpkg"):
        export(layer, tmp_path / "x.geojson")
    with pytest.raises(AggloInputError, match="no CRS"):
        export(layer.set_crs(None, allow_override=True), tmp_path / "x.gpkg")


def test_input_is_not_modified(layer, tmp_path):
    before = layer.copy()
    export(layer, tmp_path / "x.shp")
    pd.testing.assert_frame_equal(layer, before)
