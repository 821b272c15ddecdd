"""Tests for qnnlib.runtime.folding: BN + sign folded into (threshold, flip) per neuron — read off monotone tables,
applied by the Numba kernel and the array code alike, fragile neurons counted, the first-layer float64
threshold equal to the real-valued decision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnnlib.runtime.bitpack import pack
from qnnlib.runtime.folding import (
    NonFiniteStatisticsError,
    check_finite,
    first_layer_thresholds,
    hidden_thresholds,
    threshold_activations,
    threshold_from_table,
    threshold_pack,
)


def test_threshold_from_table_reads_increasing_decreasing_and_constant_columns():
    k = 4  # d = -4, -2, 0, 2, 4
    cols = [[0, 0, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]
    on = torch.tensor(cols, dtype=torch.bool).T
    t, f = threshold_from_table(on, k)
    d = np.arange(-k, k + 1, 2)
    for j, col in enumerate(cols):
        assert np.array_equal(f[j] * d >= t[j], np.array(col, dtype=bool)), (j, t[j], f[j])
    assert list(f) == [1, -1, 1, 1, 1, -1]
    assert t[2] > k and t[3] <= -k  # constant neurons: out-of-range thresholds


def test_threshold_from_table_rejects_non_monotone_columns():
    on = torch.tensor([[0, 1, 0, 1, 1]], dtype=torch.bool).T
    with pytest.raises(ValueError, match="not monotone"):
        threshold_from_table(on, 4)
    with pytest.raises(ValueError, match="K\\+1"):
        threshold_from_table(torch.ones(3, 2, dtype=torch.bool), 4)


def test_threshold_pack_kernel_matches_bitpack():
    rng = np.random.default_rng(1)
    for h in (1, 63, 64, 65, 200):
        d = rng.integers(-50, 50, (9, h)).astype(np.int32)
        t = rng.integers(-40, 40, h).astype(np.int32)
        f = rng.choice(np.array([-1, 1], np.int8), h)
        out = np.empty((9, -(-h // 64)), np.uint64)
        threshold_pack(d, t, f, out)
        assert np.array_equal(out, pack(f * d.astype(np.int64) >= t))


def test_fragile_neuron_is_counted_when_the_crossing_sits_on_a_lattice_point():
    k = 64
    bias = torch.zeros(3)
    bnp = {"mean": torch.tensor([2.0, 2.5, -3.0]), "var": torch.ones(3), "weight": torch.tensor([1.0, 1.0, -1.0]),
           "bias": torch.zeros(3), "eps": 1e-4}
    t, f, fragile = hidden_thresholds(k, bias, bnp)
    assert fragile == 1  # only neuron 0: BN(d = 2) is exactly 0, one ulp below flips it
    assert (t[0], f[0]) == (2, 1) and (t[1], f[1]) == (4, 1) and (t[2], f[2]) == (4, -1)


def test_threshold_activations_pack_f_d_ge_t():
    rng = np.random.default_rng(2)
    for rows, h in ((9, 1), (5, 64), (3, 130), (0, 10)):
        d = rng.integers(-50, 50, (rows, h)).astype(np.int32)
        t = rng.integers(-40, 40, h).astype(np.int32)
        f = rng.choice(np.array([-1, 1], np.int8), h)
        out = threshold_activations(d, t, f)
        assert out.shape == (rows, -(-h // 64)) and out.dtype == np.uint64
        if rows:
            assert np.array_equal(out, pack(f * d.astype(np.int64) >= t))


def test_first_layer_threshold_is_the_real_valued_decision():
    rng = np.random.default_rng(3)
    k, h = 20, 40
    wb = rng.choice(np.array([-1, 1], np.int64), (h, k))
    row_sum = wb.sum(1).astype(np.int32)
    bias = rng.standard_normal(h).astype(np.float32)
    bnp = {"mean": torch.randn(h, dtype=torch.float32) * 3, "var": torch.rand(h) * 10 + 1,
           "weight": torch.randn(h), "bias": torch.randn(h), "eps": 1e-4}
    bnp["weight"][::7] = 0.0  # constant neurons
    t, f = first_layer_thresholds(k, row_sum, bias, bnp)
    d = (rng.integers(0, 256, (500, k)) @ wb.T).astype(np.int64)  # D = W_b·p
    s = 2.0 / 255.0 * d - row_sum + bias.astype(np.float64)  # W_b·x + bias
    g, b = bnp["weight"].double().numpy(), bnp["bias"].double().numpy()
    bn = (s - bnp["mean"].double().numpy()) / np.sqrt(bnp["var"].double().numpy() + 1e-4) * g + b
    assert np.array_equal(f * d >= t, bn >= 0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_first_layer_threshold_rejects_non_finite_statistics():
    bnp = {"mean": torch.tensor([0.0, float("nan")]), "var": torch.ones(2), "weight": torch.ones(2),
           "bias": torch.zeros(2), "eps": 1e-4}
    with pytest.raises(NonFiniteStatisticsError, match="non-finite BN statistics"):
        first_layer_thresholds(8, np.zeros(2, np.int32), np.zeros(2, np.float32), bnp)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("param", ["mean", "var", "weight", "bias"])
def test_hidden_thresholds_reject_non_finite_parameters(param, value):
    """Issue 10 row 2: a NaN/inf parameter made every candidate d fail BN >= 0, a silently constant neuron."""
    bnp = {"mean": torch.zeros(3), "var": torch.ones(3), "weight": torch.ones(3), "bias": torch.zeros(3), "eps": 1e-4}
    bnp[param] = bnp[param].clone()
    bnp[param][1] = value
    with pytest.raises(NonFiniteStatisticsError, match=r"layer 5 has non-finite BN statistics: .* \[1\]"):
        hidden_thresholds(16, torch.zeros(3), bnp, layer="layer 5")
    with pytest.raises(NonFiniteStatisticsError, match=r"layer 1 has non-finite BN statistics: .* \[1\]"):
        first_layer_thresholds(16, np.zeros(3, np.int32), np.zeros(3, np.float32), bnp)


def test_check_finite_names_the_bias_and_accepts_finite_parameters():
    bnp = {"mean": torch.zeros(2), "var": torch.ones(2), "weight": torch.tensor([0.0, -1.0]), "bias": torch.zeros(2),
           "eps": 1e-4}
    check_finite(bnp, torch.zeros(2), "layer 2")  # γ = 0 and γ < 0 are fine
    with pytest.raises(NonFiniteStatisticsError, match=r"layer 2 .*fc bias is -inf for 1 neuron\(s\) \[0\]"):
        check_finite(bnp, torch.tensor([float("-inf"), 0.0]), "layer 2")
