"""``ImageSet``: the chosen samples of one source, decoded lazily batch by batch (``Batch``), each framed by
``--resize``/``--crop`` and brought to the model's input size and channels."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from audit.data.images import Framing, assemble, check_size, to_chw
from audit.data.source import Source, Unreadable
from audit.errors import AuditError


@dataclass
class Batch:
    x: torch.Tensor  # float32 (B, C, H, W) in [0, 1]
    y: torch.Tensor  # int64 (B,)
    index: torch.Tensor  # int64 (B,): positions in ImageSet.labels


class ImageSet:
    """The chosen samples of one source, decoded batch by batch on demand, each framed by ``framing``
    (``--resize``/``--crop``) before it is brought to the batch's size."""

    def __init__(self, source: str, src: Source, chosen: np.ndarray, framing: Framing | None = None):
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
        self._digests: dict[int, bytes] = {}  # position -> sha256 of the decoded sample, filled as batches are read
        self.sizes, self.native_channels = self._survey()
        # the size every chosen sample has once framed; None when they differ (see input_size)
        self.native_size = next(iter(self.sizes)) if len(self.sizes) == 1 else None if self.sizes else (0, 0)

    def __len__(self) -> int:
        return len(self._chosen)

    @property
    def chosen(self) -> np.ndarray:
        """The indices of the audited samples in the source, ascending (data order); read-only."""
        view = self._chosen.view()
        view.flags.writeable = False
        return view

    @property
    def audited(self) -> np.ndarray:
        """The indices in the source of the samples audited: the chosen ones that could be read, in data order."""
        return np.array([item for pos, item in enumerate(self._chosen.tolist()) if pos not in self._bad],
                        dtype=np.int64)

    def fingerprint(self) -> str:
        """A sha256 of what was audited, once every batch was read: the format, the number of samples in the
        source, and per audited sample (in data order) its index, label and decoded pixels (before framing).
        Two audits with the same fingerprint saw the same images with the same labels in the same order, wherever
        the data lives."""
        h = hashlib.sha256(f"{self.format}|{self.n_available}".encode())
        for pos, item in enumerate(self._chosen.tolist()):
            if pos in self._bad:
                continue
            if pos not in self._digests:
                raise ValueError(f"sample {item} was never read: no fingerprint before every batch was")
            h.update(f"|{item}:{int(self.labels[pos])}:".encode() + self._digests[pos])
        return h.hexdigest()

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
                decoded = np.asarray(self._src.read(item))
                images.append(self.framing(to_chw(decoded)))
            except Unreadable as exc:
                self._bad.add(pos)
                self.corrupt.append(f"{self._src.describe(item)}: {exc}")
                continue
            positions.append(pos)
            if pos not in self._digests:
                self._digests[pos] = _digest(decoded)
            if len(images) == batch_size:
                yield self._make_batch(images, positions, size, channels)
                images, positions = [], []
        if images:
            yield self._make_batch(images, positions, size, channels)

    def _make_batch(self, images: list[torch.Tensor], positions: list[int], size: tuple[int, int],
                    channels: int) -> Batch:
        index = torch.tensor(positions, dtype=torch.int64)
        return Batch(x=assemble(images, size, channels, self.framing.interpolation), y=torch.from_numpy(self.labels[positions]), index=index)


def _digest(image: np.ndarray) -> bytes:
    array = np.ascontiguousarray(image)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).digest()


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
