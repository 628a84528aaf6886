"""Checks every spatial input passes once, at the entry of a stage, before any expensive call.

- :func:`check_crs`: the coordinates must lie inside the CRS's area of use (pyproj), and
  lon/lat-looking values under a projected CRS (or metres under a geographic one) are refused
  with the likely CRS named. Cheap (one bounding box), so it runs before reprojection,
  coverage computation or graph building, none of which can then hang on nonsense coordinates.
- :func:`clean_geometries`: geometry hygiene: null or empty geometries are reported by row,
  invalid polygons are repaired (``shapely.make_valid``, polygonal part kept) with an
  :class:`~agglo.errors.AggloDataWarning` naming them, and the repaired layer is returned so
  every later stage uses the same geometries.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer

from agglo.errors import AggloDataWarning, AggloInputError, CRSError, ValidationError

__all__ = [
    "check_crs",
    "check_overlap",
    "check_run_config",
    "clean_geometries",
    "guess_crs",
    "layer_bounds",
    "stage_options",
]

#: margin (degrees) around a CRS's area of use within which data is still accepted; in
#: longitude the margin is at least the area's own width
AREA_OF_USE_MARGIN_DEG = 2.0
#: how many ids or rows a message lists before "and N more"
SHOWN = 10


def layer_bounds(data: gpd.GeoDataFrame | gpd.GeoSeries) -> tuple[float, ...] | None:
    """``(minx, miny, maxx, maxy)`` of the non-null, non-empty geometries, or ``None``."""
    geoms = np.asarray(data.geometry.values if hasattr(data, "geometry") else data.values)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not present.any():
        return None
    return tuple(float(v) for v in shapely.total_bounds(geoms[present]))


def guess_crs(bounds: Sequence[float]) -> str | None:
    """The CRS that coordinates in ``bounds`` most likely use, as a hint for messages.

    Examples
    --------
    >>> guess_crs((103.9, 30.5, 104.2, 30.8))
    'EPSG:4326 (WGS 84 longitude/latitude)'
    >>> guess_crs((35_400_000, 3_300_000, 35_600_000, 3_500_000))
    'EPSG:4523 (CGCS2000 / 3-degree Gauss-Kruger zone 35)'
    """
    x0, y0, x1, y1 = bounds
    if -180 <= x0 <= x1 <= 360 and -90 <= y0 <= y1 <= 90:
        return "EPSG:4326 (WGS 84 longitude/latitude)"
    zone = int(x0 // 1_000_000)
    if x1 < (zone + 1) * 1_000_000 and 0 <= y0 <= y1 <= 10_000_000:
        if 13 <= zone <= 23:
            return f"EPSG:{4491 + zone - 13} (CGCS2000 / Gauss-Kruger zone {zone})"
        if 25 <= zone <= 45:
            return f"EPSG:{4513 + zone - 25} (CGCS2000 / 3-degree Gauss-Kruger zone {zone})"
    if 100_000 <= x0 <= x1 <= 900_000 and 0 <= y0 <= y1 <= 9_400_000:
        return "a UTM zone in metres (China: EPSG:32643-32653, WGS 84 / UTM zone 43N-53N)"
    if abs(x0) <= 20_037_509 and abs(x1) <= 20_037_509 and abs(y0) <= 20_048_967:
        return "EPSG:3857 (WGS 84 / Pseudo-Mercator, web maps) or another projected CRS in metres"
    return None


def check_crs(
    data: gpd.GeoDataFrame | gpd.GeoSeries | Sequence[float],
    crs: Any = None,
    *,
    what: str = "layer",
    fix: str | None = None,
) -> None:
    """Refuse coordinates that cannot be in ``crs`` (default: the layer's own CRS).

    Parameters
    ----------
    data
        A GeoDataFrame/GeoSeries, or bounds ``(minx, miny, maxx, maxy)`` (then give ``crs``).
    crs
        The CRS the coordinates claim to be in.
    what
        Name of the input for the message.
    fix
        How to set the right CRS, for the message (default: ``gdf.set_crs(...)``).

    Raises
    ------
    CRSError
        No CRS; non-finite coordinates; lon/lat-looking values under a projected CRS (or
        metres under a geographic one); coordinates outside the CRS's area of use.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame(geometry=[shapely.LineString([(104.0, 30.6), (104.1, 30.7)])],
    ...                      crs=32649)
    >>> check_crs(g, what="roads")
    Traceback (most recent call last):
    ...
    agglo.errors.CRSError: roads: coordinates x 104..104.1, y 30.6..30.7 look like longitude/latitude in degrees, but the CRS is WGS 84 / UTM zone 49N (EPSG:32649), in metres. The likely CRS is EPSG:4326 (WGS 84 longitude/latitude): set it with gdf.set_crs('EPSG:4326', allow_override=True).
    """
    if isinstance(data, gpd.GeoDataFrame | gpd.GeoSeries):
        crs = data.crs if crs is None else crs
        bounds = layer_bounds(data)
    else:
        bounds = tuple(float(v) for v in data)
    if crs is None:
        raise CRSError(f"{what} has no CRS. Set it first, e.g. gdf.set_crs('EPSG:4326').")
    if bounds is None:
        return  # no coordinates: emptiness is reported by clean_geometries / the stage
    crs = CRS.from_user_input(crs)
    name = _crs_name(crs)
    x0, y0, x1, y1 = bounds
    where = f"coordinates x {_num(x0)}..{_num(x1)}, y {_num(y0)}..{_num(y1)}"
    if not all(math.isfinite(v) for v in bounds):
        raise CRSError(f"{what}: {where} are not finite numbers; fix or drop those features.")

    def refuse(problem: str, likely: str | None) -> CRSError:
        code = likely.split(" ")[0] if likely and likely.startswith("EPSG:") else "EPSG:…"
        how = fix or f"gdf.set_crs('{code}', allow_override=True)"
        hint = f" The likely CRS is {likely}: set it with {how}." if likely else ""
        return CRSError(f"{what}: {where} {problem}.{hint}")

    lonlat_like = -180 <= x0 <= x1 <= 360 and -90 <= y0 <= y1 <= 90
    if crs.is_projected and lonlat_like:
        unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
        raise refuse(
            f"look like longitude/latitude in degrees, but the CRS is {name}, in {unit}s",
            guess_crs(bounds),
        )
    if crs.is_geographic and not lonlat_like:
        raise refuse(
            f"cannot be longitude/latitude (the CRS is {name}, in degrees); they look like "
            "projected coordinates",
            guess_crs(bounds),
        )
    area = crs.area_of_use
    if area is None:
        return
    try:
        to_lonlat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
        lon0, lat0, lon1, lat1 = to_lonlat.transform_bounds(x0, y0, x1, y1, densify_pts=5)
    except Exception:  # pyproj raises several types for impossible points
        lon0 = lat0 = lon1 = lat1 = math.nan
    # zone-based CRSs (UTM, Gauss-Kruger) are often used a zone or so beyond their strip
    m = AREA_OF_USE_MARGIN_DEG
    mx = max(m, area.east - area.west)
    inside = (
        all(math.isfinite(v) for v in (lon0, lat0, lon1, lat1))
        and (lon0 <= area.east + mx and lon1 >= area.west - mx)
        and (lat0 <= area.north + m and lat1 >= area.south - m)
    )
    if not inside and crs.is_geographic and area.west - m <= -180 and area.east + m >= 180:
        inside = True  # a global lon/lat CRS: the 0-360 longitude convention is fine too
    if not inside:
        raise refuse(
            f"lie outside the area of use of {name} (lon {area.west:g}..{area.east:g}, "
            f"lat {area.south:g}..{area.north:g}): the CRS label is wrong",
            guess_crs(bounds),
        )


def check_overlap(
    geoms: gpd.GeoSeries,
    extent: Sequence[float],
    labels: Sequence[Any],
    *,
    what: str = "raster",
) -> None:
    """Refuse polygons wholly outside ``extent``; warn naming those only partly inside.

    Parameters
    ----------
    geoms
        Polygons in the CRS of ``extent``.
    extent
        ``(minx, miny, maxx, maxy)`` of the raster (or other coverage).
    labels
        One name per polygon for messages (e.g. the ids).
    what
        Name of the coverage for messages.

    Raises
    ------
    AggloInputError
        No polygon intersects ``extent`` (nothing could be measured).

    Warns
    -----
    AggloDataWarning
        Polygons partly outside ``extent``, by name.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoSeries([shapely.box(0, 0, 1, 1)], crs=4326)
    >>> check_overlap(g, (10, 10, 20, 20), ["A"], what="pm25.tif")
    Traceback (most recent call last):
    ...
    agglo.errors.AggloInputError: pm25.tif (x 10..20, y 10..20) does not overlap any of the 1 polygon(s) (x 0..1, y 0..1): wrong raster, wrong region or wrong CRS.
    """
    arr = np.asarray(geoms.values, dtype=object)
    present = ~(shapely.is_missing(arr) | shapely.is_empty(arr))
    if not present.any():
        return
    x0, y0, x1, y1 = (float(v) for v in extent)
    b = shapely.bounds(arr)
    touches = present & (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)
    if not touches.any():
        px0, py0, px1, py1 = shapely.total_bounds(arr[present])
        raise AggloInputError(
            f"{what} (x {_num(x0)}..{_num(x1)}, y {_num(y0)}..{_num(y1)}) does not overlap any "
            f"of the {int(present.sum())} polygon(s) (x {_num(px0)}..{_num(px1)}, "
            f"y {_num(py0)}..{_num(py1)}): wrong raster, wrong region or wrong CRS."
        )
    inside_bbox = (b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)
    maybe = np.flatnonzero(present & ~inside_bbox)
    if maybe.size:
        box = shapely.box(x0, y0, x1, y1)
        out = maybe[~shapely.covered_by(arr[maybe], box)]
        if out.size:
            names = [str(labels[i]) for i in out]
            warnings.warn(
                f"{what} covers only part of {out.size} polygon(s) (their means use the covered "
                f"part only, see valid_fraction): {_listing(names)}",
                AggloDataWarning,
                stacklevel=3,
            )


def clean_geometries(
    gdf: gpd.GeoDataFrame,
    *,
    what: str = "polygons",
    id_col: str | None = None,
    polygonal: bool = True,
) -> gpd.GeoDataFrame:
    """Report null/empty geometries by row and repair invalid polygons, once.

    Parameters
    ----------
    gdf
        The layer; it is not modified.
    what
        Name of the layer for messages.
    id_col
        Column naming the features in messages (default: the row index).
    polygonal
        Keep only the polygonal part of repaired geometries (for boundary layers).

    Returns
    -------
    geopandas.GeoDataFrame
        ``gdf`` itself when nothing needed repair, else a copy with repaired geometries.

    Raises
    ------
    AggloInputError
        The layer has no rows.
    ValidationError
        Null or empty geometries, listed by row (and id).

    Warns
    -----
    AggloDataWarning
        Invalid polygons were repaired; the message names them.

    Examples
    --------
    >>> import geopandas as gpd, shapely, warnings
    >>> bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    >>> g = gpd.GeoDataFrame({"adcode": ["A"]}, geometry=[bowtie], crs=4326)
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     fixed = clean_geometries(g, id_col="adcode")
    >>> str(w[0].message)
    'polygons: 1 invalid polygon(s) repaired with shapely.make_valid: adcode A (Self-intersection[0.5 0.5]). Fix the source layer to silence this.'
    >>> fixed.geometry.iloc[0].geom_type, round(float(shapely.area(fixed.geometry.iloc[0])), 2)
    ('MultiPolygon', 0.5)
    """
    if len(gdf) == 0:
        raise AggloInputError(f"{what}: the layer is empty (0 rows); give a layer with features.")
    geoms = gdf.geometry.to_numpy()
    labels = _labels(gdf, id_col)
    null = shapely.is_missing(geoms)
    empty = ~null & shapely.is_empty(geoms)
    if null.any() or empty.any():
        problems = [
            f"row {i} ({labels[i]}): {'null' if null[i] else 'empty'} geometry"
            for i in np.flatnonzero(null | empty)
        ]
        raise ValidationError(
            [*problems, "drop these rows or fix their geometry in the source"], source=what
        )
    invalid = ~shapely.is_valid(geoms)
    if not invalid.any():
        return gdf
    idx = np.flatnonzero(invalid)
    reasons = shapely.is_valid_reason(geoms[idx])
    named = [f"{labels[i]} ({r})" for i, r in zip(idx, reasons, strict=True)]
    warnings.warn(
        f"{what}: {idx.size} invalid polygon(s) repaired with shapely.make_valid: "
        f"{_listing(named)}. Fix the source layer to silence this.",
        AggloDataWarning,
        stacklevel=2,
    )
    fixed = shapely.make_valid(geoms[idx])
    if polygonal:
        fixed = np.array([_polygonal_part(g) for g in fixed], dtype=object)
    out = gdf.copy()
    new = geoms.copy()
    new[idx] = fixed
    out[gdf.geometry.name] = gpd.GeoSeries(new, index=gdf.index, crs=gdf.crs)
    out.attrs = {**gdf.attrs, "repaired_geometries": [str(labels[i]) for i in idx]}
    return out


def _polygonal_part(geom: Any) -> Any:
    parts = [p for p in shapely.get_parts(geom) if shapely.get_type_id(p) in (3, 6)]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _labels(gdf: gpd.GeoDataFrame, id_col: str | None) -> list[str]:
    if id_col is not None and id_col in gdf.columns:
        return [f"{id_col} {v}" for v in gdf[id_col].tolist()]
    return [f"index {v}" for v in gdf.index.tolist()]


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _crs_name(crs: CRS) -> str:
    auth = crs.to_authority()
    return f"{crs.name} ({auth[0]}:{auth[1]})" if auth else crs.name


def _num(v: float) -> str:
    return f"{v:.6g}"


# -- the whole run configuration, before the first stage -----------------------------------------
def check_run_config(config: Any) -> dict[str, Any]:
    """Validate the whole run configuration at once, before any stage runs.

    The ``[inputs]`` paths must exist, and every stage's options are built from its section
    (:func:`stage_options`); all problems are raised together.

    Returns
    -------
    dict
        The options of every stage, by stage name.

    Raises
    ------
    ValidationError
        One entry per problem, e.g. ``metro.minutes must be a number; got 'sixty'``.

    Examples
    --------
    >>> from agglo.config import RunConfig
    >>> check_run_config(RunConfig(sections={"metro": {"minutes": "sixty"}}))
    Traceback (most recent call last):
    ...
    agglo.errors.ValidationError: run configuration: 1 problem(s)
      - metro.minutes must be a number; got 'sixty'
    """
    from agglo.measures.roads import parse_road_source

    problems = []
    for key in ("boundaries", "panel", "rasters", "roads", "stations"):
        value = getattr(config, key, None)
        values = value if isinstance(value, list | tuple) else [] if value is None else [value]
        for v in values:
            path = parse_road_source(v)[0] if key == "roads" else Path(str(v))
            if not path.exists():
                problems.append(f"inputs.{key} = {v} does not exist")
    options: dict[str, Any] = {}
    try:
        options = stage_options(config)
    except ValidationError as exc:
        problems += exc.problems
    if problems:
        raise ValidationError(problems, source="run configuration")
    return options


def stage_options(config: Any) -> dict[str, Any]:
    """Every stage's options from its config section, all problems raised together."""
    from agglo.outputs.run import OUTPUT_STEPS
    from agglo.pipeline import STAGES

    problems: list[str] = []
    options: dict[str, Any] = {}
    parsers = [(st.name, st.section or st.name, st.options) for st in STAGES]
    parsers += [(name, section, parse) for name, (_, section, parse) in OUTPUT_STEPS.items()]
    for name, section, parse in parsers:
        if parse is None or section is None:
            continue
        names = (section,) if isinstance(section, str) else section
        try:
            options[name] = parse(*(config.section(n) for n in names))
        except ValidationError as exc:
            problems += exc.problems
        except AggloInputError as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError(problems, source="run configuration")
    return options
