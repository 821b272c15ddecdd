"""8-bit inputs as bit-planes (paper Eq. 6): the first layer of a BNN on binary kernels only.

The first layer's inputs are 8-bit pixels ``p`` (the model sees ``x = p/255·2 − 1``, the
``qnnlib.data.mnist`` scaling). Write ``p = Σ_{n=0..7} 2^n p^n`` with bit-planes ``p^n ∈ {0,1}^K``. Each
plane as a ±1 vector ``q_n = 2 p^n − 1`` goes through the binary GEMM, and ``W_b·p^n = (W_b·q_n + S)/2``
with ``S`` the row sums of ``W_b``; so (Eq. 6, ``s = Σ_{n=1..8} 2^{n-1} XnorDotProduct(a_0^n, W_1^b)``)::

    D = W_b·p = Σ_n 2^n (W_b·q_n + S)/2 = (Σ_n 2^n M_n + 255 S) / 2,    M_n = W_b·q_n

is an exact integer, and ``W_b·x = (2/255)·D − S``. :func:`bitplane_dot` computes ``D`` (Numba kernels
on the CPU, array code for the other backends); :func:`pixels_from_inputs` and
:func:`inputs_from_pixels` convert between the model's float inputs and the 8-bit pixels. The planes are
packed in the runtime's words (:data:`qnnlib.runtime.bitpack.WORD_BITS`, 64 values per ``uint64``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import njit, prange

from qnnlib.runtime.binary_gemm import binary_matmul
from qnnlib.runtime.bitpack import WORD_BITS, as_u64_words, pack, pack_word, packed_width
from qnnlib.runtime.folding import threshold_activations
from qnnlib.runtime.gemm_cpu import compiled_tile, matmul_bitplanes_sign_cpu

__all__ = ["PLANES", "inputs_from_pixels", "pixels_from_inputs", "pack_bitplanes", "pack_bitplane_panels",
           "bitplane_dot", "bitplane_sign"]

PLANES = 8  # bits per input pixel


def inputs_from_pixels(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """8-bit pixels (N, ...) -> the model's float32 inputs ``p/255·2 − 1`` (N, K), as ``qnnlib.data.mnist``."""
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
        raise ValueError("float images must be pixel/255*2-1 in [-1, 1] (the qnnlib.data.mnist scaling)")
    p = np.rint((xf + 1.0) / 2.0 * 255.0)
    off = float(np.abs(xf - (p / 255.0 * 2.0 - 1.0)).max()) if xf.size else 0.0
    if off > 1e-4:
        raise ValueError(
            f"float images are not 8-bit pixels scaled as p/255*2-1 (max distance to that grid {off:.3g}); "
            "the first layer of a PackedBNN splits 8-bit inputs into bit-planes (Eq. 6), so pass uint8 "
            "pixels or inputs produced by qnnlib.data.mnist"
        )
    return np.clip(p, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Numba kernels (CPU): bit-planes and the Eq. 6 recombination
# ---------------------------------------------------------------------------------------------------


@njit(inline="always")
def _plane_bit(source, j):  # pragma: no cover - compiled by Numba
    """Bit ``n`` of pixel ``p[i, j]`` for ``source = (p, i, n)``: the bit-plane p^n (1 = +1 in q_n = 2 p^n − 1)."""
    p, i, n = source
    return (p[i, j] >> n) & 1


@njit(parallel=True, cache=True, nogil=True)
def _pack_planes(p, out):  # pragma: no cover - compiled by Numba
    """``out[i, w, n] = word w of pack(bit n of p[i, :])`` for uint8 pixels ``p`` (N, K) and uint64 ``out``
    (N, ceil(K/64), 8), contiguous or a transposed view; each word built by
    :func:`qnnlib.runtime.bitpack.pack_word` (LSB first, zero padding)."""
    rows, k = p.shape
    words = out.shape[1]
    for i in prange(rows):
        for w in range(words):
            j0 = w * 64
            j1 = min(k, j0 + 64)
            for n in range(8):
                out[i, w, n] = pack_word(_plane_bit, (p, i, n), j0, j1)


def pack_bitplanes(p: np.ndarray, out: np.ndarray) -> None:
    """``out[n, i, :] = pack(bit n of p[i, :])`` for n = 0..7: the bit-planes p^n of Eq. 6 in place.

    ``p`` is uint8 pixels (N, K); ``out`` is uint64 (8, N, ceil(K/64)), the :func:`qnnlib.runtime.bitpack.pack`
    layout (LSB first, zero padding).
    """
    _pack_planes(p, out.transpose(1, 2, 0))


def pack_bitplane_panels(p: np.ndarray, out: np.ndarray) -> None:
    """``out[i, w, n] = word w of pack(bit n of p[i, :])``: the 8 bit-planes of each input side by side, the
    row-panel layout of the fused Eq. 6 kernel (:func:`qnnlib.runtime.gemm_cpu.bitplane_sign_gemm`).

    ``p`` is uint8 pixels (N, K); ``out`` is uint64 (N, ceil(K/64), 8)."""
    _pack_planes(p, out)


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


# ---------------------------------------------------------------------------------------------------
# Eq. 6
# ---------------------------------------------------------------------------------------------------


def bitplane_dot(p: Any, w_packed: Any, row_sum: Any, k: int, backend: str, xp: Any = np) -> Any:
    """``D = W_b · p`` (int32, (N, H)) for 8-bit pixels ``p`` (uint8, (N, K)) by Eq. 6.

    The 8 bit-planes ``q_n = 2 p^n − 1`` go through :func:`qnnlib.runtime.binary_gemm.binary_matmul` with the
    packed ``W_b`` (``w_packed``, (H, ceil(K/64)) uint64) as one (8N, K) GEMM; the products are
    recombined as ``D = (Σ_n 2^n M_n + 255 S) / 2`` with ``S = row_sum`` (Σ_j W_b[:, j]). ``xp`` is the
    array module of ``p``, ``w_packed`` and ``row_sum`` (NumPy for CPU backends, CuPy for CUDA ones).
    """
    rows, w = p.shape[0], packed_width(k, WORD_BITS)
    if xp is np and backend == "cpu":
        planes = np.empty((PLANES, rows, w), dtype=np.uint64)
        if rows:
            pack_bitplanes(p, planes)
    else:
        shifts = xp.arange(PLANES, dtype=xp.uint8)[:, None, None]
        planes = pack(((p[None] >> shifts) & 1).astype(bool), WORD_BITS)  # bit 1 = +1 = (p^n = 1)
    m = binary_matmul(planes.reshape(PLANES * rows, w), w_packed, k, backend)  # W_b · q_n, (8N, H)
    if xp is np:
        d = np.empty((rows, m.shape[1]), dtype=np.int32)
        if rows:
            _combine_bitplanes(m, rows, row_sum.astype(np.int64), d)
        return d
    m = m.reshape(PLANES, rows, -1).astype(xp.int64)
    scale = (2 ** xp.arange(PLANES, dtype=xp.int64))[:, None, None]  # 2^n
    return (((m * scale).sum(0) + 255 * row_sum.astype(xp.int64)[None]) >> 1).astype(xp.int32)


def bitplane_sign(p: Any, w_packed: Any, row_sum: Any, k: int, t: Any, f: Any, backend: str, xp: Any = np) -> Any:
    """The first layer's packed ±1 activations ``+1 iff f·D >= t`` with ``D = W_b·p`` from Eq. 6 (uint64
    (N, ceil(H/64))); ``t``, ``f`` are the folded first-layer thresholds and flips.

    On the ``"cpu"`` backend of a CPU with AVX-512 VPOPCNTDQ this is one fused pass
    (:func:`qnnlib.runtime.gemm_cpu.bitplane_sign_gemm`): each 8-row register tile holds the 8 bit-planes of
    one input, and neither the plane products nor ``D`` are written to memory. Elsewhere it is
    :func:`bitplane_dot` followed by the comparison (the reference the fused pass is tested against).
    """
    if xp is np and backend == "cpu" and compiled_tile() == (8, 2):
        rows, w = p.shape[0], packed_width(k, WORD_BITS)
        planes = np.empty((rows, w, PLANES), dtype=np.uint64)
        if rows:
            pack_bitplane_panels(np.ascontiguousarray(p, dtype=np.uint8), planes)
        return matmul_bitplanes_sign_cpu(planes, as_u64_words(w_packed), k, np.asarray(row_sum), np.asarray(t),
                                         np.asarray(f))
    d = bitplane_dot(p, w_packed, row_sum, k, backend, xp)
    return threshold_activations(d, xp.asarray(t), xp.asarray(f), xp)
