"""Dataset splits in memory and their mini-batches.

A :class:`DatasetSplits` is the train / valid / test triple of one dataset with where it came from;
:class:`Batches` iterates over a :class:`Split` in mini-batches (shuffled reproducibly per epoch,
see :meth:`Batches.set_epoch`), the in-memory counterpart of a ``torch.utils.data.DataLoader``;
:func:`stratified_subset` takes the class-stratified subsets of the small profiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Split", "DatasetSplits", "Batches", "as_loader", "stratified_subset"]


@dataclass(frozen=True)
class Split:
    """One split: ``x`` float32 (N, 784) in [-1, 1]; ``y`` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DatasetSplits:
    """train/valid/test splits of one dataset plus where they came from."""

    name: str
    train: Split
    valid: Split
    test: Split
    source: str
    subset: str = "full"  # how the splits were subset (see load_mnist)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def describe(self) -> dict:
        """JSON-ready description stored in every metrics file (see :mod:`qnnlib.results`)."""
        return {"name": self.name, "sizes": self.sizes(), "source": self.source, "subset": self.subset,
                "inputs": "flattened 28x28, pixel/255*2-1 in [-1, 1]"}


class Batches:
    """Re-iterable mini-batches of a :class:`Split` (a fresh permutation each pass when shuffling)."""

    def __init__(self, split: Split, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.generator, self.drop_last = generator, drop_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            if order is None:
                yield self.split.x[sl], self.split.y[sl]
            else:
                idx = order[sl]
                yield self.split.x[idx], self.split.y[idx]


def as_loader(split: Split, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
              drop_last: bool = False) -> Batches:
    """Mini-batches ``(x, y)`` of ``split``; much faster than a per-sample DataLoader for in-memory tensors."""
    return Batches(split, batch_size, shuffle, generator, drop_last)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified, seeded random subset of ``n`` of ``labels``.

    Each class gets ``floor(n * n_c / N)`` items, the remainder goes to the classes with the largest
    fractional parts (ties: lower class first); the items inside a class are drawn with
    ``numpy.random.default_rng(seed)``. The result keeps the original order.
    """
    total = len(labels)
    if not 0 < n <= total:
        raise ValueError(f"subset size must be in 1..{total}, got {n}")
    if n == total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / total
    take = np.floor(quota).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - take[i]), i))
    for i in order[: n - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))
