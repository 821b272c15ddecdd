"""Shift-based batch normalization (SBN), paper Alg. 3, with the Torch7 semantics (docs/decisions.md D7).

Training mode, over the batch (and spatial positions for the 2-D variant), per feature:

1. ``μ_B = (1/m) Σ x_i``
2. ``C(x_i) = x_i − μ_B``
3. ``σ²_B = (1/m) Σ C(x_i) · AP2(C(x_i))``          — the square replaced by a shift
4. ``x̂_i = C(x_i) · AP2((σ²_B + ε)^(−1/2))``        — the division replaced by a shift
5. ``y_i = AP2(γ) · x̂_i + β``                       — β as in the Torch7 code

Running statistics are the mean and ``1/σ`` (momentum 0.125, Torch7's value); evaluation uses
``x̂ = (x − running_mean) · AP2(running 1/σ)``.  Every AP2 uses the straight-through gradient
(:func:`qnnlib.quantize.ap2_ste`), so the backward pass approximates vanilla BN's.
"""

from __future__ import annotations

import torch
from torch import nn

from qnnlib.quantize import ap2, ap2_ste

__all__ = ["ShiftBatchNorm1d", "ShiftBatchNorm2d"]


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
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_invstd", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_invstd", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_invstd.fill_(1.0)
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
            mu = x.mean(dim=dims)  # step 1
            c = x - mu.view(shape)  # step 2
            var = (c * ap2_ste(c)).mean(dim=dims)  # step 3: σ² ≈ mean(C · AP2(C))
            # C·AP2(C) ≥ 0 always (same signs), so var ≥ 0.
            invstd = torch.rsqrt(var + self.eps)
            xhat = c * ap2_ste(invstd).view(shape)  # step 4
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.lerp_(mu.detach(), self.momentum)
                    self.running_invstd.lerp_(invstd.detach(), self.momentum)
                    self.num_batches_tracked += 1
        else:
            xhat = (x - self.running_mean.view(shape)) * ap2(self.running_invstd).view(shape)
        if self.affine:
            return ap2_ste(self.weight).view(shape) * xhat + self.bias.view(shape)  # step 5
        return xhat

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class ShiftBatchNorm1d(_ShiftBatchNorm):
    """Drop-in for ``nn.BatchNorm1d`` (inputs (N, C) or (N, C, L)) computing Alg. 3 with shifts."""

    _expected_dims = (2, 3)


class ShiftBatchNorm2d(_ShiftBatchNorm):
    """Drop-in for ``nn.BatchNorm2d`` (inputs (N, C, H, W)) computing Alg. 3 with shifts."""

    _expected_dims = (4,)
