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

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agglo.analysis.institutions import (
    DEFAULT_LEVEL_WEIGHTS,
    INSTITUTION_COLUMNS,
    institutions_by_year,
)
from agglo.errors import AggloDataWarning, AggloInputError, ValidationError
from agglo.io.panel import joined_status
from agglo.measures.krugman import krugman_specialisation
from agglo.options import Options, choice_problem, did_you_mean, option
from agglo.reference.registry import DIMENSIONS, INDICATORS, VARIABLES
from agglo.results import StageResult

__all__ = [
    "IndexConfig",
    "IndexOptions",
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


class IndexWarning(AggloDataWarning):
    """Something was dropped, imputed, is missing or is degenerate in the integration index."""


@dataclass(frozen=True)
class IndexOptions(Options):
    """Every choice of the integration index and its sensitivity (defaults follow DESIGN.md).

    The ``[index]`` section of a run configuration and the flags of ``agglo index`` derive
    from these fields. :class:`IndexConfig` is the same class under its former name.

    Examples
    --------
    >>> opts = IndexOptions(ddof=1)
    >>> opts.to_dict()["ddof"], IndexOptions.from_dict({"missing": "interpolate"}).missing
    (1, 'interpolate')
    >>> IndexOptions(missing="zero")
    Traceback (most recent call last):
    ...
    agglo.errors.ValidationError: [index] options: 1 problem(s)
      - index.missing must be one of drop, interpolate, group_mean; got 'zero'
    """

    section: ClassVar[str] = "index"

    ddof: int = option(
        0, help="Delta degrees of freedom of σ: 0 population, 1 sample.", choices=(0, 1)
    )
    k_pool: str = option(
        "indicator",
        help="Where the cv extremes of k are pooled: per indicator over every agglomeration "
        "and year, per indicator and year, or over every indicator too ('all', the literal "
        "reading of 所有采用变异系数值).",
        choices=K_POOLS,
    )
    level_pool: str = option(
        "indicator", help="Where the level extremes of f are pooled.", choices=LEVEL_POOLS
    )
    level_floor: float = option(
        0.01, help="Lower end of the level normalisation (paper: 0.01), in [0, 1).", minimum=0.0
    )
    negative_rule: str = option(
        "sqrt",
        help="Level adjustment of a negative indicator: sqrt(f⁺·f⁻) (paper), f⁻ ('reverse') "
        "or f⁺ ('ignore').",
        choices=NEGATIVE_RULES,
    )
    dimension_weights: str | Mapping[str, float] = option(
        "equal",
        help="'equal' (paper), 'entropy' (entropy weights of the dimension scores over the "
        "run's agglomeration-years) or a table dimension -> weight (normalised); TOML only.",
        cli=False,
    )
    missing: str = option(
        "drop",
        help="A missing city value: left out of its cell ('drop'), interpolated linearly "
        "between the panel's years per city ('interpolate', no extrapolation) or the cell "
        "mean of the reporting cities ('group_mean', shrinks cv; reported).",
        choices=MISSING_POLICIES,
    )
    min_cities: int = option(
        3, help="Cells with fewer reporting cities are dropped with a warning.", minimum=1
    )
    rescale: str = option(
        "minmax",
        help="score_0_100: min-max over the run's agglomeration-years, or score / maximum.",
        choices=RESCALE_METHODS,
    )
    constant_indicator: str = option(
        "keep",
        help="An indicator constant over the whole run: kept (k = 100, f⁺ = 1, warned) or dropped.",
        choices=CONSTANT_RULES,
    )
    partial_members: str = option(
        "include",
        help="Partial member cities (only some counties in the plan): included or excluded.",
        choices=PARTIAL_RULES,
    )
    indicators: tuple[str, ...] | None = option(
        None, help="Indicator ids to use; default every registry indicator in the panel."
    )
    directions: Mapping[str, int] = option(
        default_factory=dict, help="Overrides of the registry direction (+1 / -1) per indicator."
    )
    use_R: bool = option(True, help="Apply the size adjustment R (off: sensitivity checks).")
    use_f: bool = option(True, help="Apply the level adjustment f (off: sensitivity checks).")
    explain_top: int = option(
        3, help="Indicators listed per agglomeration-year in index_explanations.", minimum=0
    )
    institution_weights: Mapping[str, float] = option(
        default_factory=lambda: dict(DEFAULT_LEVEL_WEIGHTS),
        help="Level -> weight of plans and mechanisms (national above provincial above municipal).",
    )
    sensitivity: bool = option(
        True,
        help="Also compute index_sensitivity: rank changes under alternative choices and "
        "without each member city.",
    )

    def __post_init__(self) -> None:
        if self.indicators is not None and not isinstance(self.indicators, str):
            object.__setattr__(self, "indicators", tuple(self.indicators))
        super().__post_init__()

    def extra_problems(self) -> list[str]:
        out = []
        if not float(self.level_floor) < 1:
            out.append(f"index.level_floor must be < 1; got {self.level_floor!r}")
        w = self.dimension_weights
        if isinstance(w, str):
            out.append(choice_problem("index.dimension_weights", w, WEIGHT_SCHEMES) or "")
        else:
            bad = [d for d in w if d not in DIMENSIONS]
            neg = [d for d, v in w.items() if not (float(v) >= 0)]
            if bad or neg or not sum(float(v) for v in w.values()) > 0:
                out.append(
                    "index.dimension_weights must map dimension ids "
                    f"{list(DIMENSIONS)} to non-negative weights with a positive sum; "
                    f"got {dict(w)!r}"
                )
        if self.indicators is not None:
            out.append(_unknown_ids_message(self.indicators, "index.indicators"))
        out.append(_unknown_ids_message(self.directions, "index.directions"))
        bad_dir = {k: v for k, v in self.directions.items() if v not in (1, -1)}
        if bad_dir:
            out.append(f"index.directions values must be 1 or -1; got {bad_dir}")
        for level in self.institution_weights:
            out.append(
                choice_problem("index.institution_weights key", level, list(DEFAULT_LEVEL_WEIGHTS))
                or ""
            )
        return [p for p in out if p]

    def direction(self, indicator: str) -> int:
        """+1 (higher is better) or −1 for ``indicator``, with overrides applied."""
        return int(self.directions.get(indicator, INDICATORS[indicator].direction))


#: the former name of :class:`IndexOptions` (``agglo.IndexConfig``)
IndexConfig = IndexOptions


def index_options(options: IndexOptions | Mapping[str, Any] | None = None) -> IndexOptions:
    """``options`` as :class:`IndexOptions` (a mapping is read like the ``[index]`` section).

    Examples
    --------
    >>> index_options({"ddof": 1}).ddof, index_options().ddof
    (1, 0)
    """
    if isinstance(options, IndexOptions):
        return options
    return IndexOptions.from_dict(options)


def _unknown_ids_message(ids: Iterable[str], what: str) -> str:
    """The problem of unknown indicator ids in ``ids`` (``""`` when every id is known)."""
    bad = [i for i in ids if i not in INDICATORS]
    if not bad:
        return ""
    parts = [f"{b!r}{did_you_mean(b, VARIABLES)}" for b in bad]
    return (
        f"{what}: unknown indicator id(s) {', '.join(parts)}. Valid index indicators: "
        f"{', '.join(INDICATORS)} (auxiliary variables: population, gdp)"
    )


@dataclass
class IndexResult(StageResult):
    """Tables of one integration-index computation (see :func:`integration_index`).

    Attributes
    ----------
    indicators
        ``agglomeration_id, year, indicator, dimension, direction, n_cities, mean, sd, cv, k,
        R, f_pos, f, K`` (one row per kept cell), and ``provenance`` (the labels of the cell's
        values, e.g. ``real:census-2010``) when the panel carries them.
    dimensions
        ``agglomeration_id, year, dimension, n_indicators, score, score_0_100``.
    composite
        ``agglomeration_id, year, n_dimensions, score, score_0_100, rank`` (rank 1 = most
        integrated, per year).
    between_groups
        ``year, dimension, n_agglomerations, mean, cv`` (dimension ``composite`` included).
    city_gaps
        ``adcode, agglomeration_id, year, indicator, value, gap, lag, dimension, imputed``
        (and ``provenance`` per value when the panel carries it).
    city_scores
        ``adcode, agglomeration_id, year, n_indicators, dispersion_gap, lag_score``.
    institutions
        Plans and mechanisms in force per agglomeration-year (see :func:`institutions_by_year`).
    explanations
        Per agglomeration-year, the indicators that pull the composite down most.
    report
        What was done: drops, imputations, degenerate indicators.
    config
        The :class:`IndexOptions` used.
    weights
        Dimension -> weight of the composite.
    coverage
        One row per cell whose members do not all report: ``agglomeration_id, year,
        indicator, n_members, n_cities, missing_cities`` (adcode and name, "; "-joined).
    sensitivity
        :func:`agglo.analysis.sensitivity.index_sensitivity` (when ``options.sensitivity``;
        filled by :meth:`sensitivity_table` or :meth:`tables`, which compute it once).
    agglomerations
        The ``agglomerations`` layer (when ``cities`` were given).
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
    config: IndexOptions
    weights: dict[str, float] = field(default_factory=dict)
    coverage: pd.DataFrame | None = None
    sensitivity: pd.DataFrame | None = None
    agglomerations: Any = None
    _sensitivity_args: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def sensitivity_table(self) -> pd.DataFrame | None:
        """``index_sensitivity`` (when ``options.sensitivity``), computed on first use."""
        if self.sensitivity is None and self._sensitivity_args is not None:
            from agglo.analysis.sensitivity import prepared_sensitivity

            self.sensitivity = prepared_sensitivity(**self._sensitivity_args)
            self._sensitivity_args = None
        return self.sensitivity

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables by their file names (as the pipeline and the CLI write them).

        When the panel carries provenance, every table has a per-row ``provenance`` (the
        labels of the member values behind the row, see :func:`index_labels`) and, for rows
        that combine indicators, ``provenance_inputs``.
        """
        out = {
            "index_indicators": self.indicators,
            "index_dimensions": self.dimensions,
            "index_composite": self.composite,
            "index_between_groups": self.between_groups,
            "city_gaps": self.city_gaps,
            "city_scores": self.city_scores,
            "institutions": self.institutions,
            "index_explanations": self.explanations,
            "index_report": self.report_table(),
        }
        if self.sensitivity_table() is not None:
            out["index_sensitivity"] = self.sensitivity
        return index_labels(out, self.city_gaps)

    def report_table(self) -> pd.DataFrame:
        """``index_report``: the report's messages, then one row per cell with missing cities.

        Columns ``message, agglomeration_id, year, indicator, n_members, n_cities,
        missing_cities`` (the cell columns are empty on message rows).
        """
        cols = ["agglomeration_id", "year", "indicator", "n_members", "n_cities", "missing_cities"]
        notes = pd.DataFrame({"message": self.report}).reindex(columns=["message", *cols])
        cov = self.coverage
        if cov is None or cov.empty:
            return notes
        cells = cov.assign(
            message=[
                f"{r.agglomeration_id} {r.year} {r.indicator}: {r.n_cities} of {r.n_members} "
                f"member cities report; missing {r.missing_cities}"
                for r in cov.itertuples()
            ]
        )
        return pd.concat([notes, cells[["message", *cols]]], ignore_index=True)

    def layers(self) -> dict[str, Any]:
        if self.agglomerations is None:
            return {}
        return {
            "agglomerations": index_labels({"agglomerations": self.agglomerations}, self.city_gaps)[
                "agglomerations"
            ]
        }

    def metadata(self) -> dict[str, Any]:
        return {"index_config": self.config.to_dict(), "report": list(self.report)}

    def indicator_status(self) -> dict[str, str]:
        """Indicator -> ``data_status`` of its values in the index (``real``, ``synthetic``,
        ``real+interpolated``, ...; empty when the panel carries no provenance)."""
        if "provenance" not in self.city_gaps:
            return {}
        return {
            ind: joined_status(g) for ind, g in self.city_gaps.groupby("indicator")["provenance"]
        }

    def layer_metadata(self) -> dict[str, dict[str, Any]]:
        if self.agglomerations is None:
            return {}
        meta: dict[str, Any] = {
            "description": "integration index of the agglomerations (seed 004 method)",
            "index_config": self.config.to_dict(),
            "units": {"score_*": "unitless, 0..100·R", "score_0_100_*": "0-100 rescaled"},
        }
        status = self.indicator_status()
        if status:
            meta["indicator_provenance"] = status
            meta["real_indicators"] = sorted(i for i, s in status.items() if "synthetic" not in s)
            meta["synthetic_indicators"] = sorted(i for i, s in status.items() if "synthetic" in s)
        return {"agglomerations": meta}

    def _latest_scores(self) -> tuple[Any, pd.DataFrame]:
        scores = self.city_scores
        latest = max(scores["year"]) if len(scores) else None
        return latest, scores[scores["year"] == latest].set_index("adcode")

    def city_columns(self) -> dict[str, pd.Series]:
        latest, cs = self._latest_scores()
        if latest is None:
            return {}
        out = {"lag_score": cs["lag_score"], "dispersion_gap": cs["dispersion_gap"]}
        if "provenance" in cs:  # the cities layer says what its scores were computed from
            out["score_provenance"] = cs["provenance"]
        return out

    def city_units(self) -> dict[str, str]:
        latest, _ = self._latest_scores()
        return {
            "lag_score": f"mean direction-adjusted gap (x-μ)/μ, {latest}; <0 lagging",
            "dispersion_gap": f"mean squared gap ((x-μ)/μ)², {latest}",
            "score_provenance": f"labels of the {latest} values behind lag_score and dispersion_gap",
        }

    def summary_lines(self) -> list[str]:
        return ["Integration index, composite score (rank; 1 = most integrated):"]

    def notes(self) -> list[str]:
        return self.ranking_text()

    def ranking_text(self) -> list[str]:
        """The composite ranking as aligned text lines (one row per agglomeration)."""
        from agglo.reference.boundaries import AGGLOMERATIONS

        comp = self.composite
        years = sorted(comp["year"].unique())
        lines = [f"{'agglomeration':<28}" + "".join(f"{y:>16}" for y in years)]
        order = comp[comp["year"] == years[-1]].sort_values("rank")["agglomeration_id"].tolist()
        order += [g for g in comp["agglomeration_id"].unique() if g not in order]
        found: dict[tuple[Any, Any], tuple[float, int]] = {}
        for g, y, score, rank in comp[["agglomeration_id", "year", "score", "rank"]].itertuples(
            index=False
        ):
            found.setdefault((g, y), (score, rank))
        for g in order:
            zh = AGGLOMERATIONS.get(g, (g, g))[0]
            cells = []
            for y in years:
                r = found.get((g, y))
                cells.append(f"{r[0]:>9.2f} (#{int(r[1])})" if r is not None else f"{'-':>14}")
            label = f"{g} {zh}"
            pad = 28 - sum(2 if ord(ch) > 0x2E80 else 1 for ch in label)
            lines.append(label + " " * max(pad, 1) + "".join(f"{c:>16}" for c in cells))
        return lines

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
    keep = need + (["provenance"] if "provenance" in panel.columns else [])
    df = panel.loc[:, keep].copy()
    if "provenance" in df:
        df["provenance"] = df["provenance"].fillna("unknown").astype(str)
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
    unknown = sorted(set(df["indicator"].unique()) - set(VARIABLES))
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
    return m[["agglomeration_id", "adcode", *(["name_zh"] if "name_zh" in m else [])]].reset_index(
        drop=True
    )


@dataclass
class _Prepared:
    values: pd.DataFrame  # adcode, agglomeration_id, year, indicator, value, imputed
    n_members: pd.Series
    years: list[int]
    indicators: list[str]
    members: pd.DataFrame  # agglomeration_id, adcode (, name_zh)


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
    if employment is not None and "krugman_index" not in set(df["indicator"].unique()):
        kr = krugman_specialisation(employment, membership=m)
        kr = kr[["adcode", "year", "indicator", "value"]]
        if "provenance" in df:
            kr = kr.assign(provenance="computed:sector-employment")
        df = pd.concat([df, kr], ignore_index=True)
        report.append(
            f"krugman_index computed from sector employment for {kr['adcode'].nunique()} cities"
        )
    outside = sorted(set(df["adcode"].unique()) - set(m["adcode"].unique()))
    if outside:
        log.info("%d panel cities are not agglomeration members; ignored", len(outside))
        report.append(f"{len(outside)} panel cities outside the membership ignored")
    years = sorted(df["year"].unique().tolist())
    if not years:
        raise AggloInputError("panel holds no index indicator rows.")
    wanted = list(cfg.indicators) if cfg.indicators is not None else list(INDICATORS)
    present = set(df.loc[df["value"].notna(), "indicator"].unique())
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
    grid = grid.merge(m[["agglomeration_id", "adcode"]], on="adcode", how="left")
    vals = grid.merge(df, on=["adcode", "year", "indicator"], how="left")
    vals["imputed"] = False
    vals = _handle_missing(vals, cfg, report)
    if "provenance" in vals:
        vals["provenance"] = vals["provenance"].where(~vals["imputed"], f"imputed:{cfg.missing}")
    n_members = m.groupby("agglomeration_id").size()
    return _Prepared(vals, n_members, years, use, m)


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
    if not keys:
        return pd.Series(s.max(), index=s.index), pd.Series(s.min(), index=s.index)
    g = s.groupby(keys)
    return g.transform("max"), g.transform("min")


#: the cell columns each pool of the k and level extremes groups by (besides the variant)
POOL_COLUMNS: dict[str, tuple[str, ...]] = {
    "indicator": ("indicator",),
    "indicator_year": ("indicator", "year"),
    "all": (),
}


def _pool_keys(cells: pd.DataFrame, pool: Any, columns: Mapping[str, tuple[str, ...]]) -> list:
    """The group keys of ``pool`` (one name, or one per row: a column takes part only in the
    rows whose pool groups by it, elsewhere it is one constant)."""
    if np.ndim(pool) == 0:
        return [cells[c] for c in columns[pool]]
    used = sorted({c for p in set(pool) for c in columns[p]})
    blank = {"indicator": "", "year": -1}
    return [
        cells[c].where(np.isin(pool, [p for p in columns if c in columns[p]]), blank[c])
        for c in used
    ]


#: column of :attr:`_Prepared.values` numbering the variants scored together (the
#: leave-one-city-out sensitivity): every computation below is then done per variant
_RUN = "_run"


def _cells(prep: _Prepared, cfg: IndexConfig, report: list[str], *, warn: bool) -> pd.DataFrame:
    return _cell_factors(_cell_stats(prep, cfg, report, warn=warn), prep, cfg)


def _cell_stats(
    prep: _Prepared, cfg: IndexConfig, report: list[str], *, warn: bool
) -> pd.DataFrame:
    """The kept cells with ``n_cities, mean, sd, cv`` (they depend on ``ddof``,
    ``min_cities`` and ``constant_indicator`` only; :func:`_cell_factors` adds the rest)."""
    v = prep.values
    run = [_RUN] if _RUN in v else []
    g = v.groupby([*run, "agglomeration_id", "year", "indicator"], sort=True)["value"]
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
    if run and cfg.constant_indicator == "drop":
        raise ValueError("constant_indicator='drop' is not scored per variant")  # pragma: no cover
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
    return cells


def _cell_factors(
    cells: pd.DataFrame, prep: _Prepared, cfg: IndexConfig | Sequence[IndexConfig]
) -> pd.DataFrame:
    """``k, R, f_pos, f, K`` (and ``dimension, direction``) of the :func:`_cell_stats` cells
    under ``cfg``'s pooling, level and adjustment choices (``cells`` is not modified).

    ``cfg`` may also be one options object per variant (``cfg[r]`` for the rows of ``_RUN``
    ``r``, the sensitivity's scenarios; their directions must be alike): every pool is then
    taken per variant under its own choice and every other step is the same arithmetic row
    by row, so each variant's factors are those of its options alone.
    """
    cells = cells.copy()
    run = [_RUN] if _RUN in cells else []
    by_run = [cells[c] for c in run]
    if isinstance(cfg, IndexOptions):
        base = cfg

        def opt(name: str) -> Any:
            return getattr(cfg, name)
    else:
        base = cfg[0]
        if any(o.directions != base.directions for o in cfg):
            raise ValueError("variants with other directions are not scored together")
        at = cells[_RUN].to_numpy()

        def opt(name: str) -> Any:
            return np.asarray([getattr(o, name) for o in cfg])[at]

    keys_k = by_run + _pool_keys(cells, opt("k_pool"), POOL_COLUMNS)
    cv_max, cv_min = _minmax_pool(cells["cv"], keys_k)
    span = cv_max - cv_min
    ratio = ((cv_max - cells["cv"]) / span.where(span > 0, 1.0)).clip(0.0, 1.0)
    cells["k"] = np.where(span > 0, 100.0 * ratio, 100.0)
    keys_f = by_run + _pool_keys(cells, opt("level_pool"), POOL_COLUMNS)
    l_max, l_min = _minmax_pool(cells["mean"], keys_f)
    lspan = l_max - l_min
    floor = opt("level_floor")
    floor = float(floor) if np.ndim(floor) == 0 else floor.astype(float)
    f_pos = np.where(
        lspan > 0,
        floor + (1 - floor) * ((cells["mean"] - l_min) / lspan.where(lspan > 0, 1.0)).clip(0, 1),
        1.0,
    )
    ids = cells["indicator"].unique()
    direction = cells["indicator"].map({i: base.direction(i) for i in ids}).astype(int)
    f_neg = 1.0 + floor - f_pos
    f_negative = {
        "sqrt": np.sqrt(f_pos * f_neg),
        "reverse": f_neg,
        "ignore": f_pos,
    }
    rule = opt("negative_rule")
    if np.ndim(rule) == 0:
        chosen = f_negative[rule]
    else:
        chosen = np.select(
            [rule == r for r in NEGATIVE_RULES], [f_negative[r] for r in NEGATIVE_RULES]
        )
    f = np.where(direction < 0, chosen, f_pos)
    use_f = opt("use_f")
    if np.ndim(use_f) == 0:
        if not use_f:
            f = np.ones(len(cells))
    else:
        f = np.where(use_f, f, 1.0)
    cells["dimension"] = cells["indicator"].map({i: INDICATORS[i].dimension for i in ids})
    cells["direction"] = direction
    use_R = opt("use_R")
    if np.ndim(use_R) == 0:
        R = prep.n_members / prep.n_members.sum() if use_R else prep.n_members * 0 + 1.0
        cells["R"] = cells["agglomeration_id"].map(R).astype(float)
    else:
        R = cells["agglomeration_id"].map(prep.n_members / prep.n_members.sum()).astype(float)
        cells["R"] = np.where(use_R, R, 1.0)
    cells["f_pos"] = f_pos
    cells["f"] = f
    cells["K"] = cells["k"] * cells["R"] * cells["f"]
    cols = [
        *run,
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


def _rescale_by(s: pd.Series, keys: list[pd.Series], method: str) -> pd.Series:
    """:func:`_rescale` within each group of ``keys`` (the same arithmetic, vectorised)."""
    g = s.groupby(keys)
    hi = g.transform("max")
    if method == "max":
        return pd.Series(np.where(hi > 0, 100.0 * s / hi.where(hi > 0, 1.0), 100.0), s.index)
    lo = g.transform("min")
    span = hi - lo
    return pd.Series(
        np.where(hi > lo, 100.0 * (s - lo) / span.where(hi > lo, 1.0), 100.0), index=s.index
    )


def _note(msg: str, report: list[str], warn: bool) -> None:
    if warn:
        _warn(msg, report)
    else:
        report.append(msg)


def _short_dimensions(cells: pd.DataFrame, report: list[str], warn: bool) -> None:
    """Warn about dimension scores built from fewer indicators than the run uses (the
    indicators scored in any agglomeration-year)."""
    scored = set(cells["indicator"].unique())
    in_use = [i for i in INDICATORS if i in scored]
    expected = {d: [i for i in in_use if INDICATORS[i].dimension == d] for d in DIMENSIONS}
    keys = ["agglomeration_id", "year", "dimension"]
    known = cells[keys].notna().all(axis=1)  # (a groupby leaves such rows out)
    found: dict[tuple[Any, ...], set[str]] = {}
    columns = [cells.loc[known, c].tolist() for c in [*keys, "indicator"]]
    for g, y, d, i in zip(*columns, strict=True):
        found.setdefault((g, y, d), set()).add(i)
    short = []
    for (g, y, d), have in sorted(found.items()):  # the groupby's order
        lack = [i for i in expected.get(d, []) if i not in have]
        if lack:
            short.append(f"{g} {y} {d} lacks {', '.join(lack)}")
    if short:
        more = f"; and {len(short) - 10} more (index_report)" if len(short) > 10 else ""
        _note(
            f"{len(short)} dimension score(s) built from fewer indicators than the run uses: "
            + "; ".join(short[:10])
            + more,
            report,
            warn,
        )


def _scores(
    cells: pd.DataFrame,
    cfg: IndexConfig,
    report: list[str],
    *,
    warn: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    if warn:  # the sensitivity's scenarios (warn=False) discard their reports
        _short_dimensions(cells, report, warn)
    run = [_RUN] if _RUN in cells else []
    dims = (
        cells.groupby([*run, "agglomeration_id", "year", "dimension"])
        .agg(n_indicators=("K", "size"), score=("K", "mean"))
        .reset_index()
    )
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    dims = dims.sort_values(
        [*run, "year", "agglomeration_id", "dimension"],
        key=lambda s: s.map(order) if s.name == "dimension" else s,
    ).reset_index(drop=True)
    if run:
        dims["score_0_100"] = _rescale_by(
            dims["score"], [dims[_RUN], dims["dimension"]], cfg.rescale
        )
    else:
        dims["score_0_100"] = dims.groupby("dimension")["score"].transform(
            lambda s: _rescale(s, cfg.rescale)
        )
    wide = dims.pivot(index=[*run, "agglomeration_id", "year"], columns="dimension", values="score")
    wide = wide[[d for d in DIMENSIONS if d in wide.columns]]
    if isinstance(cfg.dimension_weights, str):
        if cfg.dimension_weights == "equal":
            weights = {d: 1.0 for d in wide.columns}
        elif run:  # pragma: no cover - index_sensitivity scores entropy variants one by one
            raise ValueError("entropy weights are not computed per variant")
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
    if partial.any() and not run:  # (variants discard their reports)
        lacking = present[partial]
        ex = "; ".join(
            f"{a} {y} lacks {', '.join(d for d in wide.columns if not row[d])}"
            for (a, y), row in list(lacking.iterrows())[:10]
        )
        _note(
            f"{int(partial.sum())} agglomeration-year(s) lack one or more dimensions "
            f"of the {len(wide.columns)} the run uses (composite renormalised over the "
            f"dimensions present): {ex}",
            report,
            warn,
        )
    composite = pd.DataFrame({"n_dimensions": present.sum(axis=1), "score": comp}).reset_index()
    composite = composite[composite["score"].notna()].reset_index(drop=True)
    if run:
        composite["score_0_100"] = _rescale_by(composite["score"], [composite[_RUN]], cfg.rescale)
    else:
        composite["score_0_100"] = _rescale(composite["score"], cfg.rescale)
    composite["rank"] = (
        composite.groupby([*run, "year"])["score"].rank(ascending=False, method="min").astype(int)
    )
    composite = composite.sort_values([*run, "year", "rank", "agglomeration_id"]).reset_index(
        drop=True
    )
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
                *(["provenance"] if "provenance" in v else []),
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


def _coverage(prep: _Prepared, cells: pd.DataFrame) -> pd.DataFrame:
    """Cells whose members do not all report, with the missing cities named.

    Every cell is paired with its agglomeration's members (membership order) and the pairs
    without a value in the cell are the missing cities: one merge, not a set per cell.
    """
    m = prep.members
    names = m.set_index("adcode")["name_zh"] if "name_zh" in m else None
    keys = ["agglomeration_id", "year", "indicator"]
    n_members = m.groupby("agglomeration_id").size()
    cell = cells[[*keys, "n_cities"]].reset_index(drop=True)
    cell["_cell"] = np.arange(len(cell))
    members = m[["agglomeration_id", "adcode"]].assign(_order=np.arange(len(m)))
    pairs = cell[["_cell", "agglomeration_id", "year", "indicator"]].merge(
        members, on="agglomeration_id"
    )
    reported = prep.values[[*keys, "adcode"]].drop_duplicates().assign(_reported=True)
    pairs = pairs.merge(reported, on=[*keys, "adcode"], how="left")
    lacking = pairs[pairs["_reported"].isna()].sort_values(["_cell", "_order"], kind="stable")
    missing: dict[int, list[str]] = {}
    for at, a in zip(lacking["_cell"].tolist(), lacking["adcode"].tolist(), strict=True):
        missing.setdefault(at, []).append(a)
    group, year, indicator, n_cities = (cell[c].tolist() for c in [*keys, "n_cities"])
    size = n_members.to_dict()
    rows = []
    for at, lack in missing.items():
        text = "; ".join(f"{a} {names[a]}" if names is not None else a for a in lack)
        g = group[at]
        rows.append((g, year[at], indicator[at], int(size[g]), int(n_cities[at]), text))
    cols = ["agglomeration_id", "year", "indicator", "n_members", "n_cities", "missing_cities"]
    return pd.DataFrame(rows, columns=cols)


def integration_index(
    panel: pd.DataFrame,
    membership: pd.DataFrame,
    options: IndexOptions | Mapping[str, Any] | None = None,
    *,
    employment: pd.DataFrame | None = None,
    institutions: pd.DataFrame | None = None,
    cities: Any = None,
    progress: bool = False,
    config: IndexOptions | Mapping[str, Any] | None = None,
) -> IndexResult:
    """Integration index of each agglomeration and year (seed 004 section 2.2, DESIGN.md).

    Parameters
    ----------
    panel
        Tidy ``adcode, year, indicator, value`` table (indicator ids of
        :data:`agglo.reference.registry.INDICATORS`; auxiliary variables are ignored). Values must be
        non-negative; ``NaN`` means missing.
        An optional ``provenance`` column (one label per value, e.g. ``real:census-2010``,
        ``synthetic``; see :func:`agglo.read_panel`) is carried into ``city_gaps`` and
        ``indicators``.
    membership
        ``agglomeration_id, adcode`` (e.g. :func:`agglo.load_membership`). ``R`` uses these
        member counts. Panel cities outside it are ignored (logged). With ``name_zh`` the
        missing cities of each cell are named in ``index_report``.
    options
        :class:`IndexOptions` or a mapping of its options (defaults follow DESIGN.md);
        ``config=`` is the former name of this argument.
    employment
        Optional long sector employment ``adcode, year, sector, employment``; used to compute
        ``krugman_index`` when the panel lacks it.
    institutions
        Plans and mechanisms (e.g. :func:`agglo.load_institutions`); ``None`` leaves the
        ``institutions`` table empty (nothing is read behind the caller's back).
    cities
        Boundaries with ``agglomeration_id`` (e.g. :func:`agglo.load_cities`): the result then
        holds the ``agglomerations`` layer.
    progress
        Show a progress bar for the leave-one-city-out sensitivity.

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
        dimension scores built from fewer indicators and agglomeration-years built from
        fewer dimensions than the run uses (naming agglomeration, year and what is missing).
        :class:`IndexWarning` is an :class:`~agglo.errors.AggloDataWarning`.

    Examples
    --------
    >>> panel = pd.DataFrame({
    ...     "adcode": ["000001", "000002", "000003", "000004", "000005", "000006"],
    ...     "year": 2020, "indicator": "gdp_per_capita",
    ...     "value": [1.0, 2.0, 3.0, 2.0, 2.0, 2.0]})
    >>> members = pd.DataFrame({"agglomeration_id": ["a"] * 3 + ["b"] * 3,
    ...                         "adcode": panel["adcode"]})
    >>> res = integration_index(panel, members, {"sensitivity": False},
    ...                         institutions=pd.DataFrame())
    >>> res.indicators[["agglomeration_id", "cv", "k"]].round(3).values.tolist()
    [['a', 0.408, 0.0], ['b', 0.0, 100.0]]
    >>> res.composite[["agglomeration_id", "rank"]].values.tolist()
    [['b', 1], ['a', 2]]
    """
    cfg = index_options(options if options is not None else config)
    report: list[str] = []
    prep = _prepare(panel, membership, cfg, report, employment)
    cells, dims, comp, weights = _core(prep, cfg, report, warn=True)
    if "provenance" in prep.values:
        from agglo.io.indicators import provenance_by

        keys = ["agglomeration_id", "year", "indicator"]
        labels = prep.values[[*keys, "provenance"]].assign(input="")
        joined = provenance_by(labels, keys, inputs=False).set_index(keys)["provenance"]
        cells = cells.join(joined, on=["agglomeration_id", "year", "indicator"])
    coverage = _coverage(prep, cells)
    between = _between(dims, comp, cfg.ddof)
    gaps, city_scores = _city_gaps(prep, cells)
    city_scores = index_labels({"city_scores": city_scores}, gaps)["city_scores"]
    if institutions is None:
        inst = pd.DataFrame(columns=INSTITUTION_COLUMNS)
        report.append("no institutions table given: plans and mechanisms are not reported")
    else:
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
    for line in report:
        log.info("index: %s", line)
    result = IndexResult(
        *tables,
        report=report,
        config=cfg,
        weights=weights,
        coverage=coverage,
    )
    if cfg.sensitivity:  # computed when first asked for (tables(), sensitivity_table())
        # from this preparation and composite: index_sensitivity would redo both, the same
        result._sensitivity_args = {
            "prep": prep,
            "options": cfg,
            "progress": progress,
            "base": comp[["agglomeration_id", "year", "score", "rank"]].copy(),
        }
    if cities is not None:
        result.agglomerations = agglomeration_layer(cities, result)
    return result


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

    from agglo.measures.geodesy import geodesic_area_km2
    from agglo.reference.boundaries import AGGLOMERATIONS

    members = cities[cities["agglomeration_id"].notna()]
    rows, geoms = [], []
    for g, part in members.groupby("agglomeration_id", sort=True):
        zh, en = AGGLOMERATIONS.get(g, (g, g))
        rows.append({"agglomeration_id": g, "name_zh": zh, "name_en": en, "n_cities": len(part)})
        geoms.append(_dissolve(part.geometry.to_numpy()))
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


def _dissolve(polygons: np.ndarray) -> Any:
    """The union of ``polygons``: by ``coverage_union_all`` when they form a valid coverage
    (edge-matched, no overlaps: city boundaries cut from one map), else ``union_all``.

    On a valid coverage both give the same polygon (the same vertices; the ring may start
    at another vertex: equal after ``shapely.normalize``, ``tests/test_index.py`` checks
    it), the coverage union several times faster.
    """
    import shapely

    if shapely.coverage_is_valid(polygons):
        return shapely.coverage_union_all(polygons)
    return shapely.union_all(polygons)


# ---------------------------------------------------------------------------------------
# per-row provenance of the index tables (issue 17)
# ---------------------------------------------------------------------------------------

#: the keys of each index output's rows in the labels of ``city_gaps`` (``None``: one row per
#: run message / scenario, handled below)
_LABEL_KEYS: dict[str, tuple[list[str], bool]] = {
    "city_scores": (["adcode", "agglomeration_id", "year"], True),
    "index_dimensions": (["agglomeration_id", "year", "dimension"], True),
    "index_composite": (["agglomeration_id", "year"], True),
    "index_between_groups": (["year", "dimension"], True),
    "index_explanations": (["agglomeration_id", "year", "indicator"], False),
    "index_sensitivity": (["agglomeration_id", "year"], True),
    "institutions": (["agglomeration_id", "year"], False),
    # the layer is also a shapefile (254-byte text fields): per-input statuses of each
    # agglomeration-year are in index_composite, the indicators' statuses in the metadata
    "agglomerations": (["agglomeration_id"], False),
}

#: the label of the plans and mechanisms table (``reference/institutions.csv``, real)
INSTITUTIONS_LABEL = "real:seed-004 plans and mechanisms"


def index_labels(tables: dict[str, Any], city_gaps: pd.DataFrame) -> dict[str, Any]:
    """The index outputs with per-row ``provenance`` (and ``provenance_inputs``).

    A row gets the labels of the panel values it was computed from, taken from ``city_gaps``
    (one label per member value of each kept cell): a city score its own values that year;
    a dimension or composite score the values of its agglomeration-year (in that dimension);
    a between-groups row every agglomeration's values that year (in that dimension); an
    explanation its cell; a sensitivity row the scenario's agglomeration-year; the
    ``agglomerations`` layer every year of the agglomeration (``provenance`` only); an ``index_report`` cell row its
    cell and a message row every value of the run. The min-max level factor also pools the
    means of other cells of the same indicator; their labels are not added (the row's own
    cell decides). ``institutions`` rows are labelled :data:`INSTITUTIONS_LABEL`.
    Tables are returned unchanged when ``city_gaps`` has no ``provenance`` column.

    Examples
    --------
    >>> gaps = pd.DataFrame({"adcode": ["1", "2"], "agglomeration_id": "a", "year": 2020,
    ...                      "indicator": ["hsr", "gdp"], "dimension": ["infrastructure", "economy"],
    ...                      "provenance": ["real:railways", "synthetic"]})
    >>> comp = pd.DataFrame({"agglomeration_id": ["a"], "year": [2020], "score": [1.0]})
    >>> out = index_labels({"index_composite": comp}, gaps)["index_composite"]
    >>> out[["provenance", "provenance_inputs"]].values.tolist()
    [['real:railways; synthetic', 'real: hsr | synthetic: gdp']]
    """
    from agglo.io.indicators import with_provenance

    if "provenance" not in city_gaps:
        return tables
    labels = city_gaps.rename(columns={"indicator": "input"})
    labels = labels.assign(indicator=city_gaps["indicator"])
    out = dict(tables)
    for name, table in tables.items():
        if name in ("index_indicators", "city_gaps") or table is None or "provenance" in table:
            continue
        if name == "index_report":
            out[name] = _report_labels(table, labels)
            continue
        if name not in _LABEL_KEYS:
            continue
        keys, inputs = _LABEL_KEYS[name]
        if name == "institutions":
            out[name] = table.assign(provenance=INSTITUTIONS_LABEL)
            continue
        lab = labels
        if name == "index_between_groups":  # the composite row: every dimension
            lab = pd.concat([labels, labels.assign(dimension="composite")], ignore_index=True)
        if name == "index_explanations":
            lab = labels.assign(input=labels["indicator"])
        labelled = with_provenance(pd.DataFrame(table), lab, keys, inputs=inputs)
        if hasattr(table, "geometry"):  # the layer stays a GeoDataFrame
            import geopandas as gpd

            labelled = gpd.GeoDataFrame(labelled, geometry=table.geometry.name, crs=table.crs)
            cols = [c for c in labelled.columns if c != table.geometry.name]
            labelled = labelled[[*cols, table.geometry.name]]
        out[name] = labelled
    return out


def _report_labels(report: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``index_report``: a cell row its cell's labels, a message row those of the whole run."""
    from agglo.io.indicators import provenance_by

    run = provenance_by(labels.assign(run=0), ["run"]).iloc[0]
    cells = provenance_by(labels, ["agglomeration_id", "year", "indicator"], inputs=True)
    keyed = report["agglomeration_id"].notna()
    out = report.copy()
    out["provenance"], out["provenance_inputs"] = run["provenance"], run["provenance_inputs"]
    if keyed.any():
        idx = pd.MultiIndex.from_frame(cells[["agglomeration_id", "year", "indicator"]])
        look = cells.set_index(idx)
        want = pd.MultiIndex.from_arrays(
            [
                report.loc[keyed, "agglomeration_id"],
                report.loc[keyed, "year"].astype(cells["year"].dtype),
                report.loc[keyed, "indicator"],
            ]
        )
        got = look.reindex(want)
        out.loc[keyed, "provenance"] = got["provenance"].fillna("unknown").to_numpy()
        out.loc[keyed, "provenance_inputs"] = got["provenance_inputs"].fillna("unknown").to_numpy()
    return out
