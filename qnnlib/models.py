"""The paper's networks (PAPER.md §2.10), binary/k-bit or float, as ``nn.Sequential`` with named layers.

Every quantized block is ``layer → [MaxPool] → BN → activation quantizer`` (pooling before BN, as in
both codebases).  The first layer sees real inputs in [-1, 1] with quantized weights; the output layer
has quantized weights and inputs, then BN and no activation (Alg. 1, §2.7).  Layer names are stable —
``fc1, bn1, act1, drop1, ...`` and ``conv1, pool2, ...`` — so export (``qnnlib.inference``) and the
energy account (``qnnlib.energy``) can walk them.

Precision is one :class:`Precision` record: ``weight_bits=None`` / ``act_bits=None`` give float
layers (``nn.Linear`` and hard-tanh), the float baseline of the same architecture.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from torch import nn

from .layers import QuantAct, QuantConv2d, QuantLinear
from .norm import ShiftBatchNorm1d, ShiftBatchNorm2d

__all__ = ["Precision", "BINARY", "FLOAT", "mnist_mlp", "convnet", "cifar10_convnet", "svhn_convnet"]

NormKind = Literal["bn", "sbn"]


@dataclass(frozen=True)
class Precision:
    """Bit widths of a network: ``None`` means float32 for that tensor kind.

    ``stochastic`` binarizes/rounds activations stochastically in training mode (Torch7 recipe);
    ``norm`` picks vanilla BN (``"bn"``) or shift-based BN (``"sbn"``) for the hidden layers (the
    output BN is always vanilla, as in both codebases).
    """

    weight_bits: int | None = 1
    act_bits: int | None = 1
    stochastic: bool = False
    norm: NormKind = "bn"

    def __post_init__(self) -> None:
        for name in ("weight_bits", "act_bits"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be None (float) or an integer >= 1, got {v!r}")
        if self.norm not in ("bn", "sbn"):
            raise ValueError(f"norm must be 'bn' or 'sbn', got {self.norm!r}")

    @property
    def label(self) -> str:
        w = "32" if self.weight_bits is None else str(self.weight_bits)
        a = "32" if self.act_bits is None else str(self.act_bits)
        return f"W{w}A{a}"


BINARY = Precision()
FLOAT = Precision(weight_bits=None, act_bits=None)


def _linear(i: int, o: int, p: Precision) -> nn.Module:
    return nn.Linear(i, o) if p.weight_bits is None else QuantLinear(i, o, weight_bits=p.weight_bits)


def _conv(i: int, o: int, p: Precision) -> nn.Module:
    if p.weight_bits is None:
        return nn.Conv2d(i, o, 3, padding=1)
    return QuantConv2d(i, o, 3, padding=1, weight_bits=p.weight_bits)


def _bn(n: int, p: Precision, dims: int, eps: float, momentum: float, output: bool = False) -> nn.Module:
    if p.norm == "sbn" and not output:
        return (ShiftBatchNorm1d if dims == 1 else ShiftBatchNorm2d)(n)
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n, eps=eps, momentum=momentum)


def _act(p: Precision) -> nn.Module:
    if p.act_bits is None:
        return nn.Hardtanh()
    return QuantAct(p.act_bits, stochastic=p.stochastic)


def mnist_mlp(
    hidden: int = 4096,
    depth: int = 3,
    *,
    precision: Precision = BINARY,
    in_features: int = 784,
    num_classes: int = 10,
    dropout_in: float = 0.0,
    dropout_hidden: float = 0.0,
    bn_eps: float = 1e-4,
    bn_momentum: float = 0.1,
) -> nn.Sequential:
    """The MNIST MLP: 784 – depth × hidden – 10, each hidden layer FC → BN → quantized activation.

    Theano recipe: ``hidden=4096, dropout_in=0.2, dropout_hidden=0.5``, deterministic, BN.
    Torch7 recipe: ``hidden=2048``, no dropout, ``Precision(stochastic=True, norm="sbn")``.
    BN ε = 1e-4 and moving-average 0.1 are Lasagne's (Theano code).
    """
    if depth < 1 or hidden < 1:
        raise ValueError(f"depth and hidden must be >= 1, got depth={depth}, hidden={hidden}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if dropout_in > 0:
        layers["drop0"] = nn.Dropout(dropout_in)
    width = in_features
    for k in range(1, depth + 1):
        layers[f"fc{k}"] = _linear(width, hidden, precision)
        layers[f"bn{k}"] = _bn(hidden, precision, 1, bn_eps, bn_momentum)
        layers[f"act{k}"] = _act(precision)
        if dropout_hidden > 0:
            layers[f"drop{k}"] = nn.Dropout(dropout_hidden)
        width = hidden
    k = depth + 1
    layers[f"fc{k}"] = _linear(width, num_classes, precision)
    layers[f"bn{k}"] = _bn(num_classes, precision, 1, bn_eps, bn_momentum, output=True)
    return nn.Sequential(layers)


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
            layers[f"conv{k}"] = _conv(c_in, c, precision)
            if j == 1:
                layers[f"pool{k}"] = nn.MaxPool2d(2)
            layers[f"bn{k}"] = _bn(c, precision, 2, bn_eps, bn_momentum)
            layers[f"act{k}"] = _act(precision)
            c_in = c
    layers["flatten"] = nn.Flatten()
    width = c_in * (image_size // 8) ** 2
    for _ in range(2):
        k += 1
        layers[f"fc{k}"] = _linear(width, fc, precision)
        layers[f"bn{k}"] = _bn(fc, precision, 1, bn_eps, bn_momentum)
        layers[f"act{k}"] = _act(precision)
        width = fc
    k += 1
    layers[f"fc{k}"] = _linear(width, num_classes, precision)
    layers[f"bn{k}"] = _bn(num_classes, precision, 1, bn_eps, bn_momentum, output=True)
    return nn.Sequential(layers)


def cifar10_convnet(width: float = 1.0, fc: int = 1024, *, precision: Precision = BINARY) -> nn.Sequential:
    """CIFAR-10 ConvNet: (2×128C3)-MP2-(2×256C3)-MP2-(2×512C3)-MP2-(2×1024FC)-10; ``width`` scales convs."""
    ch = tuple(max(1, round(c * width)) for c in (128, 256, 512))
    return convnet(ch, fc, precision=precision)  # type: ignore[arg-type]


def svhn_convnet(width: float = 1.0, fc: int = 1024, *, precision: Precision = BINARY) -> nn.Sequential:
    """SVHN ConvNet: half the conv units of CIFAR-10's, (2×64C3)-MP2-(2×128C3)-MP2-(2×256C3)-MP2-(2×1024FC)-10."""
    ch = tuple(max(1, round(c * width)) for c in (64, 128, 256))
    return convnet(ch, fc, precision=precision)  # type: ignore[arg-type]
