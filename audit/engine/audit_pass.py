"""One pass over the data, batch by batch: the clean tally, every attack run at every budget, the analyses.

:class:`AuditPass` is what the engine's execution drives: ``prepare(x, y, offset)`` for a batch of the clean
pre-pass, ``batch(x, y, offset)`` for a batch of the attacking pass (``offset``: the position of the batch's
first image among the audited samples, which seeds its attacks and random targets), ``export``/``absorb`` for
its sums, and, once every batch was absorbed, ``entries()`` (the report's attack entries) and
``validity_checks()`` (the model-based checks on the first batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.cascade import run_cascade
from attacks.registry import MINIMAL_CURVE_EPS, AttackSpec
from attacks.model_checks import gradient_free_not_applicable, model_checks
from audit.analyses.base import Batch
from audit.analyses.suite import AnalysisSuite
from audit.engine.plan import AttackRun
from audit.engine.tallies import AttackTally, ClassCounts
from audit.engine.targets import choose_targets
from audit.errors import AuditError


@dataclass(frozen=True)
class PassSettings:
    """The options one pass reads."""

    seed: int
    targeted: str | None  # --targeted mode, or None
    steps: int | None  # --steps, or None: each attack's default
    budgets: list[tuple[float, str]]  # --eps as (value, text), ascending: where minimal-norm curves are read
    confidence: float = 0.95  # --confidence: the level of every interval


class AuditPass:
    """The state of the single pass over the data: clean tally, one tally per attack run, the analyses."""

    def __init__(self, settings: PassSettings, model: torch.nn.Module, device, plans: list[list[AttackRun]],
                 names: list[str], relabel, suite: AnalysisSuite, distance=None):
        self.settings, self.model, self.device = settings, model, device
        self.plans, self.names, self.relabel, self.suite = plans, names, relabel, suite
        self.distance = distance  # class x class, for the semantic targets (audit.engine.targets.target_distance)
        self.clean = ClassCounts(len(names))
        self.tallies = {run: AttackTally(len(names)) for plan in plans for run in plan}
        # the first batch, kept for the validity checks: x, y, clean-correct, targets (targeted audits), and per
        # run the samples whose attack goal was reached (untargeted: misclassified; targeted: the target class)
        self.first: dict = {}

    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = self.relabel[y.numpy()]  # the loader's labels are on the CPU: checked there, then moved once
        if int(labels.max()) >= len(self.names) or int(labels.min()) < 0:
            raise AuditError(f"the data has label {int(labels.max())}, but the model has only {len(self.names)} classes")
        return x.to(self.device), torch.as_tensor(labels, device=self.device)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, offset: int) -> None:
        """One batch of the clean pre-pass: a tapped forward, no attack."""
        x, y = self._inputs(x, y)
        tap = self.suite.tap(self.model, x, "prepass_forward", y)
        self.suite.prepare(Batch(x, y, tap.logits, tap, offset))

    def batch(self, x: torch.Tensor, y: torch.Tensor, offset: int) -> None:
        """One batch of the attacking pass; ``offset``: the position of its first image among the samples."""
        x, y = self._inputs(x, y)
        suite, settings = self.suite, self.settings
        tapping = suite.tapping
        clean_tap = suite.tap(self.model, x, "clean_forward", y) if tapping else None
        if clean_tap is not None:
            clean_logits = clean_tap.logits
        else:
            with torch.no_grad():
                clean_logits = self.model(x)
        clean_correct = (clean_logits.argmax(1) == y).cpu().numpy()
        labels_np = y.cpu().numpy()
        self.clean.add(labels_np, clean_correct, offset)
        first_batch = not self.first
        if first_batch:
            self.first = {"x": x, "y": y, "correct": torch.as_tensor(clean_correct, device=x.device), "broken": {},
                          "targets": None}
        suite.clean(Batch(x, y, clean_logits, clean_tap, offset))
        targets = choose_targets(settings.targeted, clean_logits, y, settings.seed, offset, distance=self.distance)
        if first_batch:
            self.first["targets"] = targets
        for plan in self.plans:
            spec = plan[0].spec
            outcomes = run_cascade(
                spec, self.model, x, y, clean_logits, [r.eps for r in plan], steps=self._steps(spec),
                num_classes=len(self.names), seed=settings.seed + offset, targets=targets,
                evaluate=suite.evaluator(self.model, y) if tapping else None,
            )
            view = clean_tap
            for run, outcome in zip(plan, outcomes, strict=False):
                delta = (outcome.x_adv - x).flatten(1)
                adv_correct = outcome.logits.argmax(1) == y
                if offset == 0:
                    self.first["broken"][run] = outcome.goal
                sizes = {"Linf": delta.abs().amax(1).cpu().numpy(), "L2": delta.norm(dim=1).cpu().numpy()}
                self.tallies[run].add(
                    labels=labels_np, clean_correct=clean_correct,
                    adv_correct=adv_correct.cpu().numpy(), goal=outcome.goal.cpu().numpy(),
                    linf=sizes["Linf"], l2=sizes["L2"], outcome=outcome, found=outcome.found.cpu().numpy(),
                    offset=offset, minimal_norm=None if spec.bounded else sizes[spec.norm],
                )
                if not suite.analyses:
                    continue
                if tapping:  # a cumulative attack's view carries over from budget to budget
                    view = suite.adversarial_view(view if spec.cumulative else clean_tap, outcome)
                suite.adversarial(run, Batch(outcome.x_adv, y, outcome.logits, view, offset))

    def _steps(self, spec: AttackSpec) -> int | None:
        if spec.default_steps is None:  # a single-step attack: --steps does not apply
            return None
        return self.settings.steps if self.settings.steps is not None else spec.default_steps

    def export(self) -> dict:
        """This pass's sums as plain data: for the saved state and for adding up the ranks."""
        first = {}
        if self.first:
            def cpu(t):  # plain data on the CPU: another rank (or a resumed run) may sit on another device
                return None if t is None else t.cpu()
            first = {"x": cpu(self.first["x"]), "y": cpu(self.first["y"]), "correct": cpu(self.first["correct"]),
                     "targets": cpu(self.first["targets"]),
                     "broken": {run.key: cpu(mask) for run, mask in self.first["broken"].items()}}
        return {"clean": self.clean.export(), "tallies": {run.key: t.export() for run, t in self.tallies.items()},
                "first": first, "analyses": self.suite.export("pass")}

    def absorb(self, state: dict) -> None:
        k = len(self.names)
        self.clean.merge(ClassCounts.restore(k, state["clean"]))
        for run, tally in self.tallies.items():
            tally.merge(AttackTally.restore(k, state["tallies"][run.key]))
        if state["first"] and not self.first:
            runs = {run.key: run for run in self.tallies}
            def put(a):
                return torch.as_tensor(a, device=self.device)
            self.first = {"x": put(state["first"]["x"]), "y": put(state["first"]["y"]),
                          "correct": put(state["first"]["correct"]),
                          "targets": None if state["first"].get("targets") is None else put(state["first"]["targets"]),
                          "broken": {runs[key]: put(m) for key, m in state["first"]["broken"].items()}}
        self.suite.absorb("pass", state["analyses"])

    def validity_checks(self) -> list[dict]:
        """The model-based checks on the clean-correct images of the first batch (see attacks.model_checks)."""
        first = self.first
        keep = first["correct"]
        runs = [run for plan in self.plans for run in plan]
        linf = [r.eps for r in runs if r.spec.bounded and r.spec.norm == "Linf"]
        eps = max(linf) if linf else None
        why_not = self._square_not_applicable(runs, eps)
        survived, targets = None, None
        if why_not is None:
            broken = torch.zeros_like(keep)
            for r in runs:
                if r.eps == eps and r.spec.norm == "Linf":
                    broken |= first["broken"][r]
            survived = ~broken[keep]
            targets = None if first.get("targets") is None else first["targets"][keep]
        checks = model_checks(self.model, first["x"][keep], first["y"][keep], survived, eps, self.settings.seed,
                              len(self.names), targets=targets, square=why_not is None)
        if why_not:  # an ensemble's own Square stage read by attacks.entry_checks replaces this line (engine.result)
            checks.insert(1, gradient_free_not_applicable(why_not))
        return checks

    @staticmethod
    def _square_not_applicable(runs: list[AttackRun], eps: float | None) -> str | None:
        """Why this audit runs no separate Square check (None: it does). An ensemble with its own score-based
        stage at an L∞ budget answers the check itself; its entry replaces the line returned here."""
        black_box = sorted({r.spec.name for r in runs if not r.spec.gradient})
        if black_box:
            return (f"the audit ran the black-box attack {', '.join(black_box)} itself: its robust accuracy is the "
                    "gradient-free evidence, in the attack table")
        ensembles = sorted({r.spec.name for r in runs if r.spec.ensemble is not None})
        if ensembles:
            return (f"the ensemble {', '.join(ensembles)} answers it with its own score-based stage, read from its "
                    "entry at the largest L∞ budget, and this audit has no such entry")
        if eps is None:
            norms = sorted({r.spec.norm for r in runs})
            return (f"the Square check runs at the largest L∞ budget and this audit has none (its attacks: "
                    f"{', '.join(sorted({r.spec.name for r in runs}))}; norms {', '.join(norms)})")
        return None

    def _curve_eps(self, spec: AttackSpec) -> list[float]:
        """Where a minimal-perturbation attack's implied accuracy curve is read: the user's budgets and a grid."""
        if spec.bounded:
            return []
        return [value for value, _ in self.settings.budgets] + list(MINIMAL_CURVE_EPS[spec.norm])

    def entries(self) -> list[dict]:
        out = []
        for plan in self.plans:
            for k, run in enumerate(plan):
                spec, steps = run.spec, self._steps(run.spec)
                standard = spec.is_standard(steps)
                note = "" if standard else (
                    f"non-standard budget: {steps} {spec.steps_unit} where the reference protocol uses "
                    f"{spec.reference_steps} ({spec.reference}); robustness may be overestimated"
                )
                out.append({
                    "name": spec.name, "title": spec.title, "eps": run.eps, "eps_text": run.eps_text,
                    "norm": spec.norm, "bounded": spec.bounded, "steps": steps, "steps_unit": spec.steps_unit,
                    "targeted": self.settings.targeted, "threat_model": spec.threat_model,
                    "standard_budget": standard, "reference_steps": spec.reference_steps, "budget_note": note,
                    "cascade": k > 0 and spec.cumulative,
                    "ensemble": (spec.ensemble(steps, len(self.names), self.tallies[run].components)
                                 if spec.ensemble else None),
                    **self.tallies[run].summary(self.names, budget_mode=spec.budget_mode,
                                                curve_eps=self._curve_eps(spec),
                                                confidence=self.settings.confidence),
                })
        return out
