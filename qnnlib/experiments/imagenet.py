"""Notebook 04: ImageNet QNNs (AlexNet, GoogLeNet) — config, profiles, the launch of the run, rows, sanity bounds.

The paper's large-scale rows (docs/paper.md §1.2): AlexNet with 1-bit weights and 1- or 2-bit activations (and
6-bit gradients), GoogLeNet at 1/1, 4/4 and 6/6/6 bits. Nobody trains ImageNet on two CPU cores, so the full run is
made real for users with GPUs (:mod:`qnnlib.experiments.imagenet_run`: one process, or many under ``torchrun``
with DistributedDataParallel) and the pipeline is proven here at small scale:

* :class:`ImagenetConfig` — model, bits, data, schedule, processes; :data:`PROFILES` (``smoke``: a generated
  ImageNet-layout folder of synthetic JPEGs and a tiny AlexNet; ``quick``: a real subset such as Imagenette when
  ``$QNNLIB_IMAGENET`` names one, else a larger generated folder, on 2 processes; ``paper``: ILSVRC-2012 on GPUs);
* :func:`launch` — the notebook's side: the run as a subprocess (``python -m qnnlib imagenet`` or ``torchrun``),
  its output streamed, its metrics document returned; :func:`table_rows`, :func:`write_metrics`,
  :func:`check_sanity`.

Numbers on the generated folder or a subset are named so (``fake-imagenet``, ``imagenet-subset``) and never
compared with the paper's ImageNet numbers as such.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.checks import check_positive
from qnnlib.data.root import data_root, display_path
from qnnlib.models.alexnet import alexnet_qnn
from qnnlib.models.blocks import imagenet_precision
from qnnlib.models.googlenet import googlenet_qnn

__all__ = ["MODELS", "ImagenetConfig", "PROFILES", "SANITY", "Sanity", "PAPER_ROWS", "build_model", "fake_root",
           "paper_row", "run_dir", "command", "launch", "dataset_name", "table_rows", "write_metrics", "findings", "check_sanity"]

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
    htanh_bound: float = 1.0  # > 1: QNN's "relaxed hard-tanh boundaries" (models.blocks.act_layer)
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
    resume: bool = True  # the notebook's launch: False starts afresh (deletes the run's checkpoint and metrics)

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
        check_positive(self.width, "width")
        imagenet_precision(self.weight_bits, self.act_bits, self.grad_bits)  # the bits (ValueError naming the field)
        if isinstance(self.htanh_bound, bool) or not isinstance(self.htanh_bound, (int, float)) or \
                not self.htanh_bound >= 1:
            raise ValueError(f"htanh_bound must be a number >= 1 (1: the paper's hard-tanh), got {self.htanh_bound!r}")

    @property
    def label(self) -> str:
        """E.g. ``"AlexNet W1/A2"`` or ``"GoogLeNet W6/A6/G6"`` (32 = float)."""
        bits = [f"W{self.weight_bits or 32}", f"A{self.act_bits or 32}"]
        if self.grad_bits is not None:
            bits.append(f"G{self.grad_bits}")
        relaxed = f", relaxed Htanh ±{self.htanh_bound:g}" if self.htanh_bound != 1 else ""
        return f"{'AlexNet' if self.model == 'alexnet' else 'GoogLeNet'} {'/'.join(bits)}{relaxed}"

    @property
    def name(self) -> str:
        """File-name form of :attr:`label`, e.g. ``alexnet-w1a2``."""
        g = "" if self.grad_bits is None else f"g{self.grad_bits}"
        r = "" if self.htanh_bound == 1 else f"-htanh{self.htanh_bound:g}"
        return f"{self.model}-w{self.weight_bits or 32}a{self.act_bits or 32}{g}{r}"


PROFILES: dict[str, ImagenetConfig] = {
    # smoke: a generated folder (4 classes of synthetic JPEGs), a 1/16-width AlexNet on 64×64 crops, 2 epochs
    "smoke": ImagenetConfig("smoke", width=1 / 16, fc=64, fake=True, image_size=64, resize=72, epochs=2,
                            batch_size=8, lr_start=5e-3, lr_end=1e-3, workers=0, nproc=1, resume=False),
    # quick: a real subset when $QNNLIB_IMAGENET names one (e.g. Imagenette's 10 classes), else the generated folder
    "quick": ImagenetConfig("quick", width=0.25, fc=512, fake=True, fake_classes=10, fake_train_per_class=40,
                            fake_val_per_class=10, image_size=112, resize=128, epochs=5, batch_size=32,
                            lr_start=5e-3, lr_end=5e-4, workers=2, nproc=2),
    # paper: ILSVRC-2012 in full on GPUs, AlexNet 1/2 bits; the schedule of the authors' later PyTorch code is
    # not the paper's (which gives none): Adam 5e-3 decayed to 5e-5 over 60 epochs, global batch 256
    "paper": ImagenetConfig("paper", epochs=60, batch_size=256, workers=8, nproc=8),
}


def build_model(cfg: ImagenetConfig, num_classes: int = 1000) -> nn.Module:
    """The network of ``cfg`` (:func:`qnnlib.models.alexnet.alexnet_qnn`, :func:`qnnlib.models.googlenet.googlenet_qnn`),
    initialised from ``cfg.seed`` (every rank builds the same weights)."""
    torch.manual_seed(cfg.seed)
    common = dict(float_first=cfg.float_first, float_last=cfg.float_last, width=cfg.width, num_classes=num_classes,
                  htanh_bound=cfg.htanh_bound)
    if cfg.model == "alexnet":
        return alexnet_qnn(cfg.weight_bits, cfg.act_bits, cfg.grad_bits, fc=cfg.fc, image_size=cfg.image_size,
                           **common)  # type: ignore[arg-type]
    return googlenet_qnn(cfg.weight_bits, cfg.act_bits, cfg.grad_bits, **common)  # type: ignore[arg-type]


def fake_root(cfg: ImagenetConfig) -> Path:
    """Where ``cfg.fake`` data lives: ``$QNNLIB_DATA/fake-imagenet/<classes>x<train>+<val>-seed<seed>``."""
    return (data_root() / "fake-imagenet" /
            f"{cfg.fake_classes}x{cfg.fake_train_per_class}+{cfg.fake_val_per_class}-seed{cfg.seed}")


# ------------------------------------------------------------------------------------------ the notebook's side
PAPER_ROWS: dict[tuple[str, int | None, int | None, int | None], str] = {
    ("alexnet", 1, 1, None): "AlexNet BNN (W1/A1)",
    ("alexnet", 1, 2, None): "AlexNet QNN (W1/A2)",
    ("alexnet", 1, 2, 6): "AlexNet QNN (W1/A2/G6)",
    ("alexnet", None, None, None): "AlexNet float (W32/A32)",
    ("googlenet", 1, 1, None): "GoogleNet BNN (W1/A1)",
    ("googlenet", 4, 4, None): "GoogleNet QNN (W4/A4)",
    ("googlenet", 6, 6, 6): "GoogleNet QNN (W6/A6/G6)",
    ("googlenet", None, None, None): "GoogleNet float (W32/A32)",
}
"""The paper's ImageNet row (:mod:`qnnlib.experiments.paper`) of each (model, weight, activation, gradient bits)."""


def paper_row(config: dict[str, Any]) -> str | None:
    """The paper's row for a run's config (as stored: ``asdict(ImagenetConfig)``): :data:`PAPER_ROWS`, and for the
    1/1-bit AlexNet with relaxed hard-tanh boundaries the QNN row that used them; ``None`` if the paper has none."""
    key = (config["model"], config["weight_bits"], config["act_bits"], config["grad_bits"])
    if config.get("htanh_bound", 1.0) != 1.0:
        return "AlexNet QNN (W1/A1, relaxed Htanh)" if key == ("alexnet", 1, 1, None) else None
    return PAPER_ROWS.get(key)


@dataclass(frozen=True)
class Sanity:
    """What notebook 04 checks at the end."""

    min_top1_over_chance: float  # top-1 accuracy at least this many times the chance level (1 / classes)


SANITY: dict[str, Sanity] = {
    "smoke": Sanity(min_top1_over_chance=0.0),  # two epochs on 32 images prove the pipeline, not learning
    "quick": Sanity(min_top1_over_chance=1.5),
    "paper": Sanity(min_top1_over_chance=100.0),  # ImageNet: 1000 classes, chance 0.1%, so > 10% top-1
}


def run_dir(cfg: ImagenetConfig) -> Path:
    """Where the notebook's runs keep their metrics and checkpoints: ``$QNNLIB_DATA/runs/<profile>/imagenet``."""
    return data_root() / "runs" / cfg.profile / "imagenet"


def command(cfg: ImagenetConfig, out_dir: Path, python: str = sys.executable) -> list[str]:
    """The command that trains ``cfg``: ``python -m qnnlib imagenet ...`` for one process, ``python -m
    torch.distributed.run --standalone --nproc_per_node=N -m qnnlib imagenet ...`` (torchrun) for ``cfg.nproc > 1``;
    every field that differs from the profile's goes as ``--set field json``."""
    base = PROFILES[cfg.profile]
    sets = [x for k, v in asdict(cfg).items() if k != "profile" and v != getattr(base, k)
            for x in ("--set", k, json.dumps(v))]
    args = ["-m", "qnnlib", "imagenet", "--profile", cfg.profile, "--out", str(out_dir), "--no-progress", *sets]
    if cfg.nproc > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}", *args]
    return [python, *args]


def launch(cfg: ImagenetConfig, out_dir: Path | None = None, *, echo: bool = True) -> dict[str, Any]:
    """Run :func:`command` as a subprocess (so it works under Papermill and torchrun can start its workers), print
    its output as it comes, and return the run's metrics document. ``cfg.resume=False`` first deletes the run's
    checkpoint and metrics. Raises ``RuntimeError`` with the output's tail when the run fails."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    if not cfg.resume:
        shutil.rmtree(out / "checkpoints" / cfg.name, ignore_errors=True)
        (out / f"{cfg.name}.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(cfg, out)
    if echo:
        print("$ python " + " ".join(cmd[1:]), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line])[-60:]
            if echo:
                print(line, end="", flush=True)
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"the ImageNet run failed (exit code {rc}): {' '.join(cmd)}\n" + "".join(tail))
    return json.loads((out / f"{cfg.name}.json").read_text())


def dataset_name(doc: dict[str, Any]) -> str:
    """``fake-imagenet`` (the generated folder), ``imagenet`` (1000 classes, no subset) or
    ``imagenet-subset`` (anything smaller, e.g. Imagenette): the name the rows and the summary compare by."""
    c = doc["config"]
    if c["fake"]:
        return "fake-imagenet"
    return "imagenet" if doc.get("classes") == 1000 and c["train_subset"] is None else "imagenet-subset"


def table_rows(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``metrics["rows"]``: top-1 and top-5 accuracy % at the best validation epoch of every run, each with
    the paper's row of the same network and bits (``paper_key``), when the paper has one."""
    rows = []
    for d in docs:
        c = d["config"]
        key = paper_row(c)
        note = (f"{d['world_size']} process(es), {len(d['history'])} epochs, width {c['width']:g}, "
                f"{c['image_size']} px crops; first/last layers {'float' if c['float_first'] else 'quantized'}/"
                f"{'float' if c['float_last'] else 'quantized'}")
        for metric in ("top1", "top5"):
            r = {"row": d["label"], "metric": f"{'top-1' if metric == 'top1' else 'top-5'} %", "value": d[metric],
                 "dataset": dataset_name(d), "note": note}
            if key is not None:
                r["paper_key"] = f"imagenet:{key}:{r['metric']}"
            rows.append(r)
    return rows


def write_metrics(cfg: ImagenetConfig, docs: Sequence[dict[str, Any]], wall_time_s: float) -> Path:
    """Write ``results/<profile>/imagenet.json``: rows, every run's document (config, history, top-1/top-5)."""
    from qnnlib.experiments import results  # noqa: PLC0415 - results imports pandas
    from qnnlib.experiments.paper import PAPER_BY_KEY  # noqa: PLC0415

    rows = [r for r in table_rows(docs) if r.get("paper_key") in PAPER_BY_KEY or "paper_key" not in r]
    history = {d["label"]: d["history"] for d in docs}
    data = docs[0]
    return results.write_metrics("imagenet", cfg.profile, config=asdict(cfg), metrics={"rows": rows, "runs": list(docs)},
                                 history=history, dataset={"name": dataset_name(data), "root": data["data"]},
                                 wall_time_s=wall_time_s)


def check_sanity(cfg: ImagenetConfig, docs: Sequence[dict[str, Any]], metrics_json: Path | None = None) -> list[str]:
    """Assert every run finished its epochs with finite numbers and beats ``min_top1_over_chance`` × chance; the
    metrics JSON exists. Returns the checks that passed."""
    if cfg.profile not in SANITY:
        raise ValueError(f"no sanity bounds for profile {cfg.profile!r}; known: {tuple(SANITY)}")
    b, passed = SANITY[cfg.profile], []
    for d in docs:
        assert d["finished"] and len(d["history"]) == d["config"]["epochs"], f"{d['label']}: the run did not finish"
        chance = 100.0 / d["classes"]
        assert d["top1"] is not None and d["top1"] >= b.min_top1_over_chance * chance, (
            f"{d['label']}: top-1 {d['top1']}% < {b.min_top1_over_chance} x chance ({chance:.2f}%)")
        passed.append(f"{d['label']}: {len(d['history'])} epochs, top-1 {d['top1']:.2f}% >= "
                      f"{b.min_top1_over_chance} x chance ({chance:.2f}%)")
    if metrics_json is not None:
        assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
        passed.append(f"{display_path(metrics_json)} written")
    return passed


def findings(docs: Sequence[dict[str, Any]]) -> list[str]:
    """What notebook 04 prints under "What we found" (every number from the runs)."""
    out = []
    for d in docs:
        c, h = d["config"], d["history"]
        per_epoch = [r.get("epoch_time_s") for r in h if r.get("epoch_time_s")]
        chance = 100.0 / d["classes"]
        out.append(f"{d['label']} on {dataset_name(d)} ({d['classes']} classes, {d['world_size']} process(es)): "
                   f"top-1 {d['top1']:.2f}% and top-5 {d['top5']:.2f}% at epoch {d['best_epoch']} of {len(h)} "
                   f"(chance: {chance:.2f}%); {sum(per_epoch) / max(len(per_epoch), 1):.1f} s per epoch.")
        key = paper_row(c)
        if key and dataset_name(d) != "imagenet":
            out.append(f"The paper's row ({key}) is ILSVRC-2012 with 1000 classes: these numbers test the pipeline, "
                       "not the claim.")
    return out
