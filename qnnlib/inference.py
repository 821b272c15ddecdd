"""Bit-exact inference of a trained BNN on the binary kernels (paper Alg. 4 "Running a BNN", Eq. 6).

:func:`export_bnn` turns an eval-mode :func:`qnnlib.models.mnist_mlp` with binary weights and binary
activations into a :class:`PackedBNN`: bit-packed weights plus one integer threshold and one sign
flip per hidden neuron. :meth:`PackedBNN.predict` then runs every layer on
:func:`qnnlib.binary_gemm.binary_matmul` (Numba XOR-popcount on the CPU, CuPy kernels on a GPU).

Alg. 4, layer by layer (L layers, W_k^b = sign(W_k) packed 64 values per ``uint64`` word)::

    layer 1      a_1 = Σ_{n=1..8} 2^{n-1} XnorDotProduct(a_0^n, W_1^b);  a_1^b = Sign(BatchNorm(a_1))
    layers 2..L-1  a_k = XnorDotProduct(a_{k-1}^b, W_k^b);               a_k^b = Sign(BatchNorm(a_k))
    layer L      a_L = BatchNorm(XnorDotProduct(a_{L-1}^b, W_L^b))        -> argmax

**Hidden layers k ≥ 2 — exact.** ``d = W_k^b · a_{k-1}^b`` is an integer with ``d ≡ K (mod 2)`` and
``|d| ≤ K``. The model computes ``s = d + bias`` in float32, then ``BN(s)`` (eval mode) and
``sign`` (``sign(0) = +1``). BN is monotone in ``s`` per neuron, so ``a = +1 iff f·d ≥ t`` for an
integer ``t`` and ``f ∈ {+1, −1}`` (``f = −1`` where γ < 0; γ = 0 gives a constant neuron, stored
with an out-of-range ``t``). Instead of solving for the crossing point analytically (which could
disagree with PyTorch's float32 rounding by one step), the export **evaluates the model's own
float32 pipeline** — ``s = d + bias`` as a float32 tensor, ``torch.nn.functional.batch_norm`` with
the layer's running statistics and ε, ``>= 0`` — on every candidate ``d ∈ {−K, −K+2, …, K}`` for all
neurons at once, in the model's (N, C) layout, checks that the result is monotone in ``d`` (raises
otherwise) and reads ``t`` off the table. The thresholds therefore reproduce ``sign(BN(d + bias))``
bit for bit.

One caveat, measured and reported rather than hidden: PyTorch's CPU ``F.linear`` adds the bias
inside its blocked GEMM (MKL accumulates ``bias + partial sums`` block by block), so its ``s`` can
differ from the correctly rounded ``d + bias`` by a few float32 ulps. A neuron whose BN crossing
lies that close to one of its lattice points ``d + bias`` could then flip in PyTorch but not here.
:attr:`PackedBNN.fragile` counts, per layer, the neurons whose decision changes when ``s`` moves by
``δ = ulp(K + |bias|)`` (generous: the observed error is ~20× smaller); an image disagrees only if
it hits such a neuron's boundary value of ``d`` exactly.

**First layer — Eq. 6 (exact integers, float64 threshold).** With 8-bit pixels ``p`` (the inputs
are ``x = p/255·2 − 1``), ``p = Σ_{n=0..7} 2^n p^n`` with bit-planes ``p^n ∈ {0,1}^K``. Each plane as
a ±1 vector ``q_n = 2 p^n − 1`` goes through the binary GEMM, and ``W_b·p^n = (W_b·q_n + S)/2`` with
``S`` the row sums of ``W_b``; so ``D = W_b·p = Σ_n 2^n (W_b·q_n + S)/2`` is an exact integer and
``W_b·x = (2/255)·D − S``. ``s = W_b·x + bias``, BN and sign fold into ``f·D ≥ t`` where ``t`` is the
crossing point of ``BN(s) = 0`` solved in float64. This is the *real-valued* decision; PyTorch
computes ``W_b·x`` in float32 with an order-dependent rounding (MKL blocking), so where ``s`` falls
within ~1e-5 of the crossing the two can disagree. That cannot be matched exactly by any fixed
rule; :func:`compare_with_model` measures the agreement rate (typically ≥ 99.999 % of activations).

**Output layer.** ``dot`` via the binary GEMM, ``s = dot + bias`` (float32), ``F.batch_norm`` with the
layer's statistics, argmax — the model's own arithmetic again.

The paper's run-time demo ran layer 1 on the float baseline kernel (PAPER.md §1.5, §3.3);
``predict(..., first_layer="float")`` does the same: ``D = p @ W_b^T`` as a float32 GEMM of 8-bit
integers and ±1, exact (all partial sums are integers below 2^24) and therefore identical to Eq. 6.

Checkpoint file: :meth:`PackedBNN.save` writes an **uncompressed** ``.npz`` (``np.savez``; no
compression, so the size on disk is the size of the arrays plus small headers) that loads without
pickle.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange
from torch import nn

from .binary_gemm import BACKENDS, binary_matmul
from .bitpack import _cupy, _is_cupy, pack, packed_width, unpack
from .layers import LatentWeightLayer, QuantAct
from .norm import ShiftBatchNorm1d, ShiftBatchNorm2d

__all__ = [
    "SUPPORTED",
    "FORMAT",
    "NotExportableError",
    "PackedBNN",
    "export_bnn",
    "pixels_from_inputs",
    "inputs_from_pixels",
    "size_report",
    "compare_with_model",
]

FORMAT = "qnnlib.PackedBNN/1"
WORD_BITS = 64
FirstLayer = Literal["bitplanes", "float"]

SUPPORTED = (
    "export_bnn supports an MLP as built by qnnlib.models.mnist_mlp(precision=BINARY): an nn.Sequential "
    "fc1, bn1, act1, ..., fcL, bnL (Dropout layers allowed, identity at inference) where every fc is a "
    "QuantLinear/BinaryLinear with weight_bits=1, every bn is an nn.BatchNorm1d with running statistics, "
    "every hidden act is QuantAct(bits=1) (sign, deterministic at inference), and the output layer "
    "fcL -> bnL has no activation."
)


class NotExportableError(ValueError):
    """The model is not a binary MLP that :func:`export_bnn` can turn into a :class:`PackedBNN`."""


# ---------------------------------------------------------------------------------------------------
# Inputs: 8-bit pixels
# ---------------------------------------------------------------------------------------------------


def inputs_from_pixels(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """8-bit pixels (N, ...) -> the model's float32 inputs ``p/255·2 − 1`` (N, K), as ``qnnlib.datasets``."""
    p = pixels.numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
    if p.dtype != np.uint8:
        raise ValueError(f"inputs_from_pixels expects uint8 pixels, got dtype {p.dtype}")
    p = p.reshape(p.shape[0], math.prod(p.shape[1:]))
    return torch.from_numpy(p.astype(np.float32) / 255.0 * 2.0 - 1.0)


def pixels_from_inputs(images: Any) -> np.ndarray:
    """The 8-bit pixels ``p`` (uint8, (N, K)) of ``images``.

    ``images`` are uint8 pixels (any shape (N, ...), flattened) or floats on the 8-bit grid
    ``x = p/255·2 − 1`` (NumPy or torch), from which ``p = round((x + 1)/2 · 255)``. Floats off that
    grid (by more than 1e-4; the grid step is 2/255 ≈ 7.8e-3) raise ``ValueError``: the first layer's
    bit-plane decomposition (Eq. 6) needs 8-bit inputs.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.ndim < 2:
        raise ValueError(f"images must have shape (N, ...) with one image per row, got shape {x.shape}")
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"images must be uint8 pixels or floats in [-1, 1], got dtype {x.dtype}")
    xf = x.astype(np.float64)
    if xf.size and (not np.isfinite(xf).all() or xf.min() < -1.0 - 1e-4 or xf.max() > 1.0 + 1e-4):
        raise ValueError("float images must be pixel/255*2-1 in [-1, 1] (the qnnlib.datasets scaling)")
    p = np.rint((xf + 1.0) / 2.0 * 255.0)
    off = float(np.abs(xf - (p / 255.0 * 2.0 - 1.0)).max()) if xf.size else 0.0
    if off > 1e-4:
        raise ValueError(
            f"float images are not 8-bit pixels scaled as p/255*2-1 (max distance to that grid {off:.3g}); "
            "the first layer of a PackedBNN splits 8-bit inputs into bit-planes (Eq. 6), so pass uint8 "
            "pixels or inputs produced by qnnlib.datasets"
        )
    return np.clip(p, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Numba kernels (CPU): bit-planes, Eq. 6 recombination, threshold + pack
# ---------------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True, nogil=True)
def _pack_bitplanes(p, out):  # pragma: no cover - compiled by Numba
    """out[n, i, :] = pack(bit n of p[i, :]) for n = 0..7: the bit-planes p^n, LSB-first words."""
    rows, k = p.shape
    words = out.shape[2]
    for i in prange(rows):
        for w in range(words):
            j0 = w * 64
            j1 = min(k, j0 + 64)
            for n in range(8):
                acc = np.uint64(0)
                for j in range(j0, j1):
                    bit = np.uint64((p[i, j] >> n) & 1)
                    acc |= bit << np.uint64(j - j0)
                out[n, i, w] = acc


@njit(parallel=True, cache=True, nogil=True)
def _combine_bitplanes(m, rows, s, out):  # pragma: no cover - compiled by Numba
    """Eq. 6: D = Σ_n 2^n (W_b·q_n + S)/2 = (Σ_n 2^n M_n + 255 S) / 2, with M_n = m[n*rows:(n+1)*rows]."""
    h = s.shape[0]
    for i in prange(rows):
        for j in range(h):
            acc = np.int64(255) * s[j]
            for n in range(8):
                acc += np.int64(m[n * rows + i, j]) << n
            out[i, j] = acc >> 1  # exact: every (M_n + S) is even (both ≡ K mod 2)


@njit(parallel=True, cache=True, nogil=True)
def _threshold_pack(d, t, f, out):  # pragma: no cover - compiled by Numba
    """a[i, j] = +1 iff f[j]·d[i, j] >= t[j], packed LSB-first into uint64 words (bit 1 = +1)."""
    rows, h = d.shape
    words = out.shape[1]
    for i in prange(rows):
        for w in range(words):
            j0 = w * 64
            j1 = min(h, j0 + 64)
            acc = np.uint64(0)
            for j in range(j0, j1):
                if np.int64(f[j]) * np.int64(d[i, j]) >= np.int64(t[j]):
                    acc |= np.uint64(1) << np.uint64(j - j0)
            out[i, w] = acc


# ---------------------------------------------------------------------------------------------------
# Threshold derivation
# ---------------------------------------------------------------------------------------------------


def _threshold_from_table(on: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Read (t, f) off a boolean table ``on[r, j] = sign(BN(d_r + bias_j)) == +1`` with d_r = −K + 2r.

    Non-decreasing columns give ``f = +1`` and ``t`` = the first ``d`` that is on (``K + 2`` when
    none is: constant −1; ``−K`` when all are: constant +1). Non-increasing columns give ``f = −1``
    and ``t = −(last d that is on)``. Anything else raises ``ValueError`` (BN must be monotone).
    """
    if on.shape[0] != k + 1:
        raise ValueError(f"table needs K+1 = {k + 1} rows (d = -K, -K+2, ..., K), got {on.shape[0]}")
    on = on.to(torch.int8)
    step = on[1:] - on[:-1]
    inc = (step >= 0).all(0)
    dec = (step <= 0).all(0)
    bad = ~(inc | dec)
    if bool(bad.any()):
        cols = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"sign(BN(d + bias)) is not monotone in d for neurons {cols}...: BN in eval mode must be an "
            "increasing or decreasing affine map per neuron (check the running statistics for NaN)"
        )
    n_on = on.sum(0, dtype=torch.int64)
    t_inc = -k + 2 * (k + 1 - n_on)  # first on index = K+1 - n_on
    t_dec = k - 2 * (n_on - 1)  # -(last on d), last on index = n_on - 1
    f = torch.where(inc, 1, -1).to(torch.int8)
    t = torch.where(inc, t_inc, t_dec).to(torch.int32)
    return t.numpy(), f.numpy()


def _bn_tensors(bn: nn.BatchNorm1d) -> dict[str, torch.Tensor | float]:
    h = bn.num_features
    w = bn.weight.detach().cpu().float() if bn.weight is not None else torch.ones(h)
    b = bn.bias.detach().cpu().float() if bn.bias is not None else torch.zeros(h)
    return {"mean": bn.running_mean.detach().cpu().float(), "var": bn.running_var.detach().cpu().float(),
            "weight": w, "bias": b, "eps": float(bn.eps)}


def _batch_norm(s: torch.Tensor, p: dict) -> torch.Tensor:
    """Eval-mode BN exactly as ``nn.BatchNorm1d.forward`` calls it (same kernel, same (N, C) layout)."""
    return F.batch_norm(s, p["mean"], p["var"], p["weight"], p["bias"], training=False, momentum=0.0,
                        eps=p["eps"])


def _hidden_thresholds(k: int, bias: torch.Tensor, bnp: dict, chunk: int = 1024
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """(t, f, fragile) of a hidden layer with fan-in K by evaluating float32 BN on every candidate d."""
    h = bias.shape[0]
    d_all = torch.arange(-k, k + 1, 2, dtype=torch.float32)  # exact integers (K < 2^24)
    # δ = ulp(K + |bias|): a generous bound on how far PyTorch's blocked addmm can round s away from d + bias
    delta = torch.from_numpy(np.spacing(np.float32(k) + np.abs(bias.numpy())).astype(np.float32))
    on = torch.empty((k + 1, h), dtype=torch.bool)
    fragile = torch.zeros(h, dtype=torch.bool)
    for r0 in range(0, k + 1, chunk):
        s = d_all[r0:r0 + chunk, None] + bias[None, :]  # float32 s = d + bias, correctly rounded
        on_c = _batch_norm(s, bnp) >= 0  # sign(0) = +1
        on[r0:r0 + chunk] = on_c
        lo = _batch_norm(s - delta, bnp) >= 0
        hi = _batch_norm(s + delta, bnp) >= 0
        fragile |= ((lo != on_c) | (hi != on_c)).any(0)
    t, f = _threshold_from_table(on, k)
    return t, f, int(fragile.sum())


def _first_layer_thresholds(k: int, row_sum: np.ndarray, bias: np.ndarray, bnp: dict
                            ) -> tuple[np.ndarray, np.ndarray]:
    """(t, f) on D = W_b·p: the crossing of BN((2/255)·D − S + bias) = 0, solved in float64."""
    mean, var = bnp["mean"].double().numpy(), bnp["var"].double().numpy()
    gamma, beta = bnp["weight"].double().numpy(), bnp["bias"].double().numpy()
    big = 255 * k + 2  # out of the range of D ∈ [-255 K, 255 K]
    std = np.sqrt(var + bnp["eps"])
    with np.errstate(divide="ignore", invalid="ignore"):
        s_star = mean - beta * std / gamma  # BN(s*) = 0
        d_star = (s_star + row_sum.astype(np.float64) - bias.astype(np.float64)) * 255.0 / 2.0
    t = np.empty(len(row_sum), dtype=np.int64)
    f = np.ones(len(row_sum), dtype=np.int8)
    pos, neg = gamma > 0, gamma < 0
    t[pos] = np.clip(np.ceil(d_star[pos]), -big, big)  # D >= ceil(D*)
    t[neg] = np.clip(-np.floor(d_star[neg]), -big, big)  # D <= floor(D*)  <=>  -D >= -floor(D*)
    f[neg] = -1
    zero = ~(pos | neg)  # γ = 0 (or NaN): BN(s) = β, a constant neuron
    t[zero] = np.where(beta[zero] >= 0, -big, big)
    bad = ~np.isfinite(d_star) & (pos | neg)
    if bad.any():
        raise NotExportableError(f"layer 1 has non-finite BN statistics for neurons {np.flatnonzero(bad)[:5]}")
    return t.astype(np.int32), f


# ---------------------------------------------------------------------------------------------------
# The packed network
# ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class PackedBNN:
    """A BNN ready for the binary kernels: packed ``sign(W)``, integer thresholds, output BN.

    Attributes (L layers; K_k = fan-in of layer k; H_k = its width):
        weights: L arrays (H_k, ceil(K_k/64)) uint64, ``sign(W_k)`` packed by :func:`qnnlib.bitpack.pack`.
        in_features: (K_1, ..., K_L).
        thresholds, flips: L−1 arrays (H_k,) int32 / int8: ``a = +1 iff flips·d >= thresholds``
            (layer 1 on D = W_b·p of Eq. 6; layers ≥ 2 on the ±1 dot product d).
        row_sum: (H_1,) int32, S = Σ_j W_1^b[:, j] (Eq. 6 recombination).
        out_bias, out_mean, out_var, out_weight, out_beta: (H_L,) float32, the output layer's bias and BN.
        out_eps: the output BN's ε.
        fragile: per hidden layer ≥ 2, neurons within PyTorch's float accumulation error of their
            threshold (diagnostic, see the module docstring).
    """

    weights: list[np.ndarray]
    in_features: tuple[int, ...]
    thresholds: list[np.ndarray]
    flips: list[np.ndarray]
    row_sum: np.ndarray
    out_bias: np.ndarray
    out_mean: np.ndarray
    out_var: np.ndarray
    out_weight: np.ndarray
    out_beta: np.ndarray
    out_eps: float
    fragile: tuple[int, ...] = ()
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.weights)
        if n < 2 or len(self.in_features) != n or len(self.thresholds) != n - 1 or len(self.flips) != n - 1:
            raise ValueError("a PackedBNN needs L >= 2 weight arrays, L fan-ins and L-1 thresholds and flips")
        for k, (w, kin) in enumerate(zip(self.weights, self.in_features), 1):
            if w.dtype != np.uint64 or w.ndim != 2 or w.shape[1] != packed_width(kin, WORD_BITS):
                raise ValueError(f"layer {k}: weights must be (H, ceil({kin}/64)) uint64, got {w.shape} {w.dtype}")
            if k > 1 and kin != self.weights[k - 2].shape[0]:
                raise ValueError(f"layer {k} has fan-in {kin} but layer {k - 1} has {self.weights[k - 2].shape[0]} units")
        for k, (t, f) in enumerate(zip(self.thresholds, self.flips), 1):
            h = self.weights[k - 1].shape[0]
            if t.shape != (h,) or f.shape != (h,):
                raise ValueError(f"layer {k}: thresholds and flips must have shape ({h},)")
        if self.row_sum.shape != (self.widths[0],):
            raise ValueError(f"row_sum must have shape ({self.widths[0]},)")

    # ----------------------------------------------------------------------------------- shape
    @property
    def num_layers(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> tuple[int, ...]:
        """Units per layer (H_1, ..., H_L); H_L is the number of classes."""
        return tuple(int(w.shape[0]) for w in self.weights)

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays (the on-disk file adds ~100-byte npy headers per array)."""
        arrays = [*self.weights, *self.thresholds, *self.flips, self.row_sum, self.out_bias, self.out_mean,
                  self.out_var, self.out_weight, self.out_beta]
        return int(sum(a.nbytes for a in arrays))

    def __repr__(self) -> str:
        arch = "-".join(str(v) for v in (self.in_features[0], *self.widths))
        return f"PackedBNN({arch}, {self.nbytes:,} bytes, fragile={self.fragile})"

    # ------------------------------------------------------------------------------- save/load
    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k, w in enumerate(self.weights, 1):
            out[f"w{k}"] = w
        for k, (t, f) in enumerate(zip(self.thresholds, self.flips), 1):
            out[f"t{k}"], out[f"f{k}"] = t, f
        out.update(s1=self.row_sum, out_bias=self.out_bias, out_mean=self.out_mean, out_var=self.out_var,
                   out_weight=self.out_weight, out_beta=self.out_beta)
        meta = {"format": FORMAT, "word_bits": WORD_BITS, "in_features": list(self.in_features),
                "out_eps": self.out_eps, "fragile": list(self.fragile)}
        out["meta"] = np.array(json.dumps(meta))
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write an **uncompressed** ``.npz`` (``np.savez``) and return its path; loads without pickle."""
        path = Path(path)
        with open(path, "wb") as fh:
            np.savez(fh, **self._arrays())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PackedBNN:
        """Read a file written by :meth:`save` (``ValueError`` if it is not a PackedBNN checkpoint)."""
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ValueError(f"{path} is not a PackedBNN checkpoint (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
            n = len(meta["in_features"])
            return cls(weights=[z[f"w{k}"] for k in range(1, n + 1)], in_features=tuple(meta["in_features"]),
                       thresholds=[z[f"t{k}"] for k in range(1, n)], flips=[z[f"f{k}"] for k in range(1, n)],
                       row_sum=z["s1"], out_bias=z["out_bias"], out_mean=z["out_mean"], out_var=z["out_var"],
                       out_weight=z["out_weight"], out_beta=z["out_beta"], out_eps=float(meta["out_eps"]),
                       fragile=tuple(meta.get("fragile", ())))

    # -------------------------------------------------------------------------------- devices
    def _on(self, backend: str) -> tuple[Any, dict[str, Any]]:
        """(xp, arrays) for ``backend``: NumPy arrays for CPU backends, CuPy copies (cached) for CUDA."""
        if backend not in BACKENDS or backend == "auto":  # "auto" is resolved by the callers
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not backend.startswith("cuda"):
            return np, {"w": self.weights, "t": self.thresholds, "f": self.flips, "s1": self.row_sum}
        if "cuda" not in self._cache:
            cp = _cupy()
            self._cache["cuda"] = {"w": [cp.asarray(w) for w in self.weights],
                                   "t": [cp.asarray(t) for t in self.thresholds],
                                   "f": [cp.asarray(f) for f in self.flips], "s1": cp.asarray(self.row_sum)}
        return _cupy(), self._cache["cuda"]

    def _w1_float(self, xp: Any) -> Any:
        """Layer 1's ±1 weights as float32 (H, K), unpacked once (``first_layer="float"``)."""
        key = "w1f_cuda" if xp is not np else "w1f"
        if key not in self._cache:
            w = unpack(self.weights[0], self.in_features[0])
            self._cache[key] = torch.from_numpy(w) if xp is np else _cupy().asarray(w)
        return self._cache[key]

    # ------------------------------------------------------------------------------ the layers
    def first_layer_integer(self, images: Any, backend: str = "cpu", first_layer: FirstLayer = "bitplanes"
                            ) -> np.ndarray:
        """``D = W_1^b · p`` (int32, (N, H_1)) for 8-bit pixels ``p``: Eq. 6 bit-planes or a float GEMM.

        ``first_layer="bitplanes"`` (Eq. 6): 8 binary GEMMs of the bit-planes q_n = 2 p^n − 1 with W_b,
        recombined as D = Σ_n 2^n (W_b·q_n + S)/2. ``"float"``: D = p @ W_b^T as float32, exact because
        every partial sum is an integer below 2^24 (the paper's run-time demo ran layer 1 on floats).
        """
        backend = _resolve(backend, images)
        xp, arr = self._on(backend)
        p = _to_xp(pixels_from_inputs(images) if not _is_cupy(images) else images, xp)
        return _to_host(self._first_layer_d(p, xp, arr, backend, first_layer))

    def _first_layer_d(self, p: Any, xp: Any, arr: dict, backend: str, first_layer: str) -> Any:
        k = self.in_features[0]
        if p.ndim != 2 or p.shape[1] != k:
            raise ValueError(f"images must have {k} pixels each, got shape {tuple(p.shape)}")
        if first_layer == "float":
            if 255 * k >= 2**24:
                raise ValueError(f"first_layer='float' is exact only for K < 65794 inputs, got K = {k}")
            if xp is np:
                d = torch.matmul(torch.from_numpy(p).float(), self._w1_float(np).T)
                return d.numpy().astype(np.int32)
            return xp.matmul(p.astype(xp.float32), self._w1_float(xp).T).astype(xp.int32)
        if first_layer != "bitplanes":
            raise ValueError(f"first_layer must be 'bitplanes' (Eq. 6) or 'float', got {first_layer!r}")
        rows, w = p.shape[0], packed_width(k, WORD_BITS)
        if xp is np and backend == "cpu":
            planes = np.empty((8, rows, w), dtype=np.uint64)
            if rows:
                _pack_bitplanes(p, planes)
        else:
            shifts = xp.arange(8, dtype=xp.uint8)[:, None, None]
            planes = pack(((p[None] >> shifts) & 1).astype(bool), WORD_BITS)  # bit 1 = +1 = (p^n = 1)
        m = binary_matmul(planes.reshape(8 * rows, w), arr["w"][0], k, backend)  # W_b · q_n, (8N, H)
        if xp is np:
            d = np.empty((rows, m.shape[1]), dtype=np.int32)
            if rows:
                _combine_bitplanes(m, rows, arr["s1"].astype(np.int64), d)
            return d
        m = m.reshape(8, rows, -1).astype(xp.int64)
        scale = (2 ** xp.arange(8, dtype=xp.int64))[:, None, None]  # 2^n
        return (((m * scale).sum(0) + 255 * arr["s1"].astype(xp.int64)[None]) >> 1).astype(xp.int32)

    def _threshold(self, d: Any, layer: int, xp: Any, arr: dict) -> Any:
        """Packed ±1 activations ``f·d >= t`` of hidden layer ``layer`` (1-based)."""
        t, f = arr["t"][layer - 1], arr["f"][layer - 1]
        if xp is np:
            out = np.empty((d.shape[0], packed_width(d.shape[1], WORD_BITS)), dtype=np.uint64)
            if d.shape[0]:
                _threshold_pack(np.ascontiguousarray(d), t, f, out)
            return out
        return pack(f[None].astype(xp.int64) * d >= t[None], WORD_BITS)

    def _run(self, images: Any, backend: str, first_layer: str, batch_size: int, keep_hidden: bool
             ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Output-layer dot products (N, H_L) int32 and (optionally) every hidden layer's packed activations."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        backend = _resolve(backend, images)
        xp, arr = self._on(backend)
        p_all = images if _is_cupy(images) else pixels_from_inputs(images)
        if _is_cupy(p_all) and (p_all.dtype != np.uint8 or p_all.ndim != 2):
            raise ValueError(f"CuPy images must be uint8 pixels of shape (N, K), got {p_all.dtype} {p_all.shape}")
        n = p_all.shape[0]
        dots, hidden = [], [[] for _ in range(self.num_layers - 1)]
        for i0 in range(0, n, batch_size):
            p = _to_xp(p_all[i0:i0 + batch_size], xp)
            a = self._threshold(self._first_layer_d(p, xp, arr, backend, first_layer), 1, xp, arr)
            if keep_hidden:
                hidden[0].append(_to_host(a))
            for k in range(2, self.num_layers):  # Alg. 4: a_k = XnorDotProduct(a_{k-1}^b, W_k^b); sign(BN)
                a = self._threshold(binary_matmul(a, arr["w"][k - 1], self.in_features[k - 1], backend), k, xp, arr)
                if keep_hidden:
                    hidden[k - 1].append(_to_host(a))
            dots.append(_to_host(binary_matmul(a, arr["w"][-1], self.in_features[-1], backend)))
        h_last = self.widths[-1]
        dot = np.concatenate(dots) if dots else np.empty((0, h_last), dtype=np.int32)
        packed = [np.concatenate(h) if h else np.empty((0, packed_width(self.widths[i], WORD_BITS)), np.uint64)
                  for i, h in enumerate(hidden)] if keep_hidden else []
        return dot, packed

    def _output_bn(self, dot: np.ndarray) -> torch.Tensor:
        """a_L = BatchNorm(dot + bias) in float32, the model's own arithmetic (CPU)."""
        s = torch.from_numpy(dot.astype(np.float32)) + torch.from_numpy(self.out_bias)
        p = {"mean": torch.from_numpy(self.out_mean), "var": torch.from_numpy(self.out_var),
             "weight": torch.from_numpy(self.out_weight), "bias": torch.from_numpy(self.out_beta), "eps": self.out_eps}
        return _batch_norm(s, p)

    # ------------------------------------------------------------------------------ public API
    def logits(self, images: Any, backend: str = "cpu", *, first_layer: FirstLayer = "bitplanes",
               batch_size: int = 2048) -> np.ndarray:
        """The output layer ``BN(W_L^b · a_{L-1}^b + bias)`` (float32, (N, classes)), Alg. 4's a_L."""
        dot, _ = self._run(images, backend, first_layer, batch_size, keep_hidden=False)
        return self._output_bn(dot).numpy()

    def predict(self, images: Any, backend: str = "cpu", *, first_layer: FirstLayer = "bitplanes",
                batch_size: int = 2048) -> np.ndarray:
        """Predicted labels (int64, (N,)) = argmax of :meth:`logits` (first maximum, as ``torch.argmax``).

        Args:
            images: uint8 pixels (N, ...) or the float inputs ``p/255·2 − 1`` (NumPy, torch CPU tensor;
                CuPy uint8 (N, K) for the CUDA backends).
            backend: ``"cpu"`` (Numba), ``"numpy"`` (slow reference), ``"cuda"``, ``"cuda-xnor"``,
                ``"cuda-tc"`` (CuPy kernels; see :mod:`qnnlib.binary_gemm`). The output BN always runs
                on the CPU in float32 (a (N, classes) array), so every backend reproduces the CPU model.
            first_layer: ``"bitplanes"`` (Eq. 6, all layers binary) or ``"float"`` (layer 1 as an
                exact float32 GEMM of 8-bit integers, as in the paper's run-time demo). Same result.
            batch_size: images per chunk (bounds memory; each chunk uses every core).
        """
        dot, _ = self._run(images, backend, first_layer, batch_size, keep_hidden=False)
        return torch.argmax(self._output_bn(dot), dim=1).numpy()

    def forward_hidden(self, images: Any, backend: str = "cpu", *, first_layer: FirstLayer = "bitplanes",
                       batch_size: int = 2048) -> list[np.ndarray]:
        """Every hidden layer's binary activations a_k^b as ±1 int8 arrays (N, H_k) (diagnostics)."""
        _, packed = self._run(images, backend, first_layer, batch_size, keep_hidden=True)
        return [unpack(a, h).astype(np.int8) for a, h in zip(packed, self.widths)]

    def binary_layer(self, layer: int, inputs: Any, backend: str = "cpu") -> np.ndarray:
        """Hidden layer ``layer`` (2 ≤ layer ≤ L−1) on given ±1 inputs (N, K): ±1 int8 (N, H).

        ``a = +1 iff f·d >= t`` with ``d = W_b · inputs`` from the binary GEMM; equals the model's
        ``sign(BN(fc(inputs)))`` for the same binary inputs (see the module docstring).
        """
        if not 2 <= layer <= self.num_layers - 1:
            raise ValueError(f"layer must be a hidden layer 2..{self.num_layers - 1}, got {layer}")
        backend = _resolve(backend, inputs)
        xp, arr = self._on(backend)
        x = _to_xp(_as_pm1_packed(inputs, self.in_features[layer - 1]), xp)
        d = binary_matmul(x, arr["w"][layer - 1], self.in_features[layer - 1], backend)
        return unpack(_to_host(self._threshold(d, layer, xp, arr)), self.widths[layer - 1]).astype(np.int8)

    def output_layer(self, inputs: Any, backend: str = "cpu") -> np.ndarray:
        """The output layer on given ±1 inputs (N, K_L): ``BN(W_L^b · inputs + bias)``, float32 (N, classes)."""
        backend = _resolve(backend, inputs)
        xp, arr = self._on(backend)
        x = _to_xp(_as_pm1_packed(inputs, self.in_features[-1]), xp)
        return self._output_bn(_to_host(binary_matmul(x, arr["w"][-1], self.in_features[-1], backend))).numpy()


def _resolve(backend: str, data: Any) -> str:
    """``"auto"`` -> ``"cuda"`` for CuPy data, else ``"cpu"``; other names pass through (checked by ``_on``)."""
    return ("cuda" if _is_cupy(data) else "cpu") if backend == "auto" else backend


def _as_pm1_packed(inputs: Any, k: int) -> np.ndarray:
    x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    if x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"inputs must be ±1 of shape (N, {k}), got shape {x.shape}")
    if x.size and not np.isin(x, (-1, 1)).all():
        raise ValueError("inputs of a binary layer must be exactly ±1")
    return pack(x, WORD_BITS)


def _to_xp(a: Any, xp: Any) -> Any:
    if xp is np:
        return _cupy().asnumpy(a) if _is_cupy(a) else np.ascontiguousarray(a)
    return xp.ascontiguousarray(xp.asarray(a))


def _to_host(a: Any) -> np.ndarray:
    return _cupy().asnumpy(a) if _is_cupy(a) else a


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Module, str | None, nn.Module | None]]:
    """Parse ``fc1, bn1, act1, ..., fcL, bnL`` (Dropout skipped) into (fc, bn, act) triples, or raise."""
    if not isinstance(model, nn.Sequential):
        raise NotExportableError(f"got a {type(model).__name__}, not an nn.Sequential. {SUPPORTED}")
    seq = [(n, m) for n, m in model.named_children() if not isinstance(m, (nn.Dropout, nn.Identity))]
    blocks, i = [], 0
    while i < len(seq):
        name, fc = seq[i]
        if isinstance(fc, (nn.Conv2d, nn.MaxPool2d, nn.Flatten)):
            raise NotExportableError(f"{name} is a {type(fc).__name__}: convolutional networks are not supported. "
                                     f"{SUPPORTED}")
        if not isinstance(fc, nn.Linear):
            raise NotExportableError(f"expected a linear layer at {name}, got {type(fc).__name__}. {SUPPORTED}")
        if not isinstance(fc, LatentWeightLayer):
            raise NotExportableError(f"{name} is a float nn.Linear: only binary weights (QuantLinear/BinaryLinear "
                                     f"with weight_bits=1, mnist_mlp(precision=BINARY)) can be packed. {SUPPORTED}")
        if fc.weight_bits != 1:
            raise NotExportableError(f"{name} has {fc.weight_bits}-bit weights: only binary weights (weight_bits=1) "
                                     f"are supported. {SUPPORTED}")
        if i + 1 >= len(seq):
            raise NotExportableError(f"{name} is not followed by a BatchNorm1d (BN is required after every "
                                     f"layer). {SUPPORTED}")
        bn_name, bn = seq[i + 1]
        if isinstance(bn, (ShiftBatchNorm1d, ShiftBatchNorm2d)):
            raise NotExportableError(f"{bn_name} is shift-based BN (SBN, Torch7 recipe): not supported; export "
                                     f"needs vanilla nn.BatchNorm1d (Theano recipe). {SUPPORTED}")
        if not isinstance(bn, nn.BatchNorm1d):
            raise NotExportableError(f"{name} is followed by {bn_name} ({type(bn).__name__}), not by a "
                                     f"BatchNorm1d: BN is required after every layer. {SUPPORTED}")
        if bn.running_mean is None or bn.running_var is None:
            raise NotExportableError(f"{bn_name} has no running statistics (track_running_stats=False); "
                                     f"inference needs them. {SUPPORTED}")
        if bn.num_features != fc.out_features:
            raise NotExportableError(f"{bn_name} has {bn.num_features} features but {name} has {fc.out_features}")
        act_name, act = (seq[i + 2] if i + 2 < len(seq) else (None, None))
        if act is not None and isinstance(act, nn.Linear):
            act_name, act = None, None
        if act is not None:
            if not isinstance(act, QuantAct):
                raise NotExportableError(f"{act_name} is a {type(act).__name__} (a float activation): only binary "
                                         f"activations QuantAct(bits=1) are supported. {SUPPORTED}")
            if act.bits != 1:
                raise NotExportableError(f"{act_name} quantizes to {act.bits} bits: k-bit activations are not "
                                         f"supported, only binary ones (QuantAct(bits=1)). {SUPPORTED}")
        blocks.append((name, fc, bn_name, bn, act_name, act))
        i += 3 if act is not None else 2
    if len(blocks) < 2:
        raise NotExportableError(f"need at least one hidden layer and an output layer, got {len(blocks)} layer(s). "
                                 f"{SUPPORTED}")
    for name, *_, act in blocks[:-1]:
        if act is None:
            raise NotExportableError(f"hidden layer {name} has no binary activation. {SUPPORTED}")
    if blocks[-1][5] is not None:
        raise NotExportableError(f"the output layer {blocks[-1][0]} must end with BN and no activation. {SUPPORTED}")
    for (n0, fc0, *_), (n1, fc1, *_) in zip(blocks, blocks[1:]):
        if fc0.out_features != fc1.in_features:
            raise NotExportableError(f"{n0} has {fc0.out_features} outputs but {n1} expects {fc1.in_features} inputs")
    return blocks


@torch.no_grad()
def export_bnn(model: nn.Module) -> PackedBNN:
    """Export an eval-mode binary :func:`qnnlib.models.mnist_mlp` to a :class:`PackedBNN`.

    Weights: ``W_b = sign(W)`` (sign(0) = +1) packed 64 per ``uint64`` word along the fan-in.
    Layer 1: row sums S and a float64 threshold on D = W_b·p (Eq. 6). Hidden layers ≥ 2: (t, f) read
    off the model's own float32 ``sign(BN(d + bias))`` on every candidate d. Output layer: bias and
    BN kept in float32. The model's eval-mode semantics are exported (running statistics, dropout off)
    whatever its current mode; its parameters are not changed. Raises :class:`NotExportableError`
    naming the offending layer for anything else (float or k-bit layers, SBN, missing BN, convs).
    """
    blocks = _blocks(model)
    weights, fan_in, thresholds, flips, fragile = [], [], [], [], []
    row_sum = np.zeros(0, np.int32)
    out: dict[str, Any] = {}
    for idx, (name, fc, _bn_name, bn, _act_name, _act) in enumerate(blocks, 1):
        if fc.weight.dtype != torch.float32:
            raise NotExportableError(f"{name} is {fc.weight.dtype}; export expects a float32 model")
        wb = fc.quantized_weight().detach().cpu().float()  # W_b = sign(W), exactly as the forward pass
        k = fc.in_features
        weights.append(pack(wb, WORD_BITS))
        fan_in.append(k)
        bias = fc.bias.detach().cpu().float() if fc.bias is not None else torch.zeros(fc.out_features)
        bnp = _bn_tensors(bn)
        if idx == 1:
            row_sum = wb.sum(1).to(torch.int32).numpy()  # S = Σ_j W_b[:, j] (exact)
            t, f = _first_layer_thresholds(k, row_sum, bias.numpy(), bnp)
        elif idx < len(blocks):
            t, f, n_fragile = _hidden_thresholds(k, bias, bnp)
            fragile.append(n_fragile)
        else:
            out = dict(out_bias=bias.numpy().copy(), out_mean=bnp["mean"].numpy().copy(),
                       out_var=bnp["var"].numpy().copy(), out_weight=bnp["weight"].numpy().copy(),
                       out_beta=bnp["bias"].numpy().copy(), out_eps=bnp["eps"])
            continue
        thresholds.append(t)
        flips.append(f)
    return PackedBNN(weights=weights, in_features=tuple(fan_in), thresholds=thresholds, flips=flips,
                     row_sum=row_sum, fragile=tuple(fragile), **out)


# ---------------------------------------------------------------------------------------------------
# Checks against the PyTorch model, sizes on disk
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def _torch_activations(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every hidden act's output and the model output, running the eval-mode model module by module."""
    was_training = model.training
    model.eval()
    try:
        acts, h = [], x
        for _name, m in model.named_children():
            h = m(h)
            if isinstance(m, QuantAct):
                acts.append(h)
        return acts, h
    finally:
        model.train(was_training)


@torch.no_grad()
def compare_with_model(model: nn.Module, packed: PackedBNN, images: Any, backend: str = "cpu", *,
                       first_layer: FirstLayer = "bitplanes", batch_size: int = 2048) -> dict[str, Any]:
    """Compare ``packed`` with the eval-mode PyTorch ``model`` on ``images`` (8-bit, see :func:`pixels_from_inputs`).

    Returns:
        ``predictions_identical`` (bool), ``prediction_mismatches`` (int), ``n_images``;
        ``first_layer_agreement``: fraction of layer-1 activations equal to the model's (Eq. 6 with a
        float64 threshold vs PyTorch's float32 GEMM), ``first_layer_mismatches``;
        ``hidden_layer_mismatches``: per layer k ≥ 2, activations that differ when both get the
        *model's* binary inputs a_{k-1}^b (0 means the thresholds reproduce sign(BN) exactly);
        ``output_argmax_mismatches``: argmax differences of the output layer given the model's a_{L-1}^b;
        ``fragile``: :attr:`PackedBNN.fragile`.
    """
    p = pixels_from_inputs(images)
    x = inputs_from_pixels(p)
    acts, out = _torch_activations(model, x)
    ref = torch.argmax(out, dim=1).numpy()
    mine_hidden = packed.forward_hidden(p, backend, first_layer=first_layer, batch_size=batch_size)
    pred = packed.predict(p, backend, first_layer=first_layer, batch_size=batch_size)
    a1 = acts[0].numpy().astype(np.int8)
    first_mis = int((mine_hidden[0] != a1).sum())
    hidden_mis = []
    for k in range(2, packed.num_layers):
        mine = packed.binary_layer(k, acts[k - 2], backend)
        hidden_mis.append(int((mine != acts[k - 1].numpy().astype(np.int8)).sum()))
    out_mine = packed.output_layer(acts[-1], backend)
    out_mis = int((np.argmax(out_mine, axis=1) != ref).sum())
    mismatches = int((pred != ref).sum())
    return {"n_images": int(len(p)), "predictions_identical": mismatches == 0, "prediction_mismatches": mismatches,
            "first_layer_agreement": 1.0 - first_mis / max(1, a1.size), "first_layer_mismatches": first_mis,
            "first_layer_activations": int(a1.size), "hidden_layer_mismatches": hidden_mis,
            "output_argmax_mismatches": out_mis, "fragile": list(packed.fragile)}


def size_report(model: nn.Module, packed: PackedBNN, directory: str | os.PathLike) -> dict[str, float]:
    """Bytes on disk: ``torch.save(model.state_dict())`` vs :meth:`PackedBNN.save` (uncompressed ``.npz``).

    Returns ``float_state_dict_bytes`` and ``packed_bytes`` (file sizes as written), ``file_ratio``
    (whole files); ``binary_weight_float_bytes`` (4 bytes per latent weight of the binary layers, as
    stored in the state_dict) vs ``binary_weight_packed_bytes`` (the packed words, padding included)
    and their ``binary_layers_ratio`` (≈ 32·K/(64·ceil(K/64)), e.g. 30.2x for K = 784).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    f32 = d / "float_state_dict.pt"
    torch.save(model.state_dict(), f32)
    pk = packed.save(d / "packed_bnn.npz")
    bw_float = sum(4 * m.weight.numel() for m in model.modules()
                   if isinstance(m, LatentWeightLayer) and m.weight_bits == 1)
    bw_packed = sum(w.nbytes for w in packed.weights)
    fb, pb = f32.stat().st_size, pk.stat().st_size
    return {"float_state_dict_bytes": fb, "packed_bytes": pb, "file_ratio": fb / pb,
            "binary_weight_float_bytes": bw_float, "binary_weight_packed_bytes": bw_packed,
            "binary_layers_ratio": bw_float / bw_packed if bw_packed else math.nan,
            "packed_file": str(pk), "float_file": str(f32)}
