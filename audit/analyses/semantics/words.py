"""Class names to word vectors, with the words actually used (for the report's coverage).

For each class, candidates are tried in order: the words given by ``--class-words``; else the class name, then
its synonyms (built-in sets: ImageNet classes get their WordNet lemmas, ``data/imagenet-1k-lemmas.tsv``). A
candidate resolves to one vocabulary token when it is one (lower-cased; spaces also tried as ``_`` and ``-``;
``3`` read as ``three``), else to the average of its words (split on space, ``_``, ``/``; a word missing from
the vocabulary is split again on ``-``, and ``potter's`` is also tried as ``potter``) when every word is found.
If no candidate is complete, the first one with any word found gives the average of the words found
(``complete=False``; e.g. ``Bluetick Coonhound`` -> ``coonhound``). A class with no word found gets no vector
(``None``): it is reported and left out, never given a zero vector.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from audit.errors import AuditError

LEMMAS = Path(__file__).parent / "data" / "imagenet-1k-lemmas.tsv"
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)
_PARTS = re.compile(r"[\s_/]+")

Lookup = Callable[[str], "np.ndarray | None"]


class ClassVector(NamedTuple):
    name: str
    vector: np.ndarray | None  # None: no candidate resolved
    words: tuple[str, ...]  # the vocabulary tokens averaged into the vector
    complete: bool = True  # every word of the candidate was found


def kv_lookup(kv) -> Lookup:
    """A token lookup over gensim KeyedVectors."""
    index = kv.key_to_index
    return lambda token: kv.vectors[index[token]] if token in index else None


def _norm(name: str) -> str:
    return " ".join(name.strip().lower().split())


def _number(token: str) -> str:
    return NUMBER_WORDS[int(token)] if token.isdigit() and int(token) <= 20 else token


def _token(text: str, lookup: Lookup) -> str | None:
    """The vocabulary token for a whole text, or None."""
    text = _number(text)
    variants = [text]
    if " " in text:
        variants += [text.replace(" ", "_"), text.replace(" ", "-")]
    return next((v for v in variants if lookup(v) is not None), None)


def _word(part: str, lookup: Lookup) -> list[str | None]:
    """Tokens for one word: itself, itself without a possessive 's, else its '-' pieces (None where missing)."""
    for variant in (part, re.sub(r"['’]s$", "", part)):
        whole = _token(variant, lookup) if variant else None
        if whole is not None:
            return [whole]
    pieces = [p for p in part.split("-") if p]
    return [_token(p, lookup) for p in pieces] if len(pieces) > 1 else [None]


def _words(text: str, lookup: Lookup) -> list[str | None]:
    """The tokens of each word of ``text``; None for each word (or '-' piece) not in the vocabulary."""
    whole = _token(text, lookup)
    if whole is not None:
        return [whole]
    return [t for part in _PARTS.split(text) if part for t in _word(part, lookup)]


def _mean(tokens: Sequence[str], lookup: Lookup) -> np.ndarray:
    return np.mean([np.asarray(lookup(t), dtype=np.float64) for t in tokens], axis=0)


def resolve(candidates: Iterable[str], lookup: Lookup) -> tuple[np.ndarray | None, tuple[str, ...], bool]:
    """Vector, tokens used and completeness: the first candidate whose words are all found; else the first
    with any word found (the average of those); else ``(None, (), False)``."""
    partial: list[str] = []
    for cand in candidates:
        text = _norm(cand)
        tokens = _words(text, lookup) if text else []
        found = [t for t in tokens if t is not None]
        if found and len(found) == len(tokens):
            return _mean(found, lookup), tuple(found), True
        if found and not partial:
            partial = found
    if partial:
        return _mean(partial, lookup), tuple(partial), False
    return None, (), False


@cache
def builtin_synonyms() -> dict[str, tuple[str, ...]]:
    """Lower-cased class name -> synonyms (ImageNet-1k: WordNet lemmas of its synset, in WordNet's order)."""
    table: dict[str, list[str]] = {}
    for line in LEMMAS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, lemmas = line.partition("\t")
        syn = table.setdefault(_norm(name), [])
        syn += [lem.strip() for lem in lemmas.split(";") if lem.strip() and lem.strip() not in syn]
    return {k: tuple(v) for k, v in table.items()}


def class_vectors(
    names: Sequence[str], lookup: Lookup, class_words: dict[str, Sequence[str]] | None = None,
    synonyms: dict[str, Sequence[str]] | None = None,
) -> list[ClassVector]:
    """One ``ClassVector`` per class name, in order.

    ``class_words`` (from ``read_class_words``) replaces the name and synonyms of the classes it names: the
    words found among those given are averaged (``complete`` tells whether all were). ``synonyms`` defaults to
    the built-in table.
    """
    synonyms = builtin_synonyms() if synonyms is None else synonyms
    given = {_norm(k): v for k, v in (class_words or {}).items()}
    out = []
    for name in names:
        key = _norm(name)
        if key in given:
            tokens = [t for w in given[key] for t in _words(_norm(w), lookup)]
            found = tuple(t for t in tokens if t is not None)
            vec = _mean(found, lookup) if found else None
            out.append(ClassVector(name, vec, found, bool(found) and len(found) == len(tokens)))
            continue
        out.append(ClassVector(name, *resolve([name, *synonyms.get(key, ())], lookup)))
    return out


def read_class_words(path: str | Path, known: Sequence[str]) -> dict[str, list[str]]:
    """Read ``--class-words FILE``: class -> the words that stand for it.

    Two formats: JSON (an object ``{"class name": ["word", "word two"], ...}``; a string value is split on
    spaces), or text with one class a line, ``class name<TAB>word word ...`` (words split on spaces; use ``_``
    inside a multi-word token, e.g. ``ice_cream``; ``#`` starts a comment line). Each class must be one of
    ``known`` (compared lower-case, spaces normalised).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read --class-words {path}: {exc}") from None
    mapping: dict[str, list[str]] = {}
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuditError(f"--class-words {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise AuditError(f"--class-words {path}: expected a JSON object of class name -> words")
        for name, value in data.items():
            words = value.split() if isinstance(value, str) else value
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise AuditError(f"--class-words {path}: the words for '{name}' must be a string or a list of them")
            mapping[name] = [w for w in words if w.strip()]
    else:
        for num, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, tab, words = line.partition("\t")
            if not tab:
                raise AuditError(f"--class-words {path} line {num}: expected 'class name<TAB>word word ...'")
            mapping[name.strip()] = words.split()
    known_keys = {_norm(k) for k in known}
    unknown = [n for n in mapping if _norm(n) not in known_keys]
    if unknown:
        raise AuditError(f"--class-words {path} names classes the model does not have: {', '.join(unknown[:3])}")
    empty = [n for n, w in mapping.items() if not w]
    if empty:
        raise AuditError(f"--class-words {path} gives no words for: {', '.join(empty[:3])}")
    return mapping
