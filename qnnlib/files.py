"""Files that are whole or absent: atomic writes, orphan cleanup, unreadable and unwritable files.

Every file the library writes (training checkpoints, saved models, packed ``.npz`` checkpoints, metrics
JSON, executed notebooks, the reproduction summary, downloaded dataset files) goes through
:func:`atomic_write`: the bytes go to a hidden sibling ``.<name>.<pid>.<random>.tmp`` in the destination
directory, are flushed and ``fsync``-ed, and the sibling is renamed over the destination with
``os.replace``. A reader therefore sees the old file or the new one, never half of one.

A process killed between the two steps leaves its temporary sibling behind. The next write of the same
destination removes such orphans (:func:`remove_orphans`): a temporary file whose writer process no
longer exists, plus the names older versions of this library used (``last.pt.tmp<pid>``,
``<name>.tmp``, ``.<name>.<random>.part``). A live writer's file is never touched.

A file that exists but cannot be parsed (truncated by a full disk, emptied, written by something else)
raises :class:`UnreadableFileError`, which names the file, the parser's complaint and what to do
(usually: delete it, and the step that wrote it runs again). A directory the library must write into but
cannot raises :class:`NotWritableError`, which names the directory and the setting that moves it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["TMP_SUFFIX", "UnreadableFileError", "NotWritableError", "atomic_write", "remove_orphans",
           "orphans", "unreadable", "writable_dir", "is_writable_dir"]

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary sibling of an atomic write (``.<name>.<pid>.<random>.tmp``)."""


class UnreadableFileError(ValueError):
    """A file exists but cannot be read as what it should be; the message names it and the remedy."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class NotWritableError(PermissionError):
    """A directory the library has to write into is not writable; the message names it and how to move it."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def unreadable(path: str | os.PathLike, exc: BaseException, remedy: str, what: str = "file") -> UnreadableFileError:
    """The error for a ``what`` at ``path`` that failed to parse with ``exc``: names the file, its size, the
    parser's complaint and ``remedy`` (e.g. "Delete it; the run then restarts from epoch 1.")."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        size = None
    first = re.split(r"(?<=[.!?])\s|\n", str(exc).strip(), maxsplit=1)[0].rstrip(".")[:160]
    detail = f"{type(exc).__name__}: {first}".rstrip(": ")
    state = "empty (0 bytes)" if size == 0 else f"{size} B long" if size is not None else "of unknown size"
    return UnreadableFileError(f"{p} is not a readable {what} ({detail}; the file is {state}: truncated, empty or not "
                               f"written by this library). {remedy}", p)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def orphans(path: str | os.PathLike) -> list[Path]:
    """Temporary siblings of ``path`` left by a writer that no longer runs (see the module docstring)."""
    p = Path(path)
    if not p.parent.is_dir():
        return []
    name = re.escape(p.name)
    ours = re.compile(rf"^\.{name}\.(\d+)\.[^.]+{re.escape(TMP_SUFFIX)}$")
    legacy_pid = re.compile(rf"^{name}\.tmp(\d+)$")  # train.py's old last.pt.tmp<pid>
    legacy = re.compile(rf"^(?:{name}\.tmp|\.{name}\.[^.]+\.part|\.{name}\.[^.]+{re.escape(TMP_SUFFIX)})$")
    found = []
    for entry in p.parent.iterdir():
        m = ours.match(entry.name) or legacy_pid.match(entry.name)
        if m:
            if not _pid_alive(int(m.group(1))):
                found.append(entry)
        elif legacy.match(entry.name):
            found.append(entry)
    return sorted(found)


def remove_orphans(path: str | os.PathLike) -> list[Path]:
    """Delete :func:`orphans` of ``path``; return what was removed."""
    removed = []
    for o in orphans(path):
        with contextlib.suppress(FileNotFoundError):
            o.unlink()
            removed.append(o)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, verify: Callable[[Path], Any] | None = None,
                 file_mode: int | None = None, encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit rename it over ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default UTF-8, no newline translation). ``verify(tmp_path)``, when given, runs
    on the complete temporary file before the rename and may raise to refuse it (then ``path`` is unchanged).
    The new file gets ``file_mode``, else the mode of the file it replaces, else ``0o666 & ~umask`` (as
    ``open`` would create it). The parent directory must exist (a missing or read-only one raises
    :class:`NotWritableError`). Orphans of earlier killed writes of ``path`` are removed first.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    p = Path(path)
    try:
        remove_orphans(p)
        fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.{os.getpid()}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        raise NotWritableError(f"cannot write {p}: {p.parent} is not a writable directory ({type(exc).__name__}: "
                               f"{exc.strerror or exc})", p.parent) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **({"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(tmp)
        if file_mode is None:
            try:
                file_mode = p.stat().st_mode & 0o7777
            except FileNotFoundError:
                file_mode = 0o666 & ~_umask()
        os.chmod(tmp, file_mode)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def _probe(d: Path) -> None:
    """Create ``d`` if needed and a file in it (removed again); raises the ``OSError`` when either fails."""
    d.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=d, prefix=".qnnlib-write-test.")
    os.close(fd)
    os.unlink(name)


def is_writable_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` exists (or can be created) and a file can be created in it."""
    try:
        _probe(Path(directory))
    except OSError:
        return False
    return True


def writable_dir(directory: str | os.PathLike, how_to_move: str) -> Path:
    """Create ``directory`` if needed and check that files can be created in it; return it.

    Raises :class:`NotWritableError` naming the directory, the OS error and ``how_to_move`` (e.g. "set
    QNNLIB_DATA to a writable directory").
    """
    d = Path(directory)
    try:
        _probe(d)
    except OSError as exc:
        raise NotWritableError(f"{d} is not a writable directory ({type(exc).__name__}: {exc.strerror or exc}); "
                               f"{how_to_move}", d) from exc
    return d
