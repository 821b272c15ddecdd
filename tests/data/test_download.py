"""Tests for qnnlib.data.download: a failed download (bad checksum, truncated stream) leaves nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from qnnlib.data.download import ChecksumFile, DatasetNotFoundError, RemoteFile, extract_tar, fetch_file, file_md5
from qnnlib.data.idx import DatasetCorruptError, write_idx


# ------------------------------------------------------------------------------ helpers
def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _remote(path: Path, arr: np.ndarray) -> RemoteFile:
    """Write ``arr`` to ``path`` (gzipped IDX) and return a RemoteFile whose md5s match it."""
    write_idx(path, arr)
    data = path.read_bytes()
    return RemoteFile(path.name, _md5(data), _md5(gzip.decompress(data)), arr.shape)


# ------------------------------------------------------------------------------ downloading
def test_download_checksum_mismatch_leaves_nothing(tmp_path, http_dir):
    www, url = http_dir
    remote = _remote(www / "t10k-labels-idx1-ubyte.gz", (np.arange(20) % 10).astype(np.uint8))
    write_idx(www / remote.name, np.zeros(20, np.uint8))  # valid IDX, wrong content
    dest = tmp_path / "dest"
    with pytest.raises(DatasetNotFoundError) as info:
        fetch_file(remote, dest, [url], progress=False)
    assert "checksum mismatch" in str(info.value) and url + remote.name in str(info.value)
    assert not dest.exists()  # no file, no temporary file, and the folder this call created is gone again


class _Truncating(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # announce 1000 bytes, send 10, close
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 8)
        self.close_connection = True


def test_truncated_download_leaves_nothing(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Truncating)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = RemoteFile("x.gz", "0" * 32, "0" * 32, (3,))
        with pytest.raises(DatasetNotFoundError, match="truncated|IncompleteRead"):
            fetch_file(remote, tmp_path, [f"http://127.0.0.1:{server.server_address[1]}/"], progress=False)
        assert list(tmp_path.iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


def test_leftovers_of_an_interrupted_download_are_cleaned_by_the_next(tmp_path, http_dir):
    www, url = http_dir
    remote = _remote(www / "t10k-labels-idx1-ubyte.gz", (np.arange(20) % 10).astype(np.uint8))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / f".{remote.name}.k3j2h1.part").write_bytes(b"\x1f\x8b")  # the name the old downloader used
    (dest / f".{remote.name}.4242424.k3j2h1.tmp").write_bytes(b"\x1f\x8b")  # a killed qnnlib.files write
    path, errors = fetch_file(remote, dest, [url], progress=False)
    assert errors == [] and sorted(dest.iterdir()) == [path] and path.read_bytes() == (www / remote.name).read_bytes()
    assert path.stat().st_mode & 0o777 == 0o644


def test_read_only_destination_is_a_dataset_not_found_error_that_says_why(tmp_path, http_dir, read_only):
    www, url = http_dir
    remote = _remote(www / "t10k-labels-idx1-ubyte.gz", (np.arange(20) % 10).astype(np.uint8))
    ro = read_only(tmp_path / "ro")
    for dest in (ro, ro / "mnist"):  # an existing read-only folder, and a folder that cannot be created
        with pytest.raises(DatasetNotFoundError, match=rf"{dest} cannot be created or written \(PermissionError.*set "
                                                       "QNNLIB_DATA to a writable directory") as info:
            fetch_file(remote, dest, [url], progress=False)
        assert "QNNLIB_DATA" in info.value.attempts[0]


# ------------------------------------------------------------------------------ checksum-only files, archives
def test_checksum_file_download_and_mismatch(tmp_path, http_dir):
    www, url = http_dir
    payload = os.urandom(300_000)  # several chunks
    (www / "blob.bin").write_bytes(payload)
    assert file_md5(www / "blob.bin") == _md5(payload)
    path, errors = fetch_file(ChecksumFile("blob.bin", _md5(payload)), tmp_path / "a", [url], progress=False)
    assert errors == [] and path.read_bytes() == payload
    with pytest.raises(DatasetNotFoundError, match=rf"{url}blob.bin: DatasetCorruptError: {url}blob.bin: checksum "
                                                   r"mismatch for blob.bin: md5 \w+ \(300000 bytes\), expected 0+\. "
                                                   "The file is incomplete or not the official one: delete it"):
        fetch_file(ChecksumFile("blob.bin", "0" * 32), tmp_path / "b", [url], progress=False)
    assert not (tmp_path / "b").exists()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_tar_is_atomic_and_spares_a_live_extraction(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar({"top/x": b"1", "top/sub/y": b"2"}))
    live = tmp_path / f".top.{os.getpid()}.live.tmp"  # a running extraction (this process) is never touched
    live.mkdir()
    dead = tmp_path / ".top.4242424.dead.tmp"
    dead.mkdir()
    out = extract_tar(archive, tmp_path, "top", progress=False)
    assert out == tmp_path / "top" and (out / "sub" / "y").read_bytes() == b"2"
    assert live.is_dir() and not dead.exists()
    archive.write_bytes(_tar({"other/x": b"1"}))
    with pytest.raises(DatasetCorruptError, match=r"holds no folder top2/ \(top level: \['other'\]\)"):
        extract_tar(archive, tmp_path, "top2", progress=False)
    assert not (tmp_path / "top2").exists() and sorted(p.name for p in tmp_path.iterdir() if "top2" in p.name) == []
    archive.write_bytes(_tar({"../evil": b"1", "top3/x": b"1"}))
    (tmp_path / "sub").mkdir()
    with pytest.raises(DatasetCorruptError, match="OutsideDestinationError"):  # tarfile's "data" filter refuses it
        extract_tar(archive, tmp_path / "sub", "top3", progress=False)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "sub" / "top3").exists()
