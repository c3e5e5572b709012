"""The semantic-window math against literal loops and known answers."""

import numpy as np
import pytest
from scipy import stats

from audit.analyses.semantics import (
    flip_layer,
    one_vs_two,
    permutation_pvalues,
    profile,
    rsa,
    severity,
    similarity,
    two_vs_two,
)
from audit.stats import fdr_bh
from audit.analyses.semantics.leave_two_out import TIE, WordSide, pair_margins


def _r(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(a, b)[0, 1]


def loop_margins(a, b):
    """The 2 vs 2 test written out: every pair, columns i and j dropped, four Pearson r."""
    n = len(a)
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            keep = [k for k in range(n) if k not in (i, j)]
            ai, aj, bi, bj = a[i, keep], a[j, keep], b[i, keep], b[j, keep]
            out.append(_r(ai, bi) + _r(aj, bj) - _r(ai, bj) - _r(aj, bi))
    return np.array(out)


def loop_two_vs_two(a, b):
    return float(np.mean(loop_margins(a, b) > TIE))


def sim(rng, n, d):
    return np.corrcoef(rng.standard_normal((n, d)))


@pytest.mark.parametrize("n", [5, 6, 9, 26])
def test_two_vs_two_equals_literal_loop_on_random_matrices(n):
    rng = np.random.default_rng(n)
    for a, b in [(rng.random((n, n)), rng.random((n, n))), (sim(rng, n, 7), sim(rng, n, 3))]:
        ref = loop_margins(a, b)
        assert np.abs(pair_margins(a, b) - ref).max() < 1e-12
        assert np.abs(ref).min() > 1e-6  # no near-ties: a plain ``> 0`` decides the same
        assert abs(two_vs_two(a, b) - float(np.mean(ref > 0))) < 1e-12


def test_two_vs_two_four_classes_ties_are_failures():
    # two columns remain, so every r is +1 or -1 and margins are exact ties or multiples of 2
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.random((4, 4)), rng.random((4, 4))
        assert np.allclose(pair_margins(a, b), loop_margins(a, b), atol=1e-9)
        assert two_vs_two(a, b) == loop_two_vs_two(a, b)


def test_two_vs_two_known_answers():
    rng = np.random.default_rng(0)
    s = sim(rng, 12, 5)
    assert two_vs_two(s, s) == 1.0
    assert two_vs_two(s, s.copy() * 3 + 1) == 1.0  # Pearson r ignores scale and offset per row
    assert two_vs_two(s, s) == loop_two_vs_two(s, s)


def test_two_vs_two_label_permuted_copy_is_at_chance():
    rng = np.random.default_rng(1)
    scores = []
    for _ in range(300):
        s = sim(rng, 14, 6)
        perm = rng.permutation(14)
        scores.append(two_vs_two(s, s[perm][:, perm]))
    assert abs(np.mean(scores) - 0.5) < 0.02


def test_two_vs_two_constant_row_counts_as_failure_like_the_loop():
    rng = np.random.default_rng(2)
    a, b = sim(rng, 7, 4), sim(rng, 7, 4)
    a[2] = 0.3  # row 2 is constant: its r is undefined
    ref = loop_margins(a, b)
    assert np.isnan(ref).any()
    assert two_vs_two(a, b) == float(np.mean(ref > 0))


def test_two_vs_two_rejects_bad_shapes():
    with pytest.raises(ValueError):
        two_vs_two(np.eye(3), np.eye(3))
    with pytest.raises(ValueError):
        two_vs_two(np.eye(5), np.eye(6))


def literal_perms(n, n_perm, seed):
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(n_perm)]


def clear_of_ties(nets, word, perms=()):
    """Every 2 vs 2 decision of each network against ``word`` (and its relabellings) is further from a tie than
    rounding can move it: the batched, threaded and literal computations sum in other orders, and their counts
    agree exactly only because of this (checked, not assumed)."""
    for perm in [np.arange(len(word)), *perms]:
        for s in nets:
            assert np.abs(pair_margins(s, word[perm][:, perm]) - TIE).min() > 1e-11


@pytest.mark.parametrize("n, word_dim", [(9, 4), (40, 5)])  # (40, 5): the word side takes its low-rank path
def test_permutation_null_equals_literal_two_vs_two_of_permuted_word_matrix(n, word_dim, numerics):
    rng = np.random.default_rng(3)
    nets = [sim(rng, n, 6), sim(rng, n, 12)]
    word = sim(rng, n, word_dim)
    assert (WordSide.of(word, factor=True).u_t is not None) == (n == 40)
    clear_of_ties(nets, word, literal_perms(n, 12, 5))
    res = permutation_pvalues(nets, word, n_perm=12, seed=5)
    for k, perm in enumerate(literal_perms(n, 12, 5)):
        wp = word[perm][:, perm]
        assert np.allclose(res.null[k], [two_vs_two(s, wp) for s in nets], atol=1e-12)
    obs = np.array([two_vs_two(s, word) for s in nets])
    assert np.array_equal(res.observed, obs)
    assert np.array_equal(res.p_values, (1 + (res.null >= obs).sum(axis=0)) / 13)
    threaded = permutation_pvalues(nets, word, n_perm=12, seed=5, workers=2)
    assert np.array_equal(threaded.null, res.null)


def test_permutation_pvalue_is_small_for_a_matching_layer_and_not_for_noise():
    rng = np.random.default_rng(4)
    word = sim(rng, 16, 5)
    noise = sim(rng, 16, 5)
    res = permutation_pvalues([word + 0.01 * noise, noise], word, n_perm=200, seed=0)
    assert res.p_values[0] == 1 / 201
    assert res.p_values[1] > 0.05


def test_rsa_and_its_null_against_scipy():
    rng = np.random.default_rng(6)
    a, b = sim(rng, 10, 3), sim(rng, 10, 3)
    iu = np.triu_indices(10, 1)
    assert rsa(a, b) == pytest.approx(stats.spearmanr(a[iu], b[iu]).statistic, abs=1e-12)
    res = permutation_pvalues([a], b, n_perm=6, seed=2, metric="rsa")
    for k, perm in enumerate(literal_perms(10, 6, 2)):
        assert res.null[k, 0] == pytest.approx(rsa(a, b[perm][:, perm]), abs=1e-12)


def literal_bh(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    q = [0.0] * m
    for rank, i in enumerate(order, start=1):
        q[i] = min([1.0] + [p[order[k]] * m / (k + 1) for k in range(rank - 1, m)])
    return np.array(q)


def test_fdr_bh_against_literal_and_scipy():
    rng = np.random.default_rng(7)
    p = np.concatenate([rng.random(9), [0.001, 0.001, 0.04]])
    assert np.allclose(fdr_bh(p), literal_bh(list(p)), atol=1e-15)
    assert np.allclose(fdr_bh(p), stats.false_discovery_control(p), atol=1e-15)
    assert fdr_bh([]).size == 0


def test_similarity_and_profile_are_pearson():
    rng = np.random.default_rng(8)
    reps, imgs = rng.standard_normal((5, 11)), rng.standard_normal((3, 11))
    assert np.allclose(similarity(reps), np.corrcoef(reps), atol=1e-12)
    expect = [[_r(x, c) for c in reps] for x in imgs]
    assert np.allclose(profile(imgs, reps), expect, atol=1e-12)


def loop_one_vs_two(prof, w, s, t):
    out = []
    for k in range(len(prof)):
        ref = [c for c in range(w.shape[0]) if c not in (s[k], t[k])]
        out.append(_r(prof[k, ref], w[s[k], ref]) > _r(prof[k, ref], w[t[k], ref]))
    return np.array(out)


def loop_one_vs_two_margins(prof, w, s, t):
    margins = []
    for k in range(len(prof)):
        ref = [c for c in range(w.shape[0]) if c not in (s[k], t[k])]
        margins.append(_r(prof[k, ref], w[s[k], ref]) - _r(prof[k, ref], w[t[k], ref]))
    return np.array(margins)


def test_one_vs_two_against_loop_and_known_answer(numerics):
    rng = np.random.default_rng(9)
    w = sim(rng, 8, 3)
    prof = rng.uniform(-1, 1, (50, 8))
    s = rng.integers(0, 8, 50)
    t = (s + rng.integers(1, 8, 50)) % 8
    assert np.abs(loop_one_vs_two_margins(prof, w, s, t)).min() > 1e-9  # no decision within rounding of a tie
    assert np.array_equal(one_vs_two(prof, w, s, t), loop_one_vs_two(prof, w, s, t))
    # an image whose profile is its source's word row is source-like; its target's, not
    assert one_vs_two(w[[2]], w, np.array([2]), np.array([5]))[0]
    assert not one_vs_two(w[[5]], w, np.array([2]), np.array([5]))[0]
    with pytest.raises(ValueError):
        one_vs_two(prof[:1], w, np.array([1]), np.array([1]))


def test_flip_layer():
    assert flip_layer([0.9, 0.7, 0.5, 0.4, 0.2]) == 3
    assert flip_layer([0.9, 0.8]) is None
    assert flip_layer([float("nan"), 0.3]) == 1
    assert flip_layer([]) is None


# --- the 1 vs 2 statistics and the flip rule ------------------------------------------------------------------

# per layer: both source-like, the adversarial only, the clean version only, neither
TABLE = np.array([[20, 4, 5, 1], [5, 2, 15, 8], [0, 0, 25, 5]])


def test_one_vs_two_statistics_equal_scipy_binomtest_on_a_literal_table():
    from math import comb

    from audit.analyses.semantics import one_vs_two_statistics

    out = one_vs_two_statistics(TABLE, 0.95)
    n = 30
    assert out["n"] == n
    for i, (both, adv_only, clean_only, _) in enumerate(TABLE):
        k_adv, k_clean = both + adv_only, both + clean_only
        assert out["source_like"][i] == k_adv / n and out["source_like_clean"][i] == k_clean / n
        assert out["p_below_half"][i] == pytest.approx(stats.binomtest(k_adv, n, 0.5, alternative="less").pvalue)
        assert out["p_clean_above_half"][i] == pytest.approx(
            stats.binomtest(k_clean, n, 0.5, alternative="greater").pvalue)
        assert out["p_vs_clean"][i] == pytest.approx(
            stats.binomtest(clean_only, clean_only + adv_only, 0.5, alternative="greater").pvalue)
        ci = stats.binomtest(k_adv, n).proportion_ci(0.95, method="wilson")
        assert out["source_like_ci"][i] == pytest.approx([ci.low, ci.high])
        assert out["source_like_ci"][i][0] <= k_adv / n <= out["source_like_ci"][i][1]
    # by hand, layer 1: 7 of 30 adversarials source-like, P[X <= 7], X ~ Binomial(30, 1/2); McNemar b = 15
    # (clean only), c = 2 (adversarial only): P[X >= 15], X ~ Binomial(17, 1/2) = (136 + 17 + 1) / 2^17
    assert out["p_below_half"][1] == pytest.approx(sum(comb(30, k) for k in range(8)) / 2 ** 30, rel=1e-12)
    assert out["p_vs_clean"][1] == pytest.approx(154 / 2 ** 17, rel=1e-12)
    # layer 0: the adversarials are more often source-like than their clean versions (b = 5, c = 4): no evidence
    assert out["p_vs_clean"][0] == pytest.approx(sum(comb(9, k) for k in range(5, 10)) / 2 ** 9)
    # Benjamini-Hochberg across the three layers, written out
    for p_key, q_key in (("p_below_half", "q_below_half"), ("p_vs_clean", "q_vs_clean"),
                         ("p_clean_above_half", "q_clean_above_half")):
        p = np.array(out[p_key])
        order = np.argsort(p)
        q = np.empty(3)
        for rank, at in enumerate(order, start=1):
            q[at] = min([1.0] + [p[order[j]] * 3 / (j + 1) for j in range(rank - 1, 3)])
        assert out[q_key] == pytest.approx(q.tolist())


def test_one_vs_two_statistics_of_nothing_scored_and_of_inconsistent_counts():
    from audit.analyses.semantics import one_vs_two_statistics, read_flip

    empty = one_vs_two_statistics(np.zeros((2, 4), dtype=int))
    assert empty["n"] == 0 and empty["source_like_ci"] == [None, None] and empty["q_vs_clean"] == [None, None]
    assert read_flip(empty, ["a", "b"]).status == "not_measured"
    with pytest.raises(ValueError):
        one_vs_two_statistics(np.array([[1, 0, 0, 0], [1, 1, 0, 0]]))


def test_the_flip_layer_is_the_first_where_both_tests_are_significant():
    from audit.analyses.semantics import one_vs_two_statistics, read_flip

    out = one_vs_two_statistics(TABLE)
    # layer 1: 7/30 vs 20/30 (McNemar q < 0.05) and below one half (q < 0.05); layer 2 also, but later
    assert out["q_vs_clean"][1] < 0.05 and out["q_below_half"][1] < 0.05
    reading = read_flip(out, ["a", "b", "c"], 0.05)
    assert reading.status == "flip" and reading.layer == 1 and reading.note == ""
    # the clean versions significantly above one half: 25/30, 20/30 (p 0.049, the largest of three: q = p), 25/30
    assert reading.informative == (0, 1, 2)
    assert out["q_clean_above_half"][1] == pytest.approx(out["p_clean_above_half"][1], rel=1e-12)
    # a stricter alpha: the flip moves to the layer where both tests are stronger
    strict = read_flip(out, ["a", "b", "c"], 0.001)
    assert strict.layer == 2 and out["q_vs_clean"][1] >= 0.001
    # a layer below one half and below its clean versions, but not significantly so: no flip
    weak = one_vs_two_statistics(np.array([[9, 1, 1, 1], [3, 1, 4, 4]]))
    reading = read_flip(weak, ["a", "b"])
    assert reading.layer is None and reading.status == "inconclusive" and reading.informative == (0,)
    assert reading.note.startswith("inconclusive: 12 adversarials; at b, 0.33 of them are source-like, but that is "
                                   "not significantly fewer than their clean versions (0.58; McNemar q = ")
    assert " and their share is not significantly below one half (q = " in reading.note
    assert "no power" not in reading.note
    # every layer at least half source-like
    high = read_flip(one_vs_two_statistics(np.array([[20, 5, 0, 0], [12, 2, 6, 5]])), ["a", "b"])
    assert high.status == "inconclusive" and high.note == ("inconclusive: 25 adversarials; their source-like share "
                                                           "is at least one half at every layer (lowest 0.56, at b)")
    with pytest.raises(ValueError):
        read_flip(out, ["a", "b"])


def test_no_flip_layer_from_eleven_adversarials_whose_clean_versions_score_027():
    """The issue's case: the demo's adversarially trained twin named features.1 from 11 adversarials whose clean
    versions were source-like 0.27 of the time at that layer."""
    from audit.analyses.semantics import one_vs_two_statistics, read_flip

    names = ["features.0", "features.1", "features.4", "classifier.1", "classifier.3"]
    table = np.array([[4, 2, 2, 3], [1, 1, 2, 7], [3, 2, 3, 3], [5, 1, 2, 3], [6, 2, 1, 2]])
    out = one_vs_two_statistics(table)
    assert out["n"] == 11 and out["source_like"][1] == pytest.approx(2 / 11)
    assert out["source_like_clean"][1] == pytest.approx(3 / 11)
    assert flip_layer(out["source_like"]) == 1  # the old rule named features.1
    reading = read_flip(out, names, 0.05)
    assert reading.layer is None and reading.status == "no_power" and reading.informative == ()
    assert reading.note.startswith("inconclusive: 11 adversarials; at features.1, 0.18 of them are source-like, "
                                   "but the clean versions are not source-like at this layer either (0.27)")
    assert reading.note.endswith("the test has no power on this model and class set: the clean versions are "
                                 "significantly source-like (above one half) at no layer (at most 0.64)")


def test_severity_literal_and_normalised():
    rng = np.random.default_rng(10)
    w = rng.standard_normal((6, 4))
    true, pred = rng.integers(0, 6, 20), rng.integers(0, 6, 20)

    def dist(i, j):
        return 1 - w[i] @ w[j] / np.linalg.norm(w[i]) / np.linalg.norm(w[j])

    mean = np.mean([dist(i, j) for i in range(6) for j in range(i + 1, 6)])
    assert np.allclose(severity(w, true, pred), [dist(a, b) / mean for a, b in zip(true, pred, strict=True)], atol=1e-12)
    i, j = np.triu_indices(6, 1)
    assert severity(w, i, j).mean() == pytest.approx(1.0)
    assert np.all(severity(w, np.arange(6), np.arange(6)) == pytest.approx(0.0, abs=1e-12))


def test_package_import_is_light():
    import subprocess
    import sys

    code = "import sys, audit.analyses.semantics; bad = {'gensim', 'torch'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


@pytest.mark.parametrize("n", [4, 7, 12])
def test_batched_relabellings_count_what_one_relabelling_at_a_time_counts(n, numerics):
    from audit.analyses.semantics.leave_two_out import (
        NetSide, WordSide, count_successes, margin_matrix, successes_relabelled,
    )

    rng = np.random.default_rng(n)
    net = NetSide.of(similarity(rng.normal(size=(n, 16))))
    word = WordSide.of(similarity(rng.normal(size=(n, 6))), factor=True)
    invs = np.array([rng.permutation(n) for _ in range(50)])
    for inv in invs:  # the counts are compared exactly: no pair's margin lies within rounding of the TIE line
        m = margin_matrix(net, word, inv)  # (with 4 classes exact ties occur: 0 give or take 1e-14, clear of it)
        assert np.abs((m + m.T)[np.triu_indices(n, 1)] - TIE).min() > 1e-11
    one_by_one = [count_successes(margin_matrix(net, word, inv)) for inv in invs]
    assert successes_relabelled(net, word, invs).tolist() == one_by_one
    assert len(set(one_by_one)) > 1  # the relabellings really differ
