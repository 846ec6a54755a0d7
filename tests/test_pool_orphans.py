"""The FL simulation's process pool dies with its parent, whatever kills the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import wait_until


def _children(pid: int) -> list[int]:
    result = subprocess.run(["ps", "-eo", "pid,ppid,cmd", "-ww"], capture_output=True, text=True, check=True)
    found = []
    for line in result.stdout.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == str(pid) and "spawn_main" in parts[2]:
            found.append(int(parts[0]))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


@pytest.mark.slow
def test_fl_defence_workers_die_with_a_killed_parent(tmp_path):
    command = [sys.executable, "-m", "pudlab.cli", "fl", "simulate", "mnist5k_noniid", "--store", str(tmp_path / "s"),
               "--defence", "all", "--workers", "2", "--rounds", "50", "--no-report"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []

    def two_workers() -> bool:
        workers[:] = _children(parent.pid)
        return len(workers) >= 2

    try:
        assert wait_until(two_workers, 120, interval=0.5), "the simulation never started its worker processes"
        # each worker saves its defence's round 0 before training round 1: then both are into training
        assert wait_until(lambda: len(list((tmp_path / "s").glob("*/progress.json"))) >= 2, 300), \
            "the workers never saved a round"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until(lambda: not any(_alive(pid) for pid in workers), 5)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"worker processes outlived their killed parent: {survivors}"
