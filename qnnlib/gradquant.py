"""Quantized back-propagated gradients (QNN §"Quantized gradients", 6 bits; DESIGN.md §6.6).

The forward pass is the identity; in the backward pass the error flowing back through the point where
:func:`quantize_grad` sits — placed after a quantized layer's pre-activation, this is the gradient
w.r.t. that pre-activation — is quantized **per tensor**:

* ``method="log"`` (the paper's choice: "only logarithmic quantization works"):
  ``g_q = LogQuant(g, bits)`` with ``fsr = ceil(log2 max|g|)`` (Miyashita et al. 2016), deterministic.
* ``method="linear"``: ``g_q = s · LinearQuant(g / s, bits)`` with ``s = max|g|`` (symmetric).

:func:`register_param_grad_quant` optionally quantizes the parameter gradients as well (tensor hooks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .quantize import check_bits, check_float_tensor, linear_quant, log_quant

__all__ = ["quantize_tensor", "quantize_grad", "GradQuant", "register_param_grad_quant", "METHODS"]

METHODS = ("log", "linear")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def quantize_tensor(g: torch.Tensor, bits: int = 6, method: str = "log") -> torch.Tensor:
    """Per-tensor quantization of a gradient tensor (pure function, see the module docstring)."""
    check_float_tensor(g, "g")
    bits = check_bits(bits)
    _check_method(method)
    if method == "log":
        return log_quant(g, bits)
    s = g.detach().abs().amax()
    if not bool(s > 0):
        return torch.zeros_like(g)
    return linear_quant(g / s, bits) * s


class _GradQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: int, method: str) -> torch.Tensor:
        ctx.bits, ctx.method = bits, method
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return quantize_tensor(g, ctx.bits, ctx.method), None, None


def quantize_grad(x: torch.Tensor, bits: int = 6, method: str = "log") -> torch.Tensor:
    """Identity in the forward pass; the gradient flowing back through it is quantized to ``bits``."""
    check_float_tensor(x)
    bits = check_bits(bits)
    _check_method(method)
    return _GradQuant.apply(x, bits, method)


class GradQuant(nn.Module):
    """Module form of :func:`quantize_grad`, to drop between layers (e.g. after each BN)."""

    def __init__(self, bits: int = 6, method: str = "log") -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.method = _check_method(method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_grad(x, self.bits, self.method)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, method={self.method!r}"


def register_param_grad_quant(
    model: nn.Module, bits: int = 6, method: str = "log"
) -> list[torch.utils.hooks.RemovableHandle]:
    """Quantize every parameter gradient of ``model`` (per tensor) as it is computed.

    Returns the hook handles; call ``h.remove()`` on each to undo.
    """
    bits = check_bits(bits)
    _check_method(method)
    return [p.register_hook(lambda g: quantize_tensor(g, bits, method)) for p in model.parameters() if p.requires_grad]
