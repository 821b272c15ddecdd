"""QAT overhead benchmark: one training step of the binarized MNIST MLP vs the same net in float.

``python -m qnnlib.bench qat [--hidden 1024] [--batch 100] [--steps 30] [--repeats 5]``

Both nets are 784 – 3×hidden – 10 with BN, trained with Adam on the square hinge loss; the binary one
adds sign weights (STE), binarized activations (Eq. 4 STE), Glorot-scaled LRs and latent-weight
clipping — everything Alg. 1 does per step.  Baseline and binary net are timed in the same run,
interleaved, median of ``repeats`` blocks of ``steps`` steps after warm-up; the ratio is printed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from ..models import BINARY, FLOAT, mnist_mlp
from ..train import TrainConfig, make_optimizer  # the optimizer construction fit() uses
from ..losses import square_hinge_loss
from ..optim import clip_latent_weights


def _step_fn(model: torch.nn.Module, binary: bool, x: torch.Tensor, y: torch.Tensor):
    cfg = TrainConfig(glorot=binary, progress=False)
    opt = make_optimizer(model, cfg)

    def step() -> None:
        loss = square_hinge_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if binary:
            clip_latent_weights(model)

    return step


def measure(hidden: int = 1024, batch: int = 100, steps: int = 30, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Median seconds per training step for the float and the binary MLP, and their ratio."""
    torch.manual_seed(seed)
    x = torch.rand(batch, 784) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    fns = {
        "float": _step_fn(mnist_mlp(hidden, precision=FLOAT).train(), False, x, y),
        "binary": _step_fn(mnist_mlp(hidden, precision=BINARY).train(), True, x, y),
    }
    for fn in fns.values():  # warm-up
        for _ in range(5):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved so drift hits both
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t) / steps)
    f, b = statistics.median(times["float"]), statistics.median(times["binary"])
    return {"float_s": f, "binary_s": b, "ratio": b / f}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qnnlib.bench qat", description=__doc__)
    p.add_argument("cmd", nargs="?", default="qat")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    r = measure(a.hidden, a.batch, a.steps, a.repeats)
    print(f"QAT step time, MLP 784-{a.hidden}x3-10, batch {a.batch}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"  float32 net : {r['float_s'] * 1e3:8.2f} ms/step")
    print(f"  binary net  : {r['binary_s'] * 1e3:8.2f} ms/step")
    print(f"  ratio binary/float = {r['ratio']:.2f}  (target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
