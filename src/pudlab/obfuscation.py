"""Dataset obfuscation O(T; sigma, R) (Eq. 2): t'_ij = t_ij + delta, delta ~ N(0, sigma^2) i.i.d.

Keyed noise (our reading, SPEC.md sec. 1): the noise a sample gets depends only on
``(seed, sample id in the source dataset, sigma)``. Sample ``i`` gets ``sigma * z_i`` where ``z_i``
is a standard-normal vector from the stream ``(seed, "noise", id_i)``. Consequences:

* nested subsets and re-disclosures of the same sample at the same sigma carry the same noise, so
  averaging several releases does not wash the noise out (Sec. 5.1's privacy decline needs fresh
  noise, i.e. another ``seed``);
* a sweep over sigma uses one noise direction per sample, scaled (common random numbers): the
  curves vs sigma are smooth, not re-rolled at every point.

Which samples are obfuscated (fraction R < 1) is keyed too: each sample gets a uniform score from
``(seed, "select", id)``; the ``round(R*N)`` lowest scores in the set are obfuscated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from pudlab.data.dataset import LabeledImages, fingerprint_arrays
from pudlab.errors import ObfuscationError
from pudlab.seeding import derive_rng


@dataclass(frozen=True)
class ObfuscationParams:
    """Parameters of O(T)."""

    sigma: float
    """Noise standard deviation, in units of the [0, 1] pixel scale."""
    fraction: float = 1.0
    """R: fraction of the samples obfuscated (the paper uses 1)."""
    seed: int = 0
    """Noise key: the same seed gives the same noise for the same sample id."""
    clip: bool = False
    """Clip the result to [0, 1] (the paper does not)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ObfuscationError(f"sigma must be a finite number >= 0, got {self.sigma}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ObfuscationError(f"fraction R must be in [0, 1], got {self.fraction}")
        if self.seed < 0:
            raise ObfuscationError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_noise(sample_id: int, shape: tuple[int, ...], *, seed: int) -> np.ndarray:
    """The unit-variance noise vector z of one sample (float32), keyed by ``(seed, id)``."""
    return derive_rng(seed, "noise", int(sample_id)).standard_normal(shape, dtype=np.float32)


def selected_mask(ids: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Boolean mask of the ``round(fraction * N)`` samples that get noise (keyed by id)."""
    count = int(round(fraction * len(ids)))
    if count == len(ids):
        return np.ones(len(ids), dtype=bool)
    scores = np.array([derive_rng(seed, "select", int(i)).random() for i in ids])
    mask = np.zeros(len(ids), dtype=bool)
    mask[np.argsort(scores, kind="stable")[:count]] = True
    return mask


def noise_for(ids: np.ndarray, sample_shape: tuple[int, ...], *, seed: int) -> np.ndarray:
    """Unit noise for every id, stacked: (N, *sample_shape) float32."""
    noise = np.empty((len(ids), *sample_shape), dtype=np.float32)
    for row, sample_id in enumerate(ids):
        noise[row] = sample_noise(int(sample_id), sample_shape, seed=seed)
    return noise


def obfuscate(data: LabeledImages, *, sigma: float, fraction: float = 1.0, seed: int = 0,
              clip: bool = False) -> LabeledImages:
    """O(T): Gaussian noise of std ``sigma`` on a keyed fraction of the samples; labels unchanged.

    ``sigma = 0`` returns the images unchanged (clipping still applies when asked).

    >>> import numpy as np
    >>> from pudlab.data import LabeledImages
    >>> t = LabeledImages(np.zeros((2, 1, 2, 2), np.float32), np.arange(2), np.arange(2))
    >>> bool((obfuscate(t, sigma=0.0).images == 0).all())
    True
    """
    params = ObfuscationParams(sigma, fraction, seed, clip)
    images = data.images
    if params.sigma > 0 and params.fraction > 0:
        mask = selected_mask(data.ids, params.fraction, seed=params.seed)
        images = images.copy()
        positions = np.flatnonzero(mask)
        noise = noise_for(data.ids[positions], data.sample_shape, seed=params.seed)
        images[positions] += np.float32(params.sigma) * noise
    if params.clip:
        images = np.clip(images, 0.0, 1.0)
    return data.with_images(images)


def obfuscation_manifest(
    source: LabeledImages,
    result: LabeledImages,
    params: ObfuscationParams,
    *,
    source_fingerprint: str,
    recipe: dict | None = None,
) -> dict:
    """The manifest that travels with an obfuscated set: what it came from and how it was made."""
    return {
        "kind": "pudlab.obfuscated_dataset",
        "source_fingerprint": source_fingerprint,
        "sample_fingerprint": source.fingerprint(),
        "sampling_recipe": recipe,
        "obfuscation": params.to_dict(),
        "noise_model": "keyed: sigma * N(0,1) from stream (seed, 'noise', sample id)",
        "num_samples": len(result),
        "arrays_sha256": {
            "x": fingerprint_arrays(result.images),
            "y": fingerprint_arrays(result.labels),
            "ids": fingerprint_arrays(result.ids),
        },
    }


__all__ = [
    "ObfuscationParams",
    "noise_for",
    "obfuscate",
    "obfuscation_manifest",
    "sample_noise",
    "selected_mask",
]
