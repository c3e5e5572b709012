"""AuditConfig: every knob of an audit, as the CLI and the Python API pass it."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.errors import AuditError

SALIENCY_METHODS = ("gradcam", "gradxact", "activation", "none")
TARGETED_MODES = ("random", "least-likely", "semantic-near", "semantic-far")


@dataclass
class AuditConfig:
    model: str
    data: str = "demo"
    arch: str | None = None
    arch_kwargs: str | dict | None = None  # JSON text or a dict
    trust_model: bool = False
    classes: str | list[str] | None = None  # built-in set, label file, comma list, or a list
    input_size: str | int | None = None  # 32, "224", "224x160" (H x W); None: the data's own size
    channels: int | None = None  # None: what the model's first layer expects, else the data's
    mean: str | None = None
    std: str | None = None
    output_key: str | None = None  # which entry of a dict/tuple output holds the logits
    attacks: list[str] = field(default_factory=lambda: ["pgd"])
    eps: list[str] | str | None = None  # None: each attack's default
    steps: int | None = None  # None: each attack's default
    targeted: str | None = None  # None, "random" or "least-likely"
    samples: int | str | None = 500  # int, "all" or None (all)
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch (None: torch's default)
    label: str | None = None  # a display name for the model in reports
    layers: str = "auto"  # per-layer analyses: "auto", "none", or a comma list of module names
    embeddings: str | None = None  # word vectors: None (the shipped GloVe subset), "glove-6b-50d" or a file
    class_words: str | None = None  # a file mapping class names to the words that stand for them
    permutations: int = 1000  # label permutations of the semantic significance test
    saliency: str = "gradcam"  # saliency maps per layer: gradcam, gradxact, activation, or none
    saliency_class: str = "predicted"  # whose logit the maps explain: predicted or true
    entropy: str = "glcm"  # spatial entropy of the maps: glcm, histogram or 2d
    levels: int | None = None  # quantisation levels (None: from the smallest map)
    resume: bool = False  # continue an interrupted audit from its saved state
    checks: bool = True  # the attack-validity checks that need the model (the report-level ones always run)
    gates: list[str] = field(default_factory=list)  # "METRIC OP NUMBER" expressions (see reports/gates.py)
    fail_under: float | None = None  # the verdict fails when the score is below this
    score_weights: str | dict | None = None  # "robustness=0.7,severity=0.1" or a dict; None: the defaults

    def check(self) -> None:
        """Validate the knobs that need nothing loaded, so bad flags fail before any work starts."""
        if self.targeted is not None and self.targeted not in TARGETED_MODES:
            raise AuditError(f"--targeted must be one of {', '.join(TARGETED_MODES)}, got '{self.targeted}'")
        if self.steps is not None and self.steps < 1:
            raise AuditError(f"--steps must be a positive integer, got {self.steps}")
        if self.batch_size < 1:
            raise AuditError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise AuditError(f"--threads must be a positive integer, got {self.threads}")
        if self.channels is not None and self.channels not in (1, 3):
            raise AuditError(f"--channels must be 1 or 3, got {self.channels}")
        for flag, value, allowed in (("--saliency", self.saliency, SALIENCY_METHODS),
                                     ("--saliency-class", self.saliency_class, ("predicted", "true")),
                                     ("--entropy", self.entropy, ("glcm", "histogram", "2d"))):
            if value not in allowed:
                raise AuditError(f"{flag} must be one of {', '.join(allowed)}, got '{value}'")
        if self.levels is not None and not 2 <= self.levels <= 256:
            raise AuditError(f"--levels must be between 2 and 256, got {self.levels}")
        from reports.gates import parse_gate
        from reports.score import check_weights

        for gate in self.gates:
            parse_gate(gate)
        self.score_weights = check_weights(parse_weights(self.score_weights))
        if self.fail_under is not None and not 0 <= self.fail_under <= 100:
            raise AuditError(f"--fail-under must be a score between 0 and 100, got {self.fail_under}")
        if self.permutations < 1:
            raise AuditError(f"--permutations must be a positive integer, got {self.permutations}")
        if not self.attacks:
            raise AuditError("no attack given: use --attack NAME (see `audit attacks`)")


def parse_input_size(value: str | int | None) -> tuple[int, int] | None:
    """``32`` -> (32, 32); ``"224x160"`` -> (224, 160) as (H, W); None stays None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    parts = text.split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise AuditError(f"--input-size must be one integer or HxW (e.g. 224 or 224x160), got '{value}'") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise AuditError(f"--input-size must be one positive integer or HxW (e.g. 224x160), got '{value}'")
    return dims[0], dims[1]


def parse_weights(value: str | dict | None) -> dict | None:
    """``"robustness=0.7,severity=0.1"`` -> {"robustness": 0.7, "severity": 0.1}; a dict or None passes."""
    if value is None or isinstance(value, dict):
        return value
    weights = {}
    for part in str(value).split(","):
        name, eq, number = part.partition("=")
        try:
            weights[name.strip()] = float(number)
        except ValueError:
            raise AuditError(f"--weights must look like robustness=0.7,severity=0.1, got '{value}'") from None
        if not eq:
            raise AuditError(f"--weights must look like robustness=0.7,severity=0.1, got '{value}'")
    return weights
