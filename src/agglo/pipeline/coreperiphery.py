"""Pipeline stage ``coreperiphery``: core-periphery structure per agglomeration and year.

For every agglomeration (member cities of ``ctx.cities``) and year of the panel: the gravity
network from the panel's ``population`` and ``gdp`` (:func:`agglo.gravity_interactions`,
geodesic km between district seats), Borgatti-Everett coreness with both methods and a
permutation test (:func:`agglo.coreness`, seed ``ctx.config.seed``), the city-size system
(:func:`agglo.city_system`) and its shape (:func:`agglo.structure_type`, using the discrete
core set). Core/periphery gaps of every panel indicator (:func:`agglo.core_periphery_gaps`) use
one core set per agglomeration for all years (``gap_cores = "first"``: the first year's, by
default), so a change between years is a change of the cities, not of the grouping.

Records:

- tables ``coreness`` (long: agglomeration, year, city, method, coreness, core),
  ``coreness_fit`` (fit correlation, permutation p-value and null summary per agglomeration,
  year and method), ``city_system``, ``structure_type``, ``core_periphery_gaps``;
- layer ``core_periphery``: member city polygons with ``coreness_<year>`` (continuous) and
  ``core_<year>`` (discrete core flag) columns and the latest ``structure_type``;
- ``ctx.results["coreperiphery"]``: a dict with those tables and the options;
- one summary line per agglomeration for the latest year (core set, fit, p, structure type).

Options (``[coreperiphery]`` section): see :class:`CorePeripheryOptions`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.coreperiphery import (
    METHODS,
    TRANSFORMS,
    city_system,
    core_periphery_gaps,
    coreness,
    gravity_interactions,
    structure_type,
)
from agglo.errors import AggloInputError
from agglo.options import RUN_SEED, Options, option
from agglo.reference.seats import city_seats, read_seats

log = logging.getLogger(__name__)

GAP_CORES = ("first", "latest", "each")


@dataclass(frozen=True)
class CorePeripheryOptions(Options):
    """Options of the ``coreperiphery`` stage (``[coreperiphery]``, ``agglo coreperiphery``)."""

    section = "coreperiphery"
    mass: str | tuple[str, ...] = option(
        ("population", "gdp"), help="Panel indicator(s) whose geometric mean is the mass."
    )
    beta: float = option(2.0, help="Distance decay exponent of the gravity model.", minimum=0)
    size: str = option("population", help="Panel indicator of city size (city system).")
    methods: str | tuple[str, ...] = option(
        ("continuous", "discrete"), help="Coreness methods: continuous and/or discrete."
    )
    n_perm: int = option(49, help="Permutations of the significance test.", minimum=0)
    restarts: int = option(2, help="Random restarts of the continuous fit.", minimum=1)
    exhaustive_max: int = option(
        16, help="Largest group whose discrete core is searched exhaustively.", minimum=1
    )
    transform: str = option("none", help="Weights before fitting.", choices=TRANSFORMS)
    seats_file: str | None = option(
        None,
        help="CSV of city seats: adcode, lon, lat (WGS84; they win over agglo.reference.seats).",
    )
    gap_cores: str = option(
        "first",
        help="Core set of the gaps: the first year's, the latest or each year's.",
        choices=GAP_CORES,
    )
    gap_tol: float = option(0.0, help="Tolerance of the core-periphery gaps.", minimum=0)
    single_primacy: float = option(2.5, help="Single core when P1/P2 is at least this.")
    single_max_cores: int = option(1, help="Most core cities of a single-core system.", minimum=1)
    dumbbell_primacy: float = option(2.0, help="Dumbbell (哑铃型) when P1/P2 is below this ...")
    dumbbell_gap: float = option(2.0, help="... and P2/P3 is at least this.")
    zipf_range: tuple[float, ...] = option(
        (0.8, 1.25), help="Gradient (梯度型) when the Zipf exponent lies in low,high ..."
    )
    min_r2: float = option(
        0.9, help="... and the rank-size fit has at least this R².", minimum=0, maximum=1
    )

    def extra_problems(self) -> list[str]:
        methods = [self.methods] if isinstance(self.methods, str) else list(self.methods)
        if not methods or any(m not in METHODS for m in methods):
            return [
                f"coreperiphery.methods must be a list from {list(METHODS)}; got {self.methods!r}"
            ]
        if len(self.zipf_range) != 2:
            return [f"coreperiphery.zipf_range must be two numbers; got {self.zipf_range!r}"]
        return []


_STRUCTURE_KEYS = (
    "single_primacy",
    "single_max_cores",
    "dumbbell_primacy",
    "dumbbell_gap",
    "zipf_range",
    "min_r2",
)


def stage_options(section: Mapping[str, Any] | CorePeripheryOptions) -> dict[str, Any]:
    """The ``[coreperiphery]`` options as a dict (validated by :class:`CorePeripheryOptions`).

    Examples
    --------
    >>> stage_options({"beta": 1.5})["beta"]
    1.5
    >>> stage_options({"n_perms": 9})
    Traceback (most recent call last):
    ...
    agglo.errors.ValidationError: [coreperiphery] options: 1 problem(s)
      - coreperiphery.n_perms is not an option (did you mean 'n_perm'?); valid: mass, beta, size, methods, n_perm, restarts, exhaustive_max, transform, seats_file, gap_cores, gap_tol, single_primacy, single_max_cores, dumbbell_primacy, dumbbell_gap, zipf_range, min_r2
    """
    if not isinstance(section, CorePeripheryOptions):
        section = CorePeripheryOptions.from_dict(section)
    opts = section.to_dict()
    opts["methods"] = [opts["methods"]] if isinstance(opts["methods"], str) else opts["methods"]
    return opts


def analyse(
    cities: gpd.GeoDataFrame,
    panel: pd.DataFrame,
    *,
    counties: gpd.GeoDataFrame | None = None,
    years: list[int] | None = None,
    agglomerations: list[str] | None = None,
    options: Mapping[str, Any] | CorePeripheryOptions | None = None,
    seed: int = RUN_SEED,
    progress: bool = False,
) -> dict[str, Any]:
    """Core-periphery analysis of every agglomeration and year.

    Parameters
    ----------
    cities
        City polygons with ``adcode``, ``name_zh``, ``agglomeration_id`` (members: not null).
    panel
        Tidy ``adcode, year, indicator, value`` with the mass and size indicators.
    counties
        Counties for the district seats (default: bundled).
    years, agglomerations
        Subsets (default: every year of the panel, every agglomeration).
    options
        ``[coreperiphery]`` options (:class:`CorePeripheryOptions` or a mapping).
    seed
        Seed of every random start and permutation.
    progress
        Progress bars over permutations.

    Returns
    -------
    dict
        ``coreness``, ``fit``, ``city_system``, ``structure_type``, ``gaps`` (DataFrames),
        ``layer`` (GeoDataFrame), ``options``.
    """
    opts = stage_options(options or {})
    mass = [opts["mass"]] if isinstance(opts["mass"], str) else list(opts["mass"])
    size = opts["size"]
    needed = sorted({*mass, size})
    absent = [v for v in needed if v not in set(panel["indicator"])]
    if absent:
        raise AggloInputError(
            f"[coreperiphery] the panel lacks indicator(s) {absent} needed for the gravity "
            "masses and city sizes."
        )
    members = cities[cities["agglomeration_id"].notna()]
    members = members[["adcode", "name_zh", "agglomeration_id", "geometry"]]
    if agglomerations is not None:
        unknown = sorted(set(agglomerations) - set(members["agglomeration_id"]))
        if unknown:
            raise AggloInputError(
                f"unknown agglomeration(s) {unknown}; "
                f"valid: {sorted(members['agglomeration_id'].unique())}."
            )
        members = members[members["agglomeration_id"].isin(agglomerations)]
    all_years = sorted(int(y) for y in panel["year"].unique())
    years = all_years if years is None else sorted(int(y) for y in years)
    missing_years = sorted(set(years) - set(all_years))
    if missing_years:
        raise AggloInputError(f"year(s) {missing_years} not in the panel (it has {all_years}).")
    given = read_seats(opts["seats_file"]) if opts["seats_file"] else None
    seats = city_seats(members, counties, seats=given)
    wide = (
        panel[panel["indicator"].isin(needed) & panel["adcode"].isin(members["adcode"])]
        .pivot_table(index=["adcode", "year"], columns="indicator", values="value", aggfunc="first")
        .reset_index()
    )
    structure_kw = {k: opts[k] for k in _STRUCTURE_KEYS}
    structure_kw["zipf_range"] = tuple(structure_kw["zipf_range"])
    long_rows, fit_rows, systems, structures = [], [], [], []
    for agg, group in members.groupby("agglomeration_id", sort=True):
        for year in years:
            data = group.merge(wide[wide["year"] == year], on="adcode", how="left")
            ok = data[needed].notna().all(axis=1) & (data[size] > 0)
            if not ok.all():
                log.warning(
                    "coreperiphery: %s %s: no %s for %s; left out",
                    agg,
                    year,
                    "/".join(needed),
                    ", ".join(data.loc[~ok, "name_zh"]),
                )
            data = data[ok]
            if len(data) < 3:
                log.warning("coreperiphery: %s %s skipped: fewer than 3 cities", agg, year)
                continue
            t = gravity_interactions(data, mass=mass, beta=float(opts["beta"]), seats=seats)
            names = data.set_index("adcode")["name_zh"]
            discrete = None
            for method in opts["methods"]:
                res = coreness(
                    t,
                    method=method,
                    seed=seed,
                    n_perm=opts["n_perm"],
                    restarts=opts["restarts"],
                    exhaustive_max=opts["exhaustive_max"],
                    transform=opts["transform"],
                    progress=progress,
                )
                if method == "discrete":
                    discrete = res
                fit_rows.append(
                    {
                        "agglomeration_id": agg,
                        "year": year,
                        "method": method,
                        "n_cities": len(res),
                        "n_core": int(res["core"].sum()),
                        "core_cities": "、".join(names[res.index[res["core"]]]),
                        **{
                            k: res.attrs[k]
                            for k in ("fit", "p_value", "n_perm", "null_mean", "null_q95")
                        },
                    }
                )
                frame = res.reset_index()
                long_rows.append(
                    frame.assign(
                        agglomeration_id=agg,
                        year=year,
                        method=method,
                        name_zh=frame["adcode"].map(names).to_numpy(),
                    )
                )
            system = city_system(data, size, name_col="name_zh").assign(
                agglomeration_id=agg, year=year
            )
            systems.append(system)
            cores = None if discrete is None else discrete.reset_index()
            structures.append(
                structure_type(system, cores, **structure_kw).assign(
                    agglomeration_id=agg, year=year
                )
            )
    if not long_rows:
        raise AggloInputError(
            "[coreperiphery] no agglomeration and year had 3 or more cities with "
            f"{'/'.join(needed)}."
        )
    long = pd.concat(long_rows, ignore_index=True)[
        ["agglomeration_id", "year", "adcode", "name_zh", "method", "coreness", "core"]
    ]
    fit = pd.DataFrame(fit_rows)
    system_df = pd.concat(systems).reset_index(drop=True)
    system_df = system_df[["agglomeration_id", "year", *system_df.columns[:-2]]]
    struct_df = pd.concat(structures).reset_index(drop=True)
    struct_df = struct_df[["agglomeration_id", "year", "structure_type", "n_core", "rule"]]
    gaps = _gaps(panel, long, members, opts)
    layer = _layer(members, long, struct_df)
    return {
        "coreness": long,
        "fit": fit,
        "city_system": system_df,
        "structure_type": struct_df,
        "gaps": gaps,
        "layer": layer,
        "options": opts,
    }


def _gaps(
    panel: pd.DataFrame, long: pd.DataFrame, members: pd.DataFrame, opts: dict[str, Any]
) -> pd.DataFrame:
    method = "discrete" if "discrete" in set(long["method"]) else "continuous"
    sets = long[long["method"] == method][["agglomeration_id", "year", "adcode", "core"]]
    if opts["gap_cores"] != "each":
        pick = "min" if opts["gap_cores"] == "first" else "max"
        ref = sets.groupby("agglomeration_id")["year"].transform(pick)
        sets = sets[sets["year"] == ref].drop(columns="year")
    data = panel[panel["adcode"].isin(members["adcode"])]
    gaps = core_periphery_gaps(data, sets, tol=float(opts["gap_tol"]))
    return gaps.assign(core_method=method, core_set=opts["gap_cores"])


def _layer(members: gpd.GeoDataFrame, long: pd.DataFrame, struct: pd.DataFrame) -> gpd.GeoDataFrame:
    out = members.copy()
    for method, col in (("continuous", "coreness"), ("discrete", "core")):
        sub = long[long["method"] == method]
        for year, g in sub.groupby("year", sort=True):
            out[f"{col}_{year}"] = out["adcode"].map(g.set_index("adcode")[col])
    latest = struct[struct["year"] == struct["year"].max()].set_index("agglomeration_id")
    out["structure_type"] = out["agglomeration_id"].map(latest["structure_type"])
    return out.reset_index(drop=True)
