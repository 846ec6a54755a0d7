"""Sweeps that survive anything: checkpoints that resume bit-identically, one writer per store, read-only
readers, workers that die with their driver, Ctrl-C at a safe point, disk full, random SIGKILLs."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pudlab.errors import StoreError
from pudlab.experiments.options import RunOptions
from pudlab.experiments.spec import load_preset
from pudlab.experiments.store import Store
from pudlab.experiments.sweep import prepare_sweep, run_sweep
from pudlab.model import ModelConfig, initial_state
from pudlab.train.ensemble import train_ensemble
from pudlab.train.trainer import Checkpointing, TrainConfig, TrainingInterrupted, train_model
from tests.conftest import make_images, wait_until

MODEL = ModelConfig((1, 12, 12), (2, 2, 4), 8, 10)
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=3e-3, shuffle_seed=5)
STEPS = 5  # per epoch: 150 samples at batch size 32


def _stop_after(steps: int):
    count = {"n": 0}

    def should_stop() -> bool:
        count["n"] += 1
        return count["n"] >= steps

    return should_stop


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


# ------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_interval_bounds_the_time_spent_saving(tmp_path, monkeypatch):
    """Saves come every_seconds apart, or 20x their own duration apart when saving is slow."""
    from pudlab.train import trainer

    clock = {"now": 100.0}
    monkeypatch.setattr(trainer.time, "monotonic", lambda: clock["now"])
    saved = []
    checkpoint = Checkpointing(tmp_path / "c.pt", every_seconds=3.0, _last=clock["now"])
    checkpoint.save = lambda state: (saved.append(clock["now"]), setattr(checkpoint, "_last", clock["now"]),
                                     setattr(checkpoint, "_cost", 0.5))  # a save that takes 0.5 s
    for _ in range(40):  # one step per second
        clock["now"] += 1.0
        checkpoint.after_step(dict)
    assert saved[0] == 103.0  # the first save is due after every_seconds
    assert all(b - a >= 10.0 for a, b in zip(saved, saved[1:], strict=False))  # then 0.5 s / 5 % = 10 s apart
    fast = Checkpointing(tmp_path / "d.pt", every_seconds=0.0)
    fast._cost = 1.0
    assert fast.interval() == 0.0  # every_seconds 0: after every step, whatever a save costs


@pytest.mark.parametrize("stop_at", [1, 5, 9])  # 5: right after the last step of epoch 1, before its eval
def test_single_resume_is_bit_identical(tmp_path, stop_at):
    train, evaluation = make_images(150, seed=1), make_images(60, seed=2)
    initial = initial_state(MODEL, init_seed=0)
    reference = train_model(train, evaluation, MODEL, initial, CONFIG)
    # saving after every step must not change the result
    every = Checkpointing(tmp_path / "every.pt", 0.0, identity="x")
    assert _same(train_model(train, evaluation, MODEL, initial, CONFIG, checkpoint=every).weights, reference.weights)
    assert every.saves == 2 * STEPS
    path = tmp_path / "ck.pt"
    with pytest.raises(TrainingInterrupted):
        train_model(train, evaluation, MODEL, initial, CONFIG,
                    checkpoint=Checkpointing(path, 3600, identity="x", should_stop=_stop_after(stop_at)))
    resumed_from = Checkpointing(path, 3600, identity="x")
    resumed = train_model(train, evaluation, MODEL, initial, CONFIG, checkpoint=resumed_from)
    expected = divmod(stop_at, STEPS) if stop_at % STEPS else (stop_at // STEPS - 1, STEPS)
    assert resumed_from.resumed_at == expected
    assert _same(resumed.weights, reference.weights)
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in reference.history]
    # a checkpoint of something else is ignored (a fresh start)
    other = Checkpointing(path, 3600, identity="y")
    assert _same(train_model(train, evaluation, MODEL, initial, CONFIG, checkpoint=other).weights, reference.weights)
    assert other.resumed_at is None


@pytest.mark.parametrize("mode", ["exact", "fused"])
def test_ensemble_resume_is_bit_identical(tmp_path, mode):
    sets = [make_images(n, seed=s) for s, n in ((1, 150), (2, 140), (3, 150))]
    evaluation = make_images(60, seed=9)
    initial = initial_state(MODEL, init_seed=0)
    configs = [TrainConfig(epochs=2, batch_size=32, lr=3e-3, shuffle_seed=s) for s in (1, 2, 3)]
    reference = train_ensemble(sets, evaluation, MODEL, initial, configs, mode=mode)
    path = tmp_path / "ck.pt"
    for stop_at in (3, 4):  # interrupted twice, resumed each time
        with pytest.raises(TrainingInterrupted):
            train_ensemble(sets, evaluation, MODEL, initial, configs, mode=mode,
                           checkpoint=Checkpointing(path, 3600, identity="e", should_stop=_stop_after(stop_at)))
    resumed = train_ensemble(sets, evaluation, MODEL, initial, configs, mode=mode,
                             checkpoint=Checkpointing(path, 0.0, identity="e"))
    for a, b in zip(resumed, reference, strict=True):
        assert _same(a.weights, b.weights)
        assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]


# --------------------------------------------------------------------------------------- the lock
def _holder(root: Path, seconds: float) -> subprocess.Popen:
    code = (f"import sys,time\nfrom pudlab.experiments.store import Store\ns = Store({str(root)!r})\n"
            f"print('held', flush=True)\ntime.sleep({seconds})\ns.close()\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_second_writer_is_refused_then_lock_dies_with_its_holder(tmp_path):
    root = tmp_path / "s"
    holder = _holder(root, 60)
    try:
        with pytest.raises(StoreError, match=rf"in use by another writer \(pid {holder.pid} on .*, started 20"):
            Store(root)
        result = subprocess.run([sys.executable, "-m", "pudlab.cli", "status", str(root)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr  # a reader is never blocked
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with Store(root) as store:  # the OS released the lock of the killed holder: no stale lock
        assert store.status_counts()["done"] == 0


def test_cli_second_writer_one_line_and_wait(tmp_path, npz_dataset):
    root = tmp_path / "s"
    holder = _holder(root, 600)
    try:
        args = [sys.executable, "-m", "pudlab.cli", "run", "exp1", "--dataset", npz_dataset, "--store", str(root),
                "--epochs", "1", "--widths", "2,2,4", "--hidden", "8", "--sigmas", "0", "--workers", "1",
                "--threads", "1", "--no-progress"]
        refused = subprocess.run(args, capture_output=True, text=True)
        assert refused.returncode == 1
        assert refused.stderr.strip().count("\n") == 0 and f"pid {holder.pid}" in refused.stderr
        log = tmp_path / "wait.log"
        with open(log, "w") as handle:
            waiting = subprocess.Popen([*args, "--wait"], stdout=subprocess.DEVNULL, stderr=handle)
        deadline = time.monotonic() + 120
        while "waiting for the writer" not in log.read_text() and time.monotonic() < deadline:
            assert waiting.poll() is None, log.read_text()
            time.sleep(0.1)
        holder.kill()
        assert waiting.wait(timeout=300) == 0, log.read_text()
    finally:
        holder.kill()
        holder.wait()


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_readers_never_write(tmp_path, npz_dataset):
    preset = load_preset("quick").with_overrides(epochs=1, widths=(2, 2, 4), hidden=8, sigmas=(0.0, 1.0),
                                                  batch_size=32, repeats=1)
    options = RunOptions(workers=1, threads=1, progress=False)
    with Store(tmp_path / "s") as store:
        run_sweep(store, prepare_sweep(["exp1"], [npz_dataset], preset, options), options)
    before = _tree(tmp_path / "s")
    for args in (["status", str(tmp_path / "s")], ["status", str(tmp_path / "s"), "--json"],
                 ["plot", str(tmp_path / "s"), "--out", str(tmp_path / "figures")],
                 ["report", str(tmp_path / "s"), "--out", str(tmp_path / "report")]):
        result = subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert _tree(tmp_path / "s") == before
    html = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and (tmp_path / "report" / "figures").is_dir()
    for line in (tmp_path / "report" / "report.md").read_text().splitlines():  # every image link resolves
        if line.startswith("!["):
            assert (tmp_path / "report" / line.split("](")[1].rstrip(")")).is_file(), line
    assert not (tmp_path / "s" / "pudlab.sqlite-wal").exists() or "pudlab.sqlite-wal" in before
    with Store(tmp_path / "s", read_only=True) as reader:  # also when a writer holds the lock
        with Store(tmp_path / "s"):
            assert reader.status_counts()["done"] > 0


def test_report_and_plot_on_a_read_only_store_point_to_out(tmp_path, npz_dataset, monkeypatch):
    """A store that cannot be written (read-only medium) gets one line naming --out, and nothing else."""
    from click.testing import CliRunner

    from pudlab.cli import _common, cli

    preset = load_preset("quick").with_overrides(epochs=1, widths=(2, 2, 4), hidden=8, sigmas=(0.0,),
                                                  batch_size=32, repeats=1)
    options = RunOptions(workers=1, threads=1, progress=False)
    with Store(tmp_path / "s") as store:
        run_sweep(store, prepare_sweep(["exp1"], [npz_dataset], preset, options), options)
    before = _tree(tmp_path / "s")
    monkeypatch.setattr(_common.os, "access", lambda path, mode: not mode & os.W_OK)  # readable, not writable
    for command in ("report", "plot", "export"):
        result = CliRunner().invoke(cli, [command, str(tmp_path / "s")])
        assert result.exit_code != 0 and "not writable" in result.output and "--out" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert _tree(tmp_path / "s") == before


# ------------------------------------------------------------------------------- workers and signals
def test_child_dies_with_parent_and_releases_output(tmp_path):
    """SIGKILL a parent: its child (die_with_parent) exits, and the parent's output pipe reaches EOF."""
    ready = tmp_path / "child-ready"  # the child's output is detached: it says so with a file
    child = textwrap.dedent("""
        import os, sys, time
        from pathlib import Path
        from pudlab.processes import die_with_parent
        parent = int(sys.argv[1])
        die_with_parent(parent)
        Path(sys.argv[2]).touch()
        time.sleep(120)
    """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {child!r}, str(os.getpid()), {str(ready)!r}])
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    child_pid = int(process.stdout.readline())
    assert wait_until(ready.exists, 60), "the child never finished die_with_parent"
    process.kill()
    process.wait()
    started = time.monotonic()
    assert process.stdout.read() == ""  # EOF: the child does not hold the pipe
    while _alive(child_pid) and time.monotonic() - started < 5:
        time.sleep(0.1)
    assert not _alive(child_pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc")
@pytest.mark.parametrize("with_reaper", [True, False])
def test_reaper_kills_helpers_that_outlive_their_driver(tmp_path, with_reaper):
    """A driver starts a service that dies with it (as Ray's raylet does), and the service starts a
    helper that does not (as Ray's agents): SIGKILL the driver: with the reaper the helper is gone
    within 5 s; without it (negative control) it survives, re-parented."""
    service = textwrap.dedent("""
        import subprocess, sys, time
        from pudlab.processes import die_with_parent
        die_with_parent(detach=False, stop_on_sigint=False)
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(helper.pid, flush=True)
        time.sleep(120)
    """)
    driver = textwrap.dedent(f"""
        import subprocess, sys, time
        from pudlab import reaper
        service = subprocess.Popen([sys.executable, "-c", {service!r}], stdout=subprocess.PIPE, text=True)
        helper = service.stdout.readline().strip()
        if {with_reaper}:
            reaper.start("test-tag")  # returns once the reaper has seen the driver's descendants
        print(helper, flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True)
    helper_pid = int(process.stdout.readline())
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5
    while _alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    survived = _alive(helper_pid)
    if survived:
        os.kill(helper_pid, signal.SIGKILL)
    assert survived != with_reaper


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _tagged(tag: str) -> list[int]:
    """PIDs of live processes whose environment holds PUDLAB_TEST_TAG=tag."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"PUDLAB_TEST_TAG={tag}".encode() in environ.split(b"\0") and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


SWEEP = ["run", "exp3", "--epochs", "3", "--widths", "2,2,4", "--hidden", "8", "--sigmas", "0,0.25,0.5,0.75,1",
         "--threads", "1", "--ensemble-size", "4", "--no-progress", "--checkpoint-seconds", "0.2"]


def _weights(root: Path) -> dict[str, str]:
    """Job key -> SHA-256 of its finished weights (tensor content), each file loaded and verified."""
    with Store(root, read_only=True) as store:
        keys = [row["key"] for row in store.job_rows() if row["status"] == "done"]
        for key in keys:
            store.final_weights(key)  # the file is whole and matches the committed hash
        rows = store.db.execute("SELECT key, weights_sha256 FROM jobs WHERE status = 'done'").fetchall()
    return dict(rows)


def _env(tag: str) -> dict:
    return {**os.environ, "PUDLAB_TEST_TAG": tag}


@pytest.mark.slow
def test_ctrl_c_stops_at_a_safe_point_and_resumes(tmp_path, npz_dataset):
    reference, store = tmp_path / "reference", tmp_path / "s"
    # a checkpoint after every step: the first one shows that training runs (a unit of this tiny sweep
    # can finish within 0.2 s, before any timed checkpoint)
    args = [sys.executable, "-m", "pudlab.cli", *SWEEP[:-1], "0", "--dataset", npz_dataset, "--workers", "2"]
    subprocess.run([*args, "--store", str(reference)], check=True, capture_output=True)
    process = subprocess.Popen([*args, "--store", str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_env("ctrlc"))
    deadline = time.monotonic() + 60
    while not list((store / "checkpoints").glob("*.pt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    assert wait_until(lambda: not _tagged("ctrlc"), 5), "a worker outlived its interrupted driver by 5 s"
    subprocess.run([*args, "--store", str(store)], check=True, capture_output=True)
    assert _weights(store) == _weights(reference)


@pytest.mark.slow
def test_random_sigkills_of_the_driver(tmp_path, npz_dataset):
    """SIGKILL the driver at random moments (some while it saves); rerun each time. Nothing finished is
    lost or redone, the weights equal an uninterrupted run's, no worker survives its driver."""
    reference, store = tmp_path / "reference", tmp_path / "s"
    args = [sys.executable, "-m", "pudlab.cli", *SWEEP, "--dataset", npz_dataset, "--workers", "2"]
    subprocess.run([*args, "--store", str(reference)], check=True, capture_output=True)
    expected = _weights(reference)
    rng = random.Random(14)
    finished_at: dict[str, float] = {}
    temp = tmp_path / "tmp"  # the drivers' temp folder (torch keeps its compile cache there, on purpose)
    temp.mkdir()
    for attempt in range(12):
        tag = f"kill{attempt}"
        process = subprocess.Popen([*args, "--store", str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**_env(tag), "TMPDIR": str(temp)})
        try:
            process.wait(timeout=rng.uniform(1.5, 5.0))
            break  # finished before the kill
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)  # EOF: no worker holds the driver's output
        deadline = time.monotonic() + 5
        while _tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _tagged(tag), "a worker outlived its driver by 5 s"
        assert not list(temp.glob("pymp-*")), "a killed run left the fork server's socket folder behind"
        if (store / "pudlab.sqlite").exists():
            with sqlite3.connect(store / "pudlab.sqlite") as db:
                rows = dict(db.execute("SELECT key, finished FROM jobs WHERE status = 'done'").fetchall())
            for key, when in finished_at.items():
                assert rows.get(key) == when, "a finished job was lost or trained again"
            finished_at = rows
            got = _weights(store)
            assert all(expected[key] == sha for key, sha in got.items())
    final = subprocess.run([*args, "--store", str(store)], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert _weights(store) == expected
    assert not list((store / "checkpoints").glob("*")) and not list(store.rglob(".*.tmp"))


# ------------------------------------------------------------------------------------------ disk full
def test_disk_full_names_the_path_and_keeps_the_store_consistent(tmp_path, npz_dataset, monkeypatch):
    from pudlab.experiments import runner

    preset = load_preset("quick").with_overrides(epochs=1, widths=(2, 2, 4), hidden=8, sigmas=(0.0, 1.0),
                                                  batch_size=32, repeats=1)
    options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=1)
    with Store(tmp_path / "reference") as store:
        run_sweep(store, prepare_sweep(["exp1"], [npz_dataset], preset, options), options)
    real, calls = runner.write_bytes_atomic, {"n": 0}

    def full_after_two(path, data):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(runner, "write_bytes_atomic", full_after_two)
    with Store(tmp_path / "s") as store, pytest.raises(StoreError) as info:
        run_sweep(store, prepare_sweep(["exp1"], [npz_dataset], preset, options), options)
    message = str(info.value)
    assert "No space left on device" in message and str(tmp_path / "s") in message and "\n" not in message
    monkeypatch.setattr(runner, "write_bytes_atomic", real)
    with Store(tmp_path / "s") as store:
        done = [row for row in store.job_rows() if row["status"] == "done"]
        for row in done:
            store.final_weights(row["key"])  # every committed job's files are complete and verified
        run_sweep(store, prepare_sweep(["exp1"], [npz_dataset], preset, options), options)
    assert _weights(tmp_path / "s") == _weights(tmp_path / "reference")
    assert json.loads(json.dumps(calls))["n"] > 2
