"""Validity checks that run the model: signs that an evaluation is broken or a model's gradients are masked.

These attack or differentiate the model itself, on the clean-correct images of the first batch: input gradients
that are NaN or vanish, a gradient-free attack that breaks what the gradient attacks left, robustness that survives
a large budget. The checks that only read the report's attack entries (per entry, no model) are in
:mod:`attacks.entry_checks`, which also builds the check records used here.

Each check returns ``{"name", "status", "detail": one sentence, "numbers": {...}}`` with status pass, warn, fail,
skipped (it applies, but had nothing to run on: no image of the first batch is classified correctly) or
not_applicable (the audit's threat model has nothing for it to test); the detail then says why. They run on a small
subset (the first batch) with a bounded cost, counted in ``numbers`` (``forward_passes`` / ``backward_passes``).

A failed check means the robustness numbers cannot be trusted as they stand: the score's grade is capped.
Gradient masking (Athalye, Carlini & Wagner 2018) and the checks below follow the advice of Carlini et al.
2019 (*On evaluating adversarial robustness*): gradients that vanish, a black-box attack that beats the
white-box ones, and robustness that survives an unbounded-looking budget all mean the attacks failed.
"""

from __future__ import annotations

import math

import torch

from attacks.entry_checks import check, square_margin
from attacks.passes import count_passes
from attacks.registry import BuildArgs, get_spec
from attacks.threat_model import project

NO_CLEAN_CORRECT = ("no image of the first batch is classified correctly: nothing to attack or to take "
                    "gradients on")

VANISHING = 1e-12  # an input gradient whose L1 norm per pixel is below this is zero for any attack
SQUARE_QUERIES = 300
LARGE_EPS = 0.5
LARGE_STEPS = 20
SUBSET = 32  # clean-correct images of the first batch the model-based checks use
SQUARE_SUBSET = 16  # at most this many white-box survivors get the Square attack


def input_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Cross-entropy gradients w.r.t. the input on clean images: NaN, zero or vanishing ones mask the attacks."""
    with count_passes(model) as counter, torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xg), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    size = grad.flatten(1).abs().mean(1)
    nan = int((~torch.isfinite(grad.flatten(1))).any(1).sum())
    vanishing = int((size < VANISHING).sum())
    n = len(x)
    median = float(size.median())
    numbers = dict(n=n, nan=nan, vanishing=vanishing, median_gradient=median if math.isfinite(median) else None,
                   forward_passes=counter.forward, backward_passes=counter.backward)
    if nan:
        return check("input_gradients", "fail", f"{nan} of {n} clean images have NaN or infinite input gradients: "
                     "gradient attacks cannot work on this model", **numbers)
    if vanishing > n / 2:
        return check("input_gradients", "fail", f"{vanishing} of {n} clean images have zero or vanishing input "
                     "gradients (saturated logits or a non-differentiable layer): gradient attacks are masked and "
                     "robust accuracy is overestimated", **numbers)
    if vanishing:
        return check("input_gradients", "warn", f"{vanishing} of {n} clean images have zero or vanishing input "
                     "gradients: gradient attacks may miss them", **numbers)
    return check("input_gradients", "pass", f"input gradients are finite and non-zero on all {n} images",
                 **numbers)


def gradient_free_attack(model, x, y, eps: float, n_subset: int, seed: int, num_classes: int,
                         targets: torch.Tensor | None = None) -> dict:
    """A short Square attack (score-based, no gradients) at the largest L-inf budget on the samples of the
    subset that every gradient attack left robust: when it breaks clearly more of them than chance would, the
    gradients are masked or the white-box attacks too weak.

    In a targeted audit (``targets``: each sample's target class) the survivors are the samples no gradient attack
    turned into their target, and Square aims at that same target: the check asks what the audit asked."""
    n = len(x)
    numbers = dict(n_subset=n_subset, n_survivors=n, eps=eps, queries=SQUARE_QUERIES, targeted=targets is not None)
    goal = " (turns them into their target class)" if targets is not None else ""
    if n == 0:
        return check("gradient_free_attack", "pass", f"the gradient attacks broke all {n_subset} samples of the "
                     "subset: nothing left for a black-box attack to find", broken=0, **numbers)
    torch.manual_seed(seed)
    attack = get_spec("square").build(
        BuildArgs(model=model, eps=eps, steps=SQUARE_QUERIES, num_classes=num_classes, seed=seed))
    labels = y
    if targets is not None:
        attack.set_mode_targeted_by_label(quiet=True)
        labels = targets
    with count_passes(model) as counter, torch.enable_grad():
        adv = project(x, attack(x, labels).detach(), eps, "Linf")
    with torch.no_grad():
        pred = model(adv).argmax(1)
    broken = int((pred != y).sum() if targets is None else (pred == targets).sum())
    numbers.update(broken=broken, forward_passes=counter.forward, backward_passes=counter.backward)
    what = "targeted Square attack" if targets is not None else "Square attack"
    left = f"the {n} samples every gradient attack left {'short of their target' if targets is not None else 'robust'}"
    if broken > square_margin(n_subset) * n_subset:
        return check("gradient_free_attack", "fail", f"a {SQUARE_QUERIES}-query {what} breaks {broken} of {left} "
                     f"at L∞ eps {eps:.4g}{goal}: gradients are masked or the white-box attacks are "
                     "too weak", **numbers)
    if broken:
        return check("gradient_free_attack", "warn", f"{what} ({SQUARE_QUERIES} queries) breaks {broken} of {left}",
                     **numbers)
    return check("gradient_free_attack", "pass", f"{what} ({SQUARE_QUERIES} queries) breaks none of {left}",
                 **numbers)


def large_budget(model, x, y, seed: int, num_classes: int) -> dict:
    """A short PGD at L-inf eps 0.5 must break (nearly) everything: at that budget any image can be turned
    into any other's half-tone, so robustness there means the attack, not the model, failed."""
    n = len(x)
    torch.manual_seed(seed)
    attack = get_spec("pgd").build(
        BuildArgs(model=model, eps=LARGE_EPS, steps=LARGE_STEPS, num_classes=num_classes, seed=seed))
    with count_passes(model) as counter, torch.enable_grad():
        adv = project(x, attack(x, y).detach(), LARGE_EPS, "Linf")
    with torch.no_grad():
        robust = int((model(adv).argmax(1) == y).sum())
    share = robust / n if n else 0.0
    numbers = dict(n=n, eps=LARGE_EPS, steps=LARGE_STEPS, robust=robust, forward_passes=counter.forward,
                   backward_passes=counter.backward)
    if share > 0.1:
        return check("large_budget", "fail", f"PGD-{LARGE_STEPS} at L∞ eps {LARGE_EPS} leaves {robust} of {n} "
                     "samples robust: at that budget nothing should be; the attacks are failing", **numbers)
    if robust:
        return check("large_budget", "warn", f"PGD-{LARGE_STEPS} at L∞ eps {LARGE_EPS} leaves {robust} of {n} "
                     "samples robust", **numbers)
    return check("large_budget", "pass", f"PGD-{LARGE_STEPS} at L∞ eps {LARGE_EPS} breaks all {n} samples",
                 **numbers)


def gradient_free_not_applicable(reason: str, **numbers) -> dict:
    """The ``gradient_free_attack`` check where this audit has nothing for it to test, with the reason."""
    return check("gradient_free_attack", "not_applicable", reason, **numbers)


def model_checks(model, x, y, survived: torch.Tensor | None, eps: float | None, seed: int,
                 num_classes: int, targets: torch.Tensor | None = None, square: bool = True) -> list[dict]:
    """The checks that need the model, on the clean-correct images ``x`` of the first batch (at most SUBSET).

    ``survived`` marks the images every gradient attack left robust (targeted: short of their target
    ``targets``) at ``eps``, the largest L-inf budget. ``square`` False: the Square check is not run here (a
    black-box attack or an ensemble with its own score-based stage was requested, or no L-inf budget was run;
    the caller reports it, see ``attacks.entry_checks.ensemble_gradient_free``). With no clean-correct image every
    check is skipped, with the reason.
    """
    x, y = x[:SUBSET], y[:SUBSET]
    names = ["input_gradients", *(["gradient_free_attack"] if square else []), "large_budget"]
    if len(x) == 0:
        return [check(name, "skipped", NO_CLEAN_CORRECT, n=0) for name in names]
    out = [input_gradients(model, x, y)]
    if square:
        keep = survived[:SUBSET]
        chosen = None if targets is None else targets[:SUBSET][keep][:SQUARE_SUBSET]
        out.append(gradient_free_attack(model, x[keep][:SQUARE_SUBSET], y[keep][:SQUARE_SUBSET], eps, len(x), seed,
                                        num_classes, chosen))
    out.append(large_budget(model, x, y, seed, num_classes))
    return out
