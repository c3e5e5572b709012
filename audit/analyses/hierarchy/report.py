"""The severity of mistakes in the class hierarchy in the report: terminal lines and the HTML panel.

Reads only report.json's ``analyses.hierarchy`` section (plain data); imports neither torch nor numpy: every
interval and p-value was computed at audit time (audit/analyses/hierarchy/analysis.py and coarse.py document them).
A sentence says the attack's mistakes are milder or worse than chance only when the section's Wilcoxon test is
significant at its alpha (the section's ``verdict``); otherwise it says "inconclusive at n = ...". Likewise accuracy
"differs across superclasses" (naming the lowest and highest) only when the section's ``superclass_test`` is
significant. The superclass table: terminal lines for the superclasses with samples (at most ``SHOWN``) at the
reference run (``reports.schema.reference_entry``), the HTML table every superclass with each attack at its
largest budget.

No score component and no gate metric of its own: the score's severity component (the semantic window's,
audit/analyses/semantics/report.py) reads this section's reference run when it has one.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from rich.markup import escape

from audit.analyses.registry import Section
from reports.formatting import fixed_interval, pct, pct_with
from reports.html.analysis_panels import label, largest_per_attack
from reports.html.charts import hbar_chart
from reports.schema import is_reference, reference_entry

KEY = "hierarchy"
WIDTH = 80  # terminal lines stay within this many columns


def _say(console, text: str, indent: str = "", style: str = "") -> None:
    for line in textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                              break_on_hyphens=False):
        console.print(f"[{style}]{escape(line)}[/]" if style else escape(line), soft_wrap=True)


def _mean(entry: dict) -> str:
    if entry.get("mean") is None:
        return "—"
    ci = fixed_interval(entry.get("mean_ci"))
    return f"{entry['mean']:.2f}{' ' + ci if ci else ''}"


def _difference(entry: dict) -> str:
    if entry.get("difference") is None:
        return "—"
    ci = fixed_interval(entry.get("difference_ci"))
    return f"{entry['difference']:+.2f}{' ' + ci if ci else ''}"


def _p(entry: dict) -> str:
    p = entry.get("p_value")
    return "—" if p is None else f"{p:.2g}"


def _same(entry: dict) -> str:
    same = entry.get("same_superclass")
    if not same:
        return "—"
    return f"{pct_with(same['share'], same.get('ci'))} of {same['n']} (chance {pct(same['chance'])})"


def _topk(entry: dict, k: int) -> str:
    top = next((t for t in entry.get("topk") or [] if t["k"] == k), None)
    if not top or top.get("mean") is None:
        return "—"
    ci = fixed_interval(top.get("ci"))
    return f"{top['mean']:.2f}{' ' + ci if ci else ''}"


def _rows(sec: dict, largest: bool = False) -> list[tuple[str, dict]]:
    """Clean, then every attack run (``largest``: each attack at its largest budget only)."""
    runs = sec.get("adversarial") or []
    return [("clean", sec["clean"]), *((label(r), r) for r in (largest_per_attack(runs) if largest else runs))]


def _listed(unmapped: dict, shown: int = 8) -> str:
    """The unmapped classes, the first ``shown`` by name, then how many more."""
    names = list(unmapped)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _level(sec: dict) -> str:
    return f"{100 * sec.get('confidence', 0.95):g}%"


CLASSES_SHOWN = 12  # classes the HTML names per superclass; a larger one shows these and its count
SHOWN = 8  # superclasses the terminal lists (those with samples, in the section's order); the HTML has them all


def _accuracy(row: dict) -> str:
    return pct_with(row.get("accuracy"), row.get("accuracy_ci"))


def _inside(row: dict) -> str:
    m = row.get("mistakes")
    if not m or not m["n"] or not m.get("chance"):  # no mistakes, or a superclass of one class: none can stay inside
        return "—"
    return f"{pct_with(m['share'], m.get('ci'))} of {m['n']} (chance {pct(m['chance'])})"


def _across(entry: dict) -> str:
    """The test across superclasses: its verdict, p, and the lowest and highest superclass when it is significant."""
    test = entry.get("superclass_test") or {}
    if test.get("p_value") is None:
        return test.get("verdict", "—")
    text = f"{test['verdict']} (p {test['p_value']:.2g})"
    if test.get("lowest"):
        rows = {r["name"]: r for r in entry["by_superclass"]}
        text += (f": lowest {test['lowest']} {pct(rows[test['lowest']]['accuracy'])}, highest {test['highest']} "
                 f"{pct(rows[test['highest']]['accuracy'])}")
    return text


def _superclass_lines(console, sec: dict, ref: dict | None) -> None:
    """The level, then per superclass with samples its accuracy, the reference run's robust accuracy and the
    share of its mistakes staying inside; then the test across superclasses, clean and at the reference run (the
    HTML table has each attack at its largest budget)."""
    level = sec.get("superclass_level") or {}
    _say(console, f"superclasses: {level.get('rule', '')}", indent="  ")
    runs = [r for r in sec.get("adversarial") or [] if is_reference(r, ref)]
    sizes = {g["name"]: len(g["classes"]) for g in sec.get("superclasses") or []}
    clean = [r for r in sec["clean"].get("by_superclass") or [] if r["n"]]
    for row in clean[:SHOWN]:
        size = sizes.get(row["name"], 0)
        parts = [f"{row['name']} ({size} class{'' if size == 1 else 'es'}, n {row['n']}): accuracy {_accuracy(row)}"]
        for run in runs:
            mine = next(r for r in run["by_superclass"] if r["name"] == row["name"])
            what = "robust" if run.get("accuracy_of", "robust accuracy") == "robust accuracy" else "failure rate"
            inside = _inside(mine)
            parts.append(f"{label(run)} {what} {_accuracy(mine)}"
                         + ("" if inside == "—" else f", inside {inside}"))
        _say(console, "; ".join(parts), indent="    ")
    if len(clean) > SHOWN:
        _say(console, f"and {len(clean) - SHOWN} more superclasses with samples (the HTML report lists them)",
             indent="    ")
    tests = [f"clean {_across(sec['clean'])}", *(f"{label(r)} {_across(r)}" for r in runs)]
    _say(console, "accuracy across superclasses: " + "; ".join(tests), indent="  ")


# --- the terminal summary -----------------------------------------------------------------------------------

def terminal(result, console) -> None:
    """A few lines: the tree, then per measurement (clean, each run) the mistakes' mean LCA height against the
    random baseline and the verdict, and the share staying inside the true superclass; each attack at its largest
    budget (the HTML table has every budget)."""
    sec = result.analyses[KEY]
    if "skipped" in sec:
        _say(console, f"Mistake severity in the class hierarchy: off ({sec['skipped']})", style="dim")
        return
    where = sec.get("label_set") or f"{sec['n_classes']} mapped classes"
    _say(console, f"Mistake severity in the class hierarchy ({where}, WordNet tree of height "
                  f"{sec['max_height']}): LCA height of true and predicted class vs a random wrong class, "
                  f"{_level(sec)} intervals", style="bold")
    if sec.get("unmapped"):
        _say(console, f"left out, no synset: {_listed(sec['unmapped'])}", indent="  ", style="yellow")
    for name, entry in _rows(sec, largest=True):
        if not entry["n"]:
            _say(console, f"{name}: no mistakes", indent="  ")
            continue
        _say(console, f"{name}: {entry['n']} mistakes, LCA height {_mean(entry)} vs {entry['baseline_mean']:.2f} "
                      f"(difference {_difference(entry)}, Wilcoxon p {_p(entry)}): {entry['verdict']}; inside "
                      f"the true superclass {_same(entry)}", indent="  ")
    if sec["clean"].get("by_superclass") is not None:
        _superclass_lines(console, sec, reference_entry(result.attacks))


# --- the HTML panel -----------------------------------------------------------------------------------------

def panel(report: dict, figures: list[dict] | None = None) -> dict | None:
    sec = (report.get("analyses") or {}).get(KEY)
    if not sec:
        return None
    if "skipped" in sec:
        return {"skipped": sec["skipped"]}
    ks = [t["k"] for t in sec["clean"].get("topk") or []]
    rows = [{"run": name, "n": entry["n"], "mean": _mean(entry),
             "median": "—" if entry.get("median") is None else f"{entry['median']:g}",
             "baseline": "—" if entry.get("baseline_mean") is None else f"{entry['baseline_mean']:.2f}",
             "difference": _difference(entry), "p": _p(entry), "verdict": entry.get("verdict", "—"),
             "same": _same(entry), "topk": [_topk(entry, k) for k in ks]} for name, entry in _rows(sec)]
    heights = [f"height {h}" for h in range(sec["max_height"] + 1)]

    def shares(counts: list[float]) -> list[float | None]:
        total = sum(counts)
        return [c / total if total else None for c in counts]

    runs = sec.get("adversarial") or []
    focus = runs[-1] if runs else None
    groups = [("clean mistakes", shares(sec["clean"]["counts"]))]
    if focus is not None:
        groups += [(f"attack's mistakes ({label(focus)})", shares(focus["counts"])),
                   (f"random wrong class for the same samples ({label(focus)})", shares(focus["baseline_counts"]))]
    svg = hbar_chart(heights, groups, title="LCA heights of the mistakes (share of mistakes per height)",
                     x_label="share of mistakes")
    return {"skipped": None, "method": sec["method"], "source": sec["source"], "level": _level(sec),
            "depth": sec["superclass_depth"], "superclasses": sec.get("superclasses") or [], "ks": ks,
            "unmapped": _listed(sec["unmapped"]) if sec.get("unmapped") else None,
            "rows": rows, "svg": svg, "coarse": _coarse(sec)}


def _coarse(sec: dict) -> dict | None:
    """The superclass table: per superclass its classes, samples and clean accuracy, then per attack at its largest
    budget the robust accuracy and the share of the attack's mistakes staying inside; a last row with the tests
    across superclasses."""
    if sec["clean"].get("by_superclass") is None:
        return None
    runs = largest_per_attack(sec.get("adversarial") or [])
    classes = {g["name"]: g["classes"] for g in sec.get("superclasses") or []}
    rows, empty = [], []
    for i, row in enumerate(sec["clean"]["by_superclass"]):
        members = classes.get(row["name"], [])
        if not row["n"]:  # no sample of its classes in this audit: named below the table, not a row of dashes
            empty.append(f"{row['name']} ({len(members)})")
            continue
        shown = ", ".join(members[:CLASSES_SHOWN]) + (f" … ({len(members)} classes)" if len(members) > CLASSES_SHOWN
                                                      else "")
        rows.append({"name": row["name"], "classes": shown, "n": row["n"], "clean": _accuracy(row),
                     "runs": [(_accuracy(r["by_superclass"][i]), _inside(r["by_superclass"][i])) for r in runs]})
    return {"rule": (sec.get("superclass_level") or {}).get("rule", ""), "empty": ", ".join(empty),
            "runs": [{"label": label(r), "accuracy_of": r.get("accuracy_of", "robust accuracy")} for r in runs],
            "rows": rows, "tests": {"clean": _across(sec["clean"]), "runs": [_across(r) for r in runs]},
            "test_names": sorted({t["test"] for t in (sec["clean"], *runs)
                                  for t in [t.get("superclass_test") or {}] if t.get("test")})}


def finding(report: dict) -> str | None:
    """The verdict at the last attack run, for the summary card (None when off or there is no run)."""
    sec = (report.get("analyses") or {}).get(KEY) or {}
    runs = sec.get("adversarial") or []
    if "skipped" in sec or not runs or not runs[-1]["n"]:
        return None
    r = runs[-1]
    return (f"Mistakes induced by {label(r)} in the class hierarchy: mean LCA height {_mean(r)} vs "
            f"{r['baseline_mean']:.2f} for a random wrong class: {r['verdict']}.")


SECTION = Section(
    key=KEY, title="Mistake severity in the class hierarchy", order=25,
    build="audit.analyses.hierarchy.analysis:build", terminal=terminal, panel=panel,
    template=Path(__file__).with_name("panel.html.j2"), finding=finding,
)
