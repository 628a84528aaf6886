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
    "geodesic_segments_m",
    "geodesic_steps_m",
    "require_projected",
]

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")
#: WGS84 semi-major axis (m) and first eccentricity squared, as in pyproj's ellipsoid
_A = _GEOD.a
_E2 = _GEOD.es
#: chords longer than this (m) are measured by pyproj's geodesic inverse instead of the series
_SERIES_MAX_CHORD_M = 50_000.0
#: points per block of the vectorised series (its temporaries then stay in the CPU cache)
_BLOCK = 1 << 15


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
        dist = geodesic_steps_m(coords[:, 0], coords[:, 1], same)
        seg_owner = owner[part_idx[:-1][same]]
        out = np.bincount(seg_owner, weights=dist, minlength=len(arr))
    return pd.Series(out / 1000.0, index=gs.index, name="length_km")


def geodesic_segments_m(
    lon0: np.ndarray, lat0: np.ndarray, lon1: np.ndarray, lat1: np.ndarray
) -> np.ndarray:
    """Geodesic distance on the WGS84 ellipsoid between paired points, in metres.

    The same numbers as ``pyproj.Geod(ellps="WGS84").inv(lon0, lat0, lon1, lat1)[2]``
    (Karney's algorithm) to within 1e-8 m, about four times faster for the short segments of
    road lines. A segment whose 3-D chord ``c`` (between the two points in Earth-centred
    coordinates) is at most 50 km is measured as the arc of the normal section through its
    chord: ``s = c (1 + q/24 + 3 q²/640)`` with ``q = (c κ)²``, where ``κ = cos²α/M + sin²α/N``
    is the normal curvature of the ellipsoid at the mid-latitude in the chord's direction
    ``α`` (Euler); the neglected terms are below ``(c/R)⁴ c`` (< 1e-10 m at 50 km), so the
    error is the float64 rounding of the chord, about 5e-9 m. Longer segments and non-finite
    points go to pyproj. Cross-checked against pyproj in ``tests/test_geodesy.py``.

    Parameters
    ----------
    lon0, lat0, lon1, lat1
        Degrees, arrays of one length (lon/lat on WGS84, EPSG:4326 order).

    Returns
    -------
    numpy.ndarray
        Distance in metres, float64.

    Examples
    --------
    >>> d = geodesic_segments_m(np.array([0.0]), np.array([0.0]), np.array([0.0]),
    ...                         np.array([1.0]))
    >>> round(float(d[0]), 3)  # one degree of latitude at the equator
    110574.389
    """
    lon0, lat0, lon1, lat1 = (np.asarray(v, dtype=np.float64) for v in (lon0, lat0, lon1, lat1))
    out = np.empty(len(lon0))
    for i in range(0, len(lon0), _BLOCK):  # blocks that stay in cache: no page-faulting temps
        b = slice(i, i + _BLOCK)
        (p0, sin0), (p1, sin1) = _ecef(lon0[b], lat0[b]), _ecef(lon1[b], lat1[b])
        out[b] = _arc_from_chord(p1 - p0, sin0, sin1, lon0[b], lat0[b], lon1[b], lat1[b])
    return out


def geodesic_steps_m(
    lon: np.ndarray, lat: np.ndarray, keep: np.ndarray | None = None
) -> np.ndarray:
    """Geodesic distance (m) from each point to the next, for the steps that ``keep`` selects.

    :func:`geodesic_segments_m` of ``(lon[:-1], lat[:-1], lon[1:], lat[1:])[keep]``, with the
    Earth-centred coordinates of each vertex computed once (the vertices of a line are shared
    by its consecutive segments).

    Parameters
    ----------
    lon, lat
        Degrees, the vertices of one or more lines in order.
    keep
        Boolean, ``len(lon) - 1``: the steps to measure (e.g. not those joining the last
        vertex of one line to the first of the next); all by default.

    Returns
    -------
    numpy.ndarray
        The distances in metres, one per kept step.

    Examples
    --------
    >>> steps = geodesic_steps_m(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    >>> [round(float(v) / 1000, 3) for v in steps]
    [110.574, 111.302]
    """
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    if len(lon) < 2:
        return np.zeros(0)
    out = []
    for i in range(0, len(lon) - 1, _BLOCK):
        v = slice(i, i + _BLOCK + 1)  # the block's vertices, one shared with the next block
        p, sin_phi = _ecef(lon[v], lat[v])
        x, y = lon[v], lat[v]
        parts = (np.diff(p, axis=0), sin_phi[:-1], sin_phi[1:], x[:-1], y[:-1], x[1:], y[1:])
        if keep is not None:
            k = keep[i : i + _BLOCK]
            parts = tuple(a[k] for a in parts)
        out.append(_arc_from_chord(*parts))
    return np.concatenate(out)


def _ecef(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Earth-centred x, y, z (m; n×3) of lon/lat points on the ellipsoid, and sin(latitude)."""
    sin_lam, cos_lam = _sin_cos(np.radians(lon))
    sin_phi, cos_phi = _sin_cos(np.radians(lat))
    n = _A / np.sqrt(1.0 - _E2 * sin_phi * sin_phi)
    out = np.empty((len(lon), 3))
    out[:, 0] = n * cos_phi * cos_lam
    out[:, 1] = n * cos_phi * sin_lam
    out[:, 2] = n * (1.0 - _E2) * sin_phi
    return out, sin_phi


def _sin_cos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of ``x`` (radians, |x| <= pi) from ``t = tan(x/2)``, to a few ulp.

    numpy's float64 ``tan`` is vectorised (SIMD) where ``sin`` and ``cos`` often are not:
    one ``tan`` and a division are about five times faster than ``sin`` plus ``cos``.
    """
    t = np.tan(x / 2.0)
    t2 = t * t
    inv = 1.0 / (1.0 + t2)
    return 2.0 * t * inv, (1.0 - t2) * inv


def _arc_from_chord(
    d: np.ndarray,
    sin0: np.ndarray,
    sin1: np.ndarray,
    lon0: np.ndarray,
    lat0: np.ndarray,
    lon1: np.ndarray,
    lat1: np.ndarray,
) -> np.ndarray:
    """Arc length (m) of the normal sections over chords ``d`` (n×3, m); pyproj beyond 50 km.

    ``sin0``/``sin1`` are the sines of the end latitudes; the sine of the mid-latitude is
    ``(sin0 + sin1) / (2 cos(Δφ/2))``, with ``1/cos(x) ≈ 1 + x²/2`` (it only enters the
    curvature of the correction term, and the neglected ``x⁴`` is below 1e-10 there).
    """
    c2 = np.einsum("ij,ij->i", d, d)
    half_dphi = np.radians(lat1 - lat0) / 2.0
    sin_m = (sin0 + sin1) / 2.0 * (1.0 + half_dphi * half_dphi / 2.0)
    w2 = 1.0 - _E2 * sin_m * sin_m
    n_curv = _A / np.sqrt(w2)  # prime-vertical radius of curvature N
    m_curv = n_curv * (1.0 - _E2) / w2  # meridional radius M
    north = m_curv * (lat1 - lat0)  # in degrees: only their ratio matters
    east = n_curv * np.sqrt(1.0 - sin_m * sin_m) * ((lon1 - lon0 + 180.0) % 360.0 - 180.0)
    h2 = north * north + east * east
    with np.errstate(invalid="ignore", divide="ignore"):
        cos2 = np.where(h2 > 0, north * north / h2, 1.0)
    kappa = cos2 / m_curv + (1.0 - cos2) / n_curv
    q = c2 * kappa * kappa
    out = np.sqrt(c2) * (1.0 + q / 24.0 + 3.0 * q * q / 640.0)
    far = ~(c2 <= _SERIES_MAX_CHORD_M**2)  # NaN chords too
    if far.any():
        out[far] = _GEOD.inv(lon0[far], lat0[far], lon1[far], lat1[far])[2]
    return out


def _as_frame(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if isinstance(geoms, gpd.GeoSeries):
        return gpd.GeoDataFrame(geometry=geoms, crs=geoms.crs)
    return geoms
