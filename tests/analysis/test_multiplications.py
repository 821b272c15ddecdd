"""Multiplications per training step: closed forms on a hand-sized net, the variants' ordering, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnnlib.analysis import multiplications as M
from qnnlib.gradquant import GradQuant
from qnnlib.layers import QuantAct, QuantLinear
from qnnlib.models.mlp import mnist_mlp
from qnnlib.norm import ShiftBatchNorm1d
from qnnlib.precision import BINARY, FLOAT, Precision


def _net(norm: type[nn.Module] = nn.BatchNorm1d, grad: bool = False) -> nn.Module:
    layers: list[nn.Module] = [QuantLinear(4, 3, weight_bits=1)]
    if grad:
        layers.append(GradQuant(6, "log"))
    layers += [norm(3), QuantAct(1), QuantLinear(3, 2, weight_bits=1)]
    if grad:
        layers.append(GradQuant(6, "log"))
    layers.append(norm(2))
    return nn.Sequential(*layers)


def test_closed_form_on_a_hand_sized_binary_net() -> None:
    c = M.training_step(_net(), (4,), 5, optimizer="adam", loss="square_hinge")
    by = c.set_index(["component", "operation"])
    # first layer: 12 MACs x 5 images; binary weights: sign flips forward; real input: weight gradient multiplies
    assert by.loc[("0", "forward products"), ["multiplications", "sign_flips"]].tolist() == [0, 60]
    assert by.loc[("0", "weight gradient"), "multiplications"] == 60 and ("0", "backward input error") not in by.index
    assert by.loc[("1", "batch norm"), "multiplications"] == 8 * 15
    # second layer: binary weights and ±1 inputs: every product is a sign flip
    assert by.loc["3", ["multiplications", "sign_flips"]].sum().tolist() == [0, 90]
    params = 12 + 3 + 6 + 6 + 2 + 4
    assert by.loc[("optimizer", "adam update"), ["multiplications", "divisions"]].tolist() == [6 * params, 2 * params]
    assert by.loc[("loss", "square_hinge"), ["multiplications", "sign_flips"]].tolist() == [20, 10]
    t = M.totals(c)
    assert t["multiplications"] == 60 + 120 + 80 + 6 * params + 20 and t["sign_flips"] == 60 + 90 + 10


def test_shift_variants_trade_multiplications_for_shifts() -> None:
    base = M.totals(M.training_step(_net(), (4,), 5, optimizer="adam"))
    sbn = M.totals(M.training_step(_net(ShiftBatchNorm1d), (4,), 5, optimizer="adam"))
    both = M.totals(M.training_step(_net(ShiftBatchNorm1d), (4,), 5, optimizer="shift_adamax"))
    assert base["multiplications"] - sbn["multiplications"] == 200 and sbn["shifts"] == 200
    assert both["divisions"] == 0 and both["multiplications"] == 60 + 20  # the first layer's weight gradient, loss
    logg = M.totals(M.training_step(_net(ShiftBatchNorm1d, grad=True), (4,), 5, optimizer="shift_adamax"))
    assert logg["multiplications"] == 20  # a log-quantized error turns the weight gradient into shifts


def test_paper_models_order_float_binary_shift() -> None:
    counts = {}
    for label, p, opt in (("float", FLOAT, "adam"), ("bnn", BINARY, "adam"),
                          ("bnn-shift", Precision(1, 1, norm="sbn"), "shift_adamax"),
                          ("bnn-shift-g6", Precision(1, 1, norm="sbn", grad_bits=6), "shift_adamax")):
        counts[label] = M.totals(M.training_step(mnist_mlp(64, precision=p), (784,), 10, optimizer=opt))
    mul = {k: v["multiplications"] for k, v in counts.items()}
    assert mul["float"] > mul["bnn"] > mul["bnn-shift"] > mul["bnn-shift-g6"]
    assert counts["float"]["sign_flips"] < counts["bnn"]["sign_flips"]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of"):
        M.training_step(_net(), (4,), 5, optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss must be one of"):
        M.training_step(_net(), (4,), 5, loss="mse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        M.training_step(_net(), (4,), 0)

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.p

    with pytest.raises(NotImplementedError, match=r"0 \(Odd\): no counting rule"):
        M.training_step(nn.Sequential(Odd()), (4,), 2)
