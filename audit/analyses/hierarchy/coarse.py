"""Coarse robustness: the audit's classes grouped into superclasses of the class tree, and per superclass the
accuracy (clean, and robust under each attack run), the share of the mistakes whose prediction stays inside the
superclass, and a test of whether accuracy differs across superclasses.

Numpy and scipy on plain counts; the hierarchy analysis (``analysis.py``) keeps the counts per class.

The level of the superclasses (``choose_level``), over the mapped classes' tree ``build_tree``:

- ``--superclass-depth N``: each class's ancestor N edges below the root of the contracted tree (``superclasses``;
  the root is depth 0); a class whose leaf is shallower than N is its own superclass. N lies in 1 .. the tree's
  height (the depth of its deepest leaf); outside that it is bad input.
- ``--superclasses NODE,...``: WordNet nodes (synset names such as ``vehicle.n.01``, or wnids) on the classes'
  chosen hypernym paths (``ClassTree.paths``: the paths the tree is built from, before single-child nodes are
  removed, so a node the contraction removed can still be named). Each class goes to the DEEPEST named node on its
  path (a class under two named nodes goes to the nearer one); a class under none goes to the group ``other``, which
  is listed and measured for accuracy but is no superclass: its mistakes are left out of the shares inside. A name
  that is not on any class's path, or a named node that keeps no class of its own (every class under it is under
  a deeper named node), is bad input.
- the default: the SHALLOWEST depth at which no superclass holds more than ``MAX_SHARE`` (two thirds) of the mapped
  classes. Depth 1 splits CIFAR-10 into vertebrates (6) and vehicles (4) and Fashion-MNIST into clothing (6),
  footwear (3) and bag (1); ImageNet-1k's depth 1 is physical entity (992) vs abstraction (8), so it goes on to
  depth 4 (artifact 522, organism 410, and 23 small groups such as natural object and food); CIFAR-100 to depth 4
  (organism 60, artifact 30, ...). One class alone: depth 0.

Per superclass (``by_superclass``): the samples of its classes (n), those predicted right (k: clean accuracy, or
robust accuracy under an attack run), k / n with a Wilson interval (``audit.stats.proportion_interval``); and of the
mistakes whose true class lies in it (clean: every wrong prediction; a run: the mistakes the attack induced) the
share predicted inside it, with a Wilson interval and the share a uniformly random wrong class would have
((size - 1) / (classes - 1)).

Across superclasses (``compare``), the superclasses with samples as rows of a table right/wrong: with two, Fisher's
exact test (two-sided, ``scipy.stats.fisher_exact``); with more, Pearson's chi-square statistic with its p-value by
Monte Carlo over tables with the observed margins (``MONTE_CARLO`` draws, multivariate hypergeometric, seeded with
the audit's seed: valid at small counts, where the chi-square approximation is not). The verdict names the lowest
and highest superclass only when p <= alpha; otherwise it says the difference is inconclusive at this n.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from audit.analyses.semantics.hierarchy import ClassTree, superclasses
from audit.errors import AuditError
from audit.stats import proportion_interval

MAX_SHARE = 2 / 3  # the default level: no superclass holds more than this share of the classes
OTHER = "other"  # the group of classes under no named node (--superclasses)
MONTE_CARLO = 9999  # tables drawn for the chi-square test's p-value


@dataclass(frozen=True)
class Level:
    """The superclasses: ``groups[c]`` the superclass index of mapped class ``c``; per superclass its ``names``
    (synset names, or ``other``) and ``synsets`` (wnids; None for ``other``); ``depth`` (None for named nodes),
    ``how`` (``default``, ``--superclass-depth`` or ``--superclasses``) and ``rule``, a sentence saying which
    level it is and why."""

    groups: np.ndarray
    names: tuple[str, ...]
    synsets: tuple[str | None, ...]
    depth: int | None
    how: str
    rule: str

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.groups, minlength=len(self.names))


def _by_depth(tree: ClassTree, names: Mapping[str, str], depth: int) -> tuple[np.ndarray, list[str], list[str]]:
    nodes = superclasses(tree, depth)
    order = np.unique(nodes)  # node numbers are preorder: the tree's own order
    index = {int(n): i for i, n in enumerate(order)}
    synsets = [tree.synset[int(n)] for n in order]
    return np.array([index[int(n)] for n in nodes], dtype=np.int64), [names.get(s, s) for s in synsets], synsets


def default_depth(tree: ClassTree) -> int:
    """The shallowest depth at which no superclass holds more than ``MAX_SHARE`` of the classes (0: one class)."""
    count = tree.num_classes
    for depth in range(1, tree.height[tree.root] + 1):
        if np.bincount(superclasses(tree, depth)).max() <= MAX_SHARE * count:
            return depth
    return 0


def choose_level(tree: ClassTree, names: Mapping[str, str], lookup: Callable[[str], str], *,
                 depth: int | None = None, nodes: Sequence[str] | None = None) -> Level:
    """The superclasses by the module's rules; ``names``: wnid -> synset name, ``lookup``: a synset name or wnid ->
    its wnid (raising AuditError when WordNet has none). Bad levels raise AuditError (one line)."""
    count, top = tree.num_classes, tree.height[tree.root]
    if nodes:
        return _named(tree, names, lookup, nodes)
    if depth is not None:
        if not 1 <= depth <= top:
            raise AuditError(f"--superclass-depth {depth} is outside this audit's class tree: its depths below the "
                             f"root run from 1 to {top} (the root is depth 0)")
        groups, labels, synsets = _by_depth(tree, names, depth)
        return Level(groups, tuple(labels), tuple(synsets), depth, "--superclass-depth",
                     f"depth {depth} of the class tree (--superclass-depth)")
    depth = default_depth(tree)
    groups, labels, synsets = _by_depth(tree, names, depth)
    biggest = int(np.bincount(groups).max())
    rule = (f"depth {depth} of the class tree (the default: the shallowest depth at which no superclass holds more "
            f"than two thirds of the {count} classes; the largest holds {biggest})") if depth else \
        "depth 0 (the default; a single class)"
    return Level(groups, tuple(labels), tuple(synsets), depth, "default", rule)


def _named(tree: ClassTree, names: Mapping[str, str], lookup: Callable[[str], str], given: Sequence[str]) -> Level:
    on_paths = {node for path in tree.paths for node in path}
    wanted: list[str] = []
    for name in given:
        try:
            wnid = lookup(name)
        except AuditError:
            wnid = None
        if wnid is None or wnid not in on_paths:
            raise AuditError(f"--superclasses: '{name}' is not a node of this audit's class hierarchy (give synset "
                             "names such as vehicle.n.01, or wnids, on the classes' hypernym paths; `audit hierarchy` "
                             "prints the tree)")
        if wnid not in wanted:
            wanted.append(wnid)
    rank = {wnid: i for i, wnid in enumerate(wanted)}
    other = len(wanted)
    groups = np.full(tree.num_classes, other, dtype=np.int64)
    for c, path in enumerate(tree.paths):
        for node in reversed(path):  # the deepest named node on the class's path
            if node in rank:
                groups[c] = rank[node]
                break
    sizes = np.bincount(groups, minlength=other + 1)
    for wnid, i in rank.items():
        if not sizes[i]:
            deeper = sorted({names.get(wanted[g], wanted[g]) for c, g in enumerate(groups)
                             if g != other and wnid in tree.paths[c]})
            raise AuditError(f"--superclasses: {names.get(wnid, wnid)} keeps no class of its own (every class under "
                             f"it is under a deeper named node: {', '.join(deeper)})")
    labels = [names.get(w, w) for w in wanted]
    synsets: list[str | None] = list(wanted)
    if sizes[other]:
        labels.append(OTHER)
        synsets.append(None)
    rule = (f"the named nodes {', '.join(names.get(w, w) for w in wanted)} (--superclasses): each class under "
            "the deepest named node on its hypernym path"
            + (f"; {int(sizes[other])} classes under none form '{OTHER}'" if sizes[other] else ""))
    return Level(groups, tuple(labels), tuple(synsets), None, "--superclasses", rule)


def by_superclass(level: Level, samples: np.ndarray, correct: np.ndarray, true: np.ndarray, pred: np.ndarray,
                  confidence: float) -> list[dict]:
    """Per superclass: n, k, accuracy with its Wilson interval (``samples``/``correct`` per mapped class) and the
    share of its mistakes (``true``/``pred``: one entry per mistake, mapped indices) predicted inside it."""
    groups, sizes, count = level.groups, level.sizes, len(level.groups)
    n_by = np.bincount(groups, weights=samples, minlength=len(level.names)).astype(np.int64)
    k_by = np.bincount(groups, weights=correct, minlength=len(level.names)).astype(np.int64)
    out = []
    for g, name in enumerate(level.names):
        n, k = int(n_by[g]), int(k_by[g])
        entry = {"name": name, "n": n, "correct": k, "accuracy": k / n if n else None,
                 "accuracy_ci": proportion_interval(k, n, confidence), "mistakes": None}
        if level.synsets[g] is not None:
            mine = groups[true] == g
            m, inside = int(mine.sum()), int((groups[pred[mine]] == g).sum())
            entry["mistakes"] = {"k": inside, "n": m, "share": inside / m if m else None,
                                 "ci": proportion_interval(inside, m, confidence),
                                 "chance": float((sizes[g] - 1) / (count - 1)) if count > 1 else None}
        out.append(entry)
    return out


def inside_share(level: Level, true: np.ndarray, pred: np.ndarray, confidence: float) -> dict | None:
    """Of all the mistakes whose true class has a superclass (not ``other``), the share predicted inside it, its
    Wilson interval and the mean share a random wrong class would have; None without such mistakes."""
    named = np.array([s is not None for s in level.synsets])
    groups, sizes, count = level.groups, level.sizes, len(level.groups)
    keep = named[groups[true]]
    true, pred = true[keep], pred[keep]
    if not true.size or count < 2:
        return None
    inside = int((groups[true] == groups[pred]).sum())
    return {"k": inside, "n": int(true.size), "share": inside / true.size,
            "ci": proportion_interval(inside, int(true.size), confidence),
            "chance": float(((sizes[groups[true]] - 1) / (count - 1)).mean())}


def compare(rows: list[dict], alpha: float, seed: int) -> dict:
    """Does accuracy differ across superclasses? ``rows``: ``by_superclass``'s entries. The test (module docstring),
    its p-value and a verdict that names the lowest and highest superclass only when p <= alpha."""
    have = [r for r in rows if r["n"]]
    n = sum(r["n"] for r in have)
    k = sum(r["correct"] for r in have)
    out = {"test": None, "statistic": None, "p_value": None, "groups": len(have), "n": n, "lowest": None,
           "highest": None}
    if len(have) < 2:
        return {**out, "verdict": "nothing to compare (samples in fewer than two superclasses)"}
    if k in (0, n):
        return {**out, "verdict": f"nothing to compare (every sample {'right' if k else 'wrong'})"}
    hits = np.array([r["correct"] for r in have], dtype=np.int64)
    sizes = np.array([r["n"] for r in have], dtype=np.int64)
    if len(have) == 2:
        from scipy.stats import fisher_exact

        table = np.stack([hits, sizes - hits], axis=1)
        out.update(test="Fisher's exact test (two-sided)", p_value=float(fisher_exact(table).pvalue))
    else:
        observed = chi_square(hits[None, :], sizes, k)[0]
        draws = np.random.default_rng(seed).multivariate_hypergeometric(sizes, k, size=MONTE_CARLO)
        extreme = int((chi_square(draws, sizes, k) >= observed - 1e-9 * max(1.0, observed)).sum())
        out.update(test=f"chi-square test, p by Monte Carlo ({MONTE_CARLO} tables with the observed margins)",
                   statistic=float(observed), p_value=(1 + extreme) / (1 + MONTE_CARLO))
    acc = hits / sizes
    low, high = have[int(np.argmin(acc))], have[int(np.argmax(acc))]
    if out["p_value"] <= alpha:
        out.update(lowest=low["name"], highest=high["name"], verdict="differs across superclasses")
    else:
        out["verdict"] = f"inconclusive at n = {n}"
    return out


def chi_square(hits: np.ndarray, sizes: np.ndarray, total_hits: int) -> np.ndarray:
    """Pearson's chi-square of each row of ``hits`` (right per superclass) against independence, for superclasses
    of ``sizes`` samples and ``total_hits`` right in all (float64, one per row)."""
    n = sizes.sum()
    right = sizes * (total_hits / n)
    wrong = sizes * ((n - total_hits) / n)
    hits = hits.astype(np.float64)
    return (((hits - right) ** 2 / right) + ((sizes - hits - wrong) ** 2 / wrong)).sum(axis=1)
