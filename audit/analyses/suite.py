"""The analyses of one audit: which layers, which analyses, and the tapped passes they share.

The engine makes ONE tapped forward per clean batch and ONE per adversarial batch and budget (plus one backward
each when an analysis needs gradients); every analysis reads the same :class:`~audit.analyses.tap.TapResult`.
Analyses that need the clean class representations before the attack (the semantic 1 vs 2 test) get a clean
pre-pass: one tapped forward per image, no attack, whose sums are fixed before the attacking pass starts.

:func:`build_suite` chooses the layers (``--layers``) and builds the user's analyses and every registered one
(:mod:`audit.analyses.registry`); :class:`AnalysisSuite` is what the engine drives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from audit.analyses.base import Analysis, Batch, refuse_unmergeable
from audit.analyses.registry import sections
from audit.analyses.tap import TapResult, replace_rows, run_tap, select_rows
from audit.errors import AuditError

POOLING = "global average over space (N, C, H, W) -> (N, C); (N, D) as is"


@dataclass
class AnalysisContext:
    """What an analysis's ``build`` gets: the audit's options, class names, chosen layers, attack runs, and the
    word space (when word vectors were loaded)."""

    config: object  # the AuditConfig
    names: list[str]
    layers: list[str]
    runs: list  # every AttackRun of the audit, in plan order
    space: object | None = None


@dataclass
class AnalysisSuite:
    layers: list[str]
    analyses: list[Analysis]  # the user's, then the registered ones in report order
    notes: list[str] = field(default_factory=list)  # why an analysis is off, for the report's warnings
    skipped: str | None = None  # why the per-layer analyses are off with --layers auto (the tap section says it)
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

    @property
    def tapping(self) -> bool:
        """Whether the batches go through the tap: layers are chosen and some analysis reads them."""
        return bool(self.layers) and bool(self.analyses)

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
                "analyses": [a.export(phase) for a in self.analyses]}

    def reset_prepass(self) -> None:
        for analysis in self.analyses:
            analysis.reset_prepass()

    def absorb(self, phase: str, state: dict) -> None:
        for key, value in state["passes"].items():
            self.passes[key] += int(value)
        for analysis, part in zip(self.analyses, state["analyses"], strict=True):
            if part is not None:
                analysis.absorb(phase, part)

    def section(self) -> dict:
        out = {"layers": self.layers, "pooling": POOLING, "passes": dict(self.passes)}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def choose_layers(choice, model: torch.nn.Module, example: torch.Tensor) -> tuple[list[str], str | None]:
    """The chosen layers' names (``--layers``, a LayerChoice), and why there are none with ``auto`` (or None).
    A named layer that does not qualify is an error; ``auto`` finding none is a note, not an error."""
    from audit.analyses.layers import resolve_layers

    if choice.off:
        return [], None
    try:
        layers = [info.name for info in resolve_layers(model, choice, example)]
    except AuditError as exc:
        if not choice.auto:
            raise
        return [], str(exc)
    if not layers:
        return [], "no layer of the network runs as a module once per forward"
    return layers, None


def build_suite(context: AnalysisContext, user: list[Analysis], skipped: str | None = None) -> AnalysisSuite:
    """The user's analyses and every registered analysis that is on for this audit (``build`` returned one)."""
    for analysis in user:
        if not isinstance(analysis, Analysis):
            raise AuditError(f"run_audit(analyses=...): {type(analysis).__name__} is not an "
                             "audit.analyses.base.Analysis (subclass it)")
    built = [analysis for s in sections() if (analysis := s.builder()(context)) is not None]
    notes = [f"per-layer analyses skipped: {skipped}"] if skipped else []
    return AnalysisSuite(context.layers, [*user, *built], notes, skipped)
