"""Tests for qnnlib.data.cifar10 on a tiny tarball in the official format: splits, scaling, checksums, downloads,
atomic extraction, clear errors."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qnnlib.data import cifar10 as c10
from qnnlib.data import download as dl
from qnnlib.data.download import ChecksumFile, DatasetNotFoundError
from qnnlib.data.idx import DatasetCorruptError

PER_BATCH, N_TEST, N_VALID = 20, 20, 20  # 5 training batches of 20: train 80, valid 20 (= data_batch_5)


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def make_tarball(path: Path, seed: int = 0) -> tuple[bytes, dict[str, tuple[np.ndarray, list[int]]]]:
    """Write a tiny ``cifar-10-python.tar.gz`` (pickle protocol 2, bytes keys) to ``path``; return (bytes, batches)."""
    rng = np.random.default_rng(seed)
    batches = {}
    for i, name in enumerate([*c10.CIFAR10.train_batches, c10.CIFAR10.test_batch]):
        n = N_TEST if name == "test_batch" else PER_BATCH
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[0, :2] = (0, 255)
        labels = [int(v) for v in (np.arange(n) + i) % 10]
        batches[name] = (data, labels)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (data, labels) in batches.items():
            raw = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                b"filenames": [b"x.png"] * len(labels)}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue(), batches


def _spec(data: bytes, **kw) -> c10.Cifar10Spec:
    return replace(c10.CIFAR10, archive=ChecksumFile("cifar-10-python.tar.gz", _md5(data)), n_train=5 * PER_BATCH,
                   n_test=N_TEST, valid_count=N_VALID, mirrors=(), **kw)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny tarball in tmp_path/data/cifar10, registered as CIFAR10; returns (root, spec, batches)."""
    root = tmp_path / "data"
    data, batches = make_tarball(root / "cifar10" / "cifar-10-python.tar.gz")
    spec = _spec(data)
    monkeypatch.setattr(c10, "CIFAR10", spec)
    return root, spec, batches


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------------ the official file
def test_official_spec():
    s = c10.CIFAR10
    assert s.archive == ChecksumFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
    assert s.mirrors == ("https://www.cs.toronto.edu/~kriz/",) and s.folder == "cifar-10-batches-py"
    assert (s.n_train, s.n_test, s.n_train - s.valid_count) == (50_000, 10_000, 45_000)


# ------------------------------------------------------------------------------ loading, splits, scaling
def test_load_splits_and_scaling(tiny):
    root, _, batches = tiny
    d = c10.load_cifar10(root, download=False, progress=False)
    assert d.name == "cifar10" and d.sizes() == {"train": 80, "valid": 20, "test": 20}
    assert d.train.x.dtype == torch.float32 and d.train.x.shape == (80, 3, 32, 32) and d.train.y.dtype == torch.int64
    assert d.subset == "full" and "2/255*pixel-1" in d.inputs and d.describe()["inputs"] == d.inputs
    first = batches["data_batch_1"][0]
    assert d.train.x[0, 0, 0, :2].tolist() == [-1.0, 1.0]
    # channel-major rows: pixel (c, h, w) is column c*1024 + h*32 + w; the Theano code's float32 arithmetic
    want = np.float32(2.0 / 255.0) * first[1].astype(np.float32) - np.float32(1.0)
    assert torch.equal(d.train.x[1], torch.from_numpy(want.reshape(3, 32, 32)))
    # the split rule: valid = the last 5k training images (data_batch_5), test = test_batch
    assert d.valid.y.tolist() == batches["data_batch_5"][1]
    assert torch.equal(d.valid.x, c10.scale_pm1(batches["data_batch_5"][0].reshape(-1, 3, 32, 32)))
    assert d.train.y.tolist() == [v for i in range(1, 5) for v in batches[f"data_batch_{i}"][1]]
    assert d.test.y.tolist() == batches["test_batch"][1]
    assert (root / "cifar10" / "cifar-10-batches-py").is_dir()
    assert not [p for p in (root / "cifar10").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_subsets_are_stratified_and_recorded(tiny):
    root, _, _ = tiny
    d = c10.load_cifar10(root, download=False, progress=False, train_size=40, valid_size=10, test_size=10, seed=3)
    assert d.sizes() == {"train": 40, "valid": 10, "test": 10}
    assert np.bincount(d.train.y.numpy(), minlength=10).tolist() == [4] * 10
    assert d.subset == "stratified random subset (seed 3): train 40 of 80, valid 10 of 20, test 10 of 20"
    with pytest.raises(ValueError, match="train_size must be in 1..80"):
        c10.load_cifar10(root, download=False, progress=False, train_size=81)


def test_an_extracted_folder_is_used_without_the_tarball(tiny):
    root, _, _ = tiny
    c10.load_cifar10(root, download=False, progress=False)
    (root / "cifar10" / "cifar-10-python.tar.gz").unlink()
    assert c10.load_cifar10(root, download=False, progress=False).sizes()["train"] == 80


# ------------------------------------------------------------------------------ corrupt files
def test_checksum_mismatch_names_the_file_and_says_delete(tiny):
    root, _, _ = tiny
    tgz = root / "cifar10" / "cifar-10-python.tar.gz"
    make_tarball(tgz, seed=1)  # a valid tarball, not "the official" one
    with pytest.raises(DatasetCorruptError, match=rf"{tgz}: checksum mismatch for cifar-10-python.tar.gz.*delete it"):
        c10.load_cifar10(root, download=False, progress=False)
    assert not (root / "cifar10" / "cifar-10-batches-py").exists()


def test_truncated_tarball_extracts_nothing(tmp_path):
    good, _ = make_tarball(tmp_path / "good.tar.gz")
    tgz = tmp_path / "d" / "cifar-10-python.tar.gz"
    tgz.parent.mkdir()
    tgz.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetCorruptError, match=rf"{tgz}: the archive is damaged or truncated.*Delete {tgz}"):
        dl.extract_tar(tgz, tgz.parent, "cifar-10-batches-py", progress=False)
    assert sorted(p.name for p in tgz.parent.iterdir()) == ["cifar-10-python.tar.gz"]


def test_interrupted_extraction_leaves_nothing_that_passes_for_complete(tiny, monkeypatch):
    root, _, _ = tiny
    home = root / "cifar10"
    real_extract, calls = tarfile.TarFile.extract, []

    def dying(self, member, *args, **kw):
        calls.append(member.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way
        return real_extract(self, member, *args, **kw)

    monkeypatch.setattr(tarfile.TarFile, "extract", dying)
    with pytest.raises(KeyboardInterrupt):
        c10.load_cifar10(root, download=False, progress=False)
    assert sorted(p.name for p in home.iterdir()) == ["cifar-10-python.tar.gz"]
    # a process killed outright leaves its temporary directory: the next extraction removes it
    orphan = home / ".cifar-10-batches-py.4242424.abc123.tmp"
    (orphan / "cifar-10-batches-py").mkdir(parents=True)
    (orphan / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"half")
    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    assert c10.load_cifar10(root, download=False, progress=False).sizes()["valid"] == 20
    assert sorted(p.name for p in home.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_damaged_or_missing_batch_says_delete_the_folder(tiny):
    root, _, _ = tiny
    c10.load_cifar10(root, download=False, progress=False)
    folder = root / "cifar10" / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])
    with pytest.raises(DatasetCorruptError, match=rf"{folder / 'data_batch_3'} is not a readable CIFAR-10 batch "
                                                  rf".*Delete the folder {folder}"):
        c10.load_cifar10(root, download=False, progress=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetCorruptError, match=rf"data_batch_3 is missing: the folder {folder} is incomplete"):
        c10.load_cifar10(root, download=False, progress=False)


def test_a_batch_may_not_run_code(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": os.system}, protocol=2))  # a global that would run code
    with pytest.raises(DatasetCorruptError, match="forbidden global"):
        c10.read_batch(p)


# ------------------------------------------------------------------------------ downloads and offline errors
def test_download_from_a_mirror(tmp_path, http_dir, monkeypatch):
    www, url = http_dir
    data, _ = make_tarball(www / "cifar-10-python.tar.gz")
    monkeypatch.setattr(c10, "CIFAR10", replace(_spec(data), mirrors=(url,)))
    root = tmp_path / "data"
    d = c10.load_cifar10(root, progress=False)
    assert d.sizes() == {"train": 80, "valid": 20, "test": 20}
    assert (root / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == data


def test_offline_error_lists_urls_and_how_to_place_the_file(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_dead_port()}/"
    monkeypatch.setattr(c10, "CIFAR10", replace(c10.CIFAR10, mirrors=(url,)))
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        c10.load_cifar10(root, progress=False)
    msg = str(info.value)
    assert msg.startswith("cifar10: file cifar-10-python.tar.gz is missing and could not be fetched.")
    assert f"{url}cifar-10-python.tar.gz: URLError" in msg and "Connection refused" in msg
    assert "put cifar-10-python.tar.gz" in msg and str(root / "cifar10") in msg
    assert "set QNNLIB_DATA to a directory that holds cifar10/ with them" in msg
    assert "c58f30108f718f92721af3b95e74349a" in msg and "https://www.cs.toronto.edu/~kriz/cifar.html" in msg
    assert not (root / "cifar10").exists()
    with pytest.raises(DatasetNotFoundError, match="downloading is disabled"):
        c10.load_cifar10(root, download=False, progress=False)


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, http_dir, monkeypatch):
    www, url = http_dir
    make_tarball(www / "cifar-10-python.tar.gz")
    monkeypatch.setattr(c10, "CIFAR10", replace(c10.CIFAR10, mirrors=(url,)))  # the official md5
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch for cifar-10-python.tar.gz"):
        c10.load_cifar10(root, progress=False)
    assert not (root / "cifar10").exists()


def test_read_only_data_root_says_why(tmp_path, http_dir, monkeypatch, read_only):
    www, url = http_dir
    data, _ = make_tarball(www / "cifar-10-python.tar.gz")
    monkeypatch.setattr(c10, "CIFAR10", replace(_spec(data), mirrors=(url,)))
    ro = read_only(tmp_path / "ro")
    with pytest.raises(DatasetNotFoundError, match=rf"{ro / 'cifar10'} cannot be created or written "
                                                   r"\(PermissionError.*set QNNLIB_DATA to a writable directory"):
        c10.load_cifar10(ro, progress=False)


def test_read_only_root_with_the_tarball_cannot_extract_and_says_why(tiny, read_only):
    root, _, _ = tiny
    ro = read_only(root / "cifar10")
    with pytest.raises(DatasetNotFoundError, match=rf"cannot extract cifar-10-python.tar.gz: {ro} is not a writable "
                                                   r"directory \(PermissionError.*QNNLIB_DATA"):
        c10.load_cifar10(root, download=False, progress=False)
