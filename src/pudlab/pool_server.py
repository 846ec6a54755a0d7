"""The fork server of pudlab's experiment worker pools.

A worker pool (:func:`pudlab.processes.pool_context`) forks its workers from one server process that
has imported torch and pudlab's training modules once, instead of spawning every worker to import
them again (about 5 s per worker on 2 cores, and again after every pool restart, e.g. when a sweep
resumes). multiprocessing imports :data:`EXPERIMENT_PRELOAD` in that server; this module comes
first, so that the server follows the process that started it (it exits with it, whatever killed
it, and removes its socket folder ``pymp-*`` that a killed driver would leave in the temp folder),
never holds that process's output open, and ignores Ctrl-C (its workers handle it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

from pudlab.processes import detach_output, pool_context, wait_for_exit

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


def _fork_server_listener() -> int | None:
    """The listening socket's fd while multiprocessing's fork server imports its preload modules;
    None everywhere else (this module imported as a library)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return frame.f_locals.get("listener_fd")
        frame = frame.f_back
    return None


def _socket_folder(listener_fd: int) -> Path | None:
    """The ``pymp-*`` folder that holds the fork server's socket (bound by the driver before it started us)."""
    try:
        with socket.socket(socket.AF_UNIX, fileno=os.dup(listener_fd)) as listener:
            address = listener.getsockname()
    except OSError:
        return None
    folder = Path(address).parent if isinstance(address, str) and address else None
    return folder if folder is not None and folder.name.startswith("pymp-") else None


def _follow(driver: int, folder: Path | None) -> None:
    """In the fork server: once ``driver`` exits, remove the server's socket folder, then exit."""
    wait_for_exit(driver)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)


def _serve_as_fork_server(listener_fd: int) -> None:
    driver = os.getppid()
    threading.Thread(target=_follow, args=(driver, _socket_folder(listener_fd)), daemon=True,
                     name="pudlab-driver-watch").start()
    if os.getppid() != driver:  # the driver died before the watch started
        os._exit(0)
    detach_output()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_LISTENER = _fork_server_listener()
if _LISTENER is not None:
    _serve_as_fork_server(_LISTENER)
