"""Geodesic lengths and areas on the WGS84 ellipsoid, and the one place that decides about CRS.

Lengths and areas in agglo are never measured in degrees: either on the ellipsoid (these
functions) or in an equal-area / equidistant projection chosen explicitly by the caller.
"""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Geod

from agglo.errors import CRSError

__all__ = [
    "WGS84",
    "ensure_wgs84",
    "geodesic_area_km2",
    "geodesic_length_km",
    "require_projected",
]

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")


def ensure_wgs84(gdf: gpd.GeoDataFrame, *, what: str = "layer") -> gpd.GeoDataFrame:
    """Return ``gdf`` in EPSG:4326, reprojecting if needed; refuse data without a CRS.

    Parameters
    ----------
    gdf
        Any GeoDataFrame with a CRS.
    what
        Name of the layer for the error message.

    Returns
    -------
    geopandas.GeoDataFrame
        The same rows (a copy only when reprojected) in EPSG:4326.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.Point(500000, 0)], crs=32650)
    >>> round(float(ensure_wgs84(g).geometry.x.iloc[0]), 3)
    117.0
    """
    if gdf.crs is None:
        raise CRSError(
            f"{what} has no CRS. Set it first, e.g. gdf.set_crs('EPSG:4326') for lon/lat data "
            "(Amap/cnmaps boundaries are published as lon/lat, possibly GCJ-02-offset)."
        )
    from agglo._validate import check_crs

    check_crs(gdf, what=what)  # before reprojecting: nonsense coordinates fail here, clearly
    if CRS.from_user_input(gdf.crs).equals(WGS84):
        return gdf
    return gdf.to_crs(WGS84)


def require_projected(gdf: gpd.GeoDataFrame, operation: str) -> None:
    """Raise :class:`~agglo.errors.CRSError` unless ``gdf`` has a projected CRS.

    For functions that measure in the layer's own units (metres), where degrees would be wrong.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs=4326)
    >>> require_projected(g, "buffering")
    Traceback (most recent call last):
    ...
    agglo.errors.CRSError: buffering needs a projected CRS in metres, but the layer is in EPSG:4326 (geographic, degrees). Reproject first, e.g. gdf.to_crs(gdf.estimate_utm_crs()) or an Albers equal-area CRS for China ('+proj=aea +lat_1=25 +lat_2=47 +lon_0=105').
    """
    if gdf.crs is None:
        raise CRSError(f"{operation} needs a projected CRS in metres, but the layer has no CRS.")
    crs = CRS.from_user_input(gdf.crs)
    if crs.is_geographic:
        name = crs.to_string()
        raise CRSError(
            f"{operation} needs a projected CRS in metres, but the layer is in {name} "
            "(geographic, degrees). Reproject first, e.g. gdf.to_crs(gdf.estimate_utm_crs()) or "
            "an Albers equal-area CRS for China ('+proj=aea +lat_1=25 +lat_2=47 +lon_0=105')."
        )


def geodesic_area_km2(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> pd.Series:
    """Area of each polygon on the WGS84 ellipsoid, in km².

    Parameters
    ----------
    geoms
        Polygons in any CRS (reprojected to EPSG:4326 first).

    Returns
    -------
    pandas.Series
        Area in km², on the input's index; 0 for empty or non-areal geometries.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> one_degree = gpd.GeoSeries([shapely.box(0, 0, 1, 1)], crs=4326)
    >>> round(float(geodesic_area_km2(one_degree).iloc[0]), 1)  # ~ 110.6 km x 110.6 km at the equator
    12308.8
    """
    gs = ensure_wgs84(_as_frame(geoms), what="polygons").geometry
    # pyproj sums signed ring areas (counter-clockwise positive): orient every part first, or
    # the parts of a MultiPolygon with mixed orientation cancel out
    oriented = shapely.orient_polygons(gs.to_numpy(), exterior_cw=False)
    areal = np.isin(shapely.get_type_id(oriented), (3, 6))
    areas = np.zeros(len(oriented))
    if areal.any():
        # ring by ring on coordinate arrays, summed in pyproj's order (exterior, holes, parts)
        parts, part_geom = shapely.get_parts(oriented[areal], return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        xy, vring = shapely.get_coordinates(rings, return_index=True)
        bounds = np.searchsorted(vring, np.arange(len(rings) + 1))
        ring_area = np.array(
            [
                _GEOD.polygon_area_perimeter(xy[a:b, 0], xy[a:b, 1])[0]
                for a, b in itertools.pairwise(bounds)
            ]
        )
        part_area = np.bincount(ring_part, weights=ring_area, minlength=len(parts))
        areas[areal] = np.bincount(part_geom, weights=part_area, minlength=int(areal.sum()))
    return pd.Series(areas / 1e6, index=gs.index, name="area_km2")


def geodesic_length_km(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> pd.Series:
    """Length of each (multi)line on the WGS84 ellipsoid, in km, vectorised over all vertices.

    Parameters
    ----------
    geoms
        LineStrings / MultiLineStrings (polygons give their boundary length) in any CRS.

    Returns
    -------
    pandas.Series
        Geodesic length in km, on the input's index.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> meridian = gpd.GeoSeries([shapely.LineString([(0, 0), (0, 1)])], crs=4326)
    >>> round(float(geodesic_length_km(meridian).iloc[0]), 3)  # one degree of latitude at the equator
    110.574
    """
    gs = ensure_wgs84(_as_frame(geoms), what="lines").geometry
    arr = gs.to_numpy()
    is_polygon = np.isin(shapely.get_type_id(arr), (3, 6))  # Polygon, MultiPolygon -> rings
    if is_polygon.any():  # boundaries of the polygons only (np.where would compute all)
        arr = arr.copy()
        arr[is_polygon] = shapely.boundary(arr[is_polygon])
    lines = shapely.get_parts(arr, return_index=True)
    parts, owner = lines
    coords, part_idx = shapely.get_coordinates(parts, return_index=True)
    out = np.zeros(len(arr))
    if len(coords) > 1:
        same = part_idx[1:] == part_idx[:-1]
        lon1, lat1 = coords[:-1][same, 0], coords[:-1][same, 1]
        lon2, lat2 = coords[1:][same, 0], coords[1:][same, 1]
        _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
        seg_owner = owner[part_idx[:-1][same]]
        out = np.bincount(seg_owner, weights=dist, minlength=len(arr))
    return pd.Series(out / 1000.0, index=gs.index, name="length_km")


def _as_frame(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if isinstance(geoms, gpd.GeoSeries):
        return gpd.GeoDataFrame(geometry=geoms, crs=geoms.crs)
    return geoms
