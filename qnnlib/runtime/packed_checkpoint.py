"""A bit-packed checkpoint of any ``qnnlib`` model, and its size measured on disk (DESIGN.md §8).

"BNNs need 32× smaller memory size" (NIPS §3) is checked on files, not on parameter counts:
:func:`packed_export` replaces every binary layer's (``LatentWeightLayer`` with ``weight_bits == 1``)
latent float weight by ``sign(W)`` packed with :func:`qnnlib.bitpack.pack`, :func:`save_packed` writes
that as an **uncompressed** ``.npz`` (no compression hides the size), and :func:`disk_sizes` compares
its bytes on disk with ``torch.save(model.state_dict())``.

The measuring helpers (:func:`state_dict_bytes`, :func:`file_size`, :func:`binary_weight_float_bytes`)
are shared with :func:`qnnlib.inference.size_report`, which measures a :class:`qnnlib.inference.PackedBNN`
file (its own format: packed weights plus integer thresholds) the same way.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qnnlib.layers import LatentWeightLayer
from qnnlib.runtime.bitpack import pack

__all__ = [
    "FLOAT_FILE",
    "packed_export",
    "save_packed",
    "disk_sizes",
    "file_size",
    "state_dict_bytes",
    "binary_weight_float_bytes",
]

FLOAT_FILE = "float_state_dict.pt"
"""Name of the ``torch.save(model.state_dict())`` file written by the size measurements."""


# ------------------------------------------------------------------------------ measuring
def file_size(path: str | os.PathLike) -> int:
    """Bytes of ``path`` on disk (as written: ``st_size``)."""
    return Path(path).stat().st_size


def state_dict_bytes(model: nn.Module, path: str | os.PathLike) -> int:
    """Write ``torch.save(model.state_dict())`` to ``path`` (parent folders created) and return its size
    on disk in bytes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return file_size(path)


def binary_weight_float_bytes(model: nn.Module) -> int:
    """4 bytes per latent weight of the binary layers, as stored (float32) in the ``state_dict``."""
    return sum(4 * m.weight.numel() for m in model.modules()
               if isinstance(m, LatentWeightLayer) and m.weight_bits == 1)


# ------------------------------------------------------------------------- packed checkpoint
def packed_export(model: nn.Module, word_bits: int = 64) -> dict[str, np.ndarray]:
    """Inference tensors of ``model``: binary weights bit-packed, everything else as float32 arrays.

    Every ``weight_bits == 1`` layer's latent weight is replaced by ``sign(W)`` packed with
    :func:`qnnlib.bitpack.pack` along its fan-in (rows = output units / channels, ``word_bits`` per
    word; key ``<layer>.weight.packed``, plus ``<layer>.weight.shape``).  All other ``state_dict``
    entries (biases, BN parameters and running statistics, float layers) are kept as float32.
    """
    binary = {n for n, m in model.named_modules() if isinstance(m, LatentWeightLayer) and m.weight_bits == 1}
    out: dict[str, np.ndarray] = {}
    for key, t in model.state_dict().items():
        layer, _, leaf = key.rpartition(".")
        if leaf == "weight" and layer in binary:
            out[f"{key}.packed"] = pack(t.detach().cpu().reshape(t.shape[0], -1), word_bits)
            out[f"{key}.shape"] = np.asarray(t.shape, dtype=np.int64)
        else:
            out[key] = t.detach().cpu().numpy().astype(np.float32)
    return out


def save_packed(model: nn.Module, path: str | os.PathLike, word_bits: int = 64) -> Path:
    """Write :func:`packed_export` to ``path`` as an uncompressed ``.npz`` (no compression hides the size)."""
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **packed_export(model, word_bits))
    return path


def disk_sizes(model: nn.Module, directory: str | os.PathLike, word_bits: int = 64) -> dict[str, float]:
    """Bytes written on disk: the float ``state_dict`` (``torch.save``) vs the packed export.

    Writes ``float_state_dict.pt`` and ``packed.npz`` in ``directory``. Returns
    ``float_state_dict_bytes``, ``packed_bytes`` (file sizes as written), their ratio ``disk_ratio``,
    and the binary weights alone: ``binary_weight_float_bytes`` (4 bytes each) vs
    ``binary_weight_packed_bytes`` (the packed arrays' bytes, padding included) and their ratio.
    """
    d = Path(directory)
    fb = state_dict_bytes(model, d / FLOAT_FILE)
    export = packed_export(model, word_bits)
    pb = file_size(save_packed(model, d / "packed.npz", word_bits))
    bw_packed = sum(v.nbytes for k, v in export.items() if k.endswith(".packed"))
    bw_float = sum(4 * int(np.prod(v)) for k, v in export.items() if k.endswith(".shape"))
    return {"float_state_dict_bytes": fb, "packed_bytes": pb, "disk_ratio": fb / pb,
            "binary_weight_float_bytes": bw_float, "binary_weight_packed_bytes": bw_packed,
            "binary_weight_ratio": bw_float / bw_packed if bw_packed else math.nan}
