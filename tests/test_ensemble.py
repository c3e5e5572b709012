"""The early-stopping APGD and the ``autoattack-fast`` ensemble: the algorithm's schedule, the losses, stopping,
validity of every adversarial, agreement with torchattacks' APGD and with AutoAttack, and what the report says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchattacks

from attacks.apgd import apgd, checkpoints, dlr_targeted
from attacks.cascade import run_cascade
from attacks.entry_checks import ensemble_gradient_free, entry_checks
from attacks.ensemble import FastEnsemble, describe
from attacks.passes import count_passes
from attacks.registry import DEFAULT_ATTACK, get_spec
from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.engine.tallies import AttackTally
from reports.schema import ensemble_text, validate_report
from tests.test_numbers import NAMES, demo_images, demo_model, hand_batch, outcome


def clean_correct(model, n):
    x, y = demo_images(n)
    x = x.to(next(model.parameters()).dtype)  # float64 for a model in float64
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    return x[keep], y[keep]


def test_checkpoints_follow_autoattacks_schedule():
    # first check after 22% of the steps, intervals shrinking by 3% of the steps, never below 6%
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000)[:4] == [220, 410, 570, 700] and checkpoints(1000)[-1] <= 1000
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [1]


def test_targeted_dlr_loss_by_hand():
    logits = torch.tensor([[5.0, 3.0, 1.0, 0.0, -1.0], [0.0, 4.0, 2.0, 1.0, 1.0]])
    y, t = torch.tensor([0, 1]), torch.tensor([1, 2])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expected = [-(5 - 3) / (5 - (1 + 0) / 2), -(4 - 2) / (4 - (1 + 1) / 2)]
    assert dlr_targeted(logits, y, t).tolist() == pytest.approx(expected)
    # invariant to shifting and scaling the logits (the reason for the ratio)
    assert dlr_targeted(3 * logits + 7, y, t).tolist() == pytest.approx(expected)
    # reaching the target raises the loss above zero
    assert dlr_targeted(torch.tensor([[1.0, 2.0, 0.0, 0.0]]), torch.tensor([0]), torch.tensor([1])).item() > 0


def test_apgd_rejects_an_unknown_loss():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError):
        apgd(lambda v: v.flatten(1), x, torch.tensor([0]), 0.1, 5, loss="dlr")
    with pytest.raises(ValueError):
        apgd(lambda v: v.flatten(1), x, torch.tensor([0]), 0.1, 5, loss="dlr-targeted")  # no target


def test_apgd_is_valid_stops_early_and_matches_torchattacks(one_thread):
    model = demo_model()
    x, y = clean_correct(model, 64)
    eps, steps = 0.05, 20
    with count_passes(model) as counter:
        adv, fooled, used = apgd(model, x, y, eps, steps, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        pred = model(adv).argmax(1)
    assert (pred[fooled] != y[fooled]).all()  # every reported success is a misclassified point
    assert torch.equal(adv[~fooled], x[~fooled])  # the rest keep their clean image
    assert (used[fooled] < steps).any() and (used[~fooled] == steps).all()
    # one forward and one backward per sample and evaluated step, nothing after a sample is broken
    assert counter.backward == counter.forward == int((used + 1).sum())
    assert counter.backward < len(y) * (steps + 1)
    reference = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, loss="ce", seed=0)(x, y)
    with torch.no_grad():
        ref_fooled = model(reference).argmax(1) != y
    assert fooled.sum() >= ref_fooled.sum() - 2  # as strong as the reference implementation (different draws)
    assert (fooled & ref_fooled).sum() >= ref_fooled.sum() - 3


def test_apgd_targeted_loss_reaches_the_target_more_often(one_thread):
    model = demo_model()
    x, y = clean_correct(model, 40)
    with torch.no_grad():
        target = model(x).argsort(1, descending=True)[:, 1]
    g = torch.Generator().manual_seed(1)
    adv, fooled, _ = apgd(model, x, y, 0.03, 15, loss="dlr-targeted", target=target, generator=g)
    with torch.no_grad():
        pred = model(adv).argmax(1)
    assert fooled.any() and (pred[fooled] == target[fooled]).float().mean() > 0.5


def test_apgd_on_an_unbreakable_budget_runs_every_step(one_thread):
    model = demo_model()
    x, y = clean_correct(model, 8)
    with torch.no_grad():
        margin = model(x).sort(1).values
    x, y = x[(margin[:, -1] - margin[:, -2]) > 2], y[(margin[:, -1] - margin[:, -2]) > 2]
    adv, fooled, used = apgd(model, x, y, 1e-4, 6, generator=torch.Generator().manual_seed(0))
    assert len(y) and not fooled.any() and (used == 6).all() and torch.equal(adv, x)


def test_ensemble_targets_are_the_ranked_classes_other_than_the_label():
    order = torch.tensor([[3, 0, 2, 1], [0, 1, 2, 3]])  # first sample: the label (0) is not the top class
    y = torch.tensor([0, 0])
    assert FastEnsemble._target(order, y, 1).tolist() == [3, 1]
    assert FastEnsemble._target(order, y, 2).tolist() == [2, 2]
    assert FastEnsemble._target(order, y, 3).tolist() == [1, 3]


def test_ensemble_runs_its_components_in_order_on_the_survivors(one_thread):
    model = demo_model("fashion_cnn_adv.safetensors")
    x, y = clean_correct(model, 60)
    attack = FastEnsemble(model, eps=0.1, steps=8, num_classes=10, seed=0)
    adv = attack(x, y)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        broken = model(adv).argmax(1) != y
    rec = {r["name"]: r for r in attack.record}
    assert list(rec) == ["apgd-ce", "apgd-t", "square"]
    assert rec["apgd-ce"]["attacked"] == len(y)
    assert rec["apgd-t"]["attacked"] == len(y) - rec["apgd-ce"]["broken"]
    assert rec["square"]["attacked"] == rec["apgd-t"]["attacked"] - rec["apgd-t"]["broken"]
    assert sum(r["broken"] for r in rec.values()) == int(broken.sum()) > 0
    assert rec["square"]["backward"] == 0 and rec["square"]["forward"] > 0  # score-based: no gradients
    assert rec["apgd-t"]["backward"] > 0 and all(r["seconds"] >= 0 for r in rec.values())
    # the 9 targets add up into one component: at most 9 * (steps + 1) passes per attacked sample
    assert rec["apgd-t"]["backward"] <= rec["apgd-t"]["attacked"] * 9 * 9


def test_ensemble_is_at_least_as_strong_as_autoattack_on_the_robust_demo_cnn(one_thread):
    """Same images, same reduced budget: the fast ensemble leaves no more robust samples than AutoAttack."""
    model = demo_model("fashion_cnn_adv.safetensors")
    x, y = demo_images(40)
    with torch.no_grad():
        logits = model(x)
    robust = {}
    for name in ("autoattack", "autoattack-fast"):
        out = next(run_cascade(get_spec(name), model, x, y, logits, [0.1], steps=5, num_classes=10, seed=0))
        robust[name] = out.logits.argmax(1) == y
    assert robust["autoattack-fast"].sum() <= robust["autoattack"].sum()
    assert robust["autoattack-fast"].sum() < (logits.argmax(1) == y).sum()  # the attack did break something


def test_component_sums_merge_export_and_describe():
    batch = hand_batch()
    rec = [{"name": "apgd-ce", "attacked": 5, "broken": 2, "forward": 30, "backward": 30, "seconds": 1.0},
           {"name": "apgd-t", "attacked": 3, "broken": 1, "forward": 20, "backward": 20, "seconds": 2.0}]
    parts = [AttackTally(3), AttackTally(3)]
    for i, part in enumerate(parts):
        o = outcome(attacked=5)
        o.record = rec
        part.add(**batch, outcome=o, offset=6 * i)
    restored = AttackTally.restore(3, json.loads(json.dumps(parts[1].export(), default=np.ndarray.tolist)))
    parts[0].merge(restored)
    assert parts[0].components["apgd-ce"] == {"attacked": 10, "broken": 4, "forward": 60, "backward": 60,
                                              "seconds": 2.0}
    d = describe(100, 10, parts[0].components)
    assert "not AutoAttack" in d["label"]
    assert [c["name"] for c in d["components"]] == ["apgd-ce", "apgd-t", "square"]
    assert d["components"][1]["budget"] == "9 targets x 100 steps" and d["components"][2]["budget"] == "2000 queries"
    assert (d["components"][1]["broken"], d["components"][2]["attacked"]) == (2, 0)  # square never ran here
    line = ensemble_text({"name": "autoattack-fast", "eps_text": "8/255", "ensemble": d})
    assert line.startswith("autoattack-fast at eps 8/255 (this project's ensemble, not AutoAttack): apgd-ce")
    assert line.index("apgd-ce") < line.index("apgd-t") < line.index("square") and "broke 4 of 10" in line
    assert ensemble_text({"ensemble": None}) is None
    assert parts[0].summary(NAMES, budget_mode="cumulative")["n_attacked"] == 10


def test_few_classes_leave_few_targets_and_two_classes_none(one_thread):
    assert describe(10, 3, {})["components"][1]["budget"] == "2 targets x 10 steps"
    assert describe(10, 2, {})["components"][1]["budget"] == "0 targets x 10 steps"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x = torch.rand(6, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    attack = FastEnsemble(model, eps=0.05, steps=3, num_classes=2)
    adv = attack(x, y)
    assert (adv - x).abs().max() <= 0.05 + 1e-6
    assert [r["name"] for r in attack.record] == ["apgd-ce", "square"]


def test_an_audit_that_names_no_attack_runs_the_fast_ensemble(tmp_path, one_thread):
    config = AuditConfig(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo",
                         classes="fashion-mnist", eps="0.05", steps=4, samples="12", seed=0, device="cpu",
                         layers="none", saliency="none", checks=False,
                         gates=["robust_accuracy[autoattack-fast@0.05]<=1", "robust_accuracy[autoattack-fast@0.05]>1"])
    assert config.attacks == [DEFAULT_ATTACK] == ["autoattack-fast"]
    result = run_audit(config)
    assert [g["passed"] for g in result.verdict["gates"]] == [True, False]  # gates read the ensemble's entry
    entry = result.attacks[0]
    assert entry["name"] == "autoattack-fast" and "not AutoAttack" in entry["title"]
    parts = entry["ensemble"]["components"]
    assert [c["name"] for c in parts] == ["apgd-ce", "apgd-t", "square"]
    assert parts[0]["attacked"] == entry["n_attacked"]
    assert sum(c["broken"] for c in parts) == entry["n_success"]
    assert sum(c["backward_passes"] for c in parts) == entry["backward_passes"]
    validate_report(result.to_dict())


def ensemble_entry(eps, attacked, survivors, broken_by_square):
    parts = describe(100, 10, {"apgd-ce": {"attacked": attacked}, "square": {"attacked": survivors,
                                                                             "broken": broken_by_square}})
    return {"name": "autoattack-fast", "eps": eps, "eps_text": str(eps), "norm": "Linf", "ensemble": parts,
            "robust_accuracy": 0.5, "checks": {"max_eps_violation": 0.0, "max_box_violation": 0.0}}


@pytest.mark.parametrize(("broken", "status"), [(0, "pass"), (2, "warn"), (4, "warn"), (5, "fail")])
def test_the_ensembles_square_stage_is_the_gradient_free_check(broken, status):
    # 200 clean-correct samples: more than 2% (4) broken by Square after the gradient stages is masking
    small = ensemble_entry(0.05, 200, 150, 50)  # a smaller budget does not count: the largest one is read
    check = ensemble_gradient_free([small, ensemble_entry(0.1, 200, 120, broken)])
    assert check["name"] == "gradient_free_attack" and check["status"] == status
    assert (check["numbers"]["n_survivors"], check["numbers"]["broken"], check["numbers"]["eps"]) == (120, broken, 0.1)
    assert ensemble_gradient_free([{**small, "ensemble": None}]) is None
    names = [c["name"] for c in entry_checks([small, ensemble_entry(0.1, 200, 120, broken)], 300, True)]
    assert names.count("gradient_free_attack") == 1


def test_with_the_ensemble_the_audit_runs_no_separate_square_check(one_thread):
    config = AuditConfig(model=str(ASSETS / "fashion_cnn_adv.safetensors"), arch=ARCH, data="demo",
                         classes="fashion-mnist", eps="0.1", steps=3, samples="20", seed=0, device="cpu",
                         layers="none", saliency="none")
    result = run_audit(config)
    free = [c for c in result.checks if c["name"] == "gradient_free_attack"]
    assert len(free) == 1 and free[0]["numbers"]["source"] == "autoattack-fast"
    square = result.attacks[0]["ensemble"]["components"][2]
    assert free[0]["numbers"]["n_survivors"] == square["attacked"] > 0


# Rounding differs between the batched attack and the per-sample loop (and between CPUs): they sum in other
# orders. Both run in float64, where such differences are ~1e-15 of a logit, and the loop records how close each
# sample came to a decision going the other way (argmax, loss comparisons). Exact agreement is asserted for the
# samples whose every decision was clearer than DECISION_TOLERANCE; the rest are counted, and must be few. An exact
# tie of two losses is no knife edge: it comes from evaluating the same point again (a step clipped back onto the
# ball's corner), which each side computes identically, so ``>`` is false on both.
DECISION_TOLERANCE = 1e-9


def gap(a: float, b: float) -> float:
    return abs(a - b) if a != b else math.inf


def literal_apgd_first_hit(model, x, y, eps, steps, start, plateau=True):
    """APGD written out per sample, the whole schedule in plain Python: the step at which each sample is first
    misclassified (-1: never), and the smallest margin of any comparison that decided its path. ``start`` is the
    random start in [-1, 1], as the batched version draws it; ``plateau=False`` drops the second halving rule (no
    better loss since the last checkpoint)."""
    first, margins = [], []
    for i in range(len(x)):
        xi, yi = x[i:i + 1], y[i:i + 1]
        lo, hi = (xi - eps).clamp(0, 1), (xi + eps).clamp(0, 1)
        s = start[i:i + 1] / start[i].abs().max()
        cur = torch.min(torch.max(xi + eps * s, lo), hi)
        prev, eta, ups, last_mark, cut_last, best_last, hit = cur, 2 * eps, 0, 0, True, None, -1
        prev_loss = best = x_best = g_best = None
        closest = math.inf
        for k in range(steps + 1):
            v = cur.clone().requires_grad_(True)
            logits = model(v)
            loss = torch.nn.functional.cross_entropy(logits, yi)
            g, = torch.autograd.grad(loss, v)
            loss = loss.item()
            others = logits.detach()[0].clone()
            others[yi.item()] = -math.inf
            closest = min(closest, abs(logits[0, yi.item()].item() - others.max().item()))
            if logits.argmax(1).item() != yi.item():
                hit = k
                break
            if k == 0:
                best, x_best, g_best = loss, cur, g
            else:
                closest = min(closest, gap(loss, prev_loss), gap(loss, best))
                ups += loss > prev_loss
                if loss > best:
                    best, x_best, g_best = loss, cur, g
            prev_loss = loss
            if k == steps:
                break
            if k in checkpoints(steps):
                if plateau and not cut_last:
                    closest = min(closest, gap(best, best_last))
                cut = ups < 0.75 * (k - last_mark) or (plateau and not cut_last and best <= best_last)
                if cut:
                    eta, cur, g, prev = eta / 2, x_best, g_best, x_best
                ups, cut_last, best_last, last_mark = 0, cut, best, k
            z = torch.min(torch.max(cur + eta * g.sign(), lo), hi)
            a = 1.0 if k == 0 else 0.75
            prev, cur = cur, torch.min(torch.max(cur + a * (z - cur) + (1 - a) * (cur - prev), lo), hi)
        first.append(hit)
        margins.append(closest)
    return torch.tensor(first), torch.tensor(margins, dtype=torch.float64)


def robust_apgd(eps, steps, seed, numerics, n=80):
    """The robust demo CNN in float64 on the first ``n`` clean-correct images of 80, the random start that APGD
    draws from ``seed``, and what the batched APGD does from there (fooled, steps used). The batch is attacked in
    ``numerics.split`` consecutive parts with one generator, as the cascade attacks batches: the random start
    for the loop is drawn the same way."""
    model = demo_model("fashion_cnn_adv.safetensors").double()
    x, y = clean_correct(model, 80)
    x, y = x[:n], y[:n]
    parts = numerics.chunks(n)
    draw = torch.Generator().manual_seed(seed)
    start = torch.cat([torch.rand(x[p].shape, generator=draw).to(x) * 2 - 1 for p in parts])
    attack = torch.Generator().manual_seed(seed)
    results = [apgd(model, x[p], y[p], eps, steps, generator=attack) for p in parts]
    fooled, used = (torch.cat([r[i] for r in results]) for i in (1, 2))
    return model, x, y, start, fooled, used


def test_apgd_breaks_each_sample_at_the_step_a_literal_per_sample_loop_does(numerics):
    eps, steps = 0.12, 30
    model, x, y, start, fooled, used = robust_apgd(eps, steps, 5, numerics)
    first, margin = literal_apgd_first_hit(model, x, y, eps, steps, start)
    clear = margin > DECISION_TOLERANCE
    assert clear.sum() >= len(y) - 1, margin.tolist()  # at most one sample too close to call
    assert torch.equal(fooled[clear], first[clear] >= 0)
    assert torch.equal(used[clear & fooled], first[clear & fooled])
    late = first[clear & fooled] > checkpoints(steps)[1]  # broken after step sizes were reconsidered
    assert late.sum() >= 3, first.tolist()


def test_apgd_halves_the_step_when_the_best_loss_stalls(numerics):
    """A case where the second halving rule decides a sample's fate: without it, sample 0 breaks at step 20."""
    eps, steps = 0.1, 20
    model, x, y, start, fooled, used = robust_apgd(eps, steps, 0, numerics, n=1)
    without, margin_without = literal_apgd_first_hit(model, x, y, eps, steps, start, plateau=False)
    with_rule, margin = literal_apgd_first_hit(model, x, y, eps, steps, start)
    assert margin_without.item() > DECISION_TOLERANCE and margin.item() > DECISION_TOLERANCE
    assert without.tolist() == [20] and with_rule.tolist() == [-1]
    assert not fooled[0] and used[0] == steps


def test_apgd_applies_the_stall_rule_only_after_a_checkpoint_that_kept_its_step(numerics):
    """The second halving rule looks back one checkpoint: it fires when that checkpoint kept the step size and the
    best loss has not risen since. Here sample 0 breaks at step 18 that way (found with the literal loop)."""
    eps, steps = 0.12, 20
    model, x, y, start, fooled, used = robust_apgd(eps, steps, 5, numerics, n=1)
    first, margin = literal_apgd_first_hit(model, x, y, eps, steps, start)
    assert margin.item() > DECISION_TOLERANCE
    assert first.tolist() == [18]
    assert fooled.tolist() == [True] and used.tolist() == [18]
