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

Bit widths (docs/decisions.md D22): weight and activation bits are integers in [1, :data:`MAX_BITS`]
(``linear_levels``, ``linear_quant``, ``linear_quant_ste``), gradient bits integers in
[1, :data:`MAX_GRAD_BITS`] (``log_levels``, ``log_quant``, :mod:`qnnlib.gradquant`); anything else (0,
negatives, larger values, booleans, floats, strings) raises ``ValueError`` naming the argument before any
work is done.  ``qnnlib.precision`` bounds a :class:`~qnnlib.precision.Precision` with the same maxima.

NaN and infinity (docs/decisions.md D22):

* **NaN propagates.**  ``sign``, ``hard_sigmoid``, ``binarize`` (deterministic and stochastic),
  ``sign_ste``, ``ap2``, ``ap2_ste``, ``linear_quant``, ``linear_quant_ste`` and ``log_quant`` return NaN
  wherever the input is NaN, so a diverged run shows a NaN loss instead of continuing silently with +1s.
  Nothing here checks for NaN (no ``.any()``, no device synchronisation).  A per-tensor scale computed
  from a tensor that holds a NaN (``log_quant`` with ``fsr=None``, the linear gradient quantizer) is NaN,
  so every non-zero entry of that tensor becomes NaN.  The straight-through gradients at a NaN input are
  whatever their formula gives (0 where it masks by ``|x| ≤ 1``, ``g`` for the identity).  The only place
  a NaN is an error is where values become bits or integers: ``qnnlib.runtime.bitpack.pack`` raises.
* **±inf maps to the extreme level**, never to NaN: ``sign(±inf) = ±1``, ``linear_quant`` gives
  ``max_v``/``min_v``, ``log_quant`` gives ``±2^fsr``, and ``ap2`` gives ± the largest power of two of the
  dtype (its exponent is clamped there, so a finite input never overflows to inf either).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import numpy as np
import torch

from qnnlib.checks import check_positive

__all__ = [
    "MAX_BITS",
    "MAX_GRAD_BITS",
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


MAX_BITS = 16
"""Largest weight / activation bit width (docs/decisions.md D22).

The linear quantizers have 2^bits levels and :func:`linear_levels` materialises them; 16 bits is more than
any quantized network uses and keeps every level set small (33 bits would be 64 GiB).
``qnnlib.precision.MAX_BITS`` is the same number."""
MAX_GRAD_BITS = 32
"""Largest gradient bit width (docs/decisions.md D22): :func:`log_quant`/:func:`log_levels` and
:mod:`qnnlib.gradquant` (log: 2^(bits−1) − 1 exponent codes; linear: 2^(bits−1) − 1 magnitudes).
``qnnlib.precision.MAX_GRAD_BITS`` is the same number."""

_MAX_NAMES = {MAX_BITS: "MAX_BITS", MAX_GRAD_BITS: "MAX_GRAD_BITS"}


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


def check_bits(bits: Any, name: str = "bits", minimum: int = 1, maximum: int = MAX_BITS) -> int:
    """Return ``bits`` as an int, or raise ``ValueError`` unless it is an integer in [``minimum``, ``maximum``].

    Booleans are not bits.  ``maximum`` is :data:`MAX_BITS` for weights and activations and
    :data:`MAX_GRAD_BITS` for gradients (docs/decisions.md D22); the message names ``name``, the bounds and
    where the maximum is documented.
    """
    where = f"qnnlib.quantize.{_MAX_NAMES[maximum]}" if maximum in _MAX_NAMES else f"{maximum}"
    allowed = f"{name} must be an integer in [{minimum}, {maximum}] (maximum: {where}, docs/decisions.md D22)"
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, numbers.Integral):  # int or numpy integer
        raise ValueError(f"{allowed}, got {bits!r} ({type(bits).__name__})")
    if not minimum <= bits <= maximum:
        raise ValueError(f"{allowed}, got {int(bits)}")
    return int(bits)


def _exponent_range(dtype: torch.dtype) -> tuple[int, int]:
    # (lo, hi): 2^e is a finite non-zero number of ``dtype`` exactly for lo ≤ e ≤ hi (float32: −149, 127;
    # below 2^−126 the level is subnormal, still exact). frexp is exact where log2 is not.
    fi = torch.finfo(dtype)
    return math.frexp(fi.tiny * fi.eps)[1] - 1, math.frexp(fi.max)[1] - 1


def _keep_nan(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # y with NaN wherever x is NaN (D22: NaN propagates); two elementwise passes, no synchronisation.
    return torch.where(torch.isnan(x), x, y)


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

    Returns ±1 in the dtype and device of ``x``; ``sign(±inf) = ±1`` and ``sign(NaN) = NaN`` (the
    library's NaN policy, module docstring).
    """
    check_float_tensor(x)
    # torch.sign gives 0 at ±0 (and at NaN); adding ½ and taking the sign again sends 0 to +1 and keeps ±1.
    # Cheap vectorised passes (a scalar torch.where is ~10x slower on CPU; this is the QAT hot path), then
    # NaN is put back where the input had one.
    return _keep_nan(x, torch.sign(x).add_(0.5).sign_())


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Hard sigmoid, paper Eq. 3: ``σ(x) = clip((x + 1)/2, 0, 1) = max(0, min(1, (x + 1)/2))`` (NaN stays NaN)."""
    check_float_tensor(x)
    return ((x + 1) * 0.5).clamp(0.0, 1.0)


def ap2(x: torch.Tensor) -> torch.Tensor:
    """Approximate power of two (Alg. 3, SBN): ``AP2(x) = sign(x) · 2^round(log2|x|)``, ``AP2(0) = 0``.

    In hardware this is the index of the most significant bit; multiplying by ``AP2(y)`` is a shift.
    For every non-zero normal ``x`` under the dtype's largest power of two:
    ``|x| / √2 ≤ |AP2(x)| ≤ √2 · |x|``.  The exponent is clamped to that largest power of two
    (2^127 in float32), so ``AP2(x)`` is finite for every finite ``x`` and ``AP2(±inf) = ±2^127``;
    ``AP2(NaN) = NaN``.
    """
    check_float_tensor(x)
    e = torch.round(torch.log2(x.abs())).clamp_(max=_exponent_range(x.dtype)[1])  # NaN stays NaN
    mag = torch.exp2(e)  # log2(0) = -inf → 2^-inf = 0
    return torch.sign(x) * mag  # torch.sign(0) = 0 is what we want here: AP2(0) = 0; sign(NaN)·NaN = NaN


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
    ``bits`` is an integer in [1, :data:`MAX_BITS`].  ``±inf`` gives ``max_v``/``min_v``; NaN gives NaN.
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
        return _keep_nan(x, torch.where(x >= mid, hi, lo))
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
    # Other ranges: the level of linear_levels (float64 formula, rounded once to x's dtype), looked up.
    table = _level_table(bits, min_v, max_v, x.dtype, x.device)
    return _keep_nan(x, torch.take(table, torch.nan_to_num(idx, nan=0.0).long()))


@functools.lru_cache(maxsize=64)
def _level_table(bits: int, min_v: float, max_v: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return linear_levels(bits, min_v, max_v).to(dtype=dtype, device=device)


def log_levels(bits: int, fsr: int) -> torch.Tensor:
    """Non-negative magnitudes :func:`log_quant` can output for ``bits`` and ``fsr`` (float64, ascending).

    ``0`` and ``2^e`` for ``e = fsr − n + 1 … fsr``, ``n = 2^(bits−1) − 1`` (``bits = 1``: ``2^fsr`` only).
    ``bits`` is an integer in [1, :data:`MAX_GRAD_BITS`]; ``fsr`` an integer with ``2^fsr`` a normal
    float64 (−1022 … 1023).  Levels under float64's smallest subnormal (2^−1074) are 0 there and are not
    listed twice.
    """
    bits = check_bits(bits, maximum=MAX_GRAD_BITS)
    fsr = _check_fsr(fsr, bits, torch.float64)
    if bits == 1:
        return torch.tensor([2.0**fsr], dtype=torch.float64)
    n_exp = 2 ** (bits - 1) - 1
    lowest = max(fsr - n_exp + 1, -1074)  # 2.0**e == 0.0 below −1074: do not enumerate 2^31 zeros
    return torch.tensor([0.0] + [2.0**e for e in range(lowest, fsr + 1)], dtype=torch.float64)


def _check_fsr(fsr: Any, bits: int, dtype: torch.dtype) -> int:
    if isinstance(fsr, (bool, np.bool_)) or not isinstance(fsr, numbers.Integral):
        raise ValueError(f"fsr must be an integer exponent or None, got {fsr!r} ({type(fsr).__name__})")
    lo, hi = _exponent_range(dtype)
    if not lo <= fsr <= hi:
        raise ValueError(
            f"fsr={int(fsr)} with bits={bits}: the largest level 2**fsr must be a finite non-zero {dtype} number, "
            f"i.e. fsr in [{lo}, {hi}] for {dtype} (2**{lo} … 2**{hi}); pass an fsr in that range, fsr=None "
            "(per-tensor ceil(log2 max|x|)) or a wider dtype"
        )
    return int(fsr)


def log_quant(x: torch.Tensor, bits: int, fsr: int | None = None) -> torch.Tensor:
    """k-bit logarithmic (power-of-two) quantization (Miyashita et al. 2016; docs/decisions.md D5).

    ``LogQuant(x) = sign(x) · 2^e`` with ``e = Clip(round(log2|x|), fsr − n + 1, fsr)`` and
    ``n = 2^(k−1) − 1`` exponent codes (one sign bit, one code for zero); values whose rounded
    exponent falls under ``fsr − n + 1`` flush to 0.  ``fsr`` (full-scale range) is the exponent of
    the largest magnitude, per tensor ``ceil(log2 max|x|)`` unless given.  ``bits = 1`` has no zero
    code: ``sign(x) · 2^fsr`` (sign(0) = +1), the binary case.  ``bits`` is an integer in
    [1, :data:`MAX_GRAD_BITS`].

    Range of ``fsr`` (docs/decisions.md D22): the largest level ``2^fsr`` must be a finite non-zero number
    of ``x``'s dtype (subnormals included: a tensor of tiny values keeps its own scale), ``fsr ∈
    [log2 of the smallest subnormal, floor(log2 max)]`` (float32: [−149, 127]; bfloat16: [−133, 127];
    float16: [−24, 15]; float64: [−1074, 1023]).  A given ``fsr`` outside raises ``ValueError`` naming ``fsr``,
    ``bits`` and the range (float32 ``fsr = 128`` used to return ±inf); the per-tensor ``fsr`` is clamped
    into it (so a float16 tensor with max|x| > 2^15 no longer gives inf).  Lower levels that underflow the
    dtype flush to 0, like values under the range.  ``±inf`` maps to ``±2^fsr``; NaN gives NaN, and with
    ``fsr=None`` a NaN anywhere makes the per-tensor ``fsr`` NaN, so every non-zero output is NaN.
    """
    check_float_tensor(x)
    bits = check_bits(bits, maximum=MAX_GRAD_BITS)
    lo, hi = _exponent_range(x.dtype)
    if fsr is None:
        amax = x.detach().abs().amax() if x.numel() else torch.zeros((), dtype=x.dtype, device=x.device)
        # all-zero tensor: any fsr works, the output is 0 (bits ≥ 2) or ±1 (bits = 1); NaN stays NaN
        fsr_t = torch.where(amax == 0, torch.zeros_like(amax), torch.ceil(torch.log2(amax))).clamp_(lo, hi)
    else:
        fsr_t = torch.full((), float(_check_fsr(fsr, bits, x.dtype)), dtype=x.dtype, device=x.device)
    if bits == 1:
        return sign(x) * torch.exp2(fsr_t)
    n_exp = 2 ** (bits - 1) - 1
    e = torch.round(torch.log2(x.abs()))
    low = fsr_t - (n_exp - 1)
    mag = torch.exp2(torch.minimum(e, fsr_t))
    mag = torch.where((e < low) | (x == 0), torch.zeros_like(mag), mag)  # NaN: both False, mag stays NaN
    return torch.sign(x) * mag  # sign(NaN) = 0 but 0 · NaN = NaN


# --------------------------------------------------------------------------------------------------
# Straight-through estimators
# --------------------------------------------------------------------------------------------------
class _BinarizeSTE(torch.autograd.Function):
    """Forward: Eq. 1 or Eq. 2.  Backward: Eq. 4, ``g_r = g_q · 1{|r| ≤ bound}`` (``bound`` = 1: the paper's)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, stochastic: bool, generator: torch.Generator | None,
                bound: float = 1.0) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        if stochastic:
            # Eq. 2: +1 with probability σ(x) = hard_sigmoid(x), else −1.
            # NaN: σ(NaN) = NaN compares False, so it is put back explicitly (D22: NaN propagates).
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            return _keep_nan(x, (u < hard_sigmoid(x)).to(x.dtype).mul_(2).sub_(1))
        return sign(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        inside = x.abs().le_(ctx.bound)  # 1.0 where |x| ≤ bound else 0.0, in x's dtype
        return inside.mul_(g), None, None, None


def binarize(x: torch.Tensor, stochastic: bool = False, generator: torch.Generator | None = None, *,
             bound: float = 1.0) -> torch.Tensor:
    """Binarize to ±1 with the straight-through estimator of Eq. 4.

    Forward: deterministic ``sign(x)`` (Eq. 1), or, with ``stochastic=True``, +1 with probability
    ``hard_sigmoid(x)`` (Eq. 2–3) drawn from ``generator`` (reproducible), so ``E[x_b] = clip(x, −1, 1)``.
    Backward: ``g_x = g · 1{|x| ≤ bound}`` — the gradient of Htanh (Eq. 5) for ``bound = 1``; a larger ``bound``
    is QNN's "relaxed hard-tanh boundaries" (the gradient passes for |x| ≤ bound; the forward pass is unchanged).
    ``±inf`` gives ±1 (either mode); NaN gives NaN in the forward pass and a zero gradient.
    """
    check_float_tensor(x)
    _check_generator(generator)
    return _BinarizeSTE.apply(x, bool(stochastic), generator, check_positive(bound, "bound"))


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
