"""Tests for qnnlib.runtime.hardware: ISA flags, the popcount the CPU kernel gets, cache sizes from sysfs,
the measured clock, and the machine description every benchmark prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from qnnlib.runtime import hardware
from qnnlib.runtime.hardware import DEFAULT_CACHES, CacheSizes, cache_sizes, clock_ghz, describe, popcount_isa


def _fake_sysfs(root: Path, entries: list[tuple[int, str, str]]) -> Path:
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return root


def test_cache_sizes_from_sysfs(tmp_path):
    root = _fake_sysfs(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                  (3, "Unified", "300M")])
    sizes = cache_sizes(root)
    assert (sizes.l1d, sizes.l2, sizes.l3) == (48 << 10, 2 << 20, 300 << 20)  # the instruction cache is ignored
    assert str(root) in sizes.source and "default" not in sizes.source
    assert "L1d 48 KiB" in str(sizes)


def test_cache_sizes_fall_back_and_say_so(tmp_path):
    assert cache_sizes(tmp_path / "missing") == DEFAULT_CACHES
    partial = cache_sizes(_fake_sysfs(tmp_path / "p", [(1, "Data", "32K"), (2, "Unified", "1M")]))
    assert partial.l3 == DEFAULT_CACHES.l3 and "L3 not listed, default used" in partial.source
    broken = _fake_sysfs(tmp_path / "b", [(1, "Data", "lots")])
    assert cache_sizes(broken) == DEFAULT_CACHES


def test_this_machines_caches_are_plausible():
    sizes = cache_sizes()
    assert isinstance(sizes, CacheSizes)
    assert 8 << 10 <= sizes.l1d <= sizes.l2 <= max(sizes.l3, sizes.l2)


def test_popcount_isa_dispatches_on_flags():
    assert popcount_isa(frozenset({"avx2", "avx512_vpopcntdq"})).startswith("AVX-512 VPOPCNTDQ")
    assert popcount_isa(frozenset({"avx2", "popcnt"})).startswith("AVX2 only")
    assert popcount_isa(frozenset({"popcnt"})) == "scalar popcnt"
    assert popcount_isa(frozenset()) == "unknown"


def test_cpu_flags_read_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 popcnt\n\n"
                    "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    monkeypatch.setattr(hardware, "CPUINFO", info)
    hardware._cpuinfo_fields.cache_clear()
    try:
        assert hardware.cpu_flags() == frozenset({"fpu", "avx2", "popcnt"})
        assert hardware.cpu_model() == "Test CPU 9000"
    finally:
        hardware._cpuinfo_fields.cache_clear()


def test_clock_is_measured_and_plausible():
    ghz = clock_ghz(0.05)
    assert 0.3 < ghz < 8.0, ghz  # a dependent 1-cycle chain: any real CPU core, loaded or not


def test_describe_names_what_benchmarks_print():
    info = describe()
    for key in ("cpu", "llvm_target", "cores", "cpu_popcount", "torch_threads", "numba_threads", "caches", "gpu",
                "gpu_skipped_reason"):
        assert key in info, key
    assert info["caches"] == str(cache_sizes())
    if info["gpu"] is None:
        assert info["gpu_skipped_reason"]


@pytest.mark.parametrize("text,expected", [("48K", 48 << 10), ("2048K", 2 << 20), ("300M", 300 << 20), ("64", 64)])
def test_sysfs_size_units(text, expected):
    assert hardware._size_bytes(text) == expected


def test_numba_threads_are_made_passive_after_torch_started(tmp_path):
    """Importing the CPU GEMM starts torch's OpenMP runtime first, then sets GOMP_SPINCOUNT=0 for Numba's
    (a value the user set is kept)."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "import qnnlib.runtime.gemm_cpu\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "GOMP_SPINCOUNT"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "True"]
    done = subprocess.run([sys.executable, "-c", code], env={**env, "GOMP_SPINCOUNT": "1000"}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.stdout.split() == ["1000", "True"]
