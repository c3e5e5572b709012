"""The data of several audits read once: ``SharedData.open`` opens a data set once per (source, samples, seed,
framing) and its ``batches`` decode the images once per (batch size, input size, channels), then replay the
decoded batches (as copies, so no audit can change another's images) to every later audit asking for the same.
A pass begun before another one over the same batching finished (an audit's attack pass holds its first batch
while its clean pre-pass runs) replays the rest from that finished pass instead of decoding it again.

``audit series`` passes one ``SharedData`` to every checkpoint's :func:`audit.engine.runner.run_audit`: the
checkpoints see the same images, decoded once. A replay is exactly what a fresh decode gives (the same samples,
labels, unreadable samples and fingerprint), so a series' reports equal the single audits'. Decoded batches are
kept in memory up to ``limit_bytes`` (default 2 GiB of float pixels); a data set larger than that is decoded
again for each audit, as a single audit does.
"""

from __future__ import annotations

from collections.abc import Iterator

from audit.data.formats import open_data
from audit.data.images import Framing
from audit.data.imageset import Batch, ImageSet

LIMIT_BYTES = 2 << 30


class SharedData:
    """Data sets opened once and their decoded batches kept for the next audit (see the module docstring)."""

    def __init__(self, limit_bytes: int = LIMIT_BYTES):
        self.limit_bytes = limit_bytes
        self._sets: dict[tuple, SharedImageSet] = {}
        self.opened = 0  # how many times a data set was opened (read from its source)
        self.decoded = 0  # how many complete decoding passes over a data set ran

    def open(self, spec: str, *, samples: int | None, seed: int, framing: Framing) -> SharedImageSet:
        key = (str(spec), samples, seed, framing)
        if key not in self._sets:
            self._sets[key] = SharedImageSet(open_data(spec, samples=samples, seed=seed, framing=framing), self)
            self.opened += 1
        return self._sets[key]


class SharedImageSet:
    """An :class:`ImageSet` whose ``batches`` replay the first complete decoding pass; every other attribute is
    the image set's own."""

    def __init__(self, images: ImageSet, owner: SharedData):
        self._images, self._owner = images, owner
        self._kept: dict[tuple, list[Batch]] = {}

    def __getattr__(self, name):
        return getattr(self._images, name)

    def __len__(self) -> int:
        return len(self._images)

    def batches(self, batch_size: int, size: tuple[int, int] | None = None,
                channels: int | None = None) -> Iterator[Batch]:
        key = (batch_size, size, channels)
        if key in self._kept:
            return _copies(self._kept[key])
        return self._record(key, self._images.batches(batch_size, size=size, channels=channels))

    def _record(self, key: tuple, fresh: Iterator[Batch]) -> Iterator[Batch]:
        kept: list[Batch] | None = []
        total = 0
        for i, batch in enumerate(fresh):
            if kept is not None:
                total += batch.x.element_size() * batch.x.nelement()
                if total <= self._owner.limit_bytes:
                    kept.append(_copy(batch))
                else:
                    kept = None
            yield batch
            if key in self._kept:  # another pass over this batching finished meanwhile: replay the rest of it
                yield from _copies(self._kept[key][i + 1:])
                return
        self._owner.decoded += 1
        if kept is not None and key not in self._kept:
            self._kept[key] = kept


def _copy(batch: Batch) -> Batch:
    return Batch(x=batch.x.clone(), y=batch.y.clone(), index=batch.index.clone())


def _copies(kept: list[Batch]) -> Iterator[Batch]:
    for batch in kept:
        yield _copy(batch)
