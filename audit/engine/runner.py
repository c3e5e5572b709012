"""The audit pipeline: load, probe, then one pass over the data in which every attack and every observer
sees the same clean and adversarial batches.

Per-batch results are tallies that merge by addition; observers (the per-layer analyses) receive the clean
batch and each adversarial batch and write their own section of the result at the end.
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from datetime import datetime, UTC
from typing import Protocol

import numpy as np
import torch

from attacks.cascade import run_cascade
from attacks.checks import attack_warnings, clean_accuracy_check, entry_checks
from attacks.validity import gradient_free_not_applicable, model_checks
from attacks.registry import MINIMAL_CURVE_EPS, AttackSpec
from audit import __version__
from audit.analyses.suite import build_analyses
from audit.engine.plan import AttackRun, plan_attacks
from audit.config import AuditConfig
from audit.data import Framing, open_data
from audit.engine.distributed import world as distributed_world
from audit.engine.execution import Execution, audit_fingerprint
from audit.engine.state import StateDir
from audit.errors import AuditError
from audit.data.labels import align_labels, imagenet_names_for
from audit.engine.tallies import AttackTally, ClassCounts
from audit.model import load_model
from audit.probe import AuditedModel, declared_size, eval_mode, expected_channels, probe
from audit.engine.targets import choose_targets
from reports.gates import evaluate
from reports.schema import AuditResult, reference_entry, reference_record
from reports.score import score_report


class Observer(Protocol):
    """An analysis that watches the audit's batches; it never triggers a second pass over the attacks.

    ``tap`` is the batch seen through the layer tap (pooled vectors per layer, and maps with their gradients
    when an observer sets ``needs_gradients``), or None with ``--layers none``. An observer that sets
    ``needs_prepass`` also gets ``on_prepare(x, y, tap)`` for every batch of a clean pre-pass and ``prepared()``
    before the attacking pass starts.
    """

    def on_clean(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, tap=None) -> None: ...

    def on_adversarial(self, run: AttackRun, x_adv: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
                       tap=None) -> None: ...

    def finish(self, result: AuditResult) -> None: ...


class Progress(Protocol):
    def stage(self, text: str) -> None: ...

    def start(self, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


def run_audit(
    config: AuditConfig, *, progress: Progress | None = None, observers: list[Observer] | None = None,
    state_dir: str | None = None,
) -> AuditResult | None:
    """Run a whole audit and return its result object (no report is written here).

    With ``state_dir`` the audit saves its state there after every completed batch (``config.resume``
    continues from it). Under torchrun every rank runs this; rank 0 returns the result of the whole run, the
    other ranks None.

    The audit seeds torch's generators (and building a network from ``--arch`` draws from them); the
    caller's random state is restored afterwards.
    """
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        return _run_audit(config, progress, observers, state_dir)


def _run_audit(config: AuditConfig, progress: Progress | None, observers: list[Observer] | None,
               state_dir: str | None) -> AuditResult | None:
    world = distributed_world(config.device)
    progress = progress or _Silent()
    observers = observers or []
    started = time.perf_counter()
    opts = config.resolved()
    plans = plan_attacks(config)
    size, samples, given_classes = opts.input_size, opts.samples, opts.classes
    device, arch_kwargs = opts.device, opts.arch_kwargs

    progress.stage("loading the model")
    loaded = load_model(config.model, arch=config.arch, arch_kwargs=arch_kwargs, trust_model=config.trust_model)
    progress.stage("reading the data")
    data = open_data(config.data, samples=samples, seed=config.seed, framing=Framing(opts.resize, opts.crop))
    if len(data) == 0:
        raise AuditError(f"no samples to audit in {config.data}")
    channels = config.channels or expected_channels(loaded.module) or data.native_channels
    size = data.input_size(size, declared_size(loaded.module))
    mean, std = opts.normalization(channels)
    opts.check_budgets(channels, size)
    audited = AuditedModel(loaded.module, mean, std, config.output_key).to(device)
    load_s = time.perf_counter() - started

    with _threads(config.threads), eval_mode(audited):
        batches = data.batches(config.batch_size, size=size, channels=channels)
        first = next(batches, None)
        if first is None:
            raise AuditError(f"none of the {len(data)} chosen samples in {config.data} could be read")
        probed = probe(audited, first.x[:8].to(device), len(given_classes) if given_classes else None)
        names = (given_classes or imagenet_names_for(data.classes, probed.num_outputs) or data.classes
                 or [str(c) for c in range(probed.num_outputs)])
        if len(names) != probed.num_outputs:
            raise AuditError(
                f"the model has {probed.num_outputs} outputs but the data names {len(names)} classes: "
                "give the model's class names with --classes"
            )
        relabel = align_labels(data.classes, names, data.labels)
        analyses = build_analyses(config, audited, first.x[:2].to(device), names, observers,
                                  [r for plan in plans for r in plan])
        run = _Pass(config, audited, device, plans, names, relabel, analyses)
        fp = audit_fingerprint(config, loaded.sha256, data, world)
        execution = Execution(run, data, {"batch_size": config.batch_size, "size": size, "channels": channels},
                              world, StateDir(state_dir, world.rank) if state_dir else None, fp, config.resume,
                              progress)
        prepass = [o for o in analyses.observers if getattr(o, "needs_prepass", False)]
        if prepass:
            progress.stage("clean pre-pass (class representations)")
            execution.prepass(prepass)
        progress.stage("attacking")
        execution.attack(first, batches)
        if world.rank:
            return None  # the sums went to rank 0, which writes the report
        if config.checks:
            progress.stage("validity checks")
            checks = run.validity_checks()
        else:
            checks = []

    warnings = list(probed.warnings) + analyses.notes
    if data.size_note:
        warnings.append(data.size_note)
    if data.corrupt:
        warnings.append(f"{len(data.corrupt)} of {len(data)} chosen images could not be read and were skipped")
    entries = run.entries()
    notes = {e["name"]: e["budget_note"] for e in entries if e["budget_note"]}
    warnings += [f"{name}: {note}" for name, note in notes.items()]
    warnings += attack_warnings(entries, run.clean.n)
    result = AuditResult(
        tool={"name": "robustness-audit", "version": __version__},
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        model={
            "path": loaded.path, "label": config.label, "sha256": loaded.sha256, "format": loaded.format,
            "load_policy": loaded.load_policy, "arch": loaded.arch, "arch_kwargs": arch_kwargs,
            "num_classes": probed.num_outputs, "input_shape": [channels, size[0], size[1]],
            "mean": list(mean) if mean else None, "std": list(std) if std else None,
            "output_kind": probed.output_kind, "output_type": probed.output_type,
            "deterministic": probed.deterministic,
        },
        data={
            "source": data.source, "format": data.format, "n_available": data.n_available,
            "n_samples": run.clean.n, "n_chosen": len(data), "n_corrupt": len(data.corrupt),
            "corrupt": data.corrupt[:20], "classes": names,
            "class_counts": [int(c) for c in run.clean.total],
        },
        seed=config.seed,
        device=str(device),
        settings={
            **config.effective(),
            "attacks": [p[0].spec.name for p in plans],
            "eps": [text for _, text in opts.eps] or "each attack's default",
            "steps": config.steps, "targeted": config.targeted, "batch_size": config.batch_size,
            "samples": "all" if samples is None else samples,
        },
        clean={
            "accuracy": run.clean.accuracy, "n": run.clean.n, "n_correct": int(run.clean.hits.sum()),
            "per_class": run.clean.per_class(names),
        },
        attacks=entries,
        warnings=warnings,
        environment=_environment(),
        timing={"load_s": round(load_s, 3), "total_s": round(time.perf_counter() - started, 3)},
        reference=reference_record(reference_entry(entries)),
    )
    if analyses.layers or analyses.skipped:  # skipped: the tap section says why there are no per-layer analyses
        result.analyses["tap"] = analyses.section()
    for observer in analyses.observers:
        observer.finish(result)
    read = entry_checks(entries, run.clean.n, probed.deterministic)
    if any(c["name"] == "gradient_free_attack" for c in read):  # an ensemble's Square stage answered it
        checks = [c for c in checks if c["name"] != "gradient_free_attack"]
    result.checks = [clean_accuracy_check(run.clean.accuracy, len(names), run.clean.n), *checks, *read]
    result.score = score_report(result.to_dict(), opts.score_weights)
    result.verdict = evaluate(result.to_dict(), config.gates, config.fail_under)
    if world.active:
        result.environment.update(world.describe())
    execution.finished()
    return result


@contextmanager
def _threads(count: int | None):
    """Use ``count`` CPU threads for the audit (None: torch's default), and restore the caller's setting."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Pass:
    """The state of the single pass over the data: clean tally, one tally per attack run, observers."""

    def __init__(self, config, model, device, plans, names, relabel, analyses):
        self.config, self.model, self.device = config, model, device
        self.plans, self.names, self.relabel, self.analyses = plans, names, relabel, analyses
        self.observers = analyses.observers
        self.clean = ClassCounts(len(names))
        self.tallies = {run: AttackTally(len(names)) for plan in plans for run in plan}
        self.seen = 0
        # the first batch, kept for the validity checks: x, y, clean-correct, targets (targeted audits), and per
        # run the samples whose attack goal was reached (untargeted: misclassified; targeted: the target class)
        self.first: dict = {}

    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device)
        y = torch.as_tensor(self.relabel[y.numpy()], device=self.device)
        if int(y.max()) >= len(self.names) or int(y.min()) < 0:
            raise AuditError(f"the data has label {int(y.max())}, but the model has only {len(self.names)} classes")
        return x, y

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One batch of the clean pre-pass: a tapped forward, no attack."""
        x, y = self._inputs(x, y)
        tap = self.analyses.tap(self.model, x, "prepass_forward", y)
        for observer in self.observers:
            if getattr(observer, "needs_prepass", False):
                observer.on_prepare(x, y, tap)

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = self._inputs(x, y)
        tapping = bool(self.analyses.layers)
        clean_tap = self.analyses.tap(self.model, x, "clean_forward", y) if tapping else None
        if clean_tap is not None:
            clean_logits = clean_tap.logits
        else:
            with torch.no_grad():
                clean_logits = self.model(x)
        clean_correct = (clean_logits.argmax(1) == y).cpu().numpy()
        labels_np = y.cpu().numpy()
        self.clean.add(labels_np, clean_correct)
        first_batch = not self.first
        if first_batch:
            self.first = {"x": x, "y": y, "correct": torch.as_tensor(clean_correct, device=x.device), "broken": {},
                          "targets": None}
        for observer in self.observers:
            if hasattr(observer, "offset"):
                observer.offset = self.seen
            observer.on_clean(x, y, clean_logits, tap=clean_tap)
        space = self.analyses.space
        targets = choose_targets(self.config.targeted, clean_logits, y, self.config.seed, self.seen,
                                 distance=space.distance if space is not None else None)
        if first_batch:
            self.first["targets"] = targets
        for plan in self.plans:
            spec = plan[0].spec
            outcomes = run_cascade(
                spec, self.model, x, y, clean_logits, [r.eps for r in plan], steps=self._steps(spec),
                num_classes=len(self.names), seed=self.config.seed + self.seen, targets=targets,
                evaluate=self.analyses.evaluator(self.model, y) if tapping and self.observers else None,
            )
            view = clean_tap
            for run, outcome in zip(plan, outcomes, strict=False):
                delta = (outcome.x_adv - x).flatten(1)
                adv_correct = outcome.logits.argmax(1) == y
                if self.seen == 0:
                    self.first["broken"][run] = outcome.goal
                sizes = {"Linf": delta.abs().amax(1).cpu().numpy(), "L2": delta.norm(dim=1).cpu().numpy()}
                self.tallies[run].add(
                    labels=labels_np, clean_correct=clean_correct,
                    adv_correct=adv_correct.cpu().numpy(), goal=outcome.goal.cpu().numpy(),
                    linf=sizes["Linf"], l2=sizes["L2"], outcome=outcome, found=outcome.found.cpu().numpy(),
                    minimal_norm=None if spec.bounded else sizes[spec.norm],
                )
                if not self.observers:
                    continue
                if tapping:  # a cumulative attack's view carries over from budget to budget
                    view = self.analyses.adversarial(view if spec.cumulative else clean_tap, outcome)
                for observer in self.observers:
                    observer.on_adversarial(run, outcome.x_adv, y, outcome.logits, tap=view)

    def _steps(self, spec: AttackSpec) -> int | None:
        if spec.default_steps is None:  # a single-step attack: --steps does not apply
            return None
        return self.config.steps if self.config.steps is not None else spec.default_steps

    def export(self) -> dict:
        """This pass's sums as plain data: for the saved state and for adding up the ranks."""
        first = {}
        if self.first:
            first = {"x": self.first["x"], "y": self.first["y"], "correct": self.first["correct"],
                     "targets": self.first["targets"],
                     "broken": {run.key: mask for run, mask in self.first["broken"].items()}}
        return {"clean": self.clean.export(), "tallies": {run.key: t.export() for run, t in self.tallies.items()},
                "first": first, "analyses": self.analyses.export("pass")}

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
        self.analyses.absorb("pass", state["analyses"])

    def validity_checks(self) -> list[dict]:
        """The model-based checks on the clean-correct images of the first batch (see attacks.validity)."""
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
        checks = model_checks(self.model, first["x"][keep], first["y"][keep], survived, eps, self.config.seed,
                              len(self.names), targets=targets, square=why_not is None)
        if why_not:  # an ensemble's own Square stage read by attacks.checks replaces this line (_run_audit)
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
        return [value for value, _ in self.config.resolved().eps] + list(MINIMAL_CURVE_EPS[spec.norm])

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
                    "targeted": self.config.targeted, "threat_model": spec.threat_model,
                    "standard_budget": standard, "reference_steps": spec.reference_steps, "budget_note": note,
                    "cascade": k > 0 and spec.cumulative,
                    "ensemble": (spec.ensemble(steps, len(self.names), self.tallies[run].components)
                                 if spec.ensemble else None),
                    **self.tallies[run].summary(self.names, budget_mode=spec.budget_mode,
                                                curve_eps=self._curve_eps(spec)),
                })
        return out


def _environment() -> dict:
    import torchattacks

    return {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "torchattacks": torchattacks.__version__, "numpy": np.__version__,
    }
