"""Evaluation images: detect a data source, sample it stratified by class, and decode it lazily in batches.

Every format is a small reader that returns a ``_Source``: all labels plus a ``read(i)`` that decodes sample
``i`` into an H×W×C array. Sampling and batching are shared on top of that (``ImageSet``). Accepted sources:
an ImageFolder directory, CIFAR-10/100 python batches, MNIST-style IDX files, an ``.npz`` with ``x``/``y``, and
the built-in ``"demo"`` set.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from audit.bounded_io import read_npz
from audit.datasets_io import (
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    ZIP_MAGIC,
    Framing,
    assemble,
    check_npz_labels,
    check_size,
    load_idx,
    load_restricted_pickle,
    npz_layout,
    parse_idx_header,
    pil_to_array,
    read_head,
    stratified_indices,
    to_chw,
)
from audit.errors import AuditError
from audit.labels import FASHION_MNIST
from audit.options import parse_samples

ACCEPTED = ("an ImageFolder directory (DIR/<class>/<images>), CIFAR-10/100 python batches, "
            "MNIST-style IDX files (.gz ok), an .npz with 'x' and 'y', or 'demo'")
DEMO_FILE = Path(__file__).parent / "demo_assets" / "fashion_mnist_test.npz"


@dataclass
class Batch:
    x: torch.Tensor  # float32 (B, C, H, W) in [0, 1]
    y: torch.Tensor  # int64 (B,)
    index: torch.Tensor  # int64 (B,): positions in ImageSet.labels


class Unreadable(Exception):
    """One sample could not be decoded; the message is the reason (one line)."""


@dataclass
class _Source:
    """What a format reader hands to ``ImageSet``."""

    format: str
    labels: np.ndarray  # int64 label of every sample in the source
    read: Callable[[int], np.ndarray]  # sample i as H×W(×C) uint8, or float in [0, 1]; may raise Unreadable
    probe: Callable[[int], tuple[tuple[int, int], int]]  # ((H, W), channels) of sample i; may raise Unreadable
    classes: list[str] | None = None
    one_size: bool = True  # every sample has the same size (arrays); False: each must be probed (image files)
    describe: Callable[[int], str] = lambda i: f"sample #{i}"  # how reports name sample i


class ImageSet:
    """The chosen samples of one source, decoded batch by batch on demand, each framed by ``framing``
    (``--resize``/``--crop``) before it is brought to the batch's size."""

    def __init__(self, source: str, src: _Source, chosen: np.ndarray, framing: Framing | None = None):
        self.source = str(source)
        self.format = src.format
        self.classes = src.classes
        self.n_available = len(src.labels)
        self.labels = src.labels[chosen].astype(np.int64)
        self.corrupt: list[str] = []
        self.framing = framing or Framing()
        self.size_note: str | None = None  # set when input_size falls back on the model's declared size
        self._src = src
        self._chosen = chosen
        self._bad: set[int] = set()  # positions already reported in .corrupt
        self.sizes, self.native_channels = self._survey()
        # the size every chosen sample has once framed; None when they differ (see input_size)
        self.native_size = next(iter(self.sizes)) if len(self.sizes) == 1 else None if self.sizes else (0, 0)

    def __len__(self) -> int:
        return len(self._chosen)

    @property
    def chosen(self) -> np.ndarray:
        """The indices of the audited samples in the source, in data order (a copy)."""
        return self._chosen.copy()

    def _survey(self) -> tuple[Counter, int]:
        """How many chosen samples have each size once framed (every one probed unless the source has one
        size), and the channels of the first that opens (3 when none does). A crop larger than a sample is
        refused here, naming the sample."""
        sizes: Counter = Counter()
        channels = None
        for item in self._chosen.tolist():
            try:
                native, found = self._src.probe(item)
            except Unreadable:
                continue
            if not self.framing.fits(native):
                raise AuditError(f"--crop {_hw(self.framing.crop)} is larger than {self._src.describe(item)} "
                                 f"({_hw(native)}): use a smaller --crop, or --resize N with N at least the crop")
            if channels is None:
                channels = found
                if self._src.one_size:
                    sizes[self.framing.size(native)] = len(self._chosen)
                    break
            sizes[self.framing.size(native)] += 1
        return sizes, 3 if channels is None else channels

    def input_size(self, given: tuple[int, int] | None = None,
                   declared: tuple[int, int] | None = None) -> tuple[int, int]:
        """The size every image is brought to: ``given`` (``--input-size``), else the size all chosen samples
        share once framed, else ``declared`` (the model's own). Samples of mixed sizes with neither are
        refused: squashing them all to one of their sizes would distort the others."""
        if given is not None:
            return check_size(given)
        if self.native_size is not None:
            return self.native_size
        if declared is not None:
            self.size_note = (f"the chosen images have {len(self.sizes)} different sizes: each was resized to the "
                              f"model's declared input size {_hw(declared)}, its aspect ratio not kept "
                              "(--resize N --crop N keeps it)")
            return check_size(declared)
        common = ", ".join(f"{_hw(size)} ({n})" for size, n in self.sizes.most_common(3))
        more = f" and {len(self.sizes) - 3} more sizes" if len(self.sizes) > 3 else ""
        hint = (f"--crop N (N <= {self.framing.resize})" if self.framing.resize is not None
                else "--resize 256 --crop 224")
        raise AuditError(f"the chosen images have {len(self.sizes)} different sizes (HxW: {common}{more}) and the "
                         f"model declares none: give --input-size HxW to resize them all, or {hint} for photos")

    def batches(self, batch_size: int, size: tuple[int, int] | None = None,
                channels: int | None = None) -> Iterator[Batch]:
        """Batches of at most ``batch_size`` readable samples, in order; unreadable ones go to ``.corrupt``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise AuditError(f"batch size must be a positive integer, got {batch_size!r}")
        size = self.input_size(size)
        channels = self.native_channels if channels is None else channels
        if isinstance(channels, bool) or channels not in (1, 3):
            raise AuditError(f"images can be converted to 1 or 3 channels, not {channels!r}")
        return self._iter_batches(batch_size, size, channels)

    def _iter_batches(self, batch_size: int, size: tuple[int, int], channels: int) -> Iterator[Batch]:
        images: list[torch.Tensor] = []
        positions: list[int] = []
        for pos, item in enumerate(self._chosen.tolist()):
            if pos in self._bad:
                continue
            try:
                images.append(self.framing(to_chw(self._src.read(item))))
            except Unreadable as exc:
                self._bad.add(pos)
                self.corrupt.append(f"{self._src.describe(item)}: {exc}")
                continue
            positions.append(pos)
            if len(images) == batch_size:
                yield self._make_batch(images, positions, size, channels)
                images, positions = [], []
        if images:
            yield self._make_batch(images, positions, size, channels)

    def _make_batch(self, images: list[torch.Tensor], positions: list[int], size: tuple[int, int],
                    channels: int) -> Batch:
        index = torch.tensor(positions, dtype=torch.int64)
        return Batch(x=assemble(images, size, channels), y=torch.from_numpy(self.labels[positions]), index=index)


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# ----------------------------------------------------------------------------------------------- ImageFolder


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


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _imagefolder(root: Path) -> _Source | None:
    """DIR/<class>/**/<image>, ordered like torchvision's ImageFolder; None when no class folder has images."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(root / name, followlinks=True)):
            if any(part.startswith(".") for part in Path(dirpath).relative_to(root / name).parts):
                continue
            found = [Path(dirpath, f) for f in sorted(filenames) if _is_image(f)]
            files += found
            labels += [k] * len(found)
    if not files:
        return None
    return _Source("imagefolder", np.asarray(labels, dtype=np.int64), classes=classes,
                   read=lambda i: _open_image(files[i], decode=True),
                   probe=lambda i: _open_image(files[i], decode=False),
                   describe=lambda i: str(files[i]), one_size=False)


# ----------------------------------------------------------------------------------------------- array formats


def _array_source(fmt: str, images: np.ndarray, labels: np.ndarray, classes: list[str] | None,
                  layout: str) -> _Source:
    """A source over an in-memory (or memory-mapped) array; ``layout`` is "NHW", "NHWC" or "NCHW"."""
    if layout == "NCHW":
        images = images.transpose(0, 2, 3, 1)
    h, w = images.shape[1:3]
    c = images.shape[3] if images.ndim == 4 else 1
    native = ((int(h), int(w)), 3 if c >= 3 else 1)
    if images.dtype != np.uint8:
        images = images.astype(np.float32, copy=False)
    return _Source(fmt, labels.astype(np.int64), read=lambda i: images[i], probe=lambda i: native,
                   classes=classes)


def _cifar_files(directory: Path) -> list[Path] | None:
    """The batches to use from a CIFAR directory (test data when present), or None when it is not one."""
    if (directory / "test_batch").is_file():
        return [directory / "test_batch"]
    train = [p for p in directory.glob("data_batch_*") if p.is_file()]
    if train:
        return sorted(train, key=lambda p: (len(p.name), p.name))
    for name in ("test", "train"):  # CIFAR-100; these names are generic, so require pickle content
        if (directory / name).is_file() and read_head(directory / name, 1) == b"\x80":
            return [directory / name]
    return None


def _cifar_dict(path: Path) -> dict:
    obj = load_restricted_pickle(path)
    if not isinstance(obj, dict):
        raise AuditError(f"'{path}' is a pickle but not a CIFAR batch (it holds a {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_classes(directory: Path, labels_key: str) -> list[str] | None:
    meta_name, names_key = ("meta", "fine_label_names") if labels_key == "fine_labels" else \
        ("batches.meta", "label_names")
    if not (directory / meta_name).is_file():
        return None
    names = _cifar_dict(directory / meta_name).get(names_key)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else None


def _cifar(files: list[Path]) -> _Source:
    images, labels, labels_key = [], [], "labels"
    for path in files:
        batch = _cifar_dict(path)
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
    return _array_source("cifar", data, np.concatenate(labels), _cifar_classes(files[0].parent, labels_key),
                         "NCHW")


def _idx_labels_path(images: Path) -> Path:
    """The labels file next to an images file: images-idx3 -> labels-idx1, with or without .gz."""
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    stem = name.removesuffix(".gz")
    for candidate in (images.with_name(name), images.with_name(stem), images.with_name(stem + ".gz")):
        if candidate != images and candidate.is_file():
            return candidate
    raise AuditError(f"found no labels for '{images}' (looked for '{images.with_name(name)}'); "
                     "put the matching *-labels-idx1-ubyte file beside it")


def _idx_images_in(directory: Path) -> Path | None:
    """The images file to use in a directory (or its raw/): t10k/test before train, plain before .gz."""
    def rank(p: Path) -> tuple:
        return "t10k" not in p.name and "test" not in p.name, p.name.endswith(".gz"), p.name

    for folder in (directory, directory / "raw"):
        found = [p for p in folder.glob("*idx3*") if p.is_file()] if folder.is_dir() else []
        if found:
            return min(found, key=rank)
    return None


def _idx(images_path: Path) -> _Source:
    images = load_idx(images_path)
    labels = load_idx(_idx_labels_path(images_path))
    if images.dtype != np.uint8 or images.ndim != 3:
        raise AuditError(f"'{images_path}' holds {images.dtype} data of shape {images.shape}; "
                         "expected unsigned-byte images N×H×W")
    if labels.ndim != 1 or len(labels) != len(images):
        raise AuditError(f"IDX labels have shape {labels.shape} but '{images_path}' holds {len(images)} images")
    return _array_source("idx", images, np.asarray(labels), None, "NHW")


def _npz(path: Path, fmt: str = "npz", classes: list[str] | None = None) -> _Source:
    arrays = read_npz(path, ("x", "y"), "it needs 'x' (images) and 'y' (integer labels)")
    x, y = arrays["x"], arrays["y"]
    return _array_source(fmt, x, check_npz_labels(path, x, y), classes, npz_layout(path, x))


# ----------------------------------------------------------------------------------------------- detection


def _demo() -> _Source:
    if not DEMO_FILE.is_file():
        raise AuditError(f"the built-in demo set is missing ({DEMO_FILE}); reinstall robustness-audit")
    return _npz(DEMO_FILE, fmt="demo", classes=list(FASHION_MNIST))


def _from_directory(path: Path) -> _Source:
    cifar = _cifar_files(path)
    if cifar:
        return _cifar(cifar)
    idx_images = _idx_images_in(path)
    if idx_images is not None:
        return _idx(idx_images)
    folder = _imagefolder(path)
    if folder is not None:
        return folder
    if any(_is_image(p.name) for p in path.iterdir() if p.is_file()):
        raise AuditError(f"'{path}' holds images but no class folders; arrange them as {path}/<class>/<image>")
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if _cifar_files(sub) or _idx_images_in(sub):
            raise AuditError(f"'{path}' holds no data set itself, but '{sub}' looks like one; pass that path")
    raise AuditError(f"'{path}' is not a recognized data set; pass {ACCEPTED}")


def _from_file(path: Path) -> _Source:
    with open(path, "rb") as f:
        raw = f.read(4)
    if raw.startswith(ZIP_MAGIC):
        return _npz(path)
    header = parse_idx_header(read_head(path))
    if header is not None and len(header[1]) == 1:
        raise AuditError(f"'{path}' is an IDX labels file; pass the matching images file (*-images-idx3-ubyte)")
    if header is not None:
        return _idx(path)
    if raw[:1] == b"\x80" or path.name in ("test_batch", "test", "train") or path.name.startswith("data_batch"):
        return _cifar([path])
    if _is_image(path.name):
        raise AuditError(f"'{path}' is a single image; put images in DIR/<class>/<image> and pass DIR")
    raise AuditError(f"'{path}' is not a recognized data file; pass {ACCEPTED}")


def open_data(spec: str, *, samples: int | None = None, seed: int = 0, framing: Framing | None = None) -> ImageSet:
    """Open ``spec`` ("demo" or a path, detected by content), choose ``samples`` stratified by class, and frame
    each image with ``framing`` (``--resize``/``--crop``)."""
    samples = parse_samples(samples)
    if spec == "demo":
        src = _demo()
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise AuditError(f"data path '{spec}' does not exist; pass {ACCEPTED}")
        src = _from_directory(path) if path.is_dir() else _from_file(path)
    if len(src.labels) == 0:
        raise AuditError(f"data source '{spec}' holds no samples")
    return ImageSet(spec, src, stratified_indices(src.labels, samples, seed), framing)
