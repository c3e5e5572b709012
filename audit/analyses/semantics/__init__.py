"""The semantic window: class representations against word embeddings, layer by layer.

Public math (pure functions on arrays): ``similarity``, ``profile``, ``two_vs_two``, ``rsa``,
``permutation_pvalues``, ``one_vs_two`` (and ``source_like``, its comparison on given rows), ``flip_layer`` (the
first layer below one half, as measured), ``one_vs_two_statistics`` and ``read_flip`` (the tests and the flip-layer
rule), ``severity``. Word vectors live in
``audit.analyses.semantics.embeddings`` and class names become vectors in ``audit.analyses.semantics.words`` (gensim is imported
only when vectors are loaded).

The class hierarchy (``audit.analyses.semantics.hierarchy``, numpy only) builds Bertinetto et al.'s tree from a
WordNet hypernym mapping and measures mistakes in it: LCA heights of all class pairs, the top-k hierarchical
distance, mistake severity, the random-wrong-class baseline, Wu-Palmer similarity, superclasses.

The math loads on first use (``from audit.analyses.semantics import two_vs_two``): importing the package, as the
report renderers do for its ``report`` module, loads no numpy.
"""

__all__ = [
    "PermutationTest", "flip_layer", "one_vs_two", "one_vs_two_statistics", "permutation_pvalues", "profile",
    "read_flip", "rsa",
    "severity", "similarity", "source_like", "two_vs_two",
]


def __getattr__(name):
    if name in __all__:
        from audit.analyses.semantics import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'audit.analyses.semantics' has no attribute {name!r}")
