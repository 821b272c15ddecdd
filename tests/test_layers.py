"""Tests for qnnlib.layers: binary / k-bit layers with latent weights, and the activation quantizer."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.layers import (
    BinaryConv2d,
    BinaryLinear,
    LatentWeight,
    LatentWeightLayer,
    QuantAct,
    QuantConv2d,
    QuantLinear,
    quantize_weight,
    weight_fans,
)
from qnnlib.quantize import MAX_BITS, linear_levels, linear_quant, sign

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _float_twin(layer: nn.Module, ref: nn.Module, qweight: torch.Tensor) -> nn.Module:
    """The float layer ``ref`` with weight = the quantized weight and the same bias."""
    with torch.no_grad():
        ref.weight.copy_(qweight)
        if layer.bias is not None:
            ref.bias.copy_(layer.bias)
    return ref


# --------------------------------------------------------------------------------------------------
# BinaryLinear
# --------------------------------------------------------------------------------------------------
def test_binary_linear_is_a_drop_in_linear() -> None:
    layer = BinaryLinear(5, 3)
    assert isinstance(layer, nn.Linear) and isinstance(layer, LatentWeightLayer)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (3,)
    assert layer.weight_bits == 1 and layer.clip_value == 1.0
    # latent weights initialised in [-1, 1], biases zero
    assert layer.weight.abs().max() <= 1 and torch.all(layer.bias == 0)
    nobias = BinaryLinear(5, 3, bias=False)
    assert nobias.bias is None
    d = BinaryLinear(5, 3, True, None, torch.float64)  # nn.Linear's positional order
    assert d.weight.dtype == torch.float64
    # same state_dict keys as nn.Linear: loadable both ways
    lin = nn.Linear(5, 3)
    lin.load_state_dict(layer.state_dict())
    layer.load_state_dict(lin.state_dict())
    assert "weight_bits=1" in repr(layer)


def test_binary_linear_forward_uses_sign_of_latent_weights() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear(7, 4)
    with torch.no_grad():
        layer.weight[0, 0] = 0.0  # sign(0) = +1
        layer.bias.normal_()
    w_before = layer.weight.detach().clone()
    x = torch.randn(6, 7, generator=gen(1))
    y = layer(x)
    assert torch.allclose(y, F.linear(x, sign(w_before), layer.bias), atol=1e-6)
    assert torch.equal(layer.quantized_weight().detach(), sign(w_before))
    assert layer.quantized_weight()[0, 0].item() == 1.0
    assert torch.equal(layer.weight.detach(), w_before)  # latent weights stay real and untouched


@pytest.mark.parametrize("bias", [True, False])
def test_binary_linear_grads_equal_float_linear_at_sign_w(bias: bool) -> None:
    torch.manual_seed(1)
    layer = BinaryLinear(9, 5, bias=bias).double()
    with torch.no_grad():
        layer.weight.mul_(1.5)  # some latent weights beyond ±1: the weight STE does not cancel them
        if bias:
            layer.bias.normal_()
    ref = _float_twin(layer, nn.Linear(9, 5, bias=bias).double(), sign(layer.weight.detach()))
    x = torch.randn(8, 9, generator=gen(2), dtype=torch.float64)
    g = torch.randn(8, 5, generator=gen(3), dtype=torch.float64)
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yr = layer(xa), ref(xr)
    assert torch.allclose(ya, yr)
    ya.backward(g)
    yr.backward(g)
    # the gradient w.r.t. W_b reaches the latent W unchanged (Alg. 1), also where |W| > 1
    assert torch.allclose(layer.weight.grad, ref.weight.grad)
    assert torch.allclose(layer.weight.grad, g.T @ x)
    assert torch.allclose(xa.grad, xr.grad)
    assert torch.allclose(xa.grad, g @ sign(layer.weight.detach()))
    if bias:
        assert torch.allclose(layer.bias.grad, ref.bias.grad)


# --------------------------------------------------------------------------------------------------
# BinaryConv2d
# --------------------------------------------------------------------------------------------------
CONV_CASES = [
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"),
]


@pytest.mark.parametrize("kw", CONV_CASES)
def test_binary_conv2d_forward_and_grads_equal_float_conv_at_sign_w(kw: dict) -> None:
    torch.manual_seed(2)
    layer = BinaryConv2d(**kw).double()
    assert isinstance(layer, nn.Conv2d) and layer.weight_bits == 1
    assert layer.weight.abs().max() <= 1
    with torch.no_grad():
        layer.weight.mul_(1.5)
        if layer.bias is not None:
            layer.bias.normal_()
    ref = _float_twin(layer, nn.Conv2d(**kw).double(), sign(layer.weight.detach()))
    x = torch.randn(2, kw["in_channels"], 9, 8, generator=gen(4), dtype=torch.float64)
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yr = layer(xa), ref(xr)
    assert ya.shape == yr.shape and torch.allclose(ya, yr)
    g = torch.randn(ya.shape, generator=gen(5), dtype=torch.float64)
    ya.backward(g)
    yr.backward(g)
    assert torch.allclose(layer.weight.grad, ref.weight.grad)
    assert torch.allclose(xa.grad, xr.grad)
    if layer.bias is not None:
        assert torch.allclose(layer.bias.grad, ref.bias.grad)
    conv = nn.Conv2d(**kw)
    conv.load_state_dict(layer.state_dict())  # drop-in: same parameters and keys


def test_binary_conv2d_positional_args_and_weight_bits_rejected() -> None:
    layer = BinaryConv2d(3, 4, 3, 1, 1)  # nn.Conv2d's positional order
    assert layer.weight.shape == (4, 3, 3, 3) and layer.padding == (1, 1)
    assert layer(torch.randn(1, 3, 5, 5)).shape == (1, 4, 5, 5)
    with pytest.raises(ValueError, match="weight_bits"):
        BinaryConv2d(3, 4, 3, weight_bits=2)


# --------------------------------------------------------------------------------------------------
# k-bit weights
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_quant_linear_k_bit_weights(bits: int) -> None:
    torch.manual_seed(3)
    layer = QuantLinear(6, 4, weight_bits=bits).double()
    assert layer.weight_bits == bits and f"weight_bits={bits}" in repr(layer)
    with torch.no_grad():
        layer.weight.mul_(1.3)
    wq = layer.quantized_weight().detach()
    assert torch.equal(wq, linear_quant(layer.weight.detach(), bits))
    assert torch.isin(wq, linear_levels(bits)).all()
    ref = _float_twin(layer, nn.Linear(6, 4).double(), wq)
    x = torch.randn(5, 6, generator=gen(6), dtype=torch.float64)
    g = torch.randn(5, 4, generator=gen(7), dtype=torch.float64)
    ya, yr = layer(x), ref(x)
    assert torch.allclose(ya, yr)
    ya.backward(g)
    yr.backward(g)
    assert torch.allclose(layer.weight.grad, ref.weight.grad)  # straight through, no cancellation


@pytest.mark.parametrize("bits", [1, 2])
def test_quant_conv2d_k_bit_weights(bits: int) -> None:
    torch.manual_seed(4)
    layer = QuantConv2d(3, 5, 3, padding=1, weight_bits=bits).double()
    wq = layer.quantized_weight().detach()
    assert torch.isin(wq, linear_levels(bits)).all()
    ref = _float_twin(layer, nn.Conv2d(3, 5, 3, padding=1).double(), wq)
    x = torch.randn(2, 3, 6, 6, generator=gen(8), dtype=torch.float64)
    ya, yr = layer(x), ref(x)
    assert torch.allclose(ya, yr)
    ya.sum().backward()
    yr.sum().backward()
    assert torch.allclose(layer.weight.grad, ref.weight.grad)


def test_quant_linear_one_bit_equals_binary_linear() -> None:
    torch.manual_seed(5)
    a = QuantLinear(4, 3, weight_bits=1)
    b = BinaryLinear(4, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4)
    assert torch.equal(a(x), b(x))
    assert torch.equal(quantize_weight(a.weight, 1), sign(a.weight.detach()))


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, True, "2"])
def test_quant_layers_reject_bad_weight_bits(bad: object) -> None:
    with pytest.raises(ValueError, match="weight_bits"):
        QuantLinear(3, 2, weight_bits=bad)
    with pytest.raises(ValueError, match="weight_bits"):
        QuantConv2d(3, 2, 3, weight_bits=bad)


def test_training_step_changes_latent_not_binary_shape() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(BinaryLinear(8, 16), QuantAct(), BinaryLinear(16, 2))
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    w0 = model[0].weight.detach().clone()
    F.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():  # plain SGD step (torch.optim's first step imports torch._dynamo: ~2 s)
        for p in model.parameters():
            p -= 0.1 * p.grad
    assert not torch.equal(model[0].weight.detach(), w0)


# --------------------------------------------------------------------------------------------------
# Latent weight tensors: the single-weight default and a layer with two (LSTM-like gates)
# --------------------------------------------------------------------------------------------------
def test_latent_weights_default_is_the_one_weight_with_linear_conv_fans() -> None:
    lin = QuantLinear(7, 3, weight_bits=2)
    assert list(lin.latent_weights()) == [LatentWeight("weight", lin.weight, 7, 3)]
    conv = BinaryConv2d(4, 8, (3, 2), groups=2)
    name, param, fan_in, fan_out = next(conv.latent_weights())
    assert (name, param, fan_in, fan_out) == ("weight", conv.weight, 6 * 2, 6 * 8)
    assert weight_fans(nn.Conv2d(3, 5, 3)) == (27, 45) and weight_fans(nn.Linear(2, 9)) == (2, 9)
    with pytest.raises(ValueError, match="Linear or Conv"):
        weight_fans(nn.BatchNorm1d(3))


def test_latent_init_draws_exactly_as_before() -> None:
    # U(-1, 1) on the weight, bias zero, nothing else drawn: the random stream of today's layers
    torch.manual_seed(3)
    lin, conv = QuantLinear(5, 4), BinaryConv2d(2, 3, 3)
    after = torch.rand(1)
    torch.manual_seed(3)
    w_lin = torch.empty(4, 5).uniform_(-1, 1)
    w_conv = torch.empty(3, 2, 3, 3).uniform_(-1, 1)
    assert torch.equal(lin.weight.detach(), w_lin) and torch.equal(conv.weight.detach(), w_conv)
    assert torch.equal(torch.rand(1), after)
    assert torch.all(lin.bias == 0) and torch.all(conv.bias == 0)


class TwoGate(LatentWeightLayer, nn.Module):
    """LSTM-like gates ``z = Q(W_ih) x + Q(W_hh) h + b``: two latent tensors, Glorot fans per gate."""

    def __init__(self, i: int, h: int, weight_bits: int = 1) -> None:
        super().__init__()
        self.i, self.h, self.weight_bits = i, h, weight_bits
        self.weight_ih = nn.Parameter(torch.empty(4 * h, i))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, h))
        self.bias = nn.Parameter(torch.full((4 * h,), 5.0))
        self.reset_parameters()

    def latent_weights(self):  # noqa: ANN201
        yield LatentWeight("weight_ih", self.weight_ih, self.i, self.h)
        yield LatentWeight("weight_hh", self.weight_hh, self.h, self.h)

    def forward(self, x: torch.Tensor, hx: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantize(self.weight_ih), self.bias) + F.linear(hx, self.quantize(self.weight_hh))


@pytest.mark.parametrize("bits", [1, 2])
def test_multi_weight_layer_init_forward_and_straight_through_grads(bits: int) -> None:
    torch.manual_seed(4)
    layer = TwoGate(6, 3, weight_bits=bits).double()
    torch.manual_seed(4)
    w_ih, w_hh = torch.empty(12, 6).uniform_(-1, 1), torch.empty(12, 3).uniform_(-1, 1)  # drawn in listed order
    assert torch.equal(layer.weight_ih.detach().float(), w_ih) and torch.equal(layer.weight_hh.detach().float(), w_hh)
    assert torch.all(layer.bias == 0)  # biases zeroed by the mix-in
    assert [(lw.name, lw.fan_in, lw.fan_out) for lw in layer.latent_weights()] == [("weight_ih", 6, 3),
                                                                                  ("weight_hh", 3, 3)]
    assert repr(layer) == f"TwoGate(weight_bits={bits})"
    with torch.no_grad():
        layer.weight_hh.mul_(1.7)  # beyond ±1: straight through, no cancellation
    x = torch.randn(5, 6, generator=gen(0), dtype=torch.float64)
    hx = torch.randn(5, 3, generator=gen(1), dtype=torch.float64)
    g = torch.randn(5, 12, generator=gen(2), dtype=torch.float64)
    qi, qh = quantize_weight(layer.weight_ih, bits).detach(), quantize_weight(layer.weight_hh, bits).detach()
    y = layer(x, hx)
    assert torch.allclose(y, x @ qi.T + hx @ qh.T)
    y.backward(g)
    assert torch.allclose(layer.weight_ih.grad, g.T @ x) and torch.allclose(layer.weight_hh.grad, g.T @ hx)


# --------------------------------------------------------------------------------------------------
# QuantAct
# --------------------------------------------------------------------------------------------------
def test_quant_act_binary_deterministic_forward_and_htanh_grad() -> None:
    act = QuantAct()
    assert act.bits == 1 and not act.stochastic
    x = torch.tensor([-2.0, -1.0, -0.4, 0.0, 0.4, 1.0, 2.0], requires_grad=True)
    y = act(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.backward(torch.ones(7))
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]
    # = sign(hardtanh(x)) with the gradient of hardtanh (= clamp) in the backward pass
    xr = x.detach().clone().requires_grad_()
    xr.clamp(-1, 1).backward(torch.ones(7))
    assert torch.equal(x.grad, xr.grad)
    assert torch.equal(y, sign(F.hardtanh(x.detach())))


def test_quant_act_stochastic_only_in_training_mode() -> None:
    x = torch.linspace(-0.9, 0.9, 500)
    act = QuantAct(stochastic=True, generator=torch.Generator().manual_seed(0))
    act.train()
    y = act(x)
    assert set(y.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(y, sign(x))  # some draws disagree with the sign
    act.eval()
    assert torch.equal(act(x), sign(x))
    assert "stochastic=True" in repr(act)


def test_quant_act_stochastic_reproducible_with_generator() -> None:
    x = torch.linspace(-1, 1, 300)
    a = QuantAct(stochastic=True, generator=torch.Generator().manual_seed(11))(x)
    b = QuantAct(stochastic=True, generator=torch.Generator().manual_seed(11))(x)
    assert torch.equal(a, b)
    ya = QuantAct(bits=2, stochastic=True, generator=torch.Generator().manual_seed(11))(x)
    yb = QuantAct(bits=2, stochastic=True, generator=torch.Generator().manual_seed(11))(x)
    assert torch.equal(ya, yb)


def test_quant_act_stochastic_mean() -> None:
    x = torch.full((40_000,), 0.4)
    y = QuantAct(stochastic=True, generator=torch.Generator().manual_seed(2))(x)
    assert y.mean().item() == pytest.approx(0.4, abs=0.025)


@pytest.mark.parametrize("bits", [2, 3])
def test_quant_act_k_bit_levels_and_grad(bits: int) -> None:
    x = torch.linspace(-1.5, 1.5, 61, requires_grad=True)
    act = QuantAct(bits=bits)
    y = act(x)
    assert torch.isin(y, linear_levels(bits).float()).all()
    assert torch.equal(y, linear_quant(x.detach(), bits))
    y.sum().backward()
    assert torch.equal(x.grad, ((x.detach() >= -1) & (x.detach() <= 1)).float())
    assert "range=[-1, 1]" in repr(act)


def test_quant_act_two_bit_level_set_and_unsigned_variant() -> None:
    x = torch.tensor([-1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0])
    third = 1 / 3
    assert torch.allclose(QuantAct(bits=2)(x), torch.tensor([-1, -third, -third, third, third, third, 1.0]))
    u = QuantAct(bits=2, min_v=0.0, max_v=1.0)
    xu = torch.tensor([-0.5, 0.0, 0.1, 0.2, 0.5, 0.9, 2.0], requires_grad=True)
    yu = u(xu)
    assert torch.allclose(yu, torch.tensor([0.0, 0.0, 0.0, third, 2 * third, 1.0, 1.0]))
    yu.sum().backward()
    assert xu.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        (dict(bits=0), "bits"),
        (dict(bits=1.0), "bits"),
        (dict(bits=2, min_v=1.0, max_v=1.0), "min_v"),
        (dict(bits=2, min_v=1.0, max_v=0.0), "min_v"),
        (dict(bits=1, min_v=0.0, max_v=1.0), "min_v"),
    ],
)
def test_quant_act_bad_arguments(kwargs: dict, arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        QuantAct(**kwargs)


def test_quant_act_rejects_integer_input() -> None:
    with pytest.raises(ValueError, match=r"\bx\b"):
        QuantAct()(torch.zeros(3, dtype=torch.int32))


def test_layers_deepcopy_and_float64() -> None:
    m = nn.Sequential(BinaryConv2d(1, 2, 3), QuantAct(bits=2), nn.Flatten(), QuantLinear(2 * 3 * 3, 3, weight_bits=2))
    m2 = copy.deepcopy(m).double()
    y = m2(torch.randn(2, 1, 5, 5, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (2, 3)


# --------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# --------------------------------------------------------------------------------------------------
@CUDA
@pytest.mark.gpu
def test_layers_cuda_match_cpu() -> None:
    torch.manual_seed(7)
    cpu = nn.Sequential(BinaryConv2d(3, 4, 3, padding=1), nn.Flatten(), QuantAct(), BinaryLinear(4 * 6 * 6, 5))
    cuda = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, 3, 6, 6)
    yc, yg = cpu(x), cuda(x.cuda())
    assert torch.allclose(yc, yg.cpu(), atol=1e-4)
    yc.sum().backward()
    yg.sum().backward()
    for pc, pg in zip(cpu.parameters(), cuda.parameters()):
        assert torch.allclose(pc.grad, pg.grad.cpu(), atol=1e-4)


@CUDA
@pytest.mark.gpu
def test_quant_act_cuda_stochastic_with_cuda_generator() -> None:
    x = torch.linspace(-1, 1, 1000, device="cuda")
    a = QuantAct(stochastic=True, generator=torch.Generator(device="cuda").manual_seed(0))(x)
    b = QuantAct(stochastic=True, generator=torch.Generator(device="cuda").manual_seed(0))(x)
    assert a.device.type == "cuda" and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {-1.0, 1.0}
    y = QuantAct(bits=2)(x)
    assert torch.isin(y.cpu(), linear_levels(2).float()).all()


# --------------------------------------------------------------------------------------------------
# Issue 10 rows 10 and 12: bounds checked where the layer is built; NaN propagates
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [MAX_BITS + 1, 33, 1000])
def test_bits_above_max_bits_raise_at_construction(bits: int) -> None:
    msg = r"must be an integer in \[1, 16\] \(maximum: qnnlib\.quantize\.MAX_BITS, docs/decisions\.md D22\)"
    with pytest.raises(ValueError, match=rf"^weight_bits {msg}"):
        QuantLinear(3, 2, weight_bits=bits)
    with pytest.raises(ValueError, match=rf"^weight_bits {msg}"):
        QuantConv2d(3, 2, 3, weight_bits=bits)
    with pytest.raises(ValueError, match=rf"^bits {msg}"):
        QuantAct(bits)
    with pytest.raises(ValueError, match=rf"^bits {msg}"):
        quantize_weight(torch.zeros(3), bits)
    assert QuantLinear(3, 2, weight_bits=MAX_BITS).weight_bits == MAX_BITS


def test_quantize_weight_rejects_bool_bits() -> None:
    # True == 1 used to select sign_ste silently
    with pytest.raises(ValueError, match=r"^bits must be an integer"):
        quantize_weight(torch.zeros(3), True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arg", "call"),
    [
        ("in_features", lambda: QuantLinear(0, 2)),
        ("out_features", lambda: BinaryLinear(2, -1)),
        ("in_features", lambda: QuantLinear(2.5, 2)),  # type: ignore[arg-type]
        ("in_features", lambda: QuantLinear(True, 2)),  # type: ignore[arg-type]
        ("in_channels", lambda: QuantConv2d(0, 2, 3)),
        ("out_channels", lambda: BinaryConv2d(1, "2", 3)),
        ("kernel_size", lambda: QuantConv2d(1, 2, 0)),
        ("kernel_size", lambda: BinaryConv2d(1, 2, (3, 1.5))),
        ("kernel_size", lambda: BinaryConv2d(1, 2, (3, 3, 3))),
        ("min_v", lambda: QuantAct(2, min_v=float("nan"))),
        ("max_v", lambda: QuantAct(2, max_v="1")),  # type: ignore[arg-type]
    ],
)
def test_sizes_checked_at_construction(arg: str, call) -> None:  # noqa: ANN001
    with pytest.raises((ValueError, TypeError), match=rf"^{arg} must be"):
        call()


def test_conv_keyword_and_positional_arguments_still_work() -> None:
    c = QuantConv2d(in_channels=1, out_channels=2, kernel_size=(3, 1), padding=1, bias=False, weight_bits=2)
    assert c.kernel_size == (3, 1) and c.padding == (1, 1) and c.bias is None
    assert BinaryConv2d(1, 2, 3, 1, 1).padding == (1, 1)


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("stochastic", [False, True])
def test_quant_act_and_layers_propagate_nan(bits: int, stochastic: bool) -> None:
    act = QuantAct(bits, stochastic, generator=gen()).train()
    x = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.5], requires_grad=True)
    y = act(x)
    assert y.isnan().tolist() == [True, False, False, False]
    assert y[1].item() == 1.0 and y[2].item() == -1.0
    y.sum().backward()  # STE at NaN: no crash
    layer = QuantLinear(4, 3, weight_bits=bits)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    out = layer(torch.ones(1, 4))
    assert out.isnan().tolist() == [[True, False, False]]  # the NaN weight shows, it is not a silent +1


def test_quantact_relaxed_hardtanh_boundaries() -> None:
    act = QuantAct(1, min_v=-2.0, max_v=2.0)
    x = torch.tensor([-2.5, -1.5, 0.3, 1.9, 2.1], requires_grad=True)
    y = act(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert "range=[-2, 2]" in repr(act) and "range" not in repr(QuantAct(1))
    with pytest.raises(ValueError, match="symmetric"):
        QuantAct(1, min_v=-1.0, max_v=2.0)
    two = QuantAct(2, min_v=-2.0, max_v=2.0)
    assert sorted(set(two(torch.linspace(-3, 3, 61)).tolist())) == pytest.approx([-2.0, -2 / 3, 2 / 3, 2.0])
