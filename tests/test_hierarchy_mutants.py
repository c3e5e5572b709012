"""Tests written against the surviving mutants of audit/analyses/semantics/hierarchy.py and wordnet.py
(docs/mutation.md, "Issue 20's modules"): every field of a hand-worked tree, tie rules worked out by hand, the
measures' refusals and edges, and the WordNet reader, lookups and class files on a tiny hand-written dict folder
(no WordNet installation needed)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.analyses.semantics import hierarchy as H
from audit.analyses.semantics import wordnet as wn
from audit.errors import AuditError
from tests.test_hierarchy import CLASSES, GRAPH, LCA
from tests.test_wordnet_data import DATA, INDEX, one_line_error, tiny_wordnet

# ---- the tree ---------------------------------------------------------------------------------------------------


def test_every_field_of_the_hand_made_tree():
    """Worked by hand from test_hierarchy's graph: R is the root (TOP has one child); R's children sort as A, E; A's
    children as B, then C (whose chain C - D - c3 contracts to class 2's leaf); B's as the leaf of class 6 (label
    "B" sorts before "c1"), c1, c2; E's by the graph node below E on each path: F (-> c5), G1 (-> c6), c4. Preorder
    numbers the nodes."""
    tree = H.build_tree(GRAPH, CLASSES)
    assert tree.class_nodes == tuple(CLASSES) and tree.num_classes == 7 and tree.root == 0
    assert tree.parent == (-1, 0, 1, 2, 2, 2, 1, 0, 7, 7, 7)
    assert tree.children == ((1, 7), (2, 6), (3, 4, 5), (), (), (), (), (8, 9, 10), (), (), ())
    assert tree.synset == ("R", "A", "B", "B", "c1", "c2", "c3", "E", "c5", "c6", "c4")
    assert tree.height == (3, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0)
    assert tree.depth == (0, 1, 2, 3, 3, 3, 2, 1, 2, 2, 2)
    assert tree.leaf == (4, 5, 6, 10, 8, 9, 3)
    assert tree.leaf_class == (-1, -1, -1, 6, 0, 1, 2, -1, 4, 5, 3)
    assert tree.paths[2] == ("TOP", "R", "A", "C", "D", "c3") and tree.paths[6] == ("TOP", "R", "A", "B")
    assert all(type(x) is tuple for x in (tree.parent, tree.children, tree.synset, tree.height, tree.depth,
                                          tree.leaf, tree.leaf_class, tree.paths, *tree.children))


def test_a_tie_of_longest_paths_is_decided_from_the_root_down():
    # x has two paths of 4 nodes: T r2 p x and T r1 q x. From the root down, r1 < r2 decides, although p < q.
    graph = {"x": ("p", "q"), "p": ("r2",), "q": ("r1",), "r1": ("T",), "r2": ("T",)}
    assert H.longest_path(graph, "x") == ("T", "r1", "q", "x")
    assert H.longest_path({**graph, "x": ("q", "p")}, "x") == ("T", "r1", "q", "x")
    # a longer path wins over a smaller one: T r1 q x y (5 nodes) over T y2 y (3)
    graph2 = {**graph, "y": ("y2", "x"), "y2": ("T",)}
    assert H.longest_path(graph2, "y") == ("T", "r1", "q", "x", "y")
    assert H.longest_path(graph2, "T") == ("T",)
    memo = {}
    assert H.longest_path(graph2, "y", memo) == ("T", "r1", "q", "x", "y")
    assert memo["x"] == ("T", "r1", "q", "x") and memo["y2"] == ("T", "y2")
    # a diamond is no cycle
    assert H.longest_path({"d": ("b", "c"), "b": ("a",), "c": ("a",)}, "d") == ("a", "b", "d")


def test_more_than_one_root_names_three():
    graph = {f"c{i}": (f"r{i}",) for i in range(4)}
    with pytest.raises(ValueError) as info:
        H.build_tree(graph, list(graph))
    assert str(info.value) == "the classes' hypernym paths end at 4 roots (r0, r1, r2), not one"


def test_two_classes_on_one_synset_and_a_class_on_the_root():
    # both classes on x: x keeps two leaves; the class on r is a leaf under r beside x
    tree = H.build_tree({"x": ("r",)}, ["x", "x", "r"])
    assert tree.synset == ("r", "r", "x", "x", "x") and tree.parent == (-1, 0, 0, 2, 2)
    assert tree.leaf == (3, 4, 1) and tree.height == (2, 0, 1, 0, 0)
    np.testing.assert_array_equal(H.lca_height(tree), [[0, 1, 2], [1, 0, 2], [2, 2, 0]])


def test_leaves_of_one_synset_follow_the_class_index():
    # classes 7 and 8 both on x: a Python set iterates {7, 8} as 8, 7, so only the class index orders them
    tree = H.build_tree({"x": ("r",), "y": ("r",)}, ["y"] * 7 + ["x", "x"])
    assert tree.synset[:4] == ("r", "x", "x", "x") and tree.leaf[7:] == (2, 3)
    assert tree.leaf[:7] == (5, 6, 7, 8, 9, 10, 11)
    with pytest.raises(ValueError) as info:
        H.build_tree({"x": ("r",)}, [])
    assert str(info.value) == "no classes to build a hierarchy from"


def test_superclasses_below_the_top_of_the_hand_made_tree():
    # the tree of test_every_field_of_the_hand_made_tree: at depth 2, c1, c2 and B go to B (node 2); c3 (depth 2),
    # c4, c5, c6 (depth 2) are their own leaves. At depth 3 every leaf is its own superclass.
    tree = H.build_tree(GRAPH, CLASSES)
    assert H.superclasses(tree, 2).tolist() == [2, 2, 6, 10, 8, 9, 2]
    assert H.superclasses(tree, 3).tolist() == [4, 5, 6, 10, 8, 9, 3]
    assert H.superclasses(tree, 1).tolist() == [1, 1, 1, 7, 7, 7, 1]


# ---- the measures -----------------------------------------------------------------------------------------------

def test_labels_and_scores_are_checked_with_their_messages():
    def refused(call, message):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message

    refused(lambda: H.mistake_severity(LCA, [0.0], [1]), "labels must be a 1-d array of class indices")
    refused(lambda: H.mistake_severity(LCA, [[0]], [[1]]), "labels must be a 1-d array of class indices")
    refused(lambda: H.mistake_severity(LCA, [-1], [1]), "labels must lie in 0..6")
    refused(lambda: H.mistake_severity(LCA, [0], [7]), "labels must lie in 0..6")
    refused(lambda: H.mistake_severity(LCA, [0, 1], [1]), "1 predictions for 2 labels")
    refused(lambda: H.mistake_severity(LCA[:, :6], [0], [1]),
            "the LCA heights must be a square classes x classes matrix, got shape (7, 6)")
    refused(lambda: H.mistake_severity(LCA[0], [0], [1]),
            "the LCA heights must be a square classes x classes matrix, got shape (7,)")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.zeros(7), [0], 1),
            "scores must be samples x classes (or a ranking), got shape (7,) for 1 labels")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.zeros((2, 7)), [0], 1),
            "scores must be samples x classes (or a ranking), got shape (2, 7) for 1 labels")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.zeros((1, 7)), [0], 0), "k must lie in 1..7, got 0")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.zeros((1, 6)), [0], 1),
            "scores have 6 classes, the hierarchy 7")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.array([[0, 1, 2, 3, 4, 5, np.nan]]), [0], 1),
            "scores must be finite")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.array([[0, 1, 2, 3, 4, 5, np.inf]]), [0], 1),
            "scores must be finite")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.array([[0, 7]]), [0], 2),
            "a ranking's class indices must lie in 0..6")
    refused(lambda: H.hierarchical_distance_topk(LCA, np.array([[-1, 0]]), [0], 2),
            "a ranking's class indices must lie in 0..6")
    refused(lambda: H.random_wrong_baseline(LCA, [7]), "labels must lie in 0..6")


def test_empty_batches_and_rankings_read_only_their_first_k():
    empty = np.zeros(0, dtype=np.int64)
    assert H.mistake_severity(LCA, empty, empty).shape == (0,)
    assert H.random_wrong_baseline(LCA, empty).shape == (0,)
    assert H.hierarchical_distance_topk(LCA, np.zeros((0, 7)), empty, 3).shape == (0,)
    assert H.hierarchical_distance_topk(LCA, np.zeros((0, 7), dtype=np.int64), empty, 3).shape == (0,)
    # a ranking longer than k: an out-of-range index after the first k is never read
    ranking = np.array([[1, 3, 99], [0, 5, -4]])
    got = H.hierarchical_distance_topk(LCA, ranking, [0, 2], 2)
    assert got.dtype == np.float64 and got.tolist() == [(1 + 3) / 2, (2 + 3) / 2]
    # float scores, k = 1: the argmax; ties to the lower index; int labels of another width
    scores = np.array([[0.1, 0.9, 0.9, 0, 0, 0, 0], [5, 4, 3, 2, 1, 0, -1.0]])
    assert H.hierarchical_distance_topk(LCA, scores, np.array([3, 6], dtype=np.int8), 1).tolist() == [3.0, 1.0]
    assert H.hierarchical_distance_topk(LCA, scores, [3, 6], 3).tolist() == [(3 + 3 + 3) / 3, (1 + 1 + 2) / 3]


def test_top_k_mixes_rows_with_and_without_ties_at_the_kth_score():
    scores = np.array([[3, 1, 1, 1, 0, 2, 0],    # k = 3: 0, 5, then 1 of the three tied at 1 (class 1)
                       [0, 1, 2, 3, 4, 5, 6],    # no tie: 4, 5, 6
                       [1, 1, 1, 1, 1, 1, 1],    # all tied: 0, 1, 2
                       [0, 0, 0, 0, 9, 9, 9]], dtype=np.float64)  # exactly k above the rest
    np.testing.assert_array_equal(H._top_k(scores, 3), [[0, 1, 5], [4, 5, 6], [0, 1, 2], [4, 5, 6]])
    np.testing.assert_array_equal(H._top_k(scores, 7), np.tile(np.arange(7), (4, 1)))
    np.testing.assert_array_equal(H._top_k(scores, 1), [[0], [6], [0], [4]])


def test_the_random_wrong_baseline_of_two_and_three_classes():
    two = np.array([[0, 4], [4, 0]])
    assert H.random_wrong_baseline(two, [0, 1, 1]).tolist() == [4.0, 4.0, 4.0]
    three = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]])
    assert H.random_wrong_baseline(three, [0, 1, 2]).tolist() == [1.5, 1.5, 2.0]
    assert H.random_wrong_baseline(three, [2]).dtype == np.float64
    # the mean over the OTHER classes, whatever the diagonal holds
    assert H.random_wrong_baseline(np.array([[5, 1], [2, 7]]), [0, 1]).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError) as info:
        H.random_wrong_baseline(np.zeros((1, 1)), [0])
    assert str(info.value) == "a random wrong class needs at least two classes"


# ---- Wu-Palmer --------------------------------------------------------------------------------------------------

# r is the root; f and e are under r, e also under f; b is under r AND under e; a is under b. Shortest depths: f, e,
# b 1, a 2; longest: f 1, e 2, b 3, a 4. The common hypernyms of a and b: b, e, f, r; b, e and f tie at shortest
# depth 1 (by name e "aa", f "ff", b "zz"). b is one of the two nodes itself, so it is the LCS: depth 3 + 1 = 4; a is
# one edge below b, b none: 8 / (1 + 0 + 8). Had e been taken (the first by name): depth 2 + 1 = 3, a two edges below,
# b one: 6 / (2 + 1 + 6). The tie is taken at e's SHORTEST depth (1); at its longest (2) neither f nor b would tie.
TIE_B = {"a": ("b",), "b": ("r", "e"), "e": ("r", "f"), "f": ("r",)}
TIE_NAMES = {"e": "aa.n.01", "f": "ff.n.01", "b": "zz.n.01", "a": "zz.n.02", "r": "root.n.01"}


def test_wu_palmer_takes_the_second_node_when_it_is_in_the_tie():
    assert H.wu_palmer(TIE_B, "a", "b", TIE_NAMES) == pytest.approx(8 / 9)
    assert H.wu_palmer(TIE_B, "b", "a", TIE_NAMES) == pytest.approx(8 / 9)
    assert H.wu_palmer(TIE_B, "a", "b") == pytest.approx(8 / 9)
    m = H.wu_palmer_matrix(TIE_B, ["a", "b", "e"], TIE_NAMES)
    # a, e: common e, f, r; LCS e (itself in the tie e, f), depth 3; a is 2 edges below e (a b e): 6 / (2 + 0 + 6)
    # b, e: LCS e, b one edge below: 6 / 7
    np.testing.assert_allclose(m, [[1, 8 / 9, 6 / 8], [8 / 9, 1, 6 / 7], [6 / 8, 6 / 7, 1]], rtol=0, atol=1e-15)


def test_wu_palmer_lcs_can_be_above_the_second_node_yet_deeper():
    # b is under r and under x (x under y under r): b's shortest depth is 1, x's is 2. a is under b. The common
    # hypernym with the greatest shortest depth is x, not b: longest depth 2, so 3; a is 2 edges below x (a b x), b
    # one: 6 / (2 + 1 + 6). (b, shortest depth 1, is not in the tie and must not be taken.)
    graph = {"a": ("b",), "b": ("r", "x"), "x": ("y",), "y": ("r",)}
    assert H.wu_palmer(graph, "a", "b") == pytest.approx(6 / 9)
    assert H.wu_palmer(graph, "b", "a") == pytest.approx(6 / 9)


def test_wu_palmer_matrix_uses_the_names_for_ties():
    # from test_hierarchy: a, b share p and q at shortest depth 1; by id p (longest depth 2, so 3): 6 / 8; named, q
    # ("aa") first (longest depth 1, so 2): 4 / 6
    tie = {"a": ("p", "q"), "b": ("p", "q"), "p": ("r", "s"), "q": ("r",), "s": ("r",)}
    names = {"p": "zz.n.01", "q": "aa.n.01"}
    assert H.wu_palmer_matrix(tie, ["a", "b"])[0, 1] == pytest.approx(6 / 8)
    assert H.wu_palmer_matrix(tie, ["a", "b"], names)[0, 1] == pytest.approx(4 / 6)
    assert H.wu_palmer_matrix(tie, ["a", "b"], names)[1, 0] == pytest.approx(4 / 6)


def test_wu_palmer_depths_shortest_and_longest():
    # a chain r - x - y - z with a shortcut r - z: z's shortest depth is 1, its longest 3
    graph = {"x": ("r",), "y": ("x",), "z": ("y", "r"), "w": ("z",)}
    depths = H._Depths(graph)
    assert depths.depths("w") == (2, 4) and depths.depths("z") == (1, 3) and depths.depths("r") == (0, 0)
    assert depths.upward("w") == {"w": 0, "z": 1, "y": 2, "r": 2, "x": 3}
    assert depths.ranked("w", None) == [(2, "w"), (2, "y"), (1, "x"), (1, "z"), (0, "r")]
    # w and x: common x, r; LCS x (shortest depth 1), longest 1, depth 2; w is 3 edges above x by its shortest
    # upward path (w z y x), x none: 4 / (3 + 0 + 4)
    assert H.wu_palmer(graph, "w", "x") == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="cycle through"):
        H.wu_palmer({"a": ("b",), "b": ("c",), "c": ("b",)}, "a", "a")


# ---- WordNet: lookups, the reader and class files on a tiny folder ---------------------------------------------

@pytest.fixture
def tiny(tmp_path):
    return wn.read_wordnet(tiny_wordnet(tmp_path / "wn"))


def test_lookups_by_name_and_wnid(tiny, tmp_path):
    assert tiny.lookup("  n00004000 ") == "n00004000"
    assert tiny.lookup(" cat.n.02\t") == "n00006000"
    assert tiny.lookup("TRUE_CAT.n.01") == "n00003000"  # through index.noun's senses, lemma lower-cased
    assert tiny.lookup("Cat.n.02") == "n00006000"
    # a lemma's second sense that is no synset's first word: through index.noun's order only
    kitty = wn.read_wordnet(tiny_wordnet(tmp_path / "kitty", index=INDEX + "kitty n 2 1 @ 2 0 00006000 00003000\n"))
    assert kitty.lookup("kitty.n.02") == "n00003000" and kitty.lookup("kitty.n.01") == "n00006000"
    assert tiny.senses["cat"] == ("n00003000", "n00006000") and tiny.senses["true_cat"] == ("n00003000",)
    assert tiny.version == "3.0"
    assert one_line_error(lambda: tiny.lookup("cat.n.00")) == \
        "unknown WordNet synset 'cat.n.00' ('cat' has 2 noun senses in WordNet 3.0)"
    assert one_line_error(lambda: tiny.lookup("horse.n.01")) == \
        "unknown WordNet synset 'horse.n.01' (no noun 'horse' in WordNet 3.0)"
    assert one_line_error(lambda: tiny.lookup("n00009999")) == \
        "no noun synset n00009999 in WordNet 3.0 (a wnid is 'n' and the 8-digit offset of a data.noun line, " \
        "e.g. n04489008)"
    assert one_line_error(lambda: tiny.lookup("cat.v.01")) == \
        "'cat.v.01' is not a noun synset: classes map to noun synsets (lemma.n.NN)"
    assert one_line_error(lambda: tiny.lookup("cat.N.01")) == \
        "'cat.N.01' is neither a WordNet synset name (e.g. trouser.n.01) nor a wnid (e.g. n04489008)"


def test_ancestors_keep_names_glosses_and_version(tiny):
    sub = wn.ancestors(tiny, ["cat.n.02", "n00004000"])
    assert list(sub.hypernyms) == ["n00001740", "n00002000", "n00004000", "n00005000", "n00006000"]
    assert sub.hypernyms["n00006000"] == ("n00005000",) and sub.names["n00006000"] == "cat.n.02"
    assert sub.glosses == {w: tiny.glosses[w] for w in sub.hypernyms} and sub.senses == {}
    assert sub.version == "3.0" and sub.lookup("dog.n.01") == "n00004000"


# a synset with ten words (hex 0a) and a pointer count of 2, one of them not a hypernym
TEN = ("00007000 05 n 0a w0 0 w1 0 w2 0 w3 0 w4 0 w5 0 w6 0 w7 0 w8 0 w9 0 002 ~ 00004000 n 0000 @ 00002000 n 0000"
       " | ten words")
TEN_INDEX = "".join(f"w{i} n 1 1 @ 1 0 00007000\n" for i in range(10))


def test_the_reader_counts_words_in_hex_and_skips_other_pointers(tmp_path):
    g = wn.read_wordnet(tiny_wordnet(tmp_path / "ten", data=DATA + TEN + "\n", index=INDEX + TEN_INDEX))
    assert g.hypernyms["n00007000"] == ("n00002000",) and g.names["n00007000"] == "w0.n.01"
    assert g.glosses["n00007000"] == "ten words" and g.lookup("w9.n.01") == "n00007000"
    assert g.senses["w5"] == ("n00007000",) and len(g.hypernyms) == 7 and len(g.names) == 7


def test_the_reader_refuses_what_is_not_wordnet(tmp_path):
    def bad(name, why, data=DATA, index=INDEX, drop=None):
        folder = tiny_wordnet(tmp_path / name, data=data, index=index)
        if drop:
            (folder / drop).unlink()
        assert one_line_error(lambda: wn.read_wordnet(folder)) == \
            f"{folder} is not a WordNet 3.0 dict folder ({why}); give --wordnet the folder that holds data.noun " \
            "and index.noun (Debian: /usr/share/wordnet)"

    bad("noroot", "data.noun has no entity.n.01 (n00001740)",
        data=DATA.replace("00001740 03 n 01 entity", "00001741 03 n 01 entity").replace("@ 00001740", "@ 00001741"),
        index=INDEX.replace("1 0 00001740", "1 0 00001741"))
    bad("unindexed", "index.noun does not list n00005000 under 'truck'",
        index=INDEX.replace("truck n 1 1 @ 1 0 00005000", "truck n 1 1 @ 1 0 00004000"))
    bad("short", "line 3 of index.noun is not an index line", index=INDEX.replace("00002000\ncat", "0002000\ncat"))
    bad("verbindex", "line 3 of index.noun is not an index line", index=INDEX.replace("animal n 1", "animal v 1"))
    bad("ptrs", "line 4 of index.noun is not an index line", index=INDEX.replace("cat n 2 3 @ @i ~", "cat n 2 2 @ @i ~"))
    bad("fewptrs", "line 4 of data.noun is not a noun synset line",
        data=DATA.replace("0 001 @ 00001740 n 0000 | a living", "0 002 @ 00001740 n 0000 | a living"))
    bad("nowords", "line 3 of data.noun is not a noun synset line",
        data=DATA.replace("00001740 03 n 01 entity 0 000", "00001740 03 n 00 000"))
    bad("offset", "line 3 of data.noun is not a noun synset line",
        data=DATA.replace("00001740 03 n 01 entity", "0001740x 03 n 01 entity"))
    bad("offset7", "line 3 of data.noun is not a noun synset line",
        data=DATA.replace("00001740 03 n 01 entity", "0001740 03 n 01 entity"))
    bad("noindex", "no index.noun", drop="index.noun")
    bad("nodata", "no data.noun", drop="data.noun")


def test_the_reader_reads_latin_1_bytes(tmp_path):
    folder = tiny_wordnet(tmp_path / "wn")
    for name, extra in (("data.noun", b"00008000 05 n 01 caf\xe9 0 001 @ 00002000 n 0000 | a \xe9 gloss  \n"),
                        ("index.noun", b"caf\xe9 n 1 1 @ 1 0 00008000  \n")):
        with open(folder / name, "ab") as fh:
            fh.write(extra)
    g = wn.read_wordnet(folder)
    assert g.names["n00008000"] == "caf\u00e9.n.01" and g.glosses["n00008000"] == "a \u00e9 gloss"
    assert g.lookup("CAF\u00c9.n.01") == "n00008000"


def test_the_reader_says_what_is_missing_in_full(tmp_path):
    advice = "give --wordnet the folder that holds data.noun and index.noun (Debian: /usr/share/wordnet)"
    assert one_line_error(lambda: wn.read_wordnet(tmp_path / "absent")) == \
        f"{tmp_path / 'absent'} is not a WordNet 3.0 dict folder (no such folder); {advice}"
    nohead = tiny_wordnet(tmp_path / "nohead")
    (nohead / "data.noun").write_text(DATA, encoding="utf-8")
    assert one_line_error(lambda: wn.read_wordnet(nohead)) == \
        f"{nohead} is not a WordNet 3.0 dict folder (data.noun has no WordNet licence header); {advice}"
    v31 = tiny_wordnet(tmp_path / "v31", version="3.1")
    assert one_line_error(lambda: wn.read_wordnet(v31)) == \
        f"{v31} holds WordNet 3.1; the audit needs WordNet 3.0 (ImageNet's wnids are WordNet 3.0 offsets): give " \
        "--wordnet a WordNet 3.0 dict folder"


def test_a_changed_folder_is_read_again(tmp_path):
    folder = tiny_wordnet(tmp_path / "wn")
    first = wn.read_wordnet(folder)
    assert wn.read_wordnet(folder) is first
    other = tiny_wordnet(tmp_path / "other", data=DATA.replace("a canine", "a canine, longer"))
    (folder / "data.noun").write_bytes((other / "data.noun").read_bytes())  # data.noun alone changes
    second = wn.read_wordnet(folder)
    assert second is not first and second.glosses["n00004000"] == "a canine, longer | with a bar in the gloss"
    assert wn.read_wordnet(str(folder) + "/") is second  # the same folder, however written
    with open(folder / "index.noun", "a", encoding="latin-1") as fh:  # index.noun alone changes
        fh.write("doggy n 1 1 @ 1 0 00004000  \n")
    third = wn.read_wordnet(folder)
    assert third is not second and third.lookup("doggy.n.01") == "n00004000"


# ---- the shipped mappings and class files -----------------------------------------------------------------------

def test_the_shipped_mapping_says_where_it_comes_from():
    cs = wn.load_builtin(" CIFAR10 ")
    assert cs.source == "cifar10, shipped (wordnet-cifar10.json, WordNet 3.0)"
    assert cs.graph.version == "3.0" and cs.reasons == (None,) * 10 and cs.mapped == list(range(10))
    assert wn.builtin_file("cifar10") == wn.DATA_DIR / "wordnet-cifar10.json"
    assert wn.no_hierarchy_reason(None) == (
        "'None' is not a built-in label set with a shipped WordNet mapping: map its classes with --class-synsets "
        "FILE (class<TAB>synset per line) and --wordnet DIR")
    assert wn.no_hierarchy_reason(" MNIST ") == wn.SKIPPED["mnist"]
    assert wn.no_hierarchy_reason("mnist").startswith("MNIST's classes are the digits 0-9")
    assert wn.load_builtin("MNIST") is None


def test_a_class_file_alone_lists_its_classes_in_order(tmp_path):
    folder = tiny_wordnet(tmp_path / "wn")
    f = tmp_path / "c.tsv"
    f.write_text("  # a comment after spaces\ndog\tdog.n.01\ncat\t\ntruck\t n00005000 \n\n", encoding="utf-8")
    cs = wn.load_class_synsets(f, folder)
    assert cs.classes == ("dog", "cat", "truck")
    assert cs.wnids == ("n00004000", None, "n00005000") and cs.senses == ("dog.n.01", None, "truck.n.01")
    assert cs.reasons == (None, "left unmapped in c.tsv (line 3)", None)
    assert cs.source == f"{f} (WordNet 3.0, {folder})"
    f.write_text("pickup truck\ttruck.n.01\n", encoding="utf-8")  # a space inside a class name
    assert wn.load_class_synsets(f, folder).classes == ("pickup truck",)
    assert cs.graph.names == {"n00001740": "entity.n.01", "n00004000": "dog.n.01", "n00002000": "animal.n.01",
                              "n00005000": "truck.n.01"}


def test_class_names_match_loosely_and_refuse_ambiguity(tmp_path):
    folder = tiny_wordnet(tmp_path / "wn")
    f = tmp_path / "c.tsv"
    f.write_text("Pickup-Truck\ttruck.n.01\n", encoding="utf-8")
    cs = wn.load_class_synsets(f, folder, ["cat", "pickup truck"])
    assert cs.wnids == (None, "n00005000") and cs.unmapped == {"cat": "not listed in c.tsv"}
    # an exact name wins over a loose one
    f.write_text("a_b\tdog.n.01\n", encoding="utf-8")
    assert wn.load_class_synsets(f, folder, ["A B", "a_b"]).wnids == (None, "n00004000")
    f.write_text("a-b\tdog.n.01\n", encoding="utf-8")
    assert one_line_error(lambda: wn.load_class_synsets(f, folder, ["A B", "a_b"])) == \
        f"{f} line 1: class 'a-b' names two of the model's classes ('A B', 'a_b'); use the model's class names"
    six = ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert one_line_error(lambda: wn.load_class_synsets(f, folder, six)) == \
        f"{f} line 1: class 'a-b' is not one of the model's classes ('c1', 'c2', 'c3', 'c4', 'c5' … (6)); use " \
        "the model's class names"
    five = six[:5]
    assert one_line_error(lambda: wn.load_class_synsets(f, folder, five)).endswith(
        "('c1', 'c2', 'c3', 'c4', 'c5'); use the model's class names")


def test_bad_class_file_lines(tmp_path):
    folder = tiny_wordnet(tmp_path / "wn")
    f = tmp_path / "c.tsv"
    for line in ("cat\tcat.n.01\textra", "\tcat.n.01", "  \tcat.n.01"):
        f.write_text(f"# head\n{line}\n", encoding="utf-8")
        assert one_line_error(lambda: wn.load_class_synsets(f, folder, ["cat"])) == \
            f"{f} line 2: expected 'class<TAB>synset' (a synset name like trouser.n.01 or a wnid like n04489008), " \
            f"got {line.strip()!r}"
    f.write_bytes(b"cat\t\xff\n")
    assert one_line_error(lambda: wn.load_class_synsets(f, folder, ["cat"])).startswith(
        f"cannot read the class-synsets file {f}: 'utf-8' codec can't decode")
    f.write_text("dog\tdog.n.07\n", encoding="utf-8")
    assert one_line_error(lambda: wn.load_class_synsets(f, folder, ["dog"])) == \
        f"{f} line 1: unknown WordNet synset 'dog.n.07' ('dog' has 1 noun senses in WordNet 3.0)"
    with pytest.raises(AuditError, match="no such folder"):
        wn.load_class_synsets(f, tmp_path / "absent", ["dog"])
