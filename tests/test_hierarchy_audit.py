"""The hierarchy analysis inside an audit: its numbers against a literal loop over the samples, the note when the
classes are no built-in set, and its sums carried across processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hierarchy_support import literal_lca
import pytest
import scipy.stats
import torch

from audit import AuditConfig, run_audit
from audit.analyses.base import Analysis, Batch
from audit.analyses.hierarchy.analysis import HierarchyAnalysis
from audit.analyses.semantics.hierarchy import build_tree
from audit.analyses.semantics.wordnet import NOT_BUILTIN, SKIPPED, label_set_of, load_builtin
from audit.data.labels import BUILTIN
from audit.demo import ARCH, ASSETS
from audit.stats import bootstrap_interval, proportion_interval
from reports.formatting import pct


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


def literal_superclass(tree, c: int, depth: int = 1) -> int:
    """Class c's ancestor at ``depth`` (1: the default level of Fashion-MNIST and CIFAR-10), walking up."""
    node = tree.leaf[c]
    while tree.depth[node] > depth:
        node = tree.parent[node]
    return node


def expected_section(y, clean, adv=None, syn=None):
    """The measures by a loop over the samples (adv None: the clean measurement, else the attack's mistakes).
    ``syn``: the class mapping (default Fashion-MNIST's shipped one); samples of unmapped classes are skipped, a
    mistake into an unmapped class is counted as unscored, and the top k ranks the mapped classes only."""
    syn = syn or load_builtin("fashion-mnist")
    mapped = [c for c in range(len(syn.classes)) if syn.wnids[c] is not None]
    tree = build_tree(syn.graph.hypernyms, [syn.wnids[c] for c in mapped])
    k = len(mapped)
    lca = [[literal_lca(tree, a, b) for b in range(k)] for a in range(k)]
    top_h = tree.height[tree.root]
    logits = clean if adv is None else adv
    mistakes, diffs, same, chance, counts, base = [], [], 0, 0.0, [0] * (top_h + 1), [0.0] * (top_h + 1)
    top = {1: [], 5: []} if k >= 10 else {1: []}
    unscored = 0
    groups = {}  # superclass node -> samples, right, mistakes, mistakes inside
    for i in range(len(y)):
        if int(y[i]) not in mapped:
            continue
        t, p = mapped.index(int(y[i])), int(np.argmax(logits[i]))
        g = groups.setdefault(literal_superclass(tree, t), {"n": 0, "right": 0, "mistakes": 0, "inside": 0})
        g["n"] += 1
        g["right"] += p == mapped[t]
        order = sorted(range(k), key=lambda c: (-logits[i][mapped[c]], c))
        for kk in top:
            top[kk].append(sum(lca[t][c] for c in order[:kk]) / kk)
        clean_ok = int(np.argmax(clean[i])) == mapped[t]
        if p == mapped[t] or (adv is not None and not clean_ok):
            continue
        if p not in mapped:
            unscored += 1
            continue
        p = mapped.index(p)
        h = lca[t][p]
        others = [lca[t][c] for c in range(k) if c != t]
        mistakes.append((t, p, h))
        diffs.append((t, p, h - sum(others) / len(others)))
        counts[h] += 1
        for o in others:
            base[o] += 1 / len(others)
        same += literal_superclass(tree, t) == literal_superclass(tree, p)
        g["mistakes"] += 1
        g["inside"] += literal_superclass(tree, t) == literal_superclass(tree, p)
        chance += (sum(literal_superclass(tree, c) == literal_superclass(tree, t) for c in range(k)) - 1) / (k - 1)
    heights = [h for _, _, h in sorted(mistakes)]
    n = len(heights)
    return {"n": n, "heights": heights, "diffs": [d for _, _, d in sorted(diffs)], "counts": counts,
            "base": base, "mean": sum(heights) / n, "median": float(np.median(heights)),
            "baseline_mean": sum(h - d for (_, _, h), (_, _, d) in zip(sorted(mistakes), sorted(diffs), strict=True)) / n,
            "same": same, "chance": chance / n, "top": {kk: sum(v) / len(v) for kk, v in top.items()},
            "top_values": top, "unscored": unscored,
            "superclasses": {syn.graph.names[tree.synset[node]]: {
                **g, "size": sum(literal_superclass(tree, c) == node for c in range(k))} for node, g in groups.items()},
            "classes": k}


def check(entry: dict, want: dict) -> None:
    assert entry["n"] == want["n"] > 0
    assert entry["n_unscored"] == want["unscored"]
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
    check_superclasses(entry, want)


def check_superclasses(entry: dict, want: dict) -> None:
    """The per-superclass rows and the test across superclasses against the literal loop's counts."""
    rows = {r["name"]: r for r in entry["by_superclass"]}
    assert {name for name, r in rows.items() if r["n"]} == set(want["superclasses"])
    for name, g in want["superclasses"].items():
        r = rows[name]
        assert (r["n"], r["correct"]) == (g["n"], g["right"])
        assert r["accuracy"] == g["right"] / g["n"] and r["accuracy_ci"] == proportion_interval(g["right"], g["n"])
        m = r["mistakes"]
        assert (m["k"], m["n"]) == (g["inside"], g["mistakes"])
        assert m["ci"] == proportion_interval(g["inside"], g["mistakes"])
        assert m["chance"] == pytest.approx((g["size"] - 1) / (want["classes"] - 1), abs=1e-15)
    test = entry["superclass_test"]
    have = [g for g in want["superclasses"].values() if g["n"]]
    hits, sizes = np.array([g["right"] for g in have]), np.array([g["n"] for g in have])
    assert test["n"] == sizes.sum() and test["groups"] == len(have)
    if hits.sum() in (0, sizes.sum()) or len(have) < 2:
        assert test["p_value"] is None and test["verdict"].startswith("nothing to compare")
        return
    table = np.stack([hits, sizes - hits], axis=1)
    if len(have) == 2:
        assert test["test"].startswith("Fisher") and test["p_value"] == pytest.approx(
            scipy.stats.fisher_exact(table).pvalue, rel=1e-12)
    else:
        assert test["statistic"] == pytest.approx(scipy.stats.chi2_contingency(table, correction=False).statistic,
                                                  rel=1e-12)
        assert test["p_value"] == pytest.approx(permutation_p(hits, sizes, test["statistic"]), abs=0.03)
    if test["p_value"] <= 0.05:
        acc = {name: g["right"] / g["n"] for name, g in want["superclasses"].items()}
        assert test["verdict"] == "differs across superclasses"
        assert acc[test["lowest"]] == min(acc.values()) and acc[test["highest"]] == max(acc.values())
    else:
        assert test["verdict"] == f"inconclusive at n = {sizes.sum()}" and test["lowest"] is None


def permutation_p(hits, sizes, observed: float, draws: int = 3000) -> float:
    """The chi-square test's p-value by shuffling the samples' right/wrong over their superclasses (a loop)."""
    rng = np.random.default_rng(123)
    outcomes = np.repeat([1, 0], [hits.sum(), sizes.sum() - hits.sum()])
    edges = np.cumsum(sizes)[:-1]
    extreme = 0
    for _ in range(draws):
        shuffled = rng.permutation(outcomes)
        right = np.array([part.sum() for part in np.split(shuffled, edges)])
        table = np.stack([right, sizes - right], axis=1)
        extreme += scipy.stats.chi2_contingency(table, correction=False).statistic >= observed - 1e-9
    return (1 + extreme) / (1 + draws)


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
    assert "]%" not in text  # a share with its interval carries one % sign: 96.7% [83.3, 99.4]
    p = panel(report)
    assert len(p["rows"]) == 2 and "<svg" in str(p["svg"])
    # the superclass lines and table: the level, each superclass with samples, the test across superclasses
    flat = " ".join(text.split())
    assert "superclasses: depth 1 of the class tree (the default" in flat
    sec = report["analyses"]["hierarchy"]
    sizes = {g["name"]: len(g["classes"]) for g in sec["superclasses"]}
    for row, adv in zip(sec["clean"]["by_superclass"], run["by_superclass"], strict=True):
        named = f"{sizes[row['name']]} class{'es' if sizes[row['name']] > 1 else ''}"
        assert f"{row['name']} ({named}, n {row['n']}): accuracy {pct(row['accuracy'])}" in flat
        assert f"fgsm@0.1 robust {pct(adv['accuracy'])}" in flat
    assert f"accuracy across superclasses: clean {sec['clean']['superclass_test']['verdict']}" in flat
    coarse = p["coarse"]
    assert [r["name"] for r in coarse["rows"]] == ["clothing.n.01", "footwear.n.02", "bag.n.04"]
    assert coarse["runs"] == [{"label": "fgsm@0.1", "accuracy_of": "robust accuracy"}]
    html = render_html(report)
    assert 'id="hierarchy"' in html and "Coarse robustness per superclass" in html
    assert coarse["rows"][0]["runs"][0][0] in html and coarse["tests"]["clean"] in html
    assert coarse["empty"] == "" and "without a sample" not in html
    # a superclass without samples is named below the table, not a row; a large one shows 12 names and its count
    import copy

    other = copy.deepcopy(report)
    osec = other["analyses"]["hierarchy"]
    osec["clean"]["by_superclass"][2]["n"] = 0
    osec["superclasses"][0]["classes"] = [f"class {i}" for i in range(30)]
    again = panel(other)["coarse"]
    assert [r["name"] for r in again["rows"]] == ["clothing.n.01", "footwear.n.02"]
    assert again["empty"] == "bag.n.04 (1)"
    assert again["rows"][0]["classes"] == ", ".join(f"class {i}" for i in range(12)) + " … (30 classes)"
    assert "Superclasses without a sample in this audit (classes): bag.n.04 (1)." in render_html(other)


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
        return HierarchyAnalysis(load_builtin("fashion-mnist"), runs=[run])

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

    hierarchy = HierarchyAnalysis(load_builtin("cifar10"))
    assert not AnalysisSuite(["features.1"], [hierarchy, HierarchyOff("why")]).tapping
    assert AnalysisSuite(["features.1"], [hierarchy, Analysis()]).tapping
    assert not AnalysisSuite([], [Analysis()]).tapping


# --- a user's class file against a WordNet folder (--class-synsets, --wordnet) ----------------------------------

CLOTHES = """\
00001740 03 n 01 entity 0 000 | that which is perceived or known
00002000 06 n 01 clothing 0 001 @ 00001740 n 0000 | worn
00002100 06 n 01 top 0 001 @ 00002000 n 0000 | worn above
00002101 06 n 01 tee 0 001 @ 00002100 n 0000 | a tee
00002102 06 n 01 pullover 0 001 @ 00002100 n 0000 | a pullover
00002103 06 n 01 shirt 0 001 @ 00002100 n 0000 | a shirt
00002200 06 n 01 trouser 0 001 @ 00002000 n 0000 | worn below
00003000 06 n 01 footwear 0 001 @ 00001740 n 0000 | worn on feet
00003001 06 n 01 sandal 0 001 @ 00003000 n 0000 | a sandal
00003002 06 n 01 sneaker 0 001 @ 00003000 n 0000 | a sneaker
00004000 06 n 01 bag 0 001 @ 00001740 n 0000 | a bag
"""
CLOTHES_INDEX = "".join(f"{w} n 1 1 @ 1 0 {o}\n" for w, o in (
    ("bag", "00004000"), ("clothing", "00002000"), ("entity", "00001740"), ("footwear", "00003000"),
    ("pullover", "00002102"), ("sandal", "00003001"), ("shirt", "00002103"), ("sneaker", "00003002"),
    ("tee", "00002101"), ("top", "00002100"), ("trouser", "00002200")))
CLASS_FILE = """\
# seven of Fashion-MNIST's ten classes; Dress and Coat not listed, Ankle boot left out on purpose
T-shirt/top\ttee.n.01
Trouser\ttrouser.n.01
Pullover\tn00002102
Shirt\tshirt.n.01
Sandal\tsandal.n.01
Sneaker\tsneaker.n.01
Bag\tbag.n.01
Ankle boot\t-
"""


def clothes_wordnet(folder: Path) -> Path:
    from tests.test_wordnet_data import tiny_wordnet

    return tiny_wordnet(folder, data=CLOTHES, index=CLOTHES_INDEX)


@pytest.fixture(scope="module")
def mapped_by_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synsets")
    folder, file = clothes_wordnet(tmp / "wn"), tmp / "classes.tsv"
    file.write_text(CLASS_FILE, encoding="utf-8")
    recorder = Recorder()
    result = run_audit(config(class_synsets=str(file), wordnet=str(folder)), analyses=[recorder])
    from audit.analyses.semantics.wordnet import load_class_synsets

    return result, recorder, load_class_synsets(file, folder, BUILTIN["fashion-mnist"]())


def test_a_class_file_maps_seven_classes_and_names_the_three_left_out(mapped_by_file):
    result, rec, syn = mapped_by_file
    sec = result.analyses["hierarchy"]
    assert sec["label_set"] == "fashion-mnist" and "classes.tsv" in sec["source"]
    assert sec["n_classes"] == 7 and sec["max_height"] == 3  # entity > clothing > top > tee
    assert set(sec["unmapped"]) == {"Dress", "Coat", "Ankle boot"}
    assert "on purpose" not in sec["unmapped"]["Dress"] and "not listed" in sec["unmapped"]["Dress"]
    assert "left unmapped" in sec["unmapped"]["Ankle boot"]
    groups = {g["name"]: set(g["classes"]) for g in sec["superclasses"]}
    assert groups == {"clothing.n.01": {"T-shirt/top", "Pullover", "Shirt", "Trouser"},
                      "footwear.n.01": {"Sandal", "Sneaker"}, "bag.n.01": {"Bag"}}
    y, clean = np.concatenate(rec.y), np.concatenate(rec.clean)
    check(sec["clean"], expected_section(y, clean, syn=syn))
    [run] = sec["adversarial"]
    want = expected_section(y, clean, np.concatenate(rec.adv[next(iter(rec.adv))]), syn=syn)
    check(run, want)
    assert want["unscored"] > 0  # the demo model's mistakes do land in Dress, Coat and Ankle boot


def test_the_left_out_classes_are_named_in_the_terminal(mapped_by_file):
    from rich.console import Console

    from audit.analyses.hierarchy.report import terminal

    console = Console(record=True, width=200)
    terminal(mapped_by_file[0], console)
    assert "left out, no synset: Dress, Coat, Ankle boot" in " ".join(console.export_text().split())


@pytest.mark.parametrize("case", ["unknown synset", "not wordnet", "unknown class", "alone"])
def test_bad_class_mappings_on_audit_run_are_one_line_exit_2_and_no_report(tmp_path, capsys, case):
    from audit.cli import main

    folder, file = clothes_wordnet(tmp_path / "wn"), tmp_path / "classes.tsv"
    text = {"unknown synset": CLASS_FILE.replace("sandal.n.01", "sandal.n.07"),
            "not wordnet": CLASS_FILE, "unknown class": CLASS_FILE + "Jumpsuit\ttee.n.01\n",
            "alone": CLASS_FILE}[case]
    file.write_text(text, encoding="utf-8")
    if case == "not wordnet":
        folder = tmp_path / "empty"
        folder.mkdir()
    out = tmp_path / "out"
    args = ["run", str(ASSETS / "fashion_cnn.safetensors"), "--arch", ARCH, "--data", "demo", "--classes",
            "fashion-mnist", "--samples", "8", "--attack", "fgsm", "--eps", "0.1", "--device", "cpu",
            "--layers", "none", "--out", str(out), "--class-synsets", str(file)]
    if case != "alone":
        args += ["--wordnet", str(folder)]
    with pytest.raises(SystemExit) as end:
        main(args)
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[audit]"))
    assert end.value.code == 2 and err.count("\n") == 0 and err.startswith("error: "), err
    assert {"unknown synset": "sandal.n.07", "not wordnet": "not a WordNet 3.0 dict folder",
            "unknown class": "'Jumpsuit' is not one of the model's classes",
            "alone": "--class-synsets and --wordnet go together"}[case] in err
    assert not (out / "report.json").exists() and not (out / "report.html").exists()


def test_resume_fingerprint_holds_the_classes_synsets():
    """An edited --class-synsets file (same path) must not resume onto sums counted under the old mapping."""
    from audit.data import open_data
    from audit.engine.distributed import world
    from audit.engine.execution import audit_fingerprint

    data = open_data("demo", samples=8, seed=0)
    one = world("cpu")
    base = audit_fingerprint({"seed": 0}, "abc", data, one)
    mapped = audit_fingerprint({"seed": 0}, "abc", data, one, synsets=("n1", None, "n2"))
    edited = audit_fingerprint({"seed": 0}, "abc", data, one, synsets=("n1", "n3", "n2"))
    assert len({json.dumps(fp, sort_keys=True) for fp in (base, mapped, edited)}) == 3
    assert audit_fingerprint({"seed": 0}, "abc", data, one, synsets=("n1", None, "n2")) == mapped


def test_superclass_counts_add_up_to_the_reports_own_totals(audited, mapped_by_file):
    result, _ = audited
    sec = result.analyses["hierarchy"]
    level = sec["superclass_level"]
    assert (level["how"], level["depth"], sec["superclass_depth"]) == ("default", 1, 1)
    assert "two thirds" in level["rule"]
    clean = sec["clean"]["by_superclass"]
    assert sum(r["n"] for r in clean) == result.clean["n"] == 60
    assert sum(r["correct"] for r in clean) == result.clean["n_correct"]
    for run, attack in zip(sec["adversarial"], result.attacks, strict=True):
        assert run["accuracy_of"] == "robust accuracy"
        assert sum(r["n"] for r in run["by_superclass"]) == result.clean["n"]
        assert sum(r["correct"] for r in run["by_superclass"]) == round(attack["robust_accuracy"] * result.clean["n"])
    # seven of ten classes mapped: the counts add up to the report's per-class counts of those seven
    result, _, syn = mapped_by_file
    sec = result.analyses["hierarchy"]
    mapped = {syn.classes[c] for c in syn.mapped}
    per_class = [c for c in result.clean["per_class"] if c["class"] in mapped]
    assert sum(r["n"] for r in sec["clean"]["by_superclass"]) == sum(c["n"] for c in per_class)
    assert sum(r["correct"] for r in sec["clean"]["by_superclass"]) == sum(round(c["accuracy"] * c["n"])
                                                                          for c in per_class)
    for run, attack in zip(sec["adversarial"], result.attacks, strict=True):
        robust = [c for c in attack["per_class_robust_accuracy"] if c["class"] in mapped]
        assert sum(r["correct"] for r in run["by_superclass"]) == sum(round(c["accuracy"] * c["n"]) for c in robust)
