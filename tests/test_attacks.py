"""The attack registry, eps parsing, the eps cascade and its validity checks, on micro models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.cascade import run_cascade
from attacks.passes import count_passes
from attacks.registry import REGISTRY, AttackSpec, BuildArgs, get_spec
from attacks.threat_model import project, violations
from audit.options import parse_eps_list, parse_eps_value
from audit.errors import AuditError
from audit.engine.targets import choose_targets

REQUIRED = {"fgsm", "pgd", "pgdl2", "mifgsm", "apgd", "apgdt", "square", "cw", "deepfool", "fab", "autoattack"}


class Linear2(nn.Module):
    """A binary linear classifier: FGSM is the exact Linf attack on it, so larger budgets never break less."""

    def __init__(self, dim=12, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(dim, generator=g))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s / 2, s / 2], dim=1)


class MicroCNN(nn.Module):
    def __init__(self, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, classes))

    def forward(self, x):
        return self.body(x)


def linear_data(n=64, dim=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 1, dim, generator=g)
    model = Linear2(dim)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample starts correctly classified
    return model.eval(), x, y


def curve(spec_name, model, x, y, budgets, **kw):
    with torch.no_grad():
        logits = model(x)
    out = list(run_cascade(get_spec(spec_name), model, x, y, logits, budgets, num_classes=logits.shape[1],
                           seed=0, steps=kw.pop("steps", None), **kw))
    return [int((o.logits.argmax(1) == y).sum()) for o in out], out


def test_registry_has_the_required_attacks_with_documented_defaults():
    assert set(REGISTRY) >= REQUIRED
    for spec in REGISTRY.values():
        assert spec.norm in ("Linf", "L2")
        assert spec.reference and spec.threat_model
        assert (spec.default_eps is None) == (not spec.bounded)
    assert get_spec("PGD").name == "pgd"
    with pytest.raises(AuditError, match="unknown attack 'pgx'"):
        get_spec("pgx")


def test_attack_specs_and_build_arguments_are_keyword_only():
    """The registry reads as data: a spec's flags (bounded, gradient, targeted) are never passed by position."""
    pgd = get_spec("pgd")
    fields = dict(name="x", title="x", norm="Linf", bounded=True, gradient=True, targeted=True, default_steps=None,
                  reference_steps=None, steps_unit="", reference="x", build=pgd.build)
    assert AttackSpec(**fields).threat_model == pgd.threat_model  # by keyword: accepted
    with pytest.raises(TypeError):
        AttackSpec(*fields.values())
    with pytest.raises(TypeError):
        BuildArgs(nn.Identity(), 0.1, 10, 2, 0)
    assert BuildArgs(model=nn.Identity(), eps=0.1, steps=10, num_classes=2, seed=0).steps == 10


def test_budget_labels_non_standard_below_reference():
    assert not get_spec("autoattack").is_standard(get_spec("autoattack").default_steps)  # torchattacks' 10 steps
    assert get_spec("autoattack").is_standard(100)
    assert get_spec("pgd").is_standard(40) and not get_spec("pgd").is_standard(10)
    assert get_spec("fgsm").is_standard(None)


@pytest.mark.parametrize("text,expected", [
    ("0.3", [0.3]), ("8/255", [8 / 255]), ("8/255,2/255, 4/255", [2 / 255, 4 / 255, 8 / 255]),
    (["0.1", "0.05,0.1"], [0.05, 0.1]),
])
def test_eps_lists_parse_sorted_and_deduplicated(text, expected):
    assert [v for v, _ in parse_eps_list(text)] == pytest.approx(expected)


def test_eps_keeps_the_users_spelling():
    assert parse_eps_list("8/255,0.1") == [(0.1, "0.1"), (8 / 255, "8/255")] or \
        parse_eps_list("8/255,0.1") == [(8 / 255, "8/255"), (0.1, "0.1")]
    assert parse_eps_list("4/255")[0][1] == "4/255"


@pytest.mark.parametrize("bad", ["", "abc", "1/0", "-0.1", "0", "inf", "8/", "1,,2"])
def test_bad_eps_is_one_clear_error(bad):
    with pytest.raises(AuditError, match="--eps"):
        parse_eps_list(bad) if "," in bad or not bad else parse_eps_value(bad)


def test_one_shot_fgsm_runs_independently_at_every_budget():
    model, x, y = linear_data()
    budgets = [0.01, 0.03, 0.05, 0.1, 0.2]
    listed, outs = curve("fgsm", model, x, y, budgets)
    independent = [curve("fgsm", model, x, y, [eps])[0][0] for eps in budgets]
    assert listed == independent
    assert listed[0] > listed[-1]  # the curve is not flat: the test can fail
    assert [o.attacked for o in outs] == [len(y)] * len(budgets)  # every budget attacks every sample
    assert all(torch.equal(o.found, o.logits.argmax(1) != y) for o in outs)  # each budget's own adversarials


def test_cumulative_attacks_attack_only_the_survivors():
    model, x, y = linear_data()
    budgets = [0.01, 0.03, 0.05, 0.1, 0.2]
    robust, outs = curve("pgd", model, x, y, budgets, steps=10)
    assert robust[0] > robust[-1]
    assert [o.attacked for o in outs] == [len(y)] + robust[:-1]
    # an entry's perturbation statistics cover the adversarials found at its own budget
    found = [int(o.found.sum()) for o in outs]
    assert found == [len(y) - robust[0]] + [a - b for a, b in zip(robust, robust[1:], strict=False)]


def test_cascade_curve_matches_independent_pgd_on_a_cnn():
    torch.manual_seed(0)
    model = MicroCNN().eval()
    x = torch.rand(48, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    budgets = [0.02, 0.05, 0.1, 0.2]
    cascade, outs = curve("pgd", model, x, y, budgets, steps=20)
    independent = [curve("pgd", model, x, y, [eps], steps=20)[0][0] for eps in budgets]
    assert max(abs(a - b) for a, b in zip(cascade, independent, strict=False)) <= 1
    assert cascade[0] > cascade[-1]
    assert sum(o.forward for o in outs) < sum(len(y) * 21 for _ in budgets)  # survivors only: cheaper


def test_adversarials_are_inside_the_ball_and_box_and_counted():
    model, x, y = linear_data()
    _, outs = curve("pgd", model, x, y, [0.05], steps=5)
    o = outs[0]
    assert (o.x_adv - x).abs().max() <= 0.05 + 1e-6
    assert o.x_adv.min() >= 0 and o.x_adv.max() <= 1
    assert o.forward >= 5 * o.attacked and o.backward >= 5 * o.attacked
    assert o.eps_violation <= 1e-6 and o.box_violation == 0


def test_violations_are_measured_and_projection_repairs_them():
    x = torch.full((2, 1, 2, 2), 0.5)
    bad = x.clone()
    bad[0, 0, 0, 0] = 0.9  # 0.3 beyond the 0.1 ball
    bad[1, 0, 0, 0] = 1.2  # 0.6 beyond the ball and 0.2 outside the box
    eps_excess, box_excess = violations(x, bad, 0.1, "Linf")
    assert eps_excess == pytest.approx(0.6) and box_excess == pytest.approx(0.2)
    fixed = project(x, bad, 0.1, "Linf")
    assert max(violations(x, fixed, 0.1, "Linf")) < 1e-6  # float rounding only
    l2 = project(x, bad, 0.1, "L2")
    assert (l2 - x).flatten(1).norm(dim=1).max() <= 0.1 + 1e-6


def test_pass_counter_counts_images_and_removes_its_hook():
    model = MicroCNN()
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    with count_passes(model) as counter:
        model(x).sum().backward()
        with torch.no_grad():
            model(x)
    assert (counter.forward, counter.backward) == (10, 5)
    assert not model._forward_hooks


def micro_batch(n: int):
    """A 4-class micro CNN and n random images labelled with its own predictions (all clean-correct)."""
    torch.manual_seed(0)
    model = MicroCNN(classes=4).eval()
    x = torch.rand(n, 1, 8, 8)
    with torch.no_grad():
        logits = model(x)
    return model, x, logits.argmax(1), logits


def test_targeted_cascade_reaches_the_targets():
    model, x, y, logits = micro_batch(32)
    targets = choose_targets("random", logits, y, seed=3, offset=0)
    assert (targets != y).all()
    outs = list(run_cascade(get_spec("pgd"), model, x, y, logits, [0.05, 0.3], steps=20, num_classes=4, seed=0,
                            targets=targets))
    hit = outs[-1].logits.argmax(1) == targets
    assert torch.equal(hit, outs[-1].goal)
    assert hit.float().mean() > 0.5


def test_targets_are_stable_across_batch_sizes_and_least_likely_is_the_minimum():
    logits = torch.randn(10, 5)
    y = logits.argmax(1)
    whole = choose_targets("random", logits, y, seed=7, offset=0)
    halves = torch.cat([choose_targets("random", logits[:4], y[:4], 7, 0),
                        choose_targets("random", logits[4:], y[4:], 7, 4)])
    assert torch.equal(whole, halves)
    assert torch.equal(choose_targets("least-likely", logits, y, 0, 0), logits.argmin(1))
    assert choose_targets(None, logits, y, 0, 0) is None


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_attack_runs_and_respects_its_threat_model(name):
    model, x, y, logits = micro_batch(6)
    spec = get_spec(name)
    eps = spec.default_eps
    steps = {"square": 50, "autoattack": 2}.get(name, 3 if spec.default_steps else None)
    outs = list(run_cascade(spec, model, x, y, logits, [eps], steps=steps, num_classes=4, seed=0))
    o = outs[0]
    assert o.x_adv.shape == x.shape and o.attacked == 6
    assert o.x_adv.min() >= 0 and o.x_adv.max() <= 1
    if eps is not None:
        size = (o.x_adv - x).flatten(1)
        size = size.abs().amax(1) if spec.norm == "Linf" else size.norm(dim=1)
        assert size.max() <= eps + 1e-5
    assert o.forward > 0


def entry(name, eps, robust, steps=40, eps_violation=0.0, box_violation=0.0):
    return {"name": name, "eps": eps, "eps_text": str(eps), "norm": "Linf", "robust_accuracy": robust,
            "steps": steps, "checks": {"max_eps_violation": eps_violation, "max_box_violation": box_violation}}


def test_checks_flag_an_iterative_attack_weaker_than_fgsm():
    from attacks.entry_checks import attack_warnings

    fine = [entry("fgsm", 0.1, 0.30, steps=None), entry("pgd", 0.1, 0.20)]
    assert attack_warnings(fine, 100) == []
    masked = [entry("fgsm", 0.1, 0.30, steps=None), entry("pgd", 0.1, 0.45), entry("pgd", 0.2, 0.9)]
    warnings = attack_warnings(masked, 100)
    assert len(warnings) == 1 and "pgd at eps 0.1" in warnings[0] and "45.0% vs 30.0%" in warnings[0]
    assert attack_warnings([entry("fgsm", 0.1, 0.30, steps=None), entry("pgd", 0.1, 0.305)], 100) == []


def test_checks_flag_adversarials_outside_the_threat_model():
    from attacks.entry_checks import attack_warnings

    warnings = attack_warnings([entry("fab", 0.03, 0.5, eps_violation=0.02)], 10)
    assert len(warnings) == 1 and "outside its threat model" in warnings[0]
    assert attack_warnings([entry("fab", 0.03, 0.5, eps_violation=3e-8)], 10) == []
