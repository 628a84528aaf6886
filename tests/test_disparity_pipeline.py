"""The ``disparity`` pipeline stage on real membership and boundaries with a seeded test panel."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from agglo.config import RunConfig
from agglo.errors import ValidationError
from agglo.pipeline import StageOutput, run_stages
from agglo.reference.boundaries import load_institutions, load_membership


@pytest.fixture(scope="module")
def stage_ctx(cities):
    from test_index_pipeline import random_panel

    m = load_membership()
    cfg = RunConfig(
        sections={
            "index": {"sensitivity": False},
            "disparity": {"variables": ["composite", "gdp_per_capita"]},
        }
    )
    inputs = SimpleNamespace(
        cities=cities, membership=m, institutions=load_institutions(), employment=None
    )
    given = {
        "inputs": StageOutput(
            result=inputs, layers={"cities": cities}, synthetic={"test_panel_synthetic"}
        ),
        "panel": StageOutput(result=random_panel(m)),
    }
    return run_stages(cfg, ["disparity"], given=given)


def test_stage_tables(stage_ctx):
    t = stage_ctx.tables
    for name in (
        "disparity_dagum",
        "disparity_dagum_pairs",
        "disparity_theil",
        "disparity_kde_bandwidths",
        "convergence_sigma",
        "convergence_beta",
        "coordination_coupling",
        "coordination_obstacles",
        "coordination_topsis_rank_correlation",
    ):
        assert name in t and len(t[name]), name
    d = t["disparity_dagum"]
    assert set(d["variable"]) == {"composite", "gdp_per_capita"}
    parts = d[["within", "net_between", "transvariation"]].sum(axis=1)
    assert np.allclose(parts, d["gini"], atol=1e-12)
    assert d["n_cities"].max() == 84  # member cities only (the non-member row is left out)
    beta = t["convergence_beta"]
    assert {"absolute", "conditional", "spatial_lag", "spatial_error"} <= set(beta["model"])


def test_stage_summary_labelled(stage_ctx):
    lines = [s for s in stage_ctx.summary if "Dagum" in s or "β-convergence" in s]
    assert len(lines) == 2 and all(s.startswith("[SYNTHETIC]") for s in lines)


def test_report_groups_the_tables():
    from agglo.outputs.report import section_of

    for name in ("disparity_dagum", "convergence_beta", "coordination_subsystem_obstacles"):
        assert section_of(name) == "disparity", name


def test_unknown_option_refused(cities):
    given = {"inputs": StageOutput(result=None), "panel": StageOutput(result=None)}
    cfg = RunConfig(sections={"disparity": {"variable": "x"}})
    with pytest.raises(ValidationError, match="did you mean 'variables'"):
        run_stages(cfg, ["disparity"], given=given)


def test_library_function_gives_the_stage_tables(stage_ctx, cities):
    """``regional_disparity`` (what a notebook calls) writes exactly what the stage writes."""
    from test_index_pipeline import random_panel

    from agglo.analysis.disparity import DisparityOptions
    from agglo.analysis.regional import regional_disparity

    m = load_membership()
    index = stage_ctx.results["index"]
    res = regional_disparity(
        random_panel(m),
        m,
        cities=cities,
        city_scores=index.city_scores,
        disparity_options=DisparityOptions(variables=("composite", "gdp_per_capita")),
    )
    tables = res.tables()
    stage = {k: v for k, v in stage_ctx.tables.items() if k in tables}
    assert set(stage) == set(tables) and len(tables) == 17
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, stage[name], check_exact=True, obj=name)
    assert res.kde_variable == "composite"
    assert set(res.kde_bandwidths["variable"]) == {"composite"}
    assert res.summary_lines() == [
        s.removeprefix("[SYNTHETIC] ") for s in stage_ctx.summary if "Dagum" in s or "β-" in s
    ]


def test_each_row_carries_the_labels_of_the_values_it_used(cities):
    """gdp_per_capita real in yrd 2010 only: every row says so exactly where it used them."""
    from test_index_pipeline import random_panel

    from agglo.analysis.disparity import DisparityOptions
    from agglo.analysis.regional import regional_disparity

    m = load_membership()
    panel = random_panel(m)
    yrd = set(m.loc[m["agglomeration_id"] == "yrd", "adcode"])
    real = (panel["indicator"] == "gdp_per_capita") & (panel["year"] == 2010)
    real &= panel["adcode"].isin(yrd)
    panel["provenance"] = np.where(real, "real:test", "synthetic")
    res = regional_disparity(
        panel,
        m,
        cities=cities,
        disparity_options=DisparityOptions(variables=("composite", "gdp_per_capita")),
    )
    t = res.tables()
    assert all("provenance" in table for table in t.values())
    groups = t["disparity_dagum_groups"].set_index(["variable", "year", "agglomeration_id"])
    assert groups.loc[("gdp_per_capita", 2010, "yrd"), "provenance"] == "real:test"
    assert groups.loc[("gdp_per_capita", 2010, "yrd"), "provenance_inputs"] == (
        "real: gdp_per_capita"
    )
    assert groups.loc[("gdp_per_capita", 2010, "cy"), "provenance"] == "synthetic"
    assert groups.loc[("gdp_per_capita", 2020, "yrd"), "provenance"] == "synthetic"
    assert groups.loc[("composite", 2010, "yrd"), "provenance"] == "real:test; synthetic"
    assert groups.loc[("composite", 2010, "yrd"), "provenance_inputs"].startswith(
        "real: gdp_per_capita | synthetic: "
    )
    pairs = t["disparity_dagum_pairs"]
    gdp10 = pairs[(pairs["variable"] == "gdp_per_capita") & (pairs["year"] == 2010)]
    with_yrd = (gdp10["group_high"] == "yrd") | (gdp10["group_low"] == "yrd")
    assert set(gdp10.loc[with_yrd, "provenance"]) == {"real:test; synthetic"}
    assert set(gdp10.loc[~with_yrd, "provenance"]) == {"synthetic"}
    obst = t["coordination_obstacles"]
    city = sorted(yrd)[0]
    row = obst[(obst["adcode"] == city) & (obst["indicator"] == "gdp_per_capita")]
    assert dict(zip(row["year"], row["provenance"], strict=True)) == {
        2010: "real:test",
        2020: "synthetic",
    }
    beta = t["convergence_beta"].set_index(["group", "model"])
    assert beta.loc[("yrd", "absolute"), "provenance"] == "real:test; synthetic"
    assert beta.loc[("cy", "absolute"), "provenance"] == "synthetic"
    assert beta.loc[("all", "absolute"), "provenance"] == "real:test; synthetic"
    # a panel without labels: the tables as before, no guessed provenance
    plain = regional_disparity(panel.drop(columns="provenance"), m, cities=cities).tables()
    assert not any("provenance" in table for table in plain.values())
