"""AuditConfig: every option of an audit, as the command line, a config file and the Python API give it, and
the one place that parses and validates them.

Each field declares its default, the TOML types a config file may give it (``kinds``) and one line of
documentation, so a new option is added here and as a flag in :mod:`audit.cli`. ``check()`` validates what needs
nothing loaded; ``resolved()`` returns every value parsed and typed; ``effective()`` the settings a report
records. Config files are read in :mod:`audit.config_file`; the value parsers live in :mod:`audit.options`.
The runner asks for ``resolved()`` once and passes that one value down.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from attacks.registry import DEFAULT_ATTACK
from audit.errors import AuditError
from audit.options import (
    INTERPOLATIONS,
    LayerChoice,
    check_device,
    fit_stats,
    parse_arch_kwargs,
    parse_framing,
    parse_eps_list,
    parse_input_size,
    parse_layers,
    parse_samples,
    parse_weights,
    read_stats,
    resolve_device,
)

SALIENCY_METHODS = ("gradcam", "gradxact", "activation", "none")
TARGETED_MODES = ("random", "least-likely", "semantic-near", "semantic-far")
TARGET_SPACES = ("glove", "wordnet")  # where semantic-near / semantic-far find their targets

__all__ = ["AuditConfig", "Resolved", "parse_input_size", "parse_weights", "option_fields"]


def _listed(value):
    return [value] if isinstance(value, str) else list(value)


def _joined(value):
    return value if isinstance(value, str) else ",".join(value)


def _texts(value):
    """Budgets from a file: numbers become their text (``0.3`` -> ``"0.3"``)."""
    if isinstance(value, list):
        return [v if isinstance(v, str) else repr(v) for v in value]
    return value if isinstance(value, str) else repr(value)


def option(default: Any = MISSING, *, kinds: tuple[str, ...], doc: str, key: str | None = None,
           example: Any = None, path: str | None = None, to_field=None, factory=None):
    """A field of :class:`AuditConfig` with what a config file needs to know about it.

    ``kinds``: the TOML types a file may give (see ``audit.config_file.KINDS``); ``key``: the file key and flag
    name when it differs from the field name; ``example``: a value the commented example shows for an option
    without a default; ``path``: how a relative value in a file is resolved ("path", "data", "embeddings",
    "classes" or "arch", see ``audit.config_file``); ``to_field``: turns a file value into the field's form.
    """
    meta = {"kinds": kinds, "doc": doc, "key": key, "example": example, "path": path, "to_field": to_field}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class AuditConfig:
    model: str = option(kinds=("string",), doc="the model file (the MODEL argument)", path="path",
                        example="model.safetensors")
    data: str = option("demo", kinds=("string",), path="data",
                       doc="ImageFolder dir, CIFAR batches, IDX file/dir, .npz, or demo")
    arch: str | None = option(None, kinds=("string",), path="arch", example="torchvision.models:resnet18",
                              doc="network for weight files: package.module:callable or file.py:callable")
    arch_kwargs: str | dict | None = option(None, kinds=("table", "string"), example={"num_classes": 10},
                                            doc="keyword arguments for arch: a table (or JSON text)")
    weights_meta: str | None = option(None, kinds=("string",), example="IMAGENET1K_V2",
                                      doc="a torchvision weights enum member of arch whose transforms and "
                                      "categories give the preprocessing and class names (no download)")
    trust_model: bool = option(False, kinds=("boolean",), doc="allow full pickled models (runs code from the file)")
    classes: str | list[str] | None = option(None, kinds=("string", "strings"), path="classes", example="cifar10",
                                             doc="class names: a built-in set, a file with one name per line, "
                                             "or a list")
    input_size: str | int | None = option(None, kinds=("integer", "string"), example="224x160",
                                          doc="model input size: one int or \"HxW\" (default: the model's declared "
                                          "one, else the crop, else the data's when all images share one size)")
    resize: int | None = option(None, kinds=("integer",), example=256,
                                doc="resize each image's short side to this (antialiased), before crop")
    crop: str | int | None = option(None, kinds=("integer", "string"), example=224,
                                    doc="centre crop: one int or \"HxW\", after resize")
    interpolation: str | None = option(None, kinds=("string",), example="bicubic",
                                       doc="resampling of every resize: bilinear, bicubic or nearest (default: the "
                                       "model's declared one, else bilinear)")
    channels: int | None = option(None, kinds=("integer",), example=3,
                                  doc="input channels, 1 or 3 (default: the model's first layer)")
    mean: str | list | None = option(None, kinds=("numbers", "number", "string"), example=[0.485, 0.456, 0.406],
                                     doc="normalization mean, applied inside the model (one value or one per channel)")
    std: str | list | None = option(None, kinds=("numbers", "number", "string"), example=[0.229, 0.224, 0.225],
                                    doc="normalization std")
    output_key: str | None = option(None, kinds=("string", "integer"), to_field=str, example="logits",
                                    doc="key or index of the logits in a dict/tuple output")
    attacks: list[str] = option(kinds=("strings", "string"), key="attack", to_field=_listed, factory=lambda: [DEFAULT_ATTACK],
                                doc="attack names (see `audit attacks`)")
    eps: list[str] | str | None = option(None, kinds=("budgets", "string", "number"), to_field=_texts,
                                         example=["2/255", "4/255", "8/255"],
                                         doc="budgets in [0, 1] pixel space (default: each attack's own)")
    steps: int | None = option(None, kinds=("integer",), example=40,
                               doc="iterations, queries for square (default: each attack's default budget)")
    targeted: str | None = option(None, kinds=("string",), example="random",
                                  doc="targeted attack: random, least-likely, semantic-near or semantic-far")
    target_space: str = option("glove", kinds=("string",),
                               doc="where semantic-near/-far targets come from: glove (word vectors) or wordnet "
                                   "(the class tree's LCA height)")
    samples: int | str | None = option(500, kinds=("integer", "string"),
                                       doc="images drawn stratified per class, or \"all\"")
    seed: int = option(0, kinds=("integer",), doc="seed for sampling, targets and attacks")
    batch_size: int = option(64, kinds=("integer",), doc="images per batch")
    device: str = option("auto", kinds=("string",), doc="auto, cpu, cuda or cuda:N")
    threads: int | None = option(None, kinds=("integer",), example=2, doc="CPU threads for torch (default: torch's)")
    label: str | None = option(None, kinds=("string",), example="ResNet-18, standard training",
                               doc="a display name for the model in reports (file only)")
    layers: str = option("auto", kinds=("string", "strings"), to_field=_joined,
                         doc="layers of the per-layer analyses: auto, none, or module names")
    embeddings: str | None = option(None, kinds=("string",), path="embeddings", example="glove-6b-50d",
                                    doc="word vectors: a file or glove-6b-50d (default: the shipped GloVe subset)")
    class_words: str | None = option(None, kinds=("string",), path="path", example="class_words.tsv",
                                     doc="file mapping class names to words")
    class_synsets: str | None = option(None, kinds=("string",), path="path", example="class_synsets.tsv",
                                       doc="file mapping class names to WordNet synsets (class<TAB>synset name or "
                                       "wnid), read with wordnet")
    wordnet: str | None = option(None, kinds=("string",), path="path", example="/usr/share/wordnet",
                                 doc="a WordNet 3.0 dict folder that class_synsets is read against")
    superclass_depth: int | None = option(None, kinds=("integer",), example=1,
                                          doc="depth of the superclasses in the class tree, root 0 (default: the "
                                          "shallowest depth where no superclass holds over 2/3 of the classes)")
    superclasses: str | None = option(None, kinds=("strings", "string"), to_field=_joined,
                                      example=["vertebrate.n.01", "vehicle.n.01"],
                                      doc="superclasses as WordNet nodes (synset names or wnids): each class under "
                                      "the deepest one above it, the rest 'other'")
    semantic_space: str | None = option(None, kinds=("string",), example="both",
                                        doc="the semantic window's spaces: glove, wordnet or both (default: both "
                                        "when the classes map to WordNet, else glove)")
    permutations: int = option(1000, kinds=("integer",), doc="label permutations of the semantic significance test")
    saliency: str = option("gradcam", kinds=("string",), doc="saliency maps: gradcam, gradxact, activation or none")
    saliency_class: str = option("predicted", kinds=("string",), doc="whose logit the maps explain: predicted or true")
    entropy: str = option("glcm", kinds=("string",), doc="spatial entropy of the maps: glcm, histogram or 2d")
    levels: int | None = option(None, kinds=("integer",), example=8,
                                doc="quantisation levels (default: from the smallest map)")
    checks: bool = option(True, kinds=("boolean",), doc="run the model-based validity checks")
    gates: list[str] = option(kinds=("strings", "string"), key="gate", to_field=_listed, factory=list,
                              doc="quality gates METRIC OP NUMBER, e.g. \"robust_accuracy[pgd@8/255]>=0.40\"")
    confidence: float = option(0.95, kinds=("number",), to_field=float,
                               doc="confidence level of every interval in the report (strictly between 0 and 1)")
    fail_under: float | None = option(None, kinds=("number",), to_field=float, example=50.0,
                                      doc="fail the verdict when the robustness score (0-100) is below this")
    score_weights: str | dict | None = option(None, kinds=("table", "string"), key="weights",
                                              example={"robustness": 0.7, "severity": 0.1, "representation": 0.1,
                                                       "saliency": 0.1},
                                              doc="score weights (default: the built-in ones)")
    out: str = option("audit-out", kinds=("string",), path="path", doc="output directory for report.json")
    export_representations: bool = option(False, kinds=("boolean",), doc="also write OUT/representations.npz")
    html: bool = option(True, kinds=("boolean",), doc="write OUT/report.html beside report.json")
    junit: str | None = option(None, kinds=("string",), path="path", example="junit.xml",
                               doc="also write JUnit XML here")
    resume: bool = option(False, kinds=("boolean",), doc="continue an interrupted audit from OUT/.state/")

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> AuditConfig:
        """A config from option values under their file keys (``attack``, ``gate``, ``weights`` …)."""
        by_key = {meta_key(f): f.name for f in option_fields()}
        if values.get("model") is None:
            raise AuditError("no MODEL given: pass it as the first argument or as `model` in the --config file")
        return cls(**{by_key[key]: _plain(value) for key, value in values.items()})

    def effective(self) -> dict[str, Any]:
        """Every option under its file key, JSON-ready: the settings as the audit used them."""
        return {meta_key(f): _plain(getattr(self, f.name)) for f in option_fields()}

    def check(self) -> None:
        """Validate the options that need nothing loaded, so bad flags fail before any work starts."""
        self._validate()

    def _validate(self) -> Resolved:
        """Check every option and parse those that need nothing loaded."""
        if self.targeted is not None and self.targeted not in TARGETED_MODES:
            raise AuditError(f"--targeted must be one of {', '.join(TARGETED_MODES)}, got '{self.targeted}'")
        if self.target_space not in TARGET_SPACES:
            raise AuditError(f"--target-space must be one of {', '.join(TARGET_SPACES)}, got '{self.target_space}'")
        for flag, value in (("--steps", self.steps), ("--batch-size", self.batch_size), ("--threads", self.threads),
                            ("--permutations", self.permutations)):
            if value is not None and value < 1:
                raise AuditError(f"{flag} must be a positive integer, got {value}")
        if self.channels is not None and self.channels not in (1, 3):
            raise AuditError(f"--channels must be 1 or 3, got {self.channels}")
        for flag, value, allowed in (("--saliency", self.saliency, SALIENCY_METHODS),
                                     ("--saliency-class", self.saliency_class, ("predicted", "true")),
                                     ("--entropy", self.entropy, ("glcm", "histogram", "2d"))):
            if value not in allowed:
                raise AuditError(f"{flag} must be one of {', '.join(allowed)}, got '{value}'")
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise AuditError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{self.interpolation}'")
        if self.semantic_space is not None and self.semantic_space not in ("glove", "wordnet", "both"):
            raise AuditError(f"--semantic-space must be glove, wordnet or both, got '{self.semantic_space}'")
        if (self.class_synsets is None) != (self.wordnet is None):
            raise AuditError("--class-synsets and --wordnet go together: the synsets are looked up in that WordNet "
                             "folder")
        if self.superclass_depth is not None and self.superclasses:
            raise AuditError("--superclass-depth and --superclasses choose the same thing: give one of them")
        if self.superclass_depth is not None and self.superclass_depth < 1:
            raise AuditError(f"--superclass-depth must be at least 1 (depth 0 is the root, one group of every "
                             f"class), got {self.superclass_depth}")
        if self.superclasses is not None and not _joined(self.superclasses).replace(",", "").strip():
            raise AuditError("--superclasses names no node: give WordNet nodes, e.g. vertebrate.n.01,vehicle.n.01")
        if self.levels is not None and not 2 <= self.levels <= 256:
            raise AuditError(f"--levels must be between 2 and 256, got {self.levels}")
        from reports.gates import parse_gate

        for gate in self.gates:
            parse_gate(gate)
        if self.fail_under is not None and not 0 <= self.fail_under <= 100:
            raise AuditError(f"--fail-under must be a score between 0 and 100, got {self.fail_under}")
        from audit.stats import check_level

        try:
            check_level(self.confidence)
        except ValueError as exc:
            raise AuditError(str(exc)) from None
        if not self.attacks:
            raise AuditError("no attack given: use --attack NAME (see `audit attacks`)")
        check_device(self.device)
        from attacks.registry import get_spec
        from reports.score import check_weights

        budgets = parse_eps_list(self.eps)
        specs = [get_spec(name) for name in self.attacks]
        linf = [spec.name for spec in specs if spec.norm == "Linf"]
        if linf and budgets and budgets[-1][0] > 1:
            raise AuditError(f"--eps {budgets[-1][1]} is above 1 for the L∞ attack '{linf[0]}': pixels are in "
                             "[0, 1], so no L∞ budget can exceed 1 (write budgets like 8/255)")
        resize, crop = parse_framing(self.resize, self.crop)
        return Resolved(
            eps=budgets, norms=frozenset(spec.norm for spec in specs), input_size=parse_input_size(self.input_size),
            resize=resize, crop=crop, layers=parse_layers(self.layers),
            samples=parse_samples(self.samples), classes=None, arch_kwargs=parse_arch_kwargs(self.arch_kwargs),
            mean=read_stats(self.mean, "--mean"), std=read_stats(self.std, "--std"), device=None,
            score_weights=check_weights(parse_weights(self.score_weights)),
        )

    def resolved(self) -> Resolved:
        """Every option checked, parsed and typed, with the class names read and the device found. The runner
        calls this once per audit and passes the value down."""
        from dataclasses import replace

        from audit.data.labels import resolve_classes

        parsed = self._validate()
        classes = resolve_classes(self.classes) if isinstance(self.classes, str) else self.classes
        return replace(parsed, classes=classes, device=resolve_device(self.device))


@dataclass(frozen=True)
class Resolved:
    """The parsed options: what the runner uses."""

    eps: list[tuple[float, str]]  # (value, text as written), ascending; empty: each attack's default
    norms: frozenset[str]  # the norms of the requested attacks
    input_size: tuple[int, int] | None  # (H, W); None: the crop's, the data's, or the model's declared size
    resize: int | None  # the short side of every image before the crop; None: no resize
    crop: tuple[int, int] | None  # (H, W) of the centre crop; None: no crop
    layers: LayerChoice  # --layers
    samples: int | None  # None: every image
    classes: list[str] | None
    arch_kwargs: dict
    mean: tuple[float, ...] | None  # one value or one per channel, as given
    std: tuple[float, ...] | None
    device: Any  # torch.device
    score_weights: dict[str, float]  # the full weights, defaults filled in

    def normalization(self, channels: int) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        """Mean and std with one value per channel."""
        return fit_stats(self.mean, channels, "--mean"), fit_stats(self.std, channels, "--std")

    def check_budgets(self, channels: int, size: tuple[int, int]) -> None:
        """An L2 budget above sqrt(C·H·W), the L2 distance between an all-black and an all-white image, means
        nothing: refuse it once the input shape is known."""
        bound = math.sqrt(channels * size[0] * size[1])
        if "L2" in self.norms and self.eps and self.eps[-1][0] > bound:
            raise AuditError(f"--eps {self.eps[-1][1]} is above {bound:.4g} = sqrt({channels}·{size[0]}·{size[1]}), "
                             f"the largest L2 distance between two {channels}x{size[0]}x{size[1]} images in [0, 1]")


def option_fields() -> list:
    """The dataclass fields that are options, in declaration order."""
    return [f for f in fields(AuditConfig) if "kinds" in f.metadata]


def meta_key(f) -> str:
    """An option's file key (and flag name, with '-' for '_')."""
    return f.metadata["key"] or f.name


def _plain(value):
    """Paths as text, tuples as lists: values a report (JSON) and a config file (TOML) can hold."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
