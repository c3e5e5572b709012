"""The semantic-window math: arrays in, numbers out.

Method from Dharmaretnam, Foster & Fyshe, "Words as a window: Using word embeddings to explore the learned
representations of Convolutional Neural Networks", Neural Networks 137 (2021). For a layer, one representation
per class gives a class x class similarity matrix; the word vectors of the class names give another; the
2 vs 2 test asks whether the two matrices tell any two classes apart the same way.

The 1 vs 2 test asks, per successful adversarial, whether a layer still puts it with its true class; the same
test on its clean version is the baseline. ``one_vs_two_statistics`` reads the paired counts of a run (Wilson
intervals, exact binomial tests against one half, McNemar's exact test against the clean versions, all from
``audit.stats``, Benjamini-Hochberg across layers) and ``read_flip`` names a flip layer only where both tests
are significant (``FLIP_RULE``). This replaces the earlier thresholds (clean share >= 0.75, at least 20
adversarials), which the tests make redundant: with few adversarials neither test can reach significance.
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
from audit.stats import DEFAULT_CONFIDENCE, binomial_p, fdr_bh, mcnemar, proportion_interval


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


PAIRED = ("both", "adversarial_only", "clean_only", "neither")  # the columns of the paired 1 vs 2 counts


def paired_counts(adversarial: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The paired outcome of the 1 vs 2 test on each scored adversarial and its own clean version, counted: [both
    source-like, the adversarial only, the clean version only, neither] (``PAIRED``), int64."""
    a, c = np.asarray(adversarial, dtype=bool), np.asarray(clean, dtype=bool)
    return np.array([(a & c).sum(), (a & ~c).sum(), (~a & c).sum(), (~a & ~c).sum()], dtype=np.int64)


def one_vs_two_statistics(paired: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> dict[str, list]:
    """What the paired 1 vs 2 counts of one run say, per layer (``paired``: layers x 4, columns ``PAIRED``).

    With n scored adversarials, k_adv = both + adversarial_only source-like adversarials and k_clean = both +
    clean_only source-like clean versions:

    - ``source_like`` = k_adv / n and ``source_like_clean`` = k_clean / n, with their Wilson intervals
      (``source_like_ci``, ``source_like_clean_ci``, at ``confidence``);
    - ``p_below_half``: exact one-sided binomial test that the adversarial share is below one half
      (P[X <= k_adv], X ~ Binomial(n, 1/2));
    - ``p_clean_above_half``: the same for the clean versions' share above one half (P[X >= k_clean]);
    - ``p_vs_clean``: McNemar's exact one-sided test that the adversarials are less often source-like than their
      own clean versions: b = clean_only, c = adversarial_only, P[X >= b], X ~ Binomial(b + c, 1/2);
    - ``q_below_half``, ``q_clean_above_half``, ``q_vs_clean``: each family Benjamini-Hochberg adjusted across
      the layers.

    Every value is None (every list of Nones) when nothing was scored.
    """
    counts = np.asarray(paired, dtype=np.int64).reshape(-1, 4)
    both, adv_only, clean_only, _ = counts.T
    n = int(counts[0].sum()) if len(counts) else 0
    if np.any(counts.sum(axis=1) != n):
        raise ValueError("every layer scores the same adversarials: the paired counts must add up to one n")
    layers = len(counts)
    if n == 0:
        return {"n": 0, **{key: [None] * layers for key in (
            "source_like", "source_like_clean", "source_like_ci", "source_like_clean_ci", "p_below_half",
            "q_below_half", "p_clean_above_half", "q_clean_above_half", "p_vs_clean", "q_vs_clean")}}
    k_adv, k_clean = both + adv_only, both + clean_only
    out = {
        "n": n,
        "source_like": [int(k) / n for k in k_adv], "source_like_clean": [int(k) / n for k in k_clean],
        "source_like_ci": [proportion_interval(k, n, confidence) for k in k_adv],
        "source_like_clean_ci": [proportion_interval(k, n, confidence) for k in k_clean],
        "p_below_half": [binomial_p(k, n, 0.5, "less") for k in k_adv],
        "p_clean_above_half": [binomial_p(k, n, 0.5, "greater") for k in k_clean],
        "p_vs_clean": [mcnemar(b, c, "greater") for b, c in zip(clean_only, adv_only, strict=True)],
    }
    for p, q in (("p_below_half", "q_below_half"), ("p_clean_above_half", "q_clean_above_half"),
                 ("p_vs_clean", "q_vs_clean")):
        out[q] = [float(v) for v in fdr_bh(out[p])]
    return out


class FlipReading(NamedTuple):
    """Where successful adversarials stop looking like their true class, read by a significance rule.

    ``status``: ``flip`` (``layer`` is the flip layer's index), ``inconclusive`` (no layer passes both tests,
    while the clean versions are significantly source-like at one layer at least), ``no_power`` (no flip, and the
    clean versions are significantly source-like at no layer: the test cannot tell the true class from the
    predicted one on this model and class set), ``not_measured`` (no adversarial scored). ``informative``: the
    indices of the layers where the clean versions' share is significantly above one half. ``note``: why no
    flip layer is named (empty for a flip).
    """

    status: str
    layer: int | None
    informative: tuple[int, ...]
    note: str


def read_flip(stats: dict, names: Sequence[str], alpha: float = 0.05) -> FlipReading:
    """The flip layer of one run from its ``one_vs_two_statistics``, by the rule ``FLIP_RULE``.

    The flip layer is the first layer where the adversarial share is significantly below that of its own clean
    versions (``q_vs_clean < alpha``) and significantly below one half (``q_below_half < alpha``). Otherwise
    none is named, and ``note`` says what was measured at the first layer whose share is below one half (or that
    there is none), which test did not reach significance, and, when the clean versions are significantly above
    one half at no layer, that the test has no power here.
    """
    n = stats["n"]
    if len(names) != len(stats["source_like"]):
        raise ValueError("one layer name per layer of the statistics")
    if not n:
        return FlipReading("not_measured", None, (), "no successful adversarial was scored by the 1 vs 2 test")
    adv, clean = stats["source_like"], stats["source_like_clean"]
    q_below, q_vs, q_clean = stats["q_below_half"], stats["q_vs_clean"], stats["q_clean_above_half"]
    informative = tuple(i for i, q in enumerate(q_clean) if q < alpha)
    for i in range(len(names)):
        if q_vs[i] < alpha and q_below[i] < alpha:
            return FlipReading("flip", i, informative, "")
    first = flip_layer(adv)
    if first is None:
        low = int(np.argmin(adv))
        note = (f"inconclusive: {n} adversarials; their source-like share is at least one half at every layer "
                f"(lowest {adv[low]:.2f}, at {names[low]})")
    else:
        why = []
        if q_vs[first] >= alpha and clean[first] <= 0.5:
            why.append(f"the clean versions are not source-like at this layer either ({clean[first]:.2f})")
        elif q_vs[first] >= alpha:
            why.append(f"that is not significantly fewer than their clean versions ({clean[first]:.2f}; McNemar "
                       f"q = {q_vs[first]:.2g})")
        if q_below[first] >= alpha:
            why.append(f"their share is not significantly below one half (q = {q_below[first]:.2g})")
        note = (f"inconclusive: {n} adversarials; at {names[first]}, {adv[first]:.2f} of them are source-like, but "
                + " and ".join(why))
    if not informative:
        note += ("; the test has no power on this model and class set: the clean versions are significantly "
                 f"source-like (above one half) at no layer (at most {max(clean):.2f})")
    return FlipReading("inconclusive" if informative else "no_power", None, informative, note)


FLIP_RULE = ("flip layer: the first layer where the successful adversarials are significantly less often "
             "source-like than their own clean versions (McNemar exact, one-sided) and significantly less often "
             "than one half (exact binomial, one-sided), each Benjamini-Hochberg adjusted across layers, at alpha = "
             "1 - the confidence level; none otherwise, and the note says why")


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
