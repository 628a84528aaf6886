"""The derived real census/HSR table and the demo panel's real values, against the sources."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pandas as pd
import pytest

from agglo.reference.paths import data_path

# the build script lives outside the package (scripts/)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

TABLE = data_path("census", "census_real.csv")
#: ten units checked against the source rows (read with the csv module, not with the script)
CHECKED = ["110100", "310100", "440300", "510100", "510600", "511400", "512000", "420100",
           "530100", "650100"]  # fmt: skip


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(TABLE, dtype={"adcode": str})


@pytest.fixture(scope="module")
def source_rows(shared_data) -> dict[str, dict[str, str]]:
    with open(shared_data / "census" / "census_city_2010-2020_v1.csv", encoding="utf-8-sig") as f:
        return {r["city_code"]: r for r in csv.DictReader(f)}


def _value(table: pd.DataFrame, adcode: str, year: int, variable: str) -> float:
    sel = table[(table.adcode == adcode) & (table.year == year) & (table.variable == variable)]
    assert len(sel) == 1, (adcode, year, variable)
    return float(sel["value"].iloc[0])


@pytest.mark.parametrize("adcode", CHECKED)
def test_population_and_urbanisation_equal_the_census_rows(table, source_rows, adcode):
    row = source_rows[adcode]
    for year in (2010, 2020):
        total = int(row[f"popu_{year}"])
        assert _value(table, adcode, year, "population") == pytest.approx(total / 1e4, abs=1e-4)
        if row[f"popu_urban_{year}"]:
            rate = 100 * int(row[f"popu_urban_{year}"]) / total
            got = _value(table, adcode, year, "urbanization_rate")
            assert got == pytest.approx(rate, abs=1e-4)


def test_chongqing_code_is_matched_to_the_boundary_unit(table, source_rows):
    assert _value(table, "500000", 2020, "population") == pytest.approx(
        int(source_rows["500100"]["popu_2020"]) / 1e4, abs=1e-4
    )


def test_missing_urban_split_has_no_row(table, source_rows):
    assert source_rows["429004"]["popu_urban_2020"] == ""  # 仙桃: no 2020 urban split
    sel = table[(table.adcode == "429004") & (table.variable == "urbanization_rate")]
    assert sel["year"].tolist() == [2010]


def test_every_value_has_a_real_provenance_and_source(table):
    assert set(table["provenance"]) == {"real:census-2010", "real:census-2020", "real:railways"}
    assert table["source"].str.len().gt(0).all()
    assert not table.duplicated(["adcode", "year", "variable"]).any()
    assert set(table.loc[table.variable == "hsr", "value"]) <= {0.0, 1.0}
    # a city's HSR flag never goes back to 0
    hsr = table[table.variable == "hsr"].pivot(index="adcode", columns="year", values="value")
    assert (hsr.diff(axis=1).fillna(0) >= 0).all().all()


def test_seed_003_polarisation_holds_on_real_values(table):
    """Seed 003: 成都 grew by millions 2010-2020 while 德阳, 眉山 and 资阳 shrank."""

    def change(code: str) -> float:
        return _value(table, code, 2020, "population") - _value(table, code, 2010, "population")

    assert change("510100") > 500  # 10k persons: > 5 million
    assert change("510600") < 0  # 德阳
    assert change("512000") < 0  # 资阳
    # 眉山 is nearly flat on the census (+0.5 k): the claim holds for 德阳 and 资阳 only
    assert abs(change("511400")) < 1


def test_rebuild_gives_the_same_table(shared_data):
    from build_census import build_table

    rebuilt = build_table(shared_data)
    bundled = pd.read_csv(TABLE, dtype={"adcode": str})
    pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), bundled, check_dtype=False)


def test_demo_panel_carries_real_values_with_provenance(table):
    panel = pd.read_csv(data_path("panel", "demo_panel_synthetic.csv"), dtype={"adcode": str})
    prov = pd.read_csv(data_path("panel", "demo_panel_provenance.csv"), dtype={"adcode": str})
    labels = prov.set_index(["adcode", "year", "variable"])["provenance"]
    p = panel.set_index(["adcode", "year"])
    assert p.loc[("510100", 2020), "population"] == _value(table, "510100", 2020, "population")
    assert labels[("510100", 2020, "population")] == "real:census-2020"
    assert labels[("510100", 2010, "hsr")] == "real:railways"
    # 2015: geometric interpolation between the censuses, labelled as such
    a, b = (_value(table, "510100", y, "population") for y in (2010, 2020))
    assert p.loc[("510100", 2015), "population"] == pytest.approx((a * b) ** 0.5, abs=1e-3)
    assert labels[("510100", 2015, "population")] == "interpolated:census-2010-2020"
    assert labels[("510100", 2015, "gdp_per_capita")] == "synthetic"
    # every panel value has exactly one label
    assert len(prov) == len(panel) * prov["variable"].nunique()
