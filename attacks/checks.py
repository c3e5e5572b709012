"""Cheap validity checks over an audit's attack entries: signs that an attack failed rather than a model held.

These read only the report entries (no torch), so they run on a finished result.
"""

from __future__ import annotations

from collections import defaultdict

EXCURSION_TOLERANCE = 1e-4  # float rounding stays far below this


def _margin(n: int) -> float:
    """How much higher a stronger attack's robust accuracy may be before it is flagged: one sample, at least 1%."""
    return max(1.0 / n if n else 0.0, 0.01)


def attack_warnings(entries: list[dict], n_samples: int) -> list[str]:
    """One-line warnings about the attacks themselves (not about the model)."""
    warnings = []
    for e in entries:
        checks = e["checks"]
        if checks["max_eps_violation"] > EXCURSION_TOLERANCE or checks["max_box_violation"] > EXCURSION_TOLERANCE:
            warnings.append(
                f"{e['name']} at eps {e['eps_text']} produced adversarials outside its threat model (eps-ball by "
                f"{checks['max_eps_violation']:.3g}, [0,1] box by {checks['max_box_violation']:.3g}); they were "
                "projected back before evaluation"
            )
    # A one-step attack should never beat an iterative attack of the same norm and budget: when it does, the
    # iterative attack is failing (too few steps, or gradients masked by the model).
    by_budget = defaultdict(dict)
    for e in entries:
        if e["eps"] is not None:
            by_budget[(e["norm"], e["eps"])][e["name"]] = e
    for (_norm, _eps), group in sorted(by_budget.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        single = group.get("fgsm")
        if single is None or single["robust_accuracy"] is None:
            continue
        for name, e in group.items():
            if name == "fgsm" or e["robust_accuracy"] is None or not e["steps"]:
                continue
            if e["robust_accuracy"] > single["robust_accuracy"] + _margin(n_samples):
                warnings.append(
                    f"{name} at eps {e['eps_text']} leaves more samples robust than one-step fgsm "
                    f"({100 * e['robust_accuracy']:.1f}% vs {100 * single['robust_accuracy']:.1f}%): the iterative "
                    "attack is failing (too few steps, or masked gradients); do not trust its number"
                )
    warnings += _minimal_weaker_than_bounded(entries, n_samples)
    return warnings


def _minimal_weaker_than_bounded(entries: list[dict], n_samples: int) -> list[str]:
    """A minimal-perturbation attack whose norms imply more robustness at some eps than a bounded attack of the
    same norm found at that eps has not converged: its norms overestimate the true minimal perturbations."""
    warnings = []
    for m in entries:
        block = m.get("minimal_perturbation")
        if not block:
            continue
        implied = {point["eps"]: point["robust_accuracy"] for point in block["curve"]}
        for e in entries:
            if e["norm"] != m["norm"] or e["eps"] not in implied or e["robust_accuracy"] is None:
                continue
            if implied[e["eps"]] > e["robust_accuracy"] + _margin(n_samples):
                warnings.append(
                    f"{m['name']} implies {100 * implied[e['eps']]:.1f}% robust at {m['norm']} eps {e['eps_text']} "
                    f"where {e['name']} leaves {100 * e['robust_accuracy']:.1f}%: its minimal perturbations are "
                    "overestimated (too few steps); do not trust its norms"
                )
    return warnings
