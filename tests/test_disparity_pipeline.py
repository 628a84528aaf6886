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
