"""Tests for qnnlib.runtime.packed_bnn: the packed network (Alg. 4) on every CPU backend, both first-layer modes,
its checkpoint file (the container itself: test_packed_checkpoint.py). Exactness against PyTorch is tested
through the export in test_export.py."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from qnnlib.runtime.bitplanes import inputs_from_pixels
from qnnlib.runtime.export import export_bnn
from qnnlib.runtime.packed_bnn import PackedBNN
from tests.bnn_helpers import random_bnn, random_pixels


@pytest.mark.parametrize("k", [784, 130, 64, 1])
def test_first_layer_integer_is_exact_for_bitplanes_and_float(k):
    model = random_bnn(hidden=70, depth=1, in_features=k, seed=k)
    packed = export_bnn(model)
    p = random_pixels(33, k, seed=k)
    wb = np.where(model.fc1.weight.detach().numpy() >= 0, 1, -1).astype(np.int64)
    exact = p.astype(np.int64) @ wb.T  # D = W_b · p
    for backend in ("cpu", "numpy"):
        assert np.array_equal(packed.first_layer_integer(p, backend), exact)
    assert np.array_equal(packed.first_layer_integer(p, first_layer="float"), exact)
    assert np.array_equal(packed.row_sum, wb.sum(1))


def test_activations_are_not_trivial_in_random_models():
    model = random_bnn(96, 3, 0)
    acts = export_bnn(model).forward_hidden(random_pixels(200))
    for a in acts:
        frac = float((a == 1).mean())
        assert 0.2 < frac < 0.8  # thresholds are inside the range, not all-constant
        assert set(np.unique(a)) <= {-1, 1}


def test_backends_and_first_layer_modes_agree():
    model = random_bnn(70, 2, 4)
    packed = export_bnn(model)
    p = random_pixels(50, seed=4)
    ref = packed.predict(p)
    assert np.array_equal(packed.predict(p, "numpy"), ref)
    assert np.array_equal(packed.predict(p, "auto"), ref)
    assert np.array_equal(packed.predict(p, first_layer="float"), ref)
    assert np.array_equal(packed.predict(inputs_from_pixels(p), batch_size=7), ref)
    assert np.array_equal(packed.logits(p).argmax(1), ref)
    assert packed.predict(p[:0]).shape == (0,)
    with pytest.raises(ValueError, match="backend"):
        packed.predict(p, "gpu")
    with pytest.raises(ValueError, match="first_layer"):
        packed.predict(p, first_layer="int8")
    with pytest.raises(ValueError, match="hidden layer"):
        packed.binary_layer(1, np.ones((2, 784)))
    with pytest.raises(ValueError, match="±1"):
        packed.binary_layer(2, np.zeros((2, 70)))


def test_save_load_round_trip_uncompressed_without_pickle(tmp_path):
    model = random_bnn(100, 3, 7)
    packed = export_bnn(model)
    path = packed.save(tmp_path / "bnn.npz")
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"meta", "fc1.weight.packed", "fc2.weight.packed", "fc3.weight.packed",
                                "fc4.weight.packed", "fc1.threshold", "fc1.flip", "fc2.threshold", "fc2.flip",
                                "fc3.threshold", "fc3.flip", "fc1.row_sum", "fc4.bias", "bn4.running_mean",
                                "bn4.running_var", "bn4.weight", "bn4.bias"}
        np.testing.assert_array_equal(z["bn4.running_var"], model.bn4.running_var.numpy())  # the model's own keys
    loaded = PackedBNN.load(path)
    assert loaded.in_features == packed.in_features and loaded.out_eps == packed.out_eps
    assert loaded.fragile == packed.fragile
    for a, b in zip(packed.to_checkpoint().entries().values(), loaded.to_checkpoint().entries().values()):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    p = random_pixels(64, seed=7)
    assert np.array_equal(loaded.predict(p), packed.predict(p))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a packed checkpoint"):
        PackedBNN.load(tmp_path / "other.npz")


def test_malformed_packed_bnn_is_rejected():
    good = export_bnn(random_bnn(70, 2, 4))
    fields = dict(weights=good.weights, in_features=good.in_features, thresholds=good.thresholds,
                  flips=good.flips, row_sum=good.row_sum, out_bias=good.out_bias, out_mean=good.out_mean,
                  out_var=good.out_var, out_weight=good.out_weight, out_beta=good.out_beta, out_eps=good.out_eps)
    PackedBNN(**fields)
    with pytest.raises(ValueError, match="L >= 2"):
        PackedBNN(**{**fields, "thresholds": good.thresholds[:1]})
    with pytest.raises(ValueError, match="uint64"):
        PackedBNN(**{**fields, "weights": [good.weights[0].astype(np.uint32), *good.weights[1:]]})
    with pytest.raises(ValueError, match="row_sum"):
        PackedBNN(**{**fields, "row_sum": good.row_sum[:-1]})
