"""The CUDA backends of :func:`qnnlib.runtime.binary_gemm.binary_matmul`: CuPy host code over ``kernels/*.cu``.

The kernels are CuPy ``RawModule``\\ s, NVRTC-compiled lazily from the sources in :data:`KERNEL_DIR` (and
cached by CuPy on disk); :data:`KERNELS` lists each source's ``extern "C"`` entry points. CuPy is imported
only when one of them is used (the optional ``[gpu]`` extra). :func:`matmul_cuda` runs the binary GEMM
``C = K - 2 * popcount(A XOR B)`` (Eq. 7) on 32-bit words:

- ``"cuda-xnor"``: register-tiled XOR/``__popc`` kernel on CUDA cores (``kernels/xnor_gemm.cu``);
- ``"cuda-tc"``: 1-bit tensor cores, ``mma.m16n8k256 .b1 .and.popc`` (``kernels/b1_tensorcore.cu``, compute
  capability >= 8.0), with ``a·b = K - 2 (popcount(a) + popcount(b)) + 4 popcount(a AND b)``.

Next to them: :func:`pack_cuda` (``kernels/pack.cu``, the :func:`qnnlib.runtime.bitpack.pack` layout on the
GPU) and :func:`gemm_float_cuda`, the paper's 16x16-tiled float baseline kernel (``kernels/gemm_float.cu``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from qnnlib.runtime.arrays import cupy
from qnnlib.runtime.bitpack import as_u32_words, packed_width
from qnnlib.runtime.hardware import compute_capability

__all__ = ["KERNEL_DIR", "KERNELS", "CUDA_VARIANTS", "compile_cuda_kernels", "pack_cuda", "gemm_float_cuda",
           "matmul_cuda"]

#: Folder of the CUDA sources, found relative to the package (``<repo>/kernels``).
KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"
#: Source file in :data:`KERNEL_DIR` -> its kernel entry points (``extern "C"``).
KERNELS = {
    "pack.cu": ("pack_rows_f32", "row_popcount_u32"),
    "gemm_float.cu": ("gemm_f32_tiled",),
    "xnor_gemm.cu": ("xnor_gemm_u32",),
    "b1_tensorcore.cu": ("b1_tc_gemm",),
}

#: The binary GEMM kernels :func:`matmul_cuda` runs (``binary_matmul`` backend names).
CUDA_VARIANTS = ("cuda-xnor", "cuda-tc")


@functools.lru_cache(maxsize=None)
def _cuda_module(source: str) -> Any:
    """The CuPy RawModule of ``kernels/<source>`` (NVRTC-compiled on first use, cached by CuPy on disk)."""
    cp = cupy()
    path = KERNEL_DIR / source
    if not path.is_file():
        raise FileNotFoundError(
            f"CUDA kernel source {path} not found: the GPU backends need the repository's kernels/ folder "
            f"next to the qnnlib package (install from a source checkout with `pip install -e .`)"
        )
    return cp.RawModule(code=path.read_text(), options=("--std=c++14",))


@functools.lru_cache(maxsize=None)
def _cuda_function(name: str) -> Any:
    """The compiled CUDA kernel ``name`` (an ``extern "C"`` entry point listed in ``KERNELS``)."""
    source = next(f for f, names in KERNELS.items() if name in names)
    return _cuda_module(source).get_function(name)


def compile_cuda_kernels() -> dict[str, float]:
    """Compile (or load from CuPy's cache) every CUDA kernel; returns seconds per kernel name."""
    import time  # noqa: PLC0415

    times = {}
    for names in KERNELS.values():
        for name in names:
            t0 = time.perf_counter()
            _cuda_function(name).attributes  # noqa: B018 - forces NVRTC compilation and module load
            times[name] = time.perf_counter() - t0
    return times


def _grid(n: int, block: int) -> int:
    return max(1, (n + block - 1) // block)


def pack_cuda(x: Any) -> Any:
    """Pack a CuPy float32 (R, K) array into uint32 words on the GPU (``kernels/pack.cu``).

    Same layout as :func:`qnnlib.runtime.bitpack.pack` with ``word_bits=32`` (x >= 0 -> bit 1, LSB first).
    """
    cp = cupy()
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
    """popcount of every row of CuPy uint32 words (R, W) -> int32 (R,) (``kernels/pack.cu``)."""
    cp = cupy()
    rows, words = p.shape
    out = cp.empty(rows, dtype=cp.int32)
    _cuda_function("row_popcount_u32")((_grid(rows * 32, 256),), (256,), (p, out, np.int32(rows), np.int32(words)))
    return out


def gemm_float_cuda(a: Any, b: Any) -> Any:
    """The paper's baseline: C = A @ B with a 16x16-tiled float32 kernel (``kernels/gemm_float.cu``).

    ``a`` is (M, K) and ``b`` is (K, N), CuPy float32 arrays; returns (M, N) float32.
    """
    cp = cupy()
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


def matmul_cuda(a: Any, b: Any, k: int, variant: str) -> Any:
    """``K - 2 * popcount(a XOR b)`` for every row pair (Eq. 7) on the GPU: CuPy int32 (M, N).

    ``a`` (M, W) and ``b`` (N, W) are CuPy arrays packed along the same K (uint32 or uint64 words, zero
    padding bits; :func:`qnnlib.runtime.binary_gemm.binary_matmul` checks them), run as 32-bit words by
    ``variant``: ``"cuda-xnor"`` (CUDA cores) or ``"cuda-tc"`` (1-bit tensor cores, compute capability
    >= 8.0; ``C = K - 2 (popcount(A) + popcount(B)) + 4 popcount(A AND B)``).
    """
    if variant not in CUDA_VARIANTS:
        raise ValueError(f"variant must be one of {CUDA_VARIANTS}, got {variant!r}")
    cp = cupy()
    a32, b32 = as_u32_words(a, cp), as_u32_words(b, cp)
    (m, w), n = a32.shape, b32.shape[0]
    out = cp.empty((m, n), dtype=cp.int32)
    if out.size == 0:
        return out
    dims = (np.int32(m), np.int32(n), np.int32(w), np.int32(k))
    if variant == "cuda-xnor":
        _cuda_function("xnor_gemm_u32")((_grid(n, 64), _grid(m, 64)), (16, 16), (a32, b32, out, *dims))
    else:  # cuda-tc: C = K - 2 (popA + popB) + 4 sum popc(A AND B)
        if compute_capability() < 80:
            raise RuntimeError("backend 'cuda-tc' needs compute capability >= 8.0 (1-bit mma); use 'cuda-xnor'")
        pop_a, pop_b = _row_popcount_cuda(a32), _row_popcount_cuda(b32)
        _cuda_function("b1_tc_gemm")(
            (_grid(n, 128), _grid(m, 128)), (256,), (a32, b32, pop_a, pop_b, out, *dims)
        )
    return out
