"""The IDX file format (MNIST family): parse, read and write, with strict header and length checks.

An IDX file is ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the data in
big-endian order. :func:`read_idx` accepts the file gzipped or raw and returns a native-byte-order
array; anything malformed (magic number, truncated header, length that does not match the header,
a damaged gzip stream) raises :class:`DatasetCorruptError`.

The dataset error classes live here, the lowest of the data modules (``idx`` <- ``download`` <- one
module per dataset), so that the format, the downloads and every loader raise the same errors.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "DatasetCorruptError", "gunzip_if_needed", "parse_idx", "read_idx", "write_idx"]


# --------------------------------------------------------------------------------------- errors
class DatasetError(RuntimeError):
    """Base class of the dataset errors."""


class DatasetCorruptError(DatasetError, ValueError):
    """A dataset file exists but is not the expected file (checksum, header or length)."""


# ------------------------------------------------------------------------------------ IDX files
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _IDX_DTYPES.items()}


def gunzip_if_needed(data: bytes, path: Path | str) -> bytes:
    """``data`` decompressed if it is a gzip stream (magic ``1f 8b``), else unchanged; a damaged stream raises."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetCorruptError(
            f"{path}: the gzip stream is damaged or truncated ({exc}). Delete the file and fetch it again."
        ) from exc


def parse_idx(raw: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes; checks magic number, dimensions and the exact length."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DatasetCorruptError(
            f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; expected 0000<type><ndim>, "
            "e.g. 00000803 for images, 00000801 for labels)."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorruptError(f"{path}: IDX header truncated ({len(raw)} bytes, need {header}).")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetCorruptError(
            f"{path}: IDX length {len(raw)} bytes does not match its header (shape {dims}, {dtype}): "
            f"expected {expected} bytes. The file is truncated or damaged; delete it and fetch it again."
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped or raw IDX file into a native-byte-order array (validated, see :func:`parse_idx`)."""
    path = Path(path)
    return parse_idx(gunzip_if_needed(path.read_bytes(), path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends with ``.gz`` (used by tests and tools)."""
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    if key not in _IDX_CODES:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {arr.ndim}")
    code = _IDX_CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload, mtime=0) if path.name.endswith(".gz") else payload)
