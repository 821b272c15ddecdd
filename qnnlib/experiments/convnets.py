"""The ConvNet columns of Table 1 (CIFAR-10, SVHN): recipes, data with its preprocessing, the notebook's steps.

Notebooks 02 (CIFAR-10) and 03 (SVHN) are two configs of this module (:mod:`qnnlib.experiments.cifar10`,
:mod:`qnnlib.experiments.svhn`) on the Table 1 core (:mod:`qnnlib.experiments.table1`): the paper's VGG-like
ConvNet (:func:`qnnlib.models.convnet.convnet`, pooling before BN) trained by five recipes, as in notebook 01:

* ``theano`` — the Theano code (MatthieuCourbariaux/BinaryNet ``Train-time/cifar10.py`` / ``svhn.py``):
  deterministic BNN, Lasagne's BN and Adam with Glorot LR scaling, exponential LR decay, batch 50, inputs
  ``2/255·pixel − 1``, best epoch by ``val <= best``;
* ``torch7`` — the Torch7 code (itayhubara/BinaryNet ``Main_BinaryNet_Cifar10.lua`` / ``_SVHN.lua`` and their
  model files): stochastic activations, shift-based BN with its own backward, the Torch7 shift-based AdaMax
  (β 0.9/0.999, AP2(v)+ε state, Glorot factors rounded to powers of two after the step, biases × γ, BN × 1),
  batch 200, LR halved every 50 (CIFAR-10) or 20 (SVHN) epochs, every parameter clipped on CIFAR-10, output BN ε
  1e-5, biases U(±1/√fan_in), and its preprocessing: ZCA whitening (CIFAR-10, twice as the code does) or GCN +
  LCN (SVHN) (:func:`qnnlib.data.preprocess.preprocess`);
* ``theano-paper`` / ``torch7-paper`` — the same networks and schedules with the paper's text where it differs
  (docs/decisions.md D24): torch's Adam and BN, Alg. 2, autograd through shift-BN, inputs in [−1, 1];
* ``float`` — the ``theano-paper`` network and schedule in float32 without Glorot scaling.

Stand-in policy: ``dataset="auto"`` uses the real dataset when its files are present or downloadable, else
Fashion-MNIST padded to 32×32 (:func:`qnnlib.data.standin.padded_stand_in`) with a warning; the dataset name,
and what it stands in for, travel into every table, JSON and figure, so stand-in numbers are never compared
with the paper's column.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.data.cifar10 import load_cifar10
from qnnlib.data.download import DatasetNotFoundError
from qnnlib.data.preprocess import preprocess
from qnnlib.data.root import data_root, display_path
from qnnlib.data.splits import DatasetSplits, Split
from qnnlib.data.standin import padded_stand_in
from qnnlib.data.svhn import load_svhn
from qnnlib.experiments import runner, table1
from qnnlib.experiments.config import as_dict
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.convnet import convnet
from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.train import TrainConfig

__all__ = ["RECIPES", "LABELS", "PAPER_ROW", "SNAPSHOT_RECIPES", "InputRange", "ConvRecipe", "ConvConfig", "Sanity", "Schedule",
           "make_recipes", "load_data", "build_model", "run_recipes", "table_rows", "findings", "write_metrics",
           "check_sanity"]

RECIPES = ("float", "theano", "torch7", "theano-paper", "torch7-paper")
LABELS = {"float": "Float baseline (ours)", "theano": "BNN (Theano)", "torch7": "BNN (Torch7)",
          "theano-paper": "BNN (Theano, paper text)", "torch7-paper": "BNN (Torch7, paper text)"}
PAPER_ROW = {"theano": "BNN (Theano)", "torch7": "BNN (Torch7)", "theano-paper": "BNN (Theano)",
             "torch7-paper": "BNN (Torch7)"}
"""The paper's Table 1 row each recipe is compared with (the float network has no row in these columns)."""
SNAPSHOT_RECIPES = ("theano", "torch7")
"""The recipes whose weights are kept at ``ConvConfig.snapshot_epochs`` (the authors' codes, whose trained models
notebook 08 counts filters on)."""
InputRange = Literal["pm1", "torch7-cifar10", "torch7-svhn"]


@dataclass(frozen=True)
class ConvRecipe:
    """One trained ConvNet: conv widths, FC width, precision, training, model options, input preprocessing."""

    name: str
    channels: tuple[int, int, int]
    fc: int
    precision: Precision
    train: TrainConfig
    options: ModelOptions = field(default_factory=ModelOptions)
    input_range: InputRange = "pm1"  # qnnlib.data.preprocess.preprocess rule
    follows: Literal["code", "paper-text"] = "paper-text"

    def __post_init__(self) -> None:
        if len(self.channels) != 3:
            raise ValueError(f"channels must be three conv widths, got {self.channels!r}")
        if self.input_range not in ("pm1", "torch7-cifar10", "torch7-svhn"):
            raise ValueError(f"input_range must be 'pm1', 'torch7-cifar10' or 'torch7-svhn', got {self.input_range!r}")
        if self.follows not in ("code", "paper-text"):
            raise ValueError(f"follows must be 'code' or 'paper-text', got {self.follows!r}")

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class Schedule:
    """The per-dataset training settings of the two codes (docs/paper.md §2.10)."""

    theano_batch: int  # Train-time/*.py batch_size
    theano_lr: tuple[float, float]  # LR_start, LR_fin (exponential decay over the epochs)
    torch7_batch: int  # Main_BinaryNet_*.lua -batchSize
    torch7_lr: float  # -LR
    torch7_halve_every: int  # the main loop's `epoch % k == 0` halving
    torch7_clip: Literal["latent", "all"]  # the model file's clip vector
    torch7_inputs: InputRange


@dataclass(frozen=True)
class ConvConfig(table1.RecipeSet):
    """Notebook 02 or 03: the dataset, its sizes, which recipes, how many seeds, each recipe's settings."""

    profile: str
    experiment: Literal["cifar10", "svhn"]
    dataset: Literal["cifar10", "svhn", "fashion-mnist", "auto"]
    train_size: int | None
    valid_size: int | None
    test_size: int | None
    recipes: tuple[str, ...]
    recipe_configs: Mapping[str, ConvRecipe] = field(default_factory=dict)
    extra: bool = False  # SVHN's extra_32x32.mat (the paper profile)
    n_seeds: int = 1
    resume: bool = True
    # epochs after which the binary recipes' weights are kept (0 = at initialisation): notebook 08 follows the
    # filter repetition of the trained ConvNet through training on them (see snapshots_of)
    snapshot_epochs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.check_recipe_set()
        for e in self.snapshot_epochs:
            if isinstance(e, bool) or not isinstance(e, int) or e < 0:
                raise ValueError(f"snapshot_epochs must be epochs >= 0 (0 = at initialisation), got "
                                 f"{self.snapshot_epochs!r}")
        if self.dataset not in (self.experiment, "fashion-mnist", "auto"):
            raise ValueError(f"dataset must be {self.experiment!r}, 'fashion-mnist' (the stand-in) or 'auto', "
                             f"got {self.dataset!r}")

    def snapshots_of(self, name: str) -> tuple[int, ...]:
        """The epochs whose weights recipe ``name`` keeps: none unless it is one of :data:`SNAPSHOT_RECIPES` and
        ``snapshot_epochs`` is set; then those of ``snapshot_epochs`` within its epoch count, plus its last epoch
        (so overriding ``epochs`` never asks for an epoch the run does not reach)."""
        if name not in SNAPSHOT_RECIPES or not self.snapshot_epochs:
            return ()
        n = self.recipe(name).train.epochs
        return tuple(sorted({e for e in self.snapshot_epochs if e <= n} | {n}))



@dataclass(frozen=True)
class Sanity:
    """What notebooks 02/03 check at the end (errors are fractions; chance is 0.9)."""

    max_error: float  # every recipe, every seed
    max_gap_vs_float: float  # theano-paper and theano BNNs minus the float network (means)


def make_recipes(s: Schedule, channels: tuple[int, int, int], fc: int, epochs: int, *, lr_end: float | None = None,
                 halve_every: int | None = None, threads: int | None = None) -> dict[str, ConvRecipe]:
    """The five recipes at one width and epoch count (``lr_end``/``halve_every`` compress a reduced schedule)."""
    lr0, lr1 = s.theano_lr
    theano = TrainConfig(epochs=epochs, batch_size=s.theano_batch, optimizer="adam", lr_start=lr0,
                         lr_end=lr_end or lr1, lr_schedule="exp", glorot=True, seed=1234, threads=threads)
    torch7 = TrainConfig(epochs=epochs, batch_size=s.torch7_batch, optimizer="shift_adamax", lr_start=s.torch7_lr,
                         lr_schedule="halve", halve_every=halve_every or s.torch7_halve_every, glorot=True, seed=1234,
                         threads=threads)
    sbn = Precision(1, 1, stochastic=True, norm="sbn")
    code_t7 = replace(torch7, betas=(0.9, 0.999), adamax_state="torch7", glorot_placement="after", glorot_pow2=True,
                      lr_factors="biases", clip=s.torch7_clip)
    return {
        "float": ConvRecipe("float", channels, fc, FLOAT, replace(theano, glorot=False)),
        "theano": ConvRecipe("theano", channels, fc, BINARY,
                             replace(theano, optimizer="lasagne_adam", select_ties="last"),
                             ModelOptions(bn_running="lasagne"), follows="code"),
        "torch7": ConvRecipe("torch7", channels, fc, sbn, code_t7,
                             ModelOptions(sbn_backward="torch7", out_bn_eps=1e-5, bias_init="torch7"),
                             input_range=s.torch7_inputs, follows="code"),
        "theano-paper": ConvRecipe("theano-paper", channels, fc, BINARY, theano),
        "torch7-paper": ConvRecipe("torch7-paper", channels, fc, sbn, torch7),
    }


# ------------------------------------------------------------------------------------------ data
def _load_real(cfg: ConvConfig, download: bool) -> DatasetSplits:
    sizes = dict(train_size=cfg.train_size, valid_size=cfg.valid_size, test_size=cfg.test_size)
    if cfg.experiment == "cifar10":
        return load_cifar10(download=download, **sizes)
    return load_svhn(extra=cfg.extra, download=download, **sizes)


def _stand_in(cfg: ConvConfig) -> DatasetSplits:
    return padded_stand_in(cfg.experiment, train_size=cfg.train_size, valid_size=cfg.valid_size,
                           test_size=cfg.test_size)


def load_data(cfg: ConvConfig, *, download: bool = True) -> DatasetSplits:
    """The dataset of ``cfg`` scaled to [−1, 1]; ``"auto"``: the real dataset if obtainable, else the padded
    Fashion-MNIST stand-in with a warning that says why."""
    if cfg.dataset == "fashion-mnist":
        return _stand_in(cfg)
    if cfg.dataset != "auto":
        return _load_real(cfg, download)
    try:
        return _load_real(cfg, download)
    except DatasetNotFoundError as exc:
        first = str(exc).splitlines()[0]
        warnings.warn(f"dataset='auto': {cfg.experiment} is not available ({first[:300]}); using Fashion-MNIST "
                      f"padded to 32x32 instead. Numbers below are stand-in numbers, not comparable with the "
                      f"paper's {cfg.experiment} column.", stacklevel=2)
        return _stand_in(cfg)


def _raw(split: Split) -> torch.Tensor:
    """Back from ``2/255·pixel − 1`` to the 0..255 pixels (exact: the pixels are integers)."""
    return torch.round((split.x.double() + 1.0) * 127.5)


def preprocessed(data: DatasetSplits, input_range: InputRange, cache_dir: Path | None = None) -> DatasetSplits:
    """``data`` (scaled to [−1, 1]) preprocessed by ``input_range``'s rule (:func:`qnnlib.data.preprocess.preprocess`,
    statistics from the training split; ZCA fits cached under ``cache_dir``)."""
    if input_range == "pm1":
        return data
    parts = preprocess(input_range, *(_raw(s) for s in (data.train, data.valid, data.test)), cache_dir=cache_dir)
    train, valid, test = (replace(s, x=torch.as_tensor(p, dtype=torch.float32))
                          for s, p in zip((data.train, data.valid, data.test), parts))
    return replace(data, train=train, valid=valid, test=test,
                   inputs=f"{data.inputs}; then the {input_range} preprocessing (qnnlib.data.preprocess)")


def build_model(rc: ConvRecipe, in_channels: int = 3, num_classes: int = 10, seed: int | None = None) -> nn.Module:
    """The ConvNet of ``rc`` (32×32 inputs), initialised from ``seed`` (default: the recipe's training seed)."""
    torch.manual_seed(rc.train.seed if seed is None else seed)
    return convnet(rc.channels, rc.fc, precision=rc.precision, in_channels=in_channels, image_size=32,
                   num_classes=num_classes, options=rc.options)


def _describe(rc: ConvRecipe) -> str:
    return f"convs {'/'.join(map(str, rc.channels))}, fc {rc.fc}, batch {rc.train.batch_size}, "


def run_recipes(cfg: ConvConfig, data: DatasetSplits, *, progress: bool = True,
                save_models: bool = True) -> dict[str, runner.Run]:
    """Train every recipe of ``cfg`` (:func:`qnnlib.experiments.table1.run_recipes`); recipes with a Torch7
    preprocessing get ``data`` preprocessed their way (ZCA fits cached under ``$QNNLIB_DATA/cache``); the
    :data:`SNAPSHOT_RECIPES` keep their weights at ``cfg.snapshot_epochs`` in their saved model file."""
    in_channels = int(data.train.x.shape[1])
    cache = data_root() / "cache" / "zca"
    return table1.run_recipes(
        cfg, data, experiment=cfg.experiment, data_range="pm1", describe=_describe, progress=progress,
        save_models=save_models, build=lambda rc, d, s: build_model(rc, in_channels=in_channels, seed=s),
        load=lambda r: preprocessed(data, r, cache),  # type: ignore[arg-type]
        snapshots={r: cfg.snapshots_of(r) for r in cfg.recipes if cfg.snapshots_of(r)})


def table_rows(cfg: ConvConfig, runs: dict[str, runner.Run], data: DatasetSplits) -> list[dict[str, Any]]:
    """Rows for ``metrics["rows"]`` (:func:`qnnlib.experiments.table1.table_rows`)."""
    return table1.table_rows(runs, data, cfg.experiment, PAPER_ROW, _describe)


def findings(cfg: ConvConfig, runs: dict[str, runner.Run], data: DatasetSplits) -> list[str]:
    """What the notebook prints under "What we found" (:func:`qnnlib.experiments.table1.findings`)."""
    return table1.findings(runs, data, cfg.experiment, PAPER_ROW)


def write_metrics(cfg: ConvConfig, runs: dict[str, runner.Run], data: DatasetSplits, wall_time_s: float) -> Path:
    """Write ``results/<profile>/<experiment>.json``: rows (mean ± std over seeds), per-recipe numbers, histories."""
    from qnnlib.experiments import results  # noqa: PLC0415 - results imports pandas

    metrics: dict[str, Any] = {"rows": table_rows(cfg, runs, data)}
    for name, run in runs.items():
        metrics[f"{name}_test_error_at_best"] = run.result.test_error_at_best
        metrics[f"{name}_train_time_s"] = sum(r.result.wall_time_s for r in run.runs)
    history = {(name if i == 0 else f"{name}@seed{sr.seed}"): sr.result.history
               for name, run in runs.items() for i, sr in enumerate(run.runs)}
    return results.write_metrics(cfg.experiment, cfg.profile, config=as_dict(cfg), metrics=metrics, history=history,
                                 dataset=data.describe(), wall_time_s=wall_time_s)


def check_sanity(cfg: ConvConfig, bounds: Mapping[str, Sanity], runs: dict[str, runner.Run],
                 metrics_json: Path | None = None) -> list[str]:
    """Assert ``bounds[cfg.profile]`` on a finished run (:func:`qnnlib.experiments.table1.check_errors`; the
    Theano BNNs against the float network) and that the metrics JSON exists; returns the checks that passed."""
    if cfg.profile not in bounds:
        raise ValueError(f"no sanity bounds for profile {cfg.profile!r}; known: {tuple(bounds)}")
    b = bounds[cfg.profile]
    passed = table1.check_errors(cfg.profile, runs, b.max_error, b.max_gap_vs_float, ("theano", "theano-paper"))
    if metrics_json is not None:
        assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
        passed.append(f"{display_path(metrics_json)} written")
    return passed
