"""QAT overhead benchmark: one training step of a binarized net against the same net in float.

``python -m qnnlib bench qat [--model mlp|convnet] [--hidden 1024] [--width 0.25] [--batch 100] [--steps 30]
[--repeats 5]``

``mlp``: both nets are 784 – 3×hidden – 10 with BN; ``convnet``: the paper's CIFAR-10 ConvNet
(:func:`qnnlib.models.convnet.cifar10_convnet`) with its conv widths scaled by ``width`` and FC ``hidden``, on
3×32×32 inputs. Both are trained with Adam on the square hinge loss; the binary one
adds sign weights (STE), binarized activations (Eq. 4 STE), Glorot-scaled LRs and latent-weight
clipping — everything Alg. 1 does per step. Both are timed in the same run by the shared protocol
(:func:`qnnlib.bench.timing.interleaved_medians`: one warm-up block, then interleaved blocks of ``steps``
steps, medians); the ratio is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from qnnlib.bench.timing import interleaved_medians
from qnnlib.losses import square_hinge_loss
from qnnlib.models.convnet import cifar10_convnet
from qnnlib.models.mlp import mnist_mlp
from qnnlib.optim import clip_latent_weights
from qnnlib.precision import BINARY, FLOAT
from qnnlib.runtime.hardware import cpu_model
from qnnlib.train import TrainConfig, make_optimizer  # the optimizer construction fit() uses

__all__ = ["measure", "run"]


def _steps_fn(model: torch.nn.Module, binary: bool, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], None]:
    opt = make_optimizer(model, TrainConfig(glorot=binary, progress=False))

    def block() -> None:
        for _ in range(steps):
            loss = square_hinge_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if binary:
                clip_latent_weights(model)

    return block


def _net(model: str, hidden: int, width: float, binary: bool) -> torch.nn.Module:
    precision = BINARY if binary else FLOAT
    if model == "mlp":
        return mnist_mlp(hidden, precision=precision)
    return cifar10_convnet(width, hidden, precision=precision)


def measure(hidden: int = 1024, batch: int = 100, steps: int = 30, repeats: int = 5, seed: int = 0, *,
            model: Literal["mlp", "convnet"] = "mlp", width: float = 0.25) -> dict[str, float]:
    """Median seconds per training step of the float and the binary net, and their ratio binary/float."""
    if model not in ("mlp", "convnet"):
        raise ValueError(f"model must be 'mlp' or 'convnet', got {model!r}")
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    for name, v in (("hidden", hidden), ("batch", batch), ("steps", steps), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (batch norm needs a batch), got {batch}")
    torch.manual_seed(seed)
    x = torch.rand(batch, 784) * 2 - 1 if model == "mlp" else torch.rand(batch, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    fns = {"float": _steps_fn(_net(model, hidden, width, False).train(), False, x, y, steps),
           "binary": _steps_fn(_net(model, hidden, width, True).train(), True, x, y, steps)}
    med, _ = interleaved_medians(fns, repeats, warmup=1)
    f, b = med["float"] / steps, med["binary"] / steps
    return {"float_s": f, "binary_s": b, "ratio": b / f}


def run(hidden: int = 1024, batch: int = 100, steps: int = 30, repeats: int = 5, *,
        model: Literal["mlp", "convnet"] = "mlp", width: float = 0.25) -> int:
    """``python -m qnnlib bench qat``: print the step times and the ratio."""
    r = measure(hidden, batch, steps, repeats, model=model, width=width)
    net = f"MLP 784-{hidden}x3-10" if model == "mlp" else f"CIFAR-10 ConvNet x{width:g} (fc {hidden}), 3x32x32"
    print(f"QAT step time, {net}, batch {batch}, {torch.get_num_threads()} threads, "
          f"{cpu_model()}, torch {torch.__version__}")
    print(f"  float32 net : {r['float_s'] * 1e3:8.2f} ms/step")
    print(f"  binary net  : {r['binary_s'] * 1e3:8.2f} ms/step")
    print(f"  ratio binary/float = {r['ratio']:.2f}  (target <= 1.3)")
    return 0
