"""Every figure function renders on fixture data with labelled axes (Agg backend, nothing shown)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from qnnlib.analysis.energy import EnergyAssumptions, account, scheme_totals  # noqa: E402
from qnnlib.analysis.filters import channel_unique_fractions, filter_repetition  # noqa: E402
from qnnlib.experiments import figures as F  # noqa: E402
from qnnlib.models.convnet import convnet  # noqa: E402
from qnnlib.models.mlp import mnist_mlp  # noqa: E402
from qnnlib.precision import Precision  # noqa: E402


def _labelled(fig) -> None:
    for ax in fig.axes:
        if ax.get_visible() and ax.has_data():
            assert ax.get_xlabel() is not None and ax.get_ylabel(), ax.get_title()
    fig.canvas.draw()
    plt.close(fig)


def test_training_curves_in_percent_with_paper_line() -> None:
    hist = pd.DataFrame([{"run": r, "seed": 1, "epoch": e, "metric": m, "value": v}
                         for r in ("a", "b") for e in (1, 2) for m, v in (("train_loss", 0.5 / e), ("valid_error", 0.2 / e))])
    fig = F.training_curves(hist, "t", paper_error={"BNN": 0.96})
    right = fig.axes[1]
    assert "(%)" in right.get_ylabel() and max(right.get_ylim()) > 15  # percent, not a fraction
    assert any("paper" in t.get_text() for t in right.get_legend().get_texts())
    _labelled(fig)


@pytest.fixture(scope="module")
def accounts():
    torch.manual_seed(0)
    zoo = {"MLP": (mnist_mlp(32, 2), (784,)), "Conv": (convnet((4, 4, 8), 8), (3, 32, 32)),
           "Conv W2A2": (convnet((4, 4, 8), 8, precision=Precision(2, 2)), (3, 32, 32))}
    acc = {k: account(m, s, EnergyAssumptions()) for k, (m, s) in zoo.items()}
    return acc, {k: scheme_totals(a) for k, a in acc.items()}


def test_energy_figures(accounts) -> None:
    acc, totals = accounts
    _labelled(F.energy_per_layer(acc, ("MLP", "Conv")))
    fig = F.energy_by_precision(totals, native={"Conv W2A2": ("Conv", "W2A2")})
    assert len([ax for ax in fig.axes if ax.has_data()]) == 2  # no duplicate W2A2 panel
    assert "W2A2" in [t.get_text() for t in fig.axes[1].get_xticklabels()]
    _labelled(fig)


def test_filter_histogram_shows_the_papers_42_percent() -> None:
    model = convnet((4, 4, 8), 8, in_channels=1, image_size=32)
    fig = F.filter_histogram(channel_unique_fractions(model), filter_repetition(model, (1, 32, 32)), "fixture")
    assert all(ax.get_xlim() == (0.0, 100.0) for ax in fig.axes[:2])
    assert any(abs(line.get_xdata()[0] - 42) < 1e-9 for line in fig.axes[0].lines)
    _labelled(fig)


def test_kernel_figures_have_readable_size_ticks() -> None:
    cpu = pd.DataFrame([{"size": n, "method": m, "Gop/s": g, "speedup_vs_torch": s}
                        for n in (256, 4096) for m, g, s in (("torch.matmul fp32", 200, 1.0),
                                                           ("binary_matmul cpu", 1500, 7.0),
                                                           ("binary incl. packing", 900, 4.0),
                                                           ("pack A and B", np.nan, np.nan))])
    hw = {"cpu": "x", "llvm_target": "y", "torch_threads": 2, "cpu_popcount": "z", "gpu": "g"}
    fig = F.gemm_cpu(cpu, hw)
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["256³", "4096³"]
    _labelled(fig)
    gpu = pd.DataFrame([{"size": n, "method": m, "Top/s": v} for n in (1024, 8192) for m, v in (("a", 1.0), ("b", 9.0))])
    _labelled(F.gemm_gpu(gpu, hw))
    mlp = pd.DataFrame([{"method": m, "images/s": v, "seconds": 1e4 / v, "speedup_vs_float": v / 2000}
                        for m, v in (("float", 2000), ("packed", 7000))])
    _labelled(F.mlp_inference(mlp, hw, 10_000, "784-3x4096-10"))


def test_filter_trajectory_and_perplexity_vs_bits() -> None:
    m = convnet((4, 4, 8), fc=8, in_channels=1, image_size=8)
    from qnnlib.analysis.filters import repetition_by_epoch  # noqa: PLC0415

    fig = F.filter_trajectory(repetition_by_epoch({0: m, 3: m}, (1, 8, 8)), "fake")
    assert "Filter repetition through training (fake)" in fig._suptitle.get_text()
    _labelled(fig)
    with pytest.raises(ValueError, match="no snapshots"):
        F.filter_trajectory(pd.DataFrame(), "fake")
    per_seed = pd.DataFrame([{"setting": f"{c}-{b}", "cell": c.upper(), "bits": b, "weight_bits": w, "act_bits": w,
                              "seed": s, "test_perplexity": 100.0 + w + s}
                             for c in ("lstm", "rnn") for b, w in (("W2/A2", 2), ("float", 32)) for s in (1, 2)])
    hist = pd.DataFrame([{"run": r, "seed": s, "epoch": e, "metric": "valid_perplexity", "value": 200.0 - e}
                         for r in per_seed["setting"].unique() for s in (1, 2) for e in (1, 2)])
    fig = F.perplexity_vs_bits(per_seed, hist, "fake", paper_lstm={"float": 97.0, "W4/A4": 100.0})
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["LSTM W2/A2", "LSTM float", "RNN W2/A2", "RNN float"]  # one entry per setting
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["W2/A2", "float"]
    _labelled(fig)


def _variants_frame() -> pd.DataFrame:
    rows = []
    for net in ("mlp", "convnet"):
        for name, method, bits in (("float", "log", 32), ("log-4", "log", 4), ("log-6", "log", 6),
                                   ("linear-4", "linear", 4), ("linear-6", "linear", 6), ("log-6-errors", "log", 6)):
            for seed in (1, 2):
                rows.append({"network": net, "variant": name, "label": name.upper(), "grad_method": method,
                             "bits": bits, "test_error": 10.0 + bits / 10 + seed, "dataset": "fashion-mnist"})
    return pd.DataFrame(rows)


def test_error_vs_grad_bits_draws_float_and_the_papers_loss() -> None:
    fig = F.error_vs_grad_bits(_variants_frame(), "t", paper_increase=4.23)
    mlp = fig.axes[0]
    assert "bits" in mlp.get_xlabel() and "(%)" in mlp.get_ylabel()
    assert [int(t) for t in mlp.get_xticks()] == [4, 6]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == ["log quantizer", "linear quantizer", "float gradients (± std)"]
    assert any("paper's loss at 6 bits (4.2 pt" in lab for lab in labels)
    assert any("errors between layers only" in lab for lab in labels)
    _labelled(fig)


def test_gradient_histograms_report_the_flushed_share() -> None:
    from qnnlib.gradquant import quantize_tensor  # noqa: PLC0415

    g = torch.randn(2000) * torch.exp2(-10 * torch.rand(2000))
    fig = F.gradient_histograms(g, {m: quantize_tensor(g, 4, m) for m in ("log", "linear")}, "t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == "float error (2000 non-zero entries)"
    assert labels[1].startswith("log: ") and labels[2].startswith("linear: ") and "flushed to 0" in labels[2]
    assert "log2" in fig.axes[0].get_xlabel()
    _labelled(fig)


def test_ablation_and_multiplication_figures() -> None:
    frame = _variants_frame()
    fig = F.ablation_cells(frame, "t")
    assert len(fig.axes) == 2 and "(%)" in fig.axes[0].get_xlabel() and "n = 2" in fig.axes[0].get_title()
    _labelled(fig)
    counts = pd.DataFrame([{"network": n, "variant": v, "label": v, "multiplications": m, "shifts": s}
                           for n in ("mlp", "convnet") for v, m, s in (("bn-adam", 10**7, 0), ("sbn", 10**6, 10**7))])
    fig = F.multiplications_per_step(counts, "t")
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].patches) >= 3  # the zero shifts bar is dropped
    _labelled(fig)
