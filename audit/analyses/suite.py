"""The per-layer analyses of an audit: which layers, which observers, and the tapped passes they share.

The runner makes ONE tapped forward per clean batch and ONE per adversarial batch and budget (plus one backward
each when an analysis needs gradients); every observer reads the same :class:`~audit.analyses.tap.TapResult`. Analyses
that need the clean class representations before the attack (the semantic 1 vs 2 test) get a clean pre-pass:
one tapped forward per image, no attack, whose sums are fixed before the attacking pass starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from audit.errors import AuditError
from audit.analyses.saliency.maps import has_spatial_map, needs_gradient, saliency_maps
from audit.analyses.tap import TapResult, run_tap

SEMANTIC_TARGETS = ("semantic-near", "semantic-far")


@dataclass
class Analyses:
    layers: list[str]
    observers: list  # every observer, the user's and the built-in ones
    space: object | None = None  # the WordSpace, when word vectors were loaded
    notes: list[str] = field(default_factory=list)  # why an analysis is off, for the report's warnings
    skipped: str | None = None  # why the per-layer analyses are off with --layers auto (the tap section says it)
    passes: dict = field(default_factory=lambda: {"prepass_forward": 0, "clean_forward": 0,
                                                  "adversarial_forward": 0, "backward": 0})

    saliency: str | None = None  # the saliency method when the saliency analysis is on
    saliency_class: str = "predicted"  # whose logit the saliency maps explain: "predicted" or "true"

    def tap(self, model: torch.nn.Module, x: torch.Tensor, kind: str, y: torch.Tensor | None = None) -> TapResult:
        """One tapped pass; with saliency on, each layer's map is reduced to its (N, H, W) saliency map at once
        (layers without a spatial map have none), so no activation outlives the batch."""
        method = self.saliency if kind != "prepass_forward" else None
        gradient_of = None
        if method is not None and needs_gradient(method):
            gradient_of = y if self.saliency_class == "true" else "predicted"
        result = run_tap(model, x, self.layers, gradient_of=gradient_of, keep_maps=method is not None)
        self.passes[kind] += result.forward_images
        self.passes["backward"] += result.backward_images
        if method is not None:
            grads = result.grads or {}
            result.maps = {n: saliency_maps(method, a, grads.get(n)) for n, a in result.maps.items()
                           if has_spatial_map(a.shape)}
            result.grads = None
        return result

    def evaluator(self, model: torch.nn.Module, y: torch.Tensor):
        """A tapped forward for the cascade to evaluate its adversarials with; it keeps the last result."""
        def evaluate(adv: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            self._last = self.tap(model, adv, "adversarial_forward", y[idx])
            return self._last.logits
        self._last = None
        return evaluate

    def adversarial(self, previous: TapResult, outcome) -> TapResult:
        """The tapped view of an outcome's adversarial batch: ``previous`` (the clean batch, or the previous
        budget's view for a cumulative attack) with the rows found at this budget taken from the cascade's own
        evaluation forward (which covered the samples attacked at this budget)."""
        last, self._last = self._last, None
        if last is None or not outcome.found.any():
            return previous
        attacked = outcome.attacked_rows
        return replace_rows(previous, outcome.found, select_rows(last, outcome.found[attacked]))

    def export(self, phase: str) -> dict:
        """The built-in analyses' sums (and the pass counts) for a saved state or another process."""
        return {"passes": dict(self.passes) if phase == "pass" else {},
                "observers": [o.export(phase) if hasattr(o, "export") else None for o in self.observers]}

    def reset_prepass(self) -> None:
        for observer in self.observers:
            if hasattr(observer, "reset_prepass"):
                observer.reset_prepass()

    def absorb(self, phase: str, state: dict) -> None:
        for key, value in state["passes"].items():
            self.passes[key] += int(value)
        for observer, part in zip(self.observers, state["observers"], strict=True):
            if part is not None and hasattr(observer, "absorb"):
                observer.absorb(phase, part)

    def section(self) -> dict:
        out = {"layers": self.layers, "pooling": "global average over space (N, C, H, W) -> (N, C); (N, D) as is",
               "passes": dict(self.passes)}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def select_rows(result: TapResult, rows: torch.Tensor) -> TapResult:
    """The rows of ``result`` selected by the boolean mask ``rows``."""
    def pick(t):
        return None if t is None else t[rows]

    def pick_all(d: dict | None):
        return None if d is None else {k: v[rows] for k, v in d.items()}

    return TapResult(pick(result.logits), pick_all(result.pooled), pick_all(result.maps), pick_all(result.grads),
                     pick(result.classes))


def replace_rows(base: TapResult, rows: torch.Tensor, part: TapResult) -> TapResult:
    """``base`` with the rows selected by the boolean mask ``rows`` taken from ``part``."""
    def put(whole, piece):
        if whole is None or piece is None:
            return None
        out = whole.clone()
        out[rows] = piece
        return out

    def put_all(whole: dict | None, piece: dict | None):
        return None if whole is None or piece is None else {k: put(whole[k], piece[k]) for k in whole}

    return TapResult(put(base.logits, part.logits), put_all(base.pooled, part.pooled), put_all(base.maps, part.maps),
                     put_all(base.grads, part.grads), put(base.classes, part.classes))


def build_analyses(config, model: torch.nn.Module, example: torch.Tensor, names: list[str],
                   observers: list, runs: list | None = None) -> Analyses:
    """Choose the layers (``--layers``), load the word vectors and build the default observers."""
    from audit.analyses.layers import resolve_layers

    spec = config.layers.strip()
    layers, notes, skipped = [], [], None
    if spec.lower() != "none":
        try:
            layers = [info.name for info in resolve_layers(model, spec, example)]
        except AuditError as exc:
            if spec.lower() != "auto":
                raise
            skipped = str(exc)
        if spec.lower() == "auto" and not layers and not skipped:
            skipped = "no layer of the network runs as a module once per forward"
        if skipped:
            notes.append(f"per-layer analyses skipped: {skipped}")
    space = None
    if layers or config.targeted in SEMANTIC_TARGETS:
        from audit.analyses.semantics.space import build_word_space

        space = build_word_space(names, config.embeddings, config.class_words)
    built = list(observers)
    saliency = None
    if layers:
        from audit.analyses.semantics.analysis import SemanticObserver

        built.append(SemanticObserver(space, layers, permutations=config.permutations, seed=config.seed,
                                      runs=runs))
        if config.saliency != "none":
            from audit.analyses.saliency.analysis import SaliencyObserver

            saliency = config.saliency
            built.append(SaliencyObserver(layers, len(names), method=saliency, entropy=config.entropy,
                                          levels=config.levels, saliency_class=config.saliency_class,
                                          seed=config.seed, runs=runs))
    return Analyses(layers, built, space, notes, skipped, saliency=saliency, saliency_class=config.saliency_class)
