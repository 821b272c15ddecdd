"""Tests for qnnlib.packed_checkpoint: every binary layer's sign(W) packed (conv and linear), the other
tensors kept, bytes on disk measured against torch.save(state_dict)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import FLOAT
from qnnlib.runtime.bitpack import unpack
from qnnlib.runtime.packed_checkpoint import (
    binary_weight_float_bytes,
    disk_sizes,
    file_size,
    packed_export,
    save_packed,
    state_dict_bytes,
)


def conv_bnn() -> nn.Sequential:
    """1×4×4 → binary conv 3×3 (2 maps) → pool → BN → sign → flatten (8) → binary fc 3."""
    return nn.Sequential(OrderedDict(conv1=QuantConv2d(1, 2, 3, padding=1), pool1=nn.MaxPool2d(2),
                                     bn1=nn.BatchNorm2d(2), act1=QuantAct(1), flatten=nn.Flatten(),
                                     fc2=QuantLinear(8, 3)))


def test_packed_export_roundtrip_and_disk_sizes(tmp_path):
    m = conv_bnn()
    exp = packed_export(m)
    w = m.conv1.weight.detach()
    bits = unpack(exp["conv1.weight.packed"], 9)
    np.testing.assert_array_equal(bits, np.where(w.reshape(2, 9).numpy() >= 0, 1.0, -1.0))
    assert exp["conv1.weight.packed"].dtype == np.uint64
    assert "conv1.bias" in exp and "bn1.running_mean" in exp
    big = mnist_mlp(hidden=256, depth=2)
    s = disk_sizes(big, tmp_path)
    assert s["float_state_dict_bytes"] == (tmp_path / "float_state_dict.pt").stat().st_size
    assert s["packed_bytes"] == (tmp_path / "packed.npz").stat().st_size
    assert 20 < s["disk_ratio"] < 32
    # 784 inputs pad to 13 words of 64: 832 bits per row for 784 values
    assert s["binary_weight_packed_bytes"] == 256 * 13 * 8 + 256 * 4 * 8 + 10 * 4 * 8
    assert s["binary_weight_ratio"] == pytest.approx(s["binary_weight_float_bytes"] / s["binary_weight_packed_bytes"])
    assert s["binary_weight_float_bytes"] == binary_weight_float_bytes(big)


def test_save_packed_is_uncompressed_and_loads_without_pickle(tmp_path):
    m = conv_bnn()
    path = save_packed(m, tmp_path / "m.npz", word_bits=32)
    with np.load(path, allow_pickle=False) as z:
        assert z["conv1.weight.packed"].dtype == np.uint32
        assert list(z["fc2.weight.shape"]) == [3, 8]
        np.testing.assert_array_equal(z["bn1.running_var"], m.bn1.running_var.numpy())
    arrays = sum(v.nbytes for v in packed_export(m, 32).values())
    assert arrays < file_size(path) < arrays + 1024 * len(packed_export(m, 32))  # headers only, no compression


def test_measuring_helpers(tmp_path):
    m = mnist_mlp(hidden=32, depth=1)
    path = tmp_path / "sub" / "f.pt"
    n = state_dict_bytes(m, path)  # creates the folder
    assert n == path.stat().st_size == file_size(path)
    assert set(torch.load(path)) == set(m.state_dict())
    assert binary_weight_float_bytes(m) == 4 * (784 * 32 + 32 * 10)
    assert binary_weight_float_bytes(mnist_mlp(hidden=32, depth=1, precision=FLOAT)) == 0
