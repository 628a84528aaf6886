"""Reading and validating prefecture-level yearbook panels.

Users bring statistical-yearbook tables in many shapes. :func:`read_panel` reads

- CSV (UTF-8, UTF-8 with BOM, GBK/GB18030; comma, tab or semicolon separated) and XLSX;
- **long form**: a city column (``adcode`` or a name column such as ``city``/``城市``/``地区``),
  ``year``, ``indicator`` and ``value``;
- **wide form**: a city column, ``year`` and one column per indicator, named by registry id,
  Chinese or English name or alias, with or without a unit suffix (``人均GDP(元)``);
- sector employment for the Krugman index, as wide ``employment_<sector>`` columns, as long
  ``adcode, year, sector, employment`` files, or in a file named by a metadata sidecar,

maps columns to the indicator registry (:mod:`agglo.reference.registry`), matches cities by adcode or
Chinese name (with or without 市/地区/州, historical names such as 襄樊 -> 襄阳 420600; see
:mod:`agglo.reference.names`), and returns a tidy ``adcode, year, indicator, value`` table with a
:class:`ValidationReport`. Every problem is collected and raised once as a
:class:`agglo.errors.ValidationError` naming the file, the row (the line number a user sees in
a spreadsheet or editor, the header being row 1) and the column.

A metadata sidecar ``<file stem>.json`` next to the file may say ``"data_status": "synthetic"``
and name an ``"employment"`` file (relative path). The bundled demo panel
(:data:`DEMO_PANEL`) is synthetic: see ``data/panel/README.md``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import difflib
import functools
import io
import json
import logging
import re
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agglo.errors import AggloDataWarning, AggloInputError, ValidationError
from agglo.options import Options, option
from agglo.reference.names import CityMatch, CityMatcher, load_city_aliases
from agglo.reference.paths import data_path
from agglo.reference.registry import EXTRA_VARIABLES, UNIT_RANGES, VARIABLES

#: every variable the reader recognises: the index's and auxiliary ones, then yearbook extras
READABLE = {**VARIABLES, **EXTRA_VARIABLES}

__all__ = [
    "DEMO_EMPLOYMENT",
    "DEMO_PANEL",
    "PanelInspection",
    "PanelOptions",
    "PanelResult",
    "ValidationReport",
    "header_parts",
    "indicator_provenance",
    "inspect_panel",
    "panel_options",
    "panel_to_wide",
    "read_employment",
    "read_panel",
    "registry_column",
    "value_status",
]

log = logging.getLogger(__name__)

#: the bundled synthetic demo panel (84 member cities x 2010/2015/2020 x 21 variables)
DEMO_PANEL: Path = data_path("panel", "demo_panel_synthetic.csv")
#: the bundled synthetic sector employment (long form), named by the demo panel's sidecar
DEMO_EMPLOYMENT: Path = data_path("panel", "demo_employment_synthetic.csv")

PANEL_COLUMNS = ["adcode", "year", "indicator", "value"]
EMPLOYMENT_COLUMNS = ["adcode", "year", "sector", "employment"]

# normalised header -> role
_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "adcode": ("adcode", "行政区划代码", "区划代码", "代码", "城市代码", "code", "city_code"),
    "city": (
        "city",
        "城市",
        "城市名称",
        "城市名",
        "地区",
        "地区名称",
        "地级市",
        "地市",
        "市",
        "name",
        "name_zh",
        "city_name",
        "city_zh",
    ),
    "year": ("year", "年份", "年", "年度"),
    "indicator": ("indicator", "指标", "指标名称", "variable", "变量"),
    "value": ("value", "数值", "值", "指标值"),
    "sector": ("sector", "行业", "产业", "industry"),
    "employment": ("employment", "就业人数", "就业人员", "从业人员", "从业人员数"),
}
_ROLE_OF: dict[str, str] = {n: role for role, names in _ROLE_NAMES.items() for n in names}
# columns that describe rows but are not data: ignored (recorded in report.actions)
_META = {
    "province",
    "province_zh",
    "省份",
    "省",
    "agglomeration_id",
    "agglomeration",
    "城市群",
    "note",
    "notes",
    "备注",
    "source",
    "来源",
    "unit",
    "单位",
    "name_en",
}
_EMPLOYMENT_PREFIXES = ("employment_", "就业人员_", "就业人数_")
_MISSING = {
    "",
    "-",
    "--",
    "—",
    "——",
    "–",
    "…",
    "...",
    "……",
    "/",
    "na",
    "n/a",
    "nan",
    "null",
    "none",
    "无",
    "缺失",
}
_FIRST_YEAR = 1949


@dataclass(frozen=True)
class PanelOptions(Options):
    """How to read a yearbook panel: layout, column mapping, city and year selection, checks.

    The ``[panel]`` section of a run configuration and the panel flags of the CLI derive from
    these fields.

    Examples
    --------
    >>> PanelOptions(on_unknown_city="drop", years=(2010, 2015)).years
    (2010, 2015)
    >>> PanelOptions.from_dict({"columns": {"人均GDP全市": "gdp_per_capita"}}).columns
    {'人均GDP全市': 'gdp_per_capita'}
    """

    section: ClassVar[str] = "panel"

    columns: dict[str, str | None] = option(  # noqa: RUF009 (option() is a field)
        default_factory=dict,
        help="Extra column mapping {column in the file: target}; a target is a registry id, "
        "name or alias, a role (adcode, city, year, indicator, value, sector, employment), "
        "employment_<sector>, or none/'' to drop the column.",
        cli=False,
    )
    columns_file: str | None = option(
        None,
        help="A CSV file with columns 'column' and 'target' (as written by `agglo panel "
        "inspect --write-columns`), merged under `columns`.",
    )
    ignore_unknown: bool = option(
        False, help="Drop columns that match no indicator (with a warning) instead of failing."
    )
    on_unknown_city: str = option(
        "error",
        help="Rows of cities outside the city table: 'error' or 'drop' (with a warning naming "
        "them; a national table's non-member cities are summarised in one line).",
        choices=("error", "drop"),
    )
    years: tuple[int, ...] | None = option(
        None, help="Years to keep (other years are dropped and counted); default all."
    )
    sheet: str | None = option(
        None,
        help="XLSX sheet name, or its 0-based position when no sheet has that name; default the "
        "first sheet.",
    )
    header: int | None = option(
        None,
        help="Number of header rows (2 for a merged-cell two-row header); default detected.",
        minimum=1,
        maximum=5,
    )
    skiprows: int | None = option(
        None,
        help="Lines above the header (yearbook titles); default detected.",
        minimum=0,
    )
    encoding: str | None = option(None, help="CSV encoding; default tries utf-8-sig, then gb18030.")
    indicator: str | None = option(
        None,
        help="For a table of one indicator with years across the columns: the indicator it "
        "holds (registry id, name or alias).",
    )
    area: str = option(
        "whole_city",
        help="When a table has both 全市 (whole city) and 市辖区 (urban districts) columns of an "
        "indicator, the one used (the other is dropped and recorded).",
        choices=("whole_city", "urban_districts"),
    )
    plausibility: str = option(
        "warn",
        help="Plausibility checks against each indicator's unit and range (scale errors, "
        "outliers, jumps, absurd magnitudes): 'warn', 'error' or 'off'.",
        choices=("warn", "error", "off"),
    )
    outlier_z: float = option(
        5.0,
        help="A value whose robust z within its agglomeration-year (0.6745·|x − median| / "
        "MAD of the logs, MAD at least 0.15) exceeds this is flagged (rates and per-capita "
        "levels; not sizes such as population); 0 switches the check off.",
        minimum=0.0,
    )
    jump_factor: float = option(
        4.0,
        help="A city's value changing by more than this factor (up or down) between two "
        "observed years is flagged.",
        minimum=1.0,
        exclusive_minimum=True,
    )


@dataclass
class ValidationReport:
    """What reading a panel found (warnings) and did (actions: drops, mappings).

    ``to_frame()`` gives one row per message with ``kind``, ``message``, ``source`` and
    ``data_status`` (``synthetic`` or ``real``), so a synthetic input stays labelled in every
    table written from it.
    """

    source: str
    warnings: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    synthetic: bool = False
    layout: Any = None
    flags: list[dict] = field(default_factory=list)
    data_status: str | None = None  # real, synthetic or partly synthetic (default from synthetic)
    _emit: list[str] = field(default_factory=list, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """The report as a table: ``kind`` (warning/action), ``message``, ``source``,
        ``data_status``.

        Examples
        --------
        >>> r = ValidationReport("x.csv", warnings=["w"], actions=["a"], synthetic=True)
        >>> r.to_frame()[["kind", "data_status"]].values.tolist()
        [['warning', 'synthetic'], ['action', 'synthetic']]
        """
        rows = [{"kind": "warning", "message": w} for w in self.warnings]
        rows += [{"kind": "action", "message": a} for a in self.actions]
        rows += [{**f, "kind": f"flag:{f['check']}"} for f in self.flags]
        cols = ["kind", "message", *FLAG_COLUMNS]
        return (
            pd.DataFrame(rows, columns=cols)
            .drop(columns="check")
            .assign(source=self.source, data_status=self.status)
        )

    @property
    def status(self) -> str:
        """``real``, ``synthetic`` or ``partly synthetic`` (some values real, some not)."""
        return self.data_status or ("synthetic" if self.synthetic else "real")

    def data_warning(self, message: str) -> None:
        """Record something dropped, repaired or suspicious; :meth:`emit` raises it as a
        Python warning once reading succeeded."""
        self.warnings.append(message)
        self._emit.append(message)

    def emit(self) -> None:
        """Raise every data warning as an :class:`~agglo.errors.AggloDataWarning` (coverage
        notes and the synthetic-data label stay report lines)."""
        for w in self._emit:
            warnings.warn(f"{Path(self.source).name}: {w}", AggloDataWarning, stacklevel=3)
        self._emit = []


@dataclass
class PanelResult:
    """A validated panel.

    Attributes
    ----------
    panel
        Tidy table: ``adcode`` (6-character str), ``year`` (int), ``indicator`` (registry id),
        ``value`` (float, in the registry unit), sorted by adcode, year, indicator.
    report
        The :class:`ValidationReport`.
    synthetic
        True when any value is synthetic: the file name contains ``synthetic`` or its
        ``data_status`` column or metadata sidecar says so, and no per-value provenance file
        says otherwise for every value.
    employment
        Sector employment ``adcode, year, sector, employment`` (10k persons) or None.
    metadata
        The metadata sidecar's content (empty if none).
    extras
        Recognised yearbook variables the index does not use
        (:data:`agglo.reference.registry.EXTRA_VARIABLES`, e.g. urban and rural incomes), in
        the same tidy form, checked like the panel; None if there are none.
    """

    panel: pd.DataFrame
    report: ValidationReport
    synthetic: bool = False
    employment: pd.DataFrame | None = None
    metadata: dict = field(default_factory=dict)
    extras: pd.DataFrame | None = None
    provenance: pd.DataFrame | None = None

    def to_wide(self) -> pd.DataFrame:
        """The panel as one row per city-year, one column per indicator."""
        return panel_to_wide(self.panel)

    @property
    def data_status(self) -> str:
        """``real``, ``synthetic`` or ``partly synthetic``."""
        return self.report.status

    def labelled(self) -> pd.DataFrame:
        """:attr:`panel` with a ``provenance`` column (one label per value)."""
        if self.provenance is None:
            return self.panel.assign(provenance="synthetic" if self.synthetic else "real")
        return self.panel.merge(self.provenance, on=["adcode", "year", "indicator"], how="left")

    def indicator_provenance(self) -> pd.DataFrame:
        """Per indicator: how many values are real, interpolated, synthetic (see
        :func:`indicator_provenance`)."""
        return indicator_provenance(self.labelled())

    @property
    def synthetic_indicators(self) -> list[str]:
        """Indicators with at least one synthetic value."""
        t = self.indicator_provenance()
        return t.loc[t["n_synthetic"] > 0, "indicator"].tolist()


#: statuses of a value, in the order a joined ``data_status`` lists them (real+interpolated)
VALUE_STATUSES = ("real", "interpolated", "imputed", "computed", "synthetic", "unknown")


def value_status(label: object) -> str:
    """The status of one provenance label: the part before ``:`` (``real:census-2010`` -> real).

    Examples
    --------
    >>> [value_status(x) for x in ["real:census-2010", "interpolated:census-2010-2020",
    ...                            "synthetic", None]]
    ['real', 'interpolated', 'synthetic', 'unknown']
    """
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return "unknown"
    head = str(label).strip().split(":", 1)[0].lower()
    return head if head in VALUE_STATUSES else "unknown"


def joined_status(labels: Any) -> str:
    """One ``data_status`` for a set of labels: ``real``, ``synthetic``, ``real+interpolated``...

    Examples
    --------
    >>> joined_status(["synthetic", "real:census-2010", "interpolated:census-2010-2020"])
    'real+interpolated+synthetic'
    """
    found = {value_status(x) for x in labels}
    return "+".join(s for s in VALUE_STATUSES if s in found)


def indicator_provenance(panel: pd.DataFrame) -> pd.DataFrame:
    """Per indicator of a panel with a ``provenance`` column: which values are real.

    Returns
    -------
    pandas.DataFrame
        ``indicator, data_status`` (``real``, ``synthetic``, ``real+interpolated+synthetic``
        ...), ``n_values, n_real, n_interpolated, n_synthetic, n_other, sources`` (the
        labels, "; "-joined), in registry order.

    Examples
    --------
    >>> p = pd.DataFrame({"indicator": ["hsr", "hsr", "pm25"], "value": [1.0, 0.0, 40.0],
    ...                   "provenance": ["real:railways", "real:railways", "synthetic"]})
    >>> indicator_provenance(p)[["indicator", "data_status", "n_real"]].values.tolist()
    [['hsr', 'real', 2], ['pm25', 'synthetic', 0]]
    """
    rows = []
    order = {v: i for i, v in enumerate(READABLE)}
    labelled = panel[panel["value"].notna()] if "value" in panel else panel
    # one count per (indicator, label text): a run has few labels, so the statuses are taken
    # once per distinct label instead of once per value (value_status(x) is that of str(x))
    texts = labelled["provenance"].astype(str).rename("provenance")
    pairs = labelled.groupby([labelled["indicator"], texts], sort=True, dropna=False).size()
    pairs = pairs[pairs.index.get_level_values("indicator").notna()]
    text = [str(x) for x in pairs.index.get_level_values("provenance")]
    status = [value_status(x) for x in text]
    by_indicator: dict[Any, list[int]] = {}
    for k, ind in enumerate(pairs.index.get_level_values("indicator")):
        by_indicator.setdefault(ind, []).append(k)
    sizes = pairs.to_numpy()
    for ind, at in by_indicator.items():
        n = {st: 0 for st in VALUE_STATUSES}
        for k in at:
            n[status[k]] += int(sizes[k])
        total = sum(n.values())
        rows.append(
            {
                "indicator": ind,
                "data_status": joined_status(text[k] for k in at),
                "n_values": total,
                "n_real": n["real"],
                "n_interpolated": n["interpolated"],
                "n_synthetic": n["synthetic"],
                "n_other": total - n["real"] - n["interpolated"] - n["synthetic"],
                "sources": "; ".join(sorted({text[k] for k in at})),
            }
        )
    cols = [
        "indicator",
        "data_status",
        "n_values",
        "n_real",
        "n_interpolated",
        "n_synthetic",
        "n_other",
        "sources",
    ]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("indicator", key=lambda s: s.map(order).fillna(len(order))).reset_index(
        drop=True
    )


# ---------------------------------------------------------------------------------------
# column names
# ---------------------------------------------------------------------------------------


def _norm(text: object) -> str:
    """Normalise a header or indicator label for matching (case, width, spaces, unit suffix)."""
    s = unicodedata.normalize("NFKC", str(text)).strip().lower()
    s = _strip_trailing_brackets(s)  # trailing unit in brackets
    s = s.strip().rstrip("%").strip()
    return re.sub(r"[\s\-]+", "_", s)


def _strip_trailing_brackets(s: str) -> str:
    """Drop one trailing bracketed group, nesting allowed: ``a(index (0-2))`` -> ``a``."""
    s = s.rstrip()
    if not s.endswith((")", "]", "}", "】")):
        return s
    depth = 0
    for i in range(len(s) - 1, -1, -1):
        if s[i] in ")]}】":
            depth += 1
        elif s[i] in "([{【":
            depth -= 1
            if depth == 0:
                return s[:i].rstrip() if i > 0 else s
    return s


def _registry_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for v in READABLE.values():
        for label in (v.id, v.name_zh, v.name_en, *v.aliases):
            keys.setdefault(_norm(label), set()).add(v.id)
    return keys


_KEYS = _registry_keys()


def registry_column(label: str) -> str | None:
    """The registry id a column label or indicator name refers to, or None.

    Matching ignores case, spaces, full-width characters and a trailing unit in brackets, and
    accepts ids, Chinese and English names and the registry's aliases.

    Examples
    --------
    >>> registry_column("人均GDP（元）"), registry_column("PM2.5"), registry_column("GDP per capita")
    ('gdp_per_capita', 'pm25', 'gdp_per_capita')
    >>> registry_column("常住人口城镇化率(%)"), registry_column("no such thing") is None
    ('urbanization_rate', True)
    """
    for key in _label_keys(label):
        ids = _KEYS.get(key)
        if ids and len(ids) == 1:
            return next(iter(ids))
    return None


#: unit words glued to the end of Chinese yearbook headers (longest first)
_UNIT_TAILS = sorted(
    ["元", "万元", "亿元", "元/人", "万人", "人", "张", "个", "吨", "万吨", "万册", "册", "%", "‰",
     "公里", "千米", "平方公里", "万平方米", "件", "项", "床", "人/万人", "张/万人", "微克/立方米",
     "ug/m3", "µg/m³", "μg/m3", "亿美元", "万美元", "美元"],
    key=len,
    reverse=True,
)  # fmt: skip
_AREAS = {"全市": "whole_city", "市辖区": "urban_districts", "地级市": "whole_city"}


def header_parts(label: object) -> tuple[str, str | None, str | None]:
    """Split a yearbook header into (core label, area, unit).

    Drops source notes after a line break, a trailing unit (in any brackets or glued on)
    and the 全市/市辖区 qualifier (returned as ``whole_city``/``urban_districts``).

    Examples
    --------
    >>> header_parts("人均地区生产总值全市元")
    ('人均地区生产总值', 'whole_city', '元')
    >>> header_parts("生活垃圾无害化处理率(%)")
    ('生活垃圾无害化处理率', None, '%')
    >>> header_parts("户籍人口万人"), header_parts("医院床位数 | 市辖区")
    (('户籍人口', None, '万人'), ('医院床位数', 'urban_districts', None))
    """
    text = unicodedata.normalize("NFKC", str(label)).strip()
    text = re.split(r"[\r\n]+", text)[0].strip()  # source notes after a line break
    area = unit = None
    parts = [p.strip() for p in text.split("|")]
    kept = []
    for p in parts:
        if p in _AREAS:
            area = _AREAS[p]
        else:
            kept.append(p)
    text = "".join(kept)
    for _ in range(3):
        m = re.search(r"[(\[{【]([^()\[\]{}【】]*)[)\]}】]\s*$", text)
        if m and len(text) - len(m.group(0)) >= 2:
            inner = m.group(1).strip()
            if inner in _AREAS:
                area = _AREAS[inner]
            else:
                unit = unit or inner.removeprefix("单位:").removeprefix("单位").strip() or None
            text = text[: m.start()].rstrip()
            continue
        for q, a in _AREAS.items():
            if text.endswith(q) and len(text) > len(q) + 1:
                area, text = a, text[: -len(q)]
                break
            if text.startswith(q) and len(text) > len(q) + 1:
                area, text = a, text[len(q) :]
                break
        else:
            for u in _UNIT_TAILS:
                if text.endswith(u) and len(text) - len(u) >= 3 and not unit:
                    unit, text = u, text[: -len(u)]
                    break
            else:
                break
    return text.strip(), area, unit


def _label_keys(label: str) -> list[str]:
    """Normalised forms of a label: as is, without a ``/unit`` or ``单位:unit`` tail, then its
    core without area qualifier and unit (see :func:`header_parts`)."""
    keys = [_norm(label)]
    text = unicodedata.normalize("NFKC", str(label))
    for sep in ("/", "单位:", "单位", ","):
        if sep in text:
            keys.append(_norm(text.rsplit(sep, 1)[0]))
    core = header_parts(label)[0]
    keys.append(_norm(core))
    if "|" in text:  # a two-row header: each part alone
        keys += [_norm(header_parts(p)[0]) for p in text.split("|")]
    return keys


def _why(label: str) -> str:
    """How a header matched a variable, for the report and ``agglo panel inspect``."""
    core, area, unit = header_parts(label)
    bits = [f"core {core!r}"]
    if area:
        bits.append(f"area {area}")
    if unit:
        bits.append(f"unit {unit!r}")
    return ", ".join(bits)


def _closest_ids(label: str, n: int = 3) -> list[str]:
    best = difflib.get_close_matches(_norm(label), list(_KEYS), n=n * 3, cutoff=0.4)
    out: list[str] = []
    for k in best:
        for i in sorted(_KEYS[k]):
            if i not in out:
                out.append(i)
    if not out:  # fall back to ids by a looser cutoff
        out = difflib.get_close_matches(_norm(label), list(READABLE), n=n, cutoff=0.0)
    return [f"{i} ({READABLE[i].name_zh})" for i in out[:n]]


def _sector_id(label: object) -> str:
    s = unicodedata.normalize("NFKC", str(label)).strip().lower()
    return re.sub(r"[\s\-]+", "_", s)


# ---------------------------------------------------------------------------------------
# reading the raw table
# ---------------------------------------------------------------------------------------


_TABLE_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".xlsm"}


@dataclass
class _Layout:
    """Where the header is: ``skiprows`` title lines, then ``header`` header rows."""

    skiprows: int
    header: int
    detected: bool
    titles: list[str] = field(default_factory=list)


def _read_grid(
    path: Path, *, sheet: str | int | None, encoding: str | None
) -> tuple[pd.DataFrame, str]:
    """The file as a grid of strings/objects without a header (row i = file line i + 1)."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise AggloInputError(
            f"{path}: old .xls workbooks are not supported; save it as .xlsx or .csv"
        )
    if suffix not in _TABLE_SUFFIXES:
        raise AggloInputError(
            f"{path}: not a table (expected .csv, .tsv, .txt or .xlsx; got {suffix or 'no suffix'})"
        )
    if suffix in {".xlsx", ".xlsm"}:
        try:
            if isinstance(sheet, str) and sheet.isdigit():
                names = pd.ExcelFile(path, engine="openpyxl").sheet_names
                sheet = sheet if sheet in names else int(sheet)
            df = pd.read_excel(
                path,
                sheet_name=0 if sheet is None else sheet,
                dtype=object,
                header=None,
                engine="openpyxl",
            )
        except ValueError as exc:  # unknown sheet
            raise AggloInputError(f"{path}: cannot read sheet {sheet!r}: {exc}") from exc
        except Exception as exc:  # a corrupt or non-xlsx file with an xlsx name
            raise AggloInputError(f"{path}: cannot read as an .xlsx workbook: {exc}") from exc
        return df, f"xlsx sheet {sheet if sheet is not None else 0}"
    raw = path.read_bytes()
    tried = [encoding] if encoding else ["utf-8-sig", "gb18030"]
    text = None
    for enc in tried:
        try:
            text = raw.decode(enc)
            used = enc
            break
        except (UnicodeDecodeError, LookupError):
            continue
    if text is None:
        raise AggloInputError(
            f"{path}: cannot decode the file as {' or '.join(tried)}; save it as UTF-8 "
            "or pass encoding=..."
        )
    lines = text.splitlines()
    sample = [ln for ln in lines[:20] if ln.strip()]
    seps = [",", "\t", ";"]
    sep = max(seps, key=lambda c: max((ln.count(c) for ln in sample), default=0))
    rows = list(csv.reader(io.StringIO(text), delimiter=sep))
    width = max((len(r) for r in rows), default=0)
    grid = pd.DataFrame([r + [""] * (width - len(r)) for r in rows], dtype=object)
    return grid, f"csv {used}"


def _cell_text(x: object) -> str:
    return "" if _is_missing(x) else unicodedata.normalize("NFKC", str(x)).strip()


def _header_score(row: list[str]) -> tuple[int, int]:
    """(roles found, labels that name a variable) in one candidate header row."""
    roles = {_ROLE_OF.get(_norm(c)) for c in row if c} - {None}
    named = sum(1 for c in row if c and (_norm(c) in _ROLE_OF or registry_column(c)))
    return len(roles & {"year", "city", "adcode", "indicator"}), named


def _detect_layout(grid: pd.DataFrame, skiprows: int | None, header: int | None) -> _Layout:
    """Find the header row (title lines above it are skipped) and a second header row."""
    texts = [[_cell_text(x) for x in grid.iloc[i].tolist()] for i in range(min(len(grid), 30))]
    if skiprows is None:
        best = None
        for i, row in enumerate(texts):
            roles, named = _header_score(row)
            if roles >= 2 or (roles >= 1 and named >= 2):
                best = i
                break
        if best is None:  # no recognisable header: the first line with 2+ cells
            best = next((i for i, r in enumerate(texts) if sum(map(bool, r)) >= 2), 0)
        start, detected = best, True
    else:
        start, detected = skiprows, False
    titles = [" ".join(c for c in r if c) for r in texts[:start] if any(r)]
    if header is None:
        header = 1
        nxt = texts[start + 1] if start + 1 < len(texts) else []
        if (
            nxt
            and any(nxt)
            and not any(_to_year(c) for c in nxt if c)
            and not any(_to_float(c) is not None for c in nxt if c)
        ):
            header = 2  # a second header row (merged cells above, 全市/市辖区 or units below)
    return _Layout(start, header, detected, titles)


def _apply_layout(grid: pd.DataFrame, layout: _Layout) -> pd.DataFrame:
    """Header rows -> column labels (``top | bottom`` for two rows); data rows keep their line."""
    top = [_cell_text(x) for x in grid.iloc[layout.skiprows].tolist()] if len(grid) else []
    labels = top
    if layout.header >= 2:
        parts = [top]
        for k in range(1, layout.header):
            parts.append([_cell_text(x) for x in grid.iloc[layout.skiprows + k].tolist()])
        filled, last = [], ""
        for i, t in enumerate(top):  # merged cells: the label spans the empty cells after it
            last = t or (last if any(p[i] for p in parts[1:]) else "")
            filled.append(last)
        labels = [
            " | ".join(x for x in [filled[i], *(p[i] for p in parts[1:])] if x)
            for i in range(len(top))
        ]
    seen: dict[str, int] = {}
    cols = []
    for i, lab in enumerate(labels):
        lab = lab or f"Unnamed: {i}"
        if lab in seen:
            seen[lab] += 1
            lab = f"{lab}.{seen[lab]}"
        else:
            seen[lab] = 0
        cols.append(lab)
    first = layout.skiprows + layout.header
    data = grid.iloc[first:].copy()
    data.columns = cols
    data.index = pd.RangeIndex(len(data))
    return data.assign(__line__=np.arange(first + 1, first + 1 + len(data)))


def _read_sidecar(path: Path) -> dict:
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise AggloInputError(f"{side}: invalid JSON metadata: {exc}") from exc
    return meta if isinstance(meta, dict) else {}


# ---------------------------------------------------------------------------------------
# value parsing
# ---------------------------------------------------------------------------------------


def _is_missing(x: object) -> bool:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return True
    return unicodedata.normalize("NFKC", str(x)).strip().lower() in _MISSING


def _to_float(x: object) -> float | None:
    """A float from a cell (accepts thousands commas, full-width digits, a trailing %)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float | np.integer | np.floating):
        v = float(x)
    else:
        s = unicodedata.normalize("NFKC", str(x)).strip().replace(",", "").replace(" ", "")
        s = s.removesuffix("%")
        try:
            v = float(s)
        except ValueError:
            return None
    return v if np.isfinite(v) else None


def _to_year(x: object) -> int | None:
    if isinstance(x, str):
        x = unicodedata.normalize("NFKC", x).strip().removesuffix("年")
    v = _to_float(x)
    if v is None or not float(v).is_integer():
        return None
    return int(v)


# ---------------------------------------------------------------------------------------
# the reader
# ---------------------------------------------------------------------------------------


@dataclass
class _Problems:
    file: str
    items: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, line: int | None, column: str | None, message: str) -> None:
        where = f"{self.file}"
        if line is not None:
            where += f", row {line}"
        if column is not None:
            where += f", column {column!r}"
        self.items.append((line or 0, column or "", f"{where}: {message}"))

    def raise_if_any(self, source: str) -> None:
        if self.items:
            ordered = [m for _, _, m in sorted(self.items, key=lambda t: (t[0], t[1]))]
            raise ValidationError(ordered, source=source)


def _rows_text(lines: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"row{'s' if len(lines) > 1 else ''} {shown}{more}"


def read_panel(
    path: str | Path,
    options: PanelOptions | None = None,
    *,
    cities: pd.DataFrame | None = None,
    employment: str | Path | None = None,
    **overrides: Any,
) -> PanelResult:
    """Read a yearbook panel (CSV or XLSX, long or wide form), validate it, return it tidy.

    Parameters
    ----------
    path
        ``.csv`` (also tab- or semicolon-separated; UTF-8, UTF-8-BOM or GBK/GB18030) or
        ``.xlsx``.
    options
        A :class:`PanelOptions` (layout, ``columns`` mapping, ``ignore_unknown``,
        ``on_unknown_city``, ``years``, ``sheet``, ``header``, ``skiprows``, ``plausibility``
        ...); default ``PanelOptions()``.
    cities
        Units to match against (``adcode``, ``name_zh``, optional ``province_zh``); default
        the bundled 130 prefecture-level units of the Yangtze belt (:func:`agglo.load_cities`).
        Names and codes of other Chinese prefecture-level units (the bundled alias table
        derived from the china-prefecture-crosswalk) are recognised as *outside the table*:
        with ``on_unknown_city="drop"`` they are dropped with one summary warning.
    employment
        A separate sector-employment file (long or wide, see :func:`read_employment`);
        default: the file named by the metadata sidecar, if any.
    **overrides
        Fields of :class:`PanelOptions` given directly (``sheet="data"``, ``years=[2010]``),
        applied over ``options``.

    Returns
    -------
    PanelResult
        ``.panel`` (``adcode, year, indicator, value``), ``.report``, ``.synthetic``,
        ``.employment`` (``adcode, year, sector, employment`` or None), ``.metadata``.

    Raises
    ------
    agglo.errors.ValidationError
        With one message per problem (file, row, column): unknown columns or indicators (with
        the closest registry ids), unknown or ambiguous cities (with candidates), duplicate
        city-year-indicator rows, non-numeric values, rates outside [0, 100], negative values
        where impossible, binary values other than 0/1, non-integer years; with
        ``plausibility="error"`` also every plausibility flag.
    agglo.errors.AggloInputError
        When the file cannot be read, has no city/year columns, or nothing is left after
        filtering (the message names the filter).

    Warns
    -----
    agglo.errors.AggloDataWarning
        For every city, row or value dropped or flagged as implausible (named in the message
        and listed in ``report.to_frame()``).

    Examples
    --------
    >>> res = read_panel(DEMO_PANEL)
    >>> res.synthetic, res.panel["adcode"].nunique(), sorted(res.panel["year"].unique().tolist())
    (True, 84, [2010, 2015, 2020])
    >>> res.panel.loc[0, ["adcode", "indicator"]].tolist()
    ['310100', 'avg_wage']
    >>> read_panel(DEMO_PANEL, years=[2015]).panel["year"].unique().tolist()
    [2015]
    """
    opts = panel_options(options, **overrides)
    sheet: str | int | None = opts.sheet
    columns = _all_columns(opts)
    ignore_unknown = opts.ignore_unknown
    years = opts.years
    on_unknown_city = opts.on_unknown_city
    encoding = opts.encoding
    indicator = opts.indicator
    path = Path(path)
    if not path.is_file():
        raise AggloInputError(f"panel file {path} not found")
    allowed_years = None if years is None else sorted({int(y) for y in years})
    meta = _read_sidecar(path)
    grid, how_read = _read_grid(path, sheet=sheet, encoding=encoding)
    if grid.empty or not grid.map(lambda x: not _is_missing(x)).to_numpy().any():
        raise AggloInputError(f"{path}: the file is empty (no cells with values)")
    layout = _detect_layout(grid, opts.skiprows, opts.header)
    raw = _apply_layout(grid, layout)
    report = ValidationReport(str(path))
    report.actions.append(f"read {path.name} ({how_read}): {len(raw)} data rows")
    report.layout = layout
    if layout.titles:
        report.actions.append(
            f"skipped {len(layout.titles)} line(s) above the header"
            + (" (detected)" if layout.detected else "")
            + ": "
            + "; ".join(repr(t[:60]) for t in layout.titles)
        )
    if layout.header > 1:
        report.actions.append(
            f"read {layout.header} header rows (lines {layout.skiprows + 1}-"
            f"{layout.skiprows + layout.header}), labels joined with ' | '"
        )
    if meta:
        report.actions.append(f"read metadata {path.with_suffix('.json').name}")
    problems = _Problems(path.name)
    if indicator is not None:
        raw = _years_across(raw, indicator, path)
        report.actions.append(f"read years across the columns as indicator {indicator!r}")

    plan = _plan_columns(raw, columns or {}, ignore_unknown, report, problems, opts.area)
    if plan.year is None:
        raise AggloInputError(
            f"{path}: no year column; expected one of {list(_ROLE_NAMES['year'])} "
            f"(columns: {list(raw.columns)})"
        )
    if plan.adcode is None and plan.city is None:
        raise AggloInputError(
            f"{path}: no city column; expected 'adcode' or a name column such as "
            f"{list(_ROLE_NAMES['city'][:5])} (columns: {list(raw.columns)})"
        )

    if plan.data_status is not None:
        report.actions.append(f"read and dropped the data_status column {plan.data_status!r}")
    synthetic, why = _synthetic_status(path, raw, plan, meta)
    report.synthetic = synthetic
    if synthetic:
        report.warnings.append(
            _SYNTHETIC_LINE
            if meta.get("provenance")
            else f"SYNTHETIC data ({why}): not real statistics"
        )

    # blank rows
    data_cols = [c for c in raw.columns if c not in plan.dropped and not str(c).startswith("__")]
    blank = _blank_rows(raw[data_cols])
    if blank.any():
        report.actions.append(f"skipped {int(blank.sum())} blank row(s)")
    raw = raw.loc[~blank]
    lines = raw["__line__"].astype(int)

    # long cells: line, column, city key, year raw, target kind/id, value raw
    cells = _cells(raw, plan, lines, problems)
    left = {"columns": len(cells)}
    matcher = CityMatcher(cities, load_city_aliases()) if cities is not None else _default_matcher()
    cells = _resolve_cities(cells, raw, plan, lines, matcher, on_unknown_city, report, problems)
    left["cities"] = len(cells)
    cells = _resolve_years(cells, allowed_years, str(plan.year), problems, report)
    left["years"] = len(cells)
    cells = _resolve_values(cells, report, problems)
    left["values"] = len(cells)
    _check_duplicates(cells, matcher, problems)
    problems.raise_if_any(str(path))
    _refuse_empty(path, left, opts, plan)

    panel_cells = cells[cells["target"] == "indicator"]
    if opts.plausibility != "off":
        _plausibility(panel_cells, opts, matcher, report, _agglomeration_of(cities))
        if opts.plausibility == "error" and report.flags:
            raise ValidationError([f["message"] for f in report.flags], source=str(path))
    extra_ids = set(EXTRA_VARIABLES)
    extras = _tidy(
        panel_cells[panel_cells["key"].isin(extra_ids)], "indicator", "value", PANEL_COLUMNS
    )
    panel_cells = panel_cells[~panel_cells["key"].isin(extra_ids)]
    if len(extras):
        report.actions.append(
            f"kept {extras['indicator'].nunique()} yearbook variable(s) the index does not use "
            f"in .extras: {', '.join(sorted(extras['indicator'].unique()))}"
        )
    panel = _tidy(panel_cells, "indicator", "value", PANEL_COLUMNS)
    emp_cells = cells[cells["target"] == "employment"]
    emp = _tidy(emp_cells, "sector", "employment", EMPLOYMENT_COLUMNS) if len(emp_cells) else None

    if employment is None and meta.get("employment"):
        employment = path.parent / str(meta["employment"])
    if employment is not None:
        extra = read_panel(
            employment, cities=cities, years=years, on_unknown_city=on_unknown_city
        ).employment
        if extra is None:
            raise AggloInputError(f"{employment}: no sector employment found in the file")
        emp = extra if emp is None else pd.concat([emp, extra], ignore_index=True)
        report.actions.append(f"read sector employment from {Path(employment).name}")

    provenance = _value_provenance(path, panel, meta, synthetic, report)
    if provenance is not None:
        status = {value_status(x) for x in provenance["provenance"]}
        synthetic = "synthetic" in status
        report.synthetic = synthetic
        report.data_status = (
            "synthetic" if status == {"synthetic"} else "partly synthetic" if synthetic else "real"
        )
    _summarise(panel, emp, allowed_years, cities is None, report)
    report.emit()
    result = PanelResult(
        panel, report, synthetic, emp, meta, extras if len(extras) else None, provenance
    )
    if _SYNTHETIC_LINE in report.warnings:
        line = f"SYNTHETIC data ({why}): not real statistics"
        if report.status == "partly synthetic":
            t = result.indicator_provenance()
            real = t[t["n_synthetic"] == 0]
            line = (
                f"PARTLY SYNTHETIC data: {len(t) - len(real)} of {len(t)} variables have "
                f"synthetic values ({', '.join(t.loc[t['n_synthetic'] > 0, 'indicator'])}); "
                "real or derived from real sources: "
                + ", ".join(f"{r.indicator} ({r.sources})" for r in real.itertuples())
            )
        report.warnings[report.warnings.index(_SYNTHETIC_LINE)] = line
    return result


_SYNTHETIC_LINE = "__synthetic__"


def _value_provenance(
    path: Path, panel: pd.DataFrame, meta: dict, synthetic: bool, report: ValidationReport
) -> pd.DataFrame | None:
    """One provenance label per panel value, from the file named by the sidecar's
    ``provenance`` (``adcode, year, variable|indicator, provenance``); ``None`` without one.

    Values the file does not list keep the file-level label (``synthetic`` or ``real``)."""
    named = str(meta.get("provenance") or "").split(" ")[0]
    if not named:
        return None
    file = path.parent / named
    if not file.is_file():
        raise AggloInputError(f"{path.with_suffix('.json').name}: provenance file {file} not found")
    table = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    table = table.rename(columns={"variable": "indicator"})
    need = {"adcode", "year", "indicator", "provenance"}
    if not need <= set(table.columns):
        raise AggloInputError(
            f"{file}: a provenance file needs columns adcode, year, variable (or indicator) "
            f"and provenance; got {list(table.columns)}"
        )
    table["adcode"] = table["adcode"].str.strip().str.zfill(6)
    table["year"] = pd.to_numeric(table["year"], errors="coerce").astype("Int64")
    keys = ["adcode", "year", "indicator"]
    out = panel[keys].merge(
        table[[*keys, "provenance"]].drop_duplicates(keys).astype({"year": "int64"}),
        on=keys,
        how="left",
    )
    unlisted = out["provenance"].isna() | (out["provenance"] == "")
    out["provenance"] = out["provenance"].where(~unlisted, "synthetic" if synthetic else "real")
    report.actions.append(
        f"read per-value provenance from {file.name}"
        + (
            f"; {int(unlisted.sum())} value(s) not listed kept the file's label"
            if unlisted.any()
            else ""
        )
    )
    return out


@dataclass
class PanelInspection:
    """What :func:`inspect_panel` found in a file, without reading a single value.

    Attributes
    ----------
    columns
        One row per column: ``column, target`` (registry id, role, ``""`` = dropped),
        ``kind`` (role, indicator, extra, sector, dropped, unknown), ``reason``, ``area``
        (whole_city / urban_districts), ``unit`` (as written in the header), ``registry_unit``
        and ``closest`` (proposals for unknown columns; never applied).
    cities
        One row per distinct city key: ``value, adcode, status`` (matched, outside,
        abolished, unknown, ...), ``how``, ``message``.
    layout
        Header rows, lines skipped above the header (titles), and how the file was read.
    """

    source: str
    columns: pd.DataFrame
    cities: pd.DataFrame
    layout: dict[str, Any]

    def columns_file(self) -> pd.DataFrame:
        """The ``columns_file`` a user edits and passes back (``[panel] columns_file``):
        ``column, target, closest`` (an empty target drops the column)."""
        return self.columns.loc[:, ["column", "target", "closest"]]

    def lines(self) -> list[str]:
        """The inspection as text (what ``agglo panel inspect`` prints)."""
        lay = self.layout
        out = [
            f"{Path(self.source).name}: {lay['how']}; {lay['header']} header row(s) at line "
            f"{lay['skiprows'] + 1}"
            + (f"; {len(lay['titles'])} title line(s) above" if lay["titles"] else ""),
            "",
            "columns:",
        ]
        for r in self.columns.itertuples():
            arrow = r.target if r.target else "(dropped)"
            unit = f"; unit {r.unit!r}" if r.unit and repr(r.unit) not in r.reason else ""
            reg = f" (registry: {r.registry_unit})" if r.registry_unit else ""
            close = f"; closest: {r.closest}" if r.closest else ""
            out.append(f"  {r.column!r} -> {arrow} [{r.kind}] {r.reason}{unit}{reg}{close}")
        counts = self.cities["status"].value_counts()
        out += ["", "cities: " + ", ".join(f"{n} {k}" for k, n in counts.items())]
        for status in [k for k in counts.index if k != "matched"]:
            vals = self.cities.loc[self.cities["status"] == status, "value"].astype(str)
            more = f" ... and {len(vals) - 20} more" if len(vals) > 20 else ""
            out.append(f"  {status}: {', '.join(vals[:20])}{more}")
        return out


def inspect_panel(
    path: str | Path,
    options: PanelOptions | None = None,
    *,
    cities: pd.DataFrame | None = None,
    **overrides: Any,
) -> PanelInspection:
    """How :func:`read_panel` would read a file: header -> indicator mapping with the reason
    for each, detected header rows and titles, units, and city matches. Computes nothing.

    Parameters are those of :func:`read_panel`; unknown columns are listed with the closest
    registry ids (proposals, never applied), not refused.

    Examples
    --------
    >>> ins = inspect_panel(DEMO_PANEL)
    >>> ins.columns.set_index("column").loc["gdp_per_capita", ["target", "kind"]].tolist()
    ['gdp_per_capita', 'indicator']
    >>> ins.cities["status"].value_counts().to_dict()
    {'matched': 84}
    """
    opts = panel_options(options, **overrides)
    path = Path(path)
    if not path.is_file():
        raise AggloInputError(f"panel file {path} not found")
    grid, how_read = _read_grid(path, sheet=opts.sheet, encoding=opts.encoding)
    if grid.empty:
        raise AggloInputError(f"{path}: the file is empty (no cells with values)")
    layout = _detect_layout(grid, opts.skiprows, opts.header)
    raw = _apply_layout(grid, layout)
    if opts.indicator is not None:
        raw = _years_across(raw, opts.indicator, path)
    report = ValidationReport(str(path))
    user = _all_columns(opts)
    plan = _plan_columns(raw, user, True, report, _Problems(path.name), opts.area)
    roles = {getattr(plan, r): r for r in (*_ROLES, "data_status") if getattr(plan, r) is not None}
    rows = []
    for col in raw.columns:
        label = str(col)
        if label.startswith("__"):
            continue
        _, area, unit = header_parts(label)
        target, kind, reason, closest, registry_unit = "", "dropped", "", "", ""
        if col in roles:
            target, kind = roles[col], "role"
        elif col in plan.indicators:
            target = plan.indicators[col]
            kind = "extra" if target in EXTRA_VARIABLES else "indicator"
            registry_unit = READABLE[target].unit
        elif col in plan.sectors:
            target, kind = f"employment_{plan.sectors[col]}", "sector"
        if label in user or _norm(label) in {_norm(k) for k in user}:
            reason = "columns mapping"
        elif kind == "role":
            reason = "role name"
        elif kind in ("indicator", "extra"):
            reason = "registry name or alias" if _norm(label) in _KEYS else f"header {_why(label)}"
        elif kind == "sector":
            reason = "employment_<sector> column"
        else:
            said = [a for a in report.actions + report.warnings if repr(label) in a]
            if any("unknown column" in a for a in said):
                kind, reason = "unknown", "matches no registry variable"
                closest = ", ".join(_closest_ids(label))
            else:
                reason = said[0] if said else "dropped"
        rows.append(
            {"column": label, "target": target, "kind": kind, "reason": reason, "area": area or "",
             "unit": unit or "", "registry_unit": registry_unit, "closest": closest}
        )  # fmt: skip
    columns = pd.DataFrame(
        rows,
        columns=["column", "target", "kind", "reason", "area", "unit", "registry_unit", "closest"],
    )
    key = plan.adcode if plan.adcode is not None else plan.city
    city_table = pd.DataFrame(columns=["value", "year", "adcode", "status", "how", "message"])
    if key is not None:
        from agglo.reference.names import match_cities

        data = raw[[key] + ([plan.year] if plan.year is not None else [])].copy()
        data = data[~data[key].map(_is_missing)]
        years = data[plan.year].map(_to_year) if plan.year is not None else None
        first = data.assign(__y=years).drop_duplicates(key)
        target_cities = cities if cities is not None else _default_matcher_cities()
        city_table = match_cities(
            first[key].astype(str).tolist(),
            first["__y"].tolist() if years is not None else None,
            cities=target_cities,
        )
    return PanelInspection(
        str(path),
        columns,
        city_table,
        {"how": how_read, "header": layout.header, "skiprows": layout.skiprows,
         "titles": list(layout.titles), "detected": layout.detected},
    )  # fmt: skip


def _default_matcher_cities() -> pd.DataFrame:
    from agglo.reference.boundaries import load_cities

    return pd.DataFrame(load_cities().drop(columns="geometry"))


def _refuse_empty(path: Path, left: dict[str, int], opts: PanelOptions, plan: _Plan) -> None:
    """An empty result is an error naming the step (filter) that removed every value."""
    if left["values"]:
        return
    if not left["columns"]:
        why = (
            f"no indicator columns left (ignore_unknown=True dropped {len(plan.dropped)} "
            "column(s)); map them with columns={...}"
            if opts.ignore_unknown
            else "no indicator columns"
        )
    elif not left["cities"]:
        why = (
            "on_unknown_city='drop' dropped every row: none of its cities is in the city table "
            "(pass cities=... or check the city/adcode column)"
        )
    elif not left["years"]:
        why = f"years={list(opts.years or [])} selected no row (see the file's year column)"
    else:
        why = "every value is empty"
    raise AggloInputError(f"{path}: nothing left to read: {why}")


def panel_options(options: PanelOptions | None = None, **overrides: Any) -> PanelOptions:
    """``options`` (default ``PanelOptions()``) with ``overrides`` applied and validated.

    Ranges and lists of years become tuples; a ``columns`` mapping becomes a dict.

    Examples
    --------
    >>> panel_options(years=range(2010, 2013)).years
    (2010, 2011, 2012)
    """
    base = options if options is not None else PanelOptions()
    if not overrides:
        return base
    valid = [s.name for s in PanelOptions.specs()]
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        PanelOptions.from_dict({k: overrides[k] for k in unknown})  # raises, naming them
    if overrides.get("years") is not None:
        overrides["years"] = tuple(int(y) for y in overrides["years"])
    if overrides.get("columns") is not None:
        overrides["columns"] = dict(overrides["columns"])
    elif "columns" in overrides:
        overrides["columns"] = {}
    if isinstance(overrides.get("sheet"), int):
        overrides["sheet"] = str(overrides["sheet"])
    return base.replace(**overrides)


def _all_columns(opts: PanelOptions) -> dict[str, str | None]:
    """The ``columns`` mapping with ``columns_file`` merged under it; ''/'none' mean drop."""
    out: dict[str, str | None] = {}
    if opts.columns_file:
        path = Path(opts.columns_file)
        if not path.is_file():
            raise AggloInputError(f"columns_file {path} not found")
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if not {"column", "target"} <= set(table.columns):
            raise AggloInputError(
                f"columns_file {path}: needs columns 'column' and 'target'; got "
                f"{list(table.columns)}"
            )
        out.update(zip(table["column"], table["target"], strict=True))
    out.update(opts.columns)
    return {
        k: (None if v is None or str(v).strip().lower() in ("", "none") else v)
        for k, v in out.items()
    }


def _years_across(raw: pd.DataFrame, indicator: str, path: Path) -> pd.DataFrame:
    """Cities down, years across -> long form (``year``, ``indicator``, ``value`` columns)."""
    rid = registry_column(indicator)
    if rid is None:
        raise AggloInputError(
            f"indicator={indicator!r} is not in the registry; closest: "
            f"{', '.join(_closest_ids(indicator))}"
        )
    year_cols = [
        c
        for c in raw.columns
        if re.fullmatch(r"(19|20)\d\d(年)?(\.0)?", _norm(c).removesuffix("年"))
    ]
    clash = [c for c in raw.columns if _ROLE_OF.get(_norm(c)) in ("year", "indicator", "value")]
    if not year_cols or clash:
        raise AggloInputError(
            f"{path}: indicator= expects a table with years across the columns (e.g. 2010, "
            f"2015年) and no year/indicator/value column; got columns {list(raw.columns)}"
        )
    ids = [c for c in raw.columns if c not in year_cols]
    long = raw.melt(id_vars=ids, value_vars=year_cols, var_name="__column__", value_name="value")
    long["__column__"] = long["__column__"].astype(str)
    long["year"] = long["__column__"]
    long["indicator"] = rid
    return long.sort_values(["__line__", "year"], kind="stable").reset_index(drop=True)


def read_employment(path: str | Path, **kwargs: object) -> pd.DataFrame:
    """Read sector employment (long ``adcode|city, year, sector, employment`` or wide
    ``employment_<sector>`` columns), validated like :func:`read_panel`.

    Returns
    -------
    pandas.DataFrame
        ``adcode``, ``year``, ``sector`` (snake_case label as given), ``employment``
        (10k persons, non-negative).

    Examples
    --------
    >>> emp = read_employment(DEMO_EMPLOYMENT)
    >>> emp["sector"].nunique(), emp["adcode"].nunique()
    (6, 84)
    """
    res = read_panel(path, **kwargs)  # type: ignore[arg-type]
    if res.employment is None:
        raise AggloInputError(
            f"{path}: no sector employment found; expected long columns 'sector' and "
            "'employment' or wide columns named employment_<sector>"
        )
    return res.employment


def _agglomeration_of(cities: pd.DataFrame | None) -> dict[str, str]:
    """adcode -> agglomeration id of the member cities (the bundled membership by default)."""
    if cities is None:
        from agglo.reference.boundaries import load_membership

        cities = load_membership()
    if "agglomeration_id" not in cities:
        return {}
    m = cities[cities["agglomeration_id"].notna()]
    return dict(zip(m["adcode"].astype(str), m["agglomeration_id"].astype(str), strict=True))


@functools.lru_cache(maxsize=1)
def _default_matcher() -> CityMatcher:
    from agglo.reference.boundaries import load_cities

    return CityMatcher(pd.DataFrame(load_cities().drop(columns="geometry")), load_city_aliases())


@dataclass
class _Plan:
    adcode: str | None = None
    city: str | None = None
    year: str | None = None
    indicator: str | None = None
    value: str | None = None
    sector: str | None = None
    employment: str | None = None
    data_status: str | None = None
    indicators: dict[str, str] = field(default_factory=dict)  # column -> registry id
    sectors: dict[str, str] = field(default_factory=dict)  # column -> sector id
    dropped: list[str] = field(default_factory=list)

    @property
    def long(self) -> bool:
        return self.indicator is not None and self.value is not None

    @property
    def long_employment(self) -> bool:
        return self.sector is not None and self.employment is not None


_ROLES = ("adcode", "city", "year", "indicator", "value", "sector", "employment")


def _target_of(target: str) -> tuple[str, str] | None:
    """Classify a user mapping target: (role, ...) or ('var', id) or ('sector', id)."""
    t = _norm(target)
    if t in _ROLES:
        return ("role", t)
    if t == "data_status":
        return ("role", "data_status")
    for pre in _EMPLOYMENT_PREFIXES:
        if t.startswith(pre) and len(t) > len(pre):
            return ("sector", _sector_id(t[len(pre) :]))
    rid = registry_column(target)
    return ("var", rid) if rid else None


def _plan_columns(
    raw: pd.DataFrame,
    user: Mapping[str, str | None],
    ignore_unknown: bool,
    report: ValidationReport,
    problems: _Problems,
    prefer_area: str = "whole_city",
) -> _Plan:
    plan = _Plan()
    user_norm = {_norm(k): v for k, v in user.items()}
    unused = set(user)
    seen_var: dict[str, str] = {}
    for col in raw.columns:
        label = str(col)
        if label in ("__line__", "__column__"):
            continue
        key = _norm(label)
        if label in user or key in user_norm:
            unused.discard(label)
            unused -= {k for k in user if _norm(k) == key}
            target = user[label] if label in user else user_norm[key]
            if target is None:
                plan.dropped.append(col)
                report.actions.append(f"dropped column {label!r} (columns mapping)")
                continue
            kind = _target_of(target)
            if kind is None:
                raise AggloInputError(
                    f"columns mapping {label!r} -> {target!r}: unknown target; use a registry "
                    f"id (closest: {', '.join(_closest_ids(target))}), one of {list(_ROLES)}, "
                    "employment_<sector>, or None"
                )
        elif key in _ROLE_OF:
            kind = ("role", _ROLE_OF[key])
        elif key == "data_status":
            kind = ("role", "data_status")
        elif key.startswith("unnamed:") or key == "":
            if raw[col].map(_is_missing).all():
                plan.dropped.append(col)
                report.actions.append(f"dropped empty unnamed column {label!r}")
                continue
            kind = None
        elif key in _META:
            plan.dropped.append(col)
            report.actions.append(f"ignored descriptive column {label!r}")
            continue
        else:
            kind = _target_of(label)
        if kind is None:
            msg = (
                f"unknown indicator column; closest registry ids: {', '.join(_closest_ids(label))}."
                " Rename the column, pass columns={...}, or ignore_unknown=True"
            )
            if ignore_unknown:
                plan.dropped.append(col)
                report.data_warning(f"dropped unknown column {label!r} ({msg.split(';')[1]})")
            else:
                problems.add(1, label, msg)
            continue
        what, name = kind
        if what == "role":
            current = getattr(plan, name)
            if current is not None:
                problems.add(1, label, f"second {name} column (the first is {current!r})")
            else:
                setattr(plan, name, col)
        elif what == "var":
            area = header_parts(label)[1]
            if name in seen_var and area and area != header_parts(seen_var[name])[1]:
                prev = seen_var[name]
                keep, drop = (label, prev) if area == prefer_area else (prev, label)
                plan.indicators.pop(prev, None)
                plan.indicators[keep] = name
                seen_var[name] = keep
                plan.dropped.append(drop)
                report.actions.append(
                    f"{name}: used column {keep!r} and dropped {drop!r} (area={prefer_area!r}: "
                    "全市 whole city is preferred over 市辖区 urban districts by default)"
                )
            elif name in seen_var:
                problems.add(
                    1, label, f"column maps to {name!r}, as column {seen_var[name]!r} does"
                )
            else:
                seen_var[name] = label
                plan.indicators[col] = name
                if _norm(label) not in _KEYS:
                    report.actions.append(f"column {label!r} read as {name} ({_why(label)})")
        else:
            plan.sectors[col] = name
    if unused:
        raise AggloInputError(f"columns mapping names column(s) not in the file: {sorted(unused)}")
    if plan.long and plan.indicators:
        for col in plan.indicators:
            problems.add(
                1,
                str(col),
                "indicator column in a long-form file (which has 'indicator' and 'value'); "
                "use one form per file",
            )
    if plan.long_employment and plan.sectors:
        plan.sectors = {}
    if (plan.value is None) != (plan.indicator is None):
        have = plan.indicator if plan.indicator is not None else plan.value
        problems.add(1, str(have), "long form needs both an 'indicator' and a 'value' column")
    if (plan.sector is None) != (plan.employment is None):
        have = plan.sector if plan.sector is not None else plan.employment
        problems.add(1, str(have), "employment needs both a 'sector' and an 'employment' column")
    return plan


def _blank_rows(df: pd.DataFrame) -> pd.Series:
    """Rows whose every cell is missing (checked column by column on the remaining rows)."""
    cand = df.index
    for col in df.columns:
        if not len(cand):
            break
        miss = df.loc[cand, col].map(_is_missing).astype(bool)
        cand = miss.index[miss.to_numpy()]
    return pd.Series(df.index.isin(cand), index=df.index)


def _synthetic_status(path: Path, raw: pd.DataFrame, plan: _Plan, meta: dict) -> tuple[bool, str]:
    reasons = []
    if "synthetic" in path.name.lower():
        reasons.append("file name")
    if plan.data_status is not None:
        vals = {str(v).strip().lower() for v in raw[plan.data_status] if not _is_missing(v)}
        if "synthetic" in vals:
            reasons.append("data_status column")
    if str(meta.get("data_status", "")).lower() == "synthetic":
        reasons.append("metadata")
    return bool(reasons), ", ".join(reasons)


def _cells(raw: pd.DataFrame, plan: _Plan, lines: pd.Series, problems: _Problems) -> pd.DataFrame:
    """Melt the table into one row per value: line, column, target, key, year, value."""
    base = pd.DataFrame(
        {
            "line": lines,
            "year_raw": raw[plan.year] if plan.year is not None else None,
            "row": raw.index,
        }
    )
    parts = []
    if plan.long:
        labels = raw[plan.indicator]
        ids = labels.map(lambda s: _long_target(s))
        for idx in ids.index[ids.isna()]:
            lab = labels.loc[idx]
            if _is_missing(lab):
                problems.add(int(lines.loc[idx]), str(plan.indicator), "empty indicator name")
            else:
                problems.add(
                    int(lines.loc[idx]),
                    str(plan.indicator),
                    f"unknown indicator {str(lab)!r}; closest registry ids: "
                    f"{', '.join(_closest_ids(str(lab)))}",
                )
        ok = ids.notna()
        parts.append(
            base[ok].assign(
                column=raw.loc[ok, "__column__"] if "__column__" in raw else str(plan.value),
                target=[t for t, _ in ids[ok]],
                key=[k for _, k in ids[ok]],
                value_raw=raw.loc[ok, plan.value],
            )
        )
    if plan.long_employment:
        parts.append(
            base.assign(
                column=str(plan.employment),
                target="employment",
                key=raw[plan.sector].map(_sector_id),
                value_raw=raw[plan.employment],
            )
        )
    for col, rid in plan.indicators.items():
        parts.append(base.assign(column=str(col), target="indicator", key=rid, value_raw=raw[col]))
    for col, sid in plan.sectors.items():
        parts.append(base.assign(column=str(col), target="employment", key=sid, value_raw=raw[col]))
    cols = ["line", "row", "year_raw", "column", "target", "key", "value_raw"]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def _long_target(label: object) -> tuple[str, str] | None:
    if _is_missing(label):
        return None
    rid = registry_column(str(label))
    if rid:
        return ("indicator", rid)
    t = _norm(label)
    for pre in _EMPLOYMENT_PREFIXES:
        if t.startswith(pre) and len(t) > len(pre):
            return ("employment", _sector_id(t[len(pre) :]))
    return None


def _resolve_cities(
    cells: pd.DataFrame,
    raw: pd.DataFrame,
    plan: _Plan,
    lines: pd.Series,
    matcher: CityMatcher,
    on_unknown_city: str,
    report: ValidationReport,
    problems: _Problems,
) -> pd.DataFrame:
    codes = raw[plan.adcode] if plan.adcode is not None else pd.Series(None, index=raw.index)
    names = raw[plan.city] if plan.city is not None else pd.Series(None, index=raw.index)
    years = raw[plan.year].map(_to_year)
    keys: dict[tuple[str, str], list] = {}
    line_of = dict(zip(lines.index, lines.to_numpy(), strict=True))
    year_of = dict(zip(years.index, years.to_numpy(), strict=True))
    for idx, c, n in zip(raw.index, codes.to_numpy(), names.to_numpy(), strict=True):
        c = None if _is_missing(c) else str(c).strip()
        n = None if _is_missing(n) else str(n).strip()
        keys.setdefault((c or "", n or ""), []).append(idx)
    adcode_of_row: dict[object, str] = {}
    dropped: list[str] = []
    abolished: list[str] = []
    outside: list[str] = []
    outside_lines: list[int] = []
    for (c, n), idxs in keys.items():
        row_lines = sorted({int(line_of[i]) for i in idxs})
        max_year = max((y for i in idxs if (y := year_of[i]) is not None), default=None)
        col = str(plan.adcode) if c else str(plan.city)
        if c:
            m: CityMatch = matcher.match_adcode(c, year=max_year)
        elif n:
            m = matcher.match_name(n, year=max_year)
        else:
            for ln in row_lines:
                problems.add(ln, col if plan.city is None else str(plan.city), "empty city")
            continue
        if m.adcode is None:
            if m.outside:
                outside.append(f"{c or n}" if not m.error else _outside_label(c or n, m))
                outside_lines.append(row_lines[0])
                continue
            if (m.unknown or m.abolished) and on_unknown_city == "drop":
                what = abolished if m.abolished else dropped
                what.append(f"{m.error if m.abolished else repr(c or n)} ({_rows_text(row_lines)})")
                continue
            hint = (
                ""
                if m.error.count("candidates") or m.error.count("closest")
                else (f"; did you mean: {', '.join(m.candidates)}" if m.candidates else "")
            )
            problems.add(row_lines[0], col, f"{m.error}{hint} ({_rows_text(row_lines)})")
            continue
        if m.warning and "after it went out of use" in m.warning:
            report.data_warning(f"{_rows_text(row_lines)}: {m.warning}")
        elif m.warning:  # a former name or code used while it was valid: a recorded mapping
            report.actions.append(f"{_rows_text(row_lines)}: {m.warning}")
        if c and n:
            mn = matcher.match_name(n)
            if mn.adcode is not None and mn.adcode != m.adcode:
                report.data_warning(
                    f"{_rows_text(row_lines)}: adcode {m.adcode} ({matcher.names[m.adcode]}) "
                    f"but name {n!r} matches {matcher.label(mn.adcode)}; the adcode is used"
                )
        elif n and m.how == "name stem":
            report.actions.append(f"city {n!r} matched to {matcher.label(m.adcode)} by name")
        for i in idxs:
            adcode_of_row[i] = m.adcode
    if dropped:
        report.data_warning(
            f"dropped rows of {len(dropped)} unknown cit(y/ies) (on_unknown_city='drop'): "
            + "; ".join(dropped)
        )
    for text in abolished:
        report.data_warning(f"dropped rows of an abolished unit (on_unknown_city='drop'): {text}")
    if outside:
        listing = ", ".join(outside)
        if on_unknown_city == "drop":
            report.data_warning(
                f"dropped {len(outside)} prefecture-level unit(s) outside the city table "
                f"(on_unknown_city='drop'): {listing}"
            )
        else:
            problems.add(
                min(outside_lines),
                str(plan.adcode if plan.adcode is not None else plan.city),
                f"{len(outside)} prefecture-level unit(s) outside the city table (a national "
                f"table?): {listing}. Pass on_unknown_city='drop' to drop them, or cities=... "
                "to match against another table",
            )
    cells = cells.assign(adcode=cells["row"].map(adcode_of_row))
    return cells[cells["adcode"].notna()]


FLAG_COLUMNS = ["check", "row", "column", "adcode", "year", "indicator", "value", "factor"]
_ABSURD = 1e12
#: columns with fewer values are only checked for absurd magnitudes (too few to judge a scale)
_MIN_CHECKED = 5


def _plausibility(
    cells: pd.DataFrame,
    opts: PanelOptions,
    matcher: CityMatcher,
    report: ValidationReport,
    groups: Mapping[str, str] | None = None,
) -> None:
    """Flag implausible values (see :class:`PanelOptions`.plausibility); one warning per check
    and column naming the cities, every flag in ``report.flags``. ``groups`` (adcode ->
    agglomeration id) enables the robust outlier check within an agglomeration-year."""
    if cells.empty:
        return
    groups = groups or {}
    found: list[dict] = []

    def flag(check: str, r: Any, what: str, factor: float | None = None) -> None:
        city = matcher.label(r.adcode)
        found.append(
            {
                "check": check,
                "row": int(r.line),
                "column": r.column,
                "adcode": r.adcode,
                "year": int(r.year),
                "indicator": r.key,
                "value": float(r.value),
                "factor": factor,
                "message": f"row {int(r.line)}, column {r.column!r}, {city} {int(r.year)}: "
                f"{r.value:g} {what}",
            }
        )

    for (col, key), g in cells.groupby(["column", "key"], sort=False):
        var = READABLE[key]
        lo, hi = UNIT_RANGES.get(var.unit, (-np.inf, np.inf))
        v = g["value"].astype(float)
        absurd = v.abs() > _ABSURD
        for r in g[absurd].itertuples():
            flag("absurd", r, f"is an absurd magnitude for {key} ({var.unit})")
        g, v = g[~absurd], v[~absurd]
        if len(g) < _MIN_CHECKED:
            continue
        med = float(v[v != 0].median()) if (v != 0).any() else 0.0
        column_factor = None
        fraction = var.kind == "rate" and 0 < med <= 1  # 0.77 for 77 %, 0.0087 for 87 %
        if med > 0 and (fraction or not lo <= med <= hi):
            column_factor = _power_of_ten(np.sqrt(max(lo, 1e-9) * hi) / med)
            if fraction:
                column_factor = 100.0 if med > 0.02 else 10_000.0
            r0 = g.iloc[0]
            found.append(
                {
                    "check": "column_scale",
                    "row": int(g["line"].min()),
                    "column": col,
                    "adcode": None,
                    "year": None,
                    "indicator": key,
                    "value": med,
                    "factor": column_factor,
                    "message": f"column {col!r} ({key}): median {med:g} is outside the plausible "
                    f"range {lo:g}-{hi:g} {var.unit}; a scale error? multiply by "
                    f"{column_factor:g} (e.g. row {int(r0.line)})",
                }
            )
            continue  # the whole column is off: per-city range checks would repeat it
        for r in g[(v < lo) | (v > hi)].itertuples():
            what = "is zero" if r.value == 0 and lo > 0 else "is outside the plausible range"
            flag("range", r, f"{what} ({lo:g}-{hi:g} {var.unit}) of {key}")
        # one city on another scale than the rest of its column-year (南京 0.77 among 77s)
        for r, q, m in _city_scale_outliers(g):
            flag("city_scale", r, f"is {q:.3g}× the median {m:g} of {key} that year; "
                 f"a scale error? multiply by {_power_of_ten(1 / q):g}", _power_of_ten(1 / q))  # fmt: skip
        scaled = {(int(f["row"]), f["column"]) for f in found}  # flagged already
        # intensive levels and rates only: sizes (population, GDP) and shares near zero (FDI /
        # GDP, patents) differ by large factors between cities legitimately
        intensive = var.kind == "rate" or (lo > 0 and var.unit not in _EXTENSIVE_UNITS)
        for r, z, m in _robust_outliers(g, groups, opts.outlier_z if intensive else 0):
            if (int(r.line), r.column) not in scaled:
                flag("outlier", r, f"is a robust outlier among the {r.group} cities that year "
                     f"(median {m:g}, robust z {z:+.1f}; |z| > {opts.outlier_z:g})")  # fmt: skip
        if not lo > 0:  # shares near zero (FDI / GDP) jump by large factors legitimately
            continue
        # jumps of one city between observed years (levels: incomes, wages, populations)
        srt = g.sort_values(["adcode", "year"])
        prev = srt.groupby("adcode")["value"].shift()
        prev_year = srt.groupby("adcode")["year"].shift()
        ok = (prev > 0) & (srt["value"] > 0)
        q = srt["value"] / prev
        jump = ok & ((q > opts.jump_factor) | (q < 1 / opts.jump_factor))
        for r, p, py in zip(srt[jump].itertuples(), prev[jump], prev_year[jump], strict=True):
            flag("jump", r, f"after {p:g} in {int(py)} (×{r.value / p:.3g}; more than "
                 f"×{opts.jump_factor:g} or under ÷{opts.jump_factor:g})")  # fmt: skip
    report.flags.extend(found)
    by: dict[tuple[str, str], list[dict]] = {}
    for f in found:
        by.setdefault((f["check"], f["column"]), []).append(f)
    for (check, col), fs in by.items():
        shown = "; ".join(f["message"] for f in fs[:5])
        more = f" ... and {len(fs) - 5} more (panel_validation.csv)" if len(fs) > 5 else ""
        report.data_warning(
            f"plausibility {check}, column {col!r}: {len(fs)} flag(s): {shown}{more}"
        )


_EXTENSIVE_UNITS = {"10k persons", "100 million yuan", "beds"}


def _city_scale_outliers(g: pd.DataFrame) -> list[tuple[Any, float, float]]:
    """Values more than ×30 or under ÷30 off the median of the positive values of their year.

    Years with fewer than 5 rows are skipped. Returns ``(row, ratio, median)`` ordered by year,
    then by row order in ``g`` (one grouped pass; same flags as a loop over the years).
    """
    value = g["value"]
    positive = value > 0
    year = g["year"]
    median = value.where(positive).groupby(year, sort=False).transform("median")
    rows_in_year = year.groupby(year, sort=False).transform("size")
    ratio = value / median
    odd = (rows_in_year >= 5) & positive & ((ratio < 1 / 30) | (ratio > 30))
    return _ordered_hits(g, odd, ["year"], ratio, median)


def _ordered_hits(
    g: pd.DataFrame, hit: pd.Series, by: list[str], stat: pd.Series, centre: pd.Series
) -> list[tuple[Any, float, float]]:
    """``(row, stat, centre)`` of the rows of ``g`` where ``hit``, in the order a sorted
    ``groupby(by)`` loop visits them (groups by key, rows in ``g``'s order within a group)."""
    if not hit.any():
        return []
    rows = g[hit.to_numpy()].sort_values(by, kind="stable")
    return [
        (r, float(q), float(c))
        for r, q, c in zip(
            rows.itertuples(), stat.loc[rows.index], centre.loc[rows.index], strict=True
        )
    ]


def _robust_outliers(
    g: pd.DataFrame, groups: Mapping[str, str], threshold: float
) -> list[tuple[Any, float, float]]:
    """Values far from their agglomeration-year's median: robust z = 0.6745 (x − median) / MAD
    on logs of the positive values (the MAD has a floor of 0.15, so with ``threshold`` 5 a value
    must also be more than ×3 or under ÷3 off the median).

    Returns ``(row, z, median)`` for every ``|z| > threshold`` in groups of at least 5 cities,
    ordered by group, year, then row order in ``g`` (one grouped pass over all groups).
    """
    if not groups or not threshold:
        return []
    d = g.assign(group=g["adcode"].map(groups)).dropna(subset=["group"])
    d = d[d["value"].astype(float) > 0]  # zeros are range flags already
    if d.empty:
        return []
    keys = [d["group"], d["year"]]
    t = np.log(d["value"].astype(float))
    cities = t.groupby(keys, sort=False).transform("size")
    med = t.groupby(keys, sort=False).transform("median")
    # the floor: tightly clustered cities (MAD ≈ 0) do not make every other value odd
    mad = (t - med).abs().groupby(keys, sort=False).transform("median").clip(lower=0.15)
    z = 0.6745 * (t - med) / mad
    far = (cities >= 5) & (z.abs() > threshold)
    return _ordered_hits(d, far, ["group", "year"], z, np.exp(med))


def _power_of_ten(x: float) -> float:
    """The power of ten nearest to ``x`` (for suggested scale factors)."""
    return float(10 ** round(np.log10(x))) if x > 0 and np.isfinite(x) else float("nan")


def _outside_label(given: str, m: CityMatch) -> str:
    """``230900 七台河市`` (or ``那曲地区 (540600 那曲市)`` for a former name) for the one-line
    list of units outside the table."""
    found = re.search(r"is (\d{6}|-) (\S+) \(", m.error)
    if not found:
        return given
    code, name = found.groups()
    return f"{code} {name}" if given in (name, code) else f"{given} ({code} {name})"


def _resolve_years(
    cells: pd.DataFrame,
    allowed: list[int] | None,
    year_col: str,
    problems: _Problems,
    report: ValidationReport,
) -> pd.DataFrame:
    first = cells.drop_duplicates("row")
    last_ok = _dt.date.today().year
    bad_rows: set[object] = set()
    unselected: set[object] = set()
    year_of_row = {}
    for row, line, y in zip(first["row"], first["line"], first["year_raw"], strict=True):
        v = year_of_row[row] = _to_year(y)
        if v is None:
            problems.add(int(line), year_col, f"year {y!r} is not an integer year")
            bad_rows.add(row)
        elif not _FIRST_YEAR <= v <= last_ok:
            problems.add(int(line), year_col, f"year {v} outside {_FIRST_YEAR}-{last_ok}")
            bad_rows.add(row)
        elif allowed is not None and v not in allowed:
            unselected.add(row)
    if unselected:
        other = sorted({year_of_row[r] for r in unselected})
        report.actions.append(
            f"years={_years_text(allowed or [])}: left out {len(unselected)} row(s) of other "
            f"years ({_years_text(other)})"
        )
    cells = cells[~cells["row"].isin(bad_rows | unselected)]
    return cells.assign(year=cells["row"].map(year_of_row))


def _years_text(years: list[int]) -> str:
    """``[2010, 2015]``, or runs such as ``2000-2011, 2013-2020`` for long lists.

    Examples
    --------
    >>> _years_text([2010, 2015]), _years_text([*range(2000, 2012), *range(2013, 2021)])
    ('[2010, 2015]', '2000-2011, 2013-2020')
    """
    if len(years) <= 3:
        return str(years)
    runs: list[list[int]] = []
    for y in years:
        if runs and y == runs[-1][-1] + 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _resolve_values(
    cells: pd.DataFrame, report: ValidationReport, problems: _Problems
) -> pd.DataFrame:
    fast = pd.to_numeric(cells["value_raw"], errors="coerce")
    values = fast.astype(float).where(np.isfinite(fast.astype(float)))
    slow = values.isna()
    parsed = [_to_float(v) for v in cells.loc[slow, "value_raw"]]
    values[slow] = np.array([np.nan if v is None else v for v in parsed], dtype=float)
    values = values.astype(float)
    missing = pd.Series(False, index=cells.index)
    missing[slow] = cells.loc[slow, "value_raw"].map(_is_missing).astype(bool)
    bad = values.isna() & ~missing
    for line, col, v in zip(
        cells.loc[bad, "line"], cells.loc[bad, "column"], cells.loc[bad, "value_raw"], strict=True
    ):
        problems.add(int(line), col, f"non-numeric value {v!r}")
    if missing.any():
        per_col = cells[missing].groupby("column", sort=False)["line"].apply(list)
        detail = "; ".join(f"{c!r}: {_rows_text(ls)}" for c, ls in per_col.items())
        report.actions.append(f"dropped {int(missing.sum())} empty value(s): {detail}")
    cells = cells.assign(value=values)
    cells = cells[values.notna()]
    ind = cells["target"] == "indicator"
    kinds = cells["key"].map({k: v.kind for k, v in READABLE.items()}).where(ind, "nonneg")
    v = cells["value"]
    checks = [
        ((kinds == "rate") & ((v < 0) | (v > 100)), "rate outside [0, 100]"),
        ((kinds == "nonneg") & (v < 0), "negative value where values cannot be negative"),
        # zero where a value must be positive is a plausibility flag ("is zero"), so a real
        # yearbook with zero-filled gaps can still be read and explained
        ((kinds == "positive") & (v < 0), "value must be positive (> 0)"),
        ((kinds == "binary") & ~v.isin([0.0, 1.0]), "binary indicator must be 0 or 1"),
    ]
    for mask, what in checks:
        for line, col, key, val in zip(
            cells.loc[mask, "line"],
            cells.loc[mask, "column"],
            cells.loc[mask, "key"],
            cells.loc[mask, "value"],
            strict=True,
        ):
            unit = READABLE[key].unit if key in READABLE else "10k persons"
            problems.add(int(line), col, f"{what}: {val:g} ({key}, {unit})")
    return cells


def _check_duplicates(cells: pd.DataFrame, matcher: CityMatcher, problems: _Problems) -> None:
    dup = cells[cells.duplicated(["target", "adcode", "year", "key"], keep=False)]
    if dup.empty:
        return
    groups = dup.groupby(["target", "adcode", "year", "key"], sort=True)["line"].apply(
        lambda s: tuple(sorted(s))
    )
    by_rows: dict[tuple, list[str]] = {}
    for (target, adcode, year, key), ls in groups.items():
        by_rows.setdefault((ls, adcode, int(year), target), []).append(key)
    for (ls, adcode, year, target), keys in by_rows.items():
        col = dup.loc[dup["line"] == ls[0], "column"].iloc[0] if len(keys) == 1 else None
        what = "city-year-indicator" if target == "indicator" else "city-year-sector"
        problems.add(
            ls[0],
            col,
            f"duplicate {what} rows ({_rows_text(list(ls))}) for {matcher.label(adcode)}, "
            f"{year}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}",
        )


def _tidy(cells: pd.DataFrame, key_name: str, value_name: str, cols: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "adcode": cells["adcode"].astype(str).to_numpy(),
            "year": cells["year"].astype("int64").to_numpy(),
            key_name: cells["key"].astype(str).to_numpy(),
            value_name: cells["value"].astype("float64").to_numpy(),
        }
    )
    return out.sort_values(cols[:3], kind="stable").reset_index(drop=True)[cols]


def _summarise(
    panel: pd.DataFrame,
    emp: pd.DataFrame | None,
    allowed: list[int] | None,
    check_members: bool,
    report: ValidationReport,
) -> None:
    yrs = sorted(panel["year"].unique().tolist())
    report.actions.append(
        f"panel: {len(panel)} values, {panel['adcode'].nunique()} cities, years {yrs}, "
        f"{panel['indicator'].nunique()} variables"
        + (f"; employment: {emp['sector'].nunique()} sectors" if emp is not None else "")
    )
    if panel.empty:
        report.warnings.append("no indicator values in the file")
        return
    if allowed is not None:
        absent = [y for y in allowed if y not in yrs]
        if absent:
            report.data_warning(f"requested years without any rows: {_years_text(absent)}")
    if check_members:
        from agglo.reference.boundaries import load_membership

        members = load_membership().drop_duplicates("adcode")
        have = set(panel["adcode"].unique())
        lacking = members[~members["adcode"].isin(have)]
        if len(lacking):
            names = ", ".join(lacking["name_zh"].head(10))
            report.warnings.append(
                f"{len(lacking)} of {len(members)} agglomeration member units have no rows: "
                f"{names}{' ...' if len(lacking) > 10 else ''}"
            )
        sub = panel[panel["adcode"].isin(set(members["adcode"]))]
        counts = sub.groupby(["indicator", "year"])["adcode"].nunique()
        n_present = int(members["adcode"].isin(have).sum())
        short = counts[counts < n_present]
        if len(short):
            text = ", ".join(f"{i} {y}: {n}" for (i, y), n in short.head(10).items())
            report.warnings.append(
                f"incomplete indicator-years (member cities reporting): {text}"
                + (" ..." if len(short) > 10 else "")
            )


def panel_to_wide(panel: pd.DataFrame) -> pd.DataFrame:
    """Tidy panel -> one row per ``adcode, year``, one column per indicator (registry order).

    Examples
    --------
    >>> p = pd.DataFrame({"adcode": ["420600"] * 2, "year": [2010, 2010],
    ...                   "indicator": ["pm25", "gdp_per_capita"], "value": [50.0, 3e4]})
    >>> panel_to_wide(p).columns.tolist()
    ['adcode', 'year', 'gdp_per_capita', 'pm25']
    """
    wide = panel.pivot(index=["adcode", "year"], columns="indicator", values="value")
    order = [v for v in VARIABLES if v in wide.columns]
    order += sorted(c for c in wide.columns if c not in VARIABLES)
    out = wide[order].reset_index()
    out.columns.name = None
    return out
