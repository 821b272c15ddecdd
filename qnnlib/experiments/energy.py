"""Notebook 08: energy, memory and filter repetition (paper §3) — config, profiles, sanity bounds, the runs.

Everything notebook 08 prints is computed here from the models of :mod:`qnnlib.models`:

* :func:`model_zoo` — the paper's networks at full size (the account needs no training);
* :func:`account_zoo` — :func:`qnnlib.analysis.energy.account` of every network under the stated
  :class:`~qnnlib.analysis.energy.EnergyAssumptions` (:func:`assumptions`), and its totals;
* :func:`sensitivity` — the BNN/fp32 energy ratio under other memory placements and XNOR energies;
* :func:`disk_table` — the bit-packed checkpoint measured on disk (:func:`qnnlib.runtime.packed_checkpoint.size_report`);
* :func:`filter_model` / :func:`filter_tables` — filter repetition (:mod:`qnnlib.analysis.filters`) on a
  **trained** binary ConvNet.

Stand-in policy: the paper counts filters on its trained CIFAR-10 ConvNet. When a CIFAR-10 notebook has
saved one (``$QNNLIB_DATA/models/<profile>/cifar10_<recipe>.pt``) it is used; otherwise the paper's ConvNet
is trained here on **Fashion-MNIST padded to 32×32** at the profile's :class:`StandIn` sizes, and every
table and the JSON say so (not comparable with the paper's 42%).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from qnnlib.analysis import filters
from qnnlib.analysis.energy import EnergyAssumptions, account, comparison_rows, scheme_totals
from qnnlib.data.root import display_path
from qnnlib.data.splits import DatasetSplits
from qnnlib.data.standin import padded_stand_in
from qnnlib.experiments import runner
from qnnlib.experiments.config import as_dict, from_dict
from qnnlib.experiments.convnets import ConvRecipe, build_model
from qnnlib.models.convnet import cifar10_convnet, convnet, svhn_convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import BINARY, Precision
from qnnlib.runtime.packed_checkpoint import size_report
from qnnlib.train import FitResult, TrainConfig, fit

__all__ = ["StandIn", "EnergyConfig", "Sanity", "PROFILES", "SANITY", "MemoryLevel", "assumptions", "model_zoo",
           "account_zoo", "overview_table", "sensitivity", "disk_table", "stand_in_data",
           "stand_in_description", "train_stand_in", "FilterModel", "filter_model", "FilterTables",
           "filter_tables", "rows", "write_metrics", "check_sanity", "findings", "findings_trajectory", "BNN_LABELS"]

EXPERIMENT = "energy"
MemoryLevel = Literal["8K", "32K", "1M", "DRAM", "auto"]
BNN_LABELS = ("MNIST MLP", "CIFAR-10 ConvNet", "SVHN ConvNet")  # the binary networks of Table 1


@dataclass(frozen=True)
class StandIn:
    """The binary ConvNet trained here when no trained CIFAR-10 BNN exists.

    The paper's ConvNet (:func:`qnnlib.models.convnet.convnet`, 32×32 input) at ``channels``/``fc`` width,
    trained with the Theano recipe on Fashion-MNIST (1 channel, padded to 32×32): a stand-in, not CIFAR-10.
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
    threads: int | None = None  # torch threads while training (TrainConfig.threads); smoke pins 1

    def __post_init__(self) -> None:
        for f in ("fc", "train_size", "valid_size", "test_size", "epochs", "batch_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"stand-in {f} must be a positive integer, got {v!r}")
        if len(self.channels) != 3 or any(c < 1 for c in self.channels):
            raise ValueError(f"stand-in channels must be three positive widths, got {self.channels!r}")


@dataclass(frozen=True)
class EnergyConfig:
    """Notebook 08: the energy-model assumptions, the stand-in ConvNet and the seed."""

    profile: str
    stand_in: StandIn
    seed: int = 1234
    weight_memory: MemoryLevel = "DRAM"  # where weights are read from, once per inference
    act_memory: MemoryLevel = "1M"  # where each layer reads its input and writes its output
    dram: Literal["low", "high"] = "low"  # Horowitz's 1.3 nJ or 2.6 nJ per 64-bit DRAM access
    xnor_pj: float = 0.03  # pJ per binary connection (XNOR + popcount share); 0.03 = an 8-bit add

    def __post_init__(self) -> None:
        if not self.xnor_pj >= 0:
            raise ValueError(f"xnor_pj must be >= 0, got {self.xnor_pj!r}")


# smoke: proves the pipeline in seconds; quick: half the paper's conv widths, a few minutes on 2 CPU cores;
# paper: the CIFAR-10 ConvNet's widths (a GPU run).
PROFILES: dict[str, EnergyConfig] = {
    "smoke": EnergyConfig("smoke", StandIn(channels=(16, 32, 64), fc=64, train_size=1500, valid_size=300,
                                           test_size=300, epochs=2, threads=1)),
    "quick": EnergyConfig("quick", StandIn(channels=(64, 128, 256), fc=256, train_size=3000, valid_size=1000,
                                           test_size=1000, epochs=4)),
    "paper": EnergyConfig("paper", StandIn(channels=(128, 256, 512), fc=1024, train_size=50_000, valid_size=10_000,
                                           test_size=10_000, epochs=50, lr_start=1e-3, lr_end=3e-7)),
}


@dataclass(frozen=True)
class Sanity:
    """What notebook 08 checks at the end (the same at every profile: the account is architectural)."""

    min_weight_compression: float = 25.0  # binary vs fp32 weight bytes, MNIST MLP
    min_access_reduction: float = 25.0  # 64-bit accesses, MNIST MLP
    min_energy_reduction: float = 25.0  # energy per inference, MNIST MLP
    disk_ratio: tuple[float, float] = (25.0, 32.0)  # packed checkpoint vs float state_dict, on disk
    max_filter_net_error: float = 0.8  # the ConvNet whose filters are counted learned something (chance 0.9)


SANITY: dict[str, Sanity] = {p: Sanity() for p in PROFILES}


# ------------------------------------------------------------------------------------- accounts
def assumptions(cfg: EnergyConfig) -> EnergyAssumptions:
    """The energy model's assumptions of ``cfg``."""
    return EnergyAssumptions(weight_memory=cfg.weight_memory, act_memory=cfg.act_memory, dram=cfg.dram,
                             xnor_pj_per_connection=cfg.xnor_pj)


def model_zoo(seed: int = 1234) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """The paper's networks at full size, label → (model, input shape): the MNIST MLP (784–3×4096–10), the
    CIFAR-10 and SVHN ConvNets as BNNs (W1/A1), and the CIFAR-10 ConvNet with 2-bit weights and activations."""
    torch.manual_seed(seed)
    return {
        "MNIST MLP": (mnist_mlp(), (784,)),
        "CIFAR-10 ConvNet": (cifar10_convnet(), (3, 32, 32)),
        "SVHN ConvNet": (svhn_convnet(), (3, 32, 32)),
        "CIFAR-10 ConvNet W2A2": (cifar10_convnet(precision=Precision(2, 2)), (3, 32, 32)),
    }


def account_zoo(zoo: Mapping[str, tuple[nn.Module, tuple[int, ...]]], asm: EnergyAssumptions
                ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(per-layer accounts, per-scheme totals) of every network of ``zoo``."""
    accounts = {label: account(m, shape, asm) for label, (m, shape) in zoo.items()}
    return accounts, {label: scheme_totals(a) for label, a in accounts.items()}


def overview_table(totals: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (network, scheme): parameters, MAC kinds, memory (MiB), accesses, energy (µJ), ratios."""
    df = pd.concat(dict(totals), names=["model", "scheme"]).reset_index()
    df["weights+aux MiB"] = df["memory_bytes"] / 2**20
    df["energy µJ"] = df["energy_pj"] / 1e6
    return df[["model", "scheme", "params", "macs", "xnor_popcounts", "kbit_macs", "float_macs", "weights+aux MiB",
               "accesses", "energy µJ", "weight_compression", "memory_compression", "access_reduction",
               "energy_reduction", "compute_energy_reduction"]]


def sensitivity(model: nn.Module, input_shape: Sequence[int], asm: EnergyAssumptions) -> pd.DataFrame:
    """The energy ratio of every scheme to fp32 under other assumptions (each row a full re-account)."""
    variants = {
        "default (weights DRAM low, acts 1M)": asm,
        "DRAM high (2.6 nJ)": dataclasses.replace(asm, dram="high"),
        "auto placement (smallest level that fits)": dataclasses.replace(asm, weight_memory="auto", act_memory="auto"),
        "XNOR-popcount 0.006 pJ/connection": dataclasses.replace(asm, xnor_pj_per_connection=0.006),
        "weights in 1M SRAM": dataclasses.replace(asm, weight_memory="1M"),
    }
    return pd.DataFrame({name: scheme_totals(account(model, input_shape, a))["energy_reduction"]
                         for name, a in variants.items()}).T


def disk_table(zoo: Mapping[str, tuple[nn.Module, tuple[int, ...]]], labels: Sequence[str] = BNN_LABELS
               ) -> dict[str, dict[str, float]]:
    """:func:`~qnnlib.runtime.packed_checkpoint.size_report` of each network, written to a temporary folder."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in labels:
            out[label] = size_report(zoo[label][0], Path(tmp) / label.replace(" ", "_"))
    return out


# ----------------------------------------------------------------------------- the filter ConvNet
def stand_in_data(s: StandIn, name: str = "fashion-mnist") -> DatasetSplits:
    """The stand-in dataset at ``s``'s sizes, every split padded to ``(N, 1, 32, 32)``
    (:func:`qnnlib.data.standin.padded_stand_in`)."""
    return padded_stand_in("cifar10", name, train_size=s.train_size, valid_size=s.valid_size,
                           test_size=s.test_size)


def stand_in_description(d: DatasetSplits) -> dict[str, Any]:
    """``d.describe()`` (whose ``inputs`` already say padded and what it stands in for), marked as a stand-in for
    CIFAR-10."""
    return {**d.describe(), "stand_in_for": "cifar10 (not available offline): NOT the paper's dataset"}


def train_stand_in(s: StandIn, data: DatasetSplits, *, seed: int = 1234, progress: bool = True,
                   precision: Precision = BINARY, snapshots: dict[int, dict[str, torch.Tensor]] | None = None
                   ) -> tuple[nn.Module, FitResult]:
    """Train the paper's ConvNet (``convnet(s.channels, s.fc)``, the data's channels and size) on ``data``.

    Theano recipe (docs/paper.md §2.10): deterministic BNN, vanilla BN, Adam with Glorot LR scaling,
    exponential LR decay ``s.lr_start → s.lr_end``, square hinge loss. Returns the best-validation model.
    A ``snapshots`` dict receives the weights at initialisation (key 0) and after every epoch.
    """
    torch.manual_seed(seed)
    model = convnet(s.channels, s.fc, precision=precision, in_channels=int(data.train.x.shape[1]),
                    image_size=int(data.train.x.shape[-1]))
    cfg = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, optimizer="adam", lr_start=s.lr_start,
                      lr_end=s.lr_end, lr_schedule="exp", glorot=True, seed=seed, progress=progress,
                      threads=s.threads)
    hook = None
    if snapshots is not None:
        snapshots[0] = runner.cpu_state_dict(model)

        def hook(epoch: int, row: dict[str, Any]) -> None:
            snapshots[epoch + 1] = runner.cpu_state_dict(model)

    return model, fit(model, data, cfg, desc="stand-in BNN", on_epoch_end=hook)


def convnet_from_state_dict(state: Mapping[str, torch.Tensor], image_size: int = 32) -> nn.Module:
    """Rebuild a binary ``convnet`` from its ``state_dict`` (channels, fc width and norm read from shapes)."""
    convs = sorted((k for k in state if k.startswith("conv") and k.endswith(".weight")),
                   key=lambda k: int(k[4:].split(".")[0]))
    if len(convs) != 6:
        raise ValueError(f"expected the 6 conv layers of qnnlib.models.convnet.convnet, found {convs}")
    ch = tuple(int(state[convs[j]].shape[0]) for j in (0, 2, 4))
    norm = "sbn" if any(k.endswith("running_invstd") for k in state) else "bn"
    m = convnet(ch, int(state["fc7.weight"].shape[0]), precision=Precision(norm=norm),
                in_channels=int(state[convs[0]].shape[1]), image_size=image_size,
                num_classes=int(state["fc9.weight"].shape[0]))
    m.load_state_dict(dict(state))
    return m


@dataclass
class FilterModel:
    """The trained binary ConvNet whose filters are counted, and where it came from."""

    model: nn.Module
    dataset: dict[str, Any]  # DatasetSplits.describe() of its training data
    source: str  # one sentence for tables and the JSON
    history: list[dict[str, Any]] = field(default_factory=list)
    fit_summary: dict[str, Any] = field(default_factory=dict)  # best epoch, test error, wall time
    # the same run's weights by epoch (0 = initialisation): how the filter statistics move with training
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def at_epoch(self, epoch: int) -> nn.Module:
        """``model``'s architecture with the weights of ``snapshots[epoch]`` (eval mode)."""
        if epoch not in self.snapshots:
            raise KeyError(f"no snapshot of epoch {epoch}; this run kept epochs {sorted(self.snapshots)}")
        m = copy.deepcopy(self.model)
        m.load_state_dict(self.snapshots[epoch])
        return m.eval()


def filter_model(cfg: EnergyConfig, *, recipes: Sequence[str] = ("theano", "torch7"), progress: bool = True
                 ) -> FilterModel:
    """A trained CIFAR-10 BNN saved by the CIFAR-10 notebook at ``cfg.profile``, else the stand-in trained here."""
    for r in recipes:
        path = runner.model_path(cfg.profile, "cifar10", r)
        if path.is_file():
            saved = runner.load_model(path, "rerun the CIFAR-10 notebook at this profile")
            if isinstance(saved.get("recipe"), dict) and "channels" in saved["recipe"]:  # notebook 02's recipe
                rc = from_dict(ConvRecipe, saved["recipe"])
                model = build_model(rc, in_channels=int(saved["state_dict"]["conv1.weight"].shape[1]))
                model.load_state_dict(saved["state_dict"])
            else:
                model = convnet_from_state_dict(saved["state_dict"])
            snaps = {int(e): sd for e, sd in (saved.get("snapshots") or {}).items()}
            return FilterModel(model.eval(), saved.get("dataset", {"name": "cifar10"}),
                               f"trained CIFAR-10 BNN ({r} recipe) saved by the CIFAR-10 notebook",
                               fit_summary=saved.get("result", {}), snapshots=snaps)
    data = stand_in_data(cfg.stand_in)
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    model, result = train_stand_in(cfg.stand_in, data, seed=cfg.seed, progress=progress, snapshots=snaps)
    s = cfg.stand_in
    return FilterModel(model, stand_in_description(data),
                       f"NO trained CIFAR-10 BNN available: Fashion-MNIST stand-in, the paper's ConvNet at widths "
                       f"{s.channels}/{s.fc}, trained {s.epochs} epochs in this notebook", result.history,
                       {k: getattr(result, k) for k in ("best_epoch", "test_error_at_best", "final_test_error",
                                                        "wall_time_s")}, snaps)


@dataclass
class FilterTables:
    """Filter repetition of the trained ConvNet, the same architecture at initialisation, and the sign changes."""

    trained: pd.DataFrame  # filters.filter_repetition of the trained model
    at_init: pd.DataFrame  # the same at initialisation (same seed: the stand-in's exact starting weights)
    sign_changes: pd.DataFrame  # per layer: fraction of binary weights whose sign training changed
    per_channel: pd.DataFrame  # filters.channel_unique_fractions (histogram data)
    by_epoch: pd.DataFrame  # filters.repetition_by_epoch of the run's snapshots (empty without snapshots)

    def trajectory(self) -> pd.DataFrame:
        """Per snapshot epoch, the mean over layers of the unique fractions (exact, sign-invariant, random)."""
        cols = ["unique_fraction", "unique_fraction_sign", "random_fraction", "random_fraction_sign"]
        if self.by_epoch.empty:
            return pd.DataFrame(columns=["epoch", *cols])
        return self.by_epoch.groupby("epoch", as_index=False)[cols].mean()

    def summary(self) -> pd.DataFrame:
        """Per layer, with a mean row: unique fractions (exact, sign-invariant, random, at init), ops saved."""
        show = self.trained[["layer", "out_channels", "in_channels", "unique_fraction", "unique_fraction_sign",
                             "random_fraction", "random_fraction_sign", "layer_unique", "layer_unique_sign",
                             "ops_reduction", "ops_reduction_sign"]].copy()
        show.insert(4, "at init", self.at_init["unique_fraction"].to_numpy())
        show.insert(5, "signs changed by training", self.sign_changes["sign_changed"].to_numpy())
        mean_row = {"layer": "mean over layers", **show.drop(columns=["layer"]).mean().to_dict()}
        return pd.concat([show, pd.DataFrame([mean_row])], ignore_index=True)


def filter_tables(fm: FilterModel, seed: int = 1234) -> FilterTables:
    """:class:`FilterTables` of ``fm.model`` (its first conv's input channels, 32×32 input).

    The initial weights are the run's own epoch-0 snapshot when it kept one; otherwise the same architecture
    initialised from ``seed`` (the stand-in's seed: its exact starting weights)."""
    in_shape = (int(fm.model.conv1.in_channels), 32, 32)
    rep = filters.filter_repetition(fm.model, in_shape)
    if 0 in fm.snapshots:
        at_init = fm.at_epoch(0)
    else:
        torch.manual_seed(seed)
        at_init = convnet(tuple(int(c) for c in rep["out_channels"].iloc[[0, 2, 4]]),
                          int(fm.model.fc7.out_features), in_channels=in_shape[0])
    by_epoch = (filters.repetition_by_epoch({e: fm.at_epoch(e) for e in fm.snapshots}, in_shape) if fm.snapshots
                else pd.DataFrame())
    return FilterTables(rep, filters.filter_repetition(at_init, in_shape), filters.sign_changes(fm.model, at_init),
                        filters.channel_unique_fractions(fm.model), by_epoch)


# ------------------------------------------------------------------------------------ results
def rows(totals: Mapping[str, pd.DataFrame], disk: Mapping[str, Mapping[str, float]], ft: FilterTables,
         fm: FilterModel) -> list[dict[str, Any]]:
    """The paper-vs-ours rows: memory, accesses and energy of the BNNs, the packed files, the filter statistics."""
    out = comparison_rows({k: totals[k] for k in BNN_LABELS if k in totals}, disk)
    return out + filters.comparison_rows(ft.trained, fm.dataset["name"], fm.dataset.get("sizes"), note=fm.source)


def write_metrics(cfg: EnergyConfig, zoo: Mapping[str, tuple[nn.Module, tuple[int, ...]]],
                  totals: Mapping[str, pd.DataFrame], disk: Mapping[str, Mapping[str, float]], sens: pd.DataFrame,
                  ft: FilterTables, fm: FilterModel, wall_time_s: float) -> Path:
    """Write ``results/<profile>/energy.json``."""
    from qnnlib.experiments import results  # noqa: PLC0415

    return results.write_metrics(
        EXPERIMENT, cfg.profile,
        config={**as_dict(cfg), "assumptions": assumptions(cfg).describe(), "filter_source": fm.source,
                "models": {k: list(s) for k, (_, s) in zoo.items()}},
        metrics={"rows": rows(totals, disk, ft, fm),
                 "totals": {k: t.reset_index().to_dict(orient="records") for k, t in totals.items()},
                 "disk": dict(disk), "filters": ft.trained.to_dict(orient="records"),
                 "filters_at_init": ft.at_init[["layer", "unique_fraction", "unique_fraction_sign"]].to_dict(orient="records"),
                 "sign_changes_vs_init": ft.sign_changes.to_dict(orient="records"),
                 "filters_by_epoch": ft.trajectory().to_dict(orient="records"),
                 "energy_sensitivity_cifar10": sens.to_dict(orient="index"), "stand_in_fit": fm.fit_summary},
        history=fm.history, dataset=fm.dataset, wall_time_s=wall_time_s)


def check_sanity(cfg: EnergyConfig, totals: Mapping[str, pd.DataFrame], disk: Mapping[str, Mapping[str, float]],
                 ft: FilterTables, fm: FilterModel, metrics_json: Path) -> list[str]:
    """Assert :data:`SANITY` for ``cfg.profile`` on the notebook's outputs; returns the checks that passed."""
    b, passed = SANITY[cfg.profile], []
    mlp = totals["MNIST MLP"].loc["binary"]
    assert mlp["weight_compression"] >= b.min_weight_compression, f"MLP weight compression {mlp['weight_compression']:.2f}"
    assert mlp["access_reduction"] >= b.min_access_reduction, f"MLP access reduction {mlp['access_reduction']:.2f}"
    assert mlp["energy_reduction"] >= b.min_energy_reduction, f"MLP energy reduction {mlp['energy_reduction']:.2f}"
    passed.append(f"MNIST MLP binary vs fp32: weights {mlp['weight_compression']:.1f}x, accesses "
                  f"{mlp['access_reduction']:.1f}x, energy {mlp['energy_reduction']:.1f}x")
    for label, t in totals.items():
        e = t["energy_pj"]
        assert e["fp32"] > e["fp16"] > e["int8"] > e["binary"], f"{label}: energy not ordered fp32 > fp16 > int8 > binary"
    passed.append("energy ordered fp32 > fp16 > int8 > binary for every network")
    lo, hi = b.disk_ratio
    assert all(lo <= d["disk_ratio"] <= hi for d in disk.values()), {k: d["disk_ratio"] for k, d in disk.items()}
    passed.append(f"packed checkpoints {lo:g}-{hi:g}x smaller on disk")
    rep = ft.trained
    assert len(rep) == 6 and ((rep["unique_fraction"] > 0) & (rep["unique_fraction"] <= 1)).all()
    assert (rep["unique_fraction_sign"] <= rep["unique_fraction"]).all() and (rep["layer_unique"] <= 512).all()
    assert (rep["ops_reduction"] >= 1).all()
    passed.append(f"filter statistics consistent on {len(rep)} binary convs (<= 512 patterns, fractions in (0, 1])")
    err = fm.fit_summary.get("test_error_at_best")
    if err is not None:
        assert err < b.max_filter_net_error, f"the filter ConvNet did not learn: test error {err:.3f}"
        passed.append(f"filter ConvNet test error {err:.3f} < {b.max_filter_net_error}")
    assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
    passed.append(f"{display_path(metrics_json)} written")
    return passed


def findings(totals: Mapping[str, pd.DataFrame], disk: Mapping[str, Mapping[str, float]], sens: pd.DataFrame,
             ft: FilterTables, fm: FilterModel) -> list[str]:
    """What this run measured, in sentences (every number from the run; nothing typed in)."""
    bnn = [k for k in BNN_LABELS if k in totals]
    b = {k: totals[k].loc["binary"] for k in bnn}
    fmt = lambda col: " / ".join(f"{b[k][col]:.1f}x" for k in bnn)  # noqa: E731
    s = ft.summary().iloc[-1]
    auto = sens.loc["auto placement (smallest level that fits)", "binary"]
    sram = sens.loc["weights in 1M SRAM", "binary"]
    return [
        f"Weight memory, binary vs float32 ({' / '.join(bnn)}): {fmt('weight_compression')} (the paper's 32x).",
        f"64-bit memory accesses, weights + activations: {fmt('access_reduction')} — the 8-bit input, the float "
        "scores and the per-channel float BN values do not shrink 32x.",
        "Packed checkpoint on disk vs float state_dict: "
        + " / ".join(f"{disk[k]['disk_ratio']:.1f}x" for k in bnn if k in disk)
        + " (binary weights alone " + " / ".join(f"{disk[k]['binary_weight_ratio']:.1f}x" for k in bnn if k in disk)
        + ": fan-ins padded to whole 64-bit words).",
        f"Energy per inference, weights read once from DRAM: {fmt('energy_reduction')}; for the CIFAR-10 ConvNet "
        f"{auto:.0f}x when each tensor sits in the smallest memory that holds it and {sram:.0f}x with the weights in "
        "a 1M SRAM — 'more than 32 times' depends on where the weights live.",
        f"Filter repetition ({fm.dataset.get('name')}; {fm.source}): {100 * s['unique_fraction']:.1f}% unique 3x3 "
        f"filters per layer on average ({100 * s['unique_fraction_sign']:.1f}% with sign inverses), against "
        f"{100 * s['random_fraction']:.1f}% for random signs and {100 * s['at init']:.1f}% at initialisation; "
        f"XNOR-popcounts cut {s['ops_reduction']:.2f}x ({s['ops_reduction_sign']:.2f}x sign-invariant). "
        "The paper reports 42% and 'by 3' on its trained CIFAR-10 ConvNet.",
        *findings_trajectory(ft),
    ]


def findings_trajectory(ft: FilterTables) -> list[str]:
    """The sentence on how the unique fraction moved between the kept snapshots (or why there is none)."""
    t = ft.trajectory()
    if len(t) < 2:
        return ["No weight snapshots were kept for this ConvNet, so how the unique fraction moves with training "
                "is not shown (rerun the CIFAR-10 notebook: it keeps them)."]
    steps = ", ".join(f"epoch {int(r.epoch)}: {100 * r.unique_fraction:.1f}%" for r in t.itertuples())
    first, last = t.iloc[0], t.iloc[-1]
    return [f"Unique fraction through training (same run, mean over layers, exact counting): {steps}; random signs "
            f"give {100 * last['random_fraction']:.1f}%. Training moved it by "
            f"{100 * (last['unique_fraction'] - first['unique_fraction']):+.1f} points from epoch "
            f"{int(first['epoch'])} to epoch {int(last['epoch'])}."]

