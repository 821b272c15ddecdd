"""The MNIST multilayer perceptron of Table 1 (784 – 3×4096 – 10 in the Theano code, 3×2048 in Torch7).

Layer names are stable — ``fc1, bn1, act1, drop1, ...`` — so export (:mod:`qnnlib.runtime.export`) and the
energy account (:mod:`qnnlib.analysis.energy`) can walk them. The first layer sees real inputs in
[-1, 1] with quantized weights; the output layer has quantized weights and inputs, then BN and no
activation (Alg. 1).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from qnnlib.models.blocks import act_layer, linear_layer, norm_layer
from qnnlib.precision import BINARY, Precision

__all__ = ["mnist_mlp"]


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
        layers[f"fc{k}"] = linear_layer(width, hidden, precision)
        layers[f"bn{k}"] = norm_layer(hidden, precision, 1, bn_eps, bn_momentum)
        layers[f"act{k}"] = act_layer(precision)
        if dropout_hidden > 0:
            layers[f"drop{k}"] = nn.Dropout(dropout_hidden)
        width = hidden
    k = depth + 1
    layers[f"fc{k}"] = linear_layer(width, num_classes, precision)
    layers[f"bn{k}"] = norm_layer(num_classes, precision, 1, bn_eps, bn_momentum, output=True)
    return nn.Sequential(layers)
