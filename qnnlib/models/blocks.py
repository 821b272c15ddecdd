"""Building blocks of the paper's networks, one module per layer as the precision policy says.

Every quantized block is ``layer → [MaxPool] → BN → activation quantizer`` (pooling before BN, as in
both of the authors' codebases). A layer with ``weight_bits=None`` is a float ``nn.Linear``/``nn.Conv2d``;
``act_bits=None`` gives a float hard-tanh.
"""

from __future__ import annotations

from torch import nn

from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.norm import ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.precision import Precision

__all__ = ["linear_layer", "conv_layer", "norm_layer", "act_layer"]


def linear_layer(i: int, o: int, p: Precision) -> nn.Module:
    return nn.Linear(i, o) if p.weight_bits is None else QuantLinear(i, o, weight_bits=p.weight_bits)


def conv_layer(i: int, o: int, p: Precision) -> nn.Module:
    if p.weight_bits is None:
        return nn.Conv2d(i, o, 3, padding=1)
    return QuantConv2d(i, o, 3, padding=1, weight_bits=p.weight_bits)


def norm_layer(n: int, p: Precision, dims: int, eps: float, momentum: float, output: bool = False) -> nn.Module:
    if p.norm == "sbn" and not output:
        return (ShiftBatchNorm1d if dims == 1 else ShiftBatchNorm2d)(n)
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n, eps=eps, momentum=momentum)


def act_layer(p: Precision) -> nn.Module:
    if p.act_bits is None:
        return nn.Hardtanh()
    return QuantAct(p.act_bits, stochastic=p.stochastic)
