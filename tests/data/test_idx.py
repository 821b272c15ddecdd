"""Tests for qnnlib.data.idx: the IDX format round trip, its big-endian header, and corrupt-file errors."""

from __future__ import annotations

import numpy as np
import pytest

from qnnlib.data.idx import DatasetCorruptError, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_idx_roundtrip(tmp_path, dtype, suffix):
    arr = (np.arange(2 * 3 * 5).reshape(2, 3, 5) - 7).astype(dtype)
    path = tmp_path / f"a{suffix}"
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")


def test_idx_header_is_big_endian_mnist_layout(tmp_path):
    write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    assert (tmp_path / "l").read_bytes()[:8] == bytes.fromhex("00000801 00000003")


@pytest.mark.parametrize("corrupt, match", [
    (lambda b: b"\x12\x34" + b[2:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "magic"),
    (lambda b: b[:-5], "length"),
    (lambda b: b + b"\x00", "length"),
    (lambda b: b[:6], "header"),
])
def test_idx_corrupt_raw(tmp_path, corrupt, match):
    path = tmp_path / "x"
    write_idx(path, np.ones((4, 28, 28), np.uint8))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DatasetCorruptError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.arange(5000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetCorruptError, match="gzip"):
        read_idx(path)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint64))
