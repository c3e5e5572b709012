"""The terminal summary of an audit (rich). Reads only the result object; every untrusted string is escaped."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.schema import AuditResult, ensemble_text, is_reference, reference_run, targeting


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


NORM_SIGN = {"Linf": "L∞", "L2": "L2"}


def duration(seconds: float) -> str:
    """Wall time in at most four characters: 9.9s, 123s, 45m, 3.4h."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 1000:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 5940 else f"{seconds / 3600:.1f}h"


def count(n: int) -> str:
    """Pass counts in few characters: 812, 8.3k, 27k, 1.2M."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


def attack_table(result: AuditResult, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in [("attack", "left"), ("budget", "right"), ("steps", "right"), ("robust\nacc", "right"),
                         ("success\nrate", "right"), ("mean ‖δ‖\n∞ / ₂", "right"),
                         ("passes\nfwd/bwd", "right"), ("time", "right")]:
        table.add_column(col, justify=justify, no_wrap=True)
    for e in result.attacks:
        steps = str(e["steps"]) if e["steps"] else "1"
        if e["steps_unit"] == "queries":
            steps += "q"
        if not e["standard_budget"]:
            steps = f"[yellow]{steps}*[/]"
        p = e["perturbation"]
        table.add_row(
            escape(e["name"]), f"{NORM_SIGN[e['norm']]} {escape(e['eps_text'] or 'min')}", steps,
            f"[bold]{pct(e['robust_accuracy'])}[/]", pct(e["success_rate"]),
            f"{num(p['linf_mean'], 2)}/{num(p['l2_mean'], 3)}", f"{count(e['forward_passes'])}/{count(e['backward_passes'])}",
            duration(e["wall_time_s"]),
        )
    return table


def render_summary(result: AuditResult, console: Console, report_path: str | None = None) -> None:
    m, d = result.model, result.data
    name = m.get("label") or m["path"]
    console.print(f"[bold]Model[/] {escape(str(name))}  [dim]{m['format']}, sha256 {m['sha256'][:12]}…, "
                  f"{escape(m['load_policy'])}[/]")
    shape = "×".join(str(s) for s in m["input_shape"])
    console.print(f"[bold]Data[/] {escape(str(d['source']))}  [dim]{d['format']}, {d['n_samples']} of "
                  f"{d['n_available']} samples, {len(d['classes'])} classes, input {shape}, seed {result.seed}[/]")
    if d["n_corrupt"]:
        console.print(f"[yellow]{d['n_corrupt']} unreadable images skipped[/]")
    console.print(f"[bold]Clean accuracy[/] {pct(result.clean['accuracy'])} "
                  f"({result.clean['n_correct']}/{result.clean['n']})")
    console.print(attack_table(result))
    if not all(e["standard_budget"] for e in result.attacks):
        console.print("[yellow]*[/] non-standard budget: below the attack's reference protocol (see warnings)")
    for line in budget_mode_notes(result.attacks):
        console.print(f"[dim]{line}[/]")
    for line in minimal_lines(result.attacks):
        console.print(line)
    for e in result.attacks:
        if ensemble_text(e):
            console.print(f"[dim]{escape(ensemble_text(e))}[/]")
    report = result.to_dict()
    targets = targeting(report)
    if targets:
        console.print(f"[bold]Targeted[/] {escape(targets)}: success = classified as the target; robust accuracy = "
                      "still classified correctly")
    ref = reference_run(report)
    if ref is not None:
        budget = f"{NORM_SIGN.get(ref['norm'], ref['norm'])} {ref['eps_text'] or 'min'}"
        console.print(f"[bold]Reference run[/] {escape(ref['name'])} at {escape(budget)} (the strongest attack at the "
                      "largest budget): the analyses' sentences and the score read it")
    render_semantics(result, console)
    render_saliency(result, console)
    render_verdict(result, console)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if report_path:
        console.print(f"report: {escape(report_path)}")


def budget_mode_notes(entries: list[dict]) -> list[str]:
    """Say what an eps list means for the attacks in the table (cumulative vs independent budgets)."""
    modes: dict[str, list[str]] = {}
    for e in entries:
        if e["eps"] is not None and e["name"] not in modes.get(e["budget_mode"], []):
            modes.setdefault(e["budget_mode"], []).append(e["name"])
    if sum(1 for e in entries if e["eps"] is not None) <= len({e["name"] for e in entries}):
        return []  # one budget per attack: nothing to explain
    notes = []
    if "cumulative" in modes:
        notes.append(f"{escape(', '.join(modes['cumulative']))}: a sample counts as broken at eps when any budget "
                     "up to eps broke it (survivors attacked at each larger budget)")
    if "independent" in modes:
        notes.append(f"{escape(', '.join(modes['independent']))}: one-shot, an independent attack at each budget")
    return notes


def minimal_lines(entries: list[dict]) -> list[str]:
    """Minimal-perturbation attacks measure per-sample norms: their median and the accuracy they imply."""
    lines = []
    for e in entries:
        m = e.get("minimal_perturbation")
        if not m:
            continue
        sign = f"‖δ‖{'₂' if e['norm'] == 'L2' else '∞'}"
        median = num(m["median"], 3) if m["median"] is not None else "∞ (most samples resisted)"
        curve = ", ".join(f"{point['eps']:g}→{pct(point['robust_accuracy'])}" for point in m["curve"])
        lines.append(f"[bold]{escape(e['name'])}[/] (minimal {NORM_SIGN[e['norm']]}, no budget): median {sign} "
                     f"{median} over {m['n']} clean-correct samples, {m['n_failed']} not broken; "
                     f"implied accuracy at eps {curve}")
    return lines


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render_semantics(result: AuditResult, console: Console) -> None:
    """The semantic window in a few lines: per layer, clean vs adversarial 2 vs 2 and the 1 vs 2 fraction."""
    sem = result.analyses.get("semantics")
    if not sem:
        return
    if "skipped" in sem:
        console.print(f"[bold]Semantic window[/] skipped: {escape(sem['skipped'])}")
        return
    runs = sem["layers"][0]["adversarial"]
    ref = reference_run(result.to_dict())  # the run the interpretation sentence and the score read
    shown = [i for i, a in enumerate(runs) if is_reference(a, ref)][:1]
    if not shown and runs:  # no analysis of the reference run: the first attack at its largest budget
        shown = [i for i, a in enumerate(runs) if a["attack"] == runs[0]["attack"]][-1:]
    label = f"{runs[shown[0]]['attack']}@{runs[shown[0]]['eps_text']}" if shown else ""
    console.print(f"[bold]Semantic window[/] 2 vs 2 against word vectors (chance 0.50; raw pixels "
                  f"{sem['pixels']['two_vs_two']:.2f}); source-like: share of successful adversarials the 1 vs 2 "
                  "test still puts with their true class (their clean versions: after the slash)")
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("layer", "clean\n2v2", "FDR\np", f"2v2\n{escape(label)}" if shown else "adv\n2v2",
                "source-like\nadv / clean"):
        table.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for layer in sem["layers"]:
        c = layer["clean"]
        adv = layer["adversarial"][shown[0]] if shown else None
        table.add_row(
            escape(layer["name"]), f"{c['two_vs_two']:.2f}", f"{c['p_value']:.3f}",
            _rate(adv["two_vs_two"]) if adv else "—",
            f"{_rate(adv['source_like'])} / {_rate(adv['source_like_clean'])}" if adv else "—",
        )
    console.print(table)
    console.print(escape(sem["interpretation"]))
    for note in sem.get("notes", []):
        console.print(f"[dim]note: {escape(note)}[/]")


def render_saliency(result: AuditResult, console: Console) -> None:
    """The saliency-entropy profile in a few lines: clean entropy by depth, its shift and AUROC per attack."""
    sal = result.analyses.get("saliency")
    if not sal:
        return
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


STATUS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]",
          "skipped": "[dim]skipped[/]", "not_applicable": "[dim]n/a[/]"}
TALLY = (("pass", "passed"), ("fail", "failed"), ("warn", "warned"), ("skipped", "skipped"),
         ("not_applicable", "not applicable"))


def render_verdict(result: AuditResult, console: Console) -> None:
    """Checks (only those that did not pass, and a count), the score with its components, and the verdict."""
    from reports.gates import verdict_summary

    checks = result.checks or []
    if checks:
        tally = ", ".join(f"{sum(c['status'] == status for c in checks)} {word}" for status, word in TALLY
                          if any(c["status"] == status for c in checks))
        console.print(f"[bold]Checks[/] {len(checks)}: {tally}")
    for c in checks:
        if c["status"] != "pass":
            console.print(f"  {STATUS.get(c['status'], escape(c['status']))} {escape(c['name'])}: "
                          f"{escape(c['detail'])}")
    score = result.score or {}
    if score.get("not_scored"):
        console.print(f"[bold]Score[/] {escape(score['not_scored'])}")
    elif score.get("value") is not None:
        parts = ", ".join(f"{name} {comp['value']:.2f}" for name, comp in score["components"].items()
                          if comp.get("included"))
        console.print(f"[bold]Score[/] {score['value']:.1f}/100, grade [bold]{score['grade']}[/] ({parts})")
        capped = score.get("capped")
        if capped:
            word = "capped:" if capped.get("applied", True) else "failed checks:"
            console.print(f"  [yellow]{word}[/] {escape(capped['reason'])}")
    if score.get("value") is not None or score.get("not_scored"):
        for name in score.get("missing", []):
            console.print(f"  [dim]left out: {escape(name)}: {escape(score['components'][name]['detail'])}[/]")
    verdict = result.verdict or {}
    if verdict or score:
        report = {"checks": checks, "score": score, "verdict": verdict}
        line = verdict.get("summary") or verdict_summary(report)
        bad = verdict.get("passed") is False or any(c["status"] == "fail" for c in checks) or \
            score.get("grade") == "F"
        colour = "bold red" if bad else "green" if verdict.get("gated") else "default"
        console.print(f"[bold]Verdict[/] [{colour}]{escape(line)}[/]")
        for gate in verdict.get("gates", []):
            mark = "pass" if gate["passed"] else "FAIL"
            console.print(f"  {mark} {escape(gate['detail'])}")
        if verdict.get("fail_under") is not None:
            mark = "pass" if verdict.get("score_passed") else "FAIL"
            shown = "none" if score.get("value") is None else f"{score['value']:.1f}"
            console.print(f"  {mark} score {shown} >= {verdict['fail_under']:g}")


def contrast_table(results: dict[str, AuditResult]) -> Table:
    """Robust accuracy of several audited models side by side, one row per attack and budget."""
    table = Table(title="robust accuracy", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("attack")
    table.add_column("budget", justify="right")
    for key in results:
        table.add_column(escape(key), justify="right")
    first = next(iter(results.values()))
    table.add_row("clean", "—", *[pct(r.clean["accuracy"]) for r in results.values()])
    for i, entry in enumerate(first.attacks):
        row = [pct(r.attacks[i]["robust_accuracy"]) if i < len(r.attacks) else "—" for r in results.values()]
        table.add_row(escape(entry["name"]), f"{NORM_SIGN[entry['norm']]} {escape(entry['eps_text'] or 'min')}", *row)
    return table
