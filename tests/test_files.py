"""Tests for qnnlib.files: atomic writes, orphans of killed writes, unreadable and unwritable files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qnnlib import files as F

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_whole_file_and_keeps_its_mode(tmp_path) -> None:
    p = tmp_path / "a.json"
    with F.atomic_write(p, "w") as f:
        f.write("one\r\n")  # no newline translation
    assert p.read_bytes() == b"one\r\n" and list(tmp_path.iterdir()) == [p]
    p.chmod(0o600)
    with F.atomic_write(p, "wb") as f:
        f.write(b"two")
    assert p.read_bytes() == b"two" and p.stat().st_mode & 0o777 == 0o600
    with F.atomic_write(tmp_path / "b", "wb", file_mode=0o640) as f:
        f.write(b"x")
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), F.atomic_write(p) as f:
        f.write(b"half")
        raise RuntimeError("boom")

    def refuse(tmp: Path) -> None:
        assert tmp.read_bytes() == b"new but wrong"  # verify sees the complete temporary file
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"), F.atomic_write(p, verify=refuse) as f:
        f.write(b"new but wrong")
    assert p.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [p]
    with pytest.raises(ValueError, match="mode must be"), F.atomic_write(p, "a"):
        pass


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from qnnlib.files import atomic_write
    with atomic_write(sys.argv[1], "wb") as f:
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write, before the rename
""")


def test_orphan_of_a_killed_write_is_removed_by_the_next_write(tmp_path) -> None:
    p = tmp_path / "last.pt"
    p.write_bytes(b"epoch 3")
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(p)], cwd=ROOT, env={**os.environ,
                          "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert p.read_bytes() == b"epoch 3"  # the reader still sees the previous checkpoint
    left = [q for q in tmp_path.iterdir() if q != p]
    assert len(left) == 1 and left[0].name.startswith(".last.pt.") and F.orphans(p) == left
    (tmp_path / "last.pt.tmp4242424").write_bytes(b"x")  # the names earlier versions left behind
    (tmp_path / ".last.pt.ab12cd.part").write_bytes(b"x")
    (tmp_path / "other.pt.tmp4242424").write_bytes(b"x")  # another file's: not ours to delete
    with F.atomic_write(p) as f:
        f.write(b"epoch 4")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["last.pt", "other.pt.tmp4242424"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path) -> None:
    p = tmp_path / "m.pt"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".m.pt.{sleeper.pid}.abc123{F.TMP_SUFFIX}"
        live.write_bytes(b"being written")
        assert F.orphans(p) == []
        F.remove_orphans(p)
        assert live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert F.orphans(p) == [live]


def test_unreadable_names_the_file_its_size_and_the_remedy(tmp_path) -> None:
    p = tmp_path / "x.pt"
    p.write_bytes(b"")
    err = F.unreadable(p, EOFError("Ran out of input"), "Delete it; the run then restarts.", "checkpoint")
    assert isinstance(err, ValueError) and err.path == p
    assert str(err) == (f"{p} is not a readable checkpoint (EOFError: Ran out of input; the file is empty (0 bytes): "
                        "truncated, empty or not written by this library). Delete it; the run then restarts.")
    p.write_bytes(b"12345")
    long = RuntimeError("PytorchStreamReader failed reading zip archive. This is an internal error. " + "x" * 500)
    msg = str(F.unreadable(p, long, "Delete it."))
    assert "5 B long" in msg and "internal error" not in msg and "failed reading zip archive" in msg


def test_unwritable_directory_is_named_with_how_to_move_it(tmp_path, read_only) -> None:
    ro = read_only(tmp_path / "ro")
    assert not F.is_writable_dir(ro) and F.is_writable_dir(tmp_path / "fine")
    with pytest.raises(F.NotWritableError, match=rf"{ro}/sub is not a writable directory .*set X to elsewhere"):
        F.writable_dir(ro / "sub", "set X to elsewhere")
    with pytest.raises(F.NotWritableError, match=rf"cannot write {ro}/a.json: {ro} is not a writable directory"):
        with F.atomic_write(ro / "a.json", "w") as f:
            f.write("{}")
    assert isinstance(F.NotWritableError("x"), PermissionError)
