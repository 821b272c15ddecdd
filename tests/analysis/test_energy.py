"""Tests for qnnlib.analysis.energy: counts checked by hand on tiny models, energy units, paper-vs-ours rows.
The packed checkpoint on disk is tested in test_packed_checkpoint.py, the Horowitz tables in test_horowitz.py."""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from qnnlib.analysis import energy as E
from qnnlib.analysis.horowitz import HOROWITZ_SOURCE
from qnnlib.layers import QuantAct, QuantConv2d, QuantLinear
from qnnlib.models.convnet import convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import FLOAT, Precision

DRAM, SRAM1M = 1300.0, 100.0  # pJ per 64-bit access (Horowitz low DRAM, 1M SRAM): the defaults
XNOR = 0.03  # default pJ per binary connection (= int8 add)
FP32_MAC, FP16_MAC, INT_MAC = 3.7 + 0.9, 1.1 + 0.4, 0.2 + 0.1


def tiny_mlp(wb: int | None = 1, ab: int | None = 1) -> nn.Sequential:
    """4 → 3 → 2: fc1 → bn1 → act1 → fc2 → bn2."""
    lin = (lambda i, o: nn.Linear(i, o)) if wb is None else (lambda i, o: QuantLinear(i, o, weight_bits=wb))
    act = nn.Hardtanh() if ab is None else QuantAct(ab)
    return nn.Sequential(OrderedDict(fc1=lin(4, 3), bn1=nn.BatchNorm1d(3), act1=act, fc2=lin(3, 2),
                                     bn2=nn.BatchNorm1d(2)))


def tiny_conv() -> nn.Sequential:
    """1×4×4 → conv 3×3 (2 maps, same) → pool 2 → bn → sign → flatten (8) → fc 3."""
    return nn.Sequential(OrderedDict(conv1=QuantConv2d(1, 2, 3, padding=1), pool1=nn.MaxPool2d(2),
                                     bn1=nn.BatchNorm2d(2), act1=QuantAct(1), flatten=nn.Flatten(),
                                     fc2=QuantLinear(8, 3)))


def row(acct: pd.DataFrame, layer: str, scheme: str) -> pd.Series:
    r = acct[(acct["layer"] == layer) & (acct["scheme"] == scheme)]
    assert len(r) == 1
    return r.iloc[0]


# ------------------------------------------------------------------------- energy assumptions
def test_access_energy_levels_and_auto_placement():
    a = E.EnergyAssumptions()
    assert a.access_pj("DRAM", 1) == DRAM
    assert E.EnergyAssumptions(dram="high").access_pj("DRAM", 1) == 2600.0
    assert a.access_pj("auto", 8 * 1024) == 10.0  # fits 8K
    assert a.access_pj("auto", 8 * 1024 + 1) == 20.0
    assert a.access_pj("auto", 1024**2) == 100.0
    assert a.access_pj("auto", 1024**2 + 1) == DRAM


def test_assumptions_are_validated_and_described():
    with pytest.raises(ValueError):
        E.EnergyAssumptions(weight_memory="L2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        E.EnergyAssumptions(xnor_pj_per_connection=-1)
    d = E.EnergyAssumptions().describe()
    assert d["weight_memory"] == "DRAM" and d["source"] == HOROWITZ_SOURCE


# ----------------------------------------------------------------------- hand-counted 2-layer MLP
def test_binary_mlp_native_counts_by_hand():
    acct = E.account(tiny_mlp(), (4,))
    fc1, bn1, fc2, bn2 = (row(acct, n, "native") for n in ("fc1", "bn1", "fc2", "bn2"))
    # fc1: binary weights, 8-bit input → 8 bit-plane XNOR-popcounts per MAC (Eq. 6)
    assert (fc1.macs, fc1.weight_bits, fc1.input_bits) == (12, 1, 8)
    assert (fc1.float_macs, fc1.kbit_macs, fc1.xnor_popcounts) == (0, 0, 96)
    assert fc1.compute_pj == pytest.approx(96 * XNOR)
    # memory: 12 weight bits (1 word) + 3 float32 biases (96 bits, 2 words), read from DRAM
    assert (fc1.weight_bytes, fc1.aux_bytes, fc1.weight_accesses) == (1.5, 12.0, 3)
    assert fc1.weight_mem_pj == pytest.approx(3 * DRAM)
    # activations: 4×8-bit input read (1 word) + 3 binary outputs written (1 word)
    assert fc1.act_bytes == pytest.approx((32 + 3) / 8)
    assert fc1.act_accesses == 2 and fc1.act_mem_pj == pytest.approx(2 * SRAM1M)
    # bn1: folded to 2×3 float32 values (3 words), a threshold compare (int32 add) per element
    assert (bn1.params, bn1.aux_params, bn1.weight_accesses) == (6, 6, 3)
    assert bn1.compute_pj == pytest.approx(3 * 0.1)
    # fc2: binary × binary → one XNOR-popcount per MAC; the last layer writes float32 scores
    assert (fc2.macs, fc2.input_bits, fc2.xnor_popcounts) == (6, 1, 6)
    assert fc2.compute_pj == pytest.approx(6 * XNOR)
    assert fc2.act_accesses == 1 + 1 and fc2.weight_accesses == 1 + 1
    assert bn2.compute_pj == pytest.approx(2 * 0.1)
    assert fc1.energy_pj == pytest.approx(96 * XNOR + 3 * DRAM + 2 * SRAM1M)


def test_fp32_scheme_by_hand():
    acct = E.account(tiny_mlp(), (4,))
    fc1 = row(acct, "fc1", "fp32")
    assert (fc1.float_macs, fc1.xnor_popcounts, fc1.weight_bits, fc1.input_bits) == (12, 0, 32, 32)
    assert fc1.compute_pj == pytest.approx(12 * FP32_MAC)
    assert fc1.weight_accesses == 384 // 64 + 2  # 12 float32 weights + 3 float32 biases
    assert fc1.act_accesses == 2 + 2  # 4 and 3 float32 values
    assert fc1.energy_pj == pytest.approx(12 * FP32_MAC + 8 * DRAM + 4 * SRAM1M)
    bn1 = row(acct, "bn1", "fp32")
    assert bn1.compute_pj == pytest.approx(3 * FP32_MAC)
    fp16 = row(acct, "fc1", "fp16")
    assert fp16.compute_pj == pytest.approx(12 * FP16_MAC) and fp16.weight_bytes == 24
    int8 = row(acct, "fc2", "int8")
    assert (int8.kbit_macs, int8.compute_pj) == (6, pytest.approx(6 * INT_MAC))


def test_float_model_native_is_fp32_and_binary_model_native_is_binary():
    for model, same in ((tiny_mlp(None, None), "fp32"), (tiny_mlp(), "binary")):
        acct = E.account(model, (4,))
        nat, ref = E.layer_table(acct, "native"), E.layer_table(acct, same)
        np.testing.assert_allclose(nat["energy_pj"], ref["energy_pj"])
        assert (nat["weight_accesses"] == ref["weight_accesses"]).all()


def test_kbit_and_binaryconnect_mac_kinds():
    acct = E.account(tiny_mlp(2, 2), (4,))
    fc1, fc2 = row(acct, "fc1", "native"), row(acct, "fc2", "native")
    assert (fc1.input_bits, fc1.kbit_macs) == (8, 12)  # 2-bit weights × 8-bit input: integer MACs
    assert (fc2.input_bits, fc2.kbit_macs, fc2.compute_pj) == (2, 6, pytest.approx(6 * INT_MAC))
    # binary weights with float activations (BinaryConnect): float adds, no multiplications
    bc = E.account(tiny_mlp(1, None), (4,))
    fc2 = row(bc, "fc2", "native")
    assert (fc2.float_macs, fc2.xnor_popcounts) == (6, 0)
    assert fc2.compute_pj == pytest.approx(6 * 0.9)


def test_one_conv_net_by_hand():
    acct = E.account(tiny_conv(), (1, 4, 4))
    c, fc = row(acct, "conv1", "native"), row(acct, "fc2", "native")
    assert c.macs == 2 * 4 * 4 * 1 * 9 and c.xnor_popcounts == 288 * 8
    assert c.in_shape == (1, 4, 4) and c.out_shape == (2, 4, 4)
    # conv1 writes what fc2 reads: 8 pooled, binarized values (1 word); reads 16 8-bit pixels (2 words)
    assert c.act_accesses == 2 + 1 and c.act_bytes == pytest.approx((16 * 8 + 8) / 8)
    assert (fc.macs, fc.input_bits, fc.xnor_popcounts) == (24, 1, 24)  # pool/flatten keep the sign
    assert row(acct, "pool1", "native").macs == 0


def test_totals_compression_and_ratios():
    t = E.scheme_totals(E.account(mnist_mlp(hidden=64, depth=2), (784,)))
    assert t.loc["binary", "weight_compression"] == pytest.approx(32.0)
    assert t.loc["fp16", "weight_compression"] == pytest.approx(2.0)
    assert t.loc["int8", "weight_compression"] == pytest.approx(4.0)
    assert 1 < t.loc["binary", "memory_compression"] < 32  # float BN/biases dilute it
    assert t.loc["fp32", "energy_reduction"] == 1.0
    assert t.loc["binary", "energy_reduction"] > t.loc["int8", "energy_reduction"] > t.loc["fp16", "energy_reduction"] > 1
    assert t.loc["binary", "energy_pj"] == pytest.approx(t.loc["native", "energy_pj"])


def test_summary_prints_and_returns_per_layer_frame():
    lines: list[str] = []
    df = E.summary(mnist_mlp(hidden=32, depth=1), (784,), print_fn=lines.append)
    text = "\n".join(lines)
    assert "fc1 (QuantLinear)" in text and "compression" in text and "Total params" in text
    assert list(df["layer"]) == ["fc1", "bn1", "act1", "fc2", "bn2"]
    assert {f"energy_pj_{s}" for s in E.SCHEMES} <= set(df.columns)
    assert df.attrs["totals"]["binary"]["weight_compression"] == pytest.approx(32.0)
    assert int(df["params"].sum()) == sum(p.numel() for p in mnist_mlp(hidden=32, depth=1).parameters())


def test_account_leaves_the_model_as_it_was():
    m = tiny_mlp()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    E.account(m, (4,))
    assert m.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_float_precision_model_and_paper_mlp_totals():
    # the paper's MLP: 784-3x4096-10; parameters are a closed form
    t = E.scheme_totals(E.account(mnist_mlp(precision=FLOAT), (784,)))
    macs = 784 * 4096 + 2 * 4096 * 4096 + 4096 * 10
    assert t.loc["native", "macs"] == macs and t.loc["native", "float_macs"] == macs
    assert t.loc["binary", "xnor_popcounts"] == 8 * 784 * 4096 + 2 * 4096 * 4096 + 4096 * 10
    assert math.isclose(t.loc["native", "energy_pj"], t.loc["fp32", "energy_pj"])
    assert Precision().label == "W1A1"


# ------------------------------------------------------------- module kinds: known or refused
def test_grad_quant_is_identity_at_inference_precision_kept_and_free():
    torch.manual_seed(0)
    a = E.account(mnist_mlp(hidden=16, depth=2, in_features=12), (12,))
    torch.manual_seed(0)
    gq_model = mnist_mlp(hidden=16, depth=2, in_features=12, precision=Precision(grad_bits=6))
    b = E.account(gq_model, (12,))
    assert set(b["layer"]) - set(a["layer"]) == {"gq1", "gq2", "gq3"}
    for scheme in E.SCHEMES:
        gq = row(b, "gq2", scheme)
        assert (gq.kind, gq.type, gq.params, gq.macs, gq.energy_pj) == ("passthrough", "GradQuant", 0, 0, 0.0)
    # the binary activations pass through GradQuant's place unchanged: fc2/fc3 still read 1-bit inputs
    assert row(b, "fc2", "native").input_bits == 1 and row(b, "fc2", "native").xnor_popcounts == 16 * 16
    ta, tb = E.scheme_totals(a), E.scheme_totals(b)
    pd.testing.assert_frame_equal(ta, tb)
    conv = E.account(convnet((2, 2, 2), 4, precision=Precision(grad_bits=6), in_channels=1, image_size=8), (1, 8, 8))
    assert row(conv, "fc7", "native").input_bits == 1  # through gq6 → pool6 → bn6 → act6 → flatten


class _Gated(nn.Module):
    """A container with a parameter of its own: its forward arithmetic is invisible to leaf hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.gate = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.gate


@pytest.mark.parametrize(
    ("model", "shape", "where"),
    [
        (nn.Sequential(OrderedDict(lstm1=nn.LSTM(4, 3))), (2, 4), "lstm1 (LSTM)"),
        (nn.Sequential(OrderedDict(fc1=QuantLinear(4, 3), act1=nn.Sigmoid())), (4,), "act1 (Sigmoid)"),
        (nn.Sequential(OrderedDict(c=QuantConv2d(1, 2, 3), p=nn.LPPool2d(2, 2))), (1, 6, 6), "p (LPPool2d)"),
        (nn.Sequential(OrderedDict(c=nn.Conv1d(1, 2, 3))), (1, 6), "c (Conv1d)"),
        (nn.Sequential(OrderedDict(ln=nn.LayerNorm(4))), (4,), "ln (LayerNorm)"),
        (nn.Sequential(OrderedDict(block=nn.Sequential(nn.Linear(4, 4), nn.GELU()))), (4,), "block.1 (GELU)"),
        (nn.Sequential(OrderedDict(g=_Gated())), (4,), "g (_Gated)"),
        (nn.GRU(4, 3), (2, 4), "<model> (GRU)"),
    ],
)
def test_account_raises_on_modules_it_cannot_account(model: nn.Module, shape: tuple, where: str):
    with pytest.raises(NotImplementedError, match=re.escape(where)):
        E.account(model, shape)
    with pytest.raises(NotImplementedError, match="energy account"):
        E.check_accountable(model)


def test_every_module_of_the_paper_models_is_known():
    for precision in (Precision(), FLOAT, Precision(1, 1, True, "sbn", grad_bits=6), Precision(2, None)):
        E.check_accountable(mnist_mlp(8, 2, precision=precision, dropout_in=0.2, dropout_hidden=0.5))
        E.check_accountable(convnet((2, 2, 2), 4, precision=precision, image_size=8))
    kinds = set(E.account(convnet((2, 2, 2), 4, in_channels=1, image_size=8), (1, 8, 8))["kind"])
    assert kinds == {"conv", "linear", "norm", "act", "pool", "passthrough"}


# ----------------------------------------------------------------------------------- on disk
def test_comparison_rows_match_paper_keys(tmp_path):
    from qnnlib.experiments import results

    t = E.scheme_totals(E.account(tiny_mlp(), (4,)))
    rows = E.comparison_rows({"tiny": t}, {"tiny": {"disk_ratio": 30.0, "float_state_dict_bytes": 300,
                                                    "packed_bytes": 10, "binary_weight_ratio": 32.0}})
    assert [r["metric"] for r in rows] == ["memory size reduction x", "memory access reduction x",
                                          "energy reduction x", "memory size reduction x"]
    assert rows[0]["value"] == pytest.approx(32.0)
    results.write_metrics("energy_test", "t", config={}, metrics={"rows": rows}, history=[],
                          dataset={"name": "-"}, wall_time_s=0.0, results_dir=tmp_path)
    table = results.comparison_table("t", tmp_path)
    assert table.loc[0, "paper"] == 32.0 and bool(table.loc[0, "comparable"])
    assert table.loc[0, "delta"] == pytest.approx(0.0)


def test_branches_and_concatenation_are_accounted_not_skipped() -> None:
    """GoogLeNet: every inception branch's conv reads the k-bit concatenation of the previous module; the output
    layer reads the (float) global average; a concatenation of branches of different precisions is float."""
    from qnnlib.analysis.filters import filter_repetition  # noqa: PLC0415
    from qnnlib.models.alexnet import alexnet_qnn  # noqa: PLC0415
    from qnnlib.models.googlenet import googlenet_qnn  # noqa: PLC0415

    g = googlenet_qnn(1, 1, width=0.125)
    inp = {r.name: r.in_prec for r in E.trace(g, (3, 64, 64))}
    assert inp["conv1.conv"] == "input" and inp["fc"] == "fp32"
    inner = [n for n in inp if n.startswith("inception.") and n.endswith(".conv") and "inception3a" not in n]
    assert len(inner) == 8 * 6 and all(inp[n] == 1 for n in inner)  # each reads ±1 (the first reads conv2's output)
    assert all(inp[n] == 1 for n in inp if n.startswith("inception.inception3a") and n.endswith("conv"))
    acc = E.account(g, (3, 64, 64))
    assert set(acc["layer"]) >= {"inception.inception5b.b3.conv.conv", "fc"}

    class Mixed(nn.Module):  # two branches, 1-bit and 4-bit, concatenated (the module's output)
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 2, 1), QuantAct(1))
            self.b = nn.Sequential(nn.Conv2d(3, 2, 1), QuantAct(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.a(x), self.b(x)], 1)

    class Same(Mixed):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Sequential(nn.Conv2d(3, 2, 1), QuantAct(1))

    class Cat(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.head = inner, nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.inner(x))

    mixed = {r.name: r.in_prec for r in E.trace(Cat(Mixed()), (3, 4, 4))}
    same = {r.name: r.in_prec for r in E.trace(Cat(Same()), (3, 4, 4))}
    assert mixed["head"] == "fp32" and same["head"] == 1
    assert len(filter_repetition(alexnet_qnn(1, 1, width=0.125, fc=32), (3, 224, 224))) == 4  # conv2-5 (conv1 float)
    assert len(filter_repetition(g, (3, 64, 64))) == 56  # every binary conv of GoogLeNet
