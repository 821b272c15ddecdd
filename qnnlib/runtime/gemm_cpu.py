"""The CPU backend of :func:`qnnlib.runtime.binary_gemm.binary_matmul`: a Numba XOR-popcount GEMM (Eq. 7).

``C[i, j] = K - 2 * sum_w popcount(a[i, w] XOR b[j, w])`` for A (M, W) and B (N, W) packed 64 values per
``uint64`` word (:mod:`qnnlib.runtime.bitpack`), computed by :func:`matmul_cpu`:

- **Operand layout** (packing, as in BLAS): A in row panels of R rows (:func:`a_panels`: word w of the
  R rows side by side, so a tile's A words share one cache line), B in column panels of 8 columns, one
  64-byte line per word (:func:`b_panels`); both zero-padded. On AVX2 CPUs without AVX-512 VPOPCNTDQ both
  are split into low and high nibbles (:func:`compiled_nibble_split`).
- **Cache blocking** (:func:`blocking`, sizes read from the machine, :func:`qnnlib.runtime.hardware.cache_sizes`):
  K in blocks whose tile operands fill half of L1d; parallel tasks (Numba ``prange``) of ``mc`` rows x
  ``nc`` panels whose B block fills half of L2, taken panel-block-major so a thread's consecutive tasks
  reuse its B block while A comes from L3; at least 4 tasks per thread, so skinny products (a small batch)
  use every core.
- **Micro-kernel** (:data:`TILES`): an R x 8P output tile held in registers, written as plain LLVM vector
  IR (so it compiles for any CPU). With AVX-512 VPOPCNTDQ: 8 rows x 16 columns, 16 zmm accumulators, per
  64-bit word of K 8 broadcasts, 2 panel loads and 16 x (``vpxorq``, ``vpopcntq``, ``vpaddq``). Without
  it: 4 rows x 8 columns in ymm registers, per-byte popcounts (the ``vpshufb`` nibble table on AVX2,
  generic bit arithmetic on SSE2) summed in byte counters widened only every 31 words.
  :func:`qnnlib.runtime.hardware.popcount_isa` says which one this CPU gets.

**The limit.** Every 512 bits of a product cost three vector operations (XOR, popcount, add) and no
reduction trick lowers that (a carry-save/Harley-Seal tree costs ~2 ternary-logic operations per input
vector, plus the XOR). Intel cores run 512-bit integer operations on two ports, so the kernel is bound
at 512/1.5 = 341 bits, i.e. 683 bit-ops (XOR + count), per cycle and core; an FP32 FMA core does at
most 64 FLOPs per cycle, so the binary product can be at most ~10.7x faster than a float GEMM at the
same efficiency (~14x against PyTorch/MKL's measured ~76% of peak). On AVX2 (no VPOPCNTDQ) the
nibble-table popcount costs 6 operations per 256 bits over three ports (Intel; four on AMD Zen 3): 256
(341) bit-ops per cycle against 32 FLOPs, ~8x (~11x). docs/decisions.md D28 has the argument;
``python -m qnnlib bench cpu`` prints the measured operations per cycle and core.

Every Numba function is compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from qnnlib.runtime.bitpack import as_u64_words
from qnnlib.runtime.hardware import CacheSizes, cache_sizes, passive_numba_threads

__all__ = ["TILES", "Blocking", "blocking", "matmul_cpu", "matmul_sign_cpu", "sign_bounds", "xor_popcount_gemm",
           "xor_popcount_sign", "bitplane_sign_gemm", "matmul_bitplanes_sign_cpu", "a_panels", "b_panels",
           "compiled_nibble_split", "compiled_tile"]

passive_numba_threads()  # before the first parallel kernel: Numba's OpenMP threads must not spin against torch's

_BYTE_CHUNK = 31  # words per byte-accumulator flush: 31 * 8 = 248 <= 255, so per-byte counts never wrap


def _popcount_mode(context) -> str:
    """How the micro-kernel counts bits on the CPU Numba compiles for (its NUMBA_CPU_NAME/_FEATURES):
    ``"vpopcntq"`` (AVX-512 VPOPCNTDQ), ``"nibbles"`` (AVX2: ``vpshufb`` on operands pre-split into
    nibbles) or ``"bytes"`` (anything else: LLVM's generic per-byte ``ctpop``)."""
    features = set((getattr(context.codegen(), "_tm_features", "") or "").split(","))
    if "+avx512vpopcntdq" in features:
        return "vpopcntq"
    return "nibbles" if "+avx2" in features else "bytes"


#: Register tile (rows of A, 8-column panels of B) of the micro-kernel, per popcount mode: with VPOPCNTDQ
#: one 512-bit register holds a panel's word (8 columns), and 8 rows x 2 panels = 16 zmm accumulators
#: (of 32); on AVX2 a panel's word is two 256-bit registers, and 4 rows x 1 panel keeps the 8 byte
#: accumulators plus operands within the 16 ymm registers.
TILES = {"vpopcntq": (8, 2), "nibbles": (4, 1), "bytes": (4, 1)}


@intrinsic
def _nibble_split(typingctx):
    """True where the compiled micro-kernel wants nibble-split operands (:func:`_popcount_mode`)."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, _popcount_mode(context) == "nibbles")

    return types.boolean(), codegen


@intrinsic
def _wide_tiles(typingctx):
    """True where the micro-kernel runs 512-bit ``vpopcntq`` tiles (:data:`TILES` ``"vpopcntq"``)."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, _popcount_mode(context) == "vpopcntq")

    return types.boolean(), codegen


@njit(cache=True)
def compiled_nibble_split() -> bool:  # pragma: no cover - compiled by Numba
    """Whether :func:`xor_popcount_gemm`, as compiled for this CPU, wants nibble-split operands
    (:func:`a_rows`, :func:`b_panels` with ``split=True``): True on AVX2 CPUs without AVX-512 VPOPCNTDQ."""
    return _nibble_split()


@njit(cache=True)
def compiled_tile() -> tuple[int, int]:  # pragma: no cover - compiled by Numba
    """The register tile (rows, 8-column panels) :func:`xor_popcount_gemm` uses as compiled for this CPU."""
    if _wide_tiles():
        return 8, 2
    return 4, 1


def _make_tile_kernel(rows: int, panels: int, sign: bool = False, planes: bool = False):
    """The register-tiled micro-kernel for ``rows`` (R) rows of A x ``panels`` (P) panels of 8 columns of B;
    ``sign``: with the folded BN + sign epilogue, storing one byte of packed ±1 bits per row and panel;
    ``planes`` (with ``sign``, R = 8): the R rows are the 8 bit-planes of one input (Eq. 6), combined
    before the comparison into one byte per panel."""

    @intrinsic
    def tile(typingctx, a, bp, i0, panel, k, out, oi, oj, w0, w1, first, lo, hi, s):
        """out[oi:oi+R, oj:oj+8P] (+)= popcount products of A's row panel i0 with B's panels panel..panel+P-1.

        ``a`` is A in row panels, (M'/R, W, R) uint64 (word w of rows R*i0..R*i0+R-1 side by side,
        :func:`a_panels`); ``bp`` is B in column panels, (N'/8, W, 8) uint64 (columns 8p..8p+7 of B^T, one
        contiguous 64-byte line per word, :func:`b_panels`); only words ``w0 <= w < w1`` are counted;
        ``out`` is int32 (the result or an edge buffer). With ``first`` the tile is stored as ``k - 2 * popcount``
        (Eq. 7) without reading ``out``, else ``2 * popcount`` is subtracted from what is there (the next K
        block of the same tile). ``lo``, ``hi`` and ``s`` are not read.

        ``sign`` kernels (Alg. 4's ``sign(BN(.))`` folded into thresholds) take the whole K at once
        (``first``), and store, for row r and panel p, the byte ``out[oi + r, oj + p]`` whose bit c is 1 (+1)
        iff ``lo[j] <= k - 2 * popcount <= hi[j]`` for column j = 8 (panel + p) + c: ``out`` is uint8, the
        packed activations viewed as bytes (column j is bit j % 8 of byte j // 8, the ``bitpack`` layout).
        ``planes`` kernels read the tile's 8 rows as the bit-planes n = 0..7 of one input, ``M_n = k - 2 *
        popcount``, and compare Eq. 6's ``D = (sum_n 2^n M_n + 255 s[j]) / 2`` instead (``s``: the row sums
        of W_b, int32), storing the byte ``out[oi, oj + p]``.

        Plain, target-independent LLVM vector IR, so it compiles for any CPU and LLVM picks the popcount
        instruction: for every word w, ``acc[r, q] += ctpop(splat(a[i0+r, w]) ^ B's vector q of word w)``
        on R rows x P panels held in registers. With AVX-512 VPOPCNTDQ (decided by the CPU Numba compiles
        for) a panel's word is one ``<8 x i64>`` and the popcount is ``vpopcntq`` into 64-bit lanes.
        Without it a panel's word is two ``<4 x i64>`` and the popcounts are per byte
        (``llvm.ctpop.v32i8``: the ``vpshufb`` nibble table on AVX2, bit arithmetic on plain SSE2) into
        byte accumulators, widened to 64-bit lanes only every 31 words (31 * 8 = 248 <= 255).
        """
        u64_3d = types.Array(types.uint64, 3, "C")
        out_type = types.Array(types.uint8 if sign else types.int32, 2, "C")
        if a != u64_3d or bp != u64_3d or out != out_type:
            return None
        if sign and (lo != types.Array(types.int32, 1, "C") or hi != lo or s != lo):
            return None
        if not all(isinstance(t, types.Integer) for t in (i0, panel, k, oi, oj, w0, w1)):
            return None
        if not isinstance(first, types.Boolean):
            return None

        def codegen(context, builder, signature, args):
            from llvmlite import ir  # noqa: PLC0415
            from numba.core import cgutils  # noqa: PLC0415

            mode = _popcount_mode(context)
            wide, nib = mode == "vpopcntq", mode == "nibbles"
            lanes = 8 if wide else 4  # 64-bit lanes per vector
            per_panel = 1 if wide else 2  # vectors per panel word (8 columns)
            vecs = panels * per_panel
            i64, i8, i32 = ir.IntType(64), ir.IntType(8), ir.IntType(32)
            vec, vi32 = ir.VectorType(i64, lanes), ir.VectorType(i32, lanes)
            v32 = ir.VectorType(i8, 32)  # bytes of a <4 x i64>
            ar_a = context.make_array(signature.args[0])(context, builder, args[0])
            ar_b = context.make_array(signature.args[1])(context, builder, args[1])
            ar_o = context.make_array(signature.args[5])(context, builder, args[5])
            ii0, pp, kk, ooi, ooj, ww0, ww1 = (
                context.cast(builder, args[n], signature.args[n], types.int64) for n in (2, 3, 4, 6, 7, 8, 9)
            )
            is_first = args[10]
            a_shape = cgutils.unpack_tuple(builder, ar_a.shape)
            w = cgutils.unpack_tuple(builder, ar_b.shape)[1]  # words per row (split: lo, hi nibble words)
            ldo = cgutils.unpack_tuple(builder, ar_o.shape)[1]
            if nib:  # the only target-specific instructions, emitted only when compiling for an AVX2 CPU
                pshufb = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(v32, [v32, v32]), "llvm.x86.avx2.pshuf.b"
                )
                psadbw = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vec, [v32, v32]), "llvm.x86.avx2.psad.bw"
                )
            lut = ir.Constant(v32, [bin(x).count("1") for x in range(16)] * 2)
            pop_t = vec if wide else v32
            ctpop = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(pop_t, [pop_t]),
                f"llvm.ctpop.v{lanes}i64" if wide else "llvm.ctpop.v32i8"
            )

            def const(x):
                return ir.Constant(i64, x)

            def cvec(x):
                return ir.Constant(vec, [x] * lanes)

            def splat(x, t=vec, n=lanes):
                v = builder.insert_element(ir.Constant(t, ir.Undefined), x, ir.Constant(i32, 0))
                return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, n), [0] * n))

            acc64 = [[cgutils.alloca_once_value(builder, cvec(0)) for _ in range(vecs)] for _ in range(rows)]
            a_group = builder.gep(ar_a.data, [builder.mul(ii0, builder.mul(a_shape[1], a_shape[2]))])
            ra = a_shape[2]  # rows per A panel (the compiled R; checked by the caller)
            pw = 16 if nib else 8  # panel width in words: 8 columns (split: 8 low-nibble, 8 high-nibble words)
            b_panel = [builder.gep(ar_b.data, [builder.mul(builder.add(pp, const(p)), builder.mul(w, const(pw)))])
                       for p in range(panels)]

            def load_b(word, p, c):  # vector c of panel p's word (nibble split: c < 2 low, c >= 2 high)
                b_word = builder.gep(b_panel[p], [builder.mul(word, const(pw))])
                return builder.load(builder.bitcast(builder.gep(b_word, [const(lanes * c)]), vec.as_pointer()), align=8)

            def accumulate_nibbles(word, accs):  # acc += lut[a_lo ^ b_lo] + lut[a_hi ^ b_hi], bytewise
                bv = [[load_b(word, p, c) for c in range(2 * per_panel)] for p in range(panels)]
                lo_word = builder.gep(a_group, [builder.mul(builder.mul(word, const(2)), ra)])
                hi_word = builder.gep(lo_word, [ra])
                for r in range(rows):
                    x_lo = splat(builder.load(builder.gep(lo_word, [const(r)])))
                    x_hi = splat(builder.load(builder.gep(hi_word, [const(r)])))
                    for p in range(panels):
                        for c in range(per_panel):
                            lo = builder.call(pshufb, [lut, builder.bitcast(builder.xor(x_lo, bv[p][c]), v32)])
                            x = builder.xor(x_hi, bv[p][per_panel + c])
                            hi = builder.call(pshufb, [lut, builder.bitcast(x, v32)])
                            q = p * per_panel + c
                            builder.store(builder.add(builder.add(builder.load(accs[r][q]), lo), hi), accs[r][q])

            def accumulate(word, accs):
                if nib:
                    return accumulate_nibbles(word, accs)
                bv = [[load_b(word, p, c) for c in range(per_panel)] for p in range(panels)]
                a_word = builder.gep(a_group, [builder.mul(word, ra)])
                for r in range(rows):
                    x = splat(builder.load(builder.gep(a_word, [const(r)])))
                    for p in range(panels):
                        for c in range(per_panel):
                            q = p * per_panel + c
                            cnt = builder.call(ctpop, [builder.bitcast(builder.xor(x, bv[p][c]), pop_t)])
                            builder.store(builder.add(builder.load(accs[r][q]), cnt), accs[r][q])

            if wide:
                with cgutils.for_range(builder, builder.sub(ww1, ww0)) as loop:
                    accumulate(builder.add(ww0, loop.index), acc64)
            else:
                accb = [[cgutils.alloca_once(builder, v32) for _ in range(vecs)] for _ in range(rows)]
                chunk = const(_BYTE_CHUNK)
                span = builder.sub(ww1, ww0)
                n_chunks = builder.sdiv(builder.add(span, const(_BYTE_CHUNK - 1)), chunk)
                with cgutils.for_range(builder, n_chunks) as outer:
                    start = builder.add(ww0, builder.mul(outer.index, chunk))
                    left = builder.sub(ww1, start)
                    count = builder.select(builder.icmp_signed("<", left, chunk), left, chunk)
                    for row in accb:
                        for ptr in row:
                            builder.store(ir.Constant(v32, [0] * 32), ptr)
                    with cgutils.for_range(builder, count) as inner:
                        accumulate(builder.add(start, inner.index), accb)
                    for r in range(rows):  # widen: each 64-bit lane gets the sum of its 8 byte counts
                        for q in range(vecs):
                            if nib:  # vpsadbw against zero: the byte sum of each 64-bit lane
                                t = builder.call(psadbw, [builder.load(accb[r][q]), ir.Constant(v32, [0] * 32)])
                                builder.store(builder.add(builder.load(acc64[r][q]), t), acc64[r][q])
                                continue
                            t = builder.bitcast(builder.load(accb[r][q]), vec)
                            for shift, mask in ((8, 0x00FF00FF00FF00FF), (16, 0x0000FFFF0000FFFF), (32, 0xFFFFFFFF)):
                                high = builder.and_(builder.lshr(t, cvec(shift)), cvec(mask))
                                t = builder.add(builder.and_(t, cvec(mask)), high)
                            builder.store(builder.add(builder.load(acc64[r][q]), t), acc64[r][q])

            kv = splat(builder.trunc(kk, i32), vi32)
            two = ir.Constant(vi32, [1] * lanes)
            if sign:
                ar_lo = context.make_array(signature.args[11])(context, builder, args[11])
                ar_hi = context.make_array(signature.args[12])(context, builder, args[12])
                ar_s = context.make_array(signature.args[13])(context, builder, args[13])
                for p in range(panels):
                    col = builder.mul(builder.add(pp, const(p)), const(8))
                    bounds = [[builder.load(builder.bitcast(builder.gep(ar.data, [builder.add(col, const(lanes * c))]),
                                                            vi32.as_pointer()), align=4)
                               for c in range(per_panel)] for ar in (ar_lo, ar_hi)]
                    if planes:
                        s_ptrs = [builder.gep(ar_s.data, [builder.add(col, const(lanes * c))]) for c in range(per_panel)]
                        sums = [builder.load(builder.bitcast(ptr, vi32.as_pointer()), align=4) for ptr in s_ptrs]
                    for r in range(1 if planes else rows):
                        fires = []
                        for c in range(per_panel):
                            if planes:  # Eq. 6: D = (sum_n 2^n M_n + 255 S) / 2, exact (every M_n + S is even)
                                d = builder.mul(sums[c], ir.Constant(vi32, [255] * lanes))
                                for n in range(rows):
                                    m_n = builder.sub(kv, builder.shl(builder.trunc(
                                        builder.load(acc64[n][p * per_panel + c]), vi32), two))
                                    d = builder.add(d, builder.shl(m_n, ir.Constant(vi32, [n] * lanes)))
                                d = builder.ashr(d, two)
                            else:
                                d = builder.sub(kv, builder.shl(builder.trunc(
                                    builder.load(acc64[r][p * per_panel + c]), vi32), two))
                            fires.append(builder.and_(builder.icmp_signed(">=", d, bounds[0][c]),
                                                      builder.icmp_signed("<=", d, bounds[1][c])))
                        if per_panel == 2:  # two <4 x i1> -> one <8 x i1>
                            mask = builder.shuffle_vector(fires[0], fires[1], ir.Constant(ir.VectorType(i32, 8),
                                                                                          list(range(8))))
                        else:
                            mask = fires[0]
                        byte = builder.bitcast(mask, i8)
                        dst = builder.gep(ar_o.data, [builder.add(builder.mul(builder.add(ooi, const(r)), ldo),
                                                                  builder.add(ooj, const(p)))])
                        builder.store(byte, dst)
                return context.get_dummy_value()
            for r in range(rows):
                o_row = builder.gep(ar_o.data, [builder.add(builder.mul(builder.add(ooi, const(r)), ldo), ooj)])
                for q in range(vecs):
                    ptr = builder.bitcast(builder.gep(o_row, [const(lanes * q)]), vi32.as_pointer())
                    twice = builder.shl(builder.trunc(builder.load(acc64[r][q]), vi32), two)
                    with builder.if_else(is_first) as (then, otherwise):
                        with then:  # the first K block: write without reading the line first
                            builder.store(builder.sub(kv, twice), ptr, align=4)
                        with otherwise:
                            builder.store(builder.sub(builder.load(ptr, align=4), twice), ptr, align=4)
            return context.get_dummy_value()

        return types.none(a, bp, i0, panel, k, out, oi, oj, w0, w1, first, lo, hi, s), codegen

    return tile


_tile_8x2 = _make_tile_kernel(8, 2)  # VPOPCNTDQ: 8 rows x 16 columns
_tile_8x1 = _make_tile_kernel(8, 1)  # ... a task's last odd panel
_tile_4x1 = _make_tile_kernel(4, 1)  # AVX2 / SSE2: 4 rows x 8 columns
_sign_8x2 = _make_tile_kernel(8, 2, sign=True)  # the same tiles with the folded BN + sign epilogue
_sign_8x1 = _make_tile_kernel(8, 1, sign=True)
_sign_4x1 = _make_tile_kernel(4, 1, sign=True)
_planes_8x2 = _make_tile_kernel(8, 2, sign=True, planes=True)  # Eq. 6: the 8 rows are one input's bit-planes
_planes_8x1 = _make_tile_kernel(8, 1, sign=True, planes=True)
_NO_BOUNDS = np.zeros(0, dtype=np.int32)


@njit(cache=True, nogil=True)
def _layout_ok(a, bp, tile_rows):  # pragma: no cover - compiled by Numba
    """A in row panels of the compiled R and B in panels, both split into nibbles exactly when the kernel is."""
    split = _nibble_split()
    return bp.shape[2] == (16 if split else 8) and a.shape[2] == tile_rows and a.shape[1] == bp.shape[1] * (
        2 if split else 1)


@njit(cache=True, nogil=True)
def _tile(a, bp, g, p, k, dst, oi, oj, w0, w1, first, panels):  # pragma: no cover - compiled by Numba
    """One micro-kernel call: row panel ``g`` of A x ``panels`` (1 or the tile's P) panels of B."""
    nb = _NO_BOUNDS
    if a.shape[2] == 8:
        if panels == 2:
            _tile_8x2(a, bp, g, p, k, dst, oi, oj, w0, w1, first, nb, nb, nb)
        else:
            _tile_8x1(a, bp, g, p, k, dst, oi, oj, w0, w1, first, nb, nb, nb)
    else:
        _tile_4x1(a, bp, g, p, k, dst, oi, oj, w0, w1, first, nb, nb, nb)


@njit(cache=True, nogil=True)
def _sign_tile(a, bp, g, p, k, dst, oi, ob, lo, hi, panels):  # pragma: no cover - compiled by Numba
    """One micro-kernel call with the sign epilogue (whole K): row panel ``g`` x ``panels`` panels of B."""
    w = bp.shape[1]
    if a.shape[2] == 8:
        if panels == 2:
            _sign_8x2(a, bp, g, p, k, dst, oi, ob, 0, w, True, lo, hi, lo)
        else:
            _sign_8x1(a, bp, g, p, k, dst, oi, ob, 0, w, True, lo, hi, lo)
    else:
        _sign_4x1(a, bp, g, p, k, dst, oi, ob, 0, w, True, lo, hi, lo)


@njit(cache=True, nogil=True)
def _sign_task(a, bp, k, bits, lo, hi, i0, i_end, p0, p_end):  # pragma: no cover - compiled by Numba
    """One task of :func:`xor_popcount_sign`: bytes bits[i0:i_end, p0:p_end] (panel p = byte p of a row).

    Row panels of R rows, then groups of P panels, the whole K per tile (no K blocks: the epilogue needs
    the finished sum). The last M % R rows are computed whole into an edge buffer and copied."""
    tile_rows, tile_panels = a.shape[2], (2 if a.shape[2] == 8 else 1)
    edge = np.empty((tile_rows, p_end - p0), dtype=np.uint8)
    full_rows = i0 + (i_end - i0) // tile_rows * tile_rows
    for i in range(i0, i_end, tile_rows):
        g = i // tile_rows
        for p in range(p0, p_end, tile_panels):
            panels = tile_panels if p + tile_panels <= p_end else 1
            for q in range(p, min(p + tile_panels, p_end), panels):
                if i < full_rows:
                    _sign_tile(a, bp, g, q, k, bits, i, q, lo, hi, panels)
                else:
                    _sign_tile(a, bp, g, q, k, edge, 0, q - p0, lo, hi, panels)
    for r in range(full_rows, i_end):
        for c in range(p_end - p0):
            bits[r, p0 + c] = edge[r - full_rows, c]


@njit(parallel=True, cache=True, nogil=True)
def xor_popcount_sign(a: np.ndarray, bp: np.ndarray, k: int, bits: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                      row_block: int, panel_block: int) -> None:  # pragma: no cover - compiled by Numba
    """Packed ±1 bits of ``lo[j] <= (k - 2 sum_w popcount(a[i, w] ^ b[j, w])) <= hi[j]`` (Eq. 7, then Alg. 4's
    folded BN + sign) for A and B in panels as in :func:`xor_popcount_gemm`, without an int32 product.

    ``bits`` is uint8 (M, bytes) with bytes >= N'/8 (the packed uint64 output viewed as bytes; bytes past
    N'/8 are left as they are); ``lo`` and ``hi`` are int32 (N',), with ``lo > hi`` for padding columns
    so that their bits are 0. Tasks as in :func:`xor_popcount_gemm`, without K blocks.
    """
    m = bits.shape[0]
    tile_rows, _ = compiled_tile()
    if not _layout_ok(a, bp, tile_rows):
        raise ValueError("operand layout does not match the compiled micro-kernel (see a_panels, b_panels)")
    n_panels = bp.shape[0]
    if a.shape[0] * tile_rows < m or bits.shape[1] < n_panels or min(lo.shape[0], hi.shape[0]) < 8 * n_panels:
        raise ValueError("bits, lo or hi are smaller than the operands (see matmul_sign_cpu)")
    row_block = max(1, row_block // tile_rows) * tile_rows
    panel_block = max(1, panel_block)
    n_row_blocks = (m + row_block - 1) // row_block
    n_panel_blocks = (n_panels + panel_block - 1) // panel_block
    for task in prange(n_row_blocks * n_panel_blocks):
        p0 = (task // n_row_blocks) * panel_block
        i0 = (task % n_row_blocks) * row_block
        _sign_task(a, bp, k, bits, lo, hi, i0, min(m, i0 + row_block), p0, min(n_panels, p0 + panel_block))


@njit(cache=True, nogil=True)
def _gemm_task(a, bp, k, out, i0, i_end, p0, p_end, w_block):  # pragma: no cover - compiled by Numba
    """One task of :func:`xor_popcount_gemm`: out[i0:i_end, 8 p0:8 p_end] (clipped to N); ``i0`` is a
    multiple of the tile's R.

    K blocks of ``w_block`` words (outermost, so the task's A and B blocks of one K block stay in
    cache), then row panels of R rows, then groups of P column panels: one micro-kernel call per R x 8P
    tile. Tiles that stick out of ``out`` -- the last M % R rows, the last N % 8 columns -- are computed
    whole into edge buffers (A and B are zero-padded) and copied into ``out`` at the end. A function of
    its own (not the body of the ``prange`` loop) keeps Numba's parfor compilation fast."""
    n, w = out.shape[1], bp.shape[1]
    tile_rows, tile_panels = a.shape[2], (2 if a.shape[2] == 8 else 1)
    full_panels = min(p_end, n // 8)  # panels p0..full_panels-1 are whole; past it: N % 8 columns
    full_rows = i0 + (i_end - i0) // tile_rows * tile_rows  # rows i0..full_rows-1 are whole row panels
    edge_rows = np.empty((tile_rows, 8 * max(0, full_panels - p0)), dtype=np.int32)  # last partial row panel
    edge_cols = np.empty((full_rows - i0 + tile_rows, 8), dtype=np.int32)  # the partial column panel
    for w0 in range(0, w, w_block):
        w1 = min(w, w0 + w_block)
        first = w0 == 0
        for i in range(i0, i_end, tile_rows):
            g = i // tile_rows
            whole = i < full_rows
            for p in range(p0, full_panels, tile_panels):
                panels = tile_panels if p + tile_panels <= full_panels else 1
                for q in range(p, min(p + tile_panels, full_panels), panels):
                    if whole:
                        _tile(a, bp, g, q, k, out, i, 8 * q, w0, w1, first, panels)
                    else:
                        _tile(a, bp, g, q, k, edge_rows, 0, 8 * (q - p0), w0, w1, first, panels)
            if p_end > full_panels:
                _tile(a, bp, g, full_panels, k, edge_cols, i - i0, 0, w0, w1, first, 1)
    for r in range(full_rows, i_end):
        for c in range(8 * (full_panels - p0)):
            out[r, 8 * p0 + c] = edge_rows[r - full_rows, c]
    if p_end > full_panels:
        for r in range(i0, i_end):
            for c in range(n - 8 * full_panels):
                out[r, 8 * full_panels + c] = edge_cols[r - i0, c]


@njit(parallel=True, cache=True, nogil=True)
def xor_popcount_gemm(a: np.ndarray, bp: np.ndarray, k: int, out: np.ndarray, row_block: int,
                      panel_block: int, word_block: int) -> None:  # pragma: no cover - compiled by Numba
    """out[i, j] = k - 2 * sum_w popcount(a[i, w] ^ b[j, w]) (Eq. 7) for A in row panels ap (M'/R, W, R)
    (:func:`a_panels`) and B in column panels bp (N'/8, W, 8) (:func:`b_panels`), both uint64 and
    zero-padded (M <= M', N <= N'); out is int32 (M, N). Where the kernel is compiled for AVX2 (without
    VPOPCNTDQ) both operands come nibble-split instead (``split=True``: (M'/R, 2W, R) and (N'/8, W, 16)).

    Parallel tasks are (``row_block`` rows, ``panel_block`` panels) blocks of ``out``, taken
    panel-block-major, so skinny products (few rows, e.g. a small batch) still use every core; within a
    task K runs in blocks of ``word_block`` words and each R x 8P tile is one call of the register-tiled
    micro-kernel (:func:`blocking` sizes the three blocks from the machine's caches).
    """
    m, n = out.shape
    tile_rows, _ = compiled_tile()
    if not _layout_ok(a, bp, tile_rows):
        raise ValueError("operand layout does not match the compiled micro-kernel (see a_panels, b_panels)")
    if a.shape[0] * tile_rows < m or 8 * bp.shape[0] < n:
        raise ValueError("operands have fewer rows or columns than out (see a_panels, b_panels)")
    n_panels = min(bp.shape[0], (n + 7) // 8)
    row_block = max(1, row_block // tile_rows) * tile_rows
    panel_block = max(1, panel_block)
    word_block = max(1, word_block)
    n_row_blocks = (m + row_block - 1) // row_block
    n_panel_blocks = (n_panels + panel_block - 1) // panel_block
    for task in prange(n_row_blocks * n_panel_blocks):
        p0 = (task // n_row_blocks) * panel_block  # panel-block-major: a thread's next task reuses its B block
        i0 = (task % n_row_blocks) * row_block
        _gemm_task(a, bp, k, out, i0, min(m, i0 + row_block), p0, min(n_panels, p0 + panel_block), word_block)


_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)


def _split_nibbles(x: np.ndarray, axis: int) -> np.ndarray:
    """Words -> (low nibbles, high nibbles >> 4) stacked along ``axis``: popcount(a ^ b) is then the
    sum of two 16-entry table look-ups per byte, lut[a_lo ^ b_lo] + lut[a_hi ^ b_hi] (``vpshufb``)."""
    return np.stack([x & _NIBBLES, (x >> np.uint64(4)) & _NIBBLES], axis=axis)


@njit(cache=True, nogil=True)
def _repack(x, panels, width, split, word_pairs):  # pragma: no cover - compiled by Numba
    """x (R, W) uint64 -> panels of ``width`` rows, word by word, zero past R, split into nibbles or not.

    Not split: out[p, w, c] = x[width p + c, w]. Split, B layout (``word_pairs`` False): out[p, w, c] and
    out[p, w, width + c] are the low and high nibbles; A layout (``word_pairs`` True): out[p, 2w, c] and
    out[p, 2w + 1, c]. Serial: a few ms even for a 4096 x 4096 operand, and waking the thread pool costs
    more on small operands."""
    r, w = x.shape
    nib = np.uint64(0x0F0F0F0F0F0F0F0F)
    if not split:
        out = np.empty((panels, w, width), dtype=np.uint64)
    elif word_pairs:
        out = np.empty((panels, 2 * w, width), dtype=np.uint64)
    else:
        out = np.empty((panels, w, 2 * width), dtype=np.uint64)
    for p in range(panels):
        for c in range(width):
            row = width * p + c
            for word in range(w):
                v = x[row, word] if row < r else np.uint64(0)
                if not split:
                    out[p, word, c] = v
                elif word_pairs:
                    out[p, 2 * word, c] = v & nib
                    out[p, 2 * word + 1, c] = (v >> np.uint64(4)) & nib
                else:
                    out[p, word, c] = v & nib
                    out[p, word, width + c] = (v >> np.uint64(4)) & nib
    return out


def a_panels(a: np.ndarray, split: bool = False, rows: int | None = None) -> np.ndarray:
    """(M, W) words -> (M'/R, W, R) uint64 row panels: panel g, word w holds word w of rows gR..gR+R-1
    side by side (zero rows past M), so the micro-kernel reads a tile's R words from one cache line
    (``split``: (M'/R, 2W, R), word w as its low-nibble then high-nibble word). ``rows`` is R, by default
    the compiled tile's (:func:`compiled_tile`)."""
    a64 = as_u64_words(a)
    rows = compiled_tile()[0] if rows is None else rows
    return _repack(a64, (a64.shape[0] + rows - 1) // rows, rows, split, True)


def b_panels(b: np.ndarray, split: bool = False) -> np.ndarray:
    """(N, W) words -> (N'/8, W, 8) uint64 column panels: panel p, word w holds columns 8p..8p+7,
    zero past N (``split``: (N'/8, W, 16), the 8 columns' low-nibble words, then their high-nibble words)."""
    b64 = as_u64_words(b)
    return _repack(b64, (b64.shape[0] + 7) // 8, 8, split, False)


@dataclass(frozen=True)
class Blocking:
    """The three cache blocks of :func:`xor_popcount_gemm` for one product, and why (see :func:`blocking`)."""

    row_block: int  #: rows of A per parallel task (mc)
    panel_block: int  #: 8-column panels of B per parallel task (nc / 8)
    word_block: int  #: 64-bit words of K per block (kc / 64)
    tile: tuple[int, int]  #: the micro-kernel's register tile (rows, panels)
    tasks: int  #: parallel tasks


def blocking(m: int, n: int, words: int, split: bool, tile: tuple[int, int], threads: int,
             caches: CacheSizes) -> Blocking:
    """Cache blocks for an (M, N, K = 64 * words) product, sized from the machine's caches, not constants.

    - **K block** ``kc``: the micro-kernel's operands over one K block -- R rows of A and P panels of B
      (8 columns each, 64 bytes per word; nibble-split operands twice that) -- fill at most half of L1d,
      so they stay there while the tile's words stream through the registers. A remainder smaller than
      half a block is merged into the last block.
    - **Panel block** ``nc``: a task's B block (``nc`` panels x ``kc`` words) fills at most half of L2; the
      task's R-row groups of A sweep it from L2, each group from L1.
    - **Row block** ``mc``: up to 256 rows (the output block a task writes), then ``nc`` and ``mc`` shrink
      until there are at least 4 tasks per thread, so skinny products (a small batch) use every core.
      Tasks run panel-block-major, so a thread's consecutive tasks reuse one B block in its L2 while A
      (shared by all threads) comes from L3.
    """
    rows, panels = tile
    scale = 2 if split else 1
    per_word = scale * (8 * rows + 64 * panels)  # bytes of one K word of the tile's A rows and B panels
    kc = max(16, caches.l1d // 2 // per_word)
    if words <= kc + kc // 2:
        kc = words
    else:
        n_k = -(-words // kc)
        kc = -(-words // n_k)  # equal blocks, no small remainder
    n_panels = -(-n // 8)
    nc = max(panels, caches.l2 // 2 // (64 * scale * max(kc, 1)) // panels * panels)
    nc = min(nc, -(-n_panels // panels) * panels)
    mc = min(256, -(-m // rows) * rows)
    want = 4 * max(1, threads)

    def tasks() -> int:
        return -(-m // mc) * -(-n_panels // nc)

    while tasks() < want and nc > panels:
        nc = max(panels, (nc // 2) // panels * panels)
    while tasks() < want and mc > rows:
        mc = max(rows, (mc // 2) // rows * rows)
    return Blocking(mc, nc, kc, tile, tasks())


@njit(cache=True, nogil=True)
def _planes_task(a, bp, k, bits, lo, hi, s, i0, i_end, p0, p_end):  # pragma: no cover - compiled by Numba
    """One task of :func:`bitplane_sign_gemm`: bytes bits[i0:i_end, p0:p_end] (one input per row panel)."""
    w = bp.shape[1]
    for i in range(i0, i_end):
        for p in range(p0, p_end, 2):
            if p + 2 <= p_end:
                _planes_8x2(a, bp, i, p, k, bits, i, p, 0, w, True, lo, hi, s)
            else:
                _planes_8x1(a, bp, i, p, k, bits, i, p, 0, w, True, lo, hi, s)


@njit(parallel=True, cache=True, nogil=True)
def bitplane_sign_gemm(planes: np.ndarray, bp: np.ndarray, k: int, bits: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                       s: np.ndarray, row_block: int, panel_block: int) -> None:  # pragma: no cover - Numba
    """Eq. 6 and Alg. 4's first ``sign(BN(.))`` in one pass, on CPUs with AVX-512 VPOPCNTDQ (8-row tiles).

    ``planes`` is (N, W, 8) uint64: for input i, word w of its 8 bit-planes q_0..q_7 side by side (the
    :func:`a_panels` layout with one input per row panel, :func:`qnnlib.runtime.bitplanes.pack_bitplane_panels`);
    ``bp`` the weights in column panels (:func:`b_panels`); each tile computes ``M_n = k - 2 popcount(q_n XOR
    w_j)`` for the 8 planes, ``D = (sum_n 2^n M_n + 255 s[j]) / 2`` and stores the bit ``lo[j] <= D <= hi[j]``:
    ``bits`` is uint8 (N, bytes >= N'/8), the packed output viewed as bytes. No plane product or D is
    written to memory."""
    if not _wide_tiles():
        raise ValueError("bitplane_sign_gemm needs the 8-row VPOPCNTDQ tiles (compiled_tile() == (8, 2))")
    m = bits.shape[0]
    n_panels = bp.shape[0]
    if planes.shape[2] != 8 or planes.shape[1] != bp.shape[1] or bp.shape[2] != 8 or planes.shape[0] < m:
        raise ValueError("operand layout does not match the compiled micro-kernel (see pack_bitplane_panels, b_panels)")
    if bits.shape[1] < n_panels or min(lo.shape[0], hi.shape[0], s.shape[0]) < 8 * n_panels:
        raise ValueError("bits, lo, hi or s are smaller than the operands (see matmul_bitplanes_sign_cpu)")
    row_block = max(1, row_block)
    panel_block = max(2, panel_block // 2 * 2)
    n_row_blocks = (m + row_block - 1) // row_block
    n_panel_blocks = (n_panels + panel_block - 1) // panel_block
    for task in prange(n_row_blocks * n_panel_blocks):
        p0 = (task // n_row_blocks) * panel_block
        i0 = (task % n_row_blocks) * row_block
        _planes_task(planes, bp, k, bits, lo, hi, s, i0, min(m, i0 + row_block), p0, min(n_panels, p0 + panel_block))


def matmul_bitplanes_sign_cpu(planes: np.ndarray, b: np.ndarray, k: int, row_sum: np.ndarray, t: np.ndarray,
                              f: np.ndarray) -> np.ndarray:
    """Packed ±1 first-layer activations ``+1 iff f[j]·D[i, j] >= t[j]`` with Eq. 6's ``D = W_b·p`` from
    bit-plane panels (N, W, 8) uint64 and the packed ±1 weights ``b`` (H, W), uint64 (N, ceil(H/64)); one
    pass of :func:`bitplane_sign_gemm` (needs AVX-512 VPOPCNTDQ: check ``compiled_tile() == (8, 2)``)."""
    h = b.shape[0]
    out = (np.zeros if h % 64 else np.empty)((planes.shape[0], -(-h // 64)), dtype=np.uint64)
    if out.size == 0:
        return out
    bp = b_panels(b)
    lo, hi = sign_bounds(t, f, 8 * bp.shape[0])
    sums = np.zeros(8 * bp.shape[0], dtype=np.int32)
    sums[:h] = row_sum
    blocks = blocking(8 * planes.shape[0], h, bp.shape[1], False, (8, 2), numba.get_num_threads(), cache_sizes())
    bitplane_sign_gemm(planes, bp, np.int64(k), out.view(np.uint8), lo, hi, sums,
                       np.int64(max(1, blocks.row_block // 8)), np.int64(blocks.panel_block))
    return out


def sign_bounds(t: np.ndarray, f: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Folded thresholds ``f·d >= t`` as int32 bounds ``lo <= d <= hi`` (:mod:`qnnlib.runtime.folding`):
    ``f = +1``: ``d >= t``; ``f = -1``: ``d <= -t``; padded to ``columns`` with bounds no ``d`` meets."""
    t64, f64 = np.asarray(t, dtype=np.int64), np.asarray(f, dtype=np.int64)
    if t64.shape != f64.shape or t64.ndim != 1 or not np.isin(f64, (-1, 1)).all():
        raise ValueError(f"t and f must be 1-D of the same length with f in {{-1, +1}}, got {t64.shape}, {f64.shape}")
    big, small = np.iinfo(np.int32).max, np.iinfo(np.int32).min
    lo = np.full(columns, big, dtype=np.int32)
    hi = np.full(columns, small, dtype=np.int32)
    lo[: len(t64)] = np.where(f64 > 0, np.clip(t64, small, big), small)
    hi[: len(t64)] = np.where(f64 > 0, big, np.clip(-t64, small, big))
    return lo, hi


def matmul_sign_cpu(a: np.ndarray, b: np.ndarray, k: int, t: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Packed ±1 activations ``+1 iff f[j]·(K - 2 popcount(a[i] XOR b[j])) >= t[j]`` (Eq. 7, then Alg. 4's
    ``sign(BN(.))`` folded into thresholds), uint64 (M, ceil(N/64)) in the ``bitpack`` layout, from checked
    operands, without an int32 product in memory: the micro-kernel compares its finished tile with the
    thresholds and stores one byte of bits per row and 8 columns."""
    n = b.shape[0]
    words = -(-n // 64)
    out = (np.zeros if n % 64 else np.empty)((a.shape[0], words), dtype=np.uint64)
    if out.size == 0 or n == 0:
        return out
    split = bool(compiled_nibble_split())
    ap, bp = a_panels(a, split), b_panels(b, split)
    lo, hi = sign_bounds(t, f, 8 * bp.shape[0])
    blocks = blocking(a.shape[0], n, bp.shape[1], split, compiled_tile(), numba.get_num_threads(), cache_sizes())
    xor_popcount_sign(ap, bp, np.int64(k), out.view(np.uint8), lo, hi, np.int64(blocks.row_block),
                      np.int64(blocks.panel_block))
    return out


def matmul_cpu(a: np.ndarray, b: np.ndarray, k: int, out: np.ndarray | None = None) -> np.ndarray:
    """``K - 2 * popcount(a XOR b)`` for every row pair (Eq. 7): int32 (M, N) from checked operands.

    ``a`` (M, W) and ``b`` (N, W) are packed along the same K with the same word size (uint32 or uint64,
    zero padding bits), as :func:`qnnlib.runtime.binary_gemm.binary_matmul` checks before calling this;
    ``out``, if given, is a C-contiguous int32 (M, N) array to write into (checked there too).
    """
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32) if out is None else out
    if out.size:
        split = bool(compiled_nibble_split())
        ap, bp = a_panels(a, split), b_panels(b, split)
        blocks = blocking(out.shape[0], out.shape[1], bp.shape[1], split, compiled_tile(), numba.get_num_threads(),
                          cache_sizes())
        xor_popcount_gemm(ap, bp, np.int64(k), out, np.int64(blocks.row_block), np.int64(blocks.panel_block),
                          np.int64(blocks.word_block))
    return out
