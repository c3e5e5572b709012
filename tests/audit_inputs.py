"""A user's files for whole audits on micro inputs: an --arch file, its safetensors weights, an .npz data set.

The networks hold batch norm and dropout, so their train-mode outputs differ from their eval-mode outputs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ARCH_SOURCE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.head_drop = nn.Dropout(0.1)
        self.fc = nn.Linear(6, num_classes)
        self.head_drop.eval()  # a flag of the user's own, which an audit must give back as it found it

    def features(self, x):
        return self.drop(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    def forward(self, x):
        return self.fc(self.head_drop(self.features(x)))


class Probabilities(Net):
    def forward(self, x):
        return super().forward(x).softmax(1)


class Scores(Net):
    def forward(self, x):
        return {"features": self.features(x), "scores": super().forward(x)}


class FailsUnderAttack(Net):
    def forward(self, x):
        if x.requires_grad:
            raise RuntimeError("the kernel broke under autograd")
        return super().forward(x)
'''


def arch_module(path: Path):
    """The --arch file imported as a module, for building the same networks in a test."""
    spec = importlib.util.spec_from_file_location("audit_inputs_arch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_inputs(directory: Path, n: int = 24) -> dict:
    """Write nets.py, weights.safetensors and data.npz into ``directory``; return their paths and the net.

    Two thirds of the labels are the eval-mode network's own predictions, the rest another class, so the clean
    accuracy is 2/3 in eval mode and something else when dropout and batch statistics are on.
    """
    arch = directory / "nets.py"
    arch.write_text(ARCH_SOURCE)
    torch.manual_seed(0)
    net = arch_module(arch).Net()
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # batch norm statistics of another batch, and a head that tells images apart
        net.bn.momentum = 1.0
        net(torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(2)))
        net.bn.momentum = 0.1
        net.eval()
        net.fc.bias.sub_(net(x).mean(0))  # every class predicted for some images
    weights = directory / "weights.safetensors"
    save_file(net.state_dict(), str(weights))
    net.eval()
    with torch.no_grad():
        pred = net(x).argmax(1)
    y = pred.clone()
    y[2 * n // 3:] = (pred[2 * n // 3:] + 1) % 3
    data = directory / "data.npz"
    np.savez(data, x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
    return {"arch": arch, "weights": weights, "data": data, "net": net, "x": x, "y": y}
