"""Building the network a weights file belongs to: ``--arch package.module:callable``, ``file.py:callable`` or
``timm:NAME`` (a timm model by name, :mod:`audit.model.timm_models`), called with ``--arch-kwargs``, then fitted
with the weights and a one-line account of any mismatch."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch

from audit.errors import AuditError, short_reason
from audit.model.torchvision_door import through_door

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _import_target(spec: str, target: str):
    if target.endswith(".py") or "/" in target or "\\" in target:
        file = Path(target)
        if not file.is_file():
            raise AuditError(
                f"--arch {spec}: {file} does not exist; give an existing .py file or a module name"
            )
        name = "_audit_arch_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
        module_spec = importlib.util.spec_from_file_location(name, file)
        if module_spec is None or module_spec.loader is None:
            raise AuditError(f"--arch {spec}: {file} cannot be imported as Python; give a .py file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look classes up in sys.modules
        try:
            with current_folder_importable():
                through_door(lambda: module_spec.loader.exec_module(module))
        except Exception as exc:
            del sys.modules[name]
            raise AuditError(
                f"--arch {spec}: running {file} failed ({type(exc).__name__}: {short_reason(exc)})"
            ) from exc
        return module
    if not _DOTTED.fullmatch(target):
        raise AuditError(f"--arch {spec}: {target!r} is neither a module name nor a .py file")
    try:
        if target.split(".")[0] == "torchvision":
            from audit.model.torchvision_door import import_torchvision

            import_torchvision()
        with current_folder_importable():
            return through_door(lambda: importlib.import_module(target))
    except ModuleNotFoundError as exc:
        raise AuditError(
            f"--arch {spec}: cannot import {target} ({short_reason(exc)}); check the spelling and the environment, "
            "or point at a file: --arch path/to/net.py:Net"
        ) from exc
    except Exception as exc:
        raise AuditError(
            f"--arch {spec}: importing {target} failed ({type(exc).__name__}: {short_reason(exc)})"
        ) from exc


@contextmanager
def current_folder_importable() -> Iterator[None]:
    """The current folder on ``sys.path`` while user code is imported (``--arch module:callable``, the classes a
    trusted pickle names), as ``python -m audit`` has it, so that the ``audit`` script behaves the same. It goes
    last: a file in the current folder never shadows an installed package."""
    try:
        cwd = os.getcwd()
    except OSError:  # the current folder was removed
        cwd = None
    if cwd is None or any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        yield
        return
    sys.path.append(cwd)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(cwd)


def _lookup(module: Any, target: str, attr: str) -> Any:
    found = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AuditError(f"{target} has no attribute {attr!r}; check the name after the ':'") from None
    return found


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The callable ``--arch spec`` names (imported through the torchvision door); ``timm:NAME`` with NAME a timm
    model gives ``timm.create_model(NAME, pretrained=False, **kwargs)`` (:mod:`audit.model.timm_models`)."""
    target, _, attr = spec.rpartition(":")
    if target == "timm":
        from audit.model.timm_models import timm_factory

        built = timm_factory(spec, attr)
        if built is not None:
            return built
    if not target or not _DOTTED.fullmatch(attr):
        raise AuditError(
            f"--arch {spec!r} is not of the form package.module:callable or path/to/file.py:callable, "
            "e.g. --arch torchvision.models:resnet18 or --arch timm:resnet18"
        )
    module = _import_target(spec, target)
    try:  # lazy modules (transformers) import on attribute access, and raise what that import raised
        with current_folder_importable():
            factory = through_door(lambda: _lookup(module, target, attr))
    except AuditError as exc:
        raise AuditError(f"--arch {spec}: {exc}") from None
    except Exception as exc:
        raise AuditError(
            f"--arch {spec}: looking up {attr} in {target} failed ({type(exc).__name__}: {short_reason(exc)}); "
            "check that the packages it needs are installed"
        ) from exc
    if not callable(factory):
        raise AuditError(f"--arch {spec}: {attr} is a {type(factory).__name__}, not a class or function")
    return factory


def build_network(spec: str, kwargs: dict) -> torch.nn.Module:
    factory = resolve_factory(spec)
    attr = spec.rpartition(":")[2]
    try:
        network = through_door(lambda: factory(**kwargs))
    except Exception as exc:
        raise AuditError(
            f"--arch {spec}: calling {attr}(**{json.dumps(kwargs)}) failed ({type(exc).__name__}: {short_reason(exc)}); "
            "check --arch-kwargs"
        ) from exc
    if not isinstance(network, torch.nn.Module):
        raise AuditError(
            f"--arch {spec}: {attr}(...) returned a {type(network).__name__}, not a torch.nn.Module"
        )
    return network


def _listed(items: list[str], noun: str, plural: str, sep: str = ", ") -> str:
    shown = sep.join(items[:3]) + (f"{sep}..." if len(items) > 3 else "")
    return f"{len(items)} {noun if len(items) == 1 else plural} ({shown})"


def fit_weights(network: torch.nn.Module, weights: dict, spec: str, kwargs: dict, path: Path) -> None:
    """load_state_dict(strict=True), with a one-line account of every missing, unexpected and misshapen key."""
    own = network.state_dict()
    clashes = {
        k: (weights[k], v)
        for k, v in own.items()
        if k in weights and not torch.nn.parameter.is_lazy(v) and weights[k].shape != v.shape
    }
    try:  # strict=False so that the module's own hooks decide what is missing, and we can say all of it
        result = network.load_state_dict({k: v for k, v in weights.items() if k not in clashes}, strict=False)
    except Exception as exc:
        raise AuditError(
            f"loading the weights of {path} into --arch {spec} failed: {short_reason(exc)}"
        ) from exc
    missing = [k for k in result.missing_keys if k not in clashes]
    unexpected = list(result.unexpected_keys)
    if not (clashes or missing or unexpected):
        return
    parts = [_listed(missing, "missing key", "missing keys")] if missing else []
    parts += [_listed(unexpected, "unexpected key", "unexpected keys")] if unexpected else []
    if clashes:
        dims = {
            k: ("x".join(map(str, a.shape)), "x".join(map(str, b.shape))) for k, (a, b) in clashes.items()
        }
        shapes = [f"{k}: checkpoint {a}, model {b}" for k, (a, b) in dims.items()]
        parts.append(_listed(shapes, "shape mismatch", "shape mismatches", sep="; "))
    hint = "check that --arch and --arch-kwargs build the network these weights were trained with"
    heads = [a.shape[0] for a, b in clashes.values() if a.dim() == b.dim() > 0 and a.shape[1:] == b.shape[1:]]
    if heads and kwargs.get("num_classes") != heads[-1]:
        hint = f"did you mean --arch-kwargs '{json.dumps({**kwargs, 'num_classes': heads[-1]})}'?"
    raise AuditError(f"the weights in {path} do not fit --arch {spec}: {', '.join(parts)} — {hint}")
