"""Auto-PGD in the L-infinity norm that stops attacking a sample as soon as it is misclassified.

The algorithm is the one of Croce & Hein 2020 ("Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1): a random start in the eps-ball, step size ``2 * eps``, a
momentum step ``x + a (z - x) + (1 - a)(x - x_prev)`` with ``a = 0.75``, and checkpoints
``w_j = ceil(p_j * steps)`` with ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``. At a
checkpoint a sample's step size is halved, and the sample restarts from its best point, when fewer than
``rho = 0.75`` of its steps since the last checkpoint raised the loss, or when neither its step size nor its best
loss changed since the previous checkpoint.

What differs from the reference implementation (and from torchattacks' port) is the bookkeeping: the batch
shrinks as samples are broken. A robustness evaluation only needs *one* misclassified point per sample, so every
forward and backward pass after that is wasted; on a model that breaks within a few steps this removes most of
the cost, and on a robust model it changes nothing (those samples run the full budget either way).

Losses: ``ce`` (cross-entropy, untargeted) and ``dlr-targeted`` (the targeted difference-of-logits ratio,
``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``). Success always means *misclassified*: the target only steers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MOMENTUM = 0.75
RHO = 0.75


def checkpoints(steps: int) -> list[int]:
    """The iterations at which step sizes are reconsidered (the paper's ``w_j`` after ``w_0 = 0``).

    In whole iterations, as AutoAttack's code counts them: the first after ``0.22 * steps``, then each interval
    ``0.03 * steps`` shorter than the one before, but at least ``0.06 * steps`` (22, 41, 57, 70, ... at 100).
    """
    first, shrink, shortest = (max(int(f * steps), 1) for f in (0.22, 0.03, 0.06))
    marks, gap = [first], first
    while True:
        gap = max(gap - shrink, shortest)
        if marks[-1] + gap > steps:
            return marks
        marks.append(marks[-1] + gap)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss per sample (higher is closer to the target); needs at least 3 classes."""
    ranked = logits.sort(dim=1).values
    fourth = ranked[:, -min(4, logits.shape[1])]
    scale = ranked[:, -1] - 0.5 * (ranked[:, -3] + fourth) + 1e-12
    rows = torch.arange(len(y), device=logits.device)
    return -(logits[rows, y] - logits[rows, target]) / scale


def _loss(kind: str, logits, y, target):
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    return dlr_targeted(logits, y, target)


def apgd(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, *, loss: str = "ce",
         target: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Attack ``x`` (labels ``y``) inside the L-inf ball of radius ``eps``; return ``(x_adv, fooled, used)``.

    ``x_adv`` holds each fooled sample's first misclassified point and the clean image elsewhere; ``fooled`` is
    a bool mask; ``used`` counts the gradient steps each sample received (``steps + 1`` evaluations at most).
    Every state tensor takes ``x``'s dtype, so a float64 model and input run the whole schedule in float64.
    """
    if loss not in ("ce", "dlr-targeted") or (loss == "dlr-targeted" and target is None):
        raise ValueError(f"unknown loss '{loss}' (ce, or dlr-targeted with target)")
    n = len(x)
    out, fooled = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
    used = torch.zeros(n, dtype=torch.long, device=x.device)
    if n == 0 or steps < 1:
        return out, fooled, used
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    shape = (-1,) + (1,) * (x.dim() - 1)
    start = torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1
    start = start / start.flatten(1).abs().amax(1).clamp_min(1e-12).view(shape)
    s = {
        "row": torch.arange(n, device=x.device), "lo": lo, "hi": hi, "y": y,
        "t": target if target is not None else y,
        "x": torch.minimum(torch.maximum(x + eps * start, lo), hi),
        "eta": torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device),
        "ups": torch.zeros(n, dtype=x.dtype, device=x.device),  # steps since the last checkpoint raising the loss
        "best_at_ckpt": torch.full((n,), -math.inf, dtype=x.dtype, device=x.device),
        "cut_at_ckpt": torch.ones(n, dtype=torch.bool, device=x.device),  # no plateau cut at the first checkpoint
    }
    marks, last_mark = set(checkpoints(steps)), 0
    for k in range(steps + 1):
        xk = s["x"].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xk)
            value = _loss(loss, logits, s["y"], s["t"])
            grad, = torch.autograd.grad(value.sum(), xk)
        used[s["row"]] = k
        hit = logits.detach().argmax(1) != s["y"]
        if hit.any():
            out[s["row"][hit]] = s["x"][hit]
            fooled[s["row"][hit]] = True
            s = {key: v[~hit] for key, v in s.items()}
            value, grad = value.detach()[~hit], grad[~hit]
            if not len(s["row"]):
                break
        value = value.detach()
        if k == 0:
            s.update(best=value.clone(), x_best=s["x"].clone(), g_best=grad.clone(), prev_value=value.clone(),
                     x_prev=s["x"].clone())
        else:
            s["ups"] += (value > s["prev_value"]).to(s["ups"].dtype)
            better = value > s["best"]
            s["best"] = torch.where(better, value, s["best"])
            s["x_best"][better], s["g_best"][better] = s["x"][better], grad[better]
            s["prev_value"] = value
        if k == steps:
            break
        if k in marks:
            cut = (s["ups"] < RHO * (k - last_mark)) | (~s["cut_at_ckpt"] & (s["best"] <= s["best_at_ckpt"]))
            s["eta"] = torch.where(cut, s["eta"] / 2, s["eta"])
            s["x"][cut], grad[cut], s["x_prev"][cut] = s["x_best"][cut], s["g_best"][cut], s["x_best"][cut]
            s["ups"].zero_()
            s["cut_at_ckpt"], s["best_at_ckpt"] = cut, s["best"].clone()
            last_mark = k
        eta = s["eta"].view(shape)
        z = torch.minimum(torch.maximum(s["x"] + eta * grad.sign(), s["lo"]), s["hi"])
        a = 1.0 if k == 0 else MOMENTUM
        step = s["x"] + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"])
        s["x_prev"] = s["x"]
        s["x"] = torch.minimum(torch.maximum(step, s["lo"]), s["hi"])
    return out, fooled, used
