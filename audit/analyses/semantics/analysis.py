"""The semantic analysis of the audit's single pass (Dharmaretnam, Foster & Fyshe 2021).

Everything it keeps is a sum that merges by addition: per layer, per-class sums of pooled vectors and counts
(clean, from the clean pre-pass; adversarial, one set per attack run), counts of source-like images per layer,
and a class x class confusion count per attack run. ``finish`` turns the sums into the report section.

The clean class representations come from a pre-pass (one tapped forward per image, no attack) so that the
1 vs 2 test can score each adversarial image against them while the pass runs, with memory that does not grow
with the number of images.
"""

from __future__ import annotations

import numpy as np
import torch

from audit.analyses.base import Analysis, Batch
from audit.analyses.semantics.metrics import (
    FLIP_CLEAN_MIN, FLIP_MIN_SCORED, permutation_pvalues, profile, read_flip, rsa, severity, similarity,
    source_like, two_vs_two,
)
from audit.analyses.semantics.space import MIN_CLASSES, WordSpace
from audit.stats import fdr_bh
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
    """The semantic analysis of an audit with chosen layers (the word space is loaded by then)."""
    if not context.layers:
        return None
    return SemanticAnalysis(context.space, context.layers, permutations=context.config.permutations,
                            seed=context.config.seed, runs=context.runs)


class SemanticAnalysis(Analysis):
    """Watches the clean pre-pass, the clean batches and every adversarial batch; writes ``analyses.semantics``."""

    key = "semantics"
    needs_prepass = True

    def __init__(self, space: WordSpace, layers: list[str], *, permutations: int = 1000, seed: int = 0,
                 runs: list | None = None):
        self.space, self.layers, self.permutations, self.seed = space, layers, permutations, seed
        self.runs = {run.key: run for run in runs or []}  # to rebuild the per-run sums of a saved state
        self.reset_prepass()
        self.adv: dict = {}  # run key -> {"run", "sums": {layer: ClassSums}, "source_like", "n_flip", "confusion"}
        self._clean_reps: dict[str, np.ndarray] | None = None
        self._clean_correct: np.ndarray | None = None
        self._clean_pooled: dict | None = None
        self._word_sim: np.ndarray | None = None

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
        """The clean pre-pass is over: fix the classes the metrics use and their clean representations."""
        counts = self.pixels.counts
        self.used = np.flatnonzero(self.space.covered & (counts > 0))
        self._word_sim = self.space.similarity(self.used) if len(self.used) >= MIN_CLASSES else None
        self._position = np.full(len(self.space.names), -1)
        self._position[self.used] = np.arange(len(self.used))
        self._clean_reps = {n: self.clean[n].means(self.used) for n in self.layers} if len(self.used) else {}
        # word similarity of every class with a vector to each used class (NaN rows for classes without one)
        covered = np.flatnonzero(self.space.covered)
        rows = np.full((len(self.space.names), len(self.used)), np.nan)
        if len(covered) and len(self.used):
            rows[covered] = similarity(self.space.vectors[covered])[:, np.searchsorted(covered, self.used)]
        self._word_rows = rows

    def on_clean(self, batch: Batch) -> None:
        self._clean_correct = (batch.logits.argmax(1) == batch.y).cpu().numpy()
        self._clean_pooled = batch.tap.pooled if batch.tap is not None else None

    def _state(self, run) -> dict:
        k = len(self.space.names)
        return self.adv.setdefault(run.key, {
            "run": run, "sums": {n: ClassSums(k) for n in self.layers},
            "source_like": np.zeros(len(self.layers), dtype=np.int64), "n_flip": 0,
            "source_like_clean": np.zeros(len(self.layers), dtype=np.int64),
            "confusion": np.zeros((k, k), dtype=np.int64),
        })

    def on_adversarial(self, run, batch: Batch) -> None:
        state, tap = self._state(run), batch.tap
        labels, pred = batch.y.cpu().numpy(), batch.logits.argmax(1).cpu().numpy()
        for name in self.layers:
            state["sums"][name].add(tap.pooled[name], labels)
        fooled = self._clean_correct & (pred != labels)
        np.add.at(state["confusion"], (labels[fooled], pred[fooled]), 1)
        if self._word_sim is None:
            return
        # the 1 vs 2 test needs a class representation of the true class (a reference for the others) and word
        # vectors of both classes; the reference classes are the used classes but these two
        scored = fooled & (self._position[labels] >= 0) & self.space.covered[pred]
        if not scored.any():
            return
        s, t = labels[scored], pred[scored]
        keep = (self.used[None, :] != s[:, None]) & (self.used[None, :] != t[:, None])
        word_s, word_t = self._word_rows[s], self._word_rows[t]
        rows = torch.as_tensor(scored)
        for i, name in enumerate(self.layers):
            for key, pooled in (("source_like", tap.pooled), ("source_like_clean", self._clean_pooled)):
                prof = profile(pooled[name][rows].double().cpu().numpy(), self._clean_reps[name])
                state[key][i] += int(source_like(prof, word_s, word_t, keep).sum())
        state["n_flip"] += int(scored.sum())

    # --- state: saved for --resume, and added up across the processes of a distributed run ---------------------

    def export(self, phase: str) -> dict:
        """``prepass``: the clean class sums; ``pass``: what the attacking pass added (adversarial sums, counts)."""
        if phase == "prepass":
            return {"clean": {n: c.export() for n, c in self.clean.items()}, "pixels": self.pixels.export()}
        return {"adv": {key: {"sums": {n: c.export() for n, c in st["sums"].items()},
                              "source_like": st["source_like"], "source_like_clean": st["source_like_clean"],
                              "n_flip": st["n_flip"], "confusion": st["confusion"]} for key, st in self.adv.items()}}

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
            for field in ("source_like", "source_like_clean", "confusion"):
                st[field] = st[field] + np.asarray(part[field], dtype=np.int64)
            st["n_flip"] += int(part["n_flip"])

    # --- the report -------------------------------------------------------------------------------------------

    def finish(self, result) -> None:
        section = {"method": METHOD, "embeddings": self.space.info, "coverage": self.space.coverage()}
        section["coverage"]["missing_in_sample"] = [  # the classes without a vector that this audit has images of
            name for name, ok, n in zip(self.space.names, self.space.covered, self.pixels.counts, strict=True)
            if n and not ok]
        used = self.used
        if len(used) < MIN_CLASSES:
            section["skipped"] = (
                f"only {len(used)} classes have both a word vector and images in the sample; the semantic "
                f"metrics need at least {MIN_CLASSES}"
            )
            result.analyses["semantics"] = section
            return
        order = list(self.runs)
        self.adv = dict(sorted(self.adv.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 0))
        word = self._word_sim
        clean_sims = {n: similarity(self._clean_reps[n]) for n in self.layers}
        pixel_sim = similarity(self.pixels.means(used))
        test = permutation_pvalues([*clean_sims.values(), pixel_sim], word, n_perm=self.permutations,
                                   seed=self.seed, workers=2)
        adjusted = fdr_bh(test.p_values[:-1])
        layers = []
        for i, name in enumerate(self.layers):
            entry = {
                "name": name, "dimension": int(self._clean_reps[name].shape[1]),
                "clean": {"two_vs_two": float(test.observed[i]), "rsa": _finite(rsa(clean_sims[name], word)),
                          "p_value": float(adjusted[i]), "p_value_raw": float(test.p_values[i])},
                "adversarial": [],
            }
            for state in self.adv.values():
                reps = state["sums"][name]
                adv_sim = similarity(reps.means(used))
                run, n = state["run"], state["n_flip"]
                tvt = two_vs_two(adv_sim, word)
                entry["adversarial"].append({
                    "attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "two_vs_two": tvt,
                    "rsa": _finite(rsa(adv_sim, word)), "drift": float(test.observed[i]) - tvt,
                    "n_scored": n, "source_like": float(state["source_like"][i] / n) if n else None,
                    # the same test on the clean versions of the same images: the baseline to read it against
                    "source_like_clean": float(state["source_like_clean"][i] / n) if n else None,
                })
            layers.append(entry)
        section.update({
            "classes_used": [self.space.names[c] for c in used],
            "images_per_class": {"min": int(self.pixels.counts[used].min()), "max": int(self.pixels.counts[used].max())},
            "permutations": self.permutations, "seed": self.seed,
            "layers": layers,
            "pixels": {"two_vs_two": float(test.observed[-1]), "rsa": _finite(rsa(pixel_sim, word)),
                       "p_value_raw": float(test.p_values[-1]), "side": PIXEL_SIDE},
            "one_vs_two": [self._flip(state, layers) for state in self.adv.values()],
            "severity": [self._severity(state) for state in self.adv.values()],
        })
        section["notes"] = self._notes(section)
        section["interpretation"] = interpret(section, reference_entry(result.attacks))
        result.analyses["semantics"] = section
        result.artifacts["representations"] = self._arrays(clean_sims, word)

    def _flip(self, state: dict, layers: list[dict]) -> dict:
        run = state["run"]
        at = list(self.adv).index(run.key)
        fractions = [entry["adversarial"][at]["source_like"] for entry in layers]
        clean = [entry["adversarial"][at]["source_like_clean"] for entry in layers]
        reading = read_flip(fractions, clean, state["n_flip"])
        return {"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "n_scored": state["n_flip"],
                "source_like": fractions, "source_like_clean": clean,
                "flip_layer": None if reading.layer is None else self.layers[reading.layer],
                "flip_status": reading.status, "flip_reason": reading.reason,
                "informative_layers": [self.layers[i] for i in reading.informative],
                "flip_rule": FLIP_RULE}

    def _severity(self, state: dict) -> dict:
        run, confusion = state["run"], state["confusion"]
        vectors = self.space.vectors
        pairs = [(s, t) for s, t in zip(*np.nonzero(confusion), strict=True)
                 if self.space.covered[s] and self.space.covered[t]]
        out = {"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "n": 0, "mean": None,
               "median": None, "histogram": {"edges": [e for e in SEVERITY_BINS if np.isfinite(e)], "counts": []},
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
            "histogram": {"edges": out["histogram"]["edges"], "counts": hist.tolist()},
            "worst": [{"true": names[s[i]], "predicted": names[t[i]], "count": int(counts[i]),
                       "severity": float(values[i]), "word_distance": float(self.space.distance[s[i], t[i]])}
                      for i in order],
        })
        return out

    def _notes(self, section: dict) -> list[str]:
        n = len(self.used)
        notes = []
        if n < 10:
            notes.append(f"only {n} classes: the 2 vs 2 test has {n * (n - 1) // 2} pairs, so its accuracy moves in "
                         f"steps of {1 / (n * (n - 1) / 2):.3f}; read it as indicative")
        if section["images_per_class"]["min"] < 10:
            notes.append(f"as few as {section['images_per_class']['min']} images per class: class representations "
                         "are noisy")
        missing = section["coverage"]["missing_in_sample"]
        if missing:
            notes.append(f"{len(missing)} of the classes with images in this sample have no word vector and are left "
                         f"out: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
        return notes

    def _arrays(self, clean_sims: dict, word: np.ndarray) -> dict:
        arrays = {"classes": np.array([self.space.names[c] for c in self.used]), "word_similarity": word,
                  "word_vectors": self.space.vectors[self.used]}
        for name in self.layers:
            arrays[f"layer:{name}:representations"] = self._clean_reps[name]
            arrays[f"layer:{name}:similarity"] = clean_sims[name]
        return arrays


METHOD = (
    "Dharmaretnam, Foster & Fyshe (2021), Words as a window: per layer, one pooled vector per image (global "
    "average over space), class representation = mean over the class's clean images, Pearson similarity "
    "matrices, 2 vs 2 test (leave-two-out rows, Pearson r, strict >), RSA (Spearman over upper triangles), "
    "label-permutation null with Benjamini-Hochberg FDR across layers; 1 vs 2 test per successful adversarial "
    "against the clean class representations"
)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


FLIP_RULE = (f"flip layer: the first layer, among those where the clean versions of the same images are "
             f"source-like at least {FLIP_CLEAN_MIN:.2f} of the time, at which fewer than half the successful "
             f"adversarials are; undetermined with fewer than {FLIP_MIN_SCORED} adversarials scored or no such layer")


def flip_text(flip: dict, names: list[str]) -> str:
    """What the 1 vs 2 test says about one run (``names``: the layers, in order), claiming no more than the
    flip rule (``read_flip``) allows."""
    n, status = flip["n_scored"], flip.get("flip_status")
    informative = flip.get("informative_layers") or []
    where = (f"at the {len(informative)} of {len(names)} layers where their clean versions are clearly source-like "
             f"(share >= {FLIP_CLEAN_MIN:.2f})")
    if status == "flip":
        name = flip["flip_layer"]
        i = names.index(name)
        shares = (f"only {flip['source_like'][i]:.2f} of them are source-like there (their clean versions: "
                  f"{flip['source_like_clean'][i]:.2f})")
        if name == informative[0]:
            return f"{where}, the {n} successful adversarials scored are already not at the first of them, {name}: {shares}"
        return f"{where}, the {n} successful adversarials scored stay source-like until {name}, where {shares}"
    if status == "none":
        return f"{where}, the {n} successful adversarials scored stay source-like"
    return f"the 1 vs 2 flip layer is undetermined: {flip.get('flip_reason') or 'no reading'}"


def interpret(section: dict, reference: dict | None = None) -> str:
    """One sentence on what the numbers say, about the reference run (the run the tables show)."""
    layers = section["layers"]
    best = max(layers, key=lambda e: e["clean"]["two_vs_two"])
    last = layers[-1]
    pixel = section["pixels"]["two_vs_two"]
    sig = "significant" if best["clean"]["p_value"] < 0.05 else "not significant"
    text = (f"Clean: layer {best['name']} agrees best with word similarity (2v2 {best['clean']['two_vs_two']:.2f}, "
            f"{sig} after FDR; pixels {pixel:.2f})")
    adv = next((a for a in last["adversarial"] if is_reference(a, reference)), None)
    flip = next((f for f in section["one_vs_two"] if is_reference(f, reference)), None)
    if adv is None or flip is None:
        return text + "."
    label = f"{adv['attack']}@{adv['eps_text'] or 'min'}"
    return (f"{text}; under {label} (the strongest attack at the largest budget) the last layer's 2v2 is "
            f"{adv['two_vs_two']:.2f}; {flip_text(flip, [layer['name'] for layer in layers])}.")
