"""Binary and k-bit quantized layers (paper Alg. 1, forward pass) and the activation quantizer.

Weights: the layer keeps **latent real weights** ``W`` (what the optimizer updates) and uses the
quantized ``W_b = Q(W)`` in the forward pass (Alg. 1: ``W_k^b = Binarize(W_k)``; ``s_k = a^b W^b``).
The gradient w.r.t. ``W_b`` reaches ``W`` unchanged (straight-through); the latent weights are clipped
to [-1, 1] after each update by :func:`qnnlib.optim.clip_latent_weights`, which finds these layers
through the :class:`LatentWeightLayer` mix-in.  A layer may hold several latent tensors (an LSTM has
``weight_ih`` and ``weight_hh``): :meth:`LatentWeightLayer.latent_weights` lists each with its own
Glorot fans, and the optimizer helpers (Glorot LR groups, clipping) walk that list.

Activations: :class:`QuantAct` is hard-tanh followed by the quantizer (Alg. 1:
``a_k^b = Binarize(a_k)``, backward ``g_{a_k} = g_{a_k^b} · 1{|a_k| ≤ 1}``).

Every constructor checks its sizes (integers ≥ 1) and bit widths (integers in
[1, :data:`~qnnlib.quantize.MAX_BITS`], docs/decisions.md D22) and raises ``ValueError`` naming the
argument, so a bad layer fails where it is built, not at its first forward pass.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.checks import check_int
from qnnlib.quantize import MAX_BITS, binarize, check_bits, linear_quant_ste, sign_ste

__all__ = [
    "LatentWeight",
    "LatentWeightLayer",
    "BinaryLinear",
    "BinaryConv2d",
    "QuantLinear",
    "QuantConv2d",
    "QuantAct",
    "quantize_weight",
    "weight_fans",
]


def _check_kernel_size(value: Any) -> None:
    # nn.Conv2d's kernel_size: an integer >= 1 or a pair of them.
    if isinstance(value, tuple) and len(value) == 2:
        for v in value:
            check_int(v, "kernel_size")
    elif isinstance(value, (tuple, list)):
        raise ValueError(f"kernel_size must be a positive integer or a pair of them, got {value!r}")
    else:
        check_int(value, "kernel_size")


def quantize_weight(w: torch.Tensor, bits: int, bound: float = 1.0) -> torch.Tensor:
    """``W_b = sign(W)`` for ``bits = 1``; k-bit :func:`~qnnlib.quantize.linear_quant` on [-1, 1] otherwise;
    on the grid ``[−bound, bound]`` (``bound · Q(W / bound)``) when ``bound`` is not 1.

    Straight-through gradient in both cases (no cancellation: clipping of ``W`` provides it).  ``bits`` is an
    integer in [1, :data:`~qnnlib.quantize.MAX_BITS`]; ``bound`` a positive number (checked by the layer that
    owns it).
    """
    bits = check_bits(bits, maximum=MAX_BITS)  # before the branch: bits=True must not pass as 1
    if bound != 1.0:
        return bound * quantize_weight(w / bound, bits)
    if bits == 1:
        return sign_ste(w)
    return linear_quant_ste(w, bits, -1.0, 1.0, cancel=False)


def weight_fans(module: nn.Module) -> tuple[int, int]:
    """Glorot ``(fan_in, fan_out)`` of the ``weight`` of a Linear or Conv layer.

    Linear: ``(in_features, out_features)``.  Conv: ``(k·C_in/groups, k·C_out)`` with ``k`` the
    number of kernel taps (no division by a pooling size, as in Theano BinaryNet).
    """
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.modules.conv._ConvNd):
        k = math.prod(module.kernel_size)
        return k * module.in_channels // module.groups, k * module.out_channels
    raise ValueError(f"weight_fans needs a Linear or Conv layer, got {type(module).__name__}")


class LatentWeight(NamedTuple):
    """One latent weight tensor of a layer: its attribute name, the parameter and its Glorot fans."""

    name: str
    param: nn.Parameter
    fan_in: int
    fan_out: int


class LatentWeightLayer:
    """Mix-in: a layer whose latent real weights are quantized in the forward pass.

    ``weight_bits`` is the bit width used in the forward pass (every latent tensor of the layer);
    ``clip_value`` the bound the latent weights are clipped to after every update (paper §2.2:
    otherwise they "would grow very large without any impact on the binary weights").

    :meth:`latent_weights` lists the latent tensors with their Glorot fans.  The default is the one
    ``weight`` of a Linear/Conv layer (:func:`weight_fans`); a layer with several latent tensors
    overrides it, e.g. an LSTM yields ``("weight_ih", W_ih, I, H)`` and ``("weight_hh", W_hh, H, H)``
    (fans per gate: the four gates are four ``H``-output layers stacked), and uses
    :meth:`quantize` on each tensor in its forward pass.
    """

    weight_bits: int = 1
    clip_value: float = 1.0

    def latent_weights(self) -> Iterator[LatentWeight]:
        """Yield ``(name, parameter, fan_in, fan_out)`` for every latent weight tensor of the layer."""
        fan_in, fan_out = weight_fans(self)  # type: ignore[arg-type]
        yield LatentWeight("weight", self.weight, fan_in, fan_out)  # type: ignore[attr-defined]

    def reset_parameters(self) -> None:
        self._reset_latent()

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, weight_bits={self.weight_bits}" if base else f"weight_bits={self.weight_bits}"

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """``Q(w)`` at this layer's ``weight_bits`` (Alg. 1: ``W_k^b = Binarize(W_k)``), straight-through."""
        return quantize_weight(w, self.weight_bits)

    def quantized_weight(self) -> torch.Tensor:
        """The weight actually used in the forward pass, ``W_b = Q(weight)``."""
        return self.quantize(self.weight)  # type: ignore[attr-defined]

    def _reset_latent(self) -> None:
        # Theano BinaryNet (H = 1): W ~ U(-1, 1), biases 0.  Only the sign (or k-bit level) of W
        # matters in the forward pass; the scale of U(-1, 1) sets how far a weight is from flipping.
        # Latent tensors are drawn in latent_weights() order (one tensor: exactly the old draw).
        with torch.no_grad():
            for lw in self.latent_weights():
                lw.param.uniform_(-1.0, 1.0)
            for name, p in self.named_parameters(recurse=False):  # type: ignore[attr-defined]
                if name.startswith("bias") and p is not None:
                    p.zero_()


class QuantLinear(LatentWeightLayer, nn.Linear):
    """``nn.Linear`` with k-bit weights in the forward pass (``weight_bits=1`` is a BNN layer)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_bits: int = 1,
    ) -> None:
        self.weight_bits = check_bits(weight_bits, "weight_bits", maximum=MAX_BITS)
        in_features, out_features = check_int(in_features, "in_features"), check_int(out_features, "out_features")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # s_k = a_{k-1}^b · W_k^b (+ bias)
        return F.linear(x, self.quantized_weight(), self.bias)


class BinaryLinear(QuantLinear):
    """Fully connected layer with binary weights ``W_b = sign(W)`` (same arguments as ``nn.Linear``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype, weight_bits=1)


class QuantConv2d(LatentWeightLayer, nn.Conv2d):
    """``nn.Conv2d`` with k-bit weights in the forward pass (``weight_bits=1`` is a BNN layer)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *args: object,
        weight_bits: int = 1,
        **kwargs: object,
    ) -> None:
        self.weight_bits = check_bits(weight_bits, "weight_bits", maximum=MAX_BITS)
        in_channels, out_channels = check_int(in_channels, "in_channels"), check_int(out_channels, "out_channels")
        _check_kernel_size(kernel_size)
        super().__init__(in_channels, out_channels, kernel_size, *args, **kwargs)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class BinaryConv2d(QuantConv2d):
    """2-D convolution with binary weights ``W_b = sign(W)`` (same arguments as ``nn.Conv2d``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        if "weight_bits" in kwargs:
            raise ValueError("BinaryConv2d always has weight_bits=1; use QuantConv2d(..., weight_bits=k)")
        super().__init__(*args, weight_bits=1, **kwargs)


class QuantAct(nn.Module):
    """Hard-tanh followed by a k-bit activation quantizer.

    ``bits=1``: ``a^b = Binarize(a)`` — deterministic sign (Eq. 1), or in training mode with
    ``stochastic=True`` +1 with probability hard_sigmoid(a) (Eq. 2); deterministic in eval mode. A symmetric
    ``(−r, r)`` range with ``r > 1`` is QNN's "relaxed hard-tanh boundaries": the same ±1 forward, the gradient
    passing for |a| ≤ r.
    ``bits>1``: :func:`~qnnlib.quantize.linear_quant` on ``[min_v, max_v]`` (2-bit: {−1, −⅓, ⅓, 1});
    stochastic rounding in training mode when ``stochastic=True``.  Use ``min_v=0`` for the unsigned
    (ReLU-range) variant.  Backward: ``g · 1{min_v ≤ a ≤ max_v}`` (Eq. 4, the Htanh gradient).

    ``generator`` (optional) makes stochastic activations reproducible; it must live on the same
    device as the input.
    """

    def __init__(
        self,
        bits: int = 1,
        stochastic: bool = False,
        *,
        min_v: float = -1.0,
        max_v: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.bits = check_bits(bits, maximum=MAX_BITS)
        for name, v in (("min_v", min_v), ("max_v", max_v)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite real number, got {v!r}")
        if not min_v < max_v:
            raise ValueError(f"min_v must be smaller than max_v, got {min_v} >= {max_v}")
        if self.bits == 1 and min_v != -max_v:
            raise ValueError("bits=1 binarizes to ±1: min_v/max_v must be symmetric (-r, r); r > 1 relaxes the "
                             f"hard-tanh window of the gradient (QNN's relaxed boundaries), got ({min_v}, {max_v})")
        self.stochastic = bool(stochastic)
        self.min_v, self.max_v = float(min_v), float(max_v)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stochastic = self.stochastic and self.training
        if self.bits == 1:  # ±1 forward; the gradient passes for |x| ≤ max_v (1: Eq. 4; more: relaxed Htanh)
            return binarize(x, stochastic=stochastic, generator=self.generator, bound=self.max_v)
        return linear_quant_ste(
            x, self.bits, self.min_v, self.max_v, cancel=True, stochastic=stochastic, generator=self.generator
        )

    def extra_repr(self) -> str:
        rng = "" if (self.min_v, self.max_v) == (-1.0, 1.0) and self.bits == 1 else \
            f", range=[{self.min_v:g}, {self.max_v:g}]"
        return f"bits={self.bits}, stochastic={self.stochastic}{rng}"
