"""Building blocks of the paper's networks: the one place that turns a layer's bits into modules.

A model resolves the bits of each compute layer from its policy
(:meth:`qnnlib.precision.Precision.layer_bits`) and asks this module for the layers.  Alg. 1, layer ``k``:

* ``W_k^b = Binarize(W_k)``, ``s_k = a_{k−1}^b W_k^b`` — :func:`linear_layer` / :func:`conv_layer`
  (``weight_bits=None``: a float ``nn.Linear``/``nn.Conv2d``);
* backward, ``g_{s_k}`` quantized — :func:`grad_quant_layer`, placed directly after the compute layer;
* ``a_k = BatchNorm(s_k)`` — :func:`norm_layer` (pooling, when there is one, sits before BN, as in both
  of the authors' codebases);
* ``a_k^b = Binarize(a_k)`` for ``k < L`` — :func:`act_layer` (``act_bits=None``: a float hard-tanh);
* parameter gradients quantized — :func:`param_grad_quant` (hooks, not modules).

So every quantized block is ``layer → [GradQuant] → [MaxPool] → BN → activation quantizer``.

:class:`ModelOptions` names each place where the authors' code (Torch7 or Theano) differs from qnnlib's
defaults; the defaults build today's models bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from qnnlib.checks import check_positive
from qnnlib.gradquant import GradQuant, register_param_grad_quant
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.norm import LasagneBatchNorm, SBNBackward, ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.precision import LayerBits, NormKind, Precision

__all__ = ["ModelOptions", "BNRunning", "BiasInit", "linear_layer", "conv_layer", "norm_layer", "act_layer",
           "grad_quant_layer", "param_grad_quant", "imagenet_precision"]

BNRunning = Literal["torch", "lasagne"]
BiasInit = Literal["zero", "torch7"]


@dataclass(frozen=True)
class ModelOptions:
    """Switches between qnnlib's defaults and the authors' rules (issue 11 rows 5, 6, 8).

    * ``bn_running``: vanilla BN's running statistics. ``"torch"``: ``nn.BatchNorm1d/2d`` (moving average of
      the unbiased variance); ``"lasagne"``: :class:`qnnlib.norm.LasagneBatchNorm` (moving average of
      ``1/√(biased var + ε)``, Lasagne ``lasagne/layers/normalization.py`` l. 275–305 — the Theano code's BN).
    * ``sbn_backward``: shift-BN backward, ``"autograd"`` (identity STE through every AP2) or ``"torch7"``
      (itayhubara/BinaryNet ``Models/BatchNormalizationShiftPow2.lua`` l. 120–157).
    * ``sbn_invstd_init``: start of shift-BN's running 1/σ; ``None``: 1.0 (Torch7's 1-D module, l. 28–29);
      Torch7's spatial module starts at 0 (``SpatialBatchNormalizationShiftPow2.lua`` l. 76–78).
    * ``out_bn_eps``: ε of the output layer's BN; ``None``: the model's ``bn_eps``.  Torch7's MNIST model
      ends in ``nn.BatchNormalization(10)`` (``Models/BinaryNet_MNIST_Model.lua`` l. 38), ε = 1e-5.
    * ``bias_init``: biases of quantized linear/conv layers. ``"zero"``: 0 (Theano BinaryNet; float layers keep
      PyTorch's init); ``"torch7"``: ``U(−1/√fan_in, 1/√fan_in)`` (``Models/BinaryLinear.lua`` l. 25–41,
      ``stdv = 1/sqrt(inputSize)``; convs with ``fan_in = C_in·k·k`` as ``nn.SpatialConvolution:reset``).
    """

    bn_running: BNRunning = "torch"
    sbn_backward: SBNBackward = "autograd"
    sbn_invstd_init: float | None = None
    out_bn_eps: float | None = None
    bias_init: BiasInit = "zero"

    def __post_init__(self) -> None:
        if self.bn_running not in ("torch", "lasagne"):
            raise ValueError(f"bn_running must be 'torch' or 'lasagne', got {self.bn_running!r}")
        if self.sbn_backward not in ("autograd", "torch7"):
            raise ValueError(f"sbn_backward must be 'autograd' or 'torch7', got {self.sbn_backward!r}")
        if self.bias_init not in ("zero", "torch7"):
            raise ValueError(f"bias_init must be 'zero' or 'torch7', got {self.bias_init!r}")
        v = self.sbn_invstd_init
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or v < 0):
            raise ValueError(f"sbn_invstd_init must be None or a finite number >= 0, got {v!r}")
        e = self.out_bn_eps
        if e is not None and (isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e)
                              or e <= 0):
            raise ValueError(f"out_bn_eps must be None or a finite number > 0, got {e!r}")


def _torch7_bias(layer: nn.Module, fan_in: int) -> nn.Module:
    # itayhubara/BinaryNet Models/BinaryLinear.lua l. 29 and l. 40: bias ~ U(-stdv, stdv), stdv = 1/sqrt(fan_in)
    if getattr(layer, "bias", None) is not None:
        stdv = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.bias.uniform_(-stdv, stdv)
    return layer


def linear_layer(in_features: int, out_features: int, weight_bits: int | None, bias_init: BiasInit = "zero"
                 ) -> nn.Module:
    """Fully connected ``s_k = a_{k−1}^b W_k^b + b`` with ``W_k^b = Q(W_k)`` at ``weight_bits`` (``None``: float).

    ``bias_init="torch7"`` draws a quantized layer's bias from ``U(±1/√in_features)`` after its weights
    (itayhubara/BinaryNet ``Models/BinaryLinear.lua`` l. 25–41); a float layer keeps PyTorch's init (the same law).
    """
    if bias_init not in ("zero", "torch7"):
        raise ValueError(f"bias_init must be 'zero' or 'torch7', got {bias_init!r}")
    if weight_bits is None:
        return nn.Linear(in_features, out_features)
    layer = QuantLinear(in_features, out_features, weight_bits=weight_bits)
    return _torch7_bias(layer, in_features) if bias_init == "torch7" else layer


def conv_layer(in_channels: int, out_channels: int, weight_bits: int | None, bias_init: BiasInit = "zero",
               kernel_size: int = 3, stride: int = 1, padding: int | None = None) -> nn.Module:
    """Convolution ``s_k = a_{k−1}^b ∗ W_k^b + b`` with ``W_k^b = Q(W_k)`` (``None``: float); by default 3×3
    'same' (the Table 1 ConvNets); ``padding=None`` is ``kernel_size // 2``.

    ``bias_init="torch7"``: a quantized conv's bias from ``U(±1/√(k²·in_channels))`` (Torch7
    ``nn.SpatialConvolution:reset``, ``stdv = 1/sqrt(kW·kH·nInputPlane)``); a float conv keeps PyTorch's init.
    """
    if bias_init not in ("zero", "torch7"):
        raise ValueError(f"bias_init must be 'zero' or 'torch7', got {bias_init!r}")
    pad = kernel_size // 2 if padding is None else padding
    if weight_bits is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=pad)
    layer = QuantConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, weight_bits=weight_bits)
    return _torch7_bias(layer, kernel_size * kernel_size * in_channels) if bias_init == "torch7" else layer


def imagenet_precision(weight_bits: int | None = 1, act_bits: int | None = 1, grad_bits: int | None = None, *,
                       float_first: bool = True, float_last: bool = True, stochastic: bool = False,
                       norm: NormKind = "bn", grad_method: str = "log") -> Precision:
    """The precision policy of an ImageNet QNN (AlexNet, GoogLeNet): ``weight_bits``/``act_bits``/``grad_bits``
    everywhere, except that the first layer's and the last layer's weights (and errors) stay float32 by default.

    The paper does not say how its ImageNet nets treat the first and last layers; float first and last layers
    are the common choice of the QNN follow-up work (docs/decisions.md). The first layer's *activation* keeps
    ``act_bits`` (the second layer reads quantized inputs); the last layer has no activation.
    """
    float_layer = LayerBits(weight_bits=None, grad_bits=None)
    return Precision(weight_bits, act_bits, stochastic=stochastic, norm=norm, grad_bits=grad_bits,
                     grad_method=grad_method,  # type: ignore[arg-type]
                     first=float_layer if float_first else None, last=float_layer if float_last else None)


def norm_layer(
    num_features: int,
    norm: NormKind,
    dims: int,
    eps: float,
    momentum: float,
    output: bool = False,
    options: ModelOptions | None = None,
) -> nn.Module:
    """``a_k = BatchNorm(s_k)``: shift-based BN (Alg. 3) when ``norm="sbn"`` except at the output, else vanilla.

    ``dims`` is 1 (after a linear layer) or 2 (after a conv); ``eps``/``momentum`` are the vanilla BN's
    (SBN keeps its Torch7 defaults, ε = 1e-5 and momentum 0.125).  ``options`` (:class:`ModelOptions`, default
    all-default) chooses vanilla BN's running statistics (``bn_running``), shift-BN's backward and running-1/σ
    start, and the output BN's ε (``out_bn_eps``, used when ``output=True``).
    """
    if norm not in ("bn", "sbn"):
        raise ValueError(f"norm must be 'bn' or 'sbn', got {norm!r}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    opt = ModelOptions() if options is None else options
    if norm == "sbn" and not output:
        kw: dict = {}
        if opt.sbn_backward != "autograd":
            kw["backward"] = opt.sbn_backward
        if opt.sbn_invstd_init is not None:
            kw["running_invstd_init"] = float(opt.sbn_invstd_init)
        return (ShiftBatchNorm1d if dims == 1 else ShiftBatchNorm2d)(num_features, **kw)
    if output and opt.out_bn_eps is not None:
        eps = opt.out_bn_eps
    if opt.bn_running == "lasagne":
        return LasagneBatchNorm(num_features, eps=eps, momentum=momentum)
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features, eps=eps, momentum=momentum)


def act_layer(act_bits: int | None, stochastic: bool = False, bound: float = 1.0) -> nn.Module:
    """``a_k^b = Q(Htanh(a_k))`` at ``act_bits`` (deterministic, or stochastic in training); ``None``: hard-tanh.

    ``bound`` > 1 relaxes the hard-tanh to ``[−bound, bound]`` (QNN's ImageNet "relaxed boundaries"; our reading,
    docs/decisions.md D27): 1-bit activations keep their ±1 forward with the gradient passing for |a| ≤ bound;
    k-bit ones quantize on the grid of ``[−bound, bound]``; a float activation clips there.
    """
    bound = check_positive(bound, "bound")
    if act_bits is None:
        return nn.Hardtanh(-bound, bound)
    return QuantAct(act_bits, stochastic=stochastic, min_v=-bound, max_v=bound)


def grad_quant_layer(grad_bits: int | None, method: str = "log") -> GradQuant | None:
    """The block that quantizes ``g_{s_k} = ∂L/∂s_k`` (``None`` when ``grad_bits`` is ``None``).

    Placed directly after compute layer ``k`` (before pooling and BN), it is the identity in the forward
    pass, and in the backward pass it hands the layer the quantized error ``Q(g_{s_k})`` — the one
    operand both of the layer's backward GEMMs consume: ``g_{a_{k−1}} = Q(g_{s_k}) W_k^b`` (the error
    passed on) and ``g_{W_k} = Q(g_{s_k})^T a_{k−1}^b`` (the weight gradient).  With ``W_k^b`` and
    ``a_{k−1}^b`` already quantized, both products are then between low-precision operands: the
    backward pass is bit-wise.  Quantizing after BN instead would quantize ``∂L/∂a_k``, which BN's
    backward turns back into a float ``g_{s_k}``.
    """
    if grad_bits is None:
        return None
    return GradQuant(grad_bits, method)


def param_grad_quant(
    model: nn.Module, param_grad_bits: int | None, method: str = "log"
) -> list[torch.utils.hooks.RemovableHandle]:
    """Quantize every parameter gradient of ``model`` as it is computed (nothing when ``None``).

    Tensor hooks (:func:`qnnlib.gradquant.register_param_grad_quant`): not part of the ``state_dict`` and
    not copied by ``copy.deepcopy``; returns the handles (``h.remove()`` undoes).
    """
    if param_grad_bits is None:
        return []
    return register_param_grad_quant(model, param_grad_bits, method)
