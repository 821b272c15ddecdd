"""Experiment glue: dataset fallback, rows for the comparison table, saved models, sanity bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qnnlib.data import mnist as datasets
from qnnlib.experiments import config, results
from qnnlib.experiments import runner as experiment

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (make test installs it)")


@pytest.fixture()
def fake_root(tmp_path, monkeypatch):
    """Empty data root, no network for MNIST: only the system Fashion-MNIST is available."""
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("QNNLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    spec = datasets.MNIST_FAMILY["mnist"]
    monkeypatch.setitem(datasets.MNIST_FAMILY, "mnist", dataclasses.replace(spec, mirrors=("http://127.0.0.1:9/",)))
    return tmp_path


def _cfg(**kw) -> config.MnistConfig:
    base = dict(epochs=3, hidden=64, train_size=1000, valid_size=300, test_size=300)
    return config.resolve("mnist", "smoke", **{**base, **kw})


def test_auto_falls_back_to_fashion_mnist_loudly(fake_root) -> None:
    cfg = _cfg(dataset="auto")
    with pytest.warns(UserWarning, match="Fashion-MNIST instead"):
        data = experiment.load_data(cfg)
    assert data.name == "fashion-mnist"
    assert data.sizes() == {"train": 1000, "valid": 300, "test": 300}


def test_run_rows_saved_models_and_sanity(fake_root) -> None:
    cfg = _cfg(dataset="fashion-mnist", recipes=["float", "theano"])
    data = experiment.load_data(cfg)
    runs = experiment.run_recipes(cfg, data, progress=False)
    assert set(runs) == {"float", "theano"}
    rows = experiment.table_rows(runs, data)
    assert [r["row"] for r in rows] == ["Float baseline (ours)", "BNN (Theano)"]
    assert all(r["dataset"] == "fashion-mnist" and r["dataset_sizes"] == data.sizes() for r in rows)
    assert rows[0]["paper_key"] == "mnist:No regularization:test error %"
    path = results.write_metrics("mnist", "smoke", config=config.as_dict(cfg), metrics={"rows": rows},
                                 history={k: r.result.history for k, r in runs.items()},
                                 dataset=data.describe(), wall_time_s=1.0)
    table = results.comparison_table("smoke")
    assert set(table.row) == {"Float baseline (ours)", "BNN (Theano)"}
    assert not table.comparable.any()  # Fashion-MNIST is never compared with the paper's MNIST numbers
    model, ck = experiment.load_trained("smoke", "mnist", "theano")
    assert ck["dataset"]["name"] == "fashion-mnist"
    hist = experiment.history_frame(runs)
    assert set(hist.metric) >= {"train_loss", "valid_error"} and len(hist) == 2 * 3 * 5  # recipes × epochs × metrics
    checks = experiment.check_sanity("smoke", runs, path)
    assert len(checks) == 4


def test_sanity_fails_on_regression(fake_root) -> None:
    cfg = _cfg(dataset="fashion-mnist", recipes=["theano"], epochs=1)
    data = experiment.load_data(cfg)
    runs = experiment.run_recipes(cfg, data, progress=False, save_models=False)
    runs["theano"].result.test_error_at_best = 0.95
    with pytest.raises(AssertionError, match="theano: test error"):
        experiment.check_sanity("smoke", runs)
    with pytest.raises(ValueError, match="no sanity bounds"):
        experiment.check_sanity("bogus", runs)


def test_load_trained_missing_says_how_to_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="01_mnist_bnn.ipynb"):
        experiment.load_trained("quick", "mnist", "theano")
