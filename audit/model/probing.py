"""A probe that checks the user's network once, on a small real batch, before any attack.

:func:`probe` runs an :class:`~audit.model.audited.AuditedModel` and turns what can go wrong (wrong input
size, wrong output shape, NaN, probabilities instead of logits, randomness in eval mode) into one-line
:class:`~audit.errors.AuditError` messages or warnings. :func:`expected_channels` and :func:`declared_size`
read what a network says about its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from audit.errors import AuditError, short_reason
from audit.model.audited import AuditedModel, eval_mode

PROBABILITIES_WARNING = (
    "the model outputs probabilities (rows sum to 1): gradient attacks on probabilities underperform; "
    "export the logits if you can"
)
_SHAPE_WORDS = ("shape", "size", "channel", "mat1", "dimension", "guard failed")


@dataclass
class ProbeResult:
    num_outputs: int
    output_kind: str
    output_type: str
    deterministic: bool
    warnings: list[str] = field(default_factory=list)


def first_layer(net: torch.nn.Module) -> tuple[str, int] | None:
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
    layer = first_layer(net)
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
    layer = first_layer(net)
    if layer is None:
        return None
    if layer[0] == "Conv2d":
        return f"its first layer expects {layer[1]} channels"
    return f"its first layer is a Linear that expects {layer[1]} values (C*H*W of one image)"


def input_error(net: torch.nn.Module, x: torch.Tensor, exc: Exception) -> AuditError:
    """The one line that says why ``net`` failed on the batch ``x`` (``exc``), and what to set instead."""
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
        raise input_error(audited.net, x, exc) from exc
    return audited.pick(raw)


def _check_shape(logits: torch.Tensor, n: int, num_classes: int | None, named_by: str = "--classes") -> None:
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
            f"the model has {logits.shape[1]} outputs but {named_by} names {num_classes} classes; "
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


def probe(audited: AuditedModel, x: torch.Tensor, num_classes: int | None, named_by: str = "--classes"
          ) -> ProbeResult:
    """Run ``audited`` twice on ``x`` (N,C,H,W in [0,1]) in eval mode and say what it returns, or why not.
    ``num_classes``: how many class names ``named_by`` (a flag, or the model config) gives, if any."""
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"probe needs a non-empty (N, C, H, W) batch, got shape {tuple(x.shape)}")
    device = _device_of(audited)
    x = x if device is None else x.to(device)
    with eval_mode(audited), torch.no_grad():
        logits, output_type = _forward(audited, x)
        _check_shape(logits, x.shape[0], num_classes, named_by)
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
