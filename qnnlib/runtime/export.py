"""Export a trained BNN for bit-exact inference on the binary kernels (paper Alg. 4, Eq. 6), and check it.

:func:`export_bnn` turns an eval-mode :func:`qnnlib.models.mlp.mnist_mlp` with binary weights and binary
activations into a :class:`~qnnlib.runtime.packed_bnn.PackedBNN`: bit-packed weights plus one integer
threshold and one sign flip per hidden neuron. :meth:`PackedBNN.predict` then runs every layer of Alg. 4 on
:func:`qnnlib.runtime.binary_gemm.binary_matmul`. :func:`compare_with_model` measures the agreement with
the PyTorch model; :func:`qnnlib.runtime.packed_checkpoint.size_report` measures the checkpoint's size on disk.

The parts live in their own modules: :mod:`qnnlib.runtime.packed_bnn` (the packed network, Alg. 4, its
file), :mod:`qnnlib.runtime.bitplanes` (8-bit inputs as bit-planes, Eq. 6), :mod:`qnnlib.runtime.folding`
(BN + sign folded into integer thresholds), :mod:`qnnlib.runtime.packed_checkpoint` (the file format and
sizes on disk).

**Hidden layers k ≥ 2 — exact.** ``sign(BN(d + bias))`` of the integer ``d = W_k^b · a_{k-1}^b`` folds
into ``a = +1 iff f·d ≥ t`` with one integer threshold ``t`` and flip ``f ∈ {+1, −1}`` per neuron,
read off the model's own float32 BN evaluated on every candidate ``d`` (:mod:`qnnlib.runtime.folding`), so
the thresholds reproduce ``sign(BN(d + bias))`` bit for bit.

One caveat, measured and reported rather than hidden: PyTorch's CPU ``F.linear`` adds the bias
inside its blocked GEMM (MKL accumulates ``bias + partial sums`` block by block), so its ``s`` can
differ from the correctly rounded ``d + bias`` by a few float32 ulps. A neuron whose BN crossing
lies that close to one of its lattice points ``d + bias`` could then flip in PyTorch but not here.
:attr:`PackedBNN.fragile` counts, per layer, the neurons whose decision changes when ``s`` moves by
``δ = ulp(K + |bias|)`` (generous: the observed error is ~20× smaller); an image disagrees only if
it hits such a neuron's boundary value of ``d`` exactly.

**First layer — Eq. 6 (exact integers, float64 threshold).** The 8-bit pixels ``p`` are split into
bit-planes and ``D = W_b·p`` is recombined exactly from 8 binary GEMMs (:mod:`qnnlib.runtime.bitplanes`);
``s = (2/255)·D − S + bias``, BN and sign fold into ``f·D ≥ t`` with ``t`` the crossing point of
``BN(s) = 0`` solved in float64 (:func:`qnnlib.runtime.folding.first_layer_thresholds`). This is the
*real-valued* decision; PyTorch computes ``W_b·x`` in float32 with an order-dependent rounding (MKL
blocking), so where ``s`` falls within ~1e-5 of the crossing the two can disagree. That cannot be
matched exactly by any fixed rule; :func:`compare_with_model` measures the agreement rate
(typically ≥ 99.999 % of activations).

**Output layer.** ``dot`` via the binary GEMM, ``s = dot + bias`` (float32), ``F.batch_norm`` with the
layer's statistics, argmax — the model's own arithmetic again.

**Diverged models are refused.** A NaN or ±inf in any layer's fc bias or BN running mean, running variance,
γ or β (or a negative running variance) raises :class:`NotExportableError` naming the layer, the parameter
and the neurons: such a neuron has no threshold, and folding it anyway would give a constant, silently
wrong activation (:func:`qnnlib.runtime.folding.check_finite`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from qnnlib.evaluation import eval_mode
from qnnlib.layers import LatentWeightLayer, QuantAct
from qnnlib.norm import LasagneBatchNorm, ShiftBatchNorm1d, ShiftBatchNorm2d
from qnnlib.runtime.bitpack import WORD_BITS, pack
from qnnlib.runtime.bitplanes import inputs_from_pixels, pixels_from_inputs
from qnnlib.runtime.folding import (
    NonFiniteStatisticsError,
    bn_tensors,
    check_finite,
    first_layer_thresholds,
    hidden_thresholds,
)
from qnnlib.runtime.packed_bnn import FirstLayer, PackedBNN

__all__ = [
    "SUPPORTED",
    "NotExportableError",
    "export_bnn",
    "compare_with_model",
    "torch_activations",
]

SUPPORTED = (
    "export_bnn supports an MLP as built by qnnlib.models.mlp.mnist_mlp(precision=BINARY): an nn.Sequential "
    "fc1, bn1, act1, ..., fcL, bnL (Dropout layers allowed, identity at inference) where every fc is a "
    "QuantLinear/BinaryLinear with weight_bits=1, every bn is an nn.BatchNorm1d with running statistics, "
    "every hidden act is QuantAct(bits=1) (sign, deterministic at inference), and the output layer "
    "fcL -> bnL has no activation."
)


class NotExportableError(ValueError):
    """The model is not a binary network that :func:`export_bnn` (an MLP -> :class:`PackedBNN`) or
    :func:`qnnlib.runtime.export_convnet.export_convnet` (a ConvNet) can turn into a packed network."""


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Module, str | None, nn.Module | None]]:
    """Parse ``fc1, bn1, act1, ..., fcL, bnL`` (Dropout skipped) into (fc, bn, act) triples, or raise."""
    if not isinstance(model, nn.Sequential):
        raise NotExportableError(f"got a {type(model).__name__}, not an nn.Sequential. {SUPPORTED}")
    seq = [(n, m) for n, m in model.named_children() if not isinstance(m, (nn.Dropout, nn.Identity))]
    blocks, i = [], 0
    while i < len(seq):
        name, fc = seq[i]
        if isinstance(fc, (nn.Conv2d, nn.MaxPool2d, nn.Flatten)):
            raise NotExportableError(f"{name} is a {type(fc).__name__}: convolutional networks are not supported. "
                                     f"{SUPPORTED}")
        if not isinstance(fc, nn.Linear):
            raise NotExportableError(f"expected a linear layer at {name}, got {type(fc).__name__}. {SUPPORTED}")
        if not isinstance(fc, LatentWeightLayer):
            raise NotExportableError(f"{name} is a float nn.Linear: only binary weights (QuantLinear/BinaryLinear "
                                     f"with weight_bits=1, mnist_mlp(precision=BINARY)) can be packed. {SUPPORTED}")
        if fc.weight_bits != 1:
            raise NotExportableError(f"{name} has {fc.weight_bits}-bit weights: only binary weights (weight_bits=1) "
                                     f"are supported. {SUPPORTED}")
        if i + 1 >= len(seq):
            raise NotExportableError(f"{name} is not followed by a BatchNorm1d (BN is required after every "
                                     f"layer). {SUPPORTED}")
        bn_name, bn = seq[i + 1]
        if isinstance(bn, (ShiftBatchNorm1d, ShiftBatchNorm2d)):
            raise NotExportableError(f"{bn_name} is shift-based BN (SBN, Torch7 recipe): not supported; export "
                                     f"needs vanilla nn.BatchNorm1d (Theano recipe). {SUPPORTED}")
        if not isinstance(bn, (nn.BatchNorm1d, LasagneBatchNorm)):
            raise NotExportableError(f"{name} is followed by {bn_name} ({type(bn).__name__}), not by a "
                                     f"BatchNorm1d: BN is required after every layer. {SUPPORTED}")
        if bn.running_mean is None or getattr(bn, "running_var", getattr(bn, "running_invstd", None)) is None:
            raise NotExportableError(f"{bn_name} has no running statistics (track_running_stats=False); "
                                     f"inference needs them. {SUPPORTED}")
        if bn.num_features != fc.out_features:
            raise NotExportableError(f"{bn_name} has {bn.num_features} features but {name} has {fc.out_features}")
        act_name, act = (seq[i + 2] if i + 2 < len(seq) else (None, None))
        if act is not None and isinstance(act, nn.Linear):
            act_name, act = None, None
        if act is not None:
            if not isinstance(act, QuantAct):
                raise NotExportableError(f"{act_name} is a {type(act).__name__} (a float activation): only binary "
                                         f"activations QuantAct(bits=1) are supported. {SUPPORTED}")
            if act.bits != 1:
                raise NotExportableError(f"{act_name} quantizes to {act.bits} bits: k-bit activations are not "
                                         f"supported, only binary ones (QuantAct(bits=1)). {SUPPORTED}")
        blocks.append((name, fc, bn_name, bn, act_name, act))
        i += 3 if act is not None else 2
    if len(blocks) < 2:
        raise NotExportableError(f"need at least one hidden layer and an output layer, got {len(blocks)} layer(s). "
                                 f"{SUPPORTED}")
    for name, *_, act in blocks[:-1]:
        if act is None:
            raise NotExportableError(f"hidden layer {name} has no binary activation. {SUPPORTED}")
    if blocks[-1][5] is not None:
        raise NotExportableError(f"the output layer {blocks[-1][0]} must end with BN and no activation. {SUPPORTED}")
    for (n0, fc0, *_), (n1, fc1, *_) in zip(blocks, blocks[1:]):
        if fc0.out_features != fc1.in_features:
            raise NotExportableError(f"{n0} has {fc0.out_features} outputs but {n1} expects {fc1.in_features} inputs")
    return blocks


@torch.no_grad()
def export_bnn(model: nn.Module) -> PackedBNN:
    """Export an eval-mode binary :func:`qnnlib.models.mlp.mnist_mlp` to a :class:`PackedBNN`.

    Weights: ``W_b = sign(W)`` (sign(0) = +1) packed 64 per ``uint64`` word along the fan-in.
    Layer 1: row sums S and a float64 threshold on D = W_b·p (Eq. 6). Hidden layers ≥ 2: (t, f) read
    off the model's own float32 ``sign(BN(d + bias))`` on every candidate d. Output layer: bias and
    BN kept in float32. The model's eval-mode semantics are exported (running statistics, dropout off)
    whatever its current mode; its parameters are not changed. Raises :class:`NotExportableError`
    naming the offending layer for anything else (float or k-bit layers, SBN, missing BN, convs) and for a
    diverged layer: NaN/±inf in any layer's fc bias, BN running mean/var, γ or β (the output layer's
    included), or a negative running variance (:func:`qnnlib.runtime.folding.check_finite`).
    """
    blocks = _blocks(model)
    weights, fan_in, thresholds, flips, fragile = [], [], [], [], []
    row_sum = np.zeros(0, np.int32)
    out: dict[str, Any] = {}
    for idx, (name, fc, bn_name, bn, _act_name, _act) in enumerate(blocks, 1):
        if fc.weight.dtype != torch.float32:
            raise NotExportableError(f"{name} is {fc.weight.dtype}; export expects a float32 model")
        wb = fc.quantized_weight().detach().cpu().float()  # W_b = sign(W), exactly as the forward pass
        k = fc.in_features
        weights.append(pack(wb, WORD_BITS))
        fan_in.append(k)
        bias = fc.bias.detach().cpu().float() if fc.bias is not None else torch.zeros(fc.out_features)
        bnp = bn_tensors(bn)
        layer = f"layer {idx} ({name}, {bn_name})"
        try:
            check_finite(bnp, bias, layer)  # every layer, the output layer's BN included
            if idx == 1:
                row_sum = wb.sum(1).to(torch.int32).numpy()  # S = Σ_j W_b[:, j] (exact)
                t, f = first_layer_thresholds(k, row_sum, bias.numpy(), bnp, layer)
            elif idx < len(blocks):
                t, f, n_fragile = hidden_thresholds(k, bias, bnp, layer=layer)
                fragile.append(n_fragile)
        except NonFiniteStatisticsError as exc:
            raise NotExportableError(str(exc)) from exc
        if idx == len(blocks):
            out = dict(out_bias=bias.numpy().copy(), out_mean=bnp["mean"].numpy().copy(),
                       out_var=bnp["var"].numpy().copy(), out_weight=bnp["weight"].numpy().copy(),
                       out_beta=bnp["bias"].numpy().copy(), out_eps=bnp["eps"],
                       out_invstd=None if bnp.get("invstd") is None else bnp["invstd"].numpy().copy())
            continue
        thresholds.append(t)
        flips.append(f)
    return PackedBNN(weights=weights, in_features=tuple(fan_in), thresholds=thresholds, flips=flips,
                     row_sum=row_sum, fragile=tuple(fragile), **out)


# ---------------------------------------------------------------------------------------------------
# Checks against the PyTorch model
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def torch_activations(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every hidden activation (each ``QuantAct``'s output) and the model output, running the eval-mode
    ``nn.Sequential`` module by module (its BN statistics and training flag are restored afterwards)."""
    acts, h = [], x
    with eval_mode(model):
        for _name, m in model.named_children():
            h = m(h)
            if isinstance(m, QuantAct):
                acts.append(h)
    return acts, h


@torch.no_grad()
def compare_with_model(model: nn.Module, packed: PackedBNN, images: Any, backend: str = "cpu", *,
                       first_layer: FirstLayer = "bitplanes", batch_size: int = 2048) -> dict[str, Any]:
    """Compare ``packed`` with the eval-mode PyTorch ``model`` on ``images`` (8-bit, see :func:`pixels_from_inputs`).

    Returns:
        ``predictions_identical`` (bool), ``prediction_mismatches`` (int), ``n_images``;
        ``first_layer_agreement``: fraction of layer-1 activations equal to the model's (Eq. 6 with a
        float64 threshold vs PyTorch's float32 GEMM), ``first_layer_mismatches``;
        ``hidden_layer_mismatches``: per layer k ≥ 2, activations that differ when both get the
        *model's* binary inputs a_{k-1}^b (0 means the thresholds reproduce sign(BN) exactly);
        ``output_argmax_mismatches``: argmax differences of the output layer given the model's a_{L-1}^b;
        ``fragile``: :attr:`PackedBNN.fragile`;
        ``images_with_first_layer_mismatch``: images with at least one differing layer-1 activation;
        ``unexplained_prediction_mismatches``: differing predictions on images whose layer-1 activations all
        agree — 0 whenever the binary layers are exact, since then nothing else can differ;
        ``exact_beyond_first_layer``: no hidden-layer, output-layer or unexplained mismatch. Only the first
        layer's real-valued decision can differ from PyTorch's, by the rounding of its float32 GEMM (see the
        module docstring), and each such flip is counted, never hidden.
    """
    p = pixels_from_inputs(images)
    x = inputs_from_pixels(p)
    acts, out = torch_activations(model, x)
    ref = torch.argmax(out, dim=1).numpy()
    mine_hidden = packed.forward_hidden(p, backend, first_layer=first_layer, batch_size=batch_size)
    pred = packed.predict(p, backend, first_layer=first_layer, batch_size=batch_size)
    a1 = acts[0].numpy().astype(np.int8)
    first_diff = mine_hidden[0] != a1
    first_mis = int(first_diff.sum())
    hidden_mis = []
    for k in range(2, packed.num_layers):
        mine = packed.binary_layer(k, acts[k - 2], backend)
        hidden_mis.append(int((mine != acts[k - 1].numpy().astype(np.int8)).sum()))
    out_mine = packed.output_layer(acts[-1], backend)
    out_mis = int((np.argmax(out_mine, axis=1) != ref).sum())
    differ = pred != ref
    mismatches = int(differ.sum())
    touched = first_diff.any(axis=1)
    unexplained = int((differ & ~touched).sum())
    return {"n_images": int(len(p)), "predictions_identical": mismatches == 0, "prediction_mismatches": mismatches,
            "first_layer_agreement": 1.0 - first_mis / max(1, a1.size), "first_layer_mismatches": first_mis,
            "first_layer_activations": int(a1.size), "hidden_layer_mismatches": hidden_mis,
            "output_argmax_mismatches": out_mis, "fragile": list(packed.fragile),
            "images_with_first_layer_mismatch": int(touched.sum()), "unexplained_prediction_mismatches": unexplained,
            "exact_beyond_first_layer": not any(hidden_mis) and out_mis == 0 and unexplained == 0}
