"""GoogLeNet (Inception v1) QNN: the ImageNet network of QNN's GoogLeNet rows (1/1 and 4/4 bits, 6/6/6 bits).

The architecture of Szegedy et al. 2014, Table 1, with every convolution built from the precision policy as in
the paper's other networks — ``conv → [gq] → [maxpool] → BN → quantized activation`` (pooling before BN) — so the
output of every inception branch, and their concatenation, is a k-bit tensor: the next layer's convolutions read
quantized inputs. The output layer is a fully connected layer followed by BN and no activation (Alg. 1). The
local-response normalisations, the auxiliary classifiers and the 40% dropout of the original are not used
(batch normalization replaces them, as in the BN-Inception line of work).

Inception module ``(n1, r3, n3, r5, n5, p)`` (:data:`INCEPTION`): four branches concatenated on channels —
``1×1 n1``; ``1×1 r3 → 3×3 n3``; ``1×1 r5 → 5×5 n5``; ``maxpool 3×3/1 → 1×1 p`` — output ``n1 + n3 + n5 + p``
channels. Compute layers are counted in forward order (``conv1``, ``conv2_reduce``, ``conv2``, then per module
``b1, b2_reduce, b2, b3_reduce, b3, b4``, then ``fc``): 58 in all, and layer ``k`` takes
``precision.layer_bits(k, 58)``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from qnnlib.checks import check_int, check_positive
from qnnlib.models.blocks import (
    ModelOptions,
    act_layer,
    conv_layer,
    grad_quant_layer,
    imagenet_precision,
    linear_layer,
    norm_layer,
    param_grad_quant,
)
from qnnlib.precision import LayerBits, NormKind, Precision

__all__ = ["INCEPTION", "N_LAYERS", "ConvBlock", "Inception", "GoogLeNet", "googlenet_qnn"]

INCEPTION: dict[str, tuple[int, int, int, int, int, int]] = {
    # #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj (Szegedy et al. 2014, Table 1)
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
"""The nine inception modules, in order (a 3×3/2 max-pooling follows 3b and 4e)."""

N_LAYERS = 3 + 6 * len(INCEPTION) + 1
"""Compute layers (convs and the output fc): 58."""

_POOL_AFTER = ("3b", "4e")


class _Builder:
    """Hands out the bits of compute layer k = 1, 2, ... in forward order."""

    def __init__(self, precision: Precision, bn_eps: float, bn_momentum: float, options: ModelOptions,
                 htanh_bound: float = 1.0) -> None:
        self.precision, self.bits, self.htanh_bound = precision, precision.all_layer_bits(N_LAYERS), htanh_bound
        self.bn_eps, self.bn_momentum, self.options, self.k = bn_eps, bn_momentum, options, 0

    def next_bits(self) -> LayerBits:
        self.k += 1
        return self.bits[self.k - 1]


class ConvBlock(nn.Sequential):
    """``conv → [gq] → [pool] → bn → act``: one quantized convolution of :class:`GoogLeNet` (compute layer ``k``)."""

    def __init__(self, b: _Builder, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 pool: nn.Module | None = None) -> None:
        bits = b.next_bits()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = conv_layer(c_in, c_out, bits.weight_bits, b.options.bias_init, kernel, stride)
        gq = grad_quant_layer(bits.grad_bits, b.precision.grad_method)
        if gq is not None:
            layers["gq"] = gq
        if pool is not None:
            layers["pool"] = pool
        layers["bn"] = norm_layer(c_out, b.precision.norm, 2, b.bn_eps, b.bn_momentum, options=b.options)
        layers["act"] = act_layer(bits.act_bits, b.precision.stochastic, b.htanh_bound)
        super().__init__(layers)
        self.layer_index = b.k


class Inception(nn.Module):
    """Four branches on the same input, concatenated on channels (module docstring)."""

    def __init__(self, b: _Builder, c_in: int, n1: int, r3: int, n3: int, r5: int, n5: int, proj: int) -> None:
        super().__init__()
        self.b1 = ConvBlock(b, c_in, n1, 1)
        self.b2 = nn.Sequential(OrderedDict(reduce=ConvBlock(b, c_in, r3, 1), conv=ConvBlock(b, r3, n3, 3)))
        self.b3 = nn.Sequential(OrderedDict(reduce=ConvBlock(b, c_in, r5, 1), conv=ConvBlock(b, r5, n5, 5)))
        self.b4 = nn.Sequential(OrderedDict(pool=nn.MaxPool2d(3, 1, padding=1), proj=ConvBlock(b, c_in, proj, 1)))
        self.out_channels = n1 + n3 + n5 + proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class GoogLeNet(nn.Module):
    """Inception v1 with every layer's bits from ``precision``; ``width`` scales every channel count (small models
    for tests and the smoke profile). Input ``3 × image_size × image_size`` (224: a 7×7 map before the average
    pooling; any size ≥ 32 works, the average pooling is global). ``htanh_bound`` > 1 relaxes every activation's
    hard-tanh (:func:`qnnlib.models.blocks.act_layer`)."""

    def __init__(self, precision: Precision, *, num_classes: int = 1000, width: float = 1.0, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1, htanh_bound: float = 1.0,
                 options: ModelOptions = ModelOptions()) -> None:  # noqa: B008
        super().__init__()
        check_int(num_classes, "num_classes")
        check_positive(width, "width")

        def w(c: int) -> int:
            return max(1, round(c * width))

        b = _Builder(precision, bn_eps, bn_momentum, options, htanh_bound)
        self.conv1 = ConvBlock(b, 3, w(64), 7, 2, pool=nn.MaxPool2d(3, 2, ceil_mode=True))
        self.conv2_reduce = ConvBlock(b, w(64), w(64), 1)
        self.conv2 = ConvBlock(b, w(64), w(192), 3, pool=nn.MaxPool2d(3, 2, ceil_mode=True))
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        c = w(192)
        for name, spec in INCEPTION.items():
            m = Inception(b, c, *(w(v) for v in spec))
            blocks[f"inception{name}"] = m
            c = m.out_channels
            if name in _POOL_AFTER:
                blocks[f"pool{name}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception = nn.Sequential(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        bits = b.next_bits()
        self.fc = linear_layer(c, num_classes, bits.weight_bits, options.bias_init)
        gq = grad_quant_layer(bits.grad_bits, precision.grad_method)
        self.gq = gq if gq is not None else nn.Identity()
        self.bn = norm_layer(num_classes, precision.norm, 1, bn_eps, bn_momentum, output=True, options=options)
        assert b.k == N_LAYERS, f"built {b.k} compute layers, expected {N_LAYERS}"
        param_grad_quant(self, precision.param_grad_bits, precision.grad_method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception(self.conv2(self.conv2_reduce(self.conv1(x))))
        # the average of k-bit activations is not k-bit: the output layer reads it as a real vector
        return self.bn(self.gq(self.fc(self.flatten(self.avgpool(x)))))


def googlenet_qnn(weight_bits: int | None = 1, act_bits: int | None = 1, grad_bits: int | None = None, *,
                  float_first: bool = True, float_last: bool = True, stochastic: bool = False, norm: NormKind = "bn",
                  grad_method: str = "log", **kwargs: object) -> GoogLeNet:
    """The paper's GoogLeNet QNN: ``googlenet_qnn(1, 1)``, ``googlenet_qnn(4, 4)``, ``googlenet_qnn(6, 6, 6)``; the
    first and last layers float by default (:func:`qnnlib.models.blocks.imagenet_precision`). ``kwargs`` go to
    :class:`GoogLeNet`."""
    p = imagenet_precision(weight_bits, act_bits, grad_bits, float_first=float_first, float_last=float_last,
                           stochastic=stochastic, norm=norm, grad_method=grad_method)
    return GoogLeNet(p, **kwargs)  # type: ignore[arg-type]
