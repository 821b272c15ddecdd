"""Reproduce the paper: execute every notebook of a profile with Papermill and write a summary.

Command line (:mod:`qnnlib.cli`)::

    python -m qnnlib reproduce --profile quick [--only mnist ptb] [--results-dir D] [--timeout S]
    python -m qnnlib list

Each registered notebook ``notebooks/<file>`` is executed with Papermill into
``<results>/<profile>/<file>`` with the parameter ``profile=<profile>``, the working directory
``notebooks/``, and the environment variables ``QNNLIB_PROFILE``, ``QNNLIB_RESULTS`` (absolute)
and ``PYTHONPATH`` (repository root first, so ``import qnnlib`` works without installing). The
kernel is the ``python3`` kernelspec; jupyter_client replaces its ``python`` command by
``sys.executable``, so the notebooks run in the interpreter that runs this module (the venv).

A failing notebook is saved with its error (Papermill does that), named in
``<results>/<profile>/SUMMARY.md`` and on stdout, and the others still run; the exit code is 1 if
any notebook failed or a requested one is missing, else 0. SUMMARY.md leads with the run status (one line),
then the compact paper-vs-ours table in the paper's order (:func:`qnnlib.experiments.report.summary_table`,
built from every metrics JSON in the profile folder, including those of earlier runs), the per-notebook status
and wall time, the hardware, and at the end the full provenance table
(:func:`qnnlib.experiments.report.provenance_table`).

Interrupted runs: SUMMARY.md says ``IN PROGRESS`` from before the first notebook starts until the last one
ended (rewritten after each notebook), so a run killed with ``kill -9`` leaves a summary that says it did
not finish and lists the notebook it was in as RUNNING, never as OK. Each notebook's start and end go to
the attempts log (:mod:`qnnlib.experiments.attempts`); a row whose metrics JSON is older than the last
attempt of its notebook is marked ``stale``, with the date it was measured.

Registry: :data:`qnnlib.experiments.config.EXPERIMENTS` is the declared, ordered list of experiments;
only notebooks that exist are run (:func:`available_notebooks`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from qnnlib.experiments import attempts as A
from qnnlib.experiments import report
from qnnlib.experiments import results as R
from qnnlib.experiments.config import EXPERIMENTS, PROFILES
from qnnlib.experiments.notebook_format import normalise_file
from qnnlib.files import atomic_write
from qnnlib.progress import HEADLESS_ENV

NOTEBOOKS: dict[str, str] = {name: e.notebook for name, e in EXPERIMENTS.items()}
"""experiment key -> notebook file in notebooks/, in execution order (from :data:`qnnlib.experiments.config.EXPERIMENTS`)."""
NOTEBOOKS_DIR: Path = R.REPO_ROOT / "notebooks"
KERNEL_NAME = "python3"


@dataclass(frozen=True)
class NotebookRun:
    """What happened to one notebook."""

    key: str
    notebook: str  # file name
    status: str  # "ok" | "failed" | "missing" | "interrupted" (Ctrl-C), or "pending" | "running" while in progress
    wall_time_s: float | None = None
    output: Path | None = None  # executed notebook
    error: str = ""


def available_notebooks(notebooks_dir: Path | None = None) -> dict[str, Path]:
    """The registered notebooks that exist, in :data:`NOTEBOOKS` order (key -> path)."""
    d = Path(notebooks_dir or NOTEBOOKS_DIR)
    return {k: d / f for k, f in NOTEBOOKS.items() if (d / f).is_file()}


@contextlib.contextmanager
def _child_env(profile: str, results_dir: Path) -> Iterator[None]:
    """Set the variables the kernel inherits (jupyter_client copies os.environ), restore afterwards."""
    old = {k: os.environ.get(k) for k in ("QNNLIB_PROFILE", R.RESULTS_ENV, "PYTHONPATH", HEADLESS_ENV)}
    os.environ["QNNLIB_PROFILE"] = profile
    os.environ[HEADLESS_ENV] = "1"  # progress as plain text on stdout, no widgets (qnnlib.progress)
    os.environ[R.RESULTS_ENV] = str(results_dir.resolve())
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(R.REPO_ROOT), old["PYTHONPATH"]) if p)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _describe_error(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    text = _ANSI.sub("", text).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def run_notebook(key: str, path: Path, profile: str, results_dir: Path, *, timeout: float | None = None,
                 kernel_name: str = KERNEL_NAME, progress_bar: bool = False) -> NotebookRun:
    """Execute one notebook into ``<results_dir>/<profile>/<file>``; never raises for notebook errors.

    ``timeout`` is Papermill's per-cell execution timeout in seconds (None: no limit).
    """
    import papermill as pm

    out_dir = R.profile_dir(profile, results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    start = time.perf_counter()
    error = ""
    with _child_env(profile, results_dir):
        try:
            pm.execute_notebook(str(path), str(output), parameters={"profile": profile}, kernel_name=kernel_name,
                                cwd=str(path.parent), progress_bar=progress_bar, execution_timeout=timeout)
        except Exception as exc:  # a failing notebook must not stop the others
            error = _describe_error(exc)
    wall = time.perf_counter() - start
    if output.exists():
        normalise_file(output)  # canonical metadata and serialisation, as JupyterLab saves it
    return NotebookRun(key, path.name, "failed" if error else "ok", wall, output if output.exists() else None, error)


def reproduce(profile: str, only: Sequence[str] | None = None, results_dir: Path | None = None,
              timeout: float | None = None, notebooks_dir: Path | None = None, *,
              kernel_name: str = KERNEL_NAME, progress_bar: bool = False, echo: bool = True) -> list[NotebookRun]:
    """Run the notebooks of ``profile`` (all present ones, or the keys in ``only``), then write SUMMARY.md."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    if only is not None and not list(only):
        raise ValueError(f"only names no experiment; give at least one of: {', '.join(NOTEBOOKS)}")
    results_dir = R.results_root(results_dir)
    R.profile_dir(profile, results_dir)  # validates the profile name as a folder name
    unknown = sorted(set(only or ()) - set(NOTEBOOKS))
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; registered: {', '.join(NOTEBOOKS)}")
    present = available_notebooks(notebooks_dir)
    # all: the present notebooks (absent ones are listed in the summary); --only: exactly those asked for
    keys = list(present) if only is None else [k for k in NOTEBOOKS if k in only]
    if echo and only is None and len(present) < len(NOTEBOOKS):
        print("not yet present (skipped): " + ", ".join(f for k, f in NOTEBOOKS.items() if k not in present))
    started = datetime.now(timezone.utc)
    runs = [NotebookRun(k, NOTEBOOKS[k], "pending") for k in keys]
    write_summary(profile, runs, results_dir, only=only, in_progress=started)  # a kill from here on shows
    for i, key in enumerate(keys, 1):
        if key not in present:
            runs[i - 1] = NotebookRun(key, NOTEBOOKS[key], "missing", error="notebook file not present")
            if echo:
                print(f"[{i}/{len(keys)}] {key}: {NOTEBOOKS[key]} is not present", flush=True)
            continue
        if echo:
            print(f"[{i}/{len(keys)}] {key}: {present[key].name} (profile {profile}) ...", flush=True)
        runs[i - 1] = NotebookRun(key, present[key].name, "running")
        A.record(profile, key, "started", notebook=present[key].name, results_dir=results_dir)
        write_summary(profile, runs, results_dir, only=only, in_progress=started)  # its rows are stale from now
        try:
            run = run_notebook(key, present[key], profile, results_dir, timeout=timeout, kernel_name=kernel_name,
                               progress_bar=progress_bar)
        except KeyboardInterrupt:  # Ctrl-C: say so in the summary (the attempts log shows it as interrupted)
            runs[i - 1] = NotebookRun(key, present[key].name, "interrupted", error="interrupted (Ctrl-C)")
            write_summary(profile, runs, results_dir, only=only)
            raise
        A.record(profile, key, "finished", status=run.status, results_dir=results_dir)
        runs[i - 1] = run
        if echo:
            print(f"    {run.status} in {run.wall_time_s:.1f} s" + (f": {run.error}" if run.error else ""),
                  flush=True)
    summary = write_summary(profile, runs, results_dir, only=only)
    if echo:
        print(f"summary: {summary}")
    return runs


def _runs_table(runs: Sequence[NotebookRun], base: Path) -> str:
    import pandas as pd

    rows = [{"#": i, "experiment": r.key, "notebook": r.notebook, "status": r.status.upper(),
             "wall time (s)": None if r.wall_time_s is None else round(r.wall_time_s, 1),
             "executed notebook": os.path.relpath(r.output, base) if r.output else "", "error": r.error}
            for i, r in enumerate(runs, 1)]
    return R.markdown_table(pd.DataFrame(rows, columns=["#", "experiment", "notebook", "status", "wall time (s)",
                                                        "executed notebook", "error"]), floatfmt=".1f")


def write_summary(profile: str, runs: Sequence[NotebookRun], results_dir: Path | None = None,
                  only: Sequence[str] | None = None, *, in_progress: datetime | None = None) -> Path:
    """Write ``<results>/<profile>/SUMMARY.md``: the run status (one line), the compact paper-vs-ours table in the
    paper's order with its footnotes (:func:`qnnlib.experiments.report.summary_table`, stale rows marked), the
    notebooks run, the hardware, and at the end the full provenance table and the metrics files.

    ``in_progress`` (the run's start time) writes the status ``IN PROGRESS`` with what to do if the line
    outlives the command: :func:`reproduce` writes it before the first notebook and after each one, so a
    killed run never leaves a summary that calls an unfinished notebook OK.
    """
    import pandas as pd

    out_dir = R.profile_dir(profile, results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env, git = R.environment_info(), R.git_info()
    failed = [r for r in runs if r.status not in ("ok", "pending", "running")]
    cmd = f"python -m qnnlib reproduce --profile {profile}" + (f" --only {' '.join(only)}" if only else "")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if in_progress is not None:
        done = sum(r.status not in ("pending", "running") for r in runs)
        status = (f"**IN PROGRESS** since {in_progress.isoformat(timespec='seconds')} (process {os.getpid()}): "
                  f"{done} of {len(runs)} notebook(s) finished"
                  + (", failed so far: " + ", ".join(r.key for r in failed) if failed else "")
                  + ". If this line is still here after the command has ended, the run was killed: rerun it")
    elif failed:
        status = ("**FAILED: " + ", ".join(f"{r.key} ({r.notebook}: {r.error or r.status})" for r in failed)
                  + f"** ({len(runs) - len(failed)} of {len(runs)} notebook(s) ran)")
    elif runs:
        status = f"**OK**: all {len(runs)} notebook(s) ran without error"
    else:
        status = "No notebook ran"
    lines = [f"# Reproduction summary - profile `{profile}`", "", status + ".", "",
             f"Generated {stamp} by `{cmd}`.", ""]
    summary = report.summary_table(profile, results_dir)
    lines += ["## Paper vs reproduced", "",
              "In the paper's order (Table 1, ImageNet, PTB, energy/memory, kernels, filters), from every metrics JSON "
              "in this", "folder. Status rules and rounding: `qnnlib.experiments.report`; every caveat is a footnote.",
              "", summary.markdown()]
    lines += ["## Notebooks", "", _runs_table(runs, out_dir)]
    attempts = A.last_attempts(profile, results_dir)
    absent = [f"{k} ({f}" + (f"; {attempts[k].describe()}" if k in attempts else "") + ")"
              for k, f in NOTEBOOKS.items() if k not in {r.key for r in runs}]
    if absent:
        lines += [f"Not run this time (not requested or notebook not yet present): {', '.join(absent)}.", ""]
    lines += ["## Hardware and software", "",
              f"- CPU: {env['cpu']} ({env['cpu_count']} cores, {env['cpu_affinity']} usable)",
              f"- GPU: {env.get('gpu') or 'none'} (CUDA {env.get('cuda') or '-'})",
              f"- Python {env['python']}, torch {env.get('torch')}, numpy {env['numpy']}; {env['platform']}",
              f"- git: {git.get('commit') or git.get('error')}" + (" (dirty)" if git.get("dirty") else ""), ""]
    table = report.provenance_table(profile, results_dir)
    lines += ["## Provenance: the full comparison", "",
              "Every metrics row with its unrounded value, `delta` = ours - paper (only where the datasets match), "
              "our dataset and", "sizes, the paper number's status (VERIFIED: read in the paper, SEC: secondary "
              "source, UNCONFIRMED: recalled) and source.", ""]
    lines += [R.markdown_table(table) if not table.empty else "_No metrics rows yet._\n"]
    files = []
    for p in R.metrics_files(profile, results_dir):
        try:
            d = json.loads(p.read_text())
            git_d, env_d = d.get("git") or {}, d.get("environment") or {}
            files.append({"file": p.name, "created (UTC)": d.get("created_utc"), "wall time (s)": d.get("wall_time_s"),
                          "git": (git_d.get("commit") or "?")[:10] + (" dirty" if git_d.get("dirty") else ""),
                          "gpu": env_d.get("gpu") or "none"})
        except (OSError, ValueError, AttributeError) as exc:
            files.append({"file": p.name, "created (UTC)": f"unreadable: {type(exc).__name__}"})
    if files:
        lines += ["## Metrics files", "", R.markdown_table(pd.DataFrame(files), floatfmt=".1f")]
    path = out_dir / "SUMMARY.md"
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))
    return path
