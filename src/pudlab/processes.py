"""Child processes that never outlive their parent, and a two-stage Ctrl-C.

``die_with_parent`` runs first in every worker process pudlab spawns (experiment pools, the PoL and
FL pools): on Linux it asks the kernel to SIGKILL the worker when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), and on every platform a daemon thread polls the parent's PID and
exits when the worker has been re-parented. Whatever kills the driver (``kill -9``, the OOM killer),
its workers follow within ``PARENT_WATCH_SECONDS``. It also points the worker's stdin/stdout/stderr
at ``/dev/null``, so that a worker never keeps the parent's output pipe open (a script capturing
pudlab's output sees EOF when the driver exits).

``graceful_interrupt`` is the driver's Ctrl-C: the first SIGINT asks every training loop to stop at
its next safe point (after a step, with a checkpoint written), the second exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from pudlab.errors import PudlabError

PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal a process gets when its parent thread dies."""
PARENT_WATCH_SECONDS = 0.5
"""How often a worker's watch thread checks that its parent is alive (fallback to prctl)."""
INTERRUPT_EXIT_CODE = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""

_STOP = threading.Event()


class InterruptedRun(PudlabError):
    """A run stopped by Ctrl-C at a safe point; finished work is kept."""

    exit_code = INTERRUPT_EXIT_CODE


def stop_requested() -> bool:
    """True once this process was asked (Ctrl-C, SIGINT from its driver) to stop at the next safe point."""
    return _STOP.is_set()


def request_stop() -> None:
    _STOP.set()


def clear_stop() -> None:
    _STOP.clear()


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol: the watch thread still covers it
        pass


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_WATCH_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)


def wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` exits: a pidfd where the platform has one (woken at once, immune
    to PID reuse), else a liveness poll every ``PARENT_WATCH_SECONDS``."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        select.select([handle], [], [])
        return
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(PARENT_WATCH_SECONDS)


def _watch_ancestor(pid: int) -> None:
    """Exit when ``pid`` (not our parent, e.g. the client of a fork server) exits."""
    wait_for_exit(pid)
    os._exit(1)


def detach_output() -> None:
    """Point fds 0, 1 and 2 at /dev/null (the parent's terminal or pipe is no longer held)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def die_with_parent(parent_pid: int | None = None, *, detach: bool = True, stop_on_sigint: bool = True) -> None:
    """Make this (child) process exit when ``parent_pid`` (default: its current parent) dies; it may
    be an ancestor (the client of the fork server that forked this process, see :func:`pool_context`),
    followed then through a pidfd.

    ``detach``: release the parent's stdin/stdout/stderr. ``stop_on_sigint``: SIGINT sets
    :func:`stop_requested` instead of raising KeyboardInterrupt (the training loops then stop at a
    safe point and the driver collects what finished).
    """
    parent = os.getppid()
    _set_parent_death_signal()
    followed = parent if parent_pid is None else int(parent_pid)
    # an ancestor: our parent is a fork server, which outlives its client while we hold its pipe
    target = _watch_parent if followed == parent else _watch_ancestor
    watch = threading.Thread(target=target, args=(followed,), daemon=True, name="pudlab-parent-watch")
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    watch.start()
    if detach:
        detach_output()
    if stop_on_sigint:
        signal.signal(signal.SIGINT, lambda *_: request_stop())


def pool_context(preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    """The multiprocessing context for worker pools (their workers pass this process's PID to
    :func:`die_with_parent`).

    Where the platform has it, a fork server that has imported ``preload`` (e.g. torch and the worker
    module) once: a new worker is a fork of it and starts in milliseconds instead of importing torch
    again (seconds per worker and per pool restart). Its workers follow this process through a pidfd
    (their parent is the fork server); the fork server exits once this process and its workers are
    gone (it reads EOF on a pipe they hold). Elsewhere: ``spawn``.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        if preload:
            context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


def release_semaphores() -> int:
    """Unlink this process's named multiprocessing semaphores now (a pool's queues hold five), as a normal
    exit would: a process that leaves by ``os._exit`` then leaves none behind for the resource tracker to
    clean up and warn about ("leaked semaphore objects"). Returns how many were released."""
    from multiprocessing import synchronize, util

    released = 0
    for finalizer in list(getattr(util, "_finalizer_registry", {}).values()):
        if getattr(finalizer, "_callback", None) is synchronize.SemLock._cleanup:  # type: ignore[attr-defined]
            finalizer()  # sem_unlink + unregister from the tracker, once
            released += 1
    return released


@contextlib.contextmanager
def graceful_interrupt(on_first: Callable[[], None] | None = None,
                       message: str = "stopping at the next safe point (Ctrl-C again to exit at once)"
                       ) -> Iterator[None]:
    """While the block runs: first SIGINT -> :func:`request_stop` (+ ``on_first``, e.g. forward to
    workers) and ``message`` on stderr; second SIGINT -> exit at once (status 130). Main thread only;
    elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear_stop()

    def handle(signum: int, frame: object) -> None:
        if _STOP.is_set():
            release_semaphores()  # os._exit skips that cleanup: the resource tracker would warn of leaks
            os._exit(INTERRUPT_EXIT_CODE)
        request_stop()
        try:
            os.write(2, f"\n{message}\n".encode())
        except OSError:
            pass
        if on_first is not None:
            on_first()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
