"""The paper's recurrent language models (QNN, "Language Models"): embedding, quantized RNN or LSTM, softmax.

:func:`ptb_lm` builds :class:`LanguageModel`::

    e_t = Q_e(E[w_t])                         embedding row, k-bit on [−1, 1] (``embed_bits``)
    h_t = QuantRNN / QuantLSTM(e_t, h_{t−1})  k-bit weights and activations (qnnlib.recurrent)
    y_t = Q_s(V) h_t + b                      output layer, k-bit weights on [−r, r] (``softmax_bits``); logits
                                              stay in the accumulator, the softmax and cross-entropy are float

The paper's setups: a vanilla RNN of 2048 ReLU units and an LSTM of 300 units, one layer, on word-level Penn
Treebank, weights and activations quantized linearly. It does not say whether the embedding and the output layer
were quantized: here both follow the recurrent layers' bits by default (``embed_bits`` / ``softmax_bits`` =
``None``), so that a "4-bit" model multiplies only 4-bit numbers anywhere — the stricter reading; either can be
set to 32 (float). What each quantized tensor is and why: :mod:`qnnlib.recurrent`.

Weight grids: the recurrent and output weights are quantized on ``[−r, r]`` with ``r`` a power of two a few
times torch's initial bound ``1/√H`` (:func:`default_weight_range`), not on [−1, 1]: without batch norm to
rescale the accumulators, the grid has to sit where a working float network's weights are, and a 4-bit grid on
[−1, 1] would put nearly every weight on its two smallest levels (±1/15). Learning rates are not Glorot-scaled
(that rule is for latent weights drawn from U(−1, 1)).

Truncated back-propagation through time (Zaremba et al.): the model is *stateful*. Consecutive calls continue
the recurrent state of the previous call (detached, so gradients stop at the batch boundary); the state is
reset whenever the mode changes (``train()`` / ``eval()``: each epoch and each evaluation starts from zeros),
by :meth:`LanguageModel.reset_state`, and when the batch size changes. Feed the batches of one stream in order
(:func:`qnnlib.data.ptb.bptt_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.checks import check_int
from qnnlib.layers import LatentWeight, LatentWeightLayer, QuantAct, quantize_weight
from qnnlib.recurrent import QuantLSTM, QuantRNN, check_float_or_bits, check_weight_range

__all__ = ["Cell", "CELLS", "default_weight_range", "QuantEmbedding", "QuantSoftmaxLayer", "LanguageModel", "ptb_lm"]

Cell = Literal["rnn", "lstm"]
CELLS: tuple[Cell, ...] = ("rnn", "lstm")


def default_weight_range(hidden_size: int) -> float:
    """The recurrent weights' grid ``[−r, r]``: the smallest power of two ≥ ``4/√H`` (four times torch's initial
    bound ``1/√H``), so a k-bit grid spends its levels where the weights are and the rescaling is a shift
    (H = 300: 0.25; H = 2048: 0.125)."""
    h = check_int(hidden_size, "hidden_size")
    return 2.0 ** math.ceil(math.log2(4.0 / math.sqrt(h)))


class QuantEmbedding(nn.Module):
    """``nn.Embedding`` whose rows are read k-bit: ``Q(clip(E[w], −1, 1))`` on ``2^k`` levels of [−1, 1]
    (``bits=None``: float rows). Quantizing the looked-up row is quantizing the table (every row is quantized
    the same way when read), so a k-bit table in memory gives the same numbers. Gradient: straight through
    inside [−1, 1] (Eq. 4). Initialised U(−1, 1), over the grid (as the latent weights of the binary layers), at
    every bit width, float included, so that the networks of a sweep differ only in their bits. With Zaremba et al.'s
    U(−0.1, 0.1) every row of a 4-bit table starts on its two smallest levels ±1/15 and the recurrent layer's inputs
    are too small for its k-bit grids: a 4-bit ReLU RNN of 256 units on the train-on-valid stand-in reached
    validation perplexity 421 after 6 epochs, against 268 after 4 with U(−1, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int | None = None) -> None:
        super().__init__()
        check_int(num_embeddings, "num_embeddings")
        check_int(embedding_dim, "embedding_dim")
        self.bits = check_float_or_bits(bits, "embed_bits")
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
        self.quant = None if self.bits is None else QuantAct(self.bits)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embedding(ids)
        return e if self.quant is None else self.quant(e)

    def extra_repr(self) -> str:
        return f"bits={self.bits or 32}"


class QuantSoftmaxLayer(LatentWeightLayer, nn.Module):
    """The output layer ``y = Q_r(V) h + b``: k-bit weights on the grid ``[−r, r]``
    (``Q_r(V) = quantize_weight(V, k, r)``, as the recurrent weights, :func:`default_weight_range`), latent ``V``
    clipped to ``[−r, r]``; logits and bias stay in the accumulator (float). ``bits=None``: a plain float layer.
    Initialised as ``nn.Linear``: ``V ~ U(±1/√H)``, bias 0."""

    def __init__(self, in_features: int, out_features: int, bits: int | None = None,
                 weight_range: float | None = None) -> None:
        super().__init__()
        check_int(in_features, "in_features")
        check_int(out_features, "out_features")
        self.bits = check_float_or_bits(bits, "softmax_bits")
        self.weight_bits = 32 if self.bits is None else self.bits
        self.weight_range = check_weight_range(default_weight_range(in_features) if weight_range is None
                                               else weight_range)
        self.clip_value = self.weight_range
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def latent_weights(self) -> Iterator[LatentWeight]:
        if self.bits is not None:
            yield LatentWeight("weight", self.weight, self.in_features, self.out_features)

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.bits is None else quantize_weight(self.weight, self.bits, self.weight_range)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(h, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits or 32}, "
                f"weight_range={self.weight_range:g}")


class LanguageModel(nn.Module):
    """Embedding → quantized recurrent layers → output layer, stateful across consecutive calls (module docstring).

    ``forward(ids)`` takes ``(T, B)`` word ids and returns ``(T, B, V)`` logits."""

    def __init__(self, cell: Cell, vocab_size: int, embed_size: int, hidden_size: int, num_layers: int = 1, *,
                 weight_bits: int | None = None, act_bits: int | None = None, embed_bits: int | None = None,
                 softmax_bits: int | None = None, dropout: float = 0.0, relu_max: float = 1.0,
                 weight_range: float | None = None) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.cell = cell
        self.vocab_size = check_int(vocab_size, "vocab_size", minimum=2)
        self.weight_bits = check_float_or_bits(weight_bits, "weight_bits")
        self.act_bits = check_float_or_bits(act_bits, "act_bits")
        self.embed_bits = self.act_bits if embed_bits is None else check_float_or_bits(embed_bits, "embed_bits")
        self.softmax_bits = (self.weight_bits if softmax_bits is None
                             else check_float_or_bits(softmax_bits, "softmax_bits"))
        self.embedding = QuantEmbedding(vocab_size, embed_size, self.embed_bits)
        self.drop = nn.Dropout(float(dropout))
        self.weight_range = default_weight_range(hidden_size) if weight_range is None else weight_range
        kw: dict[str, Any] = {"weight_bits": self.weight_bits, "act_bits": self.act_bits,
                              "weight_range": self.weight_range}
        if cell == "rnn":
            self.rnn: QuantRNN | QuantLSTM = QuantRNN(embed_size, hidden_size, num_layers, relu_max=relu_max, **kw)
        else:
            self.rnn = QuantLSTM(embed_size, hidden_size, num_layers, **kw)
        self.decoder = QuantSoftmaxLayer(hidden_size, vocab_size, self.softmax_bits, self.weight_range)
        self._state: Any = None

    def reset_state(self) -> None:
        """Forget the carried recurrent state: the next call starts from zeros."""
        self._state = None

    def train(self, mode: bool = True) -> LanguageModel:
        self.reset_state()  # a new epoch or a new evaluation starts a new stream
        return super().train(mode)

    def _carried(self, batch: int) -> Any:
        s = self._state
        if s is None:
            return None
        h = s[0] if isinstance(s, tuple) else s
        return s if h.shape[1] == batch else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"LanguageModel takes (T, B) integer word ids, got {tuple(ids.shape)} {ids.dtype}")
        x = self.drop(self.embedding(ids))
        out, state = self.rnn(x, self._carried(ids.shape[1]))
        self._state = tuple(t.detach() for t in state) if isinstance(state, tuple) else state.detach()
        return self.decoder(self.drop(out))

    def extra_repr(self) -> str:
        return (f"cell={self.cell}, weight_bits={self.weight_bits or 32}, act_bits={self.act_bits or 32}, "
                f"embed_bits={self.embed_bits or 32}, softmax_bits={self.softmax_bits or 32}")


def ptb_lm(cell: Cell, vocab_size: int, hidden: int, layers: int = 1, weight_bits: int | None = None,
           act_bits: int | None = None, *, embed_size: int | None = None, embed_bits: int | None = None,
           softmax_bits: int | None = None, dropout: float = 0.0, relu_max: float = 1.0,
           weight_range: float | None = None) -> LanguageModel:
    """The paper's PTB language model: ``cell`` (``"rnn"``: ReLU RNN, the paper's 2048 units; ``"lstm"``: the
    paper's 300 units) with ``hidden`` units in ``layers`` layers, ``weight_bits``/``act_bits`` (``None`` or
    32: float), embedding of ``embed_size`` (default ``hidden``) read at ``embed_bits`` (default ``act_bits``),
    output layer at ``softmax_bits`` (default ``weight_bits``), dropout on the embedding and on the last
    recurrent layer's output."""
    return LanguageModel(cell, vocab_size, hidden if embed_size is None else embed_size, hidden, layers,
                         weight_bits=weight_bits, act_bits=act_bits, embed_bits=embed_bits,
                         softmax_bits=softmax_bits, dropout=dropout, relu_max=relu_max, weight_range=weight_range)
