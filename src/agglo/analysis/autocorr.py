"""Spatial weights and spatial autocorrelation of city scores (DESIGN.md "Spatial weights and
autocorrelation").

Everything statistical is delegated to the PySAL libraries: weights are
:class:`libpysal.graph.Graph` objects, global Moran's I / Geary's C, local Moran (LISA) and
Getis-Ord G* come from :mod:`esda`, transitions across years are giddy's LISA and spatial
Markov chains (computed by :mod:`agglo.analysis.markov`, giddy's arithmetic without importing
giddy, mapclassify and quantecon: ~0.5 CPU-s per run; cross-checked against giddy). What this
module adds is the part that goes wrong in practice:

- **ids, never positions**: weights are keyed by ``adcode`` and data rows are matched to them
  by id; a mismatch is an error naming the ids. Units are put in sorted-id order before any
  permutation, so shuffling the input rows gives identical results for the same seed;
- **islands** (units with no neighbour, e.g. 舟山市 Zhoushan in a Zhejiang-only analysis or 岱山县
  Daishan among the counties) are reported by name and adcode and, by default, joined to their
  nearest neighbour — never silently dropped;
- **distances in metres**: distance-based weights use centroids in an azimuthal equidistant
  projection centred on the data (``+proj=aeqd``), never degrees;
- **reproducibility**: every permutation test takes ``seed``.

Departures from a plain esda call: LISA significance is after Benjamini-Hochberg
false-discovery-rate control by default (``correction="none"`` for a plain alpha); G* is the
classic Ord & Getis (1995) statistic on the binary neighbour structure of the weights plus the
unit itself (esda's analytic variance is exact for binary weights only), computed on values
shifted to be positive when needed (its z-score and p-value do not change under a shift).
Queen / rook contiguity is libpysal's vertex-set rule (``Graph.build_contiguity``) computed by
sorting coordinates (:func:`_vertex_contiguity`; the same graph, checked against libpysal).
Global Moran's I and Geary's C with their analytic z and p are esda's arithmetic computed by
:func:`agglo.analysis.crand.global_statistics` (the weight sums once per call instead of one
``graph.summary()`` per statistic; equal to esda's to the last bit, esda's own objects are used
for weights with isolates). Permutation p-values (global and local) are esda's, computed in
numpy with esda's draws
(:mod:`agglo.analysis.crand`, nothing compiled), with two documented changes that make them
reproducible: a simulated statistic that ties with the observed one (within a relative 1e-9)
counts in both tails, and when there are no more distinct arrangements than permutations
(global tests of scopes of up to 6 cities with 999 permutations; LISA of a city with one
neighbour) every arrangement is evaluated once, giving the exact permutation p-value.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from agglo.errors import AggloInputError
from agglo.measures.geodesy import ensure_wgs84
from agglo.options import RUN_SEED, Options, choice_problem, option
from agglo.results import StageResult

__all__ = [
    "CORRECTIONS",
    "GLOBAL_COLUMNS",
    "ISLAND_POLICIES",
    "LISA_COLUMNS",
    "QUADRANTS",
    "WEIGHT_KINDS",
    "AutocorrOptions",
    "AutocorrResult",
    "IslandWarning",
    "LisaTransitions",
    "autocorrelation",
    "equidistant_crs",
    "global_autocorrelation",
    "island_links",
    "lisa_transitions",
    "local_autocorrelation",
    "spatial_weights",
]

log = logging.getLogger(__name__)

#: weight kinds accepted by :func:`spatial_weights`
WEIGHT_KINDS = ("queen", "rook", "knn", "distance", "kernel")
#: what to do with units that have no neighbour
ISLAND_POLICIES = ("nearest", "keep", "error")
#: multiple-testing corrections for LISA significance
CORRECTIONS = ("fdr", "none")
#: esda quadrant codes (``Moran_Local.q``, ``geoda_quads=False``) -> labels
QUADRANTS = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}
_TRANSFORMS = ("R", "B", "O", "D", "V")
_KERNELS = ("gaussian", "triangular", "bisquare", "parabolic", "cosine", "exponential", "boxcar")


class IslandWarning(UserWarning):
    """Units without neighbours were kept as islands (``islands="keep"``)."""


# ----------------------------------------------------------------------------- validation


def _refuse(*problems: str | None) -> None:
    """Raise one :class:`AggloInputError` for the problems found (``None``: no problem)."""
    found = [p for p in problems if p]
    if found:
        raise AggloInputError("; ".join(found) + ".")


def _upper(value: Any) -> Any:
    """libpysal transformation codes are accepted in either case."""
    return value.upper() if isinstance(value, str) else value


def _ids_of(df: pd.DataFrame, id_col: str | None) -> pd.Series:
    """The id of each row (column ``id_col`` if present, else the index), on ``df.index``."""
    if id_col is not None and id_col in df.columns:
        ids = df[id_col]
    elif id_col is None or df.index.name == id_col:
        ids = pd.Series(df.index, index=df.index)
    else:
        raise AggloInputError(
            f"no id column {id_col!r}: the table has columns {list(df.columns)} and index "
            f"{df.index.name!r}. Pass id_col=<column holding the unit ids> (e.g. 'adcode')."
        )
    if ids.isna().any():
        raise AggloInputError(f"{int(ids.isna().sum())} row(s) have no {id_col or 'id'}.")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise AggloInputError(
            f"duplicated {id_col or 'id'} values {_show(dup)}: one row per unit is needed "
            "(select one year first if the table is a panel)."
        )
    return ids


def _show(ids: Any, limit: int = 20) -> str:
    ids = list(ids)
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


def _names(gdf: pd.DataFrame | None, ids: Sequence[Any]) -> list[str]:
    """``name (id)`` for each id, using ``name_zh`` when present."""
    if gdf is None or "name_zh" not in gdf.columns:
        return [str(i) for i in ids]
    return [f"{gdf.at[i, 'name_zh']} ({i})" for i in ids]


# ----------------------------------------------------------------------------- weights


def equidistant_crs(gdf: gpd.GeoDataFrame) -> str:
    """Azimuthal equidistant CRS (metres) centred on the bounding box of ``gdf``.

    Distances from the centre are exact; others are off by < 1 % within ~1,400 km of it
    (the Yangtze belt is ~2,400 km wide, so the worst pairs are off by ~1 %).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.Point(100, 20), shapely.Point(120, 30)], crs=4326)
    >>> equidistant_crs(g)
    '+proj=aeqd +lat_0=25.0000 +lon_0=110.0000 +datum=WGS84 +units=m +no_defs'
    """
    minx, miny, maxx, maxy = ensure_wgs84(gdf, what="units").total_bounds
    return (
        f"+proj=aeqd +lat_0={(miny + maxy) / 2:.4f} +lon_0={(minx + maxx) / 2:.4f} "
        "+datum=WGS84 +units=m +no_defs"
    )


def _prepare_units(gdf: gpd.GeoDataFrame, id_col: str | None) -> gpd.GeoDataFrame:
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise AggloInputError(f"spatial_weights needs a GeoDataFrame; got {type(gdf).__name__}.")
    gdf = ensure_wgs84(gdf, what="units")
    ids = _ids_of(gdf, id_col)
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    if empty.any():
        raise AggloInputError(
            f"units without geometry: {_show(ids[empty])}. Drop them or repair the geometry."
        )
    if len(gdf) < 2:
        raise AggloInputError(f"spatial weights need at least 2 units; got {len(gdf)}.")
    # canonical order: sorted ids, so that row order of the input never matters
    out = gdf.set_axis(pd.Index(ids.to_numpy(), name=id_col or "id"), axis=0)
    return out.sort_index(kind="stable")


def _points_m(units: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Centroids in the data-centred equidistant projection (metres)."""
    return units.geometry.to_crs(equidistant_crs(units)).centroid


def _base_graph(
    units: gpd.GeoDataFrame,
    kind: str,
    *,
    k: int,
    threshold: float | None,
    kernel: str,
    bandwidth: float | None,
    tolerance_m: float,
):
    from libpysal.graph import Graph
    from libpysal.weights.util import min_threshold_distance

    n = len(units)
    if kind in ("queen", "rook"):
        if tolerance_m > 0:
            projected = units.geometry.to_crs(equidistant_crs(units))
            g = Graph.build_fuzzy_contiguity(projected, buffer=tolerance_m / 2.0)
            if kind == "rook":
                log.info("tolerance_m > 0 uses fuzzy (intersects) contiguity for rook too")
            return g
        return _vertex_contiguity(units.geometry, rook=kind == "rook")
    if k < 1 or k >= n:
        raise AggloInputError(f"k must be between 1 and n - 1 = {n - 1}; got {k}.")
    pts = _points_m(units)
    if kind == "knn":
        return Graph.build_knn(pts, k=k)
    coords = np.column_stack([pts.x, pts.y])
    if threshold is None:
        # smallest distance that leaves no unit without a neighbour (libpysal's own helper)
        dist_m = float(min_threshold_distance(coords)) * (1 + 1e-9)
    else:
        if not threshold > 0:
            raise AggloInputError(f"threshold must be a positive distance in km; got {threshold}.")
        dist_m = float(threshold) * 1000.0
    if kind == "distance":
        return Graph.build_distance_band(pts, dist_m)
    if bandwidth is not None:
        bw = float(bandwidth) * 1000.0
    elif threshold is not None:
        bw = dist_m
    else:  # reach the k-th nearest neighbour of every unit (libpysal truncates at bw)
        from scipy.spatial import KDTree

        bw = float(KDTree(coords).query(coords, k=k + 1)[0][:, k].max()) * (1 + 1e-6)
    if not bw > 0:
        raise AggloInputError(f"bandwidth must be a positive distance in km; got {bandwidth}.")
    return Graph.build_kernel(pts, kernel=kernel, k=k, bandwidth=bw)


def _vertex_contiguity(geometry: gpd.GeoSeries, *, rook: bool):
    """``Graph.build_contiguity(geometry, rook=rook)`` (libpysal's vertex-set rule), in numpy.

    libpysal hashes every vertex (queen) or boundary segment (rook) in a Python loop (~0.1-0.5
    CPU-s for the 41,000 vertices of the member cities); here equal vertices / segments are
    found by sorting their coordinates. The rule is libpysal's: two units are queen neighbours
    when they share a vertex (exactly equal coordinates), rook neighbours when they share a
    segment between consecutive vertices of one part (as libpysal, also the segment that
    joins one ring of a part to the next); a unit with neither is an isolate (a zero
    self-weight). The graph is built by ``Graph.from_arrays`` as libpysal builds it, so it
    equals libpysal's, weights' dtype and order included (``tests/test_autocorr.py`` checks
    it against libpysal). Other geometry types go to libpysal.
    """
    import itertools

    import shapely
    from libpysal.graph import Graph

    arr = np.asarray(geometry.values, dtype=object)
    kinds = set(shapely.get_type_id(arr).tolist())
    if not kinds <= {1, 3, 5, 6}:  # (Multi)LineString, (Multi)Polygon, as libpysal accepts
        return Graph.build_contiguity(geometry, rook=rook)
    ids = np.asarray(geometry.index)
    n = len(ids)
    xy, owner = shapely.get_coordinates(arr, return_index=True)
    xy = xy + 0.0  # -0.0 and 0.0 are one vertex, as libpysal's tuple keys have them
    if rook:
        _, part = shapely.get_coordinates(shapely.get_parts(arr), return_index=True)
        same = part[:-1] == part[1:]
        a, b = xy[:-1][same], xy[1:][same]
        swap = (b[:, 0] < a[:, 0]) | ((b[:, 0] == a[:, 0]) & (b[:, 1] < a[:, 1]))
        lo, hi = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
        keys, owner = np.column_stack([lo, hi]), owner[:-1][same]
    else:
        keys = xy
    order = np.lexsort(keys.T[::-1])
    keys, owner = keys[order], owner[order]
    new = np.ones(len(keys), dtype=bool)
    new[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    # distinct (vertex or segment, unit) pairs, sorted by vertex / segment
    code = np.unique((np.cumsum(new) - 1) * n + owner)
    group, unit = code // n, code % n
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    size = np.diff(np.r_[start, len(group)])
    pairs = [np.empty(0, dtype=np.int64)]
    for s_ in np.unique(size[size > 1]):
        members = unit[start[size == s_][:, None] + np.arange(s_)]
        for i, j in itertools.permutations(range(int(s_)), 2):
            pairs.append(members[:, i] * n + members[:, j])
    edges = np.unique(np.concatenate(pairs))
    focal, neighbor = edges // n, edges % n
    isolates = np.setdiff1d(np.arange(n), focal)
    weight = np.ones(len(edges) + len(isolates), dtype=int)
    weight[len(edges) :] = 0
    focal = np.concatenate([focal, isolates])
    neighbor = np.concatenate([neighbor, isolates])
    by_focal = np.argsort(focal, kind="stable")
    return Graph.from_arrays(
        ids[focal[by_focal]], ids[neighbor[by_focal]].astype(ids.dtype), weight[by_focal]
    )


def _subgraph_exact(kind: str, tolerance_m: float) -> bool:
    """Whether the base graph of a subset of units is the induced subgraph of the whole set's.

    True for exact queen/rook contiguity: whether two polygons share a vertex or an edge does
    not depend on the other units. Not for fuzzy contiguity (its buffer is drawn in a
    projection centred on the units at hand), k-nearest, distance bands or kernels.
    """
    return kind in ("queen", "rook") and not tolerance_m > 0


def _subset_graph(graph: Any, ids: pd.Index) -> Any:
    """Induced subgraph of ``graph`` on ``ids`` (in that order), isolates as zero self-loops
    as libpysal's builders leave them; equal to building the contiguity of those units alone
    (one polygon intersection pass for all scopes instead of one per scope)."""
    missing = ids.difference(graph.unique_ids)
    if len(missing):
        raise AggloInputError(f"units not in the contiguity graph: {_show(missing)}.")
    return graph.subgraph(ids)


def _members_contiguity(members: gpd.GeoDataFrame, kind: str, wkw: Mapping[str, Any]) -> Any:
    """Contiguity graph of every member city, built once, that each scope-year cuts to its
    cities (:func:`_subset_graph`); ``None`` when that would not equal building per scope, or
    when the members cannot make one graph (each scope then reports its own problem)."""
    if not _subgraph_exact(kind, wkw["tolerance_m"]):
        return None
    try:
        units = _prepare_units(members, "adcode")
        return _base_graph(units, kind, kernel="gaussian", bandwidth=None, **wkw)
    except AggloInputError:
        return None


def _link_islands(units: gpd.GeoDataFrame, islands: Sequence[Any], n_links: int) -> pd.DataFrame:
    """Nearest non-island units of each island (centroid distance in the aeqd projection)."""
    pts = _points_m(units)
    is_island = pts.index.isin(list(islands))
    others = pts[~is_island]
    if len(others) == 0:
        raise AggloInputError(
            "every unit is an island (no unit has a neighbour): choose kind='knn' or 'distance'."
        )
    rows = []
    for i in islands:
        d = others.distance(pts.loc[i]).sort_values(kind="stable")
        for j, dist in d.iloc[:n_links].items():
            rows.append({"island": i, "neighbor": j, "distance_km": float(dist) / 1000.0})
    return pd.DataFrame(rows, columns=["island", "neighbor", "distance_km"])


def _with_links(graph, links: pd.DataFrame, order: pd.Index):
    """Graph plus symmetric unit-weight edges island <-> neighbour, in ``order`` of ids."""
    from libpysal.graph import Graph

    adj = graph.adjacency.reset_index()
    isl = set(links["island"])
    adj = adj[~((adj["focal"] == adj["neighbor"]) & adj["focal"].isin(isl))]
    add = pd.concat(
        [
            pd.DataFrame({"focal": links["island"], "neighbor": links["neighbor"]}),
            pd.DataFrame({"focal": links["neighbor"], "neighbor": links["island"]}),
        ]
    ).assign(weight=1.0)
    edges = pd.concat([adj, add], ignore_index=True).drop_duplicates(["focal", "neighbor"])
    pos = pd.Series(np.arange(len(order)), index=order)
    edges = edges.assign(_p=edges["focal"].map(pos).to_numpy(), _q=edges["neighbor"].map(pos))
    edges = edges.sort_values(["_p", "_q"], kind="stable")
    return Graph.from_arrays(
        edges["focal"].to_numpy(), edges["neighbor"].to_numpy(), edges["weight"].to_numpy()
    )


def island_links(
    gdf: gpd.GeoDataFrame,
    kind: str = "queen",
    *,
    k: int = 4,
    threshold: float | None = None,
    id_col: str | None = "adcode",
    island_neighbors: int = 1,
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    tolerance_m: float = 0.0,
) -> pd.DataFrame:
    """Units with no neighbour under ``kind`` weights and the units they would be joined to.

    Parameters are those of :func:`spatial_weights`.

    Returns
    -------
    pandas.DataFrame
        ``island, island_name, neighbor, neighbor_name, distance_km`` (centroid distance in km
        in the data-centred equidistant projection); empty when there are no islands.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame({"adcode": ["a", "b", "c"], "name_zh": ["甲", "乙", "岛"]},
    ...     geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(3, 0, 4, 1)],
    ...     crs=4326)
    >>> island_links(g)[["island", "island_name", "neighbor"]]
      island island_name neighbor
    0      c           岛        b
    """
    _refuse(choice_problem("kind", kind, WEIGHT_KINDS), choice_problem("kernel", kernel, _KERNELS))
    units = _prepare_units(gdf, id_col)
    base = _base_graph(
        units,
        kind,
        k=k,
        threshold=threshold,
        kernel=kernel,
        bandwidth=bandwidth,
        tolerance_m=tolerance_m,
    )
    return _island_table(units, base, island_neighbors)


def _island_table(units: gpd.GeoDataFrame, base, island_neighbors: int) -> pd.DataFrame:
    if island_neighbors < 1:
        raise AggloInputError(f"island_neighbors must be >= 1; got {island_neighbors}.")
    isolates = [i for i in units.index if i in set(base.isolates)]
    links = _link_islands(units, isolates, island_neighbors) if isolates else None
    cols = ["island", "island_name", "neighbor", "neighbor_name", "distance_km"]
    if links is None or links.empty:
        return pd.DataFrame(columns=cols)
    name = units["name_zh"] if "name_zh" in units.columns else pd.Series(dtype=object)
    return links.assign(
        island_name=links["island"].map(name), neighbor_name=links["neighbor"].map(name)
    )[cols]


def spatial_weights(
    gdf: gpd.GeoDataFrame,
    kind: str = "queen",
    *,
    k: int = 4,
    threshold: float | None = None,
    islands: str = "nearest",
    id_col: str | None = "adcode",
    island_neighbors: int = 1,
    transform: str = "R",
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    tolerance_m: float = 0.0,
):
    """Spatial weights between units, keyed by their ids, row-standardised by default.

    Parameters
    ----------
    gdf
        Units (polygons or points) with a CRS; one row per id.
    kind
        ``"queen"`` / ``"rook"`` contiguity (shared point / shared edge), ``"knn"`` (``k``
        nearest centroids), ``"distance"`` (binary distance band of ``threshold`` km) or
        ``"kernel"`` (``kernel`` function of centroid distance, ``bandwidth`` km, truncated
        to the ``k`` nearest).
    k
        Neighbours for ``knn`` and ``kernel``.
    threshold
        Distance band in km (``distance``; also the default kernel bandwidth). Default: the
        smallest distance that leaves no unit without a neighbour.
    islands
        Units left without a neighbour: ``"nearest"`` (default) joins each to its
        ``island_neighbors`` nearest non-island units (symmetric, weight 1 before
        standardisation) and logs a warning naming them; ``"keep"`` keeps them as islands
        with an :class:`IslandWarning`; ``"error"`` raises :class:`~agglo.errors.AggloInputError`.
    id_col
        Column with the unit ids (the index when absent or ``None``); the weights' ids.
    island_neighbors
        How many nearest units an island is joined to.
    transform
        libpysal transformation: ``"R"`` row-standardised (default), ``"B"`` binary,
        ``"O"`` original, ``"D"`` doubly standardised, ``"V"`` variance stabilising.
    kernel
        Kernel function for ``kind="kernel"`` (libpysal's, which are 0 beyond the bandwidth).
    bandwidth
        Kernel bandwidth in km (default: ``threshold`` if given, else the largest distance
        from a unit to its ``k``-th nearest neighbour, so every unit keeps ``k`` neighbours).
    tolerance_m
        For contiguity: treat units closer than this many metres as neighbours (fuzzy
        contiguity on boundaries buffered by half of it, in metres) — for boundaries with
        slivers. 0 (default) needs shared vertices/edges.

    Returns
    -------
    libpysal.graph.Graph
        Ids are the ``id_col`` values in sorted order, whatever the order of ``gdf``.

    Raises
    ------
    AggloInputError
        Bad choices, duplicated or missing ids, empty geometries, or islands with
        ``islands="error"`` (the message names them).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> row = gpd.GeoDataFrame({"adcode": ["a", "b", "c"]},
    ...     geometry=[shapely.box(i, 0, i + 1, 1) for i in range(3)], crs=4326)
    >>> w = spatial_weights(row, "rook")
    >>> w.adjacency.to_dict()
    {('a', 'b'): 1.0, ('b', 'a'): 0.5, ('b', 'c'): 0.5, ('c', 'b'): 1.0}
    """
    return _weights_with_islands(
        gdf,
        kind,
        k=k,
        threshold=threshold,
        islands=islands,
        id_col=id_col,
        island_neighbors=island_neighbors,
        transform=transform,
        kernel=kernel,
        bandwidth=bandwidth,
        tolerance_m=tolerance_m,
    )[0]


def _weights_with_islands(
    gdf: gpd.GeoDataFrame,
    kind: str = "queen",
    *,
    k: int = 4,
    threshold: float | None = None,
    islands: str = "nearest",
    id_col: str | None = "adcode",
    island_neighbors: int = 1,
    transform: str = "R",
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    tolerance_m: float = 0.0,
    contiguity: Any = None,
):
    """:func:`spatial_weights` and the :func:`island_links` table of the same base graph.

    ``contiguity`` is an optional base graph (:func:`_base_graph`) of ``kind`` over a superset
    of the units, used when the base graph of a subset equals its induced subgraph (see
    :func:`_subset_graph`).
    """
    transform = _upper(transform)
    _refuse(
        choice_problem("kind", kind, WEIGHT_KINDS),
        choice_problem("islands", islands, ISLAND_POLICIES),
        choice_problem("kernel", kernel, _KERNELS),
        choice_problem("transform", transform, _TRANSFORMS),
    )
    units = _prepare_units(gdf, id_col)
    if contiguity is not None and _subgraph_exact(kind, tolerance_m):
        base = _subset_graph(contiguity, units.index)
    else:
        base = _base_graph(
            units,
            kind,
            k=k,
            threshold=threshold,
            kernel=kernel,
            bandwidth=bandwidth,
            tolerance_m=tolerance_m,
        )
    graph = base
    table = _island_table(units, base, island_neighbors)
    if len(base.isolates):
        named = _show(_names(units, list(dict.fromkeys(table["island"]))))
        if islands == "error":
            raise AggloInputError(
                f"{len(base.isolates)} unit(s) have no neighbour under {kind} weights: {named}. "
                "Use islands='nearest' to join them to their nearest unit, islands='keep', "
                "or kind='knn'."
            )
        if islands == "keep":
            warnings.warn(
                f"{len(base.isolates)} island(s) kept without neighbours under {kind} weights: "
                f"{named}; their spatial lag is 0.",
                IslandWarning,
                stacklevel=3,
            )
        else:
            joins = "; ".join(
                f"{a} -> {b} ({d:.0f} km)"
                for a, b, d in zip(
                    _names(units, table["island"]),
                    _names(units, table["neighbor"]),
                    table["distance_km"],
                    strict=True,
                )
            )
            log.warning(
                "%d island(s) without neighbours under %s weights joined to their nearest "
                "unit(s): %s",
                len(base.isolates),
                kind,
                joins,
            )
            graph = _with_links(base, table, units.index)
    if graph.n_components > 1:
        labels = graph.component_labels
        sizes = labels.value_counts()
        small = [_show(_names(units, labels.index[labels == c]), 8) for c in sizes.index[1:]]
        log.info(
            "%s weights have %d disconnected components; smaller ones: %s",
            kind,
            graph.n_components,
            " | ".join(small),
        )
    return graph.transform(transform), table


# ----------------------------------------------------------------------------- alignment


def _esda_transformation(graph, transformation: str):
    """``graph`` under ``transformation`` (esda's convention: the W's own is not used)."""
    tr = _upper(transformation)
    _refuse(choice_problem("transformation", tr, _TRANSFORMS))
    if tr != "O" and graph.transformation != tr:  # (libpysal would return an equal copy,
        graph = graph.transform(tr)  # without the sparse matrix and isolates cached on graph)
    return graph, graph.transformation


def _as_graph(w):
    from libpysal.graph import Graph
    from libpysal.weights import W

    if isinstance(w, Graph):
        return w
    if isinstance(w, W):
        return Graph.from_W(w)
    raise AggloInputError(
        f"w must be a libpysal Graph or W (see agglo.spatial_weights); got {type(w).__name__}."
    )


def _canonical(graph):
    """The same graph with its ids in sorted order (permutations then never depend on rows)."""
    from libpysal.graph import Graph

    ids = list(graph.unique_ids)
    try:
        order = sorted(ids)
    except TypeError as exc:
        raise AggloInputError("weights ids must be of one comparable type") from exc
    if ids == order:
        return graph
    adj = graph.adjacency.reset_index()
    pos = pd.Series(np.arange(len(order)), index=order)
    adj = adj.assign(_p=adj["focal"].map(pos).to_numpy(), _q=adj["neighbor"].map(pos).to_numpy())
    adj = adj.sort_values(["_p", "_q"], kind="stable")
    series = pd.Series(
        adj["weight"].to_numpy(),
        index=pd.MultiIndex.from_arrays([adj["focal"], adj["neighbor"]]),
        name="weight",
    )
    return Graph(series, transformation=graph.transformation, is_sorted=False)


def _align(data: pd.DataFrame, column: str, w, id_col: str | None):
    """Graph in sorted-id order, values in that order, and the data row position of each id."""
    if not isinstance(data, pd.DataFrame):
        raise AggloInputError(f"data must be a DataFrame; got {type(data).__name__}.")
    if column not in data.columns:
        raise AggloInputError(f"column {column!r} not found; columns are {list(data.columns)}.")
    graph = _canonical(_as_graph(w))
    ids = _ids_of(data, id_col)
    wid = pd.Index(graph.unique_ids)
    missing = wid.difference(pd.Index(ids))
    extra = pd.Index(ids).difference(wid)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"in the weights but not the data: {_show(missing)}")
        if len(extra):
            parts.append(f"in the data but not the weights: {_show(extra)}")
        if set(map(str, wid)) == set(map(str, ids)):
            parts.append(
                f"the ids differ only in type ({type(wid[0]).__name__} in the weights, "
                f"{type(ids.iloc[0]).__name__} in the data): convert one, e.g. astype(str)"
            )
        raise AggloInputError(
            "weights and data have different ids (" + "; ".join(parts) + "). Rows are matched "
            "by id, never by position: build the weights from the same units as the data."
        )
    pos_of = pd.Series(np.arange(len(data)), index=ids.to_numpy())
    positions = pos_of.loc[wid].to_numpy()
    y = pd.to_numeric(data[column].iloc[positions], errors="coerce")
    bad = y.isna().to_numpy()
    if bad.any():
        raise AggloInputError(
            f"{column!r} is missing or not numeric for {_show(wid[bad])}: drop these units and "
            "rebuild the weights, or fill the values."
        )
    values = y.to_numpy(dtype=float)
    if np.allclose(values, values[0]):
        raise AggloInputError(f"{column!r} is constant: autocorrelation is undefined.")
    return graph, values, positions


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed numpy's global generator (esda's Moran/Geary use it) and restore it afterwards."""
    state = np.random.get_state()  # noqa: NPY002
    if seed is not None:
        np.random.seed(seed)  # noqa: NPY002
    try:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            # esda announces a future change of its conditional-randomisation default
            warnings.filterwarnings(
                "ignore", message="The alternative hypothesis", category=DeprecationWarning
            )
            yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _check_perms(permutations: int) -> int:
    if not isinstance(permutations, int | np.integer) or permutations < 0:
        raise AggloInputError(f"permutations must be a non-negative integer; got {permutations!r}.")
    return int(permutations)


# ----------------------------------------------------------------------------- global


def global_autocorrelation(
    data: pd.DataFrame,
    column: str,
    w,
    *,
    permutations: int = 999,
    seed: int | None = 20101115,
    id_col: str | None = "adcode",
    transformation: str = "r",
) -> pd.Series:
    """Global Moran's I and Geary's C of ``column`` (esda), with permutation inference.

    Parameters
    ----------
    data
        One row per unit; ids in ``id_col`` (or the index). Matched to ``w`` by id.
    column
        Numeric column to test.
    w
        Weights from :func:`spatial_weights` or the user's (a libpysal ``Graph`` or ``W``).
        Its own transformation is not used: ``transformation`` decides, with esda's default,
        so agglo and ``esda.Moran(y, w)`` agree on the same ``W`` (a binary ``W`` is
        row-standardised, as esda does).
    permutations
        Random permutations for the pseudo p-values (0: analytic p-values only).
    seed
        Seed of the permutations (``None``: not reproducible).
    id_col
        Column with the ids.
    transformation
        libpysal transformation applied before the statistics (esda's convention):
        ``"r"`` row-standardised (default, as in ``esda.Moran``), ``"b"`` binary, ``"d"``,
        ``"v"``, ``"o"`` (the weights as given).

    Returns
    -------
    pandas.Series
        ``n``; ``moran_i``, ``moran_ei`` (= −1/(n−1)), ``moran_z`` (under randomisation),
        ``moran_p`` (permutation pseudo p-value, one-sided in the observed direction as in
        GeoDa; the randomisation p if ``permutations=0``; exact over all n! arrangements
        when ``n! <= permutations``), ``moran_p_rand`` (two-sided, analytic), ``moran_z_sim``;
        ``geary_c`` (expected 1), ``geary_z``, ``geary_p`` (pseudo p; analytic if no
        permutations); ``permutations`` (as requested), ``seed``.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> row = gpd.GeoDataFrame({"adcode": list("abcde"), "y": [1.0, 2, 3, 4, 5]},
    ...     geometry=[shapely.box(i, 0, i + 1, 1) for i in range(5)], crs=4326)
    >>> s = global_autocorrelation(row, "y", spatial_weights(row, "rook"), permutations=99, seed=1)
    >>> round(float(s["moran_i"]), 3), round(float(s["geary_c"]), 3)  # 0.6 and 0.2 by hand
    (0.6, 0.2)
    """
    from agglo.analysis.crand import global_statistics, permutation_statistics

    permutations = _check_perms(permutations)
    graph, y, _ = _align(data, column, w, id_col)
    graph, tr = _esda_transformation(graph, transformation)
    with _seeded(seed):
        if len(graph.isolates):
            import esda

            mi = esda.Moran(y, graph, transformation=tr, permutations=0)
            # esda's Geary on a Graph mis-sizes the isolates' placeholder rows; W handles them
            gc = esda.Geary(y, graph.to_W(), transformation=tr, permutations=0)
        else:  # esda's arithmetic without its per-call graph.summary() (crand)
            mi, gc = global_statistics(y, graph)
        # esda's simulations, drawn in esda's order, computed in one product
        sims = permutation_statistics(mi, gc, permutations, seed=seed) if permutations else {}
    out = {
        "n": len(y),
        "moran_i": float(mi.I),
        "moran_ei": float(mi.EI),
        "moran_z": float(mi.z_rand),
        "moran_p": sims["moran_p_sim"] if permutations else float(mi.p_rand),
        "moran_p_rand": float(mi.p_rand),
        "moran_z_sim": sims["moran_z_sim"] if permutations else np.nan,
        "geary_c": float(gc.C),
        "geary_z": float(gc.z_rand),
        "geary_p": sims["geary_p_sim"] if permutations else float(gc.p_rand),
        "permutations": permutations,
        "seed": seed,
    }
    return pd.Series(out, name=column, dtype=object)


# ----------------------------------------------------------------------------- local


def local_autocorrelation(
    data: pd.DataFrame,
    column: str,
    w,
    *,
    permutations: int = 999,
    seed: int | None = 20101115,
    alpha: float = 0.05,
    correction: str = "fdr",
    id_col: str | None = "adcode",
    transformation: str = "r",
) -> pd.DataFrame:
    """Local Moran (LISA) with quadrant labels and Getis-Ord G* of ``column`` (esda).

    Parameters
    ----------
    data, column, w, permutations, seed, id_col, transformation
        As in :func:`global_autocorrelation`; ``permutations`` must be > 0.
    alpha
        Significance level.
    correction
        ``"fdr"`` (default): Benjamini-Hochberg false-discovery-rate control over all units
        (``significant`` when the BH-adjusted ``lisa_q <= alpha``); ``"none"``: plain
        ``lisa_p <= alpha``.

    Returns
    -------
    pandas.DataFrame
        On the input's index: ``z`` (standardised value), ``lag_z`` (its spatial lag: the
        Moran scatterplot), ``lisa_i``, ``lisa_p`` (conditional-permutation pseudo p-value),
        ``lisa_q`` (BH-adjusted p), ``quadrant`` (HH, LH, LL, HL; missing for an island),
        ``significant`` (bool), ``cluster`` (quadrant if significant, else ``"ns"``),
        ``gstar_z`` (Ord-Getis G* z-score on binary weights with self; > 0 hot spot) and
        ``gstar_p`` (its pseudo p-value).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> cells = [shapely.box(i, j, i + 1, j + 1) for j in range(4) for i in range(4)]
    >>> g = gpd.GeoDataFrame({"adcode": [f"{i:02d}" for i in range(16)],
    ...     "y": [float(i % 4 + i // 4) for i in range(16)]}, geometry=cells, crs=4326)
    >>> lisa = local_autocorrelation(g, "y", spatial_weights(g, "rook"), seed=3)
    >>> lisa.loc[[0, 15], "quadrant"].tolist()
    ['LL', 'HH']
    """
    import esda
    from scipy.stats import false_discovery_control

    from agglo.analysis.crand import conditional_p

    permutations = _check_perms(permutations)
    if permutations < 1:
        raise AggloInputError("local_autocorrelation needs permutations >= 1 (e.g. 999).")
    _refuse(choice_problem("correction", correction, CORRECTIONS))
    if not 0 < alpha < 1:
        raise AggloInputError(f"alpha must be between 0 and 1; got {alpha}.")
    graph, y, positions = _align(data, column, w, id_col)
    graph, _ = _esda_transformation(graph, transformation)
    structure = graph.transform("B")
    # G (a ratio to the sum of y) needs positive values; its z-score and permutation p are
    # invariant to adding a constant, so shift non-positive data (lag scores are centred)
    y_g = y if y.min() > 0 else y - y.min() + y.std()
    with _seeded(seed):
        lm = esda.Moran_Local(y, graph, transformation=graph.transformation, permutations=0)
        gs = esda.G_Local(y_g, structure, transform="B", star=True, permutations=0)
        # esda's conditional randomisation in numpy, nothing compiled (agglo.analysis.crand)
        p = conditional_p("moran", lm.z, lm.w, lm.Is, permutations, seed)
        gstar_p = conditional_p("gstar", gs.y, gs.w, gs.Gs, permutations, seed, scaling=gs.y.sum())
    q = false_discovery_control(p, method="bh")
    sig = (q if correction == "fdr" else p) <= alpha
    quad = pd.Series(np.asarray(lm.q)).map(QUADRANTS).to_numpy(dtype=object)
    isolated = np.isin(np.asarray(graph.unique_ids), np.asarray(graph.isolates))
    quad[isolated] = None
    sig &= ~isolated
    z = (y - y.mean()) / y.std()
    cols = pd.DataFrame(
        {
            "z": z,
            "lag_z": graph.lag(z),
            "lisa_i": np.asarray(lm.Is, dtype=float),
            "lisa_p": p,
            "lisa_q": q,
            "quadrant": quad,
            "significant": sig,
            "cluster": np.where(sig, quad, "ns"),
            "gstar_z": np.asarray(gs.Zs, dtype=float),
            "gstar_p": gstar_p,
        }
    )
    cols.loc[isolated, "cluster"] = "island"
    # back to the input's row order and index (positions[i] is the row of the i-th id)
    out = cols.iloc[np.argsort(positions)].set_axis(data.index, axis=0)
    out.attrs.update({"column": column, "alpha": alpha, "correction": correction, "seed": seed})
    return out


# ----------------------------------------------------------------------------- transitions


def _require_giddy() -> None:
    """Refuse without giddy (the ``markov`` extra), whose estimators the transitions are.

    giddy is not imported (:mod:`agglo.analysis.markov` computes its numbers); it stays
    required because it is the reference those numbers are checked against and the library
    the run's provenance names for them.
    """
    import importlib.util
    import sys

    from agglo.errors import MissingDependencyError

    loaded = sys.modules.get("giddy.markov", False)
    if loaded is None or (loaded is False and importlib.util.find_spec("giddy") is None):
        raise MissingDependencyError(
            "LISA transitions (lisa_transitions) needs the optional package 'giddy': "
            "pip install 'agglo[markov]'"
        )


@dataclass
class LisaTransitions:
    """Transitions of units between classes across consecutive years (see
    :func:`lisa_transitions`).

    Attributes
    ----------
    counts, probabilities
        LISA-quadrant (HH, LH, LL, HL) transition counts and row probabilities, labelled.
    spatial_markov
        Long table ``lag_class, from_class, to_class, count, probability`` of the spatial
        Markov chain of the values (quantile classes conditioned on the class of the
        spatial lag); empty when it could not be estimated.
    tests
        Chi-square statistics: ``lisa_chi2``, ``lisa_chi2_p``, ``lisa_dof`` (independence of
        own and neighbours' moves), and for the spatial Markov chain ``markov_q``,
        ``markov_q_p``, ``markov_lr``, ``markov_lr_p`` (homogeneity across lag classes).
    quadrants
        Quadrant of each unit (rows, by id) in each year (columns).
    """

    counts: pd.DataFrame
    probabilities: pd.DataFrame
    spatial_markov: pd.DataFrame
    tests: pd.Series
    quadrants: pd.DataFrame
    years: list[Any] = field(default_factory=list)


def lisa_transitions(
    panel: pd.DataFrame,
    w,
    *,
    column: str = "lag_score",
    year_col: str = "year",
    id_col: str = "adcode",
    classes: int = 4,
) -> LisaTransitions:
    """LISA-quadrant and spatial-Markov transitions of ``column`` across years (giddy's).

    Parameters
    ----------
    panel
        Long table with ``id_col``, ``year_col`` and ``column``; every unit of ``w`` must have
        a value in every year (units are matched to ``w`` by id).
    w
        Weights (Graph or W) over the units.
    column, year_col, id_col
        Column names.
    classes
        Quantile classes of the values and of their spatial lags in the spatial Markov chain.

    Notes
    -----
    Quadrants are those of the local Moran scatterplot in each year (no permutation test is
    involved, so there is no seed); the chain estimates and chi-square tests are those of
    ``giddy.markov.LISA_Markov`` and ``Spatial_Markov(k=m=classes, fixed=True,
    fill_empty_classes=True)``, computed by :mod:`agglo.analysis.markov` without importing
    giddy (equal to giddy's on the same input: ``tests/test_autocorr_markov.py``).

    Returns
    -------
    LisaTransitions

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> cells = [shapely.box(i, j, i + 1, j + 1) for j in range(4) for i in range(4)]
    >>> g = gpd.GeoDataFrame({"adcode": [f"{i:02d}" for i in range(16)]}, geometry=cells, crs=4326)
    >>> panel = pd.DataFrame([{"adcode": f"{i:02d}", "year": t, "lag_score": float(i % 4 + i // 4 + t * (i == 5))}
    ...     for t in (0, 1, 2) for i in range(16)])
    >>> tr = lisa_transitions(panel, spatial_weights(g, "rook"), classes=2)
    >>> int(tr.counts.to_numpy().sum())  # 16 units x 2 transitions
    32
    """
    from agglo.analysis.markov import lisa_markov, spatial_markov

    _require_giddy()
    for c in (column, year_col, id_col):
        if c not in panel.columns:
            raise AggloInputError(f"column {c!r} not found; columns are {list(panel.columns)}.")
    dup = panel.duplicated([id_col, year_col])
    if dup.any():
        raise AggloInputError(
            f"{int(dup.sum())} duplicated ({id_col}, {year_col}) rows, e.g. "
            f"{panel.loc[dup, [id_col, year_col]].iloc[0].tolist()}."
        )
    wide = panel.pivot(index=id_col, columns=year_col, values=column).sort_index(axis=1)
    if wide.shape[1] < 2:
        raise AggloInputError(f"transitions need at least 2 years; got {list(wide.columns)}.")
    graph = _canonical(_as_graph(w))
    wid = pd.Index(graph.unique_ids)
    missing = wid.difference(wide.index)
    if len(missing):
        raise AggloInputError(f"units of the weights missing from the panel: {_show(missing)}.")
    wide = wide.loc[wid]
    incomplete = wide.index[wide.isna().any(axis=1)]
    if len(incomplete):
        raise AggloInputError(
            f"{column!r} is missing in some years for {_show(incomplete)}: transitions need a "
            "balanced panel."
        )
    y = wide.to_numpy(dtype=float)
    wW = graph.to_W()
    labels = [QUADRANTS[i] for i in (1, 2, 3, 4)]
    with _seeded(None):
        lm = lisa_markov(y, wW)
    counts = pd.DataFrame(lm.transitions, index=labels, columns=labels).round().astype(int)
    counts.index.name, counts.columns.name = "from", "to"
    totals = counts.sum(axis=1).replace(0, np.nan)
    probs = counts.div(totals, axis=0)
    chi = lm.chi_2
    tests = {"lisa_chi2": float(chi[0]), "lisa_chi2_p": float(chi[1]), "lisa_dof": float(chi[2])}
    sm_rows: list[dict[str, Any]] = []
    try:
        with _seeded(None), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sm = spatial_markov(y, wW, k=classes, m=classes)
        for a in range(sm.m):
            for i in range(sm.k):
                for j in range(sm.k):
                    sm_rows.append(
                        {
                            "lag_class": a,
                            "from_class": i,
                            "to_class": j,
                            "count": int(sm.T[a, i, j]),
                            "probability": float(sm.P[a, i, j]),
                        }
                    )
        tests.update(
            {
                "markov_q": float(sm.Q),
                "markov_q_p": float(sm.Q_p_value),
                "markov_lr": float(sm.LR),
                "markov_lr_p": float(sm.LR_p_value),
            }
        )
    except (ValueError, ZeroDivisionError, IndexError) as exc:  # too few units per class
        log.warning("spatial Markov chain not estimated (%s)", exc)
    quads = pd.DataFrame(np.vectorize(QUADRANTS.get)(lm.q), index=wid, columns=list(wide.columns))
    return LisaTransitions(
        counts=counts,
        probabilities=probs,
        spatial_markov=pd.DataFrame(
            sm_rows, columns=["lag_class", "from_class", "to_class", "count", "probability"]
        ),
        tests=pd.Series(tests),
        quadrants=quads,
        years=list(wide.columns),
    )


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class AutocorrOptions(Options):
    """Options of the ``autocorr`` stage (``[autocorr]`` section).

    Examples
    --------
    >>> AutocorrOptions(weights="knn", k=6).k
    6
    """

    section = "autocorr"
    weights: str = option("queen", help="Spatial weights.", choices=WEIGHT_KINDS)
    column: str = option("lag_score", help="City score to analyse (a column of the scores).")
    permutations: int = option(999, help="Permutations of the global tests.", minimum=0)
    lisa_min_permutations: int = option(
        99,
        help="LISA runs at least this many permutations (its pseudo p-values need them).",
        minimum=0,
    )
    alpha: float = option(
        0.05,
        help="Significance level of the LISA clusters.",
        minimum=0,
        exclusive_minimum=True,
        maximum=1,
    )
    correction: str = option(
        "fdr", help="Multiple-testing correction of LISA p-values.", choices=CORRECTIONS
    )
    islands: str = option(
        "nearest",
        help="Units without a neighbour: joined to the nearest, kept, or an error.",
        choices=ISLAND_POLICIES,
    )
    k: int = option(4, help="Neighbours of the knn weights.", minimum=1)
    threshold: float | None = option(
        None,
        help="Distance band of the distance weights (default: the smallest that leaves no island).",
        unit="km",
    )
    tolerance_m: float = option(
        0.0,
        help="Gap still counted as a shared border (contiguity weights).",
        unit="m",
        minimum=0,
    )
    min_units: int = option(
        4,
        help="Scopes (all members, each agglomeration) with fewer cities are skipped.",
        minimum=3,
    )
    transitions: bool = option(True, help="LISA transitions between years (>= 2 years).")
    min_transition_units: int = option(
        8,
        help="LISA transitions need at least this many cities present in every year.",
        minimum=2,
    )


#: columns of :attr:`AutocorrResult.global_table`
GLOBAL_COLUMNS = [
    "scope",
    "year",
    "weights",
    "n",
    "moran_i",
    "moran_ei",
    "moran_z",
    "moran_p",
    "moran_p_rand",
    "geary_c",
    "geary_z",
    "geary_p",
    "permutations",
    "seed",
]
#: columns of :attr:`AutocorrResult.lisa`
LISA_COLUMNS = [
    "adcode",
    "name_zh",
    "agglomeration_id",
    "year",
    "value",
    "z",
    "lag_z",
    "lisa_i",
    "lisa_p",
    "lisa_q",
    "quadrant",
    "significant",
    "cluster",
    "gstar_z",
    "gstar_p",
]
_ISLAND_COLUMNS = ["island", "island_name", "neighbor", "neighbor_name", "distance_km"]


@dataclass
class AutocorrResult(StageResult):
    """Result of :func:`autocorrelation` (a :class:`~agglo.results.StageResult`).

    Attributes
    ----------
    global_table
        Global Moran's I / Geary's C per scope (``all`` or an agglomeration) and year.
    lisa
        LISA and G* per member city and year (scope ``all``).
    lisa_layer
        ``lisa`` with the member polygons.
    islands
        Islands of the weights (units without a neighbour before island handling) and the
        nearest unit(s) they are (``islands="nearest"``) or would be joined to, per scope and
        year.
    components
        ``scope, year, n_units, n_components, smaller``: connected components of each scope's
        weights (after island handling), the smaller components named.
    transitions
        LISA transitions (balanced panel), or ``None``.
    skipped
        ``scope, year, reason`` of every scope-year left out.
    options, seed
        What was run.
    """

    global_table: pd.DataFrame
    lisa: pd.DataFrame
    lisa_layer: gpd.GeoDataFrame
    islands: pd.DataFrame
    components: pd.DataFrame
    transitions: LisaTransitions | None
    skipped: pd.DataFrame
    options: AutocorrOptions
    seed: int | None
    score_labels: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """Output tables by file name.

        ``autocorr_global``, ``lisa``, ``autocorr_islands``; ``lisa_transitions`` (long:
        ``from, to, count, probability``) and ``spatial_markov`` when estimated;
        ``autocorr_components`` when some scope's weights are not connected.
        """
        out = {
            "autocorr_global": self.global_table,
            "lisa": self.lisa,
            "autocorr_islands": self.islands,
        }
        tr = self.transitions
        if tr is not None:
            long = tr.counts.stack().rename("count").reset_index()
            long["probability"] = tr.probabilities.stack().to_numpy()
            out["lisa_transitions"] = long
            if not tr.spatial_markov.empty:
                out["spatial_markov"] = tr.spatial_markov
        if (self.components["n_components"] > 1).any():
            out["autocorr_components"] = self.components
        return autocorr_labels(out, self.score_labels)

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """Output layers by name (``lisa`` when there are LISA rows)."""
        if self.lisa.empty:
            return {}
        return {"lisa": autocorr_labels({"lisa": self.lisa_layer}, self.score_labels)["lisa"]}

    def metadata(self) -> dict[str, Any]:
        """Options, seed and a one-line method description."""
        o = self.options
        return {
            "options": o.to_dict(),
            "seed": self.seed,
            "method": f"{o.weights} weights (row-standardised), {o.permutations} permutations, "
            f"seed {self.seed}, significance {o.correction} at alpha {o.alpha}",
        }

    def layer_metadata(self) -> dict[str, dict[str, Any]]:
        """Description and method of the ``lisa`` layer."""
        if self.lisa.empty:
            return {}
        return {
            "lisa": {
                "description": "local Moran (LISA) clusters and Getis-Ord G* of "
                f"{self.options.column} per member city and year (long format)",
                "method": self.metadata()["method"],
                "cluster": "HH/LL/LH/HL if significant, 'ns' otherwise, 'island' if no neighbour",
            }
        }

    def city_columns(self) -> dict[str, pd.Series]:
        """``lisa_cluster`` and ``lisa_p`` of the latest year, by ``adcode``."""
        if self.lisa.empty:
            return {}
        latest = self.lisa[self.lisa["year"] == self.lisa["year"].max()].set_index("adcode")
        out = {"lisa_cluster": latest["cluster"], "lisa_p": latest["lisa_p"].astype(float)}
        labelled = autocorr_labels({"lisa": self.lisa}, self.score_labels)["lisa"]
        if "provenance" in labelled:  # what the cities layer's LISA columns were computed from
            year = labelled["year"] == labelled["year"].max()
            out["lisa_provenance"] = labelled[year].set_index("adcode")["provenance"]
        return out

    def summary_lines(self) -> list[str]:
        """One line per year: Moran's I of all members, its pseudo p, significant LISA cities."""
        lisa, column = self.lisa, self.options.column
        lines = []
        for row in self.global_table[self.global_table["scope"] == "all"].itertuples(index=False):
            n_sig = (
                0 if lisa.empty else int(lisa.loc[lisa["year"] == row.year, "significant"].sum())
            )
            lines.append(
                f"Autocorrelation {row.year}: Moran's I of {column} over {row.n} member "
                f"cities = {row.moran_i:.3f} (E[I] = {row.moran_ei:.3f}, pseudo p = "
                f"{row.moran_p:.3f}); {n_sig} significant LISA cities"
            )
        return lines

    def notes(self) -> list[str]:
        """Connected components and islands of the weights, as they were handled."""
        o, out = self.options, []
        comps = self.components
        split = comps[comps["n_components"] > 1]
        if len(split):
            parts = []
            for scope, rows in split.groupby("scope", sort=False):
                r = rows.iloc[0]
                years = ", ".join(str(y) for y in rows["year"])
                parts.append(
                    f"{scope} ({years}): {r.n_components} components (smaller: {r.smaller})"
                )
            out.append(
                f"Autocorrelation weights ({o.weights}) are not connected; the statistics are "
                "computed over the whole graph: " + "; ".join(parts)
            )
        if self.islands.empty:
            if len(comps):
                out.append(
                    f"Autocorrelation: no islands (every city has a neighbour in every scope) "
                    f"under {o.weights} weights"
                )
            return out
        what = {
            "nearest": "joined to their nearest city",
            "keep": "kept without neighbours (spatial lag 0, cluster 'island')",
            "error": "refused: the scope-years with islands were skipped",
        }[o.islands]
        isl = self.islands.drop_duplicates(["scope", "island", "neighbor"])
        arrow = " -> " if o.islands == "nearest" else ", nearest: "
        parts = []
        for scope, rows in isl.groupby("scope", sort=False):
            joined = ", ".join(
                f"{r.island_name} ({r.island}){arrow}{r.neighbor_name}" for r in rows.itertuples()
            )
            parts.append(f"{scope}: {joined}")
        out.append(
            f"Autocorrelation islands under {o.weights} weights, {what} "
            f"(islands = {o.islands!r}): " + "; ".join(parts)
        )
        return out


def autocorrelation(
    scores: pd.DataFrame,
    cities: gpd.GeoDataFrame,
    options: AutocorrOptions | None = None,
    *,
    seed: int | None = RUN_SEED,
) -> AutocorrResult:
    """Global and local autocorrelation of member cities' scores, per year.

    Per year: global Moran's I / Geary's C over all members of the agglomerations together
    (scope ``all``) and over each agglomeration with at least ``min_units`` cities; LISA and
    G* over all members (with at least ``lisa_min_permutations`` permutations). A scope whose
    weights join every city to every other is skipped (I = -1/(n-1) by construction).
    LISA transitions use the cities present in every year (at least ``min_transition_units``).

    Parameters
    ----------
    scores
        ``adcode, year, <options.column>`` (e.g. ``IndexResult.city_scores``); with
        ``provenance`` (and ``provenance_inputs``) per score, every table and the layer say
        per row which labels its scores carried (see :func:`autocorr_labels`).
    cities
        City polygons with ``adcode``, ``name_zh`` and ``agglomeration_id`` (members: not null).
    options
        :class:`AutocorrOptions` (default: its defaults).
    seed
        Seed of every permutation test.

    Returns
    -------
    AutocorrResult

    Examples
    --------
    >>> import agglo  # doctest: +SKIP
    >>> res = agglo.autocorrelation(index_result.city_scores, agglo.load_cities())  # doctest: +SKIP
    >>> res.tables()["autocorr_global"]  # doctest: +SKIP
    """
    opts = options if options is not None else AutocorrOptions()
    column, kind = opts.column, opts.weights
    if column not in scores.columns:
        raise AggloInputError(
            f"[autocorr] column {column!r} is not in the city scores ({list(scores.columns)})."
        )
    members = cities[cities["agglomeration_id"].notna()]
    members = members[["adcode", "name_zh", "agglomeration_id", "geometry"]]
    data = scores[["adcode", "year", column]].dropna(subset=[column])
    data = data[data["adcode"].isin(members["adcode"])]
    wkw = {"k": opts.k, "threshold": opts.threshold, "tolerance_m": float(opts.tolerance_m)}
    scopes = {"all": members}
    for agg, sub in members.groupby("agglomeration_id", sort=True):
        scopes[str(agg)] = sub
    contiguity = _members_contiguity(members, kind, wkw)
    cache: dict[frozenset[str], Any] = {}
    island_rows: list[pd.DataFrame] = []
    component_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    lisa_frames: list[pd.DataFrame] = []
    skipped: list[dict[str, Any]] = []

    def skip(scope: str, year: Any, reason: str, level: int = logging.INFO) -> None:
        log.log(level, "autocorr: %s %s skipped: %s", scope, year, reason)
        skipped.append({"scope": scope, "year": year, "reason": reason})

    for year in sorted(data["year"].unique()):
        yd = data[data["year"] == year]
        for scope, units in scopes.items():
            units = units[units["adcode"].isin(yd["adcode"])]
            if len(units) < opts.min_units:
                skip(
                    scope,
                    year,
                    f"{len(units)} cities with {column} (< min_units={opts.min_units})",
                )
                continue
            key = frozenset(units["adcode"])
            try:
                if key not in cache:
                    cache[key], isl = _weights_with_islands(
                        units, kind, islands=opts.islands, contiguity=contiguity, **wkw
                    )
                    component_rows.append(_components(cache[key], units, scope, year))
                    if not isl.empty:
                        island_rows.append(isl.assign(scope=scope, year=year))
                w = cache[key]
                if (w.cardinalities == len(units) - 1).all():
                    skip(
                        scope,
                        year,
                        f"every city neighbours every other under {kind} weights "
                        "(I = -1/(n-1) by construction)",
                    )
                    continue
                vals = yd[yd["adcode"].isin(key)]
                g = global_autocorrelation(
                    vals, column, w, permutations=opts.permutations, seed=seed
                )
            except AggloInputError as exc:
                skip(scope, year, str(exc), logging.WARNING)
                continue
            rows.append({"scope": scope, "year": int(year), "weights": kind, **g.to_dict()})
            if scope == "all":
                lisa = local_autocorrelation(
                    vals,
                    column,
                    w,
                    permutations=max(opts.permutations, opts.lisa_min_permutations),
                    seed=seed,
                    alpha=float(opts.alpha),
                    correction=opts.correction,
                )
                lisa_frames.append(pd.concat([vals, lisa], axis=1))
    glob = pd.DataFrame(rows, columns=GLOBAL_COLUMNS)
    lisa = _lisa_table(lisa_frames, members, column)
    layer = gpd.GeoDataFrame(
        lisa.merge(members[["adcode", "geometry"]], on="adcode", how="left"),
        geometry="geometry",
        crs=members.crs,
    )
    transitions = None
    if opts.transitions and lisa["year"].nunique() >= 2:
        transitions = _transitions(data, members, opts, wkw, cache)
    islands = (
        pd.concat(island_rows, ignore_index=True)
        if island_rows
        else pd.DataFrame(columns=_ISLAND_COLUMNS)
    )
    return AutocorrResult(
        global_table=glob,
        lisa=lisa,
        lisa_layer=layer,
        islands=islands,
        components=pd.DataFrame(
            component_rows, columns=["scope", "year", "n_units", "n_components", "smaller"]
        ),
        transitions=transitions,
        skipped=pd.DataFrame(skipped, columns=["scope", "year", "reason"]),
        options=opts,
        seed=seed,
        score_labels=_score_labels(scores, data, members),
    )


def _components(w: Any, units: pd.DataFrame, scope: str, year: Any) -> dict[str, Any]:
    """Connected components of the weights (after island handling), smaller ones named."""
    n = int(w.n_components)
    smaller = ""
    if n > 1:
        labels = w.component_labels
        names = units.set_index("adcode")["name_zh"]
        sizes = labels.value_counts()
        smaller = "; ".join(
            ", ".join(str(names.get(a, a)) for a in labels.index[labels == c])
            for c in sizes.index[1:]
        )
    return {
        "scope": scope,
        "year": year,
        "n_units": len(units),
        "n_components": n,
        "smaller": smaller,
    }


def _lisa_table(frames: list[pd.DataFrame], members: pd.DataFrame, column: str) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=LISA_COLUMNS)
    lisa = pd.concat(frames, ignore_index=True).rename(columns={column: "value"})
    lisa = lisa.merge(members[["adcode", "name_zh", "agglomeration_id"]], on="adcode")
    return lisa[LISA_COLUMNS].sort_values(["year", "adcode"], ignore_index=True)


def _transitions(
    data: pd.DataFrame,
    members: gpd.GeoDataFrame,
    opts: AutocorrOptions,
    wkw: dict[str, Any],
    cache: dict[frozenset[str], Any],
) -> LisaTransitions | None:
    years = sorted(data["year"].unique())
    counts = data.groupby("adcode")["year"].nunique()
    balanced = counts.index[counts == len(years)]
    units = members[members["adcode"].isin(balanced)]
    if len(units) < opts.min_transition_units:
        log.info(
            "autocorr: LISA transitions skipped: %d cities in every year (< %d)",
            len(units),
            opts.min_transition_units,
        )
        return None
    try:
        key = frozenset(units["adcode"])
        w = (
            cache[key]
            if key in cache
            else spatial_weights(units, opts.weights, islands=opts.islands, **wkw)
        )
        return lisa_transitions(data[data["adcode"].isin(balanced)], w, column=opts.column)
    except AggloInputError as exc:
        log.warning("autocorr: LISA transitions skipped: %s", exc)
        return None


# --- per-row provenance (issue 17) ---------------------------------------------------------


def _score_labels(
    scores: pd.DataFrame, data: pd.DataFrame, members: pd.DataFrame
) -> pd.DataFrame | None:
    """``adcode, year, agglomeration_id, provenance[, provenance_inputs]`` of the scores used."""
    if "provenance" not in scores:
        return None
    cols = ["provenance", *(["provenance_inputs"] if "provenance_inputs" in scores else [])]
    used = data[["adcode", "year"]].merge(
        scores[["adcode", "year", *cols]].drop_duplicates(["adcode", "year"]),
        on=["adcode", "year"],
        how="left",
    )
    used = used.merge(members[["adcode", "agglomeration_id"]], on="adcode")
    used[cols] = used[cols].fillna("unknown")
    return used


def autocorr_labels(
    tables: dict[str, pd.DataFrame], labels: pd.DataFrame | None
) -> dict[str, pd.DataFrame]:
    """The autocorrelation outputs with per-row ``provenance`` of the scores behind them.

    A global statistic gets the labels of the scores of its scope and year (scope ``all``:
    every member city that year); a LISA row those of every member city that year (the local
    statistic is standardised and permuted over all of them); islands and components (the
    weights of a scope-year's cities) those of that scope-year; transitions and the spatial
    Markov chain those of every score in the balanced panel. Unchanged when ``labels`` is
    ``None`` (scores without provenance).
    """
    from agglo.io.indicators import combine_provenance

    if labels is None:
        return tables
    per_scope = pd.concat(
        [labels.assign(scope="all"), labels.assign(scope=labels["agglomeration_id"].astype(str))],
        ignore_index=True,
    )
    by_scope = combine_provenance(per_scope, ["scope", "year"])
    counts = labels.groupby("adcode")["year"].nunique()
    balanced = labels[labels["adcode"].isin(counts.index[counts == labels["year"].nunique()])]
    everything = combine_provenance(balanced.assign(_all=0), ["_all"]).drop(columns="_all")
    out = dict(tables)
    for name, table in tables.items():
        if "provenance" in table:
            continue
        if name in ("lisa_transitions", "spatial_markov"):
            out[name] = table.assign(**everything.iloc[0].to_dict())
            continue
        t = table.assign(scope="all") if name == "lisa" else table
        if not t.empty and ("scope" not in t or "year" not in t):
            continue
        if t.empty:  # e.g. no islands: the columns all the same
            merged = t.assign(provenance=pd.Series(dtype=object))
            if "provenance_inputs" in by_scope:
                merged["provenance_inputs"] = pd.Series(dtype=object)
        else:
            key = by_scope.astype({"year": t["year"].dtype}) if len(by_scope) else by_scope
            merged = t.merge(key, on=["scope", "year"], how="left")
            merged.index = t.index
            new = [c for c in key.columns if c not in ("scope", "year")]
            merged[new] = merged[new].fillna("unknown")
        if name == "lisa":
            merged = merged.drop(columns="scope")
        if isinstance(table, gpd.GeoDataFrame):
            geo = table.geometry.name
            merged = gpd.GeoDataFrame(merged, geometry=geo, crs=table.crs)
            merged = merged[[*(c for c in merged.columns if c != geo), geo]]
        out[name] = merged
    return out
