"""Clean up after helpers that do not follow their parent: a local Ray instance's processes.

``ray.init()`` starts a local Ray instance inside the driver; when the driver is killed (``kill -9``,
the OOM killer) Ray's raylet and workers go with it, but some of its helper processes (the dashboard
and runtime-env agents) were seen alive a minute later. So before it starts a local instance the
Ray executor starts a reaper (:func:`start`): a small process in its own session that keeps a list
of the driver's descendants while the driver lives and, once it has exited, kills those still alive
and every process that carries the driver's tag in its environment (Ray passes the driver's
environment to its processes, but a process title may overwrite it). Linux only (it reads
``/proc``); a no-op elsewhere.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TAG_VARIABLE = "PUDLAB_REAP_TAG"
"""The environment variable that marks the processes to reap."""
ROUNDS = 20
ROUND_SECONDS = 0.25
"""How often the reaper looks at the process table; after the driver exits it kills what it finds at
most ``ROUNDS`` times, and stops after two rounds that find nothing."""
READY_SECONDS = 10.0
"""Longest :func:`start` waits for the reaper's first look at the process table."""


def available() -> bool:
    return sys.platform.startswith("linux") and Path("/proc/self/environ").exists()


def start(tag: str) -> subprocess.Popen | None:
    """Start a reaper for this process and ``tag``; the caller then exports ``TAG_VARIABLE=tag`` to the
    processes it starts (and only to them). None where reaping is not available.

    Returns once the reaper has looked at the process table (or after ``READY_SECONDS``): every
    descendant this process has by then is known to it; later ones are found within ``ROUND_SECONDS``.
    """
    if not available():
        return None
    environment = {name: value for name, value in os.environ.items() if name != TAG_VARIABLE}
    process = subprocess.Popen([sys.executable, "-m", "pudlab.reaper", str(os.getpid()), tag], env=environment,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               close_fds=True, start_new_session=True)
    if process.stdout is not None:
        with process.stdout:  # a line after the first look, or EOF if the reaper failed to start
            select.select([process.stdout], [], [], READY_SECONDS)
    return process


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, start time), from ``/proc/<pid>/stat``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _tagged(tag: str, pids: list[int]) -> set[int]:
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found = set()
    for pid in pids:
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    return found


def _descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    found, frontier = set(), set(roots)
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier and pid not in found}
        found |= frontier
    return found


def reap(pid: int, tag: str, on_first_look: Callable[[], None] | None = None) -> int:
    """Follow ``pid``'s descendants while it lives; once it exits, SIGKILL those still alive (same
    start time: no reused PID is hit) and every process tagged ``tag``, until none is left. Returns
    how many processes were killed. ``on_first_look`` runs once the first descendants are recorded."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    known: dict[int, str] = {}
    while True:  # remember the driver's descendants (Ray re-parents some helpers) until it exits
        table = _processes()
        if pid not in table:
            break
        known.update({child: table[child][1] for child in _descendants({pid}, table) if child != os.getpid()})
        if on_first_look is not None:
            on_first_look()
            on_first_look = None
        if handle is not None:
            if select.select([handle], [], [], ROUND_SECONDS)[0]:
                break
        else:
            time.sleep(ROUND_SECONDS)
    killed, quiet = 0, 0
    for _ in range(ROUNDS):
        table = _processes()
        alive = {child for child, start in known.items() if child in table and table[child][1] == start}
        targets = (alive | _descendants(alive, table) | _tagged(tag, list(table))) - {os.getpid()}
        for target in targets:
            try:
                os.kill(target, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        quiet = 0 if targets else quiet + 1
        if quiet >= 2:
            break
        time.sleep(ROUND_SECONDS)
    return killed


def _tell_starter() -> None:
    """Tell :func:`start` (reading our stdout) that the first look is done."""
    try:
        os.write(sys.stdout.fileno(), b"ready\n")
    except (OSError, ValueError):  # the starter stopped waiting, or there is no stdout: nothing to tell
        pass


if __name__ == "__main__":
    reap(int(sys.argv[1]), sys.argv[2], _tell_starter)
