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
"""

from __future__ import annotations

import torch
from torch import nn

from qnnlib.gradquant import GradQuant, register_param_grad_quant
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.norm import ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.precision import NormKind

__all__ = ["linear_layer", "conv_layer", "norm_layer", "act_layer", "grad_quant_layer", "param_grad_quant"]


def linear_layer(in_features: int, out_features: int, weight_bits: int | None) -> nn.Module:
    """Fully connected ``s_k = a_{k−1}^b W_k^b + b`` with ``W_k^b = Q(W_k)`` at ``weight_bits`` (``None``: float)."""
    if weight_bits is None:
        return nn.Linear(in_features, out_features)
    return QuantLinear(in_features, out_features, weight_bits=weight_bits)


def conv_layer(in_channels: int, out_channels: int, weight_bits: int | None) -> nn.Module:
    """3×3 'same' convolution ``s_k = a_{k−1}^b ∗ W_k^b + b`` with ``W_k^b = Q(W_k)`` (``None``: float)."""
    if weight_bits is None:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return QuantConv2d(in_channels, out_channels, 3, padding=1, weight_bits=weight_bits)


def norm_layer(
    num_features: int, norm: NormKind, dims: int, eps: float, momentum: float, output: bool = False
) -> nn.Module:
    """``a_k = BatchNorm(s_k)``: shift-based BN (Alg. 3) when ``norm="sbn"`` except at the output, else vanilla.

    ``dims`` is 1 (after a linear layer) or 2 (after a conv); ``eps``/``momentum`` are the vanilla BN's
    (SBN keeps its Torch7 defaults).
    """
    if norm not in ("bn", "sbn"):
        raise ValueError(f"norm must be 'bn' or 'sbn', got {norm!r}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    if norm == "sbn" and not output:
        return (ShiftBatchNorm1d if dims == 1 else ShiftBatchNorm2d)(num_features)
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features, eps=eps, momentum=momentum)


def act_layer(act_bits: int | None, stochastic: bool = False) -> nn.Module:
    """``a_k^b = Q(Htanh(a_k))`` at ``act_bits`` (deterministic, or stochastic in training); ``None``: hard-tanh."""
    if act_bits is None:
        return nn.Hardtanh()
    return QuantAct(act_bits, stochastic=stochastic)


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
