"""Layer choice (--layers) and the layer tap: picks per architecture, pooled vectors and gradients checked
against sub-networks run by hand, hooks always removed, no autograd graph left behind."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audit.cli import main
from audit.demo import ARCH, ASSETS
from audit.demo_model import FashionCNN
from audit.errors import AuditError
from audit.analyses.layers import auto_layers, candidate_layers, example_batch, resolve_layers
from audit.model.audited import AuditedModel
from audit.options import parse_layers
from audit.analyses.tap import pool, run_tap, tap
from audit.model.torchvision_door import models

FASHION_AUTO = ["features.1", "features.2", "features.4", "features.6", "classifier.2"]
RESNET_AUTO = ["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
RESNET_TAPPED = ["bn1", "relu", "maxpool", "layer1.0.bn2", "layer1", "layer4", "avgpool"]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def fashion() -> AuditedModel:
    torch.manual_seed(1)
    return AuditedModel(FashionCNN().eval(), (0.3,), (0.4,))


@pytest.fixture(scope="module")
def resnet() -> AuditedModel:
    torch.manual_seed(2)
    net = models().resnet18(weights=None, num_classes=6).eval()
    for module in net.modules():  # non-trivial BatchNorm statistics, so that eval mode matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return AuditedModel(net, (0.5, 0.4, 0.45), (0.25, 0.2, 0.3))


def names(layers) -> list[str]:
    return [info.name for info in layers]


def all_hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules())


class NestedBlocks(nn.Module):
    """A stem, five residual blocks in a ModuleList, a head; the activation module is shared by every block."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1)) for _ in range(5)
        )
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = self.act(block(x) + x)
        return self.fc(self.pool(x).flatten(1))


# --- layer choice ----------------------------------------------------------------------------------------


def test_candidates_of_the_demo_cnn_with_shapes_and_no_hooks_left(fashion):
    layers = candidate_layers(fashion, example_batch(fashion))
    shapes = {info.name: info.shape for info in layers}
    assert shapes["features.0"] == (32, 28, 28) and shapes["features.2"] == (32, 14, 14)
    assert shapes["features.6"] == (64, 3, 3) and shapes["classifier.0"] == (576,)
    assert shapes["classifier.3"] == (10,) and "" not in shapes
    assert len(layers) == len(list(fashion.net.modules())) - 1
    assert all(info.calls == 1 for info in layers)
    assert all_hooks(fashion) == 0


def test_auto_picks_for_the_demo_cnn_resnet18_and_nested_blocks(fashion, resnet):
    assert names(auto_layers(fashion, example_batch(fashion))) == FASHION_AUTO
    assert names(auto_layers(resnet, torch.rand(2, 3, 32, 32))) == RESNET_AUTO
    nested = NestedBlocks().eval()
    layers = candidate_layers(nested, torch.rand(2, 3, 16, 16))
    assert {i.name: i.calls for i in layers}["act"] == 5
    assert names(auto_layers(nested, None, layers)) == ["stem", *(f"blocks.{k}" for k in range(5)), "pool"]


def test_auto_picks_for_efficientnet_lite0():
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    net = lite.EfficientNet.from_name("efficientnet-lite0").eval()
    picked = names(auto_layers(net, torch.rand(2, 3, 64, 64)))
    blocks = [n for n in picked if n.startswith("_blocks.")]
    assert picked[-1] == "_avg_pooling" and len(picked) == 12
    assert blocks[0] == "_blocks.0" and blocks[-1] == "_blocks.15" and len(blocks) == 11
    steps = [int(b.split(".")[1]) for b in blocks]
    assert steps == sorted(steps) and max(b - a for a, b in zip(steps, steps[1:], strict=False)) <= 2


def test_resolve_layers_specs(fashion):
    x = example_batch(fashion)
    assert resolve_layers(fashion, parse_layers("none"), x) == []
    assert names(resolve_layers(fashion, parse_layers("auto"), x)) == FASHION_AUTO
    assert names(resolve_layers(fashion, parse_layers(" classifier.2 , features.1,features.1"), x)) == ["features.1", "classifier.2"]
    with pytest.raises(AuditError, match="names no layer"):
        resolve_layers(fashion, parse_layers(" , "), x)


def test_unknown_layer_is_one_line_with_close_matches(fashion):
    with pytest.raises(AuditError) as err:
        resolve_layers(fashion, parse_layers("features.1,clasifier.2"), example_batch(fashion))
    text = str(err.value)
    assert "\n" not in text and "'clasifier.2'" in text and "did you mean classifier.2" in text


def test_shared_module_is_refused_by_name_and_by_the_tap():
    nested = NestedBlocks().eval()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(AuditError, match="runs 5 times per forward"):
        resolve_layers(nested, parse_layers("act"), x)
    with pytest.raises(AuditError, match="more than once"):
        run_tap(nested, x, ["act"])
    assert all_hooks(nested) == 0


def test_torchscript_network_gives_a_clear_error():
    scripted = torch.jit.script(FashionCNN().eval())
    with pytest.raises(AuditError, match="TorchScript"):
        candidate_layers(scripted, torch.rand(2, 1, 28, 28))


def test_example_batch_defaults(fashion, resnet):
    assert example_batch(fashion).shape == (2, 1, 28, 28)
    assert example_batch(resnet).shape == (2, 3, 224, 224)
    x = example_batch(resnet, 3, (40, 30))
    assert x.shape == (2, 3, 40, 30) and float(x.min()) >= 0 and float(x.max()) <= 1


# --- the tap: values -------------------------------------------------------------------------------------


def fashion_by_hand(model: AuditedModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The demo CNN's chosen outputs, computed layer by layer without hooks."""
    f, c = model.net.features, model.net.classifier
    h1 = F.relu(f[0](model.normalize(x)))
    h2 = F.max_pool2d(h1, 2)
    h4 = F.relu(f[3](h2))
    h6 = F.max_pool2d(F.max_pool2d(h4, 2), 3, stride=2)
    z = F.relu(c[1](h6.flatten(1)))
    return {"features.1": h1, "features.2": h2, "features.4": h4, "features.6": h6, "classifier.2": z,
            "logits": c[3](z)}


def resnet_by_hand(model: AuditedModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """resnet18's chosen outputs with every ReLU out of place, so that no value is overwritten."""
    net = model.net
    out = {"bn1": net.bn1(net.conv1(model.normalize(x)))}
    out["relu"] = F.relu(out["bn1"])
    h = out["maxpool"] = net.maxpool(out["relu"])
    block = net.layer1[0]
    out["layer1.0.bn2"] = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(h)))))
    h = F.relu(out["layer1.0.bn2"] + h)
    h = out["layer1"] = net.layer1[1](h)
    h = out["layer4"] = net.layer4(net.layer3(net.layer2(h)))
    out["avgpool"] = net.avgpool(h)
    out["logits"] = net.fc(out["avgpool"].flatten(1))
    return out


def test_pooled_vectors_equal_the_sub_network_run_by_hand(fashion, resnet):
    x = torch.rand(5, 1, 28, 28)
    result = run_tap(fashion, x, FASHION_AUTO)
    with torch.no_grad():
        ref = fashion_by_hand(fashion, x)
    assert list(result.pooled) == FASHION_AUTO and result.maps is None and result.grads is None
    torch.testing.assert_close(result.logits, ref["logits"])
    for name in FASHION_AUTO[:-1]:
        torch.testing.assert_close(result.pooled[name], F.adaptive_avg_pool2d(ref[name], 1).flatten(1))
    torch.testing.assert_close(result.pooled["classifier.2"], ref["classifier.2"])

    x = torch.rand(3, 3, 32, 32)
    result = run_tap(resnet, x, RESNET_TAPPED)
    with torch.no_grad():
        ref = resnet_by_hand(resnet, x)
    assert float(ref["bn1"].min()) < 0  # bn1's output is overwritten by the in-place ReLU in the network
    for name in RESNET_TAPPED:
        torch.testing.assert_close(result.pooled[name], F.adaptive_avg_pool2d(ref[name], 1).flatten(1))
    assert result.forward_images == 3 and result.backward_images == 0


def test_pool_rule():
    x = torch.arange(24.0).reshape(2, 3, 4)  # (N, L, D) tokens: mean over L
    torch.testing.assert_close(pool(x), x.mean(1))
    v = torch.rand(2, 3, 2, 2, 2)  # a 3-D map: mean over every axis after the channels
    torch.testing.assert_close(pool(v), v.flatten(2).mean(2))


def test_one_backward_gives_each_layers_gradient(resnet):
    x = torch.rand(3, 3, 32, 32)
    classes = torch.tensor([1, 4, 2])
    result = run_tap(resnet, x, RESNET_TAPPED, gradient_of=classes)
    assert result.forward_images == 3 and result.backward_images == 3
    assert torch.equal(result.classes, classes)
    for name in RESNET_TAPPED:  # a fresh forward and a separate gradient per layer
        with torch.enable_grad():
            ref = resnet_by_hand(resnet, x)
            score = ref["logits"].gather(1, classes.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, ref[name])
        torch.testing.assert_close(result.maps[name], ref[name].detach())
        torch.testing.assert_close(result.grads[name], grad, rtol=1e-4, atol=1e-6)
        assert float(result.grads[name].abs().sum()) > 0
    assert all(p.grad is None for p in resnet.parameters())


def test_predicted_class_gradients_on_the_demo_cnn(fashion):
    x = torch.rand(4, 1, 28, 28)
    result = run_tap(fashion, x, FASHION_AUTO, gradient_of="predicted")
    assert torch.equal(result.classes, result.logits.argmax(1))
    with torch.enable_grad():
        ref = fashion_by_hand(fashion, x)
        score = ref["logits"].gather(1, result.classes.view(-1, 1)).sum()
        grads = torch.autograd.grad(score, [ref[n] for n in FASHION_AUTO])
    for name, grad in zip(FASHION_AUTO, grads, strict=True):
        torch.testing.assert_close(result.grads[name], grad, rtol=1e-4, atol=1e-6)


# --- the tap: hooks and memory ---------------------------------------------------------------------------


def test_hooks_removed_after_normal_exit_and_after_exceptions(fashion):
    with tap(fashion, FASHION_AUTO) as recorder:
        assert all_hooks(fashion) > 0
        fashion(torch.rand(2, 1, 28, 28))
        assert set(recorder.pooled) == set(FASHION_AUTO)
    assert all_hooks(fashion) == 0 and recorder.pooled == {}
    with pytest.raises(RuntimeError, match="boom"), tap(fashion, FASHION_AUTO, keep_maps=True):
        fashion(torch.rand(2, 1, 28, 28))
        raise RuntimeError("boom")
    assert all_hooks(fashion) == 0
    with pytest.raises(RuntimeError):
        run_tap(fashion, torch.rand(2, 3, 28, 28), FASHION_AUTO, gradient_of="predicted")  # wrong channels
    assert all_hooks(fashion) == 0


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def test_no_graph_and_nothing_kept_across_batches(resnet):
    def batch():
        result = run_tap(resnet, torch.rand(2, 3, 32, 32), RESNET_TAPPED, gradient_of="predicted")
        tensors = [result.logits, result.classes, *result.pooled.values(), *result.maps.values(),
                   *result.grads.values()]
        assert all(t.grad_fn is None and not t.requires_grad for t in tensors)

    for _ in range(3):
        batch()
    before = live_tensors()
    for _ in range(8):
        batch()
    assert live_tensors() == before
    assert all_hooks(resnet) == 0


# --- the command -----------------------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as end:
        main(list(args))
    out = capsys.readouterr()
    return end.value.code, out.out, out.err


def test_layers_command_on_the_demo_weights(capsys):
    weights = str(ASSETS / "fashion_cnn.safetensors")
    code, out, err = run_cli(capsys, "layers", weights, "--arch", ARCH)
    assert code == 0, err
    marked = [line.split()[1] for line in out.splitlines() if "✓" in line]
    assert marked == FASHION_AUTO
    assert "32x28x28" in out and "classifier.3" in out and "picks 5 layer(s)" in out
    code, out, err = run_cli(capsys, "layers", weights, "--arch", ARCH, "--layers", "features.3,featurs.5")
    assert code == 2 and err.count("\n") == 1 and "did you mean features.5" in err
