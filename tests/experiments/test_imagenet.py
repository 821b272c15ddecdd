"""experiments.imagenet: config checks, the single-process run on a generated ImageNet folder, and a 2-process gloo
run under torchrun that is killed after epoch 1, resumes, and ends with exactly the weights of an uninterrupted
2-process run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qnnlib import cli
from qnnlib.experiments import imagenet
from qnnlib.data.imagenet import ImageNetLayoutError

SMOKE = imagenet.PROFILES["smoke"]


@pytest.mark.parametrize("kw, match", [
    (dict(model="resnet"), "model"), (dict(epochs=0), "epochs"), (dict(batch_size=10, nproc=3), "divisible"),
    (dict(resize=32), "resize"), (dict(lr_end=1.0), "lr_end"), (dict(workers=-1), "workers"),
    (dict(width=0), "width"), (dict(weight_bits=0), "weight_bits"), (dict(act_bits=40), "act_bits"),
])
def test_bad_configs_are_refused(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SMOKE, **kw)


def test_labels_and_profiles() -> None:
    assert SMOKE.label == "AlexNet W1/A2" and SMOKE.name == "alexnet-w1a2"
    g = dataclasses.replace(SMOKE, model="googlenet", weight_bits=6, act_bits=6, grad_bits=6)
    assert g.label == "GoogLeNet W6/A6/G6" and g.name == "googlenet-w6a6g6"
    assert dataclasses.replace(SMOKE, weight_bits=None, act_bits=None).label == "AlexNet W32/A32"
    assert set(imagenet.PROFILES) == {"smoke", "quick", "paper"}
    assert imagenet.PROFILES["paper"].image_size == 224 and not imagenet.PROFILES["paper"].fake


def test_launch_env(monkeypatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert imagenet.launch_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert imagenet.launch_env() == (1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        imagenet.launch_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="integers"):
        imagenet.launch_env()


def test_build_model_is_seeded_and_sized_for_the_classes() -> None:
    a, b = imagenet.build_model(SMOKE, 4), imagenet.build_model(SMOKE, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    g = imagenet.build_model(dataclasses.replace(SMOKE, model="googlenet"), 5)
    assert g(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_single_process_run_writes_metrics_and_resumes(tmp_path, monkeypatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    result = imagenet.train(SMOKE, out_dir=tmp_path / "out", progress=False)
    doc = json.loads((tmp_path / "out" / "alexnet-w1a2.json").read_text())
    assert doc["finished"] and doc["world_size"] == 1 and doc["fake_data"] and len(doc["history"]) == 2
    assert doc["top1"] == pytest.approx(100 * (1 - min(r["valid_error"] for r in doc["history"])))
    assert doc["top5"] == pytest.approx(100.0)  # 4 classes: the target is always in the top 5
    assert result.best_epoch == doc["best_epoch"] and (tmp_path / "out" / "checkpoints" / "alexnet-w1a2" /
                                                       "last.pt").is_file()
    assert (imagenet.fake_root(SMOKE) / "val").is_dir()
    again = imagenet.train(SMOKE, out_dir=tmp_path / "out", progress=False)  # everything done: resumes at the end
    assert again.resumed_from_epoch == 1 and again.history == result.history


def test_a_missing_imagenet_folder_says_how_to_lay_it_out(tmp_path, monkeypatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    cfg = dataclasses.replace(SMOKE, fake=False, data=str(tmp_path / "nowhere"))
    with pytest.raises(ImageNetLayoutError, match="train/<wnid>"):
        imagenet.train(cfg, out_dir=tmp_path / "out", progress=False)


def test_cli_dispatches_and_refuses_unknown_fields(tmp_path) -> None:
    with pytest.raises(SystemExit, match="unknown field 'colour'"):
        cli.main(["imagenet", "--out", str(tmp_path), "--set", "colour", "red"])
    assert "imagenet" in cli.parser().format_help()


def _torchrun(out: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "qnnlib",
           "imagenet", "--profile", "smoke", "--out", str(out), "--no-progress", "--set", "nproc", "2", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_two_process_gloo_run_killed_after_epoch_1_resumes_to_the_same_weights(tmp_path) -> None:
    env = {**os.environ, "QNNLIB_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "QNNLIB_PROFILE"):
        env.pop(k, None)
    full = _torchrun(tmp_path / "full", env)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _torchrun(tmp_path / "killed", env, "--stop-after-epoch", "1")
    assert killed.returncode != 0  # the kill after epoch 1: torchrun reports the failed workers
    mid = json.loads((tmp_path / "killed" / "alexnet-w1a2.json").read_text())
    assert [r["epoch"] for r in mid["history"]] == [1] and not mid["finished"]
    resumed = _torchrun(tmp_path / "killed", env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def last(out: Path) -> dict:
        return torch.load(out / "checkpoints" / "alexnet-w1a2" / "last.pt", map_location="cpu", weights_only=False)

    a, b = last(tmp_path / "full"), last(tmp_path / "killed")
    assert a["epoch"] == b["epoch"] == 1
    assert list(a["model"]) == list(b["model"]) and all(k.startswith("module.") for k in a["model"])  # DDP
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    done = json.loads((tmp_path / "killed" / "alexnet-w1a2.json").read_text())
    ref = json.loads((tmp_path / "full" / "alexnet-w1a2.json").read_text())
    assert done["finished"] and done["world_size"] == 2 and [r["epoch"] for r in done["history"]] == [1, 2]
    assert [r["valid_error"] for r in done["history"]] == [r["valid_error"] for r in ref["history"]]
