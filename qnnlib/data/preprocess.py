"""Input preprocessing per recipe, as the authors' code does it: [-1, 1] scaling, ZCA, GCN, LCN.

The two code bases of the paper preprocess images differently (file:line below are of the authors'
repositories and of the Torch7 libraries they call, read at their newest commits):

``"pm1"`` — Theano (MatthieuCourbariaux/BinaryNet ``Train-time/cifar10.py:87-89``, ``Train-time/svhn.py:100-102``)
    ``x · 2/255 − 1`` on the raw 0..255 pixels, nothing else (:func:`to_pm1`).

``"torch7-cifar10"`` — Torch7 (itayhubara/BinaryNet ``Data.lua`` with ``Main_BinaryNet_Cifar10.lua`` defaults
``-whiten true``, ``-format rgb``, ``-normalization simple``: lines 50-52)
    1. ``dp.Cifar10{scale={0,1}, valid_ratio=0.1, input_preprocess={dp.ZCA()}}`` (``Data.lua:58-60``): pixels
       rescaled to [0, 1] (dp ``data/datasource.lua:338-348``, by the data's min and max, taken here as 0 and
       255), then dp's ZCA with its default ``filter_bias=0.1`` (dp ``preprocess/zca.lua:23``), covariance
       normalised by ``n`` (``zca.lua:43``), fitted on the training split only (dp
       ``data/datasource.lua:168-188``: ``can_fit=true`` for train, ``false`` for valid and test);
    2. then, because ``opt.whiten`` is true (``Data.lua:13,163``), a *second* ZCA,
       ``unsup.zca_whiten`` (koraykv/unsup ``whitening.lua:14-47``) with ``epsilon=1e-5`` (``whitening.lua:15``),
       covariance normalised by ``n − 1`` (unsup ``pca.lua:9``), refitted on the already whitened training
       split and applied to valid and test with the training statistics (``Data.lua:174-180``). The two
       compose to one ZCA with eigenvalues ``(s + e2 (s + e1))^-1/2`` (``e1 = 0.1``, ``e2 = 1e-5``, same
       ``n``-normalisation): practically full whitening, much stronger than dp's ``filter_bias`` alone.
    No YUV (``-format rgb``) and no further normalisation (the ``Whiten`` branch skips it, ``Data.lua:163-181``).

``"torch7-svhn"`` — Torch7 (``Main_BinaryNet_SVHN.lua:47-50`` defaults ``-whiten false``, ``-format rgb``,
``-normalization simple``)
    1. ``dp.Svhn{scale={0,1}, input_preprocess={GCN, LeCunLCN}}`` (``Data.lua:105-108``): [0, 1] as above, then
       :func:`gcn` with ``use_std=true, sqrt_bias=10`` (``Data.lua:106``; dp ``preprocess/gcn.lua``), then
       :func:`lcn` with ``kernel_size=9, divide_by_std=true`` and dp's default ``kernel_std=2``,
       ``threshold=1e-4`` (``Data.lua:107``; dp ``preprocess/lecunlcn.lua``). Both are per-image, so there
       is nothing to fit.
    2. Each split divided by its own maximum (``Data.lua:109-111``, :func:`divide_by_max`).
    3. ``Container:normalize('simple')`` (eladhoffer/DataProvider.torch ``Container.lua:225-229``): one scalar
       mean and (``n − 1``) standard deviation of all training values, applied to all three splits
       (``Data.lua:184-197``; :func:`simple_stats`). This branch runs although ``-dp_prepro`` defaults to
       true: ``Data.lua:181`` tests a global ``dp_prepro`` that the main script never sets (it sets
       ``opt.dp_prepro``), so ``elseif dp_prepro`` is always false.
    YUV is *not* used: ``-format`` defaults to ``rgb`` in both main scripts, so there is no ``rgb_to_yuv``
    here (``Data.lua:156-160`` would also convert only train and test, not valid).

Authors' caches (``Data.lua:24-30,47-49,93-99,165-177``) are keyed by the format string only; :func:`zca_cached`
keys by a hash of the training data, its shape and dtype, ``eps``, ``ddof`` and :data:`ZCA_CACHE_VERSION`.

Functions take NumPy arrays or torch tensors of floating dtype, shape ``(N, ...)`` (``(N, C, H, W)`` for
:func:`lcn`), and return the same kind, dtype and shape. Bad arguments raise ``TypeError`` (wrong type) or
``ValueError`` (wrong value), naming the parameter.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from qnnlib.checks import check_int
from qnnlib.files import atomic_write, unreadable, writable_dir

__all__ = [
    "ZCA",
    "ZCA_CACHE_VERSION",
    "Recipe",
    "divide_by_max",
    "gaussian_kernel",
    "gcn",
    "lcn",
    "preprocess",
    "simple_stats",
    "to_pm1",
    "zca_cache_key",
    "zca_cached",
    "zca_fit",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)
Recipe = Literal["pm1", "torch7-cifar10", "torch7-svhn"]

ZCA_CACHE_VERSION = 1
"""Bumped whenever the fitted ZCA changes for the same inputs; part of every cache key."""

_CHUNK = 4096  # rows per block when accumulating the covariance in float64


def _as_numpy(x: Any, name: str, min_ndim: int = 2) -> tuple[np.ndarray, bool]:
    """``x`` as a floating NumPy array (a torch tensor is moved to the CPU) and whether it was a tensor."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        arr, was_torch = x.detach().cpu().numpy(), True
    elif isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        arr, was_torch = x, False
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions (N, ...), got shape {tuple(arr.shape)}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one example, got shape {tuple(arr.shape)}")
    return arr, was_torch


def _like(out: np.ndarray, was_torch: bool, like: Any) -> Any:
    if was_torch:
        return torch.from_numpy(np.ascontiguousarray(out)).to(like.device)
    return out


def _check_real(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0) or (nonnegative and v < 0):
        wanted = "> 0" if positive else ">= 0" if nonnegative else "finite"
        raise ValueError(f"{name} must be a finite number {wanted}, got {v}")
    return v


def to_pm1(x: Array, max_value: float = 255.0) -> Array:
    """Theano rule: ``x · 2/max_value − 1``, pixels 0..``max_value`` to [-1, 1].

    Restates ``np.subtract(np.multiply(2./255., X), 1.)`` (MatthieuCourbariaux/BinaryNet
    ``Train-time/cifar10.py:87-89``, ``Train-time/svhn.py:100-102``).
    """
    arr, was_torch = _as_numpy(x, "x", min_ndim=1)
    m = _check_real(max_value, "max_value", positive=True)
    return _like((arr * (2.0 / m) - 1.0).astype(arr.dtype, copy=False), was_torch, x)


@dataclass(frozen=True, eq=False)
class ZCA:
    """A fitted ZCA whitening: ``apply(x) = (flatten(x) − mean) @ matrix``, reshaped back.

    ``matrix = V diag((s + eps)^-1/2) Vᵀ`` is symmetric; ``s, V`` are the eigenvalues and eigenvectors of the
    training covariance normalised by ``N − ddof``. ``mean`` (D,) and ``matrix`` (D, D) are float64.
    """

    mean: np.ndarray
    matrix: np.ndarray
    eps: float
    ddof: int

    def __post_init__(self) -> None:
        d = self.mean.shape[0] if self.mean.ndim == 1 else -1
        if self.mean.ndim != 1 or self.matrix.shape != (d, d):
            raise ValueError(f"ZCA needs mean (D,) and matrix (D, D), got {self.mean.shape} and {self.matrix.shape}")

    @property
    def dim(self) -> int:
        """Number of features D (the product of an example's dimensions)."""
        return int(self.mean.shape[0])

    def apply(self, x: Array) -> Array:
        """Whiten ``x`` (N, ...) with the training statistics; computed in ``x``'s dtype (as Torch7 did in float)."""
        arr, was_torch = _as_numpy(x, "x")
        flat = arr.reshape(arr.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x has {flat.shape[1]} features per example but the ZCA was fitted on {self.dim}")
        dt = arr.dtype
        out = (flat - self.mean.astype(dt)) @ self.matrix.astype(dt)
        return _like(out.reshape(arr.shape), was_torch, x)


def zca_fit(x_train: Array, eps: float, *, ddof: int = 0) -> ZCA:
    """Fit ZCA whitening on the training split ``x_train`` (N, ...); apply it to every split with ``.apply``.

    Rule (float64 throughout): ``mean`` = per-feature mean over the N examples; ``C = Xcᵀ Xc / (N − ddof)``;
    ``C = V diag(s) Vᵀ``; ``matrix = V diag((s + eps)^-1/2) Vᵀ``. The whitened training data then has
    covariance ``V diag(s / (s + eps)) Vᵀ`` (identity as ``eps → 0`` on the span of the data).

    - ``ddof=0`` restates dp's ``ZCA:fit`` (nicholas-leonard/dp ``preprocess/zca.lua:37-44,73-76``: ``X:mean(1)``,
      ``mm(Xᵀ, X) / n``, ``+ filter_bias · I``, ``P = V diag(λ^-1/2) Vᵀ``), ``eps`` = ``filter_bias`` (default 0.1,
      ``zca.lua:23``); dp applies ``(X − mean) P`` (``zca.lua:86-91``).
    - ``ddof=1`` restates ``unsup.zca_whiten`` (koraykv/unsup ``whitening.lua:25-32``, covariance ``/(n−1)`` in
      ``pca.lua:9``), ``eps`` = its ``epsilon`` (default 1e-5, ``whitening.lua:15``).

    Tiny negative eigenvalues from rounding are clipped to 0 (dp asserts ``min > 0`` after adding the bias,
    ``zca.lua:55``). dp's ``n_component``/``n_drop_component`` options are unused by the authors and absent here.
    """
    arr, _ = _as_numpy(x_train, "x_train")
    e = _check_real(eps, "eps", positive=True)
    dd = check_int(ddof, "ddof", minimum=0, maximum=1)
    n = arr.shape[0]
    if n - dd < 1:
        raise ValueError(f"x_train must hold more than ddof={dd} examples, got {n}")
    flat = arr.reshape(n, -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    d = flat.shape[1]
    cov = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        block = flat[start:start + _CHUNK].astype(np.float64) - mean
        cov += block.T @ block
    cov /= n - dd
    s, v = np.linalg.eigh((cov + cov.T) / 2)
    s = np.clip(s, 0.0, None)
    matrix = (v * (s + e) ** -0.5) @ v.T
    return ZCA(mean=mean, matrix=(matrix + matrix.T) / 2, eps=e, ddof=dd)


def zca_cache_key(x_train: Array, eps: float, *, ddof: int = 0) -> str:
    """SHA-256 (hex) of :data:`ZCA_CACHE_VERSION`, ``x_train``'s dtype, shape and bytes (C order), ``eps``, ``ddof``."""
    arr, _ = _as_numpy(x_train, "x_train")
    e = _check_real(eps, "eps", positive=True)
    dd = check_int(ddof, "ddof", minimum=0, maximum=1)
    h = hashlib.sha256()
    h.update(f"qnnlib-zca-v{ZCA_CACHE_VERSION}|{arr.dtype.str}|{tuple(arr.shape)}|{e.hex()}|{dd}|".encode())
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def _load_zca(path: Path, key: str, dim: int) -> ZCA:
    with np.load(path, allow_pickle=False) as z:
        if str(z["key"]) != key:
            raise ValueError(f"cache key {str(z['key'])[:12]}… does not match {key[:12]}…")
        zca = ZCA(mean=np.array(z["mean"], dtype=np.float64), matrix=np.array(z["matrix"], dtype=np.float64),
                  eps=float(z["eps"]), ddof=int(z["ddof"]))
    if zca.dim != dim or not (np.isfinite(zca.mean).all() and np.isfinite(zca.matrix).all()):
        raise ValueError(f"cached ZCA has {zca.dim} features (expected {dim}) or non-finite entries")
    return zca


def zca_cached(x_train: Array, eps: float, cache_dir: str | Path, *, ddof: int = 0) -> ZCA:
    """:func:`zca_fit`, with the fitted mean and matrix cached in ``cache_dir/zca-<key[:24]>.npz``.

    The key is :func:`zca_cache_key` (data bytes, shape, dtype, ``eps``, ``ddof``, version), so other data or
    another ``eps`` gets another file; the full key is stored inside and checked on load. The file is written
    with :func:`qnnlib.files.atomic_write` (verified readable before the rename), so no temporary is left.
    A cache file that cannot be read (truncated, emptied, foreign, wrong key or shape) is *refitted and
    rewritten*, with a ``RuntimeWarning`` carrying :func:`qnnlib.files.unreadable`'s message: the cache is
    derived data, so a bad copy costs one fit, never a failed run. A ``cache_dir`` that cannot be created or
    written raises :class:`qnnlib.files.NotWritableError`.
    """
    arr, _ = _as_numpy(x_train, "x_train")
    key = zca_cache_key(arr, eps, ddof=ddof)
    directory = writable_dir(cache_dir, "pass another cache_dir")
    path = directory / f"zca-{key[:24]}.npz"
    dim = int(np.prod(arr.shape[1:]))
    if path.exists():
        try:
            return _load_zca(path, key, dim)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            msg = unreadable(path, exc, "Refitting the ZCA and rewriting the file.", what="ZCA cache file")
            warnings.warn(str(msg), RuntimeWarning, stacklevel=2)
    zca = zca_fit(arr, eps, ddof=ddof)
    with atomic_write(path, verify=lambda tmp: _load_zca(tmp, key, dim)) as fh:
        np.savez(fh, key=np.array(key), mean=zca.mean, matrix=zca.matrix, eps=np.float64(zca.eps),
                 ddof=np.int64(zca.ddof))
    return zca


def gcn(x: Array, scale: float = 1.0, sqrt_bias: float = 0.0, eps: float = 1e-8, subtract_mean: bool = True,
        use_std: bool = False) -> Array:
    """Global contrast normalisation of each example over all its features (channels included).

    ``c = x − mean(x)`` (if ``subtract_mean``); ``d = sqrt(mean(c²) + sqrt_bias)`` with ``use_std`` else
    ``sqrt(sum(c²) + sqrt_bias)``; ``d < eps`` is replaced by 1; result ``scale · c / d``. Restates dp's
    ``GCN:transform`` (nicholas-leonard/dp ``preprocess/gcn.lua:84-100``; defaults ``scale=1``, ``sqrt_bias=0``,
    ``use_std=false`` at ``gcn.lua:31-38``; ``eps`` is its ``min_divisor`` 1e-8, hard-coded at ``gcn.lua:98``).
    The authors use ``use_std=True, sqrt_bias=10`` on [0, 1] pixels (itayhubara/BinaryNet ``Data.lua:106``), where
    ``sqrt_bias`` dominates (an image's variance is ≲ 0.25), so the division is nearly by a constant ≈ √10.
    Computed in float64, returned in ``x``'s dtype.
    """
    arr, was_torch = _as_numpy(x, "x")
    sc = _check_real(scale, "scale", positive=True)
    sb = _check_real(sqrt_bias, "sqrt_bias", nonnegative=True)
    e = _check_real(eps, "eps", positive=True)
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    if subtract_mean:
        flat = flat - flat.mean(axis=1, keepdims=True)
    sq = flat ** 2
    d = np.sqrt((sq.mean(axis=1, keepdims=True) if use_std else sq.sum(axis=1, keepdims=True)) + sb)
    d[d < e] = 1.0
    out = (sc * flat / d).astype(arr.dtype).reshape(arr.shape)
    return _like(out, was_torch, x)


def gaussian_kernel(kernel_size: int, std: float) -> np.ndarray:
    """The ``kernel_size × kernel_size`` Gaussian of standard deviation ``std``, centred, normalised to sum 1.

    Restates dp's ``LeCunLCN.gaussianFilter`` (nicholas-leonard/dp ``preprocess/lecunlcn.lua:54-69``):
    ``exp(−(i² + j²) / (2 std²))`` for offsets ``i, j`` from the centre, divided by the sum.
    """
    k = check_int(kernel_size, "kernel_size")
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {k}")
    s = _check_real(std, "kernel_std", positive=True)
    r = np.arange(k, dtype=np.float64) - k // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * s * s))
    return g / g.sum()


def lcn(x: Array, kernel_size: int = 9, kernel_std: float = 2.0, threshold: float = 1e-4,
        divide_by_std: bool = False) -> Array:
    """LeCun local contrast normalisation of images ``x`` (N, C, H, W), each channel on its own.

    Restates dp's ``LeCunLCN`` (nicholas-leonard/dp ``preprocess/lecunlcn.lua``), defaults ``kernel_size=9``,
    ``kernel_std=2``, ``threshold=1e-4``, ``divide_by_std=false`` (``lecunlcn.lua:20-29``); channels one by one
    (``lecunlcn.lua:111-120``; dp's default channel list ``{1,2,3}`` is all channels of an RGB image, here all
    channels). With ``G`` = :func:`gaussian_kernel` and ``*`` a 2-D convolution with *zero* padding and output
    the size of the input (dp's full ``conv2`` cropped by ``mid = ceil(k/2)``, ``lecunlcn.lua:134-139``):

    - subtractive: ``c = x − G * x``;
    - ``divide_by_std`` (the authors' choice, itayhubara/BinaryNet ``Data.lua:107``): ``c / (std(c) + threshold)``,
      ``std`` over the H×W pixels of the image's channel with Torch7's default ``n − 1`` normalisation
      (``lecunlcn.lua:142-146``);
    - otherwise divisive: ``σ = sqrt(G * c²)``, ``m`` = mean of ``σ`` over the image's channel,
      ``c / max(σ, m, threshold)`` (``lecunlcn.lua:150-165``).

    The zero padding means a constant image maps to 0 only at pixels at least ``kernel_size // 2`` from the
    border (near the border the local mean counts the padding's zeros); Torch's
    ``nn.SpatialSubtractiveNormalization`` instead renormalises the border — not what dp, hence the authors, do.
    Torch conv in ``x``'s dtype.
    """
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"x must have a floating dtype, got {x.dtype}")
        t, was_numpy = torch.from_numpy(np.ascontiguousarray(x)), True
    elif isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"x must have a floating dtype, got {x.dtype}")
        t, was_numpy = x.detach(), False
    else:
        raise TypeError(f"x must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")
    if t.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {tuple(t.shape)}")
    g = gaussian_kernel(kernel_size, kernel_std)
    th = _check_real(threshold, "threshold", positive=True)
    n, c, h, w = t.shape
    k = g.shape[0]
    planes = t.reshape(n * c, 1, h, w)
    weight = torch.as_tensor(g, dtype=t.dtype, device=t.device).view(1, 1, k, k)

    def smooth(p: torch.Tensor) -> torch.Tensor:
        return F.conv2d(p, weight, padding=k // 2)

    centred = planes - smooth(planes)
    if divide_by_std:
        std = centred.reshape(n * c, -1).std(dim=1, unbiased=True) if h * w > 1 else torch.zeros(n * c, dtype=t.dtype)
        out = centred / (std + th).view(-1, 1, 1, 1)
    else:
        sigma = smooth(centred * centred).clamp_min(0).sqrt()
        m = sigma.reshape(n * c, -1).mean(dim=1).view(-1, 1, 1, 1)
        out = centred / torch.maximum(sigma, m).clamp_min(th)
    out = out.reshape(n, c, h, w)
    return out.numpy() if was_numpy else out


def divide_by_max(x: Array) -> Array:
    """``x / max(x)`` (the split's largest value, not its largest magnitude), as ``TrainData.data:div(
    TrainData.data:max())`` does to each SVHN split on its own (itayhubara/BinaryNet ``Data.lua:109-111``)."""
    arr, was_torch = _as_numpy(x, "x", min_ndim=1)
    m = float(arr.max())
    if not math.isfinite(m) or m == 0:
        raise ValueError(f"x must have a finite, nonzero maximum to divide by, got {m}")
    return _like((arr / arr.dtype.type(m)).astype(arr.dtype, copy=False), was_torch, x)


def simple_stats(x_train: Array) -> tuple[float, float]:
    """Scalar mean and ``n − 1`` standard deviation of all values of the training split; a split is then
    normalised as ``(x − mean) / std``. Restates DataProvider.torch ``Container:normalize('simple')``
    (eladhoffer/DataProvider.torch ``Container.lua:225-229``; Torch7 ``std`` normalises by ``n − 1`` by default,
    torch7 ``dok/maths.dok``)."""
    arr, _ = _as_numpy(x_train, "x_train", min_ndim=1)
    if arr.size < 2:
        raise ValueError("x_train must hold at least two values")
    return float(arr.mean(dtype=np.float64)), float(arr.std(dtype=np.float64, ddof=1))


def preprocess(recipe_rule: Recipe, train: Array, valid: Array, test: Array,
               cache_dir: str | Path | None = None) -> tuple[Array, Array, Array]:
    """Preprocess raw 0..255 images ``(N, C, H, W)`` of the three splits as the recipe's code does (module docstring).

    Statistics come from ``train`` only. ``cache_dir`` (``"torch7-cifar10"`` only) caches both ZCA fits with
    :func:`zca_cached`. Returns ``(train, valid, test)`` of the inputs' kind and dtype.
    """
    if recipe_rule not in ("pm1", "torch7-cifar10", "torch7-svhn"):
        raise ValueError(f"recipe_rule must be 'pm1', 'torch7-cifar10' or 'torch7-svhn', got {recipe_rule!r}")
    splits = {"train": train, "valid": valid, "test": test}
    for name, x in splits.items():
        _as_numpy(x, name)
    if recipe_rule == "pm1":
        return to_pm1(train), to_pm1(valid), to_pm1(test)
    unit = {name: x / 255.0 for name, x in splits.items()}
    if recipe_rule == "torch7-cifar10":
        def fit(x: Any, eps: float, ddof: int) -> ZCA:
            return zca_fit(x, eps, ddof=ddof) if cache_dir is None else zca_cached(x, eps, cache_dir, ddof=ddof)

        dp_zca = fit(unit["train"], 0.1, 0)
        once = {name: dp_zca.apply(x) for name, x in unit.items()}
        unsup_zca = fit(once["train"], 1e-5, 1)
        return unsup_zca.apply(once["train"]), unsup_zca.apply(once["valid"]), unsup_zca.apply(once["test"])
    local = {name: divide_by_max(lcn(gcn(x, sqrt_bias=10.0, use_std=True), kernel_size=9, divide_by_std=True))
             for name, x in unit.items()}
    mean, std = simple_stats(local["train"])
    return tuple((x - mean) / std for x in local.values())  # type: ignore[return-value]
