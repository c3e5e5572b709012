"""Checks of the embedded Fashion-MNIST demo assets (produced by scripts/train_demo.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from safetensors.torch import load_file

import audit
from audit.demo_model import FashionCNN

ASSETS = Path(audit.__file__).resolve().parent / "demo_assets"
WEIGHTS = {"standard": "fashion_cnn.safetensors", "adversarial": "fashion_cnn_adv.safetensors"}


@pytest.fixture(scope="module")
def demo_data() -> tuple[np.ndarray, np.ndarray]:
    with np.load(ASSETS / "fashion_mnist_test.npz") as data:
        return data["x"], data["y"]


@pytest.fixture(scope="module")
def demo_tensors(demo_data) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = demo_data
    return torch.from_numpy(x).float().div(255).unsqueeze(1), torch.from_numpy(y)


def load_model(name: str) -> FashionCNN:
    model = FashionCNN()
    model.load_state_dict(load_file(ASSETS / WEIGHTS[name]), strict=True)
    return model.eval()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_demo_images_shapes_dtypes_and_balance(demo_data):
    x, y = demo_data
    assert x.shape == (300, 28, 28) and x.dtype == np.uint8
    assert y.shape == (300,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [30] * 10  # labels 0..9, 30 of each
    # real Fashion-MNIST product images: black background, a full range of grey levels
    assert x.min() == 0 and x.max() >= 250
    assert 0.1 < x.mean() / 255 < 0.6


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_weights_load_strictly_and_are_small(name):
    path = ASSETS / WEIGHTS[name]
    assert path.stat().st_size < 512 * 1024
    state = load_file(path)
    assert all(t.dtype == torch.float32 for t in state.values())
    model = load_model(name)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_standard_model_is_accurate(demo_tensors):
    assert accuracy(load_model("standard"), *demo_tensors) >= 0.80


def test_adversarial_twin_is_far_more_robust(demo_tensors, one_thread):
    x, y = demo_tensors
    x, y = x[::3], y[::3]  # 100 images, all classes
    robust = {}
    for name in WEIGHTS:
        model = load_model(name)
        torch.manual_seed(0)  # PGD random start
        attack = torchattacks.PGD(model, eps=0.1, alpha=0.025, steps=10, random_start=True)
        robust[name] = accuracy(model, attack(x, y), y)
    assert robust["adversarial"] >= robust["standard"] + 0.3, robust
