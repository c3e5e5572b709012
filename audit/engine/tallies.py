"""Mergeable per-batch sums for clean and adversarial accuracy, and the per-sample outcomes.

A tally holds sums, counts and maxima, so tallies of batches (or of processes) merge by addition, and the
per-sample outcomes as (offset, array) parts, which merge by collecting and are read in data order (by offset)
however the batches were split over processes or resumed runs. The report is computed from the merged tally
once at the end, with its intervals (audit.stats: Wilson for proportions, Student t for mean norms, the
order-statistic interval of ``scipy.stats.quantile_test`` for a median) at the audit's confidence level.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from scipy import stats

from audit.stats import DEFAULT_CONFIDENCE, proportion_interval, t_interval
from reports.schema import pack_bits, pack_norms


def _bincount(values: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(values, minlength=num_classes).astype(np.int64)


@dataclass
class Samples:
    """Per-sample values recorded batch by batch as (offset, array) parts; ``ordered()`` is every value in data
    order (by the offset of its batch), whichever process or run recorded which part."""

    parts: list = field(default_factory=list)

    def add(self, offset: int, values: np.ndarray) -> None:
        self.parts.append((int(offset), np.asarray(values).copy()))

    def merge(self, other: Samples) -> None:
        self.parts.extend(other.parts)

    def export(self) -> list:
        return [(offset, values.copy()) for offset, values in self.parts]

    @classmethod
    def restore(cls, state: list, dtype) -> Samples:
        return cls([(int(offset), np.asarray(values, dtype=dtype).copy()) for offset, values in state])

    def ordered(self, dtype=None) -> np.ndarray:
        parts = sorted(self.parts, key=lambda part: part[0])
        offsets = [offset for offset, _ in parts]
        if len(set(offsets)) != len(offsets):
            raise ValueError("two parts of the per-sample outcomes start at the same sample")
        if not parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([values for _, values in parts]).astype(dtype or parts[0][1].dtype)


@dataclass
class ClassCounts:
    """Per-class totals and hits: accuracy per class and overall, and each sample's hit in data order."""

    num_classes: int
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    hits: np.ndarray = field(default=None)  # type: ignore[assignment]
    samples: Samples = field(default_factory=Samples)  # (offset, hit per sample) of every batch added

    def __post_init__(self):
        if self.total is None:
            self.total = np.zeros(self.num_classes, dtype=np.int64)
        if self.hits is None:
            self.hits = np.zeros(self.num_classes, dtype=np.int64)

    def add(self, labels: np.ndarray, hit: np.ndarray, offset: int | None = None) -> None:
        """Add a batch; with ``offset`` (its first sample's position among the audited samples) each sample's
        hit is kept too."""
        self.total += _bincount(labels, self.num_classes)
        self.hits += _bincount(labels[hit], self.num_classes)
        if offset is not None:
            self.samples.add(offset, np.asarray(hit, dtype=bool))

    def merge(self, other: ClassCounts) -> None:
        self.total += other.total
        self.hits += other.hits
        self.samples.merge(other.samples)

    def export(self) -> dict:
        return {"total": self.total.copy(), "hits": self.hits.copy(), "samples": self.samples.export()}

    @classmethod
    def restore(cls, num_classes: int, state: dict) -> ClassCounts:
        return cls(num_classes, np.asarray(state["total"], dtype=np.int64).copy(),
                   np.asarray(state["hits"], dtype=np.int64).copy(),
                   Samples.restore(state.get("samples", []), bool))

    @property
    def n(self) -> int:
        return int(self.total.sum())

    @property
    def accuracy(self) -> float | None:
        return float(self.hits.sum() / self.n) if self.n else None

    def interval(self, confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
        """The Wilson interval of the accuracy."""
        return proportion_interval(int(self.hits.sum()), self.n, confidence)

    def per_class(self, names: list[str], confidence: float = DEFAULT_CONFIDENCE) -> list[dict]:
        return [
            {"class": names[c], "n": int(self.total[c]), "accuracy": float(self.hits[c] / self.total[c]),
             "accuracy_ci": proportion_interval(int(self.hits[c]), int(self.total[c]), confidence)}
            for c in range(self.num_classes)
            if self.total[c]
        ]

    def per_sample(self) -> str | None:
        """Each sample's hit in data order, packed (reports.schema.BITSET_ENCODING); None when the batches were
        added without their offsets."""
        if not self.samples.parts:
            return None
        bits = self.samples.ordered(bool)
        if bits.size != self.n:
            raise ValueError(f"{bits.size} per-sample outcomes recorded for {self.n} samples")
        return pack_bits(bits.tolist())


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
    norms: Samples = field(default_factory=Samples)  # minimal-perturbation attacks: per-sample minimal norms
    sizes: Samples = field(default_factory=Samples)  # (L∞, L2) of each perturbed sample: the means' t intervals
    components: dict = field(default_factory=dict)  # an ensemble's sums per component (see attacks.ensemble)

    def __post_init__(self):
        if self.robust is None:
            self.robust = ClassCounts(self.num_classes)

    def add(self, *, labels, clean_correct, adv_correct, goal, linf, l2, outcome, found, offset: int,
            minimal_norm=None) -> None:
        """Add one batch; array arguments are numpy arrays over the batch.

        ``found`` marks the samples whose adversarial was found at this budget: perturbation statistics cover
        those that are misclassified. ``offset``: the batch's first sample among the audited samples (each
        sample's outcome is kept in data order). ``minimal_norm`` (minimal-perturbation attacks) is that norm per
        sample.
        """
        self.robust.add(labels, adv_correct, offset)
        self.attacked += int(clean_correct.sum())
        self.success += int((goal & clean_correct).sum())
        if minimal_norm is not None:
            self.norms.add(offset, minimal_sizes(minimal_norm, clean_correct, goal))
        fooled = clean_correct & ~adv_correct & found
        self.perturbed += int(fooled.sum())
        if fooled.any():
            self.linf_sum += float(linf[fooled].sum())
            self.linf_max = max(self.linf_max, float(linf[fooled].max()))
            self.l2_sum += float(l2[fooled].sum())
            self.l2_max = max(self.l2_max, float(l2[fooled].max()))
            self.sizes.add(offset, np.stack([linf[fooled], l2[fooled]], axis=1).astype(np.float64))
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
            if isinstance(mine, ClassCounts | Samples):
                mine.merge(theirs)
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
               if f.name not in ("num_classes", "robust", "norms", "sizes", "components")}
        return {**out, "robust": self.robust.export(), "norms": self.norms.export(), "sizes": self.sizes.export(),
                "components": {k: dict(v) for k, v in self.components.items()}}

    @classmethod
    def restore(cls, num_classes: int, state: dict) -> AttackTally:
        plain = {k: v for k, v in state.items() if k not in ("robust", "norms", "sizes", "components")}
        return cls(num_classes, ClassCounts.restore(num_classes, state["robust"]),
                   norms=Samples.restore(state["norms"], np.float64),
                   sizes=Samples.restore(state["sizes"], np.float64),
                   components={k: dict(v) for k, v in state.get("components", {}).items()}, **plain)

    def summary(self, names: list[str], *, budget_mode: str, curve_eps: list[float] = (),
                confidence: float = DEFAULT_CONFIDENCE) -> dict:
        """The report entry's numbers. ``budget_mode``: cumulative, independent or minimal (see the registry).
        Every share carries its Wilson interval (``NAME_ci``), each mean norm its t interval (over the perturbed samples' norms in data order)."""
        def mean(s):
            return (s / self.perturbed if self.perturbed else None)
        minimal = budget_mode == "minimal"
        n, kept = self.robust.n, int(self.robust.hits.sum())
        share_ci = proportion_interval(kept, n, confidence)
        per_sample = {"robust": self.robust.per_sample()}
        sizes = self.sizes.ordered(np.float64).reshape(-1, 2)  # data order: the same numbers however it ran
        norms = self.norms.ordered(np.float64) if minimal else None
        if minimal:
            per_sample["norm"] = pack_norms(norms.tolist())
        return {
            "budget_mode": budget_mode,
            # a minimal-perturbation attack measures norms, not robustness: its failure rate is no robust accuracy
            "robust_accuracy": None if minimal else self.robust.accuracy,
            "robust_accuracy_ci": None if minimal else share_ci,
            "failure_rate": self.robust.accuracy if minimal else None,
            "failure_rate_ci": share_ci if minimal else None,
            "success_rate": self.success / self.attacked if self.attacked else None,
            "success_rate_ci": proportion_interval(self.success, self.attacked, confidence),
            "n_attacked": self.attacked,
            "n_attacked_at_this_eps": self.attacked_now,
            "n_success": self.success,
            "minimal_perturbation": minimal_summary(norms, curve_eps, confidence) if minimal else None,
            "perturbation": {
                "covers": PERTURBATION_COVERS[budget_mode],
                "n": self.perturbed,
                "linf_mean": mean(self.linf_sum),
                "linf_mean_ci": t_interval(sizes[:, 0], confidence),
                "linf_max": self.linf_max if self.perturbed else None,
                "l2_mean": mean(self.l2_sum),
                "l2_mean_ci": t_interval(sizes[:, 1], confidence),
                "l2_max": self.l2_max if self.perturbed else None,
            },
            "per_class_robust_accuracy": [] if minimal else self.robust.per_class(names, confidence),
            "per_sample": per_sample,
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


def minimal_summary(sizes: np.ndarray, curve_eps, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """What a minimal-perturbation attack measures: the distribution of per-sample minimal norms.

    The median and quartiles are over the clean-correct samples (failures count as infinite; a statistic that
    is infinite is reported as null with ``n_failed`` saying why); the median's interval is the distribution-free
    one from order statistics (``scipy.stats.quantile_test``; an infinite end is null). The curve is the
    accuracy-vs-eps curve the norms imply over all samples: the share whose minimal norm exceeds eps (as foolbox
    computes it), each point with its Wilson interval.
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
        "median_ci": median_interval(attacked, confidence),
        "q25": stat(0.25),
        "q75": stat(0.75),
        "mean_of_found": float(finite.mean()) if finite.size else None,
        "curve": [{"eps": float(e), "robust_accuracy": float((sizes > e).mean()) if sizes.size else None,
                   "robust_accuracy_ci": proportion_interval(int((sizes > e).sum()), int(sizes.size), confidence)}
                  for e in sorted(set(curve_eps))],
    }


def median_interval(values: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> list | None:
    """The order-statistic interval of the median (``scipy.stats.quantile_test``); None when there are too few
    values for one, an infinite or undefined end as None."""
    if values.size < 2:
        return None
    ends = stats.quantile_test(values, q=float(np.quantile(values, 0.5, method="lower")), p=0.5) \
        .confidence_interval(confidence)
    out = [float(ends.low), float(ends.high)]
    if all(not np.isfinite(v) for v in out):
        return None
    return [v if np.isfinite(v) else None for v in out]
