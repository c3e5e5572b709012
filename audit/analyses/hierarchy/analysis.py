"""The severity of mistakes in the class hierarchy (Bertinetto et al., CVPR 2020; Jeanneret et al., 2021).

On when the audit's class names are a built-in label set with a shipped WordNet hierarchy (ImageNet-1k, CIFAR-10,
CIFAR-100, Fashion-MNIST: the names equal the set's names, in its order, by ``audit.data.labels.norm_name``);
otherwise the section says why it is off (MNIST's digits have no meaningful hierarchy; other class names need
``--class-synsets``, which comes next). The tree is ``build_tree`` of the set's shipped graph, its LCA heights
``lca_height``.

It reads only the logits. Its sums, all integer counts that merge by addition (``export``/``absorb``, so torchrun
and ``--resume`` give the report of one process):

- per (true, predicted) pair, the count of mistakes: clean (every audited sample the model gets wrong) and per
  attack run the attack's mistakes (clean-correct samples whose adversarial is predicted wrongly: the mistakes the
  attack induced);
- per k (1, and 5 with at least 10 classes), a histogram of each sample's top-k LCA total (the sum of the LCA
  heights between the true class and its k highest scored classes, an integer; its mean over k is Bertinetto et
  al.'s hierarchical distance of the top-k), over every audited sample, clean and per run.

``finish`` rebuilds the mistakes from the pair counts (in (true, predicted) order, so the result does not depend on
the batches' order or their split over processes) and reports, clean and per run:

- the mistakes' LCA heights: n, mean with a percentile bootstrap interval (``audit.stats.bootstrap_interval``,
  seeded with the audit's seed, at ``--confidence``), median, counts per height;
- the random-wrong-class baseline of the same samples (``random_wrong_baseline``: the exact expected height of a
  uniformly random wrong class), its mean and expected counts per height, the mean paired difference observed -
  expected with a bootstrap interval, and the Wilcoxon signed-rank test of the differences (two-sided,
  ``scipy.stats.wilcoxon``, zero differences dropped); the verdict says "milder" or "worse than chance" (the sign
  with the larger rank sum) only when p <= alpha, else that it is inconclusive at this n;
- the top-k hierarchical distance: mean with a percentile bootstrap interval over the samples (never below 0);
- coarse robustness: each class's superclass at ``SUPERCLASS_DEPTH`` (1: the root's split, ``superclasses``) and
  the share of mistakes whose prediction stays inside the true class's superclass, with a Wilson interval
  (``audit.stats.proportion_interval``), beside the share a random wrong class would have.
"""

from __future__ import annotations

import numpy as np

from audit.analyses.base import Analysis, Batch
from audit.analyses.semantics.hierarchy import (
    build_tree, hierarchical_distance_topk, lca_height, random_wrong_baseline, superclasses,
)
from audit.analyses.semantics.wordnet import load_builtin, no_hierarchy_reason
from audit.data.labels import BUILTIN, norm_name
from audit.stats import DEFAULT_CONFIDENCE, alpha_of, bootstrap_interval, proportion_interval

SUPERCLASS_DEPTH = 1  # the root's split (CIFAR-10: animals / vehicles; Fashion-MNIST: clothing / footwear / bag)
TOP_K = (1, 5)  # k = 5 only with at least MIN_CLASSES_TOP5 classes
MIN_CLASSES_TOP5 = 10
NOT_BUILTIN = ("the class names are not a built-in label set with a shipped hierarchy (imagenet-1k, cifar10, "
               "cifar100, fashion-mnist); mapping your own classes with --class-synsets comes next")
METHOD = ("Mistake severity = height of the lowest common ancestor (LCA) of the true and predicted class in the "
          "WordNet class tree (Bertinetto et al., CVPR 2020: each class's longest hypernym path, single-child "
          "nodes removed; leaves at height 0). Attack runs: the mistakes the attack induced (clean-correct samples "
          "predicted wrongly under attack). Baseline: the expected height of a uniformly random wrong class for "
          "the same samples; paired Wilcoxon signed-rank test of observed minus expected.")


def label_set_of(names) -> str | None:
    """The built-in label set whose class names (in order, compared by ``norm_name``) are ``names``, or None."""
    key = tuple(norm_name(n) for n in names)
    for name, load in BUILTIN.items():
        if name == "imagenet-1k" and len(key) != 1000:
            continue
        if tuple(norm_name(n) for n in load()) == key:
            return name
    return None


def build(context) -> Analysis:
    """The hierarchy analysis when the class names are a built-in set with a hierarchy, else a note saying why."""
    label_set = label_set_of(context.names)
    if label_set is None:
        return HierarchyOff(NOT_BUILTIN)
    why = no_hierarchy_reason(label_set)
    synsets = load_builtin(label_set) if why is None else None
    if synsets is None or synsets.unmapped:
        return HierarchyOff(why or f"{label_set}: classes without a synset: {', '.join(synsets.unmapped)}")
    return HierarchyAnalysis(label_set, synsets, runs=context.runs, seed=context.config.seed,
                             confidence=context.config.confidence)


class HierarchyOff(Analysis):
    """Writes the section's reason for being off; watches nothing."""

    key = "hierarchy"
    reads_tap = False

    def __init__(self, reason: str):
        self.reason = reason

    def finish(self, result) -> None:
        result.analyses[self.key] = {"skipped": self.reason}


class Tally:
    """One measurement's integer sums: mistakes per (true, predicted) pair and the top-k LCA totals' histograms."""

    def __init__(self, ks: tuple[int, ...]):
        self.pairs: dict[tuple[int, int], int] = {}
        self.topk = {k: {} for k in ks}  # k -> {LCA total over the top k: samples}

    def add(self, lca: np.ndarray, labels: np.ndarray, logits: np.ndarray, mistakes: np.ndarray) -> None:
        pairs = np.stack([labels[mistakes], logits[mistakes].argmax(1)], axis=1).astype(np.int64)
        for (t, p), n in zip(*np.unique(pairs.reshape(-1, 2), axis=0, return_counts=True), strict=True):
            self.pairs[(int(t), int(p))] = self.pairs.get((int(t), int(p)), 0) + int(n)
        for k, hist in self.topk.items():
            totals = np.rint(hierarchical_distance_topk(lca, logits, labels, k) * k).astype(np.int64)
            for value, count in zip(*np.unique(totals, return_counts=True), strict=True):
                hist[int(value)] = hist.get(int(value), 0) + int(count)

    def export(self) -> dict:
        pairs = np.array([[t, p, n] for (t, p), n in sorted(self.pairs.items())], dtype=np.int64).reshape(-1, 3)
        return {"pairs": pairs, "topk": {str(k): np.array(sorted(h.items()), dtype=np.int64).reshape(-1, 2)
                                         for k, h in self.topk.items()}}

    def absorb(self, part: dict) -> None:
        for t, p, n in np.asarray(part["pairs"], dtype=np.int64).reshape(-1, 3).tolist():
            self.pairs[(t, p)] = self.pairs.get((t, p), 0) + n
        for k, rows in part["topk"].items():
            hist = self.topk[int(k)]
            for value, n in np.asarray(rows, dtype=np.int64).reshape(-1, 2).tolist():
                hist[value] = hist.get(value, 0) + n

    def mistakes(self) -> tuple[np.ndarray, np.ndarray]:
        """The mistakes' true and predicted classes, one entry per mistake, in (true, predicted) order."""
        items = sorted(self.pairs.items())
        counts = [n for _, n in items]
        return (np.repeat(np.array([t for (t, _), _ in items], dtype=np.int64), counts),
                np.repeat(np.array([p for (_, p), _ in items], dtype=np.int64), counts))


class HierarchyAnalysis(Analysis):
    """Watches the clean and adversarial logits; writes ``analyses.hierarchy``."""

    key = "hierarchy"
    reads_tap = False

    def __init__(self, label_set: str, synsets, *, runs: list | None = None, seed: int = 0,
                 confidence: float = DEFAULT_CONFIDENCE):
        self.label_set, self.synsets, self.seed, self.confidence = label_set, synsets, seed, confidence
        self.tree = build_tree(synsets.graph.hypernyms, synsets.wnids)
        self.lca = lca_height(self.tree)
        k = len(synsets.classes)
        self.ks = tuple(x for x in TOP_K if x == 1 or k >= MIN_CLASSES_TOP5)
        self.runs = {run.key: run for run in runs or []}
        self.clean = Tally(self.ks)
        self.adv: dict[str, Tally] = {}
        self._clean_correct: np.ndarray | None = None

    def _tally(self, key: str) -> Tally:
        return self.adv.setdefault(key, Tally(self.ks))

    def on_clean(self, batch: Batch) -> None:
        labels, logits = batch.y.cpu().numpy(), batch.logits.detach().double().cpu().numpy()
        self._clean_correct = logits.argmax(1) == labels
        self.clean.add(self.lca, labels, logits, ~self._clean_correct)

    def on_adversarial(self, run, batch: Batch) -> None:
        labels, logits = batch.y.cpu().numpy(), batch.logits.detach().double().cpu().numpy()
        self._tally(run.key).add(self.lca, labels, logits, self._clean_correct & (logits.argmax(1) != labels))

    def export(self, phase: str) -> dict | None:
        if phase != "pass":
            return None
        return {"clean": self.clean.export(), "adv": {key: t.export() for key, t in self.adv.items()}}

    def absorb(self, phase: str, part: dict) -> None:
        if phase != "pass":
            return
        self.clean.absorb(part["clean"])
        for key, sub in part["adv"].items():
            self._tally(key).absorb(sub)

    # --- the report -------------------------------------------------------------------------------------------

    def finish(self, result) -> None:
        syn, tree = self.synsets, self.tree
        groups = superclasses(tree, SUPERCLASS_DEPTH)
        names = syn.graph.names
        group_names = {int(g): names.get(tree.synset[g], tree.synset[g]) for g in np.unique(groups)}
        order = list(self.runs)
        runs = []
        for key in sorted(self.adv, key=lambda k: order.index(k) if k in order else len(order)):
            run = self.runs[key]
            runs.append({"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text,
                         **self._measure(self.adv[key], groups)})
        result.analyses[self.key] = {
            "method": METHOD, "label_set": self.label_set, "source": syn.source,
            "n_classes": len(syn.classes), "max_height": int(self.tree.height[self.tree.root]),
            "confidence": self.confidence, "alpha": alpha_of(self.confidence), "seed": self.seed,
            "superclass_depth": SUPERCLASS_DEPTH,
            "superclasses": [{"name": group_names[g], "classes": [syn.classes[c] for c in np.flatnonzero(groups == g)]}
                             for g in group_names],
            "clean": self._measure(self.clean, groups), "adversarial": runs,
        }

    def _measure(self, tally: Tally, groups: np.ndarray) -> dict:
        true, pred = tally.mistakes()
        heights = self.lca[true, pred].astype(np.float64)
        expected = random_wrong_baseline(self.lca, true)
        top = int(self.tree.height[self.tree.root])
        out: dict = {"n": int(true.size), "counts": np.bincount(heights.astype(np.int64), minlength=top + 1)[
            :top + 1].tolist()}
        # the expected counts per height of a random wrong class for each mistake's true class
        others = np.zeros((len(self.lca), top + 1))
        for c, row in enumerate(self.lca):
            others[c] = np.bincount(np.delete(row, c), minlength=top + 1)[:top + 1] / (len(row) - 1)
        out["baseline_counts"] = others[true].sum(axis=0).tolist()
        if true.size:
            diff = heights - expected
            out.update(
                mean=float(heights.mean()), mean_ci=bootstrap_interval(heights, confidence=self.confidence,
                                                                       seed=self.seed),
                median=float(np.median(heights)), baseline_mean=float(expected.mean()),
                difference=float(diff.mean()), difference_ci=bootstrap_interval(diff, confidence=self.confidence,
                                                                                seed=self.seed),
            )
            out.update(_versus_chance(diff, alpha_of(self.confidence)))
            inside = int((groups[true] == groups[pred]).sum())
            sizes = np.bincount(groups, minlength=int(groups.max()) + 1)
            out["same_superclass"] = {
                "k": inside, "n": int(true.size), "share": inside / true.size,
                "ci": proportion_interval(inside, int(true.size), self.confidence),
                "chance": float(((sizes[groups[true]] - 1) / (len(groups) - 1)).mean()),
            }
        else:
            out.update(mean=None, mean_ci=None, median=None, baseline_mean=None, difference=None,
                       difference_ci=None, p_value=None, verdict="no mistakes", same_superclass=None)
        out["topk"] = [_topk(k, tally.topk[k], self.confidence, self.seed) for k in self.ks]
        return out


def _versus_chance(diff: np.ndarray, alpha: float) -> dict:
    """The Wilcoxon signed-rank test of observed minus expected heights (two-sided) and what it supports."""
    from scipy.stats import rankdata, wilcoxon

    n = int(diff.size)
    if not np.any(diff != 0):
        return {"p_value": None, "verdict": f"inconclusive at n = {n} (every mistake at the baseline's height)"}
    p = float(wilcoxon(diff, alternative="two-sided").pvalue)
    if p <= alpha:  # the direction of the test itself: which sign carries the larger sum of ranks
        nonzero = diff[diff != 0]
        ranks = rankdata(np.abs(nonzero))
        verdict = "worse than chance" if ranks[nonzero > 0].sum() > ranks[nonzero < 0].sum() else \
            "milder than chance"
    else:
        verdict = f"inconclusive at n = {n}"
    return {"p_value": p, "verdict": verdict}


def _topk(k: int, hist: dict, confidence: float, seed: int) -> dict:
    """The mean top-k hierarchical distance (total / k per sample) with a percentile bootstrap interval over the
    samples (never below 0, as a t interval of a mean of mostly zeros would be)."""
    values = np.repeat(np.array(sorted(hist), dtype=np.float64) / k, [hist[v] for v in sorted(hist)])
    return {"k": k, "n": int(values.size), "mean": float(values.mean()) if values.size else None,
            "ci": bootstrap_interval(values, confidence=confidence, seed=seed)}
