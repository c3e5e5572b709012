"""series.html: written with series.json at the end of a real series (all or none, skipped with --no-html),
rendered from series.json alone; every number it shows is series.json's (checked against formats written here);
its heatmap, curves and links; hand-edited documents (missing analyses, one checkpoint, hostile names) render
and stay inert."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from html_support import HOSTILE, assert_inert, parse

from audit.cli import main
from reports.html import render_series_html
from reports.series import validate_series

ASSETS = Path(__file__).resolve().parents[1] / "audit" / "demo_assets"
STANDARD, ADVERSARIAL = ASSETS / "fashion_cnn.safetensors", ASSETS / "fashion_cnn_adv.safetensors"
SETTINGS = ["--arch", "audit.demo_model:FashionCNN", "--classes", "fashion-mnist", "--samples", "30", "-a", "fgsm",
            "-a", "pgd", "--eps", "0.05,0.1", "--steps", "2", "--permutations", "30", "--no-checks"]
QUICK = ["--arch", "audit.demo_model:FashionCNN", "--classes", "fashion-mnist", "--samples", "20", "-a", "fgsm",
         "--eps", "0.1", "--layers", "none", "--no-checks"]


def _series(args: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        main(["series", *args])
    return stop.value.code


def _copies(folder: Path) -> Path:
    """Copies of the demo twins as three epochs: standard, adversarial, standard again."""
    folder.mkdir(parents=True)
    for n, source in ((1, STANDARD), (2, ADVERSARIAL), (3, STANDARD)):
        shutil.copy(source, folder / f"epoch_{n}.safetensors")
    return folder


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("series_html")
    ckpt = _copies(root / "ckpt")
    out = root / "out"
    assert _series([str(ckpt / "epoch_*.safetensors"), *SETTINGS, "--select", "robust_accuracy[pgd@0.1].lower",
                    "--out", str(out)]) == 0
    series = json.loads((out / "series.json").read_text(encoding="utf-8"))
    return out, series, (out / "series.html").read_text(encoding="utf-8")


def test_the_page_is_written_with_series_json_from_its_plain_data(written):
    out, series, html = written
    validate_series(series)
    assert html == render_series_html(json.loads((out / "series.json").read_text(encoding="utf-8")))
    assert_inert(html, links=True)
    page = parse(html)
    assert {a.get("id") for t, a in page.tags if t == "section"} == {"outcome", "accuracy", "changes", "semantics",
                                                                      "saliency", "checkpoints"}
    hrefs = [a["href"] for t, a in page.tags if t == "a"]
    assert {f"epoch_{n}/report.{kind}" for n in (1, 2, 3) for kind in ("html", "json")} <= set(hrefs)
    for href in hrefs:  # every link lands on a file of the series
        assert (out / href).is_file(), href
    for c in series["checkpoints"]:  # each checkpoint's digest, its start (the page stays narrow)
        assert f">{c['sha256'][:16]}…</td>" in html and c["sha256"][16:] not in html


def test_no_html_skips_the_page_and_a_rerun_removes_a_stale_one(tmp_path):
    ckpt = _copies(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert _series([str(ckpt / "epoch_*.safetensors"), *QUICK, "--out", str(out)]) == 0
    assert (out / "series.html").is_file() and (out / "epoch_1" / "report.html").is_file()
    assert _series([str(ckpt / "epoch_*.safetensors"), *QUICK, "--no-html", "--out", str(out)]) == 0
    assert (out / "series.json").is_file() and not (out / "series.html").exists()


def test_a_page_that_cannot_be_rendered_leaves_no_series_json(tmp_path, monkeypatch, capsys):
    import reports.html

    def broken(series):
        raise ValueError("the page failed")

    monkeypatch.setattr(reports.html, "render_series_html", broken)
    ckpt = _copies(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert _series([str(ckpt / "epoch_*.safetensors"), *QUICK, "--out", str(out)]) == 3  # an internal error
    assert "the page failed" in capsys.readouterr().err
    assert not (out / "series.json").exists() and not (out / "series.html").exists()
    assert not list(out.glob("*.tmp*"))
    # what stays is the series' resume state, and only it: --resume finishes the series without auditing again
    assert [p.name for p in out.glob(".*")] == [".series-state.json"]
    monkeypatch.undo()
    assert _series([str(ckpt / "epoch_*.safetensors"), *QUICK, "--out", str(out), "--resume"]) == 0
    assert "kept: audited before the interruption" in capsys.readouterr().out
    assert (out / "series.json").is_file() and (out / "series.html").is_file()
    assert not list(out.glob(".*")) and not list(out.glob("*.tmp*"))


# --- the numbers, each written here from series.json ----------------------------------------------------------

def _pct(v, ci=None) -> str:
    return f"{v * 100:.1f}%" + ("" if ci is None else f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]")


def _pp(v) -> str:
    return f"{v * 100:+.1f} pt"


def _tables(html: str) -> dict[str, list[list[str]]]:
    """Each table's body rows as cell texts, keyed by the table's id (or class)."""
    out: dict[str, list[list[str]]] = {}
    for key, body in re.findall(r'<table (?:id|class)="([^"]+)">.*?<tbody>(.*?)</tbody>', html, re.S):
        rows = [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
                for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]
        out.setdefault(key, []).extend(rows)
    return out


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}".replace("e-0", "e-")


def test_every_number_on_the_page_is_series_json(written):
    _, series, html = written
    import html as htmllib

    tables = {k: [[htmllib.unescape(c) for c in row] for row in rows] for k, rows in _tables(html).items()}
    points = series["checkpoints"]
    metrics = [r["metric"] for r in points[0]["robust"]]
    assert len(metrics) == 4
    expected = []
    for c in points:
        robust = {r["metric"]: r for r in c["robust"]}
        s = c["score"]
        expected.append([c["name"], _pct(c["clean"]["accuracy"], c["clean"]["accuracy_ci"]),
                         *[_pct(robust[m]["value"], robust[m]["ci"]) for m in metrics],
                         f"{s['value']:.1f} [{s['interval'][0]:.1f}, {s['interval'][1]:.1f}]", s["grade"]])
    assert tables["trend"] == expected
    changes = []
    for ch in series["changes"]:
        for r in ch["rows"]:
            p = r["p_better_adjusted"] if r["delta"] > 0 else r["p_adjusted"]
            word = {"rose": "▲ rose significantly", "fell": "▼ fell significantly"}.get(r["direction"], r["direction"])
            changes.append([r["metric"].split("[")[-1].rstrip("]") if "[" in r["metric"] else "clean",
                            _pct(r["base"]), _pct(r["new"]), _pp(r["delta"]),
                            f"[{_pp(r['difference_ci'][0])}, {_pp(r['difference_ci'][1])}]", r["test"],
                            f"{r['b']} / {r['c']}", _p(p), word])
    assert tables["change"] == changes
    assert {"▲ rose significantly", "▼ fell significantly"} <= {row[-1] for row in changes}  # 1 -> 2 -> 3
    sel = series["selection"]
    assert tables["selection"] == [[v["name"], _pct(v["value"]), "✔ selected" if v["name"] == sel["selected"] else ""]
                                   for v in sel["values"]]
    text = htmllib.unescape(" ".join(parse(html).text))
    assert f"Selected: {sel['selected']} ({sel['metric']} = {_pct(sel['value'])}). Rule: {sel['rule']}." in \
        re.sub(r"\s+", " ", text)
    layers = [r["layer"] for r in points[0]["saliency"]["layers"]]
    assert tables["entropy"] == [[layer, *[
        f"{r['entropy']:.3g} [{r['entropy_ci'][0]:.3g}, {r['entropy_ci'][1]:.3g}]"
        for c in points for r in c["saliency"]["layers"] if r["layer"] == layer]] for layer in layers]
    assert [row[:3] for row in tables["superization"]] == [
        [c["name"], f"{c['saliency']['superization']['index']:.3g}"
         + (" (untestable)" if c["saliency"]["superization"]["testable"] is False else ""),
         f"{c['saliency']['superization']['p_value']:.3g}"] for c in points]
    # the heatmaps: every cell's 2v2 in two decimals, "*" where significant, its p in the tooltip
    for space in points[0]["semantics"]:
        for c in points:
            for r in c["semantics"][space]["layers"]:
                shown = f"{r['two_vs_two']:.2f}" + ("*" if r["significant"] else "")
                tip = f"{r['layer']}, {c['name']}: {shown}; p {r['p_value']:.3g} ("
                assert tip in html, tip


def _plot_box(svg: str) -> tuple[float, float]:
    top, height = re.search(r'<rect x="[-0-9.]+" y="([-0-9.]+)" width="[-0-9.]+" height="([-0-9.]+)" fill="none"',
                            svg).groups()
    return float(top), float(height)


def test_the_curves_sit_where_the_accuracies_are_with_their_intervals(written):
    _, series, html = written
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    fgsm = next(s for s in svgs if "under fgsm" in s)
    top, height = _plot_box(fgsm)
    points = series["checkpoints"]
    clean_markers = re.findall(r'<circle cx="([-0-9.]+)" cy="([-0-9.]+)" r="4.0"[^>]*><title>clean: ([^<]+)</title>',
                               fgsm)
    assert len(clean_markers) == len(points)
    for (_, cy, tip), c in zip(clean_markers, points, strict=True):
        v, (lo, hi) = c["clean"]["accuracy"], c["clean"]["accuracy_ci"]
        assert float(cy) == pytest.approx(top + height * (1 - v), abs=0.11)
        assert tip == f"{c['name']} → {_pct(v)} [{_pct(lo)}, {_pct(hi)}]"
    assert fgsm.count('class="error-bar"') == 3 * len(points)  # clean, fgsm@0.05, fgsm@0.1 at each checkpoint
    score = next(s for s in svgs if "Score across" in s)
    assert score.count('class="error-bar"') == len(points)


def _hand_edited(series: dict) -> dict:
    return copy.deepcopy(series)


def test_significant_cells_are_marked_and_shaded_by_their_value(written):
    _, series, _ = written
    doc = _hand_edited(series)
    cell = doc["checkpoints"][1]["semantics"]["glove"]["layers"][-1]
    cell.update(two_vs_two=0.9, p_value=0.001, significant=True)
    validate_series(doc)
    html = render_series_html(doc)
    name = doc["checkpoints"][1]["name"]
    about = f"{cell['layer']}, {name}: 0.90*; p 0.001 (significant)"
    rect = re.search(rf'<rect [^>]*fill="(#[0-9a-f]{{6}})" stroke="(#[0-9a-f]{{6}})" stroke-width="([0-9.]+)">'
                     rf"<title>{re.escape(about)}</title>", html)
    assert rect, about
    k = (0.9 - 0.5) / 0.5  # white at chance (0.5) to #0072B2 at 1.0
    assert rect.group(1) == "#" + "".join(f"{round(255 + (c - 255) * k):02x}" for c in (0x00, 0x72, 0xB2))
    assert rect.group(2) == "#000000" and float(rect.group(3)) > 2
    assert "1 of 15 measured cells significant" in " ".join(parse(html).text)


def test_missing_analyses_one_checkpoint_and_no_selection_render(written):
    _, series, _ = written
    doc = _hand_edited(series)
    doc["checkpoints"][0]["semantics"] = None
    doc["checkpoints"][2]["saliency"] = None
    doc["checkpoints"][1]["score"] = {"value": None, "interval": None, "grade": None}
    doc["checkpoints"][1]["clean"]["accuracy_ci"] = None
    validate_series(doc)
    html = render_series_html(doc)
    assert_inert(html, links=True)
    text = " ".join(parse(html).text)
    assert "no semantic section" in html and "No glove measurement in: epoch_1" in text
    assert "No saliency section in: epoch_3" in text and "no saliency section" in text
    assert _tables(html)["trend"][1][1] == _pct(doc["checkpoints"][1]["clean"]["accuracy"])  # no interval: none shown

    bare = _hand_edited(series)
    bare["checkpoints"] = bare["checkpoints"][:1]
    bare["changes"], bare["selection"] = [], None
    for c in bare["checkpoints"]:
        c.update(semantics=None, saliency=None, robust=[], score={"value": None, "interval": None, "grade": None})
    bare["gates"] = {"on": "last", "checkpoint": "epoch_1", "gated": True, "passed": False,
                     "summary": "FAILED: clean.accuracy>=0.99"}
    validate_series(bare)
    html = render_series_html(bare)
    assert_inert(html, links=True)
    text = " ".join(parse(html).text)
    for phrase in ("One checkpoint: nothing to compare", "No semantic analysis in any checkpoint",
                   "No saliency analysis in any checkpoint", "No robust accuracy in any checkpoint",
                   "No checkpoint is scored", "No selection", "✖ FAILED", "FAILED: clean.accuracy>=0.99"):
        assert phrase in text, phrase


def test_hostile_names_are_escaped_and_links_stay_in_the_series_folder(written):
    _, series, _ = written
    doc = _hand_edited(series)
    names = [HOSTILE[0], HOSTILE[1], "javascript:alert(1)"]
    rename = {c["name"]: n for c, n in zip(doc["checkpoints"], names, strict=True)}
    for c in doc["checkpoints"]:
        c["name"] = rename[c["name"]]
        c["path"] = f"/tmp/{HOSTILE[0]}/{c['name']}.safetensors"
        c["semantics"] = {HOSTILE[2]: c["semantics"]["glove"]}
        for block in (c["semantics"][HOSTILE[2]]["layers"], c["saliency"]["layers"]):
            for r in block:
                r["layer"] = f"{HOSTILE[1]}.{r['layer']}"
        for r in c["robust"]:
            r["attack"] = HOSTILE[0]
    for ch in doc["changes"]:
        ch["from"], ch["to"] = rename[ch["from"]], rename[ch["to"]]
        ch["rows"][1]["metric"] = f"robust_accuracy[{HOSTILE[0]}@0.05]"
    doc["selection"]["selected"] = rename[doc["selection"]["selected"]]
    doc["selection"]["values"] = [{**v, "name": rename[v["name"]]} for v in doc["selection"]["values"]]
    doc["gates"].update(checkpoint=names[-1], summary=HOSTILE[0])
    validate_series(doc)
    html = render_series_html(doc)
    assert_inert(html, links=True)
    page = parse(html)
    assert not any(t == "script" for t, _ in page.tags)
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    text = "".join(page.text)
    for h in HOSTILE:
        assert h in text
    hrefs = {a["href"] for t, a in page.tags if t == "a"}
    assert "javascript%3Aalert%281%29/report.html" in hrefs
    assert "%3C%2Fscript%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/report.json" in hrefs


def test_the_series_page_never_imports_torch(written):
    out, _, _ = written
    code = ("import json, sys\nfrom reports.html import render_series_html\n"
            f"html = render_series_html(json.loads(open({str(out / 'series.json')!r}).read()))\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'\nprint(len(html))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 10_000
