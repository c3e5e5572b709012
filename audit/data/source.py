"""What every format reader returns: a ``Source`` (all labels, and how to decode, probe and name sample ``i``),
the ``Unreadable`` error for one sample that cannot be decoded, and ``array_source`` for formats that hold their
images in one array."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class Unreadable(Exception):
    """One sample could not be decoded; the message is the reason (one line)."""


@dataclass
class Source:
    """What a format reader hands to ``ImageSet``."""

    format: str
    labels: np.ndarray  # int64 label of every sample in the source
    read: Callable[[int], np.ndarray]  # sample i as H×W(×C) uint8, or float in [0, 1]; may raise Unreadable
    probe: Callable[[int], tuple[tuple[int, int], int]]  # ((H, W), channels) of sample i; may raise Unreadable
    classes: list[str] | None = None
    one_size: bool = True  # every sample has the same size (arrays); False: each must be probed (image files)
    describe: Callable[[int], str] = lambda i: f"sample #{i}"  # how reports name sample i


def array_source(fmt: str, images: np.ndarray, labels: np.ndarray, classes: list[str] | None,
                 layout: str) -> Source:
    """A source over an in-memory (or memory-mapped) array; ``layout`` is "NHW", "NHWC" or "NCHW"."""
    if layout == "NCHW":
        images = images.transpose(0, 2, 3, 1)
    h, w = images.shape[1:3]
    c = images.shape[3] if images.ndim == 4 else 1
    native = ((int(h), int(w)), 3 if c >= 3 else 1)
    if images.dtype != np.uint8:
        images = images.astype(np.float32, copy=False)
    return Source(fmt, labels.astype(np.int64), read=lambda i: images[i], probe=lambda i: native,
                  classes=classes)
