"""Tests of the ``autocorr`` pipeline stage and the ``agglo autocorr`` command."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from agglo.analysis.autocorr import AutocorrOptions
from agglo.config import RunConfig
from agglo.errors import AggloInputError
from agglo.pipeline import StageOutput, run_stages

YEARS = (2010, 2020)


def scores_for(cities: gpd.GeoDataFrame) -> pd.DataFrame:
    """Member city scores: an east-west gradient (+ noise) that flips sign between years."""
    members = cities[cities["agglomeration_id"].notna()]
    lon = members.geometry.representative_point().x.to_numpy()
    rng = np.random.default_rng(0)
    rows = []
    for t, sign in zip(YEARS, (1.0, -1.0), strict=True):
        rows.append(
            pd.DataFrame(
                {
                    "adcode": members["adcode"].to_numpy(),
                    "agglomeration_id": members["agglomeration_id"].to_numpy(),
                    "year": t,
                    "lag_score": sign * (lon - lon.mean()) / 10 + rng.normal(0, 0.1, len(lon)),
                    "dispersion_gap": rng.random(len(lon)),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


class FakeIndex:
    def __init__(self, city_scores: pd.DataFrame) -> None:
        self.city_scores = city_scores


def context(cities, scores=None, synthetic=False, **options):
    """The autocorr stage as ``agglo run`` composes it, on given cities and city scores."""
    cfg = RunConfig(sections={"autocorr": {"permutations": 99, **options}}, seed=5)
    inputs = SimpleNamespace(cities=cities, counties=None)
    given = {
        "inputs": StageOutput(result=inputs, layers={"cities": cities}),
        "index": None
        if scores is None
        else StageOutput(
            result=FakeIndex(scores), synthetic={"toy_synthetic.csv"} if synthetic else set()
        ),
    }
    return run_stages(cfg, ["autocorr"], given=given)


def test_stage_skips_without_index(cities, caplog):
    with caplog.at_level(logging.INFO, logger="agglo.pipeline"):
        ctx = context(cities)
    assert "stage autocorr skipped: no index" in caplog.text
    assert "autocorr" not in ctx.results and "lisa" not in ctx.layers


def test_stage_tables_layers_and_summary(cities):
    scores = scores_for(cities)
    ctx = context(cities, scores, synthetic=True)
    glob = ctx.tables["autocorr_global"]
    # scopes: all members + the five agglomerations (dz has 5 and qz 6 cities: >= min_units 4)
    assert set(glob["scope"]) == {"all", "yrd", "myr", "cy", "qz", "dz"}
    assert sorted(glob["year"].unique()) == list(YEARS)
    allm = glob[glob["scope"] == "all"].set_index("year")
    assert (allm["n"] == 84).all()
    # a smooth east-west gradient is strongly and significantly autocorrelated in both years
    assert (allm["moran_i"] > 0.5).all() and (allm["moran_p"] <= 0.01).all()
    # cross-check one cell against a direct library call on the same subset
    from agglo.analysis.autocorr import global_autocorrelation, spatial_weights

    members = cities[cities["agglomeration_id"] == "cy"]
    direct = global_autocorrelation(
        scores[(scores["year"] == 2010) & scores["adcode"].isin(members["adcode"])],
        "lag_score",
        spatial_weights(members),
        permutations=99,
        seed=5,
    )
    row = glob[(glob["scope"] == "cy") & (glob["year"] == 2010)].iloc[0]
    assert row["moran_i"] == pytest.approx(float(direct["moran_i"]))
    assert row["moran_p"] == pytest.approx(float(direct["moran_p"]))

    lisa = ctx.tables["lisa"]
    assert len(lisa) == 84 * len(YEARS)
    assert set(lisa["cluster"]) <= {"HH", "LL", "HL", "LH", "ns"}
    layer = ctx.layers["lisa"]
    assert isinstance(layer, gpd.GeoDataFrame) and len(layer) == len(lisa)
    assert layer.geometry.notna().all()
    # latest year's clusters on the cities layer; non-members get missing values
    cl = ctx.layers["cities"].set_index("adcode")
    members_ids = cities.loc[cities["agglomeration_id"].notna(), "adcode"]
    latest = lisa[lisa["year"] == 2020].set_index("adcode")
    assert (cl.loc[members_ids, "lisa_cluster"] == latest.loc[members_ids, "cluster"]).all()
    non = cities.loc[cities["agglomeration_id"].isna(), "adcode"]
    assert cl.loc[non, "lisa_p"].isna().all() and cl.loc[non, "lisa_cluster"].isna().all()
    assert "lisa_cluster" not in cities.columns  # input not modified
    # the gradient flips between years: western HH cities become LL
    wide = lisa.pivot(index="adcode", columns="year", values="quadrant")
    assert ((wide[2010] == "HH") & (wide[2020] == "LL")).sum() > 5
    tr = ctx.tables["lisa_transitions"]
    assert tr.loc[(tr["from"] == "HH") & (tr["to"] == "LL"), "count"].iloc[0] > 5
    # one labelled summary line per year with Moran's I and p
    lines = [s for s in ctx.summary if "Moran's I" in s]
    assert len(lines) == 2 and all(s.startswith("[SYNTHETIC") for s in lines)
    assert f"{allm.loc[2010, 'moran_i']:.3f}" in lines[0]
    assert any(
        "no islands (every city has a neighbour in every scope) under queen" in s
        for s in ctx.summary
    )


def test_stage_skips_degenerate_and_small_scopes(cities, caplog):
    with caplog.at_level(logging.INFO, logger="agglo.analysis.autocorr"):
        ctx = context(cities, scores_for(cities), weights="knn", k=4, min_units=6)
    scopes = set(ctx.tables["autocorr_global"]["scope"])
    # dz (5 cities) < min_units 6; qz (6 cities) with k = 4... still informative (5 others)
    assert "dz" not in scopes and "qz" in scopes
    assert "dz 2010 skipped: 5 cities" in caplog.text


def test_stage_complete_graph_skipped(cities, caplog):
    with caplog.at_level(logging.INFO, logger="agglo.analysis.autocorr"):
        ctx = context(cities, scores_for(cities), weights="knn", k=4)
    # dz has 5 cities: with 4 nearest neighbours each city neighbours all others
    assert "dz" not in set(ctx.tables["autocorr_global"]["scope"])
    assert "every city neighbours every other" in caplog.text


def test_stage_options_validated(cities):
    with pytest.raises(AggloInputError, match="weights must be one of queen"):
        context(cities, scores_for(cities), weights="hexagon")
    with pytest.raises(AggloInputError, match=r"did you mean .permutations"):
        AutocorrOptions.from_dict({"permutation": 9})


def test_cli_autocorr_on_scores_csv(cities, tmp_path, capsys):
    from agglo.cli import main

    csv = tmp_path / "scores_synthetic.csv"
    scores_for(cities).to_csv(csv, index=False)
    out = tmp_path / "out"
    code = main(
        [
            "autocorr",
            "--scores",
            str(csv),
            "--weights",
            "rook",
            "--permutations",
            "99",
            "--seed",
            "3",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "[SYNTHETIC" in printed and "Autocorrelation 2010: Moran's I" in printed
    glob = pd.read_csv(out / "autocorr_global.csv")
    assert set(glob["weights"]) == {"rook"} and set(glob["seed"]) == {3}
    assert set(glob["data_status"]) == {"synthetic"}
    layer = gpd.read_file(out / "lisa.gpkg", layer="lisa")
    assert len(layer) == 84 * len(YEARS)
    # existing outputs are refused without --force (exit code 2)
    assert main(["autocorr", "--scores", str(csv), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["autocorr", "--weights", "hex", "-o", str(tmp_path / "o2")]) == 2


def test_cli_writes_the_tables_of_the_pipeline_stage(cities, tmp_path):
    """``agglo autocorr --scores`` and the stage ``agglo run`` runs give identical tables."""
    from agglo.cli import main
    from agglo.pipeline.core import StageOutput

    scores = scores_for(cities)
    csv = tmp_path / "scores_synthetic.csv"
    scores.to_csv(csv, index=False)
    out = tmp_path / "cli"
    flags = ["--weights", "rook", "--permutations", "49", "--islands", "keep", "--seed", "11"]
    assert main(["autocorr", "--scores", str(csv), *flags, "-o", str(out)]) == 0
    cfg = RunConfig(
        sections={"autocorr": {"weights": "rook", "permutations": 49, "islands": "keep"}},
        seed=11,
    )
    inputs = SimpleNamespace(cities=cities, counties=None)
    given = {
        "inputs": StageOutput(result=inputs, layers={"cities": cities}),
        "index": StageOutput(result=FakeIndex(pd.read_csv(csv, dtype={"adcode": str}))),
    }
    run = run_stages(cfg, ["autocorr"], given=given)
    assert set(run.tables) == {p.stem for p in out.glob("*.csv")}
    for name, table in run.tables.items():
        written = pd.read_csv(out / f"{name}.csv", dtype={"adcode": str, "island": str})
        expected = pd.read_csv(
            pd.io.common.StringIO(table.to_csv(index=False)), dtype={"adcode": str, "island": str}
        )
        pd.testing.assert_frame_equal(written.drop(columns="data_status"), expected)


def test_result_carries_everything_the_run_reports(cities):
    """Tables, layer metadata, city columns, summary and notes come from the result itself."""
    from agglo.analysis.autocorr import autocorrelation
    from agglo.results import StageResult

    scores = scores_for(cities)
    res = autocorrelation(scores, cities, AutocorrOptions(permutations=19), seed=2)
    assert isinstance(res, StageResult)
    assert {"autocorr_global", "lisa", "autocorr_islands", "lisa_transitions"} <= set(res.tables())
    assert res.layer_metadata()["lisa"]["method"].startswith("queen weights")
    cols = res.city_columns()
    assert set(cols) == {"lisa_cluster", "lisa_p"} and len(cols["lisa_p"]) == 84
    assert len(res.summary_lines()) == 2
    # islands: kept, so the note says so and never claims they were joined
    isl = cities[cities["agglomeration_id"].notna()].copy()
    far = isl.index[0]
    isl.loc[far, "geometry"] = isl.loc[far, "geometry"].buffer(0).envelope.centroid.buffer(0.01)
    isl.loc[far, "geometry"] = isl.loc[[far], "geometry"].translate(xoff=30).iloc[0]
    import warnings

    from agglo.analysis.autocorr import IslandWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IslandWarning)
        kept = autocorrelation(scores, isl, AutocorrOptions(permutations=19, islands="keep"))
    note = next(n for n in kept.notes() if "islands" in n)
    assert "kept without neighbours" in note and "->" not in note
    assert isl.loc[far, "name_zh"] in note
    joined = autocorrelation(scores, isl, AutocorrOptions(permutations=19))
    note = next(n for n in joined.notes() if "islands" in n)
    assert "joined to their nearest city" in note and " -> " in note
