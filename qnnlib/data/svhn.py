"""SVHN (cropped digits, "format 2"): the official ``.mat`` files, verified, as the paper's splits.

Files: ``train_32x32.mat`` (73,257 images), ``test_32x32.mat`` (26,032) and ``extra_32x32.mat`` (531,131) from
http://ufldl.stanford.edu/housenumbers/, kept in ``$QNNLIB_DATA/svhn/`` (:mod:`qnnlib.data.root`), each checked
against its official md5 (streamed) before it is read with :func:`scipy.io.loadmat` (``X`` uint8
(32, 32, 3, N), ``y`` (N, 1) with labels 1–10, where **10 means the digit 0**; here the label is the digit, 0–9).
A missing file is downloaded by :func:`qnnlib.data.download.fetch_file` (streamed, md5-verified, renamed into
place only when complete). A file with the wrong md5 or contents raises
:class:`~qnnlib.data.idx.DatasetCorruptError` naming it and saying to delete it; a file that is missing and
cannot be fetched raises :class:`~qnnlib.data.download.DatasetNotFoundError` naming every URL tried with its
error and where to put the file by hand.

Splits (Theano code, MatthieuCourbariaux/BinaryNet ``Train-time/svhn.py`` l. 85–95: pylearn2's
``SVHN('splitted_train')``, ``SVHN('valid')``, ``SVHN('test')``; pylearn2 ``datasets/svhn.py``
``SVHN.make_data``: sizes ``splitted_train`` 598,388, ``valid`` 6,000): valid = 400 images of each class drawn
at random from ``train_32x32.mat`` plus 200 of each class from ``extra_32x32.mat`` (6,000, the Maxout-networks
protocol; pylearn2's split script draws them with an unseeded ``numpy.random.shuffle``, here with
``numpy.random.default_rng(0)`` so the split is reproducible); train = every other image of train and extra
(598,388); test = ``test_32x32.mat`` (26,032). With ``extra=False`` (small profiles) only ``train_32x32.mat`` is
read: valid = its 4,000 images (400 per class), train = the other 69,257, and ``describe()["subset"]`` says so.
Inputs (N, 3, 32, 32) float32 (``X`` transposed to channels first as pylearn2's ``SVHN.load_data`` does, axes
``[3, 2, 0, 1]``) scaled to [-1, 1] as ``2/255 · pixel − 1`` (``Train-time/svhn.py`` l. 100–102, float32). The
Torch7 code (itayhubara/BinaryNet ``Data.lua`` l. 92–114) applies GCN and LCN on top: a recipe's preprocessing
(:func:`qnnlib.data.preprocess.preprocess`, ``"torch7-svhn"``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch

from qnnlib.data.cifar10 import scale_pm1
from qnnlib.data.download import (
    DOWNLOAD_TIMEOUT_S,
    ChecksumFile,
    fetch_missing,
)
from qnnlib.data.idx import DatasetCorruptError
from qnnlib.data.root import data_root, display_path
from qnnlib.data.splits import DatasetSplits, Split, take_subsets
from qnnlib.progress import progress as progress_bar

__all__ = ["SvhnSpec", "SVHN", "SVHN_INPUTS", "ensure_svhn", "read_mat", "valid_indices", "load_svhn"]

SVHN_INPUTS = "3x32x32 channels first (RGB), 2/255*pixel-1 in [-1, 1]"


_TRAIN = ChecksumFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373")
_TEST = ChecksumFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")
_EXTRA = ChecksumFile("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7")


@dataclass(frozen=True)
class SvhnSpec:
    """Where SVHN is looked up and fetched, what its files must hold, and how validation is drawn."""

    name: str = "svhn"
    subdir: str = "svhn"
    train: ChecksumFile = _TRAIN
    test: ChecksumFile = _TEST
    extra: ChecksumFile = _EXTRA
    n_train: int = 73_257
    n_test: int = 26_032
    n_extra: int = 531_131
    valid_per_class_train: int = 400  # validation images of each class drawn from train_32x32.mat
    valid_per_class_extra: int = 200  # ... and from extra_32x32.mat
    valid_seed: int = 0
    mirrors: tuple[str, ...] = ("http://ufldl.stanford.edu/housenumbers/",)
    homepage: str = "http://ufldl.stanford.edu/housenumbers/"

    def file(self, role: str) -> ChecksumFile:
        """The file of ``role`` (``"train"``, ``"test"`` or ``"extra"``)."""
        return {"train": self.train, "test": self.test, "extra": self.extra}[role]

    def count(self, role: str) -> int:
        """The number of images in the file of ``role``."""
        return {"train": self.n_train, "test": self.n_test, "extra": self.n_extra}[role]


SVHN = SvhnSpec()
"""The official dataset (tests replace it with a tiny one)."""


def ensure_svhn(root: str | os.PathLike | None = None, *, extra: bool = True, download: bool = True,
                timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> dict[str, Path]:
    """Paths of the SVHN files (role -> path: train, test, and extra when ``extra``), downloading missing ones.

    The files are looked up in ``<root>/svhn``; not verified here (:func:`read_mat` does). Raises
    :class:`DatasetNotFoundError` for the first file that is missing and cannot be fetched.
    """
    spec = SVHN
    home = data_root(root) / spec.subdir
    roles = ("train", "test", "extra") if extra else ("train", "test")
    missing = [r for r in roles if not (home / spec.file(r).name).is_file()]
    names = ", ".join(f"{spec.file(r).name} (md5 {spec.file(r).md5})" for r in roles)
    fetch_missing(spec.name, [spec.file(r) for r in missing], home, spec.mirrors, looked_in=[home],
                  subdir=spec.subdir, download=download, timeout=timeout, progress=progress,
                  fix=f"put {names} (the 'format 2' cropped digits from {spec.homepage}) into {home} by hand")
    return {r: home / spec.file(r).name for r in roles}


def read_mat(path: str | os.PathLike, remote: ChecksumFile, count: int, *,
             progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One verified SVHN file: ``(images uint8 (N, 3, 32, 32), labels int64 (N,) in 0–9)``, label 10 → digit 0.

    Checks the md5 (:meth:`ChecksumFile.check`), then that ``X`` is uint8 (32, 32, 3, ``count``) and ``y``
    holds ``count`` labels in 1–10; anything else raises :class:`DatasetCorruptError` naming the file and
    saying to delete it.
    """
    p = Path(path)
    remote.check(p, p, progress=progress)
    remedy = f"Delete {p} and fetch it again."
    try:
        mat = scipy.io.loadmat(p, variable_names=("X", "y"))
        x, y = mat["X"], mat["y"]
    except Exception as exc:  # scipy raises many kinds for a damaged file
        raise DatasetCorruptError(f"{p}: not a readable SVHN .mat file ({type(exc).__name__}: {exc}). "
                                  f"{remedy}") from exc
    if x.dtype != np.uint8 or x.shape != (32, 32, 3, count):
        raise DatasetCorruptError(f"{p}: X is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, {count}). {remedy}")
    y = np.asarray(y).reshape(-1)
    if len(y) != count or not np.issubdtype(y.dtype, np.number) or (count and (y.min() < 1 or y.max() > 10)):
        raise DatasetCorruptError(f"{p}: y holds {len(y)} labels in {y.min() if len(y) else '-'}.."
                                  f"{y.max() if len(y) else '-'}, expected {count} labels in 1..10. {remedy}")
    labels = y.astype(np.int64) % 10  # 10 is the digit 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (N, c, h, w): pylearn2 SVHN.load_data axes [3, 2, 0, 1]
    return images, labels


def valid_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` images of each class 0–9 of ``labels``, drawn without replacement by ``rng``.

    Raises ValueError when a class has fewer than ``per_class`` images.
    """
    picked = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} images, fewer than the {per_class} validation images "
                             "to draw from it")
        picked.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def load_svhn(root: str | os.PathLike | None = None, *, extra: bool = True, download: bool = True,
              train_size: int | None = None, valid_size: int | None = None, test_size: int | None = None,
              seed: int = 0, progress: bool = True) -> DatasetSplits:
    """Load SVHN as the paper's splits: train 598,388 / valid 6,000 / test 26,032, inputs (N, 3, 32, 32) in [-1, 1].

    Splits and scaling as MatthieuCourbariaux/BinaryNet ``Train-time/svhn.py`` l. 85–95 (pylearn2's
    ``splitted_train``/``valid``/``test``: valid = 400 per class from train + 200 per class from extra) and
    l. 100–102 (``2/255 · pixel − 1``); see the module docstring. ``extra=False`` leaves ``extra_32x32.mat``
    out (train 69,257 / valid 4,000; recorded in ``describe()["subset"]``). The validation draw is fixed
    (``SVHN.valid_seed``), whatever ``seed``. ``*_size`` = None keeps the whole split; an integer takes a
    class-stratified seeded subset of that split (:func:`stratified_subset` with seeds ``seed``, ``seed+1``,
    ``seed+2``). Raises ValueError for a bad size, :class:`DatasetNotFoundError` when files are missing and
    cannot be fetched, :class:`DatasetCorruptError` when a file fails its checks.
    """
    spec = SVHN
    paths = ensure_svhn(root, extra=extra, download=download, progress=progress)
    data = {role: read_mat(p, spec.file(role), spec.count(role), progress=progress)
            for role, p in progress_bar(list(paths.items()), desc=spec.name, unit="file", disable=not progress,
                                        leave=False)}
    rng = np.random.default_rng(spec.valid_seed)
    train_parts, valid_parts = [], []
    for role, per_class in (("train", spec.valid_per_class_train), ("extra", spec.valid_per_class_extra)):
        if role not in data:
            continue
        images, labels = data.pop(role)
        try:
            v = valid_indices(labels, per_class, rng)
        except ValueError as exc:
            raise DatasetCorruptError(f"{paths[role]}: {exc}; not the official file. Delete it and fetch it "
                                      "again.") from exc
        keep = np.ones(len(labels), bool)
        keep[v] = False
        valid_parts.append((images[v], labels[v]))
        train_parts.append((images[keep], labels[keep]))
        del images
    parts = {"train": tuple(np.concatenate(a) for a in zip(*train_parts)),
             "valid": tuple(np.concatenate(a) for a in zip(*valid_parts)),
             "test": data.pop("test")}
    parts, subset = take_subsets(parts, {"train": train_size, "valid": valid_size, "test": test_size}, seed,
                                 spec.name)
    if not extra:
        subset = (f"without {spec.extra.name} (train and valid from {spec.train.name} only: "
                  f"{spec.valid_per_class_train} valid images per class); {subset}")
    splits = {k: Split(x=scale_pm1(x), y=torch.from_numpy(y)) for k, (x, y) in parts.items()}
    return DatasetSplits(name=spec.name, **splits, source=display_path(paths["train"].parent), subset=subset,
                         inputs=SVHN_INPUTS)


if __name__ == "__main__":  # python -m qnnlib.data.svhn [--no-extra]: fetch, verify, load
    _d = load_svhn(extra="--no-extra" not in sys.argv[1:])
    print(_d.name, _d.sizes(), _d.subset, _d.source)
