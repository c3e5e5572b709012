"""The class hierarchy (audit/analyses/semantics/hierarchy.py) and `audit hierarchy`: a hand-made graph whose tree and
LCA heights are written out by hand, literal loops for every measure, and the real WordNet 3.0 at /usr/share/wordnet
(read by a minimal reader below; those tests skip without it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from hierarchy_support import literal_lca
import pytest

from audit.analyses.semantics import hierarchy as H

# TOP - R - A - B - {c1, c2 (also under X, a shorter path), c7 (= B itself)}
#           |   \- C - D - c3                  (a single-child chain)
#           |- E - {c4, F - c5, G1 - c6, G2 - c6}   (c6: two paths of equal length, a tie)
#           \- X - c2
GRAPH = {
    "R": ("TOP",), "A": ("R",), "B": ("A",), "C": ("A",), "D": ("C",), "E": ("R",), "F": ("E",), "X": ("R",),
    "G1": ("E",), "G2": ("E",),
    "c1": ("B",), "c2": ("X", "B"), "c3": ("D",), "c4": ("E",), "c5": ("F",), "c6": ("G2", "G1"),
}
CLASSES = ["c1", "c2", "c3", "c4", "c5", "c6", "B"]
# By hand: TOP (one child) is removed, R is the root; C, D, F, G1 are removed; X is on no chosen path.
# R (3) -> A (2) -> B (1) -> c1, c2, leaf of class 6 (B itself); A -> c3; R -> E (1) -> c4, c5, c6.
HEIGHT = {"R": 3, "A": 2, "B": 1, "E": 1}
LCA = np.array([
    # c1 c2 c3 c4 c5 c6 B
    [0, 1, 2, 3, 3, 3, 1],  # c1
    [1, 0, 2, 3, 3, 3, 1],  # c2
    [2, 2, 0, 3, 3, 3, 2],  # c3
    [3, 3, 3, 0, 1, 1, 3],  # c4
    [3, 3, 3, 1, 0, 1, 3],  # c5
    [3, 3, 3, 1, 1, 0, 3],  # c6
    [1, 1, 2, 3, 3, 3, 0],  # B
])


def test_the_tree_of_the_hand_made_graph():
    tree = H.build_tree(GRAPH, CLASSES)
    assert tree.paths[1] == ("TOP", "R", "A", "B", "c2")  # the longest path, not the one through X
    assert tree.paths[5] == ("TOP", "R", "E", "G1", "c6")  # the tie: G1 before G2, whatever the parents' order
    assert H.build_tree({**GRAPH, "c6": ("G1", "G2")}, CLASSES).paths[5] == tree.paths[5]
    inner = {tree.synset[n]: tree.height[n] for n in range(len(tree.parent)) if tree.leaf_class[n] < 0}
    assert inner == HEIGHT
    assert tree.synset[tree.root] == "R" and tree.parent[tree.root] == -1
    parent_of = {CLASSES[c]: tree.synset[tree.parent[tree.leaf[c]]] for c in range(len(CLASSES))}
    assert parent_of == {"c1": "B", "c2": "B", "c3": "A", "c4": "E", "c5": "E", "c6": "E", "B": "B"}
    assert all(tree.height[tree.leaf[c]] == 0 for c in range(len(CLASSES)))
    assert [tree.depth[tree.leaf[c]] for c in range(len(CLASSES))] == [3, 3, 2, 2, 2, 2, 3]
    assert all(len(kids) != 1 for kids in tree.children)


def test_lca_heights_of_the_hand_made_graph():
    np.testing.assert_array_equal(H.lca_height(H.build_tree(GRAPH, CLASSES)), LCA)


def _random_graph(rng, n_inner: int, n_classes: int) -> tuple[dict, list[str]]:
    """A random DAG: inner node i has 1-2 parents among the earlier ones; classes hang under 1-3 inner nodes."""
    graph = {}
    for i in range(1, n_inner):
        graph[f"n{i:03d}"] = tuple(f"n{j:03d}" for j in rng.choice(i, size=min(i, rng.integers(1, 3)), replace=False))
    classes = []
    for c in range(n_classes):
        name = f"k{c:03d}"
        graph[name] = tuple(f"n{j:03d}" for j in rng.choice(n_inner, size=rng.integers(1, 4), replace=False))
        classes.append(name)
    return graph, classes


@pytest.mark.parametrize("seed", range(4))
def test_lca_heights_equal_a_double_loop_over_pairs(seed):
    rng = np.random.default_rng(seed)
    graph, classes = _random_graph(rng, 40, 60)
    classes += [classes[0], "n005"]  # two classes on one synset, and a class that is an inner node
    tree = H.build_tree(graph, classes)
    lca = H.lca_height(tree)
    loop = np.array([[literal_lca(tree, a, b) for b in range(len(classes))] for a in range(len(classes))])
    np.testing.assert_array_equal(lca, loop)
    assert lca.dtype == np.int64 and (lca == lca.T).all() and (np.diag(lca) == 0).all()
    assert all(len(kids) != 1 for kids in tree.children)
    # every chosen path is a real hypernym path, and no real one is longer
    for path in tree.paths:
        assert all(up in graph.get(down, ()) for up, down in itertools.pairwise(path)) and path[0] not in graph

        def longest(n):
            return 1 + max((longest(p) for p in graph.get(n, ())), default=0)
        assert len(path) == longest(path[-1])


def test_one_class_and_bad_graphs():
    tree = H.build_tree(GRAPH, ["c3"])
    assert tree.synset[tree.root] == "c3" and H.lca_height(tree).tolist() == [[0]]
    assert H.top_split(tree) == ()
    with pytest.raises(ValueError, match="cycle"):
        H.build_tree({"a": ("b",), "b": ("a",)}, ["a"])
    with pytest.raises(ValueError, match="2 roots"):
        H.build_tree({"a": ("r1",), "b": ("r2",)}, ["a", "b"])
    with pytest.raises(ValueError, match="no classes"):
        H.build_tree(GRAPH, [])


def test_topk_distance_severity_and_baseline_against_literal_loops():
    rng = np.random.default_rng(1)
    lca = LCA
    n, c = 50, lca.shape[0]
    labels = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[:5] = 0.0  # ties go to the lower class index
    logits[5:20] = np.round(logits[5:20])  # some ties at the k-th score, fewer places than tied classes
    for k in (1, 3, c):
        got = H.hierarchical_distance_topk(lca, logits, labels, k)
        want = []
        for i in range(n):
            ranked = sorted(range(c), key=lambda j: (-float(logits[i, j]), j))[:k]
            want.append(sum(lca[labels[i], j] for j in ranked) / k)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        ranking = np.argsort(-logits.astype(np.float64), axis=1, kind="stable")
        np.testing.assert_allclose(H.hierarchical_distance_topk(lca, ranking, labels, k), want, atol=1e-12)
    assert H.hierarchical_distance_topk(lca, logits[:5], labels[:5], 2).tolist() == [
        (lca[y, 0] + lca[y, 1]) / 2 for y in labels[:5]]
    preds = rng.integers(0, c, size=n)
    assert H.mistake_severity(lca, labels, preds).tolist() == [
        lca[y, p] for y, p in zip(labels, preds, strict=True) if y != p]
    assert H.mistake_severity(lca, labels, labels).size == 0
    base = H.random_wrong_baseline(lca, labels)
    want = [sum(lca[y, j] for j in range(c) if j != y) / (c - 1) for y in labels]
    np.testing.assert_allclose(base, want, rtol=0, atol=1e-12)
    assert H.random_wrong_baseline(lca, [0]).tolist() == [(1 + 2 + 3 + 3 + 3 + 1) / 6]


def test_measures_refuse_bad_shapes():
    with pytest.raises(ValueError, match="k must lie"):
        H.hierarchical_distance_topk(LCA, np.zeros((2, 7)), [0, 1], 8)
    with pytest.raises(ValueError, match="labels must lie"):
        H.mistake_severity(LCA, [7], [0])
    with pytest.raises(ValueError, match="square"):
        H.random_wrong_baseline(np.zeros((2, 3)), [0])
    with pytest.raises(ValueError, match="at least two"):
        H.random_wrong_baseline(np.zeros((1, 1)), [0])


def test_wu_palmer_by_hand():
    # Depths count from TOP (0). c1 and c3: common hypernyms A, R, TOP; the LCS A (shortest depth 2), its longest
    # depth 2, so depth 3;
    # c1 is 2 edges below A, c3 3 edges: 2*3 / (2 + 3 + 2*3).
    assert H.wu_palmer(GRAPH, "c1", "c3") == pytest.approx(6 / 11)
    # c2 and c4: the LCS R (depth 1 + 1 = 2); c2 is 2 edges below R by its SHORTEST path (through X): 4 / (2+2+4).
    assert H.wu_palmer(GRAPH, "c2", "c4") == pytest.approx(0.5)
    assert H.wu_palmer(GRAPH, "c1", "c2") == pytest.approx(8 / 10)  # LCS B: depth 3 + 1 (TOP R A B), one edge each
    assert H.wu_palmer(GRAPH, "c2", "c2") == 1.0
    assert H.wu_palmer(GRAPH, "B", "c1") == pytest.approx(8 / 9)  # B subsumes c1: 2*4 / (0 + 1 + 8)
    # A tie of LCS: p and q both at shortest depth 1; p's longest depth is 2 (through s), q's is 1.
    tie = {"a": ("p", "q"), "b": ("p", "q"), "p": ("r", "s"), "q": ("r",), "s": ("r",)}
    assert H.wu_palmer(tie, "a", "b") == pytest.approx(6 / 8)  # by id: p, depth 3
    assert H.wu_palmer(tie, "a", "b", names={"p": "zz.n.01", "q": "aa.n.01"}) == pytest.approx(4 / 6)  # q first
    with pytest.raises(ValueError, match="no common hypernym"):
        H.wu_palmer({"a": ("r1",), "b": ("r2",)}, "a", "b")
    m = H.wu_palmer_matrix(GRAPH, CLASSES)
    loop = [[H.wu_palmer(GRAPH, a, b) for b in CLASSES] for a in CLASSES]
    np.testing.assert_allclose(m, loop, rtol=0, atol=1e-15)
    assert (m == m.T).all() and (np.diag(m) == 1).all()


def test_superclasses_and_the_top_split():
    tree = H.build_tree(GRAPH, CLASSES)
    names = lambda nodes: [tree.synset[n] for n in nodes]  # noqa: E731
    assert names(H.superclasses(tree, 0)) == ["R"] * 7
    assert names(H.superclasses(tree, 1)) == ["A", "A", "A", "E", "E", "E", "A"]
    assert names(H.superclasses(tree, 2)) == ["B", "B", "c3", "c4", "c5", "c6", "B"]
    assert list(H.superclasses(tree, 9)) == list(tree.leaf)
    assert [(tree.synset[n], c) for n, c in H.top_split(tree)] == [("A", (0, 1, 2, 6)), ("E", (3, 4, 5))]
    with pytest.raises(ValueError, match="at least 0"):
        H.superclasses(tree, -1)


# ---- the real WordNet 3.0 -----------------------------------------------------------------------------------------

WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="no WordNet at /usr/share/wordnet")


def _read_wordnet_nouns(folder: Path) -> tuple[dict, dict]:
    """A minimal reader for this test: the noun hypernym graph (hypernyms and instance hypernyms, as NLTK's
    Wu-Palmer follows both) keyed by wnid, and synset name -> wnid from index.noun (senses in order)."""
    graph = {}
    for line in (folder / "data.noun").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  "):
            continue  # the licence header
        f = line.split()
        words = int(f[3], 16)
        at = 4 + 2 * words
        pointers = int(f[at])
        parents = [f"n{f[at + 1 + 4 * i + 1]}" for i in range(pointers)
                   if f[at + 1 + 4 * i] in ("@", "@i") and f[at + 1 + 4 * i + 2] == "n"]
        graph[f"n{f[0]}"] = tuple(parents)
    names = {}
    for line in (folder / "index.noun").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  "):
            continue
        f = line.split()
        count = int(f[2])
        for sense, offset in enumerate(f[len(f) - count:], start=1):
            names[f"{f[0]}.n.{sense:02d}"] = f"n{offset}"
    return graph, names


@pytest.fixture(scope="module")
def wordnet():
    return _read_wordnet_nouns(WORDNET)


CIFAR10 = {"airplane": "airplane.n.01", "automobile": "car.n.01", "bird": "bird.n.01", "cat": "domestic_cat.n.01",
           "deer": "deer.n.01", "dog": "dog.n.01", "frog": "frog.n.01", "horse": "horse.n.01", "ship": "ship.n.01",
           "truck": "truck.n.01"}


@needs_wordnet
def test_wu_palmer_on_wordnet_by_hand(wordnet):
    graph, names = wordnet
    assert (names["dog.n.01"], names["cat.n.01"], names["truck.n.01"]) == ("n02084071", "n02121620", "n04490091")
    # dog.n.01 and cat.n.01 meet at carnivore.n.01, whose longest depth is 11 (entity, physical_entity, object, whole,
    # living_thing, organism, animal, chordate, vertebrate, mammal, placental, carnivore), so depth 12; both are two
    # edges below it: 24 / 28 (NLTK's documented dog.wup_similarity(cat) = 0.857).
    assert H.wu_palmer(graph, names["dog.n.01"], names["cat.n.01"]) == pytest.approx(24 / 28)
    # cat.n.01 and truck.n.01 meet at whole.n.02 (depth 3 + 1 = 4); cat is 10 edges below it (feline, carnivore,
    # placental, mammal, vertebrate, chordate, animal, organism, living_thing, whole), truck 7 by its shortest path
    # (motor_vehicle, self-propelled_vehicle, wheeled_vehicle, container, instrumentality, artifact, whole): 8 / 25.
    assert H.wu_palmer(graph, names["cat.n.01"], names["truck.n.01"]) == pytest.approx(8 / 25)


@needs_wordnet
def test_cifar10_on_wordnet(wordnet):
    graph, names = wordnet
    classes = list(CIFAR10)
    wnids = [names[CIFAR10[c]] for c in classes]
    assert wnids[classes.index("cat")] == "n02121808" and wnids[classes.index("automobile")] == "n02958343"
    tree = H.build_tree(graph, wnids)
    lca = H.lca_height(tree)
    cat, dog, truck = classes.index("cat"), classes.index("dog"), classes.index("truck")
    assert lca[cat, dog] < lca[cat, truck]
    groups = {frozenset(classes[c] for c in members) for _, members in H.top_split(tree)}
    assert groups == {frozenset({"bird", "cat", "deer", "dog", "frog", "horse"}),
                      frozenset({"airplane", "automobile", "ship", "truck"})}
    loop = np.array([[literal_lca(tree, a, b) for b in range(10)] for a in range(10)])
    np.testing.assert_array_equal(lca, loop)
    wup = H.wu_palmer_matrix(graph, wnids)
    assert wup[cat, dog] > wup[cat, truck]


# ---- audit hierarchy ----------------------------------------------------------------------------------------------

def _synsets(classes, wnids, hypernyms, names):
    from audit.analyses.semantics.wordnet import ClassSynsets, NounGraph

    return ClassSynsets(tuple(classes), tuple(wnids), tuple(names.get(w, w) for w in wnids), (None,) * len(wnids),
                        NounGraph(hypernyms, names, "3.0"), "toy")


def _toy_load(labelset, class_synsets, wordnet):
    names = {"R": "root.n.01", "A": "animal.n.01", "E": "vehicle.n.01", "B": "pet.n.01"}
    return _synsets([f"class {c}" for c in CLASSES], list(CLASSES), GRAPH, names)


def test_the_command_prints_the_tree_and_exports_it(tmp_path, monkeypatch, capsys):
    from audit import cli
    from audit.analyses.hierarchy import tree_view

    monkeypatch.setattr(tree_view, "mapped_classes", _toy_load)
    out = tmp_path / "sub" / "toy.npz"
    with pytest.raises(SystemExit) as done:
        cli.main(["hierarchy", "toy", "--export", str(out)])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "root.n.01 R  height 3" in text and "animal.n.01 A  height 2" in text and "class c3  D c3" not in text
    assert "class c3  c3 c3" in text and "7 classes, 4 inner nodes, height 3" in text
    assert "splits into animal.n.01: 4; vehicle.n.01: 3" in text
    with np.load(out, allow_pickle=False) as saved:
        assert saved["classes"].tolist() == [f"class {c}" for c in CLASSES]
        assert saved["synsets"].tolist() == CLASSES
        assert saved["lca_height"].dtype.kind == "i"
        np.testing.assert_array_equal(saved["lca_height"], LCA)
    assert [p.name for p in out.parent.iterdir()] == ["toy.npz"]


@pytest.mark.parametrize("args, needle", [
    (["hierarchy"], "name a built-in label set"),
    (["hierarchy", "cifar10", "--class-synsets", "x.tsv", "--wordnet", "/tmp"], "not both"),
    (["hierarchy", "--class-synsets", "x.tsv"], "go together"),
    (["hierarchy", "cifar10", "--wordnet", "/tmp"], "go together"),
])
def test_the_command_refuses_bad_flags_in_one_line(args, needle, capsys):
    from audit.cli import main

    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1 and needle in err[0]


def test_a_graph_without_one_root_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from audit import cli
    from audit.analyses.hierarchy import tree_view

    monkeypatch.setattr(tree_view, "mapped_classes",
                        lambda *a: _synsets(["a", "b"], ["a", "b"], {"a": ("r1",), "b": ("r2",)}, {}))
    out = tmp_path / "x.npz"
    with pytest.raises(SystemExit) as done:
        cli.main(["hierarchy", "toy", "--export", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and err == ["error: cannot build the class tree: the classes' hypernym paths end at 2 "
                                            "roots (r1, r2), not one"]
    assert not out.exists()


@needs_wordnet
def test_the_command_on_shipped_and_user_hierarchies(tmp_path, capsys):
    """The command against the shipped CIFAR-10 file and a user's class file read against WordNet: the exported
    LCA heights equal the tree's, a class left unmapped is named, MNIST is refused with its reason."""
    from audit.cli import main as cli_main

    def main(args):
        with pytest.raises(SystemExit) as done:
            cli_main(args)
        assert done.value.code == 0

    out = tmp_path / "cifar10.npz"
    main(["hierarchy", "cifar10", "--export", str(out)])
    with np.load(out, allow_pickle=False) as saved:
        classes, lca = list(saved["classes"]), saved["lca_height"]
    assert classes[:3] == ["airplane", "automobile", "bird"]
    cat, dog, truck = classes.index("cat"), classes.index("dog"), classes.index("truck")
    assert lca[cat, dog] < lca[cat, truck]
    mapping = tmp_path / "classes.tsv"
    mapping.write_text("cat\tdomestic_cat.n.01\ndog\tn02084071\ntruck\ttruck.n.01\nblob\t-\n")
    main(["hierarchy", "--class-synsets", str(mapping), "--wordnet", str(WORDNET), "--export", str(out)])
    printed = capsys.readouterr().out
    assert "left out, not mapped to a synset: blob (left unmapped in classes.tsv (line 4))" in printed
    with np.load(out, allow_pickle=False) as saved:
        assert list(saved["classes"]) == ["cat", "dog", "truck"]
        assert list(saved["synsets"]) == ["n02121808", "n02084071", "n04490091"]
        assert saved["lca_height"][0, 1] < saved["lca_height"][0, 2]
    with pytest.raises(SystemExit) as info:
        cli_main(["hierarchy", "mnist"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "sister synsets directly under digit.n.01" in err[0]
