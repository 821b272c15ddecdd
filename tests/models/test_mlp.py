"""Tests for qnnlib.models.mlp: the MNIST MLP built layer by layer from the precision policy.

The default models must be exactly what they were before the policy became per-layer: same modules in
the same order, same random-number consumption (checksums of state_dicts computed before the change),
same outputs and gradients as a hand-built ``nn.Sequential`` of the layers.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qnnlib.gradquant import GradQuant, quantize_tensor
from qnnlib.layers import LatentWeightLayer, QuantAct, QuantLinear
from qnnlib.models.blocks import (
    ModelOptions,
    act_layer,
    conv_layer,
    grad_quant_layer,
    linear_layer,
    norm_layer,
    param_grad_quant,
)
from qnnlib.models.mlp import mnist_mlp
from qnnlib.norm import LasagneBatchNorm, ShiftBatchNorm1d
from qnnlib.precision import BINARY, FLOAT, LayerBits, Precision
from tests import authors_rules_bn as ar


def assert_same_model(model, ref, x) -> None:
    """Same state_dict, same train-mode outputs (same global seed), same gradients, same eval-mode outputs."""
    sd, rsd = model.state_dict(), ref.state_dict()
    assert list(sd) == list(rsd) and all(torch.equal(sd[k], rsd[k]) for k in sd)
    torch.manual_seed(9)  # dropout and stochastic activations draw from the global generator
    y = model.train()(x)
    torch.manual_seed(9)
    yr = ref.train()(x)
    assert torch.equal(y, yr)
    y.square().sum().backward()
    yr.square().sum().backward()
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.grad, q.grad), n
    assert torch.equal(model.eval()(x), ref.eval()(x))


def state_digest(model: nn.Module) -> str:
    """sha256 of the state_dict (keys, dtypes and raw bytes, in order), first 16 hex digits."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# Computed with torch.manual_seed(1234) from the builder as it was before the per-layer policy (one
# record for all layers): the frozen expectation for modules, order and random-number consumption.
FROZEN = {
    "mlp_default": (lambda: mnist_mlp(16, 2, in_features=20, num_classes=4), "23cfaba1637c0470"),
    "mlp_dropout": (lambda: mnist_mlp(16, 3, in_features=20, dropout_in=0.2, dropout_hidden=0.5), "85bad6e3ff27d0b8"),
    "mlp_float": (lambda: mnist_mlp(16, 2, in_features=20, precision=FLOAT), "8c7921ae8336605d"),
    "mlp_sbn": (lambda: mnist_mlp(16, 2, in_features=20, precision=Precision(1, 1, True, "sbn")), "b3905c809db84d92"),
    "mlp_w2a2": (lambda: mnist_mlp(16, 2, in_features=20, precision=Precision(2, 2)), "c5be6f6de6d1f054"),
}


@pytest.mark.parametrize("case", sorted(FROZEN))
def test_default_models_match_frozen_checksums(case: str) -> None:
    build, digest = FROZEN[case]
    torch.manual_seed(1234)
    assert state_digest(build()) == digest


def _by_hand(precision: Precision, hidden: int, depth: int, in_features: int, num_classes: int,
             dropout_in: float = 0.0, dropout_hidden: float = 0.0) -> nn.Sequential:
    """Today's layers, written out: fc → BN → act [→ dropout] per hidden layer, then fc → BN."""
    lin = (lambda i, o: nn.Linear(i, o)) if precision.weight_bits is None else \
        (lambda i, o: QuantLinear(i, o, weight_bits=precision.weight_bits))
    act = (lambda: nn.Hardtanh()) if precision.act_bits is None else \
        (lambda: QuantAct(precision.act_bits, stochastic=precision.stochastic))
    bn = (lambda c: ShiftBatchNorm1d(c)) if precision.norm == "sbn" else \
        (lambda c: nn.BatchNorm1d(c, eps=1e-4, momentum=0.1))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if dropout_in:
        layers["drop0"] = nn.Dropout(dropout_in)
    width = in_features
    for k in range(1, depth + 1):
        layers[f"fc{k}"], layers[f"bn{k}"], layers[f"act{k}"] = lin(width, hidden), bn(hidden), act()
        if dropout_hidden:
            layers[f"drop{k}"] = nn.Dropout(dropout_hidden)
        width = hidden
    layers[f"fc{depth + 1}"] = lin(width, num_classes)
    layers[f"bn{depth + 1}"] = nn.BatchNorm1d(num_classes, eps=1e-4, momentum=0.1)
    return nn.Sequential(layers)


@pytest.mark.parametrize("precision", [BINARY, FLOAT, Precision(1, 1, True, "sbn"), Precision(2, 2)],
                         ids=lambda p: f"{p.label}-{p.norm}-{p.stochastic}")
@pytest.mark.parametrize("dropout", [False, True])
def test_default_models_equal_a_hand_built_sequential(precision: Precision, dropout: bool) -> None:
    drops = (0.2, 0.5) if dropout else (0.0, 0.0)
    torch.manual_seed(5)
    model = mnist_mlp(12, 2, precision=precision, in_features=10, num_classes=3, dropout_in=drops[0],
                      dropout_hidden=drops[1])
    torch.manual_seed(5)
    ref = _by_hand(precision, 12, 2, 10, 3, *drops)
    assert [(n, type(m)) for n, m in model.named_children()] == [(n, type(m)) for n, m in ref.named_children()]
    assert repr(model) == repr(ref)
    assert_same_model(model, ref, torch.rand(8, 10, generator=torch.Generator().manual_seed(0)) * 2 - 1)


# --------------------------------------------------------------------------------------------------
# Layers from the policy, first and last included
# --------------------------------------------------------------------------------------------------
def test_first_last_and_index_overrides_shape_the_layers() -> None:
    p = Precision(1, 2, first=LayerBits(weight_bits=None), last=LayerBits(weight_bits=8),
                  overrides={2: LayerBits(act_bits=4)})
    m = mnist_mlp(8, 3, precision=p, in_features=6)
    names = [n for n, _ in m.named_children()]
    assert names == ["fc1", "bn1", "act1", "fc2", "bn2", "act2", "fc3", "bn3", "act3", "fc4", "bn4"]
    assert type(m.fc1) is nn.Linear and not isinstance(m.fc1, LatentWeightLayer)  # real inputs, float weights
    assert (m.fc2.weight_bits, m.fc3.weight_bits, m.fc4.weight_bits) == (1, 1, 8)
    assert (m.act1.bits, m.act2.bits, m.act3.bits) == (2, 4, 2)
    assert type(m.bn4) is nn.BatchNorm1d  # output: BN, no activation
    assert m(torch.randn(5, 6)).shape == (5, 10)
    float_acts = mnist_mlp(8, 1, precision=Precision(1, None), in_features=6)
    assert type(float_acts.act1) is nn.Hardtanh and float_acts.fc2.weight_bits == 1


def test_overrides_beyond_the_depth_and_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="overrides"):
        mnist_mlp(8, 2, precision=Precision(overrides={4: LayerBits(act_bits=2)}), in_features=6)
    with pytest.raises(ValueError, match="depth"):
        mnist_mlp(8, 0)


# --------------------------------------------------------------------------------------------------
# Quantized back-propagated errors: GradQuant right after each compute layer
# --------------------------------------------------------------------------------------------------
def test_grad_quant_modules_follow_each_compute_layer() -> None:
    m = mnist_mlp(8, 2, precision=Precision(grad_bits=6), in_features=6, dropout_hidden=0.5)
    assert [n for n, _ in m.named_children()] == [
        "fc1", "gq1", "bn1", "act1", "drop1", "fc2", "gq2", "bn2", "act2", "drop2", "fc3", "gq3", "bn3"]
    assert all(isinstance(m[i], GradQuant) and (m[i].bits, m[i].method) == (6, "log") for i in (1, 6, 11))
    no_first = mnist_mlp(8, 2, precision=Precision(grad_bits=4, grad_method="linear",
                                                   first=LayerBits(grad_bits=None)), in_features=6)
    assert [n for n, _ in no_first.named_children() if n.startswith("gq")] == ["gq2", "gq3"]
    assert (no_first.gq2.bits, no_first.gq2.method) == (4, "linear")
    assert not any(isinstance(mod, GradQuant) for mod in mnist_mlp(8, 2, in_features=6).modules())


def _quantized_error_reference(model: nn.Module, bits: int) -> nn.Sequential:
    """Float reference: ``nn.Linear`` with weights ``W_b``, the same BN/activations, and every ``g_s`` replaced
    by ``quantize_tensor(g_s, bits, "log")`` through a tensor hook on the linear output."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, mod in model.named_children():
        if isinstance(mod, GradQuant):
            continue
        if isinstance(mod, QuantLinear):
            lin = nn.Linear(mod.in_features, mod.out_features).double()
            with torch.no_grad():
                lin.weight.copy_(mod.quantized_weight())
                lin.bias.copy_(mod.bias)

            def quantize_error(_m: nn.Module, _i: tuple, s: torch.Tensor) -> None:  # g_s ← Q(g_s) at this output
                s.register_hook(lambda g: quantize_tensor(g, bits, "log"))

            lin.register_forward_hook(quantize_error)
            mod = lin
        else:
            mod = copy.deepcopy(mod)
        layers[name] = mod
    return nn.Sequential(layers)


def test_grad_bits_quantize_the_error_both_backward_gemms_consume() -> None:
    torch.manual_seed(3)
    base = mnist_mlp(12, 2, in_features=10, num_classes=4).double()
    torch.manual_seed(3)
    model = mnist_mlp(12, 2, precision=Precision(grad_bits=6), in_features=10, num_classes=4).double()
    # GradQuant adds no parameters and no random draws: same state_dict, same forward outputs
    assert list(model.state_dict()) == list(base.state_dict())
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.state_dict().items())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 10, generator=g, dtype=torch.float64)
    w_out = torch.randn(16, 4, generator=g, dtype=torch.float64)
    captured: dict[str, torch.Tensor] = {}
    for k in (1, 2, 3):
        model.get_submodule(f"fc{k}").register_forward_hook(
            lambda _m, inp, _o, k=k: captured.__setitem__(f"a{k - 1}", inp[0].detach()))
        model.get_submodule(f"gq{k}").register_full_backward_hook(
            lambda _m, gin, gout, k=k: captured.update({f"raw{k}": gout[0], f"q{k}": gin[0]}))
        if k > 1:  # layer 1's input is the data (no gradient)
            model.get_submodule(f"fc{k}").register_full_backward_hook(
                lambda _m, gin, _gout, k=k: captured.__setitem__(f"ga{k - 1}", gin[0]))
    y = model(x)
    assert torch.equal(y, base(x))
    (y * w_out).sum().backward()
    (base(x) * w_out).sum().backward()
    for k in (1, 2, 3):
        fc = model.get_submodule(f"fc{k}")
        raw, q = captured[f"raw{k}"], captured[f"q{k}"]
        assert torch.equal(q, quantize_tensor(raw, 6, "log"))  # g_s quantized per tensor
        # closed forms: g_W = Q(g_s)^T a_{k-1}^b (reaches the latent W unchanged) and g_b = Σ Q(g_s)
        assert torch.allclose(fc.weight.grad, q.T @ captured[f"a{k - 1}"], rtol=0, atol=1e-12)
        assert torch.allclose(fc.bias.grad, q.sum(0), rtol=0, atol=1e-12)
        if k > 1:  # g_{a_{k-1}} = Q(g_s) W_k^b, the error passed on
            assert torch.allclose(captured[f"ga{k - 1}"], q @ fc.quantized_weight().detach(), rtol=0, atol=1e-12)
    # autograd on a float reference with g_s replaced by quantize_tensor(g_s, 6, "log") at every layer
    ref = _quantized_error_reference(model, 6)
    (ref(x) * w_out).sum().backward()
    for k in (1, 2, 3):
        got, want = model.get_submodule(f"fc{k}").weight.grad, ref.get_submodule(f"fc{k}").weight.grad
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), k
        # and quantizing the error did change the gradient (the test can fail)
        assert not torch.allclose(got, base.get_submodule(f"fc{k}").weight.grad)


def test_param_grad_bits_quantize_every_parameter_gradient() -> None:
    torch.manual_seed(4)
    base = mnist_mlp(12, 2, in_features=10, num_classes=4)
    torch.manual_seed(4)
    model = mnist_mlp(12, 2, precision=Precision(param_grad_bits=4), in_features=10, num_classes=4)
    assert [n for n, _ in model.named_children()] == [n for n, _ in base.named_children()]  # hooks, no modules
    assert list(model.state_dict()) == list(base.state_dict())  # hooks are not part of the state_dict
    x = torch.randn(16, 10, generator=torch.Generator().manual_seed(2))
    F.mse_loss(model(x), torch.ones(16, 4)).backward()
    F.mse_loss(base(x), torch.ones(16, 4)).backward()
    for (n, p), (_, r) in zip(model.named_parameters(), base.named_parameters()):
        assert torch.equal(p.grad, quantize_tensor(r.grad, 4, "log")), n


# --------------------------------------------------------------------------------------------------
# Blocks: one layer's bits → modules
# --------------------------------------------------------------------------------------------------
def test_blocks_turn_bits_into_modules() -> None:
    assert type(linear_layer(3, 2, None)) is nn.Linear and linear_layer(3, 2, 4).weight_bits == 4
    assert type(conv_layer(3, 2, None)) is nn.Conv2d and conv_layer(3, 2, 1).padding == (1, 1)
    assert type(act_layer(None)) is nn.Hardtanh
    a = act_layer(2, stochastic=True)
    assert isinstance(a, QuantAct) and (a.bits, a.stochastic) == (2, True)
    assert type(norm_layer(4, "sbn", 1, 1e-4, 0.1)) is ShiftBatchNorm1d
    assert type(norm_layer(4, "sbn", 2, 1e-4, 0.1, output=True)) is nn.BatchNorm2d
    assert grad_quant_layer(None) is None
    gq = grad_quant_layer(5, "linear")
    assert isinstance(gq, GradQuant) and (gq.bits, gq.method) == (5, "linear")
    assert param_grad_quant(nn.Linear(2, 2), None) == []
    assert len(param_grad_quant(nn.Linear(2, 2), 4)) == 2
    for call, name in ((lambda: norm_layer(4, "ln", 1, 1e-4, 0.1), "norm"),  # type: ignore[arg-type]
                       (lambda: norm_layer(4, "bn", 3, 1e-4, 0.1), "dims"),
                       (lambda: linear_layer(3, 2, 0), "weight_bits"),
                       (lambda: grad_quant_layer(1, "linear"), "bits")):
        with pytest.raises(ValueError, match=name):
            call()


# --------------------------------------------------------------------------------------------------
# Issue 11 rows 5, 6, 8: ModelOptions
# --------------------------------------------------------------------------------------------------
SBN = Precision(1, 1, True, "sbn")


@pytest.mark.parametrize("precision", [BINARY, SBN, FLOAT])
def test_default_options_build_todays_model(precision: Precision) -> None:
    torch.manual_seed(5)
    a = mnist_mlp(16, 2, in_features=20, precision=precision)
    torch.manual_seed(5)
    b = mnist_mlp(16, 2, in_features=20, precision=precision, options=ModelOptions())
    x = torch.rand(8, 20) * 2 - 1
    assert_same_model(a, b, x)
    assert repr(a) == repr(b)


def test_options_bias_init_torch7_bounds() -> None:
    torch.manual_seed(0)
    m = mnist_mlp(256, 2, in_features=400, options=ModelOptions(bias_init="torch7"))
    for name, fan_in in [("fc1", 400), ("fc2", 256), ("fc3", 256)]:
        b = getattr(m, name).bias.detach()
        bound = ar.binary_linear_bias_bound_t7(fan_in)
        assert b.abs().max() <= bound
        assert b.abs().max() > 0.9 * bound and b.min() < 0 < b.max()  # spread over U(±1/√fan_in)
        w = getattr(m, name).weight.detach()
        assert w.abs().max() <= 1 and w.abs().max() > 0.99  # weights still U(-1, 1) (BinaryLinear.lua l. 39)
    torch.manual_seed(0)
    zero = mnist_mlp(256, 2, in_features=400)
    assert all(torch.equal(getattr(zero, n).bias, torch.zeros_like(getattr(zero, n).bias)) for n in ("fc1", "fc3"))
    assert torch.equal(zero.fc1.weight, m.fc1.weight)  # bias drawn after the layer's weights
    f = mnist_mlp(16, 1, in_features=20, precision=FLOAT, options=ModelOptions(bias_init="torch7"))
    assert f.fc1.bias.abs().max() <= 1 / 20**0.5  # float layers: PyTorch's init, the same law


def test_options_out_bn_eps_and_bn_running() -> None:
    m = mnist_mlp(16, 2, in_features=20, options=ModelOptions(out_bn_eps=1e-5))
    assert m.bn3.eps == 1e-5 and m.bn1.eps == m.bn2.eps == 1e-4
    assert mnist_mlp(16, 2, in_features=20).bn3.eps == 1e-4
    s = mnist_mlp(16, 2, in_features=20, precision=SBN, options=ModelOptions(out_bn_eps=1e-5))
    assert s.bn3.eps == 1e-5 and s.bn1.eps == 1e-5  # SBN keeps its own Torch7 ε
    las = mnist_mlp(16, 2, in_features=20, options=ModelOptions(bn_running="lasagne"))
    assert all(isinstance(getattr(las, f"bn{k}"), LasagneBatchNorm) for k in (1, 2, 3))
    assert las.bn1.eps == 1e-4 and las.bn1.momentum == 0.1
    las_sbn = mnist_mlp(16, 2, in_features=20, precision=SBN, options=ModelOptions(bn_running="lasagne"))
    assert isinstance(las_sbn.bn1, ShiftBatchNorm1d) and isinstance(las_sbn.bn3, LasagneBatchNorm)
    assert type(mnist_mlp(16, 2, in_features=20).bn1) is nn.BatchNorm1d
    x = torch.rand(10, 20) * 2 - 1
    las(x).sum().backward()
    las.eval()(x[:1])


def test_options_sbn_backward_and_invstd_init() -> None:
    opt = ModelOptions(sbn_backward="torch7", sbn_invstd_init=0.0)
    torch.manual_seed(3)
    t7 = mnist_mlp(16, 2, in_features=20, precision=Precision(1, 1, False, "sbn"), options=opt)
    torch.manual_seed(3)
    ag = mnist_mlp(16, 2, in_features=20, precision=Precision(1, 1, False, "sbn"))
    for k in (1, 2):
        bn = getattr(t7, f"bn{k}")
        assert bn.backward == "torch7" and torch.equal(bn.running_invstd, torch.zeros(16))
        assert getattr(ag, f"bn{k}").backward == "autograd"
    x = torch.rand(12, 20) * 2 - 1
    y, ya = t7(x), ag(x)
    assert torch.equal(y, ya)  # same forward
    y.square().sum().backward()
    ya.square().sum().backward()
    assert not torch.allclose(t7.fc1.weight.grad, ag.fc1.weight.grad)  # a different backward rule


@pytest.mark.parametrize(("field", "value"), [("bn_running", "theano"), ("sbn_backward", "lua"), ("bias_init", "t7"),
                                              ("sbn_invstd_init", -1.0), ("out_bn_eps", 0.0), ("out_bn_eps", True)])
def test_options_validation(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ModelOptions(**{field: value})
    with pytest.raises(TypeError, match="ModelOptions"):
        mnist_mlp(8, 1, options={"bias_init": "torch7"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bias_init"):
        linear_layer(4, 4, 1, "uniform")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        ModelOptions().bn_running = "lasagne"  # type: ignore[misc]  # frozen


def test_norm_layer_options() -> None:
    o = ModelOptions(bn_running="lasagne", out_bn_eps=1e-5, sbn_invstd_init=0.5)
    assert isinstance(norm_layer(4, "bn", 2, 1e-4, 0.1, options=o), LasagneBatchNorm)
    assert norm_layer(4, "bn", 1, 1e-4, 0.1, output=True, options=o).eps == 1e-5
    assert norm_layer(4, "bn", 1, 1e-4, 0.1, options=o).eps == 1e-4
    assert torch.equal(norm_layer(4, "sbn", 1, 1e-4, 0.1, options=o).running_invstd, torch.full((4,), 0.5))
