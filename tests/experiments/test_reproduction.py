"""Tests for qnnlib.experiments.reproduction: a tiny notebook registry, one good and one failing notebook.

The papermill run (two kernel launches) happens once, in a module-scoped fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from qnnlib import cli
from qnnlib.experiments import attempts as A
from qnnlib.experiments import reproduction as rp

ROOT = Path(__file__).resolve().parents[2]

GOOD = '''
import os, sys
from qnnlib.experiments import results as R
R.write_metrics("good", profile, config={"profile": profile}, history=[{"epoch": 1, "valid_error": 50.0}],
                metrics={"rows": [{"row": "BNN (Theano)", "metric": "test error %", "value": 12.5,
                                   "paper_key": "mnist:BNN (Theano):test error %"}]},
                dataset={"name": "fashion-mnist", "sizes": {"train": 100, "valid": 10, "test": 10}, "source": "x"},
                wall_time_s=0.1,
                extra={"executable": sys.executable, "prefix": sys.prefix, "cwd": os.getcwd(),
                       "env_profile": os.environ.get("QNNLIB_PROFILE"), "qnnlib": R.__file__,
                       "env_headless": os.environ.get("QNNLIB_HEADLESS")})
'''


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    nbdir, res = tmp / "notebooks", tmp / "results"
    nbdir.mkdir()
    _notebook(nbdir / "01_bad.ipynb", 'raise RuntimeError("deliberate failure")')
    _notebook(nbdir / "02_good.ipynb", GOOD)
    registry = {"bad": "01_bad.ipynb", "good": "02_good.ipynb", "later": "03_later.ipynb"}
    env_before = {k: os.environ.get(k) for k in ("QNNLIB_PROFILE", "QNNLIB_RESULTS", "PYTHONPATH", "QNNLIB_HEADLESS")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rp, "NOTEBOOKS", registry)
        mp.setattr(rp, "NOTEBOOKS_DIR", nbdir)
        code = cli.main(["reproduce", "--profile", "smoke", "--results-dir", str(res), "--timeout", "120"])
        env_after = {k: os.environ.get(k) for k in env_before}
    return {"code": code, "nbdir": nbdir, "out": res / "smoke", "env": (env_before, env_after)}


def test_exit_code_and_env_restored(ran):
    assert ran["code"] == 1
    before, after = ran["env"]
    assert before == after


def test_failed_notebook_saved_with_error(ran):
    nb = nbformat.read(ran["out"] / "01_bad.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any(o.get("output_type") == "error" and "deliberate failure" in o.get("evalue", "") for o in outputs)


def test_executed_notebooks_are_in_nbformat_serialisation(ran):
    for name in ("01_bad.ipynb", "02_good.ipynb"):
        raw = (ran["out"] / name).read_text()
        assert raw.endswith("\n") and raw == nbformat.writes(nbformat.reads(raw, as_version=4)) + "\n"


def test_good_notebook_ran_after_failure(ran):
    nb = nbformat.read(ran["out"] / "02_good.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source
    data = json.loads((ran["out"] / "good.json").read_text())
    extra = data["extra"]
    assert data["profile"] == "smoke" and extra["env_profile"] == "smoke" and extra["env_headless"] == "1"
    assert Path(extra["prefix"]).resolve() == Path(sys.prefix).resolve()  # the venv's interpreter
    assert Path(extra["cwd"]).resolve() == ran["nbdir"].resolve()
    assert Path(extra["qnnlib"]).resolve().parent == Path(rp.__file__).resolve().parent


def test_summary_names_failure_and_table(ran):
    text = (ran["out"] / "SUMMARY.md").read_text()
    assert "FAILED" in text and "bad (01_bad.ipynb: RuntimeError: deliberate failure)" in text
    assert "| 2 | good | 02_good.ipynb | OK |" in text
    assert "03_later.ipynb" in text  # declared but not present: listed, not run
    assert "| MNIST: BNN (Theano), test error % [1] | 0.96% | 12.50% | different dataset |" in text
    assert "Different dataset: ours fashion-mnist (100/10/10), the paper's mnist" in text  # footnote 1
    assert "| 12.5 |  |  | 0.96 |" in text  # the provenance table keeps the unrounded value
    assert "good.json" in text and "## Hardware and software" in text and "CPU:" in text


def test_summary_layout_status_first_compact_table_then_runs_hardware_provenance(ran):
    text = (ran["out"] / "SUMMARY.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# Reproduction summary - profile `smoke`" and lines[2].startswith("**FAILED: bad")
    order = [text.index(h) for h in ("## Paper vs reproduced", "| claim | paper | ours | status |", "## Notebooks",
                                     "## Hardware and software", "## Provenance", "## Metrics files")]
    assert order == sorted(order)
    top = text[: text.index("## Provenance")]
    assert max(len(line) for line in top.splitlines()) <= 120


def test_only_missing_notebook_fails_without_kernel(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rp, "NOTEBOOKS", {"later": "03_later.ipynb"})
    monkeypatch.setattr(rp, "NOTEBOOKS_DIR", tmp_path)
    assert cli.main(["reproduce", "--profile", "smoke", "--only", "later", "--results-dir", str(tmp_path / "r")]) == 1
    assert "later" in capsys.readouterr().err
    assert "missing" in (tmp_path / "r" / "smoke" / "SUMMARY.md").read_text().lower()


def test_unknown_only_and_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rp, "NOTEBOOKS_DIR", tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["reproduce", "--only", "nope", "--results-dir", str(tmp_path)])
    assert info.value.code == 2 and "nope" in capsys.readouterr().err
    assert cli.main(["list"]) == 0
    assert "01_mnist_bnn.ipynb" in capsys.readouterr().out


def test_registry_filters_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "NOTEBOOKS", {"a": "01_a.ipynb", "b": "02_b.ipynb", "c": "03_c.ipynb"})
    for name in ("03_c.ipynb", "01_a.ipynb"):
        _notebook(tmp_path / name, "pass")
    assert list(rp.available_notebooks(tmp_path)) == ["a", "c"]


@pytest.mark.parametrize("argv", [["--only", ","], ["--only", ""], ["--profile", "nonsense"]])
def test_bad_arguments_are_usage_errors_that_write_nothing(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["reproduce", *argv, "--results-dir", str(tmp_path / "r")])
    assert info.value.code == 2 and capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # no folder, no SUMMARY.md, no kernel started


# ------------------------------------------------------------------------------ fault injection
CONTROLLED = '''
import json, os, pathlib, time
from qnnlib.experiments import results as R
control = pathlib.Path({control!r})
mode = (control / "mode").read_text()
(control / "kernel.pid").write_text(str(os.getpid()))
if mode == "hang":
    time.sleep(300)  # killed by the test long before
if mode == "fail":
    raise RuntimeError("deliberate failure")
R.write_metrics("mnist", profile, config={{}}, history=[],
                metrics={{"rows": [{{"row": "BNN (Theano)", "metric": "test error %", "value": float(mode),
                                    "paper_key": "mnist:BNN (Theano):test error %"}}]}},
                dataset={{"name": "fashion-mnist", "sizes": {{"train": 1, "valid": 1, "test": 1}}}}, wall_time_s=0.1)
'''


def _cli(tmp: Path, mode: str, **popen) -> subprocess.Popen:
    (tmp / "control" / "mode").write_text(mode)
    argv = [sys.executable, "-m", "qnnlib", "reproduce", "--profile", "smoke", "--only", "mnist", "--notebooks-dir",
            str(tmp / "notebooks"), "--results-dir", str(tmp / "results"), "--timeout", "120"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def _summary(tmp: Path) -> tuple[str, str, str]:
    """(status line, the mnist row of the paper table, the mnist row of the notebooks table) of SUMMARY.md."""
    lines = (tmp / "results" / "smoke" / "SUMMARY.md").read_text().splitlines()
    paper = next(line for line in lines if line.startswith("| MNIST: BNN (Theano)"))
    notebook = next(line for line in lines if "| mnist | 01_mnist_bnn.ipynb |" in line)
    return lines[2], paper, notebook


def test_killed_and_failed_reruns_never_show_an_unfinished_notebook_as_ok_or_a_stale_number_unmarked(tmp_path):
    """kill -9 mid-notebook, rerun (failing), rerun (good): what SUMMARY.md says after each."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "control").mkdir()
    _notebook(tmp_path / "notebooks" / "01_mnist_bnn.ipynb", CONTROLLED.format(control=str(tmp_path / "control")))

    first = _cli(tmp_path, "12.5")
    assert first.wait(180) == 0, first.stdout.read()
    status, row, nb = _summary(tmp_path)
    assert status.startswith("**OK**") and "| 12.50% | different dataset |" in row and "| OK |" in nb

    hung = _cli(tmp_path, "hang", start_new_session=True)
    pid_file = tmp_path / "control" / "kernel.pid"
    pid_file.unlink()
    deadline = time.monotonic() + 120
    while not pid_file.exists():  # the notebook is running
        assert time.monotonic() < deadline and hung.poll() is None, "the notebook never started"
        time.sleep(0.2)
    os.killpg(hung.pid, signal.SIGKILL)  # the CLI and whatever shares its session
    hung.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the kernel, if it has a session of its own
    status, row, nb = _summary(tmp_path)
    assert status.startswith("**IN PROGRESS**") and "the run was killed: rerun it" in status
    assert "OK" not in nb and "| RUNNING |" in nb
    assert row.endswith("| 12.50% | stale |")  # measured before the attempt that was killed
    text = (tmp_path / "results" / "smoke" / "SUMMARY.md").read_text()
    assert "01_mnist_bnn.ipynb (started " in text and "is still running" in text  # true when it was written
    assert A.last_attempts("smoke", tmp_path / "results")["mnist"].outcome == "interrupted"

    failed = _cli(tmp_path, "fail")
    assert failed.wait(180) == 1
    status, row, nb = _summary(tmp_path)
    assert status.startswith("**FAILED: mnist") and "| FAILED |" in nb
    assert row.endswith("| 12.50% | stale |")
    text = (tmp_path / "results" / "smoke" / "SUMMARY.md").read_text()
    created = json.loads((tmp_path / "results" / "smoke" / "mnist.json").read_text())["created_utc"]
    assert f"Stale: measured {created[:10]} {created[11:19]} UTC; since then" in text and ") failed. Rerun" in text

    good = _cli(tmp_path, "7.25")
    assert good.wait(180) == 0
    status, row, nb = _summary(tmp_path)
    assert status.startswith("**OK**") and "| 7.25% | different dataset |" in row and "Stale" not in \
        (tmp_path / "results" / "smoke" / "SUMMARY.md").read_text()
