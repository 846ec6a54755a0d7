"""A release on disk, as ``pudlab obfuscate`` writes it: the ``.npz`` (``x``, ``y``, ``ids``,
``obfuscated``) and its JSON manifest beside it (``<name>.json``, kind ``pudlab.release``).

Two uses:

* :func:`read_release` reads a release for an audit: the arrays with their real sample ids (what
  the generic ``.npz`` dataset reader drops), the manifest (only the fields read here are required:
  later manifest versions may add fields), and a check that the manifest's SHA-256 of each array
  matches the file.
* :func:`release_marker` / :func:`refuse_release` let a command that takes a DATASET and would add
  noise recognise a release and refuse it in one line, naming the command to use instead, unless
  told explicitly (``--as-raw``) that noise on noise is what is wanted.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages, fingerprint_arrays
from pudlab.errors import DatasetError, ObfuscationError, PudlabError
from pudlab.release_auth import decode_release_manifest

RELEASE_KIND = "pudlab.release"
"""The ``kind`` of a release manifest."""
AS_RAW_OPTION = "--as-raw"
"""The option every guarded command takes to treat a release as raw data anyway."""


def manifest_path(path: str | os.PathLike) -> Path:
    """Where the manifest of the release ``path`` is: the same name with ``.json``."""
    return Path(path).with_suffix(".json")


@dataclass(frozen=True, eq=False)
class ReleaseFile:
    """A release read from disk: its samples with their source ids, and its manifest."""

    path: Path
    data: LabeledImages
    """The released images (as released: noised, never re-noised), labels and source sample ids."""
    obfuscated: bool
    """The file's ``obfuscated`` flag."""
    manifest: dict[str, Any]
    """The manifest as written (extra fields kept)."""
    manifest_file: Path

    @property
    def obfuscation(self) -> dict[str, Any]:
        return dict(self.manifest.get("obfuscation") or {})

    @property
    def sigma(self) -> float:
        """The noise std the manifest declares."""
        return float(self.obfuscation["sigma"])

    @property
    def clip(self) -> bool:
        return bool(self.obfuscation.get("clip", False))

    @property
    def fraction(self) -> float:
        return float(self.obfuscation.get("fraction", 1.0))

    @property
    def key_id(self) -> str | None:
        value = self.obfuscation.get("key_id")
        return None if value is None else str(value)

    @property
    def dataset(self) -> str | None:
        """The dataset the owner released from (the manifest's ``dataset``), when recorded."""
        value = self.manifest.get("dataset")
        return None if value is None else str(value)

    @property
    def split_recipe(self) -> dict[str, Any]:
        """How the released part was cut from its dataset (``split``, ``split_seed``, ``eval_fraction``)."""
        return dict(self.manifest.get("sampling_recipe") or {})

    def describe(self) -> str:
        """One phrase: ``rel.npz (release of mnist-5k at sigma 0.5, key 1a2b..., 4500 samples)``."""
        origin = f" of {self.dataset}" if self.dataset else ""
        key = f", key {self.key_id}" if self.key_id else ""
        return f"{self.path.name} (release{origin} at sigma {self.sigma:g}{key}, {len(self.data)} samples)"


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz release ({exc})") from None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of release ``path`` (a DatasetError names the file and what is missing)."""
    where = manifest_path(path)
    try:
        manifest = decode_release_manifest(where.read_bytes(), str(where))
    except FileNotFoundError:
        raise DatasetError(f"{where}: no manifest beside the release {Path(path).name} (pudlab obfuscate writes "
                           "<name>.json next to <name>.npz)") from None
    except OSError as exc:
        raise DatasetError(f"{where}: not a readable JSON manifest ({exc})") from None
    except ObfuscationError as exc:
        raise DatasetError(str(exc)) from None
    if manifest.get("kind") != RELEASE_KIND:
        raise DatasetError(f"{where}: not a release manifest (expected kind '{RELEASE_KIND}')")
    sigma = (manifest.get("obfuscation") or {}).get("sigma") if isinstance(manifest.get("obfuscation"), dict) else None
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or not math.isfinite(sigma) or sigma < 0:
        raise DatasetError(f"{where}: obfuscation.sigma missing or not a number >= 0")
    return manifest


def read_release(path: str | os.PathLike, *, verify: bool = True) -> ReleaseFile:
    """The release at ``path`` with its manifest; ``verify``: the manifest's SHA-256 of ``x``, ``y``
    and ``ids`` must match the file (a DatasetError names the array that differs)."""
    path = Path(path)
    arrays = _npz_arrays(path)
    missing = [key for key in ("x", "y", "ids") if key not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing {missing} (a release holds x, y, ids and obfuscated)")
    manifest = read_manifest(path)
    if verify:
        expected = manifest.get("arrays_sha256")
        if not isinstance(expected, dict):
            raise DatasetError(f"{manifest_path(path)}: arrays_sha256 missing; the release cannot be checked")
        for key in ("x", "y", "ids"):
            if expected.get(key) != fingerprint_arrays(arrays[key]):
                raise DatasetError(f"{path}: array {key!r} does not match the SHA-256 in {manifest_path(path).name} "
                                   "(the file changed after the release was made, or the manifest is another release's)")
    images, labels, ids = arrays["x"], arrays["y"], arrays["ids"]
    if images.ndim != 4 or images.dtype != np.float32:
        raise DatasetError(f"{path}: x must be float32 (N, C, H, W) as pudlab obfuscate writes it, got "
                           f"{images.dtype} {images.shape}")
    if labels.dtype.kind not in "iu" or ids.dtype.kind not in "iu":
        raise DatasetError(f"{path}: y and ids must be integer arrays")
    data = LabeledImages(np.ascontiguousarray(images), labels.astype(np.int64), ids.astype(np.int64))
    if len(np.unique(data.ids)) != len(data):
        raise DatasetError(f"{path}: sample ids repeat")
    flag = arrays.get("obfuscated")
    obfuscated = bool(flag) if flag is not None and flag.shape == () else False
    return ReleaseFile(path, data, obfuscated, manifest, manifest_path(path))


def release_marker(dataset: str | os.PathLike | None) -> str | None:
    """A one-phrase description when ``dataset`` (a DATASET argument) is a release: an ``.npz`` whose
    ``obfuscated`` flag is set, or one with a release manifest beside it; else None. Cheap: reads
    the flag and the manifest only."""
    if dataset is None:
        return None
    path = Path(dataset).expanduser()
    if path.suffix != ".npz" or not path.is_file():
        return None
    flagged = False
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "obfuscated" in npz.files:
                flag = npz["obfuscated"]
                flagged = flag.shape == () and bool(flag)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    try:
        manifest: dict[str, Any] | None = read_manifest(path)
    except PudlabError:
        manifest = None
    if not flagged and manifest is None:
        return None
    if manifest is not None:
        sigma = float(manifest["obfuscation"]["sigma"])
        return f"{path} is a release (obfuscated at sigma {sigma:g}; manifest {manifest_path(path).name})"
    return f"{path} is a release (its obfuscated flag is set)"


def refuse_release(dataset: str | os.PathLike | None, *, command: str, instead: str, as_raw: bool) -> str | None:
    """Refuse a release given to ``command`` as DATASET, in one line naming ``instead``; with
    ``as_raw`` (the user said so) return the marker for a notice instead. None for plain data."""
    marker = release_marker(dataset)
    if marker is None or as_raw:
        return marker
    raise PudlabError(f"{command}: {marker}; {command} would treat it as raw data and add noise again. {instead} "
                      f"Pass {AS_RAW_OPTION} to add noise to the release anyway.")


__all__ = ["AS_RAW_OPTION", "RELEASE_KIND", "ReleaseFile", "manifest_path", "read_manifest", "read_release",
           "refuse_release", "release_marker"]
