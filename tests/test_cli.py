"""The core commands run as a user runs them (a subprocess): obfuscate, train, distance, datasets, errors."""

import json
import subprocess
import sys

import numpy as np


def pudlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True, cwd=cwd)


TRAIN = ["--epochs", "2", "--widths", "2,2,4", "--hidden", "8", "--lr", "3e-3", "--batch-size", "32", "--no-progress"]


def test_obfuscate_train_distance(tmp_path, npz_dataset):
    out = tmp_path / "release.npz"
    result = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--sigma", "1", "--seed", "4", "--out", str(out),
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
