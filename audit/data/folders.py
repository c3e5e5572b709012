"""ImageFolder: ``DIR/<class>/**/<image>``, one folder per class, ordered as torchvision's ImageFolder orders it.

Detected when a folder's class folders hold image files; each image is decoded with PIL only when its batch is
read, and one that cannot be decoded is reported by path and skipped (``Unreadable``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from audit.data.source import Source, Unreadable

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}  # PIL modes read as one channel, plus every "I;16..." mode


@dataclass(frozen=True)
class Listing:
    """The image files of an ImageFolder, with the class index of each."""

    classes: list[str]
    files: list[Path]
    labels: list[int]


def is_image(name: str) -> bool:
    """Whether a file name is an image the reader decodes (by extension; hidden files are not)."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image as H×W×1 (gray) or H×W×3; 16-bit and float gray are scaled into [0, 1] floats."""
    if img.mode == "F" or img.mode == "I" or img.mode.startswith("I;16"):
        scale = 1.0 if img.mode == "F" else 65535.0
        return np.clip(np.asarray(img, dtype=np.float32) / scale, 0.0, 1.0)[:, :, None]
    return np.asarray(img.convert("L" if img.mode in GRAY_MODES else "RGB"))


def _open_image(path: Path, decode: bool):
    """Decode ``path`` (decode=True) or only read its header; every failure becomes ``Unreadable``."""
    try:
        with Image.open(path) as img:
            if decode:
                return pil_to_array(img)
            gray = img.mode in GRAY_MODES or img.mode.startswith("I;16")
            return (img.height, img.width), 1 if gray else 3
    except UnidentifiedImageError:
        raise Unreadable("not a recognizable image file") from None
    except Exception as exc:  # noqa: BLE001 -- PIL raises many exception types on malformed data
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Unreadable(reason) from None


def detect(root: Path) -> Listing | None:
    """The images of ``DIR/<class>/**/<image>`` in torchvision's order; None when ``root`` is not a folder or
    no class folder has images."""
    if not root.is_dir():
        return None
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(root / name, followlinks=True)):
            if any(part.startswith(".") for part in Path(dirpath).relative_to(root / name).parts):
                continue
            found = [Path(dirpath, f) for f in sorted(filenames) if is_image(f)]
            files += found
            labels += [k] * len(found)
    return Listing(classes, files, labels) if files else None


def read(listing: Listing) -> Source:
    files = listing.files
    return Source("imagefolder", np.asarray(listing.labels, dtype=np.int64), classes=listing.classes,
                  read=lambda i: _open_image(files[i], decode=True),
                  probe=lambda i: _open_image(files[i], decode=False),
                  describe=lambda i: str(files[i]), one_size=False)
