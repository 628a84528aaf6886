"""Krugman specialisation index of member cities (DESIGN.md, seed 004 table 1 note b)."""

from __future__ import annotations

import pandas as pd

from agglo.errors import AggloInputError

__all__ = ["krugman_specialisation"]


def krugman_specialisation(
    employment: pd.DataFrame, *, membership: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Krugman specialisation index of each member city (DESIGN.md, seed 004 table 1 note b).

    ``SP_i = Σ_j |s_ij − s̄_ij|`` with ``s_ij`` the share of sector *j* in city *i*'s
    employment and ``s̄_ij`` the share of sector *j* in the employment of all *other* cities
    of the same agglomeration (same year). A sector a city does not report counts as 0
    employment. Ranges from 0 (same structure as the rest) to 2 (disjoint sectors).

    Parameters
    ----------
    employment
        Long table ``adcode, year, sector, employment`` (persons, any consistent unit).
    membership
        ``agglomeration_id, adcode`` (default: :func:`agglo.load_membership`).

    Returns
    -------
    pandas.DataFrame
        ``adcode, year, indicator ("krugman_index"), value, agglomeration_id`` — rows ready to
        append to a panel. Cities alone in their agglomeration-year get no row.

    Examples
    --------
    >>> emp = pd.DataFrame({"adcode": ["1", "1", "2", "2", "3", "3"], "year": 2020,
    ...                     "sector": ["a", "b"] * 3, "employment": [10, 0, 0, 10, 5, 5]})
    >>> m = pd.DataFrame({"agglomeration_id": "g", "adcode": ["1", "2", "3"]})
    >>> krugman_specialisation(emp, membership=m)["value"].round(3).tolist()
    [1.5, 1.5, 0.0]
    """
    need = ["adcode", "year", "sector", "employment"]
    miss = [c for c in need if c not in employment.columns]
    if miss:
        raise AggloInputError(f"employment lacks column(s) {miss}; expected long table {need}.")
    if membership is None:
        from agglo.reference.boundaries import load_membership

        membership = load_membership()
    e = employment.loc[:, need].copy()
    e["adcode"] = e["adcode"].astype(str).str.strip().str.zfill(6)
    e["employment"] = pd.to_numeric(e["employment"], errors="coerce")
    if (e["employment"] < 0).any():
        raise AggloInputError("employment: negative sector employment; correct the input.")
    m = membership[["agglomeration_id", "adcode"]].copy()
    m["adcode"] = m["adcode"].astype(str).str.strip().str.zfill(6)
    e = e.merge(m, on="adcode", how="inner")
    wide = e.pivot_table(
        index=["agglomeration_id", "year", "adcode"],
        columns="sector",
        values="employment",
        aggfunc="sum",
        fill_value=0.0,
    )
    if wide.empty:
        return pd.DataFrame(columns=["adcode", "year", "indicator", "value", "agglomeration_id"])
    city_tot = wide.sum(axis=1)
    group_sec = wide.groupby(level=["agglomeration_id", "year"]).transform("sum")
    others = group_sec - wide
    others_tot = others.sum(axis=1)
    ok = (city_tot > 0) & (others_tot > 0)
    s = wide.div(city_tot.where(city_tot > 0), axis=0)
    sbar = others.div(others_tot.where(others_tot > 0), axis=0)
    sp = (s - sbar).abs().sum(axis=1).where(ok)
    out = sp.dropna().rename("value").reset_index()
    out["indicator"] = "krugman_index"
    return out[["adcode", "year", "indicator", "value", "agglomeration_id"]].reset_index(drop=True)
