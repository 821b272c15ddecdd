"""Preprocessing per recipe: closed forms on small float64 arrays (qnnlib.data.preprocess)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnnlib.data.preprocess import (
    ZCA,
    divide_by_max,
    gaussian_kernel,
    gcn,
    lcn,
    preprocess,
    simple_stats,
    to_pm1,
    zca_cache_key,
    zca_cached,
    zca_fit,
)
from qnnlib.files import TMP_SUFFIX


def _data(n: int = 200, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d)


def _cov(x: np.ndarray, ddof: int) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc.T @ xc / (x.shape[0] - ddof)


@pytest.mark.parametrize("ddof", [0, 1])
def test_zca_tiny_eps_whitens_to_identity(ddof: int) -> None:
    x = _data()
    zca = zca_fit(x, 1e-10, ddof=ddof)
    w = zca.apply(x)
    np.testing.assert_allclose(_cov(w, ddof), np.eye(6), atol=1e-6)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=1e-9)


@pytest.mark.parametrize("ddof", [0, 1])
def test_zca_exact_formula_with_large_eps(ddof: int) -> None:
    x = _data()
    eps = 0.7
    s, u = np.linalg.eigh(_cov(x, ddof))
    zca = zca_fit(x, eps, ddof=ddof)
    np.testing.assert_allclose(zca.matrix, (u * (s + eps) ** -0.5) @ u.T, atol=1e-10)
    np.testing.assert_allclose(_cov(zca.apply(x), ddof), (u * (s / (s + eps))) @ u.T, atol=1e-10)
    np.testing.assert_array_equal(zca.matrix, zca.matrix.T)
    np.testing.assert_allclose(zca.mean, x.mean(axis=0))
    assert zca.eps == eps and zca.ddof == ddof and zca.dim == 6


def test_zca_applies_training_statistics_to_other_splits_and_keeps_shape() -> None:
    x = _data().reshape(200, 1, 2, 3)
    other = _data(n=7, seed=1).reshape(7, 1, 2, 3)
    zca = zca_fit(x, 0.1)
    out = zca.apply(other)
    assert out.shape == other.shape and out.dtype == np.float64
    expected = (other.reshape(7, 6) - x.reshape(200, 6).mean(axis=0)) @ zca.matrix
    np.testing.assert_allclose(out.reshape(7, 6), expected)
    t = zca.apply(torch.from_numpy(other.astype(np.float32)))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == other.shape
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="features"):
        zca.apply(np.zeros((3, 5)))


def test_two_zca_fits_compose_to_the_closed_form() -> None:
    """dp's ZCA (eps 0.1) then a refit ZCA (eps 1e-5), same normalisation: V diag((s + e2 (s + e1))^-1/2) Vᵀ."""
    x = _data()
    e1, e2 = 0.1, 1e-5
    first = zca_fit(x, e1)
    second = zca_fit(first.apply(x), e2)
    s, u = np.linalg.eigh(_cov(x, 0))
    np.testing.assert_allclose(first.matrix @ second.matrix, (u * (s + e2 * (s + e1)) ** -0.5) @ u.T, atol=1e-8)


@pytest.mark.parametrize("bad, exc, name", [
    ({"x_train": np.zeros(5)}, ValueError, "x_train"),
    ({"x_train": np.zeros((5, 2), dtype=np.int64)}, TypeError, "x_train"),
    ({"x_train": [[1.0, 2.0]]}, TypeError, "x_train"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"eps": -1.0}, ValueError, "eps"),
    ({"eps": float("nan")}, ValueError, "eps"),
    ({"eps": "0.1"}, TypeError, "eps"),
    ({"ddof": 2}, ValueError, "ddof"),
    ({"x_train": np.zeros((1, 3)), "ddof": 1}, ValueError, "x_train"),
])
def test_zca_bad_inputs_name_the_parameter(bad: dict, exc: type, name: str) -> None:
    kwargs = {"x_train": _data(n=10), "eps": 0.1, **bad}
    ddof = kwargs.pop("ddof", 0)
    with pytest.raises(exc, match=name):
        zca_fit(kwargs["x_train"], kwargs["eps"], ddof=ddof)


def _no_temporaries(d) -> None:
    assert not [p for p in d.iterdir() if p.name.endswith(TMP_SUFFIX) or p.name.startswith(".")]


def test_zca_cache_returns_same_matrices_and_is_keyed(tmp_path) -> None:
    x = _data()
    a = zca_cached(x, 0.1, tmp_path)
    files = sorted(tmp_path.glob("zca-*.npz"))
    assert len(files) == 1
    b = zca_cached(x.copy(), 0.1, tmp_path)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.matrix, zca_fit(x, 0.1).matrix)
    assert len(list(tmp_path.glob("zca-*.npz"))) == 1
    zca_cached(x, 0.2, tmp_path)
    y = x.copy()
    y[0, 0] += 1.0
    zca_cached(y, 0.1, tmp_path)
    zca_cached(x, 0.1, tmp_path, ddof=1)
    zca_cached(x.reshape(200, 2, 3), 0.1, tmp_path)
    zca_cached(x.astype(np.float32), 0.1, tmp_path)
    assert len(list(tmp_path.glob("zca-*.npz"))) == 6
    keys = {zca_cache_key(x, 0.1), zca_cache_key(x, 0.2), zca_cache_key(y, 0.1), zca_cache_key(x, 0.1, ddof=1),
            zca_cache_key(x.reshape(200, 2, 3), 0.1), zca_cache_key(x.astype(np.float32), 0.1)}
    assert len(keys) == 6
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage, not an npz", b"PK\x03\x04truncated"])
def test_zca_cache_refits_a_corrupt_file(tmp_path, content: bytes) -> None:
    x = _data()
    good = zca_cached(x, 0.1, tmp_path)
    (path,) = tmp_path.glob("zca-*.npz")
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="not a readable ZCA cache file"):
        again = zca_cached(x, 0.1, tmp_path)
    np.testing.assert_array_equal(again.matrix, good.matrix)
    with np.load(path) as z:  # rewritten, readable again
        np.testing.assert_array_equal(z["matrix"], good.matrix)
    _no_temporaries(tmp_path)


def test_zca_cache_refits_a_file_with_another_key(tmp_path) -> None:
    x, y = _data(), _data(seed=3)
    zca_cached(y, 0.1, tmp_path)
    (other,) = tmp_path.glob("zca-*.npz")
    target = tmp_path / f"zca-{zca_cache_key(x, 0.1)[:24]}.npz"
    other.rename(target)
    with pytest.warns(RuntimeWarning, match="does not match"):
        zca = zca_cached(x, 0.1, tmp_path)
    np.testing.assert_allclose(zca.matrix, zca_fit(x, 0.1).matrix)


def test_gcn_per_image_mean_zero_and_norm_rules() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 3, 4, 4))
    flat = x.reshape(5, -1)
    c = flat - flat.mean(axis=1, keepdims=True)
    out = gcn(x).reshape(5, -1)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)
    out = gcn(x, use_std=True).reshape(5, -1)
    np.testing.assert_allclose(out.std(axis=1), 1.0)  # population std: dp divides by sqrt(mean(c²))
    out = gcn(x, scale=2.0, sqrt_bias=10.0, use_std=True)
    np.testing.assert_allclose(out.reshape(5, -1), 2 * c / np.sqrt((c ** 2).mean(axis=1, keepdims=True) + 10))
    out = gcn(x, subtract_mean=False, sqrt_bias=1.0)
    np.testing.assert_allclose(out.reshape(5, -1), flat / np.sqrt((flat ** 2).sum(axis=1, keepdims=True) + 1))
    assert out.shape == x.shape and out.dtype == np.float64


def test_gcn_constant_image_is_left_at_zero_and_kinds_preserved() -> None:
    x = np.full((2, 1, 3, 3), 0.5)
    np.testing.assert_array_equal(gcn(x), 0.0)  # divisor 0 < eps replaced by 1
    t = gcn(torch.rand(2, 3, 4, 4, dtype=torch.float32), use_std=True, sqrt_bias=10.0)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (2, 3, 4, 4)


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"scale": 0.0}, ValueError, "scale"),
    ({"sqrt_bias": -1.0}, ValueError, "sqrt_bias"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"eps": None}, TypeError, "eps"),
])
def test_gcn_bad_inputs(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        gcn(np.ones((2, 3)), **kwargs)


def test_gcn_bad_x() -> None:
    with pytest.raises(ValueError, match="x"):
        gcn(np.ones(3))
    with pytest.raises(TypeError, match="x"):
        gcn(np.ones((2, 3), dtype=np.int32))


def test_gaussian_kernel_closed_form() -> None:
    g = gaussian_kernel(3, 1.0)
    e = np.exp(-0.5)
    raw = np.array([[e * e, e, e * e], [e, 1.0, e], [e * e, e, e * e]])
    np.testing.assert_allclose(g, raw / raw.sum())
    assert gaussian_kernel(9, 2.0).shape == (9, 9)
    np.testing.assert_allclose(gaussian_kernel(9, 2.0).sum(), 1.0)


def _smooth_numpy(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Direct 'same' convolution with zero padding of one plane (the Gaussian is symmetric)."""
    k = g.shape[0]
    r = k // 2
    padded = np.pad(p, r)
    out = np.zeros_like(p)
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            out[i, j] = (padded[i:i + k, j:j + k] * g).sum()
    return out


def _lcn_numpy(x: np.ndarray, k: int, std: float, th: float, divide_by_std: bool) -> np.ndarray:
    g = gaussian_kernel(k, std)
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            centred = x[n, c] - _smooth_numpy(x[n, c], g)
            if divide_by_std:
                out[n, c] = centred / (centred.std(ddof=1) + th)
            else:
                sigma = np.sqrt(_smooth_numpy(centred ** 2, g))
                out[n, c] = centred / np.maximum(np.maximum(sigma, sigma.mean()), th)
    return out


@pytest.mark.parametrize("divide_by_std", [False, True])
@pytest.mark.parametrize("k, std", [(3, 1.0), (5, 2.0)])
def test_lcn_matches_direct_numpy(divide_by_std: bool, k: int, std: float) -> None:
    x = np.random.default_rng(1).uniform(size=(2, 3, 6, 7))
    out = lcn(x, kernel_size=k, kernel_std=std, divide_by_std=divide_by_std)
    assert isinstance(out, np.ndarray) and out.shape == x.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, _lcn_numpy(x, k, std, 1e-4, divide_by_std), atol=1e-12)


def test_lcn_constant_image_is_zero_away_from_the_border() -> None:
    x = np.full((1, 2, 11, 11), 0.3)
    for divide_by_std in (False, True):
        out = lcn(x, kernel_size=5, divide_by_std=divide_by_std)
        np.testing.assert_allclose(out[:, :, 2:-2, 2:-2], 0.0, atol=1e-12)
        assert np.abs(out[:, :, 0, 0]).min() > 0  # zero padding, as dp: the border is not renormalised
    np.testing.assert_array_equal(lcn(np.zeros((1, 1, 5, 5)), kernel_size=3), 0.0)


def test_lcn_torch_float32_and_channels_independent() -> None:
    x = torch.rand(2, 3, 8, 8, dtype=torch.float32)
    out = lcn(x, divide_by_std=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == x.shape
    alone = lcn(x[:, 1:2], divide_by_std=True)
    torch.testing.assert_close(out[:, 1:2], alone)


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"kernel_size": 4}, ValueError, "kernel_size"),
    ({"kernel_size": 0}, ValueError, "kernel_size"),
    ({"kernel_size": -3}, ValueError, "kernel_size"),
    ({"kernel_size": 3.0}, TypeError, "kernel_size"),
    ({"kernel_std": 0.0}, ValueError, "kernel_std"),
    ({"threshold": 0.0}, ValueError, "threshold"),
])
def test_lcn_bad_parameters(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        lcn(np.ones((1, 1, 4, 4)), **kwargs)


def test_lcn_bad_x() -> None:
    with pytest.raises(ValueError, match="x must be 4-D"):
        lcn(np.ones((4, 4, 4)))
    with pytest.raises(TypeError, match="x"):
        lcn(torch.ones(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="x"):
        lcn([[1.0]])


def test_to_pm1_divide_by_max_and_simple_stats() -> None:
    x = np.array([[0.0, 127.5, 255.0]])
    np.testing.assert_allclose(to_pm1(x), [[-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(divide_by_max(np.array([[-4.0, 2.0]])), [[-2.0, 1.0]])
    with pytest.raises(ValueError, match="maximum"):
        divide_by_max(np.zeros((2, 2)))
    mean, std = simple_stats(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert mean == 2.5 and std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    with pytest.raises(ValueError, match="max_value"):
        to_pm1(x, max_value=0)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 4, 4)).astype(np.float64)


def test_preprocess_pm1_and_bad_rule() -> None:
    tr, va, te = _images(5, 0), _images(2, 1), _images(2, 2)
    out = preprocess("pm1", tr, va, te)
    for o, x in zip(out, (tr, va, te)):
        np.testing.assert_allclose(o, x * 2 / 255 - 1)
    with pytest.raises(ValueError, match="recipe_rule"):
        preprocess("zca", tr, va, te)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid"):
        preprocess("pm1", tr, np.ones(3), te)


def test_preprocess_torch7_cifar10_is_two_train_fitted_zcas(tmp_path) -> None:
    tr, va, te = _images(80, 0), _images(4, 1), _images(4, 2)
    out = preprocess("torch7-cifar10", tr, va, te, cache_dir=tmp_path)
    first = zca_fit(tr / 255, 0.1, ddof=0)
    second = zca_fit(first.apply(tr / 255), 1e-5, ddof=1)
    for o, x in zip(out, (tr, va, te)):
        np.testing.assert_allclose(o, second.apply(first.apply(x / 255)), atol=1e-8)
    assert len(list(tmp_path.glob("zca-*.npz"))) == 2
    again = preprocess("torch7-cifar10", tr, va, te, cache_dir=tmp_path)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(_cov(out[0].reshape(80, -1), 1), np.eye(48), atol=2e-3)


def test_preprocess_torch7_svhn_composition() -> None:
    tr, va, te = _images(6, 0), _images(3, 1), _images(3, 2)
    out = preprocess("torch7-svhn", tr, va, te)
    local = [divide_by_max(lcn(gcn(x / 255, sqrt_bias=10.0, use_std=True), 9, divide_by_std=True))
             for x in (tr, va, te)]
    mean, std = local[0].mean(), local[0].std(ddof=1)
    for o, lo in zip(out, local):
        np.testing.assert_allclose(o, (lo - mean) / std)
    assert abs(out[0].mean()) < 1e-12 and out[0].std(ddof=1) == pytest.approx(1.0)


def test_zca_dataclass_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="ZCA"):
        ZCA(mean=np.zeros(3), matrix=np.eye(2), eps=0.1, ddof=0)
