"""Notebook 00: an interactive tour of qnnlib — the quantizers and their straight-through estimators,
shift-based batch normalization, shift-based AdaMax and the XNOR-popcount product.

Every function the tour notebook calls lives here (notebooks hold no logic):

* **data functions** return pandas DataFrames or dicts and are tested against closed forms:
  :func:`binarization_frame`, :func:`stochastic_binarization_frame`, :func:`linear_quant_frame`,
  :func:`log_quant_frame`, :func:`batchnorm_frame`, :func:`optimizer_frame`, :func:`bitpack_frame`,
  :func:`xnor_popcount_product`;
* **plot functions** (``plot_*``) turn those frames into matplotlib figures with labelled axes; they close
  the figure in pyplot before returning it, so a figure is shown once, by whoever displays it;
* **views** (``*_view``) compute and plot in one call from plain numbers: what :func:`interactive`
  attaches sliders to;
* :func:`interactive`, :class:`Slider` — ipywidgets sliders in a live front end, one static call otherwise;
* the config (:class:`TourConfig`, :data:`PROFILES`, :data:`SANITY`) and :func:`check_sanity`.

The tour writes no metrics JSON: it reproduces no table of the paper, it shows the building blocks.

Widgets: sliders when :func:`qnnlib.progress.widgets_available` (the library's one rule: a live Jupyter front
end with ipywidgets, not a headless run), one static call with the defaults otherwise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from qnnlib.norm import ShiftBatchNorm1d
from qnnlib.optim import ShiftAdaMax
from qnnlib.progress import widgets_available
from qnnlib.quantize import (
    ap2,
    ap2_ste,
    binarize,
    hard_sigmoid,
    linear_levels,
    linear_quant,
    linear_quant_ste,
    log_quant,
    sign,
)
from qnnlib.runtime.binary_gemm import binary_matmul
from qnnlib.runtime.bitpack import pack, unpack

__all__ = [
    "TourConfig", "Sanity", "PROFILES", "SANITY", "Slider",
    "binarization_frame", "stochastic_binarization_frame", "linear_quant_frame", "log_quant_frame",
    "batchnorm_frame", "batchnorm_summary", "least_squares_problem", "optimizer_frame", "random_pm1",
    "bitpack_frame", "xnor_popcount_product",
    "plot_binarization", "plot_linear_quant", "plot_log_quant", "plot_batchnorm", "plot_optimizers",
    "binarization_view", "linear_quant_view", "log_quant_view", "batchnorm_view", "optimizer_view",
    "interactive", "check_sanity",
]



# ------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TourConfig:
    """Notebook 00: the defaults of every section (each field is a notebook parameter)."""

    profile: str
    seed: int = 0
    bits: int = 2  # k of the k-bit linear quantizer
    log_bits: int = 4  # k of the log quantizer (one sign bit, one zero code)
    n_draws: int = 20000  # draws per point for the stochastic binarization's empirical mean
    batch: int = 64  # batch size of the batch-norm comparison
    adamax_steps: int = 200  # optimizer steps on the toy least-squares problem
    lr: float = 2.0**-5  # learning rate of both optimizers
    pack_k: int = 40  # length K of the packed ±1 vectors (more than one 32-bit word: shows the padding)

    def __post_init__(self) -> None:
        for f, lo in (("bits", 1), ("log_bits", 1), ("n_draws", 2), ("batch", 2), ("adamax_steps", 1),
                      ("pack_k", 1), ("seed", 0)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{f} must be an integer >= {lo}, got {v!r}")
        if self.bits > 16 or self.log_bits > 16:
            raise ValueError(f"bits and log_bits must be <= 16, got {self.bits}, {self.log_bits}")
        if not (isinstance(self.lr, float) and 0 < self.lr < 1):
            raise ValueError(f"lr must be a number in (0, 1), got {self.lr!r}")


# Same content at every profile; smoke only takes fewer draws and steps.
PROFILES: dict[str, TourConfig] = {
    "smoke": TourConfig("smoke", n_draws=4000, adamax_steps=60),
    "quick": TourConfig("quick"),
    "paper": TourConfig("paper", n_draws=100000, adamax_steps=500),
}


@dataclass(frozen=True)
class Sanity:
    """What notebook 00 checks at the end."""

    max_z: float  # every point: |P̂(+1) − σ(x)| ≤ max_z standard errors (Bonferroni over the grid; the pool: 3σ)
    max_loss_ratio: float  # shift-AdaMax: final loss ≤ max_loss_ratio · initial loss
    sbn_ratio_bound: float  # SBN/BN output ratio per feature within 2^(±bound) (two AP2 roundings, each ≤ 2^0.5)


_SANITY = Sanity(max_z=4.5, max_loss_ratio=0.5, sbn_ratio_bound=0.75)
SANITY: dict[str, Sanity] = {"smoke": _SANITY, "quick": _SANITY, "paper": _SANITY}


# -------------------------------------------------------------------------------------- quantizers
def _grid(lo: float, hi: float, n: int) -> torch.Tensor:
    """``n`` points from lo to hi (float64), with 0 exactly on the grid when the range holds it."""
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    if lo < 0 < hi:
        g[torch.argmin(g.abs())] = 0.0
    return g


def _ste_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """∂(Σ f(x))/∂x by autograd, i.e. the gradient the STE passes back for an upstream gradient g = 1."""
    x = x.detach().clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad.detach()


def binarization_frame(x: torch.Tensor | None = None) -> pd.DataFrame:
    """Deterministic binarization (Eq. 1), the hard sigmoid (Eq. 3) and the STE gradient (Eq. 4).

    Columns: ``x``; ``sign`` (+1 if x ≥ 0 else −1, so sign(0) = +1); ``binarize`` (the STE function's
    forward pass, equal to ``sign``); ``hard_sigmoid`` = clip((x+1)/2, 0, 1) = P(x_b = +1) of Eq. 2;
    ``expected`` = 2σ(x) − 1 = clip(x, −1, 1), the mean of the stochastic binarization; ``ste_grad`` =
    ∂binarize/∂x by autograd = 1{|x| ≤ 1}.  Default grid: −2 … 2 in steps of 0.01 (0 included).
    """
    x = _grid(-2.0, 2.0, 401) if x is None else x.detach().double()
    hs = hard_sigmoid(x)
    return pd.DataFrame({
        "x": x.numpy(), "sign": sign(x).numpy(), "binarize": binarize(x).detach().numpy(),
        "hard_sigmoid": hs.numpy(), "expected": (2 * hs - 1).numpy(),
        "ste_grad": _ste_grad(binarize, x).numpy(),
    })


def stochastic_binarization_frame(n_draws: int, seed: int = 0, x: torch.Tensor | None = None) -> pd.DataFrame:
    """Stochastic binarization (Eq. 2): the empirical P(x_b = +1) over ``n_draws`` draws vs σ(x) (Eq. 3).

    Draws come from ``torch.Generator().manual_seed(seed)``.  Columns: ``x``, ``hard_sigmoid``,
    ``p_plus`` (fraction of +1 draws), ``mean`` (mean of the ±1 draws = 2·p_plus − 1), ``std_err`` =
    sqrt(σ(1−σ)/n), ``z`` = (p_plus − σ)/std_err (0 where std_err = 0, i.e. σ ∈ {0, 1}, where the
    draws are certain).  Default grid: −1.5 … 1.5 in steps of 0.1.
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise ValueError(f"n_draws must be an integer >= 2, got {n_draws!r}")
    x = _grid(-1.5, 1.5, 31) if x is None else x.detach().double()
    gen = torch.Generator().manual_seed(int(seed))
    draws = binarize(x.float().expand(n_draws, -1).contiguous(), stochastic=True, generator=gen)
    p_plus = ((draws.double() + 1) / 2).mean(0)
    hs = hard_sigmoid(x)
    se = torch.sqrt(hs * (1 - hs) / n_draws)
    z = torch.where(se > 0, (p_plus - hs) / se.clamp_min(1e-300), torch.where(p_plus == hs, 0.0, math.inf))
    return pd.DataFrame({"x": x.numpy(), "hard_sigmoid": hs.numpy(), "p_plus": p_plus.numpy(),
                         "mean": (2 * p_plus - 1).numpy(), "std_err": se.numpy(), "z": z.numpy(),
                         "n_draws": n_draws})


def linear_quant_frame(bits: int, min_v: float = -1.0, max_v: float = 1.0,
                       x: torch.Tensor | None = None) -> pd.DataFrame:
    """k-bit linear quantization on [min_v, max_v] (2^k levels, both ends included) and its STE.

    Columns: ``x``, ``q`` = linear_quant(x, bits, min_v, max_v), ``ste_grad`` = ∂linear_quant_ste/∂x =
    1{min_v ≤ x ≤ max_v} (activations: the gradient is cancelled outside the range).  The default grid
    reaches half a range beyond each end, finely enough to hit every level.
    """
    if x is None:
        half = 0.5 * (max_v - min_v)
        x = _grid(min_v - half, max_v + half, max(1001, 4 * 2**bits + 1))
    x = x.detach().double()
    q = linear_quant(x, bits, min_v, max_v)
    g = _ste_grad(lambda t: linear_quant_ste(t, bits, min_v, max_v), x)
    return pd.DataFrame({"x": x.numpy(), "q": q.numpy(), "ste_grad": g.numpy(), "bits": bits,
                         "min_v": float(min_v), "max_v": float(max_v)})


def log_quant_frame(bits: int, fsr: int = 0, x: torch.Tensor | None = None) -> pd.DataFrame:
    """Log quantization (sign · 2^e, e clipped to the 2^(k−1) − 1 exponents ≤ fsr) and AP2 with its STE.

    Columns: ``x``, ``log_quant``, ``ap2`` = sign(x)·2^round(log2|x|) (AP2(0) = 0), ``ap2_ste_grad`` =
    ∂ap2_ste/∂x = 1 (the identity STE used by shift-based BN and AdaMax).  Default grid −2 … 2.
    """
    x = _grid(-2.0, 2.0, 801) if x is None else x.detach().double()
    return pd.DataFrame({"x": x.numpy(), "log_quant": log_quant(x, bits, fsr).numpy(), "ap2": ap2(x).numpy(),
                         "ap2_ste_grad": _ste_grad(ap2_ste, x).numpy(), "bits": bits, "fsr": fsr})


# ------------------------------------------------------------------------------------- batch norm
_BN_FEATURES = ((0.0, 0.3), (2.0, 1.0), (-1.0, 3.0), (5.0, 10.0))  # (mean, std) of each feature's inputs


def batchnorm_frame(batch: int, seed: int = 0) -> pd.DataFrame:
    """Vanilla BN vs shift-based BN (Alg. 3) on one batch, both in training mode and without affine.

    The batch has ``batch`` samples of 4 features drawn from N(μ_f, s_f²) with (μ_f, s_f) =
    (0, 0.3), (2, 1), (−1, 3), (5, 10) (seeded).  Long format, one row per (sample, feature): ``x``,
    ``bn`` = (x − μ_B)/sqrt(σ²_B + ε), ``sbn`` = (x − μ_B)·AP2((mean(C·AP2(C)) + ε)^(−1/2)), ``diff`` = sbn − bn.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise ValueError(f"batch must be an integer >= 2 (batch statistics), got {batch!r}")
    gen = torch.Generator().manual_seed(int(seed))
    mu = torch.tensor([m for m, _ in _BN_FEATURES])
    sd = torch.tensor([s for _, s in _BN_FEATURES])
    x = torch.randn(batch, len(_BN_FEATURES), generator=gen) * sd + mu
    with torch.no_grad():
        bn = nn.BatchNorm1d(x.shape[1], affine=False).train()(x)
        sbn = ShiftBatchNorm1d(x.shape[1], affine=False).train()(x)
    n, f = x.shape
    return pd.DataFrame({"sample": np.repeat(np.arange(n), f), "feature": np.tile(np.arange(f), n),
                         "x": x.reshape(-1).numpy(), "bn": bn.reshape(-1).numpy(), "sbn": sbn.reshape(-1).numpy(),
                         "diff": (sbn - bn).reshape(-1).numpy()})


def batchnorm_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per feature: input mean and std, std of the BN and SBN outputs, and the SBN/BN scale ratio.

    Both outputs are the same centred values times one factor per feature, so ``ratio`` = std(sbn)/std(bn)
    is that factor's ratio: within 2^(±0.75) (AP2 of the variance term ≤ 2^0.5, AP2 of 1/σ ≤ 2^0.5, the
    first entering under a square root).
    """
    g = df.groupby("feature")
    out = pd.DataFrame({"x_mean": g.x.mean(), "x_std": g.x.std(ddof=0), "bn_std": g.bn.std(ddof=0),
                        "sbn_std": g.sbn.std(ddof=0)})
    out["ratio"] = out.sbn_std / out.bn_std
    out["log2_ratio"] = np.log2(out.ratio)
    return out.reset_index()


# -------------------------------------------------------------------------------------- optimizers
def least_squares_problem(seed: int, n: int = 64, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The toy problem of :func:`optimizer_frame`: ``A`` (n×d) and ``b = A w* + 0.1·noise``, seeded (float64)."""
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_true = torch.randn(d, generator=gen, dtype=torch.float64)
    b = a @ w_true + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    return a, b


def optimizer_frame(steps: int, lr: float = 2.0**-5, seed: int = 0) -> pd.DataFrame:
    """Shift-based AdaMax (Alg. 2) vs Adam on a seeded least-squares toy problem, from w = 0.

    Problem: A (64×8) and w* ~ N(0, 1), b = A w* + 0.1·N(0, 1); loss(w) = mean((A w − b)²).  Both
    optimizers use learning rate ``lr`` and the paper's β1 = 1 − 2^−3; Adam keeps PyTorch's β2 = 0.999
    and ε = 1e-8, shift-AdaMax the paper's β2 = 1 − 2^−10.  Long format: ``step`` (0 = before the first
    update), ``optimizer`` ("Adam" / "shift-AdaMax"), ``loss``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    a, b = least_squares_problem(seed)
    rows = []
    makers = {"Adam": lambda p: torch.optim.Adam(p, lr=lr, betas=(1 - 2.0**-3, 0.999)),
              "shift-AdaMax": lambda p: ShiftAdaMax(p, lr=lr)}
    for name, make in makers.items():
        w = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
        opt = make([w])
        for step in range(steps + 1):
            opt.zero_grad()
            loss = ((a @ w - b) ** 2).mean()
            rows.append({"step": step, "optimizer": name, "loss": float(loss.detach())})
            if step < steps:
                loss.backward()
                opt.step()
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ bit-packing, Eq. 7
def random_pm1(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded random ±1 vectors of length ``k`` (float32, shape (n, k))."""
    gen = torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, (n, k), generator=gen).float() * 2 - 1).numpy()


def _bin(word: int, width: int) -> str:
    return format(int(word), f"0{width}b")


def bitpack_frame(vectors: np.ndarray, word_bits: int = 32) -> pd.DataFrame:
    """The words :func:`qnnlib.runtime.bitpack.pack` stores for each ±1 vector (one row per word).

    Columns: ``vector``, ``word``, ``elements`` (the index range the word holds), ``signs`` (the ±1
    values as ``+``/``-``, element order), ``binary`` (the word, most significant bit left: element j of
    the word is bit j, so the string reads right to left; padding bits past K are 0), ``hex``.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    words = pack(vectors, word_bits=word_bits)
    k = vectors.shape[1]
    rows = []
    for i, vec in enumerate(vectors):
        for w, word in enumerate(words[i]):
            j0, j1 = w * word_bits, min(k, (w + 1) * word_bits)
            rows.append({"vector": i, "word": w, "elements": f"{j0}..{j1 - 1}",
                         "signs": "".join("+" if v >= 0 else "-" for v in vec[j0:j1]),
                         "binary": _bin(word, word_bits), "hex": f"0x{int(word):0{word_bits // 4}x}"})
    return pd.DataFrame(rows)


def xnor_popcount_product(a: np.ndarray, b: np.ndarray, word_bits: int = 32) -> dict[str, Any]:
    """One binary dot product three ways: float, Eq. 7 by hand on the packed words, and ``binary_matmul``.

    Returns ``k``, ``a_words`` / ``b_words`` / ``xor_words`` (binary strings, MSB left), ``popcount`` (of
    a XOR b: the mismatches), ``xnor_popcount`` = K − popcount (the matches, Eq. 7's popcount(xnor)),
    ``eq7`` = K − 2·popcount, ``float_dot`` = a·b in float64, ``binary_matmul`` (the library's numpy
    kernel), and ``roundtrip`` (unpack(pack(a)) == a).
    """
    a = np.asarray(a, dtype=np.float32).reshape(1, -1)
    b = np.asarray(b, dtype=np.float32).reshape(1, -1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape[1]} and {b.shape[1]}")
    k = a.shape[1]
    pa, pb = pack(a, word_bits), pack(b, word_bits)
    xor = pa ^ pb
    pop = sum(int(w).bit_count() for w in xor[0])
    return {"k": k, "a_words": [_bin(w, word_bits) for w in pa[0]], "b_words": [_bin(w, word_bits) for w in pb[0]],
            "xor_words": [_bin(w, word_bits) for w in xor[0]], "popcount": pop, "xnor_popcount": k - pop,
            "eq7": k - 2 * pop,
            "float_dot": float(np.dot(np.where(a[0] >= 0, 1.0, -1.0), np.where(b[0] >= 0, 1.0, -1.0))),
            "binary_matmul": int(binary_matmul(pa, pb, k, backend="numpy")[0, 0]),
            "roundtrip": bool(np.array_equal(unpack(pa, k), np.where(a >= 0, 1.0, -1.0)))}


# ------------------------------------------------------------------------------------------ figures
def _figure(ncols: int, width: float = 5.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt  # noqa: PLC0415 - lazily: selects the inline backend in a kernel

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained")
    plt.close(fig)  # detached from pyplot: shown once, by whoever displays the returned figure
    return fig, np.atleast_1d(axes)


def plot_binarization(det: pd.DataFrame, sto: pd.DataFrame | None = None) -> Any:
    """Left: sign (Eq. 1), P(+1) = σ(x) (Eq. 3) and the empirical P(+1) (Eq. 2, ±3 s.e.); right: the STE."""
    fig, (ax, ax_g) = _figure(2)
    ax.step(det.x, det.sign, where="post", label="deterministic sign(x) (Eq. 1)", color="C0")
    ax.plot(det.x, det.hard_sigmoid, label="σ(x) = clip((x+1)/2, 0, 1) (Eq. 3)", color="C1")
    if sto is not None:
        ax.errorbar(sto.x, sto.p_plus, yerr=3 * sto.std_err, fmt="o", ms=3, color="C2",
                    label=f"empirical P(x_b = +1), {int(sto.n_draws.iloc[0])} draws (±3 s.e.)")
    ax.set(xlabel="input x (real value, dimensionless)", ylabel="output x_b / probability",
           title="Binarization: forward pass")
    ax.legend(fontsize=8, loc="upper left")
    ax_g.plot(det.x, det.ste_grad, color="C3", label="∂x_b/∂x by autograd = 1{|x| ≤ 1} (Eq. 4)")
    ax_g.set(xlabel="input x (real value, dimensionless)", ylabel="gradient passed back (for g = 1)",
             title="Binarization: straight-through estimator", ylim=(-0.1, 1.2))
    ax_g.legend(fontsize=8)
    return fig


def plot_linear_quant(df: pd.DataFrame) -> Any:
    """Left: the 2^k-level staircase on [min_v, max_v]; right: its STE gradient 1{min_v ≤ x ≤ max_v}."""
    bits, lo, hi = int(df.bits.iloc[0]), float(df.min_v.iloc[0]), float(df.max_v.iloc[0])
    fig, (ax, ax_g) = _figure(2)
    ax.plot(df.x, df.x.clip(lo, hi), color="0.7", ls="--", label="clip(x, min_v, max_v)")
    ax.plot(df.x, df.q, color="C0", label=f"linear_quant, {bits} bits: {df.q.nunique()} levels")
    ax.set(xlabel="input x (real value, dimensionless)", ylabel="quantized value q(x)",
           title=f"k-bit linear quantizer on [{lo:g}, {hi:g}]")
    ax.legend(fontsize=8)
    ax_g.plot(df.x, df.ste_grad, color="C3", label="∂q/∂x by autograd = 1{min_v ≤ x ≤ max_v}")
    ax_g.set(xlabel="input x (real value, dimensionless)", ylabel="gradient passed back (for g = 1)",
             title="Linear quantizer: straight-through estimator", ylim=(-0.1, 1.2))
    ax_g.legend(fontsize=8)
    return fig


def plot_log_quant(df: pd.DataFrame) -> Any:
    """Left: the log quantizer and AP2 (powers of two); right: AP2's identity STE."""
    bits, fsr = int(df.bits.iloc[0]), int(df.fsr.iloc[0])
    fig, (ax, ax_g) = _figure(2)
    ax.plot(df.x, df.x, color="0.7", ls="--", label="identity")
    ax.plot(df.x, df.ap2, color="C1", label="AP2(x) = sign(x)·2^round(log2|x|)")
    ax.plot(df.x, df.log_quant, color="C0", label=f"log_quant, {bits} bits, fsr = {fsr}")
    ax.set(xlabel="input x (real value, dimensionless)", ylabel="quantized value",
           title="Logarithmic quantizer and AP2")
    ax.legend(fontsize=8)
    ax_g.plot(df.x, df.ap2_ste_grad, color="C3", label="∂ap2_ste/∂x by autograd = 1")
    ax_g.set(xlabel="input x (real value, dimensionless)", ylabel="gradient passed back (for g = 1)",
             title="AP2: straight-through estimator", ylim=(-0.1, 1.2))
    ax_g.legend(fontsize=8)
    return fig


def plot_batchnorm(df: pd.DataFrame) -> Any:
    """Left: SBN vs BN outputs per feature (with y = x); right: histogram of SBN − BN per feature."""
    fig, (ax, ax_d) = _figure(2)
    lim = float(np.abs(df[["bn", "sbn"]].to_numpy()).max()) * 1.05
    ax.plot([-lim, lim], [-lim, lim], color="0.7", ls="--", label="y = x")
    for f, part in df.groupby("feature"):
        m, s = _BN_FEATURES[int(f)] if int(f) < len(_BN_FEATURES) else (float("nan"),) * 2
        ax.scatter(part.bn, part.sbn, s=10, label=f"feature {f} (input N({m:g}, {s:g}²))")
        ax_d.hist(part["diff"], bins=20, alpha=0.6, label=f"feature {f}")
    ax.set(xlabel="BN output (units of batch std)", ylabel="shift-based BN output (units of batch std)",
           title=f"One batch of {df['sample'].nunique()} samples")
    ax.legend(fontsize=8)
    ax_d.set(xlabel="SBN − BN (units of batch std)", ylabel="count (sample, feature pairs)",
             title="Difference: one power-of-two scale per feature")
    ax_d.legend(fontsize=8)
    return fig


def plot_optimizers(df: pd.DataFrame) -> Any:
    """Training loss of each optimizer against the step (log scale)."""
    fig, (ax,) = _figure(1, width=6.5)
    for name, part in df.groupby("optimizer", sort=False):
        ax.plot(part.step, part.loss, label=name)
    ax.set(yscale="log", xlabel="optimizer step (updates)", ylabel="loss: mean squared error (log scale)",
           title="Least squares, 64 × 8, from w = 0")
    ax.legend()
    return fig


# ---------------------------------------------------------------------------------- views (sliders)
def binarization_view(n_draws: int = 4000, seed: int = 0) -> Any:
    """Figure of :func:`plot_binarization` for ``n_draws`` stochastic draws per point."""
    return plot_binarization(binarization_frame(), stochastic_binarization_frame(int(n_draws), int(seed)))


def linear_quant_view(bits: int = 2, min_v: float = -1.0, max_v: float = 1.0) -> Any:
    """Figure of :func:`plot_linear_quant` for ``bits`` on [min_v, max_v]."""
    return plot_linear_quant(linear_quant_frame(int(bits), float(min_v), float(max_v)))


def log_quant_view(bits: int = 4, fsr: int = 0) -> Any:
    """Figure of :func:`plot_log_quant`."""
    return plot_log_quant(log_quant_frame(int(bits), int(fsr)))


def batchnorm_view(batch: int = 64, seed: int = 0) -> Any:
    """Figure of :func:`plot_batchnorm` for one batch of ``batch`` samples."""
    return plot_batchnorm(batchnorm_frame(int(batch), int(seed)))


def optimizer_view(steps: int = 200, log2_lr: int = -5, seed: int = 0) -> Any:
    """Figure of :func:`plot_optimizers` with learning rate 2^log2_lr."""
    return plot_optimizers(optimizer_frame(int(steps), 2.0 ** int(log2_lr), int(seed)))


# ------------------------------------------------------------------------------------- interactive
@dataclass(frozen=True)
class Slider:
    """A slider control for :func:`interactive`: range [lo, hi], start ``value``, optional ``step``.

    Integer lo/hi/value make an integer slider.  Without widgets, ``value`` is the value used.  A value
    outside [lo, hi] (a notebook parameter beyond the slider's usual range) widens the range to include it.
    """

    lo: float
    hi: float
    value: float
    step: float | None = None

    def __post_init__(self) -> None:
        if not self.lo < self.hi:
            raise ValueError(f"Slider needs lo < hi, got [{self.lo}, {self.hi}]")

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.lo, self.hi, self.value)) and (
            self.step is None or isinstance(self.step, int))


def _default(control: Any) -> Any:
    """The value ``interact`` would start from for an abbreviation (midpoint, first option) or a Slider."""
    if isinstance(control, Slider):
        return control.value
    if isinstance(control, tuple) and len(control) in (2, 3) and all(isinstance(v, (int, float)) for v in control):
        lo, hi = control[0], control[1]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in control):
            return (lo + hi) // 2
        return (lo + hi) / 2
    if isinstance(control, (list, tuple)) and control:
        first = control[0]
        return first[1] if isinstance(first, tuple) and len(first) == 2 else first
    if isinstance(control, Mapping) and control:
        return next(iter(control.values()))
    return control  # a fixed value


def _is_fixed(control: Any) -> bool:
    return control is None or isinstance(control, (bool, numbers.Number, str))


def _widget(control: Any) -> Any:
    import ipywidgets  # noqa: PLC0415

    if _is_fixed(control):
        return ipywidgets.fixed(control)
    if not isinstance(control, Slider):
        return control  # an ipywidgets abbreviation: interact builds the widget

    cls = ipywidgets.IntSlider if control.is_int else ipywidgets.FloatSlider
    kw = {"min": min(control.lo, control.value), "max": max(control.hi, control.value), "value": control.value,
          "continuous_update": False}
    if control.step is not None:
        kw["step"] = control.step
    return cls(**kw)


def _display(obj: Any) -> None:
    try:
        from IPython.display import display  # noqa: PLC0415
    except ImportError:
        print(obj)
        return
    display(obj)


def interactive(fn: Callable[..., Any], /, **controls: Any) -> None:
    """Show ``fn``'s result with sliders when a front end can show widgets, else once with defaults.

    ``controls`` map ``fn``'s keyword arguments to :class:`Slider` objects, ipywidgets abbreviations
    (``(lo, hi)``, ``(lo, hi, step)``, a list of options) or fixed values (a plain number, string, bool or
    None: passed as is, no widget — unlike bare ``interact``, which makes a slider of a number).  With widgets
    (:func:`qnnlib.progress.widgets_available`) this is ``ipywidgets.interact(fn, **controls)``; otherwise ``fn`` is called
    once with each control's default (a Slider's ``value``; ``interact``'s own choice for an
    abbreviation: the midpoint of a range, the first option) and the result is displayed.  Returns None
    (so a notebook cell shows the result once).
    """
    if widgets_available():
        import ipywidgets  # noqa: PLC0415

        ipywidgets.interact(fn, **{k: _widget(v) for k, v in controls.items()})
        return
    result = fn(**{k: _default(v) for k, v in controls.items()})
    if result is not None:
        _display(result)


# --------------------------------------------------------------------------------------- sanity
def check_sanity(cfg: TourConfig, *, binarization: pd.DataFrame, stochastic: pd.DataFrame,
                 linear: pd.DataFrame, batchnorm: pd.DataFrame, optimizers: pd.DataFrame,
                 xnor: Mapping[str, Any]) -> list[str]:
    """Assert the laws the tour shows; returns the checks that passed (``AssertionError`` on a failure).

    sign(0) = +1; the STE gradient is 1{|x| ≤ 1}; the stochastic binarization's empirical P(+1) is within
    ``max_z`` standard errors of σ(x) at every point and its pooled mean within 3σ; linear_quant has exactly
    2^k distinct levels, equal to linear_levels; SBN's per-feature scale is within 2^(±sbn_ratio_bound) of
    BN's; the XNOR-popcount product equals the float dot product (Eq. 7) and binary_matmul; shift-AdaMax
    reduced the toy loss to at most ``max_loss_ratio`` of its initial value.
    """
    if cfg.profile not in SANITY:
        raise ValueError(f"no sanity bounds for profile {cfg.profile!r}; known: {tuple(SANITY)}")
    b, passed = SANITY[cfg.profile], []
    zero = binarization[binarization.x == 0]
    assert len(zero) == 1, "the binarization grid must contain x = 0"
    assert zero.sign.iloc[0] == 1 and zero.binarize.iloc[0] == 1, f"sign(0) = {zero.sign.iloc[0]}, expected +1"
    passed.append("sign(0) = +1 (Eq. 1)")
    want = (binarization.x.abs() <= 1).astype(float)
    assert np.array_equal(binarization.ste_grad.to_numpy(), want.to_numpy()), "binarize's STE gradient != 1{|x| <= 1}"
    passed.append("binarize's STE gradient is 1{|x| <= 1} (Eq. 4)")
    z = float(stochastic.z.abs().max())
    assert z <= b.max_z, f"stochastic binarization: max |z| = {z:.2f} > {b.max_z} standard errors"
    n = stochastic.n_draws.iloc[0]
    pooled_se = math.sqrt(float((stochastic.hard_sigmoid * (1 - stochastic.hard_sigmoid)).sum()) / n) / len(stochastic)
    pooled = float((stochastic.p_plus - stochastic.hard_sigmoid).mean())
    assert abs(pooled) <= 3 * pooled_se + 1e-12, f"pooled P(+1) - σ = {pooled:.2e} beyond 3σ = {3 * pooled_se:.2e}"
    passed.append(f"stochastic binarization ({n} draws): every point within {z:.2f} <= {b.max_z} s.e. of σ(x), "
                  f"pooled within 3σ ({pooled:+.1e})")
    bits, lo, hi = int(linear.bits.iloc[0]), float(linear.min_v.iloc[0]), float(linear.max_v.iloc[0])
    levels = np.unique(linear.q.to_numpy())
    assert len(levels) == 2**bits, f"linear_quant({bits} bits) has {len(levels)} levels, expected {2**bits}"
    assert np.allclose(levels, linear_levels(bits, lo, hi).numpy()), "linear_quant levels != linear_levels"
    passed.append(f"linear_quant, {bits} bits on [{lo:g}, {hi:g}]: exactly 2^{bits} = {2**bits} levels")
    summary = batchnorm_summary(batchnorm)
    worst = float(summary.log2_ratio.abs().max())
    assert worst <= b.sbn_ratio_bound, f"SBN/BN scale 2^{worst:.2f} beyond 2^{b.sbn_ratio_bound}"
    passed.append(f"shift-based BN: per-feature scale within 2^{worst:.2f} <= 2^{b.sbn_ratio_bound} of BN's")
    assert xnor["eq7"] == xnor["float_dot"] == xnor["binary_matmul"], (
        f"K - 2 popcount = {xnor['eq7']}, float dot = {xnor['float_dot']}, binary_matmul = {xnor['binary_matmul']}")
    assert xnor["roundtrip"], "unpack(pack(a)) != a"
    passed.append(f"XNOR-popcount (Eq. 7): K - 2 popcount = {xnor['k']} - 2*{xnor['popcount']} = {xnor['eq7']} "
                  "= float dot product = binary_matmul")
    sa = optimizers[optimizers.optimizer == "shift-AdaMax"].sort_values("step")
    first, last = float(sa.loss.iloc[0]), float(sa.loss.iloc[-1])
    assert last <= b.max_loss_ratio * first, f"shift-AdaMax: loss {first:.3g} -> {last:.3g}, not <= {b.max_loss_ratio}x"
    passed.append(f"shift-AdaMax reduced the toy loss {first:.3g} -> {last:.3g} in {int(sa.step.iloc[-1])} steps")
    return passed
