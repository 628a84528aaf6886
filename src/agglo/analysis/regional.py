"""Regional disparity of the member cities: coordination, disparity and convergence in one call.

:func:`regional_disparity` is the library function of the run's ``disparity`` stage. It keeps
the member cities of the panel (with their ``agglomeration_id``), computes the city subsystem
scores and coupling coordination (:func:`~agglo.analysis.coordination.coordination`), then the
Dagum and Theil decompositions (:func:`~agglo.analysis.disparity.disparity`) and σ/β
convergence (:func:`~agglo.analysis.convergence.convergence`) of those scores and of the panel
indicators, and the kernel-density bandwidths of the first disparity variable.

Options: ``[coordination]`` (:class:`~agglo.analysis.coordination.CoordinationOptions`),
``[disparity]`` (:class:`~agglo.analysis.disparity.DisparityOptions`) and ``[convergence]``
(:class:`~agglo.analysis.convergence.ConvergenceOptions`); the spatial β models use the
``[autocorr] weights`` kind on the member polygons, islands joined to their nearest city.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.convergence import ConvergenceOptions, ConvergenceResult, convergence
from agglo.analysis.coordination import CoordinationOptions, CoordinationResult, coordination
from agglo.analysis.disparity import DisparityOptions, DisparityResult, disparity, kde_bandwidths
from agglo.errors import MissingDependencyError
from agglo.results import StageResult

__all__ = [
    "RegionalDisparityResult",
    "RegionalOptions",
    "city_values",
    "label_tables",
    "regional_disparity",
    "value_labels",
]

log = logging.getLogger(__name__)

#: output table names of the coordination tables (``coordination_*`` in a run folder)
COORDINATION_TABLES = {
    "city_dimension_scores": "coordination_subsystem_scores",
    "city_indicator_weights": "coordination_entropy",
    "coupling_coordination": "coordination_coupling",
    "obstacle_degree": "coordination_obstacles",
    "obstacle_dimensions": "coordination_subsystem_obstacles",
    "main_obstacles": "coordination_main_obstacles",
    "topsis_scores": "coordination_topsis",
    "topsis_rank_correlation": "coordination_topsis_rank_correlation",
}


@dataclass(frozen=True)
class RegionalOptions:
    """The options of the ``disparity`` stage: its three analyses and the spatial weights kind.

    Each part is defined once in its own section's dataclass; ``weights`` is ``[autocorr]
    weights`` (the spatial β models use the run's weights).
    """

    coordination: CoordinationOptions = field(default_factory=CoordinationOptions)
    disparity: DisparityOptions = field(default_factory=DisparityOptions)
    convergence: ConvergenceOptions = field(default_factory=ConvergenceOptions)
    weights: str = "queen"

    @classmethod
    def from_sections(
        cls,
        coordination: Mapping[str, Any],
        disparity: Mapping[str, Any],
        convergence: Mapping[str, Any],
        autocorr: Mapping[str, Any],
    ) -> RegionalOptions:
        """From the ``[coordination]``, ``[disparity]``, ``[convergence]``, ``[autocorr]`` sections."""
        from agglo.analysis.autocorr import AutocorrOptions

        return cls(
            CoordinationOptions.from_dict(coordination),
            DisparityOptions.from_dict(disparity),
            ConvergenceOptions.from_dict(convergence),
            str(autocorr.get("weights", AutocorrOptions().weights)),
        )


@dataclass(frozen=True)
class RegionalDisparityResult(StageResult):
    """Coordination, disparity and convergence of one run's member cities.

    Attributes
    ----------
    coordination, disparity, convergence
        The three library results (``convergence`` is None when spreg is missing).
    values
        ``adcode, agglomeration_id, year, variable, value``: the city subsystem scores and the
        panel indicators analysed.
    kde_bandwidths
        Bandwidth of each agglomeration-year density of :attr:`kde_variable`.
    skipped
        What was not computed and why.
    labels
        ``adcode, agglomeration_id, year, variable, input, provenance``: the provenance label
        of every panel value each analysed variable was computed from (``None`` when the panel
        carries no ``provenance`` column). Every table then gets ``provenance`` (the labels of
        the values its row was computed from) and, for rows combining several indicators,
        ``provenance_inputs`` (which were real, which synthetic); see :func:`label_tables`.
    """

    coordination: CoordinationResult
    disparity: DisparityResult
    convergence: ConvergenceResult | None
    values: pd.DataFrame
    kde_bandwidths: pd.DataFrame
    skipped: tuple[str, ...] = ()
    labels: pd.DataFrame | None = None

    @property
    def kde_variable(self) -> str:
        """The variable drawn as kernel densities (the first ``[disparity] variables``)."""
        return self.disparity.options.variables[0]

    def tables(self) -> dict[str, pd.DataFrame]:
        """``coordination_*``, ``disparity_*`` and ``convergence_*`` tables (with provenance)."""
        return dict(self._labelled_tables)

    @cached_property  # tables() is read by the run, the report and the maps: labelled once
    def _labelled_tables(self) -> dict[str, pd.DataFrame]:
        out = {COORDINATION_TABLES.get(k, k): v for k, v in self.coordination.tables().items()}
        out.update(self.disparity.tables())
        out["disparity_kde_bandwidths"] = self.kde_bandwidths
        if self.convergence is not None:
            out.update(self.convergence.tables())
        if self.labels is None:
            return out
        conv = self.convergence.options if self.convergence is not None else None
        return label_tables(out, self.labels, convergence=conv)

    def metadata(self) -> dict[str, Any]:
        """Options and notes of the three analyses."""
        out = {
            "coordination": self.coordination.metadata(),
            "disparity": self.disparity.metadata(),
            "skipped": list(self.skipped),
        }
        if self.convergence is not None:
            out["convergence"] = self.convergence.metadata()
        return out

    def notes(self) -> list[str]:
        """What was not computed and why."""
        return list(self.skipped)

    def summary_lines(self) -> list[str]:
        """The Dagum shares of the latest year and the pooled absolute β."""
        out = []
        var = self.kde_variable
        d = self.disparity.dagum
        latest = d[(d["variable"] == var) & (d["year"] == d["year"].max())]
        if len(latest):
            r = latest.iloc[0]
            out.append(
                f"Dagum Gini of {var} {int(r['year'])}: G = {r['gini']:.3f} (within "
                f"{100 * r['within_share']:.0f} %, net between {100 * r['net_between_share']:.0f}"
                f" %, transvariation {100 * r['transvariation_share']:.0f} %)"
            )
        conv = self.convergence
        if conv is not None and len(conv.beta):
            b = conv.beta[(conv.beta["group"] == "all") & (conv.beta["model"] == "absolute")]
            if len(b):
                r = b.iloc[0]
                out.append(
                    f"β-convergence of {conv.options.variable} {int(r['start_year'])}-"
                    f"{int(r['end_year'])} (all cities): β = {r['beta']:.4f} "
                    f"(p {r['p_value']:.3g}), half-life {r['half_life']:.1f} years"
                )
        return out


def city_values(panel: pd.DataFrame, membership: pd.DataFrame) -> pd.DataFrame:
    """The panel of member cities with their ``agglomeration_id`` (non-members left out).

    Examples
    --------
    >>> p = pd.DataFrame({"adcode": ["1", "2"], "year": 2020, "indicator": "x", "value": [1.0, 2.0]})
    >>> m = pd.DataFrame({"adcode": ["1"], "agglomeration_id": ["cy"]})
    >>> city_values(p, m)["adcode"].tolist()
    ['1']
    """
    groups = membership.drop_duplicates("adcode")[["adcode", "agglomeration_id"]]
    return panel.merge(groups, on="adcode", how="inner")


#: table -> (its key columns, the variable its rows analyse or None for the ``variable`` key,
#: whether a row combines several indicators)
_ROW_KEYS: dict[str, tuple[tuple[str, ...], str | None, bool]] = {
    "coordination_subsystem_scores": (("adcode", "agglomeration_id", "year"), "composite", True),
    "coordination_coupling": (("adcode", "agglomeration_id", "year"), "composite", True),
    "coordination_topsis": (("adcode", "agglomeration_id", "year"), "composite", True),
    "coordination_topsis_rank_correlation": (("year",), "composite", True),
    "coordination_obstacles": (("adcode", "year", "indicator"), "indicator", False),
    "coordination_main_obstacles": (("adcode", "year", "indicator"), "indicator", False),
    "coordination_subsystem_obstacles": (("adcode", "year", "dimension"), "dimension", True),
    "coordination_entropy": (("indicator",), "indicator", False),
    "disparity_dagum": (("variable", "year"), None, True),
    "disparity_theil": (("variable", "year"), None, True),
    "disparity_dagum_groups": (("variable", "year", "agglomeration_id"), None, True),
    "disparity_theil_groups": (("variable", "year", "agglomeration_id"), None, True),
    "disparity_kde_bandwidths": (("agglomeration_id", "year", "variable"), None, True),
}


def value_labels(
    values: pd.DataFrame, scores: pd.DataFrame, weights: pd.DataFrame
) -> pd.DataFrame | None:
    """The provenance of the panel values behind every variable the stage analyses.

    Parameters
    ----------
    values
        Member-city panel (:func:`city_values`) with a ``provenance`` column.
    scores
        ``adcode, agglomeration_id, year`` of the city-years scored (complete ones).
    weights
        ``indicator, dimension`` of the indicators the scores use.

    Returns
    -------
    pandas.DataFrame or None
        ``adcode, agglomeration_id, year, variable, input, provenance``: an indicator is its own
        input; a dimension score has its indicators as inputs and ``composite`` all of them
        (the city-year's own values; min-max normalisation and entropy weights pool every
        city-year, whose mix ``coordination_entropy`` gives). ``None`` without provenance.
    """
    if "provenance" not in values.columns:
        return None
    keys = ["adcode", "agglomeration_id", "year"]
    v = values[values["value"].notna()]
    base = v[[*keys, "indicator", "provenance"]].rename(columns={"indicator": "input"})
    base = base.assign(provenance=base["provenance"].fillna("unknown").astype(str))
    dim_of = weights.set_index("indicator")["dimension"]
    scored = base[base["input"].isin(dim_of.index)].merge(scores[keys], on=keys, how="inner")
    return pd.concat(
        [
            base.assign(variable=base["input"]),
            scored.assign(variable=scored["input"].map(dim_of)),
            scored.assign(variable="composite"),
        ],
        ignore_index=True,
    )[[*keys, "variable", "input", "provenance"]]


def label_tables(
    tables: Mapping[str, pd.DataFrame],
    labels: pd.DataFrame,
    *,
    convergence: ConvergenceOptions | None = None,
) -> dict[str, pd.DataFrame]:
    """The stage's tables with ``provenance`` (and ``provenance_inputs``) on every row.

    Each row's labels are those of the values it was computed from: a city-year score its
    city-year's indicators, an agglomeration's Gini its member cities' values that year, a
    between-group Gini both groups', a β regression the variable at the start and end years
    (and the controls at the start) of the group's cities.
    """
    from agglo.analysis.convergence import POOLED
    from agglo.io.indicators import attach_provenance, provenance_by, with_provenance

    out = dict(tables)
    # tables with the same keys and labels share one provenance_by (the three city-year
    # composite tables)
    done: dict[tuple[Any, ...], pd.DataFrame] = {}
    for name, (keys, variable, several) in _ROW_KEYS.items():
        if name not in out:
            continue
        pooled = (
            variable == "composite"
            and "year" in keys
            and out[name]["year"].astype(str).eq(POOLED).any()
        )
        job = (keys, variable, several, pooled)
        if job not in done:
            lab = labels
            if variable == "composite":
                lab = lab[lab["variable"] == "composite"]
                if pooled:
                    lab = pd.concat([lab, lab.assign(year=POOLED)], ignore_index=True)
            elif variable in ("indicator", "dimension"):
                lab = lab.rename(columns={"variable": variable})
                if variable == "indicator":
                    lab = lab[lab[variable] == lab["input"]]
                else:
                    lab = lab[lab[variable] != lab["input"]]
            done[job] = provenance_by(lab, list(keys), inputs=several)
        out[name] = attach_provenance(out[name], done[job], keys)
    if "disparity_dagum_pairs" in out:
        pairs = out["disparity_dagum_pairs"]
        keys = ["variable", "year", "group_high", "group_low"]
        both = pairs[keys].drop_duplicates().merge(labels, on=["variable", "year"])
        ours = (both["agglomeration_id"] == both["group_high"]) | (
            both["agglomeration_id"] == both["group_low"]
        )
        both = both[ours]
        out["disparity_dagum_pairs"] = with_provenance(pairs, both, keys)
    if convergence is not None:
        out.update(_label_convergence(out, labels, convergence))
    return out


def _label_convergence(
    tables: Mapping[str, pd.DataFrame], labels: pd.DataFrame, options: ConvergenceOptions
) -> dict[str, pd.DataFrame]:
    from agglo.analysis.convergence import POOLED
    from agglo.io.indicators import with_provenance

    used = labels[labels["variable"].isin([options.variable, *options.controls])]
    grouped = pd.concat(
        [used.assign(group=used["agglomeration_id"]), used.assign(group=POOLED)],
        ignore_index=True,
    )
    main = grouped[grouped["variable"] == options.variable]
    out = {}
    if "convergence_sigma" in tables:
        out["convergence_sigma"] = with_provenance(
            tables["convergence_sigma"], main, ["group", "year"]
        )
    if "convergence_sigma_trend" in tables:
        keys = ["group", "first_year", "last_year"]
        t = tables["convergence_sigma_trend"]
        lab = t[keys].drop_duplicates().merge(main, on="group")
        lab = lab[(lab["year"] == lab["first_year"]) | (lab["year"] == lab["last_year"])]
        out["convergence_sigma_trend"] = with_provenance(t, lab, keys)
    if "convergence_beta" in tables:
        keys = ["group", "start_year", "end_year"]
        t = tables["convergence_beta"]
        lab = t[keys].drop_duplicates().merge(grouped, on="group")
        at_ends = (lab["year"] == lab["start_year"]) | (lab["year"] == lab["end_year"])
        is_main = lab["variable"] == options.variable
        lab = lab[(is_main & at_ends) | (~is_main & (lab["year"] == lab["start_year"]))]
        out["convergence_beta"] = with_provenance(t, lab, keys)
    return out


def regional_disparity(
    panel: pd.DataFrame,
    membership: pd.DataFrame,
    *,
    cities: gpd.GeoDataFrame | None = None,
    city_scores: pd.DataFrame | None = None,
    coordination_options: CoordinationOptions | None = None,
    disparity_options: DisparityOptions | None = None,
    convergence_options: ConvergenceOptions | None = None,
    weights: str = "queen",
) -> RegionalDisparityResult:
    """Coordination, disparity and convergence of the member cities of ``membership``.

    Parameters
    ----------
    panel
        Tidy ``adcode, year, indicator, value`` (cities outside ``membership`` are left out).
    membership
        ``adcode, agglomeration_id`` of the member cities.
    cities
        City polygons with ``adcode``: the spatial weights of the spatial β models (None, or
        ``convergence_options.spatial = False``, skips those models).
    city_scores
        ``adcode, year, lag_score`` (the index's city scores) for the TOPSIS rank correlation.
    coordination_options, disparity_options, convergence_options
        Options of the three analyses (defaults: their dataclass defaults).
    weights
        Kind of spatial weights (:func:`~agglo.analysis.autocorr.spatial_weights`); the run
        passes ``[autocorr] weights``.

    Returns
    -------
    RegionalDisparityResult
    """
    from agglo.analysis.autocorr import spatial_weights

    convergence_options = convergence_options or ConvergenceOptions()
    values = city_values(panel, membership)
    reference = (
        city_scores[["adcode", "year", "lag_score"]].rename(columns={"lag_score": "value"})
        if city_scores is not None
        else None
    )
    graph = None
    if convergence_options.spatial and cities is not None:
        members = cities[cities["adcode"].isin(values["adcode"].unique())]
        graph = spatial_weights(members, weights, islands="nearest")
    coord = coordination(values, coordination_options, reference=reference)
    indicators = values.rename(columns={"indicator": "variable"})[
        ["adcode", "agglomeration_id", "year", "variable", "value"]
    ]
    tidy = pd.concat([coord.cities.tidy(), indicators], ignore_index=True)
    disp = disparity(tidy, disparity_options)
    skipped: list[str] = []
    try:
        conv = convergence(tidy, graph, convergence_options)
    except MissingDependencyError as exc:
        log.warning("β-convergence skipped: %s", exc)
        skipped.append(f"β-convergence skipped: {exc}")
        conv = None
    var = disp.options.variables[0]
    bandwidths = kde_bandwidths(tidy[tidy["variable"] == var], disp.options.kde_bandwidth)
    for note in [*disp.notes, *(conv.notes if conv is not None else [])]:
        log.info("%s", note)
    return RegionalDisparityResult(
        coordination=coord,
        disparity=disp,
        convergence=conv,
        values=tidy,
        kde_bandwidths=bandwidths.assign(variable=var),
        skipped=tuple(skipped),
        labels=value_labels(values, coord.cities.scores, coord.cities.weights),
    )
