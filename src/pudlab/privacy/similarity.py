"""Image similarity of each released sample to its source: PSNR and SSIM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pudlab.errors import PudlabError
from pudlab.records import Record

PSNR_CAP_DB = 100.0
"""PSNR of an exact copy (MSE 0) is infinite; per-sample PSNR is capped here so means stay finite."""


def flatten_samples(images: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, features), one row per sample."""
    images = np.asarray(images)
    return images.reshape(len(images), -1)


def psnr_per_sample(reference: np.ndarray, estimate: np.ndarray, *, data_range: float) -> np.ndarray:
    """PSNR in dB of each ``estimate[i]`` to ``reference[i]``: 10 log10(data_range^2 / MSE_i).

    Same formula as ``skimage.metrics.peak_signal_noise_ratio`` (vectorized, float64); capped at
    :data:`PSNR_CAP_DB` for an exact copy.

    >>> import numpy as np
    >>> float(psnr_per_sample(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 0.1), data_range=1.0)[0])
    20.0
    """
    if data_range <= 0:
        raise PudlabError(f"data_range must be > 0, got {data_range}")
    reference, estimate = np.asarray(reference), np.asarray(estimate)
    if reference.shape != estimate.shape:
        raise PudlabError(f"PSNR: shapes {reference.shape} and {estimate.shape} differ")
    diff = flatten_samples(estimate).astype(np.float64) - flatten_samples(reference).astype(np.float64)
    mse = np.mean(diff * diff, axis=1)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(data_range**2 / mse)
    return np.minimum(values, PSNR_CAP_DB)


def ssim_per_sample(reference: np.ndarray, estimate: np.ndarray, *, data_range: float) -> np.ndarray:
    """SSIM (scikit-image, 7x7 uniform window, or the largest odd window that fits) per sample.

    ``reference``/``estimate``: (N, C, H, W); colour images are compared channel-wise and averaged.
    """
    from skimage.metrics import structural_similarity

    reference, estimate = np.asarray(reference), np.asarray(estimate)
    if reference.shape != estimate.shape or reference.ndim != 4:
        raise PudlabError(f"SSIM: expected two (N, C, H, W) arrays of one shape, got {reference.shape}, {estimate.shape}")
    channels, height, width = reference.shape[1:]
    window = min(7, height, width)
    window -= 1 - window % 2
    if window < 3:
        raise PudlabError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    values = np.empty(len(reference), dtype=np.float64)
    for index in range(len(reference)):
        if channels == 1:
            first, second, axis = reference[index, 0], estimate[index, 0], None
        else:
            first, second, axis = reference[index], estimate[index], 0
        values[index] = structural_similarity(
            first.astype(np.float64), second.astype(np.float64), data_range=data_range,
            win_size=window, channel_axis=axis,
        )
    return values


@dataclass(frozen=True)
class SimilaritySummary(Record):
    """PSNR (dB) and SSIM of the released samples to their sources: mean, median, std."""

    psnr_mean: float
    psnr_median: float
    psnr_std: float
    ssim_mean: float
    ssim_median: float
    ssim_std: float
    samples: int

    @classmethod
    def of(cls, reference: np.ndarray, released: np.ndarray, *, data_range: float) -> SimilaritySummary:
        """Summarize :func:`psnr_per_sample` and :func:`ssim_per_sample` of ``released``."""
        psnr = psnr_per_sample(reference, released, data_range=data_range)
        ssim = ssim_per_sample(reference, released, data_range=data_range)
        return cls(float(psnr.mean()), float(np.median(psnr)), float(psnr.std()), float(ssim.mean()),
                   float(np.median(ssim)), float(ssim.std()), len(reference))


__all__ = ["PSNR_CAP_DB", "SimilaritySummary", "flatten_samples", "psnr_per_sample", "ssim_per_sample"]
