"""Charts of the disparity stage: kernel densities of city scores by year.

A Gaussian kernel density (:class:`scipy.stats.gaussian_kde`) of the city values of one
agglomeration, one curve per year, the usual figure beside a Dagum decomposition (the shift,
spread and number of peaks of the distribution over time). The bandwidth follows a named rule:
``scott`` ``h = n^(−1/5) · s`` or ``silverman`` ``h = (3n/4)^(−1/5) · s`` (s the sample standard
deviation, ddof = 1); every h is recorded in :func:`kde_bandwidths` and in the legend.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from agglo.analysis.disparity import BANDWIDTH_RULES
from agglo.errors import AggloInputError
from agglo.outputs.plot import AGGLOMERATION_NAMES, _add_caption, _style

__all__ = ["BANDWIDTH_RULES", "kde_bandwidths", "kernel_density_chart"]


def _check(values: pd.DataFrame, bandwidth: str) -> None:
    need = ["agglomeration_id", "year", "value"]
    missing = [c for c in need if c not in values.columns]
    if missing:
        raise AggloInputError(f"kernel densities: values lack column(s) {missing}; need {need}.")
    if bandwidth not in BANDWIDTH_RULES:
        raise AggloInputError(
            f"bandwidth must be one of {', '.join(BANDWIDTH_RULES)}; got {bandwidth!r}."
        )


def _kde(v: np.ndarray, bandwidth: str):
    from scipy.stats import gaussian_kde

    if v.size < 3 or not np.ptp(v) > 0:
        return None
    return gaussian_kde(v, bw_method=bandwidth)


def kde_bandwidths(values: pd.DataFrame, bandwidth: str = "scott") -> pd.DataFrame:
    """The bandwidth of every agglomeration-year density.

    Parameters
    ----------
    values
        ``agglomeration_id, year, value`` (one variable).
    bandwidth
        ``"scott"`` or ``"silverman"``.

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id, year, n_cities, rule, factor, bandwidth`` (bandwidth in the
        value's unit; NaN where fewer than 3 cities or all values equal: no density drawn).

    Examples
    --------
    >>> v = pd.DataFrame({"agglomeration_id": "cy", "year": 2020, "value": [1.0, 2.0, 3.0, 4.0]})
    >>> round(float(kde_bandwidths(v).loc[0, "bandwidth"]), 6)  # 4^(-1/5) * 1.290994
    0.978391
    """
    _check(values, bandwidth)
    rows = []
    for (aid, year), g in values.dropna(subset=["value"]).groupby(
        ["agglomeration_id", "year"], sort=True
    ):
        v = g["value"].to_numpy(float)
        k = _kde(v, bandwidth)
        rows.append(
            {
                "agglomeration_id": aid,
                "year": year,
                "n_cities": v.size,
                "rule": bandwidth,
                "factor": float(k.factor) if k is not None else np.nan,
                "bandwidth": float(np.sqrt(k.covariance[0, 0])) if k is not None else np.nan,
            }
        )
    return pd.DataFrame(
        rows, columns=["agglomeration_id", "year", "n_cities", "rule", "factor", "bandwidth"]
    )


def kernel_density_chart(
    values: pd.DataFrame,
    agglomeration_id: str,
    *,
    bandwidth: str = "scott",
    label: str = "city score",
    caption: str | None = None,
    synthetic: bool | str | Collection[str] = False,
    figsize: tuple[float, float] = (6.5, 4.0),
) -> Figure:
    """Kernel densities of one agglomeration's city values, one curve per year.

    Parameters
    ----------
    values
        ``agglomeration_id, year, value`` (one variable, e.g. the city composite score).
    agglomeration_id
        The agglomeration to draw.
    bandwidth
        ``"scott"`` or ``"silverman"`` (the rule and each year's h appear in the legend).
    label
        Name of the value on the x axis.
    caption, synthetic
        As for the other agglo charts (synthetic inputs are named in the caption).

    Examples
    --------
    >>> v = pd.DataFrame({"agglomeration_id": "cy", "year": [2010] * 4 + [2020] * 4,
    ...                   "value": [1.0, 2.0, 3.0, 4.0, 2.0, 2.5, 3.0, 3.5]})
    >>> len(kernel_density_chart(v, "cy").axes[0].lines)
    2
    """
    _check(values, bandwidth)
    sub = values[values["agglomeration_id"] == agglomeration_id].dropna(subset=["value"])
    if sub.empty:
        raise AggloInputError(f"kernel densities: no values for {agglomeration_id!r}.")
    lo, hi = float(sub["value"].min()), float(sub["value"].max())
    pad = 0.25 * (hi - lo) if hi > lo else 1.0
    grid = np.linspace(lo - pad, hi + pad, 256)
    years = sorted(sub["year"].unique())
    colours = [f"C{i % 10}" for i in range(len(years))]
    with _style():
        fig = Figure(figsize=figsize, layout="constrained")
        ax = fig.add_subplot()
        for year, colour in zip(years, colours, strict=True):
            v = sub.loc[sub["year"] == year, "value"].to_numpy(float)
            k = _kde(v, bandwidth)
            if k is None:
                ax.plot([], [], color=colour, label=f"{year}: n = {v.size}, no density")
                continue
            h = float(np.sqrt(k.covariance[0, 0]))
            ax.plot(grid, k(grid), color=colour, linewidth=1.6, label=f"{year} (h = {h:.3g})")
            ax.scatter(v, np.zeros_like(v), marker="|", color=colour, s=60, alpha=0.6)  # rug
        ax.set_xlabel(label)
        ax.set_ylabel("density 核密度")
        ax.set_ylim(bottom=0)
        name = AGGLOMERATION_NAMES.get(str(agglomeration_id), str(agglomeration_id))
        ax.set_title(f"{name}: kernel density by year ({bandwidth} bandwidth)", fontsize=10)
        ax.legend(fontsize=8, title="year (bandwidth h)", title_fontsize=8)
        _add_caption(fig, caption, synthetic)
    return fig
