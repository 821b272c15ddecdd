"""The CUDA host code of qnnlib.runtime.gemm_cuda / binary_gemm (issue 17), run on the host emulator.

Each test pins one fixed defect: float64 packing and NaN in ``pack_cuda``; the GEMM launch geometry for huge M
(the tiles on ``gridDim.x``); the module cache keyed by device; ``backend="cuda"`` chosen by measured speed
(with an injected fake timer, no GPU); the zero-copy uint64 -> uint32 view; prepared operands whose row
popcounts are computed once (and PackedBNN's cache of them); the padding check without a host sync on CuPy
operands. Results are checked bit-exactly against NumPy. Needs g++ (skipped with a message when absent).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from qnnlib.runtime import binary_gemm, gemm_cuda, packed_bnn
from qnnlib.runtime.binary_gemm import binary_matmul, binary_matmul_sign, select_cuda_backend
from qnnlib.runtime.bitpack import pack, pack_bits
from qnnlib.runtime.cuda_host import HostCupy
from qnnlib.runtime.export import export_bnn
from qnnlib.runtime.gemm_cuda import (
    MAX_GRID_X,
    CudaOperand,
    gemm_float_cuda,
    gemm_launch,
    matmul_cuda,
    pack_cuda,
    prepare_cuda_operand,
)
from tests.bnn_helpers import random_bnn
from tests.runtime.emulator import needs_gxx

pytestmark = needs_gxx


_MODULE_CACHE, _FUNCTION_CACHE = gemm_cuda._cuda_module, gemm_cuda._cuda_function  # tests may patch the names


def _clear_caches() -> None:
    _MODULE_CACHE.cache_clear()
    _FUNCTION_CACHE.cache_clear()


@pytest.fixture
def host(monkeypatch):
    """CuPy replaced by the host emulator (compute capability 9.0), module caches and backend choices cleared."""
    _clear_caches()
    emu = HostCupy()
    for module in (gemm_cuda, binary_gemm):
        monkeypatch.setattr(module, "cupy", lambda: emu)
        monkeypatch.setattr(module, "compute_capability", lambda: 90)
    monkeypatch.setattr(packed_bnn, "cupy", lambda: emu)
    monkeypatch.setattr(binary_gemm, "_CUDA_CHOICE", {})
    monkeypatch.setattr(binary_gemm, "SELECTION_SHAPE", (130, 260, 600))  # 2048^3 is too slow for the emulator
    monkeypatch.delenv(binary_gemm.CUDA_GEMM_ENV, raising=False)
    yield emu
    _clear_caches()  # no emulated module may leak into real CuPy use


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.int64) @ b.T.astype(np.int64)).astype(np.int32)


# ---- 1. pack_cuda: float64 kernel, NaN raises ----------------------------------------------------------


def test_pack_cuda_float64_keeps_the_sign_of_tiny_negatives(host):
    """Values in [-2^-150, 0) round to -0.0 in float32 (+1); in float64 they are negative (-1), as bitpack.pack says."""
    tiny = [-(2.0**-150), -1e-300, -5e-324, -(2.0**-151), -0.0, 0.0, 5e-324, 1e-300, -1.0, 2.0**-150]
    x = np.array([tiny * 4], dtype=np.float64)  # 40 values: two words, a partial last one
    got = pack_cuda(x)
    np.testing.assert_array_equal(got, pack(x, word_bits=32))
    assert host.launches[-1][0] == "pack_rows_f64"
    assert int(got[0, 0]) & 0b1111 == 0  # the four tiny negatives are -1


@pytest.mark.parametrize("shape", [(1, 1), (3, 31), (5, 33), (17, 1000), (2, 64)])
def test_pack_cuda_float64_random_matches_bitpack(host, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) * np.where(rng.random(shape) < 0.3, 1e-300, 1.0)
    x[rng.random(shape) < 0.05] = 0.0
    np.testing.assert_array_equal(pack_cuda(x), pack(x, word_bits=32))


def test_pack_cuda_float32_stays_on_the_float32_kernel(host):
    x = np.random.default_rng(0).standard_normal((7, 100)).astype(np.float32)
    np.testing.assert_array_equal(pack_cuda(x), pack(x, word_bits=32))
    assert host.launches[-1][0] == "pack_rows_f32"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", [(0, 0), (2, 40), (4, 99)])
def test_pack_cuda_raises_on_nan_like_bitpack(host, dtype, where):
    x = np.ones((5, 100), dtype=dtype)
    x[where] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pack(x, word_bits=32)
    with pytest.raises(ValueError, match="NaN values, which have no sign"):
        pack_cuda(x)
    x[where] = -np.inf  # and the flag does not stick: a clean array packs
    np.testing.assert_array_equal(pack_cuda(x), pack(x, word_bits=32))


def test_pack_cuda_boolean_and_integer_input_like_bitpack(host):
    rng = np.random.default_rng(1)
    bits = rng.random((4, 70)) < 0.5
    np.testing.assert_array_equal(pack_cuda(bits), pack(bits, word_bits=32))
    ints = rng.integers(-3, 3, (4, 70))
    np.testing.assert_array_equal(pack_cuda(ints), pack(ints, word_bits=32))


# ---- 2. launch geometry: the tiles on gridDim.x ------------------------------------------------------------


class _Recorder:
    """A kernel that only records its launch and refuses what CUDA refuses (grid y/z > 65535, x > 2^31 - 1)."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def __call__(self, grid, block, args) -> None:
        grid = tuple(grid) + (1,) * (3 - len(grid))
        assert 1 <= grid[0] <= MAX_GRID_X and 1 <= grid[1] <= 65535 and 1 <= grid[2] <= 65535, (self.name, grid)
        self.log.append((self.name, grid, tuple(block)))


def test_launch_geometry_for_ten_million_rows_is_within_cuda_limits(host, monkeypatch):
    m, n = 10**7, 3
    log: list = []
    monkeypatch.setattr(gemm_cuda, "_cuda_function", lambda name: _Recorder(name, log))
    a = np.zeros((m, 1), np.uint32)
    b = np.zeros((n, 1), np.uint32)
    matmul_cuda(a, b, 32, "cuda-xnor")
    matmul_cuda(a, b, 32, "cuda-tc")
    gemm_float_cuda(np.zeros((m, 1), np.float32), np.zeros((1, n), np.float32))
    pack_cuda(np.zeros((m, 1), np.float32))
    grids = {}
    for name, grid, _ in log:  # the largest launch of each kernel
        grids[name] = max(grids.get(name, grid), grid)
    tiles = {"xnor_gemm_u32": 64, "b1_tc_gemm": 128, "gemm_f32_tiled": 16}
    for name, tile in tiles.items():  # one block per tile of C, all of them
        assert grids[name][0] * grids[name][1] * grids[name][2] == -(-m // tile) * -(-n // tile), name
    assert grids["pack_rows_f32"][0] * 256 >= m * 32 and grids["row_popcount_u32"][0] * 256 >= m * 32


def test_gemm_launch_limits():
    assert gemm_launch("xnor_gemm_u32", 10**7, 1000) == ((156250 * 16,), (16, 16))
    assert gemm_launch("b1_tc_gemm", 130, 257) == ((2 * 3,), (256,))
    with pytest.raises(ValueError, match="split the product"):
        gemm_launch("gemm_f32_tiled", 2**31 - 100, 2**31 - 100)
    with pytest.raises(ValueError, match="kernel must be one of"):
        gemm_launch("pack_rows_f32", 1, 1)


@pytest.mark.parametrize("variant", ["cuda-xnor", "cuda-tc", "cuda-tc-pipelined", "cuda-wgmma"])
def test_flat_grid_is_bit_exact_on_odd_shapes(host, variant):
    """Several tiles along M and N (tile index split with / and %), odd K."""
    rng = np.random.default_rng(7)
    for m, n, k in [(150, 200, 70), (257, 65, 33), (1, 300, 5)]:
        a, b = _signs(rng, (m, k)), _signs(rng, (n, k))
        np.testing.assert_array_equal(matmul_cuda(pack(a, 32), pack(b, 32), k, variant), _reference(a, b))


def test_flat_grid_float_kernel_matches_numpy(host):
    rng = np.random.default_rng(8)
    a = np.sign(rng.standard_normal((35, 20))).astype(np.float32)
    b = np.sign(rng.standard_normal((20, 50))).astype(np.float32)
    np.testing.assert_array_equal(gemm_float_cuda(a, b), (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32))


# ---- 3. module cache keyed by device -------------------------------------------------------------------


def test_module_cache_is_per_device(host, monkeypatch):
    compiled = []
    raw_module = host.RawModule
    monkeypatch.setattr(host, "RawModule", lambda **kw: compiled.append(kw) or raw_module(**kw))
    f0 = gemm_cuda._cuda_function("xnor_gemm_u32")
    assert gemm_cuda._cuda_function("xnor_gemm_u32") is f0
    host.device_id = 1
    f1 = gemm_cuda._cuda_function("xnor_gemm_u32")
    assert f1 is not f0 and f1.module is not f0.module
    assert len(compiled) == 2
    host.device_id = 0
    assert gemm_cuda._cuda_function("xnor_gemm_u32") is f0
    assert len(compiled) == 2


# ---- 4. backend="cuda": selection by measured speed ----------------------------------------------------


class _FakeTimer:
    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.calls = seconds, []

    def __call__(self, variant, run) -> float:
        assert callable(run)  # not run: the emulator's timings mean nothing
        self.calls.append(variant)
        return self.seconds[variant]


def test_cuda_backend_is_the_faster_kernel_per_device(host):
    slow_tc = _FakeTimer({"cuda-xnor": 1e-4, "cuda-tc": 3e-4, "cuda-tc-pipelined": 2e-4,  # an emulated 1-bit mma
                          "cuda-wgmma": 2e-4})
    assert select_cuda_backend(slow_tc) == "cuda-xnor"
    assert sorted(slow_tc.calls) == ["cuda-tc", "cuda-tc-pipelined", "cuda-wgmma", "cuda-xnor"]
    assert select_cuda_backend(slow_tc) == "cuda-xnor" and len(slow_tc.calls) == 4  # cached for device 0
    host.device_id = 1
    fast_tc = _FakeTimer({"cuda-xnor": 3e-4, "cuda-tc": 1e-4, "cuda-tc-pipelined": 0.5e-4, "cuda-wgmma": 0.4e-4})
    assert select_cuda_backend(fast_tc) == "cuda-wgmma" and len(fast_tc.calls) == 4
    host.device_id = 0
    assert select_cuda_backend(fast_tc) == "cuda-xnor" and len(fast_tc.calls) == 4


def test_wgmma_is_a_candidate_only_on_compute_capability_9_0(host, monkeypatch):
    for capability in (80, 100, 120):
        monkeypatch.setattr(binary_gemm, "_CUDA_CHOICE", {})
        monkeypatch.setattr(binary_gemm, "compute_capability", lambda c=capability: c)
        monkeypatch.setattr(gemm_cuda, "compute_capability", lambda c=capability: c)
        timer = _FakeTimer({"cuda-xnor": 3.0, "cuda-tc": 2.0, "cuda-tc-pipelined": 1.0})
        assert select_cuda_backend(timer) == "cuda-tc-pipelined"
        assert "cuda-wgmma" not in timer.calls
    with pytest.raises(RuntimeError, match=r"needs compute capability 9\.0 .* this GPU has 12\.0"):
        matmul_cuda(np.zeros((1, 1), np.uint32), np.zeros((1, 1), np.uint32), 1, "cuda-wgmma")


def test_a_kernel_that_fails_or_computes_wrong_is_never_chosen(host, monkeypatch):
    """The selection checks every candidate against cuda-xnor first: a broken kernel only costs a warning."""
    real = gemm_cuda.matmul_cuda

    def broken(a, b, k, variant):
        if variant == "cuda-wgmma":
            raise RuntimeError("NVRTC could not compile kernels/b1_wgmma.cu")
        out = real(a, b, k, variant)
        return out + 2 if variant == "cuda-tc-pipelined" else out

    monkeypatch.setattr(binary_gemm, "matmul_cuda", broken)
    timer = _FakeTimer({"cuda-xnor": 3.0, "cuda-tc": 2.0, "cuda-tc-pipelined": 0.1, "cuda-wgmma": 0.1})
    with pytest.warns(RuntimeWarning) as caught:
        assert select_cuda_backend(timer) == "cuda-tc"
    messages = " | ".join(str(w.message) for w in caught)
    assert "leaves out cuda-wgmma: it failed on this GPU (NVRTC could not compile" in messages
    assert "leaves out cuda-tc-pipelined: its product differs from cuda-xnor's" in messages
    assert sorted(timer.calls) == ["cuda-tc", "cuda-xnor"]


@pytest.mark.parametrize("faster,kernel", [("cuda-xnor", "xnor_gemm_u32"), ("cuda-tc", "b1_tc_gemm"),
                                           ("cuda-tc-pipelined", "b1_tc_gemm_pipelined")])
def test_binary_matmul_cuda_runs_the_measured_choice(host, monkeypatch, faster, kernel):
    monkeypatch.setattr(gemm_cuda, "compute_capability", lambda: 100)
    monkeypatch.setattr(binary_gemm, "compute_capability", lambda: 100)  # capability alone would say tc
    timer = _FakeTimer({"cuda-xnor": 2.0, "cuda-tc": 2.0, "cuda-tc-pipelined": 2.0, faster: 1.0})
    monkeypatch.setattr(binary_gemm, "_time_cuda_variant", timer)
    rng = np.random.default_rng(3)
    a, b = _signs(rng, (9, 300)), _signs(rng, (11, 300))
    np.testing.assert_array_equal(binary_matmul(pack(a), pack(b), 300, backend="cuda"), _reference(a, b))
    assert host.launches[-1][0] == kernel


def test_old_gpus_use_xnor_without_timing(host, monkeypatch):
    monkeypatch.setattr(binary_gemm, "compute_capability", lambda: 75)
    timer = _FakeTimer({})
    assert select_cuda_backend(timer) == "cuda-xnor" and timer.calls == []


def test_environment_variable_overrides_the_measurement(host, monkeypatch):
    timer = _FakeTimer({})
    for value, expected in [("xnor", "cuda-xnor"), ("tc", "cuda-tc"), (" TC ", "cuda-tc"),
                            ("tc-pipelined", "cuda-tc-pipelined"), ("wgmma", "cuda-wgmma")]:
        monkeypatch.setenv("QNNLIB_CUDA_GEMM", value)
        assert select_cuda_backend(timer) == expected
    assert timer.calls == []
    monkeypatch.setenv("QNNLIB_CUDA_GEMM", "fast")
    with pytest.raises(ValueError, match="QNNLIB_CUDA_GEMM must be one of xnor, tc, tc-pipelined, wgmma"):
        select_cuda_backend(timer)
    monkeypatch.setenv("QNNLIB_CUDA_GEMM", "wgmma")
    monkeypatch.setattr(binary_gemm, "compute_capability", lambda: 80)
    with pytest.raises(RuntimeError, match=r"wgmma needs compute capability 9\.0 .* this GPU has 8\.0"):
        select_cuda_backend(timer)
    monkeypatch.setenv("QNNLIB_CUDA_GEMM", "tc")
    monkeypatch.setattr(binary_gemm, "compute_capability", lambda: 75)
    with pytest.raises(RuntimeError, match=r"compute capability 7\.5 < 8\.0"):
        select_cuda_backend(timer)


def _fake_nvrtc(monkeypatch, *, cubin: bool, fail: bool = False) -> dict:
    """CuPy's NVRTC wrapper (``cupy_backends.cuda.libs.nvrtc``) replaced by a recorder; returns its record."""
    seen: dict = {}

    def compile_program(prog, options):
        seen["options"] = tuple(options)
        if fail:
            raise RuntimeError("NVRTC_ERROR_COMPILATION (6)")

    nvrtc = types.SimpleNamespace(
        createProgram=lambda code, name, headers, names: seen.update(name=name, code=code) or 42,
        compileProgram=compile_program, getProgramLog=lambda prog: "b1_wgmma.cu(1): error: something",
        getPTX=lambda prog: b"// PTX .target sm_90a", destroyProgram=lambda prog: seen.update(destroyed=prog))
    if cubin:
        nvrtc.getCUBIN = lambda prog: b"\x7fELF a cubin"
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.nvrtc = nvrtc
    for name, module in (("cupy_backends", types.ModuleType("cupy_backends")),
                         ("cupy_backends.cuda", types.ModuleType("cupy_backends.cuda")),
                         ("cupy_backends.cuda.libs", libs)):
        monkeypatch.setitem(sys.modules, name, module)
    return seen


@pytest.mark.parametrize("cubin,target,suffix", [(True, "sm_90a", ".cubin"), (False, "compute_90a", ".ptx")])
def test_the_hopper_source_is_compiled_by_nvrtc_for_sm90a_and_loaded_from_a_file(monkeypatch, tmp_path, cubin,
                                                                                 target, suffix):
    """CuPy's RawModule(code=...) would compile for plain sm_90 (no wgmma): the host code asks NVRTC itself."""
    _clear_caches()
    seen = _fake_nvrtc(monkeypatch, cubin=cubin)
    loaded = []
    fake_cupy = types.SimpleNamespace(RawModule=lambda **kw: loaded.append(kw) or "module",
                                      cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0)))
    monkeypatch.setattr(gemm_cuda, "cupy", lambda: fake_cupy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        assert gemm_cuda._cuda_module("b1_wgmma.cu") == "module"
    finally:
        _clear_caches()
    assert seen["options"] == (f"--gpu-architecture={target}", "--std=c++14") and seen["destroyed"] == 42
    assert seen["name"] == "b1_wgmma.cu" and "wgmma.mma_async" in seen["code"]
    (path,) = [kw["path"] for kw in loaded]
    assert path.endswith(suffix) and path.startswith(str(tmp_path / "qnnlib" / "cuda"))
    assert open(path, "rb").read() == (b"\x7fELF a cubin" if cubin else b"// PTX .target sm_90a")


def test_an_nvrtc_failure_names_the_source_the_target_and_the_log(monkeypatch, tmp_path):
    _clear_caches()
    _fake_nvrtc(monkeypatch, cubin=True, fail=True)
    monkeypatch.setattr(gemm_cuda, "cupy", lambda: types.SimpleNamespace(
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0))))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        with pytest.raises(RuntimeError, match=r"(?s)kernels/b1_wgmma.cu for sm_90a.*error: something"):
            gemm_cuda._cuda_module("b1_wgmma.cu")
    finally:
        _clear_caches()


# ---- 5a. uint64 words: a zero-copy uint32 view -----------------------------------------------------------


@pytest.mark.parametrize("k", [1, 31, 32, 33, 63, 64, 65, 100, 128, 129])
def test_uint64_words_viewed_as_uint32_are_the_uint32_packing(k):
    x = _signs(np.random.default_rng(k), (5, k))
    w32 = -(-k // 32)
    view = np.ascontiguousarray(pack(x, 64)).view(np.uint32)
    assert view.shape == (5, 2 * -(-k // 64))
    np.testing.assert_array_equal(view[:, :w32], pack(x, 32))
    assert (view[:, w32:] == 0).all()  # at most one extra word, all padding


@pytest.mark.parametrize("variant", ["cuda-xnor", "cuda-tc"])
@pytest.mark.parametrize("k", [31, 33, 64, 100, 129])
def test_matmul_cuda_runs_uint64_words_without_a_copy(host, monkeypatch, variant, k):
    rng = np.random.default_rng(k)
    a, b = _signs(rng, (20, k)), _signs(rng, (9, k))
    pa, pb = pack(a, 64), pack(b, 64)
    seen = []
    real = gemm_cuda._cuda_function

    def spy(name):
        fn = real(name)
        return lambda grid, block, args: seen.append((name, args)) or fn(grid, block, args)

    monkeypatch.setattr(gemm_cuda, "_cuda_function", spy)
    np.testing.assert_array_equal(matmul_cuda(pa, pb, k, variant), _reference(a, b))
    _, args = seen[-1]
    assert np.shares_memory(args[0], pa) and np.shares_memory(args[1], pb)  # the kernel reads the uint64 buffers
    assert args[0].dtype == np.uint32 and int(args[-2]) == 2 * pa.shape[1]  # W: the view's words, padding included


# ---- 5b. prepared operands ------------------------------------------------------------------------------


def _popcount_launches(host: HostCupy) -> int:
    return sum(1 for name, *_ in host.launches if name == "row_popcount_u32")


@pytest.mark.parametrize("word_bits", [32, 64])
def test_prepared_operand_popcounts_are_computed_once(host, word_bits):
    rng = np.random.default_rng(word_bits)
    k = 333
    a, b = _signs(rng, (40, k)), _signs(rng, (17, k))
    pa, pb = pack(a, word_bits), pack(b, word_bits)
    prepared = prepare_cuda_operand(pb, k)
    assert isinstance(prepared, CudaOperand) and prepared.shape == pb.shape and prepared.dtype == pb.dtype
    np.testing.assert_array_equal(prepared.popcounts, np.bitwise_count(pb).sum(axis=1))
    before = _popcount_launches(host)
    for _ in range(3):
        np.testing.assert_array_equal(binary_matmul(pa, prepared, k, backend="cuda-tc"), _reference(a, b))
        np.testing.assert_array_equal(binary_matmul(pa, prepared, k, backend="cuda-xnor"), _reference(a, b))
    assert _popcount_launches(host) - before == 3  # only A's, once per tensor-core product
    t = rng.integers(-50, 50, 17)
    f = np.where(rng.random(17) < 0.5, -1, 1)
    for backend in ("cuda-tc", "cuda-xnor", "auto"):
        np.testing.assert_array_equal(binary_matmul_sign(pa, prepared, t, f, k, backend=backend),
                                      binary_matmul_sign(pa, pb, t, f, k, backend="numpy"))


def test_prepared_operand_checks(host):
    x = _signs(np.random.default_rng(0), (4, 70))
    x[:, 69] = 1.0  # +1 at j = 69: a padding bit for K = 69
    with pytest.raises(ValueError, match="nonzero padding bits past K=69"):
        prepare_cuda_operand(pack(x, 64), 69)
    with pytest.raises(ValueError, match=r"needs ceil\(70/32\) = 3 words"):
        prepare_cuda_operand(pack(x, 64)[:, :1].astype(np.uint32), 70)
    carried = prepare_cuda_operand(pack_bits(x, 64))
    np.testing.assert_array_equal(carried.words, np.ascontiguousarray(pack(x, 64)).view(np.uint32))
    host.device_id = 1
    with pytest.raises(ValueError, match="prepared on CUDA device 0 but device 1 is current"):
        matmul_cuda(pack(x, 64), carried, 70, "cuda-xnor")
    with pytest.raises(ValueError, match="same number of 32-bit words"):
        matmul_cuda(pack(x, 32), prepare_cuda_operand(pack(x, 64)), 70, "cuda-xnor")


def test_packed_bnn_prepares_its_weights_once_per_device(host):
    packed = export_bnn(random_bnn(70, 2, 4))
    x = np.where(np.random.default_rng(2).random((13, 70)) < 0.5, -1.0, 1.0).astype(np.float32)
    ref_hidden, ref_out = packed.binary_layer(2, x, "cpu"), packed.output_layer(x, "cpu")
    np.testing.assert_array_equal(packed.binary_layer(2, x, "cuda-tc"), ref_hidden)
    weights = packed._cache[("cuda", 0)]["w"]
    assert all(isinstance(w, CudaOperand) for w in weights)
    before = _popcount_launches(host)
    np.testing.assert_array_equal(packed.binary_layer(2, x, "cuda-tc"), ref_hidden)
    np.testing.assert_array_equal(packed.output_layer(x, "cuda-tc"), ref_out)
    np.testing.assert_array_equal(packed.output_layer(x, "cuda-xnor"), ref_out)
    assert _popcount_launches(host) - before == 2  # the inputs' popcounts only, one per tensor-core product
    assert packed._cache[("cuda", 0)]["w"] is weights


def test_packed_bnn_on_the_wgmma_kernel_lays_its_weights_out_once(host):
    """PackedBNN's layers on cuda-wgmma (an emulated H100) equal the CPU runtime's; a layer's weights are laid
    out for the tensor cores on its first product only, the activations on every product."""
    packed = export_bnn(random_bnn(300, 3, 10, in_features=200))
    x = np.where(np.random.default_rng(4).random((37, 300)) < 0.5, -1.0, 1.0).astype(np.float32)
    ref_hidden, ref_out = packed.binary_layer(2, x, "cpu"), packed.output_layer(x, "cpu")

    def layouts() -> int:
        return sum(1 for name, *_ in host.launches if name == "b1_wgmma_layout")

    np.testing.assert_array_equal(packed.binary_layer(2, x, "cuda-wgmma"), ref_hidden)
    np.testing.assert_array_equal(packed.output_layer(x, "cuda-wgmma"), ref_out)
    assert layouts() == 4  # two weight matrices, two activations
    weights = packed._cache[("cuda", 0)]["w"]
    assert "wgmma" in weights[1].layouts and "wgmma" in weights[-1].layouts
    np.testing.assert_array_equal(packed.binary_layer(2, x, "cuda-wgmma"), ref_hidden)
    np.testing.assert_array_equal(packed.output_layer(x, "cuda-wgmma"), ref_out)
    assert layouts() == 6  # the activations only


# ---- 5c. the padding check does not sync on CuPy operands ---------------------------------------------


class _DeviceArray(np.ndarray):
    """A NumPy array that passes for a CuPy one (``is_cupy``) and fails where a host sync would happen."""

    def __bool__(self) -> bool:
        raise AssertionError("host sync: bool() of a device array")

    def __int__(self) -> int:
        raise AssertionError("host sync: int() of a device array")


_DeviceArray.__module__ = "cupy._emulated"


def test_padding_check_does_not_sync_on_cupy_operands(host):
    x = _signs(np.random.default_rng(5), (6, 100))
    pa, pb = pack(x, 64), pack(x[:4], 64)
    da, db = pa.view(_DeviceArray), pb.view(_DeviceArray)
    assert binary_gemm._check_operands(da, db, 100) == 64  # no bool()/int() of a device value
    np.testing.assert_array_equal(binary_matmul(da, db, 100, backend="cuda-xnor"), _reference(x, x[:4]))
    with pytest.raises(ValueError, match="nonzero padding bits past K=90"):  # NumPy operands: still checked
        binary_gemm._check_operands(pa, pb, 90)
    with pytest.raises(ValueError, match=r"needs ceil\(100/64\) = 2 words"):  # shapes: checked, no sync needed
        binary_gemm._check_operands(da[:, :1], db, 100)
