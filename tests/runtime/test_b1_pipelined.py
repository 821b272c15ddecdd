"""The pipelined 1-bit tensor-core GEMM (kernels/b1_tensorcore_pipelined.cu) on the CPU emulator, and nvcc.

``b1_tc_gemm_pipelined`` (cp.async multi-stage pipeline, ldmatrix fragment loads, swizzled shared memory) runs
under :class:`~qnnlib.runtime.cuda_host.HostCupy` through the same ``RawModule(code=...)`` path CuPy uses and
is checked bit-exactly against NumPy and against the simple ``b1_tc_gemm`` on odd shapes, on both global-load
paths (16-byte cp.async when W % 4 == 0 and the operands are 16-byte aligned, 4-byte cp.async otherwise).
The emulator's ldmatrix and cp.async models are checked against the PTX ISA on probe kernels. Mutants of the
kernel source (a wrong ldmatrix address, a missing or too weak cp.async.wait_group, a missing barrier or
commit, a producer/consumer swizzle mismatch, no zero-fill) show that these tests fail when the kernel is
wrong. The nvcc tests compile it for sm_80 and sm_90 (no spills, <= 48 KiB static shared memory).

No speed is measured or asserted here: there is no GPU in CI.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.runtime.cuda_host import POISON_BYTE, HostCupy
from qnnlib.runtime.gemm_cuda import KERNEL_DIR
from tests.runtime.emulator import needs_gxx
from tests.runtime.test_kernels_compile import NVCC, needs_nvcc

SOURCE = KERNEL_DIR / "b1_tensorcore_pipelined.cu"
NAME = "b1_tc_gemm_pipelined"
BM, BN, THREADS = 128, 256, 256  # the kernel's launch geometry (see the top of the .cu)
POISON_I32 = np.frombuffer(bytes([POISON_BYTE] * 4), dtype=np.int32)[0]

# (M, N, K): M / N not multiples of 128 / 256, K not a multiple of 32 or 512, W = ceil(K/32) both % 4 == 0
# (16-byte cp.async path) and not (4-byte path); several k-tiles so the 4-stage ring wraps around.
SHAPES = [(1, 1, 1), (7, 13, 1000), (129, 257, 4097), (130, 300, 513), (256, 256, 2048), (5, 3, 31),
          (33, 65, 64), (128, 256, 256), (257, 129, 160), (1, 513, 96), (300, 7, 2079)]


def grid_for(m: int, n: int) -> tuple[int, int]:
    """The documented grid: M tiles on x, N tiles on y."""
    return (-(-m // BM), -(-n // BN))


def operands(rng: np.random.Generator, m: int, n: int, k: int, density: float = 0.5):
    """Random packed uint32 A (m, W), B (n, W), bits LSB-first along K, padding bits past K zero."""
    w = -(-k // 32)
    a = (rng.random((m, w * 32)) < density)
    b = (rng.random((n, w * 32)) < density)
    a[:, k:] = False
    b[:, k:] = False
    weights = (1 << np.arange(32, dtype=np.uint64)).astype(np.uint64)
    a_words = (a.reshape(m, w, 32).astype(np.uint64) * weights).sum(-1).astype(np.uint32)
    b_words = (b.reshape(n, w, 32).astype(np.uint64) * weights).sum(-1).astype(np.uint32)
    return a_words, b_words


def reference(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """The ±1 dot products of the first K bits (bit 1 -> +1, bit 0 -> -1), from the definition (Eq. 7's left
    side), independent of the kernel's K - 2 (popA + popB) + 4 popc(A AND B) identity. Exact in float64."""

    def signs(x: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(np.ascontiguousarray(x, dtype="<u4").view(np.uint8), axis=1, bitorder="little")
        return 2.0 * bits[:, :k] - 1.0

    return np.rint(signs(a) @ signs(b).T).astype(np.int32)


def run(fn, host: HostCupy, a: np.ndarray, b: np.ndarray, k: int, c: np.ndarray | None = None,
        grid: tuple[int, int] | None = None) -> np.ndarray:
    m, w = a.shape
    n = b.shape[0]
    pop_a = np.bitwise_count(a).sum(axis=1).astype(np.int32)
    pop_b = np.bitwise_count(b).sum(axis=1).astype(np.int32)
    if c is None:
        c = host.empty((m, n), dtype=np.int32)
    fn(grid or grid_for(m, n), (THREADS,),
       (a, b, pop_a, pop_b, c, np.int32(m), np.int32(n), np.int32(w), np.int32(k)))
    return c


@pytest.fixture(scope="module")
def host() -> HostCupy:
    return HostCupy()


@pytest.fixture(scope="module")
def kernel(host):
    return host.RawModule(code=SOURCE.read_text(), options=("--std=c++14",)).get_function(NAME)


# ---- bit-exact against NumPy and against b1_tc_gemm ----------------------------------------------------


@needs_gxx
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_bit_exact_against_numpy(host, kernel, m, n, k):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = operands(rng, m, n, k)
    got = run(kernel, host, a, b, k)
    np.testing.assert_array_equal(got, reference(a, b, k))


@needs_gxx
@pytest.mark.parametrize("m,n,k", [(129, 257, 4097), (130, 300, 513), (7, 13, 1000)])
def test_same_as_the_simple_tensor_core_kernel(host, kernel, m, n, k):
    code = (KERNEL_DIR / "b1_tensorcore.cu").read_text()
    simple = host.RawModule(code=code).get_function("b1_tc_gemm")
    rng = np.random.default_rng(m + n + k)
    a, b = operands(rng, m, n, k, density=0.3)
    pop_a = np.bitwise_count(a).sum(axis=1).astype(np.int32)
    pop_b = np.bitwise_count(b).sum(axis=1).astype(np.int32)
    c_simple = host.empty((m, n), dtype=np.int32)
    tiles_m, tiles_n = -(-m // 128), -(-n // 128)
    # b1_tc_gemm's grid: 1-D (tiles on gridDim.x, block b -> tile (b / tiles_n, b % tiles_n)) in the current
    # source, 2-D (ceil(N/128), ceil(M/128)) before; launch it the way its source says.
    grid = (tiles_m * tiles_n,) if "blockIdx.x / tiles_n" in code else (tiles_n, tiles_m)
    simple(grid, (256,),
           (a, b, pop_a, pop_b, c_simple, np.int32(m), np.int32(n), np.int32(a.shape[1]), np.int32(k)))
    assert not (c_simple == POISON_I32).any()
    np.testing.assert_array_equal(run(kernel, host, a, b, k), c_simple)


@needs_gxx
@pytest.mark.parametrize("density", [0.0, 1.0])
def test_extremes_all_minus_ones_and_all_ones(host, kernel, density):
    m, n, k = 131, 259, 777
    a, b = operands(np.random.default_rng(0), m, n, k, density=density)
    got = run(kernel, host, a, b, k)
    assert (got == k).all()  # (-1)·(-1) and (+1)·(+1) sum to K


@needs_gxx
def test_misaligned_operands_take_the_4_byte_path(host, kernel):
    """W % 4 == 0 but A and B start 4 bytes past a 16-byte boundary: the kernel must not use 16-byte cp.async
    (the emulator reports a misaligned cp.async) and still be exact."""
    m, n, k = 70, 90, 256 * 3  # W = 24
    a, b = operands(np.random.default_rng(1), m, n, k)
    a_buf = np.zeros(a.size + 4, dtype=np.uint32)
    b_buf = np.zeros(b.size + 4, dtype=np.uint32)
    a_off = next(i for i in range(4) if (a_buf[i:].ctypes.data % 16) == 4)
    b_off = next(i for i in range(4) if (b_buf[i:].ctypes.data % 16) == 4)
    a_mis = a_buf[a_off:a_off + a.size].reshape(a.shape)
    b_mis = b_buf[b_off:b_off + b.size].reshape(b.shape)
    a_mis[...] = a
    b_mis[...] = b
    assert a_mis.ctypes.data % 16 == 4 and b_mis.ctypes.data % 16 == 4
    np.testing.assert_array_equal(run(kernel, host, a_mis, b_mis, k), reference(a, b, k))


@needs_gxx
def test_rows_padded_with_zero_words_give_the_same_result(host, kernel):
    """The host may pad W to a multiple of 4 words (zeros) to get the 16-byte path: exact, K unchanged."""
    m, n, k = 40, 50, 161  # W = 6 -> padded to 8
    a, b = operands(np.random.default_rng(2), m, n, k)
    a4, b4 = (np.pad(x, ((0, 0), (0, (-x.shape[1]) % 4))) for x in (a, b))
    assert a4.shape[1] == 8
    np.testing.assert_array_equal(run(kernel, host, a4, b4, k), reference(a, b, k))


@needs_gxx
def test_epilogue_scalar_path_with_an_odd_aligned_output(host, kernel):
    """C 4 bytes past an 8-byte boundary (int2 stores would be misaligned): scalar stores, still exact."""
    m, n, k = 20, 30, 100
    a, b = operands(np.random.default_rng(3), m, n, k)
    buf = np.full(m * n + 2, POISON_I32, dtype=np.int32)
    off = 1 if buf.ctypes.data % 8 == 0 else 0
    c = buf[off:off + m * n].reshape(m, n)
    assert c.ctypes.data % 8 == 4
    run(kernel, host, a, b, k, c=c)
    np.testing.assert_array_equal(c, reference(a, b, k))
    assert buf[:off].tolist() == [POISON_I32] * off and buf[off + m * n:].tolist() == [POISON_I32] * (2 - off)


@needs_gxx
def test_m_tiles_are_on_grid_x(host, kernel):
    """A grid with the axes swapped (N tiles on x) leaves outputs unwritten: the documented grid matters."""
    m, n, k = 300, 10, 64
    a, b = operands(np.random.default_rng(4), m, n, k)
    got = run(kernel, host, a, b, k, grid=(1, 3))
    assert (got[128:] == POISON_I32).all()
    np.testing.assert_array_equal(got[:128], reference(a, b, k)[:128])


@needs_gxx
@settings(max_examples=8, deadline=None)
@given(m=st.integers(1, 140), n=st.integers(1, 270), k=st.integers(1, 700), seed=st.integers(0, 2**16),
       density=st.sampled_from([0.1, 0.5, 0.9]))
def test_property_random_small_shapes(m, n, k, seed, density):
    host = HostCupy()
    fn = host.RawModule(code=SOURCE.read_text()).get_function(NAME)  # cached on disk by content
    a, b = operands(np.random.default_rng(seed), m, n, k, density)
    np.testing.assert_array_equal(run(fn, host, a, b, k), reference(a, b, k))


# ---- the tests can fail: mutants of the kernel through the same RawModule path -------------------------


def _mutant(old: str, new: str, count: int = 1) -> str:
    code = SOURCE.read_text()
    assert code.count(old) == count, f"mutation target {old!r} found {code.count(old)} times"
    return code.replace(old, new)


WRONG_RESULT_MUTANTS = {
    # ldmatrix addresses of the A fragments: matrices 1 and 2 swapped (a1 <-> a2: rows g+8 / words t+4).
    "A ldmatrix rows/chunks swapped": (
        "b1p_swz(wm * 64 + i * 16 + (lm & 1) * 8 + lr, lm >> 1)",
        "b1p_swz(wm * 64 + i * 16 + (lm >> 1) * 8 + lr, lm & 1)"),
    # ldmatrix addresses of the B fragments: the two n8 tiles' chunks interleaved wrongly.
    "B ldmatrix rows/chunks swapped": (
        "b1p_swz(wn * 64 + p * 16 + (lm >> 1) * 8 + lr, lm & 1)",
        "b1p_swz(wn * 64 + p * 16 + (lm & 1) * 8 + lr, lm >> 1)"),
    # A lane supplies the row one too far.
    "A ldmatrix row off by one": (
        "b1p_swz(wm * 64 + i * 16 + (lm & 1) * 8 + lr, lm >> 1)",
        "b1p_swz(wm * 64 + i * 16 + (lm & 1) * 8 + ((lr + 1) & 7), lm >> 1)"),
    # The producer writes A unswizzled while the consumer reads swizzled.
    "producer/consumer swizzle mismatch": (
        "const int a_dst = b1p_swz(lrow, lchunk)", "const int a_dst = lrow * 8 + lchunk * 4"),
    # No zero-fill: out-of-range chunks of A and B copy 16 bytes from the operand base instead of 0 bytes.
    "no zero-fill for out-of-range rows/words": ("kin) ? 16 : 0);", "kin) ? 16 : 16);", 3),
    # b0/b1 of the second n8 tile of a pair taken from the first tile's registers.
    "B fragment registers mixed up": (
        "b1p_mma(acc[i][2 * p + 1], a[i], b[2], b[3]);", "b1p_mma(acc[i][2 * p + 1], a[i], b[0], b[3]);"),
}


@needs_gxx
@pytest.mark.parametrize("name", sorted(WRONG_RESULT_MUTANTS))
def test_a_wrong_kernel_gives_a_wrong_result(host, mutants, name):
    fn = mutants[name]
    m, n, k = 130, 260, 1140  # W = 36: the 16-byte path, partial tiles in M, N and K (last k-tile half empty)
    a, b = operands(np.random.default_rng(5), m, n, k)
    got = run(fn, host, a, b, k)
    assert not np.array_equal(got, reference(a, b, k)), f"mutant {name!r} was not detected"


REPORTED_MUTANTS = {
    "missing cp.async.wait_group": (
        "b1p_cp_async_wait<B1P_STAGES - 2>();  // k-tile kt", "// (wait removed)", "in flight"),
    "too weak cp.async.wait_group (STAGES-1)": (
        "b1p_cp_async_wait<B1P_STAGES - 2>();  // k-tile kt", "b1p_cp_async_wait<B1P_STAGES - 1>();  // k-tile kt",
        "in flight"),
    "missing commit in the main loop": (
        "        b1p_cp_async_commit();\n\n        const int st", "\n        const int st", "in flight"),
    "missing __syncthreads after the wait": (
        "__syncthreads();                      // all parts landed", "// (barrier removed)", r"no __syncthreads\(\)"),
    # Write-after-read: the refill of stage (kt-1) % STAGES issued before the barrier, while other warps may
    # still read it. Round-robin scheduling keeps the warps in step and hides this; depth-first exposes it.
    "stage refilled before the barrier (WAR)": (
        ("        __syncthreads();                      // all parts landed; stage (kt-1) % STAGES is no longer read\n"
         "        const int pf = kt + B1P_STAGES - 1;"),
        ("        const int pf = kt + B1P_STAGES - 1;\n"
         "        if (pf < ktiles) { const int ps = pf % B1P_STAGES; b1p_load_tile(As[ps], Bs[ps], A, B, a_row, "
         "b_row0, b_row1, a_dst, b_dst0, b_dst1, lchunk, pf, W, vec); }\n"
         "        __syncthreads();\n        if (false)"),
        "in flight", "depth-first"),
}


@needs_gxx
@pytest.mark.parametrize("schedule", ["round-robin", "depth-first"])
def test_bit_exact_under_the_depth_first_schedule(host, kernel, monkeypatch, schedule):
    """The race-free kernel gives the same result whichever warp the emulator runs ahead."""
    monkeypatch.setenv("QNNLIB_CUDA_HOST_SCHEDULE", schedule)
    m, n, k = 140, 270, 2100
    a, b = operands(np.random.default_rng(7), m, n, k)
    np.testing.assert_array_equal(run(kernel, host, a, b, k), reference(a, b, k))


@needs_gxx
@pytest.mark.parametrize("name", sorted(REPORTED_MUTANTS))
def test_pipeline_races_are_reported(host, mutants, monkeypatch, name):
    fn, message = mutants[name], REPORTED_MUTANTS[name][2]
    if len(REPORTED_MUTANTS[name]) > 3:
        monkeypatch.setenv("QNNLIB_CUDA_HOST_SCHEDULE", REPORTED_MUTANTS[name][3])
    m, n, k = 64, 64, 2048  # 8 k-tiles: the ring wraps
    a, b = operands(np.random.default_rng(6), m, n, k)
    with pytest.raises(RuntimeError, match=message):
        run(fn, host, a, b, k)


@pytest.fixture(scope="module")
def mutants(host) -> dict:
    """Every mutant in ONE g++ build (each in its own namespace, kernel renamed): name -> kernel."""
    names = sorted(WRONG_RESULT_MUTANTS) + sorted(REPORTED_MUTANTS)
    parts = []
    for i, name in enumerate(names):
        spec = WRONG_RESULT_MUTANTS.get(name) or REPORTED_MUTANTS[name]
        count = spec[2] if name in WRONG_RESULT_MUTANTS and len(spec) > 2 else 1
        code = _mutant(spec[0], spec[1], count)
        assert code.count(f"{NAME}(") == 1
        code = code.replace(f"{NAME}(", f"{NAME}_m{i}(")
        parts.append(f"namespace mutant{i} {{\n{code}\n}}  // namespace mutant{i}\nusing mutant{i}::{NAME}_m{i};\n")
    module = host.RawModule(code="\n".join(parts))
    return {name: module.get_function(f"{NAME}_m{i}") for i, name in enumerate(names)}


# ---- the emulator's ldmatrix and cp.async against the PTX ISA ------------------------------------------

PROBE = r"""
extern "C" __global__ void ldm_probe(const unsigned int* src, unsigned int* out, int num)
{
    __shared__ __align__(16) unsigned int sm[64 * 4];  // 64 rows of 16 bytes
    for (int i = threadIdx.x; i < 64 * 4; i += 32) sm[i] = src[i];
    __syncthreads();
    const int lane = threadIdx.x;
    unsigned int d[4] = {0u, 0u, 0u, 0u};
    qnnlib_emu::ldmatrix_m8n8_b16(num, d, sm + 4 * ((lane * 5 + 3) % 64));  // lane -> an arbitrary row
    for (int j = 0; j < 4; ++j) out[lane * 4 + j] = d[j];
}

extern "C" __global__ void ldm_misaligned(unsigned int* out)
{
    __shared__ __align__(16) unsigned int sm[40 * 4];
    for (int i = threadIdx.x; i < 40 * 4; i += 32) sm[i] = i;
    __syncthreads();
    unsigned int d[4];
    qnnlib_emu::ldmatrix_m8n8_b16(4, d, sm + 4 * threadIdx.x + (threadIdx.x == 9 ? 2 : 0));
    out[threadIdx.x] = d[0];
}

// cp.async of 16 bytes with src-size 4 (t % 5) bytes; what shared memory holds before and after the wait.
extern "C" __global__ void cpa_probe(const unsigned int* src, unsigned int* out)
{
    __shared__ __align__(16) unsigned int sm[2 * 16 * 4];
    const int t = threadIdx.x;
    for (int q = 0; q < 4; ++q) sm[4 * t + q] = sm[64 + 4 * t + q] = 0xdeadbeefu;
    __syncthreads();
    qnnlib_emu::cp_async(sm + 4 * t, src + 4 * t, 16, 4 * (t % 5));
    qnnlib_emu::cp_async_commit_group();
    qnnlib_emu::cp_async(sm + 64 + 4 * t, src, 16, 16);  // issued, never committed: wait_group must not complete it
    for (int q = 0; q < 4; ++q) out[4 * t + q] = sm[4 * t + q];
    qnnlib_emu::cp_async_wait_group(0);
    for (int q = 0; q < 4; ++q) out[64 + 4 * t + q] = sm[4 * t + q];
    for (int q = 0; q < 4; ++q) out[128 + 4 * t + q] = sm[64 + 4 * t + q];
}

// mode 0: cp.async, wait, __syncthreads, ldmatrix (correct); 1: no wait; 2: wait but no barrier;
// 3: a second cp.async to the same bytes while the first is in flight; 4: 16-byte cp.async, 8-byte aligned src.
extern "C" __global__ void cpa_race(const unsigned int* src, unsigned int* out, int mode)
{
    __shared__ __align__(16) unsigned int sm[32 * 4];
    const int t = threadIdx.x;
    qnnlib_emu::cp_async(sm + 4 * t, src + 4 * t + (mode == 4 ? 2 : 0), 16, 16);
    if (mode == 3) qnnlib_emu::cp_async(sm + 4 * t, src, 16, 16);
    qnnlib_emu::cp_async_commit_group();
    if (mode != 1) qnnlib_emu::cp_async_wait_group(0);
    if (mode != 2) __syncthreads();
    unsigned int d[4];
    qnnlib_emu::ldmatrix_m8n8_b16(4, d, sm + 4 * ((t + 1) % 32));  // rows another thread copied
    for (int j = 0; j < 4; ++j) out[4 * t + j] = d[j];
}
"""


@pytest.fixture(scope="module")
def probe():
    return HostCupy().RawModule(code=PROBE)


@needs_gxx
@pytest.mark.parametrize("num", [1, 2, 4])
def test_ldmatrix_emulation_follows_the_ptx_isa(probe, num):
    """Lane 8j + r supplies row r of matrix j; lane i gets word i % 4 of row i / 4 of matrix j in d_j."""
    src = (np.arange(64 * 4, dtype=np.uint64) * 2654435761 % 2**32).astype(np.uint32)
    out = np.zeros(32 * 4, dtype=np.uint32)
    probe.get_function("ldm_probe")((1,), (32,), (src, out, np.int32(num)))
    want = np.zeros((32, 4), dtype=np.uint32)
    for lane in range(32):
        for j in range(num):
            row = ((8 * j + lane // 4) * 5 + 3) % 64
            want[lane, j] = src[4 * row + lane % 4]
    np.testing.assert_array_equal(out.reshape(32, 4), want)


@needs_gxx
def test_ldmatrix_misaligned_row_address_is_reported(probe):
    with pytest.raises(RuntimeError, match="lane 9 .* not 16-byte aligned"):
        probe.get_function("ldm_misaligned")((1,), (32,), (np.zeros(32, dtype=np.uint32),))


@needs_gxx
def test_cp_async_is_deferred_to_the_wait_and_zero_fills(probe):
    src = (np.arange(64, dtype=np.uint32) + 1000).astype(np.uint32)
    out = np.zeros(192, dtype=np.uint32)
    probe.get_function("cpa_probe")((1,), (16,), (src, out))
    before, after = out[:64].reshape(16, 4), out[64:128].reshape(16, 4)
    assert (before == 0xDEADBEEF).all()  # nothing lands before the wait
    assert (out[128:] == 0xDEADBEEF).all()  # the uncommitted copy is not completed by wait_group
    for t in range(16):
        valid = t % 5
        np.testing.assert_array_equal(after[t, :valid], src[4 * t:4 * t + valid])
        assert (after[t, valid:] == 0).all()  # zero-fill past src-size


@needs_gxx
@pytest.mark.parametrize("mode,message", [
    (1, "still in flight"), (2, r"no __syncthreads\(\) since"), (3, "still has in flight"),
    (4, "aligned to cp-size 16")])
def test_cp_async_races_and_misuse_are_reported(probe, mode, message):
    src = np.arange(32 * 4 + 8, dtype=np.uint32)
    out = np.zeros(32 * 4, dtype=np.uint32)
    fn = probe.get_function("cpa_race")
    fn((1,), (32,), (src, out, np.int32(0)))  # the correct order passes
    rows = src[:128].reshape(32, 4)
    # lane t: d_j = word t % 4 of the row whose address lane 8 j + t / 4 supplied, row (8 j + t / 4 + 1) % 32
    want = np.array([[rows[(8 * j + t // 4 + 1) % 32, t % 4] for j in range(4)] for t in range(32)])
    np.testing.assert_array_equal(out.reshape(32, 4), want)
    with pytest.raises(RuntimeError, match=message):
        fn((1,), (32,), (src, out, np.int32(mode)))


# ---- nvcc: compiles for sm_80 and sm_90, no spills, the intended instructions --------------------------


@pytest.fixture(scope="module")
def ptxas(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("b1p")
    procs = {
        arch: subprocess.Popen(
            [NVCC, "--cubin", f"-arch=sm_{arch}", "-std=c++14", "-Werror", "all-warnings",
             "-Xptxas", "-v,-warn-spills", "-o", str(out / f"b1p_{arch}.cubin"), str(SOURCE)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for arch in ("80", "90")
    }
    procs["ptx"] = subprocess.Popen(
        [NVCC, "-ptx", "-arch=sm_80", "-std=c++14", "-o", str(out / "b1p.ptx"), str(SOURCE)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    results["ptx"].stdout = (out / "b1p.ptx").read_text() if results["ptx"].returncode == 0 else ""
    return results


@needs_nvcc
@pytest.mark.parametrize("arch", ["80", "90"])
def test_nvcc_compiles_without_spills_within_48k_static_smem(ptxas, arch):
    result = ptxas[arch]
    assert result.returncode == 0, result.stderr
    info = result.stdout + result.stderr
    assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in info, info
    used = re.search(r"Used (\d+) registers.*?(\d+) bytes smem", info)
    assert used, info
    registers, smem = int(used.group(1)), int(used.group(2))
    print(f"sm_{arch}: {registers} registers, {smem} bytes smem")
    assert registers <= 255 and smem <= 48 * 1024


@needs_nvcc
def test_ptx_has_the_pipeline_instructions(ptxas):
    assert ptxas["ptx"].returncode == 0, ptxas["ptx"].stderr
    text = ptxas["ptx"].stdout
    for instruction in ("cp.async.cg.shared.global", "cp.async.ca.shared.global", "cp.async.commit_group",
                        "cp.async.wait_group 2", "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
                        "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc"):
        assert instruction in text, instruction
    assert "xor.popc" not in text
