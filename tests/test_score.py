"""Score, gates, JUnit and compare on hand-made report dicts whose answers are computed by hand."""

import copy
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from audit.errors import AuditError
from reports.compare import compare, comparison_table
from reports.gates import evaluate, metrics, parse_gate
from reports.junit import junit_xml
from reports.score import CAP_VALUE, grade_of, reference_run, score_report

EVIL = ["</script><img src=x onerror=alert(1)>", '" onmouseover="x', "[/bold]"]


def entry(name, eps, robust, *, norm="Linf", n_attacked=80, n_success=None, curve=None, median=0.5):
    minimal = curve is not None
    return {
        "name": name, "eps": None if minimal else eps, "eps_text": None if minimal else str(eps), "norm": norm,
        "bounded": not minimal, "budget_mode": "minimal" if minimal else "cumulative",
        "robust_accuracy": None if minimal else robust, "n_attacked": n_attacked,
        "n_success": n_attacked if n_success is None else n_success,
        "success_rate": (n_attacked if n_success is None else n_success) / n_attacked if n_attacked else None,
        "minimal_perturbation": {"n": n_attacked, "n_failed": 0, "median": median,
                                 "curve": [{"eps": e, "robust_accuracy": r} for e, r in curve]} if minimal else None,
    }


def semantics(runs, clean_tvt=0.8, layer="fc"):
    """runs: {(attack, eps): (adv_2v2, source_like, source_like_clean, severity_mean)}"""
    return {
        "layers": [
            {"name": "conv", "clean": {"two_vs_two": 0.6}, "adversarial": []},
            {"name": layer, "clean": {"two_vs_two": clean_tvt},
             "adversarial": [{"attack": a, "eps": e, "eps_text": str(e), "two_vs_two": v[0], "source_like": v[1],
                              "source_like_clean": v[2], "n_scored": 40} for (a, e), v in runs.items()]},
        ],
        "severity": [{"attack": a, "eps": e, "eps_text": str(e), "n": 50, "mean": v[3]} for (a, e), v in runs.items()],
    }


def saliency(deltas, entropy="glcm", levels=8, attack="pgd", eps=0.2):
    return {"entropy": entropy, "levels": levels, "log_base": 2,
            "layers": [{"name": f"l{i}", "adversarial": [{"attack": attack, "eps": eps, "delta": d}]}
                       for i, d in enumerate(deltas)]}


def report(attacks, clean=0.8, analyses=None, checks=None):
    r = {"clean": {"accuracy": clean, "n": 100, "n_correct": round(100 * clean)}, "attacks": attacks,
         "analyses": analyses or {}}
    if checks is not None:
        r["checks"] = checks
    return r


def full_report(checks=None):
    """pgd and fgsm at 0.1 and 0.2; pgd is the strongest at 0.2 (0.1 < 0.15)."""
    attacks = [entry("fgsm", 0.1, 0.5), entry("fgsm", 0.2, 0.15), entry("pgd", 0.1, 0.4),
               entry("pgd", 0.2, 0.1, n_success=60)]
    analyses = {"semantics": semantics({("pgd", 0.2): (0.65, 0.45, 0.6, 1.2), ("fgsm", 0.2): (0.8, 0.6, 0.6, 0.1)}),
                "saliency": saliency([0.6, -1.2, None])}
    return report(attacks, analyses=analyses, checks=checks)


# --- components ---------------------------------------------------------------------------------------------------

def test_components_match_their_formulas():
    s = score_report(full_report())
    c = {k: v["value"] for k, v in s["components"].items()}
    assert s["reference"]["attack"] == "pgd" and s["reference"]["eps"] == 0.2
    robustness = ((0.4 + 0.1) / 2) / 0.8  # lowest robust accuracy per budget: pgd at both
    severity = 1 - (60 / 80) * 1.2 / 2
    representation = ((0.65 - 0.5) / (0.8 - 0.5) + 0.45 / 0.6) / 2
    sal = 1 - ((0.6 + 1.2) / 2) / (2 * math.log2(8))
    assert c["robustness"] == pytest.approx(robustness)
    assert c["severity"] == pytest.approx(severity)
    assert c["representation"] == pytest.approx(representation)
    assert c["saliency"] == pytest.approx(sal)
    expected = 100 * (0.6 * robustness + 0.15 * severity + 0.15 * representation + 0.1 * sal)
    assert s["value"] == pytest.approx(expected, abs=1e-5)
    assert s["grade"] == grade_of(expected) and s["missing"] == [] and s["capped"] is None
    assert sum(v["weight"] for v in s["components"].values()) == pytest.approx(1.0)
    assert all(v["formula"] and v["detail"] for v in s["components"].values())


def test_robustness_takes_the_lowest_over_attacks_and_minimal_curves():
    attacks = [entry("pgd", 0.1, 0.4), entry("fgsm", 0.1, 0.5), entry("pgdl2", 0.5, 0.6, norm="L2"),
               entry("cw", None, None, norm="L2", curve=[(0.5, 0.3), (1.0, 0.1)])]
    value = score_report(report(attacks))["components"]["robustness"]["value"]
    # budgets: L∞ 0.1 (min 0.4), L2 0.5 (min of pgdl2 0.6 and the cw curve 0.3); cw at 1.0 has no bounded twin
    assert value == pytest.approx((0.4 + 0.3) / 2 / 0.8)


def test_robustness_from_curves_alone_then_missing_then_zero():
    only_minimal = report([entry("cw", None, None, norm="L2", curve=[(0.5, 0.6), (1.0, 0.2)])])
    assert score_report(only_minimal)["components"]["robustness"]["value"] == pytest.approx(0.4 / 0.8)
    assert reference_run(only_minimal)["name"] == "cw"
    nothing = score_report(report([]))
    assert nothing["components"]["robustness"]["value"] is None and nothing["value"] is None
    assert nothing["grade"] is None and set(nothing["missing"]) == {"robustness", "severity", "representation",
                                                                   "saliency"}
    zero = score_report(report([entry("pgd", 0.1, 0.0)], clean=0.0))
    assert zero["components"]["robustness"]["value"] == 0.0 and zero["grade"] == "F"


def test_robustness_is_clipped_to_one():
    # robust accuracy above clean accuracy (an attack that fixes errors) retains no more than everything
    assert score_report(report([entry("pgd", 0.1, 0.9)]))["components"]["robustness"]["value"] == 1.0


def test_strongest_attack_ties_go_to_the_lower_curve():
    attacks = [entry("fgsm", 0.1, 0.3), entry("fgsm", 0.3, 0.0), entry("apgd", 0.1, 0.1), entry("apgd", 0.3, 0.0),
               entry("pgdl2", 5.0, 0.0, norm="L2")]
    ref = reference_run(report(attacks))
    assert (ref["name"], ref["eps"]) == ("apgd", 0.3)  # L∞ preferred; both 0 at 0.3, apgd lower at 0.1


def test_severity_caps_the_mean_and_is_one_when_nothing_broke():
    r = full_report()
    r["analyses"]["semantics"]["severity"][0]["mean"] = 3.5
    assert score_report(r)["components"]["severity"]["value"] == pytest.approx(1 - 0.75 * 2 / 2)
    r["attacks"][3]["n_success"] = 0
    assert score_report(r)["components"]["severity"]["value"] == 1.0


def test_representation_uses_the_parts_that_exist():
    r = full_report()
    r["analyses"]["semantics"]["layers"][-1]["clean"]["two_vs_two"] = 0.5  # at chance: 2v2 part left out
    s = score_report(r)["components"]["representation"]
    assert s["value"] == pytest.approx(0.45 / 0.6) and "2v2 left out" in s["detail"]
    r["analyses"]["semantics"]["layers"][-1]["adversarial"][0]["source_like"] = None
    s = score_report(r)
    assert s["components"]["representation"]["value"] is None and "representation" in s["missing"]


def test_semantic_components_on_too_few_images_are_marked_and_cannot_swing_the_score():
    from audit.analyses.semantics.report import MIN_SCORED_FOR_SCORE

    r = full_report()
    s = score_report(r)["components"]
    assert s["representation"]["n"] == 40 and s["representation"]["too_few"] is False
    assert s["severity"]["n"] == 50 and s["severity"]["too_few"] is False
    # 11 adversarials scored by the 1 vs 2 test: its part is left out, the 2v2 part alone remains
    r["analyses"]["semantics"]["layers"][-1]["adversarial"][0]["n_scored"] = 11
    r["analyses"]["semantics"]["layers"][-1]["adversarial"][0]["source_like"] = 0.0  # would pull the value down
    rep = score_report(r)["components"]["representation"]
    assert rep["value"] == pytest.approx((0.65 - 0.5) / (0.8 - 0.5))
    # the 2v2 part rests on the class representations, not on the 11 images: the component stays in the score
    assert rep["n"] == 11 and rep["too_few"] is False and rep["included"]
    assert "only 11 adversarials scored" in rep["detail"]
    at_rule = MIN_SCORED_FOR_SCORE
    r["analyses"]["semantics"]["layers"][-1]["adversarial"][0]["n_scored"] = at_rule
    assert score_report(r)["components"]["representation"]["value"] == pytest.approx(((0.65 - 0.5) / 0.3 + 0) / 2)
    # 11 errors scored: severity is left out and the rest renormalised
    r["analyses"]["semantics"]["severity"][0]["n"] = 11
    sev = score_report(r)["components"]["severity"]
    assert sev["value"] is None and not sev["included"] and sev["n"] == 11 and sev["too_few"] is True
    assert "only 11 errors" in sev["detail"] and "severity" in score_report(r)["missing"]


def test_saliency_histogram_entropy_has_a_smaller_maximum():
    r = full_report()
    r["analyses"]["saliency"]["entropy"] = "histogram"
    assert score_report(r)["components"]["saliency"]["value"] == pytest.approx(1 - 0.9 / math.log2(8))


def test_missing_components_are_left_out_and_the_rest_renormalised():
    r = full_report()
    r["analyses"]["semantics"] = {"skipped": "only 2 classes have word vectors"}
    s = score_report(r)
    assert s["missing"] == ["severity", "representation"]
    assert "only 2 classes" in s["components"]["severity"]["detail"]
    rob, sal = s["components"]["robustness"], s["components"]["saliency"]
    assert rob["weight"] == pytest.approx(0.6 / 0.7) and sal["weight"] == pytest.approx(0.1 / 0.7)
    assert not s["components"]["severity"]["included"] and s["components"]["severity"]["weight"] == 0
    assert s["value"] == pytest.approx(100 * (0.6 * rob["value"] + 0.1 * sal["value"]) / 0.7, abs=1e-5)
    del r["analyses"]["saliency"]
    s = score_report(r)
    assert s["value"] == pytest.approx(100 * rob["value"], abs=1e-5)


def test_weights_override_defaults_and_bad_weights_are_one_line_errors():
    s = score_report(full_report(), {"saliency": 0, "robustness": 1.0})
    sal, rob = s["components"]["saliency"], s["components"]["robustness"]
    assert sal["value"] is not None and not sal["included"] and "saliency" not in s["missing"]
    assert rob["weight"] == pytest.approx(1.0 / 1.3) and s["weights"]["robustness"] == 1.0
    for bad in ({"robustnes": 1}, {"severity": -0.1}, {"severity": float("nan")}, {"severity": True},
                {"robustness": 0, "severity": 0, "representation": 0, "saliency": 0}, {"severity": "1"}):
        with pytest.raises(AuditError) as err:
            score_report(full_report(), bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("ratio, grade", [(0.85, "A"), (0.8499, "B"), (0.70, "B"), (0.6999, "C"), (0.55, "C"),
                                          (0.5499, "D"), (0.40, "D"), (0.3999, "F"), (0.0, "F")])
def test_grades_at_the_edges(ratio, grade):
    s = score_report(report([entry("pgd", 0.1, ratio)], clean=1.0))  # robustness alone: value = 100 * ratio
    assert s["value"] == pytest.approx(100 * ratio) and s["grade"] == grade


def test_a_failed_check_caps_at_c_and_a_warning_does_not():
    checks = [{"name": "input_gradients", "status": "fail", "detail": "zero gradients", "numbers": {}},
              {"name": "monotone_curve", "status": "warn", "detail": "rises", "numbers": {}}]
    high = report([entry("pgd", 0.1, 0.95)], clean=1.0, checks=checks)
    s = score_report(high)
    assert s["value"] == CAP_VALUE and s["grade"] == "C"
    assert s["capped"]["grade"] == "C" and s["capped"]["by"] == ["input_gradients"] and s["capped"]["reason"]
    low = report([entry("pgd", 0.1, 0.2)], clean=1.0, checks=checks)
    assert score_report(low)["grade"] == "F" and score_report(low)["value"] == pytest.approx(20)
    checks[0]["status"] = "warn"
    s = score_report(high)
    assert s["grade"] == "A" and s["capped"] is None


# --- gates ----------------------------------------------------------------------------------------------------------

def gated_report():
    r = full_report(checks=[{"name": "large_budget", "status": "fail", "detail": "x", "numbers": {}}])
    r["attacks"].append(entry("cw", None, None, norm="L2", curve=[(0.5, 0.3)], median=None))
    r["attacks"][-1]["eps_text"] = None
    r["score"] = score_report(r)
    return r


def test_metrics_namespace():
    m = metrics(gated_report())
    assert m["clean.accuracy"] == 0.8 and m["robust_accuracy[pgd@0.2]"] == 0.1
    assert m["success_rate[pgd@0.2]"] == 0.75 and m["robust_accuracy[cw@min]"] is None
    assert m["median_norm[cw]"] == math.inf  # median null with samples attacked: most resisted
    assert m["score.value"] == gated_report()["score"]["value"] and m["checks.failed"] == 1
    assert m["semantics.two_vs_two[fc]"] == 0.8 and "score.components.saliency" in m


@pytest.mark.parametrize("text, metric, op, threshold", [
    ("robust_accuracy[pgd@8/255]>=0.40", "robust_accuracy[pgd@8/255]", ">=", 0.4),
    ("  clean.accuracy >=   0.9 ", "clean.accuracy", ">=", 0.9),
    ("score.value<50", "score.value", "<", 50.0), ("checks.failed == 0", "checks.failed", "==", 0.0),
    ("semantics.two_vs_two[layer4.1] > .5", "semantics.two_vs_two[layer4.1]", ">", 0.5),
    ("median_norm[cw]<=1e-1", "median_norm[cw]", "<=", 0.1),
])
def test_parse_good_gates(text, metric, op, threshold):
    g = parse_gate(text)
    assert (g.metric, g.op, g.threshold) == (metric, op, threshold)


@pytest.mark.parametrize("text", ["clean.accuracy", "clean.accuracy >= ", "clean.accuracy >= abc",
                                  "clean.accuracy >= nan", "clean.accuracy => 0.5", ">= 0.5",
                                  "clean.acuracy >= 0.5", "robust_accuracy >= 0.5", "clean.accuracy >= 0.5 0.6"])
def test_malformed_gates_are_one_line_errors(text):
    with pytest.raises(AuditError) as err:
        parse_gate(text)
    assert "\n" not in str(err.value)


def test_unknown_metric_names_the_closest_first_then_a_count():
    known = metrics(gated_report())
    with pytest.raises(AuditError) as err:
        parse_gate("robust_acuracy[pgd@0.2] >= 0.4", known)
    msg = str(err.value)
    listing = msg.split("this report has: ")[1]
    assert listing.startswith("robust_accuracy[pgd@0.2]") and "… and" in msg and "\n" not in msg
    shown = listing.split(", … and ")[0].split(", ")
    assert len(shown) + int(msg.rsplit("and ", 1)[1].split()[0]) == len(known)


def test_evaluate_the_verdict():
    r = gated_report()
    value = r["score"]["value"]
    v = evaluate(r, ["robust_accuracy[pgd@0.1] >= 0.4", "clean.accuracy>0.8", "median_norm[cw]>=0.5"],
                 fail_under=value - 0.1)
    assert [g["passed"] for g in v["gates"]] == [True, False, True]  # 0.4 >= 0.4; 0.8 > 0.8 is false; inf
    assert v["gates"][2]["value"] is None and "∞" in v["gates"][2]["detail"]
    assert v["score_passed"] is True and v["passed"] is False
    v = evaluate(r, ["robust_accuracy[pgd@0.1]>=0.4"], fail_under=value + 0.1)
    assert v["score_passed"] is False and v["passed"] is False and v["fail_under"] == value + 0.1
    v = evaluate(r, ["robust_accuracy[pgd@0.1]>=0.4"], fail_under=None)
    assert v["score_passed"] is None and v["passed"] is True
    v = evaluate(r, ["robust_accuracy[cw@min] >= 0.1"], None)
    assert not v["passed"] and "minimal-perturbation" in v["gates"][0]["detail"]
    with pytest.raises(AuditError):
        evaluate(r, ["robust_accuracy[pgd@0.3]>=0.1"], None)


# --- JUnit ----------------------------------------------------------------------------------------------------------

def test_junit_parses_back_with_escaped_untrusted_text():
    r = gated_report()
    r["checks"] = [{"name": "input_gradients", "status": "fail", "detail": EVIL[0] + "\x01", "numbers": {"g": 0}},
                   {"name": EVIL[1], "status": "warn", "detail": EVIL[2], "numbers": {}},
                   {"name": "clean_accuracy", "status": "pass", "detail": "fine", "numbers": {"acc": 0.8}}]
    r["verdict"] = evaluate(r, ["robust_accuracy[pgd@0.1]>=0.4", "clean.accuracy>=0.9"], fail_under=101)
    root = ET.fromstring(junit_xml(r))
    cases = root.findall(".//testcase")
    assert root.tag == "testsuites" and int(root.get("tests")) == len(cases) == 3 + 2 + 1
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(root.get("failures")) == len(failures) == 3  # the failed check, clean.accuracy, the score
    assert sum(int(s.get("failures")) for s in root.findall("testsuite")) == 3
    by_name = {c.get("name"): c for c in cases}
    assert by_name["input_gradients"].find("failure").get("message") == EVIL[0] + "\ufffd"
    assert by_name[EVIL[1]].find("system-out").text.startswith("WARNING: " + EVIL[2])
    assert by_name["robust_accuracy[pgd@0.1]>=0.4"].find("failure") is None


# --- compare --------------------------------------------------------------------------------------------------------

def test_compare_tolerances_respect_direction_and_a_regression_needs_the_test():
    base = gated_report()
    new = copy.deepcopy(base)
    new["attacks"][2]["robust_accuracy"] = 0.4 - 0.01  # within tolerance
    new["attacks"][3]["robust_accuracy"] = 0.1 - 0.02  # beyond, but 8 vs 10 of 100 images: not significant
    new["attacks"][1]["robust_accuracy"] = 0.0  # 15 of 100 -> 0 of 100: beyond and significant (Fisher)
    new["attacks"][0]["success_rate"] = 1.0 + 0.02  # an attack that succeeds more: worse
    new["attacks"][-1]["minimal_perturbation"]["median"] = 2.0  # was infinite: worse
    new["clean"].update(accuracy=0.9, n_correct=90)  # better
    c = compare(base, new, tolerance=0.01)
    rows = {r["metric"]: r for r in c["rows"]}
    assert not rows["robust_accuracy[pgd@0.1]"]["beyond_tolerance"]
    assert rows["robust_accuracy[pgd@0.2]"]["beyond_tolerance"] and not rows["robust_accuracy[pgd@0.2]"]["regressed"]
    assert rows["robust_accuracy[pgd@0.2]"]["delta"] == pytest.approx(-0.02)
    assert rows["robust_accuracy[pgd@0.2]"]["verdict"] == "inconclusive"
    assert rows["robust_accuracy[fgsm@0.2]"]["regressed"] and c["regressed"]
    assert rows["success_rate[fgsm@0.1]"]["beyond_tolerance"] and rows["median_norm[cw]"]["beyond_tolerance"]
    assert not rows["success_rate[fgsm@0.1]"]["regressed"] and not rows["median_norm[cw]"]["regressed"]
    assert rows["median_norm[cw]"]["base"] is None and "∞" in rows["median_norm[cw]"]["note"]
    assert not rows["clean.accuracy"]["beyond_tolerance"] and not rows["clean.accuracy"]["regressed"]
    assert rows["robust_accuracy[cw@min]"]["delta"] is None and not rows["robust_accuracy[cw@min]"]["regressed"]
    assert not compare(base, copy.deepcopy(base))["regressed"]


def test_compare_score_points_relative_norms_and_checks():
    base = gated_report()
    new = copy.deepcopy(base)
    new["score"]["value"] = base["score"]["value"] - 0.9  # 0.9 points < 100 * 0.01
    new["attacks"][-1]["minimal_perturbation"]["median"] = None
    new["attacks"][-1]["minimal_perturbation"]["n"] = 0  # nothing attacked: null, not infinite
    new["checks"].append({"name": "monotone_curve", "status": "fail", "detail": "x", "numbers": {}})
    rows = {r["metric"]: r for r in compare(base, new)["rows"]}
    assert not rows["score.value"]["beyond_tolerance"] and rows["checks.failed"]["beyond_tolerance"]
    assert not rows["checks.failed"]["regressed"] and rows["checks.failed"]["verdict"] == "not tested"
    assert rows["median_norm[cw]"]["note"] == "null in new" and not rows["median_norm[cw]"]["beyond_tolerance"]
    base["attacks"][-1]["minimal_perturbation"]["median"] = 1.0
    new["attacks"][-1]["minimal_perturbation"].update(median=0.995, n=80)
    assert not {r["metric"]: r for r in compare(base, new)["rows"]}["median_norm[cw]"]["beyond_tolerance"]
    new["attacks"][-1]["minimal_perturbation"]["median"] = 0.98
    assert {r["metric"]: r for r in compare(base, new, 0.015)["rows"]}["median_norm[cw]"]["beyond_tolerance"]
    with pytest.raises(AuditError):
        compare(base, new, tolerance=-0.1)


def test_comparison_table_fits_80_columns_and_escapes_markup():
    base = gated_report()
    for i, name in enumerate(EVIL):
        base["analyses"]["semantics"]["layers"].append(
            {"name": name + "_very_long_layer_name_from_a_checkpoint" * 2, "clean": {"two_vs_two": 0.7 + i / 100},
             "adversarial": []})
    new = copy.deepcopy(base)
    new["attacks"][3]["robust_accuracy"] = 0.0
    new["attacks"][1]["robust_accuracy"] = 0.0
    console = Console(width=80, record=True, color_system=None)
    console.print(comparison_table(compare(base, new)))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "regressed" in text and "…" not in text
    wide = Console(width=250, record=True, color_system=None)  # unfolded names: the markup is shown, not applied
    wide.print(comparison_table(compare(base, new)))
    unfolded = wide.export_text()
    for fragment in ("[</script><img", 'two_vs_two["', "[[/bold]_very"):
        assert fragment in unfolded


# --- purity ---------------------------------------------------------------------------------------------------------

def test_the_modules_import_no_torch():
    code = ("import sys, reports.score, reports.gates, reports.junit, reports.compare; "
            "sys.exit('torch' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_a_saliency_component_from_fewer_than_twenty_adversarials_is_marked_and_left_out():
    few = full_report()
    for layer in few["analyses"]["saliency"]["layers"]:
        layer["adversarial"][0]["n"] = 11
    s = score_report(few)
    sal = s["components"]["saliency"]
    assert (sal["n"], sal["too_few"], sal["included"], sal["weight"]) == (11, True, False, 0.0)
    assert sal["value"] == pytest.approx(1 - 0.9 / 6) and "fewer than 20 images" in sal["detail"]
    without = copy.deepcopy(few)
    del without["analyses"]["saliency"]
    assert s["value"] == pytest.approx(score_report(without)["value"])  # it cannot move the score
    for layer in few["analyses"]["saliency"]["layers"]:
        layer["adversarial"][0]["n"] = 20
    sal = score_report(few)["components"]["saliency"]
    assert (sal["n"], sal["too_few"], sal["included"]) == (20, False, True)
