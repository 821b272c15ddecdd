"""analysis.gradients: the error at each compute layer (closed forms, autograd on a float reference, no side
effects) and what each gradient quantizer does to it."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from qnnlib.analysis.gradients import layer_errors, quantization_stats
from qnnlib.gradquant import GradQuant
from qnnlib.layers import QuantLinear
from qnnlib.losses import pm1_targets


def _square_hinge_grad(y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """dL/dy of mean(max(0, 1 − t·y)²) over N×C: −2·t·max(0, 1 − t·y) / (N·C)."""
    t = pm1_targets(labels, y.shape[1]).to(y.dtype)
    return -2 * t * torch.clamp(1 - t * y, min=0) / y.numel()


def test_single_layer_error_is_the_loss_gradient_in_closed_form() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(5, 4).double()
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(0, 4, (7,))
    errs = layer_errors(lin, x, y)
    assert list(errs) == [""]  # the model is the layer itself
    g = errs[""]
    torch.testing.assert_close(g, _square_hinge_grad(lin(x), y), rtol=0, atol=1e-15)


def test_every_layer_matches_autograd_on_a_float_reference() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    errs = layer_errors(model, x, y, loss="cross_entropy")
    assert list(errs) == ["0", "3"]
    ref = copy.deepcopy(model)
    s1 = ref[0](x)
    s1.retain_grad()
    s2 = ref[3](ref[2](ref[1](s1)))
    s2.retain_grad()
    nn.functional.cross_entropy(s2, y).backward()
    torch.testing.assert_close(errs["0"], s1.grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(errs["3"], s2.grad, rtol=1e-12, atol=1e-15)


def test_the_model_is_left_untouched() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer_errors(model, torch.randn(8, 4), torch.randint(0, 2, (8,)))  # training mode inside: BN stats would move
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_with_a_gradquant_after_the_layer_the_error_returned_is_the_quantized_one() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(QuantLinear(6, 5), GradQuant(4, "log"), nn.BatchNorm1d(5), QuantLinear(5, 3))
    errs = layer_errors(model, torch.randn(10, 6), torch.randint(0, 3, (10,)))
    g = errs["0"]
    nz = g[g != 0].abs()
    assert nz.numel() and torch.equal(torch.log2(nz), torch.round(torch.log2(nz)))  # powers of two
    assert nz.unique().numel() <= 2 ** 3 - 1


def test_bad_inputs_say_what_is_wrong() -> None:
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="same non-zero number of examples"):
        layer_errors(lin, torch.randn(4, 3), torch.randint(0, 2, (5,)))
    with pytest.raises(TypeError, match="must be tensors"):
        layer_errors(lin, [[0.0, 1.0, 2.0]], torch.tensor([1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        layer_errors(nn.Sequential(nn.Flatten()), torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="loss"):
        layer_errors(lin, torch.randn(2, 3), torch.tensor([0, 1]), loss="nope")


# ------------------------------------------------------------------------------------- statistics
def test_stats_in_closed_form_on_a_spread_of_octaves() -> None:
    # magnitudes 2^0 .. 2^-9: a 4-bit linear quantizer (7 steps of 1/7, round half up) keeps 1, 1/2, 1/4, 1/8
    # (1/8 · 7 = 0.875 rounds to 1 step) and flushes 1/16 and below (0.4375 rounds to 0)
    g = torch.tensor([2.0 ** -k * (-1) ** k for k in range(10)])
    st = quantization_stats(g, [4], ["linear", "log"]).set_index("method")
    assert st.loc["linear", "flushed_pct"] == pytest.approx(60.0)
    assert st.loc["linear", "sign_kept_pct"] == pytest.approx(40.0)
    assert st.loc["linear", "levels"] == 4
    assert st.loc["log", "octaves"] == pytest.approx(9.0)  # 2^0 over 2^-9
    # log, 4 bits: 7 octaves 2^0 .. 2^-6 are exact, 2^-7 .. 2^-9 flush
    assert st.loc["log", "flushed_pct"] == pytest.approx(30.0)
    assert st.loc["log", "levels"] == 7
    lost = sum(4.0 ** -k for k in range(7, 10))
    assert st.loc["log", "rel_error"] == pytest.approx(math.sqrt(lost / sum(4.0 ** -k for k in range(10))))
    assert st.loc["log", "rel_error"] < st.loc["linear", "rel_error"]


def test_exact_values_give_zero_error_and_unit_cosine() -> None:
    g = torch.tensor([0.5, -0.25, 0.125, 0.0, -1.0])
    st = quantization_stats(g, [6], ["log"]).iloc[0]
    assert (st.flushed_pct, st.rel_error, st.cosine, st.levels, st.sign_kept_pct) == (0.0, 0.0, pytest.approx(1.0),
                                                                                        4, 100.0)


def test_small_entries_flush_and_the_largest_survives() -> None:
    g = torch.tensor([1.0] + [1e-3] * 4)  # linear 2 bits: one step of max|g|, the small entries flush
    st = quantization_stats(g, [2], ["linear"]).iloc[0]
    assert st.flushed_pct == pytest.approx(80.0) and st.cosine > 0.99
    zero = quantization_stats(torch.tensor([1e-30, 1.0]), [2], ["log"]).iloc[0]
    assert zero.flushed_pct == pytest.approx(50.0)


def test_stats_reject_bad_gradients() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantization_stats(torch.tensor([1.0, float("nan")]), [6])
    with pytest.raises(ValueError, match="all zero"):
        quantization_stats(torch.zeros(3), [6])
    with pytest.raises(TypeError, match="floating-point"):
        quantization_stats(torch.tensor([1, 2]), [6])
    with pytest.raises(ValueError, match="bits"):
        quantization_stats(torch.tensor([1.0, 0.5]), [1], ["linear"])  # the linear quantizer needs a sign bit
