"""High-speed-rail access: a city has HSR in year t if a high-speed station in it opened by t.

Inputs, in any of these forms (DESIGN.md "Spatial measures"):

- a **stations table** with an opening date (``opened``) and either coordinates (``lon``/``lat``
  columns or point geometries: point-in-polygon), an ``adcode`` column, or a ``city`` name;
- a **rail-line table** such as RailwayVIS's ``railways.csv`` (GBK; 线路, 线路类型, 现设计时速,
  建成年份 like ``2011.6.30``, 途径站点 joined by ``-``), parsed by :func:`read_railways` into
  one row per (line, station); a line is high-speed when its design speed is at least
  ``min_speed_kmh`` (250 km/h by default; the line type 高速铁路 decides when the speed is
  missing);
- **line geometries** (a GeoDataFrame of LineStrings with ``opened`` and optionally
  ``speed_kmh``): a city counts when a high-speed line crosses it. Lines also cross cities where
  they do not stop, so this form gives an upper bound; stations give the method's measure.

Station and city names are matched to the polygons' ``name_zh`` with or without the 市 suffix,
then to county names (a station named after a county counts for the county's city), then by
unique prefix (恩施 -> 恩施土家族苗族自治州), and finally without a trailing direction
character (南京南 -> 南京). Unmatched names are listed in ``attrs["unmatched"]`` (stations
outside the polygons are expected there).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from agglo.errors import AggloInputError, ValidationError
from agglo.measures.geodesy import WGS84, ensure_wgs84
from agglo.options import Options, choice_problem, option
from agglo.results import StageResult

__all__ = [
    "HSR_RULES",
    "HSROptions",
    "HSRResult",
    "city_hsr",
    "hsr_access",
    "match_city_names",
    "parse_opening_date",
    "read_railways",
    "read_stations",
]

log = logging.getLogger(__name__)

#: how :func:`read_railways` decides that a line is high-speed
HSR_RULES = ("speed", "type", "either")


@dataclass(frozen=True)
class HSROptions(Options):
    """Options of the ``hsr`` stage (``[hsr]`` section, ``agglo hsr`` flags).

    Examples
    --------
    >>> HSROptions(rule="either").min_speed_kmh
    250.0
    """

    section = "hsr"
    station_to_city: str | None = option(
        None, help="JSON file: station -> city name (rail-line tables)."
    )
    min_speed_kmh: float = option(
        250.0,
        help="Design speed from which a line is high-speed.",
        unit="km/h",
        minimum=0,
        exclusive_minimum=True,
    )
    rule: str = option(
        "speed",
        help="speed (design speed), type (line type 高速) or either.",
        choices=HSR_RULES,
    )
    encoding: str | None = option(None, help="CSV encoding (default: UTF-8, then GB18030).")


# column aliases of rail-line tables (first match wins)
_LINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "line": ("线路", "线路名称", "line", "name"),
    "type": ("线路类型", "类型", "type"),
    "speed_kmh": ("现设计时速", "设计时速", "speed_kmh", "design_speed", "speed"),
    "opened": ("建成年份", "开通时间", "开通日期", "opened", "opening_date", "date"),
    "start": ("起点", "start"),
    "end": ("终点", "end"),
    "stations": ("途径站点", "途经站点", "stations"),
}
_STATION_ALIASES: dict[str, tuple[str, ...]] = {
    "opened": ("opened", "opening_date", "date", "开通时间", "开通日期", "开站日期", "建成年份"),
    "lon": ("lon", "lng", "longitude", "x", "经度"),
    "lat": ("lat", "latitude", "y", "纬度"),
    "city": ("city", "城市", "所在城市", "city_zh"),
    "station": ("station", "站名", "车站", "name"),
}
_MISSING = {"", "null", "none", "n/a", "na", "nan", "-", "—"}
_DATE_RE = re.compile(
    r"^\s*(?P<y>\d{4})\s*(?:[.\-/年]\s*(?P<m>\d{1,2})\s*(?:[.\-/月]\s*(?P<d>\d{1,2})\s*日?)?\s*月?)?"
    r"\s*年?\s*$"
)
_DIRECTIONS = "东西南北"


def parse_opening_date(value: object) -> pd.Timestamp:
    """Parse an opening date written as in Chinese rail tables.

    Accepts ``2011.6.30``, ``2011.6``, ``2011``, ``2011-06-30``, ``2011/6/30``,
    ``2011年6月30日``, ``2011年6月``, ``2011年``, dates and timestamps, and integer years. A
    missing month or day is taken as 1 (only the year matters for the HSR flag).

    Returns
    -------
    pandas.Timestamp
        The date, or ``NaT`` for a missing value (``""``, ``NULL``, ``N/A``, None).

    Raises
    ------
    AggloInputError
        Text that is not one of these forms, or an impossible date.

    Examples
    --------
    >>> [str(parse_opening_date(v).date()) for v in ["2011.6.30", "2011.6", "2011年6月30日"]]
    ['2011-06-30', '2011-06-01', '2011-06-30']
    >>> parse_opening_date("N/A") is pd.NaT
    True
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return pd.NaT
    if isinstance(value, pd.Timestamp):
        return value
    if hasattr(value, "year") and hasattr(value, "month"):
        return pd.Timestamp(value)  # date / datetime
    if isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    ):
        return pd.Timestamp(year=int(value), month=1, day=1)
    text = str(value).strip()
    if text.lower() in _MISSING:
        return pd.NaT
    m = _DATE_RE.match(text)
    if m is None:
        raise AggloInputError(
            f"cannot read the date {text!r}; use e.g. 2011.6.30, 2011-06-30, 2011年6月30日 or 2011."
        )
    try:
        return pd.Timestamp(year=int(m["y"]), month=int(m["m"] or 1), day=int(m["d"] or 1))
    except ValueError as exc:
        raise AggloInputError(f"impossible date {text!r}: {exc}") from exc


def _read_csv_any(path: Path, encoding: str | None) -> tuple[pd.DataFrame, str]:
    encodings = [encoding] if encoding else ["utf-8-sig", "gb18030"]
    last: Exception | None = None
    for enc in encodings:
        try:
            df = pd.read_csv(path, dtype=str, encoding=enc, keep_default_na=False)
            return df, enc
        except UnicodeDecodeError as exc:
            last = exc
    raise AggloInputError(
        f"{path}: cannot decode the table with {encodings}; pass encoding= ({last})."
    )


def _find(columns: Iterable[str], aliases: Sequence[str]) -> str | None:
    lower = {str(c).strip().lower(): c for c in columns}
    for a in aliases:
        if a.lower() in lower:
            return lower[a.lower()]
    return None


def _load_station_map(station_to_city: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    if station_to_city is None:
        return {}
    if isinstance(station_to_city, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in station_to_city.items()}
    p = Path(station_to_city)
    if not p.is_file():
        raise AggloInputError(f"station-to-city file {p} does not exist.")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
        if isinstance(data, str):  # some files hold a JSON-encoded JSON string
            data = json.loads(data)
    except json.JSONDecodeError as exc:
        raise AggloInputError(f"{p}: not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise AggloInputError(f"{p}: expected a JSON object station -> city.")
    return {str(k).strip(): str(v).strip() for k, v in data.items()}


def read_railways(
    path: str | Path,
    *,
    encoding: str | None = None,
    min_speed_kmh: float = 250,
    station_to_city: Mapping[str, str] | str | Path | None = None,
    rule: str = "speed",
) -> pd.DataFrame:
    """Parse a rail-line table into one row per (line, station).

    Parameters
    ----------
    path
        CSV with columns 线路, 线路类型, 现设计时速, 建成年份, 起点, 终点, 途径站点 (or the
        English ``line, type, speed_kmh, opened, start, end, stations``). Stations are joined by
        ``-``; a missing station list (``NULL``) falls back to the termini.
    encoding
        Text encoding; by default UTF-8 is tried, then GB18030 (a superset of GBK).
    min_speed_kmh
        Design speed from which a line counts as high-speed.
    station_to_city
        Station -> city name, as a mapping or a JSON file (e.g. RailwayVIS's
        ``station2city.json``). Stations not in it keep their own name as ``city``.
    rule
        ``"speed"``: design speed >= ``min_speed_kmh`` (line type 高速 when the speed is
        missing); ``"type"``: line type contains 高速; ``"either"``: one of both.

    Returns
    -------
    pandas.DataFrame
        ``line, station, city, opened`` (Timestamp), ``opened_year`` (Int64), ``speed_kmh``
        (float, NaN when missing), ``type``, ``is_hsr`` (bool), ``row`` (1-based data row).

    Raises
    ------
    ValidationError
        Missing columns or unreadable dates, all listed with their rows.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
    >>> _ = p.write_bytes("线路,线路类型,现设计时速,建成年份,起点,终点,途径站点\\n"
    ...     "合蚌高铁,高速铁路,350,2012.10.16,合肥,蚌埠南,合肥-淮南东-蚌埠南\\n".encode("gbk"))
    >>> r = read_railways(p)
    >>> r[["station", "opened_year", "is_hsr"]].values.tolist()
    [['合肥', 2012, True], ['淮南东', 2012, True], ['蚌埠南', 2012, True]]
    """
    if problem := choice_problem("rule", rule, HSR_RULES):
        raise AggloInputError(problem)
    path = Path(path)
    if not path.is_file():
        raise AggloInputError(f"railway table {path} does not exist.")
    raw, enc = _read_csv_any(path, encoding)
    cols = {k: _find(raw.columns, v) for k, v in _LINE_COLUMNS.items()}
    problems = []
    if cols["opened"] is None:
        problems.append(f"no opening-date column (one of {list(_LINE_COLUMNS['opened'])})")
    if cols["stations"] is None and (cols["start"] is None or cols["end"] is None):
        problems.append(f"no station column (one of {list(_LINE_COLUMNS['stations'])})")
    if cols["speed_kmh"] is None and cols["type"] is None:
        problems.append("neither a design-speed nor a line-type column: cannot tell HSR lines")
    if problems:
        raise ValidationError(problems, source=str(path))
    mapping = _load_station_map(station_to_city)
    rows = []
    for i, rec in enumerate(raw.to_dict("records"), start=1):

        def get(k: str, rec: dict = rec) -> str:
            return str(rec[cols[k]]).strip() if cols[k] is not None else ""

        line = get("line") or f"row {i}"
        try:
            opened = parse_opening_date(get("opened"))
        except AggloInputError as exc:
            problems.append(f"row {i} ({line}), column {cols['opened']}: {exc}")
            continue
        speed = pd.to_numeric(get("speed_kmh"), errors="coerce") if cols["speed_kmh"] else np.nan
        kind = get("type")
        stations_text = get("stations")
        if stations_text.lower() in _MISSING:
            names = [get("start"), get("end")]
        else:
            names = stations_text.split("-")
        seen: list[str] = []
        for name in (n.strip() for n in names):
            if name and name.lower() not in _MISSING and name not in seen:
                seen.append(name)
        for name in seen:
            rows.append(
                {
                    "line": line,
                    "station": name,
                    "city": mapping.get(name, name),
                    "opened": opened,
                    "speed_kmh": float(speed),
                    "type": kind,
                    "row": i,
                }
            )
    if problems:
        raise ValidationError(problems, source=str(path))
    out = pd.DataFrame(
        rows, columns=["line", "station", "city", "opened", "speed_kmh", "type", "row"]
    )
    out["opened"] = pd.to_datetime(out["opened"])
    out.insert(4, "opened_year", out["opened"].dt.year.astype("Int64"))
    by_type = out["type"].str.contains("高速|high", case=False, regex=True, na=False)
    by_speed = out["speed_kmh"] >= min_speed_kmh
    if rule == "speed":
        is_hsr = by_speed.where(out["speed_kmh"].notna(), by_type)
    elif rule == "type":
        is_hsr = by_type
    else:
        is_hsr = by_speed | by_type
    out.insert(7, "is_hsr", is_hsr.astype(bool))
    out.attrs.update({"source": str(path), "encoding": enc, "min_speed_kmh": min_speed_kmh})
    log.info(
        "%s: %d lines, %d station rows, %d high-speed (%s rule, >= %g km/h)",
        path.name,
        out["line"].nunique(),
        len(out),
        int(out["is_hsr"].sum()),
        rule,
        min_speed_kmh,
    )
    return out


def read_stations(
    path: str | Path, *, encoding: str | None = None, **kwargs: object
) -> pd.DataFrame:
    """Read an HSR input file: a rail-line table, a stations table, or a spatial layer.

    A CSV whose header has a station-list column (途径站点 / ``stations``) is read with
    :func:`read_railways` (``kwargs`` are passed on); any other CSV is read as a stations table
    (UTF-8 or GB18030); other files (GeoPackage, GeoJSON, shapefile) with pyogrio.

    ``attrs`` name the file (``source``) and say whether it is synthetic (``synthetic``).

    Examples
    --------
    >>> stations = read_stations("hsr_stations.csv")  # doctest: +SKIP
    """
    from agglo.reference.provenance import is_synthetic_file

    path = Path(path)
    if not path.is_file():
        raise AggloInputError(f"stations file {path} does not exist.")
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        head, _ = _read_csv_any(path, encoding)
        if _find(head.columns, _LINE_COLUMNS["stations"]) is not None:
            table = read_railways(path, encoding=encoding, **kwargs)  # type: ignore[arg-type]
        else:
            table = head
    else:
        import pyogrio

        try:
            table = pyogrio.read_dataframe(path)
        except Exception as exc:
            raise AggloInputError(f"cannot read stations from {path}: {exc}") from exc
    table.attrs.update({"source": path.name, "synthetic": is_synthetic_file(path)})
    return table


# ---------------------------------------------------------------------------------------
# name matching
# ---------------------------------------------------------------------------------------

_CITY_SUFFIXES = ("市", "地区", "盟", "林区")
_COUNTY_SUFFIXES = ("市", "县", "区", "自治县", "特区", "林区")


def _strip(name: str, suffixes: Sequence[str]) -> str:
    for s in sorted(suffixes, key=len, reverse=True):
        if name.endswith(s) and len(name) - len(s) >= 2:
            return name[: -len(s)]
    return name


class _Matcher:
    """Name -> adcode lookup over city (and optionally county) names."""

    def __init__(
        self,
        cities: pd.DataFrame,
        counties: pd.DataFrame | None,
        name_col: str,
        id_col: str,
    ) -> None:
        self.city_names = dict(zip(cities[name_col], cities[id_col], strict=True))
        self.city_keys = self._unique_keys(
            (_strip(n, _CITY_SUFFIXES), a) for n, a in self.city_names.items()
        )
        self.county_keys: dict[str, object] = {}
        self.county_names: dict[str, object] = {}
        if counties is not None:
            valid = set(self.city_names.values())
            pairs = [
                (n, a)
                for n, a in zip(counties["name_zh"], counties["city_adcode"], strict=True)
                if a in valid
            ]
            self.county_names = self._unique_keys(pairs)
            self.county_keys = self._unique_keys((_strip(n, _COUNTY_SUFFIXES), a) for n, a in pairs)

    @staticmethod
    def _unique_keys(pairs: Iterable[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, set] = {}
        for k, a in pairs:
            seen.setdefault(k, set()).add(a)
        return {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}

    def _prefix(self, key: str, names: Iterable[str], lookup: Mapping[str, object]) -> object:
        if len(key) < 2:
            return None
        hits = {lookup[n] for n in names if n.startswith(key)}
        return next(iter(hits)) if len(hits) == 1 else None

    def _one(self, name: str) -> object:
        if name in self.city_names:
            return self.city_names[name]
        if name + "市" in self.city_names:
            return self.city_names[name + "市"]
        key = _strip(name, _CITY_SUFFIXES)
        if key in self.city_keys:
            return self.city_keys[key]
        if name in self.county_names:
            return self.county_names[name]
        ckey = _strip(name, _COUNTY_SUFFIXES)
        if ckey in self.county_keys:
            return self.county_keys[ckey]
        hit = self._prefix(key, self.city_names, self.city_names)
        if hit is None and self.county_names:
            hit = self._prefix(ckey, self.county_names, self.county_names)
        return hit

    def __call__(self, name: object) -> object:
        if name is None or (isinstance(name, float) and np.isnan(name)):
            return None
        name = re.sub(r"\s+", "", str(name)).removesuffix("站")
        if not name:
            return None
        hit = self._one(name)
        if hit is None and len(name) > 2 and name[-1] in _DIRECTIONS:
            hit = self._one(name[:-1])
        return hit


def match_city_names(
    names: Iterable[object],
    cities: pd.DataFrame,
    *,
    counties: pd.DataFrame | None = None,
    name_col: str = "name_zh",
    id_col: str = "adcode",
) -> pd.Series:
    """Match city or station names to city ids.

    Tried in order: the exact name, the name + 市, equal names without 市/地区/盟 suffixes, a
    county name (-> its ``city_adcode``; needs ``counties``), a unique prefix (恩施 ->
    恩施土家族苗族自治州), and all of these again without a trailing direction character
    (南京南 -> 南京) and without a trailing 站.

    Parameters
    ----------
    names
        City or station names.
    cities
        Table with ``name_col`` and ``id_col``.
    counties
        Optional table with ``name_zh`` and ``city_adcode`` (e.g. :func:`agglo.load_counties`).

    Returns
    -------
    pandas.Series
        One id per name (None when unmatched), on a RangeIndex.

    Examples
    --------
    >>> import pandas as pd
    >>> cities = pd.DataFrame({"adcode": ["320100", "422800"],
    ...                        "name_zh": ["南京市", "恩施土家族苗族自治州"]})
    >>> match_city_names(["南京", "南京南", "恩施", "上海"], cities).tolist()
    ['320100', '320100', '422800', None]
    """
    matcher = _Matcher(cities, counties, name_col, id_col)
    return pd.Series([matcher(n) for n in names], dtype=object)


# ---------------------------------------------------------------------------------------
# access flag
# ---------------------------------------------------------------------------------------


def hsr_access(
    stations_or_lines: pd.DataFrame | gpd.GeoDataFrame,
    polygons: gpd.GeoDataFrame,
    years: Iterable[int],
    *,
    id_col: str = "adcode",
    name_col: str = "name_zh",
    counties: pd.DataFrame | None = None,
    min_speed_kmh: float = 250,
) -> pd.DataFrame:
    """HSR flag per city and year: 1 from the year the city's first HSR station opened.

    Parameters
    ----------
    stations_or_lines
        One of (checked in this order):

        - a GeoDataFrame of points: each station is located by point-in-polygon;
        - a GeoDataFrame of lines: a city counts when the line crosses it (upper bound);
        - a table with an ``id_col`` column (e.g. ``adcode``): used as is;
        - a table with ``lon``/``lat`` columns (EPSG:4326): point-in-polygon;
        - a table with a ``city`` column (and optionally ``station``), e.g. the output of
          :func:`read_railways`: names matched as in :func:`match_city_names` (the station
          name is tried when the city name does not match).

        Every form needs an opening date column ``opened`` (any form of
        :func:`parse_opening_date`). Rows with ``is_hsr`` False, or, without ``is_hsr``, a
        ``speed_kmh`` below ``min_speed_kmh``, are ignored; rows without a date are ignored
        (logged).
    polygons
        Cities with ``id_col`` and ``name_col``.
    years
        Years of the panel.
    counties
        Optional county table (``name_zh``, ``city_adcode``) for matching station names.
    min_speed_kmh
        Speed threshold when the input has ``speed_kmh`` but no ``is_hsr``.

    Returns
    -------
    pandas.DataFrame
        One row per polygon and year: ``id_col``, ``year``, ``hsr`` (0/1 int),
        ``first_opened_year`` (Int64, NA when no station), ``first_station`` (name or None).
        ``attrs["unmatched"]`` lists names or stations that fell in no polygon.

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely
    >>> cities = gpd.GeoDataFrame({"adcode": ["A", "B"], "name_zh": ["甲市", "乙市"]},
    ...     geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], crs=4326)
    >>> st = pd.DataFrame({"station": ["甲东"], "lon": [0.5], "lat": [0.5],
    ...                    "opened": ["2012.12.26"]})
    >>> hsr_access(st, cities, [2010, 2015])[["adcode", "year", "hsr"]].values.tolist()
    [['A', 2010, 0], ['A', 2015, 1], ['B', 2010, 0], ['B', 2015, 0]]
    """
    years = sorted({int(y) for y in years})
    if not years:
        raise AggloInputError("years is empty; give the panel years, e.g. [2010, 2015, 2020].")
    if not isinstance(polygons, gpd.GeoDataFrame) or id_col not in polygons.columns:
        raise AggloInputError(f"polygons must be a GeoDataFrame with an {id_col!r} column.")
    st = _hsr_rows(stations_or_lines, min_speed_kmh)
    located, unmatched = _locate(st, polygons, id_col, name_col, counties)
    located = located.dropna(subset=[id_col])
    first = (
        located.sort_values("opened")
        .groupby(id_col, sort=False)
        .agg(first_opened=("opened", "first"), first_station=("station", "first"))
    )
    ids = polygons[id_col].to_numpy()
    grid = pd.DataFrame({id_col: np.repeat(ids, len(years)), "year": np.tile(years, len(ids))})
    first_year = first["first_opened"].dt.year
    grid["first_opened_year"] = grid[id_col].map(first_year).astype("Int64")
    grid["first_station"] = grid[id_col].map(first["first_station"]).astype(object)
    grid["first_station"] = grid["first_station"].where(grid["first_station"].notna(), None)
    has = grid["first_opened_year"].notna() & (grid["year"] >= grid["first_opened_year"])
    grid.insert(2, "hsr", has.fillna(False).astype(int))
    grid.attrs.update({"unmatched": unmatched, "n_stations": len(st)})
    log.info(
        "HSR: %d of %d cities have a station by %d; %d name(s)/station(s) outside the polygons",
        int(grid.loc[grid["year"] == years[-1], "hsr"].sum()),
        len(ids),
        years[-1],
        len(unmatched),
    )
    return grid


@dataclass(frozen=True)
class HSRResult(StageResult):
    """HSR flag per city and year (result of :func:`city_hsr`; the ``hsr`` stage).

    Attributes
    ----------
    access
        :func:`hsr_access`'s table (``attrs["unmatched"]``: names outside the cities).
    names
        City names by ``id_col`` (``name_zh``), for the output table.
    stations
        File name of the stations / rail-line input.
    synthetic
        Whether that input is synthetic.
    min_speed_kmh
        The speed threshold used.
    id_col
        Identifier column of the cities.
    """

    access: pd.DataFrame
    names: pd.Series
    stations: str
    synthetic: bool
    min_speed_kmh: float
    id_col: str = "adcode"
    #: the panel indicator this stage computes
    name: ClassVar[str] = "hsr"

    def synthetic_sources(self) -> set[str]:
        return {self.stations} if self.synthetic else set()

    @property
    def values(self) -> pd.DataFrame:
        """The panel indicator: ``adcode, year, value`` (0/1)."""
        cols = {self.id_col: "adcode", "hsr": "value"}
        return self.access.rename(columns=cols)[["adcode", "year", "value"]]

    @property
    def source(self) -> str:
        """Where the indicator comes from (panel provenance)."""
        return (
            f"agglo.hsr_access on {self.stations} ({'SYNTHETIC' if self.synthetic else 'real'}); "
            f"hsr = 1 from the year the city's first station (>= {self.min_speed_kmh:g} km/h) "
            "opened"
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        out = self.access.copy()
        out.insert(1, "name_zh", out[self.id_col].map(self.names))
        return {"hsr": out}

    def summary_lines(self) -> list[str]:
        years = sorted(self.access["year"].unique())
        last = self.access[self.access["year"] == max(years)] if years else self.access
        return [
            f"HSR ({self.stations}): {int(last['hsr'].sum())} of {last[self.id_col].nunique()} "
            f"cities have a station by {max(years) if years else '-'}"
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "stations": self.stations,
            "min_speed_kmh": self.min_speed_kmh,
            "unmatched": list(self.access.attrs.get("unmatched", [])),
        }


def city_hsr(
    stations: pd.DataFrame | gpd.GeoDataFrame,
    cities: gpd.GeoDataFrame,
    options: HSROptions | None = None,
    *,
    years: Iterable[int],
    counties: pd.DataFrame | None = None,
    id_col: str = "adcode",
    source: str | None = None,
    synthetic: bool | None = None,
) -> HSRResult:
    """HSR flag of every city and year (the ``hsr`` stage; see :func:`hsr_access`).

    Parameters
    ----------
    stations
        Stations or rail lines, e.g. from :func:`read_stations` (whose ``attrs`` name the file
        and say whether it is synthetic).
    cities
        Cities with ``id_col`` and ``name_zh``.
    options
        :class:`HSROptions` (``min_speed_kmh``).
    years
        Years of the panel.
    counties
        County table for matching station names (``name_zh``, ``city_adcode``).
    id_col
        Identifier column of ``cities``.
    source, synthetic
        Name and status of the input (default: from ``stations.attrs``).

    Returns
    -------
    HSRResult

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely
    >>> cities = gpd.GeoDataFrame({"adcode": ["A", "B"], "name_zh": ["甲市", "乙市"]},
    ...     geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], crs=4326)
    >>> st = pd.DataFrame({"station": ["甲东"], "lon": [0.5], "lat": [0.5],
    ...                    "opened": ["2012-07-01"]})
    >>> res = city_hsr(st, cities, years=[2010, 2015])
    >>> res.values.sort_values(["adcode", "year"])["value"].tolist()  # A 2010, A 2015, B ...
    [0, 1, 0, 0]
    """
    options = options or HSROptions()
    years = [int(y) for y in years]
    access = hsr_access(
        stations,
        cities,
        years,
        id_col=id_col,
        counties=counties,
        min_speed_kmh=options.min_speed_kmh,
    )
    names = cities.set_index(id_col)["name_zh"] if "name_zh" in cities.columns else pd.Series()
    return HSRResult(
        access=access,
        names=names,
        stations=source or stations.attrs.get("source", "stations"),
        synthetic=bool(stations.attrs.get("synthetic", False)) if synthetic is None else synthetic,
        min_speed_kmh=float(options.min_speed_kmh),
        id_col=id_col,
    )


def _hsr_rows(df: pd.DataFrame, min_speed_kmh: float) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise AggloInputError(
            f"stations must be a DataFrame or GeoDataFrame; got {type(df).__name__}."
        )
    opened_col = _find(df.columns, _STATION_ALIASES["opened"])
    if opened_col is None:
        raise AggloInputError(
            f"stations need an opening-date column (one of {list(_STATION_ALIASES['opened'])}); "
            f"columns: {list(df.columns)}."
        )
    problems = []
    dates = []
    for i, v in enumerate(df[opened_col].tolist(), start=1):
        try:
            dates.append(parse_opening_date(v))
        except AggloInputError as exc:
            problems.append(f"row {i}, column {opened_col}: {exc}")
            dates.append(pd.NaT)
    if problems:
        raise ValidationError(problems, source="stations")
    out = df.copy()
    out["opened"] = pd.to_datetime(pd.Series(dates, index=df.index, dtype="datetime64[ns]"))
    if "is_hsr" in out.columns:
        out = out[out["is_hsr"].astype(bool)]
    elif "speed_kmh" in out.columns:
        speed = pd.to_numeric(out["speed_kmh"], errors="coerce")
        out = out[speed >= min_speed_kmh]
    n_nodate = int(out["opened"].isna().sum())
    if n_nodate:
        log.warning("stations: %d row(s) without an opening date ignored", n_nodate)
    out = out[out["opened"].notna()]
    if "station" not in out.columns:
        name = _find(out.columns, _STATION_ALIASES["station"])
        out["station"] = out[name].astype(str) if name else None
    return out


def _locate(
    st: pd.DataFrame,
    polygons: gpd.GeoDataFrame,
    id_col: str,
    name_col: str,
    counties: pd.DataFrame | None,
) -> tuple[pd.DataFrame, list[str]]:
    """Attach ``id_col`` to every station row; return the rows and the unmatched names."""
    if isinstance(st, gpd.GeoDataFrame) and st.geometry.name in st.columns and len(st):
        types = set(shapely.get_type_id(st.geometry.to_numpy()).tolist()) - {-1}
        if types - {0, 1, 4, 5}:
            raise AggloInputError(
                "station/line geometries must be Points or LineStrings; got type ids "
                f"{sorted(types)}."
            )
        return _spatial(ensure_wgs84(st, what="stations"), polygons, id_col)
    if id_col in st.columns:
        out = st.copy()
        out[id_col] = out[id_col].astype(str).str.strip()
        known = set(polygons[id_col].astype(str))
        unknown = sorted(set(out[id_col]) - known)
        return out[out[id_col].isin(known)], unknown
    lon = _find(st.columns, _STATION_ALIASES["lon"])
    lat = _find(st.columns, _STATION_ALIASES["lat"])
    if lon is not None and lat is not None:
        pts = gpd.GeoDataFrame(
            st,
            geometry=gpd.points_from_xy(
                pd.to_numeric(st[lon], errors="coerce"), pd.to_numeric(st[lat], errors="coerce")
            ),
            crs=WGS84,
        )
        return _spatial(pts, polygons, id_col)
    city = _find(st.columns, _STATION_ALIASES["city"])
    if city is None:
        raise AggloInputError(
            f"stations need geometries, lon/lat, an {id_col!r} column or a city-name column; "
            f"got columns {list(st.columns)}."
        )
    if name_col not in polygons.columns:
        raise AggloInputError(f"matching city names needs polygons[{name_col!r}].")
    matcher = _Matcher(polygons, counties, name_col, id_col)
    ids = [matcher(c) for c in st[city]]
    if "station" in st.columns:  # the mapped city failed (e.g. a truncated name): try the station
        ids = [a if a is not None else matcher(s) for a, s in zip(ids, st["station"], strict=True)]
    out = st.assign(**{id_col: ids})
    unmatched = sorted({str(s) for s, a in zip(st[city], ids, strict=True) if a is None})
    return out, unmatched


def _spatial(
    pts: gpd.GeoDataFrame, polygons: gpd.GeoDataFrame, id_col: str
) -> tuple[pd.DataFrame, list[str]]:
    polys = ensure_wgs84(polygons, what="polygons")[[id_col, polygons.geometry.name]]
    pts = pts.drop(columns=[id_col], errors="ignore").reset_index(drop=True)
    joined = gpd.sjoin(pts, polys, how="left", predicate="intersects")
    unmatched = sorted(
        {str(s) for s in joined.loc[joined[id_col].isna(), "station"].fillna("(unnamed)")}
    )
    return pd.DataFrame(joined.drop(columns=["index_right"], errors="ignore")), unmatched
