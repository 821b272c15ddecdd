"""Array backends of the runtime: NumPy on the CPU, CuPy on a GPU, torch tensors at the edges.

The binary kernels accept NumPy arrays, CuPy arrays and torch tensors and return results where their
inputs live. These helpers are the one place that knows how: CuPy is imported lazily (it is the
optional ``[gpu]`` extra), a CUDA tensor is shared with CuPy zero-copy through DLPack, a CPU tensor is
viewed as NumPy.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["cupy", "is_cupy", "from_torch", "to_host", "to_xp"]


def is_cupy(x: Any) -> bool:
    """Whether ``x`` is a CuPy array (checked by module name, without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


def cupy() -> Any:
    """The ``cupy`` module, or an ``ImportError`` saying that the CUDA backends need CuPy and a GPU."""
    try:
        import cupy as cp  # noqa: PLC0415 (lazy on purpose: CuPy is an optional GPU extra)
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "this needs CuPy and a CUDA GPU (a CUDA array or a cuda backend was asked for), but CuPy is not "
            "installed; install the [gpu] extra (pip install 'qnnlib[gpu]') or use NumPy arrays and a CPU backend"
        ) from exc
    return cp


def from_torch(x: Any) -> Any:
    """torch.Tensor -> NumPy (CPU tensors) or CuPy (CUDA tensors, zero-copy); anything else unchanged."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(x, torch.Tensor):
        return x
    x = x.detach()
    if x.is_cuda:
        return cupy().from_dlpack(x)
    if x.dtype == torch.bool:
        return x.numpy()
    return x.numpy() if x.dtype != torch.bfloat16 else x.float().numpy()


def to_host(a: Any) -> Any:
    """A CuPy array copied to NumPy; anything else unchanged."""
    return cupy().asnumpy(a) if is_cupy(a) else a


def to_xp(a: Any, xp: Any) -> Any:
    """``a`` as a C-contiguous array of the array module ``xp`` (NumPy or CuPy), copying across devices."""
    if xp is np:
        return np.ascontiguousarray(to_host(a))
    return xp.ascontiguousarray(xp.asarray(a))
