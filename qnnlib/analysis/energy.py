"""Energy and memory account of a ``qnnlib`` model (paper §3, docs/paper.md §1.4 and §3.1).

The paper's hardware argument (NIPS §3):

* Horowitz (ISSCC 2014, 45 nm) energies — the paper's Tables 2 and 3 as data in
  :mod:`qnnlib.analysis.horowitz` (``HOROWITZ_ARITH_PJ``, ``HOROWITZ_MEMORY_PJ``, with their source).
* "BNNs need 32× smaller memory size and 32× fewer memory accesses" than 32-bit DNNs, which "is
  expected to reduce energy consumption drastically (i.e., more than 32 times)".
* "most of the 32-bit floating point multiply-accumulations are replaced by 1-bit XNOR-count
  operations"; the first layer's 8-bit input is split into bit-planes (Eq. 6):
  ``s = Σ_{n=1..8} 2^(n−1) · XnorDotProduct(x^n, w_b)``.

:func:`account` runs one real forward pass (batch 1, eval mode, ``torch.no_grad``) with forward
hooks on every leaf module, so every shape and count comes from the model itself, and prices every
layer under five executions: ``fp32``, ``fp16``, ``int8`` and ``binary`` (hypothetical uniform
precisions of the same architecture) and ``native`` (the model's own bit widths: ``weight_bits`` of
the quantized layers, ``QuantAct.bits`` of the activations).

Counting rules
--------------
* Every leaf module must be of a kind the account knows — compute (``Linear``, ``Conv2d``), norm (BN,
  shift-based BN), activation (``QuantAct``, ``Hardtanh``, ``ReLU``), pooling (``MaxPool``) or
  pass-through (``Dropout``, ``Flatten``, ``Identity``, :class:`~qnnlib.gradquant.GradQuant`) — and no
  container may hold parameters of its own; otherwise :func:`account` raises ``NotImplementedError``
  naming the module (:func:`check_accountable`), rather than charging it 0 pJ.
* MACs: ``Linear`` = in_features · out_features; ``Conv2d`` = output elements · (C_in/groups) · kh · kw
  (per image).  Bias additions and pooling are not counted.
* A compute layer's input precision is tracked through the forward pass: the model input; the
  output of ``QuantAct(bits=k)`` is k-bit; average pooling's is float; a container's output that no leaf made (the
  concatenated branches of an inception module) has its children's common precision, float when they differ;
  ``MaxPool``/``Dropout``/``Flatten``/``Identity``/``GradQuant``
  keep their input's precision (``GradQuant`` is the identity in the forward pass: it quantizes
  gradients in training only, 0 pJ at inference); every other module's output is float.  A 1-bit
  input is verified to be ±1.
* MAC kinds, by (weight, input) precision:
  float × anything → float MACs (a ±1 weight or input makes it an add only, BinaryConnect);
  1-bit × k-bit integer → ``k`` bit-plane XNOR-popcounts per MAC (Eq. 6; 1 × 1 → one XNOR-popcount;
  **our choice: the 8-bit first layer counts as 8 XNOR-popcounts per MAC**, not as 8-bit MACs);
  k-bit × j-bit (both ≥ 2) → integer MACs.
* The model input is an ``input_bits``-bit (8) fixed-point image for ``native`` quantized layers,
  ``binary`` and ``int8``; float for ``fp32``/``fp16`` and for a native float first layer.

Energy assumptions (:class:`EnergyAssumptions`, every one a parameter)
---------------------------------------------------------------------
* Float MAC = mul + add of that format; integer MAC (≤ 8 bits) = int8 mul + int32 add (the
  accumulator is 32 bits wide; 0.2 + 0.1 pJ).
* **XNOR-popcount: the Horowitz table has no XNOR gate.**  We charge one 8-bit integer add
  (0.03 pJ) per 1-bit connection.  Rationale: a popcount tree needs about one full adder per input
  bit and an XNOR gate per bit, i.e. ~1/8 of an 8-bit adder plus the 32-bit accumulate shared by 64
  connections (0.1/64 pJ) — about 0.006 pJ; 0.03 pJ is a conservative (≈5× pessimistic) estimate.
* Memory: every access moves one 64-bit word (Horowitz's unit); accesses = ⌈bits / 64⌉ per tensor.
  Weights (and biases / folded BN parameters) are read **once per inference** from
  ``weight_memory``; each compute layer reads its input activation once and writes its output once
  (after the fused pool → BN → quantizer, at the precision the next compute layer reads it; the last
  layer writes float scores) to ``act_memory``.  Levels: ``"8K"``, ``"32K"``, ``"1M"``, ``"DRAM"``
  or ``"auto"`` (the smallest level whose capacity holds the tensor — the "smaller memory" effect).
  DRAM costs 1.3 nJ (Horowitz's low end) unless ``dram="high"`` (2.6 nJ).
* Batch norm at inference is folded into one scale and shift per channel (2·C values, float32;
  float16 under ``fp16``) costing one MAC per element at float precision, or one int32 add per
  element (a threshold compare, as in FINN) when its input comes from integer MACs.  Biases are
  stored at 32 bits (16 under ``fp16``).  Activation quantizers, max pooling and the pass-through
  modules cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from qnnlib.analysis.horowitz import HOROWITZ_ARITH_PJ, HOROWITZ_MEMORY_PJ, HOROWITZ_SOURCE, MEMORY_CAPACITY_BYTES
from qnnlib.evaluation import eval_mode
from qnnlib.gradquant import GradQuant
from qnnlib.layers import LatentWeightLayer, QuantAct
from qnnlib.norm import ShiftBatchNorm1d, ShiftBatchNorm2d

__all__ = ["SCHEMES", "EnergyAssumptions", "LayerTrace", "trace", "check_accountable", "account", "layer_table",
           "scheme_totals", "summary", "comparison_rows"]

SCHEMES: tuple[str, ...] = ("fp32", "fp16", "int8", "binary", "native")
"""Executions priced by :func:`account`; ``native`` is the model's own bit widths."""

Prec = int | str  # "fp32" | "fp16" | an integer bit width
MemoryLevel = Literal["8K", "32K", "1M", "DRAM", "auto"]
_COMPUTE = (nn.Linear, nn.Conv2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, ShiftBatchNorm1d, ShiftBatchNorm2d)
_ACT = (QuantAct, nn.Hardtanh, nn.ReLU)
_POOL = (nn.MaxPool1d, nn.MaxPool2d)
_AVGPOOL = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)  # the average of k-bit values is not k-bit: output float
_PASSTHROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Flatten, nn.Identity, GradQuant)
_PRESERVING = _POOL + _PASSTHROUGH  # output precision = input precision
_KNOWN = ("Linear, Conv2d, BatchNorm1d/2d, ShiftBatchNorm1d/2d, QuantAct, Hardtanh, ReLU, MaxPool1d/2d, "
          "AvgPool2d, AdaptiveAvgPool2d, Dropout, Flatten, Identity, GradQuant")


@dataclass(frozen=True)
class EnergyAssumptions:
    """The stated assumptions of the energy model (see the module docstring for the rationale)."""

    weight_memory: MemoryLevel = "DRAM"
    act_memory: MemoryLevel = "1M"
    dram: Literal["low", "high"] = "low"
    xnor_pj_per_connection: float = HOROWITZ_ARITH_PJ[("int8", "add")]
    input_bits: int = 8
    word_bits: int = 64

    def __post_init__(self) -> None:
        for name in ("weight_memory", "act_memory"):
            if getattr(self, name) not in (*HOROWITZ_MEMORY_PJ, "auto"):
                raise ValueError(f"{name} must be one of {[*HOROWITZ_MEMORY_PJ, 'auto']}, got {getattr(self, name)!r}")
        if self.dram not in ("low", "high"):
            raise ValueError(f"dram must be 'low' or 'high', got {self.dram!r}")
        if not self.xnor_pj_per_connection >= 0:
            raise ValueError(f"xnor_pj_per_connection must be >= 0, got {self.xnor_pj_per_connection}")
        if self.input_bits < 1 or self.word_bits < 1:
            raise ValueError("input_bits and word_bits must be >= 1")

    def access_pj(self, level: MemoryLevel, nbytes: float) -> float:
        """Energy of one ``word_bits`` access at ``level`` (``"auto"``: smallest level holding ``nbytes``)."""
        if level == "auto":
            level = next(k for k, cap in MEMORY_CAPACITY_BYTES.items() if nbytes <= cap)  # type: ignore[assignment]
        low, high = HOROWITZ_MEMORY_PJ[level]
        return high if self.dram == "high" else low

    def describe(self) -> dict[str, object]:
        """The assumptions as a flat dict (for the notebook and the metrics JSON)."""
        return {**asdict(self), "source": HOROWITZ_SOURCE,
                "float_mac": "mul + add of the format (add only when one operand is ±1)",
                "int_mac": "int8 mul + int32 add (k <= 8), int32 mul + int32 add otherwise",
                "first_layer": f"{self.input_bits} bit-plane XNOR-popcounts per MAC (Eq. 6)",
                "weights": "read once per inference", "activations": "input read once, output written once"}


# ------------------------------------------------------------------------------- forward trace
@dataclass
class LayerTrace:
    """One leaf module as :func:`trace` saw it: per-image input/output shapes, the precision its input was
    tracked at (``1``: verified ±1; ``"input"``: the model input) and its MACs (compute layers, else 0)."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_prec: Prec | Literal["input"]
    macs: int


def _kind(m: nn.Module) -> str | None:
    """The account's kind of a leaf module, or ``None`` when it has no rule for it."""
    if isinstance(m, nn.Conv2d):
        return "conv"
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, _NORM):
        return "norm"
    if isinstance(m, _ACT):
        return "act"
    if isinstance(m, _POOL + _AVGPOOL):
        return "pool"
    if isinstance(m, _PASSTHROUGH):
        return "passthrough"
    return None


def check_accountable(model: nn.Module) -> None:
    """Raise ``NotImplementedError`` naming the first module :func:`account` has no rule for.

    Every leaf module must be of a known kind (see the module docstring) and no container may hold
    parameters of its own (its forward pass would do arithmetic no hook sees).  The message names the
    module path and type, e.g. ``"lstm1 (LSTM): the energy account has no rule for this module; ..."``.
    """
    for name, m in model.named_modules():
        where = f"{name or '<model>'} ({type(m).__name__})"
        if any(True for _ in m.children()):
            if any(True for _ in m.parameters(recurse=False)):
                raise NotImplementedError(
                    f"{where}: a container with parameters of its own; the energy account prices leaf modules "
                    f"only and has no rule for the arithmetic of this module's forward pass")
        elif _kind(m) is None:
            raise NotImplementedError(
                f"{where}: the energy account has no rule for this module; known leaf kinds: {_KNOWN}. "
                "Add a rule in qnnlib.analysis.energy (MACs, precision, memory) rather than charging it 0 pJ")


def trace(model: nn.Module, input_shape: Sequence[int]) -> list[LayerTrace]:
    """The leaf modules of one forward pass (batch 1, eval mode) in call order (module docstring: precisions)."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    prec: dict[int, Prec | str] = {}  # id(tensor) -> precision of that tensor
    keep: list[torch.Tensor] = []  # keeps traced tensors alive so that their ids stay unique
    recs: list[LayerTrace] = []
    last: list[Prec | str] = ["input"]

    def hook(name: str, m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
            return  # modules with non-tensor inputs/outputs (none in qnnlib.models) are not accounted
        p = prec.get(id(x), last[0])
        if p == 1 and not bool((x.abs() == 1).all()):
            raise RuntimeError(f"{name}: input tracked as binary but not all values are ±1")
        macs = 0
        if isinstance(m, nn.Linear):
            macs = out[0].numel() * m.in_features
        elif isinstance(m, nn.Conv2d):
            macs = out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        recs.append(LayerTrace(name, m, tuple(x.shape[1:]), tuple(out.shape[1:]), p, macs))
        if isinstance(m, QuantAct):
            q: Prec | str = m.bits
        elif isinstance(m, _PRESERVING):
            q = p
        else:
            q = "fp32"
        prec[id(out)] = q
        keep.append(out)
        last[0] = q

    outs: dict[int, torch.Tensor] = {}  # id(module) -> its last output

    def container_hook(m: nn.Module, out: Any) -> None:
        # a container whose output no leaf produced — a concatenation of branches (GoogLeNet's inception modules),
        # a sum — is as precise as its children's outputs when they agree, else float
        if isinstance(out, torch.Tensor) and id(out) not in prec:
            ps = {prec.get(id(outs[id(c)])) for c in m.children() if id(c) in outs}
            q = ps.pop() if len(ps) == 1 and None not in ps else "fp32"
            prec[id(out)] = q
            keep.append(out)
            last[0] = q

    def any_hook(m: nn.Module, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            outs[id(m)] = out
        if any(True for _ in m.children()):
            container_hook(m, out)

    handles = [m.register_forward_hook(lambda mod, a, o, n=n: hook(n, mod, a, o)) for n, m in leaves]
    handles += [m.register_forward_hook(lambda mod, a, o: any_hook(mod, o)) for _, m in model.named_modules()]
    g = torch.Generator().manual_seed(0)
    x = torch.rand((1, *input_shape), generator=g) * 2 - 1
    prec[id(x)] = "input"
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return recs


# ------------------------------------------------------------------------------------ pricing
def _bits(p: Prec) -> int:
    return {"fp32": 32, "fp16": 16}.get(p, p) if isinstance(p, str) else int(p)  # type: ignore[return-value]


def _is_float(p: Prec) -> bool:
    return isinstance(p, str)


def _precisions(r: LayerTrace, scheme: str, asm: EnergyAssumptions) -> tuple[Prec, Prec]:
    """(weight precision, input precision) of compute layer ``r`` under ``scheme``."""
    first = r.in_prec == "input"
    if scheme in ("fp32", "fp16"):
        return scheme, scheme
    if scheme == "int8":
        return 8, 8
    if scheme == "binary":
        return 1, (asm.input_bits if first else 1)
    w: Prec = r.module.weight_bits if isinstance(r.module, LatentWeightLayer) else "fp32"
    if first:
        a: Prec = asm.input_bits if not _is_float(w) else "fp32"
    else:
        a = r.in_prec  # type: ignore[assignment]
    return w, a


def _mac_split(macs: int, w: Prec, a: Prec) -> tuple[int, int, int, float, str]:
    """(float MACs, k-bit MACs, XNOR-popcounts, pJ per op, op format) for ``macs`` MACs."""
    if _is_float(w) or _is_float(a):
        fmt = "fp16" if "fp32" not in (w, a) else "fp32"
        pj = HOROWITZ_ARITH_PJ[(fmt, "add")] + (0.0 if 1 in (w, a) else HOROWITZ_ARITH_PJ[(fmt, "mul")])
        return macs, 0, 0, pj, fmt
    wb, ab = int(w), int(a)
    if wb == 1 or ab == 1:
        return 0, 0, macs * wb * ab, math.nan, "xnor"
    mul = "int8" if max(wb, ab) <= 8 else "int32"
    return 0, macs, 0, HOROWITZ_ARITH_PJ[(mul, "mul")] + HOROWITZ_ARITH_PJ[("int32", "add")], f"int{max(wb, ab)}"


def _words(bits: float, word_bits: int) -> int:
    return math.ceil(bits / word_bits)


def account(
    model: nn.Module, input_shape: Sequence[int], assumptions: EnergyAssumptions | None = None
) -> pd.DataFrame:
    """Per-layer, per-execution account of ``model`` for one input of shape ``input_shape`` (no batch).

    Long form: one row per (leaf module, scheme in :data:`SCHEMES`), modules in forward order.
    Columns: ``layer, type, kind, in_shape, out_shape, params`` (trainable), ``weight_params,
    aux_params`` (bias / folded BN values stored at inference), ``scheme, weight_bits, input_bits``
    (32/16 = float), ``macs, float_macs, kbit_macs, xnor_popcounts, weight_bytes, aux_bytes,
    act_bytes, weight_accesses, act_accesses`` (64-bit words), ``compute_pj, weight_mem_pj,
    act_mem_pj, energy_pj``; ``kind`` is one of ``conv, linear, norm, act, pool, passthrough``.
    ``df.attrs["assumptions"]`` holds :meth:`EnergyAssumptions.describe`.  Raises ``NotImplementedError``
    for a module the account has no rule for (:func:`check_accountable`).
    """
    asm = assumptions or EnergyAssumptions()
    check_accountable(model)
    recs = trace(model, input_shape)
    compute_idx = [i for i, r in enumerate(recs) if isinstance(r.module, _COMPUTE)]
    rows: list[dict[str, object]] = []
    for scheme in SCHEMES:
        prev_int = False  # did the last compute layer run integer/XNOR MACs (→ BN folds to a threshold)?
        for i, r in enumerate(recs):
            m, kind = r.module, _kind(r.module)
            row: dict[str, object] = {
                "layer": r.name, "type": type(m).__name__, "kind": kind, "in_shape": r.in_shape,
                "out_shape": r.out_shape, "params": sum(p.numel() for p in m.parameters()), "scheme": scheme,
                "weight_params": 0, "aux_params": 0, "weight_bits": None, "input_bits": None, "macs": r.macs,
                "float_macs": 0, "kbit_macs": 0, "xnor_popcounts": 0, "weight_bytes": 0.0, "aux_bytes": 0.0,
                "act_bytes": 0.0, "weight_accesses": 0, "act_accesses": 0, "compute_pj": 0.0,
                "weight_mem_pj": 0.0, "act_mem_pj": 0.0,
            }
            aux_bits = 16 if scheme == "fp16" else 32
            if isinstance(m, _COMPUTE):
                w, a = _precisions(r, scheme, asm)
                fm, km, xn, pj, _ = _mac_split(r.macs, w, a)
                compute = xn * asm.xnor_pj_per_connection if xn else (fm + km) * pj
                prev_int = not (_is_float(w) or _is_float(a))
                # output: written at the precision/size the next compute layer reads it
                nxt = next((j for j in compute_idx if j > i), None)
                if nxt is None:
                    out_bits = math.prod(r.out_shape) * aux_bits
                else:
                    _, a_next = _precisions(recs[nxt], scheme, asm)
                    out_bits = math.prod(recs[nxt].in_shape) * _bits(a_next)
                in_bits = math.prod(r.in_shape) * _bits(a)
                wp = m.weight.numel()
                aux = m.bias.numel() if m.bias is not None else 0
                row.update(weight_params=wp, aux_params=aux, weight_bits=_bits(w), input_bits=_bits(a),
                           float_macs=fm, kbit_macs=km, xnor_popcounts=xn, compute_pj=compute,
                           act_bytes=(in_bits + out_bits) / 8,
                           act_accesses=_words(in_bits, asm.word_bits) + _words(out_bits, asm.word_bits))
                row["act_mem_pj"] = (_words(in_bits, asm.word_bits) * asm.access_pj(asm.act_memory, in_bits / 8)
                                     + _words(out_bits, asm.word_bits) * asm.access_pj(asm.act_memory, out_bits / 8))
                w_bits_total = wp * _bits(w)
            elif kind == "norm":
                aux = 2 * int(getattr(m, "num_features", 0))
                elems = math.prod(r.out_shape)
                float_norm = scheme in ("fp32", "fp16") or (scheme == "native" and not prev_int)
                fmt = "fp16" if scheme == "fp16" else "fp32"
                per = (HOROWITZ_ARITH_PJ[(fmt, "mul")] + HOROWITZ_ARITH_PJ[(fmt, "add")] if float_norm
                       else HOROWITZ_ARITH_PJ[("int32", "add")])
                row.update(aux_params=aux, compute_pj=elems * per)
                w_bits_total = 0
            else:
                w_bits_total, aux = 0, sum(p.numel() for p in m.parameters())
                row["aux_params"] = aux
            aux_total = row["aux_params"] * aux_bits  # type: ignore[operator]
            row["weight_bytes"], row["aux_bytes"] = w_bits_total / 8, aux_total / 8
            ww, wa = _words(w_bits_total, asm.word_bits), _words(aux_total, asm.word_bits)
            row["weight_accesses"] = ww + wa
            row["weight_mem_pj"] = (ww * asm.access_pj(asm.weight_memory, w_bits_total / 8)
                                    + wa * asm.access_pj(asm.weight_memory, aux_total / 8))
            rows.append(row)
    df = pd.DataFrame(rows)
    df["memory_pj"] = df["weight_mem_pj"] + df["act_mem_pj"]
    df["energy_pj"] = df["compute_pj"] + df["memory_pj"]
    df.attrs["assumptions"] = asm.describe()
    df.attrs["input_shape"] = tuple(input_shape)
    return df


def layer_table(acct: pd.DataFrame, scheme: str = "native", compute_only: bool = False) -> pd.DataFrame:
    """The rows of one scheme (optionally only conv/linear layers), indexed like the forward order."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    df = acct[acct["scheme"] == scheme]
    if compute_only:
        df = df[df["kind"].isin(["conv", "linear"])]
    return df.reset_index(drop=True)


_SUMS = ["params", "weight_params", "aux_params", "macs", "float_macs", "kbit_macs", "xnor_popcounts",
         "weight_bytes", "aux_bytes", "act_bytes", "weight_accesses", "act_accesses", "compute_pj",
         "weight_mem_pj", "act_mem_pj", "memory_pj", "energy_pj"]


def scheme_totals(acct: pd.DataFrame) -> pd.DataFrame:
    """Totals per scheme, with ratios to ``fp32``: weight memory, all accesses and energy.

    ``weight_compression`` = fp32 weight bytes / this scheme's weight bytes (32 for an all-binary
    network: the paper's "32× smaller memory"); ``memory_compression`` includes biases/BN values;
    ``access_reduction`` = fp32 64-bit accesses / this scheme's (the "32× fewer memory accesses");
    ``energy_reduction`` = fp32 energy / this scheme's.
    """
    t = acct.groupby("scheme", sort=False)[_SUMS].sum()
    t["memory_bytes"] = t["weight_bytes"] + t["aux_bytes"]
    t["accesses"] = t["weight_accesses"] + t["act_accesses"]
    ref = t.loc["fp32"]
    t["weight_compression"] = ref["weight_bytes"] / t["weight_bytes"]
    t["memory_compression"] = ref["memory_bytes"] / t["memory_bytes"]
    t["weight_access_reduction"] = ref["weight_accesses"] / t["weight_accesses"]
    t["access_reduction"] = ref["accesses"] / t["accesses"]
    t["energy_reduction"] = ref["energy_pj"] / t["energy_pj"]
    t["compute_energy_reduction"] = ref["compute_pj"] / t["compute_pj"]
    return t


def _fmt_int(v: float) -> str:
    return f"{int(v):,}"


def summary(
    model: nn.Module,
    input_shape: Sequence[int],
    assumptions: EnergyAssumptions | None = None,
    print_fn: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Print a larq-style summary of ``model`` (native precision) and return its per-layer DataFrame.

    The printed table has one line per leaf layer (output shape, parameters, weight/input bits,
    memory, MAC split) and totals: parameters, memory at native precision vs float32 (the
    compression ratio), MACs by kind, and the energy of each scheme with its ratio to float32.
    The returned DataFrame is :func:`layer_table` (``native``) plus one ``energy_pj_<scheme>`` column
    per scheme; ``attrs["totals"]`` is :func:`scheme_totals` as a dict of dicts.
    """
    acct = account(model, input_shape, assumptions)
    native = layer_table(acct, "native")
    for s in SCHEMES:
        native[f"energy_pj_{s}"] = layer_table(acct, s)["energy_pj"].to_numpy()
    totals = scheme_totals(acct)
    native.attrs = {**acct.attrs, "totals": totals.to_dict(orient="index")}
    if print_fn is not None:
        show = pd.DataFrame({
            "Layer (type)": native["layer"] + " (" + native["type"] + ")",
            "Output shape": native["out_shape"].map(lambda s: "x".join(map(str, s))),
            "Params": native["params"].map(_fmt_int),
            "W bits": native["weight_bits"].map(lambda v: "" if v is None or pd.isna(v) else str(int(v))),
            "In bits": native["input_bits"].map(lambda v: "" if v is None or pd.isna(v) else str(int(v))),
            "Mem (KiB)": ((native["weight_bytes"] + native["aux_bytes"]) / 1024).map(lambda v: f"{v:,.2f}"),
            "Float MACs": native["float_macs"].map(_fmt_int),
            "k-bit MACs": native["kbit_macs"].map(_fmt_int),
            "XNOR-popc": native["xnor_popcounts"].map(_fmt_int),
        })
        n, f = totals.loc["native"], totals.loc["fp32"]
        width = len(show.to_string(index=False).splitlines()[0])
        lines = ["=" * width, show.to_string(index=False), "=" * width,
                 f"Total params: {int(n['params']):,}",
                 f"Memory (weights + bias/BN): {n['memory_bytes'] / 1024**2:,.3f} MiB native vs "
                 f"{f['memory_bytes'] / 1024**2:,.3f} MiB float32 -> compression {n['memory_compression']:.2f}x "
                 f"(weights only {n['weight_compression']:.2f}x)",
                 f"MACs: {int(n['macs']):,}; float MACs {int(n['float_macs']):,}, k-bit MACs {int(n['kbit_macs']):,}, "
                 f"XNOR-popcounts {int(n['xnor_popcounts']):,} (a k-bit input to a binary layer: k bit-planes)",
                 f"64-bit memory accesses: {int(n['accesses']):,} native vs {int(f['accesses']):,} float32 "
                 f"({n['access_reduction']:.2f}x fewer)",
                 "Energy per inference (µJ): " + ", ".join(
                     f"{s} {totals.loc[s, 'energy_pj'] / 1e6:,.3f} ({totals.loc[s, 'energy_reduction']:.1f}x)"
                     for s in SCHEMES),
                 "=" * width]
        print_fn("\n".join(lines))
    return native


def comparison_rows(totals: Mapping[str, pd.DataFrame],
                    disk: Mapping[str, Mapping[str, float]] | None = None) -> list[dict[str, object]]:
    """Paper-vs-ours rows (``metrics["rows"]``, see :mod:`qnnlib.experiments.results`) for BNN ``binary`` vs ``fp32``.

    ``totals`` maps a model label to its :func:`scheme_totals`; ``disk`` a label to :func:`disk_sizes`.
    Rows: weight memory reduction and 64-bit access reduction (paper: 32× each, NIPS §3), energy
    reduction (paper: "more than 32 times"; no single number, so no ``paper_key``) and the on-disk
    ratio of the packed checkpoint.  The dataset is ``"-"``: these are properties of the architecture.
    """
    size_key, access_key = "memory:BNN vs 32-bit DNN:memory size reduction x", \
        "memory:BNN vs 32-bit DNN:memory access reduction x"
    rows: list[dict[str, object]] = []
    for label, t in totals.items():
        b = t.loc["binary"]
        rows += [
            {"row": f"{label}: binary weights vs float32", "metric": "memory size reduction x",
             "value": float(b["weight_compression"]), "dataset": "-", "paper_key": size_key,
             "note": f"weights only; with float32 biases/BN {b['memory_compression']:.2f}x"},
            {"row": f"{label}: 64-bit memory accesses", "metric": "memory access reduction x",
             "value": float(b["access_reduction"]), "dataset": "-", "paper_key": access_key,
             "note": f"weights + activations; weights alone {b['weight_access_reduction']:.2f}x"},
            {"row": f"{label}: energy per inference (Horowitz 45 nm)", "metric": "energy reduction x",
             "value": float(b["energy_reduction"]), "dataset": "-",
             "paper_key": "energy:BNN vs 32-bit DNN:energy reduction x",
             "note": f"paper: 'more than 32 times' (NIPS §3), a lower bound; compute alone "
                     f"{b['compute_energy_reduction']:.1f}x; assumptions in energy.EnergyAssumptions"},
        ]
    for label, d in (disk or {}).items():
        rows.append({"row": f"{label}: packed checkpoint on disk", "metric": "memory size reduction x",
                     "value": float(d["disk_ratio"]), "dataset": "-", "paper_key": size_key,
                     "note": f"{int(d['float_state_dict_bytes']):,} B float state_dict vs "
                             f"{int(d['packed_bytes']):,} B packed (binary weights alone "
                             f"{d['binary_weight_ratio']:.2f}x)"})
    return rows
