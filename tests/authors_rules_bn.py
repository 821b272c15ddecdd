"""Float64 NumPy re-statements of the authors' BN, init and input rules (issue 11 rows 5, 6, 8).

Written step by step from the authors' code, independently of qnnlib, so the tests can hold qnnlib's options
to them.  Sources (bare mirrors):

* T7  = itayhubara/BinaryNet (Torch7): ``Models/BatchNormalizationShiftPow2.lua`` (1-D shift BN),
  ``Models/SpatialBatchNormalizationShiftPow2.lua`` (2-D shift BN), ``Models/BinaryLinear.lua``, ``Data.lua``;
  eladhoffer/DataProvider.torch ``Container.lua`` (``normalize``).
* LAS = Lasagne/Lasagne ``lasagne/layers/normalization.py`` (``BatchNormLayer``), the BN of
  MatthieuCourbariaux/BinaryNet ``Train-time/mnist.py``.

Shift-BN arrays: x is (N, C) or (N, C, H, W); statistics are per channel over every other axis (the 2-D module
folds (N, C, H·W) and means over N then over H·W, T7 Spatial l. 81–83, 100–101 — the same mean).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ap2_t7", "sbn_forward_t7", "sbn_backward_t7", "sbn_running_t7", "sbn_eval_t7", "lasagne_bn_train",
           "lasagne_bn_update", "lasagne_bn_eval", "binary_linear_bias_bound_t7", "mnist_inputs_t7"]


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _ch(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A per-channel vector shaped to broadcast against x (T7 ``repeatTensor`` / ``view(1, nFeature, 1, 1)``)."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def ap2_t7(v: np.ndarray) -> np.ndarray:
    """T7 BatchNormalizationShiftPow2.lua l. 86, 92, 102, 110: ``sign(v) · 2^round(log|v| / log 2)``.

    Torch's ``round`` rounds halves away from zero; ``log 0 = −inf`` gives ``2^−inf = 0`` and ``sign 0 = 0``.
    """
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(divide="ignore"):
        e = np.log(np.abs(v)) / np.log(2.0)
    e = np.sign(e) * np.floor(np.abs(e) + 0.5)
    return np.sign(v) * np.power(2.0, e)


def sbn_forward_t7(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, eps: float = 1e-5) -> dict:
    """T7 BatchNormalizationShiftPow2.lua ``updateOutput`` training branch, l. 75–116 (Spatial: l. 72–130).

    l. 77: ``μ = mean(x)``; l. 82–86: ``centeredOrg = x − μ``, ``centered = AP2(x − μ)``;
    l. 88–90: ``std = 1/√(mean(centered · centeredOrg) + ε)`` (this is 1/σ); l. 92: ``std ← AP2(std)``;
    l. 97: ``x̂ = centeredOrg · std``; l. 98–102: ``normalized = AP2(x̂)``;
    l. 108–115: ``y = AP2(γ) · x̂ + β``.  Returns every buffer the backward reads, plus ``mu`` and the
    un-rounded ``invstd`` that feed the running averages (l. 78, 91).
    """
    ax = _axes(x)
    mu = x.mean(axis=ax)
    centered_org = x - _ch(mu, x)
    centered = ap2_t7(centered_org)
    invstd = 1.0 / np.sqrt((centered * centered_org).mean(axis=ax) + eps)
    std = ap2_t7(invstd)
    out = centered_org * _ch(std, x)
    normalized = ap2_t7(out)
    weight_ap2 = None
    if gamma is not None:
        weight_ap2 = ap2_t7(gamma)
        out = out * _ch(weight_ap2, x) + _ch(beta, x)
    return {"y": out, "mu": mu, "invstd": invstd, "centered": centered, "std": std, "normalized": normalized,
            "weight_ap2": weight_ap2}


def sbn_backward_t7(saved: dict, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """T7 BatchNormalizationShiftPow2.lua ``updateGradInput`` l. 120–145 and ``accGradParameters`` l. 147–157
    (Spatial: l. 135–170 and l. 172–189), one statement per Lua line group:

    l. 126–129: ``gi = −mean(centered · g) · centered``; l. 130–131: ``gi ← gi · std · std``;
    l. 133–135: ``gi ← gi + g − mean(g)``; l. 136–137: ``gi ← gi · std``; l. 139–141: ``gi ← gi · AP2(γ)``;
    l. 150–153: ``dγ = Σ normalized · g``; l. 154–155: ``dβ = Σ g`` (scale 1).
    """
    ax = _axes(gy)
    c, std = saved["centered"], _ch(saved["std"], gy)
    gi = -_ch((c * gy).mean(axis=ax), gy) * c
    gi = gi * std * std
    gi = gi + gy - _ch(gy.mean(axis=ax), gy)
    gi = gi * std
    if saved["weight_ap2"] is None:
        return gi, None, None
    gi = gi * _ch(saved["weight_ap2"], gy)
    return gi, (saved["normalized"] * gy).sum(axis=ax), gy.sum(axis=ax)


def sbn_running_t7(running_mean: np.ndarray, running_std: np.ndarray, saved: dict,
                   momentum: float = 0.125) -> tuple[np.ndarray, np.ndarray]:
    """T7 BatchNormalizationShiftPow2.lua l. 78 and l. 91 (Spatial l. 84, 103): ``r ← r · (1 − m) + m · new``
    for the mean and for the un-rounded 1/σ.  Starts: 1-D mean 0, 1/σ 1 (l. 27–28, 44–45); 2-D both 0
    (Spatial l. 73–78)."""
    return (running_mean * (1 - momentum) + momentum * saved["mu"],
            running_std * (1 - momentum) + momentum * saved["invstd"])


def sbn_eval_t7(x: np.ndarray, running_mean: np.ndarray, running_std: np.ndarray, gamma: np.ndarray,
                beta: np.ndarray) -> np.ndarray:
    """T7 BatchNormalizationShiftPow2.lua l. 68–74 then l. 106–116: ``AP2(γ)·(x − r_mean)·AP2(r_std) + β``."""
    out = (x - _ch(running_mean, x)) * _ch(ap2_t7(running_std), x)
    return out * _ch(ap2_t7(gamma), x) + _ch(beta, x)


def lasagne_bn_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-4) -> dict:
    """LAS normalization.py ``BatchNormLayer.get_output_for`` l. 275–276 and l. 325 (training):
    ``inv_std = 1/√(var(x) + ε)`` with Theano's (biased, ÷N) variance; ``y = (x − μ)·(γ·inv_std) + β``."""
    ax = _axes(x)
    mean = x.mean(axis=ax)
    var = ((x - _ch(mean, x)) ** 2).sum(axis=ax) / (x.size / x.shape[1])
    inv_std = 1.0 / np.sqrt(var + eps)
    return {"y": (x - _ch(mean, x)) * _ch(gamma * inv_std, x) + _ch(beta, x), "mean": mean, "inv_std": inv_std}


def lasagne_bn_update(running_mean: np.ndarray, running_inv_std: np.ndarray, out: dict,
                      alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """LAS normalization.py l. 301–305: ``mean ← (1 − α)·mean + α·μ_B``, ``inv_std ← (1 − α)·inv_std + α·inv_std_B``
    (starts: mean 0, inv_std 1, l. 236)."""
    return ((1 - alpha) * running_mean + alpha * out["mean"],
            (1 - alpha) * running_inv_std + alpha * out["inv_std"])


def lasagne_bn_eval(x: np.ndarray, running_mean: np.ndarray, running_inv_std: np.ndarray, gamma: np.ndarray,
                    beta: np.ndarray) -> np.ndarray:
    """LAS normalization.py l. 283–285 and l. 325 (deterministic): ``(x − mean)·(γ·inv_std) + β``."""
    return (x - _ch(running_mean, x)) * _ch(gamma * running_inv_std, x) + _ch(beta, x)


def binary_linear_bias_bound_t7(fan_in: int) -> float:
    """T7 BinaryLinear.lua l. 29 and l. 40: ``bias ~ U(−stdv, stdv)``, ``stdv = 1/sqrt(inputSize)`` (weights
    ``U(−1, 1)``, l. 39)."""
    return 1.0 / np.sqrt(fan_in)


def mnist_inputs_t7(train_pixels: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """T7 Data.lua l. 82 (``dp.Mnist{scale={0,1}}``: ``pixel/255``) and l. 195–197 with ``normalization='simple'``
    (Main_BinaryNet_MNIST.lua l. 47), i.e. DataProvider.torch Container.lua l. 225–229: scalar
    ``mean = Data:mean()``, ``std = Data:std()`` (÷(n − 1)) over the training set, ``(x − mean)/std`` for every
    split.  Returns ``pixels`` flattened to (N, 784), standardised."""
    t = np.asarray(train_pixels, dtype=np.float64).ravel() / 255.0
    n = t.size
    mean = t.sum() / n
    std = np.sqrt(((t - mean) ** 2).sum() / (n - 1))
    x = np.asarray(pixels, dtype=np.float64).reshape(len(pixels), -1) / 255.0
    return (x - mean) / std
