"""The CUDA backends of :func:`qnnlib.runtime.binary_gemm.binary_matmul`: CuPy host code over ``kernels/*.cu``.

The kernels are CuPy ``RawModule``\\ s, NVRTC-compiled lazily from the sources in :data:`KERNEL_DIR` (and
cached by CuPy on disk); :data:`KERNELS` lists each source's ``extern "C"`` entry points. CuPy is imported
only when one of them is used (the optional ``[gpu]`` extra). The compiled modules and kernels are cached
per CUDA device (:func:`cuda_device_id`), so a machine with GPUs of different architectures never runs a
module loaded for one device on another. :func:`matmul_cuda` runs the binary GEMM
``C = K - 2 * popcount(A XOR B)`` (Eq. 7) on 32-bit words:

- ``"cuda-xnor"``: register-tiled XOR/``__popc`` kernel on CUDA cores (``kernels/xnor_gemm.cu``);
- ``"cuda-tc"``: 1-bit tensor cores, ``mma.m16n8k256 .b1 .and.popc`` (``kernels/b1_tensorcore.cu``, compute
  capability >= 8.0), with ``a·b = K - 2 (popcount(a) + popcount(b)) + 4 popcount(a AND b)``: the
  readable reference;
- ``"cuda-tc-pipelined"``: the same product, built for speed (``kernels/b1_tensorcore_pipelined.cu``: 128x256
  CTA tiles, 64x64 warp tiles, a 4-stage ``cp.async`` shared-memory pipeline, ``ldmatrix.x4`` fragment loads,
  a swizzled bank-conflict-free layout), tested bit-exact against the reference on the CPU emulator;
- ``"cuda-wgmma"``: Hopper only (compute capability 9.0; ``kernels/b1_wgmma.cu``, compiled by NVRTC for
  ``sm_90a``): ``wgmma.mma_async.m64n256k256 .b1 .and.popc`` from shared memory, fed by TMA bulk copies
  through a 4-stage mbarrier pipeline, one producer and two consumer warpgroups per 128x256 tile. Its operands
  are first laid out for the tensor cores (:func:`wgmma_layout`: 512-bit k-slabs of 8x128-bit core matrices,
  one kernel pass over the operand; a prepared operand keeps its layout), so a stage is two contiguous bulk
  copies and the kernel needs no bounds checks on loads.

uint64 operands (the runtime's :data:`~qnnlib.runtime.bitpack.WORD_BITS`) are not converted: a C-contiguous
uint64 row viewed as uint32 *is* the LSB-first uint32 packing of the same values (CUDA devices are
little-endian), with ``2 * ceil(K/64)`` words, one more than ``ceil(K/32)`` when that is odd -- a zero
padding word, which adds nothing to any popcount, so the kernels run on the zero-copy view with that W.
A constant operand (a layer's weights) can be prepared once with :func:`prepare_cuda_operand`: its 32-bit
view and its row popcounts (the tensor-core path needs them) are then not recomputed on every call.

Launch geometry: every GEMM kernel takes a 1-D grid of ``ceil(M/BM) * ceil(N/BN)`` tiles on ``gridDim.x``
(CUDA allows 2^31 - 1 there, but only 65535 on ``gridDim.y``, which would cap M at 1M/4M/8M rows for the
float/XNOR/tensor-core kernels); the packing and popcount kernels use grid-stride loops.

Next to them: :func:`pack_cuda` (``kernels/pack.cu``, the :func:`qnnlib.runtime.bitpack.pack` layout on the
GPU, float32 and float64 kernels, NaN raises) and :func:`gemm_float_cuda`, the paper's 16x16-tiled float
baseline kernel (``kernels/gemm_float.cu``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qnnlib.runtime.arrays import cupy
from qnnlib.runtime.bitpack import PackedBits, check_size, packed_width
from qnnlib.runtime.hardware import compute_capability

__all__ = ["KERNEL_DIR", "KERNELS", "ARCH_SPECIFIC", "CUDA_VARIANTS", "MAX_GRID_X", "WGMMA_SMEM_BYTES", "CudaOperand",
           "WgmmaLayout", "cuda_device_id", "compile_cuda_kernels", "pack_cuda", "gemm_float_cuda",
           "prepare_cuda_operand", "gemm_launch", "wgmma_layout", "device_variants", "matmul_cuda"]

#: Folder of the CUDA sources, found relative to the package (``<repo>/kernels``).
KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"
#: Source file in :data:`KERNEL_DIR` -> its kernel entry points (``extern "C"``).
KERNELS = {
    "pack.cu": ("pack_rows_f32", "pack_rows_f64", "row_popcount_u32"),
    "gemm_float.cu": ("gemm_f32_tiled",),
    "xnor_gemm.cu": ("xnor_gemm_u32",),
    "b1_tensorcore.cu": ("b1_tc_gemm",),
    "b1_tensorcore_pipelined.cu": ("b1_tc_gemm_pipelined",),
    "b1_wgmma.cu": ("b1_wgmma_layout", "b1_wgmma_gemm"),
}
#: Sources that only one architecture runs, compiled by NVRTC for it (CuPy's ``RawModule(code=...)`` picks the
#: plain ``sm_XX`` of the device, which lacks the architecture-specific ``a`` features such as wgmma).
ARCH_SPECIFIC = {"b1_wgmma.cu": "90a"}

#: The binary GEMM kernels :func:`matmul_cuda` runs (``binary_matmul`` backend names).
CUDA_VARIANTS = ("cuda-xnor", "cuda-tc", "cuda-tc-pipelined", "cuda-wgmma")

#: CUDA's limit on ``gridDim.x`` (``gridDim.y`` and ``gridDim.z`` allow only 65535).
MAX_GRID_X = 2**31 - 1

# kernel name -> (tile rows BM, tile columns BN, block) of the GEMM kernels; the grid is (ceil(M/BM) * ceil(N/BN),).
_GEMM_TILES = {
    "gemm_f32_tiled": (16, 16, (16, 16)),
    "xnor_gemm_u32": (64, 64, (16, 16)),
    "b1_tc_gemm": (128, 128, (256,)),
}
_VARIANT_KERNEL = {"cuda-xnor": "xnor_gemm_u32", "cuda-tc": "b1_tc_gemm", "cuda-tc-pipelined": "b1_tc_gemm_pipelined",
                   "cuda-wgmma": "b1_wgmma_gemm"}
# the pipelined and wgmma kernels' grids are 2-D: M tiles on x, N tiles on y (at most 65535, N <= 16,776,960)
_GRID_2D_TILES = {"b1_tc_gemm_pipelined": (128, 256, (256,)), "b1_wgmma_gemm": (128, 256, (384,))}
#: Dynamic shared memory of ``b1_wgmma_gemm`` (4 stages of 8 KiB of A + 16 KiB of B), over CUDA's 48 KiB default.
WGMMA_SMEM_BYTES = 4 * (8192 + 16384)
_WGMMA_ROW_ALIGN, _WGMMA_SLAB_WORDS = 256, 16
_INT32_MAX = 2**31 - 1


def cuda_device_id() -> int:
    """The id of the current CUDA device (``cupy.cuda.Device().id``), the key of the per-device caches."""
    return int(cupy().cuda.Device().id)


def _per_device(fn: Callable[[str], Any]) -> Any:
    """``fn(name)`` cached per (name, current device); the wrapper keeps ``cache_clear``/``cache_info``."""
    cached = functools.lru_cache(maxsize=None)(lambda name, device: fn(name))

    @functools.wraps(fn)
    def wrapper(name: str) -> Any:
        return cached(name, cuda_device_id())

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    wrapper.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return wrapper


def _nvrtc_binary(code: str, name: str, arch: str) -> tuple[bytes, str]:
    """``code`` compiled by NVRTC (the one CuPy uses) for architecture ``arch`` (e.g. ``"90a"``):
    ``(image, suffix)``, a cubin for ``sm_<arch>`` (machine code: no driver JIT, so no driver-vs-NVRTC version
    mismatch, as CuPy itself does) or, where CuPy's NVRTC wrapper has no ``getCUBIN``, PTX for ``compute_<arch>``."""
    try:
        from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415 - the GPU extra is optional
    except ImportError:  # older CuPy layouts
        from cupy.cuda import nvrtc  # noqa: PLC0415
    cubin = hasattr(nvrtc, "getCUBIN")
    target = f"sm_{arch}" if cubin else f"compute_{arch}"
    prog = nvrtc.createProgram(code, name, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, (f"--gpu-architecture={target}", "--std=c++14"))
        except Exception as exc:
            raise RuntimeError(f"NVRTC could not compile kernels/{name} for {target} (sm_90a needs CUDA >= 12.0): "
                               f"{exc}\n{nvrtc.getProgramLog(prog)}") from exc
        image = nvrtc.getCUBIN(prog) if cubin else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return (image.encode() if isinstance(image, str) else bytes(image)), (".cubin" if cubin else ".ptx")


@_per_device
def _cuda_module(source: str) -> Any:
    """The CuPy RawModule of ``kernels/<source>`` for the current device (NVRTC-compiled on first use).

    Sources in :data:`ARCH_SPECIFIC` are compiled by NVRTC for their architecture (:func:`_nvrtc_binary`) and
    loaded from a file under ``~/.cache/qnnlib/cuda``; the CPU emulator compiles every source from its code.
    """
    cp = cupy()
    path = KERNEL_DIR / source
    if not path.is_file():
        raise FileNotFoundError(
            f"CUDA kernel source {path} not found: the GPU backends need the repository's kernels/ folder "
            f"next to the qnnlib package (install from a source checkout with `pip install -e .`)"
        )
    code = path.read_text()
    if source not in ARCH_SPECIFIC or getattr(cp, "emulated", False):
        return cp.RawModule(code=code, options=("--std=c++14",))
    arch = ARCH_SPECIFIC[source]
    image, suffix = _nvrtc_binary(code, source, arch)
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qnnlib" / "cuda"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{path.stem}-{arch}-{hashlib.sha256(image).hexdigest()[:16]}{suffix}"
    if not target.is_file():
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(image)
        os.replace(tmp, target)  # atomic: a concurrent process never loads a half-written file
    return cp.RawModule(path=str(target))


@_per_device
def _cuda_function(name: str) -> Any:
    """The compiled CUDA kernel ``name`` (an ``extern "C"`` entry point listed in ``KERNELS``), current device."""
    source = next(f for f, names in KERNELS.items() if name in names)
    return _cuda_module(source).get_function(name)


def compile_cuda_kernels() -> dict[str, float]:
    """Compile (or load from CuPy's cache) every CUDA kernel this device can run; returns seconds per kernel name.

    The sources of :data:`ARCH_SPECIFIC` are compiled only on a device of their architecture, and one that
    fails there (an NVRTC too old for ``sm_90a``, a driver that cannot load the PTX) is left out with a
    ``RuntimeWarning`` instead of stopping the others; using its kernels later raises the error.
    """
    import time  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    times = {}
    for source, names in KERNELS.items():
        if source in ARCH_SPECIFIC and not _wgmma_device():
            continue
        for name in names:
            t0 = time.perf_counter()
            try:
                _cuda_function(name).attributes  # noqa: B018 - forces NVRTC compilation and module load
            except Exception as exc:
                if source not in ARCH_SPECIFIC:
                    raise
                warnings.warn(f"{name} (kernels/{source}) is left out: {exc}", RuntimeWarning, stacklevel=2)
                continue
            times[name] = time.perf_counter() - t0
    return times


def _grid(n: int, block: int) -> int:
    """Blocks of ``block`` threads covering ``n`` threads, at least 1, at most :data:`MAX_GRID_X`
    (the kernels that take it loop with a grid stride)."""
    return min(MAX_GRID_X, max(1, (n + block - 1) // block))


def pack_cuda(x: Any) -> Any:
    """Pack a CuPy real (R, K) array into uint32 words on the GPU (``kernels/pack.cu``).

    Same layout and rules as :func:`qnnlib.runtime.bitpack.pack` with ``word_bits=32``: x >= 0 -> bit 1
    (``sign(0) = +1``, -0.0 included), x < 0 -> bit 0, LSB first, zero padding bits; boolean input is taken
    as the bits themselves (True -> +1). float64 input is compared in float64 (``pack_rows_f64``: a value in
    [-2^-150, 0) stays negative, where a cast to float32 would make it -0.0, i.e. +1); float32 runs
    ``pack_rows_f32``; other real dtypes (integers, float16) are cast to float32, which keeps every sign.

    NaN raises ``ValueError`` as in ``bitpack.pack``. The kernel flags it while packing (no second pass over
    the input); reading the flag back is one device-to-host copy of 4 bytes, i.e. **one host sync per call**.
    """
    cp = cupy()
    x = cp.asarray(x)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"pack_cuda expects a (rows, K) array with K >= 1, got shape {x.shape}")
    if x.dtype.kind == "c":
        raise ValueError(f"pack_cuda expects real values, got dtype {x.dtype}")
    if x.dtype == np.bool_:
        x = cp.ascontiguousarray(x, dtype=cp.float32) * 2 - 1  # the bits themselves: True -> +1, False -> -1
    if x.dtype == np.float64:
        x, kernel = cp.ascontiguousarray(x, dtype=cp.float64), "pack_rows_f64"
    else:
        x, kernel = cp.ascontiguousarray(x, dtype=cp.float32), "pack_rows_f32"
    rows, k = x.shape
    words = packed_width(k, 32)
    out = cp.empty((rows, words), dtype=cp.uint32)
    if rows:
        nan_flag = cp.zeros(1, dtype=cp.int32)
        threads = rows * words * 32  # one warp per output word (grid-stride beyond MAX_GRID_X blocks)
        _cuda_function(kernel)((_grid(threads, 256),), (256,),
                               (x, out, nan_flag, np.int32(rows), np.int32(k), np.int32(words)))
        if int(nan_flag[0]):  # the one host sync of pack_cuda
            raise ValueError("pack_cuda got NaN values, which have no sign; clean the input first")
    return out


def _row_popcount_cuda(p: Any) -> Any:
    """popcount of every row of CuPy uint32 words (R, W) -> int32 (R,) (``kernels/pack.cu``)."""
    cp = cupy()
    rows, words = p.shape
    out = cp.empty(rows, dtype=cp.int32)
    if rows:
        _cuda_function("row_popcount_u32")((_grid(rows * 32, 256),), (256,),
                                           (p, out, np.int32(rows), np.int32(words)))
    return out


def gemm_launch(kernel: str, m: int, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(grid, block) of GEMM ``kernel`` (``gemm_f32_tiled``, ``xnor_gemm_u32``, ``b1_tc_gemm``,
    ``b1_tc_gemm_pipelined``, ``b1_wgmma_gemm``) for an (M, N) C.

    One block per BM x BN tile of C, all on ``gridDim.x`` (row-major tile order, N fastest); the pipelined and
    wgmma kernels (128 x 256 tiles) take M tiles on ``gridDim.x`` and N tiles on ``gridDim.y``. ``ValueError``
    if M or N does not fit the kernels' int arithmetic or the tile count exceeds :data:`MAX_GRID_X`
    (a C of that size would take terabytes; split the product).
    """
    if kernel in _GRID_2D_TILES:
        bm, bn, block = _GRID_2D_TILES[kernel]
        if not (0 < m <= _INT32_MAX - bm and 0 < n <= 65535 * bn):
            raise ValueError(f"{kernel} needs 1 <= M <= {_INT32_MAX - bm} and 1 <= N <= {65535 * bn}, got M={m}, "
                             f"N={n}; split the product into smaller ones")
        return ((m + bm - 1) // bm, (n + bn - 1) // bn), block
    if kernel not in _GEMM_TILES:
        raise ValueError(f"kernel must be one of {sorted(_GEMM_TILES) + sorted(_GRID_2D_TILES)}, got {kernel!r}")
    bm, bn, block = _GEMM_TILES[kernel]
    if not (0 < m <= _INT32_MAX - bm and 0 < n <= _INT32_MAX - bn):
        raise ValueError(f"{kernel} needs 1 <= M <= {_INT32_MAX - bm} and 1 <= N <= {_INT32_MAX - bn}, got "
                         f"M={m}, N={n}; split the product into smaller ones")
    tiles = ((m + bm - 1) // bm) * ((n + bn - 1) // bn)
    if tiles > MAX_GRID_X:
        raise ValueError(f"{kernel} on an ({m}, {n}) result needs {tiles} tiles of {bm}x{bn}, more than CUDA's "
                         f"{MAX_GRID_X} blocks; split the product into smaller ones")
    return (tiles,), block


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
    if c.size == 0:
        return c
    grid, block = gemm_launch("gemm_f32_tiled", m, n)
    _cuda_function("gemm_f32_tiled")(grid, block, (a, b, c, np.int32(m), np.int32(n), np.int32(k)))
    return c


@dataclass(frozen=True, eq=False)
class CudaOperand:
    """A packed operand ready for the CUDA GEMMs (:func:`prepare_cuda_operand`); pass it where
    :func:`matmul_cuda` or ``binary_matmul`` take packed words.

    Attributes:
        packed: the packed words as given, CuPy (R, W) uint32 or uint64, C-contiguous.
        words: ``packed`` as uint32 words (R, W32), a zero-copy view for uint64 (``W32 = 2 W``).
        popcounts: int32 (R,), the popcount of each row (the tensor-core kernel's ``popA``/``popB``).
        device: the CUDA device id the arrays live on.
    """

    packed: Any
    words: Any
    popcounts: Any
    device: int
    #: Layouts derived on first use by a kernel that needs one (``"wgmma"``: :class:`WgmmaLayout`), kept with
    #: the operand so a layer's weights are laid out once.
    layouts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of :attr:`packed`."""
        return tuple(self.packed.shape)

    @property
    def ndim(self) -> int:
        """2, as :attr:`packed`."""
        return int(self.packed.ndim)

    @property
    def dtype(self) -> Any:
        """The word dtype of :attr:`packed` (uint32 or uint64)."""
        return self.packed.dtype


def _u32_words(p: Any, cp: Any) -> Any:
    """CuPy (R, W) uint32 or uint64 words -> (R, W32) uint32, C-contiguous; zero-copy for C-contiguous input.

    A C-contiguous little-endian uint64 word holds element j at bit j % 64, i.e. bit j % 32 of its low
    uint32 half (first in memory) for j % 64 < 32 and of its high half otherwise: the uint32 view is exactly
    the LSB-first uint32 packing, with W32 = 2 W (the last word is zero padding when ceil(K/32) is odd).
    """
    if p.ndim != 2 or p.dtype not in (np.uint32, np.uint64):
        raise ValueError(f"packed operands must be 2-D uint32 or uint64 words (bitpack.pack), got {p.dtype} "
                         f"{tuple(p.shape)}")
    if p.dtype == np.uint32:
        return cp.ascontiguousarray(p, dtype=cp.uint32)
    return cp.ascontiguousarray(p, dtype=cp.uint64).view(cp.uint32)  # native byte order: little-endian on CUDA


def prepare_cuda_operand(p: Any, k: int | None = None) -> CudaOperand:
    """Prepare a constant packed operand (e.g. a layer's weights) once for :func:`matmul_cuda` / ``binary_matmul``.

    ``p``: CuPy (R, W) uint32 or uint64 words from :func:`qnnlib.runtime.bitpack.pack` (or a
    :class:`~qnnlib.runtime.bitpack.PackedBits`, which supplies ``k``). The result holds the words, their
    uint32 view (zero-copy for C-contiguous uint64) and their row popcounts (one kernel launch here, instead
    of one per product on the tensor-core path). With a ``k`` the words are checked once as ``binary_matmul``
    checks NumPy operands (``ceil(k / word_bits)`` words, zero padding bits): that check reads the last
    words back, one host sync, paid here and not per call.
    """
    if isinstance(p, PackedBits):
        if k is not None and check_size(k, "k") != p.k:
            raise ValueError(f"k={k} disagrees with the K={p.k} the PackedBits carries; omit k")
        p, k = p.words, p.k
    cp = cupy()
    packed = cp.ascontiguousarray(p)
    words = _u32_words(packed, cp)
    if k is not None:
        k = check_size(k, "k (the number of binary values per row)")
        word_bits = packed.dtype.itemsize * 8
        w = packed_width(k, word_bits)
        if packed.shape[1] != w:
            raise ValueError(f"K={k} needs ceil({k}/{word_bits}) = {w} words per row, got shape "
                             f"{tuple(packed.shape)}; pass the K given to bitpack.pack")
        if k % word_bits and packed.shape[0]:
            pad_mask = packed.dtype.type(~((1 << (k % word_bits)) - 1) & ((1 << word_bits) - 1))
            if bool((packed[:, -1] & pad_mask).any()):
                raise ValueError(f"the operand has nonzero padding bits past K={k} in its last word: it was not "
                                 f"packed with K={k} (pass the K given to bitpack.pack) or not by bitpack.pack")
    return CudaOperand(packed=packed, words=words, popcounts=_row_popcount_cuda(words), device=cuda_device_id())


def _wgmma_device() -> bool:
    """Whether the current device runs ``b1_wgmma.cu`` (compute capability exactly 9.0: sm_90a code)."""
    return compute_capability() == 90


def device_variants() -> tuple[str, ...]:
    """The :data:`CUDA_VARIANTS` the current device runs: ``cuda-xnor``; ``cuda-tc`` and ``cuda-tc-pipelined``
    from compute capability 8.0 (1-bit ``mma``); ``cuda-wgmma`` on 9.0 (sm_90a code runs nowhere else)."""
    return ("cuda-xnor",) + (("cuda-tc", "cuda-tc-pipelined") if compute_capability() >= 80 else ()) + \
        (("cuda-wgmma",) if _wgmma_device() else ())


@dataclass(frozen=True)
class WgmmaLayout:
    """A packed operand laid out for ``b1_wgmma_gemm`` by :func:`wgmma_layout`.

    Attributes:
        words: CuPy uint32, ``slabs * rows_padded * 16`` words: k-slab ``kt`` (512 bits of every row) at word
            ``16 * rows_padded * kt``, inside it row ``r`` and 128-bit chunk ``c`` at
            ``128 (r // 8) + 32 c + 4 (r % 8)`` (8-row x 128-bit core matrices; zero rows and words as padding).
        rows: the operand's rows.
        rows_padded: rows rounded up to a multiple of 256 (the kernel's widest tile).
        slabs: ``ceil(W / 16)`` for W 32-bit words per row.
    """

    words: Any
    rows: int
    rows_padded: int
    slabs: int


def wgmma_layout(words: Any) -> WgmmaLayout:
    """Lay out CuPy uint32 words (R, W) (LSB-first along K, zero padding) for ``b1_wgmma_gemm``: one kernel pass.

    Zero rows and zero words are exact padding: they add nothing to ``popc(A AND B)`` nor to the row popcounts,
    and K is passed to the GEMM separately.
    """
    cp = cupy()
    if words.ndim != 2 or words.dtype != np.uint32:
        raise ValueError(f"wgmma_layout expects (R, W) uint32 words, got {words.dtype} {tuple(words.shape)}")
    rows, w = (int(d) for d in words.shape)
    rows_padded = max(1, -(-rows // _WGMMA_ROW_ALIGN)) * _WGMMA_ROW_ALIGN
    slabs = max(1, -(-w // _WGMMA_SLAB_WORDS))
    out = cp.empty(slabs * rows_padded * _WGMMA_SLAB_WORDS, dtype=cp.uint32)
    units = slabs * rows_padded * (_WGMMA_SLAB_WORDS // 4)  # one thread per 16-byte unit (grid-stride)
    _cuda_function("b1_wgmma_layout")((_grid(units, 256),), (256,),
                                      (cp.ascontiguousarray(words), out, np.int32(rows), np.int32(w),
                                       np.int32(rows_padded), np.int32(slabs)))
    return WgmmaLayout(words=out, rows=rows, rows_padded=rows_padded, slabs=slabs)


def _wgmma_operand(x: Any, words: Any) -> WgmmaLayout:
    """The :class:`WgmmaLayout` of a matmul_cuda operand: cached on a :class:`CudaOperand`, else made now."""
    if isinstance(x, CudaOperand):
        if "wgmma" not in x.layouts:
            x.layouts["wgmma"] = wgmma_layout(words)
        return x.layouts["wgmma"]
    return wgmma_layout(words)


def _operand(x: Any, cp: Any, name: str) -> tuple[Any, Any]:
    """(uint32 words, row popcounts or None) of a matmul_cuda operand (array or :class:`CudaOperand`)."""
    if isinstance(x, CudaOperand):
        device = cuda_device_id()
        if x.device != device:
            raise ValueError(f"{name} was prepared on CUDA device {x.device} but device {device} is current; "
                             f"prepare it again (prepare_cuda_operand) with device {device} current")
        return x.words, x.popcounts
    return _u32_words(x, cp), None


def matmul_cuda(a: Any, b: Any, k: int, variant: str) -> Any:
    """``K - 2 * popcount(a XOR b)`` for every row pair (Eq. 7) on the GPU: CuPy int32 (M, N).

    ``a`` (M, W) and ``b`` (N, W) are CuPy arrays packed along the same K (uint32 or uint64 words, zero
    padding bits; :func:`qnnlib.runtime.binary_gemm.binary_matmul` checks them) or :class:`CudaOperand`\\ s
    from :func:`prepare_cuda_operand`, run as 32-bit words (uint64: a zero-copy uint32 view) by ``variant``:
    ``"cuda-xnor"`` (CUDA cores), ``"cuda-tc"`` or ``"cuda-tc-pipelined"`` (1-bit tensor cores, compute
    capability >= 8.0; the readable reference kernel, or the multi-stage ``cp.async``/``ldmatrix`` one;
    ``C = K - 2 (popcount(A) + popcount(B)) + 4 popcount(A AND B)``, with the row popcounts of a prepared
    operand reused and those of a bare one computed, one kernel each), or ``"cuda-wgmma"`` (compute capability
    9.0 only: the same product on Hopper's warpgroup tensor cores, each operand laid out by
    :func:`wgmma_layout` first -- once per prepared operand, once per call for a bare one).
    """
    if variant not in CUDA_VARIANTS:
        raise ValueError(f"variant must be one of {CUDA_VARIANTS}, got {variant!r}")
    cp = cupy()
    (a32, pop_a), (b32, pop_b) = _operand(a, cp, "a"), _operand(b, cp, "b")
    if a32.shape[1] != b32.shape[1]:
        raise ValueError(f"a and b must have the same number of 32-bit words per row (same K and word size), "
                         f"got {a32.shape[1]} and {b32.shape[1]}")
    (m, w), n = a32.shape, b32.shape[0]
    out = cp.empty((m, n), dtype=cp.int32)
    if out.size == 0:
        return out
    kernel = _VARIANT_KERNEL[variant]
    grid, block = gemm_launch(kernel, m, n)
    dims = (np.int32(m), np.int32(n), np.int32(w), np.int32(k))
    if variant == "cuda-xnor":
        _cuda_function(kernel)(grid, block, (a32, b32, out, *dims))
        return out
    # the tensor-core kernels: C = K - 2 (popA + popB) + 4 sum popc(A AND B)
    if variant == "cuda-wgmma" and not _wgmma_device():
        raise RuntimeError(f"backend 'cuda-wgmma' needs compute capability 9.0 (H100/H200: wgmma is sm_90a-only), "
                           f"this GPU has {compute_capability() / 10:.1f}; use 'cuda-tc-pipelined' or 'cuda'")
    if compute_capability() < 80:
        raise RuntimeError(f"backend {variant!r} needs compute capability >= 8.0 (1-bit mma); use 'cuda-xnor'")
    pop_a = _row_popcount_cuda(a32) if pop_a is None else pop_a
    pop_b = _row_popcount_cuda(b32) if pop_b is None else pop_b
    if variant != "cuda-wgmma":
        _cuda_function(kernel)(grid, block, (a32, b32, pop_a, pop_b, out, *dims))
        return out
    at, bt = _wgmma_operand(a, a32), _wgmma_operand(b, b32)
    fn = _cuda_function(kernel)
    if fn.max_dynamic_shared_size_bytes < WGMMA_SMEM_BYTES:  # above CUDA's 48 KiB default: opt in once
        fn.max_dynamic_shared_size_bytes = WGMMA_SMEM_BYTES
    fn(grid, block, (at.words, bt.words, pop_a, pop_b, out, np.int32(m), np.int32(n), np.int32(k),
                     np.int32(at.slabs), np.int32(at.rows_padded), np.int32(bt.rows_padded)),
       shared_mem=WGMMA_SMEM_BYTES)
    return out
