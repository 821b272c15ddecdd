"""qnnlib.checks and the public functions that take sizes, counts, epochs and seeds (property tests).

Every value outside a parameter's documented range — zero and negatives where a count must be positive,
bools, floats (even 2.0), strings, None — raises ``TypeError`` or ``ValueError`` whose message names the
parameter; values inside the range are accepted. Bit widths: tests/test_bounds.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.checks import check_int
from qnnlib.data.splits import Batches, Split, stratified_subset
from qnnlib.evaluation import evaluate
from qnnlib.models.convnet import convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import FLOAT
from qnnlib.train import TrainConfig

SETTINGS = settings(max_examples=40, deadline=None)
NOT_INTS_OR_NONE = st.one_of(st.booleans(), st.floats(allow_nan=True), st.text(max_size=3), st.just(np.float32(2.0)),
                             st.just(np.bool_(True)), st.lists(st.integers(), max_size=2))
NOT_INTS = st.one_of(NOT_INTS_OR_NONE, st.none())
BELOW_ONE = st.integers(max_value=0)


def _bad(value, minimum: int = 1):
    """The exception a bad value must raise: TypeError for a non-integer, ValueError for one out of range."""
    return TypeError if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) else ValueError


@SETTINGS
@given(st.one_of(NOT_INTS, BELOW_ONE))
def test_check_int_names_the_parameter(value) -> None:
    with pytest.raises(_bad(value), match="^widget count must be a positive integer, got "):
        check_int(value, "widget count")


@SETTINGS
@given(st.integers(1, 10**12), st.sampled_from([int, np.int8, np.int64, np.uint16]))
def test_check_int_accepts_integers_of_any_kind(value, kind) -> None:
    value = min(value, int(np.iinfo(kind).max)) if kind is not int else value
    assert check_int(kind(value), "n") == value and type(check_int(kind(value), "n")) is int


def test_check_int_bounds() -> None:
    assert check_int(0, "seed", minimum=0) == 0 and check_int(5, "n", 1, 5) == 5
    with pytest.raises(ValueError, match="^n must be an integer >= 1 and <= 5, got 6$"):
        check_int(6, "n", 1, 5)
    with pytest.raises(ValueError, match="^seed must be an integer >= 0, got -1$"):
        check_int(-1, "seed", minimum=0)


TRAIN_INTS = {"epochs": 1, "batch_size": 2, "eval_batch_size": 1, "halve_every": 1, "seed": 0}


@SETTINGS
@given(st.sampled_from(sorted(TRAIN_INTS)), st.data())
def test_train_config_rejects_every_bad_count(field, data) -> None:
    low = TRAIN_INTS[field]
    value = data.draw(st.one_of(NOT_INTS, st.integers(max_value=low - 1)))
    with pytest.raises(_bad(value), match=field):
        TrainConfig(**{field: value})


@SETTINGS
@given(st.sampled_from(sorted(TRAIN_INTS)), st.integers(0, 10**6))
def test_train_config_accepts_every_good_count(field, offset) -> None:
    assert getattr(TrainConfig(**{field: TRAIN_INTS[field] + offset}), field) == TRAIN_INTS[field] + offset


SPLIT = Split(torch.zeros(20, 4), torch.arange(20) % 2)


@SETTINGS
@given(st.one_of(NOT_INTS_OR_NONE, BELOW_ONE))  # None: the default batch size / no seed
def test_batch_sizes(value) -> None:
    with pytest.raises(_bad(value), match="batch_size"):
        Batches(SPLIT, value)
    with pytest.raises(_bad(value), match="batch_size"):
        evaluate(torch.nn.Linear(4, 2), SPLIT, value)


@SETTINGS
@given(st.one_of(NOT_INTS_OR_NONE, st.integers(max_value=-1)))
def test_seeds(value) -> None:
    with pytest.raises(_bad(value), match="seed"):
        Batches(SPLIT, 5, shuffle=True, seed=value)
    with pytest.raises(_bad(value), match="seed"):
        stratified_subset(SPLIT.y.numpy(), 4, value)


@SETTINGS
@given(st.one_of(NOT_INTS, BELOW_ONE, st.integers(21, 10**9)))
def test_subset_size_is_within_the_split(value) -> None:
    with pytest.raises(_bad(value), match="subset size n"):
        stratified_subset(SPLIT.y.numpy(), value, 0)


MLP_ARGS = ("hidden", "depth", "in_features", "num_classes")


@SETTINGS
@given(st.sampled_from(MLP_ARGS), st.one_of(NOT_INTS, BELOW_ONE))
def test_mlp_sizes(name, value) -> None:
    kw = {"hidden": 4, "depth": 1, "in_features": 3, "num_classes": 2, name: value}
    with pytest.raises(_bad(value), match=name):
        mnist_mlp(kw.pop("hidden"), kw.pop("depth"), precision=FLOAT, **kw)


CONV_ARGS = ("channels[1]", "fc", "in_channels", "image_size", "num_classes")


@SETTINGS
@given(st.sampled_from(CONV_ARGS), st.one_of(NOT_INTS, BELOW_ONE))
def test_convnet_sizes(name, value) -> None:
    kw = {"channels": (2, 2, 2), "fc": 4, "in_channels": 1, "image_size": 8, "num_classes": 2}
    if name == "channels[1]":
        kw["channels"] = (2, value, 2)
    else:
        kw[name] = value
    with pytest.raises(_bad(value), match=name.replace("[", r"\[").replace("]", r"\]")):
        convnet(kw.pop("channels"), kw.pop("fc"), precision=FLOAT, **kw)


def test_good_sizes_build() -> None:
    assert isinstance(mnist_mlp(np.int64(4), 1, precision=FLOAT, in_features=3, num_classes=2), torch.nn.Module)
    assert isinstance(convnet((2, 2, 2), 4, precision=FLOAT, in_channels=1, image_size=8), torch.nn.Module)
    assert len(stratified_subset(SPLIT.y.numpy(), np.int32(4), 0)) == 4
