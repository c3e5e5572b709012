"""Photos as users bring them: ImageFolders of mixed sizes, the --resize/--crop evaluation transform, the
model's declared input size, and ImageNet folders named by wnid or with '_' for spaces."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from audit import AuditConfig, run_audit
from audit.config_file import example_toml, read_config_file
from audit.data import DEMO_FILE, Framing, open_data
from audit.data.labels import BUILTIN, align_labels
from audit.demo import ARCH, ASSETS
from audit.errors import AuditError
from audit.model.probing import declared_size
from audit_inputs import ARCH_SOURCE, arch_module

DEMO_WEIGHTS = str(ASSETS / "fashion_cnn.safetensors")
FAST = dict(attacks=["fgsm"], eps="0.05", samples="all", batch_size=8, device="cpu", layers="none",
            saliency="none", checks=False)


def demo_photo(i: int, size: tuple[int, int]) -> Image.Image:
    """Fashion-MNIST test image ``i`` (a real photo of a garment), resized to (H, W) as a camera would give it."""
    x = np.load(DEMO_FILE)["x"][i]
    return Image.fromarray(x).resize((size[1], size[0]), Image.BICUBIC)


def fashion_folder(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """DIR/<class>/<image>: two classes (Trouser = 1, Bag = 8), images of the demo set at ``sizes`` in turn."""
    y = np.load(DEMO_FILE)["y"]
    picks = {name: np.flatnonzero(y == k)[:len(sizes)] for name, k in (("Trouser", 1), ("Bag", 8))}
    for name, items in picks.items():
        (root / name).mkdir(parents=True)
        for j, (i, size) in enumerate(zip(items, sizes, strict=True)):
            demo_photo(int(i), size).save(root / name / f"{j}.png")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=600,
                          check=False)


# --- mixed sizes ---------------------------------------------------------------------------------------------


def test_mixed_sizes_without_input_size_are_one_line_asking_for_it(tmp_path):
    data = fashion_folder(tmp_path / "photos", [(40, 28), (28, 28), (28, 28)])  # the odd one sorts first
    out = tmp_path / "out"
    proc = run_cli(DEMO_WEIGHTS, "--arch", ARCH, "--data", str(data), "--classes", "fashion-mnist",
                   "--attack", "fgsm", "--samples", "all", "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    err = lines[0]
    assert "2 different sizes" in err and "28x28 (4)" in err and "40x28 (2)" in err
    assert "--input-size" in err and "--resize 256 --crop 224" in err
    assert not (out / "report.json").exists()


def test_images_of_one_size_still_set_the_input_size(tmp_path):
    images = open_data(str(fashion_folder(tmp_path / "photos", [(36, 30), (36, 30)])))
    assert images.native_size == (36, 30) and images.input_size() == (36, 30)
    assert images.input_size((28, 28)) == (28, 28) and images.input_size(declared=(20, 20)) == (36, 30)
    demo = open_data("demo", samples=20)
    assert demo.native_size == (28, 28) and demo.sizes == {(28, 28): 20}  # arrays: one probe, not 20


def test_mixed_sizes_run_with_input_size_or_resize_and_crop(tmp_path):
    data = str(fashion_folder(tmp_path / "photos", [(40, 28), (28, 28), (28, 32)]))
    base = dict(model=DEMO_WEIGHTS, arch=ARCH, data=data, classes="fashion-mnist", **FAST)
    squashed = run_audit(AuditConfig(**base, input_size=28))
    assert squashed.model["input_shape"] == [1, 28, 28]
    framed = run_audit(AuditConfig(**base, resize=28, crop=28))
    assert framed.model["input_shape"] == [1, 28, 28] and framed.data["n_samples"] == 6
    assert framed.settings["resize"] == 28 and framed.settings["crop"] == 28
    assert framed.clean["accuracy"] >= 5 / 6  # trousers and bags, centred: the demo CNN still knows them
    with pytest.raises(AuditError, match="3 different sizes.*--crop N \\(N <= 28\\)"):
        run_audit(AuditConfig(**base, resize=28))  # 28x28, 40x28 -> 40x28 and 28x32 -> 28x32 still differ


def declaring_net(tmp_path: Path, num_classes: int, side: int) -> tuple[str, str]:
    """An --arch file whose network declares its input size as timm's models do, and its weights."""
    arch = tmp_path / "nets.py"
    arch.write_text(ARCH_SOURCE + f"\n\nclass Declared(Net):\n    def __init__(self, num_classes={num_classes}):\n"
                    f"        super().__init__(num_classes)\n"
                    f"        self.pretrained_cfg = {{'input_size': (3, {side}, {side})}}\n")
    torch.manual_seed(0)
    net = arch_module(arch).Declared()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    return str(tmp_path / "w.safetensors"), f"{arch}:Declared"


def test_mixed_sizes_take_the_models_declared_size_and_say_so(tmp_path):
    weights, arch = declaring_net(tmp_path, 10, 24)
    data = str(fashion_folder(tmp_path / "photos", [(40, 28), (28, 28)]))
    result = run_audit(AuditConfig(model=weights, arch=arch, data=data, classes="fashion-mnist", **FAST))
    assert result.model["input_shape"] == [3, 24, 24]
    assert any("declared input size 24x24" in w for w in result.warnings)
    one_size = str(fashion_folder(tmp_path / "same", [(28, 28)]))  # the data's one size still wins
    assert run_audit(AuditConfig(model=weights, arch=arch, data=one_size, classes="fashion-mnist",
                                 **FAST)).model["input_shape"] == [3, 28, 28]


def test_declared_size_from_export_timm_and_hugging_face_conventions():
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    assert declared_size(Plain()) is None
    exported = torch.export.export(Plain(), (torch.rand(2, 3, 40, 32),)).module()
    assert declared_size(exported) == (40, 32)
    timm_like = Plain()
    timm_like.default_cfg = {"input_size": (3, 288, 288)}
    assert declared_size(timm_like) == (288, 288)
    hf_like = Plain()
    hf_like.config = type("Config", (), {"image_size": 384})()
    assert declared_size(hf_like) == (384, 384)
    hf_like.config.image_size = "big"
    assert declared_size(hf_like) is None


# --- the evaluation transform ----------------------------------------------------------------------------------


def test_framing_sizes_follow_the_short_side_and_centre():
    framing = Framing(256, (224, 224))
    assert Framing(256).resized((683, 1024)) == (256, 383) and Framing(256).resized((1024, 683)) == (383, 256)
    assert framing.size((683, 1024)) == (224, 224) and Framing(None, (5, 7)).size((10, 10)) == (5, 7)
    assert not Framing(None, (20, 20)).fits((19, 40)) and Framing(19, (19, 19)).fits((1, 1))
    rows, cols = torch.meshgrid(torch.arange(11.0), torch.arange(10.0), indexing="ij")
    coords = torch.stack([rows, cols]) / 20  # each pixel holds its own (row, col)
    cut = Framing(None, (4, 6))(coords)
    assert cut.shape == (2, 4, 6)  # margins 7 -> 4 above, 3 below (half of 7 rounds to even); 4 -> 2 and 2
    assert (cut[0, :, 0] * 20).tolist() == [4, 5, 6, 7] and (cut[1, 0] * 20).tolist() == [2, 3, 4, 5, 6, 7]
    assert torch.equal(Framing()(coords), coords)


@pytest.mark.parametrize("crop", [(4, 6), (5, 5), (6, 3), (11, 10), (2, 9)])
def test_the_crop_lands_where_torchvisions_center_crop_puts_it(crop):
    from audit.model.torchvision_door import import_torchvision

    import_torchvision()
    from torchvision.transforms.functional import center_crop

    image = torch.rand(3, 11, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(Framing(None, crop)(image), center_crop(image, list(crop)))


def test_framing_agrees_with_pil_resize_and_crop():
    """A separately written transform: PIL's own antialiased bilinear resize of the short side, then a crop."""
    h, w = 97, 143
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.stack([127 + 120 * np.sin(xx / 9.0 + c) * np.cos(yy / 13.0) for c in range(3)], -1)
    photo = photo.round().astype(np.uint8)
    ours = Framing(40, (36, 30))(torch.from_numpy(photo).permute(2, 0, 1).float() / 255)
    rh, rw = 40, 40 * w // h
    resized = Image.fromarray(photo).resize((rw, rh), Image.BILINEAR)
    top, left = (rh - 36) // 2, (rw - 30) // 2
    theirs = np.asarray(resized.crop((left, top, left + 30, top + 36)), dtype=np.float32) / 255
    diff = np.abs(ours.permute(1, 2, 0).numpy() - theirs)
    assert ours.shape == (3, 36, 30) and diff.max() <= 2 / 255 and diff.mean() < 0.5 / 255


def test_crop_and_resize_combinations_are_checked(tmp_path, capsys):
    from audit import cli

    for args, fragment in ((["--resize", "256", "--crop", "300"], "--crop 300x300 is larger than --resize 256"),
                           (["--resize", "256", "--crop", "224x300"], "--crop 224x300 is larger than --resize 256"),
                           (["--crop", "0"], "--crop must be one positive integer"),
                           (["--crop", "big"], "--crop must be one integer or HxW"),
                           (["--resize", "0"], "--resize must be a positive integer")):
        with pytest.raises(SystemExit) as exc:
            cli.main([DEMO_WEIGHTS, "--arch", ARCH, "--out", str(tmp_path / "out"), *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.count("\n") == 0 and fragment in err, err
    assert not (tmp_path / "out").exists()
    photos = str(fashion_folder(tmp_path / "photos", [(30, 30), (28, 40)]))
    with pytest.raises(AuditError, match=r"--crop 29x29 is larger than .*Bag/1.png \(28x40\)"):
        open_data(photos, framing=Framing(None, (29, 29)))


def test_resize_and_crop_from_a_config_file_and_in_the_example(tmp_path):
    path = tmp_path / "audit.toml"
    path.write_text('model = "m.pt"\nresize = 256\ncrop = "224x200"\n')
    config = AuditConfig.from_options(read_config_file(path))
    assert config.resolved().resize == 256 and config.resolved().crop == (224, 200)
    assert config.effective()["resize"] == 256 and config.effective()["crop"] == "224x200"
    text = example_toml()
    assert "# resize = 256" in text and "# crop = 224" in text
    path.write_text('model = "m.pt"\nresize = "256"\n')
    with pytest.raises(AuditError, match="'resize' must be an integer"):
        read_config_file(path)


def test_real_photos_of_mixed_sizes_from_foolbox(tmp_path):
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox==3.3.4 is not installed (pip install --no-deps foolbox==3.3.4): its real sample images")
    photos = sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg"))
    for path in photos:  # imagenet_<k>_<label>.jpg -> DIR/<label>/<file>
        folder = tmp_path / "val" / path.stem.rsplit("_", 1)[1]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    plain = open_data(str(tmp_path / "val"))
    assert plain.sizes[(683, 1024)] == 1 and plain.sizes[(512, 512)] == len(photos) - 1
    with pytest.raises(AuditError, match="2 different sizes"):
        plain.input_size()
    framed = open_data(str(tmp_path / "val"), framing=Framing(256, (224, 224)))
    x = torch.cat([b.x for b in framed.batches(8, size=framed.input_size())])
    assert x.shape == (len(photos), 3, 224, 224) and x.std() > 0.1
    wide = photos[10]  # 1024x683: resized to 383x256, then its centre cut out, not squashed
    assert Image.open(wide).size == (1024, 683)
    (tmp_path / "wide" / "a").mkdir(parents=True)
    shutil.copy(wide, tmp_path / "wide" / "a" / wide.name)
    alone = open_data(str(tmp_path / "wide"), framing=Framing(256, (224, 224)))
    ours = next(alone.batches(1)).x[0].permute(1, 2, 0).numpy()
    reference = Image.open(wide).resize((383, 256), Image.BILINEAR).crop((80, 16, 304, 240))  # 159 spare: 80 left
    assert np.abs(ours - np.asarray(reference, dtype=np.float32) / 255).mean() < 1 / 255
    relabel = align_labels(framed.classes, BUILTIN["imagenet-1k"](), framed.labels)
    assert sorted(relabel[framed.labels].tolist()) == sorted(int(p.stem.rsplit("_", 1)[1]) for p in photos)
