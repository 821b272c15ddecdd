"""Tests for qnnlib.precision: the per-layer precision policy (construction, resolution, label, bad input)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnnlib.gradquant import METHODS
from qnnlib.precision import (
    BINARY,
    FLOAT,
    GRAD_METHODS,
    INHERIT,
    MAX_BITS,
    MAX_GRAD_BITS,
    LayerBits,
    Precision,
)

FAST = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------------------------------
# The old constructor and constants keep their meaning
# --------------------------------------------------------------------------------------------------
def test_first_four_fields_in_order_and_positional_calls() -> None:
    names = [f.name for f in dataclasses.fields(Precision)]
    assert names[:4] == ["weight_bits", "act_bits", "stochastic", "norm"]
    p = Precision(1, 1, True, "sbn")
    assert (p.weight_bits, p.act_bits, p.stochastic, p.norm) == (1, 1, True, "sbn")
    assert Precision(2, 2) == Precision(weight_bits=2, act_bits=2)
    assert (p.grad_bits, p.grad_method, p.param_grad_bits, p.first, p.last, p.overrides) == (
        None, "log", None, None, None, ())
    with pytest.raises(TypeError):
        Precision(1, 1, False, "bn", 6)  # the new fields are keyword-only


def test_constants_and_plain_labels() -> None:
    assert BINARY == Precision() and BINARY.label == "W1A1"
    assert FLOAT == Precision(None, None) and FLOAT.label == "W32A32"
    assert Precision(2, 2).label == "W2A2" and Precision(1, None).label == "W1A32"
    assert Precision(1, 1, True, "sbn").label == "W1A1"  # rounding and norm are not in the label
    assert GRAD_METHODS == METHODS


def test_frozen_hashable_and_copyable() -> None:
    p = Precision(1, 2, grad_bits=6, first=LayerBits(weight_bits=None), overrides={2: LayerBits(act_bits=4)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.weight_bits = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.first.weight_bits = 2  # type: ignore[misc, union-attr]
    assert p.overrides == ((2, LayerBits(act_bits=4)),)  # a mapping is stored as sorted pairs
    q = Precision(1, 2, grad_bits=6, first=LayerBits(weight_bits=None), overrides=[(2, LayerBits(act_bits=4))])
    assert p == q and hash(p) == hash(q) and len({p, q, BINARY}) == 2
    for c in (copy.deepcopy(p), pickle.loads(pickle.dumps(p)), dataclasses.replace(p)):
        assert c == p and hash(c) == hash(p)
        assert c.all_layer_bits(3) == p.all_layer_bits(3)
    assert LayerBits().weight_bits is INHERIT and pickle.loads(pickle.dumps(INHERIT)) is INHERIT


def test_numpy_integers_are_normalised_to_int() -> None:
    p = Precision(np.int64(2), np.int32(3), grad_bits=np.int16(6))
    assert p == Precision(2, 3, grad_bits=6) and type(p.weight_bits) is int and type(p.grad_bits) is int
    assert type(LayerBits(weight_bits=np.int8(4)).weight_bits) is int


# --------------------------------------------------------------------------------------------------
# Resolution per layer
# --------------------------------------------------------------------------------------------------
def test_default_policy_is_uniform_including_first_and_last() -> None:
    for p in (BINARY, FLOAT, Precision(2, 3, grad_bits=6)):
        bits = p.all_layer_bits(4)
        assert bits == (LayerBits(p.weight_bits, p.act_bits, p.grad_bits),) * 4
        assert all(b.resolved for b in bits)


def test_first_last_and_index_overrides_and_precedence() -> None:
    p = Precision(
        1, 2, grad_bits=6,
        first=LayerBits(weight_bits=None, grad_bits=None),
        last=LayerBits(weight_bits=8),
        overrides={3: LayerBits(act_bits=4), 5: LayerBits(weight_bits=2)},
    )
    b = p.all_layer_bits(5)
    assert b[0] == LayerBits(None, 2, None)  # float first layer, float error there
    assert b[1] == LayerBits(1, 2, 6)  # untouched middle layer
    assert b[2] == LayerBits(1, 4, 6)
    assert b[3] == LayerBits(1, 2, 6)
    assert b[4] == LayerBits(2, 2, 6)  # the index override wins over ``last``
    assert p.layer_bits(2, 2) == LayerBits(8, 2, 6)  # with n = 2, layer 2 is the last
    one = Precision(first=LayerBits(weight_bits=4), last=LayerBits(weight_bits=8))
    assert one.layer_bits(1, 1).weight_bits == 8  # n = 1: first, then last
    with pytest.raises(ValueError, match=r"\[5\]"):
        p.all_layer_bits(4)  # an override names a layer the network does not have


def test_layer_bits_over_and_short() -> None:
    base = LayerBits(1, 1, None)
    assert LayerBits(act_bits=None).over(base) == LayerBits(1, None, None)
    assert LayerBits().over(base) == base
    assert LayerBits(weight_bits=None, grad_bits=6).short() == "W32G6"
    assert LayerBits(weight_bits=1, act_bits=2).short(base) == "A2"  # fields equal to base are left out


def test_labels_say_gradients_and_differing_layers() -> None:
    assert Precision(1, 2, grad_bits=6).label == "W1A2G6"
    assert Precision(1, 2, grad_bits=6, grad_method="linear").label == "W1A2G6lin"
    assert Precision(grad_bits=6, param_grad_bits=8).label == "W1A1G6P8"
    assert Precision(first=LayerBits(weight_bits=None)).label == "W1A1[first:W32]"
    assert Precision(first=LayerBits(weight_bits=None), last=LayerBits(weight_bits=8)).label == \
        "W1A1[first:W32,last:W8]"
    assert Precision(2, 2, overrides={3: LayerBits(act_bits=4)}).label == "W2A2[3:A4]"
    # overrides that change nothing do not show
    assert Precision(first=LayerBits(weight_bits=1), last=LayerBits()).label == "W1A1"
    assert Precision(grad_bits=6).quantizes_gradients and not BINARY.quantizes_gradients
    assert Precision(overrides={2: LayerBits(grad_bits=4)}).quantizes_gradients


# --------------------------------------------------------------------------------------------------
# Bad input: every field raises ValueError naming it
# --------------------------------------------------------------------------------------------------
BAD_BITS = [0, -1, 1.0, 2.5, True, False, "2", np.bool_(True)]


@pytest.mark.parametrize("bad", BAD_BITS)
@pytest.mark.parametrize("name", ["weight_bits", "act_bits", "grad_bits", "param_grad_bits"])
def test_bad_bits_name_the_field(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        Precision(**{name: bad})


@pytest.mark.parametrize("bad", BAD_BITS + [INHERIT])
@pytest.mark.parametrize("field", ["weight_bits", "act_bits", "grad_bits"])
def test_bad_layer_bits_name_the_field(field: str, bad: object) -> None:
    if bad is INHERIT:  # INHERIT is valid in an override, not as the policy's own value
        LayerBits(**{field: bad})
        with pytest.raises(ValueError, match=rf"\b{field}\b"):
            Precision(**{field: bad})
        return
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        LayerBits(**{field: bad})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(weight_bits=MAX_BITS + 1), "weight_bits"),
        (dict(act_bits=MAX_BITS + 1), "act_bits"),
        (dict(grad_bits=MAX_GRAD_BITS + 1), "grad_bits"),
        (dict(param_grad_bits=MAX_GRAD_BITS + 1), "param_grad_bits"),
        (dict(stochastic=1), "stochastic"),
        (dict(stochastic="yes"), "stochastic"),
        (dict(norm="ln"), "norm"),
        (dict(norm=None), "norm"),
        (dict(grad_method="stochastic"), "grad_method"),
        (dict(grad_method=None), "grad_method"),
        (dict(grad_method="linear", grad_bits=1), "grad_bits"),
        (dict(grad_method="linear", param_grad_bits=1), "param_grad_bits"),
        (dict(grad_method="linear", first=LayerBits(grad_bits=1)), "first.grad_bits"),
        (dict(grad_method="linear", overrides={2: LayerBits(grad_bits=1)}), r"overrides\[2\].grad_bits"),
        (dict(first=(1, 1, None)), "first"),
        (dict(last={"weight_bits": 2}), "last"),
        (dict(last=LayerBits(act_bits=2)), "last.act_bits"),
        (dict(overrides={0: LayerBits()}), "overrides"),
        (dict(overrides={True: LayerBits()}), "overrides"),
        (dict(overrides={1.0: LayerBits()}), "overrides"),
        (dict(overrides={2: (1, 1, 1)}), "overrides"),
        (dict(overrides=[(2, LayerBits()), (2, LayerBits())]), "overrides"),
        (dict(overrides=[2]), "overrides"),
        (dict(overrides=LayerBits()), "overrides"),
        (dict(overrides="2"), "overrides"),
    ],
)
def test_bad_fields_raise_naming_the_field(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Precision(**kwargs)


def test_layer_bits_maxima_and_resolution_arguments() -> None:
    assert LayerBits(weight_bits=MAX_BITS, grad_bits=MAX_GRAD_BITS).grad_bits == MAX_GRAD_BITS
    with pytest.raises(ValueError, match="weight_bits"):
        LayerBits(weight_bits=MAX_BITS + 1)
    with pytest.raises(ValueError, match="grad_bits"):
        LayerBits(grad_bits=MAX_GRAD_BITS + 1)
    for k, n, name in ((0, 3, "k"), (4, 3, "k"), (1, 0, "n"), (True, 3, "k"), (1.0, 3, "k")):
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            BINARY.layer_bits(k, n)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------
bits_or_none = st.one_of(st.none(), st.integers(1, MAX_BITS))
maybe = st.one_of(st.just(INHERIT), bits_or_none)
layer_bits = st.builds(LayerBits, maybe, maybe, st.one_of(st.just(INHERIT), st.none(), st.integers(2, MAX_GRAD_BITS)))
last_bits = st.builds(LayerBits, maybe, st.just(INHERIT), st.one_of(st.just(INHERIT), st.none(), st.integers(2, 32)))
policies = st.builds(
    Precision,
    bits_or_none,
    bits_or_none,
    st.booleans(),
    st.sampled_from(["bn", "sbn"]),
    grad_bits=st.one_of(st.none(), st.integers(2, MAX_GRAD_BITS)),
    grad_method=st.sampled_from(GRAD_METHODS),
    first=st.one_of(st.none(), layer_bits),
    last=st.one_of(st.none(), last_bits),
    overrides=st.dictionaries(st.integers(1, 6), layer_bits, max_size=3),
)


@FAST
@given(policies, st.integers(6, 9))
def test_prop_resolution_is_field_by_field_with_fixed_precedence(p: Precision, n: int) -> None:
    bits = p.all_layer_bits(n)
    over = dict(p.overrides)
    for k, b in enumerate(bits, start=1):
        assert b == p.layer_bits(k, n) and b.resolved
        for name in ("weight_bits", "act_bits", "grad_bits"):
            expected = getattr(p, name)
            for o in ([p.first] if k == 1 else []) + ([p.last] if k == n else []) + [over.get(k)]:
                if o is not None and getattr(o, name) is not INHERIT:
                    expected = getattr(o, name)
            assert getattr(b, name) == expected
    # equal policies have equal labels; the label starts with the policy's own W/A bits
    assert Precision(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}).label == p.label
    assert p.label.startswith(f"W{p.weight_bits or 32}A{p.act_bits or 32}")
    # the label lists a layer iff an override changes one of its fields; no listed layer: uniform network
    differs = any(o.short(p.base) for o in (p.first, p.last, *over.values()) if o is not None)
    assert ("[" in p.label) == differs
    if not differs:
        assert all(b == p.base for b in bits)


# --------------------------------------------------------------------------------------------------
# Issue 10 row 10: one documented maximum (docs/decisions.md D22)
# --------------------------------------------------------------------------------------------------
def test_maxima_are_those_of_quantize_and_precision_stays_torch_free() -> None:
    import subprocess
    import sys

    from qnnlib import quantize

    assert (MAX_BITS, MAX_GRAD_BITS) == (quantize.MAX_BITS, quantize.MAX_GRAD_BITS) == (16, 32)
    code = "import sys, qnnlib.precision; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_bits_message_names_field_bound_and_where_documented() -> None:
    with pytest.raises(ValueError, match=r"^weight_bits must be None \(float\) or an integer in \[1, 16\] \(maximum: "
                       r"qnnlib\.precision\.MAX_BITS, docs/decisions\.md D22\), got 17$"):
        Precision(weight_bits=17)
    with pytest.raises(ValueError, match=r"^grad_bits .* \[1, 32\] \(maximum: qnnlib\.precision\.MAX_GRAD_BITS, "):
        LayerBits(grad_bits=1000)
