"""The decoded-array cache: image trees and archives decoded once, kept as ``.npz``.

Decoding is the only slow step of reading image trees and archives (about 6.5 s for the 60,000
CIFAR-10 JPEGs on one core), so :func:`cached_decode` keeps the decoded uint8 arrays as
``<cache_dir>/<kind>-<path hash>-<signature>.npz``, keyed by the source's file sizes and
modification times (not contents), written atomically.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.data.arrays import PathLike, RawImages
from pudlab.io import atomic_path

_CACHE_VERSION = 1
"""Bump when the decoded-array cache layout or decoding changes."""


@dataclass(frozen=True)
class CacheSummary:
    """What a valid cache entry tells without loading the images."""

    train_size: int
    test_size: int | None
    class_names: tuple[str, ...]
    formats: tuple[str, ...]
    """Image file types seen (``png``, ``jpeg``); empty for CIFAR-10 batches."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """Write ``raw`` to ``target`` atomically (uint8, uncompressed)."""
    arrays: dict[str, np.ndarray] = {
        "train_images": raw.train_images,
        "train_labels": raw.train_labels,
        "class_names": np.array(raw.class_names, dtype=str),
        "formats": np.array(raw.formats, dtype=str),
    }
    if raw.test_images is not None and raw.test_labels is not None:
        arrays["test_images"] = raw.test_images
        arrays["test_labels"] = raw.test_labels
    with atomic_path(target) as temp, open(temp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def _load_raw(target: Path) -> RawImages | None:
    """The arrays of a cache entry, or None when it is unreadable or not what we write."""
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


def read_cache_summary(source: Path, kind: str, cache_dir: PathLike) -> CacheSummary | None:
    """Sizes, classes and formats from a valid cache entry of ``source`` (labels only), else None."""
    target = cache_entry(source, kind, cache_dir)
    if not target.is_file():
        return None
    try:
        with np.load(target, allow_pickle=False) as npz:
            return CacheSummary(
                train_size=len(npz["train_labels"]),
                test_size=len(npz["test_labels"]) if "test_labels" in npz.files else None,
                class_names=tuple(str(n) for n in npz["class_names"]),
                formats=tuple(str(f) for f in npz["formats"]),
            )
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
