"""What the tool says matches what it measured: one reference run read by every renderer and the score,
sentences that cite the run their table shows and claim no more than the counts allow."""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from html_support import load, parse
from rich.console import Console

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.analyses.saliency.analysis import superization_statement
from audit.analyses.semantics.report import panel as semantics_panel
from reports.html import render_html
from reports.html.panels import finding, focus_entry
from reports.schema import AuditResult, validate_report
from reports.score import reference_run, score_report
from reports.terminal import render_summary
from tests.test_semantic_audit import prepared_analysis


def config(**kw) -> AuditConfig:
    base = dict(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo", classes="fashion-mnist",
                samples=40, batch_size=40, steps=5, device="cpu", permutations=50, checks=False)
    return AuditConfig(**{**base, **kw})


def semantic_header(out: str) -> str:
    """The two header lines of the terminal's semantic table."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "FDR" in line and "clean" in line)
    return " ".join(lines[at:at + 2])


def terminal_text(result: AuditResult) -> str:
    console = Console(record=True, width=250, color_system=None)
    render_summary(result, console)
    return console.export_text()


@pytest.fixture(scope="module")
def l2_first():
    """An audit whose first attack is L2 (pgdl2 at 0.5) and second L∞ (pgd at 8/255)."""
    return run_audit(config(attacks=["pgdl2", "pgd"]))


def test_score_html_terminal_and_the_report_agree_on_the_reference_run_with_l2_listed_first(l2_first):
    report = l2_first.to_dict()
    validate_report(report)
    assert [e["name"] for e in report["attacks"]] == ["pgdl2", "pgd"]
    # the report records the one choice, and the score reads the same run
    assert report["reference"]["attack"] == "pgd" and report["reference"]["norm"] == "Linf"
    assert report["score"]["reference"]["attack"] == "pgd"
    assert reference_run(report)["name"] == "pgd"
    # the HTML page: headline, per-class panel, the 1 vs 2 chart and the severity panel
    assert focus_entry(report["attacks"])["name"] == "pgd"
    assert finding(report).startswith("Under pgd at L∞ eps 8/255")
    panel = semantics_panel(report)
    assert panel["one_vs_two_run"] == panel["severity_run"] == "pgd@8/255"
    text = " ".join(parse(render_html(report)).text)
    assert "robust under pgd@8/255" in render_html(report) and "Under pgd at L∞ eps 8/255" in text
    # the analyses' sentence and the terminal's semantic table
    sem = report["analyses"]["semantics"]
    assert "under pgd@8/255 " in sem["interpretation"] and "pgdl2" not in sem["interpretation"]
    out = terminal_text(l2_first)
    header = semantic_header(out)
    assert "pgd@8/255" in header and "pgdl2" not in header
    assert re.search(r"Reference run pgd at L∞ 8/255", out)


def test_a_report_re_scored_and_re_rendered_keeps_its_reference_run(l2_first):
    report = l2_first.to_dict()
    rescored = score_report(report)
    assert rescored["reference"] == {k: report["reference"][k] for k in ("attack", "norm", "eps", "eps_text")}


@pytest.fixture(scope="module")
def targeted():
    """A targeted audit at a budget that reaches few targets and one that reaches more."""
    return run_audit(config(attacks=["pgd"], eps="0.02,0.2", targeted="random", samples=60, batch_size=60))


def test_a_targeted_audit_cites_the_budget_its_table_shows_and_says_it_is_targeted(targeted):
    report = targeted.to_dict()
    small, large = report["attacks"]
    assert large["n_success"] > small["n_success"]
    assert report["reference"]["eps_text"] == "0.2"
    sem = report["analyses"]["semantics"]
    assert "under pgd@0.2 " in sem["interpretation"] and "pgd@0.02" not in sem["interpretation"]
    out = terminal_text(targeted)
    header = semantic_header(out)
    assert "pgd@0.2" in header
    assert "Targeted random targets" in out and "classified as the target" in out
    assert "targeted: random targets" in finding(report)
    assert "targeted: random targets" in " ".join(parse(render_html(report)).text)


# --- the flip layer --------------------------------------------------------------------------------------------

def flip_friendly(shares: list[float], clean: list[float], n: int) -> np.ndarray:
    """The paired 1 vs 2 counts most favourable to a flip that the stored shares allow: every adversarial that is
    source-like has a source-like clean version (the fewest discordant pairs, the strongest McNemar evidence)."""
    k_adv, k_clean = (np.rint(np.asarray(v) * n).astype(int) for v in (shares, clean))
    both = np.minimum(k_adv, k_clean)
    return np.stack([both, k_adv - both, k_clean - both, n - k_adv - k_clean + both], axis=1)


def test_a_flip_layer_is_named_only_where_both_tests_are_significant_and_the_sentence_says_so():
    from audit.analyses.semantics.analysis import flip_text
    from audit.analyses.semantics.metrics import FLIP_RULE, one_vs_two_statistics, read_flip

    names = ["features.0", "features.1", "features.4", "classifier.1", "classifier.3"]

    def run(table):
        stats = one_vs_two_statistics(np.array(table))
        reading = read_flip(stats, names)
        return {"n_scored": stats["n"], **stats, "flip_status": reading.status, "flip_note": reading.note,
                "flip_layer": None if reading.layer is None else names[reading.layer], "flip_rule": FLIP_RULE}

    # the case: 11 adversarials, features.1 at 0.18 with clean versions at 0.27
    few = run([[4, 2, 2, 3], [1, 1, 2, 7], [3, 2, 3, 3], [5, 1, 2, 3], [6, 2, 1, 2]])
    text = flip_text(few, names)
    assert few["flip_layer"] is None and text.startswith("the 1 vs 2 test names no flip layer: inconclusive: 11 ")
    assert "the clean versions are not source-like at this layer either (0.27)" in text and "no power" in text
    # 60 adversarials that lose their class at classifier.1 while their clean versions keep it
    many = run([[40, 5, 10, 5], [38, 4, 12, 6], [30, 3, 20, 7], [6, 2, 40, 12], [3, 1, 45, 11]])
    text = flip_text(many, names)
    assert many["flip_layer"] == "classifier.1" and many["flip_note"] == ""
    assert text.startswith("the 1 vs 2 test puts the flip at classifier.1: 0.13 [")
    assert "of the 60 successful adversarials scored are source-like there, significantly fewer than their clean " \
           "versions (0.77; McNemar q = " in text


def test_the_semantic_tables_show_the_intervals_and_tests_the_report_holds(l2_first):
    from io import StringIO

    report = l2_first.to_dict()
    sem = report["analyses"]["semantics"]
    flip = next(f for f in sem["one_vs_two"] if f["attack"] == "pgd")
    n = flip["n_scored"]
    assert n > 0 and len(flip["source_like_ci"]) == len(sem["layers"])
    panel = semantics_panel(report)
    first = panel["one_vs_two_rows"][0]
    lo, hi = flip["source_like_ci"][0]
    assert first["adv"] == f"{flip['source_like'][0]:.2f} [{lo:.2f},{hi:.2f}]"
    assert first["q_vs"] == f"{flip['q_vs_clean'][0]:.3g}"
    assert panel["one_vs_two_svg"].count('class="error-bar"') == 2 * len(sem["layers"])
    sev = next(r for r in panel["run_rows"] if r["run"] == "pgd@8/255")
    entry = next(e for e in sem["severity"] if e["attack"] == "pgd")
    assert sev["mean"] == f"{entry['mean']:.2f} [{entry['mean_ci'][0]:.2f},{entry['mean_ci'][1]:.2f}]"
    html = " ".join(parse(render_html(report)).text)
    assert first["adv"] in html and sev["mean"] in html
    out = StringIO()
    render_summary(l2_first, Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert f"1 vs 2 under pgd@8/255: share of the {n} successful adversarials" in text
    assert first["adv"] in text


def test_the_sentence_on_efficientnet_photos_no_longer_claims_an_early_flip():
    """The stored EfficientNet-Lite0 report (17 adversarials at 2/255; clean versions 0.44 at the first block) said
    "look more like the predicted class ... from the first chosen layer on", citing 1/255. Even the paired counts
    most favourable to a flip that its shares allow name none."""
    from audit.analyses.semantics.analysis import interpret
    from audit.analyses.semantics.metrics import one_vs_two_statistics, read_flip

    report = load("imagenet.json.gz")
    sem = copy.deepcopy(report["analyses"]["semantics"])
    names = [layer["name"] for layer in sem["layers"]]
    for flip in sem["one_vs_two"]:
        stats = one_vs_two_statistics(flip_friendly(flip["source_like"], flip["source_like_clean"], flip["n_scored"]))
        reading = read_flip(stats, names)
        flip.update(stats, flip_status=reading.status, flip_note=reading.note, flip_layer=None)
    text = interpret(sem, reference_run(report))
    assert "under pgd@2/255 " in text and "1/255" not in text
    assert "first chosen layer" not in text and "names no flip layer: inconclusive: 17 adversarials" in text
    assert "the test has no power on this model and class set" in text


# --- coverage: only the classes of this sample -----------------------------------------------------------------

def test_the_coverage_note_names_only_classes_the_sample_has_images_of():
    # classes 2 and 7 have no word vector; only class 2 has images
    obs, _, _ = prepared_analysis(np.random.default_rng(0), 8, [2, 7], torch.tensor(np.repeat(np.arange(6), 3)), 6)
    result = SimpleNamespace(analyses={}, artifacts={}, attacks=[])
    obs.finish(result)
    sem = result.analyses["semantics"]
    assert sem["coverage"]["missing"] == ["c2", "c7"] and sem["coverage"]["missing_in_sample"] == ["c2"]
    named = [n for n in sem["notes"] if "no word vector" in n]
    assert named and "c2" in named[0] and "c7" not in " ".join(sem["notes"])


def test_an_audit_of_classes_that_all_have_vectors_prints_no_coverage_note(l2_first):
    assert not any("word vector" in n for n in l2_first.analyses["semantics"]["notes"])


# --- saliency: claims state what they rest on ------------------------------------------------------------------

def test_superization_names_a_trend_only_when_its_exact_p_is_significant():
    # the demo's profile: 3 layers, Spearman 1.00, exact p 1/3: no order of 3 layers can be significant
    three = superization_statement(1.0, 3, 2, 1 / 3)
    assert "rises" not in three and "superization" not in three
    assert "untestable over 3 measured layers, 2 skipped" in three and "p = 0.33" in three
    assert "inconclusive" in three
    assert "at least 2" in superization_statement(None, 1)
    five = superization_statement(-1.0, 5, 0, 2 / 120)
    assert "entropy falls with depth over 5 measured layers" in five and "p = 0.017" in five
    assert "superization, as the paper reports" in five
    loose = superization_statement(-0.6, 5, 0, 0.35)
    assert "falls" not in loose and "inconclusive over 5 measured layers" in loose and "p = 0.35" in loose
    # the level follows the confidence: at alpha 0.1 four layers are testable (2/24 = 0.083)
    assert "rises with depth" in superization_statement(1.0, 4, 0, 2 / 24, alpha=0.1)
    assert "untestable" in superization_statement(1.0, 4, 0, 2 / 24, alpha=0.05)


def _eleven_adversarials():
    """A saliency section as the adversarially trained demo twin writes it: 11 adversarials, AUROC 0.35."""
    adv = {"attack": "apgd", "eps": 0.3, "eps_text": "0.3", "n": 11, "mean": 1.2, "sd": 0.3, "delta": -0.12,
           "delta_ci": [-0.31, 0.07], "delta_p": 0.19, "auroc": 0.35, "auroc_ci": [0.12, 0.6], "auroc_p": 0.24,
           "auroc_q": 0.41}
    return {"method": "gradcam", "entropy": "glcm", "levels": 8, "offsets": [[0, 1], [1, 0]], "log_base": 2,
            "saliency_class": "predicted", "definition": "",
            "layers": [{"name": "features.1", "map_size": [28, 28],
                        "clean": {"mean": 1.45, "sd": 0.2, "n": 270, "mean_ci": [1.42, 1.48]},
                        "adversarial": [adv]}],
            "skipped_layers": [],
            "superization": {"index": None, "differences": [], "statement": "not assessed", "alpha": 0.05},
            "detection": [{"attack": "apgd", "eps": 0.3, "eps_text": "0.3", "n": 11, "best_layer": "features.1",
                           "best_auroc": 0.35, "best_auroc_ci": [0.12, 0.6], "best_auroc_p": 0.24,
                           "best_auroc_q": 0.41, "direction": "inconclusive", "detector_auroc": None,
                           "detector_auroc_ci": None, "detector_accuracy": None, "detector_accuracy_ci": None,
                           "n_test": 6, "reason": "too few samples"}]}


def test_an_auroc_from_eleven_images_is_inconclusive_with_its_p_in_the_terminal_and_the_panel():
    from audit.analyses.saliency.report import panel, terminal

    console = Console(record=True, width=250, color_system=None)
    terminal(SimpleNamespace(analyses={"saliency": _eleven_adversarials()}), console)
    out = console.export_text()
    assert all(len(line) <= 80 for line in out.splitlines()), out
    text = " ".join(line.strip() for line in out.splitlines())  # wrapped lines joined
    assert "lower" not in text and "AUROC 0.35 [0.12, 0.60], inconclusive at n = 11 (p 0.24, q 0.41)" in text
    assert "ΔH -0.12 ±0.19 (p 0.19)" in text
    p = panel({"analyses": {"saliency": _eleven_adversarials()}})
    assert p["detection"][0]["direction"] == "inconclusive at n = 11 (p 0.24, q 0.41)"
    delta, auroc = p["layer_rows"][0]["adv"][0]
    assert delta == "-0.12 [-0.31, 0.07] p 0.19" and auroc.startswith("0.35 [0.12, 0.60]: inconclusive")
    # significant after BH: the direction is named, with its p and q
    sal = _eleven_adversarials()
    sal["detection"][0].update(best_auroc_p=0.001, best_auroc_q=0.003)
    console = Console(record=True, width=250, color_system=None)
    terminal(SimpleNamespace(analyses={"saliency": sal}), console)
    text = " ".join(line.strip() for line in console.export_text().splitlines())
    assert "AUROC 0.35 [0.12, 0.60], lower entropy under attack (p 0.001, q 0.003)" in text


def test_the_terminal_lists_skipped_saliency_layers_and_never_prints_an_unknown_level(l2_first):
    out = terminal_text(l2_first)
    sal = l2_first.analyses["saliency"]
    assert sal["skipped_layers"] and sal["superization"]["n_layers"] == len(sal["layers"])
    for skipped in sal["skipped_layers"]:
        assert re.search(rf"skipped: [^\n]*{re.escape(skipped['name'])}", out)
    gone = copy.deepcopy(l2_first)
    gone.analyses["saliency"] = {k: v for k, v in sal.items() if k in ("method", "entropy", "offsets", "log_base")}
    gone.analyses["saliency"].update(levels=None, skipped="no chosen layer has a spatial map")
    out = terminal_text(gone)
    assert "L=None" not in out and "Saliency entropy gradcam, glcm, bits: skipped" in out


def test_the_saliency_terminal_lines_fit_in_80_columns_and_carry_their_p_values(l2_first):
    console = Console(record=True, width=250, color_system=None)
    from audit.analyses.saliency.report import terminal

    terminal(l2_first, console)
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    text = " ".join(line.strip() for line in lines)
    assert re.search(r"ΔH [+-]\d\.\d\d ±\d\.\d\d \(p ", text)
    assert re.search(r"best layer \S+: AUROC \d\.\d\d \[\d\.\d\d, \d\.\d\d\], (inconclusive at n = \d+|"
                     r"(higher|lower) entropy under attack) \(p ", text), text
