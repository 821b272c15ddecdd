"""The CPU backend of :func:`qnnlib.runtime.binary_gemm.binary_matmul`: a Numba XOR-popcount GEMM (Eq. 7).

``C[i, j] = K - 2 * sum_w popcount(a[i, w] XOR b[j, w])`` for A (M, W) and B (N, W) packed 64 values per
``uint64`` word (:mod:`qnnlib.runtime.bitpack`), computed by :func:`matmul_cpu`:

- **Dispatch** (:func:`xor_popcount_gemm`): parallel (Numba ``prange``) over (row block, column-panel
  block) tasks, so skinny products (few rows, e.g. a small batch) still use every core; within a task the
  block of B panels stays in L2 while the task's rows stream past.
- **Operand layout**: A as rows (:func:`a_rows`), B re-packed into panels of 8 columns, one 64-byte line
  per word (:func:`b_panels`); on AVX2 CPUs without AVX-512 VPOPCNTDQ both split into low and high
  nibbles (:func:`compiled_nibble_split`).
- **Micro-kernel**: each 4x8 output tile is a register-tiled kernel written as plain LLVM vector IR (so it
  compiles for any CPU): AVX-512 ``vpopcntq`` where the CPU Numba compiles for has VPOPCNTDQ, else
  per-byte popcounts (the ``vpshufb`` nibble table on AVX2/SSSE3) summed in byte counters that are
  widened only every 31 words. :func:`qnnlib.runtime.hardware.popcount_isa` says which one this CPU gets.

Every Numba function is compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from qnnlib.runtime.bitpack import as_u64_words

__all__ = ["matmul_cpu", "xor_popcount_gemm", "a_rows", "b_panels", "compiled_nibble_split"]

_ROW_BLOCK = 64  # rows of A per parallel task
_B_BLOCK_BYTES = 256 * 1024  # a task's block of B panels, (panels, W, 8) words, is sized to stay in L2


_TILE_ROWS = 4  # register tile of the CPU micro-kernel: rows of A ...
_TILE_COLS = 8  # ... times columns of B (two 256-bit vectors of 4 uint64 columns)
_BYTE_CHUNK = 31  # words per byte-accumulator flush: 31 * 8 = 248 <= 255, so per-byte counts never wrap


def _popcount_mode(context) -> str:
    """How the micro-kernel counts bits on the CPU Numba compiles for (its NUMBA_CPU_NAME/_FEATURES):
    ``"vpopcntq"`` (AVX-512 VPOPCNTDQ), ``"nibbles"`` (AVX2: ``vpshufb`` on operands pre-split into
    nibbles) or ``"bytes"`` (anything else: LLVM's generic per-byte ``ctpop``)."""
    features = set((getattr(context.codegen(), "_tm_features", "") or "").split(","))
    if "+avx512vpopcntdq" in features:
        return "vpopcntq"
    return "nibbles" if "+avx2" in features else "bytes"


@intrinsic
def _nibble_split(typingctx):
    """True where the compiled micro-kernel wants nibble-split operands (:func:`_popcount_mode`)."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, _popcount_mode(context) == "nibbles")

    return types.boolean(), codegen


@njit(cache=True)
def compiled_nibble_split() -> bool:  # pragma: no cover - compiled by Numba
    """Whether :func:`xor_popcount_gemm`, as compiled for this CPU, wants nibble-split operands
    (:func:`a_rows`, :func:`b_panels` with ``split=True``): True on AVX2 CPUs without AVX-512 VPOPCNTDQ."""
    return _nibble_split()


def _make_tile_kernel(rows: int):
    """The register-tiled micro-kernel for ``rows`` (R) rows of A x 8 columns of B (an intrinsic)."""

    @intrinsic
    def tile(typingctx, a, bp, i0, panel, k, out, oi, oj):
        """out[oi:oi+R, oj:oj+8] = k - 2 * popcount(a[i0:i0+R] XOR B's 8 columns bp[panel]): one LLVM loop.

        ``a`` is (M, W) uint64 with i0 + R <= M; ``bp`` is B in column panels, (N/8, W, 8) uint64 (columns
        8p..8p+7 of B^T, one contiguous 64-byte line per word); ``out`` is int32 (the result or an Rx8
        scratch tile). Plain, target-independent LLVM vector IR, so it compiles for any CPU and LLVM picks
        the popcount instruction: for every word w, ``acc[r, c] += ctpop(splat(a[i0+r, w]) ^ bp[p, w, 4c:4c+4])``
        on R rows x 2 vectors of 4 columns held in registers. Without AVX-512 VPOPCNTDQ the popcounts are
        per byte (``llvm.ctpop.v32i8``: the ``vpshufb`` nibble table on SSSE3/AVX2, bit arithmetic on plain
        SSE2) into byte accumulators, widened to 64-bit lanes only every 31 words (31 * 8 = 248 <= 255);
        with VPOPCNTDQ (decided by the CPU Numba compiles for) it is ``vpopcntq`` into 64-bit lanes.
        """
        u64_2d, u64_3d = types.Array(types.uint64, 2, "C"), types.Array(types.uint64, 3, "C")
        if a != u64_2d or bp != u64_3d or out != types.Array(types.int32, 2, "C"):
            return None
        if not all(isinstance(t, types.Integer) for t in (i0, panel, k, oi, oj)):
            return None
        vecs = _TILE_COLS // 4

        def codegen(context, builder, signature, args):
            from llvmlite import ir  # noqa: PLC0415
            from numba.core import cgutils  # noqa: PLC0415

            mode = _popcount_mode(context)
            wide, nib = mode == "vpopcntq", mode == "nibbles"
            i64, i8, i32 = ir.IntType(64), ir.IntType(8), ir.IntType(32)
            v4, v32, v4i32 = ir.VectorType(i64, 4), ir.VectorType(i8, 32), ir.VectorType(i32, 4)
            ar_a = context.make_array(signature.args[0])(context, builder, args[0])
            ar_b = context.make_array(signature.args[1])(context, builder, args[1])
            ar_o = context.make_array(signature.args[5])(context, builder, args[5])
            ii0, pp, kk, ooi, ooj = (
                context.cast(builder, args[n], signature.args[n], types.int64) for n in (2, 3, 4, 6, 7)
            )
            lda = cgutils.unpack_tuple(builder, ar_a.shape)[1]
            w = cgutils.unpack_tuple(builder, ar_b.shape)[1]  # words per row (split: lo, hi nibble words)
            ldo = cgutils.unpack_tuple(builder, ar_o.shape)[1]
            vt = v4 if wide else v32
            if nib:  # the only target-specific instruction, emitted only when compiling for an AVX2 CPU
                pshufb = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(v32, [v32, v32]), "llvm.x86.avx2.pshuf.b"
                )
                psadbw = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(v4, [v32, v32]), "llvm.x86.avx2.psad.bw"
                )
            lut = ir.Constant(v32, [bin(x).count("1") for x in range(16)] * 2)
            ctpop = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt]), "llvm.ctpop.v4i64" if wide else "llvm.ctpop.v32i8"
            )

            def const(x):
                return ir.Constant(i64, x)

            def c4(x):
                return ir.Constant(v4, [x] * 4)

            def splat(x):
                v = builder.insert_element(ir.Constant(v4, ir.Undefined), x, ir.Constant(i32, 0))
                return builder.shuffle_vector(v, v, ir.Constant(v4i32, [0] * 4))

            acc64 = [[cgutils.alloca_once_value(builder, c4(0)) for _ in range(vecs)] for _ in range(rows)]
            a_rows = [builder.gep(ar_a.data, [builder.mul(builder.add(ii0, const(r)), lda)]) for r in range(rows)]
            pw = 16 if nib else 8  # panel width in words: 8 columns (split: 8 low-nibble, 8 high-nibble words)
            b_panel = builder.gep(ar_b.data, [builder.mul(pp, builder.mul(w, const(pw)))])

            def accumulate_nibbles(word, accs):  # acc += lut[a_lo ^ b_lo] + lut[a_hi ^ b_hi], bytewise
                b_word = builder.gep(b_panel, [builder.mul(word, const(16))])
                bv = [builder.load(builder.bitcast(builder.gep(b_word, [const(4 * c)]), v4.as_pointer()), align=8)
                      for c in range(2 * vecs)]
                for r in range(rows):
                    a_word = builder.gep(a_rows[r], [builder.mul(word, const(2))])
                    x_lo = splat(builder.load(a_word))
                    x_hi = splat(builder.load(builder.gep(a_word, [const(1)])))
                    for c in range(vecs):
                        lo = builder.call(pshufb, [lut, builder.bitcast(builder.xor(x_lo, bv[c]), v32)])
                        hi = builder.call(pshufb, [lut, builder.bitcast(builder.xor(x_hi, bv[vecs + c]), v32)])
                        builder.store(builder.add(builder.add(builder.load(accs[r][c]), lo), hi), accs[r][c])

            def accumulate(word, accs):
                if nib:
                    return accumulate_nibbles(word, accs)
                b_word = builder.gep(b_panel, [builder.mul(word, const(8))])
                bv = [builder.load(builder.bitcast(builder.gep(b_word, [const(4 * c)]), v4.as_pointer()), align=8)
                      for c in range(vecs)]
                for r in range(rows):
                    x = splat(builder.load(builder.gep(a_rows[r], [word])))
                    for c in range(vecs):
                        p = builder.call(ctpop, [builder.bitcast(builder.xor(x, bv[c]), vt)])
                        builder.store(builder.add(builder.load(accs[r][c]), p), accs[r][c])

            if wide:
                with cgutils.for_range(builder, w) as loop:
                    accumulate(loop.index, acc64)
            else:
                accb = [[cgutils.alloca_once(builder, v32) for _ in range(vecs)] for _ in range(rows)]
                chunk = const(_BYTE_CHUNK)
                n_chunks = builder.sdiv(builder.add(w, const(_BYTE_CHUNK - 1)), chunk)
                with cgutils.for_range(builder, n_chunks) as outer:
                    start = builder.mul(outer.index, chunk)
                    left = builder.sub(w, start)
                    count = builder.select(builder.icmp_signed("<", left, chunk), left, chunk)
                    for row in accb:
                        for ptr in row:
                            builder.store(ir.Constant(v32, [0] * 32), ptr)
                    with cgutils.for_range(builder, count) as inner:
                        accumulate(builder.add(start, inner.index), accb)
                    for r in range(rows):  # widen: each 64-bit lane gets the sum of its 8 byte counts
                        for c in range(vecs):
                            if nib:  # vpsadbw against zero: the byte sum of each 64-bit lane
                                t = builder.call(psadbw, [builder.load(accb[r][c]), ir.Constant(v32, [0] * 32)])
                                builder.store(builder.add(builder.load(acc64[r][c]), t), acc64[r][c])
                                continue
                            t = builder.bitcast(builder.load(accb[r][c]), v4)
                            for shift, mask in ((8, 0x00FF00FF00FF00FF), (16, 0x0000FFFF0000FFFF), (32, 0xFFFFFFFF)):
                                high = builder.and_(builder.lshr(t, c4(shift)), c4(mask))
                                t = builder.add(builder.and_(t, c4(mask)), high)
                            builder.store(builder.add(builder.load(acc64[r][c]), t), acc64[r][c])

            kv = splat(kk)
            for r in range(rows):
                o_row = builder.gep(ar_o.data, [builder.add(builder.mul(builder.add(ooi, const(r)), ldo), ooj)])
                for c in range(vecs):
                    res = builder.trunc(builder.sub(kv, builder.shl(builder.load(acc64[r][c]), c4(1))), v4i32)
                    builder.store(res, builder.bitcast(builder.gep(o_row, [const(4 * c)]), v4i32.as_pointer()), align=4)
            return context.get_dummy_value()

        return types.none(a, bp, i0, panel, k, out, oi, oj), codegen

    return tile


_tile_xor_popcount = _make_tile_kernel(_TILE_ROWS)  # full 4x8 tiles
_row_xor_popcount = _make_tile_kernel(1)  # 1x8: the last M % 4 rows, without padding A


@njit(cache=True, nogil=True)
def _gemm_task(a, bp, k, out, i0, i_end, p0, p_end):  # pragma: no cover - compiled by Numba
    """One task of :func:`xor_popcount_gemm`: out[i0:i_end, 8 p0:8 p_end] (clipped to N), tile by tile.

    A function of its own (not the body of the ``prange`` loop) keeps Numba's parfor compilation fast."""
    n = out.shape[1]
    scratch = np.empty((4, 8), dtype=np.int32)
    for i in range(i0, i_end, 4):
        for p in range(p0, p_end):
            nc = min(8, n - 8 * p)
            full = nc == 8  # else: the last, partial panel goes through the scratch tile
            dst = out if full else scratch
            if i + 4 <= i_end:
                _tile_xor_popcount(a, bp, i, p, k, dst, i if full else 0, 8 * p if full else 0)
                if not full:
                    for r in range(4):
                        for c in range(nc):
                            out[i + r, 8 * p + c] = scratch[r, c]
            else:
                for r in range(i, i_end):  # the block's last 1-3 rows
                    _row_xor_popcount(a, bp, r, p, k, dst, r if full else 0, 8 * p if full else 0)
                    if not full:
                        for c in range(nc):
                            out[r, 8 * p + c] = scratch[0, c]


@njit(parallel=True, cache=True, nogil=True)
def xor_popcount_gemm(a: np.ndarray, bp: np.ndarray, k: int, out: np.ndarray, row_block: int,
                      panel_block: int) -> None:  # pragma: no cover - compiled by Numba
    """out[i, j] = k - 2 * sum_w popcount(a[i, w] ^ b[j, w]) (Eq. 7) for a (M, W) and B in column
    panels bp (N'/8, W, 8) (:func:`b_panels`, zero-padded so that 8 | N'), both uint64; out is int32
    (M, N), N <= N'. Where the kernel is compiled for AVX2 (without VPOPCNTDQ) both operands come
    nibble-split instead (``split=True``: a (M, 2W), bp (N'/8, W, 16)).

    Parallel tasks are (row block, panel block) pairs, so skinny products (few rows, e.g. a small
    batch) still use every core; within a task the block of B panels stays in L2 while the task's rows
    stream past, and each 4x8 tile is one call of the register-tiled micro-kernel (a block's
    last M % 4 rows: 1x8 tiles). Tiles that stick out of ``out`` (padding columns) go through a scratch tile.
    """
    m, n = out.shape
    if bp.shape[2] != (16 if _nibble_split() else 8) or a.shape[1] != bp.shape[1] * (bp.shape[2] // 8):
        raise ValueError("operand layout does not match the compiled micro-kernel (see a_rows, b_panels)")
    if a.shape[0] < m or 8 * bp.shape[0] < n:
        raise ValueError("operands have fewer rows or columns than out (see a_rows, b_panels)")
    n_panels = bp.shape[0]
    row_block = max(4, row_block // 4 * 4)
    n_row_blocks = (m + row_block - 1) // row_block
    n_panel_blocks = (n_panels + panel_block - 1) // panel_block
    for task in prange(n_row_blocks * n_panel_blocks):
        i0 = (task // n_panel_blocks) * row_block
        p0 = (task % n_panel_blocks) * panel_block
        _gemm_task(a, bp, k, out, i0, min(m, i0 + row_block), p0, min(n_panels, p0 + panel_block))


_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)


def _split_nibbles(x: np.ndarray, axis: int) -> np.ndarray:
    """Words -> (low nibbles, high nibbles >> 4) stacked along ``axis``: popcount(a ^ b) is then the
    sum of two 16-entry table look-ups per byte, lut[a_lo ^ b_lo] + lut[a_hi ^ b_hi] (``vpshufb``)."""
    return np.stack([x & _NIBBLES, (x >> np.uint64(4)) & _NIBBLES], axis=axis)


@njit(cache=True, nogil=True)
def _repack(x, panels, split):  # pragma: no cover - compiled by Numba
    """x (R, W) uint64 -> out[p, w, c (+8)] = word w of row 8p + c (zero past R), split into nibbles or not.

    Serial: a few ms even for a 4096 x 4096 B, and waking the thread pool costs more on small operands."""
    r, w = x.shape
    out = np.empty((panels, w, 16 if split else 8), dtype=np.uint64)
    for p in range(panels):
        for c in range(8):
            row = 8 * p + c
            for word in range(w):
                v = x[row, word] if row < r else np.uint64(0)
                if split:
                    out[p, word, c] = v & np.uint64(0x0F0F0F0F0F0F0F0F)
                    out[p, word, 8 + c] = (v >> np.uint64(4)) & np.uint64(0x0F0F0F0F0F0F0F0F)
                else:
                    out[p, word, c] = v
    return out


def a_rows(a: np.ndarray, split: bool = False) -> np.ndarray:
    """(M, W) words -> (M, W) uint64, C-contiguous (``split``: (M, 2W), word w as its low- then
    high-nibble word)."""
    a64 = as_u64_words(a)
    if not split:
        return a64
    return _split_nibbles(a64, -1).reshape(a64.shape[0], -1)


def b_panels(b: np.ndarray, split: bool = False) -> np.ndarray:
    """(N, W) words -> (N'/8, W, 8) uint64 column panels: panel p, word w holds columns 8p..8p+7,
    zero past N (``split``: (N'/8, W, 16), the 8 columns' low-nibble words, then their high-nibble words)."""
    b64 = as_u64_words(b)
    return _repack(b64, (b64.shape[0] + _TILE_COLS - 1) // _TILE_COLS, split)


def matmul_cpu(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """``K - 2 * popcount(a XOR b)`` for every row pair (Eq. 7): int32 (M, N) from checked operands.

    ``a`` (M, W) and ``b`` (N, W) are packed along the same K with the same word size (uint32 or uint64,
    zero padding bits), as :func:`qnnlib.runtime.binary_gemm.binary_matmul` checks before calling this.
    """
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    if out.size:
        split = bool(compiled_nibble_split())
        a64, bp = a_rows(a, split), b_panels(b, split)
        panel_block = int(np.clip(_B_BLOCK_BYTES // bp[0].nbytes, 2, 64))
        xor_popcount_gemm(a64, bp, np.int64(k), out, np.int64(_ROW_BLOCK), np.int64(panel_block))
    return out
