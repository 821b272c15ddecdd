"""Tests for qnnlib.runtime.bitpack: layout (LSB first, sign(0) = +1, zero padding), round trip, errors, the word
size constants, the Numba word packer and the 32/64-bit word conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

from qnnlib.runtime.bitpack import (
    SUPPORTED_WORD_BITS,
    WORD_BITS,
    PackedBits,
    as_u32_words,
    as_u64_words,
    check_size,
    pack,
    pack_bits,
    pack_word,
    packed_width,
    unpack,
    word_dtype,
)


def _signs(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def test_bit_order_is_lsb_first_and_bit_one_means_plus_one():
    x = np.array([[1.0, -1.0, -1.0, 1.0, -2.5, 0.0, -0.0]])  # bits 1,0,0,1,0,1,1 -> 0b1101001
    for word_bits in (32, 64):
        p = pack(x, word_bits)
        assert p.dtype == word_dtype(word_bits) and p.shape == (1, 1)
        assert int(p[0, 0]) == 0b1101001


def test_sign_of_zero_is_plus_one():
    p = pack(np.zeros((2, 5)), 32)
    assert (unpack(p, 5) == 1).all()


def test_element_j_goes_to_word_j_div_wordbits_bit_j_mod_wordbits():
    k = 200
    for word_bits in (32, 64):
        for j in (0, 1, 31, 32, 63, 64, 65, 199):
            x = -np.ones((1, k))
            x[0, j] = 1
            p = pack(x, word_bits)
            expected = np.zeros(packed_width(k, word_bits), dtype=word_dtype(word_bits))
            expected[j // word_bits] = word_dtype(word_bits).type(1) << word_dtype(word_bits).type(j % word_bits)
            np.testing.assert_array_equal(p[0], expected)


@pytest.mark.parametrize("k", [1, 7, 31, 32, 33, 63, 64, 65, 1000])
@pytest.mark.parametrize("word_bits", [32, 64])
def test_round_trip_and_zero_padding(k, word_bits):
    x = np.random.default_rng(k).standard_normal((5, k)).astype(np.float32)
    p = pack(x, word_bits)
    assert p.shape == (5, -(-k // word_bits)) and p.flags.c_contiguous
    np.testing.assert_array_equal(unpack(p, k), _signs(x))
    # padding bits past K are zero
    if k % word_bits:
        tail = int(p.dtype.type(~((1 << (k % word_bits)) - 1) & ((1 << word_bits) - 1)))
        assert not (p[:, -1] & p.dtype.type(tail)).any()


def test_64_bit_words_are_pairs_of_32_bit_words():
    x = np.random.default_rng(0).standard_normal((4, 150))
    p32, p64 = pack(x, 32), pack(x, 64)
    lo = (p64 & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (p64 >> np.uint64(32)).astype(np.uint32)
    np.testing.assert_array_equal(np.stack([lo, hi], -1).reshape(4, -1)[:, : p32.shape[1]], p32)


def test_batched_leading_axes_bool_int_and_torch_inputs():
    x = np.random.default_rng(1).standard_normal((2, 3, 70))
    p = pack(x, 64)
    assert p.shape == (2, 3, 2)
    np.testing.assert_array_equal(unpack(p, 70), _signs(x))
    np.testing.assert_array_equal(pack(x >= 0, 64), p)
    np.testing.assert_array_equal(pack(np.where(x >= 0, 1, -1).astype(np.int8), 64), p)
    np.testing.assert_array_equal(pack(torch.from_numpy(x), 64), p)
    np.testing.assert_array_equal(pack(torch.from_numpy(x).bfloat16(), 64), p)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="word_bits"):
        pack(np.ones((2, 3)), 16)
    with pytest.raises(ValueError, match="K >= 1"):
        pack(np.float32(1.0))
    with pytest.raises(ValueError, match="K >= 1"):
        pack(np.ones((3, 0)))
    with pytest.raises(ValueError, match="NaN"):
        pack(np.array([[1.0, np.nan]]))
    p = pack(np.ones((2, 70)), 32)
    with pytest.raises(ValueError, match="has 3"):
        unpack(p, 100)
    with pytest.raises(ValueError, match="positive integer"):
        unpack(p, 0)
    with pytest.raises(ValueError, match="uint32 or uint64"):
        unpack(p.astype(np.int64), 70)


def test_packed_bits_carry_their_k():
    x = np.random.default_rng(0).standard_normal((3, 60))
    pb = pack_bits(x, 32)
    assert isinstance(pb, PackedBits) and pb.k == 60 and pb.word_bits == 32 and pb.shape == (3, 60)
    np.testing.assert_array_equal(pb.words, pack(x, 32))
    np.testing.assert_array_equal(unpack(pb), _signs(x))  # K from the words' carrier
    np.testing.assert_array_equal(unpack(pb, 60), _signs(x))
    with pytest.raises(ValueError, match="k=62 disagrees with the K=60"):
        unpack(pb, 62)  # same word count: bare words could not tell
    with pytest.raises(TypeError, match="needs k"):
        unpack(pb.words)
    with pytest.raises(ValueError, match="needs ceil"):
        PackedBits(pb.words, 100)
    with pytest.raises(ValueError, match="uint32 or uint64"):
        PackedBits(pb.words.astype(np.int64), 60)
    assert pack_bits(torch.ones(2, 65)).words.shape == (2, 2)
    with pytest.raises(AttributeError):
        pb.k = 61  # frozen


# Sizes that every size-taking function must refuse, naming the parameter: 0, negatives, bools, floats (even
# integral ones), strings, None.
BAD_SIZES = st.one_of(st.integers(max_value=0), st.booleans(), st.floats(allow_nan=True), st.just("64"),
                      st.none(), st.just(np.float64(64.0)), st.just(np.bool_(True)))
BAD_WORD_BITS = st.one_of(BAD_SIZES, st.integers().filter(lambda b: b not in SUPPORTED_WORD_BITS),
                          st.just(32.0), st.just(64.0))


@settings(max_examples=40, deadline=None)
@given(k=BAD_SIZES)
def test_bad_k_is_refused_naming_k(k):
    words = pack(np.ones((2, 10)))
    for call in (lambda: packed_width(k), lambda: packed_width(k, 32), lambda: unpack(words, k),
                 lambda: PackedBits(words, k), lambda: check_size(k, "k")):
        with pytest.raises((TypeError, ValueError), match=r"\bk\b"):
            call()


@settings(max_examples=40, deadline=None)
@given(word_bits=BAD_WORD_BITS)
def test_bad_word_bits_are_refused_naming_word_bits(word_bits):
    for call in (lambda: word_dtype(word_bits), lambda: packed_width(10, word_bits),
                 lambda: pack(np.ones((2, 10)), word_bits), lambda: pack_bits(np.ones((2, 10)), word_bits)):
        with pytest.raises((TypeError, ValueError), match="word_bits"):
            call()


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 10_000), word_bits=st.sampled_from(SUPPORTED_WORD_BITS),
       kind=st.sampled_from([int, np.int64, np.int32, np.uint16]))
def test_good_sizes_of_any_integer_type_are_accepted(k, word_bits, kind):
    if kind is np.uint16 and k > 65535:
        return
    assert packed_width(kind(k), kind(word_bits)) == -(-k // word_bits)
    assert word_dtype(kind(word_bits)).itemsize * 8 == word_bits
    assert check_size(kind(k)) == k and type(check_size(kind(k))) is int


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=130),
        elements=st.floats(-2, 2, width=32),
    ),
    word_bits=st.sampled_from([32, 64]),
)
def test_round_trip_property(x, word_bits):
    p = pack(x, word_bits)
    assert p.shape == (x.shape[0], packed_width(x.shape[1], word_bits))
    np.testing.assert_array_equal(unpack(p, x.shape[1]), _signs(x))


def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    if cp.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA device")
    x = np.random.default_rng(2).standard_normal((7, 1000)).astype(np.float32)
    for word_bits in (32, 64):
        p = pack(cp.asarray(x), word_bits)
        assert isinstance(p, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(p), pack(x, word_bits))
        np.testing.assert_array_equal(cp.asnumpy(unpack(p, 1000)), _signs(x))


# ------------------------------------------------------------------------- word size, Numba packer
def test_one_word_size_for_the_runtime_and_the_supported_sizes():
    assert WORD_BITS == 64 and WORD_BITS in SUPPORTED_WORD_BITS and SUPPORTED_WORD_BITS == (32, 64)
    assert pack(np.ones((1, 3))).dtype == word_dtype(WORD_BITS) == np.uint64
    assert packed_width(65) == 2


@njit(inline="always")
def _nonneg(source, j):
    x, i = source
    return x[i, j] >= 0


@njit(cache=False)
def _pack_rows(x, out):
    rows, k = x.shape
    for i in range(rows):
        for w in range(out.shape[1]):
            out[i, w] = pack_word(_nonneg, (x, i), w * 64, min(k, w * 64 + 64))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 130, 1000])
def test_numba_word_packer_matches_pack(k):
    x = np.random.default_rng(k).standard_normal((5, k))
    x[0, 0] = 0.0  # sign(0) = +1
    out = np.empty((5, packed_width(k)), np.uint64)
    _pack_rows(x, out)
    np.testing.assert_array_equal(out, pack(x))


@pytest.mark.parametrize("k", [1, 32, 33, 64, 65, 100, 128, 129])
def test_word_size_conversions(k):
    """64-bit words split into (low, high) 32-bit words and back, as the CPU/GPU GEMM paths convert them."""
    x = np.random.default_rng(k).standard_normal((3, k))
    p32, p64 = pack(x, 32), pack(x, 64)
    as32 = as_u32_words(p64)
    assert as32.dtype == np.uint32 and as32.shape[1] in (p32.shape[1], p32.shape[1] + 1)
    np.testing.assert_array_equal(as32[:, : p32.shape[1]], p32)
    assert not as32[:, p32.shape[1] :].any()
    np.testing.assert_array_equal(as_u64_words(p32), p64)
