"""A proof-of-learning bundle on disk: plain files, and a loader that treats every byte as hostile.

Layout of a bundle directory (format ``pudlab.pol_bundle/2``; the manifest is
:class:`pudlab.pol.manifest.Manifest`)::

    manifest.json                      everything below, by SHA-256, plus every hyper-parameter
    initial.safetensors                W_0 (float32, the model's parameter names)
    checkpoints/step_000000012.safetensors
                                       W_s and Adam's moments after step s: tensors
                                       ``weights.<p>``, ``adam.exp_avg.<p>``, ``adam.exp_avg_sq.<p>``;
                                       Adam's scalar step count is ``adam_step`` in the manifest
    batches.npy                        int64 (num_steps, batch_size): the sample positions of each
                                       step, the short last batch of an epoch padded with -1
    shared/x.npy, shared/y.npy         the shared data O(T): float32 (N, C, H, W) and int64 (N,)
    release.json                       the data owner's release manifest of O(T) (optional;
                                       :mod:`pudlab.release_auth`), authenticated by the owner

A checkpoint is written every K steps and after the last step; the state before step 0 is
``initial.safetensors`` with a fresh Adam. The manifest's ``files`` table holds the SHA-256 and size
of every file, ``trajectory.root`` is the Merkle root over the segments (:mod:`pudlab.pol.commitment`),
and the SHA-256 of the manifest itself identifies the whole bundle.

What the bundle never holds: the private data T, the noise seed of O(T), or the sampling seed that
drew T from its source -- with them, a verifier could subtract the keyed noise and recover T.

Loading (:func:`open_bundle`) checks, before any array is built: the manifest
(:meth:`Manifest.from_dict`), paths are plain relative names that stay inside the bundle (no ``..``,
no absolute paths, no symlinks), every file is present with the declared size (under
:class:`BundleLimits`) and SHA-256, every array header has the exact dtype and shape the manifest
implies, the schedule is structurally consistent and the trajectory root is the one the files give. Any
failure raises
:class:`~pudlab.errors.BundleError` naming the file or field.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from pudlab.data.dataset import LabeledImages, fingerprint_arrays
from pudlab.errors import BundleError, ObfuscationError, PudlabError
from pudlab.io import load_weights, weights_sha256, weights_to_bytes, write_bytes_atomic, write_json
from pudlab.metrics import model_distance
from pudlab.model import ModelConfig, parameter_shapes
from pudlab.pol.commitment import SCHEME, merkle_root, trajectory_leaves
from pudlab.pol.manifest import (
    BATCHES_FILE,
    CHECKPOINT_DIR,
    DEFAULT_LIMITS,
    INITIAL_FILE,
    MANIFEST_FILE,
    PADDING,
    RELEASE_FILE,
    SHARED_X_FILE,
    SHARED_Y_FILE,
    ArrayRecord,
    BundleLimits,
    CheckpointRecord,
    FileRecord,
    InitRecord,
    Manifest,
    TrajectoryRecord,
    batch_length,
    check_relative_path,
)
from pudlab.release_auth import decode_release_manifest

_X_DTYPE = np.dtype("<f4")
_INT_DTYPE = np.dtype("<i8")
_STATE_PREFIXES = ("weights.", "adam.exp_avg.", "adam.exp_avg_sq.")


# ----------------------------------------------------------------------------------- training state
@dataclass
class TrainingState:
    """Weights and Adam state after ``step`` optimizer steps (``step == 0``: no Adam state yet)."""

    step: int
    weights: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)
    """Adam's first moment per parameter (empty at step 0)."""
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)
    """Adam's second moment per parameter (empty at step 0)."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors of a checkpoint file, by their names in the file."""
        named = {f"weights.{name}": value for name, value in self.weights.items()}
        named.update({f"adam.exp_avg.{name}": value for name, value in self.exp_avg.items()})
        named.update({f"adam.exp_avg_sq.{name}": value for name, value in self.exp_avg_sq.items()})
        return named


def checkpoint_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a checkpoint file of M_cnn(model_config) (see :meth:`TrainingState.tensors`)."""
    shapes = parameter_shapes(model_config)
    return {prefix + name: shape for prefix in _STATE_PREFIXES for name, shape in shapes.items()}


# ----------------------------------------------------------------------------------- safe readers
def resolve_inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refusing symlinks and anything that resolves outside ``root``."""
    check_relative_path(relative, where)
    path = root / relative
    current = root
    for part in relative.split("/"):
        current = current / part
        if current.is_symlink():
            raise BundleError(f"{where}: {relative} is (or passes through) a symbolic link; bundles hold plain files")
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as exc:
        raise BundleError(f"{where}: cannot resolve {relative} ({exc})") from exc
    if not inside:
        raise BundleError(f"{where}: {relative} escapes the bundle directory")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checked(root: Path, relative: str, record: FileRecord, limits: BundleLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of one bundle file, after checking place, size and SHA-256 against ``record``."""
    path = resolve_inside(root, relative, f"file {relative}")
    if not path.is_file():
        raise BundleError(f"file {relative}: missing from the bundle")
    size = path.stat().st_size
    if size != record.bytes or size > limits.max_file_bytes:
        raise BundleError(f"file {relative}: {size} bytes, the manifest says {record.bytes}"
                          + (f" (limit {limits.max_file_bytes})" if size > limits.max_file_bytes else ""))
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise BundleError(f"file {relative}: SHA-256 does not match the manifest (the file was changed)")
    return data


def parse_npy(data: bytes, *, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    """An array from .npy bytes, refusing any dtype, shape or layout but the expected one."""
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise BundleError(f"{where}: unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise BundleError(f"{where}: not a valid .npy file ({exc})") from exc
    if got_dtype.hasobject or got_dtype != dtype:
        raise BundleError(f"{where}: dtype {got_dtype.str}, expected {dtype.str}")
    if tuple(got_shape) != tuple(shape):
        raise BundleError(f"{where}: shape {tuple(got_shape)}, expected {tuple(shape)}")
    if fortran:
        raise BundleError(f"{where}: Fortran-ordered; expected C order")
    offset = handle.tell()
    expected_bytes = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected_bytes:
        raise BundleError(f"{where}: {len(data) - offset} data bytes, the header implies {expected_bytes}")
    return np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape).copy()


def parse_safetensors(data: bytes, expected: dict[str, tuple[int, ...]], *, where: str) -> dict[str, torch.Tensor]:
    """Float32 tensors from safetensors bytes; names and shapes must be exactly ``expected``."""
    if len(data) < 8:
        raise BundleError(f"{where}: too short for a safetensors file")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > min(len(data) - 8, 100 * 2**20):
        raise BundleError(f"{where}: safetensors header of {header_size} bytes does not fit the file")
    try:
        header = json.loads(data[8:8 + header_size])
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{where}: safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise BundleError(f"{where}: safetensors header is not an object")
    header.pop("__metadata__", None)
    if set(header) != set(expected):
        missing = sorted(set(expected) - set(header))[:4]
        extra = sorted(set(header) - set(expected))[:4]
        raise BundleError(f"{where}: tensors do not fit the model: missing {missing}, unexpected {extra}")
    for name, entry in header.items():
        if not isinstance(entry, dict) or entry.get("dtype") != "F32":
            raise BundleError(f"{where}: tensor {name} has dtype {entry.get('dtype') if isinstance(entry, dict) else entry!r:.40}, expected F32")
        if entry.get("shape") != list(expected[name]):
            raise BundleError(f"{where}: tensor {name} has shape {entry.get('shape')!r:.60}, expected {list(expected[name])}")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{where}: not a valid safetensors file ({exc})") from exc
    return {name: tensors[name] for name in expected}


# ----------------------------------------------------------------------------------- the bundle
@dataclass
class ProofBundle:
    """An opened, validated bundle. Checkpoints load on demand (each read is re-verified)."""

    root: Path
    manifest: Manifest
    manifest_sha256: str
    """SHA-256 of manifest.json: commits to the whole bundle."""
    shared: LabeledImages
    """O(T) as shared: images, labels; ids are the positions 0..N-1."""
    batches: np.ndarray
    """int64 (num_steps, batch_size), -1 padded."""
    initial: TrainingState
    update_norms: list[float]
    """||W_{i+1} - W_i|| of each segment i (W_0 = initial), float64."""
    limits: BundleLimits = DEFAULT_LIMITS
    release: dict | None = None
    """The owner's release manifest (``release.json``) as JSON, unverified (the verifier checks it)."""

    @property
    def segment_bounds(self) -> list[tuple[int, int]]:
        """(first step, end step) of each segment: segment i replays steps [start, end)."""
        steps = [0, *(r.step for r in self.manifest.checkpoints)]
        return list(zip(steps[:-1], steps[1:], strict=True))

    @property
    def segment_epochs(self) -> list[int]:
        """The epoch each segment starts in."""
        return [start // self.manifest.schedule.steps_per_epoch for start, _ in self.segment_bounds]

    def batch(self, step: int) -> np.ndarray:
        """Sample positions of step ``step`` (padding removed)."""
        row = self.batches[step]
        return row[row != PADDING]

    def state_before(self, segment: int) -> TrainingState:
        """The state a segment starts from: W_0 with fresh Adam, or checkpoint ``segment - 1``."""
        return self.initial if segment == 0 else self.checkpoint(segment - 1)

    def checkpoint(self, index: int) -> TrainingState:
        """Checkpoint ``index`` (the state after ``manifest.checkpoints[index].step`` steps)."""
        return _load_checkpoint(self.root, self.manifest, index, self.limits)


def _load_checkpoint(root: Path, manifest: Manifest, index: int, limits: BundleLimits) -> TrainingState:
    record = manifest.checkpoints[index]
    data = read_checked(root, record.file, manifest.files[record.file], limits)
    tensors = parse_safetensors(data, checkpoint_shapes(manifest.model), where=f"checkpoint {record.file}")
    names = list(parameter_shapes(manifest.model))
    return TrainingState(
        record.adam_step,
        {n: tensors[f"weights.{n}"] for n in names},
        {n: tensors[f"adam.exp_avg.{n}"] for n in names},
        {n: tensors[f"adam.exp_avg_sq.{n}"] for n in names},
    )


def read_manifest(root: Path, limits: BundleLimits = DEFAULT_LIMITS) -> tuple[Manifest, str]:
    """The validated manifest of the bundle at ``root`` and the SHA-256 of its bytes."""
    path = root / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST_FILE} (not a proof bundle, or an unfinished one)")
    size = path.stat().st_size
    if size > limits.max_manifest_bytes:
        raise BundleError(f"{path}: {size} bytes, over the limit {limits.max_manifest_bytes}")
    raw_bytes = path.read_bytes()
    try:
        raw = json.loads(raw_bytes)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    return Manifest.from_dict(raw, where=str(path), limits=limits), hashlib.sha256(raw_bytes).hexdigest()


def open_bundle(path: str | os.PathLike, limits: BundleLimits = DEFAULT_LIMITS) -> ProofBundle:
    """Open and fully validate a bundle (see the module docstring); raise :class:`BundleError`."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory (a proof bundle is a directory with {MANIFEST_FILE})")
    manifest, manifest_sha256 = read_manifest(root, limits)
    shared = _read_shared(root, manifest, limits)
    batch_size, schedule = manifest.training.batch_size, manifest.schedule
    batches = parse_npy(read_checked(root, BATCHES_FILE, manifest.files[BATCHES_FILE], limits), dtype=_INT_DTYPE,
                        shape=(schedule.num_steps, batch_size), where=BATCHES_FILE)
    if fingerprint_arrays(batches) != schedule.batches.sha256:
        raise BundleError("batches: array SHA-256 does not match manifest schedule.batches")
    check_batches(batches, num_samples=len(shared), batch_size=batch_size, steps_per_epoch=schedule.steps_per_epoch)

    init_file = manifest.init.file
    initial_weights = parse_safetensors(read_checked(root, init_file, manifest.files[init_file], limits),
                                        parameter_shapes(manifest.model), where=f"initial weights {init_file}")
    if weights_sha256(initial_weights) != manifest.init.weights_sha256:
        raise BundleError(f"initial weights {init_file}: weights SHA-256 does not match manifest init.weights_sha256")
    norms, previous = [], initial_weights
    for index in range(len(manifest.checkpoints)):
        state = _load_checkpoint(root, manifest, index, limits)
        for name, tensor in state.tensors().items():
            if not torch.isfinite(tensor).all():
                raise BundleError(f"checkpoint {manifest.checkpoints[index].file}: tensor {name} holds NaN or infinity")
        norms.append(model_distance(state.weights, previous))
        previous = state.weights
    if weights_sha256(previous) != manifest.final_weights_sha256:
        raise BundleError("final checkpoint: weights SHA-256 does not match manifest final_weights_sha256")
    state_files = [manifest.files[name].sha256 for name in (init_file, *(r.file for r in manifest.checkpoints))]
    if manifest.trajectory is None or manifest.trajectory.root != trajectory_root(
            [r.step for r in manifest.checkpoints], state_files, batches):
        raise BundleError("trajectory.root: not the Merkle root of the bundle's segments (checkpoints, Adam state, "
                          "batches)")
    release = None
    if manifest.release:
        release_bytes = read_checked(root, manifest.release, manifest.files[manifest.release], limits)
        try:
            release = decode_release_manifest(release_bytes, RELEASE_FILE)
        except ObfuscationError as exc:
            raise BundleError(str(exc)) from None
    return ProofBundle(root, manifest, manifest_sha256, shared, batches, TrainingState(0, initial_weights), norms,
                       limits, release)


def trajectory_root(steps: list[int], state_sha256: list[str], batches: np.ndarray) -> str:
    """The Merkle root of a trajectory: checkpoint ``steps``, the file SHA-256 of the initial state and of
    every checkpoint, and the batch positions (:mod:`pudlab.pol.commitment`)."""
    bounds = list(zip([0, *steps[:-1]], steps, strict=True))
    return merkle_root(trajectory_leaves(bounds, steps, state_sha256, batches))


def _trajectory_of_files(root: Path, manifest: dict) -> TrajectoryRecord:
    """The trajectory record of the files under ``root`` as they are now (writer and re-sealer)."""
    steps = [int(r["step"]) for r in manifest["checkpoints"]]
    files = [manifest["init"]["file"], *(r["file"] for r in manifest["checkpoints"])]
    batches = np.load(root / BATCHES_FILE, allow_pickle=False)
    return TrajectoryRecord(SCHEME, trajectory_root(steps, [sha256_file(root / f) for f in files], batches), len(steps))


def _read_shared(root: Path, manifest: Manifest, limits: BundleLimits) -> LabeledImages:
    """O(T) from ``shared/``, checked against the manifest (hashes, finite pixels, labels in range)."""
    n, files = manifest.shared.num_samples, manifest.files
    x = parse_npy(read_checked(root, SHARED_X_FILE, files[SHARED_X_FILE], limits), dtype=_X_DTYPE,
                  shape=(n, *manifest.model.input_shape), where=SHARED_X_FILE)
    y = parse_npy(read_checked(root, SHARED_Y_FILE, files[SHARED_Y_FILE], limits), dtype=_INT_DTYPE,
                  shape=(n,), where=SHARED_Y_FILE)
    if fingerprint_arrays(x) != manifest.shared.x.sha256 or fingerprint_arrays(y) != manifest.shared.y.sha256:
        raise BundleError("shared data: array SHA-256 does not match manifest shared.x / shared.y")
    if not np.isfinite(x).all():
        raise BundleError(f"{SHARED_X_FILE}: holds NaN or infinite pixels")
    num_classes = manifest.shared.num_classes
    if y.min() < 0 or y.max() >= num_classes:
        raise BundleError(f"{SHARED_Y_FILE}: labels span {y.min()}..{y.max()}, expected 0..{num_classes - 1}")
    return LabeledImages(x, y, np.arange(n, dtype=np.int64))


def check_batches(batches: np.ndarray, *, num_samples: int, batch_size: int, steps_per_epoch: int) -> None:
    """Each row: the step's positions in [0, N) first, then -1 padding exactly where the epoch's
    last batch is short. Raise :class:`BundleError` otherwise."""
    lengths = np.array([batch_length(s, num_samples=num_samples, batch_size=batch_size, steps_per_epoch=steps_per_epoch)
                        for s in range(steps_per_epoch)])
    columns = np.arange(batch_size)
    valid_mask = columns[None, :] < lengths[:, None]  # (steps_per_epoch, batch_size)
    for start in range(0, len(batches), steps_per_epoch):
        rows = batches[start:start + steps_per_epoch]
        mask = valid_mask[:len(rows)]
        if (rows[~mask] != PADDING).any():
            raise BundleError(f"{BATCHES_FILE}: epoch {start // steps_per_epoch} has positions where the padding -1 belongs")
        used = rows[mask]
        if used.size and (used.min() < 0 or used.max() >= num_samples):
            raise BundleError(f"{BATCHES_FILE}: epoch {start // steps_per_epoch} uses positions outside 0..{num_samples - 1}")


# ----------------------------------------------------------------------------------- writing
def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file (C order, no pickles), atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())


class BundleWriter:
    """Writes a bundle into a temporary sibling directory and renames it into place on ``finish``.

    A crash leaves no half bundle at ``path``: the manifest is written last, and the rename is
    the commit.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite and (not self.path.is_dir() or any(self.path.iterdir())):
            raise PudlabError(f"{self.path}: exists and is not empty (choose another --out, or --overwrite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.checkpoints: list[CheckpointRecord] = []

    def write_initial(self, weights: dict[str, torch.Tensor], *, seed: int | None) -> InitRecord:
        """Write W_0 (drawn with ``seed``, or None when it came from a file)."""
        write_bytes_atomic(self.work / INITIAL_FILE, weights_to_bytes(weights, {"format": "pudlab.weights/1"}))
        return InitRecord(INITIAL_FILE, seed, weights_sha256(weights))

    def add_checkpoint(self, state: TrainingState) -> CheckpointRecord:
        relative = f"{CHECKPOINT_DIR}/step_{state.step:09d}.safetensors"
        write_bytes_atomic(self.work / relative, weights_to_bytes(state.tensors(), {"format": "pudlab.pol_checkpoint/1"}))
        record = CheckpointRecord(state.step, relative, state.step)
        self.checkpoints.append(record)
        return record

    def write_array(self, relative: str, array: np.ndarray, dtype: np.dtype | str) -> ArrayRecord:
        """Write ``array`` as ``dtype`` to ``relative`` (``shared/x.npy``, ``batches.npy``, ...)."""
        stored = np.ascontiguousarray(array.astype(dtype, copy=False))
        save_npy(self.work / relative, stored)
        return ArrayRecord.of(relative, stored)

    def write_shared(self, shared: LabeledImages) -> tuple[ArrayRecord, ArrayRecord]:
        """Write O(T): images as float32, labels as int64."""
        return (self.write_array(SHARED_X_FILE, shared.images, _X_DTYPE),
                self.write_array(SHARED_Y_FILE, shared.labels, _INT_DTYPE))

    def write_batches(self, batches: np.ndarray) -> ArrayRecord:
        """Write the sample positions of every step as int64 (num_steps, batch_size)."""
        return self.write_array(BATCHES_FILE, batches, _INT_DTYPE)

    def write_release(self, release_manifest: dict) -> str:
        """Write the owner's release manifest of the shared data (``release.json``)."""
        write_json(self.work / RELEASE_FILE, release_manifest)
        return RELEASE_FILE

    def finish(self, manifest: Manifest) -> Path:
        """Write ``manifest`` with its trajectory root and ``files`` table filled in, and move the bundle
        into place."""
        sealed = replace(manifest, trajectory=_trajectory_of_files(self.work, manifest.to_dict()),
                         files=file_records(self.work))
        write_json(self.work / MANIFEST_FILE, sealed.to_dict())
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.work, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def bundle_files(root: Path) -> Iterator[str]:
    """Relative paths of the data files under ``root`` (all but the manifest), sorted."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE and not path.name.startswith("."):
            yield path.relative_to(root).as_posix()


def file_records(root: Path) -> dict[str, FileRecord]:
    """The ``files`` table of the bundle at ``root``, from the files as they are now."""
    return {name: FileRecord(sha256_file(root / name), (root / name).stat().st_size) for name in bundle_files(root)}


def reseal_bundle(path: str | os.PathLike) -> dict:
    """Recompute every commitment in ``manifest.json`` (hashes, trajectory root) from the files as they are now.

    What a forger does after editing files (the manifest carries no signature: integrity checks
    catch accidents and careless edits, replay catches forgeries), and what :func:`~pudlab.pol.prover.reshare`
    does. Trusts the files (it is not a loader) and edits the JSON as it is, not through
    :meth:`Manifest.from_dict`: a forged manifest need not validate, and everything but the
    commitments must stay as the forger left it. Returns the new manifest.
    """
    root = Path(path)
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    x = np.load(root / SHARED_X_FILE, allow_pickle=False)
    y = np.load(root / SHARED_Y_FILE, allow_pickle=False)
    batches = np.load(root / BATCHES_FILE, allow_pickle=False)
    manifest["shared"]["num_samples"] = len(y)
    manifest["shared"]["x"] = ArrayRecord.of(SHARED_X_FILE, x).to_dict()
    manifest["shared"]["y"] = ArrayRecord.of(SHARED_Y_FILE, y).to_dict()
    manifest["schedule"]["batches"] = ArrayRecord.of(BATCHES_FILE, batches).to_dict()
    manifest["init"]["weights_sha256"] = weights_sha256(load_weights(root / manifest["init"]["file"]))
    if manifest.get("checkpoints"):
        manifest["trajectory"] = _trajectory_of_files(root, manifest).to_dict()
        last = load_weights(root / manifest["checkpoints"][-1]["file"])
        manifest["final_weights_sha256"] = weights_sha256(
            {name[len("weights."):]: t for name, t in last.items() if name.startswith("weights.")})
    manifest["files"] = {name: record.to_dict() for name, record in file_records(root).items()}
    write_json(root / MANIFEST_FILE, manifest)
    return manifest


__all__ = [
    "BundleWriter",
    "ProofBundle",
    "TrainingState",
    "check_batches",
    "checkpoint_shapes",
    "open_bundle",
    "read_manifest",
    "reseal_bundle",
    "save_npy",
]
