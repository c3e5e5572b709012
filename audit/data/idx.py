"""MNIST-style IDX files (the MNIST family), plain or gzip: an images file ``*-images-idx3-ubyte``
with its ``*-labels-idx1-ubyte`` beside it.

An IDX file is 2 zero bytes, a type code, the number of dims, then big-endian uint32 dims and the data.
Detected by that header (a file), or as a folder (or its ``raw/``) holding an ``*idx3*`` file. A plain file is
memory-mapped; a gzip one is inflated only as far as its header promises, within the file's allowance
(:mod:`audit.data.bounded`).
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from audit.data.bounded import GZIP_MAGIC, array_bytes, check_claim, read_gzip, read_head
from audit.data.source import Source, array_source
from audit.errors import AuditError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def _labels_path(images: Path) -> Path:
    """The labels file next to an images file: images-idx3 -> labels-idx1, with or without .gz."""
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    stem = name.removesuffix(".gz")
    for candidate in (images.with_name(name), images.with_name(stem), images.with_name(stem + ".gz")):
        if candidate != images and candidate.is_file():
            return candidate
    raise AuditError(f"found no labels for '{images}' (looked for '{images.with_name(name)}'); "
                     "put the matching *-labels-idx1-ubyte file beside it")


def images_in(directory: Path) -> Path | None:
    """The images file to use in a directory (or its raw/): t10k/test before train, plain before .gz."""
    def rank(p: Path) -> tuple:
        return "t10k" not in p.name and "test" not in p.name, p.name.endswith(".gz"), p.name

    for folder in (directory, directory / "raw"):
        found = [p for p in folder.glob("*idx3*") if p.is_file()] if folder.is_dir() else []
        if found:
            return min(found, key=rank)
    return None


def detect(path: Path) -> Path | None:
    """The images file to read: a folder's (see ``images_in``), or a file with an IDX header. A labels file
    (one dimension) is refused, naming what to pass instead."""
    if path.is_dir():
        return images_in(path)
    header = parse_idx_header(read_head(path))
    if header is not None and len(header[1]) == 1:
        raise AuditError(f"'{path}' is an IDX labels file; pass the matching images file (*-images-idx3-ubyte)")
    return path if header is not None else None


def read(images_path: Path) -> Source:
    images = load_idx(images_path)
    labels = load_idx(_labels_path(images_path))
    if images.dtype != np.uint8 or images.ndim != 3:
        raise AuditError(f"'{images_path}' holds {images.dtype} data of shape {images.shape}; "
                         "expected unsigned-byte images N×H×W")
    if labels.ndim != 1 or len(labels) != len(images):
        raise AuditError(f"IDX labels have shape {labels.shape} but '{images_path}' holds {len(images)} images")
    return array_source("idx", images, np.asarray(labels), None, "NHW")
