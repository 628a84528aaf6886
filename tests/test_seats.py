"""The one seat rule (agglo.reference.seats): given seats win, else districts, else polygon."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from pyproj import Geod

from agglo.errors import AggloDataWarning, AggloInputError
from agglo.reference.seats import city_seats, county_seats, read_seats

GEOD = Geod(ellps="WGS84")


def world():
    """Near the equator, 0.1-degree boxes: the equal-area projection barely distorts them."""
    cities = gpd.GeoDataFrame(
        {"adcode": ["100100", "100200"], "name_zh": ["甲市", "乙市"]},
        geometry=[shapely.box(0, 0, 0.4, 0.2), shapely.box(1, 0, 1.2, 0.2)],
        crs=4326,
    )
    counties = gpd.GeoDataFrame(
        {
            "adcode": ["100101", "100102", "100103", "100201"],
            "name_zh": ["甲区", "乙区", "丙县", "丁县"],
            "city_adcode": ["100100", "100100", "100100", "100200"],
        },
        geometry=[
            shapely.box(0, 0, 0.1, 0.1),  # small district: weight 4
            shapely.box(0.1, 0, 0.3, 0.2),  # district of 4x the area: weight 1
            shapely.box(0.3, 0, 0.4, 0.2),  # a county: not part of the rule
            shapely.box(1, 0, 1.2, 0.2),
        ],
        crs=4326,
    )
    return cities, counties


def test_districts_inverse_area_weighted_and_polygon_fallback():
    cities, counties = world()
    s = city_seats(cities, counties)
    # (4 * (0.05, 0.05) + 1 * (0.2, 0.1)) / 5 = (0.08, 0.06), inside 甲区
    assert s.geometry.iloc[0].x == pytest.approx(0.08, abs=2e-4)
    assert s.geometry.iloc[0].y == pytest.approx(0.06, abs=2e-4)
    # 乙市 has no district: the representative point of its polygon
    assert s.geometry.iloc[1].equals(cities.geometry.iloc[1].representative_point())
    assert s.seat_source.tolist() == ["districts", "polygon"]
    assert list(s.columns) == ["adcode", "name_zh", "seat_source", "geometry"]
    assert s.crs.to_epsg() == 4326
    # no counties: every city by its polygon
    assert city_seats(cities).seat_source.tolist() == ["polygon", "polygon"]


def test_seat_outside_the_districts_moves_onto_them():
    cities = gpd.GeoDataFrame({"adcode": ["100100"]}, geometry=[shapely.box(0, 0, 0.3, 0.1)])
    cities = cities.set_crs(4326)
    counties = gpd.GeoDataFrame(
        {"name_zh": ["甲区", "乙县", "丙区"], "city_adcode": "100100"},
        geometry=[
            shapely.box(0, 0, 0.1, 0.1),
            shapely.box(0.1, 0, 0.2, 0.1),
            shapely.box(0.2, 0, 0.3, 0.1),
        ],
        crs=4326,
    )
    p = city_seats(cities, counties).geometry.iloc[0]
    # the weighted mean (0.15, 0.05) lies in the county; nearest district point: x = 0.1 or 0.2
    assert min(abs(p.x - 0.1), abs(p.x - 0.2)) < 2e-4 and p.y == pytest.approx(0.05, abs=2e-4)


def test_given_seats_win_and_gaps_are_reported():
    cities, counties = world()
    given = pd.DataFrame({"adcode": ["100200"], "lon": [1.15], "lat": [0.15]})
    with pytest.warns(AggloDataWarning, match=r"covers 1 of 2 units.*100100"):
        s = city_seats(cities, counties, seats=given)
    assert s.seat_source.tolist() == ["districts", "given"]
    assert (s.geometry.iloc[1].x, s.geometry.iloc[1].y) == (1.15, 0.15)
    pts = gpd.GeoDataFrame(
        {"adcode": ["100100", "100200", "999999"]},
        geometry=[shapely.Point(0.2, 0.1), shapely.Point(1.1, 0.1), shapely.Point(5, 5)],
        crs=4326,
    ).to_crs(3857)  # any CRS
    with pytest.warns(AggloDataWarning, match="match no unit and are ignored: \\['999999'\\]"):
        s = city_seats(cities, counties, seats=pts)
    assert s.seat_source.tolist() == ["given", "given"]
    assert s.geometry.iloc[0].x == pytest.approx(0.2)


def test_bad_given_seats_are_refused():
    cities, counties = world()
    dup = pd.DataFrame({"adcode": ["100100", "100100"], "lon": [0, 0], "lat": [0, 0]})
    with pytest.raises(AggloInputError, match="appear more than once"):
        city_seats(cities, seats=dup)
    bad = pd.DataFrame({"adcode": ["100100"], "lon": [500.0], "lat": [0.0]})
    with pytest.raises(AggloInputError, match="no valid lon/lat"):
        city_seats(cities, seats=bad)
    with pytest.raises(AggloInputError, match="lacks column"):
        city_seats(cities, seats=pd.DataFrame({"adcode": ["100100"]}))
    with pytest.raises(AggloInputError, match="lack column"):
        city_seats(cities, counties.drop(columns="city_adcode"))


def test_county_seats(tmp_path):
    _, counties = world()
    k = county_seats(counties)
    assert k.geometry.iloc[0].equals(counties.geometry.iloc[0].representative_point())
    path = tmp_path / "seats.csv"
    path.write_text("adcode,lon,lat\n100101,0.01,0.02\n", encoding="utf-8")
    with pytest.warns(AggloDataWarning, match="covers 1 of 4"):
        k = county_seats(counties, seats=read_seats(path))
    assert k.seat_source.tolist() == ["given", "polygon", "polygon", "polygon"]
    assert (k.geometry.iloc[0].x, k.geometry.iloc[0].y) == (0.01, 0.02)


def test_bundled_seats_inside_their_cities(cities, counties):
    s = city_seats(cities, counties)
    gap = shapely.distance(s.geometry.to_numpy(), cities.geometry.to_numpy())
    assert (gap < 1e-6).all()  # degrees; seats lie in (or on the edge of) their city
    assert (s.seat_source == "districts").sum() > 100
    cd = s.set_index("adcode").geometry["510100"]
    # Chengdu's seat lies within 5 km of Tianfu Square (104.066 E, 30.657 N)
    assert GEOD.inv(cd.x, cd.y, 104.066, 30.657)[2] < 5_000
