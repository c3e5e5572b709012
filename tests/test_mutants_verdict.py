"""What mutation testing of the checks, the flip reading, the verdict line and the score's reasons asked for
(docs/mutation.md): each test pins a behaviour a surviving mutant changed."""

from __future__ import annotations

import numpy as np
import pytest

from attacks.entry_checks import attack_warnings, comparable_pairs
from attacks.model_checks import gradient_free_not_applicable
from audit.analyses.semantics.metrics import read_flip
from reports.gates import evaluate, verdict_summary
from reports.score import score_report
from tests.test_false_alarms import hand_report

CLEAN_CHECKS = {"max_eps_violation": 0.0, "max_box_violation": 0.0}


def entry(name, norm, eps, robust, steps=10, curve=None):
    minimal = None if curve is None else {"curve": [{"eps": e, "robust_accuracy": r} for e, r in curve]}
    return {"name": name, "norm": norm, "eps": eps, "eps_text": None if eps is None else f"{eps:g}",
            "robust_accuracy": robust, "steps": steps, "checks": CLEAN_CHECKS, "minimal_perturbation": minimal}


def test_comparable_pairs_counts_every_iterative_and_every_minimal_comparison():
    fgsm = [entry("fgsm", "Linf", 0.1, 0.5, steps=None), entry("fgsm", "Linf", 0.2, 0.3, steps=None)]
    pgd = [entry("pgd", "Linf", 0.1, 0.3), entry("pgd", "Linf", 0.2, 0.1), entry("pgd", "Linf", 0.3, 0.0)]
    assert comparable_pairs(fgsm) == 0  # FGSM beside itself compares nothing
    assert comparable_pairs(fgsm + pgd) == 2  # 0.3 has no FGSM beside it
    assert comparable_pairs(fgsm + [entry("pgd", "Linf", 0.1, None), entry("pgdl2", "L2", 0.1, 0.3)]) == 0
    cw = entry("cw", "L2", None, None, steps=100, curve=[(0.5, 0.6), (1.0, 0.4)])
    bounded = [entry("pgdl2", "L2", 0.5, 0.5), entry("pgdl2", "L2", 1.0, 0.3),
               entry("pgdl2", "L2", 2.0, 0.1),  # not on cw's curve
               entry("pgd", "Linf", 0.5, 0.2),  # another norm
               entry("square", "L2", 1.0, None)]  # nothing measured
    assert comparable_pairs([cw, *bounded]) == 2
    assert comparable_pairs([*fgsm, pgd[0], cw, *bounded]) == 3
    assert comparable_pairs([{**cw, "minimal_perturbation": None}, *bounded]) == 0


def test_a_minimal_attack_is_compared_with_bounded_attacks_of_its_norm_at_its_curves_budgets():
    def warned(implied, robust, n=64, others=(), first=True):
        cw = entry("cw", "L2", None, None, steps=100, curve=[(0.5, implied)])
        pgdl2 = entry("pgdl2", "L2", 0.5, robust)
        entries = [cw, *others, pgdl2] if first else [*others, pgdl2, cw]
        return [w for w in attack_warnings(entries, n) if w.startswith("cw implies")]

    assert warned(0.6, 0.25) and warned(0.6, 0.25, first=False)  # whichever comes first
    assert warned(0.6, 0.25) == ["cw implies 60.0% robust at L2 eps 0.5 where pgdl2 leaves 25.0%: its minimal "
                                 "perturbations are overestimated (too few steps); do not trust its norms"]
    # one sample in 64 is the margin: exactly at it is no finding, above it is
    assert not warned(0.25 + 1 / 64, 0.25) and warned(0.25 + 2 / 64, 0.25)
    assert not warned(0.2625, 0.25)  # within 1/64 (a flat 1% margin would flag it)
    assert warned(0.6, 0.25, others=[entry("pgd", "Linf", 0.5, 0.0)])  # an L∞ run before it changes nothing
    cw = entry("cw", "L2", None, None, steps=100, curve=[(0.5, 0.6)])
    assert attack_warnings([cw, entry("pgd", "Linf", 0.5, 0.1)], 64) == []  # another norm: no comparison
    assert attack_warnings([cw, entry("pgdl2", "L2", 2.0, 0.1)], 64) == []  # a budget off the curve: none


def test_a_not_applicable_gradient_free_check_keeps_its_numbers():
    check = gradient_free_not_applicable("no L∞ budget", norms=["L2"])
    assert check == {"name": "gradient_free_attack", "status": "not_applicable", "detail": "no L∞ budget",
                     "numbers": {"norms": ["L2"]}}


def test_the_flip_reading_refuses_unequal_layers_and_says_what_it_could_not_measure():
    from audit.analyses.semantics.metrics import one_vs_two_statistics

    stats = one_vs_two_statistics(np.array([[10, 5, 8, 7], [8, 4, 9, 9]]))  # 30 adversarials, clean 0.60, 0.57
    with pytest.raises(ValueError):
        read_flip(stats, ["a"])
    reading = read_flip(stats, ["a", "b"])
    assert reading.status == "no_power" and reading.layer is None and reading.informative == ()
    assert reading.note.endswith("the test has no power on this model and class set: the clean versions are "
                                 "significantly source-like (above one half) at no layer (at most 0.60)")
    nothing = read_flip(one_vs_two_statistics(np.zeros((2, 4), dtype=int)), ["a", "b"])
    assert nothing == ("not_measured", None, (), "no successful adversarial was scored by the 1 vs 2 test")


def test_the_verdict_line_counts_gates_and_failed_checks_in_words():
    def line(n_gates, failed):
        report = hand_report(checks=[(name, "fail") for name in failed])
        report["score"] = {"grade": "C"}
        report["verdict"] = {"gates": [{"expression": f"g{i}", "passed": True} for i in range(n_gates)],
                             "gated": True, "passed": True, "fail_under": None}
        return verdict_summary(report)

    assert line(1, ["input_gradients"]) == "PASSED: 1 gate held; grade C; 1 validity check failed (input_gradients)"
    assert line(2, ["input_gradients", "large_budget"]) == (
        "PASSED: 2 gates held; grade C; 2 validity checks failed (input_gradients, large_budget)")


def test_the_score_names_why_the_per_layer_analyses_are_missing():
    def detail(report, name="representation"):
        return score_report(report)["components"][name]["detail"]

    off = hand_report(settings={"layers": " None "})
    assert detail(off) == "no semantic analysis in the report: per-layer analyses turned off (--layers none)"
    assert detail(off, "saliency") == "no saliency analysis in the report: per-layer analyses turned off (--layers none)"
    unknown = hand_report(settings={})
    assert detail(unknown) == "no semantic analysis in the report (no word vectors, or --layers none)"
    assert detail(unknown, "saliency") == "no saliency analysis in the report"
    bare = hand_report()
    del bare["analyses"]
    assert detail(bare) == "no semantic analysis in the report (no word vectors, or --layers none)"


def test_a_component_of_a_run_that_attacked_nothing_says_so_in_full():
    s = score_report(hand_report(n_attacked=0, analyses={"semantics": {"layers": [
        {"name": "fc", "clean": {"two_vs_two": 0.8}, "adversarial": []}], "severity": []}}))
    assert s["components"]["representation"]["detail"] == (
        "pgd@0.1 attacked no clean-correct sample, so there is no adversarial to compare with the clean images")


def test_a_gate_on_a_null_metric_says_why_it_is_null():
    report = hand_report(settings={"layers": "none"})
    report["attacks"].append({**entry("cw", "L2", None, None, steps=100, curve=[(1.0, 0.4)]),
                              "success_rate": None, "bounded": False})
    report["attacks"][-1]["minimal_perturbation"].update(median=0.8, n=10)
    rows = {g["expression"]: g for g in evaluate(report, ["robust_accuracy[cw@min]>=0.1",
                                                          "success_rate[cw@min]<=0.5",
                                                          "score.components.saliency>=0.5"])["gates"]}
    assert rows["robust_accuracy[cw@min]>=0.1"]["detail"] == (
        "robust_accuracy[cw@min] is null: cw is a minimal-perturbation attack: it measures norms, not robust "
        "accuracy (gate on median_norm[cw])")
    assert rows["success_rate[cw@min]<=0.5"]["detail"].startswith("success_rate[cw@min] is null: cw is a minimal")
    assert rows["score.components.saliency>=0.5"]["detail"] == (
        "score.components.saliency is null: the component is missing: no saliency analysis in the report: "
        "per-layer analyses turned off (--layers none)")
    assert not any(g["passed"] for g in rows.values())
    at_chance = hand_report(checks=[("clean_accuracy", "fail")])
    at_chance["score"] = score_report(at_chance)
    row = evaluate(at_chance, ["score.value>=50"])["gates"][0]
    assert at_chance["score"]["not_scored"] and row["detail"] == f"score.value is null: {at_chance['score']['not_scored']}"
    for nothing in (hand_report(n_attacked=0), {**at_chance, "attacks": hand_report(n_attacked=0)["attacks"]}):
        row = evaluate(nothing, ["success_rate[pgd@0.1]>=0.5"])["gates"][0]  # not scored or not: its own reason
        assert row["detail"] == "success_rate[pgd@0.1] is null: the report has no value for it"


def test_a_verdict_stored_without_its_gated_flag_reads_it_from_the_gates():
    def head(verdict):
        report = hand_report()
        report["score"] = {"grade": "B"}
        report["verdict"] = verdict
        return verdict_summary(report).split(";")[0]

    assert head({"gates": [], "fail_under": None, "passed": True}) == (
        "no gates set (the exit code does not depend on the result)")
    assert head({"gates": [{"expression": "g", "passed": True}], "fail_under": None, "passed": True}) == (
        "PASSED: 1 gate held")
    assert head({"gates": [], "fail_under": 50.0, "passed": False, "score_passed": False}) == "FAILED: score >= 50"
    assert head({"gates": [], "fail_under": 50.0, "passed": True, "gated": False}).startswith("no gates set")


def test_the_verdict_line_names_what_failed_in_order_and_what_was_not_scored():
    def line(verdict, checks=(), score=None):
        report = hand_report(checks=checks)
        report["score"], report["verdict"] = score or {"grade": "B"}, verdict
        return verdict_summary(report)

    gates = [{"expression": "a>=1", "passed": True}, {"expression": "b>=1", "passed": False},
             {"expression": "c>=1", "passed": False}]
    assert line({"gates": gates, "fail_under": 50.0, "passed": False, "score_passed": False, "gated": True}) == (
        "FAILED: score >= 50, b>=1, c>=1; grade B")
    assert line({"gates": gates[:1], "fail_under": 50.0, "passed": False, "score_passed": True, "gated": True}) == (
        "FAILED: the verdict failed; grade B")
    assert line({"gates": gates[:1], "fail_under": 50.0, "passed": True, "score_passed": True, "gated": True}) == (
        "PASSED: 2 gates held; grade B")
    # the verdict's own list of failed checks wins over the checks beside it (a report re-rendered later)
    assert line({"gates": [], "passed": True, "gated": False, "failed_checks": ["large_budget"]},
                checks=[("input_gradients", "fail")]).endswith("1 validity check failed (large_budget)")
    assert line({"gates": [], "passed": True, "gated": False, "failed_checks": []},
                checks=[("input_gradients", "fail")]) == (
        "no gates set (the exit code does not depend on the result); grade B")
    assert line({"gates": [], "passed": True, "gated": False},
                score={"grade": "F", "not_scored": "clean accuracy 10% is at chance"}) == (
        "no gates set (the exit code does not depend on the result); not scored, grade F (clean accuracy near or "
        "below chance)")
