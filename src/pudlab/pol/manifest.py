"""``manifest.json`` of a proof bundle (format ``pudlab.pol_bundle/2``) as frozen dataclasses.

:meth:`Manifest.to_dict` is the JSON the prover writes; :meth:`Manifest.from_dict` reads it back
and validates every field before anything else of the bundle is touched (types, ranges, limits,
the schedule implied by N, batch size and epochs, the checkpoint steps implied by K, plain
relative file names). Any failure is a :class:`~pudlab.errors.BundleError` of the shape
``<file>: <table>.<key> = <value>; expected <what>``.

The JSON (key-sorted)::

    format, model, training, optimizer
    init          {file, seed, weights_sha256}
    obfuscation   {sigma, fraction, clip, noise_seed: "withheld", key_id (optional)}
    shared        {num_samples, num_classes, x: array, y: array}
    schedule      {num_steps, steps_per_epoch, checkpoint_every, padding: -1, batches: array}
    checkpoints   [{step, file, adam_step}, ...]
    final_weights_sha256
    trajectory    {scheme, root, segments}           Merkle root over the segments (pudlab.pol.commitment)
    release       "release.json" or null            the data owner's (authenticated) release manifest of O(T)
    files         {path: {sha256, bytes}, ...}      every file but the manifest
    environment, provenance                         informational

where an ``array`` is ``{file, dtype, shape, sha256}`` (SHA-256 of :func:`pudlab.data.dataset.fingerprint_arrays`;
dtype and shape are informational: the loader checks the file against what the model and schedule imply).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from pudlab.config import Section
from pudlab.data.dataset import fingerprint_arrays
from pudlab.errors import BundleError, PudlabError
from pudlab.model import ModelConfig, parameter_shapes
from pudlab.pol.commitment import SCHEME
from pudlab.records import Record
from pudlab.train.trainer import TrainConfig

FORMAT = "pudlab.pol_bundle/2"  # written to, and required in, manifest.json
MANIFEST_FILE = "manifest.json"
INITIAL_FILE = "initial.safetensors"
BATCHES_FILE = "batches.npy"
SHARED_X_FILE = "shared/x.npy"
SHARED_Y_FILE = "shared/y.npy"
CHECKPOINT_DIR = "checkpoints"
RELEASE_FILE = "release.json"
"""The data owner's release manifest of O(T) (:mod:`pudlab.release_auth`), when the bundle carries one."""
PADDING = -1  # pads the short last batch of an epoch in batches.npy
WITHHELD = "withheld"  # the manifest's obfuscation.noise_seed: a bundle never reveals the noise seed
OPTIMIZER_RECORD = {"name": "adam", "implementation": "torch.optim.Adam", "weight_decay": 0.0, "amsgrad": False,
                    "maximize": False}
"""The only optimizer a bundle may declare: what :class:`pudlab.train.trainer.Trainer` builds."""

_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_MAX_SEED = 2**63 - 1


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


# ----------------------------------------------------------------------------------- schedule
def schedule_shape(num_samples: int, batch_size: int, epochs: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of :func:`pudlab.train.trainer.epoch_batches` over ``epochs``."""
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


def parameter_count(model_config: ModelConfig) -> int:
    """Trainable parameters of M_cnn(model_config)."""
    return sum(math.prod(shape) for shape in parameter_shapes(model_config).values())


# ----------------------------------------------------------------------------------- validation
def check_relative_path(value: object, where: str) -> str:
    """A plain relative path inside the bundle (``a/b.npy``): no ``..``, no leading ``/`` or dot."""
    if not isinstance(value, str) or len(value) > 255 or not _PATH_RE.fullmatch(value):
        raise BundleError(f"{where}: path {value!r:.120} is not a plain relative path inside the bundle")
    return value


class _Fields(Section):
    """:class:`pudlab.config.Section` over one manifest table, raising :class:`BundleError` (values
    cut to 80 characters: a hostile manifest must not flood the error message)."""

    def __init__(self, source: str, path: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise BundleError(f"{source}: {path or 'manifest'} must be a JSON object, got {type(data).__name__}")
        super().__init__(source, path, data)

    def fail(self, key: str, expected: str) -> BundleError:  # type: ignore[override]
        if key not in self.data:
            return BundleError(f"{self.where(key)} is missing; expected {expected}")
        return BundleError(f"{self.where(key)} = {self.data[key]!r:.80}; expected {expected}")

    def child(self, key: str) -> _Fields:
        """The JSON object at ``key``."""
        value = self.get(key, dict, expected="a JSON object")
        return _Fields(self.source, f"{self.path + '.' if self.path else ''}{key}", value)

    def sha256(self, key: str) -> str:
        value = self.get(key, str, expected="a lowercase hex SHA-256")
        if not _SHA_RE.fullmatch(value):
            raise self.fail(key, "a lowercase hex SHA-256")
        return value

    def path_name(self, key: str) -> str:
        return check_relative_path(self.get(key, object, expected="a relative path"), self.where(key))

    def bounded_ints(self, key: str, bounds: tuple[tuple[int, int], ...], expected: str) -> list[int]:
        """A list of integers, the i-th within bounds[i] (both ends included)."""
        value = self.get(key, list, expected=expected)
        if len(value) != len(bounds) or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high
                                            for v, (low, high) in zip(value, bounds, strict=False)):
            raise self.fail(key, expected)
        return value


# ----------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class FileRecord(Record):
    """SHA-256 and size of one file of the bundle."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class ArrayRecord(Record):
    """One ``.npy`` file: its place and :func:`~pudlab.data.dataset.fingerprint_arrays` SHA-256.

    ``dtype`` and ``shape`` are informational (None when a manifest omits them or has them
    malformed): the loader checks the file against what the model and schedule imply."""

    file: str
    sha256: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    OMIT_NONE = ("dtype", "shape")

    @classmethod
    def of(cls, file: str, array: np.ndarray) -> ArrayRecord:
        """The record of ``array`` as stored at ``file``."""
        return cls(file, fingerprint_arrays(array), array.dtype.str, tuple(int(n) for n in array.shape))

    @classmethod
    def _parse(cls, fields: _Fields, expected_file: str) -> ArrayRecord:
        file_name = fields.path_name("file")
        if file_name != expected_file:
            raise fields.fail("file", repr(expected_file))
        sha = fields.sha256("sha256")
        dtype, shape = fields.data.get("dtype"), fields.data.get("shape")
        shape_ints: tuple[int, ...] | None = None
        if isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
            shape_ints = tuple(shape)
        return cls(file_name, sha, dtype if isinstance(dtype, str) else None, shape_ints)


@dataclass(frozen=True)
class CheckpointRecord(Record):
    """One checkpoint: the state after ``step`` optimizer steps."""

    step: int
    file: str
    adam_step: int
    """Adam's step count stored with the moments (equals ``step``)."""


@dataclass(frozen=True)
class TrajectoryRecord(Record):
    """The prover's commitment to its trajectory (:mod:`pudlab.pol.commitment`)."""

    scheme: str
    root: str
    """Merkle root (hex) over the segments' leaves."""
    segments: int

    @classmethod
    def _parse(cls, fields: _Fields, segments: int) -> TrajectoryRecord:
        if fields.get("scheme", object, expected=repr(SCHEME)) != SCHEME:
            raise fields.fail("scheme", repr(SCHEME))
        if fields.integer("segments", low=1) != segments:
            raise fields.fail("segments", f"{segments}, one leaf per segment")
        return cls(SCHEME, fields.sha256("root"), segments)


@dataclass(frozen=True)
class NoiseClaim(Record):
    """What the prover says about O(T): sigma, R and clipping (the noise seed is withheld)."""

    sigma: float
    """Noise std, in units of the [0, 1] pixel scale."""
    fraction: float
    """R: fraction of the samples that got noise."""
    clip: bool
    """Whether O(T) was clipped to [0, 1]."""
    key_id: str | None = None
    """Identifier of the secret release key (:attr:`pudlab.obfuscation.ReleaseKey.key_id`: reveals nothing
    of the key); None when not recorded."""

    OMIT_NONE = ("key_id",)
    DERIVED = ("noise_seed",)

    @property
    def noise_seed(self) -> str:
        """Always :data:`WITHHELD`."""
        return WITHHELD

    @classmethod
    def _parse(cls, fields: _Fields) -> NoiseClaim:
        sigma = fields.number("sigma", low=0)
        fraction = fields.number("fraction", low=0, high=1)
        clip = fields.boolean("clip")
        if fields.get("noise_seed", object, expected=repr(WITHHELD)) != WITHHELD:
            raise fields.fail("noise_seed", f"{WITHHELD!r} (a bundle never reveals the noise seed)")
        key_id = fields.data.get("key_id")
        if key_id is not None and not (isinstance(key_id, str) and _KEY_ID_RE.fullmatch(key_id)):
            raise fields.fail("key_id", "absent or 16 lowercase hex digits (a release key identifier)")
        return cls(float(sigma), float(fraction), clip, key_id)


@dataclass(frozen=True)
class InitRecord(Record):
    """The initial weights W_0: their file, the seed they were drawn with (None: from a file), their hash."""

    file: str
    seed: int | None
    weights_sha256: str
    """:func:`pudlab.io.weights_sha256` of W_0."""

    @classmethod
    def _parse(cls, fields: _Fields) -> InitRecord:
        file_name = fields.path_name("file")
        sha = fields.sha256("weights_sha256")
        seed = fields.get("seed", (int, type(None)), expected=f"null or an integer in [0, {_MAX_SEED}]")
        if seed is not None and not 0 <= seed <= _MAX_SEED:
            raise fields.fail("seed", f"null or an integer in [0, {_MAX_SEED}]")
        return cls(file_name, seed, sha)


@dataclass(frozen=True)
class SharedRecord(Record):
    """The shared data O(T): sample and class counts, images ``x`` and labels ``y``."""

    num_samples: int
    num_classes: int
    x: ArrayRecord
    y: ArrayRecord

    @classmethod
    def _parse(cls, fields: _Fields, model: ModelConfig, limits: BundleLimits) -> SharedRecord:
        num_samples = fields.integer("num_samples", low=1, high=limits.max_samples)
        num_classes = fields.integer("num_classes", low=2, high=1 << 16)
        if num_classes != model.num_classes:
            raise fields.fail("num_classes", f"{model.num_classes}, the model's outputs")
        return cls(num_samples, num_classes, ArrayRecord._parse(fields.child("x"), SHARED_X_FILE),
                   ArrayRecord._parse(fields.child("y"), SHARED_Y_FILE))


@dataclass(frozen=True)
class ScheduleRecord(Record):
    """Steps of the training, K, and the batch positions of every step (``batches.npy``)."""

    num_steps: int
    steps_per_epoch: int
    checkpoint_every: int
    batches: ArrayRecord

    DERIVED = ("padding",)

    @property
    def padding(self) -> int:
        """Always :data:`PADDING`."""
        return PADDING

    @classmethod
    def _parse(cls, fields: _Fields, *, num_samples: int, training: TrainConfig,
               limits: BundleLimits) -> ScheduleRecord:
        steps_per_epoch, num_steps = schedule_shape(num_samples, training.batch_size, training.epochs)
        if num_steps > limits.max_steps:
            raise BundleError(f"{fields.where('num_steps')}: {num_steps} steps, over the limit {limits.max_steps}")
        for key, expected in (("num_steps", num_steps), ("steps_per_epoch", steps_per_epoch)):
            if fields.integer(key, low=0, high=limits.max_steps) != expected:
                raise fields.fail(key, f"{expected}, what {num_samples} samples, batch {training.batch_size} and "
                                       f"{training.epochs} epochs give")
        every = fields.integer("checkpoint_every", low=1, high=num_steps)
        if fields.get("padding", object, expected=str(PADDING)) != PADDING:
            raise fields.fail("padding", str(PADDING))
        return cls(num_steps, steps_per_epoch, every, ArrayRecord._parse(fields.child("batches"), BATCHES_FILE))


# ----------------------------------------------------------------------------------- the manifest
@dataclass(frozen=True)
class Manifest(Record):
    """The parsed, validated ``manifest.json`` (see the module docstring for the JSON)."""

    model: ModelConfig
    training: TrainConfig
    init: InitRecord
    noise: NoiseClaim
    """The ``obfuscation`` table."""
    shared: SharedRecord
    schedule: ScheduleRecord
    checkpoints: tuple[CheckpointRecord, ...]
    final_weights_sha256: str
    files: dict[str, FileRecord] = field(default_factory=dict)
    """Every file of the bundle but the manifest (filled in by the writer when it seals the bundle)."""
    environment: dict = field(default_factory=dict)
    """What trained (versions, device, ``torch_threads``); informational."""
    provenance: dict = field(default_factory=dict)
    """Where the data came from; informational."""
    trajectory: TrajectoryRecord | None = None
    """The commitment to every segment (filled in by the writer when it seals the bundle)."""
    release: str | None = None
    """:data:`RELEASE_FILE` when the bundle carries the owner's release manifest of O(T), else None."""

    @property
    def torch_threads(self) -> int | None:
        """Thread count the prover trained with (CPU float sums depend on it)."""
        value = self.environment.get("torch_threads")
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1024 else None

    RENAMED = {"noise": "obfuscation"}
    DERIVED = ("format", "optimizer")

    @property
    def format(self) -> str:
        """Always :data:`FORMAT`."""
        return FORMAT

    @property
    def optimizer(self) -> dict[str, Any]:
        """Always :data:`OPTIMIZER_RECORD`."""
        return dict(OPTIMIZER_RECORD)

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None, limits: BundleLimits = DEFAULT_LIMITS) -> Self:
        """Validate a decoded manifest; raise :class:`BundleError` naming ``where`` (the file, default
        ``manifest.json``) and the first bad field. Not the generic reader of records: every value is
        checked against the limits and the schedule before anything of the bundle is touched.

        Unknown top-level keys are ignored (as are unknown keys of the records), except in
        ``training``: an unknown hyper-parameter could change the training."""
        source = MANIFEST_FILE if where is None else where
        top = _Fields(source, "", data)
        if top.get("format", object, expected=repr(FORMAT)) != FORMAT:
            raise top.fail("format", repr(FORMAT))
        model = _parse_model(top.child("model"), limits)
        training = _parse_training(top.child("training"), limits)
        if top.get("optimizer", object, expected=str(OPTIMIZER_RECORD)) != OPTIMIZER_RECORD:
            raise top.fail("optimizer", f"{OPTIMIZER_RECORD} (the only optimizer supported)")
        init = InitRecord._parse(top.child("init"))
        noise = NoiseClaim._parse(top.child("obfuscation"))
        shared = SharedRecord._parse(top.child("shared"), model, limits)
        schedule = ScheduleRecord._parse(top.child("schedule"), num_samples=shared.num_samples, training=training,
                                         limits=limits)
        checkpoints = _parse_checkpoints(top, schedule, limits)
        final_sha = top.sha256("final_weights_sha256")
        trajectory = TrajectoryRecord._parse(top.child("trajectory"), len(checkpoints))
        release = top.get("release", (str, type(None)), expected=f"null or {RELEASE_FILE!r}")
        if release not in (None, RELEASE_FILE):
            raise top.fail("release", f"null or {RELEASE_FILE!r}")
        files = _parse_files(top, limits)
        referenced = [init.file, SHARED_X_FILE, SHARED_Y_FILE, BATCHES_FILE, *(r.file for r in checkpoints),
                      *([release] if release else [])]
        if len(set(referenced)) != len(referenced) or MANIFEST_FILE in referenced:
            raise BundleError(f"{source}: two entries name the same file, or one names {MANIFEST_FILE}")
        if set(referenced) != set(files):
            missing = sorted(set(referenced) - set(files))
            extra = sorted(set(files) - set(referenced))
            raise BundleError(f"{top.where('files')}: no hash for {missing[:5]}" if missing else
                              f"{top.where('files')}: lists files the bundle does not use: {extra[:5]}")
        environment, provenance = top.data.get("environment", {}), top.data.get("provenance", {})
        return cls(model, training, init, noise, shared, schedule, checkpoints, final_sha, files,
                   environment if isinstance(environment, dict) else {},
                   provenance if isinstance(provenance, dict) else {}, trajectory, release)


def _parse_model(fields: _Fields, limits: BundleLimits) -> ModelConfig:
    fields.bounded_ints("input_shape", ((1, 64), (8, 4096), (8, 4096)),
                        "[channels, height, width]: channels in [1, 64], height and width in [8, 4096]")
    fields.bounded_ints("widths", ((1, 8192),) * 3, "three integers in [1, 8192]")
    fields.integer("hidden", low=1, high=1 << 20)
    fields.integer("num_classes", low=2, high=1 << 16)
    try:
        model = ModelConfig.from_dict(fields.data)
    except PudlabError as exc:
        raise BundleError(f"{fields.source}: model: {exc}") from exc
    count = parameter_count(model)
    if count > limits.max_parameters:
        raise BundleError(f"{fields.source}: model: {count} parameters, over the limit {limits.max_parameters}")
    return model


def _parse_training(fields: _Fields, limits: BundleLimits) -> TrainConfig:
    fields.integer("epochs", low=1, high=limits.max_steps)
    fields.integer("batch_size", low=1, high=1 << 24)
    fields.number("lr")
    fields.number("adam_eps")
    if len(fields.float_list("adam_betas")) != 2:
        raise fields.fail("adam_betas", "two finite numbers")
    fields.integer("shuffle_seed", low=0, high=_MAX_SEED)
    fields.string("precision")
    unknown = sorted(set(fields.data) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise BundleError(f"{fields.source}: training has unknown hyper-parameters {unknown}")
    try:
        return TrainConfig.from_dict(fields.data)
    except (PudlabError, TypeError, ValueError) as exc:
        raise BundleError(f"{fields.source}: training: {exc}") from exc


def _parse_checkpoints(top: _Fields, schedule: ScheduleRecord, limits: BundleLimits) -> tuple[CheckpointRecord, ...]:
    expected_steps = checkpoint_steps(schedule.num_steps, schedule.checkpoint_every)
    records = top.get("checkpoints", list, expected="a list of checkpoint records")
    if len(records) != len(expected_steps) or len(records) > limits.max_checkpoints:
        raise BundleError(f"{top.where('checkpoints')}: {len(records)} records; expected {len(expected_steps)} "
                          f"(every {schedule.checkpoint_every} of {schedule.num_steps} steps)")
    parsed = []
    for index, (record, step) in enumerate(zip(records, expected_steps, strict=True)):
        fields = _Fields(top.source, f"checkpoints[{index}]", record)
        if fields.integer("step", low=0, high=schedule.num_steps) != step:
            raise fields.fail("step", str(step))
        if fields.integer("adam_step", low=0, high=schedule.num_steps) != step:
            raise fields.fail("adam_step", f"{step} (one Adam step per step)")
        parsed.append(CheckpointRecord(step, fields.path_name("file"), step))
    return tuple(parsed)


def _parse_files(top: _Fields, limits: BundleLimits) -> dict[str, FileRecord]:
    table = top.get("files", dict, expected="a JSON object of path -> {sha256, bytes}")
    files: dict[str, FileRecord] = {}
    total = 0
    for name, record in table.items():
        check_relative_path(name, top.where(f"files[{name!r:.80}]"))
        fields = _Fields(top.source, f"files[{name}]", record)
        size = fields.integer("bytes", low=0)
        if size > limits.max_file_bytes:
            raise fields.fail("bytes", f"at most the per-file limit {limits.max_file_bytes}")
        files[name] = FileRecord(fields.sha256("sha256"), size)
        total += size
    if total > limits.max_total_bytes:
        raise BundleError(f"{top.where('files')}: {total} bytes in all, over the limit {limits.max_total_bytes}")
    return files


__all__ = [
    "BATCHES_FILE",
    "CHECKPOINT_DIR",
    "DEFAULT_LIMITS",
    "FORMAT",
    "INITIAL_FILE",
    "MANIFEST_FILE",
    "OPTIMIZER_RECORD",
    "PADDING",
    "RELEASE_FILE",
    "SHARED_X_FILE",
    "SHARED_Y_FILE",
    "WITHHELD",
    "ArrayRecord",
    "BundleLimits",
    "CheckpointRecord",
    "FileRecord",
    "InitRecord",
    "Manifest",
    "NoiseClaim",
    "ScheduleRecord",
    "SharedRecord",
    "TrajectoryRecord",
    "batch_length",
    "check_relative_path",
    "checkpoint_steps",
    "parameter_count",
    "schedule_shape",
]
