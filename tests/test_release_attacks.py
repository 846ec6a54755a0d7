"""Attacks on a release that must fail, each beside a control that runs the same attack on the
engine's internal noise (``obfuscate`` with a public integer seed, which is what ``pudlab obfuscate``
shipped before releases were keyed) and shows that the attack itself works."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from pudlab.data import LabeledImages
from pudlab.data.dataset import split_train_eval
from pudlab.data.sources import load_source
from pudlab.errors import ObfuscationError
from pudlab.obfuscation import (
    ObfuscationParams,
    ReleaseKey,
    key_file_sigmas,
    noise_for,
    obfuscate,
    obfuscation_manifest,
    release,
    release_manifest,
    release_unit_noise,
)
from pudlab.privacy.accounting import (
    analytic_gaussian_epsilon,
    composed_epsilon,
    multi_sigma_epsilon,
)
from pudlab.privacy.decline import differencing_attack, effective_sigma, inverse_variance_estimate

from .conftest import make_images


def pudlab(*args):
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True)


def rmse(estimate: np.ndarray, truth: LabeledImages) -> float:
    return float(np.sqrt(np.mean((np.asarray(estimate, np.float64) - truth.images) ** 2)))


@pytest.fixture(scope="module")
def data() -> LabeledImages:
    return make_images(300, (1, 12, 12))


# ----------------------------------------------------------------- (a) regenerate the noise from the manifest
def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def _candidate_seeds_and_keys(manifest: dict) -> tuple[set[int], list[ReleaseKey]]:
    """Every integer and every key-sized secret an attacker can read into the manifest."""
    seeds = set(range(64))  # the old default seed 0 and small guesses
    keys = []
    for value in _walk(manifest):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float) and float(value).is_integer() and value >= 0:
            seeds.add(int(value))
        text = str(value)
        keys.append(ReleaseKey(hashlib.sha256(text.encode()).digest()))
        for run in re.findall(r"[0-9a-f]{8,}", text):
            seeds.add(int(run[:16], 16))
            padded = (run * 8)[:64]
            keys.append(ReleaseKey(bytes.fromhex(padded)))
        for number in re.findall(r"\d+", text):
            seeds.add(int(number))
    keys += [ReleaseKey.from_insecure_seed(seed) for seed in seeds]
    return seeds, keys


def manifest_attack(released: LabeledImages, manifest: dict, truth: LabeledImages) -> float:
    """Best RMSE to T over every noise regenerable from the manifest (old seeded scheme and keyed scheme)."""
    sigma = manifest["obfuscation"]["sigma"]
    seeds, keys = _candidate_seeds_and_keys(manifest)
    shape = released.sample_shape
    guesses = [noise_for(released.ids, shape, seed=seed) for seed in seeds]
    guesses += [release_unit_noise(released.ids, shape, key=key, sigma=sigma) for key in keys]
    return min(rmse(released.images - np.float32(sigma) * noise, truth) for noise in guesses)


@pytest.fixture
def small(data) -> LabeledImages:
    return data.take(np.arange(24))


def test_control_old_manifest_gives_the_raw_data_back(small):
    """The attack works: the old path's manifest holds the seed, and T comes back to float precision."""
    released = obfuscate(small, sigma=0.3, seed=0)
    manifest = obfuscation_manifest(small, released, ObfuscationParams(0.3, 1.0, 0, False), source_fingerprint="f")
    assert rmse(released.images, small) > 0.25
    assert manifest_attack(released, manifest, small) < 1e-5


def test_release_manifest_does_not_give_the_noise_back(small):
    key = ReleaseKey.generate()
    released = release(small, sigma=0.3, key=key)
    manifest = release_manifest(released, sigma=0.3, fraction=1.0, clip=False, key=key,
                                recipe={"split": "T_t", "split_seed": 0})
    assert key.secret.hex() not in json.dumps(manifest)
    before = rmse(released.images, small)
    assert before > 0.25
    # subtracting a wrong noise draw adds noise: sqrt(2) x the release's error
    assert manifest_attack(released, manifest, small) > 1.2 * before


# ---------------------------------------------------------------------- (b) two sigmas under one key
def test_control_differencing_recovers_the_engine_noise(data):
    r1 = obfuscate(data, sigma=0.3, seed=0).images
    r2 = obfuscate(data, sigma=0.5, seed=0).images
    assert rmse(differencing_attack(r1, 0.3, r2, 0.5), data) < 1e-5


def test_differencing_two_releases_fails(data):
    key = ReleaseKey.generate()
    r1 = release(data, sigma=0.3, key=key).images
    r2 = release(data, sigma=0.5, key=key).images
    error = rmse(differencing_attack(r1, 0.3, r2, 0.5), data)
    expected = 0.3 * 0.5 * np.sqrt(2) / 0.2  # independent draws: worse than either release
    assert error > 0.3 and abs(error / expected - 1) < 0.05
    n1, n2 = (r1 - data.images).ravel(), (r2 - data.images).ravel()
    assert abs(np.corrcoef(n1, n2)[0, 1]) < 0.03


def test_independent_releases_decline_as_accounted(data):
    """What several sigmas do leak: the inverse-variance mean has error (sum sigma^-2)^-1/2."""
    key = ReleaseKey.generate()
    sigmas = [0.3, 0.5, 0.8]
    releases = [release(data, sigma=s, key=key).images for s in sigmas]
    error = rmse(inverse_variance_estimate(releases, sigmas), data)
    assert abs(error / effective_sigma(sigmas) - 1) < 0.03
    assert effective_sigma(sigmas) < min(sigmas)
    assert effective_sigma([0.4] * 4) == pytest.approx(0.2)
    epsilon = multi_sigma_epsilon(sigmas, sensitivity=1.0, delta=1e-5)
    assert epsilon == pytest.approx(analytic_gaussian_epsilon(sigma=effective_sigma(sigmas), sensitivity=1.0,
                                                              delta=1e-5))
    assert epsilon > analytic_gaussian_epsilon(sigma=0.3, sensitivity=1.0, delta=1e-5)
    fresh = composed_epsilon(sigma=0.4, sensitivity=1.0, delta=1e-5, releases=4, scheme="fresh")
    assert multi_sigma_epsilon([0.4] * 4, sensitivity=1.0, delta=1e-5) == pytest.approx(fresh)


# ------------------------------------------------------------- (c), (d), (e) the command line, as users run it
def _files_text(folder) -> bytes:
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file() and path.name != "key")


def test_default_releases_differ_and_the_key_stays_secret(tmp_path, npz_dataset):
    first = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--out", str(tmp_path / "a.npz"), "--json",
                   "--key-out", str(tmp_path / "key"))
    second = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--out", str(tmp_path / "b.npz"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = np.load(tmp_path / "a.npz")["x"], np.load(tmp_path / "b.npz")["x"]
    assert np.array_equal(np.load(tmp_path / "a.npz")["ids"], np.load(tmp_path / "b.npz")["ids"])
    assert not np.allclose(a, b)
    manifest_a = json.loads((tmp_path / "a.json").read_text())
    manifest_b = json.loads((tmp_path / "b.json").read_text())
    assert manifest_a["obfuscation"]["key_id"] != manifest_b["obfuscation"]["key_id"]
    assert "not kept" in second.stderr  # a fresh key that is not kept: said once
    assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600
    key = ReleaseKey.read(tmp_path / "key")
    assert key.key_id == manifest_a["obfuscation"]["key_id"]
    secret_hex = key.secret.hex()
    outputs = (first.stdout + first.stderr + second.stdout + second.stderr).encode()
    for leak in (secret_hex.encode(), secret_hex.upper().encode(), key.secret):
        assert leak not in outputs and leak not in _files_text(tmp_path)
    assert not {"seed", "noise_seed", "insecure_seed"} & set(manifest_a["obfuscation"])


def test_same_key_and_sigma_reproduces_and_new_sigma_is_said(tmp_path, npz_dataset):
    key_file = str(tmp_path / "key")
    first = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--out", str(tmp_path / "a.npz"), "--key-out", key_file)
    again = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--sigma", "0.6", "--out", str(tmp_path / "b.npz"),
                   "--key-file", key_file)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert np.array_equal(np.load(tmp_path / "a.npz")["x"], np.load(tmp_path / "b_sigma0.3.npz")["x"])
    assert "reproduces the earlier one exactly" in again.stderr
    assert "independent draws" in again.stderr
    assert not np.allclose(np.load(tmp_path / "b_sigma0.3.npz")["x"] * 2, np.load(tmp_path / "b_sigma0.6.npz")["x"])
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    refused = pudlab("obfuscate", npz_dataset, "--sigma", "0.3", "--out", str(tmp_path / "c.npz"), "--key-out", key_file)
    assert refused.returncode != 0 and "never overwritten" in refused.stderr


def test_huge_sigma_is_refused(tmp_path, npz_dataset, data):
    result = pudlab("obfuscate", npz_dataset, "--sigma", "1e39", "--out", str(tmp_path / "x.npz"))
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "sigma" in result.stderr
    assert not list(tmp_path.glob("x*"))
    key = ReleaseKey.generate()
    for sigma in (1e39, 3e38):  # beyond float32 / overflowing once multiplied by the noise
        with pytest.raises(ObfuscationError, match="sigma"):
            release(data, sigma=sigma, key=key)
        with pytest.raises(ObfuscationError, match="sigma"):
            obfuscate(data, sigma=sigma)
    assert np.isfinite(release(data, sigma=1e30, key=key).images).all()


def test_key_file_without_history_warns_of_independent_draws(tmp_path, npz_dataset):
    key = ReleaseKey.generate()
    key.write(tmp_path / "key")
    result = pudlab("obfuscate", npz_dataset, "--sigma", "0.4", "--out", str(tmp_path / "a.npz"),
                    "--key-file", str(tmp_path / "key"))
    assert result.returncode == 0, result.stderr
    assert "records no earlier release" in result.stderr and "independent draws" in result.stderr
    assert key_file_sigmas(tmp_path / "key") == (0.4,)
    split = split_train_eval(load_source(npz_dataset), seed=0)  # the command's default split
    assert np.array_equal(np.load(tmp_path / "a.npz")["x"], release(split.train, sigma=0.4, key=key).images)
