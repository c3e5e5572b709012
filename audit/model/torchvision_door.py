"""The one door to torchvision.

The registry's torchvision wheels are CUDA builds; beside a CPU torch their import fails with
``operator torchvision::nms does not exist`` because the C++ extension that defines the operator schemas
cannot load. Registering the two schemas that torchvision's Python side registers fake kernels for at import time
(``nms`` and ``qnms``) is enough for
models, transforms and datasets (``ops.nms`` and ``torchvision.io`` stay unusable; images are read with PIL).
We only do this after a real import failure, so a healthy torchvision is left untouched.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragments: list = []  # keeps the schema fragment alive for the life of the process


def _drop_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision():
    """Import torchvision, repairing the missing operator schemas of a CUDA wheel on a CPU torch."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        _drop_partial_import()
    import torch

    if not _fragments:
        library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            with contextlib.suppress(RuntimeError):  # already defined by a partial load
                library.define(schema)
        _fragments.append(library)
    return importlib.import_module("torchvision")


def broke_on_torchvision(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, is the missing-operator failure of torchvision's
    import (packages such as transformers and timm import torchvision lazily and re-raise it as their own)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RuntimeError) and "torchvision::" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def through_door(action: Callable[[], T]) -> T:
    """``action()``; when it failed because torchvision could not be imported, repair torchvision (once) and
    run it again. Every import of user code (``--arch``, a trusted pickle) goes through here."""
    try:
        return action()
    except Exception as exc:
        if _fragments or not broke_on_torchvision(exc):
            raise
    import_torchvision()
    return action()


def models():
    import_torchvision()
    return importlib.import_module("torchvision.models")
