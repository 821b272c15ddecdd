"""Tests for qnnlib.norm: shift-based batch normalization (paper Alg. 3, Torch7 semantics)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from qnnlib.norm import ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.quantize import ap2

LO, HI = 2.0**-0.75, 2.0**0.75  # AP2 inside the variance (≤ 2^±0.25 on 1/σ) and on 1/σ (≤ 2^±0.5)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(shape: tuple[int, ...], g: torch.Generator, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    view = [1, shape[1]] + [1] * (len(shape) - 2)
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale.view(view) + shift.view(view)


def _assert_ratio_and_signs(a: torch.Tensor, b: torch.Tensor) -> None:
    mask = b.abs() > 1e-6  # x == μ up to rounding: both ~0, the ratio is noise
    assert mask.float().mean() > 0.99
    r = a[mask] / b[mask]
    assert r.min().item() >= LO * (1 - 1e-9) and r.max().item() <= HI * (1 + 1e-9), (r.min(), r.max())
    assert torch.equal(torch.sign(a[mask]), torch.sign(b[mask]))


def _sbn_reference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """Alg. 3 written out per channel with explicit loops over the printed steps."""
    out = torch.empty_like(x)
    for ch in range(x.shape[1]):
        xc = x.select(1, ch)
        mu = xc.mean()  # 1
        c = xc - mu  # 2
        var = (c * ap2(c)).mean()  # 3: σ² ≈ mean(C ⊘ AP2(C))
        xhat = c * ap2(1 / torch.sqrt(var + eps))  # 4
        out.select(1, ch).copy_(ap2(gamma[ch : ch + 1]) * xhat + beta[ch])  # 5 (+ β, Torch7)
    return out


# --------------------------------------------------------------------------------------------------
# Close to vanilla BN within the power-of-two approximations
# --------------------------------------------------------------------------------------------------
CASES = [
    (ShiftBatchNorm1d, nn.BatchNorm1d, (128, 12)),
    (ShiftBatchNorm1d, nn.BatchNorm1d, (32, 6, 10)),
    (ShiftBatchNorm2d, nn.BatchNorm2d, (16, 8, 5, 5)),
]


@pytest.mark.parametrize(("sbn_cls", "bn_cls", "shape"), CASES)
def test_sbn_close_to_bn_train_and_eval(sbn_cls: type, bn_cls: type, shape: tuple[int, ...]) -> None:
    g = gen(0)
    c = shape[1]
    scale = torch.exp(torch.randn(c, generator=g, dtype=torch.float64) * 0.5)  # per-channel std ~ 0.4..2.7
    shift = torch.randn(c, generator=g, dtype=torch.float64) * 3
    sbn = sbn_cls(c, dtype=torch.float64)
    bn = bn_cls(c, momentum=0.125, dtype=torch.float64)  # Torch7 SBN momentum
    for _ in range(24):
        x = _batch(shape, g, scale, shift)
        _assert_ratio_and_signs(sbn(x), bn(x))
    assert torch.allclose(sbn.running_mean, bn.running_mean)  # same lerp of the batch means
    assert sbn.num_batches_tracked.item() == 24
    sbn.eval()
    bn.eval()
    for _ in range(3):
        x = _batch(shape, g, scale, shift)
        _assert_ratio_and_signs(sbn(x), bn(x))


def test_sbn_train_output_is_centred_times_power_of_two() -> None:
    x = _batch((64, 5), gen(1), torch.tensor([0.3, 1.0, 2.0, 7.0, 0.01]), torch.tensor([0.0, 1.0, -2.0, 5.0, 0.5]))
    y = ShiftBatchNorm1d(5, dtype=torch.float64)(x)
    c = x - x.mean(0)
    k = torch.log2(y / c)  # per channel one power of two: x̂ = C(x)·AP2(1/σ)
    assert torch.allclose(k, k.round()) and torch.allclose(k, k[0].expand_as(k))


@pytest.mark.parametrize("shape", [(50, 4), (8, 4, 6), (6, 4, 3, 5)])
def test_sbn_train_matches_alg3_reference(shape: tuple[int, ...]) -> None:
    cls = ShiftBatchNorm2d if len(shape) == 4 else ShiftBatchNorm1d
    m = cls(4, dtype=torch.float64)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.3, -1.7, 1.0, 5.0]))  # AP2: 0.25, -2, 1, 4
        m.bias.copy_(torch.tensor([0.0, 0.5, -1.0, 2.0]))
    x = torch.randn(shape, generator=gen(2), dtype=torch.float64) * 2 + 1
    y = m(x)
    ref = _sbn_reference(x, m.weight.detach(), m.bias.detach(), m.eps)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_sbn_running_stats_and_eval_formula() -> None:
    m = ShiftBatchNorm1d(3, dtype=torch.float64)
    assert m.momentum == 0.125 and m.eps == 1e-5
    assert torch.equal(m.running_mean, torch.zeros(3)) and torch.equal(m.running_invstd, torch.ones(3))
    rm, ri = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    g = gen(3)
    for _ in range(5):
        x = torch.randn(20, 3, generator=g, dtype=torch.float64) * 3 + 2
        m(x)
        mu = x.mean(0)
        c = x - mu
        inv = 1 / torch.sqrt((c * ap2(c)).mean(0) + m.eps)
        rm = 0.875 * rm + 0.125 * mu  # running mean and running 1/σ, momentum 0.125
        ri = 0.875 * ri + 0.125 * inv
    assert torch.allclose(m.running_mean, rm) and torch.allclose(m.running_invstd, ri)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([3.0, 1.0, -0.3]))
        m.bias.copy_(torch.tensor([1.0, 0.0, -2.0]))
    m.eval()
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    before = m.running_invstd.clone()
    y = m(x)
    exp = ap2(m.weight.detach()) * (x - m.running_mean) * ap2(m.running_invstd) + m.bias.detach()
    assert torch.allclose(y, exp)
    assert torch.equal(m.running_invstd, before)  # eval does not update the statistics
    assert m(x[:1]).shape == (1, 3)  # eval works with a single sample
    m.reset_running_stats()
    assert torch.equal(m.running_invstd, torch.ones(3, dtype=torch.float64)) and m.num_batches_tracked.item() == 0


def test_sbn_backward_close_to_bn_backward() -> None:
    # AP2 steps use the straight-through gradient, so the backward approximates vanilla BN's.
    g = gen(4)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64) * 1.7 + 0.5
    up = torch.randn(64, 6, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    sbn, bn = ShiftBatchNorm1d(6, dtype=torch.float64), nn.BatchNorm1d(6, dtype=torch.float64)
    sbn(xa).backward(up)
    bn(xb).backward(up)
    for ga, gb in [(xa.grad, xb.grad), (sbn.weight.grad, bn.weight.grad), (sbn.bias.grad, bn.bias.grad)]:
        assert torch.isfinite(ga).all()
        cos = torch.nn.functional.cosine_similarity(ga.flatten(), gb.flatten(), dim=0)
        assert cos > 0.9
    assert torch.allclose(sbn.bias.grad, bn.bias.grad)  # β enters exactly as in BN


# --------------------------------------------------------------------------------------------------
# Drop-in behaviour and options
# --------------------------------------------------------------------------------------------------
def test_sbn_is_drop_in() -> None:
    for sbn, bn in [(ShiftBatchNorm1d(4), nn.BatchNorm1d(4)), (ShiftBatchNorm2d(4), nn.BatchNorm2d(4))]:
        assert sbn.weight.shape == bn.weight.shape == (4,)
        assert torch.equal(sbn.weight.detach(), torch.ones(4)) and torch.equal(sbn.bias.detach(), torch.zeros(4))
        assert {n for n, _ in sbn.named_parameters()} == {n for n, _ in bn.named_parameters()}
    model = nn.Sequential(nn.Conv2d(2, 4, 3), ShiftBatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 9, 3), ShiftBatchNorm1d(3))
    y = model(torch.randn(5, 2, 5, 5))
    assert y.shape == (5, 3)
    copy.deepcopy(model).eval()(torch.randn(1, 2, 5, 5))
    assert "momentum=0.125" in repr(model[1])


def test_sbn_affine_false_and_no_running_stats() -> None:
    x = torch.randn(30, 3, generator=gen(5), dtype=torch.float64) * 4 - 1
    a = ShiftBatchNorm1d(3, affine=False, dtype=torch.float64)
    assert a.weight is None and a.bias is None
    ya = a(x)
    b = ShiftBatchNorm1d(3, track_running_stats=False, dtype=torch.float64)
    assert b.running_mean is None
    b.eval()
    yb = b(x)  # no running stats: batch statistics also in eval mode
    assert torch.allclose(ya, yb)
    assert torch.allclose(ya.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda: ShiftBatchNorm1d(0), "num_features"),
        (lambda: ShiftBatchNorm1d(2.0), "num_features"),
        (lambda: ShiftBatchNorm1d(True), "num_features"),
        (lambda: ShiftBatchNorm2d(3, eps=0.0), "eps"),
        (lambda: ShiftBatchNorm2d(3, momentum=0.0), "momentum"),
        (lambda: ShiftBatchNorm2d(3, momentum=1.5), "momentum"),
    ],
)
def test_sbn_bad_constructor_arguments(make, arg: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=arg):
        make()


def test_sbn_bad_inputs() -> None:
    with pytest.raises(ValueError, match="4-D"):
        ShiftBatchNorm2d(3)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        ShiftBatchNorm1d(3)(torch.randn(4, 3, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        ShiftBatchNorm1d(3)(torch.randn(4, 5))
    with pytest.raises(ValueError, match="more than one value"):
        ShiftBatchNorm1d(3)(torch.randn(1, 3))


@CUDA
@pytest.mark.gpu
def test_sbn_cuda_matches_cpu() -> None:
    m = ShiftBatchNorm2d(4, dtype=torch.float64)
    mc = copy.deepcopy(m).cuda()
    x = torch.randn(8, 4, 3, 3, generator=gen(6), dtype=torch.float64)
    assert torch.allclose(m(x), mc(x.cuda()).cpu())
    m.eval()
    mc.eval()
    assert torch.allclose(m(x), mc(x.cuda()).cpu())
