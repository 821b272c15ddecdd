"""Notebook 01's experiment: dataset fallback, seeds, rows for the comparison table, saved models, sanity bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qnnlib.data import mnist as datasets
from qnnlib.experiments import config, mnist, results, runner

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


def _cfg(**kw) -> mnist.MnistConfig:
    base = dict(epochs=3, hidden=64, train_size=1000, valid_size=300, test_size=300)
    return config.resolve("mnist", "smoke", **{**base, **kw})


def test_auto_falls_back_to_fashion_mnist_loudly(fake_root) -> None:
    cfg = _cfg(dataset="auto")
    with pytest.warns(UserWarning, match="Fashion-MNIST instead"):
        data = mnist.load_data(cfg)
    assert data.name == "fashion-mnist"
    assert data.sizes() == {"train": 1000, "valid": 300, "test": 300}


def test_read_only_data_root_falls_back_says_why_and_training_names_the_directory(fake_root, read_only,
                                                                                   monkeypatch) -> None:
    ro = read_only(fake_root / "ro")
    monkeypatch.setenv("QNNLIB_DATA", str(ro))
    cfg = _cfg(dataset="auto", epochs=1, recipes=["theano"], train_size=200, valid_size=100, test_size=100)
    with pytest.warns(UserWarning, match=rf"MNIST is not available .*{ro}/mnist cannot be created or written "
                                         r"\(PermissionError.*set QNNLIB_DATA to a writable directory.*Fashion-MNIST "
                                         "instead"):
        data = mnist.load_data(cfg)
    assert data.name == "fashion-mnist"  # the system copy, as when offline
    with pytest.raises(PermissionError, match=rf"{ro}/checkpoints/smoke/mnist/theano-\S+ is not a writable "
                                              r"directory .*set TrainConfig.checkpoint_dir \(or QNNLIB_DATA"):
        mnist.run_recipes(cfg, data, progress=False)


def test_smoke_pins_one_torch_thread(monkeypatch) -> None:
    """1 and 2 threads reduce in another order and give other weights: CI's smoke numbers must not depend on it."""
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)  # make test sets it to smoke, which would win
    smoke = config.resolve("mnist", "smoke")
    assert {smoke.recipe(r).train.threads for r in smoke.recipes} == {1}
    quick = config.resolve("mnist", "quick")
    assert {quick.recipe(r).train.threads for r in quick.recipes} == {None}


def test_run_rows_saved_models_and_sanity(fake_root) -> None:
    cfg = _cfg(dataset="fashion-mnist", recipes=["float", "theano"])
    data = mnist.load_data(cfg)
    runs = mnist.run_recipes(cfg, data, progress=False)
    assert set(runs) == {"float", "theano"}
    rows = mnist.table_rows(runs, data)
    assert [r["row"] for r in rows] == ["Float baseline (ours)", "BNN (Theano)"]
    assert all(r["dataset"] == "fashion-mnist" and r["dataset_sizes"] == data.sizes() for r in rows)
    assert all(r["n"] == 1 and r["std"] is None for r in rows)  # single-seed rows say n = 1
    assert rows[1]["value"] == 100.0 * runs["theano"].result.test_error_at_best
    assert rows[0]["paper_key"] == "mnist:No regularization:test error %"
    path = results.write_metrics("mnist", "smoke", config=config.as_dict(cfg), metrics={"rows": rows},
                                 history={k: r.result.history for k, r in runs.items()},
                                 dataset=data.describe(), wall_time_s=1.0)
    table = results.comparison_table("smoke")
    assert set(table.row) == {"Float baseline (ours)", "BNN (Theano)"} and (table.n == 1).all()
    assert not table.comparable.any()  # Fashion-MNIST is never compared with the paper's MNIST numbers
    model, saved = mnist.load_trained("smoke", "theano")
    assert saved["dataset"]["name"] == "fashion-mnist" and not model.training
    for a, b in zip(model.state_dict().values(), runs["theano"].model.state_dict().values()):
        assert (a == b).all()
    hist = runner.history_frame(runs)
    assert set(hist.metric) >= {"train_loss", "valid_error"} and set(hist.seed) == {1234}
    checks = mnist.check_sanity("smoke", runs, path)
    assert len(checks) == 4


def test_several_seeds_give_mean_std_n(fake_root) -> None:
    cfg = _cfg(dataset="fashion-mnist", recipes=["theano"], epochs=1, n_seeds=3, train_size=500)
    data = mnist.load_data(cfg)
    runs = mnist.run_recipes(cfg, data, progress=False, save_models=False)
    assert runs["theano"].seeds == (1234, 1235, 1236)
    errs = [100 * r.result.test_error_at_best for r in runs["theano"].runs]
    (row,) = mnist.table_rows(runs, data)
    assert row["n"] == 3 and row["value"] == pytest.approx(sum(errs) / 3)
    assert row["std"] == pytest.approx((sum((e - row["value"]) ** 2 for e in errs) / 2) ** 0.5)
    assert len(set(errs)) > 1 or row["std"] == 0.0  # different seeds, different runs
    results.write_metrics("mnist", "smoke", config={}, metrics={"rows": [row]}, history=[],
                          dataset=data.describe(), wall_time_s=1.0)


def test_sanity_fails_on_regression(fake_root) -> None:
    cfg = _cfg(dataset="fashion-mnist", recipes=["theano"], epochs=1)
    data = mnist.load_data(cfg)
    runs = mnist.run_recipes(cfg, data, progress=False, save_models=False)
    runs["theano"].result.test_error_at_best = 0.95
    with pytest.raises(AssertionError, match="theano: test error"):
        mnist.check_sanity("smoke", runs)
    with pytest.raises(ValueError, match="no sanity bounds"):
        mnist.check_sanity("bogus", runs)


def test_load_trained_missing_or_damaged_says_how_to_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="01_mnist_bnn.ipynb"):
        mnist.load_trained("quick", "theano")
    path = runner.model_path("quick", "mnist", "theano")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(runner.SavedModelError, match="(?i)delete it and run notebooks/01_mnist_bnn.ipynb"):
        mnist.load_trained("quick", "theano")
