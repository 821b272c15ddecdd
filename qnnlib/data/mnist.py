"""MNIST and Fashion-MNIST: which files make each dataset, where they are looked up, the paper's splits.

Files: the four original IDX files (``*.gz``, or the same names without ``.gz``) in
``$QNNLIB_DATA/<name>/`` (:mod:`qnnlib.data.root`); Fashion-MNIST is also looked up in
``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``). A missing file is
downloaded from the mirrors in :data:`MNIST_FAMILY` by :func:`qnnlib.data.download.fetch_file`
(verified, atomic: an interrupted download never leaves a file that passes for complete). A file is
accepted when EITHER the md5 of its bytes equals the official ``.gz`` md5 OR the md5 of its
decompressed content equals the official decompressed md5 (re-compressed copies, such as the project's
shared MNIST test files, differ only in the gzip container). The IDX header and the exact length are
checked as well (:mod:`qnnlib.data.idx`). Anything wrong raises
:class:`~qnnlib.data.idx.DatasetCorruptError`; a file that is missing and cannot be fetched raises
:class:`~qnnlib.data.download.DatasetNotFoundError` naming the file, every URL tried and its error, and
where to put the file by hand. Nothing is ever returned partially.

Splits (Theano MNIST code; docs/paper.md): train = the first 50,000 of the 60,000 training images,
valid = the last 10,000, test = the 10,000 test images. Inputs are flattened to 784 and scaled to
[-1, 1] as ``pixel / 255 * 2 - 1`` (``input_range="pm1"``, the Theano code, MatthieuCourbariaux/BinaryNet
``Train-time/mnist.py`` l. 100–102), or as the Torch7 code does (``input_range="torch7"``: ``pixel / 255``
then standardised by the global mean and std of the training split, :func:`torch7_standardise`).
``train_size``/``valid_size``/``test_size`` take a deterministic, class-stratified subset for small profiles
(:func:`qnnlib.data.splits.stratified_subset`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from qnnlib.data.download import (
    DOWNLOAD_TIMEOUT_S,
    RemoteFile,
    fetch_missing,
    verify_file,
)
from qnnlib.data.root import data_root, display_path
from qnnlib.data.splits import DatasetSplits, Split, take_subsets

__all__ = ["IdxDatasetSpec", "MNIST_FAMILY", "InputRange", "ensure_files", "load_mnist",
           "torch7_standardise"]

InputRange = Literal["pm1", "torch7"]
PM1_INPUTS = "flattened 28x28, pixel/255*2-1 in [-1, 1]"

# ------------------------------------------------------------------------------- MNIST family
@dataclass(frozen=True)
class IdxDatasetSpec:
    """Where an IDX dataset (MNIST family) is looked up and fetched, and what its files must be."""

    name: str
    subdir: str
    files: Mapping[str, RemoteFile]  # roles: train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    valid_count: int = 10_000  # validation = the last `valid_count` training images
    homepage: str = ""


def _mnist_files(md5s: Mapping[str, tuple[str, str]], n_train: int = 60_000, n_test: int = 10_000,
                 hw: tuple[int, int] = (28, 28)) -> dict[str, RemoteFile]:
    names = {"train_images": ("train-images-idx3-ubyte.gz", (n_train, *hw)),
             "train_labels": ("train-labels-idx1-ubyte.gz", (n_train,)),
             "test_images": ("t10k-images-idx3-ubyte.gz", (n_test, *hw)),
             "test_labels": ("t10k-labels-idx1-ubyte.gz", (n_test,))}
    return {role: RemoteFile(fname, *md5s[role], shape) for role, (fname, shape) in names.items()}


# (gz md5 from torchvision / the zalando README, decompressed md5). The decompressed md5s of the
# MNIST train files and of all Fashion-MNIST files agree across several independent public loaders
# and with the project machines' offline MNIST test files and /usr/share/datasets/fashion-mnist.
MNIST_FAMILY: dict[str, IdxDatasetSpec] = {
    "mnist": IdxDatasetSpec(
        name="mnist", subdir="mnist",
        files=_mnist_files({
            "train_images": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
            "train_labels": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
            "test_images": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
            "test_labels": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
        }),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": IdxDatasetSpec(
        name="fashion-mnist", subdir="fashion-mnist",
        files=_mnist_files({
            "train_images": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train_labels": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
            "test_images": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
            "test_labels": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
        }),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
}


def _present(directory: Path, remote: RemoteFile) -> Path | None:
    for candidate in (directory / remote.name, directory / remote.name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _spec(name: str) -> IdxDatasetSpec:
    if name not in MNIST_FAMILY:
        raise ValueError(f"unknown dataset {name!r}; supported: {', '.join(sorted(MNIST_FAMILY))}")
    return MNIST_FAMILY[name]


def ensure_files(name: str = "mnist", root: str | os.PathLike | None = None, *, download: bool = True,
                 timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> dict[str, Path]:
    """Paths of the four files of ``name`` (role -> path), all from one directory, downloading if needed.

    Looks in ``<root>/<subdir>`` then the spec's system directories and takes the first directory
    that holds all four files; otherwise downloads the missing ones into ``<root>/<subdir>``.
    The files are not verified here (see :func:`verify_file`).
    """
    spec = _spec(name)
    home = data_root(root) / spec.subdir
    dirs = [home, *map(Path, spec.system_dirs)]
    for d in dirs:
        found = {role: _present(d, f) for role, f in spec.files.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    missing = [f for f in spec.files.values() if _present(home, f) is None]
    fetch_missing(spec.name, missing, home, spec.mirrors, looked_in=dirs, subdir=spec.subdir, download=download,
                  timeout=timeout, progress=progress,
                  fix=f"put the four files ({', '.join(f.name for f in spec.files.values())}) into {home} by hand "
                      f"(from {spec.homepage or 'a mirror above'}; gzipped or not)")
    return {role: _present(home, f) for role, f in spec.files.items()}  # type: ignore[misc]


def torch7_standardise(train_images: np.ndarray) -> tuple[float, float]:
    """The Torch7 code's MNIST input statistics: global mean and std of ``pixel / 255`` over the training split.

    itayhubara/BinaryNet ``Data.lua`` l. 82 (``dp.Mnist{scale={0,1}}``: pixels in [0, 1]) and l. 184–197 with
    ``-normalization simple`` (``Main_BinaryNet_MNIST.lua`` l. 47): ``TrainDataProvider:normalize('simple')``,
    which is eladhoffer/DataProvider.torch ``Container.lua`` l. 225–229: one scalar ``mean = Data:mean()`` and
    ``std = Data:std()`` (Torch7's ``std`` divides by n − 1) over the whole training set, then
    ``Data:add(-mean):div(std)``; valid and test use the training statistics (``Data.lua`` l. 196–197).
    Computed in float64; returns ``(mean, std)``.
    """
    x = np.asarray(train_images, dtype=np.float64) / 255.0
    if x.size < 2:
        raise ValueError("torch7 input statistics need at least two training pixels")
    return float(x.mean()), float(x.std(ddof=1))


def _to_split(images: np.ndarray, labels: np.ndarray, stats: tuple[float, float] | None = None) -> Split:
    if stats is None:
        x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0 * 2.0 - 1.0)
    else:
        mean, std = stats
        flat = images.reshape(len(images), -1).astype(np.float64) / 255.0
        x = torch.from_numpy(((flat - mean) / std).astype(np.float32))
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))


def load_mnist(name: str = "mnist", root: str | os.PathLike | None = None, *, download: bool = True,
               train_size: int | None = None, valid_size: int | None = None, test_size: int | None = None,
               seed: int = 0, input_range: InputRange = "pm1") -> DatasetSplits:
    """Load MNIST or Fashion-MNIST as the paper's train (50k) / valid (10k) / test (10k) splits.

    ``*_size`` = None keeps the whole split; an integer takes a class-stratified seeded subset of
    that split (:func:`stratified_subset` with seeds ``seed``, ``seed+1``, ``seed+2`` for
    train/valid/test).  ``input_range``: ``"pm1"`` (default) ``pixel/255*2-1``; ``"torch7"``: ``pixel/255``
    standardised by the scalar mean/std of the full training split (the first ``n − valid_count`` training images,
    before any subset, as the authors' full runs saw it; :func:`torch7_standardise`), recorded with the values in
    ``describe()["inputs"]``. Raises ValueError for an unknown name, range or a bad size,
    :class:`DatasetNotFoundError` when files are missing, :class:`DatasetCorruptError` when a file
    fails its checks.
    """
    if input_range not in ("pm1", "torch7"):
        raise ValueError(f"input_range must be 'pm1' or 'torch7', got {input_range!r}")
    spec = _spec(name)
    paths = ensure_files(name, root, download=download)
    arrays = {role: verify_file(p, spec.files[role]) for role, p in paths.items()}
    n_train = len(arrays["train_labels"])
    cut = n_train - spec.valid_count
    parts = {"train": (arrays["train_images"][:cut], arrays["train_labels"][:cut]),
             "valid": (arrays["train_images"][cut:], arrays["train_labels"][cut:]),
             "test": (arrays["test_images"], arrays["test_labels"])}
    stats = torch7_standardise(parts["train"][0]) if input_range == "torch7" else None
    parts, subset = take_subsets(parts, {"train": train_size, "valid": valid_size, "test": test_size}, seed,
                                 name)
    splits = {k: _to_split(*parts[k], stats) for k in ("train", "valid", "test")}
    source = display_path(paths["train_images"].parent)
    if stats is None:
        return DatasetSplits(name=spec.name, **splits, source=source, subset=subset)
    inputs = (f"flattened 28x28, Torch7 Data.lua 'simple': (pixel/255 - {stats[0]!r}) / {stats[1]!r} "
              "(global mean/std of the full training split, std with n-1)")
    return DatasetSplits(name=spec.name, **splits, source=source, subset=subset, inputs=inputs)


if __name__ == "__main__":  # python -m qnnlib.data.mnist mnist fashion-mnist : fetch and verify
    for _name in sys.argv[1:] or ["mnist"]:
        _d = load_mnist(_name)
        print(_name, _d.sizes(), _d.source)
