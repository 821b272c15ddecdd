"""CIFAR-10: the official python tarball, verified and extracted atomically, as the paper's splits.

File: ``cifar-10-python.tar.gz`` (md5 ``c58f30108f718f92721af3b95e74349a``) from
https://www.cs.toronto.edu/~kriz/, kept in ``$QNNLIB_DATA/cifar10/`` (:mod:`qnnlib.data.root`) and extracted
there to ``cifar-10-batches-py/`` (``data_batch_1`` … ``data_batch_5``, ``test_batch``: pickled dicts with
``b"data"`` uint8 (N, 3072), channel-major RGB, and ``b"labels"``). A folder ``cifar-10-batches-py/`` already
there (e.g. extracted by hand) is used as it is. Otherwise the tarball is downloaded if missing
(:func:`qnnlib.data.download.fetch_file`: streamed, md5-verified, renamed into place only when complete), its md5
is checked, and it is extracted with :func:`qnnlib.data.download.extract_tar` (into a temporary sibling
directory, renamed when complete), so neither an interrupted download nor an interrupted extraction leaves
anything that passes for complete. A tarball with the wrong md5, a damaged batch or a folder with missing or
short batches raises :class:`~qnnlib.data.idx.DatasetCorruptError` naming the file and what to delete; a
tarball that is missing and cannot be fetched raises :class:`~qnnlib.data.download.DatasetNotFoundError`
naming every URL tried with its error and where to put the file by hand.

Splits (Theano code, MatthieuCourbariaux/BinaryNet ``Train-time/cifar10.py`` l. 73 and 80–82): train = the
first 45,000 of the 50,000 training images (``data_batch_1`` … ``data_batch_5`` in order), valid = the last
5,000 (``start=45000, stop=50000``, i.e. ``data_batch_5``), test = the 10,000 images of ``test_batch``. Inputs
(N, 3, 32, 32) float32 scaled to [-1, 1] as ``2/255 · pixel − 1`` (l. 87–89, computed in float32 as there).
The Torch7 code (itayhubara/BinaryNet ``Data.lua`` l. 46–66) ZCA-whitens these pixels: that is a recipe's
preprocessing on top of this loader (:func:`qnnlib.data.preprocess.preprocess`, ``"torch7-cifar10"``; its 10%
validation split is the same 5,000 images here). ``train_size``/``valid_size``/``test_size`` take a deterministic,
class-stratified subset for small profiles (:func:`qnnlib.data.splits.stratified_subset`).
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from qnnlib.data.download import (
    DOWNLOAD_TIMEOUT_S,
    ChecksumFile,
    DatasetNotFoundError,
    extract_tar,
    fetch_file,
    missing_file_error,
)
from qnnlib.data.idx import DatasetCorruptError
from qnnlib.data.root import DATA_ENV, data_root, display_path
from qnnlib.data.splits import DatasetSplits, Split, take_subsets
from qnnlib.files import NotWritableError, unreadable
from qnnlib.progress import progress as progress_bar

__all__ = ["Cifar10Spec", "CIFAR10", "PM1_TABLE", "CIFAR10_INPUTS", "ensure_cifar10", "read_batch", "scale_pm1",
           "load_cifar10"]


_ARCHIVE = ChecksumFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")


@dataclass(frozen=True)
class Cifar10Spec:
    """Where CIFAR-10 is looked up and fetched, and what its files must hold."""

    name: str = "cifar10"
    subdir: str = "cifar10"
    archive: ChecksumFile = _ARCHIVE
    folder: str = "cifar-10-batches-py"  # the archive's top-level folder
    train_batches: tuple[str, ...] = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
    test_batch: str = "test_batch"
    n_train: int = 50_000
    n_test: int = 10_000
    valid_count: int = 5_000  # validation = the last `valid_count` training images
    mirrors: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)
    homepage: str = "https://www.cs.toronto.edu/~kriz/cifar.html"


CIFAR10 = Cifar10Spec()
"""The official dataset (tests replace it with a tiny one)."""

PM1_TABLE: np.ndarray = np.multiply(np.float32(2.0 / 255.0), np.arange(256, dtype=np.float32)) - np.float32(1.0)
"""``2/255 · pixel − 1`` for every uint8 pixel, in float32 as the Theano code computes it on its float32 arrays
(``Train-time/cifar10.py`` l. 87–89, ``Train-time/svhn.py`` l. 100–102)."""

CIFAR10_INPUTS = "3x32x32 channels first (RGB), 2/255*pixel-1 in [-1, 1]"


def scale_pm1(images: np.ndarray) -> torch.Tensor:
    """uint8 images to float32 in [-1, 1] as the Theano code does (:data:`PM1_TABLE`), same shape."""
    return torch.from_numpy(PM1_TABLE[np.asarray(images, dtype=np.uint8)])


def ensure_cifar10(root: str | os.PathLike | None = None, *, download: bool = True,
                   timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> Path:
    """The extracted ``cifar-10-batches-py`` folder under ``<root>/cifar10``, fetching and extracting if needed.

    Uses the folder if it exists; else verifies the tarball (downloading it if missing, unless
    ``download=False``) and extracts it atomically. Raises :class:`DatasetNotFoundError` when the tarball is
    missing and cannot be fetched or the data root cannot be written, :class:`DatasetCorruptError` when the
    tarball is not the official file.
    """
    spec = CIFAR10
    home = data_root(root) / spec.subdir
    folder = home / spec.folder
    if folder.is_dir():
        return folder
    archive = home / spec.archive.name
    fix = (f"put {spec.archive.name} (the 'CIFAR-10 python version' from {spec.homepage}, md5 {spec.archive.md5}) "
           f"into {home}, or extract it there so that {folder} holds {', '.join(spec.train_batches)} and "
           f"{spec.test_batch}")
    if archive.is_file():
        spec.archive.check(archive, archive, progress=progress)
    else:
        if not download:
            attempts = ["nothing: downloading is disabled (download=False)"]
        else:
            try:
                fetch_file(spec.archive, home, spec.mirrors, timeout=timeout, progress=progress)
                attempts = []
            except DatasetNotFoundError as exc:
                attempts = exc.attempts
        if attempts:
            raise missing_file_error(spec.name, spec.archive.name, [folder, archive], attempts, fix,
                                     subdir=spec.subdir)
    try:
        return extract_tar(archive, home, spec.folder, progress=progress)
    except NotWritableError as exc:
        reason = f"{exc}; or extract {archive} by hand"
        raise missing_file_error(spec.name, spec.folder, [folder], [reason], fix, subdir=spec.subdir) from exc


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch: a dict of bytes, lists and numpy arrays, nothing else (no code runs)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
        ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch: ``(data uint8 (N, 3072), labels int64 (N,))``, checked.

    Raises :class:`DatasetCorruptError` (naming the file and saying to delete the extracted folder) for a
    file that is missing, cannot be unpickled, or does not hold ``b"data"`` (N, 3072) uint8 and N labels in 0–9.
    """
    p = Path(path)
    remedy = (f"Delete the folder {p.parent}; it is extracted again from {CIFAR10.archive.name} "
              "(or downloaded again).")
    if not p.is_file():
        raise DatasetCorruptError(f"{p} is missing: the folder {p.parent} is incomplete. {remedy}")
    try:
        with open(p, "rb") as fh:
            batch = _BatchUnpickler(fh, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise TypeError(f"a {type(batch).__name__}, not a dict")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if data is None or labels is None:
            raise KeyError(f"no b'data' and b'labels' (keys: {sorted(map(repr, batch))})")
    except (pickle.UnpicklingError, EOFError, TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
        raise DatasetCorruptError(str(unreadable(p, exc, remedy, what="CIFAR-10 batch"))) from exc
    data, labels = np.asarray(data), np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetCorruptError(f"{p}: b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072). {remedy}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) or (
            len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetCorruptError(f"{p}: b'labels' is {labels.dtype} {labels.shape}, expected {len(data)} "
                                  f"integers in 0..9. {remedy}")
    return data, labels.astype(np.int64)


def load_cifar10(root: str | os.PathLike | None = None, *, download: bool = True,
                 train_size: int | None = None, valid_size: int | None = None, test_size: int | None = None,
                 seed: int = 0, progress: bool = True) -> DatasetSplits:
    """Load CIFAR-10 as the paper's train (45k) / valid (5k) / test (10k) splits, inputs (N, 3, 32, 32) in [-1, 1].

    Splits and scaling as MatthieuCourbariaux/BinaryNet ``Train-time/cifar10.py`` l. 80–82 (valid = the last
    5,000 training images) and l. 87–89 (``2/255 · pixel − 1``); see the module docstring. ``*_size`` = None
    keeps the whole split; an integer takes a class-stratified seeded subset of that split
    (:func:`stratified_subset` with seeds ``seed``, ``seed+1``, ``seed+2`` for train/valid/test), recorded in
    ``describe()["subset"]``. Raises ValueError for a bad size, :class:`DatasetNotFoundError` when the files are
    missing and cannot be fetched, :class:`DatasetCorruptError` when a file fails its checks.
    """
    spec = CIFAR10
    folder = ensure_cifar10(root, download=download, progress=progress)
    names = [*spec.train_batches, spec.test_batch]
    batches = {n: read_batch(folder / n) for n in progress_bar(names, desc=spec.name, unit="batch",
                                                                 disable=not progress, leave=False)}
    train_x = np.concatenate([batches[n][0] for n in spec.train_batches])
    train_y = np.concatenate([batches[n][1] for n in spec.train_batches])
    test_x, test_y = batches[spec.test_batch]
    for what, got, want in (("training", len(train_y), spec.n_train), ("test", len(test_y), spec.n_test)):
        if got != want:
            raise DatasetCorruptError(f"{folder}: {got} {what} images, expected {want}; the folder is not the "
                                      f"official CIFAR-10. Delete it; it is extracted again from {spec.archive.name}.")
    cut = spec.n_train - spec.valid_count
    parts = {"train": (train_x[:cut], train_y[:cut]), "valid": (train_x[cut:], train_y[cut:]),
             "test": (test_x, test_y)}
    parts, subset = take_subsets(parts, {"train": train_size, "valid": valid_size, "test": test_size}, seed,
                                 spec.name)
    splits = {k: Split(x=scale_pm1(x.reshape(-1, 3, 32, 32)), y=torch.from_numpy(y)) for k, (x, y) in parts.items()}
    return DatasetSplits(name=spec.name, **splits, source=display_path(folder), subset=subset, inputs=CIFAR10_INPUTS)


if __name__ == "__main__":  # python -m qnnlib.data.cifar10 [root]: fetch, verify, extract, load
    _d = load_cifar10(sys.argv[1] if len(sys.argv) > 1 else None)
    print(_d.name, _d.sizes(), _d.source, f"(set {DATA_ENV} to move it)")
