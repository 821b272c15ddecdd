"""Binary and k-bit quantized layers (paper Alg. 1, forward pass) and the activation quantizer.

Weights: the layer keeps **latent real weights** ``W`` (what the optimizer updates) and uses the
quantized ``W_b = Q(W)`` in the forward pass (Alg. 1: ``W_k^b = Binarize(W_k)``; ``s_k = a^b W^b``).
The gradient w.r.t. ``W_b`` reaches ``W`` unchanged (straight-through); the latent weights are clipped
to [-1, 1] after each update by :func:`qnnlib.optim.clip_latent_weights`, which finds these layers
through the :class:`LatentWeightLayer` marker.

Activations: :class:`QuantAct` is hard-tanh followed by the quantizer (Alg. 1:
``a_k^b = Binarize(a_k)``, backward ``g_{a_k} = g_{a_k^b} · 1{|a_k| ≤ 1}``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.quantize import binarize, check_bits, linear_quant_ste, sign_ste

__all__ = [
    "LatentWeightLayer",
    "BinaryLinear",
    "BinaryConv2d",
    "QuantLinear",
    "QuantConv2d",
    "QuantAct",
    "quantize_weight",
]


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``W_b = sign(W)`` for ``bits = 1``; k-bit :func:`~qnnlib.quantize.linear_quant` on [-1, 1] otherwise.

    Straight-through gradient in both cases (no cancellation: clipping of ``W`` provides it).
    """
    if bits == 1:
        return sign_ste(w)
    return linear_quant_ste(w, bits, -1.0, 1.0, cancel=False)


class LatentWeightLayer:
    """Marker mix-in: a layer whose ``weight`` is a latent real weight quantized in the forward pass.

    ``weight_bits`` is the bit width used in the forward pass; ``clip_value`` the bound the latent
    weights are clipped to after every update (paper §2.2: otherwise they "would grow very large
    without any impact on the binary weights").
    """

    weight_bits: int = 1
    clip_value: float = 1.0

    def reset_parameters(self) -> None:
        self._reset_latent()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}"  # type: ignore[misc]

    def quantized_weight(self) -> torch.Tensor:
        """The weight actually used in the forward pass, ``W_b``."""
        return quantize_weight(self.weight, self.weight_bits)  # type: ignore[attr-defined]

    def _reset_latent(self) -> None:
        # Theano BinaryNet (H = 1): W ~ U(-1, 1), biases 0.  Only the sign (or k-bit level) of W
        # matters in the forward pass; the scale of U(-1, 1) sets how far a weight is from flipping.
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)  # type: ignore[attr-defined]
            if getattr(self, "bias", None) is not None:
                self.bias.zero_()  # type: ignore[attr-defined]


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
        self.weight_bits = check_bits(weight_bits, "weight_bits")
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

    def __init__(self, *args: object, weight_bits: int = 1, **kwargs: object) -> None:
        self.weight_bits = check_bits(weight_bits, "weight_bits")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

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
    ``stochastic=True`` +1 with probability hard_sigmoid(a) (Eq. 2); deterministic in eval mode.
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
        self.bits = check_bits(bits)
        if not min_v < max_v:
            raise ValueError(f"min_v must be smaller than max_v, got {min_v} >= {max_v}")
        if bits == 1 and (min_v, max_v) != (-1.0, 1.0):
            raise ValueError("bits=1 binarizes to ±1: min_v/max_v must be the default (-1, 1)")
        self.stochastic = bool(stochastic)
        self.min_v, self.max_v = float(min_v), float(max_v)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stochastic = self.stochastic and self.training
        if self.bits == 1:
            return binarize(x, stochastic=stochastic, generator=self.generator)
        return linear_quant_ste(
            x, self.bits, self.min_v, self.max_v, cancel=True, stochastic=stochastic, generator=self.generator
        )

    def extra_repr(self) -> str:
        rng = "" if self.bits == 1 else f", range=[{self.min_v:g}, {self.max_v:g}]"
        return f"bits={self.bits}, stochastic={self.stochastic}{rng}"
