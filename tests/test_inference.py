"""Tests for qnnlib.inference: a packed BNN reproduces the PyTorch model exactly.

- hidden layers k >= 2: the integer thresholds give exactly sign(BN(fc(a))) for the same binary inputs
  (random models with random BN statistics, negative and zero γ, odd widths);
- first layer: Eq. 6 gives the exact integer W_b·p; its float64 threshold agrees with PyTorch's float32
  pipeline on (nearly) every activation — the rate is printed (pytest -s) and bounded;
- predictions: identical to the eval-mode model on a real test set (a BNN trained 1 epoch on a
  Fashion-MNIST subset; the real MNIST test images too when present);
- checkpoint round trip, size ratio on disk, errors for models that are not exportable BNNs.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qnnlib.bitpack import pack
from qnnlib.datasets import DatasetError, load_mnist, read_idx
from qnnlib.inference import (
    NotExportableError,
    PackedBNN,
    _hidden_thresholds,
    _threshold_from_table,
    _threshold_pack,
    compare_with_model,
    export_bnn,
    inputs_from_pixels,
    pixels_from_inputs,
    size_report,
)
from qnnlib.layers import QuantAct, QuantLinear
from qnnlib.models import BINARY, FLOAT, Precision, convnet, mnist_mlp
from qnnlib.train import TrainConfig, fit

MNIST_TEST = Path("/work/shared/data/mnist/t10k-images-idx3-ubyte.gz")


def random_bnn(hidden: int = 96, depth: int = 3, seed: int = 0, in_features: int = 784) -> nn.Sequential:
    """An eval-mode binary MLP with random weights, biases and BN statistics (some γ < 0, some γ = 0)."""
    torch.manual_seed(seed)
    model = mnist_mlp(hidden, depth, in_features=in_features, dropout_in=0.2, dropout_hidden=0.5)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QuantLinear):
                m.bias.copy_(torch.randn(m.out_features, generator=g))
            if isinstance(m, nn.BatchNorm1d):
                h = m.num_features
                m.running_mean.copy_(torch.randn(h, generator=g) * 15)
                m.running_var.copy_(torch.rand(h, generator=g) * 400 + 20)
                m.weight.copy_(torch.randn(h, generator=g))
                m.weight[::11] = 0.0  # constant neurons: sign(β)
                m.bias.copy_(torch.randn(h, generator=g) * 2)
    return model.eval()


def random_pixels(n: int, k: int = 784, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, k), dtype=np.uint8)


@torch.no_grad()
def torch_predict(model: nn.Module, images) -> np.ndarray:
    x = inputs_from_pixels(pixels_from_inputs(images))
    return torch.argmax(model.eval()(x), dim=1).numpy()


# --------------------------------------------------------------------------------- thresholds
def test_threshold_from_table_reads_increasing_decreasing_and_constant_columns():
    k = 4  # d = -4, -2, 0, 2, 4
    cols = [[0, 0, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]
    on = torch.tensor(cols, dtype=torch.bool).T
    t, f = _threshold_from_table(on, k)
    d = np.arange(-k, k + 1, 2)
    for j, col in enumerate(cols):
        assert np.array_equal(f[j] * d >= t[j], np.array(col, dtype=bool)), (j, t[j], f[j])
    assert list(f) == [1, -1, 1, 1, 1, -1]
    assert t[2] > k and t[3] <= -k  # constant neurons: out-of-range thresholds


def test_threshold_from_table_rejects_non_monotone_columns():
    on = torch.tensor([[0, 1, 0, 1, 1]], dtype=torch.bool).T
    with pytest.raises(ValueError, match="not monotone"):
        _threshold_from_table(on, 4)
    with pytest.raises(ValueError, match="K\\+1"):
        _threshold_from_table(torch.ones(3, 2, dtype=torch.bool), 4)


def test_threshold_pack_kernel_matches_bitpack():
    rng = np.random.default_rng(1)
    for h in (1, 63, 64, 65, 200):
        d = rng.integers(-50, 50, (9, h)).astype(np.int32)
        t = rng.integers(-40, 40, h).astype(np.int32)
        f = rng.choice(np.array([-1, 1], np.int8), h)
        out = np.empty((9, -(-h // 64)), np.uint64)
        _threshold_pack(d, t, f, out)
        assert np.array_equal(out, pack(f * d.astype(np.int64) >= t))


def test_fragile_neuron_is_counted_when_the_crossing_sits_on_a_lattice_point():
    k = 64
    bias = torch.zeros(3)
    bnp = {"mean": torch.tensor([2.0, 2.5, -3.0]), "var": torch.ones(3), "weight": torch.tensor([1.0, 1.0, -1.0]),
           "bias": torch.zeros(3), "eps": 1e-4}
    t, f, fragile = _hidden_thresholds(k, bias, bnp)
    assert fragile == 1  # only neuron 0: BN(d = 2) is exactly 0, one ulp below flips it
    assert (t[0], f[0]) == (2, 1) and (t[1], f[1]) == (4, 1) and (t[2], f[2]) == (4, -1)


# -------------------------------------------------------------------------------- 8-bit inputs
def test_pixels_round_trip_and_off_grid_inputs_are_rejected():
    p = random_pixels(5)
    x = inputs_from_pixels(p)
    assert x.dtype == torch.float32 and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(pixels_from_inputs(x), p)
    assert np.array_equal(pixels_from_inputs(x.numpy().astype(np.float64)), p)
    assert np.array_equal(pixels_from_inputs(p.reshape(5, 28, 28)), p)
    with pytest.raises(ValueError, match="8-bit"):
        pixels_from_inputs(x * 0.999)
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        pixels_from_inputs(x * 2)
    with pytest.raises(ValueError, match="shape"):
        pixels_from_inputs(np.zeros(3))


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


# ------------------------------------------------------------------------- exactness vs PyTorch
@pytest.mark.parametrize("hidden,depth,seed", [(96, 3, 0), (130, 2, 1), (65, 4, 2), (300, 1, 3)])
def test_random_models_match_pytorch(hidden, depth, seed):
    model = random_bnn(hidden, depth, seed)
    packed = export_bnn(model)
    r = compare_with_model(model, packed, random_pixels(400, seed=seed), batch_size=128)
    print(f"\nrandom {hidden}x{depth}: first-layer agreement {r['first_layer_agreement']:.6f} "
          f"({r['first_layer_mismatches']} of {r['first_layer_activations']}), hidden {r['hidden_layer_mismatches']}")
    assert r["hidden_layer_mismatches"] == [0] * (depth - 1)  # exact, given the same binary inputs
    assert r["output_argmax_mismatches"] == 0
    assert r["first_layer_agreement"] >= 0.999
    # a prediction can only differ if a first-layer activation did
    assert r["prediction_mismatches"] == 0 or r["first_layer_mismatches"] > 0


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


def test_export_uses_eval_semantics_and_leaves_the_model_unchanged():
    model = random_bnn(64, 2, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    packed = export_bnn(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    p = random_pixels(100, seed=5)
    assert np.array_equal(packed.predict(p), torch_predict(model, p))


def test_sign_of_zero_is_plus_one_at_the_threshold():
    """A neuron whose BN output is exactly 0 at d = t must fire +1 (sign(0) = +1)."""
    model = random_bnn(8, 2, 6)
    with torch.no_grad():
        model.fc2.bias.zero_()
        model.bn2.running_mean.fill_(0.0)
        model.bn2.running_var.fill_(1.0 - 1e-4)
        model.bn2.weight.fill_(1.0)
        model.bn2.bias.zero_()
    packed = export_bnn(model)
    assert (packed.thresholds[1] == 0).all() and (packed.flips[1] == 1).all()  # K = 8: d = 0 gives +1


@pytest.fixture(scope="module")
def trained_fashion():
    """A 784-256x3-10 BNN trained for 1 epoch on 3000 Fashion-MNIST images, and the full test set."""
    try:
        data = load_mnist("fashion-mnist", train_size=3000, valid_size=500, download=False)
    except DatasetError as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    torch.manual_seed(0)
    model = mnist_mlp(256, 3, dropout_in=0.2, dropout_hidden=0.5)
    fit(model, data, TrainConfig(epochs=1, lr_end=1e-3, progress=False, seed=0))
    return model.eval(), data


def test_trained_bnn_predictions_are_identical_on_the_whole_test_set(trained_fashion, tmp_path):
    model, data = trained_fashion
    packed = export_bnn(model)
    x = data.test.x
    assert len(x) == 10_000
    ref = torch_predict(model, x)
    pred = packed.predict(x)
    assert np.array_equal(pred, ref)
    assert (pred == data.test.y.numpy()).mean() > 0.5  # it learned something
    loaded = PackedBNN.load(packed.save(tmp_path / "bnn.npz"))
    assert np.array_equal(loaded.predict(x), ref)
    r = compare_with_model(model, packed, x)
    print(f"\ntrained fashion-mnist 256x3: first-layer agreement {r['first_layer_agreement']:.6f}, "
          f"hidden mismatches {r['hidden_layer_mismatches']}, fragile {r['fragile']}")
    assert r["hidden_layer_mismatches"] == [0, 0] and r["predictions_identical"]


@pytest.mark.skipif(not MNIST_TEST.exists(), reason=f"{MNIST_TEST} not present")
def test_trained_bnn_identical_on_real_mnist_test_images(trained_fashion):
    model, _ = trained_fashion
    images = read_idx(MNIST_TEST)
    assert images.shape == (10_000, 28, 28)
    assert np.array_equal(export_bnn(model).predict(images), torch_predict(model, images))


# ------------------------------------------------------------------------------- file and size
def test_save_load_round_trip_uncompressed_without_pickle(tmp_path):
    model = random_bnn(100, 3, 7)
    packed = export_bnn(model)
    path = packed.save(tmp_path / "bnn.npz")
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    loaded = PackedBNN.load(path)
    assert loaded.in_features == packed.in_features and loaded.out_eps == packed.out_eps
    assert loaded.fragile == packed.fragile
    for a, b in zip(packed._arrays().values(), loaded._arrays().values()):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    p = random_pixels(64, seed=7)
    assert np.array_equal(loaded.predict(p), packed.predict(p))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a PackedBNN"):
        PackedBNN.load(tmp_path / "other.npz")


def test_size_report_binary_layers_about_30x(tmp_path):
    model = random_bnn(512, 3, 8)
    packed = export_bnn(model)
    r = size_report(model, packed, tmp_path)
    assert r["float_state_dict_bytes"] == (tmp_path / "float_state_dict.pt").stat().st_size
    assert r["packed_bytes"] == (tmp_path / "packed_bnn.npz").stat().st_size
    expected = 4 * (784 * 512 + 2 * 512 * 512 + 512 * 10) / (8 * (512 * 13 + 2 * 512 * 8 + 10 * 8))
    assert r["binary_layers_ratio"] == pytest.approx(expected)
    assert 29 < r["binary_layers_ratio"] < 32
    assert 20 < r["file_ratio"] < r["binary_layers_ratio"]  # thresholds, BN and headers cost a little


# ------------------------------------------------------------------------------ bad models
def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: mnist_mlp(16, 2, precision=FLOAT), "float nn.Linear"),
        (lambda: mnist_mlp(16, 2, precision=Precision(weight_bits=2)), "2-bit weights"),
        (lambda: mnist_mlp(16, 2, precision=Precision(act_bits=2)), "k-bit activations"),
        (lambda: mnist_mlp(16, 2, precision=Precision(act_bits=None)), "float activation"),
        (lambda: mnist_mlp(16, 2, precision=Precision(stochastic=True, norm="sbn")), "shift-based BN"),
        (lambda: convnet((4, 4, 4), 8, image_size=8), "convolutional"),
        (lambda: _seq(fc1=QuantLinear(8, 4), act1=QuantAct(), fc2=QuantLinear(4, 2), bn2=nn.BatchNorm1d(2)),
         "not by a BatchNorm1d"),
        (lambda: _seq(fc1=QuantLinear(8, 4), bn1=nn.BatchNorm1d(4), act1=QuantAct(), fc2=QuantLinear(4, 2)),
         "not followed by a BatchNorm1d"),
        (lambda: _seq(fc1=QuantLinear(8, 4), bn1=nn.BatchNorm1d(4), act1=QuantAct(), fc2=QuantLinear(4, 2),
                      bn2=nn.BatchNorm1d(2), act2=QuantAct()), "no activation"),
        (lambda: _seq(fc1=QuantLinear(8, 4), bn1=nn.BatchNorm1d(4)), "at least one hidden layer"),
        (lambda: _seq(fc1=QuantLinear(8, 4), bn1=nn.BatchNorm1d(4, track_running_stats=False), act1=QuantAct(),
                      fc2=QuantLinear(4, 2), bn2=nn.BatchNorm1d(2)), "running statistics"),
        (lambda: nn.ModuleList([QuantLinear(8, 4)]), "not an nn.Sequential"),
    ],
)
def test_bad_models_raise_with_what_is_supported(make, match):
    with pytest.raises(NotExportableError, match=match) as exc:
        export_bnn(make())
    assert "supports" in str(exc.value) or "Sequential" in str(exc.value)


def test_supported_precisions_export():
    export_bnn(mnist_mlp(16, 1, precision=BINARY).eval())
    # stochastic activations are deterministic at inference (eval mode), so the Theano-BN variant exports
    export_bnn(mnist_mlp(16, 2, precision=Precision(stochastic=True)).eval())


# ------------------------------------------------------------------------------------- GPU
def _gpu_or_skip():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"CUDA unavailable: {exc}")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "cuda-xnor", "cuda-tc"])
def test_gpu_predictions_identical(backend):
    cupy = _gpu_or_skip()
    if backend == "cuda-tc" and int(cupy.cuda.Device().compute_capability) < 80:
        pytest.skip("1-bit tensor cores need compute capability >= 8.0")
    model = random_bnn(200, 3, 9)
    packed = export_bnn(model)
    p = random_pixels(700, seed=9)
    ref = torch_predict(model, p)
    assert np.array_equal(packed.predict(p, backend), packed.predict(p))
    assert np.array_equal(packed.predict(p, backend, first_layer="float"), packed.predict(p))
    assert np.array_equal(packed.predict(cupy.asarray(p), backend), packed.predict(p))
    r = compare_with_model(model, packed, p, backend)
    assert r["hidden_layer_mismatches"] == [0, 0] and r["output_argmax_mismatches"] == 0
    assert np.array_equal(packed.predict(p, backend), ref) or r["first_layer_mismatches"] > 0
