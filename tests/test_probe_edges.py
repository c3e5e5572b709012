"""The probe and the pixel-space wrapper at their edges: output kinds, logits picking, layer discovery, messages."""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from audit.errors import AuditError
from audit.errors import short_reason
from audit.model.audited import AuditedModel, pick_logits
from audit.model.probing import expected_channels, first_layer, probe

IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class Head(nn.Module):
    """A convolution and a pooled head, then ``fn`` of the (N, 4) scores."""

    def __init__(self, fn=lambda z: z, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x).mean((2, 3)))


def run(fn, images=IMAGES, classes: int = 4):
    torch.manual_seed(0)
    return probe(AuditedModel(Head(fn, classes), None, None), images, None)


# --- what the output is ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "kind"), [
    ([[1.0, 0.0, 0.0], [0.25, 0.25, 0.5]], "probabilities"),  # a one-hot row still sums to 1
    ([[0.8, 0.7, -0.5], [0.5, 0.5, 0.0]], "logits"),  # sums to 1, but not all in [0, 1]
    ([[0.2, 0.3, 0.1], [0.9, 0.9, 0.9]], "logits"),  # all in [0, 1] (sigmoids), rows not summing to 1
    ([[0.2, 0.3, 0.1], [0.5, 0.2, 0.1]], "logits"),  # ... nor to within one of it
    ([[0.0005, -20.0, -20.0], [0.0005, -20.0, -20.0]], "logits"),  # logsumexp ~ 0, but an entry above 0
    ([[0.0, -50.0, -60.0], [-0.5, -1.0, -2.0]], "logits"),  # all <= 0, but the second row is not normalised
    ([[0.0, -50.0, -60.0], [-1.0986123, -1.0986123, -1.0986123]], "log-probabilities"),  # a 0 entry: log(1)
])
def test_output_kinds_at_their_edges(rows, kind):
    values = torch.tensor(rows)
    result = run(lambda z: values + 0 * z[:2, :3], IMAGES[:2], classes=4)
    assert result.output_kind == kind


def test_two_classes_are_enough_and_one_output_warns():
    assert run(lambda z: z[:, :2]).warnings == []
    assert run(lambda z: z[:, :1]).warnings == [
        "the model has a single output: attacks need one score per class; export the logits"]


class Drifting(nn.Module):
    """Adds ``step`` more on every call: two identical calls differ by exactly ``step``."""

    def __init__(self, step: float, base=lambda z: z):
        super().__init__()
        self.conv, self.step, self.calls, self.base = nn.Conv2d(3, 4, 3), step, 0, base

    def forward(self, x):
        self.calls += 1
        return self.base(self.conv(x).mean((2, 3))) + self.calls * self.step


@pytest.mark.parametrize(("step", "base", "deterministic"), [
    (5e-7, lambda z: 0 * z, True),  # within the 1e-6 tolerance, even around logits of 0
    (1e-7, lambda z: z, True),
    (0.25, lambda z: z, False),
])
def test_determinism_tolerance_and_the_reported_gap(step, base, deterministic):
    result = probe(AuditedModel(Drifting(step, base), None, None), IMAGES, None)
    assert result.deterministic is deterministic
    if not deterministic:
        assert result.warnings[0].startswith(f"the model is stochastic in eval mode (two identical calls differ "
                                             f"by up to {step:.3g})")
        assert result.warnings[0].endswith("(e.g. no dropout or noise forced on)")


def test_the_probe_needs_a_non_empty_image_batch():
    assert run(lambda z: z, IMAGES[:1]).num_outputs == 4  # a single image is enough
    for bad in (IMAGES[:0], IMAGES[0]):
        with pytest.raises(ValueError, match=r"probe needs a non-empty \(N, C, H, W\) batch, got shape"):
            probe(AuditedModel(Head(), None, None), bad, None)


# --- picking the logits ------------------------------------------------------------------------------------

Out = collections.namedtuple("Out", ["features", "scores"])


class WithLogits(tuple):
    """A tuple that also carries its logits as an attribute (as some model-output classes do)."""

    @property
    def logits(self):
        return self[1]


def test_picking_from_named_and_plain_tuples():
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    assert pick_logits(Out(a, b), "scores") == (b, "tuple[scores]")
    assert pick_logits(WithLogits((a, b))) == (b, "tuple[logits]")
    assert pick_logits((a, b), "-1") == (b, "tuple[-1]") and pick_logits((a, b), "-2") == (a, "tuple[-2]")
    for key in ("2", "-3", "abc", "index"):
        with pytest.raises(AuditError) as excinfo:
            pick_logits((a, b), key)
        assert f"--output-key {key!r} does not pick an element of the model's 2-element output" in str(excinfo.value)
        assert "field name" not in str(excinfo.value)
    with pytest.raises(AuditError, match=r"give an index 0\.\.1 or a field name \(features, scores\)$"):
        pick_logits(Out(a, b), "logits")


def test_picking_from_dicts_with_integer_keys():
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    assert pick_logits({0: a, 1: b}, "1") == (b, "dict[1]")
    assert pick_logits({"1": a, 1: b}, "1") == (a, "dict[1]")  # the text key wins where both exist


@pytest.mark.parametrize("out", [5, (), [], None])
def test_outputs_that_hold_no_tensor_are_one_error(out):
    with pytest.raises(AuditError) as excinfo:
        pick_logits(out)
    message = str(excinfo.value)
    assert message.startswith(f"the model returns {type(out).__name__} {str(out)[:40]!r}; expected logits: a tensor")
    assert message.endswith("or a dict / tuple holding one")


# --- finding the first layer -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_the_first_layer_is_found_through_groups_scripting_lazy_and_embedding_layers():
    assert expected_channels(nn.Sequential(nn.Conv2d(4, 8, 3, groups=2))) == 4
    scripted = torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))
    assert first_layer(scripted) == ("Linear", 12)
    assert first_layer(nn.Sequential(nn.Embedding(10, 5), nn.Linear(7, 3))) == ("Linear", 7)
    assert first_layer(nn.Sequential(nn.LazyLinear(3), nn.Conv2d(2, 4, 3))) == ("Conv2d", 2)
    assert first_layer(nn.Sequential(nn.ConvTranspose2d(2, 6, 3), nn.Linear(5, 3))) == ("Linear", 5)


@pytest.fixture(scope="module")
def exported_mlp():
    """A torch.export program over a flattening MLP: only the recorded input shape knows its channels."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(model, (IMAGES[:2],), dynamic_shapes={"input": {0: batch}}).module()


def test_an_exported_programs_recorded_input_gives_channels_and_advice(exported_mlp):
    assert expected_channels(exported_mlp) == 3
    with pytest.raises(AuditError) as excinfo:
        probe(AuditedModel(exported_mlp, None, None), torch.rand(2, 3, 9, 9), None)
    message = str(excinfo.value)
    assert message.startswith("the model does not accept inputs of shape 3x9x9")
    assert message.endswith("it was exported for inputs of shape 3x8x8: set --input-size / --channels")
    audited = AuditedModel(exported_mlp, None, None)
    audited.eval()
    assert all(m.training is False for m in audited.modules())
    audited.train()
    assert all(m.training is True for m in audited.modules())


class Picky(nn.Module):
    """Fails with a message that names no shape when the channels are wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.shape[1] != 3:
            raise RuntimeError("unsupported input")
        return self.conv(x).mean((2, 3))


class Shapeless(nn.Module):
    def forward(self, x):
        raise RuntimeError("shape mismatch somewhere")


def test_input_errors_name_the_channels_or_give_general_advice():
    with pytest.raises(AuditError) as excinfo:
        probe(AuditedModel(Picky(), None, None), torch.rand(2, 1, 8, 8), None)
    assert str(excinfo.value) == ("the model does not accept inputs of shape 1x8x8 (unsupported input); its first "
                                  "layer expects 3 channels: set --input-size / --channels")
    with pytest.raises(AuditError) as excinfo:
        probe(AuditedModel(Shapeless(), None, None), IMAGES, None)
    assert str(excinfo.value).endswith("(shape mismatch somewhere); check --input-size / --channels")


# --- the wrapper and short reasons -------------------------------------------------------------------------


def test_a_std_alone_divides_and_a_mean_alone_subtracts():
    x = IMAGES[:1]
    assert torch.equal(AuditedModel(nn.Identity(), None, (0.5, 0.5, 0.5)).normalize(x), x / 0.5)
    assert torch.equal(AuditedModel(nn.Identity(), (0.5, 0.5, 0.5), None).normalize(x), x - 0.5)
    with pytest.raises(ValueError, match="mean has 2 values but std has 3"):
        AuditedModel(nn.Identity(), (0.5, 0.5), (1.0, 1.0, 1.0))


def test_the_wrapper_follows_train_and_eval():
    audited = AuditedModel(Head(), None, None)
    audited.eval()
    audited.train()
    assert audited.training is True and audited.net.conv.training is True
    audited.train(False)
    assert audited.training is False and audited.net.conv.training is False


def test_short_reason_keeps_the_first_line_and_cuts_at_the_limit():
    assert short_reason(ValueError("\x1b[31mred\x1b[0m line\nsecond")) == "red line"
    assert short_reason(RuntimeError("")) == "RuntimeError"
    assert short_reason(RuntimeError("x" * 160)) == "x" * 160
    assert short_reason(RuntimeError("x" * 161)) == "x" * 157 + "..."
    assert short_reason(RuntimeError("y" * 20), limit=10) == "y" * 7 + "..."
