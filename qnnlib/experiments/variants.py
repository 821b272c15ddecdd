"""Variants of one BNN recipe trained side by side over seeds: the core of notebooks 06 and 07.

Notebook 06 (quantized gradients, :mod:`qnnlib.experiments.gradients`) and notebook 07 (the shift-based BN and
AdaMax ablation, :mod:`qnnlib.experiments.ablation`) ask the same kind of question: does changing one part of the
training algorithm change the error? Each trains the same two networks — the MNIST-format MLP of notebook 01 and
the ConvNet of notebook 02 — in several :class:`Variant` s of one base recipe, for ``n_seeds`` seeds each, through
the Table 1 core (:func:`qnnlib.experiments.table1.run_recipes`: resumable checkpoints, seeds ``seed``, ``seed+1``,
...). A setup (:class:`MlpSetup`, :class:`ConvSetup`) fixes a network, its data and its schedules; a variant
changes only what is under test:

* the precision of the back-propagated error ``g_{s_k}`` and of the parameter gradients (``grad_bits``,
  ``param_grad_bits``, ``grad_method``; docs/decisions.md D6);
* the normalization of the hidden layers (vanilla BN or shift-based BN, Alg. 3);
* the optimizer: Adam (with the setup's exponential decay) or shift-based AdaMax (Alg. 2, with the setup's
  halving schedule), each following the paper's text or the authors' code (``rules``: for Adam, Lasagne's
  ``adam`` of the Theano code; for shift-AdaMax, rows 1–4 of docs/decisions.md D24: the Torch7 state rule, its
  betas, the Glorot factor after the power-of-two step, the per-parameter LR factors of biases and BN);
* deterministic or stochastic activation binarization (Eq. 2) at train time.

Everything else is the base recipe: binary weights and activations, the Glorot LR scaling of the latent weights,
square hinge loss, inputs in [−1, 1], no dropout, the paper's text for every switch not named above (torch's BN
running statistics, autograd through shift-BN, zero biases). With the same seed, two variants start from the same
weights and see the same batches, so their differences are paired.

A notebook's config (:class:`StudyConfig`: one :class:`Study` per network) goes through :func:`load_data`,
:func:`run`, :func:`per_seed_table`, :func:`multiplications_table` and :func:`write_metrics`.

Results: :func:`per_seed_frame` (one row per variant and seed), :func:`summary_frame` (mean ± std, n),
:func:`difference` (a variant minus a reference, in points, with the standard error of the difference of means),
:func:`multiplications` (the multiplications, shifts and sign flips of one training step of each variant, counted
from its model by :func:`qnnlib.analysis.multiplications.training_step`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
from torch import nn

from qnnlib.analysis.multiplications import totals, training_step
from qnnlib.data.splits import DatasetSplits
from qnnlib.experiments import convnets, mnist, runner, table1
from qnnlib.experiments.config import as_dict
from qnnlib.experiments.convnets import ConvRecipe
from qnnlib.experiments.mnist import RecipeConfig
from qnnlib.precision import GRAD_METHODS, GradMethod, NormKind, Precision
from qnnlib.train import TrainConfig

__all__ = ["Network", "NETWORKS", "NETWORK_LABELS", "MlpSetup", "ConvSetup", "Setup", "Variant", "recipe", "Study",
           "StudyConfig", "TwoNetworks", "load_setup_data", "load_data", "run_study", "run", "per_seed_frame", "per_seed_table",
           "summary_frame", "error_table", "difference", "multiplications", "multiplications_table", "write_metrics",
           "check_networks", "check_max_error", "check_gap"]

Network = Literal["mlp", "convnet"]
NETWORKS: tuple[str, ...] = ("mlp", "convnet")
NETWORK_LABELS = {"mlp": "MLP", "convnet": "ConvNet"}


def _positive(obj: Any, *names: str) -> None:
    for f in names:
        v = getattr(obj, f)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{f} must be a positive integer, got {v!r}")


def _sizes_ok(obj: Any) -> None:
    for f in ("train_size", "valid_size", "test_size"):
        v = getattr(obj, f)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{f} must be None (the whole split) or a positive integer, got {v!r}")


def _schedules_ok(obj: Any) -> None:
    lr0, lr1 = obj.adam_lr
    if not (0 < lr1 <= lr0):
        raise ValueError(f"adam_lr must be (start, end) with 0 < end <= start, got {obj.adam_lr!r}")
    if not obj.adamax_lr > 0:
        raise ValueError(f"adamax_lr must be positive, got {obj.adamax_lr!r}")


@dataclass(frozen=True)
class MlpSetup:
    """The MLP of notebook 01 (784–depth×hidden–10, binary weights and activations) with its data and schedules.

    ``dataset``: ``"mnist"``, ``"fashion-mnist"`` or ``"auto"`` (MNIST when obtainable, else Fashion-MNIST with a
    warning; :func:`qnnlib.experiments.mnist.load_data`). Adam decays exponentially from ``adam_lr[0]`` to
    ``adam_lr[1]`` over the epochs (the Theano schedule); shift-AdaMax starts at ``adamax_lr`` and halves every
    ``halve_every`` epochs (the Torch7 schedule).
    """

    dataset: Literal["mnist", "fashion-mnist", "auto"] = "auto"
    train_size: int | None = None
    valid_size: int | None = None
    test_size: int | None = None
    hidden: int = 256
    depth: int = 3
    epochs: int = 8
    batch_size: int = 100
    adam_lr: tuple[float, float] = (3e-3, 3e-5)
    adamax_lr: float = 2.0**-6
    halve_every: int = 3
    n_seeds: int = 1
    seed: int = 1234
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in ("mnist", "fashion-mnist", "auto"):
            raise ValueError(f"dataset must be 'mnist', 'fashion-mnist' or 'auto', got {self.dataset!r}")
        _sizes_ok(self)
        _positive(self, "hidden", "depth", "epochs", "batch_size", "halve_every", "n_seeds")
        _schedules_ok(self)

    @property
    def network(self) -> Network:
        return "mlp"

    def describe(self) -> str:
        return f"784-{self.depth}x{self.hidden}-10"


@dataclass(frozen=True)
class ConvSetup:
    """The ConvNet of notebook 02 (three conv pairs with max-pooling before BN, two FC layers, 32×32 inputs) with
    its data and schedules.

    ``experiment`` names the dataset the ConvNet is the Table 1 network of (``"cifar10"`` or ``"svhn"``);
    ``dataset``: that dataset, ``"fashion-mnist"`` (the padded stand-in) or ``"auto"``
    (:func:`qnnlib.experiments.convnets.load_data`). Schedules as :class:`MlpSetup`.
    """

    experiment: Literal["cifar10", "svhn"] = "cifar10"
    dataset: Literal["cifar10", "svhn", "fashion-mnist", "auto"] = "auto"
    train_size: int | None = None
    valid_size: int | None = None
    test_size: int | None = None
    channels: tuple[int, int, int] = (16, 32, 64)
    fc: int = 128
    epochs: int = 8
    batch_size: int = 100
    adam_lr: tuple[float, float] = (1e-3, 3e-5)
    adamax_lr: float = 2.0**-6
    halve_every: int = 3
    n_seeds: int = 1
    seed: int = 1234
    threads: int | None = None
    extra: bool = False  # SVHN's extra_32x32.mat

    def __post_init__(self) -> None:
        if self.experiment not in ("cifar10", "svhn"):
            raise ValueError(f"experiment must be 'cifar10' or 'svhn', got {self.experiment!r}")
        if self.dataset not in (self.experiment, "fashion-mnist", "auto"):
            raise ValueError(f"dataset must be {self.experiment!r}, 'fashion-mnist' (the stand-in) or 'auto', "
                             f"got {self.dataset!r}")
        if len(self.channels) != 3 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                                          for c in self.channels):
            raise ValueError(f"channels must be three positive conv widths, got {self.channels!r}")
        _sizes_ok(self)
        _positive(self, "fc", "epochs", "batch_size", "halve_every", "n_seeds")
        _schedules_ok(self)

    @property
    def network(self) -> Network:
        return "convnet"

    def describe(self) -> str:
        return f"convs {'/'.join(map(str, self.channels))}, fc {self.fc}"


Setup = MlpSetup | ConvSetup


@dataclass(frozen=True)
class Variant:
    """One change (or several) to the base recipe (module docstring); every field at its default is the base:
    a deterministic BNN with vanilla BN, Adam (paper text) and float gradients."""

    name: str
    norm: NormKind = "bn"
    optimizer: Literal["adam", "shift_adamax"] = "adam"
    rules: Literal["paper-text", "code"] = "paper-text"
    stochastic: bool = False
    grad_bits: int | None = None  # the back-propagated error g_{s_k} of every compute layer
    param_grad_bits: int | None = None  # every parameter gradient, before the optimizer sees it
    grad_method: GradMethod = "log"

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"a variant name must be non-empty letters, digits, '-', '_' or '.', got {self.name!r}")
        if self.optimizer not in ("adam", "shift_adamax"):
            raise ValueError(f"optimizer must be 'adam' or 'shift_adamax', got {self.optimizer!r}")
        if self.rules not in ("paper-text", "code"):
            raise ValueError(f"rules must be 'paper-text' or 'code', got {self.rules!r}")
        if self.grad_method not in GRAD_METHODS:
            raise ValueError(f"grad_method must be one of {GRAD_METHODS}, got {self.grad_method!r}")
        self.precision  # noqa: B018 - validates norm, stochastic and the bits (ValueError naming the field)

    @property
    def precision(self) -> Precision:
        """Binary weights and activations with this variant's normalization, rounding and gradient bits."""
        return Precision(1, 1, stochastic=self.stochastic, norm=self.norm, grad_bits=self.grad_bits,
                         grad_method=self.grad_method, param_grad_bits=self.param_grad_bits)

    @property
    def quantized(self) -> str:
        """Which gradients are quantized: ``"none"``, ``"errors"``, ``"params"`` or ``"errors+params"``."""
        parts = [p for p, b in (("errors", self.grad_bits), ("params", self.param_grad_bits)) if b is not None]
        return "+".join(parts) or "none"

    @property
    def label(self) -> str:
        """E.g. ``"shift-BN + shift-AdaMax (code), stochastic"`` or ``"BN + Adam, G6 log (errors+params)"``."""
        norm = "shift-BN" if self.norm == "sbn" else "BN"
        opt = "shift-AdaMax" if self.optimizer == "shift_adamax" else "Adam"
        text = f"{norm} + {opt}" + (" (code)" if self.rules == "code" else "")
        if self.stochastic:
            text += ", stochastic"
        bits = {b for b in (self.grad_bits, self.param_grad_bits) if b is not None}
        if bits:
            text += f", G{'/'.join(map(str, sorted(bits)))} {self.grad_method} ({self.quantized})"
        return text


def _train(setup: Setup, v: Variant) -> TrainConfig:
    base = TrainConfig(epochs=setup.epochs, batch_size=setup.batch_size, glorot=True, seed=setup.seed,
                       threads=setup.threads)
    if v.optimizer == "adam":
        t = replace(base, optimizer="lasagne_adam" if v.rules == "code" else "adam", lr_start=setup.adam_lr[0],
                    lr_end=setup.adam_lr[1], lr_schedule="exp")
        return t
    t = replace(base, optimizer="shift_adamax", lr_start=setup.adamax_lr, lr_schedule="halve",
                halve_every=setup.halve_every)
    if v.rules == "paper-text":
        return t
    # rows 1-4 of docs/decisions.md D24, as the Torch7 code of this network does them
    t = replace(t, betas=(0.9, 0.999), adamax_state="torch7", glorot_placement="after")
    if isinstance(setup, MlpSetup):  # Main_BinaryNet_MNIST.lua: unrounded factors, biases and BN scaled
        return replace(t, lr_factors="torch7")
    return replace(t, lr_factors="biases", glorot_pow2=True)  # the CIFAR-10/SVHN model files


def recipe(setup: Setup, v: Variant) -> RecipeConfig | ConvRecipe:
    """The recipe of variant ``v`` on ``setup``'s network (the recipe dataclass of notebook 01 or 02)."""
    train = _train(setup, v)
    follows = "code" if v.rules == "code" else "paper-text"
    if isinstance(setup, MlpSetup):
        return RecipeConfig(v.name, setup.hidden, setup.depth, v.precision, 0.0, 0.0, train, follows=follows)
    return ConvRecipe(v.name, setup.channels, setup.fc, v.precision, train, follows=follows)


class Study(table1.RecipeSet):
    """One network trained in several variants over seeds (what :func:`qnnlib.experiments.table1.run_recipes`
    needs: ``profile``, ``recipes``, ``resume``, ``recipe(name)``, ``seeds(name)``)."""

    def __init__(self, profile: str, experiment: str, setup: Setup, variants: Sequence[Variant],
                 resume: bool = True) -> None:
        self.profile, self.experiment, self.setup, self.resume = profile, experiment, setup, resume
        self.variants: dict[str, Variant] = {}
        for v in variants:
            if v.name in self.variants:
                raise ValueError(f"variant {v.name!r} is given twice")
            self.variants[v.name] = v
        self.recipes = tuple(self.variants)
        self.recipe_configs = {n: recipe(setup, v) for n, v in self.variants.items()}
        self.n_seeds = setup.n_seeds
        self.train_size, self.valid_size, self.test_size = setup.train_size, setup.valid_size, setup.test_size
        self.check_recipe_set()

    @property
    def network(self) -> Network:
        return self.setup.network

    @property
    def key(self) -> str:
        """Where its checkpoints live: ``<experiment>-<network>``."""
        return f"{self.experiment}-{self.network}"

    def __repr__(self) -> str:
        return f"Study({self.key!r}, {self.setup.describe()}, variants={self.recipes}, n_seeds={self.n_seeds})"


class StudyConfig(Protocol):
    """What the functions below need of notebook 06's or 07's config: its profile, the networks it trains, each
    network's setup and the studies it runs."""

    profile: str
    networks: tuple[str, ...]

    def setup(self, network: str) -> Setup: ...

    def studies(self) -> list[Study]: ...


@dataclass(frozen=True)
class TwoNetworks:
    """The head of notebook 06's and 07's configs (a base dataclass): the profile, the MLP and ConvNet setups, and
    which of the two networks run. Subclasses add their fields and ``studies()``."""

    profile: str
    mlp: MlpSetup
    convnet: ConvSetup
    networks: tuple[str, ...] = NETWORKS

    def __post_init__(self) -> None:
        check_networks(self.networks)

    def setup(self, network: str) -> Setup:
        """The setup of ``network`` (``"mlp"`` or ``"convnet"``)."""
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; choose from {NETWORKS}")
        return self.mlp if network == "mlp" else self.convnet


def load_setup_data(setup: Setup, *, download: bool = True) -> DatasetSplits:
    """The data of ``setup`` scaled to [−1, 1] (``"auto"``: the real dataset if obtainable, else its stand-in with a
    warning; the dataset's name travels into every table)."""
    if isinstance(setup, MlpSetup):
        return mnist.load_data(setup, download=download)
    return convnets.load_data(setup, download=download)


def load_data(cfg: StudyConfig, *, download: bool = True) -> dict[str, DatasetSplits]:
    """network -> its data (:func:`load_setup_data`)."""
    return {n: load_setup_data(cfg.setup(n), download=download) for n in cfg.networks}


def _build(rc: Any, data: DatasetSplits, seed: int) -> nn.Module:
    if isinstance(rc, RecipeConfig):
        return mnist.build_model(rc, in_features=int(data.train.x[0].numel()), seed=seed)
    return convnets.build_model(rc, in_channels=int(data.train.x.shape[1]), seed=seed)


def run_study(study: Study, data: DatasetSplits, *, progress: bool = True) -> dict[str, runner.Run]:
    """Train every variant of ``study`` for its seeds (resumable; checkpoints named by the recipe's hash under
    ``<experiment>-<network>``); returns variant name -> :class:`~qnnlib.experiments.runner.Run`."""
    print(f"== {NETWORK_LABELS[study.network]} ({study.setup.describe()}) on {data.name}, "
          f"{len(study.recipes)} variants x {study.n_seeds} seed(s)")
    return table1.run_recipes(study, data, experiment=study.key, save_models=False, progress=progress,
                              build=lambda rc, d, s: _build(rc, d, s),
                              describe=lambda rc: f"{study.setup.describe()}, ")


def run(cfg: StudyConfig, data: Mapping[str, DatasetSplits], *, progress: bool = True
        ) -> dict[str, dict[str, runner.Run]]:
    """network -> variant -> run: every study of ``cfg`` (:func:`run_study`, resumable)."""
    return {s.network: run_study(s, data[s.network], progress=progress) for s in cfg.studies()}


def per_seed_frame(study: Study, runs: Mapping[str, runner.Run], data: DatasetSplits) -> pd.DataFrame:
    """One row per variant and seed: test error % at the best-validation epoch, final-epoch error %, best epoch,
    training time, the variant's fields, and ``bits`` (the widest quantized gradient, 32 for float gradients)."""
    rows = []
    for name, run in runs.items():
        v = study.variants[name]
        for sr in run.runs:
            r = sr.result
            rows.append({"network": study.network, "variant": name, "label": v.label, "seed": sr.seed,
                         "test_error": 100.0 * r.test_error_at_best, "final_test_error": 100.0 * r.final_test_error,
                         "best_epoch": r.best_epoch, "train_time_s": r.wall_time_s, "dataset": data.name,
                         "norm": v.norm, "optimizer": v.optimizer, "rules": v.rules, "stochastic": v.stochastic,
                         "grad_bits": v.grad_bits, "param_grad_bits": v.param_grad_bits,
                         "grad_method": v.grad_method, "quantized": v.quantized,
                         "bits": max((b for b in (v.grad_bits, v.param_grad_bits) if b is not None), default=32)})
    return pd.DataFrame(rows)


def per_seed_table(cfg: StudyConfig, runs: Mapping[str, Mapping[str, runner.Run]],
                   data: Mapping[str, DatasetSplits]) -> pd.DataFrame:
    """:func:`per_seed_frame` of every study of ``cfg`` that ran, one table."""
    frames = [per_seed_frame(s, runs[s.network], data[s.network]) for s in cfg.studies() if s.network in runs]
    if not frames:
        raise ValueError(f"no runs of any of {cfg.networks}: run the studies first")
    return pd.concat(frames, ignore_index=True)


def summary_frame(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (sample, ``ddof=1``; NaN for one seed) of the test error per network and variant, in the order
    the variants were trained."""
    if per_seed.empty:
        raise ValueError("no runs to summarise: per_seed is empty")
    keys = ["network", "variant"]
    first = per_seed.drop_duplicates(keys).set_index(keys)
    g = per_seed.groupby(keys, sort=False)
    out = pd.DataFrame({"mean": g["test_error"].mean(), "std": g["test_error"].std(ddof=1), "n": g.size(),
                        "final_mean": g["final_test_error"].mean()})
    cols = [c for c in first.columns if c not in ("seed", "test_error", "final_test_error", "best_epoch",
                                                  "train_time_s")]
    return out.join(first[cols]).reset_index()


def error_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """The notebooks' table: one row per variant (its label), one column per network, cells
    ``"mean ± std (n)"`` of the test error % (``"mean (n = 1)"`` for one seed)."""
    s = summary_frame(per_seed)
    s["cell"] = [f"{m:.2f}" + ("" if pd.isna(sd) else f" ± {sd:.2f}") + f" (n = {n})"
                 for m, sd, n in zip(s["mean"], s["std"], s["n"])]
    s["network"] = s["network"].map(lambda n: NETWORK_LABELS.get(n, n))
    order = list(dict.fromkeys(s["variant"]))
    table = s.pivot(index="variant", columns="network", values="cell").reindex(order)[list(dict.fromkeys(s["network"]))]
    table.insert(0, "label", s.drop_duplicates("variant").set_index("variant")["label"].reindex(order).to_numpy())
    table.columns.name = None
    return table


def difference(per_seed: pd.DataFrame, network: str, variant: str, reference: str) -> dict[str, float | int]:
    """``variant`` minus ``reference`` on ``network``: the difference of the mean test errors (points; positive:
    ``variant`` is worse), the standard error of that difference (√(s_a²/n_a + s_b²/n_b); NaN with one seed on
    either side), and the seeds of each."""
    sel = per_seed[per_seed["network"] == network]
    a, b = (sel[sel["variant"] == n]["test_error"] for n in (variant, reference))
    for n, s in ((variant, a), (reference, b)):
        if s.empty:
            raise ValueError(f"no runs of variant {n!r} on {network!r}; trained: {sorted(set(sel['variant']))}")
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 else math.nan
    return {"diff": float(a.mean() - b.mean()), "se": se, "n_variant": len(a), "n_reference": len(b)}


def multiplications(study: Study, data: DatasetSplits) -> pd.DataFrame:
    """The operations of one training step of every variant (batch = the setup's batch size), counted from its
    model (:func:`qnnlib.analysis.multiplications.training_step`): multiplications, shifts, sign flips, divisions
    and square roots; the operation with the most multiplications (``largest``, e.g. ``"fc1 weight gradient"``) and
    its share of them; and the multiplications relative to the study's first variant."""
    rows = []
    shape = tuple(data.train.x.shape[1:])
    for name, rc in study.recipe_configs.items():
        model = _build(rc, data, study.setup.seed)
        steps = training_step(model, shape, study.setup.batch_size, optimizer=rc.train.optimizer,
                              loss=rc.train.loss)
        t = totals(steps)
        top = steps.loc[steps["multiplications"].idxmax()]
        rows.append({"network": study.network, "variant": name, "label": study.variants[name].label,
                     **{k: int(v) for k, v in t.items()},
                     "largest": f"{top['component']} {top['operation']}" if top["multiplications"] else "",
                     "largest_share": float(top["multiplications"]) / float(t["multiplications"])
                     if t["multiplications"] else 0.0})
    out = pd.DataFrame(rows)
    base = out["multiplications"].iloc[0]
    out["multiplications_vs_first"] = out["multiplications"] / base if base else math.nan
    return out


def multiplications_table(cfg: StudyConfig, data: Mapping[str, DatasetSplits]) -> pd.DataFrame:
    """:func:`multiplications` of every study of ``cfg``, one table."""
    return pd.concat([multiplications(s, data[s.network]) for s in cfg.studies()], ignore_index=True)


def write_metrics(experiment: str, cfg: StudyConfig, runs: Mapping[str, Mapping[str, runner.Run]],
                  per_seed: pd.DataFrame, data: Mapping[str, DatasetSplits], wall_time_s: float,
                  rows: list[dict[str, Any]], **tables: pd.DataFrame | None) -> Path:
    """Write ``results/<profile>/<experiment>.json``: ``rows``, the per-seed table, its summary, every table of
    ``tables`` given (name -> DataFrame, stored as records), and every run's history under
    ``<network>/<variant>`` (later seeds ``@seed<s>``); the dataset of each network under ``per_network``."""
    from qnnlib.experiments import results  # noqa: PLC0415 - results imports pandas

    metrics: dict[str, Any] = {"rows": rows, "per_seed": per_seed.to_dict(orient="records"),
                               "summary": summary_frame(per_seed).to_dict(orient="records")}
    metrics.update({k: t.to_dict(orient="records") for k, t in tables.items() if t is not None})
    history = {f"{net}/{name}" + ("" if i == 0 else f"@seed{sr.seed}"): sr.result.history
               for net, rs in runs.items() for name, r in rs.items() for i, sr in enumerate(r.runs)}
    dataset = {**data[cfg.networks[0]].describe(), "per_network": {n: d.describe() for n, d in data.items()}}
    return results.write_metrics(experiment, cfg.profile, config=as_dict(cfg), metrics=metrics, history=history,
                                 dataset=dataset, wall_time_s=wall_time_s)


def check_networks(networks: Sequence[str]) -> None:
    """``networks`` a non-empty, repeat-free subset of :data:`NETWORKS` (``ValueError`` otherwise)."""
    if not networks or any(n not in NETWORKS for n in networks) or len(set(networks)) != len(networks):
        raise ValueError(f"networks must be a non-empty subset of {NETWORKS} without repeats, got {networks!r}")


def check_max_error(per_seed: pd.DataFrame, max_error: float) -> list[str]:
    """Assert every seed of every variant has test error ≤ ``max_error`` (a fraction; chance is 0.9); returns the
    checks that passed."""
    passed = []
    for (net, name), g in per_seed.groupby(["network", "variant"], sort=False):
        worst = float(g["test_error"].max()) / 100.0
        assert worst <= max_error, f"{net} {name}: test error {worst:.4f} > {max_error}"
        passed.append(f"{net} {name}: test error {worst:.4f} <= {max_error}")
    return passed


def check_gap(per_seed: pd.DataFrame, variant: str, reference: str, bound: float, *, two_sided: bool = False,
              profile: str = "") -> list[str]:
    """Assert, on every network where both ran, that ``variant``'s mean test error is at most ``bound`` (a fraction)
    above ``reference``'s (``two_sided``: above or below); returns the checks that passed."""
    passed = []
    for net in per_seed["network"].unique():
        if {variant, reference} <= set(per_seed[per_seed["network"] == net]["variant"]):
            gap = difference(per_seed, net, variant, reference)["diff"] / 100.0
            worst = abs(gap) if two_sided else gap
            side = "|.|" if two_sided else "gap"
            assert worst <= bound, (f"{net}: {variant} - {reference} = {100 * gap:+.2f} points; bound "
                                    f"{side} <= {100 * bound:.1f} ({profile})")
            passed.append(f"{net}: {variant} - {reference} = {100 * gap:+.2f} points, {side} <= {100 * bound:.1f}")
    return passed
