"""bench.peers: every contender on the same images, speed-ups against float32 from the same run, agreement with
the model of the same weights, and missing peers skipped with the reason (and how to install them)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from qnnlib.bench import convnet, peers


def test_peer_table_small() -> None:
    df = peers.time_peers(hidden=128, images=300, repeats=1).set_index("method")
    ran = df[df["status"] == "ran"]
    assert {peers.FP32, peers.INT8, peers.OURS_EQ6, peers.OURS_F1} <= set(ran.index)
    assert ran.loc[peers.FP32, "speedup_vs_fp32"] == 1.0 and (ran["images/s"] > 0).all()
    assert ran.loc[peers.OURS_EQ6, "agreement_pct"] == 100.0 and ran.loc[peers.OURS_F1, "agreement_pct"] == 100.0
    assert 50.0 <= ran.loc[peers.INT8, "agreement_pct"] <= 100.0  # int8 rounds: close to, not always, fp32's answers
    assert df.loc[peers.LCE, "status"].startswith("skipped")
    if importlib.util.find_spec("onnxruntime") is None:
        assert "pip install onnx onnxruntime" in df.loc[peers.ORT, "status"]
        assert np.isnan(df.loc[peers.ORT, "speedup_vs_fp32"])


def test_run_prints_the_machine_and_the_verdict(capsys) -> None:
    assert peers.run(hidden=64, images=100, repeats=1) == 0
    out = capsys.readouterr().out
    assert "popcount:" in out and "threads" in out and "predicts exactly what the PyTorch BNN predicts" in out


def test_onnxruntime_missing_names_the_packages(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "onnxruntime")
                        else real(name, *a))
    with pytest.raises(ImportError, match="onnx, onnxruntime not installed"):
        peers.onnxruntime_int8(None, None, 1)  # type: ignore[arg-type]


def test_convnet_peer_table_small() -> None:
    df, note = peers.time_convnet_peers(width=0.0625, fc=32, images=40, repeats=1, batch=20, train_steps=1)
    df = df.set_index("method")
    ran = df[df["status"] == "ran"]
    assert {convnet.FP32, convnet.INT8, convnet.OURS} <= set(ran.index)
    assert ran.loc[convnet.OURS, "agreement_pct"] == 100.0 and ran.loc[convnet.FP32, "speedup_vs_fp32"] == 1.0
    assert df.loc[peers.LCE, "status"].startswith("skipped")
    if importlib.util.find_spec("onnxruntime") is None:
        assert "pip install onnx onnxruntime" in df.loc[peers.ORT, "status"]
    assert "trained 1 steps" in note


def test_run_convnet_prints_the_convnet_table(capsys) -> None:
    assert peers.run(images=30, repeats=1, convnet=True, width=0.0625, fc=32, train_steps=1) == 0
    out = capsys.readouterr().out
    assert "CIFAR-10 ConvNet" in out and "popcount:" in out and convnet.OURS in out
    assert "predicts exactly what the PyTorch model predicts" in out
