"""What the HTML report shows about the attacks: the summary card, robustness curves, the attack table, per-class
robustness, the checks and the run metadata.

Pure functions from the report dict (json.loads of report.json) to plain values and SVG Markup for the template.
Every section may be absent (older reports carry no score, verdict or checks): each builder then returns None or
an empty list, and the template says so.
"""

from __future__ import annotations

from audit.analyses.registry import sections
from reports.formatting import NORM_SIGN, num, num_interval, pct, pct_interval, preprocessing_groups
from reports.gates import is_gated, verdict_summary
from reports.html.charts import MARKERS, PALETTE, Reference, Series, hbar_chart, line_chart
from reports.schema import ensemble_text, reference_entry, targeting

STATUS = {"pass": ("✔", "PASS"), "warn": ("⚠", "WARN"), "fail": ("✖", "FAIL"), "skipped": ("–", "SKIPPED"),
          "not_applicable": ("–", "N/A")}
MAX_CLASS_ROWS = 40


def run_label(attack: str, eps_text: str | None) -> str:
    """attack@eps for a bounded run, "attack (minimal)" for a minimal-perturbation one."""
    return f"{attack}@{eps_text}" if eps_text else f"{attack} (minimal)"


def bounded(attacks: list[dict]) -> list[dict]:
    return [e for e in attacks if e.get("eps") is not None and e.get("robust_accuracy") is not None]


def focus_entry(attacks: list[dict]) -> dict | None:
    """The reference run (``reports.schema.reference_entry``: the strongest attack at the largest budget) when it
    is a bounded entry, else None."""
    e = reference_entry(attacks)
    return e if e is not None and e.get("eps") is not None else None


def finding(report: dict) -> str:
    """One sentence: what the reference run (the strongest attack at the largest budget) leaves of the clean
    accuracy, and for a targeted audit how the targets were chosen."""
    attacks = report.get("attacks") or []
    clean = (report.get("clean") or {}).get("accuracy")
    targets = targeting(report)
    aimed = f" (targeted: {targets}; broken = classified as the target)" if targets else ""
    e = reference_entry(attacks)
    if e is not None and e.get("eps") is not None:
        caveat = "; its budget is below the reference protocol, so robustness may be overestimated" \
            if not e.get("standard_budget", True) else ""
        return (f"Under {e['name']} at {NORM_SIGN.get(e['norm'], e['norm'])} eps {e.get('eps_text') or num(e['eps'])} "
                f"(the strongest attack at the largest budget){aimed}, robust accuracy is {pct(e['robust_accuracy'])}"
                f"{_within(e.get('robust_accuracy_ci'))} against {pct(clean)}"
                f"{_within((report.get('clean') or {}).get('accuracy_ci'))} clean: {e.get('n_success', '?')} of "
                f"{e.get('n_attacked', '?')} correctly "
                f"classified images were broken{caveat}.")
    if e is not None:
        m = e["minimal_perturbation"]
        median = num(m.get("median")) if m.get("median") is not None else "not reached (most samples resisted)"
        return (f"{e['name']} measured minimal {NORM_SIGN.get(e['norm'], e['norm'])} perturbations{aimed}: the "
                f"median is {median} over {m.get('n')} correctly classified images, {m.get('n_failed')} not broken "
                f"(clean accuracy {pct(clean)}).")
    return f"No attack results in this report (clean accuracy {pct(clean)})."


def statistics(report: dict) -> dict | None:
    """The confidence level and the interval methods, as the page names them; None for a report without them."""
    st = report.get("statistics") or {}
    if not st.get("confidence"):
        return None
    return {"level": f"{100 * st['confidence']:g}%", "proportions": st.get("proportions", "?"),
            "means": st.get("means", "?")}


def _within(interval) -> str:
    """`` (interval 31.1–41.9%)`` for a sentence, or nothing without an interval."""
    if not interval or interval[0] is None or interval[1] is None:
        return ""
    return f" (interval {100 * interval[0]:.1f}–{100 * interval[1]:.1f}%)"


def score_view(score: dict | None) -> dict | None:
    """The score with every field present (None where the report lacks it) and its components as rows."""
    if not score:
        return None
    capped = score.get("capped") or None
    components = [{"name": name, "value": c.get("value"), "weight": c.get("weight"), "included": c.get("included"),
                   "formula": c.get("formula", ""), "detail": c.get("detail", "")}
                  for name, c in (score.get("components") or {}).items()]
    return {"value": score.get("value"), "grade": score.get("grade", "?"), "components": components,
            "interval": score.get("interval"), "interval_method": score.get("interval_method", ""),
            "missing": list(score.get("missing") or []), "not_scored": score.get("not_scored"),
            "capped": {"grade": capped.get("grade", "?"), "by": ", ".join(capped.get("by") or []),
                       "applied": capped.get("applied", True), "reason": capped.get("reason", "")}
            if capped else None}


def verdict_view(report: dict) -> dict | None:
    """The verdict as the summary card shows it: PASSED or FAILED only when gates were set, otherwise NO GATES;
    always with the one-line summary (gates, grade, failed checks) the terminal and JUnit print too."""
    verdict = report.get("verdict")
    if not verdict:
        return None
    gates = [{"expression": g.get("expression", "?"), "value": g.get("value"), "passed": bool(g.get("passed"))}
             for g in verdict.get("gates") or []]
    gated = is_gated(verdict)
    failed_checks = any(c.get("status") == "fail" for c in report.get("checks") or [])
    grade = (report.get("score") or {}).get("grade")
    if gated:
        word, icon, kind = ("PASSED", "✔", "pass") if verdict.get("passed") else ("FAILED", "✖", "fail")
    else:
        word, icon, kind = "NO GATES", "–", "unknown"
    if kind != "fail" and (failed_checks or grade == "F"):
        kind = "warn" if kind == "pass" else kind
    return {"passed": bool(verdict.get("passed")), "fail_under": verdict.get("fail_under"),
            "score_passed": verdict.get("score_passed"), "gates": gates, "gated": gated,
            "word": word, "icon": icon, "kind": kind, "summary": verdict.get("summary") or verdict_summary(report)}


def summary(report: dict) -> dict:
    model, data = report.get("model") or {}, report.get("data") or {}
    shape = "×".join(str(s) for s in model.get("input_shape") or [])
    return {
        "score": score_view(report.get("score")),
        "verdict": verdict_view(report),
        "model_name": model.get("label") or model.get("path") or "—",
        "model_detail": ", ".join(x for x in (model.get("format"), model.get("arch"), f"{model.get('num_classes')} "
                                              "classes", f"input {shape}" if shape else None) if x),
        "sha256": model.get("sha256") or "",
        "preprocessing": preprocessing_groups(model.get("preprocessing")),
        "data_source": data.get("source") or "—",
        "data_detail": f"{data.get('format', '?')}, {data.get('n_samples', '?')} of {data.get('n_available', '?')} "
                       f"samples, {len(data.get('classes') or [])} classes",
        "clean": report.get("clean") or {},
        "clean_ci": pct_interval((report.get("clean") or {}).get("accuracy_ci")) if (report.get("clean") or {})
        .get("accuracy_ci") else None,
        "finding": finding(report),
        "findings": findings(report),
        "created": report.get("created"),
    }


def findings(report: dict) -> list[tuple[str, str]]:
    """The analyses' sentences for the summary card, as (section title, sentence), in the sections' order."""
    out = []
    for section in sections():
        sentence = section.finding(report) if section.finding is not None else None
        if sentence:
            out.append((section.title, sentence))
    return out


def _eps_ticks(entries: list[dict], extra: list[float]) -> list[tuple[float, str]]:
    ticks: dict[float, str] = {0.0: "0"}
    for e in entries:
        ticks.setdefault(e["eps"], e.get("eps_text") or f"{e['eps']:g}")
    for v in extra:
        ticks.setdefault(v, f"{v:g}")
    return sorted(ticks.items())


def curves(report: dict, norm: str) -> list[dict]:
    """The robust-accuracy curves of one norm, eps 0 being the clean accuracy: one per bounded attack, and the
    implied curve of each minimal-perturbation attack (the share of samples whose minimal norm exceeds eps)."""
    attacks, clean = report.get("attacks") or [], report.get("clean") or {}
    start = [(0.0, clean["accuracy"], clean.get("accuracy_ci"))] if clean.get("accuracy") is not None else []
    entries = [e for e in bounded(attacks) if e["norm"] == norm]
    out = []
    for name in dict.fromkeys(e["name"] for e in entries):
        mine = [e for e in entries if e["name"] == name]
        points = start + sorted(((e["eps"], e["robust_accuracy"], e.get("robust_accuracy_ci")) for e in mine),
                                key=lambda p: p[0])
        out.append({"name": name, "minimal": False, "median": None, "entries": mine,
                    "points": [p[:2] for p in points], "intervals": [p[2] for p in points]})
    for e in attacks:
        m = e.get("minimal_perturbation")
        if e.get("norm") == norm and m:
            curve = sorted(((p["eps"], p["robust_accuracy"], p.get("robust_accuracy_ci")) for p in m.get("curve") or []),
                           key=lambda p: p[0])
            points = start + curve
            out.append({"name": e["name"], "minimal": True, "median": m.get("median"), "entries": [],
                        "points": [p[:2] for p in points], "intervals": [p[2] for p in points]})
    return out


def _norms(*reports: dict) -> list[str]:
    return list(dict.fromkeys(e["norm"] for r in reports for e in r.get("attacks") or [] if e.get("norm")))


def _ticks(groups: list[dict]) -> list[tuple[float, str]]:
    return _eps_ticks([e for c in groups for e in c["entries"]],
                      [x for c in groups if c["minimal"] for x, _ in c["points"]])


def _curve_label(c: dict) -> str:
    if not c["minimal"]:
        return c["name"]
    median = f"median {num(c['median'])}" if c["median"] is not None else "median not reached"
    return f"{c['name']} (implied by minimal norms; {median})"


def _chart(series: list[Series], groups: list[dict], norm: str, refs: list[Reference]) -> dict:
    sign = NORM_SIGN.get(norm, norm)
    return {"norm": sign, "svg": line_chart(series, title=f"Robust accuracy vs {sign} budget", x_label=f"eps ({sign})",
                                            y_label="robust accuracy", x_ticks=_ticks(groups), references=refs)}


def robustness_charts(report: dict) -> list[dict]:
    """One line chart per norm: a line per attack, dashed for minimal-perturbation attacks with their median."""
    out = []
    for norm in _norms(report):
        groups = curves(report, norm)
        series = [Series(_curve_label(c), c["points"], dash="dashed" if c["minimal"] else "solid",
                         intervals=c["intervals"]) for c in groups]
        refs = [Reference(c["median"], f"{c['name']} median {num(c['median'])}", axis="x")
                for c in groups if c["median"] is not None]
        if series:
            out.append(_chart(series, groups, norm, refs))
    return out


def compare_charts(base: dict, new: dict) -> list[dict]:
    """Both reports' curves in one chart per norm: each attack keeps its colour and marker, solid for the new
    report and dashed for the base (dash-dot and dotted for minimal-perturbation attacks)."""
    out = []
    for norm in _norms(base, new):
        old_groups, new_groups = curves(base, norm), curves(new, norm)
        keys = list(dict.fromkeys((c["name"], c["minimal"]) for c in new_groups + old_groups))
        series = []
        for role, groups, dashes in (("new", new_groups, ("solid", "dashdot")), ("base", old_groups,
                                                                                ("dashed", "dotted"))):
            for c in groups:
                k = keys.index((c["name"], c["minimal"]))
                series.append(Series(f"{role}: {_curve_label(c)}", c["points"], dash=dashes[c["minimal"]],
                                     marker=MARKERS[k % len(MARKERS)], colour=PALETTE[k % len(PALETTE)],
                                     intervals=c["intervals"]))
        if series:
            out.append(_chart(series, old_groups + new_groups, norm, []))
    return out


def minimal_text(m: dict) -> str:
    """Median and quartiles of the minimal norms; a quantile that falls on unbroken samples is infinite (∞)."""
    def q(key: str) -> str:
        return num(m.get(key)) if m.get(key) is not None else "∞"
    ci = f" (interval {num_interval(m['median_ci'])})" if m.get("median_ci") else ""
    return (f"median {q('median')}{ci}, quartiles {q('q25')} – {q('q75')}, mean of the found {num(m.get('mean_of_found'))}; "
            f"{m.get('n_failed')} of {m.get('n')} correctly classified images not broken (∞)")


def attack_rows(report: dict) -> tuple[list[dict], list[tuple[str, str]]]:
    """The attack table's rows and its footnotes (what each perturbation statistic covers)."""
    notes: dict[str, str] = {}
    rows = []
    for e in report.get("attacks") or []:
        p = e.get("perturbation") or {}
        covers = p.get("covers")
        mark = notes.setdefault(covers, chr(ord("a") + len(notes))) if covers else ""
        steps = e.get("steps")
        m = e.get("minimal_perturbation")
        checks = e.get("checks") or {}
        rows.append({
            "name": e.get("name", "?"), "norm": NORM_SIGN.get(e.get("norm"), "?"),
            "title": "" if rows and rows[-1]["name"] == e.get("name", "?") else e.get("title") or "",  # once per run
            "budget": e.get("eps_text") or (num(e["eps"]) if e.get("eps") is not None else ""),
            "mode": e.get("budget_mode", "?"),
            "steps": f"{steps} {e.get('steps_unit') or 'steps'}" if steps else "1 step",
            "standard": e.get("standard_budget", True), "budget_note": e.get("budget_note") or "",
            "targeted": e.get("targeted"),
            "robust": pct(e.get("robust_accuracy") if e.get("failure_rate") is None else e["failure_rate"]),
            "robust_ci": pct_interval(e.get("robust_accuracy_ci") if e.get("failure_rate") is None
                                      else e.get("failure_rate_ci")),
            "success_ci": pct_interval(e.get("success_rate_ci")),
            "robust_note": "" if e.get("failure_rate") is None else "failure rate (not broken)",
            "success": pct(e.get("success_rate")),
            "broken": f"{e.get('n_success', '?')}/{e.get('n_attacked', '?')}",
            "minimal": minimal_text(m) if m else "",
            "ensemble": ensemble_text(e) or "",
            "pert_n": p.get("n"), "linf": f"{num(p.get('linf_mean'))} / {num(p.get('linf_max'))}",
            "l2": f"{num(p.get('l2_mean'))} / {num(p.get('l2_max'))}", "covers": mark,
            "linf_ci": num_interval(p.get("linf_mean_ci")), "l2_ci": num_interval(p.get("l2_mean_ci")),
            "passes": f"{e.get('forward_passes', '?')}/{e.get('backward_passes', '?')}",
            "time": f"{e['wall_time_s']:.1f} s" if e.get("wall_time_s") is not None else "—",
            "violation": f"{num(checks.get('max_eps_violation'), 2)} / {num(checks.get('max_box_violation'), 2)}",
        })
    return rows, [(mark, text) for text, mark in notes.items()]


def per_class(report: dict) -> dict:
    """Clean vs robust accuracy per class at the strongest attack's largest budget (classes with images only)."""
    clean = (report.get("clean") or {}).get("per_class") or []
    e = focus_entry(report.get("attacks") or [])
    robust = (e or {}).get("per_class_robust_accuracy") or []
    by_name = {r["class"]: r for r in robust}
    rows = []
    for i, c in enumerate(clean):
        if not c.get("n"):
            continue
        r = robust[i] if i < len(robust) and robust[i].get("class") == c["class"] else by_name.get(c["class"])
        ra = r["accuracy"] if r else None
        rows.append({"class": c["class"], "n": c["n"], "clean": c.get("accuracy"), "robust": ra,
                     "clean_ci": c.get("accuracy_ci"), "robust_ci": r.get("accuracy_ci") if r else None})
    note = ""
    if len(rows) > MAX_CLASS_ROWS:
        note = (f"showing the {MAX_CLASS_ROWS} classes with the largest drop of {len(rows)} classes with images "
                "(every class is in report.json)")
        rows = sorted(rows, key=lambda r: -((r["clean"] or 0) - (r["robust"] or 0)))[:MAX_CLASS_ROWS]
    if not rows:
        return {"svg": None, "note": "no per-class accuracy in this report", "run": None}
    groups = [("clean", [r["clean"] for r in rows])]
    intervals = [[r["clean_ci"] for r in rows]]
    run = run_label(e["name"], e.get("eps_text")) if e else None
    if e:
        groups.append((f"robust under {run}", [r["robust"] for r in rows]))
        intervals.append([r["robust_ci"] for r in rows])
    svg = hbar_chart([r["class"] for r in rows], groups, title="Clean vs robust accuracy per class",
                     x_label="accuracy", intervals=intervals)
    return {"svg": svg, "note": note or ("" if e else "no bounded attack: clean accuracy only"), "run": run}


def checks(report: dict) -> list[dict] | None:
    items = report.get("checks")
    if items is None:
        return None
    rows = []
    for c in items:
        icon, word = STATUS.get(c.get("status"), ("?", str(c.get("status", "unknown")).upper()))
        numbers = "; ".join(f"{k} = {num(v, 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else v}"
                            for k, v in (c.get("numbers") or {}).items())
        rows.append({"name": c.get("name", "?"), "status": c.get("status", "unknown"), "icon": icon, "word": word,
                     "detail": c.get("detail", ""), "numbers": numbers})
    return rows


def _flat(value: object) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    return "—" if value is None else str(value)


def metadata(report: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """Key-value groups: tool and run, model, data, settings, environment, timings, passes."""
    model, data = report.get("model") or {}, report.get("data") or {}
    attacks = report.get("attacks") or []
    tool = report.get("tool") or {}
    run = [("tool", f"{tool.get('name', '?')} {tool.get('version', '?')}"), ("created", _flat(report.get("created"))),
           ("schema version", _flat(report.get("schema_version"))), ("seed", _flat(report.get("seed"))),
           ("device", _flat(report.get("device")))]
    passes = [("attacks (forward / backward)", f"{sum(e.get('forward_passes', 0) for e in attacks)} / "
                                               f"{sum(e.get('backward_passes', 0) for e in attacks)}")]
    tap = (report.get("analyses") or {}).get("tap") or {}
    passes += [(f"layer tap: {k}", _flat(v)) for k, v in (tap.get("passes") or {}).items()]
    for c in report.get("checks") or []:
        for k, v in (c.get("numbers") or {}).items():
            if "pass" in k or "queries" in k:
                passes.append((f"check {c.get('name', '?')}: {k}", _flat(v)))
    groups = [
        ("Run", run),
        ("Model", [(k, _flat(v)) for k, v in model.items() if k != "preprocessing"]
         + [(f"preprocessing ({source})", values) for source, values in preprocessing_groups(model.get("preprocessing"))]),
        ("Data", [(k, _flat(v)) for k, v in data.items() if k not in ("classes", "class_counts")]
         + [("classes", f"{len(data.get('classes') or [])} (names in the per-class panel and report.json)")]),
        ("Settings", [(k, _flat(v)) for k, v in (report.get("settings") or {}).items()]),
        ("Environment", [(k, _flat(v)) for k, v in (report.get("environment") or {}).items()]),
        ("Timings", [(k, _flat(v)) for k, v in (report.get("timing") or {}).items()]
         + [(f"attack {e.get('name')} {e.get('eps_text') or 'minimal'}", f"{e.get('wall_time_s', 0):.2f} s")
            for e in attacks]),
        ("Passes", passes),
    ]
    if tap.get("layers"):
        rows = [("layers", _flat(tap["layers"])), ("pooling", _flat(tap.get("pooling")))]
        rows += [(f"pooled: {e.get('name')}", str(e.get("pooling"))
                  + (f" ({e['prefix_tokens']} prefix token(s), {'x'.join(map(str, e['grid']))} patch grid)"
                     if e.get("grid") else "")) for e in tap.get("per_layer") or []]
        tokens = tap.get("tokens")
        if tokens:
            rows.append(("token layout", f"{tokens.get('prefix_tokens')} prefix token(s), "
                         f"{'x'.join(map(str, tokens.get('grid') or []))} patch grid; pooled by the "
                         f"{tokens.get('pooling')} ({tokens.get('why')})"))
        groups.append(("Layer tap", rows))
    return groups
