"""Exact tests of issue 19's model-source helpers, written from what mutation testing found untested: the
preprocessing merge and its report, the terminal's preprocessing lines, the token layout's pooling and grid, and
the image framing. Each expectation is written out by hand (see docs/mutation.md, "Issue 19's modules")."""

from __future__ import annotations

import pytest
import torch

from audit.analyses.tap import TokenLayout, first_tensor, on_grid, pool, pooling_rule
from audit.engine.preprocessing import Preprocessing, finish_classes, finish_size, settle
from audit.model.declared import Declared
from audit.model.torchvision_door import import_torchvision
from reports.formatting import preprocessing_groups


class _Options:
    def __init__(self, **given):
        for key in ("mean", "std", "input_size", "resize", "crop", "classes"):
            setattr(self, key, given.get(key))


# --- the preprocessing merge -------------------------------------------------------------------------------


def test_report_lists_every_key_in_order_with_tuples_as_lists_and_class_names_by_count():
    settled = Preprocessing()
    settled.record("mean", (0.5, 0.25), "flag")
    settled.record("crop", (6, 7), "timm x")
    settled.record("classes", ["a", "b", "c", "d"], "data")
    assert settled.report() == {
        "mean": {"value": [0.5, 0.25], "source": "flag"},
        "std": {"value": None, "source": "default"},
        "input_size": {"value": None, "source": "default"},
        "resize": {"value": None, "source": "default"},
        "crop": {"value": [6, 7], "source": "timm x"},
        "interpolation": {"value": "bilinear", "source": "default"},
        "classes": {"value": 4, "source": "data"},
    }
    assert list(settled.report()) == ["mean", "std", "input_size", "resize", "crop", "interpolation", "classes"]


def test_settle_copies_flag_class_names_and_names_the_declared_source_when_classes_have_none():
    names = ("cat", "dog")
    settled = settle(_Options(classes=names, resize=40), "bicubic", None)
    assert settled.classes == ["cat", "dog"] and isinstance(settled.classes, list)
    assert settled.sources == {"resize": "flag", "interpolation": "flag", "classes": "flag"}
    assert (settled.resize, settled.interpolation, settled.mean) == (40, "bicubic", None)
    declared = Declared(source="hf folder", mean=(0.5,), classes=("x", "y", "z"))  # no classes_source
    from_model = settle(_Options(), None, declared)
    assert from_model.classes == ["x", "y", "z"] and isinstance(from_model.classes, list)
    assert from_model.sources == {"mean": "hf folder", "classes": "hf folder"}
    assert from_model.interpolation == "bilinear" and "interpolation" not in from_model.sources


def test_finish_keeps_a_size_and_class_names_already_settled():
    settled = settle(_Options(input_size=(20, 24), classes=["a", "b"]), None, None)
    finish_size(settled, (28, 28), (28, 28))
    finish_classes(settled, ["x", "y"], "data")
    assert (settled.input_size, settled.sources["input_size"]) == ((20, 24), "flag")
    assert (settled.classes, settled.sources["classes"]) == (["a", "b"], "flag")
    named = ("p", "q")
    bare = settle(_Options(), None, None)
    finish_size(bare, [30, 31], None)
    finish_classes(bare, named, "imagenet-1k names")
    assert bare.input_size == (30, 31) and bare.sources["input_size"] == "model"
    assert bare.classes == ["p", "q"] and bare.sources["classes"] == "imagenet-1k names"


# --- the terminal's preprocessing lines ----------------------------------------------------------------------


def test_preprocessing_groups_word_for_word():
    preprocessing = {
        "mean": {"value": [0.485, 0.456, 0.406], "source": "timm pretrained_cfg of resnet18"},
        "std": {"value": [0.229, 0.224, 0.225], "source": "timm pretrained_cfg of resnet18"},
        "input_size": {"value": [224, 200], "source": "flag"},
        "resize": {"value": 256, "source": "timm pretrained_cfg of resnet18"},
        "crop": {"value": [224, 224], "source": "timm pretrained_cfg of resnet18"},
        "interpolation": {"value": "bicubic", "source": "timm pretrained_cfg of resnet18"},
        "classes": {"value": 1000, "source": "data"},
    }
    assert preprocessing_groups(preprocessing) == [
        ("timm pretrained_cfg of resnet18",
         "mean 0.485,0.456,0.406, std 0.229,0.224,0.225, resize 256, crop 224×224, bicubic"),
        ("flag", "input 224×200"),
        ("data", "1000 class names"),
    ]


def test_preprocessing_groups_leave_out_unset_values_and_read_a_missing_source_as_default():
    preprocessing = {
        "mean": {"value": None, "source": "default"},
        "std": "not an entry",
        "interpolation": {"value": "nearest"},
        "resize": {"value": 0, "source": "flag"},
        "input_size": {"value": "28x28", "source": "flag"},  # not a list: written as it is
    }
    assert preprocessing_groups(preprocessing) == [("default", "nearest"), ("flag", "resize 0, input 28x28")]
    odd = {"mean": {"value": 0.5, "source": "a stored report"}, "resize": {"value": [256], "source": "a stored report"}}
    assert preprocessing_groups(odd) == [("a stored report", "mean 0.5, resize [256]")]  # as stored, not as lists
    assert preprocessing_groups(None) == [] and preprocessing_groups({}) == []


# --- token layout, pooling and the patch grid ------------------------------------------------------------------


def test_prefix_of_and_as_dict():
    layout = TokenLayout(2, (3, 4), "class token", "why")
    assert [layout.prefix_of(t) for t in (14, 12, 13, 15, 2, 0)] == [2, 0, None, None, None, None]
    assert layout.as_dict() == {"prefix_tokens": 2, "grid": [3, 4], "pooling": "class token", "why": "why"}
    assert TokenLayout(0, (2, 2), "mean of patch tokens").as_dict()["why"] == ""


def test_pooling_rule_of_every_shape():
    cls = TokenLayout(1, (4, 4), "class token")
    mean = TokenLayout(1, (4, 4), "mean of patch tokens")
    assert pooling_rule((8, 4, 4)) == pooling_rule((8, 2, 2, 2), cls) == "global average"
    assert pooling_rule((10,), cls) == pooling_rule((), cls) == "as is"
    assert pooling_rule((17, 32), cls) == "class token"
    assert pooling_rule((16, 32), cls) == "mean of patch tokens"  # patch tokens only: no class token to read
    assert pooling_rule((17, 32), mean) == "mean of patch tokens"
    assert pooling_rule((5, 32), cls) == pooling_rule((17, 32)) == "mean of tokens"


def test_pool_by_hand():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2).requires_grad_()
    pooled = pool(x)
    expected = [[sum(range(4 * c, 4 * c + 4)) / 4 + 12 * n for c in range(3)] for n in range(2)]
    assert pooled.tolist() == expected and not pooled.requires_grad
    five = torch.arange(2 * 2 * 8, dtype=torch.float64).reshape(2, 2, 2, 2, 2)
    assert pool(five).tolist() == [[3.5, 11.5], [19.5, 27.5]]
    tokens = torch.arange(2 * 7 * 2, dtype=torch.float64).reshape(2, 7, 2)  # 3 prefix tokens + a 2x2 grid
    layout = TokenLayout(3, (2, 2), "mean of patch tokens")
    assert pool(tokens, layout).tolist() == [[9.0, 10.0], [23.0, 24.0]]  # tokens 3..6 of each image
    assert pool(tokens, TokenLayout(3, (2, 2), "class token")).tolist() == [[0.0, 1.0], [14.0, 15.0]]
    flat = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert pool(flat).tolist() == [[1.0, 2.0], [3.0, 4.0]] and not pool(flat).requires_grad
    assert pool(torch.tensor([5.0, 6.0])).tolist() == [[5.0], [6.0]]


def test_on_grid_leaves_what_is_no_layout_token_output_and_drops_any_prefix():
    tokens = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    layout = TokenLayout(2, (2, 2), "class token")
    assert on_grid(None, layout) is None and on_grid(tokens, None) is tokens
    five = tokens[:, :5]  # 5 tokens: neither 2 + 2*2 nor 2*2
    assert on_grid(five, layout) is five
    grid = on_grid(tokens, layout)
    assert grid.shape == (2, 3, 2, 2) and grid[1, 2].tolist() == [[26.0, 29.0], [32.0, 35.0]]
    patches = on_grid(tokens[:, 2:], layout)  # patch tokens only
    assert torch.equal(patches, grid)
    flat = torch.zeros(2, 3)
    assert on_grid(flat, layout) is flat


def test_first_tensor_of_named_tuples_empty_and_non_tensor_containers():
    from collections import namedtuple

    t, other = torch.zeros(2), torch.ones(2)
    found, rebuild = first_tensor(t)
    assert found is t and rebuild(other) is other
    Pair = namedtuple("Pair", "hidden extra")
    found, rebuild = first_tensor(Pair(t, 7))
    assert found is t and rebuild(other) == Pair(other, 7) and type(rebuild(other)) is Pair
    for output in ((), [], {}, {"a": 1, "b": t}, (1, t), [None, t]):
        found, rebuild = first_tensor(output)
        assert found is None and rebuild(other) is other


# --- torchvision weights enums -----------------------------------------------------------------------------------


def _enum(name: str, transforms, meta: dict):
    """A torchvision weights enum of one member V1 (no url: nothing can be fetched)."""
    from torchvision.models._api import Weights, WeightsEnum

    return WeightsEnum(name, {"V1": Weights(url="", transforms=transforms, meta=meta)}).V1


def test_weights_without_antialias_lanczos_and_no_categories():
    from functools import partial

    import_torchvision()

    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    from audit.model.weights_meta import declared_by_weights

    transforms = partial(ImageClassification, crop_size=30, resize_size=40, mean=(0.5, 0.25, 0.125),
                         std=(1, 2, 4), interpolation=InterpolationMode.LANCZOS, antialias=False)
    declared = declared_by_weights(_enum("Micro_Weights", transforms, {}))
    assert declared == Declared(
        source="torchvision Micro_Weights.V1; its resize without antialiasing is not reproduced",
        mean=(0.5, 0.25, 0.125), std=(1.0, 2.0, 4.0), input_size=(30, 30), resize=40, crop=(30, 30),
        interpolation=None, classes=None, classes_source=None)
    assert all(type(v) is float for v in declared.std)


class _Transform:
    """A transform with an image classifier's attributes, no ``antialias``, a resize to two sides, no crop."""

    resize_size, crop_size, mean, std = [36, 40], [], [0.5], [0.5]

    def __init__(self):
        import_torchvision()
        from torchvision.transforms import InterpolationMode

        self.interpolation = InterpolationMode.BICUBIC


def test_weights_whose_transform_has_no_antialias_and_no_single_crop():
    from audit.model.weights_meta import declared_by_weights

    declared = declared_by_weights(_enum("Other_Weights", _Transform, {"categories": ["a", "b"]}))
    assert declared.source == "torchvision Other_Weights.V1"  # no antialias attribute: antialiased (the default)
    assert (declared.resize, declared.crop, declared.input_size, declared.interpolation) == (None, None, None, "bicubic")
    assert declared.classes == ("a", "b")
    assert declared.classes_source == "torchvision Other_Weights.V1.meta['categories']"


def test_weights_of_another_enum_lists_the_members_word_for_word():
    from audit.errors import AuditError
    from audit.model.weights_meta import weights_member

    with pytest.raises(AuditError) as excinfo:
        weights_member("torchvision.models:resnet18", "ResNet50_Weights.IMAGENET1K_V2")
    assert str(excinfo.value) == ("--weights-meta ResNet50_Weights.IMAGENET1K_V2 names ResNet50_Weights, but --arch "
                                  "torchvision.models:resnet18 takes ResNet18_Weights; give one of IMAGENET1K_V1, "
                                  "DEFAULT")


# --- timm ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm():
    import importlib.util

    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    from audit.model.timm_models import import_timm

    return import_timm("timm:test")


def test_unknown_timm_names_word_for_word(timm):
    from audit.errors import AuditError
    from audit.model.timm_models import timm_factory

    with pytest.raises(AuditError) as excinfo:  # four names are that close: the three closest are named
        timm_factory("timm:resnet5", "resnet5")
    assert str(excinfo.value) == "--arch timm:resnet5: timm has no model 'resnet5'; did you mean resnet50, resnet51q, resnet50t?"
    with pytest.raises(AuditError) as excinfo:  # the tags of resnet18 only, not the close tags of other models
        timm_factory("timm:resnet18.tv_in1x", "resnet18.tv_in1x")
    assert str(excinfo.value) == ("--arch timm:resnet18.tv_in1x: timm's resnet18 has no pretrained tag 'tv_in1x'; "
                                  "did you mean resnet18.tv_in1k, resnet18.a3_in1k, resnet18.a2_in1k?")
    with pytest.raises(AuditError) as excinfo:
        timm_factory("timm:zzqqxx", "zzqqxx")
    assert str(excinfo.value) == "--arch timm:zzqqxx: timm has no model 'zzqqxx'; see timm.list_models() for the names"


def test_a_dotted_attribute_of_timm_is_no_model_name(timm):
    from audit.model.timm_models import timm_factory

    assert timm_factory("timm:data.resolve_data_config", "data.resolve_data_config") is None


def test_timm_models_are_built_without_pretrained_weights(timm, monkeypatch):
    from audit.model.timm_models import timm_factory

    calls = []
    real = timm.create_model

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    network = timm_factory("timm:resnet18", "resnet18")(num_classes=3)
    assert calls == [(("resnet18",), {"pretrained": False, "num_classes": 3})]
    assert network.num_classes == 3


@pytest.mark.parametrize("failure,message", [
    (ModuleNotFoundError("No module named 'timm'"), "--arch timm:x needs the timm package: pip install timm"),
    (RuntimeError("operator torchvision::nms does not exist"),
     "--arch timm:x: importing timm failed (RuntimeError: operator torchvision::nms does not exist)"),
])
def test_a_failed_timm_import_is_one_line_naming_the_arch(monkeypatch, failure, message):
    from audit.errors import AuditError
    from audit.model import timm_models

    def fail(_load):
        raise failure

    monkeypatch.setattr(timm_models, "through_door", fail)
    for call in (lambda: timm_models.import_timm("timm:x"), lambda: timm_models.timm_factory("timm:x", "x")):
        with pytest.raises(AuditError) as excinfo:
            call()
        assert str(excinfo.value) == message


def test_a_timm_feature_extractor_has_no_class_names(timm):
    """num_classes 0 (no head): timm infers the subset from the pretrained_cfg's 1000 classes, but there are no
    class outputs to name."""
    from audit.model.timm_models import declared_by_timm

    network = timm.create_model("resnet18", pretrained=False, num_classes=0)
    assert timm.data.infer_imagenet_subset(network) == "imagenet-1k"
    declared = declared_by_timm(network, {})
    assert declared.classes is None and declared.classes_source is None


def test_a_framing_timm_cannot_reproduce_is_said_word_for_word(timm):
    from audit.model.timm_models import declared_by_timm

    network = timm.create_model("resnet18", pretrained=False, pretrained_cfg_overlay={"crop_mode": "squash",
                                                                                      "crop_pct": 0.9})
    assert declared_by_timm(network, {}).source == (
        "timm pretrained_cfg of resnet18.a1_in1k; its crop_mode 'squash' at crop_pct 0.9 for 224x224 is not "
        "reproduced, images are resized to the input size")


# --- the token layout of a network (audit.analyses.layers) -----------------------------------------------------


class _Block(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(dim, 2 * dim), torch.nn.Linear(2 * dim, dim)

    def forward(self, t):
        return t + self.fc2(torch.relu(self.fc1(t)))


class MicroViT(torch.nn.Module):
    """A 32x32 image as a 4x4 grid of 8x8 patches behind ``prefix`` learned tokens, three blocks, a norm and a
    head reading the first token (or the mean of the patch tokens, or of the first ``keep`` patch tokens)."""

    def __init__(self, prefix: int = 1, mean: bool = False, keep: int = 16, dim: int = 8):
        super().__init__()
        self.prefix, self.mean, self.keep = prefix, mean, keep
        self.proj = torch.nn.Conv2d(3, dim, 8, stride=8)
        self.tokens = torch.nn.Parameter(torch.randn(1, prefix, dim))
        self.blocks = torch.nn.Sequential(*(_Block(dim) for _ in range(3)))
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, 5)

    def forward(self, x):
        t = self.proj(x).flatten(2).transpose(1, 2)[:, : self.keep]
        t = self.norm(self.blocks(torch.cat([self.tokens.expand(len(t), -1, -1), t], dim=1)))
        return self.head(t[:, self.prefix:].mean(dim=1) if self.mean else t[:, 0])


def _layout(net, **attributes):
    from audit.analyses.layers import token_layout

    torch.manual_seed(0)
    for key, value in attributes.items():
        setattr(net, key, value)
    return token_layout(net.eval(), torch.rand(2, 3, 32, 32))


@pytest.mark.parametrize("prefix,expected", [
    (1, TokenLayout(1, (4, 4), "class token", "1 prefix token: the head reads the class token")),
    (2, TokenLayout(2, (4, 4), "class token", "2 prefix tokens: the head reads the class token")),
    (15, TokenLayout(15, (4, 4), "class token", "15 prefix tokens: the head reads the class token")),
    (0, TokenLayout(0, (4, 4), "mean of patch tokens", "no prefix token")),
    (16, None),  # as many prefix tokens as patches: no layout the rule accepts
])
def test_token_layout_of_prefix_tokens(prefix, expected):
    assert _layout(MicroViT(prefix, mean=prefix == 0)) == expected


def test_token_layout_needs_every_patch_token():
    assert _layout(MicroViT(0, mean=True, keep=10)) is None  # 10 tokens on a 4x4 grid


def test_token_layout_checks_a_declared_prefix_count():
    assert _layout(MicroViT(2), num_prefix_tokens=1) is None
    assert _layout(MicroViT(2), num_prefix_tokens=2) == TokenLayout(
        2, (4, 4), "class token", "2 prefix tokens: the head reads the class token")


@pytest.mark.parametrize("pool,prefix,rule", [
    ("token", 1, "class token"),
    ("token", 0, "mean of patch tokens"),  # no class token to read
    ("avg", 1, "mean of patch tokens"),
    ("", 1, "mean of patch tokens"),
])
def test_a_timm_style_global_pool_decides_the_rule(pool, prefix, rule):
    layout = _layout(MicroViT(prefix, mean=rule != "class token"), global_pool=pool, num_prefix_tokens=prefix)
    assert layout == TokenLayout(prefix, (4, 4), rule, f"the model's global_pool is {pool!r}")


def test_a_global_pool_without_prefix_token_count_is_not_timms():
    layout = _layout(MicroViT(1), global_pool="avg")
    assert layout.why == "1 prefix token: the head reads the class token"


def test_a_hugging_face_config_with_use_mean_pooling():
    transformers = pytest.importorskip("transformers")
    import_torchvision()
    torch.manual_seed(0)
    config = transformers.BeitConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=3,
                                     num_attention_heads=2, intermediate_size=32, num_labels=5,
                                     use_mean_pooling=True)
    from audit.model import AuditedModel

    net = AuditedModel(transformers.BeitForImageClassification(config).eval(), None, None)
    assert _layout(net) == TokenLayout(1, (4, 4), "mean of patch tokens", "the model's config sets use_mean_pooling")


# --- Hugging Face folders: what a folder declares, its weight files, its one-line refusals ------------------------


HF_PRE = "Hugging Face preprocessor_config.json"


@pytest.mark.parametrize("processor,image_size,expected", [
    # (input_size, resize, crop, source after the processor's name)
    ({"do_resize": False, "do_center_crop": True, "crop_size": 200, "size": 300}, 64, ((200, 200), None, (200, 200), "")),
    ({"do_resize": False, "size": 300}, 64, ((64, 64), None, None, "")),
    ({"size": 300}, 64, ((300, 300), None, None, "")),
    ({"size": 300, "do_center_crop": True, "crop_size": 200}, 64, ((200, 200), 300, (200, 200), "")),
    ({"size": 300, "crop_size": 200}, 64, ((300, 300), None, None, "")),  # a crop_size without do_center_crop
    ({"size": {"height": 256, "width": 320}, "do_center_crop": True, "crop_size": [224, 224]}, 64,
     ((224, 224), 256, (224, 224), " (its 256x320 resize before the crop taken as the short side 256, the aspect "
                                   "ratio kept)")),
    ({"size": {"shortest_edge": 1}}, 64, ((64, 64), 1, None, "")),
    ({"size": {"shortest_edge": 0}}, 64, ((64, 64), None, None,
                                          " (size {'shortest_edge': 0} not supported (only height/width or shortest_edge))")),
    ({"size": {"shortest_edge": 0}, "do_center_crop": True, "crop_size": 20}, 64, ((20, 20), None, (20, 20),
     " (size {'shortest_edge': 0} not supported (only height/width or shortest_edge))")),
    ({"size": {"shortest_edge": True}}, 64, ((64, 64), None, None,
                                             " (size {'shortest_edge': True} not supported (only height/width or "
                                             "shortest_edge))")),
    ({"size": {"shortest_edge": "224"}}, 64, ((64, 64), None, None,
                                              " (size {'shortest_edge': '224'} not supported (only height/width or "
                                              "shortest_edge))")),
    ({"size": {"shortest_edge": 224, "longest_edge": 1333}}, 64, ((64, 64), None, None,
     " (size {'shortest_edge': 224, 'longest_edge': 1333} not supported (only height/width or shortest_edge))")),
    ({"size": [1, 2, 3]}, 64, ((64, 64), None, None, " (size [1, 2, 3] not supported (only height/width or "
                                                     "shortest_edge))")),
    ({"size": {"shortest_edge": 224}, "do_center_crop": True, "crop_size": 200}, 32,
     ((200, 200), 224, (200, 200), "")),
    # crop_pct: ConvNeXt's processors only, whichever key names the type
    ({"feature_extractor_type": "ConvNextFeatureExtractor", "size": {"shortest_edge": 224}, "crop_pct": 0.875}, 64,
     ((224, 224), 256, (224, 224), "")),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": 1}, 64,
     ((224, 224), 224, (224, 224), "")),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": 0}, 64,
     ((64, 64), 224, None, " (crop_pct 0 of ConvNextImageProcessor not applied)")),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": 1.5}, 64,
     ((64, 64), 224, None, " (crop_pct 1.5 of ConvNextImageProcessor not applied)")),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": "0.875"}, 64,
     ((64, 64), 224, None, " (crop_pct 0.875 of ConvNextImageProcessor not applied)")),
    ({"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": 0.9}, 64,
     ((64, 64), 224, None, " (crop_pct 0.9 of ViTImageProcessor not applied)")),
    ({"size": {"shortest_edge": 224}, "crop_pct": 0.9, "resample": 7}, 64,
     ((64, 64), 224, None, " (crop_pct 0.9 of this processor not applied; resample 7 unknown, not declared)")),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 256}, "crop_pct": 0.875,
      "do_center_crop": True, "crop_size": 224}, 64, ((224, 224), 256, (224, 224), "")),  # a crop: no crop_pct
])
def test_hugging_face_framing(processor, image_size, expected):
    from audit.model.huggingface import declared_from

    declared = declared_from({"image_size": image_size}, processor)
    assert (declared.input_size, declared.resize, declared.crop, declared.source) == (*expected[:3],
                                                                                       HF_PRE + expected[3])


@pytest.mark.parametrize("resample,expected,note", [
    (3, "bicubic", ""), ("3", None, ""), (True, None, ""), (None, None, ""),
    (1, "bicubic", " (resample 1 (Lanczos) as bicubic)"), (7, None, " (resample 7 unknown, not declared)"),
])
def test_hugging_face_resample_codes(resample, expected, note):
    from audit.model.huggingface import declared_from

    declared = declared_from({}, {"resample": resample})
    assert (declared.interpolation, declared.source) == (expected, HF_PRE + note)


@pytest.mark.parametrize("image_size,expected", [
    (0, None), (1, (1, 1)), (-3, None), (True, None), ([224, 200], (224, 200)), ([224, 0], None), ([224, 1], (224, 1)),
    ([0.5, 2], None), ([2, 2, 2], None), ({"height": 20, "width": 30}, (20, 30)), ({"height": 20}, None),
])
def test_hugging_face_image_size(image_size, expected):
    from audit.model.huggingface import declared_from

    assert declared_from({"image_size": image_size}, None).input_size == expected


def test_hugging_face_normalization_by_hand():
    from audit.model.huggingface import declared_from

    def norm(processor, **config):
        declared = declared_from(config, processor)
        return declared.mean, declared.std

    assert norm({}) == ((0.5,) * 3, (0.5,) * 3)  # the processor's defaults
    assert norm({"image_mean": [0.5, 0.25, 0.125], "image_std": [1, 2, 4]}) == ((0.5, 0.25, 0.125), (1.0, 2.0, 4.0))
    assert norm({"image_mean": 0.25, "image_std": 0.5}, num_channels=1) == ((0.25,), (0.5,))
    assert norm({"image_mean": 0.25, "image_std": 0.5}, num_channels="1") == ((0.25,) * 3, (0.5,) * 3)
    assert norm({"rescale_factor": 0.00392156862745098}) == ((0.5,) * 3, (0.5,) * 3)  # 1/255 as JSON writes it
    import math

    ulp = math.nextafter(1 / 255, 1)  # 1/255 up to rounding, and 255 * it is not 1.0: taken as 1/255 exactly
    assert 255 * ulp != 1.0 and norm({"rescale_factor": ulp}) == ((0.5,) * 3, (0.5,) * 3)
    near = 1 / 255 * (1 + 1e-10)  # not 1/255: folded as any factor, m / (255 f)
    mean, std = norm({"rescale_factor": near})
    assert mean == pytest.approx((0.5 / (255 * near),) * 3, rel=1e-15) and mean[0] != 0.5
    assert norm({"rescale_factor": 255.0, "do_normalize": False}) == ((0.0,) * 3, (1 / 65025,) * 3)
    assert norm({"rescale_factor": 1 / 127.5, "rescale_offset": True, "do_rescale": False,
                 "image_mean": 2.0, "image_std": 4.0}) == ((2 / 255,) * 3, (4 / 255,) * 3)  # no rescale: no offset


@pytest.mark.parametrize("processor,message", [
    ({"rescale_factor": 0}, "preprocessor_config.json has rescale_factor 0.0; expected a positive number"),
    ({"rescale_factor": -1}, "preprocessor_config.json has rescale_factor -1.0; expected a positive number"),
    ({"rescale_factor": float("inf")}, "preprocessor_config.json has rescale_factor inf; expected a positive number"),
    ({"image_mean": "abc"}, "preprocessor_config.json has image_mean 'abc'; expected a number or one number per "
                            "channel"),
    ({"image_mean": []}, "preprocessor_config.json has image_mean []; expected a number or one number per channel"),
    ({"image_std": [0.5, None]}, "preprocessor_config.json has image_std [0.5, None]; expected a number or one "
                                 "number per channel"),
    ({"image_mean": [0.5, 0.5], "image_std": 0.5}, "preprocessor_config.json has image_mean (0.5, 0.5) and "
     "image_std (0.5, 0.5, 0.5): expected one mean and one positive std per channel"),
    ({"image_std": [0.5, 0.0, 0.5]}, "preprocessor_config.json has image_mean (0.5, 0.5, 0.5) and image_std "
     "(0.5, 0.0, 0.5): expected one mean and one positive std per channel"),
])
def test_hugging_face_bad_normalization_word_for_word(processor, message):
    from audit.errors import AuditError
    from audit.model.huggingface import declared_from

    with pytest.raises(AuditError) as excinfo:
        declared_from({}, processor)
    assert str(excinfo.value) == message


def test_hugging_face_class_names_with_and_without_a_processor():
    from audit.model.huggingface import class_names, declared_from

    config = {"id2label": {"0": "cat", "1": "dog"}, "image_size": 32}
    for processor in (None, {}):
        declared = declared_from(config, processor)
        assert (declared.classes, declared.classes_source) == (("cat", "dog"), "config.json id2label")
    declared = declared_from({"image_size": 32}, {})
    assert (declared.classes, declared.classes_source, declared.input_size) == (None, None, (32, 32))
    assert class_names({"id2label": ["cat", "dog"]}) is None and class_names({"id2label": {}}) is None
    assert class_names({"id2label": {"0": "a", "2": "c"}}) is None and class_names({"id2label": {"x": "a"}}) is None


def _files(folder, *names, index=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(name.encode())
    if index is not None:
        (folder / index[0]).write_text(__import__("json").dumps(index[1]))
    return folder


def test_weight_files_in_transformers_order(tmp_path):
    from audit.model.huggingface import weight_files

    shards = {"weight_map": {"a": "s-2.safetensors", "b": "s-1.safetensors", "c": "s-2.safetensors"}}
    folder = _files(tmp_path / "named", "mine.safetensors", "model.safetensors")
    assert weight_files(folder, {"transformers_weights": "mine.safetensors"}) == (["mine.safetensors"], True)
    assert weight_files(folder, {}) == (["model.safetensors"], True)
    folder = _files(tmp_path / "bin", "mine.bin")
    assert weight_files(folder, {"transformers_weights": "mine.bin"}) == (["mine.bin"], False)
    folder = _files(tmp_path / "index", "s-1.safetensors", "s-2.safetensors", index=("my.safetensors.index.json", shards))
    assert weight_files(folder, {"transformers_weights": "my.safetensors.index.json"}) == (
        ["my.safetensors.index.json", "s-1.safetensors", "s-2.safetensors"], True)
    folder = _files(tmp_path / "sharded", "s-1.safetensors", "s-2.safetensors",
                    index=("model.safetensors.index.json", shards))
    assert weight_files(folder, {}) == (["model.safetensors.index.json", "s-1.safetensors", "s-2.safetensors"], True)
    folder = _files(tmp_path / "binshards", "s-1.safetensors", "s-2.safetensors",
                    index=("pytorch_model.bin.index.json", shards))
    assert weight_files(folder, {}) == (["pytorch_model.bin.index.json", "s-1.safetensors", "s-2.safetensors"], False)


def test_weight_files_refusals_word_for_word(tmp_path):
    from audit.errors import AuditError
    from audit.model.huggingface import weight_files

    folder = _files(tmp_path / "f", "model.safetensors")
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    cases = [
        ({"transformers_weights": "../outside.safetensors"},
         f"{folder}/config.json names the weights file '../outside.safetensors', which is not a file in {folder}"),
        ({"transformers_weights": "missing.safetensors"},
         f"{folder}/config.json names the weights file 'missing.safetensors', which is not a file in {folder}"),
    ]
    empty = _files(tmp_path / "empty")
    index = _files(tmp_path / "index", "s-1.safetensors", index=("model.safetensors.index.json", {"weight_map": {}}))
    escape = _files(tmp_path / "escape", index=("model.safetensors.index.json",
                                                {"weight_map": {"a": "../outside.safetensors"}}))
    missing = _files(tmp_path / "missing", index=("model.safetensors.index.json", {"weight_map": {"a": "s-9.bin"}}))
    listed = _files(tmp_path / "list", index=("model.safetensors.index.json", [1, 2]))
    for config, where, message in [
        *((config, folder, message) for config, message in cases),
        ({}, empty, f"{empty} has config.json but no weights (model.safetensors, model.safetensors.index.json with "
                    "its shards, or pytorch_model.bin); save the model into it with save_pretrained"),
        ({}, index, f"{index}/model.safetensors.index.json has no weight_map; re-save the model with save_pretrained"),
        ({}, escape, f"{escape}/model.safetensors.index.json names the shard '../outside.safetensors', which is not a "
                     f"file in {escape}"),
        ({}, missing, f"{missing}/model.safetensors.index.json names the shard 's-9.bin', which is not a file in "
                      f"{missing}"),
        ({}, listed, f"{listed}/model.safetensors.index.json holds a JSON list, not an object: a sharded checkpoint's "
                     "index must map weight names to shard files"),
    ]:
        with pytest.raises(AuditError) as excinfo:
            weight_files(where, config)
        assert str(excinfo.value) == message


class StemViT(MicroViT):
    """A 3x3 convolution before the patch embedding, and blocks without weighted layers (a norm and a GELU)."""

    def __init__(self):
        super().__init__(prefix=1)
        self.stem = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.blocks = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.GELU())

    def forward(self, x):
        return super().forward(self.stem(x))


def test_the_grid_is_the_last_convolution_before_the_tokens_and_no_token_layer_need_be_weighted():
    assert _layout(StemViT()) == TokenLayout(1, (4, 4), "class token", "1 prefix token: the head reads the class token")


class AfterHeadViT(MicroViT):
    """Token work after the classifier head (a norm over the first 5 tokens, added as zero): not the layout."""

    def __init__(self):
        super().__init__(prefix=1)
        self.after = torch.nn.LayerNorm(8)

    def forward(self, x):
        t = self.norm(self.blocks(torch.cat([self.tokens.expand(len(x), -1, -1),
                                             self.proj(x).flatten(2).transpose(1, 2)], dim=1)))
        logits = self.head(t[:, 0])
        return logits + 0 * self.after(t[:, :5]).sum()


def test_token_outputs_after_the_head_do_not_decide_the_count():
    assert _layout(AfterHeadViT()) == TokenLayout(1, (4, 4), "class token",
                                                  "1 prefix token: the head reads the class token")


@pytest.mark.parametrize("prefix,expected", [
    (1, TokenLayout(1, (4, 6), "class token", "1 prefix token: the head reads the class token")),
    (23, TokenLayout(23, (4, 6), "class token", "23 prefix tokens: the head reads the class token")),
    (24, None),  # as many prefix tokens as the 4x6 patches
])
def test_token_layout_of_a_wide_image(prefix, expected):
    from audit.analyses.layers import token_layout

    torch.manual_seed(0)
    net = MicroViT(prefix, keep=24).eval()
    assert token_layout(net, torch.rand(2, 3, 32, 48)) == expected
