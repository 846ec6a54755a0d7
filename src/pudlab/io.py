"""Artifacts on disk: weights as safetensors (never pickle), JSON manifests, atomic writes.

Every write goes to a temporary name in the target directory and is renamed into place, so a
complete file is never replaced by a partial one, whatever moment the process dies. torch is
imported only by the functions that handle weights, so that reading JSON stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pudlab.errors import ModelError, PudlabError

if TYPE_CHECKING:
    import torch

NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
"""The errors of a folder that cannot be written (permissions, a read-only file system)."""
WEIGHTS_FILE = "weights.safetensors"
RUN_FILE = "run.json"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``. A folder that cannot be
    written is a :class:`PudlabError` naming it."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the folder, not the temporary file
        if exc.errno not in NOT_WRITABLE:
            raise
        raise PudlabError(f"{target.parent}: cannot write {target.name} there ({exc.strerror}); choose a writable "
                          "folder") from exc
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o644)  # mkstemp makes owner-only files; results are meant to be shared
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (fsync before the rename)."""
    with atomic_path(target) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def _json_default(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(data: object) -> str:
    """Pretty, key-sorted JSON (numpy scalars and paths allowed)."""
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default)


def write_json(target: str | os.PathLike, data: object) -> None:
    """Write ``data`` as JSON atomically."""
    write_bytes_atomic(target, (to_json(data) + "\n").encode())


def replace_non_finite(data: Any) -> Any:
    """JSON-safe copy: non-finite floats (an infinite epsilon at sigma 0, say) become None.

    >>> replace_non_finite({"eps": float("inf"), "xs": [1.0, float("nan")]})
    {'eps': None, 'xs': [1.0, None]}
    """
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: replace_non_finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [replace_non_finite(value) for value in data]
    return data


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object, with an error naming the file on failure."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PudlabError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PudlabError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PudlabError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def weights_to_bytes(weights: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialize weights to safetensors bytes (CPU, contiguous)."""
    from safetensors.torch import save as st_save

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in weights.items()}
    return st_save(tensors, metadata=metadata)


def weights_sha256(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a weight set's safetensors bytes (names, shapes, dtypes and values)."""
    return hashlib.sha256(weights_to_bytes(weights)).hexdigest()


def save_weights(target: str | os.PathLike, weights: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Save weights as safetensors, atomically. Parameter order is kept in the metadata."""
    meta = dict(metadata or {})
    meta["parameter_order"] = ",".join(weights)
    write_bytes_atomic(target, weights_to_bytes(weights, meta))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a weight set from a ``.safetensors`` file or a run directory holding one.

    The original parameter order is restored (it defines the flattened weight vector).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.exists():
        raise ModelError(f"{path}: no such weight file (expected a .safetensors file or a run directory)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"{path}: not a valid safetensors file ({exc})") from exc
    order = [name for name in metadata.get("parameter_order", "").split(",") if name]
    if sorted(order) != sorted(tensors):
        order = sorted(tensors)
    return {name: tensors[name] for name in order}
