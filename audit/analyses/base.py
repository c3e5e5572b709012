"""The contract of an analysis: what the engine calls, when, and what it may rely on.

An analysis watches the audit's single pass over the data; it never triggers a pass of its own over the
attacks. The engine calls, in this order:

1. ``on_prepare(batch)`` for every batch of a clean pre-pass, then ``prepared()``, when ``needs_prepass``;
2. per batch of the attacking pass, ``on_clean(batch)`` once, then ``on_adversarial(run, batch)`` for every
   attack run (attack × budget) in plan order;
3. ``finish(result)`` once, on the process that writes the report, after the sums of every process and of a
   resumed audit's earlier life were absorbed: it writes ``result.analyses[self.key]``.

Every hook is a no-op by default. An analysis that keeps sums across batches must say how they travel, because
under torchrun each process sees only its share of the batches, and ``--resume`` restores the sums saved after
the last completed batch: ``export(phase)`` returns them as plain data (dicts, lists, numbers, strings, numpy
arrays: no pickles) and ``absorb(phase, part)`` adds such a part to its own. ``phase`` is ``"prepass"`` for
what the pre-pass fixed and ``"pass"`` for the attacking pass. An analysis that watches batches (overrides a
batch hook) but not ``export`` and ``absorb`` is refused under torchrun and ``--resume`` with one line naming
it; in a single uninterrupted process it runs as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BATCH_HOOKS = ("on_prepare", "on_clean", "on_adversarial")


@dataclass
class Batch:
    """One batch as an analysis sees it. ``tap`` is the batch through the layer tap
    (:class:`~audit.analyses.tap.TapResult`: pooled vectors per chosen layer, and saliency maps when an analysis
    asked for them), or None when no layer is tapped (``--layers none``)."""

    x: Any  # (N, C, H, W) pixels in [0, 1]: the clean images, or the adversarials
    y: Any  # (N,) true labels, in the model's class order
    logits: Any  # (N, classes) the model's outputs on x
    tap: Any = None
    offset: int = 0  # position of the batch's first image in the data (the audited samples, in data order)


class Analysis:
    """Base class of the analyses; subclass it and override what you need (every hook is a documented no-op).

    ``key`` names the analysis's section in ``report["analyses"]`` and in error lines. ``needs_prepass`` asks
    for the clean pre-pass (hooks ``on_prepare`` and ``prepared``). ``saliency`` asks the tap for per-layer
    saliency maps of that method (``gradcam``, ``gradxact``, ``activation``; see audit.analyses.saliency.maps)
    and ``saliency_class`` says whose logit they explain (``predicted`` or ``true``); ``needs_gradients``
    (read-only) says whether those maps cost a backward pass. ``reads_tap`` False says it reads only the logits
    (``batch.tap`` may be None): on its own it does not make the engine tap the chosen layers.
    """

    key: str = "analysis"
    needs_prepass: bool = False
    reads_tap: bool = True
    saliency: str | None = None
    saliency_class: str = "predicted"

    @property
    def needs_gradients(self) -> bool:
        """Whether the tap must run a backward pass for this analysis (its saliency method reads gradients)."""
        if self.saliency is None:
            return False
        from audit.analyses.saliency.maps import needs_gradient

        return needs_gradient(self.saliency)

    def on_prepare(self, batch: Batch) -> None:
        """One batch of the clean pre-pass (only with ``needs_prepass``): a tapped forward, no attack."""

    def prepared(self) -> None:
        """The pre-pass is over and its sums are complete (over every process)."""

    def on_clean(self, batch: Batch) -> None:
        """A clean batch of the attacking pass, before any attack ran on it."""

    def on_adversarial(self, run, batch: Batch) -> None:
        """The same batch after ``run`` (an :class:`~audit.engine.plan.AttackRun`: attack and budget): ``batch.x``
        holds the adversarials (a sample the attack did not break keeps its clean image) and ``batch.logits``
        the model's outputs on them."""

    def finish(self, result) -> None:
        """Write this analysis's section: ``result.analyses[self.key] = {...}`` (plain JSON data)."""

    def export(self, phase: str) -> dict | None:
        """This analysis's sums as plain data, for the saved state and for adding up processes (None: none)."""
        return None

    def absorb(self, phase: str, part: dict) -> None:
        """Add ``part``, one ``export(phase)`` of this analysis on another process or an earlier life, to the
        sums."""

    def reset_prepass(self) -> None:
        """Forget the pre-pass sums (before every process's pre-pass parts are absorbed in rank order)."""

    @classmethod
    def watches_batches(cls) -> bool:
        return any(getattr(cls, hook) is not getattr(Analysis, hook) for hook in BATCH_HOOKS)

    @classmethod
    def carries_sums(cls) -> bool:
        return cls.export is not Analysis.export and cls.absorb is not Analysis.absorb


def refuse_unmergeable(analyses: list[Analysis], why: str) -> None:
    """One line naming each analysis that keeps sums it cannot hand on, when ``why`` (torchrun, --resume) needs
    them handed on."""
    from audit.errors import AuditError

    bad = [a for a in analyses if type(a).watches_batches() and not type(a).carries_sums()]
    if bad:
        names = ", ".join(f"{a.key} ({type(a).__name__})" for a in bad)
        raise AuditError(f"{why} needs every analysis to hand on its sums, and {names} defines no export/absorb "
                         "(see audit.analyses.base)")
