"""models.alexnet: the one-tower AlexNet's layer shapes and parameter count, the precision of every layer
(float first and last by default), gradient-quantization modules, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnnlib.gradquant import GradQuant
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.alexnet import alexnet, alexnet_qnn
from qnnlib.models.blocks import imagenet_precision
from qnnlib.precision import Precision

# torchvision.models.alexnet: conv and fc weights and biases, 1000 classes (the published one-tower AlexNet)
TORCHVISION_ALEXNET_PARAMS = 61_100_840


def _compute_params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("bn"))


def test_parameter_count_is_the_published_architectures() -> None:
    m = alexnet_qnn(1, 2)
    assert _compute_params(m) == TORCHVISION_ALEXNET_PARAMS
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters() if n.endswith("weight") and not n.startswith("bn")}
    assert shapes == {"conv1.weight": (64, 3, 11, 11), "conv2.weight": (192, 64, 5, 5), "conv3.weight": (384, 192, 3, 3),
                      "conv4.weight": (256, 384, 3, 3), "conv5.weight": (256, 256, 3, 3),
                      "fc6.weight": (4096, 9216), "fc7.weight": (4096, 4096), "fc8.weight": (1000, 4096)}


def test_float_first_and_last_layers_by_default_quantized_in_between() -> None:
    m = alexnet_qnn(1, 2)
    assert type(m.conv1) is nn.Conv2d and type(m.fc8) is nn.Linear
    assert all(isinstance(getattr(m, f"conv{k}"), QuantConv2d) for k in range(2, 6))
    assert isinstance(m.fc6, QuantLinear) and m.fc6.weight_bits == 1
    acts = [getattr(m, f"act{k}") for k in (1, 2, 3, 4, 5, 6, 7)]
    assert all(isinstance(a, QuantAct) and a.bits == 2 for a in acts)  # the first layer's output is 2-bit too
    assert not hasattr(m, "act8")
    q = alexnet_qnn(1, 1, float_first=False, float_last=False)
    assert isinstance(q.conv1, QuantConv2d) and isinstance(q.fc8, QuantLinear)


def test_forward_shapes_and_quantized_activations() -> None:
    torch.manual_seed(0)
    m = alexnet_qnn(1, 2, width=0.125, fc=64, num_classes=10).eval()
    out = {}
    m.act5.register_forward_hook(lambda _m, _a, o: out.__setitem__("a5", o))
    y = m(torch.randn(2, 3, 224, 224))
    assert y.shape == (2, 10)
    levels = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    assert torch.isclose(out["a5"].unique()[:, None], levels[None, :]).any(1).all()  # 2-bit levels only
    small = alexnet_qnn(1, 1, width=0.125, fc=32, num_classes=5, image_size=96)
    assert small(torch.randn(2, 3, 96, 96)).shape == (2, 5)


def test_gradient_bits_put_a_gradquant_after_every_quantized_layer() -> None:
    m = alexnet_qnn(1, 2, 6, width=0.125, fc=32)
    gq = [n for n, mod in m.named_children() if isinstance(mod, GradQuant)]
    assert gq == ["gq2", "gq3", "gq4", "gq5", "gq6", "gq7"]  # float first and last layers keep float errors
    assert all(m.get_submodule(n).bits == 6 for n in gq)
    every = alexnet(Precision(1, 2, grad_bits=6), width=0.125, fc=32)
    assert sum(isinstance(mod, GradQuant) for mod in every.children()) == 8


def test_imagenet_precision() -> None:
    p = imagenet_precision(1, 2, 6)
    assert p.layer_bits(1, 8).weight_bits is None and p.layer_bits(1, 8).act_bits == 2
    assert p.layer_bits(1, 8).grad_bits is None and p.layer_bits(8, 8).weight_bits is None
    assert p.layer_bits(4, 8).weight_bits == 1 and p.layer_bits(4, 8).grad_bits == 6


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width"):
        alexnet_qnn(width=0)
    with pytest.raises(ValueError, match="image_size"):
        alexnet_qnn(image_size=32)
    with pytest.raises(ValueError, match="num_classes"):
        alexnet_qnn(num_classes=0)
    with pytest.raises(ValueError, match="weight_bits"):
        alexnet_qnn(weight_bits=0)


def test_relaxed_hardtanh_boundaries_reach_every_activation() -> None:
    m = alexnet_qnn(1, 1, htanh_bound=2.0, width=0.125, fc=32)
    acts = [mod for mod in m.modules() if isinstance(mod, QuantAct)]
    assert len(acts) == 7 and {(a.min_v, a.max_v) for a in acts} == {(-2.0, 2.0)}
    f = alexnet_qnn(None, None, htanh_bound=2.0, width=0.125, fc=32)
    assert {(h.min_val, h.max_val) for h in f.modules() if isinstance(h, nn.Hardtanh)} == {(-2.0, 2.0)}
    with pytest.raises(ValueError, match="bound"):
        alexnet_qnn(htanh_bound=0.0)
