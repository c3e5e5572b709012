"""Which layers the per-layer analyses read: the candidates of a network, ``--layers auto``, and name lists.

Candidates come from ONE hooked forward on a small example batch (hooks removed afterwards): every module of
the user's network (``named_modules()`` names, without the wrapper's prefix; the root itself excluded) whose
forward returned a tensor (or a tuple / ``ModelOutput`` whose first element is one, as older Hugging Face
transformer layers return: that tensor is the layer's output), with its output shape and how many times it ran.

``--layers auto`` picks a depth series of at most 12 layers, in the order they run. A layer is *eligible* when
it ran exactly once and returned a floating tensor of batch size N; modules after the classifier head are never
picked. A *weighted* module has a weight of its own with 2 or more dimensions (a conv or linear layer). The
*head* is the last weighted module with a flat (N, K) output to run (the classifier's ``Linear``). The
*penultimate layer* is the module whose output the head reads: among the modules whose output shares the head
input's storage, the last to run that is not a no-op (``Dropout``, ``Identity``, ``Flatten``) — ResNet
``avgpool``, EfficientNet ``_avg_pooling``, a LeNet's last hidden ReLU, timm ViT ``fc_norm`` (global_pool
'avg'); failing that (pooling done by a function in ``forward``), the last eligible module before the head
that is not a no-op (timm ViT ``norm``, whose class token the head reads), failing that any; a second head
(a weighted module with the head's output shape, DeiT's distillation head) is never picked. A container
whose output is the very tensor one of its modules returned is named by that module (torchvision ViT
``encoder`` -> ``encoder.ln``).

1. Block networks. A *block* is a module that runs once and holds at least two weighted layers. The *trunk*
   is the outermost container (shallowest name; the most blocks on a tie) with at least three block children.
   The series is: the stem, when the last eligible leaf module before the first block is an activation or a
   pooling layer (ResNet ``maxpool``; the outermost module returning that same tensor, so a torchvision
   ``Conv2dNormActivation`` is named rather than its inner activation); the trunk's blocks, subsampled
   evenly (first and last always kept) to fit in 12; the penultimate layer. torchvision ResNets give
   ``maxpool, layer1..layer4, avgpool``; EfficientNet-Lite its ``_blocks.i`` and ``_avg_pooling``; torchvision
   EfficientNet / MobileNet the stages of ``features``. Vision transformers are block networks too (their
   blocks return (N, T, D) tokens): timm ``blocks.0..`` + ``norm`` (global_pool 'token') or ``fc_norm``
   ('avg'); Hugging Face ViT ``vit.layers.0..`` (``vit.encoder.layer.N`` before transformers 5) +
   ``vit.layernorm``; torchvision ViT ``encoder.layers.encoder_layer_0..`` + ``encoder.ln``; ViT-B (12
   blocks) gives 11 blocks and the norm.
2. Plain stacks (LeNet-like, VGG, the demo CNN), where no trunk exists. Each weighted layer but the head
   opens a *unit* that runs until the next weighted layer; a unit contributes its activation output (the last
   module of the unit with the weighted layer's output shape that is not a no-op: post-ReLU) and, when a
   pooling shrinks the map inside the unit, its last map of that rank (post-pool). The penultimate layer closes
   the series; more than 12 are subsampled evenly, the last kept. The demo FashionCNN gives
   ``features.1, features.2, features.4, features.6, classifier.2``.

``--layers none`` turns the per-layer analyses off; ``--layers a,b`` names modules (ordered by when they run).

Token layout (:func:`token_layout`, for pooling and saliency maps of (N, T, D) outputs; see
:mod:`audit.analyses.tap`). The *patch embedding* is the last 2-D convolution to finish before the first token
output (N, T, D) is returned (timm ``patch_embed.proj``, Hugging Face ``…patch_embeddings.projection``,
torchvision ``conv_proj``); the patch grid (h, w) is its output's spatial size. T is the token count of the last
token output before the head; the prefix tokens (class, distillation, register tokens) are P = T − h*w, which
must be 0 <= P < h*w, and must equal timm's ``num_prefix_tokens`` where the model has one. The pooling rule is
the model's: timm ``global_pool`` 'token' -> the class token, any other (e.g. 'avg') -> the mean of the patch
tokens; a Hugging Face config with ``use_mean_pooling`` -> the mean of the patch tokens; otherwise the class
token when P > 0 (Hugging Face and torchvision ViT read ``x[:, 0]``), the mean of the patch tokens when P = 0.
No layout (no convolution before the tokens, or a count that does not fit): token outputs are averaged over
all tokens and have no saliency map.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch

from audit.errors import AuditError
from audit.model import eval_mode, expected_channels
from audit.model.probing import input_error
from audit.options import LayerChoice
from audit.analyses.tap import TokenLayout, first_tensor, hooked, network_of

MAX_LAYERS = 12
_NO_OP = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity", "Flatten", "Unflatten")
_SHAPING = ("torch.nn.modules.activation", "torch.nn.modules.pooling")


@dataclass
class LayerInfo:
    """A module of the network as one forward saw it."""

    name: str
    kind: str  # the module's class name
    shape: tuple[int, ...]  # output shape without the batch axis
    calls: int  # times it ran during one forward
    start: int  # order in which the modules started running
    end: int  # order in which they returned
    weighted: bool  # has a >= 2-D weight of its own (a conv or linear layer)
    shaping: bool  # an activation or pooling layer (torch.nn activation / pooling modules)
    batch_ok: bool = True  # floating output with the batch on its first axis
    storage: tuple[int, int] = (0, 0)  # (data pointer, size) of the output, to find aliases
    input_storage: tuple[int, int] = (-1, -1)  # the same for its first input
    children: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return self.calls == 1 and self.batch_ok


def _weighted(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and not torch.nn.parameter.is_lazy(weight) and weight.dim() >= 2


def _kind(module: torch.nn.Module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


def candidate_layers(model: torch.nn.Module, example_input: torch.Tensor) -> list[LayerInfo]:
    """Every module whose forward returned a tensor, in the order they started, from one hooked forward.

    ``model`` is an :class:`~audit.model.audited.AuditedModel` (its network's modules are listed) or a bare network;
    ``example_input`` a small (N, C, H, W) batch such as the model expects.
    """
    net = network_of(model)
    named = [(n, m) for n, m in net.named_modules() if n]
    clock = {"t": 0}
    starts: dict[str, int] = {}
    seen: dict[str, LayerInfo] = {}
    alive: list = []
    batch = int(example_input.shape[0])

    def before(name: str) -> None:  # every start and every end gets its own tick
        clock["t"] += 1
        starts.setdefault(name, clock["t"])

    def after(name: str, module: torch.nn.Module, inputs, output) -> None:
        clock["t"] += 1
        alive.append(output)  # held until the forward ends, so no two outputs share an address by reuse
        if name in seen:
            seen[name].calls += 1
            return
        output = first_tensor(output)[0]
        if output is None:
            return
        batch_ok = output.dim() >= 2 and output.shape[0] == batch and output.is_floating_point()
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        seen[name] = LayerInfo(
            name, _kind(module), tuple(output.shape[1:]), 1, starts[name], clock["t"], _weighted(module),
            type(module).__module__ in _SHAPING, batch_ok, _storage(output),
            _storage(first) if first is not None else (-1, -1),
        )

    x = example_input.to(_device(net))
    with eval_mode(model), torch.no_grad(), hooked(named, after, before):
        try:
            model(x)
        except AuditError:
            raise
        except Exception as exc:
            raise input_error(net, x, exc) from exc
        finally:
            alive.clear()
    layers = sorted(seen.values(), key=lambda info: info.start)
    for info in layers:
        prefix = info.name + "."
        info.children = [o.name for o in layers if o.name.startswith(prefix) and "." not in o.name[len(prefix):]]
    return layers


def _storage(tensor: torch.Tensor) -> tuple[int, int]:
    return tensor.data_ptr(), tensor.numel()


def _device(net: torch.nn.Module) -> torch.device:
    for tensor in [*net.parameters(), *net.buffers()]:
        return tensor.device
    return torch.device("cpu")


# --- --layers auto ---------------------------------------------------------------------------------------


def _inside(name: str, parent: str) -> bool:
    return name.startswith(parent + ".")


def _head(layers: list[LayerInfo]) -> LayerInfo | None:
    linears = [info for info in layers if info.weighted and len(info.shape) == 1]
    return max(linears, key=lambda info: info.end) if linears else None


def _penultimate(layers: list[LayerInfo], head: LayerInfo | None) -> LayerInfo | None:
    if head is None:
        return None
    before = [o for o in layers if o.eligible and o.end < head.start and not _inside(head.name, o.name)
              and not (o.weighted and o.shape == head.shape)]  # a second head (DeiT's distillation head)
    aliases = [o for o in before if o.storage == head.input_storage]

    def real(pool):
        return [o for o in pool if o.kind not in _NO_OP]

    for pool in (real(aliases), real(before), aliases, before):
        if pool:
            last = max(pool, key=lambda o: o.end)
            inner = [o for o in pool if _inside(o.name, last.name) and o.storage == last.storage]
            return max(inner, key=lambda o: o.end) if inner else last
    return None


def _evenly(items: list, limit: int) -> list:
    """At most ``limit`` items spread evenly over ``items``, first and last kept."""
    if len(items) <= limit:
        return list(items)
    if limit <= 1:
        return items[-1:]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(k * step)] for k in range(limit)]


def _blocks(layers: list[LayerInfo]) -> list[LayerInfo] | None:
    """The trunk's blocks, in running order, or None when the network has no trunk."""
    by_name = {info.name: info for info in layers}
    weighted = [info.name for info in layers if info.weighted]

    def is_block(info: LayerInfo) -> bool:
        return info.eligible and sum(1 for w in weighted if w == info.name or _inside(w, info.name)) >= 2

    parents = {name.rpartition(".")[0] for name in by_name}
    trunks = []
    for parent in parents:
        blocks = [o for o in layers if o.name.rpartition(".")[0] == parent and is_block(o)]
        if len(blocks) >= 3:
            depth = 0 if parent == "" else parent.count(".") + 1
            trunks.append((depth, -len(blocks), blocks))
    if not trunks:
        return None
    return min(trunks, key=lambda t: t[:2])[2]


def _units(layers: list[LayerInfo], head: LayerInfo | None) -> list[LayerInfo]:
    """Post-activation and post-pool outputs of each weighted layer's unit (plain stacks)."""
    leaves = [o for o in layers if o.weighted or not o.children]
    leaves.sort(key=lambda o: o.end)
    stop = head.start if head is not None else float("inf")
    weights = [k for k, o in enumerate(leaves) if o.weighted and o.start < stop]
    picked = []
    for i, k in enumerate(weights):
        end = weights[i + 1] if i + 1 < len(weights) else len(leaves)
        unit = [o for o in leaves[k:end] if o.eligible and o.end < stop]
        if not unit or not leaves[k].eligible:
            continue
        rank, shape = len(leaves[k].shape), leaves[k].shape
        same = [o for o in unit if o.shape == shape and o.kind not in _NO_OP]
        act = same[-1] if same else unit[0]
        picked.append(act)
        maps = [o for o in unit if len(o.shape) == rank and o.kind not in _NO_OP and o.end > act.end]
        if rank >= 3 and maps and maps[-1].shape[1:] != shape[1:]:
            picked.append(maps[-1])
    return picked


def auto_layers(model: torch.nn.Module, example_input: torch.Tensor,
                layers: list[LayerInfo] | None = None) -> list[LayerInfo]:
    """The ``--layers auto`` series (rule in the module docstring); ``layers`` reuses a candidate listing."""
    return auto_choice(model, example_input, layers)[0]


def auto_choice(model: torch.nn.Module, example_input: torch.Tensor,
                layers: list[LayerInfo] | None = None) -> tuple[list[LayerInfo], dict[str, str]]:
    """The ``--layers auto`` series and, per chosen layer, why it was chosen (for ``audit layers``)."""
    layers = layers if layers is not None else candidate_layers(model, example_input)
    head = _head(layers)
    penultimate = _penultimate(layers, head)
    tail = [penultimate] if penultimate is not None else []
    blocks = _blocks(layers)
    why: dict[str, str] = {}
    if blocks is not None:
        first = blocks[0]
        before = [o for o in layers if o.eligible and o.end < first.start]
        leaves = [o for o in before if not o.children]
        leaf = max(leaves, key=lambda o: o.end) if leaves else None
        same = [o for o in before if leaf is not None and leaf.shaping and o.storage == leaf.storage]
        stem = [min(same, key=lambda o: o.start)] if same else []  # a container ending on it reads better
        body = _evenly(blocks, MAX_LAYERS - len(stem) - len(tail))
        chosen = stem + body
        trunk = first.name.rpartition(".")[0] or "the network"
        why.update({o.name: "stem: the activation or pooling before the blocks" for o in stem})
        why.update({o.name: f"block of {trunk} ({len(body)} of {len(blocks)} kept)" for o in body})
    else:
        chosen = _evenly(_units(layers, head), MAX_LAYERS - len(tail))
        why.update({o.name: "a weighted layer's unit, after its activation or pooling" for o in chosen})
    names = {o.name for o in chosen}
    chosen += [o for o in tail if o.name not in names]
    if penultimate is not None:
        why[penultimate.name] = f"penultimate: what the classifier head ({head.name}) reads"
    return sorted(chosen, key=lambda o: o.start), why


# --- token layout ----------------------------------------------------------------------------------------


def token_layout(model: torch.nn.Module, example_input: torch.Tensor,
                 layers: list[LayerInfo] | None = None) -> TokenLayout | None:
    """The network's token layout (prefix tokens, patch grid, pooling rule; the rule in the module docstring),
    or None when it has no token outputs laid on a patch grid. ``layers`` reuses a candidate listing."""
    layers = layers if layers is not None else candidate_layers(model, example_input)
    tokens = [o for o in layers if o.eligible and len(o.shape) == 2 and not o.weighted]
    if not tokens:
        return None
    first = min(tokens, key=lambda o: o.end)
    convs = [o for o in layers if o.weighted and len(o.shape) == 3 and o.end < first.end]
    if not convs:
        return None
    grid = max(convs, key=lambda o: o.end).shape[1:]
    head = _head(layers)
    last = [o for o in tokens if head is None or o.end < head.start]
    count = max(last or tokens, key=lambda o: o.end).shape[0]
    prefix = count - grid[0] * grid[1]
    if not 0 <= prefix < grid[0] * grid[1]:
        return None
    net = network_of(model)
    declared = next((m.num_prefix_tokens for m in net.modules()
                     if isinstance(getattr(m, "num_prefix_tokens", None), int)), None)
    if declared is not None and declared != prefix:
        return None
    pooling, why = _pooling_rule(net, prefix)
    return TokenLayout(prefix, (int(grid[0]), int(grid[1])), pooling, why)


def _pooling_rule(net: torch.nn.Module, prefix: int) -> tuple[str, str]:
    """The model's own rule for reducing its tokens to one vector, and where it came from."""
    timm_pool = next((m.global_pool for m in net.modules()
                      if isinstance(getattr(m, "global_pool", None), str) and hasattr(m, "num_prefix_tokens")), None)
    if timm_pool is not None:
        rule = "class token" if timm_pool == "token" and prefix > 0 else "mean of patch tokens"
        return rule, f"the model's global_pool is {timm_pool!r}"
    if getattr(getattr(net, "config", None), "use_mean_pooling", False):
        return "mean of patch tokens", "the model's config sets use_mean_pooling"
    if prefix > 0:
        return "class token", f"{prefix} prefix token{'s' if prefix > 1 else ''}: the head reads the class token"
    return "mean of patch tokens", "no prefix token"


# --- --layers SPEC ---------------------------------------------------------------------------------------


def resolve_layers(model: torch.nn.Module, choice: LayerChoice, example: torch.Tensor,
                   layers: list[LayerInfo] | None = None) -> list[LayerInfo]:
    """The layers ``--layers`` names (parsed: :func:`audit.options.parse_layers`): auto, none (an empty list) or
    module names (ordered by running order).

    ``layers`` reuses a :func:`candidate_layers` listing of the same model and example.
    """
    if choice.off:
        return []
    layers = layers if layers is not None else candidate_layers(model, example)
    if choice.auto:
        return auto_layers(model, example, layers)
    found = {info.name: info for info in layers}
    every = [n for n, _ in network_of(model).named_modules() if n]
    for name in choice.names:
        _check_name(name, found, every)
    return sorted((found[n] for n in choice.names), key=lambda o: o.start)


def _check_name(name: str, found: dict[str, LayerInfo], every: list[str]) -> None:
    if name not in every:
        close = difflib.get_close_matches(name, every, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else f"its modules include {', '.join(every[:4])}"
        raise AuditError(f"--layers: the network has no module named {name!r}; {hint} (see `audit layers MODEL`)")
    info = found.get(name)
    if info is None:
        raise AuditError(f"--layers: module {name!r} returns no tensor (or does not run) during a forward; "
                         "choose another (see `audit layers MODEL`)")
    if info.calls != 1:
        raise AuditError(f"--layers: module {name!r} runs {info.calls} times per forward (a shared module); "
                         "choose one that runs once (see `audit layers MODEL`)")
    if not info.batch_ok:
        raise AuditError(f"--layers: module {name!r} does not return one floating-point row per image; "
                         "choose another (see `audit layers MODEL`)")


def example_batch(model: torch.nn.Module, channels: int | None = None, size: tuple[int, int] | None = None,
                  n: int = 2, seed: int = 0) -> torch.Tensor:
    """A seeded uniform [0, 1] batch (n, C, H, W) to list a network's layers on.

    C: ``channels``, else what the network's first convolution expects, else 3. H x W: ``size``, else 224 for
    3 channels and 28 otherwise (the sizes of ImageNet and of the MNIST-like sets).
    """
    channels = channels or expected_channels(network_of(model)) or 3
    height, width = size or ((224, 224) if channels == 3 else (28, 28))
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, height, width, generator=generator)
