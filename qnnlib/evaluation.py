"""Evaluation of a model on a split: eval mode, loss and metrics summed exactly, over one or many processes.

:func:`evaluate` runs a model in eval mode (:func:`eval_mode`: batch norm on its running statistics,
dropout off, deterministic binarization, no autograd) over every batch of a loader and returns the loss
(the mean over all predictions) and each metric's exact ratio over the split (:mod:`qnnlib.metrics`), so
the numbers do not depend on the batch size. In a distributed run the sums go through the
:class:`ProcessGroup`'s all-reduce before the ratios are taken, so every rank sees the global numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from qnnlib.checks import check_int
from qnnlib.data.splits import Batches, Split, is_split
from qnnlib.losses import get_loss
from qnnlib.metrics import MetricSums, get_metric

__all__ = ["Batch", "ProcessGroup", "SINGLE_PROCESS", "eval_mode", "evaluate", "evaluate_loader"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a (possibly) distributed run; the default is a single process.

    A distributed run subclasses it (or passes any object with these members) with ``all_reduce_sum``
    summing a tensor over all ranks, e.g. ``torch.distributed.all_reduce(t); return t``.
    """

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={self.rank}, "
                             f"world_size={self.world_size}")

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes checkpoints and shows progress."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``tensor`` over all ranks (the identity in a single process)."""
        return tensor


SINGLE_PROCESS = ProcessGroup()


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


def _positions(y: torch.Tensor) -> int:
    """Number of predictions a batch's loss averages over: integer targets → one per element; ±1 or
    probability targets (…, C) → one per row."""
    return y.numel() if not y.is_floating_point() else y.numel() // max(y.shape[-1], 1)


def evaluate_loader(model: nn.Module, loader: Iterable[Batch], device: torch.device, loss: str,
                 metrics: Sequence[str], group: ProcessGroup, what: str) -> dict[str, float]:
    loss_fn = get_loss(loss)
    sums = MetricSums(metrics)
    n_batches = 0
    with eval_mode(model):
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            out = model(xb)
            n = _positions(yb)
            sums.add("loss", loss_fn(out, yb).double() * n, n)  # split loss = Σ_batches mean·n / Σ n
            sums.update(out, yb)
            n_batches += 1
    if n_batches == 0:
        raise ValueError(f"the {what} loader yielded no batches (empty split?); cannot evaluate on it")
    values = sums.values(group.all_reduce_sum(sums.totals()))
    return {"loss": values["loss"], **{m: values[m] for m in metrics}}


def evaluate(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int | None = None,
    device: torch.device | None = None,
    *,
    loss: str = "square_hinge",
    metrics: Sequence[str] = ("error",),
    process_group: ProcessGroup | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` in eval mode: ``{"loss": …, "<metric>": …}`` over all of ``data``.

    ``data`` is a loader (iterable of ``(x, y)`` batches) or a split with ``.x``/``.y`` tensors, batched in
    order by ``batch_size`` (default 1000; only for a split).  The loss is the mean over all predictions
    (batch means weighted by their size), each metric its exact ratio over the split (:mod:`qnnlib.metrics`),
    both summed over the ranks of ``process_group``.  Raises ``ValueError`` on ``batch_size <= 0``, an
    unknown loss or metric name, or data without batches.
    """
    if batch_size is not None:
        check_int(batch_size, "batch_size")
    get_loss(loss)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for m in metrics:
        get_metric(m)
    if is_split(data):
        loader: Iterable[Batch] = Batches(data, batch_size or 1000)
    elif batch_size is not None:
        raise ValueError("batch_size applies to a split with .x/.y tensors; a loader brings its own batches")
    else:
        loader = data  # type: ignore[assignment]
    device = device or next(model.parameters()).device
    return evaluate_loader(model, loader, device, loss, metrics, process_group or SINGLE_PROCESS, "evaluation")
