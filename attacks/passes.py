"""Counting the per-image forward and backward passes an attack (or a check) sends through a model.

Every part of the audit that reports a cost counts it the same way: the eps cascade (:mod:`attacks.cascade`), the
ensemble's components (:mod:`attacks.ensemble`), the model-based checks (:mod:`attacks.model_checks`) and the
per-layer tap (:mod:`audit.analyses.tap`). This module imports nothing of the project, so any of them can use it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class PassCounter:
    forward: int = 0  # images sent forward through the model
    backward: int = 0  # images whose gradients were taken


@contextmanager
def count_passes(model: torch.nn.Module):
    """Count per-image forward and backward passes through ``model``; the hook is always removed."""
    counter = PassCounter()

    def hook(_module, inputs, output):
        n = int(inputs[0].shape[0]) if inputs and hasattr(inputs[0], "shape") else 0
        counter.forward += n
        if isinstance(output, torch.Tensor) and output.requires_grad:
            def on_backward(grad, n=n):
                counter.backward += n
                return grad

            output.register_hook(on_backward)

    handle = model.register_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()
