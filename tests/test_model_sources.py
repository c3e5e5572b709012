"""Models named by where they come from: ``--arch timm:NAME`` and ``--weights-meta`` (a torchvision weights enum),
each declaring its preprocessing and class names (``LoadedModel.declared``), checked against timm's own evaluation
transform and the enum's own ``transforms()``, read separately; and each bad name one line, exit 2."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit import cli
from audit.errors import AuditError
from audit.model import load_model
from audit.model.torchvision_door import import_torchvision, models, through_door

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MICRO_VIT = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2, "num_classes": 10}


def needs_timm():
    """Skip without timm (an optional extra); timm imports torchvision, so it is imported through the door."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    return through_door(lambda: importlib.import_module("timm"))


@pytest.fixture(scope="module")
def timm():
    return needs_timm()


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


def saved(network: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


# --- timm -----------------------------------------------------------------------------------------------------


def tv_transforms():
    import_torchvision()
    return importlib.import_module("torchvision.transforms")


def timm_eval_framing(timm, network):
    """(resize, crop, interpolation, mean, std) read off timm's own evaluation transform for ``network``."""
    tv = tv_transforms()
    steps = timm.data.create_transform(**timm.data.resolve_data_config(model=network)).transforms
    resize = next(t for t in steps if isinstance(t, tv.Resize))
    crop = next(t for t in steps if isinstance(t, tv.CenterCrop))
    norm = next(t for t in steps if isinstance(t, tv.Normalize))
    return (resize.size, tuple(crop.size), resize.interpolation.value,
            tuple(norm.mean.tolist()), tuple(norm.std.tolist()), resize)


@pytest.mark.parametrize("name,kwargs,expected", [
    ("resnet18", {"num_classes": 10}, (235, "bicubic")),  # resnet18.a1_in1k: crop_pct 0.95, floor(224 / 0.95)
    ("resnet18.tv_in1k", {"num_classes": 10}, (256, "bilinear")),  # torchvision's recipe: 0.875
    ("vit_tiny_patch16_224", MICRO_VIT, (35, "bicubic")),  # built for 32 px: floor(32 / 0.9)
])
def test_a_timm_model_by_name_loads_its_weights_and_declares_timms_eval_transform(timm, tmp_path, name, kwargs,
                                                                                   expected):
    reference = timm.create_model(name, pretrained=False, **kwargs).eval()
    path = saved(reference, tmp_path / "net.safetensors")
    loaded = load_model(path, arch=f"timm:{name}", arch_kwargs=kwargs)
    network = loaded.module.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network(x), reference(x), rtol=0, atol=0)
    declared = loaded.declared
    assert declared is not None and declared.source.startswith("timm pretrained_cfg of " + name.split(".")[0])
    # the same numbers, read off timm's own evaluation transform (its pretrained_cfg overlaid with the built size)
    overlay = dict(input_size=(3, kwargs["img_size"], kwargs["img_size"])) if "img_size" in kwargs else {}
    twin = timm.create_model(name, pretrained=False, pretrained_cfg_overlay=overlay, **kwargs)
    resize, crop, interpolation, mean, std, _ = timm_eval_framing(timm, twin)
    assert (declared.resize, declared.crop, declared.interpolation) == (resize, crop, interpolation)
    assert declared.input_size == crop and declared.mean == pytest.approx(mean) and declared.std == pytest.approx(std)
    assert (declared.resize, declared.interpolation) == expected
    assert declared.classes is None  # 10 outputs: no ImageNet names


def test_the_declared_framing_frames_a_photo_as_timms_transform_does(timm):
    """Short side to `resize` with the aspect kept (as timm's Resize of an int), then the centre crop: sizes of a
    landscape and a portrait photo after timm's own transform and after the audit's Framing agree."""
    from PIL import Image

    from audit.data.images import Framing
    from audit.model.timm_models import declared_by_timm

    network = timm.create_model("resnet18", pretrained=False)
    declared = declared_by_timm(network, {})
    framing = Framing(declared.resize, declared.crop)
    *_, resize = timm_eval_framing(timm, network)
    for w, h in ((500, 375), (333, 500)):
        after = resize(Image.new("RGB", (w, h)))
        assert framing.resized((h, w)) == (after.height, after.width)
        assert framing.fits((h, w)) and framing.size((h, w)) == (224, 224)


@pytest.mark.parametrize("overlay,resize,crop,note", [
    ({"crop_mode": "squash", "crop_pct": 1.0}, None, None, ""),  # the whole image to 224x224: the plain resize
    ({"crop_mode": "squash", "crop_pct": 0.9}, None, None, "crop_mode 'squash' at crop_pct 0.9 for 224x224 is not"),
    ({"crop_mode": "border", "crop_pct": 1.0}, None, None, "crop_mode 'border'"),
    ({"input_size": (3, 224, 160), "crop_pct": 0.875}, None, None, "crop_mode 'center' at crop_pct 0.875 for 224x160"),
    ({"crop_pct": 1.0}, 224, (224, 224), ""),
])
def test_crop_modes_the_audit_cannot_frame_are_said_not_reproduced(timm, overlay, resize, crop, note):
    from audit.model.timm_models import declared_by_timm

    network = timm.create_model("resnet18", pretrained=False, pretrained_cfg_overlay=overlay)
    declared = declared_by_timm(network, {})
    assert (declared.resize, declared.crop) == (resize, crop)
    assert declared.input_size == tuple(overlay.get("input_size", (3, 224, 224))[1:])
    assert (note in declared.source) if note else declared.source == "timm pretrained_cfg of resnet18.a1_in1k"
    if overlay.get("crop_mode") == "squash" and overlay["crop_pct"] == 1.0:  # timm's own: resize both sides
        steps = timm.data.create_transform(**timm.data.resolve_data_config(model=network)).transforms
        assert isinstance(steps[0], tv_transforms().Resize) and tuple(steps[0].size) == (224, 224)


def test_a_1000_way_timm_model_gets_the_imagenet_names_by_wnid(timm, tmp_path):
    from audit.data.labels import BUILTIN, imagenet_wnids

    path = saved(timm.create_model("resnet18", pretrained=False), tmp_path / "r18.safetensors")
    declared = load_model(path, arch="timm:resnet18").declared
    assert timm.data.ImageNetInfo("imagenet-1k").label_names() == imagenet_wnids()  # same classes, same order
    assert declared.classes == tuple(BUILTIN["imagenet-1k"]()) and len(declared.classes) == 1000
    assert declared.classes[0] == "tench" and "wnids" in declared.classes_source


def test_timm_create_model_itself_is_still_an_arch_callable(timm, tmp_path):
    path = saved(timm.create_model("resnet18", pretrained=False, num_classes=4), tmp_path / "r18.safetensors")
    loaded = load_model(path, arch="timm:create_model", arch_kwargs={"model_name": "resnet18", "num_classes": 4})
    assert loaded.module.num_classes == 4 and loaded.declared.resize == 235


@pytest.mark.parametrize("name,fragments", [
    ("resnet181", ["timm has no model 'resnet181'", "did you mean resnet18"]),
    ("vit_tiny_patch16", ["timm has no model", "vit_tiny_patch16_224"]),
    ("qqqqzzzz", ["timm has no model 'qqqqzzzz'", "timm.list_models()"]),
    ("resnet18.no_such_tag", ["timm's resnet18 has no pretrained tag 'no_such_tag'", "resnet18."]),
])
def test_an_unknown_timm_name_is_one_line_with_close_matches(timm, tmp_path, name, fragments):
    path = saved(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    with pytest.raises(AuditError) as excinfo:
        load_model(path, arch=f"timm:{name}")
    message = one_line(excinfo)
    assert message.startswith(f"--arch timm:{name}: ")
    for fragment in fragments:
        assert fragment in message, message


def _fresh_audit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "audit", "layers", *args, "--input-size", "32"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("how", ["arch", "trusted-pickle"])
def test_timm_is_imported_through_the_torchvision_door_in_a_fresh_process(timm, tmp_path, how):
    """timm imports torchvision; the first import of timm in a process (by --arch timm:NAME, or by unpickling a
    trusted pickle of a timm network) must go through the door."""
    network = timm.create_model("resnet18", pretrained=False, num_classes=3)
    if how == "arch":
        saved(network, tmp_path / "r18.safetensors")
        args = ["r18.safetensors", "--arch", "timm:resnet18", "--arch-kwargs", '{"num_classes": 3}']
    else:
        torch.save(network, tmp_path / "r18.pt")
        args = ["r18.pt", "--trust-model"]
    proc = _fresh_audit(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert "--layers auto picks" in proc.stdout


# --- torchvision weights enums --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tv_resnet18(tmp_path_factory):
    return saved(models().resnet18(), tmp_path_factory.mktemp("tv") / "resnet18.safetensors")


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to fetch the enum's weights fails the test."""
    api = importlib.import_module("torchvision.models._api")

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were fetched")

    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1", "imagenet1k_v1"])
def test_weights_meta_declares_the_enums_transforms_and_categories(tv_resnet18, no_download, name):
    loaded = load_model(tv_resnet18, arch="torchvision.models:resnet18", weights_meta=name)
    declared = loaded.declared
    enum = models().ResNet18_Weights.IMAGENET1K_V1
    transform = enum.transforms()  # read separately
    assert declared.source == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert (declared.resize, declared.crop, declared.input_size) == (256, (224, 224), (224, 224))
    assert [declared.resize] == transform.resize_size and [declared.crop[0]] == transform.crop_size
    assert declared.interpolation == "bilinear" == transform.interpolation.value
    assert declared.mean == IMAGENET_MEAN == tuple(transform.mean)
    assert declared.std == IMAGENET_STD == tuple(transform.std)
    assert declared.classes == tuple(enum.meta["categories"]) and len(declared.classes) == 1000
    assert declared.classes[:2] == ("tench", "goldfish") and "meta['categories']" in declared.classes_source
    from safetensors.torch import load_file

    for key, value in load_file(str(tv_resnet18)).items():  # the weights are MODEL's
        assert torch.equal(loaded.module.state_dict()[key], value), key


@pytest.mark.parametrize("arch,name,expected", [
    ("resnet50", "IMAGENET1K_V2", ("ResNet50_Weights.IMAGENET1K_V2", 232, 224, "bilinear")),
    ("resnet50", "DEFAULT", ("ResNet50_Weights.IMAGENET1K_V2", 232, 224, "bilinear")),
    ("vit_h_14", "IMAGENET1K_SWAG_E2E_V1", ("ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1", 518, 518, "bicubic")),
])
def test_other_enums_declare_their_own_sizes_and_interpolation(no_download, arch, name, expected):
    from audit.model.weights_meta import declared_by_weights, weights_member

    declared = declared_by_weights(weights_member(f"torchvision.models:{arch}", name))
    transform = models().get_model_weights(arch)[expected[0].split(".")[1]].transforms()
    assert declared.source == f"torchvision {expected[0]}"
    assert (declared.resize, declared.crop, declared.interpolation) == (expected[1], (expected[2],) * 2, expected[3])
    assert ([declared.resize], [declared.crop[0]]) == (transform.resize_size, transform.crop_size)
    assert declared.interpolation == transform.interpolation.value


@pytest.mark.parametrize("arch,name,fragments", [
    (None, "DEFAULT", ["--weights-meta DEFAULT needs --arch", "torchvision.models:resnet50"]),
    ("torchvision.models:resnet18", "IMAGENET1K_V9", ["ResNet18_Weights has no IMAGENET1K_V9",
                                                       "it has IMAGENET1K_V1, DEFAULT"]),
    ("torchvision.models:resnet18", "ResNet50_Weights.IMAGENET1K_V2", ["names ResNet50_Weights",
                                                                        "takes ResNet18_Weights"]),
    ("torchvision.models:ResNet", "DEFAULT", ["torchvision.models:ResNet is not a torchvision model builder"]),
    ("timm:resnet18", "DEFAULT", ["timm:resnet18 is not a torchvision model builder"]),
    ("torchvision.models.segmentation:fcn_resnet50", "DEFAULT", ["transforms are SemanticSegmentation",
                                                                 "not an image classifier's"]),
])
def test_bad_weights_meta_is_one_line(tv_resnet18, no_download, arch, name, fragments):
    if arch and arch.startswith("timm:"):
        needs_timm()
    with pytest.raises(AuditError) as excinfo:
        load_model(tv_resnet18, arch=arch, weights_meta=name)
    message = one_line(excinfo)
    assert message.startswith("--weights-meta ")
    for fragment in fragments:
        assert fragment in message, message


def test_without_weights_meta_a_torchvision_model_declares_nothing(tv_resnet18):
    assert load_model(tv_resnet18, arch="torchvision.models:resnet18").declared is None


# --- the command line -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,fragment", [
    (["--weights-meta", "DEFAULT"], "--weights-meta DEFAULT needs --arch"),
    (["--arch", "torchvision.models:resnet18", "--weights-meta", "NOPE"], "ResNet18_Weights has no NOPE"),
    (["--arch", "torchvision.models:ResNet", "--weights-meta", "DEFAULT"], "is not a torchvision model builder"),
    (["--arch", "timm:resnet181"], "timm has no model 'resnet181'; did you mean resnet18"),
    (["--arch", "timm:resnet18", "--weights-meta", "DEFAULT"], "timm:resnet18 is not a torchvision model builder"),
])
def test_each_bad_model_source_is_exit_2_and_one_line(tmp_path, capsys, args, fragment):
    if any(a.startswith("timm:") for a in args):
        needs_timm()
    path = saved(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    with pytest.raises(SystemExit) as exc:
        cli.main([str(path), *args, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    *progress, err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("[audit] ") for line in progress), progress  # then one line, no traceback
    assert err.startswith("error: ") and fragment in err, err
    assert not (tmp_path / "out").exists()

