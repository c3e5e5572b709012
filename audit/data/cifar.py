"""CIFAR-10/100 python batches: pickled dicts of uint8 ``data`` (N×3072 rows) and ``labels``/``fine_labels``.

Detected as a folder holding ``test_batch`` or ``data_batch_*`` (CIFAR-10) or a pickled ``test``/``train``
(CIFAR-100), or as one such file. The test batch is used when present; class names come from the
``batches.meta``/``meta`` file beside it. A pickle is a program: every batch is loaded with the restricted,
memory-bounded unpickler of :mod:`audit.data.pickles`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.data.bounded import read_head
from audit.data.idx import parse_idx_header
from audit.data.pickles import load_restricted_pickle
from audit.data.source import Source, array_source
from audit.errors import AuditError

PICKLE_BYTE = b"\x80"  # the first byte of a pickle of protocol 2 or later
BATCH_NAMES = ("test_batch", "test", "train")  # the names of one batch file, besides data_batch_*


def batch_files(directory: Path) -> list[Path] | None:
    """The batches to use from a CIFAR directory (test data when present), or None when it is not one."""
    if (directory / "test_batch").is_file():
        return [directory / "test_batch"]
    train = [p for p in directory.glob("data_batch_*") if p.is_file()]
    if train:
        return sorted(train, key=lambda p: (len(p.name), p.name))
    for name in ("test", "train"):  # CIFAR-100; these names are generic, so require pickle content
        if (directory / name).is_file() and read_head(directory / name, 1) == PICKLE_BYTE:
            return [directory / name]
    return None


def detect(path: Path) -> list[Path] | None:
    """The batch files to read: a CIFAR folder's (see ``batch_files``), or a single file that is a pickle or is
    named like a batch and is not an IDX file (an MNIST file may be called ``test`` too)."""
    if path.is_dir():
        return batch_files(path)
    if parse_idx_header(read_head(path)) is not None:
        return None
    with open(path, "rb") as f:
        first = f.read(1)
    if first == PICKLE_BYTE or path.name in BATCH_NAMES or path.name.startswith("data_batch"):
        return [path]
    return None


def _batch_dict(path: Path) -> dict:
    obj = load_restricted_pickle(path)
    if not isinstance(obj, dict):
        raise AuditError(f"'{path}' is a pickle but not a CIFAR batch (it holds a {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _class_names(directory: Path, labels_key: str) -> list[str] | None:
    meta_name, names_key = ("meta", "fine_label_names") if labels_key == "fine_labels" else \
        ("batches.meta", "label_names")
    if not (directory / meta_name).is_file():
        return None
    names = _batch_dict(directory / meta_name).get(names_key)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else None


def read(files: list[Path]) -> Source:
    images, labels, labels_key = [], [], "labels"
    for path in files:
        batch = _batch_dict(path)
        labels_key = "fine_labels" if "fine_labels" in batch else "labels"
        data, y = batch.get("data"), batch.get(labels_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or y is None or len(y) != len(data):
            raise AuditError(f"'{path}' is not a CIFAR batch: it needs uint8 'data' and as many "
                             f"'labels'/'fine_labels'")
        side = round((data[0].size / 3) ** 0.5) if len(data) else 0
        if data.ndim == 2 and side > 0 and 3 * side * side == data.shape[1]:
            data = data.reshape(len(data), 3, side, side)
        if data.ndim != 4 or data.shape[1] != 3:
            raise AuditError(f"'{path}' has CIFAR data of shape {data.shape}; expected N×3072 (3×H×W rows)")
        images.append(data)
        labels.append(np.asarray(y, dtype=np.int64))
    data = images[0] if len(images) == 1 else np.concatenate(images)
    return array_source("cifar", data, np.concatenate(labels), _class_names(files[0].parent, labels_key), "NCHW")
