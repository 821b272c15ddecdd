"""Evaluation: eval mode restored, loss and metrics over a split or a loader, bad input, the process group."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from qnnlib.data.splits import Batches
from qnnlib.evaluation import ProcessGroup, eval_mode, evaluate
from qnnlib.train import fit
from tests.test_train import _cfg, _model, _split, _tensor_loader, _todays_evaluate


@pytest.fixture(scope="module")
def data() -> types.SimpleNamespace:
    return types.SimpleNamespace(train=_split(600, 0), valid=_split(200, 1), test=_split(200, 2))


def test_eval_mode_restores_every_module_and_turns_off_autograd() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    model[1].eval()  # a mixed state must come back as it was
    before = [m.training for m in model.modules()]
    with eval_mode(model):
        assert not any(m.training for m in model.modules()) and not torch.is_grad_enabled()
    assert [m.training for m in model.modules()] == before and torch.is_grad_enabled()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before


# --------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_on_split_and_on_loader_agree(data) -> None:
    model = _model()
    fit(model, data, _cfg(epochs=1))
    a = evaluate(model, data.valid)
    b = evaluate(model, data.valid, 1000)
    c = evaluate(model, Batches(data.valid, 1000))
    d = evaluate(model, _tensor_loader(data.valid, batch_size=1000))
    assert a == b == c == d == _todays_evaluate(model, data.valid, 1000)
    e = evaluate(model, data.valid, 7)  # other batching: same error, loss equal up to rounding
    assert e["error"] == a["error"] and e["loss"] == pytest.approx(a["loss"], rel=1e-6)


def test_evaluate_bad_input(data) -> None:
    model = _model()
    for bs in (0, -1):
        with pytest.raises(ValueError, match="batch_size"):
            evaluate(model, data.valid, bs)
    with pytest.raises(ValueError, match="loader brings its own batches"):
        evaluate(model, Batches(data.valid, 10), 10)
    with pytest.raises(ValueError, match="square_hinge"):
        evaluate(model, data.valid, loss="nll")
    with pytest.raises(ValueError, match="top5"):
        evaluate(model, data.valid, metrics=("accuracy",))
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [])


def test_process_group() -> None:
    assert ProcessGroup().is_main and not ProcessGroup(rank=1, world_size=2).is_main
    t = torch.ones(3)
    assert ProcessGroup().all_reduce_sum(t) is t
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="rank"):
            ProcessGroup(rank=rank, world_size=world)
