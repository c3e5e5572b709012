"""Reading untrusted data files within a memory allowance set by each file's own size.

A data file must not be able to make the loader allocate much more than the file itself: a header that
claims absurd dimensions, or a small compressed stream that inflates to gigabytes, is refused with a
one-line ``AuditError`` *before* anything is allocated. The allowance is ``ALLOWANCE_FACTOR`` times the
file's size plus ``ALLOWANCE_FLOOR``: far above what real data sets need (an uncompressed array is the file
itself; real images compress a few times), far below what exhausts a machine.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from audit.errors import AuditError

ALLOWANCE_FACTOR = 16
ALLOWANCE_FLOOR = 64 * 2**20
GZIP_MAGIC = b"\x1f\x8b"
NPY_MAX_HEADER = 10_000  # numpy's own default limit on a .npy header
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile, struct.error, RuntimeError,
               NotImplementedError)  # zipfile: encrypted members, unknown compression methods


def allowance(file_bytes: int) -> int:
    """How many bytes a file of ``file_bytes`` bytes may make the loader allocate."""
    return ALLOWANCE_FACTOR * int(file_bytes) + ALLOWANCE_FLOOR


def human_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1 (B, KiB, ... EiB)."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def check_claim(path: Path, claimed: int, file_bytes: int, what: str, remedy: str) -> None:
    """Refuse a file whose content claims more memory (``claimed`` bytes) than its size allows."""
    limit = allowance(file_bytes)
    if claimed > limit:
        raise AuditError(f"'{path}' {what} {human_bytes(claimed)}, more than the {human_bytes(limit)} a "
                         f"{human_bytes(file_bytes)} data file may use; {remedy}")


def array_bytes(shape, dtype: np.dtype) -> int:
    """Bytes of an array of ``shape`` and ``dtype``, as an exact Python integer (no int64 overflow)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def read_gzip(path: Path, n: int) -> bytes:
    """The first ``n`` decompressed bytes of a gzip file (fewer when it is shorter); never inflates more."""
    with gzip.open(path, "rb") as f:
        return f.read(n)


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


# ---------------------------------------------------------------------------------------------------------
# .npz archives: every member's .npy header is read and checked before its data is
# ---------------------------------------------------------------------------------------------------------


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, header length) of the .npy stream ``f``, positioned at its start."""
    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(f, max_header_size=NPY_MAX_HEADER)
    elif version == (2, 0):
        shape, fortran, dtype = npy_format.read_array_header_2_0(f, max_header_size=NPY_MAX_HEADER)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    return tuple(shape), bool(fortran), dtype, f.tell()


def _stored_data_start(path: Path, info: zipfile.ZipInfo) -> int:
    """Offset in the archive file where an uncompressed member's bytes begin (after its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local header for member {info.filename}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> np.ndarray:
    name = info.filename
    with archive.open(info) as f:
        shape, fortran, dtype, header_len = _npy_header(f)
    if dtype.hasobject:
        raise AuditError(f"'{path}': '{name}' holds Python objects, which are never loaded (allow_pickle=False); "
                         "save numeric arrays")
    nbytes = array_bytes(shape, dtype)
    if nbytes > info.file_size - header_len:
        raise AuditError(f"'{path}': the header of '{name}' claims {shape} {dtype} ({human_bytes(nbytes)}) "
                         f"but the member holds {human_bytes(max(info.file_size - header_len, 0))}; "
                         "the archive is damaged")
    order = "F" if fortran else "C"
    if info.compress_type == zipfile.ZIP_STORED and nbytes:  # the bytes lie in the file as they are: map them
        offset = _stored_data_start(path, info) + header_len
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    budget[0] += nbytes
    check_claim(path, budget[0], path.stat().st_size, "would inflate to",
                "save it uncompressed (numpy.savez), which is memory-mapped instead of read")
    with archive.open(info) as f:
        return npy_format.read_array(f, allow_pickle=False, max_header_size=NPY_MAX_HEADER)


def read_npz(path: Path, names: tuple[str, ...], missing: str) -> dict[str, np.ndarray]:
    """Arrays ``names`` of an .npz: uncompressed members memory-mapped, compressed ones inflated in memory
    within the file's allowance. ``missing`` ends the error when a name is absent."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {i.filename.removesuffix(".npy"): i for i in archive.infolist() if i.filename.endswith(".npy")}
            if any(n not in members for n in names):
                raise AuditError(f"'{path}' holds arrays {sorted(members)}; {missing}")
            budget = [0]  # bytes inflated so far
            return {n: _read_member(path, archive, members[n], budget) for n in names}
    except READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AuditError(f"cannot read '{path}' as .npz ({reason}); save it with numpy.savez(path, x=..., y=...)"
                         ) from None
