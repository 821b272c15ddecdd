"""The ImageNet training run: one process, or one rank of a ``torchrun`` job (``python -m qnnlib imagenet``).

:func:`train` trains an :class:`~qnnlib.experiments.imagenet.ImagenetConfig` in this process. Under ``torchrun`` it
reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (:func:`launch_env`), joins the process group (NCCL on GPUs, gloo on
CPU), wraps the model in ``DistributedDataParallel`` (every rank builds the same seeded weights), shards the data
(``DistributedSampler`` for training, exact shards for validation: :func:`qnnlib.data.imagenet.imagenet_loaders`),
sums every loss and metric count over the ranks (:class:`DistributedGroup`, through :func:`qnnlib.train.fit`) and
lets rank 0 alone show progress, write the checkpoint every epoch (model, optimizer, result; the LR schedule and the
samplers are functions of the epoch, so nothing else is needed to resume) and the run's metrics document. A run
that is killed resumes from the last finished epoch; multi-node jobs use torchrun's usual rendezvous flags.

Mixed precision is not used: autocast would run the float first and last layers and the BN statistics in
float16/bfloat16 and so change the quantized network's float parts (docs/decisions.md D27).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qnnlib.data.imagenet import imagenet_loaders, imagenet_root, make_fake_imagenet
from qnnlib.data.root import display_path
from qnnlib.evaluation import ProcessGroup
from qnnlib.experiments.imagenet import PROFILES, ImagenetConfig, build_model, fake_root
from qnnlib.files import atomic_write
from qnnlib.train import FitResult, Loaders, TrainConfig, fit

__all__ = ["DistributedGroup", "launch_env", "train", "parser", "main"]


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
    finished = False
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

        history = _previous_history(cfg, Path(out_dir))  # rank 0's rows so far (a resumed run: from its metrics)

        def on_epoch_end(epoch: int, row: dict[str, Any]) -> None:
            nonlocal history
            if group.is_main:  # the rows of earlier epochs (a resumed run: from the last metrics file) and this one
                history = [r for r in history if r["epoch"] < row["epoch"]] + [row]
                _write_metrics(cfg, Path(out_dir), history, world, root, classes)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                barrier()  # every rank has finished the epoch; rank 0's checkpoint is on disk
                sys.stdout.flush()
                os._exit(3)

        result = fit(model, Loaders(train_loader, val_loader), tc, on_epoch_end=on_epoch_end, restore_best=False,
                     desc=cfg.label, process_group=group)
        if group.is_main:
            _write_metrics(cfg, Path(out_dir), result.history, world, root, classes, result)
        finished = True
        return result
    finally:
        if world > 1 and torch.distributed.is_initialized():
            if finished:  # no rank closes its connections while another may still be in a collective or writing
                torch.distributed.barrier()
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
                   classes: int, result: FitResult | None = None) -> Path:
    best = min(history, key=lambda r: r["valid_error"]) if history else None
    doc = {"config": asdict(cfg), "label": cfg.label, "world_size": world, "data": display_path(root),
           "classes": classes,
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
    rank, world, _ = launch_env()
    if rank == 0:
        print(f"{cfg.label}: best epoch {result.best_epoch}, top-1 error {100 * result.best_valid_error:.2f}%")
    if world > 1:
        # A torchrun worker whose work is done and written (metrics and checkpoints are closed files, the process
        # group destroyed) ends here, without the interpreter's teardown: with gloo's threads about, that teardown
        # once aborted a rank ("terminate called without an active exception") after a complete run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
