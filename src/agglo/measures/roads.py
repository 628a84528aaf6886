"""Road-network density per polygon, with geodesic lengths and areas (WGS84 ellipsoid).

Inputs are OpenStreetMap ``.osm.pbf`` extracts (read with pyosmium, filtered by ``highway``
class and bounding box while reading) or any OGR line layer (GeoPackage, shapefile, GeoJSON,
FileGDB) with an optional class column and a mapping of its values to OSM ``highway`` values.

Which roads count (the yearbook's 公路)
-------------------------------------
China's statistical yearbooks count 公路 (public highways: 国道/省道/县道/乡道/专用公路 and,
since 2006, 村道) and report 公路网密度 in km per 100 km². Urban streets (城市道路) are counted
separately and are *not* 公路. agglo's default classes map this onto OSM ``highway`` values:

============================  ===========================================================
OSM ``highway``               yearbook notion
============================  ===========================================================
motorway (+ _link)            高速公路 (expressways)
trunk (+ _link)               国道 / 一级公路 (national trunk roads)
primary (+ _link)             国道 / 省道
secondary (+ _link)           省道 / 县道
tertiary (+ _link)            县道 / 乡道
unclassified                  乡道 / 村道 (minor rural public roads)
============================  ===========================================================

Excluded by default: ``residential``, ``living_street``, ``service``, ``track``,
``pedestrian``, ``footway``, ``cycleway``, ``path``, ``steps``, ``construction``, ``proposed``
(urban streets, private access, field tracks and non-motorised ways). ``classes="major"`` keeps
motorway to secondary; ``classes="all"`` keeps every road; any list of values may be given.
OSM completeness varies across China, so absolute densities are typically *below* the
yearbook's; the integration index uses dispersion across cities (cv), which is less sensitive.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from agglo._validate import check_crs
from agglo.errors import AggloDataWarning, AggloInputError, ValidationError, require
from agglo.measures.geodesy import (
    WGS84,
    ensure_wgs84,
    geodesic_area_km2,
    geodesic_length_km,
    geodesic_segments_m,
    geodesic_steps_m,
)
from agglo.options import Options, option
from agglo.results import StageResult

__all__ = [
    "CHINESE_CLASSES",
    "CLASS_PRESETS",
    "DEFAULT_CLASSES",
    "MAJOR_CLASSES",
    "ROAD_COLUMNS",
    "RoadDensityResult",
    "RoadsOptions",
    "city_road_density",
    "iter_osm_roads",
    "parse_road_source",
    "read_roads",
    "resolve_classes",
    "road_density",
]

log = logging.getLogger(__name__)
#: boundary edges per box in the STRtree of :func:`_clipped_km` (4: fewest CPU-s on
#: benchmarks/bench_roads.py, bundled and full-resolution polygons, 2026-12-03)
_RUN = 4

#: OSM ``highway`` values counted as 公路 by default (see the module docstring)
DEFAULT_CLASSES: tuple[str, ...] = (
    "motorway",
    "motorway_link",
    "trunk",
    "trunk_link",
    "primary",
    "primary_link",
    "secondary",
    "secondary_link",
    "tertiary",
    "tertiary_link",
    "unclassified",
)
#: expressways, national and provincial roads only
MAJOR_CLASSES: tuple[str, ...] = DEFAULT_CLASSES[:8]
#: named class presets accepted by ``classes=`` (``"all"`` keeps every road)
CLASS_PRESETS: dict[str, tuple[str, ...] | None] = {
    "default": DEFAULT_CLASSES,
    "major": MAJOR_CLASSES,
    "all": None,
}
#: Chinese road classes (技术/行政等级, as in Chinese GIS layers) -> OSM ``highway`` values;
#: applied by :func:`read_roads` when no ``mapping`` is given
CHINESE_CLASSES: dict[str, str] = {
    "高速公路": "motorway",
    "高速": "motorway",
    "国道": "trunk",
    "城市快速路": "trunk",
    "快速路": "trunk",
    "省道": "primary",
    "主干道": "primary",
    "主干路": "primary",
    "县道": "secondary",
    "次干道": "secondary",
    "次干路": "secondary",
    "乡道": "tertiary",
    "支路": "tertiary",
    "村道": "unclassified",
    "专用公路": "unclassified",
}


@dataclass(frozen=True)
class RoadsOptions(Options):
    """Options of the ``roads`` stage (``[roads]`` section, ``agglo roads`` flags).

    Examples
    --------
    >>> RoadsOptions(classes=("motorway", "trunk")).classes
    ('motorway', 'trunk')
    """

    section = "roads"
    classes: str | tuple[str, ...] = option(
        "default",
        help="Road classes: default (公路: motorway..unclassified), major, all, or a list of "
        "class values.",
    )
    class_col: str = option("highway", help="Class column of a line layer (Geofabrik: fclass).")
    mapping: Mapping[str, str] | None = option(
        None, help="Source class value -> OSM highway value.", cli=False
    )
    layer: str | None = option(None, help="Layer of the road file (default: the first).")
    speed_col: str | None = option(
        None, help="Column of a line layer holding speed limits, km/h (copied to maxspeed)."
    )

    def extra_problems(self) -> list[str]:
        try:
            resolve_classes(self.classes)
        except AggloInputError as exc:
            return [f"roads.{exc}"]
        return []


#: attribute columns :func:`read_roads` always returns (strings as in OSM, or None)
ROAD_COLUMNS: tuple[str, ...] = ("highway", "maxspeed", "oneway", "name")

_OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".o5m")
_LINE_TYPES = {1: "LineString", 2: "LinearRing", 5: "MultiLineString"}
_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LinearRing",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def resolve_classes(classes: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Turn a ``classes=`` argument into a tuple of values, or ``None`` for every road.

    Parameters
    ----------
    classes
        A preset name (``"default"``, ``"major"``, ``"all"``), ``None`` (same as ``"all"``) or
        an iterable of class values.

    Examples
    --------
    >>> resolve_classes("major")[:2]
    ('motorway', 'motorway_link')
    >>> resolve_classes("all") is None
    True
    >>> resolve_classes("motorways")
    Traceback (most recent call last):
    ...
    agglo.errors.AggloInputError: classes must be one of ['all', 'default', 'major'] or a list of class values; got 'motorways'.
    """
    if classes is None:
        return None
    if isinstance(classes, str):
        if classes not in CLASS_PRESETS:
            raise AggloInputError(
                f"classes must be one of {sorted(CLASS_PRESETS)} or a list of class values; "
                f"got {classes!r}."
            )
        return CLASS_PRESETS[classes]
    values = tuple(str(c) for c in classes)
    if not values:
        raise AggloInputError("classes is an empty list; give class values or classes='all'.")
    return values


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------


def parse_road_source(source: str | Path) -> tuple[Path, str | None]:
    """Split a road source ``"file"`` or ``"file=class"`` into the path and its class.

    ``file=class`` gives every line of the file one road class (e.g. a FileGDB per class with
    no class column); the class may be an OSM ``highway`` value or a Chinese class name.

    Examples
    --------
    >>> parse_road_source("roads/gs.gdb=高速公路")
    (PosixPath('roads/gs.gdb'), '高速公路')
    >>> parse_road_source("china.osm.pbf")
    (PosixPath('china.osm.pbf'), None)
    """
    text = str(source)
    if "=" in text and not Path(text).exists():
        file, _, cls = text.rpartition("=")
        if file and cls and "/" not in cls and "\\" not in cls:
            return Path(file), cls.strip()
    return Path(text), None


def read_roads(
    path: str | Path | Sequence[str | Path],
    *,
    bbox: Sequence[float] | None = None,
    classes: str | Iterable[str] | None = DEFAULT_CLASSES,
    class_col: str = "highway",
    mapping: Mapping[str, str] | None = None,
    road_class: str | None = None,
    speed_col: str | None = None,
    speeds: Mapping[str, float] | None = None,
    layer: str | int | None = None,
    chunk_size: int = 100_000,
    node_cache: str = "flex_mem",
) -> gpd.GeoDataFrame:
    """Read road lines from an OSM extract or any OGR line layer, filtering while reading.

    Parameters
    ----------
    path
        One source or a list of them; each may be ``"file=class"`` (see
        :func:`parse_road_source`) to give all of its lines one class. ``.osm.pbf`` (also ``.osm``, ``.osm.bz2``): read with pyosmium, keeping ways with a
        ``highway`` tag of the selected classes; only way geometries are built, in chunks, and
        ways outside ``bbox`` are dropped chunk by chunk, so a country extract never holds its
        whole road network. Any other path is read with pyogrio (``bbox=`` and an SQL ``where``
        on ``class_col`` are pushed down to GDAL).
    bbox
        ``(min_lon, min_lat, max_lon, max_lat)`` in degrees (EPSG:4326), also for projected
        layers (the box is transformed to the layer's CRS for reading). Lines intersecting the
        box are kept whole.
    classes
        Class values to keep (after ``mapping``), a preset (``"default"``, ``"major"``) or
        ``"all"``/``None``. See :data:`DEFAULT_CLASSES` and the module docstring.
    class_col
        Class column of an OGR layer (Geofabrik shapefiles use ``"fclass"``). Ignored for OSM.
    mapping
        Source class value -> OSM ``highway`` value (e.g. ``{"高速": "motorway"}``), applied
        to ``class_col`` before filtering; unmapped values become None (and are dropped unless
        ``classes="all"``). Without it, Chinese class names (:data:`CHINESE_CLASSES`: 高速公路,
        国道, 省道, 县道, 乡道 ...) become their OSM classes and other values are kept.
    road_class
        One class for every line of the file (OSM value or Chinese name); no class column
        is needed then.
    speed_col
        Column holding the speed limit in km/h, copied to ``maxspeed`` (OGR layers).
    speeds
        Class -> km/h, filling ``maxspeed`` where it is missing (after class mapping).
    layer
        Layer name or index of a multi-layer source (default: the first layer).
    chunk_size
        Ways per geometry batch when reading OSM.
    node_cache
        pyosmium node-location storage for OSM input: ``"flex_mem"`` (default, fine for
        province extracts) or e.g. ``"dense_file_array,/tmp/nodes.cache"`` for a country
        extract on a machine with little memory.

    Returns
    -------
    geopandas.GeoDataFrame
        Lines in EPSG:4326 with ``highway``, ``maxspeed``, ``oneway``, ``name`` (strings as in
        OSM, None when absent), ``osm_id`` for OSM input (other columns of an OGR layer are
        kept), on a fresh RangeIndex.

    Raises
    ------
    AggloInputError
        Missing file, unreadable layer, missing class column, bad bbox.

    Examples
    --------
    >>> roads = read_roads("china-latest.osm.pbf", bbox=(103.5, 30.0, 105.0, 31.5))  # doctest: +SKIP
    >>> roads["highway"].value_counts()  # doctest: +SKIP
    """
    kw = {
        "bbox": bbox,
        "classes": classes,
        "class_col": class_col,
        "mapping": mapping,
        "speed_col": speed_col,
        "speeds": speeds,
        "layer": layer,
        "chunk_size": chunk_size,
        "node_cache": node_cache,
    }
    if not isinstance(path, str | Path):
        sources = list(path)
        if not sources:
            raise AggloInputError("no road file given.")
        frames = [read_roads(p, road_class=road_class, **kw) for p in sources]
        if len(frames) == 1:
            return frames[0]
        out = pd.concat(frames, ignore_index=True)
        out.attrs = {
            "source": ", ".join(f.attrs["source"] for f in frames),
            "synthetic": any(f.attrs["synthetic"] for f in frames),
        }
        return out
    path, file_class = parse_road_source(path)
    road_class = file_class or road_class
    if not path.exists():
        raise AggloInputError(f"road file {path} does not exist.")
    wanted = resolve_classes(classes)
    box = _check_bbox(bbox)
    if path.name.lower().endswith(_OSM_SUFFIXES):
        if road_class is not None or speed_col is not None:
            raise AggloInputError(
                f"{path.name}: a class per file (=class) and speed_col apply to line layers, "
                "not to OSM extracts (which carry highway and maxspeed tags)."
            )
        gdf = _read_osm(path, wanted, box, chunk_size, node_cache)
    else:
        gdf = _read_ogr(path, wanted, box, class_col, mapping, layer, road_class, speed_col)
    if speeds:
        by_class = gdf["highway"].map({str(k): str(v) for k, v in speeds.items()})
        gdf["maxspeed"] = gdf["maxspeed"].where(gdf["maxspeed"].notna(), by_class)
        gdf["maxspeed"] = gdf["maxspeed"].astype(object).where(gdf["maxspeed"].notna(), None)
    log.info("read %d road lines from %s", len(gdf), path.name)
    from agglo.reference.provenance import is_synthetic_file

    gdf.attrs = {"source": path.name, "synthetic": is_synthetic_file(path)}
    return gdf


def _check_bbox(bbox: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise AggloInputError(
            f"bbox must be (min_lon, min_lat, max_lon, max_lat); got {bbox!r}."
        ) from exc
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise AggloInputError(
            "bbox must be (min_lon, min_lat, max_lon, max_lat) in degrees with min < max; "
            f"got {bbox!r}."
        )
    return x0, y0, x1, y1


def _read_osm(
    path: Path,
    wanted: tuple[str, ...] | None,
    box: tuple[float, float, float, float] | None,
    chunk_size: int,
    node_cache: str = "flex_mem",
) -> gpd.GeoDataFrame:
    frames = list(_osm_chunks(path, wanted, box, chunk_size, node_cache))
    if not frames:
        return gpd.GeoDataFrame(
            {
                "osm_id": pd.Series(dtype=np.int64),
                **{k: pd.Series(dtype=object) for k in ROAD_COLUMNS},
            },
            geometry=gpd.GeoSeries([], crs=WGS84),
            crs=WGS84,
        )
    return pd.concat(frames, ignore_index=True)


def iter_osm_roads(
    path: str | Path,
    *,
    bbox: Sequence[float] | None = None,
    classes: str | Iterable[str] | None = DEFAULT_CLASSES,
    chunk_size: int = 100_000,
    node_cache: str = "flex_mem",
) -> Iterator[gpd.GeoDataFrame]:
    """Road lines of an OSM extract, ``chunk_size`` ways at a time (streaming).

    Same filtering and columns as :func:`read_roads`, but the extract's roads are never held
    at once: sum :func:`road_density`'s ``length_km`` and ``n_roads`` over the chunks for a
    country-scale extract (both add up over disjoint sets of lines).

    Examples
    --------
    >>> for chunk in iter_osm_roads("china-latest.osm.pbf"):  # doctest: +SKIP
    ...     print(len(chunk))
    """
    path = Path(path)
    if not path.exists():
        raise AggloInputError(f"road file {path} does not exist.")
    yield from _osm_chunks(
        path, resolve_classes(classes), _check_bbox(bbox), chunk_size, node_cache
    )


def _osm_chunks(
    path: Path,
    wanted: tuple[str, ...] | None,
    box: tuple[float, float, float, float] | None,
    chunk_size: int,
    node_cache: str = "flex_mem",
) -> Iterator[gpd.GeoDataFrame]:
    osmium = require("osmium", "osm", "reading .osm.pbf")
    tag_filter = (
        osmium.filter.KeyFilter("highway")
        if wanted is None
        else osmium.filter.TagFilter(*(("highway", c) for c in wanted))
    )
    processor = (
        osmium.FileProcessor(str(path))
        .with_locations(node_cache)
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(tag_filter)
    )
    factory = osmium.geom.WKBFactory()
    clip = shapely.box(*box) if box is not None else None
    if clip is not None:
        shapely.prepare(clip)
    buf: dict[str, list] = {k: [] for k in ("osm_id", *ROAD_COLUMNS, "wkb")}
    skipped = 0

    def flush() -> gpd.GeoDataFrame | None:
        if not buf["wkb"]:
            return None
        geoms = shapely.from_wkb(np.asarray(buf["wkb"], dtype=object))
        keep = np.ones(len(geoms), bool) if clip is None else shapely.intersects(clip, geoms)
        data = {k: np.asarray(v, dtype=object)[keep] for k, v in buf.items() if k != "wkb"}
        data["osm_id"] = data["osm_id"].astype(np.int64)
        for v in buf.values():
            v.clear()
        return gpd.GeoDataFrame(data, geometry=geoms[keep], crs=WGS84)

    try:
        for way in processor:
            try:
                wkb = factory.create_linestring(way)
            except (osmium.InvalidLocationError, RuntimeError):
                skipped += 1  # nodes missing from the extract, or fewer than two locations
                continue
            tags = way.tags
            buf["osm_id"].append(way.id)
            for k in ROAD_COLUMNS:
                buf[k].append(tags.get(k))
            buf["wkb"].append(bytes.fromhex(wkb) if isinstance(wkb, str) else wkb)
            if len(buf["wkb"]) >= chunk_size and (chunk := flush()) is not None:
                yield chunk
    except RuntimeError as exc:
        raise AggloInputError(f"cannot read OSM file {path}: {exc}") from exc
    if (chunk := flush()) is not None:
        yield chunk
    if skipped:
        log.warning(
            "%s: %d highway way(s) skipped (nodes missing from the extract or < 2 locations)",
            path.name,
            skipped,
        )


def _read_ogr(
    path: Path,
    wanted: tuple[str, ...] | None,
    box: tuple[float, float, float, float] | None,
    class_col: str,
    mapping: Mapping[str, str] | None,
    layer: str | int | None,
    road_class: str | None = None,
    speed_col: str | None = None,
) -> gpd.GeoDataFrame:
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # pyogrio's DataSourceError / DataLayerError
        raise AggloInputError(f"cannot read road layer from {path}: {exc}") from exc
    fields = list(info["fields"])
    if speed_col is not None and speed_col not in fields:
        raise AggloInputError(
            f"{path}: speed column {speed_col!r} not found (columns: {fields}); pass the column "
            "holding km/h (CLI: --speed-col) or a speed table by class (--speeds)."
        )
    if road_class is not None:
        cls = (mapping or CHINESE_CLASSES).get(road_class, road_class)
        if wanted is not None and cls not in wanted:
            warnings.warn(
                f"{path.name}: every line is class {road_class!r} (= {cls}), which the selected "
                f"classes exclude ({', '.join(wanted)}): the file contributes no road. Use "
                "classes='all' or add the class.",
                AggloDataWarning,
                stacklevel=3,
            )
        if wanted is not None and cls not in wanted:
            return _empty_roads(fields)
        wanted, mapping, class_col = None, None, ""
    has_class = class_col in fields
    if not has_class and road_class is None and (wanted is not None or mapping is not None):
        raise AggloInputError(
            f"{path}: class column {class_col!r} not found (columns: {fields}). Pass "
            "class_col= (CLI: --class-col; Geofabrik shapefiles use 'fclass'), a class for the "
            "whole file (--roads FILE=primary), or classes='all' to keep every line."
        )
    if mapping is None and has_class:
        mapping = _chinese_or_same(path, class_col, layer)
    where = None
    if wanted is not None:
        source_values = (
            list(wanted) if mapping is None else [k for k, v in mapping.items() if v in set(wanted)]
        )
        if not source_values:
            raise AggloInputError(
                f"no value of mapping maps to the selected classes {list(wanted)}; "
                f"mapping targets: {sorted(set(mapping.values()))}."  # type: ignore[union-attr]
            )
        quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in source_values)
        where = f'"{class_col}" IN ({quoted})'
    bounds = info.get("total_bounds")
    if info.get("crs") and bounds is not None and all(np.isfinite(bounds)):
        # before the bbox read: a wrong CRS label would make the box miss every line
        check_crs(tuple(bounds), info["crs"], what=f"road layer {path.name}")
    read_box = None
    if box is not None:
        read_box = box
        if info.get("crs"):
            from pyproj import CRS, Transformer

            crs = CRS.from_user_input(info["crs"])
            if not crs.equals(WGS84):
                t = Transformer.from_crs(WGS84, crs, always_xy=True)
                read_box = t.transform_bounds(*box, densify_pts=21)
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer, bbox=read_box, where=where)
    except Exception as exc:
        raise AggloInputError(f"cannot read road layer from {path}: {exc}") from exc
    if gdf.crs is None:
        raise AggloInputError(
            f"{path}: the road layer has no CRS. Add one (e.g. a .prj, or "
            "gdf.set_crs('EPSG:4326') and pass the GeoDataFrame to road_density)."
        )
    gdf = ensure_wgs84(gdf, what=f"road layer {path.name}")
    gone = shapely.is_missing(gdf.geometry.to_numpy()) | shapely.is_empty(gdf.geometry.to_numpy())
    if gone.any():
        warnings.warn(
            f"{path.name}: {int(gone.sum())} line(s) with null or empty geometry dropped "
            f"(rows {np.flatnonzero(gone)[:10].tolist()}{' ...' if gone.sum() > 10 else ''})",
            AggloDataWarning,
            stacklevel=3,
        )
        gdf = gdf[~gone]
    if road_class is not None:
        if "highway" in gdf.columns:
            gdf = gdf.rename(columns={"highway": "highway_source"})
        gdf["highway"] = CHINESE_CLASSES.get(road_class, road_class)
    if speed_col is not None:
        sp = pd.to_numeric(gdf[speed_col], errors="coerce")
        gdf["maxspeed"] = [None if not np.isfinite(v) or v <= 0 else f"{v:g}" for v in sp]
    if has_class:
        values = gdf[class_col].astype(object)
        if mapping is not None:
            values = values.map(lambda v: mapping.get(v) if v is not None else None)
        if class_col != "highway" and "highway" in gdf.columns:
            gdf = gdf.rename(columns={"highway": "highway_source"})
        gdf["highway"] = values.where(values.notna(), None)
    for col in ROAD_COLUMNS:
        if col not in gdf.columns:
            gdf[col] = None
    if wanted is not None:
        gdf = gdf[gdf["highway"].isin(wanted)]
    return gdf.reset_index(drop=True)


def _empty_roads(fields: list[str]) -> gpd.GeoDataFrame:
    cols = dict.fromkeys([*fields, *ROAD_COLUMNS])
    return gpd.GeoDataFrame(
        {c: pd.Series(dtype=object) for c in cols}, geometry=gpd.GeoSeries([], crs=WGS84)
    )


def _chinese_or_same(path: Path, class_col: str, layer: str | int | None) -> dict[str, str] | None:
    """A mapping that turns Chinese class names into OSM classes and keeps other values.

    ``None`` when the column holds no Chinese class name (nothing to map).
    """
    try:
        values = pyogrio.read_dataframe(
            path, layer=layer, columns=[class_col], read_geometry=False
        )[class_col]
    except Exception:  # the main read reports unreadable layers
        return None
    uniq = [v for v in values.dropna().unique().tolist() if isinstance(v, str)]
    if not any(v in CHINESE_CLASSES for v in uniq):
        return None
    log.info("%s: Chinese road classes mapped to OSM highway values", path.name)
    return {v: CHINESE_CLASSES.get(v, v) for v in uniq}


# ---------------------------------------------------------------------------------------
# density
# ---------------------------------------------------------------------------------------


def road_density(
    roads: gpd.GeoDataFrame | gpd.GeoSeries,
    polygons: gpd.GeoDataFrame,
    *,
    id_col: str = "adcode",
    classes: str | Iterable[str] | None = DEFAULT_CLASSES,
    class_col: str = "highway",
    progress: bool = False,
) -> pd.DataFrame:
    """Length of road and road density in each polygon, measured on the WGS84 ellipsoid.

    Lengths are geodesic (summed over each line's vertices), areas are geodesic; data in a
    projected CRS is reprojected to EPSG:4326 first, so nothing is ever measured in degrees or
    in a distorting projection. Lines wholly inside a polygon count with their full length
    without any intersection: those whose bounding box lies in cells of a coarse grid owned
    by one polygon's interior without any predicate, the others near a boundary by prepared
    ``intersects`` / ``contains_properly``; only lines touching a polygon's boundary are
    clipped exactly (as ``shapely.intersection``, which inserts the crossing vertex, in one
    vectorised step), and the clipped pieces are measured on their own lon/lat vertices.

    Parameters
    ----------
    roads
        LineStrings / MultiLineStrings with a CRS. Rows with null or empty geometry are dropped
        (logged); any other geometry type is an error.
    polygons
        Polygons / MultiPolygons with a CRS and a unique ``id_col``. Invalid polygons are
        repaired with ``shapely.make_valid`` (a ``UserWarning`` says how many). Overlapping
        polygons each count the road inside them, and a road running exactly along a shared
        border counts for both polygons (as in an overlay).
    id_col
        Identifier column of ``polygons``, copied to the output.
    classes
        Road classes to count, by ``class_col``: a list of values, a preset (``"default"``
        = :data:`DEFAULT_CLASSES`, ``"major"``) or ``"all"``/``None`` for every line (then
        ``class_col`` is not needed).
    class_col
        Class column of ``roads`` (OSM ``highway`` by default).
    progress
        Show a progress bar over polygons (tqdm).

    Returns
    -------
    pandas.DataFrame
        On the index of ``polygons``: ``id_col``, ``length_km`` (road inside the polygon),
        ``area_km2``, ``density_km_per_km2``, ``density_km_per_100km2`` (the yearbook unit of
        公路网密度), ``n_roads`` (lines touching the polygon). Density is NaN for zero-area
        polygons. ``attrs`` records the classes and counts of dropped lines.

    Raises
    ------
    AggloInputError
        Missing CRS, missing or duplicate ids, wrong geometry types, an empty road layer, or
        no road of the selected classes.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> squares = gpd.GeoDataFrame(
    ...     {"adcode": ["A", "B"]},
    ...     geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], crs=4326)
    >>> road = gpd.GeoDataFrame(
    ...     {"highway": ["primary"]}, geometry=[shapely.LineString([(0.5, 0.5), (1.5, 0.5)])],
    ...     crs=4326)
    >>> out = road_density(road, squares)
    >>> [round(float(v), 2) for v in out["length_km"]]  # 0.5 degree of longitude each at 0.5 N
    [55.66, 55.66]
    >>> round(float(out["density_km_per_100km2"].iloc[0]), 3)
    0.452
    """
    wanted = resolve_classes(classes)
    lines, full, bounds, kept = _prepare_roads(roads, wanted, class_col)
    polys, ids, index = _prepare_polygons(polygons, id_col)
    lengths, counts = _length_by_polygon(lines, polys, full=full, bounds=bounds, progress=progress)
    area = geodesic_area_km2(gpd.GeoSeries(polys, crs=WGS84)).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(area > 0, lengths / np.where(area > 0, area, 1.0), np.nan)
    out = pd.DataFrame(
        {
            id_col: ids,
            "length_km": lengths,
            "area_km2": area,
            "density_km_per_km2": density,
            "density_km_per_100km2": density * 100.0,
            "n_roads": counts,
        },
        index=index,
    )
    out.attrs.update(
        {
            "classes": "all" if wanted is None else list(wanted),
            "n_roads_used": len(lines),
            **kept,
            "method": (
                "geodesic lengths and areas on the WGS84 ellipsoid (pyproj.Geod; segments up "
                "to 50 km by the normal-section series of geodesic_segments_m, within 1e-8 m "
                "of it)"
            ),
        }
    )
    return out


@dataclass(frozen=True)
class RoadDensityResult(StageResult):
    """Road density per city (result of :func:`city_road_density`; the ``roads`` stage).

    Attributes
    ----------
    density
        :func:`road_density`'s table with ``name_zh`` and ``agglomeration_id`` of the cities
        (when they have them), ``data_status`` and ``source`` (the network's file names).
    years
        Years the one network snapshot stands for (the panel's years).
    network
        File name(s) of the road network.
    synthetic
        Whether the network is synthetic.
    n_lines
        Road lines read (before the class filter).
    id_col
        Identifier column of the cities.
    """

    density: pd.DataFrame
    years: tuple[int, ...]
    network: str
    synthetic: bool
    n_lines: int
    id_col: str = "adcode"
    #: the panel indicator this stage computes
    name: ClassVar[str] = "road_density"

    def synthetic_sources(self) -> set[str]:
        return {self.network} if self.synthetic else set()

    @property
    def values(self) -> pd.DataFrame:
        """The panel indicator: ``adcode, year, value`` (km/100 km²), the snapshot every year."""
        ids = self.density[self.id_col].to_numpy()
        density = self.density["density_km_per_100km2"].to_numpy()
        frames = [
            pd.DataFrame({"adcode": ids, "year": year, "value": density}) for year in self.years
        ]
        if not frames:
            return pd.DataFrame(columns=["adcode", "year", "value"])
        return pd.concat(frames, ignore_index=True)

    @property
    def source(self) -> str:
        """Where the indicator comes from (panel provenance)."""
        status = "SYNTHETIC" if self.synthetic else "real"
        return (
            f"agglo.road_density on {self.network} ({status}); classes "
            f"{self.density.attrs.get('classes')}; geodesic km per 100 km² (WGS84); one network "
            f"snapshot applied to every year {list(self.years)}"
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        """``road_density``, each row with ``provenance`` (``<status>:roads <network>``)."""
        status = "synthetic" if self.synthetic else "real"
        return {"road_density": self.density.assign(provenance=f"{status}:roads {self.network}")}

    def summary_lines(self) -> list[str]:
        status = "SYNTHETIC" if self.synthetic else "real"
        d = self.density
        members = d[d["agglomeration_id"].notna()] if "agglomeration_id" in d.columns else d
        return [
            f"Road density ({self.network}, {status}): {self.n_lines:,} lines, "
            f"{d['length_km'].sum():,.0f} km; member cities' median "
            f"{members['density_km_per_100km2'].median():.1f} km/100 km²"
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "classes": self.density.attrs.get("classes"),
            "method": self.density.attrs.get("method"),
            "network": self.network,
            "years": list(self.years),
        }


def city_road_density(
    lines: gpd.GeoDataFrame,
    cities: gpd.GeoDataFrame,
    options: RoadsOptions | None = None,
    *,
    years: Iterable[int] = (),
    id_col: str = "adcode",
    network: str | None = None,
    synthetic: bool | None = None,
    progress: bool = False,
) -> RoadDensityResult:
    """Road density of every city from one road network (the ``roads`` stage).

    Parameters
    ----------
    lines
        Road lines, e.g. from :func:`read_roads` (whose ``attrs`` name the files and say
        whether they are synthetic).
    cities
        City polygons with a unique ``id_col`` (``name_zh`` and ``agglomeration_id`` are copied
        to the table when present).
    options
        :class:`RoadsOptions` (its ``classes`` select the roads).
    years
        Years the network snapshot stands for (the panel indicator repeats it each year).
    id_col
        Identifier column of ``cities``.
    network, synthetic
        Name and status of the network (default: from ``lines.attrs``, else ``"roads"`` and
        real).
    progress
        Progress bar over the cities.

    Returns
    -------
    RoadDensityResult

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> cities = gpd.GeoDataFrame({"adcode": ["A"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    >>> road = gpd.GeoDataFrame({"highway": ["primary"]},
    ...     geometry=[shapely.LineString([(0.5, 0.5), (1.5, 0.5)])], crs=4326)
    >>> res = city_road_density(road, cities, years=[2020])
    >>> round(float(res.values["value"].iloc[0]), 3), res.tables()["road_density"]["data_status"][0]
    (0.452, 'real')
    """
    options = options or RoadsOptions()
    network = network or lines.attrs.get("source") or "roads"
    synthetic = bool(lines.attrs.get("synthetic", False)) if synthetic is None else synthetic
    density = road_density(lines, cities, id_col=id_col, classes=options.classes, progress=progress)
    table = density.reset_index(drop=True)
    for pos, col in enumerate(("name_zh", "agglomeration_id"), start=1):
        if col in cities.columns:
            table.insert(pos, col, cities[col].to_numpy())
    table["data_status"] = "synthetic" if synthetic else "real"
    table["source"] = network
    table.attrs = dict(density.attrs)
    log.info("road density from %s: one snapshot for years %s", network, list(years))
    return RoadDensityResult(
        density=table,
        years=tuple(int(y) for y in years),
        network=network,
        synthetic=synthetic,
        n_lines=len(lines),
        id_col=id_col,
    )


def _prepare_roads(
    roads: gpd.GeoDataFrame | gpd.GeoSeries, wanted: tuple[str, ...] | None, class_col: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, int]]:
    """The lines to measure (nulls and empties dropped), their geodesic km, their bounds
    (``shapely.bounds``; None unless every line is a two-point LineString) and row counts."""
    if isinstance(roads, gpd.GeoSeries):
        if wanted is not None:
            raise AggloInputError(
                "roads is a GeoSeries without a class column; pass a GeoDataFrame with "
                f"{class_col!r} or classes='all'."
            )
        roads = gpd.GeoDataFrame(geometry=roads, crs=roads.crs)
    if not isinstance(roads, gpd.GeoDataFrame):
        raise AggloInputError(
            f"roads must be a GeoDataFrame of lines; got {type(roads).__name__}. "
            "Read files with agglo.read_roads(path)."
        )
    if len(roads) == 0:
        raise AggloInputError("the road layer is empty (0 rows); nothing to measure.")
    roads = ensure_wgs84(roads, what="roads")
    n_in = len(roads)
    if wanted is not None:
        if class_col not in roads.columns:
            raise AggloInputError(
                f"roads have no class column {class_col!r} (columns: "
                f"{[c for c in roads.columns if c != roads.geometry.name]}); pass class_col= "
                "or classes='all'."
            )
        selected = roads[roads[class_col].isin(wanted)]
        if len(selected) == 0:
            present = sorted(map(str, roads[class_col].dropna().unique()))
            raise AggloInputError(
                f"no road of classes {list(wanted)} in the layer; classes present in "
                f"{class_col!r}: {present[:30]}. Pass classes= with some of them or 'all'."
            )
        roads = selected
    geoms = roads.geometry.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    types = shapely.get_type_id(geoms)
    bad = ~missing & ~np.isin(types, list(_LINE_TYPES))
    if bad.any():
        found = pd.Series(types[bad]).map(_TYPE_NAMES).value_counts()
        raise ValidationError(
            [f"{n} row(s) of type {t}" for t, n in found.items()]
            + [
                "roads must be LineString or MultiLineString (explode collections, or take the "
                "boundary of polygons explicitly)"
            ],
            source="roads",
        )
    geoms = geoms[~missing]
    # the full lengths (and boxes) are measured here, on the coordinates read for the
    # finiteness check
    full, bounds = _lengths_km(geoms, types[~missing], with_bounds=True)
    if full is None:
        raise AggloInputError("roads contain NaN or infinite coordinates; fix or drop them.")
    if missing.any():
        log.info("roads: %d row(s) with null or empty geometry dropped", int(missing.sum()))
    return (
        geoms,
        full,
        bounds,
        {
            "n_roads_input": n_in,
            "n_roads_other_class": n_in - len(roads),
            "n_roads_empty_geometry": int(missing.sum()),
        },
    )


def _prepare_polygons(
    polygons: gpd.GeoDataFrame, id_col: str
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    if not isinstance(polygons, gpd.GeoDataFrame):
        raise AggloInputError(f"polygons must be a GeoDataFrame; got {type(polygons).__name__}.")
    if len(polygons) == 0:
        raise AggloInputError("the polygon layer is empty (0 rows).")
    problems = []
    if id_col not in polygons.columns:
        problems.append(
            f"id column {id_col!r} not found (columns: "
            f"{[c for c in polygons.columns if c != polygons.geometry.name]}); pass id_col="
        )
    else:
        ids = polygons[id_col]
        if ids.isna().any():
            problems.append(f"{int(ids.isna().sum())} polygon(s) have no {id_col}")
        dup = ids[ids.duplicated()].unique().tolist()
        if dup:
            problems.append(f"duplicate {id_col} value(s): {dup[:10]} (dissolve first)")
    polygons = ensure_wgs84(polygons, what="polygons")
    geoms = polygons.geometry.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    types = shapely.get_type_id(geoms)
    bad = ~missing & ~np.isin(types, (3, 6))
    if bad.any():
        found = pd.Series(types[bad]).map(_TYPE_NAMES).value_counts().to_dict()
        problems.append(f"polygons must be Polygon/MultiPolygon; found {found}")
    if problems:
        raise ValidationError(problems, source="polygons")
    invalid = ~missing & ~shapely.is_valid(geoms)
    if invalid.any():
        warnings.warn(
            f"{int(invalid.sum())} invalid polygon(s) repaired with shapely.make_valid "
            "(check self-intersections in the boundaries)",
            UserWarning,
            stacklevel=3,
        )
        geoms = geoms.copy()
        fixed = shapely.make_valid(geoms[invalid])
        # keep only the polygonal part of the repaired geometry
        geoms[invalid] = [
            shapely.union_all([p for p in shapely.get_parts(g) if shapely.get_type_id(p) in (3, 6)])
            for g in fixed
        ]
    return geoms, polygons[id_col].to_numpy(), polygons.index


def _length_by_polygon(
    lines: np.ndarray,
    polys: np.ndarray,
    *,
    full: np.ndarray | None = None,
    bounds: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic km of ``lines`` inside each polygon and the number of lines touching it.

    Three tiers: lines whose bounding box lies in cells of a coarse grid that are wholly inside
    one polygon (:func:`_interior_owner`) count with their full length without any geometry
    predicate; the remaining lines wholly inside a polygon (prepared ``contains_properly``)
    too; the lines crossing a boundary are clipped all at once by :func:`_clipped_km` instead
    of one GEOS overlay per line (whose cost grows with the polygon's vertices). ``full`` is
    the geodesic km of each whole line (:func:`_geodesic_km`), computed when not given, and
    ``bounds`` their ``shapely.bounds`` (likewise).
    """
    if full is None:
        full = _geodesic_km(lines)
    polys = polys.copy()
    shapely.prepare(polys)
    total = np.zeros(len(polys))
    count = np.zeros(len(polys), dtype=np.int64)
    owner = _interior_owner(lines, polys, bounds)
    fast = owner >= 0
    total += np.bincount(owner[fast], weights=full[fast], minlength=len(polys))
    count += np.bincount(owner[fast], minlength=len(polys))
    rest_idx = np.flatnonzero(~fast)
    rest_lines = lines[rest_idx]
    tree = shapely.STRtree(rest_lines)
    edge_poly: list[np.ndarray] = []
    edge_line: list[np.ndarray] = []
    it: Iterable[int] = range(len(polys))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(polys), desc="road density", unit="polygon")
    for j in it:
        poly = polys[j]
        if poly is None or shapely.is_empty(poly):
            continue
        cand = tree.query(poly)  # envelope candidates
        if not len(cand):
            continue
        # intersects first: most candidates near a boundary do not touch the polygon
        hit = cand[shapely.intersects(poly, rest_lines[cand])]
        inside = shapely.contains_properly(poly, rest_lines[hit])  # no intersection needed
        touch = hit[~inside]
        total[j] += full[rest_idx[hit[inside]]].sum()
        count[j] += len(hit)
        edge_line.append(rest_idx[touch])
        edge_poly.append(np.full(len(touch), j, dtype=np.int64))
    if edge_line:
        pair_poly, pair_line = np.concatenate(edge_poly), np.concatenate(edge_line)
        km = _clipped_km(lines[pair_line], pair_poly, polys)
        total += np.bincount(pair_poly, weights=km, minlength=len(polys))
    return total, count


#: most grid cells of :func:`_interior_owner`, and fewest lines for which it is used
_MAX_CELLS = 4_000_000
_MIN_LINES_GRID = 1000
#: grid cell side of :func:`_interior_owner`, in median line extents (1: fewest CPU-s on
#: benchmarks/bench_roads.py; finer grids cost more to build than they save)
_CELL_EXTENTS = 1.0


def _interior_owner(
    lines: np.ndarray, polys: np.ndarray, bounds: np.ndarray | None = None
) -> np.ndarray:
    """For each line, the polygon whose interior surely contains it, else -1.

    ``bounds`` are ``shapely.bounds(lines)`` if already known (they are overwritten).

    A coarse lon/lat grid (cells of :data:`_CELL_EXTENTS` median line extents, at most
    :data:`_MAX_CELLS` cells) is laid over the polygons;
    every cell touched by a boundary edge (closed cell, edges cut to half a cell) is marked.
    The unmarked cells form connected regions that no boundary crosses, so each lies in the
    interior of the same polygons throughout: one point-in-polygon test per region decides,
    and regions inside exactly one polygon own their cells. A line whose bounding box covers
    only cells owned by polygon j lies in the interior of j and of no other polygon
    (``contains_properly`` holds; no other polygon touches it). A box covers only cells of one
    owner exactly when it holds no cell of owner -1 (counted with one summed-area table:
    unmarked cells in a box are 4-connected, hence in one region).
    """
    from scipy import ndimage

    owner = np.full(len(lines), -1, dtype=np.int64)
    present = ~(shapely.is_missing(polys) | shapely.is_empty(polys))
    if len(lines) < _MIN_LINES_GRID or not present.any():
        return owner
    lb = shapely.bounds(lines) if bounds is None else bounds
    sample = lb[:: max(1, len(lb) // 100_000)]  # the median extent of about 100,000 lines
    ext = np.maximum(sample[:, 2] - sample[:, 0], sample[:, 3] - sample[:, 1])
    x0, y0, x1, y1 = shapely.total_bounds(polys[present])
    h = max(
        _CELL_EXTENTS * float(np.median(ext)), math.sqrt((x1 - x0) * (y1 - y0) / _MAX_CELLS), 1e-6
    )
    nx, ny = int((x1 - x0) / h) + 1, int((y1 - y0) / h) + 1
    # boundary edges, cut into pieces of at most h/2, marked with their (widened) boxes
    rings = shapely.get_rings(shapely.get_parts(polys[present]))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    e0, e1 = xy[:-1][same], xy[1:][same]
    n_piece = np.maximum(1, np.ceil(np.abs(e1 - e0).max(axis=1) / (h / 2))).astype(np.int64)
    p0, p1 = e0, e1
    long = n_piece > 1
    if long.any():  # only edges longer than half a cell are cut
        n_long = n_piece[long]
        k = np.repeat(np.flatnonzero(long), n_long)
        step = np.arange(len(k)) - np.repeat(np.cumsum(n_long) - n_long, n_long)
        f0 = (step / n_piece[k])[:, None]
        f1 = ((step + 1) / n_piece[k])[:, None]
        p0 = np.concatenate([e0[~long], e0[k] + (e1[k] - e0[k]) * f0])
        p1 = np.concatenate([e1[~long], e0[k] + (e1[k] - e0[k]) * f1])
    eps = 1e-9 * max(1.0, abs(x0), abs(x1), abs(y0), abs(y1))
    lo = np.minimum(p0, p1) - eps
    hi = np.maximum(p0, p1) + eps
    c0 = np.clip(np.floor((lo[:, 0] - x0) / h).astype(np.int64), 0, nx - 1)
    c1 = np.clip(np.floor((hi[:, 0] - x0) / h).astype(np.int64), 0, nx - 1)
    r0 = np.clip(np.floor((lo[:, 1] - y0) / h).astype(np.int64), 0, ny - 1)
    r1 = np.clip(np.floor((hi[:, 1] - y0) / h).astype(np.int64), 0, ny - 1)
    marked = np.zeros((ny, nx), dtype=bool)
    for rr in (r0, r1):
        for cc in (c0, c1):
            marked[rr, cc] = True
    spans = (c1 - c0 > 1) | (r1 - r0 > 1)  # only with rounding at a cell's edge
    for i in np.flatnonzero(spans):
        marked[r0[i] : r1[i] + 1, c0[i] : c1[i] + 1] = True
    regions, n_regions = ndimage.label(~marked)
    if n_regions == 0:
        return owner
    # one cell centre per region: which polygons contain it
    # any cell of a region will do (its centre is inside or outside each polygon as the whole
    # region is): the cell written last for its label, without sorting the grid
    first = np.zeros(n_regions + 1, dtype=np.int64)
    first[regions.ravel()] = np.arange(regions.size)
    cy = y0 + (first[1:] // nx + 0.5) * h
    cx = x0 + (first[1:] % nx + 0.5) * h
    pts = shapely.points(cx, cy)
    idx = np.flatnonzero(present)
    pi, pj = shapely.STRtree(polys[idx]).query(pts, predicate="intersects")
    n_in = np.bincount(pi, minlength=n_regions)
    region_owner = np.full(n_regions + 1, -1, dtype=np.int64)
    one = n_in[pi] == 1
    region_owner[pi[one] + 1] = idx[pj[one]]
    # owners and a summed-area table of the cells of owner -1 (marked, or in a region inside no
    # or several polygons), both on (ny + 1) x (nx + 1) so that one flat index serves both
    w = nx + 1
    cell_owner = np.full((ny + 1, w), -1, dtype=np.int32)
    cell_owner[:ny, :nx] = region_owner[regions]  # -1 on marked cells (label 0)
    itype = np.int32 if (ny + 1) * w < 2**31 else np.int64  # counts and flat indices
    n_bad = np.zeros((ny + 1, w), dtype=itype)
    n_bad[1:, 1:] = (cell_owner[:ny, :nx] < 0).cumsum(0, dtype=itype).cumsum(1, dtype=itype)
    # a box holding no cell of owner -1 is a 4-connected set of unmarked cells, hence in one
    # region: its lower-left cell's owner owns it
    cells = lb  # the line boxes in cell units, in place
    cells -= (x0, y0, x0, y0)
    cells /= h
    np.floor(cells, out=cells)
    with np.errstate(invalid="ignore"):
        ok = (cells[:, 0] >= 0) & (cells[:, 1] >= 0) & (cells[:, 2] < nx) & (cells[:, 3] < ny)
    if not ok.all():
        cells[~ok] = 0
    c = cells.astype(itype)
    lo = c[:, 1] * w + c[:, 0]
    hi = (c[:, 3] + 1) * w + c[:, 2] + 1
    width = c[:, 2] + 1 - c[:, 0]
    flat = n_bad.ravel()
    good = ok & (flat[hi] - flat[hi - width] - flat[lo + width] + flat[lo] == 0)
    owner[good] = cell_owner.ravel()[lo[good]]
    return owner


def _clipped_km(lines: np.ndarray, poly_of: np.ndarray, polys: np.ndarray) -> np.ndarray:
    """Geodesic km of ``lines[k]`` inside ``polys[poly_of[k]]``, for every pair ``k`` at once.

    Equal to measuring ``shapely.intersection(line, polygon)`` on its vertices: each line is
    split into its segments, every segment is cut where it meets an edge of its polygon's
    boundary (candidate edges from an STRtree of the bounding boxes of runs of :data:`_RUN`
    consecutive boundary edges; crossing parameters computed in closed form, planar in lon/lat
    as GEOS does), and the pieces whose midpoint lies in the
    closed polygon (``intersects_xy``: a piece along the boundary counts, as in an overlay)
    are measured on the ellipsoid. ``polys`` must be prepared.
    """
    out = np.zeros(len(lines))
    if not len(lines):
        return out
    # the segments of every line, with the pair they belong to
    if (shapely.get_type_id(lines) == 1).all():  # LineStrings: no parts to take apart
        parts, part_pair = lines, np.arange(len(lines))
    else:
        parts, part_pair = shapely.get_parts(lines, return_index=True)
    xy, vpart = shapely.get_coordinates(parts, return_index=True)
    same = vpart[1:] == vpart[:-1]
    a, b = xy[:-1][same], xy[1:][same]
    seg_pair = part_pair[vpart[:-1][same]]
    seg_poly = poly_of[seg_pair]
    # the boundary edges of the polygons concerned, in runs of _RUN consecutive edges
    used = np.unique(poly_of)
    parts, part_poly = shapely.get_parts(polys[used], return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    exy, ering = shapely.get_coordinates(rings, return_index=True)
    esame = ering[1:] == ering[:-1]
    e0, e1 = exy[:-1][esame], exy[1:][esame]
    edge_ring = ering[:-1][esame]
    edge_poly = used[part_poly[ring_part[edge_ring]]]
    # run id: a new run every _RUN edges of a ring (edges of a ring are consecutive)
    first = np.r_[True, edge_ring[1:] != edge_ring[:-1]]
    start_of_ring = np.maximum.accumulate(np.where(first, np.arange(len(e0)), 0))
    new_run = first | ((np.arange(len(e0)) - start_of_ring) % _RUN == 0)
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, len(e0)])
    # a run as the diagonal of its bounding box: the tree only needs its envelope
    lo = np.minimum.reduceat(np.minimum(e0, e1), run_start, axis=0)
    hi = np.maximum.reduceat(np.maximum(e0, e1), run_start, axis=0)
    runs = shapely.linestrings(np.stack([lo, hi], axis=1))
    # segment-run pairs whose boxes meet (same polygon), expanded to their edges
    seg_part = vpart[:-1][same]
    if len(seg_part) == len(parts) and (seg_part == np.arange(len(parts))).all():
        segs = parts  # two-point lines: each is its own segment (the tree needs only boxes)
    else:
        segs = shapely.linestrings(np.stack([a, b], axis=1))
    si, ri = shapely.STRtree(runs).query(segs)
    mine = edge_poly[run_start[ri]] == seg_poly[si]
    si, ri = si[mine], ri[mine]
    reps = run_len[ri]
    si = np.repeat(si, reps)
    ei = np.repeat(run_start[ri], reps) + (
        np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    )
    r = b[si] - a[si]
    s = e1[ei] - e0[ei]
    qp = e0[ei] - a[si]
    den = r[:, 0] * s[:, 1] - r[:, 1] * s[:, 0]
    cross = den != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cross = (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / den
        u_cross = (qp[:, 0] * r[:, 1] - qp[:, 1] * r[:, 0]) / den
        # collinear overlap: the edge's end points, projected on the segment
        rr = (r * r).sum(axis=1)
        t_q0 = (qp * r).sum(axis=1) / rr
        t_q1 = ((qp + s) * r).sum(axis=1) / rr
    # cuts where an edge meets the segment, and at the ends of (nearly) parallel edges; a
    # spurious cut is harmless (every piece is tested), a missing one is not
    tol = 1e-9
    cross &= (t_cross >= -tol) & (t_cross <= 1 + tol) & (u_cross >= -tol) & (u_cross <= 1 + tol)
    col = np.abs(den) <= tol * np.sqrt(rr * (s * s).sum(axis=1))
    n = len(a)
    cut_seg = np.concatenate([np.arange(n), np.arange(n), si[cross], si[col], si[col]])
    cut_t = np.concatenate([np.zeros(n), np.ones(n), t_cross[cross], t_q0[col], t_q1[col]])
    cut_t = np.clip(np.nan_to_num(cut_t, nan=0.0), 0.0, 1.0)
    order = np.lexsort((cut_t, cut_seg))
    cut_seg, cut_t = cut_seg[order], cut_t[order]
    piece = (cut_seg[1:] == cut_seg[:-1]) & (cut_t[1:] > cut_t[:-1])
    k = cut_seg[:-1][piece]
    t0, t1 = cut_t[:-1][piece], cut_t[1:][piece]
    d = b[k] - a[k]
    mid = a[k] + d * ((t0 + t1) / 2)[:, None]
    keep = shapely.intersects_xy(polys[seg_poly[k]], mid[:, 0], mid[:, 1])
    k, t0, t1, d = k[keep], t0[keep], t1[keep], d[keep]
    p0 = np.where((t0 == 0)[:, None], a[k], a[k] + d * t0[:, None])
    p1 = np.where((t1 == 1)[:, None], b[k], a[k] + d * t1[:, None])
    dist = geodesic_segments_m(p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1])
    return np.bincount(seg_pair[k], weights=dist, minlength=len(lines)) / 1000.0


def _geodesic_km(geoms: np.ndarray) -> np.ndarray:
    """Geodesic length of each lon/lat geometry in km (points and empties give 0).

    Plain LineStrings (almost every road) are measured straight from their coordinate array
    (:func:`~agglo.measures.geodesy.geodesic_steps_m` over all consecutive vertex pairs); multi-part geometries and
    collections go through :func:`agglo.measures.geodesy.geodesic_length_km`.
    """
    out, _ = _lengths_km(geoms)
    if out is None:
        raise AggloInputError("lines contain NaN or infinite coordinates; fix or drop them.")
    return out


def _lengths_km(
    geoms: np.ndarray, types: np.ndarray | None = None, *, with_bounds: bool = False
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`_geodesic_km` of ``geoms`` (None if a coordinate is not finite) and, with
    ``with_bounds`` and only two-point LineStrings, their ``shapely.bounds`` (else None).

    ``types`` are ``shapely.get_type_id(geoms)`` if already known.
    """
    out = np.zeros(len(geoms))
    bounds = None
    if len(geoms) == 0:
        return out, bounds
    types = shapely.get_type_id(geoms) if types is None else types
    simple = np.isin(types, (1, 2))  # LineString, LinearRing
    n = int(simple.sum())
    if n:
        coords, idx = shapely.get_coordinates(
            geoms if n == len(geoms) else geoms[simple], return_index=True
        )
        if not np.isfinite(coords).all():
            return None, None
        if len(coords) > 1:
            same = idx[1:] == idx[:-1]
            dist = geodesic_steps_m(coords[:, 0], coords[:, 1], same)
            if len(coords) == 2 * n and len(dist) == n:  # all two-point lines: one step each
                out[simple] = dist / 1000.0
                if with_bounds and n == len(geoms):
                    ends = coords.reshape(n, 2, 2)
                    bounds = np.empty((n, 4))
                    np.minimum(ends[:, 0], ends[:, 1], out=bounds[:, :2])
                    np.maximum(ends[:, 0], ends[:, 1], out=bounds[:, 2:])
            else:
                out[simple] = np.bincount(idx[:-1][same], weights=dist, minlength=n) / 1000.0
    other = ~simple & np.isin(types, (5, 7))  # MultiLineString, GeometryCollection
    if other.any():
        if not np.isfinite(shapely.get_coordinates(geoms[other])).all():
            return None, None
        out[other] = geodesic_length_km(gpd.GeoSeries(geoms[other], crs=WGS84)).to_numpy()
    return out, bounds
