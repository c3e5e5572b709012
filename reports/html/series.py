"""The review page of a series (``OUT/series.html``), rendered from series.json's plain data alone.

What it shows, each panel from one part of the document (:mod:`reports.series` describes the fields):

- the selection (``--select``: the rule and the chosen checkpoint) and the gates' outcome on their checkpoint;
- clean and robust accuracy across checkpoints, one line chart per attack (clean and each budget of the attack)
  with each accuracy's interval as an error bar, the score with its interval, and the same numbers in a table;
- the changes between consecutive checkpoints: per pair the paired test of every accuracy row, its Holm-adjusted
  p in the direction it moved, and whether it rose or fell significantly;
- per semantic space, the 2 vs 2 of every layer across checkpoints as a layer × checkpoint heatmap (chance 0.5
  white, 1.0 dark), significant cells (the report's p below its alpha) with a heavy border and a "*";
- the saliency entropy per layer across checkpoints (a line per layer, intervals as error bars) and each
  checkpoint's superization index;
- the checkpoints with relative links to their own report.html and report.json.

Checkpoint, layer, attack and space names come from file names and reports: the templates escape them (Jinja2
autoescape), the charts pass them through ``markupsafe.escape``, and a link is the name percent-encoded as one
path segment, so it can only point into the series folder. Never imports torch.
"""

from __future__ import annotations

from urllib.parse import quote

from reports.formatting import num, p_text, pct_with, shown_p
from reports.gates import BOUND_SUFFIX, BOUNDS
from reports.html.charts import Cell, Series, heatmap, line_chart, nice_range
from reports.html.render import environment, metric_value, stylesheet

CHANCE_2V2 = 0.5
DIRECTIONS = {"rose": ("▲", "rose", "pass"), "fell": ("▼", "fell", "fail")}


def _short(metric: str) -> str:
    """``robust_accuracy[pgd@0.1]`` -> ``pgd@0.1``; ``clean.accuracy`` -> ``clean``."""
    return metric[metric.index("[") + 1:-1] if "[" in metric else "clean"


def link(name: str, file: str) -> str:
    """A relative link to ``file`` in the checkpoint's own folder: the name is one percent-encoded path segment."""
    return f"{quote(name, safe='')}/{file}"


def score_text(score: dict) -> str:
    if score.get("value") is None:
        return "—"
    interval = score.get("interval")
    return (f"{score['value']:.1f}" + (" capped" if score.get("capped_by") else "")
            + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else ""))


def robust_metrics(points: list[dict]) -> list[dict]:
    """Every robust-accuracy metric of the series in first-seen order: metric, attack and eps text."""
    seen: dict[str, dict] = {}
    for c in points:
        for r in c["robust"]:
            seen.setdefault(r["metric"], {"metric": r["metric"], "attack": r["attack"], "eps_text": r["eps_text"]})
    return list(seen.values())


def trend(series: dict) -> dict:
    """The accuracy table's rows (per checkpoint: clean, each robust metric, the score) and the charts."""
    points = series["checkpoints"]
    names = [c["name"] for c in points]
    metrics = robust_metrics(points)
    rows = []
    for c in points:
        by = {r["metric"]: r for r in c["robust"]}
        rows.append({"name": c["name"], "html": link(c["name"], "report.html"),
                     "clean": pct_with(c["clean"]["accuracy"], c["clean"]["accuracy_ci"]), "n": c["clean"]["n"],
                     "robust": [pct_with(by[m["metric"]]["value"], by[m["metric"]]["ci"]) if m["metric"] in by
                                else "—" for m in metrics],
                     "score": score_text(c["score"]), "grade": (c["score"].get("grade") or "—") + (
                         f" (capped by {', '.join(c['score']['capped_by'])})" if c["score"].get("capped_by") else "")})
    clean = Series("clean", [(i, c["clean"]["accuracy"]) for i, c in enumerate(points)],
                   intervals=[c["clean"]["accuracy_ci"] for c in points])
    charts = []
    for attack in dict.fromkeys(m["attack"] for m in metrics):
        lines = [clean]
        for m in (m for m in metrics if m["attack"] == attack):
            found = [next((r for r in c["robust"] if r["metric"] == m["metric"]), None) for c in points]
            lines.append(Series(_short(m["metric"]), [(i, r["value"] if r else None) for i, r in enumerate(found)],
                                intervals=[r["ci"] if r else None for r in found]))
        title = f"Clean and robust accuracy under {attack} across checkpoints"
        charts.append({"title": title, "svg": line_chart(lines, title=title, x_label="checkpoint",
                                                         y_label="accuracy", categories=names, height=220)})
    score = None
    if any(c["score"].get("value") is not None for c in points):
        score = line_chart([Series("score", [(i, c["score"].get("value")) for i, c in enumerate(points)],
                                   intervals=[c["score"].get("interval") for c in points])],
                           title="Score across checkpoints", x_label="checkpoint", y_label="score",
                           y_range=(0.0, 100.0), y_format=lambda v: f"{v:.1f}" if v % 1 else f"{v:g}",
                           categories=names, height=160)
    return {"metrics": [_short(m["metric"]) for m in metrics], "rows": rows, "charts": charts, "score": score}


def changes(series: dict) -> list[dict]:
    """Per consecutive pair: each tested row with the p of the direction it moved, and how many moved."""
    out = []
    for ch in series["changes"]:
        rows = []
        for r in ch["rows"]:
            icon, word, kind = DIRECTIONS.get(r["direction"], ("", r["direction"], ""))
            rows.append({**r, "short": _short(r["metric"]), "p": p_text(shown_p(r)), "icon": icon, "word": word,
                         "kind": kind})
        rose = sum(r["direction"] == "rose" for r in ch["rows"])
        fell = sum(r["direction"] == "fell" for r in ch["rows"])
        out.append({"from": ch["from"], "to": ch["to"], "paired": ch["paired"], "note": ch["note"],
                    "alpha": ch["alpha"], "rows": rows, "rose": rose, "fell": fell})
    return out


def _layers(blocks: list[list[dict] | None]) -> list[str]:
    return list(dict.fromkeys(row["layer"] for block in blocks if block for row in block))


def semantics(series: dict) -> list[dict]:
    """Per semantic space (first-seen order): the layer × checkpoint heatmap of the clean 2 vs 2."""
    points = series["checkpoints"]
    spaces = list(dict.fromkeys(s for c in points for s in (c["semantics"] or {})))
    out = []
    for space in spaces:
        blocks = [((c["semantics"] or {}).get(space) or {}).get("layers") for c in points]
        layers = _layers(blocks)
        alphas = sorted({(c["semantics"] or {})[space]["alpha"] for c in points if space in (c["semantics"] or {})})
        grid = []
        for layer in layers:
            row = []
            for c, block in zip(points, blocks, strict=True):
                found = next((r for r in block or [] if r["layer"] == layer), None)
                if found is None or found["two_vs_two"] is None:
                    why = "no semantic section" if c["semantics"] is None else "not measured"
                    row.append(Cell(None, note=why))
                    continue
                p = "—" if found["p_value"] is None else f"{found['p_value']:.3g}"
                row.append(Cell(found["two_vs_two"], found["significant"],
                                f"p {p} ({'significant' if found['significant'] else 'not significant'})"))
            grid.append(row)
        svg = heatmap(layers, [c["name"] for c in points], grid, lo=CHANCE_2V2, hi=1.0,
                      value_format=lambda v: f"{v:.2f}",
                      title=f"2 vs 2 per layer across checkpoints ({space})", x_label="checkpoint", y_label="layer",
                      scale_label="2 vs 2:", mark_label="* significant (p < alpha)")
        significant = sum(cell.marked for row in grid for cell in row)
        measured = sum(cell.value is not None for row in grid for cell in row)
        out.append({"space": space, "svg": svg, "alphas": alphas, "significant": significant,
                    "measured": measured,
                    "missing": [c["name"] for c in points if space not in (c["semantics"] or {})]})
    return out


def saliency(series: dict) -> dict | None:
    """The entropy per layer across checkpoints (chart and table) and each checkpoint's superization."""
    points = series["checkpoints"]
    if not any(c["saliency"] for c in points):
        return None
    blocks = [(c["saliency"] or {}).get("layers") for c in points]
    layers = _layers(blocks)
    table, lines, ends = [], [], []
    for layer in layers:
        found = [next((r for r in block or [] if r["layer"] == layer), None) for block in blocks]
        values = [r["entropy"] if r else None for r in found]
        intervals = [r["entropy_ci"] if r else None for r in found]
        lines.append(Series(layer, list(enumerate(values)), intervals=intervals))
        ends += [v for v in values if v is not None] + [e for ci in intervals if ci for e in ci]
        table.append({"layer": layer, "cells": [_entropy_text(v, ci) for v, ci in zip(values, intervals,
                                                                                       strict=True)]})
    y_range = nice_range(min(ends), max(ends)) if ends else (0.0, 1.0)
    chart = line_chart(lines, title="Saliency entropy per layer across checkpoints", x_label="checkpoint",
                       y_label="entropy", y_range=y_range, y_format=lambda v: num(v, 3),
                       categories=[c["name"] for c in points], height=220) if ends else None
    kinds = sorted({f"{c['saliency'].get('entropy') or '?'} entropy of {c['saliency'].get('method') or '?'} maps"
                    for c in points if c["saliency"]})
    superization = []
    for c in points:
        sup = (c["saliency"] or {}).get("superization")
        superization.append({"name": c["name"], "present": c["saliency"] is not None, "sup": sup,
                             "index": (num(sup.get("index"), 3) + (" (untestable)" if sup.get("testable") is False
                                                                   else "")) if sup else "—",
                             "p": num(sup.get("p_value"), 3) if sup else "—"})
    return {"chart": chart, "layers": table, "kinds": kinds, "superization": superization,
            "missing": [c["name"] for c in points if c["saliency"] is None]}


def _entropy_text(value: float | None, interval) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "")


def selection(series: dict) -> dict | None:
    sel = series.get("selection")
    if not sel:
        return None
    bound = BOUND_SUFFIX.match(sel["metric"])
    base = bound["metric"] if bound and bound["bound"] in BOUNDS else sel["metric"]
    return {**sel, "shown": metric_value(sel["value"], base),
            "rows": [{"name": v["name"], "value": metric_value(v["value"], base),
                      "selected": v["name"] == sel["selected"]} for v in sel["values"]]}


def series_context(series: dict) -> dict:
    """Everything the series template shows, built from the series document alone."""
    points = series["checkpoints"]
    tool = series.get("tool") or {}
    return {"points": [{**c, "html": link(c["name"], "report.html"), "json": link(c["name"], "report.json")}
                       for c in points],
            "trend": trend(series), "changes": changes(series), "semantics": semantics(series),
            "saliency": saliency(series), "selection": selection(series), "gates": series["gates"],
            "alpha": series["alpha"], "order": series["order"], "created": series.get("created") or "—",
            "tool": tool}


def render_series_html(series: dict) -> str:
    """The review page of a series document (json.loads of series.json)."""
    css, policy = stylesheet()
    ctx = series_context(series)
    return environment().get_template("series.html.j2").render(
        css=css, csp=policy, title=f"Robustness audit: series of {len(series['checkpoints'])} checkpoints", **ctx)
