"""Guards the reported numbers rest on: projection before evaluation, eval mode, warnings that reach the report,
attacks that stay inside their threat model, seeded random starts, and agreement with direct attack calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

import audit.engine.runner
from attacks.cascade import run_cascade
from attacks.registry import L2_DEFAULT_EPS, LINF_DEFAULT_EPS, REGISTRY, AttackSpec, get_spec
from audit import AuditConfig, run_audit
from audit.errors import AuditError
from audit.model.probing import PROBABILITIES_WARNING
from audit_inputs import write_inputs
from audit.analyses.base import Analysis


@pytest.fixture
def inputs(tmp_path):
    return write_inputs(tmp_path)


def config(inputs, net="Net", **kw) -> AuditConfig:
    base = dict(model=str(inputs["weights"]), arch=f"{inputs['arch']}:{net}", data=str(inputs["data"]),
                attacks=["fgsm"], eps="0.01", samples="all", batch_size=8, device="cpu")
    return AuditConfig(**{**base, **kw})


def micro_cnn(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, classes)).eval()


def micro_batch(n: int = 8):
    model = micro_cnn()
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(x)
    return model, x, logits.argmax(1), logits


# --- projection before evaluation ---------------------------------------------------------------------------


class MeanThreshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5, else class 0."""

    def forward(self, x):
        s = 10 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([-s, s], dim=1)


class Overshoot:
    """An 'attack' that adds 0.6 to every pixel: far outside a small eps-ball, and past 1 where x > 0.4."""

    def __call__(self, x, labels):
        return x + 0.6


def overshoot_spec(norm: str) -> AttackSpec:
    return AttackSpec(name="overshoot", title="adds 0.6 everywhere", norm=norm, bounded=True, gradient=True,
                      targeted=False, default_steps=None, reference_steps=None, steps_unit="", reference="none",
                      build=lambda _args: Overshoot())


@pytest.mark.parametrize("norm,eps", [("Linf", 0.1), ("L2", 0.4)])
def test_adversarials_outside_the_threat_model_are_recorded_then_projected(norm, eps):
    x = 0.4 + 0.1 * torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    model = MeanThreshold()
    y = torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        logits = model(x)
    assert (logits.argmax(1) == y).all()
    [out] = run_cascade(overshoot_spec(norm), model, x, y, logits, [eps], steps=None, num_classes=2, seed=0)
    # what was recorded: the raw excursion, computed here from the shift of 0.6 in each of the 16 pixels
    raw_size = 0.6 if norm == "Linf" else 0.6 * 4
    assert out.eps_violation == pytest.approx(raw_size - eps, abs=1e-5)
    assert out.box_violation == pytest.approx(float(x.max()) + 0.6 - 1, abs=1e-5) and out.box_violation > 0
    # what was evaluated: the projection, x + eps in every pixel (Linf) or x + eps / 4 (L2, 16 pixels)
    expected = x + (eps if norm == "Linf" else eps / 4)
    assert torch.allclose(out.x_adv, expected, atol=1e-6)
    assert out.goal.all()  # the projected points still cross 0.5: they are what the logits belong to
    assert torch.allclose(out.logits, model(expected), atol=1e-5)


# --- every bounded attack stays inside its threat model before any projection ------------------------------


BOUNDED = sorted(name for name, spec in REGISTRY.items() if spec.bounded)


@pytest.mark.parametrize("name", BOUNDED)
def test_every_bounded_attack_stays_inside_its_ball_before_projection(name):
    model, x, y, logits = micro_batch()
    spec = REGISTRY[name]
    eps = 0.1 if spec.norm == "Linf" else 0.4
    steps = {"square": 50, "autoattack": 2}.get(name, 4 if spec.default_steps else None)
    [out] = run_cascade(spec, model, x, y, logits, [eps], steps=steps, num_classes=4, seed=0)
    assert out.attacked == len(y)
    assert out.eps_violation <= 1e-4 and out.box_violation <= 1e-4


# --- seeding ------------------------------------------------------------------------------------------------


def cascade_adversarials(name: str, seed: int, global_seed: int) -> torch.Tensor:
    model, x, y, logits = micro_batch()
    torch.manual_seed(global_seed)  # the global generator's state must not matter, only the seed
    steps = {"square": 40}.get(name, 10)
    [out] = run_cascade(get_spec(name), model, x, y, logits, [0.3], steps=steps, num_classes=4, seed=seed)
    return out.x_adv


@pytest.mark.parametrize("name", ["pgd", "apgd", "square"])
def test_the_seed_drives_the_random_starts(name):
    first = cascade_adversarials(name, seed=3, global_seed=1)
    assert torch.equal(first, cascade_adversarials(name, seed=3, global_seed=2))
    assert not torch.equal(first, cascade_adversarials(name, seed=4, global_seed=1))


# --- the cascade against direct torchattacks calls ----------------------------------------------------------


class Linear2(nn.Module):
    """A binary linear classifier: 20-step PGD from any random start ends at the optimal corner of the ball."""

    def __init__(self, dim: int = 12):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([-s / 2, s / 2], dim=1)


def direct_pgd_robust(model, x, y, eps, steps) -> int:
    adv = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)(x, y)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        return int((clean & (model(adv).argmax(1) == y)).sum())


def cascade_robust(model, x, y, budgets, steps, seed=0) -> list[int]:
    with torch.no_grad():
        logits = model(x)
    outs = run_cascade(get_spec("pgd"), model, x, y, logits, budgets, steps=steps, num_classes=logits.shape[1],
                       seed=seed)
    return [int((o.logits.argmax(1) == y).sum()) for o in outs]


def test_pgd_curve_equals_direct_torchattacks_and_the_closed_form_on_a_linear_model(numerics):
    model = Linear2().eval()
    x = torch.rand(64, 1, 1, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    budgets = [0.01, 0.03, 0.05, 0.1, 0.2]
    # the optimal Linf attack on a linear score: every pixel steps eps against the class, clipped to [0, 1]
    w = model.w.detach()
    toward = torch.where(y == 1, -1.0, 1.0).view(-1, 1)
    scores = [(x.flatten(1) + eps * toward * w.sign()).clamp(0, 1) @ w for eps in budgets]
    # three computations of each score (closed form, the cascade, torchattacks) round differently: the counts
    # are compared exactly because no clean or adversarial score lies within rounding of the boundary
    assert min(float(s.abs().min()) for s in [*scores, x.flatten(1) @ w]) > 1e-4
    closed = [int(((s > 0).long() == y).sum()) for s in scores]
    direct = [direct_pgd_robust(model, x, y, eps, 20) for eps in budgets]
    assert cascade_robust(model, x, y, budgets, 20) == direct == closed
    assert closed[0] > closed[-1] > 0


def test_pgd_curve_matches_direct_torchattacks_on_a_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 4)).eval()
    x = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    budgets = [0.02, 0.05, 0.1, 0.2]
    # random starts move a few borderline images of 48 either way (26..29 robust at eps 0.1 over ten seeds of
    # either), so compare means over seeds
    direct, cascade = [], []
    for seed in range(4):
        torch.manual_seed(seed)
        direct.append([direct_pgd_robust(model, x, y, eps, 20) for eps in budgets])
        cascade.append(cascade_robust(model, x, y, budgets, 20, seed=seed))
    direct, cascade = np.mean(direct, axis=0), np.mean(cascade, axis=0)
    assert np.abs(direct - cascade).max() <= 1.5
    assert direct[0] > direct[2] > direct[-1]


# --- registry budgets ---------------------------------------------------------------------------------------


def test_default_and_reference_budgets_are_pinned():
    # (default steps, reference steps); cw and deepfool are left to their own tests
    expected = {"fgsm": (None, None), "pgd": (40, 40), "pgdl2": (40, 40), "mifgsm": (10, 10),
                "apgd": (100, 100), "apgdt": (100, 100), "square": (5000, 5000), "fab": (100, 100),
                "autoattack": (10, 100), "autoattack-fast": (100, 100)}
    assert set(REGISTRY) - {"cw", "deepfool"} == set(expected)
    assert {n: (REGISTRY[n].default_steps, REGISTRY[n].reference_steps) for n in expected} == expected
    assert LINF_DEFAULT_EPS == 8 / 255 and L2_DEFAULT_EPS == 0.5
    assert get_spec("pgd").default_eps == 8 / 255 and get_spec("pgdl2").default_eps == 0.5


# --- whole audits on a user's files -------------------------------------------------------------------------


def fgsm_by_hand(net, x, y, eps):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def test_the_audit_runs_the_model_in_eval_mode_and_gives_its_flags_back(inputs, monkeypatch):
    loaded = []
    real = audit.engine.runner.load_model
    monkeypatch.setattr(audit.engine.runner, "load_model", lambda *a, **kw: loaded.append(real(*a, **kw)) or loaded[-1])
    result = run_audit(config(inputs))

    net, x, y = inputs["net"].eval(), inputs["x"], inputs["y"]
    adv = fgsm_by_hand(net, x, y, 0.01)
    with torch.no_grad():
        clean = net(x).argmax(1) == y
        robust = clean & (net(adv).argmax(1) == y)
        net.train()
        assert not torch.equal(net(x), net.eval()(x))  # the test can fail: train mode answers differently
    assert result.clean["n_correct"] == int(clean.sum()) == 16
    assert result.attacks[0]["robust_accuracy"] * len(y) == pytest.approx(int(robust.sum()))
    assert 0 < int(robust.sum()) < 16

    flags = {name: m.training for name, m in loaded[0].module.named_modules()}
    assert flags == {"": True, "conv": True, "bn": True, "drop": True, "head_drop": False, "fc": True}


def test_a_probability_output_warns_in_the_written_report(inputs, tmp_path):
    from audit.outputs import write_outputs

    result = run_audit(config(inputs, net="Probabilities"))
    assert result.model["output_kind"] == "probabilities"
    assert PROBABILITIES_WARNING in result.warnings
    report = json.loads(write_outputs(result, tmp_path / "out", html=False).read_text())
    assert PROBABILITIES_WARNING in report["warnings"]


def test_output_key_picks_the_logits_of_a_dict_output(inputs):
    with pytest.raises(AuditError, match="--output-key"):
        run_audit(config(inputs, net="Scores"))
    result = run_audit(config(inputs, net="Scores", output_key="scores"))
    assert result.model["output_type"] == "dict[scores]"
    assert result.clean["n_correct"] == 16  # the same numbers as the plain network's logits


def test_a_label_beyond_the_models_classes_is_one_clear_error(inputs, tmp_path):
    data = tmp_path / "bad_labels.npz"
    y = inputs["y"].numpy().copy()
    y[5] = 3  # the network has 3 classes: 0, 1, 2
    np.savez(data, x=inputs["x"].numpy(), y=y)
    with pytest.raises(AuditError) as excinfo:
        run_audit(config(inputs, data=str(data)))
    message = str(excinfo.value)
    assert "\n" not in message and "label 3" in message and "3 classes" in message


def adversarial_batches(inputs, seed):
    class Keep(Analysis):
        def __init__(self):
            self.x_adv = []

        def on_adversarial(self, run, batch):
            self.x_adv.append(batch.x)

    keep = Keep()
    result = run_audit(config(inputs, attacks=["pgd"], eps="0.01,0.03", steps=3, seed=seed), analyses=[keep])
    return result, torch.cat(keep.x_adv)


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if "time" not in k and not k.endswith("_s")}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def test_an_audit_with_random_starts_is_reproduced_by_its_seed(inputs):
    a, adv_a = adversarial_batches(inputs, seed=1)
    b, adv_b = adversarial_batches(inputs, seed=1)
    c, adv_c = adversarial_batches(inputs, seed=2)
    assert torch.equal(adv_a, adv_b) and without_timing(a.attacks) == without_timing(b.attacks)
    assert a.clean == c.clean  # the same images ("all" samples): only the random starts differ
    assert not torch.equal(adv_a, adv_c) and without_timing(a.attacks) != without_timing(c.attacks)
