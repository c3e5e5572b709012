"""Edges of the semantic-window math that mutation testing showed untested: input checks of the 1 vs 2 test."""

import numpy as np
import pytest

from audit.analyses.semantics import one_vs_two, permutation_pvalues, profile, rsa, severity, similarity, two_vs_two
from audit.analyses.semantics.leave_two_out import SMALL, TIE, WordSide, count_successes
from tests.test_semantics import clear_of_ties

W = np.corrcoef(np.random.default_rng(3).normal(size=(6, 5)))  # a 6-class word similarity matrix
PROF = np.random.default_rng(4).uniform(-1, 1, (3, 6))
S, T = np.array([0, 1, 2]), np.array([3, 4, 5])


def test_one_vs_two_accepts_well_formed_input():
    assert one_vs_two(PROF, W, S, T).shape == (3,)


@pytest.mark.parametrize("prof, s, t", [
    (PROF[0], S[:1], T[:1]),  # one profile, not images x classes
    (PROF[:, :5], S, T),  # five columns for six classes
    (PROF, S[:2], T[:2]),  # two sources and targets for three images
    (PROF, S, T[:2]),  # one target short
])
def test_one_vs_two_refuses_malformed_shapes(prof, s, t):
    with pytest.raises(ValueError, match="^profiles must be images x classes, with one source and one target per image$"):
        one_vs_two(prof, W, s, t)


def test_one_vs_two_refuses_a_prediction_equal_to_the_truth():
    with pytest.raises(ValueError, match="^the 1 vs 2 test needs a predicted class that differs from the true class$"):
        one_vs_two(PROF, W, S, np.array([3, 1, 5]))


def test_severity_works_with_two_classes_and_refuses_one():
    # two classes: the mean distance is their own distance, so their confusion has severity exactly 1
    w = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert severity(w, np.array([0, 1]), np.array([1, 0])) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="^severity needs at least two class vectors$"):
        severity(w[:1], np.array([0]), np.array([0]))

    with pytest.raises(ValueError, match="^a class word vector is zero$"):
        severity(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), np.array([0]), np.array([2]))


def test_profile_and_severity_stay_in_range_where_rounding_would_leave_it():
    # for about a third of these rows the unit vector's dot product with itself rounds to 1 + 2^-52
    x = np.random.default_rng(0).normal(size=(200, 7))
    same, opposite = np.diagonal(profile(x, x)), np.diagonal(profile(x, -x))
    assert np.all(same <= 1.0) and np.all(opposite >= -1.0)
    both = similarity(np.vstack([x, -x]))
    assert both.max() <= 1.0 and both.min() >= -1.0  # Pearson r, rounding included
    assert np.all(severity(x, np.arange(200), np.arange(200)) >= 0.0)  # 1 - cos, never below 0


def test_rsa_refuses_matrices_of_different_shapes():
    with pytest.raises(ValueError, match=r"^the similarity matrices differ in shape: \(3, 3\) vs \(4, 4\)$"):
        rsa(np.eye(3), np.eye(4))


def test_count_successes_over_several_row_blocks_equals_a_direct_count():
    # 200 classes: more than one block of rows (the blocks hold 2^15 / n rows), so the off-diagonal tiles count
    rng = np.random.default_rng(7)
    d = rng.normal(size=(200, 200))
    d[3, 150], d[150, 3] = TIE, 0.0  # a margin of exactly TIE is a tie, not a success
    d[5, 5] = 1.0  # the diagonal is no pair
    d[7, 190] = np.nan  # NaN is a failure
    i, j = np.triu_indices(200, 1)
    expected = sum(bool(d[a, b] + d[b, a] > TIE) for a, b in zip(i, j, strict=True))
    assert count_successes(d) == expected


@pytest.mark.parametrize("word_dim", [5, 60])  # 5: the word side takes its low-rank path; 60: full rank
def test_permutation_null_above_the_batched_size_equals_the_literal_relabelling(word_dim, numerics):
    # more than SMALL classes: one margin matrix per permutation (threaded or not), not the batched relabelling
    n = SMALL + 6
    rng = np.random.default_rng(21)
    nets = [np.corrcoef(rng.standard_normal((n, 8))), np.corrcoef(rng.standard_normal((n, 30)))]
    word = np.corrcoef(rng.standard_normal((n, word_dim)))
    assert (WordSide.of(word, factor=True).u_t is not None) == (word_dim == 5)
    draw = np.random.default_rng(4)
    clear_of_ties(nets, word, [draw.permutation(n) for _ in range(3)])  # the counts below are compared exactly
    res = permutation_pvalues(nets, word, n_perm=3, seed=4)
    draw = np.random.default_rng(4)
    for k in range(3):
        perm = draw.permutation(n)
        assert np.allclose(res.null[k], [two_vs_two(s, word[perm][:, perm]) for s in nets], atol=1e-12)
    assert np.array_equal(permutation_pvalues(nets, word, n_perm=3, seed=4, workers=2).null, res.null)
