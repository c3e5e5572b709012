"""Saliency entropy, saliency maps and their statistics, checked against literal loops and known answers."""

import math
from collections import Counter

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

from audit.errors import AuditError
from audit.analyses.saliency import entropy as entropy_module
from audit.analyses.saliency import (
    NoSpatialMap,
    activation_energy,
    auroc,
    choose_levels,
    detector_auroc,
    grad_x_act,
    gradcam,
    needs_gradient,
    quantise,
    saliency_maps,
    spatial_entropy,
    stratified_split,
    superization_index,
    upsample,
)
from audit.analyses.saliency.stats import average_ranks, fit_logistic, spearman

METHODS = ("glcm", "histogram", "2d")


# ---- synthetic maps ---------------------------------------------------------------------------------------


def blobs(centres, size=32, sigma=3.0):
    y, x = np.mgrid[:size, :size]
    return sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2)) for cy, cx in centres)


def ladder(sigma, seed=0, size=32):
    """constant, one blob, four blobs, uniform noise."""
    one = blobs([(size // 2, size // 2)], size, sigma)
    q1, q3 = size // 4, 3 * size // 4
    four = blobs([(q1, q1), (q1, q3), (q3, q1), (q3, q3)], size, sigma)
    noise = np.random.default_rng(seed).random((size, size))
    return np.stack([np.full((size, size), 2.5), one, four, noise])


# ---- independent literal-loop references ------------------------------------------------------------------


def ref_quantised(m, levels):
    lo, hi = float(m.min()), float(m.max())
    out = [[0] * m.shape[1] for _ in range(m.shape[0])]
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            s = (float(m[i, j]) - lo) / (hi - lo) if hi > lo else 0.0
            out[i][j] = min(int(math.floor(s * levels)), levels - 1)
    return out


def ref_entropy(counter):
    total = sum(counter.values())
    return -sum(c / total * math.log2(c / total) for c in counter.values() if c) if total else 0.0


def ref_glcm(m, levels, offsets=((0, 1), (1, 0))):
    q, (h, w) = ref_quantised(m, levels), m.shape
    counts = Counter()
    for i in range(h):
        for j in range(w):
            for dy, dx in offsets:
                if 0 <= i + dy < h and 0 <= j + dx < w:
                    a, b = q[i][j], q[i + dy][j + dx]
                    counts[(a, b)] += 1
                    counts[(b, a)] += 1
    return ref_entropy(counts)


def ref_histogram(m, levels):
    return ref_entropy(Counter(v for row in ref_quantised(m, levels) for v in row))


def ref_2d(m, levels):
    q, (h, w) = ref_quantised(m, levels), m.shape
    lo, hi = float(m.min()), float(m.max())
    counts = Counter()
    for i in range(h):
        for j in range(w):
            inside = [(a, b) for a in range(i - 1, i + 2) for b in range(j - 1, j + 2) if 0 <= a < h and 0 <= b < w]
            mean = sum((float(m[a, b]) - lo) / (hi - lo) for a, b in inside) / len(inside)
            counts[(q[i][j], min(int(math.floor(mean * levels)), levels - 1))] += 1
    return ref_entropy(counts)


def test_levels_rule():
    assert [choose_levels(s, s) for s in (1, 2, 4, 7, 14, 28, 32, 224)] == [2, 2, 2, 4, 8, 16, 16, 16]
    assert entropy_module.neighbour_pairs(7, 7) == 84


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("levels", [None, 4, 8])
@pytest.mark.parametrize("sigma", [2.0, 3.0, 4.0])
def test_constant_lt_one_blob_lt_four_blobs_lt_noise(method, levels, sigma):
    h = spatial_entropy(ladder(sigma, seed=int(sigma)), method=method, levels=levels)
    assert h[0] == 0.0
    assert 0.0 < h[1] < h[2] < h[3], h


@pytest.mark.parametrize("method", METHODS)
def test_constant_maps_have_zero_entropy(method):
    maps = np.stack([np.zeros((5, 6)), np.full((5, 6), -3.0), np.full((5, 6), 1e-30), np.full((5, 6), 7e8)])
    assert spatial_entropy(maps, method=method).tolist() == [0.0] * 4
    assert spatial_entropy(np.ones((3, 1, 1)), method=method).tolist() == [0.0] * 3


@pytest.mark.parametrize("method", METHODS)
def test_invariant_to_positive_scaling(method):
    rng = np.random.default_rng(1)
    maps = np.concatenate([ladder(3.0)[1:], np.cumsum(rng.normal(size=(3, 32, 32)), axis=1), rng.random((3, 32, 32))])
    base = spatial_entropy(maps, method=method, levels=8)
    for factor in (2.0, 1e-3, 7.5, 3e4):
        np.testing.assert_allclose(spatial_entropy(maps * factor, method=method, levels=8), base, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(quantise(maps * factor, 8), quantise(maps, 8))


@pytest.mark.parametrize("shape", [(7, 7), (5, 9), (12, 4)])
@pytest.mark.parametrize("levels", [2, 4, 16, None])
def test_glcm_matches_literal_loop(shape, levels):
    rng = np.random.default_rng(sum(shape))
    smooth = np.cumsum(rng.normal(size=(3, *shape)), axis=2)
    ties = rng.integers(0, 3, size=(3, *shape)).astype(float)
    maps = np.concatenate([rng.random((3, *shape)), smooth, ties])
    got = spatial_entropy(torch.tensor(maps, dtype=torch.float64), method="glcm", levels=levels)
    want = [ref_glcm(m, levels or choose_levels(*shape)) for m in maps]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_glcm_custom_offsets_match_literal_loop():
    maps = np.random.default_rng(5).random((4, 8, 10))
    offsets = ((1, 1), (0, 2), (-1, 1))
    got = spatial_entropy(maps, levels=4, offsets=offsets)
    np.testing.assert_allclose(got, [ref_glcm(m, 4, offsets) for m in maps], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method,reference", [("histogram", ref_histogram), ("2d", ref_2d)])
def test_histogram_and_2d_match_literal_loop(method, reference):
    rng = np.random.default_rng(3)
    maps = np.concatenate([rng.random((3, 7, 9)), np.cumsum(rng.normal(size=(3, 7, 9)), axis=1),
                           rng.integers(0, 3, size=(2, 7, 9)).astype(float), blobs([(3, 4)], size=9)[None, :7]])
    for levels in (2, 4, 8):
        got = spatial_entropy(maps, method=method, levels=levels)
        np.testing.assert_allclose(got, [reference(m, levels) for m in maps], rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_one_by_one_and_chunks(method, monkeypatch, numerics):
    # the grey levels are per-pixel operations, the same in any batch; the entropies sum their terms in an order
    # that depends on the array's shape and alignment, so they agree to float64 rounding, not bit for bit
    maps = np.random.default_rng(7).random((9, 6, 5)) ** 3
    whole = spatial_entropy(maps, method=method)
    single = [spatial_entropy(maps[i : i + 1], method=method)[0] for i in range(len(maps))]
    np.testing.assert_allclose(whole, single, rtol=0, atol=1e-12)
    monkeypatch.setattr(entropy_module, "_CHUNK_PIXELS", 70)  # two maps per chunk
    np.testing.assert_allclose(spatial_entropy(maps, method=method), whole, rtol=0, atol=1e-12)
    assert len(set(np.round(whole, 6))) > 3  # the maps' entropies differ: a mix-up of maps would show


def test_noise_reaches_the_maximum_and_torch_float32_input_works():
    noise = np.random.default_rng(0).random((2, 64, 64))
    assert spatial_entropy(noise, "glcm", 4) == pytest.approx([4.0, 4.0], abs=0.03)
    assert spatial_entropy(noise, "histogram", 4) == pytest.approx([2.0, 2.0], abs=0.01)
    as_tensor = spatial_entropy(torch.tensor(noise, dtype=torch.float32, requires_grad=True), "glcm", 4)
    assert as_tensor.dtype == np.float64 and as_tensor.shape == (2,)


def test_entropy_input_errors():
    with pytest.raises(AuditError, match="unknown entropy method"):
        spatial_entropy(np.zeros((1, 3, 3)), method="glcn")
    with pytest.raises(AuditError, match="levels"):
        spatial_entropy(np.zeros((1, 3, 3)), levels=1)
    with pytest.raises(AuditError, match="offsets"):
        spatial_entropy(np.zeros((1, 3, 3)), offsets=((0, 0),))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        spatial_entropy(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        spatial_entropy(np.full((1, 3, 3), np.nan))


# ---- saliency maps ----------------------------------------------------------------------------------------


def test_gradcam_is_cam_for_a_global_pooling_head():
    """For logit = Σ_c v_c · mean_hw(A_c), G_c = v_c / (H·W): Grad-CAM = ReLU(Σ_c v_c A_c) / (H·W)."""
    torch.manual_seed(0)
    a = torch.randn(3, 5, 4, 6, requires_grad=True)
    v = torch.randn(5)
    (logit,) = torch.autograd.grad((a.mean(dim=(2, 3)) @ v).sum(), a)
    cam = gradcam(a, logit)
    torch.testing.assert_close(cam, torch.relu(torch.einsum("nchw,c->nhw", a.detach(), v)) / 24)
    assert not cam.requires_grad


def test_gradcam_and_grad_x_act_match_literal_loops():
    torch.manual_seed(1)
    a, g = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    cam, gxa = gradcam(a, g), grad_x_act(a, g)
    for n in range(2):
        weights = [float(g[n, c].mean()) for c in range(3)]
        for i in range(4):
            for j in range(5):
                assert float(cam[n, i, j]) == pytest.approx(max(0.0, sum(weights[c] * float(a[n, c, i, j])
                                                                         for c in range(3))), abs=1e-5)
                assert float(gxa[n, i, j]) == pytest.approx(abs(sum(float(g[n, c, i, j] * a[n, c, i, j])
                                                                    for c in range(3))), abs=1e-5)


def test_grad_x_act_sums_channels_before_the_magnitude():
    a = torch.ones(1, 2, 1, 2)
    g = torch.tensor([[[[1.0, 2.0]], [[-1.0, 1.0]]]])
    assert grad_x_act(a, g).tolist() == [[[0.0, 3.0]]]
    assert grad_x_act(a, -g).tolist() == [[[0.0, 3.0]]]


def test_activation_energy_and_dispatch():
    torch.manual_seed(2)
    a, g = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(activation_energy(a), a.abs().sum(1) / 4)
    torch.testing.assert_close(saliency_maps("activation", a), activation_energy(a))
    torch.testing.assert_close(saliency_maps("gradcam", a, g), gradcam(a, g))
    torch.testing.assert_close(saliency_maps("gradxact", a, g), grad_x_act(a, g))
    assert [needs_gradient(m) for m in ("gradcam", "gradxact", "activation")] == [True, True, False]


def test_map_errors():
    with pytest.raises(NoSpatialMap, match="no spatial map"):
        saliency_maps("gradcam", torch.randn(4, 10), torch.randn(4, 10))
    with pytest.raises(NoSpatialMap):
        saliency_maps("activation", torch.randn(4, 10))
    with pytest.raises(ValueError, match="needs the gradient"):
        saliency_maps("gradxact", torch.randn(1, 2, 3, 3))
    with pytest.raises(ValueError, match="differs"):
        gradcam(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 4))
    with pytest.raises(AuditError, match="unknown saliency method"):
        saliency_maps("cam", torch.randn(1, 2, 3, 3))


def test_upsample():
    maps = torch.rand(2, 7, 7)
    assert upsample(maps, 28).shape == (2, 28, 28)
    assert upsample(maps, (14, 21)).shape == (2, 14, 21)
    torch.testing.assert_close(upsample(torch.full((1, 3, 3), 0.25), 9), torch.full((1, 9, 9), 0.25))


# ---- statistics -------------------------------------------------------------------------------------------


def ref_auroc(pos, neg):
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pair_loop_with_ties():
    rng = np.random.default_rng(0)
    for n_pos, n_neg in [(1, 1), (5, 3), (40, 17), (30, 30)]:
        pos, neg = rng.integers(0, 6, n_pos).astype(float), rng.integers(0, 5, n_neg).astype(float)
        assert auroc(pos, neg) == pytest.approx(ref_auroc(pos, neg), abs=1e-12)
        pos, neg = rng.normal(size=n_pos), rng.normal(0.5, size=n_neg)
        assert auroc(pos, neg) == pytest.approx(ref_auroc(pos, neg), abs=1e-12)


def test_auroc_known_answers():
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0
    assert auroc([0, 1], [2, 3, 4]) == 0.0
    assert auroc([1, 2, 3], [1, 2, 3]) == 0.5
    assert auroc([], [1.0]) is None


def test_ranks_and_spearman_match_scipy():
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 4, 25).astype(float), rng.normal(size=25)
    np.testing.assert_allclose(average_ranks(x), scipy.stats.rankdata(x))
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)


def test_superization_index():
    falling = superization_index([5.0, 4.2, 4.5, 3.0, 1.0])
    assert falling.index == pytest.approx(scipy.stats.spearmanr(range(5), [5.0, 4.2, 4.5, 3.0, 1.0]).statistic)
    assert falling.index < 0
    np.testing.assert_allclose(falling.differences, [-0.8, 0.3, -1.5, -2.0])
    assert superization_index([1.0, 2.0, 3.0]).index == pytest.approx(1.0)
    assert superization_index([2.0]).index is None and superization_index([2.0]).differences == ()
    assert superization_index([2.0, 2.0, 2.0]).index is None


def test_logistic_fit_matches_scipy_minimiser():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 3))
    y = (x @ [1.5, -2.0, 0.3] + 0.4 + rng.logistic(size=120) > 0).astype(float)
    w, b = fit_logistic(x, y, l2=0.05)

    def objective(theta):
        z = x @ theta[:3] + theta[3]
        return np.mean(np.logaddexp(0, z) - y * z) + 0.025 * theta[:3] @ theta[:3]

    best = scipy.optimize.minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(np.append(w, b), best, atol=1e-5)


def test_detector_on_separable_and_identical_distributions():
    rng = np.random.default_rng(8)
    clean = rng.normal(size=(400, 5))
    adv = rng.normal(size=(300, 5)) + [0, 4, 0, 0, -4]
    separable = detector_auroc(clean, adv, seed=0)
    assert separable.auroc > 0.99
    assert (separable.n_test_clean, separable.n_test_adv) == (120, 90)
    assert separable.n_train_clean + separable.n_test_clean == 400 and separable.n_train_adv == 210
    same = detector_auroc(rng.normal(size=(1000, 5)), rng.normal(size=(1000, 5)), seed=0)
    assert abs(same.auroc - 0.5) < 0.06
    assert detector_auroc(clean, adv, seed=0) == separable


def test_one_feature_detector_ranks_like_the_feature():
    rng = np.random.default_rng(9)
    clean, adv = rng.normal(size=60), rng.normal(0.7, size=50)
    result = detector_auroc(clean, adv, seed=3)
    _, te_c, _, te_a = stratified_split(60, 50, 0.3, 3)
    assert result.weights[0] > 0
    assert result.auroc == pytest.approx(auroc(adv[te_a], clean[te_c]), abs=1e-12)


def test_detector_with_too_few_samples():
    rng = np.random.default_rng(10)
    result = detector_auroc(rng.normal(size=(20, 3)), rng.normal(size=(50, 3)), seed=0)
    assert result.auroc is None and "too few" in result.reason
    assert (result.n_test_clean, result.n_test_adv) == (6, 15)


# ---- uncertainty: each number against a separately written computation ------------------------------------

from itertools import combinations, permutations  # noqa: E402

from audit.analyses.saliency.stats import (  # noqa: E402
    _auroc_of_codes, auroc_interval, auroc_p, min_testable_layers, paired_shift, superization_p,
)


def literal_auroc(pos, neg):
    return sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg) / (len(pos) * len(neg))


def test_paired_shift_is_the_t_interval_and_paired_t_test_of_the_differences():
    rng = np.random.default_rng(21)
    clean = rng.normal(2.0, 0.5, 17)
    adv = clean + rng.normal(0.3, 0.4, 17)
    ci, p = paired_shift(adv, clean, confidence=0.9)
    d = [a - c for a, c in zip(adv, clean, strict=True)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    half = scipy.stats.t.ppf(0.95, len(d) - 1) * sd / math.sqrt(len(d))
    assert ci == pytest.approx([mean - half, mean + half], abs=1e-12)
    assert p == pytest.approx(scipy.stats.ttest_rel(adv, clean).pvalue, rel=1e-12)
    assert paired_shift([1.0], [0.5]) == (None, None)
    ci, p = paired_shift([1.0, 2.0], [0.5, 1.5])  # differences without spread: an interval of width 0, no p
    assert ci == pytest.approx([0.5, 0.5]) and p is None


def test_auroc_p_is_the_exact_two_sided_rank_test_enumerated_by_hand():
    pos, neg = [3.1, 4.7, 5.2, 6.0, 2.2], [1.0, 2.5, 3.3, 0.4]
    pooled = pos + neg
    observed = abs(literal_auroc(pos, neg) - 0.5)
    extreme = total = 0
    for chosen in combinations(range(len(pooled)), len(pos)):
        p_side = [pooled[i] for i in chosen]
        n_side = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        total += 1
        extreme += abs(literal_auroc(p_side, n_side) - 0.5) >= observed - 1e-12
    assert total == 126 and auroc_p(pos, neg) == pytest.approx(extreme / total, rel=1e-12)
    assert auroc_p([1.0, 1.0], [1.0]) is None and auroc_p([], [1.0]) is None


def test_the_bootstrap_statistic_on_codes_equals_the_literal_auroc_of_each_resample():
    rng = np.random.default_rng(22)
    pos, neg = np.round(rng.normal(0.3, 1, 40), 1), np.round(rng.normal(0, 1, 40), 1)  # many ties
    levels, codes = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    idx = rng.integers(0, 40, (25, 40))
    got = _auroc_of_codes(levels.size)(codes[:40][idx], codes[40:][idx])
    assert np.allclose(got, [literal_auroc(pos[i], neg[i]) for i in idx], rtol=0, atol=1e-12)


@pytest.mark.parametrize("paired", [True, False])
def test_auroc_interval_agrees_with_a_literal_bootstrap_loop(paired):
    rng = np.random.default_rng(23)
    clean = rng.normal(0, 1, 60)
    adv = 0.6 * clean + rng.normal(0.4, 0.8, 60)
    got = auroc_interval(adv, clean, paired=paired, seed=4)
    loop = np.random.default_rng(99)
    values = []
    for _ in range(2000):
        i = loop.integers(0, 60, 60)
        j = i if paired else loop.integers(0, 60, 60)
        values.append(literal_auroc(adv[i], clean[j]))
    expected = np.percentile(values, [2.5, 97.5])
    assert got[0] < literal_auroc(adv, clean) < got[1]
    assert got == pytest.approx(expected, abs=0.02)  # two Monte Carlo runs of 2000 resamples
    assert auroc_interval([1.0], [0.0, 1.0], paired=False) is None


def literal_spearman_p(profile):
    depth = list(range(len(profile)))
    observed = abs(spearman(depth, profile))
    orders = list(permutations(profile))
    return sum(abs(spearman(depth, list(o))) >= observed - 1e-12 for o in orders) / len(orders)


@pytest.mark.parametrize("profile", [[1.45, 1.56, 3.45], [3.0, 2.0, 2.5, 1.0], [5.0, 4.1, 4.1, 2.0, 1.0],
                                     [0.3, 0.1, 0.9, 0.4, 0.8, 0.5]])
def test_superization_p_enumerates_every_order_of_the_layers(profile):
    p, how = superization_p(profile)
    assert p == pytest.approx(literal_spearman_p(profile), rel=1e-9)
    assert how.startswith(f"exact over all {math.factorial(len(profile))} orders")


def test_three_layers_cannot_show_a_trend_and_five_can():
    assert superization_p([1.45, 1.56, 3.45])[0] == pytest.approx(1 / 3)  # the demo's profile: the smallest p
    assert superization_p([5.0, 4.0, 3.0, 2.0, 1.0])[0] == pytest.approx(2 / 120)
    assert [min_testable_layers(a) for a in (0.05, 0.1, 0.34, 0.01)] == [5, 4, 3, 6]
    assert superization_p([2.0, 2.0, 2.0]) == (None, None) and superization_p([1.0]) == (None, None)


def test_detector_accuracy_at_probability_one_half_with_its_wilson_interval():
    rng = np.random.default_rng(24)
    clean, adv = rng.normal(size=(50, 2)), rng.normal(size=(40, 2)) + [0.9, 0.0]
    result = detector_auroc(clean, adv, seed=1, test_fraction=0.4, confidence=0.9)
    tr_c, te_c, tr_a, te_a = stratified_split(50, 40, 0.4, 1)
    train = np.vstack([clean[tr_c], adv[tr_a]])
    mean, spread = train.mean(0), train.std(0)
    weights, intercept = fit_logistic((train - mean) / spread, [0] * len(tr_c) + [1] * len(tr_a))
    prob = [1 / (1 + math.exp(-(((row - mean) / spread) @ weights + intercept))) for row in adv[te_a]]
    prob_clean = [1 / (1 + math.exp(-(((row - mean) / spread) @ weights + intercept))) for row in clean[te_c]]
    correct = sum(p > 0.5 for p in prob) + sum(p <= 0.5 for p in prob_clean)
    n = len(prob) + len(prob_clean)
    assert (result.correct, result.accuracy) == (correct, correct / n)
    wilson = scipy.stats.binomtest(correct, n).proportion_ci(0.9, method="wilson")
    assert result.accuracy_ci == pytest.approx([wilson.low, wilson.high], abs=1e-12)
    assert result.auroc_ci[0] <= result.auroc <= result.auroc_ci[1]
    assert result.auroc_ci == pytest.approx(auroc_interval(
        np.array(prob), np.array(prob_clean), paired=False, confidence=0.9, seed=1), abs=1e-9)
