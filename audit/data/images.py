"""Images as tensors: conversion of a decoded H×W×C array, the ``--resize``/``--crop`` framing, resizing and
channel conversion, and the assembly of one batch from images of any size. Format readers hand arrays to this
module; nothing here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audit.errors import AuditError
from audit.options import INTERPOLATIONS

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


def resize(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize a B×C×H×W batch to ``size``, clamped to [0, 1]; a no-op at that size. ``interpolation``:
    ``bilinear`` or ``bicubic`` (both antialiased when shrinking, as PIL and torchvision's ``antialias=True``
    do), or ``nearest``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if interpolation not in INTERPOLATIONS:
        raise AuditError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    if interpolation == "nearest":
        out = F.interpolate(x, size=tuple(size), mode="nearest-exact")
    else:
        out = F.interpolate(x, size=tuple(size), mode=interpolation, antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def convert(x: torch.Tensor, size: tuple[int, int], channels: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize a B×C×H×W batch and convert its channels, resizing whichever side has fewer channels.

    Both steps are linear per pixel, so their order does not change the result, only the cost (up to the clamp
    of a bicubic overshoot).
    """
    if channels < x.shape[1]:
        return resize(match_channels(x, channels), size, interpolation)
    return match_channels(resize(x, size, interpolation), channels)


@dataclass(frozen=True)
class Framing:
    """The standard evaluation transform for photos, applied to each image before it is brought to the input
    size: resize the short side to ``resize`` pixels (``interpolation``, antialiased; the aspect ratio kept), then
    cut the centre ``crop`` (H, W) out of it, placed as torchvision's ``center_crop`` places it (the margin before
    it is half the spare pixels, rounded half to even). Either step may be None; with both None an image passes
    unchanged. The batch's final resize to the input size uses the same ``interpolation``."""

    resize: int | None = None
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"

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
            image = resize(image.unsqueeze(0), (h, w), self.interpolation)[0]
        if self.crop is None:
            return image
        top, left = round((h - self.crop[0]) / 2), round((w - self.crop[1]) / 2)
        return image[:, top: top + self.crop[0], left: left + self.crop[1]]


def assemble(images: list[torch.Tensor], size: tuple[int, int], channels: int,
             interpolation: str = "bilinear") -> torch.Tensor:
    """Stack C×H×W images of possibly different sizes/channels into one B×channels×size batch."""
    if len({tuple(t.shape) for t in images}) == 1:  # common case: one resize call for the whole batch
        return convert(torch.stack(images), size, channels, interpolation).contiguous()
    return torch.cat([convert(t.unsqueeze(0), size, channels, interpolation) for t in images]).contiguous()


def check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        h = w = 0
    if h < 1 or w < 1:
        raise AuditError(f"image size must be two positive integers (H, W), got {size!r}")
    return h, w
