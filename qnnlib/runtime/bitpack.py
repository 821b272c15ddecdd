"""Bit-packing of binary (±1) matrices into machine words.

The paper's run-time kernels (Hubara et al., NIPS 2016 §4, QNN §"Run-time", Eq. 7) store 32 binary
values in one 32-bit register so that one XNOR/XOR, one popcount and one accumulate evaluate 32
connections ("SWAR": 32 connections per 3 instructions)::

    a1 += popcount(xnor(a0^{32b}, w1^{32b}))                                    (Eq. 7)

This module is the packing half of that scheme; :mod:`qnnlib.runtime.binary_gemm` is the arithmetic half.
It is also the one home of the word size: :data:`WORD_BITS` (64) is the word every packed array of the
runtime uses (:class:`qnnlib.runtime.packed_bnn.PackedBNN`, its bit-planes and thresholds, the packed
checkpoint); :data:`SUPPORTED_WORD_BITS` (32, 64) are the sizes :func:`pack`, :func:`unpack` and
``binary_matmul`` accept.

Layout (the contract every kernel in ``kernels/`` and :mod:`qnnlib.runtime.binary_gemm` relies on;
docs/decisions.md D16):

- A real array ``x`` of shape ``(..., K)`` is binarized with ``sign(0) = +1`` (paper Eq. 1; docs/decisions.md D1):
  element ``x >= 0`` -> bit 1 (value +1), ``x < 0`` -> bit 0 (value -1).
- It is packed along its last axis into ``W = ceil(K / word_bits)`` unsigned words
  (``uint32`` for ``word_bits=32``, ``uint64`` for ``word_bits=64``).
- Bit order is LSB first: element ``j`` lives in word ``j // word_bits`` at bit ``j % word_bits``.
  Hence two consecutive ``uint32`` words are exactly one ``uint64`` word (low word first), and a
  row packed with ``word_bits=64`` viewed as ``uint32`` (on a little-endian machine) is the row
  packed with ``word_bits=32`` (plus one zero word if ``W32`` is odd); :func:`as_u64_words` and
  :func:`as_u32_words` convert between the two.
- Padding bits (positions ``K .. W*word_bits - 1`` of the last word) are always 0. Because they are
  0 in *both* operands, they XOR to 0 and the GEMM ``K - 2*popcount(a XOR b)`` stays exact for any K.

**Packed operands that carry their K.** The words alone do not say how many values they hold: a row of
K = 60 values and the same row with K = 62 (two more -1s) pack into identical words, so a product over a
wrong K, ``binary_matmul(pack(a), pack(b), k)`` with ``k`` larger than the packed K but the same word
count, would count the zero padding bits as matching values and be off by ``k - K`` without any sign of
it. (A ``k`` *smaller* than the packed K is caught whenever a row has a +1 past ``k``: the padding bits
must be 0.) :func:`pack_bits` therefore returns a :class:`PackedBits` -- the words plus their ``k`` --
and ``binary_matmul`` and :func:`unpack` take the K from it and refuse a disagreeing ``k``. :func:`pack`
keeps returning the bare words, for the kernels and the hot paths whose K is fixed by construction
(:class:`qnnlib.runtime.packed_bnn.PackedBNN` checks its fan-ins once); their callers pass ``k`` and are
responsible for it. Every function here that takes a size (``k``, ``word_bits``) accepts only a Python
or NumPy integer (``TypeError`` for bools, floats and the like) in range (``ValueError`` for ``k < 1`` or
``word_bits`` not in :data:`SUPPORTED_WORD_BITS`), and the message names the parameter.

Inputs may be NumPy arrays, torch tensors (CPU: packed with NumPy; CUDA: via CuPy) or CuPy arrays
(packed on the GPU). CuPy is imported lazily, only when a CuPy array (or CUDA tensor) is passed.
Numba kernels that compute their bits on the fly (bit-planes, thresholds) pack them with
:func:`pack_word`, the one Numba word packer of the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from qnnlib.checks import check_int
from qnnlib.runtime.arrays import cupy, from_torch, is_cupy

__all__ = [
    "WORD_BITS",
    "SUPPORTED_WORD_BITS",
    "check_size",
    "word_dtype",
    "packed_width",
    "PackedBits",
    "pack",
    "pack_bits",
    "unpack",
    "pack_word",
    "as_u64_words",
    "as_u32_words",
]

#: The runtime's word size: every packed array of the binary runtime holds 64 values per ``uint64`` word.
WORD_BITS = 64

#: Word sizes (bits per packed word) that :func:`pack`, :func:`unpack` and ``binary_matmul`` accept.
SUPPORTED_WORD_BITS = (32, 64)


def check_size(value: Any, name: str = "k") -> int:
    """``value`` as a positive ``int``: a size such as the number of binary values per row ``k``
    (:func:`qnnlib.checks.check_int`: ``TypeError`` unless a Python or NumPy integer, ``ValueError`` below 1,
    both naming ``name``)."""
    return check_int(value, name, minimum=1)


def word_dtype(word_bits: int) -> np.dtype:
    """The unsigned NumPy dtype holding ``word_bits`` packed binary values (uint32 or uint64).

    Raises ``TypeError`` for a ``word_bits`` that is not an integer (e.g. ``32.0``, ``True``) and ``ValueError``
    for one not in :data:`SUPPORTED_WORD_BITS`.
    """
    if isinstance(word_bits, (bool, np.bool_)) or not isinstance(word_bits, (int, np.integer)):
        raise TypeError(f"word_bits must be one of the integers {SUPPORTED_WORD_BITS}, got {word_bits!r} "
                        f"({type(word_bits).__name__})")
    if word_bits not in SUPPORTED_WORD_BITS:
        raise ValueError(f"word_bits must be one of {SUPPORTED_WORD_BITS}, got {word_bits!r}")
    return np.dtype(np.uint32 if word_bits == 32 else np.uint64)


def packed_width(k: int, word_bits: int = WORD_BITS) -> int:
    """Number of words ``ceil(k / word_bits)`` that hold ``k`` binary values (errors: :func:`check_size`,
    :func:`word_dtype`)."""
    word_dtype(word_bits)
    k = check_size(k, "k (the number of binary values per row)")
    return (k + word_bits - 1) // word_bits


@dataclass(frozen=True)
class PackedBits:
    """Bit-packed ±1 rows that carry their length K: ``words`` (..., ceil(k / word_bits)) as :func:`pack`
    returns them, plus ``k``.

    Made by :func:`pack_bits`; ``binary_matmul`` and :func:`unpack` read K from it, so a product over the
    wrong K cannot happen silently (see the module docstring). ``words`` is a NumPy or CuPy array (a torch
    tensor is converted) of ``uint32`` or ``uint64`` words; construction checks that ``k`` is a positive
    integer and that the last axis holds exactly ``ceil(k / word_bits)`` words.
    """

    words: Any
    k: int

    def __post_init__(self) -> None:
        words = from_torch(self.words)
        if not is_cupy(words):
            words = np.asarray(words)
        k = check_size(self.k, "k (the number of binary values per row)")
        if words.dtype not in (np.uint32, np.uint64):
            raise ValueError(f"PackedBits.words must be uint32 or uint64 words (as returned by pack), "
                             f"got dtype {words.dtype}")
        if words.ndim < 1:
            raise ValueError(f"PackedBits.words must have shape (..., W), got shape {tuple(words.shape)}")
        word_bits = words.dtype.itemsize * 8
        w = packed_width(k, word_bits)
        if words.shape[-1] != w:
            raise ValueError(f"k={k} needs ceil({k}/{word_bits}) = {w} words of {word_bits} bits per row, but "
                             f"PackedBits.words has {words.shape[-1]} (shape {tuple(words.shape)}); pass the K "
                             f"that was packed")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "k", k)

    @property
    def word_bits(self) -> int:
        """Bits per word (32 or 64), from the words' dtype."""
        return int(self.words.dtype.itemsize * 8)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the ±1 array that was packed, ``(..., k)``."""
        return (*(int(n) for n in self.words.shape[:-1]), self.k)


def pack(x: Any, word_bits: int = WORD_BITS) -> Any:
    """Pack the signs of ``x`` (shape ``(..., K)``) into words of shape ``(..., ceil(K/word_bits))``.

    Bit ``j % word_bits`` of word ``j // word_bits`` is 1 where ``x[..., j] >= 0`` (the value +1,
    with ``sign(0) = +1``) and 0 where ``x[..., j] < 0`` (the value -1); padding bits are 0.
    Boolean input is taken as the bits themselves (True -> +1).

    Args:
        x: real or boolean array (NumPy, CuPy or torch) with at least one axis; the last axis K >= 1
            is packed. NaN is rejected because it has no sign.
        word_bits: 32 (-> ``uint32`` words, the paper's registers) or 64 (-> ``uint64``, the runtime's
            :data:`WORD_BITS`).

    Returns:
        The packed words, on the same device kind as ``x`` (NumPy for NumPy/CPU torch input, CuPy for
        CuPy/CUDA torch input), C-contiguous.
    """
    dtype = word_dtype(word_bits)
    x = from_torch(x)
    cupy_input = is_cupy(x)
    xp = cupy() if cupy_input else np
    x = xp.asarray(x)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(
            f"pack expects an array of shape (..., K) with K >= 1 values to pack along the last axis, "
            f"got shape {tuple(x.shape)}; reshape a scalar or empty array first"
        )
    if x.dtype.kind == "c":
        raise ValueError(f"pack expects real values, got dtype {x.dtype}")
    if x.dtype.kind == "f" and bool(xp.isnan(x).any()):
        raise ValueError("pack got NaN values, which have no sign; clean the input first")
    bits = x if x.dtype == np.bool_ else (x >= 0)  # sign(0) = +1  (Eq. 1)
    k = x.shape[-1]
    w = packed_width(k, word_bits)
    if cupy_input:
        return _pack_bits_generic(xp, bits, w, word_bits, dtype)
    # NumPy: packbits (LSB first) into a zero-filled byte buffer of whole words, then view as words.
    nbytes = (k + 7) // 8
    buf = np.zeros(bits.shape[:-1] + (w * dtype.itemsize,), dtype=np.uint8)
    buf[..., :nbytes] = np.packbits(bits, axis=-1, bitorder="little")
    words = buf.view(dtype.newbyteorder("<"))  # byte b of a word holds elements 8b..8b+7
    return words if words.dtype.isnative else words.astype(dtype)


def _pack_bits_generic(xp: Any, bits: Any, w: int, word_bits: int, dtype: np.dtype) -> Any:
    """Array-API packing (used for CuPy): pad to whole words, then OR the shifted bits of each word.

    Distinct powers of two never carry, so their sum equals their bitwise OR.
    """
    k = bits.shape[-1]
    pad = w * word_bits - k
    if pad:
        bits = xp.concatenate([bits, xp.zeros(bits.shape[:-1] + (pad,), dtype=bits.dtype)], axis=-1)
    bits = bits.reshape(bits.shape[:-1] + (w, word_bits)).astype(dtype)
    shifts = xp.arange(word_bits, dtype=dtype)
    return xp.ascontiguousarray((bits << shifts).sum(axis=-1, dtype=dtype))


def pack_bits(x: Any, word_bits: int = WORD_BITS) -> PackedBits:
    """:func:`pack` of ``x`` (shape ``(..., K)``) as a :class:`PackedBits` that carries ``K``.

    Pass the result to ``binary_matmul`` (and :func:`unpack`) without a ``k``: the K comes with the words, so
    a product of operands packed along different K raises instead of being off by the difference.
    """
    words = pack(x, word_bits)
    return PackedBits(words, int(x.shape[-1]))


def unpack(packed: Any, k: int | None = None) -> Any:
    """Invert :func:`pack`: words of shape ``(..., W)`` -> float32 ±1 array of shape ``(..., k)``.

    The word size is read from the dtype (``uint32`` or ``uint64``); ``W`` must equal
    ``ceil(k / word_bits)``. Padding bits beyond ``k`` are ignored. The result lives on the same
    device kind as ``packed`` (NumPy or CuPy). ``packed`` may be a :class:`PackedBits`: ``k`` then comes
    from it (a ``k`` passed as well must agree); bare words need ``k``.
    """
    if isinstance(packed, PackedBits):
        if k is not None and check_size(k, "k") != packed.k:
            raise ValueError(f"k={k} disagrees with the K={packed.k} the PackedBits carries; omit k")
        packed, k = packed.words, packed.k
    elif k is None:
        raise TypeError("unpack needs k (the number of values per row) for bare words; or pass a PackedBits")
    packed = from_torch(packed)
    cupy_input = is_cupy(packed)
    xp = cupy() if cupy_input else np
    packed = xp.asarray(packed)
    if packed.dtype not in (np.uint32, np.uint64):
        raise ValueError(
            f"unpack expects uint32 or uint64 words (as returned by pack), got dtype {packed.dtype}"
        )
    word_bits = packed.dtype.itemsize * 8
    if packed.ndim < 1:
        raise ValueError(f"unpack expects packed words of shape (..., W), got shape {tuple(packed.shape)}")
    w = packed_width(k, word_bits)
    if packed.shape[-1] != w:
        raise ValueError(
            f"k={k} needs ceil({k}/{word_bits}) = {w} words of {word_bits} bits per row, but the packed "
            f"array has {packed.shape[-1]} (shape {tuple(packed.shape)}); pass the K that was packed"
        )
    if cupy_input:
        shifts = xp.arange(word_bits, dtype=packed.dtype)
        bits = (packed[..., None] >> shifts) & packed.dtype.type(1)
        bits = bits.reshape(packed.shape[:-1] + (w * word_bits,))[..., :k]
    else:
        le = np.ascontiguousarray(packed, dtype=packed.dtype.newbyteorder("<"))
        bits = np.unpackbits(le.view(np.uint8), axis=-1, count=k, bitorder="little")
    return bits.astype(np.float32) * 2 - 1  # bit 1 -> +1, bit 0 -> -1


# ---------------------------------------------------------------------------------------------------
# The Numba word packer
# ---------------------------------------------------------------------------------------------------


@njit(inline="always")
def pack_word(bit: Callable[[Any, int], bool], source: Any, j0: int, j1: int) -> np.uint64:  # pragma: no cover - Numba
    """One ``uint64`` word in the :func:`pack` layout from a bit source, inside a Numba kernel.

    Bit ``j - j0`` (LSB first) of the result is 1 where ``bit(source, j)`` is true (the value +1), for
    ``j0 <= j < j1`` with ``j1 - j0 <= 64``; the bits from ``j1 - j0`` up are 0 (the padding of a last,
    partial word). ``bit`` is a Numba-compiled predicate ``bit(source, j) -> bool`` and ``source`` any
    Numba value it reads (typically a tuple of arrays and a row index), e.g. bit ``n`` of a pixel for the
    Eq. 6 bit-planes or ``f·d >= t`` for the folded thresholds.

    Inlined into the calling kernel at the Numba IR level (``inline="always"``) and specialised for its
    ``bit``, so LLVM vectorises the loop exactly as it would a hand-written one. Numba's on-disk cache
    keys a cached kernel on its own file only: after editing this function, clear the ``__pycache__``
    of the callers (``bitplanes``, ``folding``) so they are recompiled.
    """
    acc = np.uint64(0)
    for j in range(j0, j1):
        if bit(source, j):
            acc |= np.uint64(1) << np.uint64(j - j0)
    return acc


# ---------------------------------------------------------------------------------------------------
# Word-size conversions
# ---------------------------------------------------------------------------------------------------


def as_u64_words(p: Any, xp: Any = np) -> Any:
    """(R, W) uint32 or uint64 words -> (R, ceil(W32/2)) uint64, C-contiguous (endian-independent).

    Two consecutive ``uint32`` words (low word first) are one ``uint64`` word: element ``j`` stays at word
    ``j // 64``, bit ``j % 64``. ``xp`` is the array module of ``p`` (NumPy or CuPy).
    """
    if p.dtype == np.uint64:
        return xp.ascontiguousarray(p)
    if p.shape[1] % 2:
        p = xp.concatenate([p, xp.zeros((p.shape[0], 1), dtype=np.uint32)], axis=1)
    lo = p[:, 0::2].astype(np.uint64)
    hi = p[:, 1::2].astype(np.uint64)
    return xp.ascontiguousarray(lo | (hi << np.uint64(32)))  # word j//64, bit j%64 (LSB first)


def as_u32_words(p: Any, xp: Any = np) -> Any:
    """(R, W) uint64 or uint32 words -> (R, W32) uint32, C-contiguous (each uint64 as low half, high half).

    ``xp`` is the array module of ``p`` (NumPy or CuPy).
    """
    if p.dtype == np.uint32:
        return xp.ascontiguousarray(p)
    lo = (p & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (p >> np.uint64(32)).astype(np.uint32)
    return xp.ascontiguousarray(xp.stack([lo, hi], axis=-1).reshape(p.shape[0], 2 * p.shape[1]))
