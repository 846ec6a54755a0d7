"""Executors: where units run. :class:`Executor` is the contract; ``local`` (:class:`LocalExecutor`: this
process, or a pool of local worker processes) and ``ray`` (:class:`pudlab.experiments.ray_executor.RayExecutor`)
fulfil it. Each yields the outcomes of a unit as it finishes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from pudlab.errors import PudlabError, StoreError
from pudlab.experiments.options import RunOptions
from pudlab.experiments.worker import (
    JobOutcome,
    Unit,
    WorkerContext,
    execute_unit,
    init_worker,
    run_in_worker,
)
from pudlab.pool_server import EXPERIMENT_PRELOAD
from pudlab.processes import pool_context, stop_requested
from pudlab.train.trainer import torch_threads

POLL_SECONDS = 0.5
"""How often the pool loop looks for a stop request while waiting for units."""


class Executor(Protocol):
    """What the runner needs of an executor (:func:`make_executor` returns one)."""

    retried: int
    """Units run again because their worker process died."""

    def run(self, units: Sequence[Unit]) -> Iterator[list[JobOutcome]]:
        """Run ``units``; yield the outcomes of each unit as it finishes (any order). After
        :meth:`interrupt`, units not finished yield outcomes marked ``interrupted`` (never failed)."""
        ...

    def interrupt(self) -> None:
        """Ask running units to stop at their next safe point, keeping their checkpoints. Called from a
        signal handler (the first Ctrl-C): it must return at once."""
        ...


class LocalExecutor:
    """This process (``workers <= 1``) or a pool of local worker processes, restarted when a worker dies.

    Workers are forks of a fork server that imported torch once (:mod:`pudlab.pool_server`; ``spawn``
    where the platform has no fork server), so a pool (re)starts in well under a second."""

    def __init__(self, options: RunOptions) -> None:
        self.options, self.device = options, options.device
        self.workers = options.workers or 1  # resolved options always hold a count
        self.retried = 0
        """Units run again because their worker process died."""
        self._pool_now: ProcessPoolExecutor | None = None

    def interrupt(self) -> None:
        """Ask every worker of the running pool to stop at its next safe point (SIGINT)."""
        processes = getattr(self._pool_now, "_processes", None) or {}
        for pid in list(processes):
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass

    def run(self, units: Sequence[Unit]) -> Iterator[list[JobOutcome]]:
        if self.workers <= 1:
            with torch_threads(self.options.threads_per_worker()):
                context = WorkerContext(self.options.data_dir, self.device)
                for unit in units:
                    yield execute_unit(context, unit)
            return
        yield from self._pool(units)

    def _pool(self, units: Sequence[Unit]) -> Iterator[list[JobOutcome]]:
        remaining = {unit.index: unit for unit in units}
        attempts = dict.fromkeys(remaining, 0)
        context = pool_context(EXPERIMENT_PRELOAD)
        while remaining and not stop_requested():
            pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=init_worker,
                initargs=(self.options.data_dir, self.device, self.options.threads_per_worker(), os.getpid()),
            )
            self._pool_now = pool
            try:
                futures: dict[Future, int] = {pool.submit(run_in_worker, unit): index
                                              for index, unit in remaining.items()}
                while futures:
                    done, _ = wait(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                    if stop_requested():  # units not started yet stay pending; running ones stop soon
                        for future in futures:
                            future.cancel()
                    broken = False
                    for future in done:
                        index = futures.pop(future)
                        if future.cancelled():
                            continue
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
                    if future.done() and not future.cancelled() and future.exception() is None:
                        remaining.pop(index)
                        yield future.result()
                    else:
                        attempts[index] += 1
                if stop_requested():
                    break
                self.retried += len(remaining)
                if any(attempts[index] > self.options.max_retries for index in remaining):
                    raise StoreError(f"a worker process died {self.options.max_retries + 1} times on the same unit; "
                                     "rerun the same command to resume (finished jobs are kept)")
            finally:
                self._pool_now = None
                pool.shutdown(wait=True, cancel_futures=True)


def make_executor(options: RunOptions) -> Executor:
    """The executor ``options.executor`` names, for resolved ``options`` (:meth:`RunOptions.resolved`)."""
    if not options.is_resolved:
        raise PudlabError("make_executor needs resolved run options (RunOptions.resolved())")
    if options.executor == "ray":
        from pudlab.experiments.ray_executor import RayExecutor

        return RayExecutor(options)
    return LocalExecutor(options)
