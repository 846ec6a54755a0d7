"""The proof-of-learning bundle: plain files, a JSON manifest that commits to all of them, and a
loader that treats every byte as hostile.

Layout of a bundle directory (format ``pudlab.pol_bundle/1``)::

    manifest.json                      everything below, by SHA-256, plus every hyper-parameter
    initial.safetensors                W_0 (float32, the model's parameter names)
    checkpoints/step_000000012.safetensors
                                       W_s and Adam's moments after step s: tensors
                                       ``weights.<p>``, ``adam.exp_avg.<p>``, ``adam.exp_avg_sq.<p>``;
                                       Adam's scalar step count is ``adam_step`` in the manifest
    batches.npy                        int64 (num_steps, batch_size): the sample positions of each
                                       step, the short last batch of an epoch padded with -1
    shared/x.npy, shared/y.npy         the shared data O(T): float32 (N, C, H, W) and int64 (N,)

A checkpoint is written every K steps and after the last step; the state before step 0 is
``initial.safetensors`` with a fresh Adam. The manifest's ``files`` table holds the SHA-256 and size
of every file, and the SHA-256 of the manifest itself identifies the whole bundle.

What the bundle never holds: the private data T, the noise seed of O(T), or the sampling seed that
drew T from its source -- with them, a verifier could subtract the keyed noise and recover T.

Loading (:func:`open_bundle`) checks, before any array is built: paths are plain relative names
that stay inside the bundle (no ``..``, no absolute paths, no symlinks), every file is present with
the declared size (under :class:`BundleLimits`) and SHA-256, every array header has the exact dtype
and shape the manifest implies, and the schedule is structurally consistent. Any failure raises
:class:`~pudlab.errors.BundleError` naming the file or field.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from ..data.dataset import LabeledImages, fingerprint_arrays
from ..errors import BundleError, PudlabError
from ..metrics import model_distance
from ..model import ModelConfig
from ..pipeline import weights_sha256
from ..storage import to_json, weights_to_bytes, write_bytes_atomic, write_json
from ..training import TrainConfig

FORMAT = "pudlab.pol_bundle/1"
"""Format tag written to, and required in, ``manifest.json``."""
MANIFEST_FILE = "manifest.json"
INITIAL_FILE = "initial.safetensors"
BATCHES_FILE = "batches.npy"
SHARED_X_FILE = "shared/x.npy"
SHARED_Y_FILE = "shared/y.npy"
CHECKPOINT_DIR = "checkpoints"
PADDING = -1
"""Value that pads the short last batch of an epoch in ``batches.npy``."""
WITHHELD = "withheld"

_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_X_DTYPE = np.dtype("<f4")
_INT_DTYPE = np.dtype("<i8")


@dataclass(frozen=True)
class BundleLimits:
    """Upper bounds a loader enforces before it reads or allocates anything."""

    max_manifest_bytes: int = 64 * 2**20
    """Size of manifest.json, bytes."""
    max_file_bytes: int = 2 * 2**30
    """Size of any one file, bytes."""
    max_total_bytes: int = 16 * 2**30
    """Size of all files together, bytes."""
    max_samples: int = 10_000_000
    """Samples in the shared data."""
    max_steps: int = 50_000_000
    """Optimizer steps in the schedule."""
    max_checkpoints: int = 200_000
    """Checkpoint files."""
    max_parameters: int = 200_000_000
    """Trainable parameters of the model."""


DEFAULT_LIMITS = BundleLimits()


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


def parameter_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of M_cnn(model_config), computed without building the model."""
    channels = model_config.input_shape[0]
    w1, w2, w3 = model_config.widths
    plan = [(channels, w1), (w1, w1), (w1, w2), (w2, w2), (w2, w3), (w3, w3)]
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (c_in, c_out) in enumerate(plan, start=1):
        shapes[f"conv{index}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"conv{index}.bias"] = (c_out,)
    shapes["dense1.weight"] = (model_config.hidden, model_config.flat_features)
    shapes["dense1.bias"] = (model_config.hidden,)
    shapes["dense2.weight"] = (model_config.num_classes, model_config.hidden)
    shapes["dense2.bias"] = (model_config.num_classes,)
    return shapes


# ----------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class FileRecord:
    """SHA-256 and size of one file of the bundle."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint: the state after ``step`` optimizer steps."""

    step: int
    file: str
    adam_step: int
    """Adam's step count stored with the moments (equals ``step``)."""


@dataclass(frozen=True)
class NoiseClaim:
    """What the prover says about O(T): sigma, R and clipping (the noise seed is withheld)."""

    sigma: float
    """Noise std, in units of the [0, 1] pixel scale."""
    fraction: float
    """R: fraction of the samples that got noise."""
    clip: bool
    """Whether O(T) was clipped to [0, 1]."""


@dataclass(frozen=True)
class Manifest:
    """The parsed, validated ``manifest.json``."""

    model: ModelConfig
    training: TrainConfig
    init_file: str
    init_sha256: str
    init_seed: int | None
    """Seed the initial weights were drawn with (None: they came from a file)."""
    noise: NoiseClaim
    num_samples: int
    num_classes: int
    shared_x_sha256: str
    shared_y_sha256: str
    batches_sha256: str
    num_steps: int
    steps_per_epoch: int
    checkpoint_every: int
    checkpoints: tuple[CheckpointRecord, ...]
    final_weights_sha256: str
    files: dict[str, FileRecord]
    environment: dict
    provenance: dict
    raw: dict
    """The manifest as read (for reports)."""

    @property
    def torch_threads(self) -> int | None:
        """Thread count the prover trained with (CPU float sums depend on it)."""
        value = self.environment.get("torch_threads")
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1024 else None


def schedule_shape(num_samples: int, batch_size: int, epochs: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of :func:`pudlab.training.epoch_batches` over ``epochs``."""
    steps_per_epoch = -(-num_samples // batch_size)
    return steps_per_epoch, steps_per_epoch * epochs


def checkpoint_steps(num_steps: int, checkpoint_every: int) -> list[int]:
    """Steps after which a checkpoint is written: every K steps and after the last one.

    >>> checkpoint_steps(10, 4)
    [4, 8, 10]
    """
    steps = list(range(checkpoint_every, num_steps, checkpoint_every))
    return [*steps, num_steps] if num_steps > 0 else []


def batch_length(step: int, *, num_samples: int, batch_size: int, steps_per_epoch: int) -> int:
    """How many positions step ``step`` uses (the last batch of an epoch may be short)."""
    within = step % steps_per_epoch
    return min(batch_size, num_samples - within * batch_size)


def _field(data: object, key: str, where: str) -> object:
    if not isinstance(data, dict):
        raise BundleError(f"manifest {where}: expected a JSON object, got {type(data).__name__}")
    if key not in data:
        raise BundleError(f"manifest {where}: missing field {key!r}")
    return data[key]


def _int(value: object, where: str, *, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"manifest {where}: expected an integer, got {value!r:.80}")
    if value < low or (high is not None and value > high):
        raise BundleError(f"manifest {where}: {value} outside {low}..{high if high is not None else 'inf'}")
    return value


def _float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BundleError(f"manifest {where}: expected a finite number, got {value!r:.80}")
    return float(value)


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BundleError(f"manifest {where}: expected a string, got {value!r:.80}")
    return value


def _sha(value: object, where: str) -> str:
    if not isinstance(value, str) or not _SHA_RE.fullmatch(value):
        raise BundleError(f"manifest {where}: expected a lowercase hex SHA-256, got {value!r:.80}")
    return value


def check_relative_path(value: object, where: str) -> str:
    """A plain relative path inside the bundle (``a/b.npy``): no ``..``, no leading ``/`` or dot."""
    if not isinstance(value, str) or len(value) > 255 or not _PATH_RE.fullmatch(value):
        raise BundleError(f"manifest {where}: path {value!r:.120} is not a plain relative path inside the bundle")
    return value


def _array_ref(data: object, where: str, expected_file: str) -> str:
    file_name = check_relative_path(_field(data, "file", where), f"{where}.file")
    if file_name != expected_file:
        raise BundleError(f"manifest {where}.file: expected {expected_file!r}, got {file_name!r}")
    return _sha(_field(data, "sha256", where), f"{where}.sha256")


def parameter_count(model_config: ModelConfig) -> int:
    """Trainable parameters of M_cnn(model_config)."""
    return sum(math.prod(shape) for shape in parameter_shapes(model_config).values())


def parse_manifest(data: object, limits: BundleLimits = DEFAULT_LIMITS) -> Manifest:
    """Validate a decoded manifest; raise :class:`BundleError` naming the first bad field."""
    if not isinstance(data, dict):
        raise BundleError(f"manifest: expected a JSON object, got {type(data).__name__}")
    fmt = _field(data, "format", "")
    if fmt != FORMAT:
        raise BundleError(f"manifest format: expected {FORMAT!r}, got {fmt!r:.80}")

    model_raw = _field(data, "model", "")
    if not isinstance(model_raw, dict):
        raise BundleError("manifest model: expected a JSON object")
    shape = _field(model_raw, "input_shape", "model")
    widths = _field(model_raw, "widths", "model")
    if not (isinstance(shape, list) and len(shape) == 3 and isinstance(widths, list) and len(widths) == 3):
        raise BundleError("manifest model: input_shape and widths must be lists of three integers")
    _int(shape[0], "model.input_shape[0]", low=1, high=64)
    for index in (1, 2):
        _int(shape[index], f"model.input_shape[{index}]", low=8, high=4096)
    for index in range(3):
        _int(widths[index], f"model.widths[{index}]", low=1, high=8192)
    _int(_field(model_raw, "hidden", "model"), "model.hidden", low=1, high=1 << 20)
    _int(_field(model_raw, "num_classes", "model"), "model.num_classes", low=2, high=1 << 16)
    try:
        model = ModelConfig.from_dict(model_raw)
    except PudlabError as exc:
        raise BundleError(f"manifest model: {exc}") from exc
    if parameter_count(model) > limits.max_parameters:
        raise BundleError(f"manifest model: {parameter_count(model)} parameters, over the limit {limits.max_parameters}")

    training_raw = _field(data, "training", "")
    if not isinstance(training_raw, dict):
        raise BundleError("manifest training: expected a JSON object")
    epochs = _int(_field(training_raw, "epochs", "training"), "training.epochs", low=1, high=limits.max_steps)
    batch_size = _int(_field(training_raw, "batch_size", "training"), "training.batch_size", low=1, high=1 << 24)
    _float(_field(training_raw, "lr", "training"), "training.lr")
    _float(_field(training_raw, "adam_eps", "training"), "training.adam_eps")
    betas = _field(training_raw, "adam_betas", "training")
    if not (isinstance(betas, list) and len(betas) == 2):
        raise BundleError("manifest training.adam_betas: expected two numbers")
    for index in range(2):
        _float(betas[index], f"training.adam_betas[{index}]")
    _int(_field(training_raw, "shuffle_seed", "training"), "training.shuffle_seed", low=0, high=2**63 - 1)
    _str(_field(training_raw, "precision", "training"), "training.precision")
    unknown = sorted(set(training_raw) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise BundleError(f"manifest training: unknown hyper-parameters {unknown}")
    try:
        training = TrainConfig.from_dict(training_raw)
    except (PudlabError, TypeError, ValueError) as exc:
        raise BundleError(f"manifest training: {exc}") from exc

    optimizer = _field(data, "optimizer", "")
    expected_optimizer = OPTIMIZER_RECORD
    if optimizer != expected_optimizer:
        raise BundleError(f"manifest optimizer: only {expected_optimizer} is supported, got {optimizer!r:.200}")

    init = _field(data, "init", "")
    init_file = check_relative_path(_field(init, "file", "init"), "init.file")
    init_sha = _sha(_field(init, "weights_sha256", "init"), "init.weights_sha256")
    init_seed_raw = _field(init, "seed", "init")
    init_seed = None if init_seed_raw is None else _int(init_seed_raw, "init.seed", high=2**63 - 1)

    noise_raw = _field(data, "obfuscation", "")
    sigma = _float(_field(noise_raw, "sigma", "obfuscation"), "obfuscation.sigma")
    fraction = _float(_field(noise_raw, "fraction", "obfuscation"), "obfuscation.fraction")
    clip = _field(noise_raw, "clip", "obfuscation")
    if sigma < 0 or not 0 <= fraction <= 1 or not isinstance(clip, bool):
        raise BundleError(f"manifest obfuscation: need sigma >= 0, fraction in [0, 1], clip a boolean; got {noise_raw!r:.200}")
    if _field(noise_raw, "noise_seed", "obfuscation") != WITHHELD:
        raise BundleError(f"manifest obfuscation.noise_seed: must be {WITHHELD!r} (a bundle never reveals it)")

    shared = _field(data, "shared", "")
    num_samples = _int(_field(shared, "num_samples", "shared"), "shared.num_samples", low=1, high=limits.max_samples)
    num_classes = _int(_field(shared, "num_classes", "shared"), "shared.num_classes", low=2, high=1 << 16)
    if num_classes != model.num_classes:
        raise BundleError(f"manifest shared.num_classes: {num_classes} but the model has {model.num_classes} outputs")
    x_sha = _array_ref(_field(shared, "x", "shared"), "shared.x", SHARED_X_FILE)
    y_sha = _array_ref(_field(shared, "y", "shared"), "shared.y", SHARED_Y_FILE)

    schedule = _field(data, "schedule", "")
    steps_per_epoch, num_steps = schedule_shape(num_samples, batch_size, epochs)
    if num_steps > limits.max_steps:
        raise BundleError(f"manifest schedule: {num_steps} steps, over the limit {limits.max_steps}")
    for key, expected in (("num_steps", num_steps), ("steps_per_epoch", steps_per_epoch)):
        got = _int(_field(schedule, key, "schedule"), f"schedule.{key}", high=limits.max_steps)
        if got != expected:
            raise BundleError(f"manifest schedule.{key}: {got}, but {num_samples} samples, batch {batch_size} "
                              f"and {epochs} epochs give {expected}")
    every = _int(_field(schedule, "checkpoint_every", "schedule"), "schedule.checkpoint_every", low=1, high=num_steps)
    if _field(schedule, "padding", "schedule") != PADDING:
        raise BundleError(f"manifest schedule.padding: must be {PADDING}")
    batches_sha = _array_ref(_field(schedule, "batches", "schedule"), "schedule.batches", BATCHES_FILE)

    records_raw = _field(data, "checkpoints", "")
    expected_steps = checkpoint_steps(num_steps, every)
    if not isinstance(records_raw, list) or len(records_raw) != len(expected_steps) or len(records_raw) > limits.max_checkpoints:
        raise BundleError(f"manifest checkpoints: expected a list of {len(expected_steps)} checkpoints "
                          f"(every {every} of {num_steps} steps), got {len(records_raw) if isinstance(records_raw, list) else type(records_raw).__name__}")
    records = []
    for index, (record, step) in enumerate(zip(records_raw, expected_steps, strict=True)):
        where = f"checkpoints[{index}]"
        got_step = _int(_field(record, "step", where), f"{where}.step", high=num_steps)
        if got_step != step:
            raise BundleError(f"manifest {where}.step: expected {step}, got {got_step}")
        adam_step = _int(_field(record, "adam_step", where), f"{where}.adam_step", high=num_steps)
        if adam_step != step:
            raise BundleError(f"manifest {where}.adam_step: expected {step} (one Adam step per step), got {adam_step}")
        records.append(CheckpointRecord(step, check_relative_path(_field(record, "file", where), f"{where}.file"), adam_step))
    final_sha = _sha(_field(data, "final_weights_sha256", ""), "final_weights_sha256")

    files_raw = _field(data, "files", "")
    if not isinstance(files_raw, dict):
        raise BundleError("manifest files: expected a JSON object of path -> {sha256, bytes}")
    files: dict[str, FileRecord] = {}
    total = 0
    for name, record in files_raw.items():
        check_relative_path(name, f"files[{name!r:.80}]")
        size = _int(_field(record, "bytes", f"files[{name}]"), f"files[{name}].bytes")
        if size > limits.max_file_bytes:
            raise BundleError(f"manifest files[{name}]: {size} bytes, over the per-file limit {limits.max_file_bytes}")
        files[name] = FileRecord(_sha(_field(record, "sha256", f"files[{name}]"), f"files[{name}].sha256"), size)
        total += size
    if total > limits.max_total_bytes:
        raise BundleError(f"manifest files: {total} bytes in all, over the limit {limits.max_total_bytes}")
    referenced = [init_file, SHARED_X_FILE, SHARED_Y_FILE, BATCHES_FILE, *(r.file for r in records)]
    if len(set(referenced)) != len(referenced) or MANIFEST_FILE in referenced:
        raise BundleError("manifest: two entries name the same file, or one names manifest.json")
    if set(referenced) != set(files):
        missing = sorted(set(referenced) - set(files))
        extra = sorted(set(files) - set(referenced))
        raise BundleError(f"manifest files: no hash for {missing[:5]}" if missing else
                          f"manifest files: lists files the bundle does not use: {extra[:5]}")
    environment = data.get("environment", {})
    provenance = data.get("provenance", {})
    return Manifest(
        model=model, training=training, init_file=init_file, init_sha256=init_sha, init_seed=init_seed,
        noise=NoiseClaim(sigma, fraction, clip), num_samples=num_samples, num_classes=num_classes,
        shared_x_sha256=x_sha, shared_y_sha256=y_sha, batches_sha256=batches_sha, num_steps=num_steps,
        steps_per_epoch=steps_per_epoch, checkpoint_every=every, checkpoints=tuple(records),
        final_weights_sha256=final_sha, files=files,
        environment=environment if isinstance(environment, dict) else {},
        provenance=provenance if isinstance(provenance, dict) else {}, raw=data,
    )


OPTIMIZER_RECORD = {"name": "adam", "implementation": "torch.optim.Adam", "weight_decay": 0.0, "amsgrad": False,
                    "maximize": False}
"""The only optimizer a bundle may declare: what :class:`pudlab.training.Trainer` builds."""


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

    @property
    def segment_bounds(self) -> list[tuple[int, int]]:
        """(first step, end step) of each segment: segment i replays steps [start, end)."""
        steps = [0, *(r.step for r in self.manifest.checkpoints)]
        return list(zip(steps[:-1], steps[1:], strict=True))

    @property
    def segment_epochs(self) -> list[int]:
        """The epoch each segment starts in."""
        return [start // self.manifest.steps_per_epoch for start, _ in self.segment_bounds]

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
    shapes = parameter_shapes(manifest.model)
    expected = {}
    for prefix in ("weights.", "adam.exp_avg.", "adam.exp_avg_sq."):
        expected.update({prefix + name: shape for name, shape in shapes.items()})
    tensors = parse_safetensors(data, expected, where=f"checkpoint {record.file}")
    names = list(shapes)
    return TrainingState(
        record.adam_step,
        {n: tensors[f"weights.{n}"] for n in names},
        {n: tensors[f"adam.exp_avg.{n}"] for n in names},
        {n: tensors[f"adam.exp_avg_sq.{n}"] for n in names},
    )


def read_manifest_bytes(root: Path, limits: BundleLimits = DEFAULT_LIMITS) -> bytes:
    path = root / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST_FILE} (not a proof bundle, or an unfinished one)")
    size = path.stat().st_size
    if size > limits.max_manifest_bytes:
        raise BundleError(f"{path}: {size} bytes, over the limit {limits.max_manifest_bytes}")
    return path.read_bytes()


def open_bundle(path: str | os.PathLike, limits: BundleLimits = DEFAULT_LIMITS) -> ProofBundle:
    """Open and fully validate a bundle (see the module docstring); raise :class:`BundleError`."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory (a proof bundle is a directory with {MANIFEST_FILE})")
    raw_bytes = read_manifest_bytes(root, limits)
    try:
        raw = json.loads(raw_bytes)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{root / MANIFEST_FILE}: not valid JSON ({exc})") from exc
    manifest = parse_manifest(raw, limits)
    files = manifest.files
    n = manifest.num_samples

    x = parse_npy(read_checked(root, SHARED_X_FILE, files[SHARED_X_FILE], limits), dtype=_X_DTYPE,
                  shape=(n, *manifest.model.input_shape), where=SHARED_X_FILE)
    y = parse_npy(read_checked(root, SHARED_Y_FILE, files[SHARED_Y_FILE], limits), dtype=_INT_DTYPE,
                  shape=(n,), where=SHARED_Y_FILE)
    if fingerprint_arrays(x) != manifest.shared_x_sha256 or fingerprint_arrays(y) != manifest.shared_y_sha256:
        raise BundleError("shared data: array SHA-256 does not match manifest shared.x / shared.y")
    if not np.isfinite(x).all():
        raise BundleError(f"{SHARED_X_FILE}: holds NaN or infinite pixels")
    if y.min() < 0 or y.max() >= manifest.num_classes:
        raise BundleError(f"{SHARED_Y_FILE}: labels span {y.min()}..{y.max()}, expected 0..{manifest.num_classes - 1}")

    batch_size = manifest.training.batch_size
    batches = parse_npy(read_checked(root, BATCHES_FILE, files[BATCHES_FILE], limits), dtype=_INT_DTYPE,
                        shape=(manifest.num_steps, batch_size), where=BATCHES_FILE)
    if fingerprint_arrays(batches) != manifest.batches_sha256:
        raise BundleError("batches: array SHA-256 does not match manifest schedule.batches")
    check_batches(batches, num_samples=n, batch_size=batch_size, steps_per_epoch=manifest.steps_per_epoch)

    initial_weights = parse_safetensors(read_checked(root, manifest.init_file, files[manifest.init_file], limits),
                                        parameter_shapes(manifest.model), where=f"initial weights {manifest.init_file}")
    if weights_sha256(initial_weights) != manifest.init_sha256:
        raise BundleError(f"initial weights {manifest.init_file}: weights SHA-256 does not match manifest init.weights_sha256")
    initial = TrainingState(0, initial_weights)

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
    shared = LabeledImages(x, y, np.arange(n, dtype=np.int64))
    return ProofBundle(root, manifest, hashlib.sha256(raw_bytes).hexdigest(), shared, batches, initial, norms, limits)


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
        self.checkpoints: list[dict] = []
        self.last_weights: dict[str, torch.Tensor] | None = None

    def write_initial(self, weights: dict[str, torch.Tensor]) -> None:
        write_bytes_atomic(self.work / INITIAL_FILE, weights_to_bytes(weights, {"format": "pudlab.weights/1"}))

    def add_checkpoint(self, state: TrainingState) -> None:
        relative = f"{CHECKPOINT_DIR}/step_{state.step:09d}.safetensors"
        write_bytes_atomic(self.work / relative, weights_to_bytes(state.tensors(), {"format": "pudlab.pol_checkpoint/1"}))
        self.checkpoints.append({"step": state.step, "file": relative, "adam_step": state.step})
        self.last_weights = state.weights

    def finish(self, manifest: dict, *, shared: LabeledImages, batches: np.ndarray) -> Path:
        """Write shared data, batches and the manifest (``files`` and array hashes filled in)."""
        save_npy(self.work / SHARED_X_FILE, shared.images.astype(_X_DTYPE, copy=False))
        save_npy(self.work / SHARED_Y_FILE, shared.labels.astype(_INT_DTYPE, copy=False))
        save_npy(self.work / BATCHES_FILE, batches.astype(_INT_DTYPE, copy=False))
        manifest = dict(manifest)
        manifest["checkpoints"] = self.checkpoints
        if self.last_weights is not None:
            manifest["final_weights_sha256"] = weights_sha256(self.last_weights)
        write_json(self.work / MANIFEST_FILE, manifest)
        reseal_bundle(self.work)
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


def reseal_bundle(path: str | os.PathLike) -> dict:
    """Recompute every commitment in ``manifest.json`` from the files as they are now.

    The prover's last step; also what a forger does after editing files (the manifest carries no
    signature: integrity checks catch accidents and careless edits, replay catches forgeries).
    Trusts the files (it is not a loader). Returns the new manifest.
    """
    root = Path(path)
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    x = np.load(root / SHARED_X_FILE, allow_pickle=False)
    y = np.load(root / SHARED_Y_FILE, allow_pickle=False)
    batches = np.load(root / BATCHES_FILE, allow_pickle=False)
    manifest["shared"]["num_samples"] = len(y)
    manifest["shared"]["x"] = {"file": SHARED_X_FILE, "dtype": x.dtype.str, "shape": list(x.shape), "sha256": fingerprint_arrays(x)}
    manifest["shared"]["y"] = {"file": SHARED_Y_FILE, "dtype": y.dtype.str, "shape": list(y.shape), "sha256": fingerprint_arrays(y)}
    manifest["schedule"]["batches"] = {"file": BATCHES_FILE, "dtype": batches.dtype.str, "shape": list(batches.shape),
                                       "sha256": fingerprint_arrays(batches)}
    from ..storage import load_weights

    manifest["init"]["weights_sha256"] = weights_sha256(load_weights(root / manifest["init"]["file"]))
    if manifest.get("checkpoints"):
        last = load_weights(root / manifest["checkpoints"][-1]["file"])
        manifest["final_weights_sha256"] = weights_sha256(
            {name[len("weights."):]: t for name, t in last.items() if name.startswith("weights.")})
    manifest["files"] = {name: {"sha256": sha256_file(root / name), "bytes": (root / name).stat().st_size}
                         for name in bundle_files(root)}
    write_bytes_atomic(root / MANIFEST_FILE, (to_json(manifest) + "\n").encode())
    return manifest


__all__ = [
    "BundleLimits",
    "BundleWriter",
    "DEFAULT_LIMITS",
    "FORMAT",
    "Manifest",
    "NoiseClaim",
    "OPTIMIZER_RECORD",
    "ProofBundle",
    "TrainingState",
    "checkpoint_steps",
    "open_bundle",
    "parse_manifest",
    "reseal_bundle",
]
