"""Geodesic measures against closed forms, and CRS refusal."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod

from agglo.errors import CRSError
from agglo.measures.geodesy import (
    ensure_wgs84,
    geodesic_area_km2,
    geodesic_length_km,
    geodesic_segments_m,
    geodesic_steps_m,
    require_projected,
)

A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)


def _meridian_arc(phi: float) -> float:
    """Meridian arc length from the equator to latitude phi (radians), by numerical integration."""
    n = 20000
    h = phi / n
    total = 0.0
    for i in range(n + 1):
        p = i * h
        m = A * (1 - E2) / (1 - E2 * math.sin(p) ** 2) ** 1.5
        total += m * (0.5 if i in (0, n) else 1.0)
    return total * h


def test_length_along_a_meridian_matches_closed_form():
    line = gpd.GeoSeries([shapely.LineString([(104, 30), (104, 30.5), (104, 31)])], crs=4326)
    expected = (_meridian_arc(math.radians(31)) - _meridian_arc(math.radians(30))) / 1000
    assert geodesic_length_km(line).iloc[0] == pytest.approx(expected, rel=1e-6)


def test_multilines_and_projected_input():
    ml = shapely.MultiLineString([[(0, 0), (0, 1)], [(1, 0), (1, 1)]])
    gs = gpd.GeoSeries([ml, None], crs=4326)
    out = geodesic_length_km(gs)
    assert out.iloc[0] == pytest.approx(2 * 110.574, rel=1e-4)
    assert out.iloc[1] == 0
    projected = gpd.GeoSeries([shapely.LineString([(0, 0), (0, 1)])], crs=4326).to_crs(32631)
    assert geodesic_length_km(projected).iloc[0] == pytest.approx(110.574, rel=1e-4)


def test_area_of_a_lat_lon_rectangle_matches_closed_form():
    # area between two parallels on the ellipsoid via pyproj's authalic computation for a band
    box = gpd.GeoSeries([shapely.box(100, 20, 101, 21)], crs=4326)
    lons = [100, 101, 101, 100]
    lats = [20, 20, 21, 21]
    expected = abs(Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)[0]) / 1e6
    assert geodesic_area_km2(box).iloc[0] == pytest.approx(expected, rel=1e-9)
    # and against the spherical-zone formula (sphere of the authalic radius), within 0.5 %
    r = 6371.0072
    zone = r**2 * math.radians(1) * (math.sin(math.radians(21)) - math.sin(math.radians(20)))
    assert geodesic_area_km2(box).iloc[0] == pytest.approx(zone, rel=5e-3)


def test_crs_checks():
    g = gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs=None)
    with pytest.raises(CRSError, match="no CRS"):
        ensure_wgs84(g)
    with pytest.raises(CRSError, match="geographic"):
        require_projected(g.set_crs(4326), "buffering")
    require_projected(g.set_crs(32650), "buffering")


def test_multipolygon_with_mixed_orientation_is_not_cancelled():
    ccw = shapely.box(100, 20, 101, 21)
    cw = shapely.box(102, 20, 103, 21).reverse()
    both = gpd.GeoSeries([shapely.MultiPolygon([ccw, cw]), ccw], crs=4326)
    areas = geodesic_area_km2(both)
    assert areas.iloc[0] == pytest.approx(2 * areas.iloc[1], rel=1e-9)


@pytest.mark.parametrize("max_m", [0.5, 30.0, 3_000.0, 49_000.0, 400_000.0, 2e7])
def test_geodesic_segments_equal_pyproj_karney(max_m: float) -> None:
    """The chord series (and its pyproj fallback beyond 50 km) against Karney's inverse."""
    geod = Geod(ellps="WGS84")
    rng = np.random.default_rng(int(max_m))
    n = 20_000
    lon0, lat0 = rng.uniform(-180, 180, n), rng.uniform(-89.9, 89.9, n)
    lon1, lat1, _ = geod.fwd(lon0, lat0, rng.uniform(0, 360, n), rng.uniform(0, max_m, n))
    expected = geod.inv(lon0, lat0, lon1, lat1)[2]
    got = geodesic_segments_m(lon0, lat0, lon1, lat1)
    assert np.abs(got - expected).max() < 1e-8 * max(1.0, max_m / 50_000)


def test_geodesic_segments_edge_cases() -> None:
    geod = Geod(ellps="WGS84")
    # antimeridian, pole, zero length, NaN (pyproj's answer kept)
    lon0 = np.array([179.9995, 10.0, 116.4, np.nan, 0.0])
    lat0 = np.array([30.0, 89.99999, 39.9, 1.0, 90.0])
    lon1 = np.array([-179.9995, 190.0, 116.4, 2.0, 45.0])
    lat1 = np.array([30.0, 89.99999, 39.9, 1.0, 89.99])
    expected = geod.inv(lon0, lat0, lon1, lat1)[2]
    got = geodesic_segments_m(lon0, lat0, lon1, lat1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8, equal_nan=True)
    assert got[2] == 0.0


def test_geodesic_steps_are_the_consecutive_segments() -> None:
    rng = np.random.default_rng(7)
    lon, lat = 100 + rng.normal(0, 0.01, 1000).cumsum(), 30 + rng.normal(0, 0.01, 1000).cumsum()
    expected = Geod(ellps="WGS84").inv(lon[:-1], lat[:-1], lon[1:], lat[1:])[2]
    np.testing.assert_allclose(geodesic_steps_m(lon, lat), expected, rtol=0, atol=1e-8)
    keep = rng.random(999) < 0.5
    got = geodesic_steps_m(lon, lat, keep)
    np.testing.assert_allclose(got, expected[keep], rtol=0, atol=1e-8)
    assert geodesic_steps_m(lon[:1], lat[:1]).shape == (0,)
