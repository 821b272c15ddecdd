"""Tests for qnnlib.recurrent: quantized ReLU RNN and LSTM (float path = torch, k-bit grids, STE, latent weights)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qnnlib.layers import LatentWeightLayer
from qnnlib.optim import clip_latent_weights, clip_parameters, glorot_param_groups, glorot_scale
from qnnlib.quantize import MAX_BITS, linear_levels
from qnnlib.recurrent import QuantLSTM, QuantRNN

D = torch.float64
I, H, T, B = 5, 6, 7, 3


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen(seed), dtype=D) * scale).requires_grad_()


def pair(kind: str, num_layers: int, **kw: object) -> tuple[nn.Module, nn.Module]:
    """A torch module and a float QuantRNN/QuantLSTM with the same weights (float64)."""
    torch.manual_seed(num_layers)
    if kind == "rnn":
        ref, mine = nn.RNN(I, H, num_layers, nonlinearity="relu", **kw), QuantRNN(I, H, num_layers, **kw)
    else:
        ref, mine = nn.LSTM(I, H, num_layers, **kw), QuantLSTM(I, H, num_layers, **kw)
    ref, mine = ref.double(), mine.double()
    mine.load_state_dict(ref.state_dict())
    return ref, mine


def on_grid(t: torch.Tensor, bits: int, lo: float, hi: float) -> bool:
    return bool(torch.isin(t.detach(), linear_levels(bits, lo, hi).to(t.dtype)).all())


# --------------------------------------------------------------------------------------------------
# Float path = torch
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize("bits", [None, 32])
def test_float_path_equals_torch(kind: str, num_layers: int, given_state: bool, bits: int | None) -> None:
    ref, mine = pair(kind, num_layers)
    if bits is not None:
        mine = (QuantRNN if kind == "rnn" else QuantLSTM)(I, H, num_layers, weight_bits=bits, act_bits=bits).double()
        mine.load_state_dict(ref.state_dict())
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in ref.named_parameters()]
    outs, grads = [], []
    for m in (ref, mine):
        x = randn(T, B, I, seed=1)
        state = None
        if given_state:
            h0 = randn(num_layers, B, H, seed=2, scale=0.5)
            state = h0 if kind == "rnn" else (h0, randn(num_layers, B, H, seed=3))
        out, st_n = m(x, state)
        st_n = (st_n,) if kind == "rnn" else st_n
        loss = (out * torch.linspace(-1, 1, H, dtype=D)).sum() + sum((s**2).sum() for s in st_n)
        inputs = [x] + ([h0] if given_state else []) + list(m.parameters())
        grads.append(torch.autograd.grad(loss, inputs))
        outs.append((out, *st_n))
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(grads[1], grads[0])


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_float_path_batch_first_unbatched_and_no_bias(kind: str) -> None:
    ref, mine = pair(kind, 2, batch_first=True, bias=False)
    assert mine.bias_ih_l0 is None and "bias_ih_l0" not in mine.state_dict()
    x = randn(B, T, I, seed=4)
    o_ref, s_ref = ref(x)
    o_mine, s_mine = mine(x)
    assert o_mine.shape == (B, T, H)
    torch.testing.assert_close((o_mine, s_mine), (o_ref, s_ref))
    # unbatched (T, F) input and (L, H) state, like torch
    ref, mine = pair(kind, 2)
    x = randn(T, I, seed=5)
    h0 = randn(2, H, seed=6)
    state = h0 if kind == "rnn" else (h0, randn(2, H, seed=7))
    o_ref, s_ref = ref(x, state)
    o_mine, s_mine = mine(x, state)
    assert o_mine.shape == (T, H)
    torch.testing.assert_close((o_mine, s_mine), (o_ref, s_ref))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_state_dict_loads_into_torch_and_shapes(kind: str) -> None:
    mine = QuantRNN(I, H, 3, weight_bits=2, act_bits=2) if kind == "rnn" else QuantLSTM(I, H, 3, weight_bits=2)
    ref = nn.RNN(I, H, 3, nonlinearity="relu") if kind == "rnn" else nn.LSTM(I, H, 3)
    ref.load_state_dict(mine.state_dict())
    assert {n: p.shape for n, p in mine.named_parameters()} == {n: p.shape for n, p in ref.named_parameters()}
    bound = H**-0.5  # torch's initialisation
    assert all(p.abs().max() <= bound for p in mine.parameters())
    assert "weight_bits=2" in repr(mine)


# --------------------------------------------------------------------------------------------------
# Quantized path
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_forward_uses_quantized_weights(kind: str, bits: int) -> None:
    """Quantized weights, float activations = torch's module loaded with Q(W)."""
    ref, _ = pair(kind, 2)
    cls = QuantRNN if kind == "rnn" else QuantLSTM
    mine = cls(I, H, 2, weight_bits=bits).double()
    with torch.no_grad():
        for p in mine.parameters():
            p.uniform_(-1.2, 1.2)  # beyond the clip range too: the quantizer saturates
    qw = mine.quantized_weights()
    assert set(qw) == {f"weight_{s}_l{k}" for k in (0, 1) for s in ("ih", "hh")}
    for w in qw.values():
        assert w.detach().unique().numel() <= 2**bits
        assert on_grid(w, bits, -1.0, 1.0)
        if bits == 1:
            assert set(w.detach().unique().tolist()) <= {-1.0, 1.0}
    sd = dict(mine.state_dict())
    sd.update({n: w.detach() for n, w in qw.items()})
    ref.load_state_dict(sd)
    x = randn(T, B, I, seed=8)
    torch.testing.assert_close(mine(x), ref(x))


def test_one_bit_weights_are_sign() -> None:
    m = QuantLSTM(I, H, weight_bits=1)
    with torch.no_grad():
        m.weight_hh_l0[0, 0] = 0.0  # sign(0) = +1
    w = m.quantized_weights()["weight_hh_l0"]
    assert torch.equal(w.detach(), torch.where(m.weight_hh_l0 >= 0, 1.0, -1.0))
    assert w[0, 0].item() == 1.0


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_hidden_states_on_the_grid(bits: int, num_layers: int) -> None:
    torch.manual_seed(20)
    m = QuantLSTM(I, H, num_layers, weight_bits=bits, act_bits=bits)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-1, 1)
    x = torch.randn(T, B, I, generator=gen(9)) * 2
    h0 = torch.rand(num_layers, B, H, generator=gen(10)) * 2 - 1  # off the grid: quantized on entry
    out, (h_n, c_n) = m(x, (h0, torch.randn(num_layers, B, H, generator=gen(11))))
    assert out.shape == (T, B, H) and h_n.shape == c_n.shape == (num_layers, B, H)
    assert on_grid(out, bits, -1.0, 1.0) and on_grid(h_n, bits, -1.0, 1.0)
    assert out.detach().unique().numel() <= 2**bits
    assert torch.equal(out[-1], h_n[-1])
    assert not on_grid(c_n, bits, -1.0, 1.0)  # the cell state stays in high precision


def test_lstm_quantized_gates_follow_the_documented_formula() -> None:
    """One step, h_0 = c_0 = 0, by hand: Q(σ) gates on the fractions j/2^k (j < 2^k), Q(tanh) on [−1, 1],
    h = Q(o·Q(tanh c))."""
    bits = 3
    m = QuantLSTM(I, H, weight_bits=bits, act_bits=bits).double()
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-1, 1)
    x = randn(1, B, I, seed=12, scale=0.5)
    out, (_, c) = m(x)
    c = c[0]
    qw = m.quantized_weights()
    a = x[0] @ qw["weight_ih_l0"].T + m.bias_ih_l0 + m.bias_hh_l0
    i, _f, g, o = a.chunk(4, 1)  # c_0 = 0: f does not matter
    levels01, levels11 = linear_levels(bits, 0.0, 1 - 2.0**-bits).to(D), linear_levels(bits, -1.0, 1.0).to(D)
    assert torch.equal(levels01 * 2**bits, torch.arange(2**bits, dtype=D))  # UQ0.k: j/2^k

    def q(t: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:  # nearest level (round half up)
        return levels[(t.detach().unsqueeze(-1) - levels).abs().argmin(-1)]

    qi, qg, qo = q(torch.sigmoid(i), levels01), q(torch.tanh(g), levels11), q(torch.sigmoid(o), levels01)
    torch.testing.assert_close(c, qi * qg)
    torch.testing.assert_close(out[0], q(qo * q(torch.tanh(qi * qg), levels11), levels11))


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("relu_max", [1.0, 2.5])
def test_rnn_hidden_states_on_the_grid(bits: int, relu_max: float) -> None:
    torch.manual_seed(19)
    m = QuantRNN(I, H, 2, weight_bits=bits, act_bits=bits, relu_max=relu_max)
    x = torch.randn(T, B, I, generator=gen(13)) * 3
    out, h_n = m(x, torch.rand(2, B, H, generator=gen(14)) * 4 - 1)
    assert on_grid(out, bits, 0.0, relu_max) and on_grid(h_n, bits, 0.0, relu_max)
    assert out.min() >= 0 and out.max() <= relu_max
    assert "relu_max" in repr(m)


def test_rnn_gradient_cancelled_outside_the_activation_range() -> None:
    """One step from h_0 = 0: ∂Σh/∂b = 1{0 ≤ pre ≤ relu_max}; ∂/∂x = that mask times Q(W_ih)."""
    m = QuantRNN(I, 40, weight_bits=2, act_bits=2, relu_max=1.0).double()
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-1, 1)
    x = randn(1, 1, I, seed=15)
    out, _ = m(x)
    out.sum().backward()
    w = m.quantized_weights()["weight_ih_l0"].detach()
    pre = (x[0] @ w.T + m.bias_ih_l0 + m.bias_hh_l0).detach()[0]
    mask = ((pre >= 0) & (pre <= 1)).to(D)
    assert 0 < mask.sum() < 40  # both cases occur
    torch.testing.assert_close(m.bias_ih_l0.grad, mask)
    torch.testing.assert_close(m.bias_hh_l0.grad, mask)
    torch.testing.assert_close(x.grad[0, 0], mask @ w)
    torch.testing.assert_close(m.weight_ih_l0.grad, mask[:, None] * x.detach()[0])  # weight STE: identity


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_gradients_flow_through_the_quantizers(kind: str) -> None:
    torch.manual_seed(18)
    m = (QuantRNN if kind == "rnn" else QuantLSTM)(I, H, 2, weight_bits=2, act_bits=2)
    x = torch.randn(T, B, I, generator=gen(16), requires_grad=True)
    out, _ = m(x)
    (out * torch.randn(out.shape, generator=gen(17))).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["rnn", "lstm"]),
    wbits=st.integers(1, 6),
    abits=st.integers(1, 6),
    scale=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**16),
)
def test_property_hidden_state_in_range_and_on_grid(kind: str, wbits: int, abits: int, scale: float,
                                                    seed: int) -> None:
    torch.manual_seed(seed)
    if kind == "rnn":
        m, lo, hi = QuantRNN(3, 4, 2, weight_bits=wbits, act_bits=abits, relu_max=1.5), 0.0, 1.5
    else:
        m, lo, hi = QuantLSTM(3, 4, 2, weight_bits=wbits, act_bits=abits), -1.0, 1.0
    x = torch.randn(4, 2, 3) * scale
    out, state = m(x)
    h_n = state if kind == "rnn" else state[0]
    for t in (out, h_n):
        assert t.min() >= lo and t.max() <= hi
        assert on_grid(t, abits, lo, hi)
    # re-quantizing a carried state changes nothing (truncated BPTT)
    out2, _ = m(x[1:], state)
    out3, _ = m(x[1:], state if kind == "rnn" else (h_n, state[1]))
    assert torch.equal(out2, out3)


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(1, MAX_BITS), seed=st.integers(0, 2**16))
def test_property_quantized_weights_at_most_2_pow_k_levels(bits: int, seed: int) -> None:
    torch.manual_seed(seed)
    m = QuantLSTM(3, 4, weight_bits=bits)
    with torch.no_grad():
        m.weight_ih_l0.uniform_(-2, 2)
    for w in m.quantized_weights().values():
        assert w.detach().unique().numel() <= 2**bits
        assert w.abs().max() <= 1
        assert on_grid(w, bits, -1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Latent weights and the optimizer helpers
# --------------------------------------------------------------------------------------------------
def test_latent_weights_glorot_and_clipping() -> None:
    model = nn.Sequential()
    model.add_module("lstm", QuantLSTM(10, 8, 2, weight_bits=2, act_bits=2))
    lstm = model.lstm
    assert isinstance(lstm, LatentWeightLayer)
    latent = [(lw.name, lw.fan_in, lw.fan_out) for lw in lstm.latent_weights()]
    assert latent == [("weight_ih_l0", 10, 8), ("weight_hh_l0", 8, 8), ("weight_ih_l1", 8, 8),
                      ("weight_hh_l1", 8, 8)]
    groups = glorot_param_groups(model, lr=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["lstm.weight_ih_l0"]["lr_scale"] == pytest.approx(glorot_scale(10, 8))
    assert by_name["lstm.weight_hh_l1"]["lr_scale"] == pytest.approx(glorot_scale(8, 8))
    assert len(by_name["unscaled"]["params"]) == 4  # the biases keep the base LR
    with torch.no_grad():
        for p in lstm.parameters():
            p.uniform_(-3, 3)
    assert clip_latent_weights(model) == 1
    for lw in lstm.latent_weights():
        assert lw.param.abs().max() <= 1
    assert lstm.bias_ih_l0.abs().max() > 1  # biases are not clipped
    assert clip_parameters(model, "latent", bound=0.5) == 1
    assert all(lw.param.abs().max() <= 0.5 for lw in lstm.latent_weights())
    # an optimizer step through the groups, then clipping: latent weights stay in [-1, 1]
    opt = torch.optim.SGD(glorot_param_groups(model, lr=10.0), lr=10.0)
    out, _ = lstm(torch.randn(3, 2, 10))
    out.sum().backward()
    opt.step()
    clip_latent_weights(model)
    assert all(lw.param.abs().max() <= 1 for lw in lstm.latent_weights())


def test_float_weights_have_no_latent_weights() -> None:
    m = QuantRNN(4, 3, weight_bits=None, act_bits=4)
    assert list(m.latent_weights()) == []
    with torch.no_grad():
        m.weight_ih_l0.fill_(3.0)
    assert clip_latent_weights(m) == 1 and m.weight_ih_l0.max() == 3.0  # nothing clipped


# --------------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [QuantRNN, QuantLSTM])
def test_bad_constructor_arguments(cls: type) -> None:
    for bits in (0, 17, 31, 33, -1, True, 2.0, "4"):
        with pytest.raises(ValueError, match="weight_bits"):
            cls(3, 4, weight_bits=bits)
        with pytest.raises(ValueError, match="act_bits"):
            cls(3, 4, act_bits=bits)
    with pytest.raises(ValueError, match="hidden_size"):
        cls(3, 0)
    with pytest.raises(TypeError, match="input_size"):
        cls(3.0, 4)
    with pytest.raises(ValueError, match="num_layers"):
        cls(3, 4, 0)
    with pytest.raises(TypeError, match="batch_first"):
        cls(3, 4, batch_first=1)


def test_bad_relu_max() -> None:
    for v in (0.0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="relu_max"):
            QuantRNN(3, 4, relu_max=v)


@pytest.mark.parametrize("cls", [QuantRNN, QuantLSTM])
def test_bad_inputs(cls: type) -> None:
    m = cls(3, 4, 2)
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(5, 2, 3, 1))
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(3))
    with pytest.raises(ValueError, match="input_size=3"):
        m(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="floating-point"):
        m(torch.ones(5, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        m(torch.randn(0, 2, 3))
    bad_h = torch.randn(1, 2, 4)  # num_layers is 2
    state = bad_h if cls is QuantRNN else (bad_h, torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"h_0 must have shape .*\(2, 2, 4\)"):
        m(torch.randn(5, 2, 3), state)
    if cls is QuantLSTM:
        with pytest.raises(ValueError, match="pair"):
            m(torch.randn(5, 2, 3), torch.zeros(2, 2, 4))
        with pytest.raises(ValueError, match="c_0"):
            m(torch.randn(5, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(2, 3, 4)))
    with pytest.raises(AttributeError, match="quantized_weights"):
        m.quantized_weight()


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_lstm_forget_gate_stays_below_one_so_the_cell_decays(bits: int) -> None:
    """A saturated forget gate rounds to 1 − 2^−k, not 1: with i = 0 the cell state decays instead of
    being kept forever over a long stream."""
    m = QuantLSTM(2, 3, weight_bits=bits, act_bits=bits).double()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        h = 3
        m.bias_ih_l0[h: 2 * h] = 50.0  # f = σ(50) ≈ 1
        m.bias_ih_l0[:h] = -50.0  # i = σ(−50) ≈ 0
    c0 = torch.ones(1, 1, 3, dtype=D)
    _, (_, c) = m(torch.zeros(10, 1, 2, dtype=D), (torch.zeros(1, 1, 3, dtype=D), c0))
    torch.testing.assert_close(c, c0 * (1 - 2.0**-bits) ** 10)
