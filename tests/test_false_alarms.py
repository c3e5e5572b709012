"""Crashes and false alarms: checks that cannot run or do not apply say so, chance-level models are not scored,
the verdict reads one way in every renderer, and an audit writes all its files or none (issue 16, section 2)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest
import torch
from rich.console import Console

from attacks.entry_checks import entry_checks
from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.outputs import write_outputs
from reports.gates import evaluate
from reports.html import render_html
from reports.junit import junit_xml
from reports.schema import AuditResult, validate_report
from reports.score import score_report
from reports.terminal import render_verdict

STANDARD = str(ASSETS / "fashion_cnn.safetensors")
WRONG_ARCH = '''from audit.demo_model import FashionCNN


class Wrong(FashionCNN):
    """The demo CNN answering its least likely class: wrong on every image."""

    def forward(self, x):
        return -super().forward(x)
'''


def config(**kw) -> AuditConfig:
    base = dict(model=STANDARD, arch=ARCH, data="demo", classes="fashion-mnist", attacks=["pgd"], eps="0.1",
                steps=10, samples=32, batch_size=32, device="cpu", layers="none")
    return AuditConfig(**{**base, **kw})


def by_name(result) -> dict:
    checks = result.checks if isinstance(result, AuditResult) else result["checks"]
    return {c["name"]: c for c in checks}


@pytest.fixture(scope="module")
def wrong(tmp_path_factory) -> AuditResult:
    """An audit of a model that gets no image right (per-layer analyses on, so the score has every component)."""
    arch = tmp_path_factory.mktemp("wrong") / "wrong.py"
    arch.write_text(WRONG_ARCH)
    return run_audit(config(arch=f"{arch}:Wrong", layers="auto", samples=20, batch_size=20, steps=3,
                            permutations=20))


def test_no_clean_correct_image_skips_the_model_checks_with_the_reason_and_the_json_holds_no_nan(wrong):
    # before: median_gradient was the median of an empty tensor (NaN) and writing report.json raised
    assert wrong.clean["n_correct"] == 0
    checks = by_name(wrong)
    for name in ("input_gradients", "gradient_free_attack", "large_budget"):
        assert checks[name]["status"] == "skipped", checks[name]
        assert "no image of the first batch is classified correctly" in checks[name]["detail"]
    assert checks["clean_accuracy"]["status"] == "fail"
    report = json.loads(wrong.to_json())  # allow_nan=False: raises on any NaN
    validate_report(report)


def test_a_model_at_chance_is_not_scored_and_no_component_reads_one_from_nothing(wrong):
    score = wrong.score
    assert score["value"] is None and score["grade"] == "F" and score["not_scored"]
    assert "clean accuracy 0.0%" in score["not_scored"] and "not scored" in score["not_scored"]
    assert not any(c["included"] for c in score["components"].values())
    # no attack ran: the adversarial representations are the clean ones, and a retention of 1.00 measured nothing
    for name in ("severity", "representation", "saliency"):
        assert score["components"][name]["value"] is None, score["components"][name]
        assert "attacked no clean-correct sample" in score["components"][name]["detail"]
        assert name in score["missing"]


def test_outputs_are_written_all_or_none(wrong, tmp_path):
    out = tmp_path / "out"
    write_outputs(wrong, out, junit=tmp_path / "junit.xml")
    assert {p.name for p in out.iterdir()} == {"report.json", "report.html"}
    broken = AuditResult.from_dict(wrong.to_dict())
    broken.clean["accuracy"] = math.nan  # a value JSON cannot hold
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match="JSON compliant"):
        write_outputs(broken, fresh, junit=tmp_path / "fresh.xml")
    # before: report.html was written, then report.json failed
    assert not fresh.exists() or not any(fresh.iterdir())
    assert not (tmp_path / "fresh.xml").exists()


def test_a_targeted_audit_runs_a_targeted_square_check():
    # before: an untargeted Square broke 3 of the 7 samples the targeted PGD left short of their target (they were
    # still classified correctly, so any misclassification counted) and the check failed: a false alarm
    result = run_audit(config(targeted="random"))
    check = by_name(result)["gradient_free_attack"]
    assert check["status"] != "fail" and check["numbers"]["targeted"] is True, check
    assert "target" in check["detail"]
    plain = by_name(run_audit(config()))["gradient_free_attack"]
    assert plain["numbers"]["targeted"] is False and plain["status"] == "pass"


def test_an_l2_only_audit_says_why_the_square_check_does_not_apply_and_fgsm_comparisons_neither():
    # before: gradient_free_attack was absent and iterative_vs_fgsm passed with no FGSM in the audit
    result = run_audit(config(attacks=["pgdl2"], eps="0.5", steps=3, samples=16, batch_size=16))
    checks = by_name(result)
    assert checks["gradient_free_attack"]["status"] == "not_applicable"
    assert "L∞" in checks["gradient_free_attack"]["detail"] and "pgdl2" in checks["gradient_free_attack"]["detail"]
    assert checks["iterative_vs_fgsm"]["status"] == "not_applicable" and "FGSM" in checks["iterative_vs_fgsm"]["detail"]
    assert checks["monotone_curve"]["status"] == "not_applicable"
    validate_report(result.to_dict())


def test_a_black_box_audit_says_its_own_attack_is_the_gradient_free_evidence():
    result = run_audit(config(attacks=["square"], steps=20, samples=8, batch_size=8))
    check = by_name(result)["gradient_free_attack"]
    assert check["status"] == "not_applicable" and "square" in check["detail"]


def entry(name, eps, robust, steps, norm="Linf"):
    return {"name": name, "eps": eps, "eps_text": str(eps), "norm": norm, "robust_accuracy": robust, "steps": steps,
            "checks": {"max_eps_violation": 0.0, "max_box_violation": 0.0}}


def test_iterative_vs_fgsm_applies_only_where_fgsm_ran_at_the_same_budget():
    alone = by_name({"checks": entry_checks([entry("pgd", 0.1, 0.3, 10), entry("pgd", 0.2, 0.1, 10)], 100, True)})
    assert alone["iterative_vs_fgsm"]["status"] == "not_applicable"
    assert alone["monotone_curve"]["status"] == "pass"
    elsewhere = [entry("pgd", 0.1, 0.3, 10), entry("fgsm", 0.2, 0.5, None)]  # FGSM at another budget only
    assert by_name({"checks": entry_checks(elsewhere, 100, True)})["iterative_vs_fgsm"]["status"] == "not_applicable"
    weaker = [entry("pgd", 0.1, 0.6, 10), entry("fgsm", 0.1, 0.5, None)]
    assert by_name({"checks": entry_checks(weaker, 100, True)})["iterative_vs_fgsm"]["status"] == "warn"
    fine = [entry("pgd", 0.1, 0.3, 10), entry("fgsm", 0.1, 0.5, None)]
    got = by_name({"checks": entry_checks(fine, 100, True)})["iterative_vs_fgsm"]
    assert got["status"] == "pass" and got["numbers"]["pairs"] == 1


# --- the score, the verdict and the renderers on hand-made reports -------------------------------------------------

def hand_report(*, clean=0.8, robust=0.2, n_attacked=80, checks=(), analyses=None, settings=None):
    attack = {"name": "pgd", "eps": 0.1, "eps_text": "0.1", "norm": "Linf", "bounded": True,
              "robust_accuracy": robust, "n_attacked": n_attacked, "n_success": n_attacked // 2,
              "success_rate": 0.5 if n_attacked else None, "minimal_perturbation": None}
    return {"clean": {"accuracy": clean, "n": 100, "n_correct": round(100 * clean)}, "attacks": [attack],
            "analyses": analyses or {}, "settings": settings or {},
            "checks": [{"name": n, "status": s, "detail": f"{n} {s}", "numbers": {}} for n, s in checks]}


def semantics_at_clean():
    """One layer whose adversarial 2v2 equals its clean 2v2: what a run that attacked nothing measures."""
    return {"layers": [{"name": "fc", "clean": {"two_vs_two": 0.8},
                        "adversarial": [{"attack": "pgd", "eps": 0.1, "two_vs_two": 0.8, "source_like": None,
                                         "source_like_clean": None}]}], "severity": []}


def test_representation_from_a_run_that_attacked_nothing_is_left_out():
    # before: representation 1.00 from a run that attacked no sample
    s = score_report(hand_report(clean=0.0, robust=0.0, n_attacked=0, analyses={"semantics": semantics_at_clean()}))
    assert s["components"]["representation"]["value"] is None and "representation" in s["missing"]
    assert "attacked no clean-correct sample" in s["components"]["representation"]["detail"]


def test_a_failed_clean_accuracy_check_means_not_scored_grade_f():
    # before: a model at chance with robust accuracy equal to its clean accuracy scored robustness 1.00 (~70, C)
    checks = [("clean_accuracy", "fail")]
    r = hand_report(clean=0.001, robust=0.001, checks=checks)
    r["checks"][0]["numbers"] = {"accuracy": 0.001, "chance": 0.001}
    s = score_report(r)
    assert s["value"] is None and s["grade"] == "F" and s["capped"] is None
    assert s["not_scored"].startswith("not scored: clean accuracy 0.1% is near or below chance (chance 0.1%)")
    assert s["components"]["robustness"]["value"] == pytest.approx(1.0)  # listed for inspection, not counted
    assert not s["components"]["robustness"]["included"]
    v = evaluate({**r, "score": s}, [], fail_under=10)
    assert v["score_passed"] is False and not v["passed"]
    assert "not scored" in evaluate({**r, "score": s}, ["score.value>=1"])["gates"][0]["detail"]


def test_a_cap_that_did_not_lower_the_grade_does_not_claim_to_have():
    low = score_report(hand_report(robust=0.1, checks=[("input_gradients", "fail")]))
    assert low["grade"] == "F" and low["capped"]["applied"] is False
    assert "at most C" not in low["capped"]["reason"] and "below the cap C" in low["capped"]["reason"]
    high = score_report(hand_report(robust=0.8, checks=[("input_gradients", "fail")]))
    assert high["grade"] == "C" and high["capped"]["applied"] is True and "at most C" in high["capped"]["reason"]


def rendered(report: dict) -> tuple[str, str, ET.Element]:
    console = Console(record=True, width=200, color_system=None)
    full = {"schema_version": "1.0", "tool": {}, "created": "", "model": {}, "data": {}, "seed": 0, "device": "cpu",
            "settings": {}, "warnings": [], "environment": {}, "timing": {}, **report}
    render_verdict(AuditResult.from_dict(full), console)
    return console.export_text(), render_html(full), ET.fromstring(junit_xml(full))


def test_no_gates_and_a_failed_check_never_read_as_passed():
    # before: the HTML card said "PASSED · no gates set" on a grade-F report with a failed check, and the terminal
    # printed "capped … at most C" under grade F
    r = hand_report(robust=0.1, checks=[("input_gradients", "fail"), ("large_budget", "pass")])
    r["score"] = score_report(r)
    r["verdict"] = evaluate(r, [])
    assert r["verdict"]["passed"] and not r["verdict"]["gated"] and r["verdict"]["failed_checks"] == ["input_gradients"]
    summary = r["verdict"]["summary"]
    assert summary.startswith("no gates set") and "grade F" in summary and "input_gradients" in summary
    text, page, junit = rendered(r)
    assert "at most C" not in text and "grade F" in text and summary in " ".join(text.split())
    assert "PASSED" not in page and "NO GATES" in page and summary in page
    verdict = junit.find(".//property[@name='verdict']")
    assert verdict is not None and verdict.get("value") == summary
    gated = evaluate(r, ["clean.accuracy>=0.5"])
    assert gated["summary"].startswith("PASSED: 1 gate held") and "input_gradients" in gated["summary"]


def test_skipped_and_not_applicable_checks_are_junit_skips_and_schema_valid():
    r = hand_report(checks=[("clean_accuracy", "pass"), ("gradient_free_attack", "not_applicable"),
                            ("input_gradients", "skipped")])
    r["score"] = score_report(r)
    r["verdict"] = evaluate(r, [])
    text, page, junit = rendered(r)
    suite = junit.find("testsuite")
    assert suite.get("skipped") == "2" and suite.get("failures") == "0"
    skips = {c.get("name"): c.find("skipped") for c in junit.iter("testcase")}
    assert skips["gradient_free_attack"].get("message") == "gradient_free_attack not_applicable"
    assert skips["clean_accuracy"] is None
    assert "N/A" in page and "SKIPPED" in page
    assert "1 passed" in text and "1 skipped" in text and "1 not applicable" in text


def test_the_score_names_a_skipped_layer_tap_as_the_reason_for_missing_components():
    # before: "no word vectors, or --layers none" for what was the TorchScript layer limit
    reason = "the network is a TorchScript archive, whose layers cannot be hooked"
    r = hand_report(analyses={"tap": {"layers": [], "pooling": "", "passes": {}, "skipped": reason}},
                    settings={"layers": "auto"})
    s = score_report(r)
    for name in ("severity", "representation", "saliency"):
        assert reason in s["components"][name]["detail"] and "word vectors" not in s["components"][name]["detail"]
    off = score_report(hand_report(settings={"layers": "none"}))
    assert "--layers none" in off["components"]["representation"]["detail"]


def test_a_torchscript_audit_records_why_the_layer_tap_was_skipped(tmp_path):
    from audit.model import load_model

    network = load_model(STANDARD, arch=ARCH).module.eval()
    path = tmp_path / "scripted.pt"
    torch.jit.script(network).save(str(path))
    result = run_audit(config(model=str(path), arch=None, layers="auto", samples=8, batch_size=8, steps=2))
    assert "TorchScript" in result.analyses["tap"]["skipped"] and result.analyses["tap"]["layers"] == []
    assert "TorchScript" in result.score["components"]["representation"]["detail"]
    validate_report(result.to_dict())
