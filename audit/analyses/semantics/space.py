"""The semantic spaces of the semantic window: what the classes mean, as a class x class similarity.

One contract (``SemanticSpace``), whatever the space: ``key`` (``glove`` or ``wordnet``, as ``--semantic-space``
names it), ``names`` (the audit's classes), ``covered`` (which classes the space has), ``similarity(classes)``
(the class x class similarity of covered classes, by index), ``rows(classes)`` (every class's similarity to each
of ``classes``; NaN rows for classes the space does not cover), ``coverage()`` and ``info`` (where the space came
from, for the report). Classes a space does not cover are named and left out of its figures.

- ``WordSpace`` (``glove``): one word vector per class (the shipped GloVe subset, or ``--embeddings``);
  similarity = Pearson r of the word vectors. Its ``distance`` (1 - cosine) is the semantic window's severity and
  ``--targeted semantic-*``'s distance, whatever ``--semantic-space`` says.
- ``WordNetSpace`` (``wordnet``): the classes mapped to WordNet 3.0 noun synsets (``context.synsets``, a
  ``wordnet.ClassSynsets``); similarity = Wu-Palmer similarity on the WordNet hypernym graph
  (``hierarchy.wu_palmer_matrix``). Unmapped classes are not covered.

``choose_spaces(requested, synsets)`` decides the spaces of an audit (``--semantic-space glove|wordnet|both``;
default: both when the classes map to WordNet, else glove).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from audit.analyses.semantics.metrics import similarity
from audit.errors import AuditError

MIN_CLASSES = 4  # the 2 vs 2 test needs two classes beside each pair
SPACES = ("glove", "wordnet")  # in the order an audit reports them: the first chosen one is the section's main space
CHOICES = ("glove", "wordnet", "both")
MEASURES = {"glove": "Pearson similarity of the class names' word vectors",
            "wordnet": "Wu-Palmer similarity of the classes' synsets on the WordNet 3.0 noun hypernym graph"}


class SemanticSpace(Protocol):
    key: str
    names: list[str]
    covered: np.ndarray  # (K,) bool
    info: dict

    def similarity(self, classes: np.ndarray) -> np.ndarray: ...

    def rows(self, classes: np.ndarray) -> np.ndarray: ...

    def coverage(self) -> dict: ...


@dataclass
class WordSpace:
    names: list[str]
    vectors: np.ndarray  # (K, d); rows of classes without a vector are NaN
    covered: np.ndarray  # (K,) bool
    words: list[tuple[str, ...]]  # the vocabulary tokens behind each class vector
    complete: list[bool]  # every word of the class's candidate was found
    info: dict  # embeddings source, licence, dimension, format
    key: str = "glove"

    @property
    def distance(self) -> np.ndarray:
        """Word-space distance 1 - cosine between classes (NaN where a class has no vector)."""
        unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return 1.0 - np.clip(unit @ unit.T, -1.0, 1.0)

    def similarity(self, classes: np.ndarray) -> np.ndarray:
        """Pearson similarity of the word vectors of ``classes`` (indices of covered classes)."""
        return similarity(self.vectors[classes])

    def rows(self, classes: np.ndarray) -> np.ndarray:
        """Word similarity of every class with a vector to each of ``classes`` (NaN rows for classes without one)."""
        covered = np.flatnonzero(self.covered)
        out = np.full((len(self.names), len(classes)), np.nan)
        if len(covered) and len(classes):
            out[covered] = similarity(self.vectors[covered])[:, np.searchsorted(covered, classes)]
        return out

    def coverage(self) -> dict:
        return {
            "n_classes": len(self.names),
            "n_covered": int(self.covered.sum()),
            "classes": [
                {"class": name, "words": list(words), "complete": complete}
                for name, words, complete, ok in zip(self.names, self.words, self.complete, self.covered,
                                                     strict=True) if ok
            ],
            "missing": [name for name, ok in zip(self.names, self.covered, strict=True) if not ok],
        }


@dataclass
class WordNetSpace:
    names: list[str]
    synsets: object  # the wordnet.ClassSynsets of the audit's classes
    matrix: np.ndarray = field(repr=False)  # (K, K) Wu-Palmer similarity; NaN in the rows and columns of unmapped classes
    covered: np.ndarray
    info: dict
    key: str = "wordnet"

    def similarity(self, classes: np.ndarray) -> np.ndarray:
        return self.matrix[np.ix_(classes, classes)]

    def rows(self, classes: np.ndarray) -> np.ndarray:
        return self.matrix[:, classes]

    def coverage(self) -> dict:
        syn = self.synsets
        return {
            "n_classes": len(self.names), "n_covered": int(self.covered.sum()),
            "classes": [{"class": name, "synset": sense, "wnid": wnid}
                        for name, sense, wnid in zip(self.names, syn.senses, syn.wnids, strict=True) if wnid],
            "missing": [name for name, ok in zip(self.names, self.covered, strict=True) if not ok],
            "why": dict(syn.unmapped),
        }


def build_wordnet_space(names: list[str], synsets) -> WordNetSpace:
    """The WordNet space of the audit's classes (``synsets``: their ``ClassSynsets``, in the same order)."""
    if len(synsets.classes) != len(names):
        raise AuditError(f"the WordNet mapping has {len(synsets.classes)} classes but the audit {len(names)}")
    mapped = synsets.mapped
    matrix = np.full((len(names), len(names)), np.nan)
    if mapped:
        matrix[np.ix_(mapped, mapped)] = synsets.wu_palmer
    covered = np.zeros(len(names), dtype=bool)
    covered[mapped] = True
    info = {"source": synsets.source, "measure": MEASURES["wordnet"], "wordnet_version": synsets.graph.version}
    return WordNetSpace(list(names), synsets, matrix, covered, info)


def choose_spaces(requested: str | None, synsets) -> tuple[tuple[str, ...], str]:
    """The spaces of the semantic window and why: ``requested`` (``glove``, ``wordnet``, ``both``; None for the
    default) against ``synsets`` (a ``ClassSynsets``, or the reason the classes do not map, a string).

    Default: both when the classes map to WordNet, else glove. ``wordnet`` or ``both`` asked for when they do not
    map is an ``AuditError`` naming why."""
    maps = synsets is not None and not isinstance(synsets, str)
    if requested is None:
        if maps:
            return SPACES, "default: both, since the classes map to WordNet"
        why = synsets if isinstance(synsets, str) else "no WordNet mapping"
        return ("glove",), f"default: glove only, since the classes do not map to WordNet ({why})"
    if requested not in CHOICES:
        raise AuditError(f"--semantic-space must be one of {', '.join(CHOICES)}, got '{requested}'")
    if requested != "glove" and not maps:
        why = synsets if isinstance(synsets, str) else "no WordNet mapping was made"
        raise AuditError(f"--semantic-space {requested} needs the classes mapped to WordNet, and they are not: {why}")
    chosen = SPACES if requested == "both" else (requested,)
    return chosen, f"--semantic-space {requested}"


def build_word_space(names: list[str], embeddings: str | None = None, class_words: str | None = None) -> WordSpace:
    """Load the word vectors (``--embeddings``) and give each class its vector (``--class-words`` first)."""
    from audit.analyses.semantics.embeddings import load_embeddings
    from audit.analyses.semantics.words import class_vectors, kv_lookup, read_class_words

    loaded = load_embeddings(embeddings)
    given = read_class_words(class_words, names) if class_words else None
    found = class_vectors(names, kv_lookup(loaded.vectors), class_words=given)
    dim = int(loaded.vectors.vector_size)
    vectors = np.full((len(names), dim), np.nan)
    for k, cv in enumerate(found):
        if cv.vector is not None and np.linalg.norm(cv.vector) > 0:
            vectors[k] = cv.vector
    covered = ~np.isnan(vectors).any(axis=1)
    return WordSpace(list(names), vectors, covered, [cv.words for cv in found], [cv.complete for cv in found],
                     loaded.info)
