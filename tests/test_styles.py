"""QGIS styles: QML parsed back, layer_styles table in the GeoPackage, .qml beside shapefiles."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import geopandas as gpd
import mapclassify
import numpy as np
import pyogrio
import pytest
import shapely
from matplotlib.colors import to_rgba

from agglo.errors import AggloInputError, ValidationError
from agglo.outputs import styles
from agglo.outputs.writers import export, export_layers

QGIS_LAYER_STYLES_COLUMNS = [
    "id",
    "f_table_catalog",
    "f_table_schema",
    "f_table_name",
    "f_geometry_column",
    "styleName",
    "styleQML",
    "styleSLD",
    "useAsDefault",
    "description",
    "owner",
    "ui",
    "update_time",
]


def _layer(n: int = 6) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "adcode": [f"51{i:04d}" for i in range(n)],
            "name_zh": [f"城市{i}" for i in range(n)],
            "dispersion_gap_latest": np.linspace(0, 1, n),
            "lag_score": np.linspace(-0.5, 0.5, n),
        },
        geometry=[shapely.box(100 + i, 30, 101 + i, 31) for i in range(n)],
        crs=4326,
    )


def _parse(qml: str) -> ET.Element:
    assert qml.startswith("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>")
    return ET.fromstring(qml.split("\n", 1)[1])


def _rgba255(colour, alpha: float = 1.0) -> str:
    r, g, b, a = to_rgba(colour)
    return f"{round(r * 255)},{round(g * 255)},{round(b * 255)},{round(a * alpha * 255)}"


# --------------------------------------------------------------------------- classification
def test_classify_matches_mapclassify_fisher_jenks():
    y = np.array([1.0, 1.5, 2.0, 8.0, 9.0, 9.5, 20.0, 21.0, 22.0, 40.0])
    lower, upper = styles.classify(y, scheme="fisher_jenks", k=4)
    ref = mapclassify.FisherJenks(y, k=4)
    np.testing.assert_allclose(upper, ref.bins)
    assert lower[0] == 1.0 and list(lower[1:]) == list(upper[:-1])


def test_classify_equal_interval_by_hand():
    # range 0..10, k=4 -> width 2.5: uppers 2.5, 5, 7.5, 10
    lower, upper = styles.classify([0, 10, 3, 4, 6, np.nan], scheme="equal_interval", k=4)
    np.testing.assert_allclose(upper, [2.5, 5.0, 7.5, 10.0])
    np.testing.assert_allclose(lower, [0.0, 2.5, 5.0, 7.5])


def test_classify_reduces_k_to_distinct_values_and_handles_one_value():
    assert len(styles.classify([1, 1, 2, 2], k=5)[1]) == 2
    lower, upper = styles.classify([3.0, 3.0], k=5)
    assert lower.tolist() == [3.0] and upper.tolist() == [3.0]


def test_classify_errors():
    with pytest.raises(AggloInputError, match="scheme must be one of fisher_jenks"):
        styles.classify([1, 2], scheme="natural")
    with pytest.raises(AggloInputError, match="no finite values"):
        styles.classify([np.nan])
    with pytest.raises(AggloInputError, match="needs bins"):
        styles.classify([1, 2], scheme="user_defined")


# --------------------------------------------------------------------------- QML
def test_graduated_qml_parses_back_with_ranges_and_colours():
    lower, upper = [-0.5, -0.1, 0.2], [-0.1, 0.2, 0.5]
    qml = styles.graduated_qml(
        "lag_score",
        lower,
        upper,
        cmap="RdYlBu",
        labels="name_zh",
        unit="",
        aliases={"lag_score": "lag score (unitless)"},
    )
    root = _parse(qml)
    assert root.tag == "qgis" and root.get("version").startswith("3.34")
    rend = root.find("renderer-v2")
    assert rend.get("type") == "graduatedSymbol" and rend.get("attr") == "lag_score"
    ranges = rend.findall("ranges/range")
    assert [(float(r.get("lower")), float(r.get("upper"))) for r in ranges] == list(
        zip(lower, upper, strict=True)
    )
    assert [r.get("label") for r in ranges] == ["-0.50 – -0.10", "-0.10 – 0.20", "0.20 – 0.50"]
    fills = [
        s.find("layer/Option/Option[@name='color']").get("value")
        for s in rend.findall("symbols/symbol")
    ]
    from agglo.outputs.styles import _ramp  # same ramp as the PNG maps

    assert fills == [_rgba255(c) for c in _ramp("RdYlBu", 3)]
    assert root.find("labeling/settings/text-style").get("fieldName") == "name_zh"
    assert root.find("aliases/alias").get("name") == "lag score (unitless)"
    info = styles.validate_qml(qml, fields=["lag_score", "name_zh"])
    assert (info.renderer, info.n_classes, info.fields_used) == (
        "graduatedSymbol",
        3,
        ("lag_score", "name_zh"),
    )


def test_lisa_qml_uses_conventional_colours():
    root = _parse(styles.lisa_qml("cluster"))
    cats = root.findall("renderer-v2/categories/category")
    assert [c.get("value") for c in cats] == ["HH", "LL", "LH", "HL", "ns"]
    fills = [
        s.find("layer/Option/Option[@name='color']").get("value")
        for s in root.findall("renderer-v2/symbols/symbol")
    ]
    hh, ll, lh, hl, ns = ([int(v) for v in f.split(",")] for f in fills)
    assert hh[0] > 200 and hh[1] < 60  # red
    assert ll[2] > 150 and ll[0] < 80  # blue
    assert lh[2] > 200 and lh[0] > ll[0]  # light blue
    assert hl[0] > 230 and hl[1] > hh[1]  # pink
    assert ns[0] == ns[1] == ns[2]  # grey


def test_single_symbol_is_semi_transparent():
    qml = styles.single_symbol_qml("#fdae61", opacity=0.4)
    fill = _parse(qml).find("renderer-v2/symbols/symbol/layer/Option/Option[@name='color']")
    assert fill.get("value") == "253,174,97,102"  # 0.4 * 255 = 102
    assert styles.validate_qml(qml).fill_alpha == pytest.approx(0.4, abs=0.002)


def test_validate_qml_catches_problems():
    with pytest.raises(ValidationError, match="not well-formed XML"):
        styles.validate_qml("<qgis><renderer-v2></qgis>")
    qml = styles.graduated_qml("lag_score", [0], [1], labels="name_zh")
    with pytest.raises(ValidationError, match=r"field\(s\) \['name_zh'\] used by the style"):
        styles.validate_qml(qml, fields=["lag_score"])
    broken = qml.replace('<range lower="0.0"', '<range lower="0.0" x="1"/><range lower="0.5"', 1)
    with pytest.raises(ValidationError, match="2 classes but 1 symbols"):
        styles.validate_qml(broken)
    with pytest.raises(ValidationError, match="renderer type 'heatmapRenderer'"):
        styles.validate_qml(qml.replace("graduatedSymbol", "heatmapRenderer"))


# --------------------------------------------------------------------------- GeoPackage
def _styled_gpkg(tmp_path):
    gdf = _layer()
    lower, upper = styles.classify(gdf["lag_score"], k=3)
    qml = {
        "cities": styles.graduated_qml("lag_score", lower, upper, labels="name_zh"),
        "metro_areas": styles.single_symbol_qml(opacity=0.45),
    }
    path = export_layers(
        {"cities": gdf, "metro_areas": gdf.iloc[:2]}, tmp_path / "agglo.gpkg", styles=qml
    )
    return path, qml


def test_layer_styles_table_as_qgis_creates_it(tmp_path):
    path, qml = _styled_gpkg(tmp_path)
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute("PRAGMA table_info(layer_styles)")]
    contents = con.execute(
        "SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'"
    ).fetchall()
    con.close()
    assert cols == QGIS_LAYER_STYLES_COLUMNS
    assert contents == [("attributes",)]
    # GDAL sees it as an attribute table and reads it back
    table = pyogrio.read_dataframe(path, layer="layer_styles")
    assert sorted(table["f_table_name"]) == ["cities", "metro_areas"]
    assert set(table["f_geometry_column"]) == {"geom"}
    assert table["useAsDefault"].astype(int).tolist() == [1, 1]
    row = table.set_index("f_table_name").loc["cities"]
    assert row["styleQML"] == qml["cities"]
    fields = pyogrio.read_info(path, layer="cities")["fields"].tolist()
    info = styles.validate_qml(row["styleQML"], fields=fields)
    assert (info.renderer, info.attribute, info.n_classes) == ("graduatedSymbol", "lag_score", 3)
    # the layers themselves are intact
    assert len(gpd.read_file(path, layer="cities")) == 6


def test_rewriting_styles_keeps_one_default_per_layer(tmp_path):
    path, qml = _styled_gpkg(tmp_path)
    styles.write_layer_styles(path, {"cities": styles.lisa_qml("name_zh")})
    t = styles.read_layer_styles(path)
    cities = t[t["f_table_name"] == "cities"]
    assert len(cities) == 1 and "categorizedSymbol" in cities["styleQML"].iloc[0]
    styles.write_layer_styles(path, {"cities": qml["cities"]}, style_name="graduated")
    t = styles.read_layer_styles(path)
    cities = t[t["f_table_name"] == "cities"].set_index("styleName")
    assert cities["useAsDefault"].to_dict() == {"cities": 0, "graduated": 1}


def test_write_layer_styles_refuses_unknown_layer_and_missing_field(tmp_path):
    path, _ = _styled_gpkg(tmp_path)
    with pytest.raises(ValidationError, match=r"layer 'lisa' is not in agglo\.gpkg"):
        styles.write_layer_styles(path, {"lisa": styles.lisa_qml()})
    with pytest.raises(ValidationError, match=r"\['coreness_2020'\] used by the style"):
        styles.write_layer_styles(path, {"cities": styles.graduated_qml("coreness_2020", [0], [1])})


@pytest.mark.skipif(
    shutil.which("ogrinfo") is None, reason="ogrinfo (Debian gdal-bin) not installed"
)
def test_ogrinfo_opens_the_styled_geopackage(tmp_path):
    path, _ = _styled_gpkg(tmp_path)
    out = subprocess.run(
        ["ogrinfo", "-ro", "-q", str(path), "layer_styles"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "f_table_name (String) = cities" in out
    assert "styleQML (String) = <!DOCTYPE qgis" in out
    listing = subprocess.run(
        ["ogrinfo", "-ro", "-so", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "cities (Polygon)" in listing and "layer_styles (None)" in listing


# --------------------------------------------------------------------------- shapefile
def test_shapefile_qml_refers_to_the_shortened_fields(tmp_path):
    gdf = _layer()
    lower, upper = styles.classify(gdf["dispersion_gap_latest"], k=3)
    qml = styles.graduated_qml("dispersion_gap_latest", lower, upper, labels="name_zh")
    shp = export(gdf, tmp_path / "cities.shp", style_qml=qml)
    sidecar = shp.with_suffix(".qml").read_text(encoding="utf-8")
    dbf_fields = pyogrio.read_info(shp)["fields"].tolist()
    info = styles.validate_qml(sidecar, fields=dbf_fields)
    assert info.attribute == "dispersion" and info.attribute in dbf_fields
    assert shp.with_suffix(".cpg").read_text() == "UTF-8"


# --------------------------------------------------------------------------- pipeline
def test_styles_and_metadata_written_by_the_pipeline(tmp_path):
    """maps stage sets the styles, write stage stores them; everything parses back."""
    from test_plot import toy_context

    from agglo.outputs.maps import layer_styles
    from agglo.outputs.run import write_outputs

    ctx = toy_context(tmp_path)
    ctx.styles.update(
        layer_styles(ctx.layers, units={"cities": {"lag_score": "unitless, (x-μ)/μ"}})
    )
    write_outputs(ctx)
    gpkg = ctx.out_dir / "agglo.gpkg"
    table = styles.read_layer_styles(gpkg).set_index("f_table_name")
    expected = {
        "cities": ("graduatedSymbol", "lag_score"),
        "agglomerations": ("graduatedSymbol", "score_2020"),
        "core_periphery": ("graduatedSymbol", "coreness_2020"),
        "metro_areas": ("singleSymbol", None),
        "isochrones": ("singleSymbol", None),
    }
    for layer, (renderer, attr) in expected.items():
        fields = pyogrio.read_info(gpkg, layer=layer)["fields"].tolist()
        info = styles.validate_qml(table.loc[layer, "styleQML"], fields=fields)
        assert info.renderer == renderer
        if attr:
            assert info.fields_used[0] == attr
    # non-member cities (no lag score) get a neutral class instead of not being drawn
    cities_qml = table.loc["cities", "styleQML"]
    assert 'attr="coalesce(&quot;lag_score&quot;' in cities_qml
    assert 'label="not a member 非成员"' in cities_qml
    metro = styles.validate_qml(table.loc["metro_areas", "styleQML"])
    assert 0.3 < metro.fill_alpha < 0.6
    # field metadata (units as aliases) and layer metadata (status, version, config)
    assert 'name="lag_score (unitless, (x-μ)/μ)"' in table.loc["cities", "styleQML"]
    meta = pyogrio.read_info(gpkg, layer="cities")["layer_metadata"]
    assert meta["data_status"] == "synthetic" and meta["agglo_version"]
    assert '"seed"' in meta["config"]
    # shapefile copies carry the same style
    for layer in ("cities", "metro_areas"):
        qml = (ctx.out_dir / "shp" / f"{layer}.qml").read_text(encoding="utf-8")
        fields = pyogrio.read_info(ctx.out_dir / "shp" / f"{layer}.shp")["fields"].tolist()
        styles.validate_qml(qml, fields=fields)


def test_style_and_png_share_one_classification(tmp_path):
    """The coreness and lag-score styles hold exactly the classes of their PNG legends."""
    import re

    from test_plot import toy_context

    from agglo.outputs.maps import figure_specs, layer_styles

    ctx = toy_context(tmp_path)
    qml = layer_styles(ctx.layers)
    index = ctx.results["index"]
    figures = {f.stem: f.draw for f in figure_specs(ctx.layers, index=index)}
    for layer, stem in (("core_periphery", "coreness"), ("cities", "lag_score")):
        fig = figures[stem]()
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        drawn = [re.sub(r"\s+\(\d+\)$", "", t) for t in legend if re.search(r"\d", t)]
        ranges = re.findall(r'<range [^>]*label="([^"]*)"', qml[layer])
        ranges = [r for r in ranges if r != "not a member 非成员"]
        assert ranges == drawn[: len(ranges)] and len(ranges) >= 2, (layer, ranges, drawn)


def test_zero_inflated_and_tied_values_give_no_degenerate_class():
    # 17 zeros and 20 positive values (coreness-like): quantiles repeat the bound 0
    values = [0.0] * 17 + [i / 20 for i in range(1, 21)]
    lower, upper = styles.classify(values, scheme="quantiles", k=5)
    labels = styles.class_labels(lower, upper)
    assert labels[0] == "0.00" and len(set(labels)) == len(labels)
    # every class holds at least one value (value <= upper, above the previous upper)
    y = np.asarray(values)
    counts = [
        np.sum((y <= u) & ((y > lo) if i else (y >= lo)))
        for i, (lo, u) in enumerate(zip(lower, upper, strict=True))
    ]
    assert min(counts) >= 1 and sum(counts) == y.size
    # one low outlier does not get a class of its own ("1.4 – 1.4")
    lower, upper = styles.classify([1.4, *np.linspace(3, 9, 30)], scheme="fisher_jenks", k=5)
    assert lower[0] == 1.4 and upper[0] > 1.4


def test_diverging_classes_are_centred_on_zero():
    values = np.linspace(-0.3, 0.9, 25)
    lower, upper = styles.classify(values, scheme="equal_interval", k=4, centre=0.0)
    assert 0.0 in upper  # no class straddles 0
    colours = styles.class_colours(lower, upper, "RdBu", centre=0.0)
    import matplotlib

    below = [c for c, u in zip(colours, upper, strict=True) if u <= 0]
    above = [c for c, lo in zip(colours, lower, strict=True) if lo >= 0]
    assert below and above and len(below) + len(above) == len(colours)
    # RdBu: reds below the centre, blues above it, the strongest colour at the far end
    assert all(c[0] > c[2] for c in below) and all(c[2] > c[0] for c in above)
    # -0.3 is a third of the distance of +0.9 from 0: its class is lighter than the top one
    cm = matplotlib.colormaps["RdBu"]
    assert colours[0] == cm(0.5 - 0.5 * (0.15 / 0.9)) and colours[-1][2] > colours[0][0] - 0.5


def test_legend_numbers_follow_their_magnitude():
    assert styles.class_labels([20512.3], [141000.5], unit="yuan") == ["20,512 – 141,000 yuan"]
    assert "e+" not in "".join(styles.class_labels([3.294e4, 5e4], [5e4, 9e4]))


# --------------------------------------------------------------------------- QGIS itself
_QGIS_PROBE = r"""
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qgis.core import (QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings,
                       QgsVectorLayer)
from qgis.PyQt.QtCore import QSize
app = QgsApplication([], False)
app.initQgis()
path, png = sys.argv[1], sys.argv[2]
out = {}
for name in sys.argv[3:]:
    lyr = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    r = lyr.renderer()
    info = {"valid": lyr.isValid(), "type": r.type()}
    if r.type() == "graduatedSymbol":
        info.update(attr=r.classAttribute(), n=len(r.ranges()),
                    colours=[x.symbol().color().name() for x in r.ranges()])
    elif r.type() == "categorizedSymbol":
        info.update(attr=r.classAttribute(),
                    categories={str(c.value()): c.symbol().color().name() for c in r.categories()})
    else:
        info.update(alpha=r.symbol().color().alphaF() * r.symbol().opacity())
    out[name] = info
    if name == "cities":  # render the styled layer as QGIS would draw it
        settings = QgsMapSettings()
        settings.setLayers([lyr])
        settings.setExtent(lyr.extent())
        settings.setOutputSize(QSize(300, 300))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        job.renderedImage().save(png, "PNG")
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS 3.22 may crash while tearing down (exitQgis) after rendering
"""


def _system_qgis() -> str:
    exe = shutil.which("python3", path="/usr/bin:/bin")
    if exe is None:
        pytest.skip("no system python3 for QGIS")
    probe = subprocess.run([exe, "-c", "import qgis.core"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("QGIS Python bindings not installed (Debian python3-qgis; optional)")
    return exe


@pytest.mark.slow
def test_qgis_opens_the_geopackage_styled(tmp_path):
    """QGIS itself loads the default styles from layer_styles and draws the classes."""
    exe = _system_qgis()
    gdf = _layer()
    lower, upper = styles.classify(gdf["lag_score"], scheme="equal_interval", k=3)
    qml = {
        "cities": styles.graduated_qml("lag_score", lower, upper, cmap="RdYlBu", labels="name_zh"),
        "lisa": styles.lisa_qml("cluster"),
        "metro_areas": styles.single_symbol_qml(opacity=0.45),
    }
    lisa = gdf.assign(cluster=["HH", "LL", "LH", "HL", "ns", "ns"])
    path = export_layers(
        {"cities": gdf, "lisa": lisa, "metro_areas": gdf.iloc[:1]}, tmp_path / "q.gpkg", styles=qml
    )
    png = tmp_path / "qgis.png"
    res = subprocess.run(
        [exe, "-c", _QGIS_PROBE, str(path), str(png), "cities", "lisa", "metro_areas"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    from agglo.outputs.styles import _ramp

    expected = [
        "#{:02x}{:02x}{:02x}".format(*(round(v * 255) for v in c[:3])) for c in _ramp("RdYlBu", 3)
    ]
    assert got["cities"] == {
        "valid": True,
        "type": "graduatedSymbol",
        "attr": "lag_score",
        "n": 3,
        "colours": expected,
    }
    assert got["lisa"]["categories"] == styles.LISA_COLOURS
    assert got["metro_areas"]["type"] == "singleSymbol"
    assert got["metro_areas"]["alpha"] == pytest.approx(0.45, abs=0.01)
    # QGIS drew the classes: every class colour appears in its rendering
    from PIL import Image

    with Image.open(png) as im:
        pixels = {
            "#{:02x}{:02x}{:02x}".format(*p[:3]) for _, p in im.convert("RGB").getcolors(1 << 20)
        }
    assert set(expected) <= pixels


# every layer of a run's GeoPackage, as QGIS opens it: style applied, rendered, labels in CJK
_QGIS_RUN_PROBE = r"""
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qgis.core import (QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings,
                       QgsVectorLayer)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QFontInfo, QTextLayout
app = QgsApplication([], False)
app.initQgis()
path, folder = sys.argv[1], sys.argv[2]
out = {}
for name in sys.argv[3:]:
    lyr = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    r = lyr.renderer()
    info = {"valid": lyr.isValid(), "features": lyr.featureCount(), "type": r.type()}
    if r.type() == "graduatedSymbol":
        info.update(attr=r.classAttribute(), n=len(r.ranges()))
    elif r.type() == "categorizedSymbol":
        info.update(attr=r.classAttribute(), n=len(r.categories()))
    if lyr.labelsEnabled():
        settings = lyr.labeling().settings()
        font = settings.format().font()
        text = next((str(f[settings.fieldName]) for f in lyr.getFeatures()
                     if str(f[settings.fieldName] or "").strip()), "成都市")
        layout = QTextLayout(text, font)
        layout.beginLayout(); layout.createLine(); layout.endLayout()
        runs = layout.glyphRuns()
        info["label"] = {
            "field": settings.fieldName, "family": font.family(),
            "resolved": QFontInfo(font).family(), "text": text,
            "drawn_by": sorted({run.rawFont().familyName() for run in runs}),
            "missing_glyphs": sum(1 for run in runs for g in run.glyphIndexes() if g == 0),
        }
    ms = QgsMapSettings()
    ms.setLayers([lyr])
    ms.setExtent(lyr.extent())
    ms.setOutputSize(QSize(160, 160))
    ms.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(ms)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(os.path.join(folder, name + ".png"), "PNG")
    out[name] = info
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS 3.22 may crash while tearing down (exitQgis) after rendering
"""


@pytest.fixture(scope="module")
def toy_run_gpkg(tmp_path_factory):
    """The maps and write steps of a run on the toy context (with a 2-year lisa layer)."""
    import pandas as pd
    from test_plot import toy_context

    from agglo.outputs.maps import layer_styles
    from agglo.outputs.run import write_outputs

    ctx = toy_context(tmp_path_factory.mktemp("qgis_run"))
    members = ctx.layers["cities"].dropna(subset=["agglomeration_id"])
    lisa = members[["adcode", "name_zh", "geometry"]]
    ctx.layers["lisa"] = gpd.GeoDataFrame(
        pd.concat(
            [
                lisa.assign(year=2010, cluster=["HH", "LL", "ns", "HL", "LH"]),
                lisa.assign(year=2020, cluster=["ns", "HH", "HH", "LL", "LH"]),
            ],
            ignore_index=True,
        ),
        crs=4326,
    )
    ctx.styles.update(layer_styles(ctx.layers))
    write_outputs(ctx)
    return ctx.out_dir / "agglo.gpkg"


def _qml_classes(qml: str) -> tuple[str, int | None]:
    root = _parse(qml)
    renderer = root.find("renderer-v2")
    kind = renderer.get("type")
    tag = {"graduatedSymbol": "ranges/range", "categorizedSymbol": "categories/category"}
    return kind, len(renderer.findall(tag[kind])) if kind in tag else None


def _run_qgis_probe(exe: str, gpkg, layers, home) -> dict:
    res = subprocess.run(
        [exe, "-c", _QGIS_RUN_PROBE, str(gpkg), str(home), *layers],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(home)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_qgis_loads_renders_and_labels_every_layer_of_a_run(toy_run_gpkg, tmp_path):
    """Every layer of agglo.gpkg opens in QGIS with its stored style, draws, and labels in CJK."""
    exe = _system_qgis()
    from PIL import Image

    from agglo.outputs.fonts import CJK_FAMILY, install_cjk_font

    gpkg = toy_run_gpkg
    layers = [n for n, _ in pyogrio.list_layers(gpkg) if n != "layer_styles"]
    assert {"cities", "agglomerations", "lisa_2010", "lisa_2020", "metro_areas"} <= set(layers)
    stored = styles.read_layer_styles(gpkg).set_index("f_table_name")["styleQML"]
    assert set(layers) - set(stored.index) <= {"counties"}  # every map layer has a style
    home = tmp_path / "home"
    install_cjk_font(home / ".local" / "share" / "fonts")  # what a user without CJK fonts does
    got = _run_qgis_probe(exe, gpkg, layers, home)
    for name in layers:
        info = got[name]
        n = pyogrio.read_info(gpkg, layer=name)["features"]
        assert info["valid"] and info["features"] == n, (name, info)
        if name in stored.index:  # the stored default style is the one QGIS applied
            kind, classes = _qml_classes(stored[name])
            assert info["type"] == kind, (name, info)
            if classes is not None:
                assert info["n"] == classes, (name, info, classes)
        with Image.open(home / f"{name}.png") as im:
            px = np.asarray(im.convert("RGB")).reshape(-1, 3)
        drawn = (px != 255).any(axis=1).mean()
        assert drawn > 0.05, (name, drawn)  # not blank: the features were drawn
        label = info.get("label")
        if label:  # labels resolve to the CJK font: no missing glyph (no boxes)
            assert label["family"] == CJK_FAMILY and label["resolved"] == CJK_FAMILY, label
            assert label["missing_glyphs"] == 0 and any(c > "\u2e80" for c in label["text"])
    assert got["cities"]["label"]["field"] == "name_zh"
    assert got["cities"]["type"] == "graduatedSymbol"
    # the check can fail: without the font (and no CJK font on the system) the labels are boxes
    system_cjk = subprocess.run(
        ["fc-list", ":lang=zh"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not system_cjk:
        bare = _run_qgis_probe(exe, gpkg, ["cities"], tmp_path / "bare")
        assert bare["cities"]["label"]["missing_glyphs"] > 0


@pytest.mark.parametrize("kind", ["normal", "ties", "zero_inflated", "rounded"])
def test_fisher_jenks_bins_equal_mapclassify(kind):
    # agglo's numpy Fisher-Jenks (no numba compile at import) against mapclassify's, to the bit
    rng = np.random.default_rng({"normal": 1, "ties": 2, "zero_inflated": 3, "rounded": 4}[kind])
    for n in (2, 3, 7, 40, 130, 257):
        if kind == "normal":
            y = rng.normal(size=n)
        elif kind == "ties":
            y = rng.integers(0, 6, n).astype(float)
        elif kind == "zero_inflated":
            y = rng.gamma(0.5, 3.0, n) * (rng.random(n) > 0.4)
        else:
            y = np.round(rng.normal(size=n) * 10, 1)
        for k in range(1, min(np.unique(y).size, 7) + 1):
            ours = styles.fisher_jenks_bins(y, k)
            ref = mapclassify.FisherJenks(y, k=k).bins
            np.testing.assert_array_equal(ours, ref, err_msg=f"n={n} k={k}")


def test_fisher_jenks_bins_by_hand_and_errors():
    # two obvious groups: the best split is after 3 (within sums of squares 2 + 2 = 4)
    assert styles.fisher_jenks_bins([1, 2, 3, 10, 11, 12], 2).tolist() == [3.0, 12.0]
    with pytest.raises(AggloInputError, match="at least k=3 distinct values"):
        styles.fisher_jenks_bins([1.0, 1.0, 2.0], 3)


def test_centre_bound_leaves_no_empty_class():
    # equal intervals of [-1, 0.6] in 3: bounds -0.467, 0.067, 0.6; a bound at 0 added to
    # them would leave (-0.467, 0] and (0, 0.067] empty
    y = np.array([-1.0, -0.9, 0.5, 0.6])
    lower, upper = styles.classify(y, scheme="equal_interval", k=3, centre=0.0)
    assert upper.tolist() == [0.0, 0.6] and lower.tolist() == [-1.0, 0.0]
    for scheme in ("fisher_jenks", "quantiles", "equal_interval"):
        for seed in range(20):
            v = np.random.default_rng(seed).normal(0.2, 0.5, 9)
            _lo, up = styles.classify(v, scheme=scheme, k=5, centre=0.0)
            idx = np.clip(np.searchsorted(up, v, side="left"), 0, up.size - 1)
            assert np.bincount(idx, minlength=up.size).min() >= 1, (scheme, seed, up)
            if v.min() < 0 < v.max():
                assert 0.0 in up  # still no class straddles the centre
