"""Tests for qnnlib.runtime.packed_checkpoint: the one packed-checkpoint container (meta, key convention, no
pickle, no compression), the generic export of any model (conv and linear) and its round trip into a model,
wrong files refused with a clear error, and the one size report (bytes on disk vs torch.save(state_dict))."""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from qnnlib.files import UnreadableFileError
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import FLOAT
from qnnlib.runtime.bitpack import unpack
from qnnlib.runtime.export import export_bnn
from qnnlib.runtime.packed_bnn import PackedBNN
from qnnlib.runtime.packed_checkpoint import (
    FORMAT,
    MODEL_KIND,
    PACKED_BNN_KIND,
    SIZE_KEYS,
    VERSION,
    PackedCheckpoint,
    binary_weight_float_bytes,
    file_size,
    load_packed,
    packed_export,
    packed_state_dict,
    read_checkpoint,
    save_packed,
    size_report,
    state_dict_bytes,
    write_checkpoint,
)
from tests.bnn_helpers import random_bnn


def conv_bnn(seed: int = 0) -> nn.Sequential:
    """1×4×4 → binary conv 3×3 (2 maps) → pool → BN → sign → flatten (8) → binary fc 3."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(conv1=QuantConv2d(1, 2, 3, padding=1), pool1=nn.MaxPool2d(2),
                                     bn1=nn.BatchNorm2d(2), act1=QuantAct(1), flatten=nn.Flatten(),
                                     fc2=QuantLinear(8, 3)))


def _meta(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["meta"].item())


# ------------------------------------------------------------------------------------ the container
def test_packed_export_packs_binary_weights_and_keeps_the_rest():
    m = conv_bnn()
    exp = packed_export(m)
    assert exp.kind == MODEL_KIND and exp.word_bits == 64
    assert list(exp.weights) == ["conv1.weight", "fc2.weight"]
    assert exp.shapes["conv1.weight"] == (2, 1, 3, 3) and exp.fan_in("conv1.weight") == 9
    w = m.conv1.weight.detach()
    bits = unpack(exp.weights["conv1.weight"], 9)
    np.testing.assert_array_equal(bits, np.where(w.reshape(2, 9).numpy() >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(exp.unpacked("conv1.weight"), np.where(w.numpy() >= 0, 1.0, -1.0))
    assert exp.weights["conv1.weight"].dtype == np.uint64
    assert "conv1.bias" in exp.arrays and "bn1.running_mean" in exp.arrays and "conv1.weight" not in exp.arrays
    assert all(a.dtype == np.float32 for a in exp.arrays.values())


def test_file_layout_meta_keys_uncompressed_without_pickle(tmp_path):
    m = conv_bnn()
    path = save_packed(m, tmp_path / "m.npz", word_bits=32)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"meta", "conv1.weight.packed", "fc2.weight.packed", *packed_export(m).arrays}
        assert z["conv1.weight.packed"].dtype == np.uint32
        np.testing.assert_array_equal(z["bn1.running_var"], m.bn1.running_var.numpy())
    meta = _meta(path)
    assert meta == {"format": FORMAT, "version": VERSION, "kind": "model", "word_bits": 32,
                    "binary": {"conv1.weight": {"shape": [2, 1, 3, 3], "k": 9},
                               "fc2.weight": {"shape": [3, 8], "k": 8}},
                    "attrs": {}}
    arrays = sum(v.nbytes for v in packed_export(m, 32).entries().values())
    assert arrays < file_size(path) < arrays + 1024 * len(packed_export(m, 32).entries())  # headers, no compression


@pytest.mark.parametrize("word_bits", [32, 64])
def test_model_kind_round_trips_into_a_model(tmp_path, word_bits):
    m = conv_bnn(0).eval()
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-1, 1)
        m.bn1.running_var.uniform_(0.5, 2)
    m.bn1.num_batches_tracked.fill_(7)
    path = save_packed(m, tmp_path / "m.npz", word_bits)
    fresh = load_packed(conv_bnn(1), path).eval()  # other random weights, overwritten
    for key, v in m.state_dict().items():
        got = fresh.state_dict()[key]
        assert got.dtype == v.dtype, key
        expected = torch.where(v >= 0, 1.0, -1.0) if key in ("conv1.weight", "fc2.weight") else v
        assert torch.equal(got, expected), key
    x = torch.randn(5, 1, 4, 4)
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))  # binary layers see sign(W) either way
    sd = packed_state_dict(path)
    assert set(sd) == set(m.state_dict()) and all(t.dtype == torch.float32 for t in sd.values())
    mlp = mnist_mlp(hidden=40, depth=2).eval()
    loaded = load_packed(mnist_mlp(hidden=40, depth=2), save_packed(mlp, tmp_path / "mlp.npz", word_bits)).eval()
    x = torch.rand(8, 784) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), mlp(x))


def test_packed_bnn_kind_round_trips(tmp_path):
    packed = export_bnn(random_bnn(100, 3, 7))
    path = packed.save(tmp_path / "bnn.npz")
    meta = _meta(path)
    assert meta["kind"] == PACKED_BNN_KIND and meta["format"] == FORMAT and meta["word_bits"] == 64
    assert meta["binary"] == {f"fc{k}.weight": {"shape": [h, kin], "k": kin}
                              for k, (h, kin) in enumerate(zip(packed.widths, packed.in_features), 1)}
    ckpt = read_checkpoint(path, PACKED_BNN_KIND)
    loaded = PackedBNN.from_checkpoint(ckpt)
    assert loaded.in_features == packed.in_features and loaded.fragile == packed.fragile
    for a, b in zip(packed.to_checkpoint().entries().items(), loaded.to_checkpoint().entries().items()):
        assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[1].dtype == b[1].dtype


def test_wrong_files_are_refused_naming_the_file_and_what_was_expected(tmp_path):
    model_file = save_packed(conv_bnn(), tmp_path / "model.npz")
    bnn_file = export_bnn(random_bnn(16, 1, 0)).save(tmp_path / "bnn.npz")
    with pytest.raises(ValueError, match=r"model\.npz .*kind 'model', expected kind 'packed-bnn'; "
                                         r"read it with .*load_packed"):
        PackedBNN.load(model_file)
    with pytest.raises(ValueError, match=r"bnn\.npz .*kind 'packed-bnn', expected kind 'model'; "
                                         r"read it with .*PackedBNN.load"):
        load_packed(conv_bnn(), bnn_file)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz is not a packed checkpoint \(no 'meta' entry\)"):
        read_checkpoint(tmp_path / "other.npz", MODEL_KIND)
    old = {"format": "qnnlib.PackedBNN/1", "word_bits": 64, "in_features": [784, 16], "out_eps": 1e-5}
    np.savez(tmp_path / "old.npz", w1=np.zeros((16, 13), np.uint64), meta=np.array(json.dumps(old)))
    with pytest.raises(ValueError, match=r"old\.npz has format 'qnnlib.PackedBNN/1' version None, expected "
                                         r"a qnnlib.packed-checkpoint version 1 file of kind 'packed-bnn'"):
        PackedBNN.load(tmp_path / "old.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single\.npy is a single \.npy array"):
        read_checkpoint(tmp_path / "single.npy", MODEL_KIND)
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled\.npz"):
        read_checkpoint(tmp_path / "pickled.npz", MODEL_KIND)
    with pytest.raises(ValueError, match="kind must be one of"):
        read_checkpoint(model_file, "weights")


def _flip_a_byte_inside(path, array: np.ndarray) -> None:
    """Invert one byte of ``array``'s data where it is stored (uncompressed) in the ``.npz`` at ``path``."""
    data = bytearray(path.read_bytes())
    at = data.find(np.ascontiguousarray(array).tobytes())
    assert at > 0, "array bytes not found in the file"
    data[at + array.nbytes // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("cut", ["empty", "10 bytes", "half", "last byte", "flipped array byte"])
@pytest.mark.parametrize("kind", [PACKED_BNN_KIND, MODEL_KIND])
def test_truncated_or_corrupt_files_name_the_file_and_say_delete(tmp_path, kind, cut):
    """Issue 10 row 9: a cut or corrupted packed .npz used to raise a bare EOFError/BadZipFile."""
    if kind == PACKED_BNN_KIND:
        packed = export_bnn(random_bnn(16, 2, 0))
        path, words = packed.save(tmp_path / "bnn.npz"), packed.weights[1]

        def load():
            return PackedBNN.load(path)
    else:
        model = conv_bnn()
        path = save_packed(model, tmp_path / "model.npz")
        words = read_checkpoint(path, MODEL_KIND).weights["fc2.weight"]

        def load():
            return load_packed(conv_bnn(1), path)
    data = path.read_bytes()
    if cut == "flipped array byte":
        _flip_a_byte_inside(path, words)
    else:
        path.write_bytes(data[:{"empty": 0, "10 bytes": 10, "half": len(data) // 2, "last byte": -1}[cut]])
    with pytest.raises(UnreadableFileError) as exc:
        load()
    msg = str(exc.value)
    assert str(path) in msg and "Delete it and export it again" in msg and exc.value.path == path
    assert ("export_bnn(model).save(path)" if kind == PACKED_BNN_KIND else "save_packed(model, path)") in msg
    assert isinstance(exc.value, ValueError)  # existing `except ValueError` callers still catch it
    print(f"\n{cut}: {msg}")


def test_write_is_atomic_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    ckpt = packed_export(conv_bnn())
    path = write_checkpoint(ckpt, tmp_path / "model.npz")
    before = path.read_bytes()

    def killed(fh, **entries):
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(packed_export(conv_bnn(1)), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    assert read_checkpoint(path, MODEL_KIND).shapes == ckpt.shapes


def test_damaged_or_malformed_checkpoints_are_rejected(tmp_path):
    ckpt = packed_export(conv_bnn())
    entries = ckpt.entries()
    del entries["fc2.weight.packed"]
    np.savez(tmp_path / "cut.npz", **entries)
    with pytest.raises(ValueError, match=r"cut\.npz is a damaged packed checkpoint.*fc2\.weight\.packed"):
        read_checkpoint(tmp_path / "cut.npz", MODEL_KIND)
    words = ckpt.weights["fc2.weight"]
    with pytest.raises(ValueError, match="packs into"):
        PackedCheckpoint(MODEL_KIND, {"fc.weight": words[:, :0]}, {"fc.weight": (3, 8)})
    with pytest.raises(ValueError, match="reserved"):
        PackedCheckpoint(MODEL_KIND, {"fc.weight": words}, {"fc.weight": (3, 8)}, arrays={"meta": np.zeros(1)})
    with pytest.raises(ValueError, match="kind must be one of"):
        PackedCheckpoint("weights", {}, {})
    bnn = export_bnn(random_bnn(16, 2, 0)).to_checkpoint()
    del bnn.arrays["fc2.threshold"]
    with pytest.raises(ValueError, match=r"nothr\.npz is a damaged packed-bnn checkpoint.*'fc2\.threshold'"):
        PackedBNN.load(write_checkpoint(bnn, tmp_path / "nothr.npz"))
    same = write_checkpoint(ckpt, tmp_path / "same.npz")
    back = read_checkpoint(same, MODEL_KIND)
    assert back.shapes == ckpt.shapes and set(back.arrays) == set(ckpt.arrays)


# ------------------------------------------------------------------------------------------ sizes
def test_size_report_of_the_generic_export(tmp_path):
    big = mnist_mlp(hidden=256, depth=2)
    s = size_report(big, tmp_path)
    assert tuple(s) == SIZE_KEYS
    assert s["float_state_dict_bytes"] == (tmp_path / "float_state_dict.pt").stat().st_size
    assert s["packed_bytes"] == (tmp_path / "packed.npz").stat().st_size
    assert 20 < s["disk_ratio"] < 32
    # 784 inputs pad to 13 words of 64: 832 bits per row for 784 values
    assert s["binary_weight_packed_bytes"] == 256 * 13 * 8 + 256 * 4 * 8 + 10 * 4 * 8
    assert s["binary_weight_ratio"] == pytest.approx(s["binary_weight_float_bytes"] / s["binary_weight_packed_bytes"])
    assert s["binary_weight_float_bytes"] == binary_weight_float_bytes(big)
    assert _meta(tmp_path / "packed.npz")["kind"] == MODEL_KIND
    s32 = size_report(big, tmp_path / "w32", word_bits=32)
    assert s32["binary_weight_packed_bytes"] == 4 * (256 * 25 + 256 * 8 + 10 * 8)


def test_size_report_of_a_packed_bnn_binary_layers_about_30x(tmp_path):
    model = random_bnn(512, 3, 8)
    packed = export_bnn(model)
    r = size_report(model, tmp_path, packed)
    assert tuple(r) == SIZE_KEYS
    assert r["float_state_dict_bytes"] == (tmp_path / "float_state_dict.pt").stat().st_size
    assert r["packed_bytes"] == (tmp_path / "packed.npz").stat().st_size
    assert PackedBNN.load(tmp_path / "packed.npz").widths == packed.widths
    expected = 4 * (784 * 512 + 2 * 512 * 512 + 512 * 10) / (8 * (512 * 13 + 2 * 512 * 8 + 10 * 8))
    assert r["binary_weight_ratio"] == pytest.approx(expected)
    assert 29 < r["binary_weight_ratio"] < 32
    assert 20 < r["disk_ratio"] < r["binary_weight_ratio"]  # thresholds, BN and headers cost a little
    generic = size_report(model, tmp_path / "generic")
    assert generic["binary_weight_packed_bytes"] == r["binary_weight_packed_bytes"]
    assert generic["binary_weight_float_bytes"] == r["binary_weight_float_bytes"]
    with pytest.raises(ValueError, match="64-bit words"):
        size_report(model, tmp_path, packed, word_bits=32)


def test_measuring_helpers(tmp_path):
    m = mnist_mlp(hidden=32, depth=1)
    path = tmp_path / "sub" / "f.pt"
    n = state_dict_bytes(m, path)  # creates the folder
    assert n == path.stat().st_size == file_size(path)
    assert set(torch.load(path)) == set(m.state_dict())
    assert binary_weight_float_bytes(m) == 4 * (784 * 32 + 32 * 10)
    assert binary_weight_float_bytes(mnist_mlp(hidden=32, depth=1, precision=FLOAT)) == 0
