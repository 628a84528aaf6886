"""Reading yearbook tables as analysts have them: the real messy workbook in ../shared, a
SYNTHETIC national-database export (generated here), header aliases, layouts, plausibility."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agglo.errors import AggloDataWarning, AggloInputError, ValidationError
from agglo.io.panel import header_parts, read_panel, registry_column
from agglo.reference.boundaries import load_membership
from agglo.reference.names import load_city_aliases, match_cities

WORKBOOK = ("yearbook", "urban_dataset_2008_2019.xlsx")


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


# ---------------------------------------------------------------------------------------
# the real workbook (skipped when ../shared is absent)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workbook(shared_data):
    path = shared_data.joinpath(*WORKBOOK)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AggloDataWarning)
        res = read_panel(path, on_unknown_city="drop", ignore_unknown=True)
    return path, res, [str(w.message) for w in caught]


def test_workbook_headers_map_to_the_right_variables(workbook):
    path, res, _ = workbook
    # the real headers, and the variable each one is (worked out by reading them)
    expected = {
        "人均地区生产总值全市元": "gdp_per_capita",
        "一般工业固体废物综合利用率": "solid_waste_utilization",
        "生活垃圾无害化处理率全市": "garbage_treatment_rate",
        "城乡居民人均可支配收入比": "income_ratio",
        "户籍人口万人": "registered_population",
        "城镇居民人均可支配收入": "urban_disposable_income",
        "农村居民人均可支配收入": "rural_disposable_income",
        "医院床位数全市张": "hospital_beds",
        "污水处理厂集中处理率全市": "sewage_treatment_rate",
        "地区生产总值增长率全市": "gdp_growth",
    }
    headers = pd.read_excel(path, nrows=0).columns.tolist()
    assert set(expected) <= set(headers)
    assert {h: registry_column(h) for h in expected} == expected
    have = set(res.panel["indicator"]) | set(res.extras["indicator"])
    assert set(expected.values()) <= have
    # index indicators in .panel, the rest in .extras
    assert set(res.panel["indicator"]) == {
        "gdp_per_capita", "solid_waste_utilization", "garbage_treatment_rate", "income_ratio"
    }  # fmt: skip


def test_workbook_flags_rescaled_rates_and_zero_incomes(workbook):
    path, res, texts = workbook
    flags = pd.DataFrame(res.report.flags)
    scale = flags[flags["check"] == "column_scale"].set_index("column")["factor"]
    # rates stored ÷ 10,000 (0.00876 = 87.6 %): median of the column well under 0.02
    raw = pd.read_excel(path)
    for col in (
        "一般工业固体废物综合利用率",
        "生活垃圾无害化处理率全市",
        "污水处理厂集中处理率全市",
    ):
        assert raw[col].median() < 0.02
        assert scale[col] == 10_000
    # zero rural incomes: every zero cell in the file is flagged by row
    kept = match_cities(raw["城市"], raw["年份"], cities=_yangtze_cities())["status"] == "matched"
    zero_rows = set((raw.index[(raw["农村居民人均可支配收入"] == 0) & kept] + 2).tolist())
    assert len(zero_rows) > 100
    rural = flags[(flags["column"] == "农村居民人均可支配收入") & (flags["value"] == 0)]
    assert set(rural["row"]) == zero_rows
    assert any("plausibility range, column '农村居民人均可支配收入'" in t for t in texts)
    # the income ratio of 2,599 (张家界 2018) is flagged as a single-city scale outlier
    odd = flags[(flags["indicator"] == "income_ratio") & (flags["check"] == "city_scale")]
    assert odd["value"].round(2).tolist() == [2599.42] and odd["adcode"].tolist() == ["430800"]
    frame = res.report.to_frame()
    assert len(frame[frame["kind"].str.startswith("flag:")]) == len(flags)


def test_workbook_every_city_matched_or_named(workbook):
    path, res, texts = workbook
    names = pd.read_excel(path, usecols=["城市"])["城市"].unique().tolist()
    assert len(names) == 298
    matched = set(res.panel["adcode"])
    text = "\n".join(texts)
    by_name = match_cities(names, [2019] * len(names), cities=_yangtze_cities())
    for name, code, status in by_name[["value", "adcode", "status"]].itertuples(index=False):
        if status == "matched":
            assert code in matched, name
        else:  # dropped: named in a warning
            assert name in text, (name, status)
    counts = by_name["status"].value_counts().to_dict()
    assert counts == {"matched": 110, "outside": 187, "abolished": 1}  # 莱芜 (merged 2019)
    assert "dropped 187 prefecture-level unit(s) outside the city table" in text


def _yangtze_cities() -> pd.DataFrame:
    from agglo.reference.boundaries import load_cities

    return pd.DataFrame(load_cities().drop(columns="geometry"))


# ---------------------------------------------------------------------------------------
# a SYNTHETIC national database export: 300 units x 1990-2021, English names, codes with
# the municipalities at province level, abolished units
# ---------------------------------------------------------------------------------------

MUNICIPALITY_AT_PROVINCE = {"310100": "310000", "500000": "500000", "110100": "110000",
                            "120100": "120000"}  # fmt: skip
ENGLISH = {
    "gdp_per_capita": "GDP per capita (yuan)",
    "urbanization_rate": "Urbanization rate (%)",
    "avg_wage": "Average wage (yuan)",
    "pm25": "PM2.5 (ug/m3)",
}


def national_table_synthetic(seed: int = 7) -> tuple[pd.DataFrame, list[str]]:
    """300 units x 32 years of invented values (SYNTHETIC) with the codes a national export
    uses; returns the table and the 84 member adcodes (as in the bundled city table)."""
    rng = np.random.default_rng(seed)
    members = sorted(load_membership()["adcode"].unique())
    aliases = load_city_aliases()
    current = aliases[(aliases["status"] == "current") & (aliases["adcode"] != "")]
    others = sorted(set(current["adcode"]) - set(members) - {"500100", "310100"})
    codes = [MUNICIPALITY_AT_PROVINCE.get(c, c) for c in members]
    codes += [MUNICIPALITY_AT_PROVINCE.get(c, c) for c in others if c not in ("110100", "120100")][
        : 300 - len(codes) - 4
    ]
    codes += ["110000", "120000", "341400", "371200"]  # 巢湖 until 2010, 莱芜 until 2018
    assert len(set(codes)) == 300
    rows = []
    for code in codes:
        last = {"341400": 2010, "371200": 2018}.get(code, 2021)
        base = rng.uniform(0.5, 2.0)
        for year in range(1990, last + 1):
            growth = 1.08 ** (year - 1990)
            rows.append(
                {
                    "Code": code,
                    "Year": year,
                    ENGLISH["gdp_per_capita"]: round(5000 * base * growth, 1),
                    ENGLISH["urbanization_rate"]: round(min(95.0, 20 + base * (year - 1980)), 2),
                    ENGLISH["avg_wage"]: round(8000 * base * growth, 1),
                    ENGLISH["pm25"]: round(20 + 20 * base + rng.uniform(0, 5), 1),
                    "Remarks": "synthetic",
                }
            )
    return pd.DataFrame(rows), members


@pytest.fixture(scope="module")
def national(tmp_path_factory):
    table, members = national_table_synthetic()
    path = tmp_path_factory.mktemp("nat") / "national_export_synthetic.csv"
    table.to_csv(path, index=False)
    return path, table, members


def test_national_synthetic_keeps_all_members_and_reports_the_rest_in_one_line(national):
    path, table, members = national
    with pytest.warns(AggloDataWarning) as rec:
        res = read_panel(path, on_unknown_city="drop", columns={"Remarks": None})
    assert res.synthetic
    assert set(members) <= set(res.panel["adcode"])  # Shanghai (310000) and Chongqing too
    assert res.panel["year"].min() == 1990 and res.panel["year"].max() == 2021
    texts = [str(w.message) for w in rec]
    outside = [t for t in texts if "outside the city table" in t]
    # 300 codes - 84 members - 2 abolished - Yangtze non-members kept = the rest, in one line
    n_outside = 300 - 2 - res.panel["adcode"].nunique()
    assert len(outside) == 1 and f"dropped {n_outside} prefecture-level unit(s)" in outside[0]
    assert sum("abolished" in t for t in texts) == 2  # 巢湖, 莱芜: one line each
    # values come through unchanged: Shanghai's 2000 GDP per capita
    sh = table[(table["Code"] == "310000") & (table["Year"] == 2000)][ENGLISH["gdp_per_capita"]]
    got = res.panel.query("adcode == '310100' and year == 2000 and indicator == 'gdp_per_capita'")
    assert got["value"].tolist() == sh.tolist()


def test_national_years_select_and_nonmember_rows_do_not_change_the_index(national, tmp_path):
    from agglo.analysis.index import integration_index

    path, table, members = national
    with pytest.warns(AggloDataWarning):
        res = read_panel(path, on_unknown_city="drop", years=[2010, 2015, 2020],
                         columns={"Remarks": None})  # fmt: skip
    assert sorted(res.panel["year"].unique()) == [2010, 2015, 2020]
    member_rows = table[table["Code"].isin([MUNICIPALITY_AT_PROVINCE.get(c, c) for c in members])]
    small = write_csv(tmp_path / "members_only_synthetic.csv",
                      [member_rows.columns.tolist(), *member_rows.values.tolist()])  # fmt: skip
    res_small = read_panel(small, years=[2010, 2015, 2020], columns={"Remarks": None})
    membership = load_membership()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = integration_index(res.panel, membership).composite
        b = integration_index(res_small.panel, membership).composite
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


# ---------------------------------------------------------------------------------------
# headers and layouts, each failure of the issue as a fixture
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("人均地区生产总值全市元", "gdp_per_capita"),
        ("人均地区生产总值（全市）（元）", "gdp_per_capita"),
        ("一般工业固体废物综合利用率(%)", "solid_waste_utilization"),
        ("生活垃圾无害化处理率全市\n资料来源: 中国城市建设统计年鉴", "garbage_treatment_rate"),
        ("户籍人口万人", "registered_population"),
        ("GDP per capita (yuan)", "gdp_per_capita"),
        ("Urbanization rate (%)", "urbanization_rate"),
        ("每万人医疗卫生机构床位数（张）", "hospital_beds_per_10k"),
    ],
)
def test_yearbook_headers(label, expected):
    assert registry_column(label) == expected


def test_header_parts_records_area_and_unit():
    assert header_parts("医院床位数市辖区张") == ("医院床位数", "urban_districts", "张")
    assert header_parts("人均地区生产总值（全市）（元）") == (
        "人均地区生产总值",
        "whole_city",
        "元",
    )


def test_whole_city_preferred_over_districts_and_recorded(tmp_path):
    rows = [["城市", "年份", "人均地区生产总值市辖区元", "人均地区生产总值全市元"],
            ["成都", "2010", "50000", "40000"]]  # fmt: skip
    res = read_panel(write_csv(tmp_path / "a.csv", rows))
    assert res.panel["value"].tolist() == [40000.0]
    assert any("dropped '人均地区生产总值市辖区元'" in a for a in res.report.actions)
    res = read_panel(tmp_path / "a.csv", area="urban_districts")
    assert res.panel["value"].tolist() == [50000.0]


def test_title_line_and_two_header_rows(tmp_path):
    rows = [["2010年长江经济带城市主要指标", "", "", ""],
            ["城市", "年份", "人均地区生产总值", ""],
            ["", "", "全市", "市辖区"],
            ["成都", "2010", "40000", "50000"],
            ["襄阳", "2010", "30000", "35000"]]  # fmt: skip
    res = read_panel(write_csv(tmp_path / "t.csv", rows))
    assert res.panel.sort_values("adcode")["value"].tolist() == [30000.0, 40000.0]
    acts = "\n".join(res.report.actions)
    assert "skipped 1 line(s) above the header (detected)" in acts and "2 header rows" in acts
    # the explicit override gives the same
    res2 = read_panel(tmp_path / "t.csv", skiprows=1, header=2)
    pd.testing.assert_frame_equal(res.panel, res2.panel)


def test_empty_file_and_readme_are_clear_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(AggloInputError, match="the file is empty"):
        read_panel(tmp_path / "empty.csv")
    (tmp_path / "README.md").write_text("# a readme\n", encoding="utf-8")
    with pytest.raises(AggloInputError, match=r"not a table \(expected .csv"):
        read_panel(tmp_path / "README.md")
    (tmp_path / "notes.csv").write_text("just some words\nand more\n", encoding="utf-8")
    with pytest.raises(AggloInputError, match="no year column"):
        read_panel(tmp_path / "notes.csv")


# ---------------------------------------------------------------------------------------
# plausibility
# ---------------------------------------------------------------------------------------


def _cities(n: int = 6) -> list[str]:
    return ["成都", "襄阳", "南京", "合肥", "武汉", "长沙", "南昌", "杭州"][:n]


def test_fraction_rates_single_city_scale_and_policy(tmp_path):
    rows = [["城市", "年份", "gas_coverage"]]
    rows += [[c, "2010", v] for c, v in zip(_cities(), [77, 80, 0.77, 90, 85, 70], strict=True)]
    with pytest.warns(AggloDataWarning, match=r"city_scale.*南京市 2010: 0\.77 .*multiply by 100"):
        res = read_panel(write_csv(tmp_path / "r.csv", rows))
    (flag,) = res.report.flags
    assert flag["factor"] == 100 and flag["row"] == 4 and flag["adcode"] == "320100"
    with pytest.raises(ValidationError, match=r"row 4, column 'gas_coverage', 320100 南京市"):
        read_panel(tmp_path / "r.csv", plausibility="error")
    res = read_panel(tmp_path / "r.csv", plausibility="off")
    assert res.report.flags == []


def test_whole_column_scale_errors(tmp_path):
    # a population column in millions (median 8.5): suggested factor 100 (-> 10k persons)
    rows = [["城市", "年份", "population"]]
    rows += [[c, "2010", v] for c, v in zip(_cities(), [16, 6, 8.5, 9, 11, 8], strict=True)]
    with pytest.warns(AggloDataWarning, match=r"column_scale.*median 8\.75 .*multiply by 100"):
        res = read_panel(write_csv(tmp_path / "p.csv", rows))
    assert res.report.flags[0]["factor"] == 100
    # rates as fractions (0.77 for 77 %): factor 100
    rows = [["城市", "年份", "gas_coverage"]]
    rows += [
        [c, "2010", v] for c, v in zip(_cities(), [0.7, 0.8, 0.77, 0.9, 0.85, 0.6], strict=True)
    ]
    with pytest.warns(AggloDataWarning, match=r"column_scale.*multiply by 100\b"):
        read_panel(write_csv(tmp_path / "f.csv", rows))


def test_jumps_and_absurd_values(tmp_path):
    rows = [["城市", "年份", "avg_wage"]]
    for c in _cities():
        rows += [[c, "2010", "50000"], [c, "2015", "60000"]]
    rows[-1][2] = "10216"  # 长沙 60000 expected, ÷4.9 after 2010
    rows.append(["杭州", "2010", "1e300"])
    with pytest.warns(AggloDataWarning) as rec:
        res = read_panel(write_csv(tmp_path / "j.csv", rows))
    checks = sorted(f["check"] for f in res.report.flags)
    assert checks == ["absurd", "jump"]
    jump = next(f for f in res.report.flags if f["check"] == "jump")
    assert jump["adcode"] == "430100" and jump["year"] == 2015 and jump["value"] == 10216
    assert any("absurd" in str(w.message) and "杭州" in str(w.message) for w in rec)


def test_adding_nonmember_cities_or_unrelated_columns_never_changes_the_panel(tmp_path):
    base = [["adcode", "year", "gdp_per_capita"], ["510100", "2010", "40000"],
            ["420600", "2010", "30000"]]  # fmt: skip
    ref = read_panel(write_csv(tmp_path / "a.csv", base)).panel
    more = [[*base[0], "工业二氧化硫排放量全市吨"], *[[*r, "1.2"] for r in base[1:]],
            ["230900", "2010", "20000", "3"], ["110000", "2010", "90000", "4"]]  # fmt: skip
    with pytest.warns(AggloDataWarning):
        got = read_panel(
            write_csv(tmp_path / "b.csv", more), on_unknown_city="drop", ignore_unknown=True
        ).panel
    pd.testing.assert_frame_equal(ref, got)
    assert re.fullmatch(r"\d{6}", got["adcode"].iloc[0])


def test_national_synthetic_through_agglo_index_with_a_config_file_only(national, tmp_path):
    from agglo.cli import main

    path = national[0]
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[inputs]\npanel = "{path.as_posix()}"\nyears = [2010, 2015, 2020]\n\n'
        '[panel]\non_unknown_city = "drop"\ncolumns = { Remarks = "" }\n',
        encoding="utf-8",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AggloDataWarning)
        code = main(
            ["index", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-sensitivity"]
        )
    assert code == 0
    scores = pd.read_csv(tmp_path / "o" / "index_indicators.csv")
    assert set(scores["agglomeration_id"]) == {"yrd", "myr", "cy", "qz", "dz"}
    assert set(ENGLISH) <= set(scores["indicator"])  # the four English headers (+ road_density)
    assert sorted(scores["year"].unique()) == [2010, 2015, 2020]


# the grouped plausibility checks against the per-group loops they replaced


def _city_scale_loop(g: pd.DataFrame) -> list[tuple]:
    out = []
    for _, gy in g.groupby("year"):
        m = gy["value"][gy["value"] > 0].median()
        if not m or len(gy) < 5:
            continue
        ratio = gy["value"] / m
        odd = (gy["value"] > 0) & ((ratio < 1 / 30) | (ratio > 30))
        out += [
            (r, float(q), float(m)) for r, q in zip(gy[odd].itertuples(), ratio[odd], strict=True)
        ]
    return out


def _robust_outliers_loop(g: pd.DataFrame, groups, threshold: float) -> list[tuple]:
    d = g.assign(group=g["adcode"].map(groups)).dropna(subset=["group"])
    out = []
    for _, gy in d.groupby(["group", "year"]):
        gy = gy[gy["value"].astype(float) > 0]
        if len(gy) < 5:
            continue
        t = np.log(gy["value"].astype(float))
        med = float(t.median())
        mad = max(float((t - med).abs().median()), 0.15)
        z = 0.6745 * (t - med) / mad
        far = z.abs() > threshold
        out += [
            (r, float(q), float(np.exp(med)))
            for r, q in zip(gy[far].itertuples(), z[far], strict=True)
        ]
    return out


def _plausibility_inputs(path: Path, monkeypatch, **kwargs) -> tuple[pd.DataFrame, dict]:
    from agglo.io import panel as panel_mod

    seen = {"cells": pd.DataFrame(), "groups": {}}
    real = panel_mod._plausibility

    def spy(cells, opts, matcher, report, groups=None):
        if len(cells) > len(seen["cells"]):  # the indicator table, not a side table
            seen.update(cells=cells.copy(), groups=dict(groups or {}))
        return real(cells, opts, matcher, report, groups)

    monkeypatch.setattr(panel_mod, "_plausibility", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_panel(path, **kwargs)
    return seen["cells"], seen["groups"]


def _assert_same_hits(fast: list[tuple], slow: list[tuple]) -> None:
    assert [(r.line, r.column, r.adcode, r.year) for r, _, _ in fast] == [
        (r.line, r.column, r.adcode, r.year) for r, _, _ in slow
    ]
    assert [(q, m) for _, q, m in fast] == [(q, m) for _, q, m in slow]  # exactly equal


@pytest.mark.parametrize("source", ["bundled", "workbook"])
def test_grouped_plausibility_checks_equal_the_loops(source, monkeypatch, request):
    from agglo.io.panel import _city_scale_outliers, _robust_outliers

    if source == "bundled":
        path = Path(__file__).parents[1] / "data" / "panel" / "demo_panel_synthetic.csv"
        cells, groups = _plausibility_inputs(path, monkeypatch)
    else:
        path = request.getfixturevalue("shared_data").joinpath(*WORKBOOK)
        cells, groups = _plausibility_inputs(
            path, monkeypatch, on_unknown_city="drop", ignore_unknown=True
        )
    assert groups and len(cells) > 1000
    rng = np.random.default_rng(14)
    # scale errors (×100, ÷100, ×0.001), zeros and a tied group, so every branch flags rows
    messy = cells.copy()
    values = messy["value"].astype(float).to_numpy()
    pick = rng.random(len(values))
    values = np.where(pick < 0.02, values * 100, values)
    values = np.where((pick >= 0.02) & (pick < 0.04), values / 100, values)
    values = np.where((pick >= 0.04) & (pick < 0.05), 0.0, values)
    messy["value"] = values
    n_hits = 0
    for frame in (cells, messy):
        for _, g in frame.groupby(["column", "key"], sort=False):
            fast, slow = _city_scale_outliers(g), _city_scale_loop(g)
            _assert_same_hits(fast, slow)
            for threshold in (5.0, 2.0):
                fast_z = _robust_outliers(g, groups, threshold)
                _assert_same_hits(fast_z, _robust_outliers_loop(g, groups, threshold))
                n_hits += len(fast_z)
            n_hits += len(fast)
    assert n_hits > 50  # the comparison saw flagged rows, not only empty lists
