"""The fork server of pudlab's experiment worker pools.

A worker pool (:func:`pudlab.processes.pool_context`) forks its workers from one server process that
has imported torch and pudlab's training modules once, instead of spawning every worker to import
them again (about 5 s per worker on 2 cores, and again after every pool restart, e.g. when a sweep
resumes). multiprocessing imports :data:`EXPERIMENT_PRELOAD` in that server; this module comes
first, so that the server follows the process that started it (it dies with it, whatever killed
it), never holds that process's output open, and ignores Ctrl-C (its workers handle it).
"""

from __future__ import annotations

import signal
import sys

from pudlab.processes import die_with_parent, pool_context

EXPERIMENT_PRELOAD = (__name__, "torch", "torch._dynamo", "pudlab.experiments.worker", "pudlab.train.ensemble",
                      "pudlab.data.sources")
"""What the fork server imports (torch's optimizers import ``torch._dynamo`` on first use: 2 s)."""


def start(preload: tuple[str, ...] = EXPERIMENT_PRELOAD) -> None:
    """Start the fork server now: it imports ``preload`` in the background while this process goes
    on (planning a sweep), so that the pool's workers start at once. No-op without fork servers."""
    context = pool_context(preload)
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _imported_by_fork_server() -> bool:
    """True while multiprocessing's fork server imports its preload modules (and only then)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back
    return False


if _imported_by_fork_server():
    die_with_parent(stop_on_sigint=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
