"""Tests of agglo.analysis.autocorr: weights, global/local autocorrelation, transitions.

Reference values are hand computations (written out in comments), closed forms, or esda /
libpysal called directly on the same input (cross-checks, not copies of our output).
"""

from __future__ import annotations

import itertools
import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agglo.analysis.autocorr import (
    IslandWarning,
    global_autocorrelation,
    island_links,
    lisa_transitions,
    local_autocorrelation,
    spatial_weights,
)
from agglo.errors import AggloInputError

# ----------------------------------------------------------------------------- toy data


def lattice(n: int = 4, values=None, *, origin=(100.0, 25.0), size=0.1) -> gpd.GeoDataFrame:
    """n x n square cells; cell (i, j) -> id f"{j:02d}{i:02d}" (row-major), value y."""
    x0, y0 = origin
    rows = []
    for j in range(n):
        for i in range(n):
            rows.append(
                {
                    "adcode": f"{j:02d}{i:02d}",
                    "i": i,
                    "j": j,
                    "geometry": shapely.box(
                        x0 + i * size, y0 + j * size, x0 + (i + 1) * size, y0 + (j + 1) * size
                    ),
                }
            )
    g = gpd.GeoDataFrame(rows, crs=4326)
    if values is not None:
        g["y"] = np.asarray(values, dtype=float)
    return g


def rook_matrix(n: int) -> np.ndarray:
    """Row-standardised rook weights of an n x n lattice, built by hand (row-major order)."""
    w = np.zeros((n * n, n * n))
    for a in range(n * n):
        for b in range(n * n):
            ja, ia, jb, ib = divmod(a, n) + divmod(b, n)
            if abs(ia - ib) + abs(ja - jb) == 1:
                w[a, b] = 1.0
    return w / w.sum(axis=1, keepdims=True)


def moran_closed_form(y: np.ndarray, w: np.ndarray) -> float:
    """I = n / S0 * z'Wz / z'z."""
    z = y - y.mean()
    return len(y) / w.sum() * (z @ w @ z) / (z @ z)


def five_cities() -> gpd.GeoDataFrame:
    """Five cities in a row (a-b-c-d-e), y = 1..5, rows deliberately not in id order."""
    g = gpd.GeoDataFrame(
        {
            "adcode": list("abcde"),
            "name_zh": ["甲", "乙", "丙", "丁", "戊"],
            "y": [1.0, 2, 3, 4, 5],
        },
        geometry=[shapely.box(110 + i * 0.5, 30, 110.5 + i * 0.5, 30.5) for i in range(5)],
        crs=4326,
    )
    return g.iloc[[3, 0, 4, 2, 1]]


# ----------------------------------------------------------------------------- global


def test_moran_and_geary_five_cities_by_hand():
    g = five_cities()
    w = spatial_weights(g, "rook")
    s = global_autocorrelation(g, "y", w, permutations=99, seed=1)
    # z = y - 3 = (-2, -1, 0, 1, 2), z'z = 10; row-standardised chain:
    # Wz = (-1, -1, 0, 1, 1), z'Wz = 2 + 1 + 0 + 1 + 2 = 6, S0 = n = 5 -> I = 5/5 * 6/10 = 0.6
    assert float(s["moran_i"]) == pytest.approx(0.6, abs=1e-12)
    assert float(s["moran_ei"]) == pytest.approx(-0.25)  # -1/(n-1)
    # Geary: sum_ij w_ij (y_i - y_j)^2 = 1 + (.5 + .5) + 1 + 1 + 1 = 5
    # C = (n-1) * 5 / (2 * S0 * z'z) = 4 * 5 / (2 * 5 * 10) = 0.2
    assert float(s["geary_c"]) == pytest.approx(0.2, abs=1e-12)
    assert int(s["n"]) == 5


def test_checkerboard_gives_minus_one():
    y = [(i + j) % 2 for j in range(4) for i in range(4)]
    g = lattice(4, y)
    s = global_autocorrelation(g, "y", spatial_weights(g, "rook"), permutations=999, seed=7)
    # every rook neighbour has the opposite value: Wz = -z -> I = -1 exactly
    assert float(s["moran_i"]) == pytest.approx(-1.0, abs=1e-12)
    assert float(s["moran_p"]) <= 0.01


def test_gradient_strongly_positive_and_closed_form():
    y = np.array([i + j for j in range(4) for i in range(4)], dtype=float)
    g = lattice(4, y)
    s = global_autocorrelation(g, "y", spatial_weights(g, "rook"), permutations=999, seed=7)
    expected = moran_closed_form(y, rook_matrix(4))
    assert float(s["moran_i"]) == pytest.approx(expected, abs=1e-12)
    assert expected > 0.5
    assert float(s["moran_p"]) < 0.01
    assert float(s["geary_c"]) < 0.5


def test_same_seed_same_p_and_other_seed_differs():
    rng = np.random.default_rng(3)
    g = lattice(5, rng.normal(size=25))
    w = spatial_weights(g, "queen")
    a = global_autocorrelation(g, "y", w, permutations=199, seed=11)
    b = global_autocorrelation(g, "y", w, permutations=199, seed=11)
    pd.testing.assert_series_equal(a, b)
    la = local_autocorrelation(g, "y", w, permutations=199, seed=11)
    lb = local_autocorrelation(g, "y", w, permutations=199, seed=11)
    pd.testing.assert_frame_equal(la, lb)
    lc = local_autocorrelation(g, "y", w, permutations=199, seed=12)
    assert not np.array_equal(la["lisa_p"], lc["lisa_p"])
    # the global random state is left alone
    np.random.seed(5)  # noqa: NPY002
    before = np.random.random()  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    global_autocorrelation(g, "y", w, permutations=9, seed=1)
    assert np.random.random() == before  # noqa: NPY002


def test_cross_check_with_esda_and_libpysal_w_on_real_cities(cities):
    """Same values through libpysal.weights.Queen (the older W) + esda directly."""
    import esda
    from libpysal.weights import Queen

    members = cities[cities["agglomeration_id"].notna()].copy()
    lon = members.geometry.representative_point().x
    members["v"] = lon.to_numpy() + np.random.default_rng(0).normal(0, 3, len(members))
    ours = global_autocorrelation(members, "v", spatial_weights(members), seed=42)
    ref_df = members.sort_values("adcode").reset_index(drop=True)
    wq = Queen.from_dataframe(
        ref_df, ids=ref_df["adcode"].tolist(), use_index=False, silence_warnings=True
    )
    wq.transform = "r"
    np.random.seed(42)  # noqa: NPY002  (esda.Moran draws from the global generator)
    ref = esda.Moran(ref_df["v"].to_numpy(), wq, permutations=999)
    assert float(ours["moran_i"]) == pytest.approx(ref.I, rel=1e-12)
    assert float(ours["moran_ei"]) == pytest.approx(ref.EI, rel=1e-12)
    assert float(ours["moran_p"]) == ref.p_sim
    assert float(ours["moran_i"]) > 0.3  # longitude gradient: positive autocorrelation

    local = local_autocorrelation(members, "v", spatial_weights(members), seed=42)
    ref_l = esda.Moran_Local(ref_df["v"].to_numpy(), wq, permutations=999, seed=42)
    mine = local.set_index(members["adcode"]).loc[ref_df["adcode"]]
    np.testing.assert_allclose(mine["lisa_i"], ref_l.Is, rtol=1e-12)
    # a city with one neighbour (舟山市) has only 83 possible neighbours: agglo evaluates each
    # once (the exact p, agglo.analysis.crand) where esda draws 999; the others are esda's
    single = np.array([wq.cardinalities[i] for i in wq.id_order]) == 1
    assert single.sum() >= 1
    np.testing.assert_array_equal(mine["lisa_p"][~single], ref_l.p_sim[~single])
    z, n = ref_l.z, len(ref_l.z)
    for i in np.flatnonzero(single):
        sims = z[i] * np.delete(z, i) * (n - 1) / (z * z).sum()
        k = min((sims >= ref_l.Is[i] - 1e-12).sum(), (sims <= ref_l.Is[i] + 1e-12).sum())
        assert mine["lisa_p"].iloc[i] == pytest.approx(k / (n - 1), rel=1e-12)
    labels = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}
    assert mine["quadrant"].tolist() == [labels[q] for q in ref_l.q]


def _contiguity_cases():
    """Polygons that exercise the vertex rule: shared corners only, holes, multipolygons,
    an island, a -0.0 coordinate, duplicated vertices and lines."""
    box = shapely.box
    yield "lattice", list(lattice(5).geometry)
    ring = shapely.Polygon(box(0, 0, 3, 3).exterior.coords, [box(1, 1, 2, 2).exterior.coords])
    yield "holes", [ring, box(1, 1, 2, 2), box(3, 0, 4, 1), box(-0.0, 3, 1, 4), box(5, 5, 6, 6)]
    multi = shapely.MultiPolygon([box(0, 0, 1, 1), box(2, 0, 3, 1)])
    dup = shapely.Polygon([(1, 0), (2, 0), (2, 0), (2, 1), (1, 1)])
    yield "multi", [multi, dup, box(3, 0, 4, 1), box(1, 1, 2, 2), box(9, 9, 10, 10)]
    yield "corner", [box(0, 0, 1, 1), box(1, 1, 2, 2), box(2, 0, 3, 1), box(1, -1, 2, 0)]
    yield "lines", [shapely.LineString([(0, 0), (1, 1)]), shapely.LineString([(1, 1), (2, 0)])]


@pytest.mark.parametrize("rook", [False, True], ids=["queen", "rook"])
def test_vertex_contiguity_equals_libpysal(rook, cities):
    from libpysal.graph import Graph

    from agglo.analysis.autocorr import _prepare_units, _vertex_contiguity

    cases = dict(_contiguity_cases())
    members = cities[cities["agglomeration_id"].notna()]
    for name, geoms in [*cases.items(), ("cities", None), ("members", None)]:
        if geoms is None:
            units = _prepare_units(cities if name == "cities" else members, "adcode")
            geometry = units.geometry
        else:
            geometry = gpd.GeoSeries(geoms, index=[f"u{i}" for i in range(len(geoms))])
        ref = Graph.build_contiguity(geometry, rook=rook)
        got = _vertex_contiguity(geometry, rook=rook)
        pd.testing.assert_series_equal(got.adjacency, ref.adjacency, obj=name)
    # the cases do what they are meant to: a corner is a queen link, not a rook one
    corner = _vertex_contiguity(gpd.GeoSeries(cases["corner"]), rook=rook)
    assert (1 in corner[0].index) is not rook
    assert len(_vertex_contiguity(gpd.GeoSeries(cases["multi"]), rook=rook).isolates) == 1


def test_libpysal_w_input_accepted():
    g = five_cities()
    graph = spatial_weights(g, "rook")
    s_w = global_autocorrelation(g, "y", graph.to_W(), permutations=0)
    assert float(s_w["moran_i"]) == pytest.approx(0.6)


# ----------------------------------------------------------------------------- local


def test_local_fdr_matches_esda_fdr_and_labels():
    import esda

    y = np.zeros(64)
    g = lattice(8)
    hot = (g["i"] < 3) & (g["j"] < 3)
    cold = (g["i"] > 4) & (g["j"] > 4)
    y = np.where(hot, 10.0, np.where(cold, -10.0, 0.0)) + np.random.default_rng(1).normal(
        0, 0.5, 64
    )
    g["y"] = y
    w = spatial_weights(g, "queen")
    lisa = local_autocorrelation(g, "y", w, permutations=999, seed=5)
    cut = esda.fdr(lisa["lisa_p"].to_numpy(), 0.05)
    np.testing.assert_array_equal(lisa["significant"], lisa["lisa_p"] < cut)
    assert lisa["significant"].sum() >= 4
    # the centre of the hot block is a significant high-high cluster, of the cold block low-low
    centre_hot = g.index[(g["i"] == 1) & (g["j"] == 1)][0]
    centre_cold = g.index[(g["i"] == 6) & (g["j"] == 6)][0]
    assert lisa.loc[centre_hot, "cluster"] == "HH"
    assert lisa.loc[centre_cold, "cluster"] == "LL"
    assert lisa.loc[centre_hot, "gstar_z"] > 2 > -2 > lisa.loc[centre_cold, "gstar_z"]


def test_gstar_matches_ord_getis_closed_form():
    g = lattice(6)
    x = np.random.default_rng(1).normal(size=36) + g["i"].to_numpy() - 2.5  # has negatives
    g["y"] = x
    w = spatial_weights(g, "queen")
    lisa = local_autocorrelation(g, "y", w, permutations=99, seed=1)
    # Ord & Getis (1995): binary weights including i itself,
    # z_i = (sum_j w_ij x_j - xbar W_i) / (S sqrt((n S1_i - W_i^2) / (n - 1)))
    n = 36
    a = np.eye(n)
    for k in range(n):
        for m in range(n):
            jk, ik = divmod(k, 6)
            jm, im = divmod(m, 6)
            if max(abs(ik - im), abs(jk - jm)) == 1:  # queen neighbours
                a[k, m] = 1.0
    xbar, s = x.mean(), x.std()
    wi, s1 = a.sum(1), (a**2).sum(1)
    z = (a @ x - xbar * wi) / (s * np.sqrt((n * s1 - wi**2) / (n - 1)))
    np.testing.assert_allclose(lisa["gstar_z"], z, rtol=1e-10)
    # plain alpha never gives fewer significant units than FDR control
    plain = local_autocorrelation(g, "y", w, permutations=999, seed=5, correction="none")
    np.testing.assert_array_equal(plain["significant"], plain["lisa_p"] <= 0.05)
    assert plain["significant"].sum() >= lisa["significant"].sum()
    # not-significant units are labelled "ns"; significant ones carry their quadrant
    sig = lisa["significant"]
    assert (lisa.loc[~sig, "cluster"] == "ns").all()
    assert (lisa.loc[sig, "cluster"] == lisa.loc[sig, "quadrant"]).all()


def test_quadrants_from_moran_scatterplot():
    g = five_cities()
    lisa = local_autocorrelation(g, "y", spatial_weights(g, "rook"), permutations=99, seed=1)
    # z = (-2..2)/sd; lags: a -> b (-1), e -> d (+1): a is LL, e is HH; c has z = 0
    by_id = lisa.set_index(g["adcode"])
    assert by_id.loc["a", "quadrant"] == "LL"
    assert by_id.loc["e", "quadrant"] == "HH"
    sd = np.std([1, 2, 3, 4, 5])
    assert by_id.loc["a", "lag_z"] == pytest.approx(-1 / sd)
    # local Moran I_i = z_i * lag_i (esda's scaling n-1 / sum z^2 with z standardised: = 1)
    assert by_id.loc["a", "lisa_i"] == pytest.approx((-2 / sd) * (-1 / sd) * 4 / 5)


def test_shuffled_rows_give_identical_per_city_results(cities):
    members = cities[cities["agglomeration_id"].notna()].copy()
    members["v"] = np.random.default_rng(9).normal(size=len(members))
    shuffled = members.sample(frac=1.0, random_state=4)
    assert not shuffled["adcode"].is_monotonic_increasing
    a = local_autocorrelation(members, "v", spatial_weights(members), permutations=199, seed=3)
    b = local_autocorrelation(shuffled, "v", spatial_weights(shuffled), permutations=199, seed=3)
    a = a.set_index(members["adcode"]).sort_index()
    b = b.set_index(shuffled["adcode"]).sort_index()
    pd.testing.assert_frame_equal(a, b)
    ga = global_autocorrelation(members, "v", spatial_weights(members), seed=3)
    gb = global_autocorrelation(shuffled, "v", spatial_weights(shuffled), seed=3)
    pd.testing.assert_series_equal(ga, gb)
    # output is on the input's index, in the input's order
    assert b.index.size == len(shuffled)


def test_output_on_input_index():
    g = five_cities().set_index(pd.Index([10, 20, 30, 40, 50]))
    lisa = local_autocorrelation(g, "y", spatial_weights(g, "rook"), permutations=9, seed=1)
    assert lisa.index.tolist() == [10, 20, 30, 40, 50]
    # row 10 is city d (value 4): z > 0
    assert lisa.loc[10, "z"] > 0


# ----------------------------------------------------------------------------- alignment


def test_id_mismatch_is_an_error_naming_ids():
    g = five_cities()
    w = spatial_weights(g.iloc[:4], "rook")
    with pytest.raises(AggloInputError, match=r"in the data but not the weights: [a-e]"):
        global_autocorrelation(g, "y", w)
    w5 = spatial_weights(g, "rook")
    with pytest.raises(AggloInputError, match=r"in the weights but not the data: [a-e]"):
        local_autocorrelation(g.iloc[1:], "y", w5)
    ints = g.assign(adcode=range(5))
    w_int = spatial_weights(ints, "rook")
    with pytest.raises(AggloInputError, match="differ only in type"):
        global_autocorrelation(ints.assign(adcode=ints["adcode"].astype(str)), "y", w_int)
    dup = pd.concat([g, g.iloc[:1]])
    with pytest.raises(AggloInputError, match="duplicated adcode values d"):
        global_autocorrelation(dup, "y", w5)
    with pytest.raises(AggloInputError, match="missing or not numeric for c"):
        global_autocorrelation(g.assign(y=g["y"].where(g["adcode"] != "c")), "y", w5)


def test_bad_choices_show_allowed_values():
    g = five_cities()
    with pytest.raises(AggloInputError, match=r"kind must be one of queen, rook.*got 'hex'"):
        spatial_weights(g, "hex")
    with pytest.raises(AggloInputError, match=r"islands must be one of nearest, keep, error"):
        spatial_weights(g, islands="drop")
    with pytest.raises(AggloInputError, match=r"correction must be one of fdr, none"):
        local_autocorrelation(g, "y", spatial_weights(g), correction="bonferroni")
    with pytest.raises(AggloInputError, match="k must be between 1 and n - 1 = 4"):
        spatial_weights(g, "knn", k=5)
    with pytest.raises(AggloInputError, match="no CRS"):
        spatial_weights(g.set_crs(None, allow_override=True))


# ----------------------------------------------------------------------------- weights


def test_ids_are_adcodes_sorted_and_row_standardised():
    g = five_cities()
    w = spatial_weights(g, "queen")
    assert list(w.unique_ids) == list("abcde")
    assert w.transformation == "R"
    sums = w.adjacency.groupby(level=0).sum()
    np.testing.assert_allclose(sums, 1.0)
    b = spatial_weights(g, "queen", transform="B")
    assert set(b.adjacency.to_numpy()) == {1.0}


def test_distance_weights_are_in_km_not_degrees():
    # 0.1-degree cells at 25 N: centroids 10.1 km apart east-west, 11.1 km north-south
    g = lattice(4)
    w = spatial_weights(g, "distance", threshold=12.0)
    card = w.cardinalities
    # with km the 12 km band links rook neighbours only (diagonals are ~15 km);
    # were the threshold read as degrees every cell would neighbour every other
    assert card.max() == 4 and card.min() == 2
    assert w["0101"].index.tolist() == ["0001", "0100", "0102", "0201"]
    # projecting the input first changes nothing
    wp = spatial_weights(g.to_crs(32648), "distance", threshold=12.0)
    assert wp.adjacency.equals(w.adjacency)


def test_distance_default_threshold_is_the_minimum_connecting_distance():
    from pyproj import Geod

    g = five_cities()
    g = pd.concat(
        [
            g,
            gpd.GeoDataFrame(
                {"adcode": ["z"], "y": [0.0]},
                geometry=[shapely.box(114, 30, 114.5, 30.5)],
                crs=4326,
            ),
        ]
    )
    w = spatial_weights(g, "distance", transform="B")
    assert len(w.isolates) == 0
    assert w["z"].index.tolist() == ["e"]  # the far unit reaches only its nearest
    # z is 1.5 degrees east of e (centroids 112.25 and 114.25 E at 30.25 N): ~192 km
    d_km = Geod(ellps="WGS84").inv(112.25, 30.25, 114.25, 30.25)[2] / 1000
    with pytest.warns(IslandWarning, match=r"z"):
        narrower = spatial_weights(g, "distance", threshold=d_km * 0.99, islands="keep")
    assert "z" in set(narrower.isolates)
    wider = spatial_weights(g, "distance", threshold=d_km * 1.01, transform="B")
    assert wider["z"].index.tolist() == ["e"]


def test_knn_and_kernel():
    g = lattice(4)
    knn = spatial_weights(g, "knn", k=4, transform="B")
    assert (knn.cardinalities == 4).all()
    # corner cell 0000: its 4 nearest are its 2 rook neighbours, the diagonal and the next
    # east-west one (0.1 deg east-west is 10.1 km < 11.1 km north-south)
    assert set(knn["0000"].index) == {"0001", "0100", "0101", "0002"}
    kern = spatial_weights(g, "kernel", k=4, transform="O")
    w00 = kern["0000"]
    assert w00["0001"] > w00["0100"] > w00["0101"]  # weight falls with distance


def test_chengdu_neighbours_on_real_boundaries(cities):
    w = spatial_weights(cities, "queen", transform="B")
    names = cities.set_index("adcode")["name_zh"]
    assert set(names[w["510100"].index]) == {
        "德阳市",
        "眉山市",
        "雅安市",
        "资阳市",
        "阿坝藏族羌族自治州",
    }
    card = w.cardinalities
    assert card.min() >= 1 and card.max() <= 12 and 4.5 < card.mean() < 6
    # rook and queen agree except where units meet at a point only
    rook = spatial_weights(cities, "rook", transform="B")
    assert rook.adjacency.size <= w.adjacency.size


# ----------------------------------------------------------------------------- islands


def test_zhoushan_is_reported_and_joined(cities, caplog):
    zhejiang = cities[cities["province_zh"].str.startswith("浙江")]
    assert len(zhejiang) == 11
    with caplog.at_level(logging.WARNING, logger="agglo.analysis.autocorr"):
        w = spatial_weights(zhejiang, "queen")
    assert "舟山市 (330900)" in caplog.text and "宁波市 (330200)" in caplog.text
    assert w["330900"].index.tolist() == ["330200"]
    assert "330900" in w["330200"].index  # joined symmetrically
    assert len(w.isolates) == 0
    links = island_links(zhejiang)
    assert links[["island", "neighbor"]].values.tolist() == [["330900", "330200"]]
    assert 60 < links["distance_km"].iloc[0] < 110  # Zhoushan - Ningbo centroids ~80 km
    with pytest.raises(AggloInputError, match=r"舟山市 \(330900\)"):
        spatial_weights(zhejiang, "queen", islands="error")


def test_zhoushan_on_all_cities_touches_shanghai(cities):
    """On the bundled 130 units Zhoushan's polygon meets Shanghai's along ~3 km (Yangshan /
    Donghai Bridge), so queen contiguity gives it a neighbour: no island to handle."""
    w = spatial_weights(cities, "queen", transform="B")
    assert w["330900"].index.tolist() == ["310100"]
    assert island_links(cities).empty


def test_island_counties_reported_and_joined(counties, caplog):
    with caplog.at_level(logging.WARNING, logger="agglo.analysis.autocorr"):
        w = spatial_weights(counties, "queen")
    assert "岱山县 (330921)" in caplog.text
    assert len(w.isolates) == 0
    assert w["330921"].index.tolist() == ["330902"]  # Daishan -> Dinghai (Zhoushan island)


def test_isolated_polygon_policies():
    g = five_cities()
    island = gpd.GeoDataFrame(
        {"adcode": ["x"], "name_zh": ["孤岛"], "y": [9.0]},
        geometry=[shapely.box(120, 30, 120.2, 30.2)],
        crs=4326,
    )
    g = pd.concat([g, island])
    with pytest.raises(AggloInputError, match=r"孤岛 \(x\)"):
        spatial_weights(g, "queen", islands="error")
    with pytest.warns(IslandWarning, match=r"孤岛 \(x\)"):
        kept = spatial_weights(g, "queen", islands="keep")
    assert kept.isolates.tolist() == ["x"]
    s = global_autocorrelation(g, "y", kept, permutations=0)
    # y = (a..e, x) = (1, 2, 3, 4, 5, 9), mean 4, z = (-3, -2, -1, 0, 1, 5), z'z = 40;
    # rows a..e as before: Wz = (-2, -2, -1, 0, 0), z'Wz = 6 + 4 + 1 = 11; island row = 0
    # I = n / S0 * z'Wz / z'z = 6 / 5 * 11 / 40 = 0.33; Geary: sum w (yi - yj)^2 = 5,
    # C = (n - 1) * 5 / (2 * S0 * z'z) = 5 * 5 / (2 * 5 * 40) = 0.0625
    assert float(s["moran_i"]) == pytest.approx(0.33)
    assert float(s["geary_c"]) == pytest.approx(0.0625)
    lisa = local_autocorrelation(g, "y", kept, permutations=9, seed=1)
    row = lisa.set_index(g["adcode"]).loc["x"]
    assert row["cluster"] == "island" and pd.isna(row["quadrant"]) and not row["significant"]
    joined = spatial_weights(g, "queen", island_neighbors=2, transform="B")
    assert set(joined["x"].index) == {"e", "d"}  # the two nearest (e at 112.25, d at 111.75 E)
    assert "x" in joined["e"].index and "x" in joined["d"].index


# ----------------------------------------------------------------------------- transitions


def test_lisa_transitions_count_quadrant_moves():
    g = lattice(4)
    w = spatial_weights(g, "rook")
    rng = np.random.default_rng(2)
    base = np.array([i + j for j in range(4) for i in range(4)], dtype=float)
    years = (2010, 2015, 2020)
    panel = pd.concat(
        [
            pd.DataFrame(
                {"adcode": g["adcode"], "year": t, "lag_score": base + rng.normal(0, 2, 16)}
            )
            for t in years
        ]
    )
    tr = lisa_transitions(panel, w, classes=2)
    # independent count: quadrants from local_autocorrelation each year, then crosstab
    quads = {
        t: local_autocorrelation(
            panel[panel["year"] == t].reset_index(drop=True), "lag_score", w, permutations=9
        ).set_index(g["adcode"].to_numpy())["quadrant"]
        for t in years
    }
    moves = pd.concat(
        [pd.DataFrame({"from": quads[a], "to": quads[b]}) for a, b in itertools.pairwise(years)]
    )
    expected = pd.crosstab(moves["from"], moves["to"]).reindex(
        index=["HH", "LH", "LL", "HL"], columns=["HH", "LH", "LL", "HL"], fill_value=0
    )
    np.testing.assert_array_equal(tr.counts.to_numpy(), expected.to_numpy())
    assert tr.counts.index.tolist() == ["HH", "LH", "LL", "HL"]
    np.testing.assert_allclose(tr.probabilities.sum(axis=1).dropna(), 1.0)
    assert tr.quadrants.columns.tolist() == list(years)
    assert int(tr.spatial_markov["count"].sum()) == 16 * 2


def test_lisa_transitions_needs_balanced_panel():
    g = lattice(3)
    w = spatial_weights(g, "rook")
    panel = pd.DataFrame(
        [
            {"adcode": a, "year": t, "lag_score": float(k + t)}
            for t in (1, 2)
            for k, a in enumerate(g["adcode"])
        ]
    ).iloc[1:]
    with pytest.raises(AggloInputError, match="missing in some years for 0000"):
        lisa_transitions(panel, w)


def test_tolerance_bridges_sliver_gaps():
    # two cells 0.0005 deg (~50 m at 30 N) apart: not contiguous, neighbours with a 200 m tolerance
    g = gpd.GeoDataFrame(
        {"adcode": ["a", "b", "c"], "y": [1.0, 2.0, 3.0]},
        geometry=[
            shapely.box(110, 30, 110.1, 30.1),
            shapely.box(110.1005, 30, 110.2, 30.1),
            shapely.box(110.2, 30, 110.3, 30.1),
        ],
        crs=4326,
    )
    with pytest.raises(AggloInputError, match=r"no neighbour under queen weights: a"):
        spatial_weights(g, islands="error")
    w = spatial_weights(g, tolerance_m=200.0, islands="error", transform="B")
    assert w["a"].index.tolist() == ["b"]
    assert sorted(w["b"].index) == ["a", "c"]
    # 20 m is not enough for a 50 m gap
    with pytest.raises(AggloInputError, match=r"no neighbour under queen weights: a"):
        spatial_weights(g, tolerance_m=20.0, islands="error")


@pytest.mark.parametrize("kind", ["queen", "rook"])
def test_scope_subgraphs_equal_contiguity_built_per_scope(cities, kind):
    """The pipeline builds the members' contiguity once and cuts each scope from it; that must
    be exactly libpysal's contiguity built on the scope's cities alone (islands included)."""
    from libpysal.graph import Graph

    from agglo.analysis.autocorr import (
        _members_contiguity,
        _prepare_units,
        _subset_graph,
        _weights_with_islands,
    )

    members = cities[cities["agglomeration_id"].notna()]
    wkw = {"k": 4, "threshold": None, "tolerance_m": 0.0}
    whole = _members_contiguity(members, kind, wkw)
    assert whole is not None and whole.n == len(members)
    rng = np.random.default_rng(14)
    subsets = [sub for _, sub in members.groupby("agglomeration_id")]
    # random thinned sets leave cities without neighbours (islands) and split components
    subsets += [members[rng.random(len(members)) < share] for share in (0.3, 0.6, 0.9)]
    n_isolates = 0
    for sub in subsets:
        units = _prepare_units(sub, "adcode")
        fresh = Graph.build_contiguity(units.geometry, rook=kind == "rook")
        cut = _subset_graph(whole, units.index)
        pd.testing.assert_series_equal(cut.adjacency, fresh.adjacency)
        assert list(cut.unique_ids) == list(fresh.unique_ids)
        n_isolates += len(fresh.isolates)
        # and the weights the stage uses (islands joined, row-standardised) are the same
        fast_w, fast_isl = _weights_with_islands(sub, kind, contiguity=whole, **wkw)
        slow_w, slow_isl = _weights_with_islands(sub, kind, **wkw)
        pd.testing.assert_series_equal(fast_w.adjacency, slow_w.adjacency)
        pd.testing.assert_frame_equal(fast_isl, slow_isl)
    assert n_isolates > 0  # the comparison covered islands


def test_scope_subgraph_refuses_unknown_units(cities):
    from agglo.analysis.autocorr import _members_contiguity, _prepare_units, _subset_graph

    members = cities[cities["agglomeration_id"].notna()]
    wkw = {"k": 4, "threshold": None, "tolerance_m": 0.0}
    whole = _members_contiguity(members.iloc[:20], "queen", wkw)
    with pytest.raises(AggloInputError, match="not in the contiguity graph"):
        _subset_graph(whole, _prepare_units(members.iloc[10:30], "adcode").index)
    assert _members_contiguity(members, "queen", {**wkw, "tolerance_m": 500.0}) is None
    assert _members_contiguity(members, "knn", wkw) is None
