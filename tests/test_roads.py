"""Road density: closed-form ellipsoid lengths/areas, cross-checks, OSM and OGR reading, errors."""

from __future__ import annotations

import json
import logging
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod
from scipy.integrate import quad

from agglo.errors import AggloInputError, CRSError, ValidationError
from agglo.measures import roads as roads_mod
from agglo.measures.roads import DEFAULT_CLASSES, read_roads, road_density

# WGS84 ellipsoid, written out so the expected values do not come from pyproj
A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
E = math.sqrt(E2)


def meridian_arc_km(lat1: float, lat2: float) -> float:
    """Meridian arc length M = a(1-e²) ∫ dφ / (1 - e² sin²φ)^(3/2), in km."""
    f = lambda p: A * (1 - E2) / (1 - E2 * math.sin(p) ** 2) ** 1.5  # noqa: E731
    return quad(f, math.radians(lat1), math.radians(lat2), epsabs=1e-6)[0] / 1000


def parallel_arc_km(lat: float, dlon: float) -> float:
    """Arc of a parallel: N(φ) cos φ Δλ, in km (equal to the geodesic to < 1e-6 for 1°)."""
    p = math.radians(lat)
    return A * math.cos(p) / math.sqrt(1 - E2 * math.sin(p) ** 2) * math.radians(dlon) / 1000


def box_area_km2(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Area of a lon/lat quadrangle on the ellipsoid: b²/2 Δλ [q(φ2) - q(φ1)], in km²."""

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (1 - E2 * s * s) + math.log((1 + E * s) / (1 - E * s)) / (2 * E)

    b2 = A * A * (1 - E2)
    return b2 / 2 * math.radians(lon2 - lon1) * (q(lat2) - q(lat1)) / 1e6


def squares(boxes: dict[str, tuple[float, float, float, float]], crs: int = 4326):
    # segmentize so the geodesic edges follow the parallels (area matches the quadrangle formula)
    geoms = [shapely.segmentize(shapely.box(*b), 0.01) for b in boxes.values()]
    return gpd.GeoDataFrame({"adcode": list(boxes)}, geometry=geoms, crs=4326).to_crs(crs)


def lines(geoms, highway=None, crs=4326):
    highway = highway or ["primary"] * len(geoms)
    return gpd.GeoDataFrame({"highway": highway}, geometry=list(geoms), crs=crs)


TWO_N_S = {"S": (110, 20, 111, 21), "N": (110, 21, 111, 22)}  # stacked along a meridian


def test_meridian_line_across_two_squares_matches_closed_form():
    polys = squares(TWO_N_S)
    road = lines([shapely.LineString([(110.5, 20.25), (110.5, 21.75)])])
    out = road_density(road, polys).set_index("adcode")
    # the line is split at 21°N exactly: 0.75° of meridian on each side
    exp_s, exp_n = meridian_arc_km(20.25, 21.0), meridian_arc_km(21.0, 21.75)
    assert out.loc["S", "length_km"] == pytest.approx(exp_s, rel=1e-6)
    assert out.loc["N", "length_km"] == pytest.approx(exp_n, rel=1e-6)
    area_s, area_n = box_area_km2(110, 20, 111, 21), box_area_km2(110, 21, 111, 22)
    assert out.loc["S", "area_km2"] == pytest.approx(area_s, rel=1e-3)
    assert out.loc["N", "area_km2"] == pytest.approx(area_n, rel=1e-3)
    assert out.loc["S", "density_km_per_km2"] == pytest.approx(exp_s / area_s, rel=1e-3)
    assert out.loc["N", "density_km_per_100km2"] == pytest.approx(100 * exp_n / area_n, rel=1e-3)
    # sanity: ~83 km, i.e. never measured in degrees (0.75)
    assert 80 < out.loc["S", "length_km"] < 85


def test_parallel_line_across_two_squares_matches_closed_form():
    polys = squares({"W": (110, 30, 111, 31), "E": (111, 30, 112, 31)})
    road = lines([shapely.LineString([(110.4, 30.5), (111.6, 30.5)])])
    out = road_density(road, polys).set_index("adcode")
    assert out.loc["W", "length_km"] == pytest.approx(parallel_arc_km(30.5, 0.6), rel=1e-5)
    assert out.loc["E", "length_km"] == pytest.approx(parallel_arc_km(30.5, 0.6), rel=1e-5)


def test_cross_check_with_geopandas_clip_and_pyproj(cities):
    sel = cities[cities["adcode"].isin(["510100", "510600", "511400", "512000"])].reset_index(
        drop=True
    )  # Chengdu and its neighbours Deyang, Meishan, Ziyang
    rng = np.random.default_rng(5)
    x0, y0, x1, y1 = sel.total_bounds
    n = 3000
    start = rng.uniform((x0, y0), (x1, y1), (n, 2))
    end = start + rng.normal(0, 0.08, (n, 2))
    mid = (start + end) / 2 + rng.normal(0, 0.02, (n, 2))
    road = lines(shapely.linestrings(np.stack([start, mid, end], axis=1)))
    ours = road_density(road, sel, classes="all").set_index("adcode")
    geod = Geod(ellps="WGS84")
    for poly in sel.itertuples():
        clipped = gpd.clip(road, poly.geometry)
        ref_km = sum(geod.geometry_length(g) for g in clipped.geometry) / 1000
        assert ours.loc[poly.adcode, "length_km"] == pytest.approx(ref_km, rel=1e-9)
        ref_area = abs(geod.geometry_area_perimeter(shapely.orient_polygons(poly.geometry))[0])
        assert ours.loc[poly.adcode, "area_km2"] == pytest.approx(ref_area / 1e6, rel=1e-9)
    # and with geopandas overlay (the benchmark's peer)
    pieces = gpd.overlay(road, sel[["adcode", "geometry"]], how="intersection")
    pieces["km"] = [geod.geometry_length(g) / 1000 for g in pieces.geometry]
    ref = pieces.groupby("adcode")["km"].sum()
    np.testing.assert_allclose(ours.loc[ref.index, "length_km"], ref, rtol=1e-9)


@pytest.mark.parametrize(("grid", "two_point"), [(False, False), (True, False), (True, True)])
def test_clip_equals_shapely_intersection_on_edge_cases(grid, two_point, monkeypatch):
    """Lines along edges, through vertices, in holes, across multipolygons and many vertices.

    With ``grid`` the interior-cell fast path is used too (normally from 1,000 lines on); with
    ``two_point`` every line is a single segment (the clip then uses the lines as segments).
    """
    monkeypatch.setattr(roads_mod, "_MIN_LINES_GRID", 0 if grid else 10**9)
    ring = shapely.Point(111, 31).buffer(0.5, quad_segs=64)  # 256 vertices
    holed = shapely.Polygon(
        shapely.box(110, 30, 111, 31).exterior.coords,
        [shapely.box(110.4, 30.4, 110.6, 30.6).exterior.coords],
    )
    multi = shapely.MultiPolygon(
        [shapely.box(112, 30, 112.5, 30.5), shapely.box(113, 30, 113.5, 30.5)]
    )
    polys = gpd.GeoDataFrame(
        {"adcode": ["ring", "holed", "multi"]}, geometry=[ring, holed, multi], crs=4326
    )
    rng = np.random.default_rng(11)
    start = rng.uniform((109.8, 29.8), (113.7, 31.7), (400, 2))
    mids = start + rng.normal(0, 0.15, (400, 2))
    end = mids + rng.normal(0, 0.15, (400, 2))
    geoms = list(shapely.linestrings(np.stack([start, mids, end], axis=1)))
    geoms += [
        shapely.LineString([(110, 29.9), (110, 31.2)]),  # along the west edge of holed
        shapely.LineString([(110.2, 30), (110.9, 30)]),  # along the south edge
        shapely.LineString([(110.4, 30.3), (110.4, 30.7)]),  # along the hole's west edge
        shapely.LineString([(109.9, 29.9), (111.2, 31.2)]),  # through two corners
        shapely.LineString([(110.45, 30.45), (110.55, 30.55)]),  # wholly in the hole
        shapely.LineString([(111.9, 30.25), (113.6, 30.25)]),  # across both parts of multi
        shapely.MultiLineString([[(112.4, 30.1), (112.6, 30.1)], [(113.4, 30.4), (113.6, 30.6)]]),
        shapely.LineString([(110.5, 30.5), (112.5, 30.5), (113.0, 30.5)]),  # vertex on corner
    ]
    if two_point:  # every segment of every line as its own line
        geoms = [
            shapely.LineString(seg)
            for g in geoms
            for part in shapely.get_parts(g)
            for seg in zip(part.coords[:-1], part.coords[1:], strict=True)
        ]
    road = lines(geoms)
    ours = road_density(road, polys, classes="all").set_index("adcode")
    geod = Geod(ellps="WGS84")
    for poly in polys.itertuples():
        pieces = shapely.intersection(np.asarray(geoms, dtype=object), poly.geometry)
        ref = sum(geod.geometry_length(g) for g in pieces) / 1000
        assert ref > 0
        assert ours.loc[poly.adcode, "length_km"] == pytest.approx(ref, rel=1e-9, abs=1e-9)
        touching = int(shapely.intersects(np.asarray(geoms, dtype=object), poly.geometry).sum())
        assert ours.loc[poly.adcode, "n_roads"] == touching


def test_fast_path_skips_intersection_for_lines_wholly_inside(monkeypatch):
    polys = squares(TWO_N_S)
    inside = [
        shapely.LineString([(110.2, 20.2 + i / 100), (110.8, 20.2 + i / 100)]) for i in range(50)
    ]
    crossing = [
        shapely.LineString([(110.3 + i / 100, 20.9), (110.3 + i / 100, 21.1)]) for i in range(7)
    ]
    seen: list[int] = []
    real = roads_mod._clipped_km

    def spy(clip_lines, poly_of, polys):
        seen.append(len(clip_lines))
        return real(clip_lines, poly_of, polys)

    monkeypatch.setattr(roads_mod, "_clipped_km", spy)
    out = road_density(lines(inside + crossing), polys).set_index("adcode")
    # only the 7 crossing lines are clipped, once with each of the two squares
    assert seen == [14]
    assert out.loc["S", "n_roads"] == 57 and out.loc["N", "n_roads"] == 7
    # each crossing line gives 0.1° of meridian on each side
    assert out.loc["N", "length_km"] == pytest.approx(7 * meridian_arc_km(21.0, 21.1), rel=1e-6)


def test_sum_over_a_tiling_equals_total_length():
    # 3 x 3 tiling of a region; every road inside it -> lengths add up to the total
    tiles = {f"t{i}{j}": (100 + i, 25 + j, 101 + i, 26 + j) for i in range(3) for j in range(3)}
    polys = squares(tiles)
    rng = np.random.default_rng(1)
    start = rng.uniform((100.05, 25.05), (102.95, 27.95), (400, 2))
    end = np.clip(start + rng.normal(0, 0.2, (400, 2)), [100.01, 25.01], [102.99, 27.99])
    road = lines(shapely.linestrings(np.stack([start, end], axis=1)))
    out = road_density(road, polys, classes="all")
    geod = Geod(ellps="WGS84")
    total = sum(geod.geometry_length(g) for g in road.geometry) / 1000
    # the crossing vertex inserted by the clip lies on the straight lon/lat segment, not on the
    # geodesic, which changes the path length of these (up to ~80 km) segments by ~1e-7
    assert out["length_km"].sum() == pytest.approx(total, rel=1e-6)


def test_projected_layers_give_the_same_result():
    polys = squares(TWO_N_S)
    road = lines(
        [
            shapely.LineString([(110.5, 20.25), (110.5, 21.75)]),
            shapely.LineString([(110.1, 20.1), (110.9, 21.9)]),
        ]
    )
    ref = road_density(road, polys)
    utm = road_density(road.to_crs(32649), polys.to_crs(32649))
    np.testing.assert_allclose(utm["length_km"], ref["length_km"], rtol=1e-7)
    np.testing.assert_allclose(utm["area_km2"], ref["area_km2"], rtol=1e-5)


def test_multilinestring_rows_and_index_alignment_and_no_mutation():
    polys = squares(TWO_N_S).set_index(pd.Index([10, 20]))
    multi = shapely.MultiLineString(
        [[(110.5, 20.25), (110.5, 20.75)], [(110.6, 20.5), (110.6, 21.5)]]
    )
    road = lines([multi, None], highway=["trunk", "trunk"])
    before = road.copy()
    out = road_density(road, polys)
    assert list(out.index) == [10, 20] and list(out["adcode"]) == ["S", "N"]
    exp_s = meridian_arc_km(20.25, 20.75) + meridian_arc_km(20.5, 21.0)
    assert out.loc[10, "length_km"] == pytest.approx(exp_s, rel=1e-6)
    assert out.loc[20, "length_km"] == pytest.approx(meridian_arc_km(21.0, 21.5), rel=1e-6)
    assert out.attrs["n_roads_empty_geometry"] == 1
    pd.testing.assert_frame_equal(road, before)


def test_classes_default_excludes_streets_and_all_keeps_them():
    polys = squares({"S": TWO_N_S["S"]})
    seg = lambda y: shapely.LineString([(110.5, y), (110.5, y + 0.1)])  # noqa: E731
    road = lines([seg(20.1), seg(20.3), seg(20.5)], highway=["motorway", "residential", "track"])
    one = meridian_arc_km(20.1, 20.2)
    assert road_density(road, polys)["length_km"].iloc[0] == pytest.approx(one, rel=1e-5)
    assert road_density(road, polys, classes="all")["length_km"].iloc[0] == pytest.approx(
        meridian_arc_km(20.1, 20.2) + meridian_arc_km(20.3, 20.4) + meridian_arc_km(20.5, 20.6),
        rel=1e-5,
    )
    assert "residential" not in DEFAULT_CLASSES and "unclassified" in DEFAULT_CLASSES
    with pytest.raises(
        AggloInputError, match=r"classes must be one of \['all', 'default', 'major'\]"
    ):
        road_density(road, polys, classes="motorways")
    with pytest.raises(AggloInputError, match=r"no road of classes \['trunk'\].*'motorway'"):
        road_density(road, polys, classes=["trunk"])


def test_invalid_polygon_is_repaired_with_a_warning():
    bowtie = shapely.Polygon([(110, 20), (111, 21), (111, 20), (110, 21)])  # self-intersecting
    polys = gpd.GeoDataFrame({"adcode": ["X"]}, geometry=[bowtie], crs=4326)
    road = lines([shapely.LineString([(110.25, 20.0), (110.25, 21.0)])])
    with pytest.warns(UserWarning, match="1 invalid polygon"):
        out = road_density(road, polys)
    # the repaired bow-tie is two triangles meeting at (110.5, 20.5); at 110.25°E the left one
    # spans 20.25-20.75°N
    assert out["length_km"].iloc[0] == pytest.approx(meridian_arc_km(20.25, 20.75), rel=1e-6)


def test_errors_are_clear():
    polys = squares(TWO_N_S)
    road = lines([shapely.LineString([(110.5, 20.25), (110.5, 21.75)])])
    with pytest.raises(AggloInputError, match="road layer is empty"):
        road_density(road.iloc[:0], polys)
    with pytest.raises(CRSError, match="roads has no CRS"):
        road_density(
            gpd.GeoDataFrame(road.drop(columns="geometry"), geometry=list(road.geometry)), polys
        )
    with pytest.raises(ValidationError, match="1 row\\(s\\) of type Point"):
        road_density(lines([shapely.Point(110.5, 20.5), road.geometry.iloc[0]]), polys)
    dup = polys.assign(adcode=["S", "S"])
    with pytest.raises(ValidationError, match=r"duplicate adcode value\(s\): \['S'\]"):
        road_density(road, dup)
    with pytest.raises(ValidationError, match="id column 'code' not found"):
        road_density(road, polys, id_col="code")
    with pytest.raises(AggloInputError, match="no class column 'fclass'"):
        road_density(road, polys, class_col="fclass")
    with pytest.raises(AggloInputError, match="NaN or infinite"):
        with np.errstate(invalid="ignore"):  # shapely warns when building a NaN line
            bad = shapely.LineString([(110.5, np.nan), (110.5, 21.0)])
        road_density(lines([bad]), polys)


def test_road_along_a_shared_border_counts_for_both_polygons():
    # documented: like an overlay, a line on the common edge (21°N) belongs to both squares
    polys = squares(TWO_N_S)
    out = road_density(lines([shapely.LineString([(110.2, 21.0), (110.4, 21.0)])]), polys)
    # the clip follows the squares' edge vertices (every 0.01°), i.e. the parallel
    expected = parallel_arc_km(21.0, 0.2)
    np.testing.assert_allclose(out["length_km"], [expected, expected], rtol=1e-7)


def test_zero_area_polygon_gives_nan_density():
    polys = gpd.GeoDataFrame(
        {"adcode": ["S", "Z"]},
        geometry=[shapely.box(*TWO_N_S["S"]), shapely.Polygon()],
        crs=4326,
    )
    out = road_density(lines([shapely.LineString([(110.5, 20.2), (110.5, 20.4)])]), polys)
    assert out["length_km"].iloc[1] == 0 and np.isnan(out["density_km_per_km2"].iloc[1])


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------


def _write_osm(path, ways):
    """Write nodes and ways (list of (id, coords, tags)) with pyosmium's SimpleWriter."""
    import osmium
    from osmium.osm.mutable import Node, Way

    nodes: dict[tuple[float, float], int] = {}
    with osmium.SimpleWriter(str(path)) as w:
        for _, coords, _ in ways:
            for xy in coords:
                if isinstance(xy, tuple) and xy not in nodes:
                    nodes[xy] = len(nodes) + 1
                    w.add_node(Node(id=nodes[xy], location=xy, tags={}))
        for wid, coords, tags in ways:
            refs = [nodes[xy] if isinstance(xy, tuple) else xy for xy in coords]
            w.add_way(Way(id=wid, nodes=refs, tags=tags))


OSM_WAYS = [
    (
        1,
        [(110.5, 20.25), (110.5, 20.5), (110.5, 20.75)],
        {"highway": "motorway", "maxspeed": "120", "oneway": "yes"},
    ),
    (2, [(110.6, 20.25), (110.6, 20.75)], {"highway": "residential"}),
    (3, [(110.7, 20.25), (110.7, 20.75)], {"highway": "tertiary", "name": "县道"}),
    (4, [(110.8, 20.25), (110.8, 20.75)], {"waterway": "river"}),
    (5, [(120.0, 30.0), (120.0, 30.5)], {"highway": "primary"}),  # outside the bbox
    (6, [(110.2, 20.25), (110.2, 20.75)], {"highway": "footway"}),
]
MISSING_NODE_WAY = (7, [999], {"highway": "primary"})  # node 999 is not in the file


def test_read_osm_pbf_written_by_osmium(tmp_path, caplog):
    pbf = tmp_path / "mini.osm.pbf"
    _write_osm(pbf, [*OSM_WAYS, MISSING_NODE_WAY])
    with caplog.at_level(logging.WARNING, logger="agglo.measures.roads"):
        roads = read_roads(pbf, bbox=(110, 20, 111, 21))
    assert "1 highway way(s) skipped" in caplog.text
    assert sorted(roads["highway"]) == ["motorway", "tertiary"]
    row = roads.set_index("osm_id").loc[1]
    assert (row["maxspeed"], row["oneway"]) == ("120", "yes")
    assert roads.set_index("osm_id").loc[3, "name"] == "县道"
    assert roads.crs.to_epsg() == 4326
    every = read_roads(pbf, classes="all")
    assert sorted(every["osm_id"]) == [1, 2, 3, 5, 6]  # the river is not a road
    # read lines measure as they should: 0.5° of meridian each for the two default-class ways
    out = road_density(roads, squares({"S": TWO_N_S["S"]}))
    assert out["length_km"].iloc[0] == pytest.approx(2 * meridian_arc_km(20.25, 20.75), rel=1e-6)


def test_iter_osm_roads_streams_the_same_lines_in_chunks(tmp_path):
    from agglo.measures.roads import iter_osm_roads

    pbf = tmp_path / "mini.osm.pbf"
    _write_osm(pbf, OSM_WAYS)
    chunks = list(iter_osm_roads(pbf, classes="all", chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    streamed = pd.concat(chunks, ignore_index=True)
    whole = read_roads(pbf, classes="all")
    assert streamed["osm_id"].tolist() == whole["osm_id"].tolist()
    assert shapely.equals(streamed.geometry.to_numpy(), whole.geometry.to_numpy()).all()


def test_read_ogr_layer_with_mapping_projected_and_bbox(tmp_path):
    road = gpd.GeoDataFrame(
        {"等级": ["高速公路", "国道", "村道", "城市道路"]},
        geometry=[
            shapely.LineString([(110.5, 20.25), (110.5, 20.75)]),
            shapely.LineString([(110.6, 20.25), (110.6, 20.75)]),
            shapely.LineString([(110.7, 20.25), (110.7, 20.75)]),
            shapely.LineString([(110.8, 20.25), (110.8, 20.75)]),
        ],
        crs=4326,
    ).to_crs(32649)
    far = gpd.GeoDataFrame(
        {"等级": ["国道"]},
        geometry=[shapely.LineString([(112.5, 20.25), (112.5, 20.75)])],
        crs=4326,
    ).to_crs(32649)
    path = tmp_path / "roads.gpkg"
    pd.concat([road, far]).to_file(path, driver="GPKG")
    mapping = {
        "高速公路": "motorway",
        "国道": "trunk",
        "村道": "unclassified",
        "城市道路": "residential",
    }
    got = read_roads(path, class_col="等级", mapping=mapping, bbox=(110, 20, 111, 21))
    assert got.crs.to_epsg() == 4326
    assert sorted(got["highway"]) == ["motorway", "trunk", "unclassified"]
    assert {"maxspeed", "oneway", "name"} <= set(got.columns)
    np.testing.assert_allclose(got.total_bounds, [110.5, 20.25, 110.7, 20.75], atol=1e-9)
    with pytest.raises(AggloInputError, match=r"class column 'highway' not found.*'fclass'"):
        read_roads(path)
    assert len(read_roads(path, classes="all")) == 5


def test_read_roads_rejects_bad_bbox_and_missing_file(tmp_path):
    with pytest.raises(AggloInputError, match="does not exist"):
        read_roads(tmp_path / "nope.osm.pbf")
    p = tmp_path / "x.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(AggloInputError, match="min < max"):
        read_roads(p, bbox=(111, 20, 110, 21))


def test_cli_roads_writes_csv(tmp_path, capsys):
    from agglo.cli import main

    pbf = tmp_path / "mini.osm.pbf"
    _write_osm(pbf, OSM_WAYS)
    polys = squares(TWO_N_S)
    gpkg = tmp_path / "sq.gpkg"
    polys.to_file(gpkg, driver="GPKG")
    out = tmp_path / "rd.csv"
    code = main(["roads", "--roads", str(pbf), "--polygons", str(gpkg), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    df = pd.read_csv(out, dtype={"adcode": str}).set_index("adcode")
    assert df.loc["S", "length_km"] == pytest.approx(2 * meridian_arc_km(20.25, 20.75), rel=1e-6)
    assert df.loc["N", "length_km"] == 0
    assert main(["roads", "--roads", str(pbf), "--polygons", str(gpkg), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_pipeline_stage_on_bundled_synthetic_network(tmp_path):
    from agglo.pipeline import run
    from agglo.reference.paths import data_path

    if not data_path("roads", "demo_roads_synthetic.gpkg").exists():
        pytest.skip("bundled synthetic road network not built")
    ctx = run(out_dir=tmp_path / "o", stages=("panel",))
    assert "demo_roads_synthetic.gpkg" in ctx.synthetic
    rd = ctx.panel[ctx.panel["indicator"] == "road_density"]
    assert sorted(rd["year"].unique()) == ctx.years
    table = ctx.tables["road_density"]
    assert len(table) == len(ctx.cities) and (table["data_status"] == "synthetic").all()
    # the panel holds km/100 km² (the registry unit) = 100 x km/km²
    one = rd[rd["year"] == ctx.years[0]].set_index("adcode")["value"]
    np.testing.assert_allclose(
        one.loc[table["adcode"]], 100 * table["density_km_per_km2"].to_numpy(), rtol=1e-12
    )
    assert "every year" in ctx.provenance["road_density"]
    assert any(s.startswith("[SYNTHETIC") and "Road density" in s for s in ctx.summary)


def test_internal_length_matches_geodesy_for_every_geometry_type():
    from agglo.measures.geodesy import geodesic_length_km
    from agglo.measures.roads import _geodesic_km

    geoms = np.array(
        [
            shapely.LineString([(110, 20), (110.3, 20.4), (110.1, 21)]),
            shapely.MultiLineString([[(0, 0), (0, 1)], [(1, 1), (1, 2)]]),
            shapely.GeometryCollection([shapely.LineString([(0, 0), (0, 1)]), shapely.Point(0, 0)]),
            shapely.Point(1, 1),
            None,
            shapely.LineString(),
        ],
        dtype=object,
    )
    ref = geodesic_length_km(gpd.GeoSeries(geoms, crs=4326)).to_numpy()
    np.testing.assert_allclose(_geodesic_km(geoms), ref, rtol=1e-12)
    assert ref[1] == pytest.approx(meridian_arc_km(0, 1) + meridian_arc_km(1, 2), rel=1e-6)


@pytest.mark.parametrize(
    "extra", [[], [[(104.0, 30.0), (104.1, 30.2), (104.3, 30.1), (104.2, 30.4)]]]
)
def test_two_point_lines_are_measured_like_pyproj(extra):
    """All two-point lines (one step each, no per-line sum) and a mix with a longer line and an
    empty one (same number of coordinates as two two-point lines), against pyproj Geod."""
    from agglo.measures.roads import _geodesic_km

    rng = np.random.default_rng(4)
    start = rng.uniform((100, 20), (120, 40), (50, 2))
    end = start + rng.normal(0, 0.05, (50, 2))
    geoms = list(shapely.linestrings(np.stack([start, end], axis=1)))
    if extra:
        geoms += [shapely.LineString(extra[0]), shapely.LineString()]
    geoms = np.array(geoms, dtype=object)
    geod = Geod(ellps="WGS84")
    ref = np.array([geod.geometry_length(g) / 1000 for g in geoms])
    np.testing.assert_allclose(_geodesic_km(geoms), ref, rtol=1e-12, atol=1e-12)


def test_interior_cells_fast_path_agrees_with_contains_properly():
    """Lines the grid assigns to a polygon are inside it properly and touch no other polygon."""
    polys = squares({"W": (110, 30, 110.5, 30.5), "E": (110.5, 30, 111, 30.5)}).geometry.to_numpy()
    overlap = shapely.box(110.6, 30.1, 110.8, 30.3)  # overlaps E: its lines are not fast
    polys = np.append(polys, overlap)
    rng = np.random.default_rng(3)
    start = rng.uniform((109.95, 29.95), (111.05, 30.55), (5000, 2))
    end = start + rng.normal(0, 0.01, (5000, 2))
    geoms = shapely.linestrings(np.stack([start, end], axis=1))
    shapely.prepare(polys)
    owner = roads_mod._interior_owner(geoms, polys)
    assert (owner >= 0).sum() > 2000  # the fast path does most of the work
    for j in range(len(polys)):
        mine = owner == j
        assert shapely.contains_properly(polys[j], geoms[mine]).all()
        for k in set(range(len(polys))) - {j}:
            assert not shapely.intersects(polys[k], geoms[mine]).any()
    in_overlap = shapely.intersects(overlap, geoms)
    assert (owner[in_overlap] != 1).all()


def test_interior_cells_hold_for_boxes_spanning_many_cells():
    """Long lines (boxes of many grid cells) among short ones: the grid's owner is exact.

    Checked against shapely ``contains_properly`` / ``intersects`` on a 256-vertex disc and a
    holed square: a line is assigned to a polygon only if inside it properly and touching no
    other, and most lines wholly inside one polygon far from every boundary are assigned.
    """
    disc = shapely.Point(110.5, 30.5).buffer(0.4, quad_segs=64)
    holed = shapely.Polygon(
        shapely.box(111, 30, 112, 31).exterior.coords,
        [shapely.box(111.3, 30.3, 111.7, 30.7).exterior.coords],
    )
    polys = np.array([disc, holed], dtype=object)
    rng = np.random.default_rng(8)
    n = 6000
    start = rng.uniform((109.9, 29.9), (112.1, 31.1), (n, 2))
    scale = np.where(rng.uniform(size=n) < 0.8, 0.005, 0.1)  # 20 % span dozens of cells
    end = start + rng.normal(0, 1, (n, 2)) * scale[:, None]
    geoms = shapely.linestrings(np.stack([start, end], axis=1))
    shapely.prepare(polys)
    owner = roads_mod._interior_owner(geoms, polys)
    for j in range(len(polys)):
        mine = owner == j
        assert shapely.contains_properly(polys[j], geoms[mine]).all()
        assert not shapely.intersects(polys[1 - j], geoms[mine]).any()
    long = scale > 0.01
    assert (owner[long] >= 0).sum() > 100  # long lines are assigned too, not only short ones
    # lines that are properly inside and keep well away from every boundary are all found
    far = shapely.distance(shapely.boundary(polys)[:, None], geoms[None, :]).min(axis=0) > 0.05
    inside = shapely.contains_properly(polys[:, None], geoms[None, :]).any(axis=0)
    assert (owner[far & inside] >= 0).mean() > 0.95


def test_city_road_density_result_repeats_the_snapshot_per_year():
    from agglo.measures.roads import RoadsOptions, city_road_density

    polys = squares(TWO_N_S).assign(name_zh=["南", "北"], agglomeration_id=["x", None])
    road = lines([shapely.LineString([(110.5, 20.25), (110.5, 21.75)])])
    road.attrs = {"source": "demo_synthetic.gpkg", "synthetic": True}
    res = city_road_density(road, polys, RoadsOptions(classes="all"), years=[2010, 2020])
    table = res.tables()["road_density"]
    assert list(table.columns[:3]) == ["adcode", "name_zh", "agglomeration_id"]
    assert set(table["data_status"]) == {"synthetic"} and set(table["source"]) == {
        "demo_synthetic.gpkg"
    }
    v = res.values
    assert len(v) == 4 and sorted(v["year"].unique()) == [2010, 2020]
    dens = road_density(road, polys, classes="all")["density_km_per_100km2"].to_numpy()
    np.testing.assert_array_equal(v[v["year"] == 2020]["value"], dens)
    assert "SYNTHETIC" in res.summary_lines()[0] and "SYNTHETIC" in res.source


def test_two_point_line_boxes_equal_shapely_bounds():
    """The boxes taken from the coordinates of two-point lines are ``shapely.bounds``; with a
    longer line among them no boxes are returned (``shapely.bounds`` is used instead)."""
    rng = np.random.default_rng(6)
    start = rng.uniform((100, 20), (120, 40), (200, 2))
    end = start + rng.normal(0, 0.05, (200, 2))
    geoms = shapely.linestrings(np.stack([start, end], axis=1))
    km, bounds = roads_mod._lengths_km(geoms, with_bounds=True)
    np.testing.assert_array_equal(bounds, shapely.bounds(geoms))
    geod = Geod(ellps="WGS84")
    ref = geod.inv(start[:, 0], start[:, 1], end[:, 0], end[:, 1])[2] / 1000
    np.testing.assert_allclose(km, ref, rtol=1e-12, atol=1e-11)  # 1e-8 m (geodesy docs)
    mixed = np.append(geoms, shapely.LineString([(0, 0), (0, 1), (1, 1)]))
    assert roads_mod._lengths_km(mixed, with_bounds=True)[1] is None
