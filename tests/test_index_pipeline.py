"""The ``index`` pipeline stage and the ``agglo index`` command on real membership/boundaries."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyogrio
import pytest

from agglo.config import RunConfig
from agglo.errors import AggloDataWarning, AggloInputError
from agglo.pipeline import StageOutput, run_stages
from agglo.reference.boundaries import load_institutions, load_membership
from agglo.reference.registry import INDICATORS


def random_panel(membership: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Every index indicator for every member city, 2010 and 2020 (test data, seeded)."""
    rng = np.random.default_rng(seed)
    rows = []
    for code in membership["adcode"]:
        for year in (2010, 2020):
            for ind in INDICATORS.values():
                v = float(rng.integers(0, 2)) if ind.kind == "binary" else float(rng.uniform(1, 99))
                rows.append((code, year, ind.id, v))
    # a non-member city is ignored by the index
    rows.append(("320700", 2020, "gdp_per_capita", 5.0))
    return pd.DataFrame(rows, columns=["adcode", "year", "indicator", "value"])


def run_index(cities, panel, sections=None, institutions=None, synthetic=False):
    """The index stage as ``agglo run`` composes it, on a given panel."""
    inputs = SimpleNamespace(
        cities=cities, membership=load_membership(), institutions=institutions, employment=None
    )
    given = {
        "inputs": StageOutput(
            result=inputs,
            layers={"cities": cities},
            synthetic={"test_panel_synthetic"} if synthetic else set(),
        ),
        "panel": None if panel is None else StageOutput(result=panel),
    }
    cfg = RunConfig(sections=sections or {"index": {"sensitivity": False}})
    return run_stages(cfg, ["index"], given=given)


@pytest.fixture(scope="module")
def stage_ctx(cities):
    panel = random_panel(load_membership())
    return run_index(cities, panel, institutions=load_institutions(), synthetic=True)


def test_stage_tables_and_results(stage_ctx):
    ctx = stage_ctx
    res = ctx.results["index"]
    for name in (
        "index_indicators",
        "index_dimensions",
        "index_composite",
        "index_between_groups",
        "city_gaps",
        "city_scores",
        "institutions",
        "index_explanations",
    ):
        assert name in ctx.tables
    assert "index_sensitivity" not in ctx.tables  # switched off in the section
    comp = res.composite
    assert sorted(comp["agglomeration_id"].unique()) == ["cy", "dz", "myr", "qz", "yrd"]
    # R from the 84 members: yrd 26/84
    r = res.indicators.drop_duplicates("agglomeration_id").set_index("agglomeration_id")["R"]
    assert r["yrd"] == pytest.approx(26 / 84) and r["dz"] == pytest.approx(5 / 84)
    assert res.city_scores["adcode"].nunique() == 84  # 320700 (not a member) ignored


def test_stage_layers(stage_ctx, cities):
    ctx = stage_ctx
    agg = ctx.layers["agglomerations"].set_index("agglomeration_id")
    assert agg.loc["cy", "name_zh"] == "成渝城市群" and agg.loc["yrd", "n_cities"] == 26
    comp = ctx.results["index"].composite.set_index(["agglomeration_id", "year"])
    assert agg.loc["myr", "score_2020"] == pytest.approx(comp.loc[("myr", 2020), "score"])
    assert agg.loc["myr", "rank_2010"] == comp.loc[("myr", 2010), "rank"]
    # dissolved area = sum of the member cities' geodesic areas (independent: the bundled column)
    member_area = cities[cities["agglomeration_id"] == "qz"]["area_km2"].sum()
    assert agg.loc["qz", "area_km2"] == pytest.approx(member_area, rel=2e-3)
    # cities layer: the latest year's lag score on members only; input layer not mutated
    c = ctx.layers["cities"].set_index("adcode")
    cs = ctx.results["index"].city_scores.query("year == 2020").set_index("adcode")
    assert c.loc["510100", "lag_score"] == pytest.approx(cs.loc["510100", "lag_score"])
    assert np.isnan(c.loc["320700", "lag_score"])
    assert "lag_score" not in cities.columns
    assert "lag_score" in ctx.layer_metadata["cities"]["units"]


def test_stage_summary_is_labelled(stage_ctx):
    text = "\n".join(stage_ctx.summary)
    assert "SYNTHETIC" in text and "composite" in text
    assert "yrd 长三角城市群" in text


def test_stage_rejects_unknown_options(cities):
    panel = random_panel(load_membership())
    with pytest.raises(
        AggloInputError, match=r"dddof is not an option \(did you mean 'ddof'\?\).*sensitivity"
    ):
        run_index(cities, panel, {"index": {"dddof": 1}})


def test_stage_skips_without_panel(cities, caplog):
    with caplog.at_level(logging.INFO, logger="agglo.pipeline"):
        outputs = run_index(cities, None)
    assert "index" not in outputs.results
    assert "stage index skipped: no panel" in caplog.text


def test_stage_warns_index_warnings(cities):
    p = random_panel(load_membership())
    p.loc[p["indicator"] == "hsr", "value"] = 0.0  # constant everywhere -> a visible warning
    with pytest.warns(AggloDataWarning, match=r"\['hsr'\] take one value in every city"):
        run_index(cities, p)


def test_cli_index(tmp_path, capsys):
    from agglo.cli import main
    from agglo.io.panel import DEMO_PANEL

    if not DEMO_PANEL.is_file():
        pytest.skip("bundled demo panel not present")
    out = tmp_path / "idx"
    assert main(["index", "--panel", str(DEMO_PANEL), "--out", str(out), "--sensitivity"]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "yrd 长三角城市群" in printed
    comp = pd.read_csv(out / "index_composite.csv")
    # per row (issue 17): census urbanisation and railway hsr beside synthetic indicators
    assert set(comp["data_status"]) == {"partly synthetic"}
    assert sorted(comp["year"].unique()) == [2010, 2015, 2020]
    # ranks are 1..5 in every year
    assert all(sorted(g["rank"]) == [1, 2, 3, 4, 5] for _, g in comp.groupby("year"))
    sens = pd.read_csv(out / "index_sensitivity.csv")
    assert {"leave_one_out", "weights_entropy"} <= set(sens["scenario"])
    meta = json.loads((out / "index_config.json").read_text(encoding="utf-8"))
    assert meta["index_config"]["ddof"] == 0 and meta["data_status"] == "synthetic"
    layer = pyogrio.read_dataframe(out / "agglomerations.gpkg", layer="agglomerations")
    assert len(layer) == 5 and "score_2020" in layer.columns
    # no overwrite without --force
    assert main(["index", "--panel", str(DEMO_PANEL), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["index", "--panel", str(DEMO_PANEL), "--out", str(out), "--force"]) == 0


def test_cli_config_section(tmp_path, capsys):
    from agglo.cli import main
    from agglo.io.panel import DEMO_PANEL

    if not DEMO_PANEL.is_file():
        pytest.skip("bundled demo panel not present")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[index]\nnegative_rule = "sideways"\n', encoding="utf-8")
    code = main(["index", "--panel", str(DEMO_PANEL), "--config", str(cfg), "--out", str(tmp_path)])
    assert code == 2
    assert "negative_rule must be one of" in capsys.readouterr().err


def test_dissolve_equals_union_all_on_the_bundled_cities_and_overlaps(cities):
    """The agglomeration polygons by coverage union equal shapely's union_all (the same
    vertices, compared normalised); overlapping polygons take union_all itself."""
    import shapely

    from agglo.analysis.index import _dissolve

    members = cities[cities["agglomeration_id"].notna()]
    for _, part in members.groupby("agglomeration_id"):
        polygons = part.geometry.to_numpy()
        assert shapely.coverage_is_valid(polygons)  # the coverage path is the one tested
        got, want = _dissolve(polygons), shapely.union_all(polygons)
        assert shapely.equals_exact(shapely.normalize(got), shapely.normalize(want), 0.0)
    overlapping = np.array([shapely.box(0, 0, 2, 2), shapely.box(1, 1, 3, 3)])
    assert not shapely.coverage_is_valid(overlapping)
    assert _dissolve(overlapping).equals_exact(shapely.union_all(overlapping), 0.0)
