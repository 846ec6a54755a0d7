"""Running jobs: units of work (one job, or one lockstep ensemble) on an executor.

The driver (this process) is the only writer of the store: workers get a unit (its jobs and
their initial weights), load the data themselves (verifying the dataset fingerprint), train, and
return the weights as safetensors bytes; the driver writes the files atomically and commits each
outcome as it arrives. Executors: :mod:`pudlab.experiments.executors`. A worker that dies (killed, out of memory) is
retried (``max_retries``); a job that raises an error inside pudlab is recorded as failed and the
sweep goes on.

Progress within a unit is kept by its checkpoint (``STORE/checkpoints/``, every
``RunOptions.checkpoint_seconds``): a killed or interrupted unit resumes from it. The outcomes of a
unit are committed in one transaction, then its checkpoint is removed. Ctrl-C stops every unit at
its next step (checkpoint saved), keeps what finished and says how to resume; a second Ctrl-C exits
at once (workers follow their driver, see :mod:`pudlab.processes`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from pudlab.errors import StoreError
from pudlab.experiments.executors import make_executor
from pudlab.experiments.jobs import Job
from pudlab.experiments.options import RunOptions
from pudlab.experiments.store import Store
from pudlab.experiments.worker import JobOutcome, Unit, checkpoint_name
from pudlab.io import weights_to_bytes, write_bytes_atomic
from pudlab.processes import InterruptedRun, graceful_interrupt, stop_requested


def make_units(jobs: Sequence[Job], ensemble_size: int, device: str = "cpu", mode: str = "exact", *,
               free_bytes: int | None = None) -> list[list[Job]]:
    """Group jobs that can share an ensemble (same signature), at most ``ensemble_size`` each
    (and at most what fits in memory). Deterministic: the same jobs give the same units; within a
    group, jobs of similar size go together (sorted by size, then key)."""
    from pudlab.train.ensemble import max_members

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


def _write(path, data: bytes) -> None:
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:  # a write() error carries no file name: name it (disk full, read-only, ...)
        raise StoreError(f"{path}: {exc.strerror or exc}; the job stays unfinished in the store (finished jobs "
                         "are kept): free space and rerun the same command") from exc


def store_outcomes(store: Store, outcomes: Sequence[JobOutcome]) -> None:
    """Write finished jobs' files atomically, then commit them all in one transaction."""
    for outcome in outcomes:
        _write(store.weights_path(outcome.key), outcome.weights)
        for epoch, data in outcome.snapshots.items():
            _write(store.snapshot_path(outcome.key, int(epoch)), data)
    store.complete_jobs(outcomes)


def _drop_checkpoints(store: Store, unit: Unit) -> None:
    names = {checkpoint_name(unit.jobs, unit.mode), *(checkpoint_name((job,), unit.mode) for job in unit.jobs)}
    for name in names:
        (store.checkpoint_dir() / name).unlink(missing_ok=True)


def run_jobs(store: Store, keys: Sequence[str] | None, options: RunOptions,
             on_outcome: Callable[[JobOutcome], None] | None = None) -> RunSummary:
    """Train every job of ``keys`` (all when None) that is not done yet; commit as results arrive.
    ``options`` are resolved here unless they already are (:meth:`RunOptions.resolved`)."""
    started = time.perf_counter()
    keys = list(keys) if keys is not None else [row["key"] for row in store.job_rows()]
    to_run = {job.key: job for job in store.jobs_to_run(keys)}
    pending = set(to_run)
    summary = RunSummary(skipped=len(keys) - len(pending))
    if not pending:
        summary.seconds = time.perf_counter() - started
        return summary
    options = options.resolved()
    device, mode = options.device, options.ensemble_mode or "exact"  # resolved options name the mode
    executor = make_executor(options)
    # units come from the complete job list, so that a resumed sweep groups exactly as an uninterrupted one
    # (fused ensembles round differently per grouping); exact ensembles can drop finished members
    units: list[Unit] = []
    inits: dict[str, bytes] = {}
    all_jobs = [to_run[key] if key in to_run else store.job(key) for key in keys]
    for members in make_units(all_jobs, options.ensemble_size or 1, device, mode):
        if not any(job.key in pending for job in members):
            continue
        if mode == "exact":
            members = [job for job in members if job.key in pending]
        first = members[0]
        if first.init_sha256 not in inits:
            inits[first.init_sha256] = weights_to_bytes(store.load_init(first.init_sha256, first.model))
        checkpoints = None if options.executor == "ray" and options.ray_address else str(store.checkpoint_dir())
        units.append(Unit(len(units), tuple(members), inits[first.init_sha256], mode, checkpoints,
                          options.checkpoint_seconds))
    for unit in units:
        store.mark_running([job.key for job in unit.jobs if job.key in pending], f"{options.executor}-{unit.index}")
    bar = tqdm(total=len(keys), initial=summary.skipped, unit="job", desc="training", disable=not options.progress,
               dynamic_ncols=True)
    by_key = {job.key: unit for unit in units for job in unit.jobs}
    try:
        with graceful_interrupt(executor.interrupt):
            for outcomes in executor.run(units):
                _commit(store, [o for o in outcomes if o.key in pending], summary, on_outcome)
                for outcome in outcomes:  # a finished member may be retrained only to keep its unit's grouping
                    if outcome.key in pending and not outcome.interrupted:
                        pending.discard(outcome.key)
                        bar.update(1)
                if outcomes and all(not o.interrupted for o in outcomes) and outcomes[0].key in by_key:
                    _drop_checkpoints(store, by_key[outcomes[0].key])
            interrupted = stop_requested()
    finally:
        bar.close()
        summary.retried = executor.retried
    summary.seconds = time.perf_counter() - started
    if interrupted and pending:
        raise InterruptedRun(f"interrupted: {summary.trained} job(s) finished and kept, {len(pending)} to go "
                             "(progress saved in checkpoints); rerun the same command to resume")
    return summary


def _commit(store: Store, outcomes: Sequence[JobOutcome], summary: RunSummary,
            on_outcome: Callable[[JobOutcome], None] | None) -> None:
    """Record one unit's outcomes: failures, then the finished ones in one transaction."""
    finished = [outcome for outcome in outcomes if outcome.ok]
    for outcome in outcomes:
        if outcome.error is not None:
            store.fail_job(outcome.key, outcome.error)
            summary.failed += 1
            summary.failures[outcome.key] = outcome.error
    if finished:
        store_outcomes(store, finished)
        summary.trained += len(finished)
    for outcome in outcomes:
        if on_outcome is not None and not outcome.interrupted:
            on_outcome(outcome)


__all__ = ["RunSummary", "make_units", "run_jobs", "store_outcomes"]
