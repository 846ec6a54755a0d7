"""What the PoL verifier answers (:mod:`pudlab.pol.verifier`): one record per replayed segment, the
verdict with every number behind it, its exit status, and the catch probability of random draws.

Three decisions, each with its exit status:

* ``accept`` (0): every check passed, and the replay tolerance is tight enough to tell this training
  from one that drifted toward another model;
* ``reject`` (1): a check failed or a replayed segment does not reproduce its checkpoint;
* ``undecidable`` (4): nothing failed, but at the release's sigma the replay tolerance, summed over the
  segments, admits a drift as large as the distance to another model (:class:`DriftLimit`): the
  verifier cannot tell. A malformed or tampered bundle is exit 2, any other error exit 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pudlab.pol.policy import Check
from pudlab.records import Record

EXIT_ACCEPT, EXIT_REJECT, EXIT_MALFORMED, EXIT_ERROR, EXIT_UNDECIDABLE = 0, 1, 2, 3, 4
DECISIONS = {"accept": EXIT_ACCEPT, "reject": EXIT_REJECT, "undecidable": EXIT_UNDECIDABLE}
QUANTITIES = ("weights", "exp_avg", "exp_avg_sq")
"""What a replay must reproduce: the weights and Adam's first and second moments."""
CATCH_SHARES = (0.05, 0.1, 0.25, 0.5)
"""Faked shares of the segments the verdict states a catch probability for."""


def catch_probability(faked_share: float, draws: int) -> float:
    """Probability that ``draws`` uniform random segments hit at least one of a share ``faked_share`` of
    faked ones: ``1 - (1 - f)^r`` (draws with replacement; drawing without replacement, as the verifier
    does, only raises it).

    >>> round(catch_probability(0.5, 8), 4)
    0.9961
    """
    return 1.0 - (1.0 - faked_share) ** draws


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
    """``selected`` (top-Q), ``random`` (drawn from the verifier's secret seed) or ``start-state``
    (replayed to confirm the state a top-Q segment starts from)."""
    moment_distances: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """D(replayed, claimed) of Adam's first and second moment."""
    moment_thresholds: list[float] = field(default_factory=lambda: [0.0, 0.0])
    replay_update_norm: float = 0.0
    """||replayed W_{i+1} - W_i||."""
    max_update_ratio: float = math.inf
    """Verdicts written before the ratio was judged over the bundle: a segment whose ``update_ratio`` exceeds
    this fails (see ``reject_update_ratio``)."""
    step_ok: bool = True
    """Adam's replayed step count is the checkpoint's."""
    reject_update_ratio: float | None = None
    """Set (the policy's bound): the update ratio is judged over the replayed segments by the verdict (check
    ``update-ratio``), never per segment, since within its tolerance one segment's ratio is noise (honest
    segments reached 1.43). None (verdicts written before): ``max_update_ratio`` fails the segment."""
    calibration_update_ratios: list[float] | None = None
    """``auto``: ||replay on a re-obfuscation - W_i|| / ||replay on O(T) - W_i|| for each re-obfuscation
    (how far noise of the release's sigma alone moves the update's size)."""
    tolerance_band: float | None = None
    """``auto`` at sigma > 0: a weights or moment distance up to this many times its threshold is undecided,
    not a failure (the thresholds are estimates). None: the thresholds are exact (sigma 0 or a fixed one)."""

    OMIT_NONE = ("reject_update_ratio", "calibration_update_ratios", "tolerance_band")
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
        band = f" x {self.tolerance_band:g}" if self.tolerance_band and self.tolerance_band != 1 else ""
        if not (math.isfinite(self.distance) and self.distance <= self.threshold * (self.tolerance_band or 1.0)):
            return f"weights distance {self.distance:.6g} > threshold {self.threshold:.6g}{band}"
        for name, value, threshold in zip(QUANTITIES[1:], self.moment_distances, self.moment_thresholds, strict=True):
            if not (math.isfinite(value) and value <= threshold * (self.tolerance_band or 1.0)):
                return f"Adam {name} distance {value:.6g} > threshold {threshold:.6g}{band}"
        if not self.step_ok:
            return "Adam step count differs from the checkpoint's"
        ratio = self.update_ratio
        if self.reject_update_ratio is None and not ratio <= self.max_update_ratio:
            return (f"replayed update {self.replay_update_norm:.4g} is {ratio:.3g} x the claimed {self.update_norm:.4g} "
                    f"(policy: at most {self.max_update_ratio:g}x; falsified lr?)")
        return None

    @property
    def distance_undecided(self) -> bool:
        """The segment passes, but its weights or a moment distance lies above its threshold, within the
        tolerance band."""
        return self.passed and (self.distance > self.threshold or any(
            value > threshold for value, threshold in zip(self.moment_distances, self.moment_thresholds, strict=True)))

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


@dataclass(frozen=True)
class Challenge(Record):
    """The segments the verifier drew from its secret seed, after the prover committed to its trajectory."""

    seed: int
    """The verifier's seed (fresh from the OS CSPRNG unless given); recorded so that the verdict can be
    reproduced, secret until the bundle is fixed."""
    trajectory_root: str
    random_segments: int
    """Draws asked for (the bundle may have fewer segments: then all are drawn)."""
    drawn: tuple[int, ...]
    num_segments: int

    DERIVED = ("catch_probability",)

    @property
    def catch_probability(self) -> dict[str, float]:
        """``1 - (1 - f)^r`` for the shares f of :data:`CATCH_SHARES` (1 when every segment is drawn)."""
        everything = len(self.drawn) >= self.num_segments
        return {f"{share:g}": 1.0 if everything else catch_probability(share, len(self.drawn))
                for share in CATCH_SHARES}


@dataclass(frozen=True)
class DriftLimit(Record):
    """How far a prover could steer the trajectory without any replayed segment failing.

    ``accepted_drift`` = number of segments x mean weights threshold of the replayed segments (each
    segment may end up to its threshold away from its replay, and the next one starts from there);
    ``displacement`` = ||W_T - W_0||. When ``accepted_drift >= limit * displacement`` the tolerance
    admits a drift as large as the distance between models trained on different data (measured
    0.55-0.62 x the displacement on mnist-5k: docs/pol.md), and the verdict is undecidable."""

    accepted_drift: float
    displacement: float
    limit: float | None
    """``max_drift_share`` of the options; None: not applied."""

    DERIVED = ("share", "decidable")

    @property
    def share(self) -> float | None:
        return self.accepted_drift / self.displacement if self.displacement > 0 else None

    @property
    def decidable(self) -> bool:
        if self.limit is None or self.accepted_drift == 0:
            return True
        share = self.share
        return share is not None and share < self.limit


@dataclass
class Verdict(Record):
    """The verifier's answer: the decision, the one-line reason, and every number behind it."""

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
    decision: str = ""
    """``accept``, ``reject`` or ``undecidable`` (empty: from :attr:`accepted`)."""
    challenge: Challenge | None = None
    drift: DriftLimit | None = None
    release: dict | None = None
    """What the verifier learnt of the owner's release: key id, authenticated, insecure."""

    OMIT_NONE = ("challenge", "drift", "release")
    DERIVED = ("kind", "verdict", "exit_code", "replayed_segments", "max_distance")

    def __post_init__(self) -> None:
        if not self.decision:
            self.decision = "accept" if self.accepted else "reject"
        if self.decision not in DECISIONS or self.accepted != (self.decision == "accept"):
            raise ValueError(f"decision {self.decision!r} does not fit accepted={self.accepted}")

    @property
    def kind(self) -> str:
        return "pudlab.pol_verdict"

    @property
    def verdict(self) -> str:
        """``accept``, ``reject`` or ``undecidable``."""
        return self.decision

    @property
    def undecidable(self) -> bool:
        return self.decision == "undecidable"

    @property
    def replayed_segments(self) -> int:
        return len(self.segments)

    @property
    def exit_code(self) -> int:
        return DECISIONS[self.decision]

    @property
    def selected(self) -> list[SegmentResult]:
        """The top-Q and randomly drawn segments (without the start-state replays)."""
        return [s for s in self.segments if s.role != "start-state"]

    @property
    def max_distance(self) -> float:
        return max((s.distance for s in self.segments), default=0.0)

    @property
    def mean_distance(self) -> float:
        """Mean weights distance of the top-Q and drawn segments."""
        chosen = self.selected
        return float(np.mean([s.distance for s in chosen])) if chosen else 0.0

    @property
    def max_score(self) -> float:
        return max((s.score for s in self.segments), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The verdict's JSON (``pudlab pol verify --json``): the decision is written as ``verdict``."""
        data = super().to_dict()
        del data["accepted"], data["decision"]
        return data


__all__ = [
    "CATCH_SHARES",
    "DECISIONS",
    "EXIT_ACCEPT",
    "EXIT_ERROR",
    "EXIT_MALFORMED",
    "EXIT_REJECT",
    "EXIT_UNDECIDABLE",
    "QUANTITIES",
    "Challenge",
    "DriftLimit",
    "SegmentResult",
    "Verdict",
    "catch_probability",
]
