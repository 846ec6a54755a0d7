"""The sweep path: RunOptions (every default, one resolution), prepare_sweep -> run_sweep (resumable from a
prepared sweep), the Executor contract (local and Ray, Ctrl-C forwarded), the store-read API."""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import pudlab
from pudlab.errors import PudlabError, StoreError
from pudlab.experiments import runner
from pudlab.experiments.claims import claim_verdict, claims_by_dataset
from pudlab.experiments.executors import Executor, LocalExecutor, make_executor
from pudlab.experiments.jobs import job_training_set
from pudlab.experiments.options import RunOptions, auto_cpu_workers
from pudlab.experiments.ray_executor import RayExecutor
from pudlab.experiments.results import open_store
from pudlab.experiments.store import Store
from pudlab.experiments.sweep import plan_sweep, prepare_sweep, run_sweep
from pudlab.experiments.worker import JobOutcome, Unit
from pudlab.processes import InterruptedRun, clear_stop
from pudlab.train.run import training_set
from tests.test_experiments import _weights_by_key, tiny_preset

SERIAL = RunOptions(workers=1, threads=1, progress=False, ensemble_size=1)


def _as_cuda(monkeypatch) -> None:
    """Make RunOptions.resolved() see a CUDA device (no GPU needed: only the auto rules are under test)."""
    from pudlab.train import trainer

    monkeypatch.setattr(trainer, "resolve_device", lambda device: torch.device("cuda"))


# ------------------------------------------------------------------------------------------ run options
def test_run_options_defaults_are_the_command_line_defaults_on_cpu():
    resolved = RunOptions().resolved()
    assert resolved.is_resolved and not RunOptions().is_resolved
    assert (resolved.device, resolved.workers, resolved.threads) == ("cpu", auto_cpu_workers(), 1)
    assert (resolved.ensemble_size, resolved.ensemble_mode) == (8, "exact")
    assert resolved.resolved() is resolved  # resolved once: asking again changes nothing
    explicit = RunOptions(workers=2, ensemble_size=3, ensemble_mode="fused").resolved()
    assert (explicit.workers, explicit.threads, explicit.ensemble_size, explicit.ensemble_mode) == (2, 0, 3, "fused")
    assert explicit.threads_per_worker() == max(1, (os.cpu_count() or 1) // 2)


def test_run_options_auto_rules_on_cuda(monkeypatch):
    _as_cuda(monkeypatch)
    resolved = RunOptions(device="auto").resolved()
    assert (resolved.device, resolved.workers, resolved.threads) == ("cuda", 1, 0)
    assert (resolved.ensemble_size, resolved.ensemble_mode) == (32, "fused")
    assert resolved.threads_per_worker() == (os.cpu_count() or 1)


def test_only_a_local_cpu_pool_starts_the_fork_server():
    assert RunOptions(workers=2).forks_cpu_pool()
    assert not RunOptions(workers=1).forks_cpu_pool()
    assert not RunOptions(workers=2, device="auto").forks_cpu_pool()  # may resolve to CUDA: one worker
    assert not RunOptions(workers=2, executor="ray").forks_cpu_pool()
    assert RunOptions().forks_cpu_pool() == (auto_cpu_workers() > 1)


@pytest.mark.parametrize("field,value", [("workers", 0), ("threads", -1), ("ensemble_size", 0),
                                         ("ensemble_mode", "bogus"), ("executor", "slurm"), ("max_retries", -1),
                                         ("checkpoint_seconds", -2.0), ("checkpoint_seconds", float("nan"))])
def test_run_options_refuse_bad_values(field, value):
    with pytest.raises(PudlabError, match=f"run options: {field} = "):
        RunOptions(**{field: value})


def test_make_executor_needs_resolved_options():
    with pytest.raises(PudlabError, match="resolved"):
        make_executor(SERIAL)
    assert isinstance(make_executor(SERIAL.resolved()), LocalExecutor)


# ------------------------------------------------------------------------------------------ the sweep
def test_prepare_writes_nothing_and_a_prepared_sweep_resumes(tmp_path, npz_dataset):
    prepared = prepare_sweep(["exp4"], [npz_dataset], tiny_preset(), SERIAL)
    assert sorted(os.listdir(tmp_path)) == ["tiny.npz"]  # no store, no file: only loaded and checked
    total = len(prepared.job_keys)
    with Store(tmp_path / "s") as store:
        first = run_sweep(store, prepared, SERIAL)
        assert (first.trained, first.skipped, first.failed) == (total, 0, 0)
        reference = _weights_by_key(tmp_path / "s")
        again = run_sweep(store, prepared, SERIAL)  # the same prepared sweep: every job is reused
        assert (again.trained, again.skipped) == (0, total)
        lost = sorted(reference)[:2]
        for key in lost:  # as if the process died before these two were committed
            store.db.execute("UPDATE jobs SET status = 'pending' WHERE key = ?", (key,))
            store.weights_path(key).unlink()
        resumed = run_sweep(store, prepared, SERIAL)
        assert (resumed.trained, resumed.skipped) == (2, total - 2)
        assert [row["detail"] for row in store.timings()][-1].count(f'"jobs_total": {total}') == 1
    assert _weights_by_key(tmp_path / "s") == reference


def test_run_sweep_refuses_options_for_another_device(tmp_path, npz_dataset, monkeypatch):
    prepared = prepare_sweep(["exp4"], [npz_dataset], tiny_preset(), SERIAL)
    assert prepared.device == "cpu"
    _as_cuda(monkeypatch)
    with Store(tmp_path / "s") as store, pytest.raises(PudlabError, match="prepared for device cpu"):
        run_sweep(store, prepared, RunOptions(workers=1, progress=False))
    with Store(tmp_path / "s", read_only=True) as store:
        assert store.job_rows() == []  # refused before anything was recorded


def test_precision_auto_is_resolved_for_the_prepared_device(npz_dataset, monkeypatch):
    preset = tiny_preset(precision="auto")
    on_cpu = prepare_sweep(["exp4"], [npz_dataset], preset, SERIAL)
    assert {job.train.precision for job in on_cpu.expansion.jobs.values()} == {"fp32"}
    _as_cuda(monkeypatch)
    on_cuda = prepare_sweep(["exp4"], [npz_dataset], preset, RunOptions())
    assert {job.train.precision for job in on_cuda.expansion.jobs.values()} == {"bf16"}
    assert not set(on_cpu.job_keys) & set(on_cuda.job_keys)


def test_job_training_set_is_the_single_runs(npz_dataset):
    """The sweep's sample -> O(T) step and pudlab train's give the same arrays for the same recipe."""
    prepared = prepare_sweep(["exp2"], [npz_dataset], tiny_preset(sigmas=(0.0, 0.5)), SERIAL)
    split = prepared.datasets[0].split
    jobs = [job for job in prepared.expansion.jobs.values() if job.obfuscation.sigma > 0]
    assert jobs and any(job.recipe.nested_fraction for job in jobs)
    for job in jobs:
        ours = job_training_set(split, job)
        single = training_set(split, job.recipe, job.obfuscation)
        for mine, theirs in zip(ours, single, strict=True):
            assert np.array_equal(mine.images, theirs.images) and np.array_equal(mine.ids, theirs.ids)
            assert np.array_equal(mine.labels, theirs.labels)
        assert not np.array_equal(ours[0].images, ours[1].images)  # obfuscated


# ------------------------------------------------------------------------------------------ executors
def test_both_executors_fulfil_the_protocol():
    """Every member of Executor, with its parameters, on LocalExecutor and RayExecutor (RayExecutor had
    no interrupt: the runner looked it up with getattr)."""
    members = [name for name, _ in inspect.getmembers(Executor, inspect.isfunction) if not name.startswith("_")]
    assert sorted(members) == ["interrupt", "run"]
    for cls in (LocalExecutor, RayExecutor):
        for name in members:
            assert name in vars(cls), f"{cls.__name__} has no {name}"
            wanted = list(inspect.signature(getattr(Executor, name)).parameters)
            assert list(inspect.signature(getattr(cls, name)).parameters) == wanted, (cls.__name__, name)
    assert LocalExecutor(SERIAL.resolved()).retried == 0


class _Ref:
    """A task's object reference (hashable, as Ray's are)."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit


class _FakeRay:
    """The part of Ray the executor uses. Unit 0 finishes; the others run until cancelled."""

    class exceptions:  # mirrors ray.exceptions
        class RayError(Exception):
            pass

        class TaskCancelledError(RayError):
            pass

        class WorkerCrashedError(RayError):
            pass

        class NodeDiedError(RayError):
            pass

    def __init__(self, crash: bool = False) -> None:
        self.crash, self.cancelled, self.polls = crash, [], 0

    def is_initialized(self) -> bool:
        return True

    def remote(self, **resources):
        return lambda function: types.SimpleNamespace(remote=lambda unit, *args: _Ref(unit))

    def put(self, value):
        return value

    def wait(self, refs, num_returns, timeout):
        self.polls += 1
        assert self.polls < 50, "the executor waits for tasks that never finish"
        ready = [ref for ref in refs if ref.unit.index == 0 or ref in self.cancelled or self.crash]
        return ready[:num_returns], [ref for ref in refs if ref not in ready[:num_returns]]

    def get(self, ref):
        if ref in self.cancelled:
            raise self.exceptions.TaskCancelledError("cancelled")
        if self.crash:
            raise self.exceptions.WorkerCrashedError("worker died")
        return [JobOutcome(job.key, weights=b"w") for job in ref.unit.jobs]

    def cancel(self, ref, force):
        assert force is False  # a running unit must reach its checkpoint
        self.cancelled.append(ref)


def _units(count: int) -> list[Unit]:
    return [Unit(index, (types.SimpleNamespace(key=f"job{index}", source_name="x"),), b"", "exact")
            for index in range(count)]


def test_ray_interrupt_cancels_the_rest_and_returns_them_interrupted(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    executor = RayExecutor(SERIAL.resolved())
    results = executor.run(_units(3))
    first = next(results)
    assert [(o.key, o.ok) for o in first] == [("job0", True)]
    executor.interrupt()  # the first Ctrl-C
    rest = list(results)
    assert sorted(o.key for outcomes in rest for o in outcomes) == ["job1", "job2"]
    assert all(o.interrupted and o.error is None for outcomes in rest for o in outcomes)
    assert len(fake.cancelled) == 2


def test_ray_lost_worker_without_interrupt_fails_its_jobs(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", _FakeRay(crash=True))
    outcomes = [o for unit in RayExecutor(SERIAL.resolved()).run(_units(2)) for o in unit]
    assert all(o.error and "Ray worker lost" in o.error and not o.interrupted for o in outcomes)


def test_the_runner_forwards_ctrl_c_to_its_executor(tmp_path, npz_dataset, monkeypatch):
    class StopsOnCtrlC:
        retried = 0

        def __init__(self) -> None:
            self.interrupted = False

        def interrupt(self) -> None:
            self.interrupted = True

        def run(self, units):
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C, while units run
            for unit in units:
                yield [JobOutcome(job.key, interrupted=self.interrupted) for job in unit.jobs]

    executor = StopsOnCtrlC()
    monkeypatch.setattr(runner, "make_executor", lambda options: executor)
    with Store(tmp_path / "s") as store:
        planned = plan_sweep(store, prepare_sweep(["exp4"], [npz_dataset], tiny_preset(), SERIAL))
        try:
            with pytest.raises(InterruptedRun, match="rerun the same command to resume"):
                runner.run_jobs(store, planned.job_keys, SERIAL)
        finally:
            clear_stop()
        assert executor.interrupted
        assert store.status_counts()["done"] == 0


# ------------------------------------------------------------------------------------------ reading
def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_open_store_is_the_read_api_and_writes_nothing(tmp_path, npz_dataset):
    assert pudlab.open_store is open_store and pudlab.run_sweep is run_sweep
    with Store(tmp_path / "s") as store:
        run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], tiny_preset(), SERIAL), SERIAL)
    before = _tree(tmp_path / "s")
    with open_store(tmp_path / "s") as results:
        assert results.store.read_only and results.root == tmp_path / "s"
        jobs, claims = results.job_rows(), results.claim_rows()
        assert len(jobs) == len(results.store.job_rows()) > 0 and {row["status"] for row in jobs} == {"done"}
        judged = claims_by_dataset(results.store)[npz_dataset]
        assert [row["verdict"] for row in claims] == [claim_verdict(result) for result in judged]
        assert len(claims) == 9 and results.series_rows() and results.role_rows()
    assert _tree(tmp_path / "s") == before
    with Store(tmp_path / "s"), open_store(tmp_path / "s") as results:  # a writer holds the lock: still readable
        assert results.store.status_counts()["done"] == len(jobs)
    with pytest.raises(StoreError, match="not a pudlab store"):
        open_store(tmp_path)
    assert not (tmp_path / "pudlab.sqlite").exists()

