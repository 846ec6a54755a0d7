"""The verifier of privacy-preserving Proof-of-Learning (paper Sec. 5.3, Fig. 7; Jia et al. 2021).

Order of the checks:

1. **Format and integrity** (:func:`pudlab.pol.bundle.open_bundle`): any failure is a
   :class:`~pudlab.errors.BundleError` -- a malformed or tampered bundle, exit status 2. It includes
   the trajectory root: the prover's commitment to every checkpoint, Adam state and batch.
2. **Claims** (reject, exit 1): the **release** (:mod:`pudlab.pol.owner`): sigma, R and clip come from
   the owner's authenticated release manifest (or from the verifier), and the shared data is that
   release; the initial weights are a fresh draw (:mod:`pudlab.pol.policy`); the hyper-parameters are
   within the verifier's policy; the batch positions are the declared shuffle seed's permutations;
   optionally sigma is within policy and the final weights are a given model.
3. **History** (reject, exit 1; :mod:`pudlab.pol.history`): on *every* segment, no weight moves
   further than Adam at the claimed lr can move it, and every checkpoint's Adam moments are
   consistent with the previous checkpoint's.
4. **Replay** (reject, exit 1): ``random_segments`` segments drawn uniformly, without replacement, from
   the verifier's **secret seed** (fresh from the OS CSPRNG unless given, recorded in the verdict), so
   that a prover who faked a share f of its segments is caught with probability at least
   ``1 - (1 - f)^r``; plus, per epoch, the ``top_q`` segments with the largest update and the segment
   before each (it produced the state a top segment starts from). Each is replayed from its starting
   checkpoint on the shared data O(T) and must reproduce the next checkpoint's weights, both Adam
   moments and step count within the segment's thresholds. The update ratio (replayed / claimed update
   norm; a falsified lr x k shows near k at every segment) is judged as the mean over the replayed
   segments (check ``update-ratio``): above ``policy.reject_update_ratio`` (1.2) reject, above
   ``policy.max_update_ratio`` (1.1) undecidable. One segment's ratio is noise within its tolerance
   (honest segments measured 0.84-1.43).
5. **Decidability** (undecidable, exit 4; :class:`~pudlab.pol.verdict.DriftLimit`): when nothing
   failed, the verifier still answers "undecidable at sigma S" instead of accept when a distance lies in
   the tolerance band or the mean update ratio between its two bounds, or when the tolerance,
   summed over the segments, admits a drift of at least ``max_drift_share`` times the training's
   displacement ||W_T - W_0||: a thief who trained on other data could have steered onto this model.

Thresholds (:class:`VerifyOptions`), one per compared quantity (weights, first and second moment):

* sigma = 0 (or R = 0): the shared data is T, the replay is bit-exact on CPU with the prover's
  thread count, and every threshold is exactly 0: any difference rejects.
* sigma > 0, ``threshold="auto"`` -- **re-obfuscation spread**, computable without T. The verifier
  adds fresh noise of the release's sigma (and R, clip) to O(T) with its own secret seed, replays the
  segment on ``m`` such re-obfuscations, and measures ``c_k = D(replay on O(T) + sigma*z_k, replay on
  O(T))`` (and the same for each moment). The threshold is ``multiplier * max_k c_k`` for the weights
  and ``moment_multiplier * max_k c_k`` for each moment.
* a number: a fixed F-norm threshold for the weights of every segment; the moments get the same
  tolerance relative to the *replayed* update and moments (not the claimed ones, which the prover sets).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from pudlab.data.dataset import LabeledImages
from pudlab.errors import BundleError, PudlabError
from pudlab.metrics import model_distance
from pudlab.obfuscation import obfuscate
from pudlab.pol.bundle import ProofBundle, TrainingState, open_bundle
from pudlab.pol.history import history_checks
from pudlab.pol.manifest import DEFAULT_LIMITS, BundleLimits, NoiseClaim
from pudlab.pol.owner import release_check
from pudlab.pol.policy import Check, VerifyPolicy, hyperparameter_checks, init_check
from pudlab.pol.replay import replay_state
from pudlab.pol.verdict import (
    EXIT_ERROR,
    EXIT_MALFORMED,
    Challenge,
    DriftLimit,
    SegmentResult,
    Verdict,
)
from pudlab.release_auth import VerificationKey
from pudlab.seeding import derive_rng, derive_seed
from pudlab.train.trainer import epoch_batches, torch_threads

DEFAULT_MULTIPLIER = 2.5
"""Multiplier of the re-obfuscation spread in ``threshold="auto"`` (see the module docstring)."""
DEFAULT_MOMENT_MULTIPLIER = 10.0
"""Multiplier of the re-obfuscation spread for Adam's moments: noisier data biases the second moment upward
(squared gradients), and the calibration sees that bias at one more noise level only, so the honest ratio
is larger than for the weights (measured up to ~6.5 against ~1.3). Crafted moments are off by orders of
magnitude, so the looser bound costs little."""
DEFAULT_CALIBRATION_REPLAYS = 2
"""Re-obfuscations of O(T) replayed per segment to measure the spread."""
DEFAULT_TOLERANCE_BAND = 1.5
"""``auto`` at sigma > 0: a weights distance above its threshold and at most this many times it is
undecidable, not a failure: the threshold is estimated from a few re-obfuscations, so it is uncertain
itself. Honest federated segments reached 1.107 x their threshold (1 of 840; sigma 0.1), model thieves
5.1 x and more (docs/pol.md)."""
DEFAULT_RANDOM_SEGMENTS = 8
"""Segments drawn at random per verification: a prover who faked a share f of its segments is caught with
probability >= 1 - (1 - f)^8 (f = 0.25: 0.90, f = 0.5: 0.996); see docs/pol.md for the cost."""
DEFAULT_MAX_DRIFT_SHARE = 0.5
"""Undecidable when the accepted drift reaches this share of ||W_T - W_0||: models trained from one
initialization on disjoint data of the same distribution end 0.55-0.62 x the displacement apart
(mnist-5k, measured; docs/pol.md)."""


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify a bundle."""

    top_q: int = 1
    """Segments replayed per epoch, those with the largest updates; 0 = every segment."""
    random_segments: int = DEFAULT_RANDOM_SEGMENTS
    """Segments drawn uniformly at random from the verifier's secret seed (all when the bundle has fewer)."""
    verifier_seed: int | None = None
    """The verifier's secret seed (random draws and calibration noise); None = fresh from the OS CSPRNG, recorded
    in the verdict. A prover who knows it in advance knows which segments are replayed."""
    owner_key: VerificationKey | None = None
    """The data owner's verification key: sigma, R and clip come from its authenticated release manifest."""
    release_noise: NoiseClaim | None = None
    """The noise of O(T) as the verifier knows it out of band (an FL server's assigned sigma)."""
    max_drift_share: float | None = DEFAULT_MAX_DRIFT_SHARE
    """Undecidable at or above this accepted-drift / displacement share; None: never undecidable."""
    threshold: float | None = None
    """A fixed F-norm threshold per segment; None = ``auto`` (0 at sigma 0, else re-obfuscation spread)."""
    multiplier: float = DEFAULT_MULTIPLIER
    """``auto`` at sigma > 0: threshold = multiplier * max of the calibration replay gaps."""
    moment_multiplier: float = DEFAULT_MOMENT_MULTIPLIER
    """``auto`` at sigma > 0: moment thresholds = moment_multiplier * max of the calibration moment gaps."""
    calibration_replays: int = DEFAULT_CALIBRATION_REPLAYS
    """``auto`` at sigma > 0: re-obfuscations of O(T) replayed per segment (>= 1)."""
    tolerance_band: float = DEFAULT_TOLERANCE_BAND
    """``auto`` at sigma > 0: a weights or moment distance in (threshold, tolerance_band x threshold] is
    undecidable rather than a failure (1: no band)."""
    threads: int | None = None
    """Intra-op threads of the replay; None = the count the prover recorded (needed for bit-exactness)."""
    check_schedule: bool = True
    """Require the batch positions to be the declared shuffle seed's permutations."""
    max_sigma: float | None = None
    """Policy: reject a release noisier than this."""
    expected_model_sha256: str | None = None
    """Require the final checkpoint to be this model (:func:`pudlab.io.weights_sha256`)."""
    expected_initial_sha256: str | None = None
    """The verifier knows W_0 (e.g. an FL round's global model): require the bundle to start there."""
    policy: VerifyPolicy = field(default_factory=VerifyPolicy)
    """Bounds on the claims (hyper-parameters, update ratio, initialization)."""
    device: str = "cpu"
    """Device of the replay (bit-exactness is established on CPU)."""
    stop_at_first_failure: bool = False
    """Stop replaying at the first segment that fails (a reject is a reject; the verdict then lists the replays
    up to it)."""

    def __post_init__(self) -> None:
        if self.top_q < 0 or self.random_segments < 0:
            raise PudlabError(f"top_q and random_segments must be >= 0, got {self.top_q} and {self.random_segments}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise PudlabError(f"threshold must be a finite number >= 0, got {self.threshold}")
        for name in ("multiplier", "moment_multiplier"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise PudlabError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.calibration_replays < 1:
            raise PudlabError(f"calibration_replays must be >= 1, got {self.calibration_replays}")
        if not (math.isfinite(self.tolerance_band) and self.tolerance_band >= 1):
            raise PudlabError(f"tolerance_band must be >= 1, got {self.tolerance_band}")
        if self.max_drift_share is not None and not self.max_drift_share > 0:
            raise PudlabError(f"max_drift_share must be > 0 (or None), got {self.max_drift_share}")
        if self.verifier_seed is not None and self.verifier_seed < 0:
            raise PudlabError(f"verifier_seed must be >= 0, got {self.verifier_seed}")

    def describe_threshold(self, sigma: float, fraction: float) -> str:
        if self.threshold is not None:
            return f"fixed {self.threshold:g}"
        if sigma == 0 or fraction == 0:
            return "exact (sigma = 0: bit-exact replay, threshold 0)"
        return (f"auto: {self.multiplier:g} x max gap of {self.calibration_replays} replay(s) on fresh "
                f"re-obfuscations of O(T) at sigma {sigma:g}")


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


def draw_segments(num_segments: int, count: int, *, seed: int, trajectory_root: str) -> list[int]:
    """``count`` distinct segments (all when there are fewer), uniform from the stream (seed, root), ascending.

    >>> draw_segments(5, 9, seed=1, trajectory_root="ab")
    [0, 1, 2, 3, 4]
    """
    rng = derive_rng(seed, "pol-draw", trajectory_root)
    return sorted(int(i) for i in rng.choice(num_segments, size=min(count, num_segments), replace=False))


def replay_plan(selected: Sequence[int], drawn: Sequence[int] = ()) -> list[tuple[int, str]]:
    """(segment, role) to replay: every top-Q segment and the one before it (start-state), and the drawn ones.

    >>> replay_plan([0, 3])
    [(0, 'selected'), (2, 'start-state'), (3, 'selected')]
    >>> replay_plan([3], [2, 5])
    [(2, 'random'), (3, 'selected'), (5, 'random')]
    """
    chosen = set(selected)
    plan = {index: "selected" for index in chosen}
    for index in chosen:
        if index > 0 and index - 1 not in chosen:
            plan[index - 1] = "start-state"
    for index in drawn:
        if index not in chosen:
            plan[index] = "random"
    return sorted(plan.items())


def reobfuscations(shared: LabeledImages, *, sigma: float, fraction: float, clip: bool, count: int,
                   seed: int) -> list[LabeledImages]:
    """``count`` fresh re-obfuscations O(O(T)) at the release's sigma, keyed by the verifier's seed."""
    return [obfuscate(shared, sigma=sigma, fraction=fraction, clip=clip,
                      seed=derive_seed(seed, "pol-calibration", k) % (2**62)) for k in range(count)]


def _claim_checks(bundle: ProofBundle, options: VerifyOptions, noise: NoiseClaim) -> list[Check]:
    manifest = bundle.manifest
    checks = [init_check(manifest, bundle.initial.weights, options.policy, options.expected_initial_sha256),
              *hyperparameter_checks(manifest, options.policy)]
    if options.check_schedule:
        checks.append(_schedule_check(bundle))
    if options.max_sigma is not None:
        ok = noise.sigma <= options.max_sigma
        checks.append(Check("sigma-policy", ok, f"release sigma {noise.sigma:g} "
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
    replay_update = model_distance(replayed.weights, start.weights)
    distances = _state_distances(replayed, claimed)
    calibration_states = [replay(data) for data in calibration_sets]
    gaps = [_state_distances(state, replayed) for state in calibration_states]
    ratios = [model_distance(state.weights, start.weights) / replay_update if replay_update > 0 else 1.0
              for state in calibration_states]
    if options.threshold is None and not exact:
        thresholds = [(options.multiplier if q == 0 else options.moment_multiplier) * max(gap[q] for gap in gaps)
                      for q in range(3)]
    elif options.threshold is None:
        thresholds = [0.0, 0.0, 0.0]
    else:
        relative = options.threshold / replay_update if replay_update > 0 else 0.0
        thresholds = [options.threshold, relative * _norm(replayed.exp_avg), relative * _norm(replayed.exp_avg_sq)]
    return SegmentResult(
        index, bundle.segment_epochs[index], start_step, end_step, bundle.update_norms[index], distances[0],
        thresholds[0], [gap[0] for gap in gaps], role, distances[1:], thresholds[1:], replay_update,
        options.policy.max_update_ratio, replayed.step == manifest.checkpoints[index].adam_step,
        options.policy.reject_update_ratio, None if exact else ratios,
        options.tolerance_band if options.threshold is None and not exact else None)


def _update_ratio_check(segments: list[SegmentResult], policy: VerifyPolicy) -> tuple[Check, bool]:
    """The claimed lr against the replays: (check, undecided). A falsified lr x k moves every segment's update
    ratio near k; within its tolerance one segment's ratio is noise (honest segments reached 1.43), so the
    mean over the replayed segments is judged: above ``policy.reject_update_ratio`` the check fails, above
    ``policy.max_update_ratio`` it passes but cannot be decided."""
    ratios = [s.update_ratio for s in segments]
    mean = float(np.mean(ratios)) if all(math.isfinite(r) for r in ratios) else math.inf
    low, high = policy.max_update_ratio, policy.reject_update_ratio
    ok, undecided = mean <= high, low < mean <= high
    if not ok:
        judged = f"> policy {high:g}x: a falsified lr?"
    elif undecided:
        judged = f"> policy {low:g}x, <= {high:g}x"
    else:
        judged = f"<= policy {low:g}x"
    return Check("update-ratio", ok, f"replayed updates are {mean:.3g} x the claimed ones on average over "
                                     f"{len(segments)} segments ({judged})"), undecided


def _drift_limit(bundle: ProofBundle, segments: list[SegmentResult], options: VerifyOptions) -> DriftLimit:
    """The tolerance summed over every segment (estimated from the replayed ones) against ||W_T - W_0||."""
    mean_threshold = float(np.mean([s.threshold for s in segments])) if segments else 0.0
    final = bundle.checkpoint(len(bundle.update_norms) - 1).weights
    return DriftLimit(len(bundle.update_norms) * mean_threshold, model_distance(final, bundle.initial.weights),
                      options.max_drift_share)


def _replay_segments(bundle: ProofBundle, options: VerifyOptions, noise: NoiseClaim, drawn: list[int], *, seed: int,
                     threads: int | None, exact: bool, progress: bool) -> list[SegmentResult]:
    """Replay the drawn and the top-Q segments (and the one before each top-Q segment), in order; ``exact``:
    sigma or R is 0, so no calibration re-obfuscations."""
    calibration_sets: list[LabeledImages] = []
    if not exact:
        calibration_sets = reobfuscations(bundle.shared, sigma=noise.sigma, fraction=noise.fraction,
                                          clip=noise.clip, count=options.calibration_replays, seed=seed)
    plan = replay_plan(select_segments(bundle.update_norms, bundle.segment_epochs, options.top_q), drawn)
    segments: list[SegmentResult] = []
    with torch_threads(threads):
        for index, role in tqdm(plan, desc="replay", unit="segment", disable=not progress, leave=False):
            segments.append(_replay_segment(bundle, index, role, options, calibration_sets, exact))
            if options.stop_at_first_failure and not segments[-1].passed:
                break
    return segments


def verify_bundle(
    path: str | os.PathLike,
    options: VerifyOptions | None = None,
    *,
    limits: BundleLimits = DEFAULT_LIMITS,
    progress: bool = False,
) -> Verdict:
    """Verify the bundle at ``path``. Raises :class:`~pudlab.errors.BundleError` when it is malformed
    or fails an integrity check; otherwise returns a :class:`Verdict` (accept, reject or undecidable)."""
    options = options or VerifyOptions()
    started = time.perf_counter()
    bundle = open_bundle(path, limits)
    manifest = bundle.manifest
    binding = release_check(bundle, options.owner_key, options.release_noise)
    noise = binding.noise
    exact = noise.sigma == 0 or noise.fraction == 0
    method = options.describe_threshold(noise.sigma, noise.fraction)
    checks = [binding.check, *_claim_checks(bundle, options, noise)]
    failed_claims = [c for c in checks if not c.passed]
    if not failed_claims:
        checks.extend(history_checks(bundle))
        failed_claims = [c for c in checks if not c.passed]
    threads = options.threads if options.threads is not None else manifest.torch_threads
    seed = options.verifier_seed if options.verifier_seed is not None else secrets.randbits(63)
    root = manifest.trajectory.root if manifest.trajectory else ""
    num_segments = len(bundle.update_norms)
    drawn = draw_segments(num_segments, options.random_segments, seed=seed, trajectory_root=root)
    challenge = Challenge(seed, root, options.random_segments, tuple(drawn), num_segments)
    segments: list[SegmentResult] = []
    if not failed_claims:
        segments = _replay_segments(bundle, options, noise, drawn, seed=seed, threads=threads, exact=exact,
                                    progress=progress)
    lr_check, lr_undecided = None, False
    if not failed_claims and segments and all(s.passed for s in segments):
        lr_check, lr_undecided = _update_ratio_check(segments, options.policy)
        checks.append(lr_check)
        if not lr_check.passed:
            failed_claims = [lr_check]
    rejected = bool(failed_claims) or not all(s.passed for s in segments)
    drift = None if failed_claims else _drift_limit(bundle, segments, options)
    undecided = lr_undecided or any(s.distance_undecided for s in segments)
    decision = ("reject" if rejected else
                "undecidable" if undecided or (drift is not None and not drift.decidable) else "accept")
    reason = _reason(decision, failed_claims, segments, num_segments, options, exact, drift, noise.sigma,
                     lr_check if lr_undecided else None)
    notes = []
    if binding.release and binding.release.get("insecure"):
        notes.append("the release key is INSECURE (derived from a public seed): O(T) hides nothing of T")
    if decision == "accept" and any(c.name == "init" and "NOT verified" in c.detail for c in checks):
        notes.append("initial weights NOT verified (policy allows unseeded initialization)")
    if decision == "accept" and any(c.name == "release" and "NOT bound" in c.detail for c in checks):
        notes.append("O(T) NOT bound to an owner (no owner key given)")
    reason = "; ".join([reason, *notes])
    return Verdict(decision == "accept", reason, str(path), bundle.manifest_sha256, noise.sigma, method, checks,
                   segments, num_segments, threads, time.perf_counter() - started, decision, challenge, drift,
                   binding.release)


def verify_status(path: str | os.PathLike, options: VerifyOptions | None = None) -> tuple[int, str, Verdict | None]:
    """(exit status, one-line reason, verdict or None) as ``pudlab pol verify`` would report them."""
    try:
        verdict = verify_bundle(path, options)
    except BundleError as exc:
        return EXIT_MALFORMED, str(exc), None
    except (PudlabError, OSError) as exc:
        return EXIT_ERROR, str(exc), None
    return verdict.exit_code, verdict.reason, verdict


def _reason(decision: str, failed: list[Check], segments: list[SegmentResult], total: int,
            options: VerifyOptions, exact: bool, drift: DriftLimit | None, sigma: float,
            lr_undecided: Check | None = None) -> str:
    scope = ("every segment" if options.top_q == 0 else
             f"{options.random_segments} drawn at random, top {options.top_q} per epoch and the segment before each")
    if failed:
        return f"{failed[0].name} check failed: {failed[0].detail}"
    if decision == "reject":
        bad = [s for s in segments if not s.passed]
        worst = max(bad, key=lambda s: (s.score if math.isfinite(s.distance) else math.inf))
        return (f"{len(bad)} of {len(segments)} replayed segments ({scope}) do not reproduce their checkpoint; "
                f"worst: segment {worst.index} (steps {worst.start_step}-{worst.end_step}, epoch {worst.epoch}, "
                f"{worst.role}): {worst.failure}")
    far = [s for s in segments if s.distance_undecided]
    if far and decision == "undecidable":
        worst, quantity, value, threshold = max(
            ((s, name, value, limit) for s in far for name, value, limit in
             zip(("weights", "Adam first moment", "Adam second moment"), [s.distance, *s.moment_distances],
                 [s.threshold, *s.moment_thresholds], strict=True) if value > limit),
            key=lambda item: item[2] / item[3])
        return (f"undecidable at sigma {sigma:g}: segment {worst.index}'s replay ends {value:.4g} from its "
                f"checkpoint's {quantity}, {value / threshold:.3g} x the tolerance {threshold:.4g} estimated from "
                f"{len(worst.calibration)} re-obfuscations but within {worst.tolerance_band:g} x it, where that "
                f"estimate's own uncertainty cannot tell an honest replay from a steered one")
    if lr_undecided is not None and decision == "undecidable":
        return (f"undecidable at sigma {sigma:g}: every replayed segment reproduces, but the {lr_undecided.detail}: "
                f"a slightly falsified lr cannot be told from noise in the shared data")
    if drift is not None and decision == "undecidable":
        return (f"undecidable at sigma {sigma:g}: every replayed segment reproduces, but the replay tolerance admits "
                f"an undetected drift of {drift.accepted_drift:.4g} over the {total} segments, {drift.share:.3g} x "
                f"the training's displacement {drift.displacement:.4g} (limit {drift.limit:g}): a model trained on "
                f"other data could have been steered onto this one")
    largest = max(segments, key=lambda s: s.score, default=None)
    if largest is None:
        return "no segment to replay"
    if exact:
        return (f"{len(segments)} of {total} segments ({scope}) replayed bit-exactly: every distance "
                f"(weights and Adam moments) is exactly 0")
    return (f"{len(segments)} of {total} segments ({scope}) reproduce their checkpoints (weights and Adam moments); "
            f"largest distance/threshold {largest.distance:.6g} / {largest.threshold:.6g} (segment {largest.index}); "
            f"accepted drift {drift.share if drift else 0:.3g} x the displacement")


__all__ = [
    "DEFAULT_CALIBRATION_REPLAYS",
    "DEFAULT_MAX_DRIFT_SHARE",
    "DEFAULT_MOMENT_MULTIPLIER",
    "DEFAULT_MULTIPLIER",
    "DEFAULT_RANDOM_SEGMENTS",
    "DEFAULT_TOLERANCE_BAND",
    "VerifyOptions",
    "draw_segments",
    "reobfuscations",
    "replay_plan",
    "select_segments",
    "verify_bundle",
    "verify_status",
]
