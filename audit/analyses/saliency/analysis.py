"""The saliency-entropy analysis of the audit's single pass (Mușat & Andonie 2020).

Per layer with a spatial map (an (N, C, H, W) output, or a vision transformer's patch tokens on their grid: see
``audit.analyses.saliency.maps``) it keeps sums that merge by addition (clean entropy sum, sum of squares and count,
per class too; the same per attack run over the successful adversarials) and, for detectability, the entropy
profiles of the successful adversarials and of their clean versions (a few floats per image). ``finish``
writes the report section: the clean profile and its superization index, the shift under each attack, and how
well entropy tells clean from adversarial images.

Every number carries its uncertainty at the audit's ``--confidence`` c (alpha = 1 − c; the methods in
``audit.analyses.saliency.stats``). Per layer and attack run, over the n successful adversarials (clean-correct
images the attack fooled) and their own clean versions:

- ``mean_ci`` (clean and adversarial): the Student-t interval of the mean entropy over the images.
- ``delta`` ΔH = mean adversarial entropy − mean clean entropy of those n images (= the mean of the paired
  differences); ``delta_ci`` the Student-t interval of that mean over the n differences; ``delta_p`` the
  two-sided paired t-test p against 0.
- ``auroc`` (adversarial entropy vs clean entropy of the same images); ``auroc_ci`` a seeded percentile
  bootstrap over images (an image's two entropies resampled together); ``auroc_p`` the two-sided Mann–Whitney
  p against 0.5; ``auroc_q`` its Benjamini–Hochberg adjustment across the run's layers.

A chosen layer without a map is listed in ``skipped_layers`` with its reason: a flat output, a map smaller
than 7x7, or the reason the tap gave (``TapResult.unmapped``: tokens with no patch grid, or a vision
transformer's layer whose patch tokens get no gradient).

``superization`` adds ``p_value`` (two-sided permutation p of the index, exact over all L! orders of the L
measured layers, ``p_method`` says how), ``testable`` (whether L layers can reach p ≤ alpha at all: 2/L! ≤
alpha) and ``reason`` when not; the statement names a trend only when p ≤ alpha. Each ``detection`` entry adds
the detector's held-out ``detector_accuracy`` (probability 0.5) with its Wilson ``detector_accuracy_ci``,
``detector_auroc_ci`` (unpaired bootstrap of the held-out scores), ``best_auroc_p``/``best_auroc_q`` of the best
layer, and ``direction`` ("higher", "lower", or "inconclusive" when its q > alpha).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from audit.analyses.base import Analysis, Batch
from audit.analyses.saliency.figures import example_figures
from audit.analyses.saliency.entropy import DEFAULT_OFFSETS, choose_levels, spatial_entropy
from audit.analyses.saliency.stats import (
    auroc, auroc_interval, auroc_p, detector_auroc, min_testable_layers, paired_shift, superization_index,
    superization_p,
)
from audit.stats import alpha_of, DEFAULT_CONFIDENCE, fdr_bh, t_interval_of

EXAMPLES = 2  # pictures per attack, the first successful adversarials in data order
MIN_SIDE = 7  # smaller maps have too few neighbour pairs (a 7x7 map has 84) for a spatial entropy


class Moments:
    """Sum, sum of squares and count per layer (and per class): mean and spread that merge by addition."""

    def __init__(self, layers: int, classes: int):
        self.sum, self.sq = np.zeros((classes, layers)), np.zeros((classes, layers))
        self.n = np.zeros(classes, dtype=np.int64)

    def add(self, h: np.ndarray, labels: np.ndarray) -> None:
        np.add.at(self.sum, labels, h)
        np.add.at(self.sq, labels, h * h)
        self.n += np.bincount(labels, minlength=len(self.n))

    def stats(self) -> tuple[np.ndarray, np.ndarray, int]:
        n = int(self.n.sum())
        mean = self.sum.sum(0) / max(n, 1)
        var = np.maximum(self.sq.sum(0) / max(n, 1) - mean ** 2, 0.0) * (n / (n - 1) if n > 1 else 0.0)
        return mean, np.sqrt(var), n

    def intervals(self, confidence: float) -> list[list[float] | None]:
        """Per layer, the Student-t interval of the mean entropy (None with fewer than two images)."""
        mean, sd, n = self.stats()
        return [t_interval_of(float(m), float(s), n, confidence) for m, s in zip(mean, sd, strict=True)]


def build(context) -> SaliencyAnalysis | None:
    """The saliency-entropy analysis of an audit with chosen layers, unless ``--saliency none``."""
    config = context.config
    if not context.layers or config.saliency == "none":
        return None
    return SaliencyAnalysis(context.layers, len(context.names), method=config.saliency, entropy=config.entropy,
                            levels=config.levels, saliency_class=config.saliency_class, seed=config.seed,
                            runs=context.runs, confidence=config.confidence)


class SaliencyAnalysis(Analysis):
    """Entropy of per-layer saliency maps, clean and under every attack run; writes ``analyses.saliency``."""

    key = "saliency"

    def __init__(self, layers: list[str], num_classes: int, *, method: str = "gradcam", entropy: str = "glcm",
                 levels: int | None = None, saliency_class: str = "predicted", seed: int = 0,
                 runs: list | None = None, confidence: float = DEFAULT_CONFIDENCE):
        self.known = {run.key: run for run in runs or []}  # to rebuild the per-run state of a saved state
        self.all_layers, self.num_classes = layers, num_classes
        self.method, self.entropy, self.levels, self.saliency_class, self.seed = (
            method, entropy, levels, saliency_class, seed)
        self.confidence = confidence
        self.saliency = method  # the tap reduces each chosen layer to this method's saliency map
        self.layers: list[str] | None = None  # the layers with a spatial map, known at the first batch
        self.sizes: dict[str, tuple[int, int]] = {}
        self.clean: Moments | None = None
        self.runs: dict = {}  # run key -> {"run", "moments", "clean_h": [], "adv_h": [], "examples": []}
        self._batch: dict = {}
        self._spatial: set[str] = set()
        self.reasons: dict[str, str] = {}  # why a layer with a grid has no map (the tap's ``unmapped``)
        self.offset = 0  # position of the current batch's first image in the data

    def _entropies(self, maps: dict[str, torch.Tensor]) -> np.ndarray:
        return np.stack([spatial_entropy(maps[name], method=self.entropy, levels=self.levels)
                         for name in self.layers], axis=1)

    def on_clean(self, batch: Batch) -> None:
        x, y, logits, tap = batch.x, batch.y, batch.logits, batch.tap
        self.offset = batch.offset
        if self.layers is None:
            self.layers = [n for n in self.all_layers if n in tap.maps and min(tap.maps[n].shape[1:]) >= MIN_SIDE]
            self.sizes = {n: tuple(tap.maps[n].shape[1:]) for n in self.layers}
            self._spatial = set(tap.maps)
            self.reasons = dict(tap.unmapped or {})
            if self.levels is None and self.layers:  # one L for every layer: entropies stay comparable
                self.levels = min(choose_levels(*size) for size in self.sizes.values())
            self.clean = Moments(len(self.layers), self.num_classes)
        labels = y.cpu().numpy()
        h = self._entropies(tap.maps) if self.layers else np.zeros((len(y), 0))
        self.clean.add(h, labels)
        self._batch = {"x": x, "h": h, "maps": tap.maps, "correct": (logits.argmax(1) == y).cpu().numpy()}

    def on_adversarial(self, run, batch: Batch) -> None:
        x_adv, y, logits, tap = batch.x, batch.y, batch.logits, batch.tap
        if not self.layers:
            return
        state = self.runs.setdefault(run.key, {"run": run, "moments": Moments(len(self.layers), self.num_classes),
                                               "clean_h": [], "adv_h": [], "examples": []})
        labels, pred = y.cpu().numpy(), logits.argmax(1).cpu().numpy()
        fooled = self._batch["correct"] & (pred != labels)
        if not fooled.any():
            return
        rows = torch.as_tensor(fooled, device=x_adv.device)
        h = self._entropies({n: tap.maps[n][rows] for n in self.layers})
        state["moments"].add(h, labels[fooled])
        state["adv_h"].append((self.offset, h))
        state["clean_h"].append((self.offset, self._batch["h"][fooled]))
        for i in np.flatnonzero(fooled)[: EXAMPLES - len(state["examples"])]:
            state["examples"].append({
                "position": self.offset + int(i),
                "clean": self._batch["x"][i].cpu(), "adversarial": x_adv[i].cpu(),
                "true": int(labels[i]), "predicted": int(pred[i]),
                "maps_clean": {n: self._batch["maps"][n][i].cpu() for n in self.layers},
                "maps_adversarial": {n: tap.maps[n][i].cpu() for n in self.layers},
            })

    def finish(self, result) -> None:
        section = {"method": self.method, "entropy": self.entropy, "levels": self.levels,
                   "offsets": [list(o) for o in DEFAULT_OFFSETS], "log_base": 2, "saliency_class": self.saliency_class,
                   "definition": DEFINITION}
        skipped = [n for n in self.all_layers if n not in (self.layers or [])]
        small = {n for n in skipped if n in self._spatial}
        if not self.layers:
            section["skipped"] = (f"no chosen layer has a spatial map (N, C, H, W), or patch tokens on a grid, of at "
                                  f"least {MIN_SIDE}x{MIN_SIDE}: nothing to measure")
            result.analyses["saliency"] = section
            return
        order = list(self.known)
        self.runs = dict(sorted(self.runs.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 0))
        mean, sd, n = self.clean.stats()
        clean_ci = self.clean.intervals(self.confidence)
        layers = [{"name": name, "map_size": list(self.sizes[name]),
                   "clean": {"mean": float(mean[i]), "sd": float(sd[i]), "n": n, "mean_ci": clean_ci[i],
                             "per_class": self._per_class(i, result.data["classes"])},
                   "adversarial": []} for i, name in enumerate(self.layers)]
        detectors = []
        for state in self.runs.values():
            run = state["run"]
            adv, clean = _in_data_order(state["adv_h"], len(self.layers)), _in_data_order(state["clean_h"], len(self.layers))
            a_mean, a_sd, a_n = state["moments"].stats()
            a_ci = state["moments"].intervals(self.confidence)
            entries = []
            for i, layer in enumerate(layers):
                value = auroc(adv[:, i], clean[:, i]) if a_n else None
                delta_ci, delta_p = paired_shift(adv[:, i], clean[:, i], self.confidence)
                entries.append({
                    "attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "n": a_n,
                    "mean": float(a_mean[i]) if a_n else None, "sd": float(a_sd[i]) if a_n else None,
                    "mean_ci": a_ci[i], "delta": float(a_mean[i] - clean[:, i].mean()) if a_n else None,
                    "delta_ci": delta_ci, "delta_p": delta_p, "auroc": value,
                    "auroc_ci": auroc_interval(adv[:, i], clean[:, i], paired=True, confidence=self.confidence,
                                               seed=self.seed),
                    "auroc_p": auroc_p(adv[:, i], clean[:, i]) if a_n else None, "auroc_q": None,
                })
                layer["adversarial"].append(entries[-1])
            tested = [e for e in entries if e["auroc_p"] is not None]
            for e, q in zip(tested, fdr_bh([e["auroc_p"] for e in tested]), strict=True):
                e["auroc_q"] = float(q)
            detectors.append(self._detector(run, clean, adv, entries))
        sup = superization_index(mean)
        p_value, p_method = superization_p(mean, seed=self.seed)
        alpha = alpha_of(self.confidence)
        needed = min_testable_layers(alpha)
        testable = len(self.layers) >= needed
        section.update({
            "layers": layers,
            "skipped_layers": [{"name": s, "reason": self.reasons.get(s) or (
                f"map smaller than {MIN_SIDE}x{MIN_SIDE}: too few neighbour pairs for a spatial entropy" if s in small
                else "no spatial map (a fully connected output)")} for s in skipped],
            "superization": {"index": sup.index, "differences": list(sup.differences),
                             "n_layers": len(self.layers), "n_skipped": len(skipped), "min_layers": needed,
                             "p_value": p_value, "p_method": p_method, "alpha": alpha, "testable": testable,
                             "reason": None if testable else untestable_reason(len(self.layers), alpha),
                             "statement": superization_statement(sup.index, len(self.layers), len(skipped),
                                                                 p_value, alpha)},
            "detection": detectors,
        })
        # pictures for each attack at its largest budget (runs come in ascending budgets)
        last = {s["run"].spec.name: key for key, s in self.runs.items() if s["examples"]}
        first = {key: sorted(self.runs[key]["examples"], key=lambda e: e["position"])[:EXAMPLES]
                 for key in last.values()}
        files = example_figures(first, self.layers, result.data["classes"])
        section["figures"] = sorted(files)
        result.analyses["saliency"] = section
        result.artifacts.setdefault("files", {}).update(files)

    # --- state: saved for --resume, and added up across the processes of a distributed run ---------------------

    def export(self, phase: str) -> dict:
        if phase != "pass" or self.layers is None:
            return {}
        def moments(m):
            return {"sum": m.sum, "sq": m.sq, "n": m.n}
        return {"layers": self.layers, "sizes": {n: list(v) for n, v in self.sizes.items()}, "levels": self.levels,
                "spatial": sorted(self._spatial), "reasons": dict(self.reasons), "clean": moments(self.clean),
                "runs": {key: {"moments": moments(st["moments"]), "adv_h": [[o, h] for o, h in st["adv_h"]],
                               "clean_h": [[o, h] for o, h in st["clean_h"]], "examples": st["examples"]}
                         for key, st in self.runs.items()}}

    def absorb(self, phase: str, state: dict) -> None:
        if phase != "pass" or not state:
            return
        def add(m: Moments, part: dict) -> None:
            m.sum += np.asarray(part["sum"])
            m.sq += np.asarray(part["sq"])
            m.n += np.asarray(part["n"], dtype=np.int64)
        if self.layers is None:
            self.layers, self.levels = list(state["layers"]), state["levels"]
            self.sizes = {n: tuple(v) for n, v in state["sizes"].items()}
            self._spatial = set(state["spatial"])
            self.reasons = dict(state.get("reasons") or {})
            self.clean = Moments(len(self.layers), self.num_classes)
        add(self.clean, state["clean"])
        for key, part in state["runs"].items():
            st = self.runs.setdefault(key, {"run": self.known[key], "moments": Moments(len(self.layers),
                                                                                     self.num_classes),
                                            "clean_h": [], "adv_h": [], "examples": []})
            add(st["moments"], part["moments"])
            st["adv_h"] += [(int(o), np.asarray(h)) for o, h in part["adv_h"]]
            st["clean_h"] += [(int(o), np.asarray(h)) for o, h in part["clean_h"]]
            st["examples"] += [{**e, "position": int(e["position"]), "true": int(e["true"]),
                                "predicted": int(e["predicted"]),
                                **{k: torch.as_tensor(e[k]) for k in ("clean", "adversarial")},
                                **{k: {n: torch.as_tensor(v) for n, v in e[k].items()}
                                   for k in ("maps_clean", "maps_adversarial")}} for e in part["examples"]]

    def _per_class(self, i: int, names: list[str]) -> list[dict]:
        m = self.clean
        return [{"class": names[c], "n": int(m.n[c]), "mean": float(m.sum[c, i] / m.n[c])}
                for c in range(self.num_classes) if m.n[c]]

    def _detector(self, run, clean: np.ndarray, adv: np.ndarray, entries: list[dict]) -> dict:
        """Best single layer and a logistic detector over all layers, on successful adversarials vs their clean
        versions (paired images, held-out split). ``entries``: the run's per-layer results, for the best
        layer's interval and tests."""
        out = {"attack": run.spec.name, "eps": run.eps, "eps_text": run.eps_text, "n": int(len(adv))}
        if len(adv) < 2:
            out.update(best_layer=None, best_auroc=None, detector_auroc=None, detector_auroc_ci=None,
                       detector_accuracy=None, detector_accuracy_ci=None,
                       reason="fewer than two successful adversarials")
            return out
        values = [auroc(adv[:, i], clean[:, i]) for i in range(adv.shape[1])]
        separation = [abs(v - 0.5) if v is not None else -1 for v in values]
        best = int(np.argmax(separation))
        det = detector_auroc(clean, adv, seed=self.seed, confidence=self.confidence)
        q = entries[best]["auroc_q"]
        significant = q is not None and q <= alpha_of(self.confidence)
        out.update({
            "best_layer": self.layers[best], "best_auroc": values[best], "best_auroc_ci": entries[best]["auroc_ci"],
            "best_auroc_p": entries[best]["auroc_p"], "best_auroc_q": q,
            "direction": ("inconclusive" if not significant else
                          "higher" if values[best] is not None and values[best] >= 0.5 else "lower"),
            "detector_auroc": det.auroc, "detector_auroc_ci": det.auroc_ci,
            "detector_accuracy": det.accuracy, "detector_accuracy_ci": det.accuracy_ci,
            "n_train": det.n_train_clean + det.n_train_adv,
            "n_test": det.n_test_clean + det.n_test_adv, "reason": det.reason,
        })
        return out


DEFINITION = (
    "Mușat & Andonie (2020), Semiotic aggregation in deep learning: per layer with a spatial map, the saliency "
    "map of the class explained (Grad-CAM: ReLU of the gradient-weighted channel sum; gradxact: |channel sum of "
    "gradient x activation|; activation: mean |activation| over channels) at its native resolution, min-max "
    "normalised, quantised to L levels (q = min(floor(s L), L-1)); glcm: entropy in bits of the symmetric "
    "co-occurrence distribution of neighbouring levels at offsets (0,1) and (1,0); histogram: first-order "
    "entropy; 2d: joint entropy of (level, level of the 3x3 mean). One L for all layers (from the smallest map "
    "measured); maps smaller than 7x7 are not measured"
)


def _in_data_order(parts: list[tuple[int, np.ndarray]], layers: int) -> np.ndarray:
    """Per-image rows gathered batch by batch (possibly by several processes), in the data's order."""
    parts = sorted(parts, key=lambda p: p[0])
    return np.concatenate([h for _, h in parts]) if parts else np.zeros((0, layers))


def untestable_reason(n_layers: int, alpha: float) -> str:
    """Why a trend over ``n_layers`` layers cannot be significant at ``alpha``: its smallest possible p."""
    smallest = 2.0 / math.factorial(n_layers) if n_layers >= 2 else 1.0
    return (f"with {n_layers} measured layer{'s' if n_layers != 1 else ''} the smallest possible two-sided p is "
            f"{smallest:.2g} (2/{n_layers}!), above alpha {alpha:.2g}: no order of the layers could show a trend")


def superization_statement(index: float | None, n_layers: int, n_skipped: int = 0, p_value: float | None = None,
                           alpha: float = 1.0 - DEFAULT_CONFIDENCE) -> str:
    """What the clean entropy profile says about superization, with the number of layers it rests on and its
    permutation p; a trend with depth is named only when p ≤ alpha (which needs 2/L! ≤ alpha: at least
    ``min_testable_layers(alpha)`` layers), else what was measured and that it is inconclusive."""
    rests = f"{n_layers} measured layer{'s' if n_layers != 1 else ''}" + (f", {n_skipped} skipped" if n_skipped else "")
    over = f"over {rests}"
    if n_layers < 2:
        return f"not assessed: the profile rests on {rests}; a trend with depth needs at least 2"
    if index is None:
        return f"not measurable {over}: a flat profile"
    measured = f"Spearman {index:.2f} of entropy against depth"
    p_text = "p unknown" if p_value is None else f"p = {p_value:.2g}"
    if n_layers < min_testable_layers(alpha):
        return (f"untestable {over}: {measured}, {p_text}; no order of {n_layers} layers reaches p <= {alpha:.2g}, "
                f"so the trend with depth is inconclusive")
    if p_value is None or p_value > alpha:
        return f"inconclusive {over}: {measured}, {p_text}; no significant trend with depth"
    if index < 0:
        return f"entropy falls with depth {over} ({measured}, {p_text}): superization, as the paper reports"
    return f"entropy rises with depth {over} ({measured}, {p_text}): no superization on this model"
