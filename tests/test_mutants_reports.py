"""Edges of the score and the comparison that mutation testing showed untested (hand-made report dicts)."""

import pytest
from test_score import entry, report

from audit.errors import AuditError
from reports.compare import regressed
from reports.score import check_weights, reference_run


def test_the_reference_norm_is_linf_even_when_an_l2_entry_comes_first():
    attacks = [entry("pgdl2", 1.0, 0.0, norm="L2"), entry("pgd", 0.1, 0.3), entry("fgsm", 0.1, 0.5)]
    assert (reference_run(report(attacks))["name"], reference_run(report(attacks))["norm"]) == ("pgd", "Linf")


def test_without_linf_the_first_bounded_norm_is_the_reference():
    attacks = [entry("pgdl2", 0.5, 0.4, norm="L2"), entry("pgdl2", 1.0, 0.2, norm="L2"),
               entry("apgdl1", 10.0, 0.0, norm="L1")]
    ref = reference_run(report(attacks))
    assert (ref["name"], ref["eps"]) == ("pgdl2", 1.0)


def test_the_budget_match_tolerates_rounding_of_eps():
    # the largest budget found again after a round trip through text (8/255 written with fewer digits)
    attacks = [entry("fgsm", 8 / 255, 0.3), entry("pgd", 0.031372549019607, 0.2)]
    assert reference_run(report(attacks))["name"] == "pgd"


def test_with_minimal_attacks_only_the_highest_success_rate_is_the_reference():
    attacks = [entry("cw", None, None, norm="L2", n_success=40, curve=[(0.5, 0.6)]),
               entry("fmn", None, None, norm="L2", n_success=70, curve=[(0.5, 0.5)])]
    assert reference_run(report(attacks))["name"] == "fmn"


def test_mean_curve_breaks_a_tie_at_the_largest_budget():
    # at the largest budget both reach 0; a mean (sum / count) over 2 vs 3 budgets decides, not a sum
    attacks = [entry("a", 0.1, 0.3), entry("a", 0.3, 0.0),
               entry("b", 0.05, 0.2), entry("b", 0.1, 0.2), entry("b", 0.3, 0.0)]
    assert reference_run(report(attacks))["name"] == "b"  # mean 0.133 < 0.15, though its sum 0.4 > 0.3


def test_weight_errors_name_the_problem():
    with pytest.raises(AuditError, match="^unknown score component 'speed' in the weights; the components are "
                                         "robustness, severity, representation, saliency$"):
        check_weights({"speed": 1})
    with pytest.raises(AuditError, match="^score weight severity=-1 is not a non-negative number$"):
        check_weights({"severity": -1})
    with pytest.raises(AuditError, match="^all score weights are zero: give at least one component a positive "
                                         "weight$"):
        check_weights(dict.fromkeys(("robustness", "severity", "representation", "saliency"), 0))


@pytest.mark.parametrize("metric, base, new, tolerance, worse", [
    ("robust_accuracy[pgd@0.1]", 0.75, 0.5, 0.25, False),  # exactly base - t: not more than the tolerance
    ("success_rate[pgd@0.1]", 0.25, 0.5, 0.25, False),  # exactly base + t
    ("median_norm[cw]", 2.0, 1.5, 0.25, False),  # exactly base (1 - t)
    ("median_norm[cw]", 2.0, 1.985, 0.01, False),  # relative: 1.985 >= 1.98, though 1.985 < 2.0 - 0.01
    ("median_norm[cw]", 2.0, 1.97, 0.01, True),
    ("score.value", 80.0, 79.0, 0.01, False),  # points: 100 t = 1 point
    ("score.value", 80.0, 78.995, 0.01, True),
    ("checks.failed", 1.0, 2.0, 0.5, True),  # counts: any newly failed check, whatever the tolerance
])
def test_regression_edges_per_family(metric, base, new, tolerance, worse):
    assert regressed(metric, base, new, tolerance) is worse
