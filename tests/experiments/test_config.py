"""Profiles resolve to frozen configs; the env var wins; overrides of None take the profile's value."""

from __future__ import annotations

import dataclasses
import json

import pytest

from qnnlib.experiments import config
from qnnlib.precision import BINARY, FLOAT


def test_profiles_resolve(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    for p in config.PROFILES:
        cfg = config.resolve("mnist", p)
        assert cfg.profile == p and cfg.recipes == config.RECIPES
        json.dumps(config.as_dict(cfg), default=str)  # printable / JSON-able
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.profile = "x"  # type: ignore[misc]


def test_paper_profile_is_the_authors_settings(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    cfg = config.resolve("mnist", "paper")
    th, t7, fl = cfg.recipe("theano"), cfg.recipe("torch7"), cfg.recipe("float")
    assert cfg.dataset == "mnist" and cfg.train_size is None
    assert (th.hidden, th.depth, th.dropout_in, th.dropout_hidden) == (4096, 3, 0.2, 0.5)
    assert th.precision == BINARY and th.train.optimizer == "adam" and th.train.glorot
    assert (th.train.epochs, th.train.batch_size, th.train.lr_start, th.train.lr_end) == (1000, 100, 3e-3, 3e-7)
    assert (t7.hidden, t7.dropout_in, t7.precision.stochastic, t7.precision.norm) == (2048, 0.0, True, "sbn")
    assert (t7.train.optimizer, t7.train.lr_start, t7.train.lr_schedule, t7.train.halve_every) == (
        "shift_adamax", 2**-6, "halve", 20)
    assert fl.precision == FLOAT and not fl.train.glorot and fl.hidden == 4096


def test_env_var_wins(monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_PROFILE", "smoke")
    assert config.resolve("mnist", "paper").profile == "smoke"
    monkeypatch.setenv("QNNLIB_PROFILE", "bogus")
    with pytest.raises(ValueError, match="QNNLIB_PROFILE"):
        config.resolve("mnist", "quick")


def test_overrides(monkeypatch) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    cfg = config.resolve("mnist", "smoke", recipes=["theano"], epochs=5, hidden=64, dataset="mnist", seed=3)
    assert cfg.recipes == ("theano",) and cfg.dataset == "mnist"
    r = cfg.recipe("theano")
    assert (r.train.epochs, r.hidden, r.train.seed) == (5, 64, 3)
    with pytest.raises(ValueError, match="unknown recipe"):
        cfg.recipe("torch7")
    assert config.resolve("mnist", "smoke", epochs=None).recipe("theano").train.epochs == 2


@pytest.mark.parametrize("kw", [dict(recipes=["sgd"]), dict(recipes=[]), dict(dataset="cifar10")])
def test_bad_overrides(monkeypatch, kw) -> None:
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)
    with pytest.raises(ValueError):
        config.resolve("mnist", "smoke", **kw)


def test_unknown_experiment() -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        config.resolve("imagenet", "smoke")
