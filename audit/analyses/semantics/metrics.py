"""The semantic-window math: arrays in, numbers out.

Method from Dharmaretnam, Foster & Fyshe, "Words as a window: Using word embeddings to explore the learned
representations of Convolutional Neural Networks", Neural Networks 137 (2021). For a layer, one representation
per class gives a class x class similarity matrix; the word vectors of the class names give another; the
2 vs 2 test asks whether the two matrices tell any two classes apart the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from scipy import stats

from audit.analyses.semantics.leave_two_out import (
    SMALL, NetSide, WordSide, count_successes, margin_matrix, successes_relabelled,
)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm; a constant row becomes NaN (Pearson r is undefined for it)."""
    z = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, z / np.where(norm > 0, norm, 1.0), np.nan)


def similarity(reps: np.ndarray) -> np.ndarray:
    """Class x class Pearson similarity of row vectors: ``S[i, j] = r(reps[i], reps[j])``.

    Rows are classes (a class representation: the mean pooled activation of its images, or its word vector).
    A constant row has no Pearson r: its row and column are NaN.
    """
    z = _unit(np.asarray(reps, dtype=np.float64))
    s = z @ z.T
    np.clip(s, -1.0, 1.0, out=s)
    return s


def profile(vectors: np.ndarray, class_reps: np.ndarray) -> np.ndarray:
    """Similarity profile of each image: ``P[k, c] = r(vectors[k], class_reps[c])`` (Pearson), images x classes."""
    a = _unit(np.asarray(vectors, dtype=np.float64))
    b = _unit(np.asarray(class_reps, dtype=np.float64))
    return np.clip(a @ b.T, -1.0, 1.0)


def two_vs_two(s_a: np.ndarray, s_b: np.ndarray) -> float:
    """Accuracy of the 2 vs 2 test between two n x n similarity matrices (Dharmaretnam et al. 2021).

    For every pair i < j, drop columns i and j from rows i and j of both matrices; the pair is a success when
    ``r(A_i, B_i) + r(A_j, B_j) > r(A_i, B_j) + r(A_j, B_i)`` (Pearson r over the n - 2 remaining columns,
    strict ``>``). Returns successes / (n (n - 1) / 2); chance is 0.5. Vectorised: sufficient statistics and one
    cross-product matrix, no loop over pairs. A pair whose r is undefined (a constant row) counts as a failure,
    and so does a tie (the two sides equal within 1e-9, where rounding noise would decide).
    """
    d = margin_matrix(NetSide.of(s_a), WordSide.of(s_b))
    n = len(d)
    return count_successes(d) / (n * (n - 1) / 2)


def _upper(s: np.ndarray) -> np.ndarray:
    return s[np.triu_indices(len(s), 1)]


def rsa(s_a: np.ndarray, s_b: np.ndarray) -> float:
    """Representational similarity: Spearman rank correlation of the upper triangles (i < j) of two matrices."""
    s_a, s_b = np.asarray(s_a, dtype=np.float64), np.asarray(s_b, dtype=np.float64)
    if s_a.shape != s_b.shape:
        raise ValueError(f"the similarity matrices differ in shape: {s_a.shape} vs {s_b.shape}")
    return float(stats.spearmanr(_upper(s_a), _upper(s_b)).statistic)


class PermutationTest(NamedTuple):
    observed: np.ndarray  # the statistic per network matrix (layer)
    p_values: np.ndarray  # (1 + #{null >= observed}) / (1 + n_perm), per layer
    null: np.ndarray  # n_perm x layers


def _rsa_null(s_nets: list[np.ndarray], s_word: np.ndarray, perms: np.ndarray) -> np.ndarray:
    n = len(s_word)
    iu = np.triu_indices(n, 1)
    word_rank = np.zeros((n, n))
    word_rank[iu] = stats.rankdata(s_word[iu])
    word_rank = word_rank + word_rank.T
    nets = [stats.rankdata(s[iu]) for s in s_nets]
    nets = [(r - r.mean()) / np.linalg.norm(r - r.mean()) for r in nets]
    null = np.empty((len(perms), len(nets)))
    for k, perm in enumerate(perms):
        w = word_rank[perm][:, perm][iu]
        w = (w - w.mean()) / np.linalg.norm(w - w.mean())
        null[k] = [float(r @ w) for r in nets]
    return null


def _two_vs_two_null(s_nets: list[np.ndarray], s_word: np.ndarray, perms: np.ndarray, workers: int) -> np.ndarray:
    word = WordSide.of(s_word, factor=True)
    nets = [NetSide.of(s) for s in s_nets]
    n = len(s_word)
    pairs = n * (n - 1) / 2

    if n <= SMALL:
        invs = np.argsort(perms, axis=1)
        return np.stack([successes_relabelled(net, word, invs) / pairs for net in nets], axis=1)

    def one(perm: np.ndarray) -> list[float]:
        # 2v2(A, B[perm][:, perm]) == 2v2(A[inv][:, inv], B): a relabelling of the pairs leaves the count unchanged
        inv = np.argsort(perm)
        return [count_successes(margin_matrix(net, word, inv)) / pairs for net in nets]

    if workers > 1 and len(perms) > 1:
        from threadpoolctl import threadpool_limits

        # the threads share the permutations; BLAS threads inside each would only contend (measured: 13 s vs
        # 7.5 s for 100 permutations of 1000 classes on 2 cores)
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return np.array(list(pool.map(one, perms)))
    return np.array([one(p) for p in perms])


def permutation_pvalues(
    s_nets: Sequence[np.ndarray], s_word: np.ndarray, n_perm: int = 1000, seed: int = 0,
    metric: str = "two_vs_two", workers: int = 1,
) -> PermutationTest:
    """Label-permutation null for each network matrix (one per layer) against one word matrix.

    Each permutation relabels the word side (rows and columns together); the same ``n_perm`` permutations, drawn
    from ``numpy.random.default_rng(seed)``, serve every layer. ``p = (1 + #{null >= observed}) / (1 + n_perm)``.
    ``metric`` is ``"two_vs_two"`` or ``"rsa"``; ``workers`` threads share the permutations (numpy releases the
    GIL in its array loops).
    """
    s_word = np.asarray(s_word, dtype=np.float64)
    nets = [np.asarray(s, dtype=np.float64) for s in s_nets]
    if metric not in ("two_vs_two", "rsa"):
        raise ValueError(f"unknown metric {metric!r}: use 'two_vs_two' or 'rsa'")
    if n_perm < 1:
        raise ValueError("n_perm must be at least 1")
    rng = np.random.default_rng(seed)
    perms = np.array([rng.permutation(len(s_word)) for _ in range(n_perm)])
    if metric == "rsa":
        observed = np.array([rsa(s, s_word) for s in nets])
        null = _rsa_null(nets, s_word, perms)
    else:
        observed = np.array([two_vs_two(s, s_word) for s in nets])
        null = _two_vs_two_null(nets, s_word, perms, workers)
    p_values = (1 + (null >= observed[None, :]).sum(axis=0)) / (1 + n_perm)
    return PermutationTest(observed=observed, p_values=p_values, null=null)


def one_vs_two(
    profiles: np.ndarray, word_sim: np.ndarray, source: np.ndarray, target: np.ndarray,
) -> np.ndarray:
    """The 1 vs 2 test per adversarial image: is it still "source-like"?

    Over the reference classes (every class but the image's true class s and predicted class t), compare the
    image's similarity profile (``profile``: Pearson r to each clean class representation) with the word
    similarity rows of s and of t: ``r(P_k, W_s) > r(P_k, W_t)`` (Pearson over the reference classes) means the
    image still looks like its source class to this layer. Returns a boolean per image; needs s != t.
    """
    prof = np.asarray(profiles, dtype=np.float64)
    w = np.asarray(word_sim, dtype=np.float64)
    s, t = np.asarray(source, dtype=np.intp), np.asarray(target, dtype=np.intp)
    if prof.ndim != 2 or prof.shape[1] != len(w) or s.shape != (len(prof),) or t.shape != s.shape:
        raise ValueError("profiles must be images x classes, with one source and one target per image")
    if np.any(s == t):
        raise ValueError("the 1 vs 2 test needs a predicted class that differs from the true class")
    keep = np.ones(prof.shape, dtype=bool)
    rows = np.arange(len(prof))
    keep[rows, s] = False
    keep[rows, t] = False
    return source_like(prof, w[s], w[t], keep)


def source_like(profiles: np.ndarray, word_source: np.ndarray, word_target: np.ndarray,
                keep: np.ndarray) -> np.ndarray:
    """The comparison inside the 1 vs 2 test, for rows given directly: ``r(P_k, S_k) > r(P_k, T_k)`` over the
    columns where ``keep`` is true (Pearson). ``word_source`` / ``word_target`` hold, per image, the word
    similarity of its true / predicted class to each reference class; the predicted class needs a word vector
    but no images of its own."""
    return _masked_r(profiles, word_source, keep) > _masked_r(profiles, word_target, keep)


def _masked_r(x: np.ndarray, y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of x and y over the columns where keep is true."""
    k = keep.sum(axis=1)
    xm = np.where(keep, x, 0.0)
    ym = np.where(keep, y, 0.0)
    xc = np.where(keep, x - (xm.sum(axis=1) / k)[:, None], 0.0)
    yc = np.where(keep, y - (ym.sum(axis=1) / k)[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))


def flip_layer(fractions: Sequence[float]) -> int | None:
    """Index of the first layer whose source-like fraction is below one half; None if it never is (NaN
    fractions, layers without images, are skipped)."""
    for i, f in enumerate(fractions):
        if f is not None and not np.isnan(f) and f < 0.5:
            return i
    return None


FLIP_CLEAN_MIN = 0.75  # a layer can show a flip only where the clean versions are at least this source-like
FLIP_MIN_SCORED = 20  # and only with at least this many successful adversarials scored by the 1 vs 2 test


class FlipReading(NamedTuple):
    """Where successful adversarials stop looking like their true class, read conservatively.

    ``status``: ``flip`` (``layer`` is the flip layer's index), ``none`` (source-like at every informative layer)
    or ``undetermined`` (too few adversarials, or no informative layer; ``reason`` says which). ``informative``:
    the indices of the layers where the clean versions are clearly source-like.
    """

    status: str
    layer: int | None
    informative: tuple[int, ...]
    reason: str


def read_flip(adversarial: Sequence[float | None], clean: Sequence[float | None], n_scored: int,
              clean_min: float = FLIP_CLEAN_MIN, min_scored: int = FLIP_MIN_SCORED) -> FlipReading:
    """The flip layer of one attack run, by a documented, conservative rule.

    A share of source-like adversarials below one half means something only where the test puts the clean
    versions of the same images with their true class: a layer is *informative* when the clean versions' share
    is at least ``clean_min``. The flip layer is the first informative layer whose adversarial share is below one
    half; none when every informative layer stays at or above it. With fewer than ``min_scored`` adversarials
    scored, or no informative layer, the flip layer is undetermined.
    """
    def finite(v):
        return v is not None and not np.isnan(v)

    if n_scored < min_scored:
        return FlipReading("undetermined", None, (), f"only {n_scored} successful adversarials scored by the 1 vs 2 "
                                                     f"test (a flip layer needs at least {min_scored})")
    informative = tuple(i for i, (a, c) in enumerate(zip(adversarial, clean, strict=True))
                        if finite(a) and finite(c) and c >= clean_min)
    if not informative:
        shares = [c for c in clean if finite(c)]
        top = f"at most {max(shares):.2f}" if shares else "not measured"
        return FlipReading("undetermined", None, (), f"the clean versions of the broken images are clearly "
                                                     f"source-like (share >= {clean_min:.2f}) at no layer ({top}), so the "
                                                     "test cannot tell where the adversarials flip")
    k = flip_layer([adversarial[i] for i in informative])
    if k is None:
        return FlipReading("none", None, informative, "")
    return FlipReading("flip", informative[k], informative, "")


def severity(word_vectors: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Semantic severity of each error: ``(1 - cos(w_true, w_pred)) / mean_{i<j}(1 - cos(w_i, w_j))``.

    1 is an average confusion between two classes of the set, below 1 a confusion between close classes
    (cat -> dog), above 1 a distant one (cat -> truck).
    """
    w = np.asarray(word_vectors, dtype=np.float64)
    if len(w) < 2:
        raise ValueError("severity needs at least two class vectors")
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("a class word vector is zero")
    u = w / norm
    dist = 1.0 - np.clip(u @ u.T, -1.0, 1.0)
    mean = _upper(dist).mean()
    return dist[np.asarray(true, dtype=np.intp), np.asarray(pred, dtype=np.intp)] / mean
