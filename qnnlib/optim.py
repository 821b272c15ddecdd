"""Shift-based AdaMax (paper Alg. 2), Glorot per-layer learning-rate scaling and latent-weight clipping.

Alg. 2 (docs/decisions.md D8), element-wise, with ``⊘`` a binary shift (multiplication by a power of two):

* ``m_t = β1 · m_{t−1} + (1 − β1) · g_t``
* ``v_t = max(β2 · v_{t−1}, |g_t|)``
* ``θ_t = θ_{t−1} − (α ⊘ (1 − β1^t)) · (m_t ⊘ v_t^{−1})``, i.e. the step ``AP2(α/(1 − β1^t))`` times
  ``m_t · AP2(1/(v_t + ε))`` (ε as in the Torch7 code, 2^−27).

Paper defaults ``α = 2^−10``, ``β1 = 1 − 2^−3``, ``β2 = 1 − 2^−10``.

Glorot scaling (Alg. 1 step 3, docs/decisions.md D9): the weight update of layer k is multiplied by
``γ_k = 1/sqrt(1.5/(fan_in + fan_out))`` — done here through a param group whose LR is ``γ_k · η``
(for ADAM this equals Theano's ``W ← W + γ_k (AdamStep(W) − W)``); BN and bias parameters keep the
base LR.  Then ``W ← Clip(W, −1, 1)`` (:func:`clip_latent_weights`).  Both walk every latent
tensor a layer declares (:meth:`qnnlib.layers.LatentWeightLayer.latent_weights`), each with its own fans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from qnnlib.layers import LatentWeight, LatentWeightLayer, weight_fans

__all__ = ["ShiftAdaMax", "glorot_scale", "glorot_lr_scale", "glorot_param_groups", "clip_latent_weights"]


class ShiftAdaMax(torch.optim.Optimizer):
    """Shift-based AdaMax (Alg. 2): AdaMax with every multiplication by a step size made a shift.

    Each param group may carry its own ``lr`` (e.g. from :func:`glorot_param_groups`); the group
    LR enters through ``AP2(lr/(1 − β1^t))``, so a Glorot factor is effectively rounded to a power of
    two (as in the Torch7 code).  State per parameter: ``step``, ``exp_avg`` (m), ``exp_inf`` (v).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 2.0**-10,
        betas: tuple[float, float] = (1 - 2.0**-3, 1 - 2.0**-10),
        eps: float = 2.0**-27,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise ValueError("ShiftAdaMax does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_inf"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_inf"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)  # m_t = β1 m + (1-β1) g
                torch.maximum(v.mul_(beta2), g.abs(), out=v)  # v_t = max(β2 v, |g|)
                step_size = 2.0 ** round(math.log2(group["lr"] / (1 - beta1**t)))  # AP2(α / (1-β1^t))
                # θ ← θ − AP2(α/(1−β1^t)) · m · AP2(1/(v + ε)); v + ε > 0, so
                # AP2(1/(v + ε)) = 2^round(−log2(v + ε)) (one shift; 4 passes instead of ap2's 7).
                inv_v = torch.log2(v + group["eps"]).neg_().round_().exp2_()
                p.addcmul_(m, inv_v, value=-step_size)
        return loss


def glorot_scale(fan_in: int, fan_out: int) -> float:
    """``γ = 1/sqrt(1.5/(fan_in + fan_out))`` (Glorot & Bengio 2010), as in Theano BinaryNet."""
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fan_in and fan_out must be >= 1, got fan_in={fan_in}, fan_out={fan_out}")
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


def _fans(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, LatentWeightLayer):
        latent = list(module.latent_weights())
        if len(latent) != 1:
            raise ValueError(f"{type(module).__name__} has {len(latent)} latent weight tensors "
                             f"({[lw.name for lw in latent]}): one γ per tensor, see its latent_weights()")
        return latent[0].fan_in, latent[0].fan_out
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        return weight_fans(module)
    if isinstance(module, (nn.RNNBase,)):
        return module.input_size, module.hidden_size
    raise ValueError(
        f"glorot_lr_scale needs a Linear or Conv layer (or a module with weight of known fans), "
        f"got {type(module).__name__}"
    )


def glorot_lr_scale(module: nn.Module) -> float:
    """``γ = 1/sqrt(1.5/(fan_in + fan_out))`` (Glorot & Bengio 2010), as in Theano BinaryNet.

    Linear: fan_in = in_features, fan_out = out_features.  Conv: fan_in = k²·C_in (per group),
    fan_out = k²·C_out, no division by a pooling size.  MNIST 784→4096 gives ≈ 57.0.  A layer with one
    latent tensor uses that tensor's fans (:meth:`~qnnlib.layers.LatentWeightLayer.latent_weights`); a
    layer with several has one γ per tensor (:func:`glorot_param_groups`) and raises here.
    """
    return glorot_scale(*_fans(module))


def glorot_param_groups(
    model: nn.Module,
    lr: float,
    *,
    round_pow2: bool = False,
    include_float_layers: bool = False,
) -> list[dict[str, Any]]:
    """Param groups giving each latent weight tensor ``W`` the LR ``γ_W · lr``; all else ``lr``.

    Every tensor listed by a quantized layer's
    :meth:`~qnnlib.layers.LatentWeightLayer.latent_weights` gets its own group, scaled by the Glorot
    factor of its own fans (an LSTM-like layer: one group for ``weight_ih``, one for ``weight_hh``), in
    module order, then tensor order.  ``round_pow2`` rounds ``γ`` to a power of two (the Torch7
    recipe).  By default only latent weights are scaled, as in the paper's Alg. 1;
    ``include_float_layers=True`` also scales float ``nn.Linear``/``nn.Conv*`` weights (a float
    baseline "trained the same way").  Each group records its ``lr_scale`` and ``name``
    (``"<module>.<tensor>"``); a tensor shared by two layers is grouped once.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    scaled: list[dict[str, Any]] = []
    seen: set[int] = set()
    for name, mod in model.named_modules():
        if isinstance(mod, LatentWeightLayer):
            latent = list(mod.latent_weights())
        elif isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and include_float_layers:
            latent = [LatentWeight("weight", mod.weight, *weight_fans(mod))] if mod.weight is not None else []
        else:
            continue
        for lw in latent:
            if lw.param is None or id(lw.param) in seen:
                continue
            scale = glorot_scale(lw.fan_in, lw.fan_out)
            if round_pow2:
                scale = 2.0 ** round(math.log2(scale))
            scaled.append({"params": [lw.param], "lr": lr * scale, "lr_scale": scale, "name": f"{name}.{lw.name}"})
            seen.add(id(lw.param))
    rest = [p for p in model.parameters() if id(p) not in seen]
    groups = scaled
    if rest:
        groups = groups + [{"params": rest, "lr": lr, "lr_scale": 1.0, "name": "unscaled"}]
    return groups


@torch.no_grad()
def clip_latent_weights(model: nn.Module, bound: float | None = None) -> int:
    """Clip every latent weight tensor to ``[−c, c]`` (Alg. 1: ``W ← Clip(Update(W), −1, 1)``).

    Every tensor of every quantized layer's
    :meth:`~qnnlib.layers.LatentWeightLayer.latent_weights` is clipped (biases and BN parameters are
    not).  ``c`` is each layer's ``clip_value`` (1 by default) unless ``bound`` is given.  Call after
    every optimizer step.  Returns the number of layers clipped.
    """
    n = 0
    for mod in model.modules():
        if isinstance(mod, LatentWeightLayer):
            c = float(bound if bound is not None else mod.clip_value)
            for lw in mod.latent_weights():
                lw.param.clamp_(-c, c)
            n += 1
    return n
