"""Tests for qnnlib.runtime.binary_gemm and its backends (gemm_cpu, gemm_cuda): every backend bit-exact
against the unpacked ±1 product, the CPU kernel's blocking, layouts and generated code.

The CUDA backends run only where CuPy and a GPU are present (skipped cleanly otherwise); their
sources are compiled by nvcc in tests/runtime/test_kernels_compile.py on any machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.runtime.binary_gemm import BACKENDS, binary_matmul, binary_matmul_sign
from qnnlib.runtime.bitpack import PackedBits, pack, pack_bits, unpack
from qnnlib.runtime.gemm_cpu import (
    TILES,
    a_panels,
    b_panels,
    blocking,
    compiled_nibble_split,
    compiled_tile,
    xor_popcount_gemm,
)
from qnnlib.runtime.gemm_cuda import KERNEL_DIR, KERNELS
from qnnlib.runtime.hardware import CacheSizes

_PANELS = numba.types.uint64[:, :, ::1]
_I64 = numba.types.int64
_KERNEL_SIG = (_PANELS, _PANELS, _I64, numba.types.int32[:, ::1], _I64, _I64, _I64)
ODD_SHAPES = [(7, 13, 1000), (1, 1, 1), (3, 5, 64), (4, 6, 65), (2, 3, 63), (17, 9, 128), (67, 300, 517)]


def _random_pm1(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(rows, k))


def _expected(a_packed: np.ndarray, b_packed: np.ndarray, k: int) -> np.ndarray:
    """The definition: the integer product of the unpacked ±1 matrices, A @ B.T."""
    a = unpack(a_packed, k).astype(np.int64)
    b = unpack(b_packed, k).astype(np.int64)
    return a @ b.T


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("word_bits", [32, 64])
@pytest.mark.parametrize("backend", ["numpy", "cpu", "auto"])
def test_cpu_backends_are_exact(shape, word_bits, backend):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n + k)
    a, b = pack(_random_pm1(rng, m, k), word_bits), pack(_random_pm1(rng, n, k), word_bits)
    out = binary_matmul(a, b, k, backend=backend)
    assert isinstance(out, np.ndarray) and out.dtype == np.int32 and out.shape == (m, n)
    np.testing.assert_array_equal(out, _expected(a, b, k))


def test_extreme_values_and_real_inputs():
    k = 300
    ones = pack(np.ones((2, k)))
    minus = pack(-np.ones((3, k)))
    np.testing.assert_array_equal(binary_matmul(ones, ones, k), np.full((2, 2), k))
    np.testing.assert_array_equal(binary_matmul(ones, minus, k), np.full((2, 3), -k))
    x = np.random.default_rng(3).standard_normal((5, k))
    w = np.random.default_rng(4).standard_normal((6, k))
    sx, sw = np.where(x >= 0, 1, -1), np.where(w >= 0, 1, -1)
    np.testing.assert_array_equal(binary_matmul(pack(x), pack(w), k), sx @ sw.T)


@pytest.mark.parametrize("row_block,panel_block,word_block", [(1, 1, 1), (3, 5, 7), (2, 16, 4), (8, 2, 100),
                                                              (64, 64, 31), (16, 3, 1000)])
@pytest.mark.parametrize(
    "shape", [(23, 37, 300), (24, 40, 2048), (5, 9, 64 * 31 + 1)], ids=lambda s: "x".join(map(str, s))
)
def test_cpu_kernel_any_blocking(row_block, panel_block, word_block, shape):
    """Any task and K blocking, partial tiles in both directions, K over several 31-word byte chunks."""
    m, n, k = shape
    rng = np.random.default_rng(row_block + panel_block + k)
    a, b = pack(_random_pm1(rng, m, k)), pack(_random_pm1(rng, n, k))
    out = np.full((m, n), -99999, dtype=np.int32)
    split = compiled_nibble_split()  # True on AVX2 CPUs without AVX-512 VPOPCNTDQ
    rows, panels = a_panels(a, split), b_panels(b, split)
    xor_popcount_gemm(rows, panels, np.int64(k), out, np.int64(row_block), np.int64(panel_block), np.int64(word_block))
    np.testing.assert_array_equal(out, _expected(a, b, k))
    with pytest.raises(ValueError, match="layout"):  # the other layout is refused, not misread
        xor_popcount_gemm(a_panels(a, not split), b_panels(b, not split), np.int64(k), out, np.int64(4),
                          np.int64(2), np.int64(8))
    with pytest.raises(ValueError, match="layout"):  # row panels of another height too
        xor_popcount_gemm(a_panels(a, split, 12 - compiled_tile()[0]), panels, np.int64(k), out, np.int64(4),
                          np.int64(2), np.int64(8))


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("rows", [4, 8])
def test_operand_layouts(split, rows):
    """A as R-row panels and B as 8-column panels, word by word, zero-padded past M and N; nibble split:
    low then high nibble words."""
    rng = np.random.default_rng(7)
    a, b = pack(_random_pm1(rng, 5, 200)), pack(_random_pm1(rng, 11, 200))  # 4 words per row
    ap, bp = a_panels(a, split, rows), b_panels(b, split)
    assert ap.shape == (-(-5 // rows), 4 * (1 + split), rows) and bp.shape == (2, 4, 8 * (1 + split))
    assert ap.flags.c_contiguous and bp.flags.c_contiguous
    if split:
        lo, hi = ap[:, 0::2], ap[:, 1::2]
        assert not ((lo | hi) & np.uint64(0xF0F0F0F0F0F0F0F0)).any()
        ap = lo | (hi << np.uint64(4))
        bp = bp[:, :, :8] | (bp[:, :, 8:] << np.uint64(4))
    np.testing.assert_array_equal(ap.transpose(0, 2, 1).reshape(-1, 4)[:5], a)
    assert not ap.transpose(0, 2, 1).reshape(-1, 4)[5:].any()
    np.testing.assert_array_equal(bp.transpose(0, 2, 1).reshape(-1, 4)[:11], b)
    assert not bp.transpose(0, 2, 1).reshape(-1, 4)[11:].any()


def test_compiled_tile_matches_the_isa():
    rows, panels = compiled_tile()
    assert (rows, panels) in TILES.values()
    assert (rows, panels) == (TILES["nibbles"] if compiled_nibble_split() else (rows, panels))


_CACHES = CacheSizes(l1d=48 << 10, l2=2 << 20, l3=300 << 20, source="test")


@pytest.mark.parametrize("tile,split", [((8, 2), False), ((4, 1), True), ((4, 1), False)])
def test_blocking_fits_the_caches(tile, split):
    """The tile's operands over one K block fit half of L1d, a task's B block half of L2, at every size."""
    rows, panels = tile
    for m, n, words in [(4096, 4096, 64), (8192, 8192, 64), (16384, 16384, 256), (100, 4096, 13), (10000, 10, 64),
                        (1, 1, 1), (8192, 8192, 1000)]:
        bl = blocking(m, n, words, split, tile, 2, _CACHES)
        scale = 2 if split else 1
        assert 1 <= bl.word_block <= words
        assert scale * (8 * rows + 64 * panels) * bl.word_block <= _CACHES.l1d // 2 or bl.word_block == 16
        assert 64 * scale * bl.word_block * bl.panel_block <= _CACHES.l2 // 2 or bl.panel_block == panels
        assert bl.row_block % rows == 0 and bl.panel_block % panels == 0
        n_k = -(-words // bl.word_block)
        assert words - (n_k - 1) * bl.word_block >= bl.word_block // 2  # no small K remainder
        if m * n >= 64 * 64 * 8:
            assert bl.tasks >= 8, (m, n, bl)  # 4 tasks per thread, skinny products included
    small = blocking(4096, 4096, 64, False, (8, 2), 2, CacheSizes(l1d=16 << 10, l2=256 << 10, l3=1 << 20, source="t"))
    assert small.word_block < 64 and small.panel_block < blocking(4096, 4096, 64, False, (8, 2), 2, _CACHES).panel_block


def test_large_tile_remainders_and_empty():
    rng = np.random.default_rng(5)
    m, n, k = 131, 517, 2000  # several row tasks, a column block remainder, odd M
    a, b = pack(_random_pm1(rng, m, k)), pack(_random_pm1(rng, n, k))
    np.testing.assert_array_equal(binary_matmul(a, b, k, "cpu"), binary_matmul(a, b, k, "numpy"))
    empty = binary_matmul(a[:0], b, k, "cpu")
    assert empty.shape == (0, n) and empty.dtype == np.int32


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 20),
    n=st.integers(1, 20),
    k=st.integers(1, 200),
    word_bits=st.sampled_from([32, 64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_unpacked_product_property(m, n, k, word_bits, seed):
    rng = np.random.default_rng(seed)
    a, b = pack(rng.standard_normal((m, k)), word_bits), pack(rng.standard_normal((n, k)), word_bits)
    expected = _expected(a, b, k)
    np.testing.assert_array_equal(binary_matmul(a, b, k, "cpu"), expected)
    np.testing.assert_array_equal(binary_matmul(a, b, k, "numpy"), expected)


def _reference_sign(a, b, k, t, f):
    """The definition: +1 iff f·(A·B^T) >= t, packed (the threshold comparison of Alg. 4's folded sign(BN))."""
    return pack(f[None].astype(np.int64) * _expected(a, b, k) >= t[None])


@pytest.mark.parametrize("shape", ODD_SHAPES + [(100, 4096, 784), (17, 130, 300), (64, 64, 64)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_fused_sign_equals_threshold_of_product(shape, backend):
    """The fused epilogue (compare the finished tile with the thresholds, store only bits) equals
    thresholding the int32 product, both flips, thresholds at and beyond the extremes, padding bits 0."""
    m, n, k = shape
    rng = np.random.default_rng(m + 7 * n + k)
    a, b = pack(_random_pm1(rng, m, k)), pack(_random_pm1(rng, n, k))
    t = rng.integers(-k // 4 - 1, k // 4 + 2, size=n)
    t[: min(n, 3)] = [k + 5, -k - 5, k][: min(n, 3)]  # never / always / only the exact match fires (f = +1)
    f = rng.choice(np.array([-1, 1], dtype=np.int8), size=n)
    got = binary_matmul_sign(a, b, t, f, k, backend)
    assert got.dtype == np.uint64 and got.shape == (m, -(-n // 64))
    np.testing.assert_array_equal(got, _reference_sign(a, b, k, t, f))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 140), k=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_fused_sign_property(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a, b = pack(rng.standard_normal((m, k))), pack(rng.standard_normal((n, k)))
    t = rng.integers(-k - 2, k + 3, size=n)
    f = rng.choice(np.array([-1, 1], dtype=np.int8), size=n)
    np.testing.assert_array_equal(binary_matmul_sign(a, b, t, f, k, "cpu"), _reference_sign(a, b, k, t, f))


def test_fused_sign_bad_inputs():
    a, b = pack(np.ones((2, 100))), pack(np.ones((3, 100)))
    with pytest.raises(ValueError, match="one entry per column"):
        binary_matmul_sign(a, b, np.zeros(2, np.int64), np.ones(3, np.int8), 100)
    with pytest.raises(ValueError, match="f in"):
        binary_matmul_sign(a, b, np.zeros(3, np.int64), np.array([1, 0, -1], np.int8), 100, "cpu")
    with pytest.raises(ValueError, match="words per row"):
        binary_matmul_sign(a, b, np.zeros(3, np.int64), np.ones(3, np.int8), 200)


@pytest.mark.parametrize("backend", ["cpu", "numpy", "auto"])
def test_out_is_written_and_returned(backend):
    rng = np.random.default_rng(11)
    a, b = pack(_random_pm1(rng, 9, 300)), pack(_random_pm1(rng, 17, 300))
    out = np.full((9, 17), -7, dtype=np.int32)
    assert binary_matmul(a, b, 300, backend, out=out) is out
    np.testing.assert_array_equal(out, _expected(a, b, 300))


@pytest.mark.parametrize("bad", [np.empty((9, 17), np.int64), np.empty((17, 9), np.int32),
                                 np.empty((9, 34), np.int32)[:, ::2], [[0] * 17] * 9])
def test_bad_out_is_refused(bad):
    rng = np.random.default_rng(12)
    a, b = pack(_random_pm1(rng, 9, 300)), pack(_random_pm1(rng, 17, 300))
    with pytest.raises(ValueError, match=r"out must be a C-contiguous NumPy int32 array of shape \(9, 17\)"):
        binary_matmul(a, b, 300, "cpu", out=bad)
    with pytest.raises(ValueError, match="CPU backends"):
        binary_matmul(a, b, 300, "cuda-xnor", out=np.empty((9, 17), np.int32))


def test_errors_are_clear():
    a64, b64 = pack(np.ones((2, 100))), pack(np.ones((3, 100)))
    with pytest.raises(ValueError, match="backend"):
        binary_matmul(a64, b64, 100, backend="gpu")
    with pytest.raises(ValueError, match="positive integer"):
        binary_matmul(a64, b64, 0)
    with pytest.raises(ValueError, match="same word size"):
        binary_matmul(a64, pack(np.ones((3, 100)), 32), 100)
    with pytest.raises(ValueError, match="words per row"):
        binary_matmul(a64, b64, 200)
    with pytest.raises(ValueError, match="words per row"):
        binary_matmul(a64, pack(np.ones((3, 150))), 100)
    with pytest.raises(ValueError, match="padding bits"):
        binary_matmul(a64, b64, 90)  # packed with K=100: bits 90..99 are set
    with pytest.raises(ValueError, match="2-D"):
        binary_matmul(a64[0], b64, 100)
    with pytest.raises(ValueError, match="uint32 or uint64"):
        binary_matmul(a64.astype(np.int64), b64.astype(np.int64), 100)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_packed_bits_carry_k_so_a_wrong_k_cannot_shift_the_result(backend):
    """Issue 10 row 15: bare words packed with K = 60 and multiplied with k = 64 (same word count) count the 4
    zero padding bits as matches, +4 on every entry; operands that carry their K refuse the wrong k."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 60)), rng.standard_normal((5, 60))
    pa, pb = pack_bits(a), pack_bits(b)
    exact = np.where(a >= 0, 1, -1) @ np.where(b >= 0, 1, -1).T
    np.testing.assert_array_equal(binary_matmul(pa, pb, backend=backend), exact)  # K from the operands
    np.testing.assert_array_equal(binary_matmul(pa, pb, 60, backend), exact)  # an agreeing k is fine
    np.testing.assert_array_equal(binary_matmul(pa, pb.words, backend=backend), exact)  # one carrier suffices
    # what bare words cannot tell (documented in the module docstring): off by k - K
    np.testing.assert_array_equal(binary_matmul(pa.words, pb.words, 64, backend), exact + 4)
    with pytest.raises(ValueError, match=r"a_packed carries K=60 but k=64 was passed"):
        binary_matmul(pa, pb, 64, backend)
    with pytest.raises(ValueError, match=r"b_packed carries K=60 but k=62 was passed"):
        binary_matmul(pa.words, pb, 62, backend)
    with pytest.raises(ValueError, match=r"b_packed carries K=62 but a_packed carries K=60"):
        binary_matmul(pa, pack_bits(rng.standard_normal((5, 62))), backend=backend)
    with pytest.raises(TypeError, match="needs k"):
        binary_matmul(pa.words, pb.words, backend=backend)


@settings(max_examples=40, deadline=None)
@given(k=st.one_of(st.integers(max_value=0), st.booleans(), st.floats(allow_nan=True), st.just("100"),
                   st.just(np.float32(100.0)), st.just(np.bool_(True))))
def test_bad_k_is_refused_naming_k(k):
    a, b = pack(np.ones((2, 100))), pack(np.ones((3, 100)))
    with pytest.raises((TypeError, ValueError), match=r"\bk\b"):
        binary_matmul(a, b, k, "numpy")
    with pytest.raises((TypeError, ValueError), match=r"\bk\b"):
        binary_matmul(PackedBits(a, 100), PackedBits(b, 100), k, "numpy")


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), k=st.integers(1, 200), word_bits=st.sampled_from([32, 64]),
       dk=st.integers(-70, 70), seed=st.integers(0, 2**32 - 1))
def test_carried_k_is_exact_and_any_other_k_raises(m, n, k, word_bits, dk, seed):
    rng = np.random.default_rng(seed)
    pa, pb = pack_bits(rng.standard_normal((m, k)), word_bits), pack_bits(rng.standard_normal((n, k)), word_bits)
    np.testing.assert_array_equal(binary_matmul(pa, pb, backend="cpu"), _expected(pa.words, pb.words, k))
    if dk and k + dk >= 1:
        with pytest.raises(ValueError, match=f"K={k} but k={k + dk} was passed"):
            binary_matmul(pa, pb, k + dk, "cpu")


def test_cuda_host_code_refuses_an_unknown_variant_before_touching_cupy():
    from qnnlib.runtime.gemm_cuda import CUDA_VARIANTS, matmul_cuda

    assert set(CUDA_VARIANTS) == {b for b in BACKENDS if b.startswith("cuda-")}
    with pytest.raises(ValueError, match="variant"):
        matmul_cuda(np.zeros((1, 1), np.uint32), np.zeros((1, 1), np.uint32), 1, "cuda")


def test_kernel_sources_are_found_next_to_the_package():
    assert KERNEL_DIR == Path(__file__).resolve().parents[2] / "kernels"
    for source, names in KERNELS.items():
        text = (KERNEL_DIR / source).read_text()
        for name in names:
            assert re.search(rf'extern "C" __global__ void (__launch_bounds__\([^)]*\)\s+)?{name}\(', text), name
    assert set(BACKENDS) >= {"auto", "numpy", "cpu", "cuda-xnor", "cuda-tc"}


# --- generated code: the popcount must be vectorised ----------------------------------------------

@pytest.fixture(scope="module")
def host_asm() -> str:
    """Assembly of the CPU kernel compiled for this host (a fresh, uncached copy: Numba cannot
    inspect code loaded from its on-disk cache)."""
    fresh = numba.njit(parallel=True, cache=False)(xor_popcount_gemm.py_func)
    fresh.compile(_KERNEL_SIG)
    return fresh.inspect_asm(_KERNEL_SIG)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


@pytest.mark.skipif("avx512_vpopcntdq" not in _cpu_flags(), reason="CPU lacks AVX-512 VPOPCNTDQ")
def test_host_asm_uses_vpopcntq(host_asm):
    assert "vpopcntq" in host_asm


@pytest.mark.skipif("avx2" not in _cpu_flags(), reason="not an AVX2 x86 CPU")
def test_host_asm_vectorises_the_popcount(host_asm):
    # AVX-512 VPOPCNTDQ: vpopcntq; AVX2 only: nibble-table popcount (vpshufb) into byte counters (vpaddb).
    assert "vpopcntq" in host_asm or re.search(r"vpshufb\s+%ymm", host_asm) and re.search(r"vpaddb\s+%ymm", host_asm)


def test_kernel_compiles_to_vpopcntq_for_an_avx512_cpu(tmp_path):
    """Cross-compile the same kernel for Ice Lake server (AVX-512 VPOPCNTDQ) without running it."""
    code = (
        "from numba import types\n"
        "from qnnlib.runtime.gemm_cpu import xor_popcount_gemm as f\n"
        "w = types.uint64[:, :, ::1]\n"
        "sig = (w, w, types.int64, types.int32[:, ::1], types.int64, types.int64, types.int64)\n"
        "f.compile(sig)\n"
        "print(f.inspect_asm(sig))\n"
    )
    env = dict(
        os.environ,
        NUMBA_CPU_NAME="icelake-server",
        NUMBA_CPU_FEATURES="+64bit,+avx,+avx2,+fma,+bmi,+bmi2,+popcnt,+sse4.2,+lzcnt,"
        "+avx512f,+avx512cd,+avx512bw,+avx512dq,+avx512vl,+avx512vpopcntdq",
        NUMBA_CACHE_DIR=str(tmp_path),
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"vpopcntq\s+%[yz]mm", done.stdout)


@pytest.mark.skipif(not re.match(r"x86_64|amd64", os.uname().machine, re.I), reason="x86-64 host only")
def test_cpu_backend_runs_exactly_on_a_cpu_without_avx2(tmp_path):
    """The same kernel compiled for a baseline x86-64 CPU (SSE2 only: no SSSE3, no AVX) runs exactly
    here: without AVX2 the micro-kernel is plain LLVM vector IR (generic per-byte ctpop, unsplit
    operands), so no AVX2 instruction may appear in it."""
    code = (
        "import numpy as np, numba\n"
        "from qnnlib.runtime.binary_gemm import binary_matmul, binary_matmul_sign\n"
        "from qnnlib.runtime.gemm_cpu import xor_popcount_gemm as f\n"
        "from qnnlib.runtime.bitpack import pack\n"
        "rng = np.random.default_rng(0)\n"
        "for m, n, k in [(7, 13, 1000), (1, 1, 1), (9, 17, 64 * 40 + 3), (33, 16, 128)]:\n"
        "    a, b = pack(rng.standard_normal((m, k))), pack(rng.standard_normal((n, k)))\n"
        "    ref = binary_matmul(a, b, k, 'numpy')\n"
        "    assert np.array_equal(binary_matmul(a, b, k, 'cpu'), ref), (m, n, k)\n"
        "    t = rng.integers(-k // 4 - 1, k // 4 + 2, size=n); fl = rng.choice(np.array([-1, 1], np.int8), size=n)\n"
        "    sign = pack(fl[None].astype(np.int64) * ref >= t[None])\n"
        "    assert np.array_equal(binary_matmul_sign(a, b, t, fl, k, 'cpu'), sign), (m, n, k, 'sign')\n"
        "w = numba.types.uint64\n"
        "i = numba.types.int64\n"
        "sig = (w[:, :, ::1], w[:, :, ::1], i, numba.types.int32[:, ::1], i, i, i)\n"
        "from qnnlib.runtime.gemm_cpu import compiled_nibble_split\n"
        "assert not compiled_nibble_split()\n"
        "print(f.inspect_asm(sig))\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="", NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "%ymm" not in done.stdout and "vpshufb" not in done.stdout


@pytest.mark.skipif("avx2" not in _cpu_flags(), reason="needs an AVX2 CPU to run the AVX2 kernel")
def test_avx2_kernel_runs_exactly(tmp_path):
    """The AVX2 path (nibble-split operands, vpshufb, 4x8 tiles), compiled for Haswell and run on this CPU:
    exact on odd shapes, with K blocks, edge rows and edge columns; the machine CI runs on may have
    AVX-512 VPOPCNTDQ, so without this test the AVX2 kernel would never execute there."""
    code = (
        "import numpy as np\n"
        "from qnnlib.runtime.binary_gemm import binary_matmul, binary_matmul_sign\n"
        "from qnnlib.runtime.gemm_cpu import a_panels, b_panels, compiled_nibble_split, compiled_tile, xor_popcount_gemm\n"
        "from qnnlib.runtime.bitpack import pack\n"
        "assert compiled_nibble_split() and compiled_tile() == (4, 1)\n"
        "rng = np.random.default_rng(0)\n"
        "for m, n, k in [(7, 13, 1000), (1, 1, 1), (9, 17, 64 * 40 + 3), (33, 16, 128), (100, 300, 784)]:\n"
        "    a, b = pack(rng.standard_normal((m, k))), pack(rng.standard_normal((n, k)))\n"
        "    ref = binary_matmul(a, b, k, 'numpy')\n"
        "    assert np.array_equal(binary_matmul(a, b, k, 'cpu'), ref), (m, n, k)\n"
        "    out = np.empty((m, n), np.int32)\n"
        "    xor_popcount_gemm(a_panels(a, True), b_panels(b, True), k, out, 8, 3, 5)\n"
        "    assert np.array_equal(out, ref), (m, n, k, 'blocked')\n"
        "    t = rng.integers(-k // 4 - 1, k // 4 + 2, size=n); fl = rng.choice(np.array([-1, 1], np.int8), size=n)\n"
        "    sign = pack(fl[None].astype(np.int64) * ref >= t[None])\n"
        "    assert np.array_equal(binary_matmul_sign(a, b, t, fl, k, 'cpu'), sign), (m, n, k, 'sign')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CACHE_DIR=str(tmp_path),
               NUMBA_CPU_FEATURES="+64bit,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,+avx2,+fma,+bmi,+bmi2,+lzcnt,"
               "+movbe,+f16c,+cx16")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


# --- GPU backends (skipped without CuPy and a CUDA device) ----------------------------------------


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        count = 0
    if count < 1:
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("shape", ODD_SHAPES + [(130, 257, 4097)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("backend", ["cuda-xnor", "cuda-tc", "auto"])
def test_cuda_backends_are_exact(cp, shape, backend):
    from qnnlib.runtime.hardware import compute_capability

    if backend == "cuda-tc" and compute_capability() < 80:
        pytest.skip("1-bit tensor cores need compute capability >= 8.0")
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    for word_bits in (32, 64):
        a, b = pack(_random_pm1(rng, m, k), word_bits), pack(_random_pm1(rng, n, k), word_bits)
        out = binary_matmul(cp.asarray(a), cp.asarray(b), k, backend)
        assert isinstance(out, cp.ndarray) and out.dtype == cp.int32
        np.testing.assert_array_equal(cp.asnumpy(out), _expected(a, b, k))
    # NumPy inputs with an explicit CUDA backend come back as NumPy
    assert isinstance(binary_matmul(a, b, k, "cuda-xnor"), np.ndarray)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(7, 13, 1000), (1, 1, 1), (33, 65, 64), (100, 37, 129)])
def test_cuda_pack_and_float_baseline_are_exact(cp, shape):
    from qnnlib.runtime.gemm_cuda import gemm_float_cuda, pack_cuda

    m, n, k = shape
    rng = np.random.default_rng(k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[0, 0] = 0.0
    np.testing.assert_array_equal(cp.asnumpy(pack_cuda(cp.asarray(x))), pack(x, 32))
    a, b = _random_pm1(rng, m, k), _random_pm1(rng, n, k)
    c = gemm_float_cuda(cp.asarray(a), cp.asarray(np.ascontiguousarray(b.T)))
    np.testing.assert_array_equal(cp.asnumpy(c), a.astype(np.int64) @ b.T.astype(np.int64))


# --- the benchmark's reusable sweep (timings are printed by the benchmark only, never asserted) ---


def test_cpu_benchmark_sweep_runs_and_checks_exactness():
    from qnnlib.bench.gemm import cpu_gemm_sweep

    df = cpu_gemm_sweep(sizes=(32, (7, 13, 100)), repeats=1, clock=2.0)
    assert (df["clock_GHz"] == 2.0).all()
    binary = df[df.method == "binary_matmul cpu"]
    np.testing.assert_allclose(binary["ops/cycle/core"], binary["Gop/s"] / 2.0 / binary["numba_threads"].clip(
        upper=binary["torch_threads"]))
    assert (df["GB/s"] > 0).all()
    assert set(df.method) == {"torch.matmul fp32", "binary_matmul cpu", "pack A and B", "binary incl. packing"}
    assert df.exact.all() and (df.seconds > 0).all()
    assert list(df.drop_duplicates(["M", "N", "K"])[["M", "N", "K"]].itertuples(index=False, name=None)) == [
        (32, 32, 32),
        (7, 13, 100),
    ]


def test_cpu_benchmark_command_prints_isa_blocks_and_rates(capsys):
    """``bench cpu`` takes square sizes and MxNxK shapes and prints the ISA, caches, clock and cache blocks."""
    from qnnlib.cli import main, parser

    assert parser().parse_args(["bench", "cpu", "--sizes", "64,8192x8192x4096"]).sizes == [64, (8192, 8192, 4096)]
    for bad in ("0", "3x4", "ax2x3", ","):
        with pytest.raises(SystemExit):
            parser().parse_args(["bench", "cpu", "--sizes", bad])
    assert main(["bench", "cpu", "--sizes", "64,40x24x200", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for needle in ("ISA: popcount", "register tile", "caches: L1d", "clock measured", "blocks at 40x24x200",
                   "ops/cycle/core", "GB/s", "all binary results equal the float products"):
        assert needle in out, needle


def test_convnet_rows_of_the_gpu_benchmark_run_on_the_cpu():
    """``bench gpu``'s ConvNet section with a CPU device and the NumPy backend standing in for a CUDA one:
    the packed network on another backend predicts exactly what it predicts on the CPU kernels."""
    from qnnlib.bench.gemm import convnet_gpu_rows

    rows = convnet_gpu_rows(width=0.125, images=24, repeats=1, batch=12, backends=("numpy",), device="cpu")
    assert [r["method"] for r in rows] == ["PyTorch fp32 ConvNet on cpu",
                                           "PackedConvNet, GEMMs on numpy (im2col, pool, threshold on the CPU)",
                                           "PackedConvNet on the CPU"]
    assert rows[1]["identical_to_packed_cpu"] is True and rows[0]["identical_to_packed_cpu"] is None
    assert all(r["seconds"] > 0 and r["images"] == 24 for r in rows)


def test_binary_tensor_core_peak_only_where_published():
    from qnnlib.bench.gemm import binary_tc_peak_tops

    assert binary_tc_peak_tops("NVIDIA A100-SXM4-80GB (sm_80)") == 4992.0
    assert binary_tc_peak_tops("NVIDIA H100 80GB HBM3 (sm_90)") is None
    assert binary_tc_peak_tops("NVIDIA H200 (sm_90)") is None


def test_gpu_benchmark_needs_no_pandas():
    """The GPU machines have torch, cupy and numba but not pandas: ``python -m qnnlib bench gpu`` (and the
    modules it runs) must import without it and get as far as looking for the GPU."""
    code = ("import sys; sys.modules['pandas'] = None\n"
            "from qnnlib.cli import main\n"
            "import qnnlib.bench.gemm, qnnlib.bench.mlp, qnnlib.runtime.export\n"
            "raise SystemExit(main(['bench', 'gpu']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert "pandas" not in done.stderr, done.stderr[-2000:]
    assert done.returncode in (0, 1, 2), done.stderr[-2000:]


def test_gpu_benchmark_without_gpu_exits_2(capsys):
    from qnnlib.cli import main
    from qnnlib.runtime.hardware import gpu_available

    if gpu_available()[0]:
        pytest.skip("a GPU is present; `python -m qnnlib bench gpu` runs the real benchmark")
    assert main(["bench", "gpu"]) == 2
    assert "no usable GPU" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["cuda", "cuda-xnor", "cuda-tc"])
def test_cuda_backend_without_cupy_says_it_needs_cupy_and_a_gpu(monkeypatch, backend):
    """NumPy operands and a cuda backend on a machine without CuPy: the message is about the backend."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    a = pack(np.ones((2, 64), np.float32))
    with pytest.raises(ImportError, match=r"needs CuPy and a CUDA GPU .*install the \[gpu\] extra"):
        binary_matmul(a, a, 64, backend=backend)
