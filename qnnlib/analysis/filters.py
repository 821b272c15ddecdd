"""Filter repetition in binary ConvNets (paper §3, PAPER.md §1.6).

The paper: "with 3×3 binary filters there are at most 2^9 = 512 unique 2D filters"; on the CIFAR-10
ConvNet "only 42% of the filters are unique per layer, on average", and applying only the unique 2D
filters can "reduce the number of the XNOR-popcount operations by 3".  The counting rule is not
given (PAPER.md §5.12); we count so that the saving is real:

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

:func:`pad_images` turns flat 28×28 images (Fashion-MNIST / MNIST rows in [-1, 1]) into 1×32×32
images so the paper's 32×32 ConvNet can be trained on them (padding with the background value −1).
CIFAR-10 is not available offline: when no trained CIFAR-10 BNN has been saved
(:func:`trained_convnet_checkpoint`), notebook 08 trains the paper's ConvNet on Fashion-MNIST
(:func:`stand_in_data`, :func:`train_stand_in`, sizes in :data:`STAND_IN_PROFILES`) and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from qnnlib.data.mnist import load_mnist
from qnnlib.data.root import data_root
from qnnlib.data.splits import DatasetSplits
from qnnlib.layers import LatentWeightLayer
from qnnlib.models.convnet import convnet
from qnnlib.precision import BINARY, Precision
from qnnlib.quantize import sign
from qnnlib.train import FitResult, TrainConfig, eval_mode, fit

__all__ = [
    "filter_codes",
    "canonical_codes",
    "unique_per_input_channel",
    "expected_unique_fraction",
    "LayerRepetition",
    "layer_repetition",
    "filter_repetition",
    "channel_unique_fractions",
    "comparison_rows",
    "sign_changes",
    "pad_images",
    "StandInProfile",
    "STAND_IN_PROFILES",
    "stand_in_profile",
    "stand_in_data",
    "stand_in_description",
    "train_stand_in",
    "trained_convnet_checkpoint",
    "convnet_from_state_dict",
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


def pad_images(x: torch.Tensor, side: int = 28, size: int = 32, fill: float = -1.0) -> torch.Tensor:
    """Flat ``(N, side²)`` images → ``(N, 1, size, size)``, centred, padded with ``fill`` (the −1 background)."""
    if x.dim() != 2 or x.shape[1] != side * side:
        raise ValueError(f"expected flat images of shape (N, {side * side}), got {tuple(x.shape)}")
    if size < side:
        raise ValueError(f"size ({size}) must be >= side ({side})")
    lo = (size - side) // 2
    hi = size - side - lo
    img = x.reshape(-1, 1, side, side)
    return nn.functional.pad(img, (lo, hi, lo, hi), value=fill)


# ------------------------------------------------------------------------------- stand-in profiles
@dataclass(frozen=True)
class StandInProfile:
    """Sizes of the binary ConvNet trained in notebook 08 when no trained CIFAR-10 BNN exists.

    It is the paper's ConvNet (``qnnlib.models.convnet``, 32×32 input) at ``channels``/``fc`` width,
    trained on Fashion-MNIST (1 channel, padded to 32×32) — a stand-in, not CIFAR-10.
    """

    channels: tuple[int, int, int]
    fc: int
    train_size: int
    valid_size: int
    test_size: int
    epochs: int
    batch_size: int = 50
    lr_start: float = 3e-3
    lr_end: float = 3e-5


STAND_IN_PROFILES: dict[str, StandInProfile] = {
    # smoke: proves the pipeline in seconds; quick: half the paper's conv widths, ~10 min on 2 CPU cores;
    # paper: the CIFAR-10 ConvNet's widths (a GPU run).
    "smoke": StandInProfile(channels=(16, 32, 64), fc=64, train_size=1500, valid_size=300, test_size=300,
                            epochs=2),
    "quick": StandInProfile(channels=(64, 128, 256), fc=256, train_size=3000, valid_size=1000,
                            test_size=1000, epochs=4),
    "paper": StandInProfile(channels=(128, 256, 512), fc=1024, train_size=50_000, valid_size=10_000,
                            test_size=10_000, epochs=50, lr_start=1e-3, lr_end=3e-7),
}


def stand_in_profile(profile: str) -> StandInProfile:
    """The :class:`StandInProfile` of ``profile`` ("smoke" | "quick" | "paper")."""
    try:
        return STAND_IN_PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; one of {sorted(STAND_IN_PROFILES)}") from None


def stand_in_data(p: StandInProfile, name: str = "fashion-mnist") -> DatasetSplits:
    """The stand-in dataset at ``p``'s sizes, every split padded to ``(N, 1, 32, 32)`` (:func:`pad_images`)."""
    d = load_mnist(name, train_size=p.train_size, valid_size=p.valid_size, test_size=p.test_size)
    pad = lambda s: dataclasses.replace(s, x=pad_images(s.x))  # noqa: E731
    return dataclasses.replace(d, train=pad(d.train), valid=pad(d.valid), test=pad(d.test))


def stand_in_description(d: DatasetSplits) -> dict:
    """``d.describe()`` corrected for the padding, and marked as a stand-in for CIFAR-10."""
    return {**d.describe(), "inputs": "28x28 pixel/255*2-1 in [-1, 1], padded to 1x32x32 with -1",
            "stand_in_for": "cifar10 (not available offline): NOT the paper's dataset"}


def train_stand_in(p: StandInProfile, data: DatasetSplits, *, seed: int = 1234, progress: bool = True,
                   precision: Precision = BINARY) -> tuple[nn.Module, FitResult]:
    """Train the paper's ConvNet (``convnet(p.channels, p.fc, in_channels=1, image_size=32)``) on ``data``.

    Theano recipe (PAPER.md §2.10): deterministic BNN, vanilla BN, Adam with Glorot LR scaling,
    exponential LR decay ``p.lr_start → p.lr_end``, square hinge loss.  Returns the best-validation model.
    """
    torch.manual_seed(seed)
    in_ch = int(data.train.x.shape[1])
    model = convnet(p.channels, p.fc, precision=precision, in_channels=in_ch, image_size=int(data.train.x.shape[-1]))
    cfg = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, optimizer="adam", lr_start=p.lr_start,
                      lr_end=p.lr_end, lr_schedule="exp", glorot=True, seed=seed, progress=progress)
    return model, fit(model, data, cfg, desc="stand-in BNN")


def trained_convnet_checkpoint(profile: str, experiment: str = "cifar10",
                               recipes: Sequence[str] = ("theano", "torch7")) -> Path | None:
    """The first saved trained ConvNet ``$QNNLIB_DATA/models/<profile>/<experiment>_<recipe>.pt`` that exists.

    Same location as ``qnnlib.experiment.model_path`` (the file holds ``{"state_dict": ..., ...}``);
    ``None`` when no notebook has saved one yet.
    """
    for r in recipes:
        path = data_root() / "models" / profile / f"{experiment}_{r}.pt"
        if path.is_file():
            return path
    return None


def convnet_from_state_dict(state: dict[str, torch.Tensor], image_size: int = 32) -> nn.Module:
    """Rebuild a binary ``convnet`` from its ``state_dict`` (channels, fc width and norm read from shapes)."""
    convs = sorted((k for k in state if k.startswith("conv") and k.endswith(".weight")),
                   key=lambda k: int(k[4:].split(".")[0]))
    if len(convs) != 6:
        raise ValueError(f"expected the 6 conv layers of qnnlib.models.convnet, found {convs}")
    ch = tuple(int(state[convs[j]].shape[0]) for j in (0, 2, 4))
    fc = int(state["fc7.weight"].shape[0])
    norm = "sbn" if any(k.endswith("running_invstd") for k in state) else "bn"
    m = convnet(ch, fc, precision=Precision(norm=norm), in_channels=int(state[convs[0]].shape[1]),  # type: ignore[arg-type]
                image_size=image_size, num_classes=int(state["fc9.weight"].shape[0]))
    m.load_state_dict(state)
    return m
