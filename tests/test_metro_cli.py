"""The metro pipeline stage and the ``agglo metro`` command (in-process)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyogrio
import pytest

from agglo.cli import main
from agglo.config import RunConfig
from agglo.errors import AggloInputError
from agglo.pipeline import StageOutput, run_stages
from agglo.reference.paths import data_path


def run_metro(cities, counties, config):
    """The metro stage as ``agglo run`` composes it, on given boundaries (no panel)."""
    inputs = StageOutput(result=SimpleNamespace(cities=cities, counties=counties))
    return run_stages(config, ["metro"], given={"inputs": inputs, "panel": None})


def test_stage_on_bundled_synthetic_network(cities, counties):
    sections = {"metro": {"cores": ["成都", "贵阳"], "bands": [30, 60]}}
    ctx = run_metro(cities, counties, RunConfig(sections=sections))
    assert "demo_roads_synthetic.gpkg" in ctx.synthetic
    areas = ctx.layers["metro_areas"]
    assert areas["core_adcode"].tolist() == ["510100", "520100"]
    assert areas["agglomeration_id"].tolist() == ["cy", "qz"]
    iso = ctx.layers["isochrones"]
    assert sorted(set(iso["band_max"])) == [30.0, 60.0]
    # the bands of each core add up to its catchment
    for core, a in zip(areas["core_adcode"], areas["area_km2"], strict=True):
        assert iso.loc[iso["core_adcode"] == core, "area_km2"].sum() == pytest.approx(a, rel=1e-3)
    mem = ctx.tables["metro_members"]
    assert mem["member"].any() and (mem.loc[mem["member"], "seat_minutes"] <= 60).all()
    assert np.isnan(mem.loc[~mem["member"], "seat_minutes"]).all()
    assert {"metro_members", "metro_cities"} <= set(ctx.tables)
    check = [s for s in ctx.summary if "Seed-003" in s]
    # the line reports the minutes to each seat (whether they are reached is a property of the
    # synthetic network, tested on a hand-computed one in test_metro.py)
    assert len(check) == 1 and check[0].startswith("[SYNTHETIC")
    assert all(name in check[0] for name in ("Deyang", "Meishan", "Ziyang"))
    assert "SYNTHETIC" in ctx.layer_metadata["metro_areas"]["method"]


def test_stage_rejects_unknown_option_and_missing_roads(tmp_path, cities, counties):
    with pytest.raises(
        AggloInputError, match=r"metro.minuts is not an option \(did you mean 'minutes'"
    ):
        run_metro(cities, counties, RunConfig(sections={"metro": {"minuts": 30}}))
    with pytest.raises(AggloInputError, match="does not exist"):
        run_metro(cities, counties, RunConfig(roads=tmp_path / "none.osm.pbf"))


def test_cli_metro(tmp_path, capsys):
    out = tmp_path / "m"
    roads = data_path("roads", "demo_roads_synthetic.gpkg")
    args = [
        "metro",
        "--roads",
        str(roads),
        "--cores",
        "成都",
        "--bands",
        "30,60",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "[SYNTHETIC roads] 成都市 (510100)" in text
    assert sorted(pyogrio.list_layers(out / "metro.gpkg")[:, 0]) == ["isochrones", "metro_areas"]
    meta = pyogrio.read_info(out / "metro.gpkg", layer="metro_areas")["layer_metadata"]
    assert meta["data_status"] == "synthetic"
    assert (out / "metro_members.csv").read_text(encoding="utf-8").startswith("core_adcode,")
    assert main(args) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["metro", "--cores", "Atlantis", "--out", str(tmp_path / "x")]) == 2
    assert "unknown core city" in capsys.readouterr().err
    assert main(["metro", "--bands", "a,b", "--out", str(tmp_path / "y")]) == 2
    assert "--bands must be comma-separated float values" in capsys.readouterr().err


def test_library_call_is_the_stage(cities, counties):
    """metropolitan_areas gives the stage's tables; the panel's latest population year is used."""
    import inspect

    import pandas as pd

    from agglo.analysis.metro import (
        MetroOptions,
        commute_catchment,
        metro_areas,
        metropolitan_areas,
        travel_times,
    )

    for fn in (metro_areas, commute_catchment, travel_times):
        params = inspect.signature(fn).parameters
        for name in ("minutes", "access_speed_kmh", "max_access_km", "cell_m", "bands"):
            if name in params:
                assert params[name].default == getattr(MetroOptions, name), (fn, name)
    sections = {"metro": {"cores": ["贵阳"], "bands": [30]}}
    ctx = run_metro(cities, counties, RunConfig(sections=sections))
    roads = str(data_path("roads", "demo_roads_synthetic.gpkg"))
    opts = MetroOptions.from_dict(sections["metro"])
    panel = pd.DataFrame(
        {
            "adcode": ["520100", "520100", "520300"],
            "year": [2020, 2015, 2020],
            "indicator": "population",
            "value": [600.0, 1.0, 700.0],
        }
    )
    res = metropolitan_areas(cities, counties, [roads], opts, panel=panel)
    res_plain = metropolitan_areas(cities, counties, [roads], opts)
    for name, table in res_plain.tables().items():
        pd.testing.assert_frame_equal(table, ctx.tables[name], check_exact=True)
    assert res.summary_lines() == [s.removeprefix("[SYNTHETIC] ") for s in ctx.summary]
    assert (
        res.layer_metadata()["metro_areas"]["method"] == ctx.layer_metadata["metro_areas"]["method"]
    )
    # population shares use 2020 (the latest year), not 2015
    guiyang = res.cities.set_index("adcode").loc["520100"]
    assert guiyang["population_inside"] == pytest.approx(600.0 * guiyang["area_share"])
    with pytest.raises(AggloInputError, match="options must be MetroOptions"):
        metropolitan_areas(cities, counties, [roads], {"minutes": 30})
