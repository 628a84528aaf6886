"""Tests of agglo.analysis.metro: road graph, travel times, catchments, metro areas.

Reference values are hand computations (in comments) or networkx on the same input.
Lengths along a meridian at the equator: 0.01 deg of latitude = 1105.74 m (WGS84; 110.574 km
per degree); at 60 km/h one km takes exactly one minute.
"""

from __future__ import annotations

import itertools
import logging
import math

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod, Transformer

from agglo.analysis.metro import (
    DEFAULT_SPEEDS_KMH,
    commute_catchment,
    metro_areas,
    parse_maxspeed,
    resolve_cores,
    road_graph,
    travel_times,
)
from agglo.errors import AggloInputError

GEOD = Geod(ellps="WGS84")
DEG_LAT_M = 1105.742759  # 0.01 deg of latitude at the equator, metres (GEOD.inv(0,0,0,0.01))


def lines(rows):
    """rows of (coords, highway, maxspeed, oneway) -> GeoDataFrame."""
    return gpd.GeoDataFrame(
        {
            "highway": [r[1] for r in rows],
            "maxspeed": [r[2] for r in rows],
            "oneway": [r[3] for r in rows],
        },
        geometry=[shapely.LineString(r[0]) for r in rows],
        crs=4326,
    )


def minutes_of(tt: gpd.GeoDataFrame, lon: float, lat: float) -> float:
    hit = tt[(np.abs(tt.geometry.x - lon) < 1e-9) & (np.abs(tt.geometry.y - lat) < 1e-9)]
    return float(hit["minutes"].iloc[0]) if len(hit) else math.inf


def test_degree_constant():
    assert GEOD.inv(0, 0, 0, 0.01)[2] == pytest.approx(DEG_LAT_M, abs=1e-3)


# ---------------------------------------------------------------- hand-built graphs


def test_hand_graph_takes_faster_detour():
    # A(0,0) -> C(0,0.02) direct on a residential road (25 km/h): 2.2115 km -> 5.3075 min
    # A -> B(0,0.01) -> C on a 60 km/h primary, but drawn as a separate line via B:
    # 2 x 1.10574 km at 60 km/h = 2.2115 min  (minutes = km at 60 km/h)
    roads = lines(
        [
            ([(0, 0), (0, 0.02)], "residential", None, "no"),  # only 2 vertices: no node at B
            ([(0, 0), (0.0, 0.01), (0, 0.02)], "primary", "60", "no"),
        ]
    )
    g = road_graph(roads)
    assert g.n_nodes == 3
    tt = travel_times(g, [(0, 0)], minutes=60).frame()
    assert minutes_of(tt, 0, 0.02) == pytest.approx(2 * DEG_LAT_M / 1000, rel=1e-8)
    assert minutes_of(tt, 0, 0.01) == pytest.approx(DEG_LAT_M / 1000, rel=1e-8)
    assert minutes_of(tt, 0, 0) == 0.0


def test_class_speed_used_without_maxspeed_and_override():
    roads = lines([([(0, 0), (0, 0.01)], "secondary", None, "no")])
    t50 = travel_times(road_graph(roads), [(0, 0)]).frame()
    # 1.10574 km at 50 km/h = 1.32689 min
    assert minutes_of(t50, 0, 0.01) == pytest.approx(DEG_LAT_M / 1000 * 60 / 50, rel=1e-8)
    t30 = travel_times(road_graph(roads, speeds={"secondary": 30}), [(0, 0)]).frame()
    assert minutes_of(t30, 0, 0.01) == pytest.approx(DEG_LAT_M / 1000 * 2, rel=1e-8)
    assert DEFAULT_SPEEDS_KMH["secondary"] == 50  # documented table not changed by override


@pytest.mark.parametrize(
    ("tag", "kmh"),
    [
        ("60", 60.0),
        ("60 mph", 96.56064),  # 60 x 1.609344
        ("50;60", 50.0),  # several values: the lowest (conservative)
        ("80 km/h", 80.0),
        ("10 knots", 18.52),
        (45, 45.0),
    ],
)
def test_parse_maxspeed_valid(tag, kmh):
    assert parse_maxspeed(tag) == pytest.approx(kmh)


@pytest.mark.parametrize(
    "tag", [None, float("nan"), "", "CN:urban", "none", "walk", "0", "250", "60;x"]
)
def test_parse_maxspeed_invalid_is_nan(tag):
    assert math.isnan(parse_maxspeed(tag))


def test_maxspeed_strings_in_graph():
    # "60 mph" -> 96.56 km/h; "50;60" -> 50; "CN:urban" invalid -> primary class speed 60
    roads = lines(
        [
            ([(0, 0), (0, 0.01)], "primary", "60 mph", "no"),
            ([(1, 0), (1, 0.01)], "primary", "50;60", "no"),
            ([(2, 0), (2, 0.01)], "primary", "CN:urban", "no"),
        ]
    )
    g = road_graph(roads)
    tt = travel_times(g, [(0, 0), (1, 0), (2, 0)], max_access_km=1).frame()
    km = DEG_LAT_M / 1000
    assert minutes_of(tt, 0, 0.01) == pytest.approx(km * 60 / 96.56064, rel=1e-8)
    assert minutes_of(tt, 1, 0.01) == pytest.approx(km * 60 / 50, rel=1e-8)
    assert minutes_of(tt, 2, 0.01) == pytest.approx(km, rel=1e-8)
    # maxspeed=False ignores tags
    t2 = travel_times(road_graph(roads, maxspeed=False), [(0, 0)], max_access_km=1).frame()
    assert minutes_of(t2, 0, 0.01) == pytest.approx(km, rel=1e-8)


def test_oneway_respected():
    roads = lines(
        [
            ([(0, 0), (0, 0.01)], "primary", "60", "yes"),
            ([(0, 0.01), (0, 0.02)], "primary", "60", "-1"),  # only 0.02 -> 0.01
        ]
    )
    g = road_graph(roads)
    fwd = travel_times(g, [(0, 0)]).frame()
    assert minutes_of(fwd, 0, 0.01) == pytest.approx(DEG_LAT_M / 1000)
    assert math.isinf(minutes_of(fwd, 0, 0.02))  # against the reverse one-way
    back = travel_times(g, [(0, 0.01)]).frame()
    assert math.isinf(minutes_of(back, 0, 0))  # against the one-way
    top = travel_times(g, [(0, 0.02)]).frame()
    assert minutes_of(top, 0, 0.01) == pytest.approx(DEG_LAT_M / 1000)  # with the "-1" way
    assert math.isinf(minutes_of(top, 0, 0))  # then against the "yes" way
    # oneway=False: both ways everywhere
    both = travel_times(road_graph(roads, oneway=False), [(0, 0.01)]).frame()
    assert minutes_of(both, 0, 0) == pytest.approx(DEG_LAT_M / 1000)


def test_disconnected_components_reported(caplog):
    roads = lines(
        [
            ([(0, 0), (0, 0.01), (0, 0.02)], "primary", None, "no"),
            ([(0.5, 0), (0.5, 0.01)], "primary", None, "no"),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="agglo.analysis.metro"):
        g = road_graph(roads)
    assert g.report["components"] == 2
    assert g.report["largest_component_share"] == pytest.approx(3 / 5)
    assert sorted(np.bincount(g.component).tolist()) == [2, 3]
    assert np.bincount(g.component)[0] == 3  # 0 = largest
    assert "2 disconnected fragments" in caplog.text
    tt = travel_times(g, [(0, 0)]).frame()
    assert len(tt) == 3  # other fragment never reached
    with caplog.at_level(logging.WARNING, logger="agglo.analysis.metro"):
        travel_times(g, [(0.5, 0)])
    assert "disconnected fragment" in caplog.text


def test_source_off_network_adds_access_leg():
    roads = lines([([(0, 0), (0, 0.01)], "primary", "60", "no")])
    g = road_graph(roads)
    # source 0.01 deg south of (0,0): 1105.74 m at 15 km/h = 4.42297 min, then 1.10574 min
    tt = travel_times(g, [(0, -0.01)], access_speed_kmh=15).frame()
    access = DEG_LAT_M / 1000 / 15 * 60
    assert minutes_of(tt, 0, 0) == pytest.approx(access, rel=1e-6)
    assert minutes_of(tt, 0, 0.01) == pytest.approx(access + DEG_LAT_M / 1000, rel=1e-6)
    with pytest.raises(AggloInputError, match=r"more than max_access_km=0\.5 km"):
        travel_times(g, [(0, -0.01)], max_access_km=0.5)


def test_zero_and_bad_limits():
    roads = lines([([(0, 0), (0, 0.01)], "primary", "60", "no")])
    g = road_graph(roads)
    tt = travel_times(g, [(0, 0)], minutes=0).frame()
    assert tt["minutes"].tolist() == [0.0]  # only the source's own node
    cat = commute_catchment(g, [(0, 0)], minutes=0)
    assert cat.polygons.geometry.iloc[0].is_empty
    assert float(cat.polygons["area_km2"].iloc[0]) == 0.0
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(AggloInputError, match="minutes must be a finite number >= 0"):
            travel_times(g, [(0, 0)], minutes=bad)
    with pytest.raises(AggloInputError, match="method must be one of"):
        commute_catchment(g, [(0, 0)], method="isochrone")
    with pytest.raises(AggloInputError, match="access_speed_kmh must be"):
        commute_catchment(g, [(0, 0)], access_speed_kmh=0)


def test_bad_roads_inputs():
    with pytest.raises(AggloInputError, match="no 'highway' column"):
        road_graph(
            gpd.GeoDataFrame({"x": [1]}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=4326)
        )
    with pytest.raises(AggloInputError, match="no drivable road lines"):
        road_graph(lines([([(0, 0), (0, 1)], "footway", None, "no")]))
    with pytest.raises(AggloInputError, match="not found"):
        road_graph("/nonexistent/roads.gpkg")
    with pytest.raises(AggloInputError, match="speeds must be km/h"):
        road_graph(lines([([(0, 0), (0, 1)], "primary", None, "no")]), speeds={"primary": -5})


def test_dropped_classes_reported_and_snapping():
    roads = lines(
        [
            ([(0, 0), (0, 0.01)], "primary", None, "no"),
            ([(0, 0.0100001), (0.01, 0.01)], "primary", None, "no"),  # 1.1 cm off: snapped
            ([(0, 0), (0.01, 0)], "footway", None, "no"),
        ]
    )
    g = road_graph(roads)
    assert g.report["dropped_classes"] == {"footway": 1}
    assert g.n_nodes == 3 and g.report["components"] == 1
    assert road_graph(roads, snap_m=1e-3).n_nodes == 4  # 1 mm tolerance: not snapped


def test_input_not_mutated():
    roads = lines([([(0, 0), (0, 0.01)], "primary", "60 mph", "yes")])
    before = roads.copy()
    road_graph(roads)
    pd.testing.assert_frame_equal(roads, before)


# ---------------------------------------------------------------- networkx cross-check


def random_network(seed: int, n_pts: int = 120):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 0.2, size=(n_pts, 2)) + np.array([104.0, 30.5])
    classes = list(DEFAULT_SPEEDS_KMH)
    rows = []
    for _ in range(260):
        i, j = rng.choice(n_pts, 2, replace=False)
        k = rng.choice(n_pts)  # middle vertex: polyline of two segments
        rows.append(
            (
                [tuple(pts[i]), tuple(pts[k]), tuple(pts[j])]
                if k not in (i, j)
                else [tuple(pts[i]), tuple(pts[j])],
                classes[rng.integers(len(classes))],
                rng.choice([None, "40", "70", "30 mph"]),
                rng.choice(["no", "no", "yes", "-1"]),
            )
        )
    return lines(rows), pts


def nx_reference(roads: gpd.GeoDataFrame) -> nx.DiGraph:
    """Independent graph: nodes keyed by exact coordinates, weight = geodesic m / speed."""
    G = nx.DiGraph()
    for geom, hw, ms, ow in zip(
        roads.geometry, roads.highway, roads.maxspeed, roads.oneway, strict=True
    ):
        speed = None if pd.isna(ms) else {"40": 40.0, "70": 70.0, "30 mph": 30 * 1.609344}[ms]
        speed = speed or DEFAULT_SPEEDS_KMH[hw]
        c = list(geom.coords)
        for a, b in itertools.pairwise(c):
            w = GEOD.inv(a[0], a[1], b[0], b[1])[2] / 1000 / speed * 60
            pairs = {"no": [(a, b), (b, a)], "yes": [(a, b)], "-1": [(b, a)]}[ow]
            for x, y in pairs:
                if not G.has_edge(x, y) or G[x][y]["weight"] > w:
                    G.add_edge(x, y, weight=w)
    return G


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_graphs_equal_networkx(seed):
    roads, pts = random_network(seed)
    g = road_graph(roads)
    G = nx_reference(roads)
    srcs = [tuple(pts[0]), tuple(pts[5]), tuple(pts[9])]
    ref = nx.multi_source_dijkstra_path_length(G, set(srcs), cutoff=20)
    tt = travel_times(g, srcs, minutes=20).frame()
    got = {(x, y): m for x, y, m in zip(tt.geometry.x, tt.geometry.y, tt["minutes"], strict=True)}
    assert set(got) == set(ref)
    diff = max(abs(got[k] - ref[k]) for k in ref)
    assert diff < 1e-9
    assert len(ref) > 20  # the cut-off leaves a non-trivial set


def test_nearest_source_label():
    roads = lines([([(0, 0), (0, 0.01), (0, 0.02), (0, 0.03)], "primary", "60", "no")])
    src = gpd.GeoDataFrame(
        {"name": ["a", "b"]}, geometry=[shapely.Point(0, 0), shapely.Point(0, 0.03)], crs=4326
    ).set_index("name")
    tt = travel_times(road_graph(roads), src).frame()
    by_lat = dict(zip(tt.geometry.y.round(2), tt["source"], strict=True))
    assert by_lat == {0.0: "a", 0.01: "a", 0.02: "b", 0.03: "b"}


# ---------------------------------------------------------------- catchment polygon


def grid_network(n: int = 9, step: float = 0.005, lon0: float = 104.0, lat0: float = 30.6):
    rows = []
    for i in range(n):
        xs = [(lon0 + k * step, lat0 + i * step) for k in range(n)]
        ys = [(lon0 + i * step, lat0 + k * step) for k in range(n)]
        hw = "primary" if i == n // 2 else "residential"
        rows.append((xs, hw, None, "no"))
        rows.append((ys, "residential", None, "no"))
    return lines(rows)


def brute_force_times(roads, src, qx, qy, to_m, access_kmh, sample_m=10.0):
    """min over road points p of t_p + |q - p| / access (and the direct walk), by sampling."""
    G = nx_reference(roads).to_undirected()
    t_node = nx.single_source_dijkstra_path_length(G, src)
    sx, sy, st = [], [], []
    for a, b, d in G.edges(data=True):
        ax, ay = to_m.transform(*a)
        bx, by = to_m.transform(*b)
        L = math.hypot(bx - ax, by - ay)
        s = np.linspace(0, 1, max(int(L / sample_m), 2))
        ta, tb = t_node.get(a, math.inf), t_node.get(b, math.inf)
        sx.append(ax + s * (bx - ax))
        sy.append(ay + s * (by - ay))
        st.append(np.minimum(ta + s * d["weight"], tb + (1 - s) * d["weight"]))
    sx, sy, st = (np.concatenate(v) for v in (sx, sy, st))
    mpm = access_kmh * 1000 / 60
    out = np.full(len(qx), np.inf)
    for c in range(0, len(qx), 200):
        d = np.hypot(qx[c : c + 200, None] - sx, qy[c : c + 200, None] - sy)
        out[c : c + 200] = np.min(st + d / mpm, axis=1)
    x0, y0 = to_m.transform(*src)
    return np.minimum(out, np.hypot(qx - x0, qy - y0) / mpm)


@pytest.mark.parametrize(
    ("limit", "access", "n", "step", "quad_segs"),
    # the last case has interior edges whose sweep is left out (chord-error rule)
    [(6.0, 5.0, 9, 0.005, 16), (3.0, 15.0, 9, 0.005, 16), (4.0, 15.0, 31, 0.001, 4)],
)
def test_catchment_equals_brute_force_on_grid(limit, access, n, step, quad_segs):
    roads = grid_network(n=n, step=step)
    g = road_graph(roads)
    src = (104.0 + (n // 2) * step, 30.6 + (n // 2) * step)  # the centre node
    cat = commute_catchment(g, [src], minutes=limit, access_speed_kmh=access, quad_segs=quad_segs)
    poly = cat.polygons.geometry.iloc[0]
    to_m = Transformer.from_crs(
        4326, f"+proj=aeqd +lat_0={src[1]} +lon_0={src[0]} +datum=WGS84", always_xy=True
    )
    span = (n // 2 + 1) * step
    lon, lat = np.meshgrid(
        np.linspace(src[0] - span, src[0] + span, 70), np.linspace(src[1] - span, src[1] + span, 70)
    )
    lon, lat = lon.ravel(), lat.ravel()
    qx, qy = to_m.transform(lon, lat)
    t = brute_force_times(roads, src, qx, qy, to_m, access)
    inside = shapely.contains_xy(poly, lon, lat)
    # margin: 10 m sampling of the roads (15 m) + the chord error of the largest disc polygon
    # (radius limit x access speed), in minutes at the access speed
    mpm = access * 1000 / 60
    margin = (15 + limit * mpm * (1 - math.cos(math.pi / (4 * quad_segs)))) / mpm
    sure_in, sure_out = t <= limit - margin, t >= limit + margin
    assert sure_in.sum() > 100 and sure_out.sum() > 100
    assert inside[sure_in].all(), "a reachable point is outside the catchment"
    assert not inside[sure_out].any(), "the catchment claims an unreachable point"
    # nodes reported = nodes within the limit by networkx
    G = nx_reference(roads)
    ref = nx.single_source_dijkstra_path_length(G, src, cutoff=limit)
    assert len(cat.nodes) == len(ref)


def test_catchment_area_closed_form():
    # one 60 km/h road, 10 min: 10 km driven; 2.5 km walked at 15 km/h. Area of the hull of a
    # disc r = 2.5 km and a point L = 10 km away: r*sqrt(L^2 - r^2) + r^2 * (pi - acos(r/L))
    r, L = 2.5, 10.0
    exact = r * math.sqrt(L * L - r * r) + r * r * (math.pi - math.acos(r / L))  # 35.60 km2
    roads = lines([([(104, 30), (104.3, 30)], "primary", "60", "no")])
    cat = commute_catchment(road_graph(roads), [(104, 30)], minutes=10, quad_segs=64)
    assert float(cat.polygons["area_km2"].iloc[0]) == pytest.approx(exact, rel=2e-3)


def test_groups_one_catchment_each():
    roads = grid_network()
    g = road_graph(roads)
    cat = commute_catchment(g, [(104.0, 30.6), (104.04, 30.64)], minutes=2, groups=["sw", "ne"])
    assert cat.polygons["group"].tolist() == ["sw", "ne"]
    a, b = cat.polygons.geometry
    assert not a.intersects(b)  # 2 min at 25-60 km/h cannot cover 2 x 5.3 km
    assert set(cat.nodes["group"]) == {"sw", "ne"}
    with pytest.raises(AggloInputError, match="groups has 1 labels for 2 sources"):
        commute_catchment(g, [(104.0, 30.6), (104.04, 30.64)], groups=["x"])


# ---------------------------------------------------------------- friction method


def test_friction_agrees_with_network_on_dense_grid():
    """Stated tolerance: node times within 5 % + 0.5 min (two 100 m cells at 25 km/h)."""
    roads = grid_network(n=11, step=0.01)
    g = road_graph(roads)
    src = [(104.05, 30.65)]
    net = commute_catchment(g, src, minutes=15, access_speed_kmh=5)
    fr = commute_catchment(g, src, minutes=15, access_speed_kmh=5, method="friction", cell_m=100)
    a = net.nodes.set_index("node")["minutes"]
    b = fr.nodes.set_index("node")["minutes"]
    common = a.index.intersection(b.index)
    assert len(common) >= 0.9 * len(a)
    err = (b[common] - a[common]).abs()
    assert (err <= 0.05 * a[common] + 0.5).all(), err.max()
    ratio = float(fr.polygons["area_km2"].iloc[0] / net.polygons["area_km2"].iloc[0])
    assert 0.8 < ratio < 1.25


# ---------------------------------------------------------------- metro areas


def boxes(rows, **cols):
    return gpd.GeoDataFrame(cols, geometry=[shapely.box(*r) for r in rows], crs=4326)


def line_world():
    # one motorway along the equator from -0.2 to 1.0 deg, 100 km/h: 0.5 deg = 55.66 km ->
    # 33.4 min; 1.0 deg -> 66.8 min
    roads = lines([([(0.01 * k - 0.2, 0.0) for k in range(121)], "motorway", "100", "no")])
    g = road_graph(roads)
    cities = boxes(
        [(-0.1, -0.1, 0.3, 0.1), (0.3, -0.1, 1.2, 0.1)],
        adcode=["100100", "100200"],
        name_zh=["甲市", "乙市"],
    )
    counties = boxes(
        [
            (-0.1, -0.1, 0.1, 0.1),
            (0.1, -0.1, 0.3, 0.1),
            (0.4, -0.1, 0.6, 0.1),
            (0.9, -0.1, 1.1, 0.1),
        ],
        adcode=["100101", "100102", "100201", "100202"],
        name_zh=["一区", "二区", "三区", "四县"],
        city_adcode=["100100", "100100", "100200", "100200"],
        population=[10.0, 20.0, 30.0, 40.0],
    )
    seats = gpd.GeoDataFrame(
        {"adcode": ["100101", "100102", "100201", "100202"]},
        geometry=[
            shapely.Point(0, 0),
            shapely.Point(0.2, 0),
            shapely.Point(0.5, 0),
            shapely.Point(1.0, 0),
        ],
        crs=4326,
    )
    cseats = gpd.GeoDataFrame(
        {"adcode": ["100100", "100200"]},
        geometry=[shapely.Point(0, 0), shapely.Point(0.5, 0)],
        crs=4326,
    )
    return g, cities, counties, seats, cseats


def test_metro_areas_members_and_shares():
    g, cities, counties, seats, cseats = line_world()
    res = metro_areas(
        cities,
        counties,
        g,
        ["甲"],
        minutes=60,
        city_seats=cseats,
        county_seats=seats,
        bands=(30, 60),
    )
    m = res.members.set_index("adcode")
    km_per_deg = GEOD.inv(0, 0, 1, 0)[2] / 1000  # 111.32 km
    assert m.loc["100201", "seat_minutes"] == pytest.approx(0.5 * km_per_deg * 0.6, rel=1e-6)
    assert bool(m.loc["100201", "member"]) and bool(m.loc["100102", "member"])
    # 1.0 deg = 111.3 km = 66.8 min > 60: not a member (at most a sliver of area inside)
    assert "100202" not in m.index or not bool(m.loc["100202", "member"])
    # every point of the first county is within 11.1 km of the road and 11.1 km along it:
    # 6.7 min driving + 44.3 min walking at 15 km/h < 60 -> fully covered
    assert m.loc["100101", "area_share"] == pytest.approx(1.0, abs=1e-3)
    assert m.loc["100101", "population_inside"] == pytest.approx(10.0, rel=1e-3)
    a = res.areas.iloc[0]
    assert a["core_adcode"] == "100100" and a["n_member_counties"] == int(
        res.members["member"].sum()
    )
    assert list(res.isochrones["band_max"]) == [30.0, 60.0]
    inner, outer = res.isochrones.geometry
    assert not inner.is_empty and inner.intersection(outer).area < 1e-9  # bands do not overlap
    assert res.isochrones["area_km2"].sum() == pytest.approx(a["area_km2"], rel=1e-3)


def test_resolve_cores(cities):
    assert resolve_cores(cities, ["成都", "重庆市", "530100"]) == ["510100", "500000", "530100"]
    assert len(resolve_cores(cities, None)) == 11
    with pytest.raises(AggloInputError, match="unknown core city"):
        resolve_cores(cities, ["Atlantis"])


# ---------------------------------------------------------------- OSM input


OSM_XML = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" version="1" lat="0.0" lon="0.0"/>
  <node id="2" version="1" lat="0.01" lon="0.0"/>
  <node id="3" version="1" lat="0.02" lon="0.0"/>
  <way id="10" version="1">
    <nd ref="1"/><nd ref="2"/>
    <tag k="highway" v="primary"/><tag k="oneway" v="yes"/><tag k="maxspeed" v="60"/>
  </way>
  <way id="11" version="1">
    <nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="secondary"/><tag k="maxspeed" v="50;60"/>
  </way>
  <way id="12" version="1">
    <nd ref="1"/><nd ref="3"/>
    <tag k="highway" v="footway"/>
  </way>
</osm>
"""


def test_osm_extract_oneway_and_maxspeed(tmp_path):
    path = tmp_path / "tiny.osm"
    path.write_text(OSM_XML, encoding="utf-8")
    g = road_graph(path)
    assert g.n_nodes == 3
    fwd = travel_times(g, [(0, 0)]).frame()
    # 1.10574 km at 60 km/h, then 1.10574 km at min(50, 60) = 50 km/h
    km = DEG_LAT_M / 1000
    assert minutes_of(fwd, 0, 0.02) == pytest.approx(km + km * 60 / 50, rel=1e-6)
    back = travel_times(g, [(0, 0.02)]).frame()
    assert math.isinf(minutes_of(back, 0, 0))  # way 10 is one-way; the footway is not driven


def test_metro_areas_friction_method_agrees():
    g, cities, counties, seats, cseats = line_world()
    kw = {"city_seats": cseats, "county_seats": seats, "bands": ()}
    net = metro_areas(cities, counties, g, ["100100"], **kw).members.set_index("adcode")
    fr = metro_areas(
        cities, counties, g, ["100100"], method="friction", cell_m=250, **kw
    ).members.set_index("adcode")
    assert (
        set(fr.index[fr["member"]])
        == set(net.index[net["member"]])
        == {
            "100101",
            "100102",
            "100201",
        }
    )
    # same tolerance as on the grid: 5 % + 0.5 min
    t_net, t_fr = net.loc["100201", "seat_minutes"], fr.loc["100201", "seat_minutes"]
    assert abs(t_fr - t_net) <= 0.05 * t_net + 0.5


def test_core_reaches_satellites_by_road_not_by_radius():
    """The seed-003 check on a network whose times are worked out independently.

    A motorway (100 km/h) runs east from the core's seat (0, 0) along the equator; a primary
    road (60 km/h) leaves it at (0.4, 0) northwards. Satellite seats: 东 (0.8, 0) on the
    motorway, 北 (0.4, 0.2) up the primary road, 西北 (0, 0.4) with no road: 44 km from the
    core as the crow flies, closer than 东, but not reachable within the hour.
    """
    motorway = [(0.1 * k, 0.0) for k in range(11)]
    primary = [(0.4, 0.1 * k) for k in range(5)]
    roads = lines([(motorway, "motorway", "100", "no"), (primary, "primary", "60", "no")])
    g = road_graph(roads)
    seat_xy = {"100100": (0, 0), "100200": (0.8, 0), "100300": (0.4, 0.2), "100400": (0, 0.4)}
    ids = list(seat_xy)
    cities = boxes(
        [(x - 0.05, y - 0.05, x + 0.05, y + 0.05) for x, y in seat_xy.values()],
        adcode=ids,
        name_zh=["核市", "东市", "北市", "西北市"],
    )
    counties = boxes(
        [(x - 0.05, y - 0.05, x + 0.05, y + 0.05) for x, y in seat_xy.values()],
        adcode=[a[:5] + "1" for a in ids],
        name_zh=["核区", "东区", "北区", "西北区"],
        city_adcode=ids,
    )
    pts = [shapely.Point(xy) for xy in seat_xy.values()]
    cseats = gpd.GeoDataFrame({"adcode": ids}, geometry=pts, crs=4326)
    kseats = gpd.GeoDataFrame({"adcode": list(counties["adcode"])}, geometry=pts, crs=4326)
    res = metro_areas(
        cities, counties, g, ["100100"], city_seats=cseats, county_seats=kseats, bands=()
    )
    got = res.cities.set_index("adcode")["seat_minutes"]
    # by hand: 1 deg of longitude at the equator = 111.319 km, of latitude 110.574 km
    lon_km, lat_km = GEOD.inv(0, 0, 1, 0)[2] / 1000, GEOD.inv(0, 0, 0, 1)[2] / 1000
    assert got["100200"] == pytest.approx(0.8 * lon_km * 0.6, rel=1e-4)  # 53.4 min
    assert got["100300"] == pytest.approx(0.4 * lon_km * 0.6 + 0.2 * lat_km, rel=1e-4)  # 48.8
    assert "100400" not in got.index or np.isnan(got["100400"])
    # cross-check with networkx on the same segments (geodesic metres / speed)
    G = nx_reference(roads.assign(maxspeed=[None, None], oneway="no"))
    ref = nx.single_source_dijkstra_path_length(G, (0.0, 0.0))
    assert got["100200"] == pytest.approx(ref[(0.8, 0.0)], abs=1e-9)
    assert got["100300"] == pytest.approx(ref[(0.4, 0.2)], abs=1e-9)
    assert ref[(0.4, 0.4)] + 0.4 * lon_km / 15 * 60 > 60  # 西北: drive + walk is over the hour
    members = res.members.set_index("adcode")["member"]
    assert members[members].index.tolist() == ["100101", "100301", "100201"]  # by minutes


# ---------------------------------------------------------------- fast paths (issue 14)


def test_snapping_equals_the_two_column_unique_reference():
    """Hashed int64 cell keys, each distinct vertex projected once == np.unique(axis=0) on the
    projected (x, y) cells of every vertex (the former build)."""
    from agglo.analysis.metro.graph import _aeqd, _snap_nodes

    rng = np.random.default_rng(7)
    base = rng.uniform([103.0, 30.0], [103.05, 30.05], size=(400, 2))
    near = base[rng.integers(0, 400, 300)] + rng.normal(0, 2e-6, size=(300, 2))  # ~0.2 m off
    xy = np.concatenate([base, near, base[rng.integers(0, 400, 500)]])  # exact repeats too
    xy = xy[rng.permutation(len(xy))]
    lon, lat = xy[:, 0], xy[:, 1]
    node_of, first = _snap_nodes(lon, lat, 1.0)
    c = _aeqd(float((lon.min() + lon.max()) / 2), float((lat.min() + lat.max()) / 2))
    x, y = Transformer.from_crs(4326, c, always_xy=True).transform(lon, lat)
    keys = np.column_stack([np.round(x), np.round(y)]).astype(np.int64)
    _, ref_first, ref_node = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    assert np.array_equal(node_of, ref_node.ravel())
    assert np.array_equal(first, ref_first)
    assert len(first) < 700  # near-duplicates merged


def test_fastest_parallel_edge_equals_lexsort_reference():
    from agglo.analysis.metro.graph import _fastest_per_pair

    rng = np.random.default_rng(3)
    u, v = rng.integers(0, 30, 2000), rng.integers(0, 30, 2000)
    w = rng.integers(1, 5, 2000).astype(float)  # many ties
    got = _fastest_per_pair(u * 30 + v, w)
    order = np.lexsort((w, v, u))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (u[order][1:] != u[order][:-1]) | (v[order][1:] != v[order][:-1])
    assert np.array_equal(got, order[first])
    assert np.array_equal(_fastest_per_pair(np.arange(5), np.ones(5)), np.arange(5))


def test_multipart_lines_equal_their_parts():
    a = [(104.0, 30.0), (104.01, 30.0)]
    b = [(104.01, 30.0), (104.01, 30.01)]
    multi = gpd.GeoDataFrame(
        {"highway": ["primary"]}, geometry=[shapely.MultiLineString([a, b])], crs=4326
    )
    single = lines([(a, "primary", None, "no"), (b, "primary", None, "no")])
    gm, gs = road_graph(multi), road_graph(single)
    assert (gm.csr != gs.csr).nnz == 0 and gm.n_edges == 4


@pytest.mark.parametrize("seed", [4, 5])
def test_one_source_equals_networkx_on_and_off_a_node(seed):
    """The direct search from a source's own node and the virtual-node search (off-node)."""
    roads, pts = random_network(seed)
    g = road_graph(roads)
    G = nx_reference(roads)
    ref = nx.single_source_dijkstra_path_length(G, tuple(pts[3]), cutoff=20)
    tt = travel_times(g, [tuple(pts[3])], minutes=20)
    got = {(g.lon[i], g.lat[i]): tt.minutes[i] for i in tt.reached() if tt.source[i] == 0}
    assert set(got) == set(ref) and len(ref) > 10
    assert max(abs(got[k] - ref[k]) for k in ref) < 1e-9
    off = (pts[3][0], pts[3][1] + 0.001)  # 111 m north: 0.44 min at 15 km/h
    access = GEOD.inv(off[0], off[1], pts[3][0], pts[3][1])[2] * 0.06 / 15
    tt_off = travel_times(g, [off], minutes=20)
    ref_off = {k: m + access for k, m in ref.items() if m + access <= 20}
    got_off = {(g.lon[i], g.lat[i]): tt_off.minutes[i] for i in tt_off.reached()}
    assert set(got_off) == set(ref_off)
    assert max(abs(got_off[k] - ref_off[k]) for k in ref_off) < 1e-9


def test_nearest_source_equals_networkx_per_source_minimum():
    roads, pts = random_network(2)
    g = road_graph(roads)
    G = nx_reference(roads)
    srcs = [tuple(pts[0]), tuple(pts[5]), tuple(pts[9])]
    per = [nx.single_source_dijkstra_path_length(G, s, cutoff=20) for s in srcs]
    tt = travel_times(g, srcs, minutes=20)
    checked = 0
    for i in tt.reached():
        t = sorted((p.get((g.lon[i], g.lat[i]), np.inf), k) for k, p in enumerate(per))
        if t[1][0] - t[0][0] > 1e-9:  # a unique nearest source
            assert tt.source[i] == t[0][1]
            checked += 1
    assert checked > 20
    assert (tt.source[~np.isfinite(tt.minutes)] == -1).all()


# ---------------------------------------------------------------- pruned union (fast path)


def _assert_pruned_equals_union_all(args: tuple) -> None:
    """The pruned catchment polygon of ``_network_polygon(*args)`` against the plain union_all
    of every piece: areas to 1e-12, symmetric difference below 1e-12 of the area."""
    from agglo.analysis.metro.catchment import _network_polygon

    fast = _network_polygon(*args)
    exact = _network_polygon(*args, prune=False)
    assert exact.area > 0
    assert fast.area == pytest.approx(exact.area, rel=1e-12)
    assert shapely.symmetric_difference(fast, exact).area <= 1e-12 * exact.area
    assert fast.geom_type == exact.geom_type


@pytest.mark.parametrize(("limit", "access", "quad_segs"), [(20.0, 15.0, 8), (9.0, 5.0, 4)])
def test_pruned_catchment_union_equals_union_all(limit, access, quad_segs):
    """The pruned union (pieces deep inside dropped, the rest unioned with certified cells) is
    the same point set as shapely.union_all of every piece: only the rounding of computed
    crossing points may differ, so areas agree to 1e-12 and the symmetric difference is below
    1e-12 of the area (observed: ~1e-15)."""
    from agglo.analysis.metro.routing import _multi_dijkstra, _snap

    roads = grid_network(n=41, step=0.002)
    g = road_graph(roads)
    src = [(104.04, 30.64), (104.01, 30.62)]
    snapped = _snap(g, src, access, 10.0)
    dist, _ = _multi_dijkstra(g, [np.arange(2)], snapped, limit)
    mpm = access * 1000 / 60
    args = (g, dist[0], limit, mpm, snapped.lon, snapped.lat, quad_segs)
    _assert_pruned_equals_union_all(args)


def test_pruned_union_drops_inner_pieces_keeps_outliers():
    """Hand case: a big disc, small discs well inside it (dropped), one small disc poking out
    and a disjoint one (kept): the union equals shapely.union_all of all pieces."""
    from agglo.analysis.metro.catchment import _certified_cells, _union_pieces

    cx = np.array([0.0, 100.0, -200.0, 0.0, 1000.0, 5000.0])
    cy = np.array([0.0, 50.0, 300.0, 995.0, 0.0, 5000.0])
    r = np.array([1000.0, 200.0, 150.0, 30.0, 40.0, 10.0])
    rings = np.empty((0, 11, 2))
    pieces = shapely.buffer(shapely.points(cx, cy), r, quad_segs=8)
    ref = shapely.union_all(pieces)
    got = _union_pieces(rings, cx, cy, r, 8)
    assert got.area == pytest.approx(ref.area, rel=1e-12)
    assert shapely.symmetric_difference(got, ref).area <= 1e-12 * ref.area
    assert got.geom_type == "MultiPolygon" and len(got.geoms) == 2
    bounds = shapely.bounds(pieces)
    mask, x0, y0, cell = _certified_cells(bounds, cx, cy, r, 8)
    # the certified cells lie inside the big disc polygon (never claim more than the union)
    j, i = np.nonzero(mask)
    cells = shapely.box(x0 + i * cell, y0 + j * cell, x0 + (i + 1) * cell, y0 + (j + 1) * cell)
    assert shapely.contains(pieces[0], cells).all() and mask.sum() > 100


@pytest.fixture(scope="module")
def bundled_graph():
    """The road graph of the bundled (synthetic) road network, as ``agglo run`` routes on."""
    from agglo.reference.paths import data_path

    return road_graph(data_path("roads", "demo_roads_synthetic.gpkg"))


@pytest.mark.parametrize("limit", [60.0, 30.0])
def test_covering_union_equals_union_all_on_bundled_roads(bundled_graph, limit):
    """On the bundled roads (Chengdu's seat, the 60-min area and a 30-min band as ``agglo
    run`` makes them), the pruned union with its covering batches is the point set of
    shapely.union_all of every piece: areas agree to 1e-12 relative and the symmetric
    difference is below 1e-12 of the area (observed on all 44 unions of ``agglo run``:
    <= 3.5e-15). The 1e-9 run-output tolerance is far above that."""
    from agglo.analysis.metro.routing import _multi_dijkstra, _snap

    g = bundled_graph
    snapped = _snap(g, [(104.066, 30.657)], 15.0, 10.0)
    dist, _ = _multi_dijkstra(g, [np.arange(1)], snapped, 60.0)
    d = np.where(dist[0] <= limit, dist[0], np.inf)
    args = (g, d, limit, 15.0 * 1000 / 60, snapped.lon, snapped.lat, 8)
    _assert_pruned_equals_union_all(args)


def test_covering_union_leaves_out_covered_pieces_only():
    """Hand case: polygons covered by the union so far (one by the base, one by a polygon of
    the first batch) are left out, a partly covered one and a disjoint one are united; the
    result is the point set of shapely.union_all of all: 100 + (6 - 2) + 1 = 105."""
    from agglo.analysis.metro.catchment import _covering_union

    base = shapely.box(0, 0, 10, 10)
    first = np.array([shapely.box(1, 1, 2, 2), shapely.box(9, 4, 12, 6)])
    second = np.array([shapely.box(10.5, 4.5, 11.5, 5.5), shapely.box(20, 20, 21, 21)])
    got = _covering_union(base, [first, second])
    ref = shapely.union_all([base, *first, *second])
    assert shapely.equals(got, ref)
    assert got.area == pytest.approx(105.0, rel=1e-15)
    assert _covering_union(None, [np.empty(0, dtype=object)]) is None
    assert shapely.equals(_covering_union(None, [first]), shapely.union_all(first))


def test_union_topology_failure_repairs_pieces_and_warns(monkeypatch):
    """A GEOS TopologyException is not a crash: invalid pieces (a bow-tie sweep) are repaired and
    united again, exactly if possible, else on a 1 mm snap-rounding grid, with a visible warning;
    the area is the union of the repaired pieces (within perimeter x 1 mm when snapped)."""
    from agglo.analysis.metro import catchment
    from agglo.errors import AggloDataWarning

    rng = np.random.default_rng(5)
    discs = shapely.buffer(shapely.points(rng.uniform(0, 5000, (40, 2))), 400.0)
    bowtie = shapely.Polygon([(6000, 0), (7000, 1000), (7000, 0), (6000, 1000)])
    pieces = np.append(discs, bowtie)
    exact = shapely.union_all([*discs, shapely.make_valid(bowtie, method="structure")])
    real = shapely.union_all
    fail = {"floating": 2}

    def overlay_fails(geoms, grid_size=None, **kw):
        if grid_size is None and fail["floating"]:
            fail["floating"] -= 1
            raise shapely.errors.GEOSException("TopologyException: unable to assign free hole")
        return real(geoms, grid_size=grid_size, **kw)

    monkeypatch.setattr(shapely, "union_all", overlay_fails)
    with pytest.warns(AggloDataWarning, match=r"41 pieces .* repaired 1 invalid .* 1 mm grid"):
        snapped = catchment._union_all(pieces)
    assert abs(snapped.area - exact.area) < exact.length * 1e-3
    assert shapely.hausdorff_distance(snapped, exact) < 2e-3  # vertices snapped by <= 0.71 mm
    fail["floating"] = 1  # only the first overlay fails: the repaired pieces unite exactly
    with pytest.warns(AggloDataWarning, match=r"repaired 1 invalid piece\(s\) .* exactly"):
        repaired = catchment._union_all(pieces)
    assert shapely.equals(repaired, exact)


def test_cells_polygon_coverage_union_equals_union_all():
    """The coverage union of the polygonized cells equals shapely.union_all of the same regions
    vertex for vertex (random mask with holes, islands in holes and diagonal touches)."""
    import rasterio.features
    import shapely.geometry
    from affine import Affine

    from agglo.analysis.metro.catchment import _cells_polygon

    rng = np.random.default_rng(3)
    mask = rng.random((60, 70)) < 0.55
    mask[20:40, 20:40] = True
    mask[25:35, 25:35] = False
    mask[29:31, 29:31] = True  # an island inside a hole
    x0, y0, cell = -123.0, 456.0, 7.5
    got = _cells_polygon(mask, x0, y0, cell)
    parts = [
        shapely.geometry.shape(s)
        for s, _ in rasterio.features.shapes(
            mask.astype(np.uint8), mask=mask, transform=Affine(cell, 0.0, x0, 0.0, cell, y0)
        )
    ]
    ref = shapely.union_all(parts)
    assert got.normalize().equals_exact(ref.normalize(), 0.0)
    assert got.area == pytest.approx(mask.sum() * cell * cell, rel=1e-12)


# ---------------------------------------------------------------- fast paths (issue 14, session 5)


def test_vertex_hash_collision_falls_back_to_exact_pairs():
    """The int64 hash of two coordinates may be shared by different pairs: the result must
    equal pandas' exact factorization of the (lon, lat) pairs."""
    from agglo.analysis.metro.graph import _distinct_points

    rng = np.random.default_rng(11)
    lon = rng.choice(rng.uniform(103, 104, 50), 400)
    lat = rng.choice(rng.uniform(30, 31, 50), 400)
    ref_code, _ = pd.factorize(lon + 1j * lat)
    code, first = _distinct_points(lon, lat)
    assert np.array_equal(code, ref_code)
    assert np.array_equal(first, [np.flatnonzero(ref_code == c)[0] for c in range(first.size)])
    # a second pair with the same hash as (lon[0], lat[0]): next float in lon, lat bits shifted
    # by the multiplier (wrapping), so only the comparison with the representative tells them apart
    lon2 = np.nextafter(lon[:1], np.inf)
    with np.errstate(over="ignore"):
        lat_bits = lat[:1].view(np.int64) - np.int64(-7046029254386353131)
    lon_c, lat_c = np.append(lon, lon2), np.append(lat, lat_bits.view(np.float64))
    code, first = _distinct_points(lon_c, lat_c)
    ref_code, _ = pd.factorize(lon_c + 1j * lat_c)
    assert code[-1] != code[0]
    assert np.array_equal(code, ref_code)


@pytest.mark.parametrize("seed", [1, 6])
def test_two_vertex_lines_equal_networkx_and_the_polyline_build(seed):
    """Lines of two vertices (the strided fast path) == the same roads as polylines (general
    path), and shortest times == networkx on the polylines."""
    roads, pts = random_network(seed)
    rows = [
        (list(pair), hw, ms, ow)
        for geom, hw, ms, ow in zip(
            roads.geometry, roads.highway, roads.maxspeed, roads.oneway, strict=True
        )
        for pair in itertools.pairwise(geom.coords)
    ]
    split = lines(rows)
    g2, gp = road_graph(split), road_graph(roads)
    assert (shapely.get_num_coordinates(split.geometry.to_numpy()) == 2).all()
    assert g2.n_nodes == gp.n_nodes and (g2.csr != gp.csr).nnz == 0
    assert np.array_equal(g2.lon, gp.lon) and np.array_equal(g2.length_m, gp.length_m)
    G = nx_reference(roads)
    srcs = [tuple(pts[0]), tuple(pts[7])]
    ref = nx.multi_source_dijkstra_path_length(G, set(srcs), cutoff=20)
    tt = travel_times(g2, srcs, minutes=20)
    got = {(g2.lon[i], g2.lat[i]): tt.minutes[i] for i in tt.reached()}
    assert set(got) == set(ref) and len(ref) > 20
    assert max(abs(got[k] - ref[k]) for k in ref) < 1e-9


def test_sources_on_nodes_equal_scipy_per_source_minimum():
    """All sources on nodes (one search from the nodes, two sources sharing a node) == the
    minimum over single-source scipy searches, and == the virtual-node search."""
    from scipy.sparse.csgraph import dijkstra

    from agglo.analysis.metro.routing import _multi_dijkstra, _snap

    roads, pts = random_network(3)
    g = road_graph(roads)
    srcs = [tuple(pts[0]), tuple(pts[4]), tuple(pts[0]), tuple(pts[11])]
    tt = travel_times(g, srcs, minutes=25)
    nodes = g.nearest_nodes(np.array([p[0] for p in srcs]), np.array([p[1] for p in srcs]))[0]
    distinct = np.array([0, 1, 3])  # source 2 repeats source 0
    per = dijkstra(g.csr, indices=nodes[distinct, 0], limit=25)
    best = per.min(axis=0)
    assert np.array_equal(np.isfinite(tt.minutes), np.isfinite(best))
    reached = np.isfinite(best)
    assert np.abs(tt.minutes[reached] - best[reached]).max() < 1e-12
    second = np.sort(per, axis=0)[1]
    unique = reached & ~(np.isfinite(second) & (second - np.where(reached, best, 0) <= 1e-9))
    assert unique.sum() > 20
    assert np.array_equal(tt.source[unique], distinct[np.argmin(per, axis=0)][unique])
    assert 2 not in tt.source  # of sources at one node the first is named
    snapped = _snap(g, srcs, 15.0, 5.0)
    snapped.access_min = snapped.access_min + 1e-300  # > 0: forces the virtual-node search
    dist, near = _multi_dijkstra(g, [np.arange(4)], snapped, 25)
    assert np.array_equal(np.isfinite(dist[0]), reached)
    assert np.abs(dist[0][reached] - best[reached]).max() < 1e-12
    # the virtual-node search may name either of two sources at one place
    assert np.array_equal(np.where(near[0] == 2, 0, near[0])[unique], tt.source[unique])


def test_fastest_parallel_edge_looked_up_by_segment():
    from agglo.analysis.metro.graph import _fastest_per_pair

    rng = np.random.default_rng(4)
    key = rng.integers(0, 40, 3000)
    seg_minutes = rng.integers(1, 4, 500).astype(float)
    seg = rng.integers(0, 500, 3000)
    got = _fastest_per_pair(key, seg_minutes, of=seg)
    assert np.array_equal(got, _fastest_per_pair(key, seg_minutes[seg]))
    order = np.lexsort((seg_minutes[seg], key))  # independent: fastest first, then given order
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    assert np.array_equal(got, order[first])


# ---------------------------------------------------------------- fast paths (issue 14, session 6)


@pytest.mark.parametrize(("lon", "lat"), [(104.065735, 30.659462), (121.4737, 31.2304)])
def test_pipeline_transformers_equal_from_crs_bit_for_bit(lon, lat):
    """The aeqd / laea pipelines made directly equal pyproj's ``from_crs`` transformers (the
    CRS-resolved operations) bit for bit, forward and back."""
    from pyproj import CRS

    from agglo.analysis.metro.areas import _laea_transformer
    from agglo.analysis.metro.graph import _aeqd, _aeqd_transformers

    rng = np.random.default_rng(11)
    x, y = lon + rng.uniform(-4, 4, 5000), lat + rng.uniform(-4, 4, 5000)
    to_m, inv = _aeqd_transformers(lon, lat)
    crs = _aeqd(lon, lat)
    fx, fy = Transformer.from_crs(4326, crs, always_xy=True).transform(x, y)
    gx, gy = to_m.transform(x, y)
    assert np.array_equal(fx, gx) and np.array_equal(fy, gy)
    bx, by = Transformer.from_crs(crs, 4326, always_xy=True).transform(fx, fy)
    hx, hy = inv.transform(fx, fy)
    assert np.array_equal(bx, hx) and np.array_equal(by, hy)
    assert np.abs(hx - x).max() < 1e-9  # and it is the inverse
    laea = CRS.from_proj4(
        f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"
    )
    lx, ly = Transformer.from_crs(4326, laea, always_xy=True).transform(x, y)
    mx, my = _laea_transformer(f"{lat:.6f}", f"{lon:.6f}").transform(x, y)
    assert np.array_equal(lx, mx) and np.array_equal(ly, my)


def test_partial_edge_sweeps_end_in_a_point_and_are_valid():
    """Where the time runs out on an edge, the sweep ends in a point (r1 = 0 exactly, not the
    ~1e-14 m residue of ``left - (left / w) w`` whose arc folded into a self-intersecting
    ring); full edges keep r1 = (left - w) x speed; the rings are valid polygons."""
    from agglo.analysis.metro.catchment import _edge_sweeps, _tapered_rings

    rng = np.random.default_rng(2)
    w = rng.uniform(0.5, 3.0, 20000)
    left = rng.uniform(0.05, 4.0, 20000)
    assert (np.maximum(left - np.minimum(1, left / w) * w, 0)[w > left] > 0).any()  # residues
    p0 = rng.uniform(-5e4, 5e4, (20000, 2)) + 1e5
    ang = rng.uniform(0, 2 * np.pi, 20000)
    pv = p0 + (w * 1000)[:, None] * np.column_stack([np.cos(ang), np.sin(ang)])
    _, r0, p1, r1 = _edge_sweeps(left, w, p0, pv, 250.0)
    part = w > left
    assert (r1[part] == 0).all() and part.sum() > 5000
    assert np.array_equal(r1[~part], (left - w)[~part] * 250.0)
    assert np.allclose(np.hypot(*(p1 - p0).T)[part], (left * 1000)[part])
    polys = shapely.polygons(_tapered_rings(p0, r0, p1, r1, 17))
    assert shapely.is_valid(polys).all()


def test_invalid_sweep_is_repaired_before_the_union_and_warned():
    """A self-intersecting sweep ring (bow-tie) given to the pruned union is repaired to the area
    it encloses (``make_valid`` structure) with a warning, never united silently: the result is
    shapely.union_all of the repaired pieces."""
    from agglo.analysis.metro.catchment import _union_pieces
    from agglo.errors import AggloDataWarning

    bowtie = np.array([[(6000, 0), (7000, 1000), (7000, 0), (6000, 1000), (6000, 0)]], float)
    good = np.array([[(0, -50), (900, -50), (900, 50), (0, 50), (0, -50)]], float)
    rings = np.concatenate([good, bowtie])
    cx, cy, r = np.array([0.0, 3000.0]), np.array([0.0, 0.0]), np.array([500.0, 800.0])
    discs = shapely.buffer(shapely.points(cx, cy), r, quad_segs=8)
    ref = shapely.union_all(
        [
            shapely.Polygon(good[0]),
            shapely.make_valid(shapely.Polygon(bowtie[0]), method="structure"),
            *discs,
        ]
    )
    for prune in (True, False):
        with pytest.warns(AggloDataWarning, match=r"1 of 2 edge sweeps .* not valid"):
            got = _union_pieces(rings, cx, cy, r, 8, prune)
        assert got.area == pytest.approx(ref.area, rel=1e-12)
        assert shapely.symmetric_difference(got, ref).area <= 1e-12 * ref.area


@pytest.mark.parametrize("threads", [1, 2])
def test_threaded_band_catchments_equal_one_by_one(bundled_graph, threads):
    """The catchments of two cores at 60/45/30/15 min, from the hour's projected frame and
    united in a thread pool, are the polygons ``_network_polygon`` builds one by one (fresh
    projection, its own edge list) vertex for vertex."""
    from agglo.analysis.metro.catchment import _frame, _network_polygon, _network_polygons
    from agglo.analysis.metro.routing import _multi_dijkstra, _snap

    g = bundled_graph
    src = [(104.066, 30.657), (106.55, 29.56)]
    snapped = _snap(g, src, 15.0, 10.0)
    dist, _ = _multi_dijkstra(g, [np.array([0]), np.array([1])], snapped, 60.0)
    mpm = 15.0 * 1000 / 60
    jobs, refs = [], []
    for k in range(2):
        lon, lat = snapped.lon[[k]], snapped.lat[[k]]
        frame = _frame(g, dist[k], 60.0, lon, lat)
        for b in (60.0, 45.0, 30.0, 15.0):
            d = np.where(dist[k] <= b, dist[k], np.inf)
            jobs.append((frame, d, b))
            refs.append(_network_polygon(g, d, b, mpm, lon, lat, 8))
    got = _network_polygons(jobs, mpm, 8, threads=threads)
    for p, q in zip(got, refs, strict=True):
        assert q.area > 0 and shapely.normalize(p).equals_exact(shapely.normalize(q), 0.0)


def test_union_threads_by_cores_and_size(monkeypatch):
    from agglo.analysis.metro import catchment

    monkeypatch.setattr(catchment, "usable_cores", lambda: 2)
    assert catchment._union_threads([5000, 4000, 100]) == 2
    assert catchment._union_threads([500, 400]) == 1  # too small to pay
    assert catchment._union_threads([100] * 12) == 2
    assert catchment._union_threads([50000]) == 1  # one catchment
    monkeypatch.setattr(catchment, "usable_cores", lambda: 1)
    assert catchment._union_threads([5000, 4000]) == 1


def test_threaded_projection_equals_one_call():
    """The chunked, threaded in-place projection of the graph build gives pyproj's one-call
    result bit for bit (odd length: uneven chunks)."""
    from agglo.analysis.metro.graph import _aeqd_transformers, _transform_inplace

    rng = np.random.default_rng(9)
    lon, lat = rng.uniform(100, 108, 10_001), rng.uniform(26, 34, 10_001)
    to_m, _ = _aeqd_transformers(104.0, 30.0)
    ref = to_m.transform(lon, lat)
    x, y = lon.copy(), lat.copy()
    got = _transform_inplace(to_m, x, y, threads=3)
    assert got[0] is x and got[1] is y  # in place
    assert np.array_equal(x, ref[0]) and np.array_equal(y, ref[1])


def test_threaded_catchments_leave_the_warning_filters_alone(bundled_graph):
    """Built in 2 threads, the catchments neither let a third-party warning escape (rasterio's
    and shapely's ``catch_warnings`` are serialised) nor change the process-global filter list
    (two threads inside ``catch_warnings`` at once can leave "ignore" behind)."""
    import warnings

    from agglo.analysis.metro.catchment import _frame, _network_polygons
    from agglo.analysis.metro.routing import _multi_dijkstra, _snap

    g = bundled_graph
    snapped = _snap(g, [(104.066, 30.657), (106.55, 29.56)], 15.0, 10.0)
    dist, _ = _multi_dijkstra(g, [np.array([0]), np.array([1])], snapped, 60.0)
    frames = [_frame(g, dist[k], 60.0, snapped.lon[[k]], snapped.lat[[k]]) for k in range(2)]
    jobs = [
        (frames[k], np.where(dist[k] <= b, dist[k], np.inf), b)
        for _ in range(3)
        for k in range(2)
        for b in (60.0, 45.0, 30.0, 15.0)
    ]
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _network_polygons(jobs, 250.0, 8, threads=2)
    assert [str(w.message) for w in seen] == []
    assert warnings.filters == before
