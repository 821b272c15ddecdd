"""ImageNet QNNs (AlexNet, GoogLeNet): config, profiles and the training run, one process or many under ``torchrun``.

The paper's large-scale rows (docs/paper.md §1.2): AlexNet with 1-bit weights and 1- or 2-bit activations (and
6-bit gradients), GoogLeNet at 1/1, 4/4 and 6/6/6 bits. Nobody trains ImageNet on two CPU cores, so this module
makes the full run real for users with GPUs and proves the pipeline here at small scale:

* :class:`ImagenetConfig` — model, bits, data, schedule, processes; :data:`PROFILES` (``smoke``: a generated
  ImageNet-layout folder and a tiny AlexNet; ``quick``: a real subset such as Imagenette when the user has one,
  else the generated folder; ``paper``: the full ILSVRC-2012 on GPUs);
* :func:`train` — one training run in this process, which may be one rank of a ``torchrun`` job: it reads
  ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, joins the process group (NCCL on GPUs, gloo on CPU), wraps the model in
  ``DistributedDataParallel``, shards the data (``DistributedSampler`` for training, exact shards for validation),
  sums the metric counts over the ranks (:class:`DistributedGroup`), lets rank 0 alone show progress and write the
  checkpoint (every epoch: model, optimizer, result; the LR schedule and the sampler are functions of the epoch)
  and the metrics JSON, and resumes after a kill from the last finished epoch;
* ``python -m qnnlib imagenet ...`` — the command line of :func:`train` (:func:`main`); run it as is, or as
  ``torchrun --nproc_per_node=N -m qnnlib imagenet ...`` (multi-node with torchrun's usual rendezvous flags).

Mixed precision is not used: the quantizers' levels (±1, k-bit grids, power-of-two gradients) are exact in float32,
and autocast would run the convolutions of the float first and last layers and the BN statistics in float16/bfloat16,
changing the results of the quantized network's float parts (docs/decisions.md D27).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.data.imagenet import imagenet_loaders, imagenet_root, make_fake_imagenet
from qnnlib.data.root import data_root, display_path
from qnnlib.evaluation import ProcessGroup
from qnnlib.files import atomic_write
from qnnlib.models.alexnet import alexnet_qnn
from qnnlib.models.blocks import imagenet_precision
from qnnlib.models.googlenet import googlenet_qnn
from qnnlib.train import FitResult, Loaders, TrainConfig, fit

__all__ = ["MODELS", "ImagenetConfig", "PROFILES", "DistributedGroup", "launch_env", "build_model", "fake_root",
           "train", "parser", "main"]

MODELS = ("alexnet", "googlenet")


@dataclass(frozen=True)
class ImagenetConfig:
    """One ImageNet training run: the network and its bits, the data, the schedule, the processes."""

    profile: str
    model: Literal["alexnet", "googlenet"] = "alexnet"
    weight_bits: int | None = 1
    act_bits: int | None = 2
    grad_bits: int | None = None
    float_first: bool = True
    float_last: bool = True
    width: float = 1.0  # conv channels × width (small models for the small profiles)
    fc: int = 4096  # AlexNet's hidden FC width
    data: str | None = None  # ImageNet root; None: $QNNLIB_IMAGENET, else $QNNLIB_DATA/imagenet
    fake: bool = False  # generate a small ImageNet-layout folder of synthetic JPEGs and train on it
    fake_classes: int = 4
    fake_train_per_class: int = 8
    fake_val_per_class: int = 4
    train_subset: int | None = None  # images per class; None: all
    val_subset: int | None = None
    image_size: int = 224
    resize: int = 256
    epochs: int = 60
    batch_size: int = 256  # global: each of N processes takes batch_size / N
    lr_start: float = 5e-3
    lr_end: float = 5e-5
    workers: int = 4  # DataLoader workers per process
    seed: int = 0
    nproc: int = 1  # processes the notebook launches with torchrun (1: a plain process)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        for f in ("epochs", "batch_size", "nproc", "fc", "image_size", "resize", "fake_classes",
                  "fake_train_per_class", "fake_val_per_class"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} must be a positive integer, got {v!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {self.workers!r}")
        if self.batch_size % self.nproc:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by nproc ({self.nproc}): each process "
                             "takes an equal share of the global batch")
        if self.resize < self.image_size:
            raise ValueError(f"resize ({self.resize}) must be >= image_size ({self.image_size}): evaluation resizes "
                             "the shorter side, then centre-crops image_size")
        if not 0 < self.lr_end <= self.lr_start:
            raise ValueError(f"need 0 < lr_end <= lr_start, got {self.lr_start} -> {self.lr_end}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"width must be a positive number, got {self.width!r}")
        imagenet_precision(self.weight_bits, self.act_bits, self.grad_bits)  # the bits (ValueError naming the field)

    @property
    def label(self) -> str:
        """E.g. ``"AlexNet W1/A2"`` or ``"GoogLeNet W6/A6/G6"`` (32 = float)."""
        bits = [f"W{self.weight_bits or 32}", f"A{self.act_bits or 32}"]
        if self.grad_bits is not None:
            bits.append(f"G{self.grad_bits}")
        return f"{'AlexNet' if self.model == 'alexnet' else 'GoogLeNet'} {'/'.join(bits)}"

    @property
    def name(self) -> str:
        """File-name form of :attr:`label`, e.g. ``alexnet-w1a2``."""
        g = "" if self.grad_bits is None else f"g{self.grad_bits}"
        return f"{self.model}-w{self.weight_bits or 32}a{self.act_bits or 32}{g}"


PROFILES: dict[str, ImagenetConfig] = {
    # smoke: a generated folder (4 classes of synthetic JPEGs), a 1/16-width AlexNet on 64×64 crops, 2 epochs
    "smoke": ImagenetConfig("smoke", width=1 / 16, fc=64, fake=True, image_size=64, resize=72, epochs=2,
                            batch_size=8, lr_start=5e-3, lr_end=1e-3, workers=0, nproc=1),
    # quick: a real subset when $QNNLIB_IMAGENET names one (e.g. Imagenette's 10 classes), else the generated folder
    "quick": ImagenetConfig("quick", width=0.25, fc=512, fake=True, fake_classes=10, fake_train_per_class=40,
                            fake_val_per_class=10, image_size=112, resize=128, epochs=5, batch_size=32,
                            lr_start=5e-3, lr_end=5e-4, workers=2, nproc=2),
    # paper: ILSVRC-2012 in full on GPUs, AlexNet 1/2 bits; the schedule of the authors' later PyTorch code is
    # not the paper's (which gives none): Adam 5e-3 decayed to 5e-5 over 60 epochs, global batch 256
    "paper": ImagenetConfig("paper", epochs=60, batch_size=256, workers=8, nproc=8),
}


@dataclass(frozen=True)
class DistributedGroup(ProcessGroup):
    """A rank of a ``torch.distributed`` job: ``all_reduce_sum`` sums over every rank (gloo or NCCL)."""

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor


def launch_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    (0, 1, 0) in a plain process."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (as torchrun sets them): {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def build_model(cfg: ImagenetConfig, num_classes: int = 1000) -> nn.Module:
    """The network of ``cfg`` (:func:`qnnlib.models.alexnet.alexnet_qnn`, :func:`qnnlib.models.googlenet.googlenet_qnn`),
    initialised from ``cfg.seed`` (every rank builds the same weights)."""
    torch.manual_seed(cfg.seed)
    common = dict(float_first=cfg.float_first, float_last=cfg.float_last, width=cfg.width, num_classes=num_classes)
    if cfg.model == "alexnet":
        return alexnet_qnn(cfg.weight_bits, cfg.act_bits, cfg.grad_bits, fc=cfg.fc, image_size=cfg.image_size,
                           **common)  # type: ignore[arg-type]
    return googlenet_qnn(cfg.weight_bits, cfg.act_bits, cfg.grad_bits, **common)  # type: ignore[arg-type]


def fake_root(cfg: ImagenetConfig) -> Path:
    """Where ``cfg.fake`` data lives: ``$QNNLIB_DATA/fake-imagenet/<classes>x<train>+<val>-seed<seed>``."""
    return (data_root() / "fake-imagenet" /
            f"{cfg.fake_classes}x{cfg.fake_train_per_class}+{cfg.fake_val_per_class}-seed{cfg.seed}")


def _data_root(cfg: ImagenetConfig, is_main: bool, barrier: Any) -> Path:
    if not cfg.fake:
        return imagenet_root(cfg.data)
    root = fake_root(cfg)
    if is_main and not (root / "val").is_dir():
        make_fake_imagenet(root, cfg.fake_classes, cfg.fake_train_per_class, cfg.fake_val_per_class,
                           size=(max(8, cfg.image_size // 2), cfg.resize + 16), seed=cfg.seed)
    barrier()  # the other ranks read it only once rank 0 has written it
    return root


def train(cfg: ImagenetConfig, *, out_dir: Path, checkpoint_dir: Path | None = None, progress: bool = True,
          stop_after_epoch: int | None = None) -> FitResult:
    """Train ``cfg`` in this process (one rank of a ``torchrun`` job, or alone): module docstring.

    Rank 0 writes ``<out_dir>/<cfg.name>.json`` (config, per-epoch history, top-1/top-5 at the best validation
    epoch, world size, wall time) after every epoch; ``checkpoint_dir`` (default ``<out_dir>/checkpoints/<name>``)
    holds ``last.pt``, from which a restarted run resumes. ``stop_after_epoch`` ends every rank's process right
    after that epoch's checkpoint (``os._exit(3)``): a kill at a known point, for the resume test.
    """
    rank, world, local = launch_env()
    cuda = torch.cuda.is_available()
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
        group: ProcessGroup = DistributedGroup(rank, world)
    else:
        group = ProcessGroup()
    try:
        device = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(device)
        barrier = torch.distributed.barrier if world > 1 else (lambda: None)
        root = _data_root(cfg, group.is_main, barrier)
        train_loader, val_loader = imagenet_loaders(
            root, batch_size=cfg.batch_size // world, workers=cfg.workers, size=cfg.image_size, resize=cfg.resize,
            seed=cfg.seed, train_subset=cfg.train_subset, val_subset=cfg.val_subset,
            distributed=(rank, world) if world > 1 else None)
        classes = len(train_loader.dataset.classes)  # type: ignore[attr-defined]
        model = build_model(cfg, classes).to(device)
        if world > 1:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[local] if cuda else None)
        ck = Path(checkpoint_dir) if checkpoint_dir is not None else Path(out_dir) / "checkpoints" / cfg.name
        tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size // world, optimizer="adam",
                         lr_start=cfg.lr_start, lr_end=cfg.lr_end, lr_schedule="exp", glorot=False, seed=cfg.seed,
                         device=str(device), checkpoint_dir=str(ck), progress=progress, loss="cross_entropy",
                         metrics=("error", "top5"), select_metric="error")

        def on_epoch_end(epoch: int, row: dict[str, Any]) -> None:
            if group.is_main:  # the rows of earlier epochs (a resumed run: from the last metrics file) and this one
                rank0_history[0] = [r for r in rank0_history[0] if r["epoch"] < row["epoch"]] + [row]
                _write_metrics(cfg, Path(out_dir), rank0_history[0], world, root)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                barrier()  # every rank has finished the epoch; rank 0's checkpoint is on disk
                sys.stdout.flush()
                os._exit(3)

        rank0_history: list[list[dict[str, Any]]] = [_previous_history(cfg, Path(out_dir))]
        result = fit(model, Loaders(train_loader, val_loader), tc, on_epoch_end=on_epoch_end, restore_best=False,
                     desc=cfg.label, process_group=group)
        if group.is_main:
            _write_metrics(cfg, Path(out_dir), result.history, world, root, result)
        return result
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _metrics_path(cfg: ImagenetConfig, out_dir: Path) -> Path:
    return out_dir / f"{cfg.name}.json"


def _previous_history(cfg: ImagenetConfig, out_dir: Path) -> list[dict[str, Any]]:
    p = _metrics_path(cfg, out_dir)
    try:
        return list(json.loads(p.read_text()).get("history", []))
    except (OSError, ValueError):
        return []


def _write_metrics(cfg: ImagenetConfig, out_dir: Path, history: list[dict[str, Any]], world: int, root: Path,
                   result: FitResult | None = None) -> Path:
    best = min(history, key=lambda r: r["valid_error"]) if history else None
    doc = {"config": asdict(cfg), "label": cfg.label, "world_size": world, "data": display_path(root),
           "fake_data": cfg.fake, "history": history, "finished": result is not None,
           "best_epoch": best["epoch"] if best else None,
           "top1": None if best is None else 100.0 * (1.0 - best["valid_error"]),
           "top5": None if best is None else 100.0 * (1.0 - best["valid_top5"]),
           "wall_time_s": None if result is None else result.wall_time_s}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = _metrics_path(cfg, out_dir)
    with atomic_write(path, "w") as f:
        f.write(json.dumps(doc, indent=1, default=str))
    return path


def parser() -> argparse.ArgumentParser:
    """``python -m qnnlib imagenet``: a profile, then any :class:`ImagenetConfig` field as ``--<field> value``."""
    p = argparse.ArgumentParser(prog="qnnlib imagenet", description="Train an ImageNet QNN (one process, or one rank "
                                "of a torchrun job: torchrun --nproc_per_node=N -m qnnlib imagenet ...).")
    p.add_argument("--profile", default=os.environ.get("QNNLIB_PROFILE") or "smoke", choices=tuple(PROFILES))
    p.add_argument("--out", type=Path, required=True, help="folder for <name>.json and checkpoints/<name>/last.pt")
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)  # the resume test's kill
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("FIELD", "VALUE"),
                   help="override a config field, e.g. --set model googlenet --set act_bits 4 (JSON values)")
    return p


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of :func:`train`; returns the exit code."""
    args = parser().parse_args(argv)
    cfg = PROFILES[args.profile]
    fields = set(asdict(cfg)) - {"profile"}
    overrides = {}
    for k, v in args.set:
        if k not in fields:
            raise SystemExit(f"qnnlib imagenet: unknown field {k!r}; fields: {', '.join(sorted(fields))}")
        overrides[k] = _parse_value(v)
    cfg = replace(cfg, **overrides)
    result = train(cfg, out_dir=args.out, checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress,
                   stop_after_epoch=args.stop_after_epoch)
    if launch_env()[0] == 0:
        print(f"{cfg.label}: best epoch {result.best_epoch}, top-1 error {100 * result.best_valid_error:.2f}%")
    return 0
