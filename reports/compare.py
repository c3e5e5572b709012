"""Metric deltas between two reports (a base model version and a new one), and their terminal table.

Reads only the report dicts; no torch. Every metric of :func:`reports.gates.metrics` present in both reports is
compared. Direction and tolerance per metric family (``tolerance`` t, default 0.01):

    family                              better   regressed when
    clean.accuracy, robust_accuracy,    higher   new < base − t            (shares in [0, 1])
      score.components
    success_rate                        lower    new > base + t            (the attack's success: lower is robust)
    score.value                         higher   new < base − 100·t        (0-100 scale)
    median_norm                         higher   new < base·(1 − t)        (relative: norms have no common scale)
    checks.failed                       lower    new > base                (any newly failed check)

Each analysis's gate families say their own direction and tolerance (``GateFamily.better`` and ``tolerance``
in audit/analyses/NAME/report.py): semantics.two_vs_two is higher-is-better with the absolute tolerance.

A metric that is null in either report is listed with no delta and never counts as a regression. Infinite
median norms (most samples resisted) are compared as infinite and written as null with a note.
"""

from __future__ import annotations

import math

from rich import box
from rich.markup import escape
from rich.table import Table

from audit.analyses.registry import sections
from audit.errors import AuditError
from reports.gates import family, metrics

HIGHER, LOWER = "higher", "lower"
RULES = {  # family -> (better, how the tolerance applies); the analyses' families: rules()
    "clean.accuracy": (HIGHER, "absolute"), "robust_accuracy": (HIGHER, "absolute"),
    "score.components": (HIGHER, "absolute"),
    "success_rate": (LOWER, "absolute"), "score.value": (HIGHER, "points"),
    "median_norm": (HIGHER, "relative"), "checks.failed": (LOWER, "count"),
}


def rules() -> dict[str, tuple[str, str]]:
    """Every metric family's (better, tolerance kind): :data:`RULES` and each registered analysis's."""
    return {**RULES, **{f.family: (f.better, f.tolerance) for s in sections() for f in s.gate_families}}


def regressed(metric: str, base: float, new: float, tolerance: float) -> bool:
    """Whether ``new`` is worse than ``base`` by more than the family's tolerance (see the module docstring)."""
    better, kind = rules()[family(metric)]
    if kind == "count":
        return new > base
    if kind == "relative":
        if math.isinf(base):
            return not math.isinf(new)
        return new < base * (1 - tolerance)
    slack = 100 * tolerance if kind == "points" else tolerance
    return new < base - slack if better == HIGHER else new > base + slack


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def compare(base: dict, new: dict, tolerance: float = 0.01) -> dict:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise AuditError(f"tolerance {tolerance!r} is not a non-negative number")
    a, b = metrics(base), metrics(new)
    rows = []
    for name in (m for m in a if m in b):
        x, y = a[name], b[name]
        row = {"metric": name, "base": _finite(x), "new": _finite(y), "delta": None, "regressed": False,
               "better": rules()[family(name)][0], "note": None}
        if x is None or y is None:
            row["note"] = "null in " + " and ".join(s for s, v in (("base", x), ("new", y)) if v is None)
        else:
            row["regressed"] = regressed(name, x, y, tolerance)
            if math.isinf(x) or math.isinf(y):
                row["note"] = "∞ means most samples resisted: " + ", ".join(
                    f"{s} ∞" for s, v in (("base", x), ("new", y)) if math.isinf(v))
                row["delta"] = 0.0 if x == y else None
            else:
                row["delta"] = y - x
        rows.append(row)
    return {"rows": rows, "tolerance": float(tolerance), "regressed": any(r["regressed"] for r in rows),
            "only_base": [m for m in a if m not in b], "only_new": [m for m in b if m not in a]}


PERCENT = {"clean.accuracy", "robust_accuracy", "success_rate"}  # shown in %, deltas in percentage points
FORMATS = {"points": ".1f", "count": ".0f", "relative": ".3g", "absolute": ".2f"}


def _cell(metric: str, value: float | None, note: str | None, side: str) -> str:
    if value is None:
        return "∞" if note and f"{side} ∞" in note else "—"
    if family(metric) in PERCENT:
        return f"{100 * value:.1f}%"
    return format(value, FORMATS[rules()[family(metric)][1]])


def _delta(metric: str, delta: float | None) -> str:
    if delta is None:
        return "—"
    if family(metric) in PERCENT:
        return f"{100 * delta:+.1f} pt"
    return format(delta, "+" + FORMATS[rules()[family(metric)][1]])


def comparison_table(comparison: dict) -> Table:
    """Base, new and delta per metric; regressions marked. Metric names fold rather than being cut at 80 columns."""
    title = f"compare (tolerance {comparison['tolerance']:g})"
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric", overflow="fold", ratio=1)
    for col in ("base", "new", "Δ"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for r in comparison["rows"]:
        m = r["metric"]
        flag = "[bold red]regressed[/]" if r["regressed"] else ""
        table.add_row(escape(m), _cell(m, r["base"], r["note"], "base"), _cell(m, r["new"], r["note"], "new"),
                      _delta(m, r["delta"]), flag)
    return table
