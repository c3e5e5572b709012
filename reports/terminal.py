"""The terminal summary of an audit (rich). Reads only the result object; every untrusted string is escaped."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from audit.analyses.registry import sections
from reports.formatting import NORM_SIGN, num, num_interval, pct, pct_pm, preprocessing_groups
from reports.schema import AuditResult, ensemble_text, reference_run, targeting


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
                         ("success\nrate", "right"), ("mean ‖δ‖\n∞ / ₂", "right"), ("time", "right")]:
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
            f"[bold]{pct_pm(e['robust_accuracy'], e.get('robust_accuracy_ci'))}[/]",
            pct_pm(e["success_rate"], e.get("success_rate_ci")),
            f"{num(p['linf_mean'], 2)}/{num(p['l2_mean'], 3)}", duration(e["wall_time_s"]),
        )
    return table


def passes_line(entries: list[dict]) -> str:
    """The model passes each attack cost, forward/backward, summed over its budgets."""
    totals: dict[str, list[int]] = {}
    for e in entries:
        done = totals.setdefault(e["name"], [0, 0])
        done[0] += e["forward_passes"]
        done[1] += e["backward_passes"]
    return "model passes (forward/backward): " + ", ".join(
        f"{escape(name)} {count(f)}/{count(b)}" for name, (f, b) in totals.items())


def render_summary(result: AuditResult, console: Console, report_path: str | None = None) -> None:
    m, d = result.model, result.data
    name = m.get("label") or m["path"]
    console.print(f"[bold]Model[/] {escape(str(name))}  [dim]{m['format']}, sha256 {m['sha256'][:12]}…, "
                  f"{escape(m['load_policy'])}[/]")
    shape = "×".join(str(s) for s in m["input_shape"])
    console.print(f"[bold]Data[/] {escape(str(d['source']))}  [dim]{d['format']}, {d['n_samples']} of "
                  f"{d['n_available']} samples, {len(d['classes'])} classes, input {shape}, seed {result.seed}[/]")
    groups = preprocessing_groups(m.get("preprocessing"))
    if groups:
        console.print("[bold]Preprocessing[/] " + "; ".join(f"{escape(values)} [dim]({escape(source)})[/]"
                                                            for source, values in groups))
    if d["n_corrupt"]:
        console.print(f"[yellow]{d['n_corrupt']} unreadable images skipped[/]")
    confidence = (result.statistics or {}).get("confidence")
    level = f"; ± {100 * confidence:g}% interval, {escape(result.statistics['proportions'].split(' (')[0])}" \
        if confidence else ""
    console.print(f"[bold]Clean accuracy[/] {pct_pm(result.clean['accuracy'], result.clean.get('accuracy_ci'))} "
                  f"({result.clean['n_correct']}/{result.clean['n']}{level})")
    console.print(attack_table(result))
    console.print(f"[dim]± the {100 * confidence:g}% interval (percentage points); "
                  f"{passes_line(result.attacks)}[/]" if confidence else f"[dim]{passes_line(result.attacks)}[/]")
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
    render_analyses(result, console)
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
        if m.get("median_ci"):
            median += f" {num_interval(m['median_ci'])}"
        curve = ", ".join(f"{point['eps']:g}→{pct(point['robust_accuracy'])}" for point in m["curve"])
        lines.append(f"[bold]{escape(e['name'])}[/] (minimal {NORM_SIGN[e['norm']]}, no budget): median {sign} "
                     f"{median} over {m['n']} clean-correct samples, {m['n_failed']} not broken; "
                     f"implied accuracy at eps {curve}")
    return lines


def render_analyses(result: AuditResult, console: Console) -> None:
    """Each registered analysis's lines (audit/analyses/NAME/report.py), in the sections' order, for the sections
    the report has."""
    for section in sections():
        if section.terminal is not None and result.analyses.get(section.key):
            section.terminal(result, console)


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
        parts = ", ".join(f"{name} {comp['value']:.2f}" + (f" ({comp['source']})" if comp.get("source") else "")
                          for name, comp in score["components"].items() if comp.get("included"))
        bounds = score.get("interval")
        shown = f"{score['value']:.1f}" + (f" [{bounds[0]:.1f}, {bounds[1]:.1f}]" if bounds else "")
        console.print(f"[bold]Score[/] {shown}/100, grade [bold]{score['grade']}[/] ({parts})")
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
    table.add_row("clean", "—", *[pct_pm(r.clean["accuracy"], r.clean.get("accuracy_ci")) for r in results.values()])
    for i, entry in enumerate(first.attacks):
        row = [pct_pm(r.attacks[i]["robust_accuracy"], r.attacks[i].get("robust_accuracy_ci"))
               if i < len(r.attacks) else "—" for r in results.values()]
        table.add_row(escape(entry["name"]), f"{NORM_SIGN[entry['norm']]} {escape(entry['eps_text'] or 'min')}", *row)
    return table
