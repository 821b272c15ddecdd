"""Shift-based batch normalization (SBN), paper Alg. 3, with the Torch7 semantics (docs/decisions.md D7).

Training mode, over the batch (and spatial positions for the 2-D variant), per feature:

1. ``μ_B = (1/m) Σ x_i``
2. ``C(x_i) = x_i − μ_B``
3. ``σ²_B = (1/m) Σ C(x_i) · AP2(C(x_i))``          — the square replaced by a shift
4. ``x̂_i = C(x_i) · AP2((σ²_B + ε)^(−1/2))``        — the division replaced by a shift
5. ``y_i = AP2(γ) · x̂_i + β``                       — β as in the Torch7 code

Running statistics are the mean and ``1/σ`` (momentum 0.125, Torch7's value); evaluation uses
``x̂ = (x − running_mean) · AP2(running 1/σ)``.

Backward (``backward=``):

* ``"autograd"`` (default): autograd through the steps above, every AP2 with the straight-through gradient
  (:func:`qnnlib.quantize.ap2_ste`), so the backward pass approximates vanilla BN's;
* ``"torch7"``: the hand-written backward of the authors' Torch7 module (itayhubara/BinaryNet,
  ``Models/BatchNormalizationShiftPow2.lua`` l. 120–157, ``Models/SpatialBatchNormalizationShiftPow2.lua``
  l. 135–189), with ``S = AP2(1/σ)``, ``C̃ = AP2(C)``, ``γ̃ = AP2(γ)`` and means over the batch (and pixels):
  ``g_x = γ̃ · S · (g − mean(g) − C̃ · S² · mean(C̃ · g))``, ``g_γ = Σ AP2(x̂) · g``, ``g_β = Σ g``.

:class:`LasagneBatchNorm` is vanilla BN with Lasagne's running statistics (a moving average of
``1/√(biased var + ε)``, used in evaluation), the BN of the authors' Theano code.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.quantize import ap2, ap2_ste

__all__ = ["ShiftBatchNorm1d", "ShiftBatchNorm2d", "ShiftBatchNormBase", "LasagneBatchNorm", "SBNBackward",
           "is_batch_norm"]

SBNBackward = Literal["autograd", "torch7"]


class _ShiftBNTorch7(torch.autograd.Function):
    """Training-mode SBN forward (Alg. 3, same arithmetic as the autograd path) with Torch7's backward.

    Forward: itayhubara/BinaryNet ``Models/BatchNormalizationShiftPow2.lua`` l. 76–116 (2-D:
    ``Models/SpatialBatchNormalizationShiftPow2.lua`` l. 80–130).  Backward: ``updateGradInput`` l. 120–145
    and ``accGradParameters`` l. 147–157 (2-D: l. 135–189).  Returns ``(y, μ_B, 1/σ_B)``; the statistics
    are not differentiable (they feed the running averages only).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                dims: list[int], shape: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu = x.mean(dim=dims)
        c = x - mu.view(shape)
        c_ap2 = ap2(c)
        var = (c * c_ap2).mean(dim=dims)
        invstd = torch.rsqrt(var + eps)
        s = ap2(invstd)
        xhat = c * s.view(shape)
        if weight is not None:
            w_ap2 = ap2(weight)
            y = w_ap2.view(shape) * xhat + bias.view(shape)
        else:
            w_ap2 = None
            y = xhat
        ctx.dims, ctx.shape = dims, shape
        ctx.save_for_backward(c_ap2, s, ap2(xhat), w_ap2)
        ctx.mark_non_differentiable(mu, invstd)
        return y, mu, invstd

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor, _gmu: Any, _ginv: Any) -> tuple[torch.Tensor | None, ...]:
        c_ap2, s, xhat_ap2, w_ap2 = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        sv = s.view(shape)
        gx = -(c_ap2 * gy).mean(dim=dims).view(shape) * c_ap2 * sv * sv  # l. 126–131
        gx = (gx + gy - gy.mean(dim=dims).view(shape)) * sv  # l. 133–137
        gw = gb = None
        if w_ap2 is not None:
            gx = gx * w_ap2.view(shape)  # l. 139–142
            gw = (xhat_ap2 * gy).sum(dim=dims)  # l. 150–153: Σ AP2(x̂)·g
            gb = gy.sum(dim=dims)  # l. 154–155
        return gx, gw, gb, None, None, None


def _check_common(num_features: int, eps: float, momentum: float) -> None:
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum must be in (0, 1], got {momentum}")


class _ShiftBatchNorm(nn.Module):
    _expected_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.125,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        backward: SBNBackward = "autograd",
        running_invstd_init: float = 1.0,
    ) -> None:
        super().__init__()
        _check_common(num_features, eps, momentum)
        if backward not in ("autograd", "torch7"):
            raise ValueError(f"backward must be 'autograd' or 'torch7', got {backward!r}")
        if isinstance(running_invstd_init, bool) or not isinstance(running_invstd_init, (int, float)) \
                or not math.isfinite(running_invstd_init) or running_invstd_init < 0:
            raise ValueError(f"running_invstd_init must be a finite number >= 0, got {running_invstd_init!r}")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.backward = backward
        self.running_invstd_init = float(running_invstd_init)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_invstd", torch.full((num_features,), self.running_invstd_init, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_invstd", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_invstd.fill_(self.running_invstd_init)
            self.num_batches_tracked.zero_()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() not in self._expected_dims:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(f'{d}-D' for d in self._expected_dims)} "
                f"input (N, C, ...), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels (input shape {tuple(x.shape)})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            m = x.numel() // self.num_features
            if m < 2 and self.training:
                raise ValueError(f"{type(self).__name__} needs more than one value per channel in training mode")
            if self.backward == "torch7":
                y, mu, invstd = _ShiftBNTorch7.apply(x, self.weight, self.bias, self.eps, dims, shape)
                self._update(mu, invstd)
                return y
            mu = x.mean(dim=dims)  # step 1
            c = x - mu.view(shape)  # step 2
            var = (c * ap2_ste(c)).mean(dim=dims)  # step 3: σ² ≈ mean(C · AP2(C))
            # C·AP2(C) ≥ 0 always (same signs), so var ≥ 0.
            invstd = torch.rsqrt(var + self.eps)
            xhat = c * ap2_ste(invstd).view(shape)  # step 4
            self._update(mu, invstd)
        else:
            xhat = (x - self.running_mean.view(shape)) * ap2(self.running_invstd).view(shape)
        if self.affine:
            return ap2_ste(self.weight).view(shape) * xhat + self.bias.view(shape)  # step 5
        return xhat

    def _update(self, mu: torch.Tensor, invstd: torch.Tensor) -> None:
        # Torch7 l. 78 and l. 91: running mean and running 1/σ (before AP2), momentum 0.125
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mu.detach(), self.momentum)
                self.running_invstd.lerp_(invstd.detach(), self.momentum)
                self.num_batches_tracked += 1

    def extra_repr(self) -> str:
        extra = "" if self.backward == "autograd" else f", backward={self.backward!r}"
        if self.running_invstd_init != 1.0:
            extra += f", running_invstd_init={self.running_invstd_init}"
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}{extra}"
        )


class ShiftBatchNorm1d(_ShiftBatchNorm):
    """Drop-in for ``nn.BatchNorm1d`` (inputs (N, C) or (N, C, L)) computing Alg. 3 with shifts.

    Torch7's 1-D module (``BatchNormalizationShiftPow2.lua`` l. 23–29) has ε = 1e-5, momentum 0.125 and
    running 1/σ starting at 1 — the defaults here.  ``backward="torch7"``: its hand-written backward.
    """

    _expected_dims = (2, 3)


class ShiftBatchNorm2d(_ShiftBatchNorm):
    """Drop-in for ``nn.BatchNorm2d`` (inputs (N, C, H, W)) computing Alg. 3 with shifts.

    Torch7's spatial module (``SpatialBatchNormalizationShiftPow2.lua`` l. 14–16, 76–79) has ε = 1e-5,
    momentum 0.125, and starts running 1/σ at **0** on the first training batch
    (``running_invstd_init=0.0`` restates that; the default 1.0 is the 1-D module's value).
    """

    _expected_dims = (4,)


class LasagneBatchNorm(nn.Module):
    """Vanilla BN with Lasagne's running statistics: the BN of the authors' Theano code.

    ``lasagne.layers.BatchNormLayer`` (Lasagne/Lasagne ``lasagne/layers/normalization.py`` l. 234–326,
    used by MatthieuCourbariaux/BinaryNet ``Train-time/mnist.py`` l. 145–148 with ε = 1e-4, α = 0.1):

    * training: ``y = (x − μ_B) · γ · 1/√(σ²_B + ε) + β`` with the **biased** batch variance
      (``input.var``, l. 275–276), gradients through all of it (autograd, as Theano);
    * running statistics (l. 301–305): ``mean ← (1−α)·mean + α·μ_B`` and
      ``inv_std ← (1−α)·inv_std + α·1/√(σ²_B + ε)``, starting at 0 and 1 (l. 236);
    * evaluation (l. 283–285, 325): ``y = (x − mean) · (γ · inv_std) + β``.

    ``nn.BatchNorm`` instead averages the unbiased variance and evaluates ``1/√(running_var + ε)``; by
    Jensen (``1/√·`` is convex) and the unbiased factor the two differ.  Parameters are named as in
    ``nn.BatchNorm`` (``weight``, ``bias``, ``running_mean``, ``num_batches_tracked``) with
    ``running_invstd`` in place of ``running_var``.  Inputs (N, C), (N, C, L) or (N, C, H, W).
    """

    _expected_dims: tuple[int, ...] = (2, 3, 4)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-4,
        momentum: float = 0.1,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_common(num_features, eps, momentum)
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_invstd", torch.ones(num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_invstd.fill_(1.0)
        self.num_batches_tracked.zero_()

    def running_var_equivalent(self) -> torch.Tensor:
        """``1/running_invstd² − ε``: the ``running_var`` with which ``nn.BatchNorm``'s eval formula gives the
        same output (up to rounding); for code that reads ``running_var`` (e.g. BN folding)."""
        return self.running_invstd.detach().pow(-2) - self.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ShiftBatchNorm._check_input(self, x)  # type: ignore[arg-type]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        if self.training:
            if x.numel() // self.num_features < 2:
                raise ValueError(f"{type(self).__name__} needs more than one value per channel in training mode")
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)  # Theano's input.var: the biased (population) variance
            invstd = 1.0 / torch.sqrt(var + self.eps)
            with torch.no_grad():
                a = self.momentum
                self.running_mean.copy_((1 - a) * self.running_mean + a * mean.detach())
                self.running_invstd.copy_((1 - a) * self.running_invstd + a * invstd.detach())
                self.num_batches_tracked += 1
        else:
            mean, invstd = self.running_mean, self.running_invstd
        scale = invstd if self.weight is None else self.weight * invstd
        y = (x - mean.view(shape)) * scale.view(shape)
        return y if self.bias is None else y + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, running=lasagne"


ShiftBatchNormBase = _ShiftBatchNorm  # public name of the shared base of ShiftBatchNorm1d/2d (isinstance checks)


def is_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a batch norm: torch ``BatchNorm*d``, :class:`ShiftBatchNormBase` or
    :class:`LasagneBatchNorm` (all have ``weight`` = γ, ``bias`` = β, ``running_mean``)."""
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, _ShiftBatchNorm, LasagneBatchNorm))
