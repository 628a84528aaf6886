"""The one CRS check, geometry hygiene, raster value checks and road layers as users have them."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import netCDF4
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from agglo._validate import check_crs, check_overlap, clean_geometries, guess_crs
from agglo.errors import AggloDataWarning, AggloInputError, CRSError, ValidationError
from agglo.measures.pm25 import zonal_pm25
from agglo.measures.roads import read_roads, road_density
from agglo.reference.provenance import is_synthetic_file

LON_LAT_LINES = [
    shapely.LineString([(104.0, 30.6), (104.1, 30.7)]),
    shapely.LineString([(104.1, 30.7), (104.2, 30.6)]),
]


def squares(crs: int | str = 4326) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"adcode": ["A", "B"]},
        geometry=[shapely.box(100, 29, 101, 31), shapely.box(101, 29, 102, 31)],  # a column each
        crs=crs,
    )


def write_nc(path: Path, values: np.ndarray, *, units: str | None = None, fill=None) -> Path:
    """A 2x2 ACAG-like grid over 100-102°E, 29-31°N (rows north to south)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lat", 2)
        ds.createDimension("lon", 2)
        ds.createVariable("lat", "f8", ("lat",))[:] = [30.5, 29.5]
        ds.createVariable("lon", "f8", ("lon",))[:] = [100.5, 101.5]
        v = ds.createVariable("PM25", "f4", ("lat", "lon"), fill_value=fill)
        if units is not None:
            v.units = units
        v[:] = np.asarray(values, dtype=np.float32)
    return path


# -- check_crs ----------------------------------------------------------------------------------
def test_lon_lat_values_under_a_projected_crs_are_refused_naming_epsg_4326():
    roads = gpd.GeoDataFrame(geometry=LON_LAT_LINES, crs=32649)
    with pytest.raises(CRSError, match=r"look like longitude/latitude.*UTM zone 49N.*EPSG:4326"):
        check_crs(roads, what="roads")


def test_metres_under_a_geographic_crs_are_refused_naming_the_zone():
    # Chengdu in CGCS2000 3-degree Gauss-Kruger zone 35 (false easting 35,500,000 m)
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(35_404_000, 3_390_000)], crs=4326)
    with pytest.raises(CRSError, match=r"cannot be longitude/latitude.*EPSG:4523"):
        check_crs(pts, what="seats")


def test_coordinates_outside_the_area_of_use_are_refused():
    # Chengdu in UTM 48N metres, labelled British National Grid
    utm = gpd.GeoDataFrame(geometry=[shapely.Point(404_000, 3_390_000)], crs=32648)
    check_crs(utm)  # the right label passes
    wrong = utm.set_crs(27700, allow_override=True)
    with pytest.raises(CRSError, match=r"outside the area of use of OSGB36 / British"):
        check_crs(wrong, what="stations")


def test_a_neighbouring_utm_zone_is_accepted():
    # Kunming (102.7°E) in UTM 47N (96-102°E): one zone off, still a usual choice
    g = gpd.GeoDataFrame(geometry=[shapely.Point(102.7, 25.0)], crs=4326).to_crs(32647)
    check_crs(g)


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ((73.5, 18.0, 135.0, 53.5), "EPSG:4326"),
        ((18_400_000, 2_000_000, 18_700_000, 3_000_000), "EPSG:4496"),  # 6° GK zone 18
        ((300_000, 3_000_000, 700_000, 3_500_000), "UTM"),
        ((11_500_000, 3_300_000, 11_700_000, 3_600_000), "EPSG:3857"),
    ],
)
def test_guess_crs(bounds, expected):
    assert expected in guess_crs(bounds)


def test_read_roads_and_road_density_refuse_lon_lat_labelled_utm(tmp_path):
    p = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame({"highway": ["primary"] * 2}, geometry=LON_LAT_LINES, crs=32649).to_file(p)
    with pytest.raises(CRSError, match=r"road layer roads.gpkg: coordinates .* EPSG:4326"):
        read_roads(p)
    lines = gpd.GeoDataFrame({"highway": ["primary"] * 2}, geometry=LON_LAT_LINES, crs=32649)
    with pytest.raises(CRSError, match="look like longitude/latitude"):
        road_density(lines, squares())


# -- geometry hygiene ---------------------------------------------------------------------------
def test_invalid_polygon_is_repaired_with_a_warning_naming_it():
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])  # two triangles of area 1
    g = gpd.GeoDataFrame({"adcode": ["A", "B"]}, geometry=[bowtie, shapely.box(5, 5, 6, 6)])
    with pytest.warns(AggloDataWarning, match=r"1 invalid polygon\(s\) repaired.*adcode A"):
        out = clean_geometries(g, id_col="adcode")
    assert shapely.is_valid(out.geometry).all()
    assert shapely.area(out.geometry.iloc[0]) == pytest.approx(2.0)
    assert not shapely.is_valid(g.geometry.iloc[0])  # the input is not modified
    assert out.attrs["repaired_geometries"] == ["adcode A"]


def test_null_and_empty_geometries_are_reported_by_row():
    g = gpd.GeoDataFrame(
        {"adcode": ["A", "B", "C"]},
        geometry=[shapely.box(0, 0, 1, 1), None, shapely.Polygon()],
        crs=4326,
    )
    with pytest.raises(ValidationError, match=r"row 1 \(adcode B\): null") as err:
        clean_geometries(g, id_col="adcode")
    assert "row 2 (adcode C): empty geometry" in str(err.value)


def test_an_empty_layer_is_an_error():
    with pytest.raises(AggloInputError, match=r"cities: the layer is empty \(0 rows\)"):
        clean_geometries(squares().iloc[:0], what="cities")


def test_pm25_repairs_a_self_intersecting_boundary_once(tmp_path):
    p = write_nc(tmp_path / "a.2020.nc", [[10, 20], [30, 40]])
    bowtie = shapely.Polygon([(100, 29), (102, 31), (102, 29), (100, 31)])
    g = gpd.GeoDataFrame({"adcode": ["A"]}, geometry=[bowtie], crs=4326)
    with pytest.warns(AggloDataWarning, match="repaired.*adcode A"):
        out = zonal_pm25(p, g, weights="coverage", scheduler="synchronous")
    # the bowtie covers half of each cell: the mean is the plain mean of the four cells
    assert float(out["pm25_mean"].iloc[0]) == pytest.approx(25.0)


# -- rasters ------------------------------------------------------------------------------------
def test_lon_lat_geotiff_tagged_web_mercator_is_refused_before_coverage(tmp_path):
    p = tmp_path / "pm25_2020.tif"
    with rasterio.open(
        p, "w", driver="GTiff", width=2, height=2, count=1, dtype="float32", crs="EPSG:3857",
        transform=from_origin(100, 31, 1, 1),
    ) as ds:  # fmt: skip
        ds.write(np.full((1, 2, 2), 30, dtype=np.float32))
    with pytest.raises(CRSError, match=r"raster pm25_2020.tif.*EPSG:4326.*--raster-crs EPSG:4326"):
        zonal_pm25(p, squares(), scheduler="synchronous")
    # the fix the message names works
    out = zonal_pm25(p, squares(), raster_crs="EPSG:4326", scheduler="synchronous")
    assert out["pm25_mean"].tolist() == pytest.approx([30.0, 30.0])


def test_negative_pm25_is_an_error(tmp_path):
    p = write_nc(tmp_path / "n.2020.nc", [[10, -3.5], [20, 30]])
    with pytest.raises(AggloInputError, match=r"1 cell\(s\) have negative PM2.5 \(down to -3.5"):
        zonal_pm25(p, squares(), scheduler="synchronous")


def test_undeclared_fill_block_is_masked_with_a_warning(tmp_path):
    p = write_nc(tmp_path / "f.2020.nc", [[10, -999], [20, -999]])  # no _FillValue
    with (
        pytest.warns(AggloDataWarning, match=r"2 cell\(s\) hold -999, a fill value"),
        pytest.warns(UserWarning, match=r"1 polygon\(s\) have no valid PM2.5 cells.*B"),
    ):
        out = zonal_pm25(p, squares(), weights="coverage", scheduler="synchronous")
    assert float(out["pm25_mean"].iloc[0]) == pytest.approx(15.0)
    assert np.isnan(out["pm25_mean"].iloc[1])


def test_mg_per_m3_is_converted_with_a_warning(tmp_path):
    p = write_nc(tmp_path / "u.2020.nc", [[0.010, 0.020], [0.030, 0.040]], units="mg/m3")
    with pytest.warns(AggloDataWarning, match=r"mg/m3 converted to µg/m³ \(x 1000\)"):
        out = zonal_pm25(p, squares(), weights="coverage", scheduler="synchronous")
    assert out["pm25_mean"].tolist() == pytest.approx([20.0, 30.0], rel=1e-6)


@pytest.mark.parametrize("units", ["ppm", "K"])
def test_unknown_units_are_refused(tmp_path, units):
    p = write_nc(tmp_path / "k.2020.nc", [[10, 20], [30, 40]], units=units)
    with pytest.raises(AggloInputError, match=f"units '{units}' are not a mass concentration"):
        zonal_pm25(p, squares(), scheduler="synchronous")


def test_impossible_values_are_refused(tmp_path):
    p = write_nc(tmp_path / "i.2020.nc", [[10, 20], [30, 40_000]])
    with pytest.raises(AggloInputError, match=r"above 1000 µg/m³ \(up to 40000\)"):
        zonal_pm25(p, squares(), scheduler="synchronous")


def test_raster_missing_the_polygons_is_an_error(tmp_path):
    p = write_nc(tmp_path / "m.2020.nc", [[10, 20], [30, 40]])
    far = squares().set_geometry([shapely.box(120, 40, 121, 41), shapely.box(121, 40, 122, 41)])
    with pytest.raises(AggloInputError, match=r"does not overlap any of the 2 polygon\(s\)"):
        zonal_pm25(p, far, scheduler="synchronous")


def test_all_fill_raster_is_an_error(tmp_path):
    p = write_nc(tmp_path / "e.2020.nc", [[-1, -1], [-1, -1]], fill=-1.0)
    with pytest.raises(AggloInputError, match=r"no polygon has a valid PM2\.5 cell"):
        zonal_pm25(p, squares(), scheduler="synchronous")


def test_check_overlap_names_partly_covered_polygons():
    g = squares().geometry
    with pytest.warns(AggloDataWarning, match=r"covers only part of 1 polygon\(s\).*: B"):
        check_overlap(g, (100, 29, 101.5, 31), ["A", "B"], what="r.nc")


# -- road layers as users have them -------------------------------------------------------------
@pytest.fixture
def class_files(tmp_path):
    """Two FileGDB-like layers with only SHAPE_Length, one per road class."""
    out = []
    for name, x in (("gs", 100.2), ("xd", 100.6)):
        g = gpd.GeoDataFrame(
            {"SHAPE_Length": [1.0]},
            geometry=[shapely.LineString([(x, 29.5), (x + 0.2, 29.5)])],
            crs=4326,
        )
        g.to_file(tmp_path / f"{name}.gpkg")
        out.append(tmp_path / f"{name}.gpkg")
    return out


def test_a_class_per_whole_file(class_files):
    gs, xd = class_files
    roads = read_roads([f"{gs}=高速公路", f"{xd}=residential"], classes="all")
    assert roads["highway"].tolist() == ["motorway", "residential"]
    with pytest.warns(AggloDataWarning, match="xd.gpkg: every line is class 'residential'"):
        kept = read_roads([f"{gs}=高速公路", f"{xd}=residential"])
    assert kept["highway"].tolist() == ["motorway"]


def test_a_layer_without_class_column_needs_a_choice(class_files):
    with pytest.raises(AggloInputError, match=r"class column 'highway' not found.*FILE=primary"):
        read_roads(class_files[0])
    assert len(read_roads(class_files[0], classes="all")) == 1


def test_chinese_class_names_and_speed_column(tmp_path):
    p = tmp_path / "cn.gpkg"
    names = ["高速公路", "国道", "省道", "县道", "乡道", "村道", "步行街"]
    gpd.GeoDataFrame(
        {"等级": names, "SPEED": [100, 80, 60, 40, 30, 20, 5]},
        geometry=[shapely.LineString([(100 + i / 10, 29.5), (100.05 + i / 10, 29.5)]) for i in range(7)],
        crs=4326,
    ).to_file(p)  # fmt: skip
    r = read_roads(p, class_col="等级", speed_col="SPEED")
    assert r["highway"].tolist() == [
        "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified"
    ]  # fmt: skip
    assert r["maxspeed"].tolist() == ["100", "80", "60", "40", "30", "20"]
    every = read_roads(p, class_col="等级", classes="all", speeds={"步行街": 5.0})
    assert every["highway"].iloc[-1] == "步行街"  # not a known class: kept as given
    with pytest.raises(AggloInputError, match="speed column 'kmh' not found"):
        read_roads(p, class_col="等级", speed_col="kmh")


def test_speed_table_fills_missing_maxspeed(class_files):
    r = read_roads(f"{class_files[0]}=国道", speeds={"trunk": 70})
    assert r["maxspeed"].tolist() == ["70"]


# -- provenance ---------------------------------------------------------------------------------
def test_one_rule_decides_what_is_synthetic(tmp_path):
    g = gpd.GeoDataFrame(geometry=LON_LAT_LINES, crs=4326)
    real, tagged = tmp_path / "real.gpkg", tmp_path / "tagged.gpkg"
    g.to_file(real)
    import pyogrio

    pyogrio.write_dataframe(g, tagged, layer_metadata={"data_status": "synthetic"})
    nc = write_nc(tmp_path / "p.2020.nc", [[1, 2], [3, 4]])
    with netCDF4.Dataset(nc, "a") as ds:
        ds.title = "SYNTHETIC demo PM2.5"
    assert [is_synthetic_file(p) for p in (real, tagged, nc)] == [False, True, True]
    assert is_synthetic_file(tmp_path / "x_synthetic.csv")


# -- weights given by the user (issue item 9) -------------------------------------------------------
def test_a_user_binary_w_gives_the_same_moran_as_esda():
    import esda
    import libpysal

    from agglo.analysis.autocorr import global_autocorrelation, local_autocorrelation

    cells = [shapely.box(i, j, i + 1, j + 1) for j in range(5) for i in range(6)]
    y = np.random.default_rng(3).normal(size=30)
    g = gpd.GeoDataFrame({"adcode": [f"{i:02d}" for i in range(30)], "y": y}, geometry=cells)

    def binary_w():
        w = libpysal.weights.Queen.from_dataframe(g, ids=g["adcode"].tolist(), use_index=False)
        w.transform = "b"
        return w

    ours = global_autocorrelation(g, "y", binary_w(), permutations=0)
    ref = esda.Moran(y, binary_w(), permutations=0)  # esda row-standardises by default
    assert ours["moran_i"] == pytest.approx(ref.I, abs=1e-12)
    assert ours["geary_c"] == pytest.approx(esda.Geary(y, binary_w(), permutations=0).C)
    binary = global_autocorrelation(g, "y", binary_w(), permutations=0, transformation="b")
    ref_b = esda.Moran(y, binary_w(), transformation="b", permutations=0)
    assert binary["moran_i"] == pytest.approx(ref_b.I, abs=1e-12)
    assert binary["moran_i"] != pytest.approx(ours["moran_i"])  # the convention matters
    lisa = local_autocorrelation(g, "y", binary_w(), permutations=9, seed=1)
    ref_l = esda.Moran_Local(y, binary_w(), permutations=9, seed=1)
    np.testing.assert_allclose(lisa["lisa_i"], ref_l.Is, atol=1e-12)
