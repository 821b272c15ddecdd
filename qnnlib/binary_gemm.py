"""Binary matrix multiplication on bit-packed ±1 matrices: XOR + popcount (paper Eq. 7).

For a, b in {-1, +1}^K packed by :func:`qnnlib.bitpack.pack` (bit 1 = +1, padding bits 0)::

    a . b = (#matches) - (#mismatches) = K - 2 * popcount(a XOR b)                     (Eq. 7)

(the paper's ``a1 += popcount(xnor(a0, w1))`` counts matches; counting mismatches with XOR, as the
authors' ``xnor_gemm`` kernel does, gives the same dot product). Padding bits are 0 in both operands,
so they XOR to 0 and ``K`` is exact for every K.

:func:`binary_matmul` computes ``A @ B.T`` (int32, shape (M, N)) for A (M, K) and B (N, K), both packed
along K, with one of these backends:

- ``"numpy"``: reference, ``np.bitwise_count`` on the XOR of every row pair (slow, obviously right).
- ``"cpu"``: Numba, parallel over (row block, column block) tasks, cache-blocked; the innermost loop
  runs over contiguous output columns so LLVM vectorises ``ctpop`` (AVX-512 ``vpopcntq`` where the
  CPU has VPOPCNTDQ; on AVX2-only CPUs LLVM's ``vpshufb`` nibble-table popcount, ~3x more work).
- ``"cuda-xnor"``: register-tiled XOR/``__popc`` kernel on CUDA cores (``kernels/xnor_gemm.cu``).
- ``"cuda-tc"``: 1-bit tensor cores, ``mma.m16n8k256 .b1 .and.popc`` (``kernels/b1_tensorcore.cu``).
- ``"cuda"``: ``cuda-tc`` on compute capability >= 8.0, else ``cuda-xnor``.
- ``"auto"``: ``cuda`` when the inputs are CuPy arrays, else ``cpu``.

The result lives where the inputs live (NumPy in -> NumPy out, CuPy in -> CuPy out). The GPU kernels
(plus the paper's tiled float baseline and the packing kernel) are CuPy ``RawModule``\\ s compiled
lazily from ``kernels/*.cu``; CuPy is imported only when a GPU backend is used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from qnnlib.bitpack import _cupy, _from_torch, _is_cupy, packed_width

__all__ = [
    "BACKENDS",
    "KERNEL_DIR",
    "binary_matmul",
    "compile_cuda_kernels",
    "gemm_float_cuda",
    "pack_cuda",
]

BACKENDS = ("auto", "numpy", "cpu", "cuda", "cuda-xnor", "cuda-tc")

# ---------------------------------------------------------------------------------------------------
# Operand checks and word-size conversions
# ---------------------------------------------------------------------------------------------------


def _check_operands(a: Any, b: Any, k: int) -> int:
    """Validate packed operands; returns the word size in bits."""
    for name, p in (("a_packed", a), ("b_packed", b)):
        if p.ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows, words) as returned by bitpack.pack, got shape {p.shape}")
        if p.dtype not in (np.uint32, np.uint64):
            raise ValueError(f"{name} must hold uint32 or uint64 words (bitpack.pack), got dtype {p.dtype}")
    if a.dtype != b.dtype:
        raise ValueError(f"a_packed and b_packed must use the same word size, got {a.dtype} and {b.dtype}")
    word_bits = a.dtype.itemsize * 8
    w = packed_width(k, word_bits)
    if a.shape[1] != w or b.shape[1] != w:
        raise ValueError(
            f"K={k} needs ceil({k}/{word_bits}) = {w} words per row, got a_packed {a.shape} and b_packed "
            f"{b.shape}; both operands must be packed along the same K (A is (M, K), B is (N, K))"
        )
    if k % word_bits:
        pad_mask = a.dtype.type(~((1 << (k % word_bits)) - 1) & ((1 << word_bits) - 1))
        for name, p in (("a_packed", a), ("b_packed", b)):
            if p.shape[0] and bool((p[:, -1] & pad_mask).any()):
                raise ValueError(
                    f"{name} has nonzero padding bits past K={k} in its last word: it was not packed with "
                    f"K={k} (pass the K given to bitpack.pack) or not by bitpack.pack"
                )
    return word_bits


def _to_u64_words(p: Any, xp: Any = np) -> Any:
    """(R, W) uint32 or uint64 words -> (R, ceil(W32/2)) uint64, C-contiguous (endian-independent)."""
    if p.dtype == np.uint64:
        return xp.ascontiguousarray(p)
    if p.shape[1] % 2:
        p = xp.concatenate([p, xp.zeros((p.shape[0], 1), dtype=np.uint32)], axis=1)
    lo = p[:, 0::2].astype(np.uint64)
    hi = p[:, 1::2].astype(np.uint64)
    return xp.ascontiguousarray(lo | (hi << np.uint64(32)))  # word j//64, bit j%64 (LSB first)


def _to_u32_words(p: Any, xp: Any) -> Any:
    """(R, W) uint64 or uint32 words -> (R, W32) uint32, C-contiguous (low half first)."""
    if p.dtype == np.uint32:
        return xp.ascontiguousarray(p)
    lo = (p & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (p >> np.uint64(32)).astype(np.uint32)
    return xp.ascontiguousarray(xp.stack([lo, hi], axis=-1).reshape(p.shape[0], 2 * p.shape[1]))


# ---------------------------------------------------------------------------------------------------
# Reference (NumPy) and CPU (Numba) backends
# ---------------------------------------------------------------------------------------------------


def _matmul_numpy(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Reference: K - 2 * popcount(a XOR b) for every row pair, in chunks of rows (Eq. 7)."""
    m, n, w = a.shape[0], b.shape[0], a.shape[1]
    out = np.empty((m, n), dtype=np.int32)
    rows = max(1, (1 << 22) // max(1, n * w))  # bound the (rows, N, W) temporary to ~32 MB
    for i0 in range(0, m, rows):
        xor = np.bitwise_xor(a[i0 : i0 + rows, None, :], b[None, :, :])
        out[i0 : i0 + rows] = k - 2 * np.bitwise_count(xor).sum(axis=-1, dtype=np.int64)
    return out


@intrinsic
def _popcount64(typingctx, x):
    """popcount of a uint64 as the LLVM intrinsic ``llvm.ctpop.i64`` (vectorisable; Numba has none)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


_ROW_BLOCK = 64  # rows of A per parallel task
_B_BLOCK_BYTES = 256 * 1024  # a task's block of B, (W, col_block) words, is sized to stay in L2


@njit(parallel=True, cache=True, nogil=True)
def _xor_popcount_gemm(a, bt, k, out, row_block, col_block):  # pragma: no cover - compiled by Numba
    """out[i, j] = k - 2 * sum_w popcount(a[i, w] ^ bt[w, j]) for a (M, W), bt (W, N) uint64 (Eq. 7).

    B is passed transposed so that the innermost loop runs over contiguous columns j: for fixed (i, w)
    it is ``acc[j] += popcount(a_iw ^ bt[w, j])``, which LLVM vectorises (``vpopcntq`` on AVX-512
    VPOPCNTDQ). Two rows of A share each loaded vector of B (register tiling). Parallel tasks are
    (row block, column block) pairs, so skinny products (few rows, e.g. a small batch) still use every
    core; within a task the (W, col_block) block of B stays in cache while the task's rows stream past.
    """
    m, w = a.shape
    n = bt.shape[1]
    n_row_blocks = (m + row_block - 1) // row_block
    n_col_blocks = (n + col_block - 1) // col_block
    for task in prange(n_row_blocks * n_col_blocks):
        i0 = (task // n_col_blocks) * row_block
        j0 = (task % n_col_blocks) * col_block
        i_end = min(m, i0 + row_block)
        nj = min(col_block, n - j0)
        acc0 = np.empty(nj, dtype=np.uint64)
        acc1 = np.empty(nj, dtype=np.uint64)
        for i in range(i0, i_end, 2):
            i1 = min(i + 1, i_end - 1)  # odd block: its last row is computed twice, stored once
            acc0[:] = 0
            acc1[:] = 0
            for word in range(w):
                x0 = a[i, word]
                x1 = a[i1, word]
                bw = bt[word, j0 : j0 + nj]
                for j in range(nj):
                    acc0[j] += _popcount64(x0 ^ bw[j])
                    acc1[j] += _popcount64(x1 ^ bw[j])
            for j in range(nj):
                out[i, j0 + j] = k - 2 * np.int64(acc0[j])  # K - 2 popcount(a XOR b)
            if i + 1 < i_end:
                for j in range(nj):
                    out[i + 1, j0 + j] = k - 2 * np.int64(acc1[j])


def _matmul_cpu(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    a64 = _to_u64_words(a)
    bt64 = np.ascontiguousarray(_to_u64_words(b).T)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    col_block = int(np.clip(_B_BLOCK_BYTES // (8 * a64.shape[1]) // 16 * 16, 16, 512))
    if out.size:
        _xor_popcount_gemm(a64, bt64, np.int64(k), out, np.int64(_ROW_BLOCK), np.int64(col_block))
    return out


# ---------------------------------------------------------------------------------------------------
# CUDA backends (CuPy RawModule over kernels/*.cu, compiled lazily)
# ---------------------------------------------------------------------------------------------------

#: Folder of the CUDA sources, found relative to the package (``<repo>/kernels``).
KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
_KERNELS = {  # source file -> kernel entry points (extern "C")
    "pack.cu": ("pack_rows_f32", "row_popcount_u32"),
    "gemm_float.cu": ("gemm_f32_tiled",),
    "xnor_gemm.cu": ("xnor_gemm_u32",),
    "b1_tensorcore.cu": ("b1_tc_gemm",),
}


@functools.lru_cache(maxsize=None)
def _cuda_module(source: str) -> Any:
    """The CuPy RawModule of ``kernels/<source>`` (NVRTC-compiled on first use, cached by CuPy on disk)."""
    cp = _cupy()
    path = KERNEL_DIR / source
    if not path.is_file():
        raise FileNotFoundError(
            f"CUDA kernel source {path} not found: the GPU backends need the repository's kernels/ folder "
            f"next to the qnnlib package (install from a source checkout with `pip install -e .`)"
        )
    return cp.RawModule(code=path.read_text(), options=("--std=c++14",))


@functools.lru_cache(maxsize=None)
def _cuda_function(name: str) -> Any:
    """The compiled CUDA kernel ``name`` (an ``extern "C"`` entry point listed in ``_KERNELS``)."""
    source = next(f for f, names in _KERNELS.items() if name in names)
    return _cuda_module(source).get_function(name)


def compile_cuda_kernels() -> dict[str, float]:
    """Compile (or load from CuPy's cache) every CUDA kernel; returns seconds per kernel name."""
    import time  # noqa: PLC0415

    times = {}
    for names in _KERNELS.values():
        for name in names:
            t0 = time.perf_counter()
            _cuda_function(name).attributes  # noqa: B018 - forces NVRTC compilation and module load
            times[name] = time.perf_counter() - t0
    return times


def _compute_capability() -> int:
    return int(_cupy().cuda.Device().compute_capability)


def _grid(n: int, block: int) -> int:
    return max(1, (n + block - 1) // block)


def pack_cuda(x: Any) -> Any:
    """Pack a CuPy float32 (R, K) array into uint32 words on the GPU (``kernels/pack.cu``).

    Same layout as :func:`qnnlib.bitpack.pack` with ``word_bits=32`` (x >= 0 -> bit 1, LSB first).
    """
    cp = _cupy()
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"pack_cuda expects a (rows, K) array with K >= 1, got shape {x.shape}")
    rows, k = x.shape
    words = packed_width(k, 32)
    out = cp.empty((rows, words), dtype=cp.uint32)
    if rows:
        threads = rows * words * 32  # one warp per output word
        _cuda_function("pack_rows_f32")(
            (_grid(threads, 256),), (256,), (x, out, np.int32(rows), np.int32(k), np.int32(words))
        )
    return out


def _row_popcount_cuda(p: Any) -> Any:
    cp = _cupy()
    rows, words = p.shape
    out = cp.empty(rows, dtype=cp.int32)
    _cuda_function("row_popcount_u32")((_grid(rows * 32, 256),), (256,), (p, out, np.int32(rows), np.int32(words)))
    return out


def gemm_float_cuda(a: Any, b: Any) -> Any:
    """The paper's baseline: C = A @ B with a 16x16-tiled float32 kernel (``kernels/gemm_float.cu``).

    ``a`` is (M, K) and ``b`` is (K, N), CuPy float32 arrays; returns (M, N) float32.
    """
    cp = _cupy()
    a = cp.ascontiguousarray(a, dtype=cp.float32)
    b = cp.ascontiguousarray(b, dtype=cp.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm_float_cuda needs (M, K) and (K, N) arrays, got {a.shape} and {b.shape}")
    (m, k), n = a.shape, b.shape[1]
    c = cp.empty((m, n), dtype=cp.float32)
    _cuda_function("gemm_f32_tiled")(
        (_grid(n, 16), _grid(m, 16)), (16, 16), (a, b, c, np.int32(m), np.int32(n), np.int32(k))
    )
    return c


def _matmul_cuda(a: Any, b: Any, k: int, variant: str) -> Any:
    cp = _cupy()
    a32, b32 = _to_u32_words(a, cp), _to_u32_words(b, cp)
    (m, w), n = a32.shape, b32.shape[0]
    out = cp.empty((m, n), dtype=cp.int32)
    if out.size == 0:
        return out
    dims = (np.int32(m), np.int32(n), np.int32(w), np.int32(k))
    if variant == "cuda-xnor":
        _cuda_function("xnor_gemm_u32")((_grid(n, 64), _grid(m, 64)), (16, 16), (a32, b32, out, *dims))
    else:  # cuda-tc: C = K - 2 (popA + popB) + 4 sum popc(A AND B)
        if _compute_capability() < 80:
            raise RuntimeError("backend 'cuda-tc' needs compute capability >= 8.0 (1-bit mma); use 'cuda-xnor'")
        pop_a, pop_b = _row_popcount_cuda(a32), _row_popcount_cuda(b32)
        _cuda_function("b1_tc_gemm")(
            (_grid(n, 128), _grid(m, 128)), (256,), (a32, b32, pop_a, pop_b, out, *dims)
        )
    return out


# ---------------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------------


def binary_matmul(a_packed: Any, b_packed: Any, k: int, backend: str = "auto") -> Any:
    """Exact ±1 matrix product ``A @ B.T`` from bit-packed operands (int32, shape (M, N)).

    ``C[m, n] = K - 2 * sum_w popcount(a_packed[m, w] XOR b_packed[n, w])``  (paper Eq. 7)

    Args:
        a_packed: (M, ceil(K/word_bits)) words of A (M, K), from :func:`qnnlib.bitpack.pack`.
        b_packed: (N, ceil(K/word_bits)) words of B (N, K), same word size as ``a_packed``.
        k: the number of binary values per row K (exact; padding bits must be 0, as ``pack`` leaves them).
        backend: one of :data:`BACKENDS` (see the module docstring).

    Returns:
        int32 array (M, N), NumPy for NumPy inputs and CuPy for CuPy inputs.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k (the number of binary values per row) must be a positive integer, got {k!r}")
    k = int(k)
    a, b = _from_torch(a_packed), _from_torch(b_packed)
    if _is_cupy(a) != _is_cupy(b):
        raise TypeError("a_packed and b_packed must both be NumPy arrays or both CuPy arrays")
    on_gpu = _is_cupy(a)
    if not on_gpu:
        a, b = np.asarray(a), np.asarray(b)
    _check_operands(a, b, k)
    if backend == "auto":
        backend = "cuda" if on_gpu else "cpu"
    if backend == "cuda":
        backend = "cuda-tc" if _compute_capability() >= 80 else "cuda-xnor"

    if backend.startswith("cuda"):
        cp = _cupy()
        out = _matmul_cuda(cp.asarray(a), cp.asarray(b), k, backend)
        return out if on_gpu else cp.asnumpy(out)
    if on_gpu:
        a, b = _cupy().asnumpy(a), _cupy().asnumpy(b)
    out = _matmul_numpy(a, b, k) if backend == "numpy" else _matmul_cpu(a, b, k)
    return _cupy().asarray(out) if on_gpu else out
