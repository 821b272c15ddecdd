"""Tests for qnnlib.runtime.packed_convnet / export_convnet: the packed ConvNet reproduces PyTorch bit for bit.

- random width-scaled ConvNets (channel counts that are and are not multiples of 64, odd ones, negative and zero
  γ) and a briefly trained one: identical predictions and every hidden activation, chained and layer by layer;
- the zero-padded border: the packed conv sums equal PyTorch's integer conv for every border case, and a model
  whose border outputs differ between 0- and −1-padding in PyTorch is matched on the 0-padding side;
- bad inputs and models that cannot be exported raise errors that say what is expected.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.convnet import convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.norm import LasagneBatchNorm
from qnnlib.precision import LayerBits, Precision
from qnnlib.runtime.binary_gemm import binary_matmul
from qnnlib.runtime.bitpack import WORD_BITS, pack
from qnnlib.runtime.export import NotExportableError
from qnnlib.runtime.export_convnet import compare_convnet, export_convnet
from qnnlib.runtime.packed_convnet import border_offsets, conv_weight_packed, im2col_packed


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0, size: int = 8, in_channels: int = 3) -> nn.Module:
    """Random biases and γ, β (about half of γ < 0: flipped thresholds; every 7th γ = 0: constant channels), then
    BN running statistics from one train-mode batch of random images (momentum 1: the batch's own), so the
    thresholds lie where the sums are, as in a trained net; eval mode."""
    g = torch.Generator().manual_seed(seed)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, LasagneBatchNorm)
    for m in model.modules():
        if isinstance(m, (QuantConv2d, QuantLinear, nn.Conv2d)):
            m.bias.copy_(torch.randn(m.bias.shape, generator=g))
        if isinstance(m, norms):
            h = m.num_features
            m.weight.copy_(torch.randn(h, generator=g))
            m.weight[::7] = 0.0
            m.bias.copy_(torch.randn(h, generator=g) * 0.3)
            m.momentum = 1.0
    x = torch.randint(0, 256, (32, in_channels, size, size), generator=g).float() / 255 * 2 - 1
    model.train()(x)
    for m in model.modules():
        if isinstance(m, norms):
            m.momentum = 0.1
            m.running_mean.add_(torch.randn(m.num_features, generator=g) * 0.5)
    return model.eval()


def pixels(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def assert_exact(model: nn.Module, images, min_mixed: float = 0.3) -> dict:
    packed = export_convnet(model)
    r = compare_convnet(model, packed, images)
    assert r["activation_mismatches"] == [0] * len(r["layer_names"]), r
    assert r["layer_mismatches"] == [0] * len(r["layer_names"]), r
    assert r["predictions_identical"] and r["output_argmax_mismatches"] == 0 and r["exact"], r
    # the test can fail: the activations are not constant (most channels see both signs)
    acts = packed.forward_hidden(images)
    for a in acts:
        per_channel = a.reshape(a.shape[0], a.shape[1], -1).transpose(1, 0, 2).reshape(a.shape[1], -1)
        mixed = ((per_channel == 1).any(1) & (per_channel == -1).any(1)).mean()
        assert mixed >= min_mixed, mixed
    return r


# ------------------------------------------------------------------------------ bit-exact models
@pytest.mark.parametrize("channels,size,fc,seed", [
    ((8, 16, 32), 8, 40, 0),
    ((5, 13, 70), 16, 33, 1),  # odd channels: border sums have the other parity
    ((64, 128, 64), 8, 64, 2),  # whole words
    ((3, 64, 100), 8, 128, 3),
])
def test_random_convnets_are_bit_exact(channels, size, fc, seed):
    torch.manual_seed(seed)
    model = randomize(convnet(channels, fc, image_size=size), seed, size)
    assert_exact(model, pixels(12, 3, size, seed))


def test_float_images_and_uint8_pixels_give_the_same_predictions():
    torch.manual_seed(0)
    model = randomize(convnet((8, 16, 32), 24, image_size=8))
    packed = export_convnet(model)
    p = pixels(10, 3, 8)
    x = torch.from_numpy(p.numpy().astype(np.float32) / 255.0 * 2.0 - 1.0)
    assert np.array_equal(packed.predict(p), packed.predict(x))
    with torch.no_grad():
        assert np.array_equal(packed.predict(x), model(x).argmax(1).numpy())
    xr = torch.randn(10, 3, 8, 8)  # real-valued inputs off the 8-bit grid: the float first layer takes them
    with torch.no_grad():
        assert np.array_equal(packed.predict(xr), model(xr).argmax(1).numpy())


def test_lasagne_bn_and_svhn_layout_are_bit_exact():
    torch.manual_seed(4)
    model = randomize(convnet((6, 12, 20), 30, image_size=8, options=ModelOptions(bn_running="lasagne")), 4)
    assert isinstance(model.bn1, LasagneBatchNorm)
    assert_exact(model, pixels(10, 3, 8, 4))


def test_float_first_conv_exports():
    torch.manual_seed(5)
    prec = Precision(first=LayerBits(weight_bits=None))
    model = randomize(convnet((8, 16, 24), 20, image_size=8, precision=prec), 5)
    assert type(model.conv1) is nn.Conv2d
    assert_exact(model, pixels(8, 3, 8, 5))


def test_briefly_trained_convnet_is_bit_exact():
    torch.manual_seed(6)
    model = convnet((8, 16, 32), 32, in_channels=1, image_size=16)
    g = torch.Generator().manual_seed(6)
    x = torch.randint(0, 256, (64, 1, 16, 16), generator=g).float() / 255 * 2 - 1
    y = (x[:, 0, 4:12, 4:12].mean((1, 2)) > x.mean((1, 2, 3))).long() + 2 * (x[:, 0, :8].mean((1, 2)) > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(15):
        i = torch.arange(16) + 16 * (step % 4)
        opt.zero_grad()
        F.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    model.eval()
    assert model.bn3.num_batches_tracked.item() == 15
    assert_exact(model, torch.randint(0, 256, (24, 1, 16, 16), generator=g, dtype=torch.uint8), min_mixed=0.2)


# ------------------------------------------------------------------------------ the padded border
@pytest.mark.parametrize("c,size", [(5, 4), (64, 3), (70, 5), (1, 1), (3, 2)])
def test_packed_conv_sums_equal_pytorch_zero_padded_conv(c, size):
    """im2col on packed words + Eq. 7 + border_offsets == F.conv2d(±1 input, ±1 weight, padding=1), every pixel."""
    g = torch.Generator().manual_seed(c)
    o = 7
    a = torch.where(torch.rand(3, c, size, size, generator=g) < 0.5, -1.0, 1.0)
    w = torch.where(torch.rand(o, c, 3, 3, generator=g) < 0.7, 1.0, -1.0)  # biased: border terms do not cancel
    ref = F.conv2d(a, w, padding=1).permute(0, 2, 3, 1).numpy().astype(np.int64)
    words = pack(a.permute(0, 2, 3, 1).contiguous().numpy(), WORD_BITS)
    cols = np.empty((3 * size * size, 9 * words.shape[-1]), dtype=np.uint64)
    im2col_packed(words, 3, cols)
    wp = conv_weight_packed(w)
    raw = binary_matmul(cols, wp, cols.shape[1] * WORD_BITS, "cpu").reshape(3, size, size, o)
    off = border_offsets(wp, c, 3, size, size)
    assert np.array_equal(raw + off[None], ref)
    assert size < 2 or not np.array_equal(raw - raw.min(), ref - ref.min())  # the correction is not a constant


def _torch_acts_padded(model: nn.Module, x: torch.Tensor, value: float) -> list[torch.Tensor]:
    """The model's hidden activations with every binary conv's input padded with ``value`` instead of 0."""
    acts, h = [], x
    with torch.no_grad():
        for name, m in model.named_children():
            if isinstance(m, QuantConv2d) and name != "conv1":
                h = F.conv2d(F.pad(h, (1, 1, 1, 1), value=value), m.quantized_weight(), m.bias)
            else:
                h = m(h)
            if isinstance(m, QuantAct):
                acts.append(h.numpy().astype(np.int8))
    return acts


def test_border_outputs_follow_zero_padding_not_minus_one_padding():
    torch.manual_seed(7)
    model = randomize(convnet((8, 10, 16), 16, image_size=8), 7)
    with torch.no_grad():
        # act1 = −1 everywhere and conv2's weights all +1: a conv2 sum is −8 per in-image tap, so with 0-padding
        # the corners give −32, the edges −48, the interior −72 (−72 everywhere with −1-padding); BN2 puts the
        # threshold at −50, so the pooled border pixels are +1 with 0-padding and −1 with −1-padding.
        model.bn1.weight.zero_()
        model.bn1.bias.fill_(-1.0)
        model.conv2.weight.abs_().add_(0.01)
        model.conv2.bias.zero_()
        model.bn2.running_mean.fill_(-50.0)
        model.bn2.running_var.fill_(4.0)
        model.bn2.weight.fill_(1.0)
        model.bn2.bias.zero_()
    model.eval()
    x = pixels(16, 3, 8, 7)
    xf = torch.from_numpy(x.numpy().astype(np.float32) / 255 * 2 - 1)
    zero, minus = _torch_acts_padded(model, xf, 0.0), _torch_acts_padded(model, xf, -1.0)
    with torch.no_grad():
        model_acts = [m.numpy() for m in _acts(model, xf)]
    assert np.array_equal(zero[1], model_acts[1])  # our reading of PyTorch's padding is right
    differ = zero[1] != minus[1]  # act2 (after pool2): the border pixels
    assert differ.any(), "the test model must make 0- and −1-padding differ"
    interior = np.zeros_like(differ)
    interior[:, :, 1:-1, 1:-1] = True  # pooled 4×4: the inner 2×2 only sees in-image conv outputs
    assert not (differ & interior).any()
    mine = export_convnet(model).forward_hidden(x)
    assert np.array_equal(mine[1], zero[1]) and not np.array_equal(mine[1], minus[1])


def _acts(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    acts, h = [], x
    for m in model.children():
        h = m(h)
        if isinstance(m, QuantAct):
            acts.append(h)
    return acts


# ------------------------------------------------------------------------------ bad inputs and models
def test_wrong_image_shapes_name_the_expected_shape():
    torch.manual_seed(8)
    packed = export_convnet(randomize(convnet((4, 8, 8), 8, image_size=8)))
    for bad in (torch.zeros(2, 1, 8, 8), torch.zeros(2, 3, 16, 16), torch.zeros(3, 8, 8), np.zeros((2, 192))):
        with pytest.raises(ValueError, match=r"\(N, 3, 8, 8\)"):
            packed.predict(bad)
    with pytest.raises(ValueError, match="float .* or uint8"):
        packed.predict(np.zeros((2, 3, 8, 8), dtype=np.int32))
    with pytest.raises(ValueError, match="±1"):
        packed.layer(2, torch.zeros(1, 4, 8, 8))
    assert packed.predict(torch.zeros(0, 3, 8, 8)).shape == (0,)


def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _block(conv: nn.Module, c: int = 4, act: nn.Module | None = None) -> dict:
    return {"conv1": conv, "bn1": nn.BatchNorm2d(c), "act1": act if act is not None else QuantAct()}


def _head(c: int = 4 * 8 * 8) -> dict:
    return {"flatten": nn.Flatten(), "fc9": QuantLinear(c, 3), "bn9": nn.BatchNorm1d(3)}


@pytest.mark.parametrize("make,match", [
    (lambda: convnet((4, 4, 4), 8, image_size=8, precision=Precision(act_bits=None)), "float activation"),
    (lambda: convnet((4, 4, 4), 8, image_size=8, precision=Precision(act_bits=2)), "k-bit activations"),
    (lambda: convnet((4, 4, 4), 8, image_size=8, precision=Precision(weight_bits=2)), "2-bit weights"),
    (lambda: convnet((4, 4, 4), 8, image_size=8, precision=Precision(norm="sbn")), "shift-based BN"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, stride=2, padding=1)), **_head(64)), "stride"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 2, padding=1)), **_head()), "square, odd kernels"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, padding=0)), **_head()), "padding"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, padding=1, padding_mode="reflect")), **_head()), "padding"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, padding=1)), pool=nn.AvgPool2d(2), **_head(64)), "BatchNorm2d"),
    (lambda: _seq(conv1=QuantConv2d(3, 4, 3, padding=1), pool1=nn.AvgPool2d(2), bn1=nn.BatchNorm2d(4),
                  act1=QuantAct(), **_head(64)), "MaxPool2d"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, padding=1)), conv2=nn.Conv2d(4, 4, 3, padding=1),
                  bn2=nn.BatchNorm2d(4), act2=QuantAct(), **_head()), "float nn.Conv2d"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, padding=1)), fc2=QuantLinear(256, 3)), "Flatten"),
    (lambda: _seq(**_block(QuantConv2d(3, 4, 3, padding=1)), **_head(), act9=QuantAct()), "no activation"),
    (lambda: _seq(conv1=QuantConv2d(3, 4, 3, padding=1), act1=QuantAct(), **_head()), "BatchNorm2d"),
    (lambda: mnist_mlp(16, 2), "not a conv"),
    (lambda: nn.ModuleList([QuantConv2d(3, 4, 3)]), "not an nn.Sequential"),
])
def test_unsupported_models_are_refused(make, match):
    with pytest.raises(NotExportableError, match=match):
        export_convnet(make().eval())


@pytest.mark.parametrize("layer,param", [("bn1", "running_mean"), ("bn3", "running_var"), ("bn7", "weight"),
                                         ("conv4", "bias")])
def test_non_finite_statistics_are_refused(layer, param):
    torch.manual_seed(9)
    model = randomize(convnet((4, 8, 8), 8, image_size=8))
    with torch.no_grad():
        getattr(getattr(model, layer), param)[1] = float("nan")
    with pytest.raises(NotExportableError, match="non-finite"):
        export_convnet(model)
