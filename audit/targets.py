"""Target classes for targeted attacks, fixed per sample so every attack and budget aims at the same class."""

from __future__ import annotations

import numpy as np
import torch


def choose_targets(mode: str | None, logits: torch.Tensor, y: torch.Tensor, seed: int, offset: int):
    """One target per sample, never the true class; None for untargeted attacks.

    ``random`` draws from the other classes with a generator keyed by (seed, sample position), so a sample's
    target does not depend on the batch size; ``least-likely`` takes the class the clean logits rank lowest.
    """
    if mode is None:
        return None
    num_classes = logits.shape[1]
    if mode == "least-likely":
        masked = logits.detach().clone()
        masked[torch.arange(len(y)), y] = float("inf")
        return masked.argmin(1)
    labels = y.cpu().numpy()
    draws = np.array([np.random.default_rng([seed, offset + i]).integers(num_classes - 1) for i in range(len(y))])
    targets = draws + (draws >= labels)  # skip the true class
    return torch.as_tensor(targets, dtype=torch.long, device=y.device)
