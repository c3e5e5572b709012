"""WordNet 3.0 nouns: the hypernym graph, read from a dict folder or from the files shipped for the built-in sets.

``read_wordnet(folder)`` parses a WordNet 3.0 dict folder (Princeton's ``dict/`` or Debian's
``/usr/share/wordnet``: ``data.noun`` and ``index.noun``, format wndb(5)) into a ``NounGraph``: for every noun
synset, keyed by its wnid (``n`` + the 8-digit ``data.noun`` offset, as ImageNet names its classes), the
hypernyms (``@`` and instance hypernyms ``@i``, in the order of the line) and the synset name
(``domestic_cat.n.01``: the synset's first word, lower-cased, and its sense number, the position of the synset
among that lemma's offsets in ``index.noun``). ``NounGraph.lookup`` turns a synset name (of any of the synset's
lemmas, ``pants.n.01`` as well as ``trouser.n.01``) or a wnid into the wnid. ``ancestors`` keeps the given
synsets and everything above them.

Classes map to synsets in two ways:

- ``load_builtin(label_set)`` reads ``data/wordnet-<set>.json``, made by ``scripts/make_wordnet_subset.py``
  (ImageNet-1k by its wnids; CIFAR-10, CIFAR-100 and Fashion-MNIST by a curated table, docs/wordnet-senses.md).
  MNIST is not mapped (``SKIPPED`` says why); ``no_hierarchy_reason`` gives the reason for any label set that
  has no shipped mapping. No WordNet installation is needed for the built-in sets.
- ``load_class_synsets(file, wordnet_folder, class_names)`` reads a user's ``class<TAB>synset`` file (a synset
  name or a wnid; an empty second field or ``-`` leaves the class out on purpose) against a WordNet folder.
  A class the file does not map is returned unmapped with its reason, never guessed.

``audit_synsets(names, class_synsets, wordnet)`` is what an audit uses: the user's file when given, else the
shipped mapping of the built-in label set whose names the audit's classes are (``label_set_of``), else the
reason there is none (a string).

Bad input (a folder that is not WordNet 3.0, an unknown synset, a class the model does not have) raises a
one-line ``AuditError``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audit.analyses.semantics.embeddings import DATA_DIR
from audit.analyses.semantics.hierarchy import ClassTree, build_tree, wu_palmer_matrix
from audit.data.labels import BUILTIN, norm_name
from audit.errors import AuditError

NOTICE_MARK = "WordNet hierarchies"  # starts the WordNet section of data/NOTICE.txt
ROOT = "n00001740"  # entity.n.01, the one root of WordNet 3.0's nouns
HYPERNYM_POINTERS = ("@", "@i")
SKIPPED = {
    "mnist": "MNIST's classes are the digits 0-9, and in WordNet all ten are sister synsets directly under "
             "digit.n.01, so every mistake would be equally severe: no hierarchy is used",
}
_WNID = re.compile(r"^n\d{8}$")
_NAME = re.compile(r"^(.+)\.([nvasr])\.(\d+)$")


@dataclass(frozen=True)
class NounGraph:
    """WordNet noun synsets by wnid: ``hypernyms`` (``@`` and ``@i`` targets, file order) and ``names``
    (``domestic_cat.n.01``). ``senses`` (lemma -> wnids in sense order) and ``glosses`` are filled when read
    from a dict folder and empty for the shipped, restricted graphs."""

    hypernyms: dict[str, tuple[str, ...]]
    names: dict[str, str]
    version: str = "3.0"
    senses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    glosses: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def _by_name(self) -> dict[str, str]:
        return {name: wnid for wnid, name in self.names.items()}

    def lookup(self, key: str) -> str:
        """The wnid of a synset named ``trouser.n.01`` (any of its lemmas) or given by its wnid ``n04489008``."""
        key = key.strip()
        if _WNID.match(key):
            if key in self.hypernyms:
                return key
            raise AuditError(f"no noun synset {key} in WordNet {self.version} (a wnid is 'n' and the 8-digit "
                             "offset of a data.noun line, e.g. n04489008)")
        match = _NAME.match(key)
        if not match:
            raise AuditError(f"'{key}' is neither a WordNet synset name (e.g. trouser.n.01) nor a wnid "
                             "(e.g. n04489008)")
        lemma, pos, number = match.group(1).lower(), match.group(2), int(match.group(3))
        if pos != "n":
            raise AuditError(f"'{key}' is not a noun synset: classes map to noun synsets (lemma.n.NN)")
        if key.lower() in self._by_name:
            return self._by_name[key.lower()]
        offsets = self.senses.get(lemma, ())
        if 1 <= number <= len(offsets):
            return offsets[number - 1]
        known = f"'{lemma}' has {len(offsets)} noun senses" if offsets else f"no noun '{lemma}'"
        raise AuditError(f"unknown WordNet synset '{key}' ({known} in WordNet {self.version})")


def _not_wordnet(folder: Path, why: str) -> AuditError:
    return AuditError(f"{folder} is not a WordNet 3.0 dict folder ({why}); give --wordnet the folder that holds "
                      "data.noun and index.noun (Debian: /usr/share/wordnet)")


def _read_index(path: Path, folder: Path) -> dict[str, tuple[str, ...]]:
    senses: dict[str, tuple[str, ...]] = {}
    with path.open(encoding="latin-1") as fh:
        for number, line in enumerate(fh, 1):
            if line.startswith("  "):
                continue
            toks = line.split()
            try:
                p_cnt = int(toks[3])
                offsets = toks[4 + p_cnt + 2:]
                if toks[1] != "n" or len(offsets) != int(toks[2]) or not all(len(o) == 8 for o in offsets):
                    raise ValueError
            except (ValueError, IndexError):
                raise _not_wordnet(folder, f"line {number} of index.noun is not an index line") from None
            senses[toks[0]] = tuple("n" + o for o in offsets)
    return senses


def _read_data(path: Path, folder: Path):
    hypernyms: dict[str, tuple[str, ...]] = {}
    words: dict[str, str] = {}
    glosses: dict[str, str] = {}
    header = []
    with path.open(encoding="latin-1") as fh:
        for number, line in enumerate(fh, 1):
            if line.startswith("  "):
                header.append(line)
                continue
            head, _, gloss = line.partition(" | ")
            toks = head.split()
            try:
                w_cnt = int(toks[3], 16)
                p_at = 4 + 2 * w_cnt
                p_cnt = int(toks[p_at])
                ptrs = toks[p_at + 1:p_at + 1 + 4 * p_cnt]
                if (toks[2] != "n" or len(toks[0]) != 8 or not toks[0].isdigit() or w_cnt < 1
                        or len(ptrs) != 4 * p_cnt):
                    raise ValueError
            except (ValueError, IndexError):
                raise _not_wordnet(folder, f"line {number} of data.noun is not a noun synset line") from None
            wnid = "n" + toks[0]
            hypernyms[wnid] = tuple("n" + ptrs[i + 1] for i in range(0, len(ptrs), 4)
                                    if ptrs[i] in HYPERNYM_POINTERS)
            words[wnid] = toks[4]
            glosses[wnid] = gloss.strip()
    version = re.search(r"WordNet (\d+\.\d+) Copyright", "".join(header))
    if not version:
        raise _not_wordnet(folder, "data.noun has no WordNet licence header")
    if version.group(1) != "3.0":
        raise AuditError(f"{folder} holds WordNet {version.group(1)}; the audit needs WordNet 3.0 (ImageNet's "
                         "wnids are WordNet 3.0 offsets): give --wordnet a WordNet 3.0 dict folder")
    return hypernyms, words, glosses


@functools.lru_cache(maxsize=2)
def _read_wordnet(folder: Path, stamp: tuple) -> NounGraph:
    missing = [n for n in ("data.noun", "index.noun") if not (folder / n).is_file()]
    if missing:
        raise _not_wordnet(folder, f"no {' and no '.join(missing)}")
    hypernyms, words, glosses = _read_data(folder / "data.noun", folder)
    senses = _read_index(folder / "index.noun", folder)
    if ROOT not in hypernyms:
        raise _not_wordnet(folder, f"data.noun has no entity.n.01 ({ROOT})")
    names = {}
    for wnid, word in words.items():
        lemma = word.lower()
        if wnid not in senses.get(lemma, ()):
            raise _not_wordnet(folder, f"index.noun does not list {wnid} under '{lemma}'")
        names[wnid] = f"{lemma}.n.{senses[lemma].index(wnid) + 1:02d}"
    dangling = next((h for hs in hypernyms.values() for h in hs if h not in hypernyms), None)
    if dangling:
        raise _not_wordnet(folder, f"a hypernym pointer to {dangling}, which data.noun does not hold")
    return NounGraph(hypernyms, names, "3.0", senses, glosses)


def read_wordnet(folder) -> NounGraph:
    """The noun graph of a WordNet 3.0 dict folder (parsed once per folder and kept; treat it as read-only)."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise _not_wordnet(Path(folder), "no such folder")
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (path / "data.noun", path / "index.noun")
                  if p.is_file())
    return _read_wordnet(path, stamp)


def ancestors(graph: NounGraph, wnids) -> NounGraph:
    """``graph`` restricted to the given synsets and all their ancestors (hypernyms, transitively)."""
    keep: set[str] = set()
    todo = [graph.lookup(w) for w in wnids]
    while todo:
        wnid = todo.pop()
        if wnid not in keep:
            keep.add(wnid)
            todo.extend(graph.hypernyms[wnid])
    order = sorted(keep)
    return NounGraph({w: graph.hypernyms[w] for w in order}, {w: graph.names[w] for w in order}, graph.version,
                     {}, {w: graph.glosses[w] for w in order if w in graph.glosses})


@dataclass(frozen=True)
class ClassSynsets:
    """The classes (in the label set's or model's order) and, per class, the wnid, the synset name (``senses``)
    and the reason where a class is unmapped (wnid and sense None). ``graph`` holds the mapped synsets and their
    ancestors; ``source`` says where the mapping came from."""

    classes: tuple[str, ...]
    wnids: tuple[str | None, ...]
    senses: tuple[str | None, ...]
    reasons: tuple[str | None, ...]
    graph: NounGraph
    source: str

    @property
    def mapped(self) -> list[int]:
        """Indices of the classes that have a synset."""
        return [i for i, w in enumerate(self.wnids) if w is not None]

    @property
    def unmapped(self) -> dict[str, str]:
        """Unmapped class -> why."""
        return {c: r for c, w, r in zip(self.classes, self.wnids, self.reasons, strict=True) if w is None}

    @functools.cached_property
    def tree(self) -> ClassTree:
        """The class tree of the mapped classes (``build_tree``, in ``mapped`` order), built on first use and kept
        with the mapping: the hierarchy analysis and the WordNet targets read the same one."""
        return build_tree(self.graph.hypernyms, [self.wnids[c] for c in self.mapped])

    @functools.cached_property
    def wu_palmer(self) -> np.ndarray:
        """The mapped classes' Wu–Palmer similarities (``wu_palmer_matrix``, in ``mapped`` order), computed on first
        use and kept with the mapping: the WordNet space and the WordNet targets read the same matrix."""
        matrix = wu_palmer_matrix(self.graph.hypernyms, [self.wnids[c] for c in self.mapped], self.graph.names)
        matrix.setflags(write=False)  # shared by every reader of this mapping
        return matrix


def builtin_file(label_set: str) -> Path:
    """Where the shipped mapping of a built-in label set lives."""
    return DATA_DIR / f"wordnet-{label_set}.json"


def no_hierarchy_reason(label_set: str | None) -> str | None:
    """Why ``load_builtin(label_set)`` gives no mapping, or None when it gives one."""
    key = (label_set or "").strip().lower()
    if key in SKIPPED:
        return SKIPPED[key]
    if key not in BUILTIN or not builtin_file(key).is_file():
        return (f"'{label_set}' is not a built-in label set with a shipped WordNet mapping: map its classes with "
                "--class-synsets FILE (class<TAB>synset per line) and --wordnet DIR")
    return None


@functools.lru_cache(maxsize=8)
def load_builtin(label_set: str) -> ClassSynsets | None:
    """The shipped class -> synset mapping of a built-in label set and its hypernym graph; None for MNIST and
    for names that are not built-in label sets (``no_hierarchy_reason`` says why)."""
    if no_hierarchy_reason(label_set):
        return None
    key = label_set.strip().lower()
    data = json.loads(builtin_file(key).read_text(encoding="utf-8"))
    synsets = data["synsets"]
    graph = NounGraph({w: tuple(s["hypernyms"]) for w, s in synsets.items()},
                      {w: s["name"] for w, s in synsets.items()}, data["wordnet_version"])
    wnids = tuple(data["wnids"])
    return ClassSynsets(tuple(data["classes"]), wnids, tuple(graph.names[w] if w else None for w in wnids),
                        tuple(None if w else data["why"].get(c, "unmapped") for c, w in zip(data["classes"], wnids,
                                                                                       strict=True)), graph,
                        f"{key}, shipped ({builtin_file(key).name}, WordNet {data['wordnet_version']})")


def load_class_synsets(file, wordnet_folder, class_names=None) -> ClassSynsets:
    """Map the model's classes to synsets by a ``class<TAB>synset-name-or-wnid`` file (``#`` comments and blank
    lines skipped; ``-`` or an empty synset leaves a class out on purpose) against a WordNet 3.0 folder.
    ``class_names`` None: the classes the file lists, in its order (``audit hierarchy --class-synsets``).

    Class names match exactly, else as the label matching does (case, ``_``, ``-`` and spaces do not count).
    Classes the file does not list are unmapped, with the reason. A class the model does not have, a class listed
    twice, an unknown synset or a folder that is not WordNet is an ``AuditError``.
    """
    path = Path(file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read the class-synsets file {path}: {exc}") from None
    graph = read_wordnet(wordnet_folder)
    listed = [line.split("\t")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    names = list(dict.fromkeys(listed)) if class_names is None else list(class_names)
    exact = {n: i for i, n in enumerate(names)}
    loose: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        loose.setdefault(norm_name(n), []).append(i)
    wnids: list[str | None] = [None] * len(names)
    reasons: list[str | None] = [f"not listed in {path.name}"] * len(names)
    seen: dict[int, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise AuditError(f"{where}: expected 'class<TAB>synset' (a synset name like trouser.n.01 or a wnid "
                             f"like n04489008), got {line.strip()!r}")
        cls, synset = parts[0].strip(), parts[1].strip()
        hits = [exact[cls]] if cls in exact else loose.get(norm_name(cls), [])
        if len(hits) != 1:
            shown = ", ".join(repr(n) for n in names[:5]) + (f" … ({len(names)})" if len(names) > 5 else "")
            why = "names two of the model's classes" if hits else "is not one of the model's classes"
            raise AuditError(f"{where}: class {cls!r} {why} ({shown}); use the model's class names")
        i = hits[0]
        if i in seen:
            raise AuditError(f"{where}: class {names[i]!r} is mapped twice (also on line {seen[i]})")
        seen[i] = number
        if synset in ("", "-"):
            reasons[i] = f"left unmapped in {path.name} (line {number})"
            continue
        try:
            wnids[i] = graph.lookup(synset)
        except AuditError as exc:
            raise AuditError(f"{where}: {exc}") from None
        reasons[i] = None
    sub = ancestors(graph, [w for w in wnids if w])
    return ClassSynsets(tuple(names), tuple(wnids), tuple(sub.names[w] if w else None for w in wnids),
                        tuple(reasons), sub, f"{path} (WordNet {graph.version}, {wordnet_folder})")


MIN_MAPPED = 2  # a hierarchy needs two mapped classes
NOT_BUILTIN = ("the class names are not a built-in label set with a shipped hierarchy (imagenet-1k, cifar10, "
               "cifar100, fashion-mnist): map them with --class-synsets FILE --wordnet DIR")


def label_set_of(names) -> str | None:
    """The built-in label set whose class names (in order, compared by ``norm_name``) are ``names``, or None."""
    key = tuple(norm_name(n) for n in names)
    for name, load in BUILTIN.items():
        if name == "imagenet-1k" and len(key) != 1000:
            continue
        if tuple(norm_name(n) for n in load()) == key:
            return name
    return None


def audit_synsets(names, class_synsets=None, wordnet=None) -> ClassSynsets | str:
    """The audit's classes (``names``, in the model's order) mapped to WordNet, or why they are not (a string).

    ``class_synsets`` (with ``wordnet``, the folder it is read against) wins; else the shipped mapping of the
    built-in label set the names are. A bad file or folder raises ``AuditError``; a mapping that leaves fewer
    than ``MIN_MAPPED`` classes is refused too, since nothing could be measured on it.
    """
    if class_synsets is not None:
        found = load_class_synsets(class_synsets, wordnet, class_names=list(names))
        if len(found.mapped) < MIN_MAPPED:
            raise AuditError(f"{class_synsets} maps {len(found.mapped)} of the model's {len(found.classes)} classes "
                             f"to a synset: the class hierarchy needs at least {MIN_MAPPED}")
        return found
    label_set = label_set_of(names)
    if label_set is None:
        return NOT_BUILTIN
    why = no_hierarchy_reason(label_set)
    return why if why is not None else load_builtin(label_set)
