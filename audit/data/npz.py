"""NumPy ``.npz`` archives holding ``x`` (images) and ``y`` (integer labels).

Detected by the zip signature. ``x`` is uint8 N×H×W or N×H×W×C, or float N×C×H×W in [0, 1]. Members are read by
:func:`audit.data.bounded.read_npz`: stored ones memory-mapped, compressed ones inflated within the file's
allowance, and never a pickled object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.data.bounded import read_npz
from audit.data.source import Source, array_source
from audit.errors import AuditError

ZIP_MAGIC = b"PK\x03\x04"


def detect(path: Path) -> Path | None:
    """``path`` when it is a file that starts with the zip signature, else None."""
    if path.is_dir():
        return None
    with open(path, "rb") as f:
        return path if f.read(4).startswith(ZIP_MAGIC) else None


def check_labels(path: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise AuditError(f"'{path}': y must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if len(x) != len(y):
        raise AuditError(f"'{path}': x holds {len(x)} images but y holds {len(y)} labels; they must match")
    if len(y) and y.min() < 0:
        raise AuditError(f"'{path}': y holds negative labels (min {y.min()}); labels must be class indices >= 0")
    return y


def layout(path: Path, x: np.ndarray) -> str:
    """Validate ``x`` and return its layout: uint8 N×H×W or N×H×W×C, or float N×C×H×W in [0, 1]."""
    if x.dtype == np.uint8 and x.ndim == 3:
        return "NHW"
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] in (1, 3, 4):
        return "NHWC"
    if np.issubdtype(x.dtype, np.floating) and x.ndim == 4 and x.shape[1] in (1, 3, 4):
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise AuditError(f"'{path}': float x must lie in [0, 1], found values in [{lo}, {hi}]; "
                             "divide by 255 or undo the normalization")
        return "NCHW"
    raise AuditError(f"'{path}': x is {x.dtype} of shape {x.shape}; expected uint8 N×H×W or N×H×W×C "
                     "(C = 1, 3 or 4), or float N×C×H×W in [0, 1]")


def read(path: Path, fmt: str = "npz", classes: list[str] | None = None) -> Source:
    """The samples of an .npz; ``fmt`` and ``classes`` name a source that is an .npz underneath (the demo)."""
    arrays = read_npz(path, ("x", "y"), "it needs 'x' (images) and 'y' (integer labels)")
    x, y = arrays["x"], arrays["y"]
    return array_source(fmt, x, check_labels(path, x, y), classes, layout(path, x))
