"""One home for configuration: profiles resolve to frozen configs, the env var wins, any field can be
overridden, unknown names and wrong types are rejected with the valid names, None keeps the profile's value."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.experiments import config
from qnnlib.experiments.mnist import RECIPES, MnistConfig, RecipeConfig
from qnnlib.models.blocks import ModelOptions
from qnnlib.precision import BINARY, FLOAT, LayerBits, Precision


@pytest.fixture(autouse=True)
def _no_env_profile(monkeypatch):
    monkeypatch.delenv("QNNLIB_PROFILE", raising=False)


@pytest.mark.parametrize("experiment", list(config.EXPERIMENTS))
def test_every_registered_experiment_resolves_at_every_profile(experiment) -> None:
    module = config.experiment(experiment)
    assert set(module.PROFILES) == set(config.PROFILES) and set(module.SANITY) == set(config.PROFILES)
    for p in config.PROFILES:
        cfg = config.resolve(experiment, p)
        assert cfg.profile == p
        json.dumps(config.as_dict(cfg), default=str)  # printable / JSON-able
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.profile = "x"  # type: ignore[misc]
        assert config.overridable(cfg), "an experiment config must have overridable fields"


def test_paper_profile_is_the_authors_settings() -> None:
    cfg = config.resolve("mnist", "paper")
    th, t7, fl = cfg.recipe("theano"), cfg.recipe("torch7"), cfg.recipe("float")
    assert cfg.recipes == RECIPES and cfg.dataset == "mnist" and cfg.train_size is None and cfg.n_seeds == 1
    assert (th.hidden, th.depth, th.dropout_in, th.dropout_hidden) == (4096, 3, 0.2, 0.5)
    assert th.precision == BINARY and th.train.optimizer == "lasagne_adam" and th.train.glorot
    assert (th.train.epochs, th.train.batch_size, th.train.lr_start, th.train.lr_end) == (1000, 100, 3e-3, 3e-7)
    assert (th.follows, th.options.bn_running, th.train.select_ties) == ("code", "lasagne", "last")
    assert (t7.hidden, t7.dropout_in, t7.precision.stochastic, t7.precision.norm) == (2048, 0.0, True, "sbn")
    assert (t7.train.optimizer, t7.train.lr_start, t7.train.lr_schedule, t7.train.halve_every) == (
        "shift_adamax", 2**-6, "halve", 20)
    assert (t7.follows, t7.train.betas, t7.train.adamax_state, t7.train.glorot_placement, t7.train.lr_factors) == (
        "code", (0.9, 0.999), "torch7", "after", "torch7")
    assert (t7.options.sbn_backward, t7.options.out_bn_eps, t7.options.bias_init, t7.input_range) == (
        "torch7", 1e-5, "torch7", "torch7")
    assert fl.precision == FLOAT and not fl.train.glorot and fl.hidden == 4096
    # the paper-text variants: the same networks and schedules, the paper's algorithms
    thp, t7p = cfg.recipe("theano-paper"), cfg.recipe("torch7-paper")
    assert thp.follows == t7p.follows == "paper-text" and thp.train.optimizer == "adam"
    assert thp.options == t7p.options == ModelOptions() and t7p.input_range == "pm1"
    assert (t7p.train.betas, t7p.train.adamax_state, t7p.train.glorot_placement) == (None, "paper", "inside")
    assert (thp.hidden, thp.train.epochs, t7p.hidden, t7p.train.halve_every) == (4096, 1000, 2048, 20)


def test_env_var_wins(monkeypatch) -> None:
    monkeypatch.setenv("QNNLIB_PROFILE", "smoke")
    assert config.resolve("mnist", "paper").profile == "smoke"
    monkeypatch.setenv("QNNLIB_PROFILE", "bogus")
    with pytest.raises(ValueError, match="QNNLIB_PROFILE"):
        config.resolve("mnist", "quick")


def test_overrides_reach_every_level() -> None:
    cfg = config.resolve("mnist", "smoke", recipes=["theano", "torch7"], epochs=5, hidden=64, dataset="mnist",
                         seed=3, optimizer="shift_adamax", norm="sbn", grad_bits=6, n_seeds=2, lr_start=0.5)
    assert cfg.recipes == ("theano", "torch7") and set(cfg.recipe_configs) == {"theano", "torch7"}
    for r in (cfg.recipe("theano"), cfg.recipe("torch7")):
        assert (r.train.epochs, r.hidden, r.train.seed, r.train.optimizer, r.train.lr_start) == (5, 64, 3, "shift_adamax", 0.5)
        assert (r.precision.norm, r.precision.grad_bits) == ("sbn", 6)
    assert cfg.dataset == "mnist" and cfg.n_seeds == 2 and cfg.seeds("theano") == (3, 4)
    with pytest.raises(ValueError, match="unknown recipe"):
        cfg.recipe("float")
    assert config.resolve("mnist", "smoke", epochs=None).recipe("theano").train.epochs == 2  # None: the profile's


def test_a_single_name_is_a_one_element_list() -> None:
    assert config.resolve("mnist", "smoke", recipes="theano").recipes == ("theano",)


def test_overrides_dict_and_its_json_text() -> None:
    a = config.resolve("mnist", "smoke", overrides={"act_bits": 2, "epochs": 1})
    b = config.resolve("mnist", "smoke", overrides='{"act_bits": 2, "epochs": 1}')
    assert a == b and a.recipe("theano").precision.act_bits == 2 and a.recipe("float").train.epochs == 1
    with pytest.raises(ValueError, match="both as parameters and inside overrides"):
        config.resolve("mnist", "smoke", epochs=3, overrides={"epochs": 1})
    with pytest.raises(ValueError, match="JSON"):
        config.resolve("mnist", "smoke", overrides="{not json")


@pytest.mark.parametrize("kw,err,match", [
    (dict(recipes=["sgd"]), ValueError, "recipes"),
    (dict(recipes=[]), ValueError, "recipes"),
    (dict(dataset="cifar10"), ValueError, "dataset"),
    (dict(epochs=1.5), TypeError, "epochs must be an integer"),
    (dict(seed="abc"), TypeError, "seed must be an integer"),
    (dict(hidden=0), ValueError, "hidden"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(resume=1), TypeError, "resume must be True or False"),
    (dict(lr_start=True), TypeError, "lr_start must be a number"),
    (dict(optimizer="sgd"), ValueError, "optimizer"),
    (dict(weight_bits=0), ValueError, "weight_bits"),
    (dict(n_seeds=0), ValueError, "n_seeds"),
    (dict(epoch=3), ValueError, r"unknown parameter\(s\) \['epoch'\].*'epochs'"),
])
def test_bad_overrides_are_rejected_before_any_work(kw, err, match) -> None:
    with pytest.raises(err, match=match):
        config.resolve("mnist", "smoke", **kw)


def test_unknown_experiment_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown experiment 'resnet'.*mnist"):
        config.resolve("resnet", "smoke")


def test_identity_fields_are_not_overridable() -> None:
    names = config.overridable(config.resolve("mnist", "smoke"))
    assert "profile" not in names and "name" not in names and "recipe_configs" not in names
    assert {"epochs", "hidden", "weight_bits", "act_bits", "grad_bits", "norm", "optimizer", "seed", "n_seeds"} <= set(names)


def test_round_trip_through_as_dict() -> None:
    rc = config.resolve("mnist", "quick", grad_bits=6).recipe("torch7")
    assert config.from_dict(RecipeConfig, json.loads(json.dumps(config.as_dict(rc)))) == rc
    layered = Precision(first=LayerBits(weight_bits=None), overrides={2: LayerBits(act_bits=4)}, last=LayerBits(8))
    rc = config.resolve("mnist", "quick", precision=layered).recipe("theano")
    text = json.dumps(config.as_dict(rc))  # INHERIT travels as its value
    assert config.from_dict(RecipeConfig, json.loads(text)) == rc and rc.precision.label == layered.label
    cfg = config.resolve("mnist", "paper")
    assert config.from_dict(MnistConfig, config.as_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="no field"):
        config.from_dict(Precision, {"bits": 1})


# --- the generic rules, on a toy config ------------------------------------------------------------
@dataclass(frozen=True)
class _Inner:
    rate: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class _Outer:
    profile: str = "smoke"
    size: int | None = None
    names: tuple[str, ...] = ("x",)
    inner: _Inner = field(default_factory=_Inner)
    more: dict = field(default_factory=lambda: {"one": _Inner(), "two": _Inner(mode="b")})


def test_generic_override_rules() -> None:
    base = _Outer()
    out = config.override(base, rate=2, mode="b", size=None, names=["p", "q"])
    assert out.inner == _Inner(2.0, "b") and all(v == _Inner(2.0, "b") for v in out.more.values())
    assert out.size is None and out.names == ("p", "q") and base == _Outer()  # input unchanged
    assert config.override(base, size=4).size == 4
    with pytest.raises(TypeError, match="size must be int or NoneType"):
        config.override(base, size="4")
    with pytest.raises(ValueError, match="mode must be one of"):
        config.override(base, mode="c")


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(allow_nan=False), st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2)))
def test_integer_fields_take_only_integers(value) -> None:
    with pytest.raises((TypeError, ValueError)):
        config.resolve("mnist", "smoke", epochs=value)
