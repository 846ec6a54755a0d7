"""CIFAR-10 python batches: a ``cifar-10-batches-py/`` folder or the official ``.tar.gz``.

The batches are pickles. They are read with a restricted unpickler that can only rebuild NumPy
arrays, lists, dicts, strings and numbers, so a crafted batch file cannot run code.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.data.archive import iter_tar_members, read_member
from pudlab.data.arrays import ImageArrays, PathLike, RawImages, as_text, check_label_range
from pudlab.data.cache import cached_decode
from pudlab.errors import DatasetError

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
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
"""The official download: ``cifar-10-batches-py/`` as a gzip tar."""


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
    check_label_range(labels, num_classes, source)
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
            return tuple(as_text(n) for n in names)
    return None


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
            found[parts[-1]] = read_member(path, tar, member)
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
