"""The saliency entropy in the report: its terminal lines, its HTML panel and its score component.

Reads only report.json's ``analyses.saliency`` section (plain data); imports neither torch nor numpy: every
interval and p-value was computed at audit time (audit/analyses/saliency/analysis.py documents them).

What it writes claims a direction only where it is significant at alpha = 1 − the report's confidence: a layer's
AUROC is "higher"/"lower" only when its Benjamini–Hochberg q ≤ alpha, a trend with depth only when the
superization p ≤ alpha; otherwise the measured value, its p and "inconclusive at n = …". ΔH is printed with its
interval and paired p (a signed value, not a claim).

Score component (in [0, 1], higher = more robust; read at the reference run, see reports.score)
    saliency (weight 0.1)
        1 − clip(mean over layers of |ΔH| / H_max, 0, 1), with ΔH the shift of mean saliency entropy at the
        reference run (analyses.saliency, layers with a non-null delta) and H_max = 2·log_b L for the glcm and
        2d entropies and log_b L for the histogram entropy (L levels, log base b): the largest entropy the
        definition can reach. Missing when the section is absent, skipped or has no shift, or the reference run
        attacked no sample. ``n``: the successful adversarials of the reference run it rests on; with fewer
        than MIN_IMAGES (20) it is marked ``too_few`` and left out of the score (its value still shown), so a
        shift measured on a handful of images cannot swing the score by itself.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from rich.markup import escape

from audit.analyses.registry import ScoreComponent, Section
from reports.formatting import fixed_interval, num, pct, signed, two
from reports.html.analysis_panels import label, largest_per_attack, run_of
from reports.html.charts import Series, line_chart, nice_max
from reports.score import attacked_nothing, clip, find_run, no_layers, run_name

KEY = "saliency"
ENTROPY_MAX_FACTOR = {"glcm": 2.0, "2d": 2.0, "histogram": 1.0}  # H_max = factor · log_b L
MIN_IMAGES = 20  # the score component needs at least this many successful adversarials at the reference run
WIDTH = 80  # terminal lines stay within this many columns
DEFAULT_ALPHA = 0.05


def p_text(p: float | None) -> str:
    """A p-value in two significant digits: 0.33, 0.021, 3.1e-12; "—" when there is none."""
    return "—" if p is None else f"{p:.2g}"


def alpha_of(sal: dict) -> float:
    """The significance level the section was computed at (1 − confidence), 0.05 for older reports."""
    return (sal.get("superization") or {}).get("alpha", DEFAULT_ALPHA)


def auroc_finding(value: float | None, q: float | None, p: float | None, n: int, alpha: float) -> str:
    """The claim an AUROC supports: the direction of the entropy shift when q ≤ alpha, else inconclusive."""
    if value is None:
        return "not measured"
    if q is not None and q <= alpha:
        return f"{'higher' if value >= 0.5 else 'lower'} entropy under attack (p {p_text(p)}, q {p_text(q)})"
    return f"inconclusive at n = {n} (p {p_text(p)}, q {p_text(q)})"


def _wrap(text: str, indent: str = "  ", more: str = "    ") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more, break_on_hyphens=False)


# --- the terminal summary -----------------------------------------------------------------------------------

def terminal(result, console) -> None:
    """The saliency-entropy profile in lines of at most 80 columns: clean entropy by depth, the superization
    statement, and per attack (largest budget) ΔH per layer with interval and p, the best layer's AUROC and
    the detector, each with its interval."""
    sal = result.analyses[KEY]
    levels = f", L={sal['levels']}" if sal.get("levels") is not None else ""
    head = f"[bold]Saliency entropy[/] {escape(sal['method'])}, {escape(sal['entropy'])}{levels}, bits"
    if "skipped" in sal:
        console.print(f"{head}: skipped ({escape(sal['skipped'])})")
        return
    alpha = alpha_of(sal)
    console.print(head)

    def say(lines: list[str]) -> None:
        for line in lines:
            console.print(escape(line), soft_wrap=True)

    say(_wrap("clean: " + " → ".join(f"{layer['name']} {layer['clean']['mean']:.2f}" for layer in sal["layers"])))
    reasons: dict[str, list[str]] = {}
    for s in sal.get("skipped_layers") or []:
        reasons.setdefault(s["reason"], []).append(s["name"])
    for reason, names in reasons.items():
        for line in _wrap(f"skipped: {', '.join(names)}: {reason}"):
            console.print(f"[dim]{escape(line)}[/]", soft_wrap=True)
    say(_wrap(sal["superization"]["statement"]))
    largest = {det["attack"]: det for det in sal["detection"]}  # each attack at its largest budget
    for det in largest.values():
        shifts = []
        for layer in sal["layers"]:
            a = next(a for a in layer["adversarial"] if a["attack"] == det["attack"] and a["eps"] == det["eps"])
            if a["delta"] is None:
                shifts.append("—")
                continue
            ci = a.get("delta_ci")
            half = f" ±{(ci[1] - ci[0]) / 2:.2f}" if ci else ""
            shifts.append(f"{a['delta']:+.2f}{half} (p {p_text(a.get('delta_p'))})")
        say(_wrap(f"{det['attack']}@{det['eps_text']}, {det['n']} adversarials: ΔH {' / '.join(shifts)}"))
        if det.get("best_layer"):
            finding = auroc_finding(det["best_auroc"], det.get("best_auroc_q"), det.get("best_auroc_p"),
                                    det["n"], alpha)
            ci = fixed_interval(det.get("best_auroc_ci"))
            say(_wrap(f"best layer {det['best_layer']}: AUROC {det['best_auroc']:.2f}{' ' + ci if ci else ''}, "
                      f"{finding}", indent="    ", more="      "))
            if det["detector_auroc"] is not None:
                ci, acc = fixed_interval(det.get("detector_auroc_ci")), det.get("detector_accuracy")
                acc_ci = det.get("detector_accuracy_ci")
                accuracy = "" if acc is None else (f", accuracy {100 * acc:.0f}%" + (
                    f" [{100 * acc_ci[0]:.0f}, {100 * acc_ci[1]:.0f}]" if acc_ci else ""))
                say(_wrap(f"detector: AUROC {det['detector_auroc']:.2f}{' ' + ci if ci else ''}{accuracy} held "
                          f"out (n={det['n_test']})", indent="    ", more="      "))
            else:
                say(["    detector: too few samples"])


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

    alpha = alpha_of(sal)
    series = [Series("clean", [(i, layer["clean"]["mean"]) for i, layer in enumerate(layers)],
                     intervals=[layer["clean"].get("mean_ci") for layer in layers])]
    series += [Series(f"adversarial {label(r)}", [(i, run_of(layer, r).get("mean")) for i, layer in enumerate(layers)],
                      dash="dashed", intervals=[run_of(layer, r).get("mean_ci") for layer in layers]) for r in adv_runs]
    top = max([p for s in series for _, p in s.points if p is not None]
              + [e[1] for s in series for e in s.intervals or [] if e and e[1] is not None] + [1.0])
    out["entropy_svg"] = line_chart(series, title="Saliency-map entropy per layer (mean over images, bars: "
                                                  f"{confidence_text(alpha)} interval)",
                                    x_label="layer", y_label="entropy (bits)", categories=names,
                                    y_range=(0.0, nice_max(top)), y_format=lambda v: f"{v:g}")
    out["adv_runs"] = [label(r) for r in adv_runs]
    out["confidence"] = confidence_text(alpha)
    out["alpha"] = f"{alpha:g}"
    out["layer_rows"] = [{
        "name": layer["name"], "size": "×".join(str(s) for s in layer.get("map_size") or []),
        "clean": f"{two(layer['clean']['mean'])} ± {two(layer['clean'].get('sd'))}",
        "clean_ci": fixed_interval(layer["clean"].get("mean_ci")),
        "adv": [_cells(run_of(layer, r), alpha) for r in adv_runs],
    } for layer in layers]
    sup = sal.get("superization") or {}
    out["superization"] = {"statement": sup.get("statement", ""), "index": num(sup.get("index")),
                           "p": p_text(sup.get("p_value")), "p_method": sup.get("p_method") or "",
                           "reason": sup.get("reason") or "",
                           "differences": ", ".join(signed(d) for d in sup.get("differences") or [])}
    out["detection"] = [{
        "run": label(d), "n": d.get("n", "—"), "best_layer": d.get("best_layer") or "—",
        "best_auroc": f"{two(d.get('best_auroc'))} {fixed_interval(d.get('best_auroc_ci'))}".strip(),
        "direction": (auroc_finding(d.get("best_auroc"), d.get("best_auroc_q"), d.get("best_auroc_p"), d.get("n", 0),
                                    alpha) if d.get("best_layer") else "—"),
        "detector": (f"AUROC {two(d['detector_auroc'])} {fixed_interval(d.get('detector_auroc_ci'))}, accuracy "
                     f"{pct(d.get('detector_accuracy'))} {fixed_interval(_percent(d.get('detector_accuracy_ci')), 1)} "
                     f"(held out, n = {d.get('n_test')})"
                     if d.get("detector_auroc") is not None else f"not fitted: {d.get('reason') or 'no reason given'}"),
    } for d in sal.get("detection") or []]
    return out


def confidence_text(alpha: float) -> str:
    """The confidence level as a percentage: alpha 0.05 -> "95%"."""
    return f"{100 * (1 - alpha):g}%"


def _percent(ci: list | None) -> list | None:
    return None if not ci else [100 * ci[0], 100 * ci[1]]


def _cells(entry: dict, alpha: float) -> tuple[str, str]:
    """(ΔH cell, AUROC cell) of one layer and run: value, interval, p (and the AUROC's BH q and finding)."""
    if entry.get("delta") is None:
        return "—", "—"
    delta = f"{signed(entry['delta'])} {fixed_interval(entry.get('delta_ci'))} p {p_text(entry.get('delta_p'))}"
    value = entry.get("auroc")
    finding = auroc_finding(value, entry.get("auroc_q"), entry.get("auroc_p"), entry.get("n", 0), alpha)
    return delta, f"{two(value)} {fixed_interval(entry.get('auroc_ci'))}: {finding}"


# --- the score component ------------------------------------------------------------------------------------

def saliency(report: dict, ref: dict | None) -> tuple:
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
    counts = [adv["n"] for layer in sal.get("layers", [])
              if (adv := find_run(layer.get("adversarial", []), ref)) is not None and adv.get("n") is not None]
    n = max(counts) if counts else None  # None: a report that does not say (then not left out)
    mean = sum(shifts) / len(shifts)
    value = 1.0 - clip(mean / h_max)
    images = "" if n is None else f" from {n} successful adversarials"
    detail = (f"mean |ΔH| {mean:.3f} bits over {len(shifts)} layers under {run_name(ref)}{images}, against the "
              f"largest possible {h_max:.2f} ({sal.get('entropy')}, L={levels})")
    too_few = n is not None and n < MIN_IMAGES
    if too_few:
        detail += f"; left out of the score: fewer than {MIN_IMAGES} images"
    return value, detail, {"n": n, "too_few": too_few}


SECTION = Section(
    key=KEY, title="Saliency entropy", order=20, build="audit.analyses.saliency.analysis:build",
    terminal=terminal, panel=panel, template=Path(__file__).with_name("panel.html.j2"),
    score=(ScoreComponent(name="saliency", weight=0.1, compute=saliency,
                          formula="1 - clip(mean over layers of |delta H| / H_max, 0, 1), H_max = 2 log2 L (glcm), at "
                                  "the strongest attack's largest budget; left out with fewer than 20 successful "
                                  "adversarials there"),),
)
