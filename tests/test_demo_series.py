"""The shipped checkpoints over training (audit/demo_assets/series, from scripts/train_demo.py --series):
they load as the audit loads them, their sha256 and figures in series/manifest.json are what the files and a
direct torchattacks evaluation give, and series_checkpoints lists them in epoch order."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
import torchattacks

from audit.demo import ARCH, ASSETS, SERIES, SERIES_KINDS, series_checkpoints, series_manifest
from audit.errors import AuditError
from audit.model import load_model

MANIFEST = json.loads((ASSETS / "manifest.json").read_text())
# Another CPU (other SIMD kernels, other thread counts) rounds the CNN's float32 logits differently, which can
# flip an image sitting on a decision boundary; the manifest's figures were measured on 300 images.
# margins for other CPUs' rounding, measured: the same PGD-40 in float64 instead of float32 moves the last epoch's
# robust count by 6 of 300 images (0.433 -> 0.453; 1 vs 2 threads: no change), the clean counts by none
CLEAN_MARGIN, PGD_MARGIN = 1 / 300, 10 / 300


@pytest.fixture(scope="module")
def demo_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(ASSETS / "fashion_mnist_test.npz") as data:
        return torch.from_numpy(data["x"]).float().div(255).unsqueeze(1), torch.from_numpy(data["y"])


def entries() -> list[tuple[str, dict]]:
    manifest = series_manifest()
    return [(kind, entry) for kind in SERIES_KINDS for entry in manifest[kind]["checkpoints"]]


def test_series_checkpoints_lists_each_kind_in_epoch_order():
    adversarial, control = series_checkpoints("adversarial"), series_checkpoints("control")
    assert series_checkpoints() == adversarial
    for paths, prefix in ((adversarial, "adv"), (control, "control")):
        epochs = [int(re.fullmatch(rf"{prefix}_epoch_(\d\d)\.safetensors", p.name).group(1)) for p in paths]
        assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)
        assert all(p.is_file() and p.parent == SERIES for p in paths)
    assert len(adversarial) >= 4 and len(control) == 2
    assert control[0].name == "control_epoch_01.safetensors"
    assert adversarial[-1].name == f"adv_epoch_{MANIFEST['models']['adversarial']['training']['epochs']:02d}.safetensors"
    shipped = sorted(p.name for p in SERIES.glob("*.safetensors"))
    assert shipped == sorted(p.name for p in adversarial + control)
    assert sum(p.stat().st_size for p in SERIES.iterdir()) < 3 * 1024 * 1024
    with pytest.raises(AuditError, match="unknown demo series 'twin'"):
        series_checkpoints("twin")


@pytest.mark.parametrize(("kind", "entry"), entries(), ids=lambda v: v["file"] if isinstance(v, dict) else v)
def test_checkpoint_loads_as_the_audit_loads_it_with_the_manifest_sha256(kind, entry):
    path = SERIES / entry["file"]
    loaded = load_model(path, arch=ARCH)
    assert loaded.sha256 == entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.module(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_the_run_s_twin_is_its_kept_epoch_and_the_manifest_says_whether_it_is_the_shipped_one():
    """The series is one training run of the twin's recipe: the epoch it kept as the twin is a series checkpoint
    (when that epoch is shipped), and ``same_as_shipped_twin`` is true exactly when that twin is the shipped file."""
    twin = series_manifest()["adversarial"]["twin_of_this_run"]
    shipped = hashlib.sha256((ASSETS / MANIFEST["models"]["adversarial"]["file"]).read_bytes()).hexdigest()
    assert twin["same_as_shipped_twin"] == (twin["sha256"] == shipped)
    by_epoch = {e["epoch"]: e for e in series_manifest()["adversarial"]["checkpoints"]}
    if twin["epoch"] in by_epoch:
        assert by_epoch[twin["epoch"]]["sha256"] == twin["sha256"]


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


@pytest.mark.parametrize(("kind", "entry"), entries(), ids=lambda v: v["file"] if isinstance(v, dict) else v)
def test_manifest_clean_accuracy_is_a_direct_evaluation(kind, entry, demo_tensors):
    model = load_model(SERIES / entry["file"], arch=ARCH).module.eval()
    clean = evaluate(model, *demo_tensors)
    assert abs(clean - entry["metrics"]["clean_acc_demo"]) <= CLEAN_MARGIN + 1e-4, (clean, entry)


@pytest.mark.parametrize("position", [0, -1], ids=["first epoch", "last epoch"])
def test_manifest_pgd_accuracy_is_a_direct_evaluation(position, demo_tensors, one_thread):
    """PGD-40 at the training eps on the 300 demo images, as series/manifest.json's "evaluation" states; on
    the first and last adversarial checkpoints (the ends of the trend; about 6 s each on one thread)."""
    entry = series_manifest()["adversarial"]["checkpoints"][position]
    x, y = demo_tensors
    model = load_model(SERIES / entry["file"], arch=ARCH).module.eval()
    eps = MANIFEST["models"]["adversarial"]["training"]["attack"]["eps"]
    torch.manual_seed(series_manifest()["seed"])
    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 40, steps=40, random_start=True)
    adversarial = attack(x, y)
    assert (adversarial - x).abs().max() <= eps + 1e-6
    robust = evaluate(model, adversarial, y)
    assert abs(robust - entry["metrics"][f"pgd_acc_demo_eps{eps}"]) <= PGD_MARGIN + 1e-4, (robust, entry)


def test_audit_demo_series_audits_both_kinds_and_selects_the_adversarial_epoch(tmp_path, capsys):
    """`audit demo --series`: one series per kind in OUT/<kind>/, every shipped checkpoint in epoch order, the
    adversarial series naming its best epoch by the lower bound of robust accuracy at PGD 0.1 (small here)."""
    from audit.cli import main

    out = tmp_path / "demo-series"
    with pytest.raises(SystemExit) as end:
        main(["demo", "--series", "--out", str(out), "--samples", "20", "--steps", "2", "--eps", "0.1"])
    assert end.value.code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    for kind in SERIES_KINDS:
        series = json.loads((out / kind / "series.json").read_text())
        names = [c["name"] for c in series["checkpoints"]]
        assert names == [p.stem for p in series_checkpoints(kind)]
        assert (out / kind / "series.html").is_file()
        assert all((out / kind / name / "report.json").is_file() for name in names)
    adversarial = json.loads((out / "adversarial" / "series.json").read_text())
    lowers = {c["name"]: next(r["ci"][0] for r in c["robust"] if r["metric"] == "robust_accuracy[pgd@0.1]")
              for c in adversarial["checkpoints"]}
    best = max(lowers.values())
    assert adversarial["selection"]["selected"] == [n for n, v in lowers.items() if v == best][-1]
    assert json.loads((out / "control" / "series.json").read_text()).get("selection") is None
    assert "selected:" in text and "control_epoch_03" in text
