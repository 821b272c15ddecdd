"""The VGG-like ConvNet of Table 1 (CIFAR-10; SVHN with half the conv widths).

(2×128C3)-MP2-(2×256C3)-MP2-(2×512C3)-MP2-(2×1024FC)-10: every conv is 3×3 'same', every block is
conv → [MP2] → BN → quantized activation (pooling before BN, as in both codebases). Layer names are
``conv1, pool2, bn1, act1, ..., flatten, fc7, fc8, fc9`` (``gq{k}`` directly after conv/fc ``k`` when the
policy quantizes that layer's gradients).  Every layer takes its bits from the precision policy
(:meth:`qnnlib.precision.Precision.layer_bits`), the first (real image input) and the last (no
activation) included.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from qnnlib.checks import check_int
from qnnlib.models.blocks import (
    ModelOptions,
    act_layer,
    conv_layer,
    grad_quant_layer,
    linear_layer,
    norm_layer,
    param_grad_quant,
)
from qnnlib.precision import BINARY, Precision

__all__ = ["convnet", "cifar10_convnet", "svhn_convnet"]


def convnet(
    channels: tuple[int, int, int] = (128, 256, 512),
    fc: int = 1024,
    *,
    precision: Precision = BINARY,
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    bn_eps: float = 1e-4,
    bn_momentum: float = 0.1,
    options: ModelOptions = ModelOptions(),  # noqa: B008 — frozen, immutable default
) -> nn.Sequential:
    """The VGG-like ConvNet: (2×c1 C3)-MP2-(2×c2 C3)-MP2-(2×c3 C3)-MP2-(2×fc FC)-classes.

    Every conv is 3×3 'same'; block ``k`` is ``conv{k} → [gq{k}] → [pool{k}] → bn{k} → act{k}`` (pooling
    after every second conv), then ``flatten`` and ``fc{k} → [gq{k}] → bn{k} → act{k}`` twice, and the
    output ``fc{L} → [gq{L}] → bn{L}`` (vanilla BN, no activation); ``L = 2·len(channels) + 3``.
    ``gq{k}`` is present only when the policy gives layer ``k`` gradient bits;
    ``precision.param_grad_bits`` registers parameter-gradient hooks (not part of the ``state_dict``).
    ``options`` (:class:`qnnlib.models.blocks.ModelOptions`) switches to the authors' rules (BN running
    statistics, shift-BN backward and running-1/σ start, output BN ε, bias init).
    """
    if not isinstance(options, ModelOptions):
        raise TypeError(f"options must be a ModelOptions, got {type(options).__name__}")
    if isinstance(channels, (str, bytes)) or len(channels) < 1:
        raise ValueError(f"channels must name at least one conv width, got {channels!r}")
    for i, c in enumerate(channels):
        check_int(c, f"channels[{i}]")
    for value, name in ((fc, "fc"), (in_channels, "in_channels"), (image_size, "image_size"),
                        (num_classes, "num_classes")):
        check_int(value, name)
    shrink = 2 ** len(channels)  # one 2×2 pooling per pair of convs
    if image_size % shrink:
        raise ValueError(f"image_size must be divisible by {shrink} ({len(channels)} 2×2 poolings), got {image_size}")
    n = 2 * len(channels) + 3
    bits = precision.all_layer_bits(n)
    layers: OrderedDict[str, nn.Module] = OrderedDict()

    def grad_quant(k: int) -> None:  # backward: g_{s_k} = ∂L/∂s_k quantized, directly after the layer
        gq = grad_quant_layer(bits[k - 1].grad_bits, precision.grad_method)
        if gq is not None:
            layers[f"gq{k}"] = gq

    c_in, k = in_channels, 0
    for c in channels:
        for j in range(2):
            k += 1
            # s_k = a_{k-1}^b * W_k^b
            layers[f"conv{k}"] = conv_layer(c_in, c, bits[k - 1].weight_bits, options.bias_init)
            grad_quant(k)
            if j == 1:
                layers[f"pool{k}"] = nn.MaxPool2d(2)
            layers[f"bn{k}"] = norm_layer(c, precision.norm, 2, bn_eps, bn_momentum, options=options)  # a_k = BN(s_k)
            layers[f"act{k}"] = act_layer(bits[k - 1].act_bits, precision.stochastic)  # a_k^b = Q(Htanh(a_k))
            c_in = c
    layers["flatten"] = nn.Flatten()
    width = c_in * (image_size // shrink) ** 2
    for _ in range(2):
        k += 1
        layers[f"fc{k}"] = linear_layer(width, fc, bits[k - 1].weight_bits, options.bias_init)
        grad_quant(k)
        layers[f"bn{k}"] = norm_layer(fc, precision.norm, 1, bn_eps, bn_momentum, options=options)
        layers[f"act{k}"] = act_layer(bits[k - 1].act_bits, precision.stochastic)
        width = fc
    k += 1  # output layer: quantized weights, the previous activation's bits as input, BN, no activation
    layers[f"fc{k}"] = linear_layer(width, num_classes, bits[k - 1].weight_bits, options.bias_init)
    grad_quant(k)
    layers[f"bn{k}"] = norm_layer(num_classes, precision.norm, 1, bn_eps, bn_momentum, output=True,
                                    options=options)
    model = nn.Sequential(layers)
    param_grad_quant(model, precision.param_grad_bits, precision.grad_method)
    return model


def _widths(base: tuple[int, int, int], width: float) -> tuple[int, int, int]:
    return tuple(max(1, round(c * width)) for c in base)  # type: ignore[return-value]


def cifar10_convnet(width: float = 1.0, fc: int = 1024, **options: Any) -> nn.Sequential:
    """CIFAR-10 ConvNet: (2×128C3)-MP2-(2×256C3)-MP2-(2×512C3)-MP2-(2×1024FC)-10; ``width`` scales the convs.

    ``options`` are :func:`convnet`'s keywords (``precision``, ``in_channels``, ``image_size``, ...).
    """
    return convnet(_widths((128, 256, 512), width), fc, **options)


def svhn_convnet(width: float = 1.0, fc: int = 1024, **options: Any) -> nn.Sequential:
    """SVHN ConvNet: half the conv units of CIFAR-10's, (2×64C3)-MP2-(2×128C3)-MP2-(2×256C3)-MP2-(2×1024FC)-10.

    ``options`` are :func:`convnet`'s keywords.
    """
    return convnet(_widths((64, 128, 256), width), fc, **options)
