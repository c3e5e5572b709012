"""The result object of an audit, assembled from what the engine measured: which value goes where.

:func:`assemble` builds the :class:`~reports.schema.AuditResult` from an :class:`Audited` (the model, the data,
the options and the finished pass); :func:`conclude` adds what is computed from the result itself: the
analyses' sections, the attack-validity checks, the score and the verdict.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import torch

from attacks.entry_checks import attack_warnings, clean_accuracy_check, entry_checks
from audit.version import __version__
from audit.analyses.suite import AnalysisSuite
from audit.engine.audit_pass import AuditPass
from audit.stats import BOOTSTRAP_RESAMPLES, MEAN_METHOD, PROPORTION_METHOD
from reports.gates import evaluate
from reports.schema import (
    BITSET_ENCODING, NORMS_ENCODING, AuditResult, index_ranges, reference_entry, reference_record,
)
from reports.score import score_report


@dataclass
class Audited:
    """Everything an audit measured and decided, before it becomes a report."""

    config: object  # the AuditConfig
    options: object  # its Resolved options
    loaded: object  # the LoadedModel (path, sha256, format, load policy, arch)
    probed: object  # the ProbeResult (outputs, output kind and type, determinism, warnings)
    data: object  # the ImageSet (source, format, sizes, corrupt files, note on sizes)
    audit_pass: AuditPass  # the finished pass, every rank's sums absorbed
    suite: AnalysisSuite
    names: list[str]  # the class names, in the model's order
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    preprocessing: dict  # each preprocessing value and its source (audit.engine.preprocessing)
    device: object
    load_s: float
    total_s: float


def assemble(a: Audited) -> AuditResult:
    """The result object: model, data, settings, clean accuracy, the attack entries, warnings and timing."""
    config, opts, loaded, probed, data, clean = a.config, a.options, a.loaded, a.probed, a.data, a.audit_pass.clean
    entries = a.audit_pass.entries()
    return AuditResult(
        tool={"name": "robustness-audit", "version": __version__},
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        model={
            "path": loaded.path, "label": config.label, "sha256": loaded.sha256, "format": loaded.format,
            "load_policy": loaded.load_policy, "arch": loaded.arch, "arch_kwargs": opts.arch_kwargs,
            "num_classes": probed.num_outputs, "input_shape": list(a.input_shape),
            "mean": list(a.mean) if a.mean else None, "std": list(a.std) if a.std else None,
            "output_kind": probed.output_kind, "output_type": probed.output_type,
            "deterministic": probed.deterministic, "preprocessing": a.preprocessing,
        },
        data={
            "source": data.source, "format": data.format, "n_available": data.n_available,
            "n_samples": clean.n, "n_chosen": len(data), "n_corrupt": len(data.corrupt),
            "corrupt": data.corrupt[:20], "classes": a.names,
            "class_counts": [int(c) for c in clean.total],
            "sample": {"n": clean.n, "indices": index_ranges(data.audited), "fingerprint": data.fingerprint()},
        },
        seed=config.seed,
        device=str(a.device),
        settings={
            **config.effective(),
            "attacks": [p[0].spec.name for p in a.audit_pass.plans],
            "eps": [text for _, text in opts.eps] or "each attack's default",
            "steps": config.steps, "targeted": config.targeted, "batch_size": config.batch_size,
            "samples": "all" if opts.samples is None else opts.samples,
        },
        clean={
            "accuracy": clean.accuracy, "accuracy_ci": clean.interval(config.confidence), "n": clean.n,
            "n_correct": int(clean.hits.sum()), "per_class": clean.per_class(a.names, config.confidence),
            "per_sample": {"correct": clean.per_sample()},
        },
        statistics=statistics(config.confidence),
        attacks=entries,
        warnings=_warnings(a, entries),
        environment=environment(),
        timing={"load_s": round(a.load_s, 3), "total_s": round(a.total_s, 3)},
        reference=reference_record(reference_entry(entries)),
    )


def statistics(confidence: float) -> dict:
    """How the report's intervals and per-sample outcomes were computed (``statistics`` in report.json)."""
    return {
        "confidence": confidence,
        "proportions": f"{PROPORTION_METHOD} (scipy.stats.binomtest(k, n).proportion_ci(method='wilson'))",
        "means": f"{MEAN_METHOD} (perturbation norms); percentile bootstrap over images ({BOOTSTRAP_RESAMPLES} "
                 "resamples, seeded) where an analysis says so",
        "medians": "order-statistic interval (scipy.stats.quantile_test)",
        "per_sample": BITSET_ENCODING,
        "norms": NORMS_ENCODING,
    }


def _warnings(a: Audited, entries: list[dict]) -> list[str]:
    """The probe's warnings, why an analysis is off, the data's notes, non-standard budgets, attack warnings."""
    out = list(a.probed.warnings) + a.suite.notes
    if a.data.size_note:
        out.append(a.data.size_note)
    if a.data.corrupt:
        out.append(f"{len(a.data.corrupt)} of {len(a.data)} chosen images could not be read and were skipped")
    notes = {e["name"]: e["budget_note"] for e in entries if e["budget_note"]}
    out += [f"{name}: {note}" for name, note in notes.items()]
    out += attack_warnings(entries, a.audit_pass.clean.n)
    return out


def conclude(result: AuditResult, a: Audited, model_checks: list[dict]) -> AuditResult:
    """The analyses' sections, the checks (clean accuracy, the model-based ones, those read from the entries),
    the score and the verdict."""
    a.suite.finish(result)
    clean = a.audit_pass.clean
    read = entry_checks(result.attacks, clean.n, a.probed.deterministic)
    if any(c["name"] == "gradient_free_attack" for c in read):  # an ensemble's Square stage answered it
        model_checks = [c for c in model_checks if c["name"] != "gradient_free_attack"]
    result.checks = [clean_accuracy_check(clean.accuracy, len(a.names), clean.n), *model_checks, *read]
    result.score = score_report(result.to_dict(), a.options.score_weights, interval=True)
    result.verdict = evaluate(result.to_dict(), a.config.gates, a.config.fail_under)
    return result


def environment() -> dict:
    import torchattacks

    return {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "torchattacks": torchattacks.__version__, "numpy": np.__version__,
    }
