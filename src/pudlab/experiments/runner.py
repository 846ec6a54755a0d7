"""Running jobs: units of work (one job, or one lockstep ensemble) on an executor.

The driver (this process) is the only writer of the store: workers get a unit (its jobs and
their initial weights), load the data themselves (verifying the dataset fingerprint), train, and
return the weights as safetensors bytes; the driver writes the files atomically and commits each
outcome as it arrives. Executors: ``local`` (this process, or a pool of local processes) and
``ray`` (:mod:`pudlab.experiments.ray_executor`). A worker that dies (killed, out of memory) is
retried (``max_retries``); a job that raises an error inside pudlab is recorded as failed and the
sweep goes on.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Protocol

import torch
from safetensors.torch import load as st_load
from tqdm.auto import tqdm

from ..data.dataset import SourceDataset, Split
from ..errors import PudlabError, StoreError
from ..model import parameter_names
from ..pipeline import weights_sha256
from ..storage import weights_to_bytes, write_bytes_atomic
from ..training import TrainResult, resolve_device, torch_threads, train_model
from .jobs import Job, job_training_set, make_split
from .store import Store

MAX_RETRIES = 2


@dataclass(frozen=True)
class RunOptions:
    """How to run (never part of a job's key)."""

    workers: int = 1
    """Local worker processes (1 = in this process)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    threads: int = 0
    """torch threads per worker (0 = CPU cores / workers). Bit-exact repeats need the same value."""
    ensemble_size: int = 1
    """Most jobs trained together in one lockstep ensemble (1 = one at a time); capped by memory."""
    ensemble_mode: str | None = None
    """``exact`` (bit-identical to separate trainings) or ``fused`` (grouped convs, fast on GPU);
    None: fused on CUDA, exact on CPU."""
    data_dir: str | None = None
    """Data directory of named datasets."""
    progress: bool = True
    """Show a progress bar."""
    max_retries: int = MAX_RETRIES
    """Retries of a unit whose worker process died."""
    executor: str = "local"
    """local (this process or local processes) or ray."""
    ray_address: str | None = None
    """Ray cluster address (``auto``, ``HOST:PORT``); None starts a local Ray instance."""
    ray_ship_data: bool = False
    """Send datasets to Ray workers through the object store (data dir not shared)."""

    def threads_per_worker(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))


# ------------------------------------------------------------------------------------------- worker side
@dataclass
class WorkerContext:
    """What a worker keeps between units: loaded sources and splits (process-local)."""

    data_dir: str | None
    device: str
    sources: dict[str, SourceDataset] = field(default_factory=dict)
    splits: dict[tuple, Split] = field(default_factory=dict)

    def source(self, job: Job) -> SourceDataset:
        from ..data.sources import load_source

        source = self.sources.get(job.source_name)
        if source is None:
            source = load_source(job.source_name, self.data_dir)
            self.sources[job.source_name] = source
        if source.fingerprint != job.source_fingerprint:
            raise PudlabError(
                f"dataset {job.source_name}: content fingerprint {source.fingerprint[:16]}... differs from the job's "
                f"{job.source_fingerprint[:16]}... (the files changed since the sweep was planned)"
            )
        return source

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


def _outcome(job: Job, result: TrainResult, snapshots: dict[int, dict]) -> dict:
    """What the driver stores: weights and snapshots as safetensors bytes, history, environment."""
    meta = {"format": "pudlab.weights/1", "job": job.key}
    return {
        "key": job.key,
        "weights": weights_to_bytes(result.weights, {**meta, "parameter_order": ",".join(result.weights)}),
        "weights_sha256": weights_sha256(result.weights),
        "snapshots": {epoch: weights_to_bytes(w, {**meta, "parameter_order": ",".join(w)})
                      for epoch, w in snapshots.items()},
        "snapshot_sha256": {epoch: weights_sha256(w) for epoch, w in snapshots.items()},
        "history": [record.to_dict() for record in result.history],
        "final_accuracy": result.final_accuracy,
        "wall_seconds": result.wall_seconds,
        "environment": result.environment,
    }


def _initial_weights(unit: Unit) -> dict[str, torch.Tensor]:
    first = unit.jobs[0]
    weights = {name: tensor.clone() for name, tensor in st_load(unit.initial_weights).items()}
    ordered = {name: weights[name] for name in parameter_names(first.model)}
    if weights_sha256(ordered) != first.init_sha256:
        raise PudlabError(f"initial weights sent with unit {unit.index} do not match the jobs' hash "
                          f"{first.init_sha256[:16]}...")
    return ordered


def train_single(context: WorkerContext, job: Job, initial: dict[str, torch.Tensor]) -> dict:
    """Train one job; return its outcome."""
    split = context.split(job)
    _, obfuscated = job_training_set(split, job)
    wanted = set(job.snapshot_epochs)
    snapshots: dict[int, dict] = {}

    def keep_snapshot(epoch: int, trainer, record) -> None:  # noqa: ANN001
        if epoch in wanted:
            snapshots[epoch] = trainer.weights()

    result = train_model(obfuscated, split.eval, job.model, initial, job.train, device=context.device,
                         on_epoch=keep_snapshot)
    return _outcome(job, result, snapshots)


def train_ensemble_unit(context: WorkerContext, jobs: Sequence[Job], initial: dict[str, torch.Tensor],
                        mode: str | None) -> list[dict]:
    """Train jobs of one group signature in one lockstep ensemble; return their outcomes."""
    from ..ensemble import train_ensemble

    split = context.split(jobs[0])
    train_sets = [job_training_set(context.split(job), job)[1] for job in jobs]
    snapshots: list[dict[int, dict]] = [{} for _ in jobs]

    def keep_snapshot(member: int, epoch: int, trainer, record) -> None:  # noqa: ANN001
        if epoch in jobs[member].snapshot_epochs:
            snapshots[member][epoch] = trainer.member_weights(member)

    results = train_ensemble(train_sets, split.eval, jobs[0].model, initial, [job.train for job in jobs],
                             device=context.device, mode=mode, on_epoch=keep_snapshot)
    return [_outcome(job, result, snapshots[member])
            for member, (job, result) in enumerate(zip(jobs, results, strict=True))]


def _error_outcome(job: Job, exc: BaseException) -> dict:
    return {"key": job.key, "error": "".join(traceback.format_exception_only(type(exc), exc)).strip()}


def execute_unit(context: WorkerContext, unit: Unit) -> list[dict]:
    """Run one unit; every job yields an outcome or ``{"key", "error"}`` (never raises for pudlab errors).

    An ensemble that fails as a whole is retried one job at a time, so one bad job fails alone.
    """
    try:
        initial = _initial_weights(unit)
    except Exception as exc:  # noqa: BLE001 - every job of the unit fails with it
        return [_error_outcome(job, exc) for job in unit.jobs]
    if len(unit.jobs) > 1:
        try:
            return train_ensemble_unit(context, unit.jobs, initial, unit.mode)
        except Exception:  # noqa: BLE001 - retried job by job below, where each error is recorded
            pass
    outcomes = []
    for job in unit.jobs:
        try:
            outcomes.append(train_single(context, job, initial))
        except Exception as exc:  # noqa: BLE001 - recorded as the job's failure
            outcomes.append(_error_outcome(job, exc))
    return outcomes


_WORKER: WorkerContext | None = None


def _init_worker(data_dir: str | None, device: str, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = WorkerContext(data_dir, device)


def _run_in_worker(unit: Unit) -> list[dict]:
    if _WORKER is None:
        raise RuntimeError("worker not initialized")
    return execute_unit(_WORKER, unit)


# ------------------------------------------------------------------------------------------- executors
class Executor(Protocol):
    """Runs units; yields the outcomes of each unit as it finishes (any order)."""

    retried: int

    def run(self, units: Sequence[Unit]) -> Iterator[list[dict]]: ...


class LocalExecutor:
    """This process (``workers <= 1``) or a pool of spawned local processes, restarted when a worker dies."""

    def __init__(self, options: RunOptions, device: str) -> None:
        self.options, self.device = options, device
        self.retried = 0
        """Units run again because their worker process died."""

    def run(self, units: Sequence[Unit]) -> Iterator[list[dict]]:
        if self.options.workers <= 1:
            with torch_threads(self.options.threads_per_worker()):
                context = WorkerContext(self.options.data_dir, self.device)
                for unit in units:
                    yield execute_unit(context, unit)
            return
        yield from self._pool(units)

    def _pool(self, units: Sequence[Unit]) -> Iterator[list[dict]]:
        remaining = {unit.index: unit for unit in units}
        attempts = dict.fromkeys(remaining, 0)
        while remaining:
            pool = ProcessPoolExecutor(
                max_workers=self.options.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                initargs=(self.options.data_dir, self.device, self.options.threads_per_worker()),
            )
            try:
                futures: dict[Future, int] = {pool.submit(_run_in_worker, unit): index
                                              for index, unit in remaining.items()}
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    broken = False
                    for future in done:
                        index = futures.pop(future)
                        try:
                            outcomes = future.result()
                        except BrokenProcessPool:
                            broken = True
                            attempts[index] += 1
                            continue
                        remaining.pop(index)
                        yield outcomes
                    if broken:
                        break
                for future, index in futures.items():  # the pool broke: whatever finished is kept
                    if future.done() and future.exception() is None:
                        remaining.pop(index)
                        yield future.result()
                    else:
                        attempts[index] += 1
                self.retried += len(remaining)
                if any(attempts[index] > self.options.max_retries for index in remaining):
                    raise StoreError(f"a worker process died {self.options.max_retries + 1} times on the same unit; "
                                     "rerun the same command to resume (finished jobs are kept)")
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def make_executor(options: RunOptions, device: str) -> Executor:
    if options.executor == "local":
        return LocalExecutor(options, device)
    if options.executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(options, device)
    raise PudlabError(f"executor must be local or ray, got {options.executor!r}")


# ------------------------------------------------------------------------------------------- driver side
def make_units(jobs: Sequence[Job], ensemble_size: int, device: str = "cpu", mode: str = "exact", *,
               free_bytes: int | None = None) -> list[list[Job]]:
    """Group jobs that can share an ensemble (same signature), at most ``ensemble_size`` each
    (and at most what fits in memory). Deterministic: the same jobs give the same units; within a
    group, jobs of similar size go together (sorted by size, then key)."""
    from ..ensemble import max_members

    groups: dict[tuple, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: (j.train_size, j.key)):
        groups.setdefault(job.group_signature(mode), []).append(job)
    units: list[list[Job]] = []
    for members in groups.values():
        largest = max(job.train_size for job in members)
        first = members[0]
        size = max(1, min(ensemble_size, max_members(first.model, largest, first.train.batch_size, device,
                                                     free_bytes=free_bytes)))
        units.extend(members[start:start + size] for start in range(0, len(members), size))
    return units


@dataclass
class RunSummary:
    trained: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    """Units run again because a worker process died."""
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)


def store_outcome(store: Store, outcome: dict) -> None:
    """Write a finished job's files atomically, check their hashes, then commit it."""
    key = outcome["key"]
    write_bytes_atomic(store.weights_path(key), outcome["weights"])
    for epoch, data in outcome["snapshots"].items():
        write_bytes_atomic(store.snapshot_path(key, int(epoch)), data)
    store.complete_job(key, {**outcome, "snapshots": outcome["snapshot_sha256"]})


def run_jobs(store: Store, keys: Sequence[str] | None, options: RunOptions,
             on_outcome: Callable[[dict], None] | None = None) -> RunSummary:
    """Train every job of ``keys`` (all when None) that is not done yet; commit as results arrive."""
    from ..ensemble import default_mode

    started = time.perf_counter()
    keys = list(keys) if keys is not None else [row["key"] for row in store.job_rows()]
    to_run = {job.key: job for job in store.jobs_to_run(keys)}
    pending = set(to_run)
    summary = RunSummary(skipped=len(keys) - len(pending))
    if not pending:
        summary.seconds = time.perf_counter() - started
        return summary
    device = str(resolve_device(options.device))
    mode = options.ensemble_mode or default_mode(torch.device(device))
    executor = make_executor(options, device)
    # units come from the complete job list, so that a resumed sweep groups exactly as an uninterrupted one
    # (fused ensembles round differently per grouping); exact ensembles can drop finished members
    units: list[Unit] = []
    inits: dict[str, bytes] = {}
    all_jobs = [to_run[key] if key in to_run else store.job(key) for key in keys]
    for members in make_units(all_jobs, options.ensemble_size, device, mode):
        if not any(job.key in pending for job in members):
            continue
        if mode == "exact":
            members = [job for job in members if job.key in pending]
        first = members[0]
        if first.init_sha256 not in inits:
            inits[first.init_sha256] = weights_to_bytes(store.load_init(first.init_sha256, first.model))
        units.append(Unit(len(units), tuple(members), inits[first.init_sha256], mode))
    for unit in units:
        store.mark_running([job.key for job in unit.jobs if job.key in pending], f"{options.executor}-{unit.index}")
    bar = tqdm(total=len(keys), initial=summary.skipped, unit="job", desc="training", disable=not options.progress,
               dynamic_ncols=True)
    try:
        for outcomes in executor.run(units):
            for outcome in outcomes:
                if outcome["key"] not in pending:
                    continue  # a finished member retrained only to keep its unit's grouping
                if "error" in outcome:
                    store.fail_job(outcome["key"], outcome["error"])
                    summary.failed += 1
                    summary.failures[outcome["key"]] = outcome["error"]
                else:
                    store_outcome(store, outcome)
                    summary.trained += 1
                pending.discard(outcome["key"])
                bar.update(1)
                if on_outcome is not None:
                    on_outcome(outcome)
    finally:
        bar.close()
        summary.retried = executor.retried
    summary.seconds = time.perf_counter() - started
    return summary
