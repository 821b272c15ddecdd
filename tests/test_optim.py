"""Tests for qnnlib.optim: shift-based AdaMax (Alg. 2), Glorot LR scaling, latent-weight clipping."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from qnnlib.layers import BinaryConv2d, BinaryLinear, LatentWeight, LatentWeightLayer, QuantLinear
from qnnlib.norm import ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.optim import ShiftAdaMax, clip_latent_weights, glorot_lr_scale, glorot_param_groups, glorot_scale
from qnnlib.quantize import ap2


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
        (dict(lr=0.0), "lr"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(betas=(1.0, 0.5)), "betas"),
        (dict(betas=(0.5, -0.1)), "betas"),
        (dict(betas=(0.5,)), "betas"),
        (dict(eps=0.0), "eps"),
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

    def latent_weights(self):  # noqa: ANN201
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
