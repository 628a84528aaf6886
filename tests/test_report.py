"""The HTML report: self-contained, complete, rebuilt from outputs, and clean in a real browser."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agglo.errors import AggloInputError, OutputExistsError
from agglo.outputs.report import report_from_outputs, section_of, write_report

EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I
)


def _png(tmp_path: Path, name: str = "map") -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    return path


def test_report_is_self_contained(tmp_path):
    png = _png(tmp_path)
    path = write_report(
        tmp_path / "report.html",
        tables={"index_composite": pd.DataFrame({"agglomeration_id": ["cy"], "score": [1.5]})},
        figures=[png, png.with_suffix(".svg")],
        captions={str(png): "图 1: a map"},
        config={"seed": 1},
        provenance={"panel": "demo_panel_synthetic.csv (synthetic)"},
    )
    text = path.read_text(encoding="utf-8")
    assert not EXTERNAL.search(text)
    assert "<link" not in text and "@import" not in text
    imgs = re.findall(r'<img src="([^"]+)"', text)
    assert len(imgs) == 1 and imgs[0].startswith("data:image/png;base64,")  # PNG preferred
    assert "<figcaption>图 1: a map</figcaption>" in text
    assert "font/otf;base64," in text  # CJK glyphs embedded
    assert "synthetic-banner" not in text  # no synthetic inputs were named


def test_synthetic_banner_and_sections(tmp_path):
    tables = {
        "index_composite": pd.DataFrame({"agglomeration_id": ["cy", "qz"], "score": [1.5, 0.5]}),
        "moran_global": pd.DataFrame({"year": [2020], "I": [0.31]}),
        "coreperiphery_primacy": pd.DataFrame({"agglomeration_id": ["cy"], "P1_P2": [1.3]}),
        "metro_members": pd.DataFrame({"metro_id": ["cd"], "n_counties": [20]}),
        "panel_validation": pd.DataFrame({"problem": ["<script>alert(1)</script>"]}),
    }
    text = write_report(
        tmp_path / "r.html", tables=tables, synthetic={"demo_panel_synthetic.csv"}, embed_font=False
    ).read_text(encoding="utf-8")
    assert 'id="synthetic-banner"' in text and "demo_panel_synthetic.csv" in text
    assert '<meta name="data-status" content="synthetic">' in text
    order = [
        text.index(f'<section id="{s}">')
        for s in ("index", "autocorr", "coreperiphery", "metro", "other")
    ]
    assert order == sorted(order)
    assert text.index('id="t-moran_global"') > text.index('<section id="autocorr">')
    assert "<script>alert(1)</script>" not in text  # table cells are escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_long_tables_are_cut_with_a_note(tmp_path):
    df = pd.DataFrame({"adcode": [f"{i:06d}" for i in range(100)], "v": np.arange(100.0)})
    text = write_report(
        tmp_path / "r.html", tables={"city_scores": df}, max_rows=7, embed_font=False
    ).read_text(encoding="utf-8")
    assert "First 7 of 100 rows; the CSV holds all." in text
    # the shown rows are the first 7; the whole table is embedded as a CSV download
    shown = text.split("<table", 1)[1].split("</table>", 1)[0]
    assert "000006" in shown and "000007" not in shown
    # collapsed: a long table is in a closed <details> block
    assert '<details class="table"><summary><b id="t-city_scores">' in text
    import base64
    import io
    import re

    data = re.search(
        r'download="city_scores.csv" href="data:text/csv;charset=utf-8;base64,([^"]+)"', text
    )
    back = pd.read_csv(io.BytesIO(base64.b64decode(data.group(1))), dtype={"adcode": str})
    pd.testing.assert_frame_equal(back, df)


def test_key_results_come_first_and_numbers_are_formatted(tmp_path):
    key = {
        "Integration ranking 2020": pd.DataFrame(
            {"agglomeration": ["长三角城市群 Yangtze River Delta"], "score": ["15.61"]}
        )
    }
    big = pd.DataFrame(
        {"gdp": [32940.4, 1.5e6], "share": [0.004215, 0.5], "p": [7.61e-09, 0.2]}
    ).assign(persons=[23019148, 5], year=[2010, 2020])
    text = write_report(
        tmp_path / "r.html",
        key_results=key,
        tables={"index_indicators": big},
        summary=["a log line"],
        embed_font=False,
    ).read_text(encoding="utf-8")
    main = text.split("<main>", 1)[1]
    assert main.index("Key results 主要结果") < main.index("Integration index")
    assert main.index("Integration ranking 2020") < main.index("a log line")
    assert "<details><summary>Run log" in main  # the log is collapsed under the results
    assert "32,940" in text and "1,500,000" in text and "0.0042" in text
    assert "e+0" not in main.split("<footer>")[0] and "e-0" not in main.split("<footer>")[0]
    assert "0.0000000076" in text and "23,019,148" in text and "<td>2010</td>" in text


def test_section_of():
    assert section_of("index_between_groups") == "index"
    assert section_of("lisa_transitions") == "autocorr"
    assert section_of("city_system_zipf") == "coreperiphery"
    assert section_of("metro_catchments") == "metro"
    assert section_of("pm25_by_city") == "measures"


def test_report_input_errors(tmp_path):
    with pytest.raises(AggloInputError, match=r"the report is an HTML file; got 'r\.pdf'"):
        write_report(tmp_path / "r.pdf")
    with pytest.raises(AggloInputError, match="figure file"):
        write_report(tmp_path / "r.html", figures=[tmp_path / "missing.png"])
    write_report(tmp_path / "r.html", embed_font=False)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_report(tmp_path / "r.html", embed_font=False)


# --------------------------------------------------------------------------- pipeline and CLI
@pytest.fixture(scope="module")
def run_outputs(tmp_path_factory):
    """maps -> write -> report stages on the toy context (as `agglo run` composes them)."""
    from test_plot import toy_context

    from agglo.outputs.run import draw_maps, write_outputs, write_run_report

    ctx = toy_context(tmp_path_factory.mktemp("run"))
    index = ctx.results["index"]
    ctx.tables.update(city_scores=index.city_scores, index_dimensions=index.dimensions)
    ctx.summary.append("Loaded 6 cities (toy)")
    draw_maps(ctx)
    write_outputs(ctx)
    write_run_report(ctx)
    return ctx


def test_report_stage_shows_everything(run_outputs):
    ctx = run_outputs
    html = (ctx.out_dir / "report.html").read_text(encoding="utf-8")
    assert not EXTERNAL.search(html)
    assert html.count('<img src="data:image/png;base64,') == 8  # one per figure
    assert "Composite score by year (rank 1 = most integrated)" in html
    assert "15.50 (#1)" in html  # cy 2020 score and rank from the index result
    assert 'id="t-moran_global"' in html
    assert '"seed": 20101115' in html  # configuration
    assert "demo_panel_synthetic.csv (synthetic)" in html  # provenance
    assert 'id="synthetic-banner"' in html
    assert "Loaded 6 cities (toy)" in html  # run summary
    assert "metro_areas</td><td>1 features" in html
    assert ctx.summary[-1].endswith(f"Report: {ctx.out_dir / 'report.html'}")


def test_report_rebuilt_from_outputs_via_cli(run_outputs, tmp_path):
    from agglo.cli import main

    out = tmp_path / "copy"
    shutil.copytree(run_outputs.out_dir, out)
    (out / "report.html").unlink()
    assert main(["report", "--out", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<img src="data:image/png;base64,') == 8
    assert "Made from SYNTHETIC data" in html  # captions read back from PNG metadata
    assert 'id="synthetic-banner"' in html  # from the GeoPackage layer metadata
    assert '"seed": 20101115' in html
    assert main(["report", "--out", str(out)]) == 2  # exists, no --force
    assert main(["report", "--out", str(out), "--force"]) == 0


def test_report_from_empty_folder_is_an_input_error(tmp_path):
    with pytest.raises(AggloInputError, match="holds no agglo outputs"):
        report_from_outputs(tmp_path)


# --------------------------------------------------------------------------- browser
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium not installed (Debian package `chromium`; .ci/run installs it)")


def _browse(exe: str, url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # belt and braces: nothing resolves
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.browser
@pytest.mark.slow
def test_report_in_headless_chromium(run_outputs, tmp_path):
    exe = _chromium()
    report = run_outputs.out_dir / "report.html"
    url = report.resolve().as_uri()
    netlog = tmp_path / "netlog.json"
    dom = _browse(exe, url, tmp_path, f"--log-net-log={netlog}", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # every <img> decoded (the page's inline script counts broken ones after `load`)
    assert 'data-broken-images="0"' in dom.stdout
    # no console messages at all (errors, warnings, uncaught exceptions)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    # no network request from the page: only Chromium's own service hosts may appear
    events = json.loads(netlog.read_text())["events"]
    urls = {e["params"]["url"] for e in events if "url" in e.get("params", {})}
    page_requests = {
        u
        for u in urls
        if not re.match(r"https?://[^/]*(google\.com|googleapis\.com|gvt1\.com)(/|:|$)", u)
    }
    assert page_requests == set()
    # screenshot is not blank
    shot = tmp_path / "shot.png"
    snap = _browse(exe, url, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert snap.returncode == 0 and shot.is_file(), snap.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB"))
    assert px.shape[:2] == (2000, 1280)
    assert px.std() > 20 and len(np.unique(px.reshape(-1, 3), axis=0)) > 200


_LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  var doc = document.documentElement, summary = document.getElementById("summary");
  document.body.setAttribute("data-layout", JSON.stringify({
    scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
    summaryBottom: summary ? summary.getBoundingClientRect().bottom + window.scrollY : null,
    pageHeight: doc.scrollHeight}));
});
</script>"""


def _layout(exe: str, page: Path, tmp: Path) -> dict:
    """Width and summary position of ``page`` at a 1280 × 800 px window (headless Chromium)."""
    probe = tmp / f"probe-{page.parent.name}.html"
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _LAYOUT_PROBE + "</body>", 1),
        encoding="utf-8",
    )
    dom = _browse(
        exe,
        probe.as_uri(),
        tmp,
        "--window-size=1280,800",
        "--virtual-time-budget=5000",
        "--dump-dom",
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-layout="([^"]+)"', dom.stdout)
    assert found, dom.stdout[-2000:]
    import html as _html

    return json.loads(_html.unescape(found.group(1)))


def _wide_report(tmp_path: Path) -> Path:
    """A report with the summary of a full run's size and one very wide table."""
    groups = ["yrd", "myr", "cy", "qz", "dz"]
    comp = pd.DataFrame(
        [
            (g, y, 10.0 - i + (y - 2010) / 10, i + 1)
            for i, g in enumerate(groups)
            for y in (2010, 2015, 2020)
        ],
        columns=["agglomeration_id", "year", "score", "rank"],
    )
    scores = pd.DataFrame(
        [(f"{i:06d}", g, 2020, -0.01 * i) for i, g in enumerate(groups * 26)],
        columns=["adcode", "agglomeration_id", "year", "lag_score"],
    )
    moran = pd.DataFrame(
        [(s, y, 0.1, 0.01) for s in ["all", *groups] for y in (2010, 2015, 2020)],
        columns=["scope", "year", "moran_i", "moran_p"],
    )
    metro = pd.DataFrame(
        [(f"c{k}", f"核心{k}", f"城市{k}{j}", f"{k}{j}") for k in range(11) for j in range(8)],
        columns=["core_adcode", "core_name", "name_zh", "adcode"],
    )
    wide = pd.DataFrame({f"indicator_with_a_long_name_{i}": [1234567.891] for i in range(60)})
    tables = {
        "index_composite": comp,
        "city_scores": scores,
        "autocorr_global": moran,
        "metro_cities": metro,
        "structure_type": pd.DataFrame(
            {"agglomeration_id": groups, "year": 2020, "structure_type": "gradient"}
        ),
        "index_indicators": pd.DataFrame({"indicator": [f"ind_{i}" for i in range(21)]}),
        "index_wide": wide,
    }
    from agglo.outputs.report import build_report

    path = tmp_path / "wide" / "report.html"
    path.parent.mkdir()
    build_report(path, tables, summary=["a log line"] * 80, synthetic={"demo_panel_synthetic.csv"})
    return path


@pytest.mark.browser
@pytest.mark.slow
def test_report_fits_1280_px_and_the_summary_comes_first(run_outputs, tmp_path):
    """No horizontal page scroll at 1280 px; the key results end within the first 3 screens."""
    exe = _chromium()
    for page in (run_outputs.out_dir / "report.html", _wide_report(tmp_path)):
        got = _layout(exe, page, tmp_path)
        assert got["scrollWidth"] <= got["clientWidth"] <= 1280, (page, got)
        assert got["summaryBottom"] is not None and got["summaryBottom"] <= 3 * 800, (page, got)
        assert got["pageHeight"] > got["summaryBottom"]  # the rest follows the summary


def test_layout_check_detects_a_page_wider_than_the_window(tmp_path):
    """The same probe reports a scroll width beyond 1280 px for a fixed 2000 px element."""
    exe = _chromium()
    page = tmp_path / "w" / "report.html"
    page.parent.mkdir()
    page.write_text(
        '<html><body><section id="summary" style="height:3000px">x</section>'
        '<div style="width:2000px">wide</div></body></html>',
        encoding="utf-8",
    )
    got = _layout(exe, page, tmp_path)
    assert got["scrollWidth"] > got["clientWidth"] and got["summaryBottom"] > 3 * 800


@pytest.mark.browser
@pytest.mark.slow
def test_browser_check_detects_a_broken_page(tmp_path):
    """The same checks fail on a page with a console error and a broken image."""
    exe = _chromium()
    bad = tmp_path / "bad.html"
    from agglo.outputs.report import _SCRIPT

    bad.write_text(
        '<html><body data-broken-images="unknown"><img src="missing.png">'
        f"<script>console.error('boom');{_SCRIPT}</script></body></html>",
        encoding="utf-8",
    )
    dom = _browse(exe, bad.as_uri(), tmp_path, "--dump-dom")
    assert 'data-broken-images="1"' in dom.stdout
    assert any(":CONSOLE" in line and "boom" in line for line in dom.stderr.splitlines())


def test_key_results_by_hand():
    from agglo.outputs.report import key_results

    comp = pd.DataFrame(
        {
            "agglomeration_id": ["yrd", "cy", "yrd", "cy"],
            "year": [2010, 2010, 2020, 2020],
            "score": [10.0, 12.0, 15.0, 11.0],
            "rank": [2, 1, 1, 2],
        }
    )
    scores = pd.DataFrame(
        {
            "adcode": ["1", "2", "3", "4"],
            "agglomeration_id": ["cy", "cy", "cy", "yrd"],
            "year": [2020] * 4,
            "lag_score": [-0.3, 0.1, -0.1, 0.2],
        }
    )
    coreness = pd.DataFrame(
        {
            "agglomeration_id": ["cy"] * 2,
            "year": [2020] * 2,
            "name_zh": ["成都市", "成都市"],  # one row per method
            "core": [True, True],
        }
    )
    structure = pd.DataFrame(
        {"agglomeration_id": ["cy"], "year": [2020], "structure_type": ["gradient"]}
    )
    cities = pd.DataFrame({"adcode": ["1", "2", "3", "4"], "name_zh": ["甲", "乙", "丙", "丁"]})
    tables = {
        "index_composite": comp,
        "city_scores": scores,
        "coreness": coreness,
        "structure_type": structure,
    }
    key = key_results(tables, cities=cities, lagging=2)
    rank = next(v for k, v in key.items() if k.startswith("Integration ranking 2020"))
    assert list(rank["rank 2020"]) == ["1", "2"] and rank.iloc[0, 0].startswith("长三角城市群")
    assert list(rank["change since 2010"]) == ["+5.00", "-1.00"]
    lag = next(v for k, v in key.items() if k.startswith("Most lagging"))
    # cy's two lowest, lowest first, in one cell per agglomeration
    assert lag.iloc[0].tolist() == ["成渝城市群 Chengdu-Chongqing", "甲 (1) -0.300; 丙 (3) -0.100"]
    cores = next(v for k, v in key.items() if k.startswith("Cores"))
    assert cores["core cities 核心城市"].tolist() == ["成都市"]


def _summary_section(html: str) -> str:
    """The key-results section without the run log (the log is not kept in the folder)."""
    section = html.split('<section id="summary">', 1)[1].split("</section>", 1)[0]
    return section.split("<details><summary>Run log", 1)[0]


def test_agglo_report_rebuilds_the_same_key_results(run_outputs, tmp_path):
    """`agglo report` on the output folder shows the summary `agglo run` wrote."""
    from agglo.cli import main

    ran = (run_outputs.out_dir / "report.html").read_text(encoding="utf-8")
    out = tmp_path / "copy"
    shutil.copytree(run_outputs.out_dir, out)
    assert main(["report", "--out", str(out), "--force"]) == 0
    rebuilt = (out / "report.html").read_text(encoding="utf-8")
    key = _summary_section(ran)
    for title in ("Integration ranking 2020", "Most lagging cities 2020"):
        assert title in key
    assert _summary_section(rebuilt) == key
    assert "Run log" in ran and "Loaded 6 cities (toy)" in ran


def test_report_options_are_checked_once():
    from agglo.errors import ValidationError
    from agglo.outputs.report import ReportOptions

    assert ReportOptions.from_dict({"max_rows": 10}).max_rows == 10
    with pytest.raises(ValidationError, match=r"report.max_rows must be >= 1; got 0"):
        ReportOptions(max_rows=0)
    with pytest.raises(ValidationError, match=r"report.max_row is not an option \(did you mean"):
        ReportOptions.from_dict({"max_row": 3})


# --------------------------------------------------------------------------- real census finding
def test_census_population_change_of_chengyu_holds_on_the_source_rows(cities, shared_data):
    """成都 grew by millions 2010-2020 while 德阳 and 资阳 shrank: checked on the raw census."""
    from agglo.outputs.report import bundled_census, census_population_change, key_results

    change = census_population_change(bundled_census(), cities).set_index("name_zh")
    raw = pd.read_csv(shared_data / "census" / "census_city_2010-2020_v1.csv", dtype=str)
    code = next(c for c in raw.columns if c.lower() == "city_code")
    raw = raw.set_index(code)
    for adcode, name in (("510100", "成都市"), ("510600", "德阳市"), ("511400", "眉山市")):
        row = raw.loc[adcode]
        p10, p20 = float(row["popu_2010"]), float(row["popu_2020"])
        got = change.loc[name]
        assert got["adcode"] == adcode and got["agglomeration_id"] == "cy"
        assert got["population_2010"] == pytest.approx(p10 / 1e4)
        assert got["change"] == pytest.approx((p20 - p10) / 1e4)
        assert got["provenance"] == "real:census-2010, real:census-2020"
    assert change.loc["成都市", "change"] > 500  # +5.8 million persons (10k units)
    assert change.loc["德阳市", "change"] < 0 and change.loc["资阳市", "change"] < 0
    assert abs(change.loc["眉山市", "change_pct"]) < 0.5  # flat: the seed's "shrank" fails
    # the report's first screen states it, labelled real, with its source
    key = key_results({}, census_change=change.reset_index())
    title, table = next((k, v) for k, v in key.items() if k.startswith("Resident population"))
    assert "REAL census data" in title and "census_city_2010-2020_v1.csv (MIT)" in title
    cy = table[table["agglomeration 城市群"].str.startswith("成渝")].iloc[0]
    assert cy["grew most 增长最多"].startswith("成都市 +581.9")
    assert "资阳市 -28.5" in cy["shrank 减少"] and "德阳市 -16.0" in cy["shrank 减少"]
    assert "眉山市" not in cy["shrank 减少"]


def test_indicator_status_from_per_value_provenance():
    from agglo.outputs.report import indicator_status, key_results

    prov = pd.DataFrame(
        {
            "indicator": ["population", "population", "hsr", "gdp", "gdp"],
            "data_status": [
                "real:census-2010",
                "interpolated",
                "real:railways",
                *["synthetic"] * 2,
            ],
            "source": ["census", "census", "railways", "generator", "generator"],
        }
    )
    status = indicator_status({"indicator_provenance": prov})
    assert status["indicator"].tolist() == ["hsr", "population", "gdp"]
    assert status.set_index("indicator").loc["gdp", "status"] == "synthetic"
    key = key_results({}, indicators=status)
    shown = next(v for k, v in key.items() if k.startswith("Data status"))
    assert shown.values.tolist() == [
        ["real:railways", "hsr", "railways"],
        ["real:census-2010, interpolated", "population", "census"],
        ["synthetic", "gdp", "generator"],
    ]
    # no per-value provenance: every indicator of the index takes the run's status
    ind = pd.DataFrame({"indicator": ["gdp", "pm25", "gdp"]})
    status = indicator_status({"index_indicators": ind}, synthetic=True)
    assert status["status"].tolist() == ["synthetic", "synthetic"]


def test_rebuilt_report_keeps_the_per_indicator_status(tmp_path):
    """indicator_provenance's own data_status column is read back, not taken for the run's."""
    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame(
        {
            "indicator": ["hsr", "population", "gdp"],
            "data_status": ["real", "real+interpolated", "synthetic"],
            "sources": ["real:railways", "real:census-2010; interpolated:census", "synthetic"],
        }
    ).to_csv(tables / "indicator_provenance.csv", index=False)
    html = report_from_outputs(tmp_path, census=None).read_text(encoding="utf-8")
    key = _summary_section(html)
    assert "Data status of the indicators" in key
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>", key)
    assert rows == [("real", "hsr"), ("real+interpolated", "population"), ("synthetic", "gdp")]


def test_run_log_numbers_are_readable_and_components_title_is_right(tmp_path):
    from agglo.outputs.report import key_results, readable_numbers

    assert readable_numbers("β = -0.0328 (p 7.61e-09), n 1.5e+06") == (
        "β = -0.0328 (p 0.0000000076), n 1,500,000"
    )
    assert readable_numbers("file 2e5x.csv, id a1e3, 3.0") == "file 2e5x.csv, id a1e3, 3.0"
    text = write_report(
        tmp_path / "r.html", summary=["convergence p 7.61e-09"], embed_font=False
    ).read_text(encoding="utf-8")
    assert "p 0.0000000076" in text and "7.61e-09" not in text
    comps = pd.DataFrame({"scope": ["all"], "n_units": [84], "n_components": [2]})
    (title,) = key_results({"autocorr_components": comps})
    assert "whole graph" in title and "per component" not in title


def test_cached_font_subset_equals_fresh_subset(tmp_path, monkeypatch):
    from agglo.outputs import report as report_mod
    from agglo.outputs.fonts import _package_font

    font_path = _package_font()
    if font_path is None:
        pytest.skip("bundled CJK font not installed")
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(tmp_path / "cache"))
    chars = sorted(map(ord, set("长江三角洲城市群一体化指数")))
    fresh = report_mod.font_subset(font_path, chars)
    first = report_mod.cached_font_subset(font_path, chars)  # computes and stores
    cache_file = report_mod.font_subset_cache_path(font_path, chars)
    assert cache_file.is_file() and cache_file.parent == tmp_path / "cache" / "fonts"
    assert first == fresh == cache_file.read_bytes()

    def no_subsetting(*args, **kwargs):
        raise AssertionError("subset recomputed although cached")

    monkeypatch.setattr(report_mod, "font_subset", no_subsetting)
    assert report_mod.cached_font_subset(font_path, chars) == fresh  # read from disk
    # another glyph set is another entry
    other = sorted(map(ord, set("成渝城市群")))
    assert report_mod.font_subset_cache_path(font_path, other) != cache_file
    # the cached bytes are a font covering exactly the requested characters
    from fontTools.ttLib import TTFont

    cmap = TTFont(io.BytesIO(first)).getBestCmap()
    assert set(chars) <= set(cmap)


def test_font_subset_cache_unwritable_still_returns_subset(tmp_path, monkeypatch):
    from agglo.outputs import report as report_mod
    from agglo.outputs.fonts import _package_font

    font_path = _package_font()
    if font_path is None:
        pytest.skip("bundled CJK font not installed")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(blocker))  # fonts/ cannot be made under a file
    chars = sorted(map(ord, set("城市群")))
    assert report_mod.cached_font_subset(font_path, chars) == report_mod.font_subset(
        font_path, chars
    )


def test_tests_use_a_private_cache():
    from agglo.io.fetch import default_cache_dir

    assert default_cache_dir() != Path.home() / ".cache" / "agglo"


def test_font_cache_keeps_the_newest_subsets(tmp_path, monkeypatch):
    import os

    from agglo.outputs import report as report_mod
    from agglo.outputs.fonts import _package_font

    font_path = _package_font()
    if font_path is None:
        pytest.skip("bundled CJK font not installed")
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "fonts"
    folder.mkdir(parents=True)
    old = []
    for i in range(report_mod.FONT_CACHE_KEEP + 3):  # older entries, oldest first
        f = folder / f"cjk-subset-old{i:02d}.otf"
        f.write_bytes(b"x")
        os.utime(f, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
        old.append(f)
    (folder / "notes.txt").write_text("not a subset")  # other files are left alone
    chars = sorted(map(ord, set("城市群")))
    data = report_mod.cached_font_subset(font_path, chars)
    new = report_mod.font_subset_cache_path(font_path, chars)
    assert new.read_bytes() == data
    kept = sorted(folder.glob("cjk-subset-*.otf"))
    assert len(kept) == report_mod.FONT_CACHE_KEEP and new in kept
    # the newest old ones survive, the oldest went
    assert set(kept) - {new} == set(old[-(report_mod.FONT_CACHE_KEEP - 1) :])
    assert (folder / "notes.txt").is_file()
