"""Filter repetition in binary ConvNets (paper §3, docs/paper.md §1.6).

The paper: "with 3×3 binary filters there are at most 2^9 = 512 unique 2D filters"; on the CIFAR-10
ConvNet "only 42% of the filters are unique per layer, on average", and applying only the unique 2D
filters can "reduce the number of the XNOR-popcount operations by 3".  The counting rule is not
given (docs/decisions.md D15); we count so that the saving is real:

* A binary conv layer with weights ``W_b ∈ {±1}^(O×I×k×k)`` computes, per output pixel,
  ``y_o = Σ_i (x_i ⋆ W_b[o, i])``.  If ``W_b[o, i] = W_b[o', i]`` (same input channel ``i``), the
  partial result ``x_i ⋆ W_b[o, i]`` is computed once and reused for ``o'``.  So the unique filters
  are counted **per input channel**, across the ``O`` output channels: ``U_i = |{W_b[o, i] : o}|``,
  and the layer's unique fraction is ``Σ_i U_i / (O · I)``.
* With ``sign_invariant=True`` a filter and its negation count as one (``x ⋆ (−w) = −(x ⋆ w)``, a
  free negation of the popcount result); the paper does not say which it used, so both are reported.
* XNOR-popcounts per image: ``H'·W'·O·I·k²`` → ``H'·W'·(Σ_i U_i)·k²`` with reuse; the accumulation
  of the ``O·I`` partial sums (adds) is not saved and is reported separately.
* For reference we also report the layer-wide unique count over all ``O·I`` filters (≤ 512, so its
  fraction is tiny for wide layers — this cannot be the paper's 42%), and the fraction expected if
  every sign were an independent fair coin, ``E[U]/O = (N/O)(1 − (1 − 1/N)^O)`` with ``N = 2^(k²)``
  (``2^(k²−1)`` sign-invariant): an untrained or barely trained network sits at that baseline.

Which trained network the statistics are taken on (the paper's CIFAR-10 BNN, or a stand-in) is the
experiment's business: :mod:`qnnlib.experiments.energy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from qnnlib.evaluation import eval_mode
from qnnlib.layers import LatentWeightLayer
from qnnlib.quantize import sign

__all__ = [
    "filter_codes",
    "canonical_codes",
    "unique_per_input_channel",
    "expected_unique_fraction",
    "LayerRepetition",
    "layer_repetition",
    "repetition_by_epoch",
    "filter_repetition",
    "channel_unique_fractions",
    "comparison_rows",
    "sign_changes",
]


def filter_codes(weight: torch.Tensor) -> torch.Tensor:
    """Encode each 2D filter of ``sign(weight)`` (shape ``(O, I, kh, kw)``) as an integer ``(O, I)``.

    Bit ``j`` (row-major position in the kh×kw kernel) is 1 where the binary weight is +1 (sign(0) = +1,
    Eq. 1).  Two filters are equal iff their codes are equal.
    """
    if weight.dim() != 4:
        raise ValueError(f"expected a conv weight (O, I, kh, kw), got shape {tuple(weight.shape)}")
    n = weight.shape[2] * weight.shape[3]
    if n > 62:
        raise ValueError(f"kernel of {n} elements does not fit a 63-bit code")
    bits = (sign(weight.detach().float()) > 0).flatten(2).to(torch.int64)  # (O, I, n)
    return (bits << torch.arange(n, dtype=torch.int64)).sum(-1)


def canonical_codes(codes: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Map a code and the code of its negated filter to the same value: ``min(c, c XOR (2^n − 1))``."""
    return torch.minimum(codes, codes ^ ((1 << n_bits) - 1))


def unique_per_input_channel(weight: torch.Tensor, *, sign_invariant: bool = False) -> torch.Tensor:
    """``U_i``: the number of distinct binary 2D filters among ``W_b[:, i]`` for each input channel i."""
    codes = filter_codes(weight)
    if sign_invariant:
        codes = canonical_codes(codes, weight.shape[2] * weight.shape[3])
    s = codes.sort(dim=0).values
    return 1 + (s[1:] != s[:-1]).sum(dim=0)


def expected_unique_fraction(n_out: int, n_patterns: int) -> float:
    """Expected fraction of distinct values among ``n_out`` uniform draws from ``n_patterns`` values."""
    if n_out < 1 or n_patterns < 1:
        raise ValueError("n_out and n_patterns must be >= 1")
    return n_patterns / n_out * (1.0 - (1.0 - 1.0 / n_patterns) ** n_out)


@dataclass(frozen=True)
class LayerRepetition:
    """Filter-repetition statistics of one binary conv layer (per image for the operation counts)."""

    layer: str
    out_channels: int
    in_channels: int
    kernel: int  # k·k, the number of weights in one 2D filter
    out_pixels: int  # H'·W' of the conv output (before pooling)
    n_filters: int  # O·I
    unique: int  # Σ_i U_i
    unique_sign: int  # Σ_i U_i with a filter and its negation counted once
    unique_fraction: float
    unique_fraction_sign: float
    random_fraction: float  # E[unique fraction] for random signs
    random_fraction_sign: float
    layer_unique: int  # distinct filters over the whole layer
    layer_unique_sign: int
    xnor_popcounts: int  # H'·W'·O·I·k², every filter applied
    xnor_popcounts_unique: int  # only unique filters applied
    xnor_popcounts_unique_sign: int
    accumulations: int  # H'·W'·O·I partial sums still added

    @property
    def ops_reduction(self) -> float:
        """XNOR-popcounts without reuse / with reuse (the paper's "by 3")."""
        return self.xnor_popcounts / self.xnor_popcounts_unique

    @property
    def ops_reduction_sign(self) -> float:
        return self.xnor_popcounts / self.xnor_popcounts_unique_sign


def layer_repetition(name: str, weight: torch.Tensor, out_pixels: int) -> LayerRepetition:
    """Statistics of one conv layer with (latent) weight ``weight`` and ``out_pixels`` output positions."""
    o, i, kh, kw = weight.shape
    n = kh * kw
    u = int(unique_per_input_channel(weight).sum())
    us = int(unique_per_input_channel(weight, sign_invariant=True).sum())
    codes = filter_codes(weight)
    per = out_pixels * n
    return LayerRepetition(
        layer=name, out_channels=o, in_channels=i, kernel=n, out_pixels=out_pixels, n_filters=o * i,
        unique=u, unique_sign=us, unique_fraction=u / (o * i), unique_fraction_sign=us / (o * i),
        random_fraction=expected_unique_fraction(o, 2**n),
        random_fraction_sign=expected_unique_fraction(o, 2 ** (n - 1)),
        layer_unique=int(codes.unique().numel()),
        layer_unique_sign=int(canonical_codes(codes, n).unique().numel()),
        xnor_popcounts=per * o * i, xnor_popcounts_unique=per * u, xnor_popcounts_unique_sign=per * us,
        accumulations=out_pixels * o * i,
    )


def filter_repetition(model: nn.Module, input_shape: Sequence[int]) -> pd.DataFrame:
    """One row of :class:`LayerRepetition` per binary (``weight_bits == 1``) ``Conv2d`` of ``model``.

    Output sizes come from a real forward pass (batch 1, eval mode).  Extra columns:
    ``ops_reduction`` and ``ops_reduction_sign``.  Empty if the model has no binary conv layer.
    """
    convs = {n: m for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and isinstance(m, LatentWeightLayer) and m.weight_bits == 1}
    pixels: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda mod, a, out, n=n: pixels.__setitem__(n, out.shape[2] * out.shape[3]))
               for n, m in convs.items()]
    try:
        with eval_mode(model):
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    rows = []
    for n, m in convs.items():
        r = layer_repetition(n, m.weight, pixels[n])
        rows.append({**asdict(r), "ops_reduction": r.ops_reduction, "ops_reduction_sign": r.ops_reduction_sign})
    return pd.DataFrame(rows, columns=[*LayerRepetition.__dataclass_fields__, "ops_reduction", "ops_reduction_sign"])


def repetition_by_epoch(models: Mapping[int, nn.Module], input_shape: Sequence[int]) -> pd.DataFrame:
    """:func:`filter_repetition` of each ``models[epoch]`` (snapshots of one training run), with an ``epoch``
    column first: how the unique fraction moves as training moves the binary weights away from their
    initialisation (epoch 0)."""
    if not models:
        raise ValueError("repetition_by_epoch needs at least one model (epoch -> model)")
    frames = [filter_repetition(m, input_shape).assign(epoch=int(e)) for e, m in sorted(models.items())]
    out = pd.concat(frames, ignore_index=True)
    return out[["epoch", *[c for c in out.columns if c != "epoch"]]]


def channel_unique_fractions(model: nn.Module) -> pd.DataFrame:
    """Long form ``layer, in_channel, counting, unique_fraction`` (``U_i / O``) of every binary conv.

    ``counting`` is ``"exact"`` or ``"sign-invariant"``; for the histogram of notebook 08.
    """
    rows = []
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and isinstance(m, LatentWeightLayer) and m.weight_bits == 1:
            for counting, inv in (("exact", False), ("sign-invariant", True)):
                u = unique_per_input_channel(m.weight, sign_invariant=inv)
                rows += [{"layer": n, "in_channel": i, "counting": counting, "unique_fraction": v / m.out_channels}
                         for i, v in enumerate(u.tolist())]
    return pd.DataFrame(rows, columns=["layer", "in_channel", "counting", "unique_fraction"])


def sign_changes(trained: nn.Module, initial: nn.Module) -> pd.DataFrame:
    """Per binary conv: the fraction of binary weights whose sign differs between two models of one architecture.

    Tells whether training moved the filters at all (a short run can leave them near their random init).
    """
    init = dict(initial.named_modules())
    rows = []
    for n, m in trained.named_modules():
        if isinstance(m, nn.Conv2d) and isinstance(m, LatentWeightLayer) and m.weight_bits == 1:
            a, b = sign(m.weight.detach()), sign(init[n].weight.detach())
            if a.shape != b.shape:
                raise ValueError(f"{n}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
            rows.append({"layer": n, "sign_changed": float((a != b).float().mean())})
    return pd.DataFrame(rows, columns=["layer", "sign_changed"])


def comparison_rows(rep: pd.DataFrame, dataset: str, sizes: dict[str, int] | None = None,
                    note: str = "") -> list[dict[str, object]]:
    """Paper-vs-ours rows (``metrics["rows"]``) from :func:`filter_repetition` of a trained BNN.

    The paper's "42% unique filters per layer, on average" is compared with the unweighted mean over
    layers of ``unique_fraction`` (exact) and of ``unique_fraction_sign``; the XNOR-popcount reduction
    over all binary convs ("by 3" in the paper, no table key) and the most distinct 3×3 patterns seen
    in one layer (bound 2^9 = 512) are reported too.
    """
    if rep.empty:
        raise ValueError("no binary conv layers in the filter-repetition table")
    key = "filters:CIFAR-10 ConvNet:unique 2D filters per layer %"
    common = {"dataset": dataset, "dataset_sizes": sizes}
    red = rep["xnor_popcounts"].sum() / rep["xnor_popcounts_unique"].sum()
    red_s = rep["xnor_popcounts"].sum() / rep["xnor_popcounts_unique_sign"].sum()
    rnd = 100 * rep["random_fraction"].mean()
    return [
        {"row": "BNN ConvNet, exact repeats", "metric": "unique 2D filters per layer %", "paper_key": key,
         "value": 100 * float(rep["unique_fraction"].mean()), **common,
         "note": f"per input channel across output channels; random signs would give {rnd:.1f}%. {note}".strip()},
        {"row": "BNN ConvNet, sign-inverse counts as repeat", "metric": "unique 2D filters per layer %",
         "paper_key": key, "value": 100 * float(rep["unique_fraction_sign"].mean()), **common,
         "note": f"random signs would give {100 * rep['random_fraction_sign'].mean():.1f}%. {note}".strip()},
        {"row": "BNN ConvNet, unique filters only", "metric": "XNOR-popcount reduction x", "value": float(red),
         "paper_key": "filters:CIFAR-10 ConvNet, unique filters only:XNOR-popcount reduction x", **common, "note": f"paper: 'by 3' (NIPS §3); sign-invariant {red_s:.2f}x; accumulations not saved"},
        {"row": "3x3 binary filters", "metric": "max unique 2D filters", "value": float(rep["layer_unique"].max()),
         "paper_key": "filters:3x3 binary filters:max unique 2D filters", "dataset": "-",
         "note": f"most distinct patterns in one layer of the trained net ({dataset}); the paper's is the bound 2^9"},
    ]
