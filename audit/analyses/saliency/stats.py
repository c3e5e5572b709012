"""Statistics of per-layer entropies: AUROC, the superization index, and a held-out logistic detector.

Pure numpy. Conventions: scores of the positive side (adversarial images) against the negative side (clean
images); AUROC = P(pos > neg) + ½ P(pos = neg), so 0.5 is chance and 1 − AUROC is the value for the opposite
direction (an attack that lowers entropy gives AUROC < 0.5 on the raw entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PER_SIDE = 10  # fewer clean or adversarial samples than this in either split: no detector AUROC
DEFAULT_L2 = 1e-2


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


@dataclass(frozen=True)
class DetectorResult:
    """Held-out AUROC of the logistic detector (adversarial positive), or None with ``reason``.

    ``weights`` are the fitted coefficients on standardised features, one per layer (empty when not fitted).
    """

    auroc: float | None
    n_train_clean: int
    n_train_adv: int
    n_test_clean: int
    n_test_adv: int
    reason: str | None = None
    weights: tuple[float, ...] = ()


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
    features_clean, features_adv, seed: int, test_fraction: float = 0.3, l2: float = DEFAULT_L2
) -> DetectorResult:
    """Held-out AUROC of a logistic detector of adversarial images from per-layer features (N, L).

    Split each side (``stratified_split``), standardise with the training split's mean and spread, fit
    ``fit_logistic``, score the test split. Returns auroc None with a reason when either split has fewer than
    ``MIN_PER_SIDE`` samples per side.
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

    value = auroc(score(adv[te_a]), score(clean[te_c]))
    return DetectorResult(value, **counts, weights=tuple(float(w) for w in weights))


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
