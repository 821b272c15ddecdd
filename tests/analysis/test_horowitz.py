"""Tests for qnnlib.analysis.horowitz: the Horowitz 45 nm tables are the paper's Tables 2 and 3."""

from __future__ import annotations

from qnnlib.analysis import horowitz as H


def test_horowitz_table_is_the_papers():
    t = H.horowitz_table()
    assert len(t) == 8 + 4
    assert H.HOROWITZ_ARITH_PJ[("fp32", "mul")] == 3.7 and H.HOROWITZ_ARITH_PJ[("int8", "add")] == 0.03
    assert H.HOROWITZ_MEMORY_PJ["DRAM"] == (1300.0, 2600.0)
    assert (t["source"] == H.HOROWITZ_SOURCE).all() and "Horowitz" in H.HOROWITZ_SOURCE
