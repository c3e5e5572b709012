"""Flags that need nothing loaded: input size, config checks, class names, the torchvision door."""

from __future__ import annotations

import pytest

from audit.config import AuditConfig, parse_input_size
from audit.data.labels import resolve_classes
from audit.errors import AuditError


@pytest.mark.parametrize("value,expected", [(None, None), (32, (32, 32)), ("224", (224, 224)),
                                            ("224x160", (224, 160)), (" 64X48 ", (64, 48))])
def test_input_size(value, expected):
    assert parse_input_size(value) == expected


@pytest.mark.parametrize("bad", ["0", "x", "224x", "1x2x3", "-5", "abc"])
def test_bad_input_size_is_one_clear_error(bad):
    with pytest.raises(AuditError, match="--input-size"):
        parse_input_size(bad)


@pytest.mark.parametrize("knob,value,flag", [("targeted", "sometimes", "--targeted"), ("steps", 0, "--steps"),
                                             ("batch_size", 0, "--batch-size"), ("channels", 2, "--channels"),
                                             ("threads", 0, "--threads"), ("attacks", [], "--attack")])
def test_config_check_names_the_bad_flag(knob, value, flag):
    with pytest.raises(AuditError, match=flag):
        AuditConfig(model="m.pt", **{knob: value}).check()


def test_builtin_label_sets_have_the_right_sizes():
    sizes = {name: len(resolve_classes(name)) for name in
             ("imagenet-1k", "cifar10", "cifar100", "fashion-mnist", "mnist")}
    assert sizes == {"imagenet-1k": 1000, "cifar10": 10, "cifar100": 100, "fashion-mnist": 10, "mnist": 10}
    imagenet = resolve_classes("imagenet-1k")
    assert imagenet[0] == "tench" and imagenet[207] == "Golden Retriever" and len(set(imagenet)) > 990


def test_classes_from_a_file_or_a_comma_list(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("cat\n\ndog \n")
    assert resolve_classes(str(names)) == ["cat", "dog"]
    assert resolve_classes("cat, dog,bird") == ["cat", "dog", "bird"]
    assert resolve_classes(None) is None
    with pytest.raises(AuditError, match="neither a built-in label set"):
        resolve_classes("imagenet-2k")
    with pytest.raises(AuditError, match="empty name"):
        resolve_classes("cat,,dog")


def test_torchvision_imports_through_the_guarded_door():
    from audit.model.torchvision_door import import_torchvision, models

    torchvision = import_torchvision()
    net = models().resnet18(num_classes=3).eval()
    import torch
    from torchvision.transforms import v2

    assert net(v2.Resize((32, 32))(torch.rand(2, 3, 40, 40))).shape == (2, 3)
    assert torchvision.__version__
