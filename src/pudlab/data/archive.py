"""Reading compressed files and tar archives safely, in memory.

Gzip is recognised by its magic bytes, not the file name. Archives are never extracted to disk:
every member is checked first (no absolute paths, no ``..``, no links or device files) and file
members are read into memory. Every problem raises :class:`pudlab.errors.DatasetError` naming
the file.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pudlab.data.arrays import PathLike
from pudlab.errors import DatasetError


def is_gzip(path: Path) -> bool:
    """By the gzip magic bytes, not the name (a ``.gz`` name on raw bytes still reads)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    gz = is_gzip(path)
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


def read_member(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of a file member; DatasetError when the archive ends before the member does."""
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
