"""Edges of the saliency statistics that mutation testing showed untested."""

import numpy as np
import pytest

from audit.errors import AuditError
from audit.analyses.saliency.entropy import choose_levels, neighbour_pairs, spatial_entropy
from audit.analyses.saliency.stats import (
    auroc, detector_auroc, fit_logistic, spearman, stratified_split, superization_index,
)


def test_spearman_of_two_points_is_plus_or_minus_one():
    # two ranks centred are -1/2 and 1/2: the denominator is 1/2, below 1, and still a valid correlation
    assert spearman([0.0, 1.0], [3.0, 7.0]) == pytest.approx(1.0)
    assert spearman([0.0, 1.0], [7.0, 3.0]) == pytest.approx(-1.0)


def test_spearman_names_the_side_with_a_nan_and_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="^x contain NaN"):
        spearman([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="^y contain NaN"):
        spearman([1.0, 2.0], [np.inf, 2.0])
    with pytest.raises(ValueError, match="equal lengths, got 3 and 2"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


def test_superization_of_two_layers_has_an_index():
    assert superization_index([4.0, 3.0]).index == pytest.approx(-1.0)
    assert superization_index([3.0, 4.0]).differences == (1.0,)


def test_superization_refuses_a_nan_profile_by_name():
    with pytest.raises(ValueError, match="^entropy profile contain NaN"):
        superization_index([1.0, np.nan])


def _literal_auroc(pos, neg):
    return np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg])


def test_detector_standardises_with_the_training_split_and_fits_with_the_given_l2():
    # columns on very different scales, one of them constant: the weights are those of the standardised fit
    rng = np.random.default_rng(5)
    scale = np.array([1000.0, 0.01, 1.0])
    shift = np.array([500.0, -3.0, 0.0])
    clean = rng.normal(size=(60, 3)) * scale + shift
    adv = (rng.normal(size=(48, 3)) + [0.8, -0.5, 0.0]) * scale + shift
    clean[:, 2] = adv[:, 2] = 7.0
    result = detector_auroc(clean, adv, seed=3, test_fraction=0.25, l2=0.5)
    tr_c, te_c, tr_a, te_a = stratified_split(60, 48, 0.25, 3)
    train = np.vstack([clean[tr_c], adv[tr_a]])
    mean = np.array([train[:, k].mean() for k in range(3)])
    spread = np.array([train[:, k].std() or 1.0 for k in range(3)])
    weights, intercept = fit_logistic((train - mean) / spread, [0] * len(tr_c) + [1] * len(tr_a), l2=0.5)
    assert np.allclose(result.weights, weights, atol=1e-9)
    assert result.weights[2] == 0.0  # the constant column is scaled by 1, left at zero, never NaN
    score = lambda rows: ((rows - mean) / spread) @ weights + intercept  # noqa: E731
    assert result.auroc == pytest.approx(_literal_auroc(score(adv[te_a]), score(clean[te_c])))


def test_detector_needs_ten_per_side_in_each_split_and_ten_suffice():
    rng = np.random.default_rng(6)
    enough = detector_auroc(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 1, seed=0, test_fraction=0.5)
    assert (enough.n_test_clean, enough.n_train_adv) == (10, 10) and enough.auroc is not None
    short = detector_auroc(rng.normal(size=(19, 2)), rng.normal(size=(20, 2)), seed=0, test_fraction=0.5)
    assert short.auroc is None and "need 10 per side" in short.reason


def test_detector_and_auroc_input_errors_name_their_side():
    good = np.zeros((20, 2))
    with pytest.raises(ValueError, match=r"^clean features must be a finite \(N, L\) array"):
        detector_auroc(np.zeros((20, 2, 2)), good, seed=0)
    with pytest.raises(ValueError, match=r"^adversarial features must be a finite \(N, L\) array"):
        detector_auroc(good, np.full((20, 2), np.nan), seed=0)
    with pytest.raises(ValueError, match="clean has 2 features per sample, adversarial 3"):
        detector_auroc(good, np.zeros((20, 3)), seed=0)
    with pytest.raises(ValueError, match="^positive scores contain NaN"):
        auroc([np.nan], [1.0])
    with pytest.raises(ValueError, match="^negative scores contain NaN"):
        auroc([1.0], [np.inf])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_fraction_must_lie_strictly_between_zero_and_one(fraction):
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\)"):
        stratified_split(10, 10, fraction, 0)


def _literal_glcm_entropy(m, levels, offsets):
    s = (m - m.min()) / (m.max() - m.min())
    q = np.minimum(np.floor(s * levels).astype(int), levels - 1)
    counts = np.zeros((levels, levels))
    h, w = q.shape
    for dy, dx in offsets:
        for i in range(h):
            for j in range(w):
                if 0 <= i + dy < h and 0 <= j + dx < w:
                    counts[q[i, j], q[i + dy, j + dx]] += 1
                    counts[q[i + dy, j + dx], q[i, j]] += 1
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_glcm_with_leftward_offsets_matches_a_literal_loop():
    maps = np.random.default_rng(11).random((3, 6, 7))
    offsets = ((1, -1), (0, -2))
    got = spatial_entropy(maps, levels=4, offsets=offsets)
    np.testing.assert_allclose(got, [_literal_glcm_entropy(m, 4, offsets) for m in maps], rtol=0, atol=1e-9)


def test_levels_at_the_boundary_and_pairs_of_offsets_beyond_the_map():
    assert neighbour_pairs(2, 22) == 64 and choose_levels(2, 22) == 4  # 4^2 = 64 / 4 exactly: L = 4 is allowed
    assert neighbour_pairs(3, 3, [(5, 0)]) == 0 and neighbour_pairs(3, 3, [(0, -5)]) == 0


def test_entropy_input_forms_and_errors():
    maps = np.random.default_rng(12).random((2, 5, 5))
    assert np.array_equal(spatial_entropy(maps.tolist()), spatial_entropy(maps))  # nested lists are converted
    # offsets belong to the glcm method only: other methods ignore them
    assert spatial_entropy(maps, method="histogram", offsets=[(0, 0)]).shape == (2,)
    assert not np.signbit(spatial_entropy(np.ones((1, 4, 4)))).any()  # a constant map: 0.0, not -0.0
    with pytest.raises(ValueError, match=r"^saliency maps must have at least one pixel, got shape \(1, 3, 0\)$"):
        spatial_entropy(np.zeros((1, 3, 0)))
    with pytest.raises(AuditError, match="^entropy levels must be an integer >= 2, got 2.5$"):
        spatial_entropy(maps, levels=2.5)
    with pytest.raises(AuditError, match="choose one of glcm, histogram, 2d$"):
        spatial_entropy(maps, method="shannon")
    with pytest.raises(ValueError, match="^saliency maps contain NaN or infinite values$"):
        spatial_entropy(np.full((1, 3, 3), np.nan))
