"""The layer tap: one forward with hooks (and, when an analysis needs gradients, one backward) per batch.

Every per-layer analysis reads the same pass. :func:`run_tap` runs the model once on a batch with forward hooks
on the chosen layers and returns a :class:`TapResult`: the logits, one **pooled vector per image and layer**,
and, when gradients are asked for, every layer's activation map and its gradient from ONE backward of the sum
over the batch of each image's chosen-class logit.

Pooling (one vector per image): a layer output of shape

- (N, C, H, W) (or any rank >= 4, e.g. 3-D convolutions) is averaged over every axis after the channel axis:
  global average pooling, one value per channel ("global average");
- (N, D) is taken as it is ("as is");
- (N, T, D) is read as a token sequence (transformers, ``batch_first``). With the network's
  :class:`TokenLayout` (found by :func:`audit.analyses.layers.token_layout`: P prefix tokens, the class token
  first, then the h x w patch tokens in row-major order) a layer of T = P + h*w tokens is pooled by the model's
  own rule: its class token ``x[:, 0]`` ("class token") when the model classifies from it, else the mean of
  its patch tokens ``x[:, P:]`` ("mean of patch tokens"; also for a layer of exactly h*w tokens). Without a
  layout, or when T matches none, the mean over all T tokens ("mean of tokens").

:func:`pooling_rule` names the rule a layer got (the report's ``analyses.tap.per_layer``). For saliency maps,
:func:`on_grid` lays a token layer's patch tokens (prefix dropped) on their grid as (N, D, h, w): the usual
reshape for Grad-CAM on vision transformers, applied alike to the activation and its gradient.

A block that returns a tuple (or a ``ModelOutput``, a dict) whose first element is its (N, T, D) tensor, as
older Hugging Face layers do, is read through that tensor; when maps are kept the hook hands the network the
same container with the clone in its place.

In-place operations: a module's output may be overwritten later by an in-place op (``ReLU(inplace=True)`` in
torchvision's ResNet, ``out += identity`` on a block's last BatchNorm output). The pooled vector is computed
inside the hook, before anything downstream runs; when maps are kept, the hook hands the rest of the network a
clone of the output, so the kept map keeps the values the layer produced and stays a valid autograd node.

Hooks are registered on the user's network (``AuditedModel.net``; layer names carry no wrapper prefix) and are
removed when the context ends, also on an exception. Nothing outlives the call: returned tensors are detached,
and the autograd graph is freed by the one backward (or never built when no gradient is asked for).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from attacks.passes import count_passes
from audit.errors import AuditError
from audit.model import AuditedModel
from audit.model.loading import TORCHSCRIPT_TO_WEIGHTS


def network_of(model: torch.nn.Module) -> torch.nn.Module:
    """The user's network: ``model.net`` for an :class:`AuditedModel`, else ``model`` itself."""
    return model.net if isinstance(model, AuditedModel) else model


@dataclass(frozen=True)
class TokenLayout:
    """How a vision transformer lays out its tokens: ``prefix`` tokens (class, distillation, register tokens;
    the class token first) before the ``grid`` = (h, w) patch tokens in row-major order; ``pooling`` is the
    model's rule for a layer ("class token" or "mean of patch tokens") and ``why`` where that rule came from."""

    prefix: int
    grid: tuple[int, int]
    pooling: str
    why: str = ""

    def prefix_of(self, tokens: int) -> int | None:
        """The prefix tokens of a layer with ``tokens`` tokens: ``prefix``, 0 (patch tokens only), or None when
        the layer's tokens are not this layout's."""
        patches = self.grid[0] * self.grid[1]
        if tokens == patches + self.prefix:
            return self.prefix
        return 0 if tokens == patches else None

    def as_dict(self) -> dict:
        return {"prefix_tokens": self.prefix, "grid": list(self.grid), "pooling": self.pooling, "why": self.why}


def pooling_rule(shape: tuple[int, ...], layout: TokenLayout | None = None) -> str:
    """How :func:`pool` reduces a layer output of ``shape`` (without the batch axis); the rule in the module
    docstring: "global average", "as is", "class token", "mean of patch tokens" or "mean of tokens"."""
    if len(shape) >= 3:
        return "global average"
    if len(shape) != 2:
        return "as is"
    prefix = layout.prefix_of(shape[0]) if layout is not None else None
    if prefix is None:
        return "mean of tokens"
    return "class token" if layout.pooling == "class token" and prefix > 0 else "mean of patch tokens"


def pool(output: torch.Tensor, layout: TokenLayout | None = None) -> torch.Tensor:
    """One (N, D) vector per image from a layer output (the rule in the module docstring), detached."""
    output = output.detach()
    if output.dim() >= 4:
        return output.mean(dim=tuple(range(2, output.dim())))
    if output.dim() == 3:
        rule = pooling_rule(tuple(output.shape[1:]), layout)
        if rule == "class token":
            return output[:, 0]
        if rule == "mean of patch tokens":
            return output[:, layout.prefix_of(output.shape[1]):].mean(dim=1)
        return output.mean(dim=1)
    if output.dim() == 2:
        return output
    return output.reshape(output.shape[0], -1)


def on_grid(tensor: torch.Tensor | None, layout: TokenLayout | None) -> torch.Tensor | None:
    """A token layer's output (N, T, D) as its patch tokens on their grid (N, D, h, w), prefix tokens dropped;
    any other tensor (or a layer whose tokens do not match ``layout``) unchanged."""
    if tensor is None or layout is None or tensor.dim() != 3:
        return tensor
    prefix = layout.prefix_of(tensor.shape[1])
    if prefix is None:
        return tensor
    (h, w), n = layout.grid, tensor.shape[0]
    return tensor[:, prefix:].reshape(n, h, w, tensor.shape[2]).permute(0, 3, 1, 2)


def first_tensor(output: object) -> tuple[torch.Tensor | None, Callable[[torch.Tensor], object]]:
    """(the tensor a module returned, a function putting a replacement back in its place): the output itself,
    or the first element of a tuple, list or ``ModelOutput``/dict; (None, ...) when there is none."""
    if isinstance(output, torch.Tensor):
        return output, lambda t: t
    if isinstance(output, Mapping) and output:
        key = next(iter(output))
        if isinstance(output[key], torch.Tensor):
            return output[key], lambda t: type(output)(**{**output, key: t})
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        if hasattr(output, "_fields"):  # a named tuple
            return output[0], lambda t: type(output)(t, *output[1:])
        return output[0], lambda t: type(output)([t, *output[1:]])
    return None, lambda t: t


@contextmanager
def hooked(
    modules: Iterable[tuple[str, torch.nn.Module]],
    after: Callable[[str, torch.nn.Module, tuple, object], object],
    before: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Call ``after(name, module, inputs, output)`` (and ``before(name)``) around each module's forward.

    What ``after`` returns replaces the module's output when it is not None. Every hook is removed on exit.
    """
    handles = []
    try:
        modules = list(modules)
        if any(isinstance(module, torch.jit.ScriptModule) for _, module in modules):
            raise AuditError(f"the network is a TorchScript archive, whose layers cannot be hooked: use --layers none, "
                             f"or {TORCHSCRIPT_TO_WEIGHTS}")
        for name, module in modules:
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: after(name, m, i, o)))
            if before is not None:
                handles.append(module.register_forward_pre_hook(lambda m, i, name=name: before(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class Tap:
    """What the hooks of :func:`tap` recorded during the last forward of the network.

    ``pooled[name]`` is the (N, D) pooled vector of the layer (detached). With ``keep_maps``, ``maps[name]``
    is the layer's output still attached to the autograd graph: call :meth:`gradients` once after the forward.
    """

    def __init__(self, names: list[str], keep_maps: bool, layout: TokenLayout | None = None):
        self.names, self.keep_maps, self.layout = names, keep_maps, layout
        self.pooled: dict[str, torch.Tensor] = {}
        self.rules: dict[str, str] = {}
        self.maps: dict[str, torch.Tensor] = {}
        self._seen: set[str] = set()

    def _start(self) -> None:  # forget the previous forward
        self.pooled, self.maps, self.rules, self._seen = {}, {}, {}, set()

    def _record(self, name: str, output: object) -> object | None:
        tensor, rebuild = first_tensor(output)
        if tensor is None:
            raise AuditError(f"layer {name!r} returns a {type(output).__name__}, not a tensor; choose another layer")
        if name in self._seen:
            raise AuditError(
                f"layer {name!r} runs more than once per forward (a module shared by several places); "
                "choose a module that runs once (see `audit layers MODEL`)"
            )
        self._seen.add(name)
        self.pooled[name] = pool(tensor, self.layout)
        self.rules[name] = pooling_rule(tuple(tensor.shape[1:]), self.layout)
        if not self.keep_maps:
            return None
        self.maps[name] = tensor
        return rebuild(tensor.clone())  # downstream in-place ops write into the clone, never into the kept map

    def missing(self) -> list[str]:
        return [name for name in self.names if name not in self._seen]

    def gradients(self, score: torch.Tensor) -> dict[str, torch.Tensor]:
        """d score / d map for every kept map, from ONE backward; the graph is freed afterwards."""
        if not self.keep_maps:
            raise ValueError("gradients need a tap opened with keep_maps=True")
        names = [n for n in self.names if n in self.maps and self.maps[n].requires_grad]
        if len(names) != len(self.names):
            raise ValueError("gradients need a forward run with autograd enabled and every layer recorded")
        grads = torch.autograd.grad(score, [self.maps[n] for n in names], allow_unused=True)
        return {
            n: torch.zeros_like(self.maps[n]).detach() if g is None else g.detach()
            for n, g in zip(names, grads, strict=True)
        }


@contextmanager
def tap(model: torch.nn.Module, layer_names: Iterable[str], *, keep_maps: bool = False,
        layout: TokenLayout | None = None) -> Iterator[Tap]:
    """Hook the named layers of ``model``'s network (names as in ``named_modules()``, no wrapper prefix);
    token outputs are pooled by ``layout`` (the module docstring).

    Each forward of the network refills the yielded :class:`Tap`. Hooks are always removed on exit; the tap's
    records are dropped with it.
    """
    net = network_of(model)
    names = list(dict.fromkeys(layer_names))
    modules = dict(net.named_modules())
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        raise AuditError(f"no layer named {unknown[0]!r} in the network (see `audit layers MODEL`)")
    recorder = Tap(names, keep_maps, layout)

    def after(name: str, _module, _inputs, output):
        return None if name == "" else recorder._record(name, output)

    def before(name: str) -> None:
        if name == "":  # a forward of the whole network begins
            recorder._start()

    try:
        with hooked([("", net), *((n, modules[n]) for n in names)], after, before):
            yield recorder
    finally:
        recorder._start()


@dataclass
class TapResult:
    """One batch seen through the tap. Every tensor is detached; nothing references the autograd graph."""

    logits: torch.Tensor  # (N, K)
    pooled: dict[str, torch.Tensor]  # layer -> (N, D), in the order the layers were given
    maps: dict[str, torch.Tensor] | None = None  # layer -> its output, when gradients were taken
    grads: dict[str, torch.Tensor] | None = None  # layer -> d score / d output, same shape
    classes: torch.Tensor | None = None  # (N,) the class whose logit was differentiated per image
    forward_images: int = 0  # images sent forward through the model (counted as attacks.passes does)
    backward_images: int = 0  # images whose gradients were taken
    pooling: dict[str, str] | None = None  # layer -> how it was pooled (pooling_rule)
    unmapped: dict[str, str] | None = None  # layer -> why it has no saliency map although it has a grid


def run_tap(
    model: torch.nn.Module,
    x: torch.Tensor,
    layers: Iterable[str],
    *,
    gradient_of: torch.Tensor | Literal["predicted"] | None = None,
    keep_maps: bool = False,
    layout: TokenLayout | None = None,
) -> TapResult:
    """ONE forward of ``model`` on ``x`` with the tap on ``layers``, and ONE backward when ``gradient_of`` is set.

    ``keep_maps`` without ``gradient_of`` also returns the layers' outputs (no backward).
    ``gradient_of``: None (forward only, under ``no_grad``); a (N,) tensor of class indices; or "predicted"
    (each image's argmax class). The backward differentiates the sum over the batch of each image's logit for
    its class, so image i's gradient maps are those of its own logit (images do not interact in eval mode).
    The caller decides train/eval mode (the runner holds eval mode for the whole audit). ``layout``: the
    network's token layout, for pooling token outputs (None: the mean over all tokens).
    """
    if isinstance(gradient_of, str) and gradient_of != "predicted":
        raise ValueError(f"gradient_of must be None, a tensor of classes or 'predicted', not {gradient_of!r}")
    names = list(dict.fromkeys(layers))
    want_grad = gradient_of is not None
    with count_passes(model) as counter, tap(model, names, keep_maps=want_grad or keep_maps,
                                                  layout=layout) as recorder:
        if not want_grad:
            with torch.no_grad():
                logits = model(x)
            _check_recorded(recorder)
            maps = {n: recorder.maps[n].detach() for n in names} if keep_maps else None
            return TapResult(logits.detach(), dict(recorder.pooled), maps, forward_images=counter.forward,
                             pooling=dict(recorder.rules))
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(True))  # every map needs grad, even with frozen weights
            _check_recorded(recorder)
            classes = logits.argmax(1) if isinstance(gradient_of, str) else gradient_of.to(logits.device)
            score = logits.gather(1, classes.view(-1, 1)).sum()
            grads = recorder.gradients(score)
        maps = {n: recorder.maps[n].detach() for n in names}
        pooled, rules = dict(recorder.pooled), dict(recorder.rules)
    return TapResult(logits.detach(), pooled, maps, grads, classes.detach(), counter.forward, counter.backward,
                     rules)


def _check_recorded(recorder: Tap) -> None:
    missing = recorder.missing()
    if missing:
        raise AuditError(
            f"layer {missing[0]!r} did not run during the forward; choose layers that do (see `audit layers MODEL`)"
        )


def select_rows(result: TapResult, rows: torch.Tensor) -> TapResult:
    """The rows of ``result`` selected by the boolean mask ``rows``."""
    def pick(t):
        return None if t is None else t[rows]

    def pick_all(d: dict | None):
        return None if d is None else {k: v[rows] for k, v in d.items()}

    return TapResult(pick(result.logits), pick_all(result.pooled), pick_all(result.maps), pick_all(result.grads),
                     pick(result.classes))


def replace_rows(base: TapResult, rows: torch.Tensor, part: TapResult) -> TapResult:
    """``base`` with the rows selected by the boolean mask ``rows`` taken from ``part``."""
    def put(whole, piece):
        if whole is None or piece is None:
            return None
        out = whole.clone()
        out[rows] = piece
        return out

    def put_all(whole: dict | None, piece: dict | None):
        return None if whole is None or piece is None else {k: put(whole[k], piece[k]) for k in whole}

    return TapResult(put(base.logits, part.logits), put_all(base.pooled, part.pooled), put_all(base.maps, part.maps),
                     put_all(base.grads, part.grads), put(base.classes, part.classes))
