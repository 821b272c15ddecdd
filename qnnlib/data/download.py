"""Verified, atomic downloads of dataset files.

Two kinds of official file: a :class:`RemoteFile` (MNIST family) names an IDX file with its checksums and
expected shape; a :class:`ChecksumFile` (CIFAR-10 tarball, SVHN ``.mat`` files) names any file with the md5 of
its bytes. Both have ``check(path, source)``, which raises :class:`~qnnlib.data.idx.DatasetCorruptError` for a
file that is not the official one. :func:`fetch_file` tries each mirror in turn: the download is streamed (with a
tqdm bar) to a hidden temporary file in the destination directory and renamed with ``os.replace`` only after
``check`` passed (:func:`qnnlib.files.atomic_write`), so an interrupted download never leaves a file that passes
for complete. An IDX file is accepted when EITHER the md5 of its bytes equals the official ``.gz`` md5 OR
the md5 of its decompressed content equals the official decompressed md5 (re-compressed copies
differ only in the gzip container); the IDX header and shape are checked as well. A :class:`ChecksumFile` is
accepted only when the md5 of its bytes (streamed, :func:`file_md5`) equals the official md5.

:func:`extract_tar` unpacks one folder of a verified archive the same way: into a hidden temporary sibling
directory, renamed into place only when every member was extracted, so a half extraction never passes for
complete (the temporary directory of a killed extraction is removed by the next one).

Errors: :class:`~qnnlib.data.idx.DatasetCorruptError` for a file that fails its checks,
:class:`DatasetNotFoundError` (defined here) when no mirror gave a verified copy;
:func:`missing_file_error` writes the message a loader raises then (what was tried, where to put the file).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qnnlib.data.idx import DatasetCorruptError, DatasetError, gunzip_if_needed, parse_idx
from qnnlib.data.root import DATA_ENV, DEFAULT_DATA_ROOT
from qnnlib.files import TMP_SUFFIX, NotWritableError, atomic_write, is_writable_dir, orphans, remove_orphans
from qnnlib.progress import progress as progress_bar

__all__ = ["DOWNLOAD_TIMEOUT_S", "DatasetNotFoundError", "RemoteFile", "ChecksumFile", "check_bytes", "verify_file",
           "file_md5", "fetch_file", "extract_tar", "missing_file_error", "fetch_missing"]

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

    def check(self, path: Path, source: str | os.PathLike) -> np.ndarray:
        """Verify the file at ``path`` (reported as ``source``) with :func:`check_bytes`; return the array."""
        return check_bytes(Path(path).read_bytes(), self, source)


@dataclass(frozen=True)
class ChecksumFile:
    """One official file that is checked by the md5 of its bytes only (an archive, a ``.mat`` file)."""

    name: str  # official file name
    md5: str  # md5 of the official bytes

    def check(self, path: Path, source: str | os.PathLike, *, progress: bool = False) -> None:
        """Raise :class:`DatasetCorruptError` unless the md5 of the file at ``path`` is :attr:`md5`.

        ``source`` names the file in the message (a path, or the URL it came from).
        """
        got = file_md5(path, progress=progress)
        if got != self.md5:
            size = Path(path).stat().st_size
            raise DatasetCorruptError(
                f"{source}: checksum mismatch for {self.name}: md5 {got} ({size} bytes), expected {self.md5}. "
                "The file is incomplete or not the official one: delete it and fetch it again."
            )


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


def file_md5(path: str | os.PathLike, *, progress: bool = False) -> str:
    """The md5 of the file at ``path``, read in chunks (a bar ``md5 <name>`` with ``progress``)."""
    p = Path(path)
    h = hashlib.md5(usedforsecurity=False)
    with open(p, "rb") as fh, progress_bar(total=p.stat().st_size, unit="B", unit_scale=True, desc=f"md5 {p.name}",
                                           disable=not progress, leave=False) as bar:
        while chunk := fh.read(_CHUNK * 16):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


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


def fetch_file(remote: RemoteFile | ChecksumFile, dest_dir: Path, mirrors: Sequence[str], *,
               timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> tuple[Path, list[str]]:
    """Download ``remote`` into ``dest_dir`` from the first mirror that gives a verified copy.

    Returns ``(path, errors)`` where ``errors`` lists ``"url: error"`` for each mirror that failed
    before success; raises :class:`DatasetNotFoundError` (with every URL and error) if all failed, and
    also when ``dest_dir`` cannot be created or written (a read-only data root: the error says so and
    names :data:`~qnnlib.data.root.DATA_ENV`). The file is streamed to a temporary sibling and renamed
    only after ``remote.check`` passed (:func:`check_bytes` for a :class:`RemoteFile`, the md5 for a
    :class:`ChecksumFile`) (:func:`qnnlib.files.atomic_write`, which also removes the
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
                def verify(tmp: Path, url: str = url) -> None:
                    remote.check(tmp, url)

                with atomic_write(final, "wb", file_mode=0o644, verify=verify) as tmp:
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


def _remove_tree_orphans(final: Path) -> None:
    for o in orphans(final):
        if o.is_dir():
            shutil.rmtree(o, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                o.unlink()


def extract_tar(archive: str | os.PathLike, dest_dir: str | os.PathLike, folder: str, *,
                progress: bool = True) -> Path:
    """Extract the top-level ``folder`` of the tar archive ``archive`` into ``dest_dir``; return ``dest_dir/folder``.

    Atomic: the members go into a hidden temporary sibling ``.<folder>.<pid>.<random>.tmp`` (with tarfile's
    ``"data"`` filter: no absolute paths, links out of the tree or device files), and ``<folder>`` inside it is
    renamed to ``dest_dir/folder`` only after the whole archive was read; whatever happens before, the
    temporary directory is removed, so ``dest_dir/folder`` is either complete or absent. Temporary
    directories of killed extractions (their process is gone) are removed first. A damaged archive, or one
    without ``folder``, raises :class:`DatasetCorruptError`; a ``dest_dir`` that cannot be written raises
    :class:`~qnnlib.files.NotWritableError`.
    """
    archive, dest = Path(archive), Path(dest_dir)
    final = dest / folder
    try:
        _remove_tree_orphans(final)
        if not is_writable_dir(dest):
            raise PermissionError(errno.EACCES, "Permission denied", str(dest))
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=dest))
    except OSError as exc:
        raise NotWritableError(f"cannot extract {archive.name}: {dest} is not a writable directory "
                               f"({type(exc).__name__}: {exc.strerror or exc}); set {DATA_ENV} to a writable "
                               "directory", dest) from exc
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()  # reads the whole stream: a truncated archive fails here
                for member in progress_bar(members, desc=f"extract {archive.name}", unit="file",
                                           disable=not progress, leave=False):
                    tar.extract(member, tmp, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DatasetCorruptError(
                f"{archive}: the archive is damaged or truncated ({type(exc).__name__}: {exc}); nothing was "
                f"extracted. Delete {archive} and fetch it again."
            ) from exc
        src = tmp / folder
        if not src.is_dir():
            raise DatasetCorruptError(f"{archive}: the archive holds no folder {folder}/ (top level: "
                                      f"{sorted(p.name for p in tmp.iterdir())}); it is not the official file. "
                                      f"Delete {archive} and fetch it again.")
        try:
            os.replace(src, final)
        except OSError:
            if not final.is_dir():  # another process may have finished first: its folder is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def missing_file_error(dataset: str, filename: str, looked_in: Sequence[str | os.PathLike], attempts: Sequence[str],
                       fix: str, also_missing: Sequence[str] = (), subdir: str = "") -> DatasetNotFoundError:
    """The :class:`DatasetNotFoundError` a loader raises when ``filename`` is missing and could not be fetched.

    The message names the file, where it was looked for, every ``attempts`` line (``"url: error"``), the
    other missing files, then ``fix`` (where to put the file by hand) and the current :data:`DATA_ENV`
    (whose ``subdir`` folder is where the loader looks).
    """
    env = os.environ.get(DATA_ENV)
    return DatasetNotFoundError(
        f"{dataset}: file {filename} is missing and could not be fetched.\n"
        f"Looked in: {', '.join(map(str, looked_in))}\n"
        "Tried:\n  " + "\n  ".join(attempts) + "\n"
        + (f"Also missing: {', '.join(also_missing)}\n" if also_missing else "")
        + f"Fix: {fix}, or set {DATA_ENV} to a directory that holds {subdir + '/ with ' if subdir else ''}them "
        f"({DATA_ENV} is currently {env!r}; "
        f"default {DEFAULT_DATA_ROOT}).",
        attempts=attempts,
    )


def fetch_missing(dataset: str, missing: Sequence[RemoteFile | ChecksumFile], home: Path, mirrors: Sequence[str],
                  *, looked_in: Sequence[str | os.PathLike], fix: str, subdir: str = "", download: bool = True,
                  timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> None:
    """Fetch each of ``missing`` into ``home`` (:func:`fetch_file`); the first that cannot be fetched (or any,
    with ``download=False``) raises :func:`missing_file_error` naming it, every attempt and the files after it."""
    for i, remote in enumerate(missing):
        if not download:
            attempts = ["nothing: downloading is disabled (download=False)"]
        else:
            try:
                fetch_file(remote, home, mirrors, timeout=timeout, progress=progress)
                continue
            except DatasetNotFoundError as exc:
                attempts = exc.attempts
        raise missing_file_error(dataset, remote.name, looked_in, attempts, fix,
                                 also_missing=[f.name for f in missing[i + 1:]], subdir=subdir)
