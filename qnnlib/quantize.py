"""The paper's quantizers: pure functions plus straight-through-estimator autograd functions.

Every function maps a floating tensor to a tensor of the same shape, dtype and device.  The pure
functions (``sign``, ``hard_sigmoid``, ``ap2``, ``linear_quant``, ``log_quant``) are not meant to be
differentiated (their true derivative is zero almost everywhere); the ``*_ste`` functions and
``binarize`` carry the paper's straight-through estimators.

Decisions where the paper is ambiguous (docs/decisions.md):

* ``sign(0) = +1`` (Eq. 1; ``torch.sign(0) = 0`` is wrong here).
* Activation STE: ``g_x = g · 1{|x| ≤ 1}`` (Eq. 4, i.e. back-propagation through Htanh, Eq. 5).
  Weight STE: the gradient passes unchanged; the cancellation comes from clipping the latent weights
  to [-1, 1] after each update (``qnnlib.optim.clip_latent_weights``).
* k-bit linear quantizer on [min_v, max_v]: 2^k uniformly spaced levels including both ends,
  step Δ = (max_v − min_v)/(2^k − 1), round half up; k = 1 is exactly the sign (threshold at the
  mid-point, which is 0 for the default range).  2-bit activations are {−1, −1/3, 1/3, 1}.
* k-bit log quantizer (Miyashita et al. 2016): one sign bit; exponents round(log2|x|) clipped to the
  2^(k−1) − 1 values at and below ``fsr``; magnitudes under the range flush to 0; deterministic.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = [
    "sign",
    "hard_sigmoid",
    "binarize",
    "sign_ste",
    "ap2",
    "ap2_ste",
    "linear_quant",
    "linear_quant_ste",
    "log_quant",
    "linear_levels",
    "log_levels",
    "check_bits",
    "check_float_tensor",
]


# --------------------------------------------------------------------------------------------------
# Argument checks (done before any work so that a bad call fails loudly and early)
# --------------------------------------------------------------------------------------------------
def check_float_tensor(x: Any, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating-point ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), got "
            f"dtype {x.dtype}; convert it first, e.g. {name}.float()"
        )


def check_bits(bits: Any, name: str = "bits", minimum: int = 1) -> int:
    """Return ``bits`` as an int, or raise ``ValueError`` unless it is an integer ≥ ``minimum``."""
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, numbers.Integral):  # int or numpy integer
        raise ValueError(f"{name} must be an integer >= {minimum}, got {bits!r} ({type(bits).__name__})")
    if bits < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {bits}")
    return int(bits)


def _check_range(min_v: float, max_v: float) -> tuple[float, float]:
    for name, v in (("min_v", min_v), ("max_v", max_v)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite real number, got {v!r}")
    if not min_v < max_v:
        raise ValueError(f"min_v must be smaller than max_v, got min_v={min_v} >= max_v={max_v}")
    return float(min_v), float(max_v)


def _check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------
def sign(x: torch.Tensor) -> torch.Tensor:
    """Deterministic binarization, paper Eq. 1: ``x_b = +1 if x ≥ 0 else −1`` (so sign(0) = +1).

    Returns ±1 in the dtype and device of ``x``.
    """
    check_float_tensor(x)
    # torch.sign gives 0 at ±0; adding ½ and taking the sign again sends 0 to +1 and keeps ±1.
    # Three cheap vectorised passes (torch.where is ~10x slower on CPU; this is the QAT hot path).
    return torch.sign(x).add_(0.5).sign_()


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Hard sigmoid, paper Eq. 3: ``σ(x) = clip((x + 1)/2, 0, 1) = max(0, min(1, (x + 1)/2))``."""
    check_float_tensor(x)
    return ((x + 1) * 0.5).clamp(0.0, 1.0)


def ap2(x: torch.Tensor) -> torch.Tensor:
    """Approximate power of two (Alg. 3, SBN): ``AP2(x) = sign(x) · 2^round(log2|x|)``, ``AP2(0) = 0``.

    In hardware this is the index of the most significant bit; multiplying by ``AP2(y)`` is a shift.
    For every non-zero normal ``x``: ``|x| / √2 ≤ |AP2(x)| ≤ √2 · |x|``.
    """
    check_float_tensor(x)
    mag = torch.exp2(torch.round(torch.log2(x.abs())))  # log2(0) = -inf → 2^-inf = 0
    return torch.sign(x) * mag  # torch.sign(0) = 0 is what we want here: AP2(0) = 0


def linear_levels(bits: int, min_v: float = -1.0, max_v: float = 1.0) -> torch.Tensor:
    """The 2^bits output levels of :func:`linear_quant` (float64, ascending).

    Computed with the same float64 formula as :func:`linear_quant` (``(2i − n)/n`` for [−1, 1],
    otherwise a two-sided lerp exact at both ends), so that the outputs of ``linear_quant`` on a
    tensor of any dtype are exactly ``linear_levels(bits, min_v, max_v).to(dtype)``.
    """
    bits = check_bits(bits)
    min_v, max_v = _check_range(min_v, max_v)
    n = 2**bits - 1
    idx = torch.arange(n + 1, dtype=torch.float64)
    if (min_v, max_v) == (-1.0, 1.0):
        return (2 * idx - n) / n
    return _lerp_levels(idx, n, min_v, max_v)


def _lerp_levels(idx: torch.Tensor, n: int, min_v: float, max_v: float) -> torch.Tensor:
    # Level i of n on [min_v, max_v] in float64, exact at both ends (torch.lerp's two-sided formula).
    w = idx / n
    d = max_v - min_v
    return torch.where(w < 0.5, min_v + d * w, max_v - d * (1 - w))


def linear_quant(
    x: torch.Tensor,
    bits: int,
    min_v: float = -1.0,
    max_v: float = 1.0,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """k-bit linear quantization (QNN ``LinearQuant``; docs/decisions.md D4).

    ``Δ = (max_v − min_v)/(2^k − 1)`` and
    ``LinearQuant(x) = min_v + Δ · ⌊(Clip(x, min_v, max_v) − min_v)/Δ + ½⌋`` (round half up), giving
    2^k levels that include both ends.  ``bits = 1`` is exactly the sign about the mid-point
    (``sign`` for the default [−1, 1]).  ``stochastic=True`` rounds up with probability equal to the
    fractional part (for k = 1 on [−1, 1]: +1 with probability hard_sigmoid(x), Eq. 2).
    """
    check_float_tensor(x)
    bits = check_bits(bits)
    min_v, max_v = _check_range(min_v, max_v)
    _check_generator(generator)
    if bits == 1 and not stochastic:
        # Exact threshold at the mid-point (0 for the default range): sign(0) = +1.
        mid = 0.5 * (min_v + max_v)
        lo = torch.full((), min_v, dtype=x.dtype, device=x.device)
        hi = torch.full((), max_v, dtype=x.dtype, device=x.device)
        return torch.where(x >= mid, hi, lo)
    n = 2**bits - 1
    # Work relative to the centre c of the range: s = (x − c)·n/(max_v − min_v) ∈ [−n/2, n/2], whose
    # levels are (2i − n)/2 and whose rounding mid-points are the integers.  The level index
    # ⌊s⌋ + (n+1)/2 therefore rounds exact mid-points (e.g. x = 0 for [−1, 1]) up; the naive
    # ⌊(x − min_v)/Δ + ½⌋ does not, because Δ = (max_v − min_v)/n is inexact in floating point (in
    # float32 it sent linear_quant(0., 3) to −1/7).  Multiplying by n before dividing keeps s exact
    # at mid-points whenever they are representable.
    c = 0.5 * (min_v + max_v)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # half types: index in float32
    s = ((work.clamp(min_v, max_v) - c) * n) / (max_v - min_v)
    if stochastic:
        # Round up with probability equal to the fractional part of t = s + n/2 ∈ [0, n].
        r = torch.rand(x.shape, generator=generator, dtype=work.dtype, device=x.device)
        idx = torch.floor(s + (n / 2 + r))
    else:
        idx = torch.floor(s) + (n + 1) // 2
    idx = idx.clamp(0, n)
    if (min_v, max_v) == (-1.0, 1.0):
        return ((2 * idx - n) / n).to(x.dtype)
    # Other ranges: the level in float64 with linear_levels' formula, then rounded once.
    return _lerp_levels(idx.double(), n, min_v, max_v).to(x.dtype)


def log_levels(bits: int, fsr: int) -> torch.Tensor:
    """Non-negative magnitudes :func:`log_quant` can output for ``bits`` and ``fsr`` (ascending)."""
    bits = check_bits(bits)
    n_exp = 2 ** (bits - 1) - 1
    if bits == 1:
        return torch.tensor([2.0**fsr], dtype=torch.float64)
    return torch.tensor([0.0] + [2.0 ** (fsr - n_exp + 1 + i) for i in range(n_exp)], dtype=torch.float64)


def log_quant(x: torch.Tensor, bits: int, fsr: int | None = None) -> torch.Tensor:
    """k-bit logarithmic (power-of-two) quantization (Miyashita et al. 2016; docs/decisions.md D5).

    ``LogQuant(x) = sign(x) · 2^e`` with ``e = Clip(round(log2|x|), fsr − n + 1, fsr)`` and
    ``n = 2^(k−1) − 1`` exponent codes (one sign bit, one code for zero); values whose rounded
    exponent falls under ``fsr − n + 1`` flush to 0.  ``fsr`` (full-scale range) is the exponent of
    the largest magnitude, per tensor ``ceil(log2 max|x|)`` unless given.  ``bits = 1`` has no zero
    code: ``sign(x) · 2^fsr`` (sign(0) = +1), the binary case.
    """
    check_float_tensor(x)
    bits = check_bits(bits)
    if fsr is not None and (isinstance(fsr, bool) or not isinstance(fsr, int)):
        raise ValueError(f"fsr must be an integer exponent or None, got {fsr!r}")
    if fsr is None:
        amax = x.detach().abs().amax() if x.numel() else torch.zeros((), dtype=x.dtype, device=x.device)
        # all-zero tensor: any fsr works, the output is 0 (bits ≥ 2) or ±1 (bits = 1)
        fsr_t = torch.where(amax > 0, torch.ceil(torch.log2(amax)), torch.zeros_like(amax))
    else:
        fsr_t = torch.full((), float(fsr), dtype=x.dtype, device=x.device)
    if bits == 1:
        return sign(x) * torch.exp2(fsr_t)
    n_exp = 2 ** (bits - 1) - 1
    e = torch.round(torch.log2(x.abs()))
    low = fsr_t - (n_exp - 1)
    mag = torch.exp2(torch.minimum(e, fsr_t))
    mag = torch.where((e < low) | (x == 0), torch.zeros_like(mag), mag)
    return torch.sign(x) * mag


# --------------------------------------------------------------------------------------------------
# Straight-through estimators
# --------------------------------------------------------------------------------------------------
class _BinarizeSTE(torch.autograd.Function):
    """Forward: Eq. 1 or Eq. 2.  Backward: Eq. 4, ``g_r = g_q · 1{|r| ≤ 1}``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        if stochastic:
            # Eq. 2: +1 with probability σ(x) = hard_sigmoid(x), else −1.
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            return (u < hard_sigmoid(x)).to(x.dtype).mul_(2).sub_(1)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        inside = x.abs().le_(1)  # 1.0 where |x| ≤ 1 else 0.0, in x's dtype
        return inside.mul_(g), None, None


def binarize(x: torch.Tensor, stochastic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binarize to ±1 with the straight-through estimator of Eq. 4.

    Forward: deterministic ``sign(x)`` (Eq. 1), or, with ``stochastic=True``, +1 with probability
    ``hard_sigmoid(x)`` (Eq. 2–3) drawn from ``generator`` (reproducible), so ``E[x_b] = clip(x, −1, 1)``.
    Backward: ``g_x = g · 1{|x| ≤ 1}`` — the gradient of Htanh (Eq. 5).
    """
    check_float_tensor(x)
    _check_generator(generator)
    return _BinarizeSTE.apply(x, bool(stochastic), generator)


class _IdentitySTE(torch.autograd.Function):
    """Forward: any quantizer ``q(x)``; backward: the identity (or a mask to [lo, hi])."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, q: torch.Tensor, lo: float | None, hi: float | None) -> torch.Tensor:
        ctx.masked = lo is not None
        if ctx.masked:
            ctx.save_for_backward((x >= lo) & (x <= hi))
        return q

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        if not ctx.masked:
            return g, None, None, None
        (inside,) = ctx.saved_tensors
        return g * inside, None, None, None


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Weight binarization ``W_b = sign(W)`` with the gradient passed straight through unchanged.

    Alg. 1: "the gradient computed w.r.t. the binary weights is applied to the real weights"; the
    cancellation for |W| > 1 comes from clipping the latent weights (§2.2 of docs/paper.md).
    """
    check_float_tensor(x)
    return _IdentitySTE.apply(x, sign(x.detach()), None, None)


def ap2_ste(x: torch.Tensor) -> torch.Tensor:
    """``AP2(x)`` in the forward pass, identity gradient (used by shift-based batch norm)."""
    check_float_tensor(x)
    return _IdentitySTE.apply(x, ap2(x.detach()), None, None)


def linear_quant_ste(
    x: torch.Tensor,
    bits: int,
    min_v: float = -1.0,
    max_v: float = 1.0,
    *,
    cancel: bool = True,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`linear_quant` with a straight-through gradient.

    ``cancel=True`` (activations): ``g_x = g · 1{min_v ≤ x ≤ max_v}``, the k-bit analogue of Eq. 4.
    ``cancel=False`` (latent weights, clipped after each update): ``g_x = g``.
    """
    check_float_tensor(x)  # before x.detach(): a non-tensor must raise ValueError, not AttributeError
    q = linear_quant(x.detach(), bits, min_v, max_v, stochastic=stochastic, generator=generator)
    if cancel:
        return _IdentitySTE.apply(x, q, float(min_v), float(max_v))
    return _IdentitySTE.apply(x, q, None, None)
