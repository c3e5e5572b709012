"""Run one attack over a batch at every budget, cheapest first, attacking only the survivors.

Attacking eps_k only on the samples that resisted every smaller budget gives the whole robust-accuracy curve
for little more than the cost of one attack: an adversarial example found inside a smaller ball is also
inside every larger one, so those samples are already broken at the larger budgets. An entry of such a
*cumulative* attack therefore reports robustness against the attack at every budget up to its eps. One-shot
attacks (FGSM) are not monotone in eps, so they run *independently* at each budget instead.

Every adversarial batch is checked against its threat model: the largest step outside the eps-ball and
outside the [0, 1] box is recorded, and the batch is projected back before it is evaluated, so the reported
robust accuracy only ever counts valid adversarial examples (:mod:`attacks.threat_model`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from attacks.passes import PassCounter, count_passes
from attacks.registry import AttackSpec, BuildArgs
from attacks.threat_model import project, violations


@dataclass
class StepOutcome:
    """The state of a batch after the attack at one budget.

    For a cumulative attack the state carries over from the smaller budgets (a sample broken there stays broken,
    with its smaller adversarial); for an independent one (``spec.cumulative`` False) it is this budget's alone.
    """

    eps: float | None
    x_adv: torch.Tensor  # best adversarial so far per sample (the clean image where none was found)
    logits: torch.Tensor  # the model's logits on x_adv
    goal: torch.Tensor  # bool: untargeted: misclassified; targeted: classified as the target
    attacked: int  # samples this budget actually attacked (survivors of the smaller budgets)
    forward: int
    backward: int
    seconds: float
    eps_violation: float  # largest excursion beyond eps before projection (0 when valid)
    box_violation: float  # largest excursion outside [0, 1] before projection
    found: torch.Tensor | None = None  # bool: samples whose x_adv was found at this budget (not a smaller one)
    attacked_rows: torch.Tensor | None = None  # bool: the samples attacked (and evaluated) at this budget
    record: list[dict] | None = None  # an ensemble's per-component counts (see attacks.ensemble)


def run_cascade(
    spec: AttackSpec,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor,
    budgets: list[float | None],
    *,
    steps: int | None,
    num_classes: int,
    seed: int,
    targets: torch.Tensor | None = None,
    evaluate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
):
    """Yield a :class:`StepOutcome` per budget, ascending.

    ``evaluate(adv, idx)`` returns the logits of the projected adversarials of the samples ``idx`` (default: a
    plain forward); an audit with
    per-layer analyses passes its tapped forward, so the analyses see that same pass.

    A cumulative attack attacks at each budget only the samples no smaller budget broke; an independent one
    (``spec.cumulative`` False: one-shot attacks, not monotone in eps) attacks every clean-correct sample at
    every budget. ``targets`` (targeted mode) holds one target class per sample; otherwise the attack is
    untargeted. Samples the model already misclassifies are never attacked: they count as not robust.
    """
    clean_pred = clean_logits.argmax(1)
    for k, eps in enumerate(budgets):
        if k == 0 or not spec.cumulative:
            best = x.clone()
            logits = clean_logits.clone()
            goal = clean_pred != y if targets is None else clean_pred == targets
            broken = clean_pred != y
        found = torch.zeros_like(goal)
        alive = (clean_pred == y) & ~goal
        idx = alive.nonzero().flatten()
        eps_excess = box_excess = 0.0
        counter, seconds, record = PassCounter(), 0.0, None
        if idx.numel():
            torch.manual_seed(seed * 1_000_003 + round((eps or 0.0) * 1e6))  # same seed for a budget however it is reached
            attack = spec.build(BuildArgs(model=model, eps=eps, steps=steps, num_classes=num_classes, seed=seed))
            labels = y[idx]
            if targets is not None:
                attack.set_mode_targeted_by_label(quiet=True)
                labels = targets[idx]
            start = time.perf_counter()
            with torch.enable_grad(), count_passes(model) as counter:
                adv = attack(x[idx], labels).detach()
            seconds = time.perf_counter() - start
            record = getattr(attack, "record", None)
            eps_excess, box_excess = violations(x[idx], adv, eps, spec.norm)
            adv = project(x[idx], adv, eps, spec.norm)
            if evaluate is None:
                with torch.no_grad():
                    adv_logits = model(adv)
            else:
                adv_logits = evaluate(adv, idx)
            pred = adv_logits.argmax(1)
            newly_goal = pred != y[idx] if targets is None else pred == targets[idx]
            newly_broken = (pred != y[idx]) & ~broken[idx]
            take = newly_goal | newly_broken
            best[idx[take]] = adv[take]
            logits[idx[take]] = adv_logits[take]
            found[idx[take]] = True
            goal[idx[newly_goal]] = True
            broken[idx[pred != y[idx]]] = True
        yield StepOutcome(
            eps, best.clone(), logits.clone(), goal.clone(), int(idx.numel()), counter.forward, counter.backward,
            seconds, eps_excess, box_excess, found, alive, record,
        )
