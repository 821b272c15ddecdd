"""The MNIST multilayer perceptron of Table 1 (784 – 3×4096 – 10 in the Theano code, 3×2048 in Torch7).

Layer names are stable — ``fc1, bn1, act1, drop1, ...`` (``gq1, ...`` after each fc when gradients are
quantized) — so export (:mod:`qnnlib.runtime.export`) and the energy account
(:mod:`qnnlib.analysis.energy`) can walk them.  Every layer takes its bits from the precision policy
(:meth:`qnnlib.precision.Precision.layer_bits`), the first and the last included: the first layer sees
real inputs in [-1, 1] with (by default) quantized weights; the output layer has quantized weights and
the previous activation's bits as input, then BN and no activation (Alg. 1).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from qnnlib.checks import check_int
from qnnlib.models.blocks import (
    ModelOptions,
    act_layer,
    grad_quant_layer,
    linear_layer,
    norm_layer,
    param_grad_quant,
)
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
    options: ModelOptions = ModelOptions(),  # noqa: B008 — frozen, immutable default
) -> nn.Sequential:
    """The MNIST MLP: in_features – depth × hidden – num_classes, ``L = depth + 1`` compute layers.

    Hidden layer ``k``: ``fc{k} → [gq{k}] → bn{k} → act{k} → [drop{k}]``; output layer ``L``:
    ``fc{L} → [gq{L}] → bn{L}`` (vanilla BN, no activation).  ``gq{k}`` is present only when the
    policy gives layer ``k`` gradient bits; ``precision.param_grad_bits`` registers parameter-gradient
    hooks at build time (not part of the ``state_dict``).

    Theano recipe: ``hidden=4096, dropout_in=0.2, dropout_hidden=0.5``, deterministic, BN.
    Torch7 recipe: ``hidden=2048``, no dropout, ``Precision(stochastic=True, norm="sbn")``.
    BN ε = 1e-4 and moving-average 0.1 are Lasagne's (Theano code).

    ``options`` (:class:`qnnlib.models.blocks.ModelOptions`) switches to the authors' other rules: Torch7's
    MNIST model (itayhubara/BinaryNet ``Models/BinaryNet_MNIST_Model.lua``) is
    ``ModelOptions(sbn_backward="torch7", out_bn_eps=1e-5, bias_init="torch7")`` with
    ``Precision(stochastic=True, norm="sbn")``; the Theano code's BN is ``ModelOptions(bn_running="lasagne")``.
    """
    if not isinstance(options, ModelOptions):
        raise TypeError(f"options must be a ModelOptions, got {type(options).__name__}")
    check_int(hidden, "hidden")
    check_int(depth, "depth")
    check_int(in_features, "in_features")
    check_int(num_classes, "num_classes")
    n = depth + 1
    bits = precision.all_layer_bits(n)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if dropout_in > 0:
        layers["drop0"] = nn.Dropout(dropout_in)
    width = in_features
    for k in range(1, n + 1):
        b, out = bits[k - 1], (hidden if k < n else num_classes)
        # s_k = a_{k-1}^b W_k^b, W_k^b = Q(W_k)
        layers[f"fc{k}"] = linear_layer(width, out, b.weight_bits, options.bias_init)
        gq = grad_quant_layer(b.grad_bits, precision.grad_method)  # backward: g_{s_k} quantized
        if gq is not None:
            layers[f"gq{k}"] = gq
        if k == n:  # output layer: a_L = BatchNorm(s_L), vanilla, no activation
            layers[f"bn{k}"] = norm_layer(out, precision.norm, 1, bn_eps, bn_momentum, output=True,
                                           options=options)
            break
        layers[f"bn{k}"] = norm_layer(out, precision.norm, 1, bn_eps, bn_momentum, options=options)  # a_k = BN(s_k)
        layers[f"act{k}"] = act_layer(b.act_bits, precision.stochastic)  # a_k^b = Q(Htanh(a_k))
        if dropout_hidden > 0:
            layers[f"drop{k}"] = nn.Dropout(dropout_hidden)
        width = out
    model = nn.Sequential(layers)
    param_grad_quant(model, precision.param_grad_bits, precision.grad_method)
    return model
