"""Running jobs: units of work (one job, or one lockstep ensemble) in local processes.

The driver (this process) is the only writer of the store's database. Workers load the data
themselves (verifying the fingerprint), train, write weight files atomically and return outcomes;
the driver commits each outcome as it arrives. A worker that dies (killed, out of memory) breaks
the pool: the pool is restarted and the unfinished units are retried (``max_retries``); a job that
raises an error inside pudlab is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.dataset import SourceDataset, Split
from ..errors import PudlabError, StoreError
from ..pipeline import weights_sha256
from ..storage import save_weights
from ..training import TrainResult, resolve_device, train_model
from .jobs import Job, job_training_set, make_split
from .store import Store, load_verified

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

    def threads_per_worker(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))


# ------------------------------------------------------------------------------------------- worker side
@dataclass
class WorkerContext:
    """What a worker keeps between units: loaded sources and splits (process-local)."""

    store_root: str
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


def _write_job_files(store_root: Path, job: Job, result: TrainResult, snapshots: dict[int, dict]) -> dict:
    """Write weights and snapshots atomically; return the outcome the driver commits."""
    meta = {"format": "pudlab.weights/1", "job": job.key}
    save_weights(store_root / "weights" / f"{job.key}.safetensors", result.weights, meta)
    snapshot_hashes = {}
    for epoch, weights in snapshots.items():
        save_weights(store_root / "snapshots" / job.key / f"e{epoch}.safetensors", weights, meta)
        snapshot_hashes[epoch] = weights_sha256(weights)
    return {
        "key": job.key,
        "history": [record.to_dict() for record in result.history],
        "final_accuracy": result.final_accuracy,
        "weights_sha256": weights_sha256(result.weights),
        "wall_seconds": result.wall_seconds,
        "environment": result.environment,
        "snapshots": snapshot_hashes,
    }


def train_single(context: WorkerContext, job: Job) -> dict:
    """Train one job; write its files; return its outcome."""
    split = context.split(job)
    _, obfuscated = job_training_set(split, job)
    initial = load_verified(Path(context.store_root) / "inits" / f"{job.init_sha256}.safetensors", job.init_sha256,
                            job.model)
    wanted = set(job.snapshot_epochs)
    snapshots: dict[int, dict] = {}

    def keep_snapshot(epoch: int, trainer, record) -> None:  # noqa: ANN001
        if epoch in wanted:
            snapshots[epoch] = trainer.weights()

    result = train_model(obfuscated, split.eval, job.model, initial, job.train, device=context.device,
                         on_epoch=keep_snapshot)
    return _write_job_files(Path(context.store_root), job, result, snapshots)


def train_ensemble_unit(context: WorkerContext, jobs: Sequence[Job], mode: str | None) -> list[dict]:
    """Train jobs of one group signature in one lockstep ensemble; write their files; return outcomes."""
    from ..ensemble import train_ensemble

    first = jobs[0]
    split = context.split(first)
    train_sets = [job_training_set(context.split(job), job)[1] for job in jobs]
    initial = load_verified(Path(context.store_root) / "inits" / f"{first.init_sha256}.safetensors",
                            first.init_sha256, first.model)
    snapshots: list[dict[int, dict]] = [{} for _ in jobs]

    def keep_snapshot(member: int, epoch: int, trainer, record) -> None:  # noqa: ANN001
        if epoch in jobs[member].snapshot_epochs:
            snapshots[member][epoch] = trainer.member_weights(member)

    results = train_ensemble(train_sets, split.eval, first.model, initial, [job.train for job in jobs],
                             device=context.device, mode=mode, on_epoch=keep_snapshot)
    return [_write_job_files(Path(context.store_root), job, result, snapshots[member])
            for member, (job, result) in enumerate(zip(jobs, results, strict=True))]


def _error_outcome(job: Job, exc: BaseException) -> dict:
    return {"key": job.key, "error": "".join(traceback.format_exception_only(type(exc), exc)).strip()}


def execute_unit(context: WorkerContext, jobs: Sequence[Job], mode: str | None = None) -> list[dict]:
    """Run one unit; every job yields an outcome or ``{"key", "error"}`` (never raises for pudlab errors).

    An ensemble that fails as a whole is retried one job at a time, so one bad job fails alone.
    """
    if len(jobs) > 1:
        try:
            return train_ensemble_unit(context, jobs, mode)
        except Exception:  # noqa: BLE001 - retried job by job below, where each error is recorded
            pass
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(train_single(context, job))
        except Exception as exc:  # noqa: BLE001 - recorded as the job's failure
            outcomes.append(_error_outcome(job, exc))
    return outcomes


_WORKER: WorkerContext | None = None


def _init_worker(store_root: str, data_dir: str | None, device: str, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = WorkerContext(store_root, data_dir, device)


def _run_in_worker(jobs: list[Job], mode: str | None) -> list[dict]:
    if _WORKER is None:
        raise RuntimeError("worker not initialized")
    return execute_unit(_WORKER, jobs, mode)


# ------------------------------------------------------------------------------------------- driver side
def make_units(jobs: Sequence[Job], ensemble_size: int, device: str = "cpu") -> list[list[Job]]:
    """Group jobs that can share an ensemble (same signature), at most ``ensemble_size`` each
    (and at most what fits in memory). Deterministic: the same jobs give the same units."""
    from ..ensemble import max_members

    groups: dict[tuple, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: j.key):
        groups.setdefault(job.group_signature(), []).append(job)
    units: list[list[Job]] = []
    for members in groups.values():
        first = members[0]
        size = max(1, min(ensemble_size, max_members(first.model, first.train_size, first.train.batch_size, device)))
        units.extend(members[start:start + size] for start in range(0, len(members), size))
    return units


@dataclass
class RunSummary:
    trained: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)


def run_jobs(store: Store, keys: Sequence[str] | None, options: RunOptions,
             on_outcome: Callable[[dict], None] | None = None) -> RunSummary:
    """Train every job of ``keys`` (all when None) that is not done yet; commit as results arrive."""
    from ..ensemble import default_mode

    started = time.perf_counter()
    keys = list(keys) if keys is not None else [row["key"] for row in store.job_rows()]
    pending = {job.key for job in store.jobs_to_run(keys)}
    total = len(keys)
    summary = RunSummary(skipped=total - len(pending))
    if not pending:
        summary.seconds = time.perf_counter() - started
        return summary
    device = str(resolve_device(options.device))
    mode = options.ensemble_mode or default_mode(torch.device(device))
    # units come from the complete job list, so that a resumed sweep groups exactly as an uninterrupted one
    # (fused ensembles round differently per grouping); exact ensembles can drop finished members
    units = []
    for unit in make_units([store.job(key) for key in keys], options.ensemble_size, device):
        if any(job.key in pending for job in unit):
            units.append([job for job in unit if job.key in pending] if mode == "exact" else unit)
    bar = tqdm(total=total, initial=summary.skipped, unit="job", desc="training", disable=not options.progress,
               dynamic_ncols=True)

    def commit(outcomes: list[dict]) -> None:
        for outcome in outcomes:
            if outcome["key"] not in pending:
                continue  # a finished member retrained only to keep its unit's grouping
            if "error" in outcome:
                store.fail_job(outcome["key"], outcome["error"])
                summary.failed += 1
                summary.failures[outcome["key"]] = outcome["error"]
            else:
                store.complete_job(outcome["key"], outcome)
                summary.trained += 1
            bar.update(1)
            if on_outcome is not None:
                on_outcome(outcome)

    try:
        if options.workers <= 1:
            saved_threads = torch.get_num_threads()
            torch.set_num_threads(options.threads_per_worker())
            try:
                context = WorkerContext(str(store.root), options.data_dir, device)
                for index, unit in enumerate(units):
                    store.mark_running([job.key for job in unit if job.key in pending], f"local-{index}")
                    commit(execute_unit(context, unit, mode))
            finally:
                torch.set_num_threads(saved_threads)
        else:
            _run_pool(store, units, pending, options, device, mode, commit)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _run_pool(store: Store, units: list[list[Job]], pending: set[str], options: RunOptions, device: str,
              mode: str, commit: Callable[[list[dict]], None]) -> None:
    remaining = {index: unit for index, unit in enumerate(units)}
    attempts = {index: 0 for index in remaining}
    while remaining:
        pool = ProcessPoolExecutor(
            max_workers=options.workers, mp_context=get_context("spawn"), initializer=_init_worker,
            initargs=(str(store.root), options.data_dir, device, options.threads_per_worker()),
        )
        futures: dict[Future, int] = {}
        try:
            for index, unit in remaining.items():
                store.mark_running([job.key for job in unit if job.key in pending], f"pool-{index}")
                futures[pool.submit(_run_in_worker, unit, mode)] = index
            broken = False
            while futures and not broken:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures.pop(future)
                    try:
                        outcomes = future.result()
                    except BrokenProcessPool:
                        broken = True
                        attempts[index] += 1
                        continue
                    commit(outcomes)
                    remaining.pop(index)
            if broken:
                for future, index in futures.items():
                    if not future.done():
                        continue
                    try:
                        commit(future.result())
                        remaining.pop(index)
                    except BrokenProcessPool:
                        attempts[index] += 1
                exhausted = [index for index in remaining if attempts[index] > options.max_retries]
                if exhausted:
                    raise StoreError(
                        f"a worker process died {options.max_retries + 1} times on the same unit; "
                        f"rerun the same command to resume (finished jobs are kept)"
                    )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
