"""Two reports compared (a base model version and a new one): per metric the delta, and for accuracies a test.

Reads only the report dicts; no torch (the tests come from audit.stats). Every metric of
:func:`reports.gates.metrics` present in both reports is a row.

Which rows are tested, and how
------------------------------
``clean.accuracy`` and every ``robust_accuracy[ATTACK@EPS]`` are proportions of the audited samples: they get a
test and an interval of the difference new − base at the confidence level of the new report
(``statistics.confidence``, else the base's, else 0.95).

paired (``test: "mcnemar"``)
    When both reports audited the same samples (``data.sample``: n, indices and fingerprint equal) and both
    carry the row's per-sample outcomes (``clean.per_sample.correct``, the entry's ``per_sample.robust``), sample
    i is one pair. b = samples robust (correct) in the base and broken in the new audit, c = the reverse; n11 and
    n00 the concordant pairs. The one-sided p that the new audit is worse is McNemar's exact test,
    ``audit.stats.mcnemar(b, c, "greater")`` (under no change the b + c discordant pairs split as
    Binomial(b + c, ½)); the p that it is better is the same test reversed (``"less"``). The difference is
    (c − b)/n with Newcombe's hybrid score interval for paired proportions
    (``audit.stats.paired_difference_interval``).
unpaired (``test: "fisher"``)
    Otherwise (other samples, or a report without per-sample outcomes, e.g. one written before schema 2.0):
    Fisher's exact test on the counts, one-sided each way (``audit.stats.fisher_worse``), and Newcombe's
    square-and-add interval for two independent proportions (``audit.stats.unpaired_difference_interval``). The
    counts are n = ``clean.n`` and k = ``clean.n_correct``, or k = round(robust_accuracy · n) for an attack
    entry (checked: k/n must give back the stored robust accuracy within 1e-9, else the row is not tested).
    The comparison says so in its ``note``: pairing the same samples is far more sensitive, because the samples
    both versions classify alike (most of them) then add no noise.

Multiplicity: Holm's step-down adjustment (``audit.stats.holm``, family-wise error) across all tested rows —
the clean accuracy and the robust-accuracy rows together, since each of them can fail the comparison — once for
the p-values of "worse" (``p_adjusted``) and once for those of "better" (``p_better_adjusted``).

Verdicts. ``alpha`` (default 0.05) is one-sided. A tested row is

- ``regressed`` when it is worse beyond the tolerance (the rule below) AND ``p_adjusted < alpha``;
- ``improved`` when it is better beyond the tolerance AND ``p_better_adjusted < alpha``;
- ``significant`` when the difference is significant in its own direction (``p_adjusted < alpha`` for a drop,
  ``p_better_adjusted < alpha`` for a rise), whether or not it exceeds the tolerance.

``score.value`` (``test: "score interval"``) has no test, but its interval (``score.interval``, the score's
bootstrap interval at the report's confidence) decides: with d = new − base and each interval's half-widths on
the relevant side, the difference's upper bound is d + sqrt((new_hi − new)² + (base − base_lo)²) (Newcombe's
square-and-add, treating the two scores as independent; scores of the same samples are positively correlated,
so this errs towards "not regressed"). The score regressed when that bound lies below −100·t, improved when the
mirror lower bound d − sqrt((new − new_lo)² + (base_hi − base)²) lies above +100·t. When only the new report has
an interval, the base's half-width counts as 0: the score regressed only when the new interval lies entirely
below the base's value minus 100·t. Without a new interval the score is not tested. Either way a regression
implies that the new score's interval lies entirely below base − 100·t.

Every other metric (success rates, median norms, score components, the analyses' figures such as
``semantics.two_vs_two``, ``checks.failed``) is ``test: "none"``: listed with its delta and whether it moved
beyond the tolerance (``beyond_tolerance``), never ``regressed``. A success rate's test is the robust accuracy of
the same attack and budget.

Tolerance per metric family (``tolerance`` t, default 0.01), the rule of ``beyond_tolerance``:

    family                              better   worse beyond the tolerance when
    clean.accuracy, robust_accuracy,    higher   new < base − t            (shares in [0, 1])
      score.components
    success_rate                        lower    new > base + t            (the attack's success: lower is robust)
    score.value                         higher   new < base − 100·t        (0-100 scale)
    median_norm                         higher   new < base·(1 − t)        (relative: norms have no common scale)
    checks.failed                       lower    new > base                (any newly failed check)

Each analysis's gate families say their own direction and tolerance (``GateFamily.better`` and ``tolerance``
in audit/analyses/NAME/report.py): semantics.two_vs_two is higher-is-better with the absolute tolerance.

A metric that is null in either report is listed with no delta and is never tested. Infinite median norms (most
samples resisted) are compared as infinite and written as null with a note.

The comparison dict: ``rows``, ``regressed`` (any row regressed: the exit code), ``improved``, ``tolerance``,
``alpha``, ``confidence``, ``paired`` (every tested row was paired), ``note`` (one line: which test, and why
not the paired one), ``only_base``, ``only_new``. Each row: ``metric``, ``base``, ``new``, ``delta``,
``better``, ``note``, ``test`` (mcnemar, fisher, score interval, none), ``b``, ``c`` (the discordant counts;
null unless paired), ``p``, ``p_better``, ``p_adjusted``, ``p_better_adjusted`` (null unless tested by
mcnemar or fisher), ``difference_ci`` ([lo, hi] of new − base, or null), ``beyond_tolerance``, ``significant``,
``regressed``, ``improved``, ``verdict`` (the word the table shows).
"""

from __future__ import annotations

import math

from rich import box
from rich.markup import escape
from rich.table import Table

from audit import stats
from audit.analyses.registry import sections
from audit.errors import AuditError
from reports.formatting import PERCENT_FAMILIES, p_text, shown_p
from reports.gates import family, metrics
from reports.schema import unpack_bits

HIGHER, LOWER = "higher", "lower"
RULES = {  # family -> (better, how the tolerance applies); the analyses' families: rules()
    "clean.accuracy": (HIGHER, "absolute"), "robust_accuracy": (HIGHER, "absolute"),
    "score.components": (HIGHER, "absolute"),
    "success_rate": (LOWER, "absolute"), "score.value": (HIGHER, "points"),
    "median_norm": (HIGHER, "relative"), "checks.failed": (LOWER, "count"),
}
TESTED = ("clean.accuracy", "robust_accuracy")  # the proportions of the audited samples
MCNEMAR, FISHER, SCORE_INTERVAL, UNTESTED = "mcnemar", "fisher", "score interval", "none"
HOLM = "p Holm-adjusted across the tested rows"


def rules() -> dict[str, tuple[str, str]]:
    """Every metric family's (better, tolerance kind): :data:`RULES` and each registered analysis's."""
    return {**RULES, **{f.family: (f.better, f.tolerance) for s in sections() for f in s.gate_families}}


def beyond_tolerance(metric: str, base: float, new: float, tolerance: float) -> bool:
    """Whether ``new`` is worse than ``base`` by more than the family's tolerance (see the module docstring).
    With the arguments swapped (``beyond_tolerance(m, new, base, t)``): better by more than the tolerance."""
    better, kind = rules()[family(metric)]
    if kind == "count":
        return new > base if better == LOWER else new < base
    if kind == "relative":
        if math.isinf(base):
            return not math.isinf(new)
        return new < base * (1 - tolerance)
    slack = 100 * tolerance if kind == "points" else tolerance
    return new < base - slack if better == HIGHER else new > base + slack


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _level(value, flag: str) -> float:
    try:
        return stats.check_level(value, flag)
    except ValueError as exc:
        raise AuditError(str(exc)) from None


def _confidence(base: dict, new: dict) -> float:
    for r in (new, base):
        level = (r.get("statistics") or {}).get("confidence")
        if level is not None:
            return _level(level, "the report's statistics.confidence")
    return stats.DEFAULT_CONFIDENCE


def _sample(report: dict) -> dict | None:
    sample = (report.get("data") or {}).get("sample")
    return sample if isinstance(sample, dict) else None


def same_samples(base: dict, new: dict) -> tuple[bool, str | None]:
    """Whether the two reports audited the same samples (``data.sample``: n, indices and fingerprint equal);
    when not, why (a phrase)."""
    a, b = _sample(base), _sample(new)
    missing = [role for role, s in (("base", a), ("new", b)) if s is None]
    if missing:
        return False, f"the {' and the '.join(missing)} report{'s' if len(missing) > 1 else ''} do" \
                      f"{'' if len(missing) > 1 else 'es'} not record which samples were audited"
    differ = [key for key in ("n", "indices", "fingerprint") if a.get(key) != b.get(key)]
    if differ:
        if "n" in differ:
            return False, f"the reports audited different samples ({a.get('n')} vs {b.get('n')} images)"
        return False, f"the reports audited different samples (other {' and '.join(differ)})"
    if a.get("n") is None or a.get("fingerprint") is None:
        return False, "the reports do not identify their samples (no n or fingerprint)"
    return True, None


def _entries(report: dict) -> dict[str, dict]:
    """Attack entries by their metric key ``NAME@EPS`` (the first of duplicates, as :func:`metrics` reads)."""
    out: dict[str, dict] = {}
    for e in report.get("attacks") or []:
        out.setdefault(f"{e['name']}@{e['eps_text'] or 'min'}", e)
    return out


def _key(metric: str) -> str:
    return metric[metric.index("[") + 1:-1]


def _outcomes(report: dict, metric: str, n: int, role: str) -> list[bool] | None:
    """The per-sample outcomes behind an accuracy row (correct / still robust), or None when not stored."""
    if metric == "clean.accuracy":
        block, field = report.get("clean") or {}, "correct"
    else:
        block, field = _entries(report).get(_key(metric)) or {}, "robust"
    bits = (block.get("per_sample") or {}).get(field)
    if bits is None:
        return None
    try:
        return unpack_bits(bits, n)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"the {role} report's per-sample outcomes of {metric} are unreadable: {exc}") from None


def _counts(report: dict, metric: str) -> tuple[int, int] | None:
    """(k, n) behind an accuracy row for the unpaired test; None when the report does not give them."""
    clean = report.get("clean") or {}
    n = clean.get("n")
    if not isinstance(n, int) or n <= 0:
        return None
    if metric == "clean.accuracy":
        k = clean.get("n_correct")
        return (k, n) if isinstance(k, int) and 0 <= k <= n else None
    value = (_entries(report).get(_key(metric)) or {}).get("robust_accuracy")
    if value is None:
        return None
    k = round(value * n)
    return (k, n) if abs(k / n - value) <= 1e-9 else None


def _paired(x: list[bool], y: list[bool], confidence: float) -> dict:
    n11 = sum(a and b for a, b in zip(x, y, strict=True))
    n10 = sum(a and not b for a, b in zip(x, y, strict=True))  # b: robust in the base, broken in the new audit
    n01 = sum(b and not a for a, b in zip(x, y, strict=True))  # c: the reverse
    n00 = len(x) - n11 - n10 - n01
    return {"test": MCNEMAR, "b": n10, "c": n01, "p": stats.mcnemar(n10, n01, "greater"),
            "p_better": stats.mcnemar(n10, n01, "less"),
            "difference_ci": stats.paired_difference_interval(n11, n10, n01, n00, confidence)}


def _unpaired(k1: int, n1: int, k2: int, n2: int, confidence: float) -> dict:
    return {"test": FISHER, "b": None, "c": None, "p": stats.fisher_worse(k1, n1, k2, n2),
            "p_better": stats.fisher_worse(k2, n2, k1, n1),
            "difference_ci": stats.unpaired_difference_interval(k1, n1, k2, n2, confidence)}


def _score_interval(base: dict, new: dict, x: float, y: float, tolerance: float) -> dict | None:
    """The score rule of the module docstring: the difference's interval from the two scores' intervals."""
    lo_new, hi_new = ((new.get("score") or {}).get("interval") or [None, None])
    if lo_new is None or hi_new is None:
        return None
    lo_base, hi_base = ((base.get("score") or {}).get("interval") or [x, x])
    lo_base, hi_base = x if lo_base is None else lo_base, x if hi_base is None else hi_base
    d = y - x
    ci = [d - math.hypot(y - lo_new, hi_base - x), d + math.hypot(hi_new - y, x - lo_base)]
    slack = 100 * tolerance
    return {"test": SCORE_INTERVAL, "difference_ci": ci, "worse": ci[1] < -slack, "better": ci[0] > slack}


def _blank(name: str, x: float | None, y: float | None) -> dict:
    return {"metric": name, "base": _finite(x), "new": _finite(y), "delta": None, "better": rules()[family(name)][0],
            "note": None, "test": UNTESTED, "b": None, "c": None, "p": None, "p_better": None, "p_adjusted": None,
            "p_better_adjusted": None, "difference_ci": None, "beyond_tolerance": False, "significant": False,
            "regressed": False, "improved": False, "verdict": ""}


def compare(base: dict, new: dict, tolerance: float = 0.01, alpha: float = stats.DEFAULT_ALPHA) -> dict:
    """The comparison dict of the module docstring. A bad tolerance or alpha: :class:`AuditError`."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise AuditError(f"tolerance {tolerance!r} is not a non-negative number")
    alpha = _level(alpha, "--alpha")
    confidence = _confidence(base, new)
    same, why = same_samples(base, new)
    n = _sample(base)["n"] if same else 0
    a, b = metrics(base), metrics(new)
    rows, unpaired = [], []
    for name in (m for m in a if m in b):
        x, y = a[name], b[name]
        row = _blank(name, x, y)
        rows.append(row)
        if x is None or y is None:
            row["note"] = "null in " + " and ".join(s for s, v in (("base", x), ("new", y)) if v is None)
            row["verdict"] = "null"
            continue
        row["beyond_tolerance"] = beyond_tolerance(name, x, y, tolerance)
        better_beyond = beyond_tolerance(name, y, x, tolerance)
        if math.isinf(x) or math.isinf(y):
            row["note"] = "∞ means most samples resisted: " + ", ".join(
                f"{s} ∞" for s, v in (("base", x), ("new", y)) if math.isinf(v))
            row["delta"] = 0.0 if x == y else None
        else:
            row["delta"] = y - x
        if family(name) in TESTED:
            pair = (_outcomes(base, name, n, "base"), _outcomes(new, name, n, "new")) if same else (None, None)
            if None not in pair:
                row.update(_paired(*pair, confidence))
            else:
                counts = _counts(base, name), _counts(new, name)
                if None not in counts:
                    row.update(_unpaired(*counts[0], *counts[1], confidence))
                    unpaired.append(name)
                else:
                    row["note"] = "not tested: the report does not give the counts behind the proportion"
        elif name == "score.value" and row["delta"] is not None:
            decided = _score_interval(base, new, x, y, tolerance)
            if decided is not None:
                row.update(test=SCORE_INTERVAL, difference_ci=decided["difference_ci"])
                row["significant"] = decided["worse"] or decided["better"]
                row["regressed"] = decided["worse"] and row["beyond_tolerance"]
                row["improved"] = decided["better"] and better_beyond
        row["_better_beyond"] = better_beyond
    tested = [r for r in rows if r["test"] in (MCNEMAR, FISHER)]
    for key in ("p", "p_better"):
        for r, q in zip(tested, stats.holm([r[key] for r in tested]), strict=True):
            r[f"{key}_adjusted"] = float(q)
    for r in rows:
        better_beyond = r.pop("_better_beyond", False)
        if r["test"] in (MCNEMAR, FISHER):
            worse, better = r["p_adjusted"] < alpha, r["p_better_adjusted"] < alpha
            r["significant"] = worse or better
            r["regressed"] = worse and r["beyond_tolerance"]
            r["improved"] = better and better_beyond
        if r["verdict"] != "null":
            r["verdict"] = _verdict(r)
    return {"rows": rows, "tolerance": float(tolerance), "alpha": alpha, "confidence": confidence,
            "regressed": any(r["regressed"] for r in rows), "improved": any(r["improved"] for r in rows),
            "paired": bool(tested) and not unpaired, "note": _note(why, n, unpaired, tested),
            "only_base": [m for m in a if m not in b], "only_new": [m for m in b if m not in a]}


def _verdict(row: dict) -> str:
    """The row's word: a direction only where the test (or the score's interval) says it is significant."""
    if row["test"] == UNTESTED:
        return "not tested"
    if row["test"] == MCNEMAR and row["b"] == row["c"] == 0:
        return "identical"
    if row["regressed"]:
        return "regressed"
    if row["improved"]:
        return "improved"
    if row["significant"]:
        return "worse ≤tol" if row["delta"] < 0 else "better ≤tol"
    return "inconclusive"


def _note(why: str | None, n: int, unpaired: list[str], tested: list[dict]) -> str:
    if not tested:
        return "no accuracy row to test: the reports share no clean or robust accuracy with counts"
    if not unpaired:
        return (f"paired: both reports audited the same {n} samples; McNemar's exact test per row, "
                f"{HOLM}")
    reason = why or ("no per-sample outcomes for " + ", ".join(unpaired[:3])
                     + (" …" if len(unpaired) > 3 else "") + " (a report written before schema 2.0?)")
    return (f"unpaired: {reason}; Fisher's exact test on the counts, {HOLM}. Pairing the same samples would be "
            "far more sensitive")


FORMATS = {"points": ".1f", "count": ".0f", "relative": ".3g", "absolute": ".2f"}


def _cell(metric: str, value: float | None, note: str | None, side: str) -> str:
    if value is None:
        return "∞" if note and f"{side} ∞" in note else "—"
    if family(metric) in PERCENT_FAMILIES:
        return f"{100 * value:.1f}%"
    return format(value, FORMATS[rules()[family(metric)][1]])


def _scale(metric: str) -> tuple[float, str]:
    if family(metric) in PERCENT_FAMILIES:
        return 100.0, ".1f"
    return 1.0, FORMATS[rules()[family(metric)][1]]


def _delta(metric: str, delta: float | None) -> str:
    if delta is None:
        return "—"
    factor, fmt = _scale(metric)
    return format(factor * delta, "+" + fmt)


def _interval(metric: str, ci: list | None) -> str:
    if not ci:
        return ""
    factor, fmt = _scale(metric)
    return f"[{format(factor * ci[0], fmt)},{format(factor * ci[1], fmt)}]"


def comparison_table(comparison: dict) -> Table:
    """Base, new, Δ over its interval, the Holm-adjusted p of the direction moved over b/c, the verdict. Shares in
    % and their differences in percentage points. Metric names fold rather than being cut at 80 columns."""
    level = round(100 * comparison.get("confidence", stats.DEFAULT_CONFIDENCE), 6)
    title = (f"compare: tolerance {comparison['tolerance']:g}, one-sided alpha {comparison.get('alpha', 0.05):g}, "
             f"{HOLM}, Δ over its {level:g}% interval")
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric", overflow="fold", min_width=12)
    for col in ("base", "new", "Δ", "p\nb/c"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    colours = {"regressed": "bold red", "improved": "bold green"}
    for r in comparison["rows"]:
        m = r["metric"]
        verdict = r.get("verdict", "regressed" if r.get("regressed") else "")
        flag = f"[{colours[verdict]}]{verdict}[/]" if verdict in colours else escape(verdict)
        pair = f"{r['b']}/{r['c']}" if r.get("b") is not None else ""
        delta = "\n".join(filter(None, (_delta(m, r["delta"]), _interval(m, r.get("difference_ci")))))
        test = "\n".join(filter(None, (p_text(shown_p(r)), pair)))
        table.add_row(escape(m), _cell(m, r["base"], r["note"], "base"), _cell(m, r["new"], r["note"], "new"),
                      delta, test, flag)
    return table
