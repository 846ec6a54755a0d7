import json
import os
import stat

import numpy as np
import pytest

from pudlab.data import LabeledImages
from pudlab.errors import ObfuscationError
from pudlab.obfuscation import (
    ObfuscationParams,
    ReleaseKey,
    key_file_sigmas,
    obfuscate,
    obfuscation_manifest,
    record_key_use,
    release,
    release_manifest,
    release_selected_mask,
)

from .conftest import make_images


@pytest.fixture
def data() -> LabeledImages:
    return make_images(400, (1, 16, 16))


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0])
def test_noise_statistics(data, sigma):
    out = obfuscate(data, sigma=sigma, seed=1)
    noise = (out.images - data.images).ravel()
    n = noise.size
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(n)
    assert abs(noise.std() - sigma) < 0.01 * sigma
    assert np.array_equal(out.labels, data.labels)
    assert np.array_equal(out.ids, data.ids)


def test_sigma_zero_is_identity(data):
    out = obfuscate(data, sigma=0.0, seed=5)
    assert np.array_equal(out.images, data.images)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.333, 0.5, 1.0])
def test_exact_fraction_changed(data, fraction):
    out = obfuscate(data, sigma=0.3, fraction=fraction, seed=2)
    changed = np.any(out.images != data.images, axis=(1, 2, 3))
    assert changed.sum() == round(fraction * len(data))


def test_keyed_noise_consistent_across_subsets(data):
    full = obfuscate(data, sigma=0.4, seed=3)
    positions = np.array([5, 17, 200, 399, 0])
    part = obfuscate(data.take(positions), sigma=0.4, seed=3)
    assert np.array_equal(part.images, full.images[positions])


def test_noise_depends_on_seed_and_scales_with_sigma(data):
    a = obfuscate(data, sigma=0.2, seed=1).images - data.images
    b = obfuscate(data, sigma=0.2, seed=2).images - data.images
    c = obfuscate(data, sigma=0.4, seed=1).images - data.images
    assert not np.allclose(a, b)
    np.testing.assert_allclose(2 * a, c, rtol=1e-5, atol=1e-6)


def test_clip(data):
    out = obfuscate(data, sigma=1.0, seed=1, clip=True)
    assert out.images.min() >= 0.0 and out.images.max() <= 1.0
    unclipped = obfuscate(data, sigma=1.0, seed=1)
    assert unclipped.images.min() < 0.0


@pytest.mark.parametrize("kwargs", [{"sigma": -0.1}, {"sigma": float("nan")}, {"sigma": 0.1, "fraction": 1.5},
                                    {"sigma": 0.1, "seed": -1}])
def test_invalid_params(data, kwargs):
    with pytest.raises(ObfuscationError):
        obfuscate(data, **kwargs)


def test_manifest_hashes(data):
    params = ObfuscationParams(0.3, 1.0, 4, False)
    out = obfuscate(data, sigma=0.3, seed=4)
    manifest = obfuscation_manifest(data, out, params, source_fingerprint="abc")
    assert manifest["obfuscation"] == {"sigma": 0.3, "fraction": 1.0, "seed": 4, "clip": False}
    again = obfuscation_manifest(data, obfuscate(data, sigma=0.3, seed=4), params, source_fingerprint="abc")
    assert manifest["arrays_sha256"] == again["arrays_sha256"]
    other = obfuscation_manifest(data, obfuscate(data, sigma=0.3, seed=5), params, source_fingerprint="abc")
    assert other["arrays_sha256"]["x"] != manifest["arrays_sha256"]["x"]


# ------------------------------------------------------------------------------------ release keys
def test_release_key_is_fresh_and_never_printed():
    first, second = ReleaseKey.generate(), ReleaseKey.generate()
    assert len(first.secret) == 32 and first.secret != second.secret
    assert first.key_id != second.key_id and len(first.key_id) == 16
    assert ReleaseKey(first.secret).key_id == first.key_id
    for text in (repr(first), str(first), f"{first}", repr([first])):
        assert first.secret.hex() not in text and first.key_id in text
    assert first.key_id not in first.secret.hex()
    with pytest.raises(ObfuscationError):
        ReleaseKey(b"short")


def test_key_file_round_trip_mode_and_no_overwrite(tmp_path):
    key = ReleaseKey.generate()
    path = tmp_path / "sub" / "release.key"
    old_umask = os.umask(0)  # the key file is 0600 whatever the umask
    try:
        key.write(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == f"pudlab-release-key-v1 {key.secret.hex()}\n"
    assert ReleaseKey.read(path) == key
    other = ReleaseKey.generate()
    with pytest.raises(ObfuscationError, match="already exists"):
        other.write(path)
    assert ReleaseKey.read(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["release.key"]  # no temporary left behind


def test_key_file_records_sigmas_without_touching_the_key(tmp_path):
    key = ReleaseKey.generate()
    path = tmp_path / "k"
    key.write(path)
    assert key_file_sigmas(path) == ()
    record_key_use(path, [0.3, 0.0, 0.3])
    record_key_use(path, [0.5, 0.3])
    assert key_file_sigmas(path) == (0.3, 0.5)
    assert ReleaseKey.read(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("content, message", [
    (b"", "not a release key file"),
    (b"pudlab-release-key-v1 " + b"ab" * 31 + b"\n", "not a release key file"),
    (b"pudlab-release-key-v2 " + b"ab" * 32 + b"\n", "not a release key file"),
    (b"\xff\xfe" * 20, "not a release key file"),
    (b"pudlab-release-key-v1 " + b"ab" * 32 + b"\nsigma 0.3\n", "line 2"),
])
def test_bad_key_files_are_refused_by_name(tmp_path, content, message):
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(ObfuscationError, match=message) as error:
        ReleaseKey.read(path)
    assert str(path) in str(error.value) and "abab" not in str(error.value)


def test_missing_key_file(tmp_path):
    with pytest.raises(ObfuscationError, match="not found") as error:
        ReleaseKey.read(tmp_path / "none.key")
    assert "none.key" in str(error.value)


# ---------------------------------------------------------------------------------------- releases
@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_release_noise_statistics(data, sigma):
    key = ReleaseKey.generate()
    out = release(data, sigma=sigma, key=key)
    noise = (out.images - data.images).ravel()
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(noise.size)
    assert abs(noise.std() - sigma) < 0.01 * sigma
    assert np.array_equal(out.labels, data.labels) and np.array_equal(out.ids, data.ids)


def test_release_sigma_zero_and_clip(data):
    key = ReleaseKey.generate()
    assert np.array_equal(release(data, sigma=0.0, key=key).images, data.images)
    clipped = release(data, sigma=1.0, key=key, clip=True).images
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0


def test_release_is_keyed_by_key_sigma_and_id(data):
    key = ReleaseKey.generate()
    full = release(data, sigma=0.4, key=key)
    positions = np.array([5, 17, 200, 399, 0])
    assert np.array_equal(release(data.take(positions), sigma=0.4, key=key).images, full.images[positions])
    assert np.array_equal(release(data, sigma=0.4, key=ReleaseKey(key.secret)).images, full.images)
    assert not np.allclose(release(data, sigma=0.4, key=ReleaseKey.generate()).images, full.images)
    doubled = release(data, sigma=0.8, key=key).images - data.images
    assert abs(np.corrcoef(doubled.ravel(), (full.images - data.images).ravel())[0, 1]) < 0.03


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.333, 1.0])
def test_release_fraction_same_samples_at_every_sigma(data, fraction):
    key = ReleaseKey.generate()
    changed = [np.any(release(data, sigma=s, key=key, fraction=fraction).images != data.images, axis=(1, 2, 3))
               for s in (0.2, 0.7)]
    assert changed[0].sum() == round(fraction * len(data))
    assert np.array_equal(changed[0], changed[1])
    assert np.array_equal(changed[0], release_selected_mask(data.ids, fraction, key=key))


def test_release_refuses_bad_input(data):
    key = ReleaseKey.generate()
    for kwargs in ({"sigma": -0.1}, {"sigma": float("nan")}, {"sigma": 0.1, "fraction": 1.5}):
        with pytest.raises(ObfuscationError):
            release(data, key=key, **kwargs)
    with pytest.raises(ObfuscationError, match="ReleaseKey"):
        release(data, sigma=0.1, key=0)
    twice = LabeledImages(data.images[:2], data.labels[:2], np.array([3, 3], dtype=np.int64))
    with pytest.raises(ObfuscationError, match="unique"):
        release(twice, sigma=0.1, key=key)


def test_release_manifest_holds_no_secret(data):
    key = ReleaseKey.generate()
    out = release(data, sigma=0.3, key=key, fraction=0.5)
    manifest = release_manifest(out, sigma=0.3, fraction=0.5, clip=False, key=key)
    text = json.dumps(manifest)
    assert key.secret.hex() not in text and manifest["obfuscation"]["key_id"] == key.key_id
    assert manifest["num_obfuscated"] == 200 and manifest["num_samples"] == 400
    assert "sample_fingerprint" not in manifest and data.fingerprint() not in text
    demo = release_manifest(out, sigma=0.3, fraction=0.5, clip=False, key=ReleaseKey.from_insecure_seed(3),
                            insecure_seed=3)
    assert demo["obfuscation"]["insecure_seed"] == 3 and "INSECURE" in demo["obfuscation"]["key"]
