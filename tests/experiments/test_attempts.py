"""Tests for qnnlib.experiments.attempts: the log of notebook starts/ends and what makes a number stale."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from qnnlib.experiments import attempts as A
from qnnlib.experiments import report
from qnnlib.experiments import results as R

ROW = {"row": "BNN (Theano)", "metric": "test error %", "value": 12.5, "paper_key": "mnist:BNN (Theano):test error %"}


def _metrics(res, created: str | None = None) -> None:
    path = R.write_metrics("mnist", "smoke", config={}, metrics={"rows": [ROW]}, history=[],
                           dataset={"name": "fashion-mnist", "sizes": {"train": 1, "valid": 1, "test": 1}},
                           wall_time_s=1.0, results_dir=res)
    if created is not None:
        d = json.loads(path.read_text())
        d["created_utc"] = created
        path.write_text(json.dumps(d))


def _rows(res) -> list[dict]:
    t = report.summary_table("smoke", res)
    return [dict(zip(t.table.columns, r)) for r in t.table.itertuples(index=False) if "Theano" in r[0]]


def test_outcomes_ok_failed_interrupted_running(tmp_path) -> None:
    assert A.last_attempts("smoke", tmp_path) == {}
    A.record("smoke", "a", "started", notebook="01_a.ipynb", results_dir=tmp_path)
    A.record("smoke", "a", "finished", status="ok", results_dir=tmp_path)
    A.record("smoke", "b", "started", results_dir=tmp_path)
    A.record("smoke", "b", "finished", status="failed", results_dir=tmp_path)
    A.record("smoke", "c", "started", results_dir=tmp_path)  # this process is alive: running
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    log = R.profile_dir("smoke", tmp_path) / A.ATTEMPTS_FILE
    line = json.loads(log.read_text().splitlines()[-1])
    with open(log, "a") as f:
        f.write(json.dumps({**line, "experiment": "d", "pid": int(dead.stdout)}) + "\n")  # killed: no end line
        f.write('{"experiment": "e", "event": "star')  # a line cut by a crash: skipped
    got = A.last_attempts("smoke", tmp_path)
    assert {k: a.outcome for k, a in got.items()} == {"a": "ok", "b": "failed", "c": "running", "d": "interrupted"}
    assert got["a"].notebook == "01_a.ipynb" and got["a"].finished >= got["a"].started
    assert "was interrupted" in got["d"].describe()
    A.record("smoke", "a", "started", results_dir=tmp_path)  # a new attempt forgets the old end
    assert A.last_attempts("smoke", tmp_path)["a"].outcome == "running"


@pytest.mark.parametrize("event,status", [("begun", None), ("finished", None), ("started", "ok"),
                                          ("finished", "maybe")])
def test_bad_events_are_refused(tmp_path, event, status) -> None:
    with pytest.raises(ValueError):
        A.record("smoke", "a", event, status=status, results_dir=tmp_path)


def test_is_stale_compares_whole_seconds() -> None:
    t = datetime(2026, 12, 1, 17, 2, 11, 600_000, tzinfo=timezone.utc)
    att = A.Attempt("mnist", "01_mnist_bnn.ipynb", t, None, "failed")
    assert not A.is_stale("2026-12-01T17:02:11+00:00", att)  # written in the same second as the start
    assert A.is_stale("2026-12-01T17:02:10+00:00", att)
    assert A.is_stale("garbage", att) and not A.is_stale("garbage", None)
    assert A.parse_utc("2026-12-01T17:02:11") == datetime(2026, 12, 1, 17, 2, 11, tzinfo=timezone.utc)


def test_rows_older_than_a_failed_attempt_are_marked_stale_with_their_date(tmp_path) -> None:
    _metrics(tmp_path)
    assert _rows(tmp_path)[0]["status"] == "different dataset"  # fresh: no attempt on record
    old = (datetime.now(timezone.utc) - timedelta(days=2)).replace(microsecond=0)
    _metrics(tmp_path, old.isoformat())
    A.record("smoke", "mnist", "started", notebook="01_mnist_bnn.ipynb", results_dir=tmp_path)
    A.record("smoke", "mnist", "finished", status="failed", results_dir=tmp_path)
    rep = report.summary_table("smoke", tmp_path)
    (row,) = _rows(tmp_path)
    assert row["status"] == "stale"
    note = next(n for n in rep.footnotes if n.startswith("Stale"))
    assert old.strftime("%Y-%m-%d %H:%M:%S UTC") in note and "01_mnist_bnn.ipynb" in note and "failed" in note
    assert "comparison at the time: different dataset" in note and "--profile smoke --only mnist" in note
    A.record("smoke", "mnist", "started", results_dir=tmp_path)
    A.record("smoke", "mnist", "finished", status="ok", results_dir=tmp_path)
    assert _rows(tmp_path)[0]["status"] == "stale"  # the notebook ran but these numbers predate it
    _metrics(tmp_path)  # what a successful run writes
    assert _rows(tmp_path)[0]["status"] == "different dataset"
    assert report.paper_table("smoke", "mnist", tmp_path).table["status"].tolist() == ["different dataset"]
