"""Multiplications per training step: why the paper proposes shift-based BN and shift-based AdaMax.

The paper's argument (BNN §"Shift-based Batch Normalization", §"Shift based AdaMax"; QNN §"Quantized
gradients"): once weights and activations are binary, the matrix products of a training step need no
multiplier (a product with ±1 is a sign flip, an XNOR on bits); what is left are the multiplications of batch
normalization, of the optimizer, of the loss, and the products of real-valued errors and inputs. Shift-based BN
(Alg. 3) and shift-based AdaMax (Alg. 2) replace their multiplications by power-of-two multiplications (shifts),
and a logarithmically quantized error makes the backward products shifts as well.

:func:`training_step` counts them for a model, from the model: one forward pass (batch 1, hooks on every leaf
module, :func:`qnnlib.analysis.energy.trace`) gives each layer's element counts and whether its input is ±1;
each count is multiplied by the batch size. Per element of a product or of a normalized tensor, by operand kind:

=========================================  ===============================================================
operation                                  counted as
=========================================  ===============================================================
``s = W a`` (forward), ``g_a = Wᵀ g_s``    per MAC: a **sign flip** when ``W`` or ``a`` is ±1 (binary weights
(backward, input error)                    or binarized inputs), else a **multiplication**; backward with a
                                           log-quantized error ``g_s`` (a ``GradQuant(method="log")`` after
                                           the layer): a **shift** when ``W`` is not ±1
``g_W = g_sᵀ a`` (backward, weight          per MAC: a sign flip when ``a`` is ±1; a shift when ``g_s`` is
gradient)                                  log-quantized; else a multiplication
batch norm (``nn.BatchNorm*``, Lasagne's)   forward 3 per element (``(x − μ)²``, ``· 1/σ``, ``· γ``), backward
                                           5 (``g · γ``, ``g · x̂`` for dγ, ``x̂ · mean(g x̂)``, ``· 1/σ``, and
                                           ``g x̂`` summed): **multiplications**
shift-based BN (Alg. 3)                    the same 3 + 5 per element with every factor a power of two
                                           (AP2): **shifts**
Adam (torch's, Lasagne's), per parameter   ``β1 m``, ``(1 − β1) g``, ``g²``, ``β2 v``, ``(1 − β2) g²``, the
                                           step ``α m / (√v + ε)``: 6 **multiplications**, 1 division, 1
                                           square root
shift-based AdaMax (Alg. 2), per parameter ``β1 m`` and ``(1 − β1) g`` (β1 = 1 − 2⁻³), ``β2 v`` (β2 = 1 −
                                           2⁻¹⁰), ``AP2(η) · m · AP2(1/v)``: 5 **shifts**; ``max`` and ``|g|``
                                           need no multiplier
square hinge loss, per output              ``y · o`` with ``y = ±1``: a sign flip; ``(·)²`` forward and
                                           ``2 · (·)`` backward: 2 multiplications
cross-entropy, per output                  exponentials of the softmax not counted; 1 multiplication
                                           (``softmax − onehot`` scaled by ``1/N``)
=========================================  ===============================================================

Not counted: additions and comparisons (max pooling, clipping, the hard-tanh mask), the per-channel scalars of
batch norm (``1/σ`` from ``σ²``: one square root and one division per channel), the latent-weight clipping, the
learning-rate schedule. These rules describe an implementation that uses the cheapest operation the operands
allow; a float GPU does multiply by ±1, and the counts say what dedicated hardware could avoid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from torch import nn

from qnnlib.analysis.energy import trace
from qnnlib.gradquant import GradQuant
from qnnlib.layers import LatentWeightLayer, QuantAct
from qnnlib.norm import LasagneBatchNorm, ShiftBatchNorm1d, ShiftBatchNorm2d

__all__ = ["OPTIMIZER_RULES", "LOSS_RULES", "StepCount", "training_step", "totals"]

Optimizer = Literal["adam", "lasagne_adam", "shift_adamax"]

OPTIMIZER_RULES: dict[str, tuple[int, int, int]] = {
    "adam": (6, 0, 2),  # (multiplications, shifts, divisions + square roots) per parameter element
    "lasagne_adam": (6, 0, 2),
    "shift_adamax": (0, 5, 0),
}
"""Per parameter element and step: (multiplications, shifts, divisions and square roots) (module docstring)."""

LOSS_RULES: dict[str, tuple[int, int]] = {"square_hinge": (2, 1), "cross_entropy": (1, 0)}
"""Per output element and step: (multiplications, sign flips)."""

_BN_FORWARD, _BN_BACKWARD = 3, 5


@dataclass(frozen=True)
class StepCount:
    """One line of the count: a layer's (or the optimizer's, or the loss's) operations in one training step."""

    component: str  # module name, "optimizer" or "loss"
    operation: str  # e.g. "forward products", "weight gradient", "batch norm", "update"
    elements: int  # products (MACs) or tensor elements the rule is applied to, for the whole batch
    multiplications: int
    shifts: int
    sign_flips: int
    divisions: int = 0  # divisions and square roots


def _is_binary_weight(m: nn.Module) -> bool:
    return isinstance(m, LatentWeightLayer) and getattr(m, "weight_bits", 32) == 1


def _product(n: int, binary: bool, shift: bool) -> tuple[int, int, int]:
    """(multiplications, shifts, sign flips) of ``n`` products whose one operand is ±1 (``binary``) or a power
    of two (``shift``)."""
    if binary:
        return 0, 0, n
    if shift:
        return 0, n, 0
    return n, 0, 0


def training_step(model: nn.Module, input_shape: Sequence[int], batch: int, *, optimizer: Optimizer = "adam",
                  loss: Literal["square_hinge", "cross_entropy"] = "square_hinge") -> pd.DataFrame:
    """The operations of one training step of ``model`` on a batch of ``batch`` inputs of ``input_shape``
    (rules in the module docstring): one row per counted operation (:class:`StepCount`)."""
    if optimizer not in OPTIMIZER_RULES:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZER_RULES)}, got {optimizer!r}")
    if loss not in LOSS_RULES:
        raise ValueError(f"loss must be one of {tuple(LOSS_RULES)}, got {loss!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    leaves = trace(model, input_shape)
    if not leaves:
        raise ValueError("the model has no leaf modules to count")
    rows: list[StepCount] = []
    first_compute = True
    for i, leaf in enumerate(leaves):
        m = leaf.module
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            n = leaf.macs * batch
            w_bin, in_bin = _is_binary_weight(m), leaf.in_prec == 1
            nxt = leaves[i + 1].module if i + 1 < len(leaves) else None
            log_err = isinstance(nxt, GradQuant) and nxt.method == "log"
            rows.append(StepCount(leaf.name, "forward products", n, *_product(n, w_bin or in_bin, False)))
            if not first_compute:  # the first layer's input needs no gradient
                rows.append(StepCount(leaf.name, "backward input error", n, *_product(n, w_bin, log_err)))
            rows.append(StepCount(leaf.name, "weight gradient", n, *_product(n, in_bin, log_err)))
            first_compute = False
        elif isinstance(m, (ShiftBatchNorm1d, ShiftBatchNorm2d)):
            e = math.prod(leaf.in_shape) * batch
            rows.append(StepCount(leaf.name, "shift-based batch norm", e, 0, (_BN_FORWARD + _BN_BACKWARD) * e, 0))
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, LasagneBatchNorm)):
            e = math.prod(leaf.in_shape) * batch
            rows.append(StepCount(leaf.name, "batch norm", e, (_BN_FORWARD + _BN_BACKWARD) * e, 0, 0))
        elif isinstance(m, QuantAct) or not any(True for _ in m.parameters(recurse=False)):
            continue  # quantizers, pooling, dropout, flatten, GradQuant: no multiplications counted
        else:
            raise NotImplementedError(f"{leaf.name} ({type(m).__name__}): no counting rule for this module's "
                                      "arithmetic; add one to qnnlib.analysis.multiplications")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mul, shift, div = OPTIMIZER_RULES[optimizer]
    rows.append(StepCount("optimizer", f"{optimizer} update", params, mul * params, shift * params, 0,
                          div * params))
    outputs = math.prod(leaves[-1].out_shape) * batch
    lmul, lflip = LOSS_RULES[loss]
    rows.append(StepCount("loss", loss, outputs, lmul * outputs, 0, lflip * outputs))
    return pd.DataFrame([r.__dict__ for r in rows])


def totals(counts: pd.DataFrame) -> pd.Series:
    """Sum of :func:`training_step`'s rows: multiplications, shifts, sign flips, divisions."""
    return counts[["multiplications", "shifts", "sign_flips", "divisions"]].sum()
