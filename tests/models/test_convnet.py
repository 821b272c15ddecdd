"""Tests for qnnlib.models.convnet: the VGG-like ConvNet built layer by layer from the precision policy.

As for the MLP: the default models are exactly what they were before the per-layer policy (frozen
state_dict checksums, a hand-built ``nn.Sequential`` with the same outputs and gradients).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from qnnlib.gradquant import GradQuant, quantize_tensor
from qnnlib.layers import LatentWeightLayer, QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.convnet import cifar10_convnet, convnet, svhn_convnet
from qnnlib.norm import LasagneBatchNorm, ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.precision import BINARY, FLOAT, LayerBits, Precision
from tests.models.test_mlp import assert_same_model, state_digest

# Computed with torch.manual_seed(1234) from the builders as they were before the per-layer policy.
FROZEN = {
    "conv_default": (lambda: convnet((4, 4, 8), 8, in_channels=1, image_size=8), "2e12d98749ba4d5f"),
    "conv_float": (lambda: convnet((4, 4, 8), 8, in_channels=1, image_size=8, precision=FLOAT), "9ff1e2692d34f704"),
    "conv_sbn": (lambda: convnet((2, 4, 4), 6, image_size=16, num_classes=5, precision=Precision(1, 1, True, "sbn")),
                 "03c97ca0cbb459c7"),
    "cifar_small": (lambda: cifar10_convnet(0.05, 16), "1bca7105af31521f"),
    "svhn_small": (lambda: svhn_convnet(0.05, 16), "6d14d3dac3f3e804"),
}

NAMES = ["conv1", "bn1", "act1", "conv2", "pool2", "bn2", "act2", "conv3", "bn3", "act3", "conv4", "pool4", "bn4",
         "act4", "conv5", "bn5", "act5", "conv6", "pool6", "bn6", "act6", "flatten", "fc7", "bn7", "act7", "fc8",
         "bn8", "act8", "fc9", "bn9"]


@pytest.mark.parametrize("case", sorted(FROZEN))
def test_default_models_match_frozen_checksums(case: str) -> None:
    build, digest = FROZEN[case]
    torch.manual_seed(1234)
    model = build()
    assert [n for n, _ in model.named_children()] == NAMES
    assert state_digest(model) == digest


def _by_hand(p: Precision, channels: tuple[int, int, int], fc: int, in_channels: int, image_size: int,
             num_classes: int) -> nn.Sequential:
    """Today's ConvNet, written out layer by layer."""
    conv = (lambda i, o: nn.Conv2d(i, o, 3, padding=1)) if p.weight_bits is None else \
        (lambda i, o: QuantConv2d(i, o, 3, padding=1, weight_bits=p.weight_bits))
    lin = (lambda i, o: nn.Linear(i, o)) if p.weight_bits is None else \
        (lambda i, o: QuantLinear(i, o, weight_bits=p.weight_bits))
    act = (lambda: nn.Hardtanh()) if p.act_bits is None else (lambda: QuantAct(p.act_bits, stochastic=p.stochastic))
    bn2 = (lambda c: ShiftBatchNorm2d(c)) if p.norm == "sbn" else (lambda c: nn.BatchNorm2d(c, eps=1e-4, momentum=0.1))
    bn1 = (lambda c: ShiftBatchNorm1d(c)) if p.norm == "sbn" else (lambda c: nn.BatchNorm1d(c, eps=1e-4, momentum=0.1))
    L: OrderedDict[str, nn.Module] = OrderedDict()
    c_in, k = in_channels, 0
    for c in channels:
        for j in range(2):
            k += 1
            L[f"conv{k}"] = conv(c_in, c)
            if j:
                L[f"pool{k}"] = nn.MaxPool2d(2)
            L[f"bn{k}"], L[f"act{k}"], c_in = bn2(c), act(), c
    L["flatten"] = nn.Flatten()
    width = c_in * (image_size // 8) ** 2
    for _ in range(2):
        k += 1
        L[f"fc{k}"], L[f"bn{k}"], L[f"act{k}"], width = lin(width, fc), bn1(fc), act(), fc
    L["fc9"], L["bn9"] = lin(width, num_classes), nn.BatchNorm1d(num_classes, eps=1e-4, momentum=0.1)
    return nn.Sequential(L)


@pytest.mark.parametrize("precision", [BINARY, FLOAT, Precision(1, 1, True, "sbn"), Precision(2, 2)],
                         ids=lambda p: f"{p.label}-{p.norm}-{p.stochastic}")
def test_default_models_equal_a_hand_built_sequential(precision: Precision) -> None:
    torch.manual_seed(6)
    model = convnet((2, 3, 4), 6, precision=precision, in_channels=2, image_size=8, num_classes=3)
    torch.manual_seed(6)
    ref = _by_hand(precision, (2, 3, 4), 6, 2, 8, 3)
    assert repr(model) == repr(ref)
    assert_same_model(model, ref, torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)


def test_cifar10_and_svhn_take_convnet_keyword_options() -> None:
    for build, base in ((cifar10_convnet, (128, 256, 512)), (svhn_convnet, (64, 128, 256))):
        m = build(1 / 64, 8, precision=Precision(2, 2), in_channels=1, image_size=16, num_classes=4,
                  bn_eps=1e-3, bn_momentum=0.2)
        assert [m.conv1.out_channels, m.conv3.out_channels, m.conv5.out_channels] == [c // 64 for c in base]
        assert m.conv1.in_channels == 1 and m.fc7.in_features == base[2] // 64 * 2 * 2 and m.fc9.out_features == 4
        assert m.conv1.weight_bits == 2 and m.act1.bits == 2
        assert (m.bn9.eps, m.bn9.momentum) == (1e-3, 0.2)
        assert m(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_first_and_last_layers_from_the_policy() -> None:
    p = Precision(1, 2, first=LayerBits(weight_bits=None), last=LayerBits(weight_bits=8),
                  overrides={7: LayerBits(act_bits=3)})
    m = convnet((2, 2, 2), 4, precision=p, in_channels=1, image_size=8)
    assert [n for n, _ in m.named_children()] == NAMES
    assert type(m.conv1) is nn.Conv2d and not isinstance(m.conv1, LatentWeightLayer)  # real image, float weights
    assert m.conv2.weight_bits == 1 and m.fc9.weight_bits == 8 and type(m.bn9) is nn.BatchNorm1d
    assert [m.get_submodule(f"act{k}").bits for k in range(1, 9)] == [2] * 6 + [3, 2]
    with pytest.raises(ValueError, match="overrides"):
        convnet((2, 2, 2), 4, precision=Precision(overrides={10: LayerBits(weight_bits=2)}), image_size=8)
    with pytest.raises(ValueError, match="image_size"):
        convnet((2, 2, 2), 4, image_size=12)


def test_grad_quant_after_each_conv_and_fc_before_pooling() -> None:
    m = convnet((2, 2, 2), 4, precision=Precision(grad_bits=6), in_channels=1, image_size=8)
    names = [n for n, _ in m.named_children()]
    assert names[:7] == ["conv1", "gq1", "bn1", "act1", "conv2", "gq2", "pool2"]
    assert [n for n in names if n.startswith("gq")] == [f"gq{k}" for k in range(1, 10)]
    assert names[-3:] == ["fc9", "gq9", "bn9"]
    assert all(isinstance(m.get_submodule(f"gq{k}"), GradQuant) for k in range(1, 10))


def test_grad_bits_weight_gradients_are_closed_forms_of_the_quantized_error() -> None:
    torch.manual_seed(8)
    base = convnet((2, 3, 3), 5, in_channels=1, image_size=8, num_classes=3).double()
    torch.manual_seed(8)
    model = convnet((2, 3, 3), 5, precision=Precision(grad_bits=6), in_channels=1, image_size=8,
                    num_classes=3).double()
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.state_dict().items())
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    w_out = torch.randn(6, 3, generator=g, dtype=torch.float64)
    cap: dict[str, torch.Tensor] = {}
    layers = [f"conv{k}" for k in range(1, 7)] + ["fc7", "fc8", "fc9"]
    for k, name in enumerate(layers, start=1):
        model.get_submodule(name).register_forward_hook(lambda _m, i, _o, k=k: cap.__setitem__(f"a{k}", i[0].detach()))
        model.get_submodule(f"gq{k}").register_full_backward_hook(
            lambda _m, gin, gout, k=k: cap.update({f"raw{k}": gout[0], f"q{k}": gin[0]}))
    y = model(x)
    assert torch.equal(y, base(x))  # GradQuant is the identity in the forward pass
    (y * w_out).sum().backward()
    for k, name in enumerate(layers, start=1):
        layer = model.get_submodule(name)
        q, a = cap[f"q{k}"], cap[f"a{k}"]
        assert torch.equal(q, quantize_tensor(cap[f"raw{k}"], 6, "log"))
        if name.startswith("conv"):  # g_W = conv-weight-gradient(a_{k-1}^b, Q(g_s))
            want = torch.nn.grad.conv2d_weight(a, layer.weight.shape, q, padding=1)
        else:
            want = q.T @ a
        assert torch.allclose(layer.weight.grad, want, rtol=0, atol=1e-10), name


# Issue 11 rows 5, 6, 8: ModelOptions reach every layer of the ConvNet
def test_default_options_build_todays_convnet() -> None:
    for p in (BINARY, Precision(1, 1, True, "sbn")):
        torch.manual_seed(2)
        a = convnet((2, 4, 4), 6, image_size=8, precision=p)
        torch.manual_seed(2)
        b = convnet((2, 4, 4), 6, image_size=8, precision=p, options=ModelOptions())
        assert state_digest(a) == state_digest(b) and repr(a) == repr(b)


def test_convnet_options() -> None:
    sbn = Precision(1, 1, True, "sbn")
    o = ModelOptions(sbn_backward="torch7", sbn_invstd_init=0.0, out_bn_eps=1e-5, bias_init="torch7")
    torch.manual_seed(0)
    m = convnet((4, 4, 8), 8, in_channels=3, image_size=8, precision=sbn, options=o)
    assert isinstance(m.bn1, ShiftBatchNorm2d) and m.bn1.backward == "torch7"
    assert torch.equal(m.bn1.running_invstd, torch.zeros(4)) and m.bn7.backward == "torch7"
    assert m.bn9.eps == 1e-5
    b1, b3 = m.conv1.bias.detach(), m.conv3.bias.detach()
    assert b1.abs().max() <= 1 / 27**0.5 and b3.abs().max() <= 1 / 36**0.5 and b1.abs().max() > 0
    assert m.fc7.bias.abs().max() <= 1 / (8 * 1 * 1) ** 0.5 and m.fc7.bias.abs().max() > 0
    x = torch.randn(4, 3, 8, 8)
    m(x).square().sum().backward()
    las = convnet((4, 4, 8), 8, in_channels=3, image_size=8, options=ModelOptions(bn_running="lasagne"))
    assert all(isinstance(getattr(las, f"bn{k}"), LasagneBatchNorm) for k in range(1, 10))
    las(x)
    assert las.eval()(x).shape == (4, 10)
    assert isinstance(convnet((4, 4, 8), 8, in_channels=3, image_size=8).bn1, nn.BatchNorm2d)
    assert isinstance(m.bn7, ShiftBatchNorm1d)
