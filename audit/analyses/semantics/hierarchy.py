"""The class hierarchy: a tree over the classes built from the WordNet hypernym graph, and its measures.

Pure math on plain data (numpy only; no torch, no WordNet reader): the graph is a mapping
``hypernyms: {node: (parent, ...)}`` (a node's direct hypernyms; a root has none or is absent), the classes are a list
of graph nodes (``class_nodes``, e.g. wnids ``n02121808``), one per class index.

The tree (``build_tree``), as Bertinetto et al., "Making Better Mistakes: Leveraging Class Hierarchies with Deep
Networks", CVPR 2020, build theirs from WordNet:

1. Each class keeps ONE path to the root: its LONGEST hypernym path (most edges). Among equally long paths the
   lexicographically smallest sequence of node ids read from the root down wins (compared as Python strings, so for
   wnids the smallest offsets); the rule is deterministic and does not depend on the order of a node's parents.
2. The tree is the union of these paths. Each class is a leaf of its own, hung under its synset's node, so a class
   whose synset lies on another class's path (or two classes on one synset) still ends in a distinct leaf.
3. Every node with a single child is removed (its child takes its place), the root included; so is a class's synset
   node when the class's leaf is its only child (the leaf then stands for the synset).
4. Heights: a leaf has height 0, any other node 1 + the largest height of its children (the ordinary height of a
   rooted tree; in Bertinetto et al.'s trees, whose leaves share one depth, it is the number of levels above the
   leaves). Depths count edges from the root (the root has depth 0).

Measures:

- ``lca_height``: the height of the lowest common ancestor of every pair of classes (classes x classes, integers,
  zero on the diagonal): Bertinetto et al.'s mistake severity; all pairs in one pass over the tree.
- ``mistake_severity``: the LCA height of each wrong prediction (right ones are not mistakes and are left out).
- ``hierarchical_distance_topk``: per sample, the mean LCA height between the true class and each of the k highest
  scored classes (a correct class among them counts 0): Bertinetto et al.'s "average hierarchical distance of top-k".
- ``random_wrong_baseline``: per sample, the exact expected LCA height of a uniformly random WRONG class (the mean over
  the other classes), the chance level a mistake's severity is compared with.
- ``wu_palmer`` / ``wu_palmer_matrix``: Wu & Palmer, "Verb semantics and lexical selection", ACL 1994, on the graph
  itself (all parents, not the tree), with NLTK's conventions (see ``wu_palmer``).
- ``superclasses``: each class's ancestor at a given depth of the tree (coarse classes); ``top_split``: the classes
  under each child of the root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

__all__ = [
    "ClassTree", "build_tree", "hierarchical_distance_topk", "lca_height", "longest_path", "mistake_severity",
    "random_wrong_baseline", "superclasses", "top_split", "wu_palmer", "wu_palmer_matrix",
]

Hypernyms = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class ClassTree:
    """The contracted class tree. Nodes are integers ``0 .. len(parent) - 1``.

    ``parent[n]`` is the parent node (-1 for the root), ``children[n]`` the child nodes in the order of the graph
    node each hangs from directly below ``n`` on the chosen paths, before contraction (a leaf hung there directly: its
    class's node, after an inner node of the same name, then by class index), ``synset[n]`` the graph node the tree
    node stands for (a leaf: its class's node),
    ``height[n]`` and ``depth[n]`` as in the module's rules, ``leaf[c]`` the leaf node of class ``c`` (``leaf_class``
    the inverse, -1 for inner nodes) and ``paths[c]`` the class's chosen hypernym path from the root down to its node,
    before contraction.
    """

    class_nodes: tuple[str, ...]
    parent: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]
    synset: tuple[str, ...]
    height: tuple[int, ...]
    depth: tuple[int, ...]
    leaf: tuple[int, ...]
    leaf_class: tuple[int, ...]
    paths: tuple[tuple[str, ...], ...]
    root: int

    @property
    def num_classes(self) -> int:
        return len(self.leaf)


def longest_path(hypernyms: Hypernyms, node: str, _memo: dict | None = None) -> tuple[str, ...]:
    """The node's path from the root down to it by the tree rule: most edges, then the smallest sequence."""
    memo = {} if _memo is None else _memo
    visiting: set[str] = set()

    def walk(n: str) -> tuple[str, ...]:
        if n in memo:
            return memo[n]
        if n in visiting:
            raise ValueError(f"the hypernym graph has a cycle through {n!r}")
        visiting.add(n)
        parents = tuple(hypernyms.get(n, ()))
        best: tuple[str, ...] = ()
        for p in parents:
            cand = walk(p)
            if len(cand) > len(best) or (len(cand) == len(best) and cand < best):
                best = cand
        visiting.discard(n)
        memo[n] = best + (n,)
        return memo[n]

    return walk(node)


def build_tree(hypernyms: Hypernyms, class_nodes: Sequence[str]) -> ClassTree:
    """The class tree by the module's rules. Raises ValueError when there are no classes, the graph has a cycle or
    the classes' paths end at more than one root."""
    class_nodes = tuple(class_nodes)
    if not class_nodes:
        raise ValueError("no classes to build a hierarchy from")
    memo: dict = {}
    paths = tuple(longest_path(hypernyms, n, memo) for n in class_nodes)
    roots = sorted({p[0] for p in paths})
    if len(roots) > 1:
        raise ValueError(f"the classes' hypernym paths end at {len(roots)} roots ({', '.join(roots[:3])}), not one")
    # The union of the paths: inner nodes keyed by graph node, leaves keyed by class index.
    kids: dict[object, set] = {}
    for c, path in enumerate(paths):
        for up, down in pairwise(path):
            kids.setdefault(up, set()).add(down)
        kids.setdefault(path[-1], set()).add(c)

    def label(key) -> str:
        return class_nodes[key] if isinstance(key, int) else key

    def order(key) -> tuple:
        return (label(key), isinstance(key, int), key if isinstance(key, int) else -1)

    def contract(key):
        """The key that stands for ``key`` once single-child chains below it are removed."""
        while not isinstance(key, int) and len(kids[key]) == 1:
            key = next(iter(kids[key]))
        return key

    parent: list[int] = []
    children: list[list[int]] = []
    synset: list[str] = []
    depth: list[int] = []
    leaf = [-1] * len(class_nodes)
    leaf_class: list[int] = []
    stack = [(contract(roots[0]), -1)]
    while stack:  # preorder, children in their sorted order
        key, up = stack.pop()
        n = len(parent)
        parent.append(up)
        children.append([])
        synset.append(label(key))
        depth.append(0 if up < 0 else depth[up] + 1)
        leaf_class.append(key if isinstance(key, int) else -1)
        if up >= 0:
            children[up].append(n)
        if isinstance(key, int):
            leaf[key] = n
        else:
            for child in sorted(kids[key], key=order, reverse=True):
                stack.append((contract(child), n))
    height = [0] * len(parent)
    for n in range(len(parent) - 1, -1, -1):  # children come after their parent in preorder
        if children[n]:
            height[n] = 1 + max(height[k] for k in children[n])
    return ClassTree(class_nodes=class_nodes, parent=tuple(parent), children=tuple(map(tuple, children)),
                     synset=tuple(synset), height=tuple(height), depth=tuple(depth), leaf=tuple(leaf),
                     leaf_class=tuple(leaf_class), paths=paths, root=0)


def lca_height(tree: ClassTree) -> np.ndarray:
    """The height of the lowest common ancestor of every pair of classes: int64, classes x classes, 0 on the diagonal.

    Leaves are numbered in preorder, so each node's leaves are one contiguous range; a node writes its height into the
    blocks between each child's range and the rest of its own range: each pair is written exactly once (n^2 - n
    writes), then rows and columns are put back in class order.
    """
    n_nodes = len(tree.parent)
    lo = [0] * n_nodes
    hi = [0] * n_nodes
    order: list[int] = []  # classes in preorder of their leaves
    for node in range(n_nodes):  # node numbers are preorder: a leaf's rank in this walk is its range start
        lo[node] = len(order)
        if tree.leaf_class[node] >= 0:
            order.append(tree.leaf_class[node])
    for node in range(n_nodes - 1, -1, -1):
        hi[node] = lo[node] + 1 if tree.leaf_class[node] >= 0 else max(hi[k] for k in tree.children[node])
    size = len(order)
    out = np.zeros((size, size), dtype=np.int64)
    for node in range(n_nodes):
        h = tree.height[node]
        for k in tree.children[node]:
            a, b = lo[k], hi[k]
            out[a:b, lo[node]:a] = h
            out[a:b, b:hi[node]] = h
    rank = np.empty(size, dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(size)
    return out[np.ix_(rank, rank)]


def _check_lca(lca) -> np.ndarray:
    lca = np.asarray(lca)
    if lca.ndim != 2 or lca.shape[0] != lca.shape[1]:
        raise ValueError(f"the LCA heights must be a square classes x classes matrix, got shape {lca.shape}")
    return lca


def _labels(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 1-d array of class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return labels.astype(np.int64)


def hierarchical_distance_topk(lca, scores, labels, k: int) -> np.ndarray:
    """Per sample, the mean LCA height between the true class and each of the top-k classes (float64, one per sample).

    ``scores`` is either logits / probabilities (a float array, samples x classes: the k highest, ties to the lower
    class index) or a ranking (an integer array, samples x at least k: class indices, best first).
    """
    lca = _check_lca(lca)
    labels = _labels(labels, lca.shape[0])
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be samples x classes (or a ranking), got shape {scores.shape} for "
                         f"{labels.shape[0]} labels")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must lie in 1..{scores.shape[1]}, got {k}")
    if np.issubdtype(scores.dtype, np.integer):
        top = scores[:, :k].astype(np.int64)
        if top.size and (top.min() < 0 or top.max() >= lca.shape[0]):
            raise ValueError(f"a ranking's class indices must lie in 0..{lca.shape[0] - 1}")
    else:
        if scores.shape[1] != lca.shape[0]:
            raise ValueError(f"scores have {scores.shape[1]} classes, the hierarchy {lca.shape[0]}")
        if not np.isfinite(scores).all():
            raise ValueError("scores must be finite")
        top = _top_k(scores, k)
    return lca[labels[:, None], top].astype(np.float64).mean(axis=1)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k highest scored classes of each row (as a set, in class order), ties at the k-th score to the lower
    class indices: the first k of a stable descending sort, without sorting whole rows."""
    kth = np.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k, None]
    take = scores > kth
    at = scores == kth
    need = k - take.sum(axis=1)
    tied = np.flatnonzero(at.sum(axis=1) > need)  # rows with more classes at the k-th score than places left
    at[tied] &= np.cumsum(at[tied], axis=1) <= need[tied, None]
    take |= at
    return np.nonzero(take)[1].reshape(scores.shape[0], k)


def mistake_severity(lca, labels, predictions) -> np.ndarray:
    """The LCA height of each mistake (int64, one per sample whose prediction differs from its label, in order)."""
    lca = _check_lca(lca)
    labels = _labels(labels, lca.shape[0])
    predictions = _labels(predictions, lca.shape[0])
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    wrong = predictions != labels
    return lca[labels[wrong], predictions[wrong]]


def random_wrong_baseline(lca, labels) -> np.ndarray:
    """Per sample, the expected LCA height of a uniformly random wrong class: the mean of the true class's row over
    the other classes (exact; float64, one per sample)."""
    lca = _check_lca(lca)
    if lca.shape[0] < 2:
        raise ValueError("a random wrong class needs at least two classes")
    labels = _labels(labels, lca.shape[0])
    rows = lca.astype(np.float64)
    mean_wrong = (rows.sum(axis=1) - np.diag(rows)) / (lca.shape[0] - 1)
    return mean_wrong[labels]


# ---- Wu-Palmer on the graph -------------------------------------------------------------------------------------

class _Depths:
    """Shortest and longest root distances of graph nodes (memoised), and each node's upward distances."""

    def __init__(self, hypernyms: Hypernyms):
        self.hypernyms = hypernyms
        self.min: dict[str, int] = {}
        self.max: dict[str, int] = {}
        self.up: dict[str, dict[str, int]] = {}

    def depths(self, node: str) -> tuple[int, int]:
        if node not in self.min:
            stack, seen = [node], set()
            while stack:  # iterative post-order: deep graphs do not hit the recursion limit
                n = stack[-1]
                todo = [p for p in self.hypernyms.get(n, ()) if p not in self.min]
                if todo:
                    if n in seen:
                        raise ValueError(f"the hypernym graph has a cycle through {n!r}")
                    seen.add(n)
                    stack.extend(todo)
                    continue
                stack.pop()
                parents = tuple(self.hypernyms.get(n, ()))
                self.min[n] = 1 + min(self.min[p] for p in parents) if parents else 0
                self.max[n] = 1 + max(self.max[p] for p in parents) if parents else 0
        return self.min[node], self.max[node]

    def upward(self, node: str) -> dict[str, int]:
        """Every ancestor of ``node`` (itself included) with the fewest hypernym edges from ``node`` to it."""
        if node not in self.up:
            dist = {node: 0}
            frontier = [node]
            while frontier:
                nxt = []
                for n in frontier:
                    for p in self.hypernyms.get(n, ()):
                        if p not in dist:
                            dist[p] = dist[n] + 1
                            nxt.append(p)
                frontier = nxt
            self.up[node] = dist
        return self.up[node]

    def ranked(self, node: str, names: Mapping[str, str] | None) -> list[tuple[int, str]]:
        """The node's ancestors (itself included) as (shortest root depth, node), deepest first, then by name."""
        key = (lambda s: (-self.depths(s)[0], names.get(s, s), s)) if names else (lambda s: (-self.depths(s)[0], s))
        return [(self.depths(s)[0], s) for s in sorted(self.upward(node), key=key)]

    def wu_palmer(self, a: str, b: str, names: Mapping[str, str] | None,
                  ranked_a: list[tuple[int, str]] | None = None) -> float:
        up_a, up_b = self.upward(a), self.upward(b)
        lowest: list[str] = []
        for depth, s in ranked_a if ranked_a is not None else self.ranked(a, names):
            if lowest and depth < self.depths(lowest[0])[0]:
                break
            if s in up_b:
                lowest.append(s)
        if not lowest:
            raise ValueError(f"{a!r} and {b!r} have no common hypernym")
        lcs = a if a in lowest else b if b in lowest else lowest[0]
        depth = self.depths(lcs)[1] + 1
        return 2.0 * depth / (up_a[lcs] + up_b[lcs] + 2 * depth)


def wu_palmer(hypernyms: Hypernyms, a: str, b: str, names: Mapping[str, str] | None = None) -> float:
    """Wu-Palmer similarity of graph nodes ``a`` and ``b`` (1 for a node with itself), with NLTK's conventions
    (``Synset.wup_similarity``, nouns, no simulated root):

    - the least common subsumer (LCS) is, among the common hypernyms of ``a`` and ``b`` (each counting itself), one
      with the greatest SHORTEST distance from the root; of several, ``a`` or ``b`` itself if it is one, else the
      first by name (``names[node]``, e.g. ``dog.n.01``; by node id without ``names``). NLTK takes ``a`` only, not
      ``b``; taking either keeps the measure symmetric and differs only when such a tie includes ``b``.
    - depth(LCS) = its LONGEST distance from the root + 1 (the root counts 1);
    - similarity = 2 depth(LCS) / (d(a, LCS) + d(b, LCS) + 2 depth(LCS)), d the fewest hypernym edges up from a node
      to the LCS.

    Raises ValueError when the two share no hypernym.
    """
    return _Depths(hypernyms).wu_palmer(a, b, names)


def wu_palmer_matrix(hypernyms: Hypernyms, class_nodes: Sequence[str],
                     names: Mapping[str, str] | None = None) -> np.ndarray:
    """``wu_palmer`` of every pair of classes: float64, classes x classes, symmetric, 1 on the diagonal."""
    depths = _Depths(hypernyms)
    nodes = list(class_nodes)
    out = np.ones((len(nodes), len(nodes)), dtype=np.float64)
    for i in range(len(nodes)):
        ranked = depths.ranked(nodes[i], names)
        for j in range(i + 1, len(nodes)):
            out[i, j] = out[j, i] = depths.wu_palmer(nodes[i], nodes[j], names, ranked)
    return out


# ---- coarse classes ----------------------------------------------------------------------------------------------

def superclasses(tree: ClassTree, depth: int) -> np.ndarray:
    """Each class's ancestor at ``depth`` edges below the root (tree node numbers, one per class); a class whose leaf
    is no deeper than ``depth`` is its own superclass (its leaf). Depth 1 gives the groups of ``top_split``."""
    if depth < 0:
        raise ValueError(f"a superclass depth must be at least 0, got {depth}")
    out = np.empty(tree.num_classes, dtype=np.int64)
    for c, leaf in enumerate(tree.leaf):
        node = leaf
        while tree.depth[node] > depth:
            node = tree.parent[node]
        out[c] = node
    return out


def top_split(tree: ClassTree) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """The root's split: for each child of the root (in the tree's order), the node and the classes below it."""
    groups = superclasses(tree, 1)
    return tuple((child, tuple(int(c) for c in np.flatnonzero(groups == child))) for child in tree.children[tree.root])
