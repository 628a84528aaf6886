"""The bundled SYNTHETIC demo road network (the seed-003 check is tested on a hand-computed
network in test_metro.py: this network was laid between the generator's own seats)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from synthetic_roads import DEMO_ROADS_FILE, generate_synthetic_roads

from agglo.analysis.metro import road_graph
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
