"""Tests for qnnlib.losses: the square hinge loss with ±1 one-hot targets, the cross-entropy, the registry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.losses import LOSSES, cross_entropy_loss, get_loss, pm1_targets, square_hinge_loss


def _hand_loss(y: list[list[float]], labels: list[int]) -> float:
    total, count = 0.0, 0
    for row, lab in zip(y, labels):
        for c, v in enumerate(row):
            t = 1.0 if c == lab else -1.0
            total += max(0.0, 1.0 - t * v) ** 2
            count += 1
    return total / count  # mean over batch × classes


def test_pm1_targets() -> None:
    t = pm1_targets(torch.tensor([0, 2, 1]), 3)
    assert t.tolist() == [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]]
    assert pm1_targets(torch.tensor([1], dtype=torch.int32), 2).tolist() == [[-1, 1]]


def test_square_hinge_matches_hand_formula() -> None:
    y = [[0.5, -2.0, 1.5], [3.0, 0.0, -0.2], [-1.0, 1.0, 0.9], [0.0, 0.0, 0.0]]
    labels = [0, 2, 1, 1]
    out = square_hinge_loss(torch.tensor(y, dtype=torch.float64), torch.tensor(labels))
    assert out.item() == pytest.approx(_hand_loss(y, labels), rel=1e-12)
    assert out.dtype == torch.float64 and out.dim() == 0
    # all-zero output: every element contributes max(0, 1)^2 = 1
    assert square_hinge_loss(torch.zeros(5, 10), torch.arange(5)).item() == 1.0


def test_square_hinge_zero_when_margins_met() -> None:
    labels = torch.tensor([3, 0, 1])
    y = -2.0 * torch.ones(3, 4)
    y[torch.arange(3), labels] = 1.0  # t·y ≥ 1 everywhere
    assert square_hinge_loss(y, labels).item() == 0.0


def test_square_hinge_random_vs_theano_formula_and_pm1_targets() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(16, 10, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 10, (16,), generator=g)
    t = 2.0 * torch.nn.functional.one_hot(labels, 10).double() - 1
    theano = torch.mean(torch.square(torch.maximum(torch.zeros(()), 1.0 - t * y)))
    assert torch.allclose(square_hinge_loss(y, labels), theano)
    assert torch.allclose(square_hinge_loss(y, t), theano)  # ±1 targets given directly
    assert square_hinge_loss(y, labels).item() == pytest.approx(_hand_loss(y.tolist(), labels.tolist()))


def test_square_hinge_gradient_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    y = (torch.randn(8, 5, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    labels = torch.randint(0, 5, (8,), generator=g)
    square_hinge_loss(y, labels).backward()
    t = pm1_targets(labels, 5).double()
    # dL/dy = −2·t·max(0, 1 − t·y) / (N·C)
    expected = -2 * t * torch.clamp(1 - t * y.detach(), min=0) / y.numel()
    assert torch.allclose(y.grad, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("output", "target", "arg"),
    [
        (torch.zeros(3, 2, dtype=torch.int64), torch.tensor([0, 1, 0]), "output"),
        (torch.zeros(3), torch.tensor([0, 1, 0]), "output"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), "target"),
        (torch.zeros(3, 2), torch.tensor([0, 2, 1]), "target"),
        (torch.zeros(3, 2), torch.tensor([0, -1, 1]), "target"),
        (torch.zeros(3, 2), torch.zeros(3, 3), "targets"),
        (torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int64), "target"),
    ],
)
def test_square_hinge_bad_input(output: torch.Tensor, target: torch.Tensor, arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        square_hinge_loss(output, target)


def test_pm1_targets_bad_input() -> None:
    with pytest.raises(ValueError, match="target"):
        pm1_targets(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="target"):
        pm1_targets(torch.tensor([[0, 1]]), 2)
    with pytest.raises(ValueError, match="target"):
        pm1_targets(torch.tensor([0, 5]), 3)


# ------------------------------------------------------------------------------ cross-entropy
def test_cross_entropy_matches_hand_formula() -> None:
    y = [[0.5, -2.0, 1.5], [3.0, 0.0, -0.2], [-1.0, 1.0, 0.9]]
    labels = [2, 0, 1]
    expected = sum(math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(y, labels)) / 3
    out = cross_entropy_loss(torch.tensor(y, dtype=torch.float64), torch.tensor(labels))
    assert out.item() == pytest.approx(expected, rel=1e-12) and out.dim() == 0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), t=st.integers(1, 5), v=st.integers(2, 7), seed=st.integers(0, 2**16))
def test_cross_entropy_flattens_sequences(n: int, t: int, v: int, seed: int) -> None:
    """(N, T, V) with (N, T) targets, (N·T, V) with (N·T,) and the mixed forms are the same mean over tokens."""
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n, t, v, generator=g, dtype=torch.float64)
    tgt = torch.randint(0, v, (n, t), generator=g)
    flat = torch.nn.functional.cross_entropy(out.reshape(-1, v), tgt.reshape(-1))
    for o, y in [(out, tgt), (out.reshape(-1, v), tgt.reshape(-1)), (out.reshape(-1, v), tgt), (out, tgt.reshape(-1))]:
        assert torch.equal(cross_entropy_loss(o, y), flat)


@given(v=st.integers(2, 1000))
def test_cross_entropy_of_uniform_predictor_is_log_v(v: int) -> None:
    assert cross_entropy_loss(torch.zeros(3, 2, v, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.long)).item() \
        == pytest.approx(math.log(v), rel=1e-12)


@pytest.mark.parametrize(
    ("output", "target", "arg"),
    [
        (torch.zeros(3, 2, dtype=torch.int64), torch.tensor([0, 1, 0]), "output"),
        (torch.zeros(3), torch.tensor([0, 1, 0]), "output"),
        (torch.zeros(3, 2), torch.tensor([0.0, 1.0, 0.0]), "target"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), "target"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long), "target"),
    ],
)
def test_cross_entropy_bad_input(output: torch.Tensor, target: torch.Tensor, arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        cross_entropy_loss(output, target)


def test_loss_registry() -> None:
    assert get_loss("square_hinge") is square_hinge_loss and get_loss("cross_entropy") is cross_entropy_loss
    assert set(LOSSES) == {"square_hinge", "cross_entropy"}
    with pytest.raises(ValueError, match="square_hinge.*cross_entropy"):
        get_loss("hinge")
    with pytest.raises(TypeError):
        LOSSES["mine"] = square_hinge_loss  # type: ignore[index]  # read-only
