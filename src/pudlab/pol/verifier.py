"""The verifier of privacy-preserving Proof-of-Learning (paper Sec. 5.3, Fig. 7; Jia et al. 2021).

Order of the checks:

1. **Format and integrity** (:func:`pudlab.pol.bundle.open_bundle`): any failure is a
   :class:`~pudlab.errors.BundleError` -- a malformed or tampered bundle, exit status 2.
2. **Claims** (reject, exit 1): the initial weights are the ones the declared ``init.seed`` draws;
   the batch positions are the permutations the declared ``shuffle_seed`` gives
   (:func:`pudlab.train.trainer.epoch_batches`); optionally the claimed sigma is within policy and
   the final weights are a given model.
3. **Replay** (reject, exit 1): for each epoch, the ``top_q`` segments with the largest update
   ``||W_{i+1} - W_i||`` (all segments when ``top_q == 0``) are replayed from checkpoint i on the
   shared data O(T), and ``D(replayed, W_{i+1})`` (F-norm, Eq. 3) is compared with the threshold.

Thresholds (:class:`VerifyOptions`):

* sigma = 0 (or R = 0): the shared data is T, the replay is bit-exact on CPU with the prover's
  thread count, and the threshold is exactly 0: any difference rejects.
* sigma > 0, ``threshold="auto"`` -- **re-obfuscation spread**, computable without T. The honest
  gap comes from replaying on T + sigma*z instead of T. The verifier reproduces a gap of the same
  kind from data it has: it adds fresh noise of the same sigma (and R, clip) to O(T) with its own
  seeds, replays the segment on ``m`` such re-obfuscations, and measures
  ``c_k = D(replay on O(T) + sigma*z_k, replay on O(T))``. The threshold of the segment is
  ``multiplier * max_k c_k``. Each c_k is a replay gap caused by a sigma-noise difference of the
  data, the same cause as the honest gap, so the honest distance falls in the spread of the
  c_k up to the multiplier; a spoofed O(T_j) differs from T by a whole other draw of images,
  which is larger as long as sigma is small against the image-to-image variation.
  Its false-reject rate is measured by ``pudlab pol evaluate``.
* a number: a fixed F-norm threshold for every segment.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from pudlab.data.dataset import LabeledImages
from pudlab.errors import BundleError, PudlabError
from pudlab.metrics import model_distance
from pudlab.model import initial_state
from pudlab.obfuscation import obfuscate
from pudlab.io import weights_sha256
from pudlab.seeding import derive_seed
from pudlab.train.trainer import epoch_batches, torch_threads
from pudlab.pol.bundle import ProofBundle, open_bundle
from pudlab.pol.manifest import DEFAULT_LIMITS, BundleLimits
from pudlab.pol.replay import replay_segment

EXIT_ACCEPT, EXIT_REJECT, EXIT_MALFORMED = 0, 1, 2

DEFAULT_MULTIPLIER = 2.5
"""Multiplier of the re-obfuscation spread in ``threshold="auto"`` (see the module docstring)."""
DEFAULT_CALIBRATION_REPLAYS = 2
"""Re-obfuscations of O(T) replayed per segment to measure the spread."""


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify a bundle."""

    top_q: int = 1
    """Segments replayed per epoch, those with the largest updates; 0 = every segment."""
    threshold: float | None = None
    """A fixed F-norm threshold per segment; None = ``auto`` (0 at sigma 0, else re-obfuscation spread)."""
    multiplier: float = DEFAULT_MULTIPLIER
    """``auto`` at sigma > 0: threshold = multiplier * max of the calibration replay gaps."""
    calibration_replays: int = DEFAULT_CALIBRATION_REPLAYS
    """``auto`` at sigma > 0: re-obfuscations of O(T) replayed per segment (>= 1)."""
    calibration_seed: int = 0
    """Seed of the verifier's fresh noise (use a secret one against a prover who could adapt to it)."""
    threads: int | None = None
    """Intra-op threads of the replay; None = the count the prover recorded (needed for bit-exactness)."""
    check_schedule: bool = True
    """Require the batch positions to be the declared shuffle seed's permutations."""
    max_sigma: float | None = None
    """Policy: reject bundles claiming a larger sigma (a larger sigma buys a larger ``auto`` threshold)."""
    expected_model_sha256: str | None = None
    """Require the final checkpoint to be this model (:func:`pudlab.train.run.weights_sha256`)."""
    device: str = "cpu"
    """Device of the replay (bit-exactness is established on CPU)."""

    def __post_init__(self) -> None:
        if self.top_q < 0:
            raise PudlabError(f"top_q must be >= 0 (0 = all segments), got {self.top_q}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise PudlabError(f"threshold must be a finite number >= 0, got {self.threshold}")
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise PudlabError(f"multiplier must be > 0, got {self.multiplier}")
        if self.calibration_replays < 1:
            raise PudlabError(f"calibration_replays must be >= 1, got {self.calibration_replays}")

    def describe_threshold(self, sigma: float, fraction: float) -> str:
        if self.threshold is not None:
            return f"fixed {self.threshold:g}"
        if sigma == 0 or fraction == 0:
            return "exact (sigma = 0: bit-exact replay, threshold 0)"
        return (f"auto: {self.multiplier:g} x max gap of {self.calibration_replays} replay(s) on fresh "
                f"re-obfuscations of O(T) at sigma {sigma:g}")


@dataclass
class Check:
    """One claim check."""

    name: str
    passed: bool
    detail: str


@dataclass
class SegmentResult:
    """One replayed segment."""

    index: int
    epoch: int
    start_step: int
    end_step: int
    update_norm: float
    """||W_{i+1} - W_i|| as claimed."""
    distance: float
    """D(replay of the segment on O(T), claimed W_{i+1})."""
    threshold: float
    calibration: list[float] = field(default_factory=list)
    """``auto``: D(replay on a re-obfuscation, replay on O(T)) for each re-obfuscation."""

    @property
    def passed(self) -> bool:
        return math.isfinite(self.distance) and self.distance <= self.threshold

    @property
    def score(self) -> float:
        """distance / threshold (the verifier's statistic; inf when the threshold is 0 and distance > 0)."""
        if self.threshold > 0:
            return self.distance / self.threshold
        return 0.0 if self.distance == 0 else math.inf

    def to_dict(self) -> dict:
        """JSON-ready; ``score`` is null when it is infinite (threshold 0, distance > 0)."""
        data = asdict(self)
        data.update(passed=self.passed, score=self.score if math.isfinite(self.score) else None)
        return data


@dataclass
class Verdict:
    """The verifier's answer: accepted or not, the one-line reason, and every number behind it."""

    accepted: bool
    reason: str
    bundle: str
    bundle_sha256: str
    sigma: float
    threshold_method: str
    checks: list[Check]
    segments: list[SegmentResult]
    num_segments: int
    replay_threads: int | None
    seconds: float

    @property
    def exit_code(self) -> int:
        return EXIT_ACCEPT if self.accepted else EXIT_REJECT

    @property
    def max_distance(self) -> float:
        return max((s.distance for s in self.segments), default=0.0)

    @property
    def mean_distance(self) -> float:
        return float(np.mean([s.distance for s in self.segments])) if self.segments else 0.0

    @property
    def max_score(self) -> float:
        return max((s.score for s in self.segments), default=0.0)

    def to_dict(self) -> dict:
        return {
            "kind": "pudlab.pol_verdict",
            "verdict": "accept" if self.accepted else "reject",
            "exit_code": self.exit_code,
            "reason": self.reason,
            "bundle": self.bundle,
            "bundle_sha256": self.bundle_sha256,
            "sigma": self.sigma,
            "threshold_method": self.threshold_method,
            "checks": [asdict(c) for c in self.checks],
            "segments": [s.to_dict() for s in self.segments],
            "num_segments": self.num_segments,
            "replayed_segments": len(self.segments),
            "max_distance": self.max_distance,
            "replay_threads": self.replay_threads,
            "seconds": self.seconds,
        }


def select_segments(update_norms: Sequence[float], segment_epochs: Sequence[int], top_q: int) -> list[int]:
    """Indices (ascending) of the ``top_q`` segments with the largest updates in each epoch
    (ties: the earlier segment); every segment when ``top_q == 0``.

    >>> select_segments([0.1, 0.5, 0.3, 0.2, 0.9, 0.4], [0, 0, 0, 1, 1, 1], 1)
    [1, 4]
    """
    if len(update_norms) != len(segment_epochs):
        raise PudlabError(f"{len(update_norms)} update norms but {len(segment_epochs)} segment epochs")
    if top_q < 0:
        raise PudlabError(f"top_q must be >= 0, got {top_q}")
    if top_q == 0:
        return list(range(len(update_norms)))
    chosen: list[int] = []
    for epoch in sorted(set(segment_epochs)):
        members = [i for i, e in enumerate(segment_epochs) if e == epoch]
        members.sort(key=lambda i: (-_sortable(update_norms[i]), i))
        chosen.extend(members[:top_q])
    return sorted(chosen)


def _sortable(value: float) -> float:
    """NaN updates sort first (a forged, non-finite update must be replayed)."""
    return math.inf if math.isnan(value) else value


def reobfuscations(shared: LabeledImages, *, sigma: float, fraction: float, clip: bool, count: int,
                   seed: int) -> list[LabeledImages]:
    """``count`` fresh re-obfuscations O(O(T)) at the claimed sigma, keyed by the verifier's seed."""
    return [obfuscate(shared, sigma=sigma, fraction=fraction, clip=clip,
                      seed=derive_seed(seed, "pol-calibration", k) % (2**62)) for k in range(count)]


def _claim_checks(bundle: ProofBundle, options: VerifyOptions) -> list[Check]:
    manifest = bundle.manifest
    checks = []
    if manifest.init.seed is not None:
        drawn = weights_sha256(initial_state(manifest.model, init_seed=manifest.init.seed))
        ok = drawn == manifest.init.weights_sha256
        checks.append(Check("init", ok, f"initial weights {'are' if ok else 'are NOT'} the ones init seed "
                                        f"{manifest.init.seed} draws"))
    else:
        checks.append(Check("init", True, "initial weights from a file (hash checked; not redrawn)"))
    if options.check_schedule:
        mismatched = None
        step = 0
        for epoch in range(manifest.training.epochs):
            for positions in epoch_batches(manifest.shared.num_samples, manifest.training.batch_size,
                                           shuffle_seed=manifest.training.shuffle_seed, epoch=epoch):
                if not np.array_equal(bundle.batch(step), positions):
                    mismatched = step
                    break
                step += 1
            if mismatched is not None:
                break
        checks.append(Check("schedule", mismatched is None,
                            f"batch positions are shuffle seed {manifest.training.shuffle_seed}'s permutations"
                            if mismatched is None else
                            f"batch positions of step {mismatched} (epoch {mismatched // manifest.schedule.steps_per_epoch}) "
                            f"are not what shuffle seed {manifest.training.shuffle_seed} gives"))
    if options.max_sigma is not None:
        ok = manifest.noise.sigma <= options.max_sigma
        checks.append(Check("sigma-policy", ok, f"claimed sigma {manifest.noise.sigma:g} "
                                                f"{'<=' if ok else '>'} policy maximum {options.max_sigma:g}"))
    if options.expected_model_sha256 is not None:
        ok = manifest.final_weights_sha256 == options.expected_model_sha256
        checks.append(Check("model", ok, "final checkpoint is the given model" if ok else
                            f"final checkpoint {manifest.final_weights_sha256[:12]} is not the given model "
                            f"{options.expected_model_sha256[:12]}"))
    return checks


def verify_bundle(
    path: str | os.PathLike,
    options: VerifyOptions | None = None,
    *,
    limits: BundleLimits = DEFAULT_LIMITS,
    progress: bool = False,
) -> Verdict:
    """Verify the bundle at ``path``. Raises :class:`~pudlab.errors.BundleError` when it is malformed
    or fails an integrity check; otherwise returns a :class:`Verdict`."""
    options = options or VerifyOptions()
    started = time.perf_counter()
    bundle = open_bundle(path, limits)
    manifest = bundle.manifest
    noise = manifest.noise
    exact = noise.sigma == 0 or noise.fraction == 0
    method = options.describe_threshold(noise.sigma, noise.fraction)
    checks = _claim_checks(bundle, options)
    threads = options.threads if options.threads is not None else manifest.torch_threads
    selected = select_segments(bundle.update_norms, bundle.segment_epochs, options.top_q)
    segments: list[SegmentResult] = []
    failed_claims = [c for c in checks if not c.passed]
    if not failed_claims:
        calibration_sets: list[LabeledImages] = []
        if options.threshold is None and not exact:
            calibration_sets = reobfuscations(bundle.shared, sigma=noise.sigma, fraction=noise.fraction,
                                              clip=noise.clip, count=options.calibration_replays,
                                              seed=options.calibration_seed)
        bounds, epochs = bundle.segment_bounds, bundle.segment_epochs
        with torch_threads(threads):
            for index in tqdm(selected, desc="replay", unit="segment", disable=not progress, leave=False):
                start_step, end_step = bounds[index]
                batches = [bundle.batch(step) for step in range(start_step, end_step)]
                start = bundle.state_before(index)
                claimed = bundle.checkpoint(index).weights

                def replay(data: LabeledImages, start=start, batches=batches) -> dict[str, torch.Tensor]:
                    return replay_segment(manifest.model, manifest.training, start, data, batches, device=options.device)

                replayed = replay(bundle.shared)
                distance = model_distance(replayed, claimed)
                calibration = [model_distance(replay(data), replayed) for data in calibration_sets]
                if options.threshold is not None:
                    threshold = options.threshold
                elif exact:
                    threshold = 0.0
                else:
                    threshold = options.multiplier * max(calibration)
                segments.append(SegmentResult(index, epochs[index], start_step, end_step, bundle.update_norms[index],
                                              distance, threshold, calibration))
    accepted = not failed_claims and all(s.passed for s in segments)
    reason = _reason(accepted, failed_claims, segments, len(bundle.update_norms), options, exact)
    return Verdict(accepted, reason, str(path), bundle.manifest_sha256, noise.sigma, method, checks, segments,
                   len(bundle.update_norms), threads, time.perf_counter() - started)


def verify_status(path: str | os.PathLike, options: VerifyOptions | None = None) -> tuple[int, str, Verdict | None]:
    """(exit status, one-line reason, verdict or None) as ``pudlab pol verify`` would report them."""
    try:
        verdict = verify_bundle(path, options)
    except BundleError as exc:
        return EXIT_MALFORMED, str(exc), None
    return verdict.exit_code, verdict.reason, verdict


def _reason(accepted: bool, failed: list[Check], segments: list[SegmentResult], total: int,
            options: VerifyOptions, exact: bool) -> str:
    scope = "every segment" if options.top_q == 0 else f"top {options.top_q} per epoch"
    if failed:
        return f"{failed[0].name} check failed: {failed[0].detail}"
    if not accepted:
        bad = [s for s in segments if not s.passed]
        worst = max(bad, key=lambda s: (s.score if math.isfinite(s.distance) else math.inf))
        return (f"{len(bad)} of {len(segments)} replayed segments ({scope}) do not reproduce their checkpoint; "
                f"worst: segment {worst.index} (steps {worst.start_step}-{worst.end_step}, epoch {worst.epoch}) "
                f"distance {worst.distance:.6g} > threshold {worst.threshold:.6g}")
    largest = max(segments, key=lambda s: s.score, default=None)
    if largest is None:
        return "no segment to replay"
    if exact:
        return (f"{len(segments)} of {total} segments ({scope}) replayed bit-exactly: every distance is exactly 0")
    return (f"{len(segments)} of {total} segments ({scope}) reproduce their checkpoints; largest distance/threshold "
            f"{largest.distance:.6g} / {largest.threshold:.6g} (segment {largest.index})")


__all__ = [
    "DEFAULT_CALIBRATION_REPLAYS",
    "DEFAULT_MULTIPLIER",
    "EXIT_ACCEPT",
    "EXIT_MALFORMED",
    "EXIT_REJECT",
    "Check",
    "SegmentResult",
    "Verdict",
    "VerifyOptions",
    "reobfuscations",
    "select_segments",
    "verify_bundle",
    "verify_status",
]
