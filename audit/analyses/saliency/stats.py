"""Statistics of per-layer entropies: AUROC, the superization index, and a held-out logistic detector.

numpy and scipy.stats, the intervals from audit.stats. Conventions: scores of the positive side (adversarial
images) against the negative side (clean images); AUROC = P(pos > neg) + ½ P(pos = neg), so 0.5 is chance and
1 − AUROC is the value for the opposite direction (an attack that lowers entropy gives AUROC < 0.5 on the raw
entropy).

Uncertainty (each at the audit's confidence level c, alpha = 1 − c)
    ΔH (``paired_shift``): the differences d_i = H_adv,i − H_clean,i of each attacked image and its own clean
        version; Student-t interval of their mean (``audit.stats.t_interval``) and the two-sided paired t-test
        p-value (``scipy.stats.ttest_1samp(d, 0)``). None with fewer than two images or differences without
        spread.
    AUROC (``auroc_interval``, ``auroc_p``): seeded percentile bootstrap over images
        (``audit.stats.two_sample_bootstrap_interval``), paired for a layer's AUROC (an image's adversarial and
        clean entropy are resampled together), unpaired for the detector's held-out scores (the split draws
        each side separately); p against 0.5 from the two-sided Mann–Whitney U test
        (``scipy.stats.mannwhitneyu``, whose U/(n_pos·n_neg) is the AUROC; exact for small samples without
        ties, else the normal approximation with tie correction). It treats the two sides as independent
        samples; the paired test of the same shift is ΔH's.
    superization (``superization_p``): permutation p of Spearman ρ of entropy against depth, two-sided
        (|ρ| of a reordering at least the observed |ρ|), exact over all L! orders for L ≤ EXACT_LAYERS
        (``scipy.stats.permutation_test``, permutation_type "pairings"), else over PERMUTATIONS seeded random
        orders. With L layers no order reaches a p below 2/L! (the two monotone orders), so a trend is testable
        only when 2/L! ≤ alpha (``min_testable_layers``: 5 layers at alpha 0.05; 3 layers give p ≥ 1/3).
    detector: held-out accuracy at probability 0.5 (adversarial when the fitted logit is above 0) with a Wilson
        interval (``audit.stats.proportion_interval``), held-out AUROC with the unpaired bootstrap above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from audit.stats import DEFAULT_CONFIDENCE, proportion_interval, t_interval, two_sample_bootstrap_interval

MIN_PER_SIDE = 10  # fewer clean or adversarial samples than this in either split: no detector AUROC
DEFAULT_L2 = 1e-2
EXACT_LAYERS = 8  # up to 8! = 40320 orders the superization p enumerates them all
PERMUTATIONS = 9999  # random orders beyond that (seeded)


def average_ranks(values) -> np.ndarray:
    """Ranks 1…n of ``values`` (1-D), tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    group_rank = np.cumsum(counts) - (counts - 1) / 2.0
    return group_rank[inverse]


def auroc(scores_pos, scores_neg) -> float | None:
    """Area under the ROC curve from the Mann–Whitney U statistic, ties counted half; None if a side is empty."""
    pos = _finite_1d(scores_pos, "positive scores")
    neg = _finite_1d(scores_neg, "negative scores")
    if not pos.size or not neg.size:
        return None
    ranks = average_ranks(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def spearman(x, y) -> float | None:
    """Spearman rank correlation (Pearson r of average ranks); None when either side has no spread."""
    rx, ry = average_ranks(_finite_1d(x, "x")), average_ranks(_finite_1d(y, "y"))
    if rx.size != ry.size:
        raise ValueError(f"spearman needs equal lengths, got {rx.size} and {ry.size}")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else None


def auroc_interval(scores_pos, scores_neg, *, paired: bool, confidence: float = DEFAULT_CONFIDENCE,
                   seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of the AUROC over images (paired: resampled image by image); None with
    fewer than two scores on a side.

    The AUROC depends only on the order of the pooled scores, so the bootstrap resamples their dense ranks
    (codes 0…G−1) and counts, per resample, the negatives below and level with each positive: O(n) per
    resample instead of a sort."""
    pos, neg = _finite_1d(scores_pos, "positive scores"), _finite_1d(scores_neg, "negative scores")
    levels, codes = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    return two_sample_bootstrap_interval(codes[: pos.size], codes[pos.size:], _auroc_of_codes(levels.size),
                                         paired=paired, confidence=confidence, seed=seed)


def _auroc_of_codes(levels: int):
    """AUROC of integer codes in [0, levels) along an axis, for batches of resamples."""
    def statistic(pos, neg, axis=-1):
        pos, neg = np.moveaxis(pos, axis, -1).astype(np.int64), np.moveaxis(neg, axis, -1).astype(np.int64)
        batch = pos.shape[:-1]
        pos, neg = pos.reshape(-1, pos.shape[-1]), neg.reshape(-1, neg.shape[-1])
        rows = pos.shape[0]
        offset = (np.arange(rows) * levels)[:, None]
        counts = np.bincount((neg + offset).ravel(), minlength=rows * levels).reshape(rows, levels)
        wins = np.cumsum(counts, axis=1) - counts + 0.5 * counts  # negatives below a level, ties half
        u = np.take_along_axis(wins, pos, axis=1).sum(axis=1)
        return (u / (pos.shape[1] * neg.shape[1])).reshape(batch)
    return statistic


def auroc_p(scores_pos, scores_neg) -> float | None:
    """Two-sided p of the AUROC against 0.5 (Mann–Whitney U); None when a side is empty or every score is the
    same (no ranking to test)."""
    pos, neg = _finite_1d(scores_pos, "positive scores"), _finite_1d(scores_neg, "negative scores")
    if not pos.size or not neg.size or np.ptp(np.concatenate([pos, neg])) == 0:
        return None
    return float(sps.mannwhitneyu(pos, neg, alternative="two-sided").pvalue)


def paired_shift(adv, clean, confidence: float = DEFAULT_CONFIDENCE) -> tuple[list[float] | None, float | None]:
    """(interval, two-sided p) of the mean paired difference adv − clean over images: Student t interval and
    the one-sample t-test of the differences against 0; (None, None) with fewer than two images, the p None
    when the differences have no spread."""
    d = _finite_1d(adv, "adversarial entropies") - _finite_1d(clean, "clean entropies")
    if d.size < 2:
        return None, None
    ci = t_interval(d, confidence)
    if np.ptp(d) == 0:
        return ci, None
    return ci, float(sps.ttest_1samp(d, 0.0).pvalue)


@dataclass(frozen=True)
class Superization:
    """How entropy changes with depth: ``index`` is Spearman ρ of entropy against depth (negative: entropy falls
    with depth, as the paper reports; None with fewer than two layers or no spread); ``differences`` are
    H[ℓ+1] − H[ℓ] between successive layers, shallow to deep."""

    index: float | None
    differences: tuple[float, ...]


def superization_index(mean_entropy_by_depth) -> Superization:
    """Superization of a profile of mean entropies ordered from the shallowest to the deepest layer."""
    profile = _finite_1d(mean_entropy_by_depth, "entropy profile")
    index = spearman(np.arange(profile.size), profile) if profile.size >= 2 else None
    return Superization(index, tuple(float(d) for d in np.diff(profile)))


def min_testable_layers(alpha: float) -> int:
    """The fewest layers whose most extreme order reaches a two-sided p of at most ``alpha``: 2/L! ≤ alpha."""
    layers = 2
    while 2.0 / math.factorial(layers) > alpha:
        layers += 1
    return layers


def superization_p(mean_entropy_by_depth, seed: int = 0) -> tuple[float | None, str | None]:
    """(two-sided permutation p of Spearman ρ against depth, how it was computed); (None, None) with fewer than
    two layers or a flat profile."""
    profile = _finite_1d(mean_entropy_by_depth, "entropy profile")
    if profile.size < 2 or np.ptp(profile) == 0:
        return None, None
    depth = np.arange(profile.size, dtype=np.float64) - (profile.size - 1) / 2.0  # the ranks of depth, centred

    def rho(y, axis=-1):  # Spearman of the (reordered) profile against depth
        ry = sps.rankdata(y, axis=axis)
        ry = ry - ry.mean(axis, keepdims=True)
        return (ry * depth).sum(axis) / np.sqrt((depth * depth).sum() * (ry * ry).sum(axis))

    exact = profile.size <= EXACT_LAYERS
    result = sps.permutation_test((profile,), rho, permutation_type="pairings", vectorized=True,
                                  n_resamples=np.inf if exact else PERMUTATIONS, alternative="two-sided",
                                  rng=np.random.default_rng(seed))
    how = (f"exact over all {math.factorial(profile.size)} orders of {profile.size} layers" if exact else
           f"{PERMUTATIONS} random orders of {profile.size} layers (seed {seed})")
    return float(min(1.0, result.pvalue)), how


@dataclass(frozen=True)
class DetectorResult:
    """Held-out AUROC of the logistic detector (adversarial positive), or None with ``reason``.

    ``weights`` are the fitted coefficients on standardised features, one per layer (empty when not fitted);
    ``correct`` the held-out images classified right at probability 0.5, ``accuracy`` = correct / n_test with
    its Wilson interval ``accuracy_ci``; ``auroc_ci`` the unpaired bootstrap interval of the held-out AUROC.
    """

    auroc: float | None
    n_train_clean: int
    n_train_adv: int
    n_test_clean: int
    n_test_adv: int
    reason: str | None = None
    weights: tuple[float, ...] = ()
    auroc_ci: list[float] | None = None
    correct: int | None = None
    accuracy: float | None = None
    accuracy_ci: list[float] | None = None


def stratified_split(n_clean: int, n_adv: int, test_fraction: float, seed: int):
    """Reproducible split of each side separately: (train_clean, test_clean, train_adv, test_adv) index arrays.

    Each side puts round(test_fraction · n) of its samples, chosen by one permutation, in the test split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    parts = []
    for n in (n_clean, n_adv):
        order = rng.permutation(n)
        n_test = int(round(test_fraction * n))
        parts += [np.sort(order[n_test:]), np.sort(order[:n_test])]
    return tuple(parts)


def fit_logistic(x, y, l2: float = DEFAULT_L2, iterations: int = 50) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton (IRLS) steps with backtracking: (weights, intercept).

    Minimises mean_i[log(1 + e^{z_i}) − y_i z_i] + (l2/2)·‖w‖², z = x·w + b; the intercept is not penalised.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    penalty = np.full(design.shape[1], float(l2))
    penalty[-1] = 0.0

    def loss(theta):
        z = design @ theta
        return np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * theta * theta)

    theta = np.zeros(design.shape[1])
    current = loss(theta)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))  # the logistic function, without overflow
        grad = design.T @ (p - y) / y.size + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design / y.size + np.diag(penalty)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(theta.size), grad)
        t = 1.0
        while t > 1e-10 and loss(theta - t * step) > current - 1e-4 * t * (grad @ step):
            t *= 0.5
        theta = theta - t * step
        previous, current = current, loss(theta)
        if np.max(np.abs(t * step)) < 1e-10 or previous - current < 1e-15:
            break
    return theta[:-1], float(theta[-1])


def detector_auroc(
    features_clean, features_adv, seed: int, test_fraction: float = 0.3, l2: float = DEFAULT_L2,
    confidence: float = DEFAULT_CONFIDENCE,
) -> DetectorResult:
    """Held-out AUROC of a logistic detector of adversarial images from per-layer features (N, L).

    Split each side (``stratified_split``), standardise with the training split's mean and spread, fit
    ``fit_logistic``, score the test split. Returns auroc None with a reason when either split has fewer than
    ``MIN_PER_SIDE`` samples per side. The intervals at ``confidence`` (the bootstrap seeded with ``seed``).
    """
    clean, adv = _features(features_clean, "clean"), _features(features_adv, "adversarial")
    if clean.shape[1] != adv.shape[1]:
        raise ValueError(f"clean has {clean.shape[1]} features per sample, adversarial {adv.shape[1]}")
    tr_c, te_c, tr_a, te_a = stratified_split(len(clean), len(adv), test_fraction, seed)
    counts = {"n_train_clean": tr_c.size, "n_train_adv": tr_a.size, "n_test_clean": te_c.size,
              "n_test_adv": te_a.size}
    if min(counts.values()) < MIN_PER_SIDE:
        reason = (f"too few samples: {te_c.size} clean and {te_a.size} adversarial held out, {tr_c.size} and "
                  f"{tr_a.size} for training (need {MIN_PER_SIDE} per side in each)")
        return DetectorResult(None, **counts, reason=reason)
    train = np.vstack([clean[tr_c], adv[tr_a]])
    labels = np.concatenate([np.zeros(tr_c.size), np.ones(tr_a.size)])
    mean, spread = train.mean(axis=0), train.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    weights, intercept = fit_logistic((train - mean) / spread, labels, l2=l2)

    def score(rows):
        return ((rows - mean) / spread) @ weights + intercept

    pos, neg = score(adv[te_a]), score(clean[te_c])
    value = auroc(pos, neg)
    correct = int((pos > 0).sum() + (neg <= 0).sum())  # logit > 0: probability above 0.5, called adversarial
    n_test = pos.size + neg.size
    return DetectorResult(value, **counts, weights=tuple(float(w) for w in weights),
                          auroc_ci=auroc_interval(pos, neg, paired=False, confidence=confidence, seed=seed),
                          correct=correct, accuracy=correct / n_test,
                          accuracy_ci=proportion_interval(correct, n_test, confidence))


def _finite_1d(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return array


def _features(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array = array[:, None] if array.ndim == 1 else array
    if array.ndim != 2 or not np.isfinite(array).all():
        raise ValueError(f"{what} features must be a finite (N, L) array, got shape {array.shape}")
    return array
