"""The Python API on the shipped demo weights: custom analyses, label alignment, corrupt images, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.data.labels import FASHION_MNIST, align_labels
from audit.errors import AuditError
from audit.analyses.base import Analysis

WEIGHTS = str(ASSETS / "fashion_cnn.safetensors")


def config(**kw) -> AuditConfig:
    base = dict(model=WEIGHTS, arch=ARCH, data="demo", classes="fashion-mnist", attacks=["fgsm"], eps="0.05,0.1",
                samples=40, batch_size=16, device="cpu")
    return AuditConfig(**{**base, **kw})


class Recorder(Analysis):
    key = "recorder"

    def __init__(self):
        self.clean, self.adversarial, self.finished = 0, {}, None

    def on_clean(self, batch):
        self.clean += len(batch.y)

    def on_adversarial(self, run, batch):
        assert batch.x.shape[0] == len(batch.y) == batch.logits.shape[0]
        self.adversarial[run.key] = self.adversarial.get(run.key, 0) + len(batch.y)

    def finish(self, result):
        self.finished = result
        result.analyses["recorder"] = {"clean": self.clean}


def test_analyses_see_every_clean_and_adversarial_batch_in_one_pass():
    recorder = Recorder()
    result = run_audit(config(), analyses=[recorder])
    assert recorder.clean == 40
    assert recorder.adversarial == {"fgsm@0.05": 40, "fgsm@0.1": 40}
    assert recorder.finished is result and result.analyses["recorder"] == {"clean": 40}


def test_same_seed_same_report_numbers():
    a, b = run_audit(config(seed=5)), run_audit(config(seed=5))
    def strip(r):
        return [(e["robust_accuracy"], e["n_success"], e["perturbation"]["linf_mean"]) for e in r.attacks]
    assert strip(a) == strip(b) and a.clean == b.clean


def test_imagefolder_by_class_name_with_a_corrupt_file(tmp_path):
    data = np.load(ASSETS / "fashion_mnist_test.npz")
    for label in (1, 8):  # Trouser, Bag
        folder = tmp_path / FASHION_MNIST[label]
        folder.mkdir()
        for i, img in enumerate(data["x"][data["y"] == label][:5]):
            Image.fromarray(img).save(folder / f"{i}.png")
    (tmp_path / "Bag" / "broken.png").write_bytes(b"not a png")
    result = run_audit(config(data=str(tmp_path), samples="all", eps="0.05"))
    assert result.data["n_corrupt"] == 1 and result.data["n_samples"] == 10
    assert any("could not be read" in w for w in result.warnings)
    assert result.data["class_counts"][1] == 5 and result.data["class_counts"][8] == 5
    assert result.clean["accuracy"] >= 0.8  # trousers and bags are easy: the labels were aligned by name


def test_align_labels_by_name_index_or_order():
    names = ["cat", "lawn mower", "dog"]
    assert align_labels(["dog", "lawn_mower"], names, np.array([0, 1])).tolist() == [2, 1]
    assert align_labels(["2", "0"], names, np.array([0, 1])).tolist() == [2, 0]
    assert align_labels(["a", "b", "c"], names, np.array([0, 2])).tolist() == [0, 1, 2]
    with pytest.raises(AuditError, match="not among the model's 3 class names"):
        align_labels(["zebra"], names, np.array([0]))


def test_the_callers_random_state_and_threads_are_left_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    run_audit(config(samples=10, eps="0.05", attacks=["pgd"], steps=2, threads=1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_targeted_audit_reports_target_success_separately_from_robustness():
    result = run_audit(config(attacks=["pgd"], eps="0.3", steps=20, targeted="least-likely", samples=30))
    entry = result.attacks[0]
    assert entry["targeted"] == "least-likely" and result.settings["targeted"] == "least-likely"
    # reaching the least-likely class is harder than leaving the true class: success <= 1 - robust share
    broken_share = 1 - entry["robust_accuracy"] / result.clean["accuracy"]
    assert 0 < entry["success_rate"] <= broken_share + 1e-9


def test_align_labels_never_maps_by_an_ambiguous_name():
    names = ["missile", "cat", "missile"]
    with pytest.raises(AuditError, match="'missile' is ambiguous: it names 2 of the model's classes"):
        align_labels(["missile", "cat"], names + ["dog"], np.array([0, 1]))
    assert align_labels(["cat"], names, np.array([0])).tolist() == [1]


def test_an_audit_resolves_its_options_once_and_passes_them_down(monkeypatch):
    from audit.config import AuditConfig as Config

    calls = []
    resolved = Config.resolved

    def counted(self):
        calls.append(1)
        return resolved(self)

    monkeypatch.setattr(Config, "resolved", counted)
    result = run_audit(config(attacks=["deepfool"], eps="0.05,0.1", samples=20, layers="none", checks=False))
    assert len(calls) == 1
    # the minimal-norm curve is read at the --eps budgets the one resolved value carries
    assert [p["eps"] for p in result.attacks[0]["minimal_perturbation"]["curve"]][:2] == [0.05, 0.1]
