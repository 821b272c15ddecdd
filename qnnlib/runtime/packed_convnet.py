"""The packed binary ConvNet: paper Alg. 4 ("Running a BNN") for the VGG-like ConvNets of Table 1.

A :class:`PackedConvNet` runs :func:`qnnlib.models.convnet.convnet` (CIFAR-10, SVHN) on bit-packed
activations; :func:`qnnlib.runtime.export_convnet.export_convnet` builds one from an eval-mode model and
:func:`qnnlib.runtime.export_convnet.compare_convnet` checks it against PyTorch, activation by activation.

**Layout.** Binary activations are stored NHWC with the channels of each pixel packed into
``ceil(C/64)`` ``uint64`` words (:func:`qnnlib.runtime.bitpack.pack` layout, bit 1 = +1, padding bits 0).

**Layer 1 (real-valued image) — float, bit-identical.** ``s = conv(x, W_1^b) + b`` is computed with the very
``torch.nn.functional.conv2d`` call the model makes (same inputs, same op, hence the same float32 bits), then
max-pooled (when the block pools) and compared with one float32 threshold per channel, ``a = +1 iff f·s ≥ τ``.
``τ`` is found at export by bisection over the float32 numbers, evaluating the model's own BN module on
each candidate, so ``f·s ≥ τ`` equals ``sign(BN(s))`` for every float32 ``s`` (BN is a monotone float map).
The paper's run-time demo ran its first layer on the float kernel too (NIPS 2016 §4).

**Layer 1 as bit-planes (Eq. 6) — ``first_layer="bitplanes"``, exact integers.** For 8-bit images (uint8 pixels
``p``, or the model's floats ``x = 2p/255 − 1``, :func:`images_as_pixels`) with ±1 first-conv weights. The model
pads ``x`` with **0**, which is no pixel value (``x = 0 ⇔ p = 127.5``), so the border is worked out exactly: over
the taps of output pixel (y, x) that lie inside the image, ``W_b·x = (2/255)·D_in − S_in`` with the integers
``D_in = Σ W_b·p`` and ``S_in = Σ W_b`` (padded taps add nothing). The runtime computes, per output pixel and
channel, the exact integer **``E = 255·(W_b ⋆ x) = 2·D_in − 255·S_in``** (so ``s = E/255 + bias`` in exact
arithmetic), :meth:`PackedConvNet.first_layer_integer`:

- :func:`bitplane_conv_sums` packs, per output pixel, the 8 bit-planes ``q_n = 2p^n − 1`` of its ``k²·C`` pixels
  (im2col straight into packed words; taps outside the image are pixel 0, i.e. plane bits 0, ``q_n = −1``) and
  XOR-popcounts them with the packed ``W_b`` (Eq. 7): ``Σ_n 2^n M_n = 2·D_in − 255·S`` with ``S`` the full row
  sum over all ``k²·C`` taps (Eq. 6: ``2·W_b·p = Σ_n 2^n M_n + 255·S``; padded pixels 0 add nothing to D);
- ``E = Σ_n 2^n M_n + 255·S_pad[y, x, o]`` with ``S_pad = S − S_in`` the sum of ``W_b`` over the padded taps
  (:func:`first_border_sums`): one (H, W, O) int32 table, zero in the interior, one value per border case (9 for
  3×3), added in the pool/threshold pass like the binary layers' border correction;
- ``s = E/255 + bias`` is the **same** increasing map of ``E`` at every position (the border case is inside E),
  so the 2×2 max-pool, when the block pools, is taken exactly on the integers ``E``: ``max s = (max E)/255 + b``;
- BN + sign fold into ``f·E ≥ t`` with ``t`` from the crossing of ``BN(E/255 + bias) = 0`` solved in float64
  (:func:`qnnlib.runtime.export_convnet.bitplane_thresholds`, as :func:`qnnlib.runtime.folding.first_layer_thresholds`
  for the MLP). This is the exact-arithmetic ``sign(BN(s))``; PyTorch's float32 conv of the float32 ``x`` can differ
  where ``s`` lies within float32 rounding of the crossing (:func:`~qnnlib.runtime.export_convnet.compare_convnet`
  with ``first_layer="bitplanes"`` measures it; 0 of 6.5 M layer-1 activations differed on a random width-0.5
  CIFAR-10 net, none on the test models).

The default stays ``first_layer="float"`` (bit-identical by construction). Measured on 2 cores (AVX-512
VPOPCNTDQ, shared machine, noisy), batch 100, width-0.5 CIFAR-10 layer 1 (3→64 at 32×32, no pool): the float
conv 23–55 ms, the bit-plane sums 40–56 ms; pool+threshold ≈ 20–30 ms for both; whole network 250–265 ms float,
285–325 ms bit-planes.

**File.** :meth:`PackedConvNet.save` / :meth:`PackedConvNet.load` write / read the runtime's packed checkpoint
(:mod:`qnnlib.runtime.packed_checkpoint`, kind ``"packed-convnet"``, an uncompressed ``.npz`` without pickle),
layers named as the model names them (conv layers ``conv1..conv{Lc}``, fc layers ``fc{Lc+1}..fc{L}``):

- ``conv{k}.weight.packed`` / ``fc{k}.weight.packed``: ``sign(W)`` in the model's own weight shape ((O, C, k, k)
  for convs, (F, K) with PyTorch's NCHW flatten for the first fc), bit-packed along the fan-in; the runtime
  layouts (im2col order, NHWC fc columns) are rebuilt at load. A float first conv is stored as the float32 array
  ``conv1.weight`` instead;
- ``conv1.bias``, ``conv1.threshold``, ``conv1.flip`` (float32 ``τ``, ``f``), ``conv1.bitplane_threshold`` /
  ``conv1.bitplane_flip`` (int32 / int8, when the first conv is binary); ``conv{k}.threshold`` / ``.flip`` and
  ``fc{k}.threshold`` / ``.flip`` (int32 / int8) for the binary hidden layers;
- the output layer's ``fc{L}.bias``, ``bn{L}.running_mean``, ``.running_var``, ``.weight``, ``.bias``
  (``.running_invstd`` for a Lasagne BN); ``meta["attrs"]``: ``in_shape``, ``ksize``, ``pools``, ``out_eps``,
  ``fragile``, ``layer_names``.

**Binary conv layers — im2col on packed words + Eq. 7.** For each output pixel the words of its ``k×k``
neighbours are gathered into one row of ``k²·ceil(C/64)`` words (:func:`im2col_packed`: a word copy, no
unpacking), and ``d = binary_matmul(cols, W_b)`` is the XNOR-popcount GEMM of Eq. 7 on the ``"cpu"`` backend
(weights packed in the same (tap, channel-word) order). The integer sums are then max-pooled exactly and
compared with the folded BN + sign thresholds ``f·d ≥ t`` (:mod:`qnnlib.runtime.folding`), writing the packed
words of the next layer (:func:`pool_threshold_pack`) — Alg. 4's ``a_k^b = Sign(BatchNorm(a_k))``.

**Why im2col.** The gather copies 9 words per channel word and output pixel, but lets every conv run on the
register-tiled AVX-512 ``vpopcntq`` GEMM. Measured on 2 cores (batch 100, width-0.5 CIFAR-10 layers 64→64 at
32×32, 128→128 at 16×16, 256→256 at 8×8): im2col 4.0 / 0.9 / 0.2 ms + GEMM 13.5 / 6.0 / 5.2 ms, against 66 /
47 / 31 ms for a direct Numba conv (XOR-popcount over the 9 neighbours' words, no gather): im2col + GEMM is
4–6× faster, and the gather is 4–30 % of the GEMM's time.

**The padded border is not binary.** PyTorch pads the ±1 activations with **0** (``padding=1``,
``padding_mode="zeros"``): a border output sums only its in-image neighbours, as if the input there were a
ternary 0 — neither +1 nor −1. The ±1 network is therefore not "pure" binary at the border, and a packed
word has no 0 to store. We pad with 0 *bits* (−1 values) and add back, per output pixel and channel, the
integer ``Σ_{padded taps} Σ_c W_b[o, c, tap]`` (what the −1 padding wrongly subtracted), together with the
constant ``−k²·(64·ceil(C/64) − C)`` that removes the matching zero padding bits inside the words. The
correction depends only on the pixel's border case (9 cases for 3×3 with padding 1, interior included),
so it is one (H, W, O) int32 table per layer, built once from the packed weights; at run time it is one
integer add per conv sum, fused into the pool/threshold pass. Its cost is that add and the table
(H·W·O·4 bytes). A border output's ``d`` ranges over ``[−K', K']`` with ``K' = (in-image taps)·C``,
whose parity differs from the interior's when ``C`` is odd, so the thresholds are read off the BN on
*every* integer of ``[−K, K]``, not only those of the interior's parity.

**Fully connected layers.** PyTorch flattens NCHW (index ``c·H·W + y·W + x``); the packed activations are
flattened NHWC with per-pixel word padding. Instead of transposing activations, the export reorders the
first fc layer's weight columns into (y, x, channel-word) order (:func:`fc_weight_nhwc`); the padding bits
add the constant ``H·W·(64·ceil(C/64) − C)``, folded into that layer's thresholds. Hidden fc layers then
run exactly as :class:`qnnlib.runtime.packed_bnn.PackedBNN`'s; the output layer is ``dot + bias`` and the
model's BN in float32, then argmax.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange, types
from numba.extending import intrinsic

from qnnlib.runtime.binary_gemm import binary_matmul, binary_matmul_sign
from qnnlib.runtime.bitpack import WORD_BITS, pack, pack_word, packed_width, unpack
from qnnlib.runtime.bitplanes import pixels_from_inputs
from qnnlib.runtime.folding import batch_norm
from qnnlib.runtime.packed_checkpoint import PACKED_CONVNET_KIND, PackedCheckpoint, load_network, write_checkpoint

__all__ = ["FirstLayer", "PackedConvNet", "im2col_packed", "bitplane_conv_sums", "pool_threshold_pack",
           "conv_weight_packed", "first_weight_packed", "first_border_sums", "fc_weight_nhwc", "border_offsets",
           "images_as_inputs", "images_as_pixels"]

FirstLayer = Literal["float", "bitplanes"]


# ---------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True, nogil=True)
def im2col_packed(a: np.ndarray, ksize: int, out: np.ndarray) -> None:  # pragma: no cover - compiled by Numba
    """im2col on packed words: ``out[(n·H + y)·W + x, (dy·k + dx)·Wc + q] = a[n, y+dy−p, x+dx−p, q]``.

    ``a`` is (N, H, W, Wc) uint64 (channels packed per pixel), ``out`` (N·H·W, k²·Wc) uint64, ``p = k // 2``;
    neighbours outside the image are all-zero words (−1 values, corrected by :func:`border_offsets`).
    """
    n_img, h, w, wc = a.shape
    pad = ksize // 2
    for r in prange(n_img * h):
        n = r // h
        y = r - n * h
        for x in range(w):
            row = r * w + x
            for dy in range(ksize):
                yy = y + dy - pad
                for dx in range(ksize):
                    xx = x + dx - pad
                    base = (dy * ksize + dx) * wc
                    if 0 <= yy < h and 0 <= xx < w:
                        for q in range(wc):
                            out[row, base + q] = a[n, yy, xx, q]
                    else:
                        for q in range(wc):
                            out[row, base + q] = np.uint64(0)


@intrinsic
def _popcount(typingctx, x):
    """``popcount(x)`` of a uint64 (LLVM ``ctpop``: ``vpopcntq`` where the loop vectorises on AVX-512 VPOPCNTDQ)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(parallel=True, cache=True, nogil=True)
def bitplane_conv_sums(p: np.ndarray, ksize: int, w_t: np.ndarray, kk: int,
                       out: np.ndarray) -> None:  # pragma: no cover - compiled by Numba
    """Eq. 6 for a conv, im2col fused with Eq. 7: ``out[row, o] = Σ_n 2^n M_n[row, o]``, ``M_n = W_b·q_n`` the ±1
    product of bit-plane ``n`` of the ``k²·C`` pixels under output pixel ``row = (i·H + y)·W + x``.

    ``p`` is (N, C, H, W) uint8 (NCHW, as the model takes images); each output pixel's 8 plane rows are packed on
    the fly, value ``j = (dy·k + dx)·C + c`` at bit ``j`` (:func:`first_weight_packed`'s order), taps outside the
    image as pixel 0 (all plane bits 0, ``q_n = −1``). ``w_t`` is the packed weights transposed,
    (ceil(kk/64), O) uint64, ``kk = k²·C``; ``out`` (N·H·W, O) int32. With ``pc_n`` the popcount of
    ``q_n XOR W_b``, ``M_n = kk − 2·pc_n`` and ``Σ_n 2^n M_n = 255·kk − 2·Σ_n 2^n pc_n``.
    """
    n_img, c0, h, w = p.shape
    pad = ksize // 2
    words, o_total = w_t.shape
    for r in prange(n_img * h):
        i = r // h
        y = r - i * h
        planes = np.empty((8, words), np.uint64)
        acc = np.empty(o_total, np.int64)
        for x in range(w):
            planes[:] = 0
            for dy in range(ksize):
                yy = y + dy - pad
                if yy < 0 or yy >= h:
                    continue
                for dx in range(ksize):
                    xx = x + dx - pad
                    if xx < 0 or xx >= w:
                        continue
                    for c in range(c0):
                        j = (dy * ksize + dx) * c0 + c
                        v = np.uint64(p[i, c, yy, xx])
                        q = j >> 6
                        sh = np.uint64(j & 63)
                        for b in range(8):
                            planes[b, q] |= ((v >> np.uint64(b)) & np.uint64(1)) << sh
            acc[:] = 0
            for b in range(8):
                for q in range(words):
                    pw = planes[b, q]
                    for o in range(o_total):
                        acc[o] += np.int64(_popcount(pw ^ w_t[q, o])) << b
            row = r * w + x
            for o in range(o_total):
                out[row, o] = np.int32(255 * kk - 2 * acc[o])


@njit(inline="always")
def _fires(source, c):  # pragma: no cover - compiled by Numba
    """``f[c]·v[c] >= t[c]``: channel c of the (pooled, corrected) pixel ``v`` is +1."""
    v, t, f = source
    return f[c] * v[c] >= t[c]


@njit(parallel=True, cache=True, nogil=True)
def pool_threshold_pack(d: np.ndarray, off: np.ndarray, t: np.ndarray, f: np.ndarray, pool: bool,
                        out: np.ndarray) -> None:  # pragma: no cover - compiled by Numba
    """Border correction + exact 2×2 max-pool + folded BN/sign, packed: ``out[n, yo, xo, word]``.

    ``d`` (N, H, W, C) conv sums (int32, or float32 for the float first layer; any strides), ``off`` (H, W, C)
    the per-pixel correction of :func:`border_offsets` (zeros for layer 1), ``t``/``f`` (C,) threshold and flip
    (same kind as ``d``), ``pool``: MaxPool2d(2) (floor) before BN. ``out`` is (N, Ho, Wo, ceil(C/64)) uint64,
    bit 1 where ``f·max(d + off) >= t`` (Alg. 4: Sign(BatchNorm(MaxPool(a_k)))), via
    :func:`qnnlib.runtime.bitpack.pack_word`.
    """
    n_img, ho, wo, words = out.shape
    c_total = d.shape[3]
    for r in prange(n_img * ho):
        n = r // ho
        yo = r - n * ho
        v = np.empty(c_total, d.dtype)  # one output pixel, all channels: contiguous, vectorised loops
        for xo in range(wo):
            if pool:
                y, x = 2 * yo, 2 * xo
                for c in range(c_total):
                    a = d[n, y, x, c] + off[y, x, c]
                    b = d[n, y, x + 1, c] + off[y, x + 1, c]
                    e = d[n, y + 1, x, c] + off[y + 1, x, c]
                    g = d[n, y + 1, x + 1, c] + off[y + 1, x + 1, c]
                    v[c] = max(max(a, b), max(e, g))
            else:
                for c in range(c_total):
                    v[c] = d[n, yo, xo, c] + off[yo, xo, c]
            for q in range(words):
                j0 = q * 64
                out[n, yo, xo, q] = pack_word(_fires, (v, t, f), j0, min(c_total, j0 + 64))


# ---------------------------------------------------------------------------------------------------
# Weight layouts and the border correction
# ---------------------------------------------------------------------------------------------------


def conv_weight_packed(w_b: Any) -> np.ndarray:
    """±1 conv weights (O, C, k, k) -> (O, k²·ceil(C/64)) uint64 in im2col order (tap-major, channel words)."""
    w = torch.as_tensor(w_b).detach().cpu().float()
    o, c, kh, kw = w.shape
    return np.ascontiguousarray(pack(w.permute(0, 2, 3, 1).numpy(), WORD_BITS).reshape(o, kh * kw * packed_width(c)))


def fc_weight_nhwc(w_b: Any, channels: int, height: int, width: int) -> np.ndarray:
    """The first fc layer's ±1 weights (F, C·H·W), PyTorch's NCHW flatten order, reordered to the packed NHWC
    activations: (F, H·W·ceil(C/64)) uint64 (columns (y, x, channel word)); no activation is transposed."""
    w = torch.as_tensor(w_b).detach().cpu().float()
    f = w.shape[0]
    if w.shape[1] != channels * height * width:
        raise ValueError(f"fc weight has {w.shape[1]} inputs, expected C·H·W = {channels}·{height}·{width}")
    nhwc = w.reshape(f, channels, height, width).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(pack(nhwc, WORD_BITS).reshape(f, height * width * packed_width(channels)))


def border_offsets(weights: np.ndarray, channels: int, ksize: int, height: int, width: int) -> np.ndarray:
    """The exact correction (H, W, O) int32 added to the packed conv sums to get PyTorch's zero-padded conv.

    ``off[y, x, o] = Σ_{taps of (y, x) outside the image} Σ_c W_b[o, c, tap] − k²·(64·Wc − C)``: the padded
    taps were multiplied by −1 (zero words) but PyTorch multiplies them by 0; the zero padding bits of each
    word matched (+1 each in Eq. 7) but are not inputs.
    """
    wc = packed_width(channels)
    o = weights.shape[0]
    w = unpack(weights.reshape(o, ksize * ksize, wc), channels)  # (O, k², C) ±1
    tap_sum = w.sum(axis=2).astype(np.int64)  # S[o, tap]
    pad = ksize // 2
    ys = np.arange(height)[:, None] + np.arange(ksize)[None, :] - pad  # (H, k)
    xs = np.arange(width)[:, None] + np.arange(ksize)[None, :] - pad
    out_y = (ys < 0) | (ys >= height)
    out_x = (xs < 0) | (xs >= width)
    padded = out_y[:, None, :, None] | out_x[None, :, None, :]  # (H, W, k, k)
    off = padded.reshape(height, width, ksize * ksize).astype(np.int64) @ tap_sum.T
    off -= ksize * ksize * (WORD_BITS * wc - channels)
    return np.ascontiguousarray(off.astype(np.int32))


def first_weight_packed(w_b: Any) -> np.ndarray:
    """The first conv's ±1 weights (O, C, k, k) -> (O, ceil(k²·C/64)) uint64, value ``j = (dy·k + dx)·C + c`` at
    bit ``j`` of the row: the order of :func:`bitplane_conv_sums` (taps and channels contiguous, no per-tap padding)."""
    w = torch.as_tensor(w_b).detach().cpu().float()
    o = w.shape[0]
    return np.ascontiguousarray(pack(w.permute(0, 2, 3, 1).reshape(o, -1).numpy(), WORD_BITS))


def first_border_sums(w_b: Any, height: int, width: int) -> np.ndarray:
    """``S_pad[y, x, o] = Σ_{taps of (y, x) outside the image} Σ_c W_b[o, c, tap]`` (H, W, O) int32 for the first
    conv's ±1 weights (O, C, k, k), padding ``k // 2``: zero in the interior, one value per border case."""
    w = np.asarray(torch.as_tensor(w_b).detach().cpu().float().numpy())
    o, _c, k, _ = w.shape
    tap_sum = np.rint(w.sum(axis=1)).astype(np.int64).reshape(o, k * k)  # (O, k²)
    pad = k // 2
    ys = np.arange(height)[:, None] + np.arange(k)[None, :] - pad
    xs = np.arange(width)[:, None] + np.arange(k)[None, :] - pad
    padded = ((ys < 0) | (ys >= height))[:, None, :, None] | ((xs < 0) | (xs >= width))[None, :, None, :]
    return np.ascontiguousarray((padded.reshape(height, width, k * k).astype(np.int64) @ tap_sum.T).astype(np.int32))


def images_as_inputs(images: Any, shape: tuple[int, int, int]) -> torch.Tensor:
    """The model's float32 input (N, C, H, W): float images as given, or uint8 pixels as ``p/255·2 − 1``
    (``qnnlib.data.cifar10``'s scaling); ``ValueError`` naming the expected shape otherwise."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"images must have shape (N, {shape[0]}, {shape[1]}, {shape[2]}) (N images of C×H×W, "
                         f"NCHW as the model takes them), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return torch.from_numpy(x.numpy().astype(np.float32) / 255.0 * 2.0 - 1.0)
    if not x.dtype.is_floating_point:
        raise ValueError(f"images must be float (the model's inputs) or uint8 pixels, got dtype {x.dtype}")
    return x.float().contiguous()


def images_as_pixels(images: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """The 8-bit pixels (N, C, H, W) uint8 of ``images``: uint8 pixels as given, or the model's float inputs on
    the grid ``x = 2p/255 − 1`` (:func:`qnnlib.runtime.bitplanes.pixels_from_inputs`, which rejects floats off
    that grid); ``ValueError`` naming the expected shape otherwise."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"images must have shape (N, {shape[0]}, {shape[1]}, {shape[2]}) (N images of C×H×W, "
                         f"NCHW as the model takes them), got shape {tuple(x.shape)}")
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise ValueError(f"images must be float (the model's inputs) or uint8 pixels, got dtype {x.dtype}")
    try:
        p = pixels_from_inputs(x) if len(x) else np.zeros((0, int(np.prod(shape))), np.uint8)
    except ValueError as exc:
        raise ValueError(f"first_layer='bitplanes' needs 8-bit images: {exc}; or use first_layer='float'") from exc
    return np.ascontiguousarray(p.reshape(len(x), *shape))


# ---------------------------------------------------------------------------------------------------
# The packed network
# ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class PackedConvNet:
    """A binary ConvNet ready for the binary kernels (see the module docstring for every layer's arithmetic).

    Attributes (conv layers 1..Lc, fc layers Lc+1..L; layer 1 is float):
        in_shape: (C0, H0, W0) of the input images.
        ksize: the convs' square kernel size (odd; padding ``ksize // 2``, stride 1).
        first_weight, first_bias: layer 1's weights (O1, C0, k, k) and bias (O1,) float32, as the model uses them.
        first_threshold, first_flip: (O1,) float32 ``τ`` and ``f``: ``a = +1 iff f·s >= τ`` on float32 ``s``.
        conv_weights: layers 2..Lc, (O_k, k²·ceil(C_{k−1}/64)) uint64 (:func:`conv_weight_packed`).
        conv_thresholds, conv_flips: layers 2..Lc, (O_k,) int32 / int8 on the true (zero-padded) conv sum.
        pools: Lc booleans, MaxPool2d(2) after conv k (before BN).
        fc_weights: fc layers, (F, words) uint64; the first in NHWC column order (:func:`fc_weight_nhwc`).
        fc_in_features: the fc layers' true fan-ins K (C·H·W for the first).
        fc_thresholds, fc_flips: the hidden fc layers', on the true dot product.
        out_bias, out_mean, out_var, out_weight, out_beta, out_eps, out_invstd: the output layer's bias and BN.
        layer_names: the model's names of the layers' activations (``act1``, ..., the output BN's name last).
        fragile: per binary hidden layer, neurons within PyTorch's float rounding of their threshold.
        first_bitplane_threshold, first_bitplane_flip: (O1,) int32 / int8 ``t``, ``f`` of the Eq. 6 first layer,
            ``a = +1 iff f·E >= t`` on the exact integer ``E = 255·(W_b·x)`` (module docstring); ``None`` when the
            first conv's weights are not ±1 (``first_layer="bitplanes"`` is then refused).
    """

    in_shape: tuple[int, int, int]
    ksize: int
    first_weight: np.ndarray
    first_bias: np.ndarray
    first_threshold: np.ndarray
    first_flip: np.ndarray
    conv_weights: list[np.ndarray]
    conv_thresholds: list[np.ndarray]
    conv_flips: list[np.ndarray]
    pools: tuple[bool, ...]
    fc_weights: list[np.ndarray]
    fc_in_features: tuple[int, ...]
    fc_thresholds: list[np.ndarray]
    fc_flips: list[np.ndarray]
    out_bias: np.ndarray
    out_mean: np.ndarray
    out_var: np.ndarray
    out_weight: np.ndarray
    out_beta: np.ndarray
    out_eps: float
    out_invstd: np.ndarray | None = None
    layer_names: tuple[str, ...] = ()
    fragile: tuple[int, ...] = ()
    first_bitplane_threshold: np.ndarray | None = None
    first_bitplane_flip: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.ksize < 1 or self.ksize % 2 == 0:
            raise ValueError(f"ksize must be odd (padding ksize // 2 keeps the size), got {self.ksize}")
        nc = 1 + len(self.conv_weights)
        if len(self.pools) != nc or len(self.conv_thresholds) != nc - 1 or len(self.conv_flips) != nc - 1:
            raise ValueError(f"{nc} conv layers need {nc} pool flags and {nc - 1} conv thresholds and flips")
        if len(self.fc_weights) < 1 or len(self.fc_in_features) != len(self.fc_weights) or \
                len(self.fc_thresholds) != len(self.fc_weights) - 1 or len(self.fc_flips) != len(self.fc_weights) - 1:
            raise ValueError("fc layers need one weight array and fan-in each, and thresholds and flips for all but "
                             "the output layer")
        c, h, w = self.in_shape
        if self.first_weight.shape[1:] != (c, self.ksize, self.ksize):
            raise ValueError(f"first_weight must be (O, {c}, {self.ksize}, {self.ksize}), got {self.first_weight.shape}")
        c = self.first_weight.shape[0]
        shapes = []  # (C_in, H, W) of every conv layer
        for k in range(nc):
            if k:
                wk = self.conv_weights[k - 1]
                if wk.dtype != np.uint64 or wk.ndim != 2 or wk.shape[1] != self.ksize ** 2 * packed_width(c):
                    raise ValueError(f"conv layer {k + 1}: weights must be (O, {self.ksize ** 2 * packed_width(c)}) "
                                     f"uint64 for {c} input channels, got {wk.shape} {wk.dtype}")
                shapes.append((c, h, w))
                c = wk.shape[0]
            if self.pools[k]:
                h, w = h // 2, w // 2
        if self.fc_in_features[0] != c * h * w:
            raise ValueError(f"the first fc layer has fan-in {self.fc_in_features[0]}, but the last conv gives "
                             f"C·H·W = {c}·{h}·{w} = {c * h * w}")
        o1 = self.first_weight.shape[0]
        if (self.first_bitplane_threshold is None) != (self.first_bitplane_flip is None):
            raise ValueError("first_bitplane_threshold and first_bitplane_flip must be given together")
        if self.first_bitplane_threshold is not None:
            if not np.isin(self.first_weight, (-1.0, 1.0)).all():
                raise ValueError("bit-plane thresholds need a binary first conv: first_weight must be exactly ±1")
            if self.first_bitplane_threshold.shape != (o1,) or self.first_bitplane_flip.shape != (o1,):
                raise ValueError(f"first_bitplane_threshold and first_bitplane_flip must have shape ({o1},)")
        self._cache["conv_shapes"] = shapes
        self._cache["final_shape"] = (c, h, w)
        self._cache["offsets"] = [border_offsets(wk, ci, self.ksize, hi, wi)
                                  for wk, (ci, hi, wi) in zip(self.conv_weights, shapes)]
        # the first fc's padding bits (H·W·(64·Wc − C) matches) are a constant: fold them into its thresholds
        pad_bits = h * w * (WORD_BITS * packed_width(c) - c)
        self._cache["fc_pad_bits"] = pad_bits
        if self.fc_thresholds:
            t0 = self.fc_thresholds[0].astype(np.int64) + self.fc_flips[0].astype(np.int64) * pad_bits
            self._cache["fc_t"] = [t0.astype(np.int32), *self.fc_thresholds[1:]]

    # ----------------------------------------------------------------------------------- shape
    @property
    def num_conv(self) -> int:
        """Conv layers (the float first one included)."""
        return 1 + len(self.conv_weights)

    @property
    def num_layers(self) -> int:
        return self.num_conv + len(self.fc_weights)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels / units per layer; the last is the number of classes."""
        return (int(self.first_weight.shape[0]), *(int(w.shape[0]) for w in self.conv_weights),
                *(int(w.shape[0]) for w in self.fc_weights))

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (the border-correction tables are derived, not counted)."""
        arrays = [self.first_weight, self.first_bias, self.first_threshold, self.first_flip, *self.conv_weights,
                  *self.conv_thresholds, *self.conv_flips, *self.fc_weights, *self.fc_thresholds, *self.fc_flips,
                  self.out_bias, self.out_mean, self.out_var, self.out_weight, self.out_beta]
        arrays += [a for a in (self.out_invstd, self.first_bitplane_threshold, self.first_bitplane_flip)
                   if a is not None]
        return int(sum(a.nbytes for a in arrays))

    def __repr__(self) -> str:
        return (f"PackedConvNet(in {self.in_shape}, widths {self.widths}, pools {self.pools}, {self.nbytes:,} bytes, "
                f"fragile={self.fragile})")

    # ------------------------------------------------------------------------------- save/load
    def _names(self) -> tuple[list[str], list[str]]:
        """The model's layer names: ``conv1..conv{Lc}``, ``fc{Lc+1}..fc{L}``."""
        return ([f"conv{k}" for k in range(1, self.num_conv + 1)],
                [f"fc{k}" for k in range(self.num_conv + 1, self.num_layers + 1)])

    def to_checkpoint(self) -> PackedCheckpoint:
        """This network as a packed checkpoint of kind ``"packed-convnet"`` (entries in the module docstring)."""
        convs, fcs = self._names()
        weights: dict[str, np.ndarray] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        arrays: dict[str, np.ndarray] = {}
        k = self.ksize
        w1 = self.first_weight
        if np.isin(w1, (-1.0, 1.0)).all():
            weights["conv1.weight"] = pack(w1.reshape(w1.shape[0], -1), WORD_BITS)
            shapes["conv1.weight"] = tuple(w1.shape)
        else:
            arrays["conv1.weight"] = w1
        arrays.update({"conv1.bias": self.first_bias, "conv1.threshold": self.first_threshold,
                       "conv1.flip": self.first_flip})
        if self.first_bitplane_threshold is not None:
            arrays["conv1.bitplane_threshold"] = self.first_bitplane_threshold
            arrays["conv1.bitplane_flip"] = self.first_bitplane_flip
        for name, wk, (c, _h, _w), t, f in zip(convs[1:], self.conv_weights, self._cache["conv_shapes"],
                                              self.conv_thresholds, self.conv_flips):
            o = wk.shape[0]
            w = unpack(wk.reshape(o, k * k, packed_width(c)), c).reshape(o, k, k, c).transpose(0, 3, 1, 2)
            weights[f"{name}.weight"] = pack(np.ascontiguousarray(w).reshape(o, -1), WORD_BITS)
            shapes[f"{name}.weight"] = (o, c, k, k)
            arrays[f"{name}.threshold"], arrays[f"{name}.flip"] = t, f
        c, h, w = self._cache["final_shape"]
        for j, (name, wj, kin) in enumerate(zip(fcs, self.fc_weights, self.fc_in_features)):
            if j == 0:  # back to the model's NCHW flatten order
                f0 = wj.shape[0]
                nchw = unpack(wj.reshape(f0, h * w, packed_width(c)), c).reshape(f0, h, w, c).transpose(0, 3, 1, 2)
                wj = pack(np.ascontiguousarray(nchw).reshape(f0, -1), WORD_BITS)
            weights[f"{name}.weight"], shapes[f"{name}.weight"] = wj, (wj.shape[0], kin)
            if j < len(fcs) - 1:
                arrays[f"{name}.threshold"], arrays[f"{name}.flip"] = self.fc_thresholds[j], self.fc_flips[j]
        last, n = fcs[-1], self.num_layers
        arrays.update({f"{last}.bias": self.out_bias, f"bn{n}.running_mean": self.out_mean,
                       f"bn{n}.running_var": self.out_var, f"bn{n}.weight": self.out_weight,
                       f"bn{n}.bias": self.out_beta})
        if self.out_invstd is not None:
            arrays[f"bn{n}.running_invstd"] = self.out_invstd
        attrs = {"in_shape": list(self.in_shape), "ksize": self.ksize, "pools": list(self.pools),
                 "out_eps": self.out_eps, "fragile": list(self.fragile), "layer_names": list(self.layer_names)}
        return PackedCheckpoint(kind=PACKED_CONVNET_KIND, weights=weights, shapes=shapes, arrays=arrays,
                                attrs=attrs, word_bits=WORD_BITS)

    @classmethod
    def from_checkpoint(cls, checkpoint: PackedCheckpoint) -> PackedConvNet:
        """The network stored in a ``"packed-convnet"`` checkpoint (``ValueError`` naming a missing or bad entry)."""
        if checkpoint.kind != PACKED_CONVNET_KIND or checkpoint.word_bits != WORD_BITS:
            raise ValueError(f"a PackedConvNet needs a {PACKED_CONVNET_KIND!r} checkpoint with {WORD_BITS}-bit "
                             f"words, got kind {checkpoint.kind!r} with {checkpoint.word_bits}-bit words")
        a, wts = checkpoint.arrays, checkpoint.weights

        def get(name: str) -> np.ndarray:
            if name not in a:
                raise ValueError(f"the packed-convnet checkpoint has no {name!r} entry")
            return a[name]

        def binary(name: str) -> np.ndarray:
            if name not in wts:
                raise ValueError(f"the packed-convnet checkpoint has no packed weight {name!r}")
            return checkpoint.unpacked(name)

        try:
            attrs = checkpoint.attrs
            in_shape = tuple(int(v) for v in attrs["in_shape"])
            ksize, pools = int(attrs["ksize"]), tuple(bool(v) for v in attrs["pools"])
            out_eps = float(attrs["out_eps"])
            fragile = tuple(int(v) for v in attrs.get("fragile", ()))
            layer_names = tuple(str(v) for v in attrs.get("layer_names", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the packed-convnet checkpoint's meta attrs lack in_shape/ksize/pools/out_eps: "
                             f"{exc!r}") from exc
        if len(in_shape) != 3 or not pools:
            raise ValueError(f"the packed-convnet checkpoint's in_shape {in_shape} / pools {pools} are not a ConvNet's")
        nc = len(pools)
        first = binary("conv1.weight") if "conv1.weight" in wts else get("conv1.weight")
        conv_w, conv_t, conv_f = [], [], []
        c, h, w = first.shape[0], in_shape[1], in_shape[2]
        h, w = (h // 2, w // 2) if pools[0] else (h, w)
        for k in range(2, nc + 1):
            wk = binary(f"conv{k}.weight")
            conv_w.append(conv_weight_packed(wk))
            conv_t.append(get(f"conv{k}.threshold"))
            conv_f.append(get(f"conv{k}.flip"))
            c = wk.shape[0]
            h, w = (h // 2, w // 2) if pools[k - 1] else (h, w)
        fc_names = [n[:-len(".weight")] for n in wts if n.startswith("fc")]
        expected = [f"fc{k}" for k in range(nc + 1, nc + 1 + len(fc_names))]
        if not fc_names or fc_names != expected:
            raise ValueError(f"a packed-convnet checkpoint stores its fc weights as {expected or ['fc...']}, got "
                             f"{fc_names}")
        fc_w, fc_k = [], []
        for j, name in enumerate(fc_names):
            if j == 0:
                fc_w.append(fc_weight_nhwc(binary(f"{name}.weight"), c, h, w))
            else:
                fc_w.append(wts[f"{name}.weight"])
            fc_k.append(checkpoint.fan_in(f"{name}.weight"))
        n = nc + len(fc_names)
        return cls(in_shape=in_shape, ksize=ksize, first_weight=np.ascontiguousarray(first, dtype=np.float32),
                   first_bias=get("conv1.bias"), first_threshold=get("conv1.threshold"), first_flip=get("conv1.flip"),
                   conv_weights=conv_w, conv_thresholds=conv_t, conv_flips=conv_f, pools=pools, fc_weights=fc_w,
                   fc_in_features=tuple(fc_k), fc_thresholds=[get(f"{m}.threshold") for m in fc_names[:-1]],
                   fc_flips=[get(f"{m}.flip") for m in fc_names[:-1]], out_bias=get(f"{fc_names[-1]}.bias"),
                   out_mean=get(f"bn{n}.running_mean"), out_var=get(f"bn{n}.running_var"),
                   out_weight=get(f"bn{n}.weight"), out_beta=get(f"bn{n}.bias"), out_eps=out_eps,
                   out_invstd=a.get(f"bn{n}.running_invstd"), layer_names=layer_names, fragile=fragile,
                   first_bitplane_threshold=a.get("conv1.bitplane_threshold"),
                   first_bitplane_flip=a.get("conv1.bitplane_flip"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the packed checkpoint (kind ``"packed-convnet"``, an **uncompressed** ``.npz``); returns its path."""
        return write_checkpoint(self.to_checkpoint(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PackedConvNet:
        """Read a file written by :meth:`save`.

        Raises ``ValueError`` naming the file if it is not a packed-convnet checkpoint: a
        :class:`qnnlib.files.UnreadableFileError` (delete the file and export again) when it is truncated,
        corrupt or lacks an entry, a plain ``ValueError`` when it is a checkpoint of another kind or version.
        """
        return load_network(path, PACKED_CONVNET_KIND, cls.from_checkpoint,
                           "qnnlib.runtime.export_convnet.export_convnet(model).save(path)")

    # ------------------------------------------------------------------------------ the layers
    def _inputs(self, images: Any, first_layer: str) -> torch.Tensor | np.ndarray:
        """The first layer's input: the model's float32 tensor (``"float"``) or uint8 pixels (``"bitplanes"``)."""
        if first_layer == "float":
            return images_as_inputs(images, self.in_shape)
        if first_layer != "bitplanes":
            raise ValueError(f"first_layer must be 'float' (the model's float conv) or 'bitplanes' (Eq. 6), "
                             f"got {first_layer!r}")
        if self.first_bitplane_threshold is None:
            raise ValueError("first_layer='bitplanes' needs a binary first conv (±1 weights) and its bit-plane "
                             "thresholds: export the model with export_convnet (a float first conv, "
                             "Precision(first=LayerBits(weight_bits=None)), can only run first_layer='float')")
        return images_as_pixels(images, self.in_shape)

    def _bitplane_cache(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(packed first-layer weights transposed (words, O), the (H, W, O) int32 table 255·S_pad) for H×W images."""
        key = ("bitplanes", h, w)
        if key not in self._cache:
            self._cache[key] = (np.ascontiguousarray(first_weight_packed(self.first_weight).T),
                                255 * first_border_sums(self.first_weight, h, w))
        return self._cache[key]

    def _first_integer(self, p: np.ndarray, timings: dict | None) -> np.ndarray:
        """``Σ_n 2^n M_n`` (N, H, W, O) int32; adding the table ``255·S_pad`` gives ``E`` (module docstring)."""
        n, c, h, w = p.shape
        k = self.ksize
        kk = k * k * c
        w_t = self._bitplane_cache(h, w)[0]
        o = w_t.shape[1]
        t0 = time.perf_counter()
        e = np.empty((n * h * w, o), dtype=np.int32)
        if n:
            bitplane_conv_sums(p, k, w_t, kk, e)
        _add(timings, "conv1 (bitplanes)", "gemm", time.perf_counter() - t0)
        return e.reshape(n, h, w, o)

    def first_layer_integer(self, images: Any) -> np.ndarray:
        """The exact integer ``E = 255·(W_b ⋆ x)`` of the first conv, bias excluded, before pooling: (N, O, H, W)
        int32 for 8-bit images (uint8 pixels, or floats ``2p/255 − 1``), computed from the 8 bit-planes (Eq. 6).

        ``E[n, o, y, x] = 2·D_in − 255·S_in`` with ``D_in = Σ W_b[o, c, tap]·p[c, pixel of tap]`` and
        ``S_in = Σ W_b[o, c, tap]`` over the taps of (y, x) inside the image (the model pads x with 0, i.e. those
        taps add nothing); the model's ``s = conv(x) + bias`` is ``E/255 + bias`` up to float32 rounding.
        """
        p = self._inputs(images, "bitplanes")
        e = self._first_integer(p, None) + self._bitplane_cache(*p.shape[2:])[1][None]
        return e.transpose(0, 3, 1, 2).copy()

    def _first(self, x: torch.Tensor | np.ndarray, timings: dict | None) -> np.ndarray:
        if isinstance(x, np.ndarray):  # uint8 pixels: Eq. 6 on the bit-planes, integer pool + threshold
            e = self._first_integer(x, timings)
            n, h, w, c = e.shape
            ho, wo = (h // 2, w // 2) if self.pools[0] else (h, w)
            out = np.empty((n, ho, wo, packed_width(c)), dtype=np.uint64)
            t1 = time.perf_counter()
            if n:
                pool_threshold_pack(e, self._bitplane_cache(h, w)[1], self.first_bitplane_threshold,
                                    self.first_bitplane_flip, self.pools[0], out)
            _add(timings, "conv1 (bitplanes)", "pool+threshold", time.perf_counter() - t1)
            return out
        t0 = time.perf_counter()
        pad = self.ksize // 2
        with torch.inference_mode():  # the model's own op: QuantConv2d._conv_forward -> F.conv2d
            s = F.conv2d(x, torch.from_numpy(self.first_weight), torch.from_numpy(self.first_bias), 1, pad)
        t1 = time.perf_counter()
        n, c, h, w = s.shape
        ho, wo = (h // 2, w // 2) if self.pools[0] else (h, w)
        out = np.empty((n, ho, wo, packed_width(c)), dtype=np.uint64)
        if n:
            key = ("zeros", h, w, c)
            if key not in self._cache:
                self._cache[key] = np.zeros((h, w, c), dtype=np.float32)
            pool_threshold_pack(s.numpy().transpose(0, 2, 3, 1), self._cache[key], self.first_threshold,
                                self.first_flip, self.pools[0], out)
        _add(timings, "conv1 (float)", "gemm", t1 - t0)
        _add(timings, "conv1 (float)", "pool+threshold", time.perf_counter() - t1)
        return out

    def _conv(self, k: int, a: np.ndarray, backend: str, timings: dict | None) -> np.ndarray:
        """Binary conv layer k (2..Lc) on packed NHWC words ``a``: im2col, Eq. 7 GEMM, pool + threshold."""
        n, h, w, wc = a.shape
        wk = self.conv_weights[k - 2]
        name = f"conv{k}"
        t0 = time.perf_counter()
        cols = np.empty((n * h * w, self.ksize ** 2 * wc), dtype=np.uint64)
        if n:
            im2col_packed(a, self.ksize, cols)
        t1 = time.perf_counter()
        d = binary_matmul(cols, wk, cols.shape[1] * WORD_BITS, backend)  # Eq. 7 over whole words
        t2 = time.perf_counter()
        o = wk.shape[0]
        ho, wo = (h // 2, w // 2) if self.pools[k - 1] else (h, w)
        out = np.empty((n, ho, wo, packed_width(o)), dtype=np.uint64)
        if n:
            pool_threshold_pack(d.reshape(n, h, w, o), self._cache["offsets"][k - 2], self.conv_thresholds[k - 2],
                                self.conv_flips[k - 2], self.pools[k - 1], out)
        _add(timings, name, "im2col", t1 - t0)
        _add(timings, name, "gemm", t2 - t1)
        _add(timings, name, "pool+threshold", time.perf_counter() - t2)
        return out

    def _fc(self, j: int, a: np.ndarray, backend: str, timings: dict | None) -> np.ndarray:
        """fc layer j (0-based) on packed words (N, words): packed activations, or int32 dots for the output."""
        wj = self.fc_weights[j]
        name = f"fc{self.num_conv + j + 1}"
        k = wj.shape[1] * WORD_BITS if j == 0 else self.fc_in_features[j]
        t0 = time.perf_counter()
        if j == len(self.fc_weights) - 1:
            d = binary_matmul(a, wj, k, backend)
            _add(timings, name, "gemm", time.perf_counter() - t0)
            return d - (self._cache["fc_pad_bits"] if j == 0 else 0)
        out = binary_matmul_sign(a, wj, self._cache["fc_t"][j], self.fc_flips[j], k, backend)  # sign(BN) fused
        _add(timings, name, "gemm", time.perf_counter() - t0)
        return out

    def _output_bn(self, dot: np.ndarray) -> torch.Tensor:
        """a_L = BatchNorm(dot + bias) in float32, the model's own arithmetic (CPU)."""
        s = torch.from_numpy(dot.astype(np.float32)) + torch.from_numpy(self.out_bias)
        p = {"mean": torch.from_numpy(self.out_mean), "var": torch.from_numpy(self.out_var),
             "weight": torch.from_numpy(self.out_weight), "bias": torch.from_numpy(self.out_beta), "eps": self.out_eps,
             "invstd": None if self.out_invstd is None else torch.from_numpy(self.out_invstd)}
        return batch_norm(s, p)

    def _run(self, x: torch.Tensor, backend: str, timings: dict | None,
             keep: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
        """Alg. 4 layer by layer: float conv1, binary convs (Eq. 7), binary fc layers, output BN."""
        a = self._first(x, timings)
        if keep:
            keep(1, a)
        for k in range(2, self.num_conv + 1):
            a = self._conv(k, a, backend, timings)
            if keep:
                keep(k, a)
        a = a.reshape(a.shape[0], a[0].size if len(a) else int(np.prod(a.shape[1:])))  # NHWC words, matched by fc_weight_nhwc's column order
        for j in range(len(self.fc_weights)):
            a = self._fc(j, a, backend, timings)
            if keep and j < len(self.fc_weights) - 1:
                keep(self.num_conv + j + 1, a)
        t0 = time.perf_counter()
        scores = self._output_bn(a).numpy()
        _add(timings, f"fc{self.num_layers}", "pool+threshold", time.perf_counter() - t0)
        return scores

    # ------------------------------------------------------------------------------ public API
    def scores(self, images: Any, backend: str = "cpu", *, timings: dict | None = None,
               first_layer: FirstLayer = "float") -> np.ndarray:
        """The output layer's BN outputs (N, classes) float32 for ``images`` (N, C, H, W) (Alg. 4, every layer).

        ``images``: the model's float inputs or uint8 pixels (:func:`images_as_inputs`). ``timings``: a dict
        to which the seconds of each layer's stages are added, keyed ``(layer, stage)`` with stage ``"im2col"``,
        ``"gemm"`` or ``"pool+threshold"`` (for the float first layer, ``"gemm"`` is its float conv).
        ``first_layer``: ``"float"`` (the model's float32 conv, bit-identical to PyTorch) or ``"bitplanes"``
        (Eq. 6 on the 8 bit-planes, exact integers; needs 8-bit images; see the module docstring).
        """
        x = self._inputs(images, first_layer)
        return self._run(x, backend, timings)

    def predict(self, images: Any, backend: str = "cpu", *, timings: dict | None = None,
                first_layer: FirstLayer = "float") -> np.ndarray:
        """Predicted classes (N,) int64: argmax of :meth:`scores`."""
        return np.argmax(self.scores(images, backend, timings=timings, first_layer=first_layer), axis=1)

    def forward_hidden(self, images: Any, backend: str = "cpu", first_layer: FirstLayer = "float"
                       ) -> list[np.ndarray]:
        """Every hidden layer's ±1 activations (int8), in the model's layout: (N, C, H, W) for the convs
        (after pooling), (N, F) for the fc layers — what each ``act{k}`` of the PyTorch model outputs."""
        x = self._inputs(images, first_layer)
        words: list[np.ndarray] = []
        self._run(x, backend, None, lambda _k, a: words.append(a))
        return [self._unpack_act(k, a) for k, a in enumerate(words, 1)]

    def _unpack_act(self, k: int, a: np.ndarray) -> np.ndarray:
        c = self.widths[k - 1]
        if k <= self.num_conv:
            return unpack(a, c).astype(np.int8).transpose(0, 3, 1, 2).copy()
        return unpack(a, c).astype(np.int8)

    def layer(self, k: int, inputs: Any, backend: str = "cpu", first_layer: FirstLayer = "float") -> np.ndarray:
        """Layer ``k`` alone on given inputs, in the model's layout: the image for k = 1, the ±1 activations of
        layer k−1 otherwise ((N, C, H, W) or (N, F)); returns its ±1 activations (int8, the model's layout), or
        for the output layer its float32 BN outputs (N, classes). ``first_layer`` applies to k = 1."""
        if not 1 <= k <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}, got {k}")
        if k == 1:
            return self._unpack_act(1, self._first(self._inputs(inputs, first_layer), None))
        x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        if x.size and not np.isin(x, (-1, 1)).all():
            raise ValueError(f"inputs of binary layer {k} must be exactly ±1")
        if k <= self.num_conv + 1:  # a conv layer's, or the first fc's, input: conv activations
            shape = self._cache["conv_shapes"][k - 2] if k <= self.num_conv else self._cache["final_shape"]
            if k > self.num_conv and x.ndim == 2:
                x = x.reshape(x.shape[0], *shape)
            if x.ndim != 4 or x.shape[1:] != shape:
                raise ValueError(f"inputs of layer {k} must be ±1 of shape (N, {shape[0]}, {shape[1]}, {shape[2]}), "
                                 f"got {x.shape}")
            a = pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), WORD_BITS)
            if k <= self.num_conv:
                return self._unpack_act(k, self._conv(k, a, backend, None))
            a = a.reshape(a.shape[0], -1)
        else:
            kin = self.fc_in_features[k - self.num_conv - 1]
            if x.ndim != 2 or x.shape[1] != kin:
                raise ValueError(f"inputs of layer {k} must be ±1 of shape (N, {kin}), got {x.shape}")
            a = pack(x, WORD_BITS)
        out = self._fc(k - self.num_conv - 1, a, backend, None)
        if k == self.num_layers:
            return self._output_bn(out).numpy()
        return self._unpack_act(k, out)


def _add(timings: dict | None, layer: str, stage: str, seconds: float) -> None:
    if timings is not None:
        timings[(layer, stage)] = timings.get((layer, stage), 0.0) + seconds
