"""Quantized back-propagated gradients (QNN §"Quantized gradients", 6 bits; docs/decisions.md D6).

The forward pass is the identity; in the backward pass the error flowing back through the point where
:func:`quantize_grad` sits — placed after a quantized layer's pre-activation, this is the gradient
w.r.t. that pre-activation — is quantized **per tensor**:

* ``method="log"`` (the paper's choice: "only logarithmic quantization works"):
  ``g_q = LogQuant(g, bits)`` with ``fsr = ceil(log2 max|g|)`` (Miyashita et al. 2016), deterministic.
* ``method="linear"``: sign-magnitude with the same code budget as the log method (one sign bit,
  2^(bits−1) magnitude codes including zero): ``g_q = s · sign(g) · ⌊n·|g|/s + ½⌋ / n`` with
  ``s = max|g|`` and ``n = 2^(bits−1) − 1`` (bits ≥ 2).  Zero stays zero and ``g_q(−g) = −g_q(g)``;
  the 2^bits levels of :func:`~qnnlib.quantize.linear_quant` contain no zero, which turned every exactly
  zero gradient entry (e.g. one cancelled by the STE) into +s/(2^bits − 1), a systematic bias.

``bits`` is an integer in [1, :data:`~qnnlib.quantize.MAX_GRAD_BITS`] (≥ 2 for ``"linear"``), checked when
the module or hook is built (docs/decisions.md D22).  NaN and infinity follow the policy of
:mod:`qnnlib.quantize` (D22): a NaN entry gives NaN and makes the per-tensor scale NaN (every non-zero
entry becomes NaN, zeros stay 0); ``±inf`` maps to the extreme level (log: ``±2^fsr`` with ``fsr`` clamped
to the dtype; linear: ``s`` is clamped to the dtype's largest finite value, so ``±inf`` gives ``±s``).

:func:`register_param_grad_quant` optionally quantizes the parameter gradients as well (tensor hooks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qnnlib.quantize import MAX_GRAD_BITS, check_bits, check_float_tensor, log_quant

__all__ = ["quantize_tensor", "quantize_grad", "GradQuant", "register_param_grad_quant", "METHODS"]

METHODS = ("log", "linear")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _check_args(bits: int, method: str) -> tuple[int, str]:
    method = _check_method(method)
    bits = check_bits(bits, minimum=2 if method == "linear" else 1, maximum=MAX_GRAD_BITS)
    return bits, method


def quantize_tensor(g: torch.Tensor, bits: int = 6, method: str = "log") -> torch.Tensor:
    """Per-tensor quantization of a gradient tensor (pure function, see the module docstring)."""
    check_float_tensor(g, "g")
    bits, method = _check_args(bits, method)
    if method == "log":
        return log_quant(g, bits)
    mag = g.abs()
    s = mag.amax() if g.numel() else torch.zeros((), dtype=g.dtype, device=g.device)
    s = s.clamp(max=torch.finfo(g.dtype).max)  # an inf entry: finite scale, the inf maps to ±s (NaN stays NaN)
    n = 2 ** (bits - 1) - 1
    # s = 0 (all-zero tensor): 0/0 = nan → where() keeps the zeros; a NaN entry (or scale) stays NaN.
    k = torch.floor(torch.minimum(mag, s) / s * n + 0.5)
    return torch.where(mag == 0, torch.zeros_like(g), torch.sign(g) * (k / n) * s)


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
    bits, method = _check_args(bits, method)
    return _GradQuant.apply(x, bits, method)


class GradQuant(nn.Module):
    """Module form of :func:`quantize_grad`: identity forward, per-tensor quantized error backward.

    :mod:`qnnlib.models` puts one (``gq{k}``) directly after compute layer ``k`` when the precision
    policy sets its gradient bits, so the tensor it quantizes is ``g_{s_k} = ∂L/∂s_k`` — the error both
    backward GEMMs of that layer consume (``g_{a_{k−1}} = g_{s_k} W_k^b``, ``g_{W_k} = g_{s_k}^T a_{k−1}^b``).
    No parameters, no buffers: it adds nothing to the ``state_dict``.
    """

    def __init__(self, bits: int = 6, method: str = "log") -> None:
        super().__init__()
        self.bits, self.method = _check_args(bits, method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_grad(x, self.bits, self.method)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, method={self.method!r}"


def register_param_grad_quant(
    model: nn.Module, bits: int = 6, method: str = "log"
) -> list[torch.utils.hooks.RemovableHandle]:
    """Quantize every parameter gradient of ``model`` (per tensor) as it is computed.

    Tensor hooks on the parameters: they are not part of the ``state_dict`` (a model loaded from one
    has none until this is called again) and ``copy.deepcopy`` does not copy them.  Returns the hook
    handles; call ``h.remove()`` on each to undo.
    """
    bits, method = _check_args(bits, method)
    return [p.register_hook(lambda g: quantize_tensor(g, bits, method)) for p in model.parameters() if p.requires_grad]
