"""Training loop: schedules, Alg. 1 clipping, best-validation selection, determinism and resume."""

from __future__ import annotations

import math
import types

import pytest
import torch

from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.train import FitResult, TrainConfig, evaluate, fit, lr_at


def _split(n: int, seed: int) -> types.SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    centers = torch.linspace(-0.8, 0.8, 4)
    x = (centers[y].unsqueeze(1) + 0.3 * torch.randn(n, 20, generator=g)).clamp(-1, 1)
    x[:, 10:] = torch.randn(n, 10, generator=g).clamp(-1, 1)  # noise features
    return types.SimpleNamespace(x=x, y=y)


@pytest.fixture(scope="module")
def data() -> types.SimpleNamespace:
    return types.SimpleNamespace(train=_split(600, 0), valid=_split(200, 1), test=_split(200, 2))


def _model(precision: Precision = BINARY, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mnist_mlp(32, 2, precision=precision, in_features=20, num_classes=4)


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=50, lr_start=3e-3, lr_end=3e-5, progress=False, seed=7)
    return TrainConfig(**{**base, **kw})


def test_lr_schedules() -> None:
    c = TrainConfig(epochs=1000, lr_start=3e-3, lr_end=3e-7)
    assert lr_at(c, 0) == pytest.approx(3e-3)
    assert lr_at(c, 1) / lr_at(c, 0) == pytest.approx(0.99083, abs=1e-5)  # Theano MNIST decay per epoch
    assert lr_at(c, 1000) == pytest.approx(3e-7)
    h = TrainConfig(epochs=100, lr_start=2**-6, lr_schedule="halve", halve_every=20)
    assert [lr_at(h, e) for e in (0, 19, 20, 40)] == [2**-6, 2**-6, 2**-7, 2**-8]
    assert lr_at(TrainConfig(lr_schedule="constant", lr_start=0.1), 50) == 0.1


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(batch_size=1), dict(optimizer="sgd"),
                                dict(lr_schedule="cosine"), dict(lr_start=0.0), dict(halve_every=0)])
def test_bad_config(kw) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_fit_learns_and_clips(data) -> None:
    model = _model()
    res = fit(model, data, _cfg(epochs=8, lr_start=1e-2, lr_schedule="constant"))
    assert [h["epoch"] for h in res.history] == list(range(1, 9))
    assert res.test_error_at_best < 0.3  # chance is 0.75; measured 0.11
    for m in model.modules():
        if hasattr(m, "weight_bits"):
            assert m.weight.abs().max() <= 1.0  # Alg. 1: W ← Clip(W, −1, 1)


def test_best_validation_selection(data) -> None:
    res = fit(_model(), data, _cfg(epochs=4))
    best = min(res.history, key=lambda h: h["valid_error"])  # first minimum
    assert res.best_epoch == best["epoch"]
    assert res.test_error_at_best == best["test_error"]
    assert res.final_test_error == res.history[-1]["test_error"]


def test_restore_best_weights(data) -> None:
    model = _model()
    res = fit(model, data, _cfg(epochs=4), restore_best=True)
    assert evaluate(model, data.test)["error"] == pytest.approx(res.test_error_at_best)


@pytest.mark.parametrize("precision,opt", [(FLOAT, "adam"), (Precision(1, 1, True, "sbn"), "shift_adamax")])
def test_deterministic(data, precision, opt) -> None:
    cfg = _cfg(optimizer=opt, lr_start=2**-6 if opt == "shift_adamax" else 3e-3, glorot=precision.weight_bits is not None)
    a = fit(_model(precision), data, cfg)
    b = fit(_model(precision), data, cfg)
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("precision,opt", [(BINARY, "adam"), (Precision(1, 1, True, "sbn"), "shift_adamax")])
def test_resume_matches_uninterrupted(data, tmp_path, precision, opt) -> None:
    """A run killed after epoch 2 and restarted with the same config ends exactly like an uninterrupted run."""
    kw = dict(epochs=4, optimizer=opt, lr_start=2**-6 if opt == "shift_adamax" else 3e-3)
    ref_model = _model(precision)
    ref = fit(ref_model, data, _cfg(**kw, checkpoint_dir=str(tmp_path / "ref")))

    def kill(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        fit(_model(precision), data, _cfg(**kw, checkpoint_dir=str(tmp_path / "run")), on_epoch_end=kill)
    resumed_model = _model(precision, seed=999)  # a different init: everything must come from the checkpoint
    res = fit(resumed_model, data, _cfg(**kw, checkpoint_dir=str(tmp_path / "run")))
    assert res.resumed_from_epoch == 1
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in h]  # noqa: E731
    assert strip(res.history) == strip(ref.history)
    assert (res.best_epoch, res.test_error_at_best) == (ref.best_epoch, ref.test_error_at_best)
    for (k, a), (_, b) in zip(ref_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), k


def test_resume_refuses_other_config(data, tmp_path) -> None:
    fit(_model(), data, _cfg(epochs=1, checkpoint_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="different training config"):
        fit(_model(), data, _cfg(epochs=1, lr_start=1e-3, checkpoint_dir=str(tmp_path)))


def test_finished_run_is_not_retrained(data, tmp_path) -> None:
    cfg = _cfg(epochs=2, checkpoint_dir=str(tmp_path))
    a = fit(_model(), data, cfg)
    b = fit(_model(seed=5), data, cfg)
    assert b.history == a.history and b.resumed_from_epoch == 1


def test_training_set_smaller_than_batch(data) -> None:
    tiny = types.SimpleNamespace(train=_split(10, 0), valid=data.valid, test=data.test)
    with pytest.raises(ValueError, match="smaller than one batch"):
        fit(_model(), tiny, _cfg(batch_size=50))


def test_cuda_request_without_cuda(data) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        fit(_model(), data, _cfg(device="cuda"))


def test_fitresult_dict_roundtrip() -> None:
    r = FitResult(history=[{"epoch": 1}], best_epoch=1, best_valid_error=0.1)
    assert FitResult(**r.to_dict()) == r
    assert math.isnan(FitResult().test_error_at_best)
