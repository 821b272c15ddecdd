"""bench.convnet: the packed ConvNet against PyTorch fp32/int8 on the same images — the table's columns, agreement
with the PyTorch model, the per-layer breakdown, checkpoints, and the printed verdict (tiny sizes, nothing timed)."""

from __future__ import annotations

import pytest
import torch

from qnnlib.bench import convnet as bench
from qnnlib.models.convnet import cifar10_convnet
from qnnlib.runtime.export_convnet import export_convnet

TINY = {"width": 0.0625, "fc": 32}  # convs (8, 16, 32): a few seconds


@pytest.fixture(scope="module")
def tiny():
    model, x, y, note = bench.prepare(**TINY, images=40, train_steps=2)
    return model, x, y, note


def test_table_columns_and_agreement(tiny) -> None:
    model, x, _y, _note = tiny
    df = bench.time_convnet(model, x, repeats=1, batch=16).set_index("method")
    assert list(df.columns) == ["seconds", "images/s", "speedup_vs_fp32", "agreement_pct", "status"]
    assert {bench.FP32, bench.INT8, bench.OURS} == set(df.index)
    assert "Linear layers only" in bench.INT8
    assert df.loc[bench.FP32, "speedup_vs_fp32"] == 1.0 and (df["images/s"] > 0).all()
    assert df.loc[bench.OURS, "agreement_pct"] == 100.0
    assert 50.0 <= df.loc[bench.INT8, "agreement_pct"] <= 100.0


def test_float_copy_is_the_model(tiny) -> None:
    model, x, _y, _note = tiny
    with torch.no_grad():
        assert torch.equal(bench.float_copy(model)(x), model(x))


def test_layer_breakdown(tiny) -> None:
    model, x, _y, _note = tiny
    bd = bench.layer_breakdown(export_convnet(model), x, batch=16).set_index("layer")
    assert list(bd.columns) == ["im2col", "gemm", "pool+threshold", "total", "share_pct"]
    assert list(bd.index) == ["conv1 (float)", *(f"conv{k}" for k in range(2, 7)), "fc7", "fc8", "fc9"]
    assert (bd.loc[[f"conv{k}" for k in range(2, 7)], "im2col"] > 0).all() and bd.loc["fc7", "im2col"] == 0
    assert abs(bd["share_pct"].sum() - 100.0) < 1e-6


def test_prepare_says_which_data(tiny) -> None:
    note = tiny[3]
    assert "trained 2 steps" in note and ("NOT CIFAR-10" in note or "random" in note)


def test_checkpoints_load_as_state_dict_or_training_checkpoint(tiny, tmp_path) -> None:
    model, x, _y, _note = tiny
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "ck.pt")
    with torch.no_grad():
        ref = model(x).argmax(1)
    for name in ("sd.pt", "ck.pt"):
        loaded, x2, _y2, note = bench.prepare(**TINY, images=40, checkpoint=str(tmp_path / name))
        assert str(tmp_path / name) in note
        with torch.no_grad():
            assert torch.equal(loaded(x).argmax(1), ref)
        assert torch.equal(x2, x)
    with pytest.raises(ValueError, match="--width and --fc"):
        bench.load_weights(cifar10_convnet(0.125, 32), tmp_path / "sd.pt")


def test_run_prints_the_machine_the_breakdown_and_the_verdict(capsys) -> None:
    assert bench.run(**TINY, images=30, repeats=1, batch=10, train_steps=1) == 0
    out = capsys.readouterr().out
    for text in ("popcount:", "threads", "im2col", "pool+threshold", "every hidden activation on 30 images identical: True",
                 "predicts exactly what the PyTorch model predicts", "weights: trained 1 steps"):
        assert text in out, text
