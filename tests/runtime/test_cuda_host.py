"""The CUDA kernels of kernels/*.cu, run on the CPU under the host emulator (qnnlib.runtime.cuda_host).

The same kernel sources and the same CuPy host code (qnnlib.runtime.gemm_cuda: launch geometry, padding,
as_u32_words) run with ``cupy`` replaced by :class:`~qnnlib.runtime.cuda_host.HostCupy`; every result is
checked bit-exactly against NumPy on odd shapes. The negative tests show that the emulator can fail: a
fragment layout that disagrees with the PTX ISA, a grid too small, a deadlock, a write out of bounds.

Needs g++ (C++20); skipped with a message saying to install it when absent.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.runtime import binary_gemm, cuda_host, gemm_cuda
from qnnlib.runtime.binary_gemm import binary_matmul
from qnnlib.runtime.bitpack import pack
from qnnlib.runtime.cuda_host import POISON_BYTE, HostCupy
from qnnlib.runtime.gemm_cuda import KERNEL_DIR, gemm_float_cuda, matmul_cuda, pack_cuda
from tests.runtime.emulator import HAVE_GXX, needs_gxx

pytestmark = needs_gxx

POISON_I32 = np.frombuffer(bytes([POISON_BYTE] * 4), dtype=np.int32)[0]

# (M, N, K): K not a multiple of 32 or 64, M and N not multiples of the tiles (128 / 64 / 16).
GEMM_SHAPES = [(7, 13, 1000), (1, 1, 1), (33, 65, 64), (130, 257, 4097), (129, 131, 513), (5, 3, 31),
               (64, 64, 32), (17, 129, 65)]


def _install(monkeypatch: pytest.MonkeyPatch, cc: int) -> HostCupy:
    host = HostCupy()
    for module in (gemm_cuda, binary_gemm):
        monkeypatch.setattr(module, "cupy", lambda: host)
        monkeypatch.setattr(module, "compute_capability", lambda: cc)
    return host


@pytest.fixture
def host(monkeypatch):
    """CuPy replaced by the host emulator, compute capability 9.0; gemm_cuda's module caches cleared around."""
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()
    yield _install(monkeypatch, 90)
    gemm_cuda._cuda_module.cache_clear()  # no emulated module may leak into real CuPy use
    gemm_cuda._cuda_function.cache_clear()


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


# ---- every kernel, bit-exact on odd shapes -------------------------------------------------------------


def test_every_kernel_compiles_and_loads_under_the_emulator(host):
    times = gemm_cuda.compile_cuda_kernels()
    assert set(times) == {n for names in gemm_cuda.KERNELS.values() for n in names}
    assert gemm_cuda._cuda_function("b1_tc_gemm").attributes["emulated"] is True


@pytest.mark.parametrize("shape", [(1, 1), (7, 1000), (3, 31), (5, 33), (2, 64), (129, 513), (4, 4097), (300, 7)])
def test_pack_cuda_matches_bitpack_pack(host, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = 0.0  # sign(0) = +1
    got = pack_cuda(x)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, pack(x, word_bits=32))


def test_pack_cuda_on_negative_zero_and_nan(host):
    """-0.0 packs as +1 (bit 1) and NaN raises ValueError, both like bitpack.pack (more in test_gemm_cuda.py)."""
    x = np.array([[-0.0, 0.0, np.inf, -np.inf, -1e-45, 1e-45]], dtype=np.float32)
    assert int(pack_cuda(x)[0, 0]) == 0b100111
    x[0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pack(x, word_bits=32)
    with pytest.raises(ValueError, match="NaN"):
        pack_cuda(x)


@pytest.mark.parametrize("rows,words", [(1, 1), (3, 31), (5, 33), (70, 100), (1, 1000)])
def test_row_popcount_kernel(host, rows, words):
    rng = np.random.default_rng(rows * 1000 + words)
    p = rng.integers(0, 2**32, size=(rows, words), dtype=np.uint32)
    fn = host.RawModule(code=(KERNEL_DIR / "pack.cu").read_text()).get_function("row_popcount_u32")
    out = host.empty(rows, dtype=np.int32)
    fn(((rows * 32 + 255) // 256,), (256,), (p, out, np.int32(rows), np.int32(words)))
    np.testing.assert_array_equal(out, np.bitwise_count(p).sum(axis=1))


def _float_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemm_f32_tiled's arithmetic: acc += a[m, e] * b[e, n] for e = 0..K-1, each op rounded to float32."""
    acc = np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)
    for e in range(a.shape[1]):
        acc = acc + a[:, e, None] * b[None, e, :]
    return acc


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 13, 100), (33, 65, 64), (17, 31, 47), (130, 41, 257)])
def test_gemm_float_cuda_bit_exact_in_kernel_order(host, m, n, k):
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    got = gemm_float_cuda(a, b)
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_array_equal(got, _float_reference(a, b))
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("word_bits", [32, 64])
@pytest.mark.parametrize("backend", ["cuda-xnor", "cuda-tc"])
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
def test_binary_matmul_cuda_backends_bit_exact(host, m, n, k, backend, word_bits):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = _signs(rng, (m, k)), _signs(rng, (n, k))
    pa, pb = pack(a, word_bits=word_bits), pack(b, word_bits=word_bits)
    got = binary_matmul(pa, pb, k, backend=backend)
    np.testing.assert_array_equal(got, binary_matmul(pa, pb, k, backend="numpy"))
    np.testing.assert_array_equal(got, (a.astype(np.int64) @ b.T.astype(np.int64)).astype(np.int32))


def test_all_ones_and_all_minus_ones_extremes(host):
    """Saturated popcounts: every bit set / none set, K = 4097 (one bit in the last word)."""
    k = 4097
    for va, vb in [(1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)]:
        pa = pack(np.full((9, k), va, np.float32), word_bits=32)
        pb = pack(np.full((5, k), vb, np.float32), word_bits=32)
        for variant in gemm_cuda.CUDA_VARIANTS:
            np.testing.assert_array_equal(matmul_cuda(pa, pb, k, variant), np.full((9, 5), int(va * vb) * k))


def test_auto_cuda_backend_follows_measured_speed_and_capability(monkeypatch):
    """backend="cuda": the faster kernel (a fake timer here: tc), xnor below 8.0 (more in test_gemm_cuda.py)."""
    gemm_cuda._cuda_module.cache_clear()
    gemm_cuda._cuda_function.cache_clear()
    monkeypatch.delenv(binary_gemm.CUDA_GEMM_ENV, raising=False)
    seconds = {"cuda-tc": 1.0, "cuda-xnor": 2.0, "cuda-tc-pipelined": 1.5, "cuda-wgmma": 1.2}
    monkeypatch.setattr(binary_gemm, "_time_cuda_variant", lambda variant, run: seconds[variant])
    monkeypatch.setattr(binary_gemm, "SELECTION_SHAPE", (130, 260, 600))  # each candidate is checked: keep it small
    try:
        rng = np.random.default_rng(3)
        pa, pb = pack(_signs(rng, (9, 300)), word_bits=32), pack(_signs(rng, (11, 300)), word_bits=32)
        ref = binary_matmul(pa, pb, 300, backend="numpy")
        for cc, kernel in [(90, "b1_tc_gemm"), (75, "xnor_gemm_u32")]:
            gemm_cuda._cuda_module.cache_clear()  # a kernel records its launches on the HostCupy that compiled it
            gemm_cuda._cuda_function.cache_clear()
            host = _install(monkeypatch, cc)
            monkeypatch.setattr(binary_gemm, "_CUDA_CHOICE", {})
            np.testing.assert_array_equal(binary_matmul(pa, pb, 300, backend="cuda"), ref)
            assert host.launches[-1][0] == kernel
        with pytest.raises(RuntimeError, match="compute capability"):
            matmul_cuda(pa, pb, 300, "cuda-tc")
    finally:
        gemm_cuda._cuda_module.cache_clear()
        gemm_cuda._cuda_function.cache_clear()


def test_launch_geometry_is_the_host_codes(host):
    pa = pack(_signs(np.random.default_rng(0), (130, 100)), word_bits=64)
    pb = pack(_signs(np.random.default_rng(1), (257, 100)), word_bits=64)
    matmul_cuda(pa, pb, 100, "cuda-tc")
    matmul_cuda(pa, pb, 100, "cuda-xnor")
    assert host.launches == [
        ("row_popcount_u32", (17, 1, 1), (256, 1, 1)),  # 130 rows, one warp each
        ("row_popcount_u32", (33, 1, 1), (256, 1, 1)),
        ("b1_tc_gemm", (3 * 2, 1, 1), (256, 1, 1)),  # 2 x 3 tiles of 128, flat on gridDim.x
        ("xnor_gemm_u32", (5 * 3, 1, 1), (16, 16, 1)),
    ]


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 700), word_bits=st.sampled_from([32, 64]),
       variant=st.sampled_from(["cuda-xnor", "cuda-tc"]), seed=st.integers(0, 2**32 - 1))
def test_property_random_shapes_match_numpy(m, n, k, word_bits, variant, seed):
    with pytest.MonkeyPatch.context() as mp:
        gemm_cuda._cuda_module.cache_clear()
        gemm_cuda._cuda_function.cache_clear()
        try:
            _install(mp, 90)
            rng = np.random.default_rng(seed)
            pa, pb = pack(_signs(rng, (m, k)), word_bits=word_bits), pack(_signs(rng, (n, k)), word_bits=word_bits)
            np.testing.assert_array_equal(binary_matmul(pa, pb, k, backend=variant),
                                          binary_matmul(pa, pb, k, backend="numpy"))
        finally:
            gemm_cuda._cuda_module.cache_clear()
            gemm_cuda._cuda_function.cache_clear()


# ---- the mma emulation against the PTX ISA's fragment formulas ------------------------------------------

PROBE = r"""
extern "C" __global__ void mma_probe(const unsigned int* fa, const unsigned int* fb, const int* fc, int* fd)
{
    const int lane = threadIdx.x & 31;
    unsigned int a[4], b[2];
    int d[4], c[4];
    for (int r = 0; r < 4; ++r) a[r] = fa[lane * 4 + r], c[r] = fc[lane * 4 + r];
    for (int r = 0; r < 2; ++r) b[r] = fb[lane * 2 + r];
    const int (&cc)[4] = c;
    const unsigned int (&aa)[4] = a;
    const unsigned int (&bb)[2] = b;
    qnnlib_emu::mma_m16n8k256_and_popc(d, aa, bb, cc);
    for (int r = 0; r < 4; ++r) fd[lane * 4 + r] = d[r];
}

extern "C" __global__ void divergent_barrier(int* out)
{
    if (threadIdx.x < 32) __syncthreads();   // half the block never arrives
    out[threadIdx.x] = 1;
}

extern "C" __global__ void writes_past_the_end(int* out, int n)
{
    out[threadIdx.x] = 7;                    // launched with more threads than n
}

extern "C" __global__ void traps(int* out)
{
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = 1;
}

extern "C" __global__ void __launch_bounds__(64) bounded(int* out)
{
    out[threadIdx.x] = threadIdx.x;
}

extern "C" __global__ void warp_ops(const int* in, int* out)
{
    const int v = in[threadIdx.x];
    out[4 * threadIdx.x + 0] = (int)__ballot_sync(0xffffffffu, v & 1);
    out[4 * threadIdx.x + 1] = __shfl_down_sync(0xffffffffu, v, 5);
    out[4 * threadIdx.x + 2] = __shfl_xor_sync(0xffffffffu, v, 9);
    out[4 * threadIdx.x + 3] = __shfl_sync(0xffffffffu, v, 7, 8);
}
"""


@pytest.fixture(scope="module")
def probe():
    if not HAVE_GXX:
        pytest.skip("g++ not found: install g++ (apt install g++)")
    return HostCupy().RawModule(code=PROBE)


def _isa_fragments(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-lane registers from element-level matrices, written from the PTX ISA formulas (m16n8k256, .b1).

    A (16, 256) and B (256, 8) of bits, C (16, 8): A element a_i of a lane (register i // 32, bit i % 32):
    row g for i < 32 or 64 <= i < 96 else g + 8, column 32 t + (i & 31) (+ 128 for i >= 64); B element b_i:
    row 32 t + (i & 31) (+ 128 for i >= 32), column g; c_i: row g (+ 8 for i >= 2), column 2 t + (i & 1).
    """
    fa, fb, fc = np.zeros((32, 4), np.uint32), np.zeros((32, 2), np.uint32), np.zeros((32, 4), np.int32)
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        for i in range(128):
            row = g if (i < 32 or 64 <= i < 96) else g + 8
            col = 32 * t + (i & 31) + (128 if i >= 64 else 0)
            fa[lane, i // 32] |= np.uint32(int(A[row, col]) << (i % 32))
        for i in range(64):
            fb[lane, i // 32] |= np.uint32(int(B[32 * t + (i & 31) + (128 if i >= 32 else 0), g]) << (i % 32))
        for i in range(4):
            fc[lane, i] = C[g + (8 if i >= 2 else 0), 2 * t + (i & 1)]
    return fa, fb, fc


def test_mma_emulation_follows_the_ptx_isa_fragment_layout(probe):
    rng = np.random.default_rng(11)
    A = rng.integers(0, 2, (16, 256))
    B = rng.integers(0, 2, (256, 8))
    C = rng.integers(-1000, 1000, (16, 8)).astype(np.int32)
    fa, fb, fc = _isa_fragments(A, B, C)
    fd = np.zeros((32, 4), np.int32)
    probe.get_function("mma_probe")((1,), (32,), (fa, fb, fc, fd))
    D = C + (A.astype(np.int64) @ B.astype(np.int64))
    np.testing.assert_array_equal(fd, _isa_fragments(A, B, D)[2])


def test_warp_collectives(probe):
    rng = np.random.default_rng(5)
    v = rng.integers(-1000, 1000, 64).astype(np.int32)
    out = np.zeros((64, 4), np.int32)
    probe.get_function("warp_ops")((1,), (64,), (v, out))
    for w in range(2):
        lanes = v[32 * w: 32 * w + 32]
        ballot = sum(int(x & 1) << i for i, x in enumerate(lanes))
        got = out[32 * w: 32 * w + 32]
        assert (got[:, 0].view(np.uint32) == ballot).all()
        np.testing.assert_array_equal(got[:, 1], [lanes[i + 5] if i + 5 < 32 else lanes[i] for i in range(32)])
        np.testing.assert_array_equal(got[:, 2], [lanes[i ^ 9] for i in range(32)])
        np.testing.assert_array_equal(got[:, 3], [lanes[(i & ~7) + 7] for i in range(32)])


# ---- the emulator can fail ------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [("a[i][1]", "a[i][2]"), ("b[j][0]", "b[j][1]")])
def test_a_fragment_layout_against_the_isa_gives_a_wrong_product(host, swap):
    """The tensor-core kernel with two fragment registers swapped, through the same RawModule path: wrong."""
    source = (KERNEL_DIR / "b1_tensorcore.cu").read_text()
    first, second = swap
    assert source.count(f"{first} =") == 1 and source.count(f"{second} =") == 1
    mutant = source.replace(f"{first} =", "@@").replace(f"{second} =", f"{first} =").replace("@@", f"{second} =")
    rng = np.random.default_rng(2)
    k = 700
    pa, pb = pack(_signs(rng, (20, k)), word_bits=32), pack(_signs(rng, (9, k)), word_bits=32)
    ref = binary_matmul(pa, pb, k, backend="numpy")
    np.testing.assert_array_equal(matmul_cuda(pa, pb, k, "cuda-tc"), ref)  # the real kernel: right
    monkey = pytest.MonkeyPatch()
    try:
        module = host.RawModule(code=mutant, options=("--std=c++14",))
        monkey.setattr(gemm_cuda, "_cuda_function",
                       lambda name: module.get_function(name) if name == "b1_tc_gemm" else gemm_cuda._cuda_module(
                           "pack.cu").get_function(name))
        wrong = matmul_cuda(pa, pb, k, "cuda-tc")
    finally:
        monkey.undo()
    assert (wrong != ref).mean() > 0.5


def test_a_grid_too_small_leaves_outputs_unset(host):
    m, n, k = 100, 90, 200
    rng = np.random.default_rng(4)
    pa, pb = pack(_signs(rng, (m, k)), word_bits=32), pack(_signs(rng, (n, k)), word_bits=32)
    ref = binary_matmul(pa, pb, k, backend="numpy")
    out = host.empty((m, n), dtype=np.int32)
    fn = gemm_cuda._cuda_function("xnor_gemm_u32")
    fn((1, 1), (16, 16), (pa, pb, out, np.int32(m), np.int32(n), np.int32(pa.shape[1]), np.int32(k)))
    np.testing.assert_array_equal(out[:64, :64], ref[:64, :64])
    assert (out[64:, :] == POISON_I32).all() and (out[:, 64:] == POISON_I32).all()


def test_kernel_and_launch_errors_are_reported(probe):
    out = HostCupy().empty(64, dtype=np.int32)
    with pytest.raises(RuntimeError, match="deadlock in divergent_barrier"):
        probe.get_function("divergent_barrier")((1,), (64,), (out,))
    with pytest.raises(RuntimeError, match=r"__trap\(\) called \(traps, block \(0, 0, 0\), thread \(3, 0, 0\)\)"):
        probe.get_function("traps")((1,), (64,), (out,))
    with pytest.raises(RuntimeError, match="too many resources requested for launch"):
        probe.get_function("bounded")((1,), (128,), (out,))
    with pytest.raises(RuntimeError, match="invalid configuration argument"):
        probe.get_function("bounded")((0,), (32,), (out,))
    with pytest.raises(TypeError, match="4-byte scalar, got int64"):
        probe.get_function("writes_past_the_end")((1,), (32,), (out, np.int64(3)))
    with pytest.raises(TypeError, match="points to 4-byte elements"):
        probe.get_function("bounded")((1,), (32,), (np.zeros(64, np.uint64),))


def test_a_write_out_of_bounds_is_reported():
    host = HostCupy()
    module = host.RawModule(code=PROBE)
    out = host.empty(30, dtype=np.int32)
    with pytest.raises(RuntimeError, match="written out of bounds"):
        module.get_function("writes_past_the_end")((1,), (32,), (out, np.int32(30)))


def test_compile_errors_carry_the_compiler_output():
    with pytest.raises(RuntimeError, match="(?s)could not compile.*not_declared_anywhere"):
        HostCupy().RawModule(code='extern "C" __global__ void broken(int* x) { x[0] = not_declared_anywhere; }')


def test_missing_gxx_says_how_to_install_it(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(RuntimeError, match=r"install g\+\+ \(apt install g\+\+\)"):
        cuda_host.gxx()
