"""Stand-in datasets: real data in the shape of a dataset that cannot be obtained here.

The project's machines cannot download CIFAR-10 or SVHN. Their experiments then run on a **stand-in**: a real
dataset (Fashion-MNIST or MNIST, 28×28 grey) padded to 32×32 with the −1 background (:func:`pad_images`), so
the paper's 32×32 ConvNets train unchanged. The stand-in's name stays its own name (``fashion-mnist``), and
:func:`padded_stand_in` writes into ``DatasetSplits.inputs`` what it stands in for, so no table, JSON or figure
can present its numbers as the paper's dataset's.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from qnnlib.checks import check_int
from qnnlib.data.mnist import load_mnist
from qnnlib.data.splits import DatasetSplits

__all__ = ["pad_images", "padded_stand_in", "stand_in_note"]


def pad_images(x: torch.Tensor, side: int = 28, size: int = 32, fill: float = -1.0) -> torch.Tensor:
    """Flat ``(N, side²)`` images → ``(N, 1, size, size)``, centred, padded with ``fill`` (the −1 background)."""
    side, size = check_int(side, "side"), check_int(size, "size")
    if x.dim() != 2 or x.shape[1] != side * side:
        raise ValueError(f"expected flat images of shape (N, {side * side}), got {tuple(x.shape)}")
    if size < side:
        raise ValueError(f"size ({size}) must be >= side ({side})")
    lo = (size - side) // 2
    hi = size - side - lo
    return nn.functional.pad(x.reshape(-1, 1, side, side), (lo, hi, lo, hi), value=fill)


def stand_in_note(name: str, stands_in_for: str) -> str:
    """The words every table and JSON of a stand-in run carries."""
    return f"{name} standing in for {stands_in_for} (not available here): NOT the paper's dataset"


def padded_stand_in(stands_in_for: str, name: str = "fashion-mnist", *, train_size: int | None = None,
                    valid_size: int | None = None, test_size: int | None = None, seed: int = 0,
                    download: bool = True) -> DatasetSplits:
    """``name`` (an MNIST-format dataset, :func:`qnnlib.data.mnist.load_mnist`) with every split padded to
    ``(N, 1, 32, 32)``; ``inputs`` says what it stands in for."""
    d = load_mnist(name, train_size=train_size, valid_size=valid_size, test_size=test_size, seed=seed,
                   download=download)

    def pad(split):  # noqa: ANN001, ANN202
        return dataclasses.replace(split, x=pad_images(split.x))

    return dataclasses.replace(d, train=pad(d.train), valid=pad(d.valid), test=pad(d.test),
                               inputs=f"28x28 pixel/255*2-1 in [-1, 1], padded to 1x32x32 with -1; "
                                      f"{stand_in_note(name, stands_in_for)}")
