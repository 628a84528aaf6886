"""Pipeline stage ``report``: one self-contained ``out_dir/report.html`` (after ``write``).

Shows the run summary, every figure of the ``maps`` stage with its caption, the index tables
(with the composite ranking and the latest dimension scores first), the autocorrelation,
core-periphery and metro tables, the layers written, the configuration and the provenance.
Options (``[report]`` section): ``title``, ``max_rows`` (rows shown per table, default 40).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from agglo.errors import AggloInputError
from agglo.outputs.report import write_report
from agglo.pipeline.core import RunOutputs

log = logging.getLogger(__name__)

#: options of the ``[report]`` section and their defaults
OPTIONS: dict[str, Any] = {
    "title": "agglo: integration of China's urban agglomerations 城市群一体化",
    "max_rows": 40,
}


def report_options(section: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with the ``[report]`` section; unknown keys are an error.

    Examples
    --------
    >>> report_options({"max_rows": 10})["max_rows"]
    10
    """
    unknown = sorted(set(section) - set(OPTIONS))
    if unknown:
        raise AggloInputError(
            f"[report] section: unknown option(s) {unknown}; valid: {', '.join(OPTIONS)}."
        )
    return {**OPTIONS, **section}


def highlights(ctx: RunOutputs) -> dict[str, pd.DataFrame]:
    """Small summary tables shown first in their report sections."""
    out: dict[str, pd.DataFrame] = {}
    res = ctx.results.get("index")
    comp = getattr(res, "composite", None)
    if comp is not None and len(comp) and {"score", "rank"} <= set(comp.columns):
        cell = comp.assign(
            cell=comp["score"].map(lambda v: f"{v:.2f}")
            + " (#"
            + comp["rank"].map(lambda r: "–" if pd.isna(r) else str(int(r)))
            + ")"
        )
        wide = cell.pivot(index="agglomeration_id", columns="year", values="cell")
        wide.columns = [f"score {c} (rank)" for c in wide.columns]
        out["index:Composite score by year (rank 1 = most integrated)"] = wide.reset_index()
    dims = getattr(res, "dimensions", None)
    if dims is not None and len(dims) and "score_0_100" in dims:
        latest = dims["year"].max()
        wide = dims[dims["year"] == latest].pivot_table(
            index="agglomeration_id", columns="dimension", values="score_0_100"
        )
        out[f"index:Dimension scores {latest} (0-100)"] = wide.round(1).reset_index()
    return out


def _agglomeration_names(ids: pd.Series) -> pd.Series:
    from agglo.reference.boundaries import AGGLOMERATIONS

    return ids.map(lambda g: " ".join(AGGLOMERATIONS.get(g, (g, ""))).strip())


def _city_names(ctx: RunOutputs) -> pd.Series:
    cities = ctx.layers.get("cities", ctx.cities)
    if cities is None or "name_zh" not in cities:
        return pd.Series(dtype=object)
    return pd.Series(cities["name_zh"].to_numpy(), index=cities["adcode"].astype(str))


def key_results(ctx: RunOutputs, *, lagging: int = 3) -> dict[str, pd.DataFrame]:
    """The tables a reader needs first: ranking, lagging cities, Moran's I, cores, metro areas.

    Every value is already formatted (names instead of codes, numbers rounded to what they
    mean); missing stages leave their table out.
    """
    out: dict[str, pd.DataFrame] = {}
    res = ctx.results.get("index")
    comp = getattr(res, "composite", None)
    if comp is not None and len(comp) and {"score", "rank"} <= set(comp.columns):
        years = sorted(comp["year"].unique())
        first, last = years[0], years[-1]
        wide = comp.pivot(index="agglomeration_id", columns="year", values="score")
        ranks = comp.pivot(index="agglomeration_id", columns="year", values="rank")
        order = ranks[last].sort_values().index
        t = pd.DataFrame({"agglomeration 城市群": _agglomeration_names(pd.Series(order))})
        t[f"rank {last}"] = [int(ranks.at[g, last]) for g in order]
        t[f"score {last}"] = [f"{wide.at[g, last]:.2f}" for g in order]
        if len(years) > 1:
            t[f"change since {first}"] = [
                f"{wide.at[g, last] - wide.at[g, first]:+.2f}" for g in order
            ]
            t[f"rank {first}"] = [int(ranks.at[g, first]) for g in order]
        out[f"Integration ranking {last} (composite score, rank 1 = most integrated)"] = t
    scores = getattr(res, "city_scores", None)
    if scores is not None and len(scores) and "lag_score" in scores:
        last = scores["year"].max()
        names = _city_names(ctx)
        latest = scores[scores["year"] == last].dropna(subset=["lag_score"])
        worst = latest.sort_values("lag_score").groupby("agglomeration_id", sort=True).head(lagging)
        worst = worst.sort_values(["agglomeration_id", "lag_score"])
        out[f"Most lagging cities {last} (lowest lag score per agglomeration)"] = pd.DataFrame(
            {
                "agglomeration 城市群": _agglomeration_names(worst["agglomeration_id"]).to_numpy(),
                "city 城市": [f"{names.get(str(a), a)} ({a})" for a in worst["adcode"]],
                "lag score": [f"{v:+.3f}" for v in worst["lag_score"]],
            }
        )
    glob = ctx.tables.get("autocorr_global")
    if glob is not None and len(glob) and {"moran_i", "moran_p"} <= set(glob.columns):
        cell = glob.assign(
            cell=[
                f"{i:+.3f} (p={p:.3f})"
                for i, p in zip(glob["moran_i"], glob["moran_p"], strict=True)
            ]
        )
        wide = cell.pivot(index="scope", columns="year", values="cell")
        wide = wide.reindex(["all", *sorted(i for i in wide.index if i != "all")])
        wide.index = [
            "all member cities" if i == "all" else _agglomeration_names(pd.Series([i]))[0]
            for i in wide.index
        ]
        wide.columns = [f"Moran's I {c}" for c in wide.columns]
        out["Global Moran's I of the lag score per year (pseudo p-value)"] = (
            wide.rename_axis("scope").reset_index().fillna("–")
        )
    structure = ctx.tables.get("structure_type")
    coreness = ctx.tables.get("coreness")
    if structure is not None and len(structure):
        last = structure["year"].max()
        st = structure[structure["year"] == last].sort_values("agglomeration_id")
        cores = {}
        if coreness is not None and {"core", "name_zh"} <= set(coreness.columns):
            c = coreness[(coreness["year"] == last) & coreness["core"].astype(bool)]
            cores = (  # one name per city (coreness has a row per method)
                c.groupby("agglomeration_id")["name_zh"]
                .agg(lambda v: "、".join(dict.fromkeys(v)))
                .to_dict()
            )
        out[f"Cores and city-system structure {last}"] = pd.DataFrame(
            {
                "agglomeration 城市群": _agglomeration_names(st["agglomeration_id"]).to_numpy(),
                "structure 结构": st["structure_type"].to_numpy(),
                "core cities 核心城市": [cores.get(g, "–") for g in st["agglomeration_id"]],
            }
        )
    metro = ctx.tables.get("metro_cities")
    members = ctx.tables.get("metro_members")
    if metro is not None and len(metro) and "core_name" in metro:
        g = metro.groupby(["core_adcode", "core_name"], sort=False)
        t = g.agg(
            cities=("name_zh", lambda v: "、".join(v)), n_cities=("adcode", "nunique")
        ).reset_index()
        if members is not None and "member" in members:
            n = members[members["member"].astype(bool)].groupby("core_adcode")["adcode"].nunique()
            t["member counties 成员区县"] = t["core_adcode"].map(n).fillna(0).astype(int)
        out["One-hour metropolitan areas 都市圈 (core, cities reached, member counties)"] = (
            t.rename(
                columns={
                    "core_name": "core 核心城市",
                    "cities": "cities 城市",
                    "n_cities": "n cities",
                }
            ).drop(columns="core_adcode")
        )
    comps = ctx.tables.get("autocorr_components")
    if comps is not None and len(comps):
        split = comps[comps["n_components"] > 1].drop_duplicates("scope")
        out[
            "Spatial weights that are not connected (autocorrelation is computed per component)"
        ] = split[["scope", "n_units", "n_components", "smaller"]].rename(
            columns={"smaller": "smaller components"}
        )
    return out


def _with_city_names(ctx: RunOutputs, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Tables keyed by ``adcode`` get the city's Chinese name beside it (for the report only)."""
    names = _city_names(ctx)
    if names.empty:
        return tables
    out = {}
    for name, df in tables.items():
        if "adcode" in df and "name_zh" not in df:
            pos = list(df.columns).index("adcode") + 1
            df = df.copy()
            df.insert(pos, "name_zh", df["adcode"].astype(str).map(names))
        out[name] = df
    return out


def run(ctx: RunOutputs) -> None:
    """Write ``report.html`` from everything on the context."""
    opts = report_options(ctx.config.section("report"))
    captions = ctx.results.get("maps", {}).get("captions", {})
    layers = {
        name: f"{len(gdf):,} features; fields: {', '.join(c for c in gdf.columns if c != gdf.geometry.name)}"
        for name, gdf in ctx.layers.items()
    }
    path = write_report(
        ctx.out_dir / "report.html",
        title=str(opts["title"]),
        tables=_with_city_names(ctx, ctx.tables),
        key_results=key_results(ctx),
        highlights=highlights(ctx),
        figures=[f for f in ctx.figures if f.is_file()],
        captions=captions,
        config=ctx.config.to_dict(),
        provenance=ctx.provenance,
        synthetic=ctx.synthetic,
        summary=ctx.summary,
        layers=layers,
        max_rows=int(opts["max_rows"]),
        force=ctx.force,
    )
    ctx.summary.append(ctx.label(f"Report: {path}"))
