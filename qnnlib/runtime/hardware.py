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
from pathlib import Path

__all__ = ["CPUINFO", "cpu_flags", "cpu_model", "cpu_cores", "popcount_isa", "gpu_available", "gpu_name",
           "compute_capability", "describe"]

CPUINFO = Path("/proc/cpuinfo")


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


def describe() -> dict[str, object]:
    """Everything a benchmark prints next to its numbers: CPU, ISA, LLVM target, threads, GPU (or why none)."""
    import llvmlite.binding as llvm  # noqa: PLC0415 - numba's LLVM: the target the CPU kernel is compiled for
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    ok, why = gpu_available()
    return {"cpu": cpu_model(), "llvm_target": llvm.get_host_cpu_name(), "machine": platform.machine(),
            "cores": cpu_cores(), "cpu_popcount": popcount_isa(), "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.get_num_threads(), "torch": torch.__version__,
            "gpu": gpu_name() if ok else None, "gpu_skipped_reason": None if ok else why}
