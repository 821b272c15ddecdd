"""A dry run of ``bench gpu``'s Python on the CPU: the GEMM sweep and the MLP rows with CuPy replaced by the
host emulator (the CUDA kernels compiled by g++, NumPy for the array calls, a fake CUDA-event clock).

GPU time is rare here, and ``python -m qnnlib bench gpu`` is run once when a GPU is lent: a Python error in
its code paths (which CI otherwise never executes) would waste that run. No timing means anything here; the
kernels' results are checked by the benchmark itself (every binary product against the float baseline, the
packed MLP's predictions against the CPU runtime).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from qnnlib.bench import gemm as bench_gemm
from qnnlib.bench import mlp as bench_mlp
from qnnlib.runtime import binary_gemm, gemm_cuda, packed_bnn
from qnnlib.runtime.cuda_host import HostCupy
from tests.runtime.emulator import needs_gxx

pytestmark = needs_gxx


class DryRunCupy(HostCupy):
    """HostCupy plus what the benchmarks call: NumPy for the array functions, a CUDA namespace whose events
    report 1 ms, a memory pool that frees nothing."""

    random = types.SimpleNamespace(seed=lambda s: np.random.seed(s), random=lambda shape: np.random.random(shape))

    def __getattr__(self, name: str):
        return getattr(np, name)

    @property
    def cuda(self):
        class Event:
            def record(self) -> None: ...

            def synchronize(self) -> None: ...

        device = types.SimpleNamespace(id=self.device_id, synchronize=lambda: None)
        return types.SimpleNamespace(Device=lambda: device, Event=Event, get_elapsed_time=lambda a, b: 1.0)

    @staticmethod
    def get_default_memory_pool():
        return types.SimpleNamespace(free_all_blocks=lambda: None)


@pytest.fixture
def dry(monkeypatch):
    emu = DryRunCupy()
    monkeypatch.setitem(sys.modules, "cupy", emu)
    for module in (gemm_cuda, binary_gemm, bench_gemm):
        monkeypatch.setattr(module, "compute_capability", lambda: 90)
    monkeypatch.setattr(bench_mlp, "gpu_available", lambda: (True, ""))
    monkeypatch.setattr(bench_gemm, "gpu_name", lambda: "NVIDIA H100 80GB HBM3 (emulated)")
    monkeypatch.setattr(packed_bnn, "cupy", lambda: emu)
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()
    yield emu
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()


def test_the_gemm_sweep_runs_every_kernel_and_reports_a_failing_one(dry, monkeypatch):
    rows = bench_gemm.gpu_gemm_sweep([(40, 260, 300)], repeats=1)
    methods = {r["method"] for r in rows}
    assert {"XNOR CUDA cores", "b1 tensor cores, pipelined", "b1 tensor cores, wgmma (sm_90a)",
            "b1 tensor cores, wgmma, B prepared", "cuBLAS fp32 (cupy)"} <= methods
    assert not any(r["error"] for r in rows)
    real = binary_gemm.matmul_cuda

    def wrong_wgmma(a, b, k, variant):
        out = real(a, b, k, variant)
        return out + 2 if variant == "cuda-wgmma" else out

    monkeypatch.setattr(binary_gemm, "matmul_cuda", wrong_wgmma)
    rows = bench_gemm.gpu_gemm_sweep([(40, 260, 300)], repeats=1)
    errors = {r["method"]: r["error"] for r in rows if r["error"]}
    assert errors == {"b1 tensor cores, wgmma (sm_90a)": "its product differs from the float baseline",
                      "b1 tensor cores, wgmma, B prepared": "its product differs from the float baseline"}
    assert any(r["method"] == "b1 tensor cores, pipelined" and r["ms"] > 0 for r in rows)  # the rest is timed


def test_run_gpu_goes_through_to_the_end_with_exit_code_0(dry, monkeypatch, capsys):
    """The whole prepared check, small: compile, verify, GEMM table, MLP, ConvNet (on the CPU's torch here);
    exit code 0 means every kernel was exact and every packed network predicted as the CPU runtime does."""
    monkeypatch.setattr(bench_gemm, "gpu_available", lambda: (True, ""))
    real_convnet = bench_gemm.convnet_gpu_rows
    monkeypatch.setattr(bench_gemm, "convnet_gpu_rows", lambda backends: real_convnet(
        width=0.125, images=2, repeats=1, batch=2, device="cpu", backends=backends))
    assert bench_gemm.run_gpu(sizes=[(40, 260, 300)], repeats=1, mlp_hidden=64, mlp_images=40) == 0
    out = capsys.readouterr().out
    assert "bit-exact checks vs the CPU reference:" in out and "FAIL" not in out and "LEFT OUT" not in out
    for name in ("b1 tensor cores, wgmma (sm_90a)", "PackedBNN cuda-wgmma (Eq. 6)", "GEMMs on cuda-wgmma"):
        assert name in out
    assert "bench gpu finished in" in out
