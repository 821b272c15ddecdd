"""The ConvNet columns of Table 1 (notebooks 02 and 03): configs, recipes, data with its preprocessing, models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from qnnlib.data.splits import DatasetSplits, Split
from qnnlib.experiments import config, convnets
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.convnet import cifar10_convnet, svhn_convnet
from qnnlib.precision import BINARY, FLOAT

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _hand_count(convs: tuple[int, int, int], fc: int, in_channels: int = 3, classes: int = 10) -> int:
    """The paper's ConvNet written out: 6 3×3 convs (weights + biases + BN γ, β), 2 FC layers of ``fc`` and the
    output layer (each with bias and BN), 32×32 inputs pooled three times to 4×4."""
    widths = [in_channels, convs[0], convs[0], convs[1], convs[1], convs[2], convs[2]]
    n = sum(9 * a * b + b + 2 * b for a, b in zip(widths, widths[1:]))
    dims = [convs[2] * 4 * 4, fc, fc, classes]
    return n + sum(a * b + b + 2 * b for a, b in zip(dims, dims[1:]))


@pytest.mark.parametrize("precision", [BINARY, FLOAT])
def test_parameter_counts_match_the_architecture_written_out(precision) -> None:
    assert sum(p.numel() for p in cifar10_convnet(precision=precision).parameters()) == _hand_count(
        (128, 256, 512), 1024) == 14_033_566
    assert sum(p.numel() for p in svhn_convnet(precision=precision).parameters()) == _hand_count((64, 128, 256), 1024)


@pytest.mark.parametrize("experiment", ["cifar10", "svhn"])
def test_paper_profile_is_the_authors_settings(experiment, monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)  # make test sets it to smoke, which would win
    cfg = config.resolve(experiment, "paper")
    th, t7, flt = cfg.recipe("theano"), cfg.recipe("torch7"), cfg.recipe("float")
    assert cfg.dataset == experiment and cfg.train_size is None and cfg.recipes == convnets.RECIPES
    assert th.channels == ((128, 256, 512) if experiment == "cifar10" else (64, 128, 256)) and th.fc == 1024
    assert (th.train.batch_size, th.train.optimizer, th.train.lr_start, th.options.bn_running) == (
        50, "lasagne_adam", 1e-3, "lasagne")
    assert th.train.epochs == (500 if experiment == "cifar10" else 200)
    assert th.train.lr_end == (3e-7 if experiment == "cifar10" else 1e-6)
    assert (t7.train.batch_size, t7.train.adamax_state, t7.train.glorot_pow2, t7.train.lr_factors) == (
        200, "torch7", True, "biases")
    assert (t7.train.lr_start, t7.train.halve_every, t7.train.clip, t7.input_range) == (
        (2**-6, 50, "all", "torch7-cifar10") if experiment == "cifar10" else (2**-7, 20, "latent", "torch7-svhn"))
    assert t7.options == ModelOptions(sbn_backward="torch7", out_bn_eps=1e-5, bias_init="torch7")
    assert flt.precision == FLOAT and not flt.train.glorot
    assert cfg.extra == (experiment == "svhn")
    paper = cfg.recipe("torch7-paper")
    assert (paper.follows, paper.input_range, paper.train.adamax_state) == ("paper-text", "pm1", "paper")


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="dataset must be 'cifar10', 'fashion-mnist' .the stand-in. or 'auto'"):
        config.resolve("cifar10", "smoke", dataset="svhn")
    with pytest.raises(ValueError, match="recipes must be a non-empty subset"):
        config.resolve("svhn", "smoke", recipes=["nope"])
    with pytest.raises(ValueError, match=r"snapshot_epochs must be epochs >= 0"):
        config.resolve("cifar10", "smoke", snapshot_epochs=(0, -1))
    cfg = config.resolve("cifar10", "smoke", snapshot_epochs=(0, 2, 9), epochs=5)
    assert cfg.snapshots_of("theano") == (0, 2, 5) and cfg.snapshots_of("float") == ()
    assert config.resolve("cifar10", "smoke", snapshot_epochs=()).snapshots_of("torch7") == ()
    with pytest.raises(ValueError, match="channels must be three conv widths"):
        convnets.ConvRecipe("x", (8, 16), 32, BINARY, config.resolve("cifar10", "smoke").recipe("float").train)


def _pm1(n: int, channels: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, channels, 32, 32), generator=g).float()
    return Split(pixels * (2 / 255) - 1, torch.arange(n) % 10)


def test_preprocessed_inverts_the_scaling_and_applies_the_torch7_rule(tmp_path) -> None:
    data = DatasetSplits("toy", _pm1(40, 1, 0), _pm1(10, 1, 1), _pm1(10, 1, 2), "memory", inputs="pm1 toy")
    assert convnets.preprocessed(data, "pm1") is data
    svhn = convnets.preprocessed(data, "torch7-svhn")
    x = svhn.train.x.double()
    assert svhn.train.x.shape == (40, 1, 32, 32) and svhn.train.x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-4  # the final 'simple' normalisation
    assert "torch7-svhn preprocessing" in svhn.inputs and torch.equal(svhn.test.y, data.test.y)
    cifar = convnets.preprocessed(data, "torch7-cifar10", tmp_path)
    assert cifar.valid.x.shape == (10, 1, 32, 32) and list(tmp_path.glob("zca-*.npz"))


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (make test installs it)")
def test_auto_falls_back_to_the_padded_stand_in_and_says_why(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    cfg = dataclasses.replace(config.resolve("svhn", "smoke"), dataset="auto", train_size=50, valid_size=20,
                              test_size=20)
    with pytest.warns(UserWarning, match=r"dataset='auto': svhn is not available \(svhn: file train_32x32.mat is "
                                         r"missing.*Fashion-MNIST padded to 32x32"):
        data = convnets.load_data(cfg, download=False)
    assert data.name == "fashion-mnist" and data.train.x.shape == (50, 1, 32, 32)
    assert "standing in for svhn" in data.describe()["inputs"]
    model = convnets.build_model(cfg.recipe("torch7"), in_channels=1, seed=3)
    assert model(data.train.x[:4]).shape == (4, 10)


def test_the_authors_recipes_keep_snapshots_in_their_saved_model(tmp_path, monkeypatch) -> None:
    """Notebook 02 keeps the Theano and Torch7 BNNs' weights at the snapshot epochs (notebook 08 reads them)."""
    from qnnlib.experiments import runner

    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path))
    cfg = dataclasses.replace(config.resolve("cifar10", "smoke", recipes=["float", "theano"]), snapshot_epochs=(0, 1))
    data = DatasetSplits("toy", _pm1(50, 1, 0), _pm1(10, 1, 1), _pm1(10, 1, 2), "memory", inputs="pm1 toy")
    runs = convnets.run_recipes(cfg, data, progress=False)
    saved = runner.load_model(runner.model_path("smoke", "cifar10", "theano"), "rerun")
    assert sorted(saved["snapshots"]) == [0, 1, 3]  # the last epoch is always kept
    init = convnets.build_model(cfg.recipe("theano"), in_channels=1)
    assert torch.equal(saved["snapshots"][0]["conv1.weight"], init.conv1.weight.detach())
    assert not torch.equal(saved["snapshots"][1]["conv1.weight"], saved["snapshots"][0]["conv1.weight"])
    assert "snapshots" not in runner.load_model(runner.model_path("smoke", "cifar10", "float"), "rerun")
    assert runs["float"].runs[0].snapshots == {}
