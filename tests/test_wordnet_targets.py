"""Targets from WordNet (--targeted semantic-near/-far --target-space wordnet): the targets against a literal loop
over the class tree, unmapped classes, a real demo audit, and the one-line refusal when the classes do not map."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hierarchy_support import literal_lca

from audit import AuditConfig, run_audit
from audit.analyses.semantics.hierarchy import build_tree, wu_palmer
from audit.analyses.semantics.wordnet import load_builtin
from audit.demo import ARCH, ASSETS
from audit.engine import audit_pass
from audit.engine.targets import choose_targets, wordnet_distance


def literal_targets(syn) -> tuple[dict[int, int], dict[int, int]]:
    """Per mapped class: its near target (smallest LCA height; ties: largest Wu–Palmer similarity, then the lowest
    class index) and its far target (largest LCA height; ties: smallest Wu–Palmer similarity, then the lowest
    index), over the other mapped classes, by one loop over the pairs."""
    mapped = [c for c, w in enumerate(syn.wnids) if w is not None]
    tree = build_tree(syn.graph.hypernyms, [syn.wnids[c] for c in mapped])
    near, far = {}, {}
    for i, c in enumerate(mapped):
        keys = []
        for j, o in enumerate(mapped):
            if o != c:
                keys.append((literal_lca(tree, i, j),
                             wu_palmer(syn.graph.hypernyms, syn.wnids[c], syn.wnids[o], syn.graph.names), o))
        near[c] = min(keys, key=lambda k: (k[0], -k[1], k[2]))[2]
        far[c] = min(keys, key=lambda k: (-k[0], k[1], k[2]))[2]
    return near, far


def every_class(syn) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample per class; the clean logits rank class (true + 1) mod n lowest (the least-likely fallback)."""
    n = len(syn.classes)
    y = torch.arange(n)
    logits = torch.zeros(n, n)
    logits[y, (y + 1) % n] = -1.0
    return logits, y


@pytest.mark.parametrize("label_set", ["fashion-mnist", "cifar10", "cifar100"])
def test_wordnet_targets_equal_a_literal_loop_over_the_tree(label_set):
    syn = load_builtin(label_set)
    distance = wordnet_distance(syn)
    logits, y = every_class(syn)
    near, far = literal_targets(syn)
    assert choose_targets("semantic-near", logits, y, 0, 0, distance=distance).tolist() == [near[c] for c in y.tolist()]
    assert choose_targets("semantic-far", logits, y, 0, 0, distance=distance).tolist() == [far[c] for c in y.tolist()]


def test_the_named_targets_of_fashion_mnist_and_cifar10():
    for label_set, true, nearest, farthest in (
            ("fashion-mnist", "Sandal", {"Sneaker", "Ankle boot"}, {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                                    "Coat", "Shirt", "Bag"}),
            ("fashion-mnist", "Shirt", {"T-shirt/top"}, {"Sandal", "Sneaker", "Bag", "Ankle boot"}),
            ("cifar10", "cat", {"dog"}, {"airplane", "automobile", "ship", "truck"}),
            ("cifar10", "truck", {"automobile"}, {"bird", "cat", "deer", "dog", "frog", "horse"})):
        syn = load_builtin(label_set)
        logits, y = every_class(syn)
        c = syn.classes.index(true)
        distance = wordnet_distance(syn)
        assert syn.classes[choose_targets("semantic-near", logits, y, 0, 0, distance=distance)[c]] in nearest
        assert syn.classes[choose_targets("semantic-far", logits, y, 0, 0, distance=distance)[c]] in farthest


def test_unmapped_classes_are_never_targets_and_their_samples_get_the_least_likely_class():
    syn = load_builtin("fashion-mnist")
    left_out = {syn.classes.index("Sneaker"), syn.classes.index("T-shirt/top")}
    partial = dataclasses.replace(syn, wnids=tuple(None if c in left_out else w for c, w in enumerate(syn.wnids)),
                                  senses=tuple(None if c in left_out else s for c, s in enumerate(syn.senses)))
    logits, y = every_class(partial)
    near, far = literal_targets(partial)
    for mode, want in (("semantic-near", near), ("semantic-far", far)):
        got = choose_targets(mode, logits, y, 0, 0, distance=wordnet_distance(partial)).tolist()
        for c in range(len(partial.classes)):
            assert got[c] == ((c + 1) % 10 if c in left_out else want[c]), (mode, c)
    assert partial.classes[near[partial.classes.index("Sandal")]] == "Ankle boot"  # Sneaker is gone


def test_a_demo_audit_aims_every_sample_at_a_class_of_minimal_lca_height(monkeypatch):
    chosen = []

    def recorded(mode, logits, y, seed, offset, distance=None):
        targets = choose_targets(mode, logits, y, seed, offset, distance=distance)
        chosen.append((y.clone(), targets.clone()))
        return targets

    monkeypatch.setattr(audit_pass, "choose_targets", recorded)
    result = run_audit(AuditConfig(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo",
                                   classes="fashion-mnist", attacks=["pgd"], eps="0.1", steps=5, samples=40,
                                   batch_size=20, device="cpu", layers="none", checks=False,
                                   targeted="semantic-near", target_space="wordnet"))
    syn = load_builtin("fashion-mnist")
    tree = build_tree(syn.graph.hypernyms, list(syn.wnids))
    y = torch.cat([c[0] for c in chosen]).tolist()
    targets = torch.cat([c[1] for c in chosen]).tolist()
    assert len(y) == 40 and len(set(y)) == 10
    for true, target in zip(y, targets, strict=True):
        heights = [literal_lca(tree, true, o) for o in range(10) if o != true]
        assert target != true and literal_lca(tree, true, target) == min(heights)
    report = result.to_dict()
    assert report["settings"]["target_space"] == "wordnet" and report["attacks"][0]["targeted"]
    from reports.schema import targeting

    assert targeting(report) == ("semantic-near targets from WordNet (the class with the smallest LCA height to the "
                                 "true one in the class tree)")


def test_wordnet_targets_for_classes_without_a_hierarchy_are_one_line_exit_2_and_no_report(tmp_path, capsys):
    from audit.cli import main

    out = tmp_path / "out"
    args = ["run", str(ASSETS / "fashion_cnn.safetensors"), "--arch", ARCH, "--data", "demo", "--classes",
            "a,b,c,d,e,f,g,h,i,j", "--samples", "8", "--attack", "fgsm", "--eps", "0.1", "--device", "cpu",
            "--layers", "none", "--out", str(out), "--targeted", "semantic-near", "--target-space", "wordnet"]
    with pytest.raises(SystemExit) as end:
        main(args)
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[audit]"))
    assert end.value.code == 2 and err.count("\n") == 0, err
    assert err.startswith("error: --target-space wordnet: the classes do not map to WordNet (") and \
        "use --target-space glove" in err
    assert not (out / "report.json").exists()
    with pytest.raises(SystemExit) as end:
        main(args[:-1] + ["sumo"])
    assert end.value.code == 2 and "--target-space must be one of glove, wordnet, got 'sumo'" in capsys.readouterr().err


def test_one_audit_builds_the_class_tree_and_the_wu_palmer_matrix_once(monkeypatch):
    """WordNet targets, the WordNet space and the hierarchy analysis in one audit read one tree and one matrix."""
    import audit.analyses.semantics.wordnet as wordnet

    wordnet.load_builtin.cache_clear()  # a fresh mapping: an earlier test's keeps what it built
    calls = {"build_tree": 0, "wu_palmer_matrix": 0}
    for name in calls:
        real = getattr(wordnet, name)
        monkeypatch.setattr(wordnet, name, lambda *a, _real=real, _name=name: (
            calls.__setitem__(_name, calls[_name] + 1), _real(*a))[1])
    report = run_audit(AuditConfig(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo",
                                   classes="fashion-mnist", attacks=["pgd"], eps="0.1", steps=2, samples=20,
                                   device="cpu", layers="classifier.2", checks=False, permutations=20,
                                   targeted="semantic-near", target_space="wordnet")).to_dict()
    assert report["analyses"]["hierarchy"]["clean"] and report["analyses"]["semantics"]["spaces"]["wordnet"]
    assert calls == {"build_tree": 1, "wu_palmer_matrix": 1}
