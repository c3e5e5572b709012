"""What the HTML report shows from the per-layer analyses: the semantic window and the saliency entropy.

Pure functions from the report's ``analyses`` sections to plain values and SVG Markup. A section that is absent
gives None; a skipped one gives its reason.
"""

from __future__ import annotations

from reports.html.charts import Reference, Series, histogram, line_chart, nice_max
from reports.html.panels import num, run_label, signed
from reports.schema import is_reference, reference_run


ALPHA = 0.05  # the FDR-adjusted p value under which a layer's 2 vs 2 counts as significant


def two(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def largest_per_attack(runs: list[dict]) -> list[dict]:
    """Each attack's run at its largest budget (a minimal-perturbation attack has just one), in report order."""
    best: dict[str, dict] = {}
    for r in runs:
        have = best.get(r["attack"])
        if have is None or (r.get("eps") or 0) > (have.get("eps") or 0):
            best[r["attack"]] = r
    return list(best.values())


def run_of(layer: dict, run: dict) -> dict:
    """A layer's entry for the same attack and budget as ``run`` ({} when the layer has none)."""
    return next((a for a in layer["adversarial"] if a["attack"] == run["attack"] and a.get("eps") == run.get("eps")),
                {})


def pick_focus(runs: list[dict], report: dict) -> dict | None:
    """The run of the reference run (``reports.schema.reference_run``), else the first run."""
    ref = reference_run(report)
    return next((r for r in runs if is_reference(r, ref)), runs[0] if runs else None)


def _label(r: dict) -> str:
    return run_label(r["attack"], r.get("eps_text"))


def semantics(report: dict) -> dict | None:
    sem = (report.get("analyses") or {}).get("semantics")
    if not sem:
        return None
    emb, cov = sem.get("embeddings") or {}, sem.get("coverage") or {}
    out = {"skipped": sem.get("skipped"), "method": sem.get("method", ""), "notes": sem.get("notes") or [],
           "interpretation": sem.get("interpretation"),
           "embeddings": f"{emb.get('source', '?')} (licence {emb.get('licence', '?')}, {emb.get('dimension', '?')} "
                         "dimensions)",
           "coverage": f"{cov.get('n_covered', '?')} of {cov.get('n_classes', '?')} classes have word vectors",
           "missing": cov.get("missing") or []}
    layers = sem.get("layers") or []
    if out["skipped"] or not layers:
        return out
    names = [layer["name"] for layer in layers]
    adv_runs = largest_per_attack(layers[0]["adversarial"])
    pixels = (sem.get("pixels") or {}).get("two_vs_two")

    series = [Series("clean", [(i, layer["clean"]["two_vs_two"]) for i, layer in enumerate(layers)])]
    series += [Series(f"adversarial {_label(r)}", [(i, run_of(layer, r).get("two_vs_two"))
                                                   for i, layer in enumerate(layers)], dash="dashed")
               for r in adv_runs]
    refs = [Reference(0.5, "chance 0.50")]
    if pixels is not None:
        refs.append(Reference(pixels, f"raw pixels {pixels:.2f}"))
    out["two_vs_two_svg"] = line_chart(series, title="2 vs 2 accuracy against word vectors per layer",
                                       x_label="layer", y_label="2 vs 2 accuracy", categories=names, references=refs,
                                       y_format=two)
    out["adv_runs"] = [_label(r) for r in adv_runs]
    out["layer_rows"] = [{
        "name": layer["name"], "two_vs_two": two(layer["clean"]["two_vs_two"]), "rsa": two(layer["clean"].get("rsa")),
        "p_raw": num(layer["clean"].get("p_value_raw")), "p": num(layer["clean"].get("p_value")),
        "significant": layer["clean"].get("p_value") is not None and layer["clean"]["p_value"] < ALPHA,
        "adv": [f"{two(run_of(layer, r).get('two_vs_two'))} ({signed(run_of(layer, r).get('drift'))})"
                for r in adv_runs],
    } for layer in layers]
    out["pixels"] = two(pixels)
    out.update(_one_vs_two(sem.get("one_vs_two") or [], names, report))
    out.update(_severity(sem.get("severity") or [], report))
    out["run_rows"] = _run_rows(sem.get("one_vs_two") or [], sem.get("severity") or [])
    return out


def _run_rows(flips: list[dict], severities: list[dict]) -> list[dict]:
    """One row per attack and budget: the 1 vs 2 flip layer and the severity of the induced errors."""
    rows: dict[str, dict] = {}
    for r in flips:
        flip = r.get("flip_layer") or ("undetermined" if r.get("flip_status") == "undetermined" else "none")
        rows.setdefault(_label(r), {}).update(scored=r.get("n_scored", "—"), flip=flip)
    for r in severities:
        rows.setdefault(_label(r), {}).update(errors=r.get("n", "—"), mean=num(r.get("mean")),
                                              median=num(r.get("median")))
    keys = ("scored", "flip", "errors", "mean", "median")
    return [{"run": label, **{k: row.get(k, "—") for k in keys}} for label, row in rows.items()]


def _one_vs_two(runs: list[dict], names: list[str], report: dict) -> dict:
    focus = pick_focus(runs, report)
    if focus is None:
        return {"one_vs_two_svg": None}
    flip = focus.get("flip_layer")
    refs = [Reference(0.5, "chance 0.50")]
    if flip in names:
        refs.append(Reference(names.index(flip), f"flip: {flip}", axis="x"))
    svg = line_chart(
        [Series(f"adversarial images ({_label(focus)})", list(enumerate(focus.get("source_like") or []))),
         Series("their clean versions", list(enumerate(focus.get("source_like_clean") or [])), dash="dashed")],
        title=f"1 vs 2: share of successful adversarials still source-like per layer ({_label(focus)})",
        x_label="layer", y_label="source-like share", categories=names, references=refs, y_format=two)
    return {"one_vs_two_svg": svg, "one_vs_two_run": _label(focus), "flip_rule": focus.get("flip_rule")}


def _severity(runs: list[dict], report: dict) -> dict:
    focus = pick_focus(runs, report)
    if focus is None:
        return {"severity_svg": None, "worst": []}
    hist = focus.get("histogram") or {}
    svg = histogram(hist.get("edges") or [], hist.get("counts") or [],
                    title=f"Semantic severity of induced errors ({_label(focus)})",
                    x_label="severity (word-space distance between true and predicted class)",
                    y_label="adversarial images")
    worst = [{"true": w.get("true", "?"), "predicted": w.get("predicted", "?"), "count": w.get("count", "—"),
              "severity": num(w.get("severity")), "distance": num(w.get("word_distance"))}
             for w in focus.get("worst") or []]
    return {"severity_svg": svg, "severity_run": _label(focus), "worst": worst}


def saliency(report: dict, figures: list[dict] | None = None) -> dict | None:
    """``figures``: the example pictures already read by the caller, {"path", "src" or None, "problem"}."""
    sal = (report.get("analyses") or {}).get("saliency")
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
    series += [Series(f"adversarial {_label(r)}", [(i, run_of(layer, r).get("mean")) for i, layer in enumerate(layers)],
                      dash="dashed") for r in adv_runs]
    top = max([p for s in series for _, p in s.points if p is not None] + [1.0])
    out["entropy_svg"] = line_chart(series, title="Saliency-map entropy per layer (mean over images)",
                                    x_label="layer", y_label="entropy (bits)", categories=names,
                                    y_range=(0.0, nice_max(top)), y_format=lambda v: f"{v:g}")
    out["adv_runs"] = [_label(r) for r in adv_runs]
    out["layer_rows"] = [{
        "name": layer["name"], "size": "×".join(str(s) for s in layer.get("map_size") or []),
        "clean": f"{two(layer['clean']['mean'])} ± {two(layer['clean'].get('sd'))}",
        "adv": [(signed(run_of(layer, r).get("delta")), two(run_of(layer, r).get("auroc"))) for r in adv_runs],
    } for layer in layers]
    sup = sal.get("superization") or {}
    out["superization"] = {"statement": sup.get("statement", ""), "index": num(sup.get("index")),
                           "differences": ", ".join(signed(d) for d in sup.get("differences") or [])}
    out["detection"] = [{
        "run": _label(d), "n": d.get("n", "—"), "best_layer": d.get("best_layer") or "—",
        "best_auroc": two(d.get("best_auroc")), "direction": d.get("direction") or "—",
        "detector": (f"{two(d['detector_auroc'])} (held out, n = {d.get('n_test')})"
                     if d.get("detector_auroc") is not None else f"not fitted: {d.get('reason') or 'no reason given'}"),
    } for d in sal.get("detection") or []]
    return out
