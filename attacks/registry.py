"""Named attack specs over torchattacks, with documented defaults, threat models and reference budgets.

Every attack sees the model in [0, 1] pixel space (normalization lives inside the audited model), so ``eps``
is always a pixel-space budget. Step sizes scale with the budget (``alpha = 2.5 * eps / steps`` for PGD, after
Madry et al. 2018), so a 40-step PGD can reach the boundary of any eps-ball.

``reference_steps`` is the budget of the protocol an attack's published evaluation used; a run below it is
labelled non-standard in the report, because a reduced budget can report robustness that is not there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit.errors import AuditError

# The attack of an audit that names none: the fast ensemble, benchmarked against AutoAttack (README).
DEFAULT_ATTACK = "autoattack-fast"
LINF_DEFAULT_EPS = 8 / 255
L2_DEFAULT_EPS = 0.5
# Where the accuracy-vs-eps curve implied by a minimal-perturbation attack's norms is read (besides --eps).
MINIMAL_CURVE_EPS = {"L2": (0.1, 0.25, 0.5, 1.0, 2.0, 4.0), "Linf": (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)}
CW_SEARCH_STEPS = 9  # binary-search rounds over c; --steps sets the iterations of each round


@dataclass(frozen=True, kw_only=True)
class BuildArgs:
    """What a builder needs to make one torchattacks object for one budget."""

    model: object  # torch.nn.Module taking [0, 1] inputs
    eps: float | None
    steps: int | None
    num_classes: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class AttackSpec:
    """One attack of the registry, by keyword only (the table below reads as data: no flag passed by position)."""

    name: str
    title: str
    norm: str  # "Linf" or "L2"
    bounded: bool  # True: an eps-ball attack; False: a minimal-perturbation attack (no eps)
    gradient: bool  # white-box (gradients) or black-box (queries only)
    targeted: bool  # supports --targeted
    default_steps: int | None
    reference_steps: int | None
    steps_unit: str  # "steps", "queries" or "" (single step)
    reference: str
    build: Callable[[BuildArgs], object]
    # True: over an eps list the attack runs on the survivors of the smaller budgets and an entry counts a
    # sample broken when any budget up to its eps broke it. False (one-shot attacks such as FGSM, whose
    # result is not monotone in eps): every budget is an independent attack on all clean-correct samples.
    cumulative: bool = True
    # An ensemble: ``ensemble(steps, num_classes, sums)`` describes its components and what each did (the
    # report's ``ensemble`` field; ``sums`` are the per-component counts its record added up).
    ensemble: Callable[[int, int, dict], dict] | None = None

    @property
    def default_eps(self) -> float | None:
        if not self.bounded:
            return None
        return LINF_DEFAULT_EPS if self.norm == "Linf" else L2_DEFAULT_EPS

    @property
    def threat_model(self) -> str:
        box = "white-box (gradients)" if self.gradient else "black-box (scores only)"
        ball = f"{self.norm} ball of radius eps" if self.bounded else f"unbounded, minimal {self.norm} perturbation"
        return f"{box}; {ball}; pixels stay in [0, 1]"

    @property
    def budget_mode(self) -> str:
        if not self.bounded:
            return "minimal"
        return "cumulative" if self.cumulative else "independent"

    def is_standard(self, steps: int | None) -> bool:
        return self.reference_steps is None or (steps is not None and steps >= self.reference_steps)


def _ta():
    import torchattacks

    return torchattacks


def _minimal():
    from attacks import minimal

    return minimal


def _ensemble():
    from attacks import ensemble

    return ensemble


def _target_slots(num_classes: int) -> int:
    # The reference AutoAttack targets the 9 most likely other classes, not every class (999 on ImageNet).
    return min(num_classes, 10)


def _autoattack(a: BuildArgs):
    ta = _ta()
    steps = a.steps or 10
    slots = _target_slots(a.num_classes)
    parts = [
        ta.APGD(a.model, norm="Linf", eps=a.eps, steps=steps, n_restarts=1, loss="ce", seed=a.seed),
        ta.APGDT(a.model, norm="Linf", eps=a.eps, steps=steps, n_restarts=1, n_classes=slots, seed=a.seed),
        ta.FAB(a.model, norm="Linf", eps=a.eps, steps=steps, multi_targeted=True, n_classes=slots, seed=a.seed),
        # Square's 5000 queries scale with the budget: 100 steps is the reference protocol, fewer is labelled
        # non-standard anyway, and a full Square beside 10-step components would dominate the run time.
        ta.Square(a.model, norm="Linf", eps=a.eps, n_queries=50 * steps, n_restarts=1, seed=a.seed),
    ]
    return ta.MultiAttack(parts)


_SPECS = [
    AttackSpec(
        name="fgsm", title="Fast Gradient Sign Method",
        norm="Linf", bounded=True, gradient=True, targeted=True, cumulative=False,
        default_steps=None, reference_steps=None, steps_unit="",
        reference="Goodfellow et al. 2015 (one step by definition)",
        build=lambda a: _ta().FGSM(a.model, eps=a.eps),
    ),
    AttackSpec(
        name="pgd", title="Projected Gradient Descent (random start)",
        norm="Linf", bounded=True, gradient=True, targeted=True,
        default_steps=40, reference_steps=40, steps_unit="steps",
        reference="Madry et al. 2018: 40 steps, alpha = 2.5 eps / steps",
        build=lambda a: _ta().PGD(a.model, eps=a.eps, alpha=2.5 * a.eps / a.steps, steps=a.steps, random_start=True),
    ),
    AttackSpec(
        name="pgdl2", title="Projected Gradient Descent, L2",
        norm="L2", bounded=True, gradient=True, targeted=True,
        default_steps=40, reference_steps=40, steps_unit="steps",
        reference="Madry et al. 2018 protocol in the L2 norm",
        build=lambda a: _ta().PGDL2(a.model, eps=a.eps, alpha=2.5 * a.eps / a.steps, steps=a.steps,
                                    random_start=True),
    ),
    AttackSpec(
        name="mifgsm", title="Momentum Iterative FGSM",
        norm="Linf", bounded=True, gradient=True, targeted=True,
        default_steps=10, reference_steps=10, steps_unit="steps",
        reference="Dong et al. 2018: 10 iterations, alpha = eps / steps, decay 1.0",
        build=lambda a: _ta().MIFGSM(a.model, eps=a.eps, alpha=a.eps / a.steps, steps=a.steps, decay=1.0),
    ),
    AttackSpec(
        name="apgd", title="Auto-PGD, cross-entropy loss",
        norm="Linf", bounded=True, gradient=True, targeted=False,
        default_steps=100, reference_steps=100, steps_unit="steps",
        reference="Croce & Hein 2020 (AutoAttack): 100 iterations",
        build=lambda a: _ta().APGD(a.model, norm="Linf", eps=a.eps, steps=a.steps, n_restarts=1, loss="ce",
                                   seed=a.seed),
    ),
    AttackSpec(
        name="apgdt", title="Auto-PGD, targeted DLR loss over the top classes",
        norm="Linf", bounded=True, gradient=True, targeted=False,
        default_steps=100, reference_steps=100, steps_unit="steps",
        reference="Croce & Hein 2020 (AutoAttack): 100 iterations, 9 target classes",
        build=lambda a: _ta().APGDT(
            a.model, norm="Linf", eps=a.eps, steps=a.steps, n_restarts=1, n_classes=_target_slots(a.num_classes),
            seed=a.seed,
        ),
    ),
    AttackSpec(
        name="square", title="Square Attack (score-based, no gradients)",
        norm="Linf", bounded=True, gradient=False, targeted=True,
        default_steps=5000, reference_steps=5000, steps_unit="queries",
        reference="Andriushchenko et al. 2020 (AutoAttack): 5000 queries",
        build=lambda a: _ta().Square(a.model, norm="Linf", eps=a.eps, n_queries=a.steps, n_restarts=1,
                                     seed=a.seed),
    ),
    AttackSpec(
        name="cw", title="Carlini-Wagner L2 (binary search over c)",
        norm="L2", bounded=False, gradient=True, targeted=True,
        default_steps=100, reference_steps=10000, steps_unit="steps",
        reference="Carlini & Wagner 2017: Adam (lr 0.01), 9 binary-search steps over c from 1e-3, up to 10,000 "
                  "iterations each",
        build=lambda a: _minimal().CarliniWagnerL2(a.model, steps=a.steps, search_steps=CW_SEARCH_STEPS),
    ),
    AttackSpec(
        name="deepfool", title="DeepFool (minimal L2, overshoot on the total perturbation)",
        norm="L2", bounded=False, gradient=True, targeted=False,
        default_steps=50, reference_steps=50, steps_unit="steps",
        reference="Moosavi-Dezfooli et al. 2016: at most 50 iterations, overshoot 0.02, 10 candidate classes",
        build=lambda a: _minimal().DeepFoolL2(a.model, steps=a.steps, overshoot=0.02),
    ),
    AttackSpec(
        name="fab", title="Fast Adaptive Boundary",
        norm="Linf", bounded=True, gradient=True, targeted=False,
        default_steps=100, reference_steps=100, steps_unit="steps",
        reference="Croce & Hein 2020 (AutoAttack FAB): 100 iterations",
        build=lambda a: _ta().FAB(a.model, norm="Linf", eps=a.eps, steps=a.steps,
                                  n_classes=_target_slots(a.num_classes), seed=a.seed),
    ),
    AttackSpec(
        name="autoattack", title="AutoAttack (APGD-CE, APGD-T, FAB-T, Square)",
        norm="Linf", bounded=True, gradient=True, targeted=False,
        default_steps=10, reference_steps=100, steps_unit="steps",
        reference="Croce & Hein 2020: 100-iteration components and a 5000-query Square",
        build=_autoattack,
    ),
    AttackSpec(
        name="autoattack-fast",
        title="Fast ensemble: early-stopping APGD-CE and APGD-T, Square on survivors (not AutoAttack)",
        norm="Linf", bounded=True, gradient=True, targeted=False,
        default_steps=100, reference_steps=100, steps_unit="steps",
        reference="this project's protocol, benchmarked against AutoAttack (README): 100-step APGD components, "
                  "9 targets, 2000-query Square",
        build=lambda a: _ensemble().FastEnsemble(a.model, a.eps, a.steps or 100, a.num_classes, a.seed),
        ensemble=lambda steps, classes, sums: _ensemble().describe(steps, classes, sums),
    ),
]

REGISTRY: dict[str, AttackSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> AttackSpec:
    key = name.strip().lower()
    if key not in REGISTRY:
        raise AuditError(f"unknown attack '{name}'; known attacks: {', '.join(REGISTRY)} (see `audit attacks`)")
    return REGISTRY[key]
