"""The attempts log: when each notebook of a profile was last started and how that attempt ended.

``python -m qnnlib reproduce`` appends one line to ``<results>/<profile>/attempts.jsonl`` when it starts a
notebook and one when the notebook ends (a JSON object per line, append-only, so a killed run leaves a
``started`` line with no ``finished`` line). :func:`last_attempts` folds the log into one
:class:`Attempt` per experiment; the summary tables use it to mark **stale** rows: numbers from a metrics
JSON written *before* the last attempt of its notebook started — that attempt failed, was killed, or is
still running, so the number on disk is not what the current code and config produce.

Line format::

    {"experiment": "mnist", "event": "started", "utc": "2026-12-01T17:02:11+00:00", "pid": 4242,
     "host": "box", "notebook": "01_mnist_bnn.ipynb"}
    {"experiment": "mnist", "event": "finished", "utc": "...", "pid": 4242, "host": "box", "status": "ok"}
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from qnnlib.experiments.results import profile_dir

__all__ = ["ATTEMPTS_FILE", "OUTCOMES", "Attempt", "record", "last_attempts", "is_stale", "stale_note", "parse_utc"]

ATTEMPTS_FILE = "attempts.jsonl"
OUTCOMES = ("ok", "failed", "running", "interrupted")


@dataclass(frozen=True)
class Attempt:
    """The last attempt to run one experiment's notebook.

    ``outcome``: ``ok`` / ``failed`` (finished), ``running`` (no ``finished`` line and its process is alive
    on this host), ``interrupted`` (no ``finished`` line and the process is gone: killed or crashed).
    """

    experiment: str
    notebook: str
    started: datetime
    finished: datetime | None
    outcome: str

    def describe(self) -> str:
        """E.g. ``"the last attempt (started 2026-12-01 17:02 UTC) was interrupted"``."""
        verb = {"ok": "succeeded", "failed": "failed", "running": "is still running",
                "interrupted": "was interrupted (killed before it finished)"}[self.outcome]
        return f"the last attempt of {self.notebook or self.experiment} (started {_short(self.started)}) {verb}"


def _short(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_utc(text: object) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime (naive times are taken as UTC); ``None`` if unparsable."""
    try:
        t = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def record(profile: str, experiment: str, event: str, *, notebook: str = "", status: str | None = None,
           results_dir: str | os.PathLike | None = None) -> Path:
    """Append a ``started`` or ``finished`` (with ``status`` ``ok``/``failed``) line for ``experiment``."""
    if event not in ("started", "finished"):
        raise ValueError(f"event must be 'started' or 'finished', got {event!r}")
    if (event == "finished") != (status in ("ok", "failed")):
        raise ValueError(f"a finished event needs status 'ok' or 'failed' (a started one none), got {status!r}")
    d = profile_dir(profile, results_dir)
    d.mkdir(parents=True, exist_ok=True)
    line = {"experiment": experiment, "event": event, "utc": _now(), "pid": os.getpid(),
            "host": socket.gethostname(), "notebook": notebook}
    if status is not None:
        line["status"] = status
    path = d / ATTEMPTS_FILE
    text = json.dumps(line) + "\n"
    with open(path, "a+b") as f:  # one short write per line; a line cut by a crash is ended first
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return path


def _alive(pid: object, host: object) -> bool:
    if host != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_attempts(profile: str, results_dir: str | os.PathLike | None = None) -> dict[str, Attempt]:
    """experiment -> its last :class:`Attempt`, from the log (empty if there is none; bad lines are skipped)."""
    path = profile_dir(profile, results_dir) / ATTEMPTS_FILE
    if not path.is_file():
        return {}
    started: dict[str, dict] = {}
    finished: dict[str, dict] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line cut by a crash of the writer
        if not isinstance(line, dict) or parse_utc(line.get("utc")) is None:
            continue
        exp = str(line.get("experiment"))
        if line.get("event") == "started":
            started[exp] = line
            finished.pop(exp, None)
        elif line.get("event") == "finished" and exp in started and line.get("pid") == started[exp].get("pid"):
            finished[exp] = line
    out = {}
    for exp, s in started.items():
        f = finished.get(exp)
        if f is not None:
            outcome = "ok" if f.get("status") == "ok" else "failed"
        else:
            outcome = "running" if _alive(s.get("pid"), s.get("host")) else "interrupted"
        out[exp] = Attempt(exp, str(s.get("notebook") or ""), parse_utc(s["utc"]),  # type: ignore[arg-type]
                           parse_utc(f["utc"]) if f else None, outcome)
    return out


def is_stale(created_utc: object, attempt: Attempt | None) -> bool:
    """Whether numbers written at ``created_utc`` predate ``attempt`` (so that attempt did not produce them).

    Metrics files store whole seconds, so the attempt's start is truncated to the second before comparing.
    An unparsable ``created_utc`` with an attempt on record counts as stale.
    """
    if attempt is None:
        return False
    created = parse_utc(created_utc)
    return created is None or created < attempt.started.replace(microsecond=0)


def stale_note(created_utc: object, attempt: Attempt, profile: str) -> str:
    """The footnote of a stale row: when its numbers were measured and what happened since."""
    created = parse_utc(created_utc)
    when = _short(created) if created else "an unknown time"
    return (f"Stale: measured {when}; since then {attempt.describe()}. Rerun `python -m qnnlib reproduce --profile "
            f"{profile} --only {attempt.experiment}` to refresh it.")

