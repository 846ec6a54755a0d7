"""Privacy of an obfuscated dataset T' = O(T; sigma) against its raw T: attacks and accounting.

The paper (Yu et al., Sec. 5) leaves Privacy qualitative; this module measures it. Each metric is
a pure function of arrays; :func:`privacy_report` at the bottom runs them all on a dataset (the
``pudlab privacy`` command). Formulas, defaults and assumptions are in ``docs/privacy.md``.

* Image similarity: PSNR (dB) and SSIM (scikit-image, Wang et al. 2004) of each released sample
  to its source, with ``data_range`` given explicitly (the raw pixel scale, 1.0).
* Re-identification (linkage): the fraction of released samples whose L2-nearest raw sample in a
  candidate pool (the source plus many others) is their own source. For unclipped Gaussian noise
  and a uniform prior over the pool, the L2-nearest candidate is the Bayes-optimal guess.
* Denoising attack: Gaussian filter, total variation (Chambolle) and non-local means (Buades et
  al. 2005) with parameters scaled by the known sigma; the best PSNR/SSIM an attacker recovers
  (parameter chosen with the ground truth: an upper bound) and the linkage after denoising.
* Privacy decline (Sec. 5.1): the averaging attack over n = 1..N disclosures of (a) fresh i.i.d.
  noise each time (error sigma / sqrt(n)), (b) keyed noise (pudlab's default: the same noise each
  time, no gain), (c) disjoint fine-grained subsets (each sample disclosed once).
* Membership inference: the loss-threshold attack (Yeom et al. 2018) against a model trained on T'.
* Differential privacy accounting: epsilon(delta) of one release as a Gaussian mechanism, exact by
  the analytic Gaussian mechanism (Balle & Wang 2018), with the classic bound (Dwork & Roth 2014,
  Thm. A.1) for comparison; n fresh-noise releases composed exactly (Gaussian DP, Dong, Roth & Su
  2019) and by zCDP (Bun & Steinke 2016).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .data.dataset import LabeledImages, SourceDataset
from .errors import PudlabError
from .seeding import derive_rng, derive_seed

PSNR_CAP_DB = 100.0
"""PSNR of an exact copy (MSE 0) is infinite; per-sample PSNR is capped here so means stay finite."""

DECLINE_SCHEMES = ("fresh", "keyed", "disjoint")
"""Disclosure schemes of the privacy-decline attack (Sec. 5.1): (a), (b), (c)."""

DENOISERS = ("clip", "gaussian", "tv", "nlm")
"""Denoisers of the denoising attack."""

SENSITIVITY_KINDS = ("image", "pixel")
"""Per-sample L2 sensitivities the DP accounting reports (see :func:`l2_sensitivity`)."""


# ---------------------------------------------------------------------------------------- similarity
def _flat(images: np.ndarray) -> np.ndarray:
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
    diff = _flat(estimate).astype(np.float64) - _flat(reference).astype(np.float64)
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


# ---------------------------------------------------------------------------------------- linkage
def nearest_indices(queries: np.ndarray, pool: np.ndarray, *, chunk_size: int = 256) -> np.ndarray:
    """Index in ``pool`` of the L2-nearest candidate of each query (ties: the lowest index).

    Squared distances ||q||^2 + ||p||^2 - 2 q.p by a float64 matmul (torch), ``chunk_size``
    queries at a time; float64 keeps the cancellation error far below the gaps between MNIST-like
    neighbours (the gaps are O(1), the error O(1e-12)).
    """
    import torch

    query_rows = torch.from_numpy(np.ascontiguousarray(_flat(queries), dtype=np.float64))
    pool_rows = torch.from_numpy(np.ascontiguousarray(_flat(pool), dtype=np.float64))
    if query_rows.shape[1] != pool_rows.shape[1]:
        raise PudlabError(f"linkage: queries have {query_rows.shape[1]} features, the pool {pool_rows.shape[1]}")
    if len(pool_rows) == 0:
        raise PudlabError("linkage: the candidate pool is empty")
    pool_norms = (pool_rows * pool_rows).sum(1)
    result = np.empty(len(query_rows), dtype=np.int64)
    for start in range(0, len(query_rows), chunk_size):
        chunk = query_rows[start:start + chunk_size]
        squared = (chunk * chunk).sum(1, keepdim=True) + pool_norms[None, :] - 2.0 * chunk @ pool_rows.T
        result[start:start + len(chunk)] = squared.argmin(1).numpy()
    return result


def linkage_hits(queries: np.ndarray, query_ids: np.ndarray, pool: np.ndarray, pool_ids: np.ndarray,
                 *, chunk_size: int = 256) -> np.ndarray:
    """Boolean per query: is its L2-nearest pool sample its own source (same sample id)?"""
    query_ids, pool_ids = np.asarray(query_ids), np.asarray(pool_ids)
    missing = np.setdiff1d(query_ids, pool_ids)
    if len(missing):
        raise PudlabError(f"linkage: the pool must contain every query's source; {len(missing)} missing (e.g. id {missing[0]})")
    return pool_ids[nearest_indices(queries, pool, chunk_size=chunk_size)] == query_ids


def linkage_rate(queries: np.ndarray, query_ids: np.ndarray, pool: np.ndarray, pool_ids: np.ndarray,
                 *, chunk_size: int = 256) -> float:
    """Fraction of queries re-identified: nearest raw sample (L2) in ``pool`` is their source.

    Chance level for a blind guess is ``1 / len(pool)``.
    """
    if len(queries) == 0:
        return float("nan")
    return float(linkage_hits(queries, query_ids, pool, pool_ids, chunk_size=chunk_size).mean())


# ---------------------------------------------------------------------------------------- denoising
@dataclass(frozen=True)
class DenoiseGrid:
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

    def to_dict(self) -> dict:
        return asdict(self)


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
) -> dict[str, Any]:
    """The best each denoiser recovers: per method, the parameter with the best mean PSNR, and its
    mean PSNR, SSIM and (when a pool is given) linkage rate; plus ``best`` over methods (each
    metric maximized separately: the worst case for privacy) including the undenoised release.

    At ``sigma == 0`` no denoiser runs (the release is the raw data).
    """
    grid = grid or DenoiseGrid()
    with_linkage = pool is not None and pool_ids is not None and query_ids is not None

    def scores(estimate: np.ndarray) -> dict[str, float]:
        row = {"psnr": float(psnr_per_sample(raw, estimate, data_range=data_range).mean()),
               "ssim": float(ssim_per_sample(raw, estimate, data_range=data_range).mean())}
        if with_linkage:
            row["linkage"] = linkage_rate(estimate, query_ids, pool, pool_ids)
        return row

    result: dict[str, Any] = {"samples": len(raw), "methods": {}, "released": scores(released)}
    if sigma > 0:
        for method in methods:
            best_strength, best_psnr, best_estimate = None, -math.inf, None
            for strength in _strengths(method, grid):
                estimate = denoise(released, method, strength=strength, sigma=sigma, grid=grid)
                value = float(psnr_per_sample(raw, estimate, data_range=data_range).mean())
                if value > best_psnr:
                    best_strength, best_psnr, best_estimate = strength, value, estimate
            assert best_estimate is not None
            result["methods"][method] = {"strength": best_strength, **scores(best_estimate)}
    rows = [result["released"], *result["methods"].values()]
    best: dict[str, Any] = {}
    for metric in rows[0]:
        values = [row[metric] for row in rows]
        where = int(np.argmax(values))
        best[metric] = values[where]
        best[f"{metric}_by"] = "released" if where == 0 else list(result["methods"])[where - 1]
    result["best"] = best
    return result


# ---------------------------------------------------------------------------------------- decline
def disclosure_seed(noise_seed: int, disclosure: int) -> int:
    """Noise seed of fresh disclosure ``k`` (k = 0 is the ordinary release with ``noise_seed``)."""
    return noise_seed if disclosure == 0 else derive_seed(noise_seed, "fresh-disclosure", disclosure)


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
) -> list[dict[str, float]]:
    """Sec. 5.1's privacy decline: what an attacker averaging n = 1..N disclosures recovers.

    Every disclosure is made with :func:`pudlab.obfuscation.obfuscate` as a data owner would:

    * ``fresh``: disclosure k uses noise seed :func:`disclosure_seed` (``noise_seed``, k): new
      i.i.d. noise each time; the attacker's mean has error sigma / sqrt(n);
    * ``keyed``: every disclosure uses ``noise_seed``: identical noise, the mean is one release;
    * ``disjoint``: the samples are split into N disjoint, seeded subsets (stream
      ``(partition_seed, "disjoint-partition")``); disclosure k releases subset k only; each sample
      is disclosed once.

    The attacker's estimate of a sample is the plain (unclipped) mean of its disclosures. Per n:
    ``psnr`` (mean dB) and ``rmse`` (root of the mean MSE, pixel units) over the exposed samples,
    ``linkage`` over the exposed samples (when ``pool`` is given), ``exposed_fraction`` (samples
    disclosed at least once) and ``reidentified_fraction`` = linkage * exposed_fraction.
    """
    from .obfuscation import obfuscate

    if scheme not in DECLINE_SCHEMES:
        raise PudlabError(f"unknown disclosure scheme {scheme!r}; known: {', '.join(DECLINE_SCHEMES)}")
    if disclosures < 1:
        raise PudlabError(f"disclosures must be >= 1, got {disclosures}")
    count = len(data)
    total = np.zeros(data.images.shape, dtype=np.float64)
    seen = np.zeros(count, dtype=np.int64)
    if scheme == "disjoint":
        order = derive_rng(partition_seed, "disjoint-partition").permutation(count)
        groups = np.array_split(order, disclosures)
    rows: list[dict[str, float]] = []
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
            rows.append({**rows[-1], "n": disclosure + 1})  # same estimate as before (keyed noise): same scores
            continue
        previous = (exposed, estimate)
        raw = data.images[exposed]
        diff = estimate.astype(np.float64) - raw
        row = {
            "n": disclosure + 1,
            "psnr": float(psnr_per_sample(raw, estimate, data_range=data_range).mean()),
            "rmse": float(math.sqrt(np.mean(diff * diff))),
            "exposed_fraction": len(exposed) / count,
        }
        if pool is not None and pool_ids is not None:
            row["linkage"] = linkage_rate(estimate, data.ids[exposed], pool, pool_ids)
            row["reidentified_fraction"] = row["linkage"] * row["exposed_fraction"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------- membership
@dataclass(frozen=True)
class MembershipResult:
    """A loss-threshold membership-inference attack's scores."""

    auc: float
    """Area under the ROC curve (0.5: no better than a coin)."""
    auc_stderr: float
    """Standard error of the AUC (Hanley & McNeil 1982)."""
    tpr_at_fpr: float
    """Highest true-positive rate with false-positive rate <= ``fpr``."""
    fpr: float
    """The false-positive budget of ``tpr_at_fpr``."""
    members: int
    nonmembers: int
    member_loss: float
    """Mean cross-entropy on the members."""
    nonmember_loss: float
    """Mean cross-entropy on the non-members."""

    def to_dict(self) -> dict:
        return asdict(self)


def roc_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney U / (n_p n_n)).

    >>> roc_auc(np.array([3.0, 2.0]), np.array([1.0, 2.0]))
    0.875
    """
    from scipy.stats import rankdata

    positive, negative = np.asarray(positive_scores, float), np.asarray(negative_scores, float)
    if len(positive) == 0 or len(negative) == 0:
        raise PudlabError("AUC needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate([positive, negative]))
    rank_sum = ranks[: len(positive)].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def tpr_at_fpr(positive_scores: np.ndarray, negative_scores: np.ndarray, *, fpr: float = 0.01) -> float:
    """Highest TPR of a threshold rule ``score > t`` whose FPR on the negatives is <= ``fpr``.

    >>> tpr_at_fpr(np.array([5.0, 4.0, 1.0]), np.array([3.0, 2.0, 0.0]), fpr=0.0)
    0.6666666666666666
    """
    positive, negative = np.asarray(positive_scores, float), np.sort(np.asarray(negative_scores, float))[::-1]
    allowed = int(math.floor(fpr * len(negative) + 1e-9))
    if allowed >= len(negative):
        return 1.0
    threshold = negative[allowed]  # at most `allowed` negatives lie strictly above it
    return float(np.mean(positive > threshold))


def loss_threshold_attack(member_losses: np.ndarray, nonmember_losses: np.ndarray, *,
                          fpr: float = 0.01) -> MembershipResult:
    """Yeom et al. (2018): guess "member" when the loss is low (score = -loss)."""
    members, nonmembers = np.asarray(member_losses, float), np.asarray(nonmember_losses, float)
    auc = roc_auc(-members, -nonmembers)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    n_p, n_n = len(members), len(nonmembers)
    variance = (auc * (1 - auc) + (n_p - 1) * (q1 - auc * auc) + (n_n - 1) * (q2 - auc * auc)) / (n_p * n_n)
    return MembershipResult(auc, math.sqrt(max(variance, 0.0)), tpr_at_fpr(-members, -nonmembers, fpr=fpr), fpr,
                            n_p, n_n, float(members.mean()), float(nonmembers.mean()))


def per_sample_losses(model: Any, data: LabeledImages, *, device: str = "cpu", batch_size: int = 1000) -> np.ndarray:
    """Cross-entropy of each sample under ``model`` (a torch module), float64."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    losses = np.empty(len(data), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            images = torch.from_numpy(data.images[start:start + batch_size]).to(device)
            labels = torch.from_numpy(data.labels[start:start + batch_size]).to(device)
            logits = model(images).float()
            losses[start:start + len(labels)] = F.cross_entropy(logits, labels, reduction="none").cpu().numpy()
    model.train(was_training)
    return losses


def membership_inference(model: Any, members: LabeledImages, nonmembers: LabeledImages, *, fpr: float = 0.01,
                         device: str = "cpu") -> MembershipResult:
    """Loss-threshold attack on ``model``: can it tell ``members`` from ``nonmembers``?"""
    return loss_threshold_attack(per_sample_losses(model, members, device=device),
                                 per_sample_losses(model, nonmembers, device=device), fpr=fpr)


# ---------------------------------------------------------------------------------------- DP accounting
def l2_sensitivity(sample_shape: Sequence[int], kind: str, *, data_range: float = 1.0) -> float:
    """Per-sample L2 sensitivity of the release T -> T + noise under replace-one-sample neighbours.

    ``image``: any one whole image may change: the L2 diameter of [0, data_range]^d, i.e.
    ``data_range * sqrt(d)`` (28 for MNIST). ``pixel``: one feature of one sample may change by up
    to ``data_range`` (protects single pixels only).
    """
    if kind == "image":
        return data_range * math.sqrt(math.prod(int(v) for v in sample_shape))
    if kind == "pixel":
        return float(data_range)
    raise PudlabError(f"unknown sensitivity kind {kind!r}; known: {', '.join(SENSITIVITY_KINDS)}")


def gaussian_delta(epsilon: float, *, sigma: float, sensitivity: float) -> float:
    """delta(epsilon) of the Gaussian mechanism (Balle & Wang 2018, Thm. 8), mu = sensitivity / sigma:

    delta = Phi(mu/2 - epsilon/mu) - e^epsilon Phi(-mu/2 - epsilon/mu).
    """
    from scipy.special import log_ndtr

    mu = sensitivity / sigma
    first = log_ndtr(mu / 2 - epsilon / mu)
    second = epsilon + log_ndtr(-mu / 2 - epsilon / mu)
    return float(math.exp(first) * -math.expm1(min(second - first, 0.0)))


def analytic_gaussian_epsilon(*, sigma: float, sensitivity: float, delta: float) -> float:
    """Smallest epsilon with the Gaussian mechanism (sigma, sensitivity) (epsilon, delta)-DP: exact
    (analytic Gaussian mechanism, Balle & Wang 2018). ``inf`` at sigma = 0.

    >>> round(analytic_gaussian_epsilon(sigma=1.0, sensitivity=1.0, delta=1e-5), 3)
    4.377
    """
    from scipy.optimize import brentq
    from scipy.special import log_ndtr

    if not 0 < delta < 1:
        raise PudlabError(f"delta must be in (0, 1), got {delta}")
    if sensitivity < 0:
        raise PudlabError(f"sensitivity must be >= 0, got {sensitivity}")
    if sensitivity == 0:
        return 0.0
    if sigma <= 0:
        return math.inf
    mu = sensitivity / sigma
    if gaussian_delta(0.0, sigma=sigma, sensitivity=sensitivity) <= delta:
        return 0.0
    log_target = math.log(delta)

    def excess(epsilon: float) -> float:
        first = float(log_ndtr(mu / 2 - epsilon / mu))
        second = epsilon + float(log_ndtr(-mu / 2 - epsilon / mu))
        return first + math.log(-math.expm1(min(second - first, -1e-300))) - log_target

    upper = zcdp_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta) + 1.0
    return float(brentq(excess, 0.0, upper, xtol=1e-12, rtol=1e-10, maxiter=500))


def classic_gaussian_epsilon(*, sigma: float, sensitivity: float, delta: float) -> tuple[float, bool]:
    """(epsilon, valid): the classic calibration sigma = sensitivity sqrt(2 ln(1.25/delta)) / epsilon
    solved for epsilon (Dwork & Roth 2014, Thm. A.1); ``valid`` is False when epsilon >= 1, where
    that theorem does not apply."""
    if sigma <= 0:
        return math.inf, False
    epsilon = sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / sigma
    return epsilon, epsilon < 1


def zcdp_epsilon(*, sigma: float, sensitivity: float, delta: float, releases: int = 1) -> float:
    """epsilon from zCDP: ``releases`` Gaussian releases are rho-zCDP with rho = releases *
    sensitivity^2 / (2 sigma^2); rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP (Bun &
    Steinke 2016, Prop. 1.3). A valid upper bound, looser than the exact value."""
    if sigma <= 0:
        return math.inf
    rho = releases * sensitivity**2 / (2 * sigma**2)
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def composed_epsilon(*, sigma: float, sensitivity: float, delta: float, releases: int, scheme: str) -> float:
    """epsilon(delta) after ``releases`` disclosures, exact (Gaussian DP):

    * ``fresh``: n Gaussian mechanisms with the same sensitivity compose to one with
      sigma / sqrt(n) (mu-GDP composes as sqrt(n) mu, Dong, Roth & Su 2019);
    * ``keyed``: every release is a copy of the first (post-processing): epsilon of one release;
    * ``disjoint``: each sample is in one release only (parallel composition): epsilon of one release.
    """
    if scheme not in DECLINE_SCHEMES:
        raise PudlabError(f"unknown disclosure scheme {scheme!r}; known: {', '.join(DECLINE_SCHEMES)}")
    effective = sigma / math.sqrt(releases) if scheme == "fresh" else sigma
    return analytic_gaussian_epsilon(sigma=effective, sensitivity=sensitivity, delta=delta)


def dp_accounting(sigma: float, sample_shape: Sequence[int], *, delta: float, releases: int,
                  data_range: float = 1.0) -> dict[str, Any]:
    """epsilon(delta) of one release and over n = 1..``releases`` disclosures, per sensitivity kind."""
    result: dict[str, Any] = {"delta": delta, "mechanism": "analytic Gaussian (Balle & Wang 2018)",
                              "neighbouring": "replace one sample", "by_sensitivity": {}}
    for kind in SENSITIVITY_KINDS:
        sensitivity = l2_sensitivity(sample_shape, kind, data_range=data_range)
        classic, classic_valid = classic_gaussian_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta)
        result["by_sensitivity"][kind] = {
            "sensitivity": sensitivity,
            "epsilon": analytic_gaussian_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta),
            "epsilon_classic": classic,
            "classic_valid": classic_valid,
            "composition": [
                {"n": n,
                 **{scheme: composed_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta, releases=n, scheme=scheme)
                    for scheme in DECLINE_SCHEMES},
                 "fresh_zcdp_bound": zcdp_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta, releases=n)}
                for n in range(1, releases + 1)
            ],
        }
    return result


# ---------------------------------------------------------------------------------------- orchestration
@dataclass(frozen=True)
class PrivacyConfig:
    """What ``pudlab privacy`` measures and how much of it (defaults fit ~1 min on 2 CPU cores)."""

    queries: int = 500
    """Released samples attacked: a seeded subsample of T_t (stream (seed, "privacy-queries"))."""
    pool_size: int = 5000
    """Candidate pool of the linkage attacker: the queries' sources plus seeded other raw samples of
    the source's training set, this many in all (capped by its size)."""
    denoise_samples: int = 200
    """Queries the denoising attack runs on (the first of the seeded query order)."""
    disclosures: int = 10
    """N of the privacy-decline attack: n = 1..N disclosures."""
    denoise: DenoiseGrid = field(default_factory=DenoiseGrid)
    """Parameter grid of the denoising attack."""
    membership: bool = True
    """Run the membership-inference attack (trains one small model per sigma)."""
    mia_members: int = 1000
    """Training samples of the attacked model (seeded subsample of T_t, stream (seed, "mia-members"))."""
    mia_nonmembers: int = 500
    """Non-members: a seeded subsample of T_e (capped by its size)."""
    mia_epochs: int = 20
    """Epochs of the attacked model (more epochs: more overfitting, a stronger attack)."""
    mia_lr: float = 1e-3
    """Adam learning rate of the attacked model, per step."""
    mia_batch_size: int = 128
    """Batch size of the attacked model."""
    mia_widths: tuple[int, int, int] = (8, 16, 32)
    """Conv widths of the attacked M_cnn."""
    mia_hidden: int = 32
    """Hidden dense units of the attacked M_cnn."""
    mia_fpr: float = 0.01
    """False-positive budget of the reported TPR."""
    delta: float = 1e-5
    """delta of the (epsilon, delta) accounting."""
    seed: int = 0
    """Root seed of every subsample, partition and model init of the attacks."""
    noise_seed: int = 0
    """Obfuscation noise key of the release (pudlab's keyed noise)."""
    split_seed: int = 0
    """Seed of the paper's 90/10 T_t / T_e split."""
    eval_fraction: float = 0.1
    """T_e share of the official training set."""
    clip: bool = False
    """Release clipped to [0, 1] (pudlab's default: not clipped)."""
    data_range: float = 1.0
    """Raw pixel range, used by PSNR, SSIM and the sensitivities."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mia_widths", tuple(int(v) for v in self.mia_widths))
        for name in ("queries", "pool_size", "denoise_samples", "disclosures", "mia_members", "mia_nonmembers",
                     "mia_epochs", "mia_batch_size", "mia_hidden"):
            if getattr(self, name) < 1:
                raise PudlabError(f"privacy config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.delta < 1:
            raise PudlabError(f"privacy config: delta must be in (0, 1), got {self.delta}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mia_widths"] = list(self.mia_widths)
        return data


def _subsample(count: int, size: int, seed: int, key: str) -> np.ndarray:
    return np.sort(derive_rng(seed, key).permutation(count)[: min(size, count)])


def pud_privacy_inputs(entry: Mapping[str, Any]) -> dict[str, float | None]:
    """The attack results :func:`pudlab.pud.privacy_score` turns into Privacy, from a report entry."""
    linkage = max(entry["linkage"]["rate"], entry["denoising"]["best"].get("linkage", 0.0))
    ssim = max(entry["similarity"]["ssim_mean"], entry["denoising"]["best"]["ssim"])
    membership = entry.get("membership")
    return {"linkage": linkage, "linkage_chance": entry["linkage"]["chance"], "best_ssim": ssim,
            "mia_auc": membership["auc"] if membership else None}


def privacy_report(
    source: SourceDataset,
    sigmas: Sequence[float],
    config: PrivacyConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every attack on ``source`` at each sigma; a JSON-ready report (see docs/privacy.md).

    The released data is O(T_t; sigma) with keyed noise (``config.noise_seed``) as ``pudlab
    obfuscate`` writes it; T_e serves as the membership attack's non-members.
    """
    import torch
    from tqdm.auto import tqdm

    from . import __version__
    from .data.dataset import split_train_eval
    from .obfuscation import obfuscate
    from .training import environment

    config = config or PrivacyConfig()
    if not sigmas:
        raise PudlabError("privacy: give at least one sigma")
    started = time.perf_counter()
    split = split_train_eval(source, eval_fraction=config.eval_fraction, seed=config.split_seed)
    shape = split.train.sample_shape
    queries = split.train.take(derive_rng(config.seed, "privacy-queries").permutation(len(split.train))[: config.queries])
    # Pool: every query's source plus seeded others from the source's training set.
    all_raw = source.train
    others = np.flatnonzero(~np.isin(all_raw.ids, queries.ids))
    extra = max(0, min(config.pool_size, len(all_raw)) - len(queries))
    chosen = np.sort(np.concatenate([np.flatnonzero(np.isin(all_raw.ids, queries.ids)),
                                     others[_subsample(len(others), extra, config.seed, "privacy-pool")]]))
    pool, pool_ids = all_raw.images[chosen], all_raw.ids[chosen]
    denoise_set = queries.take(np.arange(min(config.denoise_samples, len(queries))))
    members = split.train.take(_subsample(len(split.train), config.mia_members, config.seed, "mia-members"))
    nonmembers = split.eval.take(_subsample(len(split.eval), config.mia_nonmembers, config.seed, "mia-nonmembers"))

    entries = []
    bar = tqdm(total=len(sigmas) * 4, desc="privacy", unit="step", disable=not progress, leave=False)
    for sigma in sigmas:
        sigma = float(sigma)
        entry: dict[str, Any] = {"sigma": sigma}
        timings: dict[str, float] = {}

        tick = time.perf_counter()
        released = obfuscate(queries, sigma=sigma, seed=config.noise_seed, clip=config.clip)
        psnr = psnr_per_sample(queries.images, released.images, data_range=config.data_range)
        ssim = ssim_per_sample(queries.images, released.images, data_range=config.data_range)
        entry["similarity"] = {"psnr_mean": float(psnr.mean()), "psnr_median": float(np.median(psnr)),
                               "psnr_std": float(psnr.std()), "ssim_mean": float(ssim.mean()),
                               "ssim_median": float(np.median(ssim)), "ssim_std": float(ssim.std()),
                               "samples": len(queries)}
        entry["linkage"] = {"rate": linkage_rate(released.images, queries.ids, pool, pool_ids),
                            "chance": 1.0 / len(pool), "pool_size": len(pool), "samples": len(queries)}
        timings["similarity_linkage"] = time.perf_counter() - tick
        bar.set_postfix(sigma=f"{sigma:g}", stage="denoise")
        bar.update()

        tick = time.perf_counter()
        released_subset = released.images[: len(denoise_set)]
        entry["denoising"] = denoising_attack(denoise_set.images, released_subset, sigma=sigma,
                                              data_range=config.data_range, query_ids=denoise_set.ids,
                                              pool=pool, pool_ids=pool_ids, grid=config.denoise)
        timings["denoising"] = time.perf_counter() - tick
        bar.set_postfix(sigma=f"{sigma:g}", stage="decline")
        bar.update()

        tick = time.perf_counter()
        entry["decline"] = {scheme: averaging_attack(queries, sigma=sigma, disclosures=config.disclosures,
                                                     scheme=scheme, noise_seed=config.noise_seed,
                                                     partition_seed=config.seed, clip=config.clip,
                                                     data_range=config.data_range, pool=pool, pool_ids=pool_ids)
                            for scheme in DECLINE_SCHEMES}
        entry["dp"] = dp_accounting(sigma, shape, delta=config.delta, releases=config.disclosures,
                                    data_range=config.data_range)
        timings["decline_dp"] = time.perf_counter() - tick
        bar.set_postfix(sigma=f"{sigma:g}", stage="membership")
        bar.update()

        tick = time.perf_counter()
        if config.membership:
            entry["membership"] = _membership_at(sigma, members, nonmembers, split.eval, config, device,
                                                 source.num_classes)
        timings["membership"] = time.perf_counter() - tick
        bar.update()

        entry["pud_privacy"] = pud_privacy_inputs(entry)
        entry["seconds"] = timings
        entries.append(entry)
        if log is not None:
            log(f"sigma {sigma:g}: done in {sum(timings.values()):.1f} s")
    bar.close()
    return {
        "kind": "pudlab.privacy_report",
        "version": __version__,
        "dataset": {"name": source.name, "description": source.description, "fingerprint": source.fingerprint,
                    "sample_shape": list(shape), "train_size": len(split.train), "eval_size": len(split.eval)},
        "config": config.to_dict(),
        "environment": environment(torch.device(device)),
        "sigmas": entries,
        "wall_seconds": time.perf_counter() - started,
    }


def _membership_at(sigma: float, members: LabeledImages, nonmembers: LabeledImages, eval_set: LabeledImages,
                   config: PrivacyConfig, device: str, num_classes: int) -> dict[str, Any]:
    """Train M_cnn on O(members; sigma) and attack it with the members' raw images vs T_e."""
    from .model import ModelConfig, build_model, initial_state
    from .obfuscation import obfuscate
    from .training import TrainConfig, evaluate, train_model

    model_config = ModelConfig(members.sample_shape, config.mia_widths, config.mia_hidden, num_classes)
    train_config = TrainConfig(epochs=config.mia_epochs, batch_size=config.mia_batch_size, lr=config.mia_lr,
                               shuffle_seed=derive_seed(config.seed, "mia-shuffle"))
    initial = initial_state(model_config, init_seed=derive_seed(config.seed, "mia-init"))
    released = obfuscate(members, sigma=sigma, seed=config.noise_seed, clip=config.clip)
    result = train_model(released, None, model_config, initial, train_config, device=device)
    model = build_model(model_config, result.weights).to(device)
    attack = membership_inference(model, members, nonmembers, fpr=config.mia_fpr, device=device)
    _, accuracy = evaluate(model, eval_set, device=device)
    return {**attack.to_dict(), "eval_accuracy": accuracy, "train_seconds": result.wall_seconds,
            "members_seen_as": "obfuscated (trained on O(members)); attacked with their raw images"}


__all__ = [
    "DECLINE_SCHEMES",
    "DENOISERS",
    "PSNR_CAP_DB",
    "SENSITIVITY_KINDS",
    "DenoiseGrid",
    "MembershipResult",
    "PrivacyConfig",
    "analytic_gaussian_epsilon",
    "averaging_attack",
    "classic_gaussian_epsilon",
    "composed_epsilon",
    "denoise",
    "denoising_attack",
    "disclosure_seed",
    "dp_accounting",
    "gaussian_delta",
    "l2_sensitivity",
    "linkage_hits",
    "linkage_rate",
    "loss_threshold_attack",
    "membership_inference",
    "nearest_indices",
    "per_sample_losses",
    "privacy_report",
    "psnr_per_sample",
    "pud_privacy_inputs",
    "roc_auc",
    "ssim_per_sample",
    "tpr_at_fpr",
    "zcdp_epsilon",
]
