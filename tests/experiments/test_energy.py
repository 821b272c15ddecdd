"""Notebook 08's experiment: config, the network zoo, accounts, disk sizes, the filter ConvNet (trained or
loaded), rows, sanity checks and the findings text, on small sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from qnnlib.analysis.energy import EnergyAssumptions
from qnnlib.data.splits import DatasetSplits, Split
from qnnlib.experiments import config, results, runner
from qnnlib.experiments import energy as E
from qnnlib.models.mlp import mnist_mlp

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_profiles_and_overrides(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    assert E.PROFILES["paper"].stand_in.channels == (128, 256, 512)
    cfg = config.resolve("energy", "smoke", epochs=3, weight_memory="1M", xnor_pj=0.006)
    assert cfg.stand_in.epochs == 3 and E.assumptions(cfg) == EnergyAssumptions(
        weight_memory="1M", xnor_pj_per_connection=0.006)
    for bad, err in ((dict(weight_memory="L2"), ValueError), (dict(xnor_pj=-1.0), ValueError),
                     (dict(epochs=0), ValueError), (dict(channels=(4, 4)), ValueError)):
        with pytest.raises(err):
            config.resolve("energy", "smoke", **bad)


def _fake_images(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.rand(n, 1, 32, 32, generator=g) * 2 - 1
    x[:, 0, :4, :4] = (y.float() / 5 - 1)[:, None, None]  # a learnable cue
    return Split(x, y)


TINY = E.StandIn(channels=(4, 4, 8), fc=8, train_size=40, valid_size=20, test_size=20, epochs=1, batch_size=10)


def _fake_data() -> DatasetSplits:
    return DatasetSplits("fake", _fake_images(40, 0), _fake_images(20, 1), _fake_images(20, 2), source="test")


def test_train_stand_in_and_rebuild_from_state_dict():
    data = _fake_data()
    snaps: dict = {}
    model, result = E.train_stand_in(dataclasses.replace(TINY, epochs=2), data, progress=False, snapshots=snaps)
    assert len(result.history) == 2 and 0 <= result.test_error_at_best <= 1
    assert sorted(snaps) == [0, 1, 2] and not torch.equal(snaps[0]["conv2.weight"], snaps[2]["conv2.weight"])
    rebuilt = E.convnet_from_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    assert torch.equal(model(data.test.x[:5]), rebuilt(data.test.x[:5]))


def test_filter_model_prefers_a_saved_cifar10_net(tmp_path, monkeypatch):
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    model, _ = E.train_stand_in(TINY, _fake_data(), progress=False)
    runner.save_model(runner.model_path("smoke", "cifar10", "torch7"), model, dataset={"name": "cifar10"},
                      result={"test_error_at_best": 0.5})
    fm = E.filter_model(E.PROFILES["smoke"], progress=False)
    assert fm.dataset["name"] == "cifar10" and "CIFAR-10 notebook" in fm.source
    assert torch.equal(fm.model.conv2.weight, model.conv2.weight)
    ft = E.filter_tables(fm)
    summary = ft.summary()
    assert len(ft.trained) == 6 and summary.iloc[-1]["layer"] == "mean over layers"
    assert set(ft.per_channel["counting"]) == {"exact", "sign-invariant"}


def test_filter_model_rebuilds_notebook_02s_code_recipe_with_lasagne_bn(tmp_path, monkeypatch):
    """Notebook 02 saves its recipe with the model: the Theano code's net (Lasagne BN) is rebuilt from it."""
    from qnnlib.experiments import config, convnets
    from qnnlib.norm import LasagneBatchNorm

    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    rc = config.resolve("cifar10", "smoke").recipe("theano")
    model = convnets.build_model(rc, in_channels=1, seed=5)
    runner.save_model(runner.model_path("smoke", "cifar10", "theano"), model, recipe=config.as_dict(rc),
                      dataset={"name": "fashion-mnist"}, result={"test_error_at_best": 0.5})
    fm = E.filter_model(E.PROFILES["smoke"], progress=False)
    assert isinstance(fm.model.bn1, LasagneBatchNorm) and torch.equal(fm.model.conv3.weight, model.conv3.weight)
    assert len(E.filter_tables(fm).trained) == 6 and fm.snapshots == {}


def test_filter_model_follows_notebook_02s_snapshots_through_training(tmp_path, monkeypatch):
    from qnnlib.experiments import config, convnets

    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    rc = config.resolve("cifar10", "smoke").recipe("theano")
    init = convnets.build_model(rc, in_channels=1, seed=5)
    trained = convnets.build_model(rc, in_channels=1, seed=6)  # "training" replaced every weight
    snaps = {0: init.state_dict(), 3: trained.state_dict()}
    runner.save_model(runner.model_path("smoke", "cifar10", "theano"), trained, recipe=config.as_dict(rc),
                      dataset={"name": "fashion-mnist"}, result={"test_error_at_best": 0.5}, snapshots=snaps)
    fm = E.filter_model(E.PROFILES["smoke"], progress=False)
    assert sorted(fm.snapshots) == [0, 3] and torch.equal(fm.at_epoch(0).conv2.weight, init.conv2.weight)
    with pytest.raises(KeyError, match=r"no snapshot of epoch 1; this run kept epochs \[0, 3\]"):
        fm.at_epoch(1)
    ft = E.filter_tables(fm)
    # at init = the run's own epoch-0 weights, not a fresh network from the notebook's seed
    assert ft.at_init["unique_fraction"].tolist() == ft.by_epoch.query("epoch == 0")["unique_fraction"].tolist()
    assert ft.trained["unique_fraction"].tolist() == ft.by_epoch.query("epoch == 3")["unique_fraction"].tolist()
    t = ft.trajectory()
    assert list(t["epoch"]) == [0, 3] and t["unique_fraction"].between(0, 1).all()
    text = E.findings_trajectory(ft)
    assert "epoch 0:" in text[0] and "epoch 3:" in text[0] and "random signs" in text[0]


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST is not installed")
def test_stand_in_data_is_padded_fashion_mnist():
    s = dataclasses.replace(TINY, train_size=100, valid_size=50, test_size=50)
    d = E.stand_in_data(s)
    assert d.name == "fashion-mnist" and d.train.x.shape == (100, 1, 32, 32) and d.test.x.shape[0] == 50
    desc = E.stand_in_description(d)
    assert "padded" in desc["inputs"] and "NOT" in desc["stand_in_for"] and desc["sizes"]["train"] == 100


def test_accounts_disk_rows_sanity_and_findings(tmp_path, monkeypatch):
    monkeypatch.setenv("QNNLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    cfg = E.PROFILES["smoke"]
    torch.manual_seed(0)
    zoo = {"MNIST MLP": (mnist_mlp(512, 1), (784,)),
           "CIFAR-10 ConvNet": (E.convnet_from_state_dict(E.train_stand_in(TINY, _fake_data(), progress=False)[0]
                                                           .state_dict()), (1, 32, 32))}
    accounts, totals = E.account_zoo(zoo, E.assumptions(cfg))
    assert set(E.overview_table(totals)["model"]) == set(zoo)
    sens = E.sensitivity(*zoo["MNIST MLP"], E.assumptions(cfg))
    assert sens.shape[0] == 5 and (sens["fp32"] == 1.0).all()
    disk = E.disk_table(zoo, labels=("MNIST MLP",))
    assert 20 < disk["MNIST MLP"]["disk_ratio"] < 32  # 512 wide: BN and biases weigh more than at 4096
    fm = E.FilterModel(zoo["CIFAR-10 ConvNet"][0], {"name": "fake", "sizes": {"train": 40}}, "a test net",
                       fit_summary={"test_error_at_best": 0.5})
    ft = E.filter_tables(fm)
    rows = E.rows(totals, disk, ft, fm)
    assert {r["metric"] for r in rows} >= {"memory size reduction x", "unique 2D filters per layer %"}
    path = E.write_metrics(cfg, zoo, totals, disk, sens, ft, fm, wall_time_s=1.0)
    assert results.read_metrics("energy", "smoke")["metrics"]["rows"]
    monkeypatch.setitem(E.SANITY, "smoke", E.Sanity(disk_ratio=(20.0, 32.0)))
    checks = E.check_sanity(cfg, totals, disk, ft, fm, path)
    assert checks[-1].endswith("written")
    with pytest.raises(AssertionError, match="did not learn"):
        E.check_sanity(cfg, totals, disk, ft, dataclasses.replace(fm, fit_summary={"test_error_at_best": 0.95}), path)
    text = " ".join(E.findings(totals, disk, sens, ft, fm))
    assert "42%" in text and "x" in text and "fake" in text and "No weight snapshots" in text
