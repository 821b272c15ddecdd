"""Tests for qnnlib.bench.timing: the warm-up / interleaved rounds / medians protocol (call order, sync, the
early stop on a time budget), without timed assertions; the CUDA-event timer on a GPU only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qnnlib.bench import timing
from qnnlib.bench.timing import cuda_event_median, drop_failing, interleaved_medians
from qnnlib.runtime.hardware import gpu_available


def recorder(log: list[str], name: str, value: object = None):
    def fn():
        log.append(name)
        return value if value is not None else len(log)
    return fn


def test_warm_up_then_rounds_run_every_function_in_turn():
    log: list[str] = []
    med, last = interleaved_medians({"a": recorder(log, "a"), "b": recorder(log, "b")}, 3, warmup=2)
    assert log == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(med) == {"a", "b"} and all(v >= 0 for v in med.values())
    assert last == {"a": 9, "b": 10}  # the result of each function's last call


def test_sync_runs_after_the_warm_up_and_inside_every_timed_call():
    log: list[str] = []
    interleaved_medians({"a": recorder(log, "a"), "b": recorder(log, "b")}, 2, sync=lambda: log.append("sync"))
    assert log == ["a", "b", "sync"] + ["a", "sync", "b", "sync"] * 2


def test_drop_failing_keeps_what_runs_and_reports_the_rest():
    log: list[str] = []

    def broken():
        log.append("broken")
        raise RuntimeError("NVRTC could not compile kernels/b1_wgmma.cu")

    ok, failed = drop_failing({"a": recorder(log, "a"), "x": broken, "b": recorder(log, "b")},
                              sync=lambda: log.append("sync"))
    assert list(ok) == ["a", "b"] and failed == {"x": "RuntimeError: NVRTC could not compile kernels/b1_wgmma.cu"}
    assert log == ["a", "sync", "broken", "b", "sync"]  # each run once; a failed sync counts as a failure too
    _, failed = drop_failing({"s": recorder(log, "s")}, sync=lambda: 1 / 0)
    assert failed == {"s": "ZeroDivisionError: division by zero"}


def test_budget_stops_after_three_rounds_and_at_least_one_round_runs(monkeypatch):
    clock = iter(range(10_000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(clock)))  # every call takes 1 s
    log: list[str] = []
    interleaved_medians({"a": recorder(log, "a")}, 50, warmup=0, budget_s=2.5)
    assert log == ["a"] * 3
    log.clear()
    med, _ = interleaved_medians({"a": recorder(log, "a")}, 5, warmup=0)
    assert log == ["a"] * 5 and med == {"a": 1.0}
    log.clear()
    interleaved_medians({"a": recorder(log, "a")}, 0, warmup=0)
    assert log == ["a"]


def test_timing_imports_neither_pandas_nor_torch():
    code = "import sys, qnnlib.bench.timing; print(sorted({'pandas', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.gpu
def test_cuda_event_median_times_a_gpu_function():
    ok, why = gpu_available()
    if not ok:
        pytest.skip(why)
    import cupy as cp  # noqa: PLC0415

    a = cp.ones((256, 256), cp.float32)
    calls = []
    seconds = cuda_event_median(lambda: calls.append(cp.matmul(a, a)), repeats=5, warmup=2)
    assert seconds > 0 and len(calls) == 7
