"""Tests for qnnlib.optim: shift-based AdaMax (Alg. 2), Glorot LR scaling, latent-weight clipping."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from qnnlib.layers import BinaryConv2d, BinaryLinear, LatentWeight, LatentWeightLayer, QuantLinear
from qnnlib.norm import ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.optim import (
    LasagneAdam,
    ShiftAdaMax,
    clip_latent_weights,
    clip_parameters,
    glorot_lr_scale,
    glorot_param_groups,
    glorot_scale,
)
from qnnlib.quantize import ap2
from tests import authors_rules as ar


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pow2_grad(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    e = torch.randint(-12, 6, shape, generator=g).double()
    s = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()
    return s * torch.exp2(e)


# --------------------------------------------------------------------------------------------------
# ShiftAdaMax
# --------------------------------------------------------------------------------------------------
def test_shift_adamax_defaults_are_the_papers() -> None:
    opt = ShiftAdaMax([nn.Parameter(torch.zeros(2))])
    d = opt.defaults
    assert d["lr"] == 2.0**-10 and d["betas"] == (1 - 2.0**-3, 1 - 2.0**-10) and d["eps"] == 2.0**-27


@pytest.mark.parametrize("lr", [2.0**-10, 2.0**-6, 2.0**-3])
def test_shift_adamax_first_step_is_lr_sign_g(lr: float) -> None:
    g = gen(0)
    p0 = torch.randn(50, generator=g, dtype=torch.float64)
    p = nn.Parameter(p0.clone())
    p.grad = _pow2_grad((50,), g)
    ShiftAdaMax([p], lr=lr).step()
    # m_1 = 2^-3 g, v_1 = |g|, step AP2(lr / 2^-3): the update is exactly lr · sign(g)
    assert torch.equal(p.detach(), p0 - lr * torch.sign(p.grad))


def test_shift_adamax_first_step_zero_grad_does_not_move() -> None:
    p = nn.Parameter(torch.tensor([0.5, -0.25, 0.0]))
    p.grad = torch.tensor([0.0, 2.0, 0.0])
    ShiftAdaMax([p]).step()
    assert p.tolist() == [0.5, -0.25 - 2.0**-10, 0.0]


def _reference_steps(p0: torch.Tensor, grads: list[torch.Tensor], lr: float, b1: float, b2: float, eps: float):
    """Alg. 2 written out: θ ← θ − AP2(α/(1−β1^t)) · m_t · AP2(1/(v_t + ε))."""
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = torch.maximum(b2 * v, g.abs())
        step = 2.0 ** round(math.log2(lr / (1 - b1**t)))
        p = p - step * m * ap2(1 / (v + eps))
    return p, m, v


@pytest.mark.parametrize(("lr", "betas"), [(2.0**-10, (1 - 2.0**-3, 1 - 2.0**-10)), (0.003, (0.9, 0.999))])
def test_shift_adamax_matches_alg2_reference(lr: float, betas: tuple[float, float]) -> None:
    g = gen(1)
    p0 = torch.randn(4, 5, generator=g, dtype=torch.float64)
    grads = [torch.randn(4, 5, generator=g, dtype=torch.float64) * 10.0 ** (k % 3 - 1) for k in range(12)]
    p = nn.Parameter(p0.clone())
    opt = ShiftAdaMax([p], lr=lr, betas=betas)
    for gr in grads:
        p.grad = gr.clone()
        opt.step()
    ref, m, v = _reference_steps(p0, grads, lr, *betas, 2.0**-27)
    assert torch.allclose(p.detach(), ref, rtol=0, atol=1e-14)
    st = opt.state[p]
    assert st["step"] == 12 and torch.allclose(st["exp_avg"], m) and torch.allclose(st["exp_inf"], v)


def test_shift_adamax_step_multipliers_are_powers_of_two() -> None:
    # every multiplication by a step size is a shift: with a power-of-two g and m, the update is m·2^k
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ShiftAdaMax([p], lr=0.001)  # AP2(0.001 / 0.125) = 2^-7
    p.grad = torch.tensor([3.0], dtype=torch.float64)
    opt.step()
    m = 0.125 * 3.0
    assert p.item() == -(2.0**-7) * m * 2.0**-2  # AP2(1/3) = 2^-2


def test_shift_adamax_skips_params_without_grad_and_closure() -> None:
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    a.grad = torch.ones(2)
    opt = ShiftAdaMax([a, b])
    calls = []

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        return torch.tensor(1.5)

    assert opt.step(closure).item() == 1.5 and calls == [True]
    assert torch.equal(b.detach(), torch.ones(2)) and len(opt.state[b]) == 0
    assert torch.all(a.detach() < 1)


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        clip_latent_weights(model)


def test_shift_adamax_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    g = gen(2)
    model = nn.Sequential(BinaryLinear(6, 8), ShiftBatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
    batches = [(torch.randn(16, 6, generator=g), torch.randn(16, 2, generator=g)) for _ in range(10)]
    start = copy.deepcopy(model.state_dict())

    # uninterrupted: 10 steps
    opt = ShiftAdaMax(glorot_param_groups(model, 2.0**-7, round_pow2=True))
    _train(model, opt, batches)
    final = copy.deepcopy(model.state_dict())

    # interrupted after 4 steps: save model + optimizer through bytes, load into fresh objects, continue
    torch.manual_seed(0)
    m1 = nn.Sequential(BinaryLinear(6, 8), ShiftBatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
    m1.load_state_dict(start)
    o1 = ShiftAdaMax(glorot_param_groups(m1, 2.0**-7, round_pow2=True))
    _train(m1, o1, batches[:4])
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": o1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    m2 = nn.Sequential(BinaryLinear(6, 8), ShiftBatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
    m2.load_state_dict(ckpt["model"])
    o2 = ShiftAdaMax(glorot_param_groups(m2, 2.0**-7, round_pow2=True))
    o2.load_state_dict(ckpt["opt"])
    assert all(o2.state[p]["step"] == 4 for p in m2.parameters())
    _train(m2, o2, batches[4:])
    for k, v in final.items():
        assert torch.equal(m2.state_dict()[k], v), k


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"betas": (1.0, 0.5)}, "betas"),
        ({"betas": (0.5, -0.1)}, "betas"),
        ({"betas": (0.5,)}, "betas"),
        ({"eps": 0.0}, "eps"),
    ],
)
def test_shift_adamax_bad_arguments(kwargs: dict, arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        ShiftAdaMax([nn.Parameter(torch.zeros(1))], **kwargs)


def test_shift_adamax_rejects_sparse_gradients() -> None:
    emb = nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        ShiftAdaMax(emb.parameters()).step()


# --------------------------------------------------------------------------------------------------
# Glorot LR scale
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (nn.Linear(784, 4096), 57.0),
        (BinaryLinear(784, 4096), 57.0),
        (BinaryLinear(4096, 4096), 73.9),
        (BinaryLinear(4096, 10), 52.3),
        (BinaryConv2d(3, 128, 3, padding=1), 28.0),
        (nn.Conv2d(3, 128, 3), 28.0),
    ],
)
def test_glorot_lr_scale_paper_values(module: nn.Module, expected: float) -> None:
    assert glorot_lr_scale(module) == pytest.approx(expected, abs=0.05)


def test_glorot_lr_scale_formula_and_conv_fans() -> None:
    assert glorot_lr_scale(nn.Linear(10, 20)) == pytest.approx(1 / math.sqrt(1.5 / 30))
    # conv: fan_in = k²·C_in, fan_out = k²·C_out
    assert glorot_lr_scale(nn.Conv2d(128, 256, 3)) == pytest.approx(1 / math.sqrt(1.5 / (9 * 128 + 9 * 256)))
    assert glorot_lr_scale(nn.Conv2d(4, 6, (3, 5))) == pytest.approx(1 / math.sqrt(1.5 / (15 * 4 + 15 * 6)))
    assert glorot_lr_scale(nn.Conv2d(4, 8, 3, groups=2)) == pytest.approx(1 / math.sqrt(1.5 / (9 * 2 + 9 * 8)))
    with pytest.raises(ValueError, match="BatchNorm1d"):
        glorot_lr_scale(nn.BatchNorm1d(3))


def _cifar_like() -> nn.Sequential:
    return nn.Sequential(
        BinaryConv2d(3, 8, 3, padding=1, bias=False),
        ShiftBatchNorm2d(8),
        nn.Flatten(),
        QuantLinear(8 * 4 * 4, 16, weight_bits=2),
        nn.BatchNorm1d(16),
        nn.Linear(16, 10),
    )


def test_glorot_param_groups_scale_weights_only() -> None:
    model = _cifar_like()
    lr = 0.01
    groups = glorot_param_groups(model, lr)
    by_name = {gr["name"]: gr for gr in groups}
    assert set(by_name) == {"0.weight", "3.weight", "unscaled"}
    for name, mod in [("0.weight", model[0]), ("3.weight", model[3])]:
        gr = by_name[name]
        assert gr["params"] == [mod.weight]
        assert gr["lr_scale"] == pytest.approx(glorot_lr_scale(mod)) and gr["lr"] == pytest.approx(lr * gr["lr_scale"])
    rest = by_name["unscaled"]
    assert rest["lr"] == lr and rest["lr_scale"] == 1.0
    ids = {id(p) for p in rest["params"]}
    for p in [model[1].weight, model[1].bias, model[3].bias, model[4].weight, model[4].bias, model[5].weight]:
        assert id(p) in ids  # BN, biases and the float layer keep the base LR
    all_ids = [id(p) for gr in groups for p in gr["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    ShiftAdaMax(groups)
    torch.optim.Adam(glorot_param_groups(model, lr))


def test_glorot_param_groups_options() -> None:
    model = _cifar_like()
    groups = glorot_param_groups(model, 1.0, round_pow2=True)
    for gr in groups:
        assert math.log2(gr["lr_scale"]) == round(math.log2(gr["lr_scale"]))
    g0 = next(gr for gr in groups if gr["name"] == "0.weight")
    assert g0["lr_scale"] == 2.0 ** round(math.log2(glorot_lr_scale(model[0])))
    inc = {gr["name"]: gr for gr in glorot_param_groups(model, 1.0, include_float_layers=True)}
    assert inc["5.weight"]["lr_scale"] == pytest.approx(glorot_lr_scale(model[5]))
    only_float = glorot_param_groups(nn.Sequential(nn.Linear(3, 2)), 0.5)
    assert len(only_float) == 1 and only_float[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="lr"):
        glorot_param_groups(model, 0.0)


def test_glorot_scaled_group_moves_weights_by_scaled_step() -> None:
    layer = BinaryLinear(784, 4096, bias=False)
    w0 = layer.weight.detach().clone()
    layer.weight.grad = torch.ones_like(layer.weight)
    ShiftAdaMax(glorot_param_groups(layer, 2.0**-10)).step()
    # first step: AP2(γ·lr / 2^-3) · 2^-3 = AP2(57.0)·2^-10 = 2^6 · 2^-10
    assert torch.allclose(w0 - layer.weight.detach(), torch.full_like(w0, 2.0**-4))


# --------------------------------------------------------------------------------------------------
# Clipping
# --------------------------------------------------------------------------------------------------
def test_clip_latent_weights() -> None:
    model = nn.Sequential(BinaryLinear(3, 4), nn.Linear(4, 4), BinaryConv2d(1, 2, 3), ShiftBatchNorm1d(4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-3, 3, p.numel()).view_as(p))
    float_before = model[1].weight.detach().clone()
    bias_before = model[0].bias.detach().clone()
    assert clip_latent_weights(model) == 2
    for i in (0, 2):
        w = model[i].weight.detach()
        assert w.min().item() == -1.0 and w.max().item() == 1.0
    ref = torch.linspace(-3, 3, 12).clamp(-1, 1).view(4, 3)
    assert torch.equal(model[0].weight.detach(), ref)  # values inside [-1, 1] are unchanged
    assert torch.equal(model[1].weight.detach(), float_before)  # float layer untouched
    assert torch.equal(model[0].bias.detach(), bias_before)  # biases untouched
    assert model[3].weight.detach().abs().max().item() == 3.0  # BN untouched
    clip_latent_weights(model, bound=0.5)
    assert model[2].weight.detach().abs().max().item() == 0.5
    model[0].clip_value = 0.25
    clip_latent_weights(model)
    assert model[0].weight.detach().abs().max().item() == 0.25
    assert model[0].weight.grad is None  # no autograd history created


# --------------------------------------------------------------------------------------------------
# Layers with several latent weight tensors (an LSTM-like gate layer)
# --------------------------------------------------------------------------------------------------
class GateLayer(LatentWeightLayer, nn.Module):
    """LSTM-like gates: ``z = W_ih^b x + b_ih + W_hh^b h`` with ``W_ih`` (4H, I) and ``W_hh`` (4H, H).

    Two latent tensors; Glorot fans per gate (four H-output layers stacked): (I, H) and (H, H).
    """

    def __init__(self, input_size: int, hidden_size: int, weight_bits: int = 1) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.weight_bits = input_size, hidden_size, weight_bits
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def latent_weights(self):
        yield LatentWeight("weight_ih", self.weight_ih, self.input_size, self.hidden_size)
        yield LatentWeight("weight_hh", self.weight_hh, self.hidden_size, self.hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.quantize(self.weight_ih), self.bias_ih) + \
            nn.functional.linear(h, self.quantize(self.weight_hh))


class GateNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = GateLayer(40, 5)
        self.bn = nn.BatchNorm1d(20)
        self.out = BinaryLinear(20, 3)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.bn(self.gates(x, h)))


def test_glorot_groups_cover_every_latent_tensor_with_its_own_fans() -> None:
    torch.manual_seed(0)
    model = GateNet()
    groups = glorot_param_groups(model, 0.5)
    assert [g["name"] for g in groups] == ["gates.weight_ih", "gates.weight_hh", "out.weight", "unscaled"]
    by = {g["name"]: g for g in groups}
    assert by["gates.weight_ih"]["params"] == [model.gates.weight_ih]
    assert by["gates.weight_hh"]["params"] == [model.gates.weight_hh]
    assert by["gates.weight_ih"]["lr_scale"] == pytest.approx(1 / math.sqrt(1.5 / (40 + 5)))  # per gate: I + H
    assert by["gates.weight_hh"]["lr_scale"] == pytest.approx(1 / math.sqrt(1.5 / (5 + 5)))  # H + H
    assert by["out.weight"]["lr_scale"] == pytest.approx(glorot_lr_scale(model.out))
    for g in groups:
        assert g["lr"] == pytest.approx(0.5 * g["lr_scale"])
    rest = {id(p) for p in by["unscaled"]["params"]}
    assert rest == {id(model.gates.bias_ih), id(model.bn.weight), id(model.bn.bias), id(model.out.bias)}
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    pow2 = {g["name"]: g["lr_scale"] for g in glorot_param_groups(model, 0.5, round_pow2=True)}
    assert pow2["gates.weight_hh"] == 2.0 ** round(math.log2(glorot_scale(5, 5)))
    with pytest.raises(ValueError, match="latent"):
        glorot_lr_scale(model.gates)  # one γ per tensor: no single scale for the layer
    # a first ShiftAdaMax step (unit gradients) moves each tensor by its own AP2(γ)·lr (here 4·lr and 2·lr)
    assert round(math.log2(glorot_scale(40, 5))) != round(math.log2(glorot_scale(5, 5)))
    x, h = torch.randn(8, 40), torch.randn(8, 5)
    model(x, h).square().sum().backward()
    for w in (model.gates.weight_ih, model.gates.weight_hh):
        w.grad = torch.ones_like(w)
    before = [model.gates.weight_ih.detach().clone(), model.gates.weight_hh.detach().clone()]
    ShiftAdaMax(glorot_param_groups(model, 2.0**-10)).step()
    for w0, w, fans in zip(before, (model.gates.weight_ih, model.gates.weight_hh), ((40, 5), (5, 5))):
        expected = 2.0 ** round(math.log2(glorot_scale(*fans))) * 2.0**-10
        assert torch.allclose(w0 - w.detach(), torch.full_like(w0, expected))


def test_glorot_groups_of_todays_layers_keep_their_order_and_scales() -> None:
    model = _cifar_like()
    groups = glorot_param_groups(model, 1.0, include_float_layers=True)
    assert [g["name"] for g in groups] == ["0.weight", "3.weight", "5.weight", "unscaled"]
    assert [g["lr_scale"] for g in groups[:3]] == pytest.approx(
        [1 / math.sqrt(1.5 / (27 + 72)), 1 / math.sqrt(1.5 / (128 + 16)), 1 / math.sqrt(1.5 / (16 + 10))])
    assert glorot_param_groups(BinaryLinear(3, 2), 1.0)[0]["name"] == ".weight"  # the model itself


def test_glorot_scale_rejects_empty_fans() -> None:
    assert glorot_scale(10, 20) == pytest.approx(1 / math.sqrt(1.5 / 30))
    with pytest.raises(ValueError, match="fan_in"):
        glorot_scale(0, 3)


def test_clip_latent_weights_clips_every_latent_tensor() -> None:
    model = GateNet()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-3, 3, p.numel()).view_as(p))
    assert clip_latent_weights(model) == 2  # layers: the gate layer and the output layer
    for w in (model.gates.weight_ih, model.gates.weight_hh, model.out.weight):
        assert w.detach().abs().max().item() == 1.0
    assert model.gates.bias_ih.detach().abs().max().item() == 3.0  # biases and BN untouched
    assert model.bn.weight.detach().abs().max().item() == 3.0
    model.gates.clip_value = 0.5
    clip_latent_weights(model)
    assert model.gates.weight_ih.detach().abs().max().item() == 0.5
    assert model.gates.weight_hh.detach().abs().max().item() == 0.5


# --------------------------------------------------------------------------------------------------
# Authors' code as options (issue 11): each option against tests/authors_rules.py, 300 steps in float64
# --------------------------------------------------------------------------------------------------
PAPER_BETAS = (1 - 2.0**-3, 1 - 2.0**-10)
T7_BETAS = (0.9, 0.999)  # adaMax_binary_clip_shift.lua:33-34, the Main scripts set none
N_STEPS = 300


def _grad_sequence(shapes: list[tuple[int, ...]], n: int, seed: int) -> list[list[torch.Tensor]]:
    """Gradients with a persistent per-element sign bias, magnitudes spread over decades and shrinking with t
    (so that a decaying v and a non-decaying one differ), in float64."""
    g = gen(seed)
    bias = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    scale = [10.0 ** (torch.rand(s, generator=g, dtype=torch.float64) * 3 - 2) for s in shapes]
    seq = []
    for t in range(n):
        decay = 2.0 ** (-t / 60)
        seq.append([(b + torch.randn(s, generator=g, dtype=torch.float64)) * sc * decay
                    for s, b, sc in zip(shapes, bias, scale)])
    return seq


def _run_shift_adamax(state_rule: str, glorot: str, betas: tuple[float, float], base_lr: float, gamma: float):
    g = gen(11)
    w = nn.Parameter(torch.rand(8, 6, generator=g, dtype=torch.float64) * 2 - 1)
    b = nn.Parameter(torch.zeros(8, dtype=torch.float64))
    w0, b0 = w.detach().clone(), b.detach().clone()
    groups = [{"params": [w], "lr": base_lr * gamma, "lr_scale": gamma}, {"params": [b], "lr": base_lr}]
    opt = ShiftAdaMax(groups, lr=base_lr, betas=betas, state_rule=state_rule, glorot=glorot)
    for gw, gb in _grad_sequence([(8, 6), (8,)], N_STEPS, seed=12):
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
    return (w0, b0), (w.detach(), b.detach()), opt


def _reference_shift_adamax(state_rule: str, glorot: str, betas: tuple[float, float], base_lr: float, gamma: float,
                            start: tuple[torch.Tensor, torch.Tensor]):
    out = []
    for x0, k, scale in ((start[0], 0, gamma), (start[1], 1, 1.0)):
        x, st = x0.numpy().copy(), ar.AdamState()
        lr, glr = (base_lr * scale, 1.0) if glorot == "inside" else (base_lr, scale)
        for grads in _grad_sequence([(8, 6), (8,)], N_STEPS, seed=12):
            gk = grads[k].numpy()
            if state_rule == "torch7":
                x = ar.torch7_shift_adamax_step(x, gk, st, lr=lr, beta1=betas[0], beta2=betas[1], glr=glr)
            else:
                x = ar.paper_shift_adamax_step(x, gk, st, lr=lr, beta1=betas[0], beta2=betas[1], glr=glr)
        out.append((x, st))
    return out


@pytest.mark.parametrize("betas", [PAPER_BETAS, T7_BETAS])
@pytest.mark.parametrize("glorot", ["inside", "after"])
@pytest.mark.parametrize("state_rule", ["paper", "torch7"])
def test_shift_adamax_options_match_authors_rules(state_rule: str, glorot: str, betas: tuple[float, float]) -> None:
    base_lr, gamma = 2.0**-6, glorot_scale(6, 8)  # T7 Main -LR 2^-6; γ ≈ 3.06 is not a power of two
    start, (w, b), opt = _run_shift_adamax(state_rule, glorot, betas, base_lr, gamma)
    (xw, sw), (xb, _sb) = _reference_shift_adamax(state_rule, glorot, betas, base_lr, gamma, start)
    assert (w - start[0]).abs().max() > 0.1  # the weights did move
    torch.testing.assert_close(w, torch.from_numpy(xw), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b, torch.from_numpy(xb), rtol=1e-12, atol=1e-12)
    # the state too: the Torch7 rule stores AP2(v) + ε, the paper's rule the unrounded v
    st = opt.state[opt.param_groups[0]["params"][0]]
    torch.testing.assert_close(st["exp_inf"], torch.from_numpy(sw.v), rtol=1e-12, atol=0)
    torch.testing.assert_close(st["exp_avg"], torch.from_numpy(sw.m), rtol=1e-12, atol=1e-300)


def test_shift_adamax_switches_change_the_result() -> None:
    base_lr, gamma = 2.0**-6, glorot_scale(6, 8)
    res = {(r, gl, bt): _run_shift_adamax(r, gl, bt, base_lr, gamma)[1][0]
           for r in ("paper", "torch7") for gl in ("inside", "after") for bt in (PAPER_BETAS, T7_BETAS)}
    for gl in ("inside", "after"):
        for bt in (PAPER_BETAS, T7_BETAS):
            assert (res["paper", gl, bt] - res["torch7", gl, bt]).abs().max() > 1e-2  # state rule (row 1)
            assert (res["torch7", gl, bt] - res["paper", gl, bt]).abs().max() > 1e-2
    for r in ("paper", "torch7"):
        for bt in (PAPER_BETAS, T7_BETAS):
            assert (res[r, "inside", bt] - res[r, "after", bt]).abs().max() > 1e-2  # Glorot position (row 3)
        for gl in ("inside", "after"):
            assert (res[r, gl, PAPER_BETAS] - res[r, gl, T7_BETAS]).abs().max() > 1e-2  # betas (row 2)
    # with a power-of-two γ, "inside" and "after" coincide exactly
    a = _run_shift_adamax("torch7", "inside", T7_BETAS, base_lr, 4.0)[1][0]
    assert torch.equal(a, _run_shift_adamax("torch7", "after", T7_BETAS, base_lr, 4.0)[1][0])


def test_torch7_state_never_decays_below_the_largest_power_of_two() -> None:
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ShiftAdaMax([p], state_rule="torch7")
    for k, gr in enumerate([3.0] + [1e-3] * 200):
        p.grad = torch.tensor([gr], dtype=torch.float64)
        opt.step()
        assert opt.state[p]["exp_inf"].item() == 4.0 + 2.0**-27, k  # AP2(3) = 4, kept: β2·(4 + ε) rounds to 4
    paper = ShiftAdaMax([q := nn.Parameter(torch.zeros(1, dtype=torch.float64))])
    for gr in [3.0] + [1e-3] * 200:
        q.grad = torch.tensor([gr], dtype=torch.float64)
        paper.step()
    assert paper.state[q]["exp_inf"].item() == pytest.approx(3.0 * (1 - 2.0**-10) ** 200)  # decays


class _TodaysShiftAdaMax(torch.optim.Optimizer):
    """qnnlib's ShiftAdaMax.step before the options were added (copied), to pin the defaults bit for bit."""

    def __init__(self, params, lr=2.0**-10, betas=PAPER_BETAS, eps=2.0**-27) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_inf"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_inf"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                torch.maximum(v.mul_(beta2), g.abs(), out=v)
                step_size = 2.0 ** round(math.log2(group["lr"] / (1 - beta1**t)))
                inv_v = torch.log2(v + group["eps"]).neg_().round_().exp2_()
                p.addcmul_(m, inv_v, value=-step_size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shift_adamax_defaults_are_bit_identical_to_todays(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    m1 = nn.Sequential(BinaryLinear(6, 8), ShiftBatchNorm1d(8), nn.Linear(8, 3)).to(dtype)
    m2 = copy.deepcopy(m1)
    o1 = ShiftAdaMax(glorot_param_groups(m1, 2.0**-6))
    o2 = _TodaysShiftAdaMax(glorot_param_groups(m2, 2.0**-6))
    for grads in _grad_sequence([tuple(p.shape) for p in m1.parameters()], N_STEPS, seed=3):
        for mod, opt in ((m1, o1), (m2, o2)):
            for p, gr in zip(mod.parameters(), grads):
                p.grad = gr.to(dtype)
            opt.step()
            clip_latent_weights(mod)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert ShiftAdaMax([nn.Parameter(torch.zeros(1))]).defaults["state_rule"] == "paper"
    assert ShiftAdaMax([nn.Parameter(torch.zeros(1))]).defaults["glorot"] == "inside"


def test_shift_adamax_loads_a_checkpoint_without_the_option_keys() -> None:
    p = nn.Parameter(torch.ones(3, dtype=torch.float64))
    p.grad = torch.ones(3, dtype=torch.float64)
    old = _TodaysShiftAdaMax([p])
    old.step()
    q = nn.Parameter(p.detach().clone())
    new = ShiftAdaMax([q])
    new.load_state_dict(copy.deepcopy(old.state_dict()))  # (load_state_dict would share m, v tensors)
    assert "state_rule" not in new.param_groups[0]
    q.grad, p.grad = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    new.step()
    old.step()
    assert torch.equal(p, q)


@pytest.mark.parametrize(("kwargs", "arg"), [({"state_rule": "theano"}, "state_rule"), ({"glorot": "x"}, "glorot")])
def test_shift_adamax_bad_option(kwargs: dict, arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        ShiftAdaMax([nn.Parameter(torch.zeros(1))], **kwargs)


# ---- LasagneAdam (row 9) ----
def test_lasagne_adam_matches_lasagne_updates_adam() -> None:
    g = gen(21)
    p0 = torch.randn(5, 7, generator=g, dtype=torch.float64)
    p = nn.Parameter(p0.clone())
    opt = LasagneAdam([p], lr=0.003)
    x, st = p0.numpy().copy(), ar.AdamState()
    for (gr,) in _grad_sequence([(5, 7)], N_STEPS, seed=22):
        p.grad = gr.clone()
        opt.step()
        x = ar.lasagne_adam_step(x, gr.numpy(), st, learning_rate=0.003)
    torch.testing.assert_close(p.detach(), torch.from_numpy(x), rtol=1e-12, atol=1e-12)
    assert (p.detach() - p0).abs().max() > 0.1
    assert LasagneAdam([nn.Parameter(torch.zeros(1))]).defaults == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def test_lasagne_adam_glorot_groups_equal_theano_clipping_scaling() -> None:
    """Group LR γ·lr + clip = Theano's W ← clip(W + γ (adam(W) − W)) (binary_net.py:193-194); bias plain adam."""
    torch.manual_seed(1)
    layer = BinaryLinear(6, 8).double()
    w0, b0 = layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()
    gamma = glorot_lr_scale(layer)
    opt = LasagneAdam(glorot_param_groups(layer, 0.003), lr=0.003)
    xw, xb, s_w, s_b = w0, b0, ar.AdamState(), ar.AdamState()
    for gw, gb in _grad_sequence([(8, 6), (8,)], N_STEPS, seed=23):
        layer.weight.grad, layer.bias.grad = gw.clone(), gb.clone()
        opt.step()
        assert clip_parameters(layer, "latent") == 1
        xw = ar.theano_clipping_scaling(xw, ar.lasagne_adam_step(xw, gw.numpy(), s_w, learning_rate=0.003), gamma)
        xb = ar.lasagne_adam_step(xb, gb.numpy(), s_b, learning_rate=0.003)
    assert np.abs(xw).max() == 1.0  # clipping was active
    torch.testing.assert_close(layer.weight.detach(), torch.from_numpy(xw), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.detach(), torch.from_numpy(xb), rtol=1e-12, atol=1e-12)


def test_lasagne_adam_differs_from_torch_adam() -> None:
    # ε on the uncorrected sqrt(v) (Lasagne) vs on the corrected one (torch): visible for gradients near ε
    a, b = nn.Parameter(torch.zeros(4, dtype=torch.float64)), nn.Parameter(torch.zeros(4, dtype=torch.float64))
    la, ta = LasagneAdam([a]), torch.optim.Adam([b], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for (gr,) in _grad_sequence([(4,)], 20, seed=24):
        a.grad, b.grad = gr * 1e-7, gr * 1e-7
        la.step()
        ta.step()
    assert ((a - b).abs() / b.abs()).max() > 1e-2


# ---- glorot_param_groups: scale_biases / scale_bn / round_pow2 against the Torch7 model files (row 4) ----
def _t7_layers(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    names = [(BinaryLinear, "BinaryLinear"), (BinaryConv2d, "BinarySpatialConvolution"),
             (ShiftBatchNorm1d, "BatchNormalizationShiftPow2"), (ShiftBatchNorm2d, "SpatialBatchNormalizationShiftPow2"),
             (nn.BatchNorm1d, "nn.BatchNormalization"), (nn.BatchNorm2d, "nn.SpatialBatchNormalization")]
    out = []
    for mod in model.modules():
        if not list(mod.parameters(recurse=False)):
            continue
        out.append((next(n for cls, n in names if isinstance(mod, cls)), tuple(mod.weight.shape)))
    return out


def _mnist_t7_like() -> nn.Sequential:
    """BinaryNet_MNIST_Model.lua:23-38 in small: BinaryLinear → (shift) BN → HardTanh, last BN a torch BN."""
    return nn.Sequential(BinaryLinear(12, 16), ShiftBatchNorm1d(16), nn.Hardtanh(), BinaryLinear(16, 16),
                         nn.BatchNorm1d(16), nn.Hardtanh(), BinaryLinear(16, 4), nn.BatchNorm1d(4)).double()


def _cifar_t7_like() -> nn.Sequential:
    """BinaryNet_Cifar10_Model.lua:33-78 in small."""
    return nn.Sequential(BinaryConv2d(3, 8, 3, padding=1), ShiftBatchNorm2d(8), nn.Hardtanh(), nn.Flatten(),
                         BinaryLinear(8 * 4 * 4, 16), ShiftBatchNorm1d(16), nn.Hardtanh(), BinaryLinear(16, 4),
                         nn.BatchNorm1d(4)).double()


_T7_RECIPES = {  # model file → (glorot_param_groups options, clip_parameters which)
    "mnist": ({"scale_biases": True, "scale_bn": True}, "latent"),
    "cifar10": ({"round_pow2": True, "scale_biases": True}, "all"),
    "svhn": ({"round_pow2": True, "scale_biases": True}, "latent"),
}


def _factors(model: nn.Module, groups: list[dict]) -> np.ndarray:
    by_id = {id(p): gr["lr_scale"] for gr in groups for p in gr["params"]}
    return np.array([by_id[id(p)] for p in model.parameters()])


@pytest.mark.parametrize("model_file", ["mnist", "cifar10", "svhn"])
def test_glorot_param_groups_reproduce_torch7_glr_vectors(model_file: str) -> None:
    model = _mnist_t7_like() if model_file == "mnist" else _cifar_t7_like()
    opts, _ = _T7_RECIPES[model_file]
    lrs, _clip = ar.torch7_glr_and_clip(model_file, _t7_layers(model))
    groups = glorot_param_groups(model, 2.0**-6, **opts)
    np.testing.assert_allclose(_factors(model, groups), lrs, rtol=1e-15, atol=0)
    for gr in groups:
        assert gr["lr"] == pytest.approx(2.0**-6 * gr["lr_scale"], rel=1e-15)
    # each switch flipped no longer reproduces the file (scale_bn only matters for the MNIST file)
    for key in [k for k in ("scale_biases", "scale_bn", "round_pow2") if k in opts]:
        flipped = glorot_param_groups(model, 2.0**-6, **{**opts, key: not opts[key]})
        assert not np.allclose(_factors(model, flipped), lrs, rtol=1e-6), key


def test_glorot_param_groups_scale_bias_and_bn_factors() -> None:
    model = _mnist_t7_like()
    by = {gr["name"]: gr for gr in glorot_param_groups(model, 0.5, scale_biases=True, scale_bn=True)}
    assert list(by) == ["0.weight", "0.bias", "1.weight", "3.weight", "3.bias", "4.weight", "6.weight", "6.bias",
                        "7.weight", "unscaled"]
    assert by["0.bias"]["lr_scale"] == by["0.weight"]["lr_scale"] == glorot_scale(12, 16)
    assert by["1.weight"]["lr_scale"] == 1 / math.sqrt(1.5 / 16)  # shift BN γ
    assert by["7.weight"]["lr_scale"] == 1 / math.sqrt(1.5 / 4)  # torch BN γ
    assert {id(p) for p in by["unscaled"]["params"]} == {id(model[i].bias) for i in (1, 4, 7)}  # BN β keep 1
    pow2 = {gr["name"]: gr["lr_scale"] for gr in glorot_param_groups(model, 0.5, scale_bn=True, round_pow2=True)}
    assert pow2["1.weight"] == 4.0 and pow2["7.weight"] == 2.0  # sqrt(16/1.5) ≈ 3.27, sqrt(4/1.5) ≈ 1.63
    # defaults unchanged: only latent weights
    assert [gr["name"] for gr in glorot_param_groups(model, 0.5)] == ["0.weight", "3.weight", "6.weight", "unscaled"]
    # a float layer's bias follows its weight when include_float_layers; BN without affine is skipped
    m = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5, affine=False))
    names = [gr["name"] for gr in glorot_param_groups(m, 1.0, include_float_layers=True, scale_biases=True,
                                                      scale_bn=True)]
    assert names == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="bias"):
        glorot_param_groups(GateNet(), 1.0, scale_biases=True)  # two latent tensors: no single γ for bias_ih


@pytest.mark.parametrize("model_file", ["mnist", "cifar10", "svhn"])
def test_torch7_recipe_trajectory_matches_adamax_binary_clip_shift(model_file: str) -> None:
    """300 steps of a whole model: ShiftAdaMax(torch7, after) + the recipe's groups + clip_parameters against one
    flattened-vector call of adaMax_binary_clip_shift per step with the model file's GLRvec and clipV."""
    torch.manual_seed(5)
    model = _mnist_t7_like() if model_file == "mnist" else _cifar_t7_like()
    opts, which = _T7_RECIPES[model_file]
    lr = 2.0**-6
    lrs, clip = ar.torch7_glr_and_clip(model_file, _t7_layers(model))
    params = list(model.parameters())
    glr = np.concatenate([np.full(p.numel(), f) for p, f in zip(params, lrs)])
    clip_v = np.concatenate([np.full(p.numel(), c) for p, c in zip(params, clip)])
    x = np.concatenate([p.detach().numpy().ravel() for p in params])
    st = ar.AdamState()
    opt = ShiftAdaMax(glorot_param_groups(model, lr, **opts), lr=lr, betas=T7_BETAS, state_rule="torch7",
                      glorot="after")
    for grads in _grad_sequence([tuple(p.shape) for p in params], N_STEPS, seed=31):
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        clip_parameters(model, which)
        x = ar.torch7_shift_adamax_step(x, np.concatenate([gr.numpy().ravel() for gr in grads]), st, lr=lr,
                                        glr=glr, clip_v=clip_v)
    got = np.concatenate([p.detach().numpy().ravel() for p in params])
    np.testing.assert_allclose(got, x, rtol=1e-12, atol=1e-12)
    assert np.abs(x).max() == 1.0 if model_file == "cifar10" else np.abs(x).max() > 1.0  # clipping differs
    assert np.sum(np.abs(x) == 1.0) > 10


# ---- clip_parameters (row 7) ----
def test_clip_parameters_latent_and_all() -> None:
    model = nn.Sequential(BinaryLinear(3, 4), nn.Linear(4, 4), BinaryConv2d(1, 2, 3), ShiftBatchNorm1d(4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-3, 3, p.numel()).view_as(p))
    ref = copy.deepcopy(model)
    assert clip_parameters(model) == clip_latent_weights(ref) == 2  # "latent" = clip_latent_weights
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert model[0].bias.abs().max().item() == 3.0 and model[3].weight.abs().max().item() == 3.0
    n = clip_parameters(model, "all")
    assert n == len(list(model.parameters()))
    for name, p in model.named_parameters():
        assert p.abs().max().item() == 1.0, name  # biases, float layer, BN γ and β too
        assert p.grad is None
    clip_parameters(model, "all", bound=0.5)
    assert max(p.abs().max().item() for p in model.parameters()) == 0.5
    model[0].clip_value = 0.25
    clip_parameters(model, "latent", bound=None)  # None: each layer's clip_value, as clip_latent_weights()
    assert model[0].weight.abs().max().item() == 0.25 and model[2].weight.abs().max().item() == 0.5
    with pytest.raises(ValueError, match="which"):
        clip_parameters(model, "biases")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bound"):
        clip_parameters(model, "all", bound=None)
