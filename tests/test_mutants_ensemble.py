"""What the ``autoattack-fast`` ensemble hands to each stage, and how it books what they did: the targets, losses
and random streams of the APGD calls, Square's budget, the per-component sums (found untested by mutation)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torchattacks

import attacks.ensemble as ensemble
from attacks.apgd import apgd
from attacks.ensemble import FastEnsemble, describe

C, N, STEPS = 10, 12, 3


@pytest.fixture
def micro():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, C)).eval()
    x = torch.rand(N, 1, 4, 4)
    with torch.no_grad():
        logits = model(x)
    return model, x, logits.argmax(1), logits


def ranked_targets(logits, y):
    """A literal ranking: for each sample the other classes, most likely first."""
    rows = []
    for scores, label in zip(logits.tolist(), y.tolist(), strict=True):
        rows.append([c for c in sorted(range(len(scores)), key=lambda c: -scores[c]) if c != label])
    return rows


@pytest.fixture
def calls(monkeypatch):
    """Record every APGD call of the ensemble, then run the real attack."""
    seen = []

    def spy(model, x, y, eps, steps, *, loss="ce", target=None, generator=None):
        seen.append({"n": len(x), "eps": eps, "steps": steps, "loss": loss,
                     "target": None if target is None else target.tolist(),
                     "seed": None if generator is None else generator.initial_seed()})
        return apgd(model, x, y, eps, steps, loss=loss, target=target, generator=generator)

    monkeypatch.setattr(ensemble, "apgd", spy)
    return seen


def test_apgd_t_attacks_the_ranked_classes_one_after_another_with_the_targeted_loss(micro, calls, one_thread):
    model, x, y, logits = micro
    attack = FastEnsemble(model, eps=1e-4, steps=STEPS, num_classes=C, seed=0)  # too small to break anything
    attack(x, y)
    assert len(calls) == 1 + 9 and all(c["n"] == N and c["eps"] == 1e-4 and c["steps"] == STEPS for c in calls)
    assert (calls[0]["loss"], calls[0]["target"]) == ("ce", None)
    ranked = ranked_targets(logits, y)
    for rank, call in enumerate(calls[1:], start=1):
        assert call["loss"] == "dlr-targeted"
        assert call["target"] == [row[rank - 1] for row in ranked]
    seeds = [c["seed"] for c in calls]
    assert None not in seeds and len(set(seeds)) == len(seeds)  # each stage its own reproducible stream
    calls.clear()
    FastEnsemble(model, eps=1e-4, steps=STEPS, num_classes=C, seed=1)(x, y)
    assert not set(seeds) & {c["seed"] for c in calls}  # another seed, other streams


def test_nothing_broken_every_stage_books_its_passes(micro, calls, monkeypatch, one_thread):
    model, x, y, _ = micro
    clock = itertools.count()
    monkeypatch.setattr(ensemble, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    attack = FastEnsemble(model, eps=1e-4, steps=STEPS, num_classes=C)
    attack(x, y)
    rec = {r["name"]: r for r in attack.record}
    assert rec["apgd-ce"] == {"name": "apgd-ce", "attacked": N, "broken": 0, "forward": N * (STEPS + 1),
                              "backward": N * (STEPS + 1), "seconds": 1.0}
    assert rec["apgd-t"] == {"name": "apgd-t", "attacked": N, "broken": 0, "forward": 9 * N * (STEPS + 1),
                             "backward": 9 * N * (STEPS + 1), "seconds": 9.0}  # the 9 targets add up
    assert (rec["square"]["attacked"], rec["square"]["broken"], rec["square"]["seconds"]) == (N, 0, 1.0)


def fake_apgd(fool):
    """An APGD stand-in that reports the samples ``fool(x)`` selects as broken (at the clean point)."""
    def run(model, x, y, eps, steps, *, loss="ce", target=None, generator=None):
        return x.clone(), fool(x), torch.zeros(len(x), dtype=torch.long)
    return run


def test_breaks_at_several_targets_add_up(micro, monkeypatch, one_thread):
    model, x, y, _ = micro
    first_only = fake_apgd(lambda x: torch.arange(len(x)) == 0)  # every stage breaks one sample
    monkeypatch.setattr(ensemble, "apgd", first_only)
    attack = FastEnsemble(model, eps=1e-4, steps=STEPS, num_classes=C)
    attack(x, y)
    rec = {r["name"]: r for r in attack.record}
    assert (rec["apgd-ce"]["attacked"], rec["apgd-ce"]["broken"]) == (N, 1)
    assert (rec["apgd-t"]["attacked"], rec["apgd-t"]["broken"]) == (N - 1, 9)
    assert rec["square"]["attacked"] == N - 10


def test_when_apgd_ce_breaks_everything_the_later_stages_attack_nothing(micro, monkeypatch, one_thread):
    model, x, y, _ = micro
    monkeypatch.setattr(ensemble, "apgd", fake_apgd(lambda x: torch.ones(len(x), dtype=torch.bool)))
    attack = FastEnsemble(model, eps=1e-4, steps=STEPS, num_classes=C)
    attack(x, y)
    got = [(r["name"], r["attacked"], r["broken"], r["forward"]) for r in attack.record]
    assert got == [("apgd-ce", N, N, 0), ("apgd-t", 0, 0, 0), ("square", 0, 0, 0)]


def test_square_runs_with_the_stated_budget(micro, monkeypatch, one_thread):
    model, x, y, _ = micro
    made = []

    def square(*args, **kwargs):
        made.append(torchattacks.Square(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ensemble, "torchattacks", SimpleNamespace(Square=square))
    FastEnsemble(model, eps=0.02, steps=STEPS, num_classes=C, seed=7)._square(x, y)
    sq = made[0]
    assert (sq.norm, sq.eps, sq.n_queries, sq.n_restarts, sq.seed) == ("Linf", 0.02, 20 * STEPS, 1, 7)


def test_the_defaults_are_autoattacks_budget():
    attack = FastEnsemble(torch.nn.Linear(2, 2), eps=0.1)
    assert (attack.steps, attack.num_classes, attack.targets, attack.seed, attack.record) == (100, 10, 9, 0, [])
    assert repr(attack).startswith("FastEnsemble(")


def test_describe_reports_every_sum_of_every_component():
    sums = {"apgd-ce": {"attacked": 10, "broken": 4, "forward": 31, "backward": 29, "seconds": 1.5},
            "apgd-t": {"attacked": 6, "broken": 2, "forward": 53, "backward": 47, "seconds": 2.5},
            "square": {"attacked": 4, "broken": 1, "forward": 71, "backward": 0, "seconds": 3.5}}
    d = describe(7, 10, sums)
    assert d["stops_early"] is True
    got = {c["name"]: (c["attacked"], c["broken"], c["forward_passes"], c["backward_passes"], c["wall_time_s"])
           for c in d["components"]}
    assert got == {name: (s["attacked"], s["broken"], s["forward"], s["backward"], s["seconds"])
                   for name, s in sums.items()}
    assert [c["budget"] for c in d["components"]] == ["7 steps", "9 targets x 7 steps", "140 queries"]
    empty = describe(7, 10, {})["components"][0]
    assert (empty["attacked"], empty["broken"], empty["forward_passes"], empty["backward_passes"],
            empty["wall_time_s"]) == (0, 0, 0, 0, 0.0)


def test_apgd_names_the_bad_loss():
    with pytest.raises(ValueError, match="unknown loss 'dlr'"):
        apgd(lambda v: v.flatten(1), torch.zeros(1, 1, 2, 2), torch.tensor([0]), 0.1, 5, loss="dlr")


def already_wrong(n):
    """A micro model and ``n`` images labelled with their least likely class: every one is misclassified."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.rand(n, 1, 4, 4)
    with torch.no_grad():
        return model, x, model(x).argmin(1)


def test_apgd_on_a_batch_that_breaks_entirely(one_thread):
    model, x, y = already_wrong(5)
    adv, fooled, used = apgd(model, x, y, 0.1, 10, generator=torch.Generator().manual_seed(0))
    assert fooled.all() and used.dtype == torch.long and used.tolist() == [0] * 5
    assert (adv - x).abs().max() <= 0.1 + 1e-7


def test_apgd_budget_edges(one_thread):
    """No step: nothing evaluated, nothing fooled. One step, and a single sample, still attack."""
    model, x, y = already_wrong(6)  # any evaluation reports them
    adv, fooled, used = apgd(model, x, y, 0.5, 0, generator=torch.Generator().manual_seed(0))
    assert not fooled.any() and torch.equal(adv, x) and not used.any()
    _, fooled, _ = apgd(model, x, y, 0.5, 1, generator=torch.Generator().manual_seed(0))
    assert fooled.all()
    _, fooled, _ = apgd(model, x[:1], y[:1], 0.5, 3, generator=torch.Generator().manual_seed(0))
    assert fooled.tolist() == [True]
