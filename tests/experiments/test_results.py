"""Tests for qnnlib.experiments.results: paper numbers, metrics JSON, comparison tables, markdown."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from qnnlib.experiments import paper as P
from qnnlib.experiments import results as R

MNIST_SIZES = {"train": 50000, "valid": 10000, "test": 10000}


def _write(tmp_path, experiment="mnist", dataset=None, rows=(), **kw) -> Path:
    dataset = dataset or {"name": "mnist", "sizes": MNIST_SIZES, "source": "/data/mnist"}
    return R.write_metrics(experiment, "smoke", config=kw.pop("config", {"lr": 0.003}),
                           metrics={"rows": list(rows), **kw.pop("metrics", {})},
                           history=kw.pop("history", [{"epoch": 1, "valid_error": 5.0}]), dataset=dataset,
                           wall_time_s=1.5, results_dir=tmp_path, **kw)


# ----------------------------------------------------------------------------- PAPER
def test_paper_keys_unique_and_tagged():
    assert len(P.PAPER_BY_KEY) == len(P.PAPER)
    assert {p.status for p in P.PAPER} <= {"VERIFIED", "SEC", "UNCONFIRMED"}
    assert all(p.source and p.metric and p.dataset for p in P.PAPER)


@pytest.mark.parametrize("key, value", [
    ("mnist:BNN (Theano):test error %", 0.96), ("mnist:BNN (Torch7):test error %", 1.40),
    ("svhn:BNN (Torch7):test error %", 2.53), ("cifar10:BNN (Theano):test error %", 11.40),
    ("cifar10:BinaryConnect:test error %", 9.90), ("mnist:No regularization:test error %", 1.3),
    ("imagenet:AlexNet BNN (W1/A1):top-1 %", 36.1), ("imagenet:GoogleNet QNN (W4/A4):top-1 %", 66.6),
    ("imagenet:AlexNet QNN (W1/A2):top-1 %", 51.03), ("ptb:LSTM 300 (W4/A4):perplexity", 100.0),
    ("kernels:XNOR kernel vs baseline kernel:speed-up x", 23.0), ("kernels:XNOR kernel vs cuBLAS:speed-up x", 3.4),
    ("kernels:MNIST MLP, XNOR vs baseline kernel:speed-up x", 7.0),
    ("memory:BNN vs 32-bit DNN:memory size reduction x", 32.0),
    ("filters:CIFAR-10 ConvNet:unique 2D filters per layer %", 42.0),
])
def test_paper_values(key, value):
    assert P.PAPER_BY_KEY[key].value == pytest.approx(value)


def test_paper_status_follows_sources():
    assert P.PAPER_BY_KEY["mnist:BNN (Theano):test error %"].status == "VERIFIED"
    assert P.PAPER_BY_KEY["imagenet:AlexNet QNN (W1/A2):top-1 %"].status == "SEC"
    assert P.PAPER_BY_KEY["ptb:LSTM 300 (W2/A3):perplexity"].status == "UNCONFIRMED"
    assert P.PAPER_BY_KEY["mnist:BinaryConnect:test error %"].spread == 0.08
    assert set(P.paper_table("ptb")["experiment"]) == {"ptb"}


# ------------------------------------------------------------------------ metrics JSON
def test_write_read_roundtrip_schema(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        lr: float
        path: Path
        widths: tuple

    path = _write(tmp_path, config=Cfg(0.1, Path("/x"), (1, 2)),
                  metrics={"best": np.float32(0.5), "curve": torch.tensor([1.0, 2.0]), "bad": float("nan")},
                  history={"loss": np.array([1.0, math.inf])}, extra={"note": "hi"},
                  rows=[{"row": "BNN (Theano)", "metric": "test error %", "value": 1.5}])
    assert path == tmp_path / "smoke" / "mnist.json"
    assert [p.name for p in path.parent.iterdir()] == ["mnist.json"]  # no temp file left
    data = json.loads(path.read_text())  # strict JSON: json.loads would accept NaN, so check the text
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert set(data) == {"schema", "experiment", "profile", "created_utc", "wall_time_s", "config", "dataset",
                         "metrics", "history", "environment", "git", "extra"}
    assert data["schema"] == R.SCHEMA and data["experiment"] == "mnist" and data["profile"] == "smoke"
    assert data["config"] == {"lr": 0.1, "path": "/x", "widths": [1, 2]}
    assert data["metrics"]["best"] == 0.5 and data["metrics"]["curve"] == [1.0, 2.0] and data["metrics"]["bad"] is None
    assert data["history"] == {"loss": [1.0, None]}
    row = data["metrics"]["rows"][0]
    assert row["dataset"] == "mnist" and row["dataset_sizes"] == MNIST_SIZES  # filled from dataset
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__ and env["cpu_count"] >= 1
    assert env["torch_threads"] == torch.get_num_threads()  # 1 vs 2 threads train other weights
    assert "gpu" in env and "python" in env and "cpu" in env
    assert set(data["git"]) >= {"commit", "dirty"}
    assert R.read_metrics("mnist", "smoke", tmp_path) == data
    (path.parent / ".mnist.json.4242424.ab12cd.tmp").write_text("{")  # left by a writer killed mid-write
    _write(tmp_path)
    assert [p.name for p in path.parent.iterdir()] == ["mnist.json"]  # the next write cleans it


def test_results_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QNNLIB_RESULTS", str(tmp_path / "r"))
    path = R.write_metrics("e1", "quick", config={}, metrics={}, history=[], dataset={"name": "mnist"},
                           wall_time_s=0.0)
    assert path == tmp_path / "r" / "quick" / "e1.json"
    assert R.read_metrics("e1", "quick")["metrics"] == {"rows": []}


def test_default_results_dir_is_repo_results(monkeypatch):
    monkeypatch.delenv("QNNLIB_RESULTS", raising=False)
    assert R.results_root() == Path(R.__file__).resolve().parents[2] / "results"


def test_git_info_dirty_ignores_what_the_reproduction_writes(tmp_path):
    import subprocess  # noqa: PLC0415

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "SUMMARY.md").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    assert R.git_info(tmp_path)["dirty"] is False
    (tmp_path / "results" / "quick" / "SUMMARY.md").write_text("IN PROGRESS\n")  # the reproduction's own file
    (tmp_path / "untracked.txt").write_text("u\n")
    assert R.git_info(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    info = R.git_info(tmp_path)
    assert info["dirty"] is True and len(info["commit"]) == 40


def test_git_info_without_git(tmp_path):
    info = R.git_info(tmp_path)  # not a repository
    assert info["commit"] is None and info["dirty"] is None and info["error"]


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="experiment"):
        _write(tmp_path, experiment="../evil")
    with pytest.raises(ValueError, match="value"):
        _write(tmp_path, rows=[{"row": "x", "metric": "m"}])
    with pytest.raises(ValueError, match="paper_key"):
        _write(tmp_path, rows=[{"row": "x", "metric": "m", "value": 1, "paper_key": "nope"}])
    with pytest.raises(TypeError, match="object"):
        _write(tmp_path, metrics={"x": object()})
    assert not (tmp_path / "smoke" / "mnist.json").exists()
    with pytest.raises(FileNotFoundError, match="--only mnist"):
        R.read_metrics("mnist", "smoke", tmp_path)


def test_figure_path(tmp_path):
    p = R.figure_path("quick", "curves", tmp_path)
    assert p == tmp_path / "quick" / "figures" / "curves.png" and p.parent.is_dir()
    assert R.figure_path("quick", "a.svg", tmp_path).name == "a.svg"


# ---------------------------------------------------------------------- comparison table
def test_comparison_same_and_different_dataset(tmp_path):
    _write(tmp_path, rows=[{"row": "BNN (Theano)", "metric": "test error %", "value": 1.06},
                           {"row": "BNN (Torch7)", "metric": "test error %", "value": 1.5,
                            "dataset_sizes": {"train": 1000, "valid": 500, "test": 500}},
                           {"row": "our own thing", "metric": "test error %", "value": 3.0}])
    _write(tmp_path, experiment="fmnist",
           dataset={"name": "fashion-mnist", "sizes": MNIST_SIZES, "source": "/usr/share"},
           rows=[{"row": "BNN (Theano)", "metric": "test error %", "value": 9.9,
                  "paper_key": "mnist:BNN (Theano):test error %"}])
    (tmp_path / "smoke" / "broken.json").write_text("{not json")
    with pytest.warns(UserWarning, match="broken.json"):
        df = R.comparison_table("smoke", tmp_path)
    assert list(df.columns) == R.COMPARISON_COLUMNS and len(df) == 4
    f = df[df.experiment == "fmnist"].iloc[0]
    assert f.dataset == "fashion-mnist" and f.paper_dataset == "mnist" and not f.comparable
    assert "DIFFERENT DATASET" in f.note and pd.isna(f.delta) and f.paper == 0.96
    m = df[(df.experiment == "mnist") & (df.row == "BNN (Theano)")].iloc[0]
    assert m.comparable and m.delta == pytest.approx(0.10) and m.dataset_sizes == "50000/10000/10000"
    assert m.note == ""
    t = df[df.row == "BNN (Torch7)"].iloc[0]
    assert "reduced data (1000/500/500" in t.note and t.dataset_sizes == "1000/500/500"
    o = df[df.row == "our own thing"].iloc[0]
    assert pd.isna(o.paper) and "no paper number" in o.note


def test_comparison_empty(tmp_path):
    df = R.comparison_table("nothing", tmp_path)
    assert df.empty and list(df.columns) == R.COMPARISON_COLUMNS


def test_markdown_table():
    df = pd.DataFrame({"a": ["x|y", None], "b": [1.23456789, float("nan")], "c": [True, False]})
    md = R.markdown_table(df)
    assert md.splitlines() == ["| a | b | c |", "|---|---|---|", "| x\\|y | 1.235 | True |", "|  |  | False |"]


def test_metrics_file_is_world_readable(tmp_path) -> None:
    import stat

    from qnnlib.experiments import results

    p = results.write_metrics("perm", "smoke", config={}, metrics={}, history=[], dataset={"name": "x"},
                              wall_time_s=0.0, results_dir=tmp_path)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_sizes_only_filled_for_the_json_dataset(tmp_path) -> None:
    from qnnlib.experiments import results

    rows = [{"row": "BNN vs 32-bit DNN", "metric": "memory size reduction x", "value": 31.0, "dataset": "-"},
            {"row": "x", "metric": "m", "value": 1.0}]
    results.write_metrics("mix", "smoke", config={}, metrics={"rows": rows}, history=[],
                          dataset={"name": "fashion-mnist", "sizes": {"train": 10, "valid": 5, "test": 5}},
                          wall_time_s=0.0, results_dir=tmp_path)
    table = results.comparison_table("smoke", tmp_path).set_index("row")
    assert table.loc["BNN vs 32-bit DNN", "dataset_sizes"] in ("", None)
    assert table.loc["x", "dataset_sizes"] == "10/5/5"
