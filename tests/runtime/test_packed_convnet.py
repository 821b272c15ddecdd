"""Tests for qnnlib.runtime.packed_convnet / export_convnet: the packed ConvNet reproduces PyTorch bit for bit.

- random width-scaled ConvNets (channel counts that are and are not multiples of 64, odd ones, negative and zero
  γ) and a briefly trained one: identical predictions and every hidden activation, chained and layer by layer;
- the zero-padded border: the packed conv sums equal PyTorch's integer conv for every border case, and a model
  whose border outputs differ between 0- and −1-padding in PyTorch is matched on the 0-padding side;
- bad inputs and models that cannot be exported raise errors that say what is expected.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.files import UnreadableFileError
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.convnet import convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.norm import LasagneBatchNorm
from qnnlib.precision import LayerBits, Precision
from qnnlib.runtime.binary_gemm import binary_matmul
from qnnlib.runtime.bitpack import WORD_BITS, pack
from qnnlib.runtime.export import NotExportableError, export_bnn
from qnnlib.runtime.export_convnet import compare_convnet, export_convnet
from qnnlib.runtime.packed_bnn import PackedBNN
from qnnlib.runtime.packed_checkpoint import (
    PACKED_CONVNET_KIND,
    file_size,
    read_checkpoint,
    state_dict_bytes,
    write_checkpoint,
)
from qnnlib.runtime.packed_convnet import PackedConvNet, border_offsets, conv_weight_packed, im2col_packed
from tests.bnn_helpers import random_bnn


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


def train_briefly(model: nn.Module, seed: int, channels: int) -> torch.Generator:
    """15 Adam steps on 64 random 16x16 images with labels from their means (channel 0, or 1 if there is one);
    eval mode after. Returns the generator, to draw the test images from."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (64, channels, 16, 16), generator=g).float() / 255 * 2 - 1
    c = min(1, channels - 1)
    y = (x[:, 0, 4:12, 4:12].mean((1, 2)) > x.mean((1, 2, 3))).long() + 2 * (x[:, c, :8].mean((1, 2)) > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(15):
        i = torch.arange(16) + 16 * (step % 4)
        opt.zero_grad()
        F.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    model.eval()
    return g


def test_briefly_trained_convnet_is_bit_exact():
    torch.manual_seed(6)
    model = convnet((8, 16, 32), 32, in_channels=1, image_size=16)
    g = train_briefly(model, 6, 1)
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


# ------------------------------------------------------------------------------ Eq. 6 first layer (bit-planes)
def _first_integer_reference(w: np.ndarray, p: np.ndarray) -> np.ndarray:
    """From the definition, in int64: ``E = 2·D_in − 255·S_in`` with ``D_in``/``S_in`` the sums of
    ``W_b[o, c, tap]·p`` / ``W_b[o, c, tap]`` over the taps inside the image (N, O, H, W)."""
    n, c, h, wd = p.shape
    k = w.shape[2]
    pad = k // 2
    wi = np.rint(w).astype(np.int64)
    pp = np.pad(p.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    inside = np.pad(np.ones((1, c, h, wd), np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    d = np.zeros((n, w.shape[0], h, wd), np.int64)
    s = np.zeros((1, w.shape[0], h, wd), np.int64)
    for dy in range(k):
        for dx in range(k):
            d += np.einsum("oc,nchw->nohw", wi[:, :, dy, dx], pp[:, :, dy:dy + h, dx:dx + wd])
            s += np.einsum("oc,nchw->nohw", wi[:, :, dy, dx], inside[:, :, dy:dy + h, dx:dx + wd])
    return 2 * d - 255 * s


@pytest.mark.parametrize("in_channels,size,c1,seed", [(3, 8, 8, 0), (1, 16, 5, 1), (8, 8, 70, 2), (2, 8, 3, 3)])
def test_bitplane_first_layer_integer_is_exact_at_every_position(in_channels, size, c1, seed):
    torch.manual_seed(seed)
    model = randomize(convnet((c1, 6, 6), 8, in_channels=in_channels, image_size=size), seed, size, in_channels)
    packed = export_convnet(model)
    p = pixels(5, in_channels, size, seed)
    p[0] = 255  # extreme pixels: |E| at its largest
    p[1] = 0
    e = packed.first_layer_integer(p)
    w = model.conv1.quantized_weight().detach().numpy()
    ref = _first_integer_reference(w, p.numpy())
    assert e.dtype == np.int32 and e.shape == ref.shape
    assert np.array_equal(e, ref)
    # the border term matters: with S over all k² taps (no border case) the border would be off, the interior not
    s_all = np.rint(w.sum(axis=(1, 2, 3))).astype(np.int64)[None, :, None, None]
    s_in = -_first_integer_reference(w, np.zeros_like(p.numpy()[:1])) // 255  # E of black images is −255·S_in
    uncorrected = ref + 255 * (s_in - s_all)  # 2·D_in − 255·S_all
    border = np.ones(ref.shape[2:], bool)
    border[1:-1, 1:-1] = False
    assert np.array_equal(uncorrected[:, :, ~border], ref[:, :, ~border])
    assert not np.array_equal(uncorrected[:, :, border], ref[:, :, border])
    # E/255 is the model's float conv of x = 2p/255 − 1 (zero-padded), up to float32 rounding
    x = torch.from_numpy(p.numpy().astype(np.float32) / 255 * 2 - 1)
    s = F.conv2d(x, model.conv1.quantized_weight().detach(), None, padding=1).numpy()
    assert np.abs(e / 255.0 - s).max() < 1e-3
    # floats on the 8-bit grid give the same integers as the pixels
    assert np.array_equal(packed.first_layer_integer(x), e)


def test_bitplane_thresholds_are_the_float64_crossing_of_bn():
    """``f·E >= t``  ⇔  BN(E/255 + bias) >= 0 evaluated in float64, for every E the first layer can produce."""
    torch.manual_seed(10)
    model = randomize(convnet((9, 6, 6), 8, image_size=8), 10)
    packed = export_convnet(model)
    t, f = packed.first_bitplane_threshold.astype(np.int64), packed.first_bitplane_flip.astype(np.int64)
    bn = model.bn1
    k = 27
    e = np.arange(-2 * 255 * k, 2 * 255 * k + 1, dtype=np.int64)[:, None]
    s = e / 255.0 + model.conv1.bias.detach().double().numpy()
    mean, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    g, b = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    on = (s - mean) / np.sqrt(var + bn.eps) * g + b >= 0
    assert np.array_equal(f * e >= t, on)
    assert (on.any(0) & ~on.all(0)).sum() >= 5  # most channels cross inside the range: the test can fail


def _agreement(model: nn.Module, images) -> dict:
    packed = export_convnet(model)
    r = compare_convnet(model, packed, images, first_layer="bitplanes")
    assert r["layer_mismatches"][1:] == [0] * (len(r["layer_names"]) - 1), r  # layers >= 2 do not use the planes
    assert r["output_argmax_mismatches"] == 0
    return r


@pytest.mark.parametrize("seed", [11, 12])
def test_bitplane_first_layer_agrees_with_pytorch_on_random_models(seed):
    torch.manual_seed(seed)
    model = randomize(convnet((16, 16, 32), 32, image_size=16), seed, 16)
    r = _agreement(model, pixels(32, 3, 16, seed))
    rate = 1 - r["layer_mismatches"][0] / r["activations"][0]
    print(f"\nseed {seed}: layer 1 agreement {rate:.6f}, chain mismatches {r['activation_mismatches']}, "
          f"prediction mismatches {r['prediction_mismatches']}/{r['n_images']}")
    assert rate >= 0.99
    assert r["prediction_mismatches"] <= 0.1 * r["n_images"]


def test_bitplane_first_layer_agrees_on_a_briefly_trained_convnet():
    torch.manual_seed(13)
    model = convnet((8, 16, 32), 32, image_size=16)
    g = train_briefly(model, 13, 3)
    r = _agreement(model, torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8))
    rate = 1 - r["layer_mismatches"][0] / r["activations"][0]
    print(f"\ntrained: layer 1 agreement {rate:.6f}, prediction mismatches {r['prediction_mismatches']}")
    assert rate >= 0.99 and r["prediction_mismatches"] <= 0.1 * r["n_images"]


def test_bitplane_first_layer_needs_a_binary_first_conv_and_8bit_images():
    torch.manual_seed(14)
    model = randomize(convnet((4, 8, 8), 8, image_size=8), 14)
    packed = export_convnet(model)
    with pytest.raises(ValueError, match="8-bit"):
        packed.predict(torch.randn(2, 3, 8, 8).clamp(-1, 1), first_layer="bitplanes")
    with pytest.raises(ValueError, match="'float' .* or 'bitplanes'"):
        packed.predict(pixels(2, 3, 8), first_layer="planes")
    with pytest.raises(ValueError, match=r"\(N, 3, 8, 8\)"):
        packed.predict(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), first_layer="bitplanes")
    assert packed.predict(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), first_layer="bitplanes").shape == (0,)
    floaty = export_convnet(randomize(convnet((4, 8, 8), 8, image_size=8,
                                              precision=Precision(first=LayerBits(weight_bits=None))), 14))
    assert floaty.first_bitplane_threshold is None
    with pytest.raises(ValueError, match="binary first conv"):
        floaty.predict(pixels(2, 3, 8), first_layer="bitplanes")


# ------------------------------------------------------------------------------ the packed-convnet file
def _same_network(a, b, images) -> None:
    for first_layer in ("float", "bitplanes") if a.first_bitplane_threshold is not None else ("float",):
        assert np.array_equal(a.scores(images, first_layer=first_layer), b.scores(images, first_layer=first_layer))
        ha, hb = a.forward_hidden(images, first_layer=first_layer), b.forward_hidden(images, first_layer=first_layer)
        assert len(ha) == len(hb) and all(np.array_equal(u, v) for u, v in zip(ha, hb))


@pytest.mark.parametrize("make,size", [
    (lambda: convnet((5, 13, 70), 33, image_size=16), 16),
    (lambda: convnet((6, 12, 20), 30, image_size=8, options=ModelOptions(bn_running="lasagne")), 8),
    (lambda: convnet((8, 16, 24), 20, image_size=8, precision=Precision(first=LayerBits(weight_bits=None))), 8),
])
def test_save_load_round_trip_is_identical(tmp_path, make, size):
    torch.manual_seed(15)
    model = randomize(make(), 15, size)
    packed = export_convnet(model)
    path = packed.save(tmp_path / "convnet.npz")
    back = PackedConvNet.load(path)
    assert back.in_shape == packed.in_shape and back.pools == packed.pools and back.widths == packed.widths
    assert back.layer_names == packed.layer_names and back.fragile == packed.fragile
    assert all(np.array_equal(u, v) for u, v in zip(back.conv_weights + back.fc_weights,
                                                    packed.conv_weights + packed.fc_weights))
    images = pixels(6, 3, size, 15)
    _same_network(packed, back, images)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].item())
    assert meta["kind"] == PACKED_CONVNET_KIND
    float_bytes = state_dict_bytes(model, tmp_path / "float.pt")
    ratio = float_bytes / file_size(path)
    print(f"\n{packed.widths}: state_dict {float_bytes} B, packed {file_size(path)} B, ratio {ratio:.1f}x")
    assert ratio > 4


def test_packed_convnet_file_weights_are_the_models_sign_w(tmp_path):
    torch.manual_seed(16)
    model = randomize(convnet((5, 13, 70), 33, image_size=16), 16, 16)
    ckpt = read_checkpoint(export_convnet(model).save(tmp_path / "c.npz"), PACKED_CONVNET_KIND)
    for name in ("conv1.weight", "conv2.weight", "conv6.weight", "fc7.weight", "fc9.weight"):
        w = getattr(model, name.split(".")[0]).quantized_weight().detach().numpy()
        assert np.array_equal(ckpt.unpacked(name), w), name


def test_wrong_kind_and_corrupt_convnet_files_are_refused(tmp_path):
    torch.manual_seed(17)
    packed = export_convnet(randomize(convnet((4, 8, 8), 8, image_size=8), 17))
    path = packed.save(tmp_path / "convnet.npz")
    bnn = export_bnn(random_bnn(16, 2, 0)).save(tmp_path / "bnn.npz")
    with pytest.raises(ValueError, match=r"kind 'packed-bnn', expected kind 'packed-convnet'; .*PackedBNN.load"):
        PackedConvNet.load(bnn)
    with pytest.raises(ValueError, match=r"kind 'packed-convnet', expected kind 'packed-bnn'; .*PackedConvNet.load"):
        PackedBNN.load(path)
    data = path.read_bytes()
    for cut in (data[:0], data[:len(data) // 2], data[:-1]):
        bad = tmp_path / "cut.npz"
        bad.write_bytes(cut)
        with pytest.raises(UnreadableFileError, match=r"cut\.npz.*Delete it and export it again: .*export_convnet"):
            PackedConvNet.load(bad)
    ckpt = packed.to_checkpoint()
    del ckpt.arrays["conv3.threshold"]
    write_checkpoint(ckpt, tmp_path / "missing.npz")
    with pytest.raises(UnreadableFileError, match=r"missing\.npz is a damaged packed-convnet checkpoint: .*"
                                                  r"'conv3\.threshold'.*export_convnet"):
        PackedConvNet.load(tmp_path / "missing.npz")
    ckpt = packed.to_checkpoint()
    ckpt.attrs.pop("ksize")
    write_checkpoint(ckpt, tmp_path / "noattrs.npz")
    with pytest.raises(UnreadableFileError, match="ksize"):
        PackedConvNet.load(tmp_path / "noattrs.npz")
