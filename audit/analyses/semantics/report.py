"""The semantic window in the report: its terminal lines, its HTML panel, its score components and gate metrics.

Reads only report.json's ``analyses.semantics`` section (plain data); imports neither torch nor numpy.

Score components (each in [0, 1], higher = more robust; read at the reference run, see reports.score). Each
carries ``n``, the images it rests on, and ``too_few``: whether that is below MIN_SCORED_FOR_SCORE (20), the
rule that keeps a handful of images from swinging the score.
    severity (weight 0.15)
        At the reference run: 1 − s · min(m, 2) / 2, where s = n_success / n_attacked of its attack entry (the
        share of clean-correct samples the attack broke) and m the mean severity of those errors, 1 = as bad as
        an average confusion, from one source (the component's ``source``, named in its detail):
        - ``hierarchy`` when the report has a hierarchy section (analyses.hierarchy, not skipped) with a
          measurement of the reference run: m = the mean LCA height of the attack's mistakes in the WordNet class
          tree over the mean LCA height a uniformly random wrong class would have for the same samples (the
          section's ``mean`` / ``baseline_mean``), so 1 = as bad as a random confusion; only mistakes whose two
          classes have a synset are scored (``n``), and their mean stands for all;
        - else ``word vectors``: m = analyses.semantics.severity's mean (word-vector distance of true and
          predicted class over the mean distance between classes, 1 = an average confusion); only errors whose
          two classes have word vectors are scored, and their mean stands for all.
        ``n``: the errors scored. 1 when nothing broke; missing when neither section measured the run (or the
        semantic section is absent or skipped), no broken sample was scored, or fewer than MIN_SCORED_FOR_SCORE
        errors were (too_few; the source is never switched to escape it).
    representation (weight 0.15)
        At the last semantic layer and the reference run, the mean of the parts that exist:
        (a) 2 vs 2 retention clip((adv_2v2 − 0.5) / (clean_2v2 − 0.5), 0, 1), only when clean_2v2 > 0.5;
        (b) 1 vs 2 retention clip(source_like / source_like_clean, 0, 1), only when source_like_clean > 0 and
            at least MIN_SCORED_FOR_SCORE adversarials were scored by the 1 vs 2 test (``n``); with fewer the
            component keeps its 2v2 part alone (too_few only when no part is left).
        Missing when there is no semantic layer, the reference run attacked no sample (the adversarial
        representations would be the clean ones, a retention of 1 measured on nothing), or neither part exists.

Terminal and panel show each share and mean with its interval as ``value [lo,hi]`` (Wilson for the 1 vs 2
shares, percentile bootstrap for the severity), and the adjusted p-values of the 1 vs 2 tests; every sentence
comes from the analysis (``interpretation``, the flip note), which states a direction only when it is
significant.

Spaces (``--semantic-space``): the section's main fields (layers, pixels, one_vs_two, interpretation, notes)
describe the space ``space`` names (the first chosen: ``glove`` when chosen, so the score, the gates and ``audit
compare`` read the word vectors as before); ``spaces[KEY]`` describes every chosen space (measure, source,
coverage) and, for the other space, holds its own figures under the same field names; ``between_spaces`` is the
RSA between the two spaces. A report without ``space`` (before schema 2.2) has the word space alone
(``space_figures``). Terminal and panel show the clean 2 vs 2 per layer of both spaces side by side, the RSA
between them and each space's interpretation.

Gate metrics: ``semantics.two_vs_two[LAYER]``, the clean 2 vs 2 accuracy per semantic layer of the main space;
``semantics.wordnet.two_vs_two[LAYER]``, the same against WordNet (when the audit measured it).
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.markup import escape
from rich.table import Table

from audit.analyses.hierarchy.report import KEY as HIERARCHY
from audit.analyses.registry import GateFamily, ScoreComponent, Section
from reports.formatting import fixed_interval, num, signed, two
from reports.html.analysis_panels import label, largest_per_attack, pick_focus, run_of
from reports.html.charts import Reference, Series, histogram, line_chart
from reports.schema import is_reference, reference_run
from reports.score import attacked_nothing, clip, find_run, no_layers, run_name

KEY = "semantics"
ALPHA = 0.05  # the FDR-adjusted p value under which a layer's 2 vs 2 counts as significant (older reports)
MAX_SEVERITY = 2.0
MIN_SCORED_FOR_SCORE = 20  # fewer scored images: the 1 vs 2 part of representation, and severity, are left out


SPACE_NAMES = {"glove": "word vectors", "wordnet": "WordNet (Wu-Palmer)"}


def space_figures(sem: dict) -> list[tuple[str, dict]]:
    """Each chosen space's key and figures, the main space first: the section itself for the main space, its
    ``spaces`` entry for the other (which may be ``skipped``). A report before the spaces: the word space alone."""
    main = sem.get("space", "glove")
    out = [(main, sem)]
    for key, entry in (sem.get("spaces") or {}).items():
        if key != main:
            out.append((key, entry))
    return out


def space_label(sem: dict, key: str) -> str:
    """A space's short name: GloVe for the shipped or a GloVe file's vectors, else "words"; WordNet."""
    if key == "wordnet":
        return "WordNet"
    return "GloVe" if "glove" in str((sem.get("embeddings") or {}).get("source", "")).lower() else "words"


def between_text(sem: dict) -> str | None:
    """The RSA between the two spaces in one sentence that calls the agreement significant only when it is."""
    between = sem.get("between_spaces")
    if not between:
        return None
    names = " and ".join(space_label(sem, key) for key, _ in space_figures(sem))
    if between.get("rsa") is None:
        return f"RSA between {names}: not measured ({between.get('skipped', 'no reading')})"
    alpha = sem.get("alpha", ALPHA)
    n = between["n_classes"]
    verdict = ("the two spaces' class similarities agree, significantly" if between["p_value"] < alpha else
               "no significant agreement between the spaces at this number of classes")
    return (f"RSA between {names}: {between['rsa']:.2f} (Spearman over the {n * (n - 1) // 2:,} pairs of the {n:,} "
            f"classes both cover, permutation p = {between['p_value']:.2g}): {verdict}; a finding that holds against one "
            "space only depends on the space")


def with_interval(value: float | None, ci) -> str:
    """``0.27 [0.10,0.52]``: a value with its interval (two decimals); the value alone without one."""
    if value is None:
        return "—"
    return f"{value:.2f}" + ("" if not ci else f" {fixed_interval(ci, sep=',')}")


# --- the terminal summary -----------------------------------------------------------------------------------

def terminal(result, console) -> None:
    """The semantic window in a few lines: per layer, clean vs adversarial 2 vs 2 and the 1 vs 2 fraction."""
    sem = result.analyses[KEY]
    if "skipped" in sem:
        console.print(f"[bold]Semantic window[/] skipped: {escape(sem['skipped'])}")
        return
    runs = sem["layers"][0]["adversarial"]
    ref = reference_run(result.to_dict())  # the run the interpretation sentence and the score read
    shown = [i for i, a in enumerate(runs) if is_reference(a, ref)][:1]
    if not shown and runs:  # no analysis of the reference run: the first attack at its largest budget
        shown = [i for i, a in enumerate(runs) if a["attack"] == runs[0]["attack"]][-1:]
    run_text = f"{runs[shown[0]]['attack']}@{runs[shown[0]]['eps_text']}" if shown else ""
    spaces = space_figures(sem)
    measured = [(key, fig) for key, fig in spaces if "skipped" not in fig]
    if len(spaces) == 1:
        console.print(f"[bold]Semantic window[/] 2 vs 2 against word vectors (chance 0.50; raw pixels "
                      f"{sem['pixels']['two_vs_two']:.2f})")
    else:
        pixels = ", ".join(f"{space_label(sem, k)} {f['pixels']['two_vs_two']:.2f}" for k, f in measured)
        console.print(f"[bold]Semantic window[/] 2 vs 2 against {' and '.join(SPACE_NAMES[k] for k, _ in spaces)} "
                      f"(chance 0.50; raw pixels {pixels})")
    # the main space: clean 2v2, FDR p and the shown run's 2v2; each other space: clean 2v2 and FDR p (80 columns)
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer", justify="left", no_wrap=True)
    for n, (key, _) in enumerate(measured):
        cols = ["clean\n2v2" if len(spaces) == 1 else f"clean\n{space_label(sem, key)}", "FDR\np"]
        if n == 0:
            cols.append(f"2v2\n{escape(run_text)}" if shown else "adv\n2v2")
        for col in cols:
            table.add_column(col, justify="right", no_wrap=True)
    for i, layer in enumerate(sem["layers"]):
        cells = [escape(layer["name"])]
        for n, (_, fig) in enumerate(measured):
            c = fig["layers"][i]["clean"]
            cells += [f"{c['two_vs_two']:.2f}", f"{c['p_value']:.3f}"]
            if n == 0:
                adv = fig["layers"][i]["adversarial"][shown[0]] if shown else None
                cells.append(two(adv["two_vs_two"]) if adv else "—")
        table.add_row(*cells)
    console.print(table)
    for key, fig in spaces:
        if "skipped" in fig:
            console.print(f"{space_label(sem, key)}: {escape(fig['skipped'])}")
    if between_text(sem):
        console.print(escape(between_text(sem)))
    if shown:
        _one_vs_two_table(sem, shown[0], run_text, console)
    console.print(escape(sem["interpretation"]))
    for key, fig in spaces[1:]:
        if fig.get("interpretation"):
            text = fig["interpretation"]
            console.print(f"Against {space_label(sem, key)}: {escape(text[:1].lower() + text[1:])}")
    sev = next((r for r in sem.get("severity") or [] if is_reference(r, ref)), None)
    if sev and sev.get("mean") is not None:
        console.print(f"Severity of the {sev['n']} errors scored under {escape(label(sev))}: mean "
                      f"{with_interval(sev['mean'], sev.get('mean_ci'))}, median "
                      f"{with_interval(sev['median'], sev.get('median_ci'))} (1 = an average confusion)")
    for note in sem.get("notes", []):
        console.print(f"[dim]note: {escape(note)}[/]")
    for key, fig in spaces[1:]:
        for note in fig.get("notes", []):
            console.print(f"[dim]note ({space_label(sem, key)}): {escape(note)}[/]")


def _one_vs_two_table(sem: dict, at: int, run_text: str, console) -> None:
    """The 1 vs 2 shares of the shown run per layer, with their intervals and the adjusted p-values of its tests."""
    n = sem["layers"][0]["adversarial"][at].get("n_scored")
    if not n:
        console.print(f"1 vs 2 under {escape(run_text)}: no successful adversarial scored")
        return
    console.print(f"1 vs 2 under {escape(run_text)}: share of the {n} successful adversarials scored that a layer "
                  f"still puts with their true class, and of their clean versions ({_level(sem)} intervals); q: "
                  "one-sided exact tests, Benjamini-Hochberg adjusted across layers")
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("layer", "source-like\nadversarial", "source-like\nclean", "q adv\n< clean", "q adv\n< 0.5"):
        table.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for layer in sem["layers"]:
        adv = layer["adversarial"][at]
        table.add_row(escape(layer["name"]), with_interval(adv.get("source_like"), adv.get("source_like_ci")),
                      with_interval(adv.get("source_like_clean"), adv.get("source_like_clean_ci")),
                      num(adv.get("q_vs_clean"), 2), num(adv.get("q_below_half"), 2))
    console.print(table)


def _level(sem: dict) -> str:
    return f"{100 * sem.get('confidence', 0.95):g}%"


# --- the HTML panel -----------------------------------------------------------------------------------------

def panel(report: dict, figures: list[dict] | None = None) -> dict | None:
    sem = (report.get("analyses") or {}).get(KEY)
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
    alpha = sem.get("alpha", ALPHA)
    out["alpha"], out["level"] = num(alpha, 2), _level(sem)

    series = [Series("clean", [(i, layer["clean"]["two_vs_two"]) for i, layer in enumerate(layers)])]
    series += [Series(f"adversarial {label(r)}", [(i, run_of(layer, r).get("two_vs_two"))
                                                  for i, layer in enumerate(layers)], dash="dashed")
               for r in adv_runs]
    band = [(i, layer["clean"].get("chance_upper")) for i, layer in enumerate(layers)]
    if any(y is not None for _, y in band):  # the upper end of chance: 2v2 values label permutations reach
        series.append(Series(f"chance: {out['level']} of label permutations stay below", band, dash="dotted",
                             marker="bar", colour="#666666"))
    refs = [Reference(0.5, "chance 0.50")]
    if pixels is not None:
        refs.append(Reference(pixels, f"raw pixels {pixels:.2f}"))
    out["two_vs_two_svg"] = line_chart(series, title="2 vs 2 accuracy against word vectors per layer",
                                       x_label="layer", y_label="2 vs 2 accuracy", categories=names, references=refs,
                                       y_format=two)
    out["adv_runs"] = [label(r) for r in adv_runs]
    out["layer_rows"] = [{
        "name": layer["name"], "two_vs_two": two(layer["clean"]["two_vs_two"]), "rsa": two(layer["clean"].get("rsa")),
        "p_raw": num(layer["clean"].get("p_value_raw")), "p": num(layer["clean"].get("p_value")),
        "significant": layer["clean"].get("p_value") is not None and layer["clean"]["p_value"] < alpha,
        "adv": [f"{two(run_of(layer, r).get('two_vs_two'))} ({signed(run_of(layer, r).get('drift'))})"
                for r in adv_runs],
    } for layer in layers]
    out["pixels"] = two(pixels)
    focus = pick_focus(layers[0]["adversarial"], report)
    out.update(_spaces(sem, names, [focus] if focus else []))
    out.update(_one_vs_two(sem.get("one_vs_two") or [], names, report))
    out.update(_severity(sem.get("severity") or [], report))
    out["run_rows"] = _run_rows(sem.get("one_vs_two") or [], sem.get("severity") or [])
    return out


def _spaces(sem: dict, names: list[str], adv_runs: list[dict]) -> dict:
    """The spaces side by side: what each is and where it came from, the clean 2 vs 2 per layer of each (a chart with
    each space's chance band, and a table with the adversarial 2v2 of the reference run), the RSA between them, and
    each other space's interpretation and notes."""
    spaces = space_figures(sem)
    about = [{"name": space_label(sem, key), "measure": (sem.get("spaces") or {}).get(key, {}).get("measure", ""),
              "source": (sem.get("spaces") or {}).get(key, {}).get("source", ""),
              "main": i == 0, "skipped": fig.get("skipped")} for i, (key, fig) in enumerate(spaces)]
    out = {"spaces": about if sem.get("spaces") else [], "space_main": space_label(sem, spaces[0][0])}
    measured = [(key, fig) for key, fig in spaces if "skipped" not in fig and fig.get("layers")]
    if len(spaces) < 2 or len(measured) < 2:
        out["others"] = [{"name": space_label(sem, k), "interpretation": f.get("interpretation"),
                          "notes": f.get("notes") or []} for k, f in spaces[1:]]
        return out
    series, refs = [], [Reference(0.5, "chance 0.50")]
    colours = ("#1f77b4", "#d62728")
    for (key, fig), colour in zip(measured, colours, strict=False):
        name = space_label(sem, key)
        series.append(Series(f"{name}, clean", [(i, layer["clean"]["two_vs_two"]) for i, layer in enumerate(fig["layers"])],
                             colour=colour))
        band = [(i, layer["clean"].get("chance_upper")) for i, layer in enumerate(fig["layers"])]
        if any(y is not None for _, y in band):
            series.append(Series(f"{name}: chance band ({_level(sem)} of label permutations below)", band,
                                 dash="dotted", marker="bar", colour=colour))
    out["spaces_svg"] = line_chart(series, title="Clean 2 vs 2 accuracy per layer against each semantic space",
                                   x_label="layer", y_label="2 vs 2 accuracy", categories=names, references=refs,
                                   y_format=two)
    alpha = sem.get("alpha", ALPHA)
    out["space_names"] = [space_label(sem, key) for key, _ in measured]
    out["space_runs"] = [label(r) for r in adv_runs]
    out["space_rows"] = [{"name": name, "cells": [{
        "two_vs_two": two(fig["layers"][i]["clean"]["two_vs_two"]), "rsa": two(fig["layers"][i]["clean"].get("rsa")),
        "p": num(fig["layers"][i]["clean"].get("p_value")),
        "significant": (fig["layers"][i]["clean"].get("p_value") or 1.0) < alpha,
        "adv": [two(run_of(fig["layers"][i], r).get("two_vs_two")) for r in adv_runs]} for _, fig in measured]}
        for i, name in enumerate(names)]
    out["between"] = between_text(sem)
    out["others"] = [{"name": space_label(sem, k), "interpretation": f.get("interpretation"),
                      "notes": f.get("notes") or []} for k, f in spaces[1:]]
    return out


FLIP_STATUS = {"inconclusive": "none (inconclusive)", "no_power": "none (the test has no power here)",
               "not_measured": "not measured"}


def _run_rows(flips: list[dict], severities: list[dict]) -> list[dict]:
    """One row per attack and budget: the 1 vs 2 flip layer (or why none) and the severity of the induced errors
    with its intervals."""
    rows: dict[str, dict] = {}
    for r in flips:
        flip = r.get("flip_layer") or FLIP_STATUS.get(r.get("flip_status"), r.get("flip_status") or "none")
        rows.setdefault(label(r), {}).update(scored=r.get("n_scored", "—"), flip=flip, note=r.get("flip_note"))
    for r in severities:
        rows.setdefault(label(r), {}).update(errors=r.get("n", "—"), mean=with_interval(r.get("mean"), r.get("mean_ci")),
                                             median=with_interval(r.get("median"), r.get("median_ci")))
    keys = ("scored", "flip", "note", "errors", "mean", "median")
    return [{"run": name, **{k: row.get(k, "—") for k in keys}} for name, row in rows.items()]


def _one_vs_two(runs: list[dict], names: list[str], report: dict) -> dict:
    focus = pick_focus(runs, report)
    if focus is None:
        return {"one_vs_two_svg": None}
    flip = focus.get("flip_layer")
    refs = [Reference(0.5, "chance 0.50")]
    if flip in names:
        refs.append(Reference(names.index(flip), f"flip: {flip}", axis="x"))
    svg = line_chart(
        [Series(f"adversarial images ({label(focus)})", list(enumerate(focus.get("source_like") or [])),
                intervals=focus.get("source_like_ci") or ()),
         Series("their clean versions", list(enumerate(focus.get("source_like_clean") or [])), dash="dashed",
                intervals=focus.get("source_like_clean_ci") or ())],
        title=f"1 vs 2: share of successful adversarials still source-like per layer ({label(focus)})",
        x_label="layer", y_label="source-like share", categories=names, references=refs, y_format=two)
    rows = [{"name": name, "adv": with_interval(_at(focus, "source_like", i), _at(focus, "source_like_ci", i)),
             "clean": with_interval(_at(focus, "source_like_clean", i), _at(focus, "source_like_clean_ci", i)),
             "p_below": num(_at(focus, "p_below_half", i)), "q_below": num(_at(focus, "q_below_half", i)),
             "p_vs": num(_at(focus, "p_vs_clean", i)), "q_vs": num(_at(focus, "q_vs_clean", i)),
             "q_clean": num(_at(focus, "q_clean_above_half", i)), "flip": name == flip}
            for i, name in enumerate(names)]
    return {"one_vs_two_svg": svg, "one_vs_two_run": label(focus), "flip_rule": focus.get("flip_rule"),
            "one_vs_two_rows": rows if "source_like_ci" in focus else [], "one_vs_two_n": focus.get("n_scored"),
            "flip_note": focus.get("flip_note")}


def _at(run: dict, key: str, i: int):
    values = run.get(key) or []
    return values[i] if i < len(values) else None


def _severity(runs: list[dict], report: dict) -> dict:
    focus = pick_focus(runs, report)
    if focus is None:
        return {"severity_svg": None, "worst": []}
    hist = focus.get("histogram") or {}
    svg = histogram(hist.get("edges") or [], hist.get("counts") or [],
                    title=f"Semantic severity of induced errors ({label(focus)})",
                    x_label="severity (word-space distance between true and predicted class)",
                    y_label="adversarial images")
    worst = [{"true": w.get("true", "?"), "predicted": w.get("predicted", "?"), "count": w.get("count", "—"),
              "severity": num(w.get("severity")), "distance": num(w.get("word_distance"))}
             for w in focus.get("worst") or []]
    return {"severity_svg": svg, "severity_run": label(focus), "worst": worst}


def finding(report: dict) -> str | None:
    """The interpretation sentence, for the summary card (None when the section is absent or skipped)."""
    sem = (report.get("analyses") or {}).get(KEY) or {}
    return sem.get("interpretation") if "skipped" not in sem else None


# --- the score components -----------------------------------------------------------------------------------

def _section(report: dict) -> tuple[dict | None, str]:
    sem = report.get("analyses", {}).get(KEY)
    if not sem:
        why = no_layers(report)
        return None, f"no semantic analysis in the report: {why}" if why else \
            "no semantic analysis in the report (no word vectors, or --layers none)"
    if "skipped" in sem:
        return None, f"semantic analysis skipped: {sem['skipped']}"
    return sem, ""


def severity(report: dict, ref: dict | None) -> tuple[float | None, str]:
    """The severity component (module docstring): from the class hierarchy when the report's hierarchy section
    measured the reference run, else from the word vectors; the third item's ``source`` says which."""
    tree = (report.get("analyses") or {}).get(HIERARCHY) or {}
    entry = None if ref is None or "skipped" in tree else find_run(tree.get("adversarial") or [], ref)
    if entry is not None:
        mean, chance = entry.get("mean"), entry.get("baseline_mean")  # chance > 0: distinct classes differ
        return _graded(ref, entry, "hierarchy", mean / chance if mean is not None and chance else None)
    sem, why = _section(report)
    if sem is None or ref is None:
        return None, why or "no attack run to read it at"
    entry = find_run(sem.get("severity", []), ref)
    return _graded(ref, entry or {}, "word vectors", (entry or {}).get("mean"))


def _graded(ref: dict, entry: dict, source: str, m: float | None) -> tuple:
    """1 - s · min(m, MAX_SEVERITY) / MAX_SEVERITY for the reference run ``ref`` and the severity ``m`` its
    ``entry`` (a measurement of ``source``) gives, or why not."""
    if not ref.get("n_attacked"):
        return None, f"{run_name(ref)} attacked no clean-correct sample"
    share = ref["n_success"] / ref["n_attacked"]
    if ref["n_success"] == 0:
        return 1.0, f"{run_name(ref)} broke no clean-correct sample"
    if m is None:
        return None, (f"no broken sample of {run_name(ref)} has word vectors for both its classes"
                      if source == "word vectors" else
                      f"no mistake of {run_name(ref)} was scored in the class hierarchy (both classes need a synset)")
    n = entry.get("n", 0)
    size = {"n": n, "too_few": n < MIN_SCORED_FOR_SCORE, "source": source}
    if source == "hierarchy":
        measured = (f"mistakes of mean LCA height {with_interval(entry['mean'], entry.get('mean_ci'))} against "
                    f"{entry['baseline_mean']:.2f} for a random wrong class: severity {m:.2f}")
        unit = "1 = as bad as a random confusion"
    else:
        measured, unit = f"mean severity {with_interval(m, entry.get('mean_ci'))}", \
            "1 = an average confusion between two classes"
    if size["too_few"]:
        return None, (f"{source}: only {n} errors of {run_name(ref)} scored ({measured}; {unit}); the component "
                      f"needs at least {MIN_SCORED_FOR_SCORE}"), size
    value = clip(1.0 - share * min(m, MAX_SEVERITY) / MAX_SEVERITY)
    return value, (f"{source}: {run_name(ref)} broke {100 * share:.1f}% of the clean-correct samples with "
                   f"{measured} ({unit}; {n} errors scored)"), size


def representation(report: dict, ref: dict | None) -> tuple[float | None, str]:
    sem, why = _section(report)
    if sem is None or not sem.get("layers") or ref is None:
        return None, why or ("no semantic layer in the report" if ref is not None else "no attack run to read it at")
    if attacked_nothing(ref):
        return None, attacked_nothing(ref)
    last = sem["layers"][-1]
    adv = find_run(last.get("adversarial", []), ref)
    if adv is None:
        return None, f"no semantic measurement of {run_name(ref)} at layer {last['name']}"
    parts, notes = [], []
    clean_tvt, adv_tvt = last["clean"]["two_vs_two"], adv.get("two_vs_two")
    if clean_tvt is not None and clean_tvt > 0.5 and adv_tvt is not None:
        parts.append(clip((adv_tvt - 0.5) / (clean_tvt - 0.5)))
        notes.append(f"2v2 {clean_tvt:.2f} clean → {adv_tvt:.2f} adversarial (retention {parts[-1]:.2f})")
    else:
        notes.append(f"2v2 left out (clean 2v2 {clean_tvt if clean_tvt is None else round(clean_tvt, 2)} "
                     "is not above chance)")
    src, src_clean = adv.get("source_like"), adv.get("source_like_clean")
    n = adv.get("n_scored") or 0
    few = n < MIN_SCORED_FOR_SCORE
    if src is not None and src_clean and not few:
        parts.append(clip(src / src_clean))
        notes.append(f"source-like {src:.2f} vs {src_clean:.2f} for the clean versions (retention {parts[-1]:.2f}; "
                     f"{n} adversarials scored)")
    elif src is not None and src_clean:
        notes.append(f"1 vs 2 left out: only {n} adversarials scored (source-like {src:.2f} vs {src_clean:.2f} "
                     f"for the clean versions); it needs at least {MIN_SCORED_FOR_SCORE}")
    else:
        notes.append("1 vs 2 left out (no scored adversarial, or no clean baseline)")
    detail = f"layer {last['name']} under {run_name(ref)}: " + "; ".join(notes)
    # with its 2v2 part the component rests on the class representations, not on the few scored adversarials:
    # it stays in the score (the score leaves out a component marked too_few)
    return (sum(parts) / len(parts) if parts else None), detail, {"n": n, "too_few": few and not parts}


# --- the gate metrics ---------------------------------------------------------------------------------------

def gate_metrics(report: dict) -> dict[str, float | None]:
    sem = report.get("analyses", {}).get(KEY) or {}
    out = {f"semantics.two_vs_two[{layer['name']}]": layer["clean"]["two_vs_two"] for layer in sem.get("layers", [])}
    for key, fig in space_figures(sem):
        if key == "wordnet":
            out.update({f"semantics.wordnet.two_vs_two[{layer['name']}]": layer["clean"]["two_vs_two"]
                        for layer in fig.get("layers", [])})
    return out


SECTION = Section(
    key=KEY, title="Semantic window", order=10, build="audit.analyses.semantics.analysis:build",
    terminal=terminal, panel=panel, template=Path(__file__).with_name("panel.html.j2"), finding=finding,
    score=(
        ScoreComponent(name="severity", weight=0.15, compute=severity,
                       formula="1 - (n_success / n_attacked) * min(m, 2) / 2 at the strongest attack's largest "
                               "budget, m = the mistakes' mean LCA height / a random wrong class's (class hierarchy, "
                               "when the report has it) else their mean word-vector severity; left out with fewer "
                               f"than {MIN_SCORED_FOR_SCORE} errors scored"),
        ScoreComponent(name="representation", weight=0.15, compute=representation,
                       formula="mean of clip((adv_2v2 - 0.5) / (clean_2v2 - 0.5), 0, 1) and clip(source_like / "
                               "source_like_clean, 0, 1) at the last layer, strongest attack, largest budget; the "
                               f"1 vs 2 part only with at least {MIN_SCORED_FOR_SCORE} adversarials scored"),
    ),
    gate_metrics=gate_metrics,
    gate_families=(GateFamily(name="semantics.two_vs_two[LAYER]", better="higher", tolerance="absolute"),
                   GateFamily(name="semantics.wordnet.two_vs_two[LAYER]", better="higher", tolerance="absolute")),
)
