"""The semantic analysis of the audit's single pass (Dharmaretnam, Foster & Fyshe 2021).

Everything it keeps is a sum that merges by addition: per layer, per-class sums of pooled vectors and counts
(clean, from the clean pre-pass; adversarial, one set per attack run), per layer and run the paired 1 vs 2
outcomes of the scored adversarials and their own clean versions (``metrics.PAIRED``: both source-like, the
adversarial only, the clean version only, neither), and a class x class confusion count per attack run.
``finish`` turns the sums into the report section:

- per layer and run, the 1 vs 2 shares with Wilson intervals, exact binomial tests against one half, McNemar's
  exact test of the adversarials against their clean versions, Benjamini-Hochberg across layers
  (``metrics.one_vs_two_statistics``), and the flip layer by ``metrics.FLIP_RULE`` (``metrics.read_flip``), at
  alpha = 1 - the audit's confidence level (``--confidence``);
- per run, the semantic severity of the scored errors (rebuilt from the confusion counts): mean and median, each
  with a percentile bootstrap interval over the errors (``audit.stats.bootstrap_interval``, seeded with the
  audit's seed).

Every figure but the severity is measured against each semantic space ``--semantic-space`` chooses
(``space.choose_spaces``; a space gives covered classes and a class x class similarity: word vectors, Wu-Palmer on
WordNet): per space, the classes used (covered, with images), the 2v2 and RSA tests, the 1 vs 2 counts (a true and
predicted class with the same similarity to every reference class are not scored: ``n_tied``). The section's main
fields describe the first chosen space (``space``), ``spaces`` each space and the other's figures,
``between_spaces`` the RSA between the two spaces on the classes both cover. The severity stays the word-vector
distance.

The clean class representations come from a pre-pass (one tapped forward per image, no attack) so that the
1 vs 2 test can score each adversarial image against them while the pass runs, with memory that does not grow
with the number of images.
"""

from __future__ import annotations

import numpy as np
import torch

from audit.analyses.base import Analysis, Batch
from audit.analyses.semantics.metrics import (
    FLIP_RULE, PAIRED, one_vs_two_statistics, paired_counts, permutation_pvalues, profile, read_flip, rsa, severity,
    similarity, source_like, two_vs_two,
)
from audit.analyses.semantics.space import (
    MEASURES, MIN_CLASSES, WordSpace, build_wordnet_space, choose_spaces,
)
from audit.stats import alpha_of, DEFAULT_CONFIDENCE, bootstrap_interval, fdr_bh
from reports.formatting import fixed_interval
from reports.schema import is_reference, reference_entry

PIXEL_SIDE = 32  # the pixel control averages images down to at most 32 x 32 before class means are taken
SEVERITY_BINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, float("inf"))
WORST = 10


class ClassSums:
    """Per-class sums of vectors and counts: class means that merge by addition."""

    def __init__(self, num_classes: int):
        self.num_classes, self.sums, self.counts = num_classes, None, np.zeros(num_classes, dtype=np.int64)

    def add(self, vectors: torch.Tensor, labels: np.ndarray) -> None:
        v = vectors.detach().double().cpu().numpy()
        if self.sums is None:
            self.sums = np.zeros((self.num_classes, v.shape[1]))
        np.add.at(self.sums, labels, v)
        self.counts += np.bincount(labels, minlength=self.num_classes)

    def merge(self, other: ClassSums) -> None:
        self.sums = other.sums if self.sums is None else self.sums + (0 if other.sums is None else other.sums)
        self.counts += other.counts

    def means(self, classes: np.ndarray) -> np.ndarray:
        return self.sums[classes] / self.counts[classes, None]

    def export(self) -> dict:
        return {"sums": self.sums, "counts": self.counts.copy()}

    def absorb(self, state: dict) -> None:
        other = ClassSums(self.num_classes)
        other.sums = None if state["sums"] is None else np.asarray(state["sums"], dtype=np.float64)
        other.counts = np.asarray(state["counts"], dtype=np.int64)
        self.merge(other)


def pixel_vectors(x: torch.Tensor) -> torch.Tensor:
    """Images as pixel vectors for the control, area-averaged to at most PIXEL_SIDE x PIXEL_SIDE."""
    h, w = x.shape[-2:]
    if h > PIXEL_SIDE or w > PIXEL_SIDE:
        x = torch.nn.functional.adaptive_avg_pool2d(x, (min(h, PIXEL_SIDE), min(w, PIXEL_SIDE)))
    return x.flatten(1)


def build(context) -> SemanticAnalysis | None:
    """The semantic analysis of an audit with chosen layers (the word space is loaded by then), against the
    spaces ``--semantic-space`` chooses (``space.choose_spaces``: refused, before any work, when WordNet is asked
    for and the classes do not map to it)."""
    requested = getattr(context.config, "semantic_space", None)
    chosen, why = choose_spaces(requested, context.synsets)
    if not context.layers:
        return None
    spaces = [context.space if key == "glove" else build_wordnet_space(context.names, context.synsets)
              for key in chosen]
    return SemanticAnalysis(context.space, context.layers, permutations=context.config.permutations,
                            seed=context.config.seed, runs=context.runs, confidence=context.config.confidence,
                            spaces=spaces, choice={"requested": requested, "chosen": list(chosen), "why": why})


class SpaceView:
    """One semantic space as the analysis uses it, fixed after the clean pre-pass: the classes its figures use
    (covered by the space and with images), their similarity matrix (None below MIN_CLASSES), each class's
    position among them (-1: not used), the clean class representations per layer, and every class's similarity
    to each used class (the rows the 1 vs 2 test reads)."""

    def __init__(self, space, counts: np.ndarray, clean: dict, layers: list[str]):
        self.space, self.key = space, space.key
        self.used = np.flatnonzero(space.covered & (counts > 0))
        self.sim = space.similarity(self.used) if len(self.used) >= MIN_CLASSES else None
        self.position = np.full(len(space.names), -1)
        self.position[self.used] = np.arange(len(self.used))
        self.clean_reps = {n: clean[n].means(self.used) for n in layers} if len(self.used) else {}
        self.rows = space.rows(self.used)
        self.missing_in_sample = [name for name, ok, n in zip(space.names, space.covered, counts, strict=True)
                                  if n and not ok]


class SemanticAnalysis(Analysis):
    """Watches the clean pre-pass, the clean batches and every adversarial batch; writes ``analyses.semantics``.

    ``space``: the word space (the severity of the errors, the class names); ``spaces``: the semantic spaces
    whose similarity the layers are compared with, the first one the section's main fields describe (default:
    the word space alone); ``choice``: what was asked for and why these spaces (reported as ``space_choice``)."""

    key = "semantics"
    needs_prepass = True

    def __init__(self, space: WordSpace, layers: list[str], *, permutations: int = 1000, seed: int = 0,
                 runs: list | None = None, confidence: float = DEFAULT_CONFIDENCE, spaces: list | None = None,
                 choice: dict | None = None):
        self.space, self.layers, self.permutations, self.seed = space, layers, permutations, seed
        self.spaces = list(spaces) if spaces else [space]
        self.choice = choice or {"requested": None, "chosen": [s.key for s in self.spaces],
                                 "why": "the word space alone"}
        self.confidence = confidence
        self.runs = {run.key: run for run in runs or []}  # to rebuild the per-run sums of a saved state
        self.reset_prepass()
        # run key -> {"run", "sums": {layer: ClassSums}, "paired": {space: counts}, "n_flip": {space: n},
        # "n_tied": {space: n}, "confusion"}
        self.adv: dict = {}
        self.views: list[SpaceView] = []
        self._clean_correct: np.ndarray | None = None
        self._clean_pooled: dict | None = None

    # --- the passes -------------------------------------------------------------------------------------------

    def reset_prepass(self) -> None:
        k = len(self.space.names)
        self.clean = {name: ClassSums(k) for name in self.layers}
        self.pixels = ClassSums(k)

    def on_prepare(self, batch: Batch) -> None:
        x, tap = batch.x, batch.tap
        labels = batch.y.cpu().numpy()
        for name in self.layers:
            self.clean[name].add(tap.pooled[name], labels)
        self.pixels.add(pixel_vectors(x), labels)

    def prepared(self) -> None:
        """The clean pre-pass is over: fix, per space, the classes the metrics use and their clean representations."""
        self.views = [SpaceView(space, self.pixels.counts, self.clean, self.layers) for space in self.spaces]

    def on_clean(self, batch: Batch) -> None:
        self._clean_correct = (batch.logits.argmax(1) == batch.y).cpu().numpy()
        self._clean_pooled = batch.tap.pooled if batch.tap is not None else None

    def _state(self, run) -> dict:
        k = len(self.space.names)
        keys = [space.key for space in self.spaces]
        return self.adv.setdefault(run.key, {
            "run": run, "sums": {n: ClassSums(k) for n in self.layers},
            # per space and layer, the paired 1 vs 2 outcomes of the scored adversarials and their clean versions
            # (PAIRED), and per space the number scored
            "paired": {key: np.zeros((len(self.layers), len(PAIRED)), dtype=np.int64) for key in keys},
            "n_flip": dict.fromkeys(keys, 0), "n_tied": dict.fromkeys(keys, 0),
            "confusion": np.zeros((k, k), dtype=np.int64),
        })

    def on_adversarial(self, run, batch: Batch) -> None:
        state, tap = self._state(run), batch.tap
        labels, pred = batch.y.cpu().numpy(), batch.logits.argmax(1).cpu().numpy()
        for name in self.layers:
            state["sums"][name].add(tap.pooled[name], labels)
        fooled = self._clean_correct & (pred != labels)
        np.add.at(state["confusion"], (labels[fooled], pred[fooled]), 1)
        for view in self.views:
            if view.sim is None:
                continue
            # the 1 vs 2 test needs a class representation of the true class (a reference for the others) and the
            # space's similarity rows of both classes; the reference classes are the used classes but these two
            scored = fooled & (view.position[labels] >= 0) & view.space.covered[pred]
            s, t = labels[scored], pred[scored]
            keep = (view.used[None, :] != s[:, None]) & (view.used[None, :] != t[:, None])
            word_s, word_t = view.rows[s], view.rows[t]
            # a true and a predicted class with the same similarity to every reference class (sister synsets under
            # Wu-Palmer) leave the test nothing to compare: not scored, counted as tied
            tied = np.all(~keep | (word_s == word_t), axis=1)
            if tied.any():
                state["n_tied"][view.key] += int(tied.sum())
                scored[np.flatnonzero(scored)[tied]] = False
                s, t, keep, word_s, word_t = s[~tied], t[~tied], keep[~tied], word_s[~tied], word_t[~tied]
            if not scored.any():
                continue
            rows = torch.as_tensor(scored, device=batch.y.device)
            for i, name in enumerate(self.layers):
                adv, clean = (source_like(profile(pooled[name][rows].double().cpu().numpy(), view.clean_reps[name]),
                                          word_s, word_t, keep) for pooled in (tap.pooled, self._clean_pooled))
                state["paired"][view.key][i] += paired_counts(adv, clean)
            state["n_flip"][view.key] += int(scored.sum())

    # --- state: saved for --resume, and added up across the processes of a distributed run ---------------------

    def export(self, phase: str) -> dict:
        """``prepass``: the clean class sums; ``pass``: what the attacking pass added (adversarial sums, counts)."""
        if phase == "prepass":
            return {"clean": {n: c.export() for n, c in self.clean.items()}, "pixels": self.pixels.export()}
        return {"adv": {key: {"sums": {n: c.export() for n, c in st["sums"].items()},
                              **{field: st[field] for field in ("paired", "n_flip", "n_tied", "confusion")}}
                        for key, st in self.adv.items()}}

    def absorb(self, phase: str, state: dict) -> None:
        if phase == "prepass":
            for name, part in state["clean"].items():
                self.clean[name].absorb(part)
            self.pixels.absorb(state["pixels"])
            return
        for key, part in state["adv"].items():
            st = self._state(self.runs[key])
            for name, sums in part["sums"].items():
                st["sums"][name].absorb(sums)
            st["confusion"] = st["confusion"] + np.asarray(part["confusion"], dtype=np.int64)
            for space, counts in part["paired"].items():
                st["paired"][space] = st["paired"][space] + np.asarray(counts, dtype=np.int64)
                st["n_flip"][space] += int(part["n_flip"][space])
                st["n_tied"][space] += int(part["n_tied"][space])

    # --- the report -------------------------------------------------------------------------------------------

    def finish(self, result) -> None:
        section = {"method": METHOD, "embeddings": self.space.info, "coverage": self.space.coverage()}
        section["coverage"]["missing_in_sample"] = [  # the classes without a vector that this audit has images of
            name for name, ok, n in zip(self.space.names, self.space.covered, self.pixels.counts, strict=True)
            if n and not ok]
        order = list(self.runs)
        self.adv = dict(sorted(self.adv.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 0))
        common = {"permutations": self.permutations, "seed": self.seed, "confidence": self.confidence,
                  "alpha": alpha_of(self.confidence)}
        reference = reference_entry(result.attacks)
        figures = {view.key: self._figures(view, common, reference) for view in self.views}
        arrays = {key: part.pop("_arrays", None) for key, part in figures.items()}
        main = self.views[0]
        spaces = {"space": main.key, "space_choice": self.choice,
                  "spaces": {view.key: self._describe(view, None if view is main else figures[view.key])
                             for view in self.views}}
        if len(self.views) > 1:
            spaces["between_spaces"] = self._between()
        if "skipped" in figures[main.key]:
            section["skipped"] = figures[main.key]["skipped"]
            section.update(spaces)
            result.analyses["semantics"] = section
            return
        section.update({**{k: v for k, v in figures[main.key].items() if k not in ("notes", "interpretation")},
                        **common})
        section["severity"] = [self._severity(state) for state in self.adv.values()]
        # the key order of the section as before the spaces: main figures, then severity, notes, interpretation
        section = {**{k: section[k] for k in ("method", "embeddings", "coverage", "classes_used", "images_per_class",
                                              *common, "layers", "pixels", "one_vs_two", "severity")},
                   "notes": figures[main.key]["notes"], "interpretation": figures[main.key]["interpretation"],
                   **spaces}
        result.analyses["semantics"] = section
        exported = arrays[main.key]
        for view in self.views:
            if view is not main and view.sim is not None:
                exported[f"space:{view.key}:classes"] = np.array([self.space.names[c] for c in view.used])
                exported[f"space:{view.key}:similarity"] = view.sim
        result.artifacts["representations"] = exported

    def _figures(self, view: SpaceView, common: dict, reference: dict | None) -> dict:
        """Everything the section measures against one space: per layer the clean 2v2 with its permutation test
        and chance band, RSA, the adversarial 2v2, RSA and drift per run, the 1 vs 2 test; the pixel control."""
        used, word = view.used, view.sim
        if word is None:
            return {"skipped": f"only {len(used)} classes have both {HAVE[view.key]} and images in the sample; the "
                               f"semantic metrics need at least {MIN_CLASSES}"}
        clean_sims = {n: similarity(view.clean_reps[n]) for n in self.layers}
        pixel_sim = similarity(self.pixels.means(used))
        test = permutation_pvalues([*clean_sims.values(), pixel_sim], word, n_perm=self.permutations,
                                   seed=self.seed, workers=2)
        adjusted = fdr_bh(test.p_values[:-1])
        flips = {key: one_vs_two_statistics(state["paired"][view.key], self.confidence)
                 for key, state in self.adv.items()}
        layers = []
        for i, name in enumerate(self.layers):
            entry = {
                "name": name, "dimension": int(view.clean_reps[name].shape[1]),
                "clean": {"two_vs_two": float(test.observed[i]), "rsa": _finite(rsa(clean_sims[name], word)),
                          "p_value": float(adjusted[i]), "p_value_raw": float(test.p_values[i]),
                          # the 2v2 that label permutations reach in a share `confidence` of draws: chance's band
                          "chance_upper": float(np.quantile(test.null[:, i], self.confidence, method="higher"))},
                "adversarial": [],
            }
            for key, state in self.adv.items():
                reps = state["sums"][name]
                adv_sim = similarity(reps.means(used))
                run, n = state["run"], state["n_flip"][view.key]
                tvt = two_vs_two(adv_sim, word)
                entry["adversarial"].append({
                    "attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "two_vs_two": tvt,
                    "rsa": _finite(rsa(adv_sim, word)), "drift": float(test.observed[i]) - tvt,
                    "n_scored": n,
                    # the share of source-like adversarials, and the same test on the clean versions of the same
                    # images (the baseline to read it against), with their intervals and tests (one_vs_two_statistics)
                    **{field: flips[key][field][i] for field in LAYER_FIELDS},
                })
            layers.append(entry)
        out = {
            "classes_used": [self.space.names[c] for c in used],
            "images_per_class": {"min": int(self.pixels.counts[used].min()), "max": int(self.pixels.counts[used].max())},
            "layers": layers,
            "pixels": {"two_vs_two": float(test.observed[-1]), "rsa": _finite(rsa(pixel_sim, word)),
                       "p_value_raw": float(test.p_values[-1]), "side": PIXEL_SIDE},
            "one_vs_two": [self._flip(state, flips[key], view.key) for key, state in self.adv.items()],
        }
        out["notes"] = self._notes(view, out)
        out["interpretation"] = interpret({**out, **common}, reference, against=AGAINST[view.key])
        out["_arrays"] = self._arrays(view, clean_sims)
        return out

    def _describe(self, view: SpaceView, figures: dict | None) -> dict:
        """A space in the report: what it measures, where it came from, what it covers; ``figures``: its own
        figures (the spaces beside the main one; the main one's are the section's fields)."""
        space = view.space
        coverage = {"n_classes": len(space.names), "n_covered": int(space.covered.sum()),
                    "missing": [n for n, ok in zip(space.names, space.covered, strict=True) if not ok],
                    "missing_in_sample": view.missing_in_sample}
        if view.key == "wordnet":  # the word space's classes are listed in the section's coverage
            full = space.coverage()
            coverage.update(classes=full["classes"], why=full["why"])
        out = {"measure": MEASURES[view.key], "source": space.info.get("source", "?"), "coverage": coverage}
        return out if figures is None else {**out, **figures}

    def _between(self) -> dict:
        """The RSA between the two spaces themselves: Spearman over the upper triangles of their similarity matrices
        on the classes both cover, with a label-permutation p-value (one-sided: agreement)."""
        glove, wordnet = (next(v.space for v in self.views if v.key == key) for key in ("glove", "wordnet"))
        both = np.flatnonzero(glove.covered & wordnet.covered)
        out = {"method": "Spearman rank correlation of the upper triangles (i < j) of the two spaces' class "
                         "similarity matrices on the classes both cover; p: label permutations of one space, "
                         "(1 + #{null >= observed}) / (1 + permutations)",
               "n_classes": int(len(both)), "classes": [self.space.names[c] for c in both],
               "permutations": self.permutations, "seed": self.seed}
        if len(both) < MIN_CLASSES:
            return {**out, "rsa": None, "p_value": None,
                    "skipped": f"only {len(both)} classes are covered by both spaces; the RSA between them needs at "
                               f"least {MIN_CLASSES}"}
        s_glove, s_wordnet = glove.similarity(both), wordnet.similarity(both)
        value = rsa(s_glove, s_wordnet)
        if not np.isfinite(value):
            return {**out, "rsa": None, "p_value": None,
                    "skipped": "undefined: one space gives every pair of these classes the same similarity"}
        test = permutation_pvalues([s_glove], s_wordnet, n_perm=self.permutations, seed=self.seed, metric="rsa")
        return {**out, "rsa": float(value), "p_value": float(test.p_values[0])}

    def _flip(self, state: dict, stats: dict, space: str) -> dict:
        run, alpha = state["run"], alpha_of(self.confidence)
        reading = read_flip(stats, self.layers, alpha)
        return {"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "n_scored": state["n_flip"][space],
                # successful adversarials whose true and predicted class the space does not tell apart: not scored
                "n_tied": state["n_tied"][space],
                "paired": {"columns": list(PAIRED), "counts": state["paired"][space].tolist()},
                **{field: stats[field] for field in LAYER_FIELDS},
                "alpha": alpha, "flip_layer": None if reading.layer is None else self.layers[reading.layer],
                "flip_status": reading.status, "flip_note": reading.note,
                "informative_layers": [self.layers[i] for i in reading.informative],
                "flip_rule": FLIP_RULE}

    def _severity(self, state: dict) -> dict:
        run, confusion = state["run"], state["confusion"]
        vectors = self.space.vectors
        pairs = [(s, t) for s, t in zip(*np.nonzero(confusion), strict=True)
                 if self.space.covered[s] and self.space.covered[t]]
        out = {"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "n": 0, "mean": None,
               "mean_ci": None, "median": None, "median_ci": None, "histogram": {"edges": [e for e in SEVERITY_BINS if np.isfinite(e)], "counts": []},
               "worst": []}
        if not pairs:
            return out
        s, t = (np.array(v) for v in zip(*pairs, strict=True))
        covered = np.flatnonzero(self.space.covered)
        pos = np.full(len(self.space.names), -1)
        pos[covered] = np.arange(len(covered))
        values = severity(vectors[covered], pos[s], pos[t])
        counts = confusion[s, t]
        spread = np.repeat(values, counts)
        hist = np.histogram(spread, bins=np.array(SEVERITY_BINS))[0]
        order = np.lexsort((-counts, -values))[:WORST]
        names = self.space.names
        out.update({
            "n": int(counts.sum()), "mean": float(spread.mean()), "median": float(np.median(spread)),
            # percentile bootstrap over the scored errors, seeded with the audit's seed
            "mean_ci": bootstrap_interval(spread, np.mean, self.confidence, seed=self.seed),
            "median_ci": bootstrap_interval(spread, np.median, self.confidence, seed=self.seed),
            "histogram": {"edges": out["histogram"]["edges"], "counts": hist.tolist()},
            "worst": [{"true": names[s[i]], "predicted": names[t[i]], "count": int(counts[i]),
                       "severity": float(values[i]), "word_distance": float(self.space.distance[s[i], t[i]])}
                      for i in order],
        })
        return out

    def _notes(self, view: SpaceView, figures: dict) -> list[str]:
        n = len(view.used)
        notes = []
        if n < 10:
            notes.append(f"only {n} classes: the 2 vs 2 test has {n * (n - 1) // 2} pairs, so its accuracy moves in "
                         f"steps of {1 / (n * (n - 1) / 2):.3f}; read it as indicative")
        if figures["images_per_class"]["min"] < 10:
            notes.append(f"as few as {figures['images_per_class']['min']} images per class: class representations "
                         "are noisy")
        missing = view.missing_in_sample
        if missing:
            notes.append(f"{len(missing)} of the classes with images in this sample have no {LACK[view.key]} and are "
                         f"left out: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
        return notes

    def _arrays(self, view: SpaceView, clean_sims: dict) -> dict:
        arrays = {"classes": np.array([self.space.names[c] for c in view.used]), "word_similarity": view.sim}
        if view.key == "glove":
            arrays["word_vectors"] = self.space.vectors[view.used]
        for name in self.layers:
            arrays[f"layer:{name}:representations"] = view.clean_reps[name]
            arrays[f"layer:{name}:similarity"] = clean_sims[name]
        return arrays


METHOD = (
    "Dharmaretnam, Foster & Fyshe (2021), Words as a window: per layer, one pooled vector per image (global "
    "average over space; a transformer block's tokens pooled by the model's own rule, as analyses.tap records), class representation = mean over the class's clean images, Pearson similarity "
    "matrices, 2 vs 2 test (leave-two-out rows, Pearson r, strict >), RSA (Spearman over upper triangles), "
    "label-permutation null with Benjamini-Hochberg FDR across layers; 1 vs 2 test per successful adversarial "
    "against the clean class representations"
)


HAVE = {"glove": "a word vector", "wordnet": "a WordNet synset"}
LACK = {"glove": "word vector", "wordnet": "WordNet synset"}
AGAINST = {"glove": "word similarity", "wordnet": "WordNet (Wu-Palmer) similarity"}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# the per-layer figures of the 1 vs 2 test that each layer's adversarial entry and each run's one_vs_two entry carry
LAYER_FIELDS = ("source_like", "source_like_ci", "source_like_clean", "source_like_clean_ci", "p_below_half",
                "q_below_half", "p_clean_above_half", "q_clean_above_half", "p_vs_clean", "q_vs_clean")


def flip_text(flip: dict, names: list[str]) -> str:
    """What the 1 vs 2 test says about one run (``names``: the layers, in order): a flip layer only where the flip
    rule (``read_flip``) finds one, with the shares, intervals and adjusted p-values it rests on; otherwise that
    it names none, and the note (what was measured, and which test is inconclusive at this n)."""
    if flip.get("flip_status") != "flip":
        return f"the 1 vs 2 test names no flip layer: {flip.get('flip_note') or 'no reading'}"
    name = flip["flip_layer"]
    i = names.index(name)
    ci = fixed_interval(flip["source_like_ci"][i], sep=",")
    return (f"the 1 vs 2 test puts the flip at {name}: {flip['source_like'][i]:.2f}{' ' + ci if ci else ''} "
            f"of the {flip['n_scored']} successful adversarials scored are "
            f"source-like there, significantly fewer than their clean versions ({flip['source_like_clean'][i]:.2f}; "
            f"McNemar q = {flip['q_vs_clean'][i]:.2g}) and than one half (q = {flip['q_below_half'][i]:.2g})")


def interpret(section: dict, reference: dict | None = None, against: str = AGAINST["glove"]) -> str:
    """One sentence on what the numbers say, about the reference run (the run the tables show): the clean 2v2
    agreement with the space's similarity (``against``) is called significant only when its FDR-adjusted p is
    below the section's alpha."""
    layers = section["layers"]
    best = max(layers, key=lambda e: e["clean"]["two_vs_two"])
    last = layers[-1]
    pixel = section["pixels"]["two_vs_two"]
    alpha = section.get("alpha", 0.05)
    if best["clean"]["p_value"] < alpha:
        text = (f"Clean: layer {best['name']} agrees best with {against} (2v2 "
                f"{best['clean']['two_vs_two']:.2f}, significant after FDR, p = {best['clean']['p_value']:.2g}; "
                f"pixels {pixel:.2f})")
    else:
        text = (f"Clean: the highest 2v2 is layer {best['name']}'s ({best['clean']['two_vs_two']:.2f}; pixels "
                f"{pixel:.2f}), not significantly above chance after FDR (p = {best['clean']['p_value']:.2g}): "
                "inconclusive at this number of classes and images")
    adv = next((a for a in last["adversarial"] if is_reference(a, reference)), None)
    flip = next((f for f in section["one_vs_two"] if is_reference(f, reference)), None)
    if adv is None or flip is None:
        return text + "."
    label = f"{adv['attack']}@{adv['eps_text'] or 'min'}"
    return (f"{text}; under {label} (the strongest attack at the largest budget) the last layer's 2v2 is "
            f"{adv['two_vs_two']:.2f}; {flip_text(flip, [layer['name'] for layer in layers])}.")
