"""Tests for qnnlib.metrics: closed forms, flattening, batching independence, the sums accumulator, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.metrics import (
    METRICS,
    MetricSums,
    error,
    error_sums,
    get_metric,
    nll_sums,
    perplexity,
    top5_error,
    top5_error_sums,
)


def test_error_closed_form() -> None:
    out = torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.4, 0.3]])
    y = torch.tensor([1, 1, 2, 2])  # right, wrong, right, wrong
    assert error(out, y) == 0.5
    num, den = error_sums(out, y)
    assert (int(num), den) == (2, 4)


def test_top5_error_closed_form() -> None:
    out = torch.arange(10.0).repeat(4, 1)  # class c scores c: the top 5 are classes 5..9
    y = torch.tensor([9, 5, 4, 0])
    assert top5_error(out, y) == 0.5
    assert top5_error(out[:, :5], torch.tensor([0, 1, 2, 3])) == 0.0  # ≤ 5 classes: always among the top 5
    tied = torch.zeros(2, 10)
    assert top5_error(tied, torch.tensor([0, 9])) == 0.0  # ties count in the target's favour


def test_perplexity_of_a_diverged_model_is_inf_not_an_overflow() -> None:
    out = torch.tensor([[1000.0, -1000.0]])  # the target's log-probability is −2000
    assert perplexity(out, torch.tensor([1])) == math.inf
    assert math.isnan(perplexity(torch.tensor([[math.nan, 0.0]]), torch.tensor([1])))


def test_perplexity_closed_form() -> None:
    out = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.25)], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])  # p = 1/2 and 1/3
    assert perplexity(out, y) == pytest.approx(math.exp((math.log(2) + math.log(3)) / 2), rel=1e-12)
    num, den = nll_sums(out, y)
    assert num.dtype == torch.float64 and den == 2


@given(v=st.integers(2, 2000), n=st.integers(1, 5), t=st.integers(1, 5))
def test_perplexity_of_uniform_predictor_is_v(v: int, n: int, t: int) -> None:
    assert perplexity(torch.full((n, t, v), 0.7), torch.zeros(n, t, dtype=torch.long)) == pytest.approx(v, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), t=st.integers(1, 6), v=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_sequence_outputs_are_flattened(n: int, t: int, v: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n, t, v, generator=g)
    y = torch.randint(0, v, (n, t), generator=g)
    for name, m in METRICS.items():
        ref = m(out.reshape(-1, v), y.reshape(-1))
        assert m(out, y) == ref and m(out, y.reshape(-1)) == ref and m(out.reshape(-1, v), y) == ref, name


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), c=st.integers(2, 12), seed=st.integers(0, 2**16), data=st.data())
def test_value_over_a_split_does_not_depend_on_batching(n: int, c: int, seed: int, data: st.DataObject) -> None:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n, c, generator=g)
    out[:, 0] = out[:, 1]  # some ties
    y = torch.randint(0, c, (n,), generator=g)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=6)))
    whole = MetricSums(tuple(METRICS))
    whole.update(out, y)
    parts = MetricSums(tuple(METRICS))
    for a, b in zip([0, *cuts], [*cuts, n]):
        parts.update(out[a:b], y[a:b])
    w, p = whole.values(), parts.values()
    assert w["error"] == p["error"] == error(out, y)  # integer counts: exact
    assert w["top5"] == p["top5"] == top5_error(out, y)
    assert p["perplexity"] == pytest.approx(w["perplexity"], rel=1e-12)  # float64 sums, another order


def test_metric_sums_loss_entry_and_totals_roundtrip() -> None:
    s = MetricSums(("error",))
    s.add("loss", torch.tensor(0.5) * 2, 2)
    s.add("loss", 1.0 * 3, 3)
    s.update(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert s.names == ("error", "loss")
    tot = s.totals()
    assert tot.dtype == torch.float64 and tot.tolist() == [1.0, 1.0, 4.0, 5.0]
    assert s.values() == {"error": 1.0, "loss": 0.8}
    assert s.values(2 * tot) == s.values()  # what a 2-rank all-reduce of identical ranks gives
    with pytest.raises(ValueError, match="4 numbers"):
        s.values([1.0, 2.0])


def test_empty_sums_raise() -> None:
    with pytest.raises(ValueError, match="no examples"):
        MetricSums(("error",)).values()


def test_registry_and_bad_names() -> None:
    assert set(METRICS) == {"error", "top5", "perplexity"}
    assert all(m.lower_is_better and m.worst() == math.inf for m in METRICS.values())
    assert get_metric("error").better(0.1, 0.2) and not get_metric("error").better(0.2, 0.2)
    assert not get_metric("error").better(math.nan, math.inf)
    with pytest.raises(ValueError, match="error.*top5.*perplexity"):
        get_metric("accuracy")
    with pytest.raises(ValueError, match="distinct"):
        MetricSums(("error", "error"))
    with pytest.raises(ValueError, match="accuracy"):
        MetricSums(("accuracy",))


@pytest.mark.parametrize("fn", [error_sums, top5_error_sums, nll_sums])
@pytest.mark.parametrize(
    ("output", "target", "arg"),
    [
        (torch.zeros(3, 2, dtype=torch.int64), torch.tensor([0, 1, 0]), "output"),
        (torch.zeros(3), torch.tensor([0, 1, 0]), "output"),
        (torch.zeros(3, 2), torch.tensor([0.0, 1.0, 0.0]), "target"),
        (torch.zeros(3, 2), torch.tensor([True, False, True]), "target"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), "target"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long), "target"),
    ],
)
def test_bad_input(fn, output: torch.Tensor, target: torch.Tensor, arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        fn(output, target)
