"""Gates for pre-deployment checks: a flat namespace of report metrics, gate expressions on them, the verdict.

Reads only the report dict; no torch. Metric names (values are floats, or None where the report has none):

    clean.accuracy                        share of all samples classified right
    robust_accuracy[ATTACK@EPS]           per bounded attack entry, EPS as its eps_text (pgd@8/255); None for a
    success_rate[ATTACK@EPS]              minimal-perturbation attack (ATTACK@min), which measures norms instead
    median_norm[ATTACK]                   minimal-perturbation attacks: median minimal norm (inf when most samples
                                          resisted)
    score.value, score.components.NAME    the score (computed from the report when it carries none)
    semantics.two_vs_two[LAYER]           clean 2 vs 2 accuracy per semantic layer (each analysis adds its own:
                                          ``Section.gate_metrics`` in audit/analyses/NAME/report.py)
    checks.failed                         number of validity checks with status fail (when the report has checks)

A gate is ``METRIC OP NUMBER`` with OP one of >=, <=, >, <, == (== within 1e-9); a gate on a metric that is None
fails, and says why.

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
            raise AuditError(f"unknown metric {metric!r} in gate {text!r}; this report has: "
                             f"{_known_list(metric, names)}")
    elif not any(re.fullmatch(pattern, metric) for pattern in _family_patterns()):
        names = [*GRAMMAR, *(f.name for s in sections() for f in s.gate_families), "checks.failed"]
        raise AuditError(f"unknown metric {metric!r} in gate {text!r}; metrics are {', '.join(names)}")
    return Gate(text.strip(), metric, op, threshold)


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


def evaluate(report: dict, gates: list[str], fail_under: float | None = None) -> dict:
    """The ``verdict`` object: every gate with its value and outcome, and the score against ``fail_under``."""
    values = metrics(report)
    rows = []
    for text in gates:
        gate = parse_gate(text, values)
        value = values[gate.metric]
        if value is None:
            passed, detail = False, f"{gate.metric} is null: {_null_reason(report, gate.metric)}"
        else:
            passed = gate.holds(value)
            detail = f"{gate.metric} = {_fmt(value)} {gate.op} {gate.threshold:g}: {'passed' if passed else 'failed'}"
        rows.append({"expression": gate.expression, "metric": gate.metric, "op": gate.op,
                     "threshold": gate.threshold, "value": value if value is None or math.isfinite(value) else None,
                     "passed": passed, "detail": detail})
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
