"""Every report number on hand-made cases whose answer is known, and the minimal-perturbation attacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.cascade import StepOutcome, run_cascade
from attacks.entry_checks import attack_warnings
from attacks.minimal import MARGIN_TOLERANCE, CarliniWagnerL2, DeepFoolL2
from attacks.registry import get_spec
from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.engine.tallies import AttackTally, minimal_sizes, minimal_summary

NAMES = ["a", "b", "c"]


def outcome(attacked=0, forward=0, backward=0, seconds=0.0):
    return StepOutcome(None, torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.bool), attacked, forward,
                       backward, seconds, 0.0, 0.0)


def hand_batch():
    """Six samples: classes a,a,a,b,b,c; clean-correct 1,1,1,1,0,1; robust 1,0,0,1,0,0; one of the broken ones
    (sample 2) was found at a smaller budget."""
    return dict(
        labels=np.array([0, 0, 0, 1, 1, 2]),
        clean_correct=np.array([1, 1, 1, 1, 0, 1], bool),
        adv_correct=np.array([1, 0, 0, 1, 0, 0], bool),
        goal=np.array([0, 1, 1, 0, 1, 1], bool),
        linf=np.array([0.01, 0.1, 0.02, 0.05, 0.0, 0.3]),
        l2=np.array([0.1, 1.0, 0.2, 0.5, 0.0, 3.0]),
        found=np.array([0, 1, 0, 0, 0, 1], bool),
    )


def test_attack_tally_numbers_on_a_hand_made_batch():
    tally = AttackTally(3)
    tally.add(**hand_batch(), outcome=outcome(attacked=4, forward=40, backward=40, seconds=1.5), offset=0)
    s = tally.summary(NAMES, budget_mode="cumulative")
    assert s["robust_accuracy"] == pytest.approx(2 / 6)  # over all samples
    assert s["success_rate"] == pytest.approx(3 / 5)  # goal among the 5 clean-correct, not among all 6
    assert (s["n_attacked"], s["n_success"], s["n_attacked_at_this_eps"]) == (5, 3, 4)
    p = s["perturbation"]
    # broken clean-correct samples found at this budget: samples 1 and 5 (sample 2 came from a smaller budget,
    # sample 4 was wrong before the attack)
    assert p["n"] == 2
    assert p["linf_mean"] == pytest.approx(0.2) and p["linf_max"] == pytest.approx(0.3)
    assert p["l2_mean"] == pytest.approx(2.0) and p["l2_max"] == pytest.approx(3.0)
    assert "first found at this budget" in p["covers"]
    per_class = {row["class"]: (row["n"], row["accuracy"]) for row in s["per_class_robust_accuracy"]}
    assert per_class == {"a": (3, pytest.approx(1 / 3)), "b": (2, pytest.approx(1 / 2)), "c": (1, 0.0)}
    assert s["failure_rate"] is None and s["minimal_perturbation"] is None
    assert (s["forward_passes"], s["backward_passes"], s["wall_time_s"]) == (40, 40, 1.5)


def test_attack_tally_halves_merge_into_the_whole():
    batch = hand_batch()
    whole = AttackTally(3)
    whole.add(**batch, outcome=outcome(attacked=4), offset=0, minimal_norm=batch["l2"])
    parts = [AttackTally(3), AttackTally(3)]
    for part, sl in zip(parts, (slice(0, 2), slice(2, 6)), strict=True):
        part.add(**{k: v[sl] for k, v in batch.items()}, outcome=outcome(attacked=2), offset=sl.start,
                 minimal_norm=batch["l2"][sl])
    parts[1].merge(parts[0])  # the later half first: per-sample outcomes still come out in data order
    parts[0] = parts[1]
    for mode in ("cumulative", "minimal"):
        assert parts[0].summary(NAMES, budget_mode=mode, curve_eps=[0.5]) == \
            whole.summary(NAMES, budget_mode=mode, curve_eps=[0.5])


def test_minimal_sizes_and_their_summary():
    sizes = minimal_sizes(np.array([0.5, 1.0, 2.0, 9.0, 0.3]), np.array([1, 1, 1, 1, 0], bool),
                          np.array([1, 1, 1, 0, 1], bool))
    assert sizes.tolist() == [0.5, 1.0, 2.0, np.inf, 0.0]  # failure: infinite; wrong before the attack: 0
    s = minimal_summary(sizes, [0.1, 1.0, 1.5, 3.0])
    assert (s["n"], s["n_failed"]) == (4, 1)
    assert s["median"] == 1.0 and s["q25"] == 0.5 and s["q75"] == 2.0
    assert s["mean_of_found"] == pytest.approx(3.5 / 3)
    # accuracy at eps = share of ALL samples whose minimal norm exceeds eps
    assert [p["robust_accuracy"] for p in s["curve"]] == pytest.approx([0.8, 0.4, 0.4, 0.2])
    mostly_failed = minimal_summary(np.array([np.inf, np.inf, 0.2]), [])
    assert mostly_failed["median"] is None and mostly_failed["q25"] == 0.2


def test_minimal_attack_report_says_what_it_measures():
    tally = AttackTally(3)
    batch = hand_batch()
    tally.add(**batch, outcome=outcome(attacked=5), offset=0, minimal_norm=batch["l2"])
    s = tally.summary(NAMES, budget_mode="minimal", curve_eps=[0.15])
    assert s["robust_accuracy"] is None  # a failure rate is not a robust accuracy
    assert s["failure_rate"] == pytest.approx(2 / 6)
    assert s["minimal_perturbation"]["n_failed"] == 2  # samples 0 and 3: goal not reached
    # sizes: inf, 1.0, 0.2, inf, 0 (wrong before the attack), 3.0: five of six exceed 0.15, four exceed 0.5
    curve = tally.summary(NAMES, budget_mode="minimal", curve_eps=[0.15, 0.5])["minimal_perturbation"]["curve"]
    assert [p["robust_accuracy"] for p in curve] == pytest.approx([5 / 6, 4 / 6])


def test_a_non_converged_minimal_attack_is_flagged_against_a_bounded_one():
    bounded = {"name": "pgdl2", "eps": 1.0, "eps_text": "1.0", "norm": "L2", "robust_accuracy": 0.18, "steps": 40,
               "checks": {"max_eps_violation": 0.0, "max_box_violation": 0.0}}
    minimal = {"name": "cw", "eps": None, "eps_text": None, "norm": "L2", "robust_accuracy": None, "steps": 100,
               "checks": {"max_eps_violation": 0.0, "max_box_violation": 0.0},
               "minimal_perturbation": {"curve": [{"eps": 1.0, "robust_accuracy": 0.43}]}}
    warnings = attack_warnings([bounded, minimal], 60)
    assert len(warnings) == 1 and "cw implies 43.0% robust" in warnings[0] and "pgdl2 leaves 18.0%" in warnings[0]
    minimal["minimal_perturbation"]["curve"][0]["robust_accuracy"] = 0.18
    assert attack_warnings([bounded, minimal], 60) == []


def demo_model(name="fashion_cnn.safetensors"):
    from audit.model import load_model

    return load_model(str(ASSETS / name), arch=ARCH).module.eval()


def demo_images(n):
    data = np.load(ASSETS / "fashion_mnist_test.npz")
    return torch.tensor(data["x"][:n]).float().div(255)[:, None], torch.tensor(data["y"][:n]).long()


def test_deepfool_breaks_the_standard_demo_cnn_alike_at_one_and_two_threads(numerics):
    model = demo_model()
    x, y = demo_images(24)
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    results = []
    saved = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            adv = DeepFoolL2(model, steps=50)(x, y)
            with torch.no_grad():
                out = model(adv)
            results.append((out.argmax(1) != y, (adv - x).flatten(1).norm(dim=1)))
    finally:
        torch.set_num_threads(saved)
    assert results[0][0].all() and results[1][0].all()  # an unbounded attack breaks every image
    assert torch.allclose(results[0][1], results[1][1], atol=1e-4)
    # the overshoot puts each image clearly past the boundary, not on it
    with torch.no_grad():
        out = model(DeepFoolL2(model, steps=50)(x, y))
    margin = out.scatter(1, y[:, None], float("-inf")).amax(1) - out.gather(1, y[:, None]).squeeze(1)
    assert (margin > MARGIN_TOLERANCE).all()


def test_cw_margin_sees_negative_target_logits():
    attack = CarliniWagnerL2(torch.nn.Linear(2, 3), steps=1)
    attack.set_mode_targeted_by_label(quiet=True)
    attack._const = torch.ones(1)
    logits = torch.tensor([[-1.0, -3.0, -2.0]], requires_grad=True)
    margin = attack.f(logits, torch.tensor([2]))
    assert float(margin.detach()) == pytest.approx(1.0)  # best other (-1) minus target (-2); a 0-masked target reads 2
    margin.backward()
    assert logits.grad.tolist() == [[1.0, 0.0, -1.0]]


def test_targeted_cw_reaches_least_likely_targets_and_search_shrinks_the_norm():
    model = demo_model()
    x, y = demo_images(16)
    with torch.no_grad():
        logits = model(x)
    keep = logits.argmax(1) == y
    x, y, logits = x[keep], y[keep], logits[keep]
    targets = logits.argmin(1)
    attack = CarliniWagnerL2(model, steps=100, search_steps=2, initial_const=100.0)
    attack.set_mode_targeted_by_label(quiet=True)
    adv = attack(x, targets)
    with torch.no_grad():
        hit = model(adv).argmax(1) == targets
    assert hit.float().mean() > 0.2  # torchattacks.CW reaches none of them here, at c = 1, 10 or 100
    fixed = CarliniWagnerL2(model, steps=100, search_steps=1, initial_const=1e4)  # one round at a large c
    fixed.set_mode_targeted_by_label(quiet=True)
    adv_fixed = fixed(x, targets)
    with torch.no_grad():
        both = hit & (model(adv_fixed).argmax(1) == targets)
    norm = (adv - x).flatten(1).norm(dim=1)
    norm_fixed = (adv_fixed - x).flatten(1).norm(dim=1)
    assert both.any() and norm[both].mean() < norm_fixed[both].mean()


def test_cw_and_deepfool_budgets_are_pinned():
    cw, deepfool = get_spec("cw"), get_spec("deepfool")
    assert (cw.default_steps, cw.reference_steps, cw.bounded, cw.targeted) == (100, 10000, False, True)
    assert not cw.is_standard(100) and not cw.is_standard(1000) and cw.is_standard(10000)
    assert (deepfool.default_steps, deepfool.reference_steps, deepfool.bounded) == (50, 50, False)
    assert get_spec("fgsm").budget_mode == "independent" and get_spec("pgd").budget_mode == "cumulative"
    assert cw.budget_mode == "minimal"


def test_runner_reports_fgsm_per_budget_as_separate_attacks():
    base = dict(model=str(ASSETS / "fashion_cnn_adv.safetensors"), arch=ARCH, data="demo", classes="fashion-mnist",
                attacks=["fgsm"], samples=60, device="cpu", batch_size=32, layers="none", checks=False)
    listed = run_audit(AuditConfig(**base, eps="0.1,0.3")).attacks
    alone = [run_audit(AuditConfig(**base, eps=e)).attacks[0] for e in ("0.1", "0.3")]
    for a, b in zip(listed, alone, strict=True):
        assert a["robust_accuracy"] == b["robust_accuracy"] and a["perturbation"] == b["perturbation"]
        assert a["budget_mode"] == "independent" and not a["cascade"]
    # each entry's perturbation statistics cover its own budget only
    assert listed[1]["perturbation"]["linf_mean"] == pytest.approx(0.3, abs=1e-5)


def test_cascade_entry_statistics_exclude_smaller_budgets_adversarials():
    from tests.test_attacks import micro_batch

    model, x, y, logits = micro_batch(32)
    outs = list(run_cascade(get_spec("pgd"), model, x, y, logits, [0.08, 0.3], steps=10, num_classes=4, seed=0))
    small, large = outs
    assert small.found.any() and large.found.any()
    assert not (small.found & large.found).any()
    delta = (large.x_adv - x).flatten(1).abs().amax(1)
    assert (delta[small.found] <= 0.08 + 1e-6).all()  # kept from the smaller budget...
    assert (delta[large.found] > 0.08).any()  # ...while the new ones use the larger ball
