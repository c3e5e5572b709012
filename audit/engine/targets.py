"""Target classes for targeted attacks, fixed per sample so every attack and budget aims at the same class.

``choose_targets`` is pure: the semantic modes read a class x class distance matrix, which ``target_distance``
builds for the audit's ``--target-space``: ``glove``, the word space's distance (``WordSpace.distance``, 1 −
cosine of the class vectors); ``wordnet``, ``wordnet_distance`` (the class tree's LCA height, ties broken by
Wu–Palmer similarity, then by class index).
"""

from __future__ import annotations

import numpy as np
import torch

from audit.errors import AuditError

SEMANTIC_TARGETS = ("semantic-near", "semantic-far")  # the modes that need a distance between classes


def choose_targets(mode: str | None, logits: torch.Tensor, y: torch.Tensor, seed: int, offset: int,
                   distance: np.ndarray | None = None):
    """One target per sample, never the true class; None for untargeted attacks.

    ``random`` draws from the other classes with a generator keyed by (seed, sample position), so a sample's
    target does not depend on the batch size; ``least-likely`` takes the class the clean logits rank lowest;
    ``semantic-near`` / ``semantic-far`` take the class nearest to / farthest from the true class in the target
    space (``distance``: class x class, NaN for classes the space does not place, which are never chosen; a sample
    whose own class is not placed gets the least-likely class); of equal distances, the lowest class index.
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


def wordnet_distance(synsets) -> np.ndarray:
    """The WordNet target space of the audit's classes (a ``ClassSynsets``): class x class float64,
    d = LCA height + (1 − Wu–Palmer similarity) / 2, NaN in the rows and columns of unmapped classes.

    The tree is ``build_tree`` over the mapped classes (the hierarchy analysis's tree), the heights ``lca_height``,
    the similarity ``wu_palmer_matrix`` on the WordNet graph. The added part lies in [0, 0.5), below the step of
    one LCA height, so ``choose_targets`` gives: semantic-near = the smallest LCA height, of those the largest
    Wu–Palmer similarity, then the lowest class index; semantic-far = the largest LCA height, of those the
    smallest Wu–Palmer similarity, then the lowest class index. (Equal similarities are equal floats: each is one
    division of the same small integers.)
    """
    from audit.analyses.semantics.hierarchy import lca_height

    mapped = np.array(synsets.mapped, dtype=np.int64)
    lca = lca_height(synsets.tree).astype(np.float64)
    similarity = synsets.wu_palmer
    out = np.full((len(synsets.classes), len(synsets.classes)), np.nan)
    out[np.ix_(mapped, mapped)] = lca + (1.0 - similarity) / 2.0
    return out


def target_distance(targeted: str | None, target_space: str, word_space, synsets) -> np.ndarray | None:
    """The distance matrix ``choose_targets`` reads for this audit (None unless a semantic mode is asked for):
    the word space's for ``glove``, ``wordnet_distance`` for ``wordnet``; ``synsets`` a string (why the classes
    have no WordNet mapping) with ``wordnet`` is an :class:`AuditError`."""
    if targeted not in SEMANTIC_TARGETS:
        return None
    if target_space == "glove":
        return word_space.distance
    if synsets is None or isinstance(synsets, str):
        raise AuditError(f"--target-space wordnet: the classes do not map to WordNet "
                         f"({synsets or 'no class hierarchy was loaded'}); use --target-space glove, or map them "
                         "with --class-synsets FILE --wordnet DIR")
    return wordnet_distance(synsets)
