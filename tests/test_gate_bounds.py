"""Gates that know their uncertainty: `.lower`/`.upper` bounds of every interval, bad bounds as one-line errors,
and point gates that the interval leaves undecided at this sample size (hand-made report dicts)."""

import copy
import math
import xml.etree.ElementTree as ET

import pytest
from test_score import gated_report

from audit.cli import main
from audit.errors import AuditError
from reports.gates import bounds, evaluate, images_needed, parse_gate
from reports.junit import junit_xml

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def with_intervals():
    """test_score's gated report (100 images; pgd@0.1 at 0.4) with the intervals of schema 2.0."""
    r = gated_report()
    r["statistics"] = {"confidence": 0.95}
    r["clean"]["accuracy_ci"] = [0.71, 0.87]
    for e in r["attacks"]:
        ra, sr = e["robust_accuracy"], e["success_rate"]
        e["robust_accuracy_ci"] = None if ra is None else [max(0.0, ra - 0.09), min(1.0, ra + 0.1)]
        e["success_rate_ci"] = None if sr is None else [max(0.0, sr - 0.1), min(1.0, sr + 0.08)]
    cw = r["attacks"][-1]["minimal_perturbation"]
    cw["median_ci"] = None  # infinite median: no interval
    r["score"]["interval"] = [r["score"]["value"] - 6, r["score"]["value"] + 5]
    return r


def test_every_interval_has_lower_and_upper_names():
    r = with_intervals()
    b = bounds(r)
    assert b["clean.accuracy.lower"] == 0.71 and b["clean.accuracy.upper"] == 0.87
    assert b["robust_accuracy[pgd@0.1].lower"] == pytest.approx(0.31)
    assert b["success_rate[pgd@0.2].upper"] == pytest.approx(0.83)
    assert b["score.value.lower"] == b["score.lower"] == pytest.approx(r["score"]["value"] - 6)
    assert b["score.upper"] == pytest.approx(r["score"]["value"] + 5)
    assert b["median_norm[cw].lower"] is None and b["robust_accuracy[cw@min].upper"] is None
    assert not any(name.startswith(("checks.", "score.components", "semantics.")) for name in b)


def test_gates_on_bounds_decide_by_the_bound():
    r = with_intervals()
    v = evaluate(r, ["robust_accuracy[pgd@0.1].lower>=0.30", "robust_accuracy[pgd@0.1].lower>=0.40",
                     "success_rate[pgd@0.2].upper<=0.9", f"score.lower>={r['score']['value'] - 7}",
                     "median_norm[cw].lower>=0.1"])
    assert [g["passed"] for g in v["gates"]] == [True, False, True, True, False]
    assert v["gates"][1]["value"] == pytest.approx(0.31) and not any(g["undecided"] for g in v["gates"])
    assert "median_norm[cw].lower is null: the report has no interval for median_norm[cw]" in v["gates"][4]["detail"]
    minimal = evaluate(r, ["robust_accuracy[cw@min].lower>=0.1"])["gates"][0]
    assert not minimal["passed"] and "minimal-perturbation attack" in minimal["detail"]


@pytest.mark.parametrize("text, message", [
    ("robust_accuracy[pgd@0.1].middle>=0.4", "unknown bound .middle in gate"),
    ("clean.accuracy.mean>=0.4", "unknown bound .mean in gate"),
    ("score.middle>=50", "unknown bound .middle in gate"),
    ("checks.failed.upper<=0", "checks.failed has no interval"),
    ("score.components.robustness.lower>=0.5", "score.components.robustness has no interval"),
    ("semantics.two_vs_two[fc].lower>=0.6", "semantics.two_vs_two[fc] has no interval"),
])
def test_an_unknown_bound_is_one_line_before_and_after_the_audit(text, message):
    for known in (None, True):
        with pytest.raises(AuditError) as err:
            if known:
                evaluate(with_intervals(), [text])
            else:
                parse_gate(text)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_a_bound_of_a_report_without_intervals_is_one_line():
    with pytest.raises(AuditError, match=r"^robust_accuracy\[pgd@0\.1\] has no interval in this report, so no "
                                         r"\.lower bound .*schema 2\.0 or later$"):
        evaluate(gated_report(), ["robust_accuracy[pgd@0.1].lower>=0.3"])
    assert parse_gate("robust_accuracy[pgd@8/255].lower>=0.40").metric == "robust_accuracy[pgd@8/255].lower"
    assert parse_gate("score.upper<=90").metric == "score.upper"


def test_a_bad_bound_gate_stops_the_audit_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        main(["run", str(tmp_path / "absent.pt"), "--data", "demo", "--gate", "clean.accuracy.middle>=0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and "unknown bound .middle" in err[0]


def test_a_point_gate_inside_its_interval_is_undecided_with_the_images_to_resolve_it():
    # the example: 0.41 on 100 images, 95% interval about [0.32, 0.51], gate >= 0.40
    r = with_intervals()
    r["attacks"][2].update(robust_accuracy=0.41, robust_accuracy_ci=[0.32, 0.51])
    v = evaluate(r, ["robust_accuracy[pgd@0.1]>=0.40", "clean.accuracy>=0.5", "robust_accuracy[pgd@0.1].lower>=0.3"])
    row, clear, bound = v["gates"]
    assert row["passed"] and row["undecided"]  # passes by the point value, as before, but says it is undecided
    # by hand: n = z^2 p (1 - p) / (p - t)^2 = 3.8415 x 0.41 x 0.59 / 0.01^2 = 9292.5 -> 9293
    assert row["images_to_resolve"] == math.ceil(Z95 ** 2 * 0.41 * 0.59 / 0.01 ** 2) == 9293
    assert row["detail"] == ("robust_accuracy[pgd@0.1] = 0.41 >= 0.4: passed; undecided at this sample size (95% "
                             "interval [0.32, 0.51]): about 9293 images would resolve it")
    assert not clear["undecided"] and clear["images_to_resolve"] is None  # 0.8 and [0.71, 0.87] all clear 0.5
    assert not bound["undecided"]
    assert v["passed"] and v["summary"].startswith(
        "PASSED: 3 gates held; 1 gate undecided at this sample size (robust_accuracy[pgd@0.1]>=0.40)")
    xml = ET.fromstring(junit_xml({**r, "verdict": v}))
    case = next(c for c in xml.iter("testcase") if c.get("name") == "robust_accuracy[pgd@0.1]>=0.40")
    assert "undecided at this sample size" in case.find("system-out").text
    assert "undecided" in next(p for p in xml.iter("property") if p.get("name") == "verdict").get("value")


def test_a_failed_gate_can_be_undecided_too_and_junit_says_so():
    r = with_intervals()
    r["attacks"][2].update(robust_accuracy=0.38, robust_accuracy_ci=[0.29, 0.48])
    row = evaluate(r, ["robust_accuracy[pgd@0.1]>=0.40"])["gates"][0]
    assert not row["passed"] and row["undecided"]
    assert row["images_to_resolve"] == math.ceil(Z95 ** 2 * 0.38 * 0.62 / 0.02 ** 2)
    xml = ET.fromstring(junit_xml({**r, "verdict": evaluate(r, ["robust_accuracy[pgd@0.1]>=0.40"])}))
    failure = next(c for c in xml.iter("testcase") if c.get("name") == "robust_accuracy[pgd@0.1]>=0.40").find(
        "failure")
    assert "undecided at this sample size" in failure.get("message")


@pytest.mark.parametrize("op, threshold, ci, flips", [
    (">=", 0.40, [0.40, 0.50], False),  # every value of the interval passes (the lower end included)
    (">", 0.40, [0.40, 0.50], True),  # the lower end itself fails
    ("<", 0.52, [0.40, 0.50], False),
    ("<=", 0.45, [0.40, 0.50], True),
    ("==", 0.45, [0.40, 0.50], True),  # the value 0.45 itself
    ("==", 0.60, [0.40, 0.50], False),
])
def test_undecided_means_the_outcome_flips_somewhere_in_the_interval(op, threshold, ci, flips):
    r = with_intervals()
    r["attacks"][2].update(robust_accuracy=0.45, robust_accuracy_ci=ci)
    assert evaluate(r, [f"robust_accuracy[pgd@0.1]{op}{threshold}"])["gates"][0]["undecided"] is flips


def test_the_score_and_success_rates_resolve_by_their_own_denominators():
    r = with_intervals()
    r["score"].update(value=72.0, interval=[66.0, 77.0])
    v = evaluate(r, ["score.value>=70", "success_rate[pgd@0.2]<=0.8"])
    score, success = v["gates"]
    # score: half-width 6 on the side facing the threshold, 2 points away: 100 images x (6 / 2)^2 = 900
    assert score["undecided"] and score["images_to_resolve"] == 900 and "about 900 images" in score["detail"]
    # success rate 0.75 of the attacked images, interval [0.65, 0.83], gate <= 0.8
    assert success["undecided"] and success["images_to_resolve"] == math.ceil(Z95 ** 2 * 0.75 * 0.25 / 0.05 ** 2)
    assert "attacked images would resolve it" in success["detail"]
    old = copy.deepcopy(r)
    del old["score"]["interval"]  # a report without the interval: the gate is decided by the point, as before
    assert not evaluate(old, ["score.value>=70"])["gates"][0]["undecided"]


# --- images_needed against its formula, with hand numbers ----------------------------------------------------------

Z90 = 1.6448536269514722  # the two-sided 90% normal quantile


@pytest.mark.parametrize("metric", ["clean.accuracy", "robust_accuracy[pgd@0.1]", "success_rate[pgd@0.1]"])
def test_images_needed_of_a_proportion_is_the_normal_formula_at_the_reports_level(metric):
    # z^2 p (1 - p) / (p - t)^2 at the report's confidence (0.9): 2.7055 x 0.41 x 0.59 / 0.01^2 = 6544.7 -> 6545;
    # at the default 0.95 (no statistics block): 3.8415 x 0.2419 / 1e-4 = 9292.5 -> 9293
    r = {"statistics": {"confidence": 0.9}, "clean": {"n": 100}}
    got = images_needed(r, metric, 0.41, 0.40, [0.0, 1.0])
    assert got == math.ceil(Z90 ** 2 * 0.41 * 0.59 / 0.01 ** 2) == 6545
    assert images_needed({}, metric, 0.41, 0.40, [0.0, 1.0]) == 9293
    assert images_needed(r, metric, 0.41, 0.41, [0.0, 1.0]) is None


@pytest.mark.parametrize("threshold, n, expected", [
    (74.0, 100, 625),  # above the value: the upper half-width 77 - 72 = 5, 2 points away: 100 x (5 / 2)^2
    (70.0, 100, 900),  # below: the lower half-width 72 - 66 = 6, 2 points away: 100 x (6 / 2)^2
    (69.0, 100, 400),  # 100 x (6 / 3)^2
    (75.0, 10, 28),  # 10 x (5 / 3)^2 = 27.8, rounded up
    (72.0, 100, None),  # the value itself: no sample size separates them
])
def test_images_needed_of_the_score_scales_its_half_width_facing_the_threshold(threshold, n, expected):
    r = {"clean": {"n": n}, "attacks": [], "statistics": {"confidence": 0.9}}
    got = images_needed(r, "score.value", 72.0, threshold, [66.0, 77.0])
    assert got == expected and (got is None or type(got) is int)


def test_images_needed_of_a_median_norm_counts_that_attacks_images():
    # n of the minimal-perturbation block of the entry with that name (not the first minimal entry, not a
    # bounded entry of the same name, not the clean n); value 0.5 in [0.375, 0.75] (exact binary fractions)
    r = {"clean": {"n": 300}, "attacks": [
        {"name": "cw", "minimal_perturbation": None},
        {"name": "deepfool", "minimal_perturbation": {"n": 50}},
        {"name": "cw", "minimal_perturbation": {"n": 200}},
    ]}
    ci = [0.375, 0.75]
    assert images_needed(r, "median_norm[cw]", 0.5, 0.625, ci) == 800  # 200 x (0.25 / 0.125)^2
    assert images_needed(r, "median_norm[cw]", 0.5, 0.25, ci) == 50  # 200 x (0.125 / 0.25)^2
    assert images_needed(r, "median_norm[deepfool]", 0.5, 0.625, ci) == 200  # 50 x 4
    assert images_needed(r, "median_norm[fab]", 0.5, 0.625, ci) is None  # no such entry: no n
    assert images_needed({"clean": {}}, "score.value", 72.0, 74.0, [66.0, 77.0]) is None  # no n


# --- the error lines, word for word ----------------------------------------------------------------------------------

def test_bound_errors_word_for_word():
    with pytest.raises(AuditError) as err:
        parse_gate("clean.accuracy.middle>=0.4")
    assert str(err.value) == ("unknown bound .middle in gate 'clean.accuracy.middle>=0.4': a bound is .lower or "
                              ".upper (e.g. \"robust_accuracy[pgd@8/255].lower>=0.40\")")
    with pytest.raises(AuditError) as err:
        parse_gate("checks.failed.upper<=0")
    assert str(err.value) == ("checks.failed has no interval, so no .upper bound (gate 'checks.failed.upper<=0'); "
                              "bounds exist for clean.accuracy, robust_accuracy[ATTACK@EPS], "
                              "success_rate[ATTACK@EPS], median_norm[ATTACK], score.value (or score)")
    with pytest.raises(AuditError) as err:
        evaluate(gated_report(), ["clean.accuracy.lower>=0.3"])
    assert str(err.value) == ("clean.accuracy has no interval in this report, so no .lower bound (gate "
                              "'clean.accuracy.lower>=0.3'); bounds exist for clean.accuracy, "
                              "robust_accuracy[ATTACK@EPS], success_rate[ATTACK@EPS], median_norm[ATTACK], "
                              "score.value (or score) in reports of schema 2.0 or later")


def test_a_null_score_bound_names_the_missing_interval():
    r = with_intervals()
    r["score"]["interval"] = None
    row = evaluate(r, ["score.lower>=50"])["gates"][0]
    assert row["detail"] == "score.lower is null: the report has no interval for score.value (too few images for one)"


KNOWN = ["x", "abcdxxxx", "abcdexxx", "abcdefxx", "abcdefgx", "y"]


def test_an_unknown_metric_lists_the_closest_names_first():
    # similarity to "abcdefgh" (2 x matching characters / 16): abcdefgx 0.875, abcdefxx 0.75, abcdexxx 0.625,
    # abcdxxxx 0.5 (the cutoff, included); x and y share nothing and follow in the report's order
    with pytest.raises(AuditError) as err:
        parse_gate("abcdefgh>=1", KNOWN)
    assert str(err.value) == ("unknown metric 'abcdefgh' in gate 'abcdefgh>=1'; this report has: abcdefgx, "
                              "abcdefxx, abcdexxx, abcdxxxx, x, y")
    with pytest.raises(AuditError) as err:  # 10 names: 8 shown
        parse_gate("abcdefgh>=1", [*KNOWN, "z1", "z2", "z3", "z4"])
    assert str(err.value).endswith("this report has: abcdefgx, abcdefxx, abcdexxx, abcdxxxx, x, y, z1, z2, … and 2 "
                                   "more")


def test_an_infinite_median_reads_as_infinity_in_the_detail():
    row = evaluate(with_intervals(), ["median_norm[cw]>=0.1"])["gates"][0]
    assert row["passed"] and row["value"] is None and not row["undecided"]
    assert row["detail"] == "median_norm[cw] = ∞ >= 0.1: passed"


def test_an_unknown_name_with_a_bound_suffix_is_an_unknown_metric():
    with pytest.raises(AuditError, match=r"^unknown metric 'robustness\.lower' in gate 'robustness\.lower>=1'; "):
        evaluate(with_intervals(), ["robustness.lower>=1"])
    with pytest.raises(AuditError) as err:
        parse_gate("clean.accuracy>=abc")
    assert str(err.value) == "malformed gate 'clean.accuracy>=abc': 'abc' is not a finite number"


def test_an_unknown_metric_before_the_audit_lists_the_families():
    with pytest.raises(AuditError) as err:
        parse_gate("nonsense>=1")
    message = str(err.value)
    assert message.startswith("unknown metric 'nonsense' in gate 'nonsense>=1'; metrics are clean.accuracy, "
                              "robust_accuracy[ATTACK@EPS], success_rate[ATTACK@EPS], median_norm[ATTACK], "
                              "score.value, score.components.NAME, ")
    assert message.endswith(", checks.failed") and "semantics.two_vs_two[" in message
    with pytest.raises(AuditError) as err:
        parse_gate("clean.accuracy")
    assert str(err.value) == ("malformed gate 'clean.accuracy': expected METRIC OP NUMBER with OP one of >=, <=, >, "
                              "<, == (e.g. \"robust_accuracy[pgd@8/255]>=0.40\")")
