"""A catalogue of bad inputs through the CLI: each must exit 2 with one line, no traceback.

Every case names the command line (built on small files made here), and a pattern the
one-line reason must match: the problem and, where there is one, the fix. The cases are
grouped by kind (``KINDS``); the issue asks for at least 60.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from pathlib import Path

import geopandas as gpd
import netCDF4
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from agglo.cli import main

# -- the files the cases use ---------------------------------------------------------------------


def _nc(path: Path, values, *, units: str | None = None, fill=None, lon0: float = 100.5) -> Path:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lat", 2)
        ds.createDimension("lon", 2)
        ds.createVariable("lat", "f8", ("lat",))[:] = [30.5, 29.5]
        ds.createVariable("lon", "f8", ("lon",))[:] = [lon0, lon0 + 1]
        v = ds.createVariable("PM25", "f4", ("lat", "lon"), fill_value=fill)
        if units:
            v.units = units
        v[:] = np.asarray(values, dtype=np.float32)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    f: dict[str, Path] = {"dir": d}
    squares = gpd.GeoDataFrame(
        {"adcode": ["A", "B"]},
        geometry=[shapely.box(100, 29, 101, 31), shapely.box(101, 29, 102, 31)],
        crs=4326,
    )
    f["polys"] = d / "polys.gpkg"
    squares.to_file(f["polys"])
    f["polys_utm"] = d / "polys_utm.gpkg"
    squares.set_crs(32649, allow_override=True).to_file(f["polys_utm"])
    f["polys_null"] = d / "polys_null.gpkg"
    squares.assign(geometry=[squares.geometry.iloc[0], None]).to_file(f["polys_null"])
    f["polys_empty"] = d / "polys_empty.gpkg"
    squares.iloc[:0].to_file(f["polys_empty"])
    f["pm25"] = _nc(d / "ok.2020.nc", [[10, 20], [30, 40]])
    f["pm25_far"] = _nc(d / "far.2020.nc", [[10, 20], [30, 40]], lon0=120.5)
    f["pm25_negative"] = _nc(d / "neg.2020.nc", [[10, -5], [30, 40]])
    f["pm25_fill"] = _nc(d / "fill.2020.nc", [[-999, -999], [-999, -999]])
    f["pm25_ppm"] = _nc(d / "ppm.2020.nc", [[10, 20], [30, 40]], units="ppm")
    f["pm25_huge"] = _nc(d / "huge.2020.nc", [[10, 20], [30, 65000]])
    f["pm25_corrupt"] = d / "corrupt.2020.nc"
    whole = f["pm25"].read_bytes()
    f["pm25_corrupt"].write_bytes(whole[: len(whole) // 2])  # a download cut in half
    f["tif_3857"] = d / "lonlat_3857_2020.tif"
    with rasterio.open(
        f["tif_3857"], "w", driver="GTiff", width=2, height=2, count=1, dtype="float32",
        crs="EPSG:3857", transform=from_origin(100, 31, 1, 1),
    ) as ds:  # fmt: skip
        ds.write(np.full((1, 2, 2), 30, dtype=np.float32))
    f["empty_dir"] = d / "empty"
    f["empty_dir"].mkdir()
    lines = [shapely.LineString([(100.2, 29.5), (100.8, 30.5)])]
    f["roads"] = d / "roads.gpkg"
    gpd.GeoDataFrame({"highway": ["primary"]}, geometry=lines, crs=4326).to_file(f["roads"])
    f["roads_utm"] = d / "roads_utm.gpkg"
    gpd.GeoDataFrame({"highway": ["primary"]}, geometry=lines, crs=32649).to_file(f["roads_utm"])
    f["roads_noclass"] = d / "gs.gpkg"
    gpd.GeoDataFrame({"SHAPE_Length": [1.0]}, geometry=lines, crs=4326).to_file(f["roads_noclass"])
    f["file"] = d / "a_file.txt"
    f["file"].write_text("x")
    f["csv_exists"] = d / "exists.csv"
    f["csv_exists"].write_text("x")
    f["foreign"] = d / "foreign"
    f["foreign"].mkdir()
    (f["foreign"] / "thesis.docx").write_text("mine")
    f["nonempty"] = d / "nonempty"
    f["nonempty"].mkdir()
    (f["nonempty"] / "agglo.gpkg").write_text("")
    f["bad_json"] = d / "bad.json"
    f["bad_json"].write_text("{not json")
    f["scores_junk"] = d / "scores_junk.csv"
    f["scores_junk"].write_text("adcode,year,lag_score\n510100,2020,high\n510600,2020,0.1\n")
    f["scores_noid"] = d / "scores_noid.csv"
    f["scores_noid"].write_text("city,year,lag_score\n成都,2020,0.1\n")
    f["scores_unknown"] = d / "scores_unknown.csv"
    f["scores_unknown"].write_text("adcode,year,lag_score\n999901,2020,0.1\n999902,2020,0.2\n")
    f["scores_col"] = d / "scores_col.csv"
    f["scores_col"].write_text("adcode,year,score\n510100,2020,0.1\n")
    return f


def toml(files: dict[str, Path], name: str, text: str, encoding: str = "utf-8") -> str:
    path = files["dir"] / f"{name}.toml"
    path.write_bytes(text.encode(encoding))
    return str(path)


# -- the catalogue: (kind, id, argv(files), pattern) -------------------------------------------------
def run_cfg(name: str, text: str, encoding: str = "utf-8"):
    return lambda f: [
        "run",
        "--config",
        toml(f, name, text, encoding),
        "--out",
        str(f["dir"] / "o"),
    ]


def pm25(*extra: str, rasters: str = "pm25", polygons: str = "polys"):
    return lambda f: [
        "pm25", "--rasters", str(f.get(rasters, rasters)), "--polygons",
        str(f.get(polygons, polygons)), "--out", str(f["dir"] / f"pm25_{uuid.uuid4().hex}.csv"),
        *extra,
    ]  # fmt: skip


def roads(*extra: str, layer: str = "roads", polygons: str = "polys"):
    return lambda f: [
        "roads", "--roads", str(f.get(layer, layer)), "--polygons", str(f[polygons]),
        "--out", str(f["dir"] / f"roads_{uuid.uuid4().hex}.csv"), *extra,
    ]  # fmt: skip


def metro(*extra: str):
    return lambda f: ["metro", "--out", str(f["dir"] / "metro_out"), *extra]


def autocorr(*extra: str):
    return lambda f: [
        "autocorr", "--out", str(f["dir"] / "ac_out"),
        *(str(f.get(e, e)) for e in extra),
    ]  # fmt: skip


CASES = [
    # config files
    ("config", "missing-file", lambda f: ["run", "--config", str(f["dir"] / "nope.toml")],
     r"config file .*nope.toml does not exist"),
    ("config", "toml-syntax", run_cfg("syntax", "[index\nddof = 0"), r"not valid TOML"),
    ("config", "toml-gbk", run_cfg("gbk", '[inputs]\npanel = "年鉴.xlsx"', "gbk"),
     r"not UTF-8 text \(GBK/GB18030\?\); save it as UTF-8"),
    ("config", "toml-bom-still-checked", run_cfg("bom", "\ufeff[indx]\n"),
     r"section \[indx\] is unknown \(did you mean 'index'\?\)"),
    ("config", "inputs-not-table", run_cfg("inputs5", "inputs = 5"), r"inputs must be a table"),
    ("config", "section-not-table", run_cfg("index3", "index = 3"),
     r"\[index\] must be a table of options"),
    ("config", "panel-number", run_cfg("panel5", "[inputs]\npanel = 5"),
     r"inputs.panel must be a path in quotes; got 5"),
    ("config", "years-string", run_cfg("years", '[inputs]\nyears = "2010"'),
     r"inputs.years must be a list of years"),
    ("config", "seed-string", run_cfg("seed", '[inputs]\nseed = "x"'),
     r"inputs.seed must be an integer"),
    ("config", "unknown-section", run_cfg("sect", "[indx]\nddof = 0"),
     r"section \[indx\] is unknown \(did you mean 'index'\?\)"),
    ("config", "unknown-input", run_cfg("panl", '[inputs]\npanl = "x.csv"'),
     r"inputs.panl is not an option \(did you mean 'panel'\?\)"),
    ("config", "panel-missing", run_cfg("pmiss", '[inputs]\npanel = "missing.xlsx"'),
     r"inputs.panel = .*missing.xlsx does not exist"),
    ("config", "rasters-missing", run_cfg("rmiss", '[inputs]\nrasters = "nope/"'),
     r"inputs.rasters = .*nope does not exist"),
    ("config", "roads-missing", run_cfg("romiss", '[inputs]\nroads = "nope.osm.pbf"'),
     r"inputs.roads = .*nope.osm.pbf does not exist"),
    ("config", "metro-minutes-text", run_cfg("sixty", '[metro]\nminutes = "sixty"'),
     r"metro.minutes must be a number; got 'sixty'"),
    ("config", "metro-bands-over", run_cfg("bands", "[metro]\nbands = [15, 90]"),
     r"metro.bands 90 exceed the commute limit minutes = 60"),
    ("config", "metro-negative", run_cfg("neg", "[metro]\nminutes = -5"),
     r"metro.minutes must be > 0; got -5"),
    ("config", "metro-method", run_cfg("walk", '[metro]\nmethod = "walk"'),
     r"metro.method must be one of network, friction; got 'walk'"),
    ("config", "autocorr-weights", run_cfg("hex", '[autocorr]\nweights = "hex"'),
     r"weights must be one of queen, rook.*got 'hex'"),
    ("config", "autocorr-k0", run_cfg("k0", "[autocorr]\nk = 0"), r"autocorr.k must be >= 1; got 0"),
    ("config", "autocorr-k-text", run_cfg("kt", '[autocorr]\nk = "six"'),
     r"autocorr.k must be an integer; got 'six'"),
    ("config", "autocorr-perms", run_cfg("perm", "[autocorr]\npermutations = -1"),
     r"autocorr.permutations must be >= 0; got -1"),
    ("config", "autocorr-alpha", run_cfg("alpha", "[autocorr]\nalpha = 2"),
     r"autocorr.alpha must be <= 1; got 2"),
    ("config", "autocorr-typo", run_cfg("weight", '[autocorr]\nweight = "queen"'),
     r"autocorr.weight is not an option \(did you mean 'weights'\?\)"),
    ("config", "pm25-weights", run_cfg("vol", '[pm25]\nweights = "volume"'),
     r"pm25.weights must be one of area, coverage, centroid"),
    ("config", "roads-classes", run_cfg("cls", '[roads]\nclasses = "motorways"'),
     r"classes must be one of \['all', 'default', 'major'\]"),
    ("config", "coreperiphery-beta", run_cfg("beta", '[coreperiphery]\nbeta = "two"'),
     r"coreperiphery.beta must be a number; got 'two'"),
    ("config", "several-problems", run_cfg("many", "[metro]\nminutes = -1\nmethod = 'x'"),
     r"metro.minutes must be > 0; got -1; and 1 more; --verbose lists them$"),
    # output paths
    ("output", "run-out-is-file", lambda f: ["run", "--out", str(f["file"])],
     r"--out .*a_file.txt is a file, not a folder"),
    ("output", "run-out-not-empty", lambda f: ["run", "--out", str(f["nonempty"])],
     r"output folder .*nonempty is not empty; pass --force"),
    ("output", "run-out-foreign-files", lambda f: ["run", "--out", str(f["foreign"]), "--force"],
     r"holds files agglo did not write \(thesis.docx\).*choose an empty or new --out"),
    ("output", "csv-exists", lambda f: [*pm25()(f)[:-2], "--out", str(f["csv_exists"])],
     r"exists.csv already exists; pass force=True \(CLI: --force\)"),
    ("output", "csv-is-folder", lambda f: [*pm25()(f)[:-2], "--out", str(f["empty_dir"])],
     r"is a folder; give a file name"),
    ("output", "csv-under-a-file", lambda f: [*roads()(f)[:-2], "--out", str(f["file"] / "x.csv")],
     r"a_file.txt is a file, not a folder"),
    ("output", "metro-out-is-file", lambda f: ["metro", "--out", str(f["file"])],
     r"a_file.txt.*(is a file|not a folder|Not a directory)"),
    # PM2.5 rasters and polygons
    ("pm25", "rasters-missing", pm25(rasters="nope.nc"), r"nope.nc does not exist"),
    ("pm25", "raster-crs-unknown", pm25("--raster-crs", "EPSG:99999"),
     r"'EPSG:99999' is not a CRS pyproj knows.*EPSG:4326"),
    ("pm25", "years-junk", pm25("--years", "20x0"), r"--years must be comma-separated years"),
    ("pm25", "year-absent", pm25("--years", "1999"), r"no data for year\(s\) \[1999\].*\[2020\]"),
    ("pm25", "weights-choice", pm25("--weights", "volume"),
     r"weights must be one of area, coverage, centroid"),
    ("pm25", "polygons-missing", pm25(polygons="nope.gpkg"),
     r"--polygons must be 'cities', 'counties' or an existing file"),
    ("pm25", "polygons-lonlat-as-utm", pm25(polygons="polys_utm"),
     r"look like longitude/latitude.*UTM zone 49N.*EPSG:4326"),
    ("pm25", "polygons-null-geometry", pm25(polygons="polys_null"),
     r"row 1 \(adcode B\): null geometry"),
    ("pm25", "polygons-empty-layer", pm25(polygons="polys_empty"), r"the layer is empty \(0 rows\)"),
    ("pm25", "geotiff-lonlat-tagged-3857", pm25(rasters="tif_3857"),
     r"look like longitude/latitude.*Pseudo-Mercator.*--raster-crs EPSG:4326"),
    ("pm25", "negative-values", pm25(rasters="pm25_negative"),
     r"negative PM2.5 \(down to -5 µg/m³\)"),
    ("pm25", "undeclared-fill-everywhere", pm25(rasters="pm25_fill"),
     r"no polygon has a valid PM2.5 cell"),
    ("pm25", "units-ppm", pm25(rasters="pm25_ppm"), r"units 'ppm' are not a mass concentration"),
    ("pm25", "impossible-values", pm25(rasters="pm25_huge"), r"above 1000 µg/m³ \(up to 65000\)"),
    ("pm25", "raster-misses-polygons", pm25(rasters="pm25_far"), r"does not overlap any of the 2"),
    ("pm25", "id-col-missing", pm25("--id-col", "code"), r"id column 'code' not in the polygons"),
    ("pm25", "corrupt-netcdf", pm25(rasters="pm25_corrupt"), r"truncated or corrupt"),
    ("pm25", "folder-without-rasters", pm25(rasters="empty_dir"),
     r"holds no NetCDF \(.nc\) or GeoTIFF \(.tif\) files"),
    ("pm25", "scheduler-junk", pm25("--scheduler", "fast"), r"scheduler must be 'threads'"),
    # road layers
    ("roads", "roads-missing", roads(layer="nope.gpkg"), r"road file nope.gpkg does not exist"),
    ("roads", "roads-lonlat-as-utm", roads(layer="roads_utm"),
     r"road layer roads_utm.gpkg: coordinates .* look like longitude/latitude.*EPSG:4326"),
    ("roads", "no-class-column", roads(layer="roads_noclass"),
     r"class column 'highway' not found.*FILE=primary.*classes='all'"),
    ("roads", "classes-choice", roads("--classes", "motorways"),
     r"classes must be one of \['all', 'default', 'major'\]"),
    ("roads", "speed-col-missing", roads("--speed-col", "SPEED"), r"speed column 'SPEED' not found"),
    ("roads", "bbox-junk", roads("--bbox", "1,2,3"), r"--bbox must be min_lon,min_lat,max_lon"),
    ("roads", "file-class-missing-file", roads(layer="nope.gdb=primary"),
     r"road file nope.gdb does not exist"),
    ("roads", "mapping-bad-json", lambda f: [*roads()(f), "--mapping", str(f["bad_json"])],
     r"--mapping .*bad.json: cannot read JSON"),
    ("roads", "polygons-lonlat-as-utm", roads(polygons="polys_utm"),
     r"polygons: coordinates .* look like longitude/latitude"),
    # metro options
    ("metro", "bands-over-minutes", metro("--bands", "15,90", "--minutes", "60"),
     r"metro.bands 90 exceed the commute limit minutes = 60"),
    ("metro", "minutes-zero", metro("--minutes", "0"), r"metro.minutes must be > 0"),
    ("metro", "method-choice", metro("--method", "walk"), r"metro.method must be one of network"),
    ("metro", "bands-junk", metro("--bands", "a,b"), r"--bands must be comma-separated float values"),
    ("metro", "speeds-junk", metro("--speeds", "fast"), r"--speeds must be class=km/h pairs"),
    ("metro", "speeds-range", metro("--speeds", "motorway=500"), r"km/h must be in \(0, 200\]"),
    ("metro", "roads-missing", metro("--roads", "nope.osm.pbf"),
     r"inputs.roads = nope.osm.pbf does not exist"),
    # autocorrelation options and scores
    ("autocorr", "k-zero", autocorr("--k", "0"), r"autocorr.k must be >= 1"),
    ("autocorr", "weights-choice", autocorr("--weights", "hex"), r"weights must be one of queen"),
    ("autocorr", "scores-missing", autocorr("--scores", "nope.csv"), r"--scores nope.csv does not exist"),
    ("autocorr", "scores-junk-values", autocorr("--scores", "scores_junk"),
     r"1 value\(s\) of 'lag_score' are not numbers \(lines \[2\]\)"),
    ("autocorr", "scores-no-adcode", autocorr("--scores", "scores_noid"),
     r"lacks columns \['adcode'\]"),
    ("autocorr", "scores-unknown-adcodes", autocorr("--scores", "scores_unknown"),
     r"no year has enough member cities with a score.*adcodes \(6 digits"),
    ("autocorr", "scores-no-column", autocorr("--scores", "scores_col"),
     r"has no column 'lag_score'.*--column"),
    # other commands
    ("other", "index-panel-missing", lambda f: ["index", "--panel", str(f["dir"] / "nope.xlsx"),
                                                "--out", str(f["dir"] / "idx")],
     r"nope.xlsx"),
    ("other", "usage-unknown-option", lambda f: ["pm25", "--no-such-option"], r"No such option"),
]  # fmt: skip

KINDS = sorted({c[0] for c in CASES})
IDS = [f"{c[0]}-{c[1]}" for c in CASES]


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 60
    assert len(set(IDS)) == len(CASES)  # unique ids


@pytest.mark.parametrize(("kind", "case", "argv", "pattern"), CASES, ids=IDS)
def test_bad_input_exits_2_with_one_line(files, capsys, kind, case, argv, pattern):
    args = argv(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CLI shows warnings; this test is about the error
        code = main(args)
    captured = capsys.readouterr()
    err = captured.err + captured.out
    assert "Traceback" not in err, err
    assert code == 2, err
    if kind == "other" and case.startswith("usage"):
        assert re.search(pattern, err), err
        return
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    assert re.search(pattern, errors[0]), errors[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_out_folder(files, capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["run", "--out", str(ro / "out")]) == 2
    finally:
        ro.chmod(0o755)
    assert "permission denied" in capsys.readouterr().err


def test_verbose_lists_every_problem(files, capsys):
    cfg = toml(files, "many_v", "[metro]\nminutes = -1\nmethod = 'x'")
    assert main(["--verbose", "run", "--config", cfg, "--out", str(files["dir"] / "o")]) == 2
    err = capsys.readouterr().err
    assert "metro.minutes must be > 0" in err and "metro.method must be" in err


def test_ctrl_c_exits_with_130_and_says_so(monkeypatch, tmp_path, capsys):
    import agglo.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(agglo.pipeline, "run", interrupted)
    assert main(["run", "--out", str(tmp_path / "o")]) == 130
    assert "interrupted" in capsys.readouterr().err
