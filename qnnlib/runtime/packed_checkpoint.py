"""The bit-packed checkpoint of the binary runtime (one file format), and its size measured on disk.

"BNNs need 32× smaller memory size" (NIPS §3) is checked on files, not on parameter counts
(docs/decisions.md D19). Everything the runtime writes is one container, :class:`PackedCheckpoint`,
written by :func:`write_checkpoint` and read back by :func:`read_checkpoint`, of one of three kinds:

- ``"model"`` (:data:`MODEL_KIND`): the packed export of *any* ``qnnlib`` model (:func:`packed_export`,
  :func:`save_packed`; read back into a model by :func:`load_packed`): every binary layer's
  (``LatentWeightLayer`` with ``weight_bits == 1``) latent weight as ``sign(W)`` bit-packed, every other
  ``state_dict`` entry (biases, BN parameters and running statistics, float layers) as float32 under its
  own key.
- ``"packed-bnn"`` (:data:`PACKED_BNN_KIND`): a folded :class:`qnnlib.runtime.packed_bnn.PackedBNN`
  (:meth:`~qnnlib.runtime.packed_bnn.PackedBNN.save`, :meth:`~qnnlib.runtime.packed_bnn.PackedBNN.load`):
  packed weights, integer thresholds and flips, row sums and the output layer's bias and BN.
- ``"packed-convnet"`` (:data:`PACKED_CONVNET_KIND`): a :class:`qnnlib.runtime.packed_convnet.PackedConvNet`
  (:meth:`~qnnlib.runtime.packed_convnet.PackedConvNet.save`, :meth:`~qnnlib.runtime.packed_convnet.PackedConvNet.load`):
  ``sign(W)`` of every binary conv / fc layer packed in the model's own weight shape, the float first layer, its
  float32 and bit-plane (Eq. 6) thresholds, integer thresholds and flips and the output layer's bias and BN.

**The file** is an *uncompressed* ``.npz`` (``np.savez``: the size on disk is the arrays plus small zip
and ``.npy`` headers; compression would hide what is measured) that loads with
``np.load(path, allow_pickle=False)``. Its entries:

- ``meta``: a 0-d bytes array holding ASCII JSON::

      {"format": "qnnlib.packed-checkpoint", "version": 1, "kind": "model" | "packed-bnn" | "packed-convnet",
       "word_bits": 64, "binary": {"<layer>.weight": {"shape": [rows, ...], "k": K}, ...}, "attrs": {...}}

  ``binary`` lists every bit-packed weight with the latent weight's shape and its fan-in
  ``K = prod(shape[1:])`` (all that is needed to unpack it); ``attrs`` holds the kind's own scalars.
- ``<layer>.weight.packed``: ``sign(W)`` of a binary layer, ``W`` seen as (rows, K), packed along K into
  (rows, ceil(K / word_bits)) words by :func:`qnnlib.runtime.bitpack.pack` (bit 1 = +1, LSB first, zero
  padding): the same key convention for both kinds.
- every other entry: a named array (see the kinds above).

:func:`size_report` writes a model's float ``state_dict`` (``torch.save``) and its packed checkpoint (the
generic export, or a given ``PackedBNN``) next to each other and reads both sizes back from disk.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from qnnlib.files import UnreadableFileError, atomic_write, unreadable
from qnnlib.layers import LatentWeightLayer
from qnnlib.runtime.bitpack import WORD_BITS, pack, packed_width, unpack, word_dtype

if TYPE_CHECKING:  # the PackedBNN is written through its own to_checkpoint(); no runtime import (no cycle)
    from qnnlib.runtime.packed_bnn import PackedBNN

T = TypeVar("T")

__all__ = [
    "load_network",
    "FORMAT",
    "VERSION",
    "MODEL_KIND",
    "PACKED_BNN_KIND",
    "PACKED_CONVNET_KIND",
    "KINDS",
    "META_KEY",
    "PACKED_SUFFIX",
    "FLOAT_FILE",
    "PACKED_FILE",
    "SIZE_KEYS",
    "PackedCheckpoint",
    "write_checkpoint",
    "read_checkpoint",
    "packed_export",
    "save_packed",
    "packed_state_dict",
    "load_packed",
    "file_size",
    "state_dict_bytes",
    "binary_weight_float_bytes",
    "size_report",
]

FORMAT = "qnnlib.packed-checkpoint"
"""The ``format`` name in every packed checkpoint's ``meta``."""
VERSION = 1
"""The ``version`` of the layout described in the module docstring."""
MODEL_KIND = "model"
"""Kind of the packed export of any model (:func:`packed_export`)."""
PACKED_BNN_KIND = "packed-bnn"
"""Kind of a folded :class:`qnnlib.runtime.packed_bnn.PackedBNN`."""
PACKED_CONVNET_KIND = "packed-convnet"
"""Kind of a :class:`qnnlib.runtime.packed_convnet.PackedConvNet` (the binary CIFAR-10/SVHN ConvNets)."""
KINDS = (MODEL_KIND, PACKED_BNN_KIND, PACKED_CONVNET_KIND)
META_KEY = "meta"
"""Entry holding the JSON metadata."""
PACKED_SUFFIX = ".packed"
"""``<layer>.weight`` + this suffix is the entry of a bit-packed weight."""
FLOAT_FILE = "float_state_dict.pt"
"""Name of the ``torch.save(model.state_dict())`` file written by :func:`size_report`."""
PACKED_FILE = "packed.npz"
"""Name of the packed checkpoint written by :func:`size_report`."""
SIZE_KEYS = ("float_state_dict_bytes", "packed_bytes", "disk_ratio", "binary_weight_float_bytes",
             "binary_weight_packed_bytes", "binary_weight_ratio")
"""The keys of :func:`size_report`, in order."""

_REMEDY = {MODEL_KIND: "Delete it and export it again: qnnlib.runtime.packed_checkpoint.save_packed(model, path).",
           PACKED_BNN_KIND: "Delete it and export it again: qnnlib.runtime.export.export_bnn(model).save(path).",
           PACKED_CONVNET_KIND: "Delete it and export it again: "
                                "qnnlib.runtime.export_convnet.export_convnet(model).save(path)."}

# What a truncated, emptied or bit-flipped .npz raises inside np.load / NpzFile.__getitem__
_CORRUPT = (EOFError, zipfile.BadZipFile, zlib.error, ValueError)

_HOW_TO_READ = {MODEL_KIND: "read it with qnnlib.runtime.packed_checkpoint.load_packed or packed_state_dict",
                PACKED_BNN_KIND: "read it with qnnlib.runtime.packed_bnn.PackedBNN.load",
                PACKED_CONVNET_KIND: "read it with qnnlib.runtime.packed_convnet.PackedConvNet.load"}


# ---------------------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------------------


@dataclass
class PackedCheckpoint:
    """The contents of one packed checkpoint file (layout in the module docstring).

    Attributes:
        kind: :data:`MODEL_KIND` or :data:`PACKED_BNN_KIND`.
        weights: ``"<layer>.weight"`` -> ``sign(W)`` packed (rows, ceil(K / word_bits)) words.
        shapes: ``"<layer>.weight"`` -> the latent weight's shape (rows, ...); K = prod(shape[1:]).
        arrays: every other entry by name (not ``meta``, not ending in ``.packed``).
        attrs: the kind's own JSON scalars (``meta["attrs"]``).
        word_bits: bits per packed word (32 or 64; the runtime writes :data:`~qnnlib.runtime.bitpack.WORD_BITS`).
    """

    kind: str
    weights: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    word_bits: int = WORD_BITS

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        dtype = word_dtype(self.word_bits)
        if list(self.weights) != list(self.shapes):
            raise ValueError(f"weights and shapes must name the same layers in the same order, got "
                             f"{list(self.weights)} and {list(self.shapes)}")
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in self.shapes.items()}
        for name, words in self.weights.items():
            shape = self.shapes[name]
            if len(shape) < 2 or min(shape) < 1:
                raise ValueError(f"{name}: a packed weight needs a shape (rows, fan-in ...) >= 1, got {shape}")
            expected = (shape[0], packed_width(self.fan_in(name), self.word_bits))
            if words.dtype != dtype or words.shape != expected:
                raise ValueError(f"{name}: a weight of shape {shape} packs into {expected} {dtype} words "
                                 f"(bitpack.pack(W.reshape(rows, -1), {self.word_bits})), "
                                 f"got {words.shape} {words.dtype}")
        reserved = {META_KEY, *(self.packed_key(n) for n in self.weights)}
        for name, a in self.arrays.items():
            if name in reserved or name.endswith(PACKED_SUFFIX):
                raise ValueError(f"array name {name!r} is reserved (meta, '<layer>.weight.packed'); rename it")
            if a.dtype.hasobject:
                raise ValueError(f"array {name!r} has dtype {a.dtype}: object arrays need pickle; store numbers")

    @staticmethod
    def packed_key(name: str) -> str:
        """The file entry of packed weight ``name``: ``"<layer>.weight"`` -> ``"<layer>.weight.packed"``."""
        return name + PACKED_SUFFIX

    def fan_in(self, name: str) -> int:
        """K of packed weight ``name``: the product of its shape past the rows."""
        return math.prod(self.shapes[name][1:])

    def unpacked(self, name: str) -> np.ndarray:
        """Packed weight ``name`` as ±1 float32 in its latent shape (``sign(W)``, sign(0) = +1)."""
        return unpack(self.weights[name], self.fan_in(name)).reshape(self.shapes[name])

    @property
    def packed_nbytes(self) -> int:
        """Bytes of all packed weight words (padding included)."""
        return int(sum(w.nbytes for w in self.weights.values()))

    def meta(self) -> dict[str, Any]:
        """The ``meta`` JSON object of this checkpoint."""
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "word_bits": self.word_bits,
                "binary": {n: {"shape": list(s), "k": self.fan_in(n)} for n, s in self.shapes.items()},
                "attrs": self.attrs}

    def entries(self) -> dict[str, np.ndarray]:
        """The ``.npz`` entries: ``meta`` (0-d ASCII JSON bytes), the packed weights, the other arrays."""
        meta = json.dumps(self.meta(), separators=(",", ":"), allow_nan=False)
        out = {META_KEY: np.array(meta.encode("ascii"))}
        out.update({self.packed_key(n): np.ascontiguousarray(w) for n, w in self.weights.items()})
        out.update(self.arrays)
        return out


def write_checkpoint(checkpoint: PackedCheckpoint, path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` to ``path`` as an **uncompressed** ``.npz`` (``np.savez``) and return the path.

    The one writer of the runtime's packed files; loads with ``np.load(path, allow_pickle=False)``. The file
    is written atomically (:func:`qnnlib.files.atomic_write`: a temporary sibling renamed over ``path``), so a
    process killed mid-write leaves the old file or none, never half of one.
    """
    path = Path(path)
    entries = checkpoint.entries()
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **entries)
    return path


def load_network(path: str | os.PathLike, kind: str, build: Callable[[PackedCheckpoint], T], remedy: str) -> T:
    """Read a packed checkpoint of ``kind`` and ``build`` the network from it (``PackedBNN.load``,
    ``PackedConvNet.load``).

    A file of another kind or version raises the plain ``ValueError`` of :func:`read_checkpoint`; one whose
    contents ``build`` rejects (an entry missing or malformed) raises :class:`qnnlib.files.UnreadableFileError`
    naming the file, saying to delete it and to export again with ``remedy``.
    """
    checkpoint = read_checkpoint(path, kind)
    try:
        return build(checkpoint)
    except (ValueError, IndexError) as exc:
        raise UnreadableFileError(f"{path} is a damaged {kind} checkpoint: {exc}. Delete it and export it again: "
                                  f"{remedy}.", Path(path)) from exc


def read_checkpoint(path: str | os.PathLike, kind: str) -> PackedCheckpoint:
    """Read a file written by :func:`write_checkpoint`, which must be of ``kind``; the one reader.

    Raises :class:`qnnlib.files.UnreadableFileError` (a ``ValueError``) naming the file and saying to delete
    it and export again when it is truncated, empty or corrupt (not a zip, a bad CRC, a cut array, no
    ``meta``, pickled data, damaged entries); a plain ``ValueError`` naming the file and what was expected
    when it is a readable packed checkpoint of another format version or kind. A missing file raises
    ``FileNotFoundError``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    expected = f"a {FORMAT} version {VERSION} file of kind {kind!r}"
    remedy = _REMEDY[kind]
    what = "packed checkpoint"
    try:
        z = np.load(path, allow_pickle=False)
    except _CORRUPT as exc:  # truncated/empty (EOFError, BadZipFile), a pickle or not an .npy/.npz (ValueError)
        raise unreadable(path, exc, remedy, what) from exc
    if isinstance(z, np.ndarray):
        raise UnreadableFileError(f"{path} is a single .npy array, not a packed checkpoint; expected {expected}. "
                                  f"{remedy}", path)
    with z:
        if META_KEY not in z.files:
            raise UnreadableFileError(f"{path} is not a packed checkpoint (no {META_KEY!r} entry); expected "
                                      f"{expected}. {remedy}", path)
        try:
            raw = z[META_KEY]
        except _CORRUPT as exc:  # a pickled object array, a cut or bit-flipped entry
            raise unreadable(path, exc, remedy, what) from exc
        meta = _parse_meta(path, raw, expected, remedy)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(
                f"{path} has format {meta.get('format')!r} version {meta.get('version')!r}, expected {expected}; "
                "write it again with this qnnlib (e.g. export_bnn(model).save(path) or save_packed(model, path))")
        if meta.get("kind") != kind:
            found = meta.get("kind")
            raise ValueError(f"{path} holds a packed checkpoint of kind {found!r}, expected kind {kind!r}"
                             + (f"; {_HOW_TO_READ[found]}" if found in _HOW_TO_READ else ""))
        try:
            binary = {str(n): tuple(v["shape"]) for n, v in meta["binary"].items()}
            missing = [PackedCheckpoint.packed_key(n) for n in binary if PackedCheckpoint.packed_key(n) not in z.files]
            if missing:
                raise ValueError(f"meta lists packed weights whose entries are missing: {missing}")
            try:
                weights = {n: z[PackedCheckpoint.packed_key(n)] for n in binary}
                packed = {PackedCheckpoint.packed_key(n) for n in binary}
                arrays = {n: z[n] for n in z.files if n != META_KEY and n not in packed}
            except _CORRUPT as exc:  # a cut or bit-flipped array (BadZipFile: bad CRC), a broken .npy header
                raise unreadable(path, exc, remedy, what) from exc
            return PackedCheckpoint(kind=kind, weights=weights, shapes=binary, arrays=arrays,
                                    attrs=dict(meta.get("attrs", {})), word_bits=int(meta["word_bits"]))
        except UnreadableFileError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise UnreadableFileError(f"{path} is a damaged packed checkpoint: {exc}. {remedy}", path) from exc


def _parse_meta(path: Path, raw: np.ndarray, expected: str, remedy: str) -> dict[str, Any]:
    """The JSON object stored in a ``meta`` entry (bytes or str, 0-d), or an ``UnreadableFileError`` naming the file."""
    value = raw.item() if raw.ndim == 0 else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        meta = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise UnreadableFileError(f"{path} has a {META_KEY!r} entry that is not a JSON object; expected {expected}. "
                                  f"{remedy}", path)
    return meta


# ---------------------------------------------------------------------------------------------------
# Kind "model": any qnnlib model
# ---------------------------------------------------------------------------------------------------


def _binary_weight_keys(model: nn.Module) -> set[str]:
    """``state_dict`` keys of the latent weights of the binary layers (``weight_bits == 1``)."""
    return {f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, LatentWeightLayer) and m.weight_bits == 1}


def packed_export(model: nn.Module, word_bits: int = WORD_BITS) -> PackedCheckpoint:
    """Inference tensors of ``model`` as a checkpoint of kind ``"model"``: binary weights bit-packed.

    Every ``weight_bits == 1`` layer's latent weight ``W`` (rows = output units / channels) becomes
    ``sign(W)`` packed with :func:`qnnlib.runtime.bitpack.pack` along its fan-in (``W`` as (rows, K),
    ``word_bits`` per word; entry ``<layer>.weight.packed``, its shape in ``meta``). All other
    ``state_dict`` entries (biases, BN parameters and running statistics, float layers) are kept as float32.
    """
    binary = _binary_weight_keys(model)
    weights: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, t in model.state_dict().items():
        t = t.detach().cpu()
        if key in binary:
            weights[key] = pack(t.reshape(t.shape[0], -1), word_bits)
            shapes[key] = tuple(t.shape)
        else:
            arrays[key] = t.numpy().astype(np.float32)
    return PackedCheckpoint(kind=MODEL_KIND, weights=weights, shapes=shapes, arrays=arrays, word_bits=word_bits)


def save_packed(model: nn.Module, path: str | os.PathLike, word_bits: int = WORD_BITS) -> Path:
    """Write :func:`packed_export` of ``model`` to ``path`` (uncompressed ``.npz``) and return the path."""
    return write_checkpoint(packed_export(model, word_bits), path)


def packed_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` stored in a ``"model"`` checkpoint, as float32 CPU tensors.

    Binary layers get their ±1 weights ``sign(W)`` as latent weights (their forward pass binarizes them
    to the same values); every other entry is the stored float32 array.
    """
    ckpt = read_checkpoint(path, MODEL_KIND)
    out = {name: torch.from_numpy(ckpt.unpacked(name)) for name in ckpt.weights}
    out.update({name: torch.from_numpy(np.array(a, dtype=np.float32)) for name, a in ckpt.arrays.items()})
    return out


def load_packed(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a ``"model"`` checkpoint (:func:`save_packed`) into ``model`` (same architecture) and return it.

    Each tensor is cast to the dtype of the model's own entry (e.g. BN's int64 ``num_batches_tracked``);
    binary layers get ``sign(W)`` as latent weights, so the model computes what the saved one computed.
    ``strict`` as in ``nn.Module.load_state_dict``.
    """
    own = model.state_dict()
    state = packed_state_dict(path)
    cast = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    model.load_state_dict(cast, strict=strict)
    return model


# ---------------------------------------------------------------------------------------------------
# Sizes on disk
# ---------------------------------------------------------------------------------------------------


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


def size_report(model: nn.Module, directory: str | os.PathLike, packed: PackedBNN | None = None, *,
                word_bits: int = WORD_BITS) -> dict[str, float]:
    """Bytes on disk: ``torch.save(model.state_dict())`` vs the packed checkpoint of the same network.

    Writes :data:`FLOAT_FILE` and :data:`PACKED_FILE` in ``directory`` (created if needed): the packed file
    is ``packed.save`` of the given :class:`~qnnlib.runtime.packed_bnn.PackedBNN` (kind ``"packed-bnn"``,
    its 64-bit words), or, with ``packed=None``, :func:`save_packed` of ``model`` (kind ``"model"``,
    ``word_bits`` per word). Both sizes are read back from disk (``stat``).

    Returns (:data:`SIZE_KEYS`):
        ``float_state_dict_bytes``, ``packed_bytes``: the two files' sizes; ``disk_ratio``: their ratio
        (whole files: thresholds/BN/biases and headers included); ``binary_weight_float_bytes``: 4 bytes per
        latent weight of the binary layers (float32 in the state_dict); ``binary_weight_packed_bytes``: the
        packed words of those weights (padding included); ``binary_weight_ratio``: their ratio
        (≈ 32·K/(64·ceil(K/64)), e.g. 30.2x for K = 784; NaN without binary layers).
    """
    if packed is None:
        checkpoint = packed_export(model, word_bits)
    elif word_bits != WORD_BITS:
        raise ValueError(f"a PackedBNN is stored in its own {WORD_BITS}-bit words; word_bits={word_bits} applies "
                         "only to the generic export (packed=None)")
    else:
        checkpoint = packed.to_checkpoint()
    d = Path(directory)
    fb = state_dict_bytes(model, d / FLOAT_FILE)
    pb = file_size(write_checkpoint(checkpoint, d / PACKED_FILE))
    bw_float = binary_weight_float_bytes(model)
    bw_packed = checkpoint.packed_nbytes
    return {"float_state_dict_bytes": fb, "packed_bytes": pb, "disk_ratio": fb / pb,
            "binary_weight_float_bytes": bw_float, "binary_weight_packed_bytes": bw_packed,
            "binary_weight_ratio": bw_float / bw_packed if bw_packed else math.nan}
