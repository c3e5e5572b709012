"""The statistics every figure of a report carries: intervals, paired and unpaired tests, multiplicity.

Pure math on counts and arrays (numpy, scipy.stats); no torch. The methods, as the report and README name them:

proportions
    Wilson score interval (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; Wilson 1927). Its
    coverage stays close to the nominal level for the sample sizes of an audit, unlike the Wald interval, and it
    is never degenerate at 0 or 1 hits.
means
    Student-t interval over the values (``t_interval``), or a seeded percentile bootstrap
    over images (``bootstrap_interval``, ``scipy.stats.bootstrap``) where the statistic is not a plain mean.
two-sample statistics (an AUROC of two sets of scores)
    Seeded percentile bootstrap (``two_sample_bootstrap_interval``): paired samples (two values of the same
    image) are resampled image by image, so both values of an image travel together; unpaired samples each
    with replacement within their own side.
paired proportions (two audits of the same samples)
    McNemar's exact test: under no change, the discordant pairs split as Binomial(b + c, ½); the one-sided p of
    "worse" is ``binomtest(b, b + c, 0.5, alternative="greater")`` with b the samples robust in the base and
    broken in the new audit, c the reverse. The difference new − base = (c − b)/n gets Newcombe's hybrid score
    interval for paired proportions (Newcombe 1998, Stat. Med. 17:2635, method 10).
unpaired proportions
    Fisher's exact test on the 2×2 table (``scipy.stats.fisher_exact``), one-sided, and Newcombe's square-and-add
    interval for the difference of two independent proportions (Newcombe 1998, Stat. Med. 17:873, method 10).
multiplicity
    Holm's step-down adjustment (family-wise error; ``holm``), Benjamini–Hochberg (false discovery rate;
    ``fdr_bh``, ``scipy.stats.false_discovery_control`` agrees).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
PROPORTION_METHOD = "Wilson score interval"
MEAN_METHOD = "Student t interval over the images"


def check_level(value, what: str = "--confidence") -> float:
    """A probability strictly between 0 and 1 (a confidence level or a significance level); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 < value < 1.0:
        raise ValueError(f"{what} {value!r} is not a number strictly between 0 and 1")
    return float(value)


def alpha_of(confidence: float) -> float:
    """The significance level that goes with a confidence level: 1 − confidence, rounded to 12 decimals (0.05,
    not 0.050000000000000044)."""
    return round(1.0 - check_level(confidence), 12)


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile of ``confidence`` (1.96 for 0.95)."""
    return float(stats.norm.ppf(0.5 + check_level(confidence) / 2.0))


def proportion_interval(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
    """The Wilson score interval [lo, hi] of k hits in n trials; None when n is 0."""
    check_level(confidence)
    if n <= 0:
        return None
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(max(0.0, ci.low)), float(min(1.0, ci.high))]


def t_interval(values, confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
    """The Student-t interval of the mean of ``values``: mean ± t_{n−1} · s / √n; None with fewer than two."""
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size < 2:
        return None
    return t_interval_of(float(data.mean()), float(data.std(ddof=1)), data.size, confidence)


def t_interval_of(mean: float, sd: float, n: int, confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
    """The Student-t interval from a mean, a sample standard deviation (n − 1 in the denominator) and the count;
    None with fewer than two values."""
    check_level(confidence)
    if n < 2:
        return None
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sd / math.sqrt(n)
    return [mean - half, mean + half]


def bootstrap_interval(values: Sequence[float] | np.ndarray, statistic: Callable = np.mean,
                       confidence: float = DEFAULT_CONFIDENCE, seed: int = 0,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic`` over the values (resampled with replacement, seeded);
    ``statistic`` takes an ``axis`` (np.mean, np.median). None with fewer than two values; every value the same:
    that value at both ends."""
    check_level(confidence)
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None
    if np.all(data == data[0]):
        value = float(statistic(data))
        return [value, value]
    result = stats.bootstrap((data,), lambda x, axis: statistic(x, axis=axis), confidence_level=confidence,
                             n_resamples=resamples, method="percentile", vectorized=True,
                             rng=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def two_sample_bootstrap_interval(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                                  statistic: Callable, *, paired: bool, confidence: float = DEFAULT_CONFIDENCE,
                                  seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic(x, y, axis)`` (vectorised along ``axis``) over two samples.

    ``paired``: x[i] and y[i] belong to the same image and are resampled together (equal lengths); otherwise
    each side is resampled on its own. None with fewer than two values on a side."""
    check_level(confidence)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return None
    if paired and x.size != y.size:
        raise ValueError(f"paired samples need equal lengths, got {x.size} and {y.size}")
    result = stats.bootstrap((x, y), statistic, paired=paired, vectorized=True, confidence_level=confidence,
                             n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return None if math.isnan(low) or math.isnan(high) else [low, high]


def mcnemar(b: int, c: int, alternative: str = "greater") -> float:
    """McNemar's exact p-value from the discordant counts: b (robust → broken) against c (broken → robust).
    ``greater``: the evidence that b exceeds c (the new audit is worse); ``less``; ``two-sided``. 1 when there is
    no discordant pair."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5, alternative=alternative).pvalue)


def paired_difference_interval(n11: int, n10: int, n01: int, n00: int,
                               confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
    """Newcombe's hybrid score interval of p2 − p1 for paired binary outcomes (method 10 of Newcombe 1998).

    Counts: n11 robust in both, n10 robust in the first only, n01 in the second only, n00 in neither. None when
    there is no pair."""
    n = n11 + n10 + n01 + n00
    if n <= 0:
        return None
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = proportion_interval(n11 + n10, n, confidence)
    l2, u2 = proportion_interval(n11 + n01, n, confidence)
    # phi: the correlation of the two outcomes (0 when a margin is empty); a positive numerator is reduced by
    # n/2 and floored at 0, a negative one kept, as Newcombe defines it
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    a = n11 * n00 - n10 * n01
    a = a - n / 2 if a > n / 2 else min(a, 0)
    phi = a / math.sqrt(margins) if margins else 0.0
    d = p2 - p1
    lower = d - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    upper = d + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return [max(-1.0, lower), min(1.0, upper)]


def unpaired_difference_interval(k1: int, n1: int, k2: int, n2: int,
                                 confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
    """Newcombe's square-and-add interval of k2/n2 − k1/n1 for two independent samples (Wilson margins)."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = proportion_interval(k1, n1, confidence)
    l2, u2 = proportion_interval(k2, n2, confidence)
    d = p2 - p1
    return [max(-1.0, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)),
            min(1.0, d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))]


def fisher_worse(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided p of Fisher's exact test that the second proportion is lower than the first."""
    table = [[k1, n1 - k1], [k2, n2 - k2]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: ``q_(k) = max_{l <= k} min(1, (m − l + 1) p_(l))`` over sorted p."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out


def fdr_bh(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values: ``q_(k) = min_{l >= k} min(1, p_(l) m / l)`` over sorted p."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def binomial_p(k: int, n: int, p: float = 0.5, alternative: str = "two-sided") -> float | None:
    """Exact binomial test of k hits in n trials against rate ``p``; None when n is 0."""
    if n <= 0:
        return None
    return float(stats.binomtest(int(k), int(n), p, alternative=alternative).pvalue)


def images_to_resolve(value: float, threshold: float, confidence: float = DEFAULT_CONFIDENCE) -> int | None:
    """About how many images a proportion measured at ``value`` needs before its interval excludes ``threshold``
    (normal approximation: n = z² p(1 − p) / (p − t)²); None when value equals the threshold (no sample size
    separates them)."""
    gap = abs(value - threshold)
    if gap == 0:
        return None
    spread = max(value * (1 - value), 1e-12)
    return int(math.ceil(z_value(confidence) ** 2 * spread / gap ** 2))
