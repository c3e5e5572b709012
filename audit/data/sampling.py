"""Stratified sampling: which samples of a source are audited (``--samples N``), evenly per class."""

from __future__ import annotations

import numpy as np


def even_quotas(capacity: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` as evenly as possible over groups that hold at most ``capacity[i]`` items each.

    Groups too small to take an equal share give everything they have and the rest is shared again among the
    others; the leftover units of the final even split (all with the same fractional remainder) go to groups
    picked by ``rng``, so quotas differ by at most one among the groups that are not exhausted.
    """
    quota = np.zeros(len(capacity), dtype=np.int64)
    open_groups = np.flatnonzero(capacity > 0)
    remaining = min(int(n), int(capacity.sum()))
    while remaining > 0:
        share = remaining // len(open_groups)
        small = open_groups[capacity[open_groups] <= share]
        if len(small):  # exhausted groups take all they have; redistribute the rest
            quota[small] = capacity[small]
            remaining -= int(capacity[small].sum())
            open_groups = np.setdiff1d(open_groups, small)
            continue
        quota[open_groups] = share
        extra = rng.choice(open_groups, size=remaining - share * len(open_groups), replace=False)
        quota[extra] += 1
        remaining = 0
    return quota


def stratified_indices(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Ascending indices of ``n`` items drawn evenly per label without replacement (all when n is None/too big)."""
    total = len(labels)
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    quotas = even_quotas(np.array([len(m) for m in members], dtype=np.int64), n, rng)
    chosen = [rng.choice(m, size=int(q), replace=False) for m, q in zip(members, quotas, strict=True) if q > 0]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
