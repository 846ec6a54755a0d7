"""Experiment engine: specs, presets, jobs, store, resume, series, report."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pudlab.errors import SpecError
from pudlab.experiments.jobs import Job
from pudlab.experiments.options import RunOptions
from pudlab.experiments.series import series_table
from pudlab.experiments.spec import (
    SHIPPED_EXPERIMENTS,
    load_experiment,
    load_preset,
    parse_experiment,
    parse_preset,
)
from pudlab.experiments.store import Store
from pudlab.experiments.sweep import plan_sweep, prepare_sweep, run_sweep

TINY = {"epochs": 1, "widths": (2, 2, 4), "hidden": 8, "sigmas": (0.0, 1.0), "lr": 3e-3, "batch_size": 32,
        "repeats": 1}


def tiny_preset(**extra):
    return load_preset("quick").with_overrides(**{**TINY, **extra})


# ---------------------------------------------------------------------------------------------- specs
@pytest.mark.parametrize("name", SHIPPED_EXPERIMENTS)
def test_shipped_specs_load(name):
    spec = load_experiment(name)
    assert spec.name == name and spec.series


def _minimal():
    return {
        "name": "x",
        "datasets": {"A": {"setting": "S-1-1-0.5"}},
        "models": {"M": {"dataset": "A", "sigma": "sweep"}},
        "series": [{"id": "acc", "kind": "accuracy", "model": "M"}],
    }


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["datasets"]["A"].update(setting="S-2-1-1"), "my.toml: datasets.A.setting"),
        (lambda d: d["datasets"]["A"].pop("setting"), "datasets.A.setting is missing"),
        (lambda d: d["models"]["M"].update(dataset="B"), "models.M.dataset = 'B'; expected one of ['A']"),
        (lambda d: d["models"]["M"].update(sigma="lots"), "models.M.sigma = 'lots'; expected a number"),
        (lambda d: d["models"]["M"].update(sigma=-1), "models.M.sigma = -1"),
        (lambda d: d["series"][0].update(kind="loss"), "series[0].kind = 'loss'; expected one of"),
        (lambda d: d["series"][0].update(model="Z"), "series[0].model = 'Z'"),
        (lambda d: d["datasets"]["A"].update(colour="red"), "[datasets.A] has unknown key(s) ['colour']"),
        (lambda d: d["datasets"]["A"].update(redraw_of="A"), "cycle"),
        (lambda d: d.pop("series"), "my.toml: series is missing"),
        (lambda d: d["series"].append({"id": "d", "kind": "epoch_distance", "reference": "M", "compared": "M"}), "needs snapshots"),
    ],
)
def test_spec_validation_errors_name_file_key_expected(mutate, message):
    data = _minimal()
    mutate(data)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        parse_experiment(data, "my.toml")


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(SpecError, match="bad.toml: not valid TOML"):
        load_experiment(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_experiment(tmp_path / "missing.toml")


def test_preset_validation_and_overrides(tmp_path):
    preset = load_preset("paper")
    assert preset.epochs == 180 and preset.lr == 1e-4 and preset.widths == (32, 64, 128) and len(preset.sigmas) == 10
    quick = load_preset("quick").with_overrides(epochs=3, sigmas=(1.0, 0.0, 0.5), repeats=None)
    assert quick.epochs == 3 and quick.sigmas == (0.0, 0.5, 1.0) and quick.repeats == 3
    with pytest.raises(SpecError, match="epochs = 0; expected an integer >= 1"):
        load_preset("quick").with_overrides(epochs=0)
    with pytest.raises(SpecError, match="p.toml: lr"):
        parse_preset({"lr": "fast"}, "p.toml")
    with pytest.raises(SpecError, match=r"p.toml: sigmas contains \['a'\]"):
        parse_preset({"sigmas": [0, "a"]}, "p.toml")
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['epoch'\]"):
        parse_preset({"epoch": 3}, "p.toml")


# ---------------------------------------------------------------------------------------------- jobs
def test_job_keys_stable_and_shared_across_experiments(tmp_path, npz_dataset):
    preset = tiny_preset()
    with Store(tmp_path / "a") as store:
        first = plan_sweep(store, prepare_sweep(["fig2", "exp1", "exp5"], [npz_dataset], preset))
    with Store(tmp_path / "b") as store:
        again = plan_sweep(store, prepare_sweep(["fig2", "exp1", "exp5"], [npz_dataset], preset))
    assert first.job_keys == again.job_keys
    # the clean S-1-1-0.5 training is W_r of fig2, W_1,1 at sigma 0 of exp1 and W_r,5,1 of exp5
    shared = {role.job for role in first.expansion.roles
              if (role.plan.startswith("fig2") and role.model == "Wr")
              or (role.plan.startswith("exp1") and role.model == "W11" and role.sigma == 0)
              or (role.plan.startswith("exp5") and role.model == "Wr51" and role.stream == "model")}
    assert len(shared) == 1
    job = first.expansion.jobs[shared.pop()]
    assert job.snapshot_epochs == (1,)  # fig2's snapshot request merged in
    assert Job.from_dict(job.to_dict()).key == job.key
    # anything that changes the result changes the key
    other = plan_sweep(Store(tmp_path / "c"), prepare_sweep(["exp1"], [npz_dataset], tiny_preset(lr=1e-3)))
    assert not set(other.job_keys) & set(first.job_keys)


def test_redraws_are_disjoint_and_nested_subsets_nest(tmp_path, npz_dataset):
    from pudlab.data.sources import load_source
    from pudlab.experiments.jobs import SplitSpec, make_split
    from pudlab.sampling import draw_recipe

    preset = tiny_preset()
    with Store(tmp_path / "s") as store:
        planned = plan_sweep(store, prepare_sweep(["exp2", "exp3"], [npz_dataset], preset))
    split = make_split(load_source(npz_dataset), SplitSpec())
    by_model = {(r.plan.split("@")[0], r.model): planned.expansion.jobs[r.job] for r in planned.expansion.roles}
    draw = {name: set(draw_recipe(split.train.labels, job.recipe)) for name, job in by_model.items()}
    assert not draw[("exp3", "Wo31")] & draw[("exp3", "Wo32")]
    assert not draw[("exp3", "Wo33")] & draw[("exp3", "Wo34")]
    assert draw[("exp2", "W23")] <= draw[("exp2", "W22")] <= draw[("exp2", "W21")]


def test_exp4_exp5_sets_are_own_draws_and_compared_models_train_independently(tmp_path, npz_dataset):
    from pudlab.data.sources import load_source
    from pudlab.experiments.jobs import SplitSpec, make_split
    from pudlab.sampling import draw_recipe

    preset = tiny_preset(repeats=2)
    with Store(tmp_path / "s") as store:
        planned = plan_sweep(store, prepare_sweep(["exp4", "exp5"], [npz_dataset], preset))
    split = make_split(load_source(npz_dataset), SplitSpec())
    roles = planned.expansion.roles
    job = {(r.model, r.sigma, r.repeat, r.stream): planned.expansion.jobs[r.job] for r in roles}
    draw = {model: set(draw_recipe(split.train.labels, job[(model, 1.0, 0, "model")].recipe))
            for model in ("Wo41", "Wo42", "Wo43", "Wo51", "Wo52", "Wo53")}
    for other in ("Wo42", "Wo43"):
        assert not draw["Wo41"] & draw[other]
    assert not draw["Wo51"] & draw["Wo52"] and not draw["Wo51"] & draw["Wo53"]
    assert not draw["Wo53"] <= draw["Wo52"]
    # W_o(sigma = 0) is its own training, not the reference job; repeats and floor pairs are distinct jobs
    assert job[("Wo41", 0.0, 0, "model")].key != job[("Wr41", 0.0, 0, "model")].key
    keys = {job[("Wr41", 0.0, r, s)].key for r in (0, 1) for s in ("model", "floor")}
    assert len(keys) == 4
    first, second = job[("Wo41", 1.0, 0, "model")], job[("Wo41", 1.0, 1, "model")]
    assert first.train.shuffle_seed != second.train.shuffle_seed and first.obfuscation.seed != second.obfuscation.seed
    assert first.init_sha256 == second.init_sha256  # one shared initial weight set


def test_fig2_prefers_cifar_when_in_the_run():
    from pudlab.experiments.spec import runs_on

    fig2, exp1 = load_experiment("fig2"), load_experiment("exp1")
    assert runs_on(fig2, "cifar10", ["mnist", "cifar10"]) and not runs_on(fig2, "mnist", ["mnist", "cifar10"])
    assert runs_on(fig2, "mnist-5k", ["mnist-5k"])
    assert runs_on(exp1, "mnist", ["mnist", "cifar10"])
    with pytest.raises(SpecError, match="prefer_datasets"):
        parse_experiment({**fig2.raw, "prefer_datasets": [""]}, "f.toml")


# ---------------------------------------------------------------------------------------------- run + store
def _weights_by_key(root):
    with sqlite3.connect(Path(root) / "pudlab.sqlite") as db:
        return dict(db.execute("SELECT key, weights_sha256 FROM jobs WHERE status = 'done'").fetchall())


def test_run_resume_and_series(tmp_path, npz_dataset):
    preset = tiny_preset()
    options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=1)
    with Store(tmp_path / "s") as store:
        summary = run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, options), options)
        assert summary.failed == 0 and summary.trained == len(store.job_rows())
        again = run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, options), options)
        assert again.trained == 0 and again.skipped == summary.trained
        table = series_table(store, f"exp4@{npz_dataset}")
    assert table["D_4,1"]["mean"][0] > 0  # sigma 0 of W_o,4,1 is an independent training (own shuffle stream)
    assert table["D_4,1"]["mean"][1] > 0
    assert table["floor[Wr41]"]["mean"][0] > 0
    main = {name for name, entry in table.items() if entry["kind"] in ("distance", "floor", "delta")}
    assert main == {"D_4,1", "D_4,2", "D_4,3", "floor[Wr41]", "Delta(D_4,1,D_4,2)", "Delta(D_4,1,D_4,3)"}
    delta = table["Delta(D_4,1,D_4,2)"]
    assert delta["mean"] == pytest.approx([abs(b - a) for a, b in zip(table["D_4,1"]["mean"], table["D_4,2"]["mean"], strict=True)])
    layers = {name for name, entry in table.items() if entry["kind"] == "layer_distance" and name.startswith("D_4,1[")}
    assert len(layers) == 8  # six convolutions, two dense layers (weights and bias together)
    squares = sum(table[name]["mean"][1] ** 2 for name in layers)
    assert math.sqrt(squares) == pytest.approx(table["D_4,1"]["mean"][1], rel=1e-9)


def test_half_written_job_is_redone(tmp_path, npz_dataset):
    preset = tiny_preset()
    options = RunOptions(workers=1, threads=1, progress=False)
    with Store(tmp_path / "s") as store:
        run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, options), options)
        reference = _weights_by_key(tmp_path / "s")
        key = sorted(reference)[0]
        # the process died after writing the weights but before the commit
        store.db.execute("UPDATE jobs SET status = 'running' WHERE key = ?", (key,))
        store.weights_path(key).write_bytes(b"partial")
        summary = run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, options), options)
    assert summary.trained == 1
    assert _weights_by_key(tmp_path / "s") == reference


def _pudlab(*args):
    return [sys.executable, "-m", "pudlab.cli", *args]


def _done_count(db_path):
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _children(pid, marker=""):
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if line.strip() and marker in line]


def _pool_workers(driver: int) -> list[int]:
    """The driver's pool workers: forks of its fork server (or spawned children where there is none)."""
    servers = _children(driver, "multiprocessing.forkserver")
    return [pid for server in servers for pid in _children(server)] or _children(driver, "spawn_main")


SWEEP = ["run", "exp3", "--epochs", "3", "--widths", "2,2,4", "--hidden", "8", "--sigmas", "0,0.25,0.5,0.75,1",
         "--threads", "1", "--ensemble-size", "1", "--no-progress"]


@pytest.mark.parametrize("victim", ["worker", "driver"])
def test_sigkill_mid_sweep_then_resume(tmp_path, npz_dataset, victim):
    """SIGKILL a real worker (or the driver) mid-sweep; rerun; nothing finished is redone; same results."""
    reference_store, store = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_pudlab("run", *SWEEP[1:], "--dataset", npz_dataset, "--store", str(reference_store)),
                   check=True, capture_output=True)
    reference = _weights_by_key(reference_store)
    process = subprocess.Popen(_pudlab(*SWEEP, "--dataset", npz_dataset, "--store", str(store), "--workers", "2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db_path = store / "pudlab.sqlite"
    deadline = time.time() + 120
    while _done_count(db_path) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the sweep finished before it could be interrupted"
    finished_before = _weights_by_key(store)
    with sqlite3.connect(db_path) as db:
        stamps_before = dict(db.execute("SELECT key, finished FROM jobs WHERE status = 'done'").fetchall())
    if victim == "worker":
        workers = _pool_workers(process.pid)
        assert workers, "no worker process found"
        os.kill(workers[0], signal.SIGKILL)
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
        assert "retried after a worker process died" in out.decode()
    else:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        for pid in _children(process.pid):
            os.kill(pid, signal.SIGKILL)
        rerun = subprocess.run(_pudlab(*SWEEP, "--dataset", npz_dataset, "--store", str(store), "--workers", "2"),
                               capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        reused = int(rerun.stdout.split("reused ")[1].split(",")[0])
        assert reused >= len(stamps_before)
    with sqlite3.connect(db_path) as db:
        stamps_after = dict(db.execute("SELECT key, finished FROM jobs WHERE status = 'done'").fetchall())
    assert all(stamps_after[key] == stamp for key, stamp in stamps_before.items()), "a finished job was redone"
    assert set(finished_before.items()) <= set(reference.items())
    assert _weights_by_key(store) == reference


# ---------------------------------------------------------------------------------------------- report
def test_figures_and_report_from_store(tmp_path, npz_dataset):
    preset = tiny_preset(epochs=2)
    with Store(tmp_path / "s") as store:
        options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=8)
        run_sweep(store, prepare_sweep(list(SHIPPED_EXPERIMENTS), [npz_dataset], preset, options), options)
    result = subprocess.run(_pudlab("report", str(tmp_path / "s")), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    figures = sorted(p.name for p in (tmp_path / "s" / "figures").iterdir())
    for stem in ("fig1_samples_tiny", "fig2_epochs", "fig3ab_accuracy_label_degree", "fig3cd_accuracy_dataset_size",
                 "fig4ab_distance_label_degree", "fig4cd_distance_label_overlap", "fig5_distance_dataset_size"):
        assert f"{stem}.png" in figures and f"{stem}.svg" in figures
    markdown = (tmp_path / "s" / "report.md").read_text()
    html = (tmp_path / "s" / "report.html").read_text()
    claims = markdown.split("## Claims on")[1].split("\n## ")[0]  # the summary's claims table
    assert claims.count("| reproduced |") + claims.count("| not reproduced |") + \
        claims.count("| inconclusive |") + claims.count("| not evaluated |") == 9
    assert "data:image/png;base64," in html and "<img" in html
    status = subprocess.run(_pudlab("status", str(tmp_path / "s"), "--json"), capture_output=True, text=True)
    counts = json.loads(status.stdout)["counts"]
    assert counts["done"] > 0 and counts["failed"] == 0 and counts["pending"] == 0


# ---------------------------------------------------------------------------------------------- ensembles
@pytest.mark.parametrize("mode", ["exact", "fused"])
def test_ensemble_grouping_and_resume(tmp_path, npz_dataset, mode):
    """exact ensembles give the weights of one-at-a-time training; a resumed fused sweep regroups
    exactly as the uninterrupted one, so its results are identical."""
    from pudlab.experiments.runner import make_units

    preset = tiny_preset()
    single = RunOptions(workers=1, threads=1, progress=False, ensemble_size=1)
    grouped = RunOptions(workers=1, threads=1, progress=False, ensemble_size=8, ensemble_mode=mode)
    with Store(tmp_path / "grouped") as store:
        run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, grouped), grouped)
        units = make_units([store.job(row["key"]) for row in store.job_rows()], 8)
        assert max(len(unit) for unit in units) > 1
        reference = _weights_by_key(tmp_path / "grouped")
        # interrupt: half the jobs lost their results
        lost = sorted(reference)[::2]
        for key in lost:
            store.db.execute("UPDATE jobs SET status = 'pending' WHERE key = ?", (key,))
            store.weights_path(key).unlink()
        summary = run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, grouped), grouped)
        assert summary.trained == len(lost)
    assert _weights_by_key(tmp_path / "grouped") == reference
    if mode == "exact":
        with Store(tmp_path / "single") as store:
            run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, single), single)
        assert _weights_by_key(tmp_path / "single") == reference
