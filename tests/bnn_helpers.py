"""Shared test helpers (not a test module): random binary MLPs and 8-bit images for the inference tests
(tests/test_inference.py, tests/test_packed_bnn.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qnnlib.layers import QuantLinear
from qnnlib.models.mlp import mnist_mlp
from qnnlib.runtime.bitplanes import inputs_from_pixels, pixels_from_inputs


def random_bnn(hidden: int = 96, depth: int = 3, seed: int = 0, in_features: int = 784) -> nn.Sequential:
    """An eval-mode binary MLP with random weights, biases and BN statistics (some γ < 0, some γ = 0)."""
    torch.manual_seed(seed)
    model = mnist_mlp(hidden, depth, in_features=in_features, dropout_in=0.2, dropout_hidden=0.5)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QuantLinear):
                m.bias.copy_(torch.randn(m.out_features, generator=g))
            if isinstance(m, nn.BatchNorm1d):
                h = m.num_features
                m.running_mean.copy_(torch.randn(h, generator=g) * 15)
                m.running_var.copy_(torch.rand(h, generator=g) * 400 + 20)
                m.weight.copy_(torch.randn(h, generator=g))
                m.weight[::11] = 0.0  # constant neurons: sign(β)
                m.bias.copy_(torch.randn(h, generator=g) * 2)
    return model.eval()


def random_pixels(n: int, k: int = 784, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, k), dtype=np.uint8)


@torch.no_grad()
def torch_predict(model: nn.Module, images) -> np.ndarray:
    x = inputs_from_pixels(pixels_from_inputs(images))
    return torch.argmax(model.eval()(x), dim=1).numpy()
