"""Paper-vs-ours tables a reader wants: four columns, rounded values, every caveat as a numbered footnote.

:func:`paper_table` (one experiment, for its notebook), :func:`summary_table` (all experiments, in the
paper's order: Table 1 — MNIST, SVHN, CIFAR-10 —, ImageNet, PTB, energy/memory, kernels, filters, the rest)
and :func:`provenance_table` (every column of :func:`qnnlib.experiments.results.comparison_table`) read the
metrics JSON files of a profile (schema in :mod:`qnnlib.experiments.results`). :func:`readme_results` /
:func:`update_readme` put the summary into README.md between ``<!-- results:begin -->`` and
``<!-- results:end -->``; :func:`figure` plots paper vs ours. Notebook 10 (experiment ``summary``) shows them.

Columns of :attr:`Report.table`: ``claim`` (the row and metric in words, with footnote marks ``[1][2]``),
``paper``, ``ours`` and ``status``.

Rounding (what the number means)
--------------------------------
* percentages (errors, accuracies, agreement, unique filters): ours to 2 decimals, ``13.76%``; the paper's
  as printed in the paper (trailing zeros dropped: ``1.3%``, ``0.96%``);
* ratios (metric ending in `` x``: speed-ups, reductions): ours to 1 decimal, ``31.2×``; the paper's the
  same with a trailing ``.0`` dropped (``32×``); a lower bound (paper note "a lower bound") reads ``> 32×``;
* perplexity: 1 decimal; counts (``max unique 2D filters``): integers;
* ``mean ± std (n = k)`` when a row is a mean over k > 1 seeds.

The paper column is filled even for rows compared only in a note: a row's ``paper_key``, else PAPER matched
by (experiment, row, metric), else a row's ``paper_keys`` list, else :data:`NOTE_REFS` (the CPU kernel rows
name the paper's GTX750 speed-ups: ``23× / 3.4× (GTX750)``).

Status rules (first that applies)
---------------------------------
0. ``stale`` — the row's metrics JSON was written before the last attempt to run its notebook started
   (that attempt failed, was killed or still runs: :mod:`qnnlib.experiments.attempts`); its footnote gives
   the date it was measured, what happened to the last attempt, and the status it had;
1. ``not run`` — no metrics JSON for a registered experiment, or the row has no value;
2. ``no paper number`` — no PAPER number matches the row;
3. ``different hardware`` — a speed-up of the paper's GTX750 kernels measured elsewhere, or a row compared
   only in a note (another device or baseline): never comparable (checked before the dataset: a speed-up
   is about the device);
4. ``different dataset`` — the paper's dataset (e.g. ``mnist``) is not ours (e.g. ``fashion-mnist``); a paper
   number whose dataset is ``"any"`` (a claim about the method, such as "no accuracy loss with shift-based BN")
   is compared on every dataset;
5. by metric kind, with d = ours − paper (points) or r = ours / paper − 1 (relative), "better" meaning a lower
   error/perplexity/unique-filter share, a higher accuracy/ratio:

   ========================  ===================  ==========================================  ==================
   kind                      ``reproduced``       ``within tolerance``                        else
   ========================  ===================  ==========================================  ==================
   percent (errors, acc.)    abs(d) <= 0.1 pt     abs(d) <= max(0.5 pt, paper's ±, our std)   better / worse
   ratio (`` x``)            abs(r) <= 10 %       abs(r) <= 25 %                              better / worse
   perplexity                abs(r) <= 5 %        abs(r) <= 10 %                              better / worse
   count                     equal                abs(r) <= 10 %                              better / worse
   ========================  ===================  ==========================================  ==================

   A paper lower bound ("more than 32 times") is ``reproduced`` when ours reaches it, ``within tolerance``
   when ours is less than 10% short of it, else ``worse``.

Footnotes: every note — our dataset vs the paper's, reduced split sizes, the paper number's status
(``SEC``/``UNCONFIRMED``) and source, the paper's own note, the hardware, the row's own note, and the full row
name where the claim cell had to be shortened to keep the markdown table within :data:`MAX_WIDTH`
characters — becomes a numbered footnote; identical notes share one number.
"""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qnnlib.experiments import attempts as A
from qnnlib.experiments import results as R
from qnnlib.experiments.config import EXPERIMENTS
from qnnlib.experiments.paper import PAPER, PAPER_BY_KEY, PAPER_SPLITS, PaperNumber

__all__ = ["Report", "SummaryConfig", "PROFILES", "SANITY", "Sanity", "STATUSES", "COLUMNS", "NOTE_REFS",
           "MAX_WIDTH", "NO_METRICS", "paper_table", "summary_table", "provenance_table", "sources_table", "readme_results",
           "update_readme", "figure", "check_sanity", "status_of", "format_value", "metric_kind"]

COLUMNS = ["claim", "paper", "ours", "status"]
STATUSES = ("reproduced", "within tolerance", "worse", "better", "different dataset", "different hardware",
            "no paper number", "not run", "stale")
MAX_WIDTH = 120
"""Widest line of :meth:`Report.markdown` (the table and the wrapped footnotes)."""
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SELF = "summary"  # this module's own experiment: writes no metrics
NO_METRICS = frozenset({"tour", SELF})
"""Registered experiments whose notebooks write no metrics JSON (never listed as ``not run``)."""

PAPER_HARDWARE = {"kernels": "GTX750"}
"""Experiment -> the paper's device, for its speed-up numbers (NIPS §4)."""

NOTE_REFS: tuple[tuple[str, str, re.Pattern, tuple[str, ...]], ...] = (
    ("kernels", "speed-up x", re.compile(r"matmul", re.I),
     ("kernels:XNOR kernel vs baseline kernel:speed-up x", "kernels:XNOR kernel vs cuBLAS:speed-up x")),
    ("kernels", "speed-up x", re.compile(r"MLP", re.I), ("kernels:MNIST MLP, XNOR vs baseline kernel:speed-up x",)),
)
"""(experiment, metric, row pattern, PAPER keys): rows without a paper number of their own that the paper's
numbers are compared to only in a note (another device or baseline): status ``different hardware``."""

SECTIONS = {"mnist": 0, "svhn": 1, "cifar10": 2, "imagenet": 3, "ptb": 4, "gradients": 5, "ablation": 6, "energy": 7,
            "memory": 7, "kernels": 8, "filters": 9}
SECTION_LABELS = {"mnist": "MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10", "imagenet": "ImageNet", "ptb": "PTB",
                  "gradients": "Gradients", "ablation": "Ablation"}
_PAPER_INDEX = {p.key: i for i, p in enumerate(PAPER)}


# --------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SummaryConfig:
    """Notebook 10: which profile's results to summarise and how to draw the figure."""

    profile: str
    figure_log_scale: bool = True  # ratios on log axes
    figure_name: str = "summary_paper_vs_ours"


@dataclass(frozen=True)
class Sanity:
    """What notebook 10 checks: every registered experiment found (or marked not run), a readable table."""

    max_width: int = MAX_WIDTH


PROFILES: dict[str, SummaryConfig] = {p: SummaryConfig(p) for p in ("smoke", "quick", "paper")}
SANITY: dict[str, Sanity] = {p: Sanity() for p in PROFILES}


# --------------------------------------------------------------------------------------- report
@dataclass
class Report:
    """A compact paper-vs-ours table (:data:`COLUMNS`), its numbered footnotes, and the numbers behind it."""

    table: pd.DataFrame
    footnotes: list[str]
    data: pd.DataFrame = field(default_factory=pd.DataFrame)  # numeric: experiment, row, metric, kind, ours, paper...
    title: str = ""

    def markdown(self) -> str:
        """The table, then the numbered footnotes (wrapped at :data:`MAX_WIDTH`)."""
        text = R.markdown_table(self.table) if not self.table.empty else "_No results yet._\n"
        if self.footnotes:
            text += "\n" + "\n".join(textwrap.fill(f"{i}. {n}", MAX_WIDTH, subsequent_indent="   ",
                                                   break_long_words=False, break_on_hyphens=False)
                                     for i, n in enumerate(self.footnotes, 1)) + "\n"
        return text

    def _repr_html_(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.max_rows", None):
            table = self.table.to_html(index=False, escape=True)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.footnotes)
        head = f"<h4>{html.escape(self.title)}</h4>" if self.title else ""
        return head + table + (f"<ol style='font-size:smaller'>{notes}</ol>" if notes else "")

    def __repr__(self) -> str:
        return self.markdown()


# ------------------------------------------------------------------------------------ formatting
def metric_kind(metric: str) -> tuple[str, bool]:
    """(kind, higher is better) of a metric name: kind is percent | ratio | perplexity | count | number."""
    m = metric.strip().lower()
    if m.endswith(" x"):
        return "ratio", True
    if "perplexity" in m:
        return "perplexity", False
    if m.endswith("%"):
        return "percent", not ("error" in m or "unique" in m)
    if m.startswith("max ") or "count" in m:
        return "count", True
    return "number", True


def _num(v: float, decimals: int, strip: bool) -> str:
    s = f"{v:.{decimals}f}"
    return s.rstrip("0").rstrip(".") if strip and "." in s else s


def format_value(value, kind: str, *, std=None, n=None, paper: bool = False) -> str:
    """``value`` rounded to what it means (module docstring); the paper's without trailing zeros."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    dec, unit = {"percent": (2, "%"), "ratio": (1, "×"), "perplexity": (1, ""), "count": (0, "")}.get(kind, (3, ""))
    text = _num(float(value), dec, paper) if kind != "number" else f"{float(value):.4g}"
    if std is not None and n is not None and n > 1 and not paper:
        sd = f"{float(std):.{dec}f}" if kind != "number" else f"{float(std):.2g}"
        return f"{text} ± {sd}{unit} (n = {n})"
    return text + unit


def _paper_cell(refs: Sequence[PaperNumber], kind: str, hardware: str | None) -> str:
    cells = []
    for p in refs:
        t = format_value(p.value, metric_kind(p.metric)[0], paper=True)
        cells.append(f"> {t}" if "lower bound" in p.note else t)
    text = " / ".join(cells)
    return f"{text} ({hardware})" if text and hardware else text


# ------------------------------------------------------------------------------------ status
def status_of(ours, paper: PaperNumber | None, *, kind: str | None = None, higher_better: bool | None = None,
              ours_dataset: str | None = None, std=None, hardware_differs: bool = False) -> str:
    """The status of one row (rules in the module docstring)."""
    if ours is None or (isinstance(ours, float) and not math.isfinite(ours)):
        return "not run"
    if paper is None:
        return "no paper number"
    if hardware_differs:
        return "different hardware"
    if ours_dataset is not None and paper.dataset not in ("any", ours_dataset):
        return "different dataset"
    k, hb = metric_kind(paper.metric)
    kind, higher_better = kind or k, hb if higher_better is None else higher_better
    ours, ref = float(ours), float(paper.value)
    if "lower bound" in paper.note:  # "more than 32 times": reached, or short of it by how much
        if ours >= ref:
            return "reproduced"
        return "within tolerance" if ours >= ref * (1 - 0.10) else "worse"
    if kind == "percent" or (kind == "number" and ref == 0):
        d = ours - ref
        tol = max(0.5, paper.spread or 0.0, float(std) if std is not None else 0.0)
        if abs(d) <= 0.1 + 1e-9:
            return "reproduced"
        if abs(d) <= tol + 1e-9:
            return "within tolerance"
    else:
        d = ours / ref - 1 if ref else math.inf
        close, tol = {"ratio": (0.10, 0.25), "perplexity": (0.05, 0.10), "count": (0.0, 0.10)}.get(kind, (0.05, 0.10))
        if abs(d) <= close + 1e-12:
            return "reproduced"
        if abs(d) <= tol + 1e-12:
            return "within tolerance"
    return "better" if (d > 0) == higher_better else "worse"


# ------------------------------------------------------------------------------------ loading
def _load(profile: str, results_dir) -> list[dict]:
    out = []
    for path in R.metrics_files(profile, results_dir):
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("metrics", {}), dict):
                raise ValueError("not a metrics JSON object")
            data.setdefault("experiment", path.stem)
            data["_path"] = path
            out.append(data)
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping {path}: {type(exc).__name__}: {exc}", stacklevel=3)
    return out


def _refs(experiment: str, r: Mapping) -> tuple[list[PaperNumber], bool]:
    """(the paper numbers of a row, whether they are compared only in a note)."""
    key = r.get("paper_key") or f"{experiment}:{r['row']}:{r['metric']}"
    if key in PAPER_BY_KEY:
        return [PAPER_BY_KEY[key]], False
    keys = [k for k in (r.get("paper_keys") or []) if k in PAPER_BY_KEY]
    if not keys:
        for exp, metric, pattern, ks in NOTE_REFS:
            if exp == experiment and metric == r["metric"] and pattern.search(str(r["row"])):
                keys = list(ks)
                break
    return [PAPER_BY_KEY[k] for k in keys], bool(keys)


def _sizes(sizes) -> str:
    if not isinstance(sizes, Mapping):
        return "" if sizes is None else str(sizes)
    if all(k in sizes for k in ("train", "valid", "test")):
        return "/".join(str(sizes[k]) for k in ("train", "valid", "test"))
    return ", ".join(f"{k} {v}" for k, v in sizes.items())


def _gpu_matches(env: Mapping, hardware: str) -> bool:
    gpu = str(env.get("gpu") or "").replace(" ", "").lower()
    return bool(gpu) and hardware.replace(" ", "").lower() in gpu


def _row_record(data: Mapping, r: Mapping, attempt: A.Attempt | None = None, profile: str = "") -> dict:
    experiment = data["experiment"]
    dataset = data.get("dataset") or {}
    ds = r.get("dataset", dataset.get("name"))
    sizes = r.get("dataset_sizes", dataset.get("sizes") if ds == dataset.get("name") else None)
    refs, note_only = _refs(experiment, r)
    primary = refs[0] if refs else None
    kind, higher = metric_kind(r["metric"])
    hardware = PAPER_HARDWARE.get(primary.experiment) if primary and r["metric"] == "speed-up x" else None
    env = data.get("environment") or {}
    hw_differs = note_only or (hardware is not None and not _gpu_matches(env, hardware))
    status = status_of(r.get("value"), primary, kind=kind, higher_better=higher, ours_dataset=ds, std=r.get("std"),
                       hardware_differs=hw_differs)
    notes = []
    if primary is not None and status == "different dataset":
        notes.append(f"Different dataset: ours {ds}" + (f" ({_sizes(sizes)})" if sizes else "")
                     + f", the paper's {primary.dataset}; not comparable.")
    elif primary is not None and status not in ("different hardware", "not run"):
        ref = PAPER_SPLITS.get(primary.dataset)
        if ref and isinstance(sizes, Mapping) and any(sizes.get(k) != v for k, v in ref.items()):
            notes.append(f"Reduced data: ours {_sizes(sizes)} (train/valid/test) vs the paper's {_sizes(ref)}.")
    if status == "different hardware":
        paper_side = "; ".join(f"{p.row}: {p.dataset}" for p in refs)
        notes.append(f"Different hardware: the paper's {paper_side} ({refs[0].source}); ours on {_machine(env)}"
                     + (f", {ds}" if ds and ds != "-" else "")
                     + (" - compared only in a note" if note_only else "") + "; not comparable.")
    for p in refs:
        if p.status != "VERIFIED":
            notes.append(f"Paper number {p.status} ({p.source}): {p.row}, {p.metric} {p.value:g}.")
        if p.note:
            notes.append(f"Paper ({p.row}, {p.metric}): {p.note}.")
    if r.get("note"):
        notes.append(str(r["note"]).rstrip(".") + ".")
    if A.is_stale(data.get("created_utc"), attempt):
        notes.insert(0, A.stale_note(data.get("created_utc"), attempt, profile)  # type: ignore[arg-type]
                     + f" Its comparison at the time: {status}.")
        status = "stale"
    section = primary.experiment if primary else experiment
    order = (SECTIONS.get(section, len(set(SECTIONS.values()))), _PAPER_INDEX.get(primary.key, 10**6) if primary
             else 10**6)
    return {"experiment": experiment, "section": section, "row": r["row"], "metric": r["metric"], "kind": kind,
            "ours": r.get("value"), "std": r.get("std"), "n": r.get("n"), "paper": primary.value if primary else None,
            "paper_text": _paper_cell(refs, kind, hardware), "dataset": ds, "status": status, "notes": notes,
            "order": order, "json": data["_path"].name, "note_only": note_only}


def _not_run(experiment: str) -> dict:
    e = EXPERIMENTS.get(experiment)
    title = e.title if e else experiment
    return {"experiment": experiment, "section": experiment, "row": title, "metric": "", "kind": "number",
            "ours": None, "std": None, "n": None, "paper": None, "paper_text": "", "dataset": None, "status": "not run",
            "notes": [f"No results/<profile>/{experiment}.json: run notebook {e.notebook if e else experiment}."],
            "order": (SECTIONS.get(experiment, len(set(SECTIONS.values()))), 10**6), "json": "", "note_only": False}


def _shorten(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    short = re.sub(r"\s*\([^()]*\)", "", text)
    if len(short) <= budget:
        return short
    cut = short[: max(budget - 1, 8)].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _build(records: list[dict], title: str, prefix_section: bool) -> Report:
    footnotes: list[str] = []
    index: dict[str, int] = {}

    def mark(note: str) -> int:
        if note not in index:
            footnotes.append(note)
            index[note] = len(footnotes)
        return index[note]

    rows = []
    for rec in records:
        metric = re.sub(r"\s+x$", "", rec["metric"])
        claim = f"{rec['row']}, {metric}" if metric else str(rec["row"])
        if prefix_section and rec["section"] in SECTION_LABELS:
            claim = f"{SECTION_LABELS[rec['section']]}: {claim}"
        ours = format_value(rec["ours"], rec["kind"], std=rec["std"], n=rec["n"])
        paper, status = rec["paper_text"], rec["status"]
        notes = list(rec["notes"])
        budget = MAX_WIDTH - 13 - len(paper) - len(ours) - len(status)
        # marks of notes not yet numbered will take the next numbers: count their width before assigning
        fresh = iter(range(len(footnotes) + 1, len(footnotes) + len(notes) + 2))
        marks_len = sum(len(f"[{index[n] if n in index else next(fresh)}]") for n in notes) + 1
        if len(claim) + marks_len > budget:
            short = _shorten(claim, budget - marks_len - len(f"[{len(footnotes) + len(notes) + 1}]"))
            notes.insert(0, f"Full claim: {claim}.")
        else:
            short = claim
        marks = "".join(f"[{k}]" for k in sorted({mark(n) for n in notes}))
        rows.append({"claim": f"{short} {marks}" if marks else short, "paper": paper, "ours": ours, "status": status})
    data = pd.DataFrame([{k: v for k, v in rec.items() if k not in ("notes", "order")} for rec in records])
    if not data.empty:
        data.insert(0, "claim", [r["claim"] for r in rows])
    return Report(pd.DataFrame(rows, columns=COLUMNS), footnotes, data, title)


# ------------------------------------------------------------------------------------ public
def paper_table(profile: str, experiment: str | None = None, results_dir=None) -> Report:
    """Paper vs ours for the rows of one experiment's metrics JSON (all files when ``experiment`` is None)."""
    files = _load(profile, results_dir)
    found = {d["experiment"] for d in files}
    attempts = A.last_attempts(profile, results_dir)
    records = [_row_record(d, r, attempts.get(d["experiment"]), profile) for d in files
               if experiment in (None, d["experiment"]) for r in (d.get("metrics") or {}).get("rows", [])]
    if experiment is not None and experiment not in found:
        records.append(_not_run(experiment))
    title = f"Paper vs ours - {experiment or 'all experiments'} (profile {profile})"
    return _build(records, title, prefix_section=False)


def summary_table(profile: str, results_dir=None) -> Report:
    """Every experiment's rows in the paper's order (Table 1, ImageNet, PTB, energy/memory, kernels, filters,
    the rest); a registered experiment without metrics JSON is one ``not run`` row."""
    files = _load(profile, results_dir)
    found = {d["experiment"] for d in files}
    attempts = A.last_attempts(profile, results_dir)
    records = [_row_record(d, r, attempts.get(d["experiment"]), profile) for d in files
               for r in (d.get("metrics") or {}).get("rows", [])]
    records += [_not_run(e) for e in EXPERIMENTS if e not in NO_METRICS and e not in found]
    records.sort(key=lambda rec: rec["order"])  # stable: a file's own order within equal keys
    return _build(records, f"Paper vs ours - all experiments (profile {profile})", prefix_section=True)


def provenance_table(profile: str, results_dir=None) -> pd.DataFrame:
    """The full comparison: experiment, row, metric, ours, std, n, paper, delta, dataset, sizes, paper status,
    source, json (from :func:`qnnlib.experiments.results.comparison_table`)."""
    t = R.comparison_table(profile, results_dir)
    cols = ["experiment", "row", "metric", "ours", "std", "n", "paper", "delta", "dataset", "dataset_sizes",
            "paper_status", "paper_source", "json"]
    return t[cols].rename(columns={"dataset_sizes": "sizes", "paper_status": "paper status",
                                   "paper_source": "source"}).reset_index(drop=True)


def _machine(env: Mapping) -> str:
    cores = env.get("cpu_affinity") or env.get("cpu_count")
    gpu = env.get("gpu")
    return f"{env.get('cpu') or '?'} ({cores} cores)" + (f", GPU {gpu}" if gpu else ", no GPU")


def sources_table(profile: str, results_dir=None) -> pd.DataFrame:
    """One row per metrics JSON: experiment, dataset (sizes), machine, created (UTC), wall time, git."""
    rows = []
    for d in _load(profile, results_dir):
        ds, git = d.get("dataset") or {}, d.get("git") or {}
        rows.append({"experiment": d["experiment"], "dataset": f"{ds.get('name')} ({_sizes(ds.get('sizes'))})",
                     "machine": _machine(d.get("environment") or {}), "created (UTC)": d.get("created_utc"),
                     "wall time (s)": round(float(d.get("wall_time_s") or 0.0), 1),
                     "git": (git.get("commit") or "?")[:10] + (" dirty" if git.get("dirty") else "")})
    return pd.DataFrame(rows, columns=["experiment", "dataset", "machine", "created (UTC)", "wall time (s)", "git"])


def readme_results(profile: str, results_dir=None) -> str:
    """The README's results section: machine(s) and date(s) from the metrics JSONs, the table, the footnotes."""
    files = _load(profile, results_dir)
    machines = sorted({_machine(d.get("environment") or {}) for d in files})
    dates = sorted({str(d.get("created_utc") or "")[:10] for d in files} - {""})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "?"
    rep = summary_table(profile, results_dir)
    lines = [f"Profile `{profile}`, run {when} on {'; '.join(machines) or '?'} "
             f"(`python -m qnnlib reproduce --profile {profile}`; full table in `results/{profile}/SUMMARY.md`).", ""]
    return "\n".join(textwrap.fill(line, MAX_WIDTH, break_long_words=False) if line else line
                     for line in lines) + "\n" + rep.markdown()


def update_readme(readme_path, profile: str, results_dir=None) -> bool:
    """Replace the text between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in ``readme_path`` by
    :func:`readme_results`; True when the file changed. ValueError when the markers are missing."""
    path = Path(readme_path)
    text = path.read_text()
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"{path} lacks the markers {BEGIN} ... {END} (in this order)")
    new = text[: i + len(BEGIN)] + "\n" + readme_results(profile, results_dir) + text[j:]
    if new == text:
        return False
    path.write_text(new)
    return True


_STATUS_COLORS = {"reproduced": "tab:green", "within tolerance": "tab:olive", "better": "tab:blue",
                  "worse": "tab:red", "different dataset": "tab:orange", "different hardware": "tab:purple",
                  "no paper number": "tab:gray", "not run": "tab:gray", "stale": "black"}
_UNITS = {"percent": ("%", False), "ratio": ("×", True), "perplexity": ("perplexity", True),
          "count": ("count", True), "number": ("value", False)}


def figure(report_or_df, log_scale: bool = True):
    """Paper (x) vs ours (y) for every row with both numbers; one panel per unit (% linear; ratios,
    perplexities and counts on log axes when ``log_scale``), a y = x line, colour = status.

    Takes a :class:`Report` (its ``data``) or a DataFrame with ``paper``, ``ours``, ``metric`` (and optionally
    ``status``, ``kind``) columns, e.g. :func:`qnnlib.experiments.results.comparison_table`."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    df = report_or_df.data if isinstance(report_or_df, Report) else pd.DataFrame(report_or_df)
    df = df.copy()
    if df.empty or not {"paper", "ours", "metric"} <= set(df.columns):
        df = pd.DataFrame(columns=["paper", "ours", "metric", "kind", "status"])
    if "kind" not in df:
        df["kind"] = [metric_kind(str(m))[0] for m in df["metric"]]
    if "status" not in df:
        df["status"] = "compared"
    df["paper"] = pd.to_numeric(df["paper"], errors="coerce")
    df["ours"] = pd.to_numeric(df["ours"], errors="coerce")
    df = df[df["paper"].notna() & df["ours"].notna()]
    kinds = [k for k in _UNITS if k in set(df["kind"])] or ["percent"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        sub = df[df["kind"] == kind]
        unit, logable = _UNITS[kind]
        for status, g in sub.groupby("status", sort=False):
            ax.scatter(g["paper"], g["ours"], s=40, alpha=0.8, color=_STATUS_COLORS.get(status, "black"),
                       edgecolor="black", linewidth=0.5)
        vals = pd.concat([sub["paper"], sub["ours"]])
        positive = vals[vals > 0]
        log = log_scale and logable and len(positive) == len(vals) and len(vals) > 0
        lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
        if log:
            lo, hi = lo / 1.5, hi * 1.5
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            pad = 0.08 * (hi - lo or 1.0)
            lo, hi = min(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="y = x")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        name = {"percent": "percentage", "ratio": "ratio"}.get(kind, kind)
        ax.set_xlabel(f"paper ({unit})")
        ax.set_ylabel(f"ours ({unit})")
        ax.set_title(f"{name}{' (log scale)' if log else ''}: {len(sub)} rows")
        ax.grid(True, which="both", alpha=0.3)
    present = [s for s in _STATUS_COLORS if s in set(df["status"])] + [s for s in set(df["status"])
                                                                         if s not in _STATUS_COLORS]
    handles = [Line2D([], [], marker="o", linestyle="", color=_STATUS_COLORS.get(s, "black"), label=s)
               for s in present] + [Line2D([], [], color="black", linestyle="--", label="y = x")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False)
    fig.suptitle("Paper vs reproduced")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    plt.close(fig)  # shown once, by whoever displays the returned figure
    return fig


def check_sanity(cfg: SummaryConfig, report: Report, figure_file=None, results_dir=None) -> list[str]:
    """Assert that every registered experiment's metrics JSON was found or is a ``not run`` row, that every
    status is a known one, that the markdown fits :attr:`Sanity.max_width`; returns the checks that passed."""
    bound, passed = SANITY[cfg.profile], []
    found = {p.stem for p in R.metrics_files(cfg.profile, results_dir)}
    data = report.data
    for name in EXPERIMENTS:
        if name in NO_METRICS:
            continue
        marked = (not data.empty and ((data["experiment"] == name) & (data["status"] == "not run")).any())
        assert name in found or marked, f"{name}: neither results/{cfg.profile}/{name}.json nor a 'not run' row"
        passed.append(f"{name}: " + (f"{name}.json found" if name in found else "not run (marked in the table)"))
    unknown = sorted(set(report.table["status"]) - set(STATUSES))
    assert not unknown, f"unknown statuses {unknown}"
    counts = report.table["status"].value_counts()
    passed.append(f"{len(report.table)} rows: " + ", ".join(f"{s} {counts[s]}" for s in STATUSES if s in counts))
    width = max((len(line) for line in report.markdown().splitlines()), default=0)
    assert width <= bound.max_width, f"markdown line of {width} characters > {bound.max_width}"
    passed.append(f"markdown at most {width} characters wide (limit {bound.max_width})")
    if figure_file is not None:
        assert Path(figure_file).is_file() and Path(figure_file).stat().st_size > 0, f"figure {figure_file} missing"
        passed.append(f"figure written: {Path(figure_file).name}")
    return passed

