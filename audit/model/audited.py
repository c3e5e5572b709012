"""The user's network seen in [0,1] pixel space.

:class:`AuditedModel` folds normalization in and reduces dict/tuple outputs to one logits tensor
(:func:`pick_logits`), so attacks work on pixels in [0,1]. :func:`eval_mode` puts a network in eval mode for a
while and gives every submodule back its own training flag afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from audit.errors import AuditError


# --- training flags --------------------------------------------------------------------------------------


def _set_training(module: torch.nn.Module, mode: bool) -> None:
    try:
        module.train(mode)
    except NotImplementedError:  # torch.export modules refuse train()/eval(); their graph is fixed anyway
        for sub in module.modules():
            sub.training = mode


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """eval() for the duration; afterwards every submodule gets back its own training flag, even on error."""
    saved = [(sub, sub.training) for sub in module.modules()]
    try:
        _set_training(module, False)
        yield module
    finally:
        for sub, flag in saved:
            sub.training = flag


# --- the network in pixel space --------------------------------------------------------------------------


def _stat_buffer(values: tuple | None, channels: int, fill: float) -> torch.Tensor:
    data = torch.full((channels,), fill) if values is None else torch.tensor(values, dtype=torch.float32)
    return data.reshape(1, channels, 1, 1)


def _element_types(out: Mapping | tuple | list) -> str:
    listing = out.items() if isinstance(out, Mapping) else enumerate(out)
    return ", ".join(f"{k!r}: {type(v).__name__}" for k, v in listing)


def _pick_from_sequence(out: tuple | list, key: str | int | None) -> tuple[Any, str]:
    fields = getattr(out, "_fields", ())
    if key is None and isinstance(getattr(out, "logits", None), torch.Tensor):
        key = "logits"
    if isinstance(key, str) and (key in fields or (key == "logits" and hasattr(out, key))):
        return getattr(out, key), f"tuple[{key}]"
    index = 0 if key is None else int(key) if str(key).lstrip("-").isdigit() else None
    if index is None or not -len(out) <= index < len(out):
        names = f" or a field name ({', '.join(fields)})" if fields else ""
        raise AuditError(
            f"--output-key {key!r} does not pick an element of the model's {len(out)}-element output "
            f"({_element_types(out)}); give an index 0..{len(out) - 1}{names}"
        )
    return out[index], f"tuple[{index}]"


def _pick_from_mapping(out: Mapping, key: str | int | None) -> tuple[Any, str]:
    if key is None:
        if "logits" not in out:
            raise AuditError(
                f"the model returns a dict without a 'logits' entry ({_element_types(out)}); "
                "choose the logits with --output-key KEY"
            )
        key = "logits"
    if key not in out and isinstance(key, str) and key.isdigit() and int(key) in out:
        key = int(key)
    if key not in out:
        raise AuditError(f"--output-key {key!r} is not in the model's output dict ({_element_types(out)})")
    return out[key], f"dict[{key}]"


def pick_logits(out: Any, key: str | int | None = None) -> tuple[torch.Tensor, str]:
    """(logits, where they were: "tensor", "dict[<key>]" or "tuple[<i>]") from a network's raw output."""
    if isinstance(out, torch.Tensor):
        return out, "tensor"
    if isinstance(out, Mapping):
        value, where = _pick_from_mapping(out, key)
    elif isinstance(out, (tuple, list)) and len(out) > 0:
        value, where = _pick_from_sequence(out, key)
    else:
        raise AuditError(
            f"the model returns {type(out).__name__} {str(out)[:40]!r}; expected logits: a tensor, "
            "or a dict / tuple holding one"
        )
    if not isinstance(value, torch.Tensor):
        raise AuditError(
            f"the model's output {where} is a {type(value).__name__}, not a tensor ({_element_types(out)}); "
            "choose the logits tensor with --output-key"
        )
    return value, where


class AuditedModel(torch.nn.Module):
    """The user's network seen in [0,1] pixel space: normalization inside, and a plain logits tensor out."""

    def __init__(
        self,
        net: torch.nn.Module,
        mean: tuple | None,
        std: tuple | None,
        output_key: str | int | None = None,
    ):
        super().__init__()
        self.net = net
        self.output_key = output_key
        if mean is not None and std is not None and len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} values but std has {len(std)}")
        if mean is None and std is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
        else:
            channels = len(mean if mean is not None else std)
            self.register_buffer("mean", _stat_buffer(mean, channels, 0.0))
            self.register_buffer("std", _stat_buffer(std, channels, 1.0))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mean is None else (x - self.mean) / self.std

    def pick(self, out: Any) -> tuple[torch.Tensor, str]:
        return pick_logits(out, self.output_key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pick(self.net(self.normalize(x)))[0]

    def train(self, mode: bool = True) -> AuditedModel:
        # attack libraries call eval() and train(); a torch.export network must not make them fail
        self.training = mode
        _set_training(self.net, mode)
        return self

