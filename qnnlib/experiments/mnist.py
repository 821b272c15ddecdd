"""Notebook 01: the binarized MLP of Table 1 (MNIST column) — config, profiles, sanity bounds, runs, rows.

Recipes (docs/decisions.md D12 and D24: the two Table 1 rows, each as the authors' code ran it and as the
paper's text states it, plus the float baseline):

* ``theano`` — the Theano code (MatthieuCourbariaux/BinaryNet ``Train-time/mnist.py``): deterministic
  binarization, Lasagne's BN (eval with a moving average of 1/√(biased var + ε)), Lasagne's Adam (ε on the
  uncorrected √v) with Glorot per-layer LR scaling, exponential LR decay 3e-3 → 3e-7, dropout 0.2 (input) /
  0.5 (hidden), 3×4096, batch 100, best epoch by ``val <= best`` (the last tie).
* ``torch7`` — the Torch7 code (itayhubara/BinaryNet ``Main_BinaryNet_MNIST.lua`` and its model and
  optimizer files): stochastic activations at train time, shift-based BN with its hand-written backward,
  shift-based AdaMax as that file does it (β 0.9/0.999, AP2(v)+ε kept in the state, the unrounded Glorot
  factor after the power-of-two step, biases and BN γ scaled too), LR 2^−6 halved every 20 epochs,
  3×2048, no dropout, batch 100, inputs pixel/255 standardised, output BN ε 1e-5, biases U(±1/√fan_in).
* ``theano-paper`` / ``torch7-paper`` — the same networks with the paper's text where it differs from the
  code: torch's Adam and ``nn.BatchNorm``; Alg. 2 (β 1−2⁻³/1−2⁻¹⁰, raw v, γ·η inside the AP2, latent
  weights only), autograd through shift-BN, inputs in [−1, 1], BN ε 1e-4, zero biases.
* ``float`` — the ``theano-paper`` architecture and schedule in float32 (no Glorot scaling, which is meant
  for the ±1 latent weights): the "no binarization" baseline.

Stand-in policy: ``dataset="auto"`` (the ``quick`` default) uses MNIST when its files are present or
downloadable, else Fashion-MNIST with a warning; the dataset's name travels into every table and JSON,
so Fashion-MNIST numbers are never compared with the paper's MNIST column.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from qnnlib.data.download import DatasetNotFoundError
from qnnlib.data.mnist import PM1_INPUTS, load_mnist
from qnnlib.data.root import display_path
from qnnlib.data.splits import DatasetSplits
from qnnlib.experiments import runner, table1
from qnnlib.experiments.config import as_dict, from_dict
from qnnlib.models.blocks import ModelOptions
from qnnlib.models.mlp import mnist_mlp
from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.train import TrainConfig

__all__ = ["RECIPES", "LABELS", "RecipeConfig", "MnistConfig", "Sanity", "PROFILES", "SANITY", "load_data",
           "build_model", "run_recipes", "table_rows", "write_metrics", "check_sanity", "load_trained", "findings",
           "PAPER_ROW"]

EXPERIMENT = "mnist"
RECIPES = ("float", "theano", "torch7", "theano-paper", "torch7-paper")
LABELS = {"float": "Float baseline (ours)", "theano": "BNN (Theano)", "torch7": "BNN (Torch7)",
          "theano-paper": "BNN (Theano, paper text)", "torch7-paper": "BNN (Torch7, paper text)"}
PAPER_ROW = {"theano": "BNN (Theano)", "torch7": "BNN (Torch7)", "theano-paper": "BNN (Theano)",
             "torch7-paper": "BNN (Torch7)", "float": "No regularization"}
"""The paper's Table 1 row each recipe is compared with (the paper-text variants with their code's row)."""


@dataclass(frozen=True)
class RecipeConfig:
    """One trained network: architecture, precision policy and training settings."""

    name: str
    hidden: int
    depth: int
    precision: Precision
    dropout_in: float
    dropout_hidden: float
    train: TrainConfig
    options: ModelOptions = field(default_factory=ModelOptions)  # BN / init rules (code vs paper text)
    input_range: Literal["pm1", "torch7"] = "pm1"  # qnnlib.data.mnist.load_mnist
    follows: Literal["code", "paper-text"] = "paper-text"

    def __post_init__(self) -> None:
        if self.input_range not in ("pm1", "torch7"):
            raise ValueError(f"input_range must be 'pm1' or 'torch7', got {self.input_range!r}")
        if self.follows not in ("code", "paper-text"):
            raise ValueError(f"follows must be 'code' or 'paper-text', got {self.follows!r}")
        for f in ("hidden", "depth"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} must be a positive integer, got {v!r}")
        for f in ("dropout_in", "dropout_hidden"):
            if not 0.0 <= getattr(self, f) < 1.0:
                raise ValueError(f"{f} must be in [0, 1), got {getattr(self, f)!r}")

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class MnistConfig(table1.RecipeSet):
    """Notebook 01: which data, which recipes, how many seeds, and each recipe's settings."""

    profile: str
    dataset: Literal["mnist", "fashion-mnist", "auto"]
    train_size: int | None
    valid_size: int | None
    test_size: int | None
    recipes: tuple[str, ...]
    recipe_configs: Mapping[str, RecipeConfig] = field(default_factory=dict)
    n_seeds: int = 1  # seeds train.seed, train.seed + 1, ... of every recipe
    resume: bool = True

    def __post_init__(self) -> None:
        self.check_recipe_set()

    def resolved(self) -> MnistConfig:
        """Only the selected recipes' settings (what is printed and stored)."""
        if set(self.recipe_configs) == set(self.recipes):
            return self
        return replace(self, recipe_configs={r: self.recipe_configs[r] for r in self.recipes})



def _recipe(name: str, hidden: int, epochs: int, halve_every: int = 20, lr_end: float = 3e-7,
            threads: int | None = None) -> RecipeConfig:
    theano = TrainConfig(epochs=epochs, batch_size=100, optimizer="adam", lr_start=3e-3, lr_end=lr_end,
                         lr_schedule="exp", glorot=True, seed=1234, threads=threads)
    torch7 = TrainConfig(epochs=epochs, batch_size=100, optimizer="shift_adamax", lr_start=2.0**-6,
                         lr_schedule="halve", halve_every=halve_every, glorot=True, seed=1234, threads=threads)
    sbn = Precision(1, 1, stochastic=True, norm="sbn")
    if name == "theano":  # Lasagne's adam and BatchNormLayer, Theano's `val_err <= best_val_err`
        return RecipeConfig(name, hidden, 3, BINARY, 0.2, 0.5,
                            replace(theano, optimizer="lasagne_adam", select_ties="last"),
                            ModelOptions(bn_running="lasagne"), follows="code")
    if name == "theano-paper":
        return RecipeConfig(name, hidden, 3, BINARY, 0.2, 0.5, theano)
    if name == "torch7":  # adaMax_binary_clip_shift.lua, BinaryNet_MNIST_Model.lua, Data.lua
        return RecipeConfig(name, hidden, 3, sbn, 0.0, 0.0,
                            replace(torch7, betas=(0.9, 0.999), adamax_state="torch7", glorot_placement="after",
                                    lr_factors="torch7"),
                            ModelOptions(sbn_backward="torch7", out_bn_eps=1e-5, bias_init="torch7"),
                            input_range="torch7", follows="code")
    if name == "torch7-paper":
        return RecipeConfig(name, hidden, 3, sbn, 0.0, 0.0, torch7)
    if name == "float":
        return RecipeConfig(name, hidden, 3, FLOAT, 0.2, 0.5, replace(theano, glorot=False))
    raise ValueError(f"unknown MNIST recipe {name!r}; choose from {RECIPES}")


def _profile(profile: str, dataset: str, sizes: tuple[int | None, ...], resume: bool, threads: int | None = None,
             **recipes: dict) -> MnistConfig:
    return MnistConfig(profile, dataset, *sizes, recipes=RECIPES,  # type: ignore[arg-type]
                       recipe_configs={r: _recipe(r, **recipes[r.removesuffix("-paper")], threads=threads)
                                       for r in RECIPES}, resume=resume)


# The profile table: the only place sizes live. Reduced profiles compress the schedules: the exponential
# decay ends at lr_end after `epochs` epochs (paper: 3e-3 → 3e-7 over 1000 epochs; quick: → 3e-5 over
# 12), and Torch7's halving period shrinks with the epoch count.
PROFILES: dict[str, MnistConfig] = {
    "smoke": _profile("smoke", "fashion-mnist", (2000, 500, 1000), False, threads=1,
                      theano=dict(hidden=128, epochs=2, lr_end=1e-3), torch7=dict(hidden=128, epochs=2, halve_every=1),
                      float=dict(hidden=128, epochs=2, lr_end=1e-3)),
    "quick": _profile("quick", "auto", (None, None, None), True,
                      theano=dict(hidden=512, epochs=12, lr_end=3e-5), torch7=dict(hidden=512, epochs=12, halve_every=4),
                      float=dict(hidden=512, epochs=12, lr_end=3e-5)),
    "paper": _profile("paper", "mnist", (None, None, None), True,
                      theano=dict(hidden=4096, epochs=1000), torch7=dict(hidden=2048, epochs=500, halve_every=20),
                      float=dict(hidden=4096, epochs=1000)),
}


@dataclass(frozen=True)
class Sanity:
    """What notebook 01 checks at the end (errors are fractions; chance is 0.9)."""

    max_error: float  # every recipe
    max_gap_vs_float: float  # theano BNN minus the float net of the same architecture


# smoke only proves the pipeline learns at all; quick must show the paper's trend (a BNN close to float).
SANITY: dict[str, Sanity] = {
    "smoke": Sanity(max_error=0.60, max_gap_vs_float=1.0),
    "quick": Sanity(max_error=0.25, max_gap_vs_float=0.03),
    "paper": Sanity(max_error=0.05, max_gap_vs_float=0.01),
}


# ------------------------------------------------------------------------------------------ runs
def load_data(cfg: MnistConfig, *, download: bool = True, input_range: Literal["pm1", "torch7"] = "pm1"
              ) -> DatasetSplits:
    """The dataset of ``cfg``; ``"auto"``: MNIST if obtainable, else Fashion-MNIST with a warning.

    ``input_range``: ``"pm1"`` (pixel/255·2−1) or ``"torch7"`` (the Torch7 code's standardisation,
    :func:`qnnlib.data.mnist.load_mnist`); :func:`run_recipes` loads the second one itself for the recipes
    that need it.
    """
    sizes = dict(train_size=cfg.train_size, valid_size=cfg.valid_size, test_size=cfg.test_size,
                 input_range=input_range)
    if cfg.dataset != "auto":
        return load_mnist(cfg.dataset, download=download, **sizes)
    try:
        return load_mnist("mnist", download=download, **sizes)
    except DatasetNotFoundError as exc:
        first = str(exc).splitlines()[0]
        why = f"; {exc.attempts[-1][:300]}" if exc.attempts else ""
        warnings.warn(
            f"dataset='auto': MNIST is not available ({first}{why}); using Fashion-MNIST instead. "
            "Numbers below are Fashion-MNIST numbers, not comparable with the paper's MNIST column.",
            stacklevel=2,
        )
        return load_mnist("fashion-mnist", download=download, **sizes)


def build_model(recipe: RecipeConfig, in_features: int = 784, num_classes: int = 10, seed: int | None = None) -> nn.Module:
    """The MNIST MLP of ``recipe``, initialised from ``seed`` (default: the recipe's training seed)."""
    torch.manual_seed(recipe.train.seed if seed is None else seed)
    return mnist_mlp(recipe.hidden, recipe.depth, precision=recipe.precision, in_features=in_features,
                     num_classes=num_classes, dropout_in=recipe.dropout_in, dropout_hidden=recipe.dropout_hidden,
                     options=recipe.options)


def _describe(rc: RecipeConfig) -> str:
    return f"hidden {rc.hidden}x{rc.depth}, "


def run_recipes(cfg: MnistConfig, data: DatasetSplits, *, experiment: str = EXPERIMENT, progress: bool = True,
                save_models: bool = True) -> dict[str, runner.Run]:
    """Train every recipe of ``cfg`` on ``data`` for ``cfg.n_seeds`` seeds (resumable when ``cfg.resume``;
    :func:`qnnlib.experiments.table1.run_recipes`).

    ``data`` is :func:`load_data`'s (inputs pixel/255·2−1); recipes with another ``input_range`` get the same
    files and subsets scaled their way. With ``save_models`` the first seed's model of each recipe is saved
    (:func:`load_trained` reads it) for the kernel and energy notebooks.
    """
    in_features = int(data.train.x[0].numel())
    data_range = "pm1" if data.inputs == PM1_INPUTS else "torch7"
    return table1.run_recipes(
        cfg, data, experiment=experiment, data_range=data_range, describe=_describe, progress=progress,
        save_models=save_models, build=lambda rc, d, s: build_model(rc, in_features=in_features, seed=s),
        load=lambda r: load_data(replace(cfg, dataset=data.name), input_range=r))  # type: ignore[arg-type]


def load_trained(profile: str, recipe_name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The model notebook 01 saved for ``recipe_name`` at ``profile`` (eval mode) and its saved metadata."""
    path = runner.model_path(profile, EXPERIMENT, recipe_name)
    saved = runner.load_model(path, f"run notebooks/01_mnist_bnn.ipynb at profile {profile!r} "
                                    f"(python -m qnnlib reproduce --profile {profile} --only {EXPERIMENT})")
    model = build_model(from_dict(RecipeConfig, saved["recipe"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved


def table_rows(runs: dict[str, runner.Run], data: DatasetSplits) -> list[dict[str, Any]]:
    """Rows for ``metrics["rows"]`` (:func:`qnnlib.experiments.table1.table_rows`)."""
    return table1.table_rows(runs, data, EXPERIMENT, PAPER_ROW, _describe)


def findings(runs: dict[str, runner.Run], data: DatasetSplits) -> list[str]:
    """What notebook 01 prints under "What we found" (:func:`qnnlib.experiments.table1.findings`)."""
    return table1.findings(runs, data, EXPERIMENT, PAPER_ROW)


def check_sanity(profile: str, runs: dict[str, runner.Run], metrics_json: Path | None = None) -> list[str]:
    """Assert the profile's :data:`SANITY` bounds on a finished run; returns the checks that passed.

    Every recipe (every seed) must beat ``max_error``; with a float baseline present, the ``theano``
    BNN's mean must be within ``max_gap_vs_float`` of the float mean; the metrics JSON must exist.
    Raises ``AssertionError`` naming the failed bound.
    """
    if profile not in SANITY:
        raise ValueError(f"no sanity bounds for profile {profile!r}; known: {tuple(SANITY)}")
    b = SANITY[profile]
    passed = table1.check_errors(profile, runs, b.max_error, b.max_gap_vs_float, ("theano",))
    if metrics_json is not None:
        assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
        passed.append(f"{display_path(metrics_json)} written")
    return passed


def write_metrics(cfg: MnistConfig, runs: dict[str, runner.Run], data: DatasetSplits, wall_time_s: float) -> Path:
    """Write ``results/<profile>/mnist.json``: rows (mean ± std over seeds), per-recipe numbers, histories.

    The first seed's history is stored under the recipe's name, further seeds as ``<recipe>@seed<s>``.
    """
    from qnnlib.experiments import results  # noqa: PLC0415 - results imports pandas; keep mnist light

    metrics: dict[str, Any] = {"rows": table_rows(runs, data)}
    for name, run in runs.items():
        metrics[f"{name}_test_error_at_best"] = run.result.test_error_at_best
        if len(run.runs) > 1:
            metrics[f"{name}_test_error_at_best_per_seed"] = run.values(lambda r: r.test_error_at_best)
    for name, run in runs.items():
        metrics[f"{name}_train_time_s"] = sum(r.result.wall_time_s for r in run.runs)
    history = {(name if i == 0 else f"{name}@seed{sr.seed}"): sr.result.history
               for name, run in runs.items() for i, sr in enumerate(run.runs)}
    return results.write_metrics(EXPERIMENT, cfg.profile, config=as_dict(cfg), metrics=metrics, history=history,
                                 dataset=data.describe(), wall_time_s=wall_time_s)
