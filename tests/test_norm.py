"""Tests for qnnlib.norm: shift-based batch normalization (paper Alg. 3, Torch7 semantics)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from qnnlib.norm import LasagneBatchNorm, ShiftBatchNorm1d, ShiftBatchNorm2d, ShiftBatchNormBase, is_batch_norm
from qnnlib.quantize import ap2
from tests import authors_rules_bn as ar

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
    model = nn.Sequential(nn.Conv2d(2, 4, 3), ShiftBatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 9, 3),
                          ShiftBatchNorm1d(3))
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


# --------------------------------------------------------------------------------------------------
# Issue 11 row 6: Torch7's hand-written SBN backward (backward="torch7") against the re-statement
# --------------------------------------------------------------------------------------------------
SBN_SHAPES = [(ShiftBatchNorm1d, (64, 6)), (ShiftBatchNorm1d, (7, 3)), (ShiftBatchNorm2d, (8, 4, 5, 5)),
              (ShiftBatchNorm2d, (3, 2, 4, 6))]


def _rand_affine(m: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64) * 1.5)
        m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


@pytest.mark.parametrize(("cls", "shape"), SBN_SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sbn_torch7_backward_matches_restatement(cls: type, shape: tuple[int, ...], seed: int) -> None:
    g = gen(100 + seed)
    m = cls(shape[1], dtype=torch.float64, backward="torch7")
    _rand_affine(m, g)
    scale = torch.rand(shape[1], generator=g, dtype=torch.float64) * 4 + 0.1
    x = _batch(shape, g, scale, torch.randn(shape[1], generator=g, dtype=torch.float64)).requires_grad_()
    up = torch.randn(shape, generator=g, dtype=torch.float64)
    a = cls(shape[1], dtype=torch.float64)  # autograd twin, same state
    a.load_state_dict(m.state_dict())
    y = m(x)
    y.backward(up)
    saved = ar.sbn_forward_t7(_np(x), _np(m.weight), _np(m.bias), m.eps)
    dx, dw, db = ar.sbn_backward_t7(saved, _np(up))
    np.testing.assert_allclose(_np(y), saved["y"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_np(x.grad), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_np(m.weight.grad), dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_np(m.bias.grad), db, rtol=1e-12, atol=1e-12)
    # the two backward rules are different rules: autograd's STE gradient is not Torch7's
    xa = x.detach().clone().requires_grad_()
    ya = a(xa)
    assert torch.equal(ya, y.detach())  # same forward, bit for bit
    ya.backward(up)
    assert not torch.allclose(xa.grad, x.grad, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(a.weight.grad, m.weight.grad, rtol=1e-6, atol=1e-9)
    assert torch.equal(a.running_invstd, m.running_invstd) and torch.equal(a.running_mean, m.running_mean)


def test_sbn_torch7_backward_without_affine() -> None:
    g = gen(7)
    x = (torch.randn(20, 5, generator=g, dtype=torch.float64) * 2).requires_grad_()
    up = torch.randn(20, 5, generator=g, dtype=torch.float64)
    m = ShiftBatchNorm1d(5, affine=False, dtype=torch.float64, backward="torch7")
    m(x).backward(up)
    dx, dw, db = ar.sbn_backward_t7(ar.sbn_forward_t7(_np(x), None, None, m.eps), _np(up))
    assert dw is None and db is None
    np.testing.assert_allclose(_np(x.grad), dx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("cls", "shape", "init"),
                         [(ShiftBatchNorm1d, (32, 6), 1.0), (ShiftBatchNorm2d, (6, 3, 4, 4), 0.0)])
def test_sbn_torch7_sgd_run_matches_restatement(cls: type, shape: tuple[int, ...], init: float) -> None:
    """300 SGD steps of ``fc (float) → SBN (torch7 backward) → ½‖y − t‖²``; NumPy restates every step."""
    g = gen(11)
    c_in, c = 5, shape[1]
    m = cls(c, dtype=torch.float64, backward="torch7", running_invstd_init=init)
    _rand_affine(m, g)
    w = (torch.randn(c, c_in, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    w_np, gam, bet = _np(w).copy(), _np(m.weight).copy(), _np(m.bias).copy()
    r_mean, r_std = np.zeros(c), np.full(c, init)
    lr, steps = 0.01, 300
    spatial = shape[2:]
    for _ in range(steps):
        x = torch.randn((shape[0], c_in, *spatial), generator=g, dtype=torch.float64) * 2 + 0.3
        t = torch.randn(shape, generator=g, dtype=torch.float64)
        h = torch.einsum("oi,ni...->no...", w, x)
        y = m(h)
        loss = 0.5 * ((y - t) ** 2).sum()
        for p in (w, m.weight, m.bias):
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in (w, m.weight, m.bias):
                p -= lr * p.grad
        # restatement: the same step in NumPy
        xn = _np(x)
        hn = np.einsum("oi,ni...->no...", w_np, xn)
        saved = ar.sbn_forward_t7(hn, gam, bet)
        r_mean, r_std = ar.sbn_running_t7(r_mean, r_std, saved)
        dh, dg, db = ar.sbn_backward_t7(saved, saved["y"] - _np(t))
        dw = np.einsum("no...,ni...->oi...", dh, xn).reshape(c, c_in, -1).sum(axis=2)
        w_np, gam, bet = w_np - lr * dw, gam - lr * dg, bet - lr * db
    for got, want in [(w, w_np), (m.weight, gam), (m.bias, bet), (m.running_mean, r_mean),
                      (m.running_invstd, r_std)]:
        np.testing.assert_allclose(_np(got), want, rtol=1e-12, atol=1e-12)
    assert m.num_batches_tracked.item() == steps
    m.eval()
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    np.testing.assert_allclose(_np(m(x)), ar.sbn_eval_t7(_np(x), r_mean, r_std, gam, bet), rtol=1e-12, atol=1e-12)


def test_sbn_options_defaults_and_validation() -> None:
    # Torch7: eps 1e-5, momentum 0.125 in both modules (l. 23/25, Spatial l. 14/16); running 1/σ starts 1 / 0
    for cls in (ShiftBatchNorm1d, ShiftBatchNorm2d):
        m = cls(3)
        assert m.eps == 1e-5 and m.momentum == 0.125 and m.backward == "autograd" and m.running_invstd_init == 1.0
        assert "backward" not in repr(m) and "running_invstd_init" not in repr(m)
    m = ShiftBatchNorm2d(3, running_invstd_init=0.0, backward="torch7")
    assert torch.equal(m.running_invstd, torch.zeros(3)) and "backward='torch7'" in repr(m)
    m.running_invstd.fill_(2.0)
    m.reset_running_stats()
    assert torch.equal(m.running_invstd, torch.zeros(3))
    for bad in ({"backward": "torch"}, {"running_invstd_init": -1.0}, {"running_invstd_init": float("nan")},
                {"running_invstd_init": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ShiftBatchNorm1d(3, **bad)


def test_sbn_torch7_eval_uses_autograd_path() -> None:
    m = ShiftBatchNorm1d(3, dtype=torch.float64, backward="torch7")
    m(torch.randn(10, 3, dtype=torch.float64, generator=gen(1)))
    m.eval()
    ref = ShiftBatchNorm1d(3, dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    ref.eval()
    x = torch.randn(4, 3, dtype=torch.float64, generator=gen(2))
    assert torch.equal(m(x), ref(x))


# --------------------------------------------------------------------------------------------------
# Issue 11 row 8: Lasagne's BN running statistics (LasagneBatchNorm)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(50, 6), (16, 4, 3), (8, 3, 4, 4)])
def test_lasagne_bn_matches_restatement(shape: tuple[int, ...]) -> None:
    g = gen(21)
    c = shape[1]
    m = LasagneBatchNorm(c, dtype=torch.float64)
    assert m.eps == 1e-4 and m.momentum == 0.1  # Lasagne's defaults (l. 234), the Theano code's values
    _rand_affine(m, g)
    gam, bet = _np(m.weight).copy(), _np(m.bias).copy()
    r_mean, r_inv = np.zeros(c), np.ones(c)
    bn = nn.BatchNorm1d(c, eps=1e-4, dtype=torch.float64) if len(shape) < 4 else nn.BatchNorm2d(c, eps=1e-4,
                                                                                                 dtype=torch.float64)
    bn.load_state_dict({**m.state_dict(), "running_var": torch.ones(c)}, strict=False)
    for _ in range(25):
        x = _batch(shape, g, torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.2,
                   torch.randn(c, generator=g, dtype=torch.float64))
        y = m(x)
        out = ar.lasagne_bn_train(_np(x), gam, bet)
        np.testing.assert_allclose(_np(y), out["y"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_np(y), _np(bn(x)), rtol=1e-10, atol=1e-10)  # training forward: vanilla BN
        r_mean, r_inv = ar.lasagne_bn_update(r_mean, r_inv, out)
    np.testing.assert_allclose(_np(m.running_mean), r_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_np(m.running_invstd), r_inv, rtol=1e-12, atol=1e-12)
    m.eval()
    bn.eval()
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(_np(m(x)), ar.lasagne_bn_eval(_np(x), r_mean, r_inv, gam, bet), rtol=1e-12,
                               atol=1e-12)
    torch_inv = 1 / torch.sqrt(bn.running_var + bn.eps)
    assert not torch.allclose(m.running_invstd, torch_inv, rtol=1e-3)  # a different running rule
    assert not torch.allclose(m(x), bn(x), rtol=1e-3)
    # running_var_equivalent: nn.BatchNorm's eval formula with it reproduces Lasagne's eval output
    eq = torch.nn.functional.batch_norm(x, m.running_mean, m.running_var_equivalent(), m.weight, m.bias, False, 0.0,
                                        m.eps)
    assert torch.allclose(eq, m(x), rtol=1e-10, atol=1e-10)


def test_lasagne_bn_gradients_are_vanilla_bn_gradients() -> None:
    g = gen(22)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) * 2 + 1
    up = torch.randn(40, 5, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = LasagneBatchNorm(5, dtype=torch.float64), nn.BatchNorm1d(5, eps=1e-4, dtype=torch.float64)
    a(xa).backward(up)
    b(xb).backward(up)
    for ga, gb in [(xa.grad, xb.grad), (a.weight.grad, b.weight.grad), (a.bias.grad, b.bias.grad)]:
        assert torch.allclose(ga, gb, rtol=1e-9, atol=1e-10)


def test_is_batch_norm_and_public_base() -> None:
    for m in (nn.BatchNorm1d(2), nn.BatchNorm2d(2), ShiftBatchNorm1d(2), ShiftBatchNorm2d(2), LasagneBatchNorm(2)):
        assert is_batch_norm(m)
    assert isinstance(ShiftBatchNorm2d(2), ShiftBatchNormBase) and not is_batch_norm(nn.Linear(2, 2))


def test_lasagne_bn_drop_in_names_and_errors() -> None:
    m = LasagneBatchNorm(4)
    assert set(m.state_dict()) == {"weight", "bias", "running_mean", "running_invstd", "num_batches_tracked"}
    assert {n for n, _ in m.named_parameters()} == {"weight", "bias"}
    assert LasagneBatchNorm(4, affine=False)(torch.randn(6, 4)).shape == (6, 4)
    m.running_invstd.fill_(3.0)
    m.reset_running_stats()
    assert torch.equal(m.running_invstd, torch.ones(4))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(3, 5))
    with pytest.raises(ValueError, match="more than one value"):
        m(torch.randn(1, 4))
    with pytest.raises(ValueError, match="eps"):
        LasagneBatchNorm(4, eps=0.0)
    m.eval()
    assert m(torch.randn(1, 4)).shape == (1, 4)
