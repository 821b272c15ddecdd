"""Verified, atomic downloads of dataset files.

A :class:`RemoteFile` names one official file with its checksums and expected IDX shape.
:func:`fetch_file` tries each mirror in turn: the download is streamed (with a tqdm bar) to a hidden
temporary file in the destination directory and renamed with ``os.replace`` only after
:func:`check_bytes` passed (:func:`qnnlib.files.atomic_write`), so an interrupted download never leaves a file that passes for
complete. A file is accepted when EITHER the md5 of its bytes equals the official ``.gz`` md5 OR
the md5 of its decompressed content equals the official decompressed md5 (re-compressed copies
differ only in the gzip container); the IDX header and shape are checked as well.

Errors: :class:`~qnnlib.data.idx.DatasetCorruptError` for a file that fails its checks,
:class:`DatasetNotFoundError` (defined here) when no mirror gave a verified copy.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qnnlib.data.idx import DatasetCorruptError, DatasetError, gunzip_if_needed, parse_idx
from qnnlib.data.root import DATA_ENV
from qnnlib.files import NotWritableError, atomic_write, is_writable_dir, remove_orphans
from qnnlib.progress import progress as progress_bar

__all__ = ["DOWNLOAD_TIMEOUT_S", "DatasetNotFoundError", "RemoteFile", "check_bytes", "verify_file", "fetch_file"]

DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 16


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file is missing and could not be downloaded; ``attempts`` lists ``"url: error"``."""

    def __init__(self, message: str, attempts: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.attempts = list(attempts)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its official name, checksums and expected array shape."""

    name: str  # official file name (".gz")
    gz_md5: str | None  # md5 of the official .gz bytes
    raw_md5: str | None  # md5 of the decompressed content
    shape: tuple[int, ...]  # expected IDX shape


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def check_bytes(data: bytes, remote: RemoteFile, path: Path | str) -> np.ndarray:
    """Verify file bytes against ``remote`` (gz md5 OR content md5, then header and shape); return the array."""
    raw = gunzip_if_needed(data, path)
    if remote.gz_md5 is not None or remote.raw_md5 is not None:
        got_gz, got_raw = _md5(data), _md5(raw)
        if got_gz != remote.gz_md5 and got_raw != remote.raw_md5:
            raise DatasetCorruptError(
                f"{path}: checksum mismatch for {remote.name}: md5 of file {got_gz}, md5 of content {got_raw}; "
                f"expected file md5 {remote.gz_md5} or content md5 {remote.raw_md5}. "
                "The file is incomplete or not the official one: delete it and fetch it again."
            )
    arr = parse_idx(raw, path)
    if arr.shape != remote.shape:
        raise DatasetCorruptError(f"{path}: shape {arr.shape}, expected {remote.shape} for {remote.name}.")
    return arr


def verify_file(path: str | os.PathLike, remote: RemoteFile) -> np.ndarray:
    """Read ``path`` and verify it as ``remote`` (see :func:`check_bytes`)."""
    return check_bytes(Path(path).read_bytes(), remote, path)


def _download(url: str, tmp, timeout: float, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        got = 0
        with progress_bar(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                          disable=not progress, leave=False) as bar:
            while chunk := resp.read(_CHUNK):
                tmp.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got != total:
        raise OSError(f"truncated download: {got} of {total} bytes")


def fetch_file(remote: RemoteFile, dest_dir: Path, mirrors: Sequence[str], *,
               timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> tuple[Path, list[str]]:
    """Download ``remote`` into ``dest_dir`` from the first mirror that gives a verified copy.

    Returns ``(path, errors)`` where ``errors`` lists ``"url: error"`` for each mirror that failed
    before success; raises :class:`DatasetNotFoundError` (with every URL and error) if all failed, and
    also when ``dest_dir`` cannot be created or written (a read-only data root: the error says so and
    names :data:`~qnnlib.data.root.DATA_ENV`). The file is streamed to a temporary sibling and renamed
    only after :func:`check_bytes` passed (:func:`qnnlib.files.atomic_write`, which also removes the
    temporary files of an earlier interrupted download). A ``dest_dir`` this call created and left empty
    (every mirror failed) is removed again.
    """
    created = not dest_dir.exists()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        remove_orphans(dest_dir / remote.name)
        if not is_writable_dir(dest_dir):
            raise PermissionError(errno.EACCES, "Permission denied", str(dest_dir))
    except OSError as exc:
        reason = (f"{dest_dir} cannot be created or written ({type(exc).__name__}: {exc.strerror or exc}); "
                  f"set {DATA_ENV} to a writable directory or put the files there by hand")
        raise DatasetNotFoundError(f"could not download {remote.name}: {reason}", attempts=[reason]) from exc
    final = dest_dir / remote.name
    errors: list[str] = []
    try:
        for base in mirrors:
            url = base.rstrip("/") + "/" + remote.name
            try:
                with atomic_write(final, "wb", file_mode=0o644, verify=lambda tmp: check_bytes(tmp.read_bytes(), remote,
                                                                                               url)) as tmp:
                    _download(url, tmp, timeout, progress)
                return final, errors
            except NotWritableError as exc:
                errors.append(f"{url}: not downloaded: {exc}; set {DATA_ENV} to a writable directory")
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError,
                # DatasetCorruptError a ValueError
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
    finally:
        if created and not final.exists():
            with contextlib.suppress(OSError):
                dest_dir.rmdir()  # only if empty: an offline attempt leaves no empty dataset folder
    raise DatasetNotFoundError(f"could not download {remote.name}:\n  " + "\n  ".join(errors or ["no mirrors"]),
                               attempts=errors or ["no mirrors configured"])
