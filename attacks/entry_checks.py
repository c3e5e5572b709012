"""Validity checks read from the report's attack entries: signs that an attack failed rather than a model held.

Per entry, no model: these read only the finished entries (no torch), so they run on a finished result. They check
curves that rise with eps, an iterative attack weaker than one-step FGSM, a minimal-perturbation attack weaker than
a bounded one, adversarials outside the threat model, an ensemble's own score-based stage; and two numbers the audit
measured beside them (clean accuracy against chance, whether two identical forward passes agreed). A check is
``{"name", "status": pass|warn|fail|skipped|not_applicable, "detail": one sentence, "numbers": {...}}`` (built by
:func:`check`); a check whose comparison this audit's attacks do not offer (no FGSM beside an iterative attack, one
budget per attack) is ``not_applicable`` and says why, never a vacuous pass. The checks that run the model
(gradients, a gradient-free attack, a large budget) are in :mod:`attacks.model_checks`.
"""

from __future__ import annotations

from collections import defaultdict

EXCURSION_TOLERANCE = 1e-4  # float rounding stays far below this


def _margin(n: int) -> float:
    """How much higher a stronger attack's robust accuracy may be before it is flagged: one sample, at least 1%."""
    return max(1.0 / n if n else 0.0, 0.01)


def square_margin(n: int) -> float:
    """How many samples a gradient-free search may break after the gradient attacks before it counts as masked
    gradients (the share of the clean-correct samples): two samples, at least 2%."""
    return max(2.0 / n if n else 0.0, 0.02)


def ensemble_gradient_free(entries: list[dict]) -> dict | None:
    """The ``gradient_free_attack`` check read from an ensemble's own score-based stage (its Square runs on every
    sample the gradient stages left, at every budget), at the largest L-inf budget; None without such a stage."""
    runs = [e for e in entries if e.get("ensemble") and e["norm"] == "Linf" and e["eps"] is not None]
    if not runs:
        return None
    entry = max(runs, key=lambda e: e["eps"])
    parts = {c["name"]: c for c in entry["ensemble"]["components"]}
    if "square" not in parts:
        return None
    square, n = parts["square"], entry["ensemble"]["components"][0]["attacked"]
    numbers = dict(n_attacked=n, n_survivors=square["attacked"], broken=square["broken"], eps=entry["eps"],
                   queries=square["budget"], source=entry["name"])
    where = f"of the {square['attacked']} samples its gradient stages left robust at L∞ eps {entry['eps']:.4g}"
    if square["broken"] > square_margin(n) * n:
        return check("gradient_free_attack", "fail", f"{entry['name']}'s Square stage ({square['budget']}) breaks "
                     f"{square['broken']} {where}: gradients are masked or the gradient attacks too weak", **numbers)
    if square["broken"]:
        return check("gradient_free_attack", "warn", f"{entry['name']}'s Square stage ({square['budget']}) breaks "
                     f"{square['broken']} {where}", **numbers)
    return check("gradient_free_attack", "pass", f"{entry['name']}'s Square stage ({square['budget']}) breaks none "
                 f"{where}", **numbers)


def attack_warnings(entries: list[dict], n_samples: int) -> list[str]:
    """One-line warnings about the attacks themselves (not about the model)."""
    return [w for found in attack_findings(entries, n_samples).values() for w in found]


def attack_findings(entries: list[dict], n_samples: int) -> dict[str, list[str]]:
    """The warnings by kind: ``threat_model``, ``iterative_vs_fgsm`` and ``minimal_vs_bounded``."""
    outside, weaker = [], []
    warnings = outside
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
    warnings = weaker
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
    return {"threat_model": outside, "iterative_vs_fgsm": weaker,
            "minimal_vs_bounded": _minimal_weaker_than_bounded(entries, n_samples)}


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


def comparable_pairs(entries: list[dict]) -> int:
    """How many comparisons ``iterative_vs_fgsm`` can make: an iterative attack beside FGSM at the same norm and
    budget, and a minimal-perturbation attack beside a bounded attack of its norm at an eps its curve covers."""
    n = 0
    fgsm = {(e["norm"], e["eps"]) for e in entries
            if e["name"] == "fgsm" and e["eps"] is not None and e["robust_accuracy"] is not None}
    for e in entries:
        if (e["name"] != "fgsm" and e.get("steps") and e["robust_accuracy"] is not None
                and (e["norm"], e["eps"]) in fgsm):
            n += 1
    for m in entries:
        block = m.get("minimal_perturbation")
        if block:
            implied = {point["eps"] for point in block["curve"]}
            n += sum(1 for e in entries if e["norm"] == m["norm"] and e["eps"] in implied
                     and e["robust_accuracy"] is not None)
    return n


def check(name: str, status: str, detail: str, **numbers) -> dict:
    return {"name": name, "status": status, "detail": detail, "numbers": numbers}


def clean_accuracy_check(accuracy: float | None, num_classes: int, n: int) -> dict:
    """Clean accuracy near or below chance: labels, class order, normalization or input size are wrong."""
    chance = 1.0 / num_classes
    numbers = dict(accuracy=accuracy, chance=chance, n=n)
    if accuracy is None or accuracy <= 2 * chance:
        shown = "no" if accuracy is None else f"{100 * accuracy:.1f}%"
        return check("clean_accuracy", "fail", f"clean accuracy {shown} is near or below chance "
                     f"({100 * chance:.1f}%): check the labels and class order (--classes), the normalization "
                     "(--mean/--std) and the input size; every robustness number is meaningless", **numbers)
    if accuracy <= 4 * chance:
        return check("clean_accuracy", "warn", f"clean accuracy {100 * accuracy:.1f}% is low (chance "
                     f"{100 * chance:.1f}%): check labels, normalization and input size", **numbers)
    return check("clean_accuracy", "pass", f"clean accuracy {100 * accuracy:.1f}% (chance {100 * chance:.1f}%)",
                 **numbers)


def entry_checks(entries: list[dict], n_samples: int, deterministic: bool) -> list[dict]:
    """The checks that read the finished attack entries: curves that rise with eps, attacks weaker than FGSM
    or than a bounded attack, adversarials outside the threat model, a stochastic model."""
    rising = []
    by_attack = defaultdict(list)
    for e in entries:
        if e["eps"] is not None and e["robust_accuracy"] is not None:
            by_attack[(e["name"], e["norm"])].append(e)
    curves = sum(len(group) > 1 for group in by_attack.values())
    for (name, _norm), group in by_attack.items():
        group.sort(key=lambda e: e["eps"])
        for a, b in zip(group, group[1:], strict=False):
            if b["robust_accuracy"] > a["robust_accuracy"] + _margin(n_samples):
                rising.append(f"{name} {a['eps_text']}→{b['eps_text']}")
    found = attack_findings(entries, n_samples)
    weaker = found["iterative_vs_fgsm"] + found["minimal_vs_bounded"]
    outside = found["threat_model"]
    gradient_free = ensemble_gradient_free(entries)
    pairs = comparable_pairs(entries)
    return [
        *([gradient_free] if gradient_free else []),
        check("monotone_curve", "not_applicable", "no attack ran at more than one budget, so there "
              "is no curve to rise", rising="") if not curves else
        check("monotone_curve", "warn" if rising else "pass",
              f"robust accuracy rises with eps for {', '.join(rising)}: the attack is unreliable there"
              if rising else "robust accuracy never rises with eps", rising=", ".join(rising)),
        check("iterative_vs_fgsm", "not_applicable", "no FGSM ran beside an iterative attack at "
              "the same norm and budget, and no minimal-perturbation attack beside a bounded one of the same norm: "
              "nothing to compare", count=0, pairs=0) if not pairs else
        check("iterative_vs_fgsm", "warn" if weaker else "pass", weaker[0] if weaker else
              "no iterative attack is weaker than one-step FGSM, nor a minimal-perturbation attack weaker than a "
              "bounded one, at the same budget", count=len(weaker), pairs=pairs),
        check("threat_model", "warn" if outside else "pass", outside[0] if outside else
              "every adversarial batch stayed inside its eps-ball and [0, 1]", count=len(outside)),
        check("stochastic_outputs", "pass" if deterministic else "warn",
              "two identical forward passes agree" if deterministic else
              "two identical forward passes disagree: the model is stochastic in eval mode, so attacks see a "
              "moving target (use an expectation-over-transformation attack)", deterministic=deterministic),
    ]
