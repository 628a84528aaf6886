"""Matching prefecture-level city names and adcodes, including historical names.

Yearbook tables name cities in many ways: the full name (``襄阳市``), the name without its
suffix (``襄阳``), the short form of an autonomous prefecture (``恩施州``, ``黔东南``), a name in
use before a renaming (``襄樊``) or an adcode, sometimes stored as a float by a spreadsheet
(``420600.0``). :class:`CityMatcher` resolves all of these against a table of current units
(by default the bundled cities) and says how it matched, so the panel reader can report it.

The curated tables below cover the renamings and abolitions of prefecture-level units in the
11 Yangtze River Economic Belt provinces that a 1990-2020 yearbook series may contain. Sources:
the Chinese Wikipedia lists "YYYY年中华人民共和国县级以上行政区划变更列表" for the year given in
each entry (the State Council approval is cited there). Units that were abolished and split, or
absorbed as a part into another unit, are *not* mapped: their names raise an error listing the
candidates, because their figures cannot stand for any current unit.

County-level (4th-6th digit not ``00``) and 4-digit-prefix codes are not accepted: a
prefecture panel needs 6-digit prefecture codes such as ``510100``.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from agglo.reference.paths import data_path

__all__ = [
    "CITY_ALIASES",
    "HISTORICAL_NAMES",
    "MUNICIPALITY_CODES",
    "OLD_ADCODES",
    "CityMatch",
    "CityMatcher",
    "HistoricalName",
    "load_city_aliases",
    "match_cities",
    "name_stem",
]

#: the bundled alias table of every Chinese prefecture-level unit and its names by year, derived
#: from the china-prefecture-crosswalk (CC BY 4.0) by ``scripts/build_aliases.py``
CITY_ALIASES: Path = data_path("crosswalk", "city_aliases.csv")

#: the four province-level municipalities: national tables code them at province level
#: (310000) or as their 市辖区 (310100); each group holds the codes meaning the same unit
MUNICIPALITY_CODES: dict[str, tuple[str, ...]] = {
    "110000": ("110000", "110100"),
    "110100": ("110000", "110100"),
    "120000": ("120000", "120100"),
    "120100": ("120000", "120100"),
    "310000": ("310000", "310100"),
    "310100": ("310000", "310100"),
    "500000": ("500000", "500100"),
    "500100": ("500000", "500100"),
}


@dataclass(frozen=True)
class HistoricalName:
    """A former name (or former code) of a prefecture-level unit.

    ``adcodes`` holds one current adcode when the unit continues under a new name, several when
    the unit was split (an ambiguous name), and ``mapped=False`` marks names that must not be
    mapped (split or absorbed as a part). ``until`` is the last year the name was in use.
    """

    adcodes: tuple[str, ...]
    until: int
    note: str
    mapped: bool = True


_H = HistoricalName
#: former name -> current unit(s). Each entry: year and event as listed in the Chinese Wikipedia
#: list of administrative changes of that year (cross-checked in tests against the
#: china-prefecture-crosswalk event table when it is available).
HISTORICAL_NAMES: dict[str, HistoricalName] = {
    # 2010: 襄樊市更名为襄阳市 (same code 420600)
    "襄樊市": _H(("420600",), 2010, "襄樊市 renamed 襄阳市 in 2010"),
    # 2003: 思茅地区 -> 地级思茅市; 2007: 思茅市更名为普洱市
    "思茅市": _H(("530800",), 2006, "思茅市 renamed 普洱市 in 2007"),
    "思茅地区": _H(("530800",), 2002, "思茅地区 became 思茅市 (2003), renamed 普洱市 in 2007"),
    # 2011: 撤销地级巢湖市, its counties went to 合肥, 芜湖 and 马鞍山 (县级巢湖市 set up)
    "巢湖市": _H(
        ("340100", "340200", "340500"),
        2010,
        "地级巢湖市 was abolished in 2011 and split between 合肥市, 芜湖市 and 马鞍山市",
        mapped=False,
    ),
    "巢湖地区": _H(
        ("340100", "340200", "340500"),
        1998,
        "巢湖地区 became 巢湖市 (1999), abolished in 2011 and split between 合肥市, 芜湖市 "
        "and 马鞍山市",
        mapped=False,
    ),
    # 2011: 撤销毕节地区/铜仁地区, 设立地级毕节市/铜仁市
    "毕节地区": _H(("520500",), 2010, "毕节地区 became 毕节市 in 2011"),
    "铜仁地区": _H(("520600",), 2010, "铜仁地区 became 铜仁市 in 2011"),
    # 2000: 地级淮阴市更名为淮安市
    "淮阴市": _H(("320800",), 2000, "淮阴市 renamed 淮安市 in 2001 (approved 2000)"),
    # 1996: 荆沙市更名为荆州市
    "荆沙市": _H(("421000",), 1995, "荆沙市 renamed 荆州市 in 1996"),
    # 1994: 大庸市更名为张家界市
    "大庸市": _H(("430800",), 1993, "大庸市 renamed 张家界市 in 1994"),
    # 1993: 鄂西土家族苗族自治州更名为恩施土家族苗族自治州
    "鄂西土家族苗族自治州": _H(("422800",), 1992, "鄂西州 renamed 恩施州 in 1993"),
    "鄂西州": _H(("422800",), 1992, "鄂西州 renamed 恩施州 in 1993"),
    # 1999: 撤销达川地区, 设立地级达州市
    "达川地区": _H(("511700",), 1998, "达川地区 became 达州市 in 1999"),
    # 1998: 撤销宿县地区, 设立地级宿州市
    "宿县地区": _H(("341300",), 1998, "宿县地区 became 宿州市 in 1999 (approved 1998)"),
    # 1992: 撤销滁县地区, 设立地级滁州市
    "滁县地区": _H(("341100",), 1992, "滁县地区 became 滁州市 in 1993 (approved 1992)"),
    # 1995: 撤销零陵地区, 设立地级永州市
    "零陵地区": _H(("431100",), 1994, "零陵地区 became 永州市 in 1995"),
    # 1997: 万县市, 涪陵市, 黔江地区 abolished and absorbed as parts of 重庆市
    "万县市": _H(("500000",), 1997, "万县市 became a district of 重庆市 in 1997", mapped=False),
    "涪陵市": _H(("500000",), 1997, "涪陵市 became a district of 重庆市 in 1997", mapped=False),
    "黔江地区": _H(("500000",), 1997, "黔江地区 became part of 重庆市 in 1997", mapped=False),
    # OCR / typing variant listed by the china-prefecture-crosswalk aliases (亳 misread as 毫)
    "毫州市": _H(("341600",), 9999, "毫州 is a common misspelling of 亳州"),
}

#: former prefecture code -> current unit(s), for codes that changed with an upgrade
#: (地区 -> 地级市 gets a new code) or an abolition. Same sources as above; the old codes are
#: those of GB/T 2260 editions before the change.
OLD_ADCODES: dict[str, HistoricalName] = {
    "522400": _H(("520500",), 2010, "522400 was the code of 毕节地区 (毕节市 520500 since 2011)"),
    "522200": _H(("520600",), 2010, "522200 was the code of 铜仁地区 (铜仁市 520600 since 2011)"),
    "532700": _H(("530800",), 2002, "532700 was the code of 思茅地区 (now 普洱市 530800)"),
    "513000": _H(("511700",), 1998, "513000 was the code of 达川地区 (达州市 511700 since 1999)"),
    # Chongqing's 市辖区 code, used for the whole municipality by some tables (and by the
    # crosswalk's legacy ids); the bundled city table uses 500000 for the whole municipality
    "500100": _H(("500000",), 9999, "500100 (重庆市市辖区) read as the whole municipality 500000"),
    "341400": _H(
        ("340100", "340200", "340500"),
        2010,
        "341400 was the code of 地级巢湖市, abolished in 2011 and split between 合肥市, 芜湖市 "
        "and 马鞍山市",
        mapped=False,
    ),
}

# the ethnic part of an autonomous prefecture's name starts at the first of these
_ETHNIC = "土家|苗|侗|布依|彝|哈尼|壮|傣|景颇|傈僳|藏|羌|白|回|蒙古|朝鲜|哈萨克|柯尔克孜"
_AUTONOMOUS_RE = re.compile(rf"(.{{2,}}?)(?:(?:{_ETHNIC})族)+(?:自治州|州)?")
_SUFFIXES = ("自治州", "地区", "林区", "市", "州", "盟")


def _clean(text: str) -> str:
    """NFKC-normalise (full-width -> ASCII) and drop all whitespace."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(text)))


def name_stem(name: str) -> str:
    """The bare place name: without suffix (市/地区/林区/州) or the ethnic part of 自治州.

    Examples
    --------
    >>> name_stem("襄阳市"), name_stem("黔东南苗族侗族自治州"), name_stem("毕节地区")
    ('襄阳', '黔东南', '毕节')
    >>> name_stem("恩施州"), name_stem("神农架林区"), name_stem("重庆")
    ('恩施', '神农架', '重庆')
    """
    s = _clean(name)
    m = _AUTONOMOUS_RE.fullmatch(s)
    if m:
        return m.group(1)
    for suf in _SUFFIXES:
        if s.endswith(suf) and len(s) - len(suf) >= 2:
            return s[: -len(suf)]
    return s


@dataclass
class CityMatch:
    """Result of matching one name or code.

    ``adcode`` is set when the match is unique; otherwise ``candidates`` lists the possible
    units (``adcode name``) and ``error`` says why no unique match exists. ``how`` records the
    rule used (adcode, name, stem, historical, old adcode, province prefix) and ``warning`` a
    message for the validation report (historical names, old codes, names used past their end).
    """

    adcode: str | None
    how: str = ""
    candidates: list[str] = field(default_factory=list)
    error: str = ""
    warning: str = ""
    #: ``outside``: a real prefecture-level unit that is not in the city table (e.g. 七台河 for
    #: the Yangtze belt); ``abolished``: a unit that no longer exists (巢湖 2011, 莱芜 2019)
    outside: bool = False
    abolished: bool = False

    @property
    def unknown(self) -> bool:
        """No unit has this name or code (as opposed to ambiguous, abolished or malformed)."""
        return self.adcode is None and self.error.startswith("unknown")

    @property
    def status(self) -> str:
        """``matched``, ``outside``, ``abolished``, ``unknown`` or ``unresolved`` (ambiguous or
        malformed)."""
        if self.adcode is not None:
            return "matched"
        if self.abolished:
            return "abolished"
        if self.outside:
            return "outside"
        return "unknown" if self.unknown else "unresolved"


class CityMatcher:
    """Resolve city names and adcodes against a table of current prefecture-level units.

    Parameters
    ----------
    cities
        Table with ``adcode`` (6-character str) and ``name_zh``; ``province_zh`` if present is
        used for province-prefixed names (``湖北省襄阳市``).

    Examples
    --------
    >>> cities = pd.DataFrame({"adcode": ["420600", "422800", "520500"],
    ...                        "name_zh": ["襄阳市", "恩施土家族苗族自治州", "毕节市"],
    ...                        "province_zh": ["湖北省", "湖北省", "贵州省"]})
    >>> m = CityMatcher(cities)
    >>> m.match_name("襄樊").adcode, m.match_name("恩施州").adcode, m.match_name("毕节地区").how
    ('420600', '422800', 'historical name')
    >>> m.match_adcode(420600.0).adcode
    '420600'
    """

    def __init__(self, cities: pd.DataFrame, aliases: pd.DataFrame | None = None) -> None:
        codes = cities["adcode"].astype(str).str.strip().str.zfill(6)
        self.names: dict[str, str] = dict(zip(codes, cities["name_zh"].astype(str), strict=True))
        provinces = (
            cities["province_zh"].astype(str)
            if "province_zh" in cities
            else pd.Series("", index=cities.index)
        )
        self.province: dict[str, str] = dict(zip(codes, provinces, strict=True))
        self._full: dict[str, set[str]] = {}
        self._stem: dict[str, set[str]] = {}
        for code, name in self.names.items():
            self._full.setdefault(_clean(name), set()).add(code)
            stem = name_stem(name)
            self._stem.setdefault(stem, set()).add(code)
        self._prov_prefixes = sorted(
            {p for p in provinces if p}
            | {name_stem(p).removesuffix("省") for p in provinces if p}
            | {p.removesuffix("省") for p in provinces if p},
            key=len,
            reverse=True,
        )
        self._hist_by_stem: dict[str, tuple[str, HistoricalName]] = {}
        for old, h in HISTORICAL_NAMES.items():
            self._hist_by_stem.setdefault(name_stem(old), (old, h))
        self._alias_by_name: dict[str, list[dict]] = {}
        self._alias_by_code: dict[str, list[dict]] = {}
        if aliases is not None:
            for rec in aliases.fillna("").to_dict("records"):
                rec["adcode"] = str(rec["adcode"]).strip()
                self._alias_by_name.setdefault(_clean(rec["alias"]), []).append(rec)
                if rec["adcode"]:
                    self._alias_by_code.setdefault(rec["adcode"], []).append(rec)

    def _in_table(self, code: str) -> str | None:
        """``code`` or its municipality equivalent (310000 <-> 310100) if in the table."""
        for c in MUNICIPALITY_CODES.get(code, (code,)):
            if c in self.names:
                return c
        return None

    def _from_aliases(self, given: str, recs: list[dict], year: int | None) -> CityMatch:
        """Resolve rows of the national alias table (by year when given)."""
        if year is not None:
            in_year = [r for r in recs if int(r["start_year"]) <= year <= int(r["end_year"])]
            recs = in_year or recs
        units = {r["entity_id"]: r for r in recs}
        if len(units) > 1:
            cands = sorted(
                f"{r['adcode']} {r['name_zh']} ({r['province_zh']})" for r in units.values()
            )
            return CityMatch(
                None,
                "national alias",
                cands,
                error=f"ambiguous city {given!r}: matches {', '.join(cands)}",
            )
        r = next(iter(units.values()))
        label = f"{r['adcode'] or '-'} {r['name_zh']}"
        if r["status"] == "abolished":
            heirs = [self.label(c) if c in self.names else c for c in str(r["successors"]).split()]
            return CityMatch(
                None,
                "national alias",
                heirs,
                error=f"city {given!r} ({label}) was abolished after {r['end_year']}"
                + (f"; its area went to {', '.join(heirs)}" if heirs else "")
                + ". Re-aggregate its data to current units or drop these rows.",
                abolished=True,
            )
        code = self._in_table(r["adcode"]) if r["adcode"] else None
        if code is not None:
            note = (
                ""
                if r["status"] == "current"
                else f" (former name, {r['start_year']}-{r['end_year']})"
            )
            return CityMatch(
                code,
                "national alias",
                warning=f"{given!r} matched to {self.label(code)} by the national alias table{note}"
                if note
                else "",
            )
        return CityMatch(
            None,
            "national alias",
            error=f"{given!r} is {label} ({r['province_zh']}), a prefecture-level unit outside "
            "the city table",
            outside=True,
        )

    def label(self, adcode: str) -> str:
        """``"420600 襄阳市"`` for messages."""
        return f"{adcode} {self.names.get(adcode, '?')}"

    # -- names ------------------------------------------------------------------------------
    def match_name(self, name: str, *, year: int | None = None) -> CityMatch:
        """Match a Chinese name: exact, stem (no 市/地区/州 suffix), historical, province prefix."""
        s = _clean(name)
        if not s:
            return CityMatch(None, error="empty city name")
        found = self._match_plain(s, year)
        if found.adcode is not None or found.candidates:
            return found
        # "湖北省襄阳市" / "湖北襄阳": strip a province prefix and use it to disambiguate
        for pre in self._prov_prefixes:
            if s.startswith(pre) and len(s) > len(pre) + 1:
                inner = self._match_plain(s[len(pre) :], year)
                cands = [inner.adcode] if inner.adcode else []
                cands = cands or [c.split()[0] for c in inner.candidates]
                in_prov = [c for c in cands if pre in self.province.get(c, "")]
                if len(in_prov) == 1:
                    return CityMatch(in_prov[0], "province prefix", warning=inner.warning)
        for key in (s, name_stem(s)):
            if key in self._alias_by_name:
                return self._from_aliases(name, self._alias_by_name[key], year)
        return CityMatch(
            None,
            candidates=self.closest_names(s),
            error=f"unknown city {name!r}",
        )

    def _match_plain(self, s: str, year: int | None) -> CityMatch:
        if s in self._full:
            return self._unique(self._full[s], "name", s)
        hist = HISTORICAL_NAMES.get(s)
        stem = name_stem(s)
        if hist is None and stem in self._hist_by_stem and stem not in self._stem:
            hist = self._hist_by_stem[stem][1]
        if hist is not None:
            return self._historical(s, hist, year)
        if stem in self._stem:
            return self._unique(self._stem[stem], "name stem", s)
        return CityMatch(None)

    def _unique(self, codes: set[str], how: str, given: str) -> CityMatch:
        if len(codes) == 1:
            return CityMatch(next(iter(codes)), how)
        cands = [self.label(c) for c in sorted(codes)]
        return CityMatch(
            None, how, cands, error=f"ambiguous city {given!r}: matches {', '.join(cands)}"
        )

    def _historical(self, given: str, h: HistoricalName, year: int | None) -> CityMatch:
        known = [c for c in h.adcodes if c in self.names]
        cands = [self.label(c) for c in known]
        if not h.mapped or len(known) != 1:
            why = "cannot be mapped to one current unit" if known else "is not in the city table"
            return CityMatch(
                None,
                "historical name",
                cands,
                error=f"city {given!r} {why}: {h.note}; candidates: {', '.join(cands) or '-'}. "
                "Re-aggregate its data to current units or drop these rows.",
                abolished=not h.mapped,
                outside=h.mapped and not known,
            )
        code = known[0]
        warning = f"{given!r} matched to {self.label(code)} by historical name ({h.note})"
        if year is not None and year > h.until:
            warning += f"; note the name is used for {year}, after it went out of use"
        return CityMatch(code, "historical name", warning=warning)

    def closest_names(self, s: str, n: int = 5) -> list[str]:
        """Up to ``n`` current units whose names are closest to ``s`` (``adcode name``)."""
        keys = {**{k: v for k, v in self._full.items()}, **self._stem}
        best = difflib.get_close_matches(_clean(s), list(keys), n=n, cutoff=0.3)
        out: list[str] = []
        for k in best:
            for c in sorted(keys[k]):
                lab = self.label(c)
                if lab not in out:
                    out.append(lab)
        return out[:n]

    # -- codes ------------------------------------------------------------------------------
    def match_adcode(self, value: object, *, year: int | None = None) -> CityMatch:
        """Match a 6-digit adcode given as str, int or integral float (``510100.0``).

        Province-level codes of the municipalities (310000) match their unit in the table
        (310100); codes of other Chinese prefecture-level units are reported as outside the
        table, codes of abolished units as abolished (with the units that absorbed them).
        """
        code = normalise_adcode(value)
        if code is None:
            return CityMatch(
                None,
                error=f"invalid adcode {value!r}: expected a 6-digit prefecture code such as "
                "510100 (4-digit prefixes and names in the code column are not accepted)",
            )
        if code in self.names:
            return CityMatch(code, "adcode")
        same = self._in_table(code)
        if same is not None:
            return CityMatch(
                same,
                "municipality code",
                warning=f"adcode {code} read as the municipality {self.label(same)}",
            )
        old = OLD_ADCODES.get(code)
        if old is not None:
            known = [c for c in old.adcodes if c in self.names]
            if old.mapped and len(known) == 1:
                return CityMatch(
                    known[0],
                    "old adcode",
                    warning=f"adcode {code} mapped to {self.label(known[0])} ({old.note})",
                )
            cands = [self.label(c) for c in known]
            return CityMatch(
                None,
                "old adcode",
                cands,
                error=f"adcode {code} cannot be mapped to one current unit: {old.note}; "
                f"candidates: {', '.join(cands)}",
                abolished=not old.mapped,
            )
        for c in MUNICIPALITY_CODES.get(code, (code,)):
            if c in self._alias_by_code:
                return self._from_aliases(code, self._alias_by_code[c], year)
        parent = code[:4] + "00"
        if code[4:] != "00" and parent in self.names:
            return CityMatch(
                None,
                candidates=[self.label(parent)],
                error=f"unknown adcode {code}: looks like a county-level code of "
                f"{self.label(parent)}; a panel needs prefecture-level rows",
            )
        near = sorted(self.names, key=lambda c: (_shared_prefix(c, code), c), reverse=True)[:5]
        near = [self.label(c) for c in near if _shared_prefix(c, code) >= 2]
        return CityMatch(
            None,
            candidates=near,
            error=f"unknown adcode {code}: not one of the {len(self.names)} units of the city "
            f"table; closest codes: {', '.join(near) or '-'}",
        )


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def normalise_adcode(value: object) -> str | None:
    """A 6-digit adcode string from str/int/float input, or None if it is not one.

    Examples
    --------
    >>> normalise_adcode(510100.0), normalise_adcode(" 420600 "), normalise_adcode("5101")
    ('510100', '420600', None)
    """
    if value is None:
        return None
    if isinstance(value, float):
        if value != value or not value.is_integer():
            return None
        value = int(value)
    s = _clean(str(value))
    if re.fullmatch(r"\d+\.0+", s):
        s = s.split(".")[0]
    return s if re.fullmatch(r"[1-9]\d{5}", s) else None


@functools.lru_cache(maxsize=4)
def _read_aliases(path: str) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def load_city_aliases(path: str | Path | None = None) -> pd.DataFrame:
    """The national alias table: every name a Chinese prefecture-level unit has carried.

    Columns ``alias, adcode, name_zh, province_zh, start_year, end_year, status`` (``current``,
    ``former``, ``abolished``), ``successors`` (adcodes, space separated), ``alias_type``,
    ``entity_id``. Default: the bundled table :data:`CITY_ALIASES`, derived from the
    china-prefecture-crosswalk (CC BY 4.0, attribution in ``data/crosswalk/README.md``).

    Examples
    --------
    >>> a = load_city_aliases()
    >>> a.loc[a["alias"] == "襄樊市", ["adcode", "name_zh", "end_year", "status"]].values.tolist()
    [['420600', '襄阳市', '2009', 'former']]
    """
    p = Path(path) if path is not None else CITY_ALIASES
    return _read_aliases(str(p)).copy()


def match_cities(
    values: Iterable[object],
    years: Iterable[int | None] | None = None,
    *,
    cities: pd.DataFrame,
    aliases: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Resolve city names or adcodes (by year) against ``cities``: one row per input value.

    Parameters
    ----------
    values
        Chinese names (full, without suffix, historical, province-prefixed) or 6-digit codes.
    years
        The year each value refers to (renames and abolitions resolve by year), or None.
    cities
        The target units: ``adcode``, ``name_zh`` (and optional ``province_zh``).
    aliases
        The national alias table (default :func:`load_city_aliases`).

    Returns
    -------
    pandas.DataFrame
        ``value, year, adcode`` (None unless matched), ``status`` (matched, outside, abolished,
        unknown, unresolved), ``how`` and ``message``.

    Examples
    --------
    >>> cities = pd.DataFrame({"adcode": ["310100", "420600"], "name_zh": ["上海市", "襄阳市"]})
    >>> t = match_cities(["310000", "襄樊", "七台河市", "巢湖"], [2010, 2005, 2010, 2010],
    ...                  cities=cities)
    >>> t[["adcode", "status"]].values.tolist()
    [['310100', 'matched'], ['420600', 'matched'], [None, 'outside'], [None, 'abolished']]
    """
    matcher = CityMatcher(cities, load_city_aliases() if aliases is None else aliases)
    values = list(values)
    yrs = list(years) if years is not None else [None] * len(values)
    rows = []
    for v, y in zip(values, yrs, strict=True):
        y = None if y is None or pd.isna(y) else int(y)
        m = (
            matcher.match_adcode(v, year=y)
            if normalise_adcode(v)
            else matcher.match_name(str(v), year=y)
        )
        rows.append(
            {
                "value": v,
                "year": y,
                "adcode": m.adcode,
                "status": m.status,
                "how": m.how,
                "message": m.error or m.warning,
            }
        )
    out = pd.DataFrame(rows, columns=["value", "year", "adcode", "status", "how", "message"])
    return out.astype({"adcode": object}).where(out.notna(), None)
