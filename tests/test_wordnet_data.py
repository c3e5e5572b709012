"""WordNet: the dict-folder reader, the shipped class hierarchies of the built-in label sets, user class files.

The reader is checked against a literal, separately written parse of data.noun and index.noun lines; the shipped
files against a fresh derivation by scripts/make_wordnet_subset.py (both need Debian's wordnet-base at
/usr/share/wordnet and skip without it). A tiny hand-written WordNet folder exercises class files and bad input
everywhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from audit.analyses.semantics import wordnet as wn
from audit.data.labels import BUILTIN, imagenet_wnids
from audit.errors import AuditError

REPO = Path(__file__).resolve().parent.parent
WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="WordNet 3.0 not installed")
MAPPED_SETS = ("cifar10", "cifar100", "fashion-mnist", "imagenet-1k")


@pytest.fixture(scope="module")
def full():
    if not (WORDNET / "data.noun").is_file():
        pytest.skip("WordNet 3.0 not installed")
    return wn.read_wordnet(WORDNET)


def path_up(graph, wnid: str) -> set[str]:
    """All ancestors of a synset (itself included), by plain recursion."""
    out = {wnid}
    for h in graph.hypernyms[wnid]:
        out |= path_up(graph, h)
    return out


# ---- the shipped files ----------------------------------------------------------------------------------------

def test_imagenet_1000_of_1000_classes_mapped_from_the_shipped_file():
    cs = wn.load_builtin("imagenet-1k")
    assert cs.classes == tuple(BUILTIN["imagenet-1k"]())
    assert cs.wnids == tuple(imagenet_wnids())
    assert len(cs.mapped) == 1000 and cs.unmapped == {}
    assert all(w in cs.graph.hypernyms for w in cs.wnids)
    assert cs.senses[0] == "tench.n.01" and cs.wnids[0] == "n01440764"
    assert 1500 < len(cs.graph.hypernyms) < 2500  # compact: the classes and their ancestors only


@pytest.mark.parametrize("label_set", MAPPED_SETS)
def test_every_class_reaches_entity_and_the_graph_is_closed(label_set):
    cs = wn.load_builtin(label_set)
    assert list(cs.classes) == BUILTIN[label_set]() and None not in cs.wnids
    g = cs.graph
    assert all(h in g.hypernyms for hs in g.hypernyms.values() for h in hs)
    assert g.hypernyms[wn.ROOT] == () and g.names[wn.ROOT] == "entity.n.01"
    assert [w for w, hs in g.hypernyms.items() if not hs] == [wn.ROOT]
    for wnid in cs.wnids:
        assert wn.ROOT in path_up(g, wnid)
    # nothing but the classes and their ancestors
    assert set(g.hypernyms) == set().union(*(path_up(g, w) for w in cs.wnids))
    assert [g.names[w] for w in cs.wnids] == list(cs.senses)


def test_cifar10_cat_and_dog_share_carnivore_which_truck_does_not():
    cs = wn.load_builtin("cifar10")
    assert len(cs.mapped) == 10
    g = cs.graph
    by_class = dict(zip(cs.classes, cs.wnids, strict=True))
    carnivore = g.lookup("carnivore.n.01")
    assert carnivore == "n02075296"
    cat, dog, truck = (path_up(g, by_class[c]) for c in ("cat", "dog", "truck"))
    assert carnivore in cat & dog and carnivore not in truck
    animal, vehicle = g.lookup("animal.n.01"), g.lookup("vehicle.n.01")
    for c in ("bird", "cat", "deer", "dog", "frog", "horse"):
        assert animal in path_up(g, by_class[c]) and vehicle not in path_up(g, by_class[c])
    for c in ("airplane", "automobile", "ship", "truck"):
        assert vehicle in path_up(g, by_class[c]) and animal not in path_up(g, by_class[c])
    assert cs.senses[cs.classes.index("cat")] == "domestic_cat.n.01"


def test_curated_senses_of_ambiguous_classes():
    senses = {}
    for label_set in ("cifar100", "fashion-mnist"):
        cs = wn.load_builtin(label_set)
        senses.update(zip(cs.classes, zip(cs.wnids, cs.senses, strict=True), strict=True))
    assert senses["mouse"] == ("n02330245", "mouse.n.01")  # the rodent, not the computer mouse
    assert senses["Trouser"] == ("n04489008", "trouser.n.01")
    assert senses["turtle"] == ("n01662784", "turtle.n.02")  # the reptile, not the turtleneck
    assert senses["Bag"] == ("n02774152", "bag.n.04")  # the handbag
    assert senses["maple_tree"][1] == "maple.n.02" and senses["pickup_truck"][1] == "pickup.n.01"


def test_mnist_and_unknown_sets_have_no_hierarchy_and_say_why():
    assert wn.load_builtin("mnist") is None
    assert "digit.n.01" in wn.no_hierarchy_reason("mnist")
    assert wn.load_builtin("my-classes") is None
    assert "--class-synsets" in wn.no_hierarchy_reason("my-classes")
    assert wn.no_hierarchy_reason("CIFAR10") is None and wn.load_builtin("CIFAR10").classes[0] == "airplane"


@needs_wordnet
def test_shipped_files_equal_a_fresh_derivation_byte_for_byte(tmp_path):
    """The script run twice (in a fresh process with its own hash seed, and in this one) gives the shipped
    files exactly."""
    outs = []
    for run in ("subprocess", "in-process"):
        out = tmp_path / run
        args = ["--wordnet", str(WORDNET), "--out", str(out), "--docs", str(out / "senses.md")]
        if run == "subprocess":
            env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
            subprocess.run([sys.executable, str(REPO / "scripts" / "make_wordnet_subset.py"), *args], check=True,
                           env=env, capture_output=True)
        else:
            sys.path.insert(0, str(REPO / "scripts"))
            try:
                import make_wordnet_subset
            finally:
                sys.path.remove(str(REPO / "scripts"))
            make_wordnet_subset.main(args)
        outs.append(out)
    shipped = wn.DATA_DIR
    names = sorted(p.name for p in shipped.glob("wordnet-*.json"))
    assert names == [f"wordnet-{s}.json" for s in sorted(MAPPED_SETS)]
    notice = (shipped / "NOTICE.txt").read_text(encoding="utf-8")
    for out in outs:
        assert sorted(p.name for p in out.glob("wordnet-*.json")) == names
        for name in names:
            assert (out / name).read_bytes() == (shipped / name).read_bytes(), name
        assert (out / "senses.md").read_bytes() == (REPO / "docs" / "wordnet-senses.md").read_bytes()
        assert (out / "NOTICE.txt").read_text(encoding="utf-8") == notice[notice.index(wn.NOTICE_MARK):]


# ---- the reader against a literal parse -----------------------------------------------------------------------

def literal_hypernyms(offset: str) -> list[str]:
    """The @ and @i targets of one data.noun line, found with a regular expression over the line."""
    with open(WORDNET / "data.noun", encoding="latin-1") as fh:
        line = next(x for x in fh if x.startswith(offset + " "))
    head = line.split(" | ")[0]
    return ["n" + m for m in re.findall(r" @i? (\d{8}) n [0-9a-f]{4}", head)]


def literal_sense(lemma: str, k: int) -> str:
    with open(WORDNET / "index.noun", encoding="latin-1") as fh:
        line = next(x for x in fh if x.startswith(lemma + " n "))
    return "n" + re.findall(r"\b\d{8}\b", line)[k - 1]


@pytest.mark.parametrize("offset", ["02121808", "00001740", "00060548", "04489008", "02084071", "03930630",
                                    "09918554", "13742358"])
def test_hypernyms_equal_a_literal_parse_of_the_data_line(full, offset):
    assert list(full.hypernyms["n" + offset]) == literal_hypernyms(offset)


def test_reader_counts_names_and_lookups(full):
    assert len(full.hypernyms) == 82115  # WordNet 3.0's noun synsets
    assert full.hypernyms["n02121808"] == ("n02121620", "n01317541")  # domestic cat: cat, domestic animal
    assert full.hypernyms["n00060548"] == ("n00058743",)  # Hegira: an instance (@i) of a flight
    assert full.names["n02121808"] == "domestic_cat.n.01"
    assert full.names["n00060548"] == "hegira.n.01"
    for name, (lemma, k) in {"trouser.n.01": ("trouser", 1), "mouse.n.04": ("mouse", 4),
                             "pickup_truck.n.01": ("pickup_truck", 1), "bag.n.04": ("bag", 4),
                             "Domestic_Cat.n.01": ("domestic_cat", 1)}.items():
        assert full.lookup(name) == literal_sense(lemma, k)
    assert full.lookup("n04489008") == "n04489008"
    assert full.names[full.lookup("pickup_truck.n.01")] == "pickup.n.01"
    assert wn.read_wordnet(str(WORDNET)) is full  # parsed once


def test_ancestors_keep_the_synsets_and_everything_above(full):
    sub = wn.ancestors(full, ["n02121808", "n04490091"])
    assert set(sub.hypernyms) == path_up(full, "n02121808") | path_up(full, "n04490091")
    assert all(sub.hypernyms[w] == full.hypernyms[w] and sub.names[w] == full.names[w] for w in sub.hypernyms)


# ---- a tiny WordNet folder: class files and bad input ---------------------------------------------------------

HEADER = "  1 This software and database is being provided to you\n" \
         "  2 WordNet {v} Copyright 2006 by Princeton University.  All rights reserved.  \n"
DATA = """\
00001740 03 n 01 entity 0 000 | that which is perceived or known
00002000 03 n 01 animal 0 001 @ 00001740 n 0000 | a living organism
00003000 05 n 02 cat 0 true_cat 0 001 @ 00002000 n 0000 | a feline mammal
00004000 05 n 01 dog 0 001 @ 00002000 n 0000 | a canine | with a bar in the gloss
00005000 06 n 01 truck 0 001 @ 00001740 n 0000 | a motor vehicle
00006000 06 n 01 Cat 1 002 @i 00005000 n 0000 ~ 00004000 n 0000 | a tracked vehicle
"""
INDEX = """\
animal n 1 1 @ 1 0 00002000
cat n 2 3 @ @i ~ 2 0 00003000 00006000
dog n 1 1 @ 1 0 00004000
entity n 1 0 1 0 00001740
true_cat n 1 1 @ 1 0 00003000
truck n 1 1 @ 1 0 00005000
"""


def tiny_wordnet(folder: Path, version="3.0", data=DATA, index=INDEX) -> Path:
    """Written as WordNet writes its files: two spaces end every line."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("data.noun", data), ("index.noun", index)):
        body = "".join(line + "  \n" for line in text.splitlines())
        (folder / name).write_text(HEADER.format(v=version) + body, encoding="utf-8")
    return folder


def one_line_error(call, *words):
    with pytest.raises(AuditError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg
    for word in words:
        assert word in msg, msg
    return msg


def test_tiny_folder_reads_as_written(tmp_path):
    g = wn.read_wordnet(tiny_wordnet(tmp_path / "wn"))
    assert g.hypernyms == {"n00001740": (), "n00002000": ("n00001740",), "n00003000": ("n00002000",),
                           "n00004000": ("n00002000",), "n00005000": ("n00001740",), "n00006000": ("n00005000",)}
    assert g.names["n00003000"] == "cat.n.01" and g.names["n00006000"] == "cat.n.02"
    assert g.lookup("true_cat.n.01") == "n00003000" and g.lookup("cat.n.02") == "n00006000"
    assert g.glosses["n00004000"] == "a canine | with a bar in the gloss"


def test_class_file_maps_named_classes_and_names_the_rest(tmp_path):
    folder = tiny_wordnet(tmp_path / "wn")
    f = tmp_path / "classes.tsv"
    f.write_text("# class<TAB>synset\n\nCat\tcat.n.01\ndog\tn00004000\ntruck\t-\n", encoding="utf-8")
    cs = wn.load_class_synsets(f, folder, ["cat", "dog", "truck", "bird"])
    assert cs.classes == ("cat", "dog", "truck", "bird")
    assert cs.wnids == ("n00003000", "n00004000", None, None)
    assert cs.senses == ("cat.n.01", "dog.n.01", None, None)
    assert cs.mapped == [0, 1]
    assert cs.unmapped == {"truck": "left unmapped in classes.tsv (line 5)", "bird": "not listed in classes.tsv"}
    assert set(cs.graph.hypernyms) == {"n00001740", "n00002000", "n00003000", "n00004000"}


@pytest.mark.parametrize("line, words", [
    ("cat\thorse.n.01", ["line 1", "unknown WordNet synset 'horse.n.01'", "no noun 'horse'"]),
    ("cat\tcat.n.03", ["'cat' has 2 noun senses"]),
    ("cat\trun.v.01", ["not a noun synset"]),
    ("cat\tn09999999", ["no noun synset n09999999"]),
    ("cat\tfeline", ["neither a WordNet synset name"]),
    ("horse\tcat.n.01", ["class 'horse' is not one of the model's classes", "'cat', 'dog'"]),
    ("cat cat.n.01", ["expected 'class<TAB>synset'"]),
    ("cat\tcat.n.01\ncat\tcat.n.02", ["line 2", "mapped twice (also on line 1)"]),
])
def test_bad_class_files_are_one_line_errors(tmp_path, line, words):
    folder = tiny_wordnet(tmp_path / "wn")
    f = tmp_path / "classes.tsv"
    f.write_text(line + "\n", encoding="utf-8")
    one_line_error(lambda: wn.load_class_synsets(f, folder, ["cat", "dog"]), str(f), *words)


def test_folders_that_are_not_wordnet_3_0_are_one_line_errors(tmp_path):
    f = tmp_path / "c.tsv"
    f.write_text("cat\tcat.n.01\n", encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(lambda: wn.load_class_synsets(f, empty, ["cat"]), "not a WordNet 3.0 dict folder",
                   "no data.noun and no index.noun")
    one_line_error(lambda: wn.read_wordnet(tmp_path / "absent"), "no such folder")
    one_line_error(lambda: wn.read_wordnet(tiny_wordnet(tmp_path / "v31", version="3.1")), "holds WordNet 3.1")
    one_line_error(lambda: wn.read_wordnet(tiny_wordnet(tmp_path / "junk", data=DATA + "hello world\n")),
                   "line 9 of data.noun is not a noun synset line")
    one_line_error(lambda: wn.read_wordnet(tiny_wordnet(tmp_path / "verb", data=DATA.replace(" n 01 dog",
                                                                                              " v 01 dog"))),
                   "line 6 of data.noun")
    one_line_error(lambda: wn.read_wordnet(tiny_wordnet(tmp_path / "idx", index=INDEX.replace("dog n 1", "dog n 2"))),
                   "index.noun is not an index line")
    one_line_error(lambda: wn.read_wordnet(tiny_wordnet(tmp_path / "dangling",
                                                        data=DATA.replace("@ 00001740 n 0000 | a motor",
                                                                          "@ 00007777 n 0000 | a motor"))),
                   "n00007777")
    nohead = tiny_wordnet(tmp_path / "nohead")
    (nohead / "data.noun").write_text(DATA, encoding="utf-8")
    one_line_error(lambda: wn.read_wordnet(nohead), "data.noun has no WordNet licence header")
    one_line_error(lambda: wn.load_class_synsets(tmp_path / "missing.tsv", empty, ["cat"]),
                   "cannot read the class-synsets file")
