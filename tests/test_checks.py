"""The validity checks at their edges: tolerances, the one-sample margin, budgets without fgsm, empty entries."""

from __future__ import annotations

import pytest

from attacks.entry_checks import EXCURSION_TOLERANCE, attack_warnings


def entry(name, eps, robust, *, norm="Linf", steps=40, eps_violation=0.0, box_violation=0.0):
    return {"name": name, "eps": eps, "eps_text": str(eps), "norm": norm, "robust_accuracy": robust,
            "steps": steps, "checks": {"max_eps_violation": eps_violation, "max_box_violation": box_violation}}


def fgsm(eps, robust, norm="Linf"):
    return entry("fgsm", eps, robust, norm=norm, steps=None)


@pytest.mark.parametrize("kind", ["eps_violation", "box_violation"])
def test_an_excursion_is_flagged_only_beyond_the_tolerance(kind):
    assert attack_warnings([entry("fab", 0.03, 0.5, **{kind: EXCURSION_TOLERANCE})], 10) == []
    [warning] = attack_warnings([entry("fab", 0.03, 0.5, **{kind: 2 * EXCURSION_TOLERANCE})], 10)
    assert warning.startswith("fab at eps 0.03 produced adversarials outside its threat model")
    assert warning.endswith("they were projected back before evaluation")


def test_the_margin_is_one_sample_and_at_least_one_percent():
    # 16 samples: one sample is 6.25 points (exact in binary floating point)
    assert attack_warnings([fgsm(0.1, 0.25), entry("pgd", 0.1, 0.3125)], 16) == []
    [warning] = attack_warnings([fgsm(0.1, 0.25), entry("pgd", 0.1, 0.375)], 16)
    assert warning == ("pgd at eps 0.1 leaves more samples robust than one-step fgsm (37.5% vs 25.0%): the "
                       "iterative attack is failing (too few steps, or masked gradients); do not trust its number")
    # 1,000 samples: one sample is 0.1 points, but the margin stays 1 point
    assert attack_warnings([fgsm(0.1, 0.25), entry("pgd", 0.1, 0.255)], 1000) == []
    assert len(attack_warnings([fgsm(0.1, 0.25), entry("pgd", 0.1, 0.27)], 1000)) == 1
    # no samples at all: the 1-point floor still applies, and nothing divides by zero
    assert len(attack_warnings([fgsm(0.1, 0.25), entry("pgd", 0.1, 0.5)], 0)) == 1


def test_every_budget_is_checked_in_norm_then_budget_order():
    entries = [
        entry("pgd", 0.05, 0.9),  # no fgsm at this budget: nothing to compare with, and the others still count
        fgsm(0.2, 0.1), entry("pgd", 0.2, 0.5),
        fgsm(0.1, 0.1), entry("pgd", 0.1, 0.5),
        fgsm(0.5, 0.1, norm="L2"), entry("pgdl2", 0.5, 0.5, norm="L2"),
    ]
    warnings = attack_warnings(entries, 100)
    assert [w.split(" leaves")[0] for w in warnings] == ["pgdl2 at eps 0.5", "pgd at eps 0.1", "pgd at eps 0.2"]


def test_entries_without_a_robust_accuracy_are_skipped():
    entries = [fgsm(0.1, 0.2), entry("pgd", 0.1, None), entry("apgd", 0.1, 0.6)]
    assert [w.split(" leaves")[0] for w in attack_warnings(entries, 100)] == ["apgd at eps 0.1"]
    assert attack_warnings([fgsm(0.1, None), entry("pgd", 0.1, 0.6)], 100) == []


def test_the_clean_accuracy_check_states_its_thresholds_and_numbers_exactly():
    from attacks.entry_checks import clean_accuracy_check

    fail = clean_accuracy_check(0.2, 10, 300)  # at 2x chance: fails
    assert fail == {"name": "clean_accuracy", "status": "fail", "numbers": {"accuracy": 0.2, "chance": 0.1, "n": 300},
                    "detail": "clean accuracy 20.0% is near or below chance (10.0%): check the labels and class "
                              "order (--classes), the normalization (--mean/--std) and the input size; every "
                              "robustness number is meaningless"}
    missing = clean_accuracy_check(None, 4, 0)
    assert missing["status"] == "fail"
    assert missing["detail"].startswith("clean accuracy no is near or below chance (25.0%)")
    assert missing["numbers"] == {"accuracy": None, "chance": 0.25, "n": 0}
    warn = clean_accuracy_check(0.4, 10, 50)  # above 2x, at 4x chance: warns
    assert warn == {"name": "clean_accuracy", "status": "warn", "numbers": {"accuracy": 0.4, "chance": 0.1, "n": 50},
                    "detail": "clean accuracy 40.0% is low (chance 10.0%): check labels, normalization and input size"}
    ok = clean_accuracy_check(0.41, 10, 50)
    assert ok == {"name": "clean_accuracy", "status": "pass", "numbers": {"accuracy": 0.41, "chance": 0.1, "n": 50},
                  "detail": "clean accuracy 41.0% (chance 10.0%)"}
    assert clean_accuracy_check(0.2001, 10, 50)["status"] == "warn"


def test_square_margin_is_two_samples_and_at_least_two_percent():
    from attacks.entry_checks import square_margin

    assert square_margin(50) == 0.04 and square_margin(100) == 0.02 and square_margin(1000) == 0.02
    assert square_margin(0) == 0.02 and square_margin(99) == 2.0 / 99
