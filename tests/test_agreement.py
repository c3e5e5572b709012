"""The auditor's PGD robust accuracy agrees with a direct torchattacks run on the same images."""

from __future__ import annotations

from pathlib import Path

import torch
import torchattacks
from safetensors.torch import load_file

import audit
from audit import AuditConfig, run_audit
from audit.data import open_data
from audit.demo_model import FashionCNN

WEIGHTS = Path(audit.__file__).resolve().parent / "demo_assets" / "fashion_cnn_adv.safetensors"
EPS, STEPS, SAMPLES = 0.1, 20, 100


def test_pgd_robust_accuracy_matches_direct_torchattacks(one_thread):
    result = run_audit(AuditConfig(
        model=str(WEIGHTS), arch="audit.demo_model:FashionCNN", data="demo", classes="fashion-mnist",
        eps="0.1", steps=STEPS, samples=SAMPLES, seed=0, device="cpu",
    ))
    # the same images the audit chose (samples=100 stratified by class with seed 0), in one batch
    batch = next(open_data("demo", samples=SAMPLES, seed=0).batches(SAMPLES))
    x, y = batch.x, batch.y
    assert len(y) == SAMPLES and result.clean["n"] == SAMPLES

    net = FashionCNN()
    net.load_state_dict(load_file(WEIGHTS))
    net.eval()
    torch.manual_seed(0)
    adv = torchattacks.PGD(net, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS, random_start=True)(x, y)
    with torch.no_grad():
        clean = net(x).argmax(1) == y
        robust = clean & (net(adv).argmax(1) == y)

    assert result.clean["n_correct"] == int(clean.sum())
    [entry] = result.attacks
    assert entry["eps"] == EPS and entry["steps"] == STEPS
    assert abs(entry["robust_accuracy"] - robust.float().mean().item()) <= 0.05
