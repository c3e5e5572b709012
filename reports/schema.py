"""The one result object of an audit, and its JSON form.

Renderers read only this object (or the JSON it writes); nothing here imports torch. The JSON contract is
pinned by ``report.schema.json`` beside this file; bump ``SCHEMA_VERSION`` when a field changes meaning.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

SCHEMA_VERSION = "2.2"
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


@dataclass
class AuditResult:
    tool: dict  # name, version
    created: str  # ISO 8601, UTC
    model: dict  # path, sha256, format, load_policy, arch, num_classes, input_shape, mean, std, output_kind, ...
    data: dict  # source, format, n_available, n_samples, n_corrupt, corrupt, classes, class_counts
    seed: int
    device: str
    settings: dict  # what was asked: attacks, eps, steps, targeted, batch size
    clean: dict  # accuracy, n, n_correct, per_class
    attacks: list[dict]  # one entry per attack and budget
    warnings: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)  # python, torch, torchattacks, platform
    timing: dict = field(default_factory=dict)  # total_s, load_s, ...
    analyses: dict = field(default_factory=dict)  # sections written by the analyses (audit.analyses)
    checks: list[dict] = field(default_factory=list)  # attack-validity checks: name, status, detail, numbers
    score: dict = field(default_factory=dict)  # value, grade, components, missing, capped, weights
    verdict: dict = field(default_factory=dict)  # passed, fail_under, gates
    reference: dict | None = None  # the reference run every renderer and the score read (reference_record)
    statistics: dict = field(default_factory=dict)  # the confidence level and how each interval was computed
    schema_version: str = SCHEMA_VERSION
    # arrays and files the analyses produce beside the report (class representations, figures); never in JSON
    artifacts: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        data = copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self) if f.name != "artifacts"})
        return {"schema_version": data.pop("schema_version"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict) -> AuditResult:
        return cls(**data)

    @classmethod
    def read_json(cls, path: str | Path) -> AuditResult:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


BITSET_ENCODING = ("base64 of a bitset over the audited samples in data order: sample i is bit i % 8 of byte i // 8 "
                   "(least significant bit first), the last byte padded with zeros")
NORMS_ENCODING = "base64 of little-endian float32 values, one per audited sample in data order (inf: not broken)"


def pack_bits(flags) -> str:
    """A sequence of booleans as the report stores per-sample outcomes (``BITSET_ENCODING``)."""
    out = bytearray((len(flags) + 7) // 8)
    for i, flag in enumerate(flags):
        if flag:
            out[i >> 3] |= 1 << (i & 7)
    return base64.b64encode(bytes(out)).decode("ascii")


def unpack_bits(text: str, n: int) -> list[bool]:
    """The ``n`` booleans ``pack_bits`` stored; a string of the wrong length for ``n`` is a ValueError."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != (n + 7) // 8 or (n % 8 and raw[-1] >> (n % 8)):
        raise ValueError(f"a per-sample bitset of {len(raw)} bytes does not hold {n} samples")
    return [bool(raw[i >> 3] >> (i & 7) & 1) for i in range(n)]


def pack_norms(values) -> str:
    """Per-sample norms as the report stores them (``NORMS_ENCODING``)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def unpack_norms(text: str, n: int) -> list[float]:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 4 * n:
        raise ValueError(f"{len(raw)} bytes of per-sample norms do not hold {n} samples")
    return list(struct.unpack(f"<{n}f", raw))


def index_ranges(indices) -> str:
    """Ascending indices as compact ranges: ``0-99,120,200-299``."""
    parts: list[str] = []
    values = [int(i) for i in indices]
    start = prev = None
    for i in values + [None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(parts)


def parse_ranges(text: str) -> list[int]:
    """The indices ``index_ranges`` wrote."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def same_eps(a: float | None, b: float | None) -> bool:
    """Whether two budgets are the same one (a float read back from JSON may differ in its last bits)."""
    return a == b if a is None or b is None else math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def reference_entry(attacks: list[dict]) -> dict | None:
    """The reference run: the one attack entry the finding, the score's components and every analysis sentence
    and table read. The one place this is decided; the terminal, the HTML page and the score all call it.

    Among the bounded entries (``eps`` and ``robust_accuracy`` not null), the *reference norm* is L∞ when a
    bounded L∞ entry exists, else the norm of the first bounded entry; the *largest budget* is the largest eps of
    that norm; the reference run is the entry with the lowest robust accuracy there (the strongest attack); ties
    go to the attack with the lowest mean robust accuracy over its budgets of the reference norm, then to the
    first in the report. With no bounded entry: the minimal-perturbation entry with the highest success rate
    (the first on a tie); None when there is neither.
    """
    bounded = [e for e in attacks if e.get("eps") is not None and e.get("robust_accuracy") is not None]
    if not bounded:
        minimal = [e for e in attacks if e.get("minimal_perturbation") and e.get("success_rate") is not None]
        return max(minimal, key=lambda e: e["success_rate"], default=None)
    norm = "Linf" if any(e["norm"] == "Linf" for e in bounded) else bounded[0]["norm"]
    same_norm = [e for e in bounded if e["norm"] == norm]
    largest = max(e["eps"] for e in same_norm)

    def mean_curve(name: str) -> float:
        values = [e["robust_accuracy"] for e in same_norm if e["name"] == name]
        return sum(values) / len(values)

    at_largest = [e for e in same_norm if same_eps(e["eps"], largest)]
    return min(at_largest, key=lambda e: (e["robust_accuracy"], mean_curve(e["name"])))


def reference_run(report: dict) -> dict | None:
    """The reference run of a report (its attack entry), see :func:`reference_entry`."""
    return reference_entry(report.get("attacks") or [])


def reference_record(entry: dict | None) -> dict | None:
    """What a report records of its reference run (``reference`` in report.json)."""
    if entry is None:
        return None
    return {"attack": entry["name"], "norm": entry["norm"], "eps": entry["eps"], "eps_text": entry.get("eps_text"),
            "rule": REFERENCE_RULE}


def is_reference(run: dict, entry: dict | None) -> bool:
    """Whether an analysis run ({"attack", "eps"}) is the reference run ``entry``."""
    return entry is not None and run.get("attack") == entry["name"] and same_eps(run.get("eps"), entry["eps"])


REFERENCE_RULE = ("the strongest attack (lowest robust accuracy; ties: lowest mean over its budgets, then report "
                  "order) at the largest budget of the reference norm (L∞ when present, else the first bounded "
                  "entry's); with no bounded entry, the minimal-perturbation attack with the highest success rate")


TARGETING = {  # the target each sample is aimed at, the same for every attack and budget
    "random": "random targets (one class drawn per sample from the other classes)",
    "least-likely": "least-likely targets (the class the clean image ranks lowest)",
    "semantic-near": "semantic-near targets (the class nearest to the true one in word space)",
    "semantic-far": "semantic-far targets (the class farthest from the true one in word space)",
}


TARGETING_WORDNET = {  # the semantic modes with --target-space wordnet (audit.engine.targets.wordnet_distance)
    "semantic-near": "semantic-near targets from WordNet (the class with the smallest LCA height to the true one in "
                     "the class tree)",
    "semantic-far": "semantic-far targets from WordNet (the class with the largest LCA height to the true one in the "
                    "class tree)",
}


def targeting(report: dict) -> str | None:
    """How a targeted audit chose its targets, in words (the semantic modes in their ``target_space``); None for
    an untargeted audit."""
    settings = report.get("settings") or {}
    mode = settings.get("targeted") or next(
        (e["targeted"] for e in report.get("attacks") or [] if e.get("targeted")), None)
    if settings.get("target_space") == "wordnet" and mode in TARGETING_WORDNET:
        return TARGETING_WORDNET[mode]
    return None if not mode else TARGETING.get(mode, f"{mode} targets")


def ensemble_text(entry: dict) -> str | None:
    """One line on an ensemble attack entry: its label, then each component with its budget and what it did."""
    ensemble = entry.get("ensemble")
    if not ensemble:
        return None
    parts = [f"{c['name']} ({c['budget']}) broke {c['broken']} of {c['attacked']} in {c['wall_time_s']:.1f} s"
             for c in ensemble["components"]]
    eps = entry.get("eps_text") or entry.get("eps")
    return f"{entry.get('name', '?')} at eps {eps} ({ensemble['label']}): " + " → ".join(parts)


def stage_file(path: str | Path, text: str | bytes) -> Path:
    """Write ``text`` (or bytes) to a new temporary file beside ``path`` (its folder made if missing) and return
    the temporary file's path; ``os.replace`` moves it into place. Nothing is left behind on a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # the permissions of a plainly created file, not mkstemp's 0600
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            handle.write(text)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write ``text`` (or bytes) so that ``path`` holds either the old content or the whole new one, never a part."""
    tmp = stage_file(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Path(path)


def validate_report(report: dict, where: str = "report") -> None:
    """Check a report against the JSON Schema; a mismatch is one AuditError line naming the first problem."""
    import jsonschema

    from audit.errors import AuditError

    version = report.get("schema_version") if isinstance(report, dict) else None
    if isinstance(version, str) and version != SCHEMA_VERSION and version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise AuditError(f"{where} has report schema {version}; this version of robustness-audit reads schema "
                         f"{SCHEMA_VERSION} (intervals and per-sample outcomes): re-run the audit to compare or "
                         "render it")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(report))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise AuditError(f"{where} is not a robustness-audit report: at {at}: {error.message[:200]}")
