"""Run units as Ray tasks (``--executor ray``), on a laptop or a cluster.

Each unit (one job, or one lockstep ensemble) is a Ray task asking for what it needs: one GPU for a
CUDA unit, ``threads`` CPUs otherwise. Workers load the datasets from the data dir (which must then
be visible to them, e.g. a shared filesystem) or, with ``ray_ship_data``, receive them through Ray's
object store; either way they verify the dataset fingerprint before training. Results (weights as
safetensors bytes) stream back to the driver, which stays the only writer of the store and commits
each unit as it arrives: killing the driver and rerunning resumes exactly as with the local
executor. A task whose worker process dies is retried by Ray (``max_retries``); an error inside
pudlab comes back as a failed job and the sweep goes on. Ctrl-C (:meth:`RayExecutor.interrupt`)
cancels the tasks not finished yet: their units come back interrupted, progress kept in their
checkpoints (local Ray). A local Ray instance (no address) is cleaned up by :mod:`pudlab.reaper`
when the driver dies, whatever killed it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pudlab import reaper
from pudlab.errors import PudlabError
from pudlab.experiments.options import RunOptions
from pudlab.experiments.worker import JobOutcome, Unit, WorkerContext, execute_unit

POLL_SECONDS = 0.5
"""How often the wait for finished tasks looks for an interrupt."""

_CONTEXTS: dict[tuple, WorkerContext] = {}
"""Per Ray worker process: loaded datasets and splits, reused across the tasks it runs."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise PudlabError("the Ray executor needs Ray: pip install 'pudlab[ray]' (or pip install 'ray[default]')") from exc
    return ray


def _run_unit(unit: Unit, data_dir: str | None, device: str, threads: int, shipped: dict) -> list[JobOutcome]:
    """Body of the Ray task (runs in a Ray worker process)."""
    import torch

    torch.set_num_threads(threads)
    context = _CONTEXTS.setdefault((data_dir, device), WorkerContext(data_dir, device))
    for name, source in shipped.items():
        context.sources.setdefault(name, source)
    return execute_unit(context, unit)


class RayExecutor:
    """Submits every unit as a Ray task and yields outcomes as tasks finish."""

    def __init__(self, options: RunOptions) -> None:
        self.options, self.device = options, options.device
        self.ray = _ray()
        self.retried = 0
        """Ray retries lost tasks itself; they are not counted here."""
        self.reaper: subprocess.Popen | None = None
        """The process that cleans up a local Ray instance after this driver (:mod:`pudlab.reaper`)."""
        self._stopping = False

    def interrupt(self) -> None:
        """Ask the running units to stop: :meth:`run` cancels every task not finished yet (Ray is not
        called from the signal handler) and yields their units as interrupted."""
        self._stopping = True

    def _connect(self) -> None:
        if self.ray.is_initialized():
            return
        kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if self.options.ray_address:
            self.ray.init(address=self.options.ray_address, **kwargs)
            return
        kwargs["num_cpus"] = max(self.options.workers or 1, 1) * self.options.threads_per_worker()
        # a local instance: its processes carry a tag that a reaper kills once this driver is gone
        tag = f"{os.getpid()}-{time.time_ns()}"
        self.reaper = reaper.start(tag)
        os.environ[reaper.TAG_VARIABLE] = tag  # inherited by Ray's processes, and only by them
        try:
            self.ray.init(**kwargs)
        finally:
            del os.environ[reaper.TAG_VARIABLE]

    def run(self, units: Sequence[Unit]) -> Iterator[list[JobOutcome]]:
        if not units:
            return
        self._connect()
        ray = self.ray
        threads = self.options.threads_per_worker()
        resources = {"num_gpus": 1, "num_cpus": 1} if self.device.startswith("cuda") else {"num_cpus": threads}
        task = ray.remote(max_retries=self.options.max_retries, retry_exceptions=False, **resources)(_run_unit)
        shipped: dict = {}
        if self.options.ray_ship_data:
            from pudlab.data.sources import load_source

            names = sorted({job.source_name for unit in units for job in unit.jobs})
            shipped = {name: load_source(name, self.options.data_dir) for name in names}
        shipped_ref = ray.put(shipped)
        futures = {task.remote(unit, self.options.data_dir, self.device, threads, shipped_ref): unit for unit in units}
        cancelled = False
        while futures:
            if self._stopping and not cancelled:
                for ref in futures:  # a running task gets KeyboardInterrupt; a queued one never starts
                    ray.cancel(ref, force=False)
                cancelled = True
            done, _ = ray.wait(list(futures), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                yield self._outcomes(ref, futures.pop(ref), cancelled)

    def _outcomes(self, ref: Any, unit: Unit, cancelled: bool) -> list[JobOutcome]:
        """The outcomes of a finished task: its result, or interrupted (cancelled) or failed ones."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            if cancelled:  # stopped on request: the unit resumes from its checkpoint on the next run
                return [JobOutcome(job.key, interrupted=True) for job in unit.jobs]
            if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                                ray.exceptions.TaskCancelledError)):
                return [JobOutcome.failed(job.key, f"Ray worker lost after {self.options.max_retries} retries: {exc}")
                        for job in unit.jobs]
            raise
