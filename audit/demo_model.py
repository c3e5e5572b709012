"""Small CNN used by the embedded Fashion-MNIST demo.

The network takes 1x28x28 images with pixels in [0, 1] and returns raw logits.
It contains no normalisation layer: the auditor wraps mean/std around models
itself, and the demo weights were trained on raw pixels (mean 0, std 1).
The same architecture is used for the normally trained model and for its
adversarially trained twin (see ``scripts/train_demo.py``).
"""

from __future__ import annotations

import torch
from torch import nn


class FashionCNN(nn.Module):
    """conv32 -> pool -> conv64 -> pool -> pool -> dense128 -> logits (~94k parameters).

    The final 7x7 -> 3x3 pooling keeps the dense layer, and so the weight file, small.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),  # 32x28x28
            nn.ReLU(),
            nn.MaxPool2d(2),  # 32x14x14
            nn.Conv2d(32, 64, kernel_size=3, padding=1),  # 64x14x14
            nn.ReLU(),
            nn.MaxPool2d(2),  # 64x7x7
            nn.MaxPool2d(3, stride=2),  # 64x3x3, windows overlap to cover all 7 rows
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
