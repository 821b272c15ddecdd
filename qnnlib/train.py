"""Training loop of Alg. 1 for every experiment: loss and metrics by name, LR schedule, latent-weight
clipping, best-validation selection, resumable checkpoints, hooks for a distributed run.

``fit(model, data, config)`` trains for ``config.epochs`` epochs over iterables of ``(x, y)`` batches — a
:class:`Loaders` of ``torch.utils.data.DataLoader`` s or of in-memory :class:`~qnnlib.data.splits.Batches`
(:func:`in_memory_loaders`; a ``.train/.valid/.test`` splits object is wrapped so automatically).  After
every epoch it evaluates the validation loader; the test loader only when the validation metric improved
(and at the final epoch).  It records one history row per epoch and, with ``checkpoint_dir``, writes a
checkpoint atomically.  Restarted with the same config and directory, a killed run resumes after the last
finished epoch and ends exactly where an uninterrupted run would: every epoch re-seeds the global RNG
(dropout, stochastic binarization) and the training loader (``set_epoch``, shuffling) from
``(seed, epoch)``, so an epoch's randomness does not depend on the epochs before it.

Reported number (the paper's protocol): the test metric at the epoch of best validation metric (``error``
by default, lower is better); the final epoch's is kept too.  Errors are fractions in [0, 1].

Per Alg. 1 step 3: ``θ ← Update(θ, η)``, ``W ← Clip(Update(W, γ_k η), −1, 1)``, ``η ← λ η``.

Evaluation (eval mode, exact sums of loss and metrics) is :mod:`qnnlib.evaluation`.

Distributed runs (e.g. ImageNet under ``torchrun``): the caller wraps the model in DDP, gives each rank a
loader over its shard (``DistributedSampler``: ``fit`` calls its ``set_epoch``) and passes a
:class:`~qnnlib.evaluation.ProcessGroup` whose ``all_reduce_sum`` sums a tensor over the ranks (``torch.distributed.all_reduce``);
the loss and metric sums of every split go through it, so every rank sees the global numbers.  Only the main
rank writes checkpoints; every rank reads them on resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from qnnlib.checks import check_int
from qnnlib.data.splits import Batches, epoch_seed, is_split
from qnnlib.evaluation import SINGLE_PROCESS, Batch, ProcessGroup, evaluate_loader
from qnnlib.files import UnreadableFileError, atomic_write, unreadable, writable_dir
from qnnlib.losses import LOSSES, get_loss
from qnnlib.metrics import METRICS, MetricSums, get_metric
from qnnlib.optim import LasagneAdam, ShiftAdaMax, clip_parameters, glorot_param_groups
from qnnlib.progress import progress

__all__ = ["OPTIMIZERS", "CHECKPOINT_REMEDY", "load_checkpoint", "torch_threads", "TrainConfig", "FitResult", "Loaders", "fit", "in_memory_loaders", "set_loader_epoch", "lr_at",
           "make_optimizer", "resolve_device"]


class _Split(Protocol):
    x: torch.Tensor
    y: torch.Tensor


class _Data(Protocol):
    train: _Split
    valid: _Split
    test: _Split


# Fields added after checkpoints were first written: left out of the fingerprint at their defaults, so the
# checkpoints (and checkpoint directories named by the fingerprint) of earlier runs stay valid.
_LATER_FIELDS: dict[str, Any] = {"loss": "square_hinge", "metrics": ("error",), "select_metric": "error",
                                 "threads": None, "betas": None, "adamax_state": "paper", "glorot_placement": "inside",
                                 "lr_factors": "weights", "clip": "latent", "select_ties": "first",
                                 "grad_clip_norm": None}
OPTIMIZERS = ("adam", "shift_adamax", "lasagne_adam")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (hashed to match a checkpoint on resume).

    ``lr_schedule``: ``"exp"`` — ``η_e = η_start · λ^e`` with ``λ = (η_end/η_start)^(1/epochs)``
    (Theano); ``"halve"`` — ``η_e = η_start · 2^(−⌊e/halve_every⌋)`` (Torch7's 1-bit right shift);
    ``"constant"``.  ``glorot`` multiplies each quantized layer's weight LR by ``γ_k``
    (``glorot_pow2`` rounds it to a power of two; ``glorot_float`` also scales float layers).
    ``loss`` names a function of :data:`qnnlib.losses.LOSSES`; ``metrics`` names metrics of
    :data:`qnnlib.metrics.METRICS` (recorded for train, valid and test); ``select_metric`` (one of
    ``metrics``) picks the best-validation epoch.  ``threads``: torch's intra-op thread count during
    :func:`fit` (``None``: leave the process's setting). It is part of the result: the order of a float
    reduction depends on the thread count, so 1 and 2 threads give different weights after a few epochs;
    the ``smoke`` profile pins it to 1 so that CI reruns give the same numbers.

    Where the authors' code and the paper's text differ (docs/decisions.md D24), each difference is a field;
    the defaults are the paper's text:

    * ``optimizer``: ``"adam"`` (torch's Adam: Kingma's ε after the bias correction), ``"lasagne_adam"`` (the
      Theano code's ``lasagne.updates.adam``: ε on the uncorrected √v), ``"shift_adamax"`` (Alg. 2);
      ``betas``: the optimizer's (β1, β2), ``None`` for its default (ShiftAdaMax: the paper's 1 − 2⁻³,
      1 − 2⁻¹⁰; the Torch7 file's own defaults are 0.9, 0.999);
    * ``adamax_state``: ``"paper"`` keeps v = max(β2 v, |g|); ``"torch7"`` stores AP2(v) + ε back into the state
      as the Torch7 optimizer does (shift_adamax only);
    * ``glorot_placement``: ``"inside"`` puts γ·η inside the AP2 of the step; ``"after"`` multiplies the
      power-of-two step by γ, as the Torch7 MNIST code does (shift_adamax only);
    * ``lr_factors``: ``"weights"`` scales only latent weights by γ (Alg. 1); ``"torch7"`` also scales biases
      by their layer's γ and BN γ by 1/√(1.5/n), as the Torch7 MNIST model file does; ``"biases"`` scales
      biases only (the Torch7 CIFAR-10 and SVHN model files, whose BN parameters keep LR factor 1);
    * ``clip``: what ``clip_weights`` clips, ``"latent"`` weights (Alg. 1) or ``"all"`` parameters (the Torch7
      CIFAR-10 model);
    * ``select_ties``: on equal validation values keep the ``"first"`` epoch, or the ``"last"`` one (the Theano
      code's ``val_err <= best_val_err``).

    ``grad_clip_norm``: rescale the gradients so that their global L2 norm is at most this value before each
    step (``torch.nn.utils.clip_grad_norm_``; the recurrent language models, Zaremba et al.); ``None``: no
    rescaling (the feed-forward recipes).
    """

    epochs: int = 10
    batch_size: int = 100
    optimizer: Literal["adam", "shift_adamax", "lasagne_adam"] = "adam"
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
    loss: Literal["square_hinge", "cross_entropy"] = "square_hinge"
    metrics: tuple[str, ...] = ("error",)
    select_metric: str = "error"
    threads: int | None = None
    betas: tuple[float, float] | None = None
    adamax_state: Literal["paper", "torch7"] = "paper"
    glorot_placement: Literal["inside", "after"] = "inside"
    lr_factors: Literal["weights", "biases", "torch7"] = "weights"
    clip: Literal["latent", "all"] = "latent"
    select_ties: Literal["first", "last"] = "first"
    grad_clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be None (torch's current setting) or a positive integer, "
                             f"got {self.threads!r}")
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size (batch norm needs a batch of at least 2)", minimum=2)
        check_int(self.eval_batch_size, "eval_batch_size")
        check_int(self.halve_every, "halve_every")
        check_int(self.seed, "seed", minimum=0)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.betas is not None:
            betas = tuple(self.betas)
            if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                          for b in betas):
                raise ValueError(f"betas must be None or two numbers in [0, 1), got {self.betas!r}")
            object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        for name, allowed in (("adamax_state", ("paper", "torch7")), ("glorot_placement", ("inside", "after")),
                              ("lr_factors", ("weights", "biases", "torch7")), ("clip", ("latent", "all")),
                              ("select_ties", ("first", "last"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name, default in (("adamax_state", "paper"), ("glorot_placement", "inside")):
            if getattr(self, name) != default and self.optimizer != "shift_adamax":
                raise ValueError(f"{name}={getattr(self, name)!r} applies to optimizer='shift_adamax' only "
                                 f"(got optimizer={self.optimizer!r}); leave it at {default!r}")
        if self.grad_clip_norm is not None and (isinstance(self.grad_clip_norm, bool)
                                                or not isinstance(self.grad_clip_norm, (int, float))
                                                or not math.isfinite(self.grad_clip_norm) or self.grad_clip_norm <= 0):
            raise ValueError(f"grad_clip_norm must be None (no clipping) or a finite number > 0, "
                             f"got {self.grad_clip_norm!r}")
        if self.lr_schedule not in ("exp", "halve", "constant"):
            raise ValueError(f"lr_schedule must be 'exp', 'halve' or 'constant', got {self.lr_schedule!r}")
        if not (self.lr_start > 0 and self.lr_end > 0):
            raise ValueError(f"learning rates must be > 0, got lr_start={self.lr_start}, lr_end={self.lr_end}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        # a notebook parameter may give one name or a list: store a tuple, so the config stays hashable
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        bad = [m for m in metrics if m not in METRICS]
        if bad or not metrics or len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics must be distinct names from {tuple(METRICS)}, got {metrics}")
        if self.select_metric not in metrics:
            raise ValueError(f"select_metric must be one of metrics {metrics}, got {self.select_metric!r}")

    def fingerprint(self) -> str:
        """Hash of the fields that change the result (not device, checkpoint dir or progress)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("device", "checkpoint_dir", "progress")}
        for k, default in _LATER_FIELDS.items():
            if d[k] == default or (isinstance(default, tuple) and d[k] == list(default)):
                del d[k]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FitResult:
    """Outcome of :func:`fit`; ``history`` has one dict per finished epoch.

    History keys: ``epoch``, ``lr``, ``train_loss``, ``train_<m>``, ``valid_loss``, ``valid_<m>``,
    ``test_loss``, ``test_<m>`` for every metric ``m`` of the config, ``epoch_time_s`` (the whole epoch) and
    ``train_time_s`` (its training loop alone); a test value not
    computed that epoch (validation did not improve, not the final epoch) is ``None``.
    ``best_valid`` / ``test_at_best`` / ``final_valid`` / ``final_test``: loss and every metric of that
    split at the best-validation epoch (by ``select_metric``) and at the last finished epoch.
    The ``*_error`` fields are the ``error`` metric's (``inf``/``nan`` when it was not recorded).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_valid_error: float = math.inf
    test_error_at_best: float = math.nan
    final_valid_error: float = math.nan
    final_test_error: float = math.nan
    wall_time_s: float = 0.0
    resumed_from_epoch: int | None = None
    select_metric: str = "error"
    best_valid: dict[str, float] = field(default_factory=dict)
    test_at_best: dict[str, float] = field(default_factory=dict)
    final_valid: dict[str, float] = field(default_factory=dict)
    final_test: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a result written before the metric dicts existed (an error-selected run): fill them from the error fields
        if self.select_metric == "error" and self.best_epoch >= 1 and not self.best_valid:
            self.best_valid = {"error": self.best_valid_error}
            self.test_at_best = {"error": self.test_error_at_best}
        if self.select_metric == "error" and self.history and not self.final_valid:
            self.final_valid = {"error": self.final_valid_error}
            self.final_test = {"error": self.final_test_error}

    @property
    def best_valid_value(self) -> float:
        """The selection metric's best validation value so far (``inf`` before the first epoch)."""
        return self.best_valid.get(self.select_metric, get_metric(self.select_metric).worst())

    @property
    def reported(self) -> float:
        """The reported number: the selection metric on the test split at the best-validation epoch."""
        return self.test_at_best.get(self.select_metric, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (``FitResult(**result.to_dict()) == result``); stored in checkpoints."""
        return asdict(self)


@dataclass(frozen=True)
class Loaders:
    """The batches ``fit`` trains, selects and reports on: each an iterable of ``(x, y)`` (a ``DataLoader``,
    a :class:`~qnnlib.data.splits.Batches`, …) that can be iterated once per epoch.  ``test`` may be ``None``
    (then no test numbers are recorded)."""

    train: Iterable[Batch]
    valid: Iterable[Batch]
    test: Iterable[Batch] | None = None


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


def in_memory_loaders(data: _Data, config: TrainConfig) -> Loaders:
    """:class:`Loaders` over in-memory splits (``data.train/.valid/.test`` with ``.x``/``.y`` tensors).

    Training: :class:`~qnnlib.data.splits.Batches` of ``config.batch_size``, shuffled per epoch from
    ``(config.seed, epoch)``, the incomplete last batch dropped (batch norm statistics stay comparable, as in
    the Theano code).  Validation and test: in order, ``config.eval_batch_size`` per batch.
    """
    n_train = int(data.train.y.shape[0])
    if n_train // config.batch_size < 1:
        raise ValueError(f"training set ({n_train}) is smaller than one batch ({config.batch_size})")
    return Loaders(
        train=Batches(data.train, config.batch_size, shuffle=True, drop_last=True, seed=config.seed),
        valid=Batches(data.valid, config.eval_batch_size),
        test=Batches(data.test, config.eval_batch_size),
    )


def set_loader_epoch(loader: Any, epoch: int) -> bool:
    """Call ``set_epoch(epoch)`` on ``loader``, else on ``loader.sampler``, else on ``loader.batch_sampler.sampler``
    (the first that has one: a ``DistributedSampler`` inside a ``DataLoader``); ``False`` if none has."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    for obj in (loader, getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
        hook = getattr(obj, "set_epoch", None)
        if callable(hook):
            hook(epoch)
            return True
    return False


def _known_len(loader: Any) -> int | None:
    """``len(loader)`` when it has one (an iterable-style ``DataLoader`` raises ``TypeError``), else ``None``."""
    try:
        return len(loader)
    except TypeError:
        return None


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``fit`` uses, over Glorot-scaled param groups when ``config.glorot``.

    ``adam``: ``torch.optim.Adam``; ``lasagne_adam``: :class:`qnnlib.optim.LasagneAdam`; ``shift_adamax``:
    :class:`qnnlib.optim.ShiftAdaMax` with ``config.adamax_state`` and ``config.glorot_placement``.
    ``config.betas`` (when set) goes to any of them; ``config.lr_factors`` ``"biases"`` also scales biases,
    ``"torch7"`` biases and BN γ (:func:`qnnlib.optim.glorot_param_groups`).
    """
    if config.glorot:
        groups = glorot_param_groups(
            model, config.lr_start, round_pow2=config.glorot_pow2, include_float_layers=config.glorot_float,
            scale_biases=config.lr_factors in ("biases", "torch7"), scale_bn=config.lr_factors == "torch7",
        )
    else:
        groups = [{"params": list(model.parameters()), "lr": config.lr_start, "lr_scale": 1.0, "name": "all"}]
    betas: dict[str, Any] = {} if config.betas is None else {"betas": config.betas}
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr_start, **betas)  # β=(0.9, 0.999), ε=1e-8 (as Lasagne)
    if config.optimizer == "lasagne_adam":
        return LasagneAdam(groups, lr=config.lr_start, **betas)
    return ShiftAdaMax(groups, lr=config.lr_start, state_rule=config.adamax_state, glorot=config.glorot_placement,
                       **betas)


def _set_lr(opt: torch.optim.Optimizer, base_lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = base_lr * g.get("lr_scale", 1.0)


CHECKPOINT_REMEDY = "Delete it (or its directory); the run then restarts from epoch 1."


def _save_checkpoint(obj: Any, path: Path) -> None:
    with atomic_write(path, "wb") as fh:  # a kill mid-write leaves the previous checkpoint (qnnlib.files)
        torch.save(obj, fh)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a training checkpoint written by :func:`fit`; an empty, truncated or foreign file raises
    :class:`~qnnlib.files.UnreadableFileError` naming it and saying to delete it."""
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - EOFError, RuntimeError (PytorchStreamReader), UnpicklingError, ...
        raise unreadable(path, exc, CHECKPOINT_REMEDY, "training checkpoint") from exc
    missing = [k for k in ("epoch", "fingerprint", "model", "optimizer", "result") if not isinstance(ck, dict)
               or k not in ck]
    if missing:
        raise UnreadableFileError(f"{path} is not a qnnlib training checkpoint (missing {', '.join(missing)}). "
                                  f"{CHECKPOINT_REMEDY}", path)
    return ck


def _as_loaders(data: Any, config: TrainConfig) -> Loaders:
    if isinstance(data, Loaders):
        return data
    if all(is_split(getattr(data, s, None)) for s in ("train", "valid", "test")):
        return in_memory_loaders(data, config)
    raise TypeError(f"fit needs Loaders(train, valid, test) or splits with .train/.valid/.test .x/.y tensors, "
                    f"got {type(data).__name__}")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: unchanged); restore the old count after."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if n is not None:
            torch.set_num_threads(old)


def fit(
    model: nn.Module,
    data: Loaders | _Data,
    config: TrainConfig,
    *,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    restore_best: bool = True,
    desc: str = "train",
    process_group: ProcessGroup | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train``; select by ``data.valid``; report ``data.test``.

    ``data`` is a :class:`Loaders` or an object with in-memory ``.train/.valid/.test`` splits (wrapped by
    :func:`in_memory_loaders`).  Each epoch ``e``: seed the global RNG with ``epoch_seed(config.seed, e)``,
    :func:`set_loader_epoch` the training loader, train one pass with ``config.loss``, evaluate the
    validation loader, and the test loader only if ``config.select_metric`` improved strictly on the best
    so far or ``e`` is the final epoch.  ``on_epoch_end(epoch, row)`` is called after each epoch's
    checkpoint is written (tests use it to kill a run mid-way).  ``restore_best`` loads the best-validation
    weights into ``model`` at the end, so the returned model is the one whose test number is reported.
    ``process_group`` (default: single process) sums the loss/metric accumulators over ranks; only its
    main rank writes checkpoints.  The checkpoint holds model, optimizer, result, best weights and the
    training loader's ``state_dict()`` when it has one.  ``config.threads`` holds for the whole call
    (:func:`torch_threads`).
    """
    with torch_threads(config.threads):
        return _fit(model, data, config, on_epoch_end, restore_best, desc, process_group)


def _fit(model: nn.Module, data: Loaders | _Data, config: TrainConfig,
         on_epoch_end: Callable[[int, dict[str, Any]], None] | None, restore_best: bool, desc: str,
         process_group: ProcessGroup | None) -> FitResult:
    group = process_group or SINGLE_PROCESS
    loaders = _as_loaders(data, config)
    loss_fn = get_loss(config.loss)
    select = get_metric(config.select_metric)
    device = resolve_device(config.device)
    model.to(device)
    opt = make_optimizer(model, config)
    result = FitResult(select_metric=config.select_metric)
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    last = ckpt_dir / "last.pt" if ckpt_dir else None
    if last is not None and last.exists():  # every rank resumes from the main rank's checkpoint
        ck = load_checkpoint(last, device)
        if ck.get("fingerprint") != config.fingerprint():
            raise ValueError(
                f"checkpoint {last} was written with a different training config; "
                "delete the directory or use another checkpoint_dir to start afresh"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        result = FitResult(**ck["result"])
        best_state = ck.get("best_state")
        if ck.get("loader_state") is not None and callable(getattr(loaders.train, "load_state_dict", None)):
            loaders.train.load_state_dict(ck["loader_state"])  # type: ignore[attr-defined]
        start_epoch = ck["epoch"] + 1
        result.resumed_from_epoch = ck["epoch"]
    elif ckpt_dir is not None and group.is_main:
        writable_dir(ckpt_dir, "set TrainConfig.checkpoint_dir (or QNNLIB_DATA, under which the experiments keep "
                     "their checkpoints) to a writable directory, or None to train without checkpoints")

    if _known_len(loaders.train) == 0:
        raise ValueError("the training loader has no batches")
    t0 = time.perf_counter() - result.wall_time_s
    epochs = progress(range(start_epoch, config.epochs), desc=desc, disable=not (config.progress and group.is_main),
                  initial=start_epoch, total=config.epochs)
    for epoch in epochs:
        te = time.perf_counter()
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout / stochastic binarization
        set_loader_epoch(loaders.train, epoch)  # shuffling
        lr = lr_at(config, epoch)  # η ← λη (the schedule, evaluated at epoch e)
        _set_lr(opt, lr)
        model.train()
        train_sums = MetricSums(config.metrics)
        n_batches = 0
        for xb, yb in loaders.train:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip_norm is not None:  # ‖g‖ ≤ c: g ← g · c / ‖g‖ (global L2 norm over all parameters)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            opt.step()  # Alg. 1 step 3: θ ← Update(θ, η); W ← Update(W, γ_k η) (γ_k in W's param group LR)
            if config.clip_weights:
                # W ← Clip(W, −1, 1): each layer's clip_value for latent weights; every parameter with clip="all"
                clip_parameters(model, config.clip, bound=None if config.clip == "latent" else 1.0)
            train_sums.add("loss", loss.detach(), 1)  # train loss = mean of the batch losses
            train_sums.update(out, yb)
            n_batches += 1
        if n_batches == 0:
            raise ValueError(f"the training loader yielded no batches in epoch {epoch + 1}")
        train_time = time.perf_counter() - te  # the training loop alone (throughput), before any evaluation
        train = train_sums.values(group.all_reduce_sum(train_sums.totals()))
        valid = evaluate_loader(model, loaders.valid, device, config.loss, config.metrics, group, "validation")
        value = valid[config.select_metric]
        improved = select.better(value, result.best_valid_value) or (
            config.select_ties == "last" and value == result.best_valid_value)  # Theano: val <= best
        test: dict[str, float] | None = None
        if loaders.test is not None and (improved or epoch == config.epochs - 1):
            test = evaluate_loader(model, loaders.test, device, config.loss, config.metrics, group, "test")
        keys = ("loss", *config.metrics)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
        row.update({f"train_{k}": train[k] for k in keys})
        row.update({f"valid_{k}": valid[k] for k in keys})
        row.update({f"test_{k}": None if test is None else test[k] for k in keys})
        row["epoch_time_s"] = time.perf_counter() - te
        row["train_time_s"] = train_time
        result.history.append(row)
        if improved:
            result.best_epoch, result.best_valid, result.test_at_best = epoch + 1, dict(valid), dict(test or {})
            if "error" in valid:
                result.best_valid_error = valid["error"]
                result.test_error_at_best = test["error"] if test is not None else math.nan
            if restore_best:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        result.final_valid, result.final_test = dict(valid), dict(test or {})
        if "error" in valid:
            result.final_valid_error = valid["error"]
            result.final_test_error = test["error"] if test is not None else math.nan
        result.wall_time_s = time.perf_counter() - t0
        postfix = {"loss": f"{train['loss']:.4f}", "val": f"{valid[config.select_metric]:.4f}"}
        if test is not None:
            postfix["test"] = f"{test[config.select_metric]:.4f}"
        epochs.set_postfix(postfix)
        if last is not None and group.is_main:
            state_dict = getattr(loaders.train, "state_dict", None)
            _save_checkpoint(
                {"epoch": epoch, "fingerprint": config.fingerprint(), "model": model.state_dict(),
                 "optimizer": opt.state_dict(), "result": result.to_dict(), "best_state": best_state,
                 "loader_state": state_dict() if callable(state_dict) else None},
                last,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    epochs.close()
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    result.wall_time_s = time.perf_counter() - t0
    return result
