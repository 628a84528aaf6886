"""Issue 13, rest: robust outliers within an agglomeration-year, `agglo panel inspect` and its
columns file, `[panel] columns_file` beside the TOML, PanelOptions flags of `agglo index`, and
the property that non-member cities and unrelated columns never change the index."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.errors import AggloDataWarning, AggloInputError
from agglo.io.panel import DEMO_PANEL, inspect_panel, read_panel

CY = ["510100", "510300", "510500", "510600", "510700", "510900", "511000"]  # cy members


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_robust_outlier_within_an_agglomeration_year_is_flagged_by_row(tmp_path):
    # 7 cy cities' wages near 50,000; 德阳 (510600) at 12,000: ÷4.2 off the median, which the
    # column-year scale check (×30) misses; worked out: logs, MAD floor 0.15 ->
    # z = 0.6745 * ln(12000 / 50000) / 0.15 = -6.4
    wages = [50000, 52000, 48000, 12000, 51000, 49000, 50500]
    rows = [["adcode", "year", "avg_wage"]] + [
        [c, "2015", w] for c, w in zip(CY, wages, strict=True)
    ]
    with pytest.warns(AggloDataWarning, match=r"plausibility outlier.*row 5, column 'avg_wage'"):
        res = read_panel(write_csv(tmp_path / "w.csv", rows))
    (flag,) = res.report.flags
    assert (flag["check"], flag["row"], flag["adcode"], flag["value"]) == (
        "outlier",
        5,
        "510600",
        12000.0,
    )
    assert "robust z -6.4" in flag["message"] and "among the cy cities" in flag["message"]
    frame = res.report.to_frame()
    assert frame.loc[frame["kind"] == "flag:outlier", "column"].tolist() == ["avg_wage"]
    # a large city is not an outlier for being large: population is a size, never checked
    rows = [["adcode", "year", "population"]] + [
        [c, "2015", p] for c, p in zip(CY, [1600, 300, 420, 350, 480, 320, 370], strict=True)
    ]
    assert read_panel(write_csv(tmp_path / "p.csv", rows)).report.flags == []
    # the threshold is an option (0 switches the check off)
    assert read_panel(tmp_path / "w.csv", outlier_z=0).report.flags == []


def test_inspect_computes_nothing_and_names_every_column_and_city(tmp_path):
    rows = [
        ["2015年城市主要指标", "", "", ""],
        ["城市", "年份", "人均地区生产总值全市元", "工业二氧化硫排放量全市吨"],
        ["成都", "2015", "not a number", "1"],
        ["七台河", "2015", "30000", "2"],
        ["巢湖", "2015", "30000", "3"],
    ]
    path = write_csv(tmp_path / "y.csv", rows)
    ins = inspect_panel(path)  # the value 'not a number' is never read
    cols = ins.columns.set_index("column")
    assert cols.loc["人均地区生产总值全市元", "target"] == "gdp_per_capita"
    assert cols.loc["人均地区生产总值全市元", "area"] == "whole_city"
    assert cols.loc["人均地区生产总值全市元", "unit"] == "元"
    assert "core '人均地区生产总值'" in cols.loc["人均地区生产总值全市元", "reason"]
    assert cols.loc["工业二氧化硫排放量全市吨", "kind"] == "unknown"
    assert cols.loc["工业二氧化硫排放量全市吨", "target"] == ""  # proposals are never applied
    assert cols.loc["城市", "kind"] == "role" and cols.loc["年份", "target"] == "year"
    assert ins.layout["titles"] and ins.layout["skiprows"] == 1
    status = ins.cities.set_index("value")["status"].to_dict()
    assert status == {"成都": "matched", "七台河": "outside", "巢湖": "abolished"}
    text = "\n".join(ins.lines())
    assert "1 title line(s) above" in text and "outside: 七台河" in text
    with pytest.raises(AggloInputError, match="not found"):
        inspect_panel(tmp_path / "nope.csv")


def test_cli_inspect_writes_a_columns_file_that_reads_back_from_the_toml_folder(tmp_path, capsys):
    from agglo.cli import main

    rows = [["城市", "年份", "人均GDP(元)", "Remarks"]]
    rows += [[c, "2015", v, "x"] for c, v in zip(["成都", "自贡", "泸州"], [5, 4, 3], strict=True)]
    data = write_csv(tmp_path / "y.csv", rows)
    cols = tmp_path / "cfg" / "columns.csv"
    cols.parent.mkdir()
    assert main(["panel", "inspect", str(data), "--write-columns", str(cols)]) == 0
    printed = capsys.readouterr().out
    assert "'人均GDP(元)' -> gdp_per_capita [indicator]" in printed
    assert "cities: 3 matched" in printed
    table = pd.read_csv(cols, dtype=str, keep_default_na=False)
    assert table.set_index("column").loc["人均GDP(元)", "target"] == "gdp_per_capita"
    assert table.set_index("column").loc["Remarks", "target"] == ""  # descriptive: dropped
    # the user edits the mapping: the GDP column is really avg_wage (say)
    table.loc[table["column"] == "人均GDP(元)", "target"] = "avg_wage"
    table.to_csv(cols, index=False)
    assert main(["panel", "inspect", str(data), "--write-columns", str(cols)]) == 2  # exists
    toml = tmp_path / "cfg" / "run.toml"
    toml.write_text('[panel]\ncolumns_file = "columns.csv"\n', encoding="utf-8")
    from agglo.config import load_config

    section = load_config(toml).section("panel")
    assert Path(section["columns_file"]) == cols  # relative to the TOML's folder
    res = read_panel(data, columns_file=section["columns_file"], plausibility="off")
    assert set(res.panel["indicator"]) == {"avg_wage"}
    assert main(["panel", "inspect", str(data), "--config", str(toml)]) == 0
    assert "'人均GDP(元)' -> avg_wage [indicator] columns mapping" in capsys.readouterr().out


def test_index_takes_panel_flags(tmp_path):
    from agglo.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AggloDataWarning)
        code = main(
            ["index", "--out", str(tmp_path / "o"), "--no-sensitivity", "--years", "2015",
             "--plausibility", "off", "--ddof", "1"]
        )  # fmt: skip
    assert code == 0
    comp = pd.read_csv(tmp_path / "o" / "index_composite.csv")
    assert comp["year"].unique().tolist() == [2015]
    assert not (tmp_path / "o" / "index_sensitivity.csv").exists()
    assert main(["index", "--out", str(tmp_path / "p"), "--plausibility", "loud"]) == 2


# ---------------------------------------------------------------------------------------
# property: non-member cities and unrelated columns never change the index
# ---------------------------------------------------------------------------------------

NONMEMBERS = ["230900", "110000", "440300", "210200", "370200", "350200", "130100", "620100"]
UNRELATED = ["工业二氧化硫排放量全市吨", "公共图书馆图书藏量全市万册", "医院数全市个", "Remarks"]


@pytest.fixture(scope="module")
def wide_demo_members():
    wide = read_panel(DEMO_PANEL, years=[2020]).to_wide()
    return wide[wide["adcode"].isin([*CY, "500000", "520100", "520200", "530100", "530300"])]


@pytest.fixture(scope="module")
def reference_composite(wide_demo_members, tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "members_synthetic.csv"
    wide_demo_members.to_csv(path, index=False)
    return _composite(path)


def _composite(path: Path) -> pd.DataFrame:
    from agglo.analysis.index import integration_index
    from agglo.reference.boundaries import load_membership

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AggloDataWarning)
        panel = read_panel(path, on_unknown_city="drop", ignore_unknown=True).panel
        res = integration_index(panel, load_membership(), {"sensitivity": False}, institutions=None)
    return res.composite


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extra_cities=st.lists(st.sampled_from(NONMEMBERS), unique=True, max_size=5),
    extra_columns=st.lists(st.sampled_from(UNRELATED), unique=True, max_size=3),
    value=st.floats(1, 1e6),
)
def test_nonmember_cities_and_unrelated_columns_never_change_the_index(
    wide_demo_members, reference_composite, tmp_path_factory, extra_cities, extra_columns, value
):
    table = wide_demo_members.copy()
    template = table.iloc[0]
    for code in extra_cities:
        table = pd.concat([table, template.to_frame().T.assign(adcode=code)], ignore_index=True)
    for col in extra_columns:
        table[col] = value
    path = tmp_path_factory.mktemp("prop") / "more_synthetic.csv"
    table.to_csv(path, index=False)
    pd.testing.assert_frame_equal(_composite(path), reference_composite)
