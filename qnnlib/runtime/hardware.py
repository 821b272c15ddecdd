"""What the machine offers the binary kernels: CPU model and ISA flags, the popcount the CPU kernel uses, the GPU.

The project's machines differ (some have AVX-512 VPOPCNTDQ, some only AVX2), so every benchmark prints
:func:`popcount_isa` next to its numbers. ``/proc/cpuinfo`` is read once (:func:`cpu_flags`,
:func:`cpu_model`); on systems without it the flags are empty and the model falls back to
:func:`platform.processor`. The GPU is looked up through CuPy, imported only here and only on demand
(:func:`gpu_available`, :func:`gpu_name`, :func:`compute_capability`).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CPUINFO", "CACHE_DIR", "CacheSizes", "DEFAULT_CACHES", "cache_sizes", "cpu_flags", "cpu_model",
           "cpu_cores", "popcount_isa", "gpu_available", "gpu_name", "compute_capability", "clock_ghz",
           "passive_numba_threads", "describe"]

CPUINFO = Path("/proc/cpuinfo")
#: Where Linux describes the first CPU's caches (``index*/level``, ``type``, ``size``).
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class CacheSizes:
    """Per-core data cache sizes in bytes (L3: the whole shared cache), and where they came from."""

    l1d: int
    l2: int
    l3: int
    source: str

    def __str__(self) -> str:
        return f"L1d {self.l1d >> 10} KiB, L2 {self.l2 >> 10} KiB, L3 {self.l3 >> 20} MiB ({self.source})"


#: Used where the sizes cannot be read: small enough for any x86-64 CPU of the last decade.
DEFAULT_CACHES = CacheSizes(l1d=32 << 10, l2=1 << 20, l3=8 << 20, source="defaults: sysfs unreadable")


def _size_bytes(text: str) -> int:
    """sysfs cache size ("48K", "2048K", "300M") -> bytes."""
    text = text.strip().upper()
    unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * unit


@functools.lru_cache(maxsize=None)
def cache_sizes(cache_dir: Path = CACHE_DIR) -> CacheSizes:
    """The L1d, L2 and L3 sizes of this machine's first CPU, from sysfs (``cache_dir/index*``).

    Levels that sysfs does not list (or a machine without sysfs) take :data:`DEFAULT_CACHES`' value, and
    ``source`` says so. The binary GEMM sizes its cache blocks from these
    (:func:`qnnlib.runtime.gemm_cpu.blocking`)."""
    found: dict[int, int] = {}
    try:
        for index in sorted(cache_dir.glob("index*")):
            kind = (index / "type").read_text().strip()
            if kind in ("Data", "Unified"):
                found[int((index / "level").read_text())] = _size_bytes((index / "size").read_text())
    except (OSError, ValueError):
        found = {}
    if not found:
        return DEFAULT_CACHES
    missing = [f"L{lv}" for lv in (1, 2, 3) if lv not in found]
    source = f"{cache_dir}" + (f"; {', '.join(missing)} not listed, default used" if missing else "")
    return CacheSizes(l1d=found.get(1, DEFAULT_CACHES.l1d), l2=found.get(2, DEFAULT_CACHES.l2),
                      l3=found.get(3, DEFAULT_CACHES.l3), source=source)


@functools.lru_cache(maxsize=None)
def _cpuinfo_fields() -> tuple[tuple[str, str], ...]:
    """``(key, value)`` of the first processor block of ``/proc/cpuinfo`` (empty when unreadable)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return ()
    fields = []
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.append((key.strip().lower(), value.strip()))
    return tuple(fields)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags`` line of ``/proc/cpuinfo``; x86 names such as ``avx2``)."""
    for key, value in _cpuinfo_fields():
        if key in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    """The CPU model name, e.g. ``"AMD EPYC 7B13"`` (``"unknown"`` if nothing says)."""
    for key, value in _cpuinfo_fields():
        if key in ("model name", "hardware", "cpu model"):
            return value
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def popcount_isa(flags: frozenset[str] | None = None) -> str:
    """How the CPU kernel of :mod:`qnnlib.runtime.gemm_cpu` counts bits on this CPU, in words."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vpopcntdq" in flags:
        return "AVX-512 VPOPCNTDQ (vpopcntq)"
    if "avx2" in flags:
        return "AVX2 only: vectorised popcount via vpshufb nibble tables (no AVX-512 VPOPCNTDQ)"
    return "scalar popcnt" if "popcnt" in flags else "unknown"


def clock_ghz(seconds: float = 0.2) -> float:
    """This core's clock while busy, in GHz, measured: a chain of dependent 1-cycle integer operations
    (``x = x + (x ^ c)``: an XOR and an ADD per step, each waiting for the last) run for about
    ``seconds`` and divided by the time. Under load or thermal limits the clock and so the number drop;
    benchmarks print it next to their per-cycle figures. (Wide AVX-512 code may run at a lower clock.)"""
    import time  # noqa: PLC0415

    from numba import njit  # noqa: PLC0415

    @njit(cache=False)
    def chain(n: int, c: int) -> int:  # pragma: no cover - compiled by Numba
        x = 1
        for _ in range(n):
            x = x + (x ^ c)
        return x

    chain(10, 12345)
    n, best = 1 << 20, 0.0
    while True:
        t0 = time.perf_counter()
        chain(n, 12345)
        dt = time.perf_counter() - t0
        best = max(best, 2 * n / dt / 1e9)  # 2 dependent 1-cycle operations per step
        if dt > seconds / 3:
            break
        n *= 2
    for _ in range(2):
        t0 = time.perf_counter()
        chain(n, 12345)
        best = max(best, 2 * n / (time.perf_counter() - t0) / 1e9)
    return best


def passive_numba_threads() -> str:
    """Make Numba's OpenMP threads sleep as soon as a parallel kernel ends (``GOMP_SPINCOUNT=0``, unless the
    variable is already set); returns the value in effect. Called when :mod:`qnnlib.runtime.gemm_cpu` is imported.

    Numba's ``omp`` threading layer runs on the system ``libgomp``, torch on the ``libgomp`` it bundles: two
    OpenMP runtimes, each with a thread per core that by default spins after every parallel region.
    Alternating Numba kernels and torch ops (a float first layer, the output BN, PyTorch baselines timed in
    the same rounds) then fight for the cores: on 2 cores the packed ConvNet ran 2-5x slower, and PyTorch
    ~1.5x slower, in our measurements. libgomp reads the variable when it starts, so torch is imported first:
    its runtime keeps its default policy, and only Numba's (started by the first parallel kernel) is passive.
    """
    import torch  # noqa: F401, PLC0415 - start torch's OpenMP runtime with its own default first

    return os.environ.setdefault("GOMP_SPINCOUNT", "0")


def gpu_available() -> tuple[bool, str]:
    """Whether CuPy and a CUDA device are usable, with the reason when not."""
    try:
        import cupy as cp  # noqa: PLC0415 - the GPU extra is optional
    except ImportError:
        return False, "CuPy is not installed (pip install 'qnnlib[gpu]')"
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return False, "no CUDA device found"
    except Exception as exc:  # noqa: BLE001 - any driver/runtime failure means: no usable GPU
        return False, f"CUDA runtime unavailable: {exc}"
    return True, ""


def compute_capability() -> int:
    """Compute capability of the current CUDA device as an integer, e.g. 90 for sm_90 (needs CuPy)."""
    import cupy as cp  # noqa: PLC0415

    return int(cp.cuda.Device().compute_capability)


def gpu_name() -> str:
    """The current CUDA device's name and architecture, e.g. ``"NVIDIA H100 (sm_90)"`` (needs CuPy)."""
    import cupy as cp  # noqa: PLC0415

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{name} (sm_{cp.cuda.Device().compute_capability})"


def _numba_layer() -> str:
    """Numba's threading layer once a parallel kernel has run (``"not started"`` before)."""
    import numba  # noqa: PLC0415

    try:
        return numba.threading_layer()
    except ValueError:
        return "not started"


def describe() -> dict[str, object]:
    """Everything a benchmark prints next to its numbers: CPU, ISA, LLVM target, threads, GPU (or why none)."""
    import llvmlite.binding as llvm  # noqa: PLC0415 - numba's LLVM: the target the CPU kernel is compiled for
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    ok, why = gpu_available()
    return {"cpu": cpu_model(), "llvm_target": llvm.get_host_cpu_name(), "machine": platform.machine(),
            "cores": cpu_cores(), "cpu_popcount": popcount_isa(), "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.get_num_threads(), "torch": torch.__version__, "caches": str(cache_sizes()),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "numba_threading_layer": _numba_layer(),
            "gpu": gpu_name() if ok else None, "gpu_skipped_reason": None if ok else why}
