"""with_indicators: measured tables into a long panel, as agglo run's panel stage does."""

from __future__ import annotations

import pandas as pd
import pytest

import agglo
from agglo.errors import AggloInputError
from agglo.io.indicators import with_indicators


@pytest.fixture
def panel():
    return pd.DataFrame(
        {
            "adcode": [320100, 320200, 320100, 320200],
            "year": [2020, 2020, 2020, 2020],
            "indicator": ["pm25", "pm25", "gdp_per_capita", "gdp_per_capita"],
            "value": [40.0, 42.0, 1.7e5, 1.6e5],
        }
    )


def test_measured_values_replace_the_panel_rows(panel):
    before = panel.copy()
    pm = pd.DataFrame({"adcode": [320100, 320200], "year": [2020] * 2, "pm25_mean": [31.5, 33.0]})
    out = with_indicators(panel, {"pm25": pm})
    pd.testing.assert_frame_equal(panel, before)  # the input is not modified
    got = out.set_index(["indicator", "adcode"])["value"]
    assert got["pm25", 320100] == 31.5 and got["pm25", 320200] == 33.0
    assert got["gdp_per_capita", 320200] == 1.6e5
    assert len(out) == 4 and out.attrs["replaced"] == {"pm25": 2}
    assert agglo.with_indicators is with_indicators


def test_a_snapshot_applies_to_the_given_years(panel):
    roads = pd.DataFrame({"adcode": [320100, 320200], "density_km_per_100km2": [180.0, 90.0]})
    out = with_indicators(panel, {"road_density": roads}, years=[2010, 2020])
    rd = out[out["indicator"] == "road_density"]
    assert sorted(rd["year"]) == [2010, 2010, 2020, 2020]
    assert rd.groupby("adcode")["value"].unique().map(list).to_dict() == {
        320100: [180.0],
        320200: [90.0],
    }
    with pytest.raises(AggloInputError, match="pass years="):
        with_indicators(panel, {"road_density": roads})


def test_provenance_column_is_filled(panel):
    panel = panel.assign(provenance="synthetic")
    hsr = pd.DataFrame({"adcode": [320100], "year": [2020], "hsr": [1]})
    out = with_indicators(panel, {"hsr": hsr}, source={"hsr": "real:railways"})
    assert out.loc[out["indicator"] == "hsr", "provenance"].tolist() == ["real:railways"]
    assert set(out.loc[out["indicator"] != "hsr", "provenance"]) == {"synthetic"}


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (pd.DataFrame({"city": [1], "year": [2020], "value": [1.0]}), "needs an 'adcode'"),
        (pd.DataFrame({"adcode": [1], "year": [2020], "mean": [1.0]}), "value column"),
        (pd.DataFrame({"adcode": [1, 1], "year": [2020] * 2, "value": [1.0, 2.0]}), "several"),
    ],
)
def test_bad_measured_tables_are_refused(panel, table, match):
    with pytest.raises(AggloInputError, match=match):
        with_indicators(panel, {"pm25": table})


def test_a_wide_table_is_refused():
    with pytest.raises(AggloInputError, match="lacks column"):
        with_indicators(pd.DataFrame({"adcode": [1], "gdp": [2.0]}), {})


def test_measured_codes_take_the_panel_code_type(panel):
    """read_panel keeps adcodes as text; measured integer codes must join them, not add rows."""
    text = panel.assign(adcode=panel["adcode"].astype(str))
    pm = pd.DataFrame({"adcode": [320100, 320200], "year": [2020] * 2, "pm25_mean": [31.5, 33.0]})
    out = with_indicators(text, {"pm25": pm})
    assert out["adcode"].map(type).eq(str).all()
    assert sorted(out.loc[out["indicator"] == "pm25", "adcode"]) == ["320100", "320200"]
    assert out.groupby("adcode").size().to_dict() == {"320100": 2, "320200": 2}


def _random_labels(seed: int, n: int = 400) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    provs = np.array(
        ["real:census-2010", "real:yearbook", "interpolated:census-2010-2020", "synthetic",
         "imputed:drop", "computed:x", "odd label", None],
        dtype=object,
    )  # fmt: skip
    return pd.DataFrame(
        {
            "adcode": rng.choice(["110000", "120000", "310000", "320100"], n),
            "year": rng.choice([2010, 2015, 2020], n).astype("int32"),
            "agglomeration_id": pd.Categorical(rng.choice(["bth", "yrd", "prd"], n)),
            "input": rng.choice(["gdp", "population", "pm25", "hsr"], n),
            "provenance": provs[rng.integers(0, len(provs), n)],
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "by",
    [["adcode"], ["year"], ["agglomeration_id", "year"], ["year", "agglomeration_id", "adcode"]],
)
@pytest.mark.parametrize("inputs", [True, False])
def test_provenance_by_codes_equals_the_loop(seed, by, inputs):
    from agglo.io.indicators import _provenance_by_codes, _provenance_by_loop, provenance_by

    labels = _random_labels(seed)
    want = _provenance_by_loop(labels, by, inputs)
    got = _provenance_by_codes(labels, by, inputs)
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(provenance_by(labels, by, inputs=inputs), want)


def test_provenance_by_keys_with_missing_values_take_the_loop():
    from agglo.io.indicators import _provenance_by_loop, provenance_by

    labels = _random_labels(3, 50)
    labels.loc[::7, "adcode"] = None
    got = provenance_by(labels, ["adcode", "year"])
    pd.testing.assert_frame_equal(got, _provenance_by_loop(labels, ["adcode", "year"], True))
    assert got["adcode"].isna().any()
