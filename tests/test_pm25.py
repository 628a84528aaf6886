"""PM2.5 zonal means: closed-form fields, cross-checks with exactextract and rasterstats, file
layouts (NetCDF orientation, 0-360, fill values, scale/offset, GeoTIFF stacks) and errors."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import geopandas as gpd
import netCDF4
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import xarray as xr
from rasterio.transform import from_origin
from scipy.integrate import quad

from agglo.errors import AggloDataWarning, AggloInputError, CRSError
from agglo.io.rasters import Grid, year_from_name
from agglo.measures.pm25 import PM25Warning, cell_area_km2, coverage_plan, zonal_pm25

DEMO = Path(__file__).resolve().parents[1] / "data" / "rasters"

# WGS84, written out so expected values do not come from agglo
A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)


def band_area_km2(lat1: float, lat2: float, dlon: float) -> float:
    """Area of a lat/lon quadrangle by numerical integration of M(φ) N(φ) cos φ dφ dλ."""

    def integrand(p: float) -> float:
        w = 1 - E2 * math.sin(p) ** 2
        return A * (1 - E2) / w**1.5 * A / math.sqrt(w) * math.cos(p)

    val = quad(integrand, math.radians(lat1), math.radians(lat2), epsabs=1e-9, epsrel=1e-13)[0]
    return abs(val) * math.radians(dlon) / 1e6


# -- writers (raw netCDF4 / rasterio, independent of agglo's writer) --------------------------
def write_nc(
    path: Path,
    values: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    var: str = "PM25",
    lon_first: bool = False,
    fill: float | None = None,
    missing_value: float | None = None,
    dtype: str = "f4",
    scale: float | None = None,
    offset: float | None = None,
) -> Path:
    """values: (lat, lon) array in the order of ``lat``; NaN -> fill (or packed)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lat", len(lat))
        ds.createDimension("lon", len(lon))
        ds.createVariable("lat", "f8", ("lat",))[:] = lat
        ds.createVariable("lon", "f8", ("lon",))[:] = lon
        dims = ("lon", "lat") if lon_first else ("lat", "lon")
        v = ds.createVariable(var, dtype, dims, fill_value=fill)
        v.set_auto_maskandscale(False)
        data = np.asarray(values, dtype=np.float64)
        if scale is not None:
            v.scale_factor = scale
            v.add_offset = offset or 0.0
            packed = np.round((data - (offset or 0.0)) / scale)
            data = np.where(np.isnan(data), fill, packed)
        else:
            data = np.where(np.isnan(data), fill if fill is not None else np.nan, data)
        if missing_value is not None:
            v.missing_value = missing_value
        v[:] = data.T.astype(dtype) if lon_first else data.astype(dtype)
    return path


def write_tif(
    path: Path,
    bands: np.ndarray,
    west: float,
    north: float,
    res: float,
    *,
    crs: str | None = "EPSG:4326",
    nodata: float | None = -999.0,
    descriptions: list[str] | None = None,
) -> Path:
    if bands.ndim == 2:
        bands = bands[None]
    count, h, w = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=count,
        dtype="float32",
        crs=crs,
        transform=from_origin(west, north, res, res),
        nodata=nodata,
    ) as ds:
        data = np.where(np.isnan(bands), nodata if nodata is not None else np.nan, bands)
        ds.write(data.astype("float32"))
        for i, d in enumerate(descriptions or []):
            ds.set_band_description(i + 1, d)
    return path


def polys(*geoms: shapely.Geometry, crs: int | str = 4326) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"adcode": [f"p{i}" for i in range(len(geoms))]}, geometry=list(geoms), crs=crs
    )


def one(df: pd.DataFrame, col: str = "pm25_mean") -> float:
    assert len(df) == 1
    return float(df[col].iloc[0])


# -- cell areas -------------------------------------------------------------------------------
@pytest.mark.parametrize("lat1", [0.0, 27.5, 44.99, 69.9, -33.3])
def test_cell_area_matches_numerical_integration(lat1):
    for d in (0.01, 0.1, 1.0):
        expected = band_area_km2(lat1, lat1 + d, d)
        got = float(cell_area_km2(np.array([lat1 + d, lat1]), d)[0])
        assert got == pytest.approx(expected, rel=1e-9)


def test_cell_areas_sum_to_the_ellipsoid():
    edges = np.linspace(90, -90, 1801)
    total = cell_area_km2(edges, 0.1).sum() * 3600
    # WGS84 surface area 510,065,621.72 km² (published constant)
    assert total == pytest.approx(510_065_621.72, rel=1e-9)


# -- closed-form fields -----------------------------------------------------------------------
@pytest.fixture
def band_grid(tmp_path):
    """0.5° grid 20-40°N, 100-110°E: value 10 north of 30°N, 20 south; and value = latitude."""
    lat = np.arange(39.75, 20, -0.5)  # descending, centres
    lon = np.arange(100.25, 110, 0.5)
    bands = np.where(lat[:, None] > 30, 10.0, 20.0) * np.ones((1, lon.size))
    latfield = lat[:, None] * np.ones((1, lon.size))
    p1 = write_nc(tmp_path / "band.2020.nc", bands, lat, lon)
    p2 = write_nc(tmp_path / "lat.2020.nc", latfield, lat, lon, dtype="f8")
    return p1, p2


def test_constant_per_band_area_weighted_closed_form(band_grid):
    # lat edges on cell edges (27.5, 34.0), lon edges inside cells (101.25, 104.7):
    # the area-weighted mean is (10 A(30, 34) + 20 A(27.5, 30)) / A(27.5, 34)
    path, _ = band_grid
    rect = shapely.box(101.25, 27.5, 104.7, 34.0)
    out = zonal_pm25(path, polys(rect), weights="area", scheduler="synchronous")
    a_n, a_s = band_area_km2(30, 34, 1), band_area_km2(27.5, 30, 1)
    expected = (10 * a_n + 20 * a_s) / (a_n + a_s)
    assert one(out) == pytest.approx(expected, abs=1e-6)
    # coverage weights ignore the cos φ shrinking: (10 * 8 rows + 20 * 5 rows) / 13
    cov = zonal_pm25(path, polys(rect), weights="coverage", scheduler="synchronous")
    assert one(cov) == pytest.approx((10 * 8 + 20 * 5) / 13, abs=1e-9)
    assert one(out, "valid_fraction") == pytest.approx(1.0)
    # 13 rows x cells touched between 101.25 and 104.7 (101.0 .. 105.0 -> 8 columns)
    assert int(out["n_cells"].iloc[0]) == 13 * 8


def test_latitude_field_area_weighted_closed_form(band_grid):
    _, path = band_grid
    rect = shapely.box(100.0, 22.0, 110.0, 38.0)  # 32 whole rows
    out = zonal_pm25(path, polys(rect), scheduler="synchronous")
    centres = np.arange(37.75, 22, -0.5)
    w = np.array([band_area_km2(c - 0.25, c + 0.25, 1) for c in centres])
    expected = float((centres * w).sum() / w.sum())  # below 30 (the plain mean): cells shrink north
    assert one(out) == pytest.approx(expected, abs=1e-6)
    assert expected < 30.0


def test_area_weights_differ_from_coverage_where_latitude_spans(band_grid):
    _, path = band_grid
    rect = shapely.box(100.0, 22.0, 110.0, 38.0)
    cov = zonal_pm25(path, polys(rect), weights="coverage", scheduler="synchronous")
    assert one(cov) == pytest.approx(30.0, abs=1e-9)  # mean of symmetric centres 22.25..37.75


# -- cross-checks -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_tif(tmp_path_factory):
    """The 2015 demo grid as a north-up GeoTIFF (same values) for exactextract/rasterstats."""
    path = sorted(DEMO.glob("*2015.nc"))[0]
    with netCDF4.Dataset(path) as ds:
        lat = ds["lat"][:]
        lon = ds["lon"][:]
        v = np.ma.filled(ds["PM25"][:].astype(np.float64), np.nan)
    v = v[::-1]  # ascending lat in the file -> north-up
    res = float(lon[1] - lon[0])
    out = tmp_path_factory.mktemp("tif") / "demo.2015.tif"
    return write_tif(out, v, float(lon[0]) - res / 2, float(lat.max()) + res / 2, res)


@pytest.fixture(scope="module")
def some_cities(cities):
    return cities.iloc[::4].reset_index(drop=True)


def test_coverage_mean_matches_exactextract(demo_tif, some_cities):
    from exactextract import exact_extract

    ref = exact_extract(str(demo_tif), some_cities, "mean", output="pandas")["mean"].to_numpy()
    ours = zonal_pm25(demo_tif, some_cities, weights="coverage", scheduler="synchronous")
    np.testing.assert_allclose(ours["pm25_mean"].to_numpy(), ref, rtol=1e-6)


def test_netcdf_and_geotiff_give_identical_results(demo_tif, some_cities):
    a = zonal_pm25(demo_tif, some_cities, scheduler="synchronous")
    b = zonal_pm25(DEMO, some_cities, years=[2015], scheduler="synchronous")
    # the GeoTIFF origin comes from float32 coordinates: coverage differs in the 11th digit
    np.testing.assert_allclose(a["pm25_mean"], b["pm25_mean"], rtol=1e-9)


def test_area_mean_matches_exactextract_spherical(demo_tif, some_cities, monkeypatch):
    from exactextract import exact_extract

    import agglo.measures.pm25 as m

    ref = exact_extract(
        str(demo_tif), some_cities, "mean(coverage_weight=area_spherical_m2)", output="pandas"
    ).iloc[:, 0]
    ref = ref.to_numpy()
    # on the ellipsoid: differs from the sphere by < 0.05 % for cities spanning a few degrees
    ell = zonal_pm25(demo_tif, some_cities, scheduler="synchronous")["pm25_mean"].to_numpy()
    np.testing.assert_allclose(ell, ref, rtol=5e-4)
    assert np.abs(ell - ref).max() > 0  # it is not the sphere

    # with a spherical cell area agglo reproduces exactextract exactly
    def sphere(edges, dlon):
        return np.abs(np.diff(np.sin(np.radians(edges)))) * math.radians(dlon) * 6371.0**2

    monkeypatch.setattr(m, "cell_area_km2", sphere)
    sph = zonal_pm25(demo_tif, some_cities, scheduler="synchronous")["pm25_mean"].to_numpy()
    np.testing.assert_allclose(sph, ref, rtol=1e-9)


def test_centroid_matches_rasterstats(demo_tif, some_cities):
    from rasterstats import zonal_stats

    ref = pd.DataFrame(zonal_stats(some_cities, str(demo_tif), stats=["mean", "count"]))
    ours = zonal_pm25(demo_tif, some_cities, weights="centroid", scheduler="synchronous")
    ok = ref["count"] > 0
    assert ok.sum() >= 30
    # rasterstats averages in float32 (the raster's dtype): agree to its precision
    np.testing.assert_allclose(ours["pm25_mean"][ok], ref["mean"][ok], rtol=1e-6)
    np.testing.assert_array_equal(ours["n_cells"][ok], ref["count"][ok])


# -- file layouts -----------------------------------------------------------------------------
def _field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return 30 + lat[:, None] * 0.7 + np.sin(lon[None, :] / 3.0) * 5


def test_ascending_descending_and_lon_lat_order_agree(tmp_path):
    lat = np.arange(20.05, 30, 0.1)
    lon = np.arange(100.05, 110, 0.1)
    v = _field(lat, lon)
    asc = write_nc(tmp_path / "a.2010.nc", v, lat, lon)
    desc = write_nc(tmp_path / "d.2010.nc", v[::-1], lat[::-1], lon)
    swap = write_nc(tmp_path / "s.2010.nc", v, lat, lon, lon_first=True)
    shape = shapely.Point(104.33, 24.71).buffer(1.3)
    res = [zonal_pm25(p, polys(shape), scheduler="synchronous") for p in (asc, desc, swap)]
    assert one(res[0]) == pytest.approx(one(res[1]), rel=1e-12)
    assert one(res[0]) == pytest.approx(one(res[2]), rel=1e-12)
    # the field rises northwards: a shape in the north has a higher mean
    north = zonal_pm25(asc, polys(shape.buffer(-1.0).centroid.buffer(0.3)), scheduler="synchronous")
    assert 30 + 24.7 * 0.7 - 6 < one(north) < 30 + 24.7 * 0.7 + 6


def test_0_360_longitudes(tmp_path):
    # a 1° global grid, values = centre longitude in -180..180 convention + 200 (PM2.5 >= 0)
    lat = np.arange(-89.5, 90, 1.0)
    lon360 = np.arange(0.5, 360, 1.0)
    lon180 = np.arange(-179.5, 180, 1.0)
    val360 = np.where(lon360 > 180, lon360 - 360, lon360)[None, :] * np.ones((lat.size, 1)) + 200
    val180 = lon180[None, :] * np.ones((lat.size, 1)) + 200
    p360 = write_nc(tmp_path / "g360.2020.nc", val360, lat, lon360, dtype="f8")
    p180 = write_nc(tmp_path / "g180.2020.nc", val180, lat, lon180, dtype="f8")
    west = shapely.box(-101.0, 30.0, -98.0, 32.0)  # centres -100.5, -99.5, -98.5
    across = shapely.box(-1.0, 10.0, 2.0, 11.0)  # straddles the 0° seam
    g = polys(west, across)
    a = zonal_pm25(p360, g, weights="coverage", scheduler="synchronous")
    b = zonal_pm25(p180, g, weights="coverage", scheduler="synchronous")
    np.testing.assert_allclose(a["pm25_mean"], [100.5, 200.5], atol=1e-9)
    np.testing.assert_allclose(b["pm25_mean"], [100.5, 200.5], atol=1e-9)
    np.testing.assert_array_equal(a["n_cells"], [6, 3])  # 2 rows x 3 columns, 1 row x 3


def test_fill_values_are_excluded_and_counted(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    v = np.array([[10.0, np.nan], [20.0, 30.0]])
    p = write_nc(tmp_path / "f.2015.nc", v, lat, lon, fill=-999.0)
    out = zonal_pm25(p, polys(shapely.box(100, 29, 102, 31)), weights="coverage")
    assert one(out) == pytest.approx(20.0)  # (10 + 20 + 30) / 3
    assert one(out, "valid_fraction") == pytest.approx(0.75)
    assert int(out["n_cells"].iloc[0]) == 3
    # missing_value instead of _FillValue
    p2 = write_nc(tmp_path / "m.2015.nc", np.nan_to_num(v, nan=-1.0), lat, lon, missing_value=-1.0)
    out2 = zonal_pm25(p2, polys(shapely.box(100, 29, 102, 31)), weights="coverage")
    assert one(out2) == pytest.approx(20.0)


def test_scale_offset_are_applied(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    v = np.array([[12.3, 45.6], [7.8, np.nan]])
    p = write_nc(tmp_path / "s.2015.nc", v, lat, lon, dtype="i2", fill=-32768, scale=0.1, offset=5)
    out = zonal_pm25(p, polys(shapely.box(100, 29, 102, 31)), weights="coverage")
    assert one(out) == pytest.approx((12.3 + 45.6 + 7.8) / 3, abs=1e-9)


def test_polygon_smaller_than_a_cell(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    v = np.array([[10.0, 40.0], [20.0, 30.0]])
    p = write_nc(tmp_path / "t.2015.nc", v, lat, lon)
    tiny = shapely.box(101.2, 30.1, 101.3, 30.2)  # inside the 40 cell, holds no cell centre
    for w in ("area", "coverage", "centroid"):
        out = zonal_pm25(p, polys(tiny), weights=w, scheduler="synchronous")
        assert one(out) == pytest.approx(40.0), w
        assert int(out["n_cells"].iloc[0]) == 1
    # straddling two cells 1:3 -> coverage mean 0.25*10 + 0.75*40
    two = shapely.box(100.9, 30.4, 101.3, 30.6)
    assert one(zonal_pm25(p, polys(two), weights="coverage")) == pytest.approx(32.5)


def test_polygon_outside_the_raster_is_nan_with_a_warning(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    p = write_nc(tmp_path / "o.2015.nc", np.ones((2, 2)), lat, lon)
    g = polys(shapely.box(100, 29, 101, 30), shapely.box(120, 40, 121, 41))
    with (
        pytest.warns(PM25Warning, match=r"1 polygon\(s\) have no valid PM2.5 cells.*2015: p1"),
        pytest.warns(AggloDataWarning, match=r"covers only part of 1 polygon\(s\).*: p1"),
    ):
        out = zonal_pm25(p, g)
    assert out["pm25_mean"].iloc[0] == pytest.approx(1.0)
    assert np.isnan(out["pm25_mean"].iloc[1])
    assert out["valid_fraction"].iloc[1] == 0.0 and out["n_cells"].iloc[1] == 0


def test_partly_outside_polygon_reports_valid_fraction(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    p = write_nc(tmp_path / "o.2015.nc", np.full((2, 2), 7.0), lat, lon)
    with pytest.warns(AggloDataWarning, match=r"covers only part of 1 polygon\(s\).*: p0"):
        out = zonal_pm25(p, polys(shapely.box(101, 29, 103, 30)), weights="coverage")
    assert one(out) == pytest.approx(7.0)
    assert one(out, "valid_fraction") == pytest.approx(0.5)


def test_mismatched_crs_polygons_are_reprojected(band_grid):
    _, path = band_grid
    rect = polys(shapely.box(101.25, 27.5, 104.7, 34.0))
    merc = rect.to_crs(3857)  # Mercator keeps parallels/meridians straight: same rectangle
    a = zonal_pm25(path, rect, scheduler="synchronous")
    b = zonal_pm25(path, merc, scheduler="synchronous")
    assert one(a) == pytest.approx(one(b), rel=1e-9)


def test_raster_without_crs_is_refused_unless_stated(tmp_path):
    p = write_tif(tmp_path / "nocrs.2018.tif", np.full((2, 2), 5.0), 100, 31, 1.0, crs=None)
    g = polys(shapely.box(100, 29, 102, 31))
    with pytest.raises(CRSError, match=r"has no CRS.*crs='EPSG:4326'"):
        zonal_pm25(p, g)
    assert one(zonal_pm25(p, g, raster_crs="EPSG:4326")) == pytest.approx(5.0)


def test_netcdf_is_taken_as_wgs84_and_says_so(band_grid, caplog):
    path, _ = band_grid
    with caplog.at_level(logging.INFO, logger="agglo"):
        out = zonal_pm25(path, polys(shapely.box(101, 28, 102, 29)))
    assert "taken as EPSG:4326" in out.attrs["crs"]
    assert any("taken as EPSG:4326" in r.getMessage() for r in caplog.records)


def test_truncated_file_gives_a_clear_error(tmp_path, band_grid):
    path, _ = band_grid
    bad = tmp_path / "cut.2020.nc"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(AggloInputError, match="truncated or corrupt"):
        zonal_pm25(bad, polys(shapely.box(101, 28, 102, 29)))
    junk = tmp_path / "junk.2020.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(AggloInputError, match="truncated or corrupt"):
        zonal_pm25(junk, polys(shapely.box(101, 28, 102, 29)))


def test_directory_of_years_and_year_selection(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    for y, name in [
        (2010, "V6GL02.04.CNNPM25.0p10.Global.2010.nc"),
        (2015, "V5GL03.HybridPM25.China.201501-201512.nc"),
        (2020, "V6GL02.04.CNNPM25.GL.202001-202012.nc"),
    ]:
        write_nc(tmp_path / name, np.full((2, 2), float(y - 2000)), lat, lon)
    write_nc(tmp_path / "V6GL02.04.CNNPM25.GL.202003-202003.nc", np.zeros((2, 2)), lat, lon)
    g = polys(shapely.box(100, 29, 102, 31))
    out = zonal_pm25(tmp_path, g)
    assert out["year"].tolist() == [2010, 2015, 2020]
    # the monthly file is skipped
    np.testing.assert_allclose(out["pm25_mean"], [10.0, 15.0, 20.0], rtol=1e-12)
    sel = zonal_pm25(tmp_path, g, years=[2020, 2010])
    assert sel["year"].tolist() == [2010, 2020]
    with pytest.raises(AggloInputError, match=r"no data for year\(s\) \[2012\].*2010, 2015, 2020"):
        zonal_pm25(tmp_path, g, years=[2012])


def test_multiband_geotiff_with_years_in_descriptions(tmp_path):
    stack = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 2.0), np.full((2, 2), 3.0)])
    p = write_tif(
        tmp_path / "stack.tif",
        stack,
        100,
        31,
        1.0,
        descriptions=["PM25_2000", "PM25_2001", "PM25_2002"],
    )
    out = zonal_pm25(p, polys(shapely.box(100, 29, 102, 31)), years=[2001, 2002])
    np.testing.assert_allclose(out["pm25_mean"], [2.0, 3.0], rtol=1e-12)


def test_xarray_source_with_time_axis():
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    time = pd.to_datetime(["2010-07-01", "2011-07-01"])
    da = xr.DataArray(
        np.stack([np.full((2, 2), 4.0), np.full((2, 2), 6.0)]),
        dims=("time", "lat", "lon"),
        coords={"time": time, "lat": lat, "lon": lon},
    )
    out = zonal_pm25(da, polys(shapely.box(100, 29, 102, 31)))
    assert out["year"].tolist() == [2010, 2011]
    np.testing.assert_allclose(out["pm25_mean"], [4.0, 6.0], rtol=1e-12)


def test_year_from_acag_names():
    assert year_from_name("V6GL02.04.CNNPM25.0p10.Global.2020.nc") == 2020
    assert year_from_name("V6GL02.04.CNNPM25.GL.201001-201012.nc") == 2010
    assert year_from_name("V5GL03.HybridPM25.China.201901-201912.nc") == 2019
    assert year_from_name("V6GL02.04.CNNPM25.GL.201003-201003.nc") is None  # monthly
    assert year_from_name("pm25.nc") is None


# -- population weights ----------------------------------------------------------------------
def test_population_weighted_mean_finer_population_grid(tmp_path):
    lat = np.array([30.5, 29.5])
    lon = np.array([100.5, 101.5])
    pm = write_nc(tmp_path / "pm.2020.nc", np.array([[10.0, 40.0], [20.0, 30.0]]), lat, lon)
    # 0.5° population counts: the 10-cell holds 4 x 100 people, the 40-cell 4 x 300, others 0
    pop = np.zeros((4, 4))
    pop[0:2, 0:2] = 100
    pop[0:2, 2:4] = 300
    popf = write_tif(tmp_path / "pop.2020.tif", pop, 100, 31, 0.5)
    out = zonal_pm25(pm, polys(shapely.box(100, 29, 102, 31)), population=popf)
    assert one(out, "pm25_popw") == pytest.approx((10 * 400 + 40 * 1200) / 1600)
    # half of the 40-cell is in the polygon: 600 people there
    half = polys(shapely.box(100, 30, 101.5, 31))
    out2 = zonal_pm25(pm, half, population=popf)
    assert one(out2, "pm25_popw") == pytest.approx((10 * 400 + 40 * 600) / 1000)


def test_population_weighted_mean_coarser_population_grid(tmp_path):
    lat = np.arange(30.75, 29, -0.5)
    lon = np.arange(100.25, 102, 0.5)
    v = np.arange(16, dtype=float).reshape(4, 4)
    pm = write_nc(tmp_path / "pm.2020.nc", v, lat, lon)
    # 1° population: north-west degree 1000 people, others 0 -> weights only in that degree,
    # spread by true area (two PM rows at 30.75 and 30.25 are weighted by their cell areas)
    popf = write_tif(tmp_path / "pop.2020.tif", np.array([[1000.0, 0], [0, 0]]), 100, 31, 1.0)
    out = zonal_pm25(pm, polys(shapely.box(100, 29, 102, 31)), population=popf)
    a_top, a_bot = band_area_km2(30.5, 31, 1), band_area_km2(30, 30.5, 1)
    expected = ((0 + 1) * a_top + (4 + 5) * a_bot) / (2 * a_top + 2 * a_bot)
    assert one(out, "pm25_popw") == pytest.approx(expected, rel=1e-9)


# -- scale-out --------------------------------------------------------------------------------
@pytest.mark.slow
def test_local_cluster_gives_identical_results(some_cities):
    distributed = pytest.importorskip("distributed")
    Client, LocalCluster = distributed.Client, distributed.LocalCluster

    ref = zonal_pm25(DEMO, some_cities, scheduler="synchronous")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        via_client = zonal_pm25(DEMO, some_cities, scheduler=client)
        via_address = zonal_pm25(DEMO, some_cities, scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(ref, via_client)
    pd.testing.assert_frame_equal(ref, via_address)


def test_threads_and_synchronous_identical(some_cities):
    import threading

    before = {t.ident for t in threading.enumerate()}
    a = zonal_pm25(DEMO, some_cities, scheduler="threads", years_per_task=1)
    # the threads are this call's own and joined: none is left to keep a later call from forking
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before
    b = zonal_pm25(DEMO, some_cities, scheduler="synchronous")
    pd.testing.assert_frame_equal(a, b)


def test_coverage_cache_on_disk_is_reused_and_keyed(some_cities, tmp_path, monkeypatch):
    import agglo.measures.pm25 as m

    grid = Grid(west=97, north=35.5, dx=0.1, dy=0.1, nx=265, ny=145)
    cache = m.CoverageCache(tmp_path / "cov")
    p1 = coverage_plan(some_cities.geometry, grid, cache=cache)
    assert len(list(cache.folder.glob("*.plan"))) == 1

    def boom(*a, **k):
        raise AssertionError("coverage recomputed although cached")

    monkeypatch.setattr(m, "_build_plan", boom)
    # a new cache object on the same folder (as in a second process) reads the same plan
    p2 = coverage_plan(some_cities.geometry.copy(), grid, cache=m.CoverageCache(cache.folder))
    assert p2.window == p1.window and p2.mode == p1.mode
    np.testing.assert_array_equal(p2.cells, p1.cells)
    for a, b in ((p1.weights, p2.weights), (p1.base, p2.base)):
        assert (a != b).nnz == 0 and a.shape == b.shape
    # another grid, weights mode or a moved vertex is another entry
    monkeypatch.undo()
    coverage_plan(some_cities.geometry, grid, weights="coverage", cache=cache)
    moved = some_cities.geometry.translate(xoff=1e-9)
    coverage_plan(moved, grid, cache=cache)
    assert len(list(cache.folder.glob("*.plan"))) == 3
    # results through zonal_pm25 are the same with and without the cache
    a = zonal_pm25(DEMO, some_cities, scheduler="synchronous", coverage_cache=cache)
    b = zonal_pm25(DEMO, some_cities, scheduler="synchronous", coverage_cache=cache)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, zonal_pm25(DEMO, some_cities, scheduler="synchronous"))


def test_corrupt_coverage_cache_entry_warns_and_is_replaced(some_cities, tmp_path):
    import agglo.measures.pm25 as m

    grid = Grid(west=97, north=35.5, dx=0.1, dy=0.1, nx=265, ny=145)
    cache = m.CoverageCache(tmp_path)
    p1 = coverage_plan(some_cities.geometry, grid, cache=cache)
    (entry,) = tmp_path.glob("*.plan")
    entry.write_bytes(b"not a zip")
    with pytest.warns(PM25Warning, match="unreadable"):
        p2 = coverage_plan(some_cities.geometry, grid, cache=cache)
    np.testing.assert_array_equal(p2.cells, p1.cells)
    assert coverage_plan(some_cities.geometry, grid, cache=cache).cells.size == p1.cells.size


# -- validation -------------------------------------------------------------------------------
def test_invalid_options_are_refused(band_grid):
    path, _ = band_grid
    g = polys(shapely.box(101, 28, 102, 29))
    with pytest.raises(
        AggloInputError, match=r"weights must be one of area, coverage, centroid; got 'mean'"
    ):
        zonal_pm25(path, g, weights="mean")
    with pytest.raises(AggloInputError, match="id column 'code' not in the polygons"):
        zonal_pm25(path, g, id_col="code")
    with pytest.raises(AggloInputError, match="duplicated values"):
        zonal_pm25(path, pd.concat([g, g]))
    with pytest.raises(CRSError, match="polygons have no CRS"):
        zonal_pm25(path, g.set_crs(None, allow_override=True))
    with pytest.raises(AggloInputError, match="scheduler must be"):
        zonal_pm25(path, g, scheduler="fast")
    with pytest.raises(AggloInputError, match="does not exist"):
        zonal_pm25(path.parent / "nope", g)


def test_input_is_not_modified(band_grid):
    path, _ = band_grid
    g = polys(shapely.box(101, 28, 102, 29), crs=4326).to_crs(3857)
    before = g.copy()
    zonal_pm25(path, g)
    pd.testing.assert_frame_equal(g, before)
    assert g.crs == before.crs


@pytest.mark.parametrize("layout", ["nodata", "mask_band", "int16_scaled"])
def test_geotiff_cell_gather_equals_the_masked_block_read(tmp_path, layout):
    """read_cells (raw native-dtype gather) == rasterio's masked read of the block (read)."""
    from agglo.io.rasters import discover_layers

    rng = np.random.default_rng(0)
    v = rng.uniform(5, 80, (6, 8))
    path = tmp_path / "pm.2019.tif"
    profile = dict(
        driver="GTiff",
        width=8,
        height=6,
        count=1,
        crs="EPSG:4326",
        transform=from_origin(100, 30, 0.5, 0.5),
    )
    if layout == "int16_scaled":
        profile.update(dtype="int16", nodata=-1)
        raw = np.rint(v * 10).astype("int16")
        raw[0, 0] = -1
    else:
        profile.update(dtype="float32", nodata=-999.0 if layout == "nodata" else None)
        raw = v.astype("float32")
        raw[1, 2] = -999.0
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(raw, 1)
        if layout == "int16_scaled":
            ds.scales, ds.offsets = (0.1,), (0.5,)
        if layout == "mask_band":
            m = np.full((6, 8), 255, dtype="uint8")
            m[4, 5] = 0
            ds.write_mask(m)
    (layer,) = discover_layers(path)
    rows, cols = np.array([0, 1, 4, 5, 3]), np.array([0, 2, 5, 7, 1])
    block = layer.read(layer.grid.window((100, 27, 104, 30), margin=0))
    got = layer.read_cells(rows, cols)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(block[rows, cols]))
    np.testing.assert_allclose(got, block[rows, cols], rtol=1e-12)
    assert np.isnan(got).sum() == 1


def test_id_col_none_keys_the_result_by_the_callers_index(some_cities):
    keyed = some_cities.set_index("adcode", drop=False).rename_axis("code")
    keyed.index = "c" + keyed.index
    by_index = zonal_pm25(DEMO, keyed, id_col=None, scheduler="synchronous")
    by_col = zonal_pm25(DEMO, some_cities, scheduler="synchronous")
    assert by_index.index.name == "code" and "adcode" not in by_index.columns
    assert len(by_index) == len(by_col)
    np.testing.assert_array_equal(by_index.index, "c" + by_col["adcode"].to_numpy())
    np.testing.assert_array_equal(by_index["pm25_mean"], by_col["pm25_mean"])
    dup = keyed.copy()
    dup.index = ["same"] * len(dup)
    with pytest.raises(AggloInputError, match=r"index.*duplicated"):
        zonal_pm25(DEMO, dup, id_col=None)


def test_city_pm25_result_and_coverage_cache_option(some_cities, tmp_path):
    from agglo.measures.pm25 import PM25Options, city_pm25

    opts = PM25Options(scheduler="synchronous", coverage_cache=str(tmp_path / "cov"))
    res = city_pm25(DEMO, some_cities, opts, years=[2010, 2020])
    assert len(list((tmp_path / "cov").glob("coverage-*.plan"))) == 1
    again = city_pm25(DEMO, some_cities, opts, years=[2010, 2020])
    pd.testing.assert_frame_equal(res.means, again.means)
    ref = zonal_pm25(DEMO, some_cities, years=[2010, 2020], scheduler="synchronous")
    np.testing.assert_array_equal(res.values["value"], ref["pm25_mean"])
    assert list(res.values.columns) == ["adcode", "year", "value"]
    table = res.tables()["pm25"]
    assert set(table["data_status"]) == {"synthetic"} and res.synthetic
    assert f"{some_cities['adcode'].nunique()} cities x 2 years" in res.summary_lines()[0]
    with pytest.raises(AggloInputError, match="no data for year"):
        city_pm25(DEMO, some_cities, opts, years=[1990])


def test_undeclared_fills_found_only_among_out_of_range_cells_equal_a_full_scan():
    """The fill screen compares only negative / huge cells; same cells as isclose on all."""
    import xarray as xr

    from agglo.io import rasters

    grid = rasters.Grid(west=100, north=30, dx=1, dy=1, nx=3, ny=1)
    layer = rasters.Layer(year=2020, kind="xarray", grid=grid, data=xr.DataArray([0], attrs={}))
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 200, 20_000)
    where = rng.choice(values.size, 400, replace=False)
    fills = np.array(rasters.UNDECLARED_FILLS)
    values[where] = rng.choice(fills, where.size) * (1 + rng.uniform(-9e-7, 9e-7, where.size))
    values[:30] = np.nan
    before = values.copy()
    out, notes = rasters.screen_pm25_values(values, layer)
    expected = values.copy()
    for fill in fills:  # the full scan, by definition
        expected[np.isclose(values, fill, rtol=1e-6, atol=0.0)] = np.nan
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(values, before)  # the input is not modified
    assert len(notes) == len(fills)


@pytest.mark.parametrize(
    "ascending, transpose, split",
    [(True, False, False), (False, False, False), (True, True, False), (True, False, True)],
)
@pytest.mark.parametrize("off_grid", [True, False])
def test_banded_cell_gather_equals_netcdf4_masked_read(
    tmp_path, monkeypatch, ascending, transpose, split, off_grid
):
    """read_indexed (chunk-row bands, raw dtype, CF decode of the gathered cells only) ==
    netCDF4's own masked+scaled read of the whole variable, cells outside the grid NaN;
    ``split``: the bands shared with a forked child (shared buffer), same values;
    ``off_grid=False``: every cell inside the grid, decoded band by band into the result
    (into a shared one with the split, or copied into an ``out`` given)."""
    from agglo._forked import fork_available
    from agglo.io import rasters
    from agglo.io.rasters import discover_layers

    monkeypatch.setattr(rasters, "_MIN_BAND_ROWS", 1)  # one band per 5-row chunk
    if split:
        if not fork_available():
            pytest.skip("forked reads need Linux with the fork start method")
        monkeypatch.setattr(rasters, "_SPLIT_READ_CELLS", 0)
        monkeypatch.setattr(rasters, "_free_to_fork", lambda: True)  # 2 cores, no threads
        started = []
        real_start = rasters.ForkedCall.start.__func__

        def spy(cls, *args, **kwargs):
            started.append(kwargs.get("name"))
            return real_start(cls, *args, **kwargs)

        monkeypatch.setattr(rasters.ForkedCall, "start", classmethod(spy))
    else:
        monkeypatch.setattr(rasters, "_SPLIT_READ_CELLS", 10**12)

    rng = np.random.default_rng(3)
    ny, nx = 37, 23
    lat = np.arange(20 + 0.25, 20 + ny * 0.5, 0.5)[:ny]
    lon = np.arange(100 + 0.25, 100 + nx * 0.5, 0.5)[:nx]
    raw = np.rint(rng.uniform(50, 800, (ny, nx))).astype("int16")
    raw[rng.random((ny, nx)) < 0.1] = -1
    lat_stored = lat if ascending else lat[::-1]
    path = tmp_path / "pm.2018.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lat", ny)
        ds.createDimension("lon", nx)
        ds.createVariable("lat", "f8", ("lat",))[:] = lat_stored
        ds.createVariable("lon", "f8", ("lon",))[:] = lon
        dims = ("lon", "lat") if transpose else ("lat", "lon")
        chunks = (4, 5) if transpose else (5, 4)  # 5-row chunks: many bands
        v = ds.createVariable("PM25", "i2", dims, fill_value=-1, zlib=True, chunksizes=chunks)
        v.scale_factor, v.add_offset = 0.1, 0.5
        v[:] = raw.T if transpose else raw
    with netCDF4.Dataset(path) as ds:  # independent: the library's decoding, whole grid
        ref = np.ma.asarray(ds["PM25"][:]).astype(float).filled(np.nan)
    ref = ref.T if transpose else ref
    ref = ref[::-1] if ascending else ref  # north-up
    (layer,) = discover_layers(path)
    assert layer.flip_rows == ascending and layer.transpose == transpose
    flat = np.sort(rng.choice(ny * nx, 300, replace=False))
    rows, cols = flat // nx, flat % nx
    expected = ref[flat // nx, flat % nx]
    if off_grid:
        rows = np.r_[-1, rows, ny + 2]  # outside the grid: NaN
        cols = np.r_[0, cols, 3]
        expected = np.r_[np.nan, expected, np.nan]
    index = layer.cell_index(rows, cols)
    assert len(index.bands) > 3 and (index.inside is None) != off_grid
    got = layer.read_indexed(index)
    if split:
        assert started == ["NetCDF read"]  # the split did happen
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(got, layer.read_cells(rows, cols))
    given = np.full(index.n, -7.0)
    assert layer.read_indexed(index, out=given) is given
    np.testing.assert_array_equal(given, got)


def test_area_plan_base_and_counts_equal_the_coverage_plan(some_cities):
    """The area plan keeps only its weights: its coverage fractions (weights / row area) and
    its float32 cell counts equal the coverage-mode plan's fractions and pattern."""
    grid = Grid(west=97, north=35.5, dx=0.1, dy=0.1, nx=265, ny=145)
    area = coverage_plan(some_cities.geometry, grid, weights="area")
    cov = coverage_plan(some_cities.geometry, grid, weights="coverage")
    np.testing.assert_array_equal(area.cells, cov.cells)
    np.testing.assert_allclose(area.base.toarray(), cov.weights.toarray(), rtol=1e-13, atol=0)
    counts = area.binary @ np.ones(area.cells.size, dtype=np.float32)
    np.testing.assert_array_equal(counts, np.diff(cov.weights.indptr))


@pytest.mark.parametrize("nan_inside", [False, True])
def test_polygon_partly_off_the_grid_equals_the_closed_form(tmp_path, nan_inside):
    """Cells off the grid are missing: the once-per-layout mask sums (only off-grid cells
    missing) and the per-year mask mat-vecs (a NaN inside too) both equal the closed form."""
    lat = np.array([29.5, 28.5])
    lon = np.array([100.5, 101.5])
    v = np.array([[10.0, 20.0], [30.0, 40.0]])
    if nan_inside:
        v[0, 0] = np.nan
    path = write_nc(tmp_path / "pm.2020.nc", v, lat, lon, fill=-999.0)
    # 2 x 2 degrees, the eastern half off the grid (longitudes 102-103 have no cells)
    with pytest.warns(AggloDataWarning, match="covers only part"):
        out = zonal_pm25(path, polys(shapely.box(101, 28, 103, 30)), weights="coverage")
    assert one(out) == pytest.approx((20 + 40) / 2, rel=1e-12)  # column 101.5 only
    assert one(out, "n_cells") == 2
    assert one(out, "valid_fraction") == pytest.approx(0.5, rel=1e-12)
    v[0, 1] = np.nan if nan_inside else v[0, 1]  # a NaN in the polygon's own column
    path2 = write_nc(tmp_path / "pm2.2020.nc", v, lat, lon, fill=-999.0)
    with pytest.warns(AggloDataWarning, match="covers only part"):
        out2 = zonal_pm25(path2, polys(shapely.box(101, 28, 103, 30)), weights="coverage")
    assert one(out2) == pytest.approx(40.0 if nan_inside else 30.0, rel=1e-12)
    assert one(out2, "n_cells") == (1 if nan_inside else 2)
    assert one(out2, "valid_fraction") == pytest.approx(0.25 if nan_inside else 0.5, rel=1e-12)


@pytest.mark.parametrize("runs", [3, 5000])
def test_inside_values_placed_by_runs_or_mask_equal_a_boolean_assignment(runs):
    """_place (slice copies over the runs of cells inside the grid, or a mask when there are
    many runs) == numpy's boolean-mask assignment, NaN outside."""
    from agglo.io import rasters
    from agglo.io.rasters import CellIndex

    rng = np.random.default_rng(5)
    n = 20_000
    inside = np.ones(n, bool)
    cuts = np.sort(rng.choice(n, 2 * runs, replace=False))
    for a, b in cuts.reshape(-1, 2)[::2]:
        inside[a:b] = False
    index = CellIndex(n, inside, (), ("test",))
    assert (index.inside_runs is None) == (runs > 64)
    vals = rng.uniform(0, 100, int(inside.sum())).astype(np.float32)
    out = np.full(n, -1.0)
    rasters._place(out, vals, index)
    want = np.full(n, np.nan)
    want[inside] = vals
    np.testing.assert_array_equal(out, want)


def test_years_in_turn_read_whole_one_year_may_split(monkeypatch):
    """zonal_pm25(scheduler='synchronous') over several years reads each whole (a fork per
    year's read does not pay); the read split is still offered to one year's read."""
    import agglo.measures.pm25 as pm25
    from agglo.io import rasters

    monkeypatch.setattr(rasters, "_SPLIT_READ_CELLS", 0)
    monkeypatch.setattr(rasters, "_free_to_fork", lambda: True)
    flat = np.arange(16)
    bands = (
        rasters._Band(rows=slice(0, 4), cols=slice(0, 4), start=0, stop=16, flat=flat),
        rasters._Band(rows=slice(4, 8), cols=slice(0, 4), start=16, stop=32, flat=flat),
    )
    assert rasters._read_split(bands) == 1
    with rasters.whole_reads():
        assert rasters._read_split(bands) is None
        with rasters.whole_reads():
            assert rasters._read_split(bands) is None
        assert rasters._read_split(bands) is None
    assert rasters._read_split(bands) == 1
    seen = []
    monkeypatch.setattr(
        pm25, "_reduce_years", lambda c, *a: seen.append(rasters._WHOLE_READS[0]) or []
    )
    pm25._run([None, None], None, {}, "synchronous", 1)
    pm25._run([None], None, {}, "synchronous", 1)
    assert seen == [1, 1, 0]
