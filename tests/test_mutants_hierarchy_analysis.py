"""Exact tests written against the surviving mutants of the hierarchy analysis's measures, the coarse-robustness
functions and the score's severity component (docs/mutation.md, "Issue 20's analyses, spaces, targets and
severity"): the analysis fed hand-made batches (no model, no audit), its section against the literal loop of
``test_hierarchy_audit.py``, the Wilcoxon and chi-square verdicts against scipy and hand counts, and the severity
detail lines word for word."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import torch

from audit.analyses.base import Batch
from audit.analyses.hierarchy.analysis import METHOD, HierarchyAnalysis, _topk, _versus_chance
from audit.analyses.semantics.wordnet import load_builtin
from audit.stats import bootstrap_interval, proportion_interval
from tests.test_hierarchy_audit import check, expected_section

FGSM = SimpleNamespace(key="fgsm@0.1", spec=SimpleNamespace(name="fgsm", bounded=True), eps=0.1, eps_text="0.1")
DEEPFOOL = SimpleNamespace(key="deepfool", spec=SimpleNamespace(name="deepfool", bounded=False), eps=None,
                           eps_text=None)


def logits_for(predicted, seed: int) -> np.ndarray:
    """float64 logits whose argmax is ``predicted`` (noise below a margin of 5 on the chosen class)."""
    rng = np.random.default_rng(seed)
    out = rng.uniform(0, 1, size=(len(predicted), 10))
    out[np.arange(len(predicted)), predicted] += 5
    return out


def section(analysis, y, clean, advs, sizes):
    """Feed the batches (``sizes`` samples each; per batch the clean logits, then each run's in ``advs``' order)
    and return the section ``finish`` writes."""
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        analysis.on_clean(Batch(x=None, y=torch.from_numpy(y[part]), logits=torch.from_numpy(clean[part])))
        for run, logits in advs:
            analysis.on_adversarial(run, Batch(x=None, y=torch.from_numpy(y[part]),
                                               logits=torch.from_numpy(logits[part])))
        start += size
    assert start == len(y)
    result = SimpleNamespace(analyses={})
    analysis.finish(result)
    return result.analyses["hierarchy"]


# --- the analysis fed batches: the section against the literal loop -------------------------------------------------

def test_two_runs_fed_out_of_order_in_uneven_batches_equal_the_literal_loop_in_the_audits_order():
    syn = load_builtin("fashion-mnist")
    rng = np.random.default_rng(5)
    # 70 samples; the last class (Ankle boot, 9) only in the first batch, so a batch's per-class counts must keep
    # every class's slot; clean: about half right; the runs: broken samples spread over every class
    y = np.concatenate([[9, 9, 9], rng.integers(0, 9, 67)]).astype(np.int64)
    clean = logits_for(np.where(rng.uniform(size=70) < 0.5, y, rng.integers(0, 10, 70)), 1)
    fgsm = logits_for(np.where(rng.uniform(size=70) < 0.3, y, rng.integers(0, 10, 70)), 2)
    deepfool = logits_for(rng.integers(0, 10, 70), 3)
    # fed DeepFool first: the section lists the runs in the audit's order (FGSM, then DeepFool)
    sec = section(HierarchyAnalysis(syn, runs=[FGSM, DEEPFOOL]), y, clean, [(DEEPFOOL, deepfool), (FGSM, fgsm)],
                  [10, 60])
    assert [r["attack"] for r in sec["adversarial"]] == ["fgsm", "deepfool"]
    assert [(r["eps"], r["eps_text"], r["accuracy_of"]) for r in sec["adversarial"]] == [
        (0.1, "0.1", "robust accuracy"), (None, None, "failure rate")]
    check(sec["clean"], expected_section(y, clean))
    assert sec["clean"]["accuracy_of"] == "accuracy"
    for run, logits in zip(sec["adversarial"], (fgsm, deepfool), strict=True):
        check(run, expected_section(y, clean, logits))
    assert sec["method"] == METHOD and sec["label_set"] == "fashion-mnist" and sec["source"] == syn.source
    assert (sec["n_classes"], sec["unmapped"], sec["max_height"]) == (10, {}, 4)
    assert (sec["confidence"], sec["alpha"], sec["seed"], sec["superclass_depth"]) == (0.95, 0.05, 0, 1)
    assert sec["superclass_level"] == {"how": "default", "depth": 1, "rule": (
        "depth 1 of the class tree (the default: the shallowest depth at which no superclass holds more than two "
        "thirds of the 10 classes; the largest holds 6)"), "nodes": None}
    assert sec["superclasses"] == [
        {"name": "clothing.n.01", "synset": syn.graph.lookup("clothing.n.01"),
         "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Shirt"]},
        {"name": "footwear.n.02", "synset": syn.graph.lookup("footwear.n.02"),
         "classes": ["Sandal", "Sneaker", "Ankle boot"]},
        {"name": "bag.n.04", "synset": syn.graph.lookup("bag.n.04"), "classes": ["Bag"]}]


def test_named_superclasses_list_their_nodes_and_the_other_group_in_the_section():
    syn = load_builtin("fashion-mnist")
    y = np.arange(10, dtype=np.int64)
    analysis = HierarchyAnalysis(syn, superclasses=["shoe.n.01", "footwear.n.02"])
    sec = section(analysis, y, logits_for(y, 8), [], [10])
    level = sec["superclass_level"]
    assert (level["how"], level["depth"], level["nodes"]) == ("--superclasses", None, ["shoe.n.01", "footwear.n.02"])
    assert [(g["name"], g["synset"], len(g["classes"])) for g in sec["superclasses"]] == [
        ("shoe.n.01", syn.graph.lookup("shoe.n.01"), 2), ("footwear.n.02", syn.graph.lookup("footwear.n.02"), 1),
        ("other", None, 7)]


def test_depth_1_is_a_level_and_unnamed_nodes_of_a_depth_are_labelled_by_their_wnid():
    from audit.analyses.hierarchy.coarse import choose_level

    syn = load_builtin("fashion-mnist")
    tree = HierarchyAnalysis(syn).tree
    level = choose_level(tree, {}, syn.graph.lookup, depth=1)
    wnids = tuple(syn.graph.lookup(n) for n in ("clothing.n.01", "footwear.n.02", "bag.n.04"))
    assert (level.depth, level.names, level.synsets) == (1, wnids, wnids)
    assert level.groups.tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 2, 1]


def test_the_seed_and_confidence_reach_every_interval_and_the_defaults_are_the_audits():
    syn = load_builtin("fashion-mnist")
    rng = np.random.default_rng(11)
    y = rng.integers(0, 10, 40).astype(np.int64)
    clean = logits_for(rng.integers(0, 10, 40), 4)
    sec = section(HierarchyAnalysis(syn, seed=11, confidence=0.8), y, clean, [], [40])
    want = expected_section(y, clean)
    entry = sec["clean"]
    assert (sec["confidence"], sec["alpha"], sec["seed"]) == (0.8, 0.2, 11)
    assert entry["mean_ci"] == bootstrap_interval(want["heights"], confidence=0.8, seed=11)
    # (seed 11 and seed 0 give different intervals here, so a dropped seed shows)
    assert bootstrap_interval(want["heights"], confidence=0.8, seed=0) != entry["mean_ci"]
    assert entry["difference_ci"] == bootstrap_interval(want["diffs"], confidence=0.8, seed=11)
    assert entry["same_superclass"]["ci"] == proportion_interval(want["same"], want["n"], 0.8)
    for t in entry["topk"]:
        assert t["ci"] == bootstrap_interval(sorted(want["top_values"][t["k"]]), confidence=0.8, seed=11)
    # the test across the three superclasses: its Monte Carlo p with the audit's seed, by a loop over the same draws
    test, rows = entry["superclass_test"], entry["by_superclass"]
    hits, sizes = np.array([r["correct"] for r in rows]), np.array([r["n"] for r in rows])
    assert test["p_value"] == monte_carlo_p(hits, sizes, 11) and test["statistic"] == pytest.approx(
        scipy.stats.chi2_contingency(np.stack([hits, sizes - hits], axis=1), correction=False).statistic, rel=1e-12)
    # the defaults: seed 0 and 95%, as an audit without --seed / --confidence
    default = section(HierarchyAnalysis(syn), y, clean, [], [40])
    assert (default["seed"], default["confidence"], default["alpha"]) == (0, 0.95, 0.05)
    assert default["clean"]["mean_ci"] == bootstrap_interval(want["heights"], confidence=0.95, seed=0)


def monte_carlo_p(hits, sizes, seed: int, draws: int = 9999) -> float:
    """The p of Pearson's statistic over tables with the observed margins (the same seeded draws), each table's
    statistic summed cell by cell from its expected counts."""
    def statistic(right):
        n, k = sizes.sum(), right.sum()
        total = 0.0
        for g in range(len(sizes)):
            for observed, expected in ((right[g], sizes[g] * k / n), (sizes[g] - right[g], sizes[g] * (n - k) / n)):
                total += (observed - expected) ** 2 / expected
        return total

    observed = statistic(hits)
    tables = np.random.default_rng(seed).multivariate_hypergeometric(sizes, int(hits.sum()), size=draws)
    extreme = sum(statistic(t) >= observed - 1e-9 for t in tables)
    return (1 + extreme) / (1 + draws)


def test_a_run_without_mistakes_reports_none_and_zero_counts():
    syn = load_builtin("fashion-mnist")
    y = np.arange(20, dtype=np.int64) % 10
    right = logits_for(y, 6)
    sec = section(HierarchyAnalysis(syn, runs=[FGSM]), y, right, [(FGSM, right)], [20])
    for entry in (sec["clean"], sec["adversarial"][0]):
        assert (entry["n"], entry["n_unscored"], entry["counts"]) == (0, 0, [0, 0, 0, 0, 0])
        assert entry["baseline_counts"] == [0.0] * 5
        assert {key: entry[key] for key in ("mean", "mean_ci", "median", "baseline_mean", "difference",
                                            "difference_ci", "p_value", "verdict", "same_superclass")} == {
            "mean": None, "mean_ci": None, "median": None, "baseline_mean": None, "difference": None,
            "difference_ci": None, "p_value": None, "verdict": "no mistakes", "same_superclass": None}
        assert [(r["name"], r["n"], r["correct"], r["mistakes"]["n"], r["mistakes"]["share"])
                for r in entry["by_superclass"]] == [("clothing.n.01", 12, 12, 0, None),
                                                     ("footwear.n.02", 6, 6, 0, None), ("bag.n.04", 2, 2, 0, None)]
        assert entry["superclass_test"]["verdict"] == "nothing to compare (every sample right)"
        # every sample's top-1 class is its own: distance 0; top 5 by a loop over the LCA heights
        assert [(t["k"], t["n"], t["mean"]) for t in entry["topk"]] == [(1, 20, 0.0), (5, 20, pytest.approx(
            np.mean([sum(sorted_top5(syn, right[i], int(y[i]))) / 5 for i in range(20)]), abs=1e-12))]


def sorted_top5(syn, logits, label):
    """The LCA heights of the five highest scored classes, by the literal loop's own heights."""
    from hierarchy_support import literal_lca
    from audit.analyses.semantics.hierarchy import build_tree

    tree = build_tree(syn.graph.hypernyms, list(syn.wnids))
    order = sorted(range(10), key=lambda c: (-logits[c], c))[:5]
    return [literal_lca(tree, label, c) for c in order]


def test_the_verdict_against_chance_by_the_rank_sums_and_scipy():
    # all at the baseline's height: no test
    assert _versus_chance(np.zeros(4), 0.05) == {
        "p_value": None, "verdict": "inconclusive at n = 4 (every mistake at the baseline's height)"}
    # one difference that is not zero is enough to test
    one = np.array([0.0, 0.0, 0.5])
    assert _versus_chance(one, 0.05) == {"p_value": scipy.stats.wilcoxon(one).pvalue,
                                         "verdict": "inconclusive at n = 3"}
    # the larger rank sum negative: milder; its mirror image worse
    d = np.array([0.1, 0.1, 0.1, -2.0, -2.0, -3.0, -3.0] * 3)
    p = scipy.stats.wilcoxon(d).pvalue
    assert p <= 0.05
    assert _versus_chance(d, 0.05) == {"p_value": p, "verdict": "milder than chance"}
    assert _versus_chance(-d, 0.05) == {"p_value": p, "verdict": "worse than chance"}
    assert _versus_chance(d, p) == {"p_value": p, "verdict": "milder than chance"}  # p <= alpha, at equality
    assert _versus_chance(d, p / 2)["verdict"] == "inconclusive at n = 21"
    # more negative differences (25 of 45) but the larger rank sum positive (20 values, each above every negative
    # one in |d|): the rank sums, not the counts, give the direction
    e = np.tile([-0.1] * 5 + [3.0] * 4, 5)
    ranks = scipy.stats.rankdata(np.abs(e))
    assert ranks[e > 0].sum() > ranks[e < 0].sum() and (e < 0).sum() > (e > 0).sum()
    assert _versus_chance(e, 0.05) == {"p_value": scipy.stats.wilcoxon(e).pvalue, "verdict": "worse than chance"}
    # positive differences below 1 and equal to 1 count on the positive side, and a difference of 1 is not zero
    for d in (np.tile([0.5] * 4 + [-0.1] * 2, 5), np.tile([1.0] * 4 + [-0.5] * 2, 5)):
        assert _versus_chance(d, 0.05) == {"p_value": scipy.stats.wilcoxon(d).pvalue, "verdict": "worse than chance"}


def test_the_top_k_mean_per_sample_and_an_empty_histogram():
    assert _topk(5, {}, 0.95, 0) == {"k": 5, "n": 0, "mean": None, "ci": None}
    # totals over the top 5: 0 (three samples), 10 (one), 7 (two): distances 0, 2, 1.4
    hist = {10: 1, 0: 3, 7: 2}
    values = [0.0, 0.0, 0.0, 1.4, 1.4, 2.0]
    out = _topk(5, hist, 0.9, 3)
    assert (out["k"], out["n"], out["mean"]) == (5, 6, pytest.approx(sum(values) / 6, abs=1e-15))
    assert out["ci"] == bootstrap_interval(values, confidence=0.9, seed=3)


# --- the score's severity component ---------------------------------------------------------------------------------

PGD = {"name": "pgd", "eps": 0.03, "eps_text": "8/255", "n_attacked": 40, "n_success": 30}


def tree_report(**entry) -> dict:
    run = {"attack": "pgd", "eps": 0.03, "n": 30, "mean": 2.5, "mean_ci": [2.0, 3.0], "baseline_mean": 2.0, **entry}
    return {"analyses": {"hierarchy": {"adversarial": [{"attack": "fgsm", "eps": 0.03, "mean": 9.0}, run]}}}


def test_the_severity_component_from_the_hierarchy_worked_by_hand():
    from audit.analyses.semantics.report import severity

    # 30 of 40 broken (75%), mean LCA height 2.5 against 2.0 by chance: severity 1.25, value 1 - 0.75 * 1.25 / 2
    assert severity(tree_report(), PGD) == (
        0.53125, "hierarchy: pgd@8/255 broke 75.0% of the clean-correct samples with mistakes of mean LCA height "
                 "2.50 [2.00,3.00] against 2.00 for a random wrong class: severity 1.25 (1 = as bad as a random "
                 "confusion; 30 errors scored)", {"n": 30, "too_few": False, "source": "hierarchy"})
    # 5.0 against 2.0 is capped at 2: 1 - 0.75 * 2 / 2; exactly 20 mistakes are enough
    value, detail, size = severity(tree_report(mean=5.0, n=20, mean_ci=None), PGD)
    assert value == 0.25 and size == {"n": 20, "too_few": False, "source": "hierarchy"}
    assert "height 5.00 against 2.00 for a random wrong class: severity 2.50 (" in detail
    # 19 are too few: left out, the source kept
    assert severity(tree_report(n=19), PGD) == (
        None, "hierarchy: only 19 errors of pgd@8/255 scored (mistakes of mean LCA height 2.50 [2.00,3.00] against "
              "2.00 for a random wrong class: severity 1.25; 1 = as bad as a random confusion); the component needs "
              "at least 20", {"n": 19, "too_few": True, "source": "hierarchy"})
    unscored = "no mistake of pgd@8/255 was scored in the class hierarchy (both classes need a synset)"
    assert severity(tree_report(mean=None), PGD) == (None, unscored)
    assert severity(tree_report(baseline_mean=0.0), PGD) == (None, unscored)
    assert severity(tree_report(), {**PGD, "n_success": 0}) == (1.0, "pgd@8/255 broke no clean-correct sample")
    assert severity(tree_report(), {**PGD, "n_attacked": 0, "n_success": 0}) == (
        None, "pgd@8/255 attacked no clean-correct sample")
    assert severity(tree_report(), {**PGD, "eps_text": None, "n_success": 0}) == (
        1.0, "pgd@min broke no clean-correct sample")


def test_the_severity_component_falls_back_to_the_word_vectors_and_says_why_not():
    from audit.analyses.semantics.report import severity

    words = {"severity": [{"attack": "pgd", "eps": 0.03, "mean": 0.8, "mean_ci": [0.6, 1.0], "n": 25}]}
    other_run = tree_report(attack="fgsm")["analyses"]["hierarchy"]  # no entry of the reference run
    for hierarchy in ({"skipped": "why"}, other_run, None):
        report = {"analyses": {"semantics": words, **({"hierarchy": hierarchy} if hierarchy else {})}}
        # 1 - 0.75 * 0.8 / 2
        assert severity(report, PGD) == (
            pytest.approx(0.7, abs=1e-15), "word vectors: pgd@8/255 broke 75.0% of the clean-correct samples with "
            "mean severity 0.80 [0.60,1.00] (1 = an average confusion between two classes; 25 errors scored)",
            {"n": 25, "too_few": False, "source": "word vectors"})
    report = {"analyses": {"semantics": {"severity": []}, "hierarchy": other_run}}
    assert severity(report, PGD) == (None, "no broken sample of pgd@8/255 has word vectors for both its classes")
    assert severity({"analyses": {"semantics": {"layers": []}}}, PGD) == (
        None, "no broken sample of pgd@8/255 has word vectors for both its classes")
    assert severity({"analyses": {"semantics": words, "hierarchy": tree_report()["analyses"]["hierarchy"]}},
                    None) == (None, "no attack run to read it at")
    assert severity({"analyses": {}}, PGD) == (
        None, "no semantic analysis in the report (no word vectors, or --layers none)")
    assert severity({"analyses": {"semantics": {"skipped": "no vectors"}}}, PGD) == (
        None, "semantic analysis skipped: no vectors")


# --- coarse robustness: the level, the rows, the test across superclasses -------------------------------------------

def kept(classes):
    """Fashion-MNIST's hierarchy with only ``classes`` mapped."""
    from tests.test_mutants_hierarchy import without

    syn = load_builtin("fashion-mnist")
    return HierarchyAnalysis(without(syn, [c for c in range(10) if c not in classes]))


def test_the_default_level_takes_a_superclass_of_exactly_two_thirds_and_one_class_is_depth_0():
    from audit.analyses.hierarchy.coarse import by_superclass, choose_level, default_depth, inside_share

    # T-shirt/top, Sandal, Shirt: at depth 1 shirt.n.01 holds 2 of the 3 classes, exactly two thirds: allowed
    three = kept([0, 5, 6])
    assert (three.tree.height[three.tree.root], default_depth(three.tree)) == (2, 1)
    level = three.level
    assert (level.groups.tolist(), level.names, level.depth, level.how) == ([0, 1, 0], ("shirt.n.01", "sandal.n.01"),
                                                                             1, "default")
    assert level.rule.endswith("more than two thirds of the 3 classes; the largest holds 2)")
    one = kept([0])
    assert default_depth(one.tree) == 0
    level = one.level
    assert (level.groups.tolist(), level.names, level.depth, level.rule) == (
        [0], ("jersey.n.03",), 0, "depth 0 (the default; a single class)")
    # one class: no chance share, no share inside
    [row] = by_superclass(level, np.array([4]), np.array([1]), np.array([0]), np.array([0]), 0.95)
    assert row["mistakes"]["chance"] is None and (row["n"], row["correct"], row["accuracy"]) == (4, 1, 0.25)
    assert inside_share(level, np.array([0]), np.array([0]), 0.95) is None
    syn = load_builtin("fashion-mnist")
    tree = HierarchyAnalysis(syn).tree
    level = choose_level(tree, syn.graph.names, syn.graph.lookup, depth=4)
    assert (level.depth, level.how, level.rule) == (4, "--superclass-depth", "depth 4 of the class tree "
                                                                             "(--superclass-depth)")
    # at the deepest depth every class is its own superclass, in the tree's preorder (node numbers)
    leaves = sorted(int(tree.leaf[c]) for c in range(10))
    assert level.groups.tolist() == [leaves.index(int(tree.leaf[c])) for c in range(10)]
    assert level.synsets == tuple(tree.synset[n] for n in leaves)
    assert level.names == tuple(syn.graph.names.get(tree.synset[n], tree.synset[n]) for n in leaves)
    from audit.errors import AuditError

    for depth in (0, 5):
        with pytest.raises(AuditError) as err:
            choose_level(tree, syn.graph.names, syn.graph.lookup, depth=depth)
        assert str(err.value) == (f"--superclass-depth {depth} is outside this audit's class tree: its depths below "
                                  "the root run from 1 to 4 (the root is depth 0)")


def test_two_classes_have_a_chance_share_and_a_share_inside():
    from audit.analyses.hierarchy.coarse import by_superclass, inside_share

    level = kept([0, 5]).level  # T-shirt/top and Sandal: one class per superclass at depth 1
    true, pred = np.array([0, 1, 1]), np.array([1, 0, 0])
    rows = by_superclass(level, np.array([5, 5]), np.array([4, 3]), true, pred, 0.95)
    assert [r["mistakes"] for r in rows] == [
        {"k": 0, "n": 1, "share": 0.0, "ci": proportion_interval(0, 1), "chance": 0.0},
        {"k": 0, "n": 2, "share": 0.0, "ci": proportion_interval(0, 2), "chance": 0.0}]
    assert inside_share(level, true, pred, 0.95) == {"k": 0, "n": 3, "share": 0.0, "ci": proportion_interval(0, 3),
                                                     "chance": 0.0}


def test_the_rows_per_superclass_worked_by_hand():
    from audit.analyses.hierarchy.coarse import by_superclass, inside_share

    level = kept([0, 5, 6]).level  # groups: T-shirt 0, Sandal 1, Shirt 0
    samples, correct = np.array([6, 0, 4]), np.array([3, 0, 1])
    # mistakes: T-shirt -> Shirt (inside), Shirt -> Sandal (out), Shirt -> T-shirt (inside)
    true, pred = np.array([0, 2, 2]), np.array([2, 1, 0])
    rows = by_superclass(level, samples, correct, true, pred, 0.9)
    assert rows == [
        {"name": "shirt.n.01", "n": 10, "correct": 4, "accuracy": 0.4, "accuracy_ci": proportion_interval(4, 10, 0.9),
         "mistakes": {"k": 2, "n": 3, "share": 2 / 3, "ci": proportion_interval(2, 3, 0.9), "chance": 0.5}},
        {"name": "sandal.n.01", "n": 0, "correct": 0, "accuracy": None, "accuracy_ci": None,
         "mistakes": {"k": 0, "n": 0, "share": None, "ci": None, "chance": 0.0}}]
    # of the three mistakes two stay inside; chance per mistake (size - 1) / 2: 1/2 for each (all from shirt.n.01)
    assert inside_share(level, true, pred, 0.9) == {"k": 2, "n": 3, "share": 2 / 3,
                                                    "ci": proportion_interval(2, 3, 0.9), "chance": 0.5}
    assert inside_share(level, true[:0], pred[:0], 0.9) is None


def test_the_test_across_superclasses_word_for_word():
    from audit.analyses.hierarchy.coarse import compare

    def row(name, n, k):
        return {"name": name, "n": n, "correct": k}

    empty = {"test": None, "statistic": None, "p_value": None, "lowest": None, "highest": None}
    assert compare([row("a", 5, 2), row("b", 0, 0)], 0.05, 0) == {
        **empty, "groups": 1, "n": 5, "verdict": "nothing to compare (samples in fewer than two superclasses)"}
    assert compare([row("a", 5, 0), row("b", 3, 0)], 0.05, 0) == {
        **empty, "groups": 2, "n": 8, "verdict": "nothing to compare (every sample wrong)"}
    assert compare([row("a", 5, 5), row("b", 3, 3)], 0.05, 0)["verdict"] == "nothing to compare (every sample right)"
    # two superclasses: Fisher's exact test; b (1 of 10) lowest, a (9 of 10) highest
    p = scipy.stats.fisher_exact([[9, 1], [1, 9]]).pvalue
    two = [row("a", 10, 9), row("empty", 0, 0), row("b", 10, 1)]
    fisher = {"test": "Fisher's exact test (two-sided)", "statistic": None, "p_value": p, "groups": 2, "n": 20}
    assert compare(two, 0.05, 0) == {**fisher, "lowest": "b", "highest": "a", "verdict": "differs across superclasses"}
    assert compare(two, p, 0)["verdict"] == "differs across superclasses"  # p <= alpha, at equality
    assert compare(two, p / 2, 0) == {**fisher, "lowest": None, "highest": None, "verdict": "inconclusive at n = 20"}
    # three: the chi-square statistic (scipy) and its Monte Carlo p (the loop above, same seed)
    # x has the lowest accuracy (3 of 20) but not the fewest right; z (5 of 6) the fewest samples
    hits, sizes = np.array([3, 9, 5]), np.array([20, 10, 6])
    three = [row("x", 20, 3), row("y", 10, 9), row("z", 6, 5)]
    out = compare(three, 0.05, 3)
    assert out["statistic"] == pytest.approx(scipy.stats.chi2_contingency(
        np.stack([hits, sizes - hits], axis=1), correction=False).statistic, rel=1e-12)
    assert out["p_value"] == monte_carlo_p(hits, sizes, 3) <= 0.05
    assert {k: out[k] for k in ("test", "groups", "n", "lowest", "highest", "verdict")} == {
        "test": "chi-square test, p by Monte Carlo (9999 tables with the observed margins)", "groups": 3, "n": 36,
        "lowest": "x", "highest": "y", "verdict": "differs across superclasses"}


# --- build: the analysis, the note, or bad input --------------------------------------------------------------------

def test_build_passes_the_level_seed_and_confidence_and_refuses_a_level_without_a_hierarchy():
    from audit.analyses.hierarchy.analysis import HierarchyOff, build
    from audit.errors import AuditError

    def context(synsets, **config):
        base = {"superclasses": None, "superclass_depth": None, "seed": 0, "confidence": 0.95}
        return SimpleNamespace(synsets=synsets, runs=[FGSM], config=SimpleNamespace(**{**base, **config}))

    syn = load_builtin("fashion-mnist")
    analysis = build(context(syn, seed=5, confidence=0.9, superclasses=[" shoe.n.01 ", "", "footwear.n.02"]))
    assert (analysis.seed, analysis.confidence, list(analysis.runs)) == (5, 0.9, ["fgsm@0.1"])
    assert analysis.level.names == ("shoe.n.01", "footwear.n.02", "other")
    assert build(context(syn, superclasses="shoe.n.01 , ")).level.names == ("shoe.n.01", "other")
    assert build(context(syn, superclass_depth=2)).level.depth == 2
    off = build(context(None))
    assert isinstance(off, HierarchyOff) and off.reason == "no class hierarchy was loaded"
    assert build(context("digits have no hierarchy")).reason == "digits have no hierarchy"
    for synsets, config, message in (
            (None, {"superclasses": "shoe.n.01"}, "--superclasses needs a class hierarchy, and this audit has none "
                                                  "(no class hierarchy was loaded)"),
            ("digits have no hierarchy", {"superclass_depth": 2}, "--superclass-depth needs a class hierarchy, and "
                                                                   "this audit has none (digits have no hierarchy)")):
        with pytest.raises(AuditError) as err:
            build(context(synsets, **config))
        assert str(err.value) == message
