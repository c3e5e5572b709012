"""The saliency-entropy analysis inside an audit: numbers recomputed directly, passes, figures, flat memory."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
import torch

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.analyses.saliency import spatial_entropy
from audit.analyses.base import Analysis


def config(**kw) -> AuditConfig:
    base = dict(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo", classes="fashion-mnist",
                attacks=["fgsm"], eps="0.1", samples=60, batch_size=32, device="cpu", permutations=50)
    return AuditConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def result():
    return run_audit(config())


def demo_net():
    from audit.model import load_model

    return load_model(str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH).module.eval()


def direct_gradcam(net, x: torch.Tensor, cut: int) -> torch.Tensor:
    """Grad-CAM of the predicted logit at net.features[:cut], by splitting the network by hand (no hooks)."""
    a = net.features[:cut](x).detach().requires_grad_(True)
    logits = net.classifier(net.features[cut:](a))
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    weights = a.grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(1)).detach()


def test_clean_entropy_per_layer_equals_a_direct_gradcam_computation(result):
    sal = result.analyses["saliency"]
    data = np.load(ASSETS / "fashion_mnist_test.npz")
    from audit.data import open_data

    chosen = open_data("demo", samples=60, seed=0)
    x = torch.cat([b.x for b in chosen.batches(32, size=(28, 28), channels=1)])
    assert x.shape[0] == 60 and data["x"].shape[1:] == (28, 28)
    net = demo_net()
    cuts = {"features.1": 2, "features.2": 3, "features.4": 5}
    assert [layer["name"] for layer in sal["layers"]] == list(cuts)
    for layer in sal["layers"]:
        maps = direct_gradcam(net, x, cuts[layer["name"]])
        h = spatial_entropy(maps.numpy(), method="glcm", levels=sal["levels"])
        assert layer["clean"]["mean"] == pytest.approx(h.mean(), abs=1e-6)
        assert layer["clean"]["sd"] == pytest.approx(h.std(ddof=1), abs=1e-6)
        assert layer["map_size"] == list(maps.shape[1:])


def test_section_states_its_choices_and_skips_layers_without_a_usable_map(result):
    sal = result.analyses["saliency"]
    assert (sal["method"], sal["entropy"], sal["log_base"], sal["saliency_class"]) == ("gradcam", "glcm", 2,
                                                                                       "predicted")
    assert sal["levels"] == 8 and sal["offsets"] == [[0, 1], [1, 0]]  # L from the smallest measured map, 14x14
    skipped = {s["name"]: s["reason"] for s in sal["skipped_layers"]}
    assert "smaller than 7x7" in skipped["features.6"] and "no spatial map" in skipped["classifier.2"]
    assert sal["superization"]["index"] is not None and sal["superization"]["statement"]
    det = sal["detection"][0]
    assert det["n"] == sal["layers"][0]["adversarial"][0]["n"] > 0
    assert det["best_layer"] in [layer["name"] for layer in sal["layers"]]


def test_figures_are_pngs_referenced_from_the_report(result):
    files = result.artifacts["files"]
    assert sorted(files) == result.analyses["saliency"]["figures"] and len(files) == 2
    for content in files.values():
        assert content[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_backward_per_clean_and_per_evaluated_adversarial_batch(result):
    passes = result.analyses["tap"]["passes"]
    attacked = sum(e["n_attacked_at_this_eps"] for e in result.attacks)
    assert passes["backward"] == passes["clean_forward"] + passes["adversarial_forward"] == 60 + attacked


def test_activation_energy_needs_no_backward():
    r = run_audit(config(saliency="activation", samples=20))
    assert r.analyses["tap"]["passes"]["backward"] == 0
    assert r.analyses["saliency"]["method"] == "activation" and r.analyses["saliency"]["layers"]


def test_saliency_none_leaves_the_semantic_analysis_on():
    r = run_audit(config(saliency="none", samples=20))
    assert "saliency" not in r.analyses and "semantics" in r.analyses
    assert r.analyses["tap"]["passes"]["backward"] == 0


class LiveTensors(Analysis):
    """Counts live tensors at the clean batches number 5 and 50."""

    def __init__(self):
        self.batches, self.counts = 0, {}

    def on_clean(self, batch):
        self.batches += 1
        if self.batches in (5, 50):
            gc.collect()
            self.counts[self.batches] = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))



def test_memory_after_fifty_batches_equals_memory_after_five():
    probe = LiveTensors()
    run_audit(config(samples=100, batch_size=2, permutations=10), analyses=[probe])
    assert probe.batches == 50
    assert probe.counts[50] == probe.counts[5]


def test_report_with_saliency_follows_the_schema(result):
    import jsonschema

    from reports.schema import SCHEMA_PATH

    jsonschema.validate(json.loads(result.to_json()), json.loads(SCHEMA_PATH.read_text()))


def test_every_saliency_number_carries_its_interval_and_test(result):
    import scipy.stats

    sal = result.analyses["saliency"]
    runs = len(sal["layers"][0]["adversarial"])
    for r in range(runs):
        entries = [layer["adversarial"][r] for layer in sal["layers"]]
        for e in entries:
            assert e["delta_ci"][0] < e["delta"] < e["delta_ci"][1] and 0 <= e["delta_p"] <= 1
            assert e["auroc_ci"][0] <= e["auroc"] <= e["auroc_ci"][1]
            assert e["mean_ci"][0] < e["mean"] < e["mean_ci"][1]
            # the paired t-test's p from the interval: the interval excludes 0 exactly when p < 0.05
            assert (e["delta_ci"][0] > 0 or e["delta_ci"][1] < 0) == (e["delta_p"] < 0.05)
        q = scipy.stats.false_discovery_control([e["auroc_p"] for e in entries])
        assert [e["auroc_q"] for e in entries] == pytest.approx(list(q), rel=1e-12)
    for layer in sal["layers"]:
        c = layer["clean"]
        half = scipy.stats.t.ppf(0.975, c["n"] - 1) * c["sd"] / c["n"] ** 0.5
        assert c["mean_ci"] == pytest.approx([c["mean"] - half, c["mean"] + half], abs=1e-9)
    sup = sal["superization"]
    # three measured layers: the exact p is 1/3 at best, so no trend is testable at 0.05
    assert (sup["n_layers"], sup["testable"], sup["min_layers"]) == (3, False, 5) and "2/3!" in sup["reason"]
    assert sup["p_value"] == pytest.approx(1 / 3) and "rises" not in sup["statement"]
    for det in sal["detection"]:
        if det["detector_auroc"] is not None:
            lo, hi = det["detector_accuracy_ci"]
            assert lo <= det["detector_accuracy"] <= hi
            assert det["detector_auroc_ci"][0] <= det["detector_auroc"] <= det["detector_auroc_ci"][1]
        assert det["direction"] in ("higher", "lower", "inconclusive")


def test_the_entropy_chart_draws_each_mean_with_its_interval(result):
    from audit.analyses.saliency.report import panel

    report = json.loads(result.to_json())
    svg = str(panel(report)["entropy_svg"])
    first = report["analyses"]["saliency"]["layers"][0]["clean"]["mean_ci"]
    assert f"<title>clean: [{first[0]:g}, {first[1]:g}]</title>" in svg
    assert svg.count("</path>") >= 2 * len(report["analyses"]["saliency"]["layers"])  # clean and adversarial bars
