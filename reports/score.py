"""The robustness score of a report: named components in [0, 1], a weighted value 0-100 and a grade.

Reads only the report dict (the JSON of report.json); no torch.

Budgets and the reference run
    A *budget* is a (norm, eps) pair of the report's bounded attack entries (``eps`` not null). The *reference
    norm* is L∞ when a bounded L∞ entry exists, else the norm of the first bounded entry; the *largest budget* is
    the largest eps of the reference norm. The *strongest attack* is the bounded attack with the lowest robust
    accuracy at the largest budget; ties go to the attack with the lowest mean robust accuracy over its budgets
    of the reference norm, then to the first in the report. The *reference run* (strongest attack at the largest
    budget) is where the analyses' components are read. With no bounded entry the
    reference run is the minimal-perturbation entry with the highest success rate. It is decided in one place,
    ``reports.schema.reference_entry``, which the terminal summary and the HTML page call too.

Components (each in [0, 1], higher = more robust)
    robustness
        For every budget b: r_b = min over the bounded attacks at b of their robust accuracy, also over the
        implied curves of the minimal-perturbation attacks of the same norm at the same eps. With no bounded
        entry, the budgets are the points of those implied curves. Value = clip(mean_b r_b / clean accuracy,
        0, 1); 0 when clean accuracy is 0; missing when there is no budget.
    too few images
        A component's compute may return a third item {"n": images it rests on, "too_few": bool, and any field of
        its own, e.g. severity's ``source``}; the component carries them all, and one marked ``too_few`` keeps its value for inspection but is left out of the score
        (not included, weight 0), so that a handful of images cannot swing the score by itself (each analysis
        documents its threshold: saliency needs 20 successful adversarials at the reference run).
    the components of the analyses
        Each registered analysis (audit.analyses.registry) may add components, each with its weight and formula,
        after robustness in the analyses' order: the semantic window adds ``severity`` and ``representation``
        (audit/analyses/semantics/report.py; severity reads the class hierarchy's section when the report has it,
        else the word vectors, and its ``source`` says which), the saliency entropy ``saliency``
        (audit/analyses/saliency/report.py); their docstrings give the formulas.

Value and grade
    value = 100 · Σ w_c · c / Σ w_c over the components with a value and a positive weight (the weights of the
    others are renormalised away; each component's ``weight`` is its share after that, the top-level
    ``weights`` are as configured). Grade A ≥ 85, B ≥ 70, C ≥ 55, D ≥ 40, else F. A check with status
    ``fail`` caps the value at 69.9 and so the grade at C (``capped.applied`` says whether the cap lowered it; a
    grade already below C stays as it is). With no component to weigh, value and grade are null.

Not scored
    When the ``clean_accuracy`` check fails (clean accuracy at most twice chance), the model does not do its task
    and robust accuracy relative to it measures nothing: value null, grade F, and ``not_scored`` says why in one
    line. The components are still listed for inspection, none of them counted.
"""

from __future__ import annotations

import math

from audit.analyses.registry import ScoreComponent, sections
from audit.errors import AuditError
from reports.formatting import NORM_SIGN
from reports.schema import is_reference, reference_run, same_eps

GRADES = ((85.0, "A"), (70.0, "B"), (55.0, "C"), (40.0, "D"))
CAP_GRADE, CAP_VALUE = "C", 69.9
ROBUSTNESS_WEIGHT = 0.6
ROBUSTNESS_FORMULA = ("clip(mean over budgets (norm, eps) of min over attacks of robust accuracy / clean accuracy, "
                      "0, 1)")


def analysis_components() -> tuple[ScoreComponent, ...]:
    """The components the registered analyses contribute, in the analyses' order."""
    found = tuple(component for section in sections() for component in section.score)
    names = ["robustness", *(c.name for c in found)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AuditError(f"two score components are named {', '.join(twice)}: each analysis's components need "
                         "names of their own")
    return found


def default_weights() -> dict[str, float]:
    """Every component's default weight, robustness first: {"robustness": 0.6, "severity": 0.15, ...}."""
    return {"robustness": ROBUSTNESS_WEIGHT, **{c.name: c.weight for c in analysis_components()}}


def check_weights(weights: dict | None) -> dict[str, float]:
    """The default weights updated by ``weights``; a name that is no component, a negative or non-finite weight,
    or all weights zero is an :class:`AuditError`."""
    defaults = default_weights()
    merged = dict(defaults)
    for name, w in (weights or {}).items():
        if name not in defaults:
            raise AuditError(f"unknown score component {name!r} in the weights; the components are "
                             f"{', '.join(defaults)}")
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise AuditError(f"score weight {name}={w!r} is not a non-negative number")
        merged[name] = float(w)
    if not any(merged.values()):
        raise AuditError("all score weights are zero: give at least one component a positive weight")
    return merged


def grade_of(value: float) -> str:
    return next((grade for bound, grade in GRADES if value >= bound), "F")


def clip(x: float) -> float:
    """``x`` clipped to [0, 1]."""
    return min(1.0, max(0.0, x))


def _bounded(report: dict) -> list[dict]:
    return [e for e in report["attacks"] if e.get("eps") is not None and e.get("robust_accuracy") is not None]


def _minimal(report: dict) -> list[dict]:
    return [e for e in report["attacks"] if e.get("minimal_perturbation")]


def run_name(entry: dict) -> str:
    """An attack entry as the components' details name it: ``pgd@8/255``, ``deepfool@min``."""
    return f"{entry['name']}@{entry['eps_text'] or 'min'}"


def find_run(runs: list[dict], ref: dict) -> dict | None:
    """The analysis entry (``attack``, ``eps``) of the reference run ``ref`` among ``runs``, or None."""
    return next((r for r in runs if is_reference(r, ref)), None)


# --- robustness, and what the analyses' components share: each returns (value or None, one-sentence detail) --

def _budgets(report: dict) -> dict[tuple[str, float], dict]:
    """(norm, eps) -> {"text", "values", "sources"}: the robust accuracies at each budget, and where each comes
    from: ("entry", i) for a bounded entry, ("curve", i, eps) for a point of a minimal attack's implied curve."""
    budgets: dict[tuple[str, float], dict] = {}

    def put(norm: str, eps: float, text: str, value: float, source: tuple, create: bool) -> None:
        key = next((k for k in budgets if k[0] == norm and same_eps(k[1], eps)), None)
        if key is None and create:
            key = (norm, eps)
            budgets[key] = {"text": text, "values": [], "sources": []}
        if key is not None:
            budgets[key]["values"].append(value)
            budgets[key]["sources"].append(source)

    entries = report["attacks"]
    bounded = [i for i, e in enumerate(entries) if e.get("eps") is not None and e.get("robust_accuracy") is not None]
    for i in bounded:
        e = entries[i]
        put(e["norm"], e["eps"], e["eps_text"] or f"{e['eps']:g}", e["robust_accuracy"], ("entry", i), True)
    for i, e in enumerate(entries):
        for point in (e.get("minimal_perturbation") or {}).get("curve", []):
            if point.get("robust_accuracy") is not None:
                put(e["norm"], point["eps"], f"{point['eps']:.4g}", point["robust_accuracy"],
                    ("curve", i, point["eps"]), not bounded)
    return budgets


def robustness(report: dict) -> tuple[float | None, str]:
    budgets = _budgets(report)
    if not budgets:
        return None, "no bounded attack and no implied accuracy curve in the report"
    clean = report["clean"]["accuracy"] or 0.0
    worst = {k: min(b["values"]) for k, b in budgets.items()}
    listing = ", ".join(f"{NORM_SIGN.get(k[0], k[0])} {budgets[k]['text']}: {100 * v:.1f}%"
                        for k, v in worst.items())
    if clean <= 0:
        return 0.0, f"clean accuracy is 0: nothing to retain (lowest robust accuracy per budget: {listing})"
    value = clip(sum(worst.values()) / len(worst) / clean)
    return value, (f"{100 * value:.1f}% of the clean accuracy {100 * clean:.1f}% retained on average over "
                   f"{len(worst)} budgets (lowest robust accuracy per budget: {listing})")


def no_layers(report: dict) -> str:
    """Why the report has no per-layer analysis: the layer tap was skipped (and why), or --layers none."""
    tap = report.get("analyses", {}).get("tap") or {}
    if tap.get("skipped"):
        return f"per-layer analyses skipped: {tap['skipped']}"
    if str((report.get("settings") or {}).get("layers", "")).strip().lower() == "none":
        return "per-layer analyses turned off (--layers none)"
    return ""


def attacked_nothing(ref: dict) -> str | None:
    """Why a component read at ``ref`` would measure nothing: it attacked no clean-correct sample."""
    if ref.get("n_attacked") == 0:
        return (f"{run_name(ref)} attacked no clean-correct sample, so there is no adversarial to compare with the "
                "clean images")
    return None


# --- the score --------------------------------------------------------------------------------------------------

def score_report(report: dict, weights: dict | None = None, interval: bool = False) -> dict:
    """The ``score`` object of a report (see the module docstring for every formula); with ``interval``, also
    its bootstrap interval (:func:`score_interval`, which needs numpy: the audit computes it, renderers never)."""
    configured = check_weights(weights)
    ref = reference_run(report)
    measured = {"robustness": robustness(report)}
    formulas = {"robustness": ROBUSTNESS_FORMULA}
    marks: dict[str, dict] = {}  # a component's optional third item: {"n": images it rests on, "too_few": bool}
    for component in analysis_components():
        value, detail, *extra = component.compute(report, ref)
        measured[component.name] = (value, detail)
        marks[component.name] = extra[0] if extra else {}
        formulas[component.name] = component.formula
    used = {n: configured[n] for n, (v, _) in measured.items()
            if v is not None and configured[n] > 0 and not marks.get(n, {}).get("too_few")}
    total = sum(used.values())
    components = {}
    for name, (value, detail) in measured.items():
        unweighted = value is not None and configured[name] == 0
        components[name] = {"value": value, "weight": used[name] / total if name in used else 0.0,
                            "included": name in used, "formula": formulas[name],
                            "detail": detail + ("; weight 0: not counted" if unweighted else ""),
                            **marks.get(name, {})}
    value = round(100 * sum(w * measured[n][0] for n, w in used.items()) / total, 6) if total else None
    checks = report.get("checks") or []
    failed = [c["name"] for c in checks if c.get("status") == "fail"]
    chance = next((c for c in checks if c.get("name") == "clean_accuracy" and c.get("status") == "fail"), None)
    not_scored, capped = None, None
    if chance is not None:
        numbers = chance.get("numbers") or {}
        shown = "unknown" if numbers.get("accuracy") is None else f"{100 * numbers['accuracy']:.1f}%"
        at_chance = "" if numbers.get("chance") is None else f" (chance {100 * numbers['chance']:.1f}%)"
        not_scored = (f"not scored: clean accuracy {shown} is near or below chance{at_chance}, so a robustness "
                      "score would mean nothing (grade F)")
        for comp in components.values():
            comp["included"], comp["weight"] = False, 0.0
        value = None
    elif failed:
        uncapped = None if value is None else grade_of(value)
        applied = value is not None and value > CAP_VALUE
        which = f"failed validity check{'s' if len(failed) > 1 else ''} ({', '.join(failed)})"
        capped = {"grade": CAP_GRADE, "by": failed, "applied": applied,
                  "reason": f"{which}: the robustness numbers may be unreliable, so the grade is at most {CAP_GRADE}"
                  if applied or value is None else
                  f"{which}: the robustness numbers may be unreliable; the grade {uncapped} is below the cap "
                  f"{CAP_GRADE} already"}
        if value is not None:
            value = min(value, CAP_VALUE)
    bounds, method = None, "not computed (a report's score is given its interval when the audit writes it)"
    if interval:
        bounds, method = score_interval(report, {n: measured[n][0] for n in used}, used,
                                        CAP_VALUE if failed and not not_scored else None, value is None)
    return {
        "value": value,
        "interval": bounds,
        "interval_method": method,
        "grade": "F" if not_scored else None if value is None else grade_of(value),
        "components": components,
        "missing": [n for n, (v, _) in measured.items() if v is None],
        "capped": capped,
        "not_scored": not_scored,
        "weights": configured,
        "reference": None if ref is None else {"attack": ref["name"], "norm": ref["norm"], "eps": ref["eps"],
                                               "eps_text": ref["eps_text"]},
    }


# --- the score's interval -----------------------------------------------------------------------------------

INTERVAL_RESAMPLES = 2000
INTERVAL_METHOD = (
    "percentile bootstrap over the audited images ({resamples} resamples, seed {seed}, confidence {confidence:g}): "
    "each resample draws the images with replacement and recomputes the clean accuracy, every robust accuracy and "
    "every implied-curve point from the per-sample outcomes, hence the robustness component and the score; the "
    "analyses' components are held at their point values (the report keeps their per-image data only in their "
    "own sections, each with its own interval, and a component resting on too few images is left out of the score "
    "by its section's rule); the cap of a failed validity check applies to each resample")


DEGENERATE_METHOD = (
    "every bootstrap resample gave the same score (each robust accuracy rests on images that all had one outcome, "
    "e.g. none stayed robust), so resampling the images cannot show its uncertainty: the interval is the score with "
    "every robust accuracy at the ends of its Wilson interval (confidence {confidence:g}) and the clean accuracy "
    "at its value; the analyses' components are held at their point values")


CAPPED_METHOD = (
    "a failed validity check caps the score at {cap:g}, and every one of the {resamples} bootstrap resamples (seed "
    "{seed}) scored above the cap, so the score is the cap whatever the sampling and its interval is the cap alone; "
    "uncapped, the percentile bootstrap interval (confidence {confidence:g}) would be [{low:.1f}, {high:.1f}]")


def score_interval(report: dict, values: dict[str, float], used: dict[str, float], cap: float | None,
                   unscored: bool) -> tuple[list[float] | None, str]:
    """The score's interval and how it was computed (``INTERVAL_METHOD``); None with the reason when the report
    has no per-sample outcomes, the score is null, or robustness is not among the weighted components."""
    import numpy as np

    if unscored:
        return None, "no interval: the report is not scored"
    if "robustness" not in used:
        return None, "no interval: the robustness component is not weighted (the others are held fixed)"
    from reports.schema import unpack_bits, unpack_norms

    n = report["clean"].get("n") or 0
    correct = (report["clean"].get("per_sample") or {}).get("correct")
    budgets = _budgets(report)
    if not n or correct is None or not budgets:
        return None, "no interval: the report has no per-sample outcomes"
    columns, groups = [], []
    for budget in budgets.values():
        group = []
        for source in budget["sources"]:
            entry = report["attacks"][source[1]]
            per_sample = entry.get("per_sample") or {}
            if source[0] == "entry":
                column = np.array(unpack_bits(per_sample["robust"], n), dtype=np.float64)
            else:
                column = (np.array(unpack_norms(per_sample["norm"], n), dtype=np.float64) > source[2]) * 1.0
            group.append(len(columns))
            columns.append(column)
        groups.append(group)
    outcomes = np.stack([np.array(unpack_bits(correct, n), dtype=np.float64), *columns], axis=1)  # N x (1 + K)
    seed = int(report.get("seed") or 0)
    confidence = float((report.get("statistics") or {}).get("confidence", 0.95))
    rng = np.random.default_rng(seed)
    means = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) @ outcomes / n
                      for _ in range(INTERVAL_RESAMPLES)])  # resamples x (1 + K)
    total = sum(used.values())
    fixed = sum(w * values[name] for name, w in used.items() if name != "robustness")

    def uncapped_scores(robust_means: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """The score before the failed checks' cap, for rows of robust accuracies (one column per source) and
        clean accuracies."""
        worst = np.stack([robust_means[:, group].min(axis=1) for group in groups], axis=1)
        retained = np.where(clean > 0, worst.mean(axis=1) / np.where(clean > 0, clean, 1.0), 0.0)
        return 100 * (used["robustness"] * np.clip(retained, 0.0, 1.0) + fixed) / total

    def capped(values: np.ndarray) -> np.ndarray:
        return values if cap is None else np.minimum(values, cap)

    levels = [(1 - confidence) / 2, (1 + confidence) / 2]
    uncapped = uncapped_scores(means[:, 1:], means[:, 0])
    score = capped(uncapped)
    low, high = np.quantile(score, levels)
    method = INTERVAL_METHOD.format(resamples=INTERVAL_RESAMPLES, seed=seed, confidence=confidence)
    if cap is not None and uncapped.min() >= cap:  # the cap, not the sampling, decides every resample
        free_low, free_high = np.quantile(uncapped, levels)
        method = CAPPED_METHOD.format(cap=cap, resamples=INTERVAL_RESAMPLES, seed=seed, confidence=confidence,
                                      low=free_low, high=free_high)
    elif np.ptp(score) == 0:  # every resample alike: resampling the images shows no uncertainty
        from audit.stats import proportion_interval

        ends = np.array([proportion_interval(int(c.sum()), n, confidence) for c in columns]).T  # 2 x K
        low, high = capped(uncapped_scores(ends, np.full(2, outcomes[:, 0].mean())))
        method = DEGENERATE_METHOD.format(confidence=confidence)
    return [round(float(low), 6), round(float(high), 6)], method
