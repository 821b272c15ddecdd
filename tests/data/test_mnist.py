"""Tests for qnnlib.data.mnist: specs, splits, checksums on disk, downloads via load_mnist, clear errors, real files.
The IDX format is tested in test_idx.py, fetch_file's failure modes in test_download.py."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qnnlib.data import mnist as ds
from qnnlib.data.download import DatasetNotFoundError, RemoteFile, verify_file
from qnnlib.data.idx import DatasetCorruptError, DatasetError, read_idx, write_idx
from qnnlib.data.root import display_path
from qnnlib.data.splits import as_loader, stratified_subset
from tests.shared_data import FASHION_SYSTEM, SHARED_MNIST


# ------------------------------------------------------------------------------ helpers
def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def make_tiny(directory: Path, n_train: int = 40, n_test: int = 20, n_valid: int = 10, seed: int = 0,
              gz: bool = True) -> ds.IdxDatasetSpec:
    """Write a tiny MNIST-like dataset into ``directory`` and return a spec whose md5s match it."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(n_test) % 10).astype(np.uint8)}
    arrays["train_images"][0, 0, 0], arrays["train_images"][0, 0, 1] = 0, 255
    base = ds.MNIST_FAMILY["mnist"]
    files = {}
    for role, arr in arrays.items():
        name = base.files[role].name
        path = directory / (name if gz else name.removesuffix(".gz"))
        write_idx(path, arr)
        data = path.read_bytes()
        raw = gzip.decompress(data) if gz else data
        files[role] = RemoteFile(name, _md5(data) if gz else None, _md5(raw), arr.shape)
    return replace(base, name="mnist", files=files, valid_count=n_valid, mirrors=(), system_dirs=())


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny dataset registered as "mnist" under tmp_path/data/mnist; returns (root, spec)."""
    root = tmp_path / "data"
    spec = make_tiny(root / "mnist")
    monkeypatch.setitem(ds.MNIST_FAMILY, "mnist", spec)
    return root, spec


def _dead_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------- errors
def test_not_found_is_a_dataset_error():
    assert issubclass(DatasetNotFoundError, DatasetError)
    assert issubclass(DatasetCorruptError, DatasetError) and issubclass(DatasetCorruptError, ValueError)


# ------------------------------------------------------------------------- loading / splits
def test_load_tiny_splits_and_scaling(tiny):
    root, spec = tiny
    d = ds.load_mnist("mnist", root, download=False)
    assert d.sizes() == {"train": 30, "valid": 10, "test": 20}
    assert d.train.x.dtype == torch.float32 and d.train.x.shape == (30, 784)
    assert d.train.y.dtype == torch.int64
    assert d.train.x[0, 0] == -1.0 and d.train.x[0, 1] == 1.0
    assert d.train.x.min() >= -1 and d.train.x.max() <= 1
    train = read_idx(root / "mnist" / spec.files["train_images"].name)
    # valid = the LAST valid_count training images, train = the first ones
    np.testing.assert_allclose(d.valid.x.numpy(), train[30:].reshape(10, -1) / 255.0 * 2 - 1, atol=1e-6)
    assert d.source == display_path(root / "mnist")  # relative to the repository or $QNNLIB_DATA when under one
    desc = d.describe()
    assert desc["name"] == "mnist" and desc["sizes"] == d.sizes() and desc["source"] == d.source


def test_env_var_is_default_root(tiny, monkeypatch):
    root, _ = tiny
    monkeypatch.setenv("QNNLIB_DATA", str(root))
    assert ds.load_mnist(download=False).sizes()["test"] == 20


def test_uncompressed_files_accepted(tmp_path, monkeypatch):
    spec = make_tiny(tmp_path / "mnist", gz=False)
    monkeypatch.setitem(ds.MNIST_FAMILY, "mnist", spec)
    assert ds.load_mnist("mnist", tmp_path, download=False).sizes()["train"] == 30


def test_subsets_are_stratified_and_deterministic(tiny):
    root, _ = tiny
    a = ds.load_mnist("mnist", root, download=False, train_size=20, valid_size=5, test_size=10, seed=3)
    b = ds.load_mnist("mnist", root, download=False, train_size=20, valid_size=5, test_size=10, seed=3)
    c = ds.load_mnist("mnist", root, download=False, train_size=20, seed=4)
    assert a.sizes() == {"train": 20, "valid": 5, "test": 10}
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert torch.bincount(a.train.y, minlength=10).tolist() == [2] * 10
    assert "subset" in a.describe()["subset"] and a.describe()["sizes"]["train"] == 20
    with pytest.raises(ValueError, match="train_size"):
        ds.load_mnist("mnist", root, download=False, train_size=31)


def test_stratified_subset_exact_size():
    labels = np.array([0] * 7 + [1] * 2 + [2] * 1)
    for n in range(1, 11):
        idx = stratified_subset(labels, n, seed=0)
        assert len(idx) == n == len(set(idx.tolist())) and np.all(np.diff(idx) > 0)


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="fashion-mnist.*mnist|mnist.*fashion-mnist"):
        ds.load_mnist("cifar", tmp_path)


def test_checksum_mismatch_on_disk(tiny):
    root, spec = tiny
    path = root / "mnist" / spec.files["test_labels"].name
    labels = read_idx(path)
    labels[0] = (labels[0] + 1) % 10  # structurally valid, wrong content
    write_idx(path, labels)
    with pytest.raises(DatasetCorruptError, match="checksum") as info:
        ds.load_mnist("mnist", root, download=False)
    assert spec.files["test_labels"].name in str(info.value)


def test_recompressed_file_accepted_by_content_md5(tiny):
    root, spec = tiny
    path = root / "mnist" / spec.files["test_images"].name
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))  # other container, same content
    assert _md5(path.read_bytes()) != spec.files["test_images"].gz_md5
    assert ds.load_mnist("mnist", root, download=False).sizes()["test"] == 20


def test_missing_without_download(tiny):
    root, spec = tiny
    (root / "mnist" / spec.files["train_labels"].name).unlink()
    with pytest.raises(DatasetNotFoundError, match="train-labels-idx1-ubyte.gz") as info:
        ds.load_mnist("mnist", root, download=False)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, RuntimeError)
    assert "QNNLIB_DATA" in str(info.value)


# ------------------------------------------------------------------------------ downloading
def test_download_from_local_http(tmp_path, monkeypatch, http_dir):
    www, url = http_dir
    spec = make_tiny(www)
    spec = replace(spec, mirrors=(f"http://127.0.0.1:{_dead_port()}/", url))
    monkeypatch.setitem(ds.MNIST_FAMILY, "mnist", spec)
    root = tmp_path / "data"
    d = ds.load_mnist("mnist", root)
    assert d.sizes() == {"train": 30, "valid": 10, "test": 20}
    got = sorted(p.name for p in (root / "mnist").iterdir())
    assert got == sorted(f.name for f in spec.files.values())  # no temporary files left behind
    for f in spec.files.values():
        assert (root / "mnist" / f.name).read_bytes() == (www / f.name).read_bytes()


def test_offline_error_names_file_urls_and_env(tmp_path, monkeypatch):
    port = _dead_port()
    spec = replace(ds.MNIST_FAMILY["mnist"], mirrors=(f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"))
    monkeypatch.setitem(ds.MNIST_FAMILY, "mnist", spec)
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        ds.load_mnist("mnist")
    msg = str(info.value)
    for needle in ("train-images-idx3-ubyte.gz", f"http://127.0.0.1:{port}/a/train-images-idx3-ubyte.gz",
                   f"http://127.0.0.1:{port}/b/train-images-idx3-ubyte.gz", "QNNLIB_DATA", str(tmp_path / "mnist")):
        assert needle in msg
    assert len(info.value.attempts) == 2 and all("URLError" in a for a in info.value.attempts)
    assert not (tmp_path / "mnist").exists()  # an offline attempt leaves no empty dataset folder


# --------------------------------------------------------------------------- real files
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST test files absent")
def test_real_mnist_test_files():
    spec = ds.MNIST_FAMILY["mnist"]
    images = verify_file(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", spec.files["test_images"])
    labels = verify_file(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", spec.files["test_labels"])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))  # empty root: falls back to the system directory
    d = ds.load_mnist("fashion-mnist", download=False)
    assert d.sizes() == {"train": 50000, "valid": 10000, "test": 10000}
    assert d.source == str(FASHION_SYSTEM.resolve())
    for split in (d.train, d.valid, d.test):
        assert split.x.shape[1] == 784 and split.x.min() >= -1 and split.x.max() <= 1
        assert torch.bincount(split.y, minlength=10).min() > 0
    assert torch.bincount(d.test.y).tolist() == [1000] * 10


# ------------------------------------------------------------------------------- batches
def test_as_loader_covers_split_once(tiny):
    root, _ = tiny
    split = ds.load_mnist("mnist", root, download=False).train
    loader = as_loader(split, 7, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 5
    ys = torch.cat([y for _, y in loader])
    assert sorted(ys.tolist()) == sorted(split.y.tolist())
    assert len(as_loader(split, 7, drop_last=True)) == 4
    x0, _ = next(iter(as_loader(split, 4)))
    assert torch.equal(x0, split.x[:4])


# ------------------------------------------------------------------------- input_range (issue 11 row 5)
def test_input_range_torch7_matches_restatement(tiny):
    from tests import authors_rules_bn as ar

    root, spec = tiny
    d = ds.load_mnist("mnist", root, download=False, input_range="torch7")
    train = read_idx(root / "mnist" / spec.files["train_images"].name)
    test = read_idx(root / "mnist" / spec.files["test_images"].name)
    first = train[:30]  # the training split: statistics from it only
    for got, pixels in [(d.train.x, first), (d.valid.x, train[30:]), (d.test.x, test)]:
        assert got.dtype == torch.float32 and got.shape == (len(pixels), 784)
        np.testing.assert_allclose(got.numpy(), ar.mnist_inputs_t7(first, pixels), rtol=1e-6, atol=1e-6)
    x = d.train.x.double()
    assert abs(x.mean().item()) < 1e-6 and abs(x.std().item() - 1) < 1e-6  # ÷(n−1) std over the split
    mean, std = ds.torch7_standardise(first)
    assert "Torch7" in d.describe()["inputs"] and repr(mean) in d.describe()["inputs"]
    assert d.describe()["sizes"] == d.sizes()
    pm1 = ds.load_mnist("mnist", root, download=False)
    assert pm1.describe()["inputs"] == ds.PM1_INPUTS
    assert torch.equal(pm1.train.x, ds.load_mnist("mnist", root, download=False, input_range="pm1").train.x)
    assert not torch.allclose(pm1.train.x, d.train.x)
    # a subset keeps the full training split's statistics
    sub = ds.load_mnist("mnist", root, download=False, input_range="torch7", train_size=20, seed=1)
    idx = stratified_subset(read_idx(root / "mnist" / spec.files["train_labels"].name)[:30], 20, 1)
    np.testing.assert_allclose(sub.train.x.numpy(), ar.mnist_inputs_t7(first, first[idx]), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="input_range"):
        ds.load_mnist("mnist", root, download=False, input_range="01")
