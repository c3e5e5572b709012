"""The value parsers of the audit's options: text (from a flag) or a typed value (from a config file or the
Python API) in, a checked value out, or one ``AuditError`` line naming the option.

:class:`audit.config.AuditConfig` calls them all (``check()`` and ``resolved()``): budgets (``8/255``,
``0.3``, lists of them), sizes, framing, sample counts, score weights, ``--arch-kwargs``, normalisation
statistics, the device (and where each process of a torchrun audits: :func:`placement`), and ``--layers`` (a
:class:`LayerChoice`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from audit.errors import AuditError


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # how images are resampled (--interpolation)

def parse_eps_value(text: str) -> float:
    """One budget: a decimal (``0.3``) or a fraction (``8/255``); must be positive and finite."""
    raw = text.strip()
    try:
        if "/" in raw:
            num, den = raw.split("/")  # one slash only: "8/255/2" is not a budget
            value = float(Fraction(num.strip()) / Fraction(den.strip()))
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise AuditError(f"--eps value '{text}' is not a number or a fraction like 8/255") from None
    if not value > 0 or value == float("inf"):
        raise AuditError(f"--eps value '{text}' must be positive and finite")
    return value


def parse_eps_list(texts: str | list[str] | tuple[str, ...] | None) -> list[tuple[float, str]]:
    """A list of budgets from one or more comma lists, sorted ascending, duplicates removed.

    Returns ``(value, text)`` pairs so reports can show the budget as the user wrote it.
    """
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    seen: dict[float, str] = {}
    for chunk in texts:
        for part in str(chunk).split(","):
            if not part.strip():
                raise AuditError(f"--eps has an empty entry in '{chunk}'")
            value = parse_eps_value(part)
            seen.setdefault(value, part.strip())
    return sorted(seen.items())


def parse_input_size(value: str | int | None, flag: str = "--input-size") -> tuple[int, int] | None:
    """``32`` -> (32, 32); ``"224x160"`` -> (224, 160) as (H, W); None stays None. Also ``--crop``."""
    if value is None:
        return None
    text = str(value).strip().lower()
    parts = text.split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise AuditError(f"{flag} must be one integer or HxW (e.g. 224 or 224x160), got '{value}'") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise AuditError(f"{flag} must be one positive integer or HxW (e.g. 224x160), got '{value}'")
    return dims[0], dims[1]


def parse_framing(resize: int | None, crop: str | int | None) -> tuple[int | None, tuple[int, int] | None]:
    """``--resize N`` (the short side, in pixels) and ``--crop N`` or ``HxW`` (the centre crop), checked together:
    a crop larger than the resized short side would need pixels the image does not have."""
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise AuditError(f"--resize must be a positive integer (the short side in pixels), got {resize!r}")
    size = parse_input_size(crop, "--crop")
    if resize is not None and size is not None and max(size) > resize:
        raise AuditError(f"--crop {size[0]}x{size[1]} is larger than --resize {resize}: the short side becomes "
                         f"{resize} pixels, so a centre crop can be at most {resize}x{resize}")
    return resize, size


def parse_samples(text: str | int | None) -> int | None:
    """``--samples``: None or "all" -> None (everything); a positive integer (or its text) -> that integer."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return None
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return text
    if isinstance(text, str) and text.strip().isdigit() and int(text) > 0:
        return int(text)
    raise AuditError(f"--samples must be a positive integer or 'all', got '{text}'")


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


def parse_arch_kwargs(text: str | dict | None) -> dict:
    """``--arch-kwargs``: a JSON object (or an already parsed dict) of keyword arguments for ``--arch``."""
    if isinstance(text, dict):
        return dict(text)
    if text is None or not text.strip():
        return {}
    example = """e.g. --arch-kwargs '{"num_classes": 10}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditError(
            f"--arch-kwargs is not valid JSON ({exc.msg} at column {exc.colno}); {example}"
        ) from None
    if not isinstance(value, dict):
        raise AuditError(
            f"--arch-kwargs must be a JSON object of keyword arguments, not {type(value).__name__}; {example}"
        )
    return value


def read_stats(value: str | float | Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    """``--mean``/``--std`` as given: a comma list (or one number, or a list of numbers) of finite values,
    positive for ``--std``; None or empty text -> None. :func:`fit_stats` fits them to the channels."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    example = f"e.g. {name} 0.485,0.456,0.406"
    if isinstance(value, str):
        items: Sequence = [s.strip() for s in value.strip().strip("[]()").split(",")]
    else:
        items = list(value) if isinstance(value, list | tuple) else [value]
    values = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            number = float(item)
        except (TypeError, ValueError):
            raise AuditError(
                f"{name} {value!r}: {item!r} is not a number; give comma-separated numbers, {example}"
            ) from None
        if not math.isfinite(number):
            raise AuditError(f"{name} {value!r}: values must be finite numbers, {example}")
        values.append(number)
    if not values:
        raise AuditError(f"{name} is empty; {example}")
    if name == "--std" and any(v <= 0 for v in values):
        raise AuditError(f"--std {value!r}: every value must be > 0 (the input is divided by it)")
    return tuple(values)


def fit_stats(values: tuple[float, ...] | None, channels: int, name: str) -> tuple[float, ...] | None:
    """One value for every channel, or exactly one per channel."""
    if values is None:
        return None
    if len(values) == 1:
        return tuple(values) * channels
    if len(values) != channels:
        raise AuditError(
            f"{name} has {len(values)} values but the images have {channels} channels; give 1 or {channels} values"
        )
    return tuple(values)


def parse_stats(text: str | float | Sequence[float] | None, channels: int, name: str) -> tuple[float, ...] | None:
    """``--mean``/``--std`` for images with ``channels`` channels (see :func:`read_stats`)."""
    return fit_stats(read_stats(text, name), channels, name)


DEVICE = re.compile(r"cuda(?::(\d+))?")


def check_device(spec: str) -> str:
    """``--device`` spelled right (auto, cpu, cuda or cuda:N), lower-cased; nothing is asked of torch."""
    text = str(spec).strip().lower()
    if text not in ("auto", "cpu") and DEVICE.fullmatch(text) is None:
        raise AuditError(f"--device {spec!r} is not understood; use auto, cpu, cuda or cuda:N")
    return text


@dataclass(frozen=True)
class Placement:
    """Where one process audits: ``device`` ("cpu", "cuda" (the current GPU) or "cuda:K") and the backend of
    its process group ("gloo" or "nccl"; used only when there are several processes)."""

    device: str
    backend: str

    @property
    def gpu(self) -> int | None:
        """The index of the GPU named (under torchrun: the local rank), None on the CPU or for the current GPU."""
        return int(self.device.split(":")[1]) if ":" in self.device else None


def placement(device: str, *, world_size: int, local_rank: int, gpus: int, cuda_build: bool = True) -> Placement:
    """Where a process of a ``world_size``-process run audits, for ``--device`` ``device`` (auto, cpu, cuda,
    cuda:N), its ``local_rank`` on its node and the ``gpus`` CUDA GPUs it sees (``cuda_build``: whether torch
    was built with CUDA, for the error's wording). Pure: asks nothing of torch; a bad combination is a one-line
    :class:`AuditError`."""
    text = check_device(device)
    if text == "cpu" or (text == "auto" and gpus == 0):
        return Placement("cpu", "gloo")
    if gpus == 0:
        build = "no GPU is visible" if cuda_build else "this torch is a CPU-only build"
        raise AuditError(f"--device {device} was asked for, but no CUDA GPU is available ({build}); use --device "
                         "cpu or --device auto")
    index = text.partition(":")[2]
    if world_size <= 1:
        if index and int(index) >= gpus:
            raise AuditError(f"--device {device}: there are only {gpus} CUDA GPU(s) (cuda:0 ...)")
        return Placement("cuda" if text == "auto" else f"cuda:{int(index or 0)}", "nccl")
    if index:
        raise AuditError(f"--device {device} under torchrun: each process takes the GPU of its local rank "
                         "(cuda:LOCAL_RANK); use --device cuda")
    if local_rank >= gpus:
        raise AuditError(f"torchrun started process {local_rank} on this node, which has only {gpus} CUDA GPU(s): "
                         f"one GPU per process, so start at most {gpus} (--nproc-per-node {gpus})")
    return Placement(f"cuda:{local_rank}", "nccl")


def this_placement(device: str = "auto") -> Placement:
    """:func:`placement` for this process (torchrun's environment variables, the GPUs torch sees)."""
    import torch

    cuda = torch.cuda.is_available()
    return placement(device, world_size=int(os.environ.get("WORLD_SIZE", "1")),
                     local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                     gpus=torch.cuda.device_count() if cuda else 0, cuda_build=torch.version.cuda is not None)


def resolve_device(spec: str):
    """The torch device ``--device`` names for this process; a GPU that is asked for and missing is an error.
    Under torchrun each process takes the GPU of its local rank (:func:`placement`)."""
    import torch

    return torch.device(this_placement(spec).device)


@dataclass(frozen=True)
class LayerChoice:
    """``--layers`` parsed: ``auto`` (the depth series of audit.analyses.layers), ``none`` (no per-layer
    analyses) or module names, in the order given, duplicates removed (the layers run in forward order)."""

    mode: str  # "auto", "none" or "names"
    names: tuple[str, ...] = ()

    @property
    def auto(self) -> bool:
        return self.mode == "auto"

    @property
    def off(self) -> bool:
        return self.mode == "none"


def parse_layers(value: str | LayerChoice) -> LayerChoice:
    """``"auto"``, ``"none"`` (any case, spaces around) or ``"name1,name2"``."""
    if isinstance(value, LayerChoice):
        return value
    text = (value or "").strip()
    if text.lower() in ("auto", "none"):
        return LayerChoice(text.lower())
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise AuditError(f"--layers {text!r} names no layer; give auto, none, or module names separated by commas")
    return LayerChoice("names", names)
