"""The semantic window: class representations against word embeddings, layer by layer.

Public math (pure functions on arrays): ``similarity``, ``profile``, ``two_vs_two``, ``rsa``,
``permutation_pvalues``, ``fdr_bh``, ``one_vs_two`` (and ``source_like``, its comparison on given rows), ``flip_layer``, ``read_flip``
(the conservative flip-layer rule), ``severity``. Word vectors live in
``audit.analyses.semantics.embeddings`` and class names become vectors in ``audit.analyses.semantics.words`` (gensim is imported
only when vectors are loaded).
"""

from audit.analyses.semantics.metrics import (
    PermutationTest,
    fdr_bh,
    flip_layer,
    one_vs_two,
    permutation_pvalues,
    profile,
    read_flip,
    rsa,
    severity,
    similarity,
    source_like,
    two_vs_two,
)

__all__ = [
    "PermutationTest", "fdr_bh", "flip_layer", "one_vs_two", "permutation_pvalues", "profile", "read_flip", "rsa",
    "severity", "similarity", "source_like", "two_vs_two",
]
