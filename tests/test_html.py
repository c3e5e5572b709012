"""The HTML review page: renders the stored sample reports, escapes untrusted strings, loads nothing, degrades
gracefully, and draws its charts where the numbers say."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from html_support import DEMO_DIR, HOSTILE, SAMPLES, assert_inert, load, parse

from reports.html import render_compare_html, render_html
from reports.html.charts import Reference, Series, hbar_chart, histogram, line_chart, nice_range, nice_ticks
from reports.html.panels import finding, focus_entry

SCORE = {"value": 41.5, "grade": "C", "weights": {"robustness": 0.6, "severity": 0.2, "representation": 0.2},
         "components": {"robustness": {"value": 0.3, "weight": 0.6, "included": True, "formula": "mean retained",
                                       "detail": "retained over the grid"},
                        "saliency": {"value": None, "weight": 0.0, "included": False, "formula": "1 - |dH|/H",
                                     "detail": "no saliency section"}},
         "missing": ["saliency"], "capped": {"grade": "C", "by": ["input_gradients"], "reason": "gradients vanish"}}
VERDICT = {"passed": False, "fail_under": 50.0, "score_passed": False,
           "gates": [{"expression": "clean.accuracy>=0.9", "metric": "clean.accuracy", "op": ">=", "threshold": 0.9,
                      "value": 0.92, "passed": True}]}
CHECKS = [{"name": "input_gradients", "status": "fail", "detail": "gradients vanish on 100% of images",
           "numbers": {"zero_fraction": 1.0, "passes": 40}},
          {"name": "large_budget", "status": "warn", "detail": "robust accuracy 12% at eps 0.5", "numbers": {}},
          {"name": "clean_accuracy", "status": "pass", "detail": "92% clean, chance 10%", "numbers": {"chance": 0.1}}]


def scored(report: dict) -> dict:
    return copy.deepcopy({**report, "score": SCORE, "verdict": VERDICT, "checks": CHECKS})


def hostile_report() -> dict:
    """The demo report with markup in every untrusted string a page shows: classes, layers, warnings, paths."""
    r = scored(load("demo"))
    names = list(HOSTILE) + [f"{h} {i}" for i, h in enumerate(HOSTILE * 3)]
    rename = dict(zip(r["data"]["classes"], names, strict=False))
    r["data"]["classes"] = [rename[c] for c in r["data"]["classes"]]
    for item in r["clean"]["per_class"] + [p for e in r["attacks"] for p in e["per_class_robust_accuracy"]]:
        item["class"] = rename[item["class"]]
    sem, sal = r["analyses"]["semantics"], r["analyses"]["saliency"]
    for sev in sem["severity"]:
        for w in sev["worst"]:
            w["true"], w["predicted"] = rename[w["true"]], rename[w["predicted"]]
    layer_names = {layer["name"]: f"{HOSTILE[i % 3]}.{i}" for i, layer in enumerate(sem["layers"])}
    layer_names.update({s["name"]: f"{HOSTILE[1]}.skip{i}" for i, s in enumerate(sal["skipped_layers"])})
    for layer in sem["layers"] + sal["layers"] + sal["skipped_layers"]:
        layer["name"] = layer_names[layer["name"]]
    for run in sem["one_vs_two"]:
        run["flip_layer"] = layer_names.get(run["flip_layer"])
    for det in sal["detection"]:
        det["best_layer"] = layer_names[det["best_layer"]]
    r["analyses"]["tap"]["layers"] = [layer_names[n] for n in r["analyses"]["tap"]["layers"]]
    sem["notes"] = list(HOSTILE)
    sem["interpretation"] = HOSTILE[0]
    sal["figures"] = [*sal["figures"], f"figures/{HOSTILE[1]}.png"]
    r["warnings"] = list(HOSTILE)
    r["model"]["label"] = HOSTILE[0]
    r["data"]["source"] = HOSTILE[1]
    r["attacks"][0]["name"] = HOSTILE[2]
    r["checks"][0]["detail"] = HOSTILE[0]
    r["verdict"]["gates"][0]["expression"] = HOSTILE[1]
    return r


@pytest.mark.parametrize("name", ["demo", *SAMPLES])
def test_sample_reports_render_every_panel(name):
    html = render_html(load(name), DEMO_DIR if name == "demo" else None)
    page = parse(html)
    ids = {a.get("id") for t, a in page.tags if t == "section"}
    assert ids == {"summary", "robustness", "per-class", "semantics", "saliency", "hierarchy", "checks",
                   "metadata"}
    charts = [a for t, a in page.tags if t == "svg"]
    assert len(charts) >= 6  # robustness, per class, 2v2, 1v2, severity, entropy
    assert sum(t == "table" for t, _ in page.tags) >= 5
    assert_inert(html)


def test_demo_page_embeds_its_figures_and_states_its_numbers():
    report = load("demo")
    html = render_html(report, DEMO_DIR)
    page = parse(html)
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == len(report["analyses"]["saliency"]["figures"]) == 4
    on_disk = (DEMO_DIR / report["analyses"]["saliency"]["figures"][0]).read_bytes()
    assert base64.b64decode(images[0].split(",", 1)[1]) == on_disk
    text = " ".join(page.text)
    # pgd@0.1 beats fgsm (17%); each share with its Wilson interval (3 of 100: [1.0, 8.5]%, 92 of 100)
    assert "robust accuracy is 3.0% (interval 1.0–8.5%) against 92.0% (interval 85.0–95.9%) clean: 89 of 92" in text
    assert report["analyses"]["semantics"]["interpretation"] in text
    assert report["analyses"]["saliency"]["superization"]["statement"] in text
    assert "1.54" in text and "0.836" in text  # the worst confusion's severity and word distance
    for key in ("prepass_forward", "adversarial_forward"):
        assert f"layer tap: {key}" in text  # tap pass counts in the metadata
    assert report["model"]["sha256"] in text and "2.13.0+cpu" in text


def test_content_security_policy_allows_only_the_page_own_style_and_data_images():
    html = render_html(load("demo"), DEMO_DIR)
    page = parse(html)
    csp = page.csp()
    assert csp is not None
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"] and directives["img-src"] == ["data:"]
    assert "'unsafe-inline'" not in csp
    (style,) = page.styles
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert directives["style-src"] == [f"'sha256-{digest}'"]
    # the CSP comes before anything it governs
    assert html.index("Content-Security-Policy") < html.index("<style>")


def test_untrusted_strings_are_escaped_everywhere():
    report = hostile_report()
    html = render_html(report, DEMO_DIR)
    assert_inert(html)
    page = parse(html)
    assert not any(t == "script" for t, _ in page.tags)
    assert not any("onerror" in a or "onmouseover" in a for _, a in page.tags)
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34; onmouseover=&#34;x" in html or "&quot; onmouseover=&quot;x" in html
    text = "".join(page.text)
    for h in HOSTILE:  # shown to the reader as text
        assert h in text
    # an attribute value keeps the quote inside it: the figure's alt text holds the hostile path whole
    alts = [a["alt"] for t, a in page.tags if t == "img" and "alt" in a]
    assert not any(HOSTILE[1] in alt for alt in alts)  # the hostile figure is not embedded (no such file) ...
    assert f"figures/{HOSTILE[1]}.png: missing" in text  # ... and the page says so


def test_compare_page_shows_deltas_and_escapes_metric_names():
    base, new = load("demo-full.json.gz"), scored(load("demo"))
    base.pop("score")  # a report without a score
    comparison = {"rows": [{"metric": "clean.accuracy", "base": 0.9, "new": 0.92, "delta": 0.02, "regressed": False},
                           {"metric": f"robust_accuracy[{HOSTILE[0]}]", "base": 0.03, "new": 0.01, "delta": -0.02,
                            "regressed": True}],
                  "tolerance": 0.01, "regressed": True}
    html = render_compare_html(base, new, comparison)
    assert_inert(html)
    text = " ".join(parse(html).text)
    assert "REGRESSED" in text and f"robust_accuracy[{HOSTILE[0]}]" in text
    # shares in %, their differences in percentage points, as the terminal table shows them
    assert "+2.0 pt" in text and "-2.0 pt" in text and "90.0%" in text and "1.0%" in text
    assert "grade C" in text and "no score in this report" in text  # new is scored, base is not


def test_a_bare_report_renders_and_says_what_is_missing():
    report = load("demo")
    for key in ("score", "verdict", "checks"):
        report.pop(key, None)
    report["analyses"] = {}
    report["attacks"] = []
    html = render_html(report)
    text = " ".join(parse(html).text)
    for phrase in ("no score in this report", "no verdict in this report", "No validity checks in this report",
                   "No semantic analysis", "No saliency analysis", "No attack results in this report",
                   "no attack entries"):
        assert phrase in text, phrase
    assert_inert(html)


def test_skipped_analyses_state_their_reasons():
    report = load("demo")
    sem, sal = report["analyses"]["semantics"], report["analyses"]["saliency"]
    report["analyses"]["semantics"] = {k: sem[k] for k in ("method", "embeddings", "coverage")}
    report["analyses"]["semantics"]["skipped"] = "only 1 classes have both a word vector and images"
    report["analyses"]["saliency"] = {k: v for k, v in sal.items() if k not in ("layers", "superization",
                                                                               "detection", "figures")}
    report["analyses"]["saliency"]["skipped"] = "no chosen layer has a spatial map"
    text = " ".join(parse(render_html(report)).text)
    assert "only 1 classes have both a word vector and images" in text
    assert "no chosen layer has a spatial map" in text


def test_score_verdict_and_checks_read_without_colour():
    text = " ".join(parse(render_html(scored(load("demo")), DEMO_DIR)).text)
    assert "41.5" in text and "grade C" in text and "capped at C: gradients vanish" in text
    assert "FAILED" in text and "clean.accuracy>=0.9" in text and "✔ met" in text and "✖ not met" in text
    for word in ("✖ FAIL", "⚠ WARN", "✔ PASS"):
        assert word in text
    assert "zero_fraction = 1" in text and "check input_gradients: passes" in text


def test_figures_that_cannot_be_embedded_are_named(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fake.png").write_text("not a png")
    (tmp_path / "secret.png").write_bytes((DEMO_DIR / "figures" / "pgd_0.1_0.png").read_bytes())
    report = load("demo")
    report["analyses"]["saliency"]["figures"] = ["figures/fake.png", "figures/../secret.png", "../secret.png",
                                                 "figures/gone.png"]
    html = render_html(report, tmp_path / "figures" / "..")
    text = " ".join(parse(html).text)
    assert "figures/fake.png: not embedded: not a PNG file" in text
    assert "../secret.png: not embedded: outside the report" in text
    assert "figures/gone.png: missing" in text
    assert html.count("data:image/png") == 1  # figures/../secret.png stays inside the folder: embedded
    assert "not embedded: the report's folder is unknown" in " ".join(parse(render_html(load("demo"))).text)


def test_the_strongest_attack_at_the_largest_budget_breaks_ties_by_its_whole_curve():
    report = load("demo-full.json.gz")  # fgsm, pgd and apgd all reach 0% at eps 0.3
    e = focus_entry(report["attacks"])
    assert (e["name"], e["eps_text"]) == ("apgd", "0.3")  # lowest mean robust accuracy over 0.05..0.3
    assert "Under apgd at L∞ eps 0.3" in finding(report)
    assert "0.0% (interval 0.0–1.3%) against 90.0% (interval 86.1–92.9%) clean" in finding(report)
    minimal_only = [a for a in load("minimal-l2.json.gz")["attacks"] if a["budget_mode"] == "minimal"]
    assert focus_entry(minimal_only) is None
    assert "median is not reached" in finding({"attacks": minimal_only, "clean": {"accuracy": 0.95}})


def test_renderer_never_imports_torch():
    code = ("import json, sys\nfrom pathlib import Path\nfrom reports.html import render_html\n"
            f"d = Path({str(DEMO_DIR)!r})\n"
            "html = render_html(json.loads((d / 'report.json').read_text()), d)\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'\nprint(len(html))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 10_000


# --- the charts ---------------------------------------------------------------------------------------------------

def _numbers(svg: str, tag: str, attr: str) -> list[float]:
    return [float(v) for v in re.findall(rf'<{tag} [^>]*?\b{attr}="([-0-9.]+)"', svg)]


def test_nice_range_known_answers():
    assert nice_range(1.15, 3.79) == (1.0, 4.0)  # the saliency entropies of a series: steps of 0.5 -> ends 1, 4
    assert nice_range(0.42, 0.47) == pytest.approx((0.42, 0.47))  # steps of 0.01: already round
    assert nice_range(2.0, 2.0) == pytest.approx((1.8, 2.2))  # one value: widened by a tenth each way


def test_nice_ticks_known_answers():
    assert nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 0.3, 6) == [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    assert nice_ticks(0, 7, 4) == [0, 2, 4, 6]


def test_line_chart_places_points_on_its_axes():
    svg = str(line_chart([Series("a", [(0.0, 0.0), (0.1, 0.5), (0.3, 1.0)])], title="t", x_label="eps",
                         y_label="acc", x_ticks=[(0.0, "0"), (0.1, "0.1"), (0.3, "0.3")],
                         references=[Reference(0.25, "chance")]))
    cx, cy = _numbers(svg, "circle", "cx"), _numbers(svg, "circle", "cy")
    cx, cy = cx[:3], cy[:3]  # the series' markers (the legend's marker comes last)
    grid = sorted(set(_numbers(svg, "line", "y1")))
    bottom, top = max(cy), min(cy)
    assert cy[1] == pytest.approx((bottom + top) / 2, abs=0.11)  # y 0.5 halfway between 0 and 1
    assert (cx[1] - cx[0]) * 2 == pytest.approx(cx[2] - cx[1], abs=0.2)  # x 0.1 is a third of the way to 0.3
    assert top in grid and bottom in grid  # the 0% and 100% grid lines pass through the end points
    assert any(abs(y - (bottom - 0.25 * (bottom - top))) < 0.11 for y in grid)  # the reference at 0.25
    assert "chance" in svg and svg.count("<polyline") == 1


def test_line_chart_breaks_the_line_at_missing_values_and_labels_categories():
    svg = str(line_chart([Series("s", [(0, 0.5), (1, None), (2, 0.7), (3, 0.8)], dash="dashed")], title="t",
                         x_label="layer", y_label="v", categories=["a", "b", "<c>", "d"]))
    assert svg.count("<polyline") == 1  # only 2-3 forms a line; 0 stands alone
    assert 'stroke-dasharray="7 4"' in svg and "&lt;c&gt;" in svg and "<c>" not in svg


def test_hbar_and_histogram_lengths_follow_the_values():
    svg = str(hbar_chart(["x", "y"], [("clean", [1.0, 0.5]), ("robust", [0.25, None])], title="t", x_label="acc"))
    widths = _numbers(svg, "rect", "width")[:3]  # x clean, x robust, y clean (y robust is missing); then the legend
    assert widths[0] == pytest.approx(2 * widths[2], abs=0.2)
    assert widths[0] == pytest.approx(4 * widths[1], abs=0.3)
    assert "—" in svg  # the missing robust value
    hist = str(histogram([0.0, 0.5, 1.0], [2, 4, 1], title="h", x_label="severity"))  # last bin open: [1, ∞)
    heights = _numbers(hist, "rect", "height")
    assert heights[1] == pytest.approx(2 * heights[0], abs=0.2)
    assert heights[1] == pytest.approx(4 * heights[2], abs=0.3)
    assert "∞" in hist


def test_report_json_round_trip_renders_identically():
    report = load("demo")
    assert render_html(json.loads(json.dumps(report)), DEMO_DIR) == render_html(report, DEMO_DIR)


def test_per_class_bars_carry_their_intervals():
    report = load("demo")
    clean = report["clean"]["per_class"][0]
    html = render_html(report, DEMO_DIR)
    lo, hi = clean["accuracy_ci"]
    # the first class's clean bar: its value and the Wilson interval of its count, in the tooltip of the whisker
    assert f"{clean['class']}, clean: [{100 * lo:.1f}%, {100 * hi:.1f}%]" in html
    assert html.count('class="error-bar"') >= 2 * len(report["clean"]["per_class"])


def test_an_audit_written_into_a_fresh_folder_embeds_its_figures(tmp_path):
    """The page is rendered before any file of the audit is on disk: its figures come from the audit, not from a
    folder that does not have them yet (they were named "missing" in every fresh output folder)."""
    from audit import AuditConfig, run_audit
    from audit.demo import ARCH, ASSETS
    from audit.outputs import write_outputs

    result = run_audit(AuditConfig(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo",
                                   classes="fashion-mnist", attacks=["fgsm"], eps="0.2", samples=20, batch_size=20,
                                   device="cpu", permutations=20, checks=False))
    out = tmp_path / "fresh"
    write_outputs(result, out)
    report = json.loads((out / "report.json").read_text())
    names = report["analyses"]["saliency"]["figures"]
    assert names
    page = parse((out / "report.html").read_text())
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == len(names)
    for name, src in zip(names, images, strict=True):
        assert base64.b64decode(src.split(",", 1)[1]) == (out / name).read_bytes()
    assert "missing" not in " ".join(page.text)
