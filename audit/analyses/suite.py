"""The analyses of one audit: which layers, which analyses, and the tapped passes they share.

The engine makes ONE tapped forward per clean batch and ONE per adversarial batch and budget (plus one backward
each when an analysis needs gradients); every analysis reads the same :class:`~audit.analyses.tap.TapResult`.
Analyses that need the clean class representations before the attack (the semantic 1 vs 2 test) get a clean
pre-pass: one tapped forward per image, no attack, whose sums are fixed before the attacking pass starts.

:func:`build_suite` chooses the layers (``--layers``) and builds the user's analyses and every registered one
(:mod:`audit.analyses.registry`); :class:`AnalysisSuite` is what the engine drives.

Token outputs (N, T, D) of vision transformers: the network's token layout is found from the same hooked
forward that chose the layers (:func:`choose_layers`, :func:`audit.analyses.layers.token_layout`); the suite hands it to the tap,
which pools each token layer by the model's rule, and lays a token layer's patch tokens on their grid (N, D, h,
w) before its saliency map is computed (activation and gradient alike). A token layer whose patch tokens get
no gradient at all on the first batch (in a class-token ViT the last block and the final norm: only the class
token reaches the head) has no gradient map: a map of zeros would have entropy 0 by definition, which says
nothing about the layer; the saliency section lists it as skipped and why. The report's ``analyses.tap`` says per
layer how it was pooled (``per_layer``) and the layout (``tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from audit.analyses.base import Analysis, Batch, refuse_unmergeable
from audit.analyses.registry import sections
from audit.analyses.tap import TapResult, TokenLayout, on_grid, replace_rows, run_tap, select_rows
from audit.errors import AuditError

NO_PATCH_GRADIENT = ("its patch tokens get no gradient (the head reads only the class token, and no attention "
                     "after this layer mixes the patches into it): a gradient map would be zero everywhere")
NO_GRID = "no spatial map (tokens (N, T, D) with no known patch grid)"
POOLING = ("global average over space (N, C, H, W) -> (N, C); (N, D) as is; tokens (N, T, D) by the model's rule "
           "(class token, or mean of patch tokens; mean of all tokens without a patch grid)")


@dataclass
class AnalysisContext:
    """What an analysis's ``build`` gets: the audit's options, class names, chosen layers, attack runs, the
    word space (when word vectors were loaded), and the classes mapped to WordNet (a ``ClassSynsets``, or the
    reason there is none, a string; ``audit.analyses.semantics.wordnet.audit_synsets``)."""

    config: object  # the AuditConfig
    names: list[str]
    layers: list[str]
    runs: list  # every AttackRun of the audit, in plan order
    space: object | None = None
    synsets: object | None = None


@dataclass
class AnalysisSuite:
    layers: list[str]
    analyses: list[Analysis]  # the user's, then the registered ones in report order
    notes: list[str] = field(default_factory=list)  # why an analysis is off, for the report's warnings
    skipped: str | None = None  # why the per-layer analyses are off with --layers auto (the tap section says it)
    layout: TokenLayout | None = None  # the network's token layout (choose_layers), None without token layers
    shapes: dict[str, list[int]] = field(default_factory=dict)  # the chosen layers' output shapes, no batch axis
    passes: dict = field(default_factory=lambda: {"prepass_forward": 0, "clean_forward": 0,
                                                  "adversarial_forward": 0, "backward": 0})

    def __post_init__(self):
        wanted = {(a.saliency, a.saliency_class) for a in self.analyses if a.saliency is not None}
        if len(wanted) > 1:
            raise AuditError("two analyses ask the tap for different saliency maps: "
                             + ", ".join(f"{m} of the {c} class" for m, c in sorted(wanted)))
        self.saliency, self.saliency_class = next(iter(wanted), (None, "predicted"))
        self.gradients = any(a.needs_gradients for a in self.analyses)
        self._last: TapResult | None = None
        self.per_layer: dict[str, str] | None = None  # layer -> how it was pooled, from the first tapped pass
        self.unmapped: dict[str, str] = {}  # token layers whose patch tokens get no gradient: no gradient map
        self._checked: set[str] = set()

    @property
    def tapping(self) -> bool:
        """Whether the batches go through the tap: layers are chosen and some analysis reads them."""
        return bool(self.layers) and any(a.reads_tap for a in self.analyses)

    @property
    def prepass(self) -> list[Analysis]:
        return [a for a in self.analyses if a.needs_prepass]

    def refuse_unmergeable(self, why: str) -> None:
        refuse_unmergeable(self.analyses, why)

    # --- the tapped passes -----------------------------------------------------------------------------------

    def tap(self, model: torch.nn.Module, x: torch.Tensor, kind: str, y: torch.Tensor | None = None) -> TapResult:
        """One tapped pass; with saliency maps asked for, each layer's map is reduced to its (N, H, W) saliency
        map at once (layers without a spatial map have none), so no activation outlives the batch."""
        from audit.analyses.saliency.maps import has_spatial_map, saliency_maps

        method = self.saliency if kind != "prepass_forward" else None
        gradient_of = None
        if method is not None and self.gradients:
            gradient_of = y if self.saliency_class == "true" else "predicted"
        result = run_tap(model, x, self.layers, gradient_of=gradient_of, keep_maps=method is not None,
                         layout=self.layout)
        self.passes[kind] += result.forward_images
        self.passes["backward"] += result.backward_images
        if self.per_layer is None and result.pooling:
            self.per_layer = dict(result.pooling)
        if method is not None:
            grads = result.grads or {}
            maps = {}
            for n, output in result.maps.items():
                a, g = on_grid(output, self.layout), on_grid(grads.get(n), self.layout)
                if not has_spatial_map(a.shape):
                    if a.dim() == 3:
                        self.unmapped[n] = NO_GRID
                    continue
                if a is not output and g is not None and n not in self._checked:  # a token layer, once
                    self._checked.add(n)
                    if not g.any():
                        self.unmapped[n] = NO_PATCH_GRADIENT
                if n not in self.unmapped:
                    maps[n] = saliency_maps(method, a, g)
            result.maps, result.grads, result.unmapped = maps, None, dict(self.unmapped)
        return result

    def evaluator(self, model: torch.nn.Module, y: torch.Tensor):
        """A tapped forward for the cascade to evaluate its adversarials with; it keeps the last result."""
        def evaluate(adv: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            self._last = self.tap(model, adv, "adversarial_forward", y[idx])
            return self._last.logits
        self._last = None
        return evaluate

    def adversarial_view(self, previous: TapResult, outcome) -> TapResult:
        """The tapped view of an outcome's adversarial batch: ``previous`` (the clean batch, or the previous
        budget's view for a cumulative attack) with the rows found at this budget taken from the cascade's own
        evaluation forward (which covered the samples attacked at this budget)."""
        last, self._last = self._last, None
        if last is None or not outcome.found.any():
            return previous
        attacked = outcome.attacked_rows
        return replace_rows(previous, outcome.found, select_rows(last, outcome.found[attacked]))

    # --- the hooks, called on every analysis -----------------------------------------------------------------

    def prepare(self, batch: Batch) -> None:
        for analysis in self.prepass:
            analysis.on_prepare(batch)

    def prepared(self) -> None:
        for analysis in self.prepass:
            analysis.prepared()

    def clean(self, batch: Batch) -> None:
        for analysis in self.analyses:
            analysis.on_clean(batch)

    def adversarial(self, run, batch: Batch) -> None:
        for analysis in self.analyses:
            analysis.on_adversarial(run, batch)

    def finish(self, result) -> None:
        if self.layers or self.skipped:  # skipped: the tap section says why there are no per-layer analyses
            result.analyses["tap"] = self.section()
        for analysis in self.analyses:
            analysis.finish(result)

    # --- sums: saved for --resume, and added up across processes ---------------------------------------------

    def export(self, phase: str) -> dict:
        """The analyses' sums (and the pass counts) for a saved state or another process."""
        return {"passes": dict(self.passes) if phase == "pass" else {},
                "analyses": [a.export(phase) for a in self.analyses], "layout": self._described()}

    def reset_prepass(self) -> None:
        for analysis in self.analyses:
            analysis.reset_prepass()

    def absorb(self, phase: str, state: dict) -> None:
        for key, value in state["passes"].items():
            self.passes[key] += int(value)
        described = state.get("layout")  # how the layers were pooled, for a process that tapped no batch
        if described and self.per_layer is None:
            self.per_layer = {e["name"]: e["pooling"] for e in described["per_layer"]}
        for analysis, part in zip(self.analyses, state["analyses"], strict=True):
            if part is not None:
                analysis.absorb(phase, part)

    def _described(self) -> dict | None:
        """Per layer its output shape and how it was pooled, and the token layout; None before any pass."""
        if self.per_layer is None:
            return None
        per_layer = []
        for name in self.layers:
            entry = {"name": name, "output": self.shapes.get(name, []), "pooling": self.per_layer.get(name, "")}
            shape = self.shapes.get(name, [])
            prefix = self.layout.prefix_of(shape[0]) if self.layout is not None and len(shape) == 2 else None
            if prefix is not None:
                entry.update(prefix_tokens=prefix, grid=list(self.layout.grid))
            per_layer.append(entry)
        return {"per_layer": per_layer, "tokens": self.layout.as_dict() if self.layout is not None else None}

    def section(self) -> dict:
        out = {"layers": self.layers, "pooling": POOLING, "passes": dict(self.passes)}
        described = self._described()
        if described is not None:
            out["per_layer"] = described["per_layer"]
            if described["tokens"] is not None:
                out["tokens"] = described["tokens"]
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass
class ChosenLayers:
    """What ``--layers`` chose, from one hooked forward of the example batch: the layers' names (in running
    order), why there are none with ``auto`` (or None), the network's token layout and the chosen layers' output
    shapes (without the batch axis)."""

    names: list[str]
    skipped: str | None = None
    layout: TokenLayout | None = None
    shapes: dict[str, list[int]] = field(default_factory=dict)


def choose_layers(choice, model: torch.nn.Module, example: torch.Tensor) -> ChosenLayers:
    """The layers ``--layers`` (a LayerChoice) chooses. A named layer that does not qualify is an error; ``auto``
    finding none is a note, not an error."""
    from audit.analyses.layers import candidate_layers, resolve_layers, token_layout

    if choice.off:
        return ChosenLayers([])
    try:
        candidates = candidate_layers(model, example)
        layers = [info.name for info in resolve_layers(model, choice, example, candidates)]
    except AuditError as exc:
        if not choice.auto:
            raise
        return ChosenLayers([], str(exc))
    if not layers:
        return ChosenLayers([], "no layer of the network runs as a module once per forward")
    return ChosenLayers(layers, None, token_layout(model, example, candidates),
                        {o.name: list(o.shape) for o in candidates if o.name in layers})


def build_suite(context: AnalysisContext, user: list[Analysis], chosen: ChosenLayers | None = None) -> AnalysisSuite:
    """The user's analyses and every registered analysis that is on for this audit (``build`` returned one)."""
    for analysis in user:
        if not isinstance(analysis, Analysis):
            raise AuditError(f"run_audit(analyses=...): {type(analysis).__name__} is not an "
                             "audit.analyses.base.Analysis (subclass it)")
    built = [analysis for s in sections() if (analysis := s.builder()(context)) is not None]
    chosen = chosen or ChosenLayers(context.layers)
    notes = [f"per-layer analyses skipped: {chosen.skipped}"] if chosen.skipped else []
    return AnalysisSuite(context.layers, [*user, *built], notes, chosen.skipped, layout=chosen.layout,
                         shapes=chosen.shapes)
