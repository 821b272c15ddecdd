"""Batch norm and sign folded into one integer threshold and one sign flip per neuron.

A hidden neuron of a BNN computes ``a = sign(BN(d + bias))`` (eval-mode BN, ``sign(0) = +1``) of an
integer dot product ``d``. BN is monotone in ``d`` per neuron, so ``a = +1 iff f·d ≥ t`` for an
integer threshold ``t`` and a flip ``f ∈ {+1, −1}`` (``f = −1`` where γ < 0; γ = 0 gives a constant
neuron, stored with an out-of-range ``t``). At inference the whole BN + sign is then one integer
comparison (:func:`threshold_activations`, packed straight into the next layer's binary words).

**Hidden layers k ≥ 2 — exact** (:func:`hidden_thresholds`). ``d = W_k^b · a_{k-1}^b`` satisfies
``d ≡ K (mod 2)`` and ``|d| ≤ K``. Instead of solving for the crossing point analytically (which could
disagree with PyTorch's float32 rounding by one step), the model's **own float32 pipeline** — ``s = d
+ bias`` as a float32 tensor, ``torch.nn.functional.batch_norm`` with the layer's running statistics and
ε, ``>= 0`` — is evaluated on every candidate ``d ∈ {−K, −K+2, …, K}`` for all neurons at once, in the
model's (N, C) layout; :func:`threshold_from_table` checks that the result is monotone in ``d`` (raises
otherwise) and reads ``t`` off the table. The thresholds therefore reproduce ``sign(BN(d + bias))``
bit for bit. ``fragile`` counts the neurons whose decision changes when ``s`` moves by
``δ = ulp(K + |bias|)`` (PyTorch's blocked ``F.linear`` can round ``s`` that far from ``d + bias``).

**First layer — float64 threshold** (:func:`first_layer_thresholds`). On the exact integer
``D = W_b·p`` of Eq. 6 (:mod:`qnnlib.runtime.bitplanes`), ``s = (2/255)·D − S + bias``; BN and sign fold into
``f·D ≥ t`` where ``t`` is the crossing point of ``BN(s) = 0`` solved in float64.

**Diverged layers are refused** (:func:`check_finite`). A NaN or ±inf running mean, running variance, γ, β
or fc bias (or a negative running variance) makes BN non-monotone or constant, so it has no meaningful
threshold: both derivations call :func:`check_finite` first and raise :class:`NonFiniteStatisticsError`
naming the layer, the parameter and the neurons, instead of folding the neuron into a silently wrong
constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange
from torch import nn

from qnnlib.norm import LasagneBatchNorm
from qnnlib.runtime.bitpack import WORD_BITS, pack, pack_word, packed_width

__all__ = [
    "NonFiniteStatisticsError",
    "check_finite",
    "bn_tensors",
    "batch_norm",
    "threshold_from_table",
    "hidden_thresholds",
    "first_layer_thresholds",
    "threshold_pack",
    "threshold_activations",
]


# ---------------------------------------------------------------------------------------------------
# The model's eval-mode batch norm
# ---------------------------------------------------------------------------------------------------


def bn_tensors(bn: nn.Module) -> dict[str, torch.Tensor | float]:
    """A BN layer's running mean/var, γ (``weight``), β (``bias``) as float32 CPU tensors, and ε.

    For :class:`qnnlib.norm.LasagneBatchNorm` (the Theano code's BN) the dict also holds ``invstd`` (its running
    1/σ), which :func:`batch_norm` then uses exactly as that module's eval formula does; ``var`` is its
    equivalent ``1/invstd² − ε`` (for the checks of :func:`check_finite`).
    """
    h = bn.num_features
    w = bn.weight.detach().cpu().float() if bn.weight is not None else torch.ones(h)
    b = bn.bias.detach().cpu().float() if bn.bias is not None else torch.zeros(h)
    out: dict[str, torch.Tensor | float] = {"mean": bn.running_mean.detach().cpu().float(), "weight": w, "bias": b,
                                            "eps": float(bn.eps)}
    if isinstance(bn, LasagneBatchNorm):
        out["invstd"] = bn.running_invstd.detach().cpu().float()
        out["var"] = bn.running_var_equivalent().cpu().float()
    else:
        out["var"] = bn.running_var.detach().cpu().float()
    return out


def batch_norm(s: torch.Tensor, p: dict) -> torch.Tensor:
    """Eval-mode BN exactly as the model computes it: ``nn.BatchNorm1d.forward``'s kernel (same (N, C) layout), or
    for a Lasagne BN (``p["invstd"]``) its ``(s − mean)·(γ·invstd) + β`` in float32."""
    if p.get("invstd") is not None:
        return (s - p["mean"].view(1, -1)) * (p["weight"] * p["invstd"]).view(1, -1) + p["bias"].view(1, -1)
    return F.batch_norm(s, p["mean"], p["var"], p["weight"], p["bias"], training=False, momentum=0.0,
                        eps=p["eps"])


# ---------------------------------------------------------------------------------------------------
# Threshold derivation
# ---------------------------------------------------------------------------------------------------


class NonFiniteStatisticsError(ValueError):
    """A layer's BN parameters or bias are NaN/±inf (a diverged run): no threshold reproduces its sign(BN)."""


_BN_NAMES = {"mean": "running_mean", "var": "running_var", "weight": "weight (γ)", "bias": "bias (β)"}


def check_finite(bnp: dict, bias: Any = None, layer: str = "the layer") -> None:
    """Raise :class:`NonFiniteStatisticsError` if ``bnp``'s running mean/var, γ, β or the fc ``bias`` hold NaN
    or ±inf, or the running variance is negative; the message names ``layer``, each bad parameter and its
    first neurons. ``bnp`` is :func:`bn_tensors`' dict; ``bias`` a tensor or array (``None``: no fc bias).
    """
    lasagne = bnp.get("invstd") is not None
    params = [(_BN_NAMES[key], np.asarray(bnp[key], dtype=np.float64)) for key in _BN_NAMES
              if not (lasagne and key == "var")]
    if lasagne:
        params.insert(1, ("running_invstd", np.asarray(bnp["invstd"], dtype=np.float64)))
    if bias is not None:
        params.append(("fc bias", np.asarray(bias, dtype=np.float64)))
    problems = []
    for pname, v in params:
        bad = ~np.isfinite(v)
        if bad.any():
            idx = np.flatnonzero(bad)
            kinds = "/".join(sorted({"NaN" if np.isnan(x) else "+inf" if x > 0 else "-inf" for x in v[idx]}))
            problems.append(f"{pname} is {kinds} for {idx.size} neuron(s) {idx[:5].tolist()}")
    if lasagne:  # Lasagne BN: 1/σ itself must be positive
        invstd = np.asarray(bnp["invstd"], dtype=np.float64)
        if (invstd <= 0).any():
            idx = np.flatnonzero(invstd <= 0)
            problems.append(f"running_invstd is not positive for {idx.size} neuron(s) {idx[:5].tolist()}")
    else:
        var = np.asarray(bnp["var"], dtype=np.float64)
        if (var < 0).any():
            idx = np.flatnonzero(var < 0)
            problems.append(f"running_var is negative for {idx.size} neuron(s) {idx[:5].tolist()}")
    if problems:
        raise NonFiniteStatisticsError(
            f"{layer} has non-finite BN statistics: {'; '.join(problems)}. The training run diverged (BN of "
            "these neurons is not a number, so no threshold or output reproduces it); export a checkpoint "
            "from before the divergence, or retrain (e.g. with a lower learning rate)")


def threshold_from_table(on: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Read (t, f) off a boolean table ``on[r, j] = sign(BN(d_r + bias_j)) == +1`` with d_r = −K + 2r.

    Non-decreasing columns give ``f = +1`` and ``t`` = the first ``d`` that is on (``K + 2`` when
    none is: constant −1; ``−K`` when all are: constant +1). Non-increasing columns give ``f = −1``
    and ``t = −(last d that is on)``. Anything else raises ``ValueError`` (BN must be monotone).
    """
    if on.shape[0] != k + 1:
        raise ValueError(f"table needs K+1 = {k + 1} rows (d = -K, -K+2, ..., K), got {on.shape[0]}")
    on = on.to(torch.int8)
    step = on[1:] - on[:-1]
    inc = (step >= 0).all(0)
    dec = (step <= 0).all(0)
    bad = ~(inc | dec)
    if bool(bad.any()):
        cols = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"sign(BN(d + bias)) is not monotone in d for neurons {cols}...: BN in eval mode must be an "
            "increasing or decreasing affine map per neuron (check the running statistics for NaN)"
        )
    n_on = on.sum(0, dtype=torch.int64)
    t_inc = -k + 2 * (k + 1 - n_on)  # first on index = K+1 - n_on
    t_dec = k - 2 * (n_on - 1)  # -(last on d), last on index = n_on - 1
    f = torch.where(inc, 1, -1).to(torch.int8)
    t = torch.where(inc, t_inc, t_dec).to(torch.int32)
    return t.numpy(), f.numpy()


def hidden_thresholds(k: int, bias: torch.Tensor, bnp: dict, chunk: int = 1024, layer: str = "hidden layer"
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """(t, f, fragile) of a hidden layer with fan-in K by evaluating float32 BN on every candidate d.

    Raises :class:`NonFiniteStatisticsError` naming ``layer`` for non-finite BN parameters or bias
    (:func:`check_finite`).
    """
    check_finite(bnp, bias, layer)
    h = bias.shape[0]
    d_all = torch.arange(-k, k + 1, 2, dtype=torch.float32)  # exact integers (K < 2^24)
    # δ = ulp(K + |bias|): a generous bound on how far PyTorch's blocked addmm can round s away from d + bias
    delta = torch.from_numpy(np.spacing(np.float32(k) + np.abs(bias.numpy())).astype(np.float32))
    on = torch.empty((k + 1, h), dtype=torch.bool)
    fragile = torch.zeros(h, dtype=torch.bool)
    for r0 in range(0, k + 1, chunk):
        s = d_all[r0:r0 + chunk, None] + bias[None, :]  # float32 s = d + bias, correctly rounded
        on_c = batch_norm(s, bnp) >= 0  # sign(0) = +1
        on[r0:r0 + chunk] = on_c
        lo = batch_norm(s - delta, bnp) >= 0
        hi = batch_norm(s + delta, bnp) >= 0
        fragile |= ((lo != on_c) | (hi != on_c)).any(0)
    t, f = threshold_from_table(on, k)
    return t, f, int(fragile.sum())


def first_layer_thresholds(k: int, row_sum: np.ndarray, bias: np.ndarray, bnp: dict, layer: str = "layer 1"
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(t, f) on D = W_b·p: the crossing of BN((2/255)·D − S + bias) = 0, solved in float64.

    Raises :class:`NonFiniteStatisticsError` naming ``layer`` for non-finite BN parameters or bias
    (:func:`check_finite`; :func:`qnnlib.runtime.export.export_bnn` reports it as
    :class:`qnnlib.runtime.export.NotExportableError`).
    """
    check_finite(bnp, bias, layer)
    mean, var = bnp["mean"].double().numpy(), bnp["var"].double().numpy()
    gamma, beta = bnp["weight"].double().numpy(), bnp["bias"].double().numpy()
    big = 255 * k + 2  # out of the range of D ∈ [-255 K, 255 K]
    std = (1.0 / bnp["invstd"].double().numpy() if bnp.get("invstd") is not None  # Lasagne BN: σ = 1/invstd
           else np.sqrt(var + bnp["eps"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        s_star = mean - beta * std / gamma  # BN(s*) = 0
        d_star = (s_star + row_sum.astype(np.float64) - bias.astype(np.float64)) * 255.0 / 2.0
    t = np.empty(len(row_sum), dtype=np.int64)
    f = np.ones(len(row_sum), dtype=np.int8)
    pos, neg = gamma > 0, gamma < 0
    t[pos] = np.clip(np.ceil(d_star[pos]), -big, big)  # D >= ceil(D*)
    t[neg] = np.clip(-np.floor(d_star[neg]), -big, big)  # D <= floor(D*)  <=>  -D >= -floor(D*)
    f[neg] = -1
    zero = ~(pos | neg)  # γ = 0 (or NaN): BN(s) = β, a constant neuron
    t[zero] = np.where(beta[zero] >= 0, -big, big)
    bad = ~np.isfinite(d_star) & (pos | neg)
    if bad.any():
        raise NonFiniteStatisticsError(
            f"{layer} has non-finite BN statistics: its threshold is not finite for neurons "
            f"{np.flatnonzero(bad)[:5].tolist()}")
    return t.astype(np.int32), f


# ---------------------------------------------------------------------------------------------------
# Applying the thresholds
# ---------------------------------------------------------------------------------------------------


@njit(inline="always")
def _fires(source, j):  # pragma: no cover - compiled by Numba
    """``f[j]·d[i, j] >= t[j]`` for ``source = (d, t, f, i)``: neuron j of row i is +1."""
    d, t, f, i = source
    return np.int64(f[j]) * np.int64(d[i, j]) >= np.int64(t[j])


@njit(parallel=True, cache=True, nogil=True)
def threshold_pack(d: np.ndarray, t: np.ndarray, f: np.ndarray, out: np.ndarray
                   ) -> None:  # pragma: no cover - compiled by Numba
    """``a[i, j] = +1 iff f[j]·d[i, j] >= t[j]``, packed in place into ``out`` (N, ceil(H/64)) uint64.

    ``d`` is the integer dot products (N, H), ``t`` and ``f`` the thresholds and flips (H,); the words are
    in the :func:`qnnlib.runtime.bitpack.pack` layout (bit 1 = +1), each built by
    :func:`qnnlib.runtime.bitpack.pack_word`.
    """
    rows, h = d.shape
    words = out.shape[1]
    for i in prange(rows):
        for w in range(words):
            j0 = w * 64
            j1 = min(h, j0 + 64)
            out[i, w] = pack_word(_fires, (d, t, f, i), j0, j1)


def threshold_activations(d: Any, t: Any, f: Any, xp: Any = np) -> Any:
    """The packed ±1 activations ``a = +1 iff f·d >= t`` ((N, ceil(H/64)) uint64) of integers ``d`` (N, H).

    ``xp`` is the array module of ``d``, ``t`` and ``f``: NumPy runs the Numba kernel, CuPy array code.
    """
    if xp is np:
        out = np.empty((d.shape[0], packed_width(d.shape[1], WORD_BITS)), dtype=np.uint64)
        if d.shape[0]:
            threshold_pack(np.ascontiguousarray(d), t, f, out)
        return out
    return pack(f[None].astype(xp.int64) * d >= t[None], WORD_BITS)
