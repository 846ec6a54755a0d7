"""Privacy decline (paper Sec. 5.1): the averaging attack over n = 1..N disclosures of (a) fresh
i.i.d. noise each time (error sigma / sqrt(n)), (b) keyed noise (pudlab's default: the same noise
each time, no gain), (c) disjoint fine-grained subsets (each sample disclosed once)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.privacy._records import record_from_dict
from pudlab.privacy.linkage import linkage_rate
from pudlab.privacy.similarity import psnr_per_sample
from pudlab.seeding import derive_rng, derive_seed

DECLINE_SCHEMES = ("fresh", "keyed", "disjoint")
"""Disclosure schemes of the privacy-decline attack (Sec. 5.1): (a), (b), (c)."""


def check_scheme(scheme: str) -> None:
    """Refuse a name outside :data:`DECLINE_SCHEMES`."""
    if scheme not in DECLINE_SCHEMES:
        raise PudlabError(f"unknown disclosure scheme {scheme!r}; known: {', '.join(DECLINE_SCHEMES)}")


def disclosure_seed(noise_seed: int, disclosure: int) -> int:
    """Noise seed of fresh disclosure ``k`` (k = 0 is the ordinary release with ``noise_seed``)."""
    return noise_seed if disclosure == 0 else derive_seed(noise_seed, "fresh-disclosure", disclosure)


@dataclass(frozen=True)
class DeclineRow:
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

    def to_dict(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        if self.linkage is None and self.reidentified_fraction is None:
            del row["linkage"], row["reidentified_fraction"]
        return row

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "decline row") -> DeclineRow:
        return record_from_dict(cls, data, where)


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
    * ``keyed``: every disclosure uses ``noise_seed``: identical noise, the mean is one release;
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


__all__ = ["DECLINE_SCHEMES", "DeclineRow", "averaging_attack", "check_scheme", "disclosure_seed"]
