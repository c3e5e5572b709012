"""The severity of mistakes in the class hierarchy (Bertinetto et al., CVPR 2020; Jeanneret et al., 2021).

On when the audit's classes map to WordNet (``AnalysisContext.synsets``, from
``audit.analyses.semantics.wordnet.audit_synsets``): a user's ``--class-synsets`` file read against ``--wordnet``,
or a built-in label set with a shipped hierarchy (ImageNet-1k, CIFAR-10, CIFAR-100, Fashion-MNIST: the names
equal the set's names, in its order, by ``audit.data.labels.norm_name``); otherwise the section says why it is off
(MNIST's digits have no meaningful hierarchy). The tree is ``build_tree`` over the mapped classes
(``ClassSynsets.tree``, built once per mapping), its LCA heights ``lca_height``. Classes without a synset are
left out and named (``unmapped``): samples of such a class are not measured, and a mistake into such a class is
counted as not scored (``n_unscored``); the top-k distance ranks the mapped classes only.

It reads only the logits. Its sums, all integer counts that merge by addition (``export``/``absorb``, so torchrun
and ``--resume`` give the report of one process):

- per (true, predicted) pair, the count of mistakes: clean (every audited sample the model gets wrong) and per
  attack run the attack's mistakes (clean-correct samples whose adversarial is predicted wrongly: the mistakes the
  attack induced);
- per k (1, and 5 with at least 10 classes), a histogram of each sample's top-k LCA total (the sum of the LCA
  heights between the true class and its k highest scored classes, an integer; its mean over k is Bertinetto et
  al.'s hierarchical distance of the top-k), over every audited sample, clean and per run;
- per mapped class, the audited samples and those predicted right: clean, and per run under attack (the report's
  robust accuracy counts the same way: a clean mistake stays a mistake).

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
- coarse robustness (``coarse.py``) at the level of ``--superclass-depth`` or ``--superclasses`` (default: the
  shallowest depth where no superclass holds more than two thirds of the classes; the section's
  ``superclass_level`` says which and why): the share of all mistakes whose prediction stays inside the true class's
  superclass, with a Wilson interval (``audit.stats.proportion_interval``), beside the share a random wrong class
  would have (``same_superclass``); per superclass the samples, the accuracy (clean) or robust accuracy (a run; the
  failure rate of a minimal-perturbation attack, ``accuracy_of``) with a Wilson interval and the share of its
  mistakes staying inside (``by_superclass``); and whether accuracy differs across superclasses
  (``superclass_test``: Fisher's exact test with two, a Monte Carlo chi-square test with more).
"""

from __future__ import annotations

import numpy as np

from audit.analyses.base import Analysis, Batch
from audit.analyses.semantics.wordnet import label_set_of
from audit.analyses.semantics.hierarchy import (
    hierarchical_distance_topk, lca_height, random_wrong_baseline,
)
from audit.analyses.hierarchy.coarse import by_superclass, choose_level, compare, inside_share
from audit.errors import AuditError
from audit.stats import DEFAULT_CONFIDENCE, alpha_of, bootstrap_interval

TOP_K = (1, 5)  # k = 5 only with at least MIN_CLASSES_TOP5 classes
MIN_CLASSES_TOP5 = 10
METHOD = ("Mistake severity = height of the lowest common ancestor (LCA) of the true and predicted class in the "
          "WordNet class tree (Bertinetto et al., CVPR 2020: each class's longest hypernym path, single-child "
          "nodes removed; leaves at height 0). Attack runs: the mistakes the attack induced (clean-correct samples "
          "predicted wrongly under attack). Baseline: the expected height of a uniformly random wrong class for "
          "the same samples; paired Wilcoxon signed-rank test of observed minus expected.")


def build(context) -> Analysis:
    """The hierarchy analysis when the audit's classes map to WordNet, else a note saying why not (and bad input
    when a superclass level was asked for)."""
    synsets, config = context.synsets, context.config
    given = config.superclasses or ""
    nodes = [n.strip() for n in (given.split(",") if isinstance(given, str) else given) if n.strip()] or None
    if synsets is None or isinstance(synsets, str):
        if nodes or config.superclass_depth is not None:
            flag = "--superclasses" if nodes else "--superclass-depth"
            raise AuditError(f"{flag} needs a class hierarchy, and this audit has none "
                             f"({synsets or 'no class hierarchy was loaded'})")
        return HierarchyOff(synsets or "no class hierarchy was loaded")
    return HierarchyAnalysis(synsets, runs=context.runs, seed=config.seed, confidence=config.confidence,
                             superclass_depth=config.superclass_depth, superclasses=nodes)


class HierarchyOff(Analysis):
    """Writes the section's reason for being off; watches nothing."""

    key = "hierarchy"
    reads_tap = False

    def __init__(self, reason: str):
        self.reason = reason

    def finish(self, result) -> None:
        result.analyses[self.key] = {"skipped": self.reason}


class Tally:
    """One measurement's integer sums: mistakes per (true, predicted) pair, the top-k LCA totals' histograms, and per
    mapped class the samples and those predicted right."""

    def __init__(self, ks: tuple[int, ...], classes: int):
        self.samples = np.zeros(classes, dtype=np.int64)  # mapped class -> samples
        self.correct = np.zeros(classes, dtype=np.int64)  # mapped class -> samples predicted right
        self.pairs: dict[tuple[int, int], int] = {}  # (true, predicted) among the mapped classes -> mistakes
        self.topk = {k: {} for k in ks}  # k -> {LCA total over the top k: samples}
        self.unscored = 0  # mistakes into a class without a synset

    def add(self, lca: np.ndarray, labels: np.ndarray, logits: np.ndarray, mistakes: np.ndarray,
            predicted: np.ndarray, correct: np.ndarray) -> None:
        """One batch of samples of mapped classes: ``labels`` and ``predicted`` in the mapped classes' indices
        (-1: a prediction without a synset), ``logits`` of the mapped classes, ``mistakes`` the samples that
        count, ``correct`` those predicted right."""
        self.samples += np.bincount(labels, minlength=self.samples.size)
        self.correct += np.bincount(labels[correct], minlength=self.correct.size)
        self.unscored += int((mistakes & (predicted < 0)).sum())
        mistakes = mistakes & (predicted >= 0)
        pairs = np.stack([labels[mistakes], predicted[mistakes]], axis=1).astype(np.int64)
        for (t, p), n in zip(*np.unique(pairs.reshape(-1, 2), axis=0, return_counts=True), strict=True):
            self.pairs[(int(t), int(p))] = self.pairs.get((int(t), int(p)), 0) + int(n)
        for k, hist in self.topk.items():
            totals = np.rint(hierarchical_distance_topk(lca, logits, labels, k) * k).astype(np.int64)
            for value, count in zip(*np.unique(totals, return_counts=True), strict=True):
                hist[int(value)] = hist.get(int(value), 0) + int(count)

    def export(self) -> dict:
        pairs = np.array([[t, p, n] for (t, p), n in sorted(self.pairs.items())], dtype=np.int64).reshape(-1, 3)
        topk = {str(k): np.array(sorted(h.items()), dtype=np.int64).reshape(-1, 2) for k, h in self.topk.items()}
        return {"samples": self.samples.copy(), "correct": self.correct.copy(), "pairs": pairs, "topk": topk,
                "unscored": self.unscored}

    def absorb(self, part: dict) -> None:
        self.samples += np.asarray(part["samples"], dtype=np.int64)
        self.correct += np.asarray(part["correct"], dtype=np.int64)
        for t, p, n in np.asarray(part["pairs"], dtype=np.int64).reshape(-1, 3).tolist():
            self.pairs[(t, p)] = self.pairs.get((t, p), 0) + n
        for k, rows in part["topk"].items():
            hist = self.topk[int(k)]
            for value, n in np.asarray(rows, dtype=np.int64).reshape(-1, 2).tolist():
                hist[value] = hist.get(value, 0) + n
        self.unscored += int(part["unscored"])

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

    def __init__(self, synsets, *, runs: list | None = None, seed: int = 0, confidence: float = DEFAULT_CONFIDENCE,
                 superclass_depth: int | None = None, superclasses: list[str] | None = None):
        self.synsets, self.seed, self.confidence = synsets, seed, confidence
        self.mapped = np.array(synsets.mapped, dtype=np.int64)  # the audit's classes that have a synset
        self.position = np.full(len(synsets.classes), -1, dtype=np.int64)  # audit class -> mapped index, or -1
        self.position[self.mapped] = np.arange(len(self.mapped))
        self.tree = synsets.tree
        self.lca = lca_height(self.tree)
        # per class, the share of the other classes at each LCA height: the expected counts per height of a random
        # wrong class for a mistake of that true class (the same for every measurement, so made once)
        top = int(self.tree.height[self.tree.root])
        self._wrong_heights = np.zeros((len(self.lca), top + 1))
        for c, row in enumerate(self.lca):
            self._wrong_heights[c] = np.bincount(np.delete(row, c), minlength=top + 1)[:top + 1] / (len(row) - 1)
        self.level = choose_level(self.tree, synsets.graph.names, synsets.graph.lookup, depth=superclass_depth,
                                  nodes=superclasses)
        k = len(self.mapped)
        self.ks = tuple(x for x in TOP_K if x == 1 or k >= MIN_CLASSES_TOP5)
        self.runs = {run.key: run for run in runs or []}
        self.clean = Tally(self.ks, k)
        self.adv: dict[str, Tally] = {}
        self._clean_correct: np.ndarray | None = None

    def _tally(self, key: str) -> Tally:
        return self.adv.setdefault(key, Tally(self.ks, len(self.mapped)))

    def _add(self, tally: Tally, batch: Batch, mistakes: np.ndarray, correct: np.ndarray) -> None:
        """The batch's samples of mapped classes, in the mapped classes' indices, into ``tally``."""
        labels, logits = batch.y.cpu().numpy(), batch.logits.detach().double().cpu().numpy()
        keep = self.position[labels] >= 0
        tally.add(self.lca, self.position[labels[keep]], logits[keep][:, self.mapped], mistakes[keep],
                  self.position[logits[keep].argmax(1)], correct[keep])

    def on_clean(self, batch: Batch) -> None:
        self._clean_correct = (batch.logits.argmax(1) == batch.y).cpu().numpy()
        self._add(self.clean, batch, ~self._clean_correct, self._clean_correct)

    def on_adversarial(self, run, batch: Batch) -> None:
        wrong = (batch.logits.argmax(1) != batch.y).cpu().numpy()
        self._add(self._tally(run.key), batch, self._clean_correct & wrong, ~wrong)

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
        syn, level = self.synsets, self.level
        classes = [syn.classes[c] for c in self.mapped]
        order = list(self.runs)
        runs = []
        for key in sorted(self.adv, key=lambda k: order.index(k) if k in order else len(order)):
            run = self.runs[key]
            runs.append({"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text,
                         "accuracy_of": "robust accuracy" if run.spec.bounded else "failure rate",
                         **self._measure(self.adv[key])})
        result.analyses[self.key] = {
            "method": METHOD, "label_set": label_set_of(syn.classes), "source": syn.source,
            "n_classes": len(self.mapped), "unmapped": syn.unmapped,
            "max_height": int(self.tree.height[self.tree.root]),
            "confidence": self.confidence, "alpha": alpha_of(self.confidence), "seed": self.seed,
            "superclass_depth": level.depth,
            "superclass_level": {"how": level.how, "depth": level.depth, "rule": level.rule,
                                 "nodes": None if level.depth is not None else
                                 [n for n, s in zip(level.names, level.synsets, strict=True) if s is not None]},
            "superclasses": [{"name": name, "synset": wnid,
                              "classes": [classes[c] for c in np.flatnonzero(level.groups == g)]}
                             for g, (name, wnid) in enumerate(zip(level.names, level.synsets, strict=True))],
            "clean": {"accuracy_of": "accuracy", **self._measure(self.clean)}, "adversarial": runs,
        }

    def _measure(self, tally: Tally) -> dict:
        true, pred = tally.mistakes()
        heights = self.lca[true, pred].astype(np.float64)
        expected = random_wrong_baseline(self.lca, true)
        top = int(self.tree.height[self.tree.root])
        out: dict = {"n": int(true.size), "n_unscored": tally.unscored, "counts": np.bincount(
            heights.astype(np.int64), minlength=top + 1)[:top + 1].tolist()}
        out["baseline_counts"] = self._wrong_heights[true].sum(axis=0).tolist()
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
        else:
            out.update(mean=None, mean_ci=None, median=None, baseline_mean=None, difference=None,
                       difference_ci=None, p_value=None, verdict="no mistakes")
        out["same_superclass"] = inside_share(self.level, true, pred, self.confidence)
        rows = by_superclass(self.level, tally.samples, tally.correct, true, pred, self.confidence)
        out["by_superclass"] = rows
        out["superclass_test"] = compare(rows, alpha_of(self.confidence), self.seed)
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
