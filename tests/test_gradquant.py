"""Tests for qnnlib.gradquant: identity forward, per-tensor quantized gradient in the backward pass."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qnnlib.gradquant import METHODS, GradQuant, quantize_grad, quantize_tensor, register_param_grad_quant
from qnnlib.layers import BinaryLinear, QuantAct
from qnnlib.quantize import MAX_GRAD_BITS, log_levels, log_quant

FAST = settings(max_examples=40, deadline=None)
grads = st.lists(
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=24
).map(lambda v: torch.tensor(v, dtype=torch.float32))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _backward_through(x: torch.Tensor, g: torch.Tensor, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
    xa = x.clone().requires_grad_()
    y = quantize_grad(xa, **kw)
    y.backward(g)
    return y, xa.grad


# --------------------------------------------------------------------------------------------------
# Forward identity
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_identity(method: str, dtype: torch.dtype) -> None:
    x = torch.randn(4, 5, generator=gen(0), dtype=dtype) * 7
    y = quantize_grad(x.requires_grad_(), bits=3, method=method)
    assert y.dtype == dtype and y.shape == x.shape and torch.equal(y.detach(), x.detach())
    assert torch.equal(GradQuant(3, method)(x).detach(), x.detach())


# --------------------------------------------------------------------------------------------------
# Log method (the paper's)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 6])
def test_log_backward_powers_of_two_with_bounded_exponents(bits: int) -> None:
    g = gen(bits)
    x = torch.randn(32, 16, generator=g)
    up = torch.randn(32, 16, generator=g) * torch.exp(torch.randn(32, 16, generator=g) * 3)
    up[0, :3] = 0.0
    _, gx = _backward_through(x, up, bits=bits, method="log")
    nz = gx != 0
    e = torch.log2(gx[nz].abs())
    assert torch.equal(e, e.round())  # powers of two (or 0)
    assert len(e.unique()) <= 2 ** (bits - 1) - 1  # at most 2^(bits-1) - 1 distinct exponents
    fsr = math.ceil(math.log2(up.abs().max().item()))
    assert e.max().item() <= fsr and e.min().item() >= fsr - (2 ** (bits - 1) - 1) + 1
    assert torch.equal(torch.sign(gx[nz]), torch.sign(up[nz]))
    assert torch.all(gx[0, :3] == 0)  # zero stays zero
    assert torch.equal(gx, log_quant(up, bits))
    assert torch.isin(gx.abs(), log_levels(bits, fsr).float()).all()


def test_log_backward_known_values_default_six_bits() -> None:
    up = torch.tensor([1.0, -0.75, 0.3, 2.0**-29, 2.0**-31, 0.0])
    _, gx = _backward_through(torch.zeros(6), up)  # bits=6, method="log": exponents 0 down to -30
    assert gx.tolist() == [1.0, -1.0, 0.25, 2.0**-29, 0.0, 0.0]


def test_log_backward_relative_error_in_range() -> None:
    up = torch.randn(1000, generator=gen(1), dtype=torch.float64)
    _, gx = _backward_through(torch.zeros(1000, dtype=torch.float64), up, bits=6)
    # magnitudes well inside the 31-exponent range are within a factor √2 (round(log2|g|))
    keep = up.abs() > up.abs().max() * 2.0**-20
    r = gx[keep] / up[keep]
    assert r.min() >= 2**-0.5 - 1e-12 and r.max() <= 2**0.5 + 1e-12


# --------------------------------------------------------------------------------------------------
# Linear method
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 6])
def test_linear_backward_levels(bits: int) -> None:
    g = gen(10 + bits)
    up = torch.randn(200, generator=g, dtype=torch.float64) * 3
    up[:4] = torch.tensor([0.0, 0.0, -0.0, 0.0])
    _, gx = _backward_through(torch.zeros(200, dtype=torch.float64), up, bits=bits, method="linear")
    s = up.abs().max()
    n = 2 ** (bits - 1) - 1
    k = gx / s * n
    assert torch.allclose(k, k.round(), atol=1e-9)  # levels s·k/n, k ∈ {−n, …, n}
    assert k.abs().max().round().item() == n  # the largest magnitude is kept exactly
    assert gx.abs().max().item() == s.item()
    assert torch.all(gx[:4] == 0)  # zero gradients stay zero (no bias)
    assert torch.all((gx - up).abs() <= s / (2 * n) + 1e-12)  # nearest level
    levels = {round(v, 6) for v in (gx / s * n).tolist()}
    assert levels <= {float(i) for i in range(-n, n + 1)}


def test_linear_backward_rounds_half_away_from_zero_and_is_odd() -> None:
    up = torch.tensor([1.0, 0.5, -0.5, 1 / 6, -1 / 6, 0.1, 0.0], dtype=torch.float64)
    q = quantize_tensor(up, bits=3, method="linear")  # n = 3: levels 0, ±1/3, ±2/3, ±1
    assert q.tolist() == pytest.approx([1.0, 2 / 3, -2 / 3, 1 / 3, -1 / 3, 0.0, 0.0])
    assert torch.equal(quantize_tensor(-up, 3, "linear"), -q)


def test_all_zero_and_empty_gradients() -> None:
    for method in METHODS:
        assert torch.equal(quantize_tensor(torch.zeros(5), 4, method), torch.zeros(5))
        assert quantize_tensor(torch.zeros(0), 4, method).numel() == 0


# --------------------------------------------------------------------------------------------------
# Module form and parameter-gradient hooks
# --------------------------------------------------------------------------------------------------
def test_grad_quant_module_in_a_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(BinaryLinear(6, 8), GradQuant(bits=4), QuantAct(), BinaryLinear(8, 3))
    assert "bits=4" in repr(model[1]) and "'log'" in repr(model[1])
    x = torch.randn(5, 6)
    captured = {}
    model[1].register_full_backward_hook(lambda m, gin, gout: captured.update(gin=gin[0], gout=gout[0]))
    model(x).sum().backward()
    assert torch.equal(captured["gin"], log_quant(captured["gout"], 4))
    # the weight gradient of the first layer is computed from the quantized error
    assert torch.allclose(model[0].weight.grad, captured["gin"].T @ x)


@pytest.mark.parametrize("method", METHODS)
def test_register_param_grad_quant(method: str) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    ref = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    ref.load_state_dict(model.state_dict())
    handles = register_param_grad_quant(model, bits=3, method=method)
    assert len(handles) == 4
    x = torch.randn(7, 5)
    model(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    for p, r in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p.grad, quantize_tensor(r.grad, 3, method))
    for h in handles:
        h.remove()
    model.zero_grad()
    ref.zero_grad()
    model(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    for p, r in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p.grad, r.grad)


def test_grad_quant_has_no_state_and_param_hooks_live_on_the_parameters() -> None:
    gq = GradQuant(6)
    assert gq.state_dict() == {} and list(gq.parameters()) == [] and list(gq.buffers()) == []
    model = nn.Sequential(nn.Linear(3, 2))
    keys = list(model.state_dict())
    register_param_grad_quant(model, bits=2)
    assert list(model.state_dict()) == keys  # hooks are not part of the state_dict
    model.load_state_dict(nn.Sequential(nn.Linear(3, 2)).state_dict())  # ... and survive loading one
    model.double()  # ... and dtype/device moves (the parameter objects stay)
    x = torch.randn(4, 3, generator=gen(5), dtype=torch.float64)
    model(x).sum().backward()
    ref = torch.ones(4, 2, dtype=torch.float64).T @ x
    assert torch.equal(model[0].weight.grad, quantize_tensor(ref, 2, "log"))


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
X = torch.zeros(3)


@pytest.mark.parametrize(
    ("arg", "call"),
    [
        ("x", lambda: quantize_grad(torch.zeros(3, dtype=torch.int32))),
        ("x", lambda: quantize_grad([1.0])),
        ("g", lambda: quantize_tensor(torch.zeros(3, dtype=torch.int64))),
        ("bits", lambda: quantize_grad(X, bits=0)),
        ("bits", lambda: quantize_grad(X, bits=6.0)),
        ("bits", lambda: quantize_grad(X, bits=1, method="linear")),  # sign + no magnitude code
        ("bits", lambda: quantize_tensor(X, bits=-2)),
        ("method", lambda: quantize_grad(X, method="stochastic")),
        ("method", lambda: quantize_tensor(X, method="LOG")),
        ("bits", lambda: GradQuant(bits=0)),
        ("method", lambda: GradQuant(method="dorefa")),
        ("bits", lambda: register_param_grad_quant(nn.Linear(2, 2), bits=0)),
        ("method", lambda: register_param_grad_quant(nn.Linear(2, 2), method="x")),
    ],
)
def test_bad_input(arg: str, call) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        call()


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------
@FAST
@given(grads, st.integers(min_value=2, max_value=8), st.sampled_from(METHODS))
def test_prop_quantize_tensor_idempotent_and_odd(g: torch.Tensor, bits: int, method: str) -> None:
    q = quantize_tensor(g, bits, method)
    assert torch.equal(quantize_tensor(q, bits, method), q)
    assert torch.equal(quantize_tensor(-g, bits, method), -q)
    assert torch.all(q[g == 0] == 0)
    assert q.abs().max() <= 2 * g.abs().max()  # never blows up (log: at most a factor 2 at the top)


# --------------------------------------------------------------------------------------------------
# Issue 10 rows 10 and 12: bounded bits, NaN propagates, ±inf → extreme level (docs/decisions.md D22)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [MAX_GRAD_BITS + 1, 64, 1000])
def test_bits_above_max_grad_bits_raise_where_built(bits: int) -> None:
    msg = r"^bits must be an integer in \[\d, 32\] \(maximum: qnnlib\.quantize\.MAX_GRAD_BITS, docs/decisions\.md D22\)"
    for method in METHODS:
        with pytest.raises(ValueError, match=msg):
            GradQuant(bits, method)
        with pytest.raises(ValueError, match=msg):
            register_param_grad_quant(nn.Linear(2, 2), bits, method)
        with pytest.raises(ValueError, match=msg):
            quantize_tensor(X, bits, method)
        with pytest.raises(ValueError, match=msg):
            quantize_grad(X, bits, method)
    assert GradQuant(MAX_GRAD_BITS, "linear").bits == MAX_GRAD_BITS


@pytest.mark.parametrize("method", METHODS)
def test_nan_gradient_propagates(method: str) -> None:
    # the linear quantizer used to turn the NaN entry into 0 (and every other entry into NaN)
    q = quantize_tensor(torch.tensor([float("nan"), 0.5, -0.25, 0.0]), 6, method)
    assert q.isnan().tolist() == [True, True, True, False]  # NaN per-tensor scale; zeros stay 0
    assert q[3].item() == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_infinite_gradient_maps_to_finite_extreme_level(method: str) -> None:
    for dtype in (torch.float16, torch.float32, torch.float64):
        q = quantize_tensor(torch.tensor([float("inf"), float("-inf"), 1.0, 0.0], dtype=dtype), 6, method)
        assert torch.isfinite(q).all(), (method, dtype, q)
        assert q[0] > 0 and q[1] == -q[0] and q[3] == 0


def test_nan_gradient_through_grad_quant_does_not_crash() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (quantize_grad(x) * torch.tensor([float("nan"), 1.0])).sum().backward()
    assert x.grad is not None and x.grad.isnan().all()
