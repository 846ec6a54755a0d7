"""The worker side of a sweep: a unit of jobs in, their outcomes out (weights as safetensors bytes).

A worker (this process, a local pool process, or a Ray task) loads the datasets itself, verifies
their fingerprints against the jobs, trains, and returns :class:`JobOutcome` records; it never writes
to the store (the driver does, see :mod:`pudlab.experiments.runner`).
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load

from pudlab.data.dataset import LabeledImages, SourceDataset, Split
from pudlab.errors import PudlabError
from pudlab.experiments.jobs import Job, job_training_set, make_split
from pudlab.experiments.options import CHECKPOINT_SECONDS
from pudlab.io import weights_sha256, weights_to_bytes
from pudlab.model import fused_ensemble_support, parameter_names
from pudlab.processes import die_with_parent, stop_requested
from pudlab.train.trainer import Checkpointing, TrainingInterrupted, TrainResult, train_model


@dataclass(frozen=True)
class JobOutcome:
    """What a worker returns for one job: its trained weights (safetensors bytes) and records, or an error."""

    key: str
    error: str | None = None
    """One line: why the job failed (None when it trained)."""
    weights: bytes = b""
    weights_sha256: str = ""
    snapshots: dict[int, bytes] = field(default_factory=dict)
    """Epoch -> weights at the end of that epoch (safetensors bytes)."""
    snapshot_sha256: dict[int, str] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    """Per-epoch records (:meth:`pudlab.train.trainer.EpochRecord.to_dict`)."""
    final_accuracy: float | None = None
    """A on T_e after the last epoch (None: not measured, or the job failed)."""
    wall_seconds: float = 0.0
    environment: dict = field(default_factory=dict)
    interrupted: bool = False
    """Stopped on request at a safe point (Ctrl-C); its progress is in the unit's checkpoint."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted

    @classmethod
    def failed(cls, key: str, exc: BaseException | str) -> JobOutcome:
        """The outcome of a job that raised ``exc`` (its one-line message)."""
        message = exc if isinstance(exc, str) else "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return cls(key=key, error=message)


@dataclass
class WorkerContext:
    """What a worker keeps between units: loaded sources and splits (process-local)."""

    data_dir: str | None
    device: str
    sources: dict[str, SourceDataset] = field(default_factory=dict)
    splits: dict[tuple, Split] = field(default_factory=dict)
    eval_sets: dict[tuple, LabeledImages] = field(default_factory=dict)

    def source(self, job: Job) -> SourceDataset:
        return self._loaded(job.source_name, job.source_fingerprint)

    def _loaded(self, name: str, fingerprint: str) -> SourceDataset:
        from pudlab.data.sources import load_source

        source = self.sources.get(name)
        if source is None:
            source = load_source(name, self.data_dir)
            self.sources[name] = source
        if source.fingerprint != fingerprint:
            raise PudlabError(
                f"dataset {name}: content fingerprint {source.fingerprint[:16]}... differs from the job's "
                f"{fingerprint[:16]}... (the files changed since the sweep was planned)"
            )
        return source

    def eval_set(self, job: Job) -> LabeledImages:
        """Where ``job`` is scored: T_e of its split, or its evaluation dataset's part."""
        if job.eval_set is None:
            return self.split(job).eval
        spec = job.eval_set
        cache_key = (spec.fingerprint, spec.part, spec.split_seed, spec.eval_fraction)
        if cache_key not in self.eval_sets:
            from pudlab.train.run import held_out_set

            self.eval_sets[cache_key] = held_out_set(self._loaded(spec.source_name, spec.fingerprint), spec.part,
                                                     split_seed=spec.split_seed, eval_fraction=spec.eval_fraction)
        return self.eval_sets[cache_key]

    def split(self, job: Job) -> Split:
        cache_key = (job.source_fingerprint, job.split.seed, job.split.eval_fraction, job.split.max_train_size)
        if cache_key not in self.splits:
            self.splits[cache_key] = make_split(self.source(job), job.split)
        return self.splits[cache_key]


@dataclass(frozen=True)
class Unit:
    """One unit of work: jobs trained together (one, or a lockstep ensemble), and their initial weights."""

    index: int
    jobs: tuple[Job, ...]
    initial_weights: bytes
    """The shared initial weight set as safetensors bytes (verified against the jobs' init hash)."""
    mode: str
    """Ensemble mode (exact | fused)."""
    checkpoint_dir: str | None = None
    """Where the unit checkpoints its training state (None: no checkpoints)."""
    checkpoint_seconds: float = CHECKPOINT_SECONDS
    """Least seconds between two checkpoints (see :attr:`RunOptions.checkpoint_seconds`)."""


def checkpoint_name(jobs: Sequence[Job], mode: str) -> str:
    """File name of the checkpoint of ``jobs`` trained together in ``mode`` (content-keyed)."""
    digest = hashlib.sha256("\n".join([mode, *(job.key for job in jobs)]).encode()).hexdigest()
    return f"{digest[:32]}.pt"


def _checkpointing(unit: Unit, jobs: Sequence[Job]) -> Checkpointing | None:
    if unit.checkpoint_dir is None or unit.checkpoint_seconds < 0:
        return None
    name = checkpoint_name(jobs, unit.mode)
    return Checkpointing(Path(unit.checkpoint_dir) / name, unit.checkpoint_seconds, identity=name,
                         should_stop=stop_requested)


def _outcome(job: Job, result: TrainResult, snapshots: dict[int, dict]) -> JobOutcome:
    """What the driver stores: weights and snapshots as safetensors bytes, history, environment."""
    meta = {"format": "pudlab.weights/1", "job": job.key}
    return JobOutcome(
        key=job.key,
        weights=weights_to_bytes(result.weights, {**meta, "parameter_order": ",".join(result.weights)}),
        weights_sha256=weights_sha256(result.weights),
        snapshots={epoch: weights_to_bytes(w, {**meta, "parameter_order": ",".join(w)})
                   for epoch, w in snapshots.items()},
        snapshot_sha256={epoch: weights_sha256(w) for epoch, w in snapshots.items()},
        history=[record.to_dict() for record in result.history],
        final_accuracy=result.final_accuracy,
        wall_seconds=result.wall_seconds,
        environment=result.environment,
    )


def _initial_weights(unit: Unit) -> dict[str, torch.Tensor]:
    first = unit.jobs[0]
    weights = {name: tensor.clone() for name, tensor in st_load(unit.initial_weights).items()}
    ordered = {name: weights[name] for name in parameter_names(first.model)}
    if weights_sha256(ordered) != first.init_sha256:
        raise PudlabError(f"initial weights sent with unit {unit.index} do not match the jobs' hash "
                          f"{first.init_sha256[:16]}...")
    return ordered


def train_single(context: WorkerContext, job: Job, initial: dict[str, torch.Tensor],
                 checkpoint: Checkpointing | None = None) -> JobOutcome:
    """Train one job; return its outcome. Snapshots taken so far travel in ``checkpoint.extra``."""
    split = context.split(job)
    _, obfuscated = job_training_set(split, job)
    wanted = set(job.snapshot_epochs)
    holder = checkpoint.extra if checkpoint is not None else {}

    def keep_snapshot(epoch: int, trainer, record) -> None:
        if epoch in wanted:
            holder.setdefault("snapshots", {})[epoch] = trainer.weights()

    result = train_model(obfuscated, context.eval_set(job), job.model, initial, job.train, device=context.device,
                         on_epoch=keep_snapshot, checkpoint=checkpoint)
    return _outcome(job, result, holder.get("snapshots", {}))


def train_ensemble_unit(context: WorkerContext, jobs: Sequence[Job], initial: dict[str, torch.Tensor],
                        mode: str | None, checkpoint: Checkpointing | None = None) -> list[JobOutcome]:
    """Train jobs of one group signature in one lockstep ensemble; return their outcomes."""
    from pudlab.train.ensemble import train_ensemble

    train_sets = [job_training_set(context.split(job), job)[1] for job in jobs]
    holder = checkpoint.extra if checkpoint is not None else {}
    note = fused_ensemble_support(jobs[0].model) if mode == "fused" else None
    if note is not None:  # the model allows lockstep training, not the grouped-convolution fusion
        mode = "exact"

    def keep_snapshot(member: int, epoch: int, trainer, record) -> None:
        if epoch in jobs[member].snapshot_epochs:
            holder.setdefault("snapshots", {}).setdefault(member, {})[epoch] = trainer.member_weights(member)

    results = train_ensemble(train_sets, context.eval_set(jobs[0]), jobs[0].model, initial,
                             [job.train for job in jobs], device=context.device, mode=mode, on_epoch=keep_snapshot,
                             checkpoint=checkpoint)
    for result in results:
        if note is not None:
            result.environment["ensemble_note"] = note
    snapshots = holder.get("snapshots", {})
    return [_outcome(job, result, snapshots.get(member, {}))
            for member, (job, result) in enumerate(zip(jobs, results, strict=True))]


def execute_unit(context: WorkerContext, unit: Unit) -> list[JobOutcome]:
    """Run one unit; every job yields an outcome, a failed one on error (never raises for pudlab errors).

    An ensemble that fails as a whole is retried one job at a time, so one bad job fails alone.
    A stop request (Ctrl-C) returns interrupted outcomes, progress kept in the unit's checkpoint.
    """
    interrupted = [JobOutcome(job.key, interrupted=True) for job in unit.jobs]
    if stop_requested():
        return interrupted
    try:
        initial = _initial_weights(unit)
    except Exception as exc:
        return [JobOutcome.failed(job.key, exc) for job in unit.jobs]
    if len(unit.jobs) > 1:
        try:
            return train_ensemble_unit(context, unit.jobs, initial, unit.mode, _checkpointing(unit, unit.jobs))
        except TrainingInterrupted:
            return interrupted
        except Exception:
            pass
    outcomes = []
    for job in unit.jobs:
        try:
            outcomes.append(train_single(context, job, initial, _checkpointing(unit, (job,))))
        except TrainingInterrupted:
            return outcomes + interrupted[len(outcomes):]
        except Exception as exc:
            outcomes.append(JobOutcome.failed(job.key, exc))
    return outcomes


_WORKER: WorkerContext | None = None


def init_worker(data_dir: str | None, device: str, threads: int, parent_pid: int | None = None) -> None:
    """Initializer of a pool's worker process: dies with ``parent_pid`` (the driver) and releases its
    output; thread count and a fresh context."""
    global _WORKER
    die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    _WORKER = WorkerContext(data_dir, device)


def run_in_worker(unit: Unit) -> list[JobOutcome]:
    """Body of a pool task in a worker process."""
    if _WORKER is None:
        raise RuntimeError("worker not initialized")
    return execute_unit(_WORKER, unit)
