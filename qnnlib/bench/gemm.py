"""Binary GEMM benchmarks: ``python -m qnnlib bench cpu`` and ``python -m qnnlib bench gpu``.

The paper (NIPS 2016 §4, Fig. 2; docs/paper.md §1.5) times an 8192^3 binary matrix product on a GTX 750:
the XNOR kernel is ~23x faster than its own tiled float baseline and ~3.4x faster than cuBLAS. We
measure the same comparison, with every baseline timed in the same run on the same shapes:

- ``cpu``: :func:`qnnlib.runtime.binary_gemm.binary_matmul` (Numba XOR-popcount on packed words) against
  ``torch.matmul`` on float32 ±1 matrices, plus the packing time (:func:`cpu_gemm_sweep`), with the
  operations per cycle and core (clock measured in the same run, :func:`qnnlib.runtime.hardware.clock_ghz`),
  the operand bandwidth and the ISA the kernel ran on.
- ``gpu``: compiles every CUDA kernel, checks each bit-exact against the CPU reference on odd sizes,
  then times the paper's tiled float baseline, the XNOR CUDA-core kernel, the 1-bit tensor-core
  kernel, cuBLAS fp32 and torch TF32/bf16 with CUDA events (:func:`gpu_gemm_sweep`). It needs only
  numpy, cupy and (optionally) torch -- no pandas.

Times are medians of several runs after warm-up (the protocol of :mod:`qnnlib.bench.timing`). Ops are counted as 2*M*N*K (one multiply and one add
per connection, binary or not), so "Gop/s" compares like with like. A size ``n`` means M = N = K = n.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from qnnlib.bench.timing import cuda_event_median, drop_failing, interleaved_medians
from qnnlib.runtime.binary_gemm import binary_matmul
from qnnlib.runtime.bitpack import pack
from qnnlib.runtime.gemm_cpu import blocking, compiled_nibble_split, compiled_tile
from qnnlib.runtime.gemm_cuda import device_variants
from qnnlib.runtime.hardware import (
    cache_sizes,
    clock_ghz,
    compute_capability,
    cpu_cores,
    cpu_model,
    gpu_available,
    gpu_name,
    popcount_isa,
)

Shape = tuple[int, int, int]


def _shape(size: int | Sequence[int]) -> Shape:
    if isinstance(size, int):
        return (size, size, size)
    m, n, k = size
    return (int(m), int(n), int(k))


# ---------------------------------------------------------------------------------------------------
# CPU
# ---------------------------------------------------------------------------------------------------


#: ``bench cpu``'s default shapes: squares, and the 8192 x 8192 x 4096 product where a fall-off would show.
CPU_SHAPES: tuple[int | Shape, ...] = (256, 1024, 2048, 4096, (8192, 8192, 4096))


def cpu_gemm_sweep(
    sizes: Iterable[int | Sequence[int]] = CPU_SHAPES,
    repeats: int = 5,
    seed: int = 0,
    clock: float | None = None,
) -> "pandas.DataFrame":  # noqa: F821 - pandas is imported lazily
    """Time the packed binary GEMM against ``torch.matmul`` float32 on the same ±1 matrices.

    For each shape (M, N, K) it computes A @ B.T with A (M, K) and B (N, K) and records, per method,
    the median seconds (the methods alternate within each round, so background load hits them alike),
    Gop/s (2*M*N*K / s), the speed-up over torch float32, ``ops/cycle/core`` (2*M*N*K per second, per
    thread, per cycle of ``clock`` GHz -- measured here when not given) and ``GB/s``, the operand bytes
    the method must read and write (float32 A, B and C for torch; packed A, B and int32 C for the binary
    kernel) per second. Both products write into outputs allocated once per shape (``out=``), so what is
    timed is the GEMM, not the page faults of a fresh 64-256 MB result:

    - ``torch.matmul fp32``: the float baseline (all of torch's threads);
    - ``binary_matmul cpu``: the Numba XOR-popcount kernel on already packed operands;
    - ``pack A and B``: :func:`qnnlib.runtime.bitpack.pack` of both float operands;
    - ``binary incl. packing``: the sum of the two rows above (for weights, packing is done once).

    Every binary result is checked equal to the float product (exact: |entries| <= K < 2**24).
    """
    import numba  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    clock = clock_ghz() if clock is None else clock
    rows: list[dict[str, Any]] = []
    for size in sizes:
        m, n, k = _shape(size)
        a = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(m, k))
        b = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, k))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        pa, pb = pack(a), pack(b)

        c_float, c_int = torch.empty((m, n), dtype=torch.float32), np.empty((m, n), dtype=np.int32)
        exact = bool(np.array_equal(binary_matmul(pa, pb, k, "cpu"), torch.matmul(ta, tb.T).numpy()))
        med, _ = interleaved_medians(
            {
                "torch": lambda: torch.matmul(ta, tb.T, out=c_float),
                "binary": lambda: binary_matmul(pa, pb, k, "cpu", out=c_int),
                "pack": lambda: (pack(a), pack(b)),
            },
            repeats,
            budget_s=30.0,
        )
        t_torch, t_bin, t_pack = med["torch"], med["binary"], med["pack"]
        ops = 2.0 * m * n * k
        words = -(-k // 64) * 8  # bytes of a packed row
        traffic = {"torch.matmul fp32": 4.0 * (m * k + n * k + m * n), "binary_matmul cpu": words * (m + n) + 4.0 * m * n,
                   "pack A and B": 4.0 * (m + n) * k + words * (m + n)}
        traffic["binary incl. packing"] = traffic["binary_matmul cpu"] + traffic["pack A and B"]
        threads = max(1, min(torch.get_num_threads(), numba.get_num_threads()))
        for method, seconds in (
            ("torch.matmul fp32", t_torch),
            ("binary_matmul cpu", t_bin),
            ("pack A and B", t_pack),
            ("binary incl. packing", t_bin + t_pack),
        ):
            rows.append(
                {
                    "M": m, "N": n, "K": k, "method": method, "seconds": seconds,
                    "Gop/s": ops / seconds / 1e9 if method != "pack A and B" else float("nan"),
                    "speedup_vs_torch": t_torch / seconds if method != "pack A and B" else float("nan"),
                    "ops/cycle/core": ops / seconds / (clock * 1e9) / threads if method != "pack A and B"
                    else float("nan"),
                    "GB/s": traffic[method] / seconds / 1e9,
                    "exact": exact,
                    "torch_threads": torch.get_num_threads(),
                    "numba_threads": numba.get_num_threads(),
                    "clock_GHz": clock,
                }
            )
    return pd.DataFrame(rows)



def run_cpu(sizes: Sequence[int | Sequence[int]] | None = None, repeats: int = 5) -> int:
    """``python -m qnnlib bench cpu``: print the CPU GEMM table; exit code 1 if a product is not exact.

    The header says what the kernel ran on -- CPU model, LLVM target, popcount ISA, register tile, cache
    sizes, the clock measured before the sweep -- and each shape's cache blocks (:func:`blocking`)."""
    import llvmlite.binding as llvm  # noqa: PLC0415
    import numba  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    sizes = list(sizes or CPU_SHAPES)
    t0 = time.perf_counter()
    binary_matmul(pack(np.ones((2, 64))), pack(np.ones((2, 64))), 64, "cpu")  # Numba compile / cache load
    ready = time.perf_counter() - t0
    clock = clock_ghz()
    tile, split = compiled_tile(), bool(compiled_nibble_split())
    print(f"CPU: {cpu_model()} (LLVM target {llvm.get_host_cpu_name()}; {cpu_cores()} cores)")
    print(f"ISA: popcount {popcount_isa()}; register tile {tile[0]} rows x {8 * tile[1]} columns"
          f"{', nibble-split operands' if split else ''}")
    print(f"caches: {cache_sizes()}; clock measured {clock:.2f} GHz; Numba kernel ready in {ready:.1f} s")
    for size in sizes:
        m, n, k = _shape(size)
        b = blocking(m, n, -(-k // 64) * (2 if split else 1), split, tile, numba.get_num_threads(), cache_sizes())
        print(f"  blocks at {m}x{n}x{k}: {b.row_block} rows x {b.panel_block} panels (of 8 columns) x "
              f"{b.word_block} words of K, {b.tasks} tasks")
    df = cpu_gemm_sweep(sizes, repeats=repeats, clock=clock)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns=["torch_threads", "numba_threads", "clock_GHz"]).to_string(index=False,
                                                                                       float_format="%.4g"))
    print(f"threads: torch {df.torch_threads.iloc[0]}, numba {df.numba_threads.iloc[0]}; ops/cycle/core = "
          f"2*M*N*K / s / threads / {clock:.2f} GHz (binary: bit-ops, torch: FLOPs)")
    ok = bool(df.exact.all())
    print("all binary results equal the float products" if ok else "MISMATCH between binary and float results")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------------

VERIFY_SHAPES: tuple[Shape, ...] = ((7, 13, 1000), (1, 1, 1), (33, 65, 64), (130, 257, 4097), (129, 131, 513))


def verify_cuda_kernels(shapes: Iterable[Shape] = VERIFY_SHAPES, seed: int = 0) -> list[dict[str, Any]]:
    """Run every CUDA kernel on odd shapes and compare bit-exactly with the NumPy reference."""
    import cupy as cp  # noqa: PLC0415

    from qnnlib.runtime.gemm_cuda import gemm_float_cuda, pack_cuda  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    results = []
    for m, n, k in shapes:
        x = rng.standard_normal((m, k)).astype(np.float32)
        a = np.where(x >= 0, 1.0, -1.0).astype(np.float32)
        b = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, k))
        pa, pb = pack(a, 32), pack(b, 32)
        ref = binary_matmul(pa, pb, k, "numpy")
        x64 = x.astype(np.float64)
        x64[:, ::3] *= 1e-300  # float64 values that a cast to float32 would turn into -0.0 (+1) or +0.0
        checks = {
            "pack_rows_f32": np.array_equal(cp.asnumpy(pack_cuda(cp.asarray(x))), pa),
            "pack_rows_f64": np.array_equal(cp.asnumpy(pack_cuda(cp.asarray(x64))), pack(x64, 32)),
            "gemm_f32_tiled": np.array_equal(
                cp.asnumpy(gemm_float_cuda(cp.asarray(a), cp.asarray(np.ascontiguousarray(b.T)))), ref
            ),
            "xnor_gemm_u32": np.array_equal(
                cp.asnumpy(binary_matmul(cp.asarray(pa), cp.asarray(pb), k, "cuda-xnor")), ref
            ),
            "xnor_gemm_u32 (uint64 input)": np.array_equal(
                cp.asnumpy(binary_matmul(cp.asarray(pack(a)), cp.asarray(pack(b)), k, "cuda-xnor")), ref
            ),
        }
        errors: dict[str, str] = {}
        if compute_capability() >= 80:
            checks["b1_tc_gemm"] = np.array_equal(
                cp.asnumpy(binary_matmul(cp.asarray(pa), cp.asarray(pb), k, "cuda-tc")), ref
            )
            checks["b1_tc_gemm_pipelined"] = np.array_equal(
                cp.asnumpy(binary_matmul(cp.asarray(pa), cp.asarray(pb), k, "cuda-tc-pipelined")), ref
            )
        if compute_capability() == 90:  # sm_90a: never run on hardware before this check; a failure is reported
            try:
                checks["b1_wgmma_gemm"] = np.array_equal(
                    cp.asnumpy(binary_matmul(cp.asarray(pa), cp.asarray(pb), k, "cuda-wgmma")), ref)
            except Exception as exc:  # noqa: BLE001 - NVRTC, PTX load or launch: report it, do not stop the check
                checks["b1_wgmma_gemm"], errors["b1_wgmma_gemm"] = False, f"{type(exc).__name__}: {exc}"
        results += [{"shape": (m, n, k), "kernel": name, "exact": bool(ok), "error": errors.get(name)}
                    for name, ok in checks.items()]
    return results


#: Binary (1-bit) tensor-core peaks NVIDIA publishes, dense, in TOPS (2 operations per 1-bit multiply-add):
#: the A100 (SXM4, 1410 MHz boost), "NVIDIA A100 Tensor Core GPU Architecture" whitepaper (2020), Table 2:
#: 4,992 TOPS. NVIDIA publishes none for Hopper (H100/H200) or later.
BINARY_TC_PEAK_TOPS: dict[str, float] = {"A100": 4992.0}


def binary_tc_peak_tops(name: str | None = None) -> float | None:
    """The published binary tensor-core peak of the GPU called ``name`` (default: the current one), or None."""
    name = gpu_name() if name is None else name
    return next((tops for key, tops in BINARY_TC_PEAK_TOPS.items() if key in name), None)


def gpu_gemm_sweep(sizes: Iterable[int | Sequence[int]] = (1024, 4096, 8192), repeats: int = 30,
                   seed: int = 0, wgmma: bool | None = None) -> list[dict[str, Any]]:
    """Time every GPU GEMM on ±1 matrices A (M, K), B (N, K) computing A @ B.T; rows of plain dicts.

    Methods: the paper's 16x16-tiled float baseline, the XNOR CUDA-core kernel and the 1-bit
    tensor-core kernel (each on packed operands, and including the packing of both operands as in the
    paper's benchmark), cuBLAS fp32 via CuPy, and torch fp32 (TF32 off) / TF32 / bf16 when torch has
    CUDA. Speed-ups are against the float baseline and against cuBLAS fp32. All binary results are
    checked equal to the baseline's at every size. A method that fails to run (or, for the wgmma kernel, to
    equal the baseline) gets a row with its ``error`` and no timings; the others are still timed. ``wgmma``
    (default: on compute capability 9.0) adds the Hopper kernel, with bare operands (both laid out on every
    call) and with B prepared (laid out once, as a layer's weights).
    """
    import cupy as cp  # noqa: PLC0415

    from qnnlib.runtime.gemm_cuda import gemm_float_cuda, pack_cuda, prepare_cuda_operand  # noqa: PLC0415

    try:
        import torch  # noqa: PLC0415

        torch_cuda = torch.cuda.is_available()
    except ImportError:
        torch_cuda = False
    rows: list[dict[str, Any]] = []
    cp.random.seed(seed)
    for size in sizes:
        m, n, k = _shape(size)
        a = cp.where(cp.random.random((m, k)) < 0.5, -1.0, 1.0).astype(cp.float32)
        b = cp.where(cp.random.random((n, k)) < 0.5, -1.0, 1.0).astype(cp.float32)
        b_t = cp.ascontiguousarray(b.T)  # the baseline multiplies (M, K) by (K, N), as the paper's gemm
        pa, pb = pack_cuda(a), pack_cuda(b)
        methods: dict[str, Callable[[], Any]] = {
            "baseline float (16x16 tiles)": lambda: gemm_float_cuda(a, b_t),
            "XNOR CUDA cores": lambda: binary_matmul(pa, pb, k, "cuda-xnor"),
            "XNOR CUDA cores incl. packing": lambda: binary_matmul(pack_cuda(a), pack_cuda(b), k, "cuda-xnor"),
        }
        if compute_capability() >= 80:
            methods["b1 tensor cores"] = lambda: binary_matmul(pa, pb, k, "cuda-tc")
            methods["b1 tensor cores incl. packing"] = lambda: binary_matmul(pack_cuda(a), pack_cuda(b), k, "cuda-tc")
            methods["b1 tensor cores, pipelined"] = lambda: binary_matmul(pa, pb, k, "cuda-tc-pipelined")
        if (compute_capability() == 90) if wgmma is None else wgmma:
            pb_prep = prepare_cuda_operand(pb)
            methods["b1 tensor cores, wgmma (sm_90a)"] = lambda: binary_matmul(pa, pb, k, "cuda-wgmma")
            methods["b1 tensor cores, wgmma, B prepared"] = lambda: binary_matmul(pa, pb_prep, k, "cuda-wgmma")
        methods["cuBLAS fp32 (cupy)"] = lambda: cp.matmul(a, b.T)
        if torch_cuda:
            ta, tb = torch.from_dlpack(a), torch.from_dlpack(b)
            ta16, tb16 = ta.bfloat16(), tb.bfloat16()

            def _torch_mm(x, y, precision):
                def run():
                    torch.set_float32_matmul_precision(precision)  # "highest": fp32, "high": TF32
                    return torch.matmul(x, y.T)
                return run

            methods["torch fp32 (cuBLAS, TF32 off)"] = _torch_mm(ta, tb, "highest")
            methods["torch TF32"] = _torch_mm(ta, tb, "high")
            methods["torch bf16"] = _torch_mm(ta16, tb16, "highest")
            ta8, tb8t = ta.to(torch.int8), tb.to(torch.int8).T.contiguous()  # ±1 as int8, B^T as (K, N)
            try:
                torch._int_mm(ta8[:32], tb8t[:, :32])  # cuBLASLt int8 x int8 -> int32; shape rules vary by version
                methods["cuBLAS int8 (torch._int_mm)"] = lambda: torch._int_mm(ta8, tb8t)
            except (RuntimeError, AttributeError) as exc:
                print(f"cuBLAS int8 (torch._int_mm) skipped at {m}x{n}x{k}: {exc}")

        # a method that cannot run here is reported in a row of its own; the others are still timed
        methods, failed = drop_failing(methods, sync=lambda: cp.cuda.Device().synchronize())
        # exactness at the timed size: every binary kernel equals the float baseline
        base = gemm_float_cuda(a, b_t)
        for name in ("XNOR CUDA cores", "b1 tensor cores", "b1 tensor cores, pipelined",
                     "b1 tensor cores, wgmma (sm_90a)", "b1 tensor cores, wgmma, B prepared"):
            if name in methods and not bool(cp.array_equal(methods[name]().astype(cp.float32), base)):
                if "wgmma" not in name:
                    raise AssertionError(f"{name} differs from the float baseline at {m}x{n}x{k}")
                failed[name] = "its product differs from the float baseline"
                del methods[name]
        del base

        ops = 2.0 * m * n * k
        times = {name: cuda_event_median(fn, repeats) for name, fn in methods.items()}
        if torch_cuda:
            torch.set_float32_matmul_precision("highest")
        t_base = times["baseline float (16x16 tiles)"]
        t_cublas = times.get("torch fp32 (cuBLAS, TF32 off)", times["cuBLAS fp32 (cupy)"])
        peak = binary_tc_peak_tops()
        for name, seconds in times.items():
            binary_tc = name.startswith("b1 tensor cores") and "packing" not in name
            rows.append({"M": m, "N": n, "K": k, "method": name, "ms": seconds * 1e3,
                         "Top/s": ops / seconds / 1e12, "vs_baseline": t_base / seconds,
                         "vs_cublas_fp32": t_cublas / seconds,
                         "vs_bf16": times["torch bf16"] / seconds if "torch bf16" in times else float("nan"),
                         "of_b1_peak": ops / seconds / 1e12 / peak if binary_tc and peak else float("nan"),
                         "error": None})
        nan = float("nan")
        rows += [{"M": m, "N": n, "K": k, "method": name, "ms": nan, "Top/s": nan, "vs_baseline": nan,
                  "vs_cublas_fp32": nan, "vs_bf16": nan, "of_b1_peak": nan, "error": why}
                 for name, why in failed.items()]
        methods.clear()  # drop this size's operands before the next size allocates its own
        a = b = b_t = pa = pb = pb_prep = ta = tb = ta16 = tb16 = ta8 = tb8t = None
        cp.get_default_memory_pool().free_all_blocks()
    return rows


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))


def _gpu_mlp_rows(hidden: int, images: int, repeats: int, seed: int = 0,
                  backends: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The MLP 784-3xhidden-10 on the GPU (random weights: speed does not depend on them), via
    :func:`qnnlib.bench.mlp.mlp_gpu_rows`; needs torch but no pandas."""
    from qnnlib.bench.mlp import float_mlp, mlp_gpu_rows, random_bnn  # noqa: PLC0415
    from qnnlib.runtime.export import export_bnn  # noqa: PLC0415

    bnn = random_bnn(hidden, seed=seed)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(images, 784), dtype=np.uint8)
    return mlp_gpu_rows(bnn, export_bnn(bnn), float_mlp(hidden, seed=seed), pixels, repeats, backends) or []


def convnet_gpu_rows(width: float = 0.5, images: int = 500, repeats: int = 3, batch: int = 100,
                     backends: Sequence[str] | None = None, device: str = "cuda",
                     seed: int = 0) -> list[dict[str, Any]]:
    """The binary CIFAR-10 ConvNet (random weights, BN statistics from one batch: speed does not depend on
    them) on ``images`` random 3x32x32 inputs, in batches of ``batch``; rows of plain dicts (no pandas).
    ``backends`` default: :func:`gpu_backends`.

    Rows: the float32 model on ``device`` (cuDNN on a GPU), the same in bf16 there, and
    :class:`~qnnlib.runtime.packed_convnet.PackedConvNet` with its GEMMs on each of ``backends`` -- the
    im2col gather, pooling and thresholds stay on the CPU, so this times the GPU kernels inside the CPU
    pipeline, copies included -- and on ``"cpu"``. ``identical_to_packed_cpu``: predictions equal the CPU
    runtime's (integer arithmetic: they must); ``agreement_pct`` of the float model with the packed one (a
    float first layer on another device may round differently near a threshold)."""
    import torch  # noqa: PLC0415

    from qnnlib.models.convnet import cifar10_convnet  # noqa: PLC0415
    from qnnlib.runtime.export_convnet import export_convnet  # noqa: PLC0415

    torch.manual_seed(seed)
    model = cifar10_convnet(width=width)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = 1.0
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((images, 3, 32, 32), generator=g) * 2 - 1
    with torch.no_grad():
        model.train()(x[:64])
    model.eval()
    packed = export_convnet(model)
    backends = gpu_backends() if backends is None else backends
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else None  # noqa: E731

    def torch_run(dtype: Any) -> Callable[[], np.ndarray]:
        m = copy.deepcopy(model).to(device=device, dtype=dtype)
        xd = x.to(device=device, dtype=dtype)

        def run() -> np.ndarray:
            with torch.inference_mode():
                return torch.cat([m(xd[i:i + batch]).argmax(1) for i in range(0, images, batch)]).cpu().numpy()
        return run

    def packed_run(backend: str) -> Callable[[], np.ndarray]:
        return lambda: np.concatenate([packed.predict(x[i:i + batch], backend) for i in range(0, images, batch)])

    fns: dict[str, Callable[[], Any]] = {f"PyTorch fp32 ConvNet on {device}": torch_run(torch.float32)}
    if device.startswith("cuda"):
        fns[f"PyTorch bf16 ConvNet on {device}"] = torch_run(torch.bfloat16)
    for backend in backends:
        fns[f"PackedConvNet, GEMMs on {backend} (im2col, pool, threshold on the CPU)"] = packed_run(backend)
    fns["PackedConvNet on the CPU"] = packed_run("cpu")
    fns, failed = drop_failing(fns, sync)  # a kernel that cannot run here: reported (error), the rest timed
    med, last = interleaved_medians(fns, repeats, sync=sync)
    ref = last["PackedConvNet on the CPU"]
    base = med[f"PyTorch fp32 ConvNet on {device}"]
    nan = float("nan")
    return [{"method": name, "seconds": sec, "images/s": images / sec, "speedup_vs_fp32": base / sec,
             "identical_to_packed_cpu": bool(np.array_equal(last[name], ref)) if name.startswith("Packed") else None,
             "agreement_pct": 100.0 * float(np.mean(last[name] == ref)), "images": images, "width": width,
             "error": None}
            for name, sec in med.items()] + [
        {"method": name, "seconds": nan, "images/s": nan, "speedup_vs_fp32": nan, "identical_to_packed_cpu": None,
         "agreement_pct": nan, "images": images, "width": width, "error": why} for name, why in failed.items()]


def gpu_backends(wgmma: bool = True) -> tuple[str, ...]:
    """The CUDA GEMM backends the GPU benchmarks time: :func:`~qnnlib.runtime.gemm_cuda.device_variants`,
    without ``cuda-wgmma`` when ``wgmma`` is false (it failed its check)."""
    return tuple(v for v in device_variants() if wgmma or v != "cuda-wgmma")


def run_gpu(sizes: Sequence[int | Sequence[int]] | None = None, repeats: int = 30, mlp_hidden: int = 4096,
            mlp_images: int = 10_000) -> int:
    """``python -m qnnlib bench gpu``: the one prepared check for a CUDA machine.

    Compiles and verifies every CUDA kernel bit-exact against the CPU reference on odd shapes, prints the
    GEMM table (1024/4096/8192^3 by default: the float baseline kernel, the XNOR and b1 kernels -- the wgmma
    one on compute capability 9.0 --, cuBLAS fp32 and int8, torch fp32/TF32/bf16), then times the MLP
    784-3x4096-10 on 10k images (PackedBNN on each CUDA kernel vs the float MLP on cuBLAS and on the baseline
    kernel; predictions checked against the CPU runtime and the PyTorch BNN) and the binary ConvNet
    (:func:`convnet_gpu_rows`). Needs numpy, cupy, numba and torch, not pandas; prints its wall time (budget:
    5 minutes on an H100/H200). A wgmma kernel that fails its check, or any method that fails to run, is
    reported and left out while the rest is timed. Exit code 2 without a usable GPU; 1 if a kernel or a
    packed network is not exact, or anything was left out."""
    t_start = time.perf_counter()
    ok, why = gpu_available()
    if not ok:
        print(f"gpu benchmark: no usable GPU: {why}")
        return 2
    from qnnlib.runtime.gemm_cuda import compile_cuda_kernels  # noqa: PLC0415

    print(f"GPU: {gpu_name()}; CPU: {cpu_model()} ({cpu_cores()} cores)")
    for name, seconds in compile_cuda_kernels().items():
        print(f"compiled {name:<20} {seconds:6.2f} s")
    checks = verify_cuda_kernels()
    bad = [c for c in checks if not c["exact"]]
    print(f"bit-exact checks vs the CPU reference: {len(checks) - len(bad)}/{len(checks)} passed")
    for c in bad:
        print(f"  FAIL {c['kernel']} at M,N,K = {c['shape']}" + (f": {c['error']}" if c.get("error") else ""))
    wgmma_ok = compute_capability() == 90 and not any(c["kernel"] == "b1_wgmma_gemm" for c in bad)
    if any(c["kernel"] != "b1_wgmma_gemm" for c in bad):
        return 1
    if compute_capability() == 90 and not wgmma_ok:
        print("  the wgmma kernel is left out of the tables below; the other kernels are timed")
    rows = gpu_gemm_sweep(sizes or [1024, 4096, 8192], repeats=repeats, wgmma=wgmma_ok)
    print(f"\nbinary GEMM A @ B.T on {gpu_name()} (median of CUDA-event times after warm-up)")
    _print_rows(rows, ["M", "N", "K", "method", "ms", "Top/s", "vs_baseline", "vs_cublas_fp32", "vs_bf16",
                       "of_b1_peak"])
    peak = binary_tc_peak_tops()
    print(f"of_b1_peak: Top/s over the binary tensor-core peak NVIDIA publishes for this GPU ({peak} TOPS)" if peak
          else "of_b1_peak: NVIDIA publishes no binary tensor-core peak for this GPU (only the A100's, 4992 TOPS)")
    failures = [f"{r['method']} at {r['M']}x{r['N']}x{r['K']}: {r['error']}" for r in rows if r.get("error")]
    for line in failures:
        print(f"  LEFT OUT {line}")
    print(f"({time.perf_counter() - t_start:.0f} s so far)")
    mlp = _gpu_mlp_rows(mlp_hidden, mlp_images, repeats=5, backends=gpu_backends(wgmma_ok))
    print(f"\nMLP 784-3x{mlp_hidden}-10 inference, {mlp_images} images, random weights (wall-clock medians, synced)")
    _print_rows(mlp, ["method", "seconds", "images/s", "speedup_vs_baseline_kernel", "speedup_vs_cublas",
                      "identical_to_packed_cpu", "identical_to_torch_bnn"])
    conv = convnet_gpu_rows(backends=gpu_backends(wgmma_ok))
    print("\nbinary CIFAR-10 ConvNet (width 0.5: convs 64-64-128-128-256-256, fc 1024), 500 random images in "
          "batches of 100, random weights (wall-clock medians, synced)")
    _print_rows(conv, ["method", "seconds", "images/s", "speedup_vs_fp32", "identical_to_packed_cpu", "agreement_pct"])
    exact = all(r["identical_to_packed_cpu"] for r in mlp + conv if r["identical_to_packed_cpu"] is not None)
    net_failures = [f"{r['method']}: {r['error']}" for r in mlp + conv if r.get("error")]
    for line in net_failures:
        print(f"LEFT OUT {line}")
    failures += net_failures
    print(f"\nbench gpu finished in {time.perf_counter() - t_start:.0f} s")
    if not exact:
        print("MISMATCH: a packed network on the GPU predicted differently from the same network on the CPU")
    return 0 if exact and not failures and (wgmma_ok or compute_capability() != 90) else 1
