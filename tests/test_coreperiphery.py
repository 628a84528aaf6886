"""Tests of agglo.analysis.coreperiphery: gravity, Borgatti-Everett coreness, city system, gaps, types."""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from agglo.analysis.coreperiphery import (
    _fit_discrete_exhaustive,
    _fit_discrete_local,
    city_system,
    core_periphery_gaps,
    coreness,
    gravity_interactions,
    seat_distances_km,
    structure_type,
)
from agglo.errors import AggloInputError, ValidationError


def _frame(a: np.ndarray, prefix: str = "c") -> pd.DataFrame:
    ids = [f"{prefix}{i:02d}" for i in range(a.shape[0])]
    return pd.DataFrame(a, index=pd.Index(ids, name="adcode"), columns=ids)


def _planted(n: int, core_idx: list[int], seed: int, noise: float = 1.0) -> tuple:
    """Block model: weight ~10 on ties touching the core, ~1 between periphery cities."""
    rng = np.random.default_rng(seed)
    core = np.zeros(n, dtype=bool)
    core[core_idx] = True
    base = np.where(np.logical_or.outer(core, core), 10.0, 1.0)
    w = np.triu(base + rng.uniform(0, noise, (n, n)), 1)
    return _frame(w + w.T), core


def _random_weighted(n: int, seed: int) -> pd.DataFrame:
    """Erdős-Rényi-like: every pair an i.i.d. exponential weight (no structure)."""
    rng = np.random.default_rng(seed)
    w = np.triu(rng.exponential(1.0, (n, n)), 1)
    return _frame(w + w.T)


def _pair_corr(a: np.ndarray, pattern: np.ndarray) -> float:
    iu = np.triu_indices(a.shape[0], 1)
    return float(np.corrcoef(a[iu], pattern[iu])[0, 1])


# ------------------------------------------------------------------------------- coreness


@pytest.mark.parametrize("method", ["continuous", "discrete"])
def test_planted_core_recovered_exactly(method):
    a, core = _planted(12, [2, 5, 9], seed=1)
    out = coreness(a, method=method, seed=7, n_perm=19)
    assert out.index.equals(a.index)
    assert out["core"].to_numpy().tolist() == core.tolist()
    assert out.attrs["fit"] > 0.9
    assert out.attrs["p_value"] == pytest.approx(1 / 20)  # observed beats all 19 nulls
    # core cities have the highest coreness
    assert out.loc[out.core, "coreness"].min() > out.loc[~out.core, "coreness"].max()


def test_planted_core_recovered_by_local_search():
    # 22 cities: above exhaustive_max, so the discrete fit uses seeded local search
    a, core = _planted(22, [0, 3, 11, 17], seed=2)
    out = coreness(a, method="discrete", seed=3, n_perm=0, exhaustive_max=16)
    assert out["core"].to_numpy().tolist() == core.tolist()
    assert np.isnan(out.attrs["p_value"])


def test_planted_core_recovered_continuous_large():
    # 45 cities: above 40 the continuous fit uses bounded L-BFGS-B instead of BFGS
    a, core = _planted(45, [4, 8, 15, 16, 23, 42], seed=5)
    out = coreness(a, method="continuous", seed=1, n_perm=0, restarts=1)
    assert out["core"].to_numpy().tolist() == core.tolist()
    cc = out["coreness"].to_numpy()
    assert out.attrs["fit"] == pytest.approx(_pair_corr(a.to_numpy(), np.outer(cc, cc)), abs=1e-9)


@pytest.mark.parametrize("method", ["continuous", "discrete"])
def test_random_network_low_fit_not_significant(method):
    a = _random_weighted(20, seed=11)
    planted = coreness(_planted(20, [1, 2, 3], seed=11)[0], method=method, seed=5, n_perm=0)
    out = coreness(a, method=method, seed=5, n_perm=19)
    assert out.attrs["fit"] < 0.6
    assert out.attrs["fit"] < planted.attrs["fit"] - 0.3
    assert out.attrs["p_value"] > 0.1
    # the null distribution is centred near the observed fit (same maximisation on both)
    assert abs(out.attrs["null_mean"] - out.attrs["fit"]) < 0.1


def test_continuous_closed_form_rank_one():
    # A_ij = c_i c_j off the diagonal: the ideal pattern itself, corr = 1 at c (unique up to
    # scale for n >= 5)
    c = np.array([1.0, 0.8, 0.5, 0.3, 0.2, 0.1])
    out = coreness(_frame(np.outer(c, c)), method="continuous", seed=0, n_perm=0)
    assert out.attrs["fit"] == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_allclose(out["coreness"].to_numpy(), c, atol=1e-4)
    # the core flag: the top-k by coreness maximising the discrete fit, checked by hand search
    a = np.outer(c, c)
    fits = []
    for k in range(1, 5):
        pattern = np.zeros(6)
        pattern[:k] = 1
        fits.append(_pair_corr(a, np.logical_or.outer(pattern, pattern).astype(float)))
    k_best = int(np.argmax(fits)) + 1
    assert out["core"].sum() == k_best
    assert out["core"].iloc[:k_best].all()


def test_continuous_matches_brute_force_grid():
    # a noisy core-periphery pattern on 4 cities (well-conditioned optimum)
    rng = np.random.default_rng(3)
    w = np.triu(
        np.outer([1.0, 0.7, 0.4, 0.2], [1.0, 0.7, 0.4, 0.2]) + rng.uniform(0, 0.1, (4, 4)), 1
    )
    a = w + w.T
    out = coreness(_frame(a), method="continuous", seed=0, n_perm=0)
    # brute force: c on a grid of [0, 1]^4 with the largest coordinate = 1 (corr is scale-free)
    iu = np.triu_indices(4, 1)
    g = np.linspace(0, 1, 41)
    best, best_c = -np.inf, None
    for top in range(4):
        others = np.array(list(itertools.product(g, repeat=3)))
        cs = np.insert(others, top, 1.0, axis=1)
        p = cs[:, iu[0]] * cs[:, iu[1]]
        pc = p - p.mean(axis=1, keepdims=True)
        ac = a[iu] - a[iu].mean()
        with np.errstate(invalid="ignore", divide="ignore"):
            r = pc @ ac / (np.linalg.norm(pc, axis=1) * np.linalg.norm(ac))
        r = np.nan_to_num(r, nan=-np.inf)
        if r.max() > best:
            best, best_c = r.max(), cs[np.argmax(r)]
    assert out.attrs["fit"] >= best - 1e-12  # the optimiser is at least as good as the grid
    assert out.attrs["fit"] - best < 5e-3  # and the grid (step 0.025) comes close
    np.testing.assert_allclose(out["coreness"].to_numpy(), best_c, atol=0.05)
    # the reported fit is the correlation of the returned coreness
    cc = out["coreness"].to_numpy()
    assert out.attrs["fit"] == pytest.approx(_pair_corr(a, np.outer(cc, cc)), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discrete_matches_itertools_brute_force(seed):
    rng = np.random.default_rng(seed)
    w = np.triu(rng.gamma(0.7, 1.0, (7, 7)), 1)
    a = w + w.T
    best, best_set = -np.inf, None
    for k in range(1, 6):  # a core of n-1 makes every pair a core tie: undefined
        for core in itertools.combinations(range(7), k):
            x = np.zeros(7)
            x[list(core)] = 1
            r = _pair_corr(a, np.logical_or.outer(x, x).astype(float))
            if r > best + 1e-12:
                best, best_set = r, set(core)
    out = coreness(_frame(a), method="discrete", seed=0, n_perm=0)
    assert out.attrs["fit"] == pytest.approx(best, abs=1e-10)
    assert set(np.flatnonzero(out["core"].to_numpy())) == best_set
    # local search reaches the same optimum
    r_local, core_local = _fit_discrete_local(a, np.random.default_rng(seed), 20)
    assert r_local == pytest.approx(best, abs=1e-10)
    assert set(np.flatnonzero(core_local)) == best_set


def test_local_search_equals_exhaustive_on_12_cities():
    for seed in range(3):
        rng = np.random.default_rng(seed + 10)
        w = np.triu(rng.lognormal(0, 1.0, (12, 12)), 1)
        a = w + w.T
        r_ex, core_ex = _fit_discrete_exhaustive(a)
        r_ls, core_ls = _fit_discrete_local(a, np.random.default_rng(0), 20)
        assert r_ls == pytest.approx(r_ex, abs=1e-10)
        assert core_ls.tolist() == core_ex.tolist()


@pytest.mark.parametrize("method", ["continuous", "discrete"])
def test_coreness_reproducible_for_a_seed(method):
    a = _random_weighted(10, seed=4)
    one = coreness(a, method=method, seed=42, n_perm=9)
    two = coreness(a, method=method, seed=42, n_perm=9)
    pd.testing.assert_frame_equal(one, two)
    assert one.attrs == two.attrs


def test_coreness_does_not_mutate_input():
    a, _ = _planted(8, [0, 1], seed=0)
    before = a.copy()
    coreness(a, method="discrete", n_perm=3, transform="log")
    pd.testing.assert_frame_equal(a, before)


def test_coreness_rejects_bad_input():
    a, _ = _planted(6, [0], seed=0)
    with pytest.raises(
        AggloInputError, match=r"method must be one of continuous, discrete; got .fuzzy."
    ):
        coreness(a, method="fuzzy")
    with pytest.raises(AggloInputError, match="symmetric"):
        b = a.copy()
        b.iloc[0, 1] += 1
        coreness(b)
    with pytest.raises(AggloInputError, match="same labels"):
        coreness(a.iloc[:, ::-1])
    with pytest.raises(AggloInputError, match="at least 3 cities"):
        coreness(a.iloc[:2, :2])
    with pytest.raises(AggloInputError, match="all interactions are equal"):
        coreness(_frame(np.ones((5, 5))))


def test_cpnet_borgatti_everett_cross_check():
    cpnet = pytest.importorskip(
        "cpnet", reason="cpnet (test-only cross-check, needs numba) is not installed"
    )
    import networkx as nx
    import scipy.sparse as sp
    from cpnet.BE import _score_

    rng = np.random.default_rng(0)
    n = 12
    core = np.zeros(n, dtype=bool)
    core[[1, 4, 7]] = True
    prob = np.where(np.logical_or.outer(core, core), 0.9, 0.1)
    a = np.triu((rng.random((n, n)) < prob).astype(float), 1)
    a = a + a.T  # the binarised network
    out = coreness(_frame(a), method="discrete", seed=0, n_perm=0)
    ours = out["core"].to_numpy()
    s = sp.csr_matrix(a)
    # 1) same fitness function: cpnet's BE quality of our core set equals our correlation
    q_ours, _ = _score_(s.indptr, s.indices, s.data, np.zeros(n, dtype=np.int64), ours * 1.0, n)
    assert q_ours == pytest.approx(out.attrs["fit"], abs=1e-12)
    for k in range(5):  # and of arbitrary sets
        x = (np.random.default_rng(k).random(n) < 0.4) * 1.0
        q, _ = _score_(s.indptr, s.indices, s.data, np.zeros(n, dtype=np.int64), x, n)
        assert q == pytest.approx(_pair_corr(a, np.logical_or.outer(x, x) * 1.0), abs=1e-12)
    # 2) exhaustive search is optimal: cpnet's Kernighan-Lin heuristic cannot beat it
    be = cpnet.BE(num_runs=10)
    be.detect(nx.from_numpy_array(a))
    assert out.attrs["fit"] + 1e-12 >= be.Q_
    # 3) on a perfect core-periphery graph ours finds the planted core with fit 1, and cpnet's
    # quality of that set is 1 too (cpnet 0.0.21's Kernighan-Lin itself returned {0, 1, 4, 7},
    # Q = 0.784 here: a heuristic, which is why agglo searches exhaustively for n <= 16)
    perfect = np.logical_or.outer(core, core).astype(float)
    np.fill_diagonal(perfect, 0)
    mine = coreness(_frame(perfect), method="discrete", n_perm=0)
    assert mine["core"].to_numpy().tolist() == core.tolist()
    assert mine.attrs["fit"] == pytest.approx(1.0)
    s = sp.csr_matrix(perfect)
    q, _ = _score_(s.indptr, s.indices, s.data, np.zeros(n, dtype=np.int64), core * 1.0, n)
    assert q == pytest.approx(1.0)
    be.detect(nx.from_numpy_array(perfect))
    assert be.Q_ <= 1.0 + 1e-12


# ------------------------------------------------------------------------------- gravity


def test_gravity_hand_computed():
    cities = pd.DataFrame(
        {"adcode": ["a", "b", "c"], "population": [4.0, 1.0, 9.0], "gdp": [1.0, 4.0, 1.0]}
    )
    seats = pd.DataFrame({"adcode": ["a", "b", "c"], "lon": [0.0, 0.0, 0.0], "lat": [0, 1, 3]})
    t = gravity_interactions(cities, seats=seats)
    # masses sqrt(P G): a = 2, b = 2, c = 3; one degree of latitude at the equator 110.574 km,
    # a-c three degrees = 331.73 km (Geod); beta = 2
    d_ab = 110.574
    assert t.loc["a", "b"] == pytest.approx(2 * 2 / d_ab**2, rel=1e-4)
    d = seat_distances_km(seats)
    assert t.loc["a", "c"] == pytest.approx(2 * 3 / d.loc["a", "c"] ** 2, rel=1e-12)
    assert d.loc["a", "c"] == pytest.approx(331.7, abs=0.1)
    assert (np.diag(t) == 0).all()
    np.testing.assert_allclose(t.to_numpy(), t.to_numpy().T)
    # one mass column, beta 1, and a user distance matrix (e.g. travel minutes)
    minutes = pd.DataFrame(
        [[0, 30, 60], [30, 0, 45], [60, 45, 0]], index=list("abc"), columns=list("abc")
    )
    t1 = gravity_interactions(cities, mass="population", beta=1.0, distance=minutes)
    assert t1.loc["b", "c"] == pytest.approx(1 * 9 / 45)


def test_gravity_validation_collects_problems():
    cities = pd.DataFrame({"adcode": ["a", "a", "b"], "population": [1.0, np.nan, -2], "gdp": 1.0})
    with pytest.raises(ValidationError, match="duplicate ids") as err:
        gravity_interactions(cities, seats=pd.DataFrame({"adcode": ["a"], "lon": [0], "lat": [0]}))
    assert "missing or negative" in str(err.value)
    with pytest.raises(AggloInputError, match="beta must be a finite number >= 0, got -1"):
        gravity_interactions(cities, beta=-1)
    same = pd.DataFrame({"adcode": ["a", "b"], "population": [1.0, 2.0], "gdp": [1.0, 1.0]})
    seats = pd.DataFrame({"adcode": ["a", "b"], "lon": [1.0, 1.0], "lat": [2.0, 2.0]})
    with pytest.raises(AggloInputError, match="share a seat"):
        gravity_interactions(same, seats=seats)
    with pytest.raises(AggloInputError, match="distance must be one of"):
        gravity_interactions(same, distance="euclid", seats=seats)


# ------------------------------------------------------------------------------- city system


def test_city_system_hand_computed():
    c = pd.DataFrame(
        {
            "adcode": list("abcdefgh"),
            "agglomeration_id": ["x"] * 4 + ["y"] * 4,
            "population": [120.0, 60, 40, 30, 100, 50, 20, 10],
        }
    )
    s = city_system(c, by="agglomeration_id", name_col=None)
    x, y = s.loc["x"], s.loc["y"]
    # x follows P = 120 / r exactly
    assert x.p1_p2 == 2.0 and x.p2_p3 == 1.5
    assert x.four_city == pytest.approx(120 / 130)
    assert x.zipf_q == pytest.approx(1.0) and x.zipf_r2 == pytest.approx(1.0)
    assert x.hhi == pytest.approx((120**2 + 60**2 + 40**2 + 30**2) / 250**2)  # 0.328
    assert x.top_share == pytest.approx(120 / 250)
    # y: ln P = [4.605170, 3.912023, 2.995732, 2.302585] on ln r = [0, 0.693147, 1.098612,
    # 1.386294]; OLS by hand: mean ln r = 0.794513, deviations [-0.794513, -0.101366,
    # 0.304099, 0.591781] and [1.151292, 0.458145, -0.458146, -1.151293]:
    # Sxy = -0.914716 - 0.046440 - 0.139322 - 0.681313 = -1.781791,
    # Sxx = 0.631251 + 0.010275 + 0.092476 + 0.350205 = 1.084207 -> slope -1.64341
    assert y.zipf_q == pytest.approx(1.64341, abs=1e-4)
    assert y.four_city == pytest.approx(100 / 80)
    assert (y.p1_id, y.p2_id, y.p3_id) == ("e", "f", "g")
    assert y.n_cities == 4 and y.total == 180


def test_city_system_rejects_non_positive_size():
    c = pd.DataFrame({"adcode": ["a", "b"], "population": [1.0, 0.0]})
    with pytest.raises(AggloInputError, match=r"must be a number > 0 .* for \['b'\]"):
        city_system(c)


# ------------------------------------------------------------------------------- gaps


def test_core_periphery_gaps_directions():
    panel = pd.DataFrame(
        {
            "adcode": ["a", "b", "c"] * 4,
            "year": [2010] * 6 + [2020] * 6,
            "indicator": (["population"] * 3 + ["pm25"] * 3) * 2,
            "value": [10, 4, 6, 40, 50, 50, 12, 7, 5, 45, 50, 50],
        }
    )
    cores = pd.DataFrame({"adcode": ["a", "b", "c"], "agglomeration_id": "x", "core": [1, 0, 0]})
    g = core_periphery_gaps(panel, cores).set_index(["indicator", "year"])
    # population: 10/5 = 2 -> 12/6 = 2: no change -> stable
    assert g.loc[("population", 2010), "ratio"] == 2.0
    assert g.loc[("population", 2020), "trend"] == "stable"
    # pm25 (lower is better): core 40 vs 50 -> advantage 1.25; then 45 vs 50 -> 1.111: diffusing
    assert g.loc[("pm25", 2010), "advantage"] == pytest.approx(1.25)
    assert g.loc[("pm25", 2020), "change"] == pytest.approx((50 / 45) / 1.25 - 1)
    assert g.loc[("pm25", 2020), "trend"] == "diffusing"
    assert g.loc[("pm25", 2010), "trend"] is None
    assert g.loc[("pm25", 2020), "direction"] == -1
    # a per-year core set and an explicit direction override
    cores_y = pd.DataFrame(
        {
            "adcode": ["a", "b", "c"] * 2,
            "year": [2010] * 3 + [2020] * 3,
            "agglomeration_id": "x",
            "core": [1, 0, 0, 1, 1, 0],
        }
    )
    g2 = core_periphery_gaps(
        panel, cores_y, indicators=["population"], directions={"population": -1}
    )
    # 2020: core (12 + 7) / 2 = 9.5 over 5 -> 1.9; direction -1: advantage 1/2 -> 1/1.9
    assert g2["ratio"].tolist() == pytest.approx([2.0, 1.9])
    assert g2["trend"].tolist() == [None, "polarising"]


def test_core_periphery_gaps_validation():
    with pytest.raises(ValidationError, match="cores lacks column 'core'"):
        core_periphery_gaps(
            pd.DataFrame(columns=["adcode", "year", "indicator", "value"]),
            pd.DataFrame({"adcode": [], "agglomeration_id": []}),
        )


# ------------------------------------------------------------------------------- structure


def test_structure_type_rules():
    def system(sizes):
        c = pd.DataFrame({"adcode": [f"c{i}" for i in range(len(sizes))], "population": sizes})
        return city_system(c, name_col=None)

    zipf = [120 / r for r in range(1, 9)]  # P1/P2 = 2, q = 1
    assert structure_type(system(zipf)).structure_type.iloc[0] == "gradient"
    assert structure_type(system([500.0, 100, 80, 60, 40])).structure_type.iloc[0] == "single core"
    assert structure_type(system([100.0, 90, 20, 15])).structure_type.iloc[0] == "dumbbell"
    assert structure_type(system([100.0, 95, 92, 90, 88])).structure_type.iloc[0] == "scattered"
    # the core set matters: a dominant city with three core cities is not "single core"
    s = system([500.0, 100, 80, 60, 40])
    cores = pd.DataFrame({"adcode": ["c0", "c1", "c2", "c3", "c4"], "core": [1, 1, 1, 0, 0]})
    out = structure_type(s, cores)
    assert out.structure_type.iloc[0] != "single core" and out.n_core.iloc[0] == 3
    # dumbbell needs both large cities in the core
    s2 = system([100.0, 90, 20, 15])
    only_one = pd.DataFrame({"adcode": ["c0", "c1", "c2", "c3"], "core": [1, 0, 0, 0]})
    assert structure_type(s2, only_one).structure_type.iloc[0] != "dumbbell"
    # thresholds are parameters
    assert structure_type(system(zipf), single_primacy=1.9).structure_type.iloc[0] == "single core"


# ------------------------------------------------------------------------------- census


def _census_panel(shared_data) -> pd.DataFrame:
    path = shared_data / "census" / "census_city_2010-2020_v1.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    raw = pd.read_csv(
        path,
        encoding="utf-8-sig",
        dtype={"city_code": str},
        usecols=["city_code", "popu_2010", "popu_2020"],
    )
    raw["adcode"] = raw["city_code"].replace({"500100": "500000"})  # Chongqing municipality
    long = raw.melt(id_vars="adcode", value_vars=["popu_2010", "popu_2020"], value_name="persons")
    long["year"] = long["variable"].str[-4:].astype(int)
    return long.assign(indicator="population", value=long["persons"] / 1e4)[
        ["adcode", "year", "indicator", "value"]
    ]


def test_census_chengdu_polarises(shared_data, cities):
    panel = _census_panel(shared_data)
    cy = cities[cities["agglomeration_id"] == "cy"]
    cy_panel = panel[panel["adcode"].isin(cy["adcode"])]
    assert cy_panel.groupby("year").size().tolist() == [16, 16]
    # direction from the raw census numbers: shares of the cy total
    wide = cy_panel.pivot(index="adcode", columns="year", values="value")
    share = wide / wide.sum()
    rising = share[2020] > share[2010]
    assert rising["510100"]  # Chengdu
    assert not rising[["510600", "511400", "512000"]].any()  # Deyang, Meishan, Ziyang
    # agglo: Chengdu as core against its three neighbours -> the ratio polarises like the raw data
    four = ["510100", "510600", "511400", "512000"]
    cores = pd.DataFrame({"adcode": four, "agglomeration_id": "cy", "core": [1, 0, 0, 0]})
    g = core_periphery_gaps(panel, cores).set_index("year")
    raw_ratio = wide.loc["510100"] / wide.loc[four[1:]].mean()
    assert g["ratio"].to_numpy() == pytest.approx(raw_ratio.to_numpy())
    assert g.loc[2020, "trend"] == (
        "polarising" if raw_ratio[2020] > raw_ratio[2010] else "diffusing"
    )
    assert g.loc[2020, "trend"] == "polarising"
    # the gravity network (population as mass) puts Chengdu and Chongqing in the core both years
    for year in (2010, 2020):
        pop = cy.merge(cy_panel[cy_panel.year == year], on="adcode")
        pop = gpd.GeoDataFrame(pop, geometry="geometry", crs=cy.crs)
        t = gravity_interactions(pop.rename(columns={"value": "population"}), mass="population")
        out = coreness(t, method="discrete", seed=1, n_perm=0)
        assert {"510100", "500000"} <= set(out.index[out.core])
        system = city_system(pop.rename(columns={"value": "population"}))
        assert system["total"].iloc[0] == pytest.approx(wide[year].sum())
        # seed 003: Chengdu-Chongqing is the dumbbell (哑铃型) system. From the raw census:
        # P1/P2 = Chongqing / Chengdu < 2 and P2/P3 = Chengdu / Nanchong >= 2
        top = wide[year].sort_values(ascending=False)
        assert list(top.index[:2]) == ["500000", "510100"]
        assert top.iloc[0] / top.iloc[1] < 2 and top.iloc[1] / top.iloc[2] >= 2
        kind = structure_type(system, out.reset_index()).structure_type.iloc[0]
        assert kind == "dumbbell"


@pytest.mark.parametrize("method", ["continuous", "discrete"])
def test_coreness_invariant_to_order_and_scale(method):
    a, _ = _planted(9, [0, 4], seed=8, noise=5.0)
    base = coreness(a, method=method, seed=0, n_perm=0)
    order = np.random.default_rng(1).permutation(9)
    shuffled = a.iloc[order, order] * 1000.0  # relabelled rows/columns, other units
    out = coreness(shuffled, method=method, seed=0, n_perm=0)
    assert out.index.tolist() == a.index[order].tolist()
    assert out.attrs["fit"] == pytest.approx(base.attrs["fit"], abs=1e-8)
    pd.testing.assert_series_equal(out["core"].loc[a.index], base["core"])
    np.testing.assert_allclose(out["coreness"].loc[a.index], base["coreness"], atol=1e-4)


def _gravity_like(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.lognormal(0, 1, n)
    xy = rng.uniform(0, 5, (n, 2))
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, 1.0)
    a = np.outer(m, m) / d**2
    np.fill_diagonal(a, 0.0)
    return a


def test_batched_newton_hessian_matches_finite_differences():
    from agglo.analysis.coreperiphery import _squared_batch, _squared_objective

    a = _gravity_like(7, 3)
    iu = np.triu_indices(7, 1)
    ac = a[iu] - a[iu].mean()
    na = float(np.sqrt(ac @ ac))
    acm = np.zeros((7, 7))
    acm[iu] = ac
    acm = acm + acm.T
    x = np.random.default_rng(0).uniform(0.2, 1.0, 7)
    f, g, h = _squared_batch(x[None], acm[None], np.array([na]), True)
    f0, g0 = _squared_objective(x, ac, na, iu)  # the pair-vector form
    assert f[0] == pytest.approx(f0, abs=1e-14)
    np.testing.assert_allclose(g[0], g0, atol=1e-13)
    eps = 1e-6
    fd = np.array(
        [
            (
                _squared_objective(x + eps * e, ac, na, iu)[1]
                - _squared_objective(x - eps * e, ac, na, iu)[1]
            )
            / (2 * eps)
            for e in np.eye(7)
        ]
    )
    np.testing.assert_allclose(h[0], fd, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("n", [6, 12, 20])
def test_batched_newton_reaches_scipy_bfgs_optima(n):
    """Every start: the batched Newton optimum equals scipy's BFGS one (same objective)."""
    from scipy import optimize

    from agglo.analysis.coreperiphery import (
        _continuous_objective,
        _newton_batch,
        _squared_objective,
    )

    a = _gravity_like(n, n)
    iu = np.triu_indices(n, 1)
    ac = a[iu] - a[iu].mean()
    na = float(np.sqrt(ac @ ac))
    acm = np.zeros((n, n))
    acm[iu] = ac
    acm = acm + acm.T
    starts = np.random.default_rng(1).uniform(0.05, 1.0, (6, n))
    starts /= np.sqrt((starts**2).sum(axis=1, keepdims=True))
    x, _ = _newton_batch(np.sqrt(starts), np.repeat(acm[None], 6, 0), np.full(6, na))
    for k in range(6):
        res = optimize.minimize(
            _squared_objective,
            np.sqrt(starts[k]),
            args=(ac, na, iu),
            jac=True,
            method="BFGS",
            options={"gtol": 1e-7, "maxiter": 2000},
        )
        r_bfgs = -_continuous_objective(res.x**2, ac, na, iu)[0]
        r_newton = -_continuous_objective(x[k] ** 2, ac, na, iu)[0]
        assert r_newton == pytest.approx(r_bfgs, abs=1e-9)
        assert r_newton >= r_bfgs - 1e-12  # Newton converges at least as tightly


def test_periphery_sums_match_the_direct_quadratic_form():
    from agglo.analysis.coreperiphery import _periphery_sums

    a = _gravity_like(9, 4)
    masks = np.arange(1 << 9)
    y = ((masks[:, None] & (1 << np.arange(9))) == 0).astype(float)
    np.testing.assert_allclose(
        _periphery_sums(a), 0.5 * np.einsum("ij,jk,ik->i", y, a, y), rtol=1e-13
    )


def _local_search_one_by_one(a: np.ndarray, rng: np.random.Generator, restarts: int) -> tuple:
    """Reference: the local search one start after the other, drawing the generator as it goes."""
    from agglo.analysis.coreperiphery import _discrete_r

    n = a.shape[0]
    iu = np.triu_indices(n, 1)
    vals = a[iu]
    total, ss = float(vals.sum()), float(((vals - vals.mean()) ** 2).sum())
    order = np.argsort(-a.sum(axis=1), kind="stable")
    starts = [np.isin(np.arange(n), order[:k]) for k in range(1, max(2, n - 1))]
    starts += [rng.random(n) < rng.uniform(0.1, 0.6) for _ in range(restarts)]
    best_r, best_core = -np.inf, None
    for core in starts:
        core = core.copy()
        if core.sum() == 0:
            core[rng.integers(n)] = True
        while True:
            y = (~core).astype(float)
            rowp = a @ y
            s_pp, n_p = 0.5 * float(y @ rowp), float(y.sum())
            cur = _discrete_r(np.array([s_pp]), np.array([n_p]), n, total, ss)[0]
            s_new = np.where(core, s_pp + rowp, s_pp - rowp)
            r = _discrete_r(s_new, np.where(core, n_p + 1, n_p - 1), n, total, ss)
            i = int(np.argmax(r))
            if r[i] <= cur + 1e-12:
                break
            core[i] = ~core[i]
        if cur > best_r + 1e-12 or (abs(cur - best_r) <= 1e-12 and core.sum() < best_core.sum()):
            best_r, best_core = float(cur), core.copy()
    return best_r, best_core


@pytest.mark.parametrize("n", [9, 20, 31])
def test_batched_local_search_equals_one_by_one(n):
    """All starts of all networks at once: the same cores and fits as one start at a time."""
    from agglo.analysis.coreperiphery import _discrete_local_batch, _local_starts

    mats = np.stack([_gravity_like(n, s) for s in range(5)])
    mats[3] = np.log1p(mats[3])  # a flatter network: more flips per start
    starts = np.stack([_local_starts(m, np.random.default_rng(k), 10) for k, m in enumerate(mats)])
    r, core = _discrete_local_batch(mats, starts)
    for k, m in enumerate(mats):
        r_ref, core_ref = _local_search_one_by_one(m, np.random.default_rng(k), 10)
        assert r[k] == pytest.approx(r_ref, abs=1e-13)
        assert core[k].tolist() == core_ref.tolist()


def test_batched_exhaustive_search_equals_itertools():
    """A stack of permuted networks searched at once equals the brute force of each."""
    from agglo.analysis.coreperiphery import _discrete_exhaustive_batch

    rng = np.random.default_rng(5)
    w = np.triu(rng.gamma(0.7, 1.0, (8, 8)), 1)
    iu = np.triu_indices(8, 1)
    mats = []
    for _ in range(6):
        b = np.zeros((8, 8))
        b[iu] = rng.permutation(w[iu])
        mats.append(b + b.T)
    r, core = _discrete_exhaustive_batch(np.stack(mats))
    for k, a in enumerate(mats):
        best, best_set = -np.inf, None
        for size in range(1, 7):
            for members in itertools.combinations(range(8), size):
                x = np.zeros(8)
                x[list(members)] = 1
                rr = _pair_corr(a, np.logical_or.outer(x, x).astype(float))
                if rr > best + 1e-12:
                    best, best_set = rr, set(members)
        assert r[k] == pytest.approx(best, abs=1e-12)
        assert set(np.flatnonzero(core[k])) == best_set


def test_discrete_nulls_equal_fitting_each_permutation():
    """The batched permutation test draws and fits exactly as one permutation at a time."""
    from agglo.analysis.coreperiphery import _fit, _null_fits

    for n, exhaustive_max in ((10, 16), (22, 16)):
        a = _gravity_like(n, 7)
        nulls = _null_fits(a, "discrete", np.random.default_rng(3), 6, 2, exhaustive_max, False)
        prng = np.random.default_rng(3)
        iu = np.triu_indices(n, 1)
        ref = []
        for _ in range(6):
            b = np.zeros_like(a)
            b[iu] = prng.permutation(a[iu])
            b = b + b.T
            if n > exhaustive_max:
                ref.append(_local_search_one_by_one(b, prng, 10)[0])
            else:
                ref.append(_fit(b, "discrete", prng, 2, exhaustive_max)[0])
        np.testing.assert_allclose(nulls, ref, atol=1e-13)


def test_star_ridge_supremum_matches_a_direct_maximisation():
    """The closed-form star fit equals maximising corr(A, star(w)) over w >= 0 directly, and
    the continuous fit tends to it as c concentrates on the centre."""
    from scipy import optimize

    from agglo.analysis.coreperiphery import _star_fit

    n = 9
    a = _gravity_like(n, 11)
    iu = np.triu_indices(n, 1)
    ac = np.zeros((n, n))
    ac[iu] = a[iu] - a[iu].mean()
    ac = ac + ac.T
    na = float(np.sqrt((ac[iu] ** 2).sum()))
    for k in (0, 4):

        def neg_corr(w, k=k):
            c = np.zeros(n)
            c[np.arange(n) != k] = w
            star = np.zeros((n, n))
            star[k], star[:, k] = c, c
            return -_pair_corr(a, star)

        best = min(
            optimize.minimize(neg_corr, w0, method="L-BFGS-B", bounds=[(0, None)] * (n - 1)).fun
            for w0 in np.random.default_rng(k).uniform(0.1, 1, (5, n - 1))
        )
        r_star = _star_fit(ac, na, k)
        assert r_star == pytest.approx(-best, abs=1e-6)
        assert r_star >= -best - 1e-9  # the closed form is the exact optimum
        # c = e_k + eps w*: the fit tends to r_star as eps -> 0 (from below where the ridge
        # attracts a descent, from above where it does not)
        res = optimize.minimize(
            neg_corr, np.ones(n - 1), method="L-BFGS-B", bounds=[(0, None)] * (n - 1)
        )
        w = np.zeros(n)
        w[np.arange(n) != k] = res.x / res.x.max()
        gaps = []
        for eps in (1e-2, 1e-4, 1e-6):
            c = eps * w
            c[k] = 1.0
            gaps.append(r_star - _pair_corr(a, np.outer(c, c)))
        assert abs(gaps[2]) <= abs(gaps[1]) + 1e-12 <= abs(gaps[0]) + 2e-12 and abs(gaps[2]) < 1e-5


@pytest.mark.parametrize("n", [6, 16, 31])
def test_null_fits_with_star_limit_equal_full_newton(n):
    """Stopping Newton on a star ridge and scoring its supremum gives the fits Newton reaches
    by running on (to its ~1e-9 rounding of that supremum)."""
    from agglo.analysis.coreperiphery import _continuous_starts, _fit_continuous

    rng = np.random.default_rng(n)
    a = _gravity_like(n, 2 * n)
    iu = np.triu_indices(n, 1)
    mats, starts = [], []
    for _ in range(12):
        b = np.zeros((n, n))
        b[iu] = rng.permutation(a[iu])
        mats.append(b + b.T)
        starts.append(_continuous_starts(mats[-1], rng, 2))
    fast = np.array([r for r, _ in _fit_continuous(mats, starts, star_limit=True)])
    full = np.array([r for r, _ in _fit_continuous(mats, starts)])
    np.testing.assert_allclose(fast, full, atol=5e-8)
    assert (fast >= full - 1e-12).all()  # the supremum is never below Newton's stop


@pytest.mark.parametrize("n", [5, 6, 12, 26])
def test_observed_continuous_fit_at_least_scipy_bfgs(n):
    """The observed fit (Newton; BFGS added only on a limit pattern) is never worse than
    scipy's BFGS from the same starts, and its coreness is BFGS's where both converge."""
    from scipy import optimize

    from agglo.analysis.coreperiphery import (
        _continuous_objective,
        _continuous_starts,
        _squared_objective,
    )

    def scipy_bfgs(a, starts):  # best over the starts, by scipy itself
        iu = np.triu_indices(a.shape[0], 1)
        ac = a[iu] - a[iu].mean()
        na = float(np.sqrt(ac @ ac))
        fits = []
        for c0 in starts:
            res = optimize.minimize(
                _squared_objective,
                np.sqrt(c0),
                args=(ac, na, iu),
                jac=True,
                method="BFGS",
                options={"gtol": 1e-7, "maxiter": 2000},
            )
            fits.append((-_continuous_objective(res.x**2, ac, na, iu)[0], res.x**2))
        r, c = max(fits, key=lambda f: f[0])
        return r, c / c.max()

    for seed in range(3):
        a = _gravity_like(n, 100 * n + seed)
        out = coreness(_frame(a), method="continuous", seed=seed, n_perm=0)
        fit_seq, _ = np.random.SeedSequence(seed).spawn(2)
        starts = _continuous_starts(a, np.random.default_rng(fit_seq), 2)
        r_bfgs, c_bfgs = scipy_bfgs(a, starts)
        assert out.attrs["fit"] >= r_bfgs - 1e-12
        assert out.attrs["fit"] == pytest.approx(r_bfgs, abs=1e-8)
        if (c_bfgs > 1e-6).sum() >= 3:  # two cities only: one pair, c is not identifiable
            np.testing.assert_allclose(out["coreness"].to_numpy(), c_bfgs, atol=1e-4)


def test_fits_run_on_one_blas_thread_with_the_same_result():
    """The batched fits run with BLAS limited to one thread (threadpoolctl), and a coreness
    fit gives the same numbers as with BLAS's own thread count (the Newton steps are the same
    LAPACK calls)."""
    from threadpoolctl import threadpool_info

    from agglo.analysis import coreperiphery as cp

    with cp._one_blas_thread():
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert inside and all(t == 1 for t in inside)
    a = pd.DataFrame(_gravity_like(12, 2))
    limited = coreness(a, n_perm=5, seed=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cp, "_BLAS", [None])  # as without threadpoolctl: thread count untouched
        free = coreness(a, n_perm=5, seed=3)
    np.testing.assert_allclose(limited["coreness"], free["coreness"], atol=1e-12)
    assert limited.attrs["fit"] == pytest.approx(free.attrs["fit"], abs=1e-12)
    assert limited.attrs["p_value"] == free.attrs["p_value"]


def test_blas_limit_is_shared_by_nested_and_concurrent_users():
    """``_one_blas_thread`` from two threads at once and nested: BLAS stays on one thread
    until the last user leaves, then has its own thread count again."""
    import threading

    from threadpoolctl import threadpool_info

    from agglo.analysis import coreperiphery as cp

    def counts() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = counts()
    inside_first, go, done = threading.Event(), threading.Event(), []

    def worker() -> None:
        with cp._one_blas_thread():
            inside_first.set()
            go.wait(10)
            done.append(counts())

    t = threading.Thread(target=worker)
    with cp._one_blas_thread():
        t.start()
        inside_first.wait(10)
        with cp._one_blas_thread():
            assert all(c == 1 for c in counts())
    # the main thread left first: the worker is still limited
    go.set()
    t.join(10)
    assert done and all(c == 1 for c in done[0])
    assert counts() == before


def test_null_starts_from_one_stacked_eigh_equal_one_by_one():
    """The permutation nulls' continuous starts (eigenvectors from one stacked ``eigh``) are,
    bit for bit, those of drawing each permutation and its starts one after the other with
    ``_continuous_starts``; the generator ends in the same state."""
    from agglo.analysis import coreperiphery as cp

    a = _gravity_like(9, 4)
    np.fill_diagonal(a, 0.0)
    seen = {}

    def capture(mats, starts, **kwargs):
        seen["mats"], seen["starts"] = mats, starts
        return [(0.0, np.ones(9)) for _ in mats]

    prng = np.random.default_rng(11)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cp, "_fit_continuous", capture)
        cp._null_fits(a, "continuous", prng, 7, 2, 16, False)
    ref = np.random.default_rng(11)
    vals, pairs = cp._pair_values(a)
    for k in range(7):
        b = np.zeros_like(a)
        b[pairs[:, 0], pairs[:, 1]] = ref.permutation(vals)
        b += b.T
        assert np.array_equal(seen["mats"][k], b)
        one = cp._continuous_starts(b, ref, 2)
        assert len(one) == len(seen["starts"][k]) == 4
        for p, q in zip(one, seen["starts"][k], strict=True):
            assert np.array_equal(p, q)
    assert prng.random() == ref.random()


def _random_hessians(rng: np.random.Generator, b: int, n: int, low: float) -> np.ndarray:
    """``b`` symmetric n x n matrices with smallest eigenvalue ``low``, the others up to 50."""
    q, _ = np.linalg.qr(rng.normal(size=(b, n, n)))
    w = np.sort(rng.uniform(0, 1, (b, n)), axis=1)
    w = low + (50.0 - low) * w**3
    w[:, 0] = low
    return np.einsum("bij,bj,bkj->bik", q, w, q)


@pytest.mark.parametrize("n", [5, 16, 31])
def test_cholesky_directions_equal_eigh_directions_on_positive_definite(n):
    """Where the Hessian is safely positive definite the fast step (Cholesky test + LU solve)
    equals the eigendecomposition step (``_eigh_directions``) to rounding (rtol 1e-10 at
    condition numbers up to 5e3), and every such Hessian takes the fast path."""
    from agglo.analysis import coreperiphery as cp

    rng = np.random.default_rng(n)
    h = _random_hessians(rng, 64, n, 0.01)
    g = rng.normal(scale=1e-4, size=(64, n))  # small gradient: floor |g| / 0.25 < 0.01
    assert cp._safely_positive_definite(h, g).all()
    assert cp._safely_positive_definite(h, g, wide=True).all()
    plain = -np.einsum("bij,bj->bi", np.linalg.inv(h), g)  # from an independent inverse
    for fast in (False, True):
        d = cp._newton_directions(h, g, fast=fast)
        np.testing.assert_allclose(d, cp._eigh_directions(h, g), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(d, plain, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("n", [6, 26])
def test_mixed_batch_directions_equal_eigh_directions(n):
    """A batch of indefinite, near-singular, safely positive definite Hessians and ones just
    above and just below the eigenvalue floor: every step equals ``_eigh_directions`` (rtol
    1e-9), and only Hessians whose smallest eigenvalue is at least the floor take the
    Newton fast path."""
    from agglo.analysis import coreperiphery as cp

    rng = np.random.default_rng(10 + n)
    pd_ = _random_hessians(rng, 20, n, 1.0)
    indefinite = _random_hessians(rng, 20, n, -1.0)
    singular = _random_hessians(rng, 20, n, 1e-13)
    h = np.concatenate([pd_, indefinite, singular])
    g = rng.normal(scale=0.01, size=(60, n))
    tau = np.linalg.norm(g, axis=1) / cp._MAX_STEP
    safe = cp._safely_positive_definite(h, g)
    w_min = np.linalg.eigvalsh(h)[:, 0]
    assert (w_min[safe] >= tau[safe]).all()  # the stated margin
    assert safe[:20].all() and not safe[20:].any()
    assert not cp._safely_below_floor(h, g).any()  # eigenvalues up to 50 > the floor
    for fast in (False, True):
        np.testing.assert_allclose(
            cp._newton_directions(h, g, fast=fast),
            cp._eigh_directions(h, g),
            rtol=1e-9,
            atol=1e-12,
        )
    # lambda_min = 1.05 tau: safe (the margin is tau plus rounding, not 2 tau); 0.95 tau: not
    near = _random_hessians(rng, 10, n, 1.0)
    g_near = rng.normal(size=(10, n))
    g_near *= (cp._MAX_STEP / np.repeat([1.05, 0.95], 5) / np.linalg.norm(g_near, axis=1))[:, None]
    np.testing.assert_array_equal(cp._safely_positive_definite(near, g_near), np.arange(10) < 5)
    # the observed fits' wide margin (2 tau): neither
    assert not cp._safely_positive_definite(near, g_near, wide=True).any()
    for fast in (False, True):
        np.testing.assert_allclose(
            cp._newton_directions(near, g_near, fast=fast),
            cp._eigh_directions(near, g_near),
            rtol=1e-12,
        )


@pytest.mark.parametrize("n", [5, 16, 31])
def test_below_floor_directions_equal_eigh_directions(n):
    """Positive definite Hessians whose eigenvalues all lie below the floor ``|g| / 0.25``
    take the scaled-gradient step ``-0.25 g / |g|``: equal to ``_eigh_directions`` (rtol
    1e-12) and to an independent eigendecomposition step built by hand; a Hessian with one
    eigenvalue above the floor, or one negative, is left to the eigendecomposition."""
    from agglo.analysis import coreperiphery as cp

    rng = np.random.default_rng(20 + n)
    h = _random_hessians(rng, 30, n, 0.5) / 50.0  # eigenvalues in [0.01, 1]
    g = rng.normal(size=(30, n))
    g *= (cp._MAX_STEP * rng.uniform(1.01, 3.0, 30) / np.linalg.norm(g, axis=1))[:, None]
    # floors |g| / 0.25 in (1.01, 3): every eigenvalue below
    below = cp._safely_below_floor(h, g)
    assert below.all() and not cp._safely_positive_definite(h, g).any()
    expected = -cp._MAX_STEP * g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(cp._newton_directions(h, g, fast=True), expected, rtol=1e-12)
    np.testing.assert_allclose(cp._newton_directions(h, g), expected, rtol=1e-12)  # by eigh
    np.testing.assert_allclose(cp._eigh_directions(h, g), expected, rtol=1e-12)
    # by hand: every eigenvalue max(w, tau) = tau
    v = np.linalg.eigh(h)[1]
    tau = np.linalg.norm(g, axis=1) / cp._MAX_STEP
    hand = -np.einsum("bij,bj->bi", v, np.einsum("bji,bj->bi", v, g) / tau[:, None])
    np.testing.assert_allclose(cp._newton_directions(h, g, fast=True), hand, rtol=1e-12)
    # largest eigenvalue above the floor; smallest eigenvalue negative: not this path
    over = h.copy()
    over[:, 0, 0] += 10.0
    neg = h - 0.02 * np.eye(n)
    mixed = np.concatenate([over, neg])
    g2 = np.concatenate([g, g])
    assert not cp._safely_below_floor(mixed, g2).any()
    np.testing.assert_allclose(
        cp._newton_directions(mixed, g2, fast=True), cp._eigh_directions(mixed, g2), rtol=1e-12
    )


@pytest.mark.parametrize("n", [5, 16, 31])
def test_rank5_hessian_equals_term_by_term_hessian(n):
    """The Hessian of ``_squared_batch`` in its rank-5 form (the permutation nulls) equals the
    term-by-term form (the observed fits) to rounding; value and gradient are the same code,
    bit for bit."""
    from agglo.analysis import coreperiphery as cp

    rng = np.random.default_rng(30 + n)
    iu = np.triu_indices(n, 1)
    mats = [_gravity_like(n, s) for s in range(6)]
    acm = np.zeros((6, n, n))
    nas = np.empty(6)
    for k, a in enumerate(mats):
        ac = a[iu] - a[iu].mean()
        acm[k, iu[0], iu[1]] = acm[k, iu[1], iu[0]] = ac
        nas[k] = np.sqrt(ac @ ac)
    x = rng.uniform(0.01, 1.0, (6, n))
    f0, g0, h0 = cp._squared_batch(x, acm, nas, True)
    f1, g1, h1 = cp._squared_batch(x, acm, nas, True, rank5=True)
    assert np.array_equal(f0, f1) and np.array_equal(g0, g1)
    scale = np.abs(h0).max(axis=(1, 2), keepdims=True)
    assert np.abs(h1 - h0).max() > 0  # two computations, not one
    np.testing.assert_allclose(h1 / scale, h0 / scale, rtol=0, atol=1e-13)


def test_threaded_eigh_equals_one_call_bit_for_bit():
    """The stack split over two threads gives exactly the values of one ``eigh`` call."""
    from agglo.analysis import coreperiphery as cp

    rng = np.random.default_rng(7)
    a = rng.normal(size=(301, 31, 31))
    h = a + a.transpose(0, 2, 1)
    assert cp._THREADED_EIGH_MIN_WORK <= 301 * 31**3
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cp, "_core_free", lambda: True)
        w, v = cp._stacked_eigh(h)
    w0, v0 = np.linalg.eigh(h)
    assert np.array_equal(w, w0) and np.array_equal(v, v0)


def test_squared_batch_in_scratch_memory_matches_pair_form_and_fresh_calls():
    """``_squared_batch`` builds its temporaries in reused scratch memory: a batch of mixed
    problems gives each problem's value and gradient of the pair-vector form
    (``_squared_objective``), its Hessian matches central differences of that gradient, and
    calls after other shapes (buffers reused, grown) return the same arrays bit for bit."""
    from agglo.analysis.coreperiphery import _squared_batch, _squared_objective

    rng = np.random.default_rng(5)
    for n in (5, 31):
        iu = np.triu_indices(n, 1)
        mats = [_gravity_like(n, s) for s in range(4)]
        acs = [a[iu] - a[iu].mean() for a in mats]
        nas = np.array([np.sqrt(ac @ ac) for ac in acs])
        acm = np.zeros((4, n, n))
        acm[:, iu[0], iu[1]] = acs
        acm[:, iu[1], iu[0]] = acs
        x = rng.uniform(0.2, 1.0, (4, n))
        first = _squared_batch(x, acm, nas, True)
        _squared_batch(rng.uniform(size=(9, 12)), np.zeros((9, 12, 12)), np.ones(9), True)
        again = _squared_batch(x, acm, nas, True)
        for p, q in zip(first, again, strict=True):
            assert np.array_equal(p, q)
        assert np.array_equal(_squared_batch(x, acm, nas, False, value_only=True)[0], first[0])
        f, g, h = first
        for k in range(4):
            f0, g0 = _squared_objective(x[k], acs[k], nas[k], iu)
            assert f[k] == pytest.approx(f0, abs=1e-13)
            np.testing.assert_allclose(g[k], g0, atol=1e-12)
            eps = 1e-6
            fd = np.array(
                [
                    (
                        _squared_objective(x[k] + eps * e, acs[k], nas[k], iu)[1]
                        - _squared_objective(x[k] - eps * e, acs[k], nas[k], iu)[1]
                    )
                    / (2 * eps)
                    for e in np.eye(n)
                ]
            )
            np.testing.assert_allclose(h[k], fd, atol=1e-6 * np.abs(fd).max())


def test_nulls_of_several_networks_batched_equal_network_by_network():
    """The stage fits the observed continuous fits of every network of one size, and the nulls
    of every network of one kind and size, in one batch (``_coreness_jobs``); the tables
    equal :func:`coreness` called on each network alone, bit for bit (coreness values, core
    sets, fits, p-values and null statistics; continuous, exhaustive and local-search
    discrete, two sizes each), and the jobs come back in their order."""
    from agglo.analysis import coreperiphery as cp

    nets = [_frame(_gravity_like(n, seed)) for n, seed in ((6, 1), (7, 2), (6, 3), (7, 4), (6, 5))]
    jobs = [(t, m) for t in nets for m in ("continuous", "discrete")]
    kwargs = {"seed": 5, "n_perm": 6, "restarts": 2, "exhaustive_max": 6}
    batched = cp._coreness_jobs(jobs, transform="none", progress=False, **kwargs)
    calls = []
    real = cp._solve_nulls

    def one_by_one(problems):
        calls.append(len(problems))
        return real(problems)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cp, "_solve_nulls", one_by_one)
        alone = [coreness(t, method=m, **kwargs) for t, m in jobs]
    assert calls == [1] * len(jobs)
    for b, a in zip(batched, alone, strict=True):
        pd.testing.assert_frame_equal(b, a, check_exact=True)
        assert b.attrs == a.attrs
    # the batch really mixes networks: 3 groups of 6-city nulls and 3 of 7-city ones
    probs = [
        cp._prepare_coreness(t, method=m, transform="none", progress=False, **kwargs).nulls
        for t, m in jobs
    ]
    keys = {p.key() for p in probs}
    assert {k[0] for k in keys} == {"continuous", "exhaustive", "local"}
    assert len(keys) == 4  # continuous 6 and 7, exhaustive 6, local 7


def test_nulls_split_across_two_processes_equal_one_process(caplog):
    """With a free core the stage's nulls are cut in two between this process and a forked child
    (``_solve_nulls_split``); the joined fits equal one process's bit for bit (continuous,
    exhaustive and local-search discrete), and a child really ran."""
    import logging

    from agglo._forked import fork_available
    from agglo.analysis import coreperiphery as cp

    if not fork_available():
        pytest.skip("no fork start method")
    nets = [_frame(_gravity_like(n, seed)) for n, seed in ((6, 1), (7, 2), (6, 3))]
    jobs = [(t, m) for t in nets for m in ("continuous", "discrete")]
    kwargs = {"seed": 5, "n_perm": 7, "restarts": 2, "exhaustive_max": 6}
    probs = [
        cp._prepare_coreness(t, method=m, transform="none", progress=False, **kwargs).nulls
        for t, m in jobs
    ]
    assert cp._split_obstacle(probs) == "little work"
    one = cp._solve_nulls(probs)
    with pytest.MonkeyPatch.context() as mp:
        # the eigh helper thread exists before the fork (the child's copy of it is dead)
        mp.setattr(cp, "_core_free", lambda: True)
        cp._stacked_eigh(np.repeat(np.eye(31)[None], 16, axis=0))
        assert cp._EIGH_POOL
        mp.setattr(cp, "_split_obstacle", lambda problems: None)
        with caplog.at_level(logging.DEBUG, logger="agglo.analysis.coreperiphery"):
            two, done = cp._solve_nulls_split(probs, meanwhile=lambda: "observed fits")
    assert "split across two processes" in caplog.text
    assert done == "observed fits"
    assert not cp._EIGH_THREAD_OFF[0]  # restored
    for a, b in zip(one, two, strict=True):
        assert len(a) == 7
        np.testing.assert_array_equal(a, b)
