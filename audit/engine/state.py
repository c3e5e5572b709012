"""The saved state of an audit in progress (``OUT/.state/``), for ``--resume``: JSON and ``.npz``, never pickles.

An audit's accumulators export plain trees of dicts, lists, numbers, strings and arrays (``export()``); this
module splits such a tree into a JSON skeleton and the arrays, writes both atomically, and reads them back.
Files, per rank of a distributed run: ``rank{R}.json`` naming its ``rank{R}-{generation}.npz``; the npz is
written first and the JSON last, so a crash between the two leaves the previous generation intact.

The state holds a fingerprint of everything that determines the numbers; resuming under another fingerprint is
refused, naming what differs.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from audit.errors import AuditError
from reports.schema import write_atomic

FORMAT = 1


def flatten(tree, arrays: dict, path: str = "a"):
    """``tree`` with every array (numpy or torch) replaced by ``{"__array__": key}``; the arrays go to ``arrays``."""
    if isinstance(tree, torch.Tensor):
        tree = tree.detach().cpu().numpy()
    if isinstance(tree, np.ndarray):
        key = f"{path}.{len(arrays)}"
        arrays[key] = tree
        return {"__array__": key}
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise TypeError("state keys must be strings")
        return {k: flatten(v, arrays, path) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [flatten(v, arrays, path) for v in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    raise TypeError(f"cannot save a {type(tree).__name__} in the audit state")


def unflatten(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return np.array(arrays[tree["__array__"]])
        return {k: unflatten(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten(v, arrays) for v in tree]
    return tree


def fingerprint(parts: dict) -> dict:
    """What determines the numbers, each part hashed short enough to read: {name: digest}."""
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for k, v in sorted(parts.items())}


class StateDir:
    """The state of one rank under ``folder`` (``OUT/.state``)."""

    def __init__(self, folder: Path, rank: int = 0):
        self.folder, self.rank = Path(folder), rank
        self.json = self.folder / f"rank{rank}.json"

    def exists(self) -> bool:
        return self.json.exists()

    def save(self, fp: dict, state: dict) -> None:
        arrays: dict = {}
        skeleton = flatten(state, arrays)
        generation = 0
        if self.json.exists():
            try:
                generation = int(json.loads(self.json.read_text())["generation"]) + 1
            except (ValueError, KeyError, OSError, TypeError):
                generation = 0
        npz = self.folder / f"rank{self.rank}-{generation}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(npz, buffer.getvalue())
        write_atomic(self.json, json.dumps({"format": FORMAT, "generation": generation, "fingerprint": fp,
                                            "state": skeleton}, allow_nan=True))
        for old in self.folder.glob(f"rank{self.rank}-*.npz"):
            if old != npz:
                old.unlink(missing_ok=True)

    def load(self, fp: dict) -> dict:
        """The saved state; a different fingerprint, or a truncated or corrupted file, is a one-line error."""
        where = f"the saved audit state in {self.folder}"
        try:
            saved = json.loads(self.json.read_text(encoding="utf-8"))
            if saved.get("format") != FORMAT:
                raise ValueError(f"unknown format {saved.get('format')!r}")
            npz = self.folder / f"rank{self.rank}-{int(saved['generation'])}.npz"
            with np.load(npz, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            differs = [k for k in sorted(set(fp) | set(saved["fingerprint"]))
                       if fp.get(k) != saved["fingerprint"].get(k)]
            state = unflatten(saved["state"], arrays)
        except FileNotFoundError as exc:
            raise AuditError(f"{where} is incomplete ({Path(exc.filename).name} is missing): start without "
                             "--resume") from None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise AuditError(f"{where} is unreadable ({detail}): remove it, or start without --resume") from None
        if differs:
            raise AuditError(f"{where} belongs to another audit: {', '.join(differs)} differ; rerun with the "
                             "same settings, or start without --resume")
        return state

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
