"""WordNet as a second semantic space (--semantic-space): its 2v2, RSA, permutation p and 1 vs 2 against a literal
computation (Wu-Palmer by hand on a tiny tree), the GloVe figures unchanged beside it, the RSA between the spaces,
the default choice, the bad inputs, and what the terminal, the page and the gates show."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from markupsafe import escape
import scipy.stats

from audit import AuditConfig, run_audit
from audit.analyses.base import Analysis, Batch
from audit.analyses.semantics.space import choose_spaces
from audit.demo import ARCH, ASSETS
from audit.errors import AuditError
from tests.test_hierarchy_audit import CLASS_FILE, clothes_wordnet

LAST = "classifier.2"
# the tiny WordNet of tests/test_hierarchy_audit.py (CLOTHES), written out as a tree: node -> parent
PARENT = {"entity": None, "clothing": "entity", "top": "clothing", "tee": "top", "pullover": "top", "shirt": "top",
          "trouser": "clothing", "footwear": "entity", "sandal": "footwear", "sneaker": "footwear", "bag": "entity"}
# the classes CLASS_FILE maps, in Fashion-MNIST's order, and their nodes
MAPPED = {"T-shirt/top": "tee", "Trouser": "trouser", "Pullover": "pullover", "Sandal": "sandal", "Shirt": "shirt",
          "Sneaker": "sneaker", "Bag": "bag"}


def config(**kw) -> AuditConfig:
    base = dict(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo", classes="fashion-mnist",
                attacks=["fgsm"], eps="0.1", samples=100, batch_size=50, device="cpu", permutations=200)
    return AuditConfig(**{**base, **kw})


def path_up(node: str) -> list[str]:
    out = []
    while node is not None:
        out.append(node)
        node = PARENT[node]
    return out


def wup_by_hand(a: str, b: str) -> float:
    """Wu-Palmer on a tree: 2 depth(lcs) / (depth(a) + depth(b)), the root at depth 1."""
    up_a, up_b = path_up(a), path_up(b)
    lcs = next(n for n in up_a if n in up_b)
    return 2 * len(path_up(lcs)) / (len(up_a) + len(up_b))


class Recorder(Analysis):
    """Each batch's labels, clean logits and last-layer pooled vectors, and the same under the attack."""

    key = "recorder"

    def __init__(self):
        self.y, self.clean, self.clean_pooled, self.adv, self.adv_pooled = [], [], [], [], []

    def on_clean(self, batch: Batch) -> None:
        self.y.append(batch.y.numpy().copy())
        self.clean.append(batch.logits.detach().double().numpy().copy())
        self.clean_pooled.append(batch.tap.pooled[LAST].detach().double().numpy().copy())

    def on_adversarial(self, run, batch: Batch) -> None:
        self.adv.append(batch.logits.detach().double().numpy().copy())
        self.adv_pooled.append(batch.tap.pooled[LAST].detach().double().numpy().copy())


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spaces")
    folder, file = clothes_wordnet(tmp / "wn"), tmp / "classes.tsv"
    file.write_text(CLASS_FILE, encoding="utf-8")
    recorder = Recorder()
    result = run_audit(config(class_synsets=str(file), wordnet=str(folder)), analyses=[recorder])
    return result, recorder, {"class_synsets": str(file), "wordnet": str(folder)}


def r(a, b) -> float:
    return np.corrcoef(a, b)[0, 1]


def literal_two_vs_two(a: np.ndarray, b: np.ndarray) -> float:
    """The 2 vs 2 share written out; a pair whose two rows of ``b`` are the same (sister synsets) is a tie, a
    failure by the strict >."""
    n, hits = len(a), 0
    for i, j in itertools.combinations(range(n), 2):
        keep = [k for k in range(n) if k not in (i, j)]
        if np.array_equal(b[i][keep], b[j][keep]):
            continue
        margin = r(a[i][keep], b[i][keep]) + r(a[j][keep], b[j][keep]) - r(a[i][keep], b[j][keep]) \
            - r(a[j][keep], b[i][keep])
        assert abs(margin) > 1e-9, (i, j, margin)  # the analysis counts in another order: no decision within rounding
        hits += margin > 0
    return hits / (n * (n - 1) / 2)


def upper(m: np.ndarray) -> np.ndarray:
    return np.array([m[i, j] for i, j in itertools.combinations(range(len(m)), 2)])


def test_wordnet_figures_equal_a_literal_computation_with_wu_palmer_by_hand(both):
    result, _, _ = both
    sem = result.analyses["semantics"]
    arrays = result.artifacts["representations"]
    names = list(arrays["classes"])  # the word space's classes: all ten
    wn = sem["spaces"]["wordnet"]
    assert sem["space"] == "glove" and sem["space_choice"]["chosen"] == ["glove", "wordnet"]
    assert wn["classes_used"] == list(MAPPED)  # the three unmapped classes are left out, and named
    assert set(wn["coverage"]["missing_in_sample"]) == {"Dress", "Coat", "Ankle boot"}
    assert "WordNet synset" in " ".join(wn["notes"]) and "Dress" in " ".join(wn["notes"])
    wup = np.array([[wup_by_hand(MAPPED[a], MAPPED[b]) for b in MAPPED] for a in MAPPED])
    assert wup[0, 2] == pytest.approx(0.75) and wup[0, 6] == pytest.approx(2 / 6)  # tee-pullover, tee-bag
    assert np.allclose(arrays["space:wordnet:similarity"], wup, atol=1e-12)
    rows = [names.index(c) for c in MAPPED]
    for layer in wn["layers"]:
        reps = arrays[f"layer:{layer['name']}:representations"][rows]
        net = np.array([[r(a, b) for b in reps] for a in reps])
        assert layer["clean"]["two_vs_two"] == pytest.approx(literal_two_vs_two(net, wup), abs=1e-12)
        assert layer["clean"]["rsa"] == pytest.approx(scipy.stats.spearmanr(upper(net), upper(wup)).statistic,
                                                      abs=1e-12)
    # the label-permutation p of the last layer: the same draws, each permuted 2v2 written out
    reps = arrays[f"layer:{LAST}:representations"][rows]
    net = np.array([[r(a, b) for b in reps] for a in reps])
    rng = np.random.default_rng(sem["seed"])
    observed = wn["layers"][-1]["clean"]["two_vs_two"]
    null = []
    for _ in range(sem["permutations"]):
        p = rng.permutation(len(wup))
        null.append(literal_two_vs_two_loose(net, wup[p][:, p]))
    expected = (1 + sum(v >= observed - 1e-12 for v in null)) / (1 + sem["permutations"])
    assert wn["layers"][-1]["clean"]["p_value_raw"] == pytest.approx(expected)
    raw = [layer["clean"]["p_value_raw"] for layer in wn["layers"]]
    assert [layer["clean"]["p_value"] for layer in wn["layers"]] == pytest.approx(
        scipy.stats.false_discovery_control(raw, method="bh"))


def literal_two_vs_two_loose(a: np.ndarray, b: np.ndarray) -> float:
    """As literal_two_vs_two, for permuted matrices (a tie counts as a failure, as the analysis counts it)."""
    n, hits = len(a), 0
    for i, j in itertools.combinations(range(n), 2):
        keep = [k for k in range(n) if k not in (i, j)]
        margin = r(a[i][keep], b[i][keep]) + r(a[j][keep], b[j][keep]) - r(a[i][keep], b[j][keep]) \
            - r(a[j][keep], b[i][keep])
        hits += margin > 1e-9
    return hits / (n * (n - 1) / 2)


def test_wordnet_one_vs_two_counts_equal_a_literal_loop_over_the_adversarials(both):
    result, rec, _ = both
    arrays = result.artifacts["representations"]
    names = list(arrays["classes"])
    used = [names.index(c) for c in MAPPED]
    node = {names.index(c): MAPPED[c] for c in MAPPED}
    reps = {c: arrays[f"layer:{LAST}:representations"][c] for c in used}
    cells = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    tied = 0
    for y, clean, clean_pooled, adv, adv_pooled in zip(rec.y, rec.clean, rec.clean_pooled, rec.adv, rec.adv_pooled,
                                                       strict=True):
        for i in range(len(y)):
            s, t = int(y[i]), int(adv[i].argmax())
            if clean[i].argmax() != s or t == s or s not in node or t not in node:
                continue
            refs = [c for c in used if c not in (s, t)]
            if [wup_by_hand(node[s], node[c]) for c in refs] == [wup_by_hand(node[t], node[c]) for c in refs]:
                tied += 1  # sister classes: WordNet does not tell them apart over the references, nothing to score
                continue
            decisions = []
            for image in (adv_pooled[i], clean_pooled[i]):
                prof = [r(image, reps[c]) for c in refs]
                margin = r(prof, [wup_by_hand(node[s], node[c]) for c in refs]) - \
                    r(prof, [wup_by_hand(node[t], node[c]) for c in refs])
                assert abs(margin) > 1e-9
                decisions.append(bool(margin > 0))
            cells[tuple(decisions)] += 1
    [flip] = result.analyses["semantics"]["spaces"]["wordnet"]["one_vs_two"]
    expected = [cells[True, True], cells[True, False], cells[False, True], cells[False, False]]
    assert flip["paired"]["counts"][-1] == expected and flip["n_scored"] == sum(expected) > 5
    assert tied > 0 and flip["n_tied"] == tied  # e.g. T-shirt/top taken for Pullover or Shirt
    assert flip["source_like"][-1] == pytest.approx((expected[0] + expected[1]) / sum(expected))
    assert flip["source_like_clean"][-1] == pytest.approx((expected[0] + expected[2]) / sum(expected))
    # the GloVe 1 vs 2 scores errors into Dress, Coat and Ankle boot too: it counts more adversarials
    assert result.analyses["semantics"]["one_vs_two"][0]["n_scored"] > flip["n_scored"]


def test_the_rsa_between_the_spaces_equals_scipy_spearman_and_its_permutation_p(both):
    result, _, _ = both
    sem = result.analyses["semantics"]
    arrays = result.artifacts["representations"]
    names = list(arrays["classes"])
    vectors = arrays["word_vectors"][[names.index(c) for c in MAPPED]]
    glove = np.array([[r(a, b) for b in vectors] for a in vectors])
    wup = np.array([[wup_by_hand(MAPPED[a], MAPPED[b]) for b in MAPPED] for a in MAPPED])
    between = sem["between_spaces"]
    assert between["classes"] == list(MAPPED) and between["n_classes"] == 7
    observed = scipy.stats.spearmanr(upper(glove), upper(wup)).statistic
    assert between["rsa"] == pytest.approx(observed, abs=1e-12)
    rng = np.random.default_rng(sem["seed"])
    null = []
    for _ in range(sem["permutations"]):
        p = rng.permutation(7)
        null.append(scipy.stats.spearmanr(upper(glove), upper(wup[p][:, p])).statistic)
    assert between["p_value"] == pytest.approx((1 + sum(v >= observed - 1e-12 for v in null)) / (1 + len(null)))


def test_both_spaces_leave_the_glove_figures_as_a_glove_only_audit_gives_them(both):
    result, _, given = both
    alone = run_audit(config(semantic_space="glove", **given)).analyses["semantics"]
    sem = result.analyses["semantics"]
    for key in ("layers", "pixels", "one_vs_two", "severity", "interpretation", "notes", "classes_used", "coverage"):
        assert sem[key] == alone[key], key
    assert alone["space_choice"] == {"requested": "glove", "chosen": ["glove"], "why": "--semantic-space glove"}
    assert list(alone["spaces"]) == ["glove"] and "between_spaces" not in alone


def test_wordnet_alone_puts_its_figures_in_the_main_fields(both):
    result, _, given = both
    alone = run_audit(config(semantic_space="wordnet", **given))
    sem = alone.analyses["semantics"]
    wn = result.analyses["semantics"]["spaces"]["wordnet"]
    assert sem["space"] == "wordnet" and list(sem["spaces"]) == ["wordnet"]
    for key in ("layers", "pixels", "one_vs_two", "interpretation", "classes_used"):
        assert sem[key] == wn[key], key
    assert sem["severity"] == result.analyses["semantics"]["severity"]  # severity stays a word-vector distance
    assert "agrees best with WordNet (Wu-Palmer) similarity" in sem["interpretation"]
    from reports.gates import metrics

    m = metrics(alone.to_dict())
    assert m[f"semantics.two_vs_two[{LAST}]"] == m[f"semantics.wordnet.two_vs_two[{LAST}]"] == \
        wn["layers"][-1]["clean"]["two_vs_two"]


def test_the_default_is_both_when_the_classes_map_and_glove_otherwise():
    from audit.analyses.semantics.wordnet import NOT_BUILTIN, audit_synsets, load_builtin

    mapped = load_builtin("fashion-mnist")
    assert choose_spaces(None, mapped) == (("glove", "wordnet"), "default: both, since the classes map to WordNet")
    chosen, why = choose_spaces(None, NOT_BUILTIN)
    assert chosen == ("glove",) and NOT_BUILTIN in why
    assert choose_spaces("glove", mapped)[0] == choose_spaces("glove", NOT_BUILTIN)[0] == ("glove",)
    assert choose_spaces("wordnet", mapped)[0] == ("wordnet",)
    reason = audit_synsets([str(d) for d in range(10)])
    assert isinstance(reason, str)
    for asked in ("wordnet", "both"):
        with pytest.raises(AuditError, match=f"--semantic-space {asked} needs the classes mapped to WordNet"):
            choose_spaces(asked, reason)
    # in an audit: Fashion-MNIST's shipped mapping gives both; class names of no built-in set give GloVe alone
    sem = run_audit(config(samples=20, permutations=20)).analyses["semantics"]
    assert sem["space_choice"]["chosen"] == ["glove", "wordnet"] and sem["space_choice"]["requested"] is None
    assert "fashion-mnist, shipped" in sem["spaces"]["wordnet"]["source"] and "rsa" in sem["between_spaces"]
    names = "jersey,slacks,sweater,gown,jacket,flipflop,blouse,trainer,purse,boot"
    sem = run_audit(config(classes=names, samples=20, permutations=20)).analyses["semantics"]
    assert sem["space_choice"]["chosen"] == ["glove"] and list(sem["spaces"]) == ["glove"]
    assert "not a built-in label set" in sem["space_choice"]["why"] and "between_spaces" not in sem


@pytest.mark.parametrize("case", ["wordnet for mnist", "both for custom names", "unknown space"])
def test_bad_space_choices_are_one_line_exit_2_and_no_report(tmp_path, capsys, case):
    from audit.cli import main

    out = tmp_path / "out"
    classes, space = {"wordnet for mnist": ("mnist", "wordnet"),
                      "both for custom names": ("a,b,c,d,e,f,g,h,i,j", "both"),
                      "unknown space": ("fashion-mnist", "fasttext")}[case]
    with pytest.raises(SystemExit) as end:
        main(["run", str(ASSETS / "fashion_cnn.safetensors"), "--arch", ARCH, "--data", "demo", "--classes", classes,
              "--samples", "8", "--attack", "fgsm", "--eps", "0.1", "--device", "cpu", "--out", str(out),
              "--semantic-space", space])
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not line.startswith("[audit]"))
    assert end.value.code == 2 and err.count("\n") == 0 and err.startswith("error: "), err
    assert {"wordnet for mnist": "MNIST's classes are the digits",
            "both for custom names": "not a built-in label set",
            "unknown space": "--semantic-space must be glove, wordnet or both, got 'fasttext'"}[case] in err
    assert not (out / "report.json").exists() and not (out / "report.html").exists()


def test_terminal_page_gates_and_schema_show_both_spaces(both):
    import jsonschema
    from rich.console import Console

    from audit.analyses.semantics.report import terminal
    from reports.gates import metrics
    from reports.html import render_html
    from reports.schema import SCHEMA_PATH

    result, _, _ = both
    report = json.loads(result.to_json())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    sem = report["analyses"]["semantics"]
    wn, between = sem["spaces"]["wordnet"], sem["between_spaces"]
    console = Console(record=True, width=200)
    terminal(result, console)
    text = " ".join(console.export_text().split())
    assert "2 vs 2 against word vectors and WordNet (Wu-Palmer)" in text  and "clean FDR 2v2 clean FDR" in text
    assert "layer GloVe p fgsm@0.1 WordNet p" in text
    glove, mine = sem["layers"][-1], wn["layers"][-1]
    assert (f"{LAST} {glove['clean']['two_vs_two']:.2f} {glove['clean']['p_value']:.3f} "
            f"{glove['adversarial'][0]['two_vs_two']:.2f} {mine['clean']['two_vs_two']:.2f} "
            f"{mine['clean']['p_value']:.3f}") in text
    assert f"RSA between GloVe and WordNet: {between['rsa']:.2f}" in text
    assert ("agree, significantly" in text) == (between["p_value"] < sem["alpha"])
    assert f"Against WordNet: {wn['interpretation'][:1].lower()}{wn['interpretation'][1:]}" in text
    html = " ".join(render_html(report).split())
    assert "Semantic spaces side by side" in html and f"RSA between GloVe and WordNet: {between['rsa']:.2f}" in html
    assert "Clean 2 vs 2 accuracy per layer against each semantic space" in html
    assert f"Against WordNet: {escape(wn['interpretation'][:1].lower() + wn['interpretation'][1:])}" in html
    m = metrics(report)
    for layer, mine in zip(sem["layers"], wn["layers"], strict=True):
        assert m[f"semantics.two_vs_two[{layer['name']}]"] == layer["clean"]["two_vs_two"]
        assert m[f"semantics.wordnet.two_vs_two[{mine['name']}]"] == mine["clean"]["two_vs_two"]
