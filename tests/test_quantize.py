"""Tests for qnnlib.quantize: the paper's quantizers (Eqs. 1–5, AP2, QNN LinearQuant/LogQuant)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.quantize import (
    MAX_BITS,
    MAX_GRAD_BITS,
    ap2,
    ap2_ste,
    binarize,
    check_bits,
    check_float_tensor,
    hard_sigmoid,
    linear_levels,
    linear_quant,
    linear_quant_ste,
    log_levels,
    log_quant,
    sign,
    sign_ste,
)

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
FAST = settings(max_examples=40, deadline=None)


def t(*v: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(v, dtype=dtype)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)
vectors = st.lists(finite, min_size=1, max_size=24).map(lambda v: torch.tensor(v, dtype=torch.float32))
bits_st = st.integers(min_value=1, max_value=8)


# --------------------------------------------------------------------------------------------------
# sign (Eq. 1) and hard sigmoid (Eq. 3)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sign_values_and_dtype(dtype: torch.dtype) -> None:
    x = t(-2.0, -1.0, -0.5, -1e-3, -0.0, 0.0, 1e-3, 0.5, 1.0, 3.0, dtype=dtype)
    y = sign(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1, 1]  # sign(0) = sign(-0) = +1


def test_sign_of_tiny_and_huge() -> None:
    x = t(-1e-38, 1e-45, -1e-45, float("inf"), float("-inf"), 3e38)
    assert sign(x).tolist() == [-1, 1, -1, 1, -1, 1]


def test_hard_sigmoid_values() -> None:
    x = t(-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0)
    assert hard_sigmoid(x).tolist() == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert hard_sigmoid(x.double()).dtype == torch.float64


# --------------------------------------------------------------------------------------------------
# binarize: forward (Eq. 1/2) and STE (Eq. 4 = gradient of Htanh, Eq. 5)
# --------------------------------------------------------------------------------------------------
def test_binarize_deterministic_forward_equals_sign() -> None:
    x = torch.randn(100, generator=torch.Generator().manual_seed(0))
    x[:3] = torch.tensor([0.0, 1.0, -1.0])
    assert torch.equal(binarize(x), sign(x))
    assert binarize(t(0.0)).item() == 1.0


def test_binarize_grad_closed_form_eq4() -> None:
    x = t(-2.0, -1.0, -0.999, -0.3, 0.0, 0.3, 0.999, 1.0, 1.0001, 5.0).requires_grad_()
    g = torch.arange(1.0, 11.0)
    binarize(x).backward(g)
    inside = [0, 1, 1, 1, 1, 1, 1, 1, 0, 0]  # 1{|x| <= 1}: both boundaries pass the gradient
    assert x.grad.tolist() == [gi * m for gi, m in zip(g.tolist(), inside)]


@pytest.mark.parametrize("stochastic", [False, True])
def test_binarize_grad_equals_htanh_grad(stochastic: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(64, 8, generator=gen) * 1.5).double()
    x[0, :4] = torch.tensor([-1.0, 1.0, 0.0, 1.0 + 1e-9])
    g = torch.randn(64, 8, generator=gen).double()
    xa = x.clone().requires_grad_()
    binarize(xa, stochastic=stochastic, generator=gen).backward(g)
    xr = x.clone().requires_grad_()
    xr.clamp(-1.0, 1.0).backward(g)  # Htanh(x) = Clip(x, -1, 1), Eq. 5
    assert torch.equal(xa.grad, xr.grad)
    # F.hardtanh agrees away from the two kink points
    xh = x.clone().requires_grad_()
    torch.nn.functional.hardtanh(xh).backward(g)
    off_kinks = x.abs() != 1
    assert torch.equal(xa.grad[off_kinks], xh.grad[off_kinks])


def test_binarize_stochastic_mean_is_clipped_input() -> None:
    # E[x_b] = 2·σ(x) − 1 = clip(x, -1, 1); per value 20 000 draws → std of the mean ≤ 1/√20000 ≈ 0.007.
    vals = t(-3.0, -1.0, -0.75, -0.5, -0.1, 0.0, 0.1, 0.5, 0.75, 1.0, 3.0)
    n = 20_000
    x = vals.repeat(n, 1)
    gen = torch.Generator().manual_seed(1234)
    xb = binarize(x, stochastic=True, generator=gen)
    assert set(xb.unique().tolist()) <= {-1.0, 1.0}
    mean = xb.mean(dim=0)
    expected = vals.clamp(-1, 1)
    assert torch.all((mean - expected).abs() < 5 / math.sqrt(n)), (mean, expected)
    # outside [-1, 1] the outcome is certain
    assert torch.all(xb[:, 0] == -1) and torch.all(xb[:, 1] == -1)
    assert torch.all(xb[:, -1] == 1) and torch.all(xb[:, -2] == 1)


def test_binarize_stochastic_reproducible_with_seeded_generator() -> None:
    x = torch.linspace(-1.2, 1.2, 1000)
    a = binarize(x, stochastic=True, generator=torch.Generator().manual_seed(7))
    b = binarize(x, stochastic=True, generator=torch.Generator().manual_seed(7))
    c = binarize(x, stochastic=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == x.dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_binarize_keeps_dtype(dtype: torch.dtype) -> None:
    x = torch.linspace(-2, 2, 9, dtype=dtype)
    assert binarize(x).dtype == dtype
    assert binarize(x, stochastic=True, generator=torch.Generator().manual_seed(0)).dtype == dtype


# --------------------------------------------------------------------------------------------------
# AP2
# --------------------------------------------------------------------------------------------------
def test_ap2_values() -> None:
    x = t(0.0, -0.0, 1.0, -1.0, 3.0, -5.0, 0.75, 0.7, 1.5 - 1e-6, 2.9, 0.1, 1024.0, 2.0**-20)
    # log2: 1.585→2, 2.32→2, -0.415→0, -0.515→-1, 0.585-→1, 1.536→2, -3.32→-3
    assert ap2(x).tolist() == [0.0, 0.0, 1.0, -1.0, 4.0, -4.0, 1.0, 0.5, 2.0, 4.0, 0.125, 1024.0, 2.0**-20]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_ap2_keeps_powers_of_two_and_dtype(dtype: torch.dtype) -> None:
    x = torch.tensor([2.0**k for k in range(-10, 11)], dtype=dtype)
    assert ap2(x).dtype == dtype
    assert torch.equal(ap2(x), x) and torch.equal(ap2(-x), -x)


# --------------------------------------------------------------------------------------------------
# linear_quant (QNN LinearQuant, docs/decisions.md D4)
# --------------------------------------------------------------------------------------------------
def test_linear_levels_declared_sets() -> None:
    assert linear_levels(1).tolist() == [-1.0, 1.0]
    assert torch.allclose(linear_levels(2), torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0], dtype=torch.float64))
    assert torch.allclose(linear_levels(3), torch.linspace(-1, 1, 8, dtype=torch.float64))
    assert torch.allclose(linear_levels(2, 0.0, 1.0), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], dtype=torch.float64))
    for bits in range(1, 9):
        for lo, hi in [(-1.0, 1.0), (0.0, 1.0), (-0.3, 0.7), (-2.0, 5.0)]:
            lv = linear_levels(bits, lo, hi)
            assert lv.numel() == 2**bits and lv[0].item() == lo and lv[-1].item() == hi  # both ends
            assert torch.all(lv.diff() > 0)
            assert torch.allclose(lv.diff(), torch.full((2**bits - 1,), (hi - lo) / (2**bits - 1), dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("rng", [(-1.0, 1.0), (0.0, 1.0), (-0.3, 0.7)])
def test_linear_quant_levels_are_fixed_points(dtype: torch.dtype, bits: int, rng: tuple[float, float]) -> None:
    lv = linear_levels(bits, *rng).to(dtype)
    assert torch.equal(linear_quant(lv, bits, *rng), lv)


def test_linear_quant_two_bit_values() -> None:
    x = t(-5.0, -1.0, -0.7, -2 / 3 - 1e-6, -2 / 3 + 1e-6, -0.1, 0.0, 0.1, 0.6, 2 / 3 + 1e-6, 1.0, 7.0)
    third = 1 / 3
    exp = [-1, -1, -1, -1, -third, -third, third, third, third, 1, 1, 1]
    assert torch.allclose(linear_quant(x, 2), torch.tensor(exp, dtype=torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", range(1, 9))
def test_linear_quant_rounds_half_up(dtype: torch.dtype, bits: int) -> None:
    n = 2**bits - 1
    # 0 is the mid-point between −1/n and +1/n on [−1, 1] (2^bits levels, symmetric): round up.
    assert linear_quant(torch.zeros(1, dtype=dtype), bits).item() == pytest.approx(1 / n)
    assert linear_quant(torch.tensor([-1e-30], dtype=dtype), bits).item() == pytest.approx(-1 / n)
    # integer range [0, n]: levels are the integers, mid-points i + 1/2 go up to i + 1
    mids = torch.arange(n, dtype=dtype) + 0.5
    assert torch.equal(linear_quant(mids, bits, 0.0, float(n)), mids + 0.5)
    assert torch.equal(linear_quant(mids - 0.01, bits, 0.0, float(n)), mids - 0.5)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_linear_quant_one_bit_equals_sign(dtype: torch.dtype) -> None:
    x = torch.tensor([-3.0, -1.0, -1e-3, -0.0, 0.0, 1e-3, 0.5, 1.0, 2.0], dtype=dtype)
    y = linear_quant(x, 1)
    assert y.dtype == dtype and torch.equal(y, sign(x))


def test_linear_quant_clips_to_range() -> None:
    x = t(-100.0, -1.0, 0.2, 1.0, 100.0)
    assert linear_quant(x, 3, 0.0, 1.0).tolist() == pytest.approx([0.0, 0.0, 1 / 7, 1.0, 1.0])
    assert linear_quant(x, 4).min().item() == -1.0 and linear_quant(x, 4).max().item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("rng", [(0.0, 1.0), (-1.0, 0.75), (-0.25, 0.25)])
def test_linear_quant_other_ranges_keep_nan_and_send_inf_to_the_ends(dtype: torch.dtype, rng) -> None:
    x = torch.tensor([math.nan, -math.inf, math.inf, 0.1], dtype=dtype)
    q = linear_quant(x, 3, *rng)
    assert math.isnan(q[0]) and q[1] == rng[0] and q[2] == rng[1] and q.dtype == dtype
    assert q[3] in linear_levels(3, *rng).to(dtype)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_linear_quant_stochastic_is_unbiased_and_reproducible(bits: int) -> None:
    vals = t(-2.0, -0.9, -0.5, -0.2, 0.0, 0.1, 0.45, 0.8, 2.0)
    n = 20_000
    x = vals.repeat(n, 1)
    q = linear_quant(x, bits, stochastic=True, generator=torch.Generator().manual_seed(3))
    lv = linear_levels(bits).float()
    assert torch.isin(q, lv).all()
    # each value rounds to one of its two neighbouring levels
    step = 2 / (2**bits - 1)
    assert torch.all((q - x.clamp(-1, 1)).abs() <= step + 1e-6)
    assert torch.all((q.mean(0) - vals.clamp(-1, 1)).abs() < 5 / math.sqrt(n))
    q2 = linear_quant(x, bits, stochastic=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(q, q2)


def test_linear_quant_stochastic_one_bit_is_eq2() -> None:
    # For k = 1 on [−1, 1], stochastic rounding is Eq. 2: +1 with probability hard_sigmoid(x).
    x = torch.full((40_000,), 0.3)
    q = linear_quant(x, 1, stochastic=True, generator=torch.Generator().manual_seed(5))
    p = (q == 1).float().mean().item()
    assert p == pytest.approx(hard_sigmoid(t(0.3)).item(), abs=0.02)


# --------------------------------------------------------------------------------------------------
# log_quant (Miyashita et al., docs/decisions.md D5)
# --------------------------------------------------------------------------------------------------
def test_log_levels_declared_sets() -> None:
    assert log_levels(1, 0).tolist() == [1.0]
    assert log_levels(2, 0).tolist() == [0.0, 1.0]
    assert log_levels(3, 0).tolist() == [0.0, 0.25, 0.5, 1.0]
    assert log_levels(3, 2).tolist() == [0.0, 1.0, 2.0, 4.0]
    assert log_levels(6, -1).numel() == 1 + 31


def test_log_quant_values_fixed_fsr() -> None:
    x = t(0.0, 1.0, -1.0, 0.7, 0.3, -0.2, 0.1, 0.09, 3.0, -100.0, 0.13)
    # bits=3: exponents {-2, -1, 0} for fsr=0; below round(log2|x|) = -2 → 0; above → clipped to 2^0
    # log2: 0.7→-0.51→-1, 0.3→-1.74→-2, 0.2→-2.32→-2, 0.1→-3.32→-3 (flush), 0.13→-2.94→-3 (flush)
    exp = [0.0, 1.0, -1.0, 0.5, 0.25, -0.25, 0.0, 0.0, 1.0, -1.0, 0.0]
    assert log_quant(x, 3, fsr=0).tolist() == exp


def test_log_quant_default_fsr_is_ceil_log2_max() -> None:
    x = t(0.7, 0.3, -0.05, 0.0)
    # fsr = ceil(log2 0.7) = 0, bits=3 → exponents {-2, -1, 0}; 0.05 → 2^-4 → flush to 0
    assert log_quant(x, 3).tolist() == [0.5, 0.25, -0.0, 0.0]
    y = t(5.0, -1.0, 0.3)  # fsr = 3 → exponents {1, 2, 3}: 5→4, 1→0 (2^0 < 2^1), 0.3 → 0
    assert log_quant(y, 3).tolist() == [4.0, 0.0, 0.0]
    assert torch.equal(log_quant(torch.zeros(4), 4), torch.zeros(4))


def test_log_quant_one_bit_is_scaled_sign() -> None:
    x = t(0.7, -0.3, 0.0, -2.0)
    assert log_quant(x, 1, fsr=0).tolist() == [1.0, -1.0, 1.0, -1.0]
    assert log_quant(x, 1).tolist() == [2.0, -2.0, 2.0, -2.0]  # fsr = ceil(log2 2) = 1


def test_log_quant_output_is_power_of_two_or_zero() -> None:
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 10
    q = log_quant(x, 5)
    nz = q[q != 0]
    e = torch.log2(nz.abs())
    assert torch.equal(e, e.round())
    assert len(e.unique()) <= 2 ** (5 - 1) - 1
    assert torch.all(torch.sign(nz) == torch.sign(x[q != 0]))


# --------------------------------------------------------------------------------------------------
# STE helpers
# --------------------------------------------------------------------------------------------------
def test_sign_ste_and_ap2_ste_pass_gradient_unchanged() -> None:
    x = t(-3.0, -1.0, 0.0, 0.3, 2.0).requires_grad_()
    g = t(1.0, 2.0, 3.0, 4.0, 5.0)
    y = sign_ste(x)
    assert torch.equal(y.detach(), sign(x.detach()))
    y.backward(g)
    assert torch.equal(x.grad, g)
    x.grad = None
    z = ap2_ste(x)
    assert torch.equal(z.detach(), ap2(x.detach()))
    z.backward(g)
    assert torch.equal(x.grad, g)


@pytest.mark.parametrize("bits", [2, 3])
def test_linear_quant_ste_gradients(bits: int) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, generator=gen).double() * 1.3
    x[:2] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    g = torch.randn(200, generator=gen).double()
    xa = x.clone().requires_grad_()
    y = linear_quant_ste(xa, bits)
    assert torch.equal(y.detach(), linear_quant(x, bits))
    y.backward(g)
    xr = x.clone().requires_grad_()
    xr.clamp(-1, 1).backward(g)  # cancel=True: the Htanh gradient
    assert torch.equal(xa.grad, xr.grad)
    xb = x.clone().requires_grad_()
    linear_quant_ste(xb, bits, cancel=False).backward(g)
    assert torch.equal(xb.grad, g)
    # unsigned range: gradient passes on [0, 1]
    xc = x.clone().requires_grad_()
    linear_quant_ste(xc, bits, 0.0, 1.0).backward(g)
    assert torch.equal(xc.grad, torch.where((x >= 0) & (x <= 1), g, 0.0))


# --------------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument, before any work
# --------------------------------------------------------------------------------------------------
X = torch.zeros(3)
XI = torch.zeros(3, dtype=torch.int64)

BAD_CALLS = [
    ("x", lambda: sign(XI)),
    ("x", lambda: sign([0.0, 1.0])),
    ("x", lambda: sign(np.zeros(3))),
    ("x", lambda: hard_sigmoid(XI)),
    ("x", lambda: binarize(XI)),
    ("x", lambda: binarize(torch.zeros(3, dtype=torch.bool))),
    ("generator", lambda: binarize(X, stochastic=True, generator=123)),
    ("x", lambda: ap2(XI)),
    ("x", lambda: linear_quant(XI, 2)),
    ("x", lambda: linear_quant([1.0], 2)),
    ("bits", lambda: linear_quant(X, 0)),
    ("bits", lambda: linear_quant(X, -1)),
    ("bits", lambda: linear_quant(X, 2.0)),
    ("bits", lambda: linear_quant(X, 1.5)),
    ("bits", lambda: linear_quant(X, True)),
    ("bits", lambda: linear_quant(X, "2")),
    ("bits", lambda: linear_quant(X, None)),
    ("min_v", lambda: linear_quant(X, 2, 1.0, 1.0)),
    ("min_v", lambda: linear_quant(X, 2, 2.0, 1.0)),
    ("min_v", lambda: linear_quant(X, 2, float("nan"), 1.0)),
    ("max_v", lambda: linear_quant(X, 2, -1.0, float("inf"))),
    ("generator", lambda: linear_quant(X, 2, stochastic=True, generator="seed")),
    ("bits", lambda: linear_levels(0)),
    ("min_v", lambda: linear_levels(2, 1.0, -1.0)),
    ("bits", lambda: log_levels(0, 0)),
    ("x", lambda: log_quant(XI, 3)),
    ("bits", lambda: log_quant(X, 0)),
    ("bits", lambda: log_quant(X, 3.0)),
    ("fsr", lambda: log_quant(X, 3, fsr=0.5)),
    ("fsr", lambda: log_quant(X, 3, fsr=True)),
    ("x", lambda: sign_ste(XI)),
    ("x", lambda: ap2_ste(XI)),
    ("x", lambda: linear_quant_ste(XI, 2)),
    ("x", lambda: linear_quant_ste([0.5], 2)),
    ("bits", lambda: linear_quant_ste(X, 0)),
    ("min_v", lambda: linear_quant_ste(X, 2, 1.0, 0.0)),
    ("bits", lambda: check_bits(0)),
    ("weight_bits", lambda: check_bits(0, "weight_bits")),
    ("g", lambda: check_float_tensor(XI, "g")),
]


@pytest.mark.parametrize(("arg", "call"), BAD_CALLS, ids=[f"{i}-{a}" for i, (a, _) in enumerate(BAD_CALLS)])
def test_bad_input_raises_value_error_naming_argument(arg: str, call) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        call()


def test_bad_input_fails_before_any_work() -> None:
    # a bad generator must raise before the random draw advances any state
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    with pytest.raises(ValueError, match="bits"):
        linear_quant(X, 0, stochastic=True, generator=gen)
    assert torch.equal(gen.get_state(), before)


# --------------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------------
@FAST
@given(vectors)
def test_prop_sign_and_binarize_idempotent(x: torch.Tensor) -> None:
    s = sign(x)
    assert torch.equal(sign(s), s)
    assert torch.equal(binarize(binarize(x)), binarize(x))
    assert set(s.tolist()) <= {-1.0, 1.0}


@FAST
@given(vectors)
def test_prop_ap2_idempotent(x: torch.Tensor) -> None:
    a = ap2(x)
    assert torch.equal(ap2(a), a)


@FAST
@given(
    st.floats(min_value=2.2250738585072014e-308, max_value=2.0**1023, allow_nan=False, allow_infinity=False),
    st.booleans(),
)
def test_prop_ap2_within_sqrt2_float64(mag: float, neg: bool) -> None:
    x = torch.tensor([-mag if neg else mag], dtype=torch.float64)
    a = ap2(x)
    r = (a / x).item()
    assert 2**-0.5 * (1 - 1e-12) <= r <= 2**0.5 * (1 + 1e-12)
    e = math.log2(abs(a.item()))
    assert e == round(e)  # a power of two


@FAST
@given(st.floats(min_value=1.1754943508222875e-38, max_value=2.0**127, allow_nan=False, width=32), st.booleans())
def test_prop_ap2_within_sqrt2_float32(mag: float, neg: bool) -> None:
    x = torch.tensor([-mag if neg else mag], dtype=torch.float32)
    a = ap2(x)
    r = (a.double() / x.double()).item()
    assert 2**-0.5 * (1 - 1e-6) <= r <= 2**0.5 * (1 + 1e-6)


ranges = st.sampled_from([(-1.0, 1.0), (0.0, 1.0), (-0.3, 0.7), (-2.0, 5.0), (0.0, 6.0)])


@FAST
@given(vectors, bits_st, ranges)
def test_prop_linear_quant_idempotent_and_in_levels(x: torch.Tensor, bits: int, rng: tuple[float, float]) -> None:
    q = linear_quant(x, bits, *rng)
    assert torch.equal(linear_quant(q, bits, *rng), q)
    assert torch.isin(q, linear_levels(bits, *rng).float()).all()
    # nearest level: within half a step of the clipped input
    step = (rng[1] - rng[0]) / (2**bits - 1)
    assert torch.all((q.double() - x.double().clamp(*rng)).abs() <= step / 2 * (1 + 1e-5) + 1e-6)


@FAST
@given(vectors, bits_st)
def test_prop_linear_quant_monotone(x: torch.Tensor, bits: int) -> None:
    xs, _ = torch.sort(x)
    assert torch.all(linear_quant(xs, bits).diff() >= 0)


@FAST
@given(vectors)
def test_prop_linear_quant_one_bit_is_sign(x: torch.Tensor) -> None:
    assert torch.equal(linear_quant(x, 1), sign(x))


@FAST
@given(vectors, bits_st, st.integers(min_value=-6, max_value=6))
def test_prop_log_quant_idempotent_and_in_levels_fixed_fsr(x: torch.Tensor, bits: int, fsr: int) -> None:
    q = log_quant(x, bits, fsr=fsr)
    assert torch.equal(log_quant(q, bits, fsr=fsr), q)
    assert torch.isin(q.abs(), log_levels(bits, fsr).float()).all()


@FAST
@given(vectors, bits_st)
def test_prop_log_quant_default_fsr_levels_and_idempotence(x: torch.Tensor, bits: int) -> None:
    q = log_quant(x, bits)
    amax = x.abs().max().item()
    fsr = math.ceil(math.log2(amax)) if amax > 0 else 0
    assert torch.isin(q.abs(), log_levels(bits, fsr).float()).all()
    assert torch.equal(log_quant(q, bits), q)


@FAST
@given(vectors, bits_st)
def test_prop_log_quant_keeps_sign(x: torch.Tensor, bits: int) -> None:
    q = log_quant(x, bits, fsr=4)
    nz = q != 0
    assert torch.equal(torch.sign(q[nz]), sign(x[nz]))


def test_bits_accepts_numpy_integers() -> None:
    x = torch.linspace(-1, 1, 9)
    assert torch.equal(linear_quant(x, np.int64(2)), linear_quant(x, 2))
    with pytest.raises(ValueError, match="bits"):
        linear_quant(x, np.float64(2.0))


# --------------------------------------------------------------------------------------------------
# Issue 10 row 10: bit widths have a documented maximum (docs/decisions.md D22)
# --------------------------------------------------------------------------------------------------
def test_bits_above_max_bits_raise_before_any_allocation() -> None:
    # linear_levels(33) used to allocate 64 GiB and linear_levels(100) raised OverflowError
    for bits in (MAX_BITS + 1, 33, 100, 1000):
        with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 16\] \(maximum: "
                           r"qnnlib\.quantize\.MAX_BITS, docs/decisions\.md D22\), got"):
            linear_levels(bits)
        with pytest.raises(ValueError, match=r"\bbits\b.*MAX_BITS"):
            linear_quant(X, bits)
        with pytest.raises(ValueError, match=r"\bbits\b.*MAX_BITS"):
            linear_quant_ste(X, bits)
    assert linear_levels(MAX_BITS).numel() == 2**MAX_BITS


def test_gradient_bits_bounded_by_max_grad_bits() -> None:
    for bits in (MAX_GRAD_BITS + 1, 100, 1000):
        with pytest.raises(ValueError, match=r"\bbits\b.*\[1, 32\].*MAX_GRAD_BITS.*D22"):
            log_quant(X, bits)
        with pytest.raises(ValueError, match=r"\bbits\b.*MAX_GRAD_BITS"):
            log_levels(bits, 0)
    # the largest gradient width works and log_levels does not enumerate 2^31 underflowed zeros
    lv = log_levels(MAX_GRAD_BITS, 0)
    assert lv[0] == 0 and lv[1] == 2.0**-1074 and lv[-1] == 1.0 and lv.numel() == 1076
    assert torch.isfinite(log_quant(torch.randn(50), MAX_GRAD_BITS)).all()


def test_check_bits_maximum_and_message() -> None:
    assert check_bits(16) == 16
    assert check_bits(32, maximum=MAX_GRAD_BITS) == 32
    with pytest.raises(ValueError, match=r"^weight_bits must be an integer in \[1, 16\] \(maximum: "
                       r"qnnlib\.quantize\.MAX_BITS, docs/decisions\.md D22\), got 17$"):
        check_bits(17, "weight_bits")
    with pytest.raises(ValueError, match=r"g_bits must be an integer in \[2, 32\] .*MAX_GRAD_BITS.*got 1$"):
        check_bits(1, "g_bits", minimum=2, maximum=MAX_GRAD_BITS)
    with pytest.raises(ValueError, match=r"in \[1, 5\] \(maximum: 5, "):
        check_bits(6, maximum=5)


# --------------------------------------------------------------------------------------------------
# Issue 10 row 11: log_quant levels stay finite (docs/decisions.md D22)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "lo", "hi"), [(torch.float16, -24, 15), (torch.bfloat16, -133, 127),
                                                 (torch.float32, -149, 127), (torch.float64, -1074, 1023)])
def test_log_quant_fsr_must_keep_levels_finite(dtype: torch.dtype, lo: int, hi: int) -> None:
    x = t(-3.0, 0.5, 1e-3, float("inf"), dtype=dtype)
    for bits in (1, 2, 6):
        for fsr in (hi + 1, hi + 100, lo - 1):
            with pytest.raises(ValueError, match=rf"fsr={fsr} with bits={bits}: .*fsr in \[{lo}, {hi}\]"):
                log_quant(x, bits, fsr=fsr)
        for fsr in (lo, hi):
            q = log_quant(x, bits, fsr=fsr)
            assert torch.isfinite(q).all()
        assert log_quant(x, bits, fsr=hi)[3].item() == 2.0**hi  # inf → the extreme level


def test_log_quant_float32_fsr_128_raises_instead_of_inf() -> None:
    with pytest.raises(ValueError, match=r"fsr=128 with bits=1: the largest level 2\*\*fsr must be a finite non-zero "
                       r"torch\.float32 number, i\.e\. fsr in \[-149, 127\]"):
        log_quant(t(0.5, -0.5), 1, fsr=128)
    assert log_quant(t(0.5, -0.5), 1, fsr=127).tolist() == [2.0**127, -(2.0**127)]


def test_log_quant_per_tensor_fsr_clamped_to_dtype() -> None:
    # float16: max|x| = 65504 gave fsr = 16 and 2^16 = inf
    q = log_quant(torch.tensor([65504.0, -1.0], dtype=torch.float16), 6)
    assert torch.isfinite(q).all() and q[0].item() == 2.0**15
    # an infinite entry: fsr clamped to 127, the inf maps to the largest level
    q = log_quant(t(float("inf"), float("-inf"), 2.0**126, 1.0), 3)
    assert q.tolist() == [2.0**127, -(2.0**127), 2.0**126, 0.0]
    # subnormal maximum: fsr clamped up to the smallest normal exponent
    assert torch.isfinite(log_quant(t(1e-45, 0.0), 6)).all()


def test_log_levels_fsr_checked() -> None:
    with pytest.raises(ValueError, match=r"fsr=1024 with bits=2"):
        log_levels(2, 1024)
    with pytest.raises(ValueError, match=r"\bfsr\b"):
        log_levels(2, 0.5)  # type: ignore[arg-type]
    assert log_levels(2, np.int64(3)).tolist() == [0.0, 8.0]


def test_ap2_never_overflows() -> None:
    x = t(3e38, -3e38, float("inf"), float("-inf"), 1.0)
    assert ap2(x).tolist() == [2.0**127, -(2.0**127), 2.0**127, -(2.0**127), 1.0]
    h = torch.tensor([65504.0, float("inf")], dtype=torch.float16)
    assert ap2(h).tolist() == [2.0**15, 2.0**15]


# --------------------------------------------------------------------------------------------------
# Issue 10 row 12: NaN propagates, ±inf maps to the extreme level (docs/decisions.md D22)
# --------------------------------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")
SPECIAL = (NAN, INF, -INF, 0.25, -0.0)


def _same(a: torch.Tensor, b: list[float]) -> bool:
    return torch.equal(a, torch.tensor(b, dtype=a.dtype)) or torch.allclose(  # NaN == NaN only in allclose
        a, torch.tensor(b, dtype=a.dtype), rtol=0, atol=0, equal_nan=True
    )


GEN = lambda: torch.Generator().manual_seed(0)  # noqa: E731
NAN_TABLE = [
    ("sign", lambda x: sign(x), [NAN, 1, -1, 1, 1]),
    ("hard_sigmoid", lambda x: hard_sigmoid(x), [NAN, 1, 0, 0.625, 0.5]),
    ("binarize", lambda x: binarize(x), [NAN, 1, -1, 1, 1]),
    ("binarize-stochastic", lambda x: binarize(x, True, GEN()), [NAN, 1, -1, None, None]),
    ("sign_ste", lambda x: sign_ste(x), [NAN, 1, -1, 1, 1]),
    ("ap2", lambda x: ap2(x), [NAN, 2.0**127, -(2.0**127), 0.25, 0]),
    ("ap2_ste", lambda x: ap2_ste(x), [NAN, 2.0**127, -(2.0**127), 0.25, 0]),
    ("linear_quant-1", lambda x: linear_quant(x, 1), [NAN, 1, -1, 1, 1]),
    ("linear_quant-1-range", lambda x: linear_quant(x, 1, 0.0, 2.0), [NAN, 2, 0, 0, 0]),
    ("linear_quant-1-stochastic", lambda x: linear_quant(x, 1, stochastic=True, generator=GEN()),
     [NAN, 1, -1, None, None]),
    ("linear_quant-2", lambda x: linear_quant(x, 2), [NAN, 1, -1, 1 / 3, 1 / 3]),
    ("linear_quant-2-stochastic", lambda x: linear_quant(x, 2, stochastic=True, generator=GEN()),
     [NAN, 1, -1, None, None]),
    ("linear_quant_ste-1", lambda x: linear_quant_ste(x, 1), [NAN, 1, -1, 1, 1]),
    ("linear_quant_ste-3", lambda x: linear_quant_ste(x, 3), [NAN, 1, -1, 1 / 7, 1 / 7]),
    ("log_quant-1-fsr", lambda x: log_quant(x, 1, fsr=2), [NAN, 4, -4, 4, 4]),
    ("log_quant-3-fsr", lambda x: log_quant(x, 3, fsr=0), [NAN, 1, -1, 0.25, 0]),
    # per-tensor fsr: a NaN anywhere makes the scale NaN, so every non-zero output is NaN
    ("log_quant-1", lambda x: log_quant(x, 1), [NAN] * 5),
    ("log_quant-3", lambda x: log_quant(x, 3), [NAN, NAN, NAN, NAN, 0]),
]


@pytest.mark.parametrize(("fn", "expected"), [(f, e) for _, f, e in NAN_TABLE], ids=[n for n, _, _ in NAN_TABLE])
def test_nan_propagates_and_inf_maps_to_extreme_level(fn, expected: list[float | None]) -> None:  # noqa: ANN001
    y = fn(t(*SPECIAL))
    keep = [i for i, e in enumerate(expected) if e is not None]  # random entries are not checked
    assert _same(y[keep], [expected[i] for i in keep])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_propagates_in_every_dtype(dtype: torch.dtype) -> None:
    x = t(NAN, INF, -INF, 0.25, -0.0, dtype=dtype)
    for y in (sign(x), binarize(x), binarize(x, True, GEN()), linear_quant(x, 1), linear_quant(x, 4),
              log_quant(x, 4, fsr=0), ap2(x)):
        assert y.dtype == dtype
        assert y.isnan().tolist() == [True, False, False, False, False]


def test_inf_without_nan_gives_finite_levels_for_per_tensor_log_quant() -> None:
    assert log_quant(t(INF, -INF, 0.25, -0.0), 1).tolist() == [2.0**127, -(2.0**127), 2.0**127, 2.0**127]


@pytest.mark.parametrize(
    "fn",
    [binarize, lambda x: binarize(x, True), sign_ste, ap2_ste, lambda x: linear_quant_ste(x, 2),
     lambda x: linear_quant_ste(x, 2, cancel=False), lambda x: linear_quant_ste(x, 1, stochastic=True)],
)
def test_ste_gradient_at_nan_and_inf_does_not_crash(fn) -> None:  # noqa: ANN001
    x = t(*SPECIAL).requires_grad_()
    fn(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad[1:]).all()  # NaN-in: whatever the formula gives; inf-in: a number


def test_binarize_relaxed_bound_widens_only_the_gradient_window() -> None:
    x = torch.tensor([-3.0, -1.5, -0.5, 0.0, 0.5, 1.5, 3.0], requires_grad=True)
    y = binarize(x, bound=2.0)
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]  # the forward pass is Eq. 1 whatever the bound
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # g · 1{|x| <= 2}
    x.grad = None
    binarize(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # the paper's window, |x| <= 1
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="bound"):
            binarize(x, bound=bad)
