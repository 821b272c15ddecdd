"""The QAT overhead benchmark: both nets train a step, the ratio is theirs, bad arguments are refused."""

from __future__ import annotations

import pytest

from qnnlib import cli
from qnnlib.bench import qat


@pytest.mark.parametrize("model", ["mlp", "convnet", "lstm"])
def test_measure_times_both_nets(model) -> None:
    r = qat.measure(hidden=16, batch=4, steps=1, repeats=1, model=model, width=0.0625)
    assert r["float_s"] > 0 and r["binary_s"] > 0 and r["ratio"] == pytest.approx(r["binary_s"] / r["float_s"])
    if model == "lstm":
        assert r["ratio_vs_torch"] == pytest.approx(r["binary_s"] / r["torch_s"])


@pytest.mark.parametrize(("kw", "match"), [({"model": "rnn"}, "model must be"), ({"bits": 0}, "bits must be"), ({"width": 0}, "width must be"),
                                           ({"batch": 1}, "batch must be >= 2"), ({"steps": 0}, "steps must be")])
def test_bad_arguments(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        qat.measure(**{"hidden": 8, "batch": 4, "steps": 1, "repeats": 1, **kw})


def test_cli_prints_the_convnet_ratio(capsys) -> None:
    assert cli.main(["bench", "qat", "--model", "convnet", "--width", "0.0625", "--hidden", "16", "--batch", "4",
                     "--steps", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "CIFAR-10 ConvNet x0.0625 (fc 16)" in out and "ratio binary/float" in out


def test_cli_prints_the_lstm_ratios(capsys) -> None:
    assert cli.main(["bench", "qat", "--model", "lstm", "--hidden", "16", "--bits", "2", "--batch", "4",
                     "--steps", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "PTB LSTM LM, 1x16 units" in out and "W2/A2 net" in out and "torch nn.LSTM float32" in out
    assert "ratio quantized/float" in out
