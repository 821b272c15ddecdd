"""The CUDA kernels of ``kernels/*.cu`` compiled for the CPU and run under an emulator, with a CuPy stand-in.

This lets a machine without a GPU execute the *same* kernel sources that :mod:`qnnlib.runtime.gemm_cuda`
hands to CuPy, through the same host code (launch geometry, padding, :func:`~qnnlib.runtime.bitpack.as_u32_words`),
so that the kernels' own code and indexing are checked bit-exactly in CI.

How. :class:`HostCupy` is a minimal stand-in for the ``cupy`` module, exactly what ``gemm_cuda`` and
``bitpack`` call: device arrays are NumPy arrays, ``RawModule(code=..., options=...)`` compiles the code
string it is given with g++ (``-O2 -std=c++20 -DQNNLIB_HOST_EMULATION -include kernels/host_emulation.h
-x c++ -shared -fPIC``) plus generated ``extern "C"`` launchers, into a shared library cached under
``~/.cache/qnnlib/cuda_host/`` (or ``$QNNLIB_CUDA_HOST_CACHE``) keyed by a hash of the code, the header, the
flags and the compiler version, and loads it with :mod:`ctypes`. ``get_function(name)`` returns a
:class:`HostKernel`; calling it as CuPy does, ``kernel(grid, block, args)``, runs that launch -- with the grid
and block the host code chose, so a wrong grid shows up as missing outputs.

What is emulated (``kernels/host_emulation.h`` has the details): every CUDA thread of a block is a
cooperative fiber; ``__shared__`` memory is per block; ``__syncthreads()`` is a barrier over all the block's
threads; warp collectives (``__ballot_sync``, ``__shfl*_sync``, ``__any/__all_sync``, ``__syncwarp``)
and the warp-wide ``mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc`` are warp barriers -- the
mma gathers the 32 lanes' fragments into the full A, B, C matrices with the fragment layout of the PTX ISA,
computes ``D = C + popc(A AND B)`` and scatters D back, so a kernel whose fragment layout disagrees with the
ISA computes a wrong product. Hopper's ``wgmma.mma_async ... .b1.and.popc`` (warpgroup collectives, executed at
the ``wgmma.wait_group`` that completes them, operands read through the shared-memory matrix descriptors),
``mbarrier`` phases with transaction counts, and ``cp.async.bulk`` copies into dynamic shared memory are
emulated too, with reports of a slot refilled too early or read before its barrier. Divergent collectives,
barriers nobody can pass, ``__trap()``, and launch configurations CUDA would refuse (over 1024 threads or
``__launch_bounds__``, a zero dimension, dynamic shared memory over the kernel's limit) raise ``RuntimeError``. Arrays from :meth:`HostCupy.empty` are filled with the byte ``0xA5`` (so outputs a kernel
never writes are visible) and carry guard bytes on both sides, checked after every launch (so writes out of
bounds are reported).

What is not: timing and performance, the memory model and races beyond the barriers (blocks may run
concurrently on a few OS threads), out-of-bounds *reads*, shared-memory bank conflicts, caching hints
(``__restrict__``, ``__ldg``), registers and occupancy, TMA tensor maps and swizzled layouts, ``__constant__``
memory, streams
(launches are synchronous), lock-step SIMT execution of divergent code outside collectives, and FMA
contraction: nvcc turns ``a * b + c`` into an FMA by default, this build uses ``-ffp-contract=off``, so the
float kernel's results are those of separate IEEE float32 multiply and add in the kernel's order.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import types
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from qnnlib.runtime.gemm_cuda import KERNEL_DIR
from qnnlib.runtime.hardware import cpu_cores

__all__ = [
    "CXX_FLAGS",
    "EMULATION_HEADER",
    "POISON_BYTE",
    "HostCupy",
    "HostKernel",
    "HostRawModule",
    "cache_dir",
    "gxx",
    "kernel_names",
]

#: The header force-included before every kernel source (the CUDA built-ins, fibers, the mma emulation).
EMULATION_HEADER = KERNEL_DIR / "host_emulation.h"
#: g++ flags of every host build (the header and the generated launchers are added to these).
CXX_FLAGS = ("-O2", "-std=c++20", "-DQNNLIB_HOST_EMULATION", "-ffp-contract=off", "-fPIC", "-shared",
             "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-function", "-pthread")
#: Every byte of a :meth:`HostCupy.empty` array and of its guard zones before a launch.
POISON_BYTE = 0xA5
_GUARD_BYTES = 64
_ERR_BYTES = 4096
_MAX_PARAMS = 64
_DEFAULT_DYNAMIC_SHARED = 48 * 1024  # CUDA's default limit without cudaFuncSetAttribute

_KERNEL_RE = re.compile(
    r"__global__\s+(?:__launch_bounds__\s*\(([^()]*)\)\s*)?void\s+(?:__launch_bounds__\s*\(([^()]*)\)\s*)?"
    r"([A-Za-z_]\w*)\s*\("
)


def gxx() -> str:
    """Path of g++ (``$CXX`` if set), or a ``RuntimeError`` saying to install it."""
    for candidate in (os.environ.get("CXX"), "g++", "/usr/bin/g++"):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    raise RuntimeError(
        "running the CUDA kernels on the CPU needs a C++20 compiler: install g++ (apt install g++) or point "
        "$CXX at one"
    )


@functools.cache
def _compiler_version(compiler: str) -> str:
    done = subprocess.run([compiler, "--version"], check=False, capture_output=True, text=True, timeout=60)
    return done.stdout


def cache_dir() -> Path:
    """Where compiled host modules are kept: ``$QNNLIB_CUDA_HOST_CACHE``, else ``~/.cache/qnnlib/cuda_host``."""
    override = os.environ.get("QNNLIB_CUDA_HOST_CACHE")
    base = Path(override) if override else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = base if override else base / "qnnlib" / "cuda_host"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / "qnnlib-cuda-host"
        path.mkdir(parents=True, exist_ok=True)
    return path


def _strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", " ", code)


def kernel_names(code: str) -> dict[str, str | None]:
    """The ``__global__`` functions of a CUDA source -> their ``__launch_bounds__`` max-threads expression."""
    out: dict[str, str | None] = {}
    for match in _KERNEL_RE.finditer(_strip_comments(code)):
        bounds = match.group(1) or match.group(2)
        out[match.group(3)] = bounds.split(",")[0].strip() if bounds else None
    return out


def _launchers(kernels: dict[str, str | None]) -> str:
    lines = []
    for name, bound in kernels.items():
        lines += [
            (f'extern "C" int qnnlib_launch_{name}(const unsigned int* grid, const unsigned int* block, '
             "unsigned long long shared_bytes, void** args, int workers, char* err, int errlen) {"),
            (f'    return ::qnnlib_emu::launch(&{name}, "{name}", (long long)({bound or -1}), grid, block, '
             "shared_bytes, args, workers, err, errlen);"),
            "}",
            f'extern "C" int qnnlib_params_{name}(long long* out, int cap) {{',
            f"    return ::qnnlib_emu::kernel_params(&{name}, out, cap);",
            "}",
        ]
    return "\n".join(lines) + "\n"


@functools.cache
def _load(path: str) -> ctypes.CDLL:
    return ctypes.CDLL(path)


def _compile(code: str) -> tuple[ctypes.CDLL, dict[str, str | None]]:
    """Compile ``code`` (a CUDA source) for the host emulator, or load it from the cache."""
    compiler = gxx()
    kernels = kernel_names(code)
    if not kernels:
        raise ValueError("the CUDA source defines no __global__ function, so there is nothing to launch")
    header = EMULATION_HEADER.read_text()
    flags = (*CXX_FLAGS, "-include", str(EMULATION_HEADER), "-x", "c++")
    key = hashlib.sha256(
        "\0".join([code, header, " ".join(CXX_FLAGS), _compiler_version(compiler)]).encode()
    ).hexdigest()[:24]
    root = cache_dir()
    lib = root / f"{key}.so"
    if not lib.is_file():
        work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=root))
        try:
            (work / "kernel.cu").write_text(code)
            (work / "module.cpp").write_text('#include "kernel.cu"\n\n' + _launchers(kernels))
            out = work / "module.so"
            done = subprocess.run([compiler, *flags, str(work / "module.cpp"), "-o", str(out)],
                                  check=False, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(
                    f"g++ could not compile the CUDA source for the host emulator (exit {done.returncode}); fix "
                    f"the kernel or kernels/host_emulation.h. Compiler output:\n{done.stderr}"
                )
            os.replace(out, lib)  # atomic: concurrent test processes never load a half-written library
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _load(str(lib)), kernels


def _dims(value: Any, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(d < 0 or d >= 2**32 for d in dims):
        raise ValueError(f"{what} dimensions must fit an unsigned int, got {value!r}")
    return dims  # type: ignore[return-value]


class HostKernel:
    """One kernel of a :class:`HostRawModule`; call it like a CuPy ``RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(self, module: HostRawModule, name: str, launch_bound: str | None) -> None:
        self.module = module
        self.name = name
        lib = module.library
        self._launch = getattr(lib, f"qnnlib_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.POINTER(ctypes.c_uint)] * 2 + [
            ctypes.c_ulonglong, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        info = (ctypes.c_longlong * (3 * _MAX_PARAMS))()
        count = getattr(lib, f"qnnlib_params_{name}")(info, 3 * _MAX_PARAMS)
        #: (bytes, is_pointer, pointee bytes) of every kernel parameter.
        self.params = [(info[3 * i], bool(info[3 * i + 1]), info[3 * i + 2]) for i in range(count)]
        self.launch_bound = launch_bound
        #: As CuPy's ``RawKernel.max_dynamic_shared_size_bytes`` (``cudaFuncAttributeMaxDynamicSharedMemorySize``):
        #: a launch with more than 48 KiB of dynamic shared memory needs it raised first, as on a GPU.
        self.max_dynamic_shared_size_bytes = _DEFAULT_DYNAMIC_SHARED

    @property
    def attributes(self) -> dict[str, Any]:
        """What CuPy's ``RawKernel.attributes`` reports that the emulator knows (plus ``"emulated": True``)."""
        return {"max_threads_per_block": 1024, "num_params": len(self.params), "emulated": True,
                "launch_bounds": self.launch_bound,
                "max_dynamic_shared_size_bytes": self.max_dynamic_shared_size_bytes}

    def _marshal(self, args: tuple) -> tuple[list[Any], list[np.ndarray]]:
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments, {len(args)} given")
        keep: list[Any] = []
        arrays = []
        for i, (arg, (size, is_ptr, pointee)) in enumerate(zip(args, self.params)):
            if isinstance(arg, np.ndarray) and (arg.ndim > 0 or is_ptr):
                if not is_ptr:
                    raise TypeError(f"kernel {self.name} argument {i} is a {size}-byte scalar, got an array")
                if pointee and arg.itemsize != pointee:
                    raise TypeError(f"kernel {self.name} argument {i} points to {pointee}-byte elements, got an "
                                    f"array of {arg.dtype} ({arg.itemsize} bytes)")
                keep.append(ctypes.c_void_p(arg.ctypes.data))
                arrays.append(arg)
                continue
            if is_ptr:
                raise TypeError(f"kernel {self.name} argument {i} is a pointer, got {type(arg).__name__}")
            if isinstance(arg, bool):
                value = np.array(arg, dtype=np.bool_)
            elif isinstance(arg, int):  # what CuPy does with Python scalars
                value = np.array(arg, dtype=np.int64)
            elif isinstance(arg, float):
                value = np.array(arg, dtype=np.float64)
            elif isinstance(arg, (np.generic, np.ndarray)):
                value = np.array(arg)
            else:
                raise TypeError(f"kernel {self.name} argument {i}: unsupported type {type(arg).__name__}")
            if value.itemsize != size:
                raise TypeError(f"kernel {self.name} argument {i} is a {size}-byte scalar, got {value.dtype} "
                                f"({value.itemsize} bytes): pass e.g. np.int32(...) for an int parameter")
            keep.append(value)
        return keep, arrays

    def __call__(self, grid: Any, block: Any, args: tuple, *, shared_mem: int = 0, stream: Any = None) -> None:
        """Run the launch on the emulator (synchronously); ``RuntimeError`` for a kernel or launch error.

        ``shared_mem`` is the dynamic shared memory per block; over :attr:`max_dynamic_shared_size_bytes` it is
        refused as CUDA refuses it.
        """
        shared_mem = int(shared_mem)
        if shared_mem < 0:
            raise ValueError(f"shared_mem must be >= 0, got {shared_mem}")
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise RuntimeError(f"CUDA host emulation: {self.name}: invalid argument (launch with {shared_mem} bytes of "
                               f"dynamic shared memory, over the kernel's max_dynamic_shared_size_bytes = "
                               f"{self.max_dynamic_shared_size_bytes}; raise that attribute first)")
        g, b = _dims(grid, "grid"), _dims(block, "block")
        keep, arrays = self._marshal(tuple(args))
        ptrs = (ctypes.c_void_p * max(1, len(keep)))()
        for i, obj in enumerate(keep):
            ptrs[i] = ctypes.addressof(obj) if isinstance(obj, ctypes.c_void_p) else obj.ctypes.data
        self.module.owner.launches.append((self.name, g, b))
        err = ctypes.create_string_buffer(_ERR_BYTES)
        workers = max(1, min(cpu_cores(), g[0] * g[1] * g[2]))
        rc = self._launch((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b), shared_mem, ptrs, workers, err,
                          _ERR_BYTES)
        if rc:
            raise RuntimeError(f"CUDA host emulation: {err.value.decode(errors='replace')}")
        for i, arr in enumerate(arrays):
            self.module.owner.check_guards(arr, f"kernel {self.name} argument {i}")


class HostRawModule:
    """A CuPy ``RawModule`` stand-in: ``code`` compiled for the host emulator (NVRTC ``options`` are kept, unused)."""

    def __init__(self, owner: HostCupy, code: str, options: tuple = ()) -> None:
        self.owner = owner
        self.code = code
        self.options = tuple(options)
        self.library, self.kernels = _compile(code)

    def get_function(self, name: str) -> HostKernel:
        """The kernel ``name`` (KeyError-like ``RuntimeError`` listing the module's kernels if absent)."""
        if name not in self.kernels:
            raise RuntimeError(f"named symbol not found: kernel {name!r} is not a __global__ function of this "
                               f"module (it has {sorted(self.kernels)})")
        return HostKernel(self, name, self.kernels[name])


class HostCupy:
    """The part of the ``cupy`` module that ``gemm_cuda`` and ``bitpack`` use, over NumPy and the emulator.

    Monkeypatch ``qnnlib.runtime.gemm_cuda.cupy`` (and ``qnnlib.runtime.binary_gemm.cupy``) to return an
    instance, and the CUDA backends run their kernels on the CPU.
    """

    float32 = np.float32
    float64 = np.float64
    int32 = np.int32
    int64 = np.int64
    uint32 = np.uint32
    uint64 = np.uint64
    bool_ = np.bool_
    ndarray = np.ndarray
    #: Marks the stand-in: ``gemm_cuda`` compiles every source from its code here (no NVRTC, no PTX files).
    emulated = True

    def __init__(self) -> None:
        self._guarded: dict[int, weakref.ref] = {}
        #: (kernel name, grid, block) of every launch, in order.
        self.launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = []
        #: What ``cuda.Device().id`` reports (``gemm_cuda`` keys its caches by it); set it to model another GPU.
        self.device_id = 0

    @property
    def cuda(self) -> Any:
        """The ``cupy.cuda`` part that ``gemm_cuda`` uses: ``cuda.Device().id`` is :attr:`device_id`."""
        return types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=self.device_id))

    def RawModule(self, code: str, options: tuple = ()) -> HostRawModule:
        """Compile ``code`` for the host emulator (cached on disk by content)."""
        return HostRawModule(self, code, options)

    def empty(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        """An array whose bytes are all ``POISON_BYTE``, with guard bytes on both sides (checked after launches)."""
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buf = np.full(nbytes + 2 * _GUARD_BYTES, POISON_BYTE, dtype=np.uint8)
        self._guarded[id(buf)] = weakref.ref(buf)
        return buf[_GUARD_BYTES: _GUARD_BYTES + nbytes].view(dtype).reshape(shape)

    def check_guards(self, arr: np.ndarray, what: str) -> None:
        """``RuntimeError`` if the guard bytes around ``arr``'s :meth:`empty` buffer were overwritten."""
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        ref = self._guarded.get(id(root))
        if ref is None or ref() is not root:
            return
        if (root[:_GUARD_BYTES] != POISON_BYTE).any() or (root[-_GUARD_BYTES:] != POISON_BYTE).any():
            raise RuntimeError(f"CUDA host emulation: {what} was written out of bounds (guard bytes changed)")

    @staticmethod
    def ascontiguousarray(a: Any, dtype: Any = None) -> np.ndarray:
        """``numpy.ascontiguousarray``."""
        return np.ascontiguousarray(a, dtype=dtype)

    @staticmethod
    def asarray(a: Any, dtype: Any = None) -> np.ndarray:
        """``numpy.asarray``."""
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def asnumpy(a: Any) -> np.ndarray:
        """A host copy, as ``cupy.asnumpy`` makes."""
        return np.array(a, copy=True)

    @staticmethod
    def array_equal(a: Any, b: Any) -> bool:
        """``numpy.array_equal``."""
        return bool(np.array_equal(a, b))

    @staticmethod
    def zeros(shape: Any, dtype: Any = np.float64) -> np.ndarray:
        """``numpy.zeros``."""
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def stack(arrays: Any, axis: int = 0) -> np.ndarray:
        """``numpy.stack``."""
        return np.stack(arrays, axis=axis)

    @staticmethod
    def concatenate(arrays: Any, axis: int = 0) -> np.ndarray:
        """``numpy.concatenate``."""
        return np.concatenate(arrays, axis=axis)
