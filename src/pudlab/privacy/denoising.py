"""Denoising attack: Gaussian filter, total variation (Chambolle) and non-local means (Buades et al.
2005) with parameters scaled by the known sigma; the best PSNR/SSIM an attacker recovers (parameter
chosen with the ground truth: an upper bound) and the linkage after denoising."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.errors import PudlabError
from pudlab.privacy.linkage import linkage_rate
from pudlab.privacy.similarity import psnr_per_sample, ssim_per_sample
from pudlab.records import Record

DENOISERS = ("clip", "gaussian", "tv", "nlm")
"""Denoisers of the denoising attack."""


@dataclass(frozen=True)
class DenoiseGrid(Record):
    """Parameters the denoising attacker tries (it keeps the best by PSNR: an upper bound)."""

    gaussian_widths: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)
    """Gaussian filter std, in pixels (spatial axes only)."""
    tv_weights: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Total-variation (Chambolle) weight, in units of the noise sigma."""
    nlm_strengths: tuple[float, ...] = (0.6, 0.8, 1.0)
    """Non-local means filter strength h, in units of the noise sigma (NLM also gets sigma)."""
    nlm_patch_size: int = 5
    """NLM patch side, pixels."""
    nlm_patch_distance: int = 6
    """NLM search radius, pixels."""


def denoise(images: np.ndarray, method: str, *, strength: float, sigma: float, grid: DenoiseGrid | None = None,
            clip: bool = True) -> np.ndarray:
    """Apply one denoiser to (N, C, H, W) images; the result is clipped to [0, 1] when ``clip``.

    ``strength`` is the method's parameter: ``gaussian``: filter std in pixels; ``tv``: weight / sigma;
    ``nlm``: h / sigma; ``clip``: ignored (only the clipping to the known pixel range).
    """
    grid = grid or DenoiseGrid()
    images = np.asarray(images, dtype=np.float32)
    if method == "clip":
        out = images.copy()
    elif method == "gaussian":
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(images, sigma=(0.0, 0.0, strength, strength), mode="nearest")
    elif method in ("tv", "nlm"):
        from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

        out = np.empty_like(images)
        channels = images.shape[1]
        for index, image in enumerate(images):
            plane = image[0] if channels == 1 else image
            axis = None if channels == 1 else 0
            if method == "tv":
                result = denoise_tv_chambolle(plane.astype(np.float64), weight=strength * sigma, channel_axis=axis)
            else:
                result = denoise_nl_means(plane.astype(np.float64), h=strength * sigma, sigma=sigma, fast_mode=True,
                                          patch_size=grid.nlm_patch_size, patch_distance=grid.nlm_patch_distance,
                                          channel_axis=axis)
            out[index] = result if channels > 1 else result[None]
    else:
        raise PudlabError(f"unknown denoiser {method!r}; known: {', '.join(DENOISERS)}")
    return np.clip(out, 0.0, 1.0) if clip else out


def _strengths(method: str, grid: DenoiseGrid) -> tuple[float, ...]:
    return {"clip": (0.0,), "gaussian": grid.gaussian_widths, "tv": grid.tv_weights, "nlm": grid.nlm_strengths}[method]


@dataclass(frozen=True)
class ImageScores(Record):
    """Mean PSNR (dB) and SSIM of an estimate to the raw samples, and its linkage rate."""

    psnr: float
    ssim: float
    linkage: float | None = None
    """None when the attack ran without a candidate pool."""

    OMIT_NONE = ("linkage",)


@dataclass(frozen=True)
class DenoiserScores(Record):
    """One denoiser at its best parameter (by mean PSNR)."""

    strength: float
    scores: ImageScores
    """Written into this record's object (``{strength, psnr, ssim, linkage}``)."""

    FLATTEN = ("scores",)


@dataclass(frozen=True)
class BestScores(Record):
    """Each metric's maximum over the release and the denoisers, and which one reached it."""

    psnr: float
    psnr_by: str
    ssim: float
    ssim_by: str
    linkage: float | None = None
    linkage_by: str | None = None

    OMIT_NONE = ("linkage", "linkage_by")


@dataclass(frozen=True)
class DenoisingResult(Record):
    """What :func:`denoising_attack` found."""

    samples: int
    methods: dict[str, DenoiserScores]
    """Per denoiser (none at sigma 0)."""
    released: ImageScores
    """The undenoised release."""
    best: BestScores
    """The worst case for privacy, each metric separately."""


def _best_over(rows: Sequence[tuple[str, ImageScores]]) -> BestScores:
    """Per metric: the highest value over ``rows`` (the first on ties) and the row's name."""
    picked: dict[str, Any] = {}
    metrics = ("psnr", "ssim") if rows[0][1].linkage is None else ("psnr", "ssim", "linkage")
    for metric in metrics:
        values = [getattr(scores, metric) for _, scores in rows]
        where = int(np.argmax(values))
        picked[metric], picked[f"{metric}_by"] = values[where], rows[where][0]
    return BestScores(**picked)


def denoising_attack(
    raw: np.ndarray,
    released: np.ndarray,
    *,
    sigma: float,
    data_range: float = 1.0,
    query_ids: np.ndarray | None = None,
    pool: np.ndarray | None = None,
    pool_ids: np.ndarray | None = None,
    methods: Sequence[str] = DENOISERS,
    grid: DenoiseGrid | None = None,
) -> DenoisingResult:
    """The best each denoiser recovers: per method, the parameter with the best mean PSNR, and its
    mean PSNR, SSIM and (when a pool is given) linkage rate; plus ``best`` over methods (each
    metric maximized separately: the worst case for privacy) including the undenoised release.

    At ``sigma == 0`` no denoiser runs (the release is the raw data).
    """
    grid = grid or DenoiseGrid()

    def scores(estimate: np.ndarray) -> ImageScores:
        psnr = float(psnr_per_sample(raw, estimate, data_range=data_range).mean())
        ssim = float(ssim_per_sample(raw, estimate, data_range=data_range).mean())
        linkage = None
        if pool is not None and pool_ids is not None and query_ids is not None:
            linkage = linkage_rate(estimate, query_ids, pool, pool_ids)
        return ImageScores(psnr, ssim, linkage)

    released_scores = scores(released)
    by_method: dict[str, DenoiserScores] = {}
    if sigma > 0:
        for method in methods:
            best_strength, best_psnr, best_estimate = None, -math.inf, None
            for strength in _strengths(method, grid):
                estimate = denoise(released, method, strength=strength, sigma=sigma, grid=grid)
                value = float(psnr_per_sample(raw, estimate, data_range=data_range).mean())
                if value > best_psnr:
                    best_strength, best_psnr, best_estimate = strength, value, estimate
            assert best_estimate is not None and best_strength is not None
            by_method[method] = DenoiserScores(best_strength, scores(best_estimate))
    rows = [("released", released_scores), *((name, row.scores) for name, row in by_method.items())]
    return DenoisingResult(len(raw), by_method, released_scores, _best_over(rows))


__all__ = ["DENOISERS", "BestScores", "DenoiseGrid", "DenoiserScores", "DenoisingResult", "ImageScores", "denoise",
           "denoising_attack"]
