"""Profiles: (experiment, profile, overrides) → one frozen config, printed by every notebook.

Profiles (DESIGN.md §3):

* ``smoke`` — CI: each notebook ≤ ~90 s on 2 CPU cores; tiny subsets and widths; proves the pipeline.
* ``quick`` — a laptop CPU: each notebook ≤ ~15 min on 2 cores; reduced widths/epochs; shows the trend.
* ``paper`` — a GPU: the authors' settings (PAPER.md §2.10), as close as the paper lets us.

``$QNNLIB_PROFILE`` overrides the profile a notebook asks for (nbval runs with ``smoke`` in CI).
Overrides equal to ``None`` take the profile's value.

MNIST recipes (DESIGN.md §6.12), the two Table 1 rows plus the float baseline:

* ``theano`` — deterministic binarization, vanilla BN, ADAM with Glorot per-layer LR scaling,
  exponential LR decay 3e-3 → 3e-7, dropout 0.2 (input) / 0.5 (hidden), 3×4096, batch 100.
* ``torch7`` — stochastic activations at train time, shift-based BN, shift-based AdaMax (LR 2^−6,
  halved every 20 epochs as in the code), 3×2048, no dropout, batch 100.
* ``float`` — the ``theano`` architecture and schedule in float32 (no Glorot scaling, which is
  meant for the ±1 latent weights), the "no binarization" baseline.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from qnnlib.precision import BINARY, FLOAT, Precision
from qnnlib.train import TrainConfig

__all__ = ["PROFILES", "RECIPES", "RecipeConfig", "MnistConfig", "default_profile", "resolve", "as_dict"]

PROFILES = ("smoke", "quick", "paper")
RECIPES = ("float", "theano", "torch7")
PROFILE_ENV = "QNNLIB_PROFILE"


def default_profile(requested: str = "quick") -> str:
    """``$QNNLIB_PROFILE`` if set, else ``requested``; validated."""
    profile = os.environ.get(PROFILE_ENV) or requested
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (from {PROFILE_ENV} or the notebook); choose one of {PROFILES}")
    return profile


@dataclass(frozen=True)
class RecipeConfig:
    """One trained network: architecture, precision and training settings."""

    name: str
    hidden: int
    depth: int
    precision: Precision
    dropout_in: float
    dropout_hidden: float
    train: TrainConfig

    @property
    def label(self) -> str:
        return {"float": "Float baseline (ours)", "theano": "BNN (Theano)", "torch7": "BNN (Torch7)"}.get(
            self.name, self.name
        )


@dataclass(frozen=True)
class MnistConfig:
    """Notebook 01: which data, which recipes, and each recipe's settings."""

    profile: str
    dataset: str  # "mnist" | "fashion-mnist" | "auto" (MNIST if obtainable, else Fashion-MNIST, said loudly)
    train_size: int | None
    valid_size: int | None
    test_size: int | None
    recipes: tuple[str, ...]
    recipe_configs: dict[str, RecipeConfig] = field(default_factory=dict)
    resume: bool = True

    def recipe(self, name: str) -> RecipeConfig:
        if name not in self.recipe_configs:
            raise ValueError(f"unknown recipe {name!r}; this config has {tuple(self.recipe_configs)}")
        return self.recipe_configs[name]


# Profile tables: the only place sizes live.  Reduced profiles compress the schedules: the exponential
# decay ends at lr_end after `epochs` epochs (paper: 3e-3 → 3e-7 over 1000 epochs; quick: → 3e-5 over 12),
# and Torch7's halving period shrinks with the epoch count.
_MNIST: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="fashion-mnist", train_size=2000, valid_size=500, test_size=1000, resume=False,
                  theano=dict(hidden=128, epochs=2, lr_end=1e-3), torch7=dict(hidden=128, epochs=2, halve_every=1),
                  float=dict(hidden=128, epochs=2, lr_end=1e-3)),
    "quick": dict(dataset="auto", train_size=None, valid_size=None, test_size=None, resume=True,
                  theano=dict(hidden=512, epochs=12, lr_end=3e-5), torch7=dict(hidden=512, epochs=12, halve_every=4),
                  float=dict(hidden=512, epochs=12, lr_end=3e-5)),
    "paper": dict(dataset="mnist", train_size=None, valid_size=None, test_size=None, resume=True,
                  theano=dict(hidden=4096, epochs=1000), torch7=dict(hidden=2048, epochs=500, halve_every=20),
                  float=dict(hidden=4096, epochs=1000)),
}


def _mnist_recipe(name: str, hidden: int, epochs: int, halve_every: int = 20, seed: int = 1234,
                  lr_end: float = 3e-7) -> RecipeConfig:
    if name == "theano":
        return RecipeConfig(name, hidden, 3, BINARY, 0.2, 0.5,
                            TrainConfig(epochs=epochs, batch_size=100, optimizer="adam", lr_start=3e-3, lr_end=lr_end,
                                        lr_schedule="exp", glorot=True, seed=seed))
    if name == "torch7":
        return RecipeConfig(name, hidden, 3, Precision(1, 1, stochastic=True, norm="sbn"), 0.0, 0.0,
                            TrainConfig(epochs=epochs, batch_size=100, optimizer="shift_adamax", lr_start=2.0**-6,
                                        lr_schedule="halve", halve_every=halve_every, glorot=True, seed=seed))
    if name == "float":
        return RecipeConfig(name, hidden, 3, FLOAT, 0.2, 0.5,
                            TrainConfig(epochs=epochs, batch_size=100, optimizer="adam", lr_start=3e-3, lr_end=lr_end,
                                        lr_schedule="exp", glorot=False, seed=seed))
    raise ValueError(f"unknown MNIST recipe {name!r}; choose from {RECIPES}")


def resolve(
    experiment: str,
    profile: str | None = None,
    *,
    dataset: str | None = None,
    recipes: tuple[str, ...] | list[str] | None = None,
    epochs: int | None = None,
    hidden: int | None = None,
    train_size: int | None = None,
    valid_size: int | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    resume: bool | None = None,
) -> MnistConfig:
    """Resolve ``experiment`` at ``profile`` (``$QNNLIB_PROFILE`` wins) with overrides (``None`` = profile's)."""
    if experiment != "mnist":
        raise ValueError(f"unknown experiment {experiment!r}; configured experiments: ('mnist',)")
    profile = default_profile(profile or "quick")
    p = _MNIST[profile]
    names = tuple(recipes) if recipes is not None else RECIPES
    bad = [r for r in names if r not in RECIPES]
    if bad or not names:
        raise ValueError(f"recipes must be a non-empty subset of {RECIPES}, got {names}")
    rc = {}
    for r in names:
        kw = dict(p[r])
        if epochs is not None:
            kw["epochs"] = epochs
        if hidden is not None:
            kw["hidden"] = hidden
        if seed is not None:
            kw["seed"] = seed
        rc[r] = _mnist_recipe(r, **kw)
    ds = dataset if dataset is not None else p["dataset"]
    if ds not in ("mnist", "fashion-mnist", "auto"):
        raise ValueError(f"dataset must be 'mnist', 'fashion-mnist' or 'auto', got {ds!r}")
    return MnistConfig(
        profile=profile,
        dataset=ds,
        train_size=train_size if train_size is not None else p["train_size"],
        valid_size=valid_size if valid_size is not None else p["valid_size"],
        test_size=test_size if test_size is not None else p["test_size"],
        recipes=names,
        recipe_configs=rc,
        resume=resume if resume is not None else p["resume"],
    )


def as_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (for printing and for the metrics JSON)."""
    return dataclasses.asdict(cfg)
