"""The notebooks' figures: labelled axes with units, percentages where the tables use percentages, the paper's
value drawn where one exists, readable ticks at the real sizes, legends beside the data, no duplicate panels.

Every function takes the tables a notebook already has and returns a ``matplotlib`` figure (the notebook
saves and shows it); ``tests/experiments/test_figures.py`` renders each on fixture data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

__all__ = ["training_curves", "energy_per_layer", "energy_by_precision", "filter_histogram", "gemm_cpu",
           "gemm_gpu", "mlp_inference", "filter_trajectory", "perplexity_vs_bits", "error_vs_grad_bits",
           "gradient_histograms", "ablation_cells", "multiplications_per_step", "imagenet_curves"]

_SCHEMES = ("fp32", "fp16", "int8", "binary")


def _legend_outside(ax: plt.Axes, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _legend_below(ax: plt.Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(handles), frameon=False)


def training_curves(hist: pd.DataFrame, title: str, paper_error: Mapping[str, float] | None = None) -> Figure:
    """Training loss and validation error (%) per epoch for every run (``runner.history_frame`` output).

    ``paper_error``: label → the paper's test error in % (drawn as a dotted line when the dataset is the
    paper's; pass ``None`` for a stand-in dataset).
    """
    sns.set_theme(style="whitegrid")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    loss = hist[hist.metric == "train_loss"]
    err = hist[hist.metric == "valid_error"].assign(value=lambda d: 100 * d["value"])
    sns.lineplot(data=loss, x="epoch", y="value", hue="run", marker="o", ax=left, legend=False)
    sns.lineplot(data=err, x="epoch", y="value", hue="run", marker="o", ax=right)
    left.set(xlabel="epoch", ylabel="training loss (square hinge)", title="training loss")
    right.set(xlabel="epoch", ylabel="validation error (%)", title="validation error")
    for label, value in (paper_error or {}).items():
        right.axhline(value, ls=":", color="k", lw=1, label=f"paper: {label} {value:.2f}%")
    _legend_outside(right)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def energy_per_layer(accounts: Mapping[str, pd.DataFrame], labels: Sequence[str],
                     schemes: Sequence[str] = _SCHEMES) -> Figure:
    """Energy per inference (µJ) and weight memory (KiB) of every conv/linear layer, per precision."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(2, len(labels), figsize=(7.5 * len(labels), 8), squeeze=False)
    for col, label in enumerate(labels):
        a = accounts[label]
        d = a[a["kind"].isin(["conv", "linear"]) & a["scheme"].isin(schemes)].copy()
        d["energy (µJ)"] = d["energy_pj"] / 1e6
        d["weights (KiB)"] = (d["weight_bytes"] + d["aux_bytes"]) / 1024
        for row, y in enumerate(("energy (µJ)", "weights (KiB)")):
            ax = axes[row, col]
            sns.barplot(data=d, x="layer", y=y, hue="scheme", hue_order=list(schemes), ax=ax)
            ax.set(yscale="log", xlabel="layer", ylabel=f"{y}, log scale",
                   title=f"{label}: {'energy per inference (Horowitz 45 nm)' if row == 0 else 'weights + bias/BN'}")
            ax.tick_params(axis="x", rotation=45)
            if col == len(labels) - 1:
                _legend_outside(ax, "precision")
            elif ax.get_legend() is not None:
                ax.get_legend().remove()
    fig.tight_layout()
    return fig


def energy_by_precision(totals: Mapping[str, pd.DataFrame], native: Mapping[str, tuple[str, str]] | None = None,
                        schemes: Sequence[str] = _SCHEMES) -> Figure:
    """Energy per inference (µJ) by component for each architecture and precision, one panel per architecture.

    ``native``: extra bars from other networks' ``native`` scheme, label → (architecture panel, bar name); e.g.
    the CIFAR-10 ConvNet with 2-bit weights and activations as a "W2A2" bar in the CIFAR-10 panel (its uniform
    schemes would repeat the binary network's panel).
    """
    native = dict(native or {})
    panels = [k for k in totals if k not in native]
    rows = []
    for label in panels:
        for scheme in schemes:
            t = totals[label].loc[scheme]
            rows += [{"model": label, "precision": scheme, "component": c, "energy (µJ)": t[k] / 1e6}
                     for c, k in (("compute", "compute_pj"), ("weight memory", "weight_mem_pj"),
                                  ("activation memory", "act_mem_pj"))]
    for label, (panel, name) in native.items():
        t = totals[label].loc["native"]
        rows += [{"model": panel, "precision": name, "component": c, "energy (µJ)": t[k] / 1e6}
                 for c, k in (("compute", "compute_pj"), ("weight memory", "weight_mem_pj"),
                              ("activation memory", "act_mem_pj"))]
    df = pd.DataFrame(rows)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, label in zip(axes[0], panels):
        sns.barplot(data=df[df["model"] == label], x="precision", y="energy (µJ)", hue="component", ax=ax)
        ax.set(yscale="log", xlabel="precision", ylabel="energy per inference (µJ), log scale", title=label)
        if ax is not axes[0, -1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    _legend_outside(axes[0, -1])
    fig.suptitle("Energy per inference by component and precision (Horowitz 45 nm)")
    fig.tight_layout()
    return fig


def filter_histogram(per_channel: pd.DataFrame, repetition: pd.DataFrame, dataset: str,
                     paper_percent: float = 42.0) -> Figure:
    """Unique 3×3 filters per input channel (% of output channels), exact and sign-invariant counting, with the
    random-sign expectation of each layer (dashed) and the paper's 42% per-layer average (dotted)."""
    sns.set_theme(style="whitegrid")
    d = per_channel.assign(unique=lambda x: 100 * x["unique_fraction"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (counting, col) in zip(axes, (("exact", "random_fraction"), ("sign-invariant", "random_fraction_sign"))):
        sns.histplot(data=d[d["counting"] == counting], x="unique", hue="layer", bins=20, binrange=(0, 100),
                     element="step", stat="density", common_norm=False, ax=ax)
        for v in sorted(repetition[col].unique()):
            ax.axvline(100 * v, color="grey", ls="--", lw=0.8)
        ax.axvline(paper_percent, color="k", ls=":", lw=1.2)
        ax.set(xlim=(0, 100), xlabel="unique filters per input channel (% of output channels)",
               ylabel="density", title=f"{counting} counting")
    axes[0].get_legend().remove()
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="layer")
    fig.suptitle(f"Unique binary 3x3 filters per input channel ({dataset}). Dashed grey: expected with random signs, "
                 f"one per layer; dotted black: the paper's {paper_percent:g}% (CIFAR-10, mean over layers)", fontsize=10)
    fig.tight_layout()
    return fig


def filter_trajectory(by_epoch: pd.DataFrame, dataset: str, paper_percent: float = 42.0) -> Figure:
    """Unique binary 3×3 filters (% per input channel, mean over output channels) against the training epoch, one
    line per layer and the mean over layers (black), exact and sign-invariant counting; dashed: random signs
    (mean over layers); dotted: the paper's 42% on its trained CIFAR-10 ConvNet."""
    if by_epoch.empty:
        raise ValueError("no snapshots: filter_trajectory needs filters.repetition_by_epoch rows")
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (counting, col, rnd) in zip(axes, (("exact", "unique_fraction", "random_fraction"),
                                               ("sign-invariant", "unique_fraction_sign", "random_fraction_sign"))):
        d = by_epoch.assign(percent=lambda x, c=col: 100 * x[c])
        sns.lineplot(data=d, x="epoch", y="percent", hue="layer", marker="o", ax=ax, lw=1)
        mean = d.groupby("epoch", as_index=False)[["percent", rnd]].mean()
        ax.plot(mean["epoch"], mean["percent"], color="k", lw=2.2, marker="s", label="mean over layers")
        ax.plot(mean["epoch"], 100 * mean[rnd], color="grey", ls="--", lw=1, label="random signs (mean)")
        ax.axhline(paper_percent, color="k", ls=":", lw=1.2, label=f"paper {paper_percent:g}% (CIFAR-10)")
        ax.set(xlabel="epoch (0 = initialisation)", ylabel="unique filters per input channel (%)", ylim=(0, 100),
               title=f"{counting} counting")
    axes[0].get_legend().remove()
    _legend_outside(axes[1])
    fig.suptitle(f"Filter repetition through training ({dataset})", fontsize=11)
    fig.tight_layout()
    return fig


def perplexity_vs_bits(per_seed: pd.DataFrame, hist: pd.DataFrame, title: str,
                       paper_lstm: Mapping[str, float] | None = None) -> Figure:
    """Left: test perplexity (log scale) per bit width, one line per cell, seeds as points, the paper's LSTM values
    as black crosses when given. Right: validation perplexity per epoch of every setting and seed (colour: bits,
    line style: cell, later seeds lighter)."""
    sns.set_theme(style="whitegrid")
    order = [b for b in dict.fromkeys(per_seed.sort_values(["weight_bits", "act_bits"])["bits"])]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.3))
    sns.pointplot(data=per_seed, x="bits", y="test_perplexity", hue="cell", order=order, errorbar=None, ax=ax,
                  markers="o", linestyles="-")
    sns.stripplot(data=per_seed, x="bits", y="test_perplexity", hue="cell", order=order, ax=ax, dodge=False,
                  alpha=0.5, size=4, legend=False)
    if paper_lstm:
        pts = [(order.index(b), v) for b, v in paper_lstm.items() if b in order]
        if pts:
            ax.scatter(*zip(*pts), marker="x", color="k", s=60, zorder=5, label="paper, LSTM 300")
    ax.set(yscale="log", xlabel="weight / activation bits", ylabel="test perplexity (log scale)",
           title="test perplexity at the best-validation epoch")
    _legend_outside(ax, "cell")
    valid = hist[hist["metric"] == "valid_perplexity"]
    bits_of = dict(zip(per_seed["setting"], per_seed["bits"]))
    cell_of = dict(zip(per_seed["setting"], per_seed["cell"]))
    colors = dict(zip(order, sns.color_palette("viridis", len(order))))
    styles = {c: s for c, s in zip(sorted(set(cell_of.values())), ("-", "--", ":"))}
    for (run, seed), g in valid.groupby(["run", "seed"], sort=False):
        first = seed == valid[valid["run"] == run]["seed"].min()  # one legend entry per setting, seeds alike
        ax2.plot(g["epoch"], g["value"], color=colors.get(bits_of.get(run)), ls=styles.get(cell_of.get(run), "-"),
                 lw=1.4, alpha=1.0 if first else 0.5, label=f"{cell_of.get(run, run)} {bits_of.get(run, '')}"
                 if first else None)
    ax2.set(yscale="log", xlabel="epoch", ylabel="validation perplexity (log scale)", title="validation perplexity")
    _legend_outside(ax2, "setting")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _size_labels(sizes: Sequence[int]) -> list[str]:
    return [f"{int(n)}³" for n in sizes]


def gemm_cpu(cpu: pd.DataFrame, hw: Mapping[str, object]) -> Figure:
    """Binary GEMM on the CPU: throughput (10⁹ ops/s) and speed-up over ``torch.matmul`` fp32, by size n³."""
    sns.set_theme(style="whitegrid")
    sizes = sorted(cpu["size"].unique())
    d = cpu.assign(n=lambda x: x["size"].map(dict(zip(sizes, _size_labels(sizes)))))
    order = _size_labels(sizes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8))
    sns.pointplot(data=d[d.method != "pack A and B"], x="n", y="Gop/s", hue="method", order=order, ax=left)
    left.set(yscale="log", xlabel="matrix size (M = N = K)", ylabel="10⁹ ops/s (log scale)",
             title="throughput (2·n³ bit-ops or FLOPs per second)")
    _legend_below(left)
    sns.barplot(data=d[d.method.str.startswith("binary")], x="n", y="speedup_vs_torch", hue="method", order=order,
                ax=right)
    right.axhline(1, color="k", lw=0.8)
    right.set(xlabel="matrix size (M = N = K)", ylabel="speed-up over torch.matmul fp32 (×)",
              title="speed-up, same run")
    _legend_below(right)
    fig.suptitle(f"CPU: {hw.get('cpu')} ({hw.get('llvm_target')}), {hw.get('torch_threads')} threads; popcount: "
                 f"{hw.get('cpu_popcount')}. Paper (GPU, not comparable): 23× its baseline, 3.4× cuBLAS on a GTX750",
                 fontsize=9)
    fig.tight_layout()
    return fig


def gemm_gpu(gpu: pd.DataFrame, hw: Mapping[str, object]) -> Figure:
    """GPU GEMM throughput (10¹² ops/s) by size n³ for every kernel, with the paper's sizes as ticks."""
    sns.set_theme(style="whitegrid")
    sizes = sorted(gpu["size"].unique())
    d = gpu.assign(n=lambda x: x["size"].map(dict(zip(sizes, _size_labels(sizes)))))
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.pointplot(data=d, x="n", y="Top/s", hue="method", order=_size_labels(sizes), ax=ax)
    ax.set(yscale="log", xlabel="matrix size (M = N = K)", ylabel="throughput (10¹² ops/s), log scale",
           title=f"{hw.get('gpu')}: binary vs float GEMM (paper: XNOR 23× its baseline, 3.4× cuBLAS, GTX750)")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def mlp_inference(mlp: pd.DataFrame, hw: Mapping[str, object], n_images: int, arch: str,
                  paper_speedup: float = 7.0) -> Figure:
    """Images per second of each inference method, annotated with its time and speed-up over float32."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(10, 3.6))
    sns.barplot(data=mlp, y="method", x="images/s", hue="method", legend=False, ax=ax)
    top = float(mlp["images/s"].max())
    for i, r in mlp.reset_index().iterrows():
        ax.text(r["images/s"] + 0.01 * top, i, f"{r['seconds']:.2f} s, {r['speedup_vs_float']:.1f}×", va="center",
                fontsize=8)
    ax.set(xlim=(0, 1.25 * top), xlabel="images per second (higher is better)", ylabel="inference method",
           title=f"MLP {arch}, {n_images} images, CPU {hw.get('cpu')} ({hw.get('torch_threads')} threads); "
                 f"paper: {paper_speedup:g}× XNOR vs baseline kernel on a GTX750")
    fig.tight_layout()
    return fig


def _per_network(per_seed: pd.DataFrame, width: float, height: float) -> tuple[Figure, list[plt.Axes], list[str]]:
    nets = list(dict.fromkeys(per_seed["network"]))
    fig, axes = plt.subplots(1, len(nets), figsize=(width * len(nets), height), squeeze=False)
    return fig, list(axes[0]), nets


_NET_LABELS = {"mlp": "MLP", "convnet": "ConvNet"}


def error_vs_grad_bits(per_seed: pd.DataFrame, title: str, float_name: str = "float",
                       paper_increase: float | None = None) -> Figure:
    """Test error (%) against gradient bits, one line per quantizer (mean, seeds as points), one panel per network;
    the float-gradient network as a dashed line with its ±std band. ``per_seed``: notebook 06's per-seed table
    (columns network, variant, grad_method, bits, test_error, dataset). ``paper_increase``: the paper's error
    increase at 6 bits (points), drawn as a cross that far above the float line."""
    sns.set_theme(style="whitegrid")
    fig, axes, nets = _per_network(per_seed, 5.0, 4.0)
    palette = dict(zip(("log", "linear"), sns.color_palette("deep", 2)))
    for ax, net in zip(axes, nets):
        sel = per_seed[per_seed["network"] == net]
        sweep = sel[(sel["variant"] != float_name) & ~sel["variant"].str.endswith(("-errors", "-params"))]
        for method, g in sweep.groupby("grad_method", sort=False):
            mean = g.groupby("bits")["test_error"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker="o", color=palette.get(method), label=f"{method} quantizer")
            ax.scatter(g["bits"], g["test_error"], color=palette.get(method), alpha=0.4, s=14)
        flt = sel[sel["variant"] == float_name]["test_error"]
        if not flt.empty:
            m = float(flt.mean())
            s = float(flt.std(ddof=1)) if len(flt) > 1 else 0.0
            ax.axhline(m, ls="--", color="k", lw=1, label="float gradients (± std)")
            ax.text(1.0, m, f" {m:.2f}%", transform=ax.get_yaxis_transform(), va="center", fontsize=9)
            if s:
                ax.axhspan(m - s, m + s, color="k", alpha=0.08)
            if paper_increase is not None:
                ax.plot([6], [m + paper_increase], marker="x", color="k", ls="", ms=8,
                        label=f"float + the paper's loss at 6 bits ({paper_increase:.1f} pt, AlexNet)")
        for part, marker in (("-errors", "^"), ("-params", "s")):
            one = sel[sel["variant"].str.endswith(part)]
            if not one.empty:
                ax.scatter(one["bits"], one["test_error"], marker=marker, color="tab:gray", zorder=4,
                           label=f"log, {'errors between layers' if part == '-errors' else 'parameter gradients'} only")
        ax.set_xticks(sorted(set(sel["bits"]) - {32}) or [6])
        ax.set(xlabel="gradient bits", ylabel="test error (%)",
               title=f"{_NET_LABELS.get(net, net)} on {sel['dataset'].iloc[0]}")
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen), loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def gradient_histograms(g, quantized: Mapping[str, object], title: str) -> Figure:
    """Histogram of log2|g| of one layer's back-propagated error (grey) and of each quantized version (steps),
    with the share of entries each quantizer flushes to zero in the legend. ``g`` and the values of ``quantized``
    are tensors of the same shape."""
    import torch  # noqa: PLC0415 - figures otherwise need no torch

    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    g = torch.as_tensor(g).detach().double().flatten()
    nz = g != 0
    lg = torch.log2(g[nz].abs()).numpy()
    # quarter-octave bins centred on the integers, so the log quantizer's powers of two sit mid-bin
    lo, hi = math.floor(float(lg.min())), math.ceil(float(lg.max()))
    bins = [lo - 0.125 + 0.25 * i for i in range(4 * (hi - lo) + 2)]
    ax.hist(lg, bins=bins, color="tab:gray", alpha=0.5, label=f"float error ({int(nz.sum())} non-zero entries)")
    for (label, q), color in zip(quantized.items(), sns.color_palette("deep", len(quantized))):
        q = torch.as_tensor(q).detach().double().flatten()
        flushed = 100.0 * float(((q == 0) & nz).sum()) / int(nz.sum())
        kept = q[q != 0]
        ax.hist(torch.log2(kept.abs()).numpy(), bins=bins, histtype="step", lw=1.6, color=color,
                label=f"{label}: {flushed:.1f}% flushed to 0")
    ax.set(xlabel="log2 |gradient entry|", ylabel="entries", title=title)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def ablation_cells(per_seed: pd.DataFrame, title: str) -> Figure:
    """Test error (%) of every ablation cell, one panel per network: mean ± std (bar and whisker) and every
    seed as a point. ``per_seed``: notebook 07's per-seed table (columns network, variant, label, test_error,
    dataset)."""
    sns.set_theme(style="whitegrid")
    fig, axes, nets = _per_network(per_seed, 5.4, 0.55 * per_seed["variant"].nunique() + 1.6)
    for ax, net in zip(axes, nets):
        sel = per_seed[per_seed["network"] == net]
        order = list(dict.fromkeys(sel["label"]))
        sns.pointplot(data=sel, y="label", x="test_error", order=order, errorbar="sd", linestyles="none",
                      color="k", markers="D", capsize=0.25, ax=ax)
        sns.stripplot(data=sel, y="label", x="test_error", order=order, hue="label", palette="deep", size=5,
                      alpha=0.7, legend=False, ax=ax)
        ref = sel[sel["variant"] == sel["variant"].iloc[0]]["test_error"].mean()
        ax.axvline(ref, ls=":", color="k", lw=1)
        ax.set(xlabel="test error (%), mean ± std, seeds as points", ylabel="cell" if ax is axes[0] else " ",
               title=f"{_NET_LABELS.get(net, net)} on {sel['dataset'].iloc[0]} (n = {sel.groupby('variant').size().min()})")
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def multiplications_per_step(counts: pd.DataFrame, title: str) -> Figure:
    """Multiplications and shifts of one training step per variant (log scale), one panel per network
    (``counts``: :func:`qnnlib.experiments.variants.multiplications` output)."""
    sns.set_theme(style="whitegrid")
    fig, axes, nets = _per_network(counts, 5.4, 0.5 * counts["variant"].nunique() + 1.6)
    for ax, net in zip(axes, nets):
        sel = counts[counts["network"] == net]
        long = sel.melt(id_vars=["label"], value_vars=["multiplications", "shifts"], var_name="operation",
                        value_name="count")
        long = long[long["count"] > 0]
        sns.barplot(data=long, y="label", x="count", hue="operation", order=list(dict.fromkeys(sel["label"])),
                    ax=ax, palette={"multiplications": "tab:red", "shifts": "tab:blue"})
        ax.set(xscale="log", xlabel="operations per training step (log scale)", ylabel="variant" if ax is axes[0] else " ",
               title=_NET_LABELS.get(net, net))
        ax.xaxis.set_minor_formatter(NullFormatter())
        _legend_below(ax)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def imagenet_curves(docs: Sequence[Mapping[str, object]], title: str,
                    paper_top1: Mapping[str, float] | None = None) -> Figure:
    """Training loss (cross-entropy) and validation top-1 / top-5 accuracy (%) per epoch of every ImageNet run
    (the run documents of :func:`qnnlib.experiments.imagenet.launch`); ``paper_top1``: label -> the paper's top-1
    (drawn as a dotted line; pass it only when the data is ImageNet itself)."""
    sns.set_theme(style="whitegrid")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for d, color in zip(docs, sns.color_palette("deep", len(docs))):
        hist = pd.DataFrame(d["history"])  # type: ignore[arg-type]
        left.plot(hist["epoch"], hist["train_loss"], marker="o", color=color, label=str(d["label"]))
        right.plot(hist["epoch"], 100 * (1 - hist["valid_error"]), marker="o", color=color, label=f"{d['label']} top-1")
        right.plot(hist["epoch"], 100 * (1 - hist["valid_top5"]), marker="s", ls="--", color=color,
                   label=f"{d['label']} top-5")
    for label, value in (paper_top1 or {}).items():
        right.axhline(value, ls=":", color="k", lw=1, label=f"paper: {label} top-1 {value:g}%")
    left.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="training loss")
    right.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation top-1 / top-5")
    _legend_outside(right)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
