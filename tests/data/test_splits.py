"""Tests for qnnlib.data.splits: Batches (per-epoch seeding, state across a checkpoint), as_loader, epoch_seed."""

from __future__ import annotations

import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.data.splits import Batches, Split, as_loader, epoch_seed


def _split(n: int) -> Split:
    return Split(x=torch.arange(n, dtype=torch.float32).unsqueeze(1), y=torch.arange(n))


def test_epoch_seed() -> None:
    assert epoch_seed(1234, 0) == 1234 * 100_003 and epoch_seed(7, 3) == 7 * 100_003 + 3


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), bs=st.integers(1, 12), seed=st.integers(0, 10**6), epoch=st.integers(0, 1000))
def test_set_epoch_gives_the_training_loops_permutation(n: int, bs: int, seed: int, epoch: int) -> None:
    """Epoch e's batches: consecutive slices of randperm(n, generator seeded seed·100003+e), last one dropped."""
    loader = Batches(_split(n), bs, shuffle=True, drop_last=True, seed=seed)
    loader.set_epoch(epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    expected = [perm[b * bs:(b + 1) * bs].tolist() for b in range(n // bs)]
    assert [y.tolist() for _, y in loader] == expected
    assert len(loader) == n // bs


def test_set_epoch_makes_epochs_independent_of_history() -> None:
    a = Batches(_split(30), 7, shuffle=True, seed=3)
    first = [y for _, y in a]
    a.set_epoch(5)
    e5 = torch.cat([y for _, y in a])
    b = Batches(_split(30), 7, shuffle=True, seed=3)
    b.set_epoch(5)
    assert torch.equal(torch.cat([y for _, y in b]), e5)  # no matter what came before
    b.set_epoch(0)
    assert all(torch.equal(p, q) for p, (_, q) in zip(first, b, strict=True))  # before any set_epoch: epoch 0's order
    assert sorted(e5.tolist()) == list(range(30))


def test_state_dict_carries_a_seedless_generator() -> None:
    a = Batches(_split(20), 5, shuffle=True, generator=torch.Generator().manual_seed(0))
    list(a)
    state = a.state_dict()
    nxt = [y.tolist() for _, y in a]
    b = Batches(_split(20), 5, shuffle=True, generator=torch.Generator().manual_seed(99))
    b.load_state_dict(state)
    assert [y.tolist() for _, y in b] == nxt
    a.set_epoch(4)  # without a seed, only the epoch number is recorded
    assert a.state_dict()["epoch"] == 4
    c = Batches(_split(20), 5)
    c.load_state_dict(Batches(_split(20), 5).state_dict())  # no generator on either side
    assert c.generator is None


def test_unshuffled_batches_and_any_split_like_object() -> None:
    ns = types.SimpleNamespace(x=torch.arange(10.0), y=torch.arange(10))  # no __len__
    loader = as_loader(ns, 4)
    assert len(loader) == 3 and [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(as_loader(ns, 4, drop_last=True)) == 2
    loader.set_epoch(3)  # harmless when not shuffling
    assert [len(y) for _, y in loader] == [4, 4, 2]


def test_existing_constructor_arguments_still_work() -> None:
    g = torch.Generator().manual_seed(0)
    loader = Batches(_split(12), 5, True, g, False)
    ys = torch.cat([y for _, y in loader])
    assert torch.equal(ys, torch.randperm(12, generator=torch.Generator().manual_seed(0)))


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Batches(_split(3), 0)


def test_display_path(tmp_path, monkeypatch) -> None:
    from qnnlib.data.root import REPO_ROOT, display_path

    monkeypatch.setenv("QNNLIB_DATA", str(tmp_path / "data"))
    assert display_path(tmp_path / "data" / "models" / "x.pt") == "$QNNLIB_DATA/models/x.pt"
    assert display_path(REPO_ROOT / "results" / "quick" / "mnist.json") == "results/quick/mnist.json"
    assert display_path("/usr/share/datasets/fashion-mnist") == "/usr/share/datasets/fashion-mnist"
