"""Argument checks shared by the public functions that take sizes, counts, epochs and seeds.

One rule everywhere: an integer parameter must be a Python or NumPy integer (``bool`` is not one, and
neither is ``2.0``), and inside its documented range; otherwise ``TypeError`` (wrong type) or
``ValueError`` (out of range) names the parameter, the value and the range. A positive real parameter (a width
factor, a hard-tanh bound) must be a finite number > 0 (:func:`check_positive`). Bit widths have their own
bounds in :mod:`qnnlib.quantize`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_positive"]


def check_int(value: Any, name: str, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]`` (a ``None`` bound is open).

    >>> check_int(3, "epochs")
    3
    """
    lo = "" if minimum is None else f">= {minimum}"
    hi = "" if maximum is None else f"<= {maximum}"
    wanted = "a positive integer" if (minimum, maximum) == (1, None) else \
        " ".join(["an integer", " and ".join(b for b in (lo, hi) if b)]).strip()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {wanted}, got {v}")
    return v


def check_positive(value: Any, name: str) -> float:
    """``value`` as a ``float`` if it is a finite real number > 0 (``bool`` is not one); ``ValueError`` naming
    ``name`` otherwise.

    >>> check_positive(0.25, "width")
    0.25
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
