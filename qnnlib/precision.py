"""The precision policy of a network: how many bits each layer's weights, activations and gradients get.

``None`` means float32 for that tensor kind. The models of :mod:`qnnlib.models` build every layer —
the first and the last included — from one :class:`Precision` record: :meth:`Precision.layer_bits`
resolves the bits of layer ``k`` of ``n`` (the policy's defaults, then the ``first``/``last``
overrides, then an override by index), and :mod:`qnnlib.models.blocks` turns them into modules.

This module is pure Python (no torch), so a policy can be written, hashed and compared anywhere.
"""

from __future__ import annotations

import enum
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

__all__ = [
    "NormKind",
    "GradMethod",
    "GRAD_METHODS",
    "MAX_BITS",
    "MAX_GRAD_BITS",
    "Inherit",
    "INHERIT",
    "LayerBits",
    "Precision",
    "BINARY",
    "FLOAT",
]

NormKind = Literal["bn", "sbn"]
GradMethod = Literal["log", "linear"]
GRAD_METHODS: tuple[str, ...] = ("log", "linear")
"""Gradient quantizers of :mod:`qnnlib.gradquant` (the same tuple as ``qnnlib.gradquant.METHODS``)."""

# The same numbers as qnnlib.quantize.MAX_BITS / MAX_GRAD_BITS (tests/test_precision.py checks it), written
# out here so that this module stays torch-free, as GRAD_METHODS does.
MAX_BITS = 16
"""Largest weight / activation bit width (= ``qnnlib.quantize.MAX_BITS``; docs/decisions.md D22): the linear
quantizers have 2^bits levels (tests materialise them)."""
MAX_GRAD_BITS = 32
"""Largest gradient bit width (= ``qnnlib.quantize.MAX_GRAD_BITS``; docs/decisions.md D22; log: 2^(bits−1) − 1
exponent codes; linear: 2^(bits−1) − 1 magnitudes)."""
_MAX_NAMES = {MAX_BITS: "MAX_BITS", MAX_GRAD_BITS: "MAX_GRAD_BITS"}


class Inherit(enum.Enum):
    """Type of :data:`INHERIT`: a :class:`LayerBits` field that keeps the policy's value."""

    INHERIT = "inherit"

    def __repr__(self) -> str:
        return "INHERIT"


INHERIT = Inherit.INHERIT
"""A :class:`LayerBits` field set to ``INHERIT`` takes the policy's value (``None`` would mean float)."""

MaybeBits = int | None | Inherit


def _check_bits(value: Any, name: str, maximum: int, *, allow_inherit: bool = False) -> MaybeBits:
    """``value`` as ``int`` (or ``None``/``INHERIT``), or ``ValueError`` naming ``name``. Booleans are not bits."""
    if value is None or (allow_inherit and value is INHERIT):
        return value
    what = "None (float), INHERIT or an integer" if allow_inherit else "None (float) or an integer"
    where = f"maximum: qnnlib.precision.{_MAX_NAMES.get(maximum, maximum)}, docs/decisions.md D22"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be {what} in [1, {maximum}] ({where}), got {value!r} ({type(value).__name__})")
    if not 1 <= int(value) <= maximum:
        raise ValueError(f"{name} must be {what} in [1, {maximum}] ({where}), got {int(value)}")
    return int(value)


@dataclass(frozen=True)
class LayerBits:
    """The bits of one compute layer (fc/conv): its weights, its activation and its back-propagated error.

    As an override (``Precision(first=..., last=..., overrides=...)``) every field defaults to
    :data:`INHERIT` (keep the policy's value); ``None`` means float32.  As returned by
    :meth:`Precision.layer_bits` every field is resolved (an integer or ``None``).  Field meanings are
    those of :class:`Precision`'s ``weight_bits``, ``act_bits`` and ``grad_bits``, for this layer only.
    """

    weight_bits: MaybeBits = INHERIT
    act_bits: MaybeBits = INHERIT
    grad_bits: MaybeBits = INHERIT

    def __post_init__(self) -> None:
        # frozen: normalise (numpy integers → int) with object.__setattr__
        for name, maximum in (("weight_bits", MAX_BITS), ("act_bits", MAX_BITS), ("grad_bits", MAX_GRAD_BITS)):
            object.__setattr__(self, name, _check_bits(getattr(self, name), name, maximum, allow_inherit=True))

    @property
    def resolved(self) -> bool:
        """Whether no field is :data:`INHERIT`."""
        return INHERIT not in (self.weight_bits, self.act_bits, self.grad_bits)

    def over(self, base: LayerBits) -> LayerBits:
        """This record's set fields on top of ``base`` (``INHERIT`` keeps ``base``'s value)."""
        pick = lambda mine, theirs: theirs if mine is INHERIT else mine  # noqa: E731
        return LayerBits(pick(self.weight_bits, base.weight_bits), pick(self.act_bits, base.act_bits),
                         pick(self.grad_bits, base.grad_bits))

    def short(self, base: LayerBits | None = None) -> str:
        """``"W1A2G6"``-style text of the set fields (only those that differ from ``base`` when given)."""
        parts = []
        for letter, name in (("W", "weight_bits"), ("A", "act_bits"), ("G", "grad_bits")):
            v = getattr(self, name)
            if v is INHERIT or (base is not None and v == getattr(base, name)):
                continue
            parts.append(f"{letter}{32 if v is None else v}")
        return "".join(parts)


def _normalise_overrides(value: Any) -> tuple[tuple[int, LayerBits], ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes, LayerBits)):
        items = list(value)
    else:
        raise ValueError(f"overrides must be a mapping {{layer index: LayerBits}} or (index, LayerBits) pairs, "
                         f"got {value!r}")
    out: dict[int, LayerBits] = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValueError(f"overrides must hold (layer index, LayerBits) pairs, got {item!r}")
        k, bits = item
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or int(k) < 1:
            raise ValueError(f"overrides: a layer index must be an integer >= 1 (1-based), got {k!r}")
        if not isinstance(bits, LayerBits):
            raise ValueError(f"overrides[{k}] must be a LayerBits, got {type(bits).__name__}")
        if int(k) in out:
            raise ValueError(f"overrides: layer {int(k)} is given twice")
        out[int(k)] = bits
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class Precision:
    """Bit widths of a network, layer by layer; ``None`` means float32 for that tensor.

    Alg. 1 of the paper, layer ``k`` of ``L`` (``k`` counts the compute layers, fc or conv, from 1):
    ``W_k^b = Q(W_k)``; ``s_k = a_{k−1}^b W_k^b``; ``a_k = BatchNorm(s_k)``; ``a_k^b = Q(Htanh(a_k))`` for
    ``k < L``.  Each field quantizes exactly one of these tensors:

    * ``weight_bits`` — ``W_k^b``, the weights used in the forward pass of every compute layer
      (1: ``sign(W)``; k ≥ 2: k-bit linear on [−1, 1]; ``None``: a float ``nn.Linear``/``nn.Conv2d``).
      The latent ``W_k`` the optimizer updates stays float32.
    * ``act_bits`` — ``a_k^b``, the output of every hidden layer's activation (hard-tanh then the
      quantizer; ``None``: a float hard-tanh), i.e. the input of layer ``k + 1``.  The input of the first
      layer is the real data, never quantized; the last layer has no activation (its scores stay float).
    * ``stochastic`` — the rounding of the activation quantizer in training mode (Eq. 2, Torch7 recipe);
      deterministic in eval mode.
    * ``norm`` — vanilla BN (``"bn"``) or shift-based BN (``"sbn"``, Alg. 3) after the hidden layers (the
      output BN is always vanilla, as in both codebases).
    * ``grad_bits`` — ``g_{s_k} = ∂L/∂s_k``, the error back-propagated into compute layer ``k`` (its
      output, before pooling and BN), quantized per tensor by :class:`qnnlib.gradquant.GradQuant`.  It is
      the operand both backward GEMMs of the layer consume (``g_{a_{k−1}} = g_{s_k} W_k^b`` and
      ``g_{W_k} = g_{s_k}^T a_{k−1}^b``), so with quantized weights and activations the backward pass is
      bit-wise too.  ``None``: float.
    * ``grad_method`` — the gradient quantizer: ``"log"`` (the paper's: "only logarithmic quantization
      works"; power-of-two levels) or ``"linear"`` (sign-magnitude, needs ≥ 2 bits).
    * ``param_grad_bits`` — ``∂L/∂θ`` of every trainable parameter (latent weights, biases, BN γ/β),
      per tensor with ``grad_method``, as computed and before the optimizer sees it (tensor hooks,
      :func:`qnnlib.gradquant.register_param_grad_quant`).  ``None``: float.
    * ``first``, ``last`` — :class:`LayerBits` overrides of layer 1 and layer ``L`` (e.g. a float first
      layer: ``first=LayerBits(weight_bits=None)``); ``last.act_bits`` must stay ``INHERIT`` (no
      activation).  ``overrides`` — ``{k: LayerBits}`` by 1-based layer index (stored as a sorted tuple
      of pairs so the record stays hashable).  Precedence: policy < ``first``/``last`` < ``overrides``.

    Bits are integers in [1, :data:`MAX_BITS`] (weights, activations) or [1, :data:`MAX_GRAD_BITS`]
    (gradients), or ``None``; booleans are rejected (docs/decisions.md D22).  Every field is checked at
    construction (``ValueError`` naming it).
    """

    weight_bits: int | None = 1
    act_bits: int | None = 1
    stochastic: bool = False
    norm: NormKind = "bn"
    _: KW_ONLY
    grad_bits: int | None = None
    grad_method: GradMethod = "log"
    param_grad_bits: int | None = None
    first: LayerBits | None = None
    last: LayerBits | None = None
    overrides: tuple[tuple[int, LayerBits], ...] | Mapping[int, LayerBits] = ()

    def __post_init__(self) -> None:
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731  (frozen: normalise in place)
        set_("weight_bits", _check_bits(self.weight_bits, "weight_bits", MAX_BITS))
        set_("act_bits", _check_bits(self.act_bits, "act_bits", MAX_BITS))
        if not isinstance(self.stochastic, bool):
            raise ValueError(f"stochastic must be a bool, got {self.stochastic!r}")
        if self.norm not in ("bn", "sbn"):
            raise ValueError(f"norm must be 'bn' or 'sbn', got {self.norm!r}")
        if not isinstance(self.grad_method, str) or self.grad_method not in GRAD_METHODS:
            raise ValueError(f"grad_method must be one of {GRAD_METHODS}, got {self.grad_method!r}")
        set_("grad_bits", _check_bits(self.grad_bits, "grad_bits", MAX_GRAD_BITS))
        set_("param_grad_bits", _check_bits(self.param_grad_bits, "param_grad_bits", MAX_GRAD_BITS))
        for name in ("first", "last"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, LayerBits):
                raise ValueError(f"{name} must be a LayerBits or None, got {type(v).__name__}")
        if self.last is not None and self.last.act_bits is not INHERIT:
            raise ValueError("last.act_bits must be INHERIT: the output layer has no activation (its input's bits "
                             "are the previous layer's act_bits)")
        set_("overrides", _normalise_overrides(self.overrides))
        # the linear gradient quantizer needs a sign bit and at least one magnitude bit
        if self.grad_method == "linear":
            for name, v in self._grad_bit_fields():
                if v == 1:
                    raise ValueError(f"{name} must be >= 2 with grad_method='linear' (sign + magnitude), got 1")

    def _grad_bit_fields(self) -> list[tuple[str, MaybeBits]]:
        out: list[tuple[str, MaybeBits]] = [("grad_bits", self.grad_bits), ("param_grad_bits", self.param_grad_bits)]
        out += [(f"{n}.grad_bits", getattr(self, n).grad_bits) for n in ("first", "last") if getattr(self, n)]
        out += [(f"overrides[{k}].grad_bits", b.grad_bits) for k, b in self.overrides]
        return out

    # ----------------------------------------------------------------------------- resolution
    @property
    def base(self) -> LayerBits:
        """The policy's default bits of a layer (before any override)."""
        return LayerBits(self.weight_bits, self.act_bits, self.grad_bits)

    def layer_bits(self, k: int, n: int) -> LayerBits:
        """The resolved bits of compute layer ``k`` (1-based) of ``n``.

        Policy defaults, then ``first`` (``k = 1``) and ``last`` (``k = n``), then ``overrides[k]``, field by
        field.  The ``act_bits`` of the last layer is not used by the models (no activation there).
        """
        for name, v in (("n", n), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if k > n:
            raise ValueError(f"k must be in [1, n] = [1, {n}], got k={k}")
        bits = self.base
        if k == 1 and self.first is not None:
            bits = self.first.over(bits)
        if k == n and self.last is not None:
            bits = self.last.over(bits)
        over = dict(self.overrides).get(int(k))
        return over.over(bits) if over is not None else bits

    def all_layer_bits(self, n: int) -> tuple[LayerBits, ...]:
        """``layer_bits(k, n)`` for ``k = 1..n``; ``ValueError`` if an override names a layer beyond ``n``."""
        beyond = [k for k, _ in self.overrides if k > n]
        if beyond:
            raise ValueError(f"overrides name layer(s) {beyond} but the network has n={n} compute layers")
        return tuple(self.layer_bits(k, n) for k in range(1, n + 1))

    @property
    def quantizes_gradients(self) -> bool:
        """Whether any back-propagated error or parameter gradient is quantized."""
        return any(v not in (None, INHERIT) for _, v in self._grad_bit_fields())

    # ----------------------------------------------------------------------------------- label
    @property
    def label(self) -> str:
        """Short name: ``"W1A1"``, ``"W32A32"`` (float), ``"W1A2G6"`` (6-bit log gradients; ``G6lin`` linear),
        ``P8`` for 8-bit parameter gradients, then the layers that differ, e.g.
        ``"W1A1[first:W32,last:W8]"`` or ``"W2A2[3:A4]"``.
        """
        w = "32" if self.weight_bits is None else str(self.weight_bits)
        a = "32" if self.act_bits is None else str(self.act_bits)
        text = f"W{w}A{a}"
        lin = "lin" if self.grad_method == "linear" else ""
        if self.grad_bits is not None:
            text += f"G{self.grad_bits}{lin}"
        if self.param_grad_bits is not None:
            text += f"P{self.param_grad_bits}{lin}"
        base = self.base
        parts = [f"{name}:{s}" for name, o in (("first", self.first),) if o is not None and (s := o.short(base))]
        parts += [f"{k}:{s}" for k, o in self.overrides if (s := o.short(base))]
        if self.last is not None and (s := self.last.short(base)):
            parts.append(f"last:{s}")
        return text + (f"[{','.join(parts)}]" if parts else "")


BINARY = Precision()
FLOAT = Precision(weight_bits=None, act_bits=None)
