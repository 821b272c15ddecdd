"""QAT overhead benchmark: one training step of the binarized MNIST MLP against the same net in float.

``python -m qnnlib bench qat [--hidden 1024] [--batch 100] [--steps 30] [--repeats 5]``

Both nets are 784 – 3×hidden – 10 with BN, trained with Adam on the square hinge loss; the binary one
adds sign weights (STE), binarized activations (Eq. 4 STE), Glorot-scaled LRs and latent-weight
clipping — everything Alg. 1 does per step. Both are timed in the same run by the shared protocol
(:func:`qnnlib.bench.timing.interleaved_medians`: one warm-up block, then interleaved blocks of ``steps``
steps, medians); the ratio is printed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from qnnlib.bench.timing import interleaved_medians
from qnnlib.losses import square_hinge_loss
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


def measure(hidden: int = 1024, batch: int = 100, steps: int = 30, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Median seconds per training step of the float and the binary MLP, and their ratio binary/float."""
    for name, v in (("hidden", hidden), ("batch", batch), ("steps", steps), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (batch norm needs a batch), got {batch}")
    torch.manual_seed(seed)
    x = torch.rand(batch, 784) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    fns = {"float": _steps_fn(mnist_mlp(hidden, precision=FLOAT).train(), False, x, y, steps),
           "binary": _steps_fn(mnist_mlp(hidden, precision=BINARY).train(), True, x, y, steps)}
    med, _ = interleaved_medians(fns, repeats, warmup=1)
    f, b = med["float"] / steps, med["binary"] / steps
    return {"float_s": f, "binary_s": b, "ratio": b / f}


def run(hidden: int = 1024, batch: int = 100, steps: int = 30, repeats: int = 5) -> int:
    """``python -m qnnlib bench qat``: print the step times and the ratio."""
    r = measure(hidden, batch, steps, repeats)
    print(f"QAT step time, MLP 784-{hidden}x3-10, batch {batch}, {torch.get_num_threads()} threads, "
          f"{cpu_model()}, torch {torch.__version__}")
    print(f"  float32 net : {r['float_s'] * 1e3:8.2f} ms/step")
    print(f"  binary net  : {r['binary_s'] * 1e3:8.2f} ms/step")
    print(f"  ratio binary/float = {r['ratio']:.2f}  (target <= 1.3)")
    return 0
