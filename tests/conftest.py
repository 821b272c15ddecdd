"""Shared fixtures."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (directory, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def read_only(monkeypatch):
    """Make a directory unwritable: ``read_only(path)`` creates it and denies creating files in it.

    chmod 0o555 does not stop root (CI runs as root), so for root the denial is simulated where files get
    created (``tempfile.mkstemp``, ``os.open`` with O_CREAT, ``Path.mkdir``) with the PermissionError a
    read-only mount gives.
    """
    import errno
    import os
    import tempfile
    from pathlib import Path

    denied: list[Path] = []

    def under(p) -> bool:
        p = Path(p).absolute()
        return any(p == d or d in p.parents for d in denied)

    def refuse(p):
        raise PermissionError(errno.EACCES, "Permission denied", str(p))

    if os.geteuid() == 0:
        real_mkstemp, real_open, real_mkdir = tempfile.mkstemp, os.open, Path.mkdir

        def mkstemp(*args, **kw):
            d = kw.get("dir") if "dir" in kw else (args[2] if len(args) > 2 else None)
            if d is not None and under(d):
                refuse(d)
            return real_mkstemp(*args, **kw)

        def open_(path, flags, *args, **kw):
            if flags & os.O_CREAT and under(Path(path).parent):
                refuse(path)
            return real_open(path, flags, *args, **kw)

        def mkdir(self, mode=0o777, parents=False, exist_ok=False):
            if under(self) and not (exist_ok and self.is_dir()):
                refuse(self)
            return real_mkdir(self, mode, parents, exist_ok)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(Path, "mkdir", mkdir)

    def make(path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        denied.append(path.absolute())
        if os.geteuid() != 0:
            path.chmod(0o555)  # undone after the test
        return path

    yield make
    for d in denied:
        if d.exists():
            d.chmod(0o755)
