"""Hugging Face save_pretrained folders: the network transformers builds, the preprocessing and class names the
folder declares, the digest, and one-line refusals (remote code, missing weights, non-classifiers)."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from audit.errors import AuditError  # noqa: E402
from audit.model import AuditedModel, load_model  # noqa: E402
from audit.model.audited import pick_logits  # noqa: E402
from audit.model.huggingface import (  # noqa: E402
    CLASSES_SOURCE,
    POLICY_BIN,
    POLICY_REMOTE,
    POLICY_SAFE,
    declared_from,
)
from audit.model.torchvision_door import through_door  # noqa: E402

LABELS = ("cat", "dog", "fox")
MEAN, STD = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)


def hf(name: str):
    """A transformers class, imported through the torchvision door as the loader imports it."""
    return through_door(lambda: getattr(transformers, name))


def micro_vit(num_labels: int = 3, labels: tuple[str, ...] | None = LABELS):
    config = hf("ViTConfig")(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=64, num_labels=num_labels,
        **({"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}} if labels else {}),
    )
    torch.manual_seed(0)
    return hf("ViTForImageClassification")(config).eval()


def save_folder(folder: Path, net, processor: bool = True) -> Path:
    net.save_pretrained(folder)
    if processor:
        hf("ViTImageProcessor")(size={"height": 32, "width": 32}, image_mean=list(MEAN),
                                image_std=list(STD)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    net = micro_vit()
    return save_folder(tmp_path_factory.mktemp("hf") / "vit", net), net


def test_folder_gives_the_transformers_network_with_its_declared_preprocessing(saved):
    folder, net = saved
    loaded = load_model(folder)
    assert (loaded.format, loaded.arch, loaded.load_policy) == ("huggingface", "ViTForImageClassification",
                                                                POLICY_SAFE)
    declared = loaded.declared
    assert declared.mean == pytest.approx(MEAN, abs=1e-12) and declared.std == pytest.approx(STD, abs=1e-12)
    assert (declared.input_size, declared.resize, declared.crop) == ((32, 32), None, None)
    assert declared.interpolation == "bilinear"  # ViTImageProcessor's resample 2
    assert declared.classes == LABELS and declared.classes_source == CLASSES_SOURCE
    assert declared.source == "Hugging Face preprocessor_config.json"

    # the processor's own pixel values of a real image vs the [0,1] image normalised inside AuditedModel
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    processor = through_door(lambda: hf("AutoImageProcessor").from_pretrained(str(folder)))
    pixel_values = processor(images=Image.fromarray(pixels), return_tensors="pt")["pixel_values"]
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float() / 255
    by_hand = (x.double() - torch.tensor(MEAN).double().view(1, 3, 1, 1)) / torch.tensor(STD).double().view(1, 3, 1, 1)
    assert torch.allclose(pixel_values.double(), by_hand, atol=1e-5)
    with torch.no_grad():
        expected = net(pixel_values).logits
        audited = AuditedModel(loaded.module, declared.mean, declared.std).eval()
        got = audited(x)
        raw, where = pick_logits(loaded.module(pixel_values))
    assert where == "dict[logits]" and torch.equal(raw, expected)
    assert torch.allclose(got, expected, atol=1e-4)


def test_digest_is_the_sha256sum_listing_of_config_and_weights(saved):
    folder, _ = saved
    listing = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
                      for n in ("config.json", "model.safetensors"))
    assert load_model(folder).sha256 == hashlib.sha256(listing.encode()).hexdigest()


def test_pytorch_model_bin_is_read_weights_only(tmp_path: Path):
    net = micro_vit()
    folder = tmp_path / "bin"
    save_folder(folder, net)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    loaded = load_model(folder)
    assert loaded.load_policy == POLICY_BIN
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x).logits, net(x).logits)

    torch.save({**weights, "extra": argparse.Namespace(a=1)}, folder / "pytorch_model.bin")
    for trust in (False, True):
        with pytest.raises(AuditError, match="holds more than plain weights") as excinfo:
            load_model(folder, trust_model=trust)
        assert str(excinfo.value) == (
            f"refusing to load {folder}: its pytorch_model.bin holds more than plain weights, and only "
            "torch.load(weights_only=True) reads a .bin here; re-save the model with save_pretrained (safetensors)")


def _write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(text)
    return folder


def test_bad_folders_are_one_line_each(saved, tmp_path: Path, monkeypatch):
    folder, net = saved
    config = json.loads((folder / "config.json").read_text())
    weights = (folder / "model.safetensors").read_bytes()

    remote = _write_config(tmp_path / "remote", json.dumps(
        {**config, "auto_map": {"AutoModelForImageClassification": "modeling_mine.MyNet"}}))
    (remote / "model.safetensors").write_bytes(weights)
    marker = tmp_path / "ran.txt"
    (remote / "modeling_mine.py").write_text(
        f"open({str(marker)!r}, 'a').write('ran')\n"
        "from transformers import ViTForImageClassification\n\n\nclass MyNet(ViTForImageClassification):\n"
        "    pass\n")
    bad = {
        remote: "has auto_map, so its network is Python code shipped with the model",
        tmp_path / "empty": "is a directory without config.json; a model folder is a Hugging Face save_pretrained",
        _write_config(tmp_path / "notjson", "{'model_type': 'vit'"): "config.json is not valid JSON",
        _write_config(tmp_path / "noweights", json.dumps(config)): "has config.json but no weights",
        _write_config(tmp_path / "unknown", json.dumps({**config, "model_type": "no-such-vit"})):
            "model_type 'no-such-vit', which transformers .* does not know",
    }
    (tmp_path / "empty").mkdir()
    bert = tmp_path / "bert"
    hf("BertConfig")(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64).save_pretrained(bert)
    bad[bert] = r"describes a BertConfig \(bert\), which has no image-classification head"
    backbone = tmp_path / "backbone"
    hf("ViTModel")(net.config, add_pooling_layer=False).save_pretrained(backbone)
    bad[backbone] = "lack 2 of the ViTForImageClassification parameters \\(classifier.bias, classifier.weight\\)"
    for path, message in bad.items():
        with pytest.raises(AuditError, match=message) as caught:
            load_model(path)
        assert "\n" not in str(caught.value)
    with pytest.raises(AuditError, match="drop --arch"):
        load_model(folder, arch="torchvision.models:resnet18")
    assert not marker.exists()  # refused before anything in the folder ran

    # trusted, the folder's code runs (transformers copies it into its modules cache: a temporary one here)
    modules = through_door(lambda: __import__("transformers.dynamic_module_utils", fromlist=["x"]))
    monkeypatch.setattr(modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    trusted = load_model(remote, trust_model=True)
    assert marker.read_text() == "ran" and trusted.load_policy == POLICY_REMOTE and trusted.arch == "MyNet"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(trusted.module(x).logits, net(x).logits)


def test_declared_values_of_other_processor_configs():
    vit = {"image_size": 224, "id2label": {"1": "b", "0": "a"}}
    clip = declared_from(vit, {"size": {"shortest_edge": 224}, "do_center_crop": True, "resample": 3,
                               "crop_size": {"height": 224, "width": 224}, "image_mean": [0.5, 0.5, 0.5],
                               "image_std": [0.25, 0.25, 0.25], "do_rescale": True, "rescale_factor": 1 / 255})
    assert (clip.resize, clip.crop, clip.input_size, clip.interpolation) == (224, (224, 224), (224, 224), "bicubic")
    assert clip.classes == ("a", "b") and clip.mean == (0.5,) * 3 and clip.std == (0.25,) * 3

    convnext = {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": 0.875,
                "resample": 1}
    small = declared_from({}, convnext)
    assert (small.resize, small.crop, small.input_size) == (256, (224, 224), (224, 224))
    assert small.interpolation == "bicubic" and "resample 1 (Lanczos) as bicubic" in small.source
    large = declared_from({}, {**convnext, "size": {"shortest_edge": 384}})
    assert (large.resize, large.crop, large.input_size) == (None, None, (384, 384))

    deit = declared_from({}, {"size": {"height": 256, "width": 256}, "do_center_crop": True,
                              "crop_size": {"height": 224, "width": 224}})
    assert (deit.resize, deit.crop) == (256, (224, 224)) and "aspect ratio kept" in deit.source

    # 0..255 pixels with rescaling off: mean and std of raw pixels, in [0,1] units divided by 255
    raw = declared_from({}, {"do_rescale": False, "image_mean": [127.5] * 3, "image_std": [51.0] * 3})
    assert raw.mean == pytest.approx((0.5,) * 3) and raw.std == pytest.approx((0.2,) * 3)
    # EfficientNet's rescale_offset: x * f - 1 in [-1, 1], then no normalisation
    offset = declared_from({}, {"rescale_factor": 1 / 127.5, "rescale_offset": True, "do_normalize": False})
    assert offset.mean == pytest.approx((0.5,) * 3) and offset.std == pytest.approx((0.5,) * 3)

    default_names = {"image_size": 32, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}}
    bare = declared_from(default_names, None)
    assert bare.classes is None and bare.classes_source is None
    assert bare.input_size == (32, 32) and bare.mean is None and "only the input size is declared" in bare.source


def test_audit_run_on_a_folder(saved, tmp_path: Path):
    folder, _ = saved
    rng = np.random.default_rng(0)
    for label in LABELS:
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "data" / label / f"{i}.png")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(folder), "--data", str(tmp_path / "data"), "--attack", "pgd",
         "--samples", "8", "--layers", "none", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = json.loads((out / "report.json").read_text())["model"]
    assert (model["format"], model["arch"], model["num_classes"]) == ("huggingface", "ViTForImageClassification", 3)


# --- exact loading calls and refusals (from mutation testing) ----------------------------------------------------


def test_from_pretrained_is_local_weights_only_float32(saved, tmp_path: Path, monkeypatch):
    """The call transformers gets: no hub, no remote code, weights_only, float32, the format the folder holds."""
    folder, net = saved
    auto = hf("AutoModelForImageClassification")
    real = auto.from_pretrained
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(auto, "from_pretrained", spy)
    load_model(folder)
    binary = save_folder(tmp_path / "bin", net)
    torch.save(net.state_dict(), binary / "pytorch_model.bin")
    (binary / "model.safetensors").unlink()
    load_model(binary)
    fixed = {"local_files_only": True, "trust_remote_code": False, "weights_only": True, "dtype": torch.float32,
             "output_loading_info": True}
    assert calls == [((str(folder),), {**fixed, "use_safetensors": True}),
                     ((str(binary),), {**fixed, "use_safetensors": False})]


def test_missing_weights_are_named_three_then_counted(saved, tmp_path: Path):
    folder, net = saved
    shallow = hf("ViTForImageClassification")(type(net.config)(**{**net.config.to_dict(), "num_hidden_layers": 2}))
    shallow.save_pretrained(tmp_path / "shallow")
    config = json.loads((tmp_path / "shallow" / "config.json").read_text())
    (tmp_path / "shallow" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    missing = sorted(set(net.state_dict()) - set(shallow.state_dict()))  # the third layer's parameters
    assert len(missing) > 3
    with pytest.raises(AuditError) as excinfo:
        load_model(tmp_path / "shallow")
    assert str(excinfo.value) == (
        f"the weights in {tmp_path / 'shallow'} lack {len(missing)} of the ViTForImageClassification parameters "
        f"({', '.join(missing[:3])} and {len(missing) - 3} more); they would stay random: save the whole image "
        "classifier with save_pretrained")


def test_unreadable_weights_and_json_are_one_line_each(saved, tmp_path: Path):
    folder, _ = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((folder / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(AuditError) as excinfo:
        load_model(broken)
    assert str(excinfo.value).startswith(f"transformers could not build the model in {broken}: ")
    (broken / "preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(AuditError) as excinfo:
        load_model(broken)
    assert str(excinfo.value) == (f"{broken / 'preprocessor_config.json'} holds a JSON list, not an object: fix it or "
                                  "remove it (then the preprocessing is not declared)")
    (broken / "config.json").write_text('{"model_type": ')
    with pytest.raises(AuditError) as excinfo:
        load_model(broken)
    assert str(excinfo.value) == (f"{broken / 'config.json'} is not valid JSON (Expecting value: line 1 column 16 "
                                  "(char 15)): a Hugging Face model folder needs the config.json save_pretrained writes")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AuditError) as excinfo:
        load_model(empty)
    assert str(excinfo.value) == (
        f"{empty} is a directory without config.json; a model folder is a Hugging Face save_pretrained folder "
        "(config.json with model.safetensors or pytorch_model.bin); else pass the checkpoint file itself")


@pytest.mark.parametrize("config,trust,message", [
    ({"auto_map": {"AutoConfig": "c.C", "AutoModel": "m.M"}}, True,
     "{path} auto_map names no AutoModelForImageClassification (it has AutoConfig, AutoModel): the folder's own code "
     "defines no image classifier"),
    ({"auto_map": {"AutoModelForImageClassification": "m.M"}}, False,
     "refusing to load {folder}: {path} has auto_map, so its network is Python code shipped with the model and "
     "loading it would run that code; if you trust its source, pass --trust-model (nothing was executed)"),
    ({}, False, "{path} has no model_type, so transformers cannot tell which network it describes; save the model "
                "with save_pretrained"),
    ({"model_type": ""}, False, "{path} has no model_type, so transformers cannot tell which network it describes; "
                                "save the model with save_pretrained"),
    ({"model_type": "no-such"}, False, "{path} has model_type 'no-such', which transformers {version} does not know; "
                                       "upgrade transformers, or audit the weights with --arch"),
    ({"model_type": "bert"}, False, "{path} describes a BertConfig (bert), which has no image-classification head in "
                                    "transformers (AutoModelForImageClassification); audit an image classifier"),
])
def test_what_config_json_allows_word_for_word(tmp_path: Path, config, trust, message):
    from audit.model.huggingface import remote_code

    with pytest.raises(AuditError) as excinfo:
        remote_code(tmp_path, config, trust)
    assert str(excinfo.value) == message.format(path=tmp_path / "config.json", folder=tmp_path,
                                                version=transformers.__version__)
    assert remote_code(tmp_path, {"model_type": "vit"}, False) is False
    assert remote_code(tmp_path, {"auto_map": {"AutoModelForImageClassification": "m.M"}}, True) is True


@pytest.mark.parametrize("dropped", [3, 4])
def test_three_missing_weights_are_all_named_and_a_fourth_is_counted(saved, tmp_path: Path, dropped):
    from safetensors.torch import load_file, save_file

    folder, _ = saved
    weights = load_file(str(folder / "model.safetensors"))
    missing = sorted(weights)[:dropped]
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((folder / "config.json").read_bytes())
    save_file({k: v for k, v in weights.items() if k not in missing}, str(partial / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(AuditError) as excinfo:
        load_model(partial)
    shown = ", ".join(missing[:3]) + (" and 1 more" if dropped == 4 else "")
    assert str(excinfo.value) == (
        f"the weights in {partial} lack {dropped} of the ViTForImageClassification parameters ({shown}); they would "
        "stay random: save the whole image classifier with save_pretrained")
