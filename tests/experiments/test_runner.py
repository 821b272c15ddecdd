"""The generic runner: seeds, mean/std/n, checkpoint and model locations, saved-model round trip."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.experiments import runner


def test_seeds_and_summary() -> None:
    assert runner.seeds_from(1234, 3) == (1234, 1235, 1236)
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError, match="n_seeds"):
            runner.seeds_from(1, bad)
    assert runner.summary([2.0]) == {"mean": 2.0, "std": None, "n": 1}
    s = runner.summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0) and s["n"] == 3
    with pytest.raises(ValueError):
        runner.summary([])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=8))
def test_summary_std_is_the_sample_std(values) -> None:
    s = runner.summary(values)
    mean = sum(values) / len(values)
    assert s["std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)),
                                     rel=1e-6, abs=1e-6)


def test_locations_follow_the_data_root(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    assert runner.checkpoint_dir("quick", "mnist", "t") == tmp_path / "checkpoints" / "quick" / "mnist" / "t"
    assert runner.model_path("smoke", "mnist", "theano") == tmp_path / "models" / "smoke" / "mnist_theano.pt"


def test_saved_model_round_trip_and_errors(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    path = runner.save_model(tmp_path / "m" / "x.pt", model, recipe={"name": "r", "hidden": 3}, note="n")
    saved = runner.load_model(path, "retrain it")
    assert saved["recipe"] == {"name": "r", "hidden": 3} and saved["note"] == "n"
    assert torch.equal(saved["state_dict"]["weight"], model.weight.detach())
    with pytest.raises(FileNotFoundError, match="retrain it"):
        runner.load_model(tmp_path / "absent.pt", "retrain it")
    torch.save({"state_dict": {}}, tmp_path / "old.pt")  # no format tag: another version's file
    with pytest.raises(runner.SavedModelError, match="not a qnnlib.model/1 file"):
        runner.load_model(tmp_path / "old.pt", "retrain it")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(runner.SavedModelError, match=r"empty.pt is not a readable saved model .*empty \(0 bytes\)"
                                                     r".*Delete it and retrain it"):
        runner.load_model(tmp_path / "empty.pt", "retrain it")
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 1):  # truncated by a full disk or a copy that stopped
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(runner.SavedModelError, match=rf"cut.pt is not a readable saved model .*{cut} B long"
                                                         r".*Delete it and retrain it"):
            runner.load_model(tmp_path / "cut.pt", "retrain it")


def _tiny_data():
    from qnnlib.data.splits import DatasetSplits, Split

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, 0] > 0).long()
    s = Split(x, y)
    return DatasetSplits("tiny", s, s, s, source="test")


def test_train_seeds_keeps_weight_snapshots_beside_the_checkpoint(tmp_path, monkeypatch) -> None:
    from qnnlib.train import TrainConfig

    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    tc = TrainConfig(epochs=3, batch_size=10, lr_start=0.05, seed=0, progress=False)
    inits = {}

    def build(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        m = torch.nn.Linear(4, 2)
        inits[seed] = {k: v.clone() for k, v in m.state_dict().items()}
        return m

    run = runner.train_seeds("lin", None, build, _tiny_data(), tc, (1, 2), checkpoint_tag="t", profile="smoke",
                             experiment="x", progress=False, snapshot_epochs=(0, 1, 3))
    for sr in run.runs:
        ck = runner.checkpoint_dir("smoke", "x", f"t-s{sr.seed}")
        assert sr.snapshots == {e: runner.snapshot_path(ck, e) for e in (0, 1, 3)}
        snaps = runner.load_snapshots(sr.snapshots)
        assert torch.equal(snaps[0]["weight"], inits[sr.seed]["weight"])  # epoch 0: the initial weights
        assert not torch.equal(snaps[1]["weight"], snaps[0]["weight"])  # training moved them
        assert not torch.equal(snaps[3]["weight"], snaps[1]["weight"])
    # resuming a finished run trains nothing and keeps the snapshots of the first pass
    first = runner.load_snapshots(run.runs[0].snapshots)
    again = runner.train_seeds("lin", None, build, _tiny_data(), tc, (1,), checkpoint_tag="t", profile="smoke",
                               experiment="x", progress=False, snapshot_epochs=(0, 1, 3))
    assert all(torch.equal(first[e]["weight"], w["weight"])
               for e, w in runner.load_snapshots(again.runs[0].snapshots).items())
    # a checkpoint that passed an epoch before its snapshot was asked for: the snapshot cannot be remade
    with pytest.warns(UserWarning, match=r"no weight snapshots of epochs \[2\].*resume=False"):
        late = runner.train_seeds("lin", None, build, _tiny_data(), tc, (1,), checkpoint_tag="t", profile="smoke",
                                  experiment="x", progress=False, snapshot_epochs=(0, 2, 3))
    assert sorted(late.runs[0].snapshots) == [0, 3]
    for bad in ((4,), (-1,), (1.0,), (True,)):
        with pytest.raises(ValueError, match=r"snapshot_epochs must be integers in \[0, 3\]"):
            runner.train_seeds("lin", None, build, _tiny_data(), tc, (1,), checkpoint_tag="t", profile="smoke",
                               experiment="x", progress=False, snapshot_epochs=bad)
    with pytest.raises(ValueError, match="needs a checkpoint_tag"):
        runner.train_seeds("lin", None, build, _tiny_data(), tc, (1,), progress=False, snapshot_epochs=(1,))
    path = run.runs[1].snapshots[1]
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(runner.SavedModelError, match="not a readable weight snapshot.*resume=False"):
        runner.load_snapshots(run.runs[1].snapshots)
