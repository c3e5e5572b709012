"""A data file cannot make the loader allocate much more than its own size: crafted pickles, IDX headers,
.npy headers and gzip/deflate bombs are refused with one line (exit 2) before anything large is allocated."""

from __future__ import annotations

import gzip
import pickle
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from audit.cli import main
from audit.data import open_data
from audit.data.bounded import ALLOWANCE_FLOOR, allowance
from audit.data.pickles import load_restricted_pickle
from audit.errors import AuditError
from audit_inputs import write_inputs

SMALL = 16 * 2**20  # no refused load may allocate this much (the files themselves are a few MiB at most)
HUGE = 10**11  # bytes: more than these machines have


def refused(spec: Path, *fragments: str) -> str:
    """Open ``spec``, expect a one-line AuditError holding ``fragments``; check the load stayed small."""
    tracemalloc.start()
    try:
        with pytest.raises(AuditError) as excinfo:
            open_data(str(spec))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert peak < SMALL, f"{peak} bytes allocated while refusing {spec}"
    return message


# ------------------------------------------------------------------------------------------------- pickles
# Hand-assembled protocol-2 programs: GLOBAL names a whitelisted callable, REDUCE calls it on a tuple.


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def batch_file(directory: Path, program: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_batch").write_bytes(b"\x80\x02" + program + b".")
    return directory


ARRAY_OF = call(glob("numpy._core.multiarray", "_reconstruct"), glob("numpy", "ndarray"),
                call(glob("builtins", "tuple"), b"]" + long1(HUGE) + b"a"), b"C" + bytes([1]) + b"b")


@pytest.mark.parametrize(("program", "asked"), [
    (call(glob("builtins", "bytearray"), long1(HUGE)), "bytearray(100000000000)"),
    (call(glob("__builtin__", "bytes"), long1(HUGE)), "bytes(100000000000)"),
    (call(glob("builtins", "bytearray"), long1(512 * 2**20)), "bytearray(536870912)"),  # would fit in RAM
    (ARRAY_OF, "an array of 100000000000 bytes"),
    (call(glob("numpy", "ndarray"), b"(" + long1(HUGE) + b"t"), "an array of 800000000000 bytes"),  # float64
    (b"\x8f" * 200_000 + b"(" + b"}" * 100_000 + b"l", "300004 opcodes"),  # a 1-byte opcode, a 216-byte set
    (b"N\x72\xf0\xff\xff\xff", "memo slot 4294967280"),  # the unpickler would size its memo to the slot
    (call(glob("builtins", "list"), call(glob("builtins", "bytearray"), long1(2**20))), "a list of 1048576 items"),
    # charges add up: 100 bytes(1 MiB), each dropped at once, still count
    (b"".join(call(glob("builtins", "bytes"), long1(2**20)) + b"0" for _ in range(100)) + b"N", "bytes(1048576)"),
])
def test_a_pickle_asking_for_too_much_memory_is_refused(tmp_path: Path, program: bytes, asked: str):
    message = refused(batch_file(tmp_path, program), "refusing to load", "the pickle asks for", asked)
    assert "data file may use" in message


@pytest.mark.parametrize(("program", "built"), [
    (call(glob("_codecs", "encode"), text("ab"), text("hex_codec")), "text codec 'hex_codec'"),  # 2x per call
    (call(glob("builtins", "bytes"), text("ab"), text("utf-32")), "text codec 'utf-32'"),  # 4x per call
    (ARRAY_OF.replace(b"C\x01b", b"C\x01O"), "an array of Python objects"),  # filled before it is checked
])
def test_a_pickle_building_what_cannot_be_bounded_is_refused(tmp_path: Path, program: bytes, built: str):
    refused(batch_file(tmp_path, program), "refusing to load", f"the pickle builds {built}")


def test_a_pickle_whose_lengths_overrun_the_file_is_unreadable_without_allocating(tmp_path: Path):
    # BINBYTES8 and a FRAME claiming 10^11 bytes: the unpickler itself would allocate that before reading
    for program in (b"\x8e" + struct.pack("<Q", HUGE) + b"abc", b"\x95" + struct.pack("<Q", HUGE) + b"N"):
        refused(batch_file(tmp_path / str(len(program)), program), "is not a readable pickle")


def test_a_real_sized_cifar_batch_stays_within_its_allowance(tmp_path: Path):
    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": rng.integers(0, 10, 2000).tolist(),
             b"data": rng.integers(0, 256, (2000, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(2000)]}
    for protocol in (2, 5):  # under protocol 2, the data is latin-1 text run through _codecs.encode
        path = tmp_path / f"p{protocol}" / "test_batch"
        path.parent.mkdir()
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
        loaded = load_restricted_pickle(path)
        assert type(loaded[b"data"]) is np.ndarray and np.array_equal(loaded[b"data"], batch[b"data"])
        assert open_data(str(path.parent)).n_available == 2000


def test_the_allowance_is_linear_in_the_file_size():
    assert allowance(0) == ALLOWANCE_FLOOR and allowance(10) - allowance(0) == 10 * (allowance(1) - allowance(0))


def test_the_cli_refuses_a_memory_hungry_pickle_with_exit_2(tmp_path: Path, capsys):
    inputs = write_inputs(tmp_path)
    data = batch_file(tmp_path / "cifar", call(glob("builtins", "bytearray"), long1(HUGE)))
    with pytest.raises(SystemExit) as exit_info:
        main([str(inputs["weights"]), "--arch", f"{inputs['arch']}:Net", "--data", str(data), "--attack", "fgsm",
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert len(lines) == 1 and "bytearray(100000000000)" in lines[0] and "internal error" not in lines[0]


# ------------------------------------------------------------------------------------------------- IDX


def idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def gzip_stream(head: bytes, zeros: int, level: int = 9) -> bytes:
    """gzip of ``head`` followed by ``zeros`` zero bytes, compressed chunk by chunk (never held whole)."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    out = [packer.compress(head)]
    chunk = bytes(2**20)
    for start in range(0, zeros, len(chunk)):
        out.append(packer.compress(chunk[: min(len(chunk), zeros - start)]))
    return b"".join(out) + packer.flush()


def write_labels(directory: Path, n: int) -> None:
    (directory / "t10k-labels-idx1-ubyte").write_bytes(idx_header((n,)) + bytes(n))


def test_an_idx_header_claiming_a_billion_images_is_refused(tmp_path: Path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_header((10**9, 28, 28)) + bytes(784 * 3))
    refused(tmp_path / "t10k-images-idx3-ubyte", "truncated", "(1000000000, 28, 28)")
    gz = tmp_path / "gz" / "t10k-images-idx3-ubyte.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(idx_header((10**9, 28, 28)) + bytes(784 * 3)))
    refused(gz, "would inflate to 730.2 GiB", "gunzip it")
    (tmp_path / "overflow-images-idx3-ubyte").write_bytes(idx_header((2**32 - 1,) * 3) + bytes(8))  # > 2^64
    refused(tmp_path / "overflow-images-idx3-ubyte", "truncated")


def test_a_gzip_bomb_is_refused_before_it_inflates(tmp_path: Path):
    n = 100_000  # 78.4 MB of zero images in a ~76 KB file
    bomb = tmp_path / "t10k-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip_stream(idx_header((n, 28, 28)), n * 784))
    write_labels(tmp_path, n)
    assert bomb.stat().st_size < 2**17 and n * 784 > allowance(bomb.stat().st_size)
    refused(bomb, "would inflate to 74.8 MiB", "gunzip it")


def test_a_gzip_stream_longer_than_its_header_is_read_only_as_far_as_the_header(tmp_path: Path):
    bomb = tmp_path / "t10k-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip_stream(idx_header((3, 2, 2)) + bytes(range(12)), 100 * 2**20, 1))  # 100 MiB more
    write_labels(tmp_path, 3)
    tracemalloc.start()
    try:
        images = open_data(str(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < SMALL and images.n_available == 3
    assert np.array_equal(images._src.read(2), np.arange(8, 12, dtype=np.uint8).reshape(2, 2))


# ------------------------------------------------------------------------------------------------- npz


def npy_header(shape: tuple[int, ...], dtype=np.uint8) -> bytes:
    buffer = __import__("io").BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": shape})
    return buffer.getvalue()


def write_npz(path: Path, members: dict[str, tuple[bytes, int]], compression: int) -> Path:
    """An .npz whose member NAME.npy is the bytes ``head`` then ``zeros`` zero bytes, written chunk by chunk."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, (head, zeros) in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                f.write(head)
                for start in range(0, zeros, 2**20):
                    f.write(bytes(min(2**20, zeros - start)))
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_an_npy_header_claiming_a_huge_shape_is_refused(tmp_path: Path, compression: int):
    path = write_npz(tmp_path / "d.npz", {"x": (npy_header((10**6, 10**6, 28)), 64),
                                          "y": (npy_header((10**6,), np.int64), 0)}, compression)
    refused(path, "the header of 'x.npy' claims (1000000, 1000000, 28) uint8", "the archive is damaged")


def test_a_compressed_npz_bomb_is_refused_before_it_inflates(tmp_path: Path):
    n = 100_000
    path = write_npz(tmp_path / "bomb.npz", {"x": (npy_header((n, 28, 28)), n * 784),
                                             "y": (npy_header((n,)), n)}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**18
    refused(path, "would inflate to 74.8 MiB", "save it uncompressed")


def test_an_uncompressed_npz_is_memory_mapped_not_read(tmp_path: Path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 2000)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    tracemalloc.start()
    try:
        images = open_data(str(tmp_path / "d.npz"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes // 4  # the labels are read (int64 copies), the images mapped
    assert np.array_equal(images._src.read(1234), x[1234]) and images.labels.tolist() == y.tolist()
    np.savez_compressed(tmp_path / "c.npz", x=x, y=y)
    assert np.array_equal(open_data(str(tmp_path / "c.npz"))._src.read(1999), x[1999])
