"""Tests for qnnlib.runtime.bitplanes: 8-bit pixels <-> model inputs, and Eq. 6 (D = W_b·p from 8 binary GEMMs)
exact on every CPU backend, for fan-ins that do and do not fill 64-bit words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnnlib.runtime.bitpack import pack, unpack
from qnnlib.runtime.bitplanes import (
    bitplane_dot,
    inputs_from_pixels,
    pack_bitplane_panels,
    pack_bitplanes,
    pixels_from_inputs,
)


def random_pixels(n: int, k: int = 784, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, k), dtype=np.uint8)


def test_pixels_round_trip_and_off_grid_inputs_are_rejected():
    p = random_pixels(5)
    x = inputs_from_pixels(p)
    assert x.dtype == torch.float32 and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(pixels_from_inputs(x), p)
    assert np.array_equal(pixels_from_inputs(x.numpy().astype(np.float64)), p)
    assert np.array_equal(pixels_from_inputs(p.reshape(5, 28, 28)), p)
    with pytest.raises(ValueError, match="8-bit"):
        pixels_from_inputs(x * 0.999)
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        pixels_from_inputs(x * 2)
    with pytest.raises(ValueError, match="shape"):
        pixels_from_inputs(np.zeros(3))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 784])
def test_pack_bitplanes_kernel_packs_each_bit_of_the_pixels(k):
    p = random_pixels(9, k, seed=k)
    planes = np.empty((8, 9, -(-k // 64)), np.uint64)
    pack_bitplanes(p, planes)
    for n in range(8):
        assert np.array_equal(planes[n], pack(((p >> n) & 1).astype(bool)))  # bit 1 = (p^n = 1)


@pytest.mark.parametrize("k", [784, 130, 64, 1])
def test_bitplane_dot_is_the_exact_integer_product(k):
    rng = np.random.default_rng(k)
    wb = rng.choice(np.array([-1, 1], np.int64), (70, k))
    p = random_pixels(33, k, seed=k)
    exact = p.astype(np.int64) @ wb.T  # D = W_b · p
    w_packed, row_sum = pack(wb.astype(np.float32)), wb.sum(1).astype(np.int32)
    for backend in ("cpu", "numpy"):
        d = bitplane_dot(p, w_packed, row_sum, k, backend)
        assert d.dtype == np.int32 and np.array_equal(d, exact)
        assert bitplane_dot(p[:0], w_packed, row_sum, k, backend).shape == (0, 70)


# --- the fused Eq. 6 + sign pass ------------------------------------------------------------------


def _sign_reference(p: np.ndarray, w: np.ndarray, k: int, t: np.ndarray, f: np.ndarray) -> np.ndarray:
    d = p.astype(np.int64) @ unpack(w, k).astype(np.int64).T  # D = W_b · p, the definition
    return pack(f[None].astype(np.int64) * d >= t[None])


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 784), (100, 300, 784), (33, 130, 65), (5, 8, 64), (9, 24, 3072)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fused", [True, False])
def test_bitplane_sign_equals_thresholded_integer_layer(shape, fused, monkeypatch):
    """+1 iff f·(W_b·p) >= t, for random and extreme pixels, both flips; ``fused=False`` forces the
    unfused path (bitplane_dot, then the comparison) that CPUs without AVX-512 VPOPCNTDQ take."""
    from qnnlib.runtime import bitplanes as bp

    if fused and bp.compiled_tile() != (8, 2):
        pytest.skip("the fused Eq. 6 pass needs AVX-512 VPOPCNTDQ")
    if not fused:
        monkeypatch.setattr(bp, "compiled_tile", lambda: (4, 1))
    n, h, k = shape
    rng = np.random.default_rng(n + h + k)
    p = rng.integers(0, 256, size=(n, k), dtype=np.uint8)
    p[0] = 255
    if n > 1:
        p[1] = 0
    w = pack(rng.standard_normal((h, k)))
    s1 = unpack(w, k).astype(np.int64).sum(1)
    t = rng.integers(-40 * k, 40 * k, size=h)
    f = rng.choice(np.array([-1, 1], dtype=np.int8), size=h)
    got = bp.bitplane_sign(p, w, s1, k, t, f, "cpu")
    assert got.shape == (n, -(-h // 64)) and got.dtype == np.uint64
    np.testing.assert_array_equal(got, _sign_reference(p, w, k, t, f))


def test_bitplane_panels_layout():
    rng = np.random.default_rng(1)
    p = rng.integers(0, 256, size=(3, 130), dtype=np.uint8)
    out = np.empty((3, 3, 8), dtype=np.uint64)
    pack_bitplane_panels(p, out)
    for n in range(8):
        np.testing.assert_array_equal(out[:, :, n], pack(((p >> n) & 1).astype(bool)))
