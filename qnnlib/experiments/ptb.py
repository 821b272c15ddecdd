"""Notebook 05: quantized RNN and LSTM language models on Penn Treebank — config, profiles, runs, rows, findings.

The paper's claim (QNN, "Language Models"): recurrent networks with weights and activations quantized to 4 bits
reach a perplexity comparable to their 32-bit counterparts on word-level Penn Treebank; 2 bits are clearly
worse. Its setups: a vanilla RNN of 2048 ReLU units and an LSTM of 300 units, one layer. The numbers we have
(:mod:`qnnlib.experiments.paper`, ``ptb``) are partly unconfirmed; their status travels into every table.

Each setting of :class:`PtbConfig` is one (cell, weight bits, activation bits) network of
:func:`qnnlib.models.language.ptb_lm`, trained ``n_seeds`` times through the experiment core
(:func:`qnnlib.experiments.runner.train_seeds` → :func:`qnnlib.train.fit`, resumable checkpoints) on contiguous
BPTT batches (:class:`qnnlib.data.ptb.BpttLoader`), selected by validation perplexity and reported by test
perplexity at that epoch.

Where the paper is silent, these choices (docs/decisions.md D25):

* embedding and output layer quantized at the recurrent layers' bits (a "4-bit model" multiplies only 4-bit
  numbers); weights on a power-of-two grid ``[−r, r]`` near torch's initial bound (``r = 0.25`` at 300 units);
* truncated BPTT over 35 steps with the state carried across batches, batch 20 (training) and 10 (evaluation),
  Zaremba et al.'s small-model settings;
* Adam, LR 2e-3 (6e-3 at ``quick``, which has only 5 epochs) decayed exponentially to a tenth, gradient norm
  clipped to 0.25, no Glorot LR scaling (it is
  meant for latent weights drawn from U(−1, 1)), dropout 0.3 on the embedding and the recurrent output at the
  paper's sizes (none at the small profiles, which underfit);
* the LSTM's gates as unsigned fractions ``j/2^k`` (a forget gate of exactly 1 would never let ``c`` decay).

Stand-in policy: the project's machines have the real ``ptb.valid.txt`` and ``ptb.test.txt`` but no
``ptb.train.txt``. With ``missing_train="valid"`` (smoke and quick) such a run trains on 90% of the valid lines,
validates on the rest and tests on ``ptb.test.txt`` (:func:`qnnlib.data.ptb.load_ptb`); the dataset is then
named ``ptb-valid-as-train`` in every table, JSON and figure and is never compared with the paper's numbers as
the PTB benchmark. The ``paper`` profile requires the train file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from qnnlib.data.ptb import BpttLoader, PtbCorpus, load_ptb
from qnnlib.data.root import display_path
from qnnlib.experiments import runner
from qnnlib.experiments.config import as_dict
from qnnlib.experiments.paper import PAPER_BY_KEY
from qnnlib.models.language import CELLS, ptb_lm
from qnnlib.train import Loaders, TrainConfig

__all__ = ["EXPERIMENT", "FLOAT", "LmSetting", "PtbConfig", "Sanity", "PROFILES", "SANITY", "load_data",
           "loaders", "build_model", "run_settings", "results_frame", "table_rows", "write_metrics", "findings",
           "check_sanity"]

EXPERIMENT = "ptb"
FLOAT = 32
"""The bit width that means float (the paper's "32-bit counterparts")."""


@dataclass(frozen=True)
class LmSetting:
    """One network of the sweep: cell, width, weight and activation bits (32 = float)."""

    cell: Literal["rnn", "lstm"]
    hidden: int
    weight_bits: int
    act_bits: int

    @property
    def name(self) -> str:
        return f"{self.cell}-w{self.weight_bits}a{self.act_bits}"

    @property
    def is_float(self) -> bool:
        return self.weight_bits == FLOAT and self.act_bits == FLOAT

    @property
    def bits_label(self) -> str:
        return "float" if self.is_float else f"W{self.weight_bits}/A{self.act_bits}"

    @property
    def label(self) -> str:
        """``"LSTM 300 (W4/A4)"``, ``"RNN 2048 (float)"``: the paper's row names at our width."""
        return f"{self.cell.upper()} {self.hidden} ({self.bits_label})"

    @property
    def paper_key(self) -> str | None:
        """The paper's row for this cell and these bits (its LSTM has 300 units), if it reports one."""
        if self.cell != "lstm":
            return None
        key = f"ptb:LSTM 300 ({self.bits_label}):perplexity"
        return key if key in PAPER_BY_KEY else None


def _bits(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not (1 <= v <= 16 or v == FLOAT):
        raise ValueError(f"{name} must be a bit width in 1..16 or {FLOAT} (float), got {v!r}")
    return v


@dataclass(frozen=True)
class PtbConfig:
    """Notebook 05: the sweep (cells × bit pairs), the sizes, the training settings, the seeds."""

    profile: str
    cells: tuple[str, ...]
    bits: tuple[tuple[int, int], ...]  # (weight bits, activation bits) per setting; 32 = float
    lstm_hidden: int
    rnn_hidden: int
    epochs: int
    embed_size: int | None = None  # None: the cell's hidden size
    layers: int = 1
    seq_len: int = 35
    batch_size: int = 20
    eval_batch_size: int = 10
    dropout: float = 0.0
    lr_start: float = 2e-3
    lr_end: float = 2e-4
    grad_clip_norm: float = 0.25
    missing_train: Literal["error", "valid"] = "valid"
    max_train_tokens: int | None = None
    max_valid_tokens: int | None = None
    max_test_tokens: int | None = None
    n_seeds: int = 2
    seed: int = 1234
    threads: int | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        if not self.cells or any(c not in CELLS for c in self.cells) or len(set(self.cells)) != len(self.cells):
            raise ValueError(f"cells must be distinct names from {CELLS}, got {self.cells!r}")
        if not self.bits:
            raise ValueError("bits must list at least one (weight bits, activation bits) pair")
        for pair in self.bits:
            if len(pair) != 2:
                raise ValueError(f"each entry of bits is a (weight bits, activation bits) pair, got {pair!r}")
            _bits(pair[0], "weight bits")
            _bits(pair[1], "activation bits")
            if (pair[0] == FLOAT) != (pair[1] == FLOAT):
                raise ValueError(f"bits {pair!r}: float weights with quantized activations (or the reverse) is not "
                                 "a setting of the paper; use (32, 32) for the float network")
        if len(set(self.bits)) != len(self.bits):
            raise ValueError(f"bits must not repeat, got {self.bits!r}")
        runner.seeds_from(self.seed, self.n_seeds)
        if self.missing_train not in ("error", "valid"):
            raise ValueError(f"missing_train must be 'error' or 'valid', got {self.missing_train!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        self.train_config()  # epochs, learning rates, clipping, threads: TrainConfig's own checks

    def settings(self) -> list[LmSetting]:
        """Every (cell, bits) network of the sweep, cells outer, bits in the given order."""
        hidden = {"lstm": self.lstm_hidden, "rnn": self.rnn_hidden}
        return [LmSetting(c, hidden[c], w, a) for c in self.cells for w, a in self.bits]  # type: ignore[arg-type]

    def seeds(self) -> tuple[int, ...]:
        return runner.seeds_from(self.seed, self.n_seeds)

    def train_config(self) -> TrainConfig:
        """The training settings every network of the sweep shares (module docstring)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr_start=self.lr_start,
                           lr_end=self.lr_end, lr_schedule="exp", glorot=False, clip_weights=True, seed=self.seed,
                           loss="cross_entropy", metrics=("perplexity",), select_metric="perplexity",
                           grad_clip_norm=self.grad_clip_norm, threads=self.threads)


_SWEEP = ((2, 2), (3, 3), (4, 4), (FLOAT, FLOAT))

# The profile table: the only place sizes live. smoke proves the pipeline on a few thousand tokens; quick is
# the bit sweep at reduced widths on the whole fallback corpus; paper is the paper's widths on the real corpus
# (its mixed rows W2/A3 and W3/A4 included).
PROFILES: dict[str, PtbConfig] = {
    "smoke": PtbConfig("smoke", ("lstm", "rnn"), ((2, 2), (4, 4), (FLOAT, FLOAT)), lstm_hidden=32, rnn_hidden=32,
                       epochs=2, max_train_tokens=8_000, max_valid_tokens=2_000, max_test_tokens=4_000, n_seeds=1,
                       lr_start=5e-3, lr_end=2e-3, threads=1, resume=False),
    "quick": PtbConfig("quick", ("lstm", "rnn"), _SWEEP, lstm_hidden=128, rnn_hidden=128, epochs=5,
                       lr_start=6e-3, lr_end=6e-4, max_test_tokens=20_000),
    "paper": PtbConfig("paper", ("lstm", "rnn"), ((2, 3), (3, 4), *_SWEEP), lstm_hidden=300, rnn_hidden=2048,
                       epochs=39, dropout=0.3, missing_train="error", n_seeds=3),
}


@dataclass(frozen=True)
class Sanity:
    """What notebook 05 checks at the end (perplexities; the uniform predictor's is the vocabulary size)."""

    max_fraction_of_uniform: float  # every run's test perplexity < this × vocabulary size
    max_4bit_lstm_ratio: float | None = None  # LSTM W4/A4 / LSTM float (means)
    two_bit_worse: bool = False  # LSTM W2/A2 worse than W4/A4 (means)


SANITY: dict[str, Sanity] = {
    "smoke": Sanity(max_fraction_of_uniform=1.0),  # the pipeline runs; two tiny epochs need not learn much
    "quick": Sanity(max_fraction_of_uniform=0.15, max_4bit_lstm_ratio=1.15, two_bit_worse=True),
    "paper": Sanity(max_fraction_of_uniform=0.03, max_4bit_lstm_ratio=1.10, two_bit_worse=True),
}


# ------------------------------------------------------------------------------------------ data
def load_data(cfg: PtbConfig, *, download: bool = True) -> PtbCorpus:
    """Word-level PTB at ``cfg``'s token limits; without ``ptb.train.txt`` and ``missing_train="valid"`` the
    train-on-valid stand-in (named ``ptb-valid-as-train``)."""
    return load_ptb(download=download, missing_train=cfg.missing_train, max_train_tokens=cfg.max_train_tokens,
                    max_valid_tokens=cfg.max_valid_tokens, max_test_tokens=cfg.max_test_tokens)


def loaders(cfg: PtbConfig, corpus: PtbCorpus) -> Loaders:
    """Contiguous BPTT batches: training ``batch_size`` columns, validation and test ``eval_batch_size``."""
    return Loaders(BpttLoader(corpus.train, cfg.batch_size, cfg.seq_len),
                   BpttLoader(corpus.valid, cfg.eval_batch_size, cfg.seq_len),
                   BpttLoader(corpus.test, cfg.eval_batch_size, cfg.seq_len))


def build_model(cfg: PtbConfig, s: LmSetting, vocab_size: int) -> nn.Module:
    """The network of setting ``s`` (:func:`qnnlib.models.language.ptb_lm`; 32 bits = float)."""
    def q(b: int) -> int | None:
        return None if b == FLOAT else b

    return ptb_lm(s.cell, vocab_size, s.hidden, cfg.layers, q(s.weight_bits), q(s.act_bits),
                  embed_size=cfg.embed_size, dropout=cfg.dropout)


def _key(cfg: PtbConfig, s: LmSetting, corpus: PtbCorpus) -> str:
    """A hash of everything that changes the trained network: it names the checkpoint directory."""
    d = {"setting": as_dict(s), "train": cfg.train_config().fingerprint(), "layers": cfg.layers,
         "embed": cfg.embed_size, "dropout": cfg.dropout, "seq": cfg.seq_len,
         "batches": [cfg.batch_size, cfg.eval_batch_size], "data": corpus.sizes(), "name": corpus.name,
         "vocab": len(corpus.vocab)}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_settings(cfg: PtbConfig, corpus: PtbCorpus, *, progress: bool = True) -> dict[str, runner.Run]:
    """Train every setting of ``cfg`` for its seeds (resumable); setting name -> run."""
    data = loaders(cfg, corpus)
    runs: dict[str, runner.Run] = {}
    for s in cfg.settings():
        print(f"[{s.name}] {s.label}: {cfg.layers} layer(s), {cfg.epochs} epochs, seeds {cfg.seeds()}")

        def build(seed: int, s: LmSetting = s) -> nn.Module:
            torch.manual_seed(seed)
            return build_model(cfg, s, len(corpus.vocab))

        runs[s.name] = runner.train_seeds(s.name, s, build, data, cfg.train_config(), cfg.seeds(),
                                          checkpoint_tag=f"{s.name}-{corpus.name}-{_key(cfg, s, corpus)}",
                                          profile=cfg.profile, experiment=EXPERIMENT, resume=cfg.resume,
                                          progress=progress)
    return runs


# ------------------------------------------------------------------------------------ results
def results_frame(runs: Mapping[str, runner.Run]) -> pd.DataFrame:
    """One row per (setting, seed): cell, hidden, bits, test/valid perplexity at the best epoch, best epoch."""
    recs = []
    for run in runs.values():
        s: LmSetting = run.config
        for sr in run.runs:
            r = sr.result
            recs.append({"setting": s.name, "cell": s.cell.upper(), "hidden": s.hidden, "bits": s.bits_label,
                         "weight_bits": s.weight_bits, "act_bits": s.act_bits, "seed": sr.seed,
                         "test_perplexity": r.test_at_best.get("perplexity", math.nan),
                         "valid_perplexity": r.best_valid.get("perplexity", math.nan), "best_epoch": r.best_epoch,
                         "train_time_s": r.wall_time_s})
    return pd.DataFrame.from_records(recs)


def _mean_ppl(runs: Mapping[str, runner.Run], name: str) -> float:
    return runner.summary(runs[name].values(lambda r: r.test_at_best.get("perplexity", math.nan)))["mean"]


def table_rows(runs: Mapping[str, runner.Run], corpus: PtbCorpus) -> list[dict[str, Any]]:
    """Rows for ``metrics["rows"]``: test perplexity at the best-validation epoch, mean ± std over seeds."""
    rows = []
    for run in runs.values():
        s: LmSetting = run.config
        stats = runner.summary(run.values(lambda r: r.test_at_best.get("perplexity", math.nan)))
        float_name = f"{s.cell}-w{FLOAT}a{FLOAT}"
        rel = ""
        if not s.is_float and float_name in runs:
            rel = f"; {stats['mean'] / _mean_ppl(runs, float_name):.3f}x the float {s.cell.upper()}"
        r = {"row": s.label, "metric": "perplexity", "value": stats["mean"], "std": stats["std"], "n": stats["n"],
             "dataset": corpus.name, "dataset_sizes": corpus.sizes(),
             "note": f"best epoch {'/'.join(str(x.result.best_epoch) for x in run.runs)}{rel}"}
        if s.paper_key:
            r["paper_key"] = s.paper_key
            if s.hidden != 300:
                r["note"] += f"; {s.hidden} units, the paper's LSTM has 300"
        rows.append(r)
    return rows


def write_metrics(cfg: PtbConfig, runs: Mapping[str, runner.Run], corpus: PtbCorpus, wall_time_s: float) -> Path:
    """Write ``results/<profile>/ptb.json``: rows, per-seed results, histories."""
    from qnnlib.experiments import results  # noqa: PLC0415 - results imports pandas

    frame = results_frame(runs)
    metrics: dict[str, Any] = {"rows": table_rows(runs, corpus), "per_seed": frame.to_dict(orient="records")}
    history = {(name if i == 0 else f"{name}@seed{sr.seed}"): sr.result.history
               for name, run in runs.items() for i, sr in enumerate(run.runs)}
    return results.write_metrics(EXPERIMENT, cfg.profile, config=as_dict(cfg), metrics=metrics, history=history,
                                 dataset=corpus.describe(), wall_time_s=wall_time_s)


def _spread(values: Sequence[float]) -> str:
    s = runner.summary(values)
    return f"{s['mean']:.1f}" + (f" ± {s['std']:.1f}" if s["std"] is not None else "") + f" (n={s['n']})"


def findings(cfg: PtbConfig, runs: Mapping[str, runner.Run], corpus: PtbCorpus) -> list[str]:
    """What this run measured, in sentences (every number from the run)."""
    out = [f"Data: {corpus.name} ({corpus.describe()['note']}); {len(corpus.vocab)} words; tokens "
           f"{corpus.sizes()}."]
    frame = results_frame(runs)
    for cell in cfg.cells:
        sub = frame[frame["cell"] == cell.upper()]
        if sub.empty:
            continue
        parts = [f"{b}: {_spread(g['test_perplexity'].tolist())}" for b, g in sub.groupby("bits", sort=False)]
        out.append(f"{cell.upper()} {sub['hidden'].iloc[0]}, test perplexity by bits — " + "; ".join(parts) + ".")
        fl = f"{cell}-w{FLOAT}a{FLOAT}"
        if fl in runs:
            ratios = [f"{s.bits_label} {_mean_ppl(runs, s.name) / _mean_ppl(runs, fl):.2f}x"
                      for s in cfg.settings() if s.cell == cell and not s.is_float and s.name in runs]
            if ratios:
                out.append(f"{cell.upper()} relative to its float network: " + ", ".join(ratios)
                           + " (the paper: 4 bits 'comparable' to 32 bits).")
    if not corpus.benchmark:
        out.append("These are not PTB-benchmark perplexities: the models trained on ptb.valid.txt (the train file "
                   "is absent), so only the ratios between bit widths are comparable with the paper's trend.")
    return out


def check_sanity(cfg: PtbConfig, runs: Mapping[str, runner.Run], corpus: PtbCorpus,
                 metrics_json: Path | None = None) -> list[str]:
    """Assert :data:`SANITY` for ``cfg.profile``; returns the checks that passed."""
    if cfg.profile not in SANITY:
        raise ValueError(f"no sanity bounds for profile {cfg.profile!r}; known: {tuple(SANITY)}")
    b, passed = SANITY[cfg.profile], []
    bound = b.max_fraction_of_uniform * len(corpus.vocab)
    frame = results_frame(runs)
    worst = frame.loc[frame["test_perplexity"].idxmax()]
    assert math.isfinite(worst["test_perplexity"]) and worst["test_perplexity"] < bound, (
        f"{worst['setting']} seed {worst['seed']}: test perplexity {worst['test_perplexity']:.1f} >= {bound:.0f} "
        f"({b.max_fraction_of_uniform} x the {len(corpus.vocab)}-word uniform predictor)")
    passed.append(f"every run's test perplexity < {bound:.0f} (worst {worst['test_perplexity']:.1f}, "
                  f"{worst['setting']})")
    names = {s.name for s in cfg.settings()}
    if b.max_4bit_lstm_ratio is not None and {"lstm-w4a4", "lstm-w32a32"} <= names:
        ratio = _mean_ppl(runs, "lstm-w4a4") / _mean_ppl(runs, "lstm-w32a32")
        assert ratio <= b.max_4bit_lstm_ratio, f"LSTM W4/A4 is {ratio:.3f}x the float LSTM (> {b.max_4bit_lstm_ratio})"
        passed.append(f"LSTM W4/A4 / float = {ratio:.3f} <= {b.max_4bit_lstm_ratio}")
    if b.two_bit_worse and {"lstm-w2a2", "lstm-w4a4"} <= names:
        two, four = _mean_ppl(runs, "lstm-w2a2"), _mean_ppl(runs, "lstm-w4a4")
        assert two > four, f"LSTM W2/A2 ({two:.1f}) is not worse than W4/A4 ({four:.1f})"
        passed.append(f"LSTM W2/A2 ({two:.1f}) worse than W4/A4 ({four:.1f})")
    if metrics_json is not None:
        assert Path(metrics_json).is_file(), f"metrics JSON {metrics_json} was not written"
        passed.append(f"{display_path(metrics_json)} written")
    return passed

