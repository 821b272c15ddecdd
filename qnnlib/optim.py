"""Shift-based AdaMax (paper Alg. 2), Lasagne's Adam, Glorot per-layer learning-rate scaling and clipping.

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

Where the authors' code departs from the paper's text, each departure is a named option (defaults: the paper
and today's qnnlib; "T7" = itayhubara/BinaryNet, "Th" = MatthieuCourbariaux/BinaryNet, "La" = Lasagne/Lasagne):

======================================  =======================  ==================================  =================
option                                  paper text               Torch7 code                         Theano code
======================================  =======================  ==================================  =================
``ShiftAdaMax(state_rule=)``            ``"paper"``: v decays    ``"torch7"``: v ← AP2(v)+ε stored,  (uses Adam)
                                        by β2, θ −= step·m·      θ −= step·m/v (adaMax_binary_clip
                                        AP2(1/(v+ε))             _shift.lua:52,65-69)
``ShiftAdaMax(betas=)``                 1−2^−3, 1−2^−10 (def.)   0.9, 0.999 (…shift.lua:33-34; the   Adam 0.9, 0.999
                                                                 Main_*.lua set none); ε 2^−27 (:35)
``ShiftAdaMax(glorot=)``                ``"inside"``: AP2(γ·α/   ``"after"``: AP2(α/(1−β1^t))·GLR    γ after Adam
                                        (1−β1^t)) (qnnlib)       (…shift.lua:57,69)                  (binary_net.py:193)
``glorot_param_groups(scale_biases=)``  False: W only (Alg. 1)   True: bias × GLR (MNIST_Model.lua   False (W only)
                                                                 :56; Cifar10 :94; SVHN :97)
``glorot_param_groups(scale_bn=)``      False                    True in MNIST_Model.lua:61,71 (BN γ False
                                                                 × 1/sqrt(1.5/N)); False Cifar/SVHN
``glorot_param_groups(round_pow2=)``    False                    True in Cifar10:89,142,156 and SVHN False
                                                                 :92,156,170; False in MNIST :51
``clip_parameters(which=)``             ``"latent"``: W only     ``"all"`` in Cifar10_Model.lua:168; ``"latent"``
                                                                 ``"latent"`` MNIST :53, SVHN :94    (binary_net:194)
:class:`LasagneAdam` (vs torch Adam)    Adam (Kingma & Ba)       same rule in adam_binary_clip_b     La updates.py:613
                                                                 .lua:53-57 (never called)           -624
======================================  =======================  ==================================  =================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.layers import LatentWeight, LatentWeightLayer, weight_fans
from qnnlib.norm import is_batch_norm

__all__ = ["LasagneAdam", "ShiftAdaMax", "clip_latent_weights", "clip_parameters", "glorot_lr_scale",
           "glorot_param_groups", "glorot_scale"]

StateRule = Literal["paper", "torch7"]
GlorotMode = Literal["inside", "after"]
ClipWhich = Literal["latent", "all"]
_STATE_RULES = ("paper", "torch7")
_GLOROT_MODES = ("inside", "after")


def _check_adam_args(lr: float, betas: tuple[float, float], eps: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def _ap2_scalar(x: float) -> float:
    """``2^round(log2 x)`` for a positive Python float (a step size; one shift)."""
    return 2.0 ** round(math.log2(x))


def _closure_loss(closure: Callable[[], torch.Tensor] | None) -> torch.Tensor | None:
    """The loss of ``closure`` evaluated with gradients on (``step`` runs under ``no_grad``), or ``None``."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _moments(opt: torch.optim.Optimizer, group: dict[str, Any], second: str
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]]:
    """For each parameter of ``group`` with a gradient: ``(p, g, t, m, v)`` after counting the step, with the
    first moment ``exp_avg`` and the second moment ``second`` created at zero on the first step."""
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise ValueError(f"{type(opt).__name__} does not support sparse gradients")
        state = opt.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state[second] = torch.zeros_like(p)
        state["step"] += 1
        yield p, p.grad, state["step"], state["exp_avg"], state[second]


class ShiftAdaMax(torch.optim.Optimizer):
    """Shift-based AdaMax (Alg. 2): AdaMax with every multiplication by a step size made a shift.

    Each param group may carry its own ``lr`` (e.g. from :func:`glorot_param_groups`); the group
    LR enters through ``AP2(lr/(1 − β1^t))``, so a Glorot factor is effectively rounded to a power of
    two (as in the Torch7 code).  State per parameter: ``step``, ``exp_avg`` (m), ``exp_inf`` (v).

    ``state_rule`` (per group, default ``"paper"``):

    * ``"paper"``: Alg. 2 as above; v is the decayed max ``max(β2 v, |g|)``, and the update multiplies m by
      ``AP2(1/(v + ε))``.
    * ``"torch7"``: itayhubara/BinaryNet adaMax_binary_clip_shift.lua:52-69: ``v ← max(β2 v, |g|)`` (:52), then
      ``v ← AP2(v) + ε`` *written back into the state* (:65-66), and ``θ ← θ − step · (m / v) · GLR`` (:67-69),
      a true division.  Since ``AP2(β2 · 2^k) = 2^k`` for ``β2 > 2^−½``, the stored v never decays: it is the
      running max of ``AP2(|g|)`` (plus ε), not the paper's decaying max.

    ``glorot`` (per group, default ``"inside"``): ``"inside"`` takes the step ``AP2(lr_group/(1 − β1^t))`` (the
    group LR ``γ·α`` is inside the AP2: γ effectively rounded to a power of two); ``"after"`` takes
    ``AP2(α/(1 − β1^t)) · γ`` with ``α = lr/lr_scale`` and ``γ = lr_scale`` (1 when the group has none), as the
    Torch7 file multiplies the unrounded GLRvec after the shift (…shift.lua:57, 69).

    Betas: the paper's text (Alg. 2) gives ``β1 = 1 − 2^−3, β2 = 1 − 2^−10`` (the default here); the Torch7
    file defaults to 0.9/0.999 (…shift.lua:33-34) and its Main_BinaryNet_*.lua set none, so the Torch7 runs used
    0.9/0.999.  ε = 2^−27 in both (…shift.lua:35).  The file's lr default is 0.002 (:29); the Main scripts pass
    2^−6 (MNIST, CIFAR-10) or 2^−7 (SVHN), halved every 20 epochs.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 2.0**-10,
        betas: tuple[float, float] = (1 - 2.0**-3, 1 - 2.0**-10),
        eps: float = 2.0**-27,
        *,
        state_rule: StateRule = "paper",
        glorot: GlorotMode = "inside",
    ) -> None:
        _check_adam_args(lr, betas, eps)
        if state_rule not in _STATE_RULES:
            raise ValueError(f"state_rule must be one of {_STATE_RULES}, got {state_rule!r}")
        if glorot not in _GLOROT_MODES:
            raise ValueError(f"glorot must be one of {_GLOROT_MODES}, got {glorot!r}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "state_rule": state_rule,
                                  "glorot": glorot})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        loss = _closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            # groups restored from a checkpoint written before these options existed have no keys: the defaults
            state_rule = group.get("state_rule", "paper")
            gamma = float(group.get("lr_scale", 1.0)) if group.get("glorot", "inside") == "after" else 1.0
            for p, g, t, m, v in _moments(self, group, "exp_inf"):
                m.mul_(beta1).add_(g, alpha=1 - beta1)  # m_t = β1 m + (1-β1) g
                torch.maximum(v.mul_(beta2), g.abs(), out=v)  # v_t = max(β2 v, |g|)
                if gamma == 1.0:
                    step_size = _ap2_scalar(group["lr"] / (1 - beta1**t))  # AP2(α / (1-β1^t))
                else:  # "after": AP2(α/(1−β1^t)) with α = lr/γ, γ applied unrounded below
                    step_size = _ap2_scalar(group["lr"] / gamma / (1 - beta1**t))
                if state_rule == "paper":
                    # θ ← θ − AP2(α/(1−β1^t)) · m · AP2(1/(v + ε)); v + ε > 0, so
                    # AP2(1/(v + ε)) = 2^round(−log2(v + ε)) (one shift; 4 passes instead of ap2's 7).
                    inv_v = torch.log2(v + group["eps"]).neg_().round_().exp2_()
                    p.addcmul_(m, inv_v, value=-step_size if gamma == 1.0 else -(step_size * gamma))
                else:
                    # Torch7: v ← AP2(v) + ε kept as state (AP2(0) = 0), θ ← θ − step · (m / v) · GLR
                    v.log2_().round_().exp2_().add_(group["eps"])
                    upd = torch.div(m, v)
                    if gamma != 1.0:
                        upd.mul_(gamma)
                    p.add_(upd, alpha=-step_size)
        return loss


class LasagneAdam(torch.optim.Optimizer):
    """Adam as ``lasagne.updates.adam`` computes it (Lasagne/Lasagne lasagne/updates.py:612-628).

    ``t ← t + 1``; ``a_t = lr · sqrt(1 − β2^t)/(1 − β1^t)`` (:613); ``m ← β1 m + (1 − β1) g`` (:622);
    ``v ← β2 v + (1 − β2) g²`` (:623); ``θ ← θ − a_t · m/(sqrt(v) + ε)`` (:624).  ε is added to the
    *uncorrected* ``sqrt(v)``; ``torch.optim.Adam`` adds it to ``sqrt(v/(1 − β2^t))``, i.e. its ε is
    ``1/sqrt(1 − β2^t)`` times larger in Lasagne's terms (≈ 31.6× at t = 1 with β2 = 0.999).

    Param groups work as in torch (a group LR ``γ·lr`` gives Theano BinaryNet's
    ``W ← W + γ (AdamStep(W) − W)``, binary_net.py:193, since ``a_t`` is linear in lr).  State per parameter:
    ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v).  Defaults are Lasagne's (:567-568).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        _check_adam_args(lr, betas, eps)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        loss = _closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p, g, t, m, v in _moments(self, group, "exp_avg_sq"):
                a_t = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-a_t)
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
    scale_biases: bool = False,
    scale_bn: bool = False,
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

    The Torch7 models (itayhubara/BinaryNet Models/*.lua) build a per-element ``GLRvec`` instead:

    * MNIST (BinaryNet_MNIST_Model.lua:48-80): BinaryLinear weight ``γ = 1/sqrt(1.5/(out + in))`` unrounded
      (:51-52); its bias the same γ (:56); BatchNormalizationShiftPow2 and nn.BatchNormalization weight (BN γ)
      ``1/sqrt(1.5/N)``, N = num_features (:61-62, :71-72); BN bias (β) 1 (:66, :76).  → ``scale_biases=True,
      scale_bn=True``.
    * CIFAR-10 (BinaryNet_Cifar10_Model.lua:85-166): BinaryLinear and (cudnn)BinarySpatialConvolution weights
      γ rounded to a power of two (:89, :142, :156; conv fans k²·C_out + k²·C_in, :141, :155); their biases the
      same rounded γ (:94, :147, :161); every BN's γ and β 1 (:100-113, :119-133).  → ``round_pow2=True,
      scale_biases=True``.
    * SVHN (BinaryNet_SVHN_Model.lua:88-180): as CIFAR-10 (rounded γ :92, :156, :170; biases :97, :161, :175;
      BN 1 :103-147).  → ``round_pow2=True, scale_biases=True``.

    The Theano code (Train-time/binary_net.py:186-194) scales only the binary layers' ``W`` (unrounded, :98, :142).

    ``scale_biases=True`` puts each scaled layer's own bias parameters (names starting ``bias``) in a group with
    that layer's γ (after ``round_pow2``); a layer with several latent tensors has no single γ and raises.
    ``scale_bn=True`` puts each batch norm's (:func:`qnnlib.norm.is_batch_norm`: torch, shift-based, Lasagne)
    affine weight in a group with
    ``γ = 1/sqrt(1.5/num_features)`` (rounded too if ``round_pow2``; no authors' model combines the two); the BN
    bias keeps the base LR.  Groups appear in module order (weight, then bias); the rest come last as
    ``"unscaled"``.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    scaled: list[dict[str, Any]] = []
    seen: set[int] = set()

    def add(name: str, param: torch.Tensor, scale: float) -> None:
        scaled.append({"params": [param], "lr": lr * scale, "lr_scale": scale, "name": name})
        seen.add(id(param))

    def factor(scale: float) -> float:
        return 2.0 ** round(math.log2(scale)) if round_pow2 else scale

    for name, mod in model.named_modules():
        if isinstance(mod, LatentWeightLayer):
            latent = list(mod.latent_weights())
        elif isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and include_float_layers:
            latent = [LatentWeight("weight", mod.weight, *weight_fans(mod))] if mod.weight is not None else []
        elif scale_bn and is_batch_norm(mod):  # torch BN, qnnlib shift BN (Alg. 3), Lasagne BN
            w = getattr(mod, "weight", None)
            if isinstance(w, torch.Tensor) and id(w) not in seen:
                add(f"{name}.weight", w, factor(1.0 / math.sqrt(1.5 / w.numel())))  # MNIST_Model.lua:61, :71
            continue
        else:
            continue
        gammas = []
        for lw in latent:
            scale = factor(glorot_scale(lw.fan_in, lw.fan_out))
            gammas.append(scale)
            if lw.param is None or id(lw.param) in seen:
                continue
            add(f"{name}.{lw.name}", lw.param, scale)
        if scale_biases:
            latent_ids = {id(lw.param) for lw in latent}
            biases = [(n, p) for n, p in mod.named_parameters(recurse=False)
                      if n.startswith("bias") and id(p) not in latent_ids and id(p) not in seen]
            if biases and len(gammas) != 1:
                raise ValueError(f"scale_biases: {type(mod).__name__} {name!r} has {len(gammas)} latent weight "
                                 f"tensors, so no single Glorot factor for its biases {[n for n, _ in biases]}")
            for n, p in biases:
                add(f"{name}.{n}", p, gammas[0])
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


@torch.no_grad()
def clip_parameters(model: nn.Module, which: ClipWhich = "latent", bound: float | None = 1.0) -> int:
    """Clip after an update: ``"latent"`` the latent weights only, ``"all"`` every parameter.

    * ``"latent"`` = :func:`clip_latent_weights` (paper Alg. 1 ``W ← Clip(W, −1, 1)``; Theano
      binary_net.py:194; Torch7 MNIST model clipV = 1 on BinaryLinear weights only, BinaryNet_MNIST_Model.lua:53,
      57, 63-67, and Main_BinaryNet_MNIST.lua:235-244; SVHN model :94, :158, :172).  ``bound=None`` uses each
      layer's ``clip_value``.  Returns the number of quantized layers clipped.
    * ``"all"``: every parameter of ``model`` — latent weights, float weights, biases, BN γ and β — clamped to
      ``[−bound, bound]``, as the Torch7 CIFAR-10 model does (BinaryNet_Cifar10_Model.lua:168
      ``clipvector:fill(1)`` overriding the per-layer vector, applied in adaMax_binary_clip_shift.lua:71).
      Returns the number of parameter tensors clipped.
    """
    if which == "latent":
        return clip_latent_weights(model, bound)
    if which != "all":
        raise ValueError(f"which must be 'latent' or 'all', got {which!r}")
    if bound is None or not bound > 0:
        raise ValueError(f"clip_parameters(which='all') needs a bound > 0, got {bound}")
    n = 0
    for p in model.parameters():
        p.clamp_(-float(bound), float(bound))
        n += 1
    return n
