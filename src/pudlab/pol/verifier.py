"""The verifier of privacy-preserving Proof-of-Learning (paper Sec. 5.3, Fig. 7; Jia et al. 2021).

Order of the checks:

1. **Format and integrity** (:func:`pudlab.pol.bundle.open_bundle`): any failure is a
   :class:`~pudlab.errors.BundleError` -- a malformed or tampered bundle, exit status 2.
2. **Claims** (reject, exit 1): the initial weights are a fresh draw (the declared ``init.seed``
   redraws them, or, unseeded, they pass the fresh-draw test; :mod:`pudlab.pol.policy`); the
   hyper-parameters are within the verifier's policy (lr, batch size, epochs, Adam betas and eps);
   the batch positions are the permutations the declared ``shuffle_seed`` gives; optionally the
   claimed sigma is within policy and the final weights are a given model.
3. **History** (reject, exit 1; :mod:`pudlab.pol.history`): on *every* segment, no weight moves
   further than Adam at the claimed lr can move it, and every checkpoint's Adam moments are
   consistent with the previous checkpoint's.
4. **Replay** (reject, exit 1): for each epoch, the ``top_q`` segments with the largest update
   ``||W_{i+1} - W_i||`` (all segments when ``top_q == 0``), and the segment before each of them
   (it produced the state the chosen segment starts from), are replayed from their starting
   checkpoint on the shared data O(T). Each must reproduce the next checkpoint's weights, both Adam
   moments and step count within the segment's thresholds, and its update norm may exceed the claimed
   one by at most ``policy.max_update_ratio`` (Adam's step scales with lr: a falsified lr shows; noise
   in the data only shrinks the replayed update, measured 0.7-1.0 x).

Thresholds (:class:`VerifyOptions`), one per compared quantity (weights, first and second moment):

* sigma = 0 (or R = 0): the shared data is T, the replay is bit-exact on CPU with the prover's
  thread count, and every threshold is exactly 0: any difference rejects.
* sigma > 0, ``threshold="auto"`` -- **re-obfuscation spread**, computable without T. The honest
  gap comes from replaying on T + sigma*z instead of T. The verifier reproduces a gap of the same
  kind from data it has: it adds fresh noise of the same sigma (and R, clip) to O(T) with its own
  seeds, replays the segment on ``m`` such re-obfuscations, and measures
  ``c_k = D(replay on O(T) + sigma*z_k, replay on O(T))`` (and the same for each moment). The
  threshold of the segment is ``multiplier * max_k c_k`` for the weights and ``moment_multiplier *
  max_k c_k`` for each moment (see :data:`DEFAULT_MOMENT_MULTIPLIER`). The spread scales with the claimed lr and
  sigma; the lr is bounded by the policy and the update-ratio check, sigma by ``max_sigma``.
* a number: a fixed F-norm threshold for the weights of every segment; the moments then get the same
  relative tolerance (threshold / claimed update norm, times the moment's norm).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pudlab.data.dataset import LabeledImages
from pudlab.errors import BundleError, PudlabError
from pudlab.metrics import model_distance
from pudlab.obfuscation import obfuscate
from pudlab.pol.bundle import ProofBundle, TrainingState, open_bundle
from pudlab.pol.history import history_checks
from pudlab.pol.manifest import DEFAULT_LIMITS, BundleLimits
from pudlab.pol.policy import Check, VerifyPolicy, hyperparameter_checks, init_check
from pudlab.pol.replay import replay_state
from pudlab.records import Record
from pudlab.seeding import derive_seed
from pudlab.train.trainer import epoch_batches, torch_threads

EXIT_ACCEPT, EXIT_REJECT, EXIT_MALFORMED, EXIT_ERROR = 0, 1, 2, 3

DEFAULT_MULTIPLIER = 2.5
"""Multiplier of the re-obfuscation spread in ``threshold="auto"`` (see the module docstring)."""
DEFAULT_MOMENT_MULTIPLIER = 10.0
"""Multiplier of the re-obfuscation spread for Adam's moments: noisier data biases the second moment upward
(squared gradients), and the calibration sees that bias at one more noise level only, so the honest ratio
is larger than for the weights (measured up to ~6.5 against ~1.3). Crafted moments are off by orders of
magnitude, so the looser bound costs little."""
DEFAULT_CALIBRATION_REPLAYS = 2
"""Re-obfuscations of O(T) replayed per segment to measure the spread."""
QUANTITIES = ("weights", "exp_avg", "exp_avg_sq")
"""What a replay must reproduce: the weights and Adam's first and second moments."""


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify a bundle."""

    top_q: int = 1
    """Segments replayed per epoch, those with the largest updates; 0 = every segment."""
    threshold: float | None = None
    """A fixed F-norm threshold per segment; None = ``auto`` (0 at sigma 0, else re-obfuscation spread)."""
    multiplier: float = DEFAULT_MULTIPLIER
    """``auto`` at sigma > 0: threshold = multiplier * max of the calibration replay gaps."""
    moment_multiplier: float = DEFAULT_MOMENT_MULTIPLIER
    """``auto`` at sigma > 0: moment thresholds = moment_multiplier * max of the calibration moment gaps."""
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
    """Require the final checkpoint to be this model (:func:`pudlab.io.weights_sha256`)."""
    expected_initial_sha256: str | None = None
    """The verifier knows W_0 (e.g. an FL round's global model): require the bundle to start there."""
    policy: VerifyPolicy = field(default_factory=VerifyPolicy)
    """Bounds on the claims (hyper-parameters, update ratio, initialization)."""
    device: str = "cpu"
    """Device of the replay (bit-exactness is established on CPU)."""

    def __post_init__(self) -> None:
        if self.top_q < 0:
            raise PudlabError(f"top_q must be >= 0 (0 = all segments), got {self.top_q}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise PudlabError(f"threshold must be a finite number >= 0, got {self.threshold}")
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise PudlabError(f"multiplier must be > 0, got {self.multiplier}")
        if not (math.isfinite(self.moment_multiplier) and self.moment_multiplier > 0):
            raise PudlabError(f"moment_multiplier must be > 0, got {self.moment_multiplier}")
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
class SegmentResult(Record):
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
    role: str = "selected"
    """``selected`` (top-Q) or ``start-state`` (replayed to confirm the state a selected segment starts from)."""
    moment_distances: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """D(replayed, claimed) of Adam's first and second moment."""
    moment_thresholds: list[float] = field(default_factory=lambda: [0.0, 0.0])
    replay_update_norm: float = 0.0
    """||replayed W_{i+1} - W_i||."""
    max_update_ratio: float = math.inf
    step_ok: bool = True
    """Adam's replayed step count is the checkpoint's."""

    DERIVED = ("passed", "failure", "update_ratio", "score")

    @property
    def update_ratio(self) -> float:
        """replayed update norm / claimed update norm (1 when both are 0)."""
        if self.update_norm > 0:
            return self.replay_update_norm / self.update_norm
        return 1.0 if self.replay_update_norm == 0 else math.inf

    @property
    def failure(self) -> str | None:
        """What this segment fails to reproduce (None: it passes)."""
        if not (math.isfinite(self.distance) and self.distance <= self.threshold):
            return f"weights distance {self.distance:.6g} > threshold {self.threshold:.6g}"
        for name, value, limit in zip(QUANTITIES[1:], self.moment_distances, self.moment_thresholds, strict=True):
            if not (math.isfinite(value) and value <= limit):
                return f"Adam {name} distance {value:.6g} > threshold {limit:.6g}"
        if not self.step_ok:
            return "Adam step count differs from the checkpoint's"
        ratio = self.update_ratio
        if not ratio <= self.max_update_ratio:
            return (f"replayed update {self.replay_update_norm:.4g} is {ratio:.3g} x the claimed {self.update_norm:.4g} "
                    f"(policy: at most {self.max_update_ratio:g}x; falsified lr?)")
        return None

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def score(self) -> float:
        """distance / threshold of the weights (the verifier's statistic; inf when the threshold is 0 and distance > 0)."""
        if self.threshold > 0:
            return self.distance / self.threshold
        return 0.0 if self.distance == 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the ratios and ``score`` are null when infinite (``score``: threshold 0, distance > 0)."""
        data = super().to_dict()
        for key in ("max_update_ratio", "update_ratio", "score"):
            if not math.isfinite(data[key]):
                data[key] = None
        return data


@dataclass
class Verdict(Record):
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

    DERIVED = ("kind", "verdict", "exit_code", "replayed_segments", "max_distance")

    @property
    def kind(self) -> str:
        return "pudlab.pol_verdict"

    @property
    def verdict(self) -> str:
        """``accept`` or ``reject``: how the JSON says :attr:`accepted`."""
        return "accept" if self.accepted else "reject"

    @property
    def replayed_segments(self) -> int:
        return len(self.segments)

    @property
    def exit_code(self) -> int:
        return EXIT_ACCEPT if self.accepted else EXIT_REJECT

    @property
    def selected(self) -> list[SegmentResult]:
        """The top-Q segments (without the start-state replays)."""
        return [s for s in self.segments if s.role == "selected"]

    @property
    def max_distance(self) -> float:
        return max((s.distance for s in self.segments), default=0.0)

    @property
    def mean_distance(self) -> float:
        """Mean weights distance of the top-Q segments."""
        chosen = self.selected
        return float(np.mean([s.distance for s in chosen])) if chosen else 0.0

    @property
    def max_score(self) -> float:
        return max((s.score for s in self.segments), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The verdict's JSON (``pudlab pol verify --json``): :attr:`accepted` is written as ``verdict``."""
        data = super().to_dict()
        del data["accepted"]
        return data


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
    checks = [init_check(manifest, bundle.initial.weights, options.policy, options.expected_initial_sha256),
              *hyperparameter_checks(manifest, options.policy)]
    if options.check_schedule:
        checks.append(_schedule_check(bundle))
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


def _schedule_check(bundle: ProofBundle) -> Check:
    manifest = bundle.manifest
    step = 0
    for epoch in range(manifest.training.epochs):
        for positions in epoch_batches(manifest.shared.num_samples, manifest.training.batch_size,
                                       shuffle_seed=manifest.training.shuffle_seed, epoch=epoch):
            if not np.array_equal(bundle.batch(step), positions):
                return Check("schedule", False, f"batch positions of step {step} (epoch {epoch}) are not what "
                                                f"shuffle seed {manifest.training.shuffle_seed} gives")
            step += 1
    return Check("schedule", True, f"batch positions are shuffle seed {manifest.training.shuffle_seed}'s permutations")


def replay_plan(selected: Sequence[int]) -> list[tuple[int, str]]:
    """(segment, role) to replay: every selected segment and the one before it (start-state).

    >>> replay_plan([0, 3])
    [(0, 'selected'), (2, 'start-state'), (3, 'selected')]
    """
    chosen = set(selected)
    plan = {index: "selected" for index in chosen}
    for index in chosen:
        if index > 0 and index - 1 not in chosen:
            plan[index - 1] = "start-state"
    return sorted(plan.items())


def _state_distances(a: TrainingState, b: TrainingState) -> list[float]:
    """D of the weights, first and second moments of two states."""
    return [model_distance(a.weights, b.weights), model_distance(a.exp_avg, b.exp_avg),
            model_distance(a.exp_avg_sq, b.exp_avg_sq)]


def _norm(tensors: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors.values()))


def _replay_segment(bundle: ProofBundle, index: int, role: str, options: VerifyOptions,
                    calibration_sets: Sequence[LabeledImages], exact: bool) -> SegmentResult:
    manifest = bundle.manifest
    start_step, end_step = bundle.segment_bounds[index]
    batches = [bundle.batch(step) for step in range(start_step, end_step)]
    start = bundle.state_before(index)
    claimed = bundle.checkpoint(index)

    def replay(data: LabeledImages) -> TrainingState:
        return replay_state(manifest.model, manifest.training, start, data, batches, device=options.device)

    replayed = replay(bundle.shared)
    distances = _state_distances(replayed, claimed)
    gaps = [_state_distances(replay(data), replayed) for data in calibration_sets]
    if options.threshold is None and not exact:
        thresholds = [(options.multiplier if q == 0 else options.moment_multiplier) * max(gap[q] for gap in gaps)
                      for q in range(3)]
    elif options.threshold is None:
        thresholds = [0.0, 0.0, 0.0]
    else:
        relative = options.threshold / bundle.update_norms[index] if bundle.update_norms[index] > 0 else 0.0
        thresholds = [options.threshold, relative * _norm(claimed.exp_avg), relative * _norm(claimed.exp_avg_sq)]
    return SegmentResult(
        index, bundle.segment_epochs[index], start_step, end_step, bundle.update_norms[index], distances[0],
        thresholds[0], [gap[0] for gap in gaps], role, distances[1:], thresholds[1:],
        model_distance(replayed.weights, start.weights), options.policy.max_update_ratio,
        replayed.step == manifest.checkpoints[index].adam_step)


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
    failed_claims = [c for c in checks if not c.passed]
    if not failed_claims:
        checks.extend(history_checks(bundle))
        failed_claims = [c for c in checks if not c.passed]
    threads = options.threads if options.threads is not None else manifest.torch_threads
    segments: list[SegmentResult] = []
    if not failed_claims:
        calibration_sets: list[LabeledImages] = []
        if not exact:
            calibration_sets = reobfuscations(bundle.shared, sigma=noise.sigma, fraction=noise.fraction,
                                              clip=noise.clip, count=options.calibration_replays,
                                              seed=options.calibration_seed)
        plan = replay_plan(select_segments(bundle.update_norms, bundle.segment_epochs, options.top_q))
        with torch_threads(threads):
            for index, role in tqdm(plan, desc="replay", unit="segment", disable=not progress, leave=False):
                segments.append(_replay_segment(bundle, index, role, options, calibration_sets, exact))
    accepted = not failed_claims and all(s.passed for s in segments)
    reason = _reason(accepted, failed_claims, segments, len(bundle.update_norms), options, exact)
    unverified_init = [c for c in checks if c.name == "init" and "NOT verified" in c.detail]
    if accepted and unverified_init:
        reason += "; initial weights NOT verified (policy allows unseeded initialization)"
    return Verdict(accepted, reason, str(path), bundle.manifest_sha256, noise.sigma, method, checks, segments,
                   len(bundle.update_norms), threads, time.perf_counter() - started)


def verify_status(path: str | os.PathLike, options: VerifyOptions | None = None) -> tuple[int, str, Verdict | None]:
    """(exit status, one-line reason, verdict or None) as ``pudlab pol verify`` would report them."""
    try:
        verdict = verify_bundle(path, options)
    except BundleError as exc:
        return EXIT_MALFORMED, str(exc), None
    except (PudlabError, OSError) as exc:
        return EXIT_ERROR, str(exc), None
    return verdict.exit_code, verdict.reason, verdict


def _reason(accepted: bool, failed: list[Check], segments: list[SegmentResult], total: int,
            options: VerifyOptions, exact: bool) -> str:
    scope = "every segment" if options.top_q == 0 else f"top {options.top_q} per epoch and the segment before each"
    if failed:
        return f"{failed[0].name} check failed: {failed[0].detail}"
    if not accepted:
        bad = [s for s in segments if not s.passed]
        worst = max(bad, key=lambda s: (s.score if math.isfinite(s.distance) else math.inf))
        return (f"{len(bad)} of {len(segments)} replayed segments ({scope}) do not reproduce their checkpoint; "
                f"worst: segment {worst.index} (steps {worst.start_step}-{worst.end_step}, epoch {worst.epoch}): "
                f"{worst.failure}")
    largest = max(segments, key=lambda s: s.score, default=None)
    if largest is None:
        return "no segment to replay"
    if exact:
        return (f"{len(segments)} of {total} segments ({scope}) replayed bit-exactly: every distance "
                f"(weights and Adam moments) is exactly 0")
    return (f"{len(segments)} of {total} segments ({scope}) reproduce their checkpoints (weights and Adam moments); "
            f"largest distance/threshold {largest.distance:.6g} / {largest.threshold:.6g} (segment {largest.index})")


__all__ = [
    "DEFAULT_CALIBRATION_REPLAYS",
    "DEFAULT_MOMENT_MULTIPLIER",
    "DEFAULT_MULTIPLIER",
    "EXIT_ACCEPT",
    "EXIT_ERROR",
    "EXIT_MALFORMED",
    "EXIT_REJECT",
    "QUANTITIES",
    "Check",
    "SegmentResult",
    "Verdict",
    "VerifyOptions",
    "VerifyPolicy",
    "reobfuscations",
    "replay_plan",
    "select_segments",
    "verify_bundle",
    "verify_status",
]
