"""HSR access: date parsing, the real messy railways table, name matching, spatial forms."""

from __future__ import annotations

import logging

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from agglo.errors import AggloInputError, ValidationError
from agglo.measures.hsr import hsr_access, match_city_names, parse_opening_date, read_railways

YEARS = [2010, 2015, 2020]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2011.6.30", "2011-06-30"),
        ("2011.6", "2011-06-01"),
        ("2011", "2011-01-01"),
        ("2011-06-30", "2011-06-30"),
        ("2011/6/30", "2011-06-30"),
        ("2011年6月30日", "2011-06-30"),
        ("2011年6月", "2011-06-01"),
        ("2011年", "2011-01-01"),
        (" 2012.12.26 ", "2012-12-26"),
        (2013, "2013-01-01"),
        (2013.0, "2013-01-01"),
        (pd.Timestamp("2014-07-01"), "2014-07-01"),
    ],
)
def test_parse_opening_date_forms(text, expected):
    assert parse_opening_date(text) == pd.Timestamp(expected)


@pytest.mark.parametrize("text", ["", "NULL", "N/A", None, float("nan")])
def test_parse_opening_date_missing(text):
    assert parse_opening_date(text) is pd.NaT


def test_parse_opening_date_errors():
    with pytest.raises(AggloInputError, match="cannot read the date 'June 2011'"):
        parse_opening_date("June 2011")
    with pytest.raises(AggloInputError, match=r"impossible date '2011\.2\.30'"):
        parse_opening_date("2011.2.30")


# ---------------------------------------------------------------------------------------
# the real RailwayVIS table (../shared/data, tests only)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def railways(shared_data):
    d = shared_data / "railways"
    return read_railways(d / "railways.csv", station_to_city=d / "station2city.json")


def test_real_railways_table_parses(railways, shared_data):
    raw = (shared_data / "railways" / "railways.csv").read_bytes().decode("gbk").splitlines()
    assert railways.attrs["encoding"] == "gb18030"  # GBK detected (UTF-8 fails first)
    assert railways["row"].nunique() == len(raw) - 1 == 249  # every data row kept
    jh = railways[railways["line"] == "京沪高铁"]
    # 北京南-天津南-德州东-济南西-曲阜东-徐州东-蚌埠南-南京南-常州北-苏州北-上海虹桥
    assert len(jh) == 11 and jh["station"].iloc[-1] == "上海虹桥"
    assert (jh["opened"] == pd.Timestamp("2011-06-30")).all() and jh["is_hsr"].all()
    assert jh.set_index("station").loc["上海虹桥", "city"] == "上海"  # station2city.json
    # 途径站点 NULL -> the termini
    qs = railways[railways["line"] == "京哈线-秦沈铁路"]
    assert qs["station"].tolist() == ["秦皇岛", "沈阳北"]
    # N/A speed on a conventional line -> NaN speed, not HSR (type 普速)
    js = railways[railways["line"] == "京哈线-京沈段"]
    assert js["speed_kmh"].isna().all() and not js["is_hsr"].any()
    # 广深港: typed 高速铁路 but 160 km/h -> not HSR by speed, HSR by type
    assert not railways.loc[railways["line"] == "广深港高速线", "is_hsr"].any()


def test_rule_type_and_threshold(shared_data):
    p = shared_data / "railways" / "railways.csv"
    by_type = read_railways(p, rule="type")
    assert by_type.loc[by_type["line"] == "广深港高速线", "is_hsr"].all()
    strict = read_railways(p, min_speed_kmh=300)
    # 合宁 (250 km/h) no longer counts; 京沪高铁 (350) does
    assert not strict.loc[strict["line"].str.contains("合宁"), "is_hsr"].any()
    assert strict.loc[strict["line"] == "京沪高铁", "is_hsr"].all()
    with pytest.raises(
        AggloInputError, match=r"rule must be one of speed, type, either; got 'fast'"
    ):
        read_railways(p, rule="fast")


def test_real_railways_give_hsr_from_the_first_opening_year(railways, cities, counties):
    out = hsr_access(railways, cities, YEARS, counties=counties)
    got = out.set_index(["adcode", "year"])
    first = out.drop_duplicates("adcode").set_index("adcode")["first_opened_year"]
    # read by hand from railways.csv:
    # 南京/合肥: 合宁铁路 (250 km/h) 南京南-合肥南 opened 2008.4.18
    assert first["320100"] == 2008 and first["340100"] == 2008
    # 蚌埠: 京沪高铁 2011.6.30 (蚌埠南) before 合蚌高铁 2012.10.16
    assert first["340300"] == 2011
    assert got.loc[("340300", 2010), "hsr"] == 0 and got.loc[("340300", 2015), "hsr"] == 1
    # 淮南: 合蚌高铁 2012.10.16 at 淮南东 (station2city maps it to 淮南)
    assert first["340400"] == 2012
    # 绵阳: station 江油 (a county-level city of 绵阳) on 西成高铁-江成段, 2014.12.20
    assert first["510700"] == 2014
    # 宣城: 京港高铁-合湖段 2020.6.28
    assert first["341800"] == 2020 and got.loc[("341800", 2015), "hsr"] == 0
    assert got.loc[("341800", 2020), "hsr"] == 1
    # 丽江 has no line >= 250 km/h in the table
    assert pd.isna(first["530700"]) and got.loc[("530700", 2020), "hsr"] == 0
    # flags never switch off
    assert (out.sort_values("year").groupby("adcode")["hsr"].diff().fillna(0) >= 0).all()
    # stations outside the Yangtze belt are reported, not silently matched
    assert "北京" in out.attrs["unmatched"]


# ---------------------------------------------------------------------------------------
# synthetic forms
# ---------------------------------------------------------------------------------------

CITIES = gpd.GeoDataFrame(
    {"adcode": ["A", "B", "C"], "name_zh": ["甲市", "乙市", "丙丁彝族自治州"]},
    geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(2, 0, 3, 1)],
    crs=4326,
)


def _flags(out: pd.DataFrame) -> dict[str, list[int]]:
    return {k: g.sort_values("year")["hsr"].tolist() for k, g in out.groupby("adcode")}


def test_stations_with_coordinates_point_in_polygon():
    st = pd.DataFrame(
        {
            "station": ["甲东", "甲西", "乙南", "远方"],
            "lon": [0.5, 0.2, 1.5, 50.0],
            "lat": [0.5, 0.7, 0.5, 50.0],
            "opened": ["2016.1.1", "2012年12月26日", "2021", "2009"],
        }
    )
    out = hsr_access(st, CITIES, YEARS)
    # A: first station 2012 -> 0,1,1; B opens 2021 -> never within the years; C none
    assert _flags(out) == {"A": [0, 1, 1], "B": [0, 0, 0], "C": [0, 0, 0]}
    first = out.drop_duplicates("adcode").set_index("adcode")
    assert first.loc["A", "first_opened_year"] == 2012 and first.loc["A", "first_station"] == "甲西"
    assert first.loc["B", "first_opened_year"] == 2021
    assert out.attrs["unmatched"] == ["远方"]


def test_geodataframe_points_in_projected_crs():
    st = gpd.GeoDataFrame(
        {"station": ["丙"], "opened": ["2015-06-30"]},
        geometry=[shapely.Point(2.5, 0.5)],
        crs=4326,
    ).to_crs(3857)
    assert _flags(hsr_access(st, CITIES, YEARS))["C"] == [0, 1, 1]


def test_city_names_adcodes_and_filters(caplog):
    st = pd.DataFrame(
        {
            "city": ["甲", "乙市", "丙丁", "戊己", "甲"],
            "opened": ["2011.6", "2010.12.28", "2019", "2010", None],
            "speed_kmh": [350, 200, 250, 350, 350],
        }
    )
    with caplog.at_level(logging.WARNING, logger="agglo.measures.hsr"):
        out = hsr_access(st, CITIES, YEARS)
    # 乙 is 200 km/h -> ignored; 丙丁 matches 丙丁彝族自治州 by prefix; 戊己 is unknown
    assert _flags(out) == {"A": [0, 1, 1], "B": [0, 0, 0], "C": [0, 0, 1]}
    assert out.attrs["unmatched"] == ["戊己"]
    assert "1 row(s) without an opening date" in caplog.text
    by_code = pd.DataFrame({"adcode": ["B"], "opened": ["2010.7.1"], "is_hsr": [True]})
    assert _flags(hsr_access(by_code, CITIES, YEARS))["B"] == [1, 1, 1]
    not_hsr = by_code.assign(is_hsr=False)
    assert _flags(hsr_access(not_hsr, CITIES, YEARS))["B"] == [0, 0, 0]


def test_line_geometries_count_crossed_cities():
    line = gpd.GeoDataFrame(
        {"opened": ["2013.12.28"], "speed_kmh": [300]},
        geometry=[shapely.LineString([(0.5, 0.5), (1.5, 0.5)])],
        crs=4326,
    )
    assert _flags(hsr_access(line, CITIES, YEARS)) == {
        "A": [0, 1, 1],
        "B": [0, 1, 1],
        "C": [0, 0, 0],
    }


def test_match_city_names_order():
    cities = pd.DataFrame(
        {"adcode": ["520500", "522300"], "name_zh": ["毕节市", "黔西南布依族苗族自治州"]}
    )
    counties = pd.DataFrame(
        {"name_zh": ["黔西市", "七星关区"], "city_adcode": ["520500", "520500"]}
    )
    # 黔西 is a county of 毕节, not a prefix of 黔西南州; 七星关 via the county; 毕节东 drops 东
    got = match_city_names(["黔西", "七星关", "毕节东", "黔西南", "毕"], cities, counties=counties)
    assert got.tolist() == ["520500", "520500", "520500", "522300", None]


def test_bad_inputs_are_reported():
    with pytest.raises(ValidationError, match=r"row 2, column opened: cannot read the date 'soon'"):
        hsr_access(pd.DataFrame({"city": ["甲", "乙"], "opened": ["2011", "soon"]}), CITIES, YEARS)
    with pytest.raises(AggloInputError, match="need an opening-date column"):
        hsr_access(pd.DataFrame({"city": ["甲"]}), CITIES, YEARS)
    with pytest.raises(AggloInputError, match="years is empty"):
        hsr_access(pd.DataFrame({"city": ["甲"], "opened": ["2011"]}), CITIES, [])
    with pytest.raises(AggloInputError, match="city-name column"):
        hsr_access(pd.DataFrame({"foo": ["甲"], "opened": ["2011"]}), CITIES, YEARS)


def test_railway_table_problems_listed_together(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(
        "线路,线路类型,现设计时速,建成年份,起点,终点,途径站点\n"
        "甲乙高铁,高速铁路,350,2012.13.1,甲,乙,甲-乙\n"
        "乙丙高铁,高速铁路,350,someday,乙,丙,乙-丙\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match=r"2 problem\(s\)") as info:
        read_railways(p)
    assert "row 1 (甲乙高铁)" in str(info.value) and "row 2 (乙丙高铁)" in str(info.value)
    q = tmp_path / "q.csv"
    q.write_text("name,when\nx,2011\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="no opening-date column"):
        read_railways(q)


def _gbk_table(tmp_path):
    p = tmp_path / "lines.csv"
    p.write_bytes(
        (
            "线路,线路类型,现设计时速,建成年份,起点,终点,途径站点,,\n"
            "沪宁城际,高速铁路,300,2010.7.1,上海,南京,上海-苏州-常州-南京,,\n"
            "宁安城际,高速铁路,250,2015.12.6,南京南,安庆,南京南-芜湖-铜陵-安庆,,\n"
            "宁启铁路,快速铁路,200,2015.7.1,南京,南通,南京-海安-南通,,\n"
        ).encode("gbk")
    )
    return p


def test_cli_hsr(tmp_path, capsys):
    from agglo.cli import main

    out = tmp_path / "hsr.csv"
    code = main(["hsr", "--stations", str(_gbk_table(tmp_path)), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    df = pd.read_csv(out, dtype={"adcode": str}).set_index(["adcode", "year"])
    assert df.loc[("320500", 2010), "hsr"] == 1  # 苏州 on 沪宁城际 2010
    assert df.loc[("340800", 2010), "hsr"] == 0 and df.loc[("340800", 2015), "hsr"] == 1  # 安庆
    assert df.loc[("320600", 2020), "hsr"] == 0  # 南通 only on a 200 km/h line
    assert "of 130 cities have HSR by 2020" in capsys.readouterr().out


def test_pipeline_stage_replaces_panel_hsr(tmp_path):
    from agglo.config import RunConfig
    from agglo.pipeline import run

    cfg = RunConfig(stations=_gbk_table(tmp_path), sections={"hsr": {"min_speed_kmh": 250}})
    ctx = run(cfg, tmp_path / "o", stages=("panel",))
    h = ctx.panel[ctx.panel["indicator"] == "hsr"].set_index(["adcode", "year"])["value"]
    assert h[("340800", 2010)] == 0 and h[("340800", 2015)] == 1
    assert h[("310100", 2010)] == 1
    assert "first station" in ctx.provenance["hsr"]
    assert "hsr" in ctx.tables
    bad = RunConfig(stations=_gbk_table(tmp_path), sections={"hsr": {"speed": 250}})
    with pytest.raises(AggloInputError, match=r"hsr.speed is not an option"):
        run(bad, tmp_path / "o2", stages=("panel",))


def test_pipeline_stage_without_stations_keeps_panel(tmp_path):
    from agglo.pipeline import run

    ctx = run(out_dir=tmp_path / "o", stages=("inputs",))
    before = ctx.panel[ctx.panel["indicator"] == "hsr"].reset_index(drop=True)
    ctx2 = run(out_dir=tmp_path / "o2", stages=("panel",))
    after = ctx2.panel[ctx2.panel["indicator"] == "hsr"].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert "hsr" not in ctx2.tables


def test_city_hsr_result_tables_values_and_summary(tmp_path):
    from agglo.measures.hsr import HSROptions, city_hsr, read_stations

    path = tmp_path / "stations_synthetic.csv"
    pd.DataFrame(
        {
            "station": ["甲东", "乙南"],
            "lon": [0.5, 1.5],
            "lat": [0.5, 0.5],
            "opened": ["2012", "2021"],
        }
    ).to_csv(path, index=False)
    table = read_stations(path)
    assert table.attrs == {"source": "stations_synthetic.csv", "synthetic": True}
    res = city_hsr(table, CITIES, HSROptions(), years=YEARS)
    ref = hsr_access(table, CITIES, YEARS)
    assert res.values["value"].tolist() == ref["hsr"].tolist()
    out = res.tables()["hsr"]
    assert out.columns[1] == "name_zh"
    assert (
        out["name_zh"].tolist() == ref["adcode"].map(CITIES.set_index("adcode")["name_zh"]).tolist()
    )
    assert res.synthetic and "SYNTHETIC" in res.source
    assert res.summary_lines() == [
        f"HSR (stations_synthetic.csv): 1 of 3 cities have a station by {max(YEARS)}"
    ]
