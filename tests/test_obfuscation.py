import numpy as np
import pytest

from pudlab.data import LabeledImages
from pudlab.errors import ObfuscationError
from pudlab.obfuscation import ObfuscationParams, obfuscate, obfuscation_manifest

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
