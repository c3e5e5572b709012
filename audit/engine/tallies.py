"""Mergeable per-batch sums for clean and adversarial accuracy.

A tally holds only sums, counts and maxima, so tallies of batches (or of processes) merge by addition; the
report is computed from the merged tally once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


def _bincount(values: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(values, minlength=num_classes).astype(np.int64)


@dataclass
class ClassCounts:
    """Per-class totals and hits: accuracy per class and overall."""

    num_classes: int
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    hits: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.total is None:
            self.total = np.zeros(self.num_classes, dtype=np.int64)
        if self.hits is None:
            self.hits = np.zeros(self.num_classes, dtype=np.int64)

    def add(self, labels: np.ndarray, hit: np.ndarray) -> None:
        self.total += _bincount(labels, self.num_classes)
        self.hits += _bincount(labels[hit], self.num_classes)

    def merge(self, other: ClassCounts) -> None:
        self.total += other.total
        self.hits += other.hits

    def export(self) -> dict:
        return {"total": self.total.copy(), "hits": self.hits.copy()}

    @classmethod
    def restore(cls, num_classes: int, state: dict) -> ClassCounts:
        return cls(num_classes, np.asarray(state["total"], dtype=np.int64).copy(),
                   np.asarray(state["hits"], dtype=np.int64).copy())

    @property
    def n(self) -> int:
        return int(self.total.sum())

    @property
    def accuracy(self) -> float | None:
        return float(self.hits.sum() / self.n) if self.n else None

    def per_class(self, names: list[str]) -> list[dict]:
        return [
            {"class": names[c], "n": int(self.total[c]), "accuracy": float(self.hits[c] / self.total[c])}
            for c in range(self.num_classes)
            if self.total[c]
        ]


@dataclass
class AttackTally:
    """Sums for one attack at one budget."""

    num_classes: int
    robust: ClassCounts = field(default=None)  # type: ignore[assignment]
    attacked: int = 0  # clean-correct samples the attack had to break
    attacked_now: int = 0  # samples actually attacked at this budget (cascade survivors)
    success: int = 0  # of `attacked`, how many reached the attack's goal
    perturbed: int = 0  # misclassified adversarials found at this budget (perturbation stats are over these)
    linf_sum: float = 0.0
    linf_max: float = 0.0
    l2_sum: float = 0.0
    l2_max: float = 0.0
    forward: int = 0
    backward: int = 0
    seconds: float = 0.0
    eps_violation: float = 0.0
    box_violation: float = 0.0
    norms: list = field(default_factory=list)  # minimal-perturbation attacks: per-sample norm arrays
    components: dict = field(default_factory=dict)  # an ensemble's sums per component (see attacks.ensemble)

    def __post_init__(self):
        if self.robust is None:
            self.robust = ClassCounts(self.num_classes)

    def add(self, *, labels, clean_correct, adv_correct, goal, linf, l2, outcome, found, minimal_norm=None) -> None:
        """Add one batch; array arguments are numpy arrays over the batch.

        ``found`` marks the samples whose adversarial was found at this budget: perturbation statistics cover
        those that are misclassified. ``minimal_norm`` (minimal-perturbation attacks) is that norm per sample.
        """
        self.robust.add(labels, adv_correct)
        self.attacked += int(clean_correct.sum())
        self.success += int((goal & clean_correct).sum())
        if minimal_norm is not None:
            self.norms.append(minimal_sizes(minimal_norm, clean_correct, goal))
        fooled = clean_correct & ~adv_correct & found
        self.perturbed += int(fooled.sum())
        if fooled.any():
            self.linf_sum += float(linf[fooled].sum())
            self.linf_max = max(self.linf_max, float(linf[fooled].max()))
            self.l2_sum += float(l2[fooled].sum())
            self.l2_max = max(self.l2_max, float(l2[fooled].max()))
        self.attacked_now += outcome.attacked
        self.forward += outcome.forward
        self.backward += outcome.backward
        self.seconds += outcome.seconds
        self.eps_violation = max(self.eps_violation, outcome.eps_violation)
        self.box_violation = max(self.box_violation, outcome.box_violation)
        for part in outcome.record or []:
            self._add_component(part["name"], {k: v for k, v in part.items() if k != "name"})

    def _add_component(self, name: str, counts: dict) -> None:
        mine = self.components.setdefault(name, dict.fromkeys(counts, 0))
        for key, value in counts.items():
            mine[key] = mine.get(key, 0) + value

    def merge(self, other: AttackTally) -> None:
        for f in fields(self):
            if f.name == "num_classes":
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, ClassCounts):
                mine.merge(theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            elif isinstance(mine, dict):
                for name, counts in theirs.items():
                    self._add_component(name, counts)
            elif f.name.endswith(("_max", "_violation")):
                setattr(self, f.name, max(mine, theirs))
            else:
                setattr(self, f.name, mine + theirs)

    def export(self) -> dict:
        """Plain data (numbers, arrays) for a saved state or another process; ``restore`` reads it back."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("num_classes", "robust", "norms", "components")}
        return {**out, "robust": self.robust.export(), "norms": [np.asarray(a) for a in self.norms],
                "components": {k: dict(v) for k, v in self.components.items()}}

    @classmethod
    def restore(cls, num_classes: int, state: dict) -> AttackTally:
        plain = {k: v for k, v in state.items() if k not in ("robust", "norms", "components")}
        return cls(num_classes, ClassCounts.restore(num_classes, state["robust"]),
                   norms=[np.asarray(a, dtype=np.float64) for a in state["norms"]],
                   components={k: dict(v) for k, v in state.get("components", {}).items()}, **plain)

    def summary(self, names: list[str], *, budget_mode: str, curve_eps: list[float] = ()) -> dict:
        """The report entry's numbers. ``budget_mode``: cumulative, independent or minimal (see the registry)."""
        def mean(s):
            return (s / self.perturbed if self.perturbed else None)
        minimal = budget_mode == "minimal"
        return {
            "budget_mode": budget_mode,
            # a minimal-perturbation attack measures norms, not robustness: its failure rate is no robust accuracy
            "robust_accuracy": None if minimal else self.robust.accuracy,
            "failure_rate": self.robust.accuracy if minimal else None,
            "success_rate": self.success / self.attacked if self.attacked else None,
            "n_attacked": self.attacked,
            "n_attacked_at_this_eps": self.attacked_now,
            "n_success": self.success,
            "minimal_perturbation": minimal_summary(np.concatenate(self.norms), curve_eps) if minimal else None,
            "perturbation": {
                "covers": PERTURBATION_COVERS[budget_mode],
                "n": self.perturbed,
                "linf_mean": mean(self.linf_sum),
                "linf_max": self.linf_max if self.perturbed else None,
                "l2_mean": mean(self.l2_sum),
                "l2_max": self.l2_max if self.perturbed else None,
            },
            "per_class_robust_accuracy": [] if minimal else self.robust.per_class(names),
            "wall_time_s": self.seconds,
            "forward_passes": self.forward,
            "backward_passes": self.backward,
            "checks": {"max_eps_violation": self.eps_violation, "max_box_violation": self.box_violation},
        }


PERTURBATION_COVERS = {
    "cumulative": "misclassified adversarials first found at this budget (samples broken at a smaller budget "
                  "count as broken here, with their smaller adversarials, but not in these statistics)",
    "independent": "misclassified adversarials found by this budget's own attack",
    "minimal": "misclassified adversarials the attack found",
}


def minimal_sizes(norm: np.ndarray, clean_correct: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Per-sample minimal perturbation size: 0 where the clean image is already wrong, the adversarial's norm
    where the attack reached its goal, infinity where it failed (the sample resisted the attack)."""
    size = np.where(goal, norm, np.inf).astype(np.float64)
    return np.where(clean_correct, size, 0.0)


def minimal_summary(sizes: np.ndarray, curve_eps) -> dict:
    """What a minimal-perturbation attack measures: the distribution of per-sample minimal norms.

    The median and quartiles are over the clean-correct samples (failures count as infinite; a statistic that
    is infinite is reported as null with ``n_failed`` saying why). The curve is the accuracy-vs-eps curve the
    norms imply over all samples: the share whose minimal norm exceeds eps (as foolbox computes it).
    """
    attacked = sizes[sizes > 0]
    finite = attacked[np.isfinite(attacked)]

    def stat(q):
        if not attacked.size:
            return None
        value = float(np.quantile(attacked, q, method="lower"))
        return value if np.isfinite(value) else None

    return {
        "n": int(attacked.size),
        "n_failed": int((~np.isfinite(attacked)).sum()),
        "median": stat(0.5),
        "q25": stat(0.25),
        "q75": stat(0.75),
        "mean_of_found": float(finite.mean()) if finite.size else None,
        "curve": [{"eps": float(e), "robust_accuracy": float((sizes > e).mean()) if sizes.size else None}
                  for e in sorted(set(curve_eps))],
    }
