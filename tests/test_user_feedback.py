"""Commands say what happened (issue 25): abandoned vs running jobs, compare's configuration warning and
short listing, a store of another schema, train's first line and Ctrl-C, read-only folders, no leaked
semaphores after a second Ctrl-C, no empty folder after a failed fetch, per-repeat value columns."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pudlab.errors import PudlabError, StoreError
from pudlab.experiments.store import Store, writer_holder
from tests._report_store import small_store
from tests.conftest import write_npz_dataset


def _pudlab(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return small_store(tmp_path_factory.getbasetemp() / "shared_store")


# ---------------------------------------------------------------------------------------- status
def _store_with_a_running_job(root: Path) -> None:
    with Store(root):
        pass
    with sqlite3.connect(root / "pudlab.sqlite") as db:
        db.execute("INSERT INTO jobs (key, spec, status, created) VALUES ('k', '{}', 'running', 0)")


def test_status_calls_a_job_without_a_writer_abandoned(tmp_path):
    root = tmp_path / "s"
    _store_with_a_running_job(root)
    assert writer_holder(root) is None
    text = _pudlab("status", str(root)).stdout
    data = json.loads(_pudlab("status", str(root), "--json").stdout)
    assert "0 running" in text and "1 abandoned" in text and "rerun the same command to resume" in text
    assert data["counts"]["abandoned"] == 1 and data["counts"]["running"] == 0 and data["writer"] is None


def test_status_calls_a_job_running_while_its_writer_holds_the_store(tmp_path):
    root = tmp_path / "s"
    _store_with_a_running_job(root)
    code = (f"import time\nfrom pudlab.experiments.store import Store\ns = Store({str(root)!r})\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert f"pid {holder.pid}" in (writer_holder(root) or "")
        text = _pudlab("status", str(root)).stdout
        assert "1 running" in text and "abandoned" not in text and f"pid {holder.pid}" in text
    finally:
        holder.kill()
        holder.wait()
    assert writer_holder(root) is None  # the OS released the lock of the killed holder


def test_a_probing_reader_does_not_make_a_writer_fail(tmp_path):
    root = tmp_path / "s"
    with Store(root):
        pass
    for _ in range(20):  # writer_holder takes the lock for microseconds; a writer retries meanwhile
        assert writer_holder(root) is None
        with Store(root) as store:
            assert writer_holder(root) is not None and store.status_counts()["done"] == 0


# ---------------------------------------------------------------------------------------- schema
@pytest.mark.parametrize(("version", "advice"), [("0", "written by an older pudlab; run the experiments again "
                                                        "into a new --store"),
                                                 ("2", "written by a newer pudlab; upgrade pudlab")])
def test_another_schema_says_what_to_do(tmp_path, version, advice):
    root = tmp_path / "s"
    with Store(root) as store:
        store.set_meta("schema_version", version)
    with pytest.raises(StoreError, match=f"store schema {version}, this pudlab reads schema 1: {advice}"):
        Store(root, read_only=True)
    result = _pudlab("status", str(root))
    assert result.returncode == 1 and advice in result.stderr and result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------- compare
def test_compare_warns_of_another_configuration_and_counts_one_sided_points(store_dir, tmp_path):
    """B's exp3 ran with other epochs and its series moved to a plan A does not have: a warning names both,
    and the points each store has alone are counted per plan instead of listed (--all lists them)."""
    other = tmp_path / "other"
    shutil.copytree(store_dir, other)
    with sqlite3.connect(other / "pudlab.sqlite") as db:
        plan, preset = db.execute("SELECT id, preset FROM plans WHERE experiment = 'exp3'").fetchone()
        db.execute("INSERT INTO plans SELECT id || '-b', experiment, dataset, spec, ?, source, updated FROM plans "
                   "WHERE id = ?", (json.dumps({**json.loads(preset), "epochs": 7}), plan))
        db.execute("UPDATE series SET plan = plan || '-b' WHERE plan = ?", (plan,))
        db.execute("DELETE FROM plans WHERE id = ?", (plan,))
        points = db.execute("SELECT COUNT(*) FROM series WHERE plan = ?", (plan + "-b",)).fetchone()[0]
    result = _pudlab("compare", "--no-weights", str(store_dir), str(other))
    assert result.returncode == 0, result.stderr
    assert "warning: the runs differ in epochs: A 2, B [2, 7]" in result.stderr
    assert "warning: the runs differ in plans:" in result.stderr
    lines = result.stdout.splitlines()
    assert f"series only in B: {points} points in 1 plan(s) ({plan}-b); --all lists them" in lines
    assert f"series only in A: {points} points in 1 plan(s) ({plan}); --all lists them" in lines
    assert not any(line.endswith("diff -") for line in lines)  # no one-sided rows without --all
    assert len(lines) < 20, lines
    listed = _pudlab("compare", "--no-weights", "--all", str(store_dir), str(other)).stdout.splitlines()
    assert len([line for line in listed if line.endswith("diff -")]) >= 2 * points
    same = json.loads(_pudlab("compare", "--no-weights", "--json", str(store_dir), str(store_dir)).stdout)
    assert same["configuration"] == []
    assert "configuration: the same preset settings and plans" in _pudlab("compare", "--no-weights", str(store_dir),
                                                                          str(store_dir)).stdout


# ---------------------------------------------------------------------------------------- values
def test_series_values_are_number_columns(store_dir, tmp_path):
    assert _pudlab("export", str(store_dir), "--out", str(tmp_path), "--table", "series").returncode == 0
    rows = list(csv.DictReader(open(tmp_path / "series.csv")))
    assert "values" not in rows[0] and {"value_1", "value_2"} <= set(rows[0])
    accuracy = next(row for row in rows if row["series"] == "A(W_1,1)" and row["x"] == "0.0")
    mean = (float(accuracy["value_1"]) + float(accuracy["value_2"])) / 2
    assert mean == pytest.approx(float(accuracy["mean"]))
    pandas = pytest.importorskip("pandas")
    import pudlab

    with pudlab.open_store(store_dir) as results:
        series = results.series()
    assert "values" not in series.columns and pandas.api.types.is_float_dtype(series["value_1"])


# ---------------------------------------------------------------------------------------- train
def _until_line(process: subprocess.Popen, needle: str) -> str:
    seen = ""
    for line in process.stderr:
        seen += line
        if needle in line:
            return seen
    return seen


def test_train_says_what_it_does_and_ctrl_c_is_one_line(tmp_path):
    dataset = write_npz_dataset(tmp_path / "tiny.npz", num=2000)
    process = subprocess.Popen(
        [sys.executable, "-m", "pudlab.cli", "train", str(dataset), "--epochs", "500", "--widths", "4,4,4",
         "--hidden", "8", "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = threading.Timer(180, process.kill)  # a command that never says it: no hang
    deadline.start()
    try:
        first = _until_line(process, "advances once per epoch")
        assert "500 epoch(s) in batches of 128 on cpu" in first, first
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        deadline.cancel()
        process.kill()
    assert process.returncode == 130
    assert "error: interrupted (Ctrl-C): nothing was written to" in rest and "Aborted!" not in rest
    assert not (tmp_path / "run").exists()


def test_ctrl_c_in_any_command_is_one_line():
    from pudlab.cli._common import PudlabGroup

    @click.group(cls=PudlabGroup)
    def root() -> None:
        pass

    @root.command("slow")
    def slow() -> None:
        raise KeyboardInterrupt

    result = CliRunner().invoke(root, ["slow"], prog_name="pudlab")
    assert result.exit_code == 130 and "Aborted" not in result.output
    assert result.output.strip() == ("error: pudlab slow: interrupted (Ctrl-C); files are written whole or not at all, "
                                     "so nothing half-written was left")


# ---------------------------------------------------------------------------------------- read-only folders
def test_an_unwritable_folder_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    from pudlab.io import write_bytes_atomic

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", f"{dir}/.k.bin.l5use8qn.tmp")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PudlabError) as raised:
        write_bytes_atomic(tmp_path / "k.bin", b"x")
    assert str(raised.value) == f"{tmp_path}: cannot write k.bin there (Permission denied); choose a writable folder"


def _read_only(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with ``folder`` not writable: by its mode for a user, a read-only bind mount for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: no way to make a folder read-only")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), *command], capture_output=True,
                            text=True)
    if "mount" in result.stderr and "error" not in result.stderr:
        pytest.skip(f"cannot mount read-only here: {result.stderr.strip()}")
    return result


@pytest.mark.parametrize("what", ["obfuscate", "run into it", "run below it"])
def test_read_only_folder_is_one_line_naming_it(tmp_path, what):
    dataset = write_npz_dataset(tmp_path / "tiny.npz", num=200)
    locked = tmp_path / "locked"
    locked.mkdir()
    command = [sys.executable, "-m", "pudlab.cli"]
    if what == "obfuscate":
        command += ["obfuscate", str(dataset), "--sigma", "0.1", "--out", str(locked / "release.npz")]
    else:
        store = locked if what == "run into it" else locked / "store"
        command += ["run", "exp1", "--store", str(store), "--datasets", str(dataset), "--epochs", "1", "--no-progress"]
    result = _read_only(locked, command)
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {locked}") and ".tmp" not in error and "pudlab.lock" not in error
    assert "Traceback" not in result.stderr and "choose a writable" in error


# ---------------------------------------------------------------------------------------- semaphores
SEMAPHORES = """
import multiprocessing, os, signal, sys, time
from pudlab.processes import graceful_interrupt
queue = multiprocessing.get_context("spawn").Queue()  # named semaphores, registered with the tracker
if sys.argv[1] == "exit":
    os._exit(130)
with graceful_interrupt():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C: exit at once
    time.sleep(10)
"""


def test_second_ctrl_c_leaves_no_semaphore_for_the_resource_tracker():
    bare = subprocess.run([sys.executable, "-c", SEMAPHORES, "exit"], capture_output=True, text=True, timeout=60)
    assert "leaked semaphore" in bare.stderr  # the control: os._exit alone leaves them, and the tracker says so
    result = subprocess.run([sys.executable, "-c", SEMAPHORES, "twice"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and "leaked" not in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------- fetch
def test_failed_fetch_leaves_no_empty_folder(tmp_path):
    data_dir = tmp_path / "data"
    result = _pudlab("--data-dir", str(data_dir), "datasets", "fetch", "mnist", "--mirror", "http://127.0.0.1:9/")
    assert result.returncode == 1 and "could not download" in result.stderr
    assert not data_dir.exists()
    data_dir.mkdir()
    (data_dir / "mnist").mkdir()  # folders that were there before are kept
    _pudlab("--data-dir", str(data_dir), "datasets", "fetch", "mnist", "--mirror", "http://127.0.0.1:9/")
    assert (data_dir / "mnist").is_dir()
