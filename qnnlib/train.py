"""Training loop of Alg. 1: square hinge loss, LR schedule, latent-weight clipping, best-validation selection.

``fit(model, data, config)`` trains for ``config.epochs`` epochs and, after every epoch, evaluates the
validation and test sets, records one history row, and (with ``checkpoint_dir``) writes a checkpoint
atomically.  Restarted with the same config and directory, a killed run resumes after the last
finished epoch and ends exactly where an uninterrupted run would (every epoch re-seeds the RNG from
``(seed, epoch)``, so shuffling, dropout and stochastic binarization do not depend on history).

Reported error (DESIGN.md §6.11): the test error at the epoch of best validation error; the final
epoch's error is kept too.  Errors are fractions in [0, 1].

Per Alg. 1 step 3: ``θ ← Update(θ, η)``, ``W ← Clip(Update(W, γ_k η), −1, 1)``, ``η ← λ η``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn
from tqdm import tqdm

from qnnlib.losses import square_hinge_loss
from qnnlib.optim import ShiftAdaMax, clip_latent_weights, glorot_param_groups

__all__ = ["TrainConfig", "FitResult", "fit", "evaluate", "eval_mode", "lr_at", "make_optimizer", "resolve_device"]


class _Split(Protocol):
    x: torch.Tensor
    y: torch.Tensor


class _Data(Protocol):
    train: _Split
    valid: _Split
    test: _Split


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (hashed to match a checkpoint on resume).

    ``lr_schedule``: ``"exp"`` — ``η_e = η_start · λ^e`` with ``λ = (η_end/η_start)^(1/epochs)``
    (Theano); ``"halve"`` — ``η_e = η_start · 2^(−⌊e/halve_every⌋)`` (Torch7's 1-bit right shift);
    ``"constant"``.  ``glorot`` multiplies each quantized layer's weight LR by ``γ_k``
    (``glorot_pow2`` rounds it to a power of two; ``glorot_float`` also scales float layers).
    """

    epochs: int = 10
    batch_size: int = 100
    optimizer: Literal["adam", "shift_adamax"] = "adam"
    lr_start: float = 3e-3
    lr_end: float = 3e-7
    lr_schedule: Literal["exp", "halve", "constant"] = "exp"
    halve_every: int = 20
    glorot: bool = True
    glorot_pow2: bool = False
    glorot_float: bool = False
    clip_weights: bool = True
    seed: int = 1234
    eval_batch_size: int = 1000
    device: str | None = None
    checkpoint_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm needs a batch), got {self.batch_size}")
        if self.optimizer not in ("adam", "shift_adamax"):
            raise ValueError(f"optimizer must be 'adam' or 'shift_adamax', got {self.optimizer!r}")
        if self.lr_schedule not in ("exp", "halve", "constant"):
            raise ValueError(f"lr_schedule must be 'exp', 'halve' or 'constant', got {self.lr_schedule!r}")
        if not (self.lr_start > 0 and self.lr_end > 0):
            raise ValueError(f"learning rates must be > 0, got lr_start={self.lr_start}, lr_end={self.lr_end}")
        if self.halve_every < 1:
            raise ValueError(f"halve_every must be >= 1, got {self.halve_every}")

    def fingerprint(self) -> str:
        """Hash of the fields that change the result (not device, checkpoint dir or progress)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("device", "checkpoint_dir", "progress")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FitResult:
    """Outcome of :func:`fit`; ``history`` has one dict per finished epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_valid_error: float = math.inf
    test_error_at_best: float = math.nan
    final_valid_error: float = math.nan
    final_test_error: float = math.nan
    wall_time_s: float = 0.0
    resumed_from_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Base learning rate of epoch ``epoch`` (0-based) under ``config``'s schedule."""
    if config.lr_schedule == "exp":
        decay = (config.lr_end / config.lr_start) ** (1.0 / config.epochs)
        return config.lr_start * decay**epoch
    if config.lr_schedule == "halve":
        return config.lr_start * 0.5 ** (epoch // config.halve_every)
    return config.lr_start


def resolve_device(device: str | None = None) -> torch.device:
    """``device``, else ``$QNNLIB_DEVICE``, else CUDA when available, else CPU."""
    name = device or os.environ.get("QNNLIB_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested (QNNLIB_DEVICE or config) but CUDA is not available; use 'cpu'")
    return torch.device(name)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` — the model in eval mode and autograd off for the block; its previous
    mode (train or eval, per module) is restored afterwards, also when the block raises."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training


@torch.no_grad()
def evaluate(model: nn.Module, split: _Split, batch_size: int = 1000, device: torch.device | None = None) -> dict[str, float]:
    """Square hinge loss and classification error (fraction) of ``model`` in eval mode on ``split``."""
    device = device or next(model.parameters()).device
    loss_sum, wrong, n = 0.0, 0, split.y.shape[0]
    with eval_mode(model):
        for i in range(0, n, batch_size):
            xb = split.x[i : i + batch_size].to(device)
            yb = split.y[i : i + batch_size].to(device)
            out = model(xb)
            loss_sum += float(square_hinge_loss(out, yb)) * yb.shape[0]
            wrong += int((out.argmax(dim=1) != yb).sum())
    return {"loss": loss_sum / max(n, 1), "error": wrong / max(n, 1)}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``fit`` uses: Adam or ShiftAdaMax over Glorot-scaled param groups when ``config.glorot``."""
    if config.glorot:
        groups = glorot_param_groups(
            model, config.lr_start, round_pow2=config.glorot_pow2, include_float_layers=config.glorot_float
        )
    else:
        groups = [{"params": list(model.parameters()), "lr": config.lr_start, "lr_scale": 1.0, "name": "all"}]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr_start)  # Lasagne defaults: β=(0.9, 0.999), ε=1e-8
    return ShiftAdaMax(groups, lr=config.lr_start)


def _set_lr(opt: torch.optim.Optimizer, base_lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = base_lr * g.get("lr_scale", 1.0)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(
    model: nn.Module,
    data: _Data,
    config: TrainConfig,
    *,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    restore_best: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train ``model`` on ``data.train``; select by ``data.valid``; report ``data.test``.

    ``on_epoch_end(epoch, row)`` is called after each epoch's checkpoint is written (tests use it to
    kill a run mid-way).  ``restore_best`` loads the best-validation weights into ``model`` at the end,
    so the returned model is the one whose test error is reported.  The last incomplete training
    batch of each epoch is dropped (batch norm statistics stay comparable, as in the Theano code).
    """
    device = resolve_device(config.device)
    model.to(device)
    opt = make_optimizer(model, config)
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    last = ckpt_dir / "last.pt" if ckpt_dir else None
    if last is not None and last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        if ck.get("fingerprint") != config.fingerprint():
            raise ValueError(
                f"checkpoint {last} was written with a different training config; "
                "delete the directory or use another checkpoint_dir to start afresh"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        result = FitResult(**ck["result"])
        best_state = ck.get("best_state")
        start_epoch = ck["epoch"] + 1
        result.resumed_from_epoch = ck["epoch"]
    elif ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    n_train = data.train.y.shape[0]
    n_batches = n_train // config.batch_size
    if n_batches < 1:
        raise ValueError(f"training set ({n_train}) is smaller than one batch ({config.batch_size})")
    t0 = time.perf_counter() - result.wall_time_s
    epochs = tqdm(range(start_epoch, config.epochs), desc=desc, disable=not config.progress,
                  initial=start_epoch, total=config.epochs)
    for epoch in epochs:
        te = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout / stochastic binarization
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # shuffling
        perm = torch.randperm(n_train, generator=gen)
        lr = lr_at(config, epoch)
        _set_lr(opt, lr)
        model.train()
        loss_sum, wrong = 0.0, 0
        for b in range(n_batches):
            idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
            xb, yb = data.train.x[idx].to(device), data.train.y[idx].to(device)
            out = model(xb)
            loss = square_hinge_loss(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if config.clip_weights:
                clip_latent_weights(model)
            loss_sum += float(loss.detach())
            wrong += int((out.detach().argmax(1) != yb).sum())
        valid = evaluate(model, data.valid, config.eval_batch_size, device)
        test = evaluate(model, data.test, config.eval_batch_size, device)
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / n_batches,
            "train_error": wrong / (n_batches * config.batch_size),
            "valid_loss": valid["loss"],
            "valid_error": valid["error"],
            "test_loss": test["loss"],
            "test_error": test["error"],
            "epoch_time_s": time.perf_counter() - te,
        }
        result.history.append(row)
        if valid["error"] < result.best_valid_error:
            result.best_epoch, result.best_valid_error, result.test_error_at_best = epoch + 1, valid["error"], test["error"]
            if restore_best:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        result.final_valid_error, result.final_test_error = valid["error"], test["error"]
        result.wall_time_s = time.perf_counter() - t0
        epochs.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{valid['error']:.4f}", test=f"{test['error']:.4f}")
        if last is not None:
            _atomic_save(
                {"epoch": epoch, "fingerprint": config.fingerprint(), "model": model.state_dict(),
                 "optimizer": opt.state_dict(), "result": result.to_dict(), "best_state": best_state},
                last,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    epochs.close()
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    result.wall_time_s = time.perf_counter() - t0
    return result
