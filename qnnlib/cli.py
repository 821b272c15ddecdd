"""The command line: ``python -m qnnlib ...`` or the ``qnnlib`` console script.

::

    qnnlib reproduce [--profile smoke|quick|paper] [--only NAME ...] [--results-dir D] [--timeout S]
    qnnlib list                       the experiments, their notebooks, and which exist
    qnnlib bench qat [--model mlp|convnet|lstm] [--width W] [--hidden H] [--bits K] [--batch B] [--steps S] [--repeats R]
    qnnlib bench cpu [--sizes 256,1024,8192x8192x4096,...] [--repeats R]
    qnnlib bench gpu [--sizes 1024,4096,8192] [--repeats R]
    qnnlib bench convnet [--width W] [--fc F] [--images N] [--batch B] [--repeats R] [--checkpoint PATH] [--train-steps S]

``reproduce`` executes the notebooks with Papermill into ``results/<profile>/`` and writes SUMMARY.md
(:mod:`qnnlib.experiments.reproduction`); exit code 1 when a notebook failed. Every benchmark measures
its baseline in the same run and prints ratios and the hardware it ran on (:mod:`qnnlib.bench`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "parser"]


def _sizes(text: str) -> list[int | tuple[int, ...]]:
    """``"1024,4096,8192x8192x4096"`` -> [1024, 4096, (8192, 8192, 4096)]: square n or M x N x K."""
    sizes: list[int | tuple[int, ...]] = []
    for token in (v.strip() for v in text.split(",")):
        if not token:
            continue
        try:
            dims = tuple(int(d) for d in token.lower().split("x"))
        except ValueError:
            dims = ()
        if len(dims) not in (1, 3) or any(d < 1 for d in dims):
            raise argparse.ArgumentTypeError(
                f"sizes must be comma-separated positive integers n or shapes MxNxK, got {token!r} in {text!r}")
        sizes.append(dims[0] if len(dims) == 1 else dims)
    if not sizes:
        raise argparse.ArgumentTypeError(f"sizes must name at least one size, got {text!r}")
    return sizes


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main` (sub-commands ``reproduce``, ``list``, ``bench``; ``imagenet`` has its
    own, :func:`qnnlib.experiments.imagenet_run.parser`)."""
    try:  # lazily (keeps --help fast); a GPU machine with only torch/cupy/numba has no pandas for the notebooks
        from qnnlib.experiments.reproduction import NOTEBOOKS, NOTEBOOKS_DIR  # noqa: PLC0415
    except ImportError as exc:  # `bench gpu` and `bench cpu` must still run there
        NOTEBOOKS, NOTEBOOKS_DIR = {}, Path(f"<unavailable: {exc}>")

    p = argparse.ArgumentParser(prog="qnnlib", description="Reproduce Hubara et al., 'Quantized Neural Networks'.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{reproduce,list,bench,imagenet}")

    r = sub.add_parser("reproduce", help="execute the notebooks with Papermill into results/<profile>/")
    r.add_argument("--profile", default=os.environ.get("QNNLIB_PROFILE") or "quick",
                   help="smoke | quick | paper (default: $QNNLIB_PROFILE or quick)")
    r.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help=f"run only these experiments (space- or comma-separated) of: {', '.join(NOTEBOOKS)}")
    r.add_argument("--results-dir", type=Path, default=None, help="default: $QNNLIB_RESULTS or <repo>/results")
    r.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds (default: none)")
    r.add_argument("--notebooks-dir", type=Path, default=None, help=f"default: {NOTEBOOKS_DIR}")

    sub.add_parser("list", help="list the experiments and their notebooks")
    sub.add_parser("imagenet", add_help=False, help="train an ImageNet QNN, alone or as one rank of torchrun "
                   "(python -m qnnlib imagenet --help)")

    b = sub.add_parser("bench", help="benchmarks with their baseline timed in the same run")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="{qat,cpu,gpu,imagenet,peers,convnet}")
    q = bsub.add_parser("qat", help="training-step time of a binarized net vs the same net in float")
    q.add_argument("--model", choices=("mlp", "convnet", "lstm"), default="mlp",
                   help="the MNIST MLP, the paper's CIFAR-10 ConvNet (convs scaled by --width, FC --hidden) or the "
                        "PTB LSTM language model (--hidden units, --bits weights and activations)")
    q.add_argument("--width", type=float, default=0.25, help="ConvNet conv-width factor (1.0: 128/256/512)")
    q.add_argument("--hidden", type=_positive, default=None, help="default 1024 (mlp, convnet FC) or 300 (lstm)")
    q.add_argument("--bits", type=_positive, default=4, help="lstm: weight and activation bits (default 4)")
    q.add_argument("--batch", type=_positive, default=None, help="default 100, or 20 for lstm")
    q.add_argument("--steps", type=_positive, default=30)
    q.add_argument("--repeats", type=_positive, default=5)
    pe = bsub.add_parser("peers", help="the MNIST MLP (or --convnet the ConvNet): our packed runtime vs torch fp32, "
                         "torch int8, ONNX Runtime, LCE")
    pe.add_argument("--hidden", type=_positive, default=4096)
    pe.add_argument("--images", type=_positive, default=None, help="default 10000 (MLP) or 500 (--convnet)")
    pe.add_argument("--repeats", type=_positive, default=3)
    pe.add_argument("--convnet", action="store_true", help="the binary CIFAR-10 ConvNet instead of the MLP "
                    "(--images defaults to 500)")
    pe.add_argument("--width", type=float, default=0.5, help="with --convnet: conv-width factor (default 0.5)")
    cv = bsub.add_parser("convnet", help="the binary CIFAR-10 ConvNet: our packed runtime vs torch fp32 and int8 on "
                         "the CPU (images/s, agreement, per-layer time)")
    cv.add_argument("--width", type=float, default=0.5, help="conv-width factor (1.0: 128/256/512; default 0.5)")
    cv.add_argument("--fc", type=_positive, default=1024, help="units of the two hidden fc layers (default 1024)")
    cv.add_argument("--images", type=_positive, default=500)
    cv.add_argument("--batch", type=_positive, default=100, help="images per inference call (default 100)")
    cv.add_argument("--repeats", type=_positive, default=3)
    cv.add_argument("--checkpoint", default=None, metavar="PATH",
                    help="a state_dict or qnnlib training checkpoint of cifar10_convnet(--width, --fc); default: "
                         "train --train-steps steps on the Fashion-MNIST stand-in (or random data)")
    cv.add_argument("--train-steps", type=_positive, default=20)
    im = bsub.add_parser("imagenet", help="ImageNet data path vs training step, 1 vs 2 processes (images/s)")
    im.add_argument("--size", type=_positive, default=224, help="crop size in pixels (default 224)")
    im.add_argument("--batch", type=_positive, default=16)
    im.add_argument("--workers", type=_positive, default=2, help="DataLoader workers (default 2)")
    im.add_argument("--per-class", type=_positive, default=32, help="generated JPEGs per class (4 classes)")
    im.add_argument("--width", type=float, default=0.25, help="AlexNet width factor (default 0.25)")
    for name, what, repeats in (("cpu", "binary GEMM (Numba) vs torch.matmul fp32 on this CPU", 5),
                                ("gpu", "verify every CUDA kernel bit-exact, then time the GPU GEMMs", 30)):
        g = bsub.add_parser(name, help=what)
        g.add_argument("--sizes", type=_sizes, default=None, help="comma-separated sizes: n (M = N = K = n) or MxNxK")
        g.add_argument("--repeats", type=_positive, default=repeats, help="timed runs per method (median)")
    return p


def _reproduce(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from qnnlib.experiments.reproduction import reproduce  # noqa: PLC0415

    only = None
    if args.only is not None:
        only = [k.strip() for item in args.only for k in item.split(",") if k.strip()]
        if not only:
            p.error("--only names no experiment (empty or only commas); leave it out to run every notebook")
    try:
        runs = reproduce(args.profile, only, args.results_dir, args.timeout, args.notebooks_dir,
                         progress_bar=sys.stderr.isatty())
    except ValueError as exc:
        p.error(str(exc))
    bad = [r for r in runs if r.status != "ok"]
    if bad:
        print("FAILED: " + ", ".join(f"{r.key} ({r.status}: {r.error})" for r in bad), file=sys.stderr)
        return 1
    if not runs:
        print("no notebooks to run", file=sys.stderr)
    return 0


def _list() -> int:
    from qnnlib.experiments.reproduction import NOTEBOOKS, available_notebooks  # noqa: PLC0415

    present = available_notebooks()
    for k, f in NOTEBOOKS.items():
        print(f"{k:12s} {f:34s} {'present' if k in present else 'not present'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.bench == "qat":
        from qnnlib.bench import qat  # noqa: PLC0415

        return qat.run(args.hidden, args.batch, args.steps, args.repeats, model=args.model, width=args.width,
                       bits=args.bits)
    if args.bench == "peers":
        from qnnlib.bench import peers  # noqa: PLC0415

        images = args.images or (500 if args.convnet else 10_000)
        return peers.run(args.hidden, images, args.repeats, convnet=args.convnet, width=args.width)
    if args.bench == "convnet":
        from qnnlib.bench import convnet  # noqa: PLC0415

        return convnet.run(width=args.width, fc=args.fc, images=args.images, repeats=args.repeats, batch=args.batch,
                           checkpoint=args.checkpoint, train_steps=args.train_steps)
    if args.bench == "imagenet":
        from qnnlib.bench import imagenet  # noqa: PLC0415

        return imagenet.run(size=args.size, batch=args.batch, workers=args.workers, per_class=args.per_class,
                            width=args.width)
    from qnnlib.bench import gemm  # noqa: PLC0415

    return gemm.run_cpu(args.sizes, args.repeats) if args.bench == "cpu" else gemm.run_gpu(args.sizes, args.repeats)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["imagenet"]:  # its own parser: every config field, torchrun's environment
        from qnnlib.experiments import imagenet_run  # noqa: PLC0415

        return imagenet_run.main(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    if args.command == "reproduce":
        return _reproduce(args, p)
    if args.command == "list":
        return _list()
    return _bench(args)
