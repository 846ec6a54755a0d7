"""The core commands run as a user runs them (a subprocess): obfuscate, train, distance, datasets, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest


def pudlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True, cwd=cwd)


TRAIN = ["--epochs", "2", "--widths", "2,2,4", "--hidden", "8", "--lr", "3e-3", "--batch-size", "32", "--no-progress"]


def test_obfuscate_train_distance(tmp_path, npz_dataset):
    out = tmp_path / "release.npz"
    result = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--sigma", "1", "--out", str(out),
                    "--preview", str(tmp_path / "preview.png"), "--json")
    assert result.returncode == 0, result.stderr
    manifests = json.loads(result.stdout)
    assert [m["obfuscation"]["sigma"] for m in manifests] == [0.3, 1.0]
    assert (tmp_path / "preview.png").stat().st_size > 0
    for sigma in ("0.3", "1"):
        release = np.load(tmp_path / f"release_sigma{sigma}.npz")
        manifest = json.loads((tmp_path / f"release_sigma{sigma}.json").read_text())
        assert manifest["num_samples"] == len(release["y"]) == 540
        assert bool(release["obfuscated"])
    # the release is a dataset one can train on
    assert pudlab("train", str(tmp_path / "release_sigma1.npz"), *TRAIN, "--out", str(tmp_path / "on_release")).returncode == 0

    runs = {}
    for name, sigma in (("a", "0"), ("b", "0"), ("noisy", "1")):
        result = pudlab("train", npz_dataset, "--sigma", sigma, *TRAIN, "--out", str(tmp_path / name), "--json")
        assert result.returncode == 0, result.stderr
        runs[name] = json.loads(result.stdout)
        assert (tmp_path / name / "weights.safetensors").exists() and (tmp_path / name / "run.json").exists()
    assert runs["a"]["weights_sha256"] == runs["b"]["weights_sha256"]
    assert len(runs["a"]["history"]) == 2 and runs["a"]["dataset"]["fingerprint"]
    same = json.loads(pudlab("distance", str(tmp_path / "a"), str(tmp_path / "b"), "--json").stdout)
    assert same["distance"] == 0.0
    other = json.loads(pudlab("distance", str(tmp_path / "a"), str(tmp_path / "noisy" / "weights.safetensors"),
                              "--per-layer", "--json").stdout)
    assert other["distance"] > 0
    assert np.isclose(np.sqrt(sum(v**2 for v in other["per_layer"].values())), other["distance"])


def test_errors_are_one_line(tmp_path):
    missing = pudlab("train", str(tmp_path / "nothing.npz"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    debug = pudlab("--debug", "train", str(tmp_path / "nothing.npz"), "--out", str(tmp_path / "x"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    bad_setting = pudlab("train", "mnist-5k", "--setting", "S-2-1-1", "--out", str(tmp_path / "x"))
    assert bad_setting.returncode == 1 and "label degree X must be in (0, 1]" in bad_setting.stderr


def test_datasets_json(tmp_path):
    result = pudlab("--data-dir", str(tmp_path), "datasets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["sources"]}
    assert rows["mnist-5k"]["present"] and not rows["mnist"]["present"]


def test_distance_matches_parameters_by_name(tmp_path):
    """A weight file with the same parameters in another order has distance 0 to the original."""
    import torch

    from pudlab.io import save_weights

    weights = {"conv1.weight": torch.ones(2, 3), "conv1.bias": torch.zeros(2), "dense.weight": torch.full((4,), 2.0)}
    save_weights(tmp_path / "a.safetensors", weights)
    save_weights(tmp_path / "b.safetensors", dict(reversed(list(weights.items()))))
    other = {**weights, "dense.weight": torch.full((4,), 3.0)}
    save_weights(tmp_path / "c.safetensors", dict(reversed(list(other.items()))))
    same = pudlab("distance", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["distance"] == 0.0
    moved = json.loads(pudlab("distance", str(tmp_path / "a.safetensors"), str(tmp_path / "c.safetensors"),
                              "--per-layer", "--json").stdout)
    assert moved["distance"] == 2.0 and moved["per_layer"]["dense"] == 2.0 and moved["per_layer"]["conv1"] == 0.0
    save_weights(tmp_path / "d.safetensors", {"conv1.weight": torch.ones(2, 3)})
    missing = pudlab("distance", str(tmp_path / "a.safetensors"), str(tmp_path / "d.safetensors"))
    assert missing.returncode == 1 and "only in the first ['conv1.bias', 'dense.weight']" in missing.stderr


def test_fl_specs_json_and_status_wording(tmp_path):
    specs = pudlab("fl", "specs", "--json")
    assert specs.returncode == 0, specs.stderr
    assert "mnist5k_noniid" in {row["name"] for row in json.loads(specs.stdout)}
    import sqlite3

    from pudlab.experiments.store import Store

    with Store(tmp_path / "s"):
        pass
    with sqlite3.connect(tmp_path / "s" / "pudlab.sqlite") as db:
        db.execute("INSERT INTO jobs (key, spec, status, created) VALUES ('k', '{}', 'running', 0)")
    text = pudlab("status", str(tmp_path / "s")).stdout
    counts = json.loads(pudlab("status", str(tmp_path / "s"), "--json").stdout)["counts"]
    # no run holds the store: the job marked running was abandoned (tests/test_user_feedback.py)
    assert counts["abandoned"] == 1 and "1 abandoned" in text and "interrupted" not in text


def test_sigma_lists_repeated_or_comma_separated():
    from pudlab.cli.experiments import run_command, sweep_inputs
    from pudlab.experiments.spec import load_preset

    def preset(*args):
        context = run_command.make_context("run", ["exp1", "--store", "s", *args])
        return sweep_inputs(dict(context.params), None)[0]

    assert preset("--sigma", "0", "--sigma", "0.5", "--sigma", "1").sigmas == preset("--sigmas", "0,0.5,1").sigmas \
        == preset("--sigmas", "0,0.5", "--sigma", "1").sigmas == (0.0, 0.5, 1.0)
    assert preset().sigmas == load_preset("quick").sigmas  # not given: the preset's grid


def test_sigma_lists_and_repeats_are_the_same_option():
    """``--sigma 0.1,0.2`` and ``--sigma 0.1 --sigma 0.2`` parse alike for obfuscate and privacy."""
    import click

    from pudlab.cli.data import obfuscate_command
    from pudlab.cli.privacy import privacy_command

    for command in (obfuscate_command, privacy_command):
        option = next(p for p in command.params if p.name == "sigmas")
        context = click.Context(command)
        assert option.process_value(context, ("0.1,0.2",)) == option.process_value(context, ("0.1", "0.2")) == (0.1, 0.2)
        with pytest.raises(click.BadParameter):
            option.process_value(context, ("0.1,x",))
