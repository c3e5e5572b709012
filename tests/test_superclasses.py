"""Coarse robustness per superclass: the level (default rule, --superclass-depth, --superclasses), bad levels as one
line and exit 2, the shares inside with an 'other' group, and CIFAR-10's animal/vehicle split in a whole audit of a
micro model (random weights, synthetic CIFAR-shaped images: no CIFAR-10 model ships)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audit import AuditConfig, run_audit
from audit.analyses.hierarchy.analysis import HierarchyAnalysis
from audit.analyses.hierarchy.coarse import OTHER, by_superclass, inside_share
from audit.analyses.semantics.wordnet import load_builtin
from audit.demo import ARCH, ASSETS
from audit.errors import AuditError
from audit.stats import proportion_interval
from tests.test_hierarchy_audit import Recorder, check, expected_section, literal_superclass


def level_of(label_set: str, **kw):
    syn = load_builtin(label_set)
    analysis = HierarchyAnalysis(syn, **kw)
    return analysis.level, analysis.tree, [syn.classes[c] for c in analysis.mapped]


def groups_of(level, classes) -> dict[str, set[str]]:
    return {name: {classes[c] for c in np.flatnonzero(level.groups == g)} for g, name in enumerate(level.names)}


def test_the_default_level_is_the_shallowest_depth_where_no_superclass_holds_over_two_thirds():
    for label_set, depth in (("cifar10", 1), ("fashion-mnist", 1), ("cifar100", 4), ("imagenet-1k", 4)):
        level, tree, classes = level_of(label_set)
        assert (level.how, level.depth) == ("default", depth)
        k = len(classes)
        for d in range(1, depth + 1):  # by a walk up from each leaf: the largest group above 2/3 until `depth`
            counts = np.unique([literal_superclass(tree, c, d) for c in range(k)], return_counts=True)[1]
            assert (counts.max() <= 2 * k / 3) == (d == depth), (label_set, d)
    level, _, classes = level_of("cifar10")
    assert groups_of(level, classes) == {
        "vertebrate.n.01": {"bird", "cat", "deer", "dog", "frog", "horse"},
        "vehicle.n.01": {"airplane", "automobile", "ship", "truck"}}
    level, _, classes = level_of("fashion-mnist")
    assert {n: len(c) for n, c in groups_of(level, classes).items()} == {"clothing.n.01": 6, "footwear.n.02": 3,
                                                                         "bag.n.04": 1}
    level, _, _ = level_of("imagenet-1k")
    sizes = dict(zip(level.names, level.sizes.tolist(), strict=True))
    assert (sizes["artifact.n.01"], sizes["organism.n.01"], len(sizes)) == (522, 410, 25)


def test_a_chosen_depth_and_named_nodes_with_the_deeper_node_winning_and_an_other_group():
    level, tree, classes = level_of("cifar10", superclass_depth=2)
    assert level.how == "--superclass-depth" and level.depth == 2
    assert groups_of(level, classes)["placental.n.01"] == {"cat", "deer", "dog", "horse"}
    # dog is under both mammal and dog: the deeper named node; birds, frogs and vehicles are under neither
    vehicle = load_builtin("cifar10").graph.lookup("vehicle.n.01")
    level, tree, classes = level_of("cifar10", superclasses=["mammal.n.01", "dog.n.01", vehicle, "mammal.n.01"])
    assert level.how == "--superclasses" and level.depth is None
    assert groups_of(level, classes) == {"mammal.n.01": {"cat", "deer", "horse"}, "dog.n.01": {"dog"},
                                         "vehicle.n.01": {"airplane", "automobile", "ship", "truck"},
                                         OTHER: {"bird", "frog"}}
    assert level.synsets[-1] is None and "2 classes under none form 'other'" in level.rule


def test_the_other_group_is_measured_for_accuracy_but_its_mistakes_are_no_superclass_share():
    level, _, classes = level_of("cifar10", superclasses=["mammal.n.01", "vehicle.n.01"])
    at = {c: i for i, c in enumerate(classes)}
    samples = np.arange(1, 11)
    correct = samples // 2
    # mistakes: cat -> dog (inside mammal), truck -> cat (out), bird -> frog (both other), frog -> ship
    true = np.array([at["cat"], at["truck"], at["bird"], at["frog"]])
    pred = np.array([at["dog"], at["cat"], at["frog"], at["ship"]])
    rows = {r["name"]: r for r in by_superclass(level, samples, correct, true, pred, 0.9)}
    mammals = [at[c] for c in ("cat", "deer", "dog", "horse")]
    n, k = int(samples[mammals].sum()), int(correct[mammals].sum())
    assert (rows["mammal.n.01"]["n"], rows["mammal.n.01"]["correct"]) == (n, k)
    assert rows["mammal.n.01"]["accuracy_ci"] == proportion_interval(k, n, 0.9)
    assert rows["mammal.n.01"]["mistakes"] == {"k": 1, "n": 1, "share": 1.0, "ci": proportion_interval(1, 1, 0.9),
                                               "chance": 3 / 9}
    assert rows["vehicle.n.01"]["mistakes"]["k"] == 0 and rows["vehicle.n.01"]["mistakes"]["chance"] == 3 / 9
    assert rows[OTHER]["mistakes"] is None and rows[OTHER]["n"] == samples[[at["bird"], at["frog"]]].sum()
    share = inside_share(level, true, pred, 0.9)  # the two mistakes from mammal and vehicle classes only
    assert (share["k"], share["n"], share["chance"]) == (1, 2, pytest.approx(3 / 9))


@pytest.mark.parametrize("kw, needle", [
    ({"superclass_depth": 5}, "--superclass-depth 5 is outside this audit's class tree: its depths below the root "
                              "run from 1 to 4"),
    ({"superclasses": ["spaceship.n.01"]}, "'spaceship.n.01' is not a node of this audit's class hierarchy"),
    ({"superclasses": ["abstraction.n.06"]}, "'abstraction.n.06' is not a node"),
    ({"superclasses": ["vehicle"]}, "'vehicle' is not a node"),
    ({"superclasses": ["placental.n.01", "mammal.n.01"]}, "mammal.n.01 keeps no class of its own (every class under "
                                                          "it is under a deeper named node: placental.n.01)"),
])
def test_bad_levels_are_audit_errors(kw, needle):
    with pytest.raises(AuditError) as err:
        level_of("cifar10", **kw)
    assert needle in str(err.value)


def demo_args(tmp_path, *extra) -> list[str]:
    return ["run", str(ASSETS / "fashion_cnn.safetensors"), "--arch", ARCH, "--data", "demo", "--samples", "8",
            "--attack", "fgsm", "--eps", "0.1", "--device", "cpu", "--layers", "none", "--out", str(tmp_path / "out"),
            *extra]


@pytest.mark.parametrize("extra, needle", [
    (["--superclass-depth", "9"], "--superclass-depth 9 is outside this audit's class tree"),
    (["--superclass-depth", "0"], "--superclass-depth must be at least 1"),
    (["--superclasses", "vehicle.n.01"], "'vehicle.n.01' is not a node of this audit's class hierarchy"),
    (["--superclasses", "footwear.n.02", "--superclass-depth", "1"], "give one of them"),
    (["--superclasses", " , "], "--superclasses names no node"),
    (["--classes", "mnist", "--superclass-depth", "1"], "--superclass-depth needs a class hierarchy"),
])
def test_bad_levels_on_audit_run_are_one_line_exit_2_and_no_report(tmp_path, capsys, extra, needle):
    from audit.cli import main

    with pytest.raises(SystemExit) as end:
        main(demo_args(tmp_path, *extra))
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[audit]"))
    assert end.value.code == 2 and err.count("\n") == 0 and err.startswith("error: "), err
    assert needle in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_named_superclasses_through_the_cli_reach_the_report(tmp_path):
    import json

    from audit.cli import main

    with pytest.raises(SystemExit) as end:
        main(demo_args(tmp_path, "--superclasses", "shoe.n.01,footwear.n.02", "--no-html"))
    assert end.value.code == 0
    sec = json.loads((tmp_path / "out" / "report.json").read_text())["analyses"]["hierarchy"]
    assert sec["superclass_level"]["how"] == "--superclasses" and sec["superclass_depth"] is None
    assert sec["superclass_level"]["nodes"] == ["shoe.n.01", "footwear.n.02"]
    assert {g["name"]: len(g["classes"]) for g in sec["superclasses"]} == {"shoe.n.01": 2, "footwear.n.02": 1,
                                                                            OTHER: 7}


# --- CIFAR-10: the animal/vehicle split in a whole audit ------------------------------------------------------------

CIFAR_NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.fc = nn.Linear(8 * 16 * 16, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
'''


def test_cifar10_micro_model_splits_animals_and_vehicles_and_equals_a_literal_loop(tmp_path):
    """Random weights and random CIFAR-shaped images; two thirds of the labels are the model's own predictions, so
    there are right and wrong samples in both superclasses."""
    arch = tmp_path / "cifar_net.py"
    arch.write_text(CIFAR_NET)
    import importlib.util

    spec = importlib.util.spec_from_file_location("cifar_net", arch)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.Net().eval()
    x = torch.rand(60, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.fc.bias.sub_(net(x).mean(0))  # every class predicted for some images
        pred = net(x).argmax(1)
    y = pred.clone()
    y[40:] = (pred[40:] + 3) % 10
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=y.numpy().astype(np.int64))
    recorder = Recorder()
    result = run_audit(AuditConfig(model=str(tmp_path / "w.safetensors"), arch=f"{arch}:Net",
                                   data=str(tmp_path / "data.npz"), classes="cifar10", attacks=["fgsm"],
                                   eps="0.0005", samples="all", batch_size=32, device="cpu", layers="none"),
                       analyses=[recorder])
    sec = result.analyses["hierarchy"]
    assert [g["name"] for g in sec["superclasses"]] == ["vertebrate.n.01", "vehicle.n.01"]
    syn = load_builtin("cifar10")
    ys, clean = np.concatenate(recorder.y), np.concatenate(recorder.clean)
    check(sec["clean"], expected_section(ys, clean, syn=syn))
    [run] = sec["adversarial"]
    check(run, expected_section(ys, clean, np.concatenate(recorder.adv[next(iter(recorder.adv))]), syn=syn))
    assert sec["clean"]["superclass_test"]["test"] == run["superclass_test"]["test"] == \
        "Fisher's exact test (two-sided)"
    assert sum(r["correct"] for r in run["by_superclass"]) == round(result.attacks[0]["robust_accuracy"] * 60)
