"""The Ray executor: same weights as local, worker death retried, driver kill resumes, failures isolated."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from pudlab.experiments.options import RunOptions  # noqa: E402
from pudlab.experiments.runner import run_jobs  # noqa: E402
from pudlab.experiments.store import Store  # noqa: E402
from pudlab.experiments.sweep import plan_sweep, prepare_sweep, run_sweep  # noqa: E402

from .conftest import write_npz_dataset  # noqa: E402
from .test_experiments import SWEEP, _done_count, _pudlab, _weights_by_key, tiny_preset  # noqa: E402
from .test_reliability import _tagged  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _options(executor, **extra):
    return RunOptions(workers=2, threads=1, progress=False, ensemble_size=1, executor=executor, **extra)


def _sweep(store, preset, datasets, options):
    return run_sweep(store, prepare_sweep(["exp4"], datasets, preset, options), options)


def test_ray_gives_the_local_weights_and_isolates_failures(tmp_path, npz_dataset, local_ray):
    preset = tiny_preset()
    with Store(tmp_path / "local") as store:
        _sweep(store, preset, [npz_dataset], _options("local"))
    with Store(tmp_path / "ray") as store:
        summary = _sweep(store, preset, [npz_dataset], _options("ray", ray_ship_data=True))
        assert summary.failed == 0
    assert _weights_by_key(tmp_path / "ray") == _weights_by_key(tmp_path / "local")
    # the jobs of a dataset whose file changed after planning fail inside pudlab; the others still train
    changing = write_npz_dataset(tmp_path / "changing.npz", seed=1)
    with Store(tmp_path / "broken") as store:
        planned = plan_sweep(store, prepare_sweep(["exp4"], [npz_dataset, str(changing)], preset))
        write_npz_dataset(changing, seed=2)
        summary = run_jobs(store, planned.job_keys, _options("ray"))
        victims = {key for key in planned.job_keys if store.job(key).source_name == str(changing)}
    assert victims and set(summary.failures) == victims
    assert all("fingerprint" in error for error in summary.failures.values())
    assert summary.trained == len(planned.job_keys) - len(victims)


def test_ray_worker_killed_mid_task_is_retried(tmp_path, npz_dataset, local_ray):
    preset = tiny_preset(epochs=3)
    with Store(tmp_path / "local") as store:
        _sweep(store, preset, [npz_dataset], _options("local"))
    killed = []

    def kill_a_worker():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
            busy = [int(line.split()[0]) for line in out.splitlines() if "ray::_run_unit" in line]
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    with Store(tmp_path / "ray") as store:
        summary = _sweep(store, preset, [npz_dataset], _options("ray"))
    killer.join()
    assert killed, "no Ray worker was seen running a unit"
    assert summary.failed == 0
    assert _weights_by_key(tmp_path / "ray") == _weights_by_key(tmp_path / "local")


def test_ray_driver_killed_then_resumed(tmp_path, npz_dataset):
    store = tmp_path / "store"
    command = _pudlab(*SWEEP, "--dataset", npz_dataset, "--store", str(store), "--executor", "ray", "--workers", "2")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PUDLAB_TEST_TAG": "ray-driver"})
    deadline = time.time() + 180
    while _done_count(store / "pudlab.sqlite") < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the sweep finished before it could be interrupted"
    with sqlite3.connect(store / "pudlab.sqlite") as db:
        before = dict(db.execute("SELECT key, finished FROM jobs WHERE status = 'done'").fetchall())
    process.kill()  # the driver alone: Ray's processes and helpers must follow it
    process.communicate(timeout=60)  # EOF: nothing holds the driver's output
    deadline = time.time() + 5
    while _tagged("ray-driver") and time.time() < deadline:
        time.sleep(0.1)
    assert not _tagged("ray-driver"), "a process of the local Ray instance outlived its driver by 5 s"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(store / "pudlab.sqlite") as db:
        after = dict(db.execute("SELECT key, finished FROM jobs WHERE status = 'done'").fetchall())
    assert all(after[key] == stamp for key, stamp in before.items()), "a finished job was redone"
    reference = tmp_path / "reference"
    subprocess.run(_pudlab(*SWEEP, "--dataset", npz_dataset, "--store", str(reference)), check=True, capture_output=True)
    assert _weights_by_key(store) == _weights_by_key(reference)


def test_missing_ray_is_a_clear_error(monkeypatch):
    from pudlab.errors import PudlabError
    from pudlab.experiments import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(PudlabError, match=r"pip install 'pudlab\[ray\]'"):
        ray_executor.RayExecutor(_options("ray").resolved())
