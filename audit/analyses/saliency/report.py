"""The saliency entropy in the report: its terminal lines, its HTML panel and its score component.

Reads only report.json's ``analyses.saliency`` section (plain data); imports neither torch nor numpy.

Score component (in [0, 1], higher = more robust; read at the reference run, see reports.score)
    saliency (weight 0.1)
        1 − clip(mean over layers of |ΔH| / H_max, 0, 1), with ΔH the shift of mean saliency entropy at the
        reference run (analyses.saliency, layers with a non-null delta) and H_max = 2·log_b L for the glcm and
        2d entropies and log_b L for the histogram entropy (L levels, log base b): the largest entropy the
        definition can reach. Missing when the section is absent, skipped or has no shift, or the reference run
        attacked no sample.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.markup import escape

from audit.analyses.registry import ScoreComponent, Section
from reports.formatting import num, signed, two
from reports.html.analysis_panels import label, largest_per_attack, run_of
from reports.html.charts import Series, line_chart, nice_max
from reports.score import attacked_nothing, clip, find_run, no_layers, run_name

KEY = "saliency"
ENTROPY_MAX_FACTOR = {"glcm": 2.0, "2d": 2.0, "histogram": 1.0}  # H_max = factor · log_b L


# --- the terminal summary -----------------------------------------------------------------------------------

def terminal(result, console) -> None:
    """The saliency-entropy profile in a few lines: clean entropy by depth, its shift and AUROC per attack."""
    sal = result.analyses[KEY]
    levels = f", L={sal['levels']}" if sal.get("levels") is not None else ""
    head = f"[bold]Saliency entropy[/] {escape(sal['method'])}, {escape(sal['entropy'])}{levels}, bits"
    if "skipped" in sal:
        console.print(f"{head}: skipped ({escape(sal['skipped'])})")
        return
    profile = " → ".join(f"{escape(layer['name'])} {layer['clean']['mean']:.2f}" for layer in sal["layers"])
    console.print(f"{head}; clean: {profile}")
    reasons: dict[str, list[str]] = {}
    for s in sal.get("skipped_layers") or []:
        reasons.setdefault(s["reason"], []).append(s["name"])
    for reason, names in reasons.items():
        console.print(f"  [dim]skipped: {escape(', '.join(names))}: {escape(reason)}[/]")
    console.print(f"  {escape(sal['superization']['statement'])}")
    largest = {det["attack"]: det for det in sal["detection"]}  # each attack at its largest budget
    for det in largest.values():
        shifts = []
        for layer in sal["layers"]:
            a = next(a for a in layer["adversarial"] if a["attack"] == det["attack"] and a["eps"] == det["eps"])
            shifts.append("—" if a["delta"] is None else f"{a['delta']:+.2f}")
        line = f"  {escape(det['attack'])}@{escape(str(det['eps_text']))}: ΔH {' / '.join(shifts)}"
        if det.get("best_layer"):
            line += f"; best layer {escape(det['best_layer'])} AUROC {det['best_auroc']:.2f}"
            line += f", detector {det['detector_auroc']:.2f} held out (n={det['n_test']})" \
                if det["detector_auroc"] is not None else ", detector: too few samples"
        console.print(line)


# --- the HTML panel -----------------------------------------------------------------------------------------

def panel(report: dict, figures: list[dict] | None = None) -> dict | None:
    """``figures``: the example pictures already read by the renderer, {"path", "src" or None, "problem"}."""
    sal = (report.get("analyses") or {}).get(KEY)
    if not sal:
        return None
    out = {"skipped": sal.get("skipped"), "definition": sal.get("definition", ""),
           "setting": f"{sal.get('method', '?')} maps, {sal.get('entropy', '?')} entropy, L = {sal.get('levels')} "
                      f"levels, offsets {sal.get('offsets')}, log base {sal.get('log_base')}, saliency of the "
                      f"{sal.get('saliency_class', '?')} class",
           "skipped_layers": sal.get("skipped_layers") or [], "figures": figures or []}
    layers = sal.get("layers") or []
    if out["skipped"] or not layers:
        return out
    names = [layer["name"] for layer in layers]
    adv_runs = largest_per_attack(layers[0]["adversarial"])

    series = [Series("clean", [(i, layer["clean"]["mean"]) for i, layer in enumerate(layers)])]
    series += [Series(f"adversarial {label(r)}", [(i, run_of(layer, r).get("mean")) for i, layer in enumerate(layers)],
                      dash="dashed") for r in adv_runs]
    top = max([p for s in series for _, p in s.points if p is not None] + [1.0])
    out["entropy_svg"] = line_chart(series, title="Saliency-map entropy per layer (mean over images)",
                                    x_label="layer", y_label="entropy (bits)", categories=names,
                                    y_range=(0.0, nice_max(top)), y_format=lambda v: f"{v:g}")
    out["adv_runs"] = [label(r) for r in adv_runs]
    out["layer_rows"] = [{
        "name": layer["name"], "size": "×".join(str(s) for s in layer.get("map_size") or []),
        "clean": f"{two(layer['clean']['mean'])} ± {two(layer['clean'].get('sd'))}",
        "adv": [(signed(run_of(layer, r).get("delta")), two(run_of(layer, r).get("auroc"))) for r in adv_runs],
    } for layer in layers]
    sup = sal.get("superization") or {}
    out["superization"] = {"statement": sup.get("statement", ""), "index": num(sup.get("index")),
                           "differences": ", ".join(signed(d) for d in sup.get("differences") or [])}
    out["detection"] = [{
        "run": label(d), "n": d.get("n", "—"), "best_layer": d.get("best_layer") or "—",
        "best_auroc": two(d.get("best_auroc")), "direction": d.get("direction") or "—",
        "detector": (f"{two(d['detector_auroc'])} (held out, n = {d.get('n_test')})"
                     if d.get("detector_auroc") is not None else f"not fitted: {d.get('reason') or 'no reason given'}"),
    } for d in sal.get("detection") or []]
    return out


# --- the score component ------------------------------------------------------------------------------------

def saliency(report: dict, ref: dict | None) -> tuple[float | None, str]:
    sal = report.get("analyses", {}).get(KEY)
    if not sal:
        why = no_layers(report)
        return None, f"no saliency analysis in the report: {why}" if why else "no saliency analysis in the report"
    if "skipped" in sal:
        return None, f"saliency analysis skipped: {sal['skipped']}"
    if ref is None:
        return None, "no attack run to read it at"
    if attacked_nothing(ref):
        return None, attacked_nothing(ref)
    levels, base = sal["levels"], sal.get("log_base", 2)
    h_max = ENTROPY_MAX_FACTOR.get(sal.get("entropy"), 2.0) * math.log(levels) / math.log(base) if levels > 1 else 0
    shifts = []
    for layer in sal.get("layers", []):
        adv = find_run(layer.get("adversarial", []), ref)
        if adv is not None and adv.get("delta") is not None:
            shifts.append(abs(adv["delta"]))
    if not shifts or h_max <= 0:
        return None, f"no saliency-entropy shift measured under {run_name(ref)}"
    mean = sum(shifts) / len(shifts)
    value = 1.0 - clip(mean / h_max)
    return value, (f"mean |ΔH| {mean:.3f} bits over {len(shifts)} layers under {run_name(ref)}, against the largest "
                   f"possible {h_max:.2f} ({sal.get('entropy')}, L={levels})")


SECTION = Section(
    key=KEY, title="Saliency entropy", order=20, build="audit.analyses.saliency.analysis:build",
    terminal=terminal, panel=panel, template=Path(__file__).with_name("panel.html.j2"),
    score=(ScoreComponent(name="saliency", weight=0.1, compute=saliency,
                          formula="1 - clip(mean over layers of |delta H| / H_max, 0, 1), H_max = 2 log2 L (glcm), at "
                                  "the strongest attack's largest budget"),),
)
