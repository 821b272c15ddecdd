"""Property test of issue 10 (row 10): every public size or bit-width argument has a documented range.

Over the public functions of qnnlib.quantize, qnnlib.gradquant, the layer constructors of qnnlib.layers and
qnnlib.precision.Precision/LayerBits: a value outside the documented range (0, negatives, the maximum + 1 …
1000, booleans, floats, strings) raises ``ValueError`` or ``TypeError`` whose message names the parameter;
a value inside it works.  Maxima: docs/decisions.md D22 (``MAX_BITS`` for weights and activations,
``MAX_GRAD_BITS`` for gradients, no maximum for layer sizes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qnnlib import precision
from qnnlib.gradquant import GradQuant, quantize_grad, quantize_tensor, register_param_grad_quant
from qnnlib.layers import BinaryConv2d, BinaryLinear, QuantAct, QuantConv2d, QuantLinear, quantize_weight
from qnnlib.precision import LayerBits, Precision
from qnnlib.quantize import (
    MAX_BITS,
    MAX_GRAD_BITS,
    check_bits,
    linear_levels,
    linear_quant,
    linear_quant_ste,
    log_levels,
    log_quant,
)

PROPS = settings(max_examples=25, deadline=None)
X = torch.linspace(-1.5, 1.5, 7)

# (label, parameter name, smallest valid value, largest valid value or None, call(value))
Call = Callable[[Any], object]
TARGETS: list[tuple[str, str, int, int | None, Call]] = [
    ("check_bits", "bits", 1, MAX_BITS, lambda v: check_bits(v)),
    ("check_bits-grad", "grad_bits", 1, MAX_GRAD_BITS, lambda v: check_bits(v, "grad_bits", maximum=MAX_GRAD_BITS)),
    ("linear_levels", "bits", 1, MAX_BITS, lambda v: linear_levels(v)),
    ("linear_quant", "bits", 1, MAX_BITS, lambda v: linear_quant(X, v)),
    ("linear_quant-stochastic", "bits", 1, MAX_BITS, lambda v: linear_quant(X, v, stochastic=True)),
    ("linear_quant_ste", "bits", 1, MAX_BITS, lambda v: linear_quant_ste(X, v)),
    ("log_levels", "bits", 1, MAX_GRAD_BITS, lambda v: log_levels(v, 0)),
    ("log_quant", "bits", 1, MAX_GRAD_BITS, lambda v: log_quant(X, v)),
    ("quantize_tensor-log", "bits", 1, MAX_GRAD_BITS, lambda v: quantize_tensor(X, v)),
    ("quantize_tensor-linear", "bits", 2, MAX_GRAD_BITS, lambda v: quantize_tensor(X, v, "linear")),
    ("quantize_grad", "bits", 1, MAX_GRAD_BITS, lambda v: quantize_grad(X, v)),
    ("GradQuant", "bits", 1, MAX_GRAD_BITS, lambda v: GradQuant(v)),
    ("GradQuant-linear", "bits", 2, MAX_GRAD_BITS, lambda v: GradQuant(v, "linear")),
    ("register_param_grad_quant", "bits", 1, MAX_GRAD_BITS, lambda v: register_param_grad_quant(nn.Linear(2, 2), v)),
    ("quantize_weight", "bits", 1, MAX_BITS, lambda v: quantize_weight(X, v)),
    ("QuantLinear", "weight_bits", 1, MAX_BITS, lambda v: QuantLinear(2, 2, weight_bits=v)),
    ("QuantConv2d", "weight_bits", 1, MAX_BITS, lambda v: QuantConv2d(1, 1, 1, weight_bits=v)),
    ("QuantAct", "bits", 1, MAX_BITS, lambda v: QuantAct(v)),
    ("QuantLinear.in_features", "in_features", 1, None, lambda v: QuantLinear(v, 2)),
    ("QuantLinear.out_features", "out_features", 1, None, lambda v: QuantLinear(2, v)),
    ("BinaryLinear.in_features", "in_features", 1, None, lambda v: BinaryLinear(v, 2)),
    ("QuantConv2d.in_channels", "in_channels", 1, None, lambda v: QuantConv2d(v, 1, 1)),
    ("QuantConv2d.out_channels", "out_channels", 1, None, lambda v: QuantConv2d(1, v, 1)),
    ("BinaryConv2d.kernel_size", "kernel_size", 1, None, lambda v: BinaryConv2d(1, 1, v)),
    ("BinaryConv2d.kernel_size-pair", "kernel_size", 1, None, lambda v: BinaryConv2d(1, 1, (1, v))),
    ("Precision.weight_bits", "weight_bits", 1, precision.MAX_BITS, lambda v: Precision(weight_bits=v)),
    ("Precision.act_bits", "act_bits", 1, precision.MAX_BITS, lambda v: Precision(act_bits=v)),
    ("Precision.grad_bits", "grad_bits", 1, precision.MAX_GRAD_BITS, lambda v: Precision(grad_bits=v)),
    ("Precision.param_grad_bits", "param_grad_bits", 1, precision.MAX_GRAD_BITS,
     lambda v: Precision(param_grad_bits=v)),
    ("LayerBits.weight_bits", "weight_bits", 1, precision.MAX_BITS, lambda v: LayerBits(weight_bits=v)),
    ("LayerBits.grad_bits", "grad_bits", 1, precision.MAX_GRAD_BITS, lambda v: LayerBits(grad_bits=v)),
]
IDS = [label for label, *_ in TARGETS]
SIZE_CAP = 64  # layer sizes have no maximum; valid sizes are drawn small to keep the test fast

not_an_int = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.sampled_from([1.5, 2.0, "2", b"2", [2], (2,), complex(2, 0)]),
)


def _raises_naming(call: Call, value: Any, name: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        call(value)
    assert re.search(rf"\b{re.escape(name)}\b", str(info.value)), f"{value!r}: {info.value}"


@pytest.mark.parametrize(("name", "lo", "hi", "call"), [t[1:] for t in TARGETS], ids=IDS)
@PROPS
@given(data=st.data())
def test_out_of_range_raises_naming_parameter(
    name: str, lo: int, hi: int | None, call: Call, data: st.DataObject
) -> None:
    below = st.integers(min_value=-1000, max_value=lo - 1)
    above = st.integers(min_value=hi + 1, max_value=1000) if hi is not None else st.nothing()
    value = data.draw(st.one_of(below, above, not_an_int), label="value")
    _raises_naming(call, value, name)


@pytest.mark.parametrize(("name", "lo", "hi", "call"), [t[1:] for t in TARGETS], ids=IDS)
def test_edges_of_the_range(name: str, lo: int, hi: int | None, call: Call) -> None:
    call(lo)  # the smallest valid value works
    bad: list[Any] = [lo - 1, 0, -1, True, False, 1.5, float(lo), "2"]
    if hi is not None:
        call(hi)  # and the largest (every target is cheap at its maximum: linear_levels(16) has 65536 levels)
        bad += [hi + 1, 33, 100, 1000]
    for value in bad:
        _raises_naming(call, value, name)


@pytest.mark.parametrize(("name", "lo", "hi", "call"), [t[1:] for t in TARGETS], ids=IDS)
@PROPS
@given(data=st.data())
def test_in_range_works(name: str, lo: int, hi: int | None, call: Call, data: st.DataObject) -> None:
    value = data.draw(st.integers(min_value=lo, max_value=SIZE_CAP if hi is None else hi), label="value")
    call(value)
