"""Class folders as users name them: ImageNet wnids (the validation set's layout), '_' or '-' for spaces, any
case; an ambiguous or unknown folder is one error naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit import AuditConfig, run_audit
from audit.data.labels import BUILTIN, align_labels, imagenet_wnids
from audit.errors import AuditError
from tests.test_photos import FAST, declaring_net, demo_photo

IMAGENET = BUILTIN["imagenet-1k"]()


def test_imagenet_wnids_and_normalised_names_map_to_the_label_set():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and IMAGENET[0] == "tench"  # the validation set's first class
    k = IMAGENET.index("three-toed sloth")
    folders = ["n01443537", "N01440764", "three_toed_sloth", "Three-Toed Sloth", "great_white_shark", "7"]
    assert align_labels(folders, IMAGENET, np.arange(6)).tolist() == [1, 0, k, k, 2, 7]
    subset = [wnids[i] for i in (243, 559, 438)]  # a few classes laid out like the validation set
    assert align_labels(subset, IMAGENET, np.arange(3)).tolist() == [243, 559, 438]
    missiles = [i for i, n in enumerate(IMAGENET) if n == "missile"]
    assert align_labels([wnids[i] for i in missiles], IMAGENET, np.arange(2)).tolist() == missiles


def test_ambiguous_and_unknown_class_folders_are_one_error_naming_them():
    with pytest.raises(AuditError, match=r"'missile' is ambiguous: it names 2 of the model's classes \(#"):
        align_labels(["n01440764", "missile"], IMAGENET, np.arange(2))
    with pytest.raises(AuditError, match=r"1 of the data's 2 classes \('n99999999'\) are not among"):
        align_labels(["n01440764", "n99999999"], IMAGENET, np.arange(2))
    with pytest.raises(AuditError, match=r"\('lawnmower'\) are not among"):  # exact after normalisation only
        align_labels(["cat", "lawnmower"], ["cat", "lawn mower", "dog"], np.arange(2))
    with pytest.raises(AuditError, match=r"\('5'\) are not among"):  # an index the model does not have
        align_labels(["0", "5"], ["cat", "lawn mower", "dog"], np.arange(2))
    # a wnid means an ImageNet-1k class only when the model's names are the ImageNet-1k names
    with pytest.raises(AuditError, match="not among"):
        align_labels(["n01440764", "cat"], ["cat", "dog", "fish"], np.arange(2))


def _wnid_folder(root: Path, classes: list[int], per_class: int = 2) -> Path:
    wnids = imagenet_wnids()
    for n, k in enumerate(classes):
        (root / wnids[k]).mkdir(parents=True)
        for j in range(per_class):
            demo_photo(per_class * n + j, (32, 32)).convert("RGB").save(root / wnids[k] / f"ILSVRC2012_val_{k:05d}{j}.JPEG")
    return root


def test_a_validation_set_layout_audits_against_imagenet_classes(tmp_path):
    net_dir = tmp_path / "net"
    net_dir.mkdir()
    weights, arch = declaring_net(net_dir, 1000, 32)
    data = str(_wnid_folder(tmp_path / "val", [2, 0, 991]))
    for classes in (None, "imagenet-1k"):  # without --classes the wnids name the ImageNet-1k set
        result = run_audit(AuditConfig(model=weights, arch=arch, data=data, classes=classes, **FAST))
        assert result.data["classes"] == IMAGENET and result.data["n_samples"] == 6
        counts = np.array(result.data["class_counts"])
        assert counts[[0, 2, 991]].tolist() == [2, 2, 2] and counts.sum() == 6


