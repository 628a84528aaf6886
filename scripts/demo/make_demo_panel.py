"""Generate the bundled demo panel: SYNTHETIC except real census and railway values.

    python scripts/demo/make_demo_panel.py [--seed 20101520] [--out-dir data/panel] [--date YYYY-MM-DD]

writes ``demo_panel_synthetic.csv`` (wide: ``adcode, city, year``, the 19 indicators,
``population``, ``gdp``, ``data_status``), ``demo_employment_synthetic.csv`` (long: ``adcode,
city, year, sector, employment, data_status``) and ``demo_panel_synthetic.json`` (metadata).

**Most numbers are invented.** No statistic was typed in; the real values come from the
derived table ``data/census/census_real.csv`` (``scripts/build_census.py``): ``population`` and
``urbanization_rate`` of 2010 and 2020 (census), ``hsr`` of every year (RailwayVIS lines).
2015 values of the two census variables are *interpolated* between the censuses (population
geometrically, the rate linearly), labelled ``interpolated:census-2010-2020``. Everything else
is synthetic (``gdp`` too: synthetic GDP per capita × real population). Each value's origin is
in ``demo_panel_provenance.csv`` (``adcode, year, variable, provenance``: ``real:census-2010``,
``real:census-2020``, ``real:railways``, ``interpolated:census-2010-2020``, ``synthetic``).
The synthetic values exist so that the pipeline runs end to end with non-degenerate results;
they must not be cited.

Generator assumptions (also in ``data/panel/README.md`` and the JSON metadata):

- Each city has a latent development level ``z``: agglomeration level L (yrd 0.95, myr 0.55,
  cy 0.50, dz 0.38, qz 0.32) + a core bonus 0.5 (1.2 - L) for core cities (provincial
  capitals, adcode ``xx0100``, and Chongqing 500000; larger in poorer agglomerations =
  polarisation) + normal noise with an agglomeration spread (yrd 0.10 = richer and more even;
  myr 0.22, cy 0.25, qz 0.20, dz 0.20), clipped to [0.05, 1.5]. ``t`` = (year - 2010)/5.
- GDP per capita 18,000·exp(1.2 z + 0.25 t) yuan (≈ 20k-180k, rising); urbanisation
  33 + 38 z + 3.5 t % (≈ 35-90); urban/rural income ratio 3.0 - 0.85 z - 0.12 t (≈ 1.6-3.2);
  average wage 28,000·exp(0.55 z + 0.30 t) yuan; S&T share 0.6 + 3.5 z^1.5 + 0.35 t %;
  patents per 10k exp(0.3 + 2.6 z + 0.35 t); trade/GDP 6·exp(2 z) %; FDI/GDP
  (0.4 + 2.2 z)·0.9^t %; road density 55 + 115 z + 8 t km/100 km² (≈ 60-250);
  HSR opening year 2020 - 11 z (- 3 for cores) + noise, so 0/1 increases over time;
  gas coverage 100 - 30 e^(-1.8 z)·0.8^t %; PM2.5 agglomeration baseline (yrd 55, myr 68,
  cy 62, qz 42, dz 32 µg/m³) × lognormal noise × (1 - d t) with d 0.12-0.20 (falling);
  solid-waste utilisation 62 + 25 z + 3 t %; garbage treatment 100 - 30 e^(-1.2 z)·0.55^t %;
  education spending 700·exp(0.9 z + 0.28 t) yuan/person; beds 32 + 18 z + 7 t and
  health technicians 35 + 30 z + 9 t per 10k; social security share 11 - 2 z + 0.6 t %.
  Each value gets small normal noise; rates are clipped to [0, 100].
- Population (10k) = 350 · exp(0.5 (z - 0.5) + N(0, 0.3)) · (2.5 for cores, 6 for the
  municipalities Shanghai and Chongqing) ·
  (real area / 12,000 km²)^0.3, growing 1.8 %/yr in cores and ~0.2 %/yr elsewhere.
  GDP (100 million yuan) = GDP per capita × population / 10^4.
- Sector employment (10k persons) in 6 sectors = population × 10-18 % × shares drawn from a
  Dirichlet around (manufacturing .38, construction .18, wholesale_retail .12, finance .06,
  information_technology .04, public_administration .22), more manufacturing in yrd, more
  finance/IT in richer cities. ``krugman_index`` is computed from it with DESIGN.md's formula
  (shares against all *other* cities of the same agglomeration).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from agglo.reference.boundaries import load_cities, load_membership
from agglo.reference.registry import VARIABLES

DEFAULT_SEED = 20101520
YEARS = (2010, 2015, 2020)
SECTORS = (
    "manufacturing",
    "construction",
    "wholesale_retail",
    "finance",
    "information_technology",
    "public_administration",
)
BASE_SHARES = np.array([0.38, 0.18, 0.12, 0.06, 0.04, 0.22])
# agglomeration -> (level, spread, PM2.5 baseline µg/m³, PM2.5 relative drop per 5 years)
AGG = {
    "yrd": (0.95, 0.10, 55.0, 0.20),
    "myr": (0.55, 0.22, 68.0, 0.17),
    "cy": (0.50, 0.25, 62.0, 0.18),
    "qz": (0.32, 0.20, 42.0, 0.15),
    "dz": (0.38, 0.20, 32.0, 0.12),
}
ROOT = Path(__file__).resolve().parents[2]
CENSUS_TABLE = ROOT / "data" / "census" / "census_real.csv"
#: variables taken from the real table where it has a value
REAL_VARIABLES = ("population", "urbanization_rate", "hsr")
INTERPOLATED = "interpolated:census-2010-2020"


#: province-level municipalities: modelled as the largest units of their agglomerations
MUNICIPALITIES = ("310100", "500000")


def is_core(adcode: str) -> bool:
    """Provincial capitals (adcode xx0100) and the municipality of Chongqing."""
    return adcode.endswith("0100") or adcode == "500000"


def core_bonus(level: float) -> float:
    """Extra development of a core city: larger in poorer agglomerations (polarisation)."""
    return 0.5 * (1.2 - level)


def make_demo(seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The synthetic wide panel and long employment table (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    members = load_membership().drop_duplicates("adcode").sort_values("adcode")
    area = load_cities().set_index("adcode")["area_km2"]
    rows, emp_rows = [], []
    for m in members.itertuples(index=False):
        level, spread, pm_base, pm_drop = AGG[m.agglomeration_id]
        core = is_core(m.adcode)
        z = float(np.clip(level + core_bonus(level) * core + rng.normal(0, spread), 0.05, 1.5))
        pop0 = (
            350
            * np.exp(0.5 * (z - 0.5) + rng.normal(0, 0.3))
            * (6.0 if m.adcode in MUNICIPALITIES else 2.5 if core else 1.0)
            * (float(area[m.adcode]) / 12000) ** 0.3
        )
        growth = 0.018 if core else rng.normal(0.002, 0.005)
        hsr_year = 2020 - 11 * z - 3 * core + rng.normal(0, 2.5)
        pm_city = pm_base * np.exp(rng.normal(0, 0.12))
        alpha = BASE_SHARES.copy()
        if m.agglomeration_id == "yrd":
            alpha[0] += 0.08
        alpha[3:5] *= 1 + z
        alpha = alpha / alpha.sum() * 80
        shares0 = rng.dirichlet(alpha)
        emp_rate = rng.uniform(0.10, 0.18)
        for year in YEARS:
            t = (year - 2010) / 5

            def n(sd: float) -> float:
                return float(rng.normal(0, sd))

            pop = pop0 * (1 + growth) ** (year - 2010)
            gdppc = 18000 * np.exp(1.2 * z + 0.25 * t + n(0.05))
            rec = {
                "adcode": m.adcode,
                "city": m.name_zh,
                "year": year,
                "income_ratio": np.clip(3.0 - 0.85 * z - 0.12 * t + n(0.08), 1.5, 3.5),
                "gdp_per_capita": gdppc,
                "urbanization_rate": np.clip(33 + 38 * z + 3.5 * t + n(2), 25, 95),
                "avg_wage": 28000 * np.exp(0.55 * z + 0.30 * t + n(0.04)),
                "st_spending_share": np.clip(0.6 + 3.5 * z**1.5 + 0.35 * t + n(0.3), 0.2, 12),
                "patents_per_10k": np.exp(0.3 + 2.6 * z + 0.35 * t + n(0.2)),
                "krugman_index": np.nan,  # filled from employment below
                "trade_openness": 6 * np.exp(2.0 * z + n(0.3)),
                "fdi_openness": np.clip(0.4 + 2.2 * z + n(0.4), 0.1, 8) * 0.9**t,
                "road_density": np.clip(55 + 115 * z + 8 * t + n(10), 40, 260),
                "hsr": int(hsr_year <= year),
                "gas_coverage": np.clip(100 - 30 * np.exp(-1.8 * z) * 0.8**t + n(1.5), 40, 100),
                "pm25": np.clip(pm_city * (1 - pm_drop * t) * np.exp(n(0.05)), 15, 95),
                "solid_waste_utilization": np.clip(62 + 25 * z + 3 * t + n(6), 20, 100),
                "garbage_treatment_rate": np.clip(
                    100 - 30 * np.exp(-1.2 * z) * 0.55**t + n(1.5), 40, 100
                ),
                "education_spending_per_capita": 700 * np.exp(0.9 * z + 0.28 * t + n(0.08)),
                "hospital_beds_per_10k": np.clip(32 + 18 * z + 7 * t + n(4), 15, 120),
                "health_technicians_per_10k": np.clip(35 + 30 * z + 9 * t + n(5), 15, 160),
                "social_security_share": np.clip(11 - 2 * z + 0.6 * t + n(2), 5, 25),
                "population": pop,
                "gdp": gdppc * pop / 1e4,
            }
            rows.append(rec)
            shares = rng.dirichlet(shares0 * 400)  # small year-to-year drift
            total = pop * emp_rate * (1 + 0.1 * z)
            for sector, s in zip(SECTORS, shares, strict=True):
                emp_rows.append(
                    {
                        "adcode": m.adcode,
                        "city": m.name_zh,
                        "year": year,
                        "sector": sector,
                        "employment": round(float(total * s), 3),
                    }
                )
    wide = pd.DataFrame(rows)
    emp = pd.DataFrame(emp_rows)
    k = krugman(emp, members.set_index("adcode")["agglomeration_id"])
    wide["krugman_index"] = [k[(a, y)] for a, y in zip(wide["adcode"], wide["year"], strict=True)]
    digits = {
        "gdp_per_capita": 0,
        "avg_wage": 0,
        "education_spending_per_capita": 1,
        "population": 2,
        "gdp": 2,
        "hsr": 0,
        "krugman_index": 4,
    }
    for v in VARIABLES:
        wide[v] = wide[v].astype(float).round(digits.get(v, 2))
    wide["hsr"] = wide["hsr"].astype(int)
    wide["data_status"] = "synthetic"
    emp["data_status"] = "synthetic"
    return wide[["adcode", "city", "year", *VARIABLES, "data_status"]], emp


def apply_real_values(wide: pd.DataFrame, real: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace synthetic values by real ones where the real table has them.

    Returns the panel and its provenance (``adcode, year, variable, provenance``). Census
    variables of a year between two censuses are interpolated (population geometrically, rates
    linearly) when both censuses have the unit; otherwise the synthetic value stays.
    """
    wide = wide.copy()
    prov = wide[["adcode", "year"]].copy()
    for v in VARIABLES:
        prov[v] = "synthetic"
    key = real.set_index(["adcode", "year", "variable"])
    for v in REAL_VARIABLES:
        got = key.xs(v, level="variable") if v in set(real["variable"]) else None
        if got is None:
            continue
        for i, (code, year) in enumerate(zip(wide["adcode"], wide["year"], strict=True)):
            if (code, year) in got.index:
                wide.loc[wide.index[i], v] = got.loc[(code, year), "value"]
                prov.loc[prov.index[i], v] = got.loc[(code, year), "provenance"]
            elif v != "hsr" and (code, 2010) in got.index and (code, 2020) in got.index:
                a, b = got.loc[(code, 2010), "value"], got.loc[(code, 2020), "value"]
                w = (year - 2010) / 10
                value = a * (b / a) ** w if v == "population" else a + (b - a) * w
                wide.loc[wide.index[i], v] = round(float(value), 4)
                prov.loc[prov.index[i], v] = INTERPOLATED
    wide["hsr"] = wide["hsr"].astype(int)
    # GDP stays synthetic: synthetic GDP per capita x the (now partly real) population
    wide["gdp"] = (wide["gdp_per_capita"] * wide["population"] / 1e4).round(2)
    long = prov.melt(["adcode", "year"], var_name="variable", value_name="provenance")
    return wide, long.sort_values(["adcode", "year", "variable"]).reset_index(drop=True)


def krugman(emp: pd.DataFrame, agglomeration: pd.Series) -> dict[tuple[str, int], float]:
    """``SP_i = Σ_j |s_ij − s̄_ij|`` against all other cities of the same agglomeration."""
    e = emp.assign(agg=emp["adcode"].map(agglomeration))
    out = {}
    for (_, year), g in e.groupby(["agg", "year"]):
        tab = g.pivot(index="adcode", columns="sector", values="employment")
        total = tab.sum()
        for adcode, row in tab.iterrows():
            others = total - row
            out[(adcode, int(year))] = float((row / row.sum() - others / others.sum()).abs().sum())
    return out


ASSUMPTIONS = [
    line.strip() for line in (__doc__ or "").split("Generator assumptions")[1].splitlines()
]


def metadata(seed: int, date: str, provenance: pd.DataFrame | None = None) -> dict:
    by_var = (
        provenance.groupby("variable")["provenance"].agg(lambda s: sorted(set(s))).to_dict()
        if provenance is not None
        else {}
    )
    real = sorted(v for v, labels in by_var.items() if labels != ["synthetic"])
    return {
        "data_status": "synthetic",
        "title": "agglo demo panel (SYNTHETIC except the real census/railway values listed)",
        "real_variables": real,
        "synthetic_variables": sorted(v for v in by_var if v not in real),
        "provenance_by_variable": by_var,
        "provenance": "demo_panel_provenance.csv (one label per value)",
        "generator": "scripts/demo/make_demo_panel.py",
        "seed": seed,
        "generated": date,
        "cities": "the 84 member units of data/reference/agglomerations.csv",
        "years": list(YEARS),
        "variables": list(VARIABLES),
        "units": {v.id: v.unit for v in VARIABLES.values()},
        "employment": "demo_employment_synthetic.csv",
        "employment_units": "10k persons",
        "sectors": list(SECTORS),
        "real_inputs": "membership list and geodesic land areas of the bundled boundaries; "
        "census population and urbanisation 2010/2020 and HSR flags from "
        "data/census/census_real.csv (2015 census values interpolated)",
        "assumptions": " ".join(a for a in ASSUMPTIONS if a and not a.startswith("(")),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "data" / "panel")
    ap.add_argument("--date", default=dt.date.today().isoformat(), help="date in the metadata")
    args = ap.parse_args(argv)
    wide, emp = make_demo(args.seed)
    wide, provenance = apply_real_values(wide, pd.read_csv(CENSUS_TABLE, dtype={"adcode": str}))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    wide.to_csv(args.out_dir / "demo_panel_synthetic.csv", index=False, lineterminator="\n")
    provenance.to_csv(args.out_dir / "demo_panel_provenance.csv", index=False, lineterminator="\n")
    emp.to_csv(args.out_dir / "demo_employment_synthetic.csv", index=False, lineterminator="\n")
    meta = metadata(args.seed, args.date, provenance)
    (args.out_dir / "demo_panel_synthetic.json").write_text(
        json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(wide)} city-years and {len(emp)} employment rows to {args.out_dir}")


if __name__ == "__main__":
    main()
