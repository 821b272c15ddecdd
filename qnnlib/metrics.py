"""Evaluation metrics as exact sums: classification error, top-5 error, perplexity.

Every metric is a ratio (or ``exp`` of a ratio) of two sums over the examples of a split: a numerator
(wrong predictions, summed token negative log-likelihood) and a denominator (examples, tokens).  A
:class:`MetricSums` adds them batch by batch, so the value over a split does not depend on how the split
is batched, and a distributed run sums the two vectors of all ranks before taking the ratio
(:meth:`MetricSums.totals` / :meth:`MetricSums.values`).

* ``error`` — fraction of examples whose arg-max score is not the target (the paper's Tables 1–3).
* ``top5`` — fraction of examples whose target is not among the 5 largest scores (ImageNet, Table 4):
  wrong when at least 5 classes score strictly higher than the target.
* ``perplexity`` — ``exp(mean per-token cross-entropy)`` (Penn Treebank, Table 6).

Outputs are (N, C) scores with targets (N,), or a sequence model's (N, T, V) / (N·T, V) scores with targets
(N, T) / (N·T,), flattened to positions.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Metric", "METRICS", "get_metric", "error_sums", "top5_error_sums", "nll_sums", "error", "top5_error",
           "perplexity", "MetricSums"]

Sums = tuple[torch.Tensor, int]


def _flatten(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, C) scores and (…) integer targets → (positions, C) and (positions,), with their checks."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise ValueError(f"output must be a floating-point tensor of scores, got {getattr(output, 'dtype', output)}")
    if output.dim() < 2:
        raise ValueError(f"output must be (N, C) or (N, T, C) scores, got shape {tuple(output.shape)}")
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer tensor of class indices, got {getattr(target, 'dtype', target)}")
    c = output.shape[-1]
    if target.numel() * c != output.numel():
        raise ValueError(f"target {tuple(target.shape)} has {target.numel()} positions but output "
                         f"{tuple(output.shape)} has {output.numel() // max(c, 1)}")
    return output.reshape(-1, c), target.reshape(-1)


def error_sums(output: torch.Tensor, target: torch.Tensor) -> Sums:
    """(number of positions whose arg-max score is not the target, number of positions)."""
    out, t = _flatten(output, target)
    return (out.argmax(dim=1) != t).sum(), t.numel()


def top5_error_sums(output: torch.Tensor, target: torch.Tensor) -> Sums:
    """(number of positions with at least 5 scores strictly above the target's, number of positions).

    With fewer than 6 classes nothing is ever wrong.  Ties with the target's score count in its favour.
    """
    out, t = _flatten(output, target)
    target_score = out.gather(1, t.long().unsqueeze(1))
    return ((out > target_score).sum(dim=1) >= 5).sum(), t.numel()


def nll_sums(output: torch.Tensor, target: torch.Tensor) -> Sums:
    """(summed per-position cross-entropy ``−log softmax(y)[t]`` in float64, number of positions)."""
    out, t = _flatten(output, target)
    nll = F.cross_entropy(out, t.long(), reduction="none")
    return nll.double().sum(), t.numel()


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator


def _exp_ratio(numerator: float, denominator: float) -> float:
    mean = numerator / denominator
    return math.inf if mean > 709.0 else math.exp(mean)  # a diverged run's perplexity is inf (NaN stays NaN)


@dataclass(frozen=True)
class Metric:
    """A metric as sums: ``sums(output, target)`` → (numerator tensor, denominator count) of one batch;
    ``value(numerator, denominator)`` → the metric of everything summed.  All of ours are lower-is-better."""

    name: str
    sums: Callable[[torch.Tensor, torch.Tensor], Sums]
    value: Callable[[float, float], float]
    lower_is_better: bool = True

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> float:
        """The metric of one batch."""
        num, den = self.sums(output, target)
        return self.value(float(num), float(den))

    def better(self, candidate: float, best: float) -> bool:
        """Whether ``candidate`` is strictly better than ``best`` (NaN never is)."""
        return candidate < best if self.lower_is_better else candidate > best

    def worst(self) -> float:
        """The starting value of a best-so-far search (``+inf`` for a lower-is-better metric)."""
        return math.inf if self.lower_is_better else -math.inf


METRICS: Mapping[str, Metric] = types.MappingProxyType({
    "error": Metric("error", error_sums, _ratio),
    "top5": Metric("top5", top5_error_sums, _ratio),
    "perplexity": Metric("perplexity", nll_sums, _exp_ratio),
})


def get_metric(name: str) -> Metric:
    """The metric registered as ``name`` in :data:`METRICS` (``ValueError`` listing the names if unknown)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {tuple(METRICS)}")
    return METRICS[name]


def error(output: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of positions whose arg-max score is not the target."""
    return METRICS["error"](output, target)


def top5_error(output: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of positions whose target is not among the 5 largest scores."""
    return METRICS["top5"](output, target)


def perplexity(output: torch.Tensor, target: torch.Tensor) -> float:
    """``exp`` of the mean per-position cross-entropy (a uniform predictor over V classes has perplexity V)."""
    return METRICS["perplexity"](output, target)


class MetricSums:
    """Running (numerator, denominator) sums of named metrics over the batches of a split.

    ``update(output, target)`` adds every metric's sums of one batch; ``add(name, numerator, denominator)``
    adds a free-form mean (e.g. the loss: its value is ``numerator / denominator``).  Numerators stay on the
    outputs' device in float64 (no host sync per batch); denominators are exact integers.
    ``totals()`` is the float64 vector ``[num_0, den_0, num_1, den_1, …]`` to sum over the ranks of a
    distributed run; ``values(totals)`` turns such a vector (by default this process's) into a dict.
    """

    def __init__(self, metrics: Iterable[str] = ("error",)) -> None:
        names = tuple(metrics)
        self._metrics = {n: get_metric(n) for n in names}
        if len(self._metrics) != len(names):
            raise ValueError(f"metric names must be distinct, got {names}")
        self._num: dict[str, torch.Tensor | float] = {n: 0.0 for n in names}
        self._den: dict[str, int] = {n: 0 for n in names}
        self._device: torch.device | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every entry: the metrics given at construction, then the free-form ones in the order first added."""
        return tuple(self._num)

    def add(self, name: str, numerator: torch.Tensor | float, denominator: int) -> None:
        """Add ``numerator`` / ``denominator`` to entry ``name`` (its value is the plain ratio unless a metric)."""
        if isinstance(numerator, torch.Tensor):
            numerator = numerator.detach().double()
            self._device = numerator.device
        self._num[name] = self._num.get(name, 0.0) + numerator
        self._den[name] = self._den.get(name, 0) + int(denominator)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add the sums of every metric over one batch."""
        output = output.detach()
        for name, metric in self._metrics.items():
            num, den = metric.sums(output, target)
            self.add(name, num, den)

    def totals(self) -> torch.Tensor:
        """``[num_0, den_0, num_1, den_1, …]`` (float64, on the outputs' device) in :attr:`names` order."""
        device = self._device or torch.device("cpu")
        parts = []
        for name, num in self._num.items():
            parts.append(torch.as_tensor(num, dtype=torch.float64, device=device))
            parts.append(torch.tensor(float(self._den[name]), dtype=torch.float64, device=device))
        return torch.stack(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)

    def values(self, totals: torch.Tensor | Sequence[float] | None = None) -> dict[str, float]:
        """Each entry's value from ``totals`` (default: this process's sums); raises if a denominator is 0."""
        t = self.totals() if totals is None else totals
        flat = t.tolist() if isinstance(t, torch.Tensor) else list(t)
        if len(flat) != 2 * len(self._num):
            raise ValueError(f"totals must have {2 * len(self._num)} numbers (num, den per entry), got {len(flat)}")
        out = {}
        for i, name in enumerate(self._num):
            num, den = flat[2 * i], flat[2 * i + 1]
            if den == 0:
                raise ValueError(f"no examples were summed for {name!r} (empty split?)")
            out[name] = self._metrics[name].value(num, den) if name in self._metrics else num / den
        return out
