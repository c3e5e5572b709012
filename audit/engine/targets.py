"""Target classes for targeted attacks, fixed per sample so every attack and budget aims at the same class."""

from __future__ import annotations

import numpy as np
import torch

SEMANTIC_TARGETS = ("semantic-near", "semantic-far")  # the modes that need word vectors


def choose_targets(mode: str | None, logits: torch.Tensor, y: torch.Tensor, seed: int, offset: int,
                   distance: np.ndarray | None = None):
    """One target per sample, never the true class; None for untargeted attacks.

    ``random`` draws from the other classes with a generator keyed by (seed, sample position), so a sample's
    target does not depend on the batch size; ``least-likely`` takes the class the clean logits rank lowest;
    ``semantic-near`` / ``semantic-far`` take the class nearest to / farthest from the true class in word space
    (``distance``: class x class word distance, NaN for classes without a word vector, which are never chosen;
    a sample whose own class has no vector gets the least-likely class).
    """
    if mode is None:
        return None
    num_classes = logits.shape[1]
    if mode in ("semantic-near", "semantic-far"):
        fallback = choose_targets("least-likely", logits, y, seed, offset)
        d = np.array(distance, dtype=np.float64)
        np.fill_diagonal(d, np.nan)
        rows = d[y.cpu().numpy()]
        usable = ~np.isnan(rows).all(axis=1)
        fill = np.inf if mode == "semantic-near" else -np.inf
        rows = np.where(np.isnan(rows), fill, rows)
        pick = rows.argmin(1) if mode == "semantic-near" else rows.argmax(1)
        return torch.where(torch.as_tensor(usable, device=y.device), torch.as_tensor(pick, device=y.device), fallback)
    if mode == "least-likely":
        masked = logits.detach().clone()
        masked[torch.arange(len(y), device=y.device), y] = float("inf")
        return masked.argmin(1)
    labels = y.cpu().numpy()
    draws = np.array([np.random.default_rng([seed, offset + i]).integers(num_classes - 1) for i in range(len(y))])
    targets = draws + (draws >= labels)  # skip the true class
    return torch.as_tensor(targets, dtype=torch.long, device=y.device)
