"""The packed BNN: paper Alg. 4 ("Running a BNN") on the binary kernels, and its checkpoint file.

A :class:`PackedBNN` holds what inference needs and nothing else: bit-packed ``sign(W)`` per layer,
one integer threshold and one sign flip per hidden neuron (BN + sign folded, :mod:`qnnlib.runtime.folding`),
the first layer's row sums for Eq. 6 (:mod:`qnnlib.runtime.bitplanes`) and the output layer's bias and BN.
:meth:`PackedBNN.predict` runs every layer on the binary GEMM of :mod:`qnnlib.runtime.binary_gemm` (Numba
XOR-popcount on the CPU, CuPy kernels on a GPU); on the CPU each binary layer's ``sign(BN(.))`` is fused
into the GEMM (:func:`~qnnlib.runtime.binary_gemm.binary_matmul_sign`; Eq. 6's first layer too where the CPU
has AVX-512 VPOPCNTDQ, :func:`qnnlib.runtime.bitplanes.bitplane_sign`), so only packed bits reach memory.
:func:`qnnlib.runtime.export.export_bnn` builds one from a trained model and documents why it is bit-exact.

Alg. 4, layer by layer (L layers, W_k^b = sign(W_k) packed 64 values per ``uint64`` word)::

    layer 1      a_1 = Σ_{n=1..8} 2^{n-1} XnorDotProduct(a_0^n, W_1^b);  a_1^b = Sign(BatchNorm(a_1))
    layers 2..L-1  a_k = XnorDotProduct(a_{k-1}^b, W_k^b);               a_k^b = Sign(BatchNorm(a_k))
    layer L      a_L = BatchNorm(XnorDotProduct(a_{L-1}^b, W_L^b))        -> argmax

The paper's run-time demo ran layer 1 on the float baseline kernel (NIPS 2016 §4);
``predict(..., first_layer="float")`` does the same: ``D = p @ W_b^T`` as a float32 GEMM of 8-bit
integers and ±1, exact (all partial sums are integers below 2^24) and therefore identical to Eq. 6.

Checkpoint file: :meth:`PackedBNN.save` writes the runtime's one packed-checkpoint container
(:mod:`qnnlib.runtime.packed_checkpoint`, kind ``"packed-bnn"``; an uncompressed ``.npz`` that loads
without pickle) with layers numbered 1..L as ``qnnlib.models.mlp.mnist_mlp`` names them:

- ``fc{k}.weight.packed``: ``sign(W_k)`` packed, (H_k, ceil(K_k/64)) uint64 (K_k and the shape in ``meta``);
- ``fc{k}.threshold`` (int32) and ``fc{k}.flip`` (int8), k = 1..L-1; ``fc1.row_sum`` (int32, S of Eq. 6);
- the output layer under the model's own ``state_dict`` keys, float32: ``fc{L}.bias``,
  ``bn{L}.running_mean``, ``bn{L}.running_var``, ``bn{L}.weight`` (γ), ``bn{L}.bias`` (β), and for a Lasagne
  output BN (the Theano code's) ``bn{L}.running_invstd`` (its ``running_var`` is then ``1/invstd² − ε``);
- ``meta["attrs"]``: ``out_eps`` (the output BN's ε) and ``fragile``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from qnnlib.runtime.arrays import cupy, is_cupy, to_host, to_xp
from qnnlib.runtime.binary_gemm import BACKENDS, binary_matmul, binary_matmul_sign
from qnnlib.runtime.bitpack import WORD_BITS, pack, packed_width, unpack
from qnnlib.runtime.bitplanes import bitplane_dot, bitplane_sign, pixels_from_inputs
from qnnlib.runtime.folding import batch_norm, threshold_activations
from qnnlib.runtime.gemm_cuda import cuda_device_id, prepare_cuda_operand
from qnnlib.runtime.packed_checkpoint import PACKED_BNN_KIND, PackedCheckpoint, load_network, write_checkpoint

__all__ = ["FirstLayer", "PackedBNN"]

FirstLayer = Literal["bitplanes", "float"]


# ---------------------------------------------------------------------------------------------------
# The packed network
# ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class PackedBNN:
    """A BNN ready for the binary kernels: packed ``sign(W)``, integer thresholds, output BN.

    Attributes (L layers; K_k = fan-in of layer k; H_k = its width):
        weights: L arrays (H_k, ceil(K_k/64)) uint64, ``sign(W_k)`` packed by :func:`qnnlib.runtime.bitpack.pack`.
        in_features: (K_1, ..., K_L).
        thresholds, flips: L−1 arrays (H_k,) int32 / int8: ``a = +1 iff flips·d >= thresholds``
            (layer 1 on D = W_b·p of Eq. 6; layers ≥ 2 on the ±1 dot product d).
        row_sum: (H_1,) int32, S = Σ_j W_1^b[:, j] (Eq. 6 recombination).
        out_bias, out_mean, out_var, out_weight, out_beta: (H_L,) float32, the output layer's bias and BN.
        out_eps: the output BN's ε.
        out_invstd: (H_L,) float32 or None: the running 1/σ of a Lasagne output BN (the Theano code's BN,
            :class:`qnnlib.norm.LasagneBatchNorm`); when set the output BN is ``(s − mean)·(γ·invstd) + β``.
        fragile: per hidden layer ≥ 2, neurons within PyTorch's float accumulation error of their
            threshold (diagnostic, see :mod:`qnnlib.runtime.export`).
    """

    weights: list[np.ndarray]
    in_features: tuple[int, ...]
    thresholds: list[np.ndarray]
    flips: list[np.ndarray]
    row_sum: np.ndarray
    out_bias: np.ndarray
    out_mean: np.ndarray
    out_var: np.ndarray
    out_weight: np.ndarray
    out_beta: np.ndarray
    out_eps: float
    fragile: tuple[int, ...] = ()
    out_invstd: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.weights)
        if n < 2 or len(self.in_features) != n or len(self.thresholds) != n - 1 or len(self.flips) != n - 1:
            raise ValueError("a PackedBNN needs L >= 2 weight arrays, L fan-ins and L-1 thresholds and flips")
        for k, (w, kin) in enumerate(zip(self.weights, self.in_features), 1):
            if w.dtype != np.uint64 or w.ndim != 2 or w.shape[1] != packed_width(kin, WORD_BITS):
                raise ValueError(f"layer {k}: weights must be (H, ceil({kin}/64)) uint64, got {w.shape} {w.dtype}")
            if k > 1 and kin != self.weights[k - 2].shape[0]:
                raise ValueError(f"layer {k} has fan-in {kin} but layer {k - 1} has {self.weights[k - 2].shape[0]} units")
        for k, (t, f) in enumerate(zip(self.thresholds, self.flips), 1):
            h = self.weights[k - 1].shape[0]
            if t.shape != (h,) or f.shape != (h,):
                raise ValueError(f"layer {k}: thresholds and flips must have shape ({h},)")
        if self.row_sum.shape != (self.widths[0],):
            raise ValueError(f"row_sum must have shape ({self.widths[0]},)")

    # ----------------------------------------------------------------------------------- shape
    @property
    def num_layers(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> tuple[int, ...]:
        """Units per layer (H_1, ..., H_L); H_L is the number of classes."""
        return tuple(int(w.shape[0]) for w in self.weights)

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays (the on-disk file adds ~100-byte npy headers per array)."""
        arrays = [*self.weights, *self.thresholds, *self.flips, self.row_sum, self.out_bias, self.out_mean,
                  self.out_var, self.out_weight, self.out_beta] + ([] if self.out_invstd is None else [self.out_invstd])
        return int(sum(a.nbytes for a in arrays))

    def __repr__(self) -> str:
        arch = "-".join(str(v) for v in (self.in_features[0], *self.widths))
        return f"PackedBNN({arch}, {self.nbytes:,} bytes, fragile={self.fragile})"

    # ------------------------------------------------------------------------------- save/load
    def to_checkpoint(self) -> PackedCheckpoint:
        """This network as a packed checkpoint of kind ``"packed-bnn"`` (entries in the module docstring)."""
        n = self.num_layers
        weights = {f"fc{k}.weight": w for k, w in enumerate(self.weights, 1)}
        shapes = {f"fc{k}.weight": (h, kin) for k, (h, kin) in enumerate(zip(self.widths, self.in_features), 1)}
        arrays: dict[str, np.ndarray] = {}
        for k, (t, f) in enumerate(zip(self.thresholds, self.flips), 1):
            arrays[f"fc{k}.threshold"], arrays[f"fc{k}.flip"] = t, f
        arrays["fc1.row_sum"] = self.row_sum
        arrays.update({f"fc{n}.bias": self.out_bias, f"bn{n}.running_mean": self.out_mean,
                       f"bn{n}.running_var": self.out_var, f"bn{n}.weight": self.out_weight,
                       f"bn{n}.bias": self.out_beta})
        if self.out_invstd is not None:
            arrays[f"bn{n}.running_invstd"] = self.out_invstd
        return PackedCheckpoint(kind=PACKED_BNN_KIND, weights=weights, shapes=shapes, arrays=arrays,
                                attrs={"out_eps": self.out_eps, "fragile": list(self.fragile)}, word_bits=WORD_BITS)

    @classmethod
    def from_checkpoint(cls, checkpoint: PackedCheckpoint) -> PackedBNN:
        """The network stored in a ``"packed-bnn"`` checkpoint (``ValueError`` if an entry is missing)."""
        if checkpoint.kind != PACKED_BNN_KIND or checkpoint.word_bits != WORD_BITS:
            raise ValueError(f"a PackedBNN needs a {PACKED_BNN_KIND!r} checkpoint with {WORD_BITS}-bit words, got "
                             f"kind {checkpoint.kind!r} with {checkpoint.word_bits}-bit words")
        n = len(checkpoint.weights)
        names = [f"fc{k}.weight" for k in range(1, n + 1)]
        if list(checkpoint.weights) != names:
            raise ValueError(f"a packed-bnn checkpoint stores its weights as {names}, got {list(checkpoint.weights)}")

        def get(name: str) -> np.ndarray:
            if name not in checkpoint.arrays:
                raise ValueError(f"the packed-bnn checkpoint has no {name!r} entry")
            return checkpoint.arrays[name]

        try:
            out_eps, fragile = float(checkpoint.attrs["out_eps"]), tuple(checkpoint.attrs.get("fragile", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the packed-bnn checkpoint's meta attrs lack a numeric 'out_eps': {exc}") from exc
        return cls(weights=[checkpoint.weights[m] for m in names],
                   in_features=tuple(checkpoint.fan_in(m) for m in names),
                   thresholds=[get(f"fc{k}.threshold") for k in range(1, n)],
                   flips=[get(f"fc{k}.flip") for k in range(1, n)], row_sum=get("fc1.row_sum"),
                   out_bias=get(f"fc{n}.bias"), out_mean=get(f"bn{n}.running_mean"), out_var=get(f"bn{n}.running_var"),
                   out_weight=get(f"bn{n}.weight"), out_beta=get(f"bn{n}.bias"), out_eps=out_eps, fragile=fragile,
                   out_invstd=checkpoint.arrays.get(f"bn{n}.running_invstd"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the packed checkpoint (kind ``"packed-bnn"``, an **uncompressed** ``.npz``); returns its path."""
        return write_checkpoint(self.to_checkpoint(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PackedBNN:
        """Read a file written by :meth:`save`.

        Raises ``ValueError`` naming the file if it is not a packed-bnn checkpoint: a
        :class:`qnnlib.files.UnreadableFileError` (delete the file and export again) when it is truncated,
        corrupt or lacks an entry, a plain ``ValueError`` when it is a checkpoint of another kind or version.
        """
        return load_network(path, PACKED_BNN_KIND, cls.from_checkpoint,
                           "qnnlib.runtime.export.export_bnn(model).save(path)")

    # -------------------------------------------------------------------------------- devices
    def _on(self, backend: str) -> tuple[Any, dict[str, Any]]:
        """(xp, arrays) for ``backend``: NumPy arrays for CPU backends, CuPy copies (cached per device) for CUDA,
        the weights as :class:`~qnnlib.runtime.gemm_cuda.CudaOperand` (prepared once)."""
        if backend not in BACKENDS or backend == "auto":  # "auto" is resolved by the callers
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not backend.startswith("cuda"):
            return np, {"w": self.weights, "t": self.thresholds, "f": self.flips, "s1": self.row_sum}
        # One set per device for every CUDA backend: the weights as prepared operands (their 32-bit words and
        # row popcounts computed once per model, checked against their K once), not on every layer call.
        key = ("cuda", cuda_device_id())
        if key not in self._cache:
            cp = cupy()
            self._cache[key] = {"w": [prepare_cuda_operand(cp.asarray(w), kin)
                                      for w, kin in zip(self.weights, self.in_features)],
                                "t": [cp.asarray(t) for t in self.thresholds],
                                "f": [cp.asarray(f) for f in self.flips], "s1": cp.asarray(self.row_sum)}
        return cupy(), self._cache[key]

    def _w1_float(self, xp: Any) -> Any:
        """Layer 1's ±1 weights as float32 (H, K), unpacked once (``first_layer="float"``)."""
        key = "w1f_cuda" if xp is not np else "w1f"
        if key not in self._cache:
            w = unpack(self.weights[0], self.in_features[0])
            self._cache[key] = torch.from_numpy(w) if xp is np else cupy().asarray(w)
        return self._cache[key]

    # ------------------------------------------------------------------------------ the layers
    def first_layer_integer(self, images: Any, backend: str = "cpu", first_layer: FirstLayer = "bitplanes"
                            ) -> np.ndarray:
        """``D = W_1^b · p`` (int32, (N, H_1)) for 8-bit pixels ``p``: Eq. 6 bit-planes or a float GEMM.

        ``first_layer="bitplanes"`` (Eq. 6): 8 binary GEMMs of the bit-planes q_n = 2 p^n − 1 with W_b,
        recombined as D = Σ_n 2^n (W_b·q_n + S)/2. ``"float"``: D = p @ W_b^T as float32, exact because
        every partial sum is an integer below 2^24 (the paper's run-time demo ran layer 1 on floats).
        """
        backend = _resolve(backend, images)
        xp, arr = self._on(backend)
        p = to_xp(pixels_from_inputs(images) if not is_cupy(images) else images, xp)
        return to_host(self._first_layer_d(p, xp, arr, backend, first_layer))

    def _first_layer_d(self, p: Any, xp: Any, arr: dict, backend: str, first_layer: str) -> Any:
        k = self.in_features[0]
        if p.ndim != 2 or p.shape[1] != k:
            raise ValueError(f"images must have {k} pixels each, got shape {tuple(p.shape)}")
        if first_layer == "float":
            if 255 * k >= 2**24:
                raise ValueError(f"first_layer='float' is exact only for K < 65794 inputs, got K = {k}")
            if xp is np:
                d = torch.matmul(torch.from_numpy(p).float(), self._w1_float(np).T)
                return d.numpy().astype(np.int32)
            return xp.matmul(p.astype(xp.float32), self._w1_float(xp).T).astype(xp.int32)
        if first_layer != "bitplanes":
            raise ValueError(f"first_layer must be 'bitplanes' (Eq. 6) or 'float', got {first_layer!r}")
        return bitplane_dot(p, arr["w"][0], arr["s1"], k, backend, xp)  # Eq. 6

    def _threshold(self, d: Any, layer: int, xp: Any, arr: dict) -> Any:
        """Packed ±1 activations ``f·d >= t`` of hidden layer ``layer`` (1-based)."""
        return threshold_activations(d, arr["t"][layer - 1], arr["f"][layer - 1], xp)

    def _run(self, images: Any, backend: str, first_layer: str, batch_size: int, keep_hidden: bool
             ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Output-layer dot products (N, H_L) int32 and (optionally) every hidden layer's packed activations."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        backend = _resolve(backend, images)
        xp, arr = self._on(backend)
        p_all = images if is_cupy(images) else pixels_from_inputs(images)
        if is_cupy(p_all) and (p_all.dtype != np.uint8 or p_all.ndim != 2):
            raise ValueError(f"CuPy images must be uint8 pixels of shape (N, K), got {p_all.dtype} {p_all.shape}")
        n = p_all.shape[0]
        dots, hidden = [], [[] for _ in range(self.num_layers - 1)]
        for i0 in range(0, n, batch_size):
            p = to_xp(p_all[i0:i0 + batch_size], xp)
            if first_layer == "bitplanes":  # Eq. 6 and the first sign(BN), fused where the CPU allows
                if p.ndim != 2 or p.shape[1] != self.in_features[0]:
                    raise ValueError(f"images must have {self.in_features[0]} pixels each, got shape {tuple(p.shape)}")
                a = bitplane_sign(p, arr["w"][0], arr["s1"], self.in_features[0], arr["t"][0], arr["f"][0], backend,
                                  xp)
            else:
                a = self._threshold(self._first_layer_d(p, xp, arr, backend, first_layer), 1, xp, arr)
            if keep_hidden:
                hidden[0].append(to_host(a))
            for k in range(2, self.num_layers):  # Alg. 4: a_k = XnorDotProduct(a_{k-1}^b, W_k^b); sign(BN)
                a = binary_matmul_sign(a, arr["w"][k - 1], arr["t"][k - 1], arr["f"][k - 1], self.in_features[k - 1],
                                       backend)
                if keep_hidden:
                    hidden[k - 1].append(to_host(a))
            dots.append(to_host(binary_matmul(a, arr["w"][-1], self.in_features[-1], backend)))
        h_last = self.widths[-1]
        dot = np.concatenate(dots) if dots else np.empty((0, h_last), dtype=np.int32)
        packed = [np.concatenate(h) if h else np.empty((0, packed_width(self.widths[i], WORD_BITS)), np.uint64)
                  for i, h in enumerate(hidden)] if keep_hidden else []
        return dot, packed

    def _output_bn(self, dot: np.ndarray) -> torch.Tensor:
        """a_L = BatchNorm(dot + bias) in float32, the model's own arithmetic (CPU)."""
        s = torch.from_numpy(dot.astype(np.float32)) + torch.from_numpy(self.out_bias)
        p = {"mean": torch.from_numpy(self.out_mean), "var": torch.from_numpy(self.out_var),
             "weight": torch.from_numpy(self.out_weight), "bias": torch.from_numpy(self.out_beta), "eps": self.out_eps,
             "invstd": None if self.out_invstd is None else torch.from_numpy(self.out_invstd)}
        return batch_norm(s, p)

    # ------------------------------------------------------------------------------ public API
    def logits(self, images: Any, backend: str = "cpu", *, first_layer: FirstLayer = "bitplanes",
               batch_size: int = 2048) -> np.ndarray:
        """The output layer ``BN(W_L^b · a_{L-1}^b + bias)`` (float32, (N, classes)), Alg. 4's a_L."""
        dot, _ = self._run(images, backend, first_layer, batch_size, keep_hidden=False)
        return self._output_bn(dot).numpy()

    def predict(self, images: Any, backend: str = "cpu", *, first_layer: FirstLayer = "bitplanes",
                batch_size: int = 2048) -> np.ndarray:
        """Predicted labels (int64, (N,)) = argmax of :meth:`logits` (first maximum, as ``torch.argmax``).

        Args:
            images: uint8 pixels (N, ...) or the float inputs ``p/255·2 − 1`` (NumPy, torch CPU tensor;
                CuPy uint8 (N, K) for the CUDA backends).
            backend: ``"cpu"`` (Numba), ``"numpy"`` (slow reference), ``"cuda"``, ``"cuda-xnor"``,
                ``"cuda-tc"`` (CuPy kernels; see :mod:`qnnlib.runtime.binary_gemm`). The output BN always runs
                on the CPU in float32 (a (N, classes) array), so every backend reproduces the CPU model.
            first_layer: ``"bitplanes"`` (Eq. 6, all layers binary) or ``"float"`` (layer 1 as an
                exact float32 GEMM of 8-bit integers, as in the paper's run-time demo). Same result.
            batch_size: images per chunk (bounds memory; each chunk uses every core).
        """
        dot, _ = self._run(images, backend, first_layer, batch_size, keep_hidden=False)
        return torch.argmax(self._output_bn(dot), dim=1).numpy()

    def forward_hidden(self, images: Any, backend: str = "cpu", *, first_layer: FirstLayer = "bitplanes",
                       batch_size: int = 2048) -> list[np.ndarray]:
        """Every hidden layer's binary activations a_k^b as ±1 int8 arrays (N, H_k) (diagnostics)."""
        _, packed = self._run(images, backend, first_layer, batch_size, keep_hidden=True)
        return [unpack(a, h).astype(np.int8) for a, h in zip(packed, self.widths)]

    def binary_layer(self, layer: int, inputs: Any, backend: str = "cpu") -> np.ndarray:
        """Hidden layer ``layer`` (2 ≤ layer ≤ L−1) on given ±1 inputs (N, K): ±1 int8 (N, H).

        ``a = +1 iff f·d >= t`` with ``d = W_b · inputs`` from the binary GEMM; equals the model's
        ``sign(BN(fc(inputs)))`` for the same binary inputs (see :mod:`qnnlib.runtime.folding`).
        """
        if not 2 <= layer <= self.num_layers - 1:
            raise ValueError(f"layer must be a hidden layer 2..{self.num_layers - 1}, got {layer}")
        backend = _resolve(backend, inputs)
        xp, arr = self._on(backend)
        x = to_xp(_as_pm1_packed(inputs, self.in_features[layer - 1]), xp)
        d = binary_matmul(x, arr["w"][layer - 1], self.in_features[layer - 1], backend)
        return unpack(to_host(self._threshold(d, layer, xp, arr)), self.widths[layer - 1]).astype(np.int8)

    def output_layer(self, inputs: Any, backend: str = "cpu") -> np.ndarray:
        """The output layer on given ±1 inputs (N, K_L): ``BN(W_L^b · inputs + bias)``, float32 (N, classes)."""
        backend = _resolve(backend, inputs)
        xp, arr = self._on(backend)
        x = to_xp(_as_pm1_packed(inputs, self.in_features[-1]), xp)
        return self._output_bn(to_host(binary_matmul(x, arr["w"][-1], self.in_features[-1], backend))).numpy()


def _resolve(backend: str, data: Any) -> str:
    """``"auto"`` -> ``"cuda"`` for CuPy data, else ``"cpu"``; other names pass through (checked by ``_on``)."""
    return ("cuda" if is_cupy(data) else "cpu") if backend == "auto" else backend


def _as_pm1_packed(inputs: Any, k: int) -> np.ndarray:
    x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    if x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"inputs must be ±1 of shape (N, {k}), got shape {x.shape}")
    if x.size and not np.isin(x, (-1, 1)).all():
        raise ValueError("inputs of a binary layer must be exactly ±1")
    return pack(x, WORD_BITS)
