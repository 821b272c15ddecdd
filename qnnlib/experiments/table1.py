"""The experiment core of the paper's Table 1 columns (MNIST, CIFAR-10, SVHN): recipes trained over seeds, rows.

A Table 1 experiment (:mod:`qnnlib.experiments.mnist`, and the ConvNet columns) is a config dataclass whose
recipes share one protocol — ``name``, ``label``, ``precision``, ``train`` (a
:class:`~qnnlib.train.TrainConfig`), ``follows`` (``"code"`` or ``"paper-text"``, docs/decisions.md D24) and
``input_range`` (the input scaling its data needs) — plus a model builder and a data loader. This module does
the rest once for all of them:

* :func:`run_recipes` — every recipe for ``n_seeds`` seeds through :func:`qnnlib.experiments.runner.train_seeds`
  (a resumable checkpoint per seed, named by :func:`recipe_key`), the first seed's model saved for later
  notebooks, the data loaded once per input scaling;
* :func:`table_rows` — the rows of the metrics JSON: test error % at the best-validation epoch, mean ± std over
  the seeds, each with the paper's Table 1 row it is compared with;
* :func:`findings` — the lines a notebook prints under "What we found" (each recipe vs float, code vs paper
  text);
* :func:`check_errors` — the sanity bounds (every seed under ``max_error``; a BNN recipe within ``max_gap`` of
  the float network).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from torch import nn

from qnnlib.data.splits import DatasetSplits
from qnnlib.experiments import runner
from qnnlib.experiments.config import as_dict
from qnnlib.precision import Precision
from qnnlib.train import TrainConfig

__all__ = ["Recipe", "Table1Config", "RecipeSet", "recipe_key", "run_recipes", "table_rows", "findings", "check_errors"]


class Recipe(Protocol):
    """What the core needs of a recipe config (a frozen dataclass of the experiment's module)."""

    name: str
    precision: Precision
    train: TrainConfig
    follows: str
    input_range: str

    @property
    def label(self) -> str: ...


class Table1Config(Protocol):
    """What the core needs of an experiment config."""

    profile: str
    recipes: tuple[str, ...]
    resume: bool

    def recipe(self, name: str) -> Any: ...

    def seeds(self, name: str) -> tuple[int, ...]: ...


class RecipeSet:
    """Mixin of a Table 1 config dataclass with fields ``recipes``, ``recipe_configs`` (name -> recipe),
    ``n_seeds`` and ``train_size``/``valid_size``/``test_size``: its checks and lookups, written once."""

    recipes: tuple[str, ...]
    recipe_configs: Mapping[str, Any]
    n_seeds: int

    def check_recipe_set(self) -> None:
        """Call from ``__post_init__``: recipes a non-empty, repeat-free subset; n_seeds and sizes valid."""
        bad = [r for r in self.recipes if r not in self.recipe_configs]
        if bad or not self.recipes:
            raise ValueError(f"recipes must be a non-empty subset of {tuple(self.recipe_configs)}, got {self.recipes}")
        if len(set(self.recipes)) != len(self.recipes):
            raise ValueError(f"recipes must not repeat, got {self.recipes}")
        runner.seeds_from(0, self.n_seeds)  # validates n_seeds
        for f in ("train_size", "valid_size", "test_size"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{f} must be None (the whole split) or a positive integer, got {v!r}")

    def recipe(self, name: str) -> Any:
        if name not in self.recipes:
            raise ValueError(f"unknown recipe {name!r}; this config has {self.recipes}")
        return self.recipe_configs[name]

    def seeds(self, name: str) -> tuple[int, ...]:
        """The seeds of ``name``: its training seed, +1, ... (``n_seeds`` of them)."""
        return runner.seeds_from(self.recipe(name).train.seed, self.n_seeds)


def recipe_key(rc: Any) -> str:
    """A hash of everything in the recipe dataclass ``rc`` that changes the trained model (architecture,
    precision, options, input range, the training fingerprint): it names the recipe's checkpoint directory, so
    changing any of them starts a new run instead of resuming another one."""
    d = as_dict(replace(rc, train=TrainConfig()))
    d["train"] = rc.train.fingerprint()
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_recipes(cfg: Table1Config, data: DatasetSplits, *, experiment: str,
                build: Callable[[Any, DatasetSplits, int], nn.Module],
                load: Callable[[str], DatasetSplits] | None = None, describe: Callable[[Any], str] = lambda rc: "",
                progress: bool = True, save_models: bool = True, data_range: str = "pm1",
                snapshots: Mapping[str, Sequence[int]] | None = None) -> dict[str, runner.Run]:
    """Train every recipe of ``cfg`` for its seeds; returns recipe name -> :class:`~qnnlib.experiments.runner.Run`.

    ``build(rc, data, seed)`` returns the recipe's freshly initialised model; ``data`` (scaled as ``data_range``)
    serves every recipe whose ``input_range`` is ``data_range``, and ``load(input_range)`` the others (the same
    files and subsets, another scaling; loaded once per scaling). ``describe(rc)`` adds architecture words to the
    line printed per recipe. With ``save_models`` the first seed's model of each recipe is saved under
    :func:`qnnlib.experiments.runner.model_path` with its recipe, dataset and result, and, for a recipe named in
    ``snapshots`` (recipe name -> epochs, 0 = at initialisation), the first seed's weights after those epochs
    (:func:`qnnlib.experiments.runner.train_seeds` ``snapshot_epochs``) as ``snapshots`` {epoch: state_dict}.
    """
    snapshots = dict(snapshots or {})
    unknown = sorted(set(snapshots) - set(cfg.recipes))
    if unknown:
        raise ValueError(f"snapshots asked for recipes {unknown} that this config does not train; "
                         f"its recipes: {list(cfg.recipes)}")
    runs: dict[str, runner.Run] = {}
    by_range = {data_range: data}
    for name in cfg.recipes:
        rc = cfg.recipe(name)
        if rc.input_range not in by_range:
            if load is None:
                raise ValueError(f"recipe {name!r} needs inputs scaled as {rc.input_range!r} but only "
                                 f"{data_range!r} data was given and no loader")
            by_range[rc.input_range] = load(rc.input_range)
        d = by_range[rc.input_range]
        tag = f"{rc.name}-{d.name}-{sum(d.sizes().values())}-{recipe_key(rc)}"
        print(f"[{name}] {rc.label}: {rc.precision.label}, {describe(rc)}{rc.train.epochs} epochs, "
              f"{rc.train.optimizer}, follows the {rc.follows}, seeds {cfg.seeds(name)}")
        runs[name] = runner.train_seeds(
            name, rc, lambda s, rc=rc, d=d: build(rc, d, s), d, rc.train, cfg.seeds(name), checkpoint_tag=tag,
            profile=cfg.profile, experiment=experiment, resume=cfg.resume, progress=progress,
            snapshot_epochs=snapshots.get(name, ()))
        if save_models:
            extra = {"snapshots": runner.load_snapshots(runs[name].runs[0].snapshots)} if name in snapshots else {}
            runner.save_model(runner.model_path(cfg.profile, experiment, name), runs[name].model,
                              recipe=as_dict(rc), dataset=d.describe(), result=runs[name].result.to_dict(), **extra)
    return runs


def table_rows(runs: Mapping[str, runner.Run], data: DatasetSplits, experiment: str,
               paper_row: Mapping[str, str], describe: Callable[[Any], str] = lambda rc: "") -> list[dict[str, Any]]:
    """Rows for ``metrics["rows"]``: test error % at the best-validation epoch, mean ± std over the seeds.

    ``paper_row`` maps a recipe name to the paper's Table 1 row it is compared with (``paper_key``
    ``"<experiment>:<row>:test error %"``); a ``paper-text`` recipe's note says that it is compared with the
    number the authors' code produced.
    """
    rows = []
    for name, run in runs.items():
        s = runner.summary([100.0 * v for v in run.values(lambda r: r.test_error_at_best)])
        final = runner.summary([100.0 * v for v in run.values(lambda r: r.final_test_error)])
        rc = run.config
        r = {"row": rc.label, "metric": "test error %", "value": s["mean"], "std": s["std"], "n": s["n"],
             "dataset": data.name, "dataset_sizes": data.sizes(),
             "note": f"{rc.precision.label}, {describe(rc)}{rc.train.epochs} epochs, best epoch "
                     f"{'/'.join(str(x.result.best_epoch) for x in run.runs)}; final-epoch error {final['mean']:.2f}%"}
        if name in paper_row:
            r["paper_key"] = f"{experiment}:{paper_row[name]}:test error %"
        if rc.follows == "paper-text" and name.endswith("-paper"):
            r["note"] += (f"; the paper's text where it differs from the {name.removesuffix('-paper')} code "
                          "(docs/decisions.md D24), compared with the code's Table 1 number")
        rows.append(r)
    return rows


def findings(runs: Mapping[str, runner.Run], data: DatasetSplits, experiment: str,
             paper_row: Mapping[str, str]) -> list[str]:
    """What a Table 1 notebook prints under "What we found": each recipe's test error (mean ± std, n), its gap
    to the float network, and for each recipe run both ways the difference between the authors' code and the
    paper's text (code − paper text, points; negative: the code's rules gave the lower error)."""
    rows = dict(zip(runs, table_rows(runs, data, experiment, paper_row)))
    lines = []
    flt = rows.get("float")
    for name, row in rows.items():
        spread = f" ± {row['std']:.2f}" if row["n"] > 1 else ""
        gap = f"  ({row['value'] - flt['value']:+.2f} points vs float)" if flt and name != "float" else ""
        lines.append(f"{row['row']:<26} {row['value']:6.2f}%{spread} test error on {data.name} (n = {row['n']}){gap}")
    for name, row in rows.items():
        paper = rows.get(f"{name}-paper")
        if paper is not None:
            lines.append(f"{name}: the authors' code vs the paper's text: {row['value']:.2f}% vs {paper['value']:.2f}% "
                         f"({row['value'] - paper['value']:+.2f} points, n = {row['n']} and {paper['n']} seeds)")
    return lines


def check_errors(profile: str, runs: Mapping[str, runner.Run], max_error: float, max_gap: float,
                 gap_recipes: Sequence[str]) -> list[str]:
    """Assert every seed of every recipe has test error ≤ ``max_error`` and, when the float network ran, that
    each of ``gap_recipes`` that ran is within ``max_gap`` of it (means); returns the checks that passed.

    Raises ``AssertionError`` naming the recipe and the bound.
    """
    passed = []
    for name, run in runs.items():
        err = max(run.values(lambda r: r.test_error_at_best))
        assert err <= max_error, f"{name}: test error {err:.4f} > {max_error} (profile {profile})"
        passed.append(f"{name}: test error {err:.4f} <= {max_error}")
    if "float" in runs:
        def mean(run: runner.Run) -> float:
            return runner.summary(run.values(lambda r: r.test_error_at_best))["mean"]  # type: ignore[return-value]

        for name in gap_recipes:
            if name in runs:
                gap = mean(runs[name]) - mean(runs["float"])
                assert gap <= max_gap, (f"{runs[name].config.label} is {100 * gap:.2f} points worse than float; "
                                        f"bound {100 * max_gap:.1f} ({profile})")
                passed.append(f"{name} - float = {100 * gap:+.2f} points <= {100 * max_gap:.1f}")
    return passed
