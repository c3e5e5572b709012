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
