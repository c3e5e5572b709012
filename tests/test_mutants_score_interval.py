"""``reports.score.score_interval`` against a literal resampling loop written here, on the cases the demo's reports
never reach: weighted components held fixed beside robustness, resamples without a single clean-correct image,
a report whose budgets come from a minimal attack's curve alone with norms exactly at a budget, a report without
its seed or confidence, and each refusal word for word."""

from __future__ import annotations

import numpy as np
import pytest

import reports.score as score_module
from reports.schema import pack_bits, pack_norms
from reports.score import INTERVAL_METHOD, score_interval

RESAMPLES = 200


@pytest.fixture(autouse=True)
def _few_resamples(monkeypatch):
    monkeypatch.setattr(score_module, "INTERVAL_RESAMPLES", RESAMPLES)


def literal(correct, budgets, used, values, cap=None, seed=0, confidence=0.95):
    """The interval by hand: per resample, the rows drawn; the clean accuracy; per budget the lowest robust
    accuracy of its columns; their mean over the clean accuracy (0 without a clean-correct row), clipped to [0, 1];
    the weighted mean with the fixed components; the cap; then the percentiles."""
    n = len(correct)
    rng = np.random.default_rng(seed)
    total = sum(used.values())
    scores = []
    for _ in range(RESAMPLES):
        rows = rng.integers(0, n, n)
        clean = correct[rows].mean()
        worst = [min(column[rows].mean() for column in columns) for columns in budgets]
        retained = min(max(np.mean(worst) / clean, 0.0), 1.0) if clean > 0 else 0.0
        value = 100 * (used["robustness"] * retained
                       + sum(w * values[k] for k, w in used.items() if k != "robustness")) / total
        scores.append(value if cap is None else min(value, cap))
    return list(np.quantile(scores, [(1 - confidence) / 2, (1 + confidence) / 2]))


def bounded_report(correct, robust_columns, seed=3, confidence=0.9):
    n = len(correct)
    attacks = [{"name": f"a{i}", "eps": 0.1 * (1 + i // 2), "eps_text": f"{0.1 * (1 + i // 2):g}", "norm": "Linf",
                "robust_accuracy": float(np.mean(col)), "per_sample": {"robust": pack_bits(col.astype(bool).tolist())}}
               for i, col in enumerate(robust_columns)]
    return {"seed": seed, "statistics": {"confidence": confidence},
            "clean": {"n": n, "per_sample": {"correct": pack_bits(correct.astype(bool).tolist())}}, "attacks": attacks}


def test_fixed_components_and_resamples_without_a_clean_correct_image():
    correct = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=float)  # a third of the resamples hold neither of the two
    first = np.array([1, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    second = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    report = bounded_report(correct, [first, second, first])  # budgets 0.1 (a0, a1) and 0.2 (a2)
    used, values = {"robustness": 0.6, "severity": 0.25, "saliency": 0.15}, {"severity": 0.8, "saliency": 0.3}
    got, method = score_interval(report, values, used, None, False)
    want = literal(correct, [[first, second], [first]], used, values, seed=3, confidence=0.9)
    assert got == pytest.approx(want, abs=1e-6) and got[0] < got[1]
    assert method == INTERVAL_METHOD.format(resamples=RESAMPLES, seed=3, confidence=0.9)
    assert all(end == round(end, 6) for end in got)  # written with 6 decimals
    capped, _ = score_interval(report, values, used, 40.0, False)
    assert capped == pytest.approx(literal(correct, [[first, second], [first]], used, values, cap=40.0, seed=3,
                                           confidence=0.9), abs=1e-6)


def test_a_resample_without_a_clean_correct_image_retains_nothing():
    correct = np.array([1, 0, 0, 0, 0, 0, 0, 0], dtype=float)  # about a third of the resamples miss the one image
    report = bounded_report(correct, [correct])  # it stays robust: every other resample retains all
    got, _ = score_interval(report, {}, {"robustness": 1.0}, None, False)
    assert got == [0.0, 100.0] == pytest.approx(literal(correct, [[correct]], {"robustness": 1.0}, {}, seed=3,
                                                        confidence=0.9))


def test_budgets_from_a_curve_alone_count_a_norm_at_the_budget_as_broken():
    norms = np.array([0.25, 0.5, 0.25, 0.75, 0.125, 0.5, 0.375, 0.0], dtype=np.float32)  # exact in float32
    correct = np.array([1, 1, 1, 1, 1, 1, 1, 0], dtype=float)
    curve = [{"eps": eps, "robust_accuracy": float((norms > eps).mean())} for eps in (0.25, 0.5)]
    report = {"seed": 5, "statistics": {"confidence": 0.8},
              "clean": {"n": 8, "per_sample": {"correct": pack_bits(correct.astype(bool).tolist())}},
              "attacks": [{"name": "deepfool", "eps": None, "eps_text": None, "norm": "Linf", "robust_accuracy": None,
                           "per_sample": {"robust": pack_bits([False] * 8), "norm": pack_norms(norms.tolist())},
                           "minimal_perturbation": {"curve": curve}}]}
    used = {"robustness": 1.0}
    got, _ = score_interval(report, {}, used, None, False)
    columns = [[(norms > eps).astype(float)] for eps in (0.25, 0.5)]
    assert got == pytest.approx(literal(correct, columns, used, {}, seed=5, confidence=0.8), abs=1e-6)


def test_a_report_without_its_seed_or_confidence_takes_seed_0_and_95_percent():
    correct = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1], dtype=float)
    robust = np.array([1, 0, 1, 0, 0, 1, 0, 1, 0, 0], dtype=float)
    report = bounded_report(correct, [robust])
    del report["seed"], report["statistics"]
    got, method = score_interval(report, {}, {"robustness": 1.0}, None, False)
    assert got == pytest.approx(literal(correct, [[robust]], {"robustness": 1.0}, {}), abs=1e-6)
    assert got == [14.285714, 85.714286]  # 1/7 and 6/7 of 100, written with 6 decimals
    assert method == INTERVAL_METHOD.format(resamples=RESAMPLES, seed=0, confidence=0.95)


def test_each_refusal_word_for_word():
    correct = np.array([1, 0, 1, 1], dtype=float)
    report = bounded_report(correct, [correct])
    assert score_interval(report, {}, {"robustness": 1.0}, None, True) == (
        None, "no interval: the report is not scored")
    assert score_interval(report, {"severity": 0.5}, {"severity": 1.0}, None, False) == (
        None, "no interval: the robustness component is not weighted (the others are held fixed)")
    no_count = bounded_report(correct, [correct])
    del no_count["clean"]["n"]  # the outcomes without their count cannot be read
    for broken in (no_count, dict(report, clean={"n": 4}), dict(report, attacks=[])):
        assert score_interval(broken, {}, {"robustness": 1.0}, None, False) == (
            None, "no interval: the report has no per-sample outcomes")
