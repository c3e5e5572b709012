"""What the analyses' HTML panels share: the runs of a per-layer section (``layers[i]["adversarial"]``, one entry
per attack and budget) picked the same way in every panel.

Each analysis builds its own panel in its folder (``audit/analyses/NAME/report.py``); these are pure functions
on the report's plain data.
"""

from __future__ import annotations

from reports.html.panels import run_label
from reports.schema import is_reference, reference_run


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


def label(run: dict) -> str:
    """An analysis entry as the panels name it: attack@eps, or "attack (minimal)"."""
    return run_label(run["attack"], run.get("eps_text"))
