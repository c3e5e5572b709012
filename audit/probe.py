"""The user's network seen in [0,1] pixel space, and a probe that checks it once before any attack.

:class:`AuditedModel` folds normalization in and reduces dict/tuple outputs to one logits tensor, so attacks
work on pixels in [0,1]. :func:`probe` runs it on a small real batch and turns what can go wrong (wrong input
size, wrong output shape, NaN, probabilities instead of logits, randomness in eval mode) into one-line
:class:`~audit.errors.AuditError` messages or warnings. All names here are also importable from
:mod:`audit.model`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from audit.errors import AuditError

PROBABILITIES_WARNING = (
    "the model outputs probabilities (rows sum to 1): gradient attacks on probabilities underperform; "
    "export the logits if you can"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SHAPE_WORDS = ("shape", "size", "channel", "mat1", "dimension", "guard failed")


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, without colour codes, cut to ``limit`` characters."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


# --- the probe -------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    num_outputs: int
    output_kind: str
    output_type: str
    deterministic: bool
    warnings: list[str] = field(default_factory=list)


def _first_layer(net: torch.nn.Module) -> tuple[str, int] | None:
    """("Conv2d", in_channels) or ("Linear", in_features) of the first such layer, in registration order.

    Any module with a 4-D weight counts as a convolution (subclasses such as same-padding convolutions, and
    TorchScript modules, which keep only the original class name).
    """
    for sub in net.modules():
        weight = getattr(sub, "weight", None)
        if not isinstance(weight, torch.Tensor) or torch.nn.parameter.is_lazy(weight):
            continue
        kind = getattr(sub, "original_name", None) or type(sub).__name__
        if weight.dim() == 4 and "Transpose" not in kind:
            return "Conv2d", weight.shape[1] * int(getattr(sub, "groups", 1))
        if weight.dim() == 2 and (isinstance(sub, torch.nn.Linear) or kind == "Linear"):
            return "Linear", weight.shape[1]
    return None


def _exported_shape(net: torch.nn.Module) -> tuple[int, ...] | None:
    """The (C, H, W) a torch.export program recorded for its image input, where it is static."""
    if not isinstance(net, torch.fx.GraphModule):
        return None
    for node in net.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(value, torch.Tensor) and value.dim() == 4:
            dims = value.shape[1:]
            return tuple(dims) if all(isinstance(d, int) for d in dims) else None
    return None


def expected_channels(net: torch.nn.Module) -> int | None:
    """The input channels ``net`` expects: an exported program's recorded input, else its first Conv2d."""
    shape = _exported_shape(net)
    if shape is not None:
        return shape[0]
    layer = _first_layer(net)
    return layer[1] if layer is not None and layer[0] == "Conv2d" else None


def _size_of(value) -> tuple[int, int] | None:
    """(H, W) from a declared size: an int (square), (H, W) or (C, H, W) of positive ints; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, tuple | list) or len(value) not in (2, 3):
        return None
    dims = tuple(value)[-2:]
    ok = all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)
    return (dims[0], dims[1]) if ok else None


def declared_size(net: torch.nn.Module) -> tuple[int, int] | None:
    """The input (H, W) ``net`` declares, where it declares one: the static shape an exported program recorded,
    a ``pretrained_cfg``/``default_cfg`` ``input_size`` (timm's models), or ``config.image_size`` (Hugging Face
    vision models). None when it declares none: a plain network takes any size its layers allow."""
    shape = _exported_shape(net)
    if shape is not None:
        return _size_of(shape)
    for name in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(net, name, None)
        if isinstance(cfg, dict) and _size_of(cfg.get("input_size")) is not None:
            return _size_of(cfg.get("input_size"))
    return _size_of(getattr(getattr(net, "config", None), "image_size", None))


def _expectation(net: torch.nn.Module) -> str | None:
    shape = _exported_shape(net)
    if shape is not None:
        return f"it was exported for inputs of shape {'x'.join(map(str, shape))}"
    layer = _first_layer(net)
    if layer is None:
        return None
    if layer[0] == "Conv2d":
        return f"its first layer expects {layer[1]} channels"
    return f"its first layer is a Linear that expects {layer[1]} values (C*H*W of one image)"


def _input_error(net: torch.nn.Module, x: torch.Tensor, exc: Exception) -> AuditError:
    reason = short_reason(exc)
    sample = "x".join(str(d) for d in x.shape[1:])
    if "guard failed" in reason.lower() and "size()[0]" in reason:
        return AuditError(
            f"the model does not accept a batch of {x.shape[0]} ({reason}): it was exported for a fixed batch "
            "size; re-export it with a dynamic batch dimension (torch.export.export(..., dynamic_shapes=...))"
        )
    channels = expected_channels(net)
    mismatch = channels is not None and channels != x.shape[1]
    if not mismatch and not any(word in reason.lower() for word in _SHAPE_WORDS):
        return AuditError(
            f"the model failed on a batch of shape {'x'.join(map(str, x.shape))} ({type(exc).__name__}: {reason}); "
            "its forward must run on (N, C, H, W) float images: check the model and --input-size / --channels"
        )
    expects = _expectation(net)
    advice = f"{expects}: set --input-size / --channels" if expects else "check --input-size / --channels"
    return AuditError(f"the model does not accept inputs of shape {sample} ({reason}); {advice}")


def _forward(audited: AuditedModel, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    try:
        raw = audited.net(audited.normalize(x))
    except Exception as exc:
        raise _input_error(audited.net, x, exc) from exc
    return audited.pick(raw)


def _check_shape(logits: torch.Tensor, n: int, num_classes: int | None) -> None:
    shape = "x".join(str(d) for d in logits.shape) or "scalar"
    if logits.dim() != 2 or logits.shape[0] != n:
        raise AuditError(
            f"the model returned an output of shape {shape} for a batch of {n} images; a classifier must "
            f"return ({n}, number of classes) scores (pick another output with --output-key if it has several)"
        )
    if not logits.is_floating_point():
        raise AuditError(f"the model returned {logits.dtype} values, not float scores; it must return logits")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise AuditError(
            f"the model has {logits.shape[1]} outputs but {num_classes} class names were given; "
            "give the class names the model was trained with, or the matching checkpoint"
        )


def _check_finite(logits: torch.Tensor) -> None:
    if bool(torch.isfinite(logits).all()):
        return
    nan, inf = int(torch.isnan(logits).sum()), int(torch.isinf(logits).sum())
    raise AuditError(
        f"the model outputs NaN/inf on clean inputs ({nan} NaN and {inf} inf of {logits.numel()} values); "
        "check the weights and --mean / --std"
    )


def _output_kind(logits: torch.Tensor) -> str:
    scores = logits.double()
    if bool((scores >= 0).all() and (scores <= 1).all()) and float((scores.sum(1) - 1).abs().max()) <= 1e-3:
        return "probabilities"
    if bool((scores <= 0).all()) and float(torch.logsumexp(scores, 1).abs().max()) <= 1e-3:
        return "log-probabilities"
    return "logits"


def _device_of(module: torch.nn.Module) -> torch.device | None:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return None


def probe(audited: AuditedModel, x: torch.Tensor, num_classes: int | None) -> ProbeResult:
    """Run ``audited`` twice on ``x`` (N,C,H,W in [0,1]) in eval mode and say what it returns, or why not."""
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"probe needs a non-empty (N, C, H, W) batch, got shape {tuple(x.shape)}")
    device = _device_of(audited)
    x = x if device is None else x.to(device)
    with eval_mode(audited), torch.no_grad():
        logits, output_type = _forward(audited, x)
        _check_shape(logits, x.shape[0], num_classes)
        _check_finite(logits)
        again, _ = _forward(audited, x)
    warnings = []
    kind = _output_kind(logits)
    if kind == "probabilities":
        warnings.append(PROBABILITIES_WARNING)
    if logits.shape[1] < 2:
        warnings.append("the model has a single output: attacks need one score per class; export the logits")
    deterministic = again.shape == logits.shape and (
        torch.equal(again, logits) or torch.allclose(again, logits, atol=1e-6)
    )
    if not deterministic:
        gap = (again - logits).abs().max().item() if again.shape == logits.shape else math.inf
        warnings.append(
            f"the model is stochastic in eval mode (two identical calls differ by up to {gap:.3g}): attack "
            "results will vary; make its forward deterministic in eval() (e.g. no dropout or noise forced on)"
        )
    return ProbeResult(logits.shape[1], kind, output_type, deterministic, warnings)
