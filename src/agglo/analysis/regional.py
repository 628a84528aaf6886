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
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd

from agglo.analysis.convergence import ConvergenceOptions, ConvergenceResult, convergence
from agglo.analysis.coordination import CoordinationOptions, CoordinationResult, coordination
from agglo.analysis.disparity import DisparityOptions, DisparityResult, disparity, kde_bandwidths
from agglo.errors import MissingDependencyError
from agglo.results import StageResult

__all__ = ["RegionalDisparityResult", "city_values", "regional_disparity"]

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
    """

    coordination: CoordinationResult
    disparity: DisparityResult
    convergence: ConvergenceResult | None
    values: pd.DataFrame
    kde_bandwidths: pd.DataFrame
    skipped: tuple[str, ...] = ()

    @property
    def kde_variable(self) -> str:
        """The variable drawn as kernel densities (the first ``[disparity] variables``)."""
        return self.disparity.options.variables[0]

    def tables(self) -> dict[str, pd.DataFrame]:
        """``coordination_*``, ``disparity_*`` and ``convergence_*`` tables."""
        out = {COORDINATION_TABLES.get(k, k): v for k, v in self.coordination.tables().items()}
        out.update(self.disparity.tables())
        out["disparity_kde_bandwidths"] = self.kde_bandwidths
        if self.convergence is not None:
            out.update(self.convergence.tables())
        return out

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
        members = cities[cities["adcode"].isin(set(values["adcode"]))]
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
    )
