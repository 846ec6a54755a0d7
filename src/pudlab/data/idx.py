"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.

An IDX file is a 4-byte magic (two zero bytes, the element type code, the number of dims), the
dims as big-endian uint32, then the big-endian payload. :func:`read_idx` checks that the payload
has exactly the size the dims give; :func:`read_idx_pair` reads an images file and its labels.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.data.archive import is_gzip, read_maybe_gzip
from pudlab.data.arrays import PathLike, check_label_range, to_unit_float
from pudlab.errors import DatasetError

_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_TYPE_NAMES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_TYPES.items()}


def _idx_magic_text(code: int, ndim: int) -> str:
    type_name = _IDX_TYPE_NAMES.get(code, f"unknown type 0x{code:02X}")
    return f"0x{(code << 8) | ndim:08X} (IDX {type_name}, {ndim} dim{'s' if ndim != 1 else ''})"


def _parse_idx_header(
    path: Path, header: bytes, *, dtype: np.dtype[Any] | None, ndim: int | None
) -> tuple[int, tuple[int, ...], int]:
    """(type code, dims, header length) from the first bytes; checks the magic."""
    if len(header) < 4:
        raise DatasetError(
            f"{path}: {len(header)} bytes is too short for an IDX header (4-byte magic)"
        )
    magic = int.from_bytes(header[:4], "big")
    code, file_ndim = header[2], header[3]
    expected_code = None if dtype is None else _IDX_CODES.get(np.dtype(dtype).newbyteorder("="))
    expected = ""
    if expected_code is not None and ndim is not None:
        expected = f", expected {_idx_magic_text(expected_code, ndim)}"
    if header[0] != 0 or header[1] != 0 or code not in _IDX_TYPES or file_ndim == 0:
        known = expected or ", expected 0x0000TTNN (TT a known IDX type code, NN >= 1 dims)"
        raise DatasetError(f"{path}: bad magic 0x{magic:08X}{known}")
    if (expected_code is not None and code != expected_code) or (
        ndim is not None and file_ndim != ndim
    ):
        wanted = expected or (
            f", expected {ndim} dims"
            if expected_code is None
            else f", expected IDX {_IDX_TYPE_NAMES[expected_code]}"
        )
        raise DatasetError(f"{path}: bad magic {_idx_magic_text(code, file_ndim)}{wanted}")
    header_len = 4 + 4 * file_ndim
    if len(header) < header_len:
        raise DatasetError(
            f"{path}: truncated IDX header: {file_ndim} dims need {header_len} bytes, file has {len(header)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(header, dtype=">u4", count=file_ndim, offset=4))
    return code, dims, header_len


def read_idx(path: PathLike, *, dtype: Any = None, ndim: int | None = None) -> np.ndarray:
    """One IDX file (gzip or raw) as a native-endian array of the header's shape.

    ``dtype`` / ``ndim``, when given, are the expected element type and number of dimensions
    (a different magic number is an error). The payload must have exactly the size the header's
    big-endian dims give: a short file or truncated gzip stream, or trailing bytes, is an error.
    """
    path = Path(path)
    data = read_maybe_gzip(path)
    code, dims, header_len = _parse_idx_header(
        path, data[: 4 + 4 * 255], dtype=None if dtype is None else np.dtype(dtype), ndim=ndim
    )
    item = _IDX_TYPES[code]
    expected = math.prod(dims) * item.itemsize
    payload = len(data) - header_len
    shape_text = "x".join(str(d) for d in dims) + f" {_IDX_TYPE_NAMES[code]}"
    if payload < expected:
        raise DatasetError(
            f"{path}: truncated: header says {shape_text} ({expected} bytes) but the payload has {payload} bytes"
        )
    if payload > expected:
        raise DatasetError(
            f"{path}: {payload - expected} trailing bytes after the {shape_text} payload ({expected} bytes)"
        )
    array = np.frombuffer(data, dtype=item, count=expected // item.itemsize, offset=header_len)
    return array.reshape(dims).astype(item.newbyteorder("="))


def read_idx_header(path: PathLike) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """(element dtype, dims) from an IDX file's header only (cheap: reads a few bytes)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        opener: Callable[[Path], Any] = (
            (lambda p: gzip.open(p, "rb")) if is_gzip(path) else (lambda p: open(p, "rb"))
        )
        with opener(path) as handle:
            head = handle.read(4)
            if len(head) == 4 and head[3] > 0:
                head += handle.read(4 * head[3])
    except EOFError as exc:
        raise DatasetError(f"{path}: truncated gzip file ({exc})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt gzip file ({exc})") from exc
    code, dims, _ = _parse_idx_header(path, head, dtype=None, ndim=None)
    return _IDX_TYPES[code].newbyteorder("="), dims


def idx_size_problem(path: PathLike) -> str | None:
    """Why the header of IDX file ``path`` disagrees with its size (None when it fits). Cheap: the
    header, the file size, or a gzip file's recorded length (ISIZE, the size modulo 2^32)."""
    path = Path(path)
    dtype, dims = read_idx_header(path)
    expected = 4 + 4 * len(dims) + math.prod(dims) * dtype.itemsize
    shape_text = "x".join(str(d) for d in dims)
    if is_gzip(path):
        with open(path, "rb") as handle:
            handle.seek(-4, 2)
            actual = int.from_bytes(handle.read(4), "little")
        if actual != expected % 2**32:
            return (f"{path}: corrupt header: dims {shape_text} need {expected} bytes uncompressed, "
                    f"the gzip stream records {actual}")
        return None
    actual = path.stat().st_size
    if actual != expected:
        return f"{path}: corrupt header: dims {shape_text} need {expected} bytes, the file has {actual}"
    return None


def read_idx_pair(
    images_path: PathLike, labels_path: PathLike, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """An IDX images file (uint8, 3 dims) and its labels file (1 dim) as
    (float32 (N, 1, H, W) in [0, 1], int64 (N,)). Counts must match; labels in 0..num_classes-1.
    """
    images = read_idx(images_path, dtype=np.uint8, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"{labels_path}: labels must be an integer IDX type, got {labels.dtype}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    labels = labels.astype(np.int64)
    check_label_range(labels, num_classes, labels_path)
    return to_unit_float(images[:, None, :, :]), labels
