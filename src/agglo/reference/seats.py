"""A city's seat: one documented rule, used for gravity distances, metro origins, maps and reports.

**Rule** (:func:`city_seats`):

1. *Given seats win.* A table of seat points (e.g. the locations of the city governments:
   ``adcode, lon, lat`` in WGS84 degrees, or a GeoDataFrame of points with ``adcode``) gives the
   seat of every city it lists (``seat_source = "given"``).
2. *Otherwise, the urban districts.* When counties are given, a city's urban districts are its
   county-level units whose name ends in 区 (市辖区). Its seat is the mean of the districts'
   centroids weighted by the inverse of their area (``seat_source = "districts"``): the small,
   dense districts of the old core dominate, so the seat lands in the historic centre rather
   than in the middle of large suburban districts formed from former counties (e.g. Hangzhou,
   Chongqing). Centroids and areas are taken in a Lambert azimuthal equal-area projection
   centred on the data. A point that falls outside the districts (a river, a lake, a county between two
   districts) moves to the nearest point of them.
3. *Otherwise, the city polygon.* Without counties, or for a city without districts (e.g.
   仙桃市, 东莞市, autonomous prefectures), the seat is the polygon's representative point
   (a point on its surface; ``seat_source = "polygon"``).

A county's seat (:func:`county_seats`) is its given seat, else its representative point.

Checked against approximate city-centre coordinates of the eleven default metro cores (not
part of the package), rule 2 lands 1-10 km (median 3 km) from the centre; the first district by
adcode (the old metro rule) 2-18 km, the centroid of all districts (the old gravity rule)
1-36 km.

Examples
--------
>>> import geopandas as gpd, pandas as pd, shapely
>>> cities = gpd.GeoDataFrame({"adcode": ["100100"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
>>> counties = gpd.GeoDataFrame(
...     {"adcode": ["100101", "100102"], "name_zh": ["甲区", "乙区"], "city_adcode": "100100"},
...     geometry=[shapely.box(0, 0, 0.1, 0.1), shapely.box(0.1, 0, 1, 1)], crs=4326)
>>> s = city_seats(cities, counties)
>>> # weights 1/0.01 and 1/0.9: x = (100 * 0.05 + 1.11 * 0.55) / 101.11 = 0.0555, y = 0.0549
>>> s.seat_source.iloc[0], round(float(s.geometry.x.iloc[0]), 3), round(float(s.geometry.y.iloc[0]), 3)
('districts', 0.055, 0.055)
>>> given = pd.DataFrame({"adcode": ["100100"], "lon": [0.5], "lat": [0.5]})
>>> city_seats(cities, counties, seats=given).seat_source.iloc[0]
'given'
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from agglo.errors import AggloDataWarning, AggloInputError
from agglo.measures.geodesy import WGS84, ensure_wgs84

__all__ = ["SEAT_SOURCES", "city_seats", "county_seats", "read_seats"]

log = logging.getLogger(__name__)

#: values of the ``seat_source`` column
SEAT_SOURCES = ("given", "districts", "polygon")


def read_seats(path: str | Path) -> pd.DataFrame:
    """Read a table of seats: CSV with ``adcode``, ``lon``, ``lat`` (WGS84 degrees).

    Examples
    --------
    >>> read_seats("no_such_file.csv")
    Traceback (most recent call last):
    ...
    agglo.errors.AggloInputError: seat table no_such_file.csv does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise AggloInputError(f"seat table {path} does not exist.")
    table = pd.read_csv(path, dtype={"adcode": str}, encoding="utf-8-sig")
    missing = {"adcode", "lon", "lat"} - set(table.columns)
    if missing:
        raise AggloInputError(
            f"seat table {path.name} lacks column(s) {sorted(missing)}; expected adcode, lon, "
            "lat (WGS84 degrees)."
        )
    return table.assign(adcode=table["adcode"].str.strip().str.zfill(6))


def _given_points(seats: Any, what: str) -> pd.Series:
    """User seats as a Series adcode -> Point (EPSG:4326), validated."""
    if isinstance(seats, gpd.GeoDataFrame):
        if "adcode" not in seats.columns:
            raise AggloInputError(f"{what} lacks an adcode column.")
        g = ensure_wgs84(seats, what=what)
        if not (shapely.get_type_id(g.geometry.to_numpy()) == 0).all():
            raise AggloInputError(f"{what} must be Point geometries.")
        ids = g["adcode"].astype(str).str.strip()
        pts = pd.Series(g.geometry.to_numpy(), index=ids.to_numpy())
    elif isinstance(seats, pd.DataFrame):
        missing = {"adcode", "lon", "lat"} - set(seats.columns)
        if missing:
            raise AggloInputError(
                f"{what} lacks column(s) {sorted(missing)}; give adcode, lon, lat "
                "(WGS84 degrees) or a GeoDataFrame of points."
            )
        lon = pd.to_numeric(seats["lon"], errors="coerce").to_numpy(float)
        lat = pd.to_numeric(seats["lat"], errors="coerce").to_numpy(float)
        ids = seats["adcode"].astype(str).str.strip()
        bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
        if bad.any():
            raise AggloInputError(
                f"{what}: no valid lon/lat degrees for adcode(s) {ids[bad].tolist()[:10]}."
            )
        pts = pd.Series(shapely.points(lon, lat), index=ids.to_numpy())
    else:
        raise AggloInputError(
            f"{what} must be a table (adcode, lon, lat) or a GeoDataFrame of points, "
            f"got {type(seats).__name__}."
        )
    dup = pts.index[pts.index.duplicated()].unique().tolist()
    if dup:
        raise AggloInputError(f"{what}: adcode(s) {dup[:10]} appear more than once.")
    return pts


def _apply_given(
    points: pd.Series, source: pd.Series, ids: pd.Series, seats: Any, what: str
) -> None:
    """Overwrite ``points``/``source`` (aligned with ``ids``) with the given seats, warning
    about the adcodes the table does not know and the units it does not cover."""
    given = _given_points(seats, what)
    unknown = sorted(set(given.index) - set(ids))
    if unknown:
        warnings.warn(
            f"{what}: {len(unknown)} adcode(s) match no unit and are ignored: {unknown[:10]}",
            AggloDataWarning,
            stacklevel=3,
        )
    has = ids.isin(given.index).to_numpy()
    points[has] = given.reindex(ids[has]).to_numpy()
    source[has] = "given"
    if not has.all():
        rest = ids[~has].tolist()
        warnings.warn(
            f"{what} covers {int(has.sum())} of {len(ids)} units; the seats of the other "
            f"{len(rest)} follow the geometric rule ({', '.join(rest[:10])}"
            f"{', ...' if len(rest) > 10 else ''})",
            AggloDataWarning,
            stacklevel=3,
        )


def _equal_area(gdf: gpd.GeoDataFrame) -> CRS:
    """A Lambert azimuthal equal-area projection centred on the bounds of ``gdf`` (EPSG:4326)."""
    x0, y0, x1, y1 = gdf.total_bounds
    return CRS.from_proj4(
        f"+proj=laea +lat_0={(y0 + y1) / 2:.6f} +lon_0={(x0 + x1) / 2:.6f} "
        "+datum=WGS84 +units=m +no_defs"
    )


def _district_seats(counties: gpd.GeoDataFrame) -> pd.Series:
    """city adcode -> seat Point (EPSG:4326) by the inverse-area weighted district centroid."""
    missing = {"name_zh", "city_adcode"} - set(counties.columns)
    if missing:
        raise AggloInputError(
            f"counties lack column(s) {sorted(missing)}; use agglo.load_counties() or a layer "
            "with name_zh and city_adcode."
        )
    counties = ensure_wgs84(counties, what="counties")
    districts = counties[
        counties["name_zh"].astype(str).str.endswith("区")
        & counties.geometry.notna()
        & ~counties.geometry.is_empty
    ]
    if districts.empty:
        return pd.Series(dtype=object)
    crs = _equal_area(districts)
    proj = districts.geometry.to_crs(crs)
    area = proj.area.to_numpy()
    cent = proj.centroid
    frame = pd.DataFrame(
        {
            "city": districts["city_adcode"].astype(str).to_numpy(),
            "w": np.where(area > 0, 1.0 / np.where(area > 0, area, 1.0), 0.0),
            "x": cent.x.to_numpy(),
            "y": cent.y.to_numpy(),
        }
    )
    frame = frame[frame["w"] > 0]
    frame["wx"], frame["wy"] = frame["w"] * frame["x"], frame["w"] * frame["y"]
    sums = frame.groupby("city")[["w", "wx", "wy"]].sum()
    pts = shapely.points(sums["wx"] / sums["w"], sums["wy"] / sums["w"])
    unions = proj.groupby(districts["city_adcode"].astype(str).to_numpy()).agg(shapely.union_all)
    unions = unions.reindex(sums.index).to_numpy()
    outside = ~shapely.covers(unions, pts)
    if outside.any():
        pts[outside] = shapely.get_point(shapely.shortest_line(unions[outside], pts[outside]), 0)
    seats = gpd.GeoSeries(pts, crs=crs).to_crs(WGS84)
    return pd.Series(seats.to_numpy(), index=sums.index)


def city_seats(
    cities: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame | None = None,
    *,
    seats: pd.DataFrame | gpd.GeoDataFrame | None = None,
    id_col: str = "adcode",
) -> gpd.GeoDataFrame:
    """One seat point per city by the rule of this module (given seats win).

    Parameters
    ----------
    cities
        City polygons with ``id_col`` (and optionally ``name_zh``), any CRS.
    counties
        County polygons with ``name_zh`` and ``city_adcode`` (e.g. :func:`agglo.load_counties`);
        ``None`` uses the city polygons' representative points.
    seats
        Given seats: ``adcode, lon, lat`` (WGS84 degrees; e.g. :func:`read_seats`) or a
        GeoDataFrame of points with ``adcode``. They win for the cities they list; a table that
        misses some cities, or lists unknown ones, raises an
        :class:`~agglo.errors.AggloDataWarning` naming them.
    id_col
        City id column.

    Returns
    -------
    geopandas.GeoDataFrame
        On the input's index: ``id_col``, ``name_zh`` (when present), ``seat_source`` (one of
        :data:`SEAT_SOURCES`), Point geometry in EPSG:4326.

    Examples
    --------
    >>> import shapely
    >>> c = gpd.GeoDataFrame({"adcode": ["1"]}, geometry=[shapely.box(0, 0, 2, 2)], crs=4326)
    >>> s = city_seats(c)
    >>> (float(s.geometry.x.iloc[0]), float(s.geometry.y.iloc[0]), s.seat_source.iloc[0])
    (1.0, 1.0, 'polygon')
    """
    if not isinstance(cities, gpd.GeoDataFrame):
        raise AggloInputError("cities must be a GeoDataFrame of city polygons to derive seats.")
    if id_col not in cities.columns:
        raise AggloInputError(f"cities lacks the id column {id_col!r}.")
    cities = ensure_wgs84(cities, what="cities")
    ids = cities[id_col].astype(str).str.strip()
    points = pd.Series(
        cities.geometry.representative_point().to_numpy(), index=cities.index, dtype=object
    )
    source = pd.Series("polygon", index=cities.index, dtype=object)
    if counties is not None:
        by_city = _district_seats(counties)
        has = ids.isin(by_city.index)
        points[has] = by_city.reindex(ids[has]).to_numpy()
        source[has] = "districts"
    if seats is not None:
        _apply_given(points, source, ids, seats, "seats")
    columns: dict[str, Any] = {id_col: cities[id_col].to_numpy()}
    if "name_zh" in cities.columns:
        columns["name_zh"] = cities["name_zh"].to_numpy()
    columns["seat_source"] = source.to_numpy()
    return gpd.GeoDataFrame(columns, geometry=points.to_numpy(), index=cities.index, crs=WGS84)


def county_seats(
    counties: gpd.GeoDataFrame,
    *,
    seats: pd.DataFrame | gpd.GeoDataFrame | None = None,
) -> gpd.GeoDataFrame:
    """One seat point per county: the given seat, else its representative point.

    Parameters
    ----------
    counties
        County polygons with ``adcode`` (and optionally ``name_zh``, ``city_adcode``), any CRS.
    seats
        Given county seats, as for :func:`city_seats`.

    Returns
    -------
    geopandas.GeoDataFrame
        On the input's index: ``adcode``, ``name_zh``, ``city_adcode`` (when present),
        ``seat_source`` (``given`` or ``polygon``), Point geometry in EPSG:4326.

    Examples
    --------
    >>> import shapely
    >>> k = gpd.GeoDataFrame({"adcode": ["1"]}, geometry=[shapely.box(0, 0, 2, 2)], crs=4326)
    >>> county_seats(k).geometry.iloc[0].wkt
    'POINT (1 1)'
    """
    if not isinstance(counties, gpd.GeoDataFrame) or "adcode" not in counties.columns:
        raise AggloInputError("counties must be a GeoDataFrame of county polygons with adcode.")
    counties = ensure_wgs84(counties, what="counties")
    ids = counties["adcode"].astype(str).str.strip()
    points = pd.Series(
        counties.geometry.representative_point().to_numpy(), index=counties.index, dtype=object
    )
    source = pd.Series("polygon", index=counties.index, dtype=object)
    if seats is not None:
        _apply_given(points, source, ids, seats, "county seats")
    cols = [c for c in ("adcode", "name_zh", "city_adcode") if c in counties.columns]
    out = counties[cols].copy()
    out["seat_source"] = source.to_numpy()
    return gpd.GeoDataFrame(out, geometry=points.to_numpy(), crs=WGS84)
