"""The threat model of an adversarial batch: how far it strays outside it, and projecting it back inside.

A threat model here is an eps-ball of one norm (``"Linf"`` or ``"L2"``) around the clean images, or no ball at all
for a minimal-perturbation attack (``eps`` None), and always the [0, 1] pixel box. The eps cascade
(:mod:`attacks.cascade`) measures every adversarial batch with :func:`violations` and evaluates it only after
:func:`project`; the model-based checks (:mod:`attacks.model_checks`) project their own attacks the same way.
This module imports nothing of the project.
"""

from __future__ import annotations

import torch


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float | None, norm: str) -> torch.Tensor:
    """Project adversarials into the eps-ball around x (when bounded) and into the [0, 1] box."""
    if eps is not None:
        delta = x_adv - x
        if norm == "Linf":
            delta = delta.clamp(-eps, eps)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            delta = delta * (eps / norms).clamp(max=1.0).view(-1, *[1] * (x.dim() - 1))
        x_adv = x + delta
    return x_adv.clamp(0.0, 1.0)


def violations(x: torch.Tensor, x_adv: torch.Tensor, eps: float | None, norm: str) -> tuple[float, float]:
    """Largest excursion beyond the eps-ball and outside the [0, 1] box (0.0 when the batch is valid)."""
    if x.numel() == 0:
        return 0.0, 0.0
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    eps_excess = float((size - eps).clamp_min(0).max()) if eps is not None else 0.0
    box_excess = float(torch.maximum((-x_adv).clamp_min(0), (x_adv - 1).clamp_min(0)).max())
    return eps_excess, box_excess
