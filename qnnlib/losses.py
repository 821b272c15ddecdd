"""Training losses: the square hinge loss (L2-SVM output layer) of both of the authors' codebases, and
the cross-entropy of the paper's language models; :data:`LOSSES` maps a config name to its function.

Square hinge (Theano ``T.mean(T.sqr(T.maximum(0., 1. - t*y)))`` with ±1 one-hot targets ``t``): used by
the MNIST, CIFAR-10 and SVHN experiments.  Cross-entropy: the Penn Treebank language models (their
perplexity is ``exp`` of it, see :mod:`qnnlib.metrics`) and ImageNet.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from qnnlib.quantize import check_float_tensor

__all__ = ["pm1_targets", "square_hinge_loss", "cross_entropy_loss", "LossFn", "LOSSES", "get_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pm1_targets(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer class labels (N,) → ±1 one-hot targets (N, C): ``t = 2·onehot − 1``."""
    if target.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) or target.dim() != 1:
        raise ValueError(f"target must be a 1-D integer tensor of class indices, got {target.dtype} {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"target values must lie in [0, {num_classes - 1}], got [{int(target.min())}, {int(target.max())}]")
    return F.one_hot(target.long(), num_classes).mul(2).sub(1)


def square_hinge_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L = mean_{n,c} max(0, 1 − t_nc · y_nc)²`` with ``t`` the ±1 one-hot targets.

    ``target`` is either integer class indices (N,) or already ±1 targets shaped like ``output``.
    The mean runs over batch × classes (Theano's ``T.mean(T.sqr(T.maximum(0., 1. - t*y)))``).
    """
    check_float_tensor(output, "output")
    if output.dim() != 2:
        raise ValueError(f"output must be (N, C) scores, got shape {tuple(output.shape)}")
    if target.is_floating_point():
        if target.shape != output.shape:
            raise ValueError(f"±1 targets must have the output's shape {tuple(output.shape)}, got {tuple(target.shape)}")
        t = target.to(output.dtype)
    else:
        if target.shape[0] != output.shape[0]:
            raise ValueError(f"target has {target.shape[0]} labels for {output.shape[0]} outputs")
        t = pm1_targets(target, output.shape[1]).to(output.dtype)
    return torch.clamp(1 - t * output, min=0).square().mean()


def cross_entropy_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L = −mean_i log softmax(y_i)[t_i]`` over every position ``i`` (softmax over the last axis).

    ``output`` is (N, V) scores with targets (N,), or a sequence model's (N, T, V) or (N·T, V) scores with
    targets (N, T) or (N·T,): both are flattened to (positions, V) and (positions,), so the mean runs over
    all N·T tokens (``exp`` of it is the batch's perplexity).  Targets must be integer class indices
    (an index outside ``[0, V)`` makes ``torch`` raise).
    """
    check_float_tensor(output, "output")
    if output.dim() < 2:
        raise ValueError(f"output must be (N, V) or (N, T, V) scores, got shape {tuple(output.shape)}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must be integer class indices, got {target.dtype}")
    v = output.shape[-1]
    if target.numel() * v != output.numel():
        raise ValueError(
            f"target has {target.numel()} positions but output {tuple(output.shape)} has {output.numel() // max(v, 1)}"
        )
    return F.cross_entropy(output.reshape(-1, v), target.reshape(-1).long())


LOSSES: Mapping[str, LossFn] = types.MappingProxyType(
    {"square_hinge": square_hinge_loss, "cross_entropy": cross_entropy_loss}
)


def get_loss(name: str) -> LossFn:
    """The loss function registered as ``name`` in :data:`LOSSES` (``ValueError`` listing the names if unknown)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {tuple(LOSSES)}")
    return LOSSES[name]
