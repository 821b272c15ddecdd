"""Dataset splits in memory and their mini-batches.

A :class:`DatasetSplits` is the train / valid / test triple of one dataset with where it came from;
:class:`Batches` iterates over a :class:`Split` in mini-batches (shuffled reproducibly per epoch,
see :meth:`Batches.set_epoch`), the in-memory counterpart of a ``torch.utils.data.DataLoader``;
:func:`stratified_subset` takes the class-stratified subsets of the small profiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qnnlib.checks import check_int

__all__ = ["Split", "DatasetSplits", "Batches", "as_loader", "epoch_seed", "is_split", "stratified_subset",
           "take_subsets"]


def is_split(obj: object) -> bool:
    """Whether ``obj`` is an in-memory split: ``.x`` and ``.y`` tensors (a :class:`Split` or any look-alike)."""
    return isinstance(getattr(obj, "x", None), torch.Tensor) and isinstance(getattr(obj, "y", None), torch.Tensor)


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
    inputs: str = "flattened 28x28, pixel/255*2-1 in [-1, 1]"  # what x holds and how it was scaled

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def describe(self) -> dict:
        """JSON-ready description stored in every metrics file (see :mod:`qnnlib.experiments.results`)."""
        return {"name": self.name, "sizes": self.sizes(), "source": self.source, "subset": self.subset,
                "inputs": self.inputs}


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of epoch ``epoch`` (0-based) of a run seeded with ``seed``: ``seed · 100003 + epoch``.

    Training re-seeds from it every epoch (shuffling here, dropout / stochastic binarization in
    :func:`qnnlib.train.fit`), so an epoch's randomness does not depend on the epochs before it and a
    resumed run continues exactly.
    """
    return seed * 100_003 + epoch


class Batches:
    """Re-iterable mini-batches ``(x, y)`` of a split (anything with ``x``/``y`` tensors of equal length).

    With ``shuffle`` each pass takes consecutive slices of a fresh permutation ``torch.randperm(n,
    generator=generator)`` (the global RNG without a generator); ``drop_last`` drops the incomplete last
    batch.  With a ``seed``, :meth:`set_epoch` re-seeds the generator with :func:`epoch_seed` ``(seed, epoch)``,
    so the order of epoch ``e`` is reproducible on its own (what ``DistributedSampler.set_epoch`` does for a
    ``DataLoader``); before the first ``set_epoch`` the order is epoch 0's.  :meth:`state_dict` /
    :meth:`load_state_dict` carry the generator across a checkpoint (needed only without a seed).
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False, *, seed: int | None = None) -> None:
        check_int(batch_size, "batch_size")
        if seed is not None:
            check_int(seed, "seed", minimum=0)
        if seed is not None and generator is None:
            generator = torch.Generator().manual_seed(epoch_seed(seed, 0))
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.generator, self.drop_last, self.seed = generator, drop_last, seed
        self.epoch = 0

    def __len__(self) -> int:
        n = int(self.split.y.shape[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch``'s: with a seed, re-seed the generator from ``(seed, epoch)``.

        Without a seed only the epoch number is recorded (the order then follows the generator's state).
        """
        self.epoch = int(epoch)
        if self.seed is not None:
            self.generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))

    def state_dict(self) -> dict[str, Any]:
        """The epoch and the generator state (``None`` without a generator), for a checkpoint."""
        return {"epoch": self.epoch, "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the generator state is copied to the CPU first)."""
        self.epoch = int(state["epoch"])
        if state.get("generator") is not None:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"].cpu())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = int(self.split.y.shape[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            if order is None:
                yield self.split.x[sl], self.split.y[sl]
            else:
                idx = order[sl]
                yield self.split.x[idx], self.split.y[idx]


def as_loader(split: Split, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
              drop_last: bool = False, *, seed: int | None = None) -> Batches:
    """Mini-batches ``(x, y)`` of ``split``; much faster than a per-sample DataLoader for in-memory tensors."""
    return Batches(split, batch_size, shuffle, generator, drop_last, seed=seed)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified, seeded random subset of ``n`` of ``labels``.

    Each class gets ``floor(n * n_c / N)`` items, the remainder goes to the classes with the largest
    fractional parts (ties: lower class first); the items inside a class are drawn with
    ``numpy.random.default_rng(seed)``. The result keeps the original order.
    """
    total = len(labels)
    n = check_int(n, "subset size n", 1, total)
    check_int(seed, "seed", minimum=0)
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


def take_subsets(parts: dict[str, tuple[np.ndarray, np.ndarray]], sizes: dict[str, int | None], seed: int,
                 dataset: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Class-stratified seeded subsets of the ``(images, labels)`` of each split (``train``, ``valid``, ``test``).

    ``sizes[split]`` = None keeps the split; an integer in 1..len takes :func:`stratified_subset` with seed
    ``seed + k`` (k = 0, 1, 2 for train, valid, test). Returns the new parts and the ``DatasetSplits.subset``
    text ("full", or "stratified random subset (seed s): train 2000 of 50000, ..."). ``ValueError`` names the
    split and ``dataset`` for a size out of range.
    """
    out, notes = dict(parts), []
    for k, split in enumerate(("train", "valid", "test")):
        images, labels = parts[split]
        size = sizes.get(split)
        if size is not None and size != len(labels):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 0 < size <= len(labels):
                raise ValueError(f"{split}_size must be in 1..{len(labels)} for {dataset}, got {size!r}")
            idx = stratified_subset(labels, int(size), seed + k)
            out[split] = (images[idx], labels[idx])
            notes.append(f"{split} {size} of {len(labels)}")
    return out, "full" if not notes else f"stratified random subset (seed {seed}): " + ", ".join(notes)
