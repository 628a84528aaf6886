"""Charts of the disparity stage: kernel densities of city scores by year.

A Gaussian kernel density (:class:`scipy.stats.gaussian_kde`) of the city values of one
agglomeration, one curve per year, the usual figure beside a Dagum decomposition (the shift,
spread and number of peaks of the distribution over time). The bandwidth follows a named rule
(:func:`agglo.analysis.disparity.kde_bandwidths`, which records every h); h is also shown in
the legend.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from agglo.analysis.disparity import BANDWIDTH_RULES, _check_kde, _kde, kde_bandwidths
from agglo.errors import AggloInputError
from agglo.outputs.plot import AGGLOMERATION_NAMES, _add_caption, _style, qualitative_colours

__all__ = ["BANDWIDTH_RULES", "kde_bandwidths", "kernel_density_chart"]


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
    _check_kde(values, bandwidth)
    sub = values[values["agglomeration_id"] == agglomeration_id].dropna(subset=["value"])
    if sub.empty:
        raise AggloInputError(f"kernel densities: no values for {agglomeration_id!r}.")
    lo, hi = float(sub["value"].min()), float(sub["value"].max())
    pad = 0.25 * (hi - lo) if hi > lo else 1.0
    grid = np.linspace(lo - pad, hi + pad, 256)
    years = sorted(sub["year"].unique())
    colours = qualitative_colours(len(years))
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
