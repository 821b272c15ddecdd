"""Horowitz's 45 nm energy tables (ISSCC 2014) as data: the paper's Tables 2 and 3 (docs/paper.md §1.4).

:data:`HOROWITZ_ARITH_PJ` (one arithmetic operation, pJ) and :data:`HOROWITZ_MEMORY_PJ` (one
64-bit memory access, pJ, low/high) with their source in :data:`HOROWITZ_SOURCE`;
:data:`MEMORY_CAPACITY_BYTES` reads the table's memory sizes as capacities; :func:`horowitz_table`
shows both tables as one DataFrame. The energy model that prices a network with them is
:mod:`qnnlib.analysis.energy`.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["HOROWITZ_SOURCE", "HOROWITZ_ARITH_PJ", "HOROWITZ_MEMORY_PJ", "MEMORY_CAPACITY_BYTES", "horowitz_table"]

HOROWITZ_SOURCE = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm; "
    "as printed in Hubara et al., Binarized Neural Networks, NIPS 2016, Tables 2 and 3 (docs/paper.md §1.4)"
)

HOROWITZ_ARITH_PJ: dict[tuple[str, str], float] = {
    ("int8", "mul"): 0.2, ("int8", "add"): 0.03,
    ("int32", "mul"): 3.1, ("int32", "add"): 0.1,
    ("fp16", "mul"): 1.1, ("fp16", "add"): 0.4,
    ("fp32", "mul"): 3.7, ("fp32", "add"): 0.9,
}
"""Energy of one arithmetic operation in pJ, keyed by (format, "mul" | "add") — NIPS Table 2."""

HOROWITZ_MEMORY_PJ: dict[str, tuple[float, float]] = {
    "8K": (10.0, 10.0), "32K": (20.0, 20.0), "1M": (100.0, 100.0), "DRAM": (1300.0, 2600.0),
}
"""Energy of one 64-bit memory access in pJ as (low, high), keyed by memory size — NIPS Table 3."""

MEMORY_CAPACITY_BYTES: dict[str, float] = {"8K": 8 * 1024, "32K": 32 * 1024, "1M": 1024 * 1024, "DRAM": math.inf}
"""Capacity used by ``"auto"`` placement (the table's "8K/32K/1M" read as bytes)."""


def horowitz_table() -> pd.DataFrame:
    """The Horowitz 45 nm table as a DataFrame: (kind, format/level, op, pJ low, pJ high, source)."""
    rows = [{"kind": "arithmetic", "what": f, "op": op, "pj_low": v, "pj_high": v}
            for (f, op), v in HOROWITZ_ARITH_PJ.items()]
    rows += [{"kind": "memory", "what": lvl, "op": "64-bit access", "pj_low": lo, "pj_high": hi}
             for lvl, (lo, hi) in HOROWITZ_MEMORY_PJ.items()]
    df = pd.DataFrame(rows)
    df["source"] = HOROWITZ_SOURCE
    return df
