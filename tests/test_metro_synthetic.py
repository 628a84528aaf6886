"""The bundled SYNTHETIC demo road network and the seed-003 Chengdu check on it."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from synthetic_roads import DEMO_ROADS_FILE, generate_synthetic_roads

from agglo.analysis.metro import metro_areas, road_graph, seats
from agglo.reference.paths import data_path

DEMO = data_path("roads", DEMO_ROADS_FILE)


@pytest.fixture(scope="module")
def demo_graph():
    return road_graph(DEMO)


def test_generator_is_seeded(cities, counties):
    sc = cities[cities["adcode"].str.startswith("51")]  # Sichuan only, for speed
    sk = counties[counties["city_adcode"].isin(sc["adcode"])]
    a = generate_synthetic_roads(sc, sk, seed=3)
    b = generate_synthetic_roads(sc, sk, seed=3)
    c = generate_synthetic_roads(sc, sk, seed=4)
    assert a.geometry.geom_equals_exact(b.geometry, 0).all()
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert len(a) != len(c) or not a.geometry.geom_equals_exact(c.geometry, 0).all()
    assert a.attrs["seed"] == "3" and a.attrs["data_status"] == "synthetic"


def test_bundled_file_is_labelled_and_reproducible(cities, counties):
    assert "synthetic" in DEMO.name
    assert DEMO.stat().st_size < 8e6
    info = pyogrio.read_info(DEMO, layer="roads")
    meta = info["layer_metadata"]
    assert meta["data_status"] == "synthetic" and meta["seed"] == "8"
    assert "generate_synthetic_roads" in meta["generator"]
    roads = gpd.read_file(DEMO, layer="roads")
    assert set(roads["data_status"]) == {"synthetic"}
    assert set(roads["highway"]) == {
        "motorway",
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "residential",
    }
    assert set(roads["oneway"]) == {"yes", "no"}
    ms = roads["maxspeed"]
    assert ms.isna().any() and ms.str.contains("mph").any() and ms.str.contains(";").any()
    regenerated = generate_synthetic_roads(cities, counties, seed=8)
    assert len(regenerated) == len(roads)
    assert regenerated.geometry.geom_equals_exact(roads.geometry, 1e-9).all()


def test_every_city_has_roads(cities):
    roads = gpd.read_file(DEMO, layer="roads")
    hit = roads.sindex.query(cities.geometry, predicate="intersects")
    assert set(np.unique(hit[0])) == set(range(len(cities)))


def test_demo_graph_connected(demo_graph):
    assert demo_graph.report["components"] == 1
    assert demo_graph.report["dropped_classes"] == {}


def test_chengdu_reaches_deyang_meishan_ziyang(cities, counties, demo_graph):
    """DESIGN.md (seed 003): Chengdu's one-hour area reaches the seats of Deyang, Meishan, Ziyang."""
    res = metro_areas(cities, counties, demo_graph, ["成都"], minutes=60, bands=())
    c = res.cities.set_index("adcode")
    for adcode in ("510600", "511400", "512000"):  # 德阳 眉山 资阳
        assert c.loc[adcode, "seat_minutes"] <= 60, adcode
    # the seats really are those cities' first districts (旌阳区, 东坡区, 雁江区)
    cs, _ = seats(cities, counties)
    sc = cs.set_index("adcode")["seat_county"]
    assert [sc["510600"], sc["511400"], sc["512000"]] == ["510603", "511402", "512002"]
    # but not Chongqing's, ~270 km away
    assert "500000" not in c.index or np.isnan(c.loc["500000", "seat_minutes"])
