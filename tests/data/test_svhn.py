"""Tests for qnnlib.data.svhn on tiny ``.mat`` files in the official format: label 10 = digit 0, the validation
draw (400 per class of train + 200 per class of extra, scaled down), scaling, checksums, downloads, clear errors."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from qnnlib.data import svhn as sv
from qnnlib.data.download import ChecksumFile, DatasetNotFoundError
from qnnlib.data.idx import DatasetCorruptError

COUNTS = {"train": 50, "test": 20, "extra": 30}  # valid: 3 per class of train + 1 per class of extra


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def write_mat(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny SVHN file (X uint8 (32, 32, 3, n), y uint8 (n, 1) in 1..10) to ``path``; return (X, y)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    x[0, 0, 0, 0], x[0, 1, 0, 0] = 0, 255
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = the digit 0
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def make_files(directory: Path, seed: int = 0) -> tuple[sv.SvhnSpec, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Write tiny train/test/extra files into ``directory``; return a spec whose md5s match, and the arrays."""
    arrays, files = {}, {}
    for i, (role, n) in enumerate(COUNTS.items()):
        name = sv.SVHN.file(role).name
        arrays[role] = write_mat(directory / name, n, seed + i)
        files[role] = ChecksumFile(name, _md5((directory / name).read_bytes()))
    spec = replace(sv.SVHN, **files, n_train=COUNTS["train"], n_test=COUNTS["test"], n_extra=COUNTS["extra"],
                   valid_per_class_train=3, valid_per_class_extra=1, mirrors=())
    return spec, arrays


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    root = tmp_path / "data"
    spec, arrays = make_files(root / "svhn")
    monkeypatch.setattr(sv, "SVHN", spec)
    return root, spec, arrays


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


# ------------------------------------------------------------------------------ the official files
def test_official_spec():
    s = sv.SVHN
    assert (s.train.name, s.train.md5) == ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373")
    assert (s.test.name, s.test.md5) == ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")
    assert (s.extra.name, s.extra.md5) == ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7")
    assert s.mirrors == ("http://ufldl.stanford.edu/housenumbers/",)
    # pylearn2's sizes: valid 6,000, splitted_train 598,388, test 26,032
    valid = 10 * (s.valid_per_class_train + s.valid_per_class_extra)
    assert (valid, s.n_train + s.n_extra - valid, s.n_test) == (6_000, 598_388, 26_032)


# ------------------------------------------------------------------------------ loading, splits, scaling
def test_read_mat_maps_label_10_to_digit_0_and_transposes(tiny):
    root, spec, arrays = tiny
    images, labels = sv.read_mat(root / "svhn" / "train_32x32.mat", spec.train, COUNTS["train"])
    x, _ = arrays["train"]
    assert labels.dtype == np.int64 and labels[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert images.shape == (50, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images[7], x[:, :, :, 7].transpose(2, 0, 1))  # (h, w, c) -> (c, h, w)


def test_load_with_extra_the_paper_split(tiny):
    root, _, arrays = tiny
    d = sv.load_svhn(root, download=False, progress=False)
    assert d.name == "svhn" and d.sizes() == {"train": 50 + 30 - 40, "valid": 40, "test": 20}
    assert d.subset == "full" and "2/255*pixel-1" in d.inputs
    assert d.train.x.dtype == torch.float32 and d.train.x.shape[1:] == (3, 32, 32) and d.train.y.dtype == torch.int64
    assert np.bincount(d.valid.y.numpy(), minlength=10).tolist() == [4] * 10  # 3 of train + 1 of extra per class
    assert not _rows(d.valid.x) & _rows(d.train.x)  # disjoint
    every = {role: _rows(sv.scale_pm1(x.transpose(3, 2, 0, 1))) for role, (x, _) in arrays.items()}
    assert _rows(d.train.x) | _rows(d.valid.x) == every["train"] | every["extra"]
    assert len(_rows(d.valid.x) & every["train"]) == 30 and len(_rows(d.valid.x) & every["extra"]) == 10
    assert _rows(d.test.x) == every["test"] and d.test.y.tolist() == [v % 10 for v in arrays["test"][1].ravel()]
    assert d.test.x[0, 0, 0, 0] == -1.0 and d.test.x[0, 0, 0, 1] == 1.0  # X[h=0, w=1, c=0, n=0] = 255
    assert d.test.x.min() >= -1 and d.test.x.max() <= 1
    again = sv.load_svhn(root, download=False, progress=False, seed=5)  # the validation draw does not follow seed
    assert torch.equal(again.valid.x, d.valid.x) and torch.equal(again.train.y, d.train.y)


def test_load_without_extra_says_so(tiny):
    root, _, _ = tiny
    (root / "svhn" / "extra_32x32.mat").unlink()  # not needed, not fetched
    d = sv.load_svhn(root, extra=False, download=False, progress=False, train_size=10, seed=1)
    assert d.sizes() == {"train": 10, "valid": 30, "test": 20}
    assert d.subset.startswith("without extra_32x32.mat (train and valid from train_32x32.mat only")
    assert d.subset.endswith("stratified random subset (seed 1): train 10 of 20")
    assert np.bincount(d.train.y.numpy(), minlength=10).tolist() == [1] * 10
    with pytest.raises(DatasetNotFoundError, match="extra_32x32.mat is missing"):
        sv.load_svhn(root, download=False, progress=False)


# ------------------------------------------------------------------------------ corrupt files
def test_checksum_mismatch_names_the_file_and_says_delete(tiny):
    root, _, _ = tiny
    path = root / "svhn" / "test_32x32.mat"
    write_mat(path, COUNTS["test"], seed=9)
    with pytest.raises(DatasetCorruptError, match=rf"{path}: checksum mismatch for test_32x32.mat.*delete it"):
        sv.load_svhn(root, download=False, progress=False)


def test_unreadable_or_wrong_contents_say_delete(tmp_path):
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DatasetCorruptError, match=rf"{path}: not a readable SVHN .mat file.*Delete {path}"):
        sv.read_mat(path, ChecksumFile(path.name, _md5(path.read_bytes())), 5)
    write_mat(path, 5, 0)
    with pytest.raises(DatasetCorruptError, match=r"X is uint8 \(32, 32, 3, 5\), expected uint8 \(32, 32, 3, 6\)"):
        sv.read_mat(path, ChecksumFile(path.name, _md5(path.read_bytes())), 6)
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]], np.uint8)})
    with pytest.raises(DatasetCorruptError, match=r"y holds 2 labels in 0..3, expected 2 labels in 1..10"):
        sv.read_mat(path, ChecksumFile(path.name, _md5(path.read_bytes())), 2)


# ------------------------------------------------------------------------------ downloads and offline errors
def test_download_from_a_mirror(tmp_path, http_dir, monkeypatch):
    www, url = http_dir
    spec, _ = make_files(www)
    monkeypatch.setattr(sv, "SVHN", replace(spec, mirrors=(url,)))
    root = tmp_path / "data"
    d = sv.load_svhn(root, progress=False)
    assert d.sizes() == {"train": 40, "valid": 40, "test": 20}
    assert sorted(p.name for p in (root / "svhn").iterdir()) == ["extra_32x32.mat", "test_32x32.mat",
                                                                "train_32x32.mat"]


def test_offline_error_lists_urls_and_how_to_place_the_files(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_dead_port()}/"
    monkeypatch.setattr(sv, "SVHN", replace(sv.SVHN, mirrors=(url,)))
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        sv.load_svhn(root, progress=False)
    msg = str(info.value)
    assert msg.startswith("svhn: file train_32x32.mat is missing and could not be fetched.")
    assert f"{url}train_32x32.mat: URLError" in msg and "Connection refused" in msg
    assert "Also missing: test_32x32.mat, extra_32x32.mat" in msg
    assert f"into {root / 'svhn'} by hand" in msg and "a93ce644f1a588dc4d68dda5feec44a7" in msg
    assert "set QNNLIB_DATA to a directory that holds svhn/ with them" in msg
    assert not (root / "svhn").exists()


def test_read_only_data_root_says_why(tmp_path, http_dir, monkeypatch, read_only):
    www, url = http_dir
    spec, _ = make_files(www)
    monkeypatch.setattr(sv, "SVHN", replace(spec, mirrors=(url,)))
    ro = read_only(tmp_path / "ro")
    with pytest.raises(DatasetNotFoundError, match=rf"{ro / 'svhn'} cannot be created or written "
                                                   r"\(PermissionError.*set QNNLIB_DATA to a writable directory"):
        sv.load_svhn(ro, extra=False, progress=False)
