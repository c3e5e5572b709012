"""Vision transformers inside the per-layer analyses: `--layers auto` picks the blocks and the final norm, token
outputs are pooled by the model's own rule, and saliency maps come from the patch tokens on their grid.

Micro models built offline (timm, Hugging Face, torchvision through the door); every number is checked against
a separately written computation: the model's own head applied to the pooled vector, and a hand-written
Grad-CAM from a hook of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from audit.analyses.layers import auto_choice, auto_layers, candidate_layers, token_layout
from audit.analyses.saliency.analysis import SaliencyAnalysis
from audit.analyses.suite import NO_PATCH_GRADIENT, AnalysisSuite, choose_layers
from audit.options import parse_layers
from audit.analyses.tap import TokenLayout, first_tensor, on_grid, pool, run_tap
from audit.model import AuditedModel
from audit.model.torchvision_door import import_torchvision

MICRO = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2, "num_classes": 10}


def _timm():
    import_torchvision()  # timm imports torchvision; on this CPU torch it needs the door
    return pytest.importorskip("timm")


def timm_vit(**extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return _timm().models.vision_transformer.VisionTransformer(**{**MICRO, **extra}).eval()


def hf_vit() -> torch.nn.Module:
    import_torchvision()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3,
                                    num_attention_heads=2, intermediate_size=64, num_labels=10)
    return transformers.ViTForImageClassification(config).eval()


def images(n: int = 3, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(dtype)


# --- which layers, which layout ----------------------------------------------------------------------------


def test_auto_picks_timm_blocks_and_the_final_norm():
    net = timm_vit()
    x = images(2)
    layers = candidate_layers(net, x)
    chosen, why = auto_choice(net, x, layers)
    assert [o.name for o in chosen] == ["blocks.0", "blocks.1", "blocks.2", "norm"]
    assert "block of blocks" in why["blocks.1"] and "penultimate" in why["norm"]
    layout = token_layout(net, x, layers)
    assert layout == TokenLayout(net.num_prefix_tokens, tuple(net.patch_embed.grid_size), "class token",
                                 "the model's global_pool is 'token'")


def test_auto_on_a_deep_timm_vit_keeps_twelve_layers_first_and_last_block():
    net = timm_vit(depth=14)
    names = [o.name for o in auto_layers(net, images(2))]
    assert len(names) == 12 and names[0] == "blocks.0" and names[-2:] == ["blocks.13", "norm"]
    assert all(n.startswith("blocks.") for n in names[:-1])


def test_average_pooling_vit_with_register_tokens():
    net = timm_vit(global_pool="avg", reg_tokens=2)
    x = images(2)
    assert [o.name for o in auto_layers(net, x)] == ["blocks.0", "blocks.1", "blocks.2", "fc_norm"]
    layout = token_layout(net, x)
    assert (layout.prefix, layout.grid, layout.pooling) == (3, (4, 4), "mean of patch tokens")
    assert layout.prefix == net.num_prefix_tokens


def test_auto_picks_hugging_face_layers_and_layernorm():
    net = AuditedModel(hf_vit(), None, None)  # the logits out of the ModelOutput
    x = images(2)
    layers = candidate_layers(net, x)
    assert [o.name for o in auto_layers(net, x, layers)] == ["vit.layers.0", "vit.layers.1", "vit.layers.2",
                                                              "vit.layernorm"]
    layout = token_layout(net, x, layers)
    assert (layout.prefix, layout.grid, layout.pooling) == (1, (4, 4), "class token")


def test_auto_picks_torchvision_encoder_layers_and_ln():
    from audit.model.torchvision_door import models

    torch.manual_seed(0)
    net = models().VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32,
                                     mlp_dim=64, num_classes=10).eval()
    x = images(2)
    names = [o.name for o in auto_layers(net, x)]
    assert names == [f"encoder.layers.encoder_layer_{i}" for i in range(3)] + ["encoder.ln"]
    layout = token_layout(net, x)
    assert (layout.prefix, layout.grid, layout.pooling) == (1, (4, 4), "class token")
    # the pooled final norm is exactly what the model's head reads
    result = run_tap(net, x, ["encoder.ln"], layout=layout)
    torch.testing.assert_close(net.heads(result.pooled["encoder.ln"]), result.logits, rtol=0, atol=1e-6)


def test_cnn_has_no_token_layout():
    from audit.model.torchvision_door import models

    net = models().resnet18(num_classes=3).eval()
    assert token_layout(net, images(2)) is None


# --- pooling: the model's own rule -------------------------------------------------------------------------


@pytest.mark.parametrize("extra, last", [({}, "norm"), ({"global_pool": "avg", "reg_tokens": 2}, "fc_norm")])
def test_pooled_final_layer_is_what_the_timm_head_reads(extra, last):
    net = timm_vit(**extra)
    x = images()
    layout = token_layout(net, x)
    result = run_tap(net, x, ["blocks.1", last], layout=layout)
    torch.testing.assert_close(net.head(result.pooled[last]), result.logits, rtol=0, atol=1e-6)
    seen = {}
    handle = net.blocks[1].register_forward_hook(lambda m, i, o: seen.setdefault("out", o.detach()))
    with torch.no_grad():
        net(x)
    handle.remove()
    tokens = seen["out"]
    prefix = net.num_prefix_tokens
    expected = tokens[:, 0] if not extra else tokens[:, prefix:].mean(dim=1)
    torch.testing.assert_close(result.pooled["blocks.1"], expected, rtol=0, atol=0)
    assert result.pooling == {"blocks.1": "class token" if not extra else "mean of patch tokens",
                              last: "class token" if not extra else "as is"}


def test_pooled_hugging_face_layernorm_is_what_the_classifier_reads():
    hf = hf_vit()
    net = AuditedModel(hf, None, None)
    x = images()
    result = run_tap(net, x, ["vit.layernorm"], layout=token_layout(net, x))
    torch.testing.assert_close(hf.classifier(result.pooled["vit.layernorm"]), result.logits, rtol=0, atol=1e-6)


def test_without_a_layout_tokens_are_averaged():
    out = torch.arange(2 * 5 * 3, dtype=torch.float64).reshape(2, 5, 3)
    torch.testing.assert_close(pool(out), out.mean(dim=1))
    layout = TokenLayout(1, (2, 2), "class token")
    torch.testing.assert_close(pool(out, layout), out[:, 0])
    torch.testing.assert_close(pool(out[:, 1:], layout), out[:, 1:].mean(dim=1))  # patch tokens only
    torch.testing.assert_close(pool(out[:, :3], layout), out[:, :3].mean(dim=1))  # tokens of no known layout


def test_on_grid_lays_patch_tokens_row_major():
    n, (h, w), d = 2, (2, 3), 4
    tokens = torch.randn(n, 1 + h * w, d)
    grid = on_grid(tokens, TokenLayout(1, (h, w), "class token"))
    assert grid.shape == (n, d, h, w)
    for i in range(h):
        for j in range(w):
            torch.testing.assert_close(grid[:, :, i, j], tokens[:, 1 + i * w + j])
    conv_map = torch.randn(n, d, h, w)
    assert on_grid(conv_map, TokenLayout(1, (h, w), "class token")) is conv_map


# --- saliency maps: a hand-written Grad-CAM over the patch-token grid ------------------------------------------


def hand_gradcam(net: torch.nn.Module, block: torch.nn.Module, x: torch.Tensor, prefix: int, grid) -> torch.Tensor:
    """Grad-CAM of each image's predicted logit over ``block``'s patch tokens, by a separate literal route."""
    kept = []

    def hook(_module, _inputs, output):
        tensor = output[0] if isinstance(output, tuple) else output
        tensor.retain_grad()
        kept.append(tensor)

    handle = block.register_forward_hook(hook)
    try:
        logits = net(x.clone().requires_grad_(True))
    finally:
        handle.remove()
    logits = getattr(logits, "logits", logits)
    logits[torch.arange(len(x)), logits.argmax(1)].sum().backward()
    tokens, grads = kept[0].detach(), kept[0].grad
    h, w = grid
    cams = []
    for i in range(len(x)):
        a = tokens[i, prefix:].T.reshape(-1, h, w)  # (D, h, w): token p = r * w + c sits at (r, c)
        g = grads[i, prefix:].T.reshape(-1, h, w)
        weights = g.mean(dim=(1, 2))
        cams.append(torch.relu((weights[:, None, None] * a).sum(dim=0)))
    return torch.stack(cams)


def suite_maps(net: torch.nn.Module, x: torch.Tensor, layers: list[str]):
    """The suite the runner builds for these layers (their token layout from the hooked forward that chose them),
    and its tapped pass of ``x``."""
    chosen = choose_layers(parse_layers(",".join(layers)), net, x[:2])
    suite = AnalysisSuite(layers, [SaliencyAnalysis(layers, 10, method="gradcam")], layout=chosen.layout,
                          shapes=chosen.shapes)
    return suite, suite.tap(net, x, "clean_forward")


@pytest.mark.parametrize("which", ["timm", "hf"])
def test_block_saliency_equals_hand_written_gradcam(which):
    if which == "timm":
        net = timm_vit().double()
        names, block = ["blocks.0", "blocks.1", "blocks.2", "norm"], lambda n: n.blocks[1]
        audited = net
    else:
        hf = hf_vit().double()
        net, audited = hf, AuditedModel(hf, None, None)
        names, block = ["vit.layers.0", "vit.layers.1", "vit.layers.2", "vit.layernorm"], lambda n: n.vit.layers[1]
    x = images(4, dtype=torch.float64)
    suite, result = suite_maps(audited, x, names)
    assert suite.layout is not None and suite.layout.grid == (4, 4)
    expected = hand_gradcam(net, block(net), x, suite.layout.prefix, suite.layout.grid)
    assert expected.abs().max() > 1e-3  # a map with something in it
    torch.testing.assert_close(result.maps[names[1]].double(), expected, rtol=1e-5, atol=1e-6)
    # the last block and the final norm: only the class token reaches the head, so their patch tokens get no
    # gradient and they have no gradient map (said why), while the first block has one
    assert names[0] in result.maps and names[2] not in result.maps and names[3] not in result.maps
    assert result.unmapped == {names[2]: NO_PATCH_GRADIENT, names[3]: NO_PATCH_GRADIENT}
    section = suite.section()
    assert [e["pooling"] for e in section["per_layer"]] == ["class token"] * 4
    assert section["tokens"]["grid"] == [4, 4] and section["per_layer"][1]["prefix_tokens"] == 1


def test_average_pooling_vit_has_gradient_maps_up_to_the_last_block():
    net = timm_vit(global_pool="avg", reg_tokens=2).double()
    x = images(3, dtype=torch.float64)
    suite, result = suite_maps(net, x, ["blocks.1", "blocks.2", "fc_norm"])
    assert set(result.maps) == {"blocks.1", "blocks.2"} and not result.unmapped
    expected = hand_gradcam(net, net.blocks[2], x, 3, (4, 4))
    torch.testing.assert_close(result.maps["blocks.2"].double(), expected, rtol=1e-5, atol=1e-6)
    assert [e["pooling"] for e in suite.section()["per_layer"]] == ["mean of patch tokens"] * 2 + ["as is"]


# --- blocks that return a tuple (Hugging Face layers before transformers 5) -------------------------------------


class TupleBlock(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm, self.fc1, self.fc2 = torch.nn.LayerNorm(d), torch.nn.Linear(d, 2 * d), torch.nn.Linear(2 * d, d)

    def forward(self, t):
        mixed = t + t.mean(dim=1, keepdim=True)  # every token sees every other
        return (mixed + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(mixed)))), None)


class TupleViT(torch.nn.Module):
    def __init__(self, d: int = 16):
        super().__init__()
        self.proj = torch.nn.Conv2d(3, d, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, d))
        self.layer = torch.nn.ModuleList(TupleBlock(d) for _ in range(3))
        self.norm, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, 10)

    def forward(self, x):
        t = self.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        for block in self.layer:
            t = block(t)[0]
        return self.head(self.norm(t)[:, 0])


def test_blocks_returning_tuples_are_listed_tapped_and_mapped():
    torch.manual_seed(0)
    net = TupleViT().double().eval()
    x = images(3, dtype=torch.float64)
    layers = candidate_layers(net, x)
    assert [o.name for o in auto_layers(net, x, layers)] == ["layer.0", "layer.1", "layer.2", "norm"]
    assert token_layout(net, x, layers) == TokenLayout(1, (4, 4), "class token",
                                                       "1 prefix token: the head reads the class token")
    suite, result = suite_maps(net, x, ["layer.0", "layer.1"])
    with torch.no_grad():
        torch.testing.assert_close(result.logits, net(x))  # the rebuilt tuple carried the forward on
    torch.testing.assert_close(result.maps["layer.1"].double(), hand_gradcam(net, net.layer[1], x, 1, (4, 4)),
                               rtol=1e-5, atol=1e-6)


def test_first_tensor_puts_a_replacement_back_in_its_container():
    t, other = torch.zeros(2, 3), torch.ones(1)
    for output in ((t, other), [t, other], {"hidden": t, "extra": other}):
        found, rebuild = first_tensor(output)
        assert found is t
        new = rebuild(other)
        assert type(new) is type(output)
        if isinstance(new, dict):
            assert new["hidden"] is other and new["extra"] is other and list(new) == ["hidden", "extra"]
        else:
            assert new[0] is other and new[1] is other and len(new) == 2
    transformers = pytest.importorskip("transformers")
    out = transformers.modeling_outputs.BaseModelOutput(last_hidden_state=t)
    found, rebuild = first_tensor(out)
    assert found is t and rebuild(other).last_hidden_state is other
    assert first_tensor((None, t))[0] is None and first_tensor("text")[0] is None


# --- end to end: `python -m audit run` on a micro timm ViT saved as safetensors ------------------------------


def test_audit_run_on_a_timm_vit_reports_both_analyses_per_block(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    kwargs = {"img_size": 28, "patch_size": 4, "in_chans": 1, "depth": 3, "embed_dim": 32, "num_heads": 2,
              "num_classes": 10}
    torch.manual_seed(0)
    net = _timm().models.vision_transformer.VisionTransformer(**kwargs)
    weights = tmp_path / "vit.safetensors"
    safetensors.save_file(net.state_dict(), str(weights))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(weights), "--arch", "timm.models.vision_transformer:VisionTransformer",
         "--arch-kwargs", json.dumps(kwargs), "--data", "demo", "--classes", "fashion-mnist", "--samples", "40",
         "--attack", "fgsm", "--eps", "0.1", "--out", str(tmp_path / "out"), "--no-html", "--no-checks"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    tap = report["analyses"]["tap"]
    assert tap["layers"] == ["blocks.0", "blocks.1", "blocks.2", "norm"]
    assert tap["tokens"] == {"prefix_tokens": 1, "grid": [7, 7], "pooling": "class token",
                             "why": "the model's global_pool is 'token'"}
    assert [e["pooling"] for e in tap["per_layer"]] == ["class token"] * 4
    saliency = report["analyses"]["saliency"]
    assert [layer["name"] for layer in saliency["layers"]] == ["blocks.0", "blocks.1"]
    assert all(layer["map_size"] == [7, 7] and layer["clean"]["n"] == 40 for layer in saliency["layers"])
    assert {s["name"] for s in saliency["skipped_layers"]} == {"blocks.2", "norm"}
    semantics = report["analyses"]["semantics"]
    assert [layer["name"] for layer in semantics["layers"]] == ["blocks.0", "blocks.1", "blocks.2", "norm"]
    assert "Saliency entropy" in proc.stdout and "blocks.0" in proc.stdout
    from reports.html.panels import metadata
    from reports.schema import validate_report

    validate_report(report, "report.json")
    tap_rows = dict(dict(metadata(report))["Layer tap"])
    assert tap_rows["pooled: blocks.0"] == "class token (1 prefix token(s), 7x7 patch grid)"
    assert tap_rows["token layout"] == ("1 prefix token(s), 7x7 patch grid; pooled by the class token "
                                        "(the model's global_pool is 'token')")


def test_tokens_without_a_grid_are_skipped_by_saliency_and_say_why():
    class Tokens(torch.nn.Module):  # a token model with no convolution: no patch grid to lay tokens on
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(3 * 8 * 8, 16)
            self.mix = torch.nn.Linear(16, 16)
            self.head = torch.nn.Linear(16, 10)

        def forward(self, x):
            t = self.embed(x.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2))
            return self.head(torch.relu(self.mix(t)).mean(dim=1))

    torch.manual_seed(0)
    net = Tokens().eval()
    x = images(2)
    assert token_layout(net, x) is None
    suite, result = suite_maps(net, x, ["mix"])
    assert result.maps == {} and result.unmapped == {"mix": "no spatial map (tokens (N, T, D) with no known patch grid)"}
    assert suite.section()["per_layer"] == [{"name": "mix", "output": [16, 16], "pooling": "mean of tokens"}]
    torch.testing.assert_close(result.pooled["mix"], net.mix(net.embed(
        x.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2))).mean(dim=1))


def test_layers_command_explains_a_vit(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    weights = tmp_path / "vit.safetensors"
    safetensors.save_file(timm_vit().state_dict(), str(weights))
    proc = subprocess.run(
        [sys.executable, "-m", "audit", "layers", str(weights), "--arch",
         "timm.models.vision_transformer:VisionTransformer", "--arch-kwargs", json.dumps(MICRO), "--input-size", "32"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "240"}, timeout=300,
        check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert "--layers auto picks 4 layer(s)" in out
    assert "tokens: 1 prefix token(s) then 4x4 patch tokens" in out and "pooled by the class token" in out
    assert "blocks.1: block of blocks (3 of 3 kept)" in out and "norm: penultimate: what the classifier head (head) reads" in out
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 4}
    assert "✓" in rows["blocks.1"] and "✓" in rows["norm"] and "class token" in rows["norm"]
    assert "✓" not in rows["blocks.1.attn.qkv"] and "as is" in rows["head"]
