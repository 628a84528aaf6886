"""The integration index of seed 004 (section 2.2) and its companions.

For agglomeration *g*, year *t* and indicator *i* over the member cities that report it
(DESIGN.md "Integration index"):

1. ``cv = σ / μ`` (σ the population standard deviation by default; μ = σ = 0 gives cv = 0);
2. ``k = 100 · (cv_max − cv) / (cv_max − cv_min)``, extremes pooled over every
   agglomeration and year of the run for that indicator (equal extremes give k = 100);
3. ``K = k · R · f`` with ``R = n_g / Σ n`` (member counts from the membership table, not the
   number of reporting cities) and ``f`` the level adjustment from the agglomeration mean L,
   pooled like k: ``f⁺ = floor + (1 − floor) · (L − L_min) / (L_max − L_min)`` (equal extremes
   give f⁺ = 1); positive indicators use ``f = f⁺``, negative ones ``f = sqrt(f⁺ · f⁻)`` with
   ``f⁻ = 1 + floor − f⁺`` (= 1.01 − f⁺ for the default floor 0.01);
4. dimension score = mean K of its indicators; composite = weighted mean of the dimension
   scores (equal weights by default); both also rescaled to 0-100;
5. between-group gaps (seed 004 table 4): the cv of each dimension score across
   agglomerations, per year.

City gaps feed the spatial analysis: ``gap = (x − μ_g) / μ_g`` and ``lag = gap · direction``;
a city's ``dispersion_gap`` is the mean of ``gap²`` over indicators (its agglomeration mean is
cv² when ddof = 0) and its ``lag_score`` the mean of ``lag`` (negative = lagging).

Every interpretation DESIGN.md names is an :class:`IndexConfig` option; every result table
carries the options in ``DataFrame.attrs["config"]``.

Departures from / additions to DESIGN.md (all options, defaults follow DESIGN.md):

- a dimension whose indicators are all unavailable in a cell is left out of that cell's
  composite, whose weights are renormalised over the dimensions present (reported);
- an indicator that is constant over the whole run (e.g. HSR = 0 everywhere) is kept, as
  DESIGN.md's equal-extremes rule implies (k = 100, f⁺ = 1), but a warning says so;
  ``constant_indicator="drop"`` removes it;
- cells with fewer than ``min_cities`` (3) reporting cities are dropped with a warning.
"""

from __future__ import annotations

import difflib
import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from agglo.analysis.institutions import DEFAULT_LEVEL_WEIGHTS, institutions_by_year
from agglo.errors import AggloInputError, ValidationError
from agglo.measures.krugman import krugman_specialisation
from agglo.reference.registry import DIMENSIONS, INDICATORS, VARIABLES

__all__ = [
    "IndexConfig",
    "IndexResult",
    "IndexWarning",
    "agglomeration_layer",
    "entropy_weights",
    "integration_index",
]

log = logging.getLogger(__name__)

MISSING_POLICIES = ("drop", "interpolate", "group_mean")
K_POOLS = ("indicator", "indicator_year", "all")
LEVEL_POOLS = ("indicator", "indicator_year")
NEGATIVE_RULES = ("sqrt", "reverse", "ignore")
WEIGHT_SCHEMES = ("equal", "entropy")
RESCALE_METHODS = ("minmax", "max")
CONSTANT_RULES = ("keep", "drop")
PARTIAL_RULES = ("include", "exclude")


class IndexWarning(UserWarning):
    """Something was dropped, imputed or is degenerate in the integration index."""


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise AggloInputError(f"IndexConfig.{name} must be one of {list(allowed)}; got {value!r}.")


@dataclass(frozen=True)
class IndexConfig:
    """Every choice of the integration index (defaults follow DESIGN.md).

    Parameters
    ----------
    ddof
        Delta degrees of freedom of σ: 0 population (default), 1 sample.
    k_pool
        Where the cv extremes of ``k`` are pooled: ``"indicator"`` (over all agglomerations
        and years of the run, per indicator; default), ``"indicator_year"`` (per indicator and
        year) or ``"all"`` (over every indicator too, the literal reading of "所有采用变异系数值").
    level_pool
        Where the level extremes of ``f`` are pooled: ``"indicator"`` or ``"indicator_year"``.
    level_floor
        Lower end of the level normalisation (paper: 0.01), in [0, 1).
    negative_rule
        Level adjustment of a negative indicator: ``"sqrt"`` (paper: sqrt(f⁺ · f⁻)),
        ``"reverse"`` (f⁻) or ``"ignore"`` (f⁺, as if positive).
    dimension_weights
        ``"equal"`` (paper), ``"entropy"`` (entropy weights of the dimension scores over the
        run's agglomeration-years) or a mapping dimension -> weight (normalised to sum 1).
    missing
        ``"drop"`` (default: a missing city value is left out of its cell), ``"interpolate"``
        (linear between the panel's years per city; no extrapolation) or ``"group_mean"``
        (the cell mean of the reporting cities; this shrinks cv and is reported).
    min_cities
        Cells with fewer reporting cities are dropped with a warning (default 3).
    rescale
        ``score_0_100``: ``"minmax"`` pooled over the run's agglomeration-years (default) or
        ``"max"`` (score / pooled maximum · 100).
    constant_indicator
        An indicator constant over the whole run: ``"keep"`` (k = 100, f⁺ = 1, warned) or
        ``"drop"``.
    partial_members
        Partial member cities (only some counties in the plan): ``"include"`` or ``"exclude"``.
    indicators
        Indicator ids to use (default: every registry indicator present in the panel).
    directions
        Overrides of the registry direction (+1 / −1) per indicator id.
    use_R, use_f
        Switch the size (R) and level (f) adjustments off for sensitivity checks.
    explain_top
        Number of indicators listed per agglomeration-year in ``explanations``.
    institution_weights
        Level -> weight of plans and mechanisms (national above provincial above municipal).

    Examples
    --------
    >>> cfg = IndexConfig(ddof=1)
    >>> cfg.to_dict()["ddof"], IndexConfig.from_dict({"missing": "interpolate"}).missing
    (1, 'interpolate')
    """

    ddof: int = 0
    k_pool: str = "indicator"
    level_pool: str = "indicator"
    level_floor: float = 0.01
    negative_rule: str = "sqrt"
    dimension_weights: str | Mapping[str, float] = "equal"
    missing: str = "drop"
    min_cities: int = 3
    rescale: str = "minmax"
    constant_indicator: str = "keep"
    partial_members: str = "include"
    indicators: tuple[str, ...] | None = None
    directions: Mapping[str, int] = field(default_factory=dict)
    use_R: bool = True
    use_f: bool = True
    explain_top: int = 3
    institution_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_LEVEL_WEIGHTS)
    )

    def __post_init__(self) -> None:
        if self.ddof not in (0, 1):
            raise AggloInputError(f"IndexConfig.ddof must be 0 or 1; got {self.ddof!r}.")
        _choice("k_pool", self.k_pool, K_POOLS)
        _choice("level_pool", self.level_pool, LEVEL_POOLS)
        _choice("negative_rule", self.negative_rule, NEGATIVE_RULES)
        _choice("missing", self.missing, MISSING_POLICIES)
        _choice("rescale", self.rescale, RESCALE_METHODS)
        _choice("constant_indicator", self.constant_indicator, CONSTANT_RULES)
        _choice("partial_members", self.partial_members, PARTIAL_RULES)
        if not 0 <= float(self.level_floor) < 1:
            raise AggloInputError(
                f"IndexConfig.level_floor must lie in [0, 1); got {self.level_floor!r}."
            )
        if int(self.min_cities) < 1:
            raise AggloInputError(f"IndexConfig.min_cities must be >= 1; got {self.min_cities!r}.")
        w = self.dimension_weights
        if isinstance(w, str):
            _choice("dimension_weights", w, WEIGHT_SCHEMES)
        else:
            bad = [d for d in w if d not in DIMENSIONS]
            neg = [d for d, v in w.items() if not (float(v) >= 0)]
            if bad or neg or not sum(float(v) for v in w.values()) > 0:
                raise AggloInputError(
                    "IndexConfig.dimension_weights must map dimension ids "
                    f"{list(DIMENSIONS)} to non-negative weights with a positive sum; "
                    f"got {dict(w)!r}."
                )
        if self.indicators is not None:
            object.__setattr__(self, "indicators", tuple(self.indicators))
            _check_ids(self.indicators, "IndexConfig.indicators")
        _check_ids(self.directions, "IndexConfig.directions")
        bad_dir = {k: v for k, v in self.directions.items() if v not in (1, -1)}
        if bad_dir:
            raise AggloInputError(f"IndexConfig.directions values must be 1 or -1; got {bad_dir}.")
        bad_lv = [k for k in self.institution_weights if k not in DEFAULT_LEVEL_WEIGHTS]
        if bad_lv:
            raise AggloInputError(
                f"IndexConfig.institution_weights keys must be {list(DEFAULT_LEVEL_WEIGHTS)}; "
                f"got {bad_lv}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (recorded with every output)."""
        d = asdict(self)
        d["directions"] = dict(self.directions)
        d["institution_weights"] = dict(self.institution_weights)
        if not isinstance(self.dimension_weights, str):
            d["dimension_weights"] = dict(self.dimension_weights)
        d["indicators"] = None if self.indicators is None else list(self.indicators)
        return d

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> IndexConfig:
        """Build from a mapping (e.g. the ``[index]`` TOML section); unknown keys are an error.

        Examples
        --------
        >>> IndexConfig.from_dict({"ddof": 1}).ddof
        1
        """
        options = dict(options or {})
        valid = [f.name for f in fields(cls)]
        unknown = [k for k in options if k not in valid]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, valid, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise AggloInputError(
                f"unknown index option(s) {', '.join(hints)}; valid options: {', '.join(valid)}."
            )
        return cls(**options)

    def direction(self, indicator: str) -> int:
        """+1 (higher is better) or −1 for ``indicator``, with overrides applied."""
        return int(self.directions.get(indicator, INDICATORS[indicator].direction))


def _check_ids(ids: Iterable[str], what: str) -> None:
    bad = [i for i in ids if i not in INDICATORS]
    if bad:
        raise AggloInputError(_unknown_ids_message(bad, what))


def _unknown_ids_message(bad: Sequence[str], what: str) -> str:
    parts = []
    for b in bad:
        close = difflib.get_close_matches(str(b), list(VARIABLES), n=1)
        parts.append(f"{b!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (
        f"{what}: unknown indicator id(s) {', '.join(parts)}. Valid index indicators: "
        f"{', '.join(INDICATORS)} (auxiliary variables: population, gdp)."
    )


@dataclass
class IndexResult:
    """Tables of one integration-index computation (see :func:`integration_index`).

    Attributes
    ----------
    indicators
        ``agglomeration_id, year, indicator, dimension, direction, n_cities, mean, sd, cv, k,
        R, f_pos, f, K`` (one row per kept cell).
    dimensions
        ``agglomeration_id, year, dimension, n_indicators, score, score_0_100``.
    composite
        ``agglomeration_id, year, n_dimensions, score, score_0_100, rank`` (rank 1 = most
        integrated, per year).
    between_groups
        ``year, dimension, n_agglomerations, mean, cv`` (dimension ``composite`` included).
    city_gaps
        ``adcode, agglomeration_id, year, indicator, value, gap, lag, dimension, imputed``.
    city_scores
        ``adcode, agglomeration_id, year, n_indicators, dispersion_gap, lag_score``.
    institutions
        Plans and mechanisms in force per agglomeration-year (see :func:`institutions_by_year`).
    explanations
        Per agglomeration-year, the indicators that pull the composite down most.
    report
        What was done: drops, imputations, degenerate indicators.
    config
        The :class:`IndexConfig` used.
    """

    indicators: pd.DataFrame
    dimensions: pd.DataFrame
    composite: pd.DataFrame
    between_groups: pd.DataFrame
    city_gaps: pd.DataFrame
    city_scores: pd.DataFrame
    institutions: pd.DataFrame
    explanations: pd.DataFrame
    report: list[str]
    config: IndexConfig
    weights: dict[str, float] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables by their file names (as the pipeline and the CLI write them)."""
        return {
            "index_indicators": self.indicators,
            "index_dimensions": self.dimensions,
            "index_composite": self.composite,
            "index_between_groups": self.between_groups,
            "city_gaps": self.city_gaps,
            "city_scores": self.city_scores,
            "institutions": self.institutions,
            "index_explanations": self.explanations,
            "index_report": pd.DataFrame({"message": self.report}),
        }

    def ranking(self) -> pd.DataFrame:
        """Composite ranking, one row per agglomeration and one column pair per year."""
        c = self.composite
        wide = c.pivot(index="agglomeration_id", columns="year", values=["score", "rank"])
        wide.columns = [f"{a}_{y}" for a, y in wide.columns]
        return wide.reset_index()


# ---------------------------------------------------------------------------------------
# input preparation
# ---------------------------------------------------------------------------------------


def _validate_panel(panel: pd.DataFrame) -> pd.DataFrame:
    need = ["adcode", "year", "indicator", "value"]
    if not isinstance(panel, pd.DataFrame):
        raise AggloInputError(f"panel must be a DataFrame; got {type(panel).__name__}.")
    missing = [c for c in need if c not in panel.columns]
    if missing:
        raise AggloInputError(
            f"panel lacks column(s) {missing}; expected a tidy table {need} "
            "(read files with agglo.read_panel)."
        )
    df = panel.loc[:, need].copy()
    df["adcode"] = df["adcode"].astype(str).str.strip().str.zfill(6)
    df["indicator"] = df["indicator"].astype(str)
    problems: list[str] = []
    years = pd.to_numeric(df["year"], errors="coerce")
    if years.isna().any() or (years != np.floor(years)).any():
        bad = df.loc[years.isna() | (years != np.floor(years)), "year"].unique()[:5].tolist()
        problems.append(f"column 'year' must hold whole years; got {bad}")
    df["year"] = years.fillna(-1).astype(int)
    values = pd.to_numeric(df["value"], errors="coerce")
    nonnum = df["value"].notna() & values.isna()
    if nonnum.any():
        problems.append(
            f"{int(nonnum.sum())} non-numeric value(s), e.g. {df.loc[nonnum, 'value'].iloc[0]!r}"
        )
    df["value"] = values.astype(float)
    unknown = sorted(set(df["indicator"]) - set(VARIABLES))
    if unknown:
        problems.append(_unknown_ids_message(unknown, "panel"))
    idx = df["indicator"].isin(list(INDICATORS))
    neg = idx & (df["value"] < 0)
    if neg.any():
        rows = df.loc[neg].head(5)
        ex = ", ".join(
            f"{r.indicator}={r.value:g} ({r.adcode}, {r.year})" for r in rows.itertuples()
        )
        problems.append(
            f"{int(neg.sum())} negative value(s) of index indicators, e.g. {ex}; the "
            "coefficient of variation needs non-negative values: correct or remove them"
        )
    binary = df["indicator"].isin([i for i, v in INDICATORS.items() if v.kind == "binary"])
    nonbin = binary & df["value"].notna() & ~df["value"].isin([0.0, 1.0])
    if nonbin.any():
        problems.append(
            f"{int(nonbin.sum())} value(s) of a 0/1 indicator are not 0 or 1, e.g. "
            f"{df.loc[nonbin, 'indicator'].iloc[0]}={df.loc[nonbin, 'value'].iloc[0]:g}"
        )
    dup = df.duplicated(["adcode", "year", "indicator"], keep=False)
    if dup.any():
        r = df.loc[dup].iloc[0]
        problems.append(
            f"{int(dup.sum())} duplicated (adcode, year, indicator) rows, e.g. "
            f"({r.adcode}, {r.year}, {r.indicator}); keep one value per city-year-indicator"
        )
    if problems:
        raise ValidationError(problems, source="panel")
    return df


def _prepare_membership(
    membership: pd.DataFrame, cfg: IndexConfig, report: list[str]
) -> pd.DataFrame:
    need = ["agglomeration_id", "adcode"]
    missing = [c for c in need if c not in membership.columns]
    if missing:
        raise AggloInputError(
            f"membership lacks column(s) {missing}; use agglo.load_membership() or a table "
            "with agglomeration_id, adcode (and optionally membership full/partial)."
        )
    m = membership.copy()
    m["adcode"] = m["adcode"].astype(str).str.strip().str.zfill(6)
    m = m[m["agglomeration_id"].notna()]
    if cfg.partial_members == "exclude" and "membership" in m:
        n0 = len(m)
        m = m[m["membership"] != "partial"]
        report.append(f"excluded {n0 - len(m)} partial member(s) (partial_members='exclude')")
    dup = m.loc[m["adcode"].duplicated(keep=False), "adcode"].unique().tolist()
    if dup:
        raise AggloInputError(
            f"membership: adcode(s) {dup[:10]} belong to more than one agglomeration; "
            "each city may be counted in one agglomeration only."
        )
    if m.empty:
        raise AggloInputError("membership is empty: no city belongs to an agglomeration.")
    return m[["agglomeration_id", "adcode"]].reset_index(drop=True)


@dataclass
class _Prepared:
    values: pd.DataFrame  # adcode, agglomeration_id, year, indicator, value, imputed
    n_members: pd.Series
    years: list[int]
    indicators: list[str]


def _prepare(
    panel: pd.DataFrame,
    membership: pd.DataFrame,
    cfg: IndexConfig,
    report: list[str],
    employment: pd.DataFrame | None,
) -> _Prepared:
    df = _validate_panel(panel)
    m = _prepare_membership(membership, cfg, report)
    df = df[df["indicator"].isin(list(INDICATORS))]
    if employment is not None and "krugman_index" not in set(df["indicator"]):
        kr = krugman_specialisation(employment, membership=m)
        df = pd.concat([df, kr[["adcode", "year", "indicator", "value"]]], ignore_index=True)
        report.append(
            f"krugman_index computed from sector employment for {kr['adcode'].nunique()} cities"
        )
    outside = sorted(set(df["adcode"]) - set(m["adcode"]))
    if outside:
        log.info("%d panel cities are not agglomeration members; ignored", len(outside))
        report.append(f"{len(outside)} panel cities outside the membership ignored")
    years = sorted(df["year"].unique().tolist())
    if not years:
        raise AggloInputError("panel holds no index indicator rows.")
    wanted = list(cfg.indicators) if cfg.indicators is not None else list(INDICATORS)
    present = set(df.loc[df["value"].notna(), "indicator"])
    absent = [i for i in wanted if i not in present]
    if absent:
        msg = (
            f"indicator(s) {absent} have no values in the panel and are left out; their "
            "dimensions are scored from the remaining indicators"
        )
        if cfg.indicators is not None:
            _warn(msg, report)
        else:
            report.append(msg)
            log.info(msg)
    use = [i for i in wanted if i in present]
    if not use:
        raise AggloInputError(
            f"none of the indicators {wanted} has a value in the panel; nothing to score."
        )
    # the full grid member x year x indicator, so missing values are seen and handled
    grid = pd.MultiIndex.from_product(
        [m["adcode"], years, use], names=["adcode", "year", "indicator"]
    ).to_frame(index=False)
    grid = grid.merge(m, on="adcode", how="left")
    vals = grid.merge(df, on=["adcode", "year", "indicator"], how="left")
    vals["imputed"] = False
    vals = _handle_missing(vals, cfg, report)
    n_members = m.groupby("agglomeration_id").size()
    return _Prepared(vals, n_members, years, use)


def _warn(msg: str, report: list[str]) -> None:
    report.append(msg)
    warnings.warn(msg, IndexWarning, stacklevel=3)


def _handle_missing(vals: pd.DataFrame, cfg: IndexConfig, report: list[str]) -> pd.DataFrame:
    miss = vals["value"].isna()
    if not miss.any():
        return vals
    n_missing = int(miss.sum())
    if cfg.missing == "drop":
        report.append(f"{n_missing} missing city value(s) left out of their cells (missing='drop')")
        return vals[~miss].reset_index(drop=True)
    vals = vals.copy()
    if cfg.missing == "interpolate":
        vals = vals.sort_values(["adcode", "indicator", "year"])

        def interp(s: pd.DataFrame) -> pd.Series:
            v = s["value"].to_numpy(dtype=float)
            y = s["year"].to_numpy(dtype=float)
            ok = ~np.isnan(v)
            if ok.sum() < 2:
                return pd.Series(v, index=s.index)
            lo, hi = y[ok].min(), y[ok].max()
            fill = np.where(~ok & (y >= lo) & (y <= hi), np.interp(y, y[ok], v[ok]), v)
            return pd.Series(fill, index=s.index)

        filled = vals.groupby(["adcode", "indicator"], group_keys=False)[["year", "value"]].apply(
            interp
        )
        vals["value"] = filled.reindex(vals.index)
    else:  # group_mean
        cell = vals.groupby(["agglomeration_id", "year", "indicator"])["value"]
        count = cell.transform("count")
        mean = cell.transform("mean")
        vals["value"] = vals["value"].where(vals["value"].notna() | (count < cfg.min_cities), mean)
    now = vals["value"].notna()
    imputed = miss.reindex(vals.index) & now
    vals["imputed"] = imputed
    by_ind = vals.loc[imputed].groupby("indicator").size()
    if imputed.any():
        detail = ", ".join(f"{i}: {n}" for i, n in by_ind.items())
        _warn(
            f"imputed {int(imputed.sum())} of {n_missing} missing city value(s) by "
            f"missing={cfg.missing!r} ({detail})",
            report,
        )
    left = n_missing - int(imputed.sum())
    if left:
        report.append(f"{left} missing city value(s) could not be imputed and are left out")
    return (
        vals[now]
        .sort_values(["agglomeration_id", "adcode", "year", "indicator"])
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------------------------------
# the core computation
# ---------------------------------------------------------------------------------------


def _minmax_pool(s: pd.Series, keys: list[pd.Series] | None) -> tuple[pd.Series, pd.Series]:
    if keys is None:
        return pd.Series(s.max(), index=s.index), pd.Series(s.min(), index=s.index)
    g = s.groupby(keys)
    return g.transform("max"), g.transform("min")


def _cells(prep: _Prepared, cfg: IndexConfig, report: list[str], *, warn: bool) -> pd.DataFrame:
    v = prep.values
    g = v.groupby(["agglomeration_id", "year", "indicator"], sort=True)["value"]
    cells = pd.DataFrame(
        {
            "n_cities": g.count(),
            "mean": g.mean(),
            "sd": g.std(ddof=cfg.ddof),
            "_min": g.min(),
            "_span": g.max() - g.min(),
        }
    ).reset_index()
    # identical values: mean = the value and sd = 0 exactly, not rounding noise (e.g. 1e-17)
    same = cells.pop("_span") <= 0
    cells["mean"] = cells["mean"].where(~same, cells["_min"])
    cells["sd"] = cells["sd"].where(~same, 0.0)
    cells = cells.drop(columns="_min")
    small = cells["n_cities"] < cfg.min_cities
    if small.any():
        ex = cells.loc[small].head(4)
        eg = "; ".join(
            f"{r.agglomeration_id} {r.year} {r.indicator} ({r.n_cities})" for r in ex.itertuples()
        )
        msg = (
            f"dropped {int(small.sum())} agglomeration-year-indicator cell(s) with fewer than "
            f"{cfg.min_cities} reporting cities, e.g. {eg}"
        )
        if warn:
            _warn(msg, report)
        else:
            report.append(msg)
        cells = cells[~small].reset_index(drop=True)
    if cells.empty:
        raise AggloInputError(
            f"no agglomeration-year-indicator cell has at least {cfg.min_cities} reporting "
            "cities; nothing to score (lower min_cities or supply more data)."
        )
    if cfg.constant_indicator == "drop" or warn:
        const = [
            i
            for i, c in cells.groupby("indicator")
            if np.allclose(c["sd"].fillna(0), 0) and np.ptp(c["mean"].to_numpy()) == 0
        ]
        if const:
            if cfg.constant_indicator == "drop":
                cells = cells[~cells["indicator"].isin(const)].reset_index(drop=True)
                report.append(f"constant indicator(s) {const} dropped (constant_indicator='drop')")
            elif warn:
                _warn(
                    f"indicator(s) {const} take one value in every city and year of the run; "
                    "they carry no information but score k = 100, f⁺ = 1 (DESIGN.md "
                    "equal-extremes rule); set constant_indicator='drop' to exclude them",
                    report,
                )
    mean = cells["mean"]
    sd = cells["sd"].fillna(0.0)  # one city with ddof=1 -> undefined sd; treated as 0
    cells["sd"] = sd
    cells["cv"] = np.where(mean > 0, sd / mean.where(mean > 0, 1.0), 0.0)
    keys_k = {
        "indicator": [cells["indicator"]],
        "indicator_year": [cells["indicator"], cells["year"]],
        "all": None,
    }[cfg.k_pool]
    cv_max, cv_min = _minmax_pool(cells["cv"], keys_k)
    span = cv_max - cv_min
    ratio = ((cv_max - cells["cv"]) / span.where(span > 0, 1.0)).clip(0.0, 1.0)
    cells["k"] = np.where(span > 0, 100.0 * ratio, 100.0)
    keys_f = [cells["indicator"]] + ([cells["year"]] if cfg.level_pool == "indicator_year" else [])
    l_max, l_min = _minmax_pool(cells["mean"], keys_f)
    lspan = l_max - l_min
    floor = float(cfg.level_floor)
    f_pos = np.where(
        lspan > 0,
        floor + (1 - floor) * ((cells["mean"] - l_min) / lspan.where(lspan > 0, 1.0)).clip(0, 1),
        1.0,
    )
    direction = cells["indicator"].map(cfg.direction).astype(int)
    f_neg = 1.0 + floor - f_pos
    f_negative = {
        "sqrt": np.sqrt(f_pos * f_neg),
        "reverse": f_neg,
        "ignore": f_pos,
    }[cfg.negative_rule]
    f = np.where(direction < 0, f_negative, f_pos)
    if not cfg.use_f:
        f = np.ones(len(cells))
    cells["dimension"] = cells["indicator"].map(lambda i: INDICATORS[i].dimension)
    cells["direction"] = direction
    R = prep.n_members / prep.n_members.sum() if cfg.use_R else prep.n_members * 0 + 1.0
    cells["R"] = cells["agglomeration_id"].map(R).astype(float)
    cells["f_pos"] = f_pos
    cells["f"] = f
    cells["K"] = cells["k"] * cells["R"] * cells["f"]
    cols = [
        "agglomeration_id",
        "year",
        "indicator",
        "dimension",
        "direction",
        "n_cities",
        "mean",
        "sd",
        "cv",
        "k",
        "R",
        "f_pos",
        "f",
        "K",
    ]
    return cells[cols]


def entropy_weights(scores: pd.DataFrame) -> dict[str, float]:
    """Entropy weights of the columns of a (rows = observations) non-negative score matrix.

    ``p_ij = x_ij / Σ_i x_ij``, ``e_j = −Σ_i p_ij ln p_ij / ln n``, ``w_j = (1 − e_j) /
    Σ (1 − e_j)``; rows with a missing value are left out; all-equal columns give equal
    weights.

    Examples
    --------
    >>> w = entropy_weights(pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [1.0, 0.0, 2.0]}))
    >>> round(w["a"], 6), round(w["b"], 6)
    (0.0, 1.0)
    """
    x = scores.dropna().clip(lower=0)
    n = len(x)
    if n < 2:
        return {c: 1.0 / scores.shape[1] for c in scores.columns}
    tot = x.sum(axis=0)
    p = x / tot.where(tot > 0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p.where(p > 0, 1.0)), 0.0)
    e = -plogp.sum(axis=0) / math.log(n)
    e = np.where(tot > 0, e, 1.0)
    d = 1.0 - e
    if d.sum() <= 1e-12:
        return {c: 1.0 / scores.shape[1] for c in scores.columns}
    w = d / d.sum()
    return {c: float(v) for c, v in zip(scores.columns, w, strict=True)}


def _rescale(s: pd.Series, method: str) -> pd.Series:
    if method == "max":
        top = s.max()
        return s * 0 + 100.0 if not top > 0 else 100.0 * s / top
    lo, hi = s.min(), s.max()
    if not hi > lo:
        return s * 0 + 100.0
    return 100.0 * (s - lo) / (hi - lo)


def _scores(
    cells: pd.DataFrame, cfg: IndexConfig, report: list[str], *, warn: bool
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    dims = (
        cells.groupby(["agglomeration_id", "year", "dimension"])
        .agg(n_indicators=("K", "size"), score=("K", "mean"))
        .reset_index()
    )
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    dims = dims.sort_values(
        ["year", "agglomeration_id", "dimension"],
        key=lambda s: s.map(order) if s.name == "dimension" else s,
    ).reset_index(drop=True)
    dims["score_0_100"] = dims.groupby("dimension")["score"].transform(
        lambda s: _rescale(s, cfg.rescale)
    )
    wide = dims.pivot(index=["agglomeration_id", "year"], columns="dimension", values="score")
    wide = wide[[d for d in DIMENSIONS if d in wide.columns]]
    if isinstance(cfg.dimension_weights, str):
        if cfg.dimension_weights == "equal":
            weights = {d: 1.0 for d in wide.columns}
        else:
            weights = entropy_weights(wide)
    else:
        weights = {d: float(cfg.dimension_weights.get(d, 0.0)) for d in wide.columns}
    wsum = sum(weights.values())
    weights = {d: w / wsum for d, w in weights.items()} if wsum > 0 else weights
    wvec = pd.Series(weights).reindex(wide.columns).fillna(0.0)
    present = wide.notna()
    wmat = present.mul(wvec, axis=1)
    denom = wmat.sum(axis=1)
    comp = (wide.fillna(0.0) * wmat).sum(axis=1) / denom.where(denom > 0)
    partial = present.sum(axis=1) < len(wide.columns)
    if partial.any():
        ex = ", ".join(f"{a} {y}" for a, y in list(wide.index[partial])[:5])
        msg = (
            f"{int(partial.sum())} agglomeration-year(s) lack one or more dimensions "
            f"(composite renormalised over the dimensions present): {ex}"
        )
        if warn:
            _warn(msg, report)
        else:
            report.append(msg)
    composite = pd.DataFrame({"n_dimensions": present.sum(axis=1), "score": comp}).reset_index()
    composite = composite[composite["score"].notna()].reset_index(drop=True)
    composite["score_0_100"] = _rescale(composite["score"], cfg.rescale)
    composite["rank"] = (
        composite.groupby("year")["score"].rank(ascending=False, method="min").astype(int)
    )
    composite = composite.sort_values(["year", "rank", "agglomeration_id"]).reset_index(drop=True)
    return dims, composite, weights


def _cv(s: pd.Series, ddof: int) -> float:
    s = s.dropna()
    if len(s) <= ddof:
        return float("nan")
    mu = s.mean()
    sd = s.std(ddof=ddof)
    return float(sd / mu) if mu > 0 else 0.0


def _between(dims: pd.DataFrame, composite: pd.DataFrame, ddof: int) -> pd.DataFrame:
    rows = []
    for (year, dim), d in dims.groupby(["year", "dimension"], sort=False):
        rows.append((year, dim, len(d), d["score"].mean(), _cv(d["score"], ddof)))
    for year, c in composite.groupby("year"):
        rows.append((year, "composite", len(c), c["score"].mean(), _cv(c["score"], ddof)))
    out = pd.DataFrame(rows, columns=["year", "dimension", "n_agglomerations", "mean", "cv"])
    order = {d: i for i, d in enumerate([*DIMENSIONS, "composite"])}
    return out.sort_values(
        ["year", "dimension"], key=lambda s: s.map(order) if s.name == "dimension" else s
    ).reset_index(drop=True)


def _city_gaps(prep: _Prepared, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    keep = cells[["agglomeration_id", "year", "indicator", "mean", "direction", "dimension"]]
    v = prep.values.merge(keep, on=["agglomeration_id", "year", "indicator"], how="inner")
    mu = v["mean"]
    v["gap"] = np.where(mu > 0, (v["value"] - mu) / mu.where(mu > 0, 1.0), 0.0)
    v["lag"] = v["gap"] * v["direction"]
    gaps = (
        v[
            [
                "adcode",
                "agglomeration_id",
                "year",
                "indicator",
                "value",
                "gap",
                "lag",
                "dimension",
                "imputed",
            ]
        ]
        .sort_values(["agglomeration_id", "adcode", "year", "indicator"])
        .reset_index(drop=True)
    )
    v["gap2"] = v["gap"] ** 2
    scores = (
        v.groupby(["adcode", "agglomeration_id", "year"])
        .agg(
            n_indicators=("gap", "size"), dispersion_gap=("gap2", "mean"), lag_score=("lag", "mean")
        )
        .reset_index()
        .sort_values(["agglomeration_id", "adcode", "year"])
        .reset_index(drop=True)
    )
    scores = scores[
        ["adcode", "agglomeration_id", "year", "n_indicators", "dispersion_gap", "lag_score"]
    ]
    return gaps, scores


def _explain(
    cells: pd.DataFrame, dims: pd.DataFrame, weights: dict[str, float], top: int
) -> pd.DataFrame:
    """Shortfall of each indicator's contribution to the composite from its maximum."""
    c = cells.merge(
        dims[["agglomeration_id", "year", "dimension", "n_indicators"]],
        on=["agglomeration_id", "year", "dimension"],
    )
    # composite weight of an indicator in its cell: w_d / n_d, renormalised over dimensions present
    c["w_dim"] = c["dimension"].map(weights).fillna(0.0)
    present = c.drop_duplicates(["agglomeration_id", "year", "dimension"])
    wsum = present.groupby(["agglomeration_id", "year"])["w_dim"].sum().rename("w_sum")
    c = c.join(wsum, on=["agglomeration_id", "year"])
    c["weight"] = c["w_dim"] / c["w_sum"].where(c["w_sum"] > 0) / c["n_indicators"]
    c["contribution"] = c["weight"] * c["K"]
    c["shortfall"] = c["weight"] * (100.0 * c["R"] - c["K"])
    tot = c.groupby(["agglomeration_id", "year"])["shortfall"].transform("sum")
    c["share_of_shortfall"] = np.where(tot > 0, c["shortfall"] / tot.where(tot > 0, 1), 0.0)
    # which factor costs more: dispersion (1 - k/100) or level (1 - f)
    c["cause"] = np.where(1 - c["k"] / 100.0 >= 1 - c["f"], "dispersion", "level")
    c = c.sort_values(["agglomeration_id", "year", "shortfall"], ascending=[True, True, False])
    c["rank"] = c.groupby(["agglomeration_id", "year"]).cumcount() + 1
    c = c[c["rank"] <= top].copy()

    def text(r: Any) -> str:
        if r.cause == "dispersion":
            why = f"cities far apart (cv {r.cv:.2f}, k {r.k:.0f})"
        elif r.direction < 0:  # f = sqrt(f⁺ f⁻) is low at either extreme of the level
            why = f"level at an extreme of the run's range (mean {r.mean:.3g}, f {r.f:.2f})"
        else:
            why = f"low level for the run (mean {r.mean:.3g}, f {r.f:.2f})"
        name = INDICATORS[r.indicator].name_en
        return f"{name} ({r.indicator}): {why}; {100 * r.share_of_shortfall:.0f}% of the shortfall"

    c["explanation"] = [text(r) for r in c.itertuples()]
    cols = [
        "agglomeration_id",
        "year",
        "rank",
        "indicator",
        "dimension",
        "cv",
        "k",
        "f",
        "K",
        "contribution",
        "shortfall",
        "share_of_shortfall",
        "cause",
        "explanation",
    ]
    return c[cols].reset_index(drop=True)


def _core(
    prep: _Prepared, cfg: IndexConfig, report: list[str], *, warn: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, float]]:
    cells = _cells(prep, cfg, report, warn=warn)
    dims, comp, weights = _scores(cells, cfg, report, warn=warn)
    return cells, dims, comp, weights


def integration_index(
    panel: pd.DataFrame,
    membership: pd.DataFrame,
    *,
    config: IndexConfig | Mapping[str, Any] | None = None,
    employment: pd.DataFrame | None = None,
    institutions: pd.DataFrame | None = None,
) -> IndexResult:
    """Integration index of each agglomeration and year (seed 004 section 2.2, DESIGN.md).

    Parameters
    ----------
    panel
        Tidy ``adcode, year, indicator, value`` table (indicator ids of
        :data:`agglo.reference.registry.INDICATORS`; auxiliary variables are ignored). Values must be
        non-negative; ``NaN`` means missing.
    membership
        ``agglomeration_id, adcode`` (e.g. :func:`agglo.load_membership`). ``R`` uses these
        member counts. Panel cities outside it are ignored (logged).
    config
        :class:`IndexConfig` or a mapping of its options (defaults follow DESIGN.md).
    employment
        Optional long sector employment ``adcode, year, sector, employment``; used to compute
        ``krugman_index`` when the panel lacks it.
    institutions
        Plans and mechanisms (:func:`agglo.load_institutions`; default: the bundled table).

    Returns
    -------
    IndexResult
        Tables ``indicators``, ``dimensions``, ``composite``, ``between_groups``,
        ``city_gaps``, ``city_scores``, ``institutions``, ``explanations``; the ``report`` of
        what was dropped or imputed; and the ``config``. Scores are unitless: K lies in
        [0, 100·R]; ``score_0_100`` is rescaled per :attr:`IndexConfig.rescale`.

    Raises
    ------
    AggloInputError
        Missing columns, unknown indicator ids, negative values, non-0/1 HSR values,
        duplicated rows (all problems reported together), or nothing left to score.

    Warns
    -----
    IndexWarning
        Cells dropped for too few reporting cities, imputed values, constant indicators,
        agglomeration-years lacking a dimension.

    Examples
    --------
    >>> panel = pd.DataFrame({
    ...     "adcode": ["000001", "000002", "000003", "000004", "000005", "000006"],
    ...     "year": 2020, "indicator": "gdp_per_capita",
    ...     "value": [1.0, 2.0, 3.0, 2.0, 2.0, 2.0]})
    >>> members = pd.DataFrame({"agglomeration_id": ["a"] * 3 + ["b"] * 3,
    ...                         "adcode": panel["adcode"]})
    >>> res = integration_index(panel, members, institutions=pd.DataFrame())
    >>> res.indicators[["agglomeration_id", "cv", "k"]].round(3).values.tolist()
    [['a', 0.408, 0.0], ['b', 0.0, 100.0]]
    >>> res.composite[["agglomeration_id", "rank"]].values.tolist()
    [['b', 1], ['a', 2]]
    """
    cfg = config if isinstance(config, IndexConfig) else IndexConfig.from_dict(config)
    report: list[str] = []
    prep = _prepare(panel, membership, cfg, report, employment)
    cells, dims, comp, weights = _core(prep, cfg, report, warn=True)
    between = _between(dims, comp, cfg.ddof)
    gaps, city_scores = _city_gaps(prep, cells)
    if institutions is None:
        from agglo.reference.boundaries import load_institutions

        institutions = load_institutions()
    inst = institutions_by_year(
        institutions,
        prep.years,
        agglomerations=list(prep.n_members.index),
        level_weights=cfg.institution_weights,
    )
    expl = _explain(cells, dims, weights, cfg.explain_top)
    if cfg.dimension_weights != "equal":
        report.append("dimension weights: " + ", ".join(f"{d} {w:.3f}" for d, w in weights.items()))
    meta = cfg.to_dict()
    tables = (cells, dims, comp, between, gaps, city_scores, inst, expl)
    for t in tables:
        t.attrs["config"] = meta
    return IndexResult(*tables, report=report, config=cfg, weights=weights)


# ---------------------------------------------------------------------------------------
# agglomeration layer
# ---------------------------------------------------------------------------------------


def agglomeration_layer(cities: Any, result: IndexResult) -> Any:
    """One polygon per agglomeration (dissolve of its member cities) with wide scores.

    Parameters
    ----------
    cities
        GeoDataFrame with ``agglomeration_id`` (e.g. :func:`agglo.load_cities`); rows
        with a null id are ignored.
    result
        An :class:`IndexResult`.

    Returns
    -------
    geopandas.GeoDataFrame
        ``agglomeration_id, name_zh, name_en, n_cities, area_km2`` and per year
        ``score_<year>, score_0_100_<year>, rank_<year>, institutions_<year>``; CRS of
        ``cities``.
    """
    import geopandas as gpd
    import shapely

    from agglo.measures.geodesy import geodesic_area_km2
    from agglo.reference.boundaries import AGGLOMERATIONS

    members = cities[cities["agglomeration_id"].notna()]
    rows, geoms = [], []
    for g, part in members.groupby("agglomeration_id", sort=True):
        zh, en = AGGLOMERATIONS.get(g, (g, g))
        rows.append({"agglomeration_id": g, "name_zh": zh, "name_en": en, "n_cities": len(part)})
        geoms.append(shapely.union_all(part.geometry.to_numpy()))
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=cities.crs)
    gdf["area_km2"] = np.asarray(geodesic_area_km2(gdf), dtype=float).round(1)
    c = result.composite
    for y in sorted(c["year"].unique()):
        cy = c[c["year"] == y].set_index("agglomeration_id")
        gdf[f"score_{y}"] = gdf["agglomeration_id"].map(cy["score"])
        gdf[f"score_0_100_{y}"] = gdf["agglomeration_id"].map(cy["score_0_100"])
        gdf[f"rank_{y}"] = gdf["agglomeration_id"].map(cy["rank"]).astype("Int64")
        if len(result.institutions):
            iy = result.institutions[result.institutions["year"] == y].set_index("agglomeration_id")
            gdf[f"institutions_{y}"] = gdf["agglomeration_id"].map(iy["score"])
    cols = [c for c in gdf.columns if c != "geometry"] + ["geometry"]
    return gdf[cols]
