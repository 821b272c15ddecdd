"""Quantized recurrent layers: a ReLU RNN and an LSTM with k-bit weights and k-bit activations.

:class:`QuantRNN` is the paper's vanilla RNN, ``h_t = ReLU(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)``;
:class:`QuantLSTM` the standard LSTM with torch's gate order ``i, f, g, o``::

    i, f, o = σ(·),  g = tanh(·)          (· = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh, one slice per gate)
    c_t = f ⊙ c_{t−1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)

Both take ``(T, B, F)`` inputs (``(B, T, F)`` with ``batch_first=True``, ``(T, F)`` unbatched), have
``num_layers ≥ 1`` and return ``(output, state)`` with torch's shapes.  Their parameters have the names and
shapes of ``nn.RNN``/``nn.LSTM`` (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, …), so a
``state_dict`` loads either way.  With ``weight_bits`` and ``act_bits`` both float (``None`` or 32) the modules
compute ``nn.RNN(nonlinearity="relu")`` / ``nn.LSTM`` (equal up to float rounding: the two biases are summed
before the input matmul, and the LSTM's gate rows are reordered).

What is quantized (``k_w = weight_bits``, ``k_a = act_bits``; every quantizer is a
:mod:`qnnlib.quantize` straight-through estimator, activations with the Eq. 4 cancellation
``g · 1{min_v ≤ x ≤ max_v}``).  The rule: every operand of a multiplication is a k-bit number, as a
fixed-point implementation needs; sums stay in the (wide) accumulator.

=========================  ==========  =====  ===============  ==============================================
tensor                     quantized?  bits   range            why
=========================  ==========  =====  ===============  ==============================================
latent ``W_ih``, ``W_hh``  no          32     [−r, r]          what the optimizer updates; clipped to
                                                               [−r, r] after each step
                                                               (:func:`qnnlib.optim.clip_latent_weights`;
                                                               ``r = weight_range``, default 1)
``Q(W_ih)``, ``Q(W_hh)``   yes         k_w    [−r, r]          the matmul operands; ``r·sign`` for k_w = 1
                                                               (as ``BinaryLinear``), k-bit linear otherwise
                                                               (``r · quantize_weight(W/r)``,
                                                               :func:`qnnlib.layers.quantize_weight`);
                                                               quantized once per forward, not per step
biases ``b_ih``, ``b_hh``  no          32     —                added once to the accumulator (accumulator
                                                               precision in hardware), as in the
                                                               feed-forward layers
input ``x_t`` (layer 1)    no          32     —                the real data (e.g. an embedding row), as the
                                                               first layer of the feed-forward nets; quantize
                                                               it before the call if wanted.  Layers ≥ 2 get
                                                               the previous layer's quantized ``h``
pre-activations            no          32     —                accumulator outputs: an exact integer/fixed
(``W x + W h + b``)                                            sum of k-bit products in hardware; the
                                                               nonlinearity reads the accumulator
LSTM ``i, f, o``           yes         k_a    [0, 1 − 2^−k]    σ outputs, operands of ``f⊙c``, ``i⊙g``,
                                                               ``o⊙tanh(c)``: unsigned k-bit fractions
                                                               ``j/2^k``, ``j = 0 … 2^k − 1`` (the fixed-point
                                                               format UQ0.k). The top level is below 1 on
                                                               purpose: a forget gate rounded to exactly 1
                                                               would stop ``c`` from ever decaying, and over a
                                                               long stream (truncated BPTT carries the state)
                                                               ``c`` grows until ``tanh(c)`` saturates.
                                                               Computed as ``(Q(tanh(a/2)) + 1)/2`` with ``Q``
                                                               on ``[−1, 1 − 2^(1−k)]`` (= ``Q(σ(a))``)
LSTM ``g``                 yes         k_a    [−1, 1]          tanh output, operand of ``i⊙g``
LSTM ``c_t``               no          32     unbounded        a running sum ``f⊙c + i⊙g`` (|c_t| ≤ |c_0| + t):
                                                               kept in a wide register like an accumulator;
                                                               quantizing it would compound rounding errors
                                                               over time.  Only its squashed copy is used as
                                                               a multiplier operand:
LSTM ``tanh(c_t)``         yes         k_a    [−1, 1]          operand of ``o⊙tanh(c)``
LSTM ``h_t``, ``h_0``      yes         k_a    [−1, 1]          the product ``o⊙tanh(c)`` is re-quantized: h
                                                               feeds ``W_hh`` (next step), ``W_ih`` of the next
                                                               layer and the output — the tensor hardware
                                                               multiplies by the weights
RNN ``h_t``, ``h_0``       yes         k_a    [0, relu_max]    ReLU output, clipped to ``[0, relu_max]`` (hard
                                                               ReLU, like ReLU6/PACT with a fixed bound,
                                                               default 1 to match the [−1, 1] weight grid):
                                                               a k-bit unsigned fixed-point number needs a
                                                               finite range, and the bound keeps the ReLU
                                                               recurrence from exploding.  Gradient
                                                               ``1{0 ≤ pre ≤ relu_max}``
=========================  ==========  =====  ===============  ==============================================

A given initial ``h_0`` is quantized like every ``h_t`` (idempotent on a carried quantized state, so
truncated BPTT with a detached state gives the same numbers); ``c_0`` is used as given.  Where ``act_bits``
is float, no activation is quantized or clipped (the RNN is a plain ReLU RNN); where ``weight_bits`` is
float, the weights are used as they are.  In the LSTM every activation quantizer's input lies inside its
range (σ, tanh and ``o⊙tanh(c)`` are bounded), so the cancellation never fires there (it is skipped: same
gradient, less work) — except for a given ``h_0`` outside [−1, 1], whose gradient is zeroed there; in the RNN
it zeroes the gradient where the pre-activation (or a given ``h_0``) is outside ``[0, relu_max]``.

Latent weights: each layer's ``weight_ih_l{k}`` and ``weight_hh_l{k}`` are listed by :meth:`latent_weights`
(the :class:`qnnlib.layers.LatentWeightLayer` protocol) with per-gate Glorot fans ``(fan_in, hidden_size)``
(the LSTM's four gates are four ``H``-output layers stacked), so :func:`qnnlib.optim.glorot_param_groups`
scales and :func:`qnnlib.optim.clip_latent_weights` clips each; with float weights there are none.
Initialisation is torch's, ``U(−1/√H, 1/√H)`` for every parameter: it keeps the pre-activations of order 1
(no batch norm here) and is what a float baseline uses. ``weight_range`` ``r`` sets the weight grid: on the
default [−1, 1] a 4-bit grid's step (2/15) is larger than these weights, so nearly every weight would sit on
the two levels ±1/15; a range of a few ``1/√H`` (a power of two, so the rescaling is a shift) spends the levels
where the weights are (:func:`qnnlib.models.language.ptb_lm` picks it).

Speed: the input projection ``W_ih x_t + b`` of all time steps is one matmul before the loop over time; the
loop does one ``addmm`` and the element-wise gate work per step; the LSTM's rows are reordered once per
forward to ``i, f, o, g`` (and, with quantized activations, the ``i, f, o`` rows halved — exact, a power of
two — for ``σ(a) = (1 + tanh(a/2))/2``), so one tanh and one quantizer call serve the four gates.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from qnnlib.checks import check_int
from qnnlib.layers import LatentWeight, LatentWeightLayer, quantize_weight
from qnnlib.quantize import MAX_BITS, check_bits, check_float_tensor, linear_quant_ste

__all__ = ["FLOAT_BITS", "QuantLSTM", "QuantRNN", "QuantRNNBase", "check_float_or_bits", "check_weight_range"]

FLOAT_BITS = 32
"""A bit width meaning float (no quantization), as ``None`` does; the paper's "32 bits" rows."""


def check_float_or_bits(bits: Any, name: str) -> int | None:
    """``None`` for float (``None`` or 32), else ``bits`` as an int in [1, :data:`~qnnlib.quantize.MAX_BITS`]."""
    if bits is None or (isinstance(bits, numbers.Integral) and not isinstance(bits, bool) and bits == FLOAT_BITS):
        return None
    try:
        return check_bits(bits, name, maximum=MAX_BITS)
    except ValueError as e:
        raise ValueError(f"{e}; or None / {FLOAT_BITS} for float") from None


def check_weight_range(r: Any) -> float:
    """``r`` as a float, for a weight grid on ``[−r, r]``: finite and > 0 (a power of two keeps the rescaling a
    shift in fixed point)."""
    if isinstance(r, bool) or not isinstance(r, numbers.Real) or not (math.isfinite(r) and r > 0):
        raise ValueError(f"weight_range must be a finite number > 0, got {r!r}")
    return float(r)


class QuantRNNBase(LatentWeightLayer, nn.Module):
    """Common part of :class:`QuantRNN` and :class:`QuantLSTM` (parameters, checks, the layer loop).

    Subclasses set ``gates`` (rows of ``W`` per hidden unit: 1 or 4) and implement :meth:`_layer`.
    """

    gates: int = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        *,
        weight_bits: int | None = None,
        act_bits: int | None = None,
        weight_range: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self.weight_range = check_weight_range(weight_range)
        self.clip_value = self.weight_range  # latent weights are clipped to [−r, r] (LatentWeightLayer protocol)
        self.input_size = check_int(input_size, "input_size")
        self.hidden_size = check_int(hidden_size, "hidden_size")
        self.num_layers = check_int(num_layers, "num_layers")
        for name, v in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool, got {v!r} ({type(v).__name__})")
        self.bias, self.batch_first = bias, batch_first
        self.weight_bits = check_float_or_bits(weight_bits, "weight_bits")  # type: ignore[assignment]
        self.act_bits = check_float_or_bits(act_bits, "act_bits")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        gh = self.gates * self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{k}", nn.Parameter(torch.empty(gh, n_in, **kw)))
            setattr(self, f"weight_hh_l{k}", nn.Parameter(torch.empty(gh, self.hidden_size, **kw)))
            if bias:
                setattr(self, f"bias_ih_l{k}", nn.Parameter(torch.empty(gh, **kw)))
                setattr(self, f"bias_hh_l{k}", nn.Parameter(torch.empty(gh, **kw)))
            else:
                self.register_parameter(f"bias_ih_l{k}", None)
                self.register_parameter(f"bias_hh_l{k}", None)
        self.reset_parameters()

    # ------------------------------------------------------------------ LatentWeightLayer protocol
    def latent_weights(self) -> Iterator[LatentWeight]:
        """``weight_ih_l{k}`` (fans ``(input, H)``) and ``weight_hh_l{k}`` (``(H, H)``) of every layer ``k``.

        Fans are per gate (``fan_out = hidden_size``).  Nothing when ``weight_bits`` is float: float weights
        are neither Glorot-scaled nor clipped (as a float ``nn.Linear`` in the models).
        """
        if self.weight_bits is None:
            return
        h = self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else h
            yield LatentWeight(f"weight_ih_l{k}", getattr(self, f"weight_ih_l{k}"), n_in, h)
            yield LatentWeight(f"weight_hh_l{k}", getattr(self, f"weight_hh_l{k}"), h, h)

    def reset_parameters(self) -> None:
        """torch's RNN initialisation: every parameter ``U(−1/√H, 1/√H)`` (module docstring)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """``Q_r(w) = r · Q(w / r)`` at ``weight_bits`` on ``[−r, r]`` (``r = weight_range``; straight-through),
        or ``w`` itself when the weights are float."""
        return w if self.weight_bits is None else quantize_weight(w, self.weight_bits, self.weight_range)

    def quantized_weight(self) -> torch.Tensor:
        raise AttributeError(f"{type(self).__name__} has several weights: use quantized_weights()")

    def quantized_weights(self) -> dict[str, torch.Tensor]:
        """``{"weight_ih_l0": Q(weight_ih_l0), "weight_hh_l0": …}``: the weights the forward pass uses."""
        return {f"weight_{s}_l{k}": self.quantize(getattr(self, f"weight_{s}_l{k}"))
                for k in range(self.num_layers) for s in ("ih", "hh")}

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        s += f", weight_bits={self.weight_bits or FLOAT_BITS}, act_bits={self.act_bits or FLOAT_BITS}"
        return s + (f", weight_range={self.weight_range:g}" if self.weight_range != 1.0 else "")

    # ------------------------------------------------------------------------------------ forward
    def _check_input(self, x: Any) -> tuple[torch.Tensor, bool]:
        check_float_tensor(x, "input")
        if x.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: input must be 3-D ({'(B, T, F)' if self.batch_first else '(T, B, F)'}"
                             f") or 2-D unbatched (T, F), got shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[-1]} features (last dim of shape "
                             f"{tuple(x.shape)}), expected input_size={self.input_size}")
        batched = x.dim() == 3
        x = x.transpose(0, 1) if batched and self.batch_first else x
        x = x if batched else x.unsqueeze(1)
        if x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: the sequence is empty (T = 0), shape {tuple(x.shape)}")
        return x, batched

    def _check_state(self, s: Any, name: str, batch: int, batched: bool, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor(s, name)
        want = (self.num_layers, batch, self.hidden_size) if batched else (self.num_layers, self.hidden_size)
        if tuple(s.shape) != want:
            raise ValueError(f"{type(self).__name__}: {name} must have shape (num_layers, "
                             f"{'B, ' if batched else ''}hidden_size) = {want}, got {tuple(s.shape)}")
        if s.dtype != x.dtype:
            raise ValueError(f"{type(self).__name__}: {name} has dtype {s.dtype}, the input {x.dtype}")
        return s if batched else s.unsqueeze(1)

    def _qact(self, x: torch.Tensor, lo: float, hi: float, cancel: bool = True) -> torch.Tensor:
        """k-bit activation quantizer on ``[lo, hi]`` with the Eq. 4 cancellation (identity when float).

        ``cancel=False`` where the input is bounded to ``[lo, hi]`` by construction (σ, tanh, ``o⊙tanh(c)``):
        the mask would be all ones, so the same gradient without computing it.
        """
        return x if self.act_bits is None else linear_quant_ste(x, self.act_bits, lo, hi, cancel=cancel)

    def _weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Layer ``k``'s ``Q(W_ih)``, ``Q(W_hh)`` and ``b_ih + b_hh`` (``None`` without bias)."""
        w_ih = self.quantize(getattr(self, f"weight_ih_l{k}"))
        w_hh = self.quantize(getattr(self, f"weight_hh_l{k}"))
        b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
        return w_ih, w_hh, (None if b_ih is None else b_ih + b_hh)

    def _project(self, x: torch.Tensor, w_ih: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """``W_ih x_t + b`` for every time step in one matmul: ``(T, B, G·H)``."""
        t, n = x.shape[0], x.shape[1]
        flat = x.reshape(t * n, x.shape[2])
        out = flat @ w_ih.t() if b is None else torch.addmm(b, flat, w_ih.t())
        return out.view(t, n, -1)


class QuantRNN(QuantRNNBase):
    """Elman RNN with ReLU, ``h_t = ReLU(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)``, k-bit weights and activations.

    Arguments as ``nn.RNN(nonlinearity="relu")`` (no dropout, not bidirectional), plus ``weight_bits`` and
    ``act_bits`` (``None`` or 32: float) and ``relu_max``: with quantized activations ``h`` is
    ``Q(clip(pre, 0, relu_max))`` on ``2^act_bits`` levels of ``[0, relu_max]`` (module docstring).
    ``forward(x, h_0=None) -> (output, h_n)`` with ``output`` ``(T, B, H)`` (``(B, T, H)`` with ``batch_first``)
    and ``h_n`` ``(num_layers, B, H)``.
    """

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        *,
        weight_bits: int | None = None,
        act_bits: int | None = None,
        relu_max: float = 1.0,
        weight_range: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(relu_max, bool) or not isinstance(relu_max, (int, float)) or not (
                math.isfinite(relu_max) and relu_max > 0):
            raise ValueError(f"relu_max must be a finite number > 0, got {relu_max!r}")
        self.relu_max = float(relu_max)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, weight_bits=weight_bits,
                         act_bits=act_bits, weight_range=weight_range, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", relu_max={self.relu_max:g}" if self.act_bits is not None else "")

    def _act(self, pre: torch.Tensor) -> torch.Tensor:
        if self.act_bits is None:
            return torch.relu(pre)
        return linear_quant_ste(pre, self.act_bits, 0.0, self.relu_max, cancel=True)  # = Q(clip(pre, 0, max))

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, batched = self._check_input(input)
        batch = x.shape[1]
        if hx is not None:
            hx = self._check_state(hx, "h_0", batch, batched, x)
            hx = self._qact(hx, 0.0, self.relu_max)  # the first recurrent matmul's operand is k-bit too
        h_n = []
        for k in range(self.num_layers):
            w_ih, w_hh, b = self._weights(k)
            xs = self._project(x, w_ih, b).unbind(0)  # unbind: one gradient buffer, not one per step
            h = x.new_zeros(batch, self.hidden_size) if hx is None else hx[k]
            w_t = w_hh.t()
            outs = []
            for xt in xs:
                h = self._act(torch.addmm(xt, h, w_t))
                outs.append(h)
            x = torch.stack(outs)
            h_n.append(h)
        out, hn = x, torch.stack(h_n)
        if not batched:
            return out.squeeze(1), hn.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), hn


class QuantLSTM(QuantRNNBase):
    """LSTM (torch's gate order ``i, f, g, o``) with k-bit weights and activations (module docstring table).

    Arguments as ``nn.LSTM`` (no dropout, not bidirectional, no ``proj_size``), plus ``weight_bits`` and
    ``act_bits`` (``None`` or 32: float).  ``forward(x, (h_0, c_0)=None) -> (output, (h_n, c_n))`` with torch's
    shapes.  ``c`` stays float; ``i, f, o`` are k-bit unsigned fractions ``j/2^k`` (``j < 2^k``), ``g``,
    ``tanh(c)`` and ``h`` k-bit on [−1, 1].
    """

    gates = 4

    def _reorder(self, w: torch.Tensor) -> torch.Tensor:
        """Rows ``i, f, g, o`` → ``i, f, o, g``: the sigmoid gates contiguous (one quantizer call)."""
        h = self.hidden_size
        return torch.cat((w[: 2 * h], w[3 * h:], w[2 * h: 3 * h]))

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        x, batched = self._check_input(input)
        batch, hsz = x.shape[1], self.hidden_size
        if hx is not None:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise ValueError(f"QuantLSTM: the state must be a pair (h_0, c_0), got {type(hx).__name__}")
            h0 = self._qact(self._check_state(hx[0], "h_0", batch, batched, x), -1.0, 1.0)
            c0 = self._check_state(hx[1], "c_0", batch, batched, x)
        h_n, c_n = [], []
        q = self.act_bits is not None
        if q:
            # σ(a) = (1 + tanh(a/2))/2: one tanh and one [−1, 1] quantizer for all four gates, with the
            # halving folded (exactly: a power of two) into the i, f, o rows of the weights and bias.
            scale = torch.ones(4 * hsz, 1, dtype=x.dtype, device=x.device)
            scale[: 3 * hsz] = 0.5
            gate_top = 1.0 - 2.0 ** (1 - self.act_bits)  # type: ignore[operator]
        for k in range(self.num_layers):
            w_ih, w_hh, b = self._weights(k)
            w_ih, w_hh = self._reorder(w_ih), self._reorder(w_hh)
            b = None if b is None else self._reorder(b)
            if q:
                w_ih, w_hh, b = w_ih * scale, w_hh * scale, (None if b is None else b * scale[:, 0])
            xs = self._project(x, w_ih, b).unbind(0)
            if hx is None:
                h = c = x.new_zeros(batch, hsz)
            else:
                h, c = h0[k], c0[k]
            w_t = w_hh.t()
            outs = []
            for xt in xs:
                gates = torch.addmm(xt, h, w_t)
                if q:
                    z = torch.tanh(gates)  # tanh(a/2) for i, f, o; tanh(a) for g
                    # Q(σ(a)) on the unsigned fixed-point grid j/2^k, j < 2^k (z on [−1, 1 − 2^(1−k)])
                    ifo = self._qact(z[:, : 3 * hsz], -1.0, gate_top, False).add(1.0).mul_(0.5)
                    g = self._qact(z[:, 3 * hsz:], -1.0, 1.0, False)
                    i, f, o = ifo.chunk(3, 1)
                    c = torch.addcmul(f * c, i, g)
                    h = self._qact(o * self._qact(torch.tanh(c), -1.0, 1.0, False), -1.0, 1.0, False)
                else:
                    ifo = torch.sigmoid(gates[:, : 3 * hsz])
                    g = torch.tanh(gates[:, 3 * hsz:])
                    i, f, o = ifo.chunk(3, 1)
                    c = torch.addcmul(f * c, i, g)
                    h = o * torch.tanh(c)
                outs.append(h)
            x = torch.stack(outs)
            h_n.append(h)
            c_n.append(c)
        out, hn, cn = x, torch.stack(h_n), torch.stack(c_n)
        if not batched:
            return out.squeeze(1), (hn.squeeze(1), cn.squeeze(1))
        return (out.transpose(0, 1) if self.batch_first else out), (hn, cn)
