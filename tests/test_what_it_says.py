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

def test_superization_is_not_claimed_from_fewer_layers_than_the_minimum():
    from audit.analyses.saliency.analysis import MIN_SUPERIZATION_LAYERS

    two = superization_statement(-1.0, 2, 4)
    assert "superization" not in two and "2 measured layers, 4 skipped" in two
    assert f"at least {MIN_SUPERIZATION_LAYERS}" in two
    three = superization_statement(-1.0, 3, 1)
    assert "superization, as the paper reports" in three and "over 3 measured layers, 1 skipped" in three


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
