"""The robustness score of a report: four named components in [0, 1], a weighted value 0-100 and a grade.

Reads only the report dict (the JSON of report.json); no torch.

Budgets and the reference run
    A *budget* is a (norm, eps) pair of the report's bounded attack entries (``eps`` not null). The *reference
    norm* is L∞ when a bounded L∞ entry exists, else the norm of the first bounded entry; the *largest budget* is
    the largest eps of the reference norm. The *strongest attack* is the bounded attack with the lowest robust
    accuracy at the largest budget; ties go to the attack with the lowest mean robust accuracy over its budgets
    of the reference norm, then to the first in the report. The *reference run* (strongest attack at the largest
    budget) is where the severity, representation and saliency components are read. With no bounded entry the
    reference run is the minimal-perturbation entry with the highest success rate. It is decided in one place,
    ``reports.schema.reference_entry``, which the terminal summary and the HTML page call too.

Components (each in [0, 1], higher = more robust)
    robustness
        For every budget b: r_b = min over the bounded attacks at b of their robust accuracy, also over the
        implied curves of the minimal-perturbation attacks of the same norm at the same eps. With no bounded
        entry, the budgets are the points of those implied curves. Value = clip(mean_b r_b / clean accuracy,
        0, 1); 0 when clean accuracy is 0; missing when there is no budget.
    severity
        At the reference run: 1 − s · min(m, 2) / 2, where s = n_success / n_attacked of its attack entry (the
        share of clean-correct samples the attack broke) and m = the mean semantic severity of those errors
        (analyses.semantics.severity: word-vector distance of true and predicted class over the mean distance
        between classes, 1 = an average confusion; only errors whose two classes have word vectors are scored,
        and their mean stands for all). 1 when nothing broke; missing when the semantic section is absent or
        skipped, or no broken sample was scored.
    representation
        At the last semantic layer and the reference run, the mean of the parts that exist:
        (a) 2 vs 2 retention clip((adv_2v2 − 0.5) / (clean_2v2 − 0.5), 0, 1), only when clean_2v2 > 0.5;
        (b) 1 vs 2 retention clip(source_like / source_like_clean, 0, 1), only when source_like_clean > 0.
        Missing when there is no semantic layer, the reference run attacked no sample (the adversarial
        representations would be the clean ones, a retention of 1 measured on nothing), or neither part exists.
    saliency
        1 − clip(mean over layers of |ΔH| / H_max, 0, 1), with ΔH the shift of mean saliency entropy at the
        reference run (analyses.saliency, layers with a non-null delta) and H_max = 2·log_b L for the glcm and
        2d entropies and log_b L for the histogram entropy (L levels, log base b): the largest entropy the
        definition can reach. Missing when the section is absent, skipped or has no shift, or the reference run
        attacked no sample.

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

from audit.errors import AuditError
from reports.schema import is_reference, reference_run, same_eps

DEFAULT_WEIGHTS = {"robustness": 0.6, "severity": 0.15, "representation": 0.15, "saliency": 0.1}
GRADES = ((85.0, "A"), (70.0, "B"), (55.0, "C"), (40.0, "D"))
CAP_GRADE, CAP_VALUE = "C", 69.9
MAX_SEVERITY = 2.0
ENTROPY_MAX_FACTOR = {"glcm": 2.0, "2d": 2.0, "histogram": 1.0}  # H_max = factor · log_b L

FORMULAS = {
    "robustness": "clip(mean over budgets (norm, eps) of min over attacks of robust accuracy / clean accuracy, 0, 1)",
    "severity": "1 - (n_success / n_attacked) * min(mean severity, 2) / 2 at the strongest attack's largest budget",
    "representation": "mean of clip((adv_2v2 - 0.5) / (clean_2v2 - 0.5), 0, 1) and clip(source_like / "
                      "source_like_clean, 0, 1) at the last layer, strongest attack, largest budget",
    "saliency": "1 - clip(mean over layers of |delta H| / H_max, 0, 1), H_max = 2 log2 L (glcm), at the strongest "
                "attack's largest budget",
}


def check_weights(weights: dict | None) -> dict[str, float]:
    """The default weights updated by ``weights``; a name that is no component, a negative or non-finite weight,
    or all weights zero is an :class:`AuditError`."""
    merged = dict(DEFAULT_WEIGHTS)
    for name, w in (weights or {}).items():
        if name not in DEFAULT_WEIGHTS:
            raise AuditError(f"unknown score component {name!r} in the weights; the components are "
                             f"{', '.join(DEFAULT_WEIGHTS)}")
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise AuditError(f"score weight {name}={w!r} is not a non-negative number")
        merged[name] = float(w)
    if not any(merged.values()):
        raise AuditError("all score weights are zero: give at least one component a positive weight")
    return merged


def grade_of(value: float) -> str:
    return next((grade for bound, grade in GRADES if value >= bound), "F")


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def _bounded(report: dict) -> list[dict]:
    return [e for e in report["attacks"] if e.get("eps") is not None and e.get("robust_accuracy") is not None]


def _minimal(report: dict) -> list[dict]:
    return [e for e in report["attacks"] if e.get("minimal_perturbation")]


def _label(entry: dict) -> str:
    return f"{entry['name']}@{entry['eps_text'] or 'min'}"


def _find(runs: list[dict], ref: dict) -> dict | None:
    return next((r for r in runs if is_reference(r, ref)), None)


# --- the components: each returns (value or None, one-sentence detail) ------------------------------------------

def robustness(report: dict) -> tuple[float | None, str]:
    budgets: dict[tuple[str, float], dict] = {}  # (norm, eps) -> {"text", "values"}

    def put(norm: str, eps: float, text: str, value: float, create: bool) -> None:
        key = next((k for k in budgets if k[0] == norm and same_eps(k[1], eps)), None)
        if key is None and create:
            key = (norm, eps)
            budgets[key] = {"text": text, "values": []}
        if key is not None:
            budgets[key]["values"].append(value)

    bounded = _bounded(report)
    for e in bounded:
        put(e["norm"], e["eps"], e["eps_text"] or f"{e['eps']:g}", e["robust_accuracy"], True)
    for e in _minimal(report):
        for point in e["minimal_perturbation"]["curve"]:
            if point.get("robust_accuracy") is not None:
                put(e["norm"], point["eps"], f"{point['eps']:.4g}", point["robust_accuracy"], not bounded)
    if not budgets:
        return None, "no bounded attack and no implied accuracy curve in the report"
    clean = report["clean"]["accuracy"] or 0.0
    worst = {k: min(b["values"]) for k, b in budgets.items()}
    listing = ", ".join(f"{'L∞' if k[0] == 'Linf' else k[0]} {budgets[k]['text']}: {100 * v:.1f}%"
                        for k, v in worst.items())
    if clean <= 0:
        return 0.0, f"clean accuracy is 0: nothing to retain (lowest robust accuracy per budget: {listing})"
    value = _clip(sum(worst.values()) / len(worst) / clean)
    return value, (f"{100 * value:.1f}% of the clean accuracy {100 * clean:.1f}% retained on average over "
                   f"{len(worst)} budgets (lowest robust accuracy per budget: {listing})")


def _no_layers(report: dict) -> str:
    """Why the report has no per-layer analysis: the layer tap was skipped (and why), or --layers none."""
    tap = report.get("analyses", {}).get("tap") or {}
    if tap.get("skipped"):
        return f"per-layer analyses skipped: {tap['skipped']}"
    if str((report.get("settings") or {}).get("layers", "")).strip().lower() == "none":
        return "per-layer analyses turned off (--layers none)"
    return ""


def _semantics(report: dict) -> tuple[dict | None, str]:
    sem = report.get("analyses", {}).get("semantics")
    if not sem:
        why = _no_layers(report)
        return None, f"no semantic analysis in the report: {why}" if why else \
            "no semantic analysis in the report (no word vectors, or --layers none)"
    if "skipped" in sem:
        return None, f"semantic analysis skipped: {sem['skipped']}"
    return sem, ""


def severity(report: dict, ref: dict | None) -> tuple[float | None, str]:
    sem, why = _semantics(report)
    if sem is None or ref is None:
        return None, why or "no attack run to read it at"
    if not ref.get("n_attacked"):
        return None, f"{_label(ref)} attacked no clean-correct sample"
    share = ref["n_success"] / ref["n_attacked"]
    if ref["n_success"] == 0:
        return 1.0, f"{_label(ref)} broke no clean-correct sample"
    entry = _find(sem.get("severity", []), ref)
    if entry is None or entry.get("mean") is None:
        return None, f"no broken sample of {_label(ref)} has word vectors for both its classes"
    mean = entry["mean"]
    value = _clip(1.0 - share * min(mean, MAX_SEVERITY) / MAX_SEVERITY)
    return value, (f"{_label(ref)} broke {100 * share:.1f}% of the clean-correct samples with mean severity "
                   f"{mean:.2f} (1 = an average confusion between two classes; {entry['n']} errors scored)")


def _attacked_nothing(ref: dict) -> str | None:
    """Why a component read at ``ref`` would measure nothing: it attacked no clean-correct sample."""
    if ref.get("n_attacked") == 0:
        return (f"{_label(ref)} attacked no clean-correct sample, so there is no adversarial to compare with the "
                "clean images")
    return None


def representation(report: dict, ref: dict | None) -> tuple[float | None, str]:
    sem, why = _semantics(report)
    if sem is None or not sem.get("layers") or ref is None:
        return None, why or ("no semantic layer in the report" if ref is not None else "no attack run to read it at")
    if _attacked_nothing(ref):
        return None, _attacked_nothing(ref)
    last = sem["layers"][-1]
    adv = _find(last.get("adversarial", []), ref)
    if adv is None:
        return None, f"no semantic measurement of {_label(ref)} at layer {last['name']}"
    parts, notes = [], []
    clean_tvt, adv_tvt = last["clean"]["two_vs_two"], adv.get("two_vs_two")
    if clean_tvt is not None and clean_tvt > 0.5 and adv_tvt is not None:
        parts.append(_clip((adv_tvt - 0.5) / (clean_tvt - 0.5)))
        notes.append(f"2v2 {clean_tvt:.2f} clean → {adv_tvt:.2f} adversarial (retention {parts[-1]:.2f})")
    else:
        notes.append(f"2v2 left out (clean 2v2 {clean_tvt if clean_tvt is None else round(clean_tvt, 2)} "
                     "is not above chance)")
    src, src_clean = adv.get("source_like"), adv.get("source_like_clean")
    if src is not None and src_clean:
        parts.append(_clip(src / src_clean))
        notes.append(f"source-like {src:.2f} vs {src_clean:.2f} for the clean versions (retention {parts[-1]:.2f})")
    else:
        notes.append("1 vs 2 left out (no scored adversarial, or no clean baseline)")
    if not parts:
        return None, f"layer {last['name']} under {_label(ref)}: " + "; ".join(notes)
    return sum(parts) / len(parts), f"layer {last['name']} under {_label(ref)}: " + "; ".join(notes)


def saliency(report: dict, ref: dict | None) -> tuple[float | None, str]:
    sal = report.get("analyses", {}).get("saliency")
    if not sal:
        why = _no_layers(report)
        return None, f"no saliency analysis in the report: {why}" if why else "no saliency analysis in the report"
    if "skipped" in sal:
        return None, f"saliency analysis skipped: {sal['skipped']}"
    if ref is None:
        return None, "no attack run to read it at"
    if _attacked_nothing(ref):
        return None, _attacked_nothing(ref)
    levels, base = sal["levels"], sal.get("log_base", 2)
    h_max = ENTROPY_MAX_FACTOR.get(sal.get("entropy"), 2.0) * math.log(levels) / math.log(base) if levels > 1 else 0
    shifts = []
    for layer in sal.get("layers", []):
        adv = _find(layer.get("adversarial", []), ref)
        if adv is not None and adv.get("delta") is not None:
            shifts.append(abs(adv["delta"]))
    if not shifts or h_max <= 0:
        return None, f"no saliency-entropy shift measured under {_label(ref)}"
    mean = sum(shifts) / len(shifts)
    value = 1.0 - _clip(mean / h_max)
    return value, (f"mean |ΔH| {mean:.3f} bits over {len(shifts)} layers under {_label(ref)}, against the largest "
                   f"possible {h_max:.2f} ({sal.get('entropy')}, L={levels})")


# --- the score --------------------------------------------------------------------------------------------------

def score_report(report: dict, weights: dict | None = None) -> dict:
    """The ``score`` object of a report (see the module docstring for every formula)."""
    configured = check_weights(weights)
    ref = reference_run(report)
    measured = {"robustness": robustness(report), "severity": severity(report, ref),
                "representation": representation(report, ref), "saliency": saliency(report, ref)}
    used = {n: configured[n] for n, (v, _) in measured.items() if v is not None and configured[n] > 0}
    total = sum(used.values())
    components = {}
    for name, (value, detail) in measured.items():
        unweighted = value is not None and configured[name] == 0
        components[name] = {"value": value, "weight": used[name] / total if name in used else 0.0,
                            "included": name in used, "formula": FORMULAS[name],
                            "detail": detail + ("; weight 0: not counted" if unweighted else "")}
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
    return {
        "value": value,
        "grade": "F" if not_scored else None if value is None else grade_of(value),
        "components": components,
        "missing": [n for n, (v, _) in measured.items() if v is None],
        "capped": capped,
        "not_scored": not_scored,
        "weights": configured,
        "reference": None if ref is None else {"attack": ref["name"], "norm": ref["norm"], "eps": ref["eps"],
                                               "eps_text": ref["eps_text"]},
    }
