"""How a sweep runs (never part of a job's key): :class:`RunOptions`, every default and auto rule in one place.

``RunOptions()`` is what ``pudlab run`` does without options: fields left as None (or ``threads = 0``)
are *auto* and get their value from :meth:`RunOptions.resolved`, the one place that resolves the device
and picks workers, threads, ensemble size and mode for it. Each field's docstring is the ``--help`` of
its command-line option (``pudlab run`` and ``pudlab reproduce`` generate one option per field).
Importing this module does not import torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from pudlab.errors import PudlabError

MAX_RETRIES = 2
"""Retries of a unit whose worker process died."""
CHECKPOINT_SECONDS = 3.0
"""Least seconds between two checkpoints of a unit's training state."""
MAX_AUTO_WORKERS = 8
"""Most worker processes chosen automatically on CPU (each holds its own copy of the data)."""
AUTO_ENSEMBLE_CPU = 8
"""Ensemble size chosen automatically on CPU."""
AUTO_ENSEMBLE_CUDA = 32
"""Ensemble size chosen automatically on CUDA."""


EnsembleMode = Literal["exact", "fused"]
ExecutorName = Literal["local", "ray"]


def auto_cpu_workers() -> int:
    """Worker processes on CPU when none are asked for: one per core, at most :data:`MAX_AUTO_WORKERS`
    (small convolutions use one core better than two threads do)."""
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


@dataclass(frozen=True)
class RunOptions:
    """How to run a sweep: where (device, processes, threads), how jobs are grouped, retried and
    checkpointed. None (``threads``: 0) means auto, see :meth:`resolved`."""

    workers: int | None = None
    """Worker processes (1: train in this process) [default: one per CPU core (at most 8), 1 thread
    each; CUDA: 1]."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto (CUDA when available)."""
    threads: int = 0
    """torch threads per worker [default: 1 on CPU with the default workers, else cores / workers].
    Results are bit-identical only under the same value."""
    ensemble_size: int | None = None
    """Most jobs trained together in one lockstep ensemble, capped by memory [default: 8 on CPU, 32
    on CUDA]."""
    ensemble_mode: EnsembleMode | None = None
    """exact: bit-identical to separate trainings; fused: grouped convolutions, the GPU fast path
    [default: fused on CUDA, exact on CPU]."""
    data_dir: str | None = None
    """Data directory of named datasets (the command line's global --data-dir)."""
    progress: bool = True
    """Show a progress bar."""
    max_retries: int = MAX_RETRIES
    """Retries of a unit whose worker process died (a job that fails inside pudlab is not retried)."""
    executor: ExecutorName = "local"
    """local processes, or Ray tasks (pip install 'pudlab[ray]')."""
    ray_address: str | None = None
    """Ray cluster to join (auto or HOST:PORT) [default: start a local Ray instance]."""
    ray_ship_data: bool = False
    """Send datasets to Ray workers through the object store (data dir not shared)."""
    checkpoint_seconds: float = CHECKPOINT_SECONDS
    """Least seconds between checkpoints of a unit's training state (weights, Adam state, epoch and
    step), further apart when saving would take over 5 % of the time; an interrupted unit resumes
    from it bit-identically on CPU. 0: every step; -1: none."""
    is_resolved: bool = field(default=False, init=False, repr=False, compare=False)
    """Set by :meth:`resolved` only: every auto value is decided and the device checked."""

    def __post_init__(self) -> None:
        checks = [
            (self.workers is None or self.workers >= 1, "workers", "an integer >= 1"),
            (self.threads >= 0, "threads", "an integer >= 0 (0: auto)"),
            (self.ensemble_size is None or self.ensemble_size >= 1, "ensemble_size", "an integer >= 1"),
            (self.ensemble_mode in (None, "exact", "fused"), "ensemble_mode", "exact or fused"),
            (self.executor in ("local", "ray"), "executor", "local or ray"),
            (self.max_retries >= 0, "max_retries", "an integer >= 0"),
            (not math.isnan(self.checkpoint_seconds) and self.checkpoint_seconds >= -1, "checkpoint_seconds",
             "a number >= -1 (0: every step; -1: none)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise PudlabError(f"run options: {name} = {getattr(self, name)!r}; expected {expected}")

    def threads_per_worker(self) -> int:
        """torch threads of each worker: ``threads``, or the CPU cores shared among the workers."""
        return self.threads or max(1, (os.cpu_count() or 1) // max(1, self.workers or 1))

    def forks_cpu_pool(self) -> bool:
        """Whether the run will use a pool of local CPU worker processes (decidable before torch is
        imported: the fork server can then start early, see :mod:`pudlab.pool_server`)."""
        workers = self.workers if self.workers is not None else auto_cpu_workers()
        return self.executor == "local" and self.device == "cpu" and workers > 1

    def resolved(self) -> RunOptions:
        """These options with the device resolved (``auto`` -> CUDA when available, an unusable device
        refused) and every auto value decided for it. Returns ``self`` when already resolved."""
        if self.is_resolved:
            return self
        from pudlab.train.ensemble import default_mode
        from pudlab.train.trainer import resolve_device

        device = resolve_device(self.device)
        cuda = device.type == "cuda"
        workers, threads = self.workers, self.threads
        if workers is None:
            workers = 1 if cuda else auto_cpu_workers()
            threads = threads or (0 if cuda else 1)
        result = replace(
            self, device=str(device), workers=workers, threads=threads,
            ensemble_size=self.ensemble_size or (AUTO_ENSEMBLE_CUDA if cuda else AUTO_ENSEMBLE_CPU),
            # default_mode returns exact or fused (checked again by __post_init__)
            ensemble_mode=self.ensemble_mode or cast(EnsembleMode, default_mode(device)),
        )
        object.__setattr__(result, "is_resolved", True)
        return result


__all__ = ["AUTO_ENSEMBLE_CPU", "AUTO_ENSEMBLE_CUDA", "CHECKPOINT_SECONDS", "MAX_AUTO_WORKERS", "MAX_RETRIES",
           "RunOptions", "auto_cpu_workers"]
