"""Export a trained binary ConvNet for bit-exact packed inference (paper Alg. 4, Eq. 7), and check it.

:func:`export_convnet` turns an eval-mode :func:`qnnlib.models.convnet.convnet` (``cifar10_convnet``,
``svhn_convnet``; binary weights and activations) into a :class:`~qnnlib.runtime.packed_convnet.PackedConvNet`;
:func:`compare_convnet` measures its agreement with the PyTorch model: predictions and **every** hidden
activation, both along the packed network's own chain and layer by layer on the model's inputs.

**Thresholds read off the model's own BN.** Layer 1 (real image): a float32 threshold per channel, found by
bisection over the float32 numbers with the model's BN module evaluated on each candidate (exact: BN is a
monotone float map); for a ±1 first conv also the Eq. 6 bit-plane thresholds on the exact integer
``E = 255·(W_b ⋆ x)`` (:func:`bitplane_thresholds`, float64 crossing, see :mod:`qnnlib.runtime.packed_convnet`).
Binary conv layers: the model's BN module is evaluated, in its own 4-D layout, on
**every** integer ``d ∈ [−K, K]`` (``K = k²·C``): at the zero-padded border ``d`` ranges over fewer taps,
whose parity differs from the interior's when ``C`` is odd (:mod:`qnnlib.runtime.packed_convnet`), then
``(t, f)`` is read off the table (:func:`qnnlib.runtime.folding.threshold_from_table`). Hidden fc layers:
:func:`qnnlib.runtime.folding.hidden_thresholds`, as for the MLP. Output layer: bias and BN kept in float32.

**Caveat** (as for the MLP, :mod:`qnnlib.runtime.export`): the thresholds reproduce ``sign(BN(d + bias))``
for the correctly rounded ``d + bias``; a PyTorch kernel that accumulates the bias inside its blocked sums
could round ``s`` a few ulps away. ``PackedConvNet.fragile`` counts, per binary hidden layer, the neurons
whose decision changes within ``ulp(K + |bias|)`` of a lattice point.

**Refused** with :class:`qnnlib.runtime.export.NotExportableError` (the MLP export's error) naming the layer: anything but ``conv → [MaxPool2d(2)] → BN →
QuantAct(bits=1)`` blocks then ``Flatten``, ``fc → BN → QuantAct(bits=1)`` blocks and ``fc → BN``; non-binary
weights (after layer 1) or activations; stride, dilation or groups ≠ 1, even or non-square kernels, padding ≠
``k // 2`` or a padding mode other than zeros; other pooling; shift-based BN (as :func:`export_bnn`); missing
running statistics; NaN/±inf statistics or biases (:func:`qnnlib.runtime.folding.check_finite`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from qnnlib.evaluation import eval_mode
from qnnlib.gradquant import GradQuant
from qnnlib.layers import LatentWeightLayer, QuantAct
from qnnlib.norm import LasagneBatchNorm, ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.runtime.bitpack import WORD_BITS, pack
from qnnlib.runtime.export import NotExportableError, torch_activations
from qnnlib.runtime.folding import (
    NonFiniteStatisticsError,
    bn_tensors,
    check_finite,
    hidden_thresholds,
    threshold_from_table,
)
from qnnlib.runtime.packed_convnet import (
    FirstLayer,
    PackedConvNet,
    conv_weight_packed,
    fc_weight_nhwc,
    images_as_inputs,
)

__all__ = ["SUPPORTED", "export_convnet", "compare_convnet", "conv_thresholds",
           "float_thresholds", "bitplane_thresholds"]

SUPPORTED = (
    "export_convnet supports a ConvNet as built by qnnlib.models.convnet.convnet (cifar10_convnet, svhn_convnet) "
    "with precision=BINARY: an nn.Sequential of blocks conv{k} -> [pool{k} = nn.MaxPool2d(2)] -> bn{k} "
    "(nn.BatchNorm2d or LasagneBatchNorm with running statistics) -> act{k} = QuantAct(bits=1), then flatten, "
    "blocks fc{k} -> bn{k} -> act{k}, and the output fc{L} -> bn{L} without activation; convs square, odd-sized, "
    "stride 1, 'same' zero padding (k // 2), binary weights (QuantConv2d/QuantLinear weight_bits=1; the first conv "
    "may be float); GradQuant, Dropout and Identity layers are skipped (identity at inference)."
)


_SKIP = (nn.Dropout, nn.Identity, GradQuant)


def _check_bn(name: str, bn: nn.Module, features: int, dims: int) -> None:
    want = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    if isinstance(bn, (ShiftBatchNorm1d, ShiftBatchNorm2d)):
        raise NotExportableError(f"{name} is shift-based BN (SBN, Torch7 recipe): not supported; export needs "
                                 f"vanilla {want.__name__} or LasagneBatchNorm. {SUPPORTED}")
    if not isinstance(bn, (want, LasagneBatchNorm)):
        raise NotExportableError(f"expected a {want.__name__} at {name}, got {type(bn).__name__}: BN is required "
                                 f"after every layer. {SUPPORTED}")
    if bn.running_mean is None or getattr(bn, "running_var", getattr(bn, "running_invstd", None)) is None:
        raise NotExportableError(f"{name} has no running statistics (track_running_stats=False); inference needs "
                                 f"them. {SUPPORTED}")
    if bn.num_features != features:
        raise NotExportableError(f"{name} has {bn.num_features} features but its layer has {features} outputs")


def _check_act(name: str | None, act: nn.Module | None, layer: str) -> None:
    if act is None:
        raise NotExportableError(f"hidden layer {layer} has no binary activation after its BN. {SUPPORTED}")
    if not isinstance(act, QuantAct):
        raise NotExportableError(f"{name} is a {type(act).__name__} (a float activation): only binary activations "
                                 f"QuantAct(bits=1) are supported. {SUPPORTED}")
    if act.bits != 1:
        raise NotExportableError(f"{name} quantizes to {act.bits} bits: k-bit activations are not supported, only "
                                 f"binary ones (QuantAct(bits=1)). {SUPPORTED}")


def _check_conv(name: str, conv: nn.Module, first: bool) -> int:
    if not isinstance(conv, nn.Conv2d):
        raise NotExportableError(f"expected a conv layer at {name}, got {type(conv).__name__}. {SUPPORTED}")
    if not first:
        if not isinstance(conv, LatentWeightLayer):
            raise NotExportableError(f"{name} is a float nn.Conv2d: only the first conv may be float; binary weights "
                                     f"(QuantConv2d weight_bits=1) are needed to pack it. {SUPPORTED}")
        if conv.weight_bits != 1:
            raise NotExportableError(f"{name} has {conv.weight_bits}-bit weights: only binary weights "
                                     f"(weight_bits=1) are supported. {SUPPORTED}")
    kh, kw = conv.kernel_size
    if kh != kw or kh % 2 == 0:
        raise NotExportableError(f"{name} has a {kh}x{kw} kernel: only square, odd kernels (e.g. 3x3) are supported")
    if tuple(conv.stride) != (1, 1):
        raise NotExportableError(f"{name} has stride {tuple(conv.stride)}: only stride 1 is supported "
                                 f"(downsample with MaxPool2d(2) as the paper's ConvNets do)")
    if tuple(conv.dilation) != (1, 1) or conv.groups != 1:
        raise NotExportableError(f"{name} has dilation {tuple(conv.dilation)} and groups {conv.groups}: only "
                                 f"dilation 1 and groups 1 are supported")
    if isinstance(conv.padding, str) or tuple(conv.padding) != (kh // 2, kh // 2) or conv.padding_mode != "zeros":
        raise NotExportableError(f"{name} has padding {conv.padding!r} ({conv.padding_mode}): only 'same' zero "
                                 f"padding {kh // 2} is supported for a {kh}x{kh} kernel")
    if conv.weight.dtype != torch.float32:
        raise NotExportableError(f"{name} is {conv.weight.dtype}; export expects a float32 model")
    return kh


def _parse(model: nn.Module) -> tuple[list[tuple], list[tuple]]:
    """(conv blocks (name, conv, pool, bn_name, bn, act_name), fc blocks (name, fc, bn_name, bn, act_name)), or raise."""
    if not isinstance(model, nn.Sequential):
        raise NotExportableError(f"got a {type(model).__name__}, not an nn.Sequential. {SUPPORTED}")
    seq = [(n, m) for n, m in model.named_children() if not isinstance(m, _SKIP)]
    convs, fcs, i = [], [], 0

    def at(j: int) -> tuple[str | None, nn.Module | None]:
        return seq[j] if j < len(seq) else (None, None)

    while i < len(seq) and not isinstance(seq[i][1], nn.Flatten):
        name, conv = seq[i]
        if isinstance(conv, nn.Linear) and not convs:
            raise NotExportableError(f"the model starts with a linear layer ({name}), not a conv (an MLP? use "
                                     f"qnnlib.runtime.export.export_bnn). {SUPPORTED}")
        if isinstance(conv, nn.Linear):
            raise NotExportableError(f"{name} follows the conv blocks without an nn.Flatten in between. {SUPPORTED}")
        _check_conv(name, conv, first=not convs)
        i += 1
        pool = False
        pname, p = at(i)
        if isinstance(p, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            if not isinstance(p, nn.MaxPool2d) or p.kernel_size not in (2, (2, 2)) or p.stride not in (2, (2, 2)) \
                    or p.padding not in (0, (0, 0)) or p.dilation not in (1, (1, 1)) or p.ceil_mode:
                raise NotExportableError(f"{pname} is {p!r}: only nn.MaxPool2d(2) (stride 2, no padding, floor) is "
                                         f"supported. {SUPPORTED}")
            pool, i = True, i + 1
        bn_name, bn = at(i)
        if bn is None:
            raise NotExportableError(f"{name} is not followed by a BatchNorm2d. {SUPPORTED}")
        _check_bn(bn_name, bn, conv.out_channels, 2)
        act_name, act = at(i + 1)
        _check_act(act_name, act, name)
        convs.append((name, conv, pool, bn_name, bn, act_name))
        i += 2
    if not convs:
        raise NotExportableError(f"the model has no conv layer before its flatten (an MLP? use "
                                 f"qnnlib.runtime.export.export_bnn). {SUPPORTED}")
    if i >= len(seq):
        raise NotExportableError(f"no nn.Flatten after the conv blocks. {SUPPORTED}")
    i += 1
    while i < len(seq):
        name, fc = seq[i]
        if not isinstance(fc, nn.Linear):
            raise NotExportableError(f"expected a linear layer at {name}, got {type(fc).__name__}. {SUPPORTED}")
        if not isinstance(fc, LatentWeightLayer) or fc.weight_bits != 1:
            raise NotExportableError(f"{name} does not have binary weights (QuantLinear weight_bits=1). {SUPPORTED}")
        if fc.weight.dtype != torch.float32:
            raise NotExportableError(f"{name} is {fc.weight.dtype}; export expects a float32 model")
        bn_name, bn = at(i + 1)
        if bn is None:
            raise NotExportableError(f"{name} is not followed by a BatchNorm1d. {SUPPORTED}")
        _check_bn(bn_name, bn, fc.out_features, 1)
        act_name, act = at(i + 2)
        if act is not None and not isinstance(act, nn.Linear):
            _check_act(act_name, act, name)
            fcs.append((name, fc, bn_name, bn, act_name))
            i += 3
        else:
            fcs.append((name, fc, bn_name, bn, None))
            i += 2
    if not fcs:
        raise NotExportableError(f"no output layer after the flatten. {SUPPORTED}")
    for name, *_, act_name in fcs[:-1]:
        if act_name is None:
            raise NotExportableError(f"hidden layer {name} has no binary activation. {SUPPORTED}")
    if fcs[-1][4] is not None:
        raise NotExportableError(f"the output layer {fcs[-1][0]} must end with BN and no activation. {SUPPORTED}")
    return convs, fcs


# ---------------------------------------------------------------------------------------------------
# Thresholds from the model's own BN
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def conv_thresholds(k: int, bias: torch.Tensor, bn: nn.Module, chunk: int = 512, layer: str = "conv layer"
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """(t, f, fragile) of a binary conv layer with fan-in K = k²·C: ``a = +1 iff f·d >= t`` for every integer
    ``d ∈ [−K, K]`` (border outputs included), read off the model's BN module evaluated on ``d + bias`` (float32)
    in its 4-D layout. Raises :class:`NotExportableError` for non-finite statistics."""
    bnp = bn_tensors(bn)
    try:
        check_finite(bnp, bias, layer)
    except NonFiniteStatisticsError as exc:
        raise NotExportableError(str(exc)) from exc
    h = bias.shape[0]
    d_all = torch.arange(-k, k + 1, dtype=torch.float32)  # every integer: border sums have fewer taps
    delta = torch.from_numpy(np.spacing(np.float32(k) + np.abs(bias.numpy())).astype(np.float32))
    on = torch.empty((2 * k + 1, h), dtype=torch.bool)
    fragile = torch.zeros(h, dtype=torch.bool)
    four_d = isinstance(bn, (nn.BatchNorm2d, LasagneBatchNorm))

    def ev(s: torch.Tensor) -> torch.Tensor:
        with eval_mode(bn):
            if four_d:
                return bn(s[:, :, None, None].expand(-1, -1, 1, 4).contiguous())[:, :, 0, 0]
            return bn(s)

    for r0 in range(0, 2 * k + 1, chunk):
        s = d_all[r0:r0 + chunk, None] + bias[None, :]
        on_c = ev(s) >= 0  # sign(0) = +1
        on[r0:r0 + chunk] = on_c
        fragile |= (((ev(s - delta) >= 0) != on_c) | ((ev(s + delta) >= 0) != on_c)).any(0)
    try:
        t2, f = threshold_from_table(on, 2 * k)  # rows d = −K + r read as −2K + 2r: t = t2 / 2
    except ValueError as exc:
        raise NotExportableError(f"{layer}: {exc}") from exc
    return (t2 // 2).astype(np.int32), f, int(fragile.sum())


def bitplane_thresholds(k: int, bias: torch.Tensor, bn: nn.Module, layer: str = "layer 1"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(t, f) int32 / int8 of the Eq. 6 first conv: ``a = +1 iff f·E >= t`` on the exact integer
    ``E = 255·(W_b ⋆ x)`` (:meth:`~qnnlib.runtime.packed_convnet.PackedConvNet.first_layer_integer`,
    ``|E| <= 2·255·K``, ``K = k²·C``), from the crossing of ``BN(E/255 + bias) = 0`` solved in float64 (as
    :func:`qnnlib.runtime.folding.first_layer_thresholds` does for the MLP): ``E >= ceil(255·(s* − bias))`` where
    γ > 0, ``E <= floor(...)`` (``f = −1``) where γ < 0, a constant out-of-range ``t`` where γ = 0. Agrees with the
    model's float32 ``sign(BN(s))`` except where float32 rounding of ``s`` crosses ``s*``. Raises
    :class:`NotExportableError` for non-finite statistics."""
    bnp = bn_tensors(bn)
    try:
        check_finite(bnp, bias, layer)
    except NonFiniteStatisticsError as exc:
        raise NotExportableError(str(exc)) from exc
    mean, gamma, beta = (bnp[key].double().numpy() for key in ("mean", "weight", "bias"))
    std = (1.0 / bnp["invstd"].double().numpy() if bnp.get("invstd") is not None
           else np.sqrt(bnp["var"].double().numpy() + bnp["eps"]))
    big = 2 * 255 * k + 2  # out of the range of E
    with np.errstate(divide="ignore", invalid="ignore"):
        e_star = (mean - beta * std / gamma - bias.double().numpy()) * 255.0  # BN(E*/255 + bias) = 0
    pos, neg = gamma > 0, gamma < 0
    bad = ~np.isfinite(e_star) & (pos | neg)
    if bad.any():
        raise NotExportableError(f"{layer} has non-finite BN statistics: its threshold is not finite for channels "
                                 f"{np.flatnonzero(bad)[:5].tolist()}")
    t = np.where(beta >= 0, -big, big).astype(np.int64)  # γ = 0: BN(s) = β, a constant channel
    f = np.where(neg, -1, 1).astype(np.int8)
    t[pos] = np.clip(np.ceil(e_star[pos]), -big, big)
    t[neg] = np.clip(-np.floor(e_star[neg]), -big, big)
    return t.astype(np.int32), f


def _ordered(u: np.ndarray) -> np.ndarray:
    """float32 bit patterns (as int64) -> integers in the order of the floats."""
    u = u.astype(np.int64)
    return np.where(u >= 0, u, -(u & 0x7FFFFFFF))


def _from_ordered(v: np.ndarray) -> np.ndarray:
    bits = np.where(v >= 0, v, (-v) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


@torch.no_grad()
def float_thresholds(bias: torch.Tensor, bn: nn.Module, layer: str = "layer 1") -> tuple[np.ndarray, np.ndarray]:
    """(τ, f) float32 (C,) with ``f·s >= τ  ⇔  BN(s) >= 0`` for every finite float32 ``s``: bisection over the
    float32 numbers with the model's BN module (eval mode, 4-D layout) as the oracle. ``f = −1`` where BN
    decreases (γ < 0); a constant channel gets ``τ = ∓inf``. Raises :class:`NotExportableError` for non-finite
    statistics or a BN that is not monotone."""
    bnp = bn_tensors(bn)
    try:
        check_finite(bnp, bias, layer)
    except NonFiniteStatisticsError as exc:
        raise NotExportableError(str(exc)) from exc
    c = bias.shape[0]
    big = np.finfo(np.float32).max

    def on(vals: np.ndarray) -> np.ndarray:
        s = torch.from_numpy(vals.astype(np.float32)).view(1, c).expand(4, c).contiguous()
        with eval_mode(bn):
            return (bn(s[:, :, None, None].expand(-1, -1, 1, 4).contiguous()) >= 0)[0, :, 0, 0].numpy()

    lo_on, hi_on = on(np.full(c, -big)), on(np.full(c, big))
    inc = ~lo_on & hi_on  # BN increasing, crossing inside the range: smallest s that is on
    dec = lo_on & ~hi_on  # decreasing: largest s that is on
    lo = _ordered(np.full(c, -big, np.float32).view(np.uint32).view(np.int32))
    hi = _ordered(np.full(c, big, np.float32).view(np.uint32).view(np.int32))
    # invariant (inc): on(hi) and not on(lo); (dec): on(lo) and not on(hi)
    for _ in range(40):
        if (hi - lo <= 1).all():
            break
        mid = (lo + hi) // 2
        m_on = on(_from_ordered(mid))
        go_hi = np.where(inc, m_on, ~m_on)  # the crossing lies at or below mid
        hi = np.where(go_hi, mid, hi)
        lo = np.where(go_hi, lo, mid)
    tau = np.empty(c, np.float32)
    flip = np.ones(c, np.float32)
    tau[inc] = _from_ordered(hi)[inc]  # s >= first on
    tau[dec] = -_from_ordered(lo)[dec]  # s <= last on  ⇔  -s >= -(last on)
    flip[dec] = -1.0
    const = ~(inc | dec)
    tau[const] = np.where(lo_on[const], -np.inf, np.inf)  # always on (lo and hi both on) / never on
    # check: the rule reproduces BN on probe points around each threshold and at random values
    probe = np.stack([np.nextafter(tau, -np.inf), tau, np.nextafter(tau, np.inf)], 0)
    probe = np.where(np.isfinite(probe), probe, 0.0).astype(np.float32)
    for vals in probe:
        if (on(vals) != (flip * vals >= tau)).any():
            bad = np.flatnonzero(on(vals) != (flip * vals >= tau))[:5].tolist()
            raise NotExportableError(f"{layer}: BN(s) >= 0 is not monotone in s for channels {bad}")
    return tau, flip


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------


def _fc_bias(fc: nn.Module) -> torch.Tensor:
    return fc.bias.detach().cpu().float() if fc.bias is not None else torch.zeros(fc.out_features)


@torch.no_grad()
def export_convnet(model: nn.Module, image_size: int | tuple[int, int] | None = None) -> PackedConvNet:
    """Export an eval-mode binary :func:`qnnlib.models.convnet.convnet` to a :class:`PackedConvNet` (Alg. 4).

    ``image_size`` (H or (H, W)) defaults to the square size implied by the first fc layer's fan-in. The model's
    eval-mode semantics are exported whatever its mode; its parameters are not changed. Raises
    :class:`NotExportableError` naming the layer for anything :data:`SUPPORTED` does not cover.
    """
    convs, fcs = _parse(model)
    first = convs[0][1]
    in_c, ksize = first.in_channels, first.kernel_size[0]
    c_last = convs[-1][1].out_channels
    shrink = 2 ** sum(1 for b in convs if b[2])
    fan = fcs[0][1].in_features
    if image_size is None:
        side = round((fan / c_last) ** 0.5) * shrink  # a square image
        image_size = side
    h0, w0 = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    hf, wf = h0, w0
    for b in convs:
        hf, wf = (hf // 2, wf // 2) if b[2] else (hf, wf)
    if fan != c_last * hf * wf or hf < 1 or wf < 1:
        raise NotExportableError(f"the first fc layer {fcs[0][0]} has {fan} inputs, but {c_last} channels of "
                                 f"{hf}x{wf} after the convs of a {h0}x{w0} image give {c_last * hf * wf}; pass the "
                                 f"model's image_size")
    fragile: list[int] = []
    # layer 1: float conv, float32 thresholds
    name, conv, _pool, bn_name, bn, _ = convs[0]
    w1 = (conv.quantized_weight() if isinstance(conv, LatentWeightLayer) else conv.weight).detach().cpu().float()
    b1 = conv.bias.detach().cpu().float() if conv.bias is not None else torch.zeros(conv.out_channels)
    tau, flip = float_thresholds(b1, bn, f"layer 1 ({name}, {bn_name})")
    bp_t = bp_f = None
    if bool(torch.isin(w1, torch.tensor([-1.0, 1.0])).all()):  # ±1 first conv: Eq. 6 bit-planes possible
        bp_t, bp_f = bitplane_thresholds(ksize * ksize * in_c, b1, bn, f"layer 1 ({name}, {bn_name})")
    conv_w, conv_t, conv_f = [], [], []
    for idx, (name, conv, _pool, bn_name, bn, _) in enumerate(convs[1:], 2):
        wb = conv.quantized_weight().detach().cpu().float()  # W_b = sign(W), exactly as the forward pass
        bias = conv.bias.detach().cpu().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        k = conv.in_channels * ksize * ksize
        t, f, n_frag = conv_thresholds(k, bias, bn, layer=f"layer {idx} ({name}, {bn_name})")
        conv_w.append(conv_weight_packed(wb))
        conv_t.append(t)
        conv_f.append(f)
        fragile.append(n_frag)
    fc_w, fc_k, fc_t, fc_f = [], [], [], []
    out: dict[str, Any] = {}
    for j, (name, fc, bn_name, bn, _act) in enumerate(fcs):
        idx = len(convs) + j + 1
        wb = fc.quantized_weight().detach().cpu().float()
        fc_w.append(fc_weight_nhwc(wb, c_last, hf, wf) if j == 0 else pack(wb, WORD_BITS))
        fc_k.append(fc.in_features)
        bias = _fc_bias(fc)
        bnp = bn_tensors(bn)
        layer = f"layer {idx} ({name}, {bn_name})"
        try:
            check_finite(bnp, bias, layer)
            if j < len(fcs) - 1:
                t, f, n_frag = hidden_thresholds(fc.in_features, bias, bnp, layer=layer)
                fc_t.append(t)
                fc_f.append(f)
                fragile.append(n_frag)
        except NonFiniteStatisticsError as exc:
            raise NotExportableError(str(exc)) from exc
        if j == len(fcs) - 1:
            out = {"out_bias": bias.numpy().copy(), "out_mean": bnp["mean"].numpy().copy(),
                   "out_var": bnp["var"].numpy().copy(), "out_weight": bnp["weight"].numpy().copy(),
                   "out_beta": bnp["bias"].numpy().copy(), "out_eps": bnp["eps"],
                   "out_invstd": None if bnp.get("invstd") is None else bnp["invstd"].numpy().copy()}
    names = tuple([b[5] for b in convs] + [b[4] for b in fcs[:-1]] + [fcs[-1][2]])
    return PackedConvNet(in_shape=(in_c, h0, w0), ksize=ksize, first_weight=w1.numpy().copy(),
                         first_bias=b1.numpy().copy(), first_threshold=tau, first_flip=flip, conv_weights=conv_w,
                         conv_thresholds=conv_t, conv_flips=conv_f, pools=tuple(bool(b[2]) for b in convs),
                         fc_weights=fc_w, fc_in_features=tuple(fc_k), fc_thresholds=fc_t, fc_flips=fc_f,
                         layer_names=names, fragile=tuple(fragile), first_bitplane_threshold=bp_t,
                         first_bitplane_flip=bp_f, **out)


# ---------------------------------------------------------------------------------------------------
# Checks against the PyTorch model
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def compare_convnet(model: nn.Module, packed: PackedConvNet, images: Any, backend: str = "cpu",
                    first_layer: FirstLayer = "float") -> dict[str, Any]:
    """Compare ``packed`` with the eval-mode PyTorch ``model`` on ``images`` (N, C, H, W) (floats or uint8 pixels).

    ``first_layer``: the packed network's first layer (``"float"``: bit-identical by construction;
    ``"bitplanes"``: Eq. 6, exact integers thresholded in float64, so layer 1 may differ from PyTorch's float32
    where ``s`` lies within rounding of the BN crossing — measured here, not assumed).

    Returns:
        ``n_images``, ``predictions_identical`` (bool), ``prediction_mismatches``;
        ``layer_names``: the model's names of the hidden activations (``act1`` ...);
        ``activation_mismatches``: per hidden layer, activations that differ between the packed network's own
        chain (:meth:`PackedConvNet.forward_hidden`) and the model's;
        ``layer_mismatches``: per hidden layer, activations that differ when the layer gets the *model's* inputs
        (the image for layer 1, the model's ±1 activations of the layer before otherwise);
        ``activations``: activations per hidden layer; ``output_argmax_mismatches``: argmax differences of the
        output layer given the model's last hidden activations; ``fragile``; ``exact``: no mismatch anywhere.
    """
    x = images_as_inputs(images, packed.in_shape)
    acts, out = torch_activations(model, x)
    ref = torch.argmax(out, dim=1).numpy()
    if len(acts) != packed.num_layers - 1:
        raise ValueError(f"the model has {len(acts)} binary activations but the packed network "
                         f"{packed.num_layers - 1} hidden layers: was it exported from this model?")
    mine = packed.forward_hidden(x, backend, first_layer)
    pred = packed.predict(x, backend, first_layer=first_layer)
    chain = [int((m != a.numpy().astype(np.int8)).sum()) for m, a in zip(mine, acts)]
    alone = []
    for k in range(1, packed.num_layers):
        got = packed.layer(k, x if k == 1 else acts[k - 2], backend, first_layer)
        alone.append(int((got != acts[k - 1].numpy().astype(np.int8)).sum()))
    out_mine = packed.layer(packed.num_layers, acts[-1], backend)
    out_mis = int((np.argmax(out_mine, axis=1) != ref).sum())
    mismatches = int((pred != ref).sum())
    return {"n_images": len(x), "predictions_identical": mismatches == 0, "prediction_mismatches": mismatches,
            "layer_names": list(packed.layer_names[:-1]), "activation_mismatches": chain,
            "layer_mismatches": alone, "activations": [int(a.numel()) for a in acts],
            "output_argmax_mismatches": out_mis, "fragile": list(packed.fragile),
            "exact": mismatches == 0 and not any(chain) and not any(alone) and out_mis == 0}
