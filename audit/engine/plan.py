"""The attack plan of an audit: per requested attack, its runs (one per budget, ascending)."""

from __future__ import annotations

from dataclasses import dataclass

from attacks.registry import REGISTRY, AttackSpec, get_spec
from audit.errors import AuditError


@dataclass(frozen=True)
class AttackRun:
    """One attack at one budget: the unit a report entry and an analysis's adversarial batch refer to."""

    spec: AttackSpec
    eps: float | None
    eps_text: str | None

    @property
    def key(self) -> str:
        return self.spec.name if self.eps is None else f"{self.spec.name}@{self.eps_text}"



def plan_attacks(attacks: list[str], budgets: list[tuple[float, str]], targeted: str | None
                 ) -> list[list[AttackRun]]:
    """Per requested attack (``--attack``, in order, repeats dropped), its runs at the ``budgets`` ((value, text),
    ascending; empty: the attack's default) in ascending order, or one run without a budget for a
    minimal-perturbation attack. A ``targeted`` audit refuses an attack without a targeted mode."""
    plans, seen = [], set()
    for name in attacks:
        spec = get_spec(name)
        if spec.name in seen:
            continue
        seen.add(spec.name)
        if targeted and not spec.targeted:
            supported = ", ".join(n for n, s in REGISTRY.items() if s.targeted)
            raise AuditError(f"attack '{spec.name}' has no targeted mode; targeted attacks: {supported}")
        if not spec.bounded:
            plans.append([AttackRun(spec, None, None)])
        elif budgets:
            plans.append([AttackRun(spec, value, text) for value, text in budgets])
        else:
            plans.append([AttackRun(spec, spec.default_eps, _budget_text(spec.default_eps))])
    return plans


def _budget_text(value: float) -> str:
    """A default budget as people write it: 8/255 rather than 0.0313725."""
    steps = value * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-9 else f"{value:g}"
