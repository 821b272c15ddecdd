"""The authors' update rules, re-stated step by step in float64 NumPy, to test qnnlib against.

Each function names the repository, file and lines it re-states.  Repositories:

* T7 = github.com/itayhubara/BinaryNet (Torch7),
* Th = github.com/MatthieuCourbariaux/BinaryNet (Theano),
* La = github.com/Lasagne/Lasagne (commit 5d3c63cb), the ``lasagne.updates.adam`` that Th calls.

These are written from the authors' code, not from qnnlib, and use plain NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------------
# --- optimizers
# --------------------------------------------------------------------------------------------------


def ap2_exponent_round(x: float | np.ndarray) -> float | np.ndarray:
    """``2^round(log(x)/log(2))`` as T7 writes it (adaMax_binary_clip_shift.lua:57, :65); ``log(0) → −inf → 0``.

    Ties are irrelevant for the tests (a log2 exactly at k + ½ does not occur with these inputs).
    """
    with np.errstate(divide="ignore"):
        return np.power(2.0, np.round(np.log(x) / np.log(2.0)))


@dataclass
class AdamState:
    """Optimizer state of one flattened parameter vector: ``t``, ``m``, ``v`` (T7 ``state.t/m/v``)."""

    t: int = 0
    m: np.ndarray | None = None
    v: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def torch7_shift_adamax_step(
    x: np.ndarray,
    dfdx: np.ndarray,
    state: AdamState,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 2.0**-27,
    glr: np.ndarray | float = 1.0,
    clip_v: np.ndarray | None = None,
) -> np.ndarray:
    """One call of T7 ``adaMax_binary_clip_shift`` (adaMax_binary_clip_shift.lua:25-74); returns the new x.

    Defaults as the file's: ``beta1 = 0.9`` (:33), ``beta2 = 0.999`` (:34), ``epsilon = 2^−27`` (:35); the file's
    lr default 0.002 (:29) is not used by the Main scripts (they pass ``-LR``).  ``glr`` is ``config.GLRvec``
    (:30), ``clip_v`` is ``config.clipV`` (:31).
    """
    if state.m is None:
        state.m = np.zeros_like(x)  # :42
        state.v = np.zeros_like(x)  # :44
    state.t += 1  # :48
    state.m = state.m * beta1 + (1 - beta1) * dfdx  # :51
    state.v = np.maximum(state.v * beta2, np.abs(dfdx))  # :52
    bias_correction1 = 1 - beta1**state.t  # :53
    step_size = lr / bias_correction1  # :55
    step_size = float(ap2_exponent_round(step_size))  # :57
    state.v = ap2_exponent_round(state.v)  # :65 (written back into the state)
    state.v = state.v + epsilon  # :66 (also written back)
    tmp = state.m / state.v  # :59, :67
    x = x + (-step_size) * (tmp * glr)  # :69
    if clip_v is not None:
        x = np.where(clip_v == 1, np.clip(x, -1.0, 1.0), x)  # :71
    return x


def paper_shift_adamax_step(
    x: np.ndarray,
    g: np.ndarray,
    state: AdamState,
    *,
    lr: float,
    beta1: float = 1 - 2.0**-3,
    beta2: float = 1 - 2.0**-10,
    epsilon: float = 2.0**-27,
    glr: float = 1.0,
) -> np.ndarray:
    """The paper's Alg. 2 (Hubara et al., "Quantized Neural Networks", Alg. 2; BNN paper Alg. 4).

    ``m ← β1 m + (1 − β1) g``; ``v ← max(β2 v, |g|)`` (v is *not* rounded in the state);
    ``θ ← θ − (α ⊘ (1 − β1^t)) · (m ⊘ v^{−1})`` with ``⊘`` a shift: the step ``AP2(α/(1 − β1^t))`` and
    ``m · AP2(1/(v + ε))`` (ε of T7 :35).  ``glr``: a Glorot factor applied after the AP2 of the step, as T7 :69
    applies ``GLRvec`` (1 = the factor is inside ``lr``).
    """
    if state.m is None:
        state.m = np.zeros_like(x)
        state.v = np.zeros_like(x)
    state.t += 1
    state.m = beta1 * state.m + (1 - beta1) * g
    state.v = np.maximum(beta2 * state.v, np.abs(g))
    step = float(ap2_exponent_round(lr / (1 - beta1**state.t)))
    return x - step * glr * state.m * ap2_exponent_round(1.0 / (state.v + epsilon))


def lasagne_adam_step(
    param: np.ndarray,
    g_t: np.ndarray,
    state: AdamState,
    *,
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> np.ndarray:
    """One update of La ``lasagne.updates.adam`` (lasagne/updates.py:567-631); returns the new param.

    Defaults :567-568.  ``t ← t_prev + 1`` (:612); ``a_t = lr·sqrt(1 − β2^t)/(1 − β1^t)`` (:613);
    ``m_t = β1 m + (1 − β1) g`` (:622); ``v_t = β2 v + (1 − β2) g²`` (:623);
    ``step = a_t m_t/(sqrt(v_t) + ε)`` (:624); ``param − step`` (:628).
    """
    if state.m is None:
        state.m = np.zeros_like(param)  # :617
        state.v = np.zeros_like(param)  # :619
    state.t += 1  # :612
    a_t = learning_rate * np.sqrt(1 - beta2**state.t) / (1 - beta1**state.t)  # :613
    state.m = beta1 * state.m + (1 - beta1) * g_t  # :622
    state.v = beta2 * state.v + (1 - beta2) * g_t**2  # :623
    step = a_t * state.m / (np.sqrt(state.v) + epsilon)  # :624
    return param - step  # :628


def theano_clipping_scaling(param: np.ndarray, updated: np.ndarray, w_lr_scale: float, h: float = 1.0) -> np.ndarray:
    """Th ``binary_net.clipping_scaling`` for one binary layer's W (Train-time/binary_net.py:182-196).

    ``W ← W + W_LR_scale (update(W) − W)`` (:193), then ``clip(W, −H, H)`` (:194); ``W_LR_scale`` is
    ``1/sqrt(1.5/(fan_in + fan_out))`` (:98 dense, :142 conv).  Non-binary parameters get the plain adam update
    (Th mnist.py:187).
    """
    new = param + w_lr_scale * (updated - param)
    return np.clip(new, -h, h)


def torch7_glr_and_clip(model_file: str, layers: list[tuple[str, tuple[int, ...]]]) -> tuple[np.ndarray, np.ndarray]:
    """The ``learningRates`` (GLRvec) and ``clipvector`` a T7 model file builds, one entry per parameter *tensor*.

    ``layers``: ``(__typename, weight size)`` of each module with parameters, in ``model.modules`` order; each
    contributes ``weight`` then ``bias`` (``getParameters`` order).  Returns per tensor the factor and the clip
    flag (the files fill each tensor's range with one value).

    * ``"mnist"``: Models/BinaryNet_MNIST_Model.lua:44-80: BinaryLinear weight and bias
      ``1/sqrt(1.5/(size[1] + size[2]))`` (:51-52, :56), clip weight 1 (:53), bias 0 (:57);
      BatchNormalizationShiftPow2 / nn.BatchNormalization weight ``1/sqrt(1.5/size[1])`` (:61-62, :71-72), bias 1
      (:66, :76), no clip; other typenames: factor 0 (the vector's fill, :44) — absent from that model.
    * ``"cifar10"``: Models/BinaryNet_Cifar10_Model.lua:82-168: BinaryLinear and (cudnn)BinarySpatialConvolution
      weight and bias ``2^round(log2 GLR)`` (:88-89, :94, :141-142, :147, :155-156, :161), GLR of conv
      ``1/sqrt(1.5/(size[1]·k + size[2]·k))``, k = kH·kW (:140-141); every BN weight and bias 1 (:100-133);
      then ``clipvector:fill(1)`` (:168): every parameter clipped.
    * ``"svhn"``: Models/BinaryNet_SVHN_Model.lua:85-180: as cifar10 (:91-92, :97, :155-156, :161, :169-170, :175;
      BN 1, :103-147) but clip only binary weights (:94, :158, :172; no fill(1)).
    """
    if model_file not in ("mnist", "cifar10", "svhn"):
        raise ValueError(model_file)
    rounded = model_file != "mnist"
    lrs: list[float] = []
    clip: list[float] = []
    bn_types = ("BatchNormalizationShiftPow2", "nn.BatchNormalization", "SpatialBatchNormalizationShiftPow2",
                "nn.SpatialBatchNormalization")
    for typename, size in layers:
        if typename == "BinaryLinear":
            glr = 1 / np.sqrt(1.5 / (size[0] + size[1]))
        elif typename in ("BinarySpatialConvolution", "cudnnBinarySpatialConvolution") and model_file != "mnist":
            k = size[2] * size[3]
            glr = 1 / np.sqrt(1.5 / (size[0] * k + size[1] * k))
        elif typename in bn_types:
            if model_file == "mnist" and typename in ("BatchNormalizationShiftPow2", "nn.BatchNormalization"):
                lrs += [1 / np.sqrt(1.5 / size[0]), 1.0]
            elif model_file == "mnist":
                lrs += [0.0, 0.0]  # Spatial BN is not handled by the MNIST file
            else:
                lrs += [1.0, 1.0]
            clip += [0.0, 0.0]
            continue
        else:
            raise ValueError(typename)
        if rounded:
            glr = float(ap2_exponent_round(glr))
        lrs += [glr, glr]
        clip += [1.0, 0.0]
    clip_arr = np.array(clip)
    if model_file == "cifar10":
        clip_arr[:] = 1.0  # :168
    return np.array(lrs), clip_arr
