"""The semantic window inside an audit: report numbers recomputed independently, coverage, bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.errors import AuditError
from audit.engine.targets import choose_targets
from audit.analyses.base import Analysis, Batch


def config(**kw) -> AuditConfig:
    base = dict(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo", classes="fashion-mnist",
                attacks=["fgsm"], eps="0.1", samples="all", batch_size=100, device="cpu", permutations=200)
    return AuditConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def demo_result():
    return run_audit(config())


def pearson_matrix(rows: np.ndarray) -> np.ndarray:
    return np.array([[np.corrcoef(a, b)[0, 1] for b in rows] for a in rows])


def literal_two_vs_two(a: np.ndarray, b: np.ndarray) -> float:
    """The 2 vs 2 share written out. Its decisions are compared with the report's, computed in another order:
    each must be further from a tie than float64 rounding can move it (asserted, not assumed)."""
    n, hits, pairs = len(a), 0, 0
    for i, j in itertools.combinations(range(n), 2):
        keep = [k for k in range(n) if k not in (i, j)]
        r = lambda u, v, keep=keep: np.corrcoef(u[keep], v[keep])[0, 1]  # noqa: E731
        margin = r(a[i], b[i]) + r(a[j], b[j]) - r(a[i], b[j]) - r(a[j], b[i])
        assert abs(margin) > 1e-9, (i, j, margin)
        hits += margin > 0
        pairs += 1
    return hits / pairs


def test_report_two_vs_two_equals_an_independent_recomputation_from_the_exported_arrays(demo_result):
    sem = demo_result.analyses["semantics"]
    arrays = demo_result.artifacts["representations"]
    word = pearson_matrix(arrays["word_vectors"])
    assert np.allclose(word, arrays["word_similarity"], atol=1e-10)
    for layer in sem["layers"]:
        reps = arrays[f"layer:{layer['name']}:representations"]
        assert reps.shape == (10, layer["dimension"])
        assert layer["clean"]["two_vs_two"] == pytest.approx(literal_two_vs_two(pearson_matrix(reps), word), abs=1e-12)


def test_class_representations_are_class_means_of_pooled_activations(demo_result):
    from audit.model import load_model

    net = load_model(str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH).module.eval()
    data = np.load(ASSETS / "fashion_mnist_test.npz")
    x = torch.tensor(data["x"]).float().div(255)[:, None]
    with torch.no_grad():
        pooled = net.features[:5](x).mean(dim=(2, 3)).double().numpy()  # features.4: conv2 + ReLU, GAP
    expected = np.stack([pooled[data["y"] == c].mean(0) for c in range(10)])
    assert np.allclose(demo_result.artifacts["representations"]["layer:features.4:representations"], expected,
                       atol=1e-5)


def test_late_layers_beat_the_pixel_control_and_the_section_is_complete(demo_result):
    sem = demo_result.analyses["semantics"]
    assert sem["coverage"]["n_covered"] == 10 and not sem["coverage"]["missing"]
    late = sem["layers"][-2:]
    assert all(layer["clean"]["two_vs_two"] > sem["pixels"]["two_vs_two"] for layer in late)
    assert demo_result.analyses["tap"]["passes"]["prepass_forward"] == 300
    fgsm = sem["one_vs_two"][0]
    assert fgsm["n_scored"] > 100 and len(fgsm["source_like"]) == len(sem["layers"])
    # the layer-wise fractions are counts over the same scored images
    assert all(0 <= f <= 1 for f in fgsm["source_like"] + fgsm["source_like_clean"])
    sev = sem["severity"][0]
    assert sev["n"] == fgsm["n_scored"] == sum(sev["histogram"]["counts"])
    worst = sev["worst"]
    assert len(worst) == 10 and worst[0]["severity"] >= worst[-1]["severity"]
    assert "agrees best" in sem["interpretation"]


def test_severity_in_the_report_is_the_normalised_word_distance(demo_result):
    arrays = demo_result.artifacts["representations"]
    names = list(arrays["classes"])
    v = arrays["word_vectors"]
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    mean = np.mean([1 - cos(v[i], v[j]) for i, j in itertools.combinations(range(10), 2)])
    for row in demo_result.analyses["semantics"]["severity"][0]["worst"]:
        d = 1 - cos(v[names.index(row["true"])], v[names.index(row["predicted"])])
        assert row["word_distance"] == pytest.approx(d) and row["severity"] == pytest.approx(d / mean)


def test_few_covered_classes_skip_the_section_with_a_reason():
    result = run_audit(config(classes="qzxv,wqpf,zzkr,pfqz,a,b,c,d,e,f", samples=20))
    sem = result.analyses["semantics"]
    assert "skipped" in sem and "at least 4" in sem["skipped"] and "layers" not in sem
    assert "representations" not in result.artifacts


def test_layers_none_turns_the_analyses_off():
    result = run_audit(config(layers="none", samples=20))
    assert "semantics" not in result.analyses and "tap" not in result.analyses


def test_unknown_layer_is_one_error_with_a_suggestion():
    with pytest.raises(AuditError, match="features.4"):
        run_audit(config(layers="features.44", samples=20))


def test_semantic_targets_are_the_nearest_and_farthest_classes_in_word_space():
    distance = np.array([[0, 0.2, 0.9, np.nan], [0.2, 0, 0.5, np.nan], [0.9, 0.5, 0, np.nan],
                         [np.nan, np.nan, np.nan, 0]])
    logits = torch.tensor([[3.0, 1, 2, 0], [1, 3, 0, 2], [0, 1, 3, 2], [2, 1, 0, 3]])
    y = torch.tensor([0, 1, 2, 3])
    near = choose_targets("semantic-near", logits, y, 0, 0, distance=distance)
    far = choose_targets("semantic-far", logits, y, 0, 0, distance=distance)
    assert near[:3].tolist() == [1, 0, 1] and far[:3].tolist() == [2, 2, 0]
    assert near[3] == far[3] == 2  # no word vector: the least-likely class


def test_semantic_far_targets_are_harder_to_reach_than_near_ones():
    near = run_audit(config(attacks=["pgd"], steps=10, eps="0.1", targeted="semantic-near", samples=100))
    far = run_audit(config(attacks=["pgd"], steps=10, eps="0.1", targeted="semantic-far", samples=100))
    assert near.attacks[0]["success_rate"] > far.attacks[0]["success_rate"]


def test_report_with_the_section_follows_the_schema(demo_result):
    import jsonschema

    from reports.schema import SCHEMA_PATH

    jsonschema.validate(json.loads(demo_result.to_json()), json.loads(SCHEMA_PATH.read_text()))


class PooledCheck(Analysis):
    """Compares the tapped view of every batch with a direct forward of the images it was given."""

    def __init__(self):
        from audit.model import load_model

        self.net = load_model(str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH).module.eval()
        self.checked = 0

    def _check(self, x, logits, tap):
        with torch.no_grad():
            expected = self.net.features[:5](x).mean(dim=(2, 3))
            direct = self.net(x)
        assert torch.allclose(tap.pooled["features.4"], expected, atol=1e-5)
        assert torch.allclose(tap.logits, direct, atol=1e-4) and torch.allclose(logits, direct, atol=1e-4)
        self.checked += len(x)

    def on_clean(self, batch):
        self._check(batch.x, batch.logits, batch.tap)

    def on_adversarial(self, run, batch):
        self._check(batch.x, batch.logits, batch.tap)


def test_the_tapped_view_of_every_adversarial_batch_is_that_batchs_own_forward():
    check = PooledCheck()
    result = run_audit(config(attacks=["pgd", "fgsm"], eps="0.03,0.1", steps=5, samples=40, batch_size=16),
                       analyses=[check])
    assert check.checked == 40 * 5  # clean + two budgets of two attacks
    passes = result.analyses["tap"]["passes"]
    # adversarials are seen through the cascade's own evaluation forward: no forward beyond the attacked samples
    attacked = sum(e["n_attacked_at_this_eps"] for e in result.attacks)
    assert passes["adversarial_forward"] == attacked and passes["clean_forward"] == 40


def prepared_analysis(rng, k: int, no_vector: list[int], labels: torch.Tensor, d: int):
    """A semantic analysis of one layer over classes c0..c{k-1} with random word vectors (none for the classes in
    ``no_vector``), prepared on random pooled vectors of dimension ``d`` for ``labels``: (analysis, word vectors,
    pooled vectors)."""
    from types import SimpleNamespace

    from audit.analyses.semantics.analysis import SemanticAnalysis
    from audit.analyses.semantics.space import WordSpace

    vectors = rng.normal(size=(k, 5))
    vectors[no_vector] = np.nan
    space = WordSpace([f"c{i}" for i in range(k)], vectors, ~np.isnan(vectors).any(1), [("w",)] * k, [True] * k, {})
    obs = SemanticAnalysis(space, ["layer"], permutations=10)
    pooled = torch.tensor(rng.normal(size=(len(labels), d)))
    obs.on_prepare(Batch(torch.zeros(len(labels), 1, 2, 2), labels, None, SimpleNamespace(pooled={"layer": pooled})))
    obs.prepared()
    return obs, vectors, pooled


def test_one_vs_two_counts_equal_a_literal_loop_also_for_targets_without_images():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    k, d = 7, 12
    # class 6 has no word vector; images of classes 0..4 only: class 5 has a word vector but no images
    labels = torch.tensor(np.repeat(np.arange(5), 4))
    obs, vectors, pooled = prepared_analysis(rng, k, [6], labels, d)
    adv_pooled = torch.tensor(rng.normal(size=(20, d)))
    pred = torch.tensor(rng.integers(0, k, size=20))
    clean_logits = torch.nn.functional.one_hot(labels, k).double()  # every clean image is correct
    obs.on_clean(Batch(None, labels, clean_logits, SimpleNamespace(pooled={"layer": pooled})))
    run = SimpleNamespace(key="pgd@1", spec=SimpleNamespace(name="pgd"), eps=1.0, eps_text="1")
    obs.on_adversarial(run, Batch(None, labels, torch.nn.functional.one_hot(pred, k).double(),
                                  SimpleNamespace(pooled={"layer": adv_pooled})))
    reps = np.stack([pooled[labels == c].numpy().mean(0) for c in range(5)])
    r = lambda a, b: np.corrcoef(a, b)[0, 1]  # noqa: E731
    cells = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    scored = 0
    for i in range(20):
        s, t = int(labels[i]), int(pred[i])
        if s == t or t == 6:
            continue
        refs = [c for c in range(5) if c not in (s, t)]
        decisions = []
        for image in (adv_pooled[i], pooled[i]):  # the adversarial, then its clean version
            prof = [r(image.numpy(), reps[c]) for c in refs]
            margin = r(prof, [r(vectors[s], vectors[c]) for c in refs]) - r(prof, [r(vectors[t], vectors[c])
                                                                                   for c in refs])
            assert abs(margin) > 1e-9  # counted in another order by the analysis: no decision within rounding
            decisions.append(bool(margin > 0))
        cells[tuple(decisions)] += 1
        scored += 1
    state = obs.adv["pgd@1"]
    assert state["n_flip"]["glove"] == scored and any(int(p) == 5 for p in pred)
    # both source-like, the adversarial only, the clean version only, neither
    expected = [cells[True, True], cells[True, False], cells[False, True], cells[False, False]]
    assert state["paired"]["glove"][0].tolist() == expected and cells[True, False] + cells[False, True] > 0
    # exported and absorbed into a fresh analysis (resume, another rank): the counts add up exactly
    other, _, _ = prepared_analysis(np.random.default_rng(0), k, [6], labels, d)
    other.runs = {"pgd@1": run}
    other.absorb("pass", obs.export("pass"))
    other.absorb("pass", obs.export("pass"))
    assert other.adv["pgd@1"]["paired"]["glove"][0].tolist() == [2 * c for c in expected]


def test_severity_intervals_come_from_the_errors_rebuilt_from_the_confusion_counts():
    from types import SimpleNamespace

    from audit.stats import bootstrap_interval

    rng = np.random.default_rng(3)
    k = 7
    obs, vectors, _ = prepared_analysis(rng, k, [6], torch.tensor(np.repeat(np.arange(6), 3)), 5)
    obs.seed = 11
    run = SimpleNamespace(key="pgd@1", spec=SimpleNamespace(name="pgd"), eps=1.0, eps_text="1")
    state = obs._state(run)
    state["confusion"] = rng.integers(0, 4, size=(k, k)) * (1 - np.eye(k, dtype=np.int64))
    out = obs._severity(state)
    # the errors written out: one value per confused image whose two classes have word vectors
    u = vectors[:6] / np.linalg.norm(vectors[:6], axis=1, keepdims=True)
    mean_distance = np.mean([1 - u[i] @ u[j] for i in range(6) for j in range(i + 1, 6)])
    errors = [(1 - u[s] @ u[t]) / mean_distance
              for s in range(6) for t in range(6) for _ in range(int(state["confusion"][s, t]))]
    assert out["n"] == len(errors) > 20
    assert out["mean"] == pytest.approx(np.mean(errors)) and out["median"] == pytest.approx(np.median(errors))
    assert out["mean_ci"] == pytest.approx(bootstrap_interval(errors, np.mean, 0.95, seed=11))
    assert out["median_ci"] == pytest.approx(bootstrap_interval(errors, np.median, 0.95, seed=11))
    # a percentile bootstrap written out (other draws, many of them): the same interval up to resampling noise
    draws = np.random.default_rng(99).choice(errors, size=(20000, len(errors)))
    literal = np.percentile(draws.mean(axis=1), [2.5, 97.5])
    assert out["mean_ci"] == pytest.approx(literal, abs=0.02)
    assert out["mean_ci"][0] < out["mean"] < out["mean_ci"][1]
    obs.confidence = 0.8
    narrower = obs._severity(state)["mean_ci"]
    assert out["mean_ci"][0] < narrower[0] < narrower[1] < out["mean_ci"][1]


def test_the_chance_band_of_the_2v2_agrees_with_the_permutation_p(demo_result):
    sem = demo_result.analyses["semantics"]
    n_perm, confidence = sem["permutations"], sem["confidence"]
    for layer in sem["layers"]:
        c = layer["clean"]
        upper, observed = c["chance_upper"], c["two_vs_two"]
        assert 0.0 <= upper <= 1.0
        at_least = round(c["p_value_raw"] * (n_perm + 1)) - 1  # permutations that reach the observed 2v2
        # above the band: at most the band's share of permutations reaches it; below it: at least that share does
        if observed > upper:
            assert at_least <= (1 - confidence) * n_perm + 1
        if observed < upper:
            assert at_least >= (1 - confidence) * n_perm - 1
