"""Training loop: schedules, Alg. 1 clipping, best-validation selection, determinism and resume, loaders
(in-memory and DataLoader), loss and metrics by name, the distributed hooks, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from qnnlib.data.splits import Batches
from qnnlib.evaluation import ProcessGroup, evaluate
from qnnlib.files import NotWritableError, UnreadableFileError
from qnnlib.losses import square_hinge_loss
from qnnlib.models.mlp import mnist_mlp
from qnnlib.optim import clip_latent_weights
from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.train import (
    FitResult,
    Loaders,
    TrainConfig,
    fit,
    in_memory_loaders,
    lr_at,
    make_optimizer,
    set_loader_epoch,
)


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


def _strip(history: list[dict]) -> list[dict]:
    """History rows without their wall-clock time."""
    return [{k: v for k, v in r.items() if k not in ("epoch_time_s", "train_time_s")} for r in history]


def test_lr_schedules() -> None:
    c = TrainConfig(epochs=1000, lr_start=3e-3, lr_end=3e-7)
    assert lr_at(c, 0) == pytest.approx(3e-3)
    assert lr_at(c, 1) / lr_at(c, 0) == pytest.approx(0.99083, abs=1e-5)  # Theano MNIST decay per epoch
    assert lr_at(c, 1000) == pytest.approx(3e-7)
    h = TrainConfig(epochs=100, lr_start=2**-6, lr_schedule="halve", halve_every=20)
    assert [lr_at(h, e) for e in (0, 19, 20, 40)] == [2**-6, 2**-6, 2**-7, 2**-8]
    assert lr_at(TrainConfig(lr_schedule="constant", lr_start=0.1), 50) == 0.1


@pytest.mark.parametrize(("kw", "match"), [
    (dict(epochs=0), "epochs"), (dict(batch_size=1), "batch_size"), (dict(optimizer="sgd"), "optimizer"),
    (dict(lr_schedule="cosine"), "lr_schedule"), (dict(lr_start=0.0), "lr_start"), (dict(halve_every=0), "halve_every"),
    (dict(eval_batch_size=0), "eval_batch_size"), (dict(eval_batch_size=-1), "eval_batch_size"),
    (dict(loss="hinge"), "square_hinge.*cross_entropy"), (dict(metrics=("accuracy",)), "error.*top5.*perplexity"),
    (dict(metrics=()), "metrics"), (dict(metrics=("error", "error")), "distinct"),
    (dict(metrics=("top5",)), "select_metric"), (dict(select_metric="top5"), "select_metric"),
])
def test_bad_config(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_config_metrics_stay_a_tuple_and_hashable() -> None:
    c = TrainConfig(metrics=["error", "top5"])  # e.g. from a notebook parameter
    assert c.metrics == ("error", "top5") and hash(c) == hash(TrainConfig(metrics=("error", "top5")))
    assert TrainConfig(metrics="perplexity", select_metric="perplexity").metrics == ("perplexity",)


def test_fingerprint_unchanged_for_configs_of_earlier_runs() -> None:
    """The fields added for losses/metrics do not enter the hash at their defaults (checkpoint dirs are named by it)."""
    c = TrainConfig(epochs=12, lr_end=3e-5, seed=3)
    old = {k: v for k, v in dataclasses.asdict(c).items()
           if k not in ("device", "checkpoint_dir", "progress", "loss", "metrics", "select_metric", "threads", "betas",
                        "adamax_state", "glorot_placement", "lr_factors", "clip", "select_ties", "grad_clip_norm")}
    assert c.fingerprint() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert TrainConfig(loss="cross_entropy").fingerprint() != TrainConfig().fingerprint()
    assert TrainConfig(metrics=("error", "top5")).fingerprint() != TrainConfig().fingerprint()
    assert TrainConfig(threads=1).fingerprint() != TrainConfig().fingerprint()  # 1 vs 2 threads: other weights
    for kw in (dict(betas=(0.9, 0.999)), dict(lr_factors="torch7"), dict(clip="all"), dict(select_ties="last"),
               dict(grad_clip_norm=0.25),
               dict(optimizer="shift_adamax", adamax_state="torch7"),
               dict(optimizer="shift_adamax", glorot_placement="after")):
        base = TrainConfig(optimizer=kw.get("optimizer", "adam"))
        assert TrainConfig(**kw).fingerprint() != base.fingerprint(), kw


def test_grad_clip_norm_bounds_the_global_gradient_norm(data) -> None:
    for bad in (0.0, -1.0, float("inf"), True, "1"):
        with pytest.raises(ValueError, match="grad_clip_norm must be None"):
            TrainConfig(grad_clip_norm=bad)
    norms = []
    model = _model()
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):  # noqa: ANN001, ANN202 - records the norm the step then sees
        params = list(params)
        total = orig(params, max_norm)
        norms.append((float(total), float(torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in params if p.grad is not None])))))
        return total

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        fit(model, data, _cfg(epochs=1, grad_clip_norm=1e-3))
    finally:
        torch.nn.utils.clip_grad_norm_ = orig
    assert norms and all(after <= 1e-3 * (1 + 1e-4) for _, after in norms) and max(b for b, _ in norms) > 1e-3


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
    assert res.test_error_at_best == best["test_error"] == res.reported == res.test_at_best["error"]
    assert res.final_test_error == res.history[-1]["test_error"] == res.final_test["error"]
    assert res.best_valid == {"loss": best["valid_loss"], "error": best["valid_error"]}
    assert res.final_valid == {"loss": res.history[-1]["valid_loss"], "error": res.history[-1]["valid_error"]}


def test_restore_best_weights(data) -> None:
    model = _model()
    res = fit(model, data, _cfg(epochs=4), restore_best=True)
    assert evaluate(model, data.test)["error"] == pytest.approx(res.test_error_at_best)


@pytest.mark.parametrize("precision,opt", [(FLOAT, "adam"), (Precision(1, 1, True, "sbn"), "shift_adamax")])
def test_deterministic(data, precision, opt) -> None:
    cfg = _cfg(optimizer=opt, lr_start=2**-6 if opt == "shift_adamax" else 3e-3, glorot=precision.weight_bits is not None)
    a = fit(_model(precision), data, cfg)
    b = fit(_model(precision), data, cfg)
    assert _strip(a.history) == _strip(b.history)


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
    assert _strip(res.history) == _strip(ref.history)
    assert (res.best_epoch, res.test_error_at_best) == (ref.best_epoch, ref.test_error_at_best)
    for (k, a), (_, b) in zip(ref_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), k


def test_resume_refuses_other_config(data, tmp_path) -> None:
    fit(_model(), data, _cfg(epochs=1, checkpoint_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="different training config"):
        fit(_model(), data, _cfg(epochs=1, lr_start=1e-3, checkpoint_dir=str(tmp_path)))


@pytest.mark.parametrize("cut", [0, 10, "half"])
def test_truncated_checkpoint_names_the_file_and_deleting_it_restarts(data, tmp_path, cut) -> None:
    cfg = _cfg(epochs=2, checkpoint_dir=str(tmp_path))
    ref = fit(_model(), data, cfg)
    last = tmp_path / "last.pt"
    raw = last.read_bytes()
    last.write_bytes(raw[: len(raw) // 2 if cut == "half" else cut])
    with pytest.raises(UnreadableFileError, match=rf"{last} is not a readable training checkpoint .*Delete it "
                                                  r"\(or its directory\); the run then restarts from epoch 1"):
        fit(_model(), data, cfg)
    last.unlink()
    again = fit(_model(), data, cfg)
    assert again.resumed_from_epoch is None and _strip(again.history) == _strip(ref.history)


def test_checkpoint_of_something_else_is_refused(data, tmp_path) -> None:
    torch.save({"epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(UnreadableFileError, match="not a qnnlib training checkpoint .missing fingerprint"):
        fit(_model(), data, _cfg(epochs=1, checkpoint_dir=str(tmp_path)))


def test_orphan_of_a_write_killed_mid_checkpoint_is_cleaned(data, tmp_path) -> None:
    (tmp_path / "last.pt.tmp4242424").write_bytes(b"half")  # the name the old writer used
    (tmp_path / ".last.pt.4242424.x1y2z3.tmp").write_bytes(b"half")  # qnnlib.files' name, writer gone
    fit(_model(), data, _cfg(epochs=1, checkpoint_dir=str(tmp_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_unwritable_checkpoint_dir_says_which_and_how_to_move_it(data, tmp_path, read_only) -> None:
    ro = read_only(tmp_path / "data")
    with pytest.raises(NotWritableError, match=rf"{ro}/ck is not a writable directory .*set "
                                               r"TrainConfig.checkpoint_dir \(or QNNLIB_DATA"):
        fit(_model(), data, _cfg(epochs=1, checkpoint_dir=str(ro / "ck")))


def test_threads_are_pinned_during_fit_and_restored(data) -> None:
    before = torch.get_num_threads()
    seen = []
    fit(_model(), data, _cfg(epochs=1, threads=1), on_epoch_end=lambda e, r: seen.append(torch.get_num_threads()))
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be None .* or a positive integer, got 0"):
        _cfg(threads=0)
    with pytest.raises(ValueError, match="threads must be"):
        _cfg(threads=True)


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
    g = FitResult(history=[{"epoch": 1, "test_loss": None}], best_epoch=1, select_metric="perplexity",
                  best_valid={"loss": 4.0, "perplexity": 55.0}, test_at_best={"loss": 4.1, "perplexity": 60.0})
    assert FitResult(**g.to_dict()) == g and g.reported == 60.0 and g.best_valid_value == 55.0


def test_fitresult_of_an_earlier_checkpoint_gets_the_metric_dicts() -> None:
    """A result dict written before the metric dicts existed: selection continues from its error fields."""
    old = dict(history=[{"epoch": 1}], best_epoch=1, best_valid_error=0.2, test_error_at_best=0.25,
               final_valid_error=0.2, final_test_error=0.25, wall_time_s=1.0, resumed_from_epoch=None)
    r = FitResult(**old)
    assert r.best_valid_value == 0.2 and r.reported == 0.25 and r.final_test == {"error": 0.25}
    assert FitResult().best_valid_value == math.inf and math.isnan(FitResult().reported)


# ---------------------------------------------------------------- today's loop, re-stated: the new fit must equal it
def _todays_evaluate(model: torch.nn.Module, split, batch_size: int) -> dict[str, float]:
    loss_sum, wrong, n = 0.0, 0, split.y.shape[0]
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb, yb = split.x[i : i + batch_size], split.y[i : i + batch_size]
            out = model(xb)
            loss_sum += float(square_hinge_loss(out, yb)) * yb.shape[0]
            wrong += int((out.argmax(dim=1) != yb).sum())
    model.train()
    return {"loss": loss_sum / max(n, 1), "error": wrong / max(n, 1)}


def _todays_fit(model: torch.nn.Module, data, config: TrainConfig) -> list[dict[str, float]]:
    """The index-based loop ``fit`` had before it took loaders (test evaluated every epoch), on the CPU."""
    opt = make_optimizer(model, config)
    history = []
    n_train = data.train.y.shape[0]
    n_batches = n_train // config.batch_size
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        perm = torch.randperm(n_train, generator=gen)
        lr = lr_at(config, epoch)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        model.train()
        loss_sum, wrong = 0.0, 0
        for b in range(n_batches):
            idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
            xb, yb = data.train.x[idx], data.train.y[idx]
            out = model(xb)
            loss = square_hinge_loss(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if config.clip_weights:
                clip_latent_weights(model)
            loss_sum += float(loss.detach())
            wrong += int((out.detach().argmax(1) != yb).sum())
        valid = _todays_evaluate(model, data.valid, config.eval_batch_size)
        test = _todays_evaluate(model, data.test, config.eval_batch_size)
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n_batches,
                        "train_error": wrong / (n_batches * config.batch_size), "valid_loss": valid["loss"],
                        "valid_error": valid["error"], "test_loss": test["loss"], "test_error": test["error"]})
    return history


def _tensor_loader(split, **kw) -> DataLoader:
    # generator=: otherwise each pass draws a base seed from the global RNG (deterministic, but other dropout masks)
    return DataLoader(TensorDataset(split.x, split.y), generator=torch.Generator(), **kw)


def _loaders(kind: str, data, cfg: TrainConfig):
    if kind == "splits":
        return data
    if kind == "batches":
        return Loaders(Batches(data.train, cfg.batch_size, shuffle=True, drop_last=True, seed=cfg.seed),
                       Batches(data.valid, cfg.eval_batch_size), Batches(data.test, cfg.eval_batch_size))
    sampler = DistributedSampler(TensorDataset(data.train.x, data.train.y), num_replicas=1, rank=0, shuffle=True,
                                 seed=cfg.seed * 100_003)  # its epoch order: randperm(generator seeded seed + epoch)
    if kind == "distributed_sampler":
        train = _tensor_loader(data.train, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    else:
        train = _tensor_loader(data.train, batch_sampler=BatchSampler(sampler, cfg.batch_size, drop_last=True))
    return Loaders(train, _tensor_loader(data.valid, batch_size=cfg.eval_batch_size),
                   _tensor_loader(data.test, batch_size=cfg.eval_batch_size))


SBN = Precision(1, 1, True, "sbn")


@pytest.mark.parametrize(("kind", "precision", "opt", "lr"), [
    ("splits", SBN, "shift_adamax", 2**-6),
    ("splits", BINARY, "adam", 1e-2),
    ("batches", SBN, "shift_adamax", 2**-6),
    ("distributed_sampler", SBN, "shift_adamax", 2**-6),
    ("batch_sampler", SBN, "shift_adamax", 2**-6),
])
def test_fit_equals_todays_index_loop_exactly(data, kind, precision, opt, lr) -> None:
    """Number for number: losses, errors, LR, best epoch, weights; dropout and stochastic binarization draw from
    the per-epoch seeded RNG, batches do not divide the splits (a dropped train batch, short eval batches)."""
    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return mnist_mlp(32, 2, precision=precision, in_features=20, num_classes=4, dropout_in=0.2,
                         dropout_hidden=0.3)

    cfg = _cfg(epochs=6, batch_size=64, eval_batch_size=64, optimizer=opt, lr_start=lr, device="cpu")
    ref_model, new_model = model(), model()
    ref = _todays_fit(ref_model, data, cfg)
    res = fit(new_model, _loaders(kind, data, cfg), cfg, restore_best=False)

    best = min(range(len(ref)), key=lambda i: ref[i]["valid_error"])  # first minimum
    improved = [i for i in range(len(ref)) if ref[i]["valid_error"] < min([math.inf, *(r["valid_error"] for r in ref[:i])])]
    assert len(improved) < len(ref)  # some epoch did not improve: its test values are skipped
    expected = [{**r, **({} if i in improved or i == len(ref) - 1 else {"test_loss": None, "test_error": None})}
                for i, r in enumerate(ref)]
    assert _strip(res.history) == expected
    assert (res.best_epoch, res.best_valid_error, res.test_error_at_best) == \
        (best + 1, ref[best]["valid_error"], ref[best]["test_error"])
    assert (res.final_valid_error, res.final_test_error) == (ref[-1]["valid_error"], ref[-1]["test_error"])
    for (k, a), (_, b) in zip(ref_model.state_dict().items(), new_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_test_split_only_when_validation_improves(data) -> None:
    seen = []
    res = fit(_model(), data, _cfg(epochs=6, lr_start=3e-2, lr_schedule="constant"),
              on_epoch_end=lambda e, row: seen.append(row))
    assert seen == res.history
    best_so_far = math.inf
    for i, row in enumerate(res.history):
        improved = row["valid_error"] < best_so_far
        best_so_far = min(best_so_far, row["valid_error"])
        computed = row["test_error"] is not None
        assert computed == (improved or i == len(res.history) - 1), row
        assert (row["test_loss"] is not None) == computed
    assert any(r["test_error"] is None for r in res.history)
    assert set(res.history[0]) == {"epoch", "lr", "train_loss", "train_error", "valid_loss", "valid_error",
                                   "test_loss", "test_error", "epoch_time_s", "train_time_s"}


# ------------------------------------------------------------------------------------ losses and metrics by name
def test_cross_entropy_with_all_metrics_selected_by_perplexity(data) -> None:
    cfg = _cfg(epochs=3, loss="cross_entropy", metrics=("error", "top5", "perplexity"), select_metric="perplexity")
    model = _model(FLOAT)
    res = fit(model, data, cfg)
    keys = {f"{s}_{m}" for s in ("train", "valid", "test") for m in ("loss", "error", "top5", "perplexity")}
    assert keys <= set(res.history[0])
    best = min(res.history, key=lambda h: h["valid_perplexity"])
    assert res.best_epoch == best["epoch"] and res.select_metric == "perplexity"
    assert res.reported == best["test_perplexity"] == res.test_at_best["perplexity"]
    for h in res.history:
        assert h["valid_perplexity"] == pytest.approx(math.exp(h["valid_loss"]), rel=1e-6)  # exp(mean token CE)
        assert h["valid_top5"] == 0.0  # 4 classes: always among the top 5
    ev = evaluate(model, data.test, 64, loss="cross_entropy", metrics=("error", "perplexity"))
    assert ev["perplexity"] == pytest.approx(res.test_at_best["perplexity"], rel=1e-9)
    assert ev["error"] == res.test_at_best["error"] == res.test_error_at_best


def test_selection_by_perplexity_without_error_keeps_error_fields_empty(data) -> None:
    res = fit(_model(FLOAT), data, _cfg(epochs=2, loss="cross_entropy", metrics=("perplexity",),
                                        select_metric="perplexity"))
    assert res.best_epoch >= 1 and math.isnan(res.test_error_at_best) and res.best_valid_error == math.inf
    assert set(res.final_test) == {"loss", "perplexity"}


def test_empty_validation_loader_is_a_clear_error(data) -> None:
    cfg = _cfg(epochs=1)
    loaders = dataclasses.replace(in_memory_loaders(data, cfg), valid=[])
    with pytest.raises(ValueError, match="validation loader yielded no batches"):
        fit(_model(), loaders, cfg)
    with pytest.raises(ValueError, match="training loader"):
        fit(_model(), Loaders([], data.valid), cfg)
    with pytest.raises(TypeError, match="Loaders"):
        fit(_model(), data.train, cfg)


def test_no_test_loader(data) -> None:
    cfg = _cfg(epochs=2)
    res = fit(_model(), dataclasses.replace(in_memory_loaders(data, cfg), test=None), cfg)
    assert all(r["test_error"] is None for r in res.history) and math.isnan(res.test_error_at_best)
    assert res.best_epoch >= 1 and res.test_at_best == {}


def test_set_loader_epoch_lookup_order() -> None:
    calls = []
    hook = types.SimpleNamespace(set_epoch=lambda e: calls.append(("own", e)))
    assert set_loader_epoch(hook, 3) and calls == [("own", 3)]
    s = types.SimpleNamespace(set_epoch=lambda e: calls.append(("sampler", e)))
    assert set_loader_epoch(types.SimpleNamespace(sampler=s, batch_sampler=None), 4)
    bs = types.SimpleNamespace(sampler=types.SimpleNamespace(set_epoch=lambda e: calls.append(("batch", e))))
    assert set_loader_epoch(types.SimpleNamespace(sampler=object(), batch_sampler=bs), 5)
    assert calls[1:] == [("sampler", 4), ("batch", 5)]
    assert not set_loader_epoch([(torch.zeros(1), torch.zeros(1))], 0)


# -------------------------------------------------------------------------------------------------- distributed
@dataclasses.dataclass(frozen=True)
class _FakeRank1(ProcessGroup):
    """Rank 1 of 2 whose peer saw the very same batches: the all-reduce doubles every sum."""

    calls: list = dataclasses.field(default_factory=list)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls.append(tensor.numel())
        return tensor * 2


def test_fake_second_rank_writes_nothing_and_sees_global_numbers(data, tmp_path) -> None:
    kw = dict(epochs=3)
    single = fit(_model(), data, _cfg(**kw))
    group = _FakeRank1(rank=1, world_size=2)
    res = fit(_model(), data, _cfg(**kw, checkpoint_dir=str(tmp_path / "ck")), process_group=group)
    assert not (tmp_path / "ck").exists()  # only the main rank writes checkpoints
    n_evals = sum(1 for r in res.history for k in ("valid_error", "test_error") if r[k] is not None)
    assert len(group.calls) == len(res.history) + n_evals and set(group.calls) == {4}  # (loss, error) × (num, den)
    assert _strip(res.history) == _strip(single.history)


def test_every_rank_resumes_from_the_main_ranks_checkpoint(data, tmp_path) -> None:
    ck = tmp_path / "ck"

    def kill(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise _Killed

    ref = fit(_model(), data, _cfg(epochs=3))
    with pytest.raises(_Killed):
        fit(_model(), data, _cfg(epochs=3, checkpoint_dir=str(ck)), on_epoch_end=kill)
    before = (ck / "last.pt").read_bytes()
    res = fit(_model(seed=3), data, _cfg(epochs=3, checkpoint_dir=str(ck)), process_group=_FakeRank1(1, 2))
    assert res.resumed_from_epoch == 1 and (ck / "last.pt").read_bytes() == before  # read, not written
    assert _strip(res.history) == _strip(ref.history)


def test_resume_with_a_seedless_loader_restores_its_generator(data, tmp_path) -> None:
    """Without a seed the shuffling follows the loader's generator: the checkpoint carries its state."""
    def loaders() -> Loaders:
        return Loaders(Batches(data.train, 50, shuffle=True, generator=torch.Generator().manual_seed(1), drop_last=True),
                       Batches(data.valid, 1000), Batches(data.test, 1000))

    def kill(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise _Killed

    ref = fit(_model(), loaders(), _cfg(epochs=4))
    with pytest.raises(_Killed):
        fit(_model(), loaders(), _cfg(epochs=4, checkpoint_dir=str(tmp_path)), on_epoch_end=kill)
    res = fit(_model(seed=9), loaders(), _cfg(epochs=4, checkpoint_dir=str(tmp_path)))
    assert res.resumed_from_epoch == 1 and _strip(res.history) == _strip(ref.history)


# ------------------------------------------------------------------ the authors' code vs the paper's text
def test_code_switches_reach_the_optimizer() -> None:
    from qnnlib.optim import LasagneAdam, ShiftAdaMax

    model = _model(Precision(1, 1, True, "sbn"))
    opt = make_optimizer(model, _cfg(optimizer="shift_adamax", betas=(0.9, 0.999), adamax_state="torch7",
                                     glorot_placement="after", lr_factors="torch7"))
    assert isinstance(opt, ShiftAdaMax)
    g = {grp["name"]: grp for grp in opt.param_groups}
    assert all(grp["betas"] == (0.9, 0.999) for grp in opt.param_groups)
    assert {grp["state_rule"] for grp in opt.param_groups} == {"torch7"}
    assert {grp["glorot"] for grp in opt.param_groups} == {"after"}
    scaled = [n for n, grp in g.items() if grp["lr_scale"] != 1.0]
    assert any(n.endswith(".bias") for n in scaled) and any("bn" in n for n in scaled)  # biases and BN γ
    assert isinstance(make_optimizer(model, _cfg(optimizer="lasagne_adam")), LasagneAdam)
    cifar = {grp["name"]: grp["lr_scale"] for grp in make_optimizer(model, _cfg(lr_factors="biases")).param_groups}
    assert any(n.endswith(".bias") and v != 1.0 for n, v in cifar.items())  # biases × γ ...
    assert not any("bn" in n and v != 1.0 for n, v in cifar.items())  # ... BN at 1 (CIFAR-10/SVHN model files)
    plain = make_optimizer(model, _cfg(optimizer="shift_adamax"))
    assert {grp["state_rule"] for grp in plain.param_groups} == {"paper"}
    assert not any(grp["lr_scale"] != 1.0 and grp["name"].endswith(".bias") for grp in plain.param_groups)


def test_shift_adamax_only_switches_are_refused_with_adam() -> None:
    with pytest.raises(ValueError, match="adamax_state='torch7' applies to optimizer='shift_adamax' only"):
        _cfg(adamax_state="torch7")
    with pytest.raises(ValueError, match="glorot_placement='after' applies to optimizer='shift_adamax' only"):
        _cfg(optimizer="lasagne_adam", glorot_placement="after")
    with pytest.raises(ValueError, match=r"betas must be None or two numbers in \[0, 1\)"):
        _cfg(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="clip must be one of"):
        _cfg(clip="some")
    assert _cfg(betas=[0.5, 0.25]).betas == (0.5, 0.25)


def test_clip_all_clips_biases_and_bn(data) -> None:
    seen = []

    def peek(epoch: int, row: dict) -> None:
        seen.append(max(p.abs().max().item() for p in model.parameters()))

    model = _model()
    with torch.no_grad():
        model.bn1.bias.fill_(3.0)  # outside [-1, 1]: "all" pulls it in at the first step, "latent" leaves it
    fit(model, data, _cfg(epochs=1, clip="all"), on_epoch_end=peek, restore_best=False)
    assert seen == [pytest.approx(min(seen[0], 1.0))] and seen[0] <= 1.0
    model = _model()
    with torch.no_grad():
        model.bn1.bias.fill_(3.0)
    fit(model, data, _cfg(epochs=1, lr_start=1e-6, lr_end=1e-7), restore_best=False)
    assert model.bn1.bias.max().item() > 2.0


def test_select_ties_last_keeps_the_later_epoch(data) -> None:
    class Flat(torch.nn.Module):  # validation error never changes: every epoch ties with the first
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 4) + 0 * self.w

    first = fit(Flat(), data, _cfg(epochs=3, glorot=False))
    last = fit(Flat(), data, _cfg(epochs=3, glorot=False, select_ties="last"))
    assert (first.best_epoch, last.best_epoch) == (1, 3)
