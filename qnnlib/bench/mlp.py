"""MNIST-MLP inference timing: PyTorch float32 against the bit-packed BNN on the binary kernels.

The paper (NIPS §4) ran the MNIST MLP over the 10k test images 7× faster with its XNOR kernel than with
its float baseline kernel, with the same accuracy. :func:`time_mlp_cpu` and :func:`time_mlp_gpu` time the
same kinds of inference with every baseline timed in the same run (:func:`qnnlib.bench.timing.interleaved_medians`)
and check that the packed network predicts exactly what the PyTorch BNN predicts. Speed does not depend
on the weights, so :func:`random_bnn` gives the paper's 784–3×4096–10 without training it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from qnnlib.bench.timing import drop_failing, interleaved_medians
from qnnlib.layers import QuantLinear
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import FLOAT
from qnnlib.runtime.bitplanes import inputs_from_pixels, pixels_from_inputs
from qnnlib.runtime.gemm_cuda import device_variants
from qnnlib.runtime.hardware import gpu_available
from qnnlib.runtime.packed_bnn import PackedBNN

__all__ = ["BASELINE", "TORCH_BNN", "PACKED_EQ6", "PACKED_F1", "random_bnn", "float_mlp", "time_mlp_cpu",
           "mlp_gpu_rows", "time_mlp_gpu"]




@torch.no_grad()
def random_bnn(hidden: int, depth: int = 3, seed: int = 0, in_features: int = 784) -> nn.Sequential:
    """An eval-mode binary ``mnist_mlp`` with random latent weights, biases and BN statistics (for timing).

    The BN statistics are drawn around the scale of each layer's pre-activations (mean ~ N(0, √K),
    variance ~ K) so that the thresholds fall inside the range of the dot products, as in a trained net.
    """
    torch.manual_seed(seed)
    model = mnist_mlp(hidden, depth, in_features=in_features)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.bias.copy_(torch.randn(m.out_features, generator=g) * 0.1)
            k = m.in_features
        if isinstance(m, nn.BatchNorm1d):
            h = m.num_features
            m.running_mean.copy_(torch.randn(h, generator=g) * k**0.5)
            m.running_var.copy_(k * (0.5 + torch.rand(h, generator=g)))
            m.weight.copy_(torch.randn(h, generator=g))
            m.bias.copy_(torch.randn(h, generator=g) * 0.5)
    return model.eval()


def float_mlp(hidden: int, depth: int = 3, seed: int = 0, in_features: int = 784) -> nn.Sequential:
    """The float32 baseline of the same architecture (``nn.Linear``, BN, Hardtanh), eval mode, random weights."""
    torch.manual_seed(seed)
    return mnist_mlp(hidden, depth, precision=FLOAT, in_features=in_features).eval()


BASELINE = "PyTorch float32 MLP (nn.Linear, BN, Hardtanh)"
TORCH_BNN = "PyTorch BNN (float32 emulation of sign(W), sign(a))"
PACKED_EQ6 = "PackedBNN, all layers binary (Eq. 6 bit-planes)"
PACKED_F1 = "PackedBNN, layer 1 exact float GEMM (paper's run-time demo)"


def time_mlp_cpu(bnn: nn.Module, packed: PackedBNN, float_model: nn.Module, images: Any,
                 repeats: int = 3) -> "pd.DataFrame":  # noqa: F821 - pandas is imported lazily
    """Time 10k-image inference on the CPU: float MLP and PyTorch BNN (float inputs) vs PackedBNN (uint8 pixels).

    Each method gets its natural input (float32 tensor / uint8 pixels) prepared outside the timing;
    whole batch at once (the paper's demo used batch 10000). Rows: method, seconds, images/s,
    ``speedup_vs_float`` (vs :data:`BASELINE`), ``speedup_vs_torch_bnn`` and, for the packed rows,
    ``identical_to_torch_bnn`` (predictions equal to the PyTorch BNN's, element for element).
    """
    import pandas as pd  # noqa: PLC0415 - lazily: `bench gpu` runs where pandas is not installed

    p = pixels_from_inputs(images)
    x = inputs_from_pixels(p)

    def run_torch(model: nn.Module) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with torch.inference_mode():
                return torch.argmax(model(x), dim=1).numpy()
        return run

    fns = {BASELINE: run_torch(float_model.eval()), TORCH_BNN: run_torch(bnn.eval()),
           PACKED_EQ6: lambda: packed.predict(p, "cpu"), PACKED_F1: lambda: packed.predict(p, "cpu", first_layer="float")}
    med, last = interleaved_medians(fns, repeats)
    rows = []
    for name, sec in med.items():
        rows.append({"device": "cpu", "method": name, "seconds": sec, "images/s": len(p) / sec,
                     "speedup_vs_float": med[BASELINE] / sec, "speedup_vs_torch_bnn": med[TORCH_BNN] / sec,
                     "identical_to_torch_bnn": bool(np.array_equal(last[name], last[TORCH_BNN]))
                     if name.startswith("PackedBNN") else None,
                     "images": len(p), "hidden": packed.widths[0], "torch_threads": torch.get_num_threads()})
    return pd.DataFrame(rows)


def time_mlp_gpu(bnn: nn.Module, packed: PackedBNN, float_model: nn.Module, images: Any,
                 repeats: int = 5) -> "pd.DataFrame | None":  # noqa: F821 - pandas is imported lazily
    """:func:`mlp_gpu_rows` as a DataFrame (``None`` without a GPU)."""
    rows = mlp_gpu_rows(bnn, packed, float_model, images, repeats)
    if rows is None:
        return None
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame(rows)


def mlp_gpu_rows(bnn: nn.Module, packed: PackedBNN, float_model: nn.Module, images: Any,
                 repeats: int = 5, backends: Sequence[str] | None = None) -> list[dict[str, Any]] | None:
    """GPU inference timing (``None`` without a GPU): PackedBNN on the CUDA kernels vs float MLPs; plain
    dicts, so that ``python -m qnnlib bench gpu`` needs no pandas. ``backends``: the CUDA kernels PackedBNN
    runs on (default: every one this GPU has, :func:`~qnnlib.runtime.gemm_cuda.device_variants`).

    Float baselines run the same float MLP with CuPy: every GEMM on cuBLAS fp32, and on the paper's
    16×16-tiled baseline kernel (:func:`qnnlib.runtime.gemm_cuda.gemm_float_cuda`). PackedBNN gets the pixels
    as a CuPy uint8 array (its output BN runs on the CPU, a (N, classes) array). Wall-clock medians with
    a device synchronisation after each call. ``identical_to_packed_cpu``: the GPU predictions equal the
    same PackedBNN's on the CPU kernels (integer arithmetic: they must); ``identical_to_torch_bnn``: equal
    to the PyTorch BNN's (float32 first layer, see :func:`qnnlib.runtime.export.compare_with_model`). A method
    that raises gets a row with its ``error`` and no timings.
    """
    ok, _why = gpu_available()
    if not ok:
        return None
    import cupy as cp  # noqa: PLC0415

    from qnnlib.runtime.gemm_cuda import gemm_float_cuda  # noqa: PLC0415

    p = pixels_from_inputs(images)
    p_gpu = cp.asarray(p)
    x_gpu = cp.asarray(inputs_from_pixels(p).numpy())
    layers = _float_layers(float_model, cp)

    def float_forward(matmul: Callable[[Any, Any], Any]) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            h = x_gpu
            for i, (w_t, b, scale, shift) in enumerate(layers):
                h = matmul(h, w_t) + b
                h = h * scale + shift  # eval-mode BN folded to an affine map
                if i < len(layers) - 1:
                    h = cp.clip(h, -1.0, 1.0)  # Hardtanh
            return cp.asnumpy(cp.argmax(h, axis=1))
        return run

    fns: dict[str, Callable[[], Any]] = {
        "float MLP, paper's baseline kernel (16x16 tiles)": float_forward(gemm_float_cuda),
        "float MLP, cuBLAS fp32 (CuPy)": float_forward(lambda a, b: cp.matmul(a, b)),
    }
    for backend in device_variants() if backends is None else backends:
        fns[f"PackedBNN {backend} (Eq. 6)"] = lambda backend=backend: packed.predict(p_gpu, backend)
    if "PackedBNN cuda-tc (Eq. 6)" in fns:
        fns["PackedBNN cuda-tc, layer 1 float"] = lambda: packed.predict(p_gpu, "cuda-tc", first_layer="float")
    sync = lambda: cp.cuda.Device().synchronize()  # noqa: E731
    fns, failed = drop_failing(fns, sync)  # a kernel that cannot run on this GPU: reported, the rest timed
    med, last = interleaved_medians(fns, repeats, sync=sync)
    with torch.inference_mode():
        ref = torch.argmax(bnn.eval()(inputs_from_pixels(p)), dim=1).numpy()
    cpu_pred = packed.predict(p, "cpu")  # the same integer arithmetic on the CPU kernels: must match exactly
    base = med["float MLP, paper's baseline kernel (16x16 tiles)"]
    cublas = med["float MLP, cuBLAS fp32 (CuPy)"]
    return [
        {"device": "gpu", "method": name, "seconds": sec, "images/s": len(p) / sec,
         "speedup_vs_baseline_kernel": base / sec, "speedup_vs_cublas": cublas / sec,
         "identical_to_torch_bnn": bool(np.array_equal(last[name], ref)) if name.startswith("PackedBNN") else None,
         "identical_to_packed_cpu": bool(np.array_equal(last[name], cpu_pred)) if name.startswith("PackedBNN")
         else None, "images": len(p), "hidden": packed.widths[0], "error": None}
        for name, sec in med.items()] + [
        {"device": "gpu", "method": name, "seconds": float("nan"), "images/s": float("nan"),
         "speedup_vs_baseline_kernel": float("nan"), "speedup_vs_cublas": float("nan"), "identical_to_torch_bnn": None,
         "identical_to_packed_cpu": None, "images": len(p), "hidden": packed.widths[0], "error": why}
        for name, why in failed.items()]


def _float_layers(model: nn.Module, xp: Any) -> list[tuple[Any, Any, Any, Any]]:
    """(W^T, bias, BN scale, BN shift) per Linear+BN pair of a float MLP, as ``xp`` float32 arrays."""
    mods = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))]
    out = []
    for lin, bn in zip(mods[0::2], mods[1::2]):
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() - bn.running_mean * scale
        out.append(tuple(xp.asarray(np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32))
                         for t in (lin.weight.T, lin.bias, scale, shift)))
    return out
