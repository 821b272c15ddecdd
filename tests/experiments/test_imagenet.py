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
from qnnlib.data.imagenet import ImageNetLayoutError
from qnnlib.experiments import imagenet, imagenet_run

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
    assert imagenet_run.launch_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert imagenet_run.launch_env() == (1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        imagenet_run.launch_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="integers"):
        imagenet_run.launch_env()


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
    result = imagenet_run.train(SMOKE, out_dir=tmp_path / "out", progress=False)
    doc = json.loads((tmp_path / "out" / "alexnet-w1a2.json").read_text())
    assert doc["finished"] and doc["world_size"] == 1 and doc["fake_data"] and len(doc["history"]) == 2
    assert doc["top1"] == pytest.approx(100 * (1 - min(r["valid_error"] for r in doc["history"])))
    assert doc["top5"] == pytest.approx(100.0)  # 4 classes: the target is always in the top 5
    assert result.best_epoch == doc["best_epoch"] and (tmp_path / "out" / "checkpoints" / "alexnet-w1a2" /
                                                       "last.pt").is_file()
    assert (imagenet.fake_root(SMOKE) / "val").is_dir()
    again = imagenet_run.train(SMOKE, out_dir=tmp_path / "out", progress=False)  # everything done: resumes at the end
    assert again.resumed_from_epoch == 1 and again.history == result.history


def test_a_missing_imagenet_folder_says_how_to_lay_it_out(tmp_path, monkeypatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    cfg = dataclasses.replace(SMOKE, fake=False, data=str(tmp_path / "nowhere"))
    with pytest.raises(ImageNetLayoutError, match="train/<wnid>"):
        imagenet_run.train(cfg, out_dir=tmp_path / "out", progress=False)


def test_cli_dispatches_and_refuses_unknown_fields(tmp_path) -> None:
    with pytest.raises(SystemExit, match="unknown field 'colour'"):
        cli.main(["imagenet", "--out", str(tmp_path), "--set", "colour", "red"])
    assert "imagenet" in cli.parser().format_help()


def _torchrun(out: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "qnnlib",
           "imagenet", "--profile", "smoke", "--out", str(out), "--no-progress", "--set", "nproc", "2", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _failure(done: subprocess.CompletedProcess) -> str:
    """What a failed torchrun printed: the workers' own lines come first, torchrun's summary last."""
    return f"exit {done.returncode}\nstdout:\n{done.stdout[-2000:]}\nstderr (head):\n{done.stderr[:3000]}\n" \
           f"stderr (tail):\n{done.stderr[-3000:]}"


@pytest.mark.slow
def test_two_process_gloo_run_killed_after_epoch_1_resumes_to_the_same_weights(tmp_path) -> None:
    env = {**os.environ, "QNNLIB_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "QNNLIB_PROFILE"):
        env.pop(k, None)
    full = _torchrun(tmp_path / "full", env)
    assert full.returncode == 0, _failure(full)
    killed = _torchrun(tmp_path / "killed", env, "--stop-after-epoch", "1")
    assert killed.returncode != 0  # the kill after epoch 1: torchrun reports the failed workers
    mid = json.loads((tmp_path / "killed" / "alexnet-w1a2.json").read_text())
    assert [r["epoch"] for r in mid["history"]] == [1] and not mid["finished"]
    resumed = _torchrun(tmp_path / "killed", env)
    assert resumed.returncode == 0, _failure(resumed)

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


# ------------------------------------------------------------------------------------ the notebook's side
def test_command_is_plain_python_for_one_process_and_torchrun_for_more(tmp_path) -> None:
    one = imagenet.command(dataclasses.replace(SMOKE, epochs=3, act_bits=None), tmp_path, python="py")
    assert one[:5] == ["py", "-m", "qnnlib", "imagenet", "--profile"]
    assert ["--set", "epochs", "3"] == one[one.index("epochs") - 1: one.index("epochs") + 2]
    assert ["--set", "act_bits", "null"] == one[one.index("act_bits") - 1: one.index("act_bits") + 2]
    two = imagenet.command(dataclasses.replace(SMOKE, nproc=2), tmp_path, python="py")
    assert two[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert imagenet.command(SMOKE, tmp_path, python="py").count("--set") == 0  # the profile as it is


def _doc(**kw) -> dict:
    cfg = dataclasses.replace(SMOKE, **kw)
    return {"config": dataclasses.asdict(cfg), "label": cfg.label, "world_size": 2, "classes": 4, "finished": True,
            "history": [{"epoch": 1, "valid_error": 0.5, "valid_top5": 0.0, "epoch_time_s": 1.0},
                        {"epoch": 2, "valid_error": 0.25, "valid_top5": 0.0, "epoch_time_s": 2.0}],
            "best_epoch": 2, "top1": 75.0, "top5": 100.0, "data": "x"}


def test_rows_name_the_data_and_point_at_the_papers_row() -> None:
    rows = imagenet.table_rows([_doc(), _doc(model="googlenet", weight_bits=4, act_bits=4), _doc(weight_bits=2)])
    assert [(r["row"], r["metric"], r.get("paper_key")) for r in rows] == [
        ("AlexNet W1/A2", "top-1 %", "imagenet:AlexNet QNN (W1/A2):top-1 %"),
        ("AlexNet W1/A2", "top-5 %", "imagenet:AlexNet QNN (W1/A2):top-5 %"),
        ("GoogLeNet W4/A4", "top-1 %", "imagenet:GoogleNet QNN (W4/A4):top-1 %"),
        ("GoogLeNet W4/A4", "top-5 %", "imagenet:GoogleNet QNN (W4/A4):top-5 %"),
        ("AlexNet W2/A2", "top-1 %", None), ("AlexNet W2/A2", "top-5 %", None)]
    assert {r["dataset"] for r in rows} == {"fake-imagenet"}
    real = _doc(fake=False)
    assert imagenet.dataset_name(real) == "imagenet-subset"
    assert imagenet.dataset_name({**real, "classes": 1000}) == "imagenet"
    assert imagenet.dataset_name({**_doc(fake=False, train_subset=10), "classes": 1000}) == "imagenet-subset"


def test_findings_and_sanity() -> None:
    lines = imagenet.findings([_doc()])
    assert lines[0] == ("AlexNet W1/A2 on fake-imagenet (4 classes, 2 process(es)): top-1 75.00% and top-5 100.00% at "
                        "epoch 2 of 2 (chance: 25.00%); 1.5 s per epoch.")
    assert "test the pipeline, not the claim" in lines[1]
    quick = dataclasses.replace(imagenet.PROFILES["quick"])
    assert imagenet.check_sanity(quick, [_doc()])[0].startswith("AlexNet W1/A2: 2 epochs, top-1 75.00% >= 1.5")
    with pytest.raises(AssertionError, match="top-1 30.0% < 1.5 x chance"):
        imagenet.check_sanity(quick, [{**_doc(), "top1": 30.0}])
    with pytest.raises(AssertionError, match="did not finish"):
        imagenet.check_sanity(quick, [{**_doc(), "finished": False}])


def test_relaxed_hardtanh_is_its_own_paper_row() -> None:
    relaxed = dataclasses.replace(SMOKE, act_bits=1, htanh_bound=2.0)
    assert relaxed.label == "AlexNet W1/A1, relaxed Htanh ±2" and relaxed.name == "alexnet-w1a1-htanh2"
    assert imagenet.paper_row(dataclasses.asdict(relaxed)) == "AlexNet QNN (W1/A1, relaxed Htanh)"
    assert imagenet.paper_row(dataclasses.asdict(dataclasses.replace(SMOKE, act_bits=1))) == "AlexNet BNN (W1/A1)"
    assert imagenet.paper_row(dataclasses.asdict(dataclasses.replace(SMOKE, htanh_bound=2.0))) is None
    with pytest.raises(ValueError, match="htanh_bound"):
        dataclasses.replace(SMOKE, htanh_bound=0.5)
    g = imagenet.build_model(dataclasses.replace(relaxed, model="googlenet"), 3)
    assert {a.max_v for a in g.modules() if hasattr(a, "max_v")} == {2.0}
