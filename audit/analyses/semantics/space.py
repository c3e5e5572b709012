"""The word side of the semantic window: one word vector per class, and what the report says about coverage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.analyses.semantics.metrics import similarity

MIN_CLASSES = 4  # the 2 vs 2 test needs two classes beside each pair


@dataclass
class WordSpace:
    names: list[str]
    vectors: np.ndarray  # (K, d); rows of classes without a vector are NaN
    covered: np.ndarray  # (K,) bool
    words: list[tuple[str, ...]]  # the vocabulary tokens behind each class vector
    complete: list[bool]  # every word of the class's candidate was found
    info: dict  # embeddings source, licence, dimension, format

    @property
    def distance(self) -> np.ndarray:
        """Word-space distance 1 - cosine between classes (NaN where a class has no vector)."""
        unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return 1.0 - np.clip(unit @ unit.T, -1.0, 1.0)

    def similarity(self, classes: np.ndarray) -> np.ndarray:
        """Pearson similarity of the word vectors of ``classes`` (indices of covered classes)."""
        return similarity(self.vectors[classes])

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
