"""``python -m qnnlib bench imagenet``: is the ImageNet data path the bottleneck of training? Images per second.

Three numbers, measured in one run on a generated ImageNet-layout folder of JPEGs
(:func:`qnnlib.data.imagenet.make_fake_imagenet`, ImageNet-like sizes around 400×350 px):

* **data path** — one epoch of the training loader alone (JPEG decode, random-resized crop to ``size``, flip,
  normalisation) with 0 and ``workers`` worker processes;
* **training step** — forward, backward and Adam step of the network on random tensors of that size (no data
  path), in this process;
* **whole run, 1 vs 2 processes** — ``python -m qnnlib imagenet`` (one process) and ``torchrun
  --nproc_per_node=2`` (gloo, DistributedDataParallel) on the same folder for one epoch: images of the training loop
  per second of the training loop (``train_time_s`` of the run's history, rank 0).

The data path is not the bottleneck when its images/s exceed the training step's. On a machine with few cores the
workers and the training compete for the same cores, so the whole run is slower than either alone; the benchmark
prints the no-overlap estimate 1/(1/data + 1/step) beside it. On a CPU the two processes share
the same cores (each gets ``OMP_NUM_THREADS=1`` from torchrun), so the 2-process figure measures the DDP overhead
(gradient all-reduce, sharded sampler), not a speed-up. On a CUDA machine the same command reports images/s per GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from qnnlib.data.imagenet import imagenet_loaders, make_fake_imagenet
from qnnlib.models.alexnet import alexnet_qnn
from qnnlib.runtime.hardware import cpu_model

__all__ = ["data_throughput", "step_throughput", "run_throughput", "run"]


def data_throughput(root: Path, *, workers: int, size: int = 224, batch: int = 32) -> float:
    """Images per second of one epoch of the training loader over ``root`` (decode and augmentation only)."""
    train, _ = imagenet_loaders(root, batch_size=batch, workers=workers, size=size, resize=max(size, 256), seed=0)
    train.sampler.set_epoch(0)  # type: ignore[attr-defined]
    t, n = time.perf_counter(), 0
    for x, _y in train:
        n += x.shape[0]
    return n / (time.perf_counter() - t)


def step_throughput(model: torch.nn.Module, *, batch: int = 32, size: int = 224, steps: int = 5,
                    classes: int = 10) -> float:
    """Images per second of training steps (forward, backward, Adam) on random tensors; one warm-up step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def run_throughput(data_env: str, out: Path, nproc: int, sets: list[str], train_images: int) -> float:
    """Images/s of the training loop of one epoch of ``python -m qnnlib imagenet`` (``torchrun`` when ``nproc > 1``)."""
    base = [sys.executable]
    if nproc > 1:
        base += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*base, "-m", "qnnlib", "imagenet", "--profile", "smoke", "--out", str(out), "--no-progress", *sets,
           "--set", "nproc", str(nproc)]
    env = {**os.environ, "QNNLIB_DATA": data_env}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    doc = json.loads(next(out.glob("*.json")).read_text())
    return train_images / doc["history"][0]["train_time_s"]


def run(*, classes: int = 4, per_class: int = 32, size: int = 224, batch: int = 16, workers: int = 2,
        width: float = 0.25, fc: int = 512) -> int:
    """Print the three throughputs (module docstring) for a ``width``-scaled AlexNet W1/A2 at ``size`` px."""
    with tempfile.TemporaryDirectory(prefix="qnnlib-bench-imagenet-") as tmp:
        data_env = str(Path(tmp) / "data")
        fake_classes, val = classes, 1
        # the same folder the runs below generate for themselves (their fake_root under QNNLIB_DATA)
        root = Path(data_env) / "fake-imagenet" / f"{fake_classes}x{per_class}+{val}-seed0"
        make_fake_imagenet(root, fake_classes, per_class, val, size=(300, 500), seed=0)
        n_train = classes * per_class
        print(f"ImageNet throughput, AlexNet W1/A2 x{width:g} (fc {fc}), {size} px crops, batch {batch}, "
              f"{n_train} generated JPEGs (300-500 px), {cpu_model()}, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}")
        d0 = data_throughput(root, workers=0, size=size, batch=batch)
        dw = data_throughput(root, workers=workers, size=size, batch=batch)
        torch.manual_seed(0)
        model = alexnet_qnn(1, 2, width=width, fc=fc, num_classes=classes, image_size=size)
        st = step_throughput(model, batch=batch, size=size, classes=classes)
        sets = [x for k, v in (("width", width), ("fc", fc), ("image_size", size), ("resize", max(size, 256)),
                               ("epochs", 1), ("batch_size", batch), ("workers", workers),
                               ("fake_classes", classes), ("fake_train_per_class", per_class),
                               ("fake_val_per_class", val)) for x in ("--set", k, json.dumps(v))]
        r1 = run_throughput(data_env, Path(tmp) / "out1", 1, sets, n_train)
        r2 = run_throughput(data_env, Path(tmp) / "out2", 2, sets, n_train)
    print(f"  data path, 0 workers        : {d0:8.1f} images/s")
    print(f"  data path, {workers} workers        : {dw:8.1f} images/s")
    print(f"  training step (no data)     : {st:8.1f} images/s")
    print(f"  whole run, 1 process        : {r1:8.1f} images/s")
    print(f"  whole run, 2 processes (DDP): {r2:8.1f} images/s  ({r2 / r1:.2f}x the 1-process run)")
    shared = 1.0 / (1.0 / dw + 1.0 / st)
    print(f"  on {os.cpu_count()} cores the loader workers and the training share the CPU: without overlap "
          f"1/(1/{dw:.0f} + 1/{st:.0f}) = {shared:.0f} images/s")
    verdict = "is not" if dw > st else "IS"
    print(f"  the data path ({dw:.0f} images/s with {workers} workers) {verdict} the bottleneck of the training "
          f"step ({st:.0f} images/s)")
    return 0
