"""Tests of the yearbook panel reader (agglo.io.panel), city matching (agglo.reference.names) and the
synthetic demo panel (scripts/demo/make_demo_panel.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.errors import AggloDataWarning, AggloInputError, ValidationError
from agglo.io.panel import (
    DEMO_EMPLOYMENT,
    DEMO_PANEL,
    PANEL_COLUMNS,
    panel_to_wide,
    read_employment,
    read_panel,
    registry_column,
)
from agglo.reference.names import HISTORICAL_NAMES, OLD_ADCODES, CityMatcher, name_stem
from agglo.reference.registry import INDICATORS, VARIABLES

REPO = Path(__file__).resolve().parents[1]
YANGTZE = {
    p + s
    for p, s in zip(
        ["上海", "江苏", "浙江", "安徽", "江西", "湖北", "湖南", "重庆", "四川", "贵州", "云南"],
        ["市", "省", "省", "省", "省", "省", "省", "市", "省", "省", "省"],
        strict=True,
    )
}


def write_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def problems_of(excinfo: pytest.ExceptionInfo) -> list[str]:
    return excinfo.value.problems


@pytest.fixture(scope="module")
def matcher(cities) -> CityMatcher:
    return CityMatcher(pd.DataFrame(cities.drop(columns="geometry")))


# ---------------------------------------------------------------------------------------
# the demo panel
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    return read_panel(DEMO_PANEL)


def test_demo_panel_shape_and_synthetic(demo):
    p = demo.panel
    assert list(p.columns) == PANEL_COLUMNS
    # 84 member units x 3 years x (19 indicators + population + gdp) = 5292
    assert len(p) == 84 * 3 * 21
    assert p["adcode"].nunique() == 84
    assert sorted(p["year"].unique().tolist()) == [2010, 2015, 2020]
    assert set(p["indicator"]) == set(VARIABLES)
    assert p["adcode"].str.fullmatch(r"\d{6}").all()
    assert p["year"].dtype == np.int64 and p["value"].dtype == np.float64
    assert demo.synthetic is True
    assert "synthetic" in DEMO_PANEL.name
    frame = demo.report.to_frame()
    # per-value provenance (demo_panel_provenance.csv): partly real, never wholly synthetic
    assert set(frame["data_status"]) == {"partly synthetic"}
    assert frame["message"].str.contains("PARTLY SYNTHETIC").any()
    assert demo.metadata["data_status"] == "synthetic"
    from agglo.reference.boundaries import load_membership

    assert set(p["adcode"]) == set(load_membership()["adcode"])


def test_demo_employment_and_krugman(demo):
    emp = demo.employment
    assert emp is not None and list(emp.columns) == ["adcode", "year", "sector", "employment"]
    assert len(emp) == 84 * 3 * 6
    assert (emp["employment"] > 0).all()
    assert read_employment(DEMO_EMPLOYMENT).equals(emp)
    # independent Krugman index: SP_i = sum_j |s_ij - sbar_ij|, sbar over the other cities of
    # the same agglomeration (DESIGN.md), recomputed here with plain numpy
    from agglo.reference.boundaries import load_membership

    agg = load_membership().set_index("adcode")["agglomeration_id"]
    k = demo.panel[demo.panel["indicator"] == "krugman_index"].set_index(["adcode", "year"])
    checked = 0
    for (_agg, y), g in emp.assign(agg=emp["adcode"].map(agg)).groupby(["agg", "year"]):
        tab = g.pivot(index="adcode", columns="sector", values="employment")
        m = tab.to_numpy()
        for i, code in enumerate(tab.index):
            others = np.delete(m, i, axis=0).sum(axis=0)
            sp = np.abs(m[i] / m[i].sum() - others / others.sum()).sum()
            assert k.loc[(code, y), "value"] == pytest.approx(sp, abs=5e-5)  # stored 4 d.p.
            checked += 1
    assert checked == 252


def test_demo_magnitudes_plausible(demo):
    w = demo.to_wide()
    assert w["gdp_per_capita"].between(15_000, 200_000).all()
    assert w["urbanization_rate"].between(25, 95).all()
    assert w["income_ratio"].between(1.5, 3.5).all()
    assert w["road_density"].between(40, 260).all()
    for v in INDICATORS.values():
        if v.kind == "rate":
            assert w[v.id].between(0, 100).all(), v.id
    by_year = w.groupby("year").mean(numeric_only=True)
    assert by_year["gdp_per_capita"].is_monotonic_increasing
    assert by_year["pm25"].is_monotonic_decreasing
    # HSR never closes: per city 0/1 non-decreasing over the years
    assert (w.sort_values("year").groupby("adcode")["hsr"].diff().dropna() >= 0).all()
    # gdp = gdp per capita x population / 10^4 (units: 100 million yuan, yuan, 10k persons)
    assert np.allclose(w["gdp"], w["gdp_per_capita"] * w["population"] / 1e4, rtol=2e-3)
    # agglomeration differences: yrd richer and more even than the rest
    from agglo.reference.boundaries import load_membership

    w["agg"] = w["adcode"].map(load_membership().set_index("adcode")["agglomeration_id"])
    g = w[w["year"] == 2020].groupby("agg")["gdp_per_capita"]
    cv = g.std(ddof=0) / g.mean()
    assert g.mean().idxmax() == "yrd" and cv.idxmin() == "yrd"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_demo_panel", REPO / "scripts" / "demo" / "make_demo_panel.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_demo_panel"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generator_deterministic_and_committed_file_current(tmp_path):
    gen = _load_generator()
    gen.main(["--seed", str(gen.DEFAULT_SEED), "--out-dir", str(tmp_path), "--date", "2026-11-23"])
    for name in ("demo_panel_synthetic.csv", "demo_employment_synthetic.csv"):
        assert (tmp_path / name).read_bytes() == (DEMO_PANEL.parent / name).read_bytes(), name
    meta = json.loads((tmp_path / "demo_panel_synthetic.json").read_text("utf-8"))
    assert meta["data_status"] == "synthetic" and meta["seed"] == gen.DEFAULT_SEED
    other, _ = gen.make_demo(seed=1)
    committed = pd.read_csv(DEMO_PANEL, dtype={"adcode": str})
    assert not np.allclose(other["gdp_per_capita"], committed["gdp_per_capita"])
    assert (committed["data_status"] == "synthetic").all()


# ---------------------------------------------------------------------------------------
# shapes and encodings
# ---------------------------------------------------------------------------------------

WIDE_ZH = [
    ["城市", "年份", "人均GDP(元)", "常住人口城镇化率（%）", "PM2.5", "是否开通高铁"],
    ["成都市", "2010", "48,000", "65.5", "70.1", "1"],
    ["襄樊", "2010", "30000", "45", "60", "0"],
    ["恩施州", "2010", "15000", "35.25", "50", "0"],
]


def _check_wide_zh(res):
    w = res.to_wide().set_index("adcode")
    assert list(w.index) == ["420600", "422800", "510100"]
    assert w.loc["510100", "gdp_per_capita"] == 48000.0  # thousands separator removed
    assert w.loc["422800", "urbanization_rate"] == 35.25
    assert w.loc["420600", "pm25"] == 60.0
    assert w.loc["510100", "hsr"] == 1.0
    assert len(res.panel) == 12 and res.synthetic is False


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "gb18030", "utf-8"])
def test_csv_encodings_round_trip(tmp_path, encoding):
    path = write_csv(tmp_path / f"panel_{encoding}.csv", WIDE_ZH, encoding=encoding)
    res = read_panel(path)
    _check_wide_zh(res)
    expected = "gb18030" if encoding in {"gbk", "gb18030"} else "utf-8-sig"
    assert any(expected in a for a in res.report.actions)


def test_forced_wrong_encoding_errors(tmp_path):
    path = write_csv(tmp_path / "p.csv", WIDE_ZH, encoding="gbk")
    with pytest.raises(AggloInputError, match="cannot decode the file as utf-8"):
        read_panel(path, encoding="utf-8")


def test_tab_separated_and_title_rows(tmp_path):
    text = "2010年城市统计\n\n" + "\n".join("\t".join(r) for r in WIDE_ZH) + "\n"
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    _check_wide_zh(read_panel(path, skiprows=2))
    bad = text.replace("70.1", "seventy")
    path.write_text(bad, encoding="utf-8")
    # the header is line 3, 成都市 line 4: row numbers count from the top of the file
    with pytest.raises(ValidationError, match=r"p\.csv, row 4, column 'PM2\.5': non-numeric"):
        read_panel(path, skiprows=2)


def test_xlsx_wide_form(tmp_path):
    df = pd.DataFrame(
        {
            "adcode": [510100, 420600.0, "422800"],  # int, float from Excel, str
            "year": [2010, 2010.0, "2010"],
            "人均GDP(元)": [48000, 30000, 15000],
            "城镇化率": [65.5, 45, 35.25],
            "PM2.5": [70.1, 60, 50],
            "hsr": [1, 0, 0],
        }
    )
    path = tmp_path / "yearbook.xlsx"
    with pd.ExcelWriter(path) as xw:
        pd.DataFrame({"x": [1]}).to_excel(xw, sheet_name="notes", index=False)
        df.to_excel(xw, sheet_name="data", index=False)
    res = read_panel(path, sheet="data")
    w = res.to_wide().set_index("adcode")
    assert w.loc["420600", "gdp_per_capita"] == 30000.0
    assert w.loc["422800", "urbanization_rate"] == 35.25
    assert len(res.panel) == 12
    with pytest.raises(AggloInputError, match="cannot read sheet 'nope'"):
        read_panel(path, sheet="nope")


def test_xlsx_error_rows_are_spreadsheet_rows(tmp_path):
    df = pd.DataFrame({"adcode": ["510100", "420600"], "year": [2010, 2010], "pm25": [1, -3]})
    path = tmp_path / "y.xlsx"
    df.to_excel(path, index=False)
    with pytest.raises(ValidationError, match=r"y\.xlsx, row 3, column 'pm25': negative value"):
        read_panel(path)


def test_long_form(tmp_path):
    rows = [
        ["adcode", "year", "indicator", "value", "unit"],
        ["510100", "2010", "gdp_per_capita", "48000", "元"],
        ["510100", "2010", "城镇化率", "65.5", "%"],
        ["420600", "2015", "PM2.5年均浓度", "40", "µg/m³"],
        ["420600", "2015", "employment_manufacturing", "55.5", "万人"],
    ]
    res = read_panel(write_csv(tmp_path / "long.csv", rows))
    assert res.panel.values.tolist() == [
        ["420600", 2015, "pm25", 40.0],
        ["510100", 2010, "gdp_per_capita", 48000.0],
        ["510100", 2010, "urbanization_rate", 65.5],
    ]
    assert res.employment.values.tolist() == [["420600", 2015, "manufacturing", 55.5]]
    assert any("ignored descriptive column 'unit'" in a for a in res.report.actions)


def test_employment_wide_and_long(tmp_path):
    wide = [
        ["adcode", "year", "employment_manufacturing", "employment_Finance", "gdp"],
        ["510100", "2010", "100", "20", "5000"],
    ]
    res = read_panel(write_csv(tmp_path / "w.csv", wide))
    assert res.employment.values.tolist() == [
        ["510100", 2010, "finance", 20.0],
        ["510100", 2010, "manufacturing", 100.0],
    ]
    assert res.panel.values.tolist() == [["510100", 2010, "gdp", 5000.0]]
    long = [
        ["city", "year", "sector", "employment"],
        ["成都", "2010", "manufacturing", "100"],
        ["成都市", "2010", "manufacturing", "101"],
        ["成都", "2010", "finance", "-2"],
    ]
    with pytest.raises(ValidationError) as e:
        read_employment(write_csv(tmp_path / "l.csv", long))
    text = "\n".join(problems_of(e))
    assert "duplicate city-year-sector rows (rows 2, 3) for 510100 成都市, 2010" in text
    assert "row 4, column 'employment': negative value" in text
    with pytest.raises(AggloInputError, match="no sector employment found"):
        read_employment(
            write_csv(tmp_path / "g.csv", [["adcode", "year", "gdp"], [510100, 2010, 1]])
        )


# ---------------------------------------------------------------------------------------
# city matching
# ---------------------------------------------------------------------------------------


def test_xiangfan_historical_name(tmp_path):
    rows = [["城市", "年份", "gdp"], ["襄樊市", "2005", "1000"], ["襄樊", "2015", "2000"]]
    with pytest.warns(AggloDataWarning, match="'襄樊' .* used for 2015, after it went out of use"):
        res = read_panel(write_csv(tmp_path / "p.csv", rows))  # renamed 2010
    assert res.panel["adcode"].tolist() == ["420600", "420600"]
    # used while valid (2005): a recorded mapping, not a warning
    assert any("'襄樊市' matched to 420600 襄阳市 by historical" in a for a in res.report.actions)
    assert not any("'襄樊市'" in w for w in res.report.warnings)


def test_names_without_suffix_and_short_forms(matcher):
    expected = {
        "成都": "510100",
        "成都市": "510100",
        "重庆": "500000",
        "恩施州": "422800",
        "恩施": "422800",
        "黔东南州": "522600",
        "黔东南": "522600",
        "黔南州": "522700",
        "红河州": "532500",
        "楚雄": "532300",
        "西双版纳州": "532800",
        "神农架": "429021",
        "湖北省襄阳市": "420600",
        "湖北襄阳": "420600",
        "毕节地区": "520500",
        "铜仁地区": "520600",
        "思茅": "530800",
        "丽水地区": "331100",  # generic rule: X地区 -> X市 by stem
        "襄 阳 市": "420600",  # stray spaces
    }
    got = {n: matcher.match_name(n).adcode for n in expected}
    assert got == expected


def test_name_stem_examples():
    assert name_stem("迪庆藏族自治州") == "迪庆"
    assert name_stem("阿坝藏族羌族自治州") == "阿坝"
    assert name_stem("苏州") == "苏州"  # a 2-character name keeps its 州


def test_adcode_forms(matcher):
    assert matcher.match_adcode("510100").adcode == "510100"
    assert matcher.match_adcode(510100).adcode == "510100"
    assert matcher.match_adcode(510100.0).adcode == "510100"
    assert matcher.match_adcode("510100.0").adcode == "510100"
    m = matcher.match_adcode("5101")
    assert m.adcode is None and "4-digit prefixes" in m.error
    old = matcher.match_adcode("522400")  # 毕节地区's code before 2011
    assert old.adcode == "520500" and "毕节地区" in old.warning


def test_unknown_and_ambiguous_cities(tmp_path):
    rows = [
        ["city", "year", "gdp"],
        ["成督", "2010", "1"],  # typo
        ["巢湖", "2010", "1"],  # abolished 2011, split
        ["北京", "2010", "1"],  # outside the bundled provinces
    ]
    with pytest.raises(ValidationError) as e:
        read_panel(write_csv(tmp_path / "p.csv", rows))
    probs = problems_of(e)
    assert len(probs) == 3
    assert "row 2, column 'city': unknown city '成督'; did you mean: 510100 成都市" in probs[0]
    assert "row 3, column 'city': city '巢湖' cannot be mapped to one current unit" in probs[1]
    assert "340100 合肥市, 340200 芜湖市, 340500 马鞍山市" in probs[1]
    # a real unit outside the Yangtze city table: named as such (crosswalk alias table)
    assert "1 prefecture-level unit(s) outside the city table" in probs[2]
    assert "110100 北京市" in probs[2]
    with pytest.warns(AggloDataWarning) as rec:
        res = read_panel(write_csv(tmp_path / "q.csv", [*rows, ["成都", "2010", "5"]]),
                         on_unknown_city="drop", cities=None)  # fmt: skip
    assert res.panel["adcode"].tolist() == ["510100"]
    texts = [str(w.message) for w in rec]
    assert any("dropped rows of 1 unknown cit(y/ies)" in t and "'成督' (row 2)" in t for t in texts)
    # the abolished unit (巢湖 2011) is dropped in drop mode, naming its successors
    assert any("abolished unit" in t and "巢湖" in t and "340200 芜湖市" in t for t in texts)
    assert any("dropped 1 prefecture-level unit(s) outside" in t and "北京市" in t for t in texts)
    with pytest.raises(AggloInputError, match=r"on_unknown_city must be one of .*; got 'skip'"):
        read_panel(tmp_path / "p.csv", on_unknown_city="skip")


def test_national_codes_municipalities_and_abolished(tmp_path):
    rows = [["adcode", "year", "gdp"], ["310000", "2010", "1"], ["110000", "2010", "2"],
            ["341400", "2010", "3"], ["371200", "2018", "4"], ["230900", "2010", "5"],
            ["500000", "2010", "6"], ["500100", "2011", "7"]]  # fmt: skip
    with pytest.warns(AggloDataWarning) as rec:
        res = read_panel(write_csv(tmp_path / "n.csv", rows), on_unknown_city="drop")
    # Shanghai coded at province level is Shanghai (310100), never dropped; Chongqing both ways
    assert res.panel[["adcode", "value"]].values.tolist() == [
        ["310100", 1.0], ["500000", 6.0], ["500000", 7.0]]  # fmt: skip
    texts = "\n".join(str(w.message) for w in rec)
    assert "adcode 341400 cannot be mapped" in texts and "巢湖市, abolished in 2011" in texts
    assert "371200 莱芜市) was abolished after 2018" in texts
    assert "dropped 2 prefecture-level unit(s) outside the city table" in texts
    assert "110100 北京市" in texts and "230900 七台河市" in texts
    assert any("310000 read as the municipality 310100" in a for a in res.report.actions)


def test_same_name_in_two_provinces_is_ambiguous(tmp_path):
    cities = pd.DataFrame(
        {
            "adcode": ["110100", "220100"],
            "name_zh": ["新城市", "新城地区"],
            "province_zh": ["甲省", "乙省"],
        }
    )
    rows = [["city", "year", "gdp"], ["新城", "2010", "1"], ["乙省新城", "2010", "2"]]
    with pytest.raises(
        ValidationError, match=r"ambiguous city '新城': matches 110100 新城市, 220100"
    ):
        read_panel(write_csv(tmp_path / "p.csv", rows[:2]), cities=cities)
    # a province prefix disambiguates
    res = read_panel(write_csv(tmp_path / "q.csv", rows[::2]), cities=cities)
    assert res.panel["adcode"].tolist() == ["220100"]


def test_unknown_adcodes(tmp_path):
    rows = [
        ["adcode", "year", "gdp"],
        ["999999", "2010", "1"],
        ["420602", "2010", "1"],  # a district of 襄阳
        ["5101", "2010", "1"],
        ["341400", "2010", "1"],  # 地级巢湖市, abolished
    ]
    with pytest.raises(ValidationError) as e:
        read_panel(write_csv(tmp_path / "p.csv", rows))
    probs = problems_of(e)
    assert "row 2, column 'adcode': unknown adcode 999999" in probs[0]
    assert "county-level code of 420600 襄阳市" in probs[1]
    assert "invalid adcode '5101'" in probs[2]
    assert "adcode 341400 cannot be mapped" in probs[3] and "340200 芜湖市" in probs[3]


def test_adcode_name_conflict_warns(tmp_path):
    rows = [["adcode", "city", "year", "gdp"], ["510100", "重庆", "2010", "1"]]
    with pytest.warns(AggloDataWarning, match="but name '重庆' matches 500000"):
        res = read_panel(write_csv(tmp_path / "p.csv", rows))
    assert res.panel["adcode"].tolist() == ["510100"]
    assert any("but name '重庆' matches 500000 重庆市" in w for w in res.report.warnings)


# ---------------------------------------------------------------------------------------
# validation errors, one by one
# ---------------------------------------------------------------------------------------

HEAD = ["adcode", "year"]


def _one(tmp_path, header, row, **kw):
    return read_panel(write_csv(tmp_path / "panel.csv", [header, row]), **kw)


def test_unknown_indicator_column_names_closest(tmp_path):
    with pytest.raises(
        ValidationError,
        match=r"panel\.csv, row 1, column 'gdp_per_captia': unknown indicator column; closest "
        r"registry ids: gdp_per_capita \(人均GDP\)",
    ):
        _one(tmp_path, [*HEAD, "gdp_per_captia"], ["510100", "2010", "1"])
    with pytest.raises(ValidationError, match=r"column '人均GDPP': .*gdp_per_capita"):
        _one(tmp_path, [*HEAD, "人均GDPP"], ["510100", "2010", "1"])


def test_unknown_indicator_long_form(tmp_path):
    rows = [["city", "year", "indicator", "value"], ["成都", "2010", "pm2.6", "1"]]
    with pytest.raises(
        ValidationError, match=r"row 2, column 'indicator': unknown indicator 'pm2\.6'.*pm25"
    ):
        read_panel(write_csv(tmp_path / "p.csv", rows))


def test_ignore_unknown_and_columns_mapping(tmp_path):
    header = [*HEAD, "gdp", "my_col", "Unnamed: 5"]
    with pytest.warns(AggloDataWarning, match="dropped unknown column 'my_col'"):
        res = _one(tmp_path, header, ["510100", "2010", "1", "2", ""], ignore_unknown=True)
    assert res.panel["indicator"].tolist() == ["gdp"]
    assert any("dropped unknown column 'my_col'" in w for w in res.report.warnings)
    res = _one(tmp_path, header, ["510100", "2010", "1", "2", ""], columns={"my_col": "人均GDP"})
    assert sorted(res.panel["indicator"]) == ["gdp", "gdp_per_capita"]
    res = _one(tmp_path, header, ["510100", "2010", "1", "2", ""], columns={"my_col": None})
    assert res.panel["indicator"].tolist() == ["gdp"]
    with pytest.raises(AggloInputError, match="unknown target"):
        _one(tmp_path, header, ["510100", "2010", "1", "2", ""], columns={"my_col": "gpd_x"})
    with pytest.raises(AggloInputError, match=r"not in the file: \['nope'\]"):
        _one(tmp_path, header, ["510100", "2010", "1", "2", ""], columns={"nope": "gdp"})


def test_two_columns_same_indicator(tmp_path):
    with pytest.raises(ValidationError, match=r"column 'GDP': column maps to 'gdp', as column"):
        _one(tmp_path, [*HEAD, "地区生产总值", "GDP"], ["510100", "2010", "1", "2"])


def test_duplicate_rows(tmp_path):
    rows = [[*HEAD, "gdp", "pm25"], ["510100", "2010", "1", "2"], ["510100", "2010", "1", "2"]]
    with pytest.raises(
        ValidationError,
        match=r"row 2: duplicate city-year-indicator rows \(rows 2, 3\) for 510100 成都市, "
        r"2010: gdp, pm25",
    ):
        read_panel(write_csv(tmp_path / "p.csv", rows))
    # the same city under its old and new name is a duplicate too
    rows = [["city", "year", "gdp"], ["襄樊", "2010", "1"], ["襄阳", "2010", "1"]]
    with pytest.raises(ValidationError, match=r"duplicate .* for 420600 襄阳市, 2010: gdp"):
        read_panel(write_csv(tmp_path / "q.csv", rows))


def test_non_numeric(tmp_path):
    with pytest.raises(
        ValidationError, match=r"panel\.csv, row 2, column 'gdp': non-numeric value 'abc'"
    ):
        _one(tmp_path, [*HEAD, "gdp"], ["510100", "2010", "abc"])


def test_rate_outside_range(tmp_path):
    with pytest.raises(
        ValidationError,
        match=r"column '城镇化率': rate outside \[0, 100\]: 120 \(urbanization_rate, %\)",
    ):
        _one(tmp_path, [*HEAD, "城镇化率"], ["510100", "2010", "120"])
    res = _one(tmp_path, [*HEAD, "城镇化率"], ["510100", "2010", "100"])  # bound included
    assert res.panel["value"].tolist() == [100.0]


def test_negative_where_impossible(tmp_path):
    with pytest.raises(
        ValidationError, match=r"column 'pm25': negative value where values cannot be negative: -5"
    ):
        _one(tmp_path, [*HEAD, "pm25"], ["510100", "2010", "-5"])
    with pytest.raises(ValidationError, match=r"column 'income_ratio': value must be positive"):
        _one(tmp_path, [*HEAD, "income_ratio"], ["510100", "2010", "-1"])


def test_binary_not_zero_one(tmp_path):
    with pytest.raises(ValidationError, match=r"column 'hsr': binary indicator must be 0 or 1: 2"):
        _one(tmp_path, [*HEAD, "hsr"], ["510100", "2010", "2"])


def test_years(tmp_path):
    with pytest.raises(ValidationError, match=r"column 'year': year '2010.5' is not an integer"):
        _one(tmp_path, [*HEAD, "gdp"], ["510100", "2010.5", "1"])
    with pytest.raises(ValidationError, match=r"column 'year': year 1800 outside 1949-"):
        _one(tmp_path, [*HEAD, "gdp"], ["510100", "1800", "1"])
    with pytest.raises(AggloInputError, match=r"nothing left.*years=\[2010, 2015, 2020\] selected"):
        _one(tmp_path, [*HEAD, "gdp"], ["510100", "2012", "1"], years=[2010, 2015, 2020])
    # years= selects: 2 of 3 rows kept, the third counted
    rows = [[*HEAD, "gdp"], *[["510100", str(y), "1"] for y in (2010, 2012, 2015)]]
    with pytest.warns(AggloDataWarning, match=r"requested years without any rows: \[2020\]"):
        res = read_panel(write_csv(tmp_path / "y.csv", rows), years=[2010, 2015, 2020])
    assert res.panel["year"].tolist() == [2010, 2015]
    assert any("left out 1 row(s) of other years ([2012])" in a for a in res.report.actions)
    with pytest.warns(AggloDataWarning, match=r"without any rows: 2000-2011, 2013-2020"):
        res = _one(tmp_path, [*HEAD, "gdp"], ["510100", "2012年", "1"], years=range(2000, 2021))
    assert res.panel["year"].tolist() == [2012]
    with pytest.warns(AggloDataWarning):
        res = _one(tmp_path, [*HEAD, "gdp"], ["510100", "2015", "1"], years=[2010, 2015])
    assert any("requested years without any rows: [2010]" in w for w in res.report.warnings)


def test_empty_values_dropped_and_reported(tmp_path):
    rows = [[*HEAD, "gdp", "pm25"], ["510100", "2010", "", "30"], ["420600", "2010", "—", "-"]]
    res = read_panel(write_csv(tmp_path / "p.csv", rows))
    assert res.panel.values.tolist() == [["510100", 2010, "pm25", 30.0]]
    assert any(
        a.startswith("dropped 3 empty value(s)") and "'gdp': rows 2, 3" in a
        for a in res.report.actions
    )


def test_all_problems_collected_once(tmp_path):
    rows = [
        [*HEAD, "gdp", "城镇化率", "hsr"],
        ["510100", "2010", "x", "101", "1"],
        ["420600", "2010", "5", "50", "0.5"],
    ]
    with pytest.raises(ValidationError, match=r"p\.csv: 3 problem\(s\)") as e:
        read_panel(write_csv(tmp_path / "p.csv", rows))
    assert [p.split(":")[0] for p in problems_of(e)] == [
        "p.csv, row 2, column 'gdp'",
        "p.csv, row 2, column '城镇化率'",
        "p.csv, row 3, column 'hsr'",
    ]


def test_missing_city_or_year_column(tmp_path):
    with pytest.raises(AggloInputError, match="no city column"):
        _one(tmp_path, ["year", "gdp"], ["2010", "1"])
    with pytest.raises(AggloInputError, match="no year column"):
        _one(tmp_path, ["adcode", "gdp"], ["510100", "1"])
    with pytest.raises(AggloInputError, match="not found"):
        read_panel(tmp_path / "absent.csv")


def test_data_status_column_marks_synthetic(tmp_path):
    res = _one(tmp_path, [*HEAD, "gdp", "data_status"], ["510100", "2010", "1", "synthetic"])
    assert res.synthetic is True and res.report.synthetic is True
    assert list(res.panel.columns) == PANEL_COLUMNS
    res = _one(tmp_path, [*HEAD, "gdp", "data_status"], ["510100", "2010", "1", "real"])
    assert res.synthetic is False
    assert set(res.report.to_frame()["data_status"]) == {"real"}


def test_registry_keys_unambiguous():
    from agglo.io.panel import _KEYS

    assert all(len(ids) == 1 for ids in _KEYS.values()), {
        k: v for k, v in _KEYS.items() if len(v) > 1
    }
    for v in VARIABLES.values():
        assert registry_column(v.id) == v.id
        assert registry_column(v.name_zh) == v.id
        assert registry_column(f"{v.name_zh}（{v.unit}）") == v.id
        assert registry_column(v.name_en.upper()) == v.id


# ---------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------

CODES = ["310100", "320100", "420600", "500000", "510100", "522600", "530100"]
VARS = ["gdp_per_capita", "urbanization_rate", "hsr", "pm25", "income_ratio"]


@st.composite
def wide_panels(draw):
    codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=4, unique=True))
    years = draw(st.lists(st.integers(2000, 2020), min_size=1, max_size=3, unique=True))
    cols = draw(st.lists(st.sampled_from(VARS), min_size=1, max_size=5, unique=True))
    value = {
        "gdp_per_capita": st.floats(0, 1e6, allow_nan=False),
        "urbanization_rate": st.floats(0, 100, allow_nan=False),
        "hsr": st.sampled_from([0.0, 1.0]),
        "pm25": st.floats(0, 500, allow_nan=False),
        "income_ratio": st.floats(0.01, 10, allow_nan=False),
    }
    rows = [(c, y) for c in codes for y in years]
    data = {v: [draw(value[v]) for _ in rows] for v in cols}
    df = pd.DataFrame({"adcode": [c for c, _ in rows], "year": [y for _, y in rows], **data})
    return df.sample(frac=1, random_state=draw(st.integers(0, 9))).reset_index(drop=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(df=wide_panels())
def test_wide_long_wide_round_trip(tmp_path_factory, df):
    d = tmp_path_factory.mktemp("rt")
    res = read_panel(df.to_csv(d / "w.csv", index=False) or d / "w.csv", plausibility="off")
    back = panel_to_wide(res.panel)
    expected = df.sort_values(["adcode", "year"]).reset_index(drop=True)
    expected = expected[["adcode", "year", *[v for v in VARIABLES if v in df.columns]]]
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    # the long form of the same data reads to the same tidy panel
    long = res.panel.rename(columns={"indicator": "indicator"})
    res2 = read_panel(long.to_csv(d / "l.csv", index=False) or d / "l.csv", plausibility="off")
    pd.testing.assert_frame_equal(res2.panel, res.panel)


# ---------------------------------------------------------------------------------------
# cross-check of the alias table against the real crosswalk (tests only, never copied)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crosswalk(shared_data):
    cw = shared_data / "crosswalk"
    if not (cw / "entities.csv").is_file():
        pytest.skip("crosswalk tables absent")
    ents = pd.read_csv(cw / "entities.csv", dtype=str)
    ents = ents[ents["province_name_zh"].isin(YANGTZE)]
    # legacy ids are E + adcode, except Chongqing (E500100, its 市辖区 code; bundled 500000)
    ents = ents.assign(code=ents["legacy_entity_id"].str[1:].replace("500100", "500000"))
    names = pd.read_csv(cw / "entity_names_year_end_1987_2026.csv", dtype=str)
    aliases = pd.read_csv(cw / "aliases.csv", dtype=str)
    return ents, names, aliases


def test_current_units_match_crosswalk(crosswalk, matcher):
    ents, names, _ = crosswalk
    active = names[(names["end_year"] == "2026") & (names["legal_status"] == "active")]
    cur = ents[ents["entity_id"].isin(active["entity_id"])]
    assert len(cur) >= 120
    wrong = {
        r.canonical_name_zh: (matcher.match_name(r.canonical_name_zh).adcode, r.code)
        for r in cur.itertuples()
        if matcher.match_name(r.canonical_name_zh).adcode != r.code
    }
    assert wrong == {}


def test_historical_names_match_crosswalk(crosswalk, matcher):
    ents, names, aliases = crosswalk
    code_of = ents.set_index("entity_id")["code"]
    hist = names[names["entity_id"].isin(ents["entity_id"]) & (names["name_zh"].notna())]
    hist = hist.assign(code=hist["entity_id"].map(code_of))
    hist = hist[
        hist["name_zh"] != hist["entity_id"].map(ents.set_index("entity_id")["canonical_name_zh"])
    ]
    abolished = set(names.loc[names["legal_status"] == "abolished", "entity_id"].map(code_of))
    checked = 0
    for r in hist.drop_duplicates("name_zh").itertuples():
        m = matcher.match_name(r.name_zh)
        if r.code in abolished or r.code not in matcher.names:
            assert m.adcode is None and m.error, r.name_zh  # e.g. 巢湖地区: refuse, list candidates
        else:
            assert m.adcode == r.code, (r.name_zh, m)
        checked += 1
    assert checked >= 40
    # every mapped entry of the curated table agrees with the crosswalk's entity code
    hist_codes = dict(zip(hist["name_zh"], hist["code"], strict=False))
    for name, h in HISTORICAL_NAMES.items():
        if name in hist_codes and h.mapped:
            assert h.adcodes == (hist_codes[name],), name
    assert {"襄樊市", "思茅市", "毕节地区", "铜仁地区", "淮阴市"} <= set(hist_codes)
    # aliases of the crosswalk in these provinces (suffix omitted, abbreviations, OCR variants)
    al = aliases.merge(ents[["entity_id", "code"]], on="entity_id")
    for r in al.drop_duplicates("alias").itertuples():
        m = matcher.match_name(r.alias)
        if r.code in matcher.names and r.code not in abolished:
            assert m.adcode == r.code, (r.alias, m)


def test_old_adcodes_point_to_current_units(matcher):
    for code, h in OLD_ADCODES.items():
        assert code not in matcher.names, code  # really an old code
        assert all(c in matcher.names for c in h.adcodes), code


def test_years_across_layout(tmp_path):
    rows = [["城市", "2010年", "2015年", "2020年"], ["成都", "40000", "60000", ""]]
    rows.append(["襄樊", "30000", "35000", "50000"])
    with pytest.warns(AggloDataWarning, match="'襄樊' .*used for 2020"):
        res = read_panel(write_csv(tmp_path / "p.csv", rows), indicator="人均GDP")
    assert res.panel.values.tolist() == [
        ["420600", 2010, "gdp_per_capita", 30000.0],
        ["420600", 2015, "gdp_per_capita", 35000.0],
        ["420600", 2020, "gdp_per_capita", 50000.0],
        ["510100", 2010, "gdp_per_capita", 40000.0],
        ["510100", 2015, "gdp_per_capita", 60000.0],
    ]
    assert any("'2020年': row 2" in a for a in res.report.actions)  # the empty cell
    rows[2][2] = "abc"
    with pytest.raises(ValidationError, match=r"row 3, column '2015年': non-numeric value 'abc'"):
        read_panel(write_csv(tmp_path / "q.csv", rows), indicator="gdp_per_capita")  # no warning
    with pytest.raises(AggloInputError, match=r"indicator='gdp_pcx' is not in the registry"):
        read_panel(tmp_path / "q.csv", indicator="gdp_pcx")
    with pytest.raises(AggloInputError, match="expects a table with years across"):
        read_panel(write_csv(tmp_path / "r.csv", [["adcode", "year", "gdp"]]), indicator="gdp")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("人均GDP/元", "gdp_per_capita"),
        ("城镇化率/%", "urbanization_rate"),
        ("公路网密度 单位:km/100km2", "road_density"),
        ("urban/rural disposable income ratio", "income_ratio"),
        ("GDP (亿元)", "gdp"),
        ("ＰＭ２．５", "pm25"),  # full-width
        ("人均GDP\n(元)", "gdp_per_capita"),  # line break in an Excel header
        ("克鲁格曼专业化指数（index (0-2)）", "krugman_index"),
    ],
)
def test_header_forms(label, expected):
    assert registry_column(label) == expected


def test_year_problem_names_the_files_year_column(tmp_path):
    rows = [["城市", "年份", "gdp"], ["成都", "20l0", "1"]]
    with pytest.raises(
        ValidationError, match=r"row 2, column '年份': year '20l0' is not an integer"
    ):
        read_panel(write_csv(tmp_path / "p.csv", rows))


def test_every_bundled_city_matches_by_name_stem_and_code(cities, matcher):
    for code, name in zip(cities["adcode"], cities["name_zh"], strict=True):
        assert matcher.match_name(name).adcode == code, name
        assert matcher.match_name(name_stem(name)).adcode == code, name_stem(name)
        assert (
            matcher.match_name(
                f"{cities.set_index('adcode').loc[code, 'province_zh']}{name}"
            ).adcode
            == code
        )
        assert matcher.match_adcode(int(code)).adcode == code
        assert matcher.match_adcode(float(code)).adcode == code
        if name.endswith("自治州"):
            assert matcher.match_name(name_stem(name) + "州").adcode == code, name


def test_metadata_sidecar(tmp_path):
    write_csv(tmp_path / "mine.csv", [[*HEAD, "gdp"], ["510100", "2010", "1"]])
    write_csv(
        tmp_path / "emp.csv", [["adcode", "year", "sector", "employment"], [510100, 2010, "a", 2]]
    )
    (tmp_path / "mine.json").write_text(
        json.dumps({"data_status": "synthetic", "employment": "emp.csv"}), encoding="utf-8"
    )
    res = read_panel(tmp_path / "mine.csv")
    assert res.synthetic is True and "metadata" in res.report.warnings[0]
    assert res.employment.values.tolist() == [["510100", 2010, "a", 2.0]]
    (tmp_path / "mine.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AggloInputError, match=r"mine\.json: invalid JSON metadata"):
        read_panel(tmp_path / "mine.csv")


def test_panel_options_validated_and_columns_file(tmp_path):
    from agglo.io.panel import PanelOptions

    with pytest.raises(ValidationError, match=r"panel\.plausibility must be one of warn, error"):
        PanelOptions(plausibility="loud")
    with pytest.raises(ValidationError, match=r"panel\.year is not an option \(did you mean"):
        read_panel(DEMO_PANEL, year=[2010])
    mapping = write_csv(tmp_path / "cols.csv", [["column", "target"], ["my_col", "人均GDP"],
                                                ["junk", ""]])  # fmt: skip
    path = write_csv(tmp_path / "p.csv", [[*HEAD, "my_col", "junk"], ["510100", "2010", "7", "x"]])
    res = read_panel(path, PanelOptions(columns_file=str(mapping)))
    assert res.panel.values.tolist() == [["510100", 2010, "gdp_per_capita", 7.0]]
    # the columns mapping wins over the file
    res = read_panel(path, PanelOptions(columns_file=str(mapping), columns={"my_col": "gdp"}))
    assert res.panel["indicator"].tolist() == ["gdp"]
    assert PanelOptions.from_dict({"years": [2010, 2015]}).years == (2010, 2015)


def test_empty_result_names_the_filter(tmp_path):
    path = write_csv(tmp_path / "p.csv", [["city", "year", "gdp", "x"], ["北京", "2010", "1", "2"]])
    with pytest.raises(AggloInputError, match="on_unknown_city='drop' dropped every row"):
        read_panel(path, on_unknown_city="drop", ignore_unknown=True)
    path = write_csv(tmp_path / "q.csv", [["city", "year", "x"], ["成都", "2010", "2"]])
    with pytest.raises(AggloInputError, match="ignore_unknown=True dropped 1 column"):
        read_panel(path, ignore_unknown=True)


def _indicator_provenance_per_value(panel: pd.DataFrame) -> pd.DataFrame:
    """indicator_provenance as first written: statuses and texts taken value by value."""
    from agglo.io.panel import READABLE, joined_status, value_status

    rows = []
    order = {v: i for i, v in enumerate(READABLE)}
    labelled = panel[panel["value"].notna()] if "value" in panel else panel
    for ind, labels in labelled.groupby("indicator")["provenance"]:
        counts = labels.map(value_status).value_counts()
        rows.append(
            {
                "indicator": ind,
                "data_status": joined_status(labels),
                "n_values": len(labels),
                "n_real": int(counts.get("real", 0)),
                "n_interpolated": int(counts.get("interpolated", 0)),
                "n_synthetic": int(counts.get("synthetic", 0)),
                "n_other": int(
                    len(labels)
                    - counts.reindex(["real", "interpolated", "synthetic"]).fillna(0).sum()
                ),
                "sources": "; ".join(sorted(set(labels.astype(str)))),
            }
        )
    out = pd.DataFrame(rows, columns=list(rows[0]))
    return out.sort_values("indicator", key=lambda s: s.map(order).fillna(len(order))).reset_index(
        drop=True
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_indicator_provenance_equals_counting_value_by_value(seed):
    from agglo.io.panel import indicator_provenance

    rng = np.random.default_rng(seed)
    n = 500
    labels = np.array(
        ["real:census-2010", "interpolated:census-2010-2020", "synthetic", "imputed:drop",
         "computed:x", "odd", "real:yearbook"], dtype=object
    )  # fmt: skip
    panel = pd.DataFrame(
        {
            "indicator": rng.choice(["pm25", "hsr", "gdp", "population", "zz_extra", "aa_x"], n),
            "value": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
            "provenance": labels[rng.integers(0, len(labels), n)],
        }
    )
    pd.testing.assert_frame_equal(
        indicator_provenance(panel), _indicator_provenance_per_value(panel)
    )
