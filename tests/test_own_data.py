"""Your own evaluation set and model: `train --eval`, `--model module:factory` (train, presets, lockstep
ensembles), `distance` refusing different initial weights, the public API and the examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import pudlab
from pudlab.cli import cli
from pudlab.errors import ModelError, PudlabError
from pudlab.experiments.options import RunOptions
from pudlab.experiments.sweep import prepare_sweep
from pudlab.model import (
    FactoryModelConfig,
    build_model,
    initial_state,
    model_from_dict,
    parameter_names,
)
from pudlab.train.ensemble import EnsembleTrainer, train_ensemble
from pudlab.train.trainer import TrainConfig, train_model

from .conftest import make_images, write_npz_dataset
from .test_experiments import tiny_preset

FACTORIES = Path(__file__).with_name("model_factories.py")
MLP = f"{FACTORIES}:small_mlp"
SMALL = ["--epochs", "1", "--widths", "2,2,4", "--hidden", "8", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------- defect 2: --eval
def test_train_scores_on_an_evaluation_dataset(tmp_path):
    """Issue 24: `train` could only score on a 10 % split of what it trained on."""
    raw = write_npz_dataset(tmp_path / "tiny.npz")
    runner = CliRunner()
    done = runner.invoke(cli, ["obfuscate", str(raw), "--sigma", "0.5", "--insecure-seed", "1", "--out",
                               str(tmp_path / "rel.npz")])
    assert done.exit_code == 0, done.output
    result = runner.invoke(cli, ["train", str(tmp_path / "rel.npz"), *SMALL, "--eval", str(raw), "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"accuracy on {raw} (eval)" in result.stdout and "warning" not in result.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["sample"]["size"] == 540  # all of the release, as released
    assert record["eval_set"]["dataset"] == str(raw) and record["eval_set"]["size"] == 60  # the T_e it left out
    overlap = runner.invoke(cli, ["train", str(tmp_path / "rel.npz"), *SMALL, "--eval", str(raw), "--eval-part", "all",
                                  "--out", str(tmp_path / "run2")])
    assert "540 samples of the evaluation set are in the release" in overlap.stderr
    missing = runner.invoke(cli, ["train", str(raw), *SMALL, "--eval", str(raw), "--eval-part", "test", "--out",
                                  str(tmp_path / "run3")])
    assert missing.exit_code == 1 and "has no test set" in missing.stderr


# ---------------------------------------------------------------------------------------- model factories
def test_factory_model_trains_and_checks():
    config = FactoryModelConfig(MLP, (1, 12, 12), 10)
    first, again = initial_state(config, init_seed=3), initial_state(config, init_seed=3)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["1.weight"], initial_state(config, init_seed=4)["1.weight"])
    assert parameter_names(config) == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert model_from_dict(config.to_dict()) == config
    data = make_images(64, (1, 12, 12))
    result = train_model(data, data, config, first, TrainConfig(epochs=2, batch_size=16, lr=1e-2))
    assert result.final_accuracy is not None and list(result.weights) == parameter_names(config)
    assert isinstance(build_model(config, result.weights), torch.nn.Sequential)
    for name, message in (("with_batchnorm", "has buffers"), ("not_a_module", "expected a torch.nn.Module"),
                          ("wrong_outputs", r"expected \(2, 10\)"), ("missing", "has no attribute")):
        with pytest.raises(ModelError, match=message):
            initial_state(FactoryModelConfig(f"{FACTORIES}:{name}", (1, 12, 12), 10))
    with pytest.raises(ModelError, match="cannot import 'no_such_module'"):
        initial_state(FactoryModelConfig("no_such_module:f", (1, 12, 12), 10))
    with pytest.raises(ModelError, match="expected 'module:function'"):
        FactoryModelConfig("no-colon", (1, 12, 12), 10)


def test_factory_model_in_lockstep_ensembles():
    config = FactoryModelConfig(MLP, (1, 12, 12), 10)
    initial = initial_state(config)
    sets = [make_images(48, (1, 12, 12), seed=seed) for seed in (1, 2)]
    configs = [TrainConfig(epochs=1, batch_size=16, lr=1e-2, shuffle_seed=seed) for seed in (1, 2)]
    together = train_ensemble(sets, None, config, initial, configs, mode="exact")
    for member, (data, train_config) in enumerate(zip(sets, configs, strict=True)):
        alone = train_model(data, None, config, initial, train_config)
        assert all(torch.equal(together[member].weights[n], alone.weights[n]) for n in alone.weights)
    with pytest.raises(PudlabError, match="fused ensemble needs M_cnn's layer plan.*exact"):
        EnsembleTrainer(config, [initial] * 2, sets, configs, mode="fused")


def test_train_with_a_factory_model_and_distance(tmp_path):
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=200)
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(cli, ["train", str(raw), "--epochs", "1", "--seed", str(ord(name)), "--model", MLP,
                                     "--no-progress", "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "run.json").read_text())["model"]["factory"] == MLP
    distance = runner.invoke(cli, ["distance", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert distance.exit_code == 0 and json.loads(distance.stdout)["same_init"] is True
    widths = runner.invoke(cli, ["train", str(raw), "--model", MLP, "--widths", "4,4,4", "--out", str(tmp_path / "c")])
    assert widths.exit_code == 2 and "--widths and --hidden size M_cnn" in widths.stderr


# ---------------------------------------------------------------------------------------- defect 4: distance
def test_distance_refuses_models_from_different_initial_weights(tmp_path):
    """Issue 24: `distance` compared trainings from different initial weights without a word."""
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=200)
    runner = CliRunner()
    for name, init_seed in (("base", "0"), ("same", "0"), ("other", "1")):
        result = runner.invoke(cli, ["train", str(raw), *SMALL, "--seed", "5" if name == "same" else "0",
                                     "--init-seed", init_seed, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    refused = runner.invoke(cli, ["distance", str(tmp_path / "base"), str(tmp_path / "other")])
    assert refused.exit_code == 1 and "different initial weights" in refused.stderr
    assert "init_sha256" in refused.stderr and "--allow-different-init" in refused.stderr
    allowed = runner.invoke(cli, ["distance", str(tmp_path / "base"), str(tmp_path / "other"),
                                  "--allow-different-init"])
    assert allowed.exit_code == 0 and allowed.stdout.startswith("D = ") and "mostly measures the init" in allowed.stderr
    same = runner.invoke(cli, ["distance", str(tmp_path / "base"), str(tmp_path / "same")])
    assert same.exit_code == 0 and same.stderr == ""
    # without run.json: the init files are compared
    for name in ("base", "other"):
        (tmp_path / name / "run.json").unlink()
    assert runner.invoke(cli, ["distance", str(tmp_path / "base"), str(tmp_path / "other")]).exit_code == 1


# ---------------------------------------------------------------------------------------- presets
def test_preset_eval_dataset_and_model(tmp_path):
    raw = str(write_npz_dataset(tmp_path / "tiny.npz", num=200))
    other = str(write_npz_dataset(tmp_path / "other.npz", num=200, seed=4))
    options = RunOptions(workers=1, threads=1, progress=False)
    plain = prepare_sweep(["exp1"], [raw], tiny_preset(), options)
    for job in plain.expansion.jobs.values():  # no new field: the key hashes what it always hashed
        assert "eval" not in job.key_fields() and "whole" not in job.key_fields()["split"]
    own = prepare_sweep(["exp1"], [raw], tiny_preset(eval_dataset=other, model=MLP), options)
    jobs = list(own.expansion.jobs.values())
    assert all(job.key_fields()["eval"]["part"] == "eval" and job.key_fields()["split"]["whole"] for job in jobs)
    assert all(job.model.to_dict()["factory"] == MLP for job in jobs)
    assert not set(own.job_keys) & set(plain.job_keys)
    assert max(job.train_size for job in jobs) > max(job.train_size for job in plain.expansion.jobs.values())


def test_sweeping_a_release_is_refused(tmp_path):
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=200)
    CliRunner().invoke(cli, ["obfuscate", str(raw), "--sigma", "0.5", "--insecure-seed", "1", "--out",
                             str(tmp_path / "rel.npz")])
    options = RunOptions(workers=1, threads=1, progress=False)
    with pytest.raises(PudlabError, match="is a release.*as_raw|is a release.*--as-raw"):
        prepare_sweep(["exp1"], [str(tmp_path / "rel.npz")], tiny_preset(), options)
    assert prepare_sweep(["exp1"], [str(tmp_path / "rel.npz")], tiny_preset(as_raw=True), options).job_keys


# ---------------------------------------------------------------------------------------- public API, examples
def test_public_api_has_the_applications():
    """Issue 24: privacy, PUD, PoL and FL were not in pudlab.__all__."""
    for name in ("audit_release", "privacy_report", "pud_points", "recommend", "prove", "verify_bundle",
                 "run_simulation", "read_release", "FactoryModelConfig", "compare_dp", "ComparisonConfig"):
        assert name in pudlab.__all__ and (getattr(pudlab, name).__doc__ or "").strip(), name


def _example(name: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_example_reproduce_and_read(tmp_path):
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=300)
    output = _example("reproduce_and_read.py", "--store", str(tmp_path / "store"), "--tiny", str(raw), cwd=tmp_path)
    assert "model distance D per sigma" in output and "accuracy on T_e per sigma" in output


@pytest.mark.slow
def test_example_audit_your_release(tmp_path):
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=300)
    output = _example("audit_your_release.py", "--out", str(tmp_path / "audit"), "--dataset", str(raw), "--tiny",
                      cwd=tmp_path)
    assert "release_sigma0.1.npz: sigma 0.1" in output and "LiRA AUC" in output
    assert "P under threat model 'public'" in output


@pytest.mark.slow
def test_example_federated_pol(tmp_path):
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=400)
    output = _example("federated_pol.py", "--store", str(tmp_path / "fl"), "--tiny", str(raw), cwd=tmp_path)
    assert output.startswith("pol: 2 rounds") and "PoL caught" in output


def test_a_fused_unit_of_factory_jobs_trains_in_exact_lockstep(tmp_path):
    from pudlab.experiments.worker import WorkerContext, train_ensemble_unit

    raw = str(write_npz_dataset(tmp_path / "tiny.npz", num=200))
    prepared = prepare_sweep(["exp1"], [raw], tiny_preset(model=MLP), RunOptions(workers=1, threads=1, progress=False))
    jobs = sorted(prepared.expansion.jobs.values(), key=lambda job: job.key)[:2]
    jobs = [job for job in jobs if job.group_signature() == jobs[0].group_signature()]
    initial = initial_state(jobs[0].model, init_seed=jobs[0].init_seed)
    outcomes = train_ensemble_unit(WorkerContext(None, "cpu"), jobs, initial, "fused")
    assert all(outcome.ok for outcome in outcomes)
    assert all("exact lockstep" in outcome.environment["ensemble_note"] for outcome in outcomes)
    assert all(outcome.environment["trainer"] == "ensemble-exact" for outcome in outcomes)


def test_pol_prove_scores_on_the_eval_dataset(tmp_path, monkeypatch):
    """Issue 24: `pol prove --eval DATASET` scores the final model on that dataset's part, draws T from all
    of DATASET, and refuses an evaluation set of another sample shape."""
    write_npz_dataset(tmp_path / "train.npz", num=120, shape=(1, 16, 16), seed=1)
    write_npz_dataset(tmp_path / "held.npz", num=200, shape=(1, 16, 16), seed=2)
    write_npz_dataset(tmp_path / "other.npz", num=50, shape=(1, 12, 12), seed=3)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    common = ["--epochs", "1", "--batch-size", "16", "--widths", "4,8,8", "--hidden", "16", "--checkpoint-every", "3",
              "--no-progress", "--setting", "S-1-1-1", "--json"]
    plain = runner.invoke(cli, ["pol", "prove", "train.npz", *common, "--out", "b0"])
    held = runner.invoke(cli, ["pol", "prove", "train.npz", *common, "--out", "b1", "--eval", "held.npz",
                               "--eval-part", "all"])
    assert plain.exit_code == 0 and held.exit_code == 0, plain.output + held.output
    plain_summary, held_summary = json.loads(plain.stdout), json.loads(held.stdout)
    assert plain_summary["eval_on"] == "T_e" and held_summary["eval_on"] == "held.npz (all)"
    assert plain_summary["samples"] == 108 and held_summary["samples"] == 120  # the 90 % split vs all of it
    from pudlab.data.sources import load_source
    from pudlab.io import load_weights
    from pudlab.model import ModelConfig, build_model
    from pudlab.train.trainer import evaluate

    runner.invoke(cli, ["pol", "prove", "train.npz", *common, "--out", "b2", "--eval", "held.npz", "--eval-part",
                        "all", "--model-out", "final.safetensors"])
    model = build_model(ModelConfig((1, 16, 16), (4, 8, 8), 16, 10), load_weights("final.safetensors"))
    _, accuracy = evaluate(model, load_source("held.npz", None).train)
    assert accuracy == held_summary["eval_accuracy"]
    wrong = runner.invoke(cli, ["pol", "prove", "train.npz", *common, "--out", "b3", "--eval", "other.npz"])
    assert wrong.exit_code == 3 and "other.npz" in wrong.output and "(1, 12, 12)" in wrong.output
