"""The Hopper binary GEMM (kernels/b1_wgmma.cu) on the CPU emulator, and nvcc for sm_90a.

``b1_wgmma_gemm`` (wgmma.mma_async .b1 .and.popc from shared memory, TMA bulk copies, an mbarrier pipeline with
one producer and two consumer warpgroups) and its operand layout kernel ``b1_wgmma_layout`` run under
:class:`~qnnlib.runtime.cuda_host.HostCupy`, through ``gemm_cuda.matmul_cuda(..., "cuda-wgmma")`` (the host
code: layout, row popcounts, the dynamic shared memory opt-in, the launch) and directly; they are checked
bit-exactly against NumPy and against the simple ``b1_tc_gemm`` on odd shapes. Probe kernels check the
emulator's wgmma (matrix descriptors, the accumulator fragment of the PTX ISA), mbarrier (phases, parity,
transaction bytes) and bulk copy against their definitions. Mutants of the kernel (a slot released before its
wgmma completed, a missing full-barrier wait, a wrong SBO, a wrong accumulator mapping, a missing final wait, a
wrong producer parity, a wrong arrival count, a wrong layout) show that these tests fail when the kernel is
wrong. nvcc compiles it for sm_90a without spills within the 384-thread register budget.

No speed is measured or asserted here: there is no GPU in CI.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.bench import gemm as bench_gemm
from qnnlib.runtime import binary_gemm, gemm_cuda
from qnnlib.runtime.cuda_host import HostCupy
from qnnlib.runtime.gemm_cuda import KERNEL_DIR, WGMMA_SMEM_BYTES, gemm_launch, matmul_cuda, prepare_cuda_operand
from tests.runtime.emulator import needs_gxx
from tests.runtime.test_b1_pipelined import operands, reference
from tests.runtime.test_kernels_compile import NVCC, needs_nvcc

SOURCE = KERNEL_DIR / "b1_wgmma.cu"
NAME = "b1_wgmma_gemm"

# (M, N, K): partial 128 x 256 tiles, K not a multiple of 32 or 512, several 512-bit slabs so the 4-slot ring
# wraps (K = 4097: 9 slabs), a single slab, a single row or column.
SHAPES = [(1, 1, 1), (7, 13, 1000), (129, 257, 4097), (130, 300, 513), (256, 256, 2048), (5, 3, 31),
          (128, 256, 512), (257, 129, 160), (1, 513, 96), (300, 7, 2079)]


def layout_numpy(words: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The documented layout (top of b1_wgmma.cu), written independently: (words, rows_padded, slabs)."""
    r, w = words.shape
    rp, slabs = max(1, -(-r // 256)) * 256, max(1, -(-w // 16))
    padded = np.zeros((rp, slabs * 16), dtype=np.uint32)
    padded[:r, :w] = words
    out = np.zeros(slabs * rp * 16, dtype=np.uint32)
    for kt in range(slabs):
        for row in range(rp):
            for c in range(4):
                base = kt * 16 * rp + 128 * (row // 8) + 32 * c + 4 * (row % 8)
                out[base:base + 4] = padded[row, kt * 16 + 4 * c: kt * 16 + 4 * c + 4]
    return out, rp, slabs


def run(fn, host: HostCupy, a: np.ndarray, b: np.ndarray, k: int, shared: int = WGMMA_SMEM_BYTES) -> np.ndarray:
    """Launch a (possibly mutant) b1_wgmma_gemm directly on NumPy-laid-out operands."""
    m, n = a.shape[0], b.shape[0]
    at, mp, slabs = layout_numpy(a)
    bt, np_, _ = layout_numpy(b)
    pop_a = np.bitwise_count(a).sum(axis=1).astype(np.int32)
    pop_b = np.bitwise_count(b).sum(axis=1).astype(np.int32)
    c = host.empty((m, n), dtype=np.int32)
    fn.max_dynamic_shared_size_bytes = shared
    grid, block = gemm_launch(NAME, m, n)
    fn(grid, block, (at, bt, pop_a, pop_b, c, np.int32(m), np.int32(n), np.int32(k), np.int32(slabs),
                     np.int32(mp), np.int32(np_)), shared_mem=shared)
    return c


@pytest.fixture
def host(monkeypatch):
    """CuPy replaced by the host emulator with compute capability 9.0 (an H100), module caches cleared."""
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()
    emu = HostCupy()
    monkeypatch.setattr(gemm_cuda, "cupy", lambda: emu)
    monkeypatch.setattr(gemm_cuda, "compute_capability", lambda: 90)
    yield emu
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()


@pytest.fixture(scope="module")
def raw_host() -> HostCupy:
    return HostCupy()


@pytest.fixture(scope="module")
def kernel(raw_host):
    return raw_host.RawModule(code=SOURCE.read_text()).get_function(NAME)


# ---- through the host code: matmul_cuda(..., "cuda-wgmma") ------------------------------------------------


@needs_gxx
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_bit_exact_against_numpy_through_the_host_code(host, m, n, k):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = operands(rng, m, n, k)
    got = matmul_cuda(a, b, k, "cuda-wgmma")
    np.testing.assert_array_equal(got, reference(a, b, k))
    names = [name for name, _, _ in host.launches]
    assert names.count("b1_wgmma_layout") == 2 and names[-1] == NAME
    assert host.launches[-1][2] == (384, 1, 1)


@needs_gxx
def test_the_layout_kernel_writes_the_documented_layout(host):
    rng = np.random.default_rng(11)
    for r, w in [(1, 1), (7, 17), (257, 33), (300, 16), (64, 48)]:
        words = rng.integers(0, 2**32, size=(r, w), dtype=np.uint32)
        got = gemm_cuda.wgmma_layout(words)
        want, rp, slabs = layout_numpy(words)
        assert (got.rows, got.rows_padded, got.slabs) == (r, rp, slabs)
        np.testing.assert_array_equal(got.words, want)


@needs_gxx
def test_a_prepared_operand_is_laid_out_once(host):
    m, n, k = 40, 300, 700
    a, b = operands(np.random.default_rng(12), m, n, k)
    weights = prepare_cuda_operand(b)
    for _ in range(3):
        np.testing.assert_array_equal(matmul_cuda(a, weights, k, "cuda-wgmma"), reference(a, b, k))
    names = [name for name, _, _ in host.launches]
    assert names.count("b1_wgmma_layout") == 1 + 3  # the weights once, the activations on every call
    assert names.count("row_popcount_u32") == 1 + 3


@needs_gxx
def test_same_as_the_simple_tensor_core_kernel(host):
    m, n, k = 129, 257, 4097
    a, b = operands(np.random.default_rng(13), m, n, k, density=0.3)
    np.testing.assert_array_equal(matmul_cuda(a, b, k, "cuda-wgmma"), matmul_cuda(a, b, k, "cuda-tc"))


@needs_gxx
@pytest.mark.parametrize("density", [0.0, 1.0])
def test_extremes_all_minus_ones_and_all_ones(host, density):
    m, n, k = 131, 259, 777
    a, b = operands(np.random.default_rng(0), m, n, k, density=density)
    assert (matmul_cuda(a, b, k, "cuda-wgmma") == k).all()


@needs_gxx
@pytest.mark.parametrize("schedule", ["round-robin", "depth-first"])
def test_bit_exact_under_both_schedules(host, monkeypatch, schedule):
    """The race-free kernel gives the same result whichever thread the emulator runs ahead."""
    monkeypatch.setenv("QNNLIB_CUDA_HOST_SCHEDULE", schedule)
    m, n, k = 140, 270, 5000
    a, b = operands(np.random.default_rng(7), m, n, k)
    np.testing.assert_array_equal(matmul_cuda(a, b, k, "cuda-wgmma"), reference(a, b, k))


@needs_gxx
def test_without_the_dynamic_shared_memory_opt_in_the_launch_is_refused(raw_host, kernel):
    """Over 48 KiB of dynamic shared memory needs the kernel attribute raised first (CUDA refuses otherwise)."""
    fresh = raw_host.RawModule(code=SOURCE.read_text()).get_function(NAME)
    a, b = operands(np.random.default_rng(1), 8, 8, 64)
    fresh.max_dynamic_shared_size_bytes = 48 * 1024
    at, mp, slabs = layout_numpy(a)
    with pytest.raises(RuntimeError, match="max_dynamic_shared_size_bytes"):
        fresh((1, 1), (384,), (at, at, np.zeros(8, np.int32), np.zeros(8, np.int32), raw_host.empty((8, 8), np.int32),
                               np.int32(8), np.int32(8), np.int32(64), np.int32(slabs), np.int32(mp), np.int32(mp)),
              shared_mem=WGMMA_SMEM_BYTES)
    with pytest.raises(RuntimeError, match="launched with sharedMem = 0"):  # no dynamic shared memory at all
        run(kernel, raw_host, a, b, 64, shared=0)


@needs_gxx
@settings(max_examples=6, deadline=None)
@given(m=st.integers(1, 140), n=st.integers(1, 270), k=st.integers(1, 1600), seed=st.integers(0, 2**16),
       density=st.sampled_from([0.1, 0.5, 0.9]))
def test_property_random_small_shapes(m, n, k, seed, density):
    host = HostCupy()
    fn = host.RawModule(code=SOURCE.read_text()).get_function(NAME)  # cached on disk by content
    a, b = operands(np.random.default_rng(seed), m, n, k, density)
    np.testing.assert_array_equal(run(fn, host, a, b, k), reference(a, b, k))


def test_gemm_launch_of_the_wgmma_kernel():
    assert gemm_launch(NAME, 300, 600) == ((3, 3), (384,))
    with pytest.raises(ValueError, match="N <= 16776960"):
        gemm_launch(NAME, 1, 65535 * 256 + 1)


@needs_gxx
def test_bench_gpu_verification_checks_the_wgmma_kernel_and_reports_its_failure(monkeypatch):
    """``bench gpu``'s kernel check on an emulated H100: every kernel exact; a wgmma that fails is reported
    (exact False, with the error) instead of stopping the check, so the other kernels still get timed."""
    emu = HostCupy()
    monkeypatch.setitem(sys.modules, "cupy", emu)  # the benchmark imports cupy itself
    for module in (gemm_cuda, binary_gemm, bench_gemm):
        monkeypatch.setattr(module, "compute_capability", lambda: 90)
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()
    try:
        shapes = ((7, 13, 1000), (130, 257, 600))
        rows = bench_gemm.verify_cuda_kernels(shapes)
        assert {r["kernel"] for r in rows} >= {"xnor_gemm_u32", "b1_tc_gemm", "b1_tc_gemm_pipelined", "b1_wgmma_gemm"}
        assert all(r["exact"] for r in rows), [r for r in rows if not r["exact"]]
        assert bench_gemm.gpu_backends() == ("cuda-xnor", "cuda-tc", "cuda-tc-pipelined", "cuda-wgmma")
        assert bench_gemm.gpu_backends(wgmma=False) == ("cuda-xnor", "cuda-tc", "cuda-tc-pipelined")

        real = binary_gemm.matmul_cuda

        def no_sm90a(a, b, k, variant):
            if variant == "cuda-wgmma":
                raise RuntimeError("NVRTC could not compile kernels/b1_wgmma.cu for compute_90a")
            return real(a, b, k, variant)

        monkeypatch.setattr(binary_gemm, "matmul_cuda", no_sm90a)
        rows = bench_gemm.verify_cuda_kernels(shapes)
        bad = [r for r in rows if not r["exact"]]
        assert [r["kernel"] for r in bad] == ["b1_wgmma_gemm"] * 2
        assert "NVRTC could not compile" in bad[0]["error"]
    finally:
        gemm_cuda._cuda_module.cache_clear()
        gemm_cuda._cuda_function.cache_clear()


# ---- the tests can fail: mutants of the kernel ------------------------------------------------------------


def _mutant(old: str, new: str) -> str:
    code = SOURCE.read_text()
    assert code.count(old) == 1, f"mutation target {old!r} found {code.count(old)} times"
    return code.replace(old, new)


WRONG_RESULT_MUTANTS = {
    # the stride between 8-row groups of the operands: 256 instead of 512 bytes (rows of two groups interleave)
    "SBO 256": ("#define B1W_SBO 512", "#define B1W_SBO 256"),
    # the two 128-bit core matrices along K both read from the first one
    "LBO 0": ("#define B1W_LBO 128", "#define B1W_LBO 0"),
    # the accumulator's upper/lower 8 rows swapped in the epilogue
    "accumulator rows g and g+8 swapped": (
        "const int v0 = acc[4 * q + 2 * h], v1 = acc[4 * q + 2 * h + 1];",
        "const int v0 = acc[4 * q + 2 * (1 - h)], v1 = acc[4 * q + 2 * (1 - h) + 1];"),
    # both consumer warpgroups multiply the first 64 rows of the A slot
    "consumer warpgroups on the same A rows": (
        "b1w_desc(slot + cw * (B1W_A_BYTES / 2) + 256 * j)", "b1w_desc(slot + 256 * j)"),
    # the producer copies the A block of the wrong k-slab (one slab behind, the first slab twice)
    "A block of the wrong slab": (
        "a_src + (long long)kt * Mp * 64", "a_src + (long long)(kt > 0 ? kt - 1 : 0) * Mp * 64"),
}

REPORTED_MUTANTS = {
    # the slot of k-tile kt released right after issuing, before wgmma.wait_group completed its wgmma (WAR)
    "slot released before its wgmma completed": (
        "if (kt > 0 && lane == 0) b1w_mbar_arrive(&empty[(kt - 1) % B1W_STAGES]);",
        "if (lane == 0) b1w_mbar_arrive(&empty[kt % B1W_STAGES]);",
        "overwrites shared memory that an issued wgmma has not finished reading"),
    # consumers multiply a slot without waiting for its bulk copies (RAW)
    "no wait on the full barrier": (
        "b1w_mbar_wait(&full[s], (unsigned int)(kt / B1W_STAGES) & 1u);", "",
        "a cp.async.bulk is still writing"),
    "no final wgmma.wait_group 0": ("    b1w_wgmma_wait<0>(acc);\n", "\n", "wgmma still in flight"),
    "no commit_group": ("        b1w_wgmma_commit();\n", "\n", "an issued wgmma has not finished reading"),
    # the producer waits for the current phase of a fresh empty barrier instead of the preceding one
    "producer parity": ("b1w_mbar_wait(&empty[s], (round & 1u) ^ 1u);", "b1w_mbar_wait(&empty[s], round & 1u);",
                        "deadlock"),
    # empty barriers expecting 4 arrivals while 8 consumer warps arrive: each release completes two phases,
    # the producer's parity falls out of step and the pipeline stalls
    "empty barrier count": ("b1w_mbar_init(&empty[s], 8);", "b1w_mbar_init(&empty[s], 4);", "deadlock"),
    # the producer announces only the A block's bytes: the phase completes with tx below zero
    "expect_tx too small": ("b1w_mbar_arrive_expect_tx(&full[s], B1W_STAGE_BYTES);",
                            "b1w_mbar_arrive_expect_tx(&full[s], B1W_A_BYTES);", "more transaction bytes"),
    "barriers used before a __syncthreads": ("    __syncthreads();\n\n    if (wg == 0)", "\n    if (wg == 0)",
                                             r"initialised with no __syncthreads\(\) since"),
}


@pytest.fixture(scope="module")
def mutants(raw_host) -> dict:
    """Every mutant in ONE g++ build (each in its own namespace, kernel renamed): name -> kernel."""
    names = sorted(WRONG_RESULT_MUTANTS) + sorted(REPORTED_MUTANTS)
    parts = []
    macros = sorted(set(re.findall(r"^#define (\w+)", SOURCE.read_text(), re.M)))
    undef = "".join(f"#undef {m}\n" for m in macros)  # each mutant defines its own values
    for i, name in enumerate(names):
        spec = WRONG_RESULT_MUTANTS.get(name) or REPORTED_MUTANTS[name]
        code = _mutant(spec[0], spec[1]).replace(f"{NAME}(", f"{NAME}_m{i}(")
        code = code.replace("b1_wgmma_layout(", f"b1_wgmma_layout_m{i}(")
        parts.append(f"{undef}namespace mutant{i} {{\n{code}\n}}  // namespace mutant{i}\n"
                     f"using mutant{i}::{NAME}_m{i};\nusing mutant{i}::b1_wgmma_layout_m{i};\n")
    module = raw_host.RawModule(code="\n".join(parts))
    return {name: module.get_function(f"{NAME}_m{i}") for i, name in enumerate(names)}


@needs_gxx
@pytest.mark.parametrize("name", sorted(WRONG_RESULT_MUTANTS))
def test_a_wrong_kernel_gives_a_wrong_result(raw_host, mutants, name):
    m, n, k = 130, 260, 1140  # partial tiles in M, N and K, 3 slabs
    a, b = operands(np.random.default_rng(5), m, n, k)
    got = run(mutants[name], raw_host, a, b, k)
    assert not np.array_equal(got, reference(a, b, k)), f"mutant {name!r} was not detected"


@needs_gxx
@pytest.mark.parametrize("name", sorted(REPORTED_MUTANTS))
def test_pipeline_misuse_is_reported(raw_host, mutants, name):
    m, n, k = 64, 64, 512 * 6  # 6 slabs: the 4-slot ring wraps
    a, b = operands(np.random.default_rng(6), m, n, k)
    with pytest.raises(RuntimeError, match=REPORTED_MUTANTS[name][2]):
        run(mutants[name], raw_host, a, b, k)


def test_the_mutants_really_change_the_source():
    for name, spec in {**WRONG_RESULT_MUTANTS, **REPORTED_MUTANTS}.items():
        assert _mutant(spec[0], spec[1]) != SOURCE.read_text(), name


# ---- the emulator's wgmma, mbarrier and bulk copy against the PTX ISA --------------------------------------

PROBE = r"""
// One wgmma.m64nNk256 .b1 .and.popc: A (64 x 32 bytes) and B (N x 32 bytes) copied into dynamic shared memory
// at the offsets the host computed for the given LBO / SBO, d[i] preset to `init`, scale-d as given.
extern "C" __global__ void wgmma_probe(const unsigned char* a_img, const unsigned char* b_img, int a_bytes,
                                       int b_bytes, int lbo, int sbo, int n, int scale_d, int init, int* out)
{
    unsigned char* sm = qnnlib_emu::dynamic_shared();
    for (int i = threadIdx.x; i < a_bytes; i += 128) sm[i] = a_img[i];
    for (int i = threadIdx.x; i < b_bytes; i += 128) sm[8192 + i] = b_img[i];
    __syncthreads();
    auto desc = [&](const unsigned char* p) {
        const unsigned long long addr = (unsigned long long)__cvta_generic_to_shared(p);
        return ((addr & 0x3FFFFull) >> 4) | ((unsigned long long)(lbo >> 4) << 16) |
               ((unsigned long long)(sbo >> 4) << 32);
    };
    int d[128];
    for (int i = 0; i < 128; ++i) d[i] = init + i;
    qnnlib_emu::wgmma_fence();
    qnnlib_emu::wgmma_m64nNk256_b1_and_popc(d, n, desc(sm), desc(sm + 8192), scale_d);
    qnnlib_emu::wgmma_commit_group();
    for (int i = 0; i < 128; ++i) out[threadIdx.x * 256 + i] = d[i];  // before the wait: untouched
    qnnlib_emu::wgmma_wait_group(0);
    for (int i = 0; i < 128; ++i) out[threadIdx.x * 256 + 128 + i] = d[i];
}

// mbarrier phases: mode 0 the documented sequence (out: the observed steps); 1 fewer transaction bytes
// announced than copied; 2 a missing arrival (the phase never completes); 3 an uninitialised barrier; 4 a
// misaligned bulk copy; 5 the barrier used by another thread with no __syncthreads after its init.
extern "C" __global__ void mbar_probe(const unsigned int* src, int mode, int* out)
{
    __shared__ __align__(8) unsigned long long bar[2];
    unsigned char* sm = qnnlib_emu::dynamic_shared();
    if (mode == 3) qnnlib_emu::mbarrier_arrive(&bar[1]);
    if (threadIdx.x == 0) qnnlib_emu::mbarrier_init(&bar[0], 2);
    if (mode != 5) __syncthreads();
    if (threadIdx.x == 0) {
        qnnlib_emu::mbarrier_wait_parity(&bar[0], 1);  // a fresh barrier: the preceding phase counts as complete
        out[0] = 1;
        qnnlib_emu::mbarrier_arrive_expect_tx(&bar[0], mode == 1 ? 32 : 64);
        qnnlib_emu::bulk_copy_g2s(sm + (mode == 4 ? 8 : 0), src, 64, &bar[0]);
    } else if (mode != 2) {
        qnnlib_emu::mbarrier_arrive(&bar[0]);
    }
    qnnlib_emu::mbarrier_wait_parity(&bar[0], 0);  // phase 0: 2 arrivals and 64 transaction bytes
    out[1 + threadIdx.x] = ((const int*)sm)[threadIdx.x];
}
"""


@pytest.fixture(scope="module")
def probe():
    return HostCupy().RawModule(code=PROBE)


def _operand_image(rows: np.ndarray, lbo: int, sbo: int) -> np.ndarray:
    """rows (R, 32) bytes -> the shared-memory image of a no-swizzle K-major operand with these LBO / SBO."""
    r = rows.shape[0]
    size = (r // 8 - 1) * sbo + lbo + 128
    img = np.zeros(size, dtype=np.uint8)
    for row in range(r):
        for kc in range(2):
            at = (row // 8) * sbo + kc * lbo + 16 * (row % 8)
            img[at:at + 16] = rows[row, 16 * kc:16 * kc + 16]
    return img


@needs_gxx
@pytest.mark.parametrize("n,lbo,sbo,scale_d", [(256, 128, 512, 1), (16, 256, 512, 1), (8, 128, 256, 0),
                                               (104, 2048, 128, 1)])
def test_wgmma_emulation_follows_the_ptx_isa(probe, n, lbo, sbo, scale_d):
    """D fragment: thread t, register i -> row 16 (t / 32) + (t % 32) / 4 + 8 ((i / 2) % 2), column
    8 (i / 4) + 2 (t % 4) + i % 2; operands read through LBO (along K) and SBO (along M / N)."""
    rng = np.random.default_rng(n + lbo + sbo)
    a_rows = rng.integers(0, 256, size=(64, 32), dtype=np.uint8)
    b_rows = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    a_img, b_img = _operand_image(a_rows, lbo, sbo), _operand_image(b_rows, lbo, sbo)
    assert a_img.size <= 8192 and 8192 + b_img.size <= 65536
    out = np.zeros((128, 256), dtype=np.int32)
    fn = probe.get_function("wgmma_probe")
    fn.max_dynamic_shared_size_bytes = 65536
    fn((1,), (128,), (a_img, b_img, np.int32(a_img.size), np.int32(b_img.size), np.int32(lbo), np.int32(sbo),
                      np.int32(n), np.int32(scale_d), np.int32(1000), out), shared_mem=65536)
    bits_a = np.unpackbits(a_rows, axis=1, bitorder="little").astype(np.int64)
    bits_b = np.unpackbits(b_rows, axis=1, bitorder="little").astype(np.int64)
    d = bits_a @ bits_b.T  # popc(A AND B), 64 x n
    init = 1000 + np.arange(128)
    np.testing.assert_array_equal(out[:, :128], np.tile(init, (128, 1)))  # nothing lands before the wait
    for t in range(128):
        for i in range(128):
            got = out[t, 128 + i]
            if i >= n // 2:
                assert got == init[i]  # registers past N/2 are not accumulators of this shape
                continue
            row = 16 * (t // 32) + (t % 32) // 4 + 8 * ((i // 2) % 2)
            col = 8 * (i // 4) + 2 * (t % 4) + i % 2
            assert got == d[row, col] + (init[i] if scale_d else 0), (t, i)


@needs_gxx
def test_mbarrier_phases_parity_and_transaction_bytes(probe):
    src = np.arange(16, dtype=np.uint32) * 7 + 3
    out = np.zeros(3, dtype=np.int32)
    fn = probe.get_function("mbar_probe")
    fn((1,), (2,), (src, np.int32(0), out), shared_mem=1024)
    assert out.tolist() == [1, 3, 10]  # both threads saw phase 0 complete, with the copied bytes


@needs_gxx
@pytest.mark.parametrize("mode,message", [
    (1, "more transaction bytes than arrive.expect_tx announced"), (2, "on an mbarrier phase that never completes"),
    (3, "not an initialised mbarrier"), (4, "16-byte aligned"), (5, r"initialised with no __syncthreads\(\) since")])
def test_mbarrier_and_bulk_copy_misuse_is_reported(probe, mode, message):
    fn = probe.get_function("mbar_probe")
    with pytest.raises(RuntimeError, match=message):
        fn((1,), (2,), (np.arange(16, dtype=np.uint32), np.int32(mode), np.zeros(3, dtype=np.int32)),
           shared_mem=1024)


# ---- nvcc: sm_90a, no spills, the intended instructions -----------------------------------------------------


@pytest.fixture(scope="module")
def ptxas(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("b1w")
    procs = {
        "cubin": subprocess.Popen(
            [NVCC, "--cubin", "-arch=sm_90a", "-std=c++14", "-Werror", "all-warnings", "-Xptxas", "-v,-warn-spills",
             "-o", str(out / "b1w.cubin"), str(SOURCE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "ptx": subprocess.Popen(
            [NVCC, "-ptx", "-arch=sm_90a", "-std=c++14", "-o", str(out / "b1w.ptx"), str(SOURCE)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    results = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    results["ptx"].stdout = (out / "b1w.ptx").read_text() if results["ptx"].returncode == 0 else ""
    return results


@needs_nvcc
def test_nvcc_compiles_for_sm90a_without_spills_within_the_register_budget(ptxas):
    result = ptxas["cubin"]
    assert result.returncode == 0, result.stderr
    info = result.stdout + result.stderr
    gemm = info[info.index("Compiling entry function 'b1_wgmma_gemm'"):]
    assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in gemm, gemm
    registers = int(re.search(r"Used (\d+) registers", gemm).group(1))
    print(f"sm_90a: b1_wgmma_gemm {registers} registers")
    assert registers * 384 <= 65536  # one 384-thread block per SM fits the register file


@needs_nvcc
def test_ptx_has_the_hopper_instructions(ptxas):
    assert ptxas["ptx"].returncode == 0, ptxas["ptx"].stderr
    text = ptxas["ptx"].stdout
    for instruction in ("wgmma.mma_async.sync.aligned.m64n256k256.s32.b1.b1.and.popc", "wgmma.fence.sync.aligned",
                        "wgmma.commit_group.sync.aligned", "wgmma.wait_group.sync.aligned 1",
                        "wgmma.wait_group.sync.aligned 0",
                        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes",
                        "mbarrier.try_wait.parity.shared::cta.b64", "mbarrier.arrive.expect_tx.shared::cta.b64",
                        "mbarrier.init.shared::cta.b64", "fence.mbarrier_init.release.cluster"):
        assert instruction in text, instruction
    assert ".target sm_90a" in text
