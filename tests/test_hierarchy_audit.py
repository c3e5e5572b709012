"""The hierarchy analysis inside an audit: its numbers against a literal loop over the samples, the note when the
classes are no built-in set, and its sums carried across processes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import torch

from audit import AuditConfig, run_audit
from audit.analyses.base import Analysis, Batch
from audit.analyses.hierarchy.analysis import NOT_BUILTIN, SUPERCLASS_DEPTH, HierarchyAnalysis, label_set_of
from audit.analyses.semantics.hierarchy import build_tree
from audit.analyses.semantics.wordnet import SKIPPED, load_builtin
from audit.data.labels import BUILTIN
from audit.demo import ARCH, ASSETS
from audit.stats import bootstrap_interval, proportion_interval


def config(**kw) -> AuditConfig:
    base = dict(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo", classes="fashion-mnist",
                attacks=["fgsm"], eps="0.1", samples=60, batch_size=32, device="cpu", layers="none")
    return AuditConfig(**{**base, **kw})


class Recorder(Analysis):
    """Keeps every sample's label and logits, clean and per run (the test's own record of the pass)."""

    key = "recorder"

    def __init__(self):
        self.y, self.clean, self.adv, self.runs = [], [], {}, {}

    def on_clean(self, batch: Batch) -> None:
        self.y.append(batch.y.numpy().copy())
        self.clean.append(batch.logits.detach().double().numpy().copy())

    def on_adversarial(self, run, batch: Batch) -> None:
        self.runs[run.key] = run
        self.adv.setdefault(run.key, []).append(batch.logits.detach().double().numpy().copy())


@pytest.fixture(scope="module")
def audited():
    recorder = Recorder()
    return run_audit(config(), analyses=[recorder]), recorder


def literal_lca(tree, a: int, b: int) -> int:
    """The height of the lowest common ancestor of classes a and b, walking up the tree's parent links."""
    above = set()
    node = tree.leaf[a]
    while node >= 0:
        above.add(node)
        node = tree.parent[node]
    node = tree.leaf[b]
    while node not in above:
        node = tree.parent[node]
    return tree.height[node]


def literal_superclass(tree, c: int) -> int:
    node = tree.leaf[c]
    while tree.depth[node] > SUPERCLASS_DEPTH:
        node = tree.parent[node]
    return node


def expected_section(y, clean, adv=None):
    """The measures by a loop over the samples (adv None: the clean measurement, else the attack's mistakes)."""
    syn = load_builtin("fashion-mnist")
    tree = build_tree(syn.graph.hypernyms, syn.wnids)
    k = len(syn.classes)
    lca = [[literal_lca(tree, a, b) for b in range(k)] for a in range(k)]
    logits = clean if adv is None else adv
    mistakes, diffs, same, chance, counts, base = [], [], 0, 0.0, [0] * 5, [0.0] * 5
    top = {1: [], 5: []}
    for i in range(len(y)):
        t, p = int(y[i]), int(np.argmax(logits[i]))
        order = sorted(range(k), key=lambda c: (-logits[i][c], c))
        for kk in top:
            top[kk].append(sum(lca[t][c] for c in order[:kk]) / kk)
        clean_ok = int(np.argmax(clean[i])) == t
        if p == t or (adv is not None and not clean_ok):
            continue
        h = lca[t][p]
        others = [lca[t][c] for c in range(k) if c != t]
        mistakes.append((t, p, h))
        diffs.append((t, p, h - sum(others) / len(others)))
        counts[h] += 1
        for o in others:
            base[o] += 1 / len(others)
        same += literal_superclass(tree, t) == literal_superclass(tree, p)
        chance += (sum(literal_superclass(tree, c) == literal_superclass(tree, t) for c in range(k)) - 1) / (k - 1)
    heights = [h for _, _, h in sorted(mistakes)]
    n = len(heights)
    return {"n": n, "heights": heights, "diffs": [d for _, _, d in sorted(diffs)], "counts": counts,
            "base": base, "mean": sum(heights) / n, "median": float(np.median(heights)),
            "baseline_mean": sum(h - d for (_, _, h), (_, _, d) in zip(sorted(mistakes), sorted(diffs), strict=True)) / n,
            "same": same, "chance": chance / n, "top": {kk: sum(v) / len(v) for kk, v in top.items()},
            "top_values": top}


def check(entry: dict, want: dict) -> None:
    assert entry["n"] == want["n"] > 0
    assert entry["counts"] == want["counts"]
    assert entry["baseline_counts"] == pytest.approx(want["base"], abs=1e-9)
    assert entry["mean"] == pytest.approx(want["mean"], abs=1e-12)
    assert entry["median"] == want["median"]
    assert entry["baseline_mean"] == pytest.approx(want["baseline_mean"], abs=1e-12)
    assert entry["mean_ci"] == pytest.approx(bootstrap_interval(want["heights"], seed=0), abs=1e-12)
    assert entry["difference"] == pytest.approx(sum(want["diffs"]) / want["n"], abs=1e-12)
    if any(d != 0 for d in want["diffs"]):
        p = scipy.stats.wilcoxon(want["diffs"]).pvalue
        assert entry["p_value"] == pytest.approx(p, rel=1e-9)
        if p > 0.05:
            assert entry["verdict"].startswith("inconclusive")
        else:
            assert entry["verdict"] == ("milder" if sum(want["diffs"]) < 0 else "worse") + " than chance"
    same = entry["same_superclass"]
    assert (same["k"], same["n"]) == (want["same"], want["n"])
    assert same["ci"] == proportion_interval(want["same"], want["n"])
    assert same["chance"] == pytest.approx(want["chance"], abs=1e-12)
    assert {t["k"]: t["mean"] for t in entry["topk"]} == pytest.approx(want["top"], abs=1e-12)
    for t in entry["topk"]:  # a bootstrap over the samples' distances (sorted as the tally keeps them): never below 0
        expected = bootstrap_interval(sorted(want["top_values"][t["k"]]), seed=0)
        assert t["ci"] == pytest.approx(expected, abs=1e-12) and t["ci"][0] >= 0


def test_clean_and_attack_measures_equal_a_literal_loop_over_the_samples(audited):
    result, rec = audited
    sec = result.analyses["hierarchy"]
    assert sec["label_set"] == "fashion-mnist" and sec["max_height"] == 4
    y, clean = np.concatenate(rec.y), np.concatenate(rec.clean)
    # the recorded clean logits are the network's own: a direct forward pass agrees
    from audit.data import open_data
    from audit.model import load_model

    net = load_model(str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH).module.eval()
    x = torch.cat([b.x for b in open_data("demo", samples=60, seed=0).batches(32, size=(28, 28), channels=1)])
    with torch.no_grad():
        assert (net(x).argmax(1).numpy() == clean.argmax(1)).all()
    check(sec["clean"], expected_section(y, clean))
    [run] = sec["adversarial"]
    assert (run["attack"], run["eps_text"]) == ("fgsm", "0.1")
    want = expected_section(y, clean, np.concatenate(rec.adv[next(iter(rec.adv))]))
    check(run, want)
    # the attack's mistakes are the clean-correct samples it broke: the report's own count
    assert run["n"] == result.attacks[0]["n_success"]


def test_section_follows_the_schema_and_renders(audited):
    import jsonschema
    from rich.console import Console

    from audit.analyses.hierarchy.report import panel, terminal
    from reports.html.render import render_html
    from reports.schema import SCHEMA_PATH

    result, _ = audited
    report = json.loads(result.to_json())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    console = Console(record=True, width=200)
    terminal(result, console)
    text = console.export_text()
    run = report["analyses"]["hierarchy"]["adversarial"][0]
    assert f"fgsm@0.1: {run['n']} mistakes" in text and run["verdict"] in " ".join(text.split())
    assert max(len(line) for line in text.splitlines()) <= 80
    p = panel(report)
    assert len(p["rows"]) == 2 and "<svg" in str(p["svg"])
    assert 'id="hierarchy"' in render_html(report)


def test_class_names_that_are_no_builtin_set_get_the_note():
    off = run_audit(config(classes=",".join(f"thing{i}" for i in range(10)), samples=16))
    assert off.analyses["hierarchy"] == {"skipped": NOT_BUILTIN}
    mnist = run_audit(config(classes="mnist", samples=16))
    assert mnist.analyses["hierarchy"] == {"skipped": SKIPPED["mnist"]}


def test_label_sets_are_recognised_by_their_names():
    for name in ("imagenet-1k", "cifar10", "cifar100", "fashion-mnist", "mnist"):
        assert label_set_of(BUILTIN[name]()) == name
    assert label_set_of([n.upper() for n in BUILTIN["cifar10"]()]) == "cifar10"
    assert label_set_of(list(reversed(BUILTIN["cifar10"]()))) is None
    assert label_set_of(BUILTIN["imagenet-1k"]()[:10]) is None


def test_export_and_absorb_across_two_processes_equal_one(audited):
    result, rec = audited
    run = next(iter(rec.runs.values()))

    def fresh():
        return HierarchyAnalysis("fashion-mnist", load_builtin("fashion-mnist"), runs=[run])

    def feed(analysis, parts):
        for i in parts:
            y = torch.as_tensor(rec.y[i])
            analysis.on_clean(Batch(None, y, torch.as_tensor(rec.clean[i])))
            analysis.on_adversarial(run, Batch(None, y, torch.as_tensor(rec.adv[run.key][i])))

    class Holder:
        def __init__(self):
            self.analyses = {}

    one, first, second = fresh(), fresh(), fresh()
    feed(one, [0, 1])
    feed(second, [1])  # the second process's share, then the first's, merged on the first
    feed(first, [0])
    state = json.loads(json.dumps(second.export("pass"), default=lambda a: a.tolist()))  # plain data only
    first.absorb("pass", state)
    a, b = Holder(), Holder()
    one.finish(a)
    first.finish(b)
    assert a.analyses["hierarchy"] == b.analyses["hierarchy"] == result.analyses["hierarchy"]


def test_the_hierarchy_alone_does_not_turn_the_layer_tap_on():
    from audit.analyses.hierarchy.analysis import HierarchyOff
    from audit.analyses.suite import AnalysisSuite

    hierarchy = HierarchyAnalysis("cifar10", load_builtin("cifar10"))
    assert not AnalysisSuite(["features.1"], [hierarchy, HierarchyOff("why")]).tapping
    assert AnalysisSuite(["features.1"], [hierarchy, Analysis()]).tapping
    assert not AnalysisSuite([], [Analysis()]).tapping
