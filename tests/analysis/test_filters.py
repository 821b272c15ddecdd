"""Tests for qnnlib.analysis.filters: unique-filter counting on planted filters, ops saved, rows."""

from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import pytest
import torch

from qnnlib.analysis import filters as F
from qnnlib.models.convnet import convnet
from qnnlib.precision import FLOAT


def planted() -> torch.Tensor:
    """(O=4, I=2, 3, 3): channel 0 holds one filter 4 times; channel 1 holds f, −f, g, g."""
    g = torch.Generator().manual_seed(0)
    f, h, k = (torch.randn(3, 3, generator=g) for _ in range(3))
    w = torch.empty(4, 2, 3, 3)
    w[:, 0] = f
    w[0, 1], w[1, 1], w[2, 1], w[3, 1] = h, -h, k, 0.5 * k  # scaling keeps the sign
    return w


def test_filter_codes_follow_sign_with_zero_positive():
    w = torch.zeros(1, 1, 3, 3)
    assert F.filter_codes(w).item() == 511  # sign(0) = +1: all bits set
    w[0, 0, 0, 0] = -1.0
    assert F.filter_codes(w).item() == 510  # bit 0 = top-left element
    assert F.canonical_codes(torch.tensor([510, 1, 0, 511]), 9).tolist() == [1, 1, 0, 0]


def test_unique_counts_on_planted_filters():
    w = planted()
    assert F.unique_per_input_channel(w).tolist() == [1, 3]
    assert F.unique_per_input_channel(w, sign_invariant=True).tolist() == [1, 2]
    r = F.layer_repetition("conv", w, out_pixels=10)
    assert (r.n_filters, r.unique, r.unique_sign) == (8, 4, 3)
    assert r.unique_fraction == 0.5 and r.unique_fraction_sign == 3 / 8
    assert r.xnor_popcounts == 10 * 9 * 8 and r.xnor_popcounts_unique == 10 * 9 * 4
    assert r.xnor_popcounts_unique_sign == 10 * 9 * 3 and r.accumulations == 10 * 8
    assert r.ops_reduction == 2.0 and r.ops_reduction_sign == pytest.approx(8 / 3)
    assert (r.layer_unique, r.layer_unique_sign) == (4, 3)  # f, h, −h, k over the whole layer


def test_all_distinct_and_all_equal_extremes():
    w = torch.ones(5, 3, 3, 3)
    assert F.layer_repetition("x", w, 1).unique_fraction == 1 / 5
    codes = torch.arange(6)  # six distinct 3×3 patterns in one input channel
    bits = ((codes[:, None] >> torch.arange(9)) & 1).float() * 2 - 1
    w = bits.reshape(6, 1, 3, 3)
    assert F.layer_repetition("x", w, 1).unique_fraction == 1.0


def test_expected_unique_fraction_closed_form_and_random_weights():
    assert F.expected_unique_fraction(1, 512) == pytest.approx(1.0)
    assert F.expected_unique_fraction(2, 2) == pytest.approx(0.75)  # E[U] = 1.5 of 2 draws
    g = torch.Generator().manual_seed(1)
    w = torch.randn(256, 64, 3, 3, generator=g)
    r = F.layer_repetition("rand", w, 1)
    assert r.unique_fraction == pytest.approx(r.random_fraction, abs=0.01)
    assert r.unique_fraction_sign == pytest.approx(r.random_fraction_sign, abs=0.01)
    assert r.layer_unique <= 512 and r.layer_unique_sign <= 256


def test_filter_repetition_on_a_binary_convnet_uses_real_shapes():
    m = convnet((4, 4, 8), fc=8, in_channels=1, image_size=8)
    with torch.no_grad():
        m.conv2.weight.copy_(torch.ones_like(m.conv2.weight))  # one filter everywhere
    df = F.filter_repetition(m, (1, 8, 8))
    assert list(df["layer"]) == [f"conv{k}" for k in range(1, 7)]
    assert df.set_index("layer").loc["conv2", "unique_fraction"] == 1 / 4
    assert list(df["out_pixels"]) == [64, 64, 16, 16, 4, 4]  # conv output, before pooling
    assert df.set_index("layer").loc["conv2", "ops_reduction"] == 4.0
    assert F.filter_repetition(convnet((4, 4, 4), 8, precision=FLOAT, in_channels=1, image_size=8), (1, 8, 8)).empty


def test_repetition_by_epoch_stacks_one_table_per_snapshot():
    torch.manual_seed(0)
    m0 = convnet((4, 4, 8), fc=8, in_channels=1, image_size=8)
    m1 = copy.deepcopy(m0)
    with torch.no_grad():
        m1.conv2.weight.copy_(torch.ones_like(m1.conv2.weight))
    df = F.repetition_by_epoch({5: m1, 0: m0}, (1, 8, 8))
    assert list(df.columns[:2]) == ["epoch", "layer"] and list(df["epoch"]) == [0] * 6 + [5] * 6
    by = df.set_index(["epoch", "layer"])["unique_fraction"]
    assert by[(5, "conv2")] == 1 / 4 and by[(0, "conv3")] == by[(5, "conv3")]  # only conv2 changed
    with pytest.raises(ValueError, match="at least one model"):
        F.repetition_by_epoch({}, (1, 8, 8))


def test_channel_unique_fractions_long_form():
    m = convnet((4, 4, 8), fc=8, in_channels=1, image_size=8)
    with torch.no_grad():
        m.conv2.weight.copy_(planted().repeat(1, 2, 1, 1))  # O=4, I=4: channels 0, 2 one filter; 1, 3: f, −f, g, g
    df = F.channel_unique_fractions(m)
    c2 = df[df["layer"] == "conv2"].set_index(["counting", "in_channel"])["unique_fraction"]
    assert c2["exact"].tolist() == [0.25, 0.75, 0.25, 0.75]
    assert c2["sign-invariant"].tolist() == [0.25, 0.5, 0.25, 0.5]
    assert len(df) == 2 * (1 + 4 + 4 + 4 + 4 + 8)  # every input channel of the six convs, both countings


def test_comparison_rows_are_valid_metrics_rows(tmp_path):
    from qnnlib.experiments import results

    w = planted()
    rep = pd.DataFrame([dataclasses.asdict(F.layer_repetition("c", w, 4))])
    rows = F.comparison_rows(rep, "fashion-mnist", {"train": 1, "valid": 1, "test": 1})
    assert rows[0]["value"] == 50.0 and rows[1]["value"] == 37.5 and rows[2]["value"] == 2.0
    results.write_metrics("filters_test", "t", config={}, metrics={"rows": rows}, history=[],
                          dataset={"name": "fashion-mnist"}, wall_time_s=0.0, results_dir=tmp_path)
    table = results.comparison_table("t", tmp_path)
    assert table.loc[0, "paper"] == 42.0 and not table.loc[0, "comparable"]  # different dataset, said so
    assert "DIFFERENT DATASET" in table.loc[0, "note"]
    with pytest.raises(ValueError):
        F.comparison_rows(rep.iloc[:0], "x")


def test_sign_changes():
    a = convnet((4, 4, 8), fc=8, in_channels=1, image_size=8)
    b = convnet((4, 4, 8), fc=8, in_channels=1, image_size=8)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.conv2.weight.copy_(-a.conv2.weight.sign() * (a.conv2.weight.abs() + 0.1))  # every sign flipped
    df = F.sign_changes(b, a).set_index("layer")["sign_changed"]
    assert df["conv2"] == 1.0 and df["conv1"] == 0.0 and len(df) == 6
