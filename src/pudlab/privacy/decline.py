"""Privacy decline (paper Sec. 5.1): the averaging attack over n = 1..N disclosures of (a) fresh
i.i.d. noise each time (error sigma / sqrt(n)), (b) keyed noise re-released at the same sigma (the
same noise each time, no gain: this needs the key to stay secret), (c) disjoint fine-grained subsets
(each sample disclosed once).

Releases of the same samples at several sigmas are independent draws (see
:func:`pudlab.obfuscation.release`): the attacker's best estimate is the inverse-variance mean
(:func:`inverse_variance_estimate`), whose error is :func:`effective_sigma` = (sum_i sigma_i^-2)^-1/2,
i.e. sigma / sqrt(n) for n releases at one sigma with fresh noise. Noise that shares one direction
across sigmas (the experiment engine's internal noise) falls to :func:`differencing_attack` exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.privacy.linkage import linkage_rate
from pudlab.privacy.similarity import psnr_per_sample
from pudlab.records import Record
from pudlab.seeding import derive_rng, derive_seed

DECLINE_SCHEMES = ("fresh", "keyed", "disjoint")
"""Disclosure schemes of the privacy-decline attack (Sec. 5.1): (a), (b), (c)."""


def check_scheme(scheme: str) -> None:
    """Refuse a name outside :data:`DECLINE_SCHEMES`."""
    if scheme not in DECLINE_SCHEMES:
        raise PudlabError(f"unknown disclosure scheme {scheme!r}; known: {', '.join(DECLINE_SCHEMES)}")


def effective_sigma(sigmas: Sequence[float]) -> float:
    """(sum_i sigma_i^-2)^-1/2: the noise left after optimally combining independent releases.

    0 when any sigma is 0 (a clean release); sigma / sqrt(n) for n releases at one sigma.
    """
    if not sigmas:
        raise PudlabError("effective_sigma needs at least one sigma")
    if any(s < 0 or not math.isfinite(s) for s in sigmas):
        raise PudlabError(f"sigmas must be finite and >= 0, got {list(sigmas)}")
    if min(sigmas) == 0:
        return 0.0
    return 1.0 / math.sqrt(sum(1.0 / (s * s) for s in sigmas))


def inverse_variance_estimate(releases: Sequence[np.ndarray], sigmas: Sequence[float]) -> np.ndarray:
    """The attacker's estimate of T from independent releases: the mean weighted by 1 / sigma_i^2.

    Unbiased (unclipped noise), with per-pixel error std :func:`effective_sigma` (``sigmas``); the
    best unbiased linear estimate, and with Gaussian noise the best unbiased estimate of all.
    """
    if len(releases) != len(sigmas) or not releases:
        raise PudlabError(f"{len(releases)} releases but {len(sigmas)} sigmas")
    if min(sigmas) <= 0:
        return np.asarray(releases[int(np.argmin(sigmas))], dtype=np.float64)
    weights = np.array([1.0 / (s * s) for s in sigmas])
    total = sum(w * np.asarray(r, dtype=np.float64) for w, r in zip(weights, releases, strict=True))
    return total / weights.sum()


def differencing_attack(release_1: np.ndarray, sigma_1: float, release_2: np.ndarray, sigma_2: float) -> np.ndarray:
    """x = (sigma_2 r_1 - sigma_1 r_2) / (sigma_2 - sigma_1): T exactly when both releases carry one
    noise direction per sample scaled by sigma (r_k = T + sigma_k z); with independent draws its
    error is sigma_1 sigma_2 sqrt(2) / |sigma_2 - sigma_1| per pixel (worse than either release)."""
    if sigma_1 == sigma_2:
        raise PudlabError("the differencing attack needs two different sigmas")
    r1, r2 = np.asarray(release_1, dtype=np.float64), np.asarray(release_2, dtype=np.float64)
    return (sigma_2 * r1 - sigma_1 * r2) / (sigma_2 - sigma_1)


def disclosure_seed(noise_seed: int, disclosure: int) -> int:
    """Noise seed of fresh disclosure ``k`` (k = 0 is the ordinary release with ``noise_seed``)."""
    return noise_seed if disclosure == 0 else derive_seed(noise_seed, "fresh-disclosure", disclosure)


@dataclass(frozen=True)
class DeclineRow(Record):
    """What the averaging attacker recovers after ``n`` disclosures."""

    n: int
    psnr: float
    """Mean PSNR (dB) of the attacker's estimate over the exposed samples."""
    rmse: float
    """Root of the mean squared error over the exposed samples, pixel units."""
    exposed_fraction: float
    """Samples disclosed at least once."""
    linkage: float | None = None
    """Linkage rate over the exposed samples (None without a pool)."""
    reidentified_fraction: float | None = None
    """linkage * exposed_fraction: the share of all samples re-identified so far."""

    OMIT_NONE = ("linkage", "reidentified_fraction")


def averaging_attack(
    data: LabeledImages,
    *,
    sigma: float,
    disclosures: int,
    scheme: str,
    noise_seed: int = 0,
    partition_seed: int = 0,
    clip: bool = False,
    data_range: float = 1.0,
    pool: np.ndarray | None = None,
    pool_ids: np.ndarray | None = None,
) -> list[DeclineRow]:
    """Sec. 5.1's privacy decline: what an attacker averaging n = 1..N disclosures recovers.

    Every disclosure is made with :func:`pudlab.obfuscation.obfuscate` as a data owner would:

    * ``fresh``: disclosure k uses noise seed :func:`disclosure_seed` (``noise_seed``, k): new
      i.i.d. noise each time; the attacker's mean has error sigma / sqrt(n);
    * ``keyed``: every disclosure uses ``noise_seed`` at the same sigma: identical noise, the mean is
      one release (a keyed release re-released at the same sigma; the key must stay secret);
    * ``disjoint``: the samples are split into N disjoint, seeded subsets (stream
      ``(partition_seed, "disjoint-partition")``); disclosure k releases subset k only; each sample
      is disclosed once.

    The attacker's estimate of a sample is the plain (unclipped) mean of its disclosures; one
    :class:`DeclineRow` per n (linkage only when ``pool`` is given).
    """
    from pudlab.obfuscation import obfuscate

    check_scheme(scheme)
    if disclosures < 1:
        raise PudlabError(f"disclosures must be >= 1, got {disclosures}")
    count = len(data)
    total = np.zeros(data.images.shape, dtype=np.float64)
    seen = np.zeros(count, dtype=np.int64)
    if scheme == "disjoint":
        order = derive_rng(partition_seed, "disjoint-partition").permutation(count)
        groups = np.array_split(order, disclosures)
    rows: list[DeclineRow] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for disclosure in range(disclosures):
        if scheme == "disjoint":
            positions = np.sort(groups[disclosure])
            released = obfuscate(data.take(positions), sigma=sigma, seed=noise_seed, clip=clip).images
        else:
            positions = np.arange(count)
            seed = disclosure_seed(noise_seed, disclosure) if scheme == "fresh" else noise_seed
            released = obfuscate(data, sigma=sigma, seed=seed, clip=clip).images
        total[positions] += released
        seen[positions] += 1
        exposed = np.flatnonzero(seen)
        estimate = (total[exposed] / seen[exposed, None, None, None]).astype(np.float32)
        if previous is not None and np.array_equal(previous[0], exposed) and np.array_equal(previous[1], estimate):
            rows.append(dataclasses.replace(rows[-1], n=disclosure + 1))  # same estimate (keyed noise): same scores
            continue
        previous = (exposed, estimate)
        rows.append(_score_estimate(data, exposed, estimate, disclosure + 1, data_range, pool, pool_ids))
    return rows


def _score_estimate(data: LabeledImages, exposed: np.ndarray, estimate: np.ndarray, n: int, data_range: float,
                    pool: np.ndarray | None, pool_ids: np.ndarray | None) -> DeclineRow:
    raw = data.images[exposed]
    diff = estimate.astype(np.float64) - raw
    psnr = float(psnr_per_sample(raw, estimate, data_range=data_range).mean())
    rmse = float(math.sqrt(np.mean(diff * diff)))
    exposed_fraction = len(exposed) / len(data)
    if pool is None or pool_ids is None:
        return DeclineRow(n, psnr, rmse, exposed_fraction)
    linkage = linkage_rate(estimate, data.ids[exposed], pool, pool_ids)
    return DeclineRow(n, psnr, rmse, exposed_fraction, linkage, linkage * exposed_fraction)


__all__ = ["DECLINE_SCHEMES", "DeclineRow", "averaging_attack", "check_scheme", "differencing_attack",
           "disclosure_seed", "effective_sigma", "inverse_variance_estimate"]
