"""Core-periphery in the run pipeline and on the command line (bundled synthetic demo panel)."""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from agglo.cli import main
from agglo.config import RunConfig
from agglo.errors import AggloDataWarning
from agglo.pipeline import run

FAST = {"coreperiphery": {"n_perm": 4, "restarts": 1}}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    out = tmp_path_factory.mktemp("cp") / "out"
    return run(RunConfig(sections=FAST), out, stages=("coreperiphery", "write"))


def test_stage_tables_cover_every_agglomeration_and_year(ctx):
    members = ctx.cities[ctx.cities["agglomeration_id"].notna()]
    sizes = members.groupby("agglomeration_id").size()
    long = ctx.tables["coreness"]
    for (agg, _year, method), g in long.groupby(["agglomeration_id", "year", "method"]):
        assert len(g) == sizes[agg]  # the demo panel has population and gdp for every member
        assert g["coreness"].max() == pytest.approx(1.0)
        assert g["core"].any() and not g["core"].all()
        if method == "discrete":
            assert set(g["coreness"]) <= {0.0, 1.0}
    keys = long[["agglomeration_id", "year", "method"]].drop_duplicates()
    assert len(keys) == 5 * len(ctx.years) * 2
    fit = ctx.tables["coreness_fit"]
    assert ((fit["p_value"] >= 1 / 5) & (fit["p_value"] <= 1)).all()  # n_perm = 4
    assert (fit["fit"].between(-1, 1)).all()
    types = ctx.tables["structure_type"]
    assert len(types) == 5 * len(ctx.years)
    assert set(types["structure_type"]) <= {"single core", "dumbbell", "gradient", "scattered"}
    assert any("Core-periphery" in s and "[SYNTHETIC" in s for s in ctx.summary)


def test_stage_city_system_matches_panel(ctx):
    pop = ctx.panel[ctx.panel["indicator"] == "population"]
    members = ctx.cities[ctx.cities["agglomeration_id"].notna()][["adcode", "agglomeration_id"]]
    expected = pop.merge(members, on="adcode").groupby(["agglomeration_id", "year"])["value"]
    system = ctx.tables["city_system"].set_index(["agglomeration_id", "year"])
    pd.testing.assert_series_equal(
        system["total"].sort_index(), expected.sum().sort_index(), check_names=False
    )
    largest = expected.max().sort_index()
    np.testing.assert_allclose(system["p1"].sort_index(), largest)


def test_stage_gaps_use_the_first_year_core_set(ctx):
    long = ctx.tables["coreness"]
    first = min(ctx.years)
    core0 = long[(long["method"] == "discrete") & (long["year"] == first)]
    gaps = ctx.tables["core_periphery_gaps"]
    pop = ctx.panel[ctx.panel["indicator"] == "population"].set_index(["adcode", "year"])["value"]
    last = max(ctx.years)
    for agg, g in core0.groupby("agglomeration_id"):
        core = g.loc[g["core"], "adcode"]
        peri = g.loc[~g["core"], "adcode"]
        ratio = (
            pop.loc[list(zip(core, [last] * len(core), strict=True))].mean()
            / pop.loc[list(zip(peri, [last] * len(peri), strict=True))].mean()
        )
        row = gaps[
            (gaps["agglomeration_id"] == agg)
            & (gaps["indicator"] == "population")
            & (gaps["year"] == last)
        ]
        assert row["ratio"].iloc[0] == pytest.approx(ratio)
    assert set(gaps["trend"].dropna()) <= {"polarising", "diffusing", "stable"}


def test_stage_layer_written(ctx):
    layer = ctx.layers["core_periphery"]
    assert len(layer) == ctx.cities["agglomeration_id"].notna().sum()
    for y in ctx.years:
        assert {f"coreness_{y}", f"core_{y}"} <= set(layer.columns)
    back = gpd.read_file(ctx.out_dir / "agglo.gpkg", layer="core_periphery")
    assert len(back) == len(layer)
    # per row: real census population and synthetic gdp as masses (issue 17)
    assert set(back["data_status"]) == {"partly synthetic"}
    table = pd.read_csv(ctx.out_dir / "tables" / "coreness_fit.csv")
    assert len(table) == len(ctx.tables["coreness_fit"])


def test_stage_skips_without_mass_indicator(tmp_path, caplog):
    cfg = RunConfig(sections={"coreperiphery": {"mass": ["population", "no_such_thing"]}})
    with caplog.at_level(logging.WARNING, logger="agglo"):
        ctx = run(cfg, tmp_path / "out", stages=("coreperiphery",))
    assert "core_periphery" not in ctx.layers
    assert any("lacks indicator(s) ['no_such_thing']" in r.getMessage() for r in caplog.records)


def test_stage_rejects_unknown_option(tmp_path):
    from agglo.errors import AggloInputError

    cfg = RunConfig(sections={"coreperiphery": {"bta": 2}})
    with pytest.raises(AggloInputError, match=r"coreperiphery\.bta is not an option"):
        run(cfg, tmp_path / "out", stages=("coreperiphery",))


def test_cli_coreperiphery(tmp_path, capsys):
    out = tmp_path / "cp"
    args = ["coreperiphery", "-a", "qz", "-y", "2020", "--n-perm", "3", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[SYNTHETIC] qz 2020 discrete: core" in printed
    fit = pd.read_csv(out / "coreness_fit.csv")
    assert fit[["agglomeration_id", "year"]].drop_duplicates().values.tolist() == [["qz", 2020]]
    assert set(fit["data_status"]) == {"partly synthetic"}  # census population, synthetic gdp
    layer = gpd.read_file(out / "core_periphery.gpkg")
    assert len(layer) == 6 and "coreness_2020" in layer.columns
    assert main(args) == 2  # outputs exist: --force needed
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "xx"], "unknown agglomeration(s) ['xx']"),
        (["--methods", "fuzzy"], "methods must be a list from"),
        (["-y", "1999"], "year(s) [1999] not in the panel"),
        (["--transform", "sqrt"], "transform must be one of"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path, capsys, args, message):
    code = main(["coreperiphery", "--n-perm", "0", "-o", str(tmp_path / "x"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_user_seat_table(tmp_path, capsys):
    # every qz seat placed at Guiyang's except one far away: distances change the network
    seats = tmp_path / "seats.csv"
    rows = [
        "adcode,lon,lat",
        "520100,106.63,26.65",
        "520300,106.93,27.73",
        "520400,105.95,26.25",
        "520500,105.29,27.30",
        "522600,107.98,26.58",
    ]
    seats.write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = ["coreperiphery", "-a", "qz", "-y", "2020", "--n-perm", "0", "--seats-file", str(seats)]
    # 522700 (Qiannan) has no seat in the table: it follows the seat rule, with a warning
    with pytest.warns(AggloDataWarning, match=r"covers 5 of 6 units.*\(522700\)"):
        assert main([*args, "-o", str(tmp_path / "a")]) == 0
    seats.write_text("\n".join([*rows, "522700,107.52,26.25"]) + "\n", encoding="utf-8")
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    fit = pd.read_csv(tmp_path / "b" / "coreness_fit.csv")
    assert len(fit) == 2
    assert main([*args[:-1], str(tmp_path / "nope.csv"), "-o", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _small_panel(cities, years=(2010, 2020)):
    members = cities[cities["agglomeration_id"].isin(["qz", "dz"])]
    rng = np.random.default_rng(0)
    rows = []
    for y in years:
        for code in members["adcode"]:
            rows += [
                (code, y, "population", float(rng.uniform(100, 900))),
                (code, y, "gdp", float(rng.uniform(500, 9000))),
            ]
    return members, pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])


def _qz_city_and_dz_2010_rows(members, panel):
    """The qz members, and the panel rows to drop so that one qz city has no GDP in 2020 and
    only two dz cities have a population in 2010."""
    qz = members[members["agglomeration_id"] == "qz"]
    dz = members[members["agglomeration_id"] == "dz"]
    drop = (panel["adcode"] == qz["adcode"].iloc[0]) & (panel["year"] == 2020)
    drop &= panel["indicator"] == "gdp"
    drop |= (
        panel["adcode"].isin(dz["adcode"].iloc[2:])
        & (panel["year"] == 2010)
        & (panel["indicator"] == "population")
    )
    return qz, drop


def test_library_function_drops_and_skips_visibly(cities):
    import agglo
    from agglo.analysis.coreperiphery import CorePeripheryOptions, core_periphery

    assert agglo.core_periphery is core_periphery
    members, panel = _small_panel(cities)
    qz, drop = _qz_city_and_dz_2010_rows(members, panel)
    gone = qz["adcode"].iloc[0]
    name = qz["name_zh"].iloc[0]
    with pytest.warns(AggloDataWarning) as record:
        res = core_periphery(
            cities, panel[~drop], CorePeripheryOptions(n_perm=0), agglomerations=["qz", "dz"]
        )
    messages = [str(w.message) for w in record]
    assert any(f"qz 2020: no gdp/population for {name} ({gone})" in m for m in messages)
    assert any("dz 2010 skipped: 2 cities" in m for m in messages)
    ex = res.excluded
    assert len(ex) == 1 + 3 + 1  # the qz city, the three dz cities and the dz year
    skipped = ex[ex["adcode"].isna()]
    assert skipped[["agglomeration_id", "year"]].values.tolist() == [["dz", 2010]]
    assert gone in set(ex["adcode"])
    assert "coreperiphery_excluded" in res.tables()
    fit = res.fit.set_index(["agglomeration_id", "year", "method"])
    assert fit.loc[("qz", 2020, "discrete"), "n_cities"] == len(qz) - 1
    assert ("dz", 2010, "discrete") not in fit.index
    assert any("skipped (fewer than 3 cities): dz 2010" in n for n in res.notes())
    # the stage output is the result's own tables, layers and lines
    from agglo.pipeline.core import StageOutput

    out = StageOutput.of(res)
    assert set(out.tables) == set(res.tables()) and out.summary == res.summary_lines()
    assert out.layer_metadata["core_periphery"]["options"]["methods"] == [
        "continuous",
        "discrete",
    ]


def test_excluded_rows_carry_the_provenance_of_the_values_looked_at(cities):
    """Like every other core-periphery table, ``coreperiphery_excluded`` has ``provenance``
    and ``provenance_inputs``: a left-out city's are those of the values it has that year, a
    skipped agglomeration-year's those of its cities that year (hand-labelled panel)."""
    from agglo.analysis.coreperiphery import CorePeripheryOptions, core_periphery

    members, panel = _small_panel(cities)
    panel = panel.assign(
        provenance=np.where(panel["indicator"] == "population", "real:census", "synthetic")
    )
    qz, drop = _qz_city_and_dz_2010_rows(members, panel)
    gone = qz["adcode"].iloc[0]
    with pytest.warns(AggloDataWarning, match="left out|skipped"):
        res = core_periphery(
            cities, panel[~drop], CorePeripheryOptions(n_perm=0), agglomerations=["qz", "dz"]
        )
    ex = res.tables()["coreperiphery_excluded"].set_index(["agglomeration_id", "year", "adcode"])
    assert ex.loc[("qz", 2020, gone), "provenance"] == "real:census"  # its population only
    assert ex.loc[("qz", 2020, gone), "provenance_inputs"] == "real: population"
    dz = members[members["agglomeration_id"] == "dz"]
    for code in dz["adcode"].iloc[2:]:  # their GDP only
        assert ex.loc[("dz", 2010, code), "provenance"] == "synthetic"
    skipped = ex[ex.index.get_level_values("adcode").isna()]
    assert skipped["provenance"].tolist() == ["real:census; synthetic"]
    assert skipped["provenance_inputs"].tolist() == ["real: population | synthetic: gdp"]
    # the other tables are labelled as before
    assert res.fit["provenance"].notna().all()


def test_library_function_uses_given_seats_and_one_core_set(cities):
    from agglo.analysis.coreperiphery import CorePeripheryOptions, core_periphery

    members, panel = _small_panel(cities)
    qz = members[members["agglomeration_id"] == "qz"]
    pts = qz.geometry.representative_point()
    seats = pd.DataFrame({"adcode": qz["adcode"], "lon": pts.x, "lat": pts.y})
    res = core_periphery(
        cities, panel, CorePeripheryOptions(n_perm=0), seats=seats, agglomerations=["qz"]
    )
    assert set(res.seats["seat_source"]) == {"given"}
    assert set(res.fit["agglomeration_id"]) == {"qz"}
    assert set(res.gaps["core_set"]) == {"first"}
    first = res.coreness[(res.coreness["year"] == 2010) & (res.coreness["method"] == "discrete")]
    gap = res.gaps[(res.gaps["indicator"] == "population") & (res.gaps["year"] == 2020)]
    assert int(gap["n_core"].iloc[0]) == int(first["core"].sum())
    with pytest.raises(Exception, match="CorePeripheryOptions"):
        core_periphery(cities, panel, {"n_perm": 0})
