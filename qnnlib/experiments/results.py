"""Results: the metrics JSON every notebook writes and the paper-vs-ours comparison tables built from them.

Where files go
--------------
``results_dir`` defaults to ``$QNNLIB_RESULTS`` if set, else ``<repo>/results``. A notebook of
profile P writes ``<results_dir>/P/<experiment>.json`` (atomically: temp file + ``os.replace``)
and its figures under ``<results_dir>/P/figures/`` (:func:`figure_path`).

Metrics JSON schema (``"schema": "qnnlib.metrics/1"``) — the contract between notebooks and
:func:`comparison_table`::

    {
      "schema": "qnnlib.metrics/1",
      "experiment": str,               # e.g. "mnist"; also the file name
      "profile": str,                  # "smoke" | "quick" | "paper" | ...
      "created_utc": str,              # ISO 8601, e.g. "2026-11-27T06:00:00+00:00"
      "wall_time_s": float,            # the notebook's own measured wall time
      "config": {...},                 # the resolved config (dataclasses/paths/arrays made JSON-able)
      "dataset": {"name": str, "sizes": {"train": int, "valid": int, "test": int}, "source": str, ...},
                                       # DatasetSplits.describe()
      "metrics": {
        "rows": [                      # what goes into the paper-vs-ours table (may be empty)
          {"row": "BNN (Theano)",      # the method, named like PAPER rows where one matches
           "metric": "test error %",   # same metric names as PAPER
           "value": 1.23,              # float; the mean over seeds when "n" > 1
           "std": 0.05 | null,         # optional: sample std over seeds (null when n = 1)
           "n": 3,                     # optional: number of seeds (runs) behind "value"
           "dataset": "fashion-mnist", # filled from "dataset.name" when omitted
           "dataset_sizes": {...},     # filled from "dataset.sizes" when omitted
           "paper_key": "mnist:BNN (Theano):test error %",   # optional, else matched by
                                       # (experiment, row, metric)
           "note": str}                # optional
        ],
        ...                            # any other scalars/lists the notebook reports
      },
      "history": [ {"epoch": int, ...}, ... ] | {...},   # per-epoch curves
      "environment": {"python", "torch", "numpy", "platform", "machine", "cpu", "cpu_count",
                      "cpu_affinity", "cuda", "gpu"},
      "git": {"commit": str | null, "dirty": bool | null, "error"?: str},
      "extra": {...}                   # optional, free-form
    }

Non-finite floats (NaN, ±inf) are stored as ``null`` so the files are strict JSON.

Dataset honesty: every comparison row carries our dataset name and sizes next to the paper's
dataset; when they differ (e.g. Fashion-MNIST standing in for MNIST) the table says
"DIFFERENT DATASET ... not comparable" and leaves ``delta`` empty.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from qnnlib.data.root import REPO_ROOT
from qnnlib.experiments.paper import PAPER_BY_KEY, PAPER_SPLITS
from qnnlib.files import atomic_write
from qnnlib.runtime.hardware import cpu_cores, cpu_model, popcount_isa

SCHEMA = "qnnlib.metrics/1"
RESULTS_ENV = "QNNLIB_RESULTS"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ------------------------------------------------------------------------------ environment
def environment_info() -> dict:
    """Python/torch/numpy versions, platform, CPU model and cores, GPU name (if CUDA is available)."""
    info: dict = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
                  "machine": platform.machine(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                  "cpu_affinity": cpu_cores(), "cpu_popcount": popcount_isa()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()  # the process's intra-op threads (TrainConfig.threads pins fit's)
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception as exc:  # torch missing or broken CUDA: still record the rest
        info.update(torch=None, cuda=None, gpu=None, torch_error=f"{type(exc).__name__}: {exc}")
    return info



def git_info(repo: Path = REPO_ROOT) -> dict:
    """``{"commit", "dirty"}`` of ``repo``; nulls plus ``error`` without git.

    ``dirty``: a tracked file differs from the commit, untracked files and ``results/`` ignored — the reproduction
    itself rewrites ``results/<profile>/SUMMARY.md`` and ``attempts.jsonl`` before a notebook runs, so counting
    them would mark every reproduced number dirty."""
    try:
        run = dict(cwd=repo, capture_output=True, text=True, timeout=20, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)results"], **run).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError) as exc:
        err = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
        return {"commit": None, "dirty": None, "error": f"{type(exc).__name__}: {err}"}


# ----------------------------------------------------------------------------------- files
def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """``results_dir``, else ``$QNNLIB_RESULTS``, else ``<repo>/results``."""
    if results_dir is None:
        results_dir = os.environ.get(RESULTS_ENV) or REPO_ROOT / "results"
    return Path(results_dir).expanduser()


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(f"{kind} {name!r} must be a plain file name: letters, digits, '_', '.', '-'")
    return name


def profile_dir(profile: str, results_dir: str | os.PathLike | None = None) -> Path:
    """``<results>/<profile>/`` (not created)."""
    return results_root(results_dir) / _check_name("profile", profile)


def to_jsonable(obj):
    """Convert dataclasses, paths, numpy/torch values, sets and tuples to JSON types; NaN/inf -> None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (np.generic, np.ndarray)):
        return to_jsonable(obj.tolist())
    if type(obj).__module__.startswith("torch"):
        if hasattr(obj, "tolist"):  # tensors
            return to_jsonable(obj.detach().cpu().tolist())
        return str(obj)  # dtype, device
    if isinstance(obj, (datetime,)):
        return obj.isoformat()
    raise TypeError(f"cannot store {type(obj).__name__} in a metrics JSON: {obj!r:.80}")


def _complete_rows(rows, dataset: Mapping) -> list[dict]:
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise ValueError('metrics["rows"] must be a list of dicts with "row", "metric", "value"')
    out = []
    for i, r in enumerate(rows):
        missing = [k for k in ("row", "metric", "value") if k not in r]
        if missing:
            raise ValueError(f'metrics["rows"][{i}] lacks {missing}; each row needs "row", "metric", "value"')
        r = dict(r)
        r.setdefault("dataset", dataset.get("name"))
        if r["dataset"] == dataset.get("name"):  # sizes belong to the JSON's dataset, not to e.g. "-"
            r.setdefault("dataset_sizes", dataset.get("sizes"))
        if r.get("n") is not None:
            n = r["n"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f'metrics["rows"][{i}]: n (number of seeds) must be a positive integer, got {n!r}')
            std = r.get("std")
            if (n == 1) != (std is None) or (std is not None and not std >= 0):
                raise ValueError(f'metrics["rows"][{i}]: std must be None for n = 1 and a number >= 0 for n > 1, '
                                 f"got std={std!r} with n={n}")
        if not r["dataset"]:
            raise ValueError(f'metrics["rows"][{i}] has no dataset and the dataset argument has no "name"')
        if r.get("paper_key") is not None and r["paper_key"] not in PAPER_BY_KEY:
            raise ValueError(f'metrics["rows"][{i}]: unknown paper_key {r["paper_key"]!r}; see '
                             "qnnlib.experiments.paper.PAPER_BY_KEY")
        out.append(r)
    return out


def write_metrics(experiment: str, profile: str, *, config: dict, metrics: dict, history: list[dict] | dict,
                  dataset: dict, wall_time_s: float, results_dir: Path | None = None,
                  extra: dict | None = None) -> Path:
    """Write ``<results>/<profile>/<experiment>.json`` atomically (schema in the module docstring)."""
    metrics = dict(metrics)
    dataset = to_jsonable(dataset)
    if not isinstance(dataset, dict):
        raise ValueError("dataset must be a dict such as DatasetSplits.describe()")
    metrics["rows"] = _complete_rows(metrics.get("rows", []), dataset)
    record = {
        "schema": SCHEMA, "experiment": _check_name("experiment", experiment), "profile": profile,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": float(wall_time_s), "config": config, "dataset": dataset, "metrics": metrics,
        "history": history, "environment": environment_info(), "git": git_info(), "extra": extra or {},
    }
    text = json.dumps(to_jsonable(record), indent=1, allow_nan=False)
    out_dir = profile_dir(profile, results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{experiment}.json"
    with atomic_write(path, "w", file_mode=0o644) as f:  # results are shared files
        f.write(text + "\n")
    return path


def read_metrics(experiment: str, profile: str, results_dir: Path | None = None) -> dict:
    """Load one metrics JSON; FileNotFoundError says which notebook/profile produces it."""
    path = profile_dir(profile, results_dir) / f"{_check_name('experiment', experiment)}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the {experiment!r} notebook with profile {profile!r} "
                                f"(python -m qnnlib reproduce --profile {profile} --only {experiment})")
    return json.loads(path.read_text())


def metrics_files(profile: str, results_dir: Path | None = None) -> list[Path]:
    """All ``*.json`` metrics files of a profile, sorted by name."""
    d = profile_dir(profile, results_dir)
    return sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []


def figure_path(profile: str, name: str, results_dir: Path | None = None) -> Path:
    """``<results>/<profile>/figures/<name>`` (``.png`` added when ``name`` has no suffix); creates the folder."""
    d = profile_dir(profile, results_dir) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    name = _check_name("figure name", name)
    return d / (name if Path(name).suffix else f"{name}.png")


# ------------------------------------------------------------------------------- comparison
COMPARISON_COLUMNS = ["experiment", "row", "metric", "ours", "std", "n", "paper", "delta", "dataset", "dataset_sizes",
                      "paper_dataset", "comparable", "paper_status", "paper_source", "note", "json"]


def _sizes_text(sizes) -> str:
    if not isinstance(sizes, Mapping):
        return "" if sizes is None else str(sizes)
    if all(k in sizes for k in ("train", "valid", "test")):
        return "/".join(str(sizes[k]) for k in ("train", "valid", "test"))
    return ", ".join(f"{k} {v}" for k, v in sizes.items())  # e.g. "test 10000"


def _compare_row(experiment: str, r: Mapping, json_name: str) -> dict:
    paper = PAPER_BY_KEY.get(r.get("paper_key") or f"{experiment}:{r['row']}:{r['metric']}")
    ours_ds, sizes = r.get("dataset"), r.get("dataset_sizes")
    value = r.get("value")
    notes = []
    comparable = False
    if paper is None:
        notes.append("no paper number for this row")
    elif ours_ds != paper.dataset:
        notes.append(f"DIFFERENT DATASET: ours {ours_ds}, paper {paper.dataset} - not comparable")
    else:
        comparable = True
        ref = PAPER_SPLITS.get(paper.dataset)
        if ref and isinstance(sizes, Mapping) and any(sizes.get(k) != n for k, n in ref.items()):
            notes.append(f"reduced data ({_sizes_text(sizes)} vs paper {_sizes_text(ref)})")
    if paper is not None and paper.status != "VERIFIED":
        notes.append(f"paper number {paper.status}")
    if r.get("note"):
        notes.append(str(r["note"]))
    delta = value - paper.value if comparable and isinstance(value, (int, float)) else None
    return {"experiment": experiment, "row": r["row"], "metric": r["metric"], "ours": value,
            "std": r.get("std"), "n": r.get("n"), "paper": paper.value if paper else None, "delta": delta, "dataset": ours_ds,
            "dataset_sizes": _sizes_text(sizes), "paper_dataset": paper.dataset if paper else None,
            "comparable": comparable, "paper_status": paper.status if paper else None,
            "paper_source": paper.source if paper else None, "note": "; ".join(notes), "json": json_name}


def comparison_table(profile: str, results_dir: Path | None = None) -> pd.DataFrame:
    """Paper-vs-ours rows from every metrics JSON of ``profile`` (columns: :data:`COMPARISON_COLUMNS`).

    Rows come from ``metrics["rows"]``; each is matched to PAPER by ``paper_key`` or by
    (experiment, row, metric). Unreadable files are skipped with a warning.
    """
    rows = []
    for path in metrics_files(profile, results_dir):
        try:
            data = json.loads(path.read_text())
            experiment = data.get("experiment", path.stem)
            dataset = data.get("dataset") or {}
            for r in data.get("metrics", {}).get("rows", []):
                r = {"dataset": dataset.get("name"), **r}
                if r["dataset"] == dataset.get("name"):
                    r.setdefault("dataset_sizes", dataset.get("sizes"))
                rows.append(_compare_row(experiment, r, path.name))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.warn(f"skipping {path}: {type(exc).__name__}: {exc}", stacklevel=2)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub markdown table of ``df`` (no ``tabulate`` needed); NaN/None print as empty cells."""
    def cell(v) -> str:
        if v is None or (not isinstance(v, (list, tuple, dict, set)) and pd.isna(v)):
            return ""
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False, name=None)]
    return "\n".join(lines) + "\n"
