"""Tests for qnnlib.runtime.export: an exported BNN reproduces the PyTorch model exactly.

- hidden layers k >= 2: the integer thresholds give exactly sign(BN(fc(a))) for the same binary inputs
  (random models with random BN statistics, negative and zero γ, odd widths);
- first layer: its float64 threshold agrees with PyTorch's float32 pipeline on (nearly) every
  activation — the rate is printed (pytest -s) and bounded;
- predictions: identical to the eval-mode model on a real test set (a BNN trained 1 epoch on a
  Fashion-MNIST subset; the real MNIST test images too when present);
- errors for models that are not exportable BNNs.
The packed network itself (backends, file round trip) is tested in test_packed_bnn.py, its size on disk in
test_packed_checkpoint.py, the bit-planes in test_bitplanes.py, the thresholds in test_folding.py.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from qnnlib.data.idx import DatasetError, read_idx
from qnnlib.data.mnist import load_mnist
from qnnlib.layers import QuantAct, QuantLinear
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.convnet import convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.norm import LasagneBatchNorm
from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.runtime.export import NotExportableError, compare_with_model, export_bnn
from qnnlib.runtime.packed_bnn import PackedBNN
from qnnlib.train import TrainConfig, fit
from tests.bnn_helpers import random_bnn, random_pixels, torch_predict
from tests.shared_data import SHARED_MNIST

MNIST_TEST = SHARED_MNIST / "t10k-images-idx3-ubyte.gz"


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
    # a prediction can only differ if a first-layer activation did, on that image
    assert r["prediction_mismatches"] == 0 or r["first_layer_mismatches"] > 0
    assert r["unexplained_prediction_mismatches"] == 0 and r["exact_beyond_first_layer"]
    assert r["prediction_mismatches"] <= r["images_with_first_layer_mismatch"] <= r["first_layer_mismatches"]


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


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_non_finite_first_layer_statistics_are_not_exportable():
    model = random_bnn(16, 1, 10)
    with torch.no_grad():
        model.bn1.running_mean[3] = float("nan")
    with pytest.raises(NotExportableError, match=r"layer 1 \(fc1, bn1\) has non-finite BN statistics"):
        export_bnn(model)


_BN_PARAMS = {"mean": ("running_mean", "running_mean"), "var": ("running_var", "running_var"),
              "weight": ("weight", r"weight \(γ\)"), "bias": ("bias", r"bias \(β\)")}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("param", list(_BN_PARAMS))
@pytest.mark.parametrize("layer", [2, 3, 4], ids=["hidden2", "hidden3", "output"])
def test_diverged_layers_are_not_exportable(layer, param, value):
    """Issue 10 row 2: a NaN/±inf BN parameter of a hidden layer (or the output layer) used to fold into an
    out-of-range threshold (a constant neuron: every activation of the layer wrong, predictions too)."""
    model = mnist_mlp(300, 3, precision=BINARY).eval()  # layers 2, 3 hidden, 4 the output layer
    attr, shown = _BN_PARAMS[param]
    with torch.no_grad():
        getattr(getattr(model, f"bn{layer}"), attr)[7] = value
    kind = "NaN" if value != value else "+inf" if value > 0 else "-inf"
    with pytest.raises(NotExportableError, match=rf"layer {layer} \(fc{layer}, bn{layer}\) has non-finite BN "
                                                 rf"statistics: {shown} is {re.escape(kind)} for 1 neuron\(s\) \[7\]"
                                                 r".*diverged.*export a checkpoint from before"):
        export_bnn(model)


def test_non_finite_fc_bias_and_negative_variance_are_not_exportable():
    model = random_bnn(32, 2, 4)
    with torch.no_grad():
        model.fc2.bias[0] = float("nan")
    with pytest.raises(NotExportableError, match=r"layer 2 \(fc2, bn2\).*fc bias is NaN for 1 neuron\(s\) \[0\]"):
        export_bnn(model)
    model = random_bnn(32, 2, 4)
    with torch.no_grad():
        model.bn2.running_var[[1, 5]] = -1.0
    with pytest.raises(NotExportableError, match=r"layer 2 \(fc2, bn2\).*running_var is negative for 2 "
                                                 r"neuron\(s\) \[1, 5\]"):
        export_bnn(model)
    model = random_bnn(32, 2, 4)
    with torch.no_grad():  # several problems at once are all listed
        model.bn1.weight[2] = float("nan")  # a NaN γ used to fold into a constant neuron on layer 1 too
        model.bn1.bias[3] = float("inf")
    with pytest.raises(NotExportableError, match=r"layer 1 .*weight \(γ\) is NaN .*\[2\]; bias \(β\) is \+inf"):
        export_bnn(model)


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


def test_theano_code_model_with_lasagne_bn_exports_bit_exact():
    """The Theano recipe as the authors' code ran it has Lasagne's BN (running 1/σ): export folds it exactly."""
    torch.manual_seed(0)
    model = mnist_mlp(96, 2, precision=BINARY, options=ModelOptions(bn_running="lasagne"))
    assert isinstance(model.bn2, LasagneBatchNorm) and isinstance(model.bn3, LasagneBatchNorm)
    model.train()
    with torch.no_grad():
        for _ in range(20):  # running statistics away from their start
            model(torch.rand(64, 784) * 2 - 1)
        for m in model.modules():
            if isinstance(m, LasagneBatchNorm):
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    packed = export_bnn(model)
    assert packed.out_invstd is not None
    images = random_pixels(300)
    report = compare_with_model(model, packed, images)
    assert report["exact_beyond_first_layer"] and report["unexplained_prediction_mismatches"] == 0
    with torch.no_grad():
        x = torch.from_numpy(images).float() / 255 * 2 - 1
        torch.testing.assert_close(torch.from_numpy(packed.logits(images)), model(x), rtol=0, atol=1e-4)
    with torch.no_grad():
        model.bn2.running_invstd[4] = float("nan")
    with pytest.raises(NotExportableError, match=r"layer 2 \(fc2, bn2\) has non-finite BN statistics: "
                                                 r"running_invstd is NaN for 1 neuron\(s\) \[4\]"):
        export_bnn(model)


def test_lasagne_packed_bnn_round_trips(tmp_path):
    torch.manual_seed(1)
    model = mnist_mlp(64, 2, precision=BINARY, options=ModelOptions(bn_running="lasagne")).eval()
    packed = export_bnn(model)
    back = PackedBNN.load(packed.save(tmp_path / "t.npz"))
    assert back.out_invstd is not None and np.array_equal(back.out_invstd, packed.out_invstd)
    images = random_pixels(50)
    assert np.array_equal(back.logits(images), packed.logits(images))
