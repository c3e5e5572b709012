"""The review page in a real browser: headless Chromium (Debian package `chromium`, binary /usr/bin/chromium)
loads the demo report's page with no console message at all (a CSP violation or a script error would log one),
its charts, tables and pictures are in the DOM, and a screenshot shows a page with content.

Skipped only when no Chromium binary is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from html_support import DEMO_DIR, load, parse

from reports.html import render_html

BINARY = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[:(]")  # how Chromium's log prints a page's console message

pytestmark = pytest.mark.skipif(BINARY is None, reason="no chromium binary (Debian: apt-get install chromium)")


def chromium(tmp_path, page, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([BINARY, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=90, check=False)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def test_chromium_reports_a_page_that_breaks_its_policy(tmp_path):
    """The control: a page that loads an image from the network and runs a script gets console messages, so an
    empty console below means a clean page, not a deaf log."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
                    "'none'\"></head><body><img src=\"http://127.0.0.1:9/x.png\"><script>f()</script></body></html>")
    proc = chromium(tmp_path, page, "--dump-dom")
    assert "<img" in proc.stdout
    lines = console_lines(proc.stderr)
    assert any("Content Security Policy" in line for line in lines), proc.stderr[-2000:]


def test_demo_page_loads_cleanly_with_charts_tables_and_pictures(tmp_path):
    report = load("demo")
    page = tmp_path / "report.html"
    page.write_text(render_html(report, DEMO_DIR), encoding="utf-8")

    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_lines(dom.stderr) == [], console_lines(dom.stderr)
    parsed = parse(dom.stdout)
    tags = [t for t, _ in parsed.tags]
    assert tags.count("svg") >= 6 and tags.count("table") >= 5
    assert tags.count("polyline") >= 5 and tags.count("img") == len(report["analyses"]["saliency"]["figures"])
    assert {a.get("id") for t, a in parsed.tags if t == "section"} >= {"summary", "robustness", "per-class",
                                                                       "semantics", "saliency", "checks", "metadata"}

    shot = tmp_path / "page.png"
    proc = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2400")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert console_lines(proc.stderr) == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        grey = image.convert("L")
        dark = sum(grey.histogram()[:100])  # text, axes and lines
        assert dark > 0.005 * 1280 * 2400, "the screenshot is nearly blank"
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50  # anti-aliased text and coloured charts


# Measures the run-metadata tables after layout. The page's policy forbids scripts, so the test loads a copy
# without the policy and with this script; what it measures lands in the DOM that --dump-dom prints.
MEASURE = """<script>
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const columns = [...document.querySelectorAll('#metadata .kv > div')].map(d => ({
  name: d.querySelector('h3').textContent, column: box(d), table: box(d.querySelector('table'))}));
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify({panel: box(document.querySelector('#metadata')), columns});
document.body.appendChild(out);
</script>"""


@pytest.mark.parametrize("width", [1400, 1000])
def test_run_metadata_tables_never_overlap(tmp_path, width):
    """Long values (a deep model path, a sha256) wrap inside their table; no table runs under its neighbour."""
    import html
    import json

    report = load("demo")
    report["model"]["path"] = "/" + "/".join(["a-rather-long-folder-name-without-breaks"] * 5) + "/model.safetensors"
    page = render_html(report, DEMO_DIR)
    page = re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", page)
    assert "Content-Security-Policy" not in page
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    proc = chromium(tmp_path, measured, "--dump-dom", f"--window-size={width},2400")
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    columns = layout["columns"]
    assert len(columns) >= 6 and any(c["name"] == "Model" for c in columns)
    for c in columns:  # each table inside its own column, the columns inside the panel
        (cl, _, cr, _), (tl, _, tr, _) = c["column"], c["table"]
        assert cl - 0.5 <= tl and tr <= cr + 0.5, c
        assert layout["panel"][0] <= cl and cr <= layout["panel"][2], c
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            (al, at, ar, ab), (bl, bt, br, bb) = a["table"], b["table"]
            overlap = min(ar, br) - max(al, bl) > 0.5 and min(ab, bb) - max(at, bt) > 0.5
            assert not overlap, (a, b)


def test_series_page_loads_cleanly_with_heatmap_curves_and_selection(tmp_path):
    """series.html of a series built from two stored reports (different attacks, an unpaired change, significant
    2v2 cells in one): no console message, and the heatmap, the curves with their error bars and the selection
    are in the DOM and on the screenshot."""
    from reports.html import render_series_html
    from reports.series import build_series

    named = [("epoch_1", "ckpt/epoch_1.safetensors", load("demo-full.json.gz")),
             ("epoch_2", "ckpt/epoch_2.safetensors", load("demo"))]
    series = build_series(named, order="number", alpha=0.05, select_metric="robust_accuracy[pgd@0.1].lower",
                          gate_on="selected", tool={"name": "robustness-audit", "version": "test"}, created="today")
    page = tmp_path / "series.html"
    page.write_text(render_series_html(series), encoding="utf-8")

    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_lines(dom.stderr) == [], console_lines(dom.stderr)
    parsed = parse(dom.stdout)
    assert {a.get("id") for t, a in parsed.tags if t == "section"} == {"outcome", "accuracy", "changes", "semantics",
                                                                       "saliency", "checkpoints"}
    significant = sum(r["significant"] for c in series["checkpoints"] for r in c["semantics"]["glove"]["layers"])
    assert significant >= 1
    assert dom.stdout.count('stroke="#000000" stroke-width="2.5"') == significant + 1  # the cells and the key
    assert dom.stdout.count('class="error-bar"') >= 2 * 4  # clean and pgd@0.1 at both checkpoints, at least
    assert sum(t == "polyline" for t, _ in parsed.tags) >= 4
    text = re.sub(r"\s+", " ", "".join(parsed.text))
    assert f"Selected: {series['selection']['selected']} (" in text and "Gates apply to the selected checkpoint" in text

    shot = tmp_path / "series.png"
    proc = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1400,5000")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert console_lines(proc.stderr) == []
    from PIL import Image

    with Image.open(shot) as image:
        grey = image.convert("L")
        assert sum(grey.histogram()[:100]) > 0.005 * 1400 * 5000, "the screenshot is nearly blank"
        blues = sum(1 for r, g, b in image.convert("RGB").getdata() if b > r + 60)  # the heatmap's and charts' blue
        assert blues > 2000
