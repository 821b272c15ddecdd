"""The paper's numbers that the collection compares against, each with its source and status (docs/paper.md §1).

:data:`PAPER` holds one :class:`PaperNumber` per reported number: experiment, row (named as in the paper's
tables), dataset, metric, value, source (paper table or section, or a secondary source) and status —
``VERIFIED`` (read in the paper's text), ``SEC`` (a secondary source quoting it) or ``UNCONFIRMED``
(recalled, not checked against the PDF). Metrics rows of the notebooks point at them by ``paper_key``
(:attr:`PaperNumber.key`, ``"<experiment>:<row>:<metric>"``). The Horowitz energy tables live in
:mod:`qnnlib.analysis.horowitz`.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

__all__ = ["PaperNumber", "PAPER", "PAPER_BY_KEY", "PAPER_SPLITS", "paper_table"]


@dataclasses.dataclass(frozen=True)
class PaperNumber:
    """One number the paper reports, with where it comes from (docs/paper.md tags)."""

    experiment: str  # "mnist" | "svhn" | "cifar10" | "imagenet" | "ptb" | "gradients" | "ablation" | "kernels" | ...
    row: str
    dataset: str  # "any": a claim about the method, compared on whatever dataset a row names
    metric: str
    value: float
    source: str
    status: str  # "VERIFIED" | "SEC" | "UNCONFIRMED"
    spread: float | None = None  # the ± the paper gives, if any
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.experiment}:{self.row}:{self.metric}"


def _table1() -> list[PaperNumber]:
    err, src, ok = "test error %", "NIPS Table 1", "VERIFIED"
    cols = ("mnist", "svhn", "cifar10")
    rows = [  # row, (mnist, svhn, cifar10) values, mnist spread
        ("BNN (Torch7)", (1.40, 2.53, 10.15), None),
        ("BNN (Theano)", (0.96, 2.80, 11.40), None),
        ("Committee Machines' Array (Baldassi et al., 2015)", (1.35, None, None), None),
        ("BinaryConnect", (1.29, 2.30, 9.90), 0.08),
        ("EBP (Cheng et al., 2015)", (2.2, None, None), 0.1),
        ("Bitwise DNNs (Kim & Smaragdis, 2016)", (1.33, None, None), None),
        ("Ternary weights, binary activations (Hwang & Sung, 2014)", (1.45, None, None), None),
        ("No regularization", (1.3, 2.44, 10.94), 0.2),
        ("Gated pooling (Lee et al., 2015)", (None, 1.69, 7.62), None),
    ]
    out = [PaperNumber(c, r, c, err, v, src, ok, spread if c == "mnist" else None)
           for r, vals, spread in rows for c, v in zip(cols, vals) if v is not None]
    recalled = "arXiv v3 / QNN version of Table 1 (recalled)"
    for r, vals in (("Maxout Networks", (0.94, 2.47, 11.68)), ("Network in Network", (None, 2.35, 10.41))):
        out += [PaperNumber(c, r, c, err, v, recalled, "UNCONFIRMED") for c, v in zip(cols, vals) if v is not None]
    return out


def _imagenet() -> list[PaperNumber]:
    t1, t5, ds = "top-1 %", "top-5 %", "imagenet"
    nips = "NIPS 'Preliminary Results on ImageNet'"
    uniq = "UNIQ paper table quoting QNN"
    seed = "seed summary of the QNN paper"
    qnn = "QNN ImageNet table (recalled)"
    P = PaperNumber
    return [
        P("imagenet", "AlexNet BNN (W1/A1)", ds, t1, 36.1, nips, "VERIFIED"),
        P("imagenet", "AlexNet BNN (W1/A1)", ds, t5, 60.1, nips, "VERIFIED"),
        P("imagenet", "GoogleNet BNN (W1/A1)", ds, t1, 47.1, nips, "VERIFIED"),
        P("imagenet", "GoogleNet BNN (W1/A1)", ds, t5, 69.1, nips, "VERIFIED"),
        P("imagenet", "AlexNet QNN (W1/A1, relaxed Htanh)", ds, t1, 41.8, uniq, "SEC", note="seed summary agrees"),
        P("imagenet", "AlexNet QNN (W1/A1, relaxed Htanh)", ds, t5, 67.1, seed, "UNCONFIRMED"),
        P("imagenet", "AlexNet QNN (W1/A2)", ds, t1, 51.03, uniq, "SEC", note="NIPS text: '51%' (VERIFIED)"),
        P("imagenet", "AlexNet QNN (W1/A2)", ds, t5, 73.67, qnn, "UNCONFIRMED"),
        P("imagenet", "AlexNet QNN (W1/A2/G6)", ds, t1, 46.8, seed, "UNCONFIRMED"),
        P("imagenet", "AlexNet float (W32/A32)", ds, t1, 56.6, qnn, "UNCONFIRMED"),
        P("imagenet", "AlexNet float (W32/A32)", ds, t5, 80.2, qnn, "UNCONFIRMED"),
        P("imagenet", "XNOR-Net AlexNet (W1/A1)", ds, t1, 44.2, uniq, "SEC"),
        P("imagenet", "XNOR-Net AlexNet (W1/A1)", ds, t5, 69.2, qnn, "UNCONFIRMED"),
        P("imagenet", "GoogleNet QNN (W4/A4)", ds, t1, 66.6, "NIPS text quoting QNN", "VERIFIED",
          note="the seed summary says 66.5%"),
        P("imagenet", "GoogleNet QNN (W4/A4), seed summary", ds, t1, 66.5, seed, "UNCONFIRMED",
          note="NIPS text says 66.6%"),
        P("imagenet", "GoogleNet QNN (W6/A6/G6)", ds, t1, 66.4, seed, "UNCONFIRMED"),
        P("imagenet", "GoogleNet float (W32/A32)", ds, t1, 71.3, qnn, "UNCONFIRMED"),
        P("imagenet", "GoogleNet float (W32/A32)", ds, t5, 90.0, qnn, "UNCONFIRMED"),
    ]


def _ptb() -> list[PaperNumber]:
    ppl, recalled, sec = "perplexity", "QNN §Language Models (recalled)", "PMC9117057 Tab. 3 quoting QNN"
    return [
        PaperNumber("ptb", "LSTM 300 (W2/A3)", "ptb", ppl, 220.0, recalled, "UNCONFIRMED", note="'~220'"),
        PaperNumber("ptb", "LSTM 300 (W3/A4)", "ptb", ppl, 110.0, recalled, "UNCONFIRMED", note="'~110'"),
        PaperNumber("ptb", "LSTM 300 (W4/A4)", "ptb", ppl, 100.0, sec, "SEC"),
        PaperNumber("ptb", "LSTM 300 (float)", "ptb", ppl, 97.0, sec, "SEC"),
    ]


def _hardware() -> list[PaperNumber]:
    k, mm = "NIPS §4 + Fig. 2", "8192x8192x8192 binary matmul (GTX750)"
    return [
        PaperNumber("kernels", "XNOR kernel vs baseline kernel", mm, "speed-up x", 23.0, k, "VERIFIED"),
        PaperNumber("kernels", "XNOR kernel vs cuBLAS", mm, "speed-up x", 3.4, k, "VERIFIED"),
        PaperNumber("kernels", "MNIST MLP, XNOR vs baseline kernel", "mnist", "speed-up x", 7.0, k, "VERIFIED",
                    note="same accuracy; first layer on the baseline kernel"),
        PaperNumber("kernels", "Theoretical XNOR-popcount bound (32/6)", "-", "speed-up x", 32 / 6, "NIPS §4",
                    "VERIFIED"),
        PaperNumber("kernels", "MNIST MLP run-time (XNOR kernel)", "mnist", "test error %", 0.96,
                    "Theano Run-time README", "VERIFIED"),
        PaperNumber("memory", "BNN vs 32-bit DNN", "-", "memory size reduction x", 32.0, "NIPS §3", "VERIFIED"),
        PaperNumber("memory", "BNN vs 32-bit DNN", "-", "memory access reduction x", 32.0, "NIPS §3", "VERIFIED"),
        PaperNumber("filters", "CIFAR-10 ConvNet", "cifar10", "unique 2D filters per layer %", 42.0, "NIPS §3",
                    "VERIFIED", note="average over layers; counting procedure not given"),
        PaperNumber("filters", "3x3 binary filters", "-", "max unique 2D filters", 512.0, "NIPS §3", "VERIFIED"),
        PaperNumber("filters", "CIFAR-10 ConvNet, unique filters only", "cifar10", "XNOR-popcount reduction x", 3.0,
                    "NIPS §3", "VERIFIED", note="'reduce the number of the XNOR-popcount operations by 3'"),
        PaperNumber("energy", "BNN vs 32-bit DNN", "-", "energy reduction x", 32.0, "NIPS §3", "VERIFIED",
                    note="a lower bound: 'expected to reduce energy consumption drastically (i.e., more than 32 "
                         "times)'"),
    ]


def _training() -> list[PaperNumber]:
    """Claims about the training algorithm (notebooks 06 and 07), as differences in points of error."""
    inc = "error increase %"
    return [
        PaperNumber("gradients", "AlexNet QNN (W1/A2): 6-bit vs float gradients", "imagenet", inc, 51.03 - 46.8,
                    "derived: 'AlexNet QNN (W1/A2)' 51.03 minus 'AlexNet QNN (W1/A2/G6)' 46.8 top-1", "UNCONFIRMED",
                    note="top-1 accuracy points lost; the 46.8% is recalled, not checked against the PDF"),
        PaperNumber("ablation", "shift-based BN vs vanilla BN", "any", inc, 0.0, "NIPS §'Shift based Batch "
                    "Normalization'", "VERIFIED", note="'we did not observe accuracy loss' (a statement, no number)"),
        PaperNumber("ablation", "shift-based AdaMax vs Adam", "any", inc, 0.0, "NIPS §'Shift based AdaMax'",
                    "VERIFIED", note="'no accuracy loss' versus vanilla Adam (a statement, no number)"),
    ]


PAPER: tuple[PaperNumber, ...] = tuple(_table1() + _imagenet() + _ptb() + _training() + _hardware())
"""The paper's numbers (the Horowitz energy tables live in :mod:`qnnlib.analysis.horowitz`, not here)."""

PAPER_BY_KEY: dict[str, PaperNumber] = {p.key: p for p in PAPER}

PAPER_SPLITS: dict[str, dict[str, int]] = {
    "mnist": {"train": 50_000, "valid": 10_000, "test": 10_000},
    "cifar10": {"train": 45_000, "valid": 5_000, "test": 10_000},
}
"""The paper's split sizes where docs/paper.md §2.10 gives them."""


def paper_table(experiment: str | None = None) -> pd.DataFrame:
    """PAPER as a DataFrame (optionally one experiment), with a ``key`` column."""
    rows = [{"key": p.key, **dataclasses.asdict(p)} for p in PAPER if experiment in (None, p.experiment)]
    return pd.DataFrame(rows)
