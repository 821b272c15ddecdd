"""Binary matrix multiplication on bit-packed ±1 matrices: XOR + popcount (paper Eq. 7).

For a, b in {-1, +1}^K packed by :func:`qnnlib.runtime.bitpack.pack` (bit 1 = +1, padding bits 0)::

    a . b = (#matches) - (#mismatches) = K - 2 * popcount(a XOR b)                     (Eq. 7)

(the paper's ``a1 += popcount(xnor(a0, w1))`` counts matches; counting mismatches with XOR, as the
authors' ``xnor_gemm`` kernel does, gives the same dot product). Padding bits are 0 in both operands,
so they XOR to 0 and ``K`` is exact for every K.

:func:`binary_matmul` computes ``A @ B.T`` (int32, shape (M, N)) for A (M, K) and B (N, K), both packed
along K, after checking the operands, with one of these backends:

- ``"numpy"``: reference, ``np.bitwise_count`` on the XOR of every row pair (slow, obviously right; here).
- ``"cpu"``: Numba, parallel, cache-blocked, a register-tiled LLVM-IR micro-kernel with AVX-512
  ``vpopcntq`` or a ``vpshufb`` nibble-table popcount (:mod:`qnnlib.runtime.gemm_cpu`).
- ``"cuda-xnor"``: register-tiled XOR/``__popc`` kernel on CUDA cores (``kernels/xnor_gemm.cu``).
- ``"cuda-tc"``: 1-bit tensor cores, ``mma.m16n8k256 .b1 .and.popc`` (``kernels/b1_tensorcore.cu``).
- ``"cuda-tc-pipelined"``: the same on a multi-stage ``cp.async``/``ldmatrix`` kernel
  (``kernels/b1_tensorcore_pipelined.cu``).
- ``"cuda-wgmma"``: Hopper (compute capability 9.0) only: warpgroup ``wgmma ... .b1.and.popc`` fed by TMA bulk
  copies (``kernels/b1_wgmma.cu``).
- ``"cuda"``: the fastest of the CUDA kernels this GPU runs (:func:`select_cuda_backend`: each checked against
  the CUDA-core kernel and timed once per device on a 2048 x 2048 x 2048 product; ``cuda-xnor`` below compute
  capability 8.0; the environment variable ``QNNLIB_CUDA_GEMM=xnor|tc|tc-pipelined|wgmma`` overrides).
  Capability alone does not decide: on some GPUs the 1-bit ``mma`` is emulated by many instructions and loses
  to the CUDA-core kernel.
- ``"auto"``: ``cuda`` when the inputs are CuPy arrays, else ``cpu``.

**Which K.** Bare words do not carry their K: two rows packed with K = 60 and K = 62 are the same words, and a
``k`` larger than the packed K (same word count) would count the zero padding bits as matches and come out
``k - K`` too high, silently. So:

- operands from :func:`qnnlib.runtime.bitpack.pack_bits` (:class:`~qnnlib.runtime.bitpack.PackedBits`) carry
  their K; ``k`` may then be omitted, and a ``k`` (or the other operand's K) that disagrees raises
  ``ValueError`` naming both;
- bare words (:func:`qnnlib.runtime.bitpack.pack`) need ``k``; it is checked as far as the words allow --
  ``ceil(k / word_bits)`` words per row, and no bit set past ``k`` (catches a ``k`` smaller than the packed K
  wherever a row has a +1 there) -- but a ``k`` larger than the packed K within the same last word cannot be
  seen in the words. The runtime's own hot paths (:class:`qnnlib.runtime.packed_bnn.PackedBNN`, the
  bit-planes, the benchmarks) pass bare words with a K fixed by construction, so they pay no extra cost.

The CUDA kernels are CuPy ``RawModule``\\ s compiled lazily from ``kernels/*.cu``
(:mod:`qnnlib.runtime.gemm_cuda`); CuPy is imported only when a GPU backend is used. The result lives
where the inputs live (NumPy in -> NumPy out, CuPy in -> CuPy out). A constant CuPy operand may be passed
prepared (:func:`qnnlib.runtime.gemm_cuda.prepare_cuda_operand`): its 32-bit words and row popcounts are then
reused on every call.
"""

from __future__ import annotations

import os
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from qnnlib.runtime.arrays import cupy, from_torch, is_cupy
from qnnlib.runtime.bitpack import PackedBits, check_size, packed_width
from qnnlib.runtime.folding import threshold_activations
from qnnlib.runtime.gemm_cpu import matmul_cpu, matmul_sign_cpu
from qnnlib.runtime.gemm_cuda import (
    CUDA_VARIANTS,
    CudaOperand,
    cuda_device_id,
    device_variants,
    matmul_cuda,
    prepare_cuda_operand,
)
from qnnlib.runtime.hardware import compute_capability

__all__ = ["BACKENDS", "CUDA_GEMM_ENV", "SELECTION_SHAPE", "binary_matmul", "binary_matmul_sign",
           "select_cuda_backend"]

BACKENDS = ("auto", "numpy", "cpu", "cuda", *CUDA_VARIANTS)

#: Environment variable that fixes the kernel of ``backend="cuda"``: ``xnor``, ``tc``, ``tc-pipelined`` or
#: ``wgmma`` (unset: measured).
CUDA_GEMM_ENV = "QNNLIB_CUDA_GEMM"
#: (M, N, K) of the product :func:`select_cuda_backend` times each CUDA kernel on.
SELECTION_SHAPE = (2048, 2048, 2048)

# device id -> the backend "cuda" resolves to there (filled by select_cuda_backend on first use per device).
_CUDA_CHOICE: dict[int, str] = {}


def _time_cuda_variant(variant: str, run: Callable[[], Any]) -> float:
    """Median seconds of ``run()`` between CUDA events (5 runs after 2 warm-ups, which also compile)."""
    cp = cupy()
    for _ in range(2):
        run()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(5):
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def select_cuda_backend(timer: Callable[[str, Callable[[], Any]], float] | None = None) -> str:
    """The kernel ``backend="cuda"`` runs on the current device: one of :data:`~qnnlib.runtime.gemm_cuda.CUDA_VARIANTS`.

    1. ``$QNNLIB_CUDA_GEMM`` (:data:`CUDA_GEMM_ENV`) set to ``xnor``, ``tc``, ``tc-pipelined`` or ``wgmma``
       decides (a kernel this GPU cannot run raises ``RuntimeError``: the tensor-core ones below compute
       capability 8.0, ``wgmma`` off 9.0; another value raises ``ValueError``).
    2. Compute capability below 8.0: ``"cuda-xnor"`` (no 1-bit ``mma``).
    3. Otherwise the fastest correct one, measured on first use per device and cached: each kernel this GPU
       runs (``cuda-wgmma`` only on 9.0) computes one fixed random product of :data:`SELECTION_SHAPE` (the
       second operand prepared, as a layer's weights are); a kernel that raises or whose product differs from
       ``cuda-xnor``'s is left out with a warning (so a kernel broken on some GPU or toolkit never becomes the
       default); the rest are timed by ``timer(variant, run) -> seconds`` (default: median of 5
       CUDA-event-timed runs after 2 warm-ups; tests inject a fake). Ties go to the kernel listed later.
    """
    forced = os.environ.get(CUDA_GEMM_ENV, "").strip().lower()
    if forced:
        if f"cuda-{forced}" not in CUDA_VARIANTS:
            raise ValueError(f"${CUDA_GEMM_ENV} must be one of {', '.join(v[5:] for v in CUDA_VARIANTS)} (or unset to "
                             f"measure), got {forced!r}")
        if forced != "xnor" and compute_capability() < 80:
            raise RuntimeError(f"${CUDA_GEMM_ENV}={forced} asks for a 1-bit tensor-core kernel, but this GPU has "
                               f"compute capability {compute_capability() / 10:.1f} < 8.0; set it to 'xnor' or unset it")
        if forced == "wgmma" and compute_capability() != 90:
            raise RuntimeError(f"${CUDA_GEMM_ENV}=wgmma needs compute capability 9.0 (H100/H200), this GPU has "
                               f"{compute_capability() / 10:.1f}; set it to 'tc-pipelined' or unset it")
        return f"cuda-{forced}"
    device = cuda_device_id()
    if device not in _CUDA_CHOICE:
        if compute_capability() < 80:
            _CUDA_CHOICE[device] = "cuda-xnor"
        else:
            _CUDA_CHOICE[device] = _measure_cuda_variants(timer or _time_cuda_variant)
    return _CUDA_CHOICE[device]


def _measure_cuda_variants(timer: Callable[[str, Callable[[], Any]], float]) -> str:
    """Step 3 of :func:`select_cuda_backend`: check, then time, every CUDA kernel this GPU runs."""
    cp = cupy()
    m, n, k = SELECTION_SHAPE
    w = packed_width(k, 32)
    rng = np.random.default_rng(0)
    a = cp.asarray(rng.integers(0, 2**32, size=(m, w), dtype=np.uint32))
    b = prepare_cuda_operand(cp.asarray(rng.integers(0, 2**32, size=(n, w), dtype=np.uint32)))
    candidates = device_variants()
    reference = matmul_cuda(a, b, k, "cuda-xnor")
    seconds = {}
    for v in candidates:
        try:
            ok = v == "cuda-xnor" or bool(cp.array_equal(matmul_cuda(a, b, k, v), reference))
        except Exception as exc:  # noqa: BLE001 - any failure (NVRTC, driver, launch) only removes the candidate
            warnings.warn(f"backend='cuda' leaves out {v}: it failed on this GPU ({exc})", RuntimeWarning,
                          stacklevel=3)
            continue
        if not ok:
            warnings.warn(f"backend='cuda' leaves out {v}: its product differs from cuda-xnor's on this GPU "
                          f"(please report it)", RuntimeWarning, stacklevel=3)
            continue
        seconds[v] = timer(v, lambda v=v: matmul_cuda(a, b, k, v))
    best = min(seconds.values())
    return [v for v in candidates if seconds.get(v) == best][-1]


def _check_operands(a: Any, b: Any, k: int) -> int:
    """Validate packed operands A (M, W) and B (N, W) for a product over K values; returns the word size in bits.

    Both must be 2-D uint32 or uint64 words of the same dtype, ``W = ceil(K / word_bits)`` words per row,
    with zero padding bits past K (as :func:`qnnlib.runtime.bitpack.pack` leaves them); anything else raises
    ``ValueError`` saying which operand is wrong and how.

    The padding bits are checked for NumPy operands only. For CuPy operands the check would read the result
    of a reduction back to the host, a device sync on every product, which the GPU hot paths (a layer per
    call in :class:`~qnnlib.runtime.packed_bnn.PackedBNN`, the bit-planes) cannot afford and do not need
    (their K is fixed by construction; ``pack`` and ``pack_cuda`` always zero the padding). Shapes and
    dtypes, which need no sync, are checked for both. To check CuPy words once, prepare them with a ``k``
    (:func:`qnnlib.runtime.gemm_cuda.prepare_cuda_operand`), or pack with ``pack_bits`` so the K is carried.
    """
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
    if k % word_bits and not is_cupy(a) and not is_cupy(b):  # CuPy: no per-call host sync (docstring)
        pad_mask = a.dtype.type(~((1 << (k % word_bits)) - 1) & ((1 << word_bits) - 1))
        for name, p in (("a_packed", a), ("b_packed", b)):
            if p.shape[0] and bool((p[:, -1] & pad_mask).any()):
                raise ValueError(
                    f"{name} has nonzero padding bits past K={k} in its last word: it was not packed with "
                    f"K={k} (pass the K given to bitpack.pack) or not by bitpack.pack"
                )
    return word_bits


def _matmul_numpy(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Reference: ``K - 2 * popcount(a XOR b)`` for every row pair (Eq. 7), int32 (M, N), in chunks of rows."""
    m, n, w = a.shape[0], b.shape[0], a.shape[1]
    out = np.empty((m, n), dtype=np.int32)
    rows = max(1, (1 << 22) // max(1, n * w))  # bound the (rows, N, W) temporary to ~32 MB
    for i0 in range(0, m, rows):
        xor = np.bitwise_xor(a[i0 : i0 + rows, None, :], b[None, :, :])
        out[i0 : i0 + rows] = k - 2 * np.bitwise_count(xor).sum(axis=-1, dtype=np.int64)
    return out


def _operand_k(a: Any, b: Any, k: Any) -> tuple[Any, Any, int]:
    """(a words, b words, K): K from the :class:`PackedBits` operands and/or ``k``, which must all agree."""
    carried = [(name, p.k) for name, p in (("a_packed", a), ("b_packed", b)) if isinstance(p, PackedBits)]
    source = "k"
    if k is not None:
        k = check_size(k, "k (the number of binary values per row)")
    elif not carried:
        raise TypeError("binary_matmul needs k (the number of binary values per row) for bare packed words; pass "
                        "it, or pack the operands with bitpack.pack_bits so that they carry it")
    for name, kp in carried:
        if k is None:
            source, k = f"{name} carries", kp
        elif kp != k:
            said = f"k={k} was passed" if source == "k" else f"{source} K={k}"
            raise ValueError(f"{name} carries K={kp} but {said}: both operands must be packed along the same K "
                             f"and a k passed must equal it (or be omitted)")
    if isinstance(a, PackedBits):
        a = a.words
    if isinstance(b, PackedBits):
        b = b.words
    return a, b, k


def _check_out(out: Any, m: int, n: int, backend: str) -> None:
    """``out=`` of :func:`binary_matmul`: a C-contiguous NumPy int32 (M, N) array, CPU backends only."""
    if backend not in ("cpu", "numpy"):
        raise ValueError(f"out= is supported by the CPU backends ('cpu', 'numpy'), not {backend!r}; leave it out")
    if not isinstance(out, np.ndarray) or out.dtype != np.int32 or out.shape != (m, n) or not out.flags.c_contiguous:
        got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}"
        raise ValueError(f"out must be a C-contiguous NumPy int32 array of shape ({m}, {n}), got {got}")


def binary_matmul(a_packed: Any, b_packed: Any, k: int | None = None, backend: str = "auto", *,
                  out: np.ndarray | None = None) -> Any:
    """Exact ±1 matrix product ``A @ B.T`` from bit-packed operands (int32, shape (M, N)).

    ``C[m, n] = K - 2 * sum_w popcount(a_packed[m, w] XOR b_packed[n, w])``  (paper Eq. 7)

    Args:
        a_packed: A (M, K) packed: a :class:`~qnnlib.runtime.bitpack.PackedBits`
            (:func:`qnnlib.runtime.bitpack.pack_bits`, carries K) or bare (M, ceil(K/word_bits)) words
            (:func:`qnnlib.runtime.bitpack.pack`), or a :class:`~qnnlib.runtime.gemm_cuda.CudaOperand` of CuPy words.
        b_packed: B (N, K) packed the same way, same word size as ``a_packed``.
        k: the number of binary values per row K. Required for bare words (padding bits must be 0, as
            ``pack`` leaves them; see "Which K" in the module docstring for what can and cannot be checked);
            optional with :class:`~qnnlib.runtime.bitpack.PackedBits`, and then it must equal their K.
        backend: one of :data:`BACKENDS` (see the module docstring).
        out: a C-contiguous NumPy int32 (M, N) array to write the result into (CPU backends), e.g. reused
            across calls: a fresh result of 64-256 MB costs its page faults on every call.

    Returns:
        int32 array (M, N), NumPy for NumPy inputs and CuPy for CuPy inputs (``out`` when given).

    Raises:
        ValueError: bad operands, a ``k`` that disagrees with a carried K, an unknown backend.
        TypeError: ``k`` missing for bare words, or not an integer.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    a, b, k = _operand_k(a_packed, b_packed, k)
    a, b = from_torch(a), from_torch(b)
    prepared_a = a if isinstance(a, CudaOperand) else None
    prepared_b = b if isinstance(b, CudaOperand) else None
    a = a if prepared_a is None else prepared_a.packed
    b = b if prepared_b is None else prepared_b.packed
    if is_cupy(a) != is_cupy(b):
        raise TypeError("a_packed and b_packed must both be NumPy arrays or both CuPy arrays")
    on_gpu = is_cupy(a)
    if not on_gpu:
        a, b = np.asarray(a), np.asarray(b)
    _check_operands(a, b, k)
    if backend == "auto":
        backend = "cuda" if on_gpu else "cpu"
    if out is not None:
        _check_out(out, a.shape[0], b.shape[0], "cuda" if on_gpu else backend)
    if backend.startswith("cuda"):
        cp = cupy()  # first: without CuPy, say that the cuda backends need it (and a GPU)
        if backend == "cuda":
            backend = select_cuda_backend()
        out = matmul_cuda(cp.asarray(a) if prepared_a is None else prepared_a,
                          cp.asarray(b) if prepared_b is None else prepared_b, k, backend)
        return out if on_gpu else cp.asnumpy(out)
    if on_gpu:
        a, b = cupy().asnumpy(a), cupy().asnumpy(b)
    if backend == "numpy":
        result = _matmul_numpy(a, b, k)
        if out is None:
            return cupy().asarray(result) if on_gpu else result
        out[...] = result
        return out
    result = matmul_cpu(a, b, k, out)
    return cupy().asarray(result) if on_gpu else result


def binary_matmul_sign(a_packed: Any, b_packed: Any, t: Any, f: Any, k: int | None = None,
                       backend: str = "auto") -> Any:
    """A binary hidden layer of Alg. 4 in one call: packed ``a = +1 iff f[n]·C[m, n] >= t[n]`` for the ±1
    product ``C = A @ B.T`` (Eq. 7), i.e. ``sign(BN(C + bias))`` with BN and sign folded into one integer
    threshold ``t`` and one flip ``f`` per column (:mod:`qnnlib.runtime.folding`).

    Returns uint64 words (M, ceil(N/64)) in the :func:`qnnlib.runtime.bitpack.pack` layout (zero padding
    bits), NumPy or CuPy like the inputs. The ``"cpu"`` backend compares each finished register tile with
    the thresholds and stores only the bits (:func:`qnnlib.runtime.gemm_cpu.matmul_sign_cpu`): no int32
    product is written to memory. Every other backend computes :func:`binary_matmul` and then the
    comparison, and is the reference the fused kernel is tested against.

    Args:
        a_packed, b_packed, k, backend: as for :func:`binary_matmul`.
        t: integer thresholds (N,); f: flips (N,) in {-1, +1}.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    a, b, k = _operand_k(a_packed, b_packed, k)
    a, b = from_torch(a), from_torch(b)
    n = b.shape[0] if getattr(b, "ndim", 0) == 2 else None
    if n is not None and (np.shape(t) != (n,) or np.shape(f) != (n,)):
        raise ValueError(f"t and f must have one entry per column of the product (N = {n}), got shapes "
                         f"{np.shape(t)} and {np.shape(f)}")
    on_gpu = any(is_cupy(x) or isinstance(x, CudaOperand) for x in (a, b))
    if backend in ("auto", "cpu") and not on_gpu:
        a, b = np.asarray(a), np.asarray(b)
        _check_operands(a, b, k)
        return matmul_sign_cpu(a, b, k, np.asarray(t), np.asarray(f))
    d = binary_matmul(a, b, k, backend)
    xp = cupy() if is_cupy(d) else np
    return threshold_activations(d, xp.asarray(t), xp.asarray(f), xp)
