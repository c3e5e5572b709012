"""Gates for pre-deployment checks: a flat namespace of report metrics, gate expressions on them, the verdict.

Reads only the report dict; no torch. Metric names (values are floats, or None where the report has none):

    clean.accuracy                        share of all samples classified right
    robust_accuracy[ATTACK@EPS]           per bounded attack entry, EPS as its eps_text (pgd@8/255); None for a
    success_rate[ATTACK@EPS]              minimal-perturbation attack (ATTACK@min), which measures norms instead
    median_norm[ATTACK]                   minimal-perturbation attacks: median minimal norm (inf when most samples
                                          resisted)
    score.value, score.components.NAME    the score (computed from the report when it carries none)
    semantics.two_vs_two[LAYER]           clean 2 vs 2 accuracy per semantic layer, against the section's main
                                          space (word vectors when chosen; each analysis adds its own:
                                          ``Section.gate_metrics`` in audit/analyses/NAME/report.py)
    semantics.wordnet.two_vs_two[LAYER]   the same against WordNet (Wu-Palmer), when the audit measured it
    checks.failed                         number of validity checks with status fail (when the report has checks)

Bounds (:func:`bounds`): a metric with an interval in the report has ``.lower`` and ``.upper`` names, the ends of
that interval (at the audit's ``--confidence``; None where the interval is null):

    clean.accuracy.lower                  clean.accuracy_ci
    robust_accuracy[ATTACK@EPS].lower     the entry's robust_accuracy_ci
    success_rate[ATTACK@EPS].lower        the entry's success_rate_ci
    median_norm[ATTACK].lower             the entry's minimal_perturbation.median_ci
    score.value.lower, score.lower        score.interval (``score.lower`` is the same bound, as a short name)

and ``.upper`` likewise. A bound name exists when the report carries the interval's field (a report written
before schema 2.0 has none); a bound of a metric without an interval, or a suffix other than ``.lower`` and
``.upper`` (``.middle``), is an AuditError (exit 2).

A gate is ``METRIC OP NUMBER`` with OP one of >=, <=, >, <, == (== within 1e-9); a gate on a metric that is None
fails, and says why.

Undecided gates: a gate on a point value whose metric has an interval [lo, hi] is *undecided at this sample size*
when its outcome would flip inside the interval: the gate's outcomes at lo, at hi, at the value and (when it lies
inside) at the threshold are not all the same. It still passes or fails by the point value; its row says
``undecided: true`` and ``images_to_resolve``: for a proportion ``audit.stats.images_to_resolve`` (about how many
images of the proportion's denominator, measured at the same value, put the interval clear of the threshold:
z² p(1 − p) / (p − t)²; for a success rate the denominator is the attacked, clean-correct images); for the score
and median norms, whose half-width shrinks as 1/√n, n · (half-width / |value − t|)² with n the audited images and
the half-width that of the interval's side facing the threshold. Null when the value equals the threshold. Gates
on bounds are never undecided: the bound is the decision.

The verdict's ``passed`` is about the gates alone (it decides the exit code); its ``summary`` is the one line
every renderer shows, naming the gates' outcome, the grade and the failed validity checks together, so a report
with no gates never reads as "passed" while a check failed or the grade is F.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from audit.analyses.registry import sections
from audit.errors import AuditError
from reports.score import score_report

OPS = {
    ">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t,
    "==": lambda v, t: math.isclose(v, t, rel_tol=1e-9, abs_tol=1e-9),
}
GATE = re.compile(r"^\s*(?P<metric>\S.*?)\s*(?P<op>>=|<=|==|>|<)\s*(?P<number>[^<>=]*?)\s*$")
# the metric families of every report, for a syntax check before the report exists (the analyses add theirs)
FAMILIES = (r"clean\.accuracy", r"score\.value", r"checks\.failed", r"score\.components\.\w+",
            r"(robust_accuracy|success_rate|median_norm)\[.+\]")
# the families with an interval, whose names take .lower and .upper; score.lower is score.value.lower
BOUNDED = (r"clean\.accuracy", r"score\.value", r"score", r"(robust_accuracy|success_rate|median_norm)\[.+\]")
BOUND_SUFFIX = re.compile(r"^(?P<metric>.+?)\.(?P<bound>[A-Za-z_]\w*)$")
BOUNDS = ("lower", "upper")
GRAMMAR = ("clean.accuracy", "robust_accuracy[ATTACK@EPS]", "success_rate[ATTACK@EPS]", "median_norm[ATTACK]",
           "score.value", "score.components.NAME")  # as the error line lists them; then the analyses', checks.failed
SHOWN = 8  # metric names listed in an error before "…"


@dataclass(frozen=True)
class Gate:
    expression: str
    metric: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


def family(metric: str) -> str:
    """``robust_accuracy[pgd@0.1]`` -> ``robust_accuracy``; ``score.components.severity`` -> ``score.components``."""
    head = metric.split("[", 1)[0]
    return "score.components" if head.startswith("score.components.") else head


def metrics(report: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {"clean.accuracy": report["clean"]["accuracy"]}
    for e in report["attacks"]:
        key = f"{e['name']}@{e['eps_text'] or 'min'}"
        out.setdefault(f"robust_accuracy[{key}]", e.get("robust_accuracy"))
        out.setdefault(f"success_rate[{key}]", e.get("success_rate"))
    for e in report["attacks"]:
        block = e.get("minimal_perturbation")
        if block:
            median = block.get("median")
            out.setdefault(f"median_norm[{e['name']}]", math.inf if median is None and block.get("n") else median)
    score = report.get("score") or score_report(report)
    out["score.value"] = score["value"]
    for name, comp in score["components"].items():
        out[f"score.components.{name}"] = comp["value"]
    for section in sections():
        if section.gate_metrics is not None:
            out.update(section.gate_metrics(report))
    if report.get("checks") is not None:
        out["checks.failed"] = float(sum(c["status"] == "fail" for c in report["checks"]))
    return out


def intervals(report: dict) -> dict[str, list[float] | None]:
    """Each point metric whose interval field the report carries -> that interval [lo, hi] (None when null or
    when an end is missing), from the same entries :func:`metrics` reads."""
    out: dict[str, list[float] | None] = {}

    def put(name: str, ci) -> None:
        ok = isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci)
        out.setdefault(name, [float(ci[0]), float(ci[1])] if ok else None)

    clean = report.get("clean") or {}
    if "accuracy_ci" in clean:
        put("clean.accuracy", clean["accuracy_ci"])
    for e in report.get("attacks") or []:
        key = f"{e['name']}@{e['eps_text'] or 'min'}"
        for metric, field in (("robust_accuracy", "robust_accuracy_ci"), ("success_rate", "success_rate_ci")):
            if field in e:
                put(f"{metric}[{key}]", e[field])
            else:
                out.setdefault(f"{metric}[{key}]", _ABSENT)  # the first entry of a key decides, as in metrics()
        block = e.get("minimal_perturbation")
        if block:
            if "median_ci" in block:
                put(f"median_norm[{e['name']}]", block["median_ci"])
            else:
                out.setdefault(f"median_norm[{e['name']}]", _ABSENT)
    score = report.get("score") or score_report(report)
    if "interval" in score:
        put("score.value", score["interval"])
    return {k: v for k, v in out.items() if v is not _ABSENT}


_ABSENT = object()


def bounds(report: dict, found: dict | None = None) -> dict[str, float | None]:
    """``METRIC.lower`` and ``METRIC.upper`` for every interval of :func:`intervals` (``found``, when already
    read), and ``score.lower`` / ``score.upper`` for the score's."""
    out: dict[str, float | None] = {}
    for name, ci in (intervals(report) if found is None else found).items():
        for i, bound in enumerate(BOUNDS):
            out[f"{name}.{bound}"] = None if ci is None else ci[i]
            if name == "score.value":
                out[f"score.{bound}"] = out[f"score.value.{bound}"]
    return out


def _known_list(metric: str, known: list[str]) -> str:
    close = difflib.get_close_matches(metric, known, n=SHOWN, cutoff=0.5)
    ordered = close + [k for k in known if k not in close]
    shown = ordered[:SHOWN]
    rest = len(ordered) - len(shown)
    return ", ".join(shown) + (f", … and {rest} more" if rest else "")


def parse_gate(text: str, known: list[str] | dict | None = None) -> Gate:
    """Parse ``METRIC OP NUMBER``. With ``known`` (metric names, or the dict of :func:`metrics`), the metric
    must be one of them; without it, it must belong to a metric family. Malformed: :class:`AuditError`."""
    m = GATE.match(text or "")
    if not m:
        raise AuditError(f"malformed gate {text!r}: expected METRIC OP NUMBER with OP one of >=, <=, >, <, == "
                         "(e.g. \"robust_accuracy[pgd@8/255]>=0.40\")")
    metric, op, number = m["metric"], m["op"], m["number"]
    try:
        threshold = float(number)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise AuditError(f"malformed gate {text!r}: {number!r} is not a finite number")
    if known is not None:
        names = list(known)
        if metric not in names:
            _bound_error(text, metric, lambda base: base in names or base == "score" and "score.value" in names,
                         "in this report")
            raise AuditError(f"unknown metric {metric!r} in gate {text!r}; this report has: "
                             f"{_known_list(metric, names)}")
    elif not any(re.fullmatch(pattern, metric) for pattern in _family_patterns()):
        bounded = _bound_error(text, metric, lambda base: base == "score" or any(
            re.fullmatch(pattern, base) for pattern in _family_patterns()), "")
        if not bounded:
            names = [*GRAMMAR, *(f.name for s in sections() for f in s.gate_families), "checks.failed"]
            raise AuditError(f"unknown metric {metric!r} in gate {text!r}; metrics are {', '.join(names)}")
    return Gate(text.strip(), metric, op, threshold)


def _bound_error(text: str, metric: str, exists, where: str) -> bool:
    """For a gate name ``BASE.SUFFIX`` whose BASE is a metric (``exists(BASE)``): an unknown suffix, or a bound
    of a metric without an interval, is an AuditError; True when it is a valid bound name (the syntax check before
    the report exists), False when the name is no bound at all."""
    m = BOUND_SUFFIX.match(metric)
    if not m or not exists(m["metric"]):
        return False
    base, bound = m["metric"], m["bound"]
    if bound not in BOUNDS:
        raise AuditError(f"unknown bound .{bound} in gate {text!r}: a bound is .lower or .upper (e.g. "
                         "\"robust_accuracy[pgd@8/255].lower>=0.40\")")
    if where or not any(re.fullmatch(pattern, base) for pattern in BOUNDED):
        raise AuditError(f"{base} has no interval{' ' + where if where else ''}, so no .{bound} bound (gate "
                         f"{text!r}); bounds exist for {', '.join(BOUND_GRAMMAR)}"
                         + (" in reports of schema 2.0 or later" if where else ""))
    return True


BOUND_GRAMMAR = ("clean.accuracy", "robust_accuracy[ATTACK@EPS]", "success_rate[ATTACK@EPS]",
                 "median_norm[ATTACK]", "score.value (or score)")


def _family_patterns() -> list[str]:
    """The metric families as regular expressions: the fixed ones and each analysis's (a ``[...]`` part of its
    name stands for any text)."""
    out = list(FAMILIES)
    for section in sections():
        for f in section.gate_families:
            head, bracket, _ = f.name.partition("[")
            out.append(re.escape(head) + (r"\[.+\]" if bracket else ""))
    return out


def _null_reason(report: dict, metric: str) -> str:
    m = BOUND_SUFFIX.match(metric)
    if m and m["bound"] in BOUNDS and not metric.startswith("score.components."):
        base = "score.value" if m["metric"] == "score" else m["metric"]
        values = metrics(report)
        if base in values and values[base] is not None:
            return f"the report has no interval for {base} (too few images for one)"
        metric = base
    if family(metric) in ("robust_accuracy", "success_rate") and metric.endswith("@min]"):
        name = metric[metric.index("[") + 1:-len("@min]")]
        return (f"{name} is a minimal-perturbation attack: it measures norms, not robust accuracy "
                f"(gate on median_norm[{name}])")
    if metric == "score.value" and (report.get("score") or {}).get("not_scored"):
        return report["score"]["not_scored"]
    if family(metric) == "score.components":
        comp = (report.get("score") or score_report(report))["components"][metric.rsplit(".", 1)[1]]
        return f"the component is missing: {comp['detail']}"
    return "the report has no value for it"


def _fmt(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.6g}"


PROPORTIONS = {"clean.accuracy": "images", "robust_accuracy": "images", "success_rate": "attacked images"}


def _confidence(report: dict) -> float:
    from audit import stats  # here, not at the top: the renderers import this module and no numpy or scipy

    level = (report.get("statistics") or {}).get("confidence")
    try:
        return stats.check_level(level) if level is not None else stats.DEFAULT_CONFIDENCE
    except ValueError:
        return stats.DEFAULT_CONFIDENCE


def undecided(gate: Gate, value: float, ci: list[float] | None) -> bool:
    """Whether the gate's outcome would flip inside the interval (see the module docstring)."""
    if ci is None or not all(math.isfinite(v) for v in (value, *ci)):
        return False
    lo, hi = ci
    outcomes = {gate.holds(lo), gate.holds(hi), gate.holds(value)}
    if lo <= gate.threshold <= hi:
        outcomes.add(gate.holds(gate.threshold))
    return len(outcomes) > 1


def images_needed(report: dict, metric: str, value: float, threshold: float, ci: list[float]) -> int | None:
    """About how many images would put the interval clear of the threshold (the module docstring's rule)."""
    if family(metric) in PROPORTIONS:
        from audit.stats import images_to_resolve as needed

        return needed(value, threshold, _confidence(report))
    gap = abs(value - threshold)
    half = ci[1] - value if threshold > value else value - ci[0]
    if metric == "score.value":
        n = (report.get("clean") or {}).get("n")
    else:
        name = metric[metric.index("[") + 1:-1]
        block = next((e.get("minimal_perturbation") for e in report.get("attacks") or []
                      if e["name"] == name and e.get("minimal_perturbation")), None) or {}
        n = block.get("n")
    if not gap or not n:
        return None
    return int(math.ceil(n * (half / gap) ** 2))


def evaluate(report: dict, gates: list[str], fail_under: float | None = None) -> dict:
    """The ``verdict`` object: every gate with its value and outcome (and whether the interval leaves it
    undecided), and the score against ``fail_under``."""
    values = metrics(report)
    found = intervals(report)
    names = {**values, **bounds(report, found)}
    level = round(100 * _confidence(report), 6)
    rows = []
    for text in gates:
        gate = parse_gate(text, names)
        metric = gate.metric
        value = names[metric]
        ci = found.get(metric)
        flips, needed = False, None
        if value is None:
            passed, detail = False, f"{metric} is null: {_null_reason(report, metric)}"
        else:
            passed = gate.holds(value)
            detail = f"{metric} = {_fmt(value)} {gate.op} {gate.threshold:g}: {'passed' if passed else 'failed'}"
            flips = undecided(gate, value, ci)
            if flips:
                needed = images_needed(report, metric, value, gate.threshold, ci)
                unit = PROPORTIONS.get(family(metric), "attacked images" if metric.startswith("median_norm[")
                                       else "images")
                detail += (f"; undecided at this sample size ({level:g}% interval [{_fmt(ci[0])}, {_fmt(ci[1])}])"
                           + (f": about {needed} {unit} would resolve it" if needed else ""))
        rows.append({"expression": gate.expression, "metric": metric, "op": gate.op,
                     "threshold": gate.threshold, "value": value if value is None or math.isfinite(value) else None,
                     "passed": passed, "undecided": flips, "images_to_resolve": needed, "detail": detail})
    score_passed = None
    if fail_under is not None:
        if isinstance(fail_under, bool) or not isinstance(fail_under, int | float) or not math.isfinite(fail_under):
            raise AuditError(f"--fail-under {fail_under!r} is not a finite number")
        score_passed = values["score.value"] is not None and values["score.value"] >= fail_under
    verdict = {"passed": all(r["passed"] for r in rows) and score_passed is not False,
               "fail_under": None if fail_under is None else float(fail_under),
               "score_passed": score_passed, "gates": rows, "gated": bool(rows) or fail_under is not None,
               "failed_checks": [c["name"] for c in report.get("checks") or [] if c.get("status") == "fail"]}
    verdict["summary"] = verdict_summary({**report, "verdict": verdict})
    return verdict


def verdict_summary(report: dict) -> str:
    """One line on the gates' outcome, the grade and the failed validity checks (for reports without a stored
    summary too): what the JSON verdict, the terminal, the HTML summary card and the JUnit file all say."""
    verdict, score = report.get("verdict") or {}, report.get("score") or {}
    gates = verdict.get("gates") or []
    gated = is_gated(verdict)
    failed = verdict.get("failed_checks")
    if failed is None:
        failed = [c["name"] for c in report.get("checks") or [] if c.get("status") == "fail"]
    if not gated:
        head = "no gates set (the exit code does not depend on the result)"
    elif verdict.get("passed"):
        head = f"PASSED: {_count(len(gates) + (verdict.get('fail_under') is not None), 'gate')} held"
    else:
        missed = [g["expression"] for g in gates if not g.get("passed")]
        if verdict.get("score_passed") is False:
            missed.insert(0, f"score >= {verdict['fail_under']:g}")
        head = f"FAILED: {', '.join(missed) or 'the verdict failed'}"
    parts = [head]
    unsure = [g["expression"] for g in gates if g.get("undecided")]
    if unsure:
        parts.append(f"{_count(len(unsure), 'gate')} undecided at this sample size ({', '.join(unsure)})")
    if score.get("not_scored"):
        parts.append("not scored, grade F (clean accuracy near or below chance)")
    elif score.get("grade"):
        parts.append(f"grade {score['grade']}")
    if failed:
        parts.append(f"{_count(len(failed), 'validity check')} failed ({', '.join(failed)})")
    return "; ".join(parts)


def is_gated(verdict: dict) -> bool:
    """Whether the audit set gates (or --fail-under); read from the gates themselves for reports that predate
    the stored ``gated`` flag."""
    return verdict.get("gated", bool(verdict.get("gates")) or verdict.get("fail_under") is not None)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
