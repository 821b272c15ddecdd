"""Notebook 06: training with quantized gradients — config, profiles, sanity bounds, runs, rows, findings.

The paper's claims (QNN, "Quantized gradients"; docs/paper.md §2.9): the gradients can be quantized to 6 bits
"which enables gradients computation using only bit-wise operation", at a small cost (AlexNet with 1-bit
weights and 2-bit activations: 51.03% top-1 with float gradients, 46.8% with 6-bit gradients, both numbers not
checked against the paper's PDF), and "only logarithmic quantization works" for them.

The same BNN — the MLP of notebook 01 and the ConvNet of notebook 02 at the profile's scale, deterministic
binarization, BN, Adam (the paper's Alg. 1 with Glorot LR scaling) — trains with float gradients and with its
gradients quantized to each of ``bits`` by each of ``methods`` (:mod:`qnnlib.experiments.variants`). Which
tensors (docs/decisions.md D6):

* **errors between layers**: ``g_{s_k} = ∂L/∂s_k``, the error arriving at compute layer ``k``'s output, before
  pooling and BN — the operand of both of its backward products (``g_{a_{k−1}} = g_{s_k} W_k^b``,
  ``g_{W_k} = g_{s_k}^T a_{k−1}^b``), per tensor (one scale per layer and batch);
* **parameter gradients**: ``∂L/∂θ`` of every trainable tensor (latent weights, biases, BN γ/β), per tensor,
  before the optimizer sees it.

``tensors`` chooses which the sweep quantizes (both by default); at ``split_bits`` the logarithmic quantizer also
runs on each alone, so the cost of each is measured. The histograms show one layer's error (``histogram_layer``,
1-based among the compute layers) of the trained float-gradient network, before and after each quantizer
(:mod:`qnnlib.analysis.gradients`); the multiplication counts of a training step come from each variant's model
(:func:`qnnlib.experiments.variants.multiplications`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from qnnlib.analysis.gradients import layer_errors, quantization_stats
from qnnlib.data.root import display_path
from qnnlib.data.splits import DatasetSplits
from qnnlib.experiments import runner, variants
from qnnlib.experiments.variants import NETWORK_LABELS, ConvSetup, MlpSetup, Study, TwoNetworks, Variant
from qnnlib.precision import GRAD_METHODS

__all__ = ["EXPERIMENT", "FLOAT", "GradientsConfig", "Sanity", "PROFILES", "SANITY", "PAPER_KEY", "error_sample",
           "gradient_stats", "table_rows", "write_metrics", "findings", "check_sanity"]

EXPERIMENT = "gradients"
FLOAT = "float"
PAPER_KEY = "gradients:AlexNet QNN (W1/A2): 6-bit vs float gradients:error increase %"
"""The paper's number a ``6-bit log vs float`` row is set beside (a different network and dataset)."""


@dataclass(frozen=True)
class GradientsConfig(TwoNetworks):
    """Notebook 06: the two networks (:class:`~qnnlib.experiments.variants.TwoNetworks`), the gradient bit widths
    and quantizers of the sweep, and what to plot."""

    bits: tuple[int, ...] = (4, 5, 6, 8)
    methods: tuple[str, ...] = GRAD_METHODS
    tensors: Literal["errors+params", "errors", "params"] = "errors+params"
    split_bits: int | None = 6  # also the log quantizer on the errors alone and on the parameter gradients alone
    histogram_layer: int = 2  # 1-based index among the compute layers
    histogram_batch: int = 500
    resume: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.bits or len(set(self.bits)) != len(self.bits):
            raise ValueError(f"bits must be a non-empty tuple without repeats, got {self.bits!r}")
        if not self.methods or any(m not in GRAD_METHODS for m in self.methods) or len(set(self.methods)) != len(
                self.methods):
            raise ValueError(f"methods must be a non-empty subset of {GRAD_METHODS}, got {self.methods!r}")
        if self.tensors not in ("errors+params", "errors", "params"):
            raise ValueError(f"tensors must be 'errors+params', 'errors' or 'params', got {self.tensors!r}")
        for name in ("histogram_layer", "histogram_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.variants()  # every bit width checked by Precision (ValueError naming it)

    def variants(self) -> tuple[Variant, ...]:
        """``float``, then ``<method>-<bits>`` for every method and width (the ``tensors`` quantized), then
        ``log-<split_bits>-errors`` and ``log-<split_bits>-params`` (unless ``split_bits`` is None or ``tensors``
        already quantizes one kind only)."""
        out = [Variant(FLOAT)]
        errs, params = "errors" in self.tensors, "params" in self.tensors
        for m in self.methods:
            for b in self.bits:
                out.append(Variant(f"{m}-{b}", grad_bits=b if errs else None, param_grad_bits=b if params else None,
                                   grad_method=m))  # type: ignore[arg-type]
        if self.split_bits is not None and errs and params:
            b = self.split_bits
            out += [Variant(f"log-{b}-errors", grad_bits=b), Variant(f"log-{b}-params", param_grad_bits=b)]
        return tuple(out)

    def studies(self) -> list[Study]:
        """One :class:`~qnnlib.experiments.variants.Study` per network."""
        return [Study(self.profile, EXPERIMENT, self.setup(n), self.variants(), self.resume) for n in self.networks]


@dataclass(frozen=True)
class Sanity:
    """What notebook 06 checks at the end (errors are fractions; chance is 0.9)."""

    max_error: float  # the float-gradient network, every seed
    max_log6_gap: float | None  # 6-bit log (errors+params) minus float gradients, means; None: not checked


# The profile table: the only place sizes live (docs/profiles.md).
PROFILES: dict[str, GradientsConfig] = {
    "smoke": GradientsConfig(
        "smoke", MlpSetup("fashion-mnist", 1000, 300, 500, hidden=64, epochs=2, halve_every=1, threads=1),
        ConvSetup("cifar10", "fashion-mnist", 300, 100, 100, channels=(4, 8, 16), fc=32, epochs=1, halve_every=1,
                  threads=1),
        bits=(6,), histogram_batch=200, resume=False),
    "quick": GradientsConfig(
        "quick", MlpSetup("auto", 10_000, 5_000, None, hidden=256, epochs=8, n_seeds=2),
        ConvSetup("cifar10", "auto", 2_000, 1_000, 1_000, channels=(16, 32, 64), fc=128, epochs=6, halve_every=2,
                  n_seeds=2)),
    "paper": GradientsConfig(
        "paper", MlpSetup("mnist", None, None, None, hidden=2048, epochs=200, adam_lr=(3e-3, 3e-6), n_seeds=3),
        ConvSetup("cifar10", "cifar10", None, None, None, channels=(128, 256, 512), fc=1024, epochs=200,
                  batch_size=50, adam_lr=(1e-3, 3e-6), n_seeds=2)),
}

SANITY: dict[str, Sanity] = {
    "smoke": Sanity(max_error=0.95, max_log6_gap=None),  # a few steps need not learn
    "quick": Sanity(max_error=0.40, max_log6_gap=0.05),
    "paper": Sanity(max_error=0.15, max_log6_gap=0.02),
}


# ------------------------------------------------------------------------------------------ runs
def error_sample(cfg: GradientsConfig, runs: Mapping[str, Mapping[str, runner.Run]],
                 data: Mapping[str, DatasetSplits], network: str | None = None) -> tuple[str, torch.Tensor]:
    """(layer name, ``g_{s_k}``) of compute layer ``cfg.histogram_layer`` of the trained float-gradient network
    (first seed) on the first ``cfg.histogram_batch`` training examples (:func:`qnnlib.analysis.gradients.layer_errors`).
    ``network``: default the first of ``cfg.networks``."""
    network = network or cfg.networks[0]
    if FLOAT not in runs.get(network, {}):
        raise ValueError(f"the float-gradient network of {network!r} did not run; histograms need it")
    split = data[network].train
    errs = layer_errors(runs[network][FLOAT].model, split.x[: cfg.histogram_batch], split.y[: cfg.histogram_batch])
    names = list(errs)
    if cfg.histogram_layer > len(names):
        raise ValueError(f"histogram_layer={cfg.histogram_layer} but the {network} has {len(names)} compute layers "
                         f"({names})")
    name = names[cfg.histogram_layer - 1]
    return name, errs[name]


def gradient_stats(cfg: GradientsConfig, g: torch.Tensor) -> pd.DataFrame:
    """:func:`qnnlib.analysis.gradients.quantization_stats` of ``g`` for the sweep's methods and widths."""
    return quantization_stats(g, sorted(set(cfg.bits)), cfg.methods)


# ------------------------------------------------------------------------------------------ rows
def _claim_bits(cfg: GradientsConfig) -> int | None:
    return 6 if 6 in cfg.bits else None


def table_rows(cfg: GradientsConfig, per_seed: pd.DataFrame,
               sizes: Mapping[str, Mapping[str, int]] | None = None) -> list[dict[str, Any]]:
    """Rows for ``metrics["rows"]``: per network, the 6-bit log and 6-bit linear networks minus the float-gradient
    one (``error increase %``, points; std = the standard error of the difference of means). The log row is set
    beside the paper's AlexNet number (another network and dataset). ``sizes``: network -> its split sizes, stored
    in each row (the two networks train on different subsets)."""
    b = _claim_bits(cfg)
    rows: list[dict[str, Any]] = []
    if b is None:
        return rows
    for net in per_seed["network"].unique():
        sel = per_seed[per_seed["network"] == net]
        ds = str(sel["dataset"].iloc[0])
        for method in cfg.methods:
            name = f"{method}-{b}"
            if not {name, FLOAT} <= set(sel["variant"]):
                continue
            d = variants.difference(per_seed, net, name, FLOAT)
            r = {"row": f"{NETWORK_LABELS[net]} BNN, {b}-bit {method} vs float gradients",
                 "metric": "error increase %", "value": d["diff"],
                 "std": None if math.isnan(d["se"]) else d["se"], "n": min(d["n_variant"], d["n_reference"]),
                 "dataset": ds, **({"dataset_sizes": dict(sizes[net])} if sizes and net in sizes else {}),
                 "note": f"test error difference in points (± the standard error of the difference of means); "
                         f"{cfg.tensors} quantized per tensor; {cfg.setup(net).describe()}"}
            if method == "log":
                r["paper_key"] = PAPER_KEY
            rows.append(r)
    return rows


def write_metrics(cfg: GradientsConfig, runs: Mapping[str, Mapping[str, runner.Run]], per_seed: pd.DataFrame,
                  data: Mapping[str, DatasetSplits], wall_time_s: float, *, stats: pd.DataFrame | None = None,
                  counts: pd.DataFrame | None = None) -> Path:
    """Write ``results/<profile>/gradients.json`` (:func:`qnnlib.experiments.variants.write_metrics`): rows, the
    per-seed table, the summary, the quantization statistics and multiplication counts when given, histories."""
    rows = table_rows(cfg, per_seed, {n: d.sizes() for n, d in data.items()})
    return variants.write_metrics(EXPERIMENT, cfg, runs, per_seed, data, wall_time_s, rows,
                                  quantization_stats=stats, multiplications=counts)


def _fmt(d: Mapping[str, float | int]) -> str:
    se = "" if math.isnan(d["se"]) else f" ± {d['se']:.2f}"
    return f"{d['diff']:+.2f}{se} points (n = {d['n_variant']} vs {d['n_reference']})"


def findings(cfg: GradientsConfig, per_seed: pd.DataFrame, stats: pd.DataFrame | None = None) -> list[str]:
    """What notebook 06 prints under "What we found" (every number from the run)."""
    out = []
    summ = variants.summary_frame(per_seed)
    for net in per_seed["network"].unique():
        sel = per_seed[per_seed["network"] == net]
        s = summ[summ["network"] == net].set_index("variant")
        ds = sel["dataset"].iloc[0]
        if FLOAT not in s.index:
            continue
        out.append(f"{NETWORK_LABELS[net]} on {ds}: float gradients {s.loc[FLOAT, 'mean']:.2f}% test error "
                   f"(n = {int(s.loc[FLOAT, 'n'])}).")
        for method in cfg.methods:
            parts = [f"{b} bits {_fmt(variants.difference(per_seed, net, f'{method}-{b}', FLOAT))}"
                     for b in cfg.bits if f"{method}-{b}" in s.index]
            if parts:
                out.append(f"  {method} quantizer vs float gradients: " + "; ".join(parts) + ".")
        if cfg.split_bits is not None:
            b = cfg.split_bits
            for part in ("errors", "params"):
                name = f"log-{b}-{part}"
                if name in s.index:
                    what = "errors between layers" if part == "errors" else "parameter gradients"
                    out.append(f"  {b}-bit log on the {what} only: "
                               f"{_fmt(variants.difference(per_seed, net, name, FLOAT))}.")
    if stats is not None and not stats.empty:
        parts = [f"{r.method} {r.bits} bits flushes {r.flushed_pct:.1f}% of the entries to zero "
                 f"(relative error {r.rel_error:.2f})" for r in stats.itertuples()]
        out.append("One layer's error of the trained float-gradient network: " + "; ".join(parts) + ".")
        log = stats[(stats["method"] == "log") & (stats["flushed_pct"] == 0)]
        if not log.empty and "octaves" in stats.columns:
            b = int(log["bits"].min())
            out.append(f"Its non-zero magnitudes span {float(stats['octaves'].iloc[0]):.1f} octaves: from {b} bits on the "
                       f"log quantizer ({2 ** (b - 1) - 1} octaves) flushes none of them, so wider log codes give this "
                       "layer the same tensor (each entry rounded to its nearest power of two).")
    out.append("The paper's number is AlexNet on ImageNet (51.03% -> 46.8% top-1, about 4.2 points, both "
               "unconfirmed against the PDF): ours are differences on other networks and data, a trend only.")
    return out


def check_sanity(cfg: GradientsConfig, per_seed: pd.DataFrame, metrics_json: Path | None = None) -> list[str]:
    """Assert :data:`SANITY` for ``cfg.profile``: the float-gradient network of every network (every seed) under
    ``max_error``; the 6-bit log network (``tensors`` quantized) within ``max_log6_gap`` of it (means); the
    metrics JSON written. Returns the checks that passed; ``AssertionError`` naming the failed bound."""
    if cfg.profile not in SANITY:
        raise ValueError(f"no sanity bounds for profile {cfg.profile!r}; known: {tuple(SANITY)}")
    b = SANITY[cfg.profile]
    passed = variants.check_max_error(per_seed[per_seed["variant"] == FLOAT], b.max_error)
    if b.max_log6_gap is not None:
        passed += variants.check_gap(per_seed, "log-6", FLOAT, b.max_log6_gap, profile=cfg.profile)
    if metrics_json is not None:
        assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
        passed.append(f"{display_path(metrics_json)} written")
    return passed
