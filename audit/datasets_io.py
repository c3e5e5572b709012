"""The pieces behind ``audit.data``: IDX parsing, stratified sampling, tensor conversion, per-format checks.

Nothing here knows about data-set layouts on disk; ``audit.data`` combines these pieces into readers.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from audit.bounded_io import array_bytes, check_claim, read_gzip
from audit.errors import AuditError
from audit.safe_pickle import load_restricted_pickle

__all__ = ["load_restricted_pickle"]  # re-exported: data readers take every format's loader from here

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}  # PIL modes read as one channel, plus every "I;16..." mode
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"

# ---------------------------------------------------------------------------------------------------------
# IDX files (MNIST family): 2 zero bytes, a type code, the number of dims, then big-endian uint32 dims
# ---------------------------------------------------------------------------------------------------------

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_head(path: Path, n: int = 64) -> bytes:
    """The first ``n`` bytes of a file, decompressed when it is gzip."""
    with open(path, "rb") as f:
        head = f.read(n)
    if head.startswith(GZIP_MAGIC):
        try:
            return read_gzip(path, n)
        except (OSError, EOFError, zlib.error):
            return b""
    return head


def parse_idx_header(head: bytes) -> tuple[np.dtype, tuple[int, ...], int] | None:
    """(dtype, dims, header length) of an IDX header, or None when ``head`` is not one."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES or not 1 <= head[3] <= 4:
        return None
    ndim = head[3]
    end = 4 + 4 * ndim
    if len(head) < end:
        return None
    dims = struct.unpack(f">{ndim}I", head[4:end])
    return np.dtype(IDX_DTYPES[head[2]]), dims, end


def load_idx(path: Path) -> np.ndarray:
    """The array in an IDX file: memory-mapped when plain; when gzip, inflated into memory, but only as many
    bytes as the header promises and only when that fits the file's allowance (a gzip bomb is refused)."""
    header = parse_idx_header(read_head(path))
    if header is None:
        raise AuditError(f"'{path}' is not an IDX file (bad magic number); pass MNIST-style *-idx?-ubyte files")
    dtype, dims, offset = header
    count, expected = math.prod(dims), array_bytes(dims, dtype)
    size = path.stat().st_size
    with open(path, "rb") as f:
        compressed = f.read(2) == GZIP_MAGIC
    if compressed:
        check_claim(path, expected, size, f"has a header promising {dims} {dtype.name} values, which would inflate "
                    "to", "gunzip it: a plain IDX file is memory-mapped instead of read")
        try:
            raw = read_gzip(path, offset + expected)
        except (OSError, EOFError, zlib.error) as exc:
            raise AuditError(f"'{path}' is a damaged gzip file ({exc}); re-download it") from None
        if len(raw) - offset < expected:
            raise AuditError(f"'{path}' is truncated: its header promises {dims} but the data is short")
        return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)
    if size - offset < expected:
        raise AuditError(f"'{path}' is truncated: its header promises {dims} but the data is short")
    if expected == 0:
        return np.zeros(dims, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)


# ---------------------------------------------------------------------------------------------------------
# Stratified sampling
# ---------------------------------------------------------------------------------------------------------


def even_quotas(capacity: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` as evenly as possible over groups that hold at most ``capacity[i]`` items each.

    Groups too small to take an equal share give everything they have and the rest is shared again among the
    others; the leftover units of the final even split (all with the same fractional remainder) go to groups
    picked by ``rng``, so quotas differ by at most one among the groups that are not exhausted.
    """
    quota = np.zeros(len(capacity), dtype=np.int64)
    open_groups = np.flatnonzero(capacity > 0)
    remaining = min(int(n), int(capacity.sum()))
    while remaining > 0:
        share = remaining // len(open_groups)
        small = open_groups[capacity[open_groups] <= share]
        if len(small):  # exhausted groups take all they have; redistribute the rest
            quota[small] = capacity[small]
            remaining -= int(capacity[small].sum())
            open_groups = np.setdiff1d(open_groups, small)
            continue
        quota[open_groups] = share
        extra = rng.choice(open_groups, size=remaining - share * len(open_groups), replace=False)
        quota[extra] += 1
        remaining = 0
    return quota


def stratified_indices(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Ascending indices of ``n`` items drawn evenly per label without replacement (all when n is None/too big)."""
    total = len(labels)
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    quotas = even_quotas(np.array([len(m) for m in members], dtype=np.int64), n, rng)
    chosen = [rng.choice(m, size=int(q), replace=False) for m, q in zip(members, quotas, strict=True) if q > 0]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Array -> tensor conversion
# ---------------------------------------------------------------------------------------------------------

_LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """An H×W×C (C = 1..4) uint8 or [0, 1] float image as a float32 C×H×W tensor with 1 or 3 channels."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] in (2, 4):  # drop alpha: LA -> L, RGBA -> RGB
        array = array[:, :, : array.shape[2] - 1]
    # a copy: sources may be read-only memory maps, and batches must never alias them
    t = torch.from_numpy(np.array(array.transpose(2, 0, 1), order="C", copy=True))
    return t.float() / 255.0 if array.dtype == np.uint8 else t.float()


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a B×C×H×W batch to ``channels`` (1 or 3): gray is repeated; colour becomes BT.601 luma."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.repeat(1, 3, 1, 1)
    if have == 3 and channels == 1:
        return (x * _LUMA).sum(dim=1, keepdim=True)
    raise AuditError(f"cannot convert {have}-channel images to {channels} channels; use 1 or 3")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a B×C×H×W batch to ``size``, clamped to [0, 1]; a no-op at that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def convert(x: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Resize a B×C×H×W batch and convert its channels, resizing whichever side has fewer channels.

    Both steps are linear per pixel, so their order does not change the result, only the cost.
    """
    if channels < x.shape[1]:
        return resize(match_channels(x, channels), size)
    return match_channels(resize(x, size), channels)


@dataclass(frozen=True)
class Framing:
    """The standard evaluation transform for photos, applied to each image before it is brought to the input
    size: resize the short side to ``resize`` pixels (antialiased bilinear, the aspect ratio kept), then cut the
    centre ``crop`` (H, W) out of it, placed as torchvision's ``center_crop`` places it (the margin before it is
    half the spare pixels, rounded half to even). Either step may be None; with both None an image passes
    unchanged."""

    resize: int | None = None
    crop: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return self.resize is not None or self.crop is not None

    def resized(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of an image of ``size`` after the short-side resize (the long side rounded down)."""
        h, w = size
        if self.resize is None or min(h, w) == self.resize:
            return h, w
        if h <= w:
            return self.resize, max(1, self.resize * w // h)
        return max(1, self.resize * h // w), self.resize

    def size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of an image of ``size`` after framing."""
        return self.crop if self.crop is not None else self.resized(size)

    def fits(self, size: tuple[int, int]) -> bool:
        """Whether the crop fits inside an image of ``size`` once it is resized."""
        h, w = self.resized(size)
        return self.crop is None or (self.crop[0] <= h and self.crop[1] <= w)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Frame one C×H×W image (the crop must fit, see :meth:`fits`)."""
        h, w = self.resized(tuple(image.shape[-2:]))
        if (h, w) != tuple(image.shape[-2:]):
            image = resize(image.unsqueeze(0), (h, w))[0]
        if self.crop is None:
            return image
        top, left = round((h - self.crop[0]) / 2), round((w - self.crop[1]) / 2)
        return image[:, top: top + self.crop[0], left: left + self.crop[1]]


def assemble(images: list[torch.Tensor], size: tuple[int, int], channels: int) -> torch.Tensor:
    """Stack C×H×W images of possibly different sizes/channels into one B×channels×size batch."""
    if len({tuple(t.shape) for t in images}) == 1:  # common case: one resize call for the whole batch
        return convert(torch.stack(images), size, channels).contiguous()
    return torch.cat([convert(t.unsqueeze(0), size, channels) for t in images]).contiguous()


# ---------------------------------------------------------------------------------------------------------
# Per-format validation and decoding
# ---------------------------------------------------------------------------------------------------------


def check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        h = w = 0
    if h < 1 or w < 1:
        raise AuditError(f"image size must be two positive integers (H, W), got {size!r}")
    return h, w


def pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image as H×W×1 (gray) or H×W×3; 16-bit and float gray are scaled into [0, 1] floats."""
    if img.mode == "F" or img.mode == "I" or img.mode.startswith("I;16"):
        scale = 1.0 if img.mode == "F" else 65535.0
        return np.clip(np.asarray(img, dtype=np.float32) / scale, 0.0, 1.0)[:, :, None]
    return np.asarray(img.convert("L" if img.mode in GRAY_MODES else "RGB"))


def check_npz_labels(path: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise AuditError(f"'{path}': y must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if len(x) != len(y):
        raise AuditError(f"'{path}': x holds {len(x)} images but y holds {len(y)} labels; they must match")
    if len(y) and y.min() < 0:
        raise AuditError(f"'{path}': y holds negative labels (min {y.min()}); labels must be class indices >= 0")
    return y


def npz_layout(path: Path, x: np.ndarray) -> str:
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
