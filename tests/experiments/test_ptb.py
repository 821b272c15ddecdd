"""Notebook 05's experiment: configs, the sweep, runs on a tiny corpus, rows, findings and sanity checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qnnlib.data import ptb as ptb_data
from qnnlib.data.ptb import Vocabulary
from qnnlib.experiments import config, results
from qnnlib.experiments import ptb as E


def _corpus(benchmark: bool = False) -> ptb_data.PtbCorpus:
    g = torch.Generator().manual_seed(0)
    words = tuple(f"w{i}" for i in range(30))
    # a learnable stream: mostly word i+1 after word i
    ids = torch.arange(3000) % 30
    noise = torch.rand(3000, generator=g) < 0.2
    ids[noise] = torch.randint(0, 30, (int(noise.sum()),), generator=g)
    return ptb_data.PtbCorpus(name="ptb" if benchmark else "ptb-valid-as-train", train=ids[:2000],
                              valid=ids[2000:2500], test=ids[2500:], vocab=Vocabulary(words), source="memory",
                              files={}, subset="test", benchmark=benchmark)


def _tiny(**kw) -> E.PtbConfig:
    base = dict(cells=("lstm", "rnn"), bits=((2, 2), (4, 4), (32, 32)), lstm_hidden=12, rnn_hidden=12, epochs=2,
                seq_len=10, batch_size=5, eval_batch_size=5, n_seeds=1, lr_start=1e-2, lr_end=5e-3, resume=False,
                threads=1)
    return dataclasses.replace(E.PROFILES["smoke"], **{**base, **kw})


def test_profiles_sweep_the_paper_bits(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    quick = config.resolve("ptb", "quick")
    assert {s.bits_label for s in quick.settings()} == {"W2/A2", "W3/A3", "W4/A4", "float"}
    assert quick.n_seeds >= 2 and quick.cells == ("lstm", "rnn")
    paper = config.resolve("ptb", "paper")
    assert (paper.lstm_hidden, paper.rnn_hidden, paper.layers) == (300, 2048, 1)
    assert paper.missing_train == "error" and (2, 3) in paper.bits and (3, 4) in paper.bits
    keys = {s.paper_key for s in paper.settings() if s.paper_key}
    assert keys == {"ptb:LSTM 300 (W2/A3):perplexity", "ptb:LSTM 300 (W3/A4):perplexity",
                    "ptb:LSTM 300 (W4/A4):perplexity", "ptb:LSTM 300 (float):perplexity"}
    assert config.resolve("ptb", "smoke", bits=[[4, 4], [32, 32]], cells="lstm").bits == ((4, 4), (32, 32))


@pytest.mark.parametrize("bad, match", [
    (dict(cells=("gru",)), "cells must be distinct names"),
    (dict(bits=()), "at least one"),
    (dict(bits=((4, 32),)), "float weights with quantized activations"),
    (dict(bits=((0, 0),)), "weight bits must be a bit width"),
    (dict(bits=((4, 4), (4, 4))), "must not repeat"),
    (dict(missing_train="train"), "missing_train"),
    (dict(epochs=0), "epochs"),
    (dict(grad_clip_norm=0.0), "grad_clip_norm"),
])
def test_bad_configs_are_refused(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        _tiny(**bad)


def test_settings_labels_and_models() -> None:
    cfg = _tiny()
    s = cfg.settings()
    assert [x.name for x in s] == ["lstm-w2a2", "lstm-w4a4", "lstm-w32a32", "rnn-w2a2", "rnn-w4a4", "rnn-w32a32"]
    assert s[1].label == "LSTM 12 (W4/A4)" and s[2].label == "LSTM 12 (float)" and s[4].paper_key is None
    m = E.build_model(cfg, s[1], 30)
    assert (m.weight_bits, m.act_bits, m.embed_bits, m.softmax_bits) == (4, 4, 4, 4)
    f = E.build_model(cfg, s[2], 30)
    assert (f.weight_bits, f.act_bits) == (None, None)


def test_runs_rows_findings_sanity(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QNNLIB_RESULTS", str(tmp_path / "results"))
    cfg, corpus = _tiny(), _corpus()
    runs = E.run_settings(cfg, corpus, progress=False)
    frame = E.results_frame(runs)
    assert len(frame) == 6 and frame["test_perplexity"].between(1, 30 * 3).all()
    rows = {r["row"]: r for r in E.table_rows(runs, corpus)}
    assert rows["LSTM 12 (W4/A4)"]["paper_key"] == "ptb:LSTM 300 (W4/A4):perplexity"
    assert "12 units, the paper's LSTM has 300" in rows["LSTM 12 (W4/A4)"]["note"]
    assert "x the float LSTM" in rows["LSTM 12 (W2/A2)"]["note"] and "paper_key" not in rows["RNN 12 (W4/A4)"]
    assert {r["dataset"] for r in rows.values()} == {"ptb-valid-as-train"}
    path = E.write_metrics(cfg, runs, corpus, wall_time_s=1.0)
    saved = results.read_metrics("ptb", "smoke")
    assert saved["dataset"]["name"] == "ptb-valid-as-train" and len(saved["metrics"]["per_seed"]) == 6
    text = " ".join(E.findings(cfg, runs, corpus))
    assert "not PTB-benchmark perplexities" in text and "LSTM relative to its float network" in text
    assert "not PTB-benchmark" not in " ".join(E.findings(cfg, runs, _corpus(benchmark=True)))
    checks = E.check_sanity(cfg, runs, corpus, path)
    assert checks[0].startswith("every run's test perplexity <") and checks[-1].endswith("written")
    monkeypatch.setitem(E.SANITY, "smoke", E.Sanity(max_fraction_of_uniform=0.01))
    with pytest.raises(AssertionError, match="uniform predictor"):
        E.check_sanity(cfg, runs, corpus)
    monkeypatch.setitem(E.SANITY, "smoke", E.Sanity(max_fraction_of_uniform=1.0, max_4bit_lstm_ratio=0.5))
    with pytest.raises(AssertionError, match="x the float LSTM"):
        E.check_sanity(cfg, runs, corpus)


def test_loaders_use_the_bptt_batches_of_the_config() -> None:
    cfg, corpus = _tiny(), _corpus()
    ld = E.loaders(cfg, corpus)
    x, y = next(iter(ld.train))
    assert x.shape == (10, 5) and torch.equal(x[1:], y[:-1])
    assert len(ld.valid) == len(ptb_data.BpttLoader(corpus.valid, 5, 10))
