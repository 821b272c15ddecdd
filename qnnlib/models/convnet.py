"""The VGG-like ConvNet of Table 1 (CIFAR-10; SVHN with half the conv widths).

(2×128C3)-MP2-(2×256C3)-MP2-(2×512C3)-MP2-(2×1024FC)-10: every conv is 3×3 'same', every block is
conv → [MP2] → BN → quantized activation (pooling before BN, as in both codebases). Layer names are
``conv1, pool2, bn1, act1, ..., fc7, fc8, fc9``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from qnnlib.models.blocks import act_layer, conv_layer, linear_layer, norm_layer
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
) -> nn.Sequential:
    """The VGG-like ConvNet: (2×c1 C3)-MP2-(2×c2 C3)-MP2-(2×c3 C3)-MP2-(2×fc FC)-classes.

    Every conv is 3×3 'same'; every block is conv → [MP2] → BN → quantized activation.
    """
    if image_size % 8:
        raise ValueError(f"image_size must be divisible by 8 (three 2×2 poolings), got {image_size}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in, k = in_channels, 0
    for c in channels:
        for j in range(2):
            k += 1
            layers[f"conv{k}"] = conv_layer(c_in, c, precision)
            if j == 1:
                layers[f"pool{k}"] = nn.MaxPool2d(2)
            layers[f"bn{k}"] = norm_layer(c, precision, 2, bn_eps, bn_momentum)
            layers[f"act{k}"] = act_layer(precision)
            c_in = c
    layers["flatten"] = nn.Flatten()
    width = c_in * (image_size // 8) ** 2
    for _ in range(2):
        k += 1
        layers[f"fc{k}"] = linear_layer(width, fc, precision)
        layers[f"bn{k}"] = norm_layer(fc, precision, 1, bn_eps, bn_momentum)
        layers[f"act{k}"] = act_layer(precision)
        width = fc
    k += 1
    layers[f"fc{k}"] = linear_layer(width, num_classes, precision)
    layers[f"bn{k}"] = norm_layer(num_classes, precision, 1, bn_eps, bn_momentum, output=True)
    return nn.Sequential(layers)


def cifar10_convnet(width: float = 1.0, fc: int = 1024, *, precision: Precision = BINARY) -> nn.Sequential:
    """CIFAR-10 ConvNet: (2×128C3)-MP2-(2×256C3)-MP2-(2×512C3)-MP2-(2×1024FC)-10; ``width`` scales convs."""
    ch = tuple(max(1, round(c * width)) for c in (128, 256, 512))
    return convnet(ch, fc, precision=precision)  # type: ignore[arg-type]


def svhn_convnet(width: float = 1.0, fc: int = 1024, *, precision: Precision = BINARY) -> nn.Sequential:
    """SVHN ConvNet: half the conv units of CIFAR-10's, (2×64C3)-MP2-(2×128C3)-MP2-(2×256C3)-MP2-(2×1024FC)-10."""
    ch = tuple(max(1, round(c * width)) for c in (64, 128, 256))
    return convnet(ch, fc, precision=precision)  # type: ignore[arg-type]
