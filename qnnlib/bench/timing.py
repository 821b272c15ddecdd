"""The timing protocol of the benchmarks: warm-up, interleaved repeats, medians (docs/decisions.md D20).

Every method of a comparison is timed in the same run on the same inputs. :func:`interleaved_medians`
runs each function ``warmup`` times, then ``repeats`` rounds in which every function runs once in
turn (so background load on a shared machine hits all methods alike), and reports the median wall
time per function. For asynchronous devices pass ``sync`` (e.g. ``cupy.cuda.Device().synchronize``):
it runs after the warm-up and inside every timed call, so a timing covers the work, not its launch.
:func:`cuda_event_median` times one function on the GPU between CUDA events.

Needs only the standard library (and CuPy for :func:`cuda_event_median`): no pandas, no torch, so it
runs on a GPU machine with just torch/cupy/numba/numpy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["interleaved_medians", "cuda_event_median", "drop_failing"]


def drop_failing(fns: Mapping[str, Callable[[], Any]], sync: Callable[[], None] | None = None
                 ) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """Run each function once (then ``sync``); ``(the ones that ran, {name: "Error: message"} of the rest)``.

    For a one-shot check on rare hardware: a method that fails (a kernel this GPU or toolkit cannot build, a
    launch error) is reported and left out, and the other methods are still timed.
    """
    ok: dict[str, Callable[[], Any]] = {}
    failed: dict[str, str] = {}
    for name, fn in fns.items():
        try:
            fn()
            if sync is not None:
                sync()
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides what a failure means
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        ok[name] = fn
    return ok, failed


def interleaved_medians(fns: Mapping[str, Callable[[], Any]], repeats: int, *, warmup: int = 1,
                        sync: Callable[[], None] | None = None, budget_s: float | None = None
                        ) -> tuple[dict[str, float], dict[str, Any]]:
    """Median wall-clock seconds of each function, timed in interleaved rounds, and its last result.

    Args:
        fns: name -> a function of no arguments (the thing to time).
        repeats: timed rounds (at least one is run); each round calls every function once, in order.
        warmup: untimed calls of each function before the first round.
        sync: called once after the warm-up and after every timed call, inside the timing
            (``None``: nothing to wait for, e.g. CPU work).
        budget_s: stop after the round in which the summed timed seconds pass ``budget_s``, once at
            least 3 rounds are done (``None``: always run ``repeats`` rounds).

    Returns:
        ``(medians, last)``: median seconds per name, and the result of each function's last call.
    """
    last: dict[str, Any] = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            last[name] = fn()
    if sync is not None:
        sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = 0.0
    for round_ in range(max(1, repeats)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            last[name] = fn()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - t0)
            spent += times[name][-1]
        if budget_s is not None and round_ >= 2 and spent > budget_s:
            break
    return {name: statistics.median(ts) for name, ts in times.items()}, last


def cuda_event_median(fn: Callable[[], Any], repeats: int, warmup: int = 3, budget_s: float = 4.0) -> float:
    """Median GPU seconds of ``fn()`` between CUDA events (on the legacy default stream, which both CuPy
    and torch use by default), after ``warmup`` runs; stops early once ``budget_s`` is spent (after at
    least 3 runs)."""
    import cupy as cp  # noqa: PLC0415

    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times: list[float] = []
    for _ in range(max(1, repeats)):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
        if len(times) >= 3 and sum(times) > budget_s:
            break
    return statistics.median(times)
