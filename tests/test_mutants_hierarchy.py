"""Exact tests written against the surviving mutants of issue 20's modules (docs/mutation.md): the superclass
levels named by the user, the hierarchy analysis's tallies merging across processes, and the share-with-interval
format. Each expected value is worked out by hand or by a literal loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.analyses.hierarchy.analysis import HierarchyAnalysis, Tally
from audit.analyses.hierarchy.coarse import OTHER, choose_level
from audit.analyses.semantics.wordnet import ClassSynsets, load_builtin
from audit.errors import AuditError
from reports.formatting import pct_with


def level_of(label_set: str, **kw):
    syn = load_builtin(label_set)
    analysis = HierarchyAnalysis(syn, **kw)
    return analysis.level, [syn.classes[c] for c in analysis.mapped]


def groups_of(level, classes) -> dict[str, set[str]]:
    return {name: {classes[c] for c in np.flatnonzero(level.groups == g)} for g, name in enumerate(level.names)}


# --- --superclasses: named nodes ------------------------------------------------------------------------------------

def test_named_nodes_that_hold_every_class_leave_no_other_group():
    level, classes = level_of("cifar10", superclasses=["vertebrate.n.01", "vehicle.n.01"])
    assert level.names == ("vertebrate.n.01", "vehicle.n.01") and OTHER not in level.names
    assert None not in level.synsets and level.groups.dtype == np.int64
    assert groups_of(level, classes) == {"vertebrate.n.01": {"bird", "cat", "deer", "dog", "frog", "horse"},
                                         "vehicle.n.01": {"airplane", "automobile", "ship", "truck"}}
    assert level.rule == ("the named nodes vertebrate.n.01, vehicle.n.01 (--superclasses): each class under the "
                          "deepest named node on its hypernym path")


def test_the_rule_names_the_nodes_and_counts_the_other_group():
    level, _ = level_of("cifar10", superclasses=["mammal.n.01", "vehicle.n.01"])
    assert level.rule == ("the named nodes mammal.n.01, vehicle.n.01 (--superclasses): each class under the deepest "
                          "named node on its hypernym path; 2 classes under none form 'other'")


def test_a_node_of_the_graph_off_the_chosen_paths_is_not_a_node_of_the_hierarchy():
    # domestic_animal.n.01 is a hypernym of dog in WordNet, but not on dog's longest path (the one the tree uses)
    syn = load_builtin("cifar10")
    assert syn.graph.lookup("domestic_animal.n.01")
    with pytest.raises(AuditError) as err:
        level_of("cifar10", superclasses=["domestic_animal.n.01"])
    assert str(err.value) == (
        "--superclasses: 'domestic_animal.n.01' is not a node of this audit's class hierarchy (give synset names "
        "such as vehicle.n.01, or wnids, on the classes' hypernym paths; `audit hierarchy` prints the tree)")


def test_a_node_with_no_class_of_its_own_names_every_deeper_node():
    with pytest.raises(AuditError) as err:
        level_of("cifar10", superclasses=["vertebrate.n.01", "placental.n.01", "bird.n.01", "frog.n.01"])
    assert str(err.value) == ("--superclasses: vertebrate.n.01 keeps no class of its own (every class under it is "
                              "under a deeper named node: bird.n.01, frog.n.01, placental.n.01)")
    with pytest.raises(AuditError) as err:  # a named node elsewhere in the tree is not one of the deeper ones
        level_of("cifar10", superclasses=["vehicle.n.01", "mammal.n.01", "placental.n.01"])
    assert str(err.value).endswith("mammal.n.01 keeps no class of its own (every class under it is under a deeper "
                                   "named node: placental.n.01)")


def test_nodes_without_a_synset_name_are_labelled_by_their_wnid():
    syn = load_builtin("cifar10")
    analysis = HierarchyAnalysis(syn)
    vehicle, mammal = syn.graph.lookup("vehicle.n.01"), syn.graph.lookup("mammal.n.01")
    level = choose_level(analysis.tree, {}, syn.graph.lookup, nodes=[vehicle])
    assert level.names == (vehicle, OTHER) and level.synsets == (vehicle, None)
    assert level.rule.startswith(f"the named nodes {vehicle} (--superclasses)")
    with pytest.raises(AuditError) as err:
        choose_level(analysis.tree, {}, syn.graph.lookup, nodes=[mammal, "placental.n.01"])
    assert str(err.value).startswith(f"--superclasses: {mammal} keeps no class of its own (every class under it is "
                                     f"under a deeper named node: {syn.graph.lookup('placental.n.01')})")


# --- Tally: one process's sums, exported and absorbed ------------------------------------------------------------

LCA = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]])


def literal_tally(batches):
    """The sums of ``Tally`` by a loop over the samples: per class samples and right, mistakes per pair, mistakes
    into a class without a synset, and the top-1 LCA totals' histogram."""
    samples, correct, pairs, unscored, top1 = [0] * 3, [0] * 3, {}, 0, {}
    for labels, logits, mistakes, predicted, right in batches:
        for i, t in enumerate(labels):
            samples[t] += 1
            correct[t] += bool(right[i])
            best = max(range(3), key=lambda c: (logits[i][c], -c))
            top1[LCA[t][best]] = top1.get(LCA[t][best], 0) + 1
            if mistakes[i] and predicted[i] < 0:
                unscored += 1
            elif mistakes[i]:
                pairs[(t, predicted[i])] = pairs.get((t, predicted[i]), 0) + 1
    return samples, correct, pairs, unscored, top1


def batch(labels, logits, mistakes, predicted, right):
    return (np.array(labels), np.array(logits, dtype=np.float64), np.array(mistakes, dtype=bool),
            np.array(predicted), np.array(right, dtype=bool))


BATCHES = [
    # sample 2 is a mistake into a class without a synset (predicted -1); its top-1 mapped class is class 2
    batch([0, 1, 0], [[3.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 2.0]], [False, True, True], [0, 0, -1],
          [True, False, False]),
    batch([2, 2], [[0.0, 0.0, 1.0], [5.0, 1.0, 0.0]], [False, True], [2, 0], [True, False]),
]


def state_of(tally: Tally) -> tuple:
    return (tally.samples.tolist(), tally.correct.tolist(), tally.pairs, tally.unscored, tally.topk[1])


def test_a_tally_equals_a_literal_loop_and_merges_across_processes_as_one():
    whole = Tally((1,), 3)
    for b in BATCHES:
        whole.add(LCA, *b)
    assert state_of(whole) == literal_tally(BATCHES)
    assert state_of(whole) == ([2, 1, 2], [1, 0, 1], {(1, 0): 1, (2, 0): 1}, 1, {0: 2, 1: 1, 2: 2})
    # the second batch's process exports, through JSON, into the first's: every sum, and histogram values the
    # receiving process has not seen yet
    first, second = Tally((1,), 3), Tally((1,), 3)
    first.add(LCA, *BATCHES[0])
    second.add(LCA, *BATCHES[1])
    part = json.loads(json.dumps(second.export(), default=lambda a: a.tolist()))
    assert part == {"samples": [0, 0, 2], "correct": [0, 0, 1], "pairs": [[2, 0, 1]], "topk": {"1": [[0, 1], [2, 1]]},
                    "unscored": 0}
    first.absorb(part)
    assert state_of(first) == state_of(whole)
    # and the other way round, with the unscored mistake in the absorbed part
    first, second = Tally((1,), 3), Tally((1,), 3)
    first.add(LCA, *BATCHES[1])
    second.add(LCA, *BATCHES[0])
    exported = second.export()
    assert exported["pairs"].shape == (1, 3) and exported["topk"]["1"].shape == (3, 2)
    first.absorb(json.loads(json.dumps(exported, default=lambda a: a.tolist())))
    assert state_of(first) == state_of(whole)
    empty = Tally((1,), 3).export()  # nothing yet: empty (0, 3) and (0, 2) tables
    assert empty["pairs"].shape == (0, 3) and empty["topk"]["1"].shape == (0, 2)
    first.absorb(empty)
    assert state_of(first) == state_of(whole)


# --- reports.formatting.pct_with ------------------------------------------------------------------------------------

def test_a_share_reads_with_its_interval_and_one_percent_sign():
    assert pct_with(0.9667, (0.8333, 0.9941)) == "96.7% [83.3, 99.4]"
    assert pct_with(0.5, (0.0, 1.0)) == "50.0% [0.0, 100.0]"
    assert pct_with(None, (0.1, 0.2)) == "—"
    for interval in (None, (), (None, 0.7), (0.2, None), (None, None)):
        assert pct_with(0.5, interval) == "50.0%"


def without(syn, classes):
    """The class mapping ``syn`` with ``classes`` left unmapped (reason: "left out by the test")."""
    import dataclasses

    def drop(values, reason=None):
        return tuple(reason if c in classes else v for c, v in enumerate(values))

    return dataclasses.replace(syn, wnids=drop(syn.wnids), senses=drop(syn.senses),
                               reasons=drop(syn.reasons, "left out by the test"))


# --- the WordNet target distance ------------------------------------------------------------------------------------

def test_the_wordnet_distance_is_the_lca_height_plus_half_the_wu_palmer_gap_and_nan_off_the_mapping():
    from hierarchy_support import literal_lca

    from audit.analyses.semantics.hierarchy import build_tree, wu_palmer
    from audit.engine.targets import wordnet_distance

    syn = load_builtin("fashion-mnist")
    keep = [c for c in range(10) if syn.classes[c] not in ("Bag", "Coat")]
    partial = without(syn, [c for c in range(10) if c not in keep])
    d = wordnet_distance(partial)
    tree = build_tree(syn.graph.hypernyms, [syn.wnids[c] for c in keep])
    assert d.dtype == np.float64 and d.shape == (10, 10)
    for a in range(10):
        for b in range(10):
            if a not in keep or b not in keep:
                assert np.isnan(d[a, b])
                continue
            w = wu_palmer(syn.graph.hypernyms, syn.wnids[a], syn.wnids[b], syn.graph.names)
            assert d[a, b] == pytest.approx(literal_lca(tree, keep.index(a), keep.index(b)) + (1 - w) / 2, abs=1e-12)


def two_subsumers():
    """Classes a and b under x1 (zeta.n.01) and x2 (alpha.n.01), both one edge below the root r; x2 also lies under
    m, so its longest path is one edge longer. Class D has no synset."""
    from types import SimpleNamespace

    hypernyms = {"a": ("x1", "x2"), "b": ("x1", "x2"), "c": ("m",), "x1": ("r",), "x2": ("r", "m"), "m": ("r",),
                 "r": ()}
    names = {"a": "a.n.01", "b": "b.n.01", "c": "c.n.01", "x1": "zeta.n.01", "x2": "alpha.n.01", "m": "mid.n.01",
             "r": "root.n.01"}
    return ClassSynsets(classes=("A", "B", "C", "D"), wnids=("a", "b", "c", None),
                        senses=("a.n.01", "b.n.01", "c.n.01", None), reasons=(None, None, None, "no synset"),
                        source="by hand", graph=SimpleNamespace(hypernyms=hypernyms, names=names, version="3.0"))


def test_the_wordnet_distance_breaks_equal_depth_subsumers_by_name_as_wu_palmer_does():
    """Two classes under two hypernyms of equal shortest depth: Wu–Palmer takes the one first by name (alpha.n.01,
    whose longest path is one edge longer), not the one first by node id."""
    from audit.analyses.semantics.hierarchy import wu_palmer
    from audit.engine.targets import wordnet_distance

    syn = two_subsumers()
    hypernyms, names = syn.graph.hypernyms, syn.graph.names
    # by hand: the subsumer alpha.n.01 (x2) has longest root depth 2, so depth 3, and a and b are one edge below it
    assert wu_palmer(hypernyms, "a", "b", names) == 2 * 3 / (1 + 1 + 2 * 3)
    d = wordnet_distance(syn)
    # a and b: leaves of the contracted tree under one parent (LCA height 1), plus (1 - 0.75) / 2
    assert d[0, 1] == d[1, 0] == 1 + (1 - 0.75) / 2
    assert np.isnan(d[3]).all() and np.isnan(d[:, 3]).all()


# --- the WordNet semantic space -------------------------------------------------------------------------------------

def test_the_wordnet_space_coverage_names_every_class_and_why_one_is_left_out():
    from audit.analyses.semantics.space import build_wordnet_space

    syn = load_builtin("cifar10")
    gone = syn.classes.index("frog")
    partial = without(syn, [gone])
    space = build_wordnet_space(list(syn.classes), partial)
    cov = space.coverage()
    assert cov == {"n_classes": 10, "n_covered": 9,
                   "classes": [{"class": name, "synset": syn.senses[c], "wnid": syn.wnids[c]}
                               for c, name in enumerate(syn.classes) if c != gone],
                   "missing": ["frog"], "why": {"frog": "left out by the test"}}
    assert space.covered.tolist() == [c != gone for c in range(10)]


def test_the_wordnet_space_takes_wu_palmer_with_the_name_tie_break_and_says_where_it_came_from():
    from audit.analyses.semantics.space import MEASURES, build_wordnet_space

    space = build_wordnet_space(["A", "B", "C", "D"], two_subsumers())
    assert space.matrix[0, 1] == space.matrix[1, 0] == 0.75  # alpha.n.01 first by name (see above)
    assert np.isnan(space.matrix[3]).all() and space.covered.tolist() == [True, True, True, False]
    assert space.info == {"source": "by hand", "measure": MEASURES["wordnet"], "wordnet_version": "3.0"}
    with pytest.raises(AuditError) as err:
        build_wordnet_space(["A", "B", "C"], two_subsumers())
    assert str(err.value) == "the WordNet mapping has 4 classes but the audit 3"


def test_the_space_choice_without_any_mapping_and_an_unknown_choice_word_for_word():
    from audit.analyses.semantics.space import choose_spaces

    assert choose_spaces(None, None) == (("glove",), "default: glove only, since the classes do not map to WordNet "
                                                     "(no WordNet mapping)")
    assert choose_spaces("both", load_builtin("cifar10")) == (("glove", "wordnet"), "--semantic-space both")
    with pytest.raises(AuditError) as err:
        choose_spaces("glove2", load_builtin("cifar10"))
    assert str(err.value) == "--semantic-space must be one of glove, wordnet, both, got 'glove2'"
    with pytest.raises(AuditError) as err:
        choose_spaces("both", None)
    assert str(err.value) == ("--semantic-space both needs the classes mapped to WordNet, and they are not: no WordNet "
                              "mapping was made")


def test_the_target_distance_of_each_target_space_and_the_refusal_word_for_word():
    from types import SimpleNamespace

    from audit.engine.targets import target_distance, wordnet_distance

    words = SimpleNamespace(distance=np.arange(4.0).reshape(2, 2))
    syn = two_subsumers()
    assert target_distance("semantic-near", "glove", words, syn) is words.distance
    assert target_distance("random", "wordnet", words, syn) is None
    assert np.array_equal(target_distance("semantic-far", "wordnet", words, syn), wordnet_distance(syn),
                          equal_nan=True)
    for synsets, why in ((None, "no class hierarchy was loaded"), ("MNIST's digits have none", "MNIST's digits have none")):
        with pytest.raises(AuditError) as err:
            target_distance("semantic-near", "wordnet", words, synsets)
        assert str(err.value) == (f"--target-space wordnet: the classes do not map to WordNet ({why}); use "
                                  "--target-space glove, or map them with --class-synsets FILE --wordnet DIR")
