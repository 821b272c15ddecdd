"""Running an experiment: n seeds per configuration, resumable checkpoints, saved models, rows with mean ± std.

Every experiment trains through :func:`train_seeds`: one :func:`qnnlib.train.fit` per seed, each with its
own checkpoint directory (so an interrupted notebook resumes where it stopped), the first seed's model
kept for later notebooks. :func:`summary` turns the per-seed numbers into the ``mean``, ``std`` and ``n``
every comparison row carries (``n = 1`` rows have no spread: ``std`` is ``None``).

Where files go, under the data root ``$QNNLIB_DATA`` (:mod:`qnnlib.data.root`):

* ``checkpoints/<profile>/<experiment>/<tag>-s<seed>/last.pt`` — per-epoch training checkpoints, and beside it
  ``snapshot-epoch<e>.pt`` — the weights after epoch ``e`` (``0``: at initialisation) for the epochs a run asks
  for (:func:`train_seeds` ``snapshot_epochs``: how a statistic of the weights moves with training);
* ``models/<profile>/<experiment>_<name>.pt`` — the trained model a later notebook loads
  (:func:`save_model` / :func:`load_model`: a plain dict of tensors, strings and numbers, read with
  ``torch.load(weights_only=True)``, so no pickled code travels with it).
"""

from __future__ import annotations

import math
import shutil
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from qnnlib.data.root import DATA_ENV, data_root
from qnnlib.files import UnreadableFileError, atomic_write, unreadable, writable_dir
from qnnlib.train import FitResult, TrainConfig, fit

__all__ = ["SeedRun", "Run", "seeds_from", "checkpoint_dir", "model_path", "snapshot_path", "cpu_state_dict",
           "train_seeds", "load_snapshots", "summary", "history_frame", "save_model", "load_model", "SavedModelError"]


@dataclass
class SeedRun:
    """One trained seed: the model (best-validation weights) and the fit outcome."""

    seed: int
    model: nn.Module
    result: FitResult
    snapshots: dict[int, Path] = field(default_factory=dict)  # epoch -> snapshot file (train_seeds snapshot_epochs)


@dataclass
class Run:
    """A configuration trained with one or more seeds (``runs[0]`` is the first seed)."""

    name: str
    config: Any  # the experiment's per-run config (e.g. a recipe)
    runs: list[SeedRun] = field(default_factory=list)

    @property
    def model(self) -> nn.Module:
        """The first seed's model (the one saved for later notebooks)."""
        return self.runs[0].model

    @property
    def result(self) -> FitResult:
        """The first seed's fit result."""
        return self.runs[0].result

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in self.runs)

    def values(self, metric: Callable[[FitResult], float]) -> list[float]:
        """``metric(result)`` of every seed."""
        return [float(metric(r.result)) for r in self.runs]


def seeds_from(first: int, n: int) -> tuple[int, ...]:
    """The seeds of an ``n``-seed experiment: ``first, first + 1, ..., first + n − 1``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n!r}")
    return tuple(first + i for i in range(n))


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """``{"mean", "std", "n"}`` of per-seed values; ``std`` is the sample standard deviation, ``None`` for n = 1."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summary of no values")
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None, "n": len(vals)}


def checkpoint_dir(profile: str, experiment: str, tag: str) -> Path:
    """``$QNNLIB_DATA/checkpoints/<profile>/<experiment>/<tag>`` (resumable training state)."""
    return data_root() / "checkpoints" / profile / experiment / tag


def model_path(profile: str, experiment: str, name: str) -> Path:
    """``$QNNLIB_DATA/models/<profile>/<experiment>_<name>.pt``: a trained model for later notebooks."""
    return data_root() / "models" / profile / f"{experiment}_{name}.pt"


def snapshot_path(ck: Path, epoch: int) -> Path:
    """``<checkpoint dir>/snapshot-epoch<epoch>.pt``: the weights after ``epoch`` epochs (0: at initialisation)."""
    return ck / f"snapshot-epoch{epoch:04d}.pt"


def _check_snapshot_epochs(epochs: Iterable[int], n_epochs: int) -> tuple[int, ...]:
    out = tuple(sorted(set(epochs)))
    for e in out:
        if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= n_epochs:
            raise ValueError(f"snapshot_epochs must be integers in [0, {n_epochs}] (0 = at initialisation, "
                             f"{n_epochs} = the last epoch), got {e!r}")
    return out


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model.state_dict()`` on the CPU, detached: a snapshot later training does not change."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _save_snapshot(path: Path, model: nn.Module) -> None:
    with atomic_write(path, "wb") as fh:
        torch.save(cpu_state_dict(model), fh)


def train_seeds(name: str, config: Any, build: Callable[[int], nn.Module], data: Any, train: TrainConfig,
                seeds: Iterable[int], *, checkpoint_tag: str | None = None, profile: str = "",
                experiment: str = "", resume: bool = True, progress: bool = True,
                snapshot_epochs: Iterable[int] = ()) -> Run:
    """Train ``build(seed)`` on ``data`` once per seed with ``train`` (its ``seed`` replaced by each seed).

    With ``checkpoint_tag`` each seed checkpoints under :func:`checkpoint_dir` ``(profile, experiment,
    f"{checkpoint_tag}-s{seed}")``; ``resume=False`` deletes an existing checkpoint first. ``snapshot_epochs``
    (needs ``checkpoint_tag``) saves the weights after each listed epoch (``0``: the initial weights) beside the
    checkpoint (:func:`snapshot_path`), so a resumed run keeps the snapshots of its earlier epochs; each
    :class:`SeedRun` lists them in ``snapshots`` (:func:`load_snapshots` reads them).
    """
    wanted = _check_snapshot_epochs(snapshot_epochs, train.epochs)
    if wanted and checkpoint_tag is None:
        raise ValueError("snapshot_epochs needs a checkpoint_tag: the snapshots are kept beside the checkpoint")
    run = Run(name, config)
    for seed in seeds:
        tc = replace(train, seed=seed, progress=progress)
        ck: Path | None = None
        if checkpoint_tag is not None:
            ck = checkpoint_dir(profile, experiment, f"{checkpoint_tag}-s{seed}")
            if not resume and ck.exists():
                shutil.rmtree(ck)
            tc = replace(tc, checkpoint_dir=str(ck))
        model = build(seed)
        hook = None
        if ck is not None and wanted:
            writable_dir(ck, WHERE_TO_WRITE)
            if 0 in wanted and not snapshot_path(ck, 0).is_file():
                _save_snapshot(snapshot_path(ck, 0), model)

            def hook(epoch: int, row: dict[str, Any], model: nn.Module = model, ck: Path = ck) -> None:
                if epoch + 1 in wanted:
                    _save_snapshot(snapshot_path(ck, epoch + 1), model)

        result = fit(model, data, tc, desc=name if len(run.runs) == 0 else f"{name} s{seed}", on_epoch_end=hook)
        snaps = {e: snapshot_path(ck, e) for e in wanted if ck is not None and snapshot_path(ck, e).is_file()}
        lost = [e for e in wanted if e not in snaps]
        if lost:  # resumed from a checkpoint written before these epochs were asked for: they cannot be remade
            warnings.warn(f"{name} seed {seed}: no weight snapshots of epochs {lost} in {ck}: the run resumed from "
                          "a checkpoint that had already passed them. Rerun with resume=False (or delete that "
                          "directory) to keep them.", stacklevel=2)
        run.runs.append(SeedRun(seed, model, result, snaps))
    return run


def load_snapshots(snapshots: Mapping[int, Path]) -> dict[int, dict[str, torch.Tensor]]:
    """The state dicts of :attr:`SeedRun.snapshots` (``weights_only``), by epoch."""
    out = {}
    for epoch, path in sorted(snapshots.items()):
        try:
            out[int(epoch)] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated or foreign file
            err = unreadable(path, exc, "Delete it and rerun the training with resume=False", "weight snapshot")
            raise SavedModelError(str(err), path) from exc
    return out


def history_frame(runs: dict[str, Run], metrics: Sequence[str] = ("train_loss", "train_error", "valid_error",
                                                                   "test_error", "lr")) -> pd.DataFrame:
    """Long-form per-epoch history of every run and seed (for seaborn): run, seed, epoch, metric, value.

    Values not computed in an epoch (the test split is evaluated only when validation improved) are
    dropped, not plotted as zeros.
    """
    recs = []
    for label, run in runs.items():
        for sr in run.runs:
            for h in sr.result.history:
                for k in metrics:
                    v = h.get(k)
                    if v is not None and not (isinstance(v, float) and math.isnan(v)):
                        recs.append({"run": label, "seed": sr.seed, "epoch": h["epoch"], "metric": k, "value": v})
    return pd.DataFrame.from_records(recs, columns=["run", "seed", "epoch", "metric", "value"])


# ----------------------------------------------------------------------------------- saved models
class SavedModelError(UnreadableFileError):
    """A saved model file is unreadable or not in this version's format."""


WHERE_TO_WRITE = f"set {DATA_ENV} to a writable directory (it holds the checkpoints and saved models)"


def save_model(path: Path, model: nn.Module, **meta: Any) -> Path:
    """Write ``{"state_dict", **meta}`` (meta: JSON-like dicts/lists/strings/numbers) atomically to ``path``."""
    writable_dir(path.parent, WHERE_TO_WRITE)
    with atomic_write(path, "wb") as fh:
        torch.save({"format": "qnnlib.model/1", "state_dict": model.state_dict(), **meta}, fh)
    return path


def load_model(path: Path, how_to_make: str) -> dict[str, Any]:
    """Read a file of :func:`save_model` (``weights_only``); errors say which file and how to remake it."""
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}; {how_to_make}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated file, old pickled format, ...
        err = unreadable(path, exc, f"Delete it and {how_to_make}", "saved model")
        raise SavedModelError(str(err), path) from exc
    if not isinstance(saved, dict) or saved.get("format") != "qnnlib.model/1":
        raise SavedModelError(f"{path} is not a qnnlib.model/1 file (written by another version); delete it and "
                              f"{how_to_make}", path)
    return saved
