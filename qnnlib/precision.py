"""The precision policy of a network: how many bits its weights and activations get.

``None`` means float32 for that tensor kind. The models of :mod:`qnnlib.models` build every layer from
one :class:`Precision` record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NormKind", "Precision", "BINARY", "FLOAT"]

NormKind = Literal["bn", "sbn"]


@dataclass(frozen=True)
class Precision:
    """Bit widths of a network: ``None`` means float32 for that tensor kind.

    ``stochastic`` binarizes/rounds activations stochastically in training mode (Torch7 recipe);
    ``norm`` picks vanilla BN (``"bn"``) or shift-based BN (``"sbn"``) for the hidden layers (the
    output BN is always vanilla, as in both codebases).
    """

    weight_bits: int | None = 1
    act_bits: int | None = 1
    stochastic: bool = False
    norm: NormKind = "bn"

    def __post_init__(self) -> None:
        for name in ("weight_bits", "act_bits"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be None (float) or an integer >= 1, got {v!r}")
        if self.norm not in ("bn", "sbn"):
            raise ValueError(f"norm must be 'bn' or 'sbn', got {self.norm!r}")

    @property
    def label(self) -> str:
        w = "32" if self.weight_bits is None else str(self.weight_bits)
        a = "32" if self.act_bits is None else str(self.act_bits)
        return f"W{w}A{a}"


BINARY = Precision()
FLOAT = Precision(weight_bits=None, act_bits=None)
