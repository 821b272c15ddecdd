"""What quantizing a back-propagated gradient does to it: the tensors of notebook 06's histograms and table.

QNN quantizes the gradients to 6 bits and finds that "only logarithmic quantization works" (docs/decisions.md D6).
The reason shows in the distribution of the error ``g_{s_k} = ∂L/∂s_k`` that flows back into compute layer ``k``:
its magnitudes spread over many octaves, most entries far below the largest one. A linear quantizer with
``n = 2^(bits−1) − 1`` steps of ``max|g| / n`` rounds every entry under ``max|g| / (2n)`` to zero; a logarithmic
quantizer keeps ``n`` octaves below ``2^ceil(log2 max|g|)``, so it keeps the small entries to within a factor √2.

* :func:`layer_errors` — ``g_{s_k}`` of every compute layer (``nn.Linear``/``nn.Conv2d`` output) for one batch,
  from one forward and backward pass on a copy of the model (the model, its running statistics and its ``.grad``
  are left untouched);
* :func:`quantization_stats` — per quantizer and bit width (:func:`qnnlib.gradquant.quantize_tensor`): the share
  of non-zero entries flushed to zero, the relative L2 error ``‖q − g‖ / ‖g‖``, the cosine between ``q`` and
  ``g``, and how many distinct magnitudes are used.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from qnnlib.gradquant import METHODS, quantize_tensor
from qnnlib.losses import get_loss

__all__ = ["layer_errors", "quantization_stats"]


def layer_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "square_hinge",
                 train_mode: bool = True) -> dict[str, torch.Tensor]:
    """``{module name: ∂L/∂s}`` for the output ``s`` of every ``nn.Linear``/``nn.Conv2d`` (the quantized layers
    of :mod:`qnnlib.layers` included), for the batch ``(x, y)`` and the loss ``loss``
    (:func:`qnnlib.losses.get_loss`), in forward order.

    A copy of ``model`` runs the pass (in training mode unless ``train_mode=False``: batch statistics,
    stochastic binarization and dropout as in a training step), so ``model`` is not changed. If the model
    quantizes its errors (a :class:`~qnnlib.gradquant.GradQuant` after the layer), the tensor returned is the one
    the layer's backward products consume, i.e. already quantized.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be tensors (a batch of inputs and its integer labels)")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of examples, got {x.shape[0]} and {y.shape[0]}")
    loss_fn = get_loss(loss)
    m = copy.deepcopy(model)
    m.train(train_mode)
    outs: dict[str, torch.Tensor] = {}
    handles = [mod.register_forward_hook(lambda _m, _a, out, name=name: outs.__setitem__(name, out))
               for name, mod in m.named_modules() if isinstance(mod, (nn.Linear, nn.Conv2d))]
    if not handles:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer whose error could be captured")
    try:
        out = m(x)
        names = [n for n, t in outs.items() if t.requires_grad]
        grads = torch.autograd.grad(loss_fn(out, y), [outs[n] for n in names], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return {n: (g if g is not None else torch.zeros_like(outs[n])).detach() for n, g in zip(names, grads)}


def quantization_stats(g: torch.Tensor, bits: Sequence[int], methods: Sequence[str] = METHODS) -> pd.DataFrame:
    """One row per (method, bits): what :func:`qnnlib.gradquant.quantize_tensor` does to the gradient ``g``.

    Columns: ``flushed_pct`` (non-zero entries of ``g`` that become 0, %), ``rel_error`` (‖q − g‖₂ / ‖g‖₂),
    ``cosine`` (⟨q, g⟩ / (‖q‖ ‖g‖); NaN when ``q`` is all zero), ``levels`` (distinct non-zero magnitudes of ``q``),
    ``sign_kept_pct`` (non-zero entries whose quantized value keeps their sign, %), ``octaves`` (log2 of the largest
    over the smallest non-zero magnitude of ``g``: the range a quantizer would need to keep every entry).
    """
    if not isinstance(g, torch.Tensor) or not g.is_floating_point():
        raise TypeError(f"g must be a floating-point tensor, got {type(g).__name__}")
    if not bool(torch.isfinite(g).all()):
        raise ValueError("g has NaN or infinite entries: the statistics would be meaningless")
    g = g.detach().double().flatten()
    nz = g != 0
    if not bool(nz.any()):
        raise ValueError("g is all zero: nothing to quantize")
    norm = float(g.norm())
    mags = g[nz].abs()
    octaves = float(torch.log2(mags.max() / mags.min()))
    rows = []
    for method in methods:
        for b in bits:
            q = quantize_tensor(g, b, method)
            qn = float(q.norm())
            rows.append({"method": method, "bits": int(b),
                         "flushed_pct": 100.0 * float(((q == 0) & nz).sum()) / int(nz.sum()),
                         "rel_error": float((q - g).norm()) / norm,
                         "cosine": float(q @ g) / (qn * norm) if qn > 0 else float("nan"),
                         "levels": int(q[q != 0].abs().unique().numel()),
                         "sign_kept_pct": 100.0 * float((torch.sign(q[nz]) == torch.sign(g[nz])).sum()) / int(nz.sum()),
                         "octaves": octaves})
    return pd.DataFrame(rows)
