"""The table of data formats: how each is detected, and how it is read.

``open_data`` opens a source named by a word (``NAMED``: the shipped ``demo``), or else a path, which it hands
to each row of ``FORMATS`` in order: the first row whose ``detect`` recognises the path (a file or a folder)
reads it. A path no row recognises is refused with one line that says why when it can (images without class
folders, a single image, a data set one folder down).

A new format is one module beside this one, with ``detect(path)`` (what ``read`` needs, or None when the path
is not in this format) and ``read(that) -> Source``, and one row here. Order matters: a test by content comes
before a test by name (CIFAR's ``test``/``train`` file names are also MNIST's), and ImageFolder, which takes any
folder of class folders, comes last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.data import cifar, demo, folders, idx, npz
from audit.data.images import Framing
from audit.data.imageset import ImageSet
from audit.data.sampling import stratified_indices
from audit.data.source import Source
from audit.errors import AuditError
from audit.options import parse_samples

ACCEPTED = ("an ImageFolder directory (DIR/<class>/<images>), CIFAR-10/100 python batches, "
            "MNIST-style IDX files (.gz ok), an .npz with 'x' and 'y', or 'demo'")


@dataclass(frozen=True)
class Format:
    """One row of the table."""

    name: str  # the format as reports name it
    detect: Callable[[Path], Any]  # a file or folder -> what ``read`` takes, or None when it is not this format
    read: Callable[[Any], Source]
    hint: bool = True  # a folder holding no data set names a subfolder this format detects


FORMATS = (
    Format("npz", npz.detect, npz.read),
    Format("cifar", cifar.detect, cifar.read),
    Format("idx", idx.detect, idx.read),
    Format("imagefolder", folders.detect, folders.read, hint=False),  # any folder of class folders: last
)
NAMED: dict[str, Callable[[], Source]] = {demo.NAME: demo.read}  # sources named by a word, not a path


def open_source(spec: str) -> Source:
    """The source ``spec`` names: a word of ``NAMED``, else a path read by the first format that detects it."""
    if spec in NAMED:
        return NAMED[spec]()
    path = Path(spec).expanduser()
    if not path.exists():
        raise AuditError(f"data path '{spec}' does not exist; pass {ACCEPTED}")
    for fmt in FORMATS:
        found = fmt.detect(path)
        if found is not None:
            return fmt.read(found)
    raise _unrecognized(path)


def _unrecognized(path: Path) -> AuditError:
    """Why no format detects ``path``, as precisely as can be said."""
    if path.is_dir():
        if any(folders.is_image(p.name) for p in path.iterdir() if p.is_file()):
            return AuditError(f"'{path}' holds images but no class folders; arrange them as {path}/<class>/<image>")
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            if any(fmt.detect(sub) is not None for fmt in FORMATS if fmt.hint):
                return AuditError(f"'{path}' holds no data set itself, but '{sub}' looks like one; pass that path")
        return AuditError(f"'{path}' is not a recognized data set; pass {ACCEPTED}")
    if folders.is_image(path.name):
        return AuditError(f"'{path}' is a single image; put images in DIR/<class>/<image> and pass DIR")
    return AuditError(f"'{path}' is not a recognized data file; pass {ACCEPTED}")


def open_data(spec: str, *, samples: int | None = None, seed: int = 0, framing: Framing | None = None) -> ImageSet:
    """Open ``spec`` ("demo" or a path, detected by content), choose ``samples`` stratified by class, and frame
    each image with ``framing`` (``--resize``/``--crop``)."""
    samples = parse_samples(samples)
    src = open_source(spec)
    if len(src.labels) == 0:
        raise AuditError(f"data source '{spec}' holds no samples")
    return ImageSet(spec, src, stratified_indices(src.labels, samples, seed), framing)
