"""QAT overhead benchmark: one training step of a binarized net against the same net in float.

``python -m qnnlib bench qat [--model mlp|convnet|lstm] [--hidden H] [--width 0.25] [--bits 4] [--batch B]
[--steps 30] [--repeats 5]``

``mlp``: both nets are 784 – 3×hidden – 10 with BN; ``convnet``: the paper's CIFAR-10 ConvNet
(:func:`qnnlib.models.convnet.cifar10_convnet`) with its conv widths scaled by ``width`` and FC ``hidden``, on
3×32×32 inputs. Both are trained with Adam on the square hinge loss; the binary one
adds sign weights (STE), binarized activations (Eq. 4 STE), Glorot-scaled LRs and latent-weight
clipping — everything Alg. 1 does per step. ``lstm``: the PTB language model
(:func:`qnnlib.models.language.ptb_lm`, one LSTM layer of ``hidden`` units, default 300, a 10,000-word vocabulary,
35 steps of truncated BPTT, batch 20) at ``bits`` bits against the same module in float (the number the ratio is
taken against) and against torch's fused ``nn.LSTM`` of the same size (printed beside it), cross-entropy, Adam,
gradient-norm clipping; the quantized one clips its latent weights. Both are timed in the same run by the shared protocol
(:func:`qnnlib.bench.timing.interleaved_medians`: one warm-up block, then interleaved blocks of ``steps``
steps, medians); the ratio is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from qnnlib.bench.timing import interleaved_medians
from qnnlib.losses import cross_entropy_loss, square_hinge_loss
from qnnlib.models.convnet import cifar10_convnet
from qnnlib.models.language import ptb_lm
from qnnlib.models.mlp import mnist_mlp
from qnnlib.optim import clip_latent_weights
from qnnlib.precision import BINARY, FLOAT
from qnnlib.runtime.hardware import cpu_model
from qnnlib.train import TrainConfig, make_optimizer  # the optimizer construction fit() uses

__all__ = ["measure", "run"]


def _steps_fn(model: torch.nn.Module, quantized: bool, x: torch.Tensor, y: torch.Tensor, steps: int, *,
              loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = square_hinge_loss,
              glorot: bool | None = None, grad_clip_norm: float | None = None) -> Callable[[], None]:
    """``steps`` training steps as ``fit`` takes them (Adam; Glorot-scaled LRs for a quantized net unless
    ``glorot`` says otherwise; gradient-norm clipping when given; latent weights clipped when quantized)."""
    opt = make_optimizer(model, TrainConfig(glorot=quantized if glorot is None else glorot, progress=False))

    def block() -> None:
        for _ in range(steps):
            out = loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            out.backward()
            if grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            opt.step()
            if quantized:
                clip_latent_weights(model)

    return block


def _net(model: str, hidden: int, width: float, binary: bool) -> torch.nn.Module:
    precision = BINARY if binary else FLOAT
    if model == "mlp":
        return mnist_mlp(hidden, precision=precision)
    return cifar10_convnet(width, hidden, precision=precision)


class _TorchLSTMLM(torch.nn.Module):
    """The float language model on torch's fused ``nn.LSTM`` (what a user would train instead)."""

    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, hidden)
        self.rnn = torch.nn.LSTM(hidden, hidden)
        self.decoder = torch.nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.rnn(self.embedding(ids))[0])


def _measure_lstm(hidden: int, batch: int, steps: int, repeats: int, bits: int, vocab: int = 10_000,
                  seq_len: int = 35) -> dict[str, float]:
    x = torch.randint(0, vocab, (seq_len, batch))
    y = torch.randint(0, vocab, (seq_len, batch))
    kw = {"loss": cross_entropy_loss, "glorot": False, "grad_clip_norm": 0.25}
    fns = {"float": _steps_fn(ptb_lm("lstm", vocab, hidden).train(), False, x, y, steps, **kw),
           "binary": _steps_fn(ptb_lm("lstm", vocab, hidden, 1, bits, bits).train(), True, x, y, steps, **kw),
           "torch": _steps_fn(_TorchLSTMLM(vocab, hidden).train(), False, x, y, steps, **kw)}
    med, _ = interleaved_medians(fns, repeats, warmup=1)
    f, b, t = med["float"] / steps, med["binary"] / steps, med["torch"] / steps
    return {"float_s": f, "binary_s": b, "ratio": b / f, "torch_s": t, "ratio_vs_torch": b / t}


def measure(hidden: int | None = None, batch: int | None = None, steps: int = 30, repeats: int = 5, seed: int = 0,
            *, model: Literal["mlp", "convnet", "lstm"] = "mlp", width: float = 0.25, bits: int = 4
            ) -> dict[str, float]:
    """Median seconds per training step of the float and the quantized net, and their ratio quantized/float
    (``lstm``: also torch's fused ``nn.LSTM`` model, ``torch_s`` and ``ratio_vs_torch``). ``hidden`` defaults to
    1024 (mlp, convnet FC) or 300 (lstm), ``batch`` to 100 or 20 (lstm); ``bits`` is the LSTM's weight and
    activation width (the feed-forward nets are binary)."""
    if model not in ("mlp", "convnet", "lstm"):
        raise ValueError(f"model must be 'mlp', 'convnet' or 'lstm', got {model!r}")
    hidden = (300 if model == "lstm" else 1024) if hidden is None else hidden
    batch = (20 if model == "lstm" else 100) if batch is None else batch
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    for name, v in (("hidden", hidden), ("batch", batch), ("steps", steps), ("repeats", repeats), ("bits", bits)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (batch norm needs a batch), got {batch}")
    torch.manual_seed(seed)
    if model == "lstm":
        return _measure_lstm(hidden, batch, steps, repeats, bits)
    x = torch.rand(batch, 784) * 2 - 1 if model == "mlp" else torch.rand(batch, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    fns = {"float": _steps_fn(_net(model, hidden, width, False).train(), False, x, y, steps),
           "binary": _steps_fn(_net(model, hidden, width, True).train(), True, x, y, steps)}
    med, _ = interleaved_medians(fns, repeats, warmup=1)
    f, b = med["float"] / steps, med["binary"] / steps
    return {"float_s": f, "binary_s": b, "ratio": b / f}


def run(hidden: int | None = None, batch: int | None = None, steps: int = 30, repeats: int = 5, *,
        model: Literal["mlp", "convnet", "lstm"] = "mlp", width: float = 0.25, bits: int = 4) -> int:
    """``python -m qnnlib bench qat``: print the step times and the ratio."""
    r = measure(hidden, batch, steps, repeats, model=model, width=width, bits=bits)
    h = (300 if model == "lstm" else 1024) if hidden is None else hidden
    b = (20 if model == "lstm" else 100) if batch is None else batch
    net = {"mlp": f"MLP 784-{h}x3-10", "convnet": f"CIFAR-10 ConvNet x{width:g} (fc {h}), 3x32x32",
           "lstm": f"PTB LSTM LM, 1x{h} units, 10k words, 35-step BPTT"}[model]
    print(f"QAT step time, {net}, batch {b}, {torch.get_num_threads()} threads, "
          f"{cpu_model()}, torch {torch.__version__}")
    print(f"  float32 net : {r['float_s'] * 1e3:8.2f} ms/step")
    if model == "lstm":
        print(f"  W{bits}/A{bits} net  : {r['binary_s'] * 1e3:8.2f} ms/step")
        print(f"  torch nn.LSTM float32 : {r['torch_s'] * 1e3:8.2f} ms/step (fused kernel)")
        print(f"  ratio quantized/float = {r['ratio']:.2f}  (target <= 2); quantized/torch nn.LSTM = "
              f"{r['ratio_vs_torch']:.2f}")
        return 0
    print(f"  binary net  : {r['binary_s'] * 1e3:8.2f} ms/step")
    print(f"  ratio binary/float = {r['ratio']:.2f}  (target <= 1.3)")
    return 0
