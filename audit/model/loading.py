"""Loading a user's classifier without running code it carries.

Formats are recognised by content, never by extension. Weight files (safetensors, torch state dicts) are read
with loaders that cannot execute code; a full pickle is only unpickled with ``--trust-model``. A torch.export
program also needs ``--trust-model``: ``torch.export.load`` falls back to full unpickling for some payloads and
parses expressions with ``sympy.sympify`` (``eval``), so a crafted ``.pt2`` runs code on load. TorchScript archives
carry no Python code and are loaded directly. A state dict gets its network from ``--arch``
(:mod:`audit.model.arch`). A folder is a Hugging Face ``save_pretrained`` folder (:mod:`audit.model.huggingface`:
config.json and safetensors or weights-only ``.bin`` weights; code shipped in it only runs with ``--trust-model``).
What the model's source declares about its input (:class:`Declared`) comes from a
timm network's ``pretrained_cfg`` (:mod:`audit.model.timm_models`) or a torchvision weights enum named by
``--weights-meta`` (:mod:`audit.model.weights_meta`).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from audit.errors import AuditError, short_reason
from audit.model.arch import build_network, current_folder_importable, fit_weights
from audit.model.declared import Declared
from audit.model.huggingface import is_model_folder, load_folder
from audit.model.timm_models import declared_by_timm
from audit.model.torchvision_door import through_door
from audit.model.weights_meta import declared_by_weights, weights_member

POLICY_WEIGHTS = "weights only, no code executed"
POLICY_TORCHSCRIPT = "TorchScript archive (no Python code executed)"
POLICY_EXPORT = "torch.export program, trusted by --trust-model"
POLICY_PICKLE = "full pickle, trusted by --trust-model"

# What works for per-layer analyses of a TorchScript model (tests/test_model.py runs this advice as written)
TORCHSCRIPT_TO_WEIGHTS = ("save its weights with `torch.save(torch.jit.load('MODEL').state_dict(), 'weights.pt')` "
                          "and audit weights.pt with --arch naming the Python class it was scripted from "
                          "(e.g. --arch mynet.py:Net)")

_READABLE = "safetensors, state_dict .pt, TorchScript, torch.export .pt2, or a full pickle with --trust-model"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch's pre-1.6 file magic number


@dataclass
class LoadedModel:
    module: torch.nn.Module
    path: str
    sha256: str
    format: str
    load_policy: str
    arch: str | None
    declared: Declared | None = None  # the preprocessing and class names the model's source declares


def _unreadable(path: Path, reason: str) -> AuditError:
    return AuditError(f"{path} is not a model file this tool can read ({_READABLE}): {reason}")


def file_sha256(path: Path) -> str:
    """The sha256 of a model file, as a report's ``model.sha256`` gives it."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- format detection ------------------------------------------------------------------------------------


def _zip_kind(names: list[str]) -> str:
    # torch writes every entry under one top folder, "<archive name>/..."; the markers are the rest of the path
    inner = {name.split("/", 1)[1] for name in names if "/" in name}
    if "archive_format" in inner or any(n.endswith("serialized_exported_program.json") for n in names):
        return (
            "torch.export"  # torch.export.save (pt2 archive; 2.1-2.5 wrote serialized_exported_program.json)
        )
    if "constants.pkl" in inner and any(n.startswith("code/") for n in inner):
        return "torchscript"
    if "data.pkl" in inner:
        return "torch"  # torch.save
    return "unknown"


def _sniff(path: Path) -> str:
    """One of safetensors, torchscript, torch.export, torch, unknown, decided from the bytes."""
    with open(path, "rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    if len(head) > 8:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and header_len <= size - 8:
            return "safetensors"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return _zip_kind(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return "unknown"
    if head[:1] == b"\x80" and _LEGACY_MAGIC in head:
        return "torch"  # legacy (non-zip) torch.save file: a pickle protocol marker, then the magic number
    return "unknown"


# --- reading each format ---------------------------------------------------------------------------------


def _refusal(path: Path, what: str, detail: str) -> AuditError:
    return AuditError(
        f"refusing to load {path}: it is {what} ({detail}), and unpickling it can run arbitrary code; "
        "if you trust its source, pass --trust-model (nothing in the file was executed)"
    )


def _torch_load(path: Path, trust_model: bool) -> tuple[Any, str]:
    """torch.load with weights_only=True; a full unpickling only when trusted and the safe loader cannot."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), POLICY_WEIGHTS
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" not in message:
            raise _unreadable(path, short_reason(exc)) from exc
        found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        detail = (
            f"it references {found.group(1)}" if found else "it uses pickle features beyond plain weights"
        )
        if not trust_model:
            raise _refusal(path, "a full pickled model or checkpoint", detail) from None
    except Exception as exc:
        raise _unreadable(path, short_reason(exc)) from exc
    try:  # the classes it names are imported as --arch imports code (the current folder, the torchvision door)
        with current_folder_importable():
            return through_door(lambda: torch.load(path, map_location="cpu", weights_only=False)), POLICY_PICKLE
    except Exception as exc:
        raise AuditError(
            f"could not unpickle {path} even with --trust-model ({short_reason(exc)}); the Python classes it "
            "references must be importable: run from the project that saved it, or save a state_dict instead"
        ) from exc


def _guarded(path: Path, label: str, load: Callable[[], Any]) -> Any:
    """Run a third-party loader; whatever it raises becomes one line that names the file and the reason."""
    try:
        return load()
    except Exception as exc:
        raise _unreadable(path, f"{label}: {short_reason(exc)}") from exc


# --- state dicts and --arch ------------------------------------------------------------------------------


def _is_weights(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: Any) -> Any:
    """A checkpoint's network or weights: the object itself, or what a common wrapper key holds."""
    if isinstance(obj, Mapping) and not _is_weights(obj):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module) or _is_weights(inner):
                return inner
    return obj


def _strip_prefixes(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES * 2:  # twice: the two wrappers nest either way round
        if all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    return dict(weights)


def _network_from(obj: Any, path: Path, arch: str | None, arch_kwargs: dict) -> tuple[torch.nn.Module, str]:
    """(network, format) from what a torch or safetensors file held."""
    obj = _unwrap(obj)
    if isinstance(obj, torch.nn.Module):
        _reject_arch(arch, path, "a pickled network")
        return obj, "pickle"
    if not _is_weights(obj):
        raise AuditError(
            f"{path} holds a {type(obj).__name__}, neither a network nor a state_dict of tensors; "
            "save model.state_dict() or the model itself"
        )
    if arch is None:
        raise AuditError(
            f"{path} holds only weights (a state_dict); say which network they belong to with "
            "--arch package.module:callable, e.g. --arch torchvision.models:resnet18"
        )
    network = build_network(arch, arch_kwargs)
    fit_weights(network, _strip_prefixes(obj), arch, arch_kwargs, path)
    return network, "state_dict"


def _reject_arch(arch: str | None, path: Path, what: str) -> None:
    if arch is not None:
        raise AuditError(
            f"--arch is only used with weight files (safetensors / state_dict); {path} is {what} "
            "that already holds its network: drop --arch"
        )


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: dict | None = None,
    trust_model: bool = False,
    weights_meta: str | None = None,
) -> LoadedModel:
    """Load a classifier from ``path`` under the policy in the module docstring, on CPU. ``declared`` holds what
    the model's source declares: a torchvision weights enum named by ``weights_meta``, else a timm network's
    ``pretrained_cfg``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AuditError(f"model file {path} does not exist; check the path")
    if arch_kwargs and arch is None:
        raise AuditError(
            "--arch-kwargs needs --arch: they are the arguments the --arch callable is called with"
        )
    from_weights = None if weights_meta is None else declared_by_weights(weights_member(arch, weights_meta))
    if path.is_dir():
        if is_model_folder(path):
            _reject_arch(arch, path, "a Hugging Face model folder, whose config.json names its network")
        hub = load_folder(path, trust_model)
        return LoadedModel(hub.module, str(path), hub.sha256, "huggingface", hub.load_policy, hub.architecture,
                           hub.declared)
    if path.stat().st_size == 0:
        raise _unreadable(path, "the file is empty")
    kind = _sniff(path)
    if kind == "unknown":
        raise _unreadable(path, "its content matches none of these formats")
    sha256 = file_sha256(path)
    if kind == "torchscript":
        if arch is not None:
            raise AuditError(
                f"--arch is only used with weight files (safetensors / state_dict); {path} is a TorchScript archive "
                f"that already holds its network: drop --arch, or, to hook its layers, "
                + TORCHSCRIPT_TO_WEIGHTS.replace("MODEL", str(path))
            )
        network = _guarded(path, "TorchScript", lambda: torch.jit.load(str(path), map_location="cpu"))
        return LoadedModel(network, str(path), sha256, kind, POLICY_TORCHSCRIPT, None)
    if kind == "torch.export":
        _reject_arch(arch, path, "a torch.export program")
        if not trust_model:
            why = "torch.export.load unpickles parts of it and evaluates expressions"
            raise _refusal(path, "a torch.export program", why)
        network = _guarded(path, "torch.export", lambda: torch.export.load(str(path)).module())
        return LoadedModel(network, str(path), sha256, kind, POLICY_EXPORT, None)
    if kind == "safetensors":
        obj, policy = (
            _guarded(path, "safetensors", lambda: load_file(str(path), device="cpu")),
            POLICY_WEIGHTS,
        )
    else:
        obj, policy = _torch_load(path, trust_model)
    network, fmt = _network_from(obj, path, arch, dict(arch_kwargs or {}))
    fmt = "safetensors" if kind == "safetensors" else fmt
    declared = from_weights or declared_by_timm(network, arch_kwargs or {})
    return LoadedModel(network.cpu(), str(path), sha256, fmt, policy, arch, declared)
