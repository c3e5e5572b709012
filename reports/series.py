"""A series of audits across checkpoints (``audit series``): ``series.json`` built from the checkpoints' report
dicts, the selection of the best checkpoint, and the terminal's progress lines and trend table.

Reads only the report dicts (nothing is recomputed); no torch. The document (schema: reports/series.schema.json,
``SERIES_SCHEMA_VERSION``):

``checkpoints``, in the series' order, each with
    ``name``, ``path``, ``sha256``, ``report`` (its report.json, relative to the series folder);
    ``clean``: accuracy, its interval ``accuracy_ci``, n;
    ``robust``: per attack entry with a robust accuracy (the gate name ``robust_accuracy[ATTACK@EPS]``) the value
    and its interval;
    ``score``: value, interval, grade (null value when not scored);
    ``semantics``: per semantic space (``glove``, ``wordnet``; the report's main space and the others it measured)
    the clean 2 vs 2 per layer with its label-permutation p (FDR-adjusted, as the report gives it) and
    ``significant`` (p < the section's alpha); null without a semantic section;
    ``saliency``: the entropy per layer (clean mean and its interval) and the superization block (index, p,
    testable, statement); null without a saliency section.
``changes``: between consecutive checkpoints, :func:`reports.compare.compare` of the two reports (the earlier as
    base), its clean-accuracy and robust-accuracy rows: McNemar's exact test on the per-sample outcomes when both
    audited the same samples (a series always does), Holm across those rows of the pair, exactly as ``audit
    compare EARLIER NEW`` reports them. A row is ``significant`` in the direction it moved (``rose`` / ``fell``)
    when its Holm-adjusted one-sided p is below ``alpha``; else ``inconclusive`` (or ``identical``).
``selection``: with ``--select METRIC``, the checkpoint whose METRIC is best (higher or lower as the metric's
    family is better, :func:`reports.compare.rules`; ``.lower``/``.upper`` bounds as their metric); ties go to the
    later checkpoint, checkpoints where the metric is null are passed over; ``rule`` says so in words.
``gates``: which checkpoint's verdict decides the exit code (``on``: ``last`` or ``selected``), and that verdict's
    ``passed`` and ``summary``.
"""

from __future__ import annotations

import math

from rich import box
from rich.markup import escape
from rich.table import Table

from audit.errors import AuditError
from reports.compare import FISHER, MCNEMAR, compare, p_text, rules, shown_p
from reports.gates import BOUND_SUFFIX, BOUNDS, bounds, family, metrics, parse_gate

SERIES_SCHEMA_VERSION = "1.1"
GATE_ON = ("last", "selected")


def _ci(value) -> list[float] | None:
    return [float(value[0]), float(value[1])] if isinstance(value, list | tuple) and len(value) == 2 \
        and all(isinstance(v, int | float) for v in value) else None


def _semantics(report: dict) -> dict | None:
    sem = (report.get("analyses") or {}).get("semantics")
    if not sem or not sem.get("layers"):
        return None
    alpha = sem.get("alpha", 0.05)
    spaces = {sem.get("space") or "glove": sem["layers"]}
    for name, block in (sem.get("spaces") or {}).items():
        if name not in spaces and block.get("layers"):
            spaces[name] = block["layers"]
    out = {}
    for name, layers in spaces.items():
        rows = []
        for layer in layers:
            clean = layer.get("clean") or {}
            p = clean.get("p_value")
            rows.append({"layer": layer["name"], "two_vs_two": clean.get("two_vs_two"), "p_value": p,
                         "significant": p is not None and p < alpha})
        out[name] = {"alpha": alpha, "layers": rows}
    return out


def _saliency(report: dict) -> dict | None:
    sal = (report.get("analyses") or {}).get("saliency")
    if not sal or not sal.get("layers"):
        return None
    layers = [{"layer": layer["name"], "entropy": (layer.get("clean") or {}).get("mean"),
               "entropy_ci": _ci((layer.get("clean") or {}).get("mean_ci"))} for layer in sal["layers"]]
    sup = sal.get("superization") or {}
    return {"entropy": sal.get("entropy"), "method": sal.get("method"), "layers": layers,
            "superization": {key: sup.get(key) for key in ("index", "p_value", "testable", "statement")}
            if sup else None}


def checkpoint_entry(name: str, path: str, report: dict, report_path: str) -> dict:
    """One checkpoint's figures in series.json, read from its report dict."""
    clean = report["clean"]
    intervals = {}
    robust = []
    for e in report["attacks"]:
        if e.get("robust_accuracy") is None:
            continue
        metric = f"robust_accuracy[{e['name']}@{e['eps_text'] or 'min'}]"
        if metric in intervals:
            continue
        intervals[metric] = True
        robust.append({"metric": metric, "attack": e["name"], "eps_text": e["eps_text"],
                       "value": e["robust_accuracy"], "ci": _ci(e.get("robust_accuracy_ci"))})
    score = report.get("score") or {}
    capped = score.get("capped") or {}
    return {"name": name, "path": path, "sha256": report["model"].get("sha256"), "report": report_path,
            "clean": {"accuracy": clean["accuracy"], "accuracy_ci": _ci(clean.get("accuracy_ci")), "n": clean["n"]},
            "robust": robust,
            "score": {"value": score.get("value"), "interval": _ci(score.get("interval")), "grade": score.get("grade"),
                      "capped_by": list(capped["by"]) if capped.get("applied") else None},
            "semantics": _semantics(report), "saliency": _saliency(report)}


def change(base_name: str, base: dict, new_name: str, new: dict, alpha: float) -> dict:
    """The paired tests between two consecutive checkpoints (see the module docstring)."""
    comparison = compare(base, new, 0.0, alpha)
    rows = []
    for r in comparison["rows"]:
        if r["test"] not in (MCNEMAR, FISHER):
            continue
        moved = "rose" if (r["delta"] or 0) > 0 else "fell"
        significant = (r["p_better_adjusted"] if moved == "rose" else r["p_adjusted"]) < alpha
        identical = r["test"] == MCNEMAR and r["b"] == r["c"] == 0
        rows.append({"metric": r["metric"], "base": r["base"], "new": r["new"], "delta": r["delta"],
                     "difference_ci": r["difference_ci"], "test": r["test"], "b": r["b"], "c": r["c"],
                     "p_adjusted": r["p_adjusted"], "p_better_adjusted": r["p_better_adjusted"],
                     "significant": significant,
                     "direction": "identical" if identical else moved if significant else "inconclusive"})
    return {"from": base_name, "to": new_name, "paired": comparison["paired"], "note": comparison["note"],
            "alpha": alpha, "rows": rows}


def _names(report: dict) -> dict[str, float | None]:
    return {**metrics(report), **bounds(report)}


def check_select(metric: str, report: dict | None = None) -> None:
    """``--select METRIC``: a gate-style metric name (checked against a report when one is given)."""
    parse_gate(f"{metric}>=0", None if report is None else _names(report))


def better_of(metric: str) -> str:
    """"higher" or "lower": which way the metric (or its bound) is better."""
    m = BOUND_SUFFIX.match(metric)
    base = metric
    if m and m["bound"] in BOUNDS and not metric.startswith("score.components."):
        base = "score.value" if m["metric"] == "score" else m["metric"]
    return rules()[family(base)][0]


def select(metric: str, named: list[tuple[str, dict]]) -> dict:
    """The checkpoint whose ``metric`` is best (the module docstring's rule)."""
    better = better_of(metric)
    values = [(name, _names(report).get(metric)) for name, report in named]
    best = None
    for i, (_, value) in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if best is None or (value >= values[best][1] if better == "higher" else value <= values[best][1]):
            best = i
    if best is None:
        raise AuditError(f"--select {metric}: the metric is null in every checkpoint, so none can be selected")
    skipped = [name for name, value in values if value is None]
    tied = [name for i, (name, value) in enumerate(values) if i != best and value == values[best][1]]
    rule = (f"the {'highest' if better == 'higher' else 'lowest'} {metric} ({better} is better); ties go to the "
            "later checkpoint" + (f"; {', '.join(tied)} tie{'s' if len(tied) == 1 else ''} with it" if tied else "")
            + (f"; null in {', '.join(skipped)}, passed over" if skipped else ""))
    return {"metric": metric, "better": better, "rule": rule, "selected": values[best][0],
            "value": values[best][1] if math.isfinite(values[best][1]) else None,
            "values": [{"name": name, "value": v if v is None or math.isfinite(v) else None} for name, v in values]}


def build_series(named: list[tuple[str, str, dict]], *, order: str, alpha: float, select_metric: str | None,
                 gate_on: str, tool: dict, created: str) -> dict:
    """series.json from ``(name, path, report)`` per checkpoint, in the series' order."""
    if gate_on not in GATE_ON:
        raise AuditError(f"--gate-on must be last or selected, got {gate_on!r}")
    if gate_on == "selected" and not select_metric:
        raise AuditError("--gate-on selected needs --select METRIC: it names the checkpoint the gates apply to")
    checkpoints = [checkpoint_entry(name, path, report, f"{name}/report.json") for name, path, report in named]
    changes = [change(named[i - 1][0], named[i - 1][2], named[i][0], named[i][2], alpha)
               for i in range(1, len(named))]
    selection = select(select_metric, [(n, r) for n, _, r in named]) if select_metric else None
    gated = selection["selected"] if gate_on == "selected" else named[-1][0]
    verdict = next(r for n, _, r in named if n == gated).get("verdict") or {}
    return {"schema_version": SERIES_SCHEMA_VERSION, "tool": tool, "created": created, "order": order,
            "alpha": alpha, "checkpoints": checkpoints, "changes": changes, "selection": selection,
            "gates": {"on": gate_on, "checkpoint": gated, "gated": bool(verdict.get("gated", False)),
                      "passed": bool(verdict.get("passed", True)), "summary": verdict.get("summary", "")}}


def validate_series(doc: dict, where: str = "series.json") -> None:
    """Check a series document against reports/series.schema.json; a mismatch is one AuditError line."""
    import json
    from pathlib import Path

    import jsonschema

    schema = json.loads(Path(__file__).with_name("series.schema.json").read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise AuditError(f"{where} is not a robustness-audit series: at {at}: {error.message[:200]}")


def _pct(value: float | None, ci: list | None = None) -> str:
    if value is None:
        return "—"
    text = f"{100 * value:.1f}%"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _short(metric: str) -> str:
    return metric[metric.index("[") + 1:-1] if "[" in metric else "clean"


def progress_line(index: int, total: int, name: str, report: dict, seconds: float) -> str:
    """The line printed when a checkpoint's audit is done."""
    entry = checkpoint_entry(name, "", report, "")
    parts = [f"clean {_pct(entry['clean']['accuracy'], entry['clean']['accuracy_ci'])}"]
    parts += [f"{_short(r['metric'])} {_pct(r['value'], r['ci'])}" for r in entry["robust"]]
    score = entry["score"]
    if score["value"] is not None:
        parts.append(f"score {score['value']:.1f}")
    return f"[{index}/{total}] {name}: " + ", ".join(parts) + f" ({seconds:.1f} s)"


def _change_text(row: dict) -> str:
    arrow = "↑" if row["direction"] == "rose" else "↓"
    return f"{_short(row['metric'])} {arrow}{100 * row['delta']:+.1f} pp (p {p_text(shown_p(row))})"


def trend_table(series: dict) -> Table:
    """Checkpoint × clean and robust accuracy with intervals, the score, and the significant changes from the
    checkpoint before (Holm-adjusted McNemar p)."""
    points = series["checkpoints"]
    metrics_shown = list(dict.fromkeys(r["metric"] for c in points for r in c["robust"]))
    table = Table(title=f"series: {len(points)} checkpoints; changes from the one before significant at one-sided "
                  f"alpha {series['alpha']:g} (McNemar, Holm)", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("checkpoint", overflow="fold")
    for col in ["clean", *(_short(m) for m in metrics_shown), "score"]:
        table.add_column(escape(col), justify="right")
    table.add_column("significant changes", overflow="fold")
    selected = (series.get("selection") or {}).get("selected")
    changes = {c["to"]: c for c in series["changes"]}
    for c in points:
        robust = {r["metric"]: r for r in c["robust"]}
        cells = [_pct(c["clean"]["accuracy"], c["clean"]["accuracy_ci"]).replace(" [", "\n[")]
        cells += [_pct(robust[m]["value"], robust[m]["ci"]).replace(" [", "\n[") if m in robust else "—"
                  for m in metrics_shown]
        s = c["score"]
        cells.append("—" if s["value"] is None else f"{s['value']:.1f}" + (" capped" if s.get("capped_by") else "") + (
            f"\n[{s['interval'][0]:.1f}, {s['interval'][1]:.1f}]" if s["interval"] else ""))
        moved = changes.get(c["name"])
        if moved is None:
            text = ""
        else:
            significant = [r for r in moved["rows"] if r["significant"]]
            text = ", ".join(_change_text(r) for r in significant) or "none significant"
        name = c["name"] + (" (selected)" if c["name"] == selected else "")
        table.add_row(escape(name), *cells, escape(text))
    return table


def closing_lines(series: dict) -> list[str]:
    """The selection's rule and outcome, and which checkpoint the gates apply to."""
    lines = []
    sel = series.get("selection")
    if sel:
        value = "∞" if sel["value"] is None else f"{sel['value']:.4g}"
        lines.append(f"selected: {sel['selected']} ({sel['metric']} = {value}): {sel['rule']}")
    gates = series["gates"]
    lines.append(f"gates on the {gates['on']} checkpoint, {gates['checkpoint']}: {gates['summary']}")
    return lines
